//! The command-line contract: help and version, one clear line on stderr
//! and a non-zero exit for every bad input (before anything is bound), and
//! a config file that works.

use crate::util::{connect, echo_byte, Backend, Proxy, WAIT};
use assert_cmd::Command;
use std::io::Write;
use std::net::TcpListener;

/// The proxy binary (with this binary's engine) under `assert_cmd`,
/// failing instead of hanging.
fn proxy() -> Command {
    let mut cmd = Command::from(crate::util::proxy_command());
    cmd.timeout(WAIT);
    cmd
}

/// The proxy binary with no engine chosen, for the tests of `--engine`.
pub(crate) fn bare_proxy() -> Command {
    let mut cmd = Command::new(crate::util::BIN);
    cmd.timeout(WAIT);
    cmd
}

/// Runs the proxy with `args` on top of `-l 127.0.0.1 -p 0` (unless `args`
/// sets those), so that a bad input that slipped through would bind and
/// run until the timeout. Checks for a non-zero exit and exactly one line
/// on stderr that starts with `proxy:` and mentions every `needle`;
/// returns that line.
pub(crate) fn rejects(args: &[&str], needles: &[&str]) -> String {
    let mut all: Vec<&str> = Vec::new();
    if !args.iter().any(|a| *a == "-l" || *a == "--listen") {
        all.extend(["-l", "127.0.0.1"]);
    }
    if !args.iter().any(|a| *a == "-p" || *a == "--port") {
        all.extend(["-p", "0"]);
    }
    all.extend_from_slice(args);
    rejects_exactly(&all, needles)
}

/// [`rejects`] with exactly `all` as the arguments.
pub(crate) fn rejects_exactly(all: &[&str], needles: &[&str]) -> String {
    rejects_by(proxy(), all, needles)
}

/// [`rejects_exactly`] with `cmd` as the proxy.
pub(crate) fn rejects_by(mut cmd: Command, all: &[&str], needles: &[&str]) -> String {
    let out = cmd
        .args(all)
        .output()
        .unwrap_or_else(|e| panic!("proxy {all:?} did not exit: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "proxy {all:?} succeeded; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "proxy {all:?} wrote {} lines: {stderr}",
        lines.len()
    );
    let line = lines[0];
    assert!(line.starts_with("proxy: "), "{line}");
    for n in needles {
        assert!(line.contains(n), "{line:?} does not mention {n:?}");
    }
    line.to_string()
}

/// Writes `text` to a config file in a fresh temporary directory.
pub(crate) fn config_file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.toml");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("write config");
    let path = path.to_str().expect("utf-8 path").to_string();
    (dir, path)
}

#[test]
fn help_exits_zero_and_lists_the_contract_options() {
    let out = proxy()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .clone();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "-l, --listen",
        "-p, --port",
        "-b, --backend",
        "-P, --backend-port",
        "--max-connections",
    ] {
        assert!(help.contains(opt), "--help does not mention {opt}:\n{help}");
    }
}

#[test]
fn version_flag_prints_the_version() {
    proxy()
        .arg("-V")
        .assert()
        .success()
        .stdout(format!("proxy {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn port_out_of_range_is_one_line_error() {
    rejects(&["-p", "70000"], &["--port", "70000"]);
}

#[test]
fn port_not_a_number_is_one_line_error() {
    rejects(&["-p", "abc"], &["--port", "abc"]);
}

#[test]
fn listen_address_with_five_parts_is_one_line_error() {
    rejects(&["-l", "1.2.3.4.5"], &["--listen", "1.2.3.4.5"]);
}

#[test]
fn empty_backend_is_one_line_error() {
    rejects(&["-b", ""], &["--backend"]);
}

#[test]
fn tiny_buffer_size_is_one_line_error() {
    rejects(&["--buffer-size", "1"], &["--buffer-size", "1"]);
}

#[test]
fn a_pool_under_two_buffers_a_connection_is_one_line_error() {
    rejects(
        &["--max-connections", "8", "--buffers", "2"],
        &["--buffers", "2", "at least 2 per connection"],
    );
}

#[test]
fn a_bad_cidr_is_one_line_error() {
    rejects(
        &["--allow", "10.0.0.0/33"],
        &["--allow", "10.0.0.0/33", "0..=32"],
    );
}

#[test]
fn proxy_protocol_with_a_tiny_buffer_is_one_line_error() {
    rejects(
        &["--proxy-protocol", "v1", "--buffer-size", "64"],
        &["--buffer-size", "64", "--proxy-protocol"],
    );
}

#[test]
fn zero_max_connections_is_one_line_error() {
    rejects(&["--max-connections", "0"], &["--max-connections", "0"]);
}

#[test]
fn unknown_flag_is_one_line_error() {
    rejects(&["--bogus"], &["--bogus"]);
}

#[test]
fn missing_config_file_is_one_line_error() {
    rejects(&["-c", "/nonexistent.toml"], &["/nonexistent.toml"]);
}

#[test]
fn config_with_unknown_key_names_the_key() {
    let (_dir, path) = config_file("bogus-key = 1\n");
    rejects(&["-c", &path], &["bogus-key", &path]);
}

#[test]
fn config_error_names_the_line_of_the_unknown_key() {
    let (_dir, path) = config_file("listen = \"127.0.0.1\"\nport = 0\nbogus-key = 1\n");
    rejects(&["-c", &path], &["bogus-key", "line 3"]);
}

#[test]
fn config_with_wrong_type_is_one_line_error() {
    let (_dir, path) = config_file("port = \"eighty\"\n");
    rejects(&["-c", &path], &[&path, "eighty"]);
}

#[test]
fn address_in_use_is_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    rejects(&["-l", "127.0.0.1", "-p", &port], &[&port]);
}

#[test]
fn config_file_sets_listen_port_and_backend() {
    let backend = Backend::echo();
    let (_dir, path) = config_file(&format!(
        "listen = \"127.0.0.1\"\nport = 0\nbackend = \"{}\"\n",
        backend.addr
    ));
    let proxy = Proxy::start(&["-c", &path]);
    assert_eq!(proxy.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(proxy.addr.port(), 0, "`listening on` shows port 0");
    let mut s = connect(proxy.addr);
    echo_byte(&mut s, b'c');
    assert_eq!(backend.accepted(), 1, "the configured backend was not used");
}

#[test]
fn bad_pipe_settings_are_one_line_errors() {
    rejects(&["--pipes", "100000"], &["--pipes", "100000"]);
    rejects(&["--pipe-size", "100"], &["--pipe-size", "100"]);
    rejects(&["--pipes", "lots"], &["--pipes", "lots"]);
}

#[test]
fn bad_busy_poll_is_one_line_error() {
    rejects(&["--busy-poll", "5"], &["--busy-poll", "at most 1s"]);
    rejects(&["--busy-poll", "50ns"], &["--busy-poll", "50ns"]);
}
