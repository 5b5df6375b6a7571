//! The connection table and what happens to a pair between events — the
//! part of a worker that does not depend on how the I/O driver learns what
//! is ready or done. The epoll worker ([`crate::worker`]) feeds it events
//! and gives it its sockets ([`Sockets`]); a test feeds it fake ones.
//!
//! A pair's life here: [`Table::take_slot`] and [`Table::open`] when a
//! client is accepted and its backend connect started; then
//! [`Table::on_event`] for each readiness edge, which moves bytes both
//! ways ([`crate::relay::step`]); a pair that ended or failed is marked
//! [`Stage::Closing`] and closed by [`Table::settle`] at the end of the
//! batch, which also hands freed buffers to the pairs waiting for one.
//! Closing bumps the slot's generation, so a stale event for it (or for
//! the next pair in the slot) is dropped.
//!
//! A client that finds every backend up at its `max-connections` waits in
//! the worker's queue ([`Stage::Queued`]: accepted, its bytes read and
//! held, no backend socket yet) and is served in order by
//! [`Table::serve_queue`] when a backend has room again — after a pair
//! closes here, or on a short poll while the queue is not empty, since
//! other workers' pairs free room too. Beyond `--queue`, or after
//! `--queue-timeout`, it is reset.
//!
//! When one side resets (or fails), the pair does not close at once: what
//! that side sent before its reset — in the proxy's hold and still in its
//! socket — goes on to the other side, and once the other side's kernel
//! has acknowledged all of it ([`Sockets::unacked`], polled with back-off
//! by [`Table::check_flushing`], since no event says so) the reset is
//! passed on. `--reset-flush-timeout` bounds it; nothing more goes to the
//! side that reset. A backend that resets before any byte went either way
//! is a failed try instead, as a refused connect is (`table_retry.rs`).

use crate::backends::{ConnectError, Marked};
use crate::balance::{self, Balancer, Choice};
use crate::conn::{Conn, Reason, Side, Stage};
use crate::pipes::{PipeId, PipePool};
use crate::pool::Pools;
use crate::proxy_protocol::{self, Version};
use crate::relay::{self, Lend, Step};
use crate::stats::Stats;
use netio::again::AgainQueue;
use netio::sys::epoll;
use netio::{Errno, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the table needs from the I/O driver besides the relay's reads
/// and writes: the sockets of each slot, by slot.
pub trait Sockets {
    /// The two sockets of `slot`, for the relay.
    fn pair(&mut self, slot: usize) -> impl relay::Io + '_;
    /// The error that ended `slot`'s backend connect (`SO_ERROR`).
    fn connect_error(&mut self, slot: usize) -> Option<Errno>;
    /// Closes both sockets of `slot`, with a reset on each side marked in
    /// `abort` (by [`Side::index`]).
    fn close(&mut self, slot: usize, abort: [bool; 2]);
    /// Replaces a pipe that was closed with bytes in it (nobody will read
    /// them). False if no new pipe could be made.
    fn renew_pipe(&mut self, pipe: &PipeId) -> bool;
    /// Bytes written to `side` of `slot` that its peer has not yet
    /// acknowledged (`None` if that cannot be known).
    fn unacked(&mut self, slot: usize, side: Side) -> Option<usize>;
    /// Drops `slot`'s backend socket (with a reset: it was given up on)
    /// and starts a connect to `addr` in its place, registered for the
    /// pair's generation `gen`. True if it completed at once.
    fn reconnect(&mut self, slot: usize, gen: u32, addr: SocketAddr) -> Result<bool, Errno>;
    /// The address the client of `slot` connected to (for a PROXY header
    /// made again), if it can be had.
    fn local_addr(&mut self, slot: usize) -> Option<SocketAddr>;
}

/// The longest pause between two looks at a flushing pair's send queue.
const POLL_MAX_MS: u32 = 100;

/// How often the queue looks for room freed by other workers, while it
/// holds a client.
pub const QUEUE_POLL_MS: u32 = 10;

/// Whether the worker clock `now` has reached `t` (both wrap).
#[inline]
fn reached(now: u32, t: u32) -> bool {
    (now.wrapping_sub(t) as i32) >= 0
}

/// How the table behaves, from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub log_connections: bool,
    pub proxy_protocol: Option<Version>,
    /// `--reset-flush-timeout` in ms; 0 passes a reset on at once.
    pub reset_flush_ms: u32,
    /// `--connect-retries`: backends tried for one client, the first
    /// included (0 counts as 1).
    pub connect_retries: u32,
    /// `--queue`: clients this worker holds waiting for a backend under
    /// its limit (its share of the total).
    pub queue: usize,
    /// `--queue-timeout` in ms: how long one may wait.
    pub queue_timeout_ms: u32,
}

