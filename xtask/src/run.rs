//! Running one scenario: start the backend and the proxies, drive the load
//! (or hold connections), read the processes' own accounting, and turn it
//! all into figures.

use crate::peers::{self, Kind, Subject};
use crate::procs::{self, Guard};
use crate::report::{Curve, Figure, ScenarioReport};
use crate::scenario::{parse_duration, Bound, Count, HoldSpec, LoadSpec, Scenario};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a run needs to know about its surroundings.
pub struct Ctx {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub quick: bool,
}

impl Ctx {
    fn bin(&self, name: &str) -> PathBuf {
        self.root.join("target/release").join(name)
    }
}

/// Figures that are exact counts or ratios measured in one run: these gate.
/// Everything else is wall-clock and only reported.
pub fn is_gated(figure: &str) -> bool {
    matches!(
        figure,
        "ratio_to_direct"
            | "errors"
            | "verify_failures"
            | "syscalls_per_message"
            | "epoll_ctl_per_connection"
            | "rss_per_conn_bytes"
            | "rss_per_conn_bytes_at_max"
            | "idle_wakeups"
            | "fd_leak"
            | "connections_held"
    )
}

fn unit(figure: &str) -> &'static str {
    // `rss_kib@5000` has the unit of `rss_kib`.
    let figure = figure.split('@').next().unwrap_or(figure);
    match figure {
        "rate" => "msg/s",
        "connect_rate" => "conn/s",
        "throughput_bps" => "bit/s",
        "ratio_to_direct" => "ratio",
        f if f.ends_with("_us") => "µs",
        f if f.ends_with("_bytes") || f.ends_with("_bytes_at_max") => "bytes",
        f if f.ends_with("_kib") => "KiB",
        "idle_cpu_percent" => "%",
        "syscalls_per_message" => "calls/msg",
        "cpu_us_per_message" => "µs/msg",
        "cpu_user_percent" => "%",
        "epoll_ctl_per_connection" => "calls/conn",
        _ => "count",
    }
}

/// Runs `sc` through `subjects` (primary first). Never panics on a bad
/// child: failures become the report's `error`.
pub fn run(sc: &Scenario, subjects: &[Kind], ctx: &Ctx) -> ScenarioReport {
    let mut rep = ScenarioReport {
        name: sc.name.clone(),
        description: sc.description.clone(),
        figures: Vec::new(),
        curves: Vec::new(),
        skipped: Vec::new(),
        error: None,
        commands: Vec::new(),
    };
    let mut usable = Vec::new();
    for &k in subjects {
        match k.missing() {
            Some(why) => rep.skipped.push(format!("{}: {why}", k.name())),
            None => usable.push(k),
        }
    }
    let mut values: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let result = match (sc.effective_load(ctx.quick), sc.effective_hold(ctx.quick)) {
        (Some(load), _) => run_load(sc, &load, &usable, ctx, &mut values, &mut rep),
        (None, Some(hold)) => usable
            .iter()
            .try_for_each(|&k| run_hold(sc, &hold, k, ctx, &mut values, &mut rep)),
        (None, None) => Err("scenario has neither load nor hold".into()),
    };
    if let Err(e) = result {
        rep.error = Some(e);
    }
    let primary = subjects.first().map_or("self", |k| k.name());
    rep.figures
        .extend(peer_ratios(&sc.peer_targets, &values, primary));
    for (name, vals) in values {
        let target: Option<Bound> = sc.targets.get(&name).copied();
        let pass = target.and_then(|b| vals.get(primary).map(|v| b.check(*v)));
        rep.figures.push(Figure {
            unit: unit(&name).into(),
            gated: is_gated(&name),
            name,
            values: vals,
            target,
            pass,
        });
    }
    // Targets first, then the rest, each group in a stable order.
    rep.figures
        .sort_by_key(|f| (f.target.is_none(), order(&f.name)));
    rep
}

