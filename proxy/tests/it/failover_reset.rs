//! Failover on a reset before any byte: a backend that accepts and resets
//! before a client byte reached it, and before it sent one, is a failed
//! try like a refused connect — the client, what it sent, its FIN and the
//! PROXY header go to the next backend, once. A backend that read a client
//! byte, or sent one, before its reset is not retried: the client gets
//! what came and then the reset.

use crate::failover::{exchange, recorder, reset_after_three_tries};
use crate::util::{connect, read_to_end, reset, wait_until, Backend, Gate, Proxy, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A backend that runs `before` on each connection and then closes it with
/// a reset; `resets` counts the resets done.
struct Resetting {
    backend: Backend,
    resets: Arc<AtomicUsize>,
}

impl Resetting {
    fn spawn(before: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> Resetting {
        let resets = Arc::new(AtomicUsize::new(0));
        let done = Arc::clone(&resets);
        let backend = Backend::spawn(move |mut s| {
            before(&mut s);
            reset(s);
            done.fetch_add(1, Ordering::SeqCst);
        });
        Resetting { backend, resets }
    }

    /// One that resets as soon as it has accepted, before reading.
    fn at_once() -> Resetting {
        Resetting::spawn(|_| {})
    }

    fn resets(&self) -> usize {
        self.resets.load(Ordering::SeqCst)
    }

    fn addr(&self) -> String {
        self.backend.addr.to_string()
    }
}

/// Connects, waits until the proxy's backend connect for it has been
/// answered — by a reset, or by `served` accepting — and returns the
/// client, so that what it sends next cannot have reached the backend
/// that reset.
fn connect_after_answer(proxy: &Proxy, bad: &Resetting, served: &Backend) -> TcpStream {
    let (resets, accepted) = (bad.resets(), served.accepted());
    let s = connect(proxy.addr);
    wait_until("the backend connect answered", || {
        bad.resets() > resets || served.accepted() > accepted
    });
    s
}

/// With one backend resetting every connection at once, every balancing
/// method serves every client whole, each byte once: the reset is one more
/// failed try, counted and logged like a refused connect.
#[test]
fn a_backend_resetting_before_any_byte_costs_no_client_with_any_method() {
    let echo = Backend::echo();
    let bad = Resetting::at_once();
    for method in ["round-robin", "least-connections", "source-hash"] {
        for order in [
            [bad.addr(), echo.addr.to_string()],
            [echo.addr.to_string(), bad.addr()],
        ] {
            let (a, b) = (order[0].as_str(), order[1].as_str());
            let mut proxy = Proxy::start_to_all(&[a, b], &["--balance", method]);
            let before = bad.resets();
            for i in 0..6 {
                let mut s = connect_after_answer(&proxy, &bad, &echo);
                let msg = format!("client {i} via {method}");
                s.write_all(msg.as_bytes()).expect("write");
                s.shutdown(Shutdown::Write).expect("FIN");
                let got = read_to_end(&mut s);
                assert_eq!(got, msg.as_bytes(), "{method} {order:?}: client {i}");
            }
            let st = proxy.wait_idle();
            let resets = (bad.resets() - before) as u64;
            assert_eq!(st.get("errors"), 0, "{method}: {st:?}");
            assert_eq!(st.get("refused"), 0, "{method}: {st:?}");
            assert_eq!(st.get("retries"), resets, "{method}: {st:?}");
            assert_eq!(st.get("connect_failures"), resets, "{method}: {st:?}");
            if method == "round-robin" {
                assert!(resets > 0, "round-robin never tried the resetting backend");
            }
            if resets > 0 {
                // Logged as a reset before any byte, or, when the reset came
                // with the connect's completion, as a failed connect.
                let bad_tried = format!("backend {} failed for client ", bad.addr());
                let line = proxy.wait_logged(|l| l.contains(&bad_tried));
                assert!(line.contains("; trying "), "{line}");
            }
        }
    }
}

/// With `--proxy-protocol`, the backend that answers after a reset gets
/// the header once and the client's bytes once — also when the backend
/// that reset had the whole header already.
#[test]
fn after_a_reset_the_proxy_header_and_client_bytes_arrive_once() {
    for version in ["v1", "v2"] {
        let bad = Resetting::at_once();
        let (good, rx) = recorder();
        let mut proxy = Proxy::start_to_all(
            &[&bad.addr(), &good.addr.to_string()],
            &["--proxy-protocol", version],
        );
        let mut s = connect_after_answer(&proxy, &bad, &good);
        s.write_all(b"client bytes").expect("write");
        s.shutdown(Shutdown::Write).expect("FIN");
        assert_eq!(read_to_end(&mut s), b"ok", "{version}");
        let got = rx.recv_timeout(WAIT).expect("the recorder's report");
        assert_one_header(&got, version, b"client bytes");
        let st = proxy.wait_idle();
        assert_eq!(st.get("retries"), 1, "{version}: {st:?}");
        assert_eq!(bad.resets(), 1);
    }
}

/// `got` is exactly one PROXY header of `version` followed by `rest`.
fn assert_one_header(got: &[u8], version: &str, rest: &[u8]) {
    let text = String::from_utf8_lossy(got).into_owned();
    let header = if version == "v1" {
        assert!(
            text.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
            "{text:?}"
        );
        assert_eq!(text.matches("PROXY ").count(), 1, "{text:?}");
        text.find("\r\n").map_or(0, |i| i + 2)
    } else {
        let sig = b"\r\n\r\n\0\r\nQUIT\n";
        assert!(got.starts_with(sig), "{got:?}");
        assert_eq!(got.windows(sig.len()).filter(|w| w == sig).count(), 1);
        16 + 12
    };
    assert_eq!(&got[header..], rest, "{text:?}");
}

/// The proxy holds the client's bytes and FIN when it finds the reset (it
/// was stopped while they came, and the backend reset after reading the
/// PROXY header): the write that finds the reset delivered nothing, so
/// header, bytes and FIN all go to the next backend, once each — and the
/// old socket's reset edge, in the same batch, is not taken for the new
/// one's.
#[test]
fn client_bytes_and_fin_held_when_the_reset_is_found_go_to_the_next_backend() {
    let gate = Gate::new();
    let open = gate.clone();
    let bad = Resetting::spawn(move |s| {
        // The whole v1 header, then nothing more is read.
        let mut byte = [0u8; 1];
        let mut header = Vec::new();
        while !header.ends_with(b"\r\n") && s.read_exact(&mut byte).is_ok() {
            header.push(byte[0]);
        }
        gate.wait();
    });
    let (good, rx) = recorder();
    let mut proxy = Proxy::start_to_all(
        &[&bad.addr(), &good.addr.to_string()],
        &["--proxy-protocol", "v1"],
    );
    let mut s = connect(proxy.addr);
    wait_until("the resetting backend's accept", || {
        bad.backend.accepted() == 1
    });
    proxy.signal("STOP");
    let pid = proxy.pid();
    wait_until("the proxy stopped", || is_stopped(pid));
    s.write_all(b"held bytes").expect("write");
    s.shutdown(Shutdown::Write).expect("FIN");
    open.open();
    wait_until("the reset", || bad.resets() == 1);
    proxy.signal("CONT");
    let mut reply = Vec::new();
    let got = s.read_to_end(&mut reply);
    assert!(
        got.is_ok() && reply == b"ok",
        "{got:?} {reply:?}; stderr: {:?}",
        proxy.log()
    );
    let got = rx.recv_timeout(WAIT).expect("the recorder's report");
    assert_one_header(&got, "v1", b"held bytes");
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
}

/// Whether process `pid` is stopped (state `T` in `/proc/PID/stat`).
fn is_stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('T'))
}

