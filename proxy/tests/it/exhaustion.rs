//! The proxy at the end of its resources: a small descriptor limit, a
//! buffer pool taken by slow readers, the backend side out of ephemeral
//! ports (inside a private network namespace), and a storm of 20,000
//! connects from two processes at its descriptor budget. Each time it must
//! go on serving without spinning, turn away or hold clients cleanly
//! (never leave one hanging), and return to its baseline.

use crate::rig::Rig;
use crate::util::{connect, echo_conn, is_timeout, pattern, Backend, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The proxy's CPU time over a stretch of wall time.
struct CpuWindow {
    pid: u32,
    ticks: u64,
    at: Instant,
}

impl CpuWindow {
    fn start(pid: u32) -> CpuWindow {
        CpuWindow {
            pid,
            ticks: cpu_ticks(pid),
            at: Instant::now(),
        }
    }

    /// CPU time used since the start over the wall time passed.
    fn ratio(&self) -> f64 {
        let cpu = (cpu_ticks(self.pid) - self.ticks) as f64 / testkit::proc::TICKS_PER_SEC;
        cpu / self.at.elapsed().as_secs_f64()
    }

    /// Fails if the proxy used half a CPU or more since the start, `while_`
    /// saying what it was doing.
    fn assert_no_spin(&self, while_: &str) {
        let ratio = self.ratio();
        eprintln!("proxy CPU {ratio:.3} of the wall time {while_}");
        assert!(
            ratio < 0.5,
            "the proxy used {:.0}% of a CPU {while_}: it spins",
            ratio * 100.0
        );
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    testkit::proc::usage(pid)
        .unwrap_or_else(|e| panic!("{e}"))
        .cpu_ticks
}

/// The proxy under `prlimit --nofile=N:N`.
fn under_prlimit(nofile: usize) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .args(crate::util::proxy_argv());
    cmd
}

/// Under `--nofile=64:64` the connection table derived from the limit is
/// small; 30 clients are more than fit. Those beyond it wait in the
/// backlog (none is turned away), the saturated proxy does not spin, and
/// every waiting client is served as the ones before it leave.
#[test]
fn at_a_small_descriptor_limit_waiting_clients_are_served_in_turn_without_spinning() {
    const CLIENTS: usize = 30;
    let backend = Backend::echo();
    let rig = Rig::start_with(under_prlimit(64), backend.addr, &[]);
    let whole = CpuWindow::start(rig.proxy.pid());
    let mut pending: Vec<(usize, TcpStream)> = (0..CLIENTS)
        .map(|i| {
            let mut s = connect(rig.proxy.addr);
            s.write_all(&[i as u8]).expect("write");
            s.set_nonblocking(true).expect("nonblocking");
            (i, s)
        })
        .collect();
    // The table fills, then nothing moves.
    let mut full = 0;
    crate::util::wait_until("the table to fill and stay full", || {
        thread::sleep(Duration::from_millis(200));
        let now = rig.metric("proxy_active");
        let settled = now > 0 && now == full;
        full = now;
        settled
    });
    assert!(
        (full as usize) < CLIENTS,
        "all {CLIENTS} clients fit at once"
    );
    let saturated = CpuWindow::start(rig.proxy.pid());
    thread::sleep(Duration::from_secs(1));
    eprintln!("{full} of {CLIENTS} clients at once");
    saturated.assert_no_spin("while saturated and nothing moved");

    // Each served client leaves at once; the waiting ones get their turn.
    let deadline = Instant::now() + WAIT;
    let mut served = 0;
    while !pending.is_empty() {
        pending.retain_mut(|(i, s)| {
            let mut b = [0u8; 1];
            match s.read(&mut b) {
                Ok(1) => {
                    assert_eq!(b[0], *i as u8, "client {i} got another client's byte");
                    served += 1;
                    false
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                other => panic!("client {i} was turned away: {other:?}"),
            }
        });
        assert!(
            Instant::now() < deadline,
            "{} clients still waiting after {WAIT:?}",
            pending.len()
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(served, CLIENTS);
    whole.assert_no_spin("serving one-byte clients in turn");
    rig.assert_settled();
}

/// Backend connections: a first byte of `F` makes it flood the client
/// with bytes until its writes fail; anything else, an echo.
fn flood_or_echo(mut s: TcpStream) {
    let mut first = [0u8; 1];
    if s.read_exact(&mut first).is_err() {
        return;
    }
    if first[0] != b'F' {
        let _ = s.write_all(&first);
        return echo_conn(s);
    }
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    let chunk = pattern(21, 64 << 10);
    for _ in 0..(256 << 20) / chunk.len() {
        if s.write_all(&chunk).is_err() {
            return;
        }
    }
}

/// Twenty-four clients that never read, while their backends flood them,
/// take every large buffer and every pipe (the pools lent to streaming
/// directions; each connection's own two buffers are always there). The
/// proxy's memory stays at the pools' bound, other clients keep being
/// relayed, and once the slow readers go everything is given back.
///
/// Under uring the relay reads no further while a send to the same
/// destination is in flight, so a direction that waits for a pipe holds
/// that send, not a large buffer: there the pipes run out, and the large
/// buffers need not.
#[test]
fn slow_readers_that_exhaust_the_pools_do_not_stop_other_clients() {
    const CONNS: u64 = 32;
    const SIZE: u64 = 16 << 10;
    const LARGE: u64 = 4;
    const LARGE_SIZE: u64 = 64 << 10;
    let backend = Backend::spawn(flood_or_echo);
    let args = [CONNS, 2 * CONNS, SIZE, LARGE, LARGE_SIZE].map(|n| n.to_string());
    let rig = Rig::start(
        backend.addr,
        &[
            "--max-connections",
            &args[0],
            "--buffers",
            &args[1],
            "--buffer-size",
            &args[2],
            "--large-buffers",
            &args[3],
            "--large-buffer-size",
            &args[4],
            "--pipes",
            "4",
        ],
    );
    let rss = |rig: &Rig| {
        testkit::proc::usage(rig.proxy.pid())
            .unwrap_or_else(|e| panic!("{e}"))
            .rss_kib
    };
    let base_kib = rss(&rig);
    let slow: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut c = connect(rig.proxy.addr);
            c.write_all(b"F").expect("write");
            c
        })
        .collect();
    let pipes = 4;
    if crate::util::ENGINE == "uring" {
        crate::util::wait_until("the pipes to run out", || {
            rig.metric("proxy_pipes_lent") == pipes
        });
    } else {
        crate::util::wait_until("the large buffers and the pipes to run out", || {
            rig.metric("proxy_large_pool_lent") == LARGE && rig.metric("proxy_pipes_lent") == pipes
        });
    }
    let grown_kib = rss(&rig).saturating_sub(base_kib);
    let bound_kib = (2 * CONNS * SIZE + LARGE * LARGE_SIZE) / 1024 + 2048;
    eprintln!("RSS grew by {grown_kib} KiB with the pools taken (bound {bound_kib} KiB)");
    assert!(
        grown_kib <= bound_kib,
        "the proxy grew by {grown_kib} KiB with its pools taken (bound {bound_kib} KiB)"
    );

    for i in 0..5u64 {
        let data = pattern(30 + i, 1 << 20);
        let mut c = connect(rig.proxy.addr);
        let mut r = c.try_clone().expect("clone");
        let reader = thread::spawn(move || {
            let mut got = vec![0u8; 1 + (1 << 20)];
            r.read_exact(&mut got).map(|()| got)
        });
        c.write_all(b"E").expect("write");
        c.write_all(&data).expect("write");
        let got = reader
            .join()
            .expect("reader")
            .unwrap_or_else(|e| panic!("client {i} was not relayed with the pools taken: {e}"));
        assert!(got[1..] == data[..], "client {i}: echo altered");
    }
    drop(slow);
    rig.assert_settled();
}

/// Set in the environment of the test re-executed inside `unshare -n`.
const INSIDE_NETNS: &str = "PROXY_TEST_INSIDE_NETNS";

/// The full name of this module's test `f` as the harness knows it: the
/// module's path without the crate's name (`exhaustion::f` in `it`,
/// `it::exhaustion::f` in `it_uring`, which includes the same modules).
fn test_name(f: &str) -> String {
    let path = module_path!();
    let inner = path.split_once("::").map_or(path, |(_, rest)| rest);
    format!("{inner}::{f}")
}

/// Runs the test `name` of this executable again inside a private network
/// namespace (`unshare -n`), where the environment variable
/// [`INSIDE_NETNS`] is set, and fails if it fails. Where namespaces are
/// not permitted it says so and returns false (under `CI=true` it fails).
fn in_private_netns(name: &str) -> bool {
    let permitted = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !permitted {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "unshare -n is not permitted here, and CI=true requires this test"
        );
        eprintln!("skipping {name}: unshare -n (a private network namespace) is not permitted");
        return false;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new("unshare");
    // Through sh, so that the inner test's panic (on stderr) is in `out`.
    cmd.args(["-n", "sh", "-c", "exec \"$0\" \"$@\" 2>&1"])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE_NETNS, "1")
        .stdout(Stdio::piped());
    let child = testkit::Child::try_spawn(name, &mut cmd, WAIT).unwrap_or_else(|e| panic!("{e}"));
    let (status, out) = child
        .wait_output(WAIT * 2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        status.success() && out.contains("1 passed"),
        "{name} inside the namespace: {status}\n{out}"
    );
    true
}

/// Runs `cmd` (inside the namespace), failing with its output if it fails.
fn sh(cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Connects to `addr` from 127.0.0.1:`port`, a port outside the narrowed
/// ephemeral range, so that the clients themselves never run short.
fn connect_from_port(addr: SocketAddr, port: u16) -> TcpStream {
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let (fd, _) = netio::sys::socket::connect_from(&addr, &local)
        .unwrap_or_else(|e| panic!("connect from {local}: {e}"));
    let s = TcpStream::from(fd);
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    s
}

/// A backend that echoes one byte, then waits for a second byte (or the
/// end) and closes first: its side keeps the TIME_WAIT, so the proxy's
/// port is free again at once.
fn echo_one_then_close_first(mut s: TcpStream) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut b = [0u8; 1];
    if s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {
        let _ = s.read(&mut b);
    }
}

/// With ten ephemeral ports in a private namespace, fifteen clients: ten
/// are relayed, the other five are reset at once (not left hanging) and
/// each is logged, naming the backend; once the first ten leave, new
/// clients are relayed again.
#[test]
fn backend_side_ephemeral_ports_exhausted() {
    if std::env::var_os(INSIDE_NETNS).is_none() {
        in_private_netns(&test_name("backend_side_ephemeral_ports_exhausted"));
        return;
    }
    sh("ip link set lo up");
    let backend = Backend::spawn(echo_one_then_close_first);
    let mut rig = Rig::start(backend.addr, &[]);
    sh("echo '40000 40009' > /proc/sys/net/ipv4/ip_local_port_range");
    let mut served = Vec::new();
    let mut reset = 0;
    for i in 0..15u16 {
        let mut c = connect_from_port(rig.proxy.addr, 20_000 + i);
        let mut b = [0u8; 1];
        match c.write_all(&[i as u8]).and_then(|()| c.read(&mut b)) {
            Ok(1) => served.push(c),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => reset += 1,
            Err(e) if is_timeout(&e) => panic!("client {i} hung with the ports used up"),
            other => panic!("client {i}: {other:?}, neither relayed nor reset"),
        }
    }
    assert_eq!((served.len(), reset), (10, 5), "relayed and reset");
    let line = rig
        .proxy
        .wait_logged(|l| l.contains(&format!("backend {} failed", backend.addr)));
    eprintln!("the proxy said: {line}");
    let cause = line.rsplit(": ").next().unwrap_or_default().to_lowercase();
    assert!(
        cause.contains("address"),
        "the log line does not say that addresses ran out: {line}"
    );

    for mut c in served.drain(..) {
        c.write_all(b"!").expect("second byte");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    rig.assert_settled();
    for i in 0..10u16 {
        let mut c = connect_from_port(rig.proxy.addr, 21_000 + i);
        crate::util::echo_byte(&mut c, i as u8);
        served.push(c);
    }
    drop(served);
    rig.assert_settled();
    rig.proxy.signal("TERM");
    assert!(rig.proxy.wait_exit().success());
}

/// Two processes open 10,000 connections each, 1,100 at a time, against a
/// proxy whose descriptor limit allows about 2,000: every client is served
/// or reset, none hangs, and afterwards the proxy is back at its baseline.
#[test]
fn twenty_thousand_connects_from_two_processes_at_the_descriptor_budget() {
    let storm = testkit::workspace::bin("testkit", "connect-storm");
    let echo = testkit::workspace::bin("echo-backend", "echo-backend");
    let mut backend = testkit::Child::spawn(
        "echo-backend",
        Command::new(echo).args(["--listen", "127.0.0.1:0"]),
        WAIT,
    );
    let backend_addr = backend.wait_listening();
    let rig = Rig::start_with(under_prlimit(4100), backend_addr, &["--backlog", "4096"]);
    let target = rig.proxy.addr.to_string();
    let clients: Vec<testkit::Child> = (0..2)
        .map(|i| {
            let mut cmd = Command::new(&storm);
            cmd.args([&target, "10000", "1100", "20", "10000"])
                .stdout(Stdio::piped());
            testkit::Child::try_spawn(&format!("connect-storm {i}"), &mut cmd, WAIT)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut served = 0;
    for c in clients {
        let (status, out) = c.wait_output(WAIT * 3).unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "connect-storm: {status}");
        let field = |k: &str| -> usize {
            out.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {out:?}"))
        };
        assert_eq!(field("hung"), 0, "clients left hanging: {out}");
        assert_eq!(field("refused"), 0, "clients refused: {out}");
        assert_eq!(
            field("served") + field("reset") + field("closed"),
            10_000,
            "{out}"
        );
        served += field("served");
    }
    let peak = rig.metric("proxy_peak_active");
    eprintln!("served {served} of 20000, at most {peak} connections at once");
    assert!(served > 0, "no client was served");
    rig.assert_settled();
    assert_eq!(rig.metric("proxy_accepted"), rig.metric("proxy_closed"));
}
