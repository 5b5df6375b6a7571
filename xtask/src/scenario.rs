//! `cargo xtask scenario NAME`: one scenario, through the judged proxy and
//! any peers compared.

use crate::flags;
use crate::gate;
use crate::run::{self, Paths};
use std::process::ExitCode;

pub fn run(paths: &Paths, flags: &flags::Scenario) -> Result<ExitCode, String> {
    let all = paths.scenarios()?;
    let sc = all.iter().find(|s| s.name == flags.name).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        format!(
            "no scenario \"{}\" (have: {})",
            flags.name,
            names.join(", ")
        )
    })?;
    let run = run::run_all(
        paths,
        std::slice::from_ref(sc),
        &flags.with.kinds(),
        flags.with.quick,
        flags.with.duration,
    )?;
    run::report(&run, paths)?;
    Ok(gate::conclude(gate::misses(&run)))
}
