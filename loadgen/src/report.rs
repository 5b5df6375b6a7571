//! The figures of a run: the JSON object `--json` prints (schema in the
//! crate docs) and the readable summary.

use crate::cli::{Config, Mode};
use crate::machine;
use crate::stats::{Counts, Errors, Tally};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// Version of the JSON schema; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Percentiles of `latency_curve`: dense towards the tail, as latency
/// charts are read.
pub const CURVE: [f64; 30] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.25, 97.5,
    98.0, 98.75, 99.0, 99.25, 99.5, 99.75, 99.9, 99.95, 99.97, 99.99, 99.995, 99.999, 99.9999,
    100.0,
];

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: u32,
    pub mode: &'static str,
    /// Connections per target.
    pub connections: usize,
    /// Measured seconds, all targets together.
    pub duration_s: f64,
    /// `--rate`, or null for closed loop.
    pub rate_target: Option<u64>,
    pub targets: Vec<TargetReport>,
    /// Bulk mode's direction, else null.
    pub bulk_direction: Option<&'static str>,
    /// Stopped early by Ctrl-C / SIGTERM.
    pub interrupted: bool,
}

/// One target's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: String,
    pub messages: u64,
    /// Messages per second of measured time.
    pub rate: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bits per second of payload in the busier direction.
    pub throughput_bps: f64,
    pub connects: u64,
    pub connect_rate: f64,
    pub errors: Errors,
    pub verify_failures: u64,
    pub latency_us: Latency,
    /// `[percentile, microseconds]` pairs at [`CURVE`].
    pub latency_curve: Vec<[f64; 2]>,
    /// This target's measured seconds.
    pub duration_s: f64,
    /// Open loop: how late messages were sent after they were due
    /// (microseconds); null for closed loop.
    pub send_lag_us: Option<Latency>,
    /// What the first error was, if any.
    pub first_error: Option<String>,
    /// Connections reset on purpose (`--reset-ratio`), whole run.
    pub resets_sent: u64,
    /// `[started, failed]` of each error, Unix microseconds, by failure.
    pub error_times: Vec<[u64; 2]>,
    /// Errors counted without times.
    pub error_times_dropped: u64,
    /// The figures of each measured window, in time order (one target
    /// without windows: of each second).
    pub rounds: Vec<Round>,
    /// Busy CPU seconds of the whole machine over this target's measured
    /// time; `None` where `/proc/stat` cannot be read.
    pub machine_cpu_s: Option<f64>,
}

/// One round of a target: a measured window, or a second of the only
/// window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Round {
    /// Offset of its measured start from the start of the timetable.
    pub start_s: f64,
    pub duration_s: f64,
    pub messages: u64,
    pub rate: f64,
    pub throughput_bps: f64,
    pub connects: u64,
    pub connect_rate: f64,
    /// Busy CPU seconds of the whole machine in this round.
    pub machine_cpu_s: Option<f64>,
}

impl Round {
    pub fn new(
        mode: Mode,
        message_size: usize,
        c: &Counts,
        start: Duration,
        measured: Duration,
        machine_ticks: Option<u64>,
    ) -> Round {
        let r = Rates::of(mode, message_size, c, measured);
        Round {
            start_s: round3(start.as_secs_f64()),
            duration_s: round3(measured.as_secs_f64()),
            messages: r.messages,
            rate: r.rate,
            throughput_bps: r.throughput_bps,
            connects: c.connects,
            connect_rate: r.connect_rate,
            machine_cpu_s: machine_ticks.map(machine::seconds),
        }
    }
}

/// The rates that counts over a measured time give, for a whole target
/// and for each round alike.
struct Rates {
    messages: u64,
    rate: f64,
    throughput_bps: f64,
    connect_rate: f64,
}

