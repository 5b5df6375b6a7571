//! The netns topology: its address plan, the stale names it removes, and
//! (where namespaces can be made) a real one, joined and then gone.

use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

fn in_range(ip: Ipv4Addr) -> bool {
    // 198.18.0.0/15: 198.18.x.y and 198.19.x.y.
    let [a, b, ..] = ip.octets();
    a == 198 && (b == 18 || b == 19)
}

#[test]
fn the_plan_joins_three_namespaces_by_two_veth_pairs_of_mtu_1500_in_the_benchmark_range() {
    let names = Names::new(42, 7);
    assert_eq!(names.of(Role::Proxy), "xtask-42-7-proxy");
    let plan: Vec<String> = plan(&names).iter().map(|s| s.join(" ")).collect();
    for role in Role::ALL {
        assert!(
            plan.contains(&format!("netns add {}", names.of(role))),
            "{plan:#?}"
        );
        assert!(in_range(role.addr()));
    }
    assert!(in_range(PROXY_BACK));
    let links: Vec<&String> = plan.iter().filter(|s| s.contains("type veth")).collect();
    assert_eq!(links.len(), 2, "{plan:#?}");
    for l in &links {
        assert_eq!(l.matches("mtu 1500").count(), 2, "both ends: {l}");
    }
    for want in [
        "-n xtask-42-7-load addr add 198.18.1.2/24 dev toproxy",
        "-n xtask-42-7-proxy addr add 198.18.1.1/24 dev toload",
        "-n xtask-42-7-proxy addr add 198.18.2.1/24 dev tobackend",
        "-n xtask-42-7-backend addr add 198.18.2.2/24 dev toproxy",
        "-n xtask-42-7-load route add 198.18.2.0/24 via 198.18.1.1",
        "-n xtask-42-7-backend route add 198.18.1.0/24 via 198.18.2.1",
        "-n xtask-42-7-backend link set dev lo up",
    ] {
        assert!(plan.iter().any(|s| s == want), "no `{want}` in {plan:#?}");
    }
    // The namespaces come first: the first step tells whether they can be made.
    assert!(plan[0].starts_with("netns add"));
}

#[test]
fn processes_run_in_their_namespace_and_listen_on_its_address() {
    let place = Place::Netns(Names::new(1, 0));
    let cmd = place.command(Role::Backend, "/bin/echo-backend");
    let args: Vec<&OsStr> = cmd.get_args().collect();
    assert_eq!(cmd.get_program(), "ip");
    assert_eq!(
        args,
        ["netns", "exec", "xtask-1-0-backend", "/bin/echo-backend"]
    );
    assert_eq!(place.listen(Role::Proxy), IpAddr::from([198, 18, 1, 1]));
    let here = Place::Loopback;
    assert_eq!(here.command(Role::Load, "loadgen").get_program(), "loadgen");
    assert_eq!(here.listen(Role::Backend), IpAddr::from([127, 0, 0, 1]));
}

#[test]
fn only_the_workbenchs_names_whose_process_is_gone_are_stale() {
    let list = "xtask-10-0-load (id: 3)\nxtask-10-0-proxy\nxtask-11-2-backend (id: 1)\n\
                other-10-load\nxtask-x-load\n";
    assert_eq!(
        stale(list, |pid| pid == 11),
        ["xtask-10-0-load", "xtask-10-0-proxy"]
    );
    assert!(stale("", |_| false).is_empty());
}

/// Makes a topology, or says on stderr why it cannot here and gives none.
fn made() -> Option<Topology> {
    match Setup::of(spec::Topology::Netns) {
        Ok(Setup::Made(t)) => Some(t),
        Ok(Setup::Unavailable(why)) => {
            eprintln!("skipping: {why}");
            None
        }
        Ok(Setup::Loopback) => panic!("netns set up as loopback"),
        Err(e) => panic!("{e}"),
    }
}

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_real_topology_carries_bytes_direct_and_is_gone_when_dropped() {
    let Some(t) = made() else { return };
    let place = Place::Netns(t.names.clone());
    // The backend listens in its namespace; the load reaches it across
    // both links, forwarded by the proxy's namespace.
    let listener = place
        .within(Role::Backend, || {
            TcpListener::bind((Role::Backend.addr(), 0)).map_err(|e| e.to_string())
        })
        .expect("listen in the backend namespace");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read");
        s.write_all(&buf).expect("write");
        peer
    });
    let echoed = place
        .within(Role::Load, || {
            let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            c.write_all(b"hello").map_err(|e| e.to_string())?;
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).map_err(|e| e.to_string())?;
            Ok(buf)
        })
        .expect("connect from the load namespace");
    assert_eq!(&echoed, b"hello");
    let peer = server.join().expect("server");
    assert_eq!(
        peer.ip(),
        IpAddr::from(Role::Load.addr()),
        "not NATed, routed"
    );
    // From here, the host's namespace, the backend's address is not reachable.
    assert!(TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)).is_err());
    let mtus = Command::new("ip")
        .args(["-n", &t.names.of(Role::Proxy), "-o", "link", "show"])
        .output()
        .expect("ip link");
    let mtus = String::from_utf8_lossy(&mtus.stdout);
    assert_eq!(mtus.matches("mtu 1500").count(), 2, "{mtus}");
    let base = t.names.base.clone();
    drop(t);
    assert!(!namespaces().contains(&base), "{}", namespaces());
}

/// A namespace named as if by a run that is gone (`n`, `role`), made
/// here; `None` (and a line) when namespaces cannot be made.
fn left_by_a_gone_run(n: u32, role: Role) -> Option<String> {
    // A pid that was just used and is gone: a child that has exited.
    let mut child = Command::new("true").spawn().expect("true");
    let gone = child.id();
    child.wait().expect("wait");
    let left = Names::new(gone, n).of(role);
    if ip(&["netns".into(), "add".into(), left.clone()]).is_err() {
        eprintln!("skipping: network namespaces cannot be made here");
        return None;
    }
    Some(left)
}

#[test]
fn namespaces_a_gone_run_left_are_removed_before_new_ones_are_made() {
    let Some(left) = left_by_a_gone_run(0, Role::Load) else {
        return;
    };
    let t = made();
    assert!(!namespaces().contains(&left), "{}", namespaces());
    drop(t);
}

#[test]
fn processes_a_gone_run_left_in_its_namespaces_are_killed_with_them() {
    let Some(left) = left_by_a_gone_run(1, Role::Proxy) else {
        return;
    };
    // What a run killed with SIGKILL leaves: a process in its namespace.
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &left, "sleep", "30"])
        .spawn()
        .expect("sleep in the namespace");
    let inside = || {
        let out = Command::new("ip")
            .args(["netns", "pids", &left])
            .output()
            .expect("ip netns pids");
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    };
    while !inside() {
        assert!(
            orphan.try_wait().expect("wait").is_none(),
            "sleep did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let t = made();
    let status = orphan.wait().expect("wait");
    assert!(!status.success(), "killed, not run to its end: {status}");
    assert!(!namespaces().contains(&left), "{}", namespaces());
    drop(t);
}
