//! Bad input, table-driven: every option and config key with wrong values
//! (non-numbers, negative, overflow, empty, huge, unresolvable names, IPv6
//! without brackets, duplicates, a directory or a missing file instead of
//! a config) is one line naming the option or key and the value, a
//! non-zero exit, and nothing bound. Plus what a small open-files limit
//! derives. Unresolvable names use the `.invalid` TLD, so no test waits on
//! the network.

use crate::cli::{config_file, rejects, rejects_exactly};
use crate::util::{connect, echo_byte, Backend, Proxy};
use std::process::Command;

/// Options with bad values, each with what its one line must mention.
const OPTIONS: &[(&[&str], &[&str])] = &[
    // Ports: non-numbers, negative, overflow, empty.
    (&["-p", "-1"], &["--port", "\"-1\"", "0..=65535"]),
    (&["-p", "http"], &["--port", "http", "0..=65535"]),
    (&["-p", ""], &["--port", "0..=65535"]),
    (&["-P", "0"], &["--backend-port", "\"0\"", "1..=65535"]),
    (&["--backend-port", "-5"], &["--backend-port", "-5"]),
    (&["--backend-port", "65536"], &["--backend-port", "65536"]),
    // Addresses.
    (&["-l", "1.2.3.4.5"], &["--listen", "1.2.3.4.5"]),
    (&["-l", ""], &["--listen"]),
    (&["-l", "::1:9000"], &["--listen", "::1:9000", "--port"]),
    (
        &["-b", "::1:9000"],
        &["--backend", "::1:9000", "[::1]:9000"],
    ),
    (
        &["-b", "127.0.0.1:0"],
        &["--backend", "127.0.0.1:0", "port 0"],
    ),
    (&["-b", "localhost:0"], &["--backend", "localhost:0"]),
    (
        &["-b", "127.0.0.1:99999"],
        &["--backend", "127.0.0.1:99999"],
    ),
    (
        &["-b", "no-such-host.invalid"],
        &["--backend", "no-such-host.invalid"],
    ),
    (
        &["-b", "no-such-host.invalid:80"],
        &["--backend", "no-such-host.invalid"],
    ),
    (&["-b", ""], &["--backend"]),
    (&["--metrics", "::1:9100"], &["--metrics", "::1:9100"]),
    (&["--metrics", "127.0.0.1"], &["--metrics", "ADDR:PORT"]),
    // Counts: negative, non-numbers, overflow, out of range.
    (&["--workers", "-1"], &["--workers", "-1", "1..=256"]),
    (&["--workers", "0"], &["--workers", "\"0\"", "1..=256"]),
    (&["--workers", "many"], &["--workers", "many"]),
    (&["--workers", "999"], &["--workers", "999"]),
    (&["--max-connections", "-1"], &["--max-connections", "-1"]),
    (
        &["--max-connections", "99999999999999999999999"],
        &["--max-connections", "99999999999999999999999"],
    ),
    (&["--buffer-size", "-64"], &["--buffer-size", "-64"]),
    (&["--buffer-size", "1"], &["--buffer-size", "64..="]),
    (&["--buffer-size", "1e6"], &["--buffer-size", "1e6"]),
    (&["--buffers", "-5"], &["--buffers", "-5"]),
    (&["--large-buffers", "-1"], &["--large-buffers", "-1"]),
    (
        &["--large-buffers", "2000000"],
        &["--large-buffers", "2000000"],
    ),
    (
        &["--large-buffer-size", "0"],
        &["--large-buffer-size", "\"0\""],
    ),
    (&["--pipes", "-1"], &["--pipes", "-1"]),
    (&["--pipe-size", "-4096"], &["--pipe-size", "-4096"]),
    (&["--backlog", "-1"], &["--backlog", "-1"]),
    (&["--backlog", "0"], &["--backlog", "\"0\""]),
    (&["--backlog", "99999999999"], &["--backlog", "99999999999"]),
    (&["--connect-retries", "0"], &["--connect-retries", "\"0\""]),
    (&["--connect-retries", "65"], &["--connect-retries", "65"]),
    (&["--connect-retries", "-1"], &["--connect-retries", "-1"]),
    (&["--fall", "-3"], &["--fall", "-3"]),
    (&["--fall", "many"], &["--fall", "many"]),
    (&["--fail-timeout", "-1s"], &["--fail-timeout", "-1s"]),
    (&["--fail-timeout", "later"], &["--fail-timeout", "later"]),
    (&["--slow-start", "-1s"], &["--slow-start", "-1s"]),
    (&["--queue", "x"], &["--queue", "\"x\""]),
    (&["--queue", "-1"], &["--queue", "-1"]),
    (
        &["--queue-timeout", "1ms"],
        &["--queue-timeout", "1ms", "10ms"],
    ),
    (&["--all-down", "maybe"], &["--all-down", "maybe", "reject"]),
    // Durations: negative, no number, unknown unit, too short or long.
    (
        &["--drain-timeout", "-1s"],
        &["--drain-timeout", "-1s", "negative"],
    ),
    (&["--drain-timeout", "soon"], &["--drain-timeout", "soon"]),
    (
        &["--reset-flush-timeout", "-1"],
        &["--reset-flush-timeout", "-1"],
    ),
    (&["--connect-timeout", "-5s"], &["--connect-timeout", "-5s"]),
    (
        &["--connect-timeout", "1ms"],
        &["--connect-timeout", "1ms", "10ms"],
    ),
    (&["--idle-timeout", "10x"], &["--idle-timeout", "10x"]),
    (&["--busy-poll", "-1us"], &["--busy-poll", "-1us"]),
    (&["--busy-poll", "2s"], &["--busy-poll", "2s"]),
    // Lists and names.
    (&["--allow", "10.0.0.0/33"], &["--allow", "10.0.0.0/33"]),
    (&["--deny", "nonsense"], &["--deny", "nonsense"]),
    (&["--balance", "random"], &["--balance", "random"]),
    (&["--proxy-protocol", "v3"], &["--proxy-protocol", "v3"]),
    (&["--workers", "1", "--workers", "2"], &["--workers"]),
    // Sizes the descriptors or the memory cannot hold, named as given.
    (
        &["--max-connections", "5000000"],
        &["--max-connections", "5000000", "open-files limit"],
    ),
    (
        &["--max-connections", "10000000", "--buffer-size", "64"],
        &["--max-connections", "10000000", "open-files limit"],
    ),
    (
        &[
            "--large-buffers",
            "1048576",
            "--large-buffer-size",
            "16777216",
        ],
        &["--large-buffers", "1048576", "MemTotal"],
    ),
    // Config files that are not there or not files.
    (
        &["-c", "/nonexistent/proxy.toml"],
        &["/nonexistent/proxy.toml"],
    ),
    (&["-c", "/"], &["\"/\"", "directory"]),
    (&["-c", ""], &["config"]),
];

