//! A load scenario: the backend and the subjects started, loadgen run
//! over all of them in alternating windows (or over each in turn), and
//! its report, the subjects' CPU time and our proxy's own counters turned
//! into figures.

use crate::peers::{self, Kind, Shape, Subject};
use crate::report::Curve;
use crate::run::{self, Ctx, Measured, Values};
use crate::spec::{Count, Load, LoadMode, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::proc::{self, Usage, TICKS_PER_SEC};
use testkit::Child;

/// One address loadgen (or a real client) drives, under the subject's name.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
}

/// What is read from the subjects before the load, to subtract after.
struct Before {
    /// Our proxy's counters.
    metrics: Vec<Option<BTreeMap<String, f64>>>,
    /// Each subject's CPU time.
    cpu: Vec<Option<Usage>>,
}

/// Runs the load of `sc` through `kinds`.
pub fn run(
    sc: &Scenario,
    load: &Load,
    kinds: &[Kind],
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    let (mut backend, backend_addr) = run::start_backend(sc, ctx)?;
    let mut subjects = start_subjects(sc, kinds, backend_addr, ctx)?;
    let targets = targets(load, kinds, backend_addr, &subjects);
    let connections = match load.connections {
        Count::N(n) => n,
        Count::Max => Shape::of(&sc.proxy.args).max_connections(),
    };
    let before = Before::read(&subjects);
    let results = run_loadgen(
        load,
        &targets,
        connections,
        ctx,
        &mut backend,
        &mut subjects,
        m,
    )?;
    // Subjects come after direct, in `targets` and `results` alike.
    let first = targets.len() - subjects.len();
    cpu_figures(
        load,
        &subjects,
        &before.cpu,
        &results[first..],
        &mut m.values,
    )?;
    target_figures(load, &targets, &results, connections, m);
    metrics_figures(load, &subjects, before.metrics, &mut m.values)
}

/// Our proxy and the peers among `kinds`, in front of the backend.
pub fn start_subjects(
    sc: &Scenario,
    kinds: &[Kind],
    backend: SocketAddr,
    ctx: &Ctx,
) -> Result<Vec<Subject>, String> {
    kinds
        .iter()
        .filter(|&&k| k != Kind::Direct)
        .map(|&k| {
            peers::start(
                k,
                &peers::Upstream::one(backend),
                &sc.proxy.args,
                &ctx.root,
                &ctx.subject_dir(sc, k)?,
            )
        })
        .collect()
}

/// Direct (when compared) first, then the subjects.
pub fn targets(
    load: &Load,
    kinds: &[Kind],
    backend: SocketAddr,
    subjects: &[Subject],
) -> Vec<Target> {
    let direct = (load.compare_direct || kinds.contains(&Kind::Direct)).then(|| Target {
        label: Kind::Direct.name().into(),
        addr: backend,
    });
    direct
        .into_iter()
        .chain(subjects.iter().map(|s| Target {
            label: s.kind.name().into(),
            addr: s.addr,
        }))
        .collect()
}

impl Before {
    fn read(subjects: &[Subject]) -> Before {
        Before {
            metrics: subjects
                .iter()
                .map(|s| s.metrics.and_then(|m| peers::scrape(m).ok()))
                .collect(),
            // Each subject's CPU time over the whole load: it is busy only
            // in its own windows, so per message it compares like with like.
            cpu: subjects
                .iter()
                .map(|s| s.pid().and_then(|p| proc::usage_with_children(p).ok()))
                .collect(),
        }
    }
}

/// loadgen's arguments for one run over `group`, `total` long.
fn loadgen_args(load: &Load, connections: usize, total: Duration, group: &[Target]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--mode".into(),
        load.mode.arg().into(),
        "--connections".into(),
        connections.to_string(),
        "--message-size".into(),
        load.message_size.to_string(),
        "--duration".into(),
        format!("{}ms", total.as_millis()),
        "--warmup".into(),
        load.warmup.to_string(),
        "--window".into(),
        load.window.to_string(),
    ];
    if let Some(r) = load.rate {
        args.extend(["--rate".into(), format!("{r}")]);
    }
    if let Some(d) = load.bulk_direction {
        args.extend(["--bulk-direction".into(), d.arg().into()]);
    }
    for t in group {
        args.extend(["--target".into(), t.addr.to_string()]);
    }
    args
}

/// Runs loadgen once over all targets in alternating windows, or once a
/// target in turn; returns each target's JSON report, in order.
fn run_loadgen(
    load: &Load,
    targets: &[Target],
    connections: usize,
    ctx: &Ctx,
    backend: &mut Child,
    subjects: &mut [Subject],
    m: &mut Measured,
) -> Result<Vec<Value>, String> {
    let groups: Vec<&[Target]> = if load.interleave {
        vec![targets]
    } else {
        targets.chunks(1).collect()
    };
    let mut results = Vec::new();
    for group in groups {
        let n = group.len() as u32;
        let total = load.duration.0 * n;
        let args = loadgen_args(load, connections, total, group);
        let lg = run::spawn_loadgen(ctx, "loadgen", &args, m)?;
        let budget = total + load.warmup.0 * (n + 1) + Duration::from_secs(60);
        let json = run::loadgen_report(lg, budget, "loadgen")?;
        backend.check_alive()?;
        for s in subjects.iter_mut() {
            s.check_alive()?;
        }
        let got = json["targets"]
            .as_array()
            .ok_or("loadgen JSON has no targets array")?;
        if got.len() != group.len() {
            return Err(format!(
                "loadgen reported {} targets, expected {}",
                got.len(),
                group.len()
            ));
        }
        results.extend(got.iter().cloned());
    }
    Ok(results)
}

