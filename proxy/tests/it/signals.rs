//! Routine events the proxy must live through with every connection
//! intact: SIGHUP with no config file to reload and SIGUSR2 (logged,
//! nothing changes), SIGPIPE (ignored), storms
//! of SIGUSR1, a stderr whose reader has gone or stopped reading; and
//! SIGTERM or SIGINT during heavy transfer, where every exchange either
//! finishes intact within the drain timeout or is cut by a reset, never by
//! a clean EOF. Each with one worker and with two.

use crate::util::{
    connect, echo_byte, echo_conn, http_get, pattern, prom_value, read_to_end, wait_until, Backend,
    Gate, Proxy, Stats, WAIT,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use testkit::AfterListening;

/// Bytes each echo exchange sends and gets back, in chunks of [`CHUNK`].
const LEN: usize = 2 << 20;
/// One write and the read of its echo.
const CHUNK: usize = 32 << 10;
/// Echo exchanges kept open at once.
const EXCHANGES: u64 = 8;

/// How one stream ended, as its reader saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every byte arrived, in order, then a clean EOF.
    Intact,
    /// A reset after `n` bytes, all of them correct.
    Reset(usize),
    /// A clean EOF after only `n` bytes: a cut that looks complete.
    CutAt(usize),
    /// A wrong byte in the chunk that starts at `n`.
    AlteredAt(usize),
    /// Anything else: a timeout (a hang) or another error.
    Failed(String),
}

impl End {
    fn of(e: &io::Error, at: usize) -> End {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => End::Reset(at),
            _ => End::Failed(format!("after {at} bytes: {e}")),
        }
    }
}

/// Reads `s` to its end, checking every byte against `expected`.
fn read_against(s: &mut TcpStream, expected: &[u8]) -> End {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) if got == expected.len() => return End::Intact,
            Ok(0) => return End::CutAt(got),
            Ok(n) => {
                if expected.get(got..got + n) != Some(&buf[..n]) {
                    return End::AlteredAt(got);
                }
                got += n;
            }
            Err(e) => return End::of(&e, got),
        }
    }
}

/// Sends `LEN` bytes of pattern `seed` in chunks, reading each chunk's
/// echo before the next; half-way it says so on `ready` and waits for
/// `gate`. Then half-closes and expects a clean EOF.
fn exchange(addr: SocketAddr, seed: u64, ready: mpsc::Sender<()>, gate: Gate) -> End {
    let data = pattern(seed, LEN);
    let mut s = connect(addr);
    let mut back = vec![0u8; CHUNK];
    let mut got = 0;
    for chunk in data.chunks(CHUNK) {
        if got == LEN / 2 {
            let _ = ready.send(());
            if !gate.wait() {
                return End::Failed("the gate never opened".into());
            }
        }
        if let Err(e) = s.write_all(chunk) {
            return End::of(&e, got);
        }
        let back = &mut back[..chunk.len()];
        if let Err(e) = s.read_exact(back) {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                return End::CutAt(got);
            }
            return End::of(&e, got);
        }
        if back != chunk {
            return End::AlteredAt(got);
        }
        got += chunk.len();
    }
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return End::of(&e, got);
    }
    read_against(&mut s, &[])
}

/// [`EXCHANGES`] echo exchanges, each on its own thread.
struct Exchanges {
    gate: Gate,
    ready: mpsc::Receiver<()>,
    threads: Vec<JoinHandle<End>>,
}

impl Exchanges {
    /// Starts them; seeds 1.. (none of whose patterns starts with `S`).
    fn start(addr: SocketAddr) -> Exchanges {
        let gate = Gate::new();
        let (tx, ready) = mpsc::channel();
        let threads = (1..=EXCHANGES)
            .map(|seed| {
                let (tx, gate) = (tx.clone(), gate.clone());
                thread::spawn(move || exchange(addr, seed, tx, gate))
            })
            .collect();
        Exchanges {
            gate,
            ready,
            threads,
        }
    }

