//! Shared helpers for loadgen's end-to-end tests: the real `loadgen`,
//! `echo-backend` and `proxy` binaries on port 0, small misbehaving
//! backends on real sockets, and a reader for the JSON report. Every wait
//! has a timeout, and every child is killed on drop.
//!
//! `echo-backend` and `proxy` are other packages' binaries, which Cargo
//! only builds for their own tests. So the first test that needs one runs
//! `$CARGO build -p PKG --bin NAME` (a no-op when `cargo test --workspace`
//! has built it already) and takes it from the directory the test
//! executables live in (`target/debug`): the same profile and target
//! directory as this test, never a stale copy elsewhere.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `loadgen` binary under test.
pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadgen"))
}

/// Builds (once per test process) and locates another package's binary.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    // target/<profile>/deps/<test exe> -> target/<profile>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let path = profile_dir.join(bin);
    if !built.iter().any(|b| b == bin) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p {package} --bin {bin} failed");
        built.push(bin.to_string());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A child process that prints `listening on ADDR:PORT`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `cmd` and waits for `listening on ADDR:PORT` on stderr.
    pub fn start(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let addr = wait_for_line(stderr, "listening on ")
            .unwrap_or_else(|| panic!("{cmd:?} never said `listening on`"));
        Server {
            child,
            addr: addr.trim().parse().expect("listen address"),
        }
    }

    /// `echo-backend --mode MODE` on 127.0.0.1 port 0.
    pub fn echo_backend(mode: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new(workspace_bin("echo-backend", "echo-backend"));
        cmd.args(["--listen", "127.0.0.1:0", "--mode", mode])
            .args(extra);
        Server::start(cmd)
    }

    /// The proxy on 127.0.0.1 port 0 in front of `backend`.
    pub fn proxy(backend: SocketAddr, extra: &[&str]) -> Server {
        let mut cmd = Command::new(workspace_bin("proxy", "proxy"));
        cmd.args(["-l", "127.0.0.1", "-p", "0", "-b", &backend.to_string()])
            .args(extra);
        Server::start(cmd)
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads lines from `from` on a thread until one contains `marker`;
/// returns what follows the marker. Keeps draining afterwards so the child
/// never blocks on a full pipe.
fn wait_for_line(from: impl Read + Send + 'static, marker: &'static str) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(i) = line.find(marker) {
                    let _ = tx.send(line[i + marker.len()..].to_string());
                    sent = true;
                }
            }
        }
    });
    rx.recv_timeout(WAIT).ok()
}

/// `python3 -u -m http.server 0 --bind 127.0.0.1`, killed on drop.
pub fn python_http_server() -> Server {
    let mut child = Command::new("python3")
        .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 -m http.server");
    let stdout = child.stdout.take().expect("stdout");
    // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
    let rest = wait_for_line(stdout, " port ").expect("python never said `Serving HTTP`");
    let port: u16 = rest
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in python's banner");
    Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
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
pub fn finish(mut child: Child) -> Run {
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

/// Whether a connection to `addr` is accepted (for sanity checks).
pub fn reachable(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}
