//! End-to-end: a windowed two-target run against two real echo-backends
//! with `--hlog`, `--progress` and `--json`, checking that the rounds, the
//! progress lines and the interval log agree with the report.

use crate::util::{self, loadgen, total_errors};
use std::collections::BTreeMap;

#[test]
fn rounds_progress_lines_and_the_interval_log_agree_with_the_report() {
    let (_a, addr_a) = util::echo_backend("echo", &[]);
    let (_b, addr_b) = util::echo_backend("echo", &[]);
    let (ta, tb) = (addr_a.to_string(), addr_b.to_string());
    let dir = tempfile_dir();
    let hlog = dir.join("run.hlog");
    let hlog_s = hlog.to_string_lossy().into_owned();
    let run = loadgen(&[
        "--target",
        &ta,
        "--target",
        &tb,
        "--duration",
        "2s",
        "--warmup",
        "200ms",
        "--window",
        "500ms",
        "--connections",
        "4",
        "--threads",
        "2",
        "--hlog",
        &hlog_s,
        "--progress",
        "--json",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);

    // Contract 2: at least one progress line, every field parsing.
    let progress: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("loadgen progress "))
        .collect();
    assert!(!progress.is_empty(), "stderr: {}", run.stderr);
    for line in &progress {
        let kv: BTreeMap<&str, &str> = line["loadgen progress ".len()..]
            .split(' ')
            .map(|kv| kv.split_once('=').expect("key=value"))
            .collect();
        let keys: Vec<&str> = kv.keys().copied().collect();
        assert_eq!(
            keys,
            [
                "elapsed_s",
                "errors",
                "rate",
                "target",
                "throughput_bps",
                "total_s"
            ],
            "{line}"
        );
        for k in ["elapsed_s", "total_s", "rate", "throughput_bps"] {
            kv[k]
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{k} in {line}"));
        }
        assert_eq!(kv["total_s"].parse::<f64>().ok(), Some(2.4), "{line}");
        assert!(
            ["-", ta.as_str(), tb.as_str()].contains(&kv["target"]),
            "{line}"
        );
        assert_eq!(kv["errors"], "0", "{line}");
    }

    // Contract 1: one round per measured window (2 s / 2 targets in
    // 500 ms windows: two each), adding up to the target's figures.
    let j = run.json();
    let mut counts = BTreeMap::new();
    for t in j["targets"].as_array().expect("targets") {
        assert_eq!(total_errors(t), 0, "{t}");
        let rounds = t["rounds"].as_array().expect("rounds");
        assert_eq!(rounds.len(), 2, "{t}");
        let sum = |k: &str| -> u64 { rounds.iter().map(|r| r[k].as_u64().expect(k)).sum() };
        assert_eq!(sum("messages"), t["messages"].as_u64().expect("messages"));
        assert_eq!(sum("connects"), t["connects"].as_u64().expect("connects"));
        let starts: Vec<f64> = rounds
            .iter()
            .map(|r| r["start_s"].as_f64().expect("start"))
            .collect();
        assert!(starts[0] < starts[1], "{starts:?}");
        // The machine's busy CPU: the load kept it busy, and the rounds'
        // add up to the target's.
        let machine = t["machine_cpu_s"].as_f64().expect("machine_cpu_s");
        assert!(machine > 0.0, "{t}");
        let rounds_machine: f64 = rounds
            .iter()
            .map(|r| {
                r["machine_cpu_s"]
                    .as_f64()
                    .expect("a round's machine_cpu_s")
            })
            .sum();
        assert!((rounds_machine - machine).abs() < 1e-6, "{t}");
        for r in rounds {
            assert_eq!(r["duration_s"].as_f64(), Some(0.5), "{r}");
            for k in ["rate", "throughput_bps", "connect_rate"] {
                assert!(r[k].as_f64().is_some(), "{k} in {r}");
            }
        }
        let count = t["latency_us"]["count"].as_u64().expect("count");
        assert!(count > 0, "{t}");
        counts.insert(t["target"].as_str().expect("target").to_string(), count);
    }

    // Contract 3: the interval log reads back, tagged per target, with
    // as many samples as the report counted.
    let bytes = std::fs::read(&hlog).expect("the log was written");
    let log = testkit::hlog::read(&bytes).expect("an interval log");
    assert!(log.start_time.is_some() && log.base_time.is_some());
    let mut logged: BTreeMap<String, u64> = BTreeMap::new();
    for i in &log.intervals {
        assert!(i.length.as_secs_f64() <= 1.0, "{:?}", i.length);
        *logged.entry(i.tag.clone().expect("tagged")).or_default() += i.hist.len();
    }
    assert_eq!(logged, counts);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_target_gets_a_round_per_second() {
    let (_b, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&[
        "--target",
        &t,
        "--duration",
        "2s",
        "--warmup",
        "100ms",
        "--connections",
        "2",
        "--json",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    let rounds = r["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{r}");
    assert_eq!(
        rounds[0]["start_s"].as_f64(),
        Some(0.1),
        "warm-up excluded: {r}"
    );
    let sum: u64 = rounds
        .iter()
        .map(|x| x["messages"].as_u64().expect("m"))
        .sum();
    assert_eq!(sum, r["messages"].as_u64().expect("messages"));
    assert!(!run.stderr.contains("loadgen progress"), "{}", run.stderr);
}

#[test]
fn an_unwritable_hlog_fails_before_any_load() {
    let run = loadgen(&[
        "--target",
        "127.0.0.1:9",
        "--duration",
        "1s",
        "--hlog",
        "/nonexistent-dir/x.hlog",
    ]);
    assert_eq!(run.status, Some(2), "stderr: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(
        lines[0].contains("--hlog \"/nonexistent-dir/x.hlog\": cannot create it"),
        "{}",
        run.stderr
    );
}

/// A fresh directory under the system's temporary one.
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "loadgen-it-hlog-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}
