//! `cargo xtask ci`: the regression gate. Every scenario but the
//! `bench_only` ones, quick, through
//! our proxy with HAProxy compared in the same run (the peer ratios gate;
//! under `CI=true` a missing HAProxy fails the run), and each also
//! through the subjects its `[ratio_targets]` name (ours on the io_uring
//! engine in throughput and connection-churn, for the engine's floor),
//! then the gated targets and the baseline (`scenarios/baseline.json`);
//! or, with `--write-baseline`, this run's counts and peer ratios as the
//! new one.

use crate::flags;
use crate::gate::{self, Baseline};
use crate::peers::Kind;
use crate::run::{self, Paths};
use std::process::ExitCode;

/// The subjects of the gate: ours, judged, and the peer of its ratios.
pub const SUBJECTS: [Kind; 2] = [Kind::SelfProxy, Kind::Haproxy];

pub fn run(paths: &Paths, flags: &flags::Ci) -> Result<ExitCode, String> {
    let mut all = paths.scenarios()?;
    all.retain(|s| !s.bench_only);
    let run = run::run_all(paths, &all, &SUBJECTS, true, None)?;
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
