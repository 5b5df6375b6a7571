//! SIGHUP reloads the config file in place: the backend set changes under
//! load with no client error, weights and access lists take effect, an
//! open exchange to a removed backend finishes (or is cut at the drain
//! deadline), and a file that is invalid or changes what only a restart
//! can change is refused whole with one line.

use crate::cli::config_file;
use crate::failover::all_served;
use crate::util::{connect, echo_byte, http_get, read_to_end, Backend, Proxy, WAIT};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A config file listening on 127.0.0.1 port 0, with `extra` keys, in
/// front of `backends` (a `[[backend]]` table each, with its keys).
fn file(extra: &str, backends: &[(&Backend, &str)]) -> String {
    let mut text = format!("listen = \"127.0.0.1\"\nport = 0\n{extra}\n");
    for (b, keys) in backends {
        text += &format!("[[backend]]\naddress = \"{}\"\n{keys}\n", b.addr);
    }
    text
}

/// The proxy with a config file of `text` alone; the file's directory
/// (kept until the end of the test) and path with it.
fn start(text: &str) -> (tempfile::TempDir, String, Proxy) {
    let (dir, path) = config_file(text);
    let proxy = Proxy::start(&["-c", &path]);
    (dir, path, proxy)
}

/// Writes `text` over the file at `path` in place.
fn rewrite(path: &str, text: &str) {
    std::fs::write(path, text).expect("rewrite the config file");
}

/// Whether `l` is the line that ends a reload, whatever its outcome.
fn ends_reload(l: &str) -> bool {
    l.starts_with("proxy: reloaded ")
        || l.starts_with("proxy: reload failed")
        || (l.starts_with("proxy: reload of ") && l.contains("refused"))
        || l.contains("nothing to reload")
}

/// Sends SIGHUP and returns the line that says how the reload ended.
pub(crate) fn reload(proxy: &mut Proxy) -> String {
    proxy.signal("HUP");
    proxy
        .wait_line(ends_reload)
        .unwrap_or_else(|| panic!("no reload line after SIGHUP: {}", proxy.tail()))
}

/// The notice every accepted reload logs because the test binaries give
/// `--engine` on the command line (see `util::proxy_command`).
fn engine_notice() -> String {
    "proxy: reload: --engine on the command line overrides the file".to_string()
}

/// After a refused reload (its one line `line`): new clients still go to
/// `a`, none to `b`, and nothing else was said about the reload.
fn assert_kept(proxy: &Proxy, a: &Backend, b: &Backend, line: String) {
    all_served(proxy, 3, "after the refused reload");
    assert_eq!((a.accepted(), b.accepted()), (3, 0));
    assert_eq!(proxy.lines_with("reload"), [line]);
}

/// One short echo exchange: connect, one byte there and back, close.
fn one_exchange(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(b"x")?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    s.shutdown(Shutdown::Write)?;
    let n = s.read(&mut b)?;
    if b[0] != b'x' || n != 0 {
        return Err(io::Error::other("wrong echo"));
    }
    Ok(())
}

/// Connect-mode load: client threads opening and closing echo
/// exchanges back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let (mut done, mut errors) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match one_exchange(addr) {
                            Ok(()) => done += 1,
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                    (done, errors)
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stops the clients; the exchanges done and every error.
    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = (0, Vec::new());
        for t in self.threads {
            let (done, errors) = t.join().expect("load thread");
            total.0 += done;
            total.1.extend(errors);
        }
        total
    }
}

/// Waits until `b`'s count of accepted connections stops moving (its
/// accept loop polls), and returns it.
fn settled_count(b: &Backend) -> usize {
    let mut last = b.accepted();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = b.accepted();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Fails unless the proxy closes `s` (an end of stream or a reset) with
/// nothing for it.
fn assert_closed(s: &mut TcpStream, what: &str) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 1];
    // A read with a timeout is not restarted after a signal handler ran
    // in this process (signal(7)), so EINTR is read again.
    let got = loop {
        match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match got {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{what} was not closed: {other:?}"),
    }
}

#[test]
fn sighup_under_load_moves_new_clients_to_the_new_backend_and_costs_no_client() {
    moves_under_load("");
}

#[test]
fn sighup_under_load_moves_new_clients_to_the_new_backend_with_two_workers() {
    moves_under_load("workers = 2");
}

