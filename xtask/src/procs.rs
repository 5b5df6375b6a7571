//! Child processes and what `/proc` says about them: every child is
//! started behind a kill-on-drop guard, its listening port read from its
//! `listening on` line within a timeout, and its stderr kept so that a
//! failure can be reported with the tail of what it said.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a child may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running child, killed (and reaped) when dropped.
pub struct Guard {
    pub name: String,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    lines: Receiver<String>,
}

impl Guard {
    /// Spawns `cmd` with stderr captured (and stdout too, unless the caller
    /// set it).
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Guard, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {name} ({:?}): {e}", cmd.get_program()))?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = mpsc::channel();
        let t2 = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut t) = t2.lock() {
                    if t.len() == 20 {
                        t.pop_front();
                    }
                    t.push_back(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        Ok(Guard {
            name: name.to_string(),
            child,
            tail,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the child wrote to stderr, joined.
    pub fn tail(&self) -> String {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default()
    }

    /// Fails with the stderr tail if the child has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Err(format!(
                "{} exited ({st}); stderr: {}",
                self.name,
                self.tail()
            )),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Waits for a stderr line starting with `prefix` and returns the rest.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check_alive()?;
                    if left.is_zero() {
                        return Err(format!(
                            "{} did not print \"{prefix}\" within {timeout:?}; stderr: {}",
                            self.name,
                            self.tail()
                        ));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50));
                    self.check_alive()?;
                    return Err(format!(
                        "{} closed stderr; stderr: {}",
                        self.name,
                        self.tail()
                    ));
                }
            }
        }
    }

    /// Waits for `listening on ADDR` and parses the address.
    pub fn wait_listening(&mut self) -> Result<SocketAddr, String> {
        let rest = self.wait_line("listening on ", START_TIMEOUT)?;
        rest.parse()
            .map_err(|_| format!("{} printed an unparsable address \"{rest}\"", self.name))
    }

    /// Waits for the child to exit by itself, up to `timeout`; output on stdout.
    pub fn wait_output(
        mut self,
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String), String> {
        let mut stdout = self.child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(out) = stdout.as_mut() {
                let _ = out.read_to_string(&mut s);
            }
            s
        });
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    let out = reader.join().unwrap_or_default();
                    return Ok((st, out));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
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
}

impl Drop for Guard {
    fn drop(&mut self) {
        // nginx's workers outlive a killed master and would go on using
        // CPU in later measurements: kill the children first.
        let kids: Vec<String> = children(self.child.id())
            .iter()
            .map(u32::to_string)
            .collect();
        if !kids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&kids)
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1, for peers that cannot report port 0.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_port(addr: SocketAddr, who: &mut Guard) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        who.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} never listened on {addr}; stderr: {}",
                who.name,
                who.tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resources of a process (summed over its threads), from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub cpu_ticks: u64,
    /// The user-space part of `cpu_ticks`.
    pub user_ticks: u64,
    pub voluntary_switches: u64,
    pub fds: u64,
}

/// Reads [`Usage`] for `pid`; children of `pid` (nginx workers) are added.
pub fn usage(pid: u32) -> Result<Usage, String> {
    let mut u = usage_one(pid)?;
    for child in children(pid) {
        if let Ok(c) = usage_one(child) {
            u.rss_kib += c.rss_kib;
            u.cpu_ticks += c.cpu_ticks;
            u.user_ticks += c.user_ticks;
            u.voluntary_switches += c.voluntary_switches;
            u.fds += c.fds;
        }
    }
    Ok(u)
}

fn usage_one(pid: u32) -> Result<Usage, String> {
    let read = |p: String| std::fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"));
    let rollup = read(format!("/proc/{pid}/smaps_rollup"))?;
    let rss_kib = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no Rss in smaps_rollup")?;
    let stat = read(format!("/proc/{pid}/stat"))?;
    let after = stat.rfind(')').map(|i| &stat[i + 2..]).ok_or("bad stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let cpu_ticks = num(11) + num(12);
    let user_ticks = num(11);
    let mut voluntary_switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                voluntary_switches += s
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(Usage {
        rss_kib,
        cpu_ticks,
        user_ticks,
        voluntary_switches,
        fds,
    })
}

fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Kernel TCP memory in use, in KiB (`/proc/net/sockstat`, `TCP: … mem N` pages).
pub fn kernel_tcp_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.iter()
                .position(|w| *w == "mem")
                .and_then(|i| f.get(i + 1)?.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

/// Clock ticks per second for `/proc/PID/stat` CPU times.
pub const TICKS_PER_SEC: f64 = 100.0;

/// The hard open-files limit of this process (what children inherit).
pub fn nofile_hard() -> u64 {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(1024)
}

/// Whether an executable is on PATH (or at an absolute path).
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        return Path::new(prog).exists().then(|| prog.into());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_guard_kills_the_childs_children_too() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo \"child $!\" >&2; wait"]);
        let mut g = Guard::spawn("sh", &mut cmd).expect("spawn sh");
        let pid: u32 = g
            .wait_line("child ", Duration::from_secs(5))
            .expect("child pid")
            .trim()
            .parse()
            .expect("a pid");
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(g);
        // Killed, and reaped by its parent or left a zombie: either way not running.
        let gone = (0..50).any(|_| {
            // Gone (reaped), or a zombie: not running.
            let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| st.rsplit(')').next().map(str::to_owned))
                .is_some_and(|r| !r.trim_start().starts_with('Z'));
            if running {
                std::thread::sleep(Duration::from_millis(20));
            }
            !running
        });
        assert!(gone, "the grandchild {pid} outlived the guard");
    }
}
