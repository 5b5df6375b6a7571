//! The admin interface through the real proxy: the backends' listing on
//! the metrics listener (`/backends`, `/backends.json`) and per-backend
//! series on `/metrics`; the admin socket (`--admin-socket`, mode 0600)
//! draining a backend, putting it in maintenance, bringing it back and
//! changing its weight, counted at real echo backends; bad commands; a
//! stale socket replaced, a live one never.

use crate::cli::{config_file, rejects};
use crate::failover::{all_served, exchange};
use crate::util::{connect, echo_byte, http_get, prom_value, Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Two echo backends named `a` and `b` in a config file that also sets
/// `admin-socket`, and the proxy in front of them with its metrics.
struct Setup {
    a: Backend,
    b: Backend,
    proxy: Proxy,
    socket: PathBuf,
    _dirs: [tempfile::TempDir; 2],
}

fn setup(extra: &[&str]) -> Setup {
    let (a, b) = (Backend::echo(), Backend::echo());
    let socket_dir = tempfile::tempdir().expect("tempdir");
    let socket = socket_dir.path().join("admin.sock");
    let text = format!(
        "admin-socket = \"{}\"\n\
         [[backend]]\nname = \"a\"\naddress = \"{}\"\n\
         [[backend]]\nname = \"b\"\naddress = \"{}\"\n",
        socket.display(),
        a.addr,
        b.addr
    );
    let (config_dir, path) = config_file(&text);
    let mut args = vec!["-c", &path, "-l", "127.0.0.1", "-p", "0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args);
    Setup {
        a,
        b,
        proxy,
        socket,
        _dirs: [socket_dir, config_dir],
    }
}

/// Sends `line` to the admin socket at `path` and reads the answer.
fn admin(path: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the admin socket");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s.write_all(format!("{line}\n").as_bytes())
        .expect("send the command");
    let mut got = String::new();
    s.read_to_string(&mut got).expect("read the answer");
    got
}

/// The listing line of backend `name` in `text`.
fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no line for {name} in {text:?}"))
}

#[test]
fn the_listing_shows_both_backends_with_their_open_connections() {
    let s = setup(&["--metrics", "127.0.0.1:0"]);
    let metrics = s.proxy.metrics_addr();
    // Round-robin: the first client goes to a, the second to b.
    let (mut c1, mut c2) = (connect(s.proxy.addr), connect(s.proxy.addr));
    echo_byte(&mut c1, b'1');
    echo_byte(&mut c2, b'2');
    let (status, text) = http_get(metrics, "/backends");
    assert!(status.contains("200"), "{status}");
    for (name, addr) in [("a", s.a.addr), ("b", s.b.addr)] {
        let line = line_of(&text, name);
        let want = format!("{name} {addr} state=up admin=ready weight=1 backup=no active=1 ");
        assert!(line.starts_with(&want), "{line:?}");
    }
    assert_eq!(text, admin(&s.socket, "show backends"), "the same listing");
    let (_, body) = http_get(metrics, "/backends.json");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let list = v["backends"].as_array().expect("a list");
    assert_eq!(list.len(), 2, "{v}");
    for (entry, name) in list.iter().zip(["a", "b"]) {
        assert_eq!(entry["name"], name, "{v}");
        assert_eq!(entry["active"], 1, "{v}");
        assert_eq!(entry["admin"], "ready", "{v}");
    }
    let (_, prom) = http_get(metrics, "/metrics");
    let sample = |name: &str| prom_value(&prom, name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(sample("proxy_backend_active_connections{backend=\"a\"}"), 1);
    assert_eq!(sample("proxy_backend_connections_total{backend=\"b\"}"), 1);
    assert_eq!(sample("proxy_active"), 2, "the old series are still there");
}

#[test]
fn the_admin_socket_is_private_and_gone_after_exit() {
    let mut s = setup(&[]);
    let meta = std::fs::symlink_metadata(&s.socket).expect("the socket exists");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = s.socket.parent().expect("dir");
    let names: Vec<_> = std::fs::read_dir(dir).expect("dir").collect();
    assert_eq!(names.len(), 1, "no temporary left beside it: {names:?}");
    s.proxy.signal("TERM");
    assert!(s.proxy.wait_exit().success());
    assert!(!s.socket.exists(), "the socket outlived the proxy");
}

#[test]
fn drain_and_maint_send_new_clients_elsewhere_while_established_ones_go_on() {
    for state in ["drain", "maint"] {
        let s = setup(&[]);
        let (mut on_a, mut on_b) = (connect(s.proxy.addr), connect(s.proxy.addr));
        echo_byte(&mut on_a, b'a');
        echo_byte(&mut on_b, b'b');
        assert_eq!((s.a.accepted(), s.b.accepted()), (1, 1));
        let got = admin(&s.socket, &format!("set backend b state {state}"));
        let want = format!("backend b: state {state} (was ready); 1 open connections go on\n");
        assert_eq!(got, want);
        all_served(&s.proxy, 10, state);
        assert_eq!((s.a.accepted(), s.b.accepted()), (11, 1), "{state}");
        echo_byte(&mut on_b, b'c');
        let text = admin(&s.socket, "show backends");
        assert!(
            line_of(&text, "b").contains(&format!(" admin={state} ")),
            "{text}"
        );
        admin(&s.socket, "set backend b state ready");
        all_served(&s.proxy, 10, "ready again");
        assert_eq!((s.a.accepted(), s.b.accepted()), (16, 6), "{state}");
        echo_byte(&mut on_b, b'd');
    }
}

/// With every backend drained or in maintenance no backend takes a new
/// client: each is reset at once, counted in `refused`, and the period is
/// logged once, so that an operator sees why clients are turned away.
#[test]
fn with_every_backend_out_of_service_new_clients_are_refused_counted_and_logged_once() {
    let mut s = setup(&[]);
    admin(&s.socket, "set backend a state drain");
    admin(&s.socket, "set backend b state maint");
    for i in 0..3 {
        assert!(exchange(s.proxy.addr, b"x").is_err(), "client {i} is reset");
    }
    assert_eq!((s.a.accepted(), s.b.accepted()), (0, 0));
    let st = s.proxy.wait_idle();
    assert_eq!(st.get("refused"), 3, "{st:?}");
    let said = |l: &str| l.starts_with("proxy: no backend takes new clients");
    s.proxy.wait_logged(said);
    let lines = s.proxy.log().iter().filter(|l| said(l)).count();
    assert_eq!(lines, 1, "logged once: {:?}", s.proxy.log());
    admin(&s.socket, "set backend a state ready");
    all_served(&s.proxy, 2, "a ready again");
}

#[test]
fn a_weight_set_at_runtime_changes_the_shares() {
    let s = setup(&[]);
    let got = admin(&s.socket, "set backend b weight 3");
    assert_eq!(got, "backend b: weight 3 (was 1)\n");
    all_served(&s.proxy, 40, "weight 3");
    assert_eq!((s.a.accepted(), s.b.accepted()), (10, 30));
    let text = admin(&s.socket, "show backends");
    assert!(line_of(&text, "b").contains(" weight=3 "), "{text}");
}

#[test]
fn bad_commands_get_one_error_line_naming_them_and_change_nothing() {
    let s = setup(&[]);
    // The exact wording is the unit tests' (src/admin.rs); here, over the
    // socket, each is one error line naming the culprit.
    for (cmd, culprit) in [
        ("frobnicate", "\"frobnicate\""),
        ("set backend zz state drain", "\"zz\""),
        ("set backend a state off", "\"off\""),
        ("set backend a weight 1001", "\"1001\""),
        ("set backend a weight 0", "\"0\""),
    ] {
        let got = admin(&s.socket, cmd);
        assert_eq!(got.lines().count(), 1, "{cmd:?}: {got:?}");
        assert!(
            got.starts_with("error: ") && got.contains(culprit),
            "{cmd:?}: {got:?}"
        );
    }
    // A command without its newline, ended by the client's FIN (printf).
    let mut u = UnixStream::connect(&s.socket).expect("connect");
    u.set_read_timeout(Some(WAIT)).expect("read timeout");
    u.write_all(b"show backends").expect("send");
    u.shutdown(std::net::Shutdown::Write).expect("FIN");
    let mut got = String::new();
    u.read_to_string(&mut got).expect("read");
    assert_eq!(got.lines().count(), 2, "{got:?}");
    let many = admin(&s.socket, "help; show backends");
    assert!(many.starts_with("help "), "{many}");
    assert!(many.contains("\nb "), "{many}");
    all_served(&s.proxy, 4, "after bad commands");
    assert_eq!((s.a.accepted(), s.b.accepted()), (2, 2));
}

#[test]
fn refused_connects_are_counted_by_backend_and_kind() {
    let echo = Backend::echo();
    let dead = crate::util::dead_addr();
    let text = format!(
        "[[backend]]\nname = \"dead\"\naddress = \"{dead}\"\n\
         [[backend]]\nname = \"live\"\naddress = \"{}\"\n",
        echo.addr
    );
    let (_dir, path) = config_file(&text);
    let args = [
        "-c",
        &path,
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "--metrics",
        "127.0.0.1:0",
        "--fall",
        "1",
        "--fail-timeout",
        "60s",
    ];
    let proxy = Proxy::start(&args);
    let metrics = proxy.metrics_addr();
    // The first client tries dead first, fails over, and marks it down.
    all_served(&proxy, 10, "one backend refusing");
    let (_, prom) = http_get(metrics, "/metrics");
    let sample = |name: &str| prom_value(&prom, name).unwrap_or_else(|| panic!("no {name}"));
    let errors = |b: &str, kind: &str| {
        sample(&format!(
            "proxy_backend_connect_errors_total{{backend=\"{b}\",kind=\"{kind}\"}}"
        ))
    };
    assert_eq!(errors("dead", "refused"), 1, "{prom}");
    for kind in ["timeout", "reset", "unreachable", "other"] {
        assert_eq!(errors("dead", kind), 0, "{kind}");
    }
    assert_eq!(errors("live", "refused"), 0);
    assert_eq!(sample("proxy_connect_failures"), 1);
    assert_eq!(sample("proxy_backend_up{backend=\"dead\"}"), 0);
    assert_eq!(sample("proxy_backend_up{backend=\"live\"}"), 1);
    assert_eq!(
        sample("proxy_backend_connections_total{backend=\"dead\"}"),
        1
    );
    assert_eq!(
        sample("proxy_backend_connections_total{backend=\"live\"}"),
        10
    );
    assert!(prom.contains("# TYPE proxy_backend_connect_errors_total counter\n"));
    let (_, text) = http_get(metrics, "/backends");
    assert!(line_of(&text, "dead").contains(" state=down "), "{text}");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_never() {
    let echo = Backend::echo();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("admin.sock");
    // A socket nobody listens on any more, as a crash leaves it.
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(path.exists());
    let p = path.to_str().expect("utf-8");
    let b = echo.addr.to_string();
    let proxy = Proxy::start(&["-l", "127.0.0.1", "-p", "0", "-b", &b, "--admin-socket", p]);
    assert!(admin(&path, "show backends").starts_with(&format!("{b} {b} state=up")));
    // A second proxy on the same path: refused, the first unharmed.
    rejects(
        &["-b", &b, "--admin-socket", p],
        &["--admin-socket", p, "another process"],
    );
    assert!(admin(&path, "show backends").starts_with(&b));
    drop(proxy);
    // Not a socket: never replaced.
    let file = dir.path().join("file");
    std::fs::write(&file, "keep me").expect("write");
    let f = file.to_str().expect("utf-8");
    rejects(&["-b", &b, "--admin-socket", f], &[f, "not a socket"]);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");
    rejects(
        &["--admin-socket", "/nonexistent-dir/admin.sock"],
        &[
            "--admin-socket",
            "\"/nonexistent-dir/admin.sock\"",
            "no directory",
        ],
    );
}

#[test]
fn an_idle_admin_socket_costs_no_wake_up() {
    let s = setup(&[]);
    assert!(admin(&s.socket, "show backends").starts_with("a "));
    let pid = s.proxy.pid();
    let switches = crate::util::settled_switches(pid);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        crate::util::voluntary_switches(pid),
        switches,
        "a thread woke up during a quiet second: {:?}",
        crate::util::thread_switches(pid)
    );
}
