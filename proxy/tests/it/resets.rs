//! Failures end connections promptly and cleanly: a refused backend
//! closes its client, a reset on one side is passed on as a reset to the
//! other, and none of it leaks a connection, a buffer or a descriptor or
//! stops the proxy from serving.

use crate::util::{
    connect, dead_addr, is_timeout, pattern, read_to_end, reset, Backend, Proxy, WAIT,
};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

/// Most bytes a streaming side sends before giving up on being stopped.
const STREAM_LIMIT: usize = 256 << 20;

/// Reads once from a client whose backend is gone and checks that the
/// connection was ended (EOF or an error) rather than left hanging.
fn assert_ended(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("got {n} bytes on a connection that should have ended"),
        Err(e) => assert!(!is_timeout(&e), "connection left hanging: {e}"),
    }
}

/// Reports what a backend's handler saw, from its thread to the test.
fn reporter<T: Send + 'static>() -> (Mutex<Sender<T>>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel();
    (Mutex::new(tx), rx)
}

/// A connection to a port where nothing listens is closed at once, the
/// proxy names the backend on stderr and counts the refusal, and nothing
/// is left open.
#[test]
fn backend_refused_closes_client() {
    let dead = dead_addr();
    let mut proxy = Proxy::start_to(dead, &[]);
    let baseline = proxy.fd_count();
    let mut s = connect(proxy.addr);
    assert_ended(&mut s);
    let line = proxy.wait_logged(|l| l.contains(&dead.to_string()));
    assert!(line.to_lowercase().contains("refused"), "log line: {line}");
    let st = proxy.wait_stats("the refusal counted and closed", |s| {
        s.get("refused") >= 1 && s.get("active") == 0
    });
    assert_eq!(st.get("refused"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    assert_eq!(st.held(), 0, "{st:?}");
    proxy.wait_fd_count(baseline);
}

/// Reads once from a client whose backend failed: the proxy must reset
/// it (a FIN would look like an empty, complete answer).
fn assert_reset(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a reset from the proxy, got {other:?}"),
    }
}

/// A backend that refuses once the connect is under way, and one whose
/// connect fails at once (no route to a multicast address: ENETUNREACH,
/// like running out of local ports: EADDRNOTAVAIL), end the client the
/// same way, with a reset, and are logged the same way, naming the
/// backend and the client.
#[test]
fn a_failed_backend_connect_resets_the_client_and_is_logged_alike() {
    let unroutable: std::net::SocketAddr = "224.0.0.1:9".parse().expect("addr");
    for backend in [dead_addr(), unroutable] {
        let mut proxy = Proxy::start_to(backend, &[]);
        let mut s = connect(proxy.addr);
        let client = s.local_addr().expect("client address");
        assert_reset(&mut s);
        let line = proxy.wait_logged(|l| l.contains(&backend.to_string()));
        assert!(
            line.starts_with(&format!(
                "proxy: backend {backend} failed for client {client}: "
            )),
            "log line: {line}"
        );
        // The reset goes out a moment before the gauges are set.
        let st = proxy.wait_stats("the failure counted and closed", |s| {
            s.get("refused") == 1 && s.get("active") == 0
        });
        assert_eq!(st.held(), 0, "{st:?}");
    }
}

/// Refusal after refusal, the proxy goes on accepting, closes each client,
/// counts each one, and holds no more descriptors than at the start.
#[test]
fn refused_backend_does_not_leak_or_stop_accepting() {
    const ATTEMPTS: u64 = 20;
    let mut proxy = Proxy::start_to(dead_addr(), &[]);
    let baseline = proxy.fd_count();
    for _ in 0..ATTEMPTS {
        let mut s = connect(proxy.addr);
        assert_ended(&mut s);
    }
    let st = proxy.wait_stats("every refusal counted and closed", |s| {
        s.get("refused") >= ATTEMPTS && s.get("active") == 0
    });
    assert_eq!(st.get("refused"), ATTEMPTS, "{st:?}");
    assert_eq!(st.get("accepted"), st.get("closed"), "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    assert_eq!(st.held(), 0, "{st:?}");
    proxy.wait_fd_count(baseline);
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "proxy exited"
    );
}

/// With a dead and a live backend taken in turn, every other connection
/// is refused and the ones in between are relayed intact: a refusal does
/// not disturb the connections after it.
#[test]
fn refused_backend_does_not_disturb_the_next_connection() {
    const ROUNDS: usize = 5;
    let live = Backend::echo();
    let (dead, live_addr) = (dead_addr().to_string(), live.addr.to_string());
    let mut proxy = Proxy::start_to_all(
        &[&dead, &live_addr],
        &[
            "--balance",
            "round-robin",
            // No failover and no passive health: the dead backend's clients
            // are refused, every time.
            "--connect-retries",
            "1",
            "--fall",
            "0",
        ],
    );
    for round in 0..ROUNDS {
        // The dead backend's turn: the client is turned away.
        let mut s = connect(proxy.addr);
        assert_ended(&mut s);
        // The live backend's turn: an ordinary echo.
        let data = pattern(round as u64 + 1, 10_000);
        let mut s = connect(proxy.addr);
        s.write_all(&data).expect("write");
        s.shutdown(Shutdown::Write).expect("FIN");
        assert!(read_to_end(&mut s) == data, "round {round}: echo altered");
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("refused"), ROUNDS as u64, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    assert_eq!(st.get("accepted"), st.get("closed"), "{st:?}");
    assert_eq!(st.get("bytes_backend_to_client"), ROUNDS as u64 * 10_000);
    assert_eq!(live.accepted(), ROUNDS);
}

/// The client resets its connection while the backend streams to it: the
/// backend's writes must fail (it is reset in turn) instead of blocking
/// or going on into the void, and the proxy counts one error.
#[test]
fn client_reset_mid_stream_ends_the_backend() {
    let (report, outcome) = reporter::<Result<usize, ErrorKind>>();
    let backend = Backend::spawn(move |mut s| {
        s.set_write_timeout(Some(WAIT)).expect("timeout");
        let chunk = pattern(4, 64 << 10);
        let mut sent = 0;
        let end = loop {
            if sent >= STREAM_LIMIT {
                break Ok(sent);
            }
            match s.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(e) => break Err(e.kind()),
            }
        };
        let _ = report.lock().expect("report").send(end);
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    let mut first = vec![0u8; 256 << 10];
    s.read_exact(&mut first).expect("the stream is under way");
    assert!(
        first[..64 << 10] == pattern(4, 64 << 10)[..],
        "stream altered"
    );
    reset(s);
    match outcome
        .recv_timeout(WAIT * 2)
        .expect("the backend's stream ended")
    {
        Ok(sent) => panic!("backend wrote {sent} bytes to a client that had reset"),
        Err(kind) => assert!(
            matches!(kind, ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "backend's write ended with {kind:?}, not a reset"
        ),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("errors"), 1, "{st:?}");
    assert_eq!(st.get("closed"), 1, "{st:?}");
}

/// A client's reset reaches a backend that is waiting to read as a reset,
/// not as a FIN that would make a cut-off request look complete.
#[test]
fn client_reset_reaches_the_backend_as_a_reset() {
    let (report, outcome) = reporter::<io::Result<usize>>();
    let backend = Backend::spawn(move |mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(b"hello").expect("hello");
        let mut buf = [0u8; 64];
        let _ = report.lock().expect("report").send(s.read(&mut buf));
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    let mut hello = [0u8; 5];
    s.read_exact(&mut hello).expect("hello");
    assert_eq!(&hello, b"hello");
    reset(s);
    match outcome
        .recv_timeout(WAIT * 2)
        .expect("the backend's read ended")
    {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "backend read: {e}"),
        Ok(n) => panic!("backend read {n} bytes (0 = a FIN) instead of a reset"),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("errors"), 1, "{st:?}");
    assert_eq!(st.get("closed"), 1, "{st:?}");
}

/// A client that resets while the proxy's writes to it wait for room (it
/// stopped reading): the backend must get a reset, not a FIN (a cut
/// stream passed off as a whole one) and a reset after it. The backend
/// sends in pieces smaller than the proxy's buffers, as an answer that is
/// not a bulk stream does (under uring each goes out as a ring send, one
/// of which waits when the client resets), and is quiet when the client
/// resets. The write that finds the reset may take the socket's error
/// (the kernel reports it once), so that the client's socket then reads
/// as a plain end of stream: the uring engine's own test
/// (`a_receive_that_ends_after_a_send_took_the_reset_reads_as_a_reset`)
/// pins that order, which the table here also meets by handling the
/// error edge before it reads.
#[test]
fn a_client_that_resets_while_it_is_owed_bytes_reaches_the_backend_as_a_reset() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread::sleep;
    use std::time::{Duration, Instant};
    let sending = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&sending);
    let (report, outcome) = reporter::<io::Result<usize>>();
    let backend = Backend::spawn(move |mut s| {
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("nonblocking");
        let piece = pattern(9, 8192);
        let start = Instant::now();
        while flag.load(Ordering::Relaxed) && start.elapsed() < WAIT {
            match s.write(&piece) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => {
                    let _ = report.lock().expect("report").send(Err(e));
                    return;
                }
            }
            sleep(Duration::from_millis(1));
        }
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 64];
        let _ = report.lock().expect("report").send(s.read(&mut buf));
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--buffer-size", "65536"]);
    let mut s = connect(proxy.addr);
    netio::sys::socket::set_recv_buffer(&s, 4096).expect("SO_RCVBUF");
    let mut first = [0u8; 4096];
    s.read_exact(&mut first).expect("the answer is under way");
    // Long enough at 8 KiB a millisecond to fill the proxy's send buffer
    // to the client (it grows to about 4 MiB on loopback) twice over.
    sleep(Duration::from_millis(1500));
    sending.store(false, Ordering::Relaxed);
    sleep(Duration::from_millis(100));
    reset(s);
    match outcome
        .recv_timeout(WAIT * 2)
        .expect("the backend's read ended")
    {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "backend: {e}"),
        Ok(n) => panic!("backend read {n} bytes (0 = a FIN) instead of a reset"),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("errors"), 1, "{st:?}");
    assert_eq!(st.get("closed"), 1, "{st:?}");
}

/// A backend's reset reaches a client that is waiting to read as a reset.
#[test]
fn backend_reset_reaches_the_client_as_a_reset() {
    let backend = Backend::spawn(|mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut hello = [0u8; 5];
        if s.read_exact(&mut hello).is_ok() {
            reset(s);
        }
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    s.write_all(b"hello").expect("hello");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "client read: {e}"),
        Ok(n) => panic!("client read {n} bytes (0 = a FIN) instead of a reset"),
    }
    let st = proxy.wait_idle();
    assert_eq!(st.get("errors"), 1, "{st:?}");
    assert_eq!(st.get("closed"), 1, "{st:?}");
}

