//! What `/proc` says about a process: its children, and its resident
//! memory, CPU time, voluntary context switches and open descriptors.

use std::fs;

/// Clock ticks per second of `/proc/PID/stat` CPU times (`USER_HZ`, 100
/// on every Linux the workspace runs on).
pub const TICKS_PER_SEC: f64 = 100.0;

/// The children of `pid`, started by any of its threads.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every process below `pid`: its children, theirs, and so on.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut next = vec![pid];
    // Bounded: a pid cycle cannot happen, a fork bomb can.
    while let Some(p) = next.pop() {
        if out.len() >= 10_000 {
            break;
        }
        for c in children(p) {
            if !out.contains(&c) {
                out.push(c);
                next.push(c);
            }
        }
    }
    out
}

/// Resources of a process, summed over its threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `Rss:` of `/proc/PID/smaps_rollup`.
    pub rss_kib: u64,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// The user-space part of `cpu_ticks`.
    pub user_ticks: u64,
    /// `voluntary_ctxt_switches` of every thread: its wake-ups.
    pub voluntary_switches: u64,
    /// Entries of `/proc/PID/fd`.
    pub fds: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            rss_kib: self.rss_kib + o.rss_kib,
            cpu_ticks: self.cpu_ticks + o.cpu_ticks,
            user_ticks: self.user_ticks + o.user_ticks,
            voluntary_switches: self.voluntary_switches + o.voluntary_switches,
            fds: self.fds + o.fds,
        }
    }
}

/// [`Usage`] of `pid` plus that of its children (nginx's workers).
pub fn usage_with_children(pid: u32) -> Result<Usage, String> {
    let own = usage(pid)?;
    Ok(children(pid)
        .into_iter()
        .filter_map(|c| usage(c).ok())
        .fold(own, |sum, c| sum + c))
}

/// [`Usage`] of `pid` alone.
pub fn usage(pid: u32) -> Result<Usage, String> {
    let read = |p: String| fs::read_to_string(&p).map_err(|e| format!("{p}: {e}"));
    let rollup = read(format!("/proc/{pid}/smaps_rollup"))?;
    let rss_kib = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/smaps_rollup: no Rss line"))?;
    let stat = read(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start
    // after the last ')'.
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .ok_or_else(|| format!("/proc/{pid}/stat: no command name"))?;
    let num = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (num(11), num(12)) else {
        return Err(format!("/proc/{pid}/stat: no utime and stime"));
    };
    let voluntary_switches = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
                .filter_map(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .sum()
        })
        .unwrap_or(0);
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(Usage {
        rss_kib,
        cpu_ticks: utime + stime,
        user_ticks: utime,
        voluntary_switches,
        fds,
    })
}

/// Lowers the running process's descriptor limit (with `prlimit --pid`)
/// so that exactly `spare` descriptor numbers are free below it, and
/// returns the limit set. The descriptors a test environment passes down
/// vary, so they are counted.
///
/// # Panics
/// If `/proc` cannot be read or `prlimit` fails (tests only).
pub fn leave_spare_fds(pid: u32, spare: usize) -> usize {
    let used: Vec<usize> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let (mut limit, mut free) = (0, 0);
    while free < spare {
        if !used.contains(&limit) {
            free += 1;
        }
        limit += 1;
    }
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "prlimit --pid {pid} --nofile={limit}:{limit} failed");
    limit
}
