//! TIME_WAIT sockets per side after connection churn: in a
//! connection-per-exchange scenario, each target (direct, then the
//! subjects) is churned alone for a short probe, and the TIME_WAIT
//! sockets the probe left are counted with `ss` on the client side (a
//! socket whose local or peer port is the target's listen port) and the
//! backend side (the backend's port).
//!
//! Why a probe of its own: the measured load interleaves the subjects in
//! windows, and every proxy's backend side connects to the one shared
//! backend port (going direct does too), so the TIME_WAIT sockets of that
//! port cannot be told apart by subject afterwards; a TIME_WAIT socket
//! has no owning process, and the proxies' ephemeral ports come from the
//! one range of the namespace. While one target is churned alone, every
//! new TIME_WAIT socket on these ports is its own. "New" is exact, not a
//! difference of counts: a socket is new if its 4-tuple was not in
//! TIME_WAIT before the probe, or was and its timer went up (the kernel
//! reused the tuple for a probe connection, `tcp_tw_reuse`, and that
//! connection is in TIME_WAIT again); sockets that expire during the
//! probe drop out of neither count. TIME_WAIT lasts 60 s, so the counts
//! are of this probe only, never of an earlier run.
//!
//! The probes run before the measured load, not after it: the kernel
//! holds at most `net.ipv4.tcp_max_tw_buckets` TIME_WAIT sockets (131,072
//! here) and closes the rest without one (`TCPTimeWaitOverflow` in
//! /proc/net/netstat), and a measured churn of several subjects fills
//! that table, after which a probe would count nearly nothing. Each
//! probe's overflow is reported beside its counts
//! (`time_wait_overflow`): where it is above 0 the counts are lower
//! bounds. So is each probe's `time_wait_reused` (`TWRecycled`): a
//! reused tuple is told apart by its timer, which `ss` shows to the
//! second, so a tuple reused and closed again within the second its old
//! timer read may be missed; where it is 0 the counts are exact.

use crate::load::Target;
use crate::netns::{Place, Role};
use crate::procs;
use crate::report::Skipped;
use crate::run::{self, Ctx, Measured};
use crate::spec::Load;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long each target is churned alone.
const PROBE: Duration = Duration::from_millis(500);

/// A TIME_WAIT socket: (local, peer) → its timer's remaining ms.
type Sockets = BTreeMap<(String, String), u64>;

/// Probes each of `targets` (direct's backend side is the backend itself:
/// it has only a client side) and records `time_wait_client_side` and
/// `time_wait_backend_side` for each, with the probe's connections and
/// errors.
pub fn run(
    load: &Load,
    targets: &[Target],
    backend: SocketAddr,
    connections: usize,
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    if procs::which("ss").is_none() {
        m.skipped.push(Skipped {
            subject: "TIME_WAIT counts".into(),
            why: "ss is not installed (apt-get install iproute2)".into(),
        });
        return Ok(());
    }
    for t in targets {
        let (overflow, reused) = counters(&ctx.place)?;
        let before = snapshot(&ctx.place)?;
        let args = probe_args(load, connections, t.addr);
        let lg = run::spawn_loadgen(ctx, "loadgen (TIME_WAIT probe)", &args, m)?;
        let report = run::loadgen_report(lg, PROBE + Duration::from_secs(60), "loadgen")?;
        let after = snapshot(&ctx.place)?;
        let (overflow_after, reused_after) = counters(&ctx.place)?;
        let overflow = overflow_after.saturating_sub(overflow);
        m.values
            .put("time_wait_overflow", &t.label, overflow as f64);
        let reused = reused_after.saturating_sub(reused);
        m.values.put("time_wait_reused", &t.label, reused as f64);
        let new = fresh(&before, &after);
        let label = t.label.as_str();
        // What the counts are of: a probe whose exchanges failed (a
        // connection reset leaves no TIME_WAIT) says so beside them.
        let probe = &report["targets"][0];
        let connects = probe["connects"].as_f64().unwrap_or(f64::NAN);
        m.values.put("time_wait_probe_connects", label, connects);
        m.values
            .put("time_wait_probe_errors", label, run::error_total(probe));
        let client = on(&new, t.addr.port());
        m.values.put("time_wait_client_side", label, client as f64);
        if t.addr != backend {
            let behind = on(&new, backend.port());
            m.values.put("time_wait_backend_side", label, behind as f64);
        }
    }
    Ok(())
}

