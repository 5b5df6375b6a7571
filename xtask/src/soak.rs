//! A soak scenario (see [`Soak`]): churn with resets, kept echoes and
//! long streams through the judged proxy at once, for as long as asked
//! (`cargo xtask scenario soak --duration 10m`), judged by the proxy's
//! own figures at rest: after a warm-up that reached peak concurrency
//! (start) and after the soak (end). RSS may grow by at most what the
//! scenario's target allows; descriptors, and the sockets the proxy owns
//! in CLOSE_WAIT and FIN_WAIT2 (orphans included, found by address),
//! must be back exactly where they were.

use crate::peers::{self, Kind, Subject};
use crate::procs::{self, CLOSE_WAIT, ESTABLISHED, FIN_WAIT2, LISTEN};
use crate::progress;
use crate::report::Skipped;
use crate::run::{self, Ctx, Measured};
use crate::spec::{Scenario, Soak};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::proc::usage_with_children;

/// How often the proxy is looked at while it comes to rest.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// Runs the soak through the first of `kinds`; the others are skipped:
/// a soak judges one proxy by its own figures.
pub fn run(
    sc: &Scenario,
    soak: &Soak,
    kinds: &[Kind],
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    let Some((&kind, others)) = kinds.split_first() else {
        return Ok(());
    };
    for k in others {
        m.skipped.push(Skipped {
            subject: k.name().into(),
            why: "a soak judges one proxy, the first named, by its own figures".into(),
        });
    }
    if kind == Kind::Direct {
        m.skipped.push(Skipped {
            subject: kind.name().into(),
            why: "a soak judges a proxy's own figures".into(),
        });
        return Ok(());
    }
    let (mut backend, backend_addr, mut subject) = run::start_proxied(sc, kind, ctx)?;
    let pid = subject.pid().ok_or("subject has no process")?;
    let owned = Owned {
        listen: subject.addr,
        backend: backend_addr,
    };
    let name = kind.name();

    let mut live = progress::Line::start(&format!("{} (warm-up)", sc.name), soak.warmup.0);
    let warm = phase(soak, soak.warmup.0, &subject, &mut live, ctx, m);
    live.finish();
    let warm = warm?;
    backend.check_alive()?;
    subject.check_alive()?;
    // The proxy's own peak: every kept connection at once, and churn.
    let kept = soak.echo_connections + soak.stream_connections;
    let want = kept + usize::from(soak.churn_connections > 0);
    if let Some(metrics) = subject.metrics {
        let peak = peers::scrape(metrics)?
            .get("peak_active")
            .copied()
            .unwrap_or(0.0);
        if peak < want as f64 {
            return Err(format!(
                "the warm-up reached {peak} connections at once, not the {want} of its loads"
            ));
        }
    }
    let start = at_rest(pid, &owned, subject.metrics, soak.settle.0)?;
    let mut live = progress::Line::start(&sc.name, soak.duration.0);
    let soaked = phase(soak, soak.duration.0, &subject, &mut live, ctx, m);
    live.finish();
    let soaked = soaked?;
    backend.check_alive()?;
    subject.check_alive()?;
    if let Some(metrics) = subject.metrics {
        let peak = peers::scrape(metrics)?.get("peak_active").copied();
        m.values
            .put("peak_connections", name, peak.unwrap_or(f64::NAN));
    }
    let end = at_rest(pid, &owned, subject.metrics, soak.settle.0)?;

    let v = &mut m.values;
    let delta = |a: u64, b: u64| b as f64 - a as f64;
    v.put("rss_growth_kib", name, delta(start.rss_kib, end.rss_kib));
    v.put("fd_delta", name, delta(start.fds, end.fds));
    v.put(
        "close_wait_delta",
        name,
        delta(start.close_wait, end.close_wait),
    );
    v.put(
        "fin_wait2_delta",
        name,
        delta(start.fin_wait2, end.fin_wait2),
    );
    for (fig, a, b) in [
        ("rss", start.rss_kib, end.rss_kib),
        ("fds", start.fds, end.fds),
        ("close_wait", start.close_wait, end.close_wait),
        ("fin_wait2", start.fin_wait2, end.fin_wait2),
    ] {
        let unit = if fig == "rss" { "_kib" } else { "" };
        v.put(&format!("{fig}_start{unit}"), name, a as f64);
        v.put(&format!("{fig}_end{unit}"), name, b as f64);
    }
    v.put("connections_churned", name, soaked.connects);
    v.put("resets_sent", name, soaked.resets_sent);
    v.put("messages", name, soaked.messages);
    v.put("streamed_bytes", name, soaked.streamed_bytes);
    v.put("soak_seconds", name, soak.duration.0.as_secs_f64());
    v.put("errors", name, warm.errors + soaked.errors);
    v.put(
        "verify_failures",
        name,
        warm.verify_failures + soaked.verify_failures,
    );
    m.commands.push(format!(
        "at rest after the warm-up: {start}; after the soak: {end}"
    ));
    Ok(())
}

/// The sockets the proxy owns: accepted on its listening address, or
/// connected to the backend (nothing else connects to it in a soak).
struct Owned {
    listen: SocketAddr,
    backend: SocketAddr,
}

