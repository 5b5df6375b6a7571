//! What one loop thread counts for one target: a latency histogram in
//! nanoseconds, message and byte counters, and errors by kind. Tallies of
//! all threads are merged into the report.

use hdrhistogram::Histogram;
use netio::Fault;
use serde::Serialize;
use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Highest latency the histogram holds: one hour, in nanoseconds. Larger
/// values are clamped to it.
const HIST_MAX_NS: u64 = 3_600_000_000_000;
/// Significant decimal digits kept: 3 means within 0.1%.
const HIST_SIGFIGS: u8 = 3;
/// Most errors whose times a target keeps (over all threads); the rest
/// are only counted, in `error_times_dropped`.
pub const ERROR_TIMES_MAX: usize = 10_000;

/// The kinds of error a run counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connect was refused (nothing listening, or the backlog is full).
    ConnectRefused,
    /// The peer reset the connection (or it broke: `EPIPE`).
    Reset,
    /// A message, or a connect, was outstanding longer than `--timeout`.
    Timeout,
    /// The peer closed before the whole reply arrived.
    Short,
    /// The reply differed from what was expected (a verification failure).
    Mismatch,
    /// Anything else: out of ports or descriptors, unexpected I/O errors.
    Other,
}

impl ErrorKind {
    /// Classifies an I/O error from connect, read or write.
    pub fn of(e: &io::Error) -> ErrorKind {
        match netio::outcome::fault(e) {
            Fault::Refused => ErrorKind::ConnectRefused,
            Fault::Reset => ErrorKind::Reset,
            Fault::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Short => "short",
            ErrorKind::Mismatch => "mismatch",
            ErrorKind::Other => "other",
        }
    }
}

/// Errors by kind. Serialises to the `errors` object of the JSON report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Errors {
    pub connect_refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub short: u64,
    pub mismatch: u64,
    pub other: u64,
}

impl Errors {
    pub fn add(&mut self, kind: ErrorKind, n: u64) {
        let c = match kind {
            ErrorKind::ConnectRefused => &mut self.connect_refused,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Short => &mut self.short,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Other => &mut self.other,
        };
        *c += n;
    }

    pub fn merge(&mut self, o: &Errors) {
        self.connect_refused += o.connect_refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.short += o.short;
        self.mismatch += o.mismatch;
        self.other += o.other;
    }

    pub fn total(&self) -> u64 {
        self.connect_refused + self.reset + self.timeout + self.short + self.mismatch + self.other
    }

    /// Replies that arrived wrong or incomplete.
    pub fn verify_failures(&self) -> u64 {
        self.short + self.mismatch
    }

    /// `(name, count)` for every kind with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("connect_refused", self.connect_refused),
            ("reset", self.reset),
            ("timeout", self.timeout),
            ("short", self.short),
            ("mismatch", self.mismatch),
            ("other", self.other),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
    }
}

/// Creates an empty latency histogram (nanoseconds, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the constructor's rules
    // (low >= 1, high >= 2 * low, sigfigs <= 5), so it cannot fail.
    Histogram::new_with_bounds(1, HIST_MAX_NS, HIST_SIGFIGS)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// What a tally counted that the rates of a report come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub messages: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub connects: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.messages += o.messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.connects += o.connects;
    }
}

