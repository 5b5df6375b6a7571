//! Running scenarios, for every task that does: the release build, the
//! subjects that can run here, each scenario's measurement (`load.rs`,
//! `hold.rs`) turned into figures, and the reports at the end.

use crate::figures::{self, Better, Class, VS_BEST_PEER};
use crate::gate;
use crate::machine::{self, Utc};
use crate::netns::{Place, Role, Setup};
use crate::peers::{self, Kind, Subject, START_TIMEOUT};
use crate::report::{self, Curve, Figure, Run, ScenarioReport, Skipped};
use crate::spec::{self, Body, Scenario, Tool};
use crate::{failover, hold, load, soak, tools};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::Child;

/// Where things are: the project, its scenarios, the reports.
pub struct Paths {
    pub root: PathBuf,
    pub scenarios: PathBuf,
    pub workbench: PathBuf,
}

impl Paths {
    /// The project root from `CARGO_MANIFEST_DIR`; `XTASK_SCENARIOS` and
    /// `XTASK_WORKBENCH` override the other two, so that tests can run
    /// their own scenarios and keep their reports out of the tree.
    pub fn from_env() -> Paths {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let var = |name: &str, default: PathBuf| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or(default)
        };
        Paths {
            scenarios: var("XTASK_SCENARIOS", root.join("scenarios")),
            workbench: var("XTASK_WORKBENCH", root.join("target/workbench")),
            root,
        }
    }

    pub fn scenarios(&self) -> Result<Vec<Scenario>, String> {
        spec::load_all(&self.scenarios)
    }
}

/// What a scenario's measurement needs to know about its surroundings.
pub struct Ctx {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    /// Where the scenario's processes run (its `topology`).
    pub place: Place,
}

