//! `Child`: waits that fail with the child's own words, and a drop that
//! leaves nothing running.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::Child;

const WAIT: Duration = Duration::from_secs(10);

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// Whether `pid` is running (gone or a zombie is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| st.rsplit(')').next().map(str::to_owned))
        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
}

fn gone_soon(pid: u32) -> bool {
    (0..250).any(|_| {
        let r = running(pid);
        if r {
            std::thread::sleep(Duration::from_millis(20));
        }
        !r
    })
}

#[test]
fn dropping_a_child_kills_its_children_too() {
    let mut c = Child::spawn(
        "sh",
        &mut sh("sleep 30 & echo \"child $!\" >&2; wait"),
        WAIT,
    );
    let pid: u32 = c
        .try_wait_line("child ", WAIT)
        .expect("the grandchild's pid")
        .parse()
        .expect("a pid");
    assert!(running(pid));
    drop(c);
    assert!(gone_soon(pid), "the grandchild {pid} outlived the guard");
}

#[test]
fn a_parent_that_respawns_its_children_cannot_outlive_the_drop() {
    // Like nginx's master: a child that dies is replaced at once.
    let script = "while :; do sleep 30 & echo \"child $!\" >&2; wait; done";
    let mut c = Child::spawn("sh", &mut sh(script), WAIT);
    let first: u32 = c
        .try_wait_line("child ", WAIT)
        .expect("pid")
        .parse()
        .expect("a pid");
    let parent = c.pid();
    drop(c);
    assert!(gone_soon(first), "the child {first} outlived the guard");
    assert!(gone_soon(parent), "the parent {parent} outlived the guard");
}

#[test]
fn a_child_that_exits_fails_the_wait_at_once_with_its_stderr() {
    let mut c = Child::try_spawn("sh", &mut sh("echo 'no backend given' >&2; exit 3"), WAIT)
        .expect("spawn");
    let e = c.try_wait_listening().expect_err("it exited");
    assert!(
        e.contains("sh exited") && e.contains("no backend given"),
        "{e}"
    );
    let e = c.check_alive().expect_err("exited");
    assert!(e.contains("exit status: 3"), "{e}");
}

#[test]
fn a_program_that_cannot_start_is_an_error_naming_it() {
    let e = Child::try_spawn("ghost", &mut Command::new("/nonexistent/ghost"), WAIT)
        .err()
        .expect("no such program");
    assert!(
        e.contains("cannot start ghost") && e.contains("/nonexistent/ghost"),
        "{e}"
    );
}

#[test]
fn the_listening_line_gives_the_address_and_a_bad_one_is_named() {
    let mut c = Child::spawn(
        "sh",
        &mut sh("echo 'listening on 127.0.0.1:5' >&2; sleep 30"),
        WAIT,
    );
    assert_eq!(c.wait_listening(), "127.0.0.1:5".parse().expect("addr"));
    let mut c = Child::spawn(
        "sh",
        &mut sh("echo 'listening on nowhere' >&2; sleep 30"),
        WAIT,
    );
    let e = c.try_wait_listening().expect_err("bad address");
    assert!(e.contains("unparsable address \"nowhere\""), "{e}");
}

#[test]
fn a_line_never_printed_fails_after_its_timeout_naming_it() {
    let mut c = Child::spawn("sh", &mut sh("echo starting >&2; sleep 30"), WAIT);
    let e = c
        .try_wait_line("ready", Duration::from_millis(300))
        .expect_err("never printed");
    assert!(
        e.contains("did not print \"ready\"") && e.contains("starting"),
        "{e}"
    );
}

#[test]
fn wait_output_returns_the_status_and_stdout() {
    let mut cmd = sh("echo '{\"ok\":1}'; echo done >&2; exit 4");
    let c = Child::try_spawn("sh", cmd.stdout(Stdio::piped()), WAIT).expect("spawn");
    let (status, out) = c.wait_output(WAIT).expect("output");
    assert_eq!((status.code(), out.trim()), (Some(4), "{\"ok\":1}"));
}

#[test]
fn wait_output_watching_hands_on_the_stderr_lines_while_it_runs() {
    let mut cmd = sh("echo one >&2; sleep 0.2; echo two >&2; echo '{}'; sleep 0.2");
    let c = Child::try_spawn("sh", cmd.stdout(Stdio::piped()), WAIT).expect("spawn");
    let mut seen = Vec::new();
    let (status, out) = c
        .wait_output_watching(WAIT, |l| seen.push(l.to_string()))
        .expect("output");
    assert_eq!((status.code(), out.trim()), (Some(0), "{}"));
    assert_eq!(seen, ["one", "two"]);
}

#[test]
fn wait_output_gives_up_on_a_child_that_runs_on() {
    let mut cmd = sh("echo working >&2; exec sleep 30");
    let mut c = Child::try_spawn("sleeper", cmd.stdout(Stdio::piped()), WAIT).expect("spawn");
    c.try_wait_line("working", WAIT).expect("started");
    let pid = c.pid();
    let e = c
        .wait_output(Duration::from_millis(200))
        .expect_err("still running");
    assert!(
        e.contains("sleeper still running") && e.contains("working"),
        "{e}"
    );
    assert!(gone_soon(pid), "the child was not killed");
}

#[test]
fn a_signal_reaches_the_child_and_its_exit_is_seen() {
    let script = "trap 'echo bye >&2; exit 7' TERM; echo ready >&2; while :; do sleep 0.05; done";
    let mut c = Child::spawn("sh", &mut sh(script), WAIT);
    c.try_wait_line("ready", WAIT).expect("ready");
    c.signal("TERM");
    assert_eq!(c.wait_exit().code(), Some(7));
    assert!(c.log().iter().any(|l| l == "bye"), "{:?}", c.log());
    assert!(c.tail().ends_with("bye"), "{}", c.tail());
}

#[test]
fn a_port_wait_fails_when_the_child_dies_first() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let free = l.local_addr().expect("addr");
    drop(l);
    let mut c = Child::spawn("sh", &mut sh("echo 'bind failed' >&2; exit 1"), WAIT);
    let e = c.try_wait_port(free).expect_err("died");
    assert!(e.contains("bind failed"), "{e}");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut c = Child::spawn("sh", &mut sh("sleep 30"), WAIT);
    c.try_wait_port(l.local_addr().expect("addr"))
        .expect("something listens");
    assert!(Path::new(&format!("/proc/{}", c.pid())).exists());
}
