//! The proxy's own system-call counters, which the workbench turns into
//! syscalls per message and per connection, agree exactly with what
//! strace sees the worker thread do.

use crate::util::{connect, pattern, reset, Backend, Gate, Proxy, Stats, ENGINE, WAIT};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;

/// The call a worker of this binary's engine sleeps in.
// uring: the lead confirms the uring worker waits only in io_uring_enter
// (so its last one ends the relay's calls, as the last epoll_wait does).
const WAIT_CALL: &str = match ENGINE.as_bytes() {
    b"uring" => "io_uring_enter",
    _ => "epoll_wait",
};

/// The worker thread's calls by name, from `strace -f -o` output (the
/// worker is the thread that waits in [`WAIT_CALL`]), up to and including
/// its last one: after it come only the shutdown's closing of the
/// listener (counted) and the worker's teardown (not the relay's). A call
/// interrupted by another thread's line counts once, at its start.
/// `fcntl` counts only for pipe sizes: debug builds of std check a
/// descriptor with `F_GETFD` before closing it.
fn worker_calls(trace: &str) -> BTreeMap<String, u64> {
    let mut by_tid: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if rest.starts_with("<...") || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        by_tid.entry(tid).or_default().push((name, args));
    }
    // The thread that waited most (the start-up thread may enter a ring
    // once, to try what the kernel supports).
    let worker = by_tid
        .into_values()
        .max_by_key(|calls| calls.iter().filter(|(n, _)| *n == WAIT_CALL).count())
        .filter(|calls| calls.iter().any(|(n, _)| *n == WAIT_CALL))
        .unwrap_or_else(|| panic!("a thread that called {WAIT_CALL}"));
    let last = worker
        .iter()
        .rposition(|(n, _)| *n == WAIT_CALL)
        .unwrap_or(0);
    let mut counts = BTreeMap::new();
    for (name, args) in &worker[..=last] {
        if *name == "fcntl" && !args.contains("PIPE_SZ") {
            continue;
        }
        *counts.entry(name.to_string()).or_default() += 1;
    }
    counts
}

/// The process strace runs (its only child).
fn traced_pid(strace: u32) -> String {
    let path = format!("/proc/{strace}/task/{strace}/children");
    let text = std::fs::read_to_string(&path).expect("strace's children");
    text.split_whitespace()
        .next()
        .expect("strace runs the proxy")
        .to_string()
}

