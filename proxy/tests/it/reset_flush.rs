//! Deliver, then reset: when one side resets, everything the proxy had
//! already received from it reaches the other side — out of its buffers
//! and pipes and out of its own kernel send queue, however slowly that
//! side reads — and only then is the reset passed on, so a cut stream is
//! still never mistaken for a complete one. `--reset-flush-timeout` bounds
//! the wait; `0` passes the reset on at once.

use crate::util::{connect, is_timeout, pattern, reset, Backend, Proxy, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// What the resetting side sends before its reset.
const SENT: usize = 3 << 20;
/// How fast the slow receiver reads.
const RATE: usize = 1 << 20;

/// Writes `data`, waits until the peer's kernel has acknowledged all of it
/// (else the reset would discard the tail in *our* send queue, which no
/// proxy can deliver), then resets.
fn send_all_then_reset(mut s: TcpStream, data: &[u8]) {
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    s.write_all(data).expect("write before the reset");
    let start = Instant::now();
    while netio::sys::socket::unacked(&s).expect("SIOCOUTQ") > 0 {
        assert!(start.elapsed() < WAIT, "the proxy never took our bytes");
        thread::sleep(Duration::from_millis(5));
    }
    reset(s);
}

/// How a slow reader's stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Reset,
    Fin,
    /// Stopped reading (for the tests that read only part).
    Stopped,
}

/// Reads at most `rate` bytes a second, up to `limit` bytes, until the
/// stream ends; returns what arrived and how it ended.
fn read_slowly(s: &mut TcpStream, rate: usize, limit: usize) -> (Vec<u8>, End) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let chunk = rate / 16;
    let mut got = Vec::with_capacity(SENT);
    let mut buf = vec![0u8; chunk];
    let start = Instant::now();
    loop {
        if got.len() >= limit {
            return (got, End::Stopped);
        }
        // Paced: never ahead of `rate`.
        let due = Duration::from_secs_f64(got.len() as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            thread::sleep(wait);
        }
        match s.read(&mut buf) {
            Ok(0) => return (got, End::Fin),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, End::Reset),
            Err(e) if is_timeout(&e) => panic!("hung after {} bytes", got.len()),
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
}

/// Checks that `got` is exactly `want`, naming the first difference.
fn assert_whole(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} of {} bytes arrived (first difference at {at:?})",
            got.len(),
            want.len()
        );
    }
}

/// The proxy is back to nothing open and nothing held, and counted what
/// it did.
fn assert_settled(proxy: &mut Proxy, flushed: u64, timed_out: u64) {
    let st = proxy.wait_stats("every pair closed and counted", |s| {
        s.get("active") == 0 && s.get("closed") == s.get("accepted")
    });
    assert_eq!(st.held(), 0, "{st:?}");
    assert_eq!(st.get("flushing"), 0, "{st:?}");
    assert_eq!(st.get("resets_flushed"), flushed, "{st:?}");
    assert_eq!(st.get("reset_flush_timeouts"), timed_out, "{st:?}");
}

/// The case, backend side: the backend sends 3 MB and resets; the
/// client reads at 1 MB/s, so when the reset arrives most of the 3 MB sits
/// in the proxy's pipe and in its send queue to the client. All 3 MB
/// arrive, then the reset.
#[test]
fn a_backend_reset_after_3_mb_reaches_a_slow_client_after_every_byte() {
    let data = pattern(31, SENT);
    let sent = data.clone();
    let backend = Backend::spawn(move |s| send_all_then_reset(s, &sent));
    let mut proxy = Proxy::start_to(backend.addr, &["--log-connections"]);
    let mut client = connect(proxy.addr);
    let (got, end) = read_slowly(&mut client, RATE, usize::MAX);
    assert_whole(&got, &data, "backend → slow client");
    assert_eq!(end, End::Reset, "the backend's reset must be passed on");
    let line = proxy.wait_logged(|l| l.starts_with("conn "));
    assert!(
        line.contains("(backend reset, passed on after the rest was delivered)")
            && line.contains(&format!("{SENT} bytes down")),
        "{line}"
    );
    assert_settled(&mut proxy, 1, 0);
}

