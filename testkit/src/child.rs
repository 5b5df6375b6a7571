//! A child process behind a guard: its stderr read line by line on a
//! thread (kept whole for `log`, quoted by its tail in errors), every wait
//! bounded, and on drop the child and everything it started killed and
//! reaped.

use crate::proc;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{self, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How many of the last stderr lines an error quotes.
const TAIL_LINES: usize = 20;
/// How often a wait looks whether the child is still alive.
const POLL: Duration = Duration::from_millis(20);

/// What the stderr reader does once the child has printed its
/// `listening on` line: the tests of a proxy whose log pipe has gone bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterListening {
    /// Keeps reading every line (what [`Child::spawn`] does).
    Read,
    /// Closes the read end: every later write to stderr fails with `EPIPE`.
    Close,
    /// Keeps the pipe open but never reads it again: once its buffer is
    /// full, every later write to stderr blocks.
    Stall,
}

/// A running child, killed on drop together with its own children.
pub struct Child {
    /// The process, for what this type does not wrap.
    pub child: process::Child,
    name: String,
    wait: Duration,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
    /// Dropped with the child: lets a stalled reader go.
    _release: mpsc::Sender<()>,
}

impl Child {
    /// Starts `cmd` with stdin and stdout null and stderr piped; `wait`
    /// bounds every later wait on it. Panics if it cannot start.
    pub fn spawn(name: &str, cmd: &mut Command, wait: Duration) -> Child {
        Child::try_spawn(name, cmd.stdout(Stdio::null()), wait).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `cmd` with stdin null and stderr piped; stdout is left as
    /// the caller set it (the workbench pipes loadgen's JSON report).
    /// `wait` bounds the waits that take no timeout of their own.
    pub fn try_spawn(name: &str, cmd: &mut Command, wait: Duration) -> Result<Child, String> {
        Child::try_spawn_then(name, cmd, wait, AfterListening::Read)
    }

    /// Like [`Child::spawn`], but what happens to stderr after the
    /// `listening on` line is `after`. Lines after it are not collected
    /// (unless `after` is [`AfterListening::Read`]).
    pub fn spawn_then(
        name: &str,
        cmd: &mut Command,
        wait: Duration,
        after: AfterListening,
    ) -> Child {
        Child::try_spawn_then(name, cmd.stdout(Stdio::null()), wait, after)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_spawn_then(
        name: &str,
        cmd: &mut Command,
        wait: Duration,
        after: AfterListening,
    ) -> Result<Child, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let Some(stderr) = child.stderr.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name}: no stderr pipe"));
        };
        let (tx, lines) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = Arc::clone(&log);
        let reader = thread::spawn(move || {
            let mut stderr = BufReader::new(stderr);
            for line in stderr.by_ref().lines().map_while(Result::ok) {
                let last = after != AfterListening::Read && line.starts_with("listening on ");
                log2.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line.clone());
                // Nobody may be listening any more; keep collecting the log.
                let _ = tx.send(line);
                if last {
                    break;
                }
            }
            drop(tx);
            if after == AfterListening::Stall {
                // Holds the pipe open, unread, until the child is dropped.
                let _ = released.recv();
            }
        });
        Ok(Child {
            child,
            name: name.to_string(),
            wait,
            lines,
            log,
            reader,
            _release: release,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line seen so far.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last lines the child wrote to stderr, joined with ` | `.
    pub fn tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log[log.len().saturating_sub(TAIL_LINES)..].join(" | ")
    }

    /// Fails, quoting the stderr tail, if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => {
                // What it wrote just before exiting may still be on its
                // way through the reader thread; a grandchild holding the
                // pipe open must not keep us here.
                let deadline = Instant::now() + Duration::from_millis(500);
                while !self.reader.is_finished() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(format!(
                    "{} exited ({st}); stderr: {}",
                    self.name,
                    self.tail()
                ))
            }
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Waits (up to the wait given at spawn) for a new stderr line
    /// matching `pred`; `None` on a timeout or when the child is gone.
    pub fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.next_line("a line it was waited for", pred, self.wait)
            .ok()
    }

    /// Waits up to `timeout` for a new stderr line starting with `prefix`
    /// and returns the rest of it, trimmed. Fails as soon as the child
    /// exits without printing it.
    pub fn try_wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let line = self.next_line(&format!("\"{prefix}\""), |l| l.starts_with(prefix), timeout)?;
        Ok(line[prefix.len()..].trim().to_string())
    }

    /// Waits for the `listening on ADDR` line and returns the address.
    pub fn wait_listening(&mut self) -> SocketAddr {
        self.try_wait_listening().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits (up to the wait given at spawn) for the `listening on ADDR`
    /// line and parses the address.
    pub fn try_wait_listening(&mut self) -> Result<SocketAddr, String> {
        let rest = self.try_wait_line("listening on ", self.wait)?;
        rest.parse()
            .map_err(|_| format!("{} printed an unparsable address \"{rest}\"", self.name))
    }

    /// Waits (up to the wait given at spawn) until something accepts TCP
    /// connections at `addr`: for programs that print no `listening on`.
    pub fn try_wait_port(&mut self, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + self.wait;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "{} never listened on {addr} within {:?}; stderr: {}",
                    self.name,
                    self.wait,
                    self.tail()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `USR1`).
    pub fn signal(&self, sig: &str) {
        self.try_signal(sig).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Sends a signal by name, with `kill(1)`.
    pub fn try_signal(&self, sig: &str) -> Result<(), String> {
        kill(sig, &[self.pid()]).map_err(|e| format!("{}: {e}", self.name))
    }

    /// Waits (up to the wait given at spawn) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let wait = self.wait;
        self.try_wait_exit(wait).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn try_wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.exit_within(timeout, None)
    }

    /// Waits up to `timeout` for the process to exit by itself; with
    /// `on_line`, the stderr lines arriving meanwhile go to it (without,
    /// they stay queued for a later wait).
    fn exit_within(
        &mut self,
        timeout: Duration,
        mut on_line: Option<&mut dyn FnMut(&str)>,
    ) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => match on_line.as_mut() {
                    Some(f) => match self.lines.recv_timeout(POLL) {
                        Ok(l) => f(&l),
                        Err(RecvTimeoutError::Timeout) => {}
                        // The reader is done: nothing more to hand on.
                        Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
                    },
                    None => thread::sleep(POLL),
                },
                Ok(None) => {
                    return Err(format!(
                        "{} still running after {timeout:?}; stderr: {}",
                        self.name,
                        self.tail()
                    ))
                }
                Err(e) => return Err(format!("{}: {e}", self.name)),
            }
        }
    }

    /// Waits up to `timeout` for the child to exit by itself and returns
    /// its status and everything it wrote to stdout (when the caller piped
    /// it; empty otherwise). A child still running then is killed.
    pub fn wait_output(self, timeout: Duration) -> Result<(ExitStatus, String), String> {
        self.wait_output_watching(timeout, |_| {})
    }

    /// Like [`Child::wait_output`], and every stderr line not yet waited
    /// for is handed to `on_line` as it arrives (a progress line drawn
    /// while the child runs).
    pub fn wait_output_watching(
        mut self,
        timeout: Duration,
        mut on_line: impl FnMut(&str),
    ) -> Result<(ExitStatus, String), String> {
        let deadline = Instant::now() + timeout;
        let (tx, out) = mpsc::channel();
        if let Some(mut stdout) = self.child.stdout.take() {
            thread::spawn(move || {
                let mut s = String::new();
                let _ = stdout.read_to_string(&mut s);
                let _ = tx.send(s);
            });
        } else {
            let _ = tx.send(String::new());
        }
        let status = self.exit_within(timeout, Some(&mut on_line))?;
        // What it wrote just before exiting may still be queued.
        while let Ok(l) = self.lines.try_recv() {
            on_line(&l);
        }
        // Whatever still holds the pipe open (a grandchild) must not hang us.
        let left = deadline.saturating_duration_since(Instant::now());
        let stdout = out
            .recv_timeout(left.max(Duration::from_secs(1)))
            .map_err(|_| format!("{} exited but its stdout stayed open", self.name))?;
        Ok((status, stdout))
    }

    /// The next stderr line matching `pred` within `timeout`; fails when
    /// the child exits first, quoting what it said.
    fn next_line(
        &mut self,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) if pred(&l) => return Ok(l),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.check_alive() {
                        // Lines it wrote just before exiting may still be
                        // on their way from the reader thread.
                        return self.drained(&pred).ok_or(e);
                    }
                    if left.is_zero() {
                        return Err(format!(
                            "{} did not print {what} within {timeout:?}; stderr: {}",
                            self.name,
                            self.tail()
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.try_wait_exit(Duration::from_millis(500));
                    self.check_alive()?;
                    return Err(format!(
                        "{} closed its stderr before printing {what}; stderr: {}",
                        self.name,
                        self.tail()
                    ));
                }
            }
        }
    }

    /// A line matching `pred` among those still queued after an exit.
    fn drained(&mut self, pred: &impl Fn(&str) -> bool) -> Option<String> {
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
            if pred(&l) {
                return Some(l);
            }
        }
        None
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Only a child not yet reaped still owns its pid: once reaped, the
        // number may belong to another process.
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = self.pid();
            if !proc::descendants(pid).is_empty() {
                // Stopped, a parent cannot replace the children killed
                // under it (nginx's master respawns its workers), and the
                // list below cannot change.
                let _ = kill("STOP", &[pid]);
                let _ = kill("KILL", &proc::descendants(pid));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `kill -SIG PIDS…`.
fn kill(sig: &str, pids: &[u32]) -> Result<(), String> {
    if pids.is_empty() {
        return Ok(());
    }
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pids:?} failed ({st})"))
    }
}
