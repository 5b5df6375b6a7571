//! Active health checks, engine-free: what a check is ([`CheckSpec`]),
//! one backend's check as a state machine ([`Check`]), and the rise/fall
//! counting that turns check results into up and down ([`Tally`]).
//!
//! An engine drives a [`Check`] with the time (µs on its own clock) and
//! what its socket did: [`Check::begin`] says when to connect, then the
//! engine reports [`Check::connected`], writes [`Check::to_send`] and
//! reports [`Check::sent`], reads while [`Check::wants_read`] and reports
//! [`Check::received`] / [`Check::closed`], reports any failure with
//! [`Check::failed`], and calls [`Check::tick`] at [`Check::deadline`].
//! Each check ends in a [`Done`]: passed or why not, the latency, and the
//! state change it caused, if any; the engine then closes the socket. The
//! epoll engine's side is [`crate::checks_io`]; an io_uring engine drives
//! the same machine.
//!
//! Lifecycle of one round: idle until `next` → connecting → sending (if
//! `send` is set) → reading (if `expect` is set) → done → idle, the next
//! round starting one interval after this one started. The timeout runs
//! from the connect to the verdict.
//!
//! Up and down follow HAProxy's counter: a backend starts up, but until a
//! check has passed a single failure takes it down (HAProxy's default
//! `init-state up`); once up and confirmed, `fall` failures in a row take
//! it down; once down, `rise` passes in a row bring it up.

use crate::pattern::{escaped, Pattern};
use netio::Fault;
use std::fmt;
use std::time::Duration;

/// The most reply bytes a check reads (its `expect` is matched over them).
pub const MAX_REPLY: usize = 512;

/// One backend's check, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// From one check's start to the next one's.
    pub interval: Duration,
    /// From the connect to the verdict; at most `interval`.
    pub timeout: Duration,
    /// Passes in a row that bring a down backend up.
    pub rise: u32,
    /// Failures in a row that take an up backend down.
    pub fall: u32,
    /// Bytes written once connected (empty: none).
    pub send: Vec<u8>,
    /// What the reply must look like; none: the connect (and the send) is
    /// the check.
    pub expect: Option<Expect>,
}

impl Default for CheckSpec {
    /// HAProxy's defaults: `inter 2s`, `rise 2`, `fall 3`; a TCP connect.
    fn default() -> CheckSpec {
        CheckSpec {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            send: Vec::new(),
            expect: None,
        }
    }
}

/// How a reply is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The reply starts with these bytes.
    Prefix(Vec<u8>),
    /// The pattern matches the first bytes of the reply.
    Pattern(Pattern),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Prefix(p) => write!(f, "\"{}\"", escaped(p)),
            Expect::Pattern(p) => write!(f, "{p}"),
        }
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connect (or the socket) failed.
    Connect(Fault),
    /// A read or write failed after the connect.
    Io(Fault),
    /// No verdict within the timeout, and what had arrived by then.
    TimedOut(Duration, Vec<u8>),
    /// The reply did not match.
    Mismatch(Vec<u8>),
    /// The backend closed before the reply matched.
    Closed(Vec<u8>),
}

/// A failure with the check's expectation, for the log.
pub struct Reason<'a>(pub &'a Failure, pub Option<&'a Expect>);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expect = |f: &mut fmt::Formatter<'_>| match self.1 {
            Some(e) => write!(f, "expected {e} "),
            None => Ok(()),
        };
        match self.0 {
            Failure::Connect(fault) => write!(f, "connect {}", fault_words(*fault)),
            Failure::Io(fault) => write!(f, "{}", fault_words(*fault)),
            Failure::TimedOut(d, got) if got.is_empty() => write!(f, "timed out after {d:?}"),
            Failure::TimedOut(d, got) => {
                write!(f, "timed out after {d:?}: ")?;
                expect(f)?;
                write!(f, "got \"{}\"", escaped(got))
            }
            Failure::Mismatch(got) => {
                expect(f)?;
                write!(f, "got \"{}\"", escaped(got))
            }
            Failure::Closed(got) => {
                expect(f)?;
                write!(f, "got \"{}\" and the connection closed", escaped(got))
            }
        }
    }
}

