//! Active health checks through the real proxy: a connect check follows a
//! killed and restarted echo-backend down and up by its fall and rise
//! counts; send/expect checks (a prefix, a pattern) follow a scripted
//! backend's right and wrong answers; a check that hangs times out; a
//! backend down by its check gets no client with any balancing method,
//! from either of two workers (one of which checks);
//! and with no check configured the proxy makes no check at all.

use crate::cli::config_file;
use crate::failover::all_served;
use crate::util::{Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A `[[backend]]` table for `addr` named `name`, with the extra `keys`.
fn table(name: &str, addr: SocketAddr, keys: &str) -> String {
    format!("[[backend]]\nname = \"{name}\"\naddress = \"{addr}\"\n{keys}\n")
}

/// The proxy on 127.0.0.1 port 0 with the config file `text`.
fn proxy_with(text: &str, extra: &[&str]) -> (tempfile::TempDir, Proxy) {
    let (dir, path) = config_file(text);
    let mut args = vec!["-c", path.as_str(), "-l", "127.0.0.1", "-p", "0"];
    args.extend_from_slice(extra);
    (dir, Proxy::start(&args))
}

/// An echo-backend process on `listen`, and its address.
fn echo_backend(listen: &str) -> (testkit::Child, SocketAddr) {
    let bin = testkit::workspace::bin("echo-backend", "echo-backend");
    let mut child = testkit::Child::spawn(
        "echo-backend",
        Command::new(bin).args(["--listen", listen]),
        WAIT,
    );
    let addr = child.wait_listening();
    (child, addr)
}

/// Waits until the proxy has done at least `n` checks, none of them
/// failed.
fn passing_checks(proxy: &mut Proxy, n: u64) {
    proxy.wait_stats("checks passing", |s| {
        s.get("checks") >= n && s.get("check_failures") == 0
    });
}

#[test]
fn a_connect_check_takes_a_killed_backend_down_after_fall_and_a_restarted_one_up_after_rise() {
    let (mut backend, addr) = echo_backend("127.0.0.1:0");
    let other = Backend::echo();
    let text = format!(
        "[health-check]\ninterval = \"50ms\"\nrise = 2\nfall = 3\n\n{}{}",
        table("a", addr, ""),
        table("b", other.addr, "check = false"),
    );
    let (_dir, mut proxy) = proxy_with(&text, &[]);
    passing_checks(&mut proxy, 2);
    backend.signal("KILL");
    backend.wait_exit();
    let down = proxy.wait_logged(|l| l.contains("backend a ") && l.contains(" is down"));
    assert_eq!(
        down,
        format!(
            "proxy: backend a ({addr}) is down: check failed 3 times in a row: connect refused"
        )
    );
    // Clients meanwhile go to the other backend, and none is reset.
    all_served(&proxy, 5, "a down");
    let (_backend, again) = echo_backend(&addr.to_string());
    assert_eq!(again, addr);
    let up = proxy.wait_logged(|l| l.contains("backend a ") && l.contains(" is up"));
    assert_eq!(
        up,
        format!("proxy: backend a ({addr}) is up: check passed 2 times in a row")
    );
    let st = proxy.stats();
    assert_eq!(st.get("connect_failures"), 0, "no client tried a: {st:?}");
    assert!(st.get("check_failures") >= 3, "{st:?}");
    // Each change is logged once.
    let changes = proxy
        .log()
        .iter()
        .filter(|l| l.starts_with("proxy: backend a "))
        .count();
    assert_eq!(changes, 2, "{:?}", proxy.log());
}

/// A backend whose every connection reads a line and answers `+PONG` while
/// `right` is set, `-ERR` otherwise, then closes; a connection that sends
/// anything else is a client, counted and echoed.
fn scripted(right: Arc<AtomicBool>, clients: Arc<AtomicUsize>) -> Backend {
    Backend::spawn(move |mut s: TcpStream| {
        let mut buf = [0u8; 64];
        let Ok(n) = s.read(&mut buf) else { return };
        if buf[..n].starts_with(b"PING") {
            let answer: &[u8] = if right.load(Ordering::SeqCst) {
                b"+PONG\r\n"
            } else {
                b"-ERR\r\n"
            };
            let _ = s.write_all(answer);
            return;
        }
        clients.fetch_add(1, Ordering::SeqCst);
        let _ = s.write_all(&buf[..n]);
        crate::util::echo_conn(s);
    })
}

/// A send/expect check with `expect` (a TOML line) follows the scripted
/// backend down when its answer turns wrong and up when it is right
/// again; the down line quotes the expectation and the reply.
fn send_expect_follows_the_answers(expect: &str, reason: &str) {
    let right = Arc::new(AtomicBool::new(true));
    let backend = scripted(Arc::clone(&right), Arc::default());
    let text = format!(
        "[health-check]\ninterval = \"50ms\"\nrise = 2\nfall = 2\nsend = \"PING\\\\r\\\\n\"\n{expect}\n\n{}",
        table("redis", backend.addr, ""),
    );
    let (_dir, mut proxy) = proxy_with(&text, &[]);
    passing_checks(&mut proxy, 2);
    right.store(false, Ordering::SeqCst);
    let down = proxy.wait_logged(|l| l.contains(" is down"));
    assert_eq!(
        down,
        format!(
            "proxy: backend redis ({}) is down: check failed 2 times in a row: {reason}",
            backend.addr
        )
    );
    right.store(true, Ordering::SeqCst);
    let up = proxy.wait_logged(|l| l.contains(" is up"));
    assert!(up.ends_with("is up: check passed 2 times in a row"), "{up}");
}

#[test]
fn a_prefix_check_follows_a_backend_that_answers_right_then_wrong_then_right() {
    send_expect_follows_the_answers(
        "expect = \"+PONG\"",
        "expected \"+PONG\" got \"-ERR\\r\\n\"",
    );
}

#[test]
fn a_pattern_check_follows_a_backend_that_answers_right_then_wrong_then_right() {
    send_expect_follows_the_answers(
        "expect-regex = \"^\\\\+P[A-Z]+\\\\r\\\\n$\"",
        "expected /^\\+P[A-Z]+\\r\\n$/ got \"-ERR\\r\\n\" and the connection closed",
    );
}

#[test]
fn a_check_whose_backend_never_answers_times_out_and_takes_it_down() {
    // Accepts, reads, and never answers: the check's own reset ends it.
    let mute = Backend::spawn(|mut s: TcpStream| {
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let other = Backend::echo();
    let text = format!(
        "{}{}",
        table(
            "mute",
            mute.addr,
            "check-interval = \"200ms\"\ncheck-timeout = \"100ms\"\ncheck-send = \"PING\\\\r\\\\n\"\ncheck-expect = \"+PONG\""
        ),
        table("b", other.addr, ""),
    );
    let (_dir, proxy) = proxy_with(&text, &[]);
    // As in HAProxy, a backend starts up, and a failure before any check
    // has passed takes it down at once.
    let down = proxy.wait_logged(|l| l.contains(" is down"));
    assert_eq!(
        down,
        format!(
            "proxy: backend mute ({}) is down: check failed 1 time before any passed: timed out after 100ms",
            mute.addr
        )
    );
    all_served(&proxy, 5, "mute down");
    assert_eq!(other.accepted(), 5);
}

#[test]
fn a_backend_down_by_its_check_gets_no_client_with_any_balancing_method() {
    let clients = Arc::new(AtomicUsize::new(0));
    let failing = scripted(Arc::new(AtomicBool::new(false)), Arc::clone(&clients));
    let other = Backend::echo();
    for method in ["round-robin", "least-connections", "source-hash"] {
        let text = format!(
            "{}{}",
            table(
                "failing",
                failing.addr,
                "check-interval = \"50ms\"\ncheck-send = \"PING\\\\r\\\\n\"\ncheck-expect = \"+PONG\""
            ),
            table("b", other.addr, ""),
        );
        // Two workers: one checks, and both leave the backend out.
        let (_dir, mut proxy) = proxy_with(&text, &["--balance", method, "--workers", "2"]);
        proxy.wait_logged(|l| l.contains("backend failing ") && l.contains(" is down"));
        let before = other.accepted();
        all_served(&proxy, 20, method);
        assert_eq!(other.accepted() - before, 20, "{method}");
        assert_eq!(clients.load(Ordering::SeqCst), 0, "{method}");
        let st = proxy.wait_idle();
        assert_eq!(st.get("connect_failures"), 0, "{method}: {st:?}");
        assert!(st.get("check_failures") >= 1, "{method}: {st:?}");
        let downs = proxy
            .log()
            .iter()
            .filter(|l| l.contains(" is down"))
            .count();
        assert_eq!(downs, 1, "one worker checks: {:?}", proxy.log());
    }
}

#[test]
fn with_no_check_configured_the_proxy_makes_no_check_and_no_wakeup() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let text = format!("{}{}", table("a", a.addr, ""), table("b", b.addr, ""));
    let (_dir, mut proxy) = proxy_with(&text, &[]);
    all_served(&proxy, 10, "no checks");
    let first = proxy.wait_idle();
    // Every socket and connect call was a client's: two a backend connect.
    // uring: a linked SOCKET→CONNECT is two submissions, not system calls;
    // the lead says what sys_connect counts there and adds its equality.
    if crate::util::ENGINE == "epoll" {
        assert_eq!(
            first.get("sys_connect"),
            2 * first.get("accepted"),
            "{first:?}"
        );
    }
    thread::sleep(Duration::from_millis(100));
    let before = proxy.stats();
    thread::sleep(Duration::from_millis(500));
    let after = proxy.stats();
    assert_eq!(after.get("checks"), 0, "{after:?}");
    assert_eq!(after.get("check_failures"), 0, "{after:?}");
    assert_eq!(
        after.waits(),
        before.waits(),
        "an idle proxy with no check woke up: {before:?} then {after:?}"
    );
    assert_eq!(
        after.get("uring_submissions"),
        before.get("uring_submissions"),
        "an idle proxy with no check submitted work: {before:?} then {after:?}"
    );
    assert_eq!(after.get("sys_connect"), first.get("sys_connect"));
    assert_eq!(a.accepted() + b.accepted(), 10);
}

/// A check round under way when a reload drops it ends with a reset, as a
/// finished round does: no socket of the proxy is left behind in
/// FIN_WAIT or TIME_WAIT towards the backend (at one a reload, a busy
/// reload script would fill the port range of a check target).
#[test]
fn a_round_a_reload_drops_is_closed_with_a_reset() {
    let mute = Backend::spawn(|mut s: TcpStream| {
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    // A reply is waited for: the round stays under way.
    let checked = "check-interval = \"10s\"\ncheck-send = \"PING\"\ncheck-expect = \"+PONG\"";
    let head = "listen = \"127.0.0.1\"\nport = 0\n";
    let (_dir, path) = config_file(&format!("{head}{}", table("mute", mute.addr, checked)));
    let mut proxy = Proxy::start(&["-c", &path]);
    crate::util::wait_until("the check's connect", || mute.accepted() > 0);
    std::fs::write(&path, format!("{head}{}", table("mute", mute.addr, ""))).expect("rewrite");
    let line = crate::reload::reload(&mut proxy);
    assert!(line.contains("(check removed)"), "{line}");
    use testkit::proc::{tcp_sockets, TcpState};
    crate::util::wait_until("no proxy socket to the backend left", || {
        let left: Vec<_> = tcp_sockets("self")
            .expect("/proc/net/tcp")
            .into_iter()
            .filter(|s| s.remote == mute.addr && s.state != TcpState::Listen)
            .collect();
        left.is_empty()
    });
}