    /// Waits until every exchange is half-way, its connection open.
    fn halfway(&self) {
        for i in 0..EXCHANGES {
            self.ready
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("only {i} of {EXCHANGES} exchanges got half-way"));
        }
    }

    /// Lets them go on with their second half.
    fn go_on(&self) {
        self.gate.open();
    }

    /// Lets them finish and returns how each ended.
    fn finish(self) -> Vec<End> {
        self.go_on();
        self.threads
            .into_iter()
            .map(|t| t.join().expect("exchange thread"))
            .collect()
    }
}

fn assert_all_intact(ends: &[End]) {
    assert!(
        ends.iter().all(|e| *e == End::Intact),
        "exchanges: {ends:?}"
    );
}

fn workers_args(workers: u32) -> Vec<String> {
    vec!["--workers".into(), workers.to_string()]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Sends `sig` to the proxy while exchanges are open half-way, and checks
/// that every one of them finishes intact, that the proxy logged
/// `logged` (when given) exactly once, and that it still serves.
fn leaves_connections_intact(workers: u32, sig: &str, logged: Option<&str>) {
    let backend = Backend::echo();
    let w = workers_args(workers);
    let mut proxy = Proxy::start_to(backend.addr, &args(&w));
    let exchanges = Exchanges::start(proxy.addr);
    exchanges.halfway();
    proxy.signal(sig);
    if let Some(text) = logged {
        proxy
            .wait_line(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} after SIG{sig}: {}", proxy.tail()));
    }
    assert_all_intact(&exchanges.finish());
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "SIG{sig} stopped the proxy: {}",
        proxy.tail()
    );
    echo_byte(&mut connect(proxy.addr), b'n');
    let s = proxy.stats();
    assert_eq!(s.get("accepted"), EXCHANGES + 1, "{s:?}");
    if let Some(text) = logged {
        let lines: Vec<String> = proxy
            .log()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect();
        assert_eq!(lines.len(), 1, "one line for one SIG{sig}: {lines:?}");
        assert!(lines[0].starts_with("proxy: "), "{lines:?}");
    }
}

#[test]
fn sighup_is_logged_and_every_connection_goes_on() {
    leaves_connections_intact(1, "HUP", Some("SIGHUP"));
}

#[test]
fn sighup_is_logged_and_every_connection_goes_on_with_two_workers() {
    leaves_connections_intact(2, "HUP", Some("SIGHUP"));
}

#[test]
fn sigusr2_is_logged_and_every_connection_goes_on() {
    leaves_connections_intact(1, "USR2", Some("SIGUSR2"));
}

#[test]
fn sigusr2_is_logged_and_every_connection_goes_on_with_two_workers() {
    leaves_connections_intact(2, "USR2", Some("SIGUSR2"));
}

#[test]
fn sigpipe_is_ignored_and_every_connection_goes_on() {
    leaves_connections_intact(1, "PIPE", None);
}

#[test]
fn sigpipe_is_ignored_and_every_connection_goes_on_with_two_workers() {
    leaves_connections_intact(2, "PIPE", None);
}

/// Sends `sig` to `pid` `n` times with one `kill(1)`, as fast as it goes.
fn storm(pid: u32, sig: &str, n: usize) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(std::iter::repeat_n(pid.to_string(), n))
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} failed: {st}");
}

