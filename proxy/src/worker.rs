//! One worker's relay: an edge-triggered epoll loop over a fixed table of
//! client/backend connection pairs.
//!
//! Lifecycle of a connection:
//! 1. The listener is drained with `accept4` until `EAGAIN`. Each client
//!    takes a free slot and starts a non-blocking connect to a backend.
//!    Both sockets are registered once, for `IN|OUT|RDHUP|ET`, and never
//!    modified: epoll only tells us what changed, and [`Ready`] remembers it.
//! 2. [`Stage::Connecting`]: client bytes may be read into one buffer but
//!    are held until the backend's connect completes. A failed connect
//!    closes the client.
//! 3. [`Stage::Relaying`]: each direction moves bytes source → buffer →
//!    destination until the source would block or the destination is full.
//!    A full destination stops reading from the source (backpressure); its
//!    next writable edge resumes both. Buffers are lent from the
//!    [`Pool`] only while bytes are in flight.
//! 4. A source's EOF is passed on as `shutdown(SHUT_WR)` once its buffered
//!    bytes are written; the other direction keeps flowing. When both
//!    directions have ended, the pair is closed. A reset or error on either
//!    side closes both at once and passes the reset on.
//! 5. Closing happens at the end of the event batch; the slot's generation
//!    then changes, so a stale event for a reused slot is recognised and
//!    dropped.

use crate::config::{Balance, Config};
use crate::pool::{Buf, Pool, Pools};
use crate::stats::Stats;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::pipe::{self, Pipe};
use netio::sys::socket;
use netio::Fault;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the listening socket.
const LISTENER: u64 = u64::MAX;
/// Token of the control eventfd.
const CONTROL: u64 = u64::MAX - 1;
/// Socket index of the client within a pair.
const CLIENT: usize = 0;
/// Socket index of the backend within a pair.
const BACKEND: usize = 1;
/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// Buffers one direction may move in a row before yielding to others.
const FAIR_ROUNDS: u32 = 16;
/// With `--pipes`, a direction keeps using pipes while its splices move
/// at least this much; smaller pieces are cheaper through a buffer.
const SPLICE_MIN: usize = 8192;
/// How long accepting pauses after running out of descriptors, unless a
/// connection closes first.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How the outside world talks to a running worker.
#[derive(Debug)]
pub struct Control {
    waker: Waker,
    stop: AtomicBool,
    /// This worker's counters.
    pub stats: Stats,
}

impl netio::serve::Stop for Control {
    /// Asks the worker to stop accepting and drain.
    fn stop(&self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.waker.wake()
    }
}

impl netio::serve::Worker for Worker {
    type Control = Control;
    fn control(&self) -> Arc<Control> {
        Worker::control(self)
    }
    fn run(self) -> io::Result<()> {
        Worker::run(self)
    }
}

/// Where a connection pair is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The slot is unused.
    Free,
    /// The backend connect is in progress.
    Connecting,
    /// Both sockets are open and bytes flow.
    Relaying,
    /// Queued to be closed at the end of this batch.
    Closing,
}

/// What epoll has told us about one socket, and how far its stream is.
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    /// Reading may return data (not yet seen `EAGAIN` since the last edge).
    readable: bool,
    /// Writing may make progress.
    writable: bool,
    /// The peer's FIN (or an error) has been reported: a short read does
    /// not prove the socket drained, so read on until 0.
    rdhup: bool,
    /// Reading returned 0: the peer will send nothing more.
    eof: bool,
    /// We have sent our FIN on this socket.
    shut: bool,
}

/// Why a pair is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Both directions ended normally.
    Done,
    /// The backend connect failed.
    Refused,
    /// A reset or I/O error on the client (0) or backend (1).
    Error(usize),
    /// The drain timeout ran out at shutdown.
    Drain,
    /// The backend connect took longer than `--connect-timeout`.
    ConnectTimeout,
    /// No event on either socket for `--idle-timeout`.
    Idle,
}