/// The same the other way: the client uploads 3 MB and resets; the
/// backend reads at 1 MB/s and gets all of it, then the reset.
#[test]
fn a_client_reset_after_3_mb_reaches_a_slow_backend_after_every_byte() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = Backend::spawn(move |mut s| {
        let seen = read_slowly(&mut s, RATE, usize::MAX);
        let _ = tx.lock().expect("reporter").send(seen);
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let data = pattern(32, SENT);
    send_all_then_reset(connect(proxy.addr), &data);
    let (got, end) = rx.recv_timeout(WAIT).expect("the backend's report");
    assert_whole(&got, &data, "client → slow backend");
    assert_eq!(end, End::Reset, "the client's reset must be passed on");
    assert_settled(&mut proxy, 1, 0);
}

/// The common real trigger: a backend reads part of a large request,
/// writes its whole reply and closes with request bytes unread, so its
/// kernel sends a reset. The client, still uploading and reading slowly,
/// gets the whole reply, then the reset.
#[test]
fn a_reply_sent_before_a_reset_for_unread_request_bytes_arrives_whole() {
    let reply = pattern(33, 1 << 20);
    let sent = reply.clone();
    let backend = Backend::spawn(move |mut s| {
        let mut head = [0u8; 4096];
        if s.read_exact(&mut head).is_ok() {
            send_all_then_reset(s, &sent);
        }
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut client = connect(proxy.addr);
    let mut writer = client.try_clone().expect("clone");
    let upload = thread::spawn(move || {
        let chunk = pattern(34, 64 << 10);
        for _ in 0..256 {
            if let Err(e) = writer.write_all(&chunk) {
                return Some(e.kind()); // the reset has come through
            }
        }
        None
    });
    let (got, end) = read_slowly(&mut client, 4 * RATE, usize::MAX);
    assert_whole(&got, &reply, "the reply");
    // The socket reports its reset once: to the reader, or to the
    // uploader if its write came first (the reader then finds the end).
    let upload_end = upload.join().expect("uploader");
    assert!(
        end == End::Reset || upload_end == Some(ErrorKind::ConnectionReset),
        "the backend's reset must be passed on: the reader saw {end:?}, the uploader {upload_end:?}"
    );
    assert_settled(&mut proxy, 1, 0);
}

/// A client that resets while its backend echoes, and is blocked writing
/// answers nobody reads: what the proxy had taken of the upload still
/// reaches the backend — the answers meant for the client that is gone
/// are read and dropped, so the echo goes on reading — and then the
/// reset, long before the flush timeout (here 120 s, beyond the test's
/// wait: the pair would otherwise sit there until it).
#[test]
fn a_client_reset_reaches_an_echo_backend_blocked_on_its_own_answers() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = Backend::spawn(move |mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.set_write_timeout(Some(WAIT)).expect("timeout");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        // Once a write finds the reset (the socket reports it once), what
        // its kernel already received is still read, and the end that
        // follows is that reset's.
        let mut reset_seen = false;
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) if reset_seen => break End::Reset,
                Ok(0) => break End::Fin,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if !reset_seen {
                        match s.write_all(&buf[..n]) {
                            Ok(()) => {}
                            Err(e) if is_timeout(&e) => break End::Stopped,
                            Err(e) if e.kind() == ErrorKind::ConnectionReset => reset_seen = true,
                            Err(e) if e.kind() == ErrorKind::BrokenPipe => reset_seen = true,
                            Err(e) => panic!("echo: {e}"),
                        }
                    }
                }
                Err(e) if is_timeout(&e) => break End::Stopped,
                Err(_) => break End::Reset,
            }
        };
        let _ = tx.lock().expect("reporter").send((got, end));
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--reset-flush-timeout", "120s"]);
    let data = pattern(38, 64 << 20);
    let mut client = connect(proxy.addr);
    client.set_nonblocking(true).expect("nonblocking");
    // Upload until nothing moves: the echo is blocked on the answers the
    // client never reads, and everything on the way is full.
    let mut written = 0;
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_millis(500) {
        match client.write(&data[written..]) {
            Ok(n) => {
                written += n;
                last = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("upload after {written} bytes: {e}"),
        }
        assert!(
            written < data.len(),
            "all of the upload went through: nothing blocked"
        );
    }
    // What the proxy's kernel has acknowledged must all arrive.
    let taken = written - netio::sys::socket::unacked(&client).expect("SIOCOUTQ");
    reset(client);
    let (got, end) = rx
        .recv_timeout(WAIT)
        .expect("the backend's report: the flush never reached it");
    assert!(
        got.len() >= taken,
        "{} of the {taken} bytes the proxy took reached the backend",
        got.len()
    );
    assert_whole(&got, &data[..got.len()], "client → echo backend");
    assert_eq!(end, End::Reset, "the client's reset must be passed on");
    assert_settled(&mut proxy, 1, 0);
    let st = proxy.stats();
    assert!(
        st.get("bytes_discarded") > 0,
        "no answer was dropped: {st:?}"
    );
}

