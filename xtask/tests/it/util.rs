//! What the end-to-end tests share: xtask run on a scenarios directory of
//! the test's own, with its reports kept out of the tree.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A scenarios directory and a reports directory, removed afterwards.
pub struct Bench {
    _dir: tempfile::TempDir,
    pub scenarios: PathBuf,
    pub out: PathBuf,
}

impl Bench {
    pub fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tmp");
        let (scenarios, out) = (dir.path().join("scenarios"), dir.path().join("out"));
        std::fs::create_dir_all(&scenarios).expect("mkdir");
        Bench {
            _dir: dir,
            scenarios,
            out,
        }
    }

    /// Writes `scenarios/NAME.toml`.
    pub fn scenario(&self, name: &str, text: &str) -> &Bench {
        std::fs::write(self.scenarios.join(format!("{name}.toml")), text).expect("write scenario");
        self
    }

    /// Runs `xtask ARGS…` with CI unset (a missing peer is skipped).
    pub fn xtask(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run xtask"))
    }

    /// The command [`Bench::xtask`] runs, for a test that needs the
    /// process itself.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .env("XTASK_SCENARIOS", &self.scenarios)
            .env("XTASK_WORKBENCH", &self.out)
            .env_remove("CI");
        cmd
    }

    /// The last run's `latest.json`.
    pub fn latest(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out.join("latest.json")).expect("latest.json");
        serde_json::from_str(&text).expect("json")
    }
}

/// A finished xtask.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A figure's value for a subject in a report, if it has one.
pub fn value(report: &serde_json::Value, scenario: usize, name: &str, who: &str) -> Option<f64> {
    report["scenarios"][scenario]["figures"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)?["values"][who]
        .as_f64()
}

/// Checks what a short echo load through ours and direct reports: rates,
/// no errors, CPU per message from /proc (the subject's and the whole
/// machine's), and our proxy's own counters.
pub fn assert_echo_figures(latest: &serde_json::Value) {
    let get = |name: &str, who: &str| {
        value(latest, 0, name, who).unwrap_or_else(|| panic!("no {name} for {who} in {latest}"))
    };
    assert!(get("rate", "self") > 0.0);
    assert!(get("rate", "direct") > 0.0);
    assert!(get("ratio_to_direct", "self") > 0.0);
    assert_eq!(get("errors", "self"), 0.0);
    let cpu = get("cpu_us_per_message", "self");
    assert!(cpu > 0.0 && cpu < 1e6, "CPU per message from /proc: {cpu}");
    // The whole machine's CPU per message, direct's included (the floor),
    // with a value for each round.
    for who in ["self", "direct"] {
        let total = get("total_cpu_us_per_message", who);
        assert!(
            total > 0.0 && total < 1e6,
            "{who}: machine CPU per message from /proc/stat: {total}"
        );
        let fig = latest["scenarios"][0]["figures"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "total_cpu_us_per_message"))
            .expect("the figure");
        let rounds = fig["rounds"][who].as_array().map_or(0, Vec::len);
        assert!(
            rounds > 0,
            "{who}: rounds of total_cpu_us_per_message in {fig}"
        );
    }
    assert_eq!(
        get("epoll_ctl_per_connection", "self"),
        2.0,
        "exact count from the proxy's own counters"
    );
}

/// A short echo load through 4 connections.
pub const TINY: &str = r#"description = "tiny echo run"
[load]
mode = "echo"
connections = 4
message_size = 32
duration = "600ms"
warmup = "200ms"
window = "100ms"
[targets]
errors = { max = 0 }
verify_failures = { max = 0 }
epoll_ctl_per_connection = { max = 2 }
"#;