/// `NAME_vs_best_peer` figures: our value over the best peer's, for each
/// peer target whose figure both we and at least one peer produced.
fn peer_ratios(
    targets: &BTreeMap<String, Bound>,
    values: &BTreeMap<String, BTreeMap<String, f64>>,
    primary: &str,
) -> Vec<Figure> {
    let mut out = Vec::new();
    for (name, bound) in targets {
        let Some(vals) = values.get(name) else {
            continue;
        };
        let ours = vals.get(primary).copied();
        let peers = vals
            .iter()
            .filter(|(k, _)| k.as_str() != primary && k.as_str() != "direct")
            .map(|(_, v)| *v);
        // The best peer: the highest where more is better, else the lowest.
        let best = if bound.min.is_some() {
            peers.fold(f64::NAN, f64::max)
        } else {
            peers.fold(f64::NAN, f64::min)
        };
        if let (Some(ours), false) = (ours, best.is_nan()) {
            let mut v = BTreeMap::new();
            v.insert(primary.to_string(), ours / best);
            let mut b = *bound;
            b.gate = Some(false);
            out.push(Figure {
                name: format!("{name}_vs_best_peer"),
                unit: "x peer".into(),
                values: v,
                target: Some(b),
                gated: false,
                pass: Some(b.check(ours / best)),
            });
        }
    }
    out
}

fn order(figure: &str) -> usize {
    crate::scenario::LOAD_FIGURES
        .iter()
        .chain(crate::scenario::HOLD_FIGURES)
        .position(|f| *f == figure)
        .unwrap_or(usize::MAX)
}

fn start_backend(sc: &Scenario, ctx: &Ctx) -> Result<(Guard, SocketAddr), String> {
    let mut cmd = Command::new(ctx.bin("echo-backend"));
    cmd.args(["--listen", "127.0.0.1:0", "--mode", &sc.backend.mode])
        .args(["--workers", &sc.backend.workers.to_string()])
        .stdout(Stdio::null());
    let mut g = Guard::spawn("echo-backend", &mut cmd)?;
    let addr = g.wait_listening()?;
    Ok((g, addr))
}

fn put(values: &mut BTreeMap<String, BTreeMap<String, f64>>, figure: &str, subject: &str, v: f64) {
    if v.is_finite() {
        values
            .entry(figure.into())
            .or_default()
            .insert(subject.into(), v);
    }
}

