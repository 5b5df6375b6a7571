//! `cargo xtask compare RUN_A RUN_B`: each figure's change from one run
//! to another, with its direction and whether it is beyond the
//! run-to-run spread — what a developer pastes into a pull request.
//!
//! Figures are matched by (scenario, figure, subject). The spread rule
//! ([`SPREAD_RULE`]): a figure with rounds in both runs (every
//! interleaved window's value, `rounds` in `report.json`) is beyond the
//! spread when the interquartile ranges of the two runs' rounds do not
//! overlap (with fewer than [`IQR_ROUNDS`] rounds, their whole ranges:
//! the middle half of two or three values is narrower than the noise they
//! show); with fewer than two rounds in either run, no spread was
//! measured and the change is only reported. Comparing is informational:
//! it exits 0 whatever changed.

mod runs;
#[cfg(test)]
mod tests;

use crate::figures::{self, Better};
use crate::flags;
use crate::run::Paths;
use crate::units;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The spread rule, as the output's footer states it.
pub const SPREAD_RULE: &str = "A change is beyond the spread when the interquartile ranges \
(25th to 75th percentile) of the two runs' rounds (each interleaved window's value) do not \
overlap, or with fewer than four rounds in a run, when their whole ranges (lowest to highest) \
do not; \"no spread measured\" when either run has fewer than two rounds for the figure \
(one round has no spread). Direction follows the figure's better side; \"—\" where it has \
none.";

/// Rounds a run needs for a figure before its spread counts: one round's
/// interquartile range is a point, and any other value would lie beyond it.
pub const MIN_SPREAD_ROUNDS: usize = 2;

/// Rounds from which a run's spread is its interquartile range; below,
/// it is the whole range of its rounds.
pub const IQR_ROUNDS: usize = 4;

/// Compares the two runs, prints the table and writes it as Markdown and
/// JSON.
pub fn run(paths: &Paths, flags: &flags::Compare) -> Result<ExitCode, String> {
    let a = runs::resolve(&flags.run_a, &paths.workbench)?;
    let b = runs::resolve(&flags.run_b, &paths.workbench)?;
    let c = compare(&a.json, &b.json);
    if c.rows.is_empty() {
        return Err(format!(
            "runs {} and {} have no figures in common ({} only in {}, {} only in {})",
            a.id,
            b.id,
            c.only_a.len(),
            a.id,
            c.only_b.len(),
            b.id
        ));
    }
    let md = markdown(&c, &a.id, &b.id);
    print!("{md}");
    let dir = out_dir(&b, &paths.workbench);
    let stem = format!("compare-{}-vs-{}", file_safe(&a.id), file_safe(&b.id));
    let put = |ext: &str, text: &str| {
        let p = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    put("md", &md)?;
    let j = serde_json::to_string_pretty(&to_json(&c, &a, &b)).map_err(|e| e.to_string())?;
    put("json", &j)?;
    println!("\nwritten: {}/{stem}.{{md,json}}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Where the comparison is written: the workbench for runs named by id,
/// else beside RUN_B's report.
fn out_dir(b: &runs::Report, workbench: &Path) -> PathBuf {
    match b.path.parent() {
        Some(p) if !b.by_id => p.to_path_buf(),
        _ => workbench.to_path_buf(),
    }
}

fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which way a figure moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Better,
    Worse,
    Same,
    /// The figure has no better side (unknown to `figures.rs`).
    Unknown,
}

impl Direction {
    fn text(self) -> &'static str {
        match self {
            Direction::Better => "better",
            Direction::Worse => "worse",
            Direction::Same => "same",
            Direction::Unknown => "—",
        }
    }
}

/// How a change stands against the runs' own spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// The runs' interquartile ranges do not overlap.
    Beyond,
    Within,
    /// Fewer than [`MIN_SPREAD_ROUNDS`] rounds in either run.
    NotMeasured,
}

impl Spread {
    fn text(self) -> &'static str {
        match self {
            Spread::Beyond => "beyond spread",
            Spread::Within => "within spread",
            Spread::NotMeasured => "no spread measured",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Spread::Beyond => "beyond",
            Spread::Within => "within",
            Spread::NotMeasured => "not_measured",
        }
    }
}

/// The 25th and 75th percentiles of a run's rounds.
pub type Quartiles = (f64, f64);

/// One figure of one subject in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub subject: String,
    pub unit: String,
    pub a: f64,
    pub b: f64,
    /// (B − A) / |A| in percent; `None` when A is 0.
    pub change: Option<f64>,
    pub direction: Direction,
    pub spread: Spread,
    /// Each run's interquartile range of rounds, when it has rounds.
    pub iqr: (Option<Quartiles>, Option<Quartiles>),
}

/// Two runs side by side.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Beyond the spread first, then in RUN_A's order.
    pub rows: Vec<Row>,
    /// `scenario/figure/subject` of the figures only one run has.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

/// One figure of a report, as read from its JSON.
struct Got {
    unit: String,
    value: f64,
    rounds: Vec<f64>,
}

/// (scenario, figure, subject) → the figure, in the report's order.
fn figures_in(report: &Value) -> Vec<((String, String, String), Got)> {
    let mut out = Vec::new();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for sc in list(&report["scenarios"]) {
        let name = sc["name"].as_str().unwrap_or_default().to_string();
        for f in list(&sc["figures"]) {
            let figure = f["name"].as_str().unwrap_or_default().to_string();
            let Some(values) = f["values"].as_object() else {
                continue;
            };
            for (subject, v) in values {
                let Some(value) = v.as_f64() else { continue };
                let rounds = list(&f["rounds"][subject])
                    .iter()
                    .filter_map(Value::as_f64)
                    .collect();
                let unit = f["unit"].as_str().unwrap_or_default().to_string();
                let key = (name.clone(), figure.clone(), subject.clone());
                out.push((
                    key,
                    Got {
                        unit,
                        value,
                        rounds,
                    },
                ));
            }
        }
    }
    out
}

