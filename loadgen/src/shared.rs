//! What the load threads share with the thread that runs them: the stop
//! flag, per-thread progress counters, the gate where they agree on when
//! the timetable starts, and the notes they send it (an interval's tally
//! when it is cut, and that they are done).

use crate::stats::Tally;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

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

    /// Waits until every thread has set up its connections; returns the
    /// instant the timetable starts, the same for all.
    pub fn start_together(&self) -> Instant {
        self.gate.wait()
    }

    /// The instant the timetable started, once it has.
    pub fn started(&self) -> Option<Instant> {
        *self.gate.at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a load thread tells the thread that runs it.
pub enum Note {
    /// An interval's tally, cut.
    Cut(Box<Cut>),
    /// The thread has finished (its result is in its join handle).
    Done,
}

/// One thread's tally for one interval of one target.
pub struct Cut {
    pub target: usize,
    /// Index into [`crate::plan::intervals`]; `None` for what was counted
    /// before the target's first interval began (errors while setting
    /// up, or a run stopped before it).
    pub interval: Option<usize>,
    /// Where the interval ended for this thread: its planned end, or
    /// earlier when the run stopped inside it.
    pub end: std::time::Duration,
    pub tally: Tally,
}

/// Counters a thread publishes once per loop turn.
#[derive(Default)]
pub struct ThreadProgress {
    /// Messages completed (warm-up included).
    pub messages: AtomicU64,
    /// Errors of all kinds.
    pub errors: AtomicU64,
    /// Payload bytes written.
    pub sent: AtomicU64,
    /// Payload bytes read.
    pub received: AtomicU64,
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

/// What a thread hands back (its tallies went out as [`Note::Cut`]s).
pub struct Finished {
    /// How far into the timetable the thread ran before it stopped.
    pub ran: Duration,
}
