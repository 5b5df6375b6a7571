//! A worker's deadlines: the connect and idle timeouts' sweep, the drain
//! at shutdown and for the pairs to a backend a reload removed, the pause
//! of accepting, the looks at pairs passing a reset
//! on ([`Table::check_flushing`]), the queue's timeout and its poll for
//! room ([`Table::serve_queue`], only while a client waits), and
//! `--busy-poll`. Between them
//! they decide how long the loop may sleep; with none pending it sleeps
//! for good, so an idle proxy never wakes up.

use crate::settings::Settings;
use crate::table::{Sockets, Table};
use netio::sys::epoll;
use std::time::{Duration, Instant};

/// The longest wait the worker clock measures: 2^30 ms, about 12.4 days.
/// The clock is a u32 of ms that wraps (every 49.7 days), and deadlines
/// are compared by wrapping difference, so a wait must stay well under
/// half its range; a longer timeout is taken as this long.
pub const MAX_WAIT_MS: u32 = 1 << 30;

/// A timeout in whole milliseconds, at most [`MAX_WAIT_MS`]; a timeout
/// under a millisecond is one (never zero, which means "none" or "at
/// once").
pub fn millis(d: Duration) -> u32 {
    let ms = d.as_millis().min(u128::from(MAX_WAIT_MS)) as u32;
    if ms == 0 && !d.is_zero() {
        1
    } else {
        ms
    }
}

/// The worker clock at `since` after its epoch: whole ms, wrapping.
fn clock(since: Duration) -> u32 {
    since.as_millis() as u32
}

/// The deadlines of one worker.
#[derive(Debug)]
pub struct Timers {
    connect_ms: Option<u32>,
    idle_ms: Option<u32>,
    /// The worker's clock runs from here, in ms (read once a loop turn,
    /// only when a timeout is set).
    epoch: Instant,
    /// When the table's clock was last set.
    clock_read: Instant,
    next_sweep: Option<Instant>,
    drain_timeout: Duration,
    /// Set at shutdown: open pairs are cut off at this instant.
    pub drain_deadline: Option<Instant>,
    /// Set by a reload that removed a backend this worker still has pairs
    /// to: they are cut off at this instant.
    pub removed_deadline: Option<Instant>,
    /// `--busy-poll`: how long to keep polling after traffic, and until when.
    busy_poll: Option<Duration>,
    spin_until: Option<Instant>,
    /// Some backend has a connection limit, so clients may be queued (and
    /// the queue's times need the clock).
    queueing: bool,
}

impl Timers {
    pub fn new(s: &Settings) -> Timers {
        let mut t = Timers {
            connect_ms: None,
            idle_ms: None,
            epoch: Instant::now(),
            clock_read: Instant::now(),
            next_sweep: None,
            drain_timeout: s.drain_timeout,
            drain_deadline: None,
            removed_deadline: None,
            busy_poll: None,
            spin_until: None,
            queueing: false,
        };
        t.apply(s);
        t
    }

    /// Takes the timeouts of `s` (at start, and from a reload: pairs
    /// already open are then measured against the new ones).
    pub fn apply(&mut self, s: &Settings) {
        self.connect_ms = s.connect_timeout.map(millis);
        self.idle_ms = s.idle_timeout.map(millis);
        self.drain_timeout = s.drain_timeout;
        self.busy_poll = s.busy_poll;
        self.queueing = s.queueing;
    }

    /// Whether the pairs to removed backends are due to be cut off at
    /// `now` (once).
    pub fn removed_due(&mut self, now: Instant) -> bool {
        let due = self.removed_deadline.is_some_and(|t| now >= t);
        if due {
            self.removed_deadline = None;
        }
        due
    }

    /// Whether a connect or idle timeout is set.
    fn timeouts_on(&self) -> bool {
        self.connect_ms.is_some() || self.idle_ms.is_some()
    }

    /// Whether the table's clock is kept (read once a loop turn): only
    /// while a timeout, or the flush of a reset, measures time.
    pub fn keeps_clock(&self, table: &Table) -> bool {
        self.timeouts_on() || table.flushes_resets() || self.queueing
    }

    /// Starts the table's clock again after it stood still (a reload set
    /// the first timeout): the open pairs' times count from now, so that
    /// none is cut by a timeout it did not have before sooner than that
    /// timeout after the reload.
    pub fn restart_clock(&mut self, table: &mut Table) {
        self.set_clock(table, Instant::now());
        table.restamp();
    }

    /// Sets the table's clock to `now`.
    fn set_clock(&mut self, table: &mut Table, now: Instant) {
        table.now_ms = clock(now.duration_since(self.epoch));
        self.clock_read = now;
    }