/// A client that sent only its FIN before the backend reset has that FIN
/// passed on to the next backend: the stream it gets there is empty, and
/// complete.
#[test]
fn a_client_fin_passed_before_the_reset_is_passed_again() {
    let bad = Resetting::at_once();
    let (good, rx) = recorder();
    let mut proxy = Proxy::start_to_all(&[&bad.addr(), &good.addr.to_string()], &[]);
    let mut s = connect(proxy.addr);
    s.shutdown(Shutdown::Write).expect("FIN");
    assert_eq!(read_to_end(&mut s), b"ok");
    assert_eq!(rx.recv_timeout(WAIT).expect("the recorder's report"), b"");
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 1, "{st:?}");
    assert_eq!(bad.resets(), 1);
}

/// With every backend resetting before any byte, each is tried once (up to
/// `--connect-retries`) and then the client is reset.
#[test]
fn with_every_backend_resetting_the_client_is_reset_after_each_was_tried() {
    let bad: Vec<Resetting> = (0..3).map(|_| Resetting::at_once()).collect();
    let addrs: Vec<String> = bad.iter().map(Resetting::addr).collect();
    let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let mut proxy = Proxy::start_to_all(&addrs, &[]);
    // A reset that comes with the connect's completion is seen as a failed
    // connect ("Connection reset by peer"); one after it, as a reset
    // before any byte. Either way it is one failed try, logged.
    reset_after_three_tries(&mut proxy);
    assert!(bad.iter().all(|b| b.resets() == 1), "each tried once");
}

