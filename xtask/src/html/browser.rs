//! The HTML report in a real browser: a synthetic run's `report.html`
//! rendered by headless Chromium, and its DOM after rendering checked for
//! every summary row and every plot's curves. Without `chromium` the test
//! says so in one line and passes, except under `CI=true`.

use super::html;
use crate::figures::Class;
use crate::report::tests::{bound, figure};
use crate::report::{Curve, Run, ScenarioReport};
use crate::summary::HEADLINES;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long Chromium may take to render one file before it is killed.
const RENDER_LIMIT: Duration = Duration::from_secs(90);

fn curve(label: &str, scale: f64) -> Curve {
    Curve {
        label: label.into(),
        points: [
            (50.0, 20.0),
            (90.0, 35.0),
            (99.0, 80.0),
            (99.9, 400.0),
            (99.99, 2500.0),
        ]
        .iter()
        .map(|(p, us)| (*p, us * scale))
        .collect(),
    }
}

fn scenario(name: &str, figures: Vec<crate::report::Figure>, curves: Vec<Curve>) -> ScenarioReport {
    ScenarioReport {
        name: name.into(),
        description: format!("{name} <synthetic>"),
        figures,
        curves,
        skipped: Vec::new(),
        error: None,
        commands: vec![format!("loadgen --scenario {name}")],
    }
}

/// A run with two plots of three subjects, a failed scenario and a
/// missing one: every kind of summary row.
fn synthetic() -> Run {
    let mut run = crate::report::tests::sample();
    run.subjects = ["self", "haproxy", "direct"].map(String::from).to_vec();
    let three = || {
        vec![
            curve("self", 1.1),
            curve("haproxy", 1.4),
            curve("direct", 1.0),
        ]
    };
    let mut bulk = scenario("bulk", Vec::new(), Vec::new());
    bulk.error = Some("backend exited".into());
    run.scenarios = vec![
        scenario(
            "throughput",
            vec![
                figure(
                    "rate",
                    Class::Wall,
                    &[("self", 1.2e5), ("haproxy", 1e5), ("direct", 2e5)],
                    None,
                ),
                figure(
                    "cpu_us_per_message",
                    Class::Wall,
                    &[("self", 3.0), ("haproxy", 4.5)],
                    None,
                ),
            ],
            three(),
        ),
        scenario(
            "latency",
            vec![
                figure(
                    "rate",
                    Class::Wall,
                    &[("self", 2e4), ("haproxy", 2.1e4)],
                    None,
                ),
                figure(
                    "added_p50_us",
                    Class::Wall,
                    &[("self", 12.0), ("haproxy", 14.0)],
                    Some(bound(None, Some(10.0))),
                ),
            ],
            three(),
        ),
        bulk,
    ];
    run
}

/// Renders `file` with headless Chromium and returns the DOM it dumps.
fn render(chromium: &Path, file: &Path, dir: &Path) -> String {
    let out = dir.join("dom.html");
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", file.display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("dom file"))
            .stderr(Stdio::null()),
        0,
    )
    .spawn()
    .expect("start chromium");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if started.elapsed() > RENDER_LIMIT {
            // The wrapper script and the browser's own processes: the group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "chromium did not render {} within {RENDER_LIMIT:?}",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
    std::fs::read_to_string(&out).expect("dom")
}

/// Every `<tag …>` opening tag of `dom` whose text contains `with`.
fn tags<'a>(dom: &'a str, tag: &str, with: &str) -> Vec<&'a str> {
    dom.split(&format!("<{tag} "))
        .skip(1)
        .filter_map(|rest| rest.split_once('>').map(|(attrs, _)| attrs))
        .filter(|attrs| attrs.contains(with))
        .collect()
}

/// The value of attribute `name` in a tag's attributes.
fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let start = attrs.find(&format!("{name}=\""))? + name.len() + 2;
    attrs[start..].split('"').next()
}

#[test]
fn the_report_renders_in_chromium_with_its_summary_and_curves() {
    let Some(chromium) = crate::procs::which("chromium") else {
        assert!(
            !crate::gate::under_ci(),
            "chromium is not installed and CI=true: the browser test must run (apt-get install chromium)"
        );
        println!("skipping the browser test: chromium is not installed (apt-get install chromium)");
        return;
    };
    let run = synthetic();
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("report.html");
    std::fs::write(&file, html(&run)).expect("write");
    let dom = render(&chromium, &file, dir.path());
    assert!(dom.contains("</html>"), "no document rendered: {dom}");
    for id in ["summary", "about", "throughput", "latency", "bulk"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no section {id}");
    }
    for h in HEADLINES {
        let id = format!("id=\"headline-{}-{}\"", h.scenario, h.figure);
        assert!(
            dom.contains(&id),
            "summary row {} ({}) missing",
            h.label,
            h.scenario
        );
        let ran = run.scenarios.iter().any(|s| s.name == h.scenario);
        assert_eq!(
            dom.contains(&format!("href=\"#{}\"", h.scenario)),
            ran,
            "{}: linked only to a section the report has",
            h.label
        );
    }
    assert_eq!(tags(&dom, "tr", "headline failed").len(), 1, "bulk failed");
    assert!(!tags(&dom, "tr", "headline not-run").is_empty());
    let plots: Vec<&str> = dom.split("<svg class=\"latency-plot\"").skip(1).collect();
    assert_eq!(plots.len(), 2, "one plot per scenario with curves");
    for plot in plots {
        let plot = plot.split("</svg>").next().unwrap_or("");
        let mut subjects: Vec<&str> = Vec::new();
        for line in tags(plot, "polyline", "class=\"curve\"") {
            let subject = attr(line, "data-subject").expect("a curve names its subject");
            let points = attr(line, "points").unwrap_or("");
            assert!(
                points.split_whitespace().count() >= 2,
                "{subject}: {points:?}"
            );
            subjects.push(subject);
        }
        subjects.sort_unstable();
        assert_eq!(
            subjects,
            ["direct", "haproxy", "self"],
            "one curve per subject"
        );
        assert!(plot.contains("latency (log scale)") && plot.contains(">percentile<"));
        assert!(
            plot.contains(">1 ms<") || plot.contains(">100 µs<"),
            "decade ticks"
        );
    }
}
