//! One load thread: an edge-triggered epoll loop over a fixed table of
//! client connections ([`crate::table`]), generic over the mode's
//! [`Protocol`], which decides what each connection sends and what its
//! replies mean. Moving the bytes is in [`crate::pump`].
//!
//! Lifecycle of a connection:
//! 1. [`Stage::Closed`]: waiting in the connect queue ([`crate::pacing`]),
//!    spread over the `--sources` addresses.
//! 2. [`Stage::Connecting`]: a non-blocking connect; the socket is
//!    registered once for `IN|OUT|RDHUP|ET` and never modified.
//! 3. [`Stage::Open`]: messages flow. A message starts when its connection
//!    is free and either the last reply just arrived (closed loop) or one
//!    is due by the schedule (open loop, [`crate::schedule`]). Its latency
//!    runs from that start, or intended, time until the whole reply is
//!    read and verified, and lands in the target's histogram unless it was
//!    issued during warm-up.
//! 4. Any error (refused, reset, timeout, short or wrong reply) is counted
//!    by kind; the connection is closed and goes back to step 1 after a
//!    short pause. With a connection per message ([`Lifecycle`]) every
//!    message runs through all of these steps.
//!
//! The loop allocates nothing per message: payloads are slices of the
//! seeded [`Pattern`] (sent without copying, verified with `memcmp`),
//! reads land in one scratch buffer, and HTTP responses are parsed in
//! place. Sockets are read and written until `EAGAIN`; when nothing is
//! ready the loop sleeps in `epoll_pwait2` until the next scheduled event.

use crate::cli::Config;
use crate::mode::{Kick, Lifecycle, Protocol};
use crate::pacing::Pacer;
use crate::plan::{self, Interval, Segment};
use crate::schedule::{self, Ticks};
use crate::shared::{Finished, Note, Shared};
use crate::stats::{ErrorKind, Tally};
use crate::table::{Conn, Stage, Target};
use echo_backend::pattern::Pattern;
use netio::again::AgainQueue;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::socket;
use netio::{Source, Token};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Events fetched per wait.
const MAX_EVENTS: usize = 1024;
/// The read scratch buffer: one per thread, shared by all connections.
const SCRATCH: usize = 256 * 1024;

/// What a load thread is built from.
pub struct Setup {
    pub cfg: Arc<Config>,
    pub plan: Arc<Vec<Segment>>,
    pub shared: Arc<Shared>,
    /// Which thread of `cfg.threads` this is.
    pub thread: usize,
    /// Woken (by the signal thread) to stop the run.
    pub waker: Arc<Waker>,
    pub pattern: Arc<Pattern>,
    /// Where the tally of each interval goes when it is cut.
    pub notes: mpsc::Sender<Note>,
}

/// One load thread.
pub struct Worker<P> {
    pub(crate) cfg: Arc<Config>,
    plan: Arc<Vec<Segment>>,
    shared: Arc<Shared>,
    pub(crate) thread: usize,
    pub(crate) epoll: Epoll,
    waker: Arc<Waker>,
    /// The mode.
    pub(crate) proto: P,
    pub(crate) conns: Vec<Conn>,
    pub(crate) targets: Vec<Target>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) pacer: Pacer,
    pub(crate) next_source: usize,
    /// Connections that stopped only to let others have a turn.
    pub(crate) again: AgainQueue,
    pub(crate) now: Instant,
    pub(crate) start: Instant,
    seg: usize,
    seg_active: bool,
    /// The plan's measured time in pieces; each target's tally is cut
    /// and sent at the start of its next piece, and at the end.
    pub(crate) intervals: Vec<Interval>,
    /// The next interval to begin.
    pub(crate) next_interval: usize,
    /// Per target: the interval its tally is counting, once one began.
    pub(crate) open: Vec<Option<usize>>,
    pub(crate) notes: mpsc::Sender<Note>,
    next_scan: Instant,
    scan_every: Duration,
    pub(crate) settled: usize,
    /// Local progress counters, published once per loop turn.
    pub(crate) done_messages: u64,
    pub(crate) done_errors: u64,
    pub(crate) done_sent: u64,
    pub(crate) done_received: u64,
    /// `--reset-ratio` accumulated over the messages started: each time
    /// it reaches one, that message's connection is reset.
    reset_credit: f64,
}

