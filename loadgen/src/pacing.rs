//! Connect pacing: the queue of connections waiting to be opened, a token
//! bucket at `--connect-rate` and a cap on connects in progress, so that
//! a server's listen backlog is never overrun while thousands of
//! connections are set up or re-opened after errors.
//!
//! A connection per message (connect mode) is not paced: its connects
//! are the load, and the schedule of messages paces them. Its queue only
//! holds connections waiting out the pause after an error.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Connects in progress at once (per thread), on top of the pacing: a
/// server whose accept queue is full drops SYNs, its connects stall, and
/// this stops loadgen from piling more on.
pub const MAX_CONNECTING: usize = 256;
/// How far pacing lets connects bunch up after a quiet spell.
const CONNECT_BURST: Duration = Duration::from_millis(1);

/// One thread's connect queue.
pub struct Pacer {
    /// Slots waiting, each with the time before which it must not go.
    queue: VecDeque<(u32, Instant)>,
    /// The interval between paced connects; `None`: not paced.
    gap: Option<Duration>,
    /// When the next paced connect may go.
    next: Instant,
    /// Connects in progress.
    connecting: usize,
}

impl Pacer {
    /// A queue for `slots` connections, pacing connects `gap` apart
    /// (`None`: unpaced and uncapped).
    pub fn new(gap: Option<Duration>, slots: usize, now: Instant) -> Pacer {
        Pacer {
            queue: VecDeque::with_capacity(slots),
            gap,
            next: now,
            connecting: 0,
        }
    }

    /// How long pacing alone takes to open `n` connections.
    pub fn time_for(&self, n: usize) -> Duration {
        self.gap.unwrap_or_default() * n as u32
    }

    /// Queues `slot` to be opened no earlier than `at`. The caller queues
    /// a slot at most once.
    pub fn push(&mut self, slot: u32, at: Instant) {
        self.queue.push_back((slot, at));
    }

    /// When the queue's front may go next; `None` if the queue is empty
    /// or (paced) the cap of connects in progress is reached, when a
    /// finishing connect (an event) is what lets the next go.
    pub fn next_at(&self) -> Option<Instant> {
        let &(_, at) = self.queue.front()?;
        if self.gap.is_none() {
            return Some(at);
        }
        (self.connecting < MAX_CONNECTING).then(|| at.max(self.next))
    }

    /// Takes the queue's front if it may go at `now`.
    pub fn pop(&mut self, now: Instant) -> Option<u32> {
        if self.next_at()? > now {
            return None;
        }
        self.queue.pop_front().map(|(slot, _)| slot)
    }

    /// Takes a token for a paced connect made at `now`: a bucket holding
    /// a millisecond's worth of connects.
    pub fn spend(&mut self, now: Instant) {
        if let Some(gap) = self.gap {
            let floor = now.checked_sub(CONNECT_BURST).unwrap_or(now);
            self.next = self.next.max(floor) + gap;
        }
    }

    /// A connect has started.
    pub fn started(&mut self) {
        self.connecting += 1;
    }

    /// A connect has finished, either way.
    pub fn finished(&mut self) {
        self.connecting -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_connects_go_one_gap_apart_after_a_small_burst() {
        let now = Instant::now();
        let gap = Duration::from_micros(250);
        let mut p = Pacer::new(Some(gap), 16, now);
        for slot in 0..16 {
            p.push(slot, now);
        }
        let mut went = 0;
        while let Some(_slot) = p.pop(now) {
            p.spend(now);
            went += 1;
        }
        // The bucket starts full at `now`, and holds a millisecond's worth.
        assert_eq!(went, 1, "the first goes, the next waits a gap");
        assert_eq!(p.next_at(), Some(now + gap));
        let later = now + Duration::from_secs(1);
        while p.pop(later).is_some() {
            p.spend(later);
            went += 1;
        }
        assert_eq!(
            went,
            1 + 5,
            "after a quiet spell, 1 ms of connects bunch up"
        );
    }

    #[test]
    fn the_cap_holds_paced_connects_but_not_unpaced_ones() {
        let now = Instant::now();
        let mut paced = Pacer::new(Some(Duration::ZERO), 1, now);
        let mut unpaced = Pacer::new(None, 1, now);
        for p in [&mut paced, &mut unpaced] {
            for _ in 0..MAX_CONNECTING {
                p.started();
            }
            p.push(0, now);
        }
        assert_eq!(paced.pop(now), None);
        paced.finished();
        assert_eq!(paced.pop(now), Some(0));
        assert_eq!(unpaced.pop(now), Some(0));
        unpaced.push(1, now + Duration::from_secs(1));
        assert_eq!(unpaced.pop(now), None, "not before its time");
    }
}
