//! The comparison of two synthetic reports, and the run ids resolved on
//! a workbench directory of the test's own.

use super::*;

/// A subject's value and rounds: `(subject, value, rounds)`.
type Measure<'a> = (&'a str, f64, &'a [f64]);

/// A report of one scenario `throughput` whose figures are
/// `(name, unit, measures)`.
fn report(id: &str, figures: &[(&str, &str, &[Measure])]) -> Value {
    let figures: Vec<Value> = figures
        .iter()
        .map(|(name, unit, subjects)| {
            let values: serde_json::Map<String, Value> = subjects
                .iter()
                .map(|(s, v, _)| (s.to_string(), json!(v)))
                .collect();
            let rounds: serde_json::Map<String, Value> = subjects
                .iter()
                .filter(|(_, _, r)| !r.is_empty())
                .map(|(s, _, r)| (s.to_string(), json!(r)))
                .collect();
            json!({"name": name, "unit": unit, "class": "wall", "values": values,
                   "rounds": rounds, "target": null, "pass": null})
        })
        .collect();
    json!({"id": id, "quick": true, "primary": "self", "subjects": ["self", "direct"],
           "scenarios": [{"name": "throughput", "description": "d", "figures": figures,
                          "curves": [], "skipped": [], "error": null, "commands": []}]})
}

fn find<'a>(c: &'a Comparison, figure: &str, subject: &str) -> &'a Row {
    c.rows
        .iter()
        .find(|r| r.figure == figure && r.subject == subject)
        .unwrap_or_else(|| panic!("no {figure}/{subject} in {c:?}"))
}

