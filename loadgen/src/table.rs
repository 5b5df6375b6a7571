//! The connection table of one load thread: each client connection's
//! state ([`Conn`]) and each target's share of them ([`Target`]), and how
//! a connection is opened (as [`crate::pacing`] allows), found connected,
//! closed and failed. A mode reads and writes the [`Stream`] positions and
//! the message flags; only this file and the engine change a [`Stage`].

use crate::engine::Worker;
use crate::mode::{Lifecycle, Protocol};
use crate::schedule::{Backlog, Ticks};
use crate::stats::{ErrorKind, Tally};
use echo_backend::pattern::PERIOD;
use netio::sys::{epoll, socket};
use netio::{Ready, Side, Token};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// Pause before re-opening a connection that failed.
const RETRY: Duration = Duration::from_millis(50);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No socket: queued to connect, or (a connection per message)
    /// between messages.
    Closed,
    /// The non-blocking connect is in progress.
    Connecting,
    /// Connected; messages flow.
    Open,
}

/// How far a connection's byte stream has got. Offsets count from the
/// start of the connection; `base` is where its stream starts in the
/// seeded pattern. All are reset when the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Offset of this connection's stream in the pattern.
    pub base: u64,
    /// Bytes written (HTTP: of the current request).
    pub sent: u64,
    /// Bytes read and verified.
    pub recv: u64,
    /// Where the outstanding message ends (echo, connect).
    pub out_end: u64,
}

impl Stream {
    fn at(base: u64) -> Stream {
        Stream {
            base,
            sent: 0,
            recv: 0,
            out_end: 0,
        }
    }
}

/// One client connection.
pub struct Conn {
    pub fd: Option<OwnedFd>,
    /// Changes on every close, so that stale events are recognised.
    pub gen: u32,
    pub stage: Stage,
    /// Index of its target.
    pub group: u32,
    pub ready: Ready,
    /// Waiting in the connect queue.
    pub in_queue: bool,
    /// Its first connect has finished, either way (for the set-up phase).
    pub settled: bool,
    /// A message is outstanding.
    pub busy: bool,
    /// The outstanding message counts (it was not issued during warm-up).
    pub measured: bool,
    /// The outstanding message's connection is to be reset once the
    /// message is written (`--reset-ratio`).
    pub abort: bool,
    /// Latency origin of the outstanding message: when it was sent (closed
    /// loop) or due (open loop).
    pub t_start: Instant,
    /// When the outstanding message was really sent (for `--timeout`).
    pub t_sent: Instant,
    /// When the last connect started.
    pub t_connect: Instant,
    pub stream: Stream,
    /// Open loop: messages due but not yet sent.
    pub backlog: Backlog,
}

impl Conn {
    /// A closed connection of target `group`, in table slot `slot` of
    /// load thread `thread`.
    pub fn new(thread: usize, slot: usize, group: u32, now: Instant) -> Conn {
        Conn {
            fd: None,
            gen: 0,
            stage: Stage::Closed,
            group,
            ready: Ready::default(),
            in_queue: false,
            settled: false,
            busy: false,
            measured: false,
            abort: false,
            t_start: now,
            t_sent: now,
            t_connect: now,
            stream: Stream::at(stream_base(thread, slot, 0)),
            backlog: Backlog::new(now),
        }
    }

    /// Drops the socket and starts a new generation with a fresh stream
    /// (the message flags and the backlog are left as they are).
    pub fn reset(&mut self, thread: usize, slot: usize) {
        self.fd = None;
        self.stage = Stage::Closed;
        self.gen = self.gen.wrapping_add(1);
        self.ready = Ready::default();
        self.stream = Stream::at(stream_base(thread, slot, self.gen));
    }
}

/// A distinct stream offset for each connection incarnation, so that bytes
/// delivered to the wrong connection fail verification.
fn stream_base(thread: usize, slot: usize, gen: u32) -> u64 {
    let k = ((thread as u64) << 40) ^ ((slot as u64) << 12) ^ u64::from(gen);
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15) % PERIOD as u64
}

/// One target's connections in this thread (slots `lo..lo + n`), its
/// place in the timetable and its tally.
pub struct Target {
    pub addr: SocketAddr,
    pub lo: usize,
    pub n: usize,
    pub tally: Tally,
    /// Inside one of this target's segments: new messages may start.
    pub issuing: bool,
    pub measure_from: Instant,
    pub seg_end: Instant,
    /// Open loop: the segment's schedule.
    pub ticks: Ticks,
}