/// One client/backend pair.
struct Conn {
    gen: u32,
    stage: Stage,
    /// Queued in the waiters for a free buffer.
    waiting: bool,
    /// Queued to be pumped again without an event (fairness).
    again: bool,
    reason: Reason,
    /// Client and backend sockets, indexed by [`CLIENT`] and [`BACKEND`].
    fds: [Option<OwnedFd>; 2],
    /// Readiness, indexed like `fds`.
    ready: [Ready; 2],
    /// In-flight bytes per direction: 0 is client → backend, 1 the reverse.
    bufs: [Option<Buf>; 2],
    /// Per direction: the last read filled its buffer (a stream, not a
    /// message), so a large buffer would save system calls.
    streaming: [bool; 2],
    /// Per direction, with `--pipes`: the pipe a streaming direction
    /// moves its bytes through, and how many bytes sit in it.
    pipes: [Option<Pipe>; 2],
    piped: [u32; 2],
    backend: u32,
    /// Worker clock (ms) when the pair opened, and of its last event:
    /// kept only when a connect or idle timeout is set.
    opened_ms: u32,
    active_ms: u32,
    bytes: [u64; 2],
    peer: Option<SocketAddr>,
    started: Option<Instant>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            gen: 0,
            stage: Stage::Free,
            waiting: false,
            again: false,
            reason: Reason::Done,
            fds: [None, None],
            ready: [Ready::default(); 2],
            bufs: [None, None],
            streaming: [false; 2],
            pipes: [None, None],
            piped: [0; 2],
            backend: 0,
            opened_ms: 0,
            active_ms: 0,
            bytes: [0; 2],
            peer: None,
            started: None,
        }
    }

    fn fd(&self, side: usize) -> Option<BorrowedFd<'_>> {
        self.fds[side].as_ref().map(|f| f.as_fd())
    }
}