/// loadgen's arguments for one probe of `target`: the load's mode and
/// sizes, no warm-up.
fn probe_args(load: &Load, connections: usize, target: SocketAddr) -> Vec<String> {
    [
        "--json",
        "--mode",
        load.mode.arg(),
        "--connections",
        &connections.to_string(),
        "--message-size",
        &load.message_size.to_string(),
        "--duration",
        &format!("{}ms", PROBE.as_millis()),
        "--warmup",
        "0ms",
        "--target",
        &target.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// The network namespaces of a place, by a role in each: one on the
/// loopback, each role's own with namespaces.
fn roles(place: &Place) -> &'static [Role] {
    match place {
        Place::Loopback => &[Role::Proxy],
        _ => &[Role::Load, Role::Proxy, Role::Backend],
    }
}

/// The standard output of `argv` run in `role`'s namespace.
fn output_in(place: &Place, role: Role, argv: &[&str]) -> Result<String, String> {
    let out = place
        .command(role, argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{} exited {}: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The TIME_WAIT sockets wherever the place's processes run.
fn snapshot(place: &Place) -> Result<Sockets, String> {
    let mut all = Sockets::new();
    for &role in roles(place) {
        let text = output_in(place, role, &["ss", "-tanoH", "state", "time-wait"])?;
        all.extend(parse(&text));
    }
    Ok(all)
}

/// The kernel's TIME_WAIT counters so far, over the place's namespaces:
/// sockets closed without TIME_WAIT for a full table
/// (`TCPTimeWaitOverflow`), and TIME_WAIT tuples reused by a new
/// connection (`TWRecycled`).
fn counters(place: &Place) -> Result<(u64, u64), String> {
    let (mut overflow, mut reused) = (0, 0);
    for &role in roles(place) {
        let text = output_in(place, role, &["cat", "/proc/net/netstat"])?;
        overflow += tcp_ext(&text, "TCPTimeWaitOverflow").unwrap_or(0);
        reused += tcp_ext(&text, "TWRecycled").unwrap_or(0);
    }
    Ok((overflow, reused))
}

/// Counter `name` of /proc/net/netstat's `TcpExt:` lines (a line of names,
/// then a line of values).
fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `ss -tanoH state time-wait` lines: `Recv-Q Send-Q LOCAL PEER
/// timer:(timewait,58sec,0)`; lines it cannot read are left out.
fn parse(text: &str) -> Sockets {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, peer) = (f.get(2)?, f.get(3)?);
            let timer = f.get(4).and_then(|t| timer_ms(t)).unwrap_or(0);
            Some(((local.to_string(), peer.to_string()), timer))
        })
        .collect()
}

/// The remaining time of `timer:(timewait,T,0)` in ms; `T` as ss prints
/// it: `1min`, `58sec`, `5.123ms` (5.123 s), `123ms`.
fn timer_ms(field: &str) -> Option<u64> {
    let t = field.strip_prefix("timer:(timewait,")?.split(',').next()?;
    let (min, rest) = match t.split_once("min") {
        Some((m, rest)) => (m.parse::<u64>().ok()?, rest),
        None => (0, t),
    };
    let ms = if rest.is_empty() {
        0
    } else if let Some(s) = rest.strip_suffix("sec") {
        s.parse::<u64>().ok()? * 1000
    } else {
        let r = rest.strip_suffix("ms")?;
        match r.split_once('.') {
            Some((s, ms)) => s.parse::<u64>().ok()? * 1000 + ms.parse::<u64>().ok()?,
            None => r.parse::<u64>().ok()?,
        }
    };
    Some(min * 60_000 + ms)
}

