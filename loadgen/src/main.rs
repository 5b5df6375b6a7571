//! The `loadgen` binary: parse and check the command line, run, print the
//! summary or the JSON report, and exit 0 (clean), 1 (errors or
//! verification failures) or 2 (bad arguments).

use clap::Parser;
use loadgen::cli::{self, Cli};
use loadgen::run::{self, Error};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's message is several lines: what was wrong, perhaps
            // continued on indented lines, then a blank line and usage.
            // Keep it to one line.
            let text = e.to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let what = what.join(" ");
            let what = what.trim_start_matches("error: ");
            let what = if what.is_empty() {
                "invalid arguments"
            } else {
                what
            };
            eprintln!("loadgen: {what} (see --help)");
            return ExitCode::from(2);
        }
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
