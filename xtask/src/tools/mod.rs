//! A load driven by a real client instead of loadgen (`[load] tool =
//! "wrk" | "redis-benchmark" | "iperf3"`): the backend that client talks
//! to started by the workbench (nginx serving HTTP, redis-server, an
//! iperf3 server), the subjects in front of it as for loadgen, and the
//! client run once per subject in turn (direct first), round after round;
//! each figure is the median of its rounds, with every round kept, and
//! the ratio to direct is taken within each round.

mod iperf3;
mod redis;
mod wrk;

use crate::figures;
use crate::load;
use crate::peers::{Kind, START_TIMEOUT};
use crate::procs;
use crate::progress;
use crate::report::Skipped;
use crate::run::{Ctx, Measured};
use crate::spec::{Count, Load, Scenario, Tool};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::proc::{self, TICKS_PER_SEC};
use testkit::Child;

/// Rounds of a real client's run unless the scenario says.
const ROUNDS: usize = 3;
/// How long a client may run past its own duration before it is killed
/// (redis-benchmark, which counts requests, gets this alone).
const SLACK: Duration = Duration::from_secs(60);

/// Figure name → value, from one run of a client.
pub type Sample = Vec<(String, f64)>;

/// One run of a client against one address.
pub struct Invocation {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Appended to each figure the parser gives (`_pipelined`, `_up`);
    /// figures the table does not know under that name are left out.
    pub suffix: &'static str,
    /// How long it runs, by itself.
    pub runs_for: Duration,
    /// Requests it makes, when known before it runs (redis-benchmark's
    /// `-n` times its tests); otherwise its parser gives [`MESSAGES`].
    pub messages: Option<f64>,
    pub parse: fn(&str) -> Result<Sample, String>,
}

/// The name under which a parser gives the requests a run made, for the
/// CPU time per message; not a figure itself.
pub const MESSAGES: &str = "(messages)";

/// A client's headline figures and the ratio to direct each gives.
const HEADLINES: &[(&str, &str)] = &[
    ("rate", "ratio_to_direct"),
    ("rate_pipelined", "ratio_to_direct_pipelined"),
    ("throughput_bps", "ratio_to_direct"),
    ("throughput_bps_up", "ratio_to_direct_up"),
    ("throughput_bps_down", "ratio_to_direct_down"),
];

/// Runs the real client's load of `sc` through `kinds`; a client (or its
/// backend) not installed skips the scenario with one line.
pub fn run(
    sc: &Scenario,
    l: &Load,
    kinds: &[Kind],
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    if let Some(why) = missing(l.tool) {
        eprintln!("xtask: skipping {}: {why}", sc.name);
        m.skipped.push(Skipped {
            subject: l.tool.arg().into(),
            why,
        });
        return Ok(());
    }
    let dir = ctx.run_dir.join(format!("{}-backend", sc.name));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (mut backend, backend_addr) = match l.tool {
        Tool::Wrk => wrk::backend(l, &dir)?,
        Tool::RedisBenchmark => redis::backend()?,
        Tool::Iperf3 => iperf3::backend()?,
        Tool::Loadgen => return Err("loadgen's load is load.rs's".into()),
    };
    let mut subjects = load::start_subjects(sc, kinds, backend_addr, ctx)?;
    let targets = load::targets(l, kinds, backend_addr, &subjects);
    let rounds = l.rounds.unwrap_or(ROUNDS);
    // (subject, figure) → every round's value.
    let mut got: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    // The live line: which subject is loaded in which round (a real
    // client says nothing while it runs); redis-benchmark's runs are
    // counted in requests, so its total time is not known beforehand.
    let per_turn = l.duration.0 * invocations(l, backend_addr, &dir).len() as u32;
    let mut line = progress::Line::start(&sc.name, per_turn * (rounds * targets.len()) as u32);
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let mut direct: Option<Sample> = None;
        for t in &targets {
            line.update(
                &t.label,
                started.elapsed(),
                &format!("round {} of {rounds}", round + 1),
            );
            let mut sample = Sample::new();
            let pid = subjects
                .iter()
                .find(|s| s.kind.name() == t.label)
                .and_then(|s| s.pid());
            let cpu_before = pid.map(proc::usage_with_children).transpose()?;
            let mut messages = 0.0;
            for inv in invocations(l, t.addr, &dir) {
                if round == 0 {
                    m.commands.push(inv.argv.join(" "));
                }
                let (got, n) = measure(&inv)?;
                sample.extend(got);
                messages += n;
                backend.check_alive()?;
                for s in subjects.iter_mut() {
                    s.check_alive()?;
                }
            }
            if let (Some(pid), Some(a)) = (pid, cpu_before) {
                // The subject's CPU time over its own turn, per request.
                let b = proc::usage_with_children(pid)?;
                let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
                let us = ticks / TICKS_PER_SEC * 1e6 / messages;
                sample.push(("cpu_us_per_message".into(), us));
            }
            if t.label == Kind::Direct.name() {
                direct = Some(sample.clone());
            } else if let Some(d) = &direct {
                sample.extend(ratios(&sample, d));
            }
            for (figure, v) in sample {
                got.entry((t.label.clone(), figure)).or_default().push(v);
            }
        }
    }
    line.finish();
    for ((subject, figure), vals) in got {
        m.values.put(&figure, &subject, median(&vals));
        m.values.put_rounds(&figure, &subject, &vals);
    }
    for t in &targets {
        m.values.put("connections", &t.label, connections(l) as f64);
    }
    Ok(())
}

