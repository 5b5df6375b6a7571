//! The `loadgen` binary: parse and check the command line, run, print the
//! summary or the JSON report, and exit 0 (clean), 1 (errors or
//! verification failures) or 2 (bad arguments).

use loadgen::cli::{self, Cli};
use loadgen::run::{self, Error};
use std::process::ExitCode;

fn main() -> ExitCode {
    netio::cli::abort_on_panic();
    let cli: Cli = match netio::cli::parse("loadgen") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let cfg = match cli::resolve(cli) {
        Ok(cfg) => cfg,
        Err(msg) => {
            eprintln!("loadgen: {msg}");
            return ExitCode::from(2);
        }
    };
    let json = cfg.json;
    let report = match run::run(cfg) {
        Ok(r) => r,
        Err(e @ Error::Config(_)) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    if report.failed() {
        for line in report.error_lines() {
            eprintln!("{line}");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