/// A receiver that stops reading cannot hold the pair open for ever:
/// after `--reset-flush-timeout` the reset is passed on anyway, and what
/// the receiver reads then ends in that reset, never a FIN.
#[test]
fn a_receiver_that_stops_reading_gets_the_reset_after_the_flush_timeout() {
    let backend = Backend::spawn(|mut s| {
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        // As much as the proxy takes before the client's side is full.
        let chunk = pattern(35, 64 << 10);
        while s.write_all(&chunk).is_ok() {}
        reset(s);
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--reset-flush-timeout", "1s"]);
    let mut client = connect(proxy.addr);
    // Read a little, then nothing until the proxy has given up.
    let (_, end) = read_slowly(&mut client, RATE, 64 << 10);
    assert_eq!(end, End::Stopped);
    proxy.wait_stats("the flush cut off by its timeout", |s| {
        s.get("reset_flush_timeouts") == 1
    });
    let (_, end) = read_slowly(&mut client, 64 * RATE, usize::MAX);
    assert_eq!(end, End::Reset, "a cut stream must not end in a FIN");
    assert_settled(&mut proxy, 0, 1);
}

/// `--reset-flush-timeout 0` keeps the old behaviour: the reset is passed
/// on at once, and a slow client loses what the proxy still held.
#[test]
fn a_zero_reset_flush_timeout_passes_the_reset_on_at_once() {
    let data = pattern(36, SENT);
    let sent = data.clone();
    let backend = Backend::spawn(move |s| send_all_then_reset(s, &sent));
    let mut proxy = Proxy::start_to(backend.addr, &["--reset-flush-timeout", "0"]);
    let mut client = connect(proxy.addr);
    let (got, end) = read_slowly(&mut client, RATE, usize::MAX);
    assert_eq!(end, End::Reset);
    assert!(
        got.len() < SENT,
        "all {} bytes arrived: nothing was cut",
        got.len()
    );
    assert_eq!(got[..], data[..got.len()], "what arrived is a prefix");
    assert_settled(&mut proxy, 0, 0);
}

/// A flush timeout longer than the worker clock can measure (here about
/// 31 years) means "wait as long as it takes" (up to about 12 days), not
/// "already past": the pair goes on flushing, and once the receiver reads
/// everything the reset is passed on.
#[test]
fn a_huge_reset_flush_timeout_waits_for_the_receiver() {
    let backend = Backend::spawn(|mut s| {
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let chunk = pattern(37, 64 << 10);
        while s.write_all(&chunk).is_ok() {}
        reset(s);
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--reset-flush-timeout", "1000000000s"]);
    let mut client = connect(proxy.addr);
    let (_, end) = read_slowly(&mut client, RATE, 64 << 10);
    assert_eq!(end, End::Stopped);
    proxy.wait_stats("the pair flushing", |s| s.get("flushing") == 1);
    thread::sleep(Duration::from_millis(300));
    let st = proxy.stats();
    assert_eq!(st.get("reset_flush_timeouts"), 0, "cut off at once: {st:?}");
    assert_eq!(st.get("flushing"), 1, "{st:?}");
    let (_, end) = read_slowly(&mut client, 64 * RATE, usize::MAX);
    assert_eq!(
        end,
        End::Reset,
        "the reset must be passed on once all was read"
    );
    assert_settled(&mut proxy, 1, 0);
}

/// A backend that resets while the pair lingers (the client reset, all it
/// sent is in the proxy's send queue to a backend that does not read)
/// ends the pair at once, though a reset socket's send queue still counts
/// its unacknowledged bytes: a wait for them would last the whole
/// `--reset-flush-timeout` (here 120 s, beyond the test's wait). Here the
/// reset comes as an error edge; the race where the read that drops what
/// the backend sends finds it first is the relay model's
/// `a_reset_found_by_the_read_that_drops_ends_a_lingering_pair_at_once`.
#[test]
fn a_backend_that_resets_during_the_flush_ends_the_pair_at_once() {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go = Mutex::new(go_rx);
    let backend = Backend::spawn(move |mut s| {
        // Reads nothing: the upload waits in the proxy's send queue.
        let go = go.lock().expect("signal");
        if go.recv_timeout(WAIT).is_ok() {
            s.set_write_timeout(Some(WAIT)).expect("timeout");
            let _ = s.write_all(&pattern(40, 16 << 10));
            reset(s);
        }
    });
    let mut proxy = Proxy::start_to(backend.addr, &["--reset-flush-timeout", "120s"]);
    let mut client = connect(proxy.addr);
    client.set_write_timeout(Some(WAIT)).expect("timeout");
    // More than a backend that does not read can take into its kernel,
    // less than the proxy's send queue to it holds.
    const UPLOAD: usize = 1 << 20;
    client.write_all(&pattern(39, UPLOAD)).expect("upload");
    proxy.wait_stats("the upload passed to the backend's socket", |s| {
        s.get("bytes_client_to_backend") == UPLOAD as u64 && s.held() == 0
    });
    reset(client);
    proxy.wait_stats("the pair flushing", |s| s.get("flushing") == 1);
    thread::sleep(Duration::from_millis(200));
    go_tx.send(()).expect("backend waiting");
    let st = proxy.wait_stats("the pair closed", |s| s.get("active") == 0);
    assert_eq!(st.get("reset_flush_timeouts"), 0, "{st:?}");
    assert_eq!(st.get("flushing"), 0, "{st:?}");
    assert_eq!(st.held(), 0, "{st:?}");
}
