//! The once-a-second progress line on stderr: with `--progress` a
//! machine-readable one (what the workbench reads),
//!
//! ```text
//! loadgen progress elapsed_s=3.0 total_s=12.5 target=127.0.0.1:4000 rate=51234.5 throughput_bps=1.200e9 errors=0
//! ```
//!
//! (`elapsed_s`: seconds into the timetable, 0 while connections are set
//! up; `total_s`: warm-ups and durations of the whole timetable;
//! `target`: the one being loaded, `-` between or before windows; `rate`:
//! messages a second over the last second, warm-up included;
//! `throughput_bps`: bits a second of payload over the last second, the
//! busier direction; `errors`: so far, all targets), and on a terminal
//! without it a live human line, redrawn in place.

use crate::plan::{self, Segment};
use crate::shared::{Shared, ThreadProgress};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Which line to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `loadgen progress ...`, one line each.
    Machine,
    /// The terminal's `\r` line.
    Human,
}

/// The counters summed over threads at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    messages: u64,
    sent: u64,
    received: u64,
    errors: u64,
}

impl Sample {
    fn of(shared: &Shared) -> Sample {
        let sum = |f: fn(&ThreadProgress) -> &std::sync::atomic::AtomicU64| -> u64 {
            shared
                .progress
                .iter()
                .map(|p| f(p).load(Ordering::Relaxed))
                .sum()
        };
        Sample {
            at: Instant::now(),
            messages: sum(|p| &p.messages),
            sent: sum(|p| &p.sent),
            received: sum(|p| &p.received),
            errors: sum(|p| &p.errors),
        }
    }
}

/// Draws the progress line of one run.
pub struct Progress<'a> {
    style: Style,
    shared: &'a Shared,
    plan: &'a [Segment],
    targets: Vec<&'a str>,
    began: Instant,
    last: Sample,
}

impl<'a> Progress<'a> {
    pub fn new(
        style: Style,
        shared: &'a Shared,
        plan: &'a [Segment],
        targets: Vec<&'a str>,
    ) -> Progress<'a> {
        Progress {
            style,
            shared,
            plan,
            targets,
            began: Instant::now(),
            last: Sample::of(shared),
        }
    }

    /// Draws the line for the second since the last one.
    pub fn tick(&mut self) {
        let now = Sample::of(self.shared);
        let dt = now.at.duration_since(self.last.at).as_secs_f64().max(1e-3);
        let rate = now.messages.saturating_sub(self.last.messages) as f64 / dt;
        let sent = now.sent.saturating_sub(self.last.sent);
        let received = now.received.saturating_sub(self.last.received);
        let mut err = io::stderr().lock();
        match self.style {
            Style::Machine => {
                let elapsed = self
                    .shared
                    .started()
                    .map_or(0.0, |s| now.at.saturating_duration_since(s).as_secs_f64());
                let target = self
                    .plan
                    .iter()
                    .find(|s| s.start.as_secs_f64() <= elapsed && elapsed < s.end.as_secs_f64())
                    .filter(|_| self.shared.started().is_some())
                    .and_then(|s| self.targets.get(s.target).copied())
                    .unwrap_or("-");
                let line = machine_line(
                    elapsed,
                    plan::total(self.plan).as_secs_f64(),
                    target,
                    rate,
                    sent.max(received) as f64 * 8.0 / dt,
                    now.errors,
                );
                let _ = writeln!(err, "{line}");
            }
            Style::Human => {
                let _ = write!(
                    err,
                    "\r\x1b[Kloadgen: {:>5.0} s  {} messages  {rate:.0}/s  {:.1} MiB  {} errors",
                    self.began.elapsed().as_secs_f64(),
                    now.messages,
                    (now.sent + now.received) as f64 / (1 << 20) as f64,
                    now.errors
                );
            }
        }
        let _ = err.flush();
        self.last = now;
    }

    /// Clears the terminal's line at the end.
    pub fn finish(&self) {
        if self.style == Style::Human {
            eprint!("\r\x1b[K");
        }
    }
}

/// The `--progress` line.
pub fn machine_line(
    elapsed_s: f64,
    total_s: f64,
    target: &str,
    rate: f64,
    bps: f64,
    errors: u64,
) -> String {
    format!(
        "loadgen progress elapsed_s={elapsed_s:.1} total_s={total_s:.1} target={target} rate={rate:.1} throughput_bps={bps:.3e} errors={errors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_line_is_keys_and_values_only() {
        let l = machine_line(3.04, 12.5, "127.0.0.1:4000", 51234.54, 1.2e9, 0);
        assert_eq!(
            l,
            "loadgen progress elapsed_s=3.0 total_s=12.5 target=127.0.0.1:4000 rate=51234.5 throughput_bps=1.200e9 errors=0"
        );
        let bps: f64 = l
            .split(' ')
            .find_map(|kv| kv.strip_prefix("throughput_bps="))
            .and_then(|v| v.parse().ok())
            .expect("parses");
        assert_eq!(bps, 1.2e9);
    }
}
