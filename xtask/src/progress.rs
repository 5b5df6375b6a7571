//! The live progress line of a running scenario: on a terminal one line
//! redrawn in place (scenario, subject, elapsed of total, current rate);
//! otherwise plain lines, at most one every [`PLAIN_EVERY`] a scenario,
//! so that CI logs stay readable. Any load tool can feed it; loadgen's
//! `--progress` lines are parsed by [`parse`].

use crate::units;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The least time between two plain (not a terminal) progress lines.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// One scenario's progress line, drawn on stderr.
pub struct Line {
    scenario: String,
    total: Duration,
    /// Redrawn in place (a terminal) or printed as plain lines.
    tty: bool,
    /// When the last plain line was printed.
    last_plain: Option<Instant>,
    out: Box<dyn Write>,
    drawn: bool,
}

impl Line {
    /// A line for `scenario`, whose load runs about `total`.
    pub fn start(scenario: &str, total: Duration) -> Line {
        let tty = std::io::stderr().is_terminal();
        Line::to(scenario, total, tty, Box::new(std::io::stderr()))
    }

    fn to(scenario: &str, total: Duration, tty: bool, out: Box<dyn Write>) -> Line {
        Line {
            scenario: scenario.into(),
            total,
            tty,
            last_plain: None,
            out,
            drawn: false,
        }
    }

    /// Shows that `subject` is loaded, `elapsed` into the scenario, at
    /// `rate_text` (already in human units).
    pub fn update(&mut self, subject: &str, elapsed: Duration, rate_text: &str) {
        self.update_at(Instant::now(), subject, elapsed, rate_text);
    }

    fn update_at(&mut self, now: Instant, subject: &str, elapsed: Duration, rate_text: &str) {
        // A load whose length is not known beforehand (zero) shows only
        // how long it has run.
        let of = if self.total.is_zero() {
            String::new()
        } else {
            format!(" of {:.0} s", self.total.as_secs_f64())
        };
        let text = format!(
            "{}: {subject}, {:.0} s{of}, {rate_text}",
            self.scenario,
            elapsed.as_secs_f64(),
        );
        // A failed write to stderr leaves nothing to tell anyone.
        if self.tty {
            let _ = write!(self.out, "\r\x1b[K  {text}");
            let _ = self.out.flush();
            self.drawn = true;
        } else if self
            .last_plain
            .is_none_or(|t| now.duration_since(t) >= PLAIN_EVERY)
        {
            let _ = writeln!(self.out, "xtask: {text}");
            self.last_plain = Some(now);
        }
    }

    /// Clears the line (on a terminal), so the next output starts clean.
    pub fn finish(mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r\x1b[K");
            let _ = self.out.flush();
        }
    }
}

/// One of loadgen's `--progress` lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub elapsed_s: f64,
    pub total_s: f64,
    /// The address loaded in the last second; `None` for `-`.
    pub target: Option<String>,
    /// Messages a second over the last second.
    pub rate: f64,
    pub throughput_bps: f64,
    pub errors: u64,
}

/// Parses `loadgen progress elapsed_s=3.0 total_s=12.5 target=ADDR
/// rate=51234.5 throughput_bps=1.2e9 errors=0`; keys it does not know are
/// skipped; a line that is not one, or lacks a key, is `None` (ignored).
pub fn parse(line: &str) -> Option<Tick> {
    let rest = line.trim().strip_prefix("loadgen progress ")?;
    let (mut elapsed_s, mut total_s, mut target, mut rate, mut bps, mut errors) =
        (None, None, None, None, None, None);
    for pair in rest.split_whitespace() {
        let (k, v) = pair.split_once('=')?;
        let num = || v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0);
        match k {
            "elapsed_s" => elapsed_s = Some(num()?),
            "total_s" => total_s = Some(num()?),
            "target" => target = Some((v != "-").then(|| v.to_string())),
            "rate" => rate = Some(num()?),
            "throughput_bps" => bps = Some(num()?),
            "errors" => errors = Some(v.parse().ok()?),
            _ => {}
        }
    }
    Some(Tick {
        elapsed_s: elapsed_s?,
        total_s: total_s?,
        target: target?,
        rate: rate?,
        throughput_bps: bps?,
        errors: errors?,
    })
}

/// Shows `raw`, a loadgen stderr line, on `live` if it is a progress
/// line: its target named by `name_of` (the address itself when that
/// knows none), its elapsed time after `offset` (earlier loadgen runs of
/// the scenario), its rate in `unit`. Returns the run's planned total.
pub fn show<'a>(
    live: &mut Line,
    raw: &'a str,
    offset: Duration,
    unit: &str,
    name_of: impl Fn(&str) -> Option<&'a str>,
) -> Option<Duration> {
    let t = parse(raw)?;
    let subject = t.target.as_deref().map_or("-", |a| name_of(a).unwrap_or(a));
    live.update(
        subject,
        offset + Duration::from_secs_f64(t.elapsed_s),
        &rate_text(&t, unit),
    );
    Some(Duration::from_secs_f64(t.total_s))
}

