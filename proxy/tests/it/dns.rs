//! Backends given by host name, against a resolver the test controls: the
//! proxy runs in a private mount namespace (`unshare -m`) where its own
//! hosts file is bind-mounted over /etc/hosts (and a resolv.conf that
//! fails fast over /etc/resolv.conf), never touching the machine's. The
//! name is looked up again every `--resolve-interval`: a new address takes
//! the new clients, a failed lookup keeps the last good one, and a name
//! that cannot be resolved at start is a clear error.

use crate::failover::all_served;
use crate::util::{connect, echo_byte, echo_conn, thread_switches, wait_until, Backend, Proxy};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// The made-up name the tests resolve.
const NAME: &str = "backend.test";

/// A hosts file and a resolv.conf of the test's own, for the proxy's
/// mount namespace.
struct Resolver {
    _dir: tempfile::TempDir,
    hosts: PathBuf,
    resolv: PathBuf,
}

impl Resolver {
    /// Files with `hosts` as the hosts file. `None`, with one line saying
    /// why, where no private mount namespace can be made.
    fn new(hosts: &str) -> Option<Resolver> {
        let works = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount --bind /dev/null /dev/null"])
            .status()
            .is_ok_and(|s| s.success());
        if !works {
            println!("skipped: no private mount namespace here (unshare -m needs root)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts_path = dir.path().join("hosts");
        let resolv = dir.path().join("resolv.conf");
        // Names not in the hosts file fail at once (nothing answers DNS on
        // 127.0.0.1:53), rather than waiting on the machine's servers.
        std::fs::write(
            &resolv,
            "options attempts:1 timeout:1\nnameserver 127.0.0.1\n",
        )
        .expect("write resolv.conf");
        let r = Resolver {
            _dir: dir,
            hosts: hosts_path,
            resolv,
        };
        r.set(hosts);
        Some(r)
    }

    /// Writes the hosts file in place: the bind mount pins its inode, so
    /// it must not be replaced by a rename.
    fn set(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).expect("write hosts");
    }

    /// The proxy, to be run in a mount namespace of its own with these
    /// files mounted; its arguments follow.
    fn proxy(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf \
             && shift 2 && exec \"$@\"",
            "sh",
        ])
        .arg(&self.hosts)
        .arg(&self.resolv)
        .args(crate::util::proxy_argv());
        cmd
    }
}

/// Two echo backends on one port, at 127.0.0.1 and 127.0.0.2.
fn two_addresses() -> (Backend, Backend) {
    let a = Backend::spawn(echo_conn);
    let b = Backend::spawn_on(&format!("127.0.0.2:{}", a.addr.port()), echo_conn);
    (a, b)
}

/// The proxy on 127.0.0.1 port 0 in front of the name on `port`, looked
/// up again every 200ms in `dns`; with the name as `-b` gave it.
fn start_named(dns: &Resolver, port: u16) -> (Proxy, String) {
    let target = format!("{NAME}:{port}");
    let args = [
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-b",
        &target,
        "--resolve-interval",
        "200ms",
    ];
    (Proxy::start_with(dns.proxy(), &args), target)
}

/// Whether the proxy has a thread named `resolver`.
fn has_resolver_thread(proxy: &Proxy) -> bool {
    thread_switches(proxy.pid())
        .iter()
        .any(|(n, _)| n == "resolver")
}

#[test]
fn a_new_address_for_the_name_takes_the_new_clients() {
    let (a, b) = two_addresses();
    let Some(dns) = Resolver::new(&format!("127.0.0.1 {NAME}\n")) else {
        return;
    };
    let (mut proxy, target) = start_named(&dns, a.addr.port());
    // The thread names itself once it runs.
    wait_until("the resolver thread", || has_resolver_thread(&proxy));
    all_served(&proxy, 3, "at 127.0.0.1");
    let mut open = connect(proxy.addr);
    echo_byte(&mut open, b'a');
    dns.set(&format!("127.0.0.2 {NAME}\n"));
    let line = proxy.next_line_with("now resolves to");
    assert_eq!(
        line,
        format!(
            "proxy: backend {target} now resolves to {} (was {})",
            b.addr, a.addr
        )
    );
    all_served(&proxy, 3, "at 127.0.0.2");
    assert_eq!((a.accepted(), b.accepted()), (4, 3));
    // The pair open to the old address goes on.
    echo_byte(&mut open, b'b');
    drop(open);
    drop(proxy.wait_idle());
}

