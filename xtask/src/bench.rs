//! `cargo xtask bench`: every scenario, through the judged proxy and any
//! peers compared: the project's main job.

use crate::flags::With;
use crate::gate;
use crate::run::{self, Paths};
use std::process::ExitCode;

pub fn run(paths: &Paths, with: &With) -> Result<ExitCode, String> {
    let all = paths.scenarios()?;
    let run = run::run_all(paths, &all, &with.kinds(), with.quick, with.duration)?;
    run::report(&run, paths)?;
    Ok(gate::conclude(gate::misses(&run)))
}
