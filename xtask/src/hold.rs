//! A hold scenario: connections opened through one subject by the
//! workbench itself and held, for memory per connection, wake-ups and CPU
//! over a quiet window, and descriptors given back afterwards.

use crate::peers::{self, Kind, Shape};
use crate::procs;
use crate::report::Skipped;
use crate::run::{self, Ctx, Measured, Values};
use crate::spec::{Count, Hold, Scenario};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use testkit::proc::{usage_with_children as usage, TICKS_PER_SEC};

/// Holds connections through `kind`.
pub fn run(
    sc: &Scenario,
    hold: &Hold,
    kind: Kind,
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    if kind == Kind::Direct {
        m.skipped.push(Skipped {
            subject: kind.name().into(),
            why: "memory and idle figures need a proxy".into(),
        });
        return Ok(());
    }
    let (mut backend, _, mut subject) = run::start_proxied(sc, kind, ctx)?;
    let pid = subject.pid().ok_or("subject has no process")?;
    let name = kind.name();
    let values = &mut m.values;
    // Warm the process up with one exchange so that lazily built state
    // is not counted as per-connection cost.
    drop(open_held(subject.addr, 1, false)?);
    std::thread::sleep(Duration::from_millis(300));
    let base = usage(pid)?;
    values.put("rss_base_kib", name, base.rss_kib as f64);
    // The workbench holds the client side itself, within its own limit.
    let max = Shape::of(&sc.proxy.args).max_connections().min(
        usize::try_from(procs::nofile_soft())
            .unwrap_or(usize::MAX)
            .saturating_sub(100),
    );
    for (i, count) in hold.connections.iter().enumerate() {
        let n = match count {
            Count::N(n) => (*n).min(max),
            Count::Max => max,
        };
        let tcp_before = procs::kernel_tcp_kib();
        let (conns, errors) = open_held(subject.addr, n, hold.in_flight)?;
        std::thread::sleep(Duration::from_millis(500));
        subject.check_alive()?;
        backend.check_alive()?;
        let held = usage(pid)?;
        let per = (held.rss_kib as f64 - base.rss_kib as f64) * 1024.0 / conns.len().max(1) as f64;
        let per = per.max(0.0);
        if *count == Count::Max {
            values.put("rss_per_conn_bytes_at_max", name, per);
        } else if i == 0 {
            values.put("rss_per_conn_bytes", name, per);
        } else {
            // Counts between the first and "max" are reported, not targeted.
            values.put(&format!("rss_per_conn_bytes@{n}"), name, per);
        }
        values.put(&format!("rss_kib@{n}"), name, held.rss_kib as f64);
        values.put("connections_held", name, conns.len() as f64);
        if let Some(metrics) = subject.metrics {
            let lent = peers::scrape(metrics)?
                .get("pool_lent")
                .copied()
                .unwrap_or(0.0);
            values.put("buffers_held", name, lent);
        }
        values.put("errors", name, errors as f64);
        let tcp = procs::kernel_tcp_kib().saturating_sub(tcp_before);
        values.put("kernel_tcp_kib", name, tcp as f64);
        if i == 0 {
            quiet_figures(pid, hold.quiet.0, name, values)?;
        }
        drop(conns);
        m.commands.push(format!(
            "held {n} connections through {name} (in flight: {})",
            hold.in_flight
        ));
    }
    // Everything closed: the descriptors must come back to the baseline,
    // once the subject's own deadlines have passed. Clients that close with
    // unread data reset, and our proxy then delivers what they sent before
    // the reset for up to its `--reset-flush-timeout` (10 s by default):
    // against an echo backend that blocks on its own answers, a pair can
    // rightly stay open that long. So a leak is what is still open after
    // 15 s, not after 5 (where both engines were seen with one pair left).
    let mut leak = 0.0;
    for _ in 0..150 {
        std::thread::sleep(Duration::from_millis(100));
        leak = usage(pid)?.fds as f64 - base.fds as f64;
        if leak <= 0.0 {
            break;
        }
    }
    m.values.put("fd_leak", name, leak.max(0.0));
    Ok(())
}

/// Wake-ups and CPU of `pid` over a quiet window of `quiet`.
fn quiet_figures(pid: u32, quiet: Duration, name: &str, values: &mut Values) -> Result<(), String> {
    // Let the metrics thread finish the scrape before and block in
    // `accept` again: its return to sleep is a voluntary switch that
    // belongs to the scrape, not to the quiet window.
    std::thread::sleep(Duration::from_millis(300));
    let a = usage(pid)?;
    std::thread::sleep(quiet);
    let b = usage(pid)?;
    let wakeups = b.voluntary_switches.saturating_sub(a.voluntary_switches);
    values.put("idle_wakeups", name, wakeups as f64);
    let ticks = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64;
    values.put(
        "idle_cpu_percent",
        name,
        ticks / TICKS_PER_SEC / quiet.as_secs_f64() * 100.0,
    );
    Ok(())
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
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            errors += 1;
            continue;
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
