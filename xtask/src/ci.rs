//! `cargo xtask ci`: the regression gate. Every scenario, quick, through
//! our proxy, then the gated targets and the baseline
//! (`scenarios/baseline.json`); or, with `--write-baseline`, this run's
//! gated figures as the new one.

use crate::flags;
use crate::gate::{self, Baseline};
use crate::peers::Kind;
use crate::run::{self, Paths};
use std::process::ExitCode;

/// The subjects of the gate.
pub const SUBJECTS: [Kind; 1] = [Kind::SelfProxy];

pub fn run(paths: &Paths, flags: &flags::Ci) -> Result<ExitCode, String> {
    let all = paths.scenarios()?;
    let run = run::run_all(paths, &all, &SUBJECTS, true)?;
    run::report(&run, paths)?;
    let mut failures = gate::misses(&run);
    let path = paths.scenarios.join("baseline.json");
    if flags.write_baseline {
        let b = Baseline::from_run(&run);
        let text = serde_json::to_string_pretty(&b).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("baseline written to {}", path.display());
    } else {
        failures.extend(Baseline::read(&path)?.regressions(&run));
    }
    Ok(gate::conclude(failures))
}
