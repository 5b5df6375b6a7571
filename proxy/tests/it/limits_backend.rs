//! Per-backend limits through the real proxy: slow start (a recovered
//! backend's weight ramps up), `max-connections` with the queue in front
//! of it (clients wait, are served in order, and past `--queue` or
//! `--queue-timeout` are reset and counted), and what new clients get
//! while every backend is down (`--all-down`). Counts, never times; bad
//! values are in `bad_input`.

use crate::cli::config_file;
use crate::failover::{all_served, exchange};
use crate::util::{connect, echo_byte, echo_conn, wait_until, Backend, Proxy};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use testkit::fault::refusing_addr;

/// A `[[backend]]` table for `addr` with the extra `keys`.
fn table(addr: SocketAddr, keys: &str) -> String {
    format!("[[backend]]\naddress = \"{addr}\"\n{keys}\n")
}

/// The proxy on 127.0.0.1 port 0 with the config `text` and `extra`
/// options (the config file lives as long as the proxy needs it: it is
/// read at start).
fn start(text: &str, extra: &[&str]) -> Proxy {
    let (_dir, path) = config_file(text);
    let mut args = vec!["-c", path.as_str(), "-l", "127.0.0.1", "-p", "0"];
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

/// Whether `s` was reset by the proxy: its next read fails with a reset
/// (or sees the end) instead of an answer.
fn was_reset(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"?");
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
    }
}

/// A client through `proxy` whose connection is relayed end to end (it
/// got one byte echoed), held open.
fn held(proxy: &Proxy, b: u8) -> TcpStream {
    let mut s = connect(proxy.addr);
    echo_byte(&mut s, b);
    s
}

/// One echo backend with `max-connections = 1` behind the proxy (with
/// `extra` options), and a client through it holding that connection.
fn limited_to_one(extra: &[&str]) -> (Backend, Proxy, TcpStream) {
    let backend = Backend::echo();
    let proxy = start(&table(backend.addr, "max-connections = 1"), extra);
    let first = held(&proxy, b'0');
    (backend, proxy, first)
}

/// A client that sends `b` through `proxy` (where it is to wait).
fn sending(proxy: &Proxy, b: u8) -> TcpStream {
    let mut s = connect(proxy.addr);
    s.write_all(&[b]).expect("write while queued");
    s
}

/// Two backends come back at once after being marked down: the one with
/// a slow start of an hour is early in its ramp and gets almost no
/// client, the one with a slow start of 300ms has finished its ramp and
/// gets its full share, equal to the backend that never went down.
#[test]
fn slow_start_gives_a_recovered_backend_few_clients_early_in_its_ramp_and_its_share_after() {
    let steady = Backend::echo();
    let (slow_addr, quick_addr) = (refusing_addr(), refusing_addr());
    let text = [
        table(steady.addr, ""),
        table(slow_addr, "slow-start = \"1h\""),
        table(quick_addr, "slow-start = \"300ms\""),
    ]
    .concat();
    let mut proxy = start(&text, &["--fall", "1", "--fail-timeout", "100ms"]);
    // The first clients find both dead (each then is down) and fail over.
    all_served(&proxy, 3, "marking");
    assert_eq!(proxy.stats().get("connect_failures"), 2);
    let slow = Backend::spawn_on(&slow_addr.to_string(), echo_conn);
    let quick = Backend::spawn_on(&quick_addr.to_string(), echo_conn);
    // Tried again at the least weight, each is back at its first success.
    wait_until("both backends are back", || {
        all_served(&proxy, 1, "recovering");
        slow.accepted() > 0 && quick.accepted() > 0
    });
    proxy.wait_logged(|l| l == format!("proxy: backend {slow_addr} is up again"));
    proxy.wait_logged(|l| l == format!("proxy: backend {quick_addr} is up again"));
    // Past the short ramp; the long one has barely started.
    std::thread::sleep(Duration::from_millis(400));
    let before = [steady.accepted(), slow.accepted(), quick.accepted()];
    all_served(&proxy, 60, "ramping");
    let got: Vec<usize> = [steady.accepted(), slow.accepted(), quick.accepted()]
        .iter()
        .zip(before)
        .map(|(now, then)| now - then)
        .collect();
    // By weight alone each would get 20. Early in an hour's ramp the
    // weight is 1/100 of the others'.
    assert!(got[1] <= 2, "the slow starter got {got:?}");
    assert!(got[2] >= 28 && got[0] >= 28, "full shares: {got:?}");
    let st = proxy.wait_idle();
    assert_eq!(st.get("refused"), 0, "{st:?}");
}