/// Why `tool` (or the backend it needs) cannot run here, if it cannot.
fn missing(tool: Tool) -> Option<String> {
    missing_among(tool, |prog| procs::which(prog).is_some())
}

/// Why `tool` cannot run where `installed` says which programs are.
fn missing_among(tool: Tool, installed: impl Fn(&str) -> bool) -> Option<String> {
    let needs: &[(&str, &str)] = match tool {
        Tool::Loadgen => &[],
        Tool::Wrk => &[("wrk", "wrk"), ("nginx", "nginx")],
        Tool::RedisBenchmark => &[
            ("redis-benchmark", "redis-tools"),
            ("redis-server", "redis-server"),
        ],
        Tool::Iperf3 => &[("iperf3", "iperf3")],
    };
    needs
        .iter()
        .find(|(prog, _)| !installed(prog))
        .map(|(prog, pkg)| format!("{prog} is not installed (apt-get install {pkg})"))
}

/// The client's runs against `addr`, one subject's turn in a round.
fn invocations(l: &Load, addr: SocketAddr, dir: &Path) -> Vec<Invocation> {
    match l.tool {
        Tool::Wrk => vec![wrk::invocation(l, addr, dir)],
        Tool::RedisBenchmark => redis::invocations(l, addr),
        Tool::Iperf3 => iperf3::invocations(l, addr),
        Tool::Loadgen => Vec::new(),
    }
}

