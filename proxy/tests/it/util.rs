//! Shared helpers for the proxy's end-to-end tests: start the real binary
//! on port 0, backends that behave (or misbehave) on real sockets, and
//! readers of the proxy's own accounting. Every wait has a timeout.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The engine this test binary runs every proxy with, from the binary's
/// own name: `it` tests the epoll engine, `it_uring` (the same modules,
/// see `tests/it_uring/main.rs`) the io_uring one. A failing test's
/// binary so names its engine.
pub const ENGINE: &str = match env!("CARGO_CRATE_NAME").as_bytes() {
    b"it" => "epoll",
    b"it_uring" => "uring",
    _ => panic!("a test binary of the proxy without an engine: name it in util::ENGINE"),
};

/// The proxy binary, with no engine chosen: only for the tests of the
/// `--engine` option itself. Every other start goes through
/// [`proxy_command`] or [`proxy_argv`].
pub const BIN: &str = env!("CARGO_BIN_EXE_proxy");

/// The proxy's program and its engine flag, for a wrapper's command line
/// (`prlimit --nofile=64:64 <these> ARGS`); the proxy's own arguments follow.
pub fn proxy_argv() -> [&'static str; 3] {
    [BIN, "--engine", ENGINE]
}

/// The proxy as a command with `--engine` [`ENGINE`]: the one way the
/// tests start it directly.
pub fn proxy_command() -> Command {
    let [bin, engine @ ..] = proxy_argv();
    let mut cmd = Command::new(bin);
    cmd.args(engine);
    cmd
}

/// A running `proxy` process, killed on drop; its process handling
/// (stderr lines, signals, exit) comes from [`testkit::Child`].
pub struct Proxy {
    proc: testkit::Child,
    pub addr: SocketAddr,
}

impl std::ops::Deref for Proxy {
    type Target = testkit::Child;
    fn deref(&self) -> &testkit::Child {
        &self.proc
    }
}

impl std::ops::DerefMut for Proxy {
    fn deref_mut(&mut self) -> &mut testkit::Child {
        &mut self.proc
    }
}