/// A backend that read a client byte before its reset is not retried: the
/// client is reset, and the other backend never sees it.
#[test]
fn a_backend_that_read_a_byte_before_its_reset_is_not_retried() {
    let bad = Resetting::spawn(|s| {
        let mut byte = [0u8; 1];
        let _ = s.read_exact(&mut byte);
    });
    let echo = Backend::echo();
    let mut proxy = Proxy::start_to_all(&[&bad.addr(), &echo.addr.to_string()], &[]);
    match exchange(proxy.addr, b"hello") {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(got) => panic!("expected a reset, got {got:?}"),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 0, "{st:?}");
    assert_eq!(echo.accepted(), 0);
}

/// A backend that sent a byte before its reset is not retried: the client
/// gets that byte, then the reset.
#[test]
fn a_backend_that_sent_a_byte_before_its_reset_is_not_retried() {
    let bad = Resetting::spawn(|s| {
        let _ = s.write_all(b"!");
        // Its reset must not overtake the byte: wait for the client's.
        let mut byte = [0u8; 1];
        let _ = s.read_exact(&mut byte);
    });
    let echo = Backend::echo();
    let mut proxy = Proxy::start_to_all(&[&bad.addr(), &echo.addr.to_string()], &[]);
    let mut s = connect(proxy.addr);
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("the backend's byte");
    assert_eq!(&b, b"!");
    s.write_all(b"x").expect("write");
    match s.read(&mut b) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset, got {other:?}"),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 0, "{st:?}");
    assert_eq!(echo.accepted(), 0);
}

/// A backend that ends its stream (a FIN) before any byte is not retried:
/// an empty reply may be its answer, and the client gets it.
#[test]
fn a_backend_that_closes_before_any_byte_is_not_retried() {
    let closing = Backend::spawn(drop);
    let echo = Backend::echo();
    let mut proxy = Proxy::start_to_all(&[&closing.addr.to_string(), &echo.addr.to_string()], &[]);
    let mut s = connect(proxy.addr);
    assert_eq!(read_to_end(&mut s), b"", "the backend's empty reply");
    drop(s);
    let st = proxy.wait_idle();
    assert_eq!(st.get("retries"), 0, "{st:?}");
    assert_eq!(echo.accepted(), 0);
}

/// A backend that accepts every connection and resets it before any byte
/// reaches `--fall` failures in a row like a refusing one, and is marked
/// down: its connects "succeed", but each reset continues the streak
/// their success would otherwise have cleared.
#[test]
fn a_backend_that_always_resets_before_any_byte_is_marked_down_after_fall() {
    let echo = Backend::echo();
    let bad = Resetting::at_once();
    let (a, b) = (bad.addr(), echo.addr.to_string());
    let args = ["--fall", "2", "--fail-timeout", "1h"];
    let mut proxy = Proxy::start_to_all(&[a.as_str(), b.as_str()], &args);
    for i in 0..8 {
        let mut s = connect_after_answer(&proxy, &bad, &echo);
        let msg = format!("client {i}");
        s.write_all(msg.as_bytes()).expect("write");
        s.shutdown(Shutdown::Write).expect("FIN");
        assert_eq!(read_to_end(&mut s), msg.as_bytes(), "client {i}");
    }
    let line = proxy.wait_logged(|l| l.contains("is down after"));
    assert!(
        line.contains(&a) && line.contains("2 failed connects"),
        "{line}"
    );
    // Down for an hour: the later clients all went straight to the echo.
    let st = proxy.wait_idle();
    assert_eq!(bad.resets(), 2, "{st:?}");
    assert_eq!(st.get("retries"), 2, "{st:?}");
}
