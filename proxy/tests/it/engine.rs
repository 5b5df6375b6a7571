//! The engine choice itself: the start-up line names the engine this
//! binary runs (`util::ENGINE`), a bad engine from the command line or
//! from a config file is one clear line, and the counters of the engine
//! not running stay at zero.

use crate::cli::{bare_proxy, config_file, rejects, rejects_by};
use crate::util::{connect, echo_byte, Backend, Proxy, BIN, ENGINE};
use std::process::Command;

#[test]
fn the_start_up_line_names_the_engine_before_listening() {
    let backend = Backend::echo();
    let proxy = Proxy::start_to(backend.addr, &[]);
    let log = proxy.log();
    let named = log
        .iter()
        .position(|l| *l == format!("proxy: engine {ENGINE}"))
        .unwrap_or_else(|| panic!("no line `proxy: engine {ENGINE}`: {log:?}"));
    let listening = log
        .iter()
        .position(|l| l.starts_with("listening on "))
        .unwrap_or_else(|| panic!("no listening line: {log:?}"));
    assert!(
        named < listening,
        "the engine named after listening: {log:?}"
    );
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("proxy: engine"))
            .count(),
        1,
        "{log:?}"
    );
}

/// The config key alone chooses the engine, with no `--engine` given.
#[test]
fn the_config_key_alone_chooses_the_engine() {
    let backend = Backend::echo();
    let (_dir, path) = config_file(&format!(
        "engine = \"{ENGINE}\"\n[[backend]]\naddress = \"{}\"\n",
        backend.addr
    ));
    let proxy = Proxy::start_with(
        Command::new(BIN),
        &["-c", &path, "-l", "127.0.0.1", "-p", "0"],
    );
    proxy.wait_logged(|l| *l == format!("proxy: engine {ENGINE}"));
    let mut c = connect(proxy.addr);
    echo_byte(&mut c, 7);
}

#[test]
fn an_unknown_engine_on_the_command_line_is_one_line_error() {
    let line = rejects_by(
        bare_proxy(),
        &["-l", "127.0.0.1", "-p", "0", "--engine", "foo"],
        &["--engine", "foo", "epoll", "uring"],
    );
    assert!(line.starts_with("proxy: invalid value"), "{line}");
}

#[test]
fn an_unknown_engine_in_a_config_file_is_one_line_error_naming_the_key() {
    let (_dir, path) = config_file("engine = \"foo\"\n");
    rejects_by(
        bare_proxy(),
        &["-c", &path, "-l", "127.0.0.1", "-p", "0"],
        &[&path, "line 1", "key engine", "foo", "epoll", "uring"],
    );
    // Given with a flag as well, the file is still checked.
    rejects(&["-c", &path], &["key engine", "foo"]);
}

/// The other engine's counters are in the stats line and stay at zero:
/// under epoll no io_uring call is made, under uring no read(2) carries
/// the data.
#[test]
fn the_counters_of_the_engine_not_running_stay_at_zero() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut c = connect(proxy.addr);
    for i in 0..20u8 {
        echo_byte(&mut c, i);
    }
    drop(c);
    let s = proxy.wait_idle();
    if ENGINE == "uring" {
        assert!(s.get("uring_submissions") > 0, "{s:?}");
        assert!(s.get("uring_completions") > 0, "{s:?}");
        assert!(s.get("sys_uring_enter") > 0, "{s:?}");
        // uring: the lead confirms that no epoll_ctl is made for a
        // connection socket (the side epoll registers only its own).
        assert_eq!(s.get("sys_epoll_ctl"), 0, "{s:?}");
        // uring: with 20 one-byte messages, "~0" read(2)/write(2) calls on
        // the data path is taken as fewer than one a message; the lead
        // tightens it to the engine's exact count.
        assert!(s.get("sys_read") < 20, "{s:?}");
        assert!(s.get("sys_write") < 20, "{s:?}");
    } else {
        assert_eq!(s.get("uring_submissions"), 0, "{s:?}");
        assert_eq!(s.get("uring_completions"), 0, "{s:?}");
        assert_eq!(s.get("sys_uring_enter"), 0, "{s:?}");
        assert!(s.get("sys_read") >= 20, "{s:?}");
        assert!(s.get("sys_epoll_ctl") > 0, "{s:?}");
    }
}
