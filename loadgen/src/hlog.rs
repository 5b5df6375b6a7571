//! `--hlog FILE`: the latencies as an HdrHistogram interval log, the
//! format HdrHistogram's tools (and `cargo xtask merge`) read and merge
//! across load hosts.
//!
//! ```text
//! #[loadgen interval log: latency in microseconds, one histogram per target per interval]
//! #[StartTime: 1764612345.678 (seconds since epoch)]
//! #[BaseTime: 1764612345.678 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=127.0.0.1:4000,1.000,1.000,0.152,HISTFAAAA...
//! ```
//!
//! StartTime and BaseTime are the wall-clock start of the timetable;
//! each line's start is seconds since then, its length the interval's
//! measured seconds, its max in milliseconds, and its histogram (V2,
//! deflated, base64) holds the interval's latencies in microseconds. The
//! tag is the target as given on the command line. Lines are in time
//! order; the file is opened before the load starts and written at its
//! end.

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Highest latency a log histogram holds: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;

/// An interval log being gathered.
pub struct Hlog {
    path: PathBuf,
    file: File,
    /// Target addresses as typed: the tags.
    tags: Vec<String>,
    serializer: V2DeflateSerializer,
    /// `(start, line)` of each interval, written at the end.
    lines: Vec<(Duration, Vec<u8>)>,
    /// The first failure to encode an interval, reported at the end.
    failed: Option<String>,
}

impl Hlog {
    /// Creates FILE now, so that a path that cannot be written fails the
    /// run before any load.
    pub fn create(path: &Path, tags: Vec<String>) -> Result<Hlog, String> {
        let file = File::create(path)
            .map_err(|e| format!("--hlog \"{}\": cannot create it: {e}", path.display()))?;
        Ok(Hlog {
            path: path.to_path_buf(),
            file,
            tags,
            serializer: V2DeflateSerializer::new(),
            lines: Vec::new(),
            failed: None,
        })
    }

    /// Encodes one interval of `target`: `ns` holds its latencies in
    /// nanoseconds, and it began `start` after the timetable did.
    pub fn interval(
        &mut self,
        target: usize,
        ns: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) {
        let us = micros(ns);
        let tag = self.tags.get(target).and_then(|t| Tag::new(t));
        let mut line = Vec::new();
        let written = IntervalLogWriterBuilder::new()
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut line, &mut self.serializer)
            .map_err(|e| e.to_string())
            .and_then(|mut w| {
                w.write_histogram(&us, start, length, tag)
                    .map_err(|e| format!("{e:?}"))
            });
        match written {
            // The builder notes its divisor in a comment line; keep only
            // the histogram's.
            Ok(()) => {
                let text = line
                    .split(|&b| b == b'\n')
                    .find(|l| !l.is_empty() && l[0] != b'#');
                if let Some(l) = text {
                    self.lines.push((start, l.to_vec()));
                }
            }
            Err(e) => {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Puts the lines in time order (intervals complete out of order when
    /// targets take turns).
    pub fn sort(&mut self) {
        self.lines.sort_by_key(|(start, _)| *start);
    }

    /// Writes the log; `started` is the wall-clock time the timetable
    /// started.
    pub fn write(self, started: SystemTime) -> Result<(), String> {
        let what = |e: io::Error| format!("--hlog \"{}\": writing it: {e}", self.path.display());
        if let Some(e) = &self.failed {
            return Err(format!(
                "--hlog \"{}\": encoding a histogram: {e}",
                self.path.display()
            ));
        }
        let mut out = BufWriter::new(&self.file);
        let mut serializer = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment("[loadgen interval log: latency in microseconds, one histogram per target per interval]")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(what)?;
        out.write_all(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        )
        .map_err(what)?;
        for (_, l) in &self.lines {
            out.write_all(l).map_err(what)?;
            out.write_all(b"\n").map_err(what)?;
        }
        out.flush().map_err(what)
    }
}

/// A nanosecond histogram in microseconds (rounded to the nearest), count
/// for count.
pub fn micros(ns: &Histogram<u64>) -> Histogram<u64> {
    // Constant bounds that satisfy the constructor's rules.
    let mut us = Histogram::new_with_bounds(1, MAX_US, 3)
        .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
    for v in ns.iter_recorded() {
        let value = ns.median_equivalent(v.value_iterated_to());
        let micros = ((value + 500) / 1000).clamp(1, MAX_US);
        us.saturating_record_n(micros, v.count_at_value());
    }
    us
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::histogram;

    #[test]
    fn the_log_reads_back_with_its_counts_tags_and_times() {
        let path = std::env::temp_dir().join(format!("loadgen-hlog-{}.hlog", std::process::id()));
        let mut log =
            Hlog::create(&path, vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()]).expect("create");
        let mut h = histogram();
        for us in 1..=100u64 {
            h.record(us * 1000).expect("record");
        }
        let s = Duration::from_secs(1);
        log.interval(1, &h, 2 * s, s);
        log.interval(0, &h, s, s / 2);
        log.sort();
        let started = SystemTime::now();
        log.write(started).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\n\"StartTimestamp\",\"Interval_Length\""),
            "{text}"
        );
        let got = testkit::hlog::read(&bytes).expect("reads back");
        let since_epoch = started.duration_since(std::time::UNIX_EPOCH).expect("now");
        let base = got.base_time.expect("BaseTime");
        assert!(
            base.abs_diff(since_epoch) < Duration::from_millis(2),
            "{base:?}"
        );
        assert_eq!(got.start_time, got.base_time);
        let i = &got.intervals;
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].tag.as_deref(), Some("127.0.0.1:1"));
        assert_eq!((i[0].start, i[0].length, i[0].hist.len()), (s, s / 2, 100));
        assert_eq!(i[1].tag.as_deref(), Some("127.0.0.1:2"));
        assert_eq!(i[1].start, 2 * s);
        assert_eq!(i[1].hist.value_at_quantile(0.5), 50);
        assert_eq!(i[1].hist.max(), 100);
    }

    #[test]
    fn an_unwritable_path_fails_at_once_naming_the_option() {
        let e = Hlog::create(Path::new("/nonexistent-dir/x.hlog"), Vec::new())
            .err()
            .expect("fails");
        assert!(
            e.starts_with("--hlog \"/nonexistent-dir/x.hlog\": cannot create it"),
            "{e}"
        );
    }
}