/// Under connect-mode load through a proxy with the config keys `extra`,
/// the backend set changes from {A} to {B}: no client sees an error, every
/// new client then goes to B, and an exchange open on A goes on to its end.
fn moves_under_load(extra: &str) {
    let (a, b) = (Backend::echo(), Backend::echo());
    let (_dir, path, mut proxy) = start(&file(extra, &[(&a, "")]));
    // An exchange open on A across the reload.
    let mut open = connect(proxy.addr);
    echo_byte(&mut open, b'a');
    let load = Load::start(proxy.addr, 3);
    thread::sleep(Duration::from_millis(700));
    rewrite(&path, &file(extra, &[(&b, "")]));
    let line = reload(&mut proxy);
    assert!(
        line.contains(&format!("backends added {}", b.addr))
            && line.contains(&format!("backends removed {}", a.addr)),
        "{line}"
    );
    thread::sleep(Duration::from_millis(1300));
    let (done, errors) = load.stop();
    assert!(errors.is_empty(), "client errors under reload: {errors:?}");
    assert!(done > 0 && b.accepted() > 0, "{done} exchanges");
    // From now on every new client goes to B.
    let on_a = settled_count(&a);
    let on_b = settled_count(&b);
    all_served(&proxy, 10, "after the reload");
    assert_eq!(
        settled_count(&a),
        on_a,
        "a new client reached the removed backend"
    );
    assert_eq!(settled_count(&b), on_b + 10);
    // The exchange open on the removed backend goes on to its end.
    echo_byte(&mut open, b'b');
    open.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut open), b"");
    drop(proxy.wait_idle());
    assert_eq!(
        proxy.lines_with("reload"),
        [engine_notice(), line],
        "{:?}",
        proxy.log()
    );
}

#[test]
fn an_invalid_file_keeps_the_running_config_with_the_start_s_own_message() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let (_dir, path, mut proxy) = start(&file("", &[(&a, "")]));
    let bad = file("idle-timeout = \"soon\"", &[(&b, "")]);
    rewrite(&path, &bad);
    let line = reload(&mut proxy);
    let prefix = "proxy: reload failed; the running configuration is kept: ";
    assert!(line.starts_with(prefix), "{line}");
    // A start with the same file says the same.
    let out = crate::util::proxy_command()
        .args(["-c", &path])
        .output()
        .expect("run proxy");
    assert!(!out.status.success());
    let start = String::from_utf8_lossy(&out.stderr);
    assert_eq!(start.trim(), format!("proxy: {}", &line[prefix.len()..]));
    assert_kept(&proxy, &a, &b, line);
}

/// A file that lost every backend is refused on reload: at start the
/// default backend (127.0.0.1 on the backend port) is a convenience; at a
/// reload it would send every new client somewhere no one asked for.
#[test]
fn a_reload_whose_file_gives_no_backend_is_refused() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let (_dir, path, mut proxy) = start(&file("", &[(&a, "")]));
    rewrite(&path, &file("", &[]));
    let line = reload(&mut proxy);
    assert!(line.contains("refused, nothing was changed"), "{line}");
    assert!(
        line.contains("the file now gives no backend (it had 1)") && line.contains("127.0.0.1:"),
        "{line}"
    );
    assert_kept(&proxy, &a, &b, line);
}

#[test]
fn a_changed_port_or_worker_count_refuses_the_whole_reload() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let sizes = "max-connections = 64\nbuffers = 128\npipes = 4\n";
    let (_dir, path, mut proxy) = start(&file(sizes, &[(&a, "")]));
    let text = file(sizes, &[(&b, "")]).replace("port = 0", "port = 1");
    rewrite(&path, &format!("workers = 2\n{text}"));
    let line = reload(&mut proxy);
    assert!(line.contains("refused, nothing was changed"), "{line}");
    assert!(
        line.contains("port cannot change in place (running 0, the file now 1)"),
        "{line}"
    );
    assert!(
        line.contains("workers cannot change in place (running 1, the file now 2)"),
        "{line}"
    );
    // Nor did the backend change that came with it.
    assert_kept(&proxy, &a, &b, line);
}

#[test]
fn an_exchange_to_a_removed_backend_is_cut_at_the_drain_deadline() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let drain = "drain-timeout = \"200ms\"";
    let (_dir, path, mut proxy) = start(&file(drain, &[(&a, "")]));
    let mut open = connect(proxy.addr);
    echo_byte(&mut open, b'a');
    rewrite(&path, &file(drain, &[(&b, "")]));
    let line = reload(&mut proxy);
    assert!(line.contains("backends removed"), "{line}");
    assert_closed(&mut open, "the pair to the removed backend");
    all_served(&proxy, 2, "after the drain");
    assert_eq!((a.accepted(), b.accepted()), (1, 2));
    drop(proxy.wait_idle());
}

