//! Shared helpers for echo-backend's end-to-end tests: start the real
//! binary on port 0, connect with timeouts, and read HTTP responses. Every
//! wait has a timeout so that a hang fails fast.

use std::io::{BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running `echo-backend`, killed on drop; its process handling
/// (stderr lines, signals, exit) comes from [`testkit::Child`].
pub struct Backend {
    proc: testkit::Child,
    pub addr: SocketAddr,
}

impl std::ops::Deref for Backend {
    type Target = testkit::Child;
    fn deref(&self) -> &testkit::Child {
        &self.proc
    }
}

impl std::ops::DerefMut for Backend {
    fn deref_mut(&mut self) -> &mut testkit::Child {
        &mut self.proc
    }
}

impl Backend {
    /// Starts `echo-backend --listen 127.0.0.1:0 ARGS…` and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Backend {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-backend"));
        cmd.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut proc = testkit::Child::spawn("echo-backend", &mut cmd, WAIT);
        let addr = proc.wait_listening();
        Backend { proc, addr }
    }

    /// A blocking connection with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }
}

/// Connects to `addr` with [`WAIT`] as the read and write timeout.
pub fn connect(addr: SocketAddr) -> TcpStream {
    testkit::connect(addr, WAIT)
}

/// Reads until EOF; fails on a timeout or any error.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Asserts that the next read sees EOF (not data, not a reset).
pub fn expect_eof(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("expected EOF, got data"),
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// `n` bytes that do not repeat with any power-of-two period, so that a
/// dropped or repeated chunk cannot look right.
pub fn payload(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then a `Content-Length` body) from `r`.
pub fn read_response(r: &mut impl BufRead) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.ends_with("\r\n"), "truncated status line {line:?}");
    let mut parts = line.trim_end().splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        assert!(h.ends_with("\r\n"), "truncated header {h:?}");
        if h == "\r\n" {
            break;
        }
        let (name, value) = h.trim_end().split_once(':').expect("header colon");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .expect("numeric content-length");
    resp.body.resize(len, 0);
    r.read_exact(&mut resp.body).expect("body");
    resp
}

/// Writes `data` from a thread while this one reads the echo; returns
/// what came back before EOF. The writer half-closes when done.
pub fn round_trip(mut s: TcpStream, data: Arc<Vec<u8>>) -> Vec<u8> {
    let mut w = s.try_clone().expect("clone");
    let writer = thread::spawn(move || {
        w.write_all(&data).expect("write");
        w.shutdown(std::net::Shutdown::Write).expect("shutdown");
    });
    let got = read_to_eof(&mut s);
    writer.join().expect("writer");
    got
}

/// Whether an error is a read/write timeout.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