/// `max-connections = 2`: with two clients held, a third is accepted and
/// waits (queued, no backend connection), then is served with its bytes
/// once one of the two closes.
#[test]
fn a_client_beyond_max_connections_waits_and_is_served_when_one_closes() {
    let backend = Backend::echo();
    let text = table(backend.addr, "max-connections = 2");
    let mut proxy = start(&text, &["--queue-timeout", "60s"]);
    let first = held(&proxy, b'1');
    let _second = held(&proxy, b'2');
    let mut third = connect(proxy.addr);
    third.write_all(b"waited").expect("write while queued");
    proxy.wait_stats("the third client queued", |s| s.get("queued") == 1);
    assert_eq!(
        backend.accepted(),
        2,
        "the queued client has no backend yet"
    );
    drop(first);
    let mut got = [0u8; 6];
    third.read_exact(&mut got).expect("the echo after the wait");
    assert_eq!(&got, b"waited");
    assert_eq!(backend.accepted(), 3);
    let st = proxy.stats();
    assert_eq!(st.get("queued"), 0, "{st:?}");
    assert_eq!(st.get("queue_timeouts") + st.get("queue_full"), 0, "{st:?}");
}

/// Clients wait in the order they came: with one connection allowed and
/// three waiting, each is served in turn as the one before it closes.
#[test]
fn queued_clients_are_served_in_the_order_they_came() {
    let (_backend, mut proxy, mut current) = limited_to_one(&["--queue-timeout", "60s"]);
    let mut waiting = Vec::new();
    for i in 1..=3u8 {
        waiting.push(sending(&proxy, b'0' + i));
        proxy.wait_stats("one more queued", |s| s.get("queued") == u64::from(i));
    }
    for (i, mut next) in waiting.into_iter().enumerate() {
        drop(current);
        let mut b = [0u8; 1];
        next.read_exact(&mut b).expect("served in turn");
        assert_eq!(b[0], b'1' + i as u8, "out of order");
        current = next;
    }
    drop(current);
    assert_eq!(proxy.wait_idle().get("queued"), 0);
}

/// `--queue 1`: with the backend at its limit and one client waiting, the
/// next is reset at once and counted; the waiting one is still served.
#[test]
fn a_client_beyond_the_queue_is_reset_and_counted() {
    let (backend, mut proxy, first) = limited_to_one(&["--queue", "1", "--queue-timeout", "60s"]);
    let mut second = sending(&proxy, b'2');
    proxy.wait_stats("the second client queued", |s| s.get("queued") == 1);
    let mut third = connect(proxy.addr);
    assert!(was_reset(&mut third), "the third client was not reset");
    let st = proxy.wait_stats("queue_full counted", |s| s.get("queue_full") == 1);
    assert_eq!(st.get("queued"), 1, "{st:?}");
    drop(first);
    let mut b = [0u8; 1];
    second
        .read_exact(&mut b)
        .expect("the queued client is served");
    assert_eq!(b[0], b'2');
    assert_eq!(backend.accepted(), 2, "the reset client never reached it");
}

/// `--queue-timeout`: a client that waited that long is reset and
/// counted, and the backend never saw it.
#[test]
fn a_client_waiting_past_the_queue_timeout_is_reset_and_counted() {
    let (backend, mut proxy, _first) =
        limited_to_one(&["--queue-timeout", "100ms", "--log-connections"]);
    let mut second = sending(&proxy, b'2');
    let mut b = [0u8; 1];
    match second.read(&mut b) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset after the queue timeout, got {other:?}"),
    }
    // The count comes before the close, at the end of the worker's
    // batch: a look between the two sees the client still queued.
    proxy.wait_stats("the timeout counted and the client gone", |s| {
        s.get("queue_timeouts") == 1 && s.get("queued") == 0 && s.get("active") == 1
    });
    assert_eq!(backend.accepted(), 1);
    proxy.wait_logged(|l| l.contains("-> (queued) closed (queue timeout"));
}

