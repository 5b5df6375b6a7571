//! Failover and passive health: a backend that refuses, cannot be reached
//! or never answers the handshake costs no client — the client, and what
//! it sent meanwhile (PROXY header included), moves to the next backend up
//! (`--connect-retries`), and `--fall` failures in a row keep a backend out
//! for `--fail-timeout`, after which it is tried again.

use crate::util::{connect, is_timeout, read_to_end, Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testkit::fault::{refusing_addr, Blackhole};

/// Sends `msg`, half-closes, and returns what came back, or the error.
pub(crate) fn exchange(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = connect(addr);
    s.write_all(msg)?;
    s.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// `clients` exchanges through `proxy`, each of which must come back whole.
pub(crate) fn all_served(proxy: &Proxy, clients: usize, what: &str) {
    for i in 0..clients {
        let msg = format!("client {i}");
        match exchange(proxy.addr, msg.as_bytes()) {
            Ok(got) => assert_eq!(got, msg.as_bytes(), "{what}: client {i} got {got:?}"),
            Err(e) => {
                // The counters and the log say which way the client went.
                let _ = proxy.try_signal("USR1");
                std::thread::sleep(Duration::from_millis(200));
                panic!("{what}: client {i} failed: {e}; stderr: {}", proxy.tail())
            }
        }
    }
}

/// With one backend refusing, every balancing method serves every client:
/// none is reset while a backend is up.
#[test]
fn a_refusing_backend_costs_no_client_with_any_balancing_method() {
    let echo = Backend::echo();
    let dead = refusing_addr();
    for method in ["round-robin", "least-connections", "source-hash"] {
        for order in [[dead, echo.addr], [echo.addr, dead]] {
            let (a, b) = (order[0].to_string(), order[1].to_string());
            let mut proxy = Proxy::start_to_all(&[&a, &b], &["--balance", method]);
            all_served(&proxy, 20, method);
            let st = proxy.wait_idle();
            assert_eq!(st.get("refused"), 0, "{method}: {st:?}");
            assert_eq!(st.get("errors"), 0, "{method}: {st:?}");
            assert_eq!(st.get("accepted"), 20, "{method}: {st:?}");
            // Every failed try moved its client on.
            assert_eq!(st.get("retries"), st.get("connect_failures"), "{st:?}");
        }
    }
}

/// With every backend dead, each is tried once (up to --connect-retries)
/// and the client is reset; each try is logged with the next one.
#[test]
fn with_every_backend_dead_the_client_is_reset_after_each_was_tried() {
    let dead: Vec<String> = (0..3).map(|_| refusing_addr().to_string()).collect();
    let mut args = vec!["-l", "127.0.0.1", "-p", "0"];
    for d in &dead {
        args.extend(["-b", d.as_str()]);
    }
    let mut proxy = Proxy::start(&args);
    reset_after_three_tries(&mut proxy);
}

/// A client of `proxy`, in front of three failing backends, is reset after
/// each was tried: three failed tries counted and logged, each of the
/// first two with the backend tried next.
pub(crate) fn reset_after_three_tries(proxy: &mut Proxy) {
    let mut s = connect(proxy.addr);
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset, got {other:?}"),
    }
    let st = proxy.wait_stats("the client refused", |s| {
        s.get("refused") == 1 && s.get("active") == 0
    });
    assert_eq!(st.get("connect_failures"), 3, "{st:?}");
    assert_eq!(st.get("retries"), 2, "{st:?}");
    let tries: Vec<String> = proxy
        .log()
        .into_iter()
        .filter(|l| l.contains(" failed for client "))
        .collect();
    assert_eq!(tries.len(), 3, "{tries:?}");
    assert_eq!(
        tries.iter().filter(|l| l.contains("; trying ")).count(),
        2,
        "{tries:?}"
    );
}

/// `--connect-retries 1` tries only the first backend.
#[test]
fn one_connect_try_means_no_failover() {
    let echo = Backend::echo();
    let dead = refusing_addr().to_string();
    let e = echo.addr.to_string();
    let mut proxy = Proxy::start_to_all(&[&dead, &e], &["--connect-retries", "1"]);
    // Round-robin sends the first client to the dead backend.
    assert!(
        exchange(proxy.addr, b"x").map_or(true, |got| got.is_empty()),
        "the first client should not have been served"
    );
    let st = proxy.wait_stats("refused", |s| s.get("refused") == 1 && s.get("active") == 0);
    assert_eq!(st.get("retries"), 0, "{st:?}");
}

/// A backend that drops every SYN is given up after --connect-timeout,
/// and its clients are served by the other backend.
#[test]
fn a_blackholed_backend_fails_over_after_the_connect_timeout() {
    let Some(hole) = Blackhole::new() else {
        eprintln!("skipping: this kernel still completes handshakes to a full accept queue");
        return;
    };
    let echo = Backend::echo();
    let (h, e) = (hole.addr.to_string(), echo.addr.to_string());
    let mut proxy = Proxy::start_to_all(&[&h, &e], &["--connect-timeout", "300ms"]);
    all_served(&proxy, 4, "blackhole");
    let st = proxy.wait_idle();
    assert_eq!(st.get("refused"), 0, "{st:?}");
    assert!(st.get("retries") >= 1, "{st:?}");
    let line = proxy.wait_logged(|l| l.contains("connect timed out"));
    assert!(line.contains(&format!("; trying {e}")), "{line}");
}

/// A backend that reads everything up to the client's FIN, reports it on
/// the channel, and answers "ok".
pub(crate) fn recorder() -> (Backend, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let b = Backend::spawn(move |mut s| {
        let got = read_to_end(&mut s);
        let _ = s.write_all(b"ok");
        let _ = tx.lock().expect("reporter").send(got);
    });
    (b, rx)
}

/// What a client sends while its first backend is failing, and the PROXY
/// header, reach the backend that answers exactly once.
#[test]
fn the_proxy_header_and_early_client_bytes_arrive_once_after_a_retry() {
    let (recorder, rx) = recorder();
    let dead = refusing_addr().to_string();
    let r = recorder.addr.to_string();
    let mut proxy = Proxy::start_to_all(&[&dead, &r], &["--proxy-protocol", "v1"]);
    let mut s = connect(proxy.addr);
    s.write_all(b"early bytes").expect("write");
    s.shutdown(Shutdown::Write).expect("FIN");
    assert_eq!(read_to_end(&mut s), b"ok");
    let got = rx.recv_timeout(WAIT).expect("the backend's report");
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{text:?}"
    );
    assert_eq!(text.matches("PROXY ").count(), 1, "{text:?}");
    assert!(text.ends_with("\r\nearly bytes"), "{text:?}");
    assert_eq!(text.matches("early bytes").count(), 1, "{text:?}");
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 1, "{st:?}");
}