fn a_sigusr1_storm_leaves_traffic_intact(workers: u32) {
    let backend = Backend::echo();
    let w = workers_args(workers);
    let mut proxy = Proxy::start_to(backend.addr, &args(&w));
    let exchanges = Exchanges::start(proxy.addr);
    exchanges.halfway();
    exchanges.go_on();
    for _ in 0..5 {
        storm(proxy.pid(), "USR1", 100);
    }
    assert_all_intact(&exchanges.finish());
    assert!(
        proxy.child.try_wait().expect("try_wait").is_none(),
        "a SIGUSR1 storm stopped the proxy: {}",
        proxy.tail()
    );
    echo_byte(&mut connect(proxy.addr), b'n');
    proxy.signal("TERM");
    assert_eq!(
        proxy.wait_exit().code(),
        Some(0),
        "exit status after the storm"
    );
    let opened = EXCHANGES + 1;
    let last = Stats::parse(
        &proxy.wait_logged(|l| l.starts_with("stats:") && Stats::parse(l).get("closed") == opened),
    );
    assert_eq!(last.get("accepted"), opened, "{last:?}");
    assert_eq!(
        last.get("bytes_client_to_backend"),
        EXCHANGES * LEN as u64 + 1,
        "{last:?}"
    );
}

#[test]
fn a_sigusr1_storm_during_traffic_leaves_it_intact() {
    a_sigusr1_storm_leaves_traffic_intact(1);
}

#[test]
fn a_sigusr1_storm_during_traffic_leaves_it_intact_with_two_workers() {
    a_sigusr1_storm_leaves_traffic_intact(2);
}

/// Runs `n` short echo connections, 8 at a time, each checked.
fn many_connections(addr: SocketAddr, n: usize) {
    const THREADS: usize = 8;
    let threads: Vec<JoinHandle<()>> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in (t..n).step_by(THREADS) {
                    let msg = format!("connection {i}\n").into_bytes();
                    let mut s = connect(addr);
                    s.write_all(&msg).expect("write");
                    s.shutdown(Shutdown::Write).expect("shutdown");
                    assert_eq!(read_to_end(&mut s), msg, "connection {i} came back altered");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a connection failed");
    }
}

/// `proxy_log_dropped` from the metrics endpoint.
fn log_dropped(metrics: SocketAddr) -> u64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "status {status:?}");
    prom_value(&body, "proxy_log_dropped")
        .unwrap_or_else(|| panic!("no proxy_log_dropped:\n{body}"))
}

/// A proxy logging a line per connection to a stderr that `after` spoils.
fn with_spoilt_stderr(workers: u32, after: AfterListening) -> (Backend, Proxy, SocketAddr) {
    let backend = Backend::echo();
    let mut a = workers_args(workers);
    a.extend(["--log-connections", "--metrics", "127.0.0.1:0"].map(String::from));
    let proxy = Proxy::start_to_then(backend.addr, &args(&a), after);
    let metrics = proxy.metrics_addr();
    (backend, proxy, metrics)
}

fn a_closed_stderr_is_survived(workers: u32) {
    const N: usize = 200;
    let (_backend, mut proxy, metrics) = with_spoilt_stderr(workers, AfterListening::Close);
    many_connections(proxy.addr, N);
    for _ in 0..3 {
        proxy.signal("USR1");
    }
    // Each closed connection's line was lost to EPIPE, and counted.
    wait_until("every connection's line counted as dropped", || {
        log_dropped(metrics) >= N as u64
    });
    many_connections(proxy.addr, 10);
    proxy.signal("TERM");
    let status = proxy.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status with stderr closed: {status}"
    );
}

#[test]
fn a_closed_stderr_neither_kills_nor_stops_the_proxy() {
    a_closed_stderr_is_survived(1);
}

#[test]
fn a_closed_stderr_neither_kills_nor_stops_the_proxy_with_two_workers() {
    a_closed_stderr_is_survived(2);
}

fn a_stalled_stderr_is_survived(workers: u32) {
    // A line is about 100 bytes: the 64 KiB pipe takes about 650 of them,
    // the logger's queue some more; the rest are dropped.
    const N: usize = 2500;
    let (_backend, mut proxy, metrics) = with_spoilt_stderr(workers, AfterListening::Stall);
    many_connections(proxy.addr, N);
    assert!(
        log_dropped(metrics) > 0,
        "no line dropped: the test proves nothing"
    );
    proxy.signal("TERM");
    let status = proxy.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status with stderr stalled: {status}"
    );
}