/// Sends `sig` to the traced proxy (a signal to strace would end strace).
fn signal(pid: &str, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// The traced proxy's counters.
fn stats(proxy: &mut Proxy, pid: &str) -> Stats {
    signal(pid, "USR1");
    let line = proxy
        .wait_line(|l| l.starts_with("stats:"))
        .expect("a stats line after SIGUSR1");
    Stats::parse(&line)
}

fn strace_available() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_syscall_counters_agree_with_strace() {
    if !strace_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "strace is not installed (apt-get install strace), and CI needs this test"
        );
        eprintln!("skipping: strace is not installed (apt-get install strace)");
        return;
    }
    // Round robin: the first client goes to an echo backend, the second to
    // one that never reads, so that its pipe is closed holding bytes.
    let echo = Backend::echo();
    let gate = Gate::new();
    let g = gate.clone();
    let stalled = Backend::spawn(move |s| {
        let _ = (0..3).any(|_| g.wait());
        drop(s);
    });
    let dir = tempfile::tempdir().expect("tmp");
    let trace = dir.path().join("trace");
    let mut cmd = Command::new("strace");
    cmd.arg("-f")
        .arg("-qq")
        .arg("-o")
        .arg(&trace)
        .args(crate::util::proxy_argv());
    let (e, s) = (echo.addr.to_string(), stalled.addr.to_string());
    // The stalled backend never takes what the reset client sent: its
    // flush is cut off after half a second.
    let args = ["-l", "127.0.0.1", "-p", "0", "-b", &e, "-b", &s];
    let mut proxy = Proxy::start_with(
        cmd,
        &[&args[..], &["--reset-flush-timeout", "500ms"]].concat(),
    );
    let pid = traced_pid(proxy.pid());

    // Messages and a stream (spliced) through the echo backend.
    let mut c = connect(proxy.addr);
    for i in 0..50u8 {
        c.write_all(&[i; 100]).expect("write");
        let mut got = [0u8; 100];
        c.read_exact(&mut got).expect("echo");
    }
    let big = pattern(7, 4 << 20);
    let mut r = c.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 4 << 20];
        r.read_exact(&mut got).expect("stream echoed");
        got
    });
    c.write_all(&big).expect("stream");
    assert!(
        reader.join().expect("reader") == big,
        "the stream came back changed"
    );

    // A stream into the stalled backend, then a reset: the pair closes
    // with bytes held.
    let mut s2 = connect(proxy.addr);
    s2.set_nonblocking(true).expect("nonblocking");
    let chunk = pattern(3, 64 << 10);
    let mut held = false;
    for _ in 0..2000 {
        if s2.write(&chunk).is_err() {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let st = stats(&mut proxy, &pid);
            if st.held() > 0 && st.get("active") == 2 {
                held = true;
                break;
            }
        }
    }
    assert!(held, "the proxy never held bytes for the stalled backend");
    reset(s2);
    // A client that resets after its echo came back: the proxy looks at
    // the backend's send queue (ioctl) before passing the reset on.
    let mut s3 = connect(proxy.addr);
    s3.write_all(&[9; 1000]).expect("write");
    let mut echoed = [0u8; 1000];
    s3.read_exact(&mut echoed).expect("echo");
    reset(s3);
    drop(c);
    let deadline = std::time::Instant::now() + WAIT;
    while stats(&mut proxy, &pid).get("active") != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pairs never closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    gate.open();

    signal(&pid, "TERM");
    assert!(proxy.wait_exit().success());
    let line = proxy
        .log()
        .into_iter()
        .rev()
        .find(|l| l.starts_with("stats:"))
        .expect("the final stats line");
    let stats = Stats::parse(&line);
    let text = std::fs::read_to_string(&trace).expect("strace output");
    let calls = worker_calls(&text);
    let n = |names: &[&str]| -> u64 {
        names
            .iter()
            .map(|k| calls.get(*k).copied().unwrap_or(0))
            .sum()
    };
    // The control waker's read on SIGTERM is no socket read: under epoll it
    // comes after the last wait, under uring before the enter that submits
    // the listener's close.
    let waker_read = u64::from(ENGINE == "uring");
    let expect = [
        ("sys_read", n(&["read"]) - waker_read),
        // And under uring, bytes received before a stream went to
        // splicing are written into its pipe.
        ("sys_write", n(&["sendto", "write"])),
        ("sys_splice", n(&["splice"])),
        ("sys_epoll_wait", n(&["epoll_wait"])),
        ("sys_uring_enter", n(&["io_uring_enter"])),
        ("sys_epoll_ctl", n(&["epoll_ctl"])),
        ("sys_accept", n(&["accept4"])),
        ("sys_connect", n(&["socket", "connect"])),
        ("sys_shutdown", n(&["shutdown"])),
        // And the listener, closed when the drain starts.
        ("sys_close", n(&["close"]) + 1),
        (
            "sys_sockopt",
            n(&["setsockopt", "getsockopt", "getsockname"]),
        ),
        ("sys_pipe", n(&["pipe2", "fcntl"])),
        ("sys_ioctl", n(&["ioctl"])),
    ];
    for (stat, traced) in expect {
        assert_eq!(
            stats.get(stat),
            traced,
            "{stat} disagrees with strace; worker calls: {calls:?}; stats: {stats:?}"
        );
    }
    if ENGINE == "uring" {
        assert!(stats.get("sys_uring_enter") > 0, "{stats:?}");
        assert!(stats.get("uring_submissions") > 0, "{stats:?}");
    }
    assert!(stats.get("sys_pipe") > 0, "no pipe was renewed: {stats:?}");
    assert!(
        stats.get("sys_ioctl") > 0,
        "no send queue was read: {stats:?}"
    );
    assert_eq!(stats.get("reset_flush_timeouts"), 1, "{stats:?}");
}