/// The rate of a tick in human units: throughput for bulk loads, else
/// messages (or connections) a second.
pub fn rate_text(t: &Tick, unit: &str) -> String {
    if unit == "bit/s" {
        units::human(t.throughput_bps, unit)
    } else {
        units::human(t.rate, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    const LINE: &str = "loadgen progress elapsed_s=3.0 total_s=12.5 target=127.0.0.1:4000 rate=51234.5 throughput_bps=1.2e9 errors=0";

    #[test]
    fn a_progress_line_parses() {
        let t = parse(LINE).expect("parses");
        assert_eq!(
            t,
            Tick {
                elapsed_s: 3.0,
                total_s: 12.5,
                target: Some("127.0.0.1:4000".into()),
                rate: 51234.5,
                throughput_bps: 1.2e9,
                errors: 0,
            }
        );
        assert_eq!(rate_text(&t, "msg/s"), "51.2k msg/s");
        assert_eq!(rate_text(&t, "bit/s"), "1.20 Gbit/s");
        let idle = parse(&LINE.replace("127.0.0.1:4000", "-")).expect("no target");
        assert_eq!(idle.target, None);
        let more = parse(&format!("{LINE} later_key=7")).expect("unknown keys skipped");
        assert_eq!(more.rate, 51234.5);
    }

    #[test]
    fn malformed_lines_are_ignored() {
        for bad in [
            "",
            "loadgen: connecting",
            "\r\x1b[Kloadgen:     3 s  100 messages",
            "loadgen progress",
            "loadgen progress elapsed_s=3.0 total_s=12.5 target=x rate=1",
            "loadgen progress elapsed_s=x total_s=12.5 target=x rate=1 throughput_bps=1 errors=0",
            "loadgen progress elapsed_s=-1 total_s=12.5 target=x rate=1 throughput_bps=1 errors=0",
            "loadgen progress elapsed_s=1 total_s=inf target=x rate=1 throughput_bps=1 errors=0",
            "loadgen progress elapsed_s 1 total_s=2 target=x rate=1 throughput_bps=1 errors=0",
            "loadgen progress elapsed_s=1 total_s=2 target=x rate=1 throughput_bps=1 errors=-3",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("sink")).into_owned()
        }
    }

    /// A line for `scenario` of `total_s` seconds, written to a sink.
    fn line(scenario: &str, total_s: u64, tty: bool) -> (Line, Sink) {
        let sink = Sink::default();
        let total = Duration::from_secs(total_s);
        (Line::to(scenario, total, tty, Box::new(sink.clone())), sink)
    }

    #[test]
    fn on_a_terminal_the_line_is_redrawn_in_place_and_cleared() {
        let (mut l, sink) = line("throughput", 12, true);
        let t0 = Instant::now();
        l.update_at(t0, "self", Duration::from_secs(1), "50k msg/s");
        l.update_at(t0, "haproxy", Duration::from_secs(2), "40k msg/s");
        l.finish();
        assert_eq!(
            sink.text(),
            "\r\x1b[K  throughput: self, 1 s of 12 s, 50k msg/s\
             \r\x1b[K  throughput: haproxy, 2 s of 12 s, 40k msg/s\r\x1b[K"
        );
    }

    #[test]
    fn a_progress_line_is_shown_under_its_subjects_name() {
        let (mut l, sink) = line("latency", 30, false);
        let offset = Duration::from_secs(10);
        let named = |a: &str| (a == "127.0.0.1:4000").then_some("haproxy");
        assert_eq!(
            show(&mut l, LINE, offset, "msg/s", named),
            Some(Duration::from_secs_f64(12.5))
        );
        assert_eq!(
            show(&mut l, "loadgen: warming up", offset, "msg/s", named),
            None
        );
        l.finish();
        assert_eq!(
            sink.text(),
            "xtask: latency: haproxy, 13 s of 30 s, 51.2k msg/s\n"
        );
    }

    #[test]
    fn off_a_terminal_plain_lines_come_at_most_every_ten_seconds() {
        let (mut l, sink) = line("bulk", 60, false);
        let t0 = Instant::now();
        for s in [0, 1, 9, 10, 15, 21] {
            let at = t0 + Duration::from_secs(s);
            l.update_at(at, "self", Duration::from_secs(s), "1 Gbit/s");
        }
        l.finish();
        let lines: Vec<String> = sink.text().lines().map(String::from).collect();
        assert_eq!(
            lines,
            [
                "xtask: bulk: self, 0 s of 60 s, 1 Gbit/s",
                "xtask: bulk: self, 10 s of 60 s, 1 Gbit/s",
                "xtask: bulk: self, 21 s of 60 s, 1 Gbit/s",
            ]
        );
    }

    #[test]
    fn a_load_of_unknown_length_shows_only_how_long_it_has_run() {
        let (mut l, sink) = line("redis", 0, false);
        l.update_at(
            Instant::now(),
            "self",
            Duration::from_secs(4),
            "round 1 of 3",
        );
        l.finish();
        assert_eq!(sink.text(), "xtask: redis: self, 4 s, round 1 of 3\n");
    }
}