/// `cpu_us_per_message` and `cpu_user_percent` of each subject, from its
/// CPU time over the load and its target's report.
fn cpu_figures(
    load: &Load,
    subjects: &[Subject],
    before: &[Option<Usage>],
    results: &[Value],
    values: &mut Values,
) -> Result<(), String> {
    let key = if load.mode == LoadMode::Connect {
        "connects"
    } else {
        "messages"
    };
    for ((s, before), t) in subjects.iter().zip(before).zip(results) {
        let (Some(pid), Some(a)) = (s.pid(), before) else {
            continue;
        };
        let label = s.kind.name();
        let b = proc::usage_with_children(pid)?;
        // Warm-up messages are not counted by loadgen but cost CPU: count
        // them at the measured rate.
        let (duration, warmup) = (load.duration.0, load.warmup.0);
        let all = f(t, key) * (duration + warmup).as_secs_f64() / duration.as_secs_f64();
        let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
        if all > 0.0 && ticks > 0.0 {
            values.put(
                "cpu_us_per_message",
                label,
                ticks / TICKS_PER_SEC * 1e6 / all,
            );
            let user = b.user_ticks.saturating_sub(a.user_ticks) as f64;
            values.put("cpu_user_percent", label, user / ticks * 100.0);
        }
    }
    Ok(())
}

/// What loadgen reported for each target: rates, latencies, errors, the
/// ratios to direct and the latency curves.
fn target_figures(
    load: &Load,
    targets: &[Target],
    results: &[Value],
    connections: usize,
    m: &mut Measured,
) {
    let headline = |t: &Value| match load.mode {
        LoadMode::Bulk => f(t, "throughput_bps"),
        LoadMode::Connect => f(t, "connect_rate"),
        LoadMode::Echo | LoadMode::Http => f(t, "rate"),
    };
    let latency = load.mode != LoadMode::Bulk;
    let direct = targets
        .iter()
        .position(|t| t.label == Kind::Direct.name())
        .map(|i| &results[i]);
    let values = &mut m.values;
    for (target, t) in targets.iter().zip(results) {
        let (label, lat) = (target.label.as_str(), &t["latency_us"]);
        values.put("connections", label, connections as f64);
        values.put("rate", label, f(t, "rate"));
        match load.mode {
            LoadMode::Bulk => values.put("throughput_bps", label, f(t, "throughput_bps")),
            LoadMode::Connect => values.put("connect_rate", label, f(t, "connect_rate")),
            LoadMode::Echo | LoadMode::Http => {}
        }
        if latency {
            for (fig, key) in [
                ("mean_us", "mean"),
                ("p50_us", "p50"),
                ("p90_us", "p90"),
                ("p99_us", "p99"),
                ("p999_us", "p999"),
                ("max_us", "max"),
            ] {
                values.put(fig, label, f(lat, key));
            }
        }
        values.put("errors", label, run::error_total(t));
        values.put("verify_failures", label, f(t, "verify_failures"));
        if let (Some(d), false) = (direct, label == Kind::Direct.name()) {
            values.put("ratio_to_direct", label, headline(t) / headline(d));
            if latency {
                let added = |key: &str| f(lat, key) - f(&d["latency_us"], key);
                values.put("added_p50_us", label, added("p50"));
                values.put("added_p99_us", label, added("p99"));
            }
        }
        let points: Vec<(f64, f64)> = t["latency_curve"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
            .collect();
        if latency && !points.is_empty() {
            m.curves.push(Curve {
                label: label.into(),
                points,
            });
        }
    }
}

/// Reads and writes per message, syscalls per message and `epoll_ctl`
/// per connection, from our proxy's own counters before and after the
/// load.
fn metrics_figures(
    load: &Load,
    subjects: &[Subject],
    before: Vec<Option<BTreeMap<String, f64>>>,
    values: &mut Values,
) -> Result<(), String> {
    for (s, b) in subjects.iter().zip(before) {
        let (Some(m), Some(b)) = (s.metrics, b) else {
            continue;
        };
        let a = peers::scrape(m)?;
        let d = |k: &str| a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0);
        // Per message: the relay's reads and writes, exact, plus the
        // epoll_wait calls that found them; per-connection setup is
        // counted apart.
        let read_write = d("sys_read") + d("sys_write");
        if load.mode == LoadMode::Echo && load.message_size > 0 {
            let messages = d("bytes_client_to_backend") / load.message_size as f64;
            if messages > 0.0 {
                let name = s.kind.name();
                values.put("read_write_per_message", name, read_write / messages);
                let syscalls = read_write + d("sys_epoll_wait");
                values.put("syscalls_per_message", name, syscalls / messages);
            }
        }
        let accepted = d("accepted");
        if accepted > 0.0 {
            values.put(
                "epoll_ctl_per_connection",
                s.kind.name(),
                d("sys_epoll_ctl") / accepted,
            );
        }
    }
    Ok(())
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}
