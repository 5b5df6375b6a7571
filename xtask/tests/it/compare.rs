//! `cargo xtask compare` on two runs written into a workbench of the
//! test's own: the table printed and written, and its one-line errors.

use crate::util::Bench;
use serde_json::json;

/// Writes run `id` with one rate figure for `self`, measured in `rounds`.
fn put_run(b: &Bench, id: &str, figure: &str, rate: f64, rounds: &[f64]) {
    let dir = b.out.join(id);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let report = json!({"id": id, "quick": true, "primary": "self", "subjects": ["self"],
        "scenarios": [{"name": "throughput", "description": "d", "curves": [], "skipped": [],
            "error": null, "commands": [],
            "figures": [{"name": figure, "unit": "msg/s", "class": "wall",
                "values": {"self": rate}, "rounds": {"self": rounds},
                "target": null, "pass": null}]}]});
    std::fs::write(dir.join("report.json"), report.to_string()).expect("write");
}

#[test]
fn compare_prints_and_writes_each_change_against_the_spread() {
    let b = Bench::new();
    put_run(
        &b,
        "20260101-100000",
        "rate",
        100_000.0,
        &[99e3, 100e3, 101e3],
    );
    put_run(&b, "20260102-100000", "rate", 80_000.0, &[79e3, 80e3, 81e3]);
    let r = b.xtask(&["compare", "20260101-100000", "latest"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout.contains(
            "| throughput | rate | self | 100k msg/s | 80.0k msg/s | -20.0 % | worse | beyond spread |"
        ),
        "{r}"
    );
    let stem = b.out.join("compare-20260101-100000-vs-20260102-100000");
    let md = std::fs::read_to_string(stem.with_extension("md")).expect("md written");
    assert!(md.contains("beyond spread"), "{md}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).expect("json"))
            .expect("valid json");
    assert_eq!(j["rows"][0]["spread"], "beyond");
    assert_eq!(j["rows"][0]["a"], 100_000.0);
}

#[test]
fn compare_refuses_an_unknown_run_and_runs_with_nothing_in_common_in_one_line() {
    let b = Bench::new();
    put_run(&b, "20260101-100000", "rate", 1.0, &[]);
    put_run(&b, "20260102-100000", "connect_rate", 1.0, &[]);
    let r = b.xtask(&["compare", "2026010", "latest"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert_eq!(r.stderr.lines().count(), 1, "{r}");
    assert!(
        r.stderr.contains("unknown run \"2026010\"") && r.stderr.contains("20260102-100000"),
        "{r}"
    );
    let r = b.xtask(&["compare", "20260101-100000", "20260102-100000"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("no figures in common"), "{r}");
}
