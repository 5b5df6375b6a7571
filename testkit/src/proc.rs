//! What `/proc` says about a process: its children, its resident
//! memory, CPU time, voluntary context switches and open descriptors, and
//! the TCP sockets it holds with their states and queues.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// A TCP connection's state, as `/proc/net/tcp` numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state this list does not know (`NewSynRecv` and later ones).
    Other(u8),
}

impl TcpState {
    fn of(code: u8) -> TcpState {
        use TcpState::*;
        match code {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            c => Other(c),
        }
    }
}

/// One line of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    /// Bytes written and not yet acknowledged by the peer (sent or not).
    pub tx_queue: u64,
    /// Bytes received and not yet read.
    pub rx_queue: u64,
    /// The socket's inode: `socket:[INODE]` in `/proc/PID/fd`.
    pub inode: u64,
}

/// Every TCP socket in the network namespace of `pid` (`"self"` for the
/// calling process), IPv4 and IPv6.
pub fn tcp_sockets(pid: &str) -> Result<Vec<TcpSocket>, String> {
    tcp_sockets_where(pid, |_| true)
}

/// The TCP sockets `pid` holds open: the entries of [`tcp_sockets`]
/// whose inode is one of its descriptors.
pub fn owned_tcp_sockets(pid: u32) -> Result<Vec<TcpSocket>, String> {
    let dir = format!("/proc/{pid}/fd");
    let inodes: Vec<String> = fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            Some(format!(
                " {} ",
                t.strip_prefix("socket:[")?.strip_suffix(']')?
            ))
        })
        .collect();
    let mine = tcp_sockets_where(&pid.to_string(), |line| {
        inodes.iter().any(|i| line.contains(i.as_str()))
    })?;
    // The text match may also hit another column: check the inode itself.
    Ok(mine
        .into_iter()
        .filter(|s| inodes.contains(&format!(" {} ", s.inode)))
        .collect())
}

/// The calling process's view of the connection from `local` to `remote`
/// (not in TIME_WAIT).
pub fn tcp_socket(local: SocketAddr, remote: SocketAddr) -> Option<TcpSocket> {
    let pair = format!(" {} {} ", hex_addr(local), hex_addr(remote));
    tcp_sockets_where("self", |line| line.contains(pair.as_str()))
        .ok()?
        .into_iter()
        .find(|s| s.state != TcpState::TimeWait)
}

/// The lines of [`tcp_sockets`] that pass `keep`, parsed. With tens of
/// thousands of sockets on the machine a full parse is slow, and a peer
/// polls [`tcp_socket`] while it waits: a text match comes first.
fn tcp_sockets_where(pid: &str, keep: impl Fn(&str) -> bool) -> Result<Vec<TcpSocket>, String> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        // A kernel without IPv6 has no tcp6 table.
        let Ok(text) = fs::read_to_string(&path) else {
            if table == "tcp" {
                return Err(format!("{path}: cannot read"));
            }
            continue;
        };
        for line in text.lines().skip(1).filter(|l| keep(l)) {
            out.push(parse_tcp_line(line).ok_or_else(|| format!("{path}: bad line {line:?}"))?);
        }
    }
    Ok(out)
}

/// Fields: sl, local_address, rem_address, st, tx_queue:rx_queue, tr:tm,
/// retrnsmt, uid, timeout, inode, ...
fn parse_tcp_line(line: &str) -> Option<TcpSocket> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (tx, rx) = f.get(4)?.split_once(':')?;
    Some(TcpSocket {
        local: parse_hex_addr(f.get(1)?)?,
        remote: parse_hex_addr(f.get(2)?)?,
        state: TcpState::of(u8::from_str_radix(f.get(3)?, 16).ok()?),
        tx_queue: u64::from_str_radix(tx, 16).ok()?,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        inode: f.get(9)?.parse().ok()?,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address
/// in 32-bit words of host (little-endian) order, the port in big-endian.
fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_le_bytes(),
        )
    };
    let ip: IpAddr = match ip.len() {
        8 => Ipv4Addr::from(word(0)?).into(),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Ipv6Addr::from(b).into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The address as `/proc/net/tcp` writes it: [`parse_hex_addr`] undone.
fn hex_addr(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(ip) => format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), a.port()),
        IpAddr::V6(ip) => {
            let hex: String = ip
                .octets()
                .chunks(4)
                .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                .collect();
            format!("{hex}:{:04X}", a.port())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_addresses_round_trip() {
        for a in ["127.0.0.1:8080", "[::1]:443", "[2001:db8::5]:1"] {
            let a: SocketAddr = a.parse().expect("addr");
            assert_eq!(parse_hex_addr(&hex_addr(a)), Some(a));
        }
        assert_eq!(
            parse_hex_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_state() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let mine = owned_tcp_sockets(std::process::id()).expect("proc");
        let found = mine.iter().find(|s| s.local == addr).expect("listener");
        assert_eq!(found.state, TcpState::Listen);
    }
}
