//! What the load threads share with the thread that runs them: the stop
//! flag, per-thread progress counters, and the gate where they agree on
//! when the timetable starts.

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
pub struct Finished {
    /// One tally per target.
    pub tallies: Vec<Tally>,
    /// How far into the timetable the thread ran before it stopped.
    pub ran: Duration,
}