/// A new pair, as the driver set it up.
#[derive(Debug, Clone, Copy)]
pub struct Opening {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client connected to (for the PROXY header).
    pub local: SocketAddr,
    /// The backend chosen for it ([`Table::pick_backend`]).
    pub backend: u32,
    /// The backend connect completed at once.
    pub connected: bool,
    /// The backends tried for it so far (the chosen one included), and
    /// how many.
    pub tried: balance::Tried,
    pub tries: u32,
    /// It waits in the queue, with no backend socket (`backend` and
    /// `connected` mean nothing).
    pub queued: bool,
}

/// Why a new pair could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No buffer for the PROXY header (impossible with the pool's floor of
    /// two buffers a connection, but never skipped).
    NoBuffer,
}

/// The table.
pub struct Table {
    pub(crate) conns: Vec<Conn>,
    free: Vec<u32>,
    bufs: Pools,
    pipes: PipePool,
    /// Pairs waiting for a free buffer, in order.
    waiters: VecDeque<(u32, u32)>,
    /// Pairs that stopped to be fair.
    again: AgainQueue,
    /// Pairs to close at the end of this batch.
    closing: Vec<u32>,
    /// Pairs delivering what one side sent before it reset.
    flushing: Vec<(u32, u32)>,
    /// Pairs whose backend socket a retry replaced in this batch of events:
    /// the batch's edges for their backend are the old socket's.
    replaced: Vec<(u32, u32)>,
    balancer: Balancer,
    /// Pairs in [`Stage::Connecting`].
    connecting: usize,
    /// Pairs in [`Stage::Queued`], in the order they came.
    queue: VecDeque<(u32, u32)>,
    opts: Options,
    /// The worker's clock in ms, set by the driver once a loop turn.
    pub(crate) now_ms: u32,
    stats: Arc<Stats>,
}