impl<P: Protocol> Worker<P> {
    /// Builds thread `setup.thread` of `cfg.threads`: its share of every
    /// target's connections, all allocated here.
    pub fn new(setup: Setup) -> io::Result<Worker<P>> {
        let Setup {
            cfg,
            plan,
            shared,
            thread,
            waker,
            pattern,
            notes,
        } = setup;
        let epoll = Epoll::new()?;
        epoll.add(&*waker, epoll::IN | epoll::ET, Token::CONTROL)?;
        let now = Instant::now();
        let per_thread = netio::budget::share(cfg.connections, cfg.threads, thread);
        let mut targets = Vec::with_capacity(cfg.targets.len());
        let mut conns = Vec::with_capacity(per_thread * cfg.targets.len());
        for (gi, (_, addr)) in cfg.targets.iter().enumerate() {
            let lo = conns.len();
            for slot in lo..lo + per_thread {
                conns.push(Conn::new(thread, slot, gi as u32, now));
            }
            targets.push(Target {
                addr: *addr,
                lo,
                n: per_thread,
                tally: Tally::new(),
                issuing: false,
                measure_from: now,
                seg_end: now,
                ticks: Ticks::new(&cfg, per_thread, now),
            });
        }
        let total = conns.len();
        let rate_here = (cfg.connect_rate as f64 / cfg.threads as f64).max(1.0);
        let gap = match P::LIFECYCLE {
            Lifecycle::Kept => Some(Duration::from_secs_f64(1.0 / rate_here)),
            Lifecycle::PerMessage => None,
        };
        let scan_every =
            (cfg.timeout / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let intervals = plan::intervals(&plan);
        let open = vec![None; targets.len()];
        Ok(Worker {
            proto: P::new(&cfg, pattern, total),
            cfg,
            plan,
            shared,
            thread,
            epoll,
            waker,
            targets,
            scratch: vec![0; SCRATCH],
            pacer: Pacer::new(gap, total, now),
            next_source: thread,
            again: AgainQueue::with_slots(total),
            conns,
            now,
            start: now,
            seg: 0,
            seg_active: false,
            intervals,
            next_interval: 0,
            open,
            notes,
            next_scan: now,
            scan_every,
            settled: 0,
            done_messages: 0,
            done_errors: 0,
            done_sent: 0,
            done_received: 0,
            reset_credit: 0.0,
        })
    }

    /// Sets up the connections, waits for the other threads, then follows
    /// the timetable until it ends or the run is stopped.
    pub fn run(mut self) -> io::Result<Finished> {
        // Wake when a message is due, not up to 50 µs later (the default
        // slack): in open loop that lateness would count as latency.
        let _ = netio::sys::thread::set_timer_slack(1);
        let mut events = Events::with_capacity(MAX_EVENTS);
        if P::LIFECYCLE == Lifecycle::Kept {
            self.set_up(&mut events)?;
        }
        self.start = self.shared.start_together();
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
        self.send_last_cuts(ran);
        Ok(Finished { ran })
    }

    /// Opens every connection (paced), until each has connected or failed
    /// once, or a deadline passes.
    fn set_up(&mut self, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        for slot in 0..self.conns.len() {
            self.queue_connect(slot, now);
        }
        let total = self.conns.len();
        let pacing = self.pacer.time_for(total);
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
            let next = [self.pacer.next_at(), Some(self.next_scan), Some(deadline)]
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
            match Source::of(tok) {
                Source::Socket(t) => self.on_event(t, bits),
                Source::Control => self.waker.drain(),
                Source::Listener => {}
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        let p = &self.shared.progress[self.thread];
        p.messages.store(self.done_messages, Ordering::Relaxed);
        p.errors.store(self.done_errors, Ordering::Relaxed);
        p.sent.store(self.done_sent, Ordering::Relaxed);
        p.received.store(self.done_received, Ordering::Relaxed);
    }

    /// How long to sleep: until the next tick, segment boundary, paced
    /// connect or timeout scan; not at all if a connection stopped only to
    /// let others have a turn.
    fn timeout(&self) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.plan.get(self.seg).map(|s| self.start + s.end);
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        consider(self.next_scan);
        if let Some(i) = self.intervals.get(self.next_interval) {
            consider(self.start + i.start);
        }
        if let Some(t) = self.pacer.next_at() {
            consider(t);
        }
        if self.cfg.open_loop() {
            for t in self.targets.iter().filter(|t| t.issuing && t.n > 0) {
                if let Some(due) = t.ticks.next_before(t.seg_end) {
                    consider(due);
                }
            }
        }
        next.map(|t| t.saturating_duration_since(self.now))
    }

    /// Follows the timetable: starts and ends segments. Returns false once
    /// the last segment has ended.
    fn advance(&mut self) -> bool {
        self.cut_intervals();
        loop {
            let Some(&s) = self.plan.get(self.seg) else {
                return false;
            };
            if self.now >= self.start + s.end {
                if self.seg_active {
                    self.targets[s.target].issuing = false;
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
        let t = &mut self.targets[s.target];
        t.issuing = true;
        t.measure_from = self.start + s.measure_from;
        t.seg_end = self.start + s.end;
        t.ticks.restart(self.start + s.start);
        let (lo, n) = (t.lo, t.n);
        for slot in lo..lo + n {
            // Messages still queued from this target's previous window
            // waited through another target's whole window: count them as
            // timed out rather than let them skew this window's schedule.
            let left = self.conns[slot].backlog.clear();
            if left > 0 {
                let t = &mut self.targets[s.target];
                t.tally.errors.add(ErrorKind::Timeout, u64::from(left));
                t.tally.error_times_dropped += u64::from(left);
                self.done_errors += u64::from(left);
                if t.tally.first_error.is_none() {
                    t.tally.first_error = Some(format!(
                        "{left} messages to {} were still queued after a window",
                        t.addr
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
        for gi in 0..self.targets.len() {
            loop {
                let t = &mut self.targets[gi];
                if !t.issuing {
                    break;
                }
                let Some((k, due)) = t.ticks.take(self.now, t.seg_end, t.n) else {
                    break;
                };
                let slot = t.lo + k;
                self.conns[slot].backlog.push(due);
                self.kick(slot);
            }
        }
    }

    /// Does what the mode says should happen for `slot` now.
    pub(crate) fn kick(&mut self, slot: usize) {
        match self.proto.kick(&self.conns[slot]) {
            Kick::Nothing => {}
            Kick::Pump => self.pump(slot),
            Kick::Start => self.start_message(slot),
            Kick::StartAndPump => {
                self.start_message(slot);
                self.pump(slot);
            }
        }
    }

    /// Begins the next message on a free connection, if one is due (open
    /// loop) or the target is being loaded (closed loop). A message that
    /// starts on a closed connection (one connection per message) opens it.
    pub(crate) fn start_message(&mut self, slot: usize) {
        let now = Instant::now();
        let c = &mut self.conns[slot];
        let t = &mut self.targets[c.group as usize];
        let t_start = if self.cfg.open_loop() {
            let Some(due) = c.backlog.pop(t.ticks.conn_period) else {
                return;
            };
            due
        } else {
            if !t.issuing {
                return;
            }
            now
        };
        c.busy = true;
        // Exactly `--reset-ratio` of the messages, evenly spread.
        self.reset_credit += self.cfg.reset_ratio;
        c.abort = self.reset_credit >= 1.0;
        if c.abort {
            self.reset_credit -= 1.0;
        }
        c.measured = t_start >= t.measure_from;
        if c.measured && self.cfg.open_loop() {
            schedule::record_lag(&mut t.tally, now, t_start);
        }
        c.t_start = t_start;
        c.t_sent = now;
        self.proto.start(slot, &mut c.stream);
        if c.stage == Stage::Closed {
            self.connect(slot);
        }
    }

    /// The message on `slot` is complete and verified.
    pub(crate) fn complete(&mut self, slot: usize) {
        let now = Instant::now();
        let c = &mut self.conns[slot];
        c.busy = false;
        self.done_messages += 1;
        if c.measured {
            let ns = now.saturating_duration_since(c.t_start).as_nanos() as u64;
            self.targets[c.group as usize].tally.record(ns);
        }
        match P::LIFECYCLE {
            Lifecycle::PerMessage => {
                self.close(slot);
                self.kick(slot);
            }
            // (A connection the server closes starts its next message
            // once it is open again.)
            Lifecycle::Kept if self.conns[slot].stage == Stage::Open => self.start_message(slot),
            Lifecycle::Kept => {}
        }
    }

    fn on_event(&mut self, tok: Token, bits: u32) {
        let slot = tok.index();
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.gen != tok.gen || c.stage == Stage::Closed {
            return; // Stale: closed since.
        }
        c.ready.apply(bits);
        if c.stage == Stage::Connecting {
            if bits & (epoll::ERR | epoll::HUP) != 0 {
                let err =
                    c.fd.as_ref()
                        .and_then(|fd| socket::take_error(fd).ok().flatten())
                        .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused));
                let addr = self.targets[c.group as usize].addr;
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

    /// Counts messages or connects outstanding for longer than `--timeout`.
    fn scan_timeouts(&mut self) {
        let limit = self.cfg.timeout;
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            let addr = self.targets[c.group as usize].addr;
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
}