/// One thread's counts for one target.
pub struct Tally {
    /// Latency of each measured message, in nanoseconds.
    pub hist: Histogram<u64>,
    /// Open loop: how late each measured message was sent after it was
    /// due, in nanoseconds. Large values mean the connection was still busy
    /// (the server is slow) or loadgen itself fell behind.
    pub send_lag: Histogram<u64>,
    /// Measured messages completed and verified.
    pub messages: u64,
    /// Payload bytes written during the measured time.
    pub bytes_sent: u64,
    /// Payload bytes read during the measured time.
    pub bytes_received: u64,
    /// Connections established during the measured time.
    pub connects: u64,
    /// Connections loadgen itself reset (`--reset-ratio`), over the
    /// whole run; not errors.
    pub resets_sent: u64,
    /// Errors over the whole run (set-up and warm-up included: a failure
    /// is never discarded).
    pub errors: Errors,
    /// The first error's description, for the report.
    pub first_error: Option<String>,
    /// `[started, failed]` of each failed connection (the first
    /// [`ERROR_TIMES_MAX`]), in microseconds since the Unix epoch: when
    /// its last connect started and when it failed. A workbench that
    /// breaks a server at a known time tells by them which failures its
    /// break cut and which came after.
    pub error_times: Vec<[u64; 2]>,
    /// Errors counted without times: beyond the cap, or counted in bulk
    /// (messages still queued after a window).
    pub error_times_dropped: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            hist: histogram(),
            send_lag: histogram(),
            messages: 0,
            bytes_sent: 0,
            bytes_received: 0,
            connects: 0,
            resets_sent: 0,
            errors: Errors::default(),
            first_error: None,
            error_times: Vec::new(),
            error_times_dropped: 0,
        }
    }

    pub fn counts(&self) -> Counts {
        Counts {
            messages: self.messages,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            connects: self.connects,
        }
    }

    /// Records one measured message's latency.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.messages += 1;
        self.hist.saturating_record(ns.max(1));
    }

    /// Counts an error; keeps the description of the first.
    pub fn error(&mut self, kind: ErrorKind, what: impl FnOnce() -> String) {
        self.errors.add(kind, 1);
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    /// Notes the times of an error counted with [`Tally::error`]: when
    /// the failed connection's connect started, and now.
    pub fn time_error(&mut self, started: Instant) {
        if self.error_times.len() >= ERROR_TIMES_MAX {
            self.error_times_dropped += 1;
            return;
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        let unix_us = |t: Instant| {
            wall.checked_sub(now.saturating_duration_since(t))
                .and_then(|w| w.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        };
        self.error_times.push([unix_us(started), unix_us(now)]);
    }

    /// Adds another thread's tally for the same target.
    pub fn merge(&mut self, o: &Tally) {
        // Both histograms have the same bounds, so adding cannot fail;
        // were it to, the counts below still add up.
        let _ = self.hist.add(&o.hist);
        let _ = self.send_lag.add(&o.send_lag);
        self.messages += o.messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.connects += o.connects;
        self.resets_sent += o.resets_sent;
        self.errors.merge(&o.errors);
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        let room = ERROR_TIMES_MAX.saturating_sub(self.error_times.len());
        let kept = o.error_times.len().min(room);
        self.error_times.extend_from_slice(&o.error_times[..kept]);
        self.error_times_dropped += o.error_times_dropped + (o.error_times.len() - kept) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let e = io::Error::from;
        use io::ErrorKind as K;
        assert_eq!(
            ErrorKind::of(&e(K::ConnectionRefused)),
            ErrorKind::ConnectRefused
        );
        assert_eq!(ErrorKind::of(&e(K::ConnectionReset)), ErrorKind::Reset);
        assert_eq!(ErrorKind::of(&e(K::BrokenPipe)), ErrorKind::Reset);
        assert_eq!(ErrorKind::of(&e(K::TimedOut)), ErrorKind::Timeout);
        assert_eq!(ErrorKind::of(&e(K::AddrNotAvailable)), ErrorKind::Other);
    }

    #[test]
    fn tallies_merge() {
        let (mut a, mut b) = (Tally::new(), Tally::new());
        a.record(1_000);
        b.record(3_000);
        b.error(ErrorKind::Mismatch, || "bad byte".into());
        b.time_error(Instant::now());
        a.error_times_dropped = 1;
        a.merge(&b);
        assert_eq!((a.error_times.len(), a.error_times_dropped), (1, 1));
        let [started, failed] = a.error_times[0];
        assert!(
            started <= failed && started > 1_500_000_000_000_000,
            "{started}"
        );
        assert_eq!(a.messages, 2);
        assert_eq!(a.hist.len(), 2);
        assert_eq!(a.errors.verify_failures(), 1);
        assert_eq!(a.first_error.as_deref(), Some("bad byte"));
    }
}