/// The backend resets its connection while the client is uploading: the
/// client's writes must fail instead of blocking or going on into the
/// void, and the proxy counts one error.
#[test]
fn backend_reset_mid_stream_ends_the_client() {
    let backend = Backend::spawn(|mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut first = vec![0u8; 256 << 10];
        if s.read_exact(&mut first).is_ok() {
            reset(s);
        }
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    let chunk = pattern(5, 64 << 10);
    let mut sent = 0;
    let end = loop {
        if sent >= STREAM_LIMIT {
            break None;
        }
        match s.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) => break Some(e),
        }
    };
    match end {
        None => panic!("client wrote {sent} bytes to a backend that had reset"),
        Some(e) => assert!(!is_timeout(&e), "client's upload left hanging: {e}"),
    }
    assert_ended(&mut s);
    let st = proxy.wait_idle();
    assert_eq!(st.get("errors"), 1, "{st:?}");
    assert_eq!(st.get("closed"), 1, "{st:?}");
}

/// Two hundred clients connect and reset at once. Each is accepted,
/// counted as an error and closed with its backend connection; nothing
/// leaks, and the proxy still relays afterwards.
#[test]
fn survives_two_hundred_immediate_resets() {
    const CONNS: u64 = 200;
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let baseline = proxy.fd_count();
    for _ in 0..CONNS {
        reset(connect(proxy.addr));
    }
    let st = proxy.wait_stats("every reset connection accepted and closed", |s| {
        s.get("accepted") >= CONNS && s.get("active") == 0
    });
    assert_eq!(st.get("accepted"), CONNS, "{st:?}");
    assert_eq!(st.get("closed"), CONNS, "{st:?}");
    assert_eq!(st.get("errors"), CONNS, "{st:?}");
    assert_eq!(st.held(), 0, "{st:?}");
    proxy.wait_fd_count(baseline);

    let mut s = connect(proxy.addr);
    s.write_all(b"still there?").expect("write");
    s.shutdown(Shutdown::Write).expect("FIN");
    assert_eq!(read_to_end(&mut s), b"still there?");
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), CONNS + 1, "{st:?}");
    assert_eq!(st.get("errors"), CONNS, "{st:?}");
}

/// A backend that reads a little of a large upload, answers, and closes
/// with the rest unread (so its kernel sends a reset): the answer must
/// still reach the client, as it does without a proxy. The failing write
/// towards the backend must not stop the other direction from being read.
#[test]
fn a_backend_answer_sent_before_its_reset_reaches_the_client() {
    const ANSWER: &[u8] = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
    let backend = Backend::spawn(|mut s| {
        let mut first = [0u8; 1024];
        if s.read_exact(&mut first).is_ok() && s.write_all(ANSWER).is_ok() {
            reset(s); // unread upload bytes: the close is a reset anyway
        }
    });
    let proxy = Proxy::start_to(backend.addr, &[]);
    for round in 0..10 {
        let mut client = connect(proxy.addr);
        let mut writer = client.try_clone().expect("clone");
        let upload = std::thread::spawn(move || {
            let chunk = pattern(round, 64 << 10);
            for _ in 0..64 {
                if writer.write_all(&chunk).is_err() {
                    break; // the backend reset: expected
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => panic!("round {round}: no answer and no end"),
                Err(_) => break,
            }
        }
        assert_eq!(got, ANSWER, "round {round}: the answer was lost");
        upload.join().expect("uploader");
    }
}
