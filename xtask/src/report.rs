//! Run results and their renderings: the terminal table, `report.json`
//! and `report.md` (`report.html` is in `html.rs`).

use crate::figures::Class;
use crate::spec::{fmt_num, Bound};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One whole invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub quick: bool,
    /// The proxy the targets are judged on (`self` unless `--proxy`).
    pub primary: String,
    /// Everything measured, primary first.
    pub subjects: Vec<String>,
    pub scenarios: Vec<ScenarioReport>,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    pub figures: Vec<Figure>,
    pub curves: Vec<Curve>,
    /// Subjects that could not run here, with the reason.
    pub skipped: Vec<Skipped>,
    pub error: Option<String>,
    /// Exact commands, so a person can rerun the load by hand.
    pub commands: Vec<String>,
}

/// A subject that did not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub subject: String,
    pub why: String,
}

/// One figure, for every subject that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// How it may judge a run (see `figures.rs`).
    pub class: Class,
    pub values: BTreeMap<String, f64>,
    /// Subject → every round's value, for the figures measured in rounds
    /// (`values` holds their median); absent for the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub rounds: BTreeMap<String, Vec<f64>>,
    pub target: Option<Bound>,
    /// Target met by the primary subject (None: no target or no value).
    pub pass: Option<bool>,
}

/// A latency percentile curve: (percentile, microseconds).
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

impl Figure {
    /// Whether missing its target fails the run: a target on a count or a
    /// peer ratio that is not a goal (`gate = false`).
    pub fn gates(&self) -> bool {
        self.target.is_some_and(|b| b.gates(self.class))
    }

    /// Whether `cargo xtask ci` holds it to the baseline: counts and peer
    /// ratios, unless the scenario says `baseline = false`.
    pub fn baselined(&self) -> bool {
        self.class.can_gate() && self.target.is_none_or(|b| b.baseline != Some(false))
    }
}

pub(crate) fn verdict(f: &Figure) -> &'static str {
    match (f.pass, f.gates()) {
        (Some(true), _) => "pass",
        (Some(false), true) => "MISS",
        (Some(false), false) => "miss (goal)",
        (None, _) => "",
    }
}

pub(crate) fn cell(f: &Figure, subject: &str) -> String {
    f.values
        .get(subject)
        .map_or_else(|| "-".into(), |v| fmt_num(*v))
}

/// The table printed on the terminal.
pub fn terminal(run: &Run) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["scenario".to_string(), "figure".into(), "unit".into()];
    header.extend(run.subjects.iter().cloned());
    header.extend(["target".into(), "verdict".into()]);
    rows.push(header);
    for s in &run.scenarios {
        if let Some(e) = &s.error {
            let mut r = vec![s.name.clone(), "ERROR".into(), String::new()];
            r.extend(run.subjects.iter().map(|_| String::new()));
            r.extend([String::new(), e.chars().take(100).collect()]);
            rows.push(r);
        }
        for f in &s.figures {
            let mut r = vec![s.name.clone(), f.name.clone(), f.unit.clone()];
            r.extend(run.subjects.iter().map(|sub| cell(f, sub)));
            r.push(f.target.map(|b| b.describe()).unwrap_or_default());
            r.push(verdict(f).into());
            rows.push(r);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if n == 0 {
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    for s in &run.scenarios {
        for sk in &s.skipped {
            let _ = writeln!(out, "{}: skipped {}: {}", s.name, sk.subject, sk.why);
        }
    }
    out
}

/// What every report says about its verdicts.
pub const GATE_NOTE: &str = "Gated figures are exact counts and ratios to a peer measured in the \
same run; wall-clock figures are reported, and their targets are goals.";

/// `report.md`.
pub fn markdown(run: &Run) -> String {
    let mut out = format!("# Workbench run {}\n\n", run.id);
    let _ = writeln!(
        out,
        "Targets judged on `{}`{}. {GATE_NOTE}\n",
        run.primary,
        if run.quick { " (quick run)" } else { "" }
    );
    for s in &run.scenarios {
        let _ = writeln!(out, "## {}\n\n{}\n", s.name, s.description);
        if let Some(e) = &s.error {
            let _ = writeln!(out, "**Failed:** {e}\n");
        }
        for sk in &s.skipped {
            let _ = writeln!(out, "Skipped {}: {}\n", sk.subject, sk.why);
        }
        if s.figures.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "| figure | unit | {} | target | verdict |",
            run.subjects.join(" | ")
        );
        let _ = writeln!(
            out,
            "|---|---|{}---|---|",
            "---|".repeat(run.subjects.len())
        );
        for f in &s.figures {
            let vals: Vec<String> = run.subjects.iter().map(|sub| cell(f, sub)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.name,
                f.unit,
                vals.join(" | "),
                f.target.map(|b| b.describe()).unwrap_or_default(),
                verdict(f)
            );
        }
        for c in &s.commands {
            let _ = writeln!(out, "\n    {c}");
        }
        out.push('\n');
    }
    out
}

/// Writes the three reports under `dir` and points `latest.json` at them.
pub fn write_all(run: &Run, workbench: &Path) -> Result<PathBuf, String> {
    let dir = workbench.join(&run.id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    put("report.json", &json)?;
    put("report.md", &markdown(run))?;
    put("report.html", &crate::html::html(run))?;
    let latest = workbench.join("latest.json");
    std::fs::write(&latest, &json).map_err(|e| format!("{}: {e}", latest.display()))?;
    Ok(dir)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A figure of `class` with one value per `(subject, value)`.
    pub(crate) fn figure(
        name: &str,
        class: Class,
        values: &[(&str, f64)],
        target: Option<Bound>,
    ) -> Figure {
        let values: BTreeMap<String, f64> =
            values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let pass = target.and_then(|b| values.get("self").map(|v| b.check(*v)));
        Figure {
            name: name.into(),
            unit: crate::figures::spec(name).map_or("count".into(), |s| s.unit),
            class,
            values,
            rounds: BTreeMap::new(),
            target,
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
            && l.contains("120000")
            && l.contains("90000")
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
            md.contains("| rate | msg/s | 120000 | 90000 | >= 10000 | pass |"),
            "{md}"
        );
    }
}