#[test]
fn options_on_the_command_line_still_override_the_file_and_say_so() {
    let a = Backend::echo();
    let (_dir, path) = config_file(&file("", &[(&a, "")]));
    let mut proxy = Proxy::start(&["-c", &path, "--idle-timeout", "5s", "--fall", "2"]);
    rewrite(&path, &file("idle-timeout = \"1s\"\nfall = 2", &[(&a, "")]));
    let line = reload(&mut proxy);
    assert!(line.ends_with(": nothing changed"), "{line}");
    let said = proxy.wait_logged(|l| l.contains("on the command line"));
    assert_eq!(
        said,
        // The test binaries give --engine on the command line too.
        "proxy: reload: --idle-timeout, --engine, --fall on the command line override the file"
    );
}

#[test]
fn a_weight_change_takes_effect_for_new_clients() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let (_dir, path, mut proxy) = start(&file("", &[(&a, ""), (&b, "")]));
    all_served(&proxy, 10, "weights 1, 1");
    assert_eq!((a.accepted(), b.accepted()), (5, 5));
    rewrite(&path, &file("", &[(&a, "weight = 3"), (&b, "")]));
    let line = reload(&mut proxy);
    assert!(
        line.contains(&format!("backends changed {} (weight 1 -> 3)", a.addr)),
        "{line}"
    );
    all_served(&proxy, 40, "weights 3, 1");
    assert_eq!((a.accepted(), b.accepted()), (35, 15));
    drop(proxy.wait_idle());
}

/// A reload that changes only a backend's limits or its check, or the
/// all-down policy, says so: "nothing changed" would tell the operator the
/// edit was not seen.
#[test]
fn a_change_of_limits_checks_or_all_down_is_named_in_the_reload_line() {
    let a = Backend::echo();
    let (_dir, path, mut proxy) = start(&file("", &[(&a, "")]));
    let name = a.addr.to_string();
    for (extra, keys, want) in [
        (
            "",
            "max-connections = 5",
            format!("backends changed {name} (max-connections 0 -> 5)"),
        ),
        (
            "",
            "max-connections = 5\nslow-start = \"1m\"",
            format!("backends changed {name} (slow-start 0s -> 60s)"),
        ),
        (
            "",
            "max-connections = 5\nslow-start = \"1m\"\ncheck = true",
            format!("backends changed {name} (check added)"),
        ),
        (
            "",
            "max-connections = 5\nslow-start = \"1m\"\ncheck = true\ncheck-rise = 4",
            format!("backends changed {name} (check changed)"),
        ),
        (
            "all-down = \"reject\"",
            "max-connections = 5\nslow-start = \"1m\"",
            format!("backends changed {name} (check removed); changed all-down"),
        ),
    ] {
        rewrite(&path, &file(extra, &[(&a, keys)]));
        let line = reload(&mut proxy);
        assert!(line.ends_with(&format!(": {want}")), "{line}");
    }
    all_served(&proxy, 2, "after the reloads");
}

/// A reload that takes a backend's check away takes its last result out
/// of `/backends` and `/metrics` too: a stale "check=failed" beside a
/// backend no longer checked would send the operator after a fault that
/// is not looked for any more.
#[test]
fn a_check_removed_by_a_reload_leaves_no_stale_result_in_the_listing() {
    let a = Backend::echo();
    let extra = "metrics = \"127.0.0.1:0\"";
    let checked =
        "check = true\ncheck-interval = \"50ms\"\ncheck-send = \"PING\"\ncheck-expect = \"+PONG\"";
    let (_dir, path, mut proxy) = start(&file(extra, &[(&a, checked)]));
    proxy.wait_logged(|l| l.contains("is down: check failed"));
    let metrics = proxy.metrics_addr();
    rewrite(&path, &file(extra, &[(&a, "")]));
    let line = reload(&mut proxy);
    assert!(line.contains("reloaded"), "{line}");
    let (_, text) = http_get(metrics, "/backends");
    assert!(
        text.contains(" state=up ") && text.ends_with(" check=none\n"),
        "{text}"
    );
    let (_, prom) = http_get(metrics, "/metrics");
    assert!(!prom.contains("proxy_backend_check_success"), "{prom}");
    all_served(&proxy, 2, "unchecked");
}

