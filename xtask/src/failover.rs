//! A failover scenario (see [`Failover`]): through each subject in turn,
//! two echo-backends behind it and connect-mode load through it; one
//! backend is killed (SIGKILL) a third of the way in and started again
//! on its port two thirds in. loadgen times every error from its
//! connection's connect to its failure, so each is told apart: an
//! exchange in progress at the kill (its connect started before the
//! killed backend was gone, it failed after the kill began) is
//! `cut_by_kill`, which no L4 proxy can replay; every other error is a
//! `client_errors`, target 0 while one backend is up. `recovery_ms` is
//! the time from the restarted backend listening again to its first
//! byte of traffic, read from its own read count (`rchar` of
//! `/proc/PID/io`), which a health check's connect, sending nothing,
//! leaves alone.

use crate::peers::{self, Kind, Upstream, START_TIMEOUT};
use crate::report::Skipped;
use crate::run::{self, Ctx, Measured};
use crate::spec::{Failover, Scenario};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the restarted backend's read count is looked at.
const POLL: Duration = Duration::from_millis(5);

/// Runs the failover through every proxy of `kinds`, one after another,
/// each with backends of its own.
pub fn run(
    sc: &Scenario,
    o: &Failover,
    kinds: &[Kind],
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    for &kind in kinds {
        if kind == Kind::Direct {
            m.skipped.push(Skipped {
                subject: kind.name().into(),
                why: "failover is a proxy's: with no proxy, a dead backend is the client's".into(),
            });
            continue;
        }
        through(sc, o, kind, ctx, m)?;
    }
    Ok(())
}

/// The kill, as loadgen's clock of error times sees it: it began at
/// `from` and the backend was gone (reaped) at `to`, in Unix
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub from: u64,
    pub to: u64,
}

/// Errors split by the kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub client_errors: u64,
    pub cut_by_kill: u64,
}

impl Kill {
    /// Splits `total` errors, of which `times` are `[started, failed]`
    /// pairs: one in progress at the kill was cut by it; the others, and
    /// errors without times, are the clients'.
    pub fn split(self, total: u64, times: &[[u64; 2]]) -> Split {
        let cut = times
            .iter()
            .filter(|&&[started, failed]| started <= self.to && failed >= self.from)
            .count() as u64;
        Split {
            client_errors: total.saturating_sub(cut),
            cut_by_kill: cut.min(total),
        }
    }
}

/// One subject's failover run.
fn through(
    sc: &Scenario,
    o: &Failover,
    kind: Kind,
    ctx: &Ctx,
    m: &mut Measured,
) -> Result<(), String> {
    let (mut a, a_addr) = run::start_backend(sc, ctx)?;
    let (mut b, b_addr) = run::start_backend(sc, ctx)?;
    let up = Upstream {
        backends: vec![a_addr, b_addr],
        failover: true,
    };
    let dir = ctx.subject_dir(sc, kind)?;
    let mut subject = peers::start(kind, &up, &sc.proxy.args, &ctx.root, &dir, &ctx.place)?;
    let name = kind.name();
    let args: Vec<String> = [
        "--json",
        "--target",
        &subject.addr.to_string(),
        "--mode",
        "connect",
        "--connections",
        &o.connections.to_string(),
        "--rate",
        &format!("{}", o.rate),
        "--message-size",
        &o.message_size.to_string(),
        "--duration",
        &o.duration.to_string(),
        "--warmup",
        &o.warmup.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let lg = run::spawn_loadgen(ctx, &format!("loadgen ({name})"), &args, m)?;
    let started = Instant::now();
    let end = started + o.warmup.0 + o.duration.0;
    let (kill_at, restart_at) = o.kill_and_restart();

    sleep_until(started + kill_at);
    let from = unix_us();
    b.try_signal("KILL")?;
    exited(b.pid())?;
    let kill = Kill {
        from,
        to: unix_us(),
    };
    b.try_wait_exit(START_TIMEOUT)?;
    sleep_until(started + restart_at);
    let (mut b, _) = run::start_backend_at(sc, ctx, b_addr)
        .map_err(|e| format!("restarting the killed backend on its port {b_addr}: {e}"))?;
    let recovery = first_traffic(b.pid(), end)?;

    let json = run::loadgen_report(
        lg,
        o.warmup.0 + o.duration.0 + Duration::from_secs(60),
        "loadgen",
    )?;
    a.check_alive()?;
    b.check_alive()?;
    subject.check_alive()?;
    let t = &json["targets"][0];
    let times: Vec<[u64; 2]> = t["error_times"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some([p.get(0)?.as_u64()?, p.get(1)?.as_u64()?]))
        .collect();
    let split = kill.split(run::error_total(t) as u64, &times);
    let v = &mut m.values;
    v.put("client_errors", name, split.client_errors as f64);
    v.put("cut_by_kill", name, split.cut_by_kill as f64);
    v.put(
        "exchange_rate",
        name,
        t["connect_rate"].as_f64().unwrap_or(f64::NAN),
    );
    match recovery {
        Some(d) => v.put("recovery_ms", name, d.as_secs_f64() * 1e3),
        None => m.commands.push(format!(
            "{name}: the restarted backend took no traffic before the load ended"
        )),
    }
    m.commands.push(format!(
        "{name}: backend {b_addr} killed {:?} into the load (gone after {} us), \
         listening again at {:?}",
        kill_at,
        kill.to - kill.from,
        restart_at
    ));
    if let Some(first) = t["first_error"].as_str() {
        m.commands
            .push(format!("{name}: first error (cut or not): {first}"));
    }
    Ok(())
}

/// How long after now the backend `pid` (just listening again) first
/// reads a byte, looked at until `end`; `None` if it did not by then.
fn first_traffic(pid: u32, end: Instant) -> Result<Option<Duration>, String> {
    let listening = Instant::now();
    let base = rchar(pid)?;
    while Instant::now() < end {
        std::thread::sleep(POLL);
        if rchar(pid)? > base {
            return Ok(Some(listening.elapsed()));
        }
    }
    Ok(None)
}

/// Waits until `pid` has exited (a zombie, its sockets closed), looking
/// far more often than a wait for its exit status would, so that the
/// kill's span is short.
fn exited(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        // The state follows the parenthesised command name.
        let state = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.rsplit_once(") ")?.1.chars().next());
        if matches!(state, None | Some('Z' | 'X')) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Err(format!(
        "the killed backend {pid} was still running after {START_TIMEOUT:?}"
    ))
}

/// Bytes `pid`'s threads have read with read(2) and its kin, sockets
/// included (`rchar` of `/proc/PID/io`).
fn rchar(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/io");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("rchar:")?.trim().parse().ok())
        .ok_or_else(|| format!("{path}: no rchar line"))
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Now, in the Unix microseconds of loadgen's error times.
fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_in_progress_at_the_kill_are_cut_and_the_rest_are_the_clients() {
        let kill = Kill { from: 100, to: 110 };
        let times = [
            [10, 50],   // Before the kill: the client's.
            [90, 100],  // Started before, failed as the kill began: cut.
            [105, 300], // Started while the backend was dying: cut.
            [111, 120], // Started after it was gone: the client's.
        ];
        let s = kill.split(5, &times);
        assert_eq!(
            s,
            Split {
                client_errors: 3,
                cut_by_kill: 2
            },
            "an error without times counts as the client's"
        );
        assert_eq!(kill.split(0, &[]).client_errors, 0);
    }
}