    /// When the table next wants to look at its flushing pairs: its clock's
    /// deadline, counted from when the clock was last read (the clock
    /// wraps, so never from the epoch).
    fn flush_deadline(&self, table: &Table) -> Option<Instant> {
        Some(self.deadline(table, table.next_flush_ms()?))
    }

    /// When the queue next wants a look, if a client waits.
    fn queue_deadline(&self, table: &Table) -> Option<Instant> {
        Some(self.deadline(table, table.next_queue_ms()?))
    }

    /// The instant the table's clock reads `ms`.
    fn deadline(&self, table: &Table, ms: u32) -> Instant {
        let ahead = ms.wrapping_sub(table.now_ms) as i32;
        let ahead = u64::try_from(ahead).unwrap_or(0);
        self.clock_read + Duration::from_millis(ahead)
    }

    /// Whether the flushing pairs are due a look at `now`; if so the
    /// table's clock is brought up to date for it.
    pub fn flush_due(&mut self, now: Instant, table: &mut Table) -> bool {
        if self.flush_deadline(table).is_none_or(|t| now < t) {
            return false;
        }
        self.set_clock(table, now);
        true
    }

    /// Whether the queue is due a look at `now` (its clock is then
    /// brought up to date; settling the table serves the queue).
    pub fn queue_due(&mut self, now: Instant, table: &mut Table) -> bool {
        if self.queue_deadline(table).is_none_or(|t| now < t) {
            return false;
        }
        self.set_clock(table, now);
        true
    }

    /// After a wait that returned `events`: busy polling goes on for its
    /// duration after traffic; the table's clock moves on.
    pub fn after_wait(&mut self, events: usize, table: &mut Table) {
        if let (Some(d), true) = (self.busy_poll, events > 0) {
            self.spin_until = Some(Instant::now() + d);
        }
        // A pair whose side resets takes the time from the clock.
        if self.keeps_clock(table) {
            self.set_clock(table, Instant::now());
        }
    }

    /// Closes pairs past their connect or idle timeout when a sweep is
    /// due (the caller settles the table afterwards), and schedules the
    /// next sweep only while one could fire: with no pair connecting and
    /// no idle timeout, none is scheduled. Returns whether it swept.
    pub fn sweep(&mut self, now: Instant, table: &mut Table, io: &mut impl Sockets) -> bool {
        if !self.timeouts_on() {
            return false;
        }
        let due = self.next_sweep.is_some_and(|t| now >= t);
        if due {
            self.set_clock(table, now);
            table.expire(io, self.connect_ms, self.idle_ms);
            self.next_sweep = None;
        }
        let wanted = [
            self.connect_ms.filter(|_| table.connecting() > 0),
            self.idle_ms.filter(|_| table.active() > 0),
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
        due
    }

    /// Starts the drain: open pairs have `--drain-timeout` to finish.
    pub fn start_drain(&mut self, now: Instant) {
        if self.drain_deadline.is_none() {
            self.drain_deadline = Some(now + self.drain_timeout);
        }
    }

    /// How long the loop may sleep: not at all while some pair waits for
    /// its turn or busy polling goes on, else until the nearest deadline
    /// (`accept_retry`: when a paused accept is retried or, on the worker
    /// that checks, a health check is due), else forever.
    pub fn timeout_ms(&self, table: &Table, accept_retry: Option<Instant>) -> i32 {
        // The clock is read only while busy polling or a deadline is set.
        let spinning = || self.spin_until.is_some_and(|t| Instant::now() < t);
        if table.has_again() || spinning() {
            return 0;
        }
        let flush = self.flush_deadline(table);
        let queue = self.queue_deadline(table);
        let next = [
            accept_retry,
            self.drain_deadline,
            self.removed_deadline,
            self.next_sweep,
            flush,
            queue,
        ]
        .into_iter()
        .flatten()
        .min();
        epoll::sleep_ms(false, next, Instant::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_wraps_and_long_timeouts_stay_comparable() {
        assert_eq!(clock(Duration::from_millis((1 << 32) + 5)), 5);
        assert_eq!(millis(Duration::from_secs(1_000_000_000)), MAX_WAIT_MS);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
        assert_eq!(
            millis(Duration::from_micros(500)),
            1,
            "never rounded to zero"
        );
        assert_eq!(millis(Duration::ZERO), 0);
        // A deadline MAX_WAIT_MS ahead, across the wrap, is still ahead.
        let now = u32::MAX - 10;
        let due = now.wrapping_add(MAX_WAIT_MS);
        assert!((due.wrapping_sub(now) as i32) > 0);
    }
}