impl Ctx {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("target/release").join(name)
    }

    /// A directory for `kind`'s generated configs in this scenario.
    pub fn subject_dir(&self, sc: &Scenario, kind: Kind) -> Result<PathBuf, String> {
        let dir = self.run_dir.join(format!("{}-{}", sc.name, kind.name()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(dir)
    }
}

/// Figure → subject → value, as a scenario measures them, and for the
/// figures measured in rounds (interleaved windows, or one tool run per
/// subject a round) every round's value: the run-to-run spread that
/// `cargo xtask compare` judges a change against.
#[derive(Debug, Clone, Default)]
pub struct Values(
    BTreeMap<String, BTreeMap<String, f64>>,
    BTreeMap<String, BTreeMap<String, Vec<f64>>>,
);

impl Values {
    /// Records `v` unless it is not a number (a division by nothing).
    pub fn put(&mut self, figure: &str, subject: &str, v: f64) {
        if v.is_finite() {
            self.0
                .entry(figure.into())
                .or_default()
                .insert(subject.into(), v);
        }
    }

    pub fn get(&self, figure: &str, subject: &str) -> Option<f64> {
        self.0.get(figure)?.get(subject).copied()
    }

    /// Records every round's value of `figure` for `subject`, in the
    /// order measured (values that are not numbers are left out); the
    /// figure's own value is put apart, with [`Values::put`].
    pub fn put_rounds(&mut self, figure: &str, subject: &str, rounds: &[f64]) {
        let finite: Vec<f64> = rounds.iter().copied().filter(|v| v.is_finite()).collect();
        if !finite.is_empty() {
            self.1
                .entry(figure.into())
                .or_default()
                .insert(subject.into(), finite);
        }
    }

    /// Every round's value of `figure` for `subject`; empty when it was
    /// not measured in rounds.
    pub fn rounds(&self, figure: &str, subject: &str) -> &[f64] {
        self.1
            .get(figure)
            .and_then(|m| m.get(subject))
            .map_or(&[], Vec::as_slice)
    }
}

/// What a scenario's measurement produced.
#[derive(Debug, Default)]
pub struct Measured {
    pub values: Values,
    pub curves: Vec<Curve>,
    pub commands: Vec<String>,
    pub skipped: Vec<Skipped>,
}

/// Runs `scenarios` through `kinds` (the primary first), and each also
/// through the subjects its ratio targets name, for `duration` if given
/// (`--duration`), and returns the whole run. Subjects that cannot run
/// here are skipped with a line, or, under `CI=true`, fail the run before
/// anything is built.
pub fn run_all(
    paths: &Paths,
    scenarios: &[Scenario],
    kinds: &[Kind],
    quick: bool,
    duration: Option<std::time::Duration>,
) -> Result<Run, String> {
    let mut wanted = kinds.to_vec();
    for k in scenarios.iter().flat_map(Scenario::ratio_subjects) {
        if !wanted.contains(&k) {
            wanted.push(k);
        }
    }
    let gate::Runnable {
        run: usable,
        skipped,
    } = gate::runnable(&wanted, gate::under_ci(), Kind::missing)?;
    for (k, why) in &skipped {
        eprintln!("xtask: skipping {}: {why}", k.name());
    }
    eprintln!("xtask: building release binaries");
    build(&paths.root)?;
    let started = Utc::now();
    let id = started.compact();
    let run_dir = paths.workbench.join(&id);
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let mut ctx = Ctx {
        root: paths.root.clone(),
        run_dir,
        place: Place::Loopback,
    };
    let primary = kinds.first().map_or("self", |k| k.name());
    let mut reports = Vec::new();
    for sc in scenarios {
        eprintln!("xtask: scenario {} ({})", sc.name, sc.description);
        let here = sc.ratio_subjects();
        let of_scenario = |k: &Kind| kinds.contains(k) || here.contains(k);
        let usable: Vec<Kind> = usable.iter().copied().filter(of_scenario).collect();
        let mut m = Measured {
            skipped: skipped
                .iter()
                .filter(|(k, _)| of_scenario(k))
                .map(|(k, why)| Skipped {
                    subject: k.name().into(),
                    why: why.clone(),
                })
                .collect(),
            ..Measured::default()
        };
        // The topology's namespaces, if any, go when `setup` is dropped:
        // at the end of this scenario, or on a panic in it.
        let setup = Setup::of(sc.topology);
        let result = match &setup {
            Ok(Setup::Unavailable(why)) => {
                m.skipped.push(Skipped {
                    subject: "all subjects".into(),
                    why: why.clone(),
                });
                Ok(())
            }
            Ok(s) => {
                ctx.place = s.place();
                match sc.body(quick).with_duration(duration) {
                    Body::Load(l) if l.tool != Tool::Loadgen => {
                        tools::run(sc, &l, &usable, &ctx, &mut m)
                    }
                    Body::Load(l) => load::run(sc, &l, &usable, &ctx, &mut m),
                    Body::Hold(h) => usable
                        .iter()
                        .try_for_each(|&k| hold::run(sc, &h, k, &ctx, &mut m)),
                    Body::Soak(s) => soak::run(sc, &s, &usable, &ctx, &mut m),
                    Body::Failover(o) => failover::run(sc, &o, &usable, &ctx, &mut m),
                }
            }
            Err(e) => Err(e.clone()),
        };
        drop(setup);
        if let Err(e) = &result {
            eprintln!("xtask: scenario {} failed: {e}", sc.name);
        }
        reports.push(ScenarioReport {
            name: sc.name.clone(),
            description: sc.description.clone(),
            figures: figures_of(sc, &m.values, primary),
            curves: m.curves,
            skipped: m.skipped,
            error: result.err(),
            commands: m.commands,
        });
    }
    let mut subjects: Vec<String> = wanted.iter().map(|k| k.name().to_string()).collect();
    let has_direct = reports
        .iter()
        .any(|r| r.figures.iter().any(|f| f.values.contains_key("direct")));
    if has_direct && !subjects.iter().any(|c| c == "direct") {
        subjects.push("direct".into());
    }
    Ok(Run {
        id,
        quick,
        primary: primary.into(),
        machine: machine::facts(&paths.root, &subjects),
        date: started.iso8601(),
        subjects,
        scenarios: reports,
    })
}

/// Prints the run's table and writes its reports.
pub fn report(run: &Run, paths: &Paths) -> Result<(), String> {
    print!("{}", report::terminal(run));
    let dir = report::write_all(run, &paths.workbench)?;
    println!("\nreports: {}/report.{{json,md,html}}", dir.display());
    Ok(())
}

/// The scenario's figures: what was measured, plus its peer ratios, each
/// with its target and verdict, targets first and in the table's order.
pub fn figures_of(sc: &Scenario, measured: &Values, primary: &str) -> Vec<Figure> {
    let mut values = measured.clone();
    // Ours over a named peer's, for the targets that name one.
    for name in sc.targets.keys() {
        let Some((base, peer)) = figures::split_vs_peer(name) else {
            continue;
        };
        if let (Some(ours), Some(theirs)) = (
            measured.get(base, primary),
            measured
                .get(base, peer.name())
                .filter(|_| peer.name() != primary),
        ) {
            values.put(name, primary, ours / theirs);
        }
    }
    // Ours over the best peer's, for the peer targets.
    for name in sc.peer_targets.keys() {
        let Some(vals) = measured.0.get(name) else {
            continue;
        };
        // The peers only: ours on another engine is not a peer.
        let peers = vals
            .iter()
            .filter(|(k, _)| k.as_str() != primary && Kind::is_peer(k))
            .map(|(_, v)| *v);
        let best = match figures::spec(name).map(|s| s.better) {
            Some(Better::Higher) => peers.fold(f64::NAN, f64::max),
            _ => peers.fold(f64::NAN, f64::min),
        };
        if let Some(ours) = vals.get(primary) {
            values.put(&format!("{name}{VS_BEST_PEER}"), primary, ours / best);
        }
    }
    // One subject's figure over another's, for the ratio targets, with
    // the ratio of each pair of rounds (their windows alternate).
    for (name, t) in &sc.ratio_targets {
        let (of, vs) = (t.of.name(), t.vs.name());
        if let (Some(a), Some(b)) = (measured.get(name, of), measured.get(name, vs)) {
            let figure = t.figure(name);
            values.put(&figure, of, a / b);
            let (ra, rb) = (measured.rounds(name, of), measured.rounds(name, vs));
            if ra.len() == rb.len() {
                let each: Vec<f64> = ra.iter().zip(rb).map(|(a, b)| a / b).collect();
                values.put_rounds(&figure, of, &each);
            }
        }
    }
    let mut rounds = values.1;
    let mut out: Vec<Figure> = values
        .0
        .into_iter()
        .map(|(name, vals)| {
            let rounds = rounds.remove(&name).unwrap_or_default();
            let spec = figures::spec(&name);
            let ratio = figures::split_vs_ours(&name)
                .and_then(|(base, vs)| sc.ratio_targets.get(base).filter(|t| t.vs == vs));
            let judged = ratio.map(|t| t.of.name().to_string());
            let target = ratio.map(|t| t.bound).or_else(|| {
                sc.targets.get(&name).copied().or_else(|| {
                    let base = name.strip_suffix(VS_BEST_PEER)?;
                    sc.peer_targets.get(base).copied()
                })
            });
            let who = judged.as_deref().unwrap_or(primary);
            let pass = target.and_then(|b| vals.get(who).map(|v| b.check(*v)));
            Figure {
                unit: spec
                    .as_ref()
                    .map_or_else(|| "count".into(), |s| s.unit.clone()),
                class: spec.as_ref().map_or(Class::Wall, |s| s.class),
                name,
                values: vals,
                rounds,
                target,
                judged,
                pass,
            }
        })
        .collect();
    let order = |f: &Figure| figures::spec(&f.name).map_or((usize::MAX, 0), |s| s.order);
    out.sort_by_key(|f| (f.target.is_none(), order(f)));
    out
}

/// Starts the scenario's echo-backend on a free port.
pub fn start_backend(sc: &Scenario, ctx: &Ctx) -> Result<(Child, SocketAddr), String> {
    start_backend_at(sc, ctx, (ctx.place.listen(Role::Backend), 0).into())
}

/// Starts the scenario's echo-backend on `listen` (port 0: a free one),
/// in the backend's namespace of the scenario's topology.
pub fn start_backend_at(
    sc: &Scenario,
    ctx: &Ctx,
    listen: SocketAddr,
) -> Result<(Child, SocketAddr), String> {
    let mut cmd = ctx.place.command(Role::Backend, ctx.bin("echo-backend"));
    cmd.args([
        "--listen",
        &listen.to_string(),
        "--mode",
        sc.backend.mode.arg(),
    ])
    .args(["--workers", &sc.backend.workers.to_string()])
    .stdout(Stdio::null());
    let mut b = Child::try_spawn("echo-backend", &mut cmd, START_TIMEOUT)?;
    let addr = b.try_wait_listening()?;
    Ok((b, addr))
}

/// Starts the scenario's echo-backend and `kind` (a proxy) in front of
/// it; returns the backend, its address and the proxy.
pub fn start_proxied(
    sc: &Scenario,
    kind: Kind,
    ctx: &Ctx,
) -> Result<(Child, SocketAddr, Subject), String> {
    let (backend, backend_addr) = start_backend(sc, ctx)?;
    let subject = peers::start(
        kind,
        &peers::Upstream::one(backend_addr),
        &sc.proxy.args,
        &ctx.root,
        &ctx.subject_dir(sc, kind)?,
        &ctx.place,
    )?;
    Ok((backend, backend_addr, subject))
}

/// Starts loadgen with `args` (its stdout piped, for the report) and
/// `--progress` (its once-a-second line on stderr, for the live line),
/// in the load's namespace of the topology, and notes the command under
/// `label` (`loadgen (churn)`) as a person reruns it: with the namespace,
/// without `--progress` (run by hand, loadgen draws its own line).
pub fn spawn_loadgen(
    ctx: &Ctx,
    label: &str,
    args: &[String],
    m: &mut Measured,
) -> Result<Child, String> {
    let mut cmd = ctx.place.command(Role::Load, ctx.bin("loadgen"));
    let prefix = ctx
        .place
        .prefix(Role::Load)
        .map_or_else(String::new, |p| p + " ");
    m.commands
        .push(format!("{prefix}{label} {}", args.join(" ")));
    cmd.args(args).arg("--progress").stdout(Stdio::piped());
    Child::try_spawn(label, &mut cmd, START_TIMEOUT)
}

/// Waits (up to `budget`) for a loadgen run with `--json` and returns
/// its report.
pub fn loadgen_report(lg: Child, budget: Duration, name: &str) -> Result<Value, String> {
    loadgen_report_watching(lg, budget, name, |_| {})
}

/// [`loadgen_report`], handing each stderr line to `on_line` while
/// loadgen runs (its progress lines, for [`crate::progress`]).
pub fn loadgen_report_watching(
    lg: Child,
    budget: Duration,
    name: &str,
    on_line: impl FnMut(&str),
) -> Result<Value, String> {
    let (status, out) = lg.wait_output_watching(budget, on_line)?;
    serde_json::from_str(out.trim()).map_err(|e| {
        format!(
            "{name} exited {status} without a JSON report ({e}); stdout: {}",
            out.chars().take(300).collect::<String>()
        )
    })
}

/// All the errors of one target of a loadgen report, of every kind.
pub fn error_total(target: &Value) -> f64 {
    target["errors"]
        .as_object()
        .map_or(0.0, |e| e.values().filter_map(Value::as_f64).sum())
}

/// Builds the binaries the workbench runs, in release.
pub fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--quiet"])
        .args(["-p", "proxy", "-p", "echo-backend", "-p", "loadgen"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release failed ({st})"))
    }
}

#[cfg(test)]
pub(crate) mod tests;