impl Rates {
    fn of(mode: Mode, message_size: usize, c: &Counts, measured: Duration) -> Rates {
        let secs = measured.as_secs_f64();
        let per_s = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let busier = c.bytes_sent.max(c.bytes_received);
        // Bulk mode has no request/reply messages: it counts
        // `--message-size` units of the busier direction instead.
        let messages = if mode == Mode::Bulk {
            busier / message_size.max(1) as u64
        } else {
            c.messages
        };
        Rates {
            messages,
            rate: round3(per_s(messages as f64)),
            throughput_bps: round3(per_s(busier as f64 * 8.0)),
            connect_rate: round3(per_s(c.connects as f64)),
        }
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

fn us(ns: u64) -> u64 {
    (ns + 500) / 1000
}

fn us_f(ns: u64) -> f64 {
    (ns as f64 / 1000.0 * 1000.0).round() / 1000.0
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean: (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The latency distribution at [`CURVE`], in microseconds.
pub fn curve(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE
        .iter()
        .map(|&p| {
            let ns = if p == 0.0 {
                h.min()
            } else {
                h.value_at_percentile(p)
            };
            [p, us_f(ns)]
        })
        .collect()
}

impl TargetReport {
    /// Figures for one target from its merged tally and measured time.
    pub fn new(
        cfg: &Config,
        target: String,
        t: &Tally,
        measured: Duration,
        rounds: Vec<Round>,
        machine_ticks: Option<u64>,
    ) -> TargetReport {
        let r = Rates::of(cfg.mode, cfg.message_size, &t.counts(), measured);
        TargetReport {
            target,
            messages: r.messages,
            rate: r.rate,
            bytes_sent: t.bytes_sent,
            bytes_received: t.bytes_received,
            throughput_bps: r.throughput_bps,
            connects: t.connects,
            connect_rate: r.connect_rate,
            errors: t.errors,
            verify_failures: t.errors.verify_failures(),
            latency_us: Latency::of(&t.hist),
            latency_curve: curve(&t.hist),
            duration_s: round3(measured.as_secs_f64()),
            send_lag_us: cfg.open_loop().then(|| Latency::of(&t.send_lag)),
            first_error: t.first_error.clone(),
            resets_sent: t.resets_sent,
            error_times: {
                let mut v = t.error_times.clone();
                v.sort_unstable_by_key(|&[_, failed]| failed);
                v
            },
            error_times_dropped: t.error_times_dropped,
            rounds,
            machine_cpu_s: machine_ticks.map(machine::seconds),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Report {
    /// Whether the run had any error or verification failure.
    pub fn failed(&self) -> bool {
        self.targets.iter().any(|t| t.errors.total() > 0)
    }

    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The readable summary for stdout.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let lp = match self.rate_target {
            Some(r) => format!("open loop at {r} msg/s"),
            None => "closed loop".to_string(),
        };
        let mode = match self.bulk_direction {
            Some(d) => format!("{} {d}", self.mode),
            None => self.mode.to_string(),
        };
        let _ = writeln!(
            s,
            "loadgen: {mode}, {} connections per target, {lp}, {:.1} s measured{}",
            self.connections,
            self.duration_s,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        for t in &self.targets {
            let _ = writeln!(s, "target {}  ({:.1} s measured)", t.target, t.duration_s);
            let _ = writeln!(s, "  messages    {:>12}   {:>12.1} /s", t.messages, t.rate);
            let _ = writeln!(
                s,
                "  bytes       {:>12} sent   {} received   {}",
                human_bytes(t.bytes_sent),
                human_bytes(t.bytes_received),
                human_bits(t.throughput_bps)
            );
            let _ = writeln!(
                s,
                "  connects    {:>12}   {:>12.1} /s",
                t.connects, t.connect_rate
            );
            if t.resets_sent > 0 {
                let _ = writeln!(s, "  resets sent {:>12}", t.resets_sent);
            }
            let l = &t.latency_us;
            if l.count > 0 {
                let _ = writeln!(
                    s,
                    "  latency µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}  (n={})",
                    l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.count
                );
            }
            if let Some(l) = t.send_lag_us.as_ref().filter(|l| l.count > 0) {
                let _ = writeln!(
                    s,
                    "  send lag µs p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (sent after due)",
                    l.p50, l.p90, l.p99, l.p999, l.max
                );
            }
            if t.errors.total() == 0 {
                let _ = writeln!(s, "  errors      none");
            } else {
                let kinds: Vec<String> = t
                    .errors
                    .nonzero()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                let _ = writeln!(s, "  errors      {}", kinds.join(", "));
                if let Some(first) = &t.first_error {
                    let _ = writeln!(s, "  first error {first}");
                }
            }
        }
        s
    }

    /// One line per target with errors, for stderr.
    pub fn error_lines(&self) -> Vec<String> {
        self.targets
            .iter()
            .filter(|t| t.errors.total() > 0)
            .map(|t| {
                let kinds: Vec<String> = t
                    .errors
                    .nonzero()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                format!(
                    "loadgen: {} errors against {} ({}); {} verification failures; first: {}",
                    t.errors.total(),
                    t.target,
                    kinds.join(", "),
                    t.verify_failures,
                    t.first_error.as_deref().unwrap_or("?")
                )
            })
            .collect()
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_bits(bps: f64) -> String {
    if bps >= 1e9 {
        format!("{:.2} Gbit/s", bps / 1e9)
    } else if bps >= 1e6 {
        format!("{:.1} Mbit/s", bps / 1e6)
    } else {
        format!("{:.1} kbit/s", bps / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    #[test]
    fn latency_is_reported_in_microseconds() {
        let mut h = histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).expect("record");
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50, 500);
        assert_eq!(l.p99, 990);
        assert_eq!(l.max, 1000);
        assert!((l.mean - 500.5).abs() < 1.0, "{}", l.mean);
        let c = curve(&h);
        assert_eq!(c.len(), CURVE.len());
        assert_eq!(c[0], [0.0, 1.0]);
        assert!(c.windows(2).all(|w| w[0][1] <= w[1][1]));
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let l = Latency::of(&histogram());
        assert_eq!(l.count, 0);
        assert_eq!(l.max, 0);
        assert!(curve(&histogram()).is_empty());
    }
}