/// A backend marked down at a wrong address and given its right one by a
/// reload (its name kept) takes clients at once: the failures were the old
/// address's, so the fix is not held back for `--fail-timeout`.
#[test]
fn a_backend_down_at_its_old_address_is_up_at_the_new_one_after_a_reload() {
    let (good, other) = (Backend::echo(), Backend::echo());
    let dead = testkit::fault::refusing_addr();
    let text = |a: &dyn std::fmt::Display| {
        format!(
            "listen = \"127.0.0.1\"\nport = 0\nfall = 1\nfail-timeout = \"1h\"\n\
             [[backend]]\nname = \"a\"\naddress = \"{a}\"\n\
             [[backend]]\nname = \"b\"\naddress = \"{}\"\n",
            other.addr
        )
    };
    let (_dir, path, mut proxy) = start(&text(&dead));
    all_served(&proxy, 1, "a refused, b served");
    proxy.wait_logged(|l| l.contains("marked down") || l.contains("is down"));
    rewrite(&path, &text(&good.addr));
    let line = reload(&mut proxy);
    assert!(line.contains("backends changed a (address "), "{line}");
    all_served(&proxy, 4, "a at its new address");
    assert_eq!((good.accepted(), other.accepted()), (2, 3));
}

/// The same with an active check: the check that had the backend down at
/// its old address starts afresh at the new one (as a new backend's does,
/// up until a check fails), rather than asking `rise` passes (a thousand
/// here) of an address that never failed.
#[test]
fn a_check_down_backend_given_a_new_address_by_a_reload_is_checked_afresh() {
    let good = Backend::echo();
    let dead = testkit::fault::refusing_addr();
    // The only backend, and no client while it is down: one served shows
    // it up (its own accept count would count the checks too).
    let text = |a: &dyn std::fmt::Display| {
        format!(
            "listen = \"127.0.0.1\"\nport = 0\nall-down = \"reject\"\n\
             [[backend]]\nname = \"a\"\naddress = \"{a}\"\n\
             check = true\ncheck-interval = \"50ms\"\ncheck-rise = 1000\n"
        )
    };
    let (_dir, path, mut proxy) = start(&text(&dead));
    proxy.wait_logged(|l| l.contains("is down: check failed"));
    rewrite(&path, &text(&good.addr));
    let line = reload(&mut proxy);
    assert!(line.contains("backends changed a (address "), "{line}");
    crate::util::wait_until("a takes clients at its new address", || {
        crate::failover::exchange(proxy.addr, b"x").is_ok()
    });
}

#[test]
fn an_access_list_change_turns_away_a_client_it_served_before() {
    let a = Backend::echo();
    let (_dir, path, mut proxy) = start(&file("", &[(&a, "")]));
    all_served(&proxy, 1, "before the deny");
    rewrite(&path, &file("deny = [\"127.0.0.0/8\"]", &[(&a, "")]));
    let line = reload(&mut proxy);
    assert!(line.ends_with(": changed deny"), "{line}");
    let mut s = connect(proxy.addr);
    let _ = s.write_all(b"x");
    assert_closed(&mut s, "a denied client");
    let st = proxy.wait_idle();
    assert_eq!(st.get("denied"), 1, "{st:?}");
    assert_eq!(a.accepted(), 1);
}

#[test]
fn a_first_idle_timeout_spares_a_pair_busy_until_the_reload() {
    let a = Backend::echo();
    // No timeout and no reset flush: the worker keeps no clock.
    let quiet = "connect-timeout = \"0s\"\nreset-flush-timeout = \"0s\"";
    let (_dir, path, mut proxy) = start(&file(quiet, &[(&a, "")]));
    let mut open = connect(proxy.addr);
    // Open for longer than the timeout to come, and busy at the end.
    thread::sleep(Duration::from_millis(2500));
    echo_byte(&mut open, b'a');
    let idle = format!("{quiet}\nidle-timeout = \"2s\"");
    rewrite(&path, &file(&idle, &[(&a, "")]));
    let line = reload(&mut proxy);
    assert!(line.ends_with(": changed idle-timeout"), "{line}");
    // Well within the timeout of its last byte, the pair is still there.
    thread::sleep(Duration::from_millis(700));
    echo_byte(&mut open, b'b');
    // Left idle, it is closed by the new timeout.
    assert_closed(&mut open, "the idle pair");
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), 1, "{st:?}");
}