/// A fault in a few words: `refused`, `reset`, …
fn fault_words(fault: Fault) -> &'static str {
    match fault {
        Fault::WouldBlock => "would block",
        Fault::Reset => "reset",
        Fault::Refused => "refused",
        Fault::TimedOut => "timed out",
        Fault::Network => "network unreachable",
        Fault::Denied => "denied",
        Fault::NoDescriptors => "out of descriptors",
        Fault::NoMemory => "out of memory",
        Fault::NoAddress => "no local address",
        Fault::Other => "failed",
    }
}

/// A state change a check result caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Now down after this many failures in a row; `first`: no check had
    /// passed yet (one failure is then enough, as in HAProxy).
    Down { fails: u32, first: bool },
    /// Now up after this many passes in a row.
    Up { passes: u32 },
}

/// HAProxy's health counter: `0..rise` is down, `rise..rise+fall` is up. A
/// pass adds one (reaching `rise` jumps to the top); a failure takes one
/// (falling below `rise` drops to 0). It starts at `rise`: up, one
/// failure from down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    health: u32,
    rise: u32,
    fall: u32,
    /// The current run of equal results, and whether they were passes.
    run: (u32, bool),
    /// Whether any check has passed.
    passed_once: bool,
}

impl Tally {
    pub fn new(rise: u32, fall: u32) -> Tally {
        debug_assert!(rise >= 1 && fall >= 1);
        Tally {
            health: rise,
            rise,
            fall,
            run: (0, true),
            passed_once: false,
        }
    }

    pub fn is_up(&self) -> bool {
        self.health >= self.rise
    }

    /// Passes (true) or failures in a row, with how many.
    pub fn run(&self) -> (u32, bool) {
        self.run
    }

    /// Counts one result; returns the change it caused.
    pub fn record(&mut self, passed: bool) -> Option<Change> {
        let was_up = self.is_up();
        self.run = match self.run {
            (n, p) if p == passed => (n + 1, p),
            _ => (1, passed),
        };
        let top = self.rise + self.fall - 1;
        if passed {
            if self.health < top {
                self.health += 1;
                if self.health >= self.rise {
                    self.health = top;
                }
            }
        } else if self.health > 0 {
            self.health -= 1;
            if self.health < self.rise {
                self.health = 0;
            }
        }
        let first = !self.passed_once;
        self.passed_once |= passed;
        match (was_up, self.is_up()) {
            (true, false) => Some(Change::Down {
                fails: self.run.0,
                first,
            }),
            (false, true) => Some(Change::Up { passes: self.run.0 }),
            _ => None,
        }
    }
}

/// Where a check is in its round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the next round.
    Idle,
    /// The connect is under way.
    Connecting,
    /// Writing `send`; this much of it is written.
    Sending(usize),
    /// Reading the reply.
    Reading,
}

/// One finished check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// None: it passed.
    pub failure: Option<Failure>,
    /// From the connect to the verdict, in µs.
    pub latency_us: u64,
    /// The state change it caused.
    pub change: Option<Change>,
}

/// One backend's check between rounds and within one.
#[derive(Debug, Clone)]
pub struct Check {
    pub spec: CheckSpec,
    phase: Phase,
    /// When the next round starts (Idle), or when this one started.
    next_us: u64,
    started_us: u64,
    /// The reply so far.
    got: Vec<u8>,
    tally: Tally,
}

