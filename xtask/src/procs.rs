//! What the workbench reads about this machine and this process: the
//! open-files limits, the kernel's TCP memory and sockets, free ports,
//! programs on PATH. Child processes and their `/proc` readings are
//! `testkit`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// A TCP state as `/proc/net/tcp` numbers it.
pub const ESTABLISHED: u8 = 0x01;
pub const FIN_WAIT2: u8 = 0x05;
pub const CLOSE_WAIT: u8 = 0x08;
pub const LISTEN: u8 = 0x0a;

/// The state of every TCP socket of this network namespace (IPv4 and
/// IPv6) for which `mine(local, remote)` holds, orphans included.
pub fn tcp_states(mine: impl Fn(SocketAddr, SocketAddr) -> bool) -> Vec<u8> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let local = proc_addr(f.get(1)?)?;
                    let remote = proc_addr(f.get(2)?)?;
                    let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
                    mine(local, remote).then_some(state)
                })
                .collect::<Vec<u8>>()
        })
        .collect()
}

/// `0100007F:1F90` (or 32 hex digits for IPv6): the address in the
/// kernel's byte order, four bytes at a time, and the port.
fn proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
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

    #[test]
    fn kernel_socket_addresses_decode() {
        assert_eq!(proc_addr("0100007F:1F90"), "127.0.0.1:8080".parse().ok());
        assert_eq!(
            proc_addr("00000000000000000000000001000000:0050"),
            "[::1]:80".parse().ok()
        );
        assert_eq!(proc_addr("0100007F"), None);
    }

    #[test]
    fn a_listener_and_its_connection_are_seen_in_their_states() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let c = std::net::TcpStream::connect(addr).expect("connect");
        let (_s, _) = l.accept().expect("accept");
        let mut states = tcp_states(|local, _| local == addr);
        states.sort_unstable();
        assert_eq!(states, [ESTABLISHED, LISTEN]);
        drop(c);
        // The accepted side has the FIN and has not closed: CLOSE_WAIT.
        let waits = (0..100)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                tcp_states(|local, _| local == addr)
            })
            .find(|s| s.contains(&CLOSE_WAIT));
        assert!(waits.is_some(), "no CLOSE_WAIT after the client closed");
    }
}