/// Runs one invocation to its end and parses what it printed; returns
/// its figures and the requests it made (not a number when unknown).
fn measure(inv: &Invocation) -> Result<(Sample, f64), String> {
    let (prog, args) = inv.argv.split_first().ok_or("an empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args).stdout(Stdio::piped());
    let child = Child::try_spawn(prog, &mut cmd, START_TIMEOUT)?;
    let (status, out) = child.wait_output(inv.runs_for + SLACK)?;
    let parsed = (inv.parse)(&out);
    if !status.success() && parsed.is_err() {
        return Err(format!(
            "{} exited {status}; stdout: {}",
            inv.argv.join(" "),
            out.chars().take(300).collect::<String>()
        ));
    }
    let parsed = parsed?;
    let messages = parsed
        .iter()
        .find(|(n, _)| n == MESSAGES)
        .map(|(_, v)| *v)
        .or(inv.messages)
        .unwrap_or(f64::NAN);
    let sample = parsed
        .into_iter()
        .map(|(name, v)| (format!("{name}{}", inv.suffix), v))
        .filter(|(name, _)| figures::def(name).is_some())
        .collect();
    Ok((sample, messages))
}

/// A subject's ratios to direct in the same round, for each headline
/// both have; with both directions, `ratio_to_direct` is the lower one.
fn ratios(sample: &Sample, direct: &Sample) -> Sample {
    let get = |s: &Sample, name: &str| s.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let mut out: Sample = HEADLINES
        .iter()
        .filter_map(|(fig, ratio)| Some((ratio.to_string(), get(sample, fig)? / get(direct, fig)?)))
        .collect();
    if get(&out, "ratio_to_direct").is_none() {
        if let (Some(up), Some(down)) = (
            get(&out, "ratio_to_direct_up"),
            get(&out, "ratio_to_direct_down"),
        ) {
            out.push(("ratio_to_direct".into(), up.min(down)));
        }
    }
    out
}

/// The connections (or iperf3's streams) the client opens: a count, as
/// `spec/tool.rs` refuses "max" for a real client.
fn connections(l: &Load) -> usize {
    match l.connections {
        Count::N(n) => n,
        Count::Max => 1,
    }
}

/// A figure of a sample, for tests.
#[cfg(test)]
fn figure(s: &Sample, name: &str) -> f64 {
    s.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in {s:?}"))
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(vals: &[f64]) -> f64 {
    let mut v = vals.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Whole seconds of `d`, at least 1, as wrk and iperf3 take them.
fn seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

/// Starts a server told by `argv` to listen on 127.0.0.1:`port` and waits
/// until it accepts connections there.
fn start_server(name: &str, port: u16, argv: &[String]) -> Result<(Child, SocketAddr), String> {
    let (prog, args) = argv.split_first().ok_or("an empty command")?;
    let mut cmd = Command::new(prog);
    cmd.args(args).stdout(Stdio::null());
    let mut child = Child::try_spawn(name, &mut cmd, START_TIMEOUT)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    child.try_wait_port(addr)?;
    Ok((child, addr))
}

/// The first field of a JSON object that is missing, as one line.
fn field(v: &serde_json::Value, tool: &str, path: &[&str]) -> Result<f64, String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("{tool}'s output has no number at {}", path.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_and_the_mean_of_two_middles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_are_to_direct_and_both_directions_give_the_lower() {
        let s =
            |v: &[(&str, f64)]| -> Sample { v.iter().map(|(n, x)| (n.to_string(), *x)).collect() };
        let r = ratios(
            &s(&[("rate", 50.0), ("p99_us", 3.0)]),
            &s(&[("rate", 100.0)]),
        );
        assert_eq!(r, s(&[("ratio_to_direct", 0.5)]));
        let r = ratios(
            &s(&[("throughput_bps_up", 8.0), ("throughput_bps_down", 6.0)]),
            &s(&[("throughput_bps_up", 10.0), ("throughput_bps_down", 10.0)]),
        );
        assert_eq!(
            r,
            s(&[
                ("ratio_to_direct_up", 0.8),
                ("ratio_to_direct_down", 0.6),
                ("ratio_to_direct", 0.6)
            ])
        );
    }

    #[test]
    fn a_missing_client_or_backend_is_named_with_its_package() {
        let without = |gone: &'static str| move |p: &str| p != gone;
        assert_eq!(
            missing_among(Tool::Wrk, without("wrk")).as_deref(),
            Some("wrk is not installed (apt-get install wrk)")
        );
        assert_eq!(
            missing_among(Tool::RedisBenchmark, without("redis-server")).as_deref(),
            Some("redis-server is not installed (apt-get install redis-server)")
        );
        assert_eq!(missing_among(Tool::Iperf3, without("wrk")), None);
        assert_eq!(missing_among(Tool::Loadgen, |_| false), None);
    }

    #[test]
    fn whole_seconds_round_up_and_are_at_least_one() {
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::ZERO), 1);
        assert_eq!(seconds(Duration::from_secs(3)), 3);
    }
}