/// `max-connections` holds over several workers: the count is shared, so
/// two workers never take the backend past it, and a client queued in
/// either is served once the other's client closes (the queue polls for
/// room freed elsewhere).
#[test]
fn max_connections_is_shared_by_the_workers() {
    let (backend, mut proxy, first) = limited_to_one(&["--workers", "2", "--queue-timeout", "60s"]);
    let mut waiting: Vec<TcpStream> = (0..4).map(|i| sending(&proxy, b'a' + i)).collect();
    proxy.wait_stats("four queued", |s| s.get("queued") == 4);
    assert_eq!(backend.accepted(), 1);
    drop(first);
    // Each is served once the one before it closes, whichever worker has it.
    for _ in 0..4 {
        let mut served = None;
        wait_until("a queued client served", || {
            for (i, s) in waiting.iter_mut().enumerate() {
                s.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 1];
                let got = s.read(&mut b);
                s.set_nonblocking(false).expect("blocking");
                if let Ok(1) = got {
                    served = Some(i);
                    return true;
                }
            }
            false
        });
        let i = served.expect("one was served");
        assert!(
            backend.accepted() <= 5,
            "past the limit: {}",
            backend.accepted()
        );
        drop(waiting.remove(i));
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("queue_timeouts"), 0, "{st:?}");
    assert_eq!(backend.accepted(), 5);
}

/// With the only backend marked down and then back on its port,
/// `least-recently-failed` still sends the next client to it (and it is
/// served), while `reject` resets new clients at once without a connect,
/// counts each, and logs the all-down period once.
#[test]
fn all_down_reject_resets_at_once_where_least_recently_failed_tries_the_backend() {
    for policy in ["least-recently-failed", "reject"] {
        let dead = refusing_addr();
        let text = table(dead, "");
        let mut proxy = start(
            &text,
            &["--fall", "1", "--fail-timeout", "1h", "--all-down", policy],
        );
        assert!(exchange(proxy.addr, b"x").is_err(), "refused and reset");
        let back = Backend::spawn_on(&dead.to_string(), echo_conn);
        let tries: Vec<bool> = (0..3).map(|_| exchange(proxy.addr, b"y").is_ok()).collect();
        let st = proxy.wait_idle();
        if policy == "reject" {
            assert_eq!(tries, [false; 3]);
            assert_eq!(back.accepted(), 0);
            assert_eq!(st.get("rejected_all_down"), 3, "{st:?}");
            assert_eq!(st.get("connect_failures"), 1, "{st:?}");
            let lines = proxy
                .log()
                .iter()
                .filter(|l| l.starts_with("proxy: no backend is up"))
                .count();
            assert_eq!(lines, 1, "logged once: {:?}", proxy.log());
        } else {
            assert_eq!(tries, [true; 3]);
            assert_eq!(back.accepted(), 3);
            assert_eq!(st.get("rejected_all_down"), 0, "{st:?}");
        }
    }
}

/// The queue's poll runs only while a client waits: once the queue has
/// emptied, the worker with an idle connection sleeps for good.
#[test]
fn an_emptied_queue_leaves_the_worker_asleep() {
    let (_backend, mut proxy, first) = limited_to_one(&["--queue-timeout", "60s"]);
    let mut second = sending(&proxy, b'2');
    proxy.wait_stats("the second client queued", |s| s.get("queued") == 1);
    drop(first);
    let mut b = [0u8; 1];
    second.read_exact(&mut b).expect("served");
    proxy.wait_stats("the queue empty", |s| {
        s.get("queued") == 0 && s.get("active") == 1
    });
    crate::util::settled_switches(proxy.pid());
    let before = proxy.stats().waits();
    std::thread::sleep(Duration::from_secs(1));
    let after = proxy.stats().waits();
    assert_eq!(after, before, "the worker woke up with the queue empty");
}

/// A queued client that resets is gone at once, its bytes with it: no
/// answer could reach it, so it neither waits out the queue (or the
/// reset-flush timeout) nor costs a backend connection later. A queued
/// client that only half-closes still waits and is served (its FIN is a
/// half-close, and the answer can still reach it).
#[test]
fn a_queued_client_that_resets_leaves_the_queue_at_once() {
    let (backend, mut proxy, first) = limited_to_one(&["--queue-timeout", "60s"]);
    let gone = sending(&proxy, b'x');
    let mut half = sending(&proxy, b'y');
    half.shutdown(std::net::Shutdown::Write).expect("FIN");
    proxy.wait_stats("two clients queued", |s| s.get("queued") == 2);
    crate::util::reset(gone);
    proxy.wait_stats("the reset client left the queue", |s| s.get("queued") == 1);
    drop(first);
    let mut got = Vec::new();
    half.read_to_end(&mut got)
        .expect("the half-closed client is served");
    assert_eq!(got, b"y");
    let st = proxy.wait_idle();
    assert_eq!(
        backend.accepted(),
        2,
        "no backend connection for the reset one: {st:?}"
    );
    assert_eq!(st.get("reset_flush_timeouts"), 0, "{st:?}");
}
