//! The `netns` topology (`topology = "netns"` in a scenario): the load,
//! the proxy and the backend each in a network namespace of its own,
//! joined by two veth pairs of MTU 1500, so that traffic crosses a device
//! path (veth, neighbours, routing) instead of loopback. Addresses come
//! from 198.18.0.0/15, the range set aside for benchmarks:
//!
//! ```text
//!   load 198.18.1.2 ── 198.18.1.1 proxy 198.18.2.1 ── 198.18.2.2 backend
//! ```
//!
//! The load namespace routes 198.18.2.0/24 through the proxy's, which
//! forwards (`ip_forward`), and the backend's routes 198.18.1.0/24 back:
//! so "direct" crosses the same two links as a proxied connection, the
//! second hop forwarded by the proxy namespace's kernel instead of
//! relayed by a proxy. Processes are started with `ip netns exec`, which
//! execs them (their pid, and so their CPU readings, are their own). The
//! workbench's own sockets inside a namespace (a peer's port waited for,
//! our proxy's metrics, which it serves on 127.0.0.1 of the proxy's
//! namespace, off the measured links) come from a thread that has entered
//! it: nothing is added to the host's own namespace.
//!
//! The namespaces are named `xtask-PID-N-ROLE` and deleted when the
//! scenario ends (by [`Setup`]'s drop, so also on an error or a panic);
//! those a killed run left behind (whose PID is gone) are deleted before
//! new ones are made.

use crate::spec;
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where `ip netns` keeps its namespaces.
const RUN_DIR: &str = "/run/netns";
/// The start of every namespace name the workbench makes.
const PREFIX: &str = "xtask-";
/// The links' MTU, an Ethernet's.
pub const MTU: u32 = 1500;
/// Each topology of this process gets its own number.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// One of the three namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Load,
    Proxy,
    Backend,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Load, Role::Proxy, Role::Backend];

    fn suffix(self) -> &'static str {
        match self {
            Role::Load => "load",
            Role::Proxy => "proxy",
            Role::Backend => "backend",
        }
    }

    /// The address a process of this role listens on (or, for the load,
    /// connects from) in the topology.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Role::Load => Ipv4Addr::new(198, 18, 1, 2),
            Role::Proxy => Ipv4Addr::new(198, 18, 1, 1),
            Role::Backend => Ipv4Addr::new(198, 18, 2, 2),
        }
    }
}

/// The proxy namespace's address on the backend's link.
pub const PROXY_BACK: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);

/// The names of one topology's namespaces: `xtask-PID-N-ROLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    base: String,
}

impl Names {
    fn new(pid: u32, n: u32) -> Names {
        Names {
            base: format!("{PREFIX}{pid}-{n}-"),
        }
    }

    pub fn of(&self, role: Role) -> String {
        format!("{}{}", self.base, role.suffix())
    }
}

/// Where a scenario's processes run: this namespace's loopback, or the
/// namespaces of a [`Topology`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Place {
    #[default]
    Loopback,
    Netns(Names),
}

impl Place {
    /// The address processes of `role` listen on.
    pub fn listen(&self, role: Role) -> IpAddr {
        match self {
            Place::Loopback => Ipv4Addr::LOCALHOST.into(),
            Place::Netns(_) => role.addr().into(),
        }
    }