/// The sockets of `after` that entered TIME_WAIT since `before`: tuples
/// not there before, or whose timer went up (reused, then closed again).
fn fresh(before: &Sockets, after: &Sockets) -> Vec<(String, String)> {
    after
        .iter()
        .filter(|(k, t)| before.get(*k).is_none_or(|b| *t > b))
        .map(|(k, _)| k.clone())
        .collect()
}

/// How many of `sockets` have `port` at either end.
fn on(sockets: &[(String, String)], port: u16) -> usize {
    sockets
        .iter()
        .filter(|(l, p)| has_port(l, port) || has_port(p, port))
        .count()
}

/// Whether `addr` (`127.0.0.1:80`, `[::1]:80`) is on `port`.
fn has_port(addr: &str, port: u16) -> bool {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        == Some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overflow_counter_reads_from_netstat() {
        let text = "TcpExt: SyncookiesSent TCPTimeWaitOverflow TWKilled\n\
                    TcpExt: 1 818682 0\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(tcp_ext(text, "TCPTimeWaitOverflow"), Some(818_682));
        assert_eq!(tcp_ext(text, "Missing"), None);
        assert!(counters(&Place::Loopback).is_ok(), "this machine's");
    }

    #[test]
    fn timers_read_as_ss_prints_them() {
        assert_eq!(timer_ms("timer:(timewait,1min,0)"), Some(60_000));
        assert_eq!(timer_ms("timer:(timewait,58sec,0)"), Some(58_000));
        assert_eq!(timer_ms("timer:(timewait,5.123ms,0)"), Some(5_123));
        assert_eq!(timer_ms("timer:(timewait,123ms,0)"), Some(123));
        assert_eq!(timer_ms("timer:(keepalive,1min,0)"), None);
    }

    #[test]
    fn new_sockets_are_new_tuples_or_reused_ones_whose_timer_went_up() {
        let before = parse(
            "0 0 127.0.0.1:5000 127.0.0.1:7000 timer:(timewait,30sec,0)\n\
             0 0 127.0.0.1:5001 127.0.0.1:7000 timer:(timewait,40sec,0)\n\
             0 0 127.0.0.1:5002 127.0.0.1:7000 timer:(timewait,123ms,0)\n",
        );
        // 5000 aged, 5001 was reused and closed again, 5002 expired, 5003
        // and the client side's socket are new.
        let after = parse(
            "0 0 127.0.0.1:5000 127.0.0.1:7000 timer:(timewait,29sec,0)\n\
             0 0 127.0.0.1:5001 127.0.0.1:7000 timer:(timewait,59sec,0)\n\
             0 0 127.0.0.1:5003 127.0.0.1:7000 timer:(timewait,1min,0)\n\
             0 0 127.0.0.2:6000 127.0.0.1:8000 timer:(timewait,1min,0)\n\
             garbage\n",
        );
        let new = fresh(&before, &after);
        assert_eq!((on(&new, 7000), on(&new, 8000), on(&new, 5000)), (2, 1, 0));
        assert!(has_port("[::1]:8000", 8000) && !has_port("127.0.0.1:80001", 8000));
    }

    #[test]
    fn this_machines_ss_reads() {
        let Some(_) = procs::which("ss") else {
            return;
        };
        // A connection closed here first: its socket is in TIME_WAIT.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let before = snapshot(&Place::Loopback).expect("ss");
        let c = std::net::TcpStream::connect(addr).expect("connect");
        let (s, _) = l.accept().expect("accept");
        drop(c);
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
        let after = snapshot(&Place::Loopback).expect("ss");
        assert_eq!(on(&fresh(&before, &after), addr.port()), 1, "{after:?}");
    }
}