fn run_load(
    sc: &Scenario,
    load: &LoadSpec,
    kinds: &[Kind],
    ctx: &Ctx,
    values: &mut BTreeMap<String, BTreeMap<String, f64>>,
    rep: &mut ScenarioReport,
) -> Result<(), String> {
    let (mut backend, baddr) = start_backend(sc, ctx)?;
    let mut subjects: Vec<Subject> = Vec::new();
    for &k in kinds {
        if k == Kind::Direct {
            continue;
        }
        let dir = ctx.run_dir.join(format!("{}-{}", sc.name, k.name()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        subjects.push(peers::start(k, baddr, &sc.proxy.args, &ctx.root, &dir)?);
    }
    let mut targets: Vec<(String, SocketAddr)> = Vec::new();
    if load.compare_direct || kinds.contains(&Kind::Direct) {
        targets.push(("direct".into(), baddr));
    }
    targets.extend(subjects.iter().map(|s| (s.kind.name().to_string(), s.addr)));

    let duration = parse_duration(&load.duration)?;
    let warmup = parse_duration(&load.warmup)?;
    let connections = match load.connections {
        Count::N(n) => n,
        Count::Word(_) => peers::max_connections(),
    };
    // One loadgen for all subjects, in alternating windows; or one each.
    let groups: Vec<&[(String, SocketAddr)]> = if load.interleave {
        vec![&targets[..]]
    } else {
        targets.chunks(1).collect()
    };
    let before: Vec<Option<BTreeMap<String, f64>>> = subjects
        .iter()
        .map(|s| s.metrics.and_then(|m| peers::scrape(m).ok()))
        .collect();
    // Each subject's CPU time over the whole load: it is busy only in its
    // own windows, so per message it compares like with like.
    let cpu_before: Vec<Option<procs::Usage>> = subjects
        .iter()
        .map(|s| s.pid().and_then(|p| procs::usage(p).ok()))
        .collect();
    let mut results: Vec<Value> = Vec::new();
    for group in groups {
        let total = duration * group.len() as u32;
        let mut args: Vec<String> = vec![
            "--json".into(),
            "--mode".into(),
            load.mode.clone(),
            "--connections".into(),
            connections.to_string(),
            "--message-size".into(),
            load.message_size.to_string(),
            "--duration".into(),
            format!("{}ms", total.as_millis()),
            "--warmup".into(),
            load.warmup.clone(),
            "--window".into(),
            load.window.clone(),
        ];
        if let Some(r) = load.rate {
            args.extend(["--rate".into(), format!("{r}")]);
        }
        if let Some(d) = &load.bulk_direction {
            args.extend(["--bulk-direction".into(), d.clone()]);
        }
        for (_, a) in group {
            args.extend(["--target".into(), a.to_string()]);
        }
        rep.commands.push(format!("loadgen {}", args.join(" ")));
        let mut cmd = Command::new(ctx.bin("loadgen"));
        cmd.args(&args).stdout(Stdio::piped());
        let lg = Guard::spawn("loadgen", &mut cmd)?;
        let budget = total + warmup * (group.len() as u32 + 1) + Duration::from_secs(60);
        let (status, out) = lg.wait_output(budget)?;
        let json: Value = serde_json::from_str(out.trim()).map_err(|e| {
            format!(
                "loadgen exited {status} without a JSON report ({e}); stdout: {}",
                out.chars().take(300).collect::<String>()
            )
        })?;
        backend.check_alive()?;
        for s in &mut subjects {
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
    let results = &results;
    // Subjects come after direct, in `targets` and `results` alike.
    let first = targets.len() - subjects.len();
    for ((s, before), t) in subjects.iter().zip(&cpu_before).zip(&results[first..]) {
        let (Some(pid), Some(a)) = (s.pid(), before) else {
            continue;
        };
        let label = s.kind.name();
        let b = procs::usage(pid)?;
        let key = if load.mode == "connect" {
            "connects"
        } else {
            "messages"
        };
        // Warm-up messages are not counted by loadgen but cost CPU: count
        // them at the measured rate.
        let measured = f(t, key);
        let all = measured * (duration + warmup).as_secs_f64() / duration.as_secs_f64();
        let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
        if all > 0.0 && ticks > 0.0 {
            put(
                values,
                "cpu_us_per_message",
                label,
                ticks / procs::TICKS_PER_SEC * 1e6 / all,
            );
            let user = b.user_ticks.saturating_sub(a.user_ticks) as f64;
            put(values, "cpu_user_percent", label, user / ticks * 100.0);
        }
    }
    let headline = |t: &Value| match load.mode.as_str() {
        "bulk" => f(t, "throughput_bps"),
        "connect" => f(t, "connect_rate"),
        _ => f(t, "rate"),
    };
    let direct = targets
        .iter()
        .position(|(l, _)| l == "direct")
        .map(|i| &results[i]);
    for ((label, _), t) in targets.iter().zip(results) {
        let lat = &t["latency_us"];
        put(values, "connections", label, connections as f64);
        put(values, "rate", label, f(t, "rate"));
        match load.mode.as_str() {
            "bulk" => put(values, "throughput_bps", label, f(t, "throughput_bps")),
            "connect" => put(values, "connect_rate", label, f(t, "connect_rate")),
            _ => {}
        }
        for (fig, key) in [
            ("mean_us", "mean"),
            ("p50_us", "p50"),
            ("p90_us", "p90"),
            ("p99_us", "p99"),
            ("p999_us", "p999"),
            ("max_us", "max"),
        ] {
            if load.mode != "bulk" {
                put(values, fig, label, f(lat, key));
            }
        }
        let errors: f64 = t["errors"]
            .as_object()
            .map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum());
        put(values, "errors", label, errors);
        put(values, "verify_failures", label, f(t, "verify_failures"));
        if let (Some(d), false) = (direct, label == "direct") {
            put(values, "ratio_to_direct", label, headline(t) / headline(d));
            if load.mode != "bulk" {
                put(
                    values,
                    "added_p50_us",
                    label,
                    f(lat, "p50") - f(&d["latency_us"], "p50"),
                );
                put(
                    values,
                    "added_p99_us",
                    label,
                    f(lat, "p99") - f(&d["latency_us"], "p99"),
                );
            }
        }
        if let Some(points) = t["latency_curve"].as_array() {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect();
            if !pts.is_empty() && load.mode != "bulk" {
                rep.curves.push(Curve {
                    label: label.clone(),
                    points: pts,
                });
            }
        }
    }
    for (s, b) in subjects.iter().zip(before) {
        let (Some(m), Some(b)) = (s.metrics, b) else {
            continue;
        };
        let a = peers::scrape(m)?;
        let d = |k: &str| a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0);
        // Per message: the relay's reads and writes plus the epoll_wait
        // calls that found them; per-connection setup is counted apart.
        let syscalls = d("sys_read") + d("sys_write") + d("sys_epoll_wait");
        let accepted = d("accepted");
        if load.mode == "echo" && load.message_size > 0 {
            let messages = d("bytes_client_to_backend") / load.message_size as f64;
            if messages > 0.0 {
                put(
                    values,
                    "syscalls_per_message",
                    s.kind.name(),
                    syscalls / messages,
                );
            }
        }
        if accepted > 0.0 {
            put(
                values,
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

/// Holds connections through one subject, for memory and idle figures.
fn run_hold(
    sc: &Scenario,
    hold: &HoldSpec,
    kind: Kind,
    ctx: &Ctx,
    values: &mut BTreeMap<String, BTreeMap<String, f64>>,
    rep: &mut ScenarioReport,
) -> Result<(), String> {
    if kind == Kind::Direct {
        rep.skipped
            .push("direct: memory and idle figures need a proxy".into());
        return Ok(());
    }
    let (mut backend, baddr) = start_backend(sc, ctx)?;
    let dir = ctx.run_dir.join(format!("{}-{}", sc.name, kind.name()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut subject = peers::start(kind, baddr, &sc.proxy.args, &ctx.root, &dir)?;
    let pid = subject.pid().ok_or("subject has no process")?;
    let name = kind.name();
    let quiet = parse_duration(&hold.quiet)?;
    // Warm the process up with one exchange so that lazily built state
    // is not counted as per-connection cost.
    drop(open_held(subject.addr, 1, false)?);
    std::thread::sleep(Duration::from_millis(300));
    let base = procs::usage(pid)?;
    put(values, "rss_base_kib", name, base.rss_kib as f64);
    let max = peers::max_connections().min(procs_soft_limit().saturating_sub(100));
    for (i, count) in hold.connections.iter().enumerate() {
        let n = match count {
            Count::N(n) => (*n).min(max),
            Count::Word(_) => max,
        };
        let tcp_before = procs::kernel_tcp_kib();
        let (conns, errors) = open_held(subject.addr, n, hold.in_flight)?;
        std::thread::sleep(Duration::from_millis(500));
        subject.check_alive()?;
        backend.check_alive()?;
        let held = procs::usage(pid)?;
        let per = (held.rss_kib as f64 - base.rss_kib as f64) * 1024.0 / conns.len().max(1) as f64;
        let fig = if matches!(count, Count::Word(_)) {
            "rss_per_conn_bytes_at_max"
        } else {
            "rss_per_conn_bytes"
        };
        if i == 0 || fig == "rss_per_conn_bytes_at_max" {
            put(values, fig, name, per.max(0.0));
        } else {
            // Counts between the first and "max" are reported, not targeted.
            put(
                values,
                &format!("rss_per_conn_bytes@{n}"),
                name,
                per.max(0.0),
            );
        }
        put(values, &format!("rss_kib@{n}"), name, held.rss_kib as f64);
        put(values, "connections_held", name, conns.len() as f64);
        if let Some(m) = subject.metrics {
            let lent = peers::scrape(m)?.get("pool_lent").copied().unwrap_or(0.0);
            put(values, "buffers_held", name, lent);
        }
        put(values, "errors", name, errors as f64);
        put(
            values,
            "kernel_tcp_kib",
            name,
            procs::kernel_tcp_kib().saturating_sub(tcp_before) as f64,
        );
        if i == 0 {
            // Let the metrics thread finish the scrape above and block in
            // `accept` again: its return to sleep is a voluntary switch
            // that belongs to the scrape, not to the quiet window.
            std::thread::sleep(Duration::from_millis(300));
            let a = procs::usage(pid)?;
            std::thread::sleep(quiet);
            let b = procs::usage(pid)?;
            put(
                values,
                "idle_wakeups",
                name,
                (b.voluntary_switches - a.voluntary_switches) as f64,
            );
            let cpu =
                (b.cpu_ticks - a.cpu_ticks) as f64 / procs::TICKS_PER_SEC / quiet.as_secs_f64()
                    * 100.0;
            put(values, "idle_cpu_percent", name, cpu);
        }
        drop(conns);
        rep.commands.push(format!(
            "held {n} connections through {name} (in flight: {})",
            hold.in_flight
        ));
    }
    // Everything closed: the descriptors must come back to the baseline.
    let mut leak = 0.0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        leak = procs::usage(pid)?.fds as f64 - base.fds as f64;
        if leak <= 0.0 {
            break;
        }
    }
    put(values, "fd_leak", name, leak.max(0.0));
    Ok(())
}

fn procs_soft_limit() -> usize {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(1024)
}

/// Opens `n` connections to `addr`, each checked with a one-byte echo;
/// with `in_flight`, each then writes until its send buffer is full and
/// never reads. Returns the open streams and how many failed.
fn open_held(
    addr: SocketAddr,
    n: usize,
    in_flight: bool,
) -> Result<(Vec<TcpStream>, usize), String> {
    let mut conns = Vec::with_capacity(n);
    let mut errors = 0;
    let chunk = vec![0x5au8; 64 * 1024];
    for _ in 0..n {
        let s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        let ok = (|| -> std::io::Result<()> {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut s2 = &s;
            s2.write_all(b"h")?;
            let mut b = [0u8; 1];
            s2.read_exact(&mut b)?;
            if in_flight {
                s.set_nonblocking(true)?;
                // Until every buffer on the way is full; bounded at 4 MiB
                // so that the kernel's TCP memory stays out of pressure.
                for _ in 0..64 {
                    match s2.write(&chunk) {
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })();
        match ok {
            Ok(()) => conns.push(s),
            Err(_) => errors += 1,
        }
    }
    if conns.is_empty() && n > 0 {
        return Err(format!("could not open any of {n} connections to {addr}"));
    }
    Ok((conns, errors))
}

/// Builds the binaries the workbench runs, in release.
pub fn build(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "proxy",
            "-p",
            "echo-backend",
            "-p",
            "loadgen",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("cargo build --release failed ({st})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn peer_ratios_compare_with_the_best_peer_not_direct() {
        let mut values = BTreeMap::new();
        values.insert(
            "rate".to_string(),
            vals(&[
                ("self", 110.0),
                ("haproxy", 100.0),
                ("nginx", 90.0),
                ("direct", 500.0),
            ]),
        );
        values.insert(
            "p99_us".to_string(),
            vals(&[
                ("self", 80.0),
                ("haproxy", 120.0),
                ("nginx", 100.0),
                ("direct", 10.0),
            ]),
        );
        let mut targets = BTreeMap::new();
        let b = |min, max| Bound {
            min,
            max,
            gate: None,
        };
        targets.insert("rate".to_string(), b(Some(1.1), None));
        targets.insert("p99_us".to_string(), b(None, Some(0.7)));
        targets.insert("errors".to_string(), b(None, Some(1.0)));
        let figs = peer_ratios(&targets, &values, "self");
        assert_eq!(figs.len(), 2, "no figure without values: {figs:?}");
        let get = |n: &str| figs.iter().find(|f| f.name == n).expect(n);
        let rate = get("rate_vs_best_peer");
        assert!((rate.values["self"] - 1.1).abs() < 1e-9);
        assert_eq!(rate.pass, Some(true));
        assert!(!rate.gates(), "peer goals never gate");
        let p99 = get("p99_us_vs_best_peer");
        assert!(
            (p99.values["self"] - 0.8).abs() < 1e-9,
            "lowest peer p99 is the best"
        );
        assert_eq!(p99.pass, Some(false));
    }

    #[test]
    fn no_peers_no_peer_ratios() {
        let mut values = BTreeMap::new();
        values.insert("rate".to_string(), vals(&[("self", 1.0), ("direct", 2.0)]));
        let mut targets = BTreeMap::new();
        targets.insert(
            "rate".to_string(),
            Bound {
                min: Some(1.1),
                max: None,
                gate: None,
            },
        );
        assert!(peer_ratios(&targets, &values, "self").is_empty());
    }
}