impl Check {
    /// A check whose first round starts at `first_us`.
    pub fn new(spec: CheckSpec, first_us: u64) -> Check {
        let tally = Tally::new(spec.rise, spec.fall);
        Check {
            spec,
            phase: Phase::Idle,
            next_us: first_us,
            started_us: 0,
            got: Vec::new(),
            tally,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// When the check next needs the engine: the next round's start, or
    /// this round's timeout.
    pub fn deadline(&self) -> u64 {
        match self.phase {
            Phase::Idle => self.next_us,
            _ => self.started_us + micros(self.spec.timeout),
        }
    }

    /// Starts a round if one is due at `now`: the engine then connects.
    pub fn begin(&mut self, now: u64) -> bool {
        if self.phase != Phase::Idle || now < self.next_us {
            return false;
        }
        self.started_us = now;
        // Rounds keep their rhythm; a round started late does not pile up
        // the next ones.
        let step = micros(self.spec.interval).max(1);
        self.next_us = (self.next_us + step).max(now + step / 2);
        self.got.clear();
        self.phase = Phase::Connecting;
        true
    }

    /// The connect completed.
    pub fn connected(&mut self, now: u64) -> Option<Done> {
        if self.phase != Phase::Connecting {
            return None;
        }
        self.phase = Phase::Sending(0);
        self.after_send(now)
    }

    /// What is left to write.
    pub fn to_send(&self) -> &[u8] {
        match self.phase {
            Phase::Sending(n) => &self.spec.send[n..],
            _ => &[],
        }
    }

    /// `n` more bytes of `send` were written.
    pub fn sent(&mut self, now: u64, n: usize) -> Option<Done> {
        let Phase::Sending(done) = self.phase else {
            return None;
        };
        self.phase = Phase::Sending(done + n);
        self.after_send(now)
    }

    fn after_send(&mut self, now: u64) -> Option<Done> {
        if !self.to_send().is_empty() {
            return None;
        }
        if self.spec.expect.is_none() {
            return Some(self.finish(now, None));
        }
        self.phase = Phase::Reading;
        None
    }

    /// Whether the engine should read (and how much room is left).
    pub fn wants_read(&self) -> usize {
        match self.phase {
            Phase::Reading => MAX_REPLY - self.got.len(),
            _ => 0,
        }
    }

    /// Reply bytes arrived.
    pub fn received(&mut self, now: u64, data: &[u8]) -> Option<Done> {
        if self.phase != Phase::Reading {
            return None;
        }
        let room = MAX_REPLY - self.got.len();
        self.got.extend_from_slice(&data[..data.len().min(room)]);
        let full = self.got.len() >= MAX_REPLY;
        let verdict = match self.spec.expect.as_ref()? {
            Expect::Prefix(p) => {
                let n = p.len().min(self.got.len());
                if p[..n] != self.got[..n] {
                    Some(false)
                } else {
                    (n == p.len()).then_some(true)
                }
            }
            Expect::Pattern(re) => match re.is_match(&self.got) {
                true => Some(true),
                false => full.then_some(false),
            },
        };
        match verdict {
            None => None,
            Some(true) => Some(self.finish(now, None)),
            Some(false) => {
                let got = std::mem::take(&mut self.got);
                Some(self.finish(now, Some(Failure::Mismatch(got))))
            }
        }
    }

    /// The backend closed its side.
    pub fn closed(&mut self, now: u64) -> Option<Done> {
        if self.phase == Phase::Idle {
            return None;
        }
        let got = std::mem::take(&mut self.got);
        Some(self.finish(now, Some(Failure::Closed(got))))
    }

    /// The socket failed.
    pub fn failed(&mut self, now: u64, why: Failure) -> Option<Done> {
        if self.phase == Phase::Idle {
            return None;
        }
        Some(self.finish(now, Some(why)))
    }

    /// Drops the round under way, if any, without counting it (its socket
    /// is gone for a reason of the engine's own, not the backend's).
    pub fn abandon(&mut self) {
        self.phase = Phase::Idle;
        self.got.clear();
    }

    /// Ends the round if its timeout has passed at `now`.
    pub fn tick(&mut self, now: u64) -> Option<Done> {
        if self.phase == Phase::Idle || now < self.deadline() {
            return None;
        }
        let got = std::mem::take(&mut self.got);
        Some(self.finish(now, Some(Failure::TimedOut(self.spec.timeout, got))))
    }

    fn finish(&mut self, now: u64, failure: Option<Failure>) -> Done {
        self.phase = Phase::Idle;
        self.got.clear();
        let change = self.tally.record(failure.is_none());
        Done {
            failure,
            latency_us: now.saturating_sub(self.started_us),
            change,
        }
    }
}

/// A duration in whole µs.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// When the `k`th of `n` checks of `interval` first runs, counted from the
/// start: spread evenly over one interval, so that they never all fire at
/// once.
pub fn first_round(interval: Duration, k: usize, n: usize) -> u64 {
    micros(interval) / n.max(1) as u64 * k as u64
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
