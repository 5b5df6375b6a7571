//! `cargo xtask merge FILE…`: one latency report from the HdrHistogram
//! interval logs of several load hosts (`loadgen --hlog FILE` on each).
//!
//! Histograms are merged by adding them — per tag (the target each host
//! loaded) and over all — so every percentile is that of all samples
//! together; percentiles are never averaged. A rate is a count over the
//! time covered: the union, over hosts, of the intervals they logged
//! (their absolute times: each log's BaseTime plus the interval's start),
//! which is the run's wall-clock length when the hosts ran at the same
//! time, as the recipe says they should. Latencies are microseconds, as
//! loadgen writes them.

use crate::flags;
use crate::units;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// Runs the command.
pub fn run(flags: &flags::Merge) -> Result<ExitCode, String> {
    let m = merge_files(&flags.files)?;
    if flags.json {
        let text = serde_json::to_string_pretty(&m).map_err(|e| format!("merge: {e}"))?;
        println!("{text}");
    } else {
        print!("{}", m.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// The merged figures of one tag, or of all.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The tag (a target address), or `all`.
    pub tag: String,
    pub count: u64,
    /// Seconds covered by the intervals merged (their union).
    pub covered_s: f64,
    /// Samples per second covered.
    pub rate: f64,
    pub intervals: usize,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The whole merge.
#[derive(Debug, Clone, Serialize)]
pub struct Merged {
    /// The logs merged, one per host, as given.
    pub files: Vec<String>,
    /// One row per tag, by tag.
    pub tags: Vec<Row>,
    pub all: Row,
}

/// Histograms and the time they cover, being added up.
struct Acc {
    hist: Option<Histogram<u64>>,
    /// `(start, end)` of each interval, seconds since the epoch.
    spans: Vec<(f64, f64)>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            hist: None,
            spans: Vec::new(),
        }
    }

    fn add(&mut self, h: &Histogram<u64>, span: (f64, f64), file: &str) -> Result<(), String> {
        self.spans.push(span);
        let into = match &mut self.hist {
            Some(into) => into,
            None => self.hist.insert(
                // Resizes itself to any value the logs hold.
                Histogram::new(h.sigfig()).map_err(|e| format!("{file}: {e:?}"))?,
            ),
        };
        into.add(h)
            .map_err(|e| format!("{file}: a histogram does not add up: {e:?}"))
    }

    fn row(&self, tag: &str) -> Row {
        let covered = union_length(&self.spans);
        let empty = Histogram::new(3).ok();
        let h = self.hist.as_ref().or(empty.as_ref());
        let q = |q: f64| h.map_or(0, |h| h.value_at_quantile(q));
        let count = h.map_or(0, |h| h.len());
        Row {
            tag: tag.to_string(),
            count,
            covered_s: (covered * 1000.0).round() / 1000.0,
            rate: if covered > 0.0 {
                ((count as f64 / covered) * 10.0).round() / 10.0
            } else {
                0.0
            },
            intervals: self.spans.len(),
            mean_us: h.map_or(0.0, |h| (h.mean() * 10.0).round() / 10.0),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.map_or(0, |h| h.max()),
        }
    }
}

/// The total length of the union of `spans`.
fn union_length(spans: &[(f64, f64)]) -> f64 {
    let mut s = spans.to_vec();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for (a, b) in s {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            _ => {
                if let Some((ca, cb)) = cur {
                    total += cb - ca;
                }
                cur = Some((a, b));
            }
        }
    }
    if let Some((ca, cb)) = cur {
        total += cb - ca;
    }
    total
}