impl Owned {
    fn states(&self) -> Vec<u8> {
        procs::tcp_states(|local, remote| local == self.listen || remote == self.backend)
            .into_iter()
            .filter(|&s| s != LISTEN)
            .collect()
    }
}

/// The proxy's figures at rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rest {
    rss_kib: u64,
    fds: u64,
    close_wait: u64,
    fin_wait2: u64,
    established: u64,
}

impl std::fmt::Display for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "RSS {} KiB, {} fds, {} CLOSE_WAIT, {} FIN_WAIT2, {} established",
            self.rss_kib, self.fds, self.close_wait, self.fin_wait2, self.established
        )
    }
}

/// Waits (up to `limit`) until the proxy holds no connection and its
/// descriptors and sockets read the same twice in a row, and returns
/// those figures; after `limit`, whatever they are then.
fn at_rest(
    pid: u32,
    owned: &Owned,
    metrics: Option<SocketAddr>,
    limit: Duration,
) -> Result<Rest, String> {
    let deadline = Instant::now() + limit;
    let mut last: Option<Rest> = None;
    loop {
        std::thread::sleep(SETTLE_POLL);
        let active = match metrics {
            Some(m) => peers::scrape(m)?.get("active").copied().unwrap_or(0.0),
            None => 0.0,
        };
        let states = owned.states();
        let count = |s: u8| states.iter().filter(|&&x| x == s).count() as u64;
        let usage = usage_with_children(pid)?;
        let rest = Rest {
            rss_kib: usage.rss_kib,
            fds: usage.fds,
            close_wait: count(CLOSE_WAIT),
            fin_wait2: count(FIN_WAIT2),
            established: count(ESTABLISHED),
        };
        let same = |a: &Rest| {
            (a.fds, a.close_wait, a.fin_wait2, a.established)
                == (rest.fds, rest.close_wait, rest.fin_wait2, rest.established)
        };
        let quiet = active == 0.0 && rest.established == 0 && last.as_ref().is_some_and(same);
        if quiet || Instant::now() >= deadline {
            return Ok(rest);
        }
        last = Some(rest);
    }
}

/// What one phase's loads reported, summed.
#[derive(Debug, Default)]
struct Tally {
    connects: f64,
    resets_sent: f64,
    messages: f64,
    streamed_bytes: f64,
    errors: f64,
    verify_failures: f64,
}

/// One of a phase's loadgens.
struct Load {
    name: &'static str,
    mode: &'static str,
    connections: usize,
    rate: u64,
    message_size: usize,
    reset_ratio: f64,
}

/// The soak's loads that have connections.
fn loads(soak: &Soak) -> Vec<Load> {
    let load = |name, mode, connections, rate, message_size, reset_ratio| Load {
        name,
        mode,
        connections,
        rate,
        message_size,
        reset_ratio,
    };
    [
        load(
            "churn",
            "connect",
            soak.churn_connections,
            soak.churn_rate,
            soak.message_size,
            soak.reset_ratio,
        ),
        load(
            "echo",
            "echo",
            soak.echo_connections,
            soak.echo_rate,
            soak.message_size,
            0.0,
        ),
        load(
            "stream",
            "echo",
            soak.stream_connections,
            soak.stream_rate,
            soak.stream_message_size,
            0.0,
        ),
    ]
    .into_iter()
    .filter(|l| l.connections > 0)
    .collect()
}

/// Runs every load of the soak at once against `subject` for `duration`,
/// and sums what they reported; the first load's progress is shown on
/// `live`.
fn phase(
    soak: &Soak,
    duration: Duration,
    subject: &Subject,
    live: &mut progress::Line,
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<Tally, String> {
    let target = subject.addr;
    let mut running = Vec::new();
    for l in loads(soak) {
        let args: Vec<String> = [
            "--json",
            "--target",
            &target.to_string(),
            "--mode",
            l.mode,
            "--connections",
            &l.connections.to_string(),
            "--rate",
            &l.rate.to_string(),
            "--message-size",
            &l.message_size.to_string(),
            "--reset-ratio",
            &l.reset_ratio.to_string(),
            "--duration",
            &format!("{}ms", duration.as_millis().max(1)),
            "--warmup",
            "0s",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let label = format!("loadgen ({})", l.name);
        running.push((l.name, run::spawn_loadgen(ctx, &label, &args, m)?));
    }
    let mut t = Tally::default();
    for (i, (name, lg)) in running.into_iter().enumerate() {
        // The loads run at once: the first one's line tells the time.
        let shown = format!("{} ({name} load)", subject.kind.name());
        let json = run::loadgen_report_watching(
            lg,
            duration + Duration::from_secs(60),
            &format!("loadgen ({name})"),
            |l| {
                if i == 0 {
                    progress::show(live, l, Duration::ZERO, "msg/s", |_| Some(&shown));
                }
            },
        )?;
        let r = &json["targets"][0];
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        t.connects += f("connects");
        t.resets_sent += f("resets_sent");
        t.messages += f("messages");
        if name == "stream" {
            t.streamed_bytes += f("bytes_received");
        }
        t.errors += run::error_total(r);
        t.verify_failures += f("verify_failures");
    }
    Ok(t)
}
