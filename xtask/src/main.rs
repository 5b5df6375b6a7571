//! `cargo xtask`: the workbench. Runs the scenarios in `scenarios/`
//! against our proxy and its peers and reports each figure against its
//! target; `ci` is the regression gate.

mod gate;
mod peers;
mod procs;
mod report;
mod run;
mod scenario;

use clap::{Parser, Subcommand};
use peers::Kind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "The proxy's workbench: scenarios, reports and CI gates"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios with their descriptions.
    List,
    /// Run one scenario.
    Scenario {
        name: String,
        #[command(flatten)]
        with: With,
    },
    /// Run every scenario (the project's main job).
    Bench(With),
    /// The regression gate: quick scenarios; exit 1 on a missed gated
    /// target or a regression against scenarios/baseline.json.
    Ci {
        /// Write this run's gated figures as the new baseline instead.
        #[arg(long)]
        write_baseline: bool,
    },
}

/// What a run measures, and how long.
#[derive(clap::Args)]
struct With {
    /// The proxy whose figures are judged: self, haproxy, nginx or direct.
    #[arg(long, default_value = "self")]
    proxy: String,
    /// Peers measured side by side in the same run, e.g. haproxy,nginx.
    #[arg(long, value_delimiter = ',')]
    compare: Vec<String>,
    /// Short durations and smaller counts.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn subjects(proxy: &str, compare: &[String]) -> Result<Vec<Kind>, String> {
    let mut out = vec![Kind::parse(proxy)?];
    for c in compare {
        let k = Kind::parse(c.trim())?;
        if !out.contains(&k) {
            out.push(k);
        }
    }
    Ok(out)
}

fn try_main() -> Result<ExitCode, String> {
    let cli = Cli::parse();
    let root = root();
    // Overridable so that tests can run their own scenarios and keep
    // their reports out of the tree.
    let scenarios_dir = std::env::var_os("XTASK_SCENARIOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("scenarios"));
    let all = scenario::load_all(&scenarios_dir)?;
    let (selected, kinds, quick, gate) = match cli.cmd {
        Cmd::List => {
            let w = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in &all {
                println!("{:<w$}  {}", s.name, s.description);
            }
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Scenario { name, with } => {
            let s = all
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| {
                    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
                    format!("no scenario \"{name}\" (have: {})", names.join(", "))
                })?;
            (
                vec![s],
                subjects(&with.proxy, &with.compare)?,
                with.quick,
                None,
            )
        }
        Cmd::Bench(with) => (all, subjects(&with.proxy, &with.compare)?, with.quick, None),
        Cmd::Ci { write_baseline } => (all, vec![Kind::SelfProxy], true, Some(write_baseline)),
    };

    eprintln!("xtask: building release binaries");
    run::build(&root)?;
    let workbench = std::env::var_os("XTASK_WORKBENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/workbench"));
    let id = run_id();
    let run_dir = workbench.join(&id);
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let ctx = run::Ctx {
        root: root.clone(),
        run_dir,
        quick,
    };
    let mut reports = Vec::new();
    for s in &selected {
        eprintln!("xtask: scenario {} ({})", s.name, s.description);
        let r = run::run(s, &kinds, &ctx);
        if let Some(e) = &r.error {
            eprintln!("xtask: scenario {} failed: {e}", s.name);
        }
        reports.push(r);
    }
    let mut columns: Vec<String> = kinds.iter().map(|k| k.name().to_string()).collect();
    let has_direct = reports
        .iter()
        .any(|r| r.figures.iter().any(|f| f.values.contains_key("direct")));
    if has_direct && !columns.iter().any(|c| c == "direct") {
        columns.push("direct".into());
    }
    let run = report::Run {
        id,
        quick,
        primary: kinds[0].name().into(),
        subjects: columns,
        scenarios: reports,
    };
    print!("{}", report::terminal(&run));
    let dir = report::write_all(&run, &workbench)?;
    println!("\nreports: {}/report.{{json,md,html}}", dir.display());

    let mut failures = run.gated_misses();
    if let Some(write) = gate {
        let path = scenarios_dir.join("baseline.json");
        if write {
            let b = gate::Baseline::from_run(&run);
            let text = serde_json::to_string_pretty(&b).map_err(|e| e.to_string())? + "\n";
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("baseline written to {}", path.display());
        } else {
            failures.extend(gate::Baseline::read(&path)?.regressions(&run));
        }
    }
    if failures.is_empty() {
        println!("all gated figures within target");
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &failures {
            println!("GATE: {f}");
        }
        Ok(ExitCode::from(1))
    }
}

/// A sortable, unique-enough run name: UTC date and time.
fn run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