#[test]
fn a_failed_lookup_keeps_the_last_good_address_and_is_logged_once() {
    let a = Backend::echo();
    let Some(dns) = Resolver::new(&format!("127.0.0.1 {NAME}\n")) else {
        return;
    };
    let (mut proxy, target) = start_named(&dns, a.addr.port());
    dns.set("# nothing\n");
    let line = proxy.next_line_with("cannot resolve");
    assert!(
        line.starts_with(&format!(
            "proxy: backend {target}: cannot resolve \"{NAME}\""
        )) && line.ends_with(&format!("; keeping {}", a.addr)),
        "{line}"
    );
    // Several more failed rounds, and the clients still reach it.
    thread::sleep(Duration::from_secs(1));
    all_served(&proxy, 3, "on the last good address");
    assert_eq!(a.accepted(), 3);
    dns.set(&format!("127.0.0.1 {NAME}\n"));
    let again = proxy.next_line_with("resolves again");
    assert_eq!(
        again,
        format!("proxy: backend {target} resolves again, to {}", a.addr)
    );
    let failures = proxy.lines_with("cannot resolve");
    assert_eq!(failures.len(), 1, "one line a failure streak: {failures:?}");
}

#[test]
fn a_name_that_cannot_be_resolved_at_start_is_an_error_naming_it() {
    let Some(dns) = Resolver::new("# nothing\n") else {
        return;
    };
    let mut cmd = dns.proxy();
    let out = cmd
        .args(["-l", "127.0.0.1", "-p", "0", "-b", "nothere.test:80"])
        .output()
        .expect("run proxy");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "proxy: invalid --backend \"nothere.test:80\": cannot resolve \"nothere.test\": "
        ) && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn without_a_backend_name_there_is_no_resolver_thread() {
    let a = Backend::echo();
    let proxy = Proxy::start_to(a.addr, &["--resolve-interval", "200ms"]);
    all_served(&proxy, 1, "by address");
    // A thread not yet named would go by the process's name.
    let threads = thread_switches(proxy.pid());
    let unnamed = threads.iter().filter(|(n, _)| n == "proxy").count();
    assert!(!has_resolver_thread(&proxy) && unnamed == 1, "{threads:?}");
}

#[test]
fn a_reload_finds_the_named_backend_by_its_name_at_its_new_address() {
    let (a, b) = two_addresses();
    let Some(dns) = Resolver::new(&format!("127.0.0.1 {NAME}\n")) else {
        return;
    };
    let target = format!("{NAME}:{}", a.addr.port());
    // Looked up only at start and on reload.
    let text = format!(
        "listen = \"127.0.0.1\"\nport = 0\nresolve-interval = \"0s\"\n\
         [[backend]]\naddress = \"{target}\"\n"
    );
    let (_dir, path) = crate::cli::config_file(&text);
    let mut proxy = Proxy::start_with(dns.proxy(), &["-c", &path]);
    all_served(&proxy, 2, "at 127.0.0.1");
    dns.set(&format!("127.0.0.2 {NAME}\n"));
    let line = crate::reload::reload(&mut proxy);
    assert!(
        line.ends_with(&format!(
            ": backends changed {target} (address {} -> {})",
            a.addr, b.addr
        )),
        "{line}"
    );
    all_served(&proxy, 2, "at 127.0.0.2");
    assert_eq!((a.accepted(), b.accepted()), (2, 2));
}