/// A duration in whole milliseconds, saturating at `u32::MAX`.
fn millis(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

fn token(slot: usize, gen: u32, side: usize) -> u64 {
    (u64::from(gen) << 32) | ((slot as u64) << 1) | side as u64
}

fn untoken(t: u64) -> (usize, u32, usize) {
    (
        ((t as u32) >> 1) as usize,
        (t >> 32) as u32,
        (t & 1) as usize,
    )
}

/// One event loop with its listener, table and pool.
pub struct Worker {
    epoll: Epoll,
    listener: Option<OwnedFd>,
    control: Arc<Control>,
    conns: Vec<Conn>,
    free: Vec<u32>,
    pool: Pools,
    /// Free pipes for `--pipes`, and how many there are in all.
    pipes: Vec<Pipe>,
    pipes_total: usize,
    pipe_size: usize,
    closing: Vec<u32>,
    waiters: VecDeque<(u32, u32)>,
    again: Vec<(u32, u32)>,
    again_next: Vec<(u32, u32)>,
    backends: Vec<SocketAddr>,
    acl: crate::acl::Acl,
    proxy_protocol: Option<crate::proxy_protocol::Version>,
    backend_active: Vec<u32>,
    next_backend: usize,
    balance: Balance,
    log_connections: bool,
    drain_timeout: Duration,
    accept_paused: bool,
    accept_retry_at: Option<Instant>,
    drain_deadline: Option<Instant>,
    reserve: Option<OwnedFd>,
    connect_timeout_ms: Option<u32>,
    idle_timeout_ms: Option<u32>,
    /// Pairs in [`Stage::Connecting`]: the sweep runs only while a
    /// timeout could fire, so an idle proxy never wakes.
    connecting: usize,
    /// The worker's clock: ms since `epoch`, read once a loop turn when a
    /// timeout is set.
    epoch: Instant,
    now_ms: u32,
    next_sweep: Option<Instant>,
    /// `--busy-poll`: how long to keep polling after traffic, and until when.
    busy_poll: Option<Duration>,
    spin_until: Option<Instant>,
}

impl Worker {
    /// Builds a worker around an already bound listener. Everything is
    /// allocated here, so the relay itself allocates nothing.
    pub fn new(cfg: &Config, listener: OwnedFd, capacity: usize) -> io::Result<Worker> {
        let epoll = Epoll::new()?;
        let control = Arc::new(Control {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        epoll.add(&listener, epoll::IN | epoll::ET, LISTENER)?;
        epoll.add(&control.waker, epoll::IN | epoll::ET, CONTROL)?;
        let pool = Pools::new(
            Pool::new(cfg.buffers, cfg.buffer_size),
            Pool::new_large(cfg.large_buffers, cfg.large_buffer_size),
        );
        control
            .stats
            .pool_capacity
            .set(pool.small.capacity() as u64);
        control
            .stats
            .large_pool_capacity
            .set(pool.large.capacity() as u64);
        let mut pipes = Vec::with_capacity(cfg.pipes);
        let mut pipe_size = cfg.pipe_size;
        for _ in 0..cfg.pipes {
            match Pipe::new(cfg.pipe_size) {
                Ok((p, got)) => {
                    pipe_size = got;
                    pipes.push(p);
                }
                Err(e) => {
                    // Splicing is an optimisation: run with fewer pipes.
                    eprintln!(
                        "proxy: warning: only {} of {} pipes for splicing: {e}",
                        pipes.len(),
                        cfg.pipes
                    );
                    break;
                }
            }
        }
        control.stats.pipes_capacity.set(pipes.len() as u64);
        let mut conns = Vec::with_capacity(capacity);
        conns.resize_with(capacity, Conn::new);
        Ok(Worker {
            epoll,
            listener: Some(listener),
            control,
            conns,
            free: (0..capacity as u32).rev().collect(),
            pool,
            pipes_total: pipes.len(),
            pipes,
            pipe_size,
            closing: Vec::with_capacity(capacity),
            waiters: VecDeque::with_capacity(capacity),
            again: Vec::with_capacity(capacity),
            again_next: Vec::with_capacity(capacity),
            backend_active: vec![0; cfg.backends.len()],
            backends: cfg.backends.clone(),
            acl: cfg.acl.clone(),
            proxy_protocol: cfg.proxy_protocol,
            next_backend: 0,
            balance: cfg.balance,
            log_connections: cfg.log_connections,
            drain_timeout: cfg.drain_timeout,
            accept_paused: false,
            accept_retry_at: None,
            drain_deadline: None,
            reserve: socket::reserve_fd().ok(),
            connect_timeout_ms: cfg.connect_timeout.map(millis),
            idle_timeout_ms: cfg.idle_timeout.map(millis),
            connecting: 0,
            epoch: Instant::now(),
            now_ms: 0,
            next_sweep: None,
            busy_poll: cfg.busy_poll,
            spin_until: None,
        })
    }

    /// The handle for signalling and reading this worker.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    fn stats(&self) -> &Stats {
        &self.control.stats
    }

    /// Runs until shut down and drained. Returns an error only if epoll
    /// itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(MAX_EVENTS);
        loop {
            let timeout = self.timeout_ms();
            self.stats().sys_epoll_wait.inc();
            let n = self.epoll.wait(&mut events, timeout)?;
            if let Some(d) = self.busy_poll {
                if n > 0 {
                    self.spin_until = Some(Instant::now() + d);
                }
            }
            if self.timeouts_on() {
                self.now_ms = millis(self.epoch.elapsed());
            }
            for (tok, bits) in events.iter() {
                match tok {
                    LISTENER => self.accept_all(),
                    CONTROL => self.on_control(),
                    _ => self.on_socket(tok, bits),
                }
            }
            self.run_again();
            self.settle();
            let now = Instant::now();
            if self.accept_paused && self.accept_retry_at.is_some_and(|t| now >= t) {
                self.resume_accept();
                self.settle();
            }
            self.sweep(now);
            if let Some(deadline) = self.drain_deadline {
                if self.active() == 0 {
                    return Ok(());
                }
                if now >= deadline {
                    for slot in 0..self.conns.len() {
                        if matches!(self.conns[slot].stage, Stage::Connecting | Stage::Relaying) {
                            self.close_later(slot, Reason::Drain);
                        }
                    }
                    self.settle();
                    return Ok(());
                }
            }
        }
    }

    fn timeouts_on(&self) -> bool {
        self.connect_timeout_ms.is_some() || self.idle_timeout_ms.is_some()
    }

    /// Closes pairs past their connect or idle timeout, and schedules the
    /// next sweep only while one of them could still fire: with no pair
    /// connecting and no idle timeout, the proxy sleeps for good.
    fn sweep(&mut self, now: Instant) {
        if !self.timeouts_on() {
            return;
        }
        if self.next_sweep.is_some_and(|t| now >= t) {
            let now_ms = millis(self.epoch.elapsed());
            let expired = |since: u32, limit: Option<u32>| {
                limit.is_some_and(|l| now_ms.wrapping_sub(since) >= l)
            };
            for slot in 0..self.conns.len() {
                let c = &self.conns[slot];
                let reason = match c.stage {
                    Stage::Connecting if expired(c.opened_ms, self.connect_timeout_ms) => {
                        Reason::ConnectTimeout
                    }
                    Stage::Connecting | Stage::Relaying
                        if expired(c.active_ms, self.idle_timeout_ms) =>
                    {
                        Reason::Idle
                    }
                    _ => continue,
                };
                if reason == Reason::ConnectTimeout {
                    self.control.stats.refused.inc();
                    eprintln!(
                        "proxy: backend {} connect timed out",
                        self.backends[c.backend as usize]
                    );
                }
                self.close_later(slot, reason);
            }
            self.next_sweep = None;
            self.settle();
        }
        let wanted = [
            self.connect_timeout_ms.filter(|_| self.connecting > 0),
            self.idle_timeout_ms.filter(|_| self.active() > 0),
        ]
        .into_iter()
        .flatten()
        .min();
        match wanted {
            None => self.next_sweep = None,
            Some(ms) if self.next_sweep.is_none() => {
                // A pair expires at most an eighth of its timeout late.
                let step = u64::from(ms / 8).clamp(10, 1000);
                self.next_sweep = Some(now + Duration::from_millis(step));
            }
            Some(_) => {}
        }
    }

    fn active(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    /// Milliseconds until the nearest deadline; -1 (forever) when there is
    /// none, so that an idle proxy never wakes up.
    fn timeout_ms(&self) -> i32 {
        if !self.again_next.is_empty() {
            return 0;
        }
        if self.spin_until.is_some_and(|t| Instant::now() < t) {
            return 0;
        }
        let next = [
            self.accept_retry_at.filter(|_| self.accept_paused),
            self.drain_deadline,
            self.next_sweep,
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
            }
        }
    }

    fn on_control(&mut self) {
        self.control.waker.drain();
        if self.control.stop.load(Ordering::Acquire) && self.drain_deadline.is_none() {
            // Closing the listener deregisters it and refuses new clients.
            if self.listener.take().is_some() {
                self.stats().sys_close.inc();
            }
            self.drain_deadline = Some(Instant::now() + self.drain_timeout);
        }
    }

    /// Accepts until the backlog is empty, the table is full, or the
    /// process is out of descriptors.
    fn accept_all(&mut self) {
        if self.accept_paused {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            if self.free.is_empty() {
                // Full: the backlog waits until a connection closes.
                self.pause_accept(None);
                return;
            }
            self.control.stats.sys_accept.inc();
            match socket::accept(listener) {
                Ok((fd, peer)) if !self.acl.permits(peer.ip()) => {
                    // Turned away at once, with a reset: no backend is
                    // ever asked.
                    let stats = &self.control.stats;
                    stats.denied.inc();
                    stats.sys_sockopt.inc();
                    let _ = socket::set_linger_zero(&fd);
                    stats.sys_close.inc();
                    drop(fd);
                }
                Ok((fd, peer)) => {
                    self.open(fd, peer);
                    if self.accept_paused {
                        return; // out of descriptors for the backend side
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => match netio::outcome::fault(&e) {
                    // That one client is gone; the next may be fine.
                    Fault::Reset | Fault::Network | Fault::Denied => {}
                    Fault::NoDescriptors => {
                        self.out_of_fds();
                        return;
                    }
                    _ => {
                        eprintln!("proxy: accept failed: {e}");
                        self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
                        return;
                    }
                },
            }
        }
    }

    /// Out of descriptors with clients waiting: turn the oldest one away
    /// cleanly using the reserve descriptor (so it is not left hanging in
    /// the backlog), then pause until a connection closes or a short retry
    /// timer fires. Never spins.
    fn out_of_fds(&mut self) {
        if let (Some(reserve), Some(listener)) = (self.reserve.take(), self.listener.as_ref()) {
            drop(reserve);
            self.control.stats.sys_accept.inc();
            if let Ok((fd, _)) = socket::accept(listener) {
                let stats = &self.control.stats;
                stats.sys_sockopt.inc();
                let _ = socket::set_linger_zero(&fd);
                stats.sys_close.inc();
                drop(fd);
                stats.rejected.inc();
            }
            self.reserve = socket::reserve_fd().ok();
        }
        self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
    }

    fn pause_accept(&mut self, retry_at: Option<Instant>) {
        if !self.accept_paused {
            self.control.stats.accept_pauses.inc();
        }
        self.accept_paused = true;
        self.accept_retry_at = retry_at;
    }

    fn resume_accept(&mut self) {
        if self.accept_paused {
            self.accept_paused = false;
            self.accept_retry_at = None;
            if self.reserve.is_none() {
                self.reserve = socket::reserve_fd().ok();
            }
            self.accept_all();
        }
    }

    fn pick_backend(&mut self, peer: &SocketAddr) -> usize {
        let n = self.backends.len();
        match self.balance {
            Balance::RoundRobin => {
                let i = self.next_backend % n;
                self.next_backend = self.next_backend.wrapping_add(1);
                i
            }
            Balance::LeastConnections => {
                let start = self.next_backend % n;
                self.next_backend = self.next_backend.wrapping_add(1);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| self.backend_active[i])
                    .unwrap_or(0)
            }
            Balance::SourceHash => {
                // FNV-1a over the client's address bytes.
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                let mut mix = |bytes: &[u8]| {
                    for b in bytes {
                        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
                    }
                };
                match peer.ip() {
                    std::net::IpAddr::V4(ip) => mix(&ip.octets()),
                    std::net::IpAddr::V6(ip) => mix(&ip.octets()),
                }
                (h % n as u64) as usize
            }
        }
    }

    /// Takes a slot for a new client and starts its backend connect.
    fn open(&mut self, client: OwnedFd, peer: SocketAddr) {
        let Some(slot) = self.free.pop() else {
            return;
        };
        let slot = slot as usize;
        let b = self.pick_backend(&peer);
        let addr = self.backends[b];
        let stats = &self.control.stats;
        let (backend, done) = match socket::connect(&addr) {
            Ok(pair) => {
                stats.sys_connect.add(2);
                pair
            }
            Err(e) => {
                self.free.push(slot as u32);
                if netio::outcome::fault(&e) == Fault::NoDescriptors {
                    // socket() itself failed: no connect was attempted.
                    stats.sys_connect.inc();
                    stats.sys_sockopt.inc();
                    let _ = socket::set_linger_zero(&client);
                    self.control.stats.rejected.inc();
                    self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
                } else {
                    self.control.stats.sys_connect.add(2);
                    self.control.stats.sys_close.inc(); // the backend socket
                    self.control.stats.refused.inc();
                    eprintln!("proxy: backend {addr} failed for client {peer}: {e}");
                }
                self.control.stats.sys_close.inc();
                return;
            }
        };
        stats.sys_sockopt.inc();
        let _ = socket::set_nodelay(&backend);
        let c = &mut self.conns[slot];
        debug_assert_eq!(c.stage, Stage::Free);
        let gen = c.gen;
        stats.sys_epoll_ctl.add(2);
        let reg = self
            .epoll
            .add(&client, epoll::SOCKET, token(slot, gen, CLIENT))
            .and_then(|_| {
                self.epoll
                    .add(&backend, epoll::SOCKET, token(slot, gen, BACKEND))
            });
        if let Err(e) = reg {
            eprintln!("proxy: cannot register client {peer}: {e}");
            self.free.push(slot as u32);
            stats.errors.inc();
            stats.sys_close.add(2);
            return;
        }
        c.stage = if done {
            Stage::Relaying
        } else {
            Stage::Connecting
        };
        c.opened_ms = self.now_ms;
        c.active_ms = self.now_ms;
        if !done {
            self.connecting += 1;
        }
        if let Some(version) = self.proxy_protocol {
            // The header waits in the client → backend buffer and goes out
            // first once the connect completes. The pool always has a
            // buffer for a new pair (two per connection).
            stats.sys_sockopt.inc(); // getsockname
            let dst = socket::local_addr(&client).unwrap_or(peer);
            if let Some(mut buf) = self.pool.checkout(false) {
                let n = crate::proxy_protocol::encode(version, peer, dst, self.pool.spare(&buf));
                buf.fill(n);
                c.bufs[0] = Some(buf);
            }
        }
        c.fds = [Some(client), Some(backend)];
        c.ready = [Ready::default(); 2];
        c.streaming = [false; 2];
        c.bytes = [0; 2];
        c.backend = b as u32;
        c.reason = Reason::Done;
        c.waiting = false;
        c.again = false;
        if self.log_connections {
            c.peer = Some(peer);
            c.started = Some(Instant::now());
        }
        self.backend_active[b] += 1;
        stats.accepted.inc();
        let active = (self.conns.len() - self.free.len()) as u64;
        stats.active.set(active);
        if active > stats.peak_active.get() {
            stats.peak_active.set(active);
        }
    }

    fn on_socket(&mut self, tok: u64, bits: u32) {
        let (slot, gen, side) = untoken(tok);
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.gen != gen || !matches!(c.stage, Stage::Connecting | Stage::Relaying) {
            return; // Stale: the slot was closed (and maybe reused) since.
        }
        c.active_ms = self.now_ms;
        let r = &mut c.ready[side];
        let ev = epoll::Readiness::of(bits);
        r.readable |= ev.readable;
        r.writable |= ev.writable;
        r.rdhup |= ev.hangup;
        if c.stage == Stage::Connecting && side == BACKEND {
            if bits & (epoll::ERR | epoll::HUP) != 0 {
                self.connect_failed(slot);
                return;
            }
            if bits & epoll::OUT != 0 {
                c.stage = Stage::Relaying;
                self.connecting -= 1;
            }
        }
        self.pump(slot);
        // A reset or error on a socket that the relay cannot reach right now
        // (its direction is stalled on the other side) must still end the
        // pair: pump first, so that whatever it could still read is passed
        // on, then close if the pump did not.
        if bits & epoll::ERR != 0 {
            self.close_later(slot, Reason::Error(side));
        }
    }

    fn connect_failed(&mut self, slot: usize) {
        let stats = &self.control.stats;
        stats.sys_sockopt.inc();
        stats.refused.inc();
        let c = &self.conns[slot];
        let err = c
            .fd(BACKEND)
            .and_then(|fd| socket::take_error(fd).ok().flatten())
            .map_or_else(|| "connection failed".to_string(), |e| e.to_string());
        let who = c
            .peer
            .map_or_else(String::new, |p| format!(" for client {p}"));
        eprintln!(
            "proxy: backend {} failed{who}: {err}",
            self.backends[c.backend as usize]
        );
        self.close_later(slot, Reason::Refused);
    }

    /// Moves whatever can move in both directions of `slot`.
    fn pump(&mut self, slot: usize) {
        let mut more = false;
        let mut failed = None;
        // Both directions run even if the first fails: a backend that
        // answers and resets while the upload is still coming must still
        // have its answer passed on before the pair is closed.
        for dir in [0, 1] {
            match self.relay(slot, dir) {
                Ok(m) => more |= m,
                Err(side) => {
                    failed.get_or_insert(side);
                }
            }
        }
        if let Some(side) = failed {
            self.close_later(slot, Reason::Error(side));
            return;
        }
        let c = &mut self.conns[slot];
        if c.ready[CLIENT].shut && c.ready[BACKEND].shut {
            self.close_later(slot, Reason::Done);
        } else if more && !c.again {
            c.again = true;
            self.again_next.push((slot as u32, c.gen));
        }
    }

    /// Relays one direction (0: client → backend, 1: backend → client)
    /// until it would block. `Ok(true)` means it stopped only to be fair
    /// and must be resumed without waiting for an event; `Err(side)` names
    /// the socket that failed.
    fn relay(&mut self, slot: usize, dir: usize) -> Result<bool, usize> {
        let (src, dst) = (dir, 1 - dir);
        let Worker {
            conns,
            pool,
            control,
            waiters,
            pipes,
            pipe_size,
            ..
        } = self;
        let stats = &control.stats;
        let c = &mut conns[slot];
        let connected = c.stage == Stage::Relaying;
        if !connected && src == BACKEND {
            return Ok(false);
        }
        if c.pipes[dir].is_some() {
            return splice_relay(c, dir, pipes, *pipe_size, stats, 0);
        }
        let mut rounds = 0;
        loop {
            if let Some(buf) = c.bufs[dir].as_mut() {
                if !buf.is_empty() {
                    if !connected || !c.ready[dst].writable {
                        return Ok(false);
                    }
                    let Some(fd) = c.fds[dst].as_ref() else {
                        return Err(dst);
                    };
                    stats.sys_write.inc();
                    let data = pool.data(buf);
                    let offered = data.len();
                    let res = socket::write(fd, data);
                    if let Ok(n) = res {
                        buf.consume(n);
                    }
                    if !sent(c, dir, stats, res, offered)? {
                        return Ok(false);
                    }
                }
            }
            // Nothing of this direction is buffered now.
            let r = c.ready[src];
            if r.eof || !r.readable {
                if let Some(buf) = c.bufs[dir].take() {
                    pool.checkin(buf);
                }
                return pass_eof(c, dir, stats);
            }
            if rounds == FAIR_ROUNDS {
                return Ok(true);
            }
            rounds += 1;
            // A streaming direction moves on through a pipe when it may.
            if c.streaming[dir] && connected {
                if let Some(p) = pipes.pop() {
                    if let Some(buf) = c.bufs[dir].take() {
                        debug_assert!(buf.is_empty());
                        pool.checkin(buf);
                    }
                    c.pipes[dir] = Some(p);
                    return splice_relay(c, dir, pipes, *pipe_size, stats, rounds);
                }
            }
            // A streaming direction trades its empty regular buffer for a
            // large one when one is free.
            if c.streaming[dir]
                && pool.large.has_free()
                && c.bufs[dir].as_ref().is_some_and(|b| !b.is_large())
            {
                if let Some(small) = c.bufs[dir].take() {
                    pool.checkin(small);
                }
            }
            let buf = match c.bufs[dir].as_mut() {
                Some(buf) => buf,
                None => match pool.checkout(c.streaming[dir]) {
                    Some(buf) => c.bufs[dir].insert(buf),
                    None => {
                        if !c.waiting {
                            c.waiting = true;
                            stats.pool_waits.inc();
                            waiters.push_back((slot as u32, c.gen));
                        }
                        return Ok(false);
                    }
                },
            };
            let Some(fd) = c.fds[src].as_ref() else {
                return Err(src);
            };
            let spare = pool.spare(buf);
            let want = spare.len();
            stats.sys_read.inc();
            match socket::read(fd, spare) {
                Ok(0) => c.ready[src].eof = true,
                Ok(n) => {
                    buf.fill(n);
                    c.streaming[dir] = n == want;
                    // Edge-triggered: a short read drained the socket, unless
                    // a FIN is pending, which only a read of 0 will show.
                    if n < want && !c.ready[src].rdhup {
                        c.ready[src].readable = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.ready[src].readable = false,
                Err(_) => return Err(src),
            }
        }
    }

    fn close_later(&mut self, slot: usize, reason: Reason) {
        let c = &mut self.conns[slot];
        if matches!(c.stage, Stage::Connecting | Stage::Relaying) {
            if c.stage == Stage::Connecting {
                self.connecting -= 1;
            }
            c.stage = Stage::Closing;
            c.reason = reason;
            self.closing.push(slot as u32);
        }
    }

    /// Resumes connections that stopped only to be fair. Those that stop
    /// again are queued in `again_next` for the next round.
    fn run_again(&mut self) {
        std::mem::swap(&mut self.again, &mut self.again_next);
        let list = std::mem::take(&mut self.again);
        for &(slot, gen) in &list {
            let c = &mut self.conns[slot as usize];
            if c.gen == gen && c.again && c.stage == Stage::Relaying {
                c.again = false;
                self.pump(slot as usize);
            }
        }
        self.again = list;
        self.again.clear();
    }

    /// Closes what was queued, hands freed buffers to waiting connections,
    /// and resumes accepting once a slot is free; repeats until nothing
    /// changes.
    fn settle(&mut self) {
        loop {
            while !self.waiters.is_empty() && self.pool.has_free() {
                let Some((slot, gen)) = self.waiters.pop_front() else {
                    break;
                };
                let c = &mut self.conns[slot as usize];
                if c.gen == gen && c.waiting {
                    c.waiting = false;
                    if matches!(c.stage, Stage::Connecting | Stage::Relaying) {
                        self.pump(slot as usize);
                    }
                }
            }
            if self.closing.is_empty() {
                break;
            }
            while let Some(slot) = self.closing.pop() {
                self.close_now(slot as usize);
            }
            // A close freed a slot and two descriptors: try the backlog again.
            if self.accept_paused && !self.free.is_empty() {
                self.resume_accept();
            }
        }
        let stats = &self.control.stats;
        stats.pool_lent.set(self.pool.small.lent() as u64);
        stats
            .pool_high_water
            .set(self.pool.small.high_water() as u64);
        stats.large_pool_lent.set(self.pool.large.lent() as u64);
        stats
            .pipes_lent
            .set((self.pipes_total - self.pipes.len()) as u64);
        stats
            .large_pool_high_water
            .set(self.pool.large.high_water() as u64);
    }

    fn close_now(&mut self, slot: usize) {
        let stats = &self.control.stats;
        let c = &mut self.conns[slot];
        debug_assert_eq!(c.stage, Stage::Closing);
        // Which sockets get a reset rather than a FIN: any that is owed
        // bytes it will now never get, so that a cut stream never looks
        // complete.
        let mut abort = [false; 2];
        match c.reason {
            Reason::Done => {}
            Reason::Error(side) => {
                abort[1 - side] = true;
                stats.errors.inc();
            }
            Reason::Refused | Reason::ConnectTimeout => abort[CLIENT] = true,
            Reason::Drain | Reason::Idle => {
                for dir in [0, 1] {
                    let r = c.ready[dir];
                    let held =
                        c.bufs[dir].as_ref().is_some_and(|b| !b.is_empty()) || c.piped[dir] > 0;
                    abort[1 - dir] |= held || (r.readable && !r.eof);
                }
            }
        }
        for buf in c.bufs.iter_mut().filter_map(Option::take) {
            self.pool.checkin(buf);
        }
        for dir in [0, 1] {
            if let Some(p) = c.pipes[dir].take() {
                if c.piped[dir] == 0 {
                    self.pipes.push(p);
                } else {
                    // Bytes nobody will read are stuck in it: a new pipe is
                    // cheaper than draining this one.
                    drop(p);
                    match Pipe::new(self.pipe_size) {
                        Ok((p, _)) => self.pipes.push(p),
                        Err(_) => {
                            self.pipes_total -= 1;
                            stats.pipes_capacity.set(self.pipes_total as u64);
                        }
                    }
                }
                c.piped[dir] = 0;
            }
        }
        for side in [CLIENT, BACKEND] {
            if let (true, Some(fd)) = (abort[side], c.fd(side)) {
                stats.sys_sockopt.inc();
                let _ = socket::set_linger_zero(fd);
            }
        }
        for fd in c.fds.iter_mut().filter_map(Option::take) {
            stats.sys_close.inc();
            drop(fd);
        }
        if self.log_connections {
            let ms = c.started.map_or(0, |t| t.elapsed().as_millis());
            let why = match c.reason {
                Reason::Done => "done",
                Reason::Refused => "backend refused",
                Reason::Error(CLIENT) => "client error",
                Reason::Error(_) => "backend error",
                Reason::Drain => "drain timeout",
                Reason::ConnectTimeout => "backend connect timed out",
                Reason::Idle => "idle timeout",
            };
            eprintln!(
                "conn {} -> {} closed ({why}): {} bytes up, {} bytes down, {ms} ms",
                c.peer.map_or_else(|| "?".into(), |p| p.to_string()),
                self.backends[c.backend as usize],
                c.bytes[0],
                c.bytes[1],
            );
        }
        self.backend_active[c.backend as usize] -= 1;
        c.stage = Stage::Free;
        c.gen = c.gen.wrapping_add(1);
        c.waiting = false;
        c.peer = None;
        self.free.push(slot as u32);
        stats.closed.inc();
        stats
            .active
            .set((self.conns.len() - self.free.len()) as u64);
    }
}

/// Accounts for one write (or splice out) of direction `dir` that was
/// offered `offered` bytes: `Ok(true)` when all of them went, `Ok(false)`
/// when the destination is full (a short write or `EAGAIN`) and the
/// direction must wait for it, `Err(dst)` when the destination failed.
fn sent(
    c: &mut Conn,
    dir: usize,
    stats: &Stats,
    res: io::Result<usize>,
    offered: usize,
) -> Result<bool, usize> {
    let dst = 1 - dir;
    match res {
        Ok(n) => {
            c.bytes[dir] += n as u64;
            if dir == 0 {
                stats.bytes_client_to_backend.add(n as u64);
            } else {
                stats.bytes_backend_to_client.add(n as u64);
            }
            if n < offered {
                c.ready[dst].writable = false;
                return Ok(false);
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.ready[dst].writable = false;
            Ok(false)
        }
        Err(_) => {
            // The peer is gone, but what it sent before its reset may
            // still be queued: let the other direction read it out before
            // the pair closes.
            c.ready[dst].readable = true;
            c.ready[dst].rdhup = true;
            Err(dst)
        }
    }
}

/// A direction has nothing buffered and its source is drained or ended:
/// if ended, pass the FIN on.
fn pass_eof(c: &mut Conn, dir: usize, stats: &Stats) -> Result<bool, usize> {
    let (src, dst) = (dir, 1 - dir);
    if c.ready[src].eof && c.stage == Stage::Relaying && !c.ready[dst].shut {
        c.ready[dst].shut = true;
        // If the other direction has ended too, the pair closes at the end
        // of this batch and that close sends the FIN (nothing is left
        // unread on either socket): one shutdown(2) fewer per connection.
        if !c.ready[src].shut {
            stats.sys_shutdown.inc();
            if let Some(fd) = c.fds[dst].as_ref() {
                if socket::shutdown_write(fd).is_err() {
                    return Err(dst);
                }
            }
        }
    }
    Ok(false)
}

/// [`Worker::relay`] for a direction that holds a pipe: source → pipe →
/// destination with `splice(2)`, the bytes never copied through user
/// space. The pipe goes back to `free` as soon as it is empty and the
/// source has nothing more to give. Unlike a read, a short splice does
/// not prove the socket drained (the pipe may have run out of slots),
/// so the source is read until `EAGAIN`.
fn splice_relay(
    c: &mut Conn,
    dir: usize,
    free: &mut Vec<Pipe>,
    cap: usize,
    stats: &Stats,
    mut rounds: u32,
) -> Result<bool, usize> {
    let (src, dst) = (dir, 1 - dir);
    loop {
        let Some(p) = c.pipes[dir].as_ref() else {
            return Ok(false);
        };
        if c.piped[dir] > 0 {
            if !c.ready[dst].writable {
                return Ok(false);
            }
            let Some(fd) = c.fds[dst].as_ref() else {
                return Err(dst);
            };
            stats.sys_splice.inc();
            let offered = c.piped[dir] as usize;
            let res = pipe::splice(&p.read, fd, offered);
            if let Ok(n) = res {
                c.piped[dir] -= n as u32;
            }
            if !sent(c, dir, stats, res, offered)? {
                return Ok(false);
            }
        }
        let r = c.ready[src];
        if r.eof || !r.readable {
            if let Some(p) = c.pipes[dir].take() {
                free.push(p);
            }
            return pass_eof(c, dir, stats);
        }
        if rounds == FAIR_ROUNDS {
            return Ok(true);
        }
        rounds += 1;
        let (Some(fd), Some(p)) = (c.fds[src].as_ref(), c.pipes[dir].as_ref()) else {
            return Err(src);
        };
        stats.sys_splice.inc();
        match pipe::splice(fd, &p.write, cap) {
            Ok(0) => c.ready[src].eof = true,
            Ok(n) => {
                c.piped[dir] = n as u32;
                // Small pieces go back to buffers once this pipe empties.
                c.streaming[dir] = n >= SPLICE_MIN;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.ready[src].readable = false,
            Err(_) => return Err(src),
        }
    }
}