impl Target {
    /// Whether this target's measured window is on: bytes moved now count.
    #[inline]
    pub fn measuring(&self, now: Instant) -> bool {
        self.issuing && now >= self.measure_from
    }
}

impl<P: Protocol> Worker<P> {
    /// Queues `slot` to be opened no earlier than `at`, unless it is
    /// queued already.
    pub(crate) fn queue_connect(&mut self, slot: usize, at: Instant) {
        let c = &mut self.conns[slot];
        if !c.in_queue {
            c.in_queue = true;
            self.pacer.push(slot as u32, at);
        }
    }

    /// Opens queued connections as pacing allows.
    pub(crate) fn connects(&mut self) {
        while let Some(slot) = self.pacer.pop(self.now) {
            let slot = slot as usize;
            self.conns[slot].in_queue = false;
            if self.conns[slot].stage != Stage::Closed {
                continue;
            }
            match P::LIFECYCLE {
                // Its next message opens it, when one may start.
                Lifecycle::PerMessage => self.kick(slot),
                Lifecycle::Kept => {
                    self.pacer.spend(self.now);
                    self.connect(slot);
                }
            }
        }
    }

    /// Starts a non-blocking connect on `slot`.
    pub(crate) fn connect(&mut self, slot: usize) {
        let gi = self.conns[slot].group as usize;
        let addr = self.targets[gi].addr;
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
                let token = Token::new(slot, c.gen, Side::Client).encode();
                if let Err(e) = self.epoll.add(&fd, epoll::SOCKET, token) {
                    let what = format!("registering a connection to {addr}: {e}");
                    self.fail(slot, ErrorKind::Other, what);
                    return;
                }
                c.fd = Some(fd);
                c.stage = Stage::Connecting;
                self.pacer.started();
                c.ready = Ready::default();
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

    /// `slot`'s connect succeeded: count it, and start or complete its
    /// message as the mode says.
    pub(crate) fn on_connected(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.stage == Stage::Connecting {
            self.pacer.finished();
        }
        c.stage = Stage::Open;
        if !c.settled {
            c.settled = true;
            self.settled += 1;
        }
        let t = &mut self.targets[c.group as usize];
        // A connection per message counts with its message; a kept one
        // inside the measured window.
        let counted = match P::LIFECYCLE {
            Lifecycle::PerMessage => c.measured,
            Lifecycle::Kept => t.measuring(self.now),
        };
        if counted {
            t.tally.connects += 1;
        }
        if let Some(fd) = c.fd.as_ref() {
            let _ = socket::set_nodelay(fd);
        }
        if self.proto.done_at_open() {
            self.complete(slot);
            return;
        }
        self.kick(slot);
    }

    /// Closes `slot`'s socket; stale events for it are dropped by generation.
    pub(crate) fn close(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.stage == Stage::Connecting {
            self.pacer.finished();
        }
        c.reset(self.thread, slot);
    }

    /// Resets `slot` on purpose (SO_LINGER 0, then close) with its
    /// message written and its reply still on the way, counts it, and
    /// goes on as after a message: the next one opens a fresh connection
    /// (a connection per message), or it is re-opened (kept).
    pub(crate) fn abort(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if let Some(fd) = c.fd.as_ref() {
            let _ = socket::set_linger_zero(fd);
        }
        c.busy = false;
        c.abort = false;
        self.targets[c.group as usize].tally.resets_sent += 1;
        self.close(slot);
        match P::LIFECYCLE {
            Lifecycle::PerMessage => self.kick(slot),
            Lifecycle::Kept => self.queue_connect(slot, self.now),
        }
    }

    /// Counts an error on `slot`, closes it and queues a fresh connection.
    pub(crate) fn fail(&mut self, slot: usize, kind: ErrorKind, what: String) {
        let c = &mut self.conns[slot];
        c.busy = false;
        c.abort = false;
        if !c.settled {
            c.settled = true;
            self.settled += 1;
        }
        let t = &mut self.targets[c.group as usize];
        t.tally.error(kind, || what);
        t.tally.time_error(c.t_connect);
        self.done_errors += 1;
        self.close(slot);
        self.queue_connect(slot, self.now + RETRY);
    }
}