impl Table {
    /// A table of `capacity` pairs. Refuses a pool of fewer than two
    /// regular buffers a pair: directions of different pairs could then
    /// wait on each other for good (a backend that writes before it reads
    /// stalls the pool), and a new pair's PROXY header could find none.
    pub fn new(
        capacity: usize,
        bufs: Pools,
        pipes: PipePool,
        balancer: Balancer,
        opts: Options,
        stats: Arc<Stats>,
    ) -> io::Result<Table> {
        if bufs.small.capacity() < 2 * capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} buffers for {capacity} connections: at least two a connection are needed",
                    bufs.small.capacity()
                ),
            ));
        }
        stats.pool_capacity.set(bufs.small.capacity() as u64);
        stats.large_pool_capacity.set(bufs.large.capacity() as u64);
        stats.pipes_capacity.set(pipes.capacity() as u64);
        // Sized from the user's --max-connections: a refusal is an error.
        let mut conns = Vec::new();
        conns
            .try_reserve_exact(capacity)
            .map_err(|e| crate::pool::no_memory("the connection table", e))?;
        conns.resize_with(capacity, Conn::new);
        Ok(Table {
            conns,
            free: (0..capacity as u32).rev().collect(),
            bufs,
            pipes,
            waiters: VecDeque::with_capacity(capacity),
            again: AgainQueue::with_slots(capacity),
            closing: Vec::with_capacity(capacity),
            flushing: Vec::new(),
            replaced: Vec::new(),
            balancer,
            connecting: 0,
            queue: VecDeque::with_capacity(capacity),
            opts,
            now_ms: 0,
            stats,
        })
    }

    /// Pairs open now.
    /// Pairs the table holds at most.
    pub fn capacity(&self) -> usize {
        self.conns.len()
    }

    pub fn active(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Whether a new pair would find a slot.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// How many slots are free.
    pub fn free_slots(&self) -> usize {
        self.free.len()
    }

    /// Pairs whose backend connect is in progress.
    pub fn connecting(&self) -> usize {
        self.connecting
    }

    /// Whether some pair stopped only to be fair: the driver must not
    /// sleep.
    pub fn has_again(&self) -> bool {
        !self.again.is_empty()
    }

    /// Whether `--log-connections` is on.
    pub fn logs_connections(&self) -> bool {
        self.opts.log_connections
    }

    /// Whether new pairs need the address the client connected to.
    pub fn wants_local_addr(&self) -> bool {
        self.opts.proxy_protocol.is_some()
    }

    /// Behaves by `opts` from now on (a reload).
    pub fn set_options(&mut self, opts: Options) {
        self.opts = opts;
    }

    /// Stamps every open pair as opened and active at the clock's time
    /// now (see [`crate::timers::Timers::restart_clock`]).
    pub fn restamp(&mut self) {
        let now = self.now_ms;
        for c in self.conns.iter_mut().filter(|c| c.stage.is_open()) {
            c.opened_ms = now;
            c.active_ms = now;
        }
    }

    /// Whether some open pair's backend is gone from the configuration
    /// (as of the newest generation of the backend set).
    pub fn serves_removed(&mut self) -> bool {
        self.balancer.refresh();
        let b = self.balancer.backends();
        self.conns
            .iter()
            .any(|c| c.stage.is_open() && b.entry(c.backend).removed)
    }

    /// Marks the open pairs whose backend is gone from the configuration
    /// to be closed: their drain time after the reload is over.
    pub fn close_removed(&mut self) {
        self.balancer.refresh();
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if c.stage.is_open() && self.balancer.backends().entry(c.backend).removed {
                self.close_later(slot, Reason::Drain);
            }
        }
    }

    /// Takes a free slot for a new pair: its index and generation (for the
    /// sockets' tokens). Give it back with [`Table::put_back`] if the pair
    /// cannot be opened after all.
    pub fn take_slot(&mut self) -> Option<(usize, u32)> {
        let slot = self.free.pop()? as usize;
        debug_assert_eq!(self.conns[slot].stage, Stage::Free);
        Some((slot, self.conns[slot].gen))
    }

    /// Gives back a slot from [`Table::take_slot`] that was never opened.
    pub fn put_back(&mut self, slot: usize) {
        debug_assert_eq!(self.conns[slot].stage, Stage::Free);
        self.free.push(slot as u32);
    }

    /// Opens the pair in `slot` (from [`Table::take_slot`]), its backend
    /// already counted by [`Table::pick_backend`] unless it is queued
    /// (the caller checked [`Table::queue_has_room`]). With
    /// `--proxy-protocol` the header waits in the client → backend buffer
    /// and goes out first once the connect completes.
    pub fn open(&mut self, slot: usize, o: Opening) -> Result<(), Refusal> {
        let Table {
            conns, bufs, opts, ..
        } = self;
        let c = &mut conns[slot];
        debug_assert_eq!(c.stage, Stage::Free);
        if let Some(version) = opts.proxy_protocol {
            let Some(mut buf) = bufs.checkout(false) else {
                return Err(Refusal::NoBuffer);
            };
            let n = proxy_protocol::encode(version, o.peer, o.local, bufs.spare(&buf));
            buf.fill(n);
            c.header = n as u8;
            c.flows[Side::Client.index()].hold = relay::Hold::Buf(buf);
        }
        c.stage = if o.queued {
            self.queue.push_back((slot as u32, c.gen));
            Stage::Queued
        } else if o.connected {
            Stage::Relaying
        } else {
            self.connecting += 1;
            Stage::Connecting
        };
        c.counted = !o.queued;
        c.opened_ms = self.now_ms;
        c.active_ms = self.now_ms;
        c.backend = o.backend;
        c.tried = o.tried;
        c.tries = o.tries;
        c.peer = Some(o.peer);
        c.started = self.opts.log_connections.then(Instant::now);
        let stats = &self.stats;
        stats.accepted.inc();
        let active = self.active() as u64;
        stats.active.set(active);
        if active > stats.peak_active.get() {
            stats.peak_active.set(active);
        }
        Ok(())
    }

    /// Handles one readiness edge for `t`, dropping it if it is stale.
    pub fn on_event(&mut self, io: &mut impl Sockets, t: Token, bits: u32) {
        let slot = t.index();
        let now_ms = self.now_ms;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.gen != t.gen || !c.stage.is_open() {
            return; // Stale: the slot was closed (and maybe reused) since.
        }
        if t.side == Side::Backend && self.replaced(slot, t.gen) {
            return; // The socket it was for is gone.
        }
        let c = &mut self.conns[slot];
        c.active_ms = now_ms;
        c.ready[t.side.index()].apply(bits);
        if c.stage == Stage::Connecting && t.side == Side::Backend {
            if bits & (epoll::ERR | epoll::HUP) != 0 {
                self.connect_failed(io, slot);
                return;
            }
            if bits & epoll::OUT != 0 {
                c.stage = Stage::Relaying;
                self.connecting -= 1;
                self.backend_succeeded(slot);
            }
        }
        // A reset or error must be seen even when the relay cannot reach
        // the socket right now (its direction is stalled on the other
        // side), and even when this very pump ends the pair (the last FIN
        // passed without a system call): it is passed on, never a FIN.
        if bits & epoll::ERR == 0 {
            self.pump(io, slot);
        } else if self.opts.reset_flush_ms > 0 {
            // The flush itself reads out and delivers what the side sent.
            if self.failed(io, slot, t.side) {
                self.pump(io, slot);
            }
        } else {
            // Pump first, so that whatever can still be read is passed on.
            self.pump(io, slot);
            if t.side == Side::Backend && self.replaced(slot, t.gen) {
                return; // The pump found the reset, and retried.
            }
            let c = &mut self.conns[slot];
            if c.stage == Stage::Closing(Reason::Done) {
                c.stage = Stage::Closing(Reason::Error(t.side));
            } else {
                self.failed(io, slot, t.side);
            }
        }
    }

    /// Moves whatever can move in both directions of `slot`.
    pub fn pump(&mut self, io: &mut impl Sockets, slot: usize) {
        let mut yielded = false;
        // Both directions run even if the first fails: a backend that
        // answers and resets while the upload is still coming must still
        // have its answer passed on. The failure is handled before the
        // other direction runs: the socket's error is reported once, so
        // that direction may find a plain end of stream where the reset
        // was, and must know by then that it is a reset.
        for from in Side::BOTH {
            match self.step_flow(io, slot, from) {
                Step::Yield => yielded = true,
                Step::Failed(side) => {
                    if !self.failed(io, slot, side) {
                        return;
                    }
                }
                Step::Blocked | Step::Done | Step::NoBuffer => {}
            }
        }
        let c = &self.conns[slot];
        if !c.stage.is_open() {
            return;
        }
        if let Some(dead) = c.reset {
            match self.discard(io, slot, dead.other()) {
                flush::Discard::Drained => {}
                flush::Discard::More => yielded = true,
                flush::Discard::Failed => {
                    if !self.failed(io, slot, dead.other()) {
                        return;
                    }
                }
            }
        }
        let c = &self.conns[slot];
        if !c.stage.is_open() {
            return;
        }
        if c.both_ended() {
            if c.reset.is_some() {
                self.linger(io, slot);
                // What the live side still sends is read while the pair
                // lingers too: a peer blocked on its own answers would
                // otherwise stop taking the flush.
                let c = &self.conns[slot];
                if yielded && c.stage.is_open() {
                    self.again.push(slot as u32, c.gen);
                }
            } else {
                self.close_later(slot, Reason::Done);
            }
        } else if yielded {
            self.again.push(slot as u32, c.gen);
        }
    }

    /// One direction's [`relay::step`], with its bytes counted and a wait
    /// for a buffer queued.
    fn step_flow(&mut self, io: &mut impl Sockets, slot: usize, from: Side) -> Step {
        let Table {
            conns,
            bufs,
            pipes,
            waiters,
            stats,
            ..
        } = self;
        let c = &mut conns[slot];
        let connected = c.stage == Stage::Relaying;
        let i = from.index();
        let other_fin = c.flows[1 - i].fin_sent;
        let before = c.flows[i].bytes;
        let step = relay::step(
            &mut c.flows[i],
            &mut c.ready,
            connected,
            other_fin,
            &mut Lend { bufs, pipes },
            &mut io.pair(slot),
        );
        let moved = c.flows[i].bytes - before;
        match from {
            Side::Client => stats.bytes_client_to_backend.add(moved),
            Side::Backend => stats.bytes_backend_to_client.add(moved),
        }
        if step == Step::NoBuffer && !c.waiting {
            c.waiting = true;
            stats.pool_waits.inc();
            waiters.push_back((slot as u32, c.gen));
        }
        step
    }

    /// Resumes the pairs that stopped only to be fair. Those that stop
    /// again are queued for the next turn.
    pub fn run_again(&mut self, io: &mut impl Sockets) {
        let list = self.again.take();
        for &(slot, gen) in &list {
            let c = &self.conns[slot as usize];
            if c.gen == gen && c.stage == Stage::Relaying {
                self.pump(io, slot as usize);
            }
        }
        self.again.recycle(list);
    }

    /// Marks an open pair to be closed at the end of the batch.
    pub fn close_later(&mut self, slot: usize, reason: Reason) {
        let c = &mut self.conns[slot];
        if c.stage.is_open() {
            if c.stage == Stage::Connecting {
                self.connecting -= 1;
            }
            if c.stage == Stage::Queued {
                let gen = c.gen;
                self.queue.retain(|&(s, g)| (s as usize, g) != (slot, gen));
            }
            c.stage = Stage::Closing(reason);
            self.closing.push(slot as u32);
        }
    }

    /// Marks every open pair to be closed for `reason`.
    pub fn close_all(&mut self, reason: Reason) {
        for slot in 0..self.conns.len() {
            self.close_later(slot, reason);
        }
    }

    /// Marks the pairs past a timeout to be closed: a backend connect older
    /// than `connect_ms` (unless another backend may be tried), or no
    /// event on either socket for `idle_ms`.
    pub fn expire(&mut self, io: &mut impl Sockets, connect_ms: Option<u32>, idle_ms: Option<u32>) {
        let now_ms = self.now_ms;
        let expired =
            |since: u32, limit: Option<u32>| limit.is_some_and(|l| now_ms.wrapping_sub(since) >= l);
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            let reason = match c.stage {
                Stage::Connecting if expired(c.opened_ms, connect_ms) => Reason::ConnectTimeout,
                // A pair delivering what a side sent before its reset is
                // bounded by --reset-flush-timeout instead.
                Stage::Connecting | Stage::Relaying
                    if c.reset.is_none() && expired(c.active_ms, idle_ms) =>
                {
                    Reason::Idle
                }
                _ => continue,
            };
            if reason == Reason::ConnectTimeout
                && self.fail_over(io, slot, ConnectError::Timeout, "connect timed out")
            {
                continue;
            }
            self.close_later(slot, reason);
        }
    }

    /// Hands freed buffers to the pairs waiting for one, then closes what
    /// was queued. Returns whether it closed any (slots are free: the
    /// driver may accept again and call this again).
    pub fn settle(&mut self, io: &mut impl Sockets) -> bool {
        while !self.waiters.is_empty() && self.bufs.has_free() {
            let Some((slot, gen)) = self.waiters.pop_front() else {
                break;
            };
            let c = &mut self.conns[slot as usize];
            if c.gen == gen && c.waiting {
                c.waiting = false;
                if c.stage.is_open() {
                    self.pump(io, slot as usize);
                }
            }
        }
        // The next batch's edges are all for the sockets there are now.
        self.replaced.clear();
        if self.closing.is_empty() {
            return false;
        }
        while let Some(slot) = self.closing.pop() {
            self.close_now(io, slot as usize);
        }
        true
    }

    /// Sets the gauges of what is lent out.
    pub fn publish(&self) {
        let s = &self.stats;
        s.pool_lent.set(self.bufs.small.lent() as u64);
        s.pool_high_water.set(self.bufs.small.high_water() as u64);
        s.large_pool_lent.set(self.bufs.large.lent() as u64);
        s.large_pool_high_water
            .set(self.bufs.large.high_water() as u64);
        s.pipes_lent.set(self.pipes.lent() as u64);
        s.flushing.set(self.flushing.len() as u64);
        s.queued.set(self.queue.len() as u64);
    }

    fn close_now(&mut self, io: &mut impl Sockets, slot: usize) {
        let Table {
            conns,
            bufs,
            pipes,
            stats,
            ..
        } = self;
        let c = &mut conns[slot];
        let Stage::Closing(reason) = c.stage else {
            debug_assert!(false, "slot {slot} closed while {:?}", c.stage);
            return;
        };
        if matches!(reason, Reason::Error(_) | Reason::FlushTimeout(_)) {
            stats.errors.inc();
        }
        let abort = c.aborts(reason);
        for f in &mut c.flows {
            if let Some(dirty) = f.hold.release(bufs, pipes) {
                renew(io, pipes, stats, dirty);
            }
        }
        io.close(slot, abort);
        if c.reset.is_some() {
            let gen = c.gen;
            self.flushing
                .retain(|&(s, g)| (s as usize, g) != (slot, gen));
        }
        if self.opts.log_connections {
            let ms = c.started.map_or(0, |t| t.elapsed().as_millis());
            let why = match (c.reset, reason) {
                (Some(dead), Reason::Error(side)) if dead == side => {
                    format!(
                        "{} reset, passed on after the rest was delivered",
                        dead.name()
                    )
                }
                _ => reason.describe().to_string(),
            };
            let backend = if c.counted {
                self.balancer.addr(c.backend).to_string()
            } else {
                "(queued)".to_string()
            };
            netio::log!(
                "conn {} -> {backend} closed ({why}): {} bytes up, {} bytes down, {ms} ms",
                c.peer.map_or_else(|| "?".into(), |p| p.to_string()),
                c.flows[0].bytes,
                c.flows[1].bytes,
            );
        }
        if c.counted {
            self.balancer.closed(c.backend);
        }
        *c = Conn {
            gen: c.gen.wrapping_add(1),
            ..Conn::new()
        };
        self.free.push(slot as u32);
        let active = self.conns.len() - self.free.len();
        stats.closed.inc();
        stats.active.set(active as u64);
    }
}

