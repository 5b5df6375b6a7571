//! What the end-to-end tests of the workspace's binaries share: a real
//! child process whose stderr is collected line by line (for its
//! `listening on ADDR` line, its logs and its stats), killed on drop, and
//! sockets with timeouts. Every wait is bounded, so a hang fails the test.

pub mod workspace;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running child, killed on drop.
pub struct Child {
    pub child: std::process::Child,
    name: String,
    wait: Duration,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Child {
    /// Starts `cmd` with stderr piped (stdin and stdout null); `wait`
    /// bounds every later wait on it.
    pub fn spawn(name: &str, cmd: &mut Command, wait: Duration) -> Child {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log2.lock().expect("log").push(line.clone());
                // Nobody may be listening any more; keep collecting the log.
                let _ = tx.send(line);
            }
        });
        Child {
            child,
            name: name.to_string(),
            wait,
            lines,
            log,
        }
    }

    /// Waits for the `listening on ADDR` line and returns the address.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let line = self
            .wait_line(|l| l.starts_with("listening on "))
            .unwrap_or_else(|| {
                panic!(
                    "{} never said `listening on`; stderr: {:?}",
                    self.name,
                    self.log()
                )
            });
        line["listening on ".len()..]
            .parse()
            .expect("listen address")
    }

    /// Waits (up to the wait given at spawn) for a new stderr line
    /// matching `pred`.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + self.wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(l) if pred(&l) => return Some(l),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Every stderr line seen so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `USR1`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (up to the wait given at spawn) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; stderr: {:?}",
                self.name,
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `addr` with `wait` as the read and write timeout. The
/// connect itself is a plain one: `connect_timeout` polls for completion
/// and reports a reset that came right after the handshake as a failed
/// connect, where a test wants to read that reset.
pub fn connect(addr: SocketAddr, wait: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(wait)).expect("read timeout");
    s.set_write_timeout(Some(wait)).expect("write timeout");
    s
}