/// Compares report `a` with report `b` (both `report.json` values).
pub fn compare(a: &Value, b: &Value) -> Comparison {
    let a = figures_in(a);
    let mut b: BTreeMap<_, _> = figures_in(b).into_iter().collect();
    let name = |(s, f, w): &(String, String, String)| format!("{s}/{f}/{w}");
    let mut c = Comparison::default();
    for (key, ga) in a {
        let Some(gb) = b.remove(&key) else {
            c.only_a.push(name(&key));
            continue;
        };
        c.rows.push(row(key, &ga, &gb));
    }
    c.only_b = b.keys().map(name).collect();
    // Stable: within each group, RUN_A's order stays.
    c.rows.sort_by_key(|r| r.spread != Spread::Beyond);
    c
}

fn row((scenario, figure, subject): (String, String, String), a: &Got, b: &Got) -> Row {
    let change = (a.value != 0.0).then(|| (b.value - a.value) / a.value.abs() * 100.0);
    let direction = match figures::spec(&figure).map(|s| s.better) {
        None => Direction::Unknown,
        _ if b.value == a.value => Direction::Same,
        Some(Better::Higher) if b.value > a.value => Direction::Better,
        Some(Better::Lower) if b.value < a.value => Direction::Better,
        Some(_) => Direction::Worse,
    };
    let iqr = (iqr(&a.rounds), iqr(&b.rounds));
    let enough = a.rounds.len().min(b.rounds.len()) >= MIN_SPREAD_ROUNDS;
    let spread = match iqr {
        _ if !enough => Spread::NotMeasured,
        (Some((a1, a3)), Some((b1, b3))) if a3 < b1 || b3 < a1 => Spread::Beyond,
        (Some(_), Some(_)) => Spread::Within,
        _ => Spread::NotMeasured,
    };
    Row {
        unit: if b.unit.is_empty() { &a.unit } else { &b.unit }.clone(),
        scenario,
        figure,
        subject,
        a: a.value,
        b: b.value,
        change,
        direction,
        spread,
        iqr,
    }
}

/// The 25th and 75th percentiles of `rounds` (linear between the
/// closest ranks), or with fewer than [`IQR_ROUNDS`] rounds the lowest
/// and the highest; `None` without rounds.
pub fn iqr(rounds: &[f64]) -> Option<Quartiles> {
    let mut v: Vec<f64> = rounds.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    if v.len() < IQR_ROUNDS {
        return Some((v[0], v[v.len() - 1]));
    }
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some((at(0.25), at(0.75)))
}

fn change_text(r: &Row) -> String {
    match r.change {
        Some(p) => format!("{p:+.1} %"),
        None if r.b == r.a => "0.0 %".into(),
        None => "n/a (A = 0)".into(),
    }
}

/// The comparison as Markdown: a summary line, the table (changes beyond
/// the spread first), the figures only one run has, and the rule.
pub fn markdown(c: &Comparison, a: &str, b: &str) -> String {
    let mut out = format!("# Workbench compare: {a} → {b}\n\n");
    let beyond: Vec<&Row> = c
        .rows
        .iter()
        .filter(|r| r.spread == Spread::Beyond)
        .collect();
    let count = |d: Direction| beyond.iter().filter(|r| r.direction == d).count();
    let _ = writeln!(
        out,
        "{} of {} figures changed beyond the run-to-run spread ({} better, {} worse); {} had no spread measured.\n",
        beyond.len(),
        c.rows.len(),
        count(Direction::Better),
        count(Direction::Worse),
        c.rows
            .iter()
            .filter(|r| r.spread == Spread::NotMeasured)
            .count()
    );
    out.push_str("| scenario | figure | subject | A | B | change | direction | spread |\n");
    out.push_str("|---|---|---|---:|---:|---:|---|---|\n");
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.figure,
            r.subject,
            units::human(r.a, &r.unit),
            units::human(r.b, &r.unit),
            change_text(r),
            r.direction.text(),
            r.spread.text()
        );
    }
    for (which, list) in [(a, &c.only_a), (b, &c.only_b)] {
        if !list.is_empty() {
            let _ = writeln!(out, "\nOnly in {which}: {}.", list.join(", "));
        }
    }
    let _ = writeln!(out, "\nA = {a}, B = {b}. {SPREAD_RULE}");
    out
}

/// The comparison as JSON, with the raw values.
fn to_json(c: &Comparison, a: &runs::Report, b: &runs::Report) -> Value {
    let range = |r: Option<Quartiles>| r.map(|(q1, q3)| json!([q1, q3]));
    let rows: Vec<Value> = c
        .rows
        .iter()
        .map(|r| {
            json!({
                "scenario": r.scenario,
                "figure": r.figure,
                "subject": r.subject,
                "unit": r.unit,
                "a": r.a,
                "b": r.b,
                "change_percent": r.change,
                "direction": r.direction.text(),
                "spread": r.spread.key(),
                "a_iqr": range(r.iqr.0),
                "b_iqr": range(r.iqr.1),
            })
        })
        .collect();
    json!({
        "a": { "id": a.id, "report": a.path.display().to_string() },
        "b": { "id": b.id, "report": b.path.display().to_string() },
        "spread_rule": SPREAD_RULE,
        "rows": rows,
        "only_in_a": c.only_a,
        "only_in_b": c.only_b,
    })
}
