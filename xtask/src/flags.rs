//! Every command-line flag of `cargo xtask`, in one place.

use crate::peers::Kind;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "The proxy's workbench: scenarios, reports and CI gates"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// List the scenarios with their descriptions.
    List,
    /// Run one scenario.
    Scenario(Scenario),
    /// Run every scenario (the project's main job).
    Bench(With),
    /// The regression gate: every scenario, quick, with HAProxy compared;
    /// exit 1 on a missed gated target or a regression against
    /// scenarios/baseline.json.
    Ci(Ci),
    /// Each figure's change from RUN_A to RUN_B, with its direction and
    /// whether it is beyond the runs' own spread; exits 0.
    Compare(Compare),
    /// Merge HdrHistogram interval logs from several load hosts
    /// (`loadgen --hlog FILE` on each, run at the same time) into one
    /// latency report: histograms are added, never percentiles averaged.
    Merge(Merge),
}

#[derive(Args)]
pub struct Compare {
    /// The run before: a run id (a directory under target/workbench),
    /// `latest`, or the path of a report.json.
    #[arg(value_name = "RUN_A")]
    pub run_a: String,
    /// The run after, named the same ways.
    #[arg(value_name = "RUN_B")]
    pub run_b: String,
}

#[derive(Args)]
pub struct Scenario {
    pub name: String,
    #[command(flatten)]
    pub with: With,
}

/// What a run measures, and how long.
#[derive(Args)]
pub struct With {
    /// The proxy whose figures are judged.
    #[arg(long, value_enum, default_value = "self")]
    pub proxy: Kind,
    /// Subjects measured side by side in the same run, e.g.
    /// haproxy,nginx,self-uring (ours on the io_uring engine).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub compare: Vec<Kind>,
    /// Short durations and smaller counts.
    #[arg(long)]
    pub quick: bool,
    /// The measured time of load and soak scenarios, e.g. 10m (after
    /// --quick, which it overrides)
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub duration: Option<Duration>,
}

/// `--duration`: the binaries' syntax, and more than nothing.
fn duration(s: &str) -> Result<Duration, String> {
    match netio::cli::parse_duration(s)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

impl With {
    /// The subjects: the judged proxy first, then the others once each.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut out = vec![self.proxy];
        for &k in &self.compare {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }
}

#[derive(Args)]
pub struct Ci {
    /// Write this run's counts and peer ratios as the new baseline instead.
    #[arg(long)]
    pub write_baseline: bool,
}

#[derive(Args)]
pub struct Merge {
    /// The interval logs, one per load host.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Xtask, String> {
        Xtask::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn subjects_are_the_judged_proxy_then_the_compared_once_each() {
        let Ok(Xtask { cmd: Cmd::Bench(w) }) =
            parse(&["bench", "--compare", "haproxy,self,nginx,haproxy"])
        else {
            panic!("bench parses")
        };
        assert_eq!(w.kinds(), [Kind::SelfProxy, Kind::Haproxy, Kind::Nginx]);
        let Ok(Xtask {
            cmd: Cmd::Scenario(s),
        }) = parse(&["scenario", "throughput", "--compare", "self-uring"])
        else {
            panic!("scenario parses")
        };
        assert_eq!(s.with.kinds(), [Kind::SelfProxy, Kind::SelfUring]);
    }

    #[test]
    fn a_duration_by_hand_parses_and_must_be_more_than_nothing() {
        let Ok(Xtask {
            cmd: Cmd::Scenario(s),
        }) = parse(&["scenario", "soak", "--duration", "10m"])
        else {
            panic!("scenario parses")
        };
        assert_eq!(s.with.duration, Some(Duration::from_secs(600)));
        let e = parse(&["scenario", "soak", "--duration", "0s"])
            .err()
            .expect("refused");
        assert!(e.contains("--duration") && e.contains("more than 0"), "{e}");
    }

    #[test]
    fn an_unknown_proxy_is_refused_with_the_names_it_takes() {
        let e = parse(&["scenario", "x", "--proxy", "envoy"])
            .err()
            .expect("refused");
        assert!(
            e.contains("envoy") && e.contains("self, self-uring, haproxy, nginx, direct"),
            "{e}"
        );
    }
}
