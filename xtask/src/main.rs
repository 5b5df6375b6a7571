//! `cargo xtask`: the workbench. Runs the scenarios in `scenarios/`
//! against our proxy and its peers and reports each figure against its
//! target; `ci` is the regression gate. This file only dispatches: the
//! flags are in `flags.rs`, each task in its own file.

mod bench;
mod ci;
mod compare;
mod failover;
mod figures;
mod flags;
mod gate;
mod goals;
mod hold;
mod html;
mod list;
mod load;
mod machine;
mod merge;
mod netns;
mod peers;
mod procs;
mod progress;
mod report;
mod run;
mod scenario;
mod soak;
mod spec;
mod summary;
mod timewait;
mod tools;
mod units;

use flags::{Cmd, Xtask};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: Xtask = match netio::cli::parse("xtask") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let paths = run::Paths::from_env();
    let result = match &cli.cmd {
        Cmd::List => list::run(&paths),
        Cmd::Scenario(flags) => scenario::run(&paths, flags),
        Cmd::Bench(with) => bench::run(&paths, with),
        Cmd::Ci(flags) => ci::run(&paths, flags),
        Cmd::Compare(flags) => compare::run(&paths, flags),
        Cmd::Merge(flags) => merge::run(flags),
    };
    result.unwrap_or_else(|e| {
        eprintln!("xtask: {e}");
        ExitCode::from(2)
    })
}