/// Config files with bad values: the text, and what the line must mention.
const KEYS: &[(&str, &[&str])] = &[
    ("port = \"eighty\"\n", &["key port", "eighty", "line 1"]),
    ("port = -1\n", &["key port", "-1"]),
    ("port = 70000\n", &["key port", "70000", "0..=65535"]),
    ("port = 1\nport = 2\n", &["duplicate key `port`", "line 2"]),
    (
        "\nmax-connections = \"big\"\n",
        &["key max-connections", "big", "line 2"],
    ),
    (
        "max-connections = 5000000\n",
        &["key max-connections", "5000000"],
    ),
    (
        "backend = 5\n",
        &["key backend", "an address string, a list of them, or [[backend]] tables"],
    ),
    ("backend = [5]\n", &["key backend", "5"]),
    ("backend = []\n", &["backend", "no backend"]),
    (
        "backend = \"::1:9000\"\n",
        &["key backend", "::1:9000", "[::1]:9000"],
    ),
    (
        "backend = [\n  \"127.0.0.1:1\",\n  \"x.invalid\",\n]\n",
        &["key backend", "x.invalid"],
    ),
    ("backend-port = 0\n", &["key backend-port", "\"0\""]),
    // `[[backend]]` tables: each mistake names backend[N].KEY (from 1).
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nweight = 0\n",
        &["key backend[1].weight", "\"0\"", "1..=1000"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\n[[backend]]\naddress = \"127.0.0.1:2\"\nweight = 1001\n",
        &["key backend[2].weight", "1001", "1..=1000"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nweight = -1\n",
        &["key backend[1].weight", "-1", "line 3"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\n\n[[backend]]\naddress = \"127.0.0.1:2\"\nweight = \"heavy\"\n",
        &["key backend[2].weight", "heavy", "line 6"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nbackup = \"yes\"\n",
        &["key backend[1].backup", "yes", "a boolean"],
    ),
    (
        "[[backend]]\naddress = \"::1:9000\"\n",
        &["key backend[1].address", "::1:9000", "[::1]:9000"],
    ),
    (
        "[[backend]]\naddress = \"x.invalid\"\n",
        &["key backend[1].address", "x.invalid"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\n[[backend]]\nweight = 2\n",
        &["key backend[2]", "missing field `address`", "line 3"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nwieght = 2\n",
        &["key backend[1].wieght", "unknown field", "`weight`"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nbackup = true\n",
        &["key backend[1].backup", "every backend is a backup"],
    ),
    (
        "backend = \"127.0.0.1:1\"\n[[backend]]\naddress = \"127.0.0.1:2\"\n",
        &["key backend and [[backend]]", "one or the other", "line 2"],
    ),
    (
        "backend = [{ address = \"127.0.0.1:1\", weight = 0 }]\n",
        &["key backend[1].weight", "\"0\""],
    ),

    ("listen = \"\"\n", &["key listen"]),
    ("listen = 127\n", &["key listen", "127"]),
    ("workers = 0\n", &["key workers", "\"0\"", "1..=256"]),
    ("workers = -1\n", &["key workers", "-1"]),
    ("workers = 1.5\n", &["key workers", "1.5"]),
    ("buffer-size = 1\n", &["key buffer-size", "\"1\""]),
    ("buffers = 99999999999999999999\n", &["buffers"]),
    (
        "large-buffers = 1048576\nlarge-buffer-size = 16777216\n",
        &["key large-buffers", "MemTotal"],
    ),
    ("pipes = 100000\n", &["key pipes", "100000"]),
    ("connect-retries = 0\n", &["key connect-retries", "0"]),
    ("slow-start = \"soon\"\n", &["key slow-start", "soon"]),
    ("queue = -1\n", &["key queue", "-1"]),
    ("queue-timeout = \"0s\"\n", &["key queue-timeout", "0s"]),
    ("all-down = \"never\"\n", &["all-down", "never"]),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nmax-connections = -1\n",
        &["key backend[1].max-connections", "-1"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nmax-connections = 99999999\n",
        &["key backend[1].max-connections", "99999999"],
    ),
    (
        "[[backend]]\naddress = \"127.0.0.1:1\"\nslow-start = \"soon\"\n",
        &["key backend[1].slow-start", "soon"],
    ),
    ("fall = \"3\"\n", &["key fall", "3"]),
    ("fail-timeout = 10\n", &["key fail-timeout", "10"]),
    ("pipe-size = \"big\"\n", &["key pipe-size", "big"]),
    ("drain-timeout = \"-1s\"\n", &["key drain-timeout", "-1s"]),
    ("drain-timeout = 5\n", &["key drain-timeout", "5"]),
    (
        "reset-flush-timeout = \"x\"\n",
        &["key reset-flush-timeout", "\"x\""],
    ),
    (
        "connect-timeout = \"1ms\"\n",
        &["key connect-timeout", "1ms"],
    ),
    ("idle-timeout = \"-2m\"\n", &["key idle-timeout", "-2m"]),
    ("busy-poll = \"5s\"\n", &["key busy-poll", "5s"]),
    ("metrics = \"::1:9100\"\n", &["key metrics", "::1:9100"]),
    ("balance = \"random\"\n", &["balance", "random"]),
    (
        "log-connections = \"yes\"\n",
        &["key log-connections", "yes"],
    ),
    ("backlog = 0\n", &["key backlog", "\"0\""]),
    ("allow = \"10.0.0.0/8\"\n", &["key allow", "a list"]),
    ("deny = [\"10.0.0.0/99\"]\n", &["key deny", "10.0.0.0/99"]),
    ("proxy-protocol = \"v9\"\n", &["proxy-protocol", "v9"]),
    ("bogus-key = 1\n", &["bogus-key"]),
    ("port = \n", &["key port", "line 1"]),
];

#[test]
fn every_bad_option_is_one_line_naming_it_and_its_value() {
    for (args, needles) in OPTIONS {
        rejects(args, needles);
    }
}

#[test]
fn every_bad_config_key_is_one_line_naming_it_and_its_value() {
    for (text, needles) in KEYS {
        let (_dir, path) = config_file(text);
        let mut needles = needles.to_vec();
        needles.push(&path);
        // A listen address on the command line would hide the file's.
        let mut args = vec!["-c", path.as_str(), "-p", "0"];
        if !text.starts_with("listen") {
            args.extend(["-l", "127.0.0.1"]);
        }
        rejects_exactly(&args, &needles);
    }
}

#[test]
fn an_empty_config_file_keeps_every_default() {
    let backend = Backend::echo();
    let (_dir, path) = config_file("");
    let b = backend.addr.to_string();
    let proxy = Proxy::start(&["-c", &path, "-l", "127.0.0.1", "-p", "0", "-b", &b]);
    let mut s = connect(proxy.addr);
    echo_byte(&mut s, b'e');
}

#[test]
fn a_bare_ipv6_backend_keeps_the_default_port() {
    let backend = Backend::echo();
    let port = backend.addr.port().to_string();
    // `::1` may be absent (no IPv6 loopback): the address parses either way,
    // and a proxy that started says so.
    let proxy = Proxy::start(&["-l", "127.0.0.1", "-p", "0", "-b", "::1", "-P", &port]);
    assert_ne!(proxy.addr.port(), 0);
}

/// Under `prlimit --nofile=64:64` the 16 default pipes would take 32 of
/// the 64 descriptors and leave room for one connection; pipes give way,
/// and the start-up line says what was derived.
#[test]
fn a_small_open_files_limit_gives_connections_before_pipes() {
    let backend = Backend::echo();
    let b = backend.addr.to_string();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64").args(crate::util::proxy_argv());
    let mut proxy = Proxy::start_with(cmd, &["-l", "127.0.0.1", "-p", "0", "-b", &b]);
    let line = proxy
        .log()
        .into_iter()
        .find(|l| l.contains("from the open-files limit"))
        .expect("a line saying what the limit gave");
    // The uring engine's ring and side epoll fit the worker's share
    // (netio::budget::PER_WORKER): the budget is the same for both.
    let (derived, pipes) = ("9 connections, 3 pipes", 3);
    assert!(line.contains(derived), "{line}");
    // Several clients at once are all served.
    let mut clients: Vec<_> = (0..5).map(|_| connect(proxy.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        echo_byte(c, i as u8);
    }
    let s = proxy.stats();
    assert_eq!(s.get("pipes_capacity"), pipes, "{s:?}");
}

/// An open-files limit too small for even one connection says so, with
/// what would be needed, and blames no option the user did not give; one
/// the user gave is named.
#[test]
fn an_open_files_limit_too_small_for_any_connection_blames_no_default() {
    let run = |extra: &[&str]| {
        let mut cmd = Command::new("prlimit");
        cmd.arg("--nofile=40:40")
            .args(crate::util::proxy_argv())
            .args(["-l", "127.0.0.1", "-p", "0", "-b", "127.0.0.1:9"])
            .args(extra);
        let out = cmd.output().expect("prlimit runs");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let line = run(&[]);
    assert_eq!(
        line,
        "proxy: the open-files limit 40 is too small for any connection with 1 worker and \
         0 pipes a worker (at least 42 descriptors are needed); raise it (ulimit -n)"
    );
    let line = run(&["--max-connections", "1"]);
    assert!(
        line.starts_with(
            "proxy: invalid --max-connections \"1\": the open-files limit 40 is too small"
        ),
        "{line}"
    );
}
