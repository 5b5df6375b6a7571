//! The regression gate, as `figures.rs` describes it: missed targets on
//! counts and peer ratios, regressions against the committed baseline
//! (`scenarios/baseline.json`), and peers that must run under `CI=true`.

use crate::figures::{self, Better};
use crate::peers::Kind;
use crate::report::Run;
use crate::spec::fmt_num;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// Whether this is a CI run (`CI=true`, as CI services set it): there a
/// compared peer that is missing fails the run instead of being skipped.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The subjects that can run here, and those skipped with the reason.
#[derive(Debug, PartialEq)]
pub struct Runnable {
    pub run: Vec<Kind>,
    pub skipped: Vec<(Kind, String)>,
}

/// Splits `kinds` into those that can run here and those skipped, with
/// the reason; under CI a missing peer is an error instead.
pub fn runnable(
    kinds: &[Kind],
    ci: bool,
    missing: impl Fn(Kind) -> Option<String>,
) -> Result<Runnable, String> {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for &k in kinds {
        match missing(k) {
            None => run.push(k),
            Some(why) if ci => {
                return Err(format!(
                    "{why}; under CI=true a compared peer must run (unset CI to skip it)"
                ))
            }
            Some(why) => skipped.push((k, why)),
        }
    }
    Ok(Runnable { run, skipped })
}

/// Failed scenarios and missed gated targets of the subject each judges
/// (the primary, or a ratio target's own), one line each. Goals
/// (wall-clock targets, `gate = false`) never fail.
pub fn misses(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for s in &run.scenarios {
        if let Some(e) = &s.error {
            out.push(format!("{}: failed: {e}", s.name));
        }
        for f in s
            .figures
            .iter()
            .filter(|f| f.gates() && f.pass == Some(false))
        {
            let v = f.values.get(f.judged(run)).copied().unwrap_or(f64::NAN);
            let t = f.target.map(|b| b.describe()).unwrap_or_default();
            let of = f
                .judged
                .as_ref()
                .map_or_else(String::new, |j| format!(" of {j}"));
            out.push(format!(
                "{}.{}{of} = {} (target {t})",
                s.name,
                f.name,
                fmt_num(v)
            ));
        }
    }
    out
}

/// Prints each failure as a `GATE:` line; exit 1 if there is any.
pub fn conclude(failures: Vec<String>) -> ExitCode {
    if failures.is_empty() {
        println!("all gated figures within target");
        return ExitCode::SUCCESS;
    }
    for f in &failures {
        println!("GATE: {f}");
    }
    ExitCode::from(1)
}

/// The committed baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// `scenario.figure` → expected value.
    pub figures: BTreeMap<String, Entry>,
}

/// One baselined figure: where it stood, and how far it may move the
/// wrong way (`value × tolerance + slack`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub value: f64,
    /// Relative tolerance (0.1 = 10 %).
    pub tolerance: f64,
    /// Absolute slack added to the tolerance (for values near zero).
    #[serde(default)]
    pub slack: f64,
    /// Whether bigger is better (rates, peer ratios of them) or worse
    /// (counts, bytes, latency ratios).
    pub higher_is_better: bool,
}

impl Entry {
    /// A new entry for figure `name` at `value`, with the table's room.
    pub fn new(name: &str, value: f64) -> Option<Entry> {
        let spec = figures::spec(name)?;
        spec.class.can_gate().then_some(Entry {
            value,
            tolerance: spec.room.tolerance,
            slack: spec.room.slack,
            higher_is_better: spec.better == Better::Higher,
        })
    }

    /// The worst value that still holds.
    pub fn limit(&self) -> f64 {
        let margin = self.value.abs() * self.tolerance + self.slack;
        if self.higher_is_better {
            self.value - margin
        } else {
            self.value + margin
        }
    }

    /// Whether `v` is within room of the baseline.
    pub fn holds(&self, v: f64) -> bool {
        if self.higher_is_better {
            v >= self.limit()
        } else {
            v <= self.limit()
        }
    }
}

impl Baseline {
    pub fn read(path: &Path) -> Result<Baseline, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A baseline from this run's baselined figures of the primary subject.
    pub fn from_run(run: &Run) -> Baseline {
        let mut figures = BTreeMap::new();
        for s in &run.scenarios {
            for f in s.figures.iter().filter(|f| f.baselined()) {
                let entry = f
                    .values
                    .get(&run.primary)
                    .and_then(|v| Entry::new(&f.name, *v));
                if let Some(e) = entry {
                    figures.insert(format!("{}.{}", s.name, f.name), e);
                }
            }
        }
        Baseline { figures }
    }

    /// Regressions of `run` against this baseline, one line each. A
    /// baselined figure the run did not measure fails too, unless the
    /// run skipped the peer it needs (outside CI) or skipped the scenario.
    pub fn regressions(&self, run: &Run) -> Vec<String> {
        let mut out = Vec::new();
        for (key, e) in &self.figures {
            let Some((scenario, figure)) = key.split_once('.') else {
                out.push(format!("{key}: not a scenario.figure key"));
                continue;
            };
            let Some(s) = run.scenarios.iter().find(|s| s.name == scenario) else {
                continue;
            };
            let found = s.figures.iter().find(|f| f.name == figure);
            // A figure the table or the scenario no longer baselines (a
            // wall-clock one, or `baseline = false`) is not checked.
            if found.is_some_and(|f| !f.baselined()) {
                continue;
            }
            match found.and_then(|f| f.values.get(&run.primary)) {
                Some(v) if !e.holds(*v) => out.push(format!(
                    "{key} = {} regressed past baseline {} (limit {}: tolerance {}%{})",
                    fmt_num(*v),
                    fmt_num(e.value),
                    fmt_num(e.limit()),
                    e.tolerance * 100.0,
                    if e.slack > 0.0 {
                        format!(" + {}", fmt_num(e.slack))
                    } else {
                        String::new()
                    }
                )),
                Some(_) => {}
                None if s.error.is_some() => {}
                None => {
                    let peer_skipped = figures::split_vs_peer(figure)
                        .is_some_and(|(_, k)| s.skipped.iter().any(|sk| sk.subject == k.name()));
                    if !peer_skipped {
                        out.push(format!("{key}: in the baseline but not measured"));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
