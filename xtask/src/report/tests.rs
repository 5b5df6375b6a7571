//! Tests of `report.rs`.

use super::*;

/// A figure of `class` with one value per `(subject, value)`.
pub(crate) fn figure(
    name: &str,
    class: Class,
    values: &[(&str, f64)],
    target: Option<Bound>,
) -> Figure {
    let values: BTreeMap<String, f64> = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let pass = target.and_then(|b| values.get("self").map(|v| b.check(*v)));
    Figure {
        name: name.into(),
        unit: crate::figures::spec(name).map_or("count".into(), |s| s.unit),
        class,
        values,
        rounds: BTreeMap::new(),
        target,
        judged: None,
        pass,
    }
}

pub(crate) fn bound(min: Option<f64>, max: Option<f64>) -> Bound {
    Bound {
        min,
        max,
        ..Bound::default()
    }
}

/// A run of one scenario with `figures`.
pub(crate) fn run_of(figures: Vec<Figure>, skipped: Vec<Skipped>) -> Run {
    Run {
        id: "test-run".into(),
        date: "2023-11-14T22:13:20Z".into(),
        machine: Machine {
            cores: 2,
            kernel: "6.1.0-test".into(),
            cpu: None,
            versions: [("haproxy".to_string(), "HAProxy version 2.6.12".to_string())].into(),
        },
        quick: true,
        primary: "self".into(),
        subjects: vec!["self".into(), "haproxy".into()],
        scenarios: vec![ScenarioReport {
            name: "throughput".into(),
            description: "100 connections <closed loop>".into(),
            figures,
            curves: vec![Curve {
                label: "self".into(),
                points: vec![(50.0, 100.0), (99.0, 300.0), (99.9, 900.0)],
            }],
            skipped,
            error: None,
            commands: vec!["loadgen --target x".into()],
        }],
    }
}

pub(crate) fn sample() -> Run {
    run_of(
        vec![
            figure(
                "rate",
                Class::Wall,
                &[("self", 120_000.0), ("haproxy", 90_000.0)],
                Some(bound(Some(10_000.0), None)),
            ),
            figure(
                "errors",
                Class::Count,
                &[("self", 3.0)],
                Some(bound(None, Some(0.0))),
            ),
            figure(
                "p50_us",
                Class::Wall,
                &[("self", 300.0)],
                Some(bound(None, Some(100.0))),
            ),
        ],
        vec![Skipped {
            subject: "nginx".into(),
            why: "not installed".into(),
        }],
    )
}

#[test]
fn terminal_table_has_peer_columns_and_verdicts() {
    let t = terminal(&sample());
    let header = t.lines().next().expect("header");
    assert!(
        header.contains("self") && header.contains("haproxy") && header.contains("verdict"),
        "{t}"
    );
    assert!(t.lines().any(|l| l.contains("rate")
        && l.contains("120k msg/s")
        && l.contains("90.0k msg/s")
        && l.contains("pass")));
    assert!(t
        .lines()
        .any(|l| l.contains("errors") && l.contains("MISS")));
    assert!(t
        .lines()
        .any(|l| l.contains("p50_us") && l.contains("miss (goal)")));
    assert!(
        t.contains("throughput: skipped nginx: not installed"),
        "{t}"
    );
    let summary = t.rsplit("SUMMARY").next().expect("the summary last");
    assert!(
        summary.contains("rate at 100 connections") && summary.contains("1.33×"),
        "{summary}"
    );
    assert!(
        summary.contains("latency did not run"),
        "the rows of scenarios not run say so: {summary}"
    );
    assert!(
        t.contains("date: 2023-11-14T22:13:20Z") && t.contains("haproxy: HAProxy version 2.6.12")
    );
}

#[test]
fn only_counts_and_peer_ratios_are_baselined() {
    let count = figure("errors", Class::Count, &[("self", 0.0)], None);
    let peer = figure("rate_vs_haproxy", Class::Peer, &[("self", 1.2)], None);
    let wall = figure("ratio_to_direct", Class::Wall, &[("self", 0.5)], None);
    assert!(count.baselined() && peer.baselined() && !wall.baselined());
    let mut out = figure("syscalls_per_message", Class::Count, &[("self", 9.0)], None);
    out.target = Some(Bound {
        max: Some(1000.0),
        gate: Some(false),
        baseline: Some(false),
        ..Bound::default()
    });
    assert!(!out.baselined() && !out.gates());
}

#[test]
fn markdown_tables_keep_their_columns_whatever_a_cell_holds() {
    let mut run = sample();
    run.scenarios[0].error = Some("proxy exited (signal: 9); stderr: a | b\nc".into());
    run.scenarios[0].name = "latency".into();
    let md = markdown(&run);
    // Cells are split at every `|` not escaped with a backslash.
    let columns = |l: &str| l.replace("\\|", "").matches('|').count();
    let mut tables = 0;
    for block in md.split("\n\n") {
        let rows: Vec<&str> = block.lines().filter(|l| l.starts_with('|')).collect();
        let Some(header) = rows.first() else { continue };
        tables += 1;
        for r in &rows {
            assert_eq!(columns(r), columns(header), "{r}\n{md}");
        }
    }
    assert_eq!(tables, 2, "{md}");
    assert!(md.contains("stderr: a \\| b c"), "{md}");
}

#[test]
fn summary_links_lead_only_to_sections_the_report_has() {
    let run = sample();
    let md = markdown(&run);
    let html = crate::html::html(&run);
    assert!(
        md.contains("| [rate at 100 connections](#throughput) |"),
        "{md}"
    );
    assert!(md.contains("| rate at 1 connection | - |"), "{md}");
    for anchor in md.split("](#").skip(1) {
        let id = anchor.split(')').next().unwrap_or_default();
        assert!(md.contains(&format!("\n## {id}\n")), "#{id} leads nowhere");
    }
    for anchor in html.split("href=\"#").skip(1) {
        let id = anchor.split('"').next().unwrap_or_default();
        assert!(
            html.contains(&format!("id=\"{id}\"")),
            "#{id} leads nowhere"
        );
    }
}

#[test]
fn reports_are_written_with_latest() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = write_all(&sample(), dir.path()).expect("write");
    for f in ["report.json", "report.md", "report.html"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let latest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("latest.json")).expect("latest"),
    )
    .expect("json");
    let rate = &latest["scenarios"][0]["figures"][0];
    assert_eq!(
        (rate["values"]["haproxy"].as_f64(), rate["class"].as_str()),
        (Some(90_000.0), Some("wall"))
    );
    let md = std::fs::read_to_string(out.join("report.md")).expect("md");
    assert!(
        md.contains("| rate | 120k msg/s | 90.0k msg/s | ≥ 10.0k msg/s | pass |"),
        "{md}"
    );
    assert!(
        md.contains("| [rate at 100 connections](#throughput) | 120k msg/s | 90.0k msg/s | - | 1.33× | ahead of haproxy; target pass | ≥ 10.0k msg/s |"),
        "{md}"
    );
    assert!(md.find("## Summary") < md.find("## throughput"));
    assert!(
        md.contains("- machine: 2 cores, kernel 6.1.0-test")
            && md.contains("    loadgen --target x")
    );
    assert_eq!(latest["date"].as_str(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(latest["machine"]["cores"].as_u64(), Some(2));
}
