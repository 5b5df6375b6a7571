//! Open-loop scheduling (`--rate`): when each message is due, which
//! connection it goes to, the messages waiting on a busy connection, and
//! how late each was sent.
//!
//! A target's messages within a segment are ticks: tick `k` is due at
//! `origin + k * ns_per_tick` and goes to the target's connection
//! `k % n` of this thread. Each connection thus sends `rate /
//! connections` messages a second, and a thread's ticks are its
//! connections' messages interleaved. A message due while its connection
//! is busy waits in that connection's [`Backlog`] and keeps its intended
//! send time, from which its latency is counted (coordinated omission
//! corrected); the delay until it is really sent is its send lag.

use crate::cli::Config;
use crate::stats::Tally;
use std::time::{Duration, Instant};

/// One target's timetable of ticks in this thread.
pub struct Ticks {
    origin: Instant,
    ns_per_tick: f64,
    tick: u64,
    next: Instant,
    /// The interval between one connection's messages.
    pub conn_period: Duration,
}

impl Ticks {
    /// The schedule for a thread holding `per_thread` of the target's
    /// `cfg.connections` (closed loop: unused, built as if at 1 msg/s).
    pub fn new(cfg: &Config, per_thread: usize, now: Instant) -> Ticks {
        let rate = cfg.rate.unwrap_or(1) as f64;
        Ticks {
            origin: now,
            ns_per_tick: 1e9 * cfg.connections as f64 / (rate * per_thread.max(1) as f64),
            tick: 0,
            next: now,
            conn_period: Duration::from_nanos((1e9 * cfg.connections as f64 / rate) as u64),
        }
    }

    /// Starts the schedule afresh at `origin` (a segment's start).
    pub fn restart(&mut self, origin: Instant) {
        self.origin = origin;
        self.tick = 0;
        self.next = origin;
    }

    /// When the next tick is due, if before `end`.
    #[inline]
    pub fn next_before(&self, end: Instant) -> Option<Instant> {
        (self.next < end).then_some(self.next)
    }

    /// Takes the next tick if it is due by `now` and before `end`: which
    /// of the `n` connections it goes to, and when it was due.
    #[inline]
    pub fn take(&mut self, now: Instant, end: Instant, n: usize) -> Option<(usize, Instant)> {
        if n == 0 || self.next > now || self.next >= end {
            return None;
        }
        let due = self.next;
        let k = (self.tick % n as u64) as usize;
        self.tick += 1;
        self.next =
            self.origin + Duration::from_nanos((self.tick as f64 * self.ns_per_tick) as u64);
        Some((k, due))
    }
}

/// Messages due on one connection but not yet sent.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    queued: u32,
    /// When the first of them was due.
    next: Instant,
}

impl Backlog {
    pub fn new(now: Instant) -> Backlog {
        Backlog {
            queued: 0,
            next: now,
        }
    }

    /// Queues a message due at `due`.
    #[inline]
    pub fn push(&mut self, due: Instant) {
        if self.queued == 0 {
            self.next = due;
        }
        self.queued += 1;
    }

    /// Takes the oldest message: when it was due. The one after it is
    /// taken to be due `period` later.
    #[inline]
    pub fn pop(&mut self, period: Duration) -> Option<Instant> {
        if self.queued == 0 {
            return None;
        }
        let due = self.next;
        self.queued -= 1;
        self.next += period;
        Some(due)
    }

    /// Drops every queued message; returns how many there were.
    pub fn clear(&mut self) -> u32 {
        std::mem::take(&mut self.queued)
    }
}

/// Records how late a measured message due at `due` was sent at `now`.
#[inline]
pub fn record_lag(tally: &mut Tally, now: Instant, due: Instant) {
    let lag = now.saturating_duration_since(due).as_nanos() as u64;
    tally.send_lag.saturating_record(lag.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_go_round_the_connections_on_time() {
        let now = Instant::now();
        let mut t = Ticks {
            origin: now,
            ns_per_tick: 1e6,
            tick: 0,
            next: now,
            conn_period: Duration::from_millis(3),
        };
        let end = now + Duration::from_millis(10);
        let later = now + Duration::from_millis(2);
        let got: Vec<usize> =
            std::iter::from_fn(|| t.take(later, end, 3).map(|(k, _)| k)).collect();
        assert_eq!(got, [0, 1, 2], "ticks at 0, 1 and 2 ms are due by 2 ms");
        assert_eq!(t.next_before(end), Some(now + Duration::from_millis(3)));
        assert_eq!(t.take(end, end, 3).map(|(k, _)| k), Some(0));
        t.restart(now);
        assert_eq!(t.take(now, now, 3), None, "nothing is due at the end");
    }

    #[test]
    fn a_backlog_keeps_the_intended_send_times() {
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        let mut b = Backlog::new(now);
        assert_eq!(b.pop(ms), None);
        b.push(now + ms);
        b.push(now + 2 * ms);
        assert_eq!(b.pop(ms), Some(now + ms));
        assert_eq!(b.pop(ms), Some(now + 2 * ms));
        b.push(now);
        b.push(now);
        assert_eq!(b.clear(), 2);
        assert_eq!(b.pop(ms), None);
    }
}