/// Reads and merges the logs at `files`.
pub fn merge_files<P: AsRef<Path>>(files: &[P]) -> Result<Merged, String> {
    let mut tags: BTreeMap<String, Acc> = BTreeMap::new();
    let mut all = Acc::new();
    let mut names = Vec::new();
    for path in files {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes =
            std::fs::read(path).map_err(|e| format!("merge: {name}: cannot read it: {e}"))?;
        let log = testkit::hlog::read(&bytes)
            .map_err(|e| format!("merge: {name}: {e} (not an HdrHistogram interval log)"))?;
        if log.intervals.is_empty() {
            return Err(format!("merge: {name}: holds no interval histograms"));
        }
        let base = log.base().as_secs_f64();
        for i in &log.intervals {
            let start = base + i.start.as_secs_f64();
            let span = (start, start + i.length.as_secs_f64());
            let tag = i.tag.clone().unwrap_or_else(|| "(untagged)".to_string());
            tags.entry(tag)
                .or_insert_with(Acc::new)
                .add(&i.hist, span, &name)?;
            all.add(&i.hist, span, &name)?;
        }
        names.push(name);
    }
    if names.is_empty() {
        return Err("merge: name at least one interval log".into());
    }
    Ok(Merged {
        files: names,
        tags: tags.iter().map(|(t, a)| a.row(t)).collect(),
        all: all.row("all"),
    })
}

