//! End-to-end tests of the process itself: signals and bad arguments.

use crate::util::{read_to_eof, Backend, WAIT};
use assert_cmd::Command;
use std::io::Write;

/// Runs echo-backend with `args`; it must fail at once with one line on
/// stderr prefixed `echo-backend:`. Returns that line.
fn fails_with_one_line(args: &[&str]) -> String {
    let out = Command::cargo_bin("echo-backend")
        .expect("binary")
        .args(args)
        .timeout(WAIT)
        .output()
        .expect("run");
    assert!(!out.status.success(), "{args:?} succeeded: {out:?}");
    assert!(out.status.code().is_some(), "{args:?} was killed: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: {err:?}");
    assert!(lines[0].starts_with("echo-backend: "), "{args:?}: {err:?}");
    lines[0].to_string()
}

#[test]
fn sigterm_exits_zero_with_connections_open() {
    let mut b = Backend::start(&["--mode", "echo"]);
    let mut open: Vec<_> = (0..3).map(|_| b.connect()).collect();
    open[0].write_all(b"in flight").expect("write");
    b.signal("TERM");
    let status = b.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {:?}", b.log());
}

#[test]
fn sighup_and_sigusr2_are_logged_and_every_connection_goes_on() {
    let mut b = Backend::start(&["--mode", "echo"]);
    let mut held = b.connect();
    held.write_all(b"before ").expect("write");
    for (sig, name) in [("HUP", "SIGHUP"), ("USR2", "SIGUSR2")] {
        b.signal(sig);
        let line = b
            .wait_line(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no line for {name}; stderr: {:?}", b.log()));
        assert!(line.starts_with("echo-backend: "), "{line:?}");
    }
    held.write_all(b"after").expect("write");
    held.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_eof(&mut held), b"before after");
    b.signal("TERM");
    let status = b.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {:?}", b.log());
}

#[test]
fn sigint_exits_zero() {
    let mut b = Backend::start(&["--mode", "http"]);
    b.signal("INT");
    let status = b.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {:?}", b.log());
}

#[test]
fn bogus_mode_is_one_line_and_failure() {
    let line = fails_with_one_line(&["--mode", "bogus"]);
    assert!(line.contains("bogus"), "{line}");
}

#[test]
fn nonsense_listen_address_is_one_line_and_failure() {
    let line = fails_with_one_line(&["--listen", "nonsense"]);
    assert!(line.contains("nonsense"), "{line}");
}

#[test]
fn zero_workers_is_one_line_and_failure() {
    let line = fails_with_one_line(&["--workers", "0"]);
    assert!(line.contains("--workers"), "{line}");
}

#[test]
fn negative_counts_name_their_option() {
    for opt in ["--workers", "--max-connections"] {
        let line = fails_with_one_line(&[opt, "-1"]);
        assert!(line.contains(opt) && line.contains("-1"), "{line}");
    }
}

#[test]
fn a_port_in_use_is_one_line_and_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let line = fails_with_one_line(&["--listen", &addr]);
    assert!(line.contains(&addr), "{line}");
}

#[test]
fn fewer_connections_than_workers_is_one_line_and_failure() {
    let line = fails_with_one_line(&["--workers", "3", "--max-connections", "2"]);
    assert_eq!(
        line,
        "echo-backend: invalid --max-connections \"2\": must be at least --workers (3)"
    );
}
