//! The proxy's life as an operator sees it: graceful shutdown and its
//! drain timeout, stats on SIGUSR1, the metrics endpoint, several workers
//! on one port, and balancing over several backends.

use crate::util::{
    connect, echo_byte, http_get, is_listening, pattern, prom_value, read_to_end, settled_switches,
    switches_of, wait_until, Backend, Gate, Proxy, Stats, WAIT,
};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

/// Sends `data`, half-closes, and returns everything that came back.
fn round_trip(proxy: &Proxy, data: &[u8]) -> Vec<u8> {
    let mut s = connect(proxy.addr);
    let mut r = s.try_clone().expect("clone");
    let reader = thread::spawn(move || read_to_end(&mut r));
    s.write_all(data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    reader.join().expect("reader")
}

#[test]
fn sigterm_lets_an_in_flight_transfer_finish_and_refuses_new_clients() {
    const TOTAL: usize = 8 << 20;
    const FIRST: usize = 1 << 20;
    let gate = Gate::new();
    let (half_tx, half_rx) = mpsc::channel();
    let half_tx = Mutex::new(half_tx);
    let g = gate.clone();
    // Echoes the first MiB, then waits for the gate before echoing the
    // rest: the transfer is certainly in flight when SIGTERM arrives.
    let backend = Backend::spawn(move |mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = vec![0u8; 64 << 10];
        let (mut echoed, mut paused) = (0, false);
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
            echoed += n;
            if !paused && echoed >= FIRST {
                paused = true;
                let _ = half_tx.lock().expect("tx").send(());
                if !g.wait() {
                    return;
                }
            }
        }
        let _ = s.shutdown(Shutdown::Write);
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--drain-timeout", "60s"]);
    let data = Arc::new(pattern(3, TOTAL));
    let client = connect(proxy.addr);
    let writer = {
        let mut w = client.try_clone().expect("clone");
        let data = Arc::clone(&data);
        thread::spawn(move || {
            w.write_all(&data).expect("client write");
            w.shutdown(Shutdown::Write).expect("shutdown");
        })
    };
    let reader = {
        let mut r = client.try_clone().expect("clone");
        thread::spawn(move || read_to_end(&mut r))
    };
    half_rx
        .recv_timeout(WAIT)
        .expect("backend echoed the first MiB");

    proxy.signal("TERM");
    proxy
        .wait_line(|l| l.starts_with("proxy: shutting down"))
        .expect("shutdown line after SIGTERM");
    // The listener closes at once; a new client is refused.
    wait_until("the listener to close", || !is_listening(proxy.addr));
    match TcpStream::connect(proxy.addr) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a new client connected after SIGTERM"),
    }
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "the proxy exited with a transfer in flight"
    );

    gate.open();
    writer.join().expect("writer");
    let back = reader.join().expect("reader");
    assert_eq!(
        back.len(),
        TOTAL,
        "the drained transfer lost or added bytes"
    );
    assert!(back == *data, "the drained transfer came back altered");

    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status after draining");
    let last = Stats::parse(&proxy.wait_logged(|l| l.starts_with("stats:")));
    assert_eq!(last.get("accepted"), 1, "{last:?}");
    assert_eq!(last.get("closed"), 1, "{last:?}");
    assert_eq!(
        last.get("bytes_client_to_backend"),
        TOTAL as u64,
        "{last:?}"
    );
    assert_eq!(
        last.get("bytes_backend_to_client"),
        TOTAL as u64,
        "{last:?}"
    );
}

#[test]
fn drain_timeout_closes_idle_connections_and_exits_zero() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--drain-timeout", "300ms"]);
    let mut held = connect(proxy.addr);
    echo_byte(&mut held, b'h');

    proxy.signal("TERM");
    let status = proxy.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after the drain timeout"
    );
    let mut b = [0u8; 1];
    let n = held
        .read(&mut b)
        .expect("the held client sees EOF, not a reset or a hang");
    assert_eq!(n, 0, "the held client got bytes at shutdown");
    let last = Stats::parse(&proxy.wait_logged(|l| l.starts_with("stats:")));
    assert_eq!(last.get("closed"), 1, "{last:?}");
    assert_eq!(last.get("active"), 0, "{last:?}");
}

#[test]
fn sigusr1_prints_stats_and_keeps_serving() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    assert_eq!(round_trip(&proxy, b"one"), b"one");
    let s = proxy.stats();
    assert_eq!(s.get("accepted"), 1, "{s:?}");
    assert_eq!(s.get("bytes_client_to_backend"), 3, "{s:?}");
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "SIGUSR1 stopped the proxy"
    );
    assert_eq!(round_trip(&proxy, b"two!"), b"two!");
    let s = proxy.stats();
    assert_eq!(s.get("accepted"), 2, "{s:?}");
    assert_eq!(s.get("bytes_client_to_backend"), 7, "{s:?}");
}

