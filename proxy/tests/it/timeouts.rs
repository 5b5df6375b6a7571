//! Connect and idle timeouts: a backend that never answers a SYN, and a
//! connection that goes quiet, are closed by the proxy on its own.

use crate::util::{connect, echo_byte, is_timeout, pattern, Backend, Proxy, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[test]
fn a_backend_that_never_answers_is_given_up_after_the_connect_timeout() {
    let Some(hole) = testkit::fault::Blackhole::new() else {
        eprintln!("skipping: this kernel still completes handshakes to a full accept queue");
        return;
    };
    let addr = hole.addr;
    let mut proxy = Proxy::start_to(addr, &["--connect-timeout", "300ms"]);
    let mut client = connect(proxy.addr);
    let who = client.local_addr().expect("client address");
    let mut b = [0u8; 1];
    match client.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("bytes from a backend that never connected"),
        Err(e) => assert!(!is_timeout(&e), "the client was left hanging: {e}"),
    }
    let line = proxy.wait_logged(|l| l.contains("connect timed out"));
    assert_eq!(
        line,
        format!("proxy: backend {addr} failed for client {who}: connect timed out")
    );
    let s = proxy.wait_stats("the pair closed", |s| s.get("active") == 0);
    assert_eq!(s.get("refused"), 1, "{s:?}");
}

#[test]
fn a_quiet_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(
        backend.addr,
        &["--idle-timeout", "300ms", "--log-connections"],
    );
    let mut client = connect(proxy.addr);
    echo_byte(&mut client, b'q');
    let mut b = [0u8; 1];
    let n = client
        .read(&mut b)
        .expect("a clean close, not a reset or a hang");
    assert_eq!(n, 0, "the idle connection got bytes");
    proxy.wait_logged(|l| l.contains("idle timeout"));
    let s = proxy.wait_stats("the pair closed", |s| s.get("active") == 0);
    assert_eq!((s.get("closed"), s.get("errors")), (1, 0), "{s:?}");
}

#[test]
fn a_busy_connection_outlives_the_idle_timeout() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--idle-timeout", "1s"]);
    let mut client = connect(proxy.addr);
    // Traffic every 100 ms for three idle periods.
    for i in 0..30u8 {
        echo_byte(&mut client, i);
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = proxy.stats();
    assert_eq!((s.get("active"), s.get("closed")), (1, 0), "{s:?}");
}

/// An upload the idle timeout cuts off (the backend stopped reading, so
/// nothing moved for a whole period) is not passed off as complete: what
/// the proxy still held for the backend is lost, so the backend's stream
/// ends in a reset, never a FIN.
#[test]
fn an_upload_cut_by_the_idle_timeout_ends_in_a_reset_at_the_backend() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (end_tx, end_rx) = mpsc::channel::<std::io::Result<usize>>();
    let (go, end_tx) = (Mutex::new(go_rx), Mutex::new(end_tx));
    let backend = Backend::spawn(move |mut s| {
        // Reads nothing until the proxy has given the pair up.
        if go.lock().expect("signal").recv_timeout(WAIT).is_err() {
            return;
        }
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = vec![0u8; 64 << 10];
        let mut total = 0;
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(total),
                Ok(n) => total += n,
                Err(e) => break Err(e),
            }
        };
        let _ = end_tx.lock().expect("reporter").send(end);
    });
    // Made before the connection: the idle timer runs from its accept.
    let data = pattern(41, 32 << 20);
    // Through buffers: with splicing no read waits on a send.
    let mut proxy = Proxy::start_to(backend.addr, &["--idle-timeout", "1s", "--pipes", "0"]);
    let mut client = connect(proxy.addr);
    client.set_nonblocking(true).expect("nonblocking");
    let (mut written, mut last) = (0, Instant::now());
    while last.elapsed() < Duration::from_millis(300) {
        match client.write(&data[written..]) {
            Ok(n) => {
                written += n;
                last = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            // The proxy's idle timer runs from the last byte it moved: it
            // may give up while the client's own kernel still takes bytes.
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                break
            }
            Err(e) => panic!("upload after {written} bytes: {e}"),
        }
        assert!(written < data.len(), "all of the upload went through");
    }
    proxy.wait_stats("the idle pair closed", |s| s.get("active") == 0);
    go_tx.send(()).expect("backend waiting");
    let end = end_rx.recv_timeout(WAIT).expect("the backend's report");
    match end {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => {
            panic!("a FIN after {n} of the {written} bytes uploaded: a cut stream ended clean")
        }
    }
}