impl Merged {
    /// The terminal report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "merged {} interval log(s) (one per host): {}",
            self.files.len(),
            self.files.join(", ")
        );
        let _ = writeln!(
            s,
            "{:<24} {:>10} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "tag", "count", "covered", "rate", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for r in self.tags.iter().chain(std::iter::once(&self.all)) {
            let _ = writeln!(
                s,
                "{:<24} {:>10} {:>8.1}s {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                r.tag,
                r.count,
                r.covered_s,
                units::human(r.rate, "msg/s"),
                units::duration_us(r.mean_us),
                units::duration_us(r.p50_us as f64),
                units::duration_us(r.p90_us as f64),
                units::duration_us(r.p99_us as f64),
                units::duration_us(r.p999_us as f64),
                units::duration_us(r.max_us as f64)
            );
        }
        let _ = writeln!(
            s,
            "(percentiles of all samples together: the hosts' histograms are added, never averaged)"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, SystemTime};

    /// Writes an interval log of `samples` in `per` intervals of one
    /// second, tagged `tag`, starting at `base`.
    fn write_log(path: &Path, base: SystemTime, tag: &str, samples: &[u64], per: usize) {
        let mut out = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .with_base_time(base)
            .with_start_time(base)
            .begin_log_with(&mut out, &mut ser)
            .expect("header");
        for (k, chunk) in samples.chunks(samples.len().div_ceil(per)).enumerate() {
            let mut h = Histogram::<u64>::new(3).expect("histogram");
            for &v in chunk {
                h.record(v).expect("record");
            }
            let start = Duration::from_secs(k as u64);
            w.write_histogram(&h, start, Duration::from_secs(1), Tag::new(tag))
                .expect("interval");
        }
        std::fs::write(path, out).expect("write log");
    }

    #[test]
    fn merged_percentiles_are_those_of_the_union_of_the_samples() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Two hosts with different distributions: averaging their
        // percentiles would be far off the union's.
        let a: Vec<u64> = (0..20_000).map(|_| rng.gen_range(50..400)).collect();
        let b: Vec<u64> = (0..7_000)
            .map(|_| rng.gen_range(100..5_000) * if rng.gen_bool(0.01) { 40 } else { 1 })
            .collect();
        let dir = tempfile::tempdir().expect("tmp");
        let (pa, pb) = (dir.path().join("host1.hlog"), dir.path().join("host2.hlog"));
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        write_log(&pa, base, "10.0.0.1:80", &a, 10);
        // The second host started half a second later and ran as long.
        write_log(
            &pb,
            base + Duration::from_millis(500),
            "10.0.0.1:80",
            &b,
            10,
        );
        let m = merge_files(&[&pa, &pb]).expect("merges");

        let mut union = Histogram::<u64>::new(3).expect("histogram");
        for &v in a.iter().chain(&b) {
            union.record(v).expect("record");
        }
        for r in [&m.all, &m.tags[0]] {
            assert_eq!(r.count, union.len());
            assert_eq!(r.p50_us, union.value_at_quantile(0.50));
            assert_eq!(r.p90_us, union.value_at_quantile(0.90));
            assert_eq!(r.p99_us, union.value_at_quantile(0.99));
            assert_eq!(r.p999_us, union.value_at_quantile(0.999));
            assert_eq!(r.max_us, union.max());
            assert_eq!(r.intervals, 20);
            // 10 s each, overlapping but for half a second.
            assert_eq!(r.covered_s, 10.5);
        }
        assert_eq!(m.tags.len(), 1);
        assert_eq!(m.files.len(), 2);
        let text = m.text();
        assert!(
            text.contains("10.0.0.1:80") && text.contains("all"),
            "{text}"
        );
    }

    #[test]
    fn bad_files_are_one_line_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let missing = dir.path().join("missing.hlog");
        let e = merge_files(&[&missing]).expect_err("fails");
        assert!(e.contains("missing.hlog: cannot read it"), "{e}");

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "#a comment\nhello, world\n").expect("write");
        let e = merge_files(&[&text]).expect_err("fails");
        assert!(
            e.contains("notes.txt: line 2: not an interval log line"),
            "{e}"
        );

        let empty = dir.path().join("empty.hlog");
        std::fs::write(&empty, "#[BaseTime: 1.000 (seconds since epoch)]\n").expect("write");
        let e = merge_files(&[&empty]).expect_err("fails");
        assert!(
            e.contains("empty.hlog: holds no interval histograms"),
            "{e}"
        );
        assert!(!e.contains('\n'));
    }

    /// The real thing: two loadgen runs ("hosts") against one echo-backend
    /// at the same time, their logs merged.
    #[test]
    fn logs_of_real_loadgen_runs_merge_to_their_reports_counts() {
        use std::process::{Command, Stdio};
        let mut backend = testkit::Child::spawn(
            "echo-backend",
            Command::new(testkit::workspace::bin("echo-backend", "echo-backend"))
                .args(["--listen", "127.0.0.1:0"]),
            Duration::from_secs(60),
        );
        let target = backend.wait_listening().to_string();
        let loadgen = testkit::workspace::bin("loadgen", "loadgen");
        let dir = tempfile::tempdir().expect("tmp");
        let hosts: Vec<_> = (1..=2)
            .map(|h| {
                let log = dir.path().join(format!("host{h}.hlog"));
                let child = Command::new(&loadgen)
                    .args([
                        "--target",
                        &target,
                        "--duration",
                        "1500ms",
                        "--warmup",
                        "100ms",
                    ])
                    .args(["--connections", "2", "--json", "--hlog"])
                    .arg(&log)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start loadgen");
                (log, child)
            })
            .collect();
        let mut count = 0;
        let mut logs = Vec::new();
        for (log, child) in hosts {
            let out = child.wait_with_output().expect("loadgen ran");
            assert!(out.status.success(), "loadgen failed");
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            count += j["targets"][0]["latency_us"]["count"]
                .as_u64()
                .expect("count");
            logs.push(log);
        }
        let m = merge_files(&logs).expect("merges");
        assert_eq!(m.all.count, count);
        assert_eq!(m.tags.len(), 1);
        assert_eq!(m.tags[0].tag, target);
        // The union of two 1.5 s runs: at least one run's, at most both.
        assert!(m.all.covered_s >= 1.5 && m.all.covered_s <= 3.0, "{m:?}");
        assert!(m.all.p50_us <= m.all.p99_us && m.all.p99_us <= m.all.max_us);
    }

    #[test]
    fn spans_are_covered_once() {
        assert_eq!(union_length(&[(0.0, 1.0), (0.5, 2.0), (3.0, 4.0)]), 3.0);
        assert_eq!(union_length(&[]), 0.0);
    }
}
