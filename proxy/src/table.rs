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

    /// The backend for a client at `peer` that has tried those in
    /// `tried`, counted against it (see [`Balancer::choose`]). A new
    /// client (none tried) rejected because no backend is up is counted,
    /// and the first of an all-down period logged; so is the first new
    /// client found no backend in service at all (every one drained, in
    /// maintenance, or removed), which the caller refuses.
    pub fn pick_backend(&mut self, peer: &SocketAddr, tried: balance::Tried) -> Choice {
        let choice = self.balancer.choose(peer, tried);
        if choice == Choice::AllDown && tried == 0 {
            self.stats.rejected_all_down.inc();
            if self.balancer.backends().note_all_down() {
                netio::log!(
                    "proxy: no backend is up: new clients are reset (--all-down reject) \
                     until one is"
                );
            }
        }
        if choice == Choice::Tried && tried == 0 && self.balancer.backends().note_all_down() {
            netio::log!(
                "proxy: no backend takes new clients (each is drained, in maint or removed): \
                 they are reset until one is set ready"
            );
        }
        choice
    }

    /// The address of backend `b`.
    pub fn backend_addr(&self, b: u32) -> SocketAddr {
        self.balancer.addr(b)
    }

    /// Gives back backend `b`'s count taken by [`Table::pick_backend`]
    /// for a client that was not opened after all.
    pub fn release(&mut self, b: u32) {
        self.balancer.closed(b);
    }

    /// A client at `peer` that has tried the backends in `tried` (`tries`
    /// of them) failed to connect to backend `failed` for `why` (of
    /// `kind`): counts it against that backend, and returns the next
    /// backend to try, if the client may try another (counted against it)
    /// — logged with the failure, and counted as a retry, or with none
    /// left as a refusal. [`Choice::Full`] (every other backend up is at
    /// its limit) is counted as neither: the caller queues the client or
    /// refuses it. The failed backend's count stays with the caller.
    pub fn failed_try(
        &mut self,
        failed: u32,
        peer: Option<SocketAddr>,
        (kind, why): (ConnectError, &str),
        tried: balance::Tried,
        tries: u32,
    ) -> Choice {
        self.backend_failed(failed, kind);
        let next = match peer {
            Some(p) if tries < self.opts.connect_retries => self.pick_backend(&p, tried),
            _ => Choice::Tried,
        };
        let to = match next {
            Choice::Backend(b) => Some(self.balancer.addr(b)),
            _ => None,
        };
        log_backend_failure(self.balancer.addr(failed), peer, why, to);
        match next {
            Choice::Backend(_) => self.stats.retries.inc(),
            Choice::Full => {}
            Choice::AllDown | Choice::Tried => self.stats.refused.inc(),
        }
        next
    }

    /// Passive health: a connect to backend `b` failed (logged once when
    /// that marks it down).
    fn backend_failed(&self, b: u32, kind: ConnectError) {
        self.stats.connect_failures.inc();
        let backends = self.balancer.backends();
        backends.connect_error(b, kind);
        if let Marked::Down { fails } = backends.failed(b) {
            netio::log!(
                "proxy: backend {} is down after {fails} failed connects in a row; \
                 tried again in {:?}",
                backends.addr(b),
                backends.fail_timeout()
            );
        }
    }

    /// The backend connect of `slot`'s pair completed (logged once when
    /// that brings the backend back up).
    fn backend_succeeded(&mut self, slot: usize) {
        let b = self.conns[slot].backend;
        let backends = self.balancer.backends();
        let prior = backends.fails(b);
        if backends.succeeded(b) {
            netio::log!("proxy: backend {} is up again", backends.addr(b));
        }
        self.conns[slot].prior_fails = prior;
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

    fn connect_failed(&mut self, io: &mut impl Sockets, slot: usize) {
        let err = io.connect_error(slot);
        let why = err.map_or_else(|| "connection failed".to_string(), |e| e.to_string());
        let kind = err.map_or(ConnectError::Other, |e| ConnectError::of(e.fault()));
        if !self.fail_over(io, slot, kind, &why) {
            self.close_later(slot, Reason::Refused);
        }
    }

    /// The backend connect of `slot` failed for `why`: logs it, counts it
    /// against the backend, and moves the pair to the next backend up, with
    /// what the client sent meanwhile still held for it. False when no
    /// backend is left to try (the caller closes the pair; `refused` is
    /// counted).
    fn fail_over(
        &mut self,
        io: &mut impl Sockets,
        slot: usize,
        kind: ConnectError,
        why: &str,
    ) -> bool {
        let c = &self.conns[slot];
        let next = self.failed_try(c.backend, c.peer, (kind, why), c.tried, c.tries);
        // Edges still in this batch for the backend socket given up on
        // must not reach the one that replaces it.
        let gen = self.conns[slot].gen;
        self.replaced.push((slot as u32, gen));
        self.connect_to(io, slot, next)
    }

    /// Connects `slot`'s pair to the backend in `next` (already counted
    /// against it), and after a connect that fails at once to the next
    /// backend, as [`Table::fail_over`] does. False when no backend is
    /// left (the caller closes the pair). A pair that finds every other
    /// backend at its limit is refused too (counted): it does not go back
    /// to the queue.
    fn connect_to(&mut self, io: &mut impl Sockets, slot: usize, mut next: Choice) -> bool {
        loop {
            let b = match next {
                Choice::Backend(b) => b,
                Choice::Full => {
                    self.stats.refused.inc();
                    return false;
                }
                Choice::AllDown | Choice::Tried => return false,
            };
            let addr = self.balancer.addr(b);
            let c = &mut self.conns[slot];
            let gen = c.gen;
            c.tried = balance::add(c.tried, b);
            c.tries += 1;
            let got = io.reconnect(slot, gen, addr);
            self.switch_backend(slot, b);
            match got {
                Ok(done) => {
                    self.move_to(slot, done);
                    if done {
                        self.pump(io, slot);
                    }
                    return true;
                }
                // Failed at once: count it, and try the next.
                Err(e) => {
                    let c = &self.conns[slot];
                    let why = (ConnectError::of(e.fault()), &*e.to_string());
                    next = self.failed_try(b, c.peer, why, c.tried, c.tries);
                }
            }
        }
    }

    /// `slot`'s pair is sent to backend `b` instead (for balancing).
    /// Its count on `b` is already taken; the old backend's is given back.
    fn switch_backend(&mut self, slot: usize, b: u32) {
        let c = &mut self.conns[slot];
        if c.counted {
            self.balancer.closed(c.backend);
        }
        c.counted = true;
        c.backend = b;
    }

    /// `slot`'s pair now has a new backend socket, connecting (or
    /// connected if `done`), with nothing received from or sent to any
    /// backend yet.
    fn move_to(&mut self, slot: usize, done: bool) {
        let c = &mut self.conns[slot];
        let was_connecting = c.stage == Stage::Connecting;
        c.ready[Side::Backend.index()] = netio::Ready::default();
        c.opened_ms = self.now_ms;
        c.stage = if done {
            Stage::Relaying
        } else {
            Stage::Connecting
        };
        match (was_connecting, done) {
            (true, true) => self.connecting -= 1,
            (false, false) => self.connecting += 1,
            _ => {}
        }
        if done {
            self.backend_succeeded(slot);
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
        if c.both_ended() {
            if c.reset.is_some() {
                self.linger(io, slot);
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

    /// The socket `side` reset or failed. The first side to do so starts
    /// the flush: the pair stays open (true) to deliver what that side had
    /// sent. The other side failing too, or any failure with the flush
    /// turned off, closes the pair (false).
    fn failed(&mut self, io: &mut impl Sockets, slot: usize, side: Side) -> bool {
        if !self.conns[slot].stage.is_open() {
            return false;
        }
        // A backend that reset before any byte went either way is a failed
        // try: the client moves on.
        if side == Side::Backend && self.untouched(slot) && self.reset_before_any_byte(io, slot) {
            return false;
        }
        match self.conns[slot].reset {
            // The side that reset, again (an error edge after its reset).
            Some(dead) if dead == side => true,
            None if self.opts.reset_flush_ms > 0 => self.start_flush(io, slot, side),
            _ => {
                self.close_later(slot, Reason::Error(side));
                false
            }
        }
    }

    /// `dead` reset: drop what was on its way to it, read out what it sent
    /// before the reset, and deliver that to the other side. Returns
    /// whether the pair stays open.
    fn start_flush(&mut self, io: &mut impl Sockets, slot: usize, dead: Side) -> bool {
        let live = dead.other();
        let Table {
            conns,
            bufs,
            pipes,
            stats,
            ..
        } = self;
        let c = &mut conns[slot];
        c.reset = Some(dead);
        c.reset_ms = self.now_ms;
        if let Some(dirty) = c.flows[live.index()].cut(bufs, pipes) {
            renew(io, pipes, stats, dirty);
        }
        c.flows[dead.index()].source_reset = true;
        // Its kernel may still hold bytes it sent before the reset.
        let r = &mut c.ready[dead.index()];
        r.readable = true;
        r.hangup = true;
        self.flushing.push((slot as u32, c.gen));
        if let Step::Failed(side) = self.step_flow(io, slot, dead) {
            self.close_later(slot, Reason::Error(side));
            return false;
        }
        let c = &self.conns[slot];
        let f = c.flow(dead);
        // A client that reset before its backend answered, with nothing
        // for it, has nothing to deliver; nor has one still queued: it has
        // no backend yet, and no answer could reach it, so it leaves the
        // queue at once rather than spend a backend connection later.
        let queued = c.stage == Stage::Queued;
        if queued || (c.stage == Stage::Connecting && f.eof && f.hold.held() == 0) {
            self.close_later(slot, Reason::Error(dead));
            return false;
        }
        true
    }

    /// Both directions of a pair whose side reset are done: pass the reset
    /// on once the other side's kernel has acknowledged everything (a
    /// reset would discard what it still queues), else look again later.
    fn linger(&mut self, io: &mut impl Sockets, slot: usize) {
        let c = &mut self.conns[slot];
        let Some(dead) = c.reset else {
            return;
        };
        match io.unacked(slot, dead.other()) {
            Some(n) if n > 0 => {
                if c.poll_step == 0 {
                    c.poll_step = 1;
                    c.poll_ms = self.now_ms.wrapping_add(1);
                }
            }
            unacked => {
                if unacked.is_some() {
                    self.stats.resets_flushed.inc();
                }
                self.close_later(slot, Reason::Error(dead));
            }
        }
    }

    /// Looks again at the pairs delivering what a side sent before its
    /// reset: passes the reset on for those whose other side now has
    /// everything, and cuts off those past `--reset-flush-timeout`.
    pub fn check_flushing(&mut self, io: &mut impl Sockets) {
        let now = self.now_ms;
        let limit = self.opts.reset_flush_ms;
        let list = std::mem::take(&mut self.flushing);
        let mut keep = Vec::with_capacity(list.len());
        for (slot, gen) in list {
            let c = &mut self.conns[slot as usize];
            let Some(dead) = c.reset.filter(|_| c.gen == gen && c.stage.is_open()) else {
                continue;
            };
            if reached(now, c.reset_ms.wrapping_add(limit)) {
                self.stats.reset_flush_timeouts.inc();
                self.close_later(slot as usize, Reason::FlushTimeout(dead));
                continue;
            }
            if c.poll_step > 0 && reached(now, c.poll_ms) {
                c.poll_step = (c.poll_step * 2).min(POLL_MAX_MS);
                c.poll_ms = now.wrapping_add(c.poll_step);
                self.linger(io, slot as usize);
            }
            if self.conns[slot as usize].stage.is_open() {
                keep.push((slot, gen));
            }
        }
        // Nothing is added while checking: pairs start flushing in events.
        self.flushing = keep;
    }

    /// When [`Table::check_flushing`] is next due (worker clock, ms), if
    /// any pair is flushing.
    pub fn next_flush_ms(&self) -> Option<u32> {
        let now = self.now_ms;
        let limit = self.opts.reset_flush_ms;
        self.flushing
            .iter()
            .filter_map(|&(slot, gen)| {
                let c = &self.conns[slot as usize];
                (c.gen == gen && c.stage.is_open() && c.reset.is_some()).then(|| {
                    let end = c.reset_ms.wrapping_add(limit);
                    if c.poll_step > 0 && !reached(c.poll_ms, end) {
                        c.poll_ms
                    } else {
                        end
                    }
                })
            })
            .min_by_key(|&t| t.wrapping_sub(now) as i32)
    }

    /// Whether a reset is delivered after what came before it (the driver
    /// must then keep the clock).
    pub fn flushes_resets(&self) -> bool {
        self.opts.reset_flush_ms > 0
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
