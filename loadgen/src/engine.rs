//! One load thread: an edge-triggered epoll loop over a fixed table of
//! client connections, after the proxy's relay loop.
//!
//! Lifecycle of a connection:
//! 1. [`Stage::Closed`]: waiting in the connect queue. Connects are paced
//!    at `--connect-rate` so a server's listen backlog is never overrun,
//!    and spread over the `--sources` addresses.
//! 2. [`Stage::Connecting`]: a non-blocking connect; the socket is
//!    registered once for `IN|OUT|RDHUP|ET` and never modified.
//! 3. [`Stage::Open`]: messages flow. A message starts when its connection
//!    is free and either the last reply just arrived (closed loop) or one
//!    is due by the schedule (open loop; due messages queue on a busy
//!    connection and keep their intended send time). Its latency runs from
//!    that start, or intended, time until the whole reply is read and
//!    verified, and lands in the target's histogram unless it was issued
//!    during warm-up.
//! 4. Any error (refused, reset, timeout, short or wrong reply) is counted
//!    by kind; the connection is closed and goes back to step 1 after a
//!    short pause. In connect mode each message is a whole connection.
//!
//! The loop allocates nothing per message: payloads are slices of the
//! seeded [`Pattern`] (sent without copying, verified with `memcmp`),
//! reads land in one scratch buffer, and HTTP responses are parsed in
//! place. Sockets are read and written until `EAGAIN`; when nothing is
//! ready the loop sleeps in `epoll_pwait2` until the next scheduled event.

use crate::cli::{Config, Direction, Mode};
use crate::http::{self, Progress as HttpProgress, Response};
use crate::plan::Segment;
use crate::stats::{ErrorKind, Tally};
use echo_backend::pattern::{Pattern, PERIOD};
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::socket;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// Token of the stop waker.
const WAKER: u64 = u64::MAX;
/// Events fetched per wait.
const MAX_EVENTS: usize = 1024;
/// The read scratch buffer: one per thread, shared by all connections.
const SCRATCH: usize = 256 * 1024;
/// The most one write hands the kernel in bulk mode.
const BULK_WRITE: usize = 256 * 1024;
/// Pause before re-opening a connection that failed.
const RETRY: Duration = Duration::from_millis(50);
/// Connects in progress at once (per thread), on top of the pacing: a
/// server whose accept queue is full drops SYNs, its connects stall, and
/// this stops loadgen from piling more on.
const MAX_CONNECTING: usize = 256;
/// How far pacing lets connects bunch up after a quiet spell.
const CONNECT_BURST: Duration = Duration::from_millis(1);
/// Reads and writes one connection may do in a row before others get a turn.
const FAIR_ROUNDS: u32 = 64;

/// State shared by the load threads and the thread that runs them.
pub struct Shared {
    /// Set on Ctrl-C; every thread's waker is then woken.
    pub stop: AtomicBool,
    /// Per-thread progress counters, read for the progress line.
    pub progress: Vec<ThreadProgress>,
    gate: Gate,
}

impl Shared {
    pub fn new(threads: usize) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            progress: (0..threads).map(|_| ThreadProgress::default()).collect(),
            gate: Gate {
                barrier: Barrier::new(threads),
                at: Mutex::new(None),
            },
        }
    }
}

/// Counters a thread publishes once per loop turn.
#[derive(Default)]
pub struct ThreadProgress {
    /// Messages completed (warm-up included).
    pub messages: AtomicU64,
    /// Errors of all kinds.
    pub errors: AtomicU64,
    /// Payload bytes moved, both directions.
    pub bytes: AtomicU64,
}

/// Where all threads meet once their connections are set up, and agree on
/// the instant the timetable starts.
struct Gate {
    barrier: Barrier,
    at: Mutex<Option<Instant>>,
}