#[test]
fn a_stalled_stderr_never_stalls_the_relay() {
    a_stalled_stderr_is_survived(1);
}

#[test]
fn a_stalled_stderr_never_stalls_the_relay_with_two_workers() {
    a_stalled_stderr_is_survived(2);
}

/// The stream a stalled client is sent and never reads until the proxy
/// has gone: more than the kernel buffers on the way hold.
const STALLED_LEN: usize = 64 << 20;
/// Clients that never read while the proxy drains.
const STALLED: usize = 2;

/// `sig` while [`EXCHANGES`] echo exchanges are half-way and [`STALLED`]
/// clients are owed a stream they do not read: the exchanges finish
/// within the drain timeout, intact (or, on a machine too slow for it,
/// reset — never cut cleanly); the stalled clients are cut by the drain
/// timeout with a reset after an intact prefix; the exit status is 0.
fn stopped_during_heavy_transfer(workers: u32, sig: &str) {
    let stream = Arc::new(pattern(21, STALLED_LEN));
    let source = Arc::clone(&stream);
    // A client that opens with `S` is sent the stream; others are echoed.
    let backend = Backend::spawn(move |s| {
        let mut first = [0u8; 1];
        if s.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == b'S' {
            let mut s = s;
            let _ = s.write_all(&source);
        } else {
            echo_conn(s);
        }
    });
    let mut a = workers_args(workers);
    a.extend(["--drain-timeout", "4s"].map(String::from));
    let mut proxy = Proxy::start_to(backend.addr, &args(&a));
    let exchanges = Exchanges::start(proxy.addr);
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| {
            let mut s = connect(proxy.addr);
            s.write_all(b"S").expect("write");
            s
        })
        .collect();
    exchanges.halfway();
    for s in &stalled {
        s.peek(&mut [0u8; 1])
            .expect("the stream reaches the stalled client");
    }

    proxy.signal(sig);
    proxy
        .wait_line(|l| l.starts_with("proxy: shutting down"))
        .unwrap_or_else(|| panic!("no shutdown line after SIG{sig}: {}", proxy.tail()));
    let ends = exchanges.finish();
    let status = proxy.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status after SIG{sig}");

    assert!(
        ends.iter()
            .all(|e| matches!(e, End::Intact | End::Reset(_))),
        "exchanges: {ends:?}"
    );
    assert!(
        ends.contains(&End::Intact),
        "no exchange finished within the drain timeout; the test proves nothing: {ends:?}"
    );
    for (i, s) in stalled.iter_mut().enumerate() {
        match read_against(s, &stream) {
            End::Reset(n) => assert!(n < STALLED_LEN, "stalled client {i}"),
            other => panic!("stalled client {i}: the drain timeout ended it with {other:?}"),
        }
    }
    let last = Stats::parse(&proxy.wait_logged(|l| l.starts_with("stats:")));
    let opened = EXCHANGES + STALLED as u64;
    assert_eq!(last.get("accepted"), opened, "{last:?}");
    assert_eq!(last.get("closed"), opened, "{last:?}");
}

#[test]
fn sigterm_during_heavy_transfer_finishes_or_resets_every_exchange() {
    stopped_during_heavy_transfer(1, "TERM");
}

#[test]
fn sigterm_during_heavy_transfer_finishes_or_resets_every_exchange_with_two_workers() {
    stopped_during_heavy_transfer(2, "TERM");
}

#[test]
fn sigint_during_heavy_transfer_finishes_or_resets_every_exchange() {
    stopped_during_heavy_transfer(1, "INT");
}

#[test]
fn sigint_during_heavy_transfer_finishes_or_resets_every_exchange_with_two_workers() {
    stopped_during_heavy_transfer(2, "INT");
}
