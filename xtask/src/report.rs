//! Run results and their renderings: the terminal table, `report.json`
//! and `report.md` (`report.html` is in `html.rs`).

use crate::figures::Class;
use crate::machine::Machine;
use crate::spec::Bound;
use crate::{goals, summary, units};
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
    /// When it started: UTC, ISO 8601.
    pub date: String,
    /// Where it ran, and the versions of its subjects.
    pub machine: Machine,
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
    /// The subject the target judges when it is not the primary (a ratio
    /// target's `of`, `spec/ratio.rs`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub judged: Option<String>,
    /// Target met by the judged subject, the primary unless `judged`
    /// (None: no target or no value).
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
    /// ratios of the primary, unless the scenario says `baseline = false`.
    pub fn baselined(&self) -> bool {
        self.class.can_gate()
            && self.judged.is_none()
            && self.target.is_none_or(|b| b.baseline != Some(false))
    }

    /// The subject its target judges in `run`.
    pub fn judged<'a>(&'a self, run: &'a Run) -> &'a str {
        self.judged.as_deref().unwrap_or(&run.primary)
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
        .map_or_else(|| "-".into(), |v| units::human(*v, &f.unit))
}

/// A figure's target in its units, or nothing.
pub(crate) fn target_cell(f: &Figure) -> String {
    f.target
        .map(|b| units::target(&b, &f.unit))
        .unwrap_or_default()
}

/// `rows` as aligned columns, the first row a header underlined.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
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
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
    out
}

/// The facts at the bottom of every rendering: the date and the
/// machine, one line each, then each subject's version.
pub fn about(run: &Run) -> Vec<String> {
    let m = &run.machine;
    let mut lines = vec![
        format!("date: {}", run.date),
        format!(
            "machine: {} cores, kernel {}{}",
            m.cores,
            m.kernel,
            m.cpu.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
        ),
    ];
    lines.extend(m.versions.iter().map(|(k, v)| format!("{k}: {v}")));
    lines
}

/// The table printed on the terminal: every figure, then the command
/// lines and the machine, and last the summary, to be read at a glance.
pub fn terminal(run: &Run) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["scenario".to_string(), "figure".into()];
    header.extend(run.subjects.iter().cloned());
    header.extend(["target".into(), "verdict".into()]);
    rows.push(header);
    let scenarios = summary::in_story_order(run);
    for s in &scenarios {
        if let Some(e) = &s.error {
            let mut r = vec![s.name.clone(), "ERROR".into()];
            r.extend(run.subjects.iter().map(|_| String::new()));
            r.extend([String::new(), e.chars().take(100).collect()]);
            rows.push(r);
        }
        for f in &s.figures {
            let mut r = vec![s.name.clone(), f.name.clone()];
            r.extend(run.subjects.iter().map(|sub| cell(f, sub)));
            r.push(target_cell(f));
            r.push(verdict(f).into());
            rows.push(r);
        }
    }
    let mut out = table(&rows);
    for s in &scenarios {
        for sk in &s.skipped {
            let _ = writeln!(out, "{}: skipped {}: {}", s.name, sk.subject, sk.why);
        }
    }
    out.push_str("\ncommands:\n");
    for s in &scenarios {
        for c in &s.commands {
            let _ = writeln!(out, "  {}: {c}", s.name);
        }
    }
    out.push('\n');
    for l in about(run) {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(out, "\nSUMMARY (targets judged on {})", run.primary);
    let mut rows = vec![summary::header(run)];
    rows.extend(
        summary::rows(run)
            .iter()
            .map(|r| summary::cells(run, r, |v| v.to_uppercase())),
    );
    out.push_str(&table(&rows));
    if let Some(goals) = goals::rows(run) {
        out.push_str("\nURING ENGINE GOALS\n");
        let mut rows = vec![goals::header()];
        rows.extend(goals.iter().map(|r| goals::cells(r, |v| v.to_uppercase())));
        out.push_str(&table(&rows));
    }
    out
}

/// What every report says about its verdicts.
pub const GATE_NOTE: &str = "Gated figures are exact counts and ratios to a peer measured in the \
same run; wall-clock figures are reported, and their targets are goals.";

/// A markdown table row; a `|` or a line break inside a cell (an error
/// quoting a child's stderr tail, whose lines are joined with ` | `)
/// would end the cell or the row, so it is escaped or made a space.
fn md_row(cells: &[String]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .map(|c| c.replace('|', "\\|").replace(['\n', '\r'], " "))
        .collect();
    format!("| {} |\n", cells.join(" | "))
}

/// `report.md`.
pub fn markdown(run: &Run) -> String {
    let mut out = format!("# Workbench run {}\n\n", run.id);
    let _ = writeln!(
        out,
        "Targets judged on `{}`{}. {GATE_NOTE}\n",
        run.primary,
        if run.quick { " (quick run)" } else { "" }
    );
    let _ = writeln!(out, "## Summary\n\n{}\n", summary::NOTE);
    let header = summary::header(run);
    out.push_str(&md_row(&header));
    out.push_str(&md_row(&vec!["---".to_string(); header.len()]));
    for r in summary::rows(run) {
        let mut cells = summary::cells(run, &r, |v| format!("**{}**", v.to_uppercase()));
        if let Some(anchor) = r.anchor() {
            cells[0] = format!("[{}](#{anchor})", cells[0]);
        }
        out.push_str(&md_row(&cells));
    }
    out.push('\n');
    if let Some(goals) = goals::rows(run) {
        out.push_str("## uring engine goals\n\n");
        out.push_str(&md_row(&goals::header()));
        out.push_str(&md_row(&vec!["---".to_string(); goals::header().len()]));
        for r in &goals {
            out.push_str(&md_row(&goals::cells(r, |v| format!("**{v}**"))));
        }
        out.push('\n');
    }
    let scenarios = summary::in_story_order(run);
    for s in &scenarios {
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
        let mut header = vec!["figure".to_string()];
        header.extend(run.subjects.iter().cloned());
        header.extend(["target".into(), "verdict".into()]);
        out.push_str(&md_row(&header));
        out.push_str(&md_row(&vec!["---".to_string(); header.len()]));
        for f in &s.figures {
            let mut cells = vec![f.name.clone()];
            cells.extend(run.subjects.iter().map(|sub| cell(f, sub)));
            cells.push(target_cell(f));
            cells.push(match verdict(f) {
                v if f.pass == Some(false) => format!("**{v}**"),
                v => v.to_string(),
            });
            out.push_str(&md_row(&cells));
        }
        out.push('\n');
    }
    out.push_str("## About this run\n\nThe commands, to rerun the load by hand:\n\n");
    for s in &scenarios {
        for c in &s.commands {
            let _ = writeln!(out, "    # {}\n    {c}", s.name);
        }
    }
    out.push('\n');
    for l in about(run) {
        let _ = writeln!(out, "- {l}");
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
pub(crate) mod tests;