/// `--fall 2` failures in a row mark the dead backend down (logged once):
/// later clients are not sent to it at all, until `--fail-timeout` has
/// passed and it is tried again — and, listening again, is back.
#[test]
fn a_backend_failing_fall_times_is_kept_out_then_tried_again() {
    let echo = Backend::echo();
    let dead = refusing_addr();
    let (d, e) = (dead.to_string(), echo.addr.to_string());
    let mut proxy = Proxy::start_to_all(&[&d, &e], &["--fall", "2", "--fail-timeout", "1s"]);
    all_served(&proxy, 20, "marking");
    let st = proxy.wait_idle();
    assert_eq!(st.get("connect_failures"), 2, "down after two: {st:?}");
    let line = proxy.wait_logged(|l| l.contains(" is down after "));
    assert_eq!(
        line,
        format!(
            "proxy: backend {dead} is down after 2 failed connects in a row; tried again in 1s"
        )
    );
    // Back on its port; after the fail timeout it takes clients again.
    let revived = TcpListener::bind(dead).expect("rebind the dead backend's port");
    let accepted = std::thread::spawn(move || {
        revived.set_nonblocking(false).expect("blocking");
        let (mut s, _) = revived.accept().expect("a client after the fail timeout");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let _ = s.write_all(&buf);
        buf
    });
    std::thread::sleep(Duration::from_millis(1100));
    let deadline = Instant::now() + WAIT;
    while !accepted.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the revived backend never got a client"
        );
        let _ = exchange(proxy.addr, b"again");
    }
    assert_eq!(accepted.join().expect("revived backend"), b"again");
    proxy.wait_logged(|l| l == format!("proxy: backend {dead} is up again"));
}

/// Least-connections counts connections in progress: a backend whose
/// connect hangs holds one, so while the other backend has none open it
/// gets every new client (were the hanging connect not counted, the two
/// would tie and about half the clients would wait on the hole).
#[test]
fn least_connections_counts_connects_in_progress() {
    let Some(hole) = Blackhole::new() else {
        eprintln!("skipping: this kernel still completes handshakes to a full accept queue");
        return;
    };
    let echo = Backend::echo();
    let (h, e) = (hole.addr.to_string(), echo.addr.to_string());
    let mut proxy = Proxy::start_to_all(
        &[&h, &e],
        &["--balance", "least-connections", "--connect-timeout", "10s"],
    );
    // Two clients at once: one to each backend. The echo backend's is
    // served and closed; the hole's stays connecting.
    let quick = |mut c: TcpStream| {
        c.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        c.write_all(b"q").expect("write");
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(1) => None,
            Ok(_) => panic!("closed without an answer"),
            Err(e) if is_timeout(&e) => Some(c),
            Err(e) => panic!("{e}"),
        }
    };
    let waiting: Vec<TcpStream> = [connect(proxy.addr), connect(proxy.addr)]
        .into_iter()
        .filter_map(quick)
        .collect();
    assert_eq!(
        waiting.len(),
        1,
        "one of two clients should wait on the hole"
    );
    proxy.wait_stats("the echo client closed", |s| s.get("active") == 1);
    for i in 0..10 {
        assert!(
            quick(connect(proxy.addr)).is_none(),
            "client {i} was sent to the backend whose connect hangs"
        );
        proxy.wait_stats("the echo client closed", |s| s.get("active") == 1);
    }
    drop(waiting);
}
