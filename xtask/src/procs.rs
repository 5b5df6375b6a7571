//! What the workbench reads about this machine and this process: the
//! open-files limits, the kernel's TCP memory, free ports, programs on
//! PATH. Child processes and their `/proc` readings are `testkit`'s.

use std::path::{Path, PathBuf};

/// A free TCP port on 127.0.0.1, for peers that cannot report port 0.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
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

/// The hard open-files limit of this process (what children inherit, and
/// what our proxy raises its soft limit to).
pub fn nofile_hard() -> u64 {
    nofile(4)
}

/// The soft open-files limit of this process: how many connections the
/// workbench itself can hold.
pub fn nofile_soft() -> u64 {
    nofile(3)
}

/// Field `i` of the `Max open files` line of `/proc/self/limits`.
fn nofile(i: usize) -> u64 {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(i)?.parse().ok())
        .unwrap_or(1024)
}

/// Whether an executable is on PATH (or at an absolute path).
pub fn which(prog: &str) -> Option<PathBuf> {
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
    fn limits_are_read_and_soft_is_at_most_hard() {
        assert!(nofile_soft() <= nofile_hard() && nofile_soft() >= 16);
        assert!(which("sh").is_some() && which("no-such-program-here").is_none());
    }
}