#[test]
fn metrics_endpoint_serves_counters_that_match_the_traffic() {
    const SENT: usize = 100_000;
    let backend = Backend::echo();
    let proxy = Proxy::start_to(backend.addr, &["--metrics", "127.0.0.1:0"]);
    let addr = proxy.metrics_addr();
    assert_ne!(addr.port(), 0, "the metrics line shows port 0");

    let data = pattern(5, SENT);
    assert!(
        round_trip(&proxy, &data) == data,
        "round trip altered bytes"
    );

    let (status, body) = http_get(addr, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "status {status:?}");
    let value = |name: &str| {
        prom_value(&body, name).unwrap_or_else(|| panic!("no {name} in metrics:\n{body}"))
    };
    assert!(body.contains("# TYPE proxy_accepted counter\n"), "{body}");
    assert_eq!(value("proxy_accepted"), 1);
    if crate::util::ENGINE == "uring" {
        // Reads are submissions under uring, not read(2) calls.
        assert!(value("proxy_uring_submissions") > 0, "{body}");
        assert!(value("proxy_uring_completions") > 0, "{body}");
        assert!(value("proxy_sys_uring_enter") > 0, "{body}");
    } else {
        assert!(value("proxy_sys_read") > 0);
    }
    assert_eq!(value("proxy_bytes_client_to_backend"), SENT as u64);
    assert_eq!(value("proxy_bytes_backend_to_client"), SENT as u64);
}

#[test]
fn two_workers_share_the_port_and_both_serve() {
    const N: usize = 50;
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--workers", "2"]);
    let pid = proxy.pid();
    // Both workers have started and gone to sleep in epoll_wait.
    settled_switches(pid);
    let before = [switches_of(pid, "worker-0"), switches_of(pid, "worker-1")];

    let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..N)
        .map(|i| {
            let mut s = connect(proxy.addr);
            let msg = format!("connection {i}\n").into_bytes();
            s.write_all(&msg).expect("write");
            s.shutdown(Shutdown::Write).expect("shutdown");
            (s, msg)
        })
        .collect();
    for (i, (s, msg)) in conns.iter_mut().enumerate() {
        assert_eq!(read_to_end(s), *msg, "connection {i} came back altered");
    }
    let s = proxy.wait_stats("all closed", |s| s.get("closed") == N as u64);
    assert_eq!(s.get("accepted"), N as u64, "{s:?}");

    // A worker only wakes up for its own connections: each must have woken.
    let after = [switches_of(pid, "worker-0"), switches_of(pid, "worker-1")];
    for w in 0..2 {
        assert!(
            after[w] > before[w],
            "worker-{w} never woke up: it served none of {N} connections"
        );
    }
}

#[test]
fn round_robin_alternates_between_two_backends() {
    /// Reads one byte, answers with `tag`, closes.
    fn tagged(tag: u8) -> impl Fn(TcpStream) + Send + Sync + 'static {
        move |mut s| {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).is_ok() {
                let _ = s.write_all(&[tag]);
            }
        }
    }
    let a = Backend::spawn(tagged(b'A'));
    let b = Backend::spawn(tagged(b'B'));
    let (a_addr, b_addr) = (a.addr.to_string(), b.addr.to_string());
    let proxy = Proxy::start(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-b",
        &a_addr,
        "-b",
        &b_addr,
        "--balance",
        "round-robin",
    ]);
    let tags: Vec<u8> = (0..4).flat_map(|_| round_trip(&proxy, b"?")).collect();
    assert_eq!(
        tags, b"ABAB",
        "backends in the order the connections reached them"
    );
    assert_eq!(a.accepted(), 2);
    assert_eq!(b.accepted(), 2);
}

/// When the drain timeout cuts a stream the client is still owed bytes
/// of, the client must see a reset, never a clean EOF after a prefix
/// (which would make the cut stream look complete).
#[test]
fn drain_timeout_resets_a_client_still_owed_bytes() {
    const LEN: usize = 64 << 20;
    let backend = Backend::spawn(|mut s| {
        let data = pattern(21, LEN);
        let _ = s.write_all(&data); // stalls: the client is not reading yet
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--drain-timeout", "300ms"]);
    let mut client = connect(proxy.addr);
    // Wait until the proxy holds bytes it cannot pass on.
    proxy.wait_stats("bytes held for the client", |s| {
        s.held() > 0 && s.get("bytes_backend_to_client") > 0
    });
    proxy.signal("TERM");
    assert_eq!(proxy.wait_exit().code(), Some(0));
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended_by_reset = loop {
        match client.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => got += n,
            Err(e) => {
                assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "client read hung");
                break true;
            }
        }
    };
    assert!(
        got < LEN,
        "the whole stream fitted in the kernel; the test proves nothing"
    );
    assert!(
        ended_by_reset,
        "a cut stream ended with a clean EOF after {got} of {LEN} bytes"
    );
}