#[test]
fn interquartile_ranges_come_from_the_rounds() {
    assert_eq!(iqr(&[]), None);
    assert_eq!(iqr(&[5.0]), Some((5.0, 5.0)));
    assert_eq!(iqr(&[4.0, 1.0, 3.0, 2.0, 5.0]), Some((2.0, 4.0)));
    assert_eq!(iqr(&[1.0, 2.0, 3.0, 4.0]), Some((1.75, 3.25)));
    // Two or three rounds: their whole range, as their middle half would
    // claim more than they show.
    assert_eq!(iqr(&[200.0, 100.0]), Some((100.0, 200.0)));
    assert_eq!(iqr(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
}

#[test]
fn a_change_is_beyond_the_spread_only_when_the_ranges_do_not_overlap() {
    let a = report(
        "A",
        &[
            ("rate", "msg/s", &[("self", 100.0, &[98.0, 100.0, 102.0])]),
            ("p50_us", "µs", &[("self", 50.0, &[48.0, 50.0, 52.0])]),
        ],
    );
    let b = report(
        "B",
        &[
            // Up 10 %, ranges apart: better, beyond.
            ("rate", "msg/s", &[("self", 110.0, &[108.0, 110.0, 112.0])]),
            // Up 2 %, ranges overlapping: worse (lower is better), within.
            ("p50_us", "µs", &[("self", 51.0, &[49.0, 51.0, 53.0])]),
        ],
    );
    let c = compare(&a, &b);
    let rate = find(&c, "rate", "self");
    assert_eq!(
        (rate.direction, rate.spread),
        (Direction::Better, Spread::Beyond)
    );
    assert!((rate.change.expect("change") - 10.0).abs() < 1e-9);
    let p50 = find(&c, "p50_us", "self");
    assert_eq!(
        (p50.direction, p50.spread),
        (Direction::Worse, Spread::Within)
    );
    let md = markdown(&c, "A", "B");
    assert!(
        md.contains("| throughput | rate | self | 100 msg/s | 110 msg/s | +10.0 % | better | beyond spread |"),
        "{md}"
    );
    assert!(md.contains("1 of 2 figures changed beyond"), "{md}");
    assert!(
        md.contains("interquartile ranges"),
        "the rule is stated: {md}"
    );
}

#[test]
fn changes_beyond_the_spread_lead_and_a_lower_latency_is_better() {
    let a = report(
        "A",
        &[
            ("rate", "msg/s", &[("self", 100.0, &[99.0, 101.0])]),
            ("p99_us", "µs", &[("self", 900.0, &[880.0, 920.0])]),
        ],
    );
    let b = report(
        "B",
        &[
            ("rate", "msg/s", &[("self", 100.5, &[99.0, 102.0])]),
            ("p99_us", "µs", &[("self", 600.0, &[590.0, 610.0])]),
        ],
    );
    let c = compare(&a, &b);
    assert_eq!(c.rows[0].figure, "p99_us", "beyond the spread first");
    assert_eq!(
        (c.rows[0].direction, c.rows[0].spread),
        (Direction::Better, Spread::Beyond)
    );
    assert_eq!(c.rows[1].spread, Spread::Within);
}

#[test]
fn without_rounds_in_both_no_spread_is_measured_and_unknown_figures_have_no_direction() {
    let a = report(
        "A",
        &[
            ("rate", "msg/s", &[("self", 100.0, &[99.0, 101.0])]),
            ("errors", "count", &[("self", 0.0, &[])]),
            ("made_up", "count", &[("self", 1.0, &[])]),
        ],
    );
    let b = report(
        "B",
        &[
            ("rate", "msg/s", &[("self", 200.0, &[])]),
            ("errors", "count", &[("self", 3.0, &[])]),
            ("made_up", "count", &[("self", 2.0, &[])]),
        ],
    );
    let c = compare(&a, &b);
    let rate = find(&c, "rate", "self");
    assert_eq!(rate.spread, Spread::NotMeasured, "rounds in one run only");
    let errors = find(&c, "errors", "self");
    assert_eq!(
        (errors.direction, errors.change, errors.spread),
        (Direction::Worse, None, Spread::NotMeasured)
    );
    assert_eq!(find(&c, "made_up", "self").direction, Direction::Unknown);
    let md = markdown(&c, "A", "B");
    assert!(
        md.contains("| n/a (A = 0) | worse | no spread measured |"),
        "{md}"
    );
    assert!(md.contains("| +100.0 % | — |"), "{md}");
}

#[test]
fn figures_in_one_run_only_are_listed_apart() {
    let a = report(
        "A",
        &[(
            "rate",
            "msg/s",
            &[("self", 1.0, &[]), ("haproxy", 1.0, &[])],
        )],
    );
    let b = report(
        "B",
        &[
            ("rate", "msg/s", &[("self", 1.0, &[])]),
            ("p50_us", "µs", &[("self", 40.0, &[])]),
        ],
    );
    let c = compare(&a, &b);
    assert_eq!(c.rows.len(), 1);
    assert_eq!(c.rows[0].direction, Direction::Same);
    assert_eq!(c.only_a, ["throughput/rate/haproxy"]);
    assert_eq!(c.only_b, ["throughput/p50_us/self"]);
    let md = markdown(&c, "A", "B");
    assert!(md.contains("Only in A: throughput/rate/haproxy."), "{md}");
    assert!(md.contains("Only in B: throughput/p50_us/self."), "{md}");
}

/// A workbench with runs `ids`, each a report with a rate of 100.
fn workbench(ids: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for id in ids {
        let d = dir.path().join(id);
        std::fs::create_dir_all(&d).expect("mkdir");
        let r = report(id, &[("rate", "msg/s", &[("self", 100.0, &[])])]);
        std::fs::write(d.join("report.json"), r.to_string()).expect("write");
    }
    dir
}

#[test]
fn runs_are_named_by_id_latest_or_path() {
    let wb = workbench(&["20260101-100000", "20260102-100000"]);
    let latest = runs::resolve("latest", wb.path()).expect("latest");
    assert_eq!(
        (latest.id.as_str(), latest.by_id),
        ("20260102-100000", true)
    );
    let by_id = runs::resolve("20260101-100000", wb.path()).expect("id");
    assert_eq!(by_id.id, "20260101-100000");
    let file = wb.path().join("20260101-100000/report.json");
    let by_path = runs::resolve(&file.display().to_string(), wb.path()).expect("path");
    assert_eq!(
        (by_path.id.as_str(), by_path.by_id),
        ("20260101-100000", false)
    );
}

#[test]
fn an_unknown_run_names_the_nearest_and_bad_json_is_one_line() {
    let wb = workbench(&["20260101-100000", "20260102-100000", "20250101-000000"]);
    let e = runs::resolve("20260102-1", wb.path()).expect_err("unknown");
    assert!(
        e.starts_with("unknown run \"20260102-1\"")
            && e.contains("nearest 20260102-100000, 20260101-100000, 20250101-000000"),
        "{e}"
    );
    let empty = tempfile::tempdir().expect("tmp");
    let e = runs::resolve("latest", empty.path()).expect_err("no runs");
    assert!(e.contains("no runs under"), "{e}");
    let bad = wb.path().join("bad.json");
    std::fs::write(&bad, "{ not json").expect("write");
    let e = runs::resolve(&bad.display().to_string(), wb.path()).expect_err("bad");
    assert!(
        e.contains("bad.json is not valid JSON") && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(&bad, "{\"id\": 1}").expect("write");
    let e = runs::resolve(&bad.display().to_string(), wb.path()).expect_err("no scenarios");
    assert!(e.contains("not a workbench report"), "{e}");
}

#[test]
fn one_round_measures_no_spread() {
    // A single round's interquartile range is a point: any change would
    // be "beyond" it, which says nothing about run-to-run noise.
    let a = report("A", &[("rate", "msg/s", &[("self", 100.0, &[100.0])])]);
    let b = report("B", &[("rate", "msg/s", &[("self", 101.0, &[101.0])])]);
    let c = compare(&a, &b);
    let rate = find(&c, "rate", "self");
    assert_eq!(
        (rate.direction, rate.spread),
        (Direction::Better, Spread::NotMeasured)
    );
    assert_eq!(rate.iqr, (Some((100.0, 100.0)), Some((101.0, 101.0))));
    let b = report(
        "B",
        &[("rate", "msg/s", &[("self", 101.0, &[101.0, 103.0])])],
    );
    assert_eq!(
        find(&compare(&a, &b), "rate", "self").spread,
        Spread::NotMeasured
    );
    assert!(SPREAD_RULE.contains("fewer than two rounds"));
}

#[test]
fn two_rounds_are_beyond_each_other_only_when_their_ranges_part() {
    // The middle half of [100, 200] is [125, 175]; that of [190, 290] is
    // [215, 265]: apart, though the rounds themselves overlap.
    let a = report(
        "A",
        &[("rate", "msg/s", &[("self", 150.0, &[100.0, 200.0])])],
    );
    let b = report(
        "B",
        &[("rate", "msg/s", &[("self", 240.0, &[190.0, 290.0])])],
    );
    assert_eq!(
        find(&compare(&a, &b), "rate", "self").spread,
        Spread::Within
    );
    let c = report(
        "C",
        &[("rate", "msg/s", &[("self", 250.0, &[210.0, 290.0])])],
    );
    assert_eq!(
        find(&compare(&a, &c), "rate", "self").spread,
        Spread::Beyond
    );
    assert!(SPREAD_RULE.contains("fewer than four rounds"));
}