/// Replaces a pipe dropped with bytes in it: nobody will read them, and a
/// new pipe is cheaper than draining this one.
fn renew(io: &mut impl Sockets, pipes: &mut PipePool, stats: &Stats, dirty: PipeId) {
    if io.renew_pipe(&dirty) {
        pipes.checkin(dirty);
    } else {
        pipes.retire(dirty);
        stats.pipes_capacity.set(pipes.capacity() as u64);
    }
}

/// One line for a backend connect that failed, at once or later: which
/// backend, for which client, why, and the backend tried next (if any).
pub fn log_backend_failure(
    backend: SocketAddr,
    peer: Option<SocketAddr>,
    why: &str,
    next: Option<SocketAddr>,
) {
    let who = peer.map_or_else(String::new, |p| format!(" for client {p}"));
    let then = next.map_or_else(String::new, |n| format!("; trying {n}"));
    netio::log!("proxy: backend {backend} failed{who}: {why}{then}");
}

// Picking backends, failed tries and failover.
#[path = "table_backends.rs"]
mod backends;

// Passing a reset on once the rest was delivered.
#[path = "table_flush.rs"]
mod flush;

// The queue's half of the table: serving it and its deadlines.
#[path = "table_queue.rs"]
mod queue;

// Retrying a backend that reset before any byte.
#[path = "table_retry.rs"]
mod retry;

// The relay model uses `Table::check` from here; `fuzzing` builds it for `fuzz/`.
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(test), allow(dead_code, unused_imports))]
#[path = "table_tests.rs"]
pub(crate) mod tests;