impl Proxy {
    /// Starts the proxy with `args` (add `-p 0` yourself if you want a
    /// free port; `start_to` does) and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Proxy {
        Self::start_with(proxy_command(), args)
    }

    /// Starts `cmd` (the proxy, perhaps under `prlimit`) with `args`.
    pub fn start_with(mut cmd: Command, args: &[&str]) -> Proxy {
        let mut proc = testkit::Child::spawn("proxy", cmd.args(args), WAIT);
        let addr = proc.wait_listening();
        Proxy { proc, addr }
    }

    /// Starts the proxy on 127.0.0.1 port 0 in front of `backend`.
    pub fn start_to(backend: SocketAddr, extra: &[&str]) -> Proxy {
        Self::start_to_then(backend, extra, testkit::AfterListening::Read)
    }

    /// Starts the proxy on 127.0.0.1 port 0 in front of each of
    /// `backends` (in `-b` form), in order.
    pub fn start_to_all(backends: &[&str], extra: &[&str]) -> Proxy {
        let mut args = vec!["-l", "127.0.0.1", "-p", "0"];
        for b in backends {
            args.extend(["-b", b]);
        }
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Like [`Proxy::start_to`], but after the `listening on` line the
    /// proxy's stderr is closed or never read again, as `after` says.
    pub fn start_to_then(
        backend: SocketAddr,
        extra: &[&str],
        after: testkit::AfterListening,
    ) -> Proxy {
        let b = backend.to_string();
        let mut args = vec!["-l", "127.0.0.1", "-p", "0", "-b", b.as_str()];
        args.extend_from_slice(extra);
        let mut cmd = proxy_command();
        let mut proc = testkit::Child::spawn_then("proxy", cmd.args(&args), WAIT, after);
        let addr = proc.wait_listening();
        Proxy { proc, addr }
    }

    /// The address of the metrics endpoint, from the `metrics on` line
    /// (printed before `listening on`).
    pub fn metrics_addr(&self) -> SocketAddr {
        let line = self.wait_logged(|l| l.starts_with("metrics on http://"));
        line.trim_start_matches("metrics on http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap_or_else(|e| panic!("metrics address in {line:?}: {e}"))
    }

    /// The proxy's counters, asked for with SIGUSR1.
    pub fn stats(&mut self) -> Stats {
        self.signal("USR1");
        let line = self
            .wait_line(|l| l.starts_with("stats:"))
            .expect("stats line after SIGUSR1");
        Stats::parse(&line)
    }

    /// Waits (up to [`WAIT`]) until `pred` holds for the counters.
    pub fn wait_stats(&mut self, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last stats: {s:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory from `/proc/PID/smaps_rollup`, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.usage().rss_kib
    }

    /// Open descriptors, from `/proc/PID/fd`.
    pub fn fd_count(&self) -> usize {
        self.usage().fds as usize
    }

    fn usage(&self) -> testkit::proc::Usage {
        testkit::proc::usage(self.pid()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The proxy's counters from one `stats:` line.
#[derive(Debug, Clone)]
pub struct Stats(pub HashMap<String, u64>);

impl Stats {
    pub fn parse(line: &str) -> Stats {
        let map = line
            .trim_start_matches("stats:")
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().expect("number")))
            .collect();
        Stats(map)
    }

    /// The engine's calls that wait for events, where an idle worker
    /// sleeps: `epoll_wait` under epoll; under uring `io_uring_enter`,
    /// and the side epoll's rare polls.
    pub fn waits(&self) -> u64 {
        if ENGINE == "uring" {
            self.get("sys_uring_enter") + self.get("sys_epoll_wait")
        } else {
            self.get("sys_epoll_wait")
        }
    }

    /// Whether a stream went through the engine's bulk path: splice(2)
    /// calls, under either engine.
    pub fn spliced(&self) -> bool {
        self.get("sys_splice") > 0
    }

    /// Buffers and pipes lent out: what the proxy holds for bytes in flight.
    pub fn held(&self) -> u64 {
        self.get("pool_lent") + self.get("large_pool_lent") + self.get("pipes_lent")
    }

    pub fn get(&self, k: &str) -> u64 {
        *self
            .0
            .get(k)
            .unwrap_or_else(|| panic!("no stat {k} in {:?}", self.0))
    }
}

/// A backend on 127.0.0.1:0 that runs `handler` on a thread per
/// connection. Stops accepting when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn spawn<F>(handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Self::spawn_on("127.0.0.1:0", handler)
    }

    pub fn spawn_on<F>(bind: &str, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(bind).expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(0));
        let (stop2, acc2) = (Arc::clone(&stop), Arc::clone(&accepted));
        let handler = Arc::new(handler);
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        *acc2.lock().expect("count") += 1;
                        let h = Arc::clone(&handler);
                        thread::spawn(move || h(s));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// A backend that echoes every byte, then closes its side after the
    /// client's FIN.
    pub fn echo() -> Backend {
        Backend::spawn(echo_conn)
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.lock().expect("count")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Echoes until EOF, then shuts down its write side.
pub fn echo_conn(mut s: TcpStream) {
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

/// Connects to `addr` with read/write timeouts of [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    testkit::connect(addr, WAIT)
}

/// Reads until EOF (or the read timeout fails the test).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to end");
    out
}

pub use testkit::pattern;

// Helpers for the relay, half-close and reset tests.

impl Proxy {
    /// Waits (up to [`WAIT`]) until no connection is open and no buffer is
    /// lent: the leak check after every connection has ended.
    pub fn wait_idle(&mut self) -> Stats {
        self.wait_stats("active == 0 and pool_lent == 0", |s| {
            s.get("active") == 0 && s.get("pool_lent") == 0
        })
    }

    /// The stderr lines seen so far that contain `text`.
    pub fn lines_with(&self, text: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }

    /// Waits (up to [`WAIT`]) for a new stderr line containing `text`,
    /// and returns it; fails with the stderr tail otherwise.
    pub fn next_line_with(&mut self, text: &str) -> String {
        self.wait_line(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?}: {}", self.tail()))
    }

    /// Waits (up to [`WAIT`]) until some stderr line seen so far matches
    /// `pred`, and returns it. Unlike [`Proxy::wait_line`] it also finds
    /// lines that an earlier wait has already passed over.
    pub fn wait_logged(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no matching stderr line; stderr: {:?}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to [`WAIT`]) until the proxy holds exactly `n`
    /// descriptors, and fails with the last count otherwise.
    pub fn wait_fd_count(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.fd_count();
            if now == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "proxy holds {now} descriptors, expected {n}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

pub use testkit::fault::refusing_addr as dead_addr;

/// Closes `s` with a reset instead of a FIN (`SO_LINGER` on, timeout 0).
pub fn reset(s: TcpStream) {
    netio::sys::socket::set_linger_zero(&s).expect("SO_LINGER");
    drop(s);
}

/// Whether an I/O error is a read or write timeout, i.e. a hang.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

// Helpers for the limits, lifecycle and command-line tests.

/// A one-way gate: backend handlers wait on it until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every waiter, present and future, through.
    pub fn open(&self) {
        let (lock, cv) = &*self.0;
        *lock.lock().expect("gate") = true;
        cv.notify_all();
    }

    /// Waits until the gate opens, up to [`WAIT`]; false if it never did.
    pub fn wait(&self) -> bool {
        let (lock, cv) = &*self.0;
        let guard = lock.lock().expect("gate");
        let (guard, _) = cv
            .wait_timeout_while(guard, WAIT, |open| !*open)
            .expect("gate");
        *guard
    }
}

/// Waits (up to [`WAIT`]) until `cond` holds, polling every 10 ms.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends one byte on `s` and checks that the same byte comes back.
pub fn echo_byte(s: &mut TcpStream, b: u8) {
    s.write_all(&[b]).expect("write one byte");
    let mut got = [0u8; 1];
    s.read_exact(&mut got).expect("read the echoed byte");
    assert_eq!(got[0], b, "echo returned a different byte");
}

/// `(thread name, voluntary context switches)` for every thread of `pid`,
/// from `/proc/PID/task/*/status`.
pub fn thread_switches(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc task");
    for task in tasks {
        let path = task.expect("task entry").path();
        // A thread may exit between listing and reading; skip it then.
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let name = field("Name:").unwrap_or_default();
        let switches = field("voluntary_ctxt_switches:")
            .and_then(|v| v.parse().ok())
            .expect("voluntary_ctxt_switches");
        out.push((name, switches));
    }
    out
}

/// Voluntary context switches of all threads of `pid`, summed.
// uring: io_uring's kernel workers (iou-wrk-*, iou-sqp-*) are tasks of
// the process and count here: an idle uring proxy must not wake them
// either. The lead confirms none is left waking when idle.
pub fn voluntary_switches(pid: u32) -> u64 {
    thread_switches(pid).iter().map(|(_, n)| n).sum()
}

/// Voluntary context switches of the thread of `pid` called `name`.
pub fn switches_of(pid: u32, name: &str) -> u64 {
    thread_switches(pid)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no thread named {name} in process {pid}"))
}

/// Whether a socket listens on `addr`, from `/proc/net/tcp` (or `tcp6`).
pub fn is_listening(addr: SocketAddr) -> bool {
    testkit::proc::tcp_sockets("self")
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .any(|s| s.local == addr && s.state == testkit::proc::TcpState::Listen)
}

/// `GET path` over HTTP/1.1 with `Connection: close`; returns the status
/// line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let raw = String::from_utf8(read_to_end(&mut s)).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, body.to_string())
}

/// The value of the sample `name` in Prometheus text, if present once.
pub fn prom_value(body: &str, name: &str) -> Option<u64> {
    let mut found = body.lines().filter_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse::<u64>().expect("integer sample"))
    });
    let v = found.next();
    assert!(found.next().is_none(), "sample {name} appears twice");
    v
}

/// Whether every thread of `pid` is asleep (state `S`), i.e. blocked in a
/// system call rather than running or waiting for a CPU.
pub fn all_threads_sleeping(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc task");
    tasks.into_iter().all(|task| {
        let path = task.expect("task entry").path();
        std::fs::read_to_string(path.join("status")).map_or(true, |status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|v| v.trim_start().starts_with('S'))
        })
    })
}

/// Waits (up to [`WAIT`]) until every thread of `pid` is asleep and none
/// has gone to sleep again for 100 ms, and returns the settled sum of
/// voluntary context switches.
pub fn settled_switches(pid: u32) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut last = voluntary_switches(pid);
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = voluntary_switches(pid);
        if now == last && all_threads_sleeping(pid) && voluntary_switches(pid) == now {
            return now;
        }
        assert!(Instant::now() < deadline, "process {pid} never went quiet");
        last = now;
    }
}