    /// A command that runs `program` as `role`: in its namespace, under
    /// `ip netns exec`, which execs it.
    pub fn command(&self, role: Role, program: impl AsRef<OsStr>) -> Command {
        match self {
            Place::Loopback => Command::new(program),
            Place::Netns(names) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", &names.of(role)]).arg(program);
                cmd
            }
        }
    }

    /// What [`Place::command`] puts before a program, as a person types
    /// it (`ip netns exec NAME`); none on loopback.
    pub fn prefix(&self, role: Role) -> Option<String> {
        match self {
            Place::Loopback => None,
            Place::Netns(names) => Some(format!("ip netns exec {}", names.of(role))),
        }
    }

    /// Runs `f` inside `role`'s namespace (on a thread that has entered
    /// it; here, on this thread), for the workbench's own sockets.
    pub fn within<T: Send>(
        &self,
        role: Role,
        f: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
        let Place::Netns(names) = self else {
            return f();
        };
        let name = names.of(role);
        std::thread::scope(|s| {
            s.spawn(|| {
                let path = Path::new(RUN_DIR).join(&name);
                let ns =
                    std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                netio::sys::netns::enter(&ns)
                    .map_err(|e| format!("cannot enter network namespace {name}: {e}"))?;
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// What a scenario runs in, set up for it; the namespaces of a
/// [`Setup::Made`] are deleted when it is dropped.
pub enum Setup {
    Loopback,
    Made(Topology),
    /// Namespaces cannot be made here (not root, no `ip`): why, one line.
    Unavailable(String),
}

impl Setup {
    /// Sets up `topology`: nothing for loopback; for netns, the
    /// namespaces, after deleting those a killed run left behind.
    pub fn of(topology: spec::Topology) -> Result<Setup, String> {
        match topology {
            spec::Topology::Loopback => Ok(Setup::Loopback),
            spec::Topology::Netns => {
                remove_stale();
                Topology::create()
            }
        }
    }

    pub fn place(&self) -> Place {
        match self {
            Setup::Made(t) => Place::Netns(t.names.clone()),
            Setup::Loopback | Setup::Unavailable(_) => Place::Loopback,
        }
    }
}

/// Three namespaces joined by veth pairs, deleted on drop (their veth
/// ends go with them).
pub struct Topology {
    names: Names,
}

impl Topology {
    fn create() -> Result<Setup, String> {
        let names = Names::new(std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut steps = plan(&names).into_iter();
        // The first step tells whether namespaces can be made here at all.
        if let Some(first) = steps.next() {
            if let Err(e) = ip(&first) {
                return Ok(Setup::Unavailable(format!(
                    "network namespaces cannot be made here ({e}); the netns topology needs \
                     root and iproute2"
                )));
            }
        }
        // From here on, a failure is a fault, and what was made goes.
        let t = Topology { names };
        for step in steps {
            ip(&step).map_err(|e| format!("setting up the netns topology: {e}"))?;
        }
        Place::Netns(t.names.clone()).within(Role::Proxy, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| format!("netns topology: cannot turn on forwarding: {e}"))
        })?;
        eprintln!(
            "xtask: topology {}: load, proxy and backend in network namespaces {}{{load,proxy,backend}}",
            spec::Topology::Netns.arg(),
            t.names.base
        );
        Ok(Setup::Made(t))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for role in Role::ALL {
            let name = self.names.of(role);
            if Path::new(RUN_DIR).join(&name).exists() {
                if let Err(e) = ip(&["netns".into(), "del".into(), name]) {
                    eprintln!("xtask: {e}");
                }
            }
        }
    }
}

/// The `ip` commands that make the topology of `names`, in order.
fn plan(names: &Names) -> Vec<Vec<String>> {
    let (load, proxy, backend) = (
        names.of(Role::Load),
        names.of(Role::Proxy),
        names.of(Role::Backend),
    );
    let mtu = MTU.to_string();
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let mut steps: Vec<Vec<String>> = [&load, &proxy, &backend]
        .iter()
        .map(|n| words(&format!("netns add {n}")))
        .collect();
    // Each pair is made with its ends already in their namespaces: no
    // device ever appears in the host's.
    for (a, a_dev, b, b_dev) in [
        (&load, "toproxy", &proxy, "toload"),
        (&proxy, "tobackend", &backend, "toproxy"),
    ] {
        steps.push(words(&format!(
            "link add {a_dev} netns {a} mtu {mtu} type veth peer name {b_dev} netns {b} mtu {mtu}"
        )));
    }
    let front = |ip: Ipv4Addr| format!("{ip}/24");
    for (ns, dev, addr) in [
        (&load, "toproxy", front(Role::Load.addr())),
        (&proxy, "toload", front(Role::Proxy.addr())),
        (&proxy, "tobackend", front(PROXY_BACK)),
        (&backend, "toproxy", front(Role::Backend.addr())),
    ] {
        steps.push(words(&format!("-n {ns} addr add {addr} dev {dev}")));
        steps.push(words(&format!("-n {ns} link set dev {dev} up")));
    }
    for ns in [&load, &proxy, &backend] {
        steps.push(words(&format!("-n {ns} link set dev lo up")));
    }
    steps.push(words(&format!(
        "-n {load} route add 198.18.2.0/24 via {}",
        Role::Proxy.addr()
    )));
    steps.push(words(&format!(
        "-n {backend} route add 198.18.1.0/24 via {PROXY_BACK}"
    )));
    steps
}

/// Runs `ip ARGS…`; an error is one line with what it said.
fn ip(args: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes the namespaces of runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip")
        .args(["netns", "list"])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    for name in stale(&String::from_utf8_lossy(&out.stdout), alive) {
        eprintln!("xtask: deleting network namespace {name}, left by a run that is gone");
        kill_within(&name);
        if let Err(e) = ip(&["netns".into(), "del".into(), name]) {
            eprintln!("xtask: {e}");
        }
    }
}

/// Kills the processes still running in namespace `name`: a run killed
/// with SIGKILL leaves its proxy and backend behind, and deleting the
/// name alone would keep them (and the namespace) alive, unnamed.
fn kill_within(name: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", name])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|p| p.parse::<u32>().is_ok())
        .map(String::from)
        .collect();
    if pids.is_empty() {
        return;
    }
    eprintln!(
        "xtask: killing process(es) {} left in {name}",
        pids.join(", ")
    );
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .stderr(Stdio::null())
        .status();
}

/// The names in `ip netns list` output made by a process not `alive`.
fn stale(list: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
                .is_some_and(|pid| !alive(pid))
        })
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests;
