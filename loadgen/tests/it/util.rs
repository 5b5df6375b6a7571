//! Shared helpers for loadgen's end-to-end tests: the real `echo-backend`
//! and `proxy` binaries (other packages', built on demand by
//! [`testkit::workspace::bin`]) and python's http.server as
//! [`testkit::Child`]ren on port 0, small misbehaving servers on real
//! sockets, and loadgen itself run to completion with a reader for its
//! JSON report. Every wait has a timeout, and every child is killed on
//! drop.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child as Process, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use testkit::Child;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `loadgen` binary under test.
pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadgen"))
}

/// `echo-backend --mode MODE` on 127.0.0.1 port 0, and its address.
pub fn echo_backend(mode: &str, extra: &[&str]) -> (Child, SocketAddr) {
    let mut cmd = Command::new(testkit::workspace::bin("echo-backend", "echo-backend"));
    cmd.args(["--listen", "127.0.0.1:0", "--mode", mode])
        .args(extra);
    listening("echo-backend", &mut cmd)
}

/// The proxy on 127.0.0.1 port 0 in front of `backend`, and its address.
pub fn proxy(backend: SocketAddr, extra: &[&str]) -> (Child, SocketAddr) {
    let mut cmd = Command::new(testkit::workspace::bin("proxy", "proxy"));
    cmd.args(["-l", "127.0.0.1", "-p", "0", "-b", &backend.to_string()])
        .args(extra);
    listening("proxy", &mut cmd)
}

/// Starts `cmd` and waits for its `listening on ADDR:PORT` line.
fn listening(name: &str, cmd: &mut Command) -> (Child, SocketAddr) {
    let mut child = Child::spawn(name, cmd, WAIT);
    let addr = child.wait_listening();
    (child, addr)
}

/// `python3 -u -m http.server 0 --bind 127.0.0.1`, and its address. Its
/// banner goes to stdout, so stdout is sent to the stderr that
/// [`Child`] reads.
pub fn python_http_server() -> (Child, SocketAddr) {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "exec python3 -u -m http.server 0 --bind 127.0.0.1 1>&2",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    let mut child = Child::spawn("python3 -m http.server", &mut cmd, WAIT);
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let banner = child
        .wait_line(|l| l.starts_with("Serving HTTP on "))
        .expect("python never said `Serving HTTP`");
    let port: u16 = banner
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("port in python's banner");
    (child, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A finished loadgen run.
pub struct Run {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` report.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The report's entry for target `i`.
    pub fn target(&self, i: usize) -> Value {
        self.json()["targets"][i].clone()
    }
}

/// Runs loadgen with `args` to completion (failing the test after [`WAIT`]).
pub fn loadgen(args: &[&str]) -> Run {
    let child = Command::new(loadgen_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    finish(child)
}

/// Waits for `child` (up to [`WAIT`]) and collects its output.
pub fn finish(mut child: Process) -> Run {
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "loadgen did not finish in {WAIT:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("output");
    Run {
        status: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Counter `name` of `t["errors"]`.
pub fn errors(t: &Value, name: &str) -> u64 {
    t["errors"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no errors.{name} in {t}"))
}

/// Sum of all error counters of `t`.
pub fn total_errors(t: &Value) -> u64 {
    t["errors"]
        .as_object()
        .expect("errors object")
        .values()
        .map(|v| v.as_u64().expect("count"))
        .sum()
}

/// A thread-per-connection echo server that flips one bit of byte
/// `corrupt_at` of each connection's stream (if given). Lives as long as
/// the test process.
pub fn std_echo(corrupt_at: Option<u64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let mut buf = [0u8; 16384];
                let mut pos = 0u64;
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if let Some(at) = corrupt_at {
                        if at >= pos && at < pos + n as u64 {
                            buf[(at - pos) as usize] ^= 0x01;
                        }
                    }
                    pos += n as u64;
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A server that accepts and reads but never answers.
pub fn std_silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// An address on which nothing listens (bound, then closed).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
