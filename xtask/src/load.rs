//! A load scenario: the backend and the subjects started, loadgen run
//! over all of them in alternating windows (or over each in turn), and
//! its report, the subjects' CPU time and our proxy's own counters turned
//! into figures. Over 500 lines with its tests, which check each figure
//! beside the code that derives it from loadgen's report and the
//! counters.

use crate::peers::{self, Kind, Shape, Subject};
use crate::progress;
use crate::report::Curve;
use crate::run::{self, Ctx, Measured, Values};
use crate::spec::{Count, Load, LoadMode, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::proc::{self, Usage, TICKS_PER_SEC};

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
    // Before the measured load, whose churn would fill the kernel's
    // TIME_WAIT table (see `timewait.rs`).
    if load.mode == LoadMode::Connect {
        crate::timewait::run(load, &targets, backend_addr, connections, ctx, m)?;
    }
    let before = Before::read(&subjects);
    let mut alive = || {
        backend.check_alive()?;
        subjects.iter_mut().try_for_each(Subject::check_alive)
    };
    let mut live = progress::Line::start(&sc.name, planned(load, targets.len()));
    let results = run_loadgen(load, &targets, connections, ctx, &mut alive, &mut live, m);
    live.finish();
    let results = results?;
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
                &ctx.place,
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
                .map(|s| s.scrape().and_then(Result::ok))
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

/// About how long the load of `n` targets runs: each target's warm-up
/// and measured time (the total of the live progress line).
fn planned(load: &Load, n: usize) -> Duration {
    (load.duration.0 + load.warmup.0) * n as u32
}

/// Runs loadgen once over all targets in alternating windows, or once a
/// target in turn, with `alive` checking the backend and the subjects
/// after each run and its progress shown on `live`; returns each
/// target's JSON report, in order.
fn run_loadgen(
    load: &Load,
    targets: &[Target],
    connections: usize,
    ctx: &Ctx,
    alive: &mut dyn FnMut() -> Result<(), String>,
    live: &mut progress::Line,
    m: &mut Measured,
) -> Result<Vec<Value>, String> {
    let groups: Vec<&[Target]> = if load.interleave {
        vec![targets]
    } else {
        targets.chunks(1).collect()
    };
    let mut results = Vec::new();
    // Where the group's elapsed time starts on the scenario's line.
    let mut offset = Duration::ZERO;
    for group in groups {
        let n = group.len() as u32;
        let total = load.duration.0 * n;
        let args = loadgen_args(load, connections, total, group);
        let lg = run::spawn_loadgen(ctx, "loadgen", &args, m)?;
        let budget = total + load.warmup.0 * (n + 1) + Duration::from_secs(60);
        let mut ran = Duration::ZERO;
        let unit = headline_unit(load.mode);
        let json = run::loadgen_report_watching(lg, budget, "loadgen", |l| {
            let name_of = |a: &str| {
                let t = group.iter().find(|t| t.addr.to_string() == a)?;
                Some(t.label.as_str())
            };
            ran = progress::show(live, l, offset, unit, name_of).unwrap_or(ran);
        })?;
        offset += ran;
        alive()?;
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
    let key = counted(load.mode);
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
    let key = headline(load.mode);
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
        values.put_rounds("rate", label, &rounds(t, "rate"));
        if key != "rate" {
            values.put(key, label, f(t, key));
            values.put_rounds(key, label, &rounds(t, key));
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
        total_cpu(load.mode, label, t, values);
        values.put("errors", label, run::error_total(t));
        values.put("verify_failures", label, f(t, "verify_failures"));
        if let (Some(d), false) = (direct, label == Kind::Direct.name()) {
            values.put("ratio_to_direct", label, f(t, key) / f(d, key));
            // Round i of the subject beside round i of direct: the windows
            // alternate, so each pair saw the same moment of the machine.
            let (ours, direct) = (rounds(t, key), rounds(d, key));
            if ours.len() == direct.len() {
                let ratios: Vec<f64> = ours.iter().zip(&direct).map(|(a, b)| a / b).collect();
                values.put_rounds("ratio_to_direct", label, &ratios);
            }
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

/// Our proxy's counter figures ([`counter_figures`]) of each subject
/// that has them, from its counters before and after the load.
fn metrics_figures(
    load: &Load,
    subjects: &[Subject],
    before: Vec<Option<BTreeMap<String, f64>>>,
    values: &mut Values,
) -> Result<(), String> {
    for (s, b) in subjects.iter().zip(before) {
        let (Some(a), Some(b)) = (s.scrape().transpose()?, b) else {
            continue;
        };
        counter_figures(load, s.kind.name(), &b, &a, values);
    }
    Ok(())
}

/// Reads and writes per message, syscalls per message, `epoll_ctl` per
/// connection and, for a connection per exchange, every system call and
/// io_uring submission per connection, from `name`'s counters `before`
/// and `after` the load. Both engines get every figure: under epoll the
/// io_uring counters stay 0; under uring reads and writes are
/// submissions, not system calls, and `io_uring_enter` is the crossing.
fn counter_figures(
    load: &Load,
    name: &str,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    values: &mut Values,
) {
    let d = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    // The io_uring counters, where this proxy has them.
    let uring = after.contains_key("uring_submissions");
    // Per message: the relay's reads and writes, exact, plus the
    // epoll_wait and io_uring_enter calls that found (or carried) them;
    // per-connection setup is counted apart.
    let read_write = d("sys_read") + d("sys_write");
    if load.mode == LoadMode::Echo && load.message_size > 0 {
        let messages = d("bytes_client_to_backend") / load.message_size as f64;
        if messages > 0.0 {
            values.put("read_write_per_message", name, read_write / messages);
            let syscalls = read_write + d("sys_epoll_wait") + d("sys_uring_enter");
            values.put("syscalls_per_message", name, syscalls / messages);
            if uring {
                for (figure, counter) in [
                    ("uring_enter_per_message", "sys_uring_enter"),
                    ("submissions_per_message", "uring_submissions"),
                    ("completions_per_message", "uring_completions"),
                ] {
                    values.put(figure, name, d(counter) / messages);
                }
            }
        }
    }
    let accepted = d("accepted");
    if accepted > 0.0 {
        values.put(
            "epoll_ctl_per_connection",
            name,
            d("sys_epoll_ctl") / accepted,
        );
        if load.mode == LoadMode::Connect {
            // The whole kernel-crossing cost of a connection: accept,
            // connect, registration, its one exchange, shutdown and close,
            // and the waits that found them.
            let all: f64 = after
                .keys()
                .filter(|k| k.starts_with("sys_"))
                .map(|k| d(k))
                .sum();
            values.put("syscalls_per_connection", name, all / accepted);
            if uring {
                let submitted = d("uring_submissions");
                values.put("submissions_per_connection", name, submitted / accepted);
            }
        }
    }
}

/// The figure (and loadgen key) a mode is measured by.
fn headline(mode: LoadMode) -> &'static str {
    match mode {
        LoadMode::Bulk => "throughput_bps",
        LoadMode::Connect => "connect_rate",
        LoadMode::Echo | LoadMode::Http => "rate",
    }
}

/// The unit of a mode's headline, for the live line.
fn headline_unit(mode: LoadMode) -> &'static str {
    crate::figures::def(headline(mode)).map_or("msg/s", |d| d.unit)
}

/// `key` of every round of a target (loadgen's `rounds`, one a measured
/// window); empty from a loadgen that reports none.
/// What CPU per message is per: a connect in connect mode (one exchange
/// each), a message otherwise.
fn counted(mode: LoadMode) -> &'static str {
    if mode == LoadMode::Connect {
        "connects"
    } else {
        "messages"
    }
}

/// `total_cpu_us_per_message`: the whole machine's busy CPU over the
/// target's measured windows (loadgen's `machine_cpu_s`, from
/// `/proc/stat`) per message, and per round. It counts the softirq work
/// a send causes wherever it lands, and the load's and the backend's
/// CPU too: direct's is the floor a subject adds to.
fn total_cpu(mode: LoadMode, label: &str, t: &Value, values: &mut Values) {
    let (key, per) = ("machine_cpu_s", counted(mode));
    let name = "total_cpu_us_per_message";
    values.put(name, label, f(t, key) * 1e6 / f(t, per));
    let each: Vec<f64> = rounds(t, key)
        .iter()
        .zip(rounds(t, per))
        .map(|(cpu, n)| cpu * 1e6 / n)
        .collect();
    values.put_rounds(name, label, &each);
}

fn rounds(target: &Value, key: &str) -> Vec<f64> {
    target["rounds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| f(r, key))
        .collect()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Body;
    use serde_json::json;

    fn load_of(mode: &str) -> Load {
        match run::tests::scenario_of(mode, "").body(false) {
            Body::Load(l) => l,
            _ => panic!("a load scenario"),
        }
    }

    fn target(label: &str, port: u16) -> Target {
        Target {
            label: label.into(),
            addr: ([127, 0, 0, 1], port).into(),
        }
    }

    fn round(rate: f64, bps: f64) -> Value {
        json!({"start_s": 0.0, "duration_s": 0.1, "messages": 10, "rate": rate,
               "throughput_bps": bps, "connects": 0, "connect_rate": 0.0})
    }

    #[test]
    fn total_cpu_is_the_machines_per_message_and_per_round() {
        let mut r = [round(1.0, 1.0), round(1.0, 1.0)];
        r[0]["machine_cpu_s"] = json!(0.25);
        r[1]["machine_cpu_s"] = json!(0.75);
        let t = json!({"messages": 20, "connects": 2, "machine_cpu_s": 1.0, "rounds": r});
        let mut v = Values::default();
        total_cpu(LoadMode::Echo, "direct", &t, &mut v);
        assert_eq!(v.get("total_cpu_us_per_message", "direct"), Some(50_000.0));
        assert_eq!(
            v.rounds("total_cpu_us_per_message", "direct"),
            [25_000.0, 75_000.0]
        );
        total_cpu(LoadMode::Connect, "self", &t, &mut v);
        assert_eq!(v.get("total_cpu_us_per_message", "self"), Some(500_000.0));
        // Unreadable /proc/stat: null, no figure.
        let t = json!({"messages": 20, "machine_cpu_s": null, "rounds": []});
        total_cpu(LoadMode::Echo, "nginx", &t, &mut v);
        assert_eq!(v.get("total_cpu_us_per_message", "nginx"), None);
    }

    #[test]
    fn every_round_of_the_headline_is_kept_and_paired_with_direct_for_the_ratio() {
        let load = load_of("bulk");
        let targets = [target("direct", 1), target("self", 2), target("nginx", 3)];
        let results = [
            json!({"rate": 3.0, "throughput_bps": 100.0,
                   "rounds": [round(3.0, 100.0), round(3.0, 200.0)]}),
            json!({"rate": 2.0, "throughput_bps": 80.0,
                   "rounds": [round(2.0, 50.0), round(2.0, 180.0)]}),
            // Fewer rounds than direct: no pairs, no ratio rounds.
            json!({"rate": 1.0, "throughput_bps": 40.0, "rounds": [round(1.0, 40.0)]}),
        ];
        let mut m = Measured::default();
        target_figures(&load, &targets, &results, 1, &mut m);
        let v = &m.values;
        assert_eq!(v.rounds("throughput_bps", "self"), [50.0, 180.0]);
        assert_eq!(v.rounds("rate", "direct"), [3.0, 3.0]);
        assert_eq!(v.rounds("ratio_to_direct", "self"), [0.5, 0.9]);
        assert_eq!(v.get("ratio_to_direct", "self"), Some(0.8));
        assert_eq!(v.rounds("throughput_bps", "nginx"), [40.0]);
        assert!(v.rounds("ratio_to_direct", "nginx").is_empty());
    }

    #[test]
    fn a_loadgen_without_rounds_gives_figures_without_rounds() {
        let load = load_of("echo");
        let targets = [target("direct", 1), target("self", 2)];
        let results = [json!({"rate": 4.0}), json!({"rate": 2.0})];
        let mut m = Measured::default();
        target_figures(&load, &targets, &results, 1, &mut m);
        assert_eq!(m.values.get("ratio_to_direct", "self"), Some(0.5));
        assert!(m.values.rounds("rate", "self").is_empty());
        assert!(m.values.rounds("ratio_to_direct", "self").is_empty());
    }

    fn counters(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_connection_per_exchange_counts_every_system_call_per_connection() {
        let before = counters(&[("accepted", 10.0), ("sys_accept", 10.0), ("sys_read", 5.0)]);
        let after = counters(&[
            ("accepted", 110.0),
            ("sys_accept", 210.0),
            ("sys_connect", 200.0),
            ("sys_epoll_ctl", 200.0),
            ("sys_read", 405.0),
            ("sys_write", 200.0),
            ("sys_close", 200.0),
            ("bytes_client_to_backend", 6400.0),
        ]);
        let mut v = Values::default();
        counter_figures(&load_of("connect"), "self", &before, &after, &mut v);
        // (200 + 200 + 200 + 400 + 200 + 200) calls over 100 connections.
        assert_eq!(v.get("syscalls_per_connection", "self"), Some(14.0));
        assert_eq!(v.get("epoll_ctl_per_connection", "self"), Some(2.0));
        assert_eq!(
            v.get("syscalls_per_message", "self"),
            None,
            "not per message"
        );
        // A kept-connection load is judged per message instead.
        let mut v = Values::default();
        counter_figures(&load_of("echo"), "self", &before, &after, &mut v);
        assert_eq!(v.get("syscalls_per_connection", "self"), None);
        assert!(v.get("syscalls_per_message", "self").is_some());
        // A proxy without io_uring counters gets no io_uring figures.
        assert_eq!(v.get("submissions_per_message", "self"), None);
    }

    #[test]
    fn under_uring_the_crossings_are_io_uring_enter_and_reads_are_submissions() {
        // 100 echoes of 64 bytes; the relay's reads and writes went as
        // submissions, 50 io_uring_enter calls carried them.
        let before = counters(&[("uring_submissions", 0.0), ("accepted", 1.0)]);
        let after = counters(&[
            ("accepted", 1.0),
            ("bytes_client_to_backend", 6400.0),
            ("sys_read", 0.0),
            ("sys_write", 0.0),
            ("sys_epoll_wait", 2.0),
            ("sys_uring_enter", 50.0),
            ("uring_submissions", 200.0),
            ("uring_completions", 400.0),
        ]);
        let mut v = Values::default();
        counter_figures(&load_of("echo"), "self-uring", &before, &after, &mut v);
        let get = |f: &str| v.get(f, "self-uring");
        assert_eq!(
            get("syscalls_per_message"),
            Some(0.52),
            "enters and side polls"
        );
        assert_eq!(get("read_write_per_message"), Some(0.0));
        assert_eq!(get("uring_enter_per_message"), Some(0.5));
        assert_eq!(get("submissions_per_message"), Some(2.0));
        assert_eq!(get("completions_per_message"), Some(4.0));
        // Epoll's figures have them too, at 0.
        let epoll = counters(&[
            ("bytes_client_to_backend", 6400.0),
            ("sys_read", 200.0),
            ("sys_write", 200.0),
            ("sys_uring_enter", 0.0),
            ("uring_submissions", 0.0),
            ("uring_completions", 0.0),
        ]);
        counter_figures(&load_of("echo"), "self", &counters(&[]), &epoll, &mut v);
        assert_eq!(v.get("syscalls_per_message", "self"), Some(4.0));
        assert_eq!(v.get("submissions_per_message", "self"), Some(0.0));
        // A connection per exchange: its submissions per connection, and
        // io_uring_enter among its system calls.
        let before = counters(&[("accepted", 0.0), ("uring_submissions", 0.0)]);
        let after = counters(&[
            ("accepted", 100.0),
            ("sys_uring_enter", 300.0),
            ("sys_close", 100.0),
            ("uring_submissions", 700.0),
        ]);
        let mut v = Values::default();
        counter_figures(&load_of("connect"), "self-uring", &before, &after, &mut v);
        assert_eq!(v.get("submissions_per_connection", "self-uring"), Some(7.0));
        assert_eq!(v.get("syscalls_per_connection", "self-uring"), Some(4.0));
    }
}