impl Gate {
    fn wait(&self) -> Instant {
        if self.barrier.wait().is_leader() {
            *self.at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        self.barrier.wait();
        let at = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        at.unwrap_or_else(Instant::now)
    }
}

/// What a thread hands back.
pub struct Outcome {
    /// One tally per target.
    pub tallies: Vec<Tally>,
    /// How far into the timetable the thread ran before it stopped.
    pub ran: Duration,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No socket: queued to connect, or (connect mode) between messages.
    Closed,
    /// The non-blocking connect is in progress.
    Connecting,
    /// Connected; messages flow.
    Open,
}

/// One client connection.
struct Conn {
    fd: Option<OwnedFd>,
    /// Changes on every close, so that stale events are recognised.
    gen: u32,
    stage: Stage,
    group: u32,
    /// Readable since the last `EAGAIN` (or a FIN/error was reported).
    readable: bool,
    writable: bool,
    /// The peer's FIN or an error was reported: a short read does not
    /// prove the socket drained.
    rdhup: bool,
    /// Waiting in the connect queue.
    in_queue: bool,
    /// Its first connect has finished, either way (for the set-up phase).
    settled: bool,
    /// A message is outstanding.
    busy: bool,
    /// The outstanding message counts (it was not issued during warm-up).
    measured: bool,
    /// Latency origin of the outstanding message: when it was sent (closed
    /// loop) or due (open loop).
    t_start: Instant,
    /// When the outstanding message was really sent (for `--timeout`).
    t_sent: Instant,
    t_connect: Instant,
    /// Offset of this connection's stream in the pattern.
    base: u64,
    /// Stream bytes written, read, and the stream offset at which the
    /// outstanding message ends (echo, connect) or request bytes written (http).
    sent: u64,
    recv: u64,
    out_end: u64,
    /// Open loop: messages due but not yet sent, and when the first is due.
    queued: u32,
    q_next: Instant,
}

/// One target's connections in this thread, its schedule and its tally.
struct Group {
    addr: SocketAddr,
    lo: usize,
    n: usize,
    request: Vec<u8>,
    tally: Tally,
    /// Inside one of this target's segments: new messages may start.
    issuing: bool,
    measure_from: Instant,
    seg_end: Instant,
    /// Open loop: the segment's schedule. Tick `k` is due at
    /// `origin + k * ns_per_tick` and goes to connection `lo + k % n`.
    origin: Instant,
    ns_per_tick: f64,
    tick: u64,
    next_tick: Instant,
    /// Open loop: the interval between one connection's messages.
    conn_period: Duration,
}

/// A failure to count: its kind and a description built only when it
/// happens.
type Fail = (ErrorKind, String);

/// One load thread.
pub struct Worker {
    cfg: Arc<Config>,
    plan: Arc<Vec<Segment>>,
    shared: Arc<Shared>,
    thread: usize,
    epoll: Epoll,
    waker: Arc<Waker>,
    pattern: Arc<Pattern>,
    conns: Vec<Conn>,
    /// HTTP mode: one response reader per connection.
    http: Vec<Response>,
    groups: Vec<Group>,
    scratch: Vec<u8>,
    connect_q: VecDeque<(u32, Instant)>,
    next_connect: Instant,
    connect_gap: Duration,
    next_source: usize,
    again: Vec<(u32, u32)>,
    again_next: Vec<(u32, u32)>,
    now: Instant,
    start: Instant,
    seg: usize,
    seg_active: bool,
    next_scan: Instant,
    scan_every: Duration,
    settled: usize,
    /// Connections in [`Stage::Connecting`].
    connecting: usize,
    /// Local progress counters, published once per loop turn.
    done_messages: u64,
    done_errors: u64,
    done_bytes: u64,
    msg: u64,
}

/// This thread's share of `total` when split over `threads`.
fn share(total: usize, threads: usize, idx: usize) -> usize {
    total / threads + usize::from(idx < total % threads)
}

/// A distinct stream offset for each connection incarnation, so that bytes
/// delivered to the wrong connection fail verification.
fn stream_base(thread: usize, slot: usize, gen: u32) -> u64 {
    let k = ((thread as u64) << 40) ^ ((slot as u64) << 12) ^ u64::from(gen);
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % PERIOD as u64
}

fn token(slot: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | slot as u64
}

impl Worker {
    /// Builds thread `thread` of `cfg.threads`: its share of every
    /// target's connections, all allocated here.
    pub fn new(
        cfg: Arc<Config>,
        plan: Arc<Vec<Segment>>,
        shared: Arc<Shared>,
        thread: usize,
        waker: Arc<Waker>,
        pattern: Arc<Pattern>,
    ) -> io::Result<Worker> {
        let epoll = Epoll::new()?;
        epoll.add(&*waker, epoll::IN | epoll::ET, WAKER)?;
        let now = Instant::now();
        let per_thread = share(cfg.connections, cfg.threads, thread);
        let mut groups = Vec::with_capacity(cfg.targets.len());
        let mut conns = Vec::with_capacity(per_thread * cfg.targets.len());
        for (gi, (name, addr)) in cfg.targets.iter().enumerate() {
            let lo = conns.len();
            for _ in 0..per_thread {
                let slot = conns.len();
                conns.push(Conn {
                    fd: None,
                    gen: 0,
                    stage: Stage::Closed,
                    group: gi as u32,
                    readable: false,
                    writable: false,
                    rdhup: false,
                    in_queue: false,
                    settled: false,
                    busy: false,
                    measured: false,
                    t_start: now,
                    t_sent: now,
                    t_connect: now,
                    base: stream_base(thread, slot, 0),
                    sent: 0,
                    recv: 0,
                    out_end: 0,
                    queued: 0,
                    q_next: now,
                });
            }
            // Each connection sends rate/connections messages a second; a
            // thread's ticks are its connections' messages interleaved.
            let rate = cfg.rate.unwrap_or(1) as f64;
            let ns_per_tick = 1e9 * cfg.connections as f64 / (rate * per_thread.max(1) as f64);
            let conn_period = Duration::from_nanos((1e9 * cfg.connections as f64 / rate) as u64);
            let host = name.clone();
            groups.push(Group {
                addr: *addr,
                lo,
                n: per_thread,
                request: if cfg.mode == Mode::Http {
                    http::request(&host, &cfg.http_path)
                } else {
                    Vec::new()
                },
                tally: Tally::new(),
                issuing: false,
                measure_from: now,
                seg_end: now,
                origin: now,
                ns_per_tick,
                tick: 0,
                next_tick: now,
                conn_period,
            });
        }
        let http = if cfg.mode == Mode::Http {
            (0..conns.len()).map(|_| Response::new()).collect()
        } else {
            Vec::new()
        };
        let rate_here = (cfg.connect_rate as f64 / cfg.threads as f64).max(1.0);
        let scan_every =
            (cfg.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let total = conns.len();
        Ok(Worker {
            msg: cfg.message_size as u64,
            cfg,
            plan,
            shared,
            thread,
            epoll,
            waker,
            pattern,
            http,
            groups,
            scratch: vec![0; SCRATCH],
            connect_q: VecDeque::with_capacity(total),
            next_connect: now,
            connect_gap: Duration::from_secs_f64(1.0 / rate_here),
            next_source: thread,
            again: Vec::with_capacity(total),
            again_next: Vec::with_capacity(total),
            conns,
            now,
            start: now,
            seg: 0,
            seg_active: false,
            next_scan: now,
            scan_every,
            settled: 0,
            connecting: 0,
            done_messages: 0,
            done_errors: 0,
            done_bytes: 0,
        })
    }

    /// Sets up the connections, waits for the other threads, then follows
    /// the timetable until it ends or the run is stopped.
    pub fn run(mut self) -> io::Result<Outcome> {
        // Wake when a message is due, not up to 50 µs later (the default
        // slack): in open loop that lateness would count as latency.
        let _ = netio::sys::thread::set_timer_slack(1);
        let mut events = Events::with_capacity(MAX_EVENTS);
        if self.cfg.mode != Mode::Connect {
            self.set_up(&mut events)?;
        }
        self.start = self.shared.gate.wait();
        self.next_scan = self.start;
        loop {
            self.now = Instant::now();
            if self.shared.stop.load(Ordering::Relaxed) || !self.advance() {
                break;
            }
            self.ticks();
            self.connects();
            if self.now >= self.next_scan {
                self.scan_timeouts();
                self.next_scan = self.now + self.scan_every;
            }
            self.run_again();
            let timeout = self.timeout();
            self.epoll.wait_for(&mut events, timeout)?;
            self.dispatch(&events);
        }
        self.publish();
        let ran = Instant::now().saturating_duration_since(self.start);
        Ok(Outcome {
            tallies: self.groups.into_iter().map(|g| g.tally).collect(),
            ran,
        })
    }

    /// Opens every connection (paced), until each has connected or failed
    /// once, or a deadline passes.
    fn set_up(&mut self, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            self.queue_connect(slot, now);
        }
        let total = self.conns.len();
        let pacing = self.connect_gap * total as u32;
        let deadline = now + pacing * 2 + self.cfg.timeout + Duration::from_secs(1);
        while self.settled < total {
            self.now = Instant::now();
            if self.now >= deadline || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            self.connects();
            if self.now >= self.next_scan {
                self.scan_timeouts();
                self.next_scan = self.now + self.scan_every;
            }
            let next = [self.next_connect_at(), Some(self.next_scan), Some(deadline)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(deadline);
            self.epoll
                .wait_for(events, Some(next.saturating_duration_since(self.now)))?;
            self.dispatch(events);
        }
        Ok(())
    }

    /// Handles what one `epoll_wait` returned, then publishes progress.
    fn dispatch(&mut self, events: &Events) {
        self.now = Instant::now();
        for (tok, bits) in events.iter() {
            if tok == WAKER {
                self.waker.drain();
            } else {
                self.on_event(tok, bits);
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let p = &self.shared.progress[self.thread];
        p.messages.store(self.done_messages, Ordering::Relaxed);
        p.errors.store(self.done_errors, Ordering::Relaxed);
        p.bytes.store(self.done_bytes, Ordering::Relaxed);
    }

    /// How long to sleep: until the next tick, segment boundary, paced
    /// connect or timeout scan; not at all if a connection stopped only to
    /// let others have a turn.
    fn timeout(&self) -> Option<Duration> {
        if !self.again_next.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.plan.get(self.seg).map(|s| self.start + s.end);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        consider(self.next_scan);
        if let Some(t) = self.next_connect_at() {
            consider(t);
        }
        if self.cfg.open_loop() {
            for g in self.groups.iter().filter(|g| g.issuing && g.n > 0) {
                if g.next_tick < g.seg_end {
                    consider(g.next_tick);
                }
            }
        }
        next.map(|t| t.saturating_duration_since(self.now))
    }

    /// Follows the timetable: starts and ends segments. Returns false once
    /// the last segment has ended.
    fn advance(&mut self) -> bool {
        loop {
            let Some(&s) = self.plan.get(self.seg) else {
                return false;
            };
            if self.now >= self.start + s.end {
                if self.seg_active {
                    self.groups[s.target].issuing = false;
                }
                self.seg += 1;
                self.seg_active = false;
                continue;
            }
            if !self.seg_active {
                self.seg_active = true;
                self.activate(s);
            }
            return true;
        }
    }

    fn activate(&mut self, s: Segment) {
        let gi = s.target;
        let g = &mut self.groups[gi];
        g.issuing = true;
        g.origin = self.start + s.start;
        g.measure_from = self.start + s.measure_from;
        g.seg_end = self.start + s.end;
        g.tick = 0;
        g.next_tick = g.origin;
        let (lo, n) = (g.lo, g.n);
        for slot in lo..lo + n {
            // Messages still queued from this target's previous window
            // waited through another target's whole window: count them as
            // timed out rather than let them skew this window's schedule.
            let left = std::mem::take(&mut self.conns[slot].queued);
            if left > 0 {
                let g = &mut self.groups[gi];
                g.tally.errors.add(ErrorKind::Timeout, u64::from(left));
                self.done_errors += u64::from(left);
                if g.tally.first_error.is_none() {
                    g.tally.first_error = Some(format!(
                        "{left} messages to {} were still queued after a window",
                        g.addr
                    ));
                }
            }
            self.kick(slot);
        }
    }

    /// Open loop: hands out every message that has come due.
    fn ticks(&mut self) {
        if !self.cfg.open_loop() {
            return;
        }
        for gi in 0..self.groups.len() {
            loop {
                let g = &mut self.groups[gi];
                if !g.issuing || g.n == 0 || g.next_tick > self.now || g.next_tick >= g.seg_end {
                    break;
                }
                let due = g.next_tick;
                let slot = g.lo + (g.tick % g.n as u64) as usize;
                g.tick += 1;
                g.next_tick =
                    g.origin + Duration::from_nanos((g.tick as f64 * g.ns_per_tick) as u64);
                let c = &mut self.conns[slot];
                if c.queued == 0 {
                    c.q_next = due;
                }
                c.queued += 1;
                self.kick(slot);
            }
        }
    }

    /// Starts a message on `slot` if it is free and one may start, and
    /// moves whatever can move.
    fn kick(&mut self, slot: usize) {
        let c = &self.conns[slot];
        match (self.cfg.mode, c.stage) {
            (Mode::Connect, Stage::Closed) if !c.in_queue && !c.busy => {
                self.start_message(slot);
            }
            (Mode::Bulk | Mode::Connect, Stage::Open) => self.pump(slot),
            (Mode::Echo | Mode::Http, Stage::Open) if !c.busy => {
                self.start_message(slot);
                self.pump(slot);
            }
            _ => {}
        }
    }

    /// Begins the next message on a free connection, if one is due (open
    /// loop) or the target is being loaded (closed loop).
    fn start_message(&mut self, slot: usize) {
        let now = Instant::now();
        let c = &mut self.conns[slot];
        let g = &self.groups[c.group as usize];
        let t_start = if self.cfg.open_loop() {
            if c.queued == 0 {
                return;
            }
            let t = c.q_next;
            c.queued -= 1;
            c.q_next += g.conn_period;
            t
        } else {
            if !g.issuing {
                return;
            }
            now
        };
        c.busy = true;
        c.measured = t_start >= g.measure_from;
        if c.measured && self.cfg.open_loop() {
            let lag = now.saturating_duration_since(t_start).as_nanos() as u64;
            let gi = c.group as usize;
            self.groups[gi].tally.send_lag.saturating_record(lag.max(1));
        }
        let c = &mut self.conns[slot];
        c.t_start = t_start;
        c.t_sent = now;
        match self.cfg.mode {
            Mode::Echo => c.out_end = c.sent + self.msg,
            Mode::Http => {
                c.sent = 0;
                self.http[slot].reset();
            }
            Mode::Connect => {
                c.sent = 0;
                c.recv = 0;
                c.out_end = self.msg;
                self.connect(slot);
            }
            Mode::Bulk => {}
        }
    }

    /// The message on `slot` is complete and verified.
    fn complete(&mut self, slot: usize) {
        let now = Instant::now();
        let c = &mut self.conns[slot];
        c.busy = false;
        self.done_messages += 1;
        if c.measured {
            let ns = now.saturating_duration_since(c.t_start).as_nanos() as u64;
            self.groups[c.group as usize].tally.record(ns);
        }
        if self.cfg.mode == Mode::Connect {
            self.close(slot);
            self.kick(slot);
        } else if self.conns[slot].stage == Stage::Open {
            // (A connection the server closes starts its next message
            // once it is open again.)
            self.start_message(slot);
        }
    }

    fn queue_connect(&mut self, slot: usize, at: Instant) {
        let c = &mut self.conns[slot];
        if !c.in_queue {
            c.in_queue = true;
            self.connect_q.push_back((slot as u32, at));
        }
    }

    /// When the connect queue's front may go next.
    fn next_connect_at(&self) -> Option<Instant> {
        let &(_, at) = self.connect_q.front()?;
        if self.cfg.mode == Mode::Connect {
            return Some(at);
        }
        // At the cap, a finishing connect (an event) is what lets the next go.
        (self.connecting < MAX_CONNECTING).then(|| at.max(self.next_connect))
    }

    /// Opens queued connections as pacing allows.
    fn connects(&mut self) {
        while let Some(at) = self.next_connect_at() {
            if at > self.now {
                return;
            }
            let Some((slot, _)) = self.connect_q.pop_front() else {
                return;
            };
            let slot = slot as usize;
            self.conns[slot].in_queue = false;
            if self.conns[slot].stage != Stage::Closed {
                continue;
            }
            if self.cfg.mode == Mode::Connect {
                self.kick(slot);
            } else {
                // A token bucket holding a millisecond's worth of connects.
                let floor = self.now.checked_sub(CONNECT_BURST).unwrap_or(self.now);
                self.next_connect = self.next_connect.max(floor) + self.connect_gap;
                self.connect(slot);
            }
        }
    }

    /// Starts a non-blocking connect on `slot`.
    fn connect(&mut self, slot: usize) {
        let gi = self.conns[slot].group as usize;
        let addr = self.groups[gi].addr;
        let res = if self.cfg.sources.is_empty() {
            socket::connect(&addr)
        } else {
            let src = self.cfg.sources[self.next_source % self.cfg.sources.len()];
            self.next_source = self.next_source.wrapping_add(1);
            socket::connect_from(&addr, &src)
        };
        let c = &mut self.conns[slot];
        c.t_connect = Instant::now();
        match res {
            Ok((fd, done)) => {
                if let Err(e) = self.epoll.add(&fd, epoll::SOCKET, token(slot, c.gen)) {
                    let what = format!("registering a connection to {addr}: {e}");
                    self.fail(slot, ErrorKind::Other, what);
                    return;
                }
                c.fd = Some(fd);
                c.stage = Stage::Connecting;
                self.connecting += 1;
                c.readable = false;
                c.writable = false;
                c.rdhup = false;
                if done {
                    self.on_connected(slot);
                }
            }
            Err(e) => {
                let what = format!("connect to {addr}: {e}");
                self.fail(slot, ErrorKind::of(&e), what);
            }
        }
    }

    fn on_connected(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.stage == Stage::Connecting {
            self.connecting -= 1;
        }
        c.stage = Stage::Open;
        if !c.settled {
            c.settled = true;
            self.settled += 1;
        }
        let g = &mut self.groups[c.group as usize];
        let counted = if self.cfg.mode == Mode::Connect {
            c.measured
        } else {
            g.issuing && self.now >= g.measure_from
        };
        if counted {
            g.tally.connects += 1;
        }
        if let Some(fd) = c.fd.as_ref() {
            let _ = socket::set_nodelay(fd);
        }
        if self.cfg.mode == Mode::Connect && self.msg == 0 {
            self.complete(slot);
            return;
        }
        self.kick(slot);
    }

    fn on_event(&mut self, tok: u64, bits: u32) {
        let slot = tok as u32 as usize;
        let gen = (tok >> 32) as u32;
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.gen != gen || c.stage == Stage::Closed {
            return; // Stale: closed since.
        }
        let ev = epoll::Readiness::of(bits);
        c.readable |= ev.readable;
        c.writable |= ev.writable;
        c.rdhup |= ev.hangup;
        if c.stage == Stage::Connecting {
            if bits & (epoll::ERR | epoll::HUP) != 0 {
                let err =
                    c.fd.as_ref()
                        .and_then(|fd| socket::take_error(fd).ok().flatten())
                        .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused));
                let addr = self.groups[c.group as usize].addr;
                self.fail(
                    slot,
                    ErrorKind::of(&err),
                    format!("connect to {addr}: {err}"),
                );
            } else if bits & epoll::OUT != 0 {
                self.on_connected(slot);
            }
            return;
        }
        self.pump(slot);
    }

    /// Moves whatever can move on `slot`: writes what is pending, reads
    /// until `EAGAIN`, verifies, completes and starts messages.
    fn pump(&mut self, slot: usize) {
        match self.pump_inner(slot) {
            Ok(true) => {
                let gen = self.conns[slot].gen;
                self.again_next.push((slot as u32, gen));
            }
            Ok(false) => {}
            Err((kind, what)) => self.fail(slot, kind, what),
        }
    }

    /// `Ok(true)`: stopped only to be fair; pump again soon.
    fn pump_inner(&mut self, slot: usize) -> Result<bool, Fail> {
        for _ in 0..FAIR_ROUNDS {
            if self.conns[slot].stage != Stage::Open {
                return Ok(false);
            }
            self.write_out(slot)?;
            let c = &self.conns[slot];
            if c.stage != Stage::Open {
                return Ok(false);
            }
            if c.readable && self.may_read(slot) {
                self.read_once(slot)?;
                continue;
            }
            if !(self.conns[slot].writable && self.has_output(slot)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn run_again(&mut self) {
        std::mem::swap(&mut self.again, &mut self.again_next);
        let mut list = std::mem::take(&mut self.again);
        for &(slot, gen) in &list {
            let c = &self.conns[slot as usize];
            if c.gen == gen && c.stage == Stage::Open {
                self.pump(slot as usize);
            }
        }
        list.clear();
        self.again = list;
    }

    fn may_read(&self, slot: usize) -> bool {
        let c = &self.conns[slot];
        // Bulk download stops reading outside its windows: backpressure
        // pauses the source instead of loading the machine.
        !(self.cfg.mode == Mode::Bulk
            && self.cfg.direction == Direction::Down
            && !self.groups[c.group as usize].issuing)
    }

    fn has_output(&self, slot: usize) -> bool {
        let c = &self.conns[slot];
        match self.cfg.mode {
            Mode::Echo | Mode::Connect => c.sent < c.out_end,
            Mode::Http => c.busy && (c.sent as usize) < self.groups[c.group as usize].request.len(),
            Mode::Bulk => {
                self.cfg.direction != Direction::Down && self.groups[c.group as usize].issuing
            }
        }
    }

    /// Bulk bytes count while the target's measured window is on.
    fn bulk_measuring(&self, gi: usize) -> bool {
        let g = &self.groups[gi];
        g.issuing && self.now >= g.measure_from
    }

    /// Writes pending bytes until done or the socket is full.
    fn write_out(&mut self, slot: usize) -> Result<(), Fail> {
        for _ in 0..16 {
            if !self.conns[slot].writable || !self.has_output(slot) {
                return Ok(());
            }
            let gi = self.conns[slot].group as usize;
            let bulk_counts = self.cfg.mode == Mode::Bulk && self.bulk_measuring(gi);
            let c = &mut self.conns[slot];
            let g = &mut self.groups[gi];
            let buf: &[u8] = match self.cfg.mode {
                Mode::Http => &g.request[c.sent as usize..],
                Mode::Bulk => {
                    let s = self.pattern.slice_at(c.base + c.sent);
                    &s[..s.len().min(BULK_WRITE)]
                }
                Mode::Echo | Mode::Connect => {
                    let s = self.pattern.slice_at(c.base + c.sent);
                    &s[..s.len().min((c.out_end - c.sent) as usize)]
                }
            };
            let Some(fd) = c.fd.as_ref() else {
                return Ok(());
            };
            match socket::write(fd, buf) {
                Ok(n) => {
                    c.sent += n as u64;
                    self.done_bytes += n as u64;
                    let counts = if self.cfg.mode == Mode::Bulk {
                        bulk_counts
                    } else {
                        c.measured
                    };
                    if counts {
                        g.tally.bytes_sent += n as u64;
                    }
                    if n < buf.len() {
                        c.writable = false;
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.writable = false;
                    return Ok(());
                }
                Err(e) => return Err((ErrorKind::of(&e), format!("write to {}: {e}", g.addr))),
            }
        }
        Ok(())
    }

    /// One read into the scratch buffer, then its bytes checked.
    fn read_once(&mut self, slot: usize) -> Result<(), Fail> {
        let c = &mut self.conns[slot];
        let Some(fd) = c.fd.as_ref() else {
            return Ok(());
        };
        let addr = self.groups[c.group as usize].addr;
        match socket::read(fd, &mut self.scratch) {
            Ok(0) => {
                c.readable = false;
                self.on_eof(slot)
            }
            Ok(n) => {
                // Edge-triggered: a short read drained the socket, unless a
                // FIN is pending, which only a read of 0 shows.
                if n < self.scratch.len() && !c.rdhup {
                    c.readable = false;
                }
                self.done_bytes += n as u64;
                let scratch = std::mem::take(&mut self.scratch);
                let res = self.on_data(slot, &scratch[..n]);
                self.scratch = scratch;
                res
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.readable = false;
                Ok(())
            }
            Err(e) => Err((ErrorKind::of(&e), format!("read from {addr}: {e}"))),
        }
    }

    /// Checks bytes that just arrived on `slot`.
    fn on_data(&mut self, slot: usize, data: &[u8]) -> Result<(), Fail> {
        let gi = self.conns[slot].group as usize;
        let bulk_counts = self.cfg.mode == Mode::Bulk && self.bulk_measuring(gi);
        let c = &mut self.conns[slot];
        let g = &mut self.groups[gi];
        let n = data.len() as u64;
        match (self.cfg.mode, self.cfg.direction) {
            (Mode::Http, _) => {
                if !c.busy {
                    return Err((
                        ErrorKind::Mismatch,
                        format!("{} sent {n} bytes nobody asked for", g.addr),
                    ));
                }
                if c.measured {
                    g.tally.bytes_received += n;
                }
                let progress = self.http[slot].feed(data).map_err(|e| {
                    (
                        ErrorKind::Mismatch,
                        format!("bad HTTP response from {}: {e}", g.addr),
                    )
                })?;
                match progress {
                    HttpProgress::More => {}
                    HttpProgress::Done => self.complete(slot),
                    HttpProgress::DoneClose => {
                        // The server closes after this response: re-open
                        // (not an error), then carry on.
                        self.close(slot);
                        self.complete(slot);
                        self.queue_connect(slot, self.now);
                    }
                }
                Ok(())
            }
            (Mode::Bulk, Direction::Up) => Err((
                ErrorKind::Mismatch,
                format!("{} sent {n} bytes to an upload", g.addr),
            )),
            (Mode::Bulk, Direction::Down) => {
                let at0 = c.recv;
                self.pattern.verify(at0, data).map_err(|at| {
                    let want = self.pattern.slice_at(at)[0];
                    mismatch(g.addr, at, want, data[(at - at0) as usize])
                })?;
                c.recv += n;
                if bulk_counts {
                    g.tally.bytes_received += n;
                }
                Ok(())
            }
            _ => {
                // Echo, connect and bulk both: the reply is our own stream.
                if c.recv + n > c.sent {
                    return Err((
                        ErrorKind::Mismatch,
                        format!(
                            "{} echoed {} bytes more than were sent",
                            g.addr,
                            c.recv + n - c.sent
                        ),
                    ));
                }
                let at0 = c.base + c.recv;
                self.pattern.verify(at0, data).map_err(|at| {
                    let want = self.pattern.slice_at(at)[0];
                    mismatch(g.addr, at - c.base, want, data[(at - at0) as usize])
                })?;
                c.recv += n;
                let counts = if self.cfg.mode == Mode::Bulk {
                    bulk_counts
                } else {
                    c.measured
                };
                if counts {
                    g.tally.bytes_received += n;
                }
                if self.cfg.mode != Mode::Bulk && c.busy && c.recv == c.out_end {
                    self.complete(slot);
                }
                Ok(())
            }
        }
    }

    fn on_eof(&mut self, slot: usize) -> Result<(), Fail> {
        let c = &self.conns[slot];
        let addr = self.groups[c.group as usize].addr;
        match self.cfg.mode {
            Mode::Http if c.busy => {
                if self.http[slot].eof() {
                    self.close(slot);
                    self.complete(slot);
                    self.queue_connect(slot, self.now);
                    Ok(())
                } else {
                    Err((
                        ErrorKind::Short,
                        format!("{addr} closed the connection in the middle of a response"),
                    ))
                }
            }
            Mode::Http => {
                // A keep-alive connection closed between requests: re-open.
                self.close(slot);
                self.queue_connect(slot, self.now);
                Ok(())
            }
            Mode::Echo | Mode::Connect if c.busy => Err((
                ErrorKind::Short,
                format!(
                    "{addr} closed the connection after {} of {} bytes of a reply",
                    self.msg - (c.out_end - c.recv),
                    self.msg
                ),
            )),
            Mode::Bulk => Err((
                ErrorKind::Short,
                format!("{addr} closed the stream after {} bytes", c.recv),
            )),
            _ => Err((
                ErrorKind::Other,
                format!("{addr} closed an idle connection"),
            )),
        }
    }

    /// Counts messages or connects outstanding for longer than `--timeout`.
    fn scan_timeouts(&mut self) {
        let limit = self.cfg.timeout;
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            let addr = self.groups[c.group as usize].addr;
            if c.stage == Stage::Connecting
                && self.now.saturating_duration_since(c.t_connect) > limit
            {
                self.fail(
                    slot,
                    ErrorKind::Timeout,
                    format!("connect to {addr} timed out after {limit:?}"),
                );
            } else if c.stage == Stage::Open
                && c.busy
                && self.now.saturating_duration_since(c.t_sent) > limit
            {
                self.fail(
                    slot,
                    ErrorKind::Timeout,
                    format!("no reply from {addr} within {limit:?}"),
                );
            }
        }
    }

    /// Closes `slot`'s socket; stale events for it are dropped by generation.
    fn close(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.stage == Stage::Connecting {
            self.connecting -= 1;
        }
        c.fd = None;
        c.stage = Stage::Closed;
        c.gen = c.gen.wrapping_add(1);
        c.readable = false;
        c.writable = false;
        c.rdhup = false;
        c.sent = 0;
        c.recv = 0;
        c.out_end = 0;
        c.base = stream_base(self.thread, slot, c.gen);
    }

    /// Counts an error on `slot`, closes it and queues a fresh connection.
    fn fail(&mut self, slot: usize, kind: ErrorKind, what: String) {
        let c = &mut self.conns[slot];
        c.busy = false;
        if !c.settled {
            c.settled = true;
            self.settled += 1;
        }
        let g = &mut self.groups[c.group as usize];
        g.tally.error(kind, || what);
        self.done_errors += 1;
        self.close(slot);
        self.queue_connect(slot, self.now + RETRY);
    }
}

/// Describes a verification failure at offset `at` of a connection's stream.
fn mismatch(addr: SocketAddr, at: u64, want: u8, got: u8) -> Fail {
    (
        ErrorKind::Mismatch,
        format!("{addr}: byte {at} of a connection's stream differs: expected {want:#04x}, got {got:#04x}"),
    )
}
