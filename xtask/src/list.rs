//! `cargo xtask list`: the scenarios with their one-line descriptions.

use crate::run::Paths;
use std::process::ExitCode;

pub fn run(paths: &Paths) -> Result<ExitCode, String> {
    let all = paths.scenarios()?;
    let w = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in &all {
        let only = if s.bench_only { " (bench only)" } else { "" };
        println!("{:<w$}  {}{only}", s.name, s.description);
    }
    Ok(ExitCode::SUCCESS)
}
