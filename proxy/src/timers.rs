//! A worker's deadlines: the connect and idle timeouts' sweep, the drain
//! at shutdown, the pause of accepting, the looks at pairs passing a reset
//! on ([`Table::check_flushing`]), and `--busy-poll`. Between them
//! they decide how long the loop may sleep; with none pending it sleeps
//! for good, so an idle proxy never wakes up.

use crate::config::Config;
use crate::table::{Sockets, Table};
use netio::sys::epoll;
use std::time::{Duration, Instant};

/// A duration in whole milliseconds, saturating at `u32::MAX`.
pub fn millis(d: Duration) -> u32 {
    d.as_millis().min(u128::from(u32::MAX)) as u32
}

/// The deadlines of one worker.
#[derive(Debug)]
pub struct Timers {
    connect_ms: Option<u32>,
    idle_ms: Option<u32>,
    /// The worker's clock runs from here, in ms (read once a loop turn,
    /// only when a timeout is set).
    epoch: Instant,
    next_sweep: Option<Instant>,
    drain_timeout: Duration,
    /// Set at shutdown: open pairs are cut off at this instant.
    pub drain_deadline: Option<Instant>,
    /// `--busy-poll`: how long to keep polling after traffic, and until when.
    busy_poll: Option<Duration>,
    spin_until: Option<Instant>,
}

impl Timers {
    pub fn new(cfg: &Config) -> Timers {
        Timers {
            connect_ms: cfg.connect_timeout.map(millis),
            idle_ms: cfg.idle_timeout.map(millis),
            epoch: Instant::now(),
            next_sweep: None,
            drain_timeout: cfg.drain_timeout,
            drain_deadline: None,
            busy_poll: cfg.busy_poll,
            spin_until: None,
        }
    }

    /// Whether a connect or idle timeout is set.
    fn timeouts_on(&self) -> bool {
        self.connect_ms.is_some() || self.idle_ms.is_some()
    }

    /// When the table next wants to look at its flushing pairs.
    fn flush_deadline(&self, table: &Table) -> Option<Instant> {
        let ms = table.next_flush_ms()?;
        Some(self.epoch + Duration::from_millis(u64::from(ms)))
    }

    /// Whether the flushing pairs are due a look at `now`; if so the
    /// table's clock is brought up to date for it.
    pub fn flush_due(&self, now: Instant, table: &mut Table) -> bool {
        if self.flush_deadline(table).is_none_or(|t| now < t) {
            return false;
        }
        table.now_ms = millis(now.duration_since(self.epoch));
        true
    }

    /// After a wait that returned `events`: busy polling goes on for its
    /// duration after traffic; the table's clock moves on.
    pub fn after_wait(&mut self, events: usize, table: &mut Table) {
        if let (Some(d), true) = (self.busy_poll, events > 0) {
            self.spin_until = Some(Instant::now() + d);
        }
        // A pair whose side resets takes the time from the clock.
        if self.timeouts_on() || table.flushes_resets() {
            table.now_ms = millis(self.epoch.elapsed());
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
            table.now_ms = millis(self.epoch.elapsed());
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
    /// (`accept_retry`: when a paused accept is retried), else forever.
    pub fn timeout_ms(&self, table: &Table, accept_retry: Option<Instant>) -> i32 {
        // The clock is read only while busy polling or a deadline is set.
        let spinning = || self.spin_until.is_some_and(|t| Instant::now() < t);
        if table.has_again() || spinning() {
            return 0;
        }
        let flush = self.flush_deadline(table);
        let next = [accept_retry, self.drain_deadline, self.next_sweep, flush]
            .into_iter()
            .flatten()
            .min();
        epoll::sleep_ms(false, next, Instant::now)
    }
}
