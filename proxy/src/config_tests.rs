//! Unit tests of [`super`].

use super::*;
use clap::Parser;

/// `text` in a config file in a fresh directory, and the file's path.
fn file(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("utf8").to_string();
    (dir, path)
}

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("proxy").chain(args.iter().copied())).expect("parse")
}

#[test]
fn defaults_match_the_original_design() {
    let c = resolve(cli(&[]), 20_000).expect("resolve");
    assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
    let local = crate::backends::BackendSpec::plain("127.0.0.1:8081".parse().expect("addr"));
    assert_eq!(c.backends, vec![local]);
    assert_eq!(c.buffer_size, 8192);
    assert_eq!(c.max_connections, (20_000 - 32 - 8 - 2 * 16) / 2);
    assert_eq!(
        c.max_connections,
        netio::budget::connections(20_000, 1, 16) as usize
    );
    let four = resolve(cli(&["--workers", "4"]), 20_000).expect("resolve");
    assert_eq!(four.max_connections, (20_000 - 32 - 4 * (8 + 2 * 16)) / 2);
    assert_eq!(c.pipes, 16);
}

#[test]
fn every_worker_gets_at_least_one_connection() {
    let e = resolve(cli(&["--workers", "3", "--max-connections", "2"]), 1024)
        .expect_err("fewer connections than workers");
    assert_eq!(
        e,
        "invalid --max-connections \"2\": must be at least --workers (3)"
    );
    assert!(resolve(cli(&["--workers", "3", "--max-connections", "3"]), 1024).is_ok());
}

#[test]
fn backends_accept_every_form() {
    let p = |s| parse_backend(s, 81).expect(s);
    assert_eq!(p("10.0.0.5"), "10.0.0.5:81".parse().expect("a"));
    assert_eq!(p("10.0.0.5:9"), "10.0.0.5:9".parse().expect("a"));
    assert_eq!(p("::1"), "[::1]:81".parse().expect("a"));
    assert_eq!(p("[::1]"), "[::1]:81".parse().expect("a"));
    assert_eq!(p("[::1]:9"), "[::1]:9".parse().expect("a"));
    assert_eq!(p("localhost:9").port(), 9);
    assert!(parse_backend("10.0.0.5:99999", 81).is_err());
}

#[test]
fn bad_values_name_the_option() {
    let e = resolve(cli(&["-p", "70000"]), 1024).expect_err("port");
    assert_eq!(e, "invalid --port \"70000\": must be 0..=65535");
    let e = resolve(cli(&["-l", "1.2.3"]), 1024).expect_err("listen");
    assert!(e.starts_with("invalid --listen \"1.2.3\""), "{e}");
    let e = resolve(cli(&["--drain-timeout", "5x"]), 1024).expect_err("dur");
    assert!(e.contains("unknown unit"), "{e}");
}

#[test]
fn timeouts_default_to_a_5s_connect_and_no_idle_limit() {
    let c = resolve(cli(&[]), 1024).expect("defaults");
    assert_eq!(
        (c.connect_timeout, c.idle_timeout),
        (Some(Duration::from_secs(5)), None)
    );
    let c = resolve(
        cli(&["--connect-timeout", "0", "--idle-timeout", "2m"]),
        1024,
    )
    .expect("set");
    assert_eq!(
        (c.connect_timeout, c.idle_timeout),
        (None, Some(Duration::from_secs(120)))
    );
    let e = resolve(cli(&["--idle-timeout", "5ms"]), 1024).expect_err("too short");
    assert!(e.starts_with("invalid --idle-timeout \"5ms\""), "{e}");
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
    assert!(parse_duration("ms").is_err());
}

#[test]
fn config_file_is_overridden_by_flags_and_rejects_unknown_keys() {
    let (_dir, path) =
        file("port = 9000\nbackend = [\"127.0.0.1:1\", \"[::1]:2\"]\nbuffer-size = 4096\n");
    let c = resolve(cli(&["-c", &path, "-p", "9001"]), 1024).expect("ok");
    assert_eq!(c.listen.port(), 9001);
    assert_eq!(c.backends.len(), 2);
    assert_eq!(c.buffer_size, 4096);
    let (_dir, path) = file("port = 9000\nbogus = 1\n");
    let e = resolve(cli(&["-c", &path]), 1024).expect_err("unknown");
    assert!(
        e.contains("unknown field `bogus`") && e.contains("line 2"),
        "{e}"
    );
}

#[test]
fn backend_tables_give_weights_and_backups_and_minus_b_replaces_them() {
    let (_dir, path) = file(
        "backend-port = 7\n\
         [[backend]]\naddress = \"127.0.0.1:1\"\nweight = 3\n\n\
         [[backend]]\naddress = \"[::1]\"\nbackup = true\n",
    );
    let c = resolve(cli(&["-c", &path]), 1024).expect("ok");
    let spec = |a: &str, weight, backup| crate::backends::BackendSpec {
        weight,
        backup,
        ..crate::backends::BackendSpec::plain(a.parse().expect("addr"))
    };
    assert_eq!(
        c.backends,
        vec![spec("127.0.0.1:1", 3, false), spec("[::1]:7", 1, true)]
    );
    let c = resolve(cli(&["-c", &path, "-b", "127.0.0.1:2"]), 1024).expect("ok");
    assert_eq!(c.backends, vec![spec("127.0.0.1:2", 1, false)]);
}

#[test]
fn backends_are_named_and_two_of_one_name_are_refused() {
    let (_dir, path) = file(
        "[[backend]]\naddress = \"127.0.0.1:1\"\nname = \"db-a\"\n\n\
         [[backend]]\naddress = \"127.0.0.1:2\"\n",
    );
    let c = resolve(cli(&["-c", &path]), 1024).expect("ok");
    let names: Vec<&str> = c.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["db-a", "127.0.0.1:2"]);
    let (_dir, path) = file(
        "[[backend]]\naddress = \"127.0.0.1:1\"\nname = \"a\"\n\n\
         [[backend]]\naddress = \"127.0.0.1:2\"\nname = \"a\"\n",
    );
    let e = resolve(cli(&["-c", &path]), 1024).expect_err("same name");
    assert!(
        e.contains("backend[2].name") && e.contains("given twice"),
        "{e}"
    );
    let (_dir, path) = file("[[backend]]\naddress = \"127.0.0.1:1\"\nname = \"a b\"\n");
    let e = resolve(cli(&["-c", &path]), 1024).expect_err("bad name");
    assert!(e.contains("backend[1].name") && e.contains("a b"), "{e}");
    let e = resolve(cli(&["-b", "127.0.0.1:1", "-b", "127.0.0.1:1"]), 1024).expect_err("twice");
    assert!(e.contains("--backend") && e.contains("given twice"), "{e}");
}

/// The repository's annotated example config.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/example.toml");

/// Whether `line` reads `key = value`, the key in lower case.
fn sets_a_key(line: &str) -> bool {
    line.split_once(" = ").is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
    })
}

/// The example with its commented-out settings (`# key = value`) on.
fn example_with_everything_on() -> String {
    let text = std::fs::read_to_string(EXAMPLE).expect("example.toml");
    let on = |l: &str| match l.strip_prefix("# ") {
        Some(rest) if sets_a_key(rest) => rest.to_string(),
        _ => l.to_string(),
    };
    text.lines().map(on).collect::<Vec<_>>().join("\n")
}

#[test]
fn the_example_config_resolves_as_written_and_with_every_setting_on() {
    let c = resolve(cli(&["-c", EXAMPLE]), 65_536).expect("example.toml resolves");
    let weights: Vec<(u32, bool)> = c.backends.iter().map(|b| (b.weight, b.backup)).collect();
    assert_eq!(weights, [(3, false), (1, false), (1, true)]);
    let checked: Vec<bool> = c.backends.iter().map(|b| b.check.is_some()).collect();
    assert_eq!(checked, [true, true, false]);
    let (_dir, path) = file(&example_with_everything_on());
    let c =
        resolve(cli(&["-c", &path]), 65_536).expect("example.toml with every setting on resolves");
    assert!(c.proxy_protocol.is_some() && c.metrics.is_some(), "{c:?}");
    let second = c.backends[1].check.clone().expect("checked");
    assert_eq!(second.send, b"HEAD / HTTP/1.0\r\n\r\n");
    assert_eq!(
        c.backends[0].check.clone().expect("checked").send,
        b"PING\r\n"
    );
}

#[test]
fn the_example_config_shows_every_long_option_and_backend_key() {
    use clap::CommandFactory;
    let text = example_with_everything_on();
    let table: toml::Table = text.parse().expect("toml");
    // The check options' file form is the [health-check] table.
    let not_in_a_file = [
        "config",
        "help",
        "version",
        "check-interval",
        "check-rise",
        "check-fall",
    ];
    for arg in Cli::command().get_arguments() {
        let Some(name) = arg.get_long() else { continue };
        if !not_in_a_file.contains(&name) {
            assert!(table.contains_key(name), "example.toml lacks {name}");
        }
    }
    let keys = ["address", "weight", "backup", "check", "check-interval"];
    let check_keys = ["check-send", "check-expect-regex"];
    let table_keys = ["interval", "timeout", "rise", "fall", "send", "expect"];
    let limit_keys = ["max-connections", "slow-start"];
    for key in keys
        .into_iter()
        .chain(check_keys)
        .chain(table_keys)
        .chain(limit_keys)
    {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "example.toml lacks a [[backend]] or [health-check] {key}"
        );
    }
}

#[test]
fn a_health_check_table_checks_every_backend_and_a_backend_may_override_it() {
    use crate::health::{CheckSpec, Expect};
    let (_dir, path) = file(
        "[health-check]\ninterval = \"1s\"\nrise = 4\nsend = \"PING\\\\r\\\\n\"\nexpect = \"+PONG\"\n\n\
         [[backend]]\naddress = \"127.0.0.1:1\"\n\n\
         [[backend]]\naddress = \"127.0.0.1:2\"\ncheck-fall = 1\ncheck-timeout = \"5s\"\n\
         check-expect-regex = \"^\\\\+OK\"\ncheck-expect = \"x\"\n",
    );
    let e = resolve(cli(&["-c", &path]), 1024).expect_err("both expects");
    assert!(
        e.ends_with("key backend[2].check-expect-regex \"^\\+OK\": give expect (a prefix) or expect-regex, not both"),
        "{e}"
    );
    let text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("check-expect = \"x\"\n", "");
    std::fs::write(&path, text).expect("write");
    let c = resolve(cli(&["-c", &path]), 1024).expect("ok");
    let first = CheckSpec {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        rise: 4,
        fall: 3,
        send: b"PING\r\n".to_vec(),
        expect: Some(Expect::Prefix(b"+PONG".to_vec())),
    };
    assert_eq!(c.backends[0].check, Some(first.clone()));
    let second = c.backends[1].check.clone().expect("checked");
    assert_eq!((second.fall, second.rise), (1, 4));
    assert_eq!(
        second.timeout,
        Duration::from_secs(1),
        "at most the interval"
    );
    assert!(matches!(second.expect, Some(Expect::Pattern(_))));
    // Backends from -b get the table's check too.
    let c = resolve(cli(&["-c", &path, "-b", "127.0.0.1:3"]), 1024).expect("ok");
    assert_eq!(c.backends[0].check, Some(first));
}

#[test]
fn checks_are_off_unless_asked_for_and_check_false_turns_one_off() {
    let c = resolve(cli(&[]), 1024).expect("defaults");
    assert_eq!(c.backends[0].check, None);
    let (_dir, path) = file(
        "[[backend]]\naddress = \"127.0.0.1:1\"\ncheck = true\n\n\
         [[backend]]\naddress = \"127.0.0.1:2\"\n\n\
         [[backend]]\naddress = \"127.0.0.1:3\"\ncheck-rise = 1\n",
    );
    let c = resolve(cli(&["-c", &path]), 1024).expect("ok");
    let on: Vec<bool> = c.backends.iter().map(|b| b.check.is_some()).collect();
    assert_eq!(on, [true, false, true]);
    assert_eq!(
        c.backends[0].check,
        Some(crate::health::CheckSpec::default())
    );
    let (_dir, path) = file(
        "[health-check]\n[[backend]]\naddress = \"127.0.0.1:1\"\ncheck = false\n\n\
         [[backend]]\naddress = \"127.0.0.1:2\"\n",
    );
    let c = resolve(cli(&["-c", &path]), 1024).expect("ok");
    let on: Vec<bool> = c.backends.iter().map(|b| b.check.is_some()).collect();
    assert_eq!(on, [false, true]);
}

#[test]
fn a_bad_check_setting_names_its_key_and_value() {
    let bad = |text: &str| {
        let (_dir, path) = file(text);
        let e = resolve(cli(&["-c", &path]), 1024).expect_err(text);
        e.split_once(": ")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or(e)
    };
    let b = "[[backend]]\naddress = \"127.0.0.1:1\"\n";
    assert_eq!(
        bad("[health-check]\nrise = 0\n"),
        "key health-check.rise \"0\": must be 1..=1000"
    );
    assert_eq!(
        bad("[health-check]\ninterval = \"1ms\"\n"),
        "key health-check.interval \"1ms\": must be 10ms..=24h"
    );
    assert!(bad("[health-check]\ntimeout = \"soon\"\n")
        .starts_with("key health-check.timeout \"soon\": "));
    assert_eq!(
        bad(&format!("{b}check-send = \"\\\\q\"\n")),
        "key backend[1].check-send \"\\q\": unknown escape '\\q' at offset 0 (use \\r \\n \\t \\\\ \\xHH)"
    );
    assert!(bad(&format!("{b}check-expect-regex = \"[a-\"\n"))
        .starts_with("key backend[1].check-expect-regex \"[a-\": '[' at offset 0 is never closed"));
    assert_eq!(
        bad("[health-check]\nexpect-regex = \"\"\n"),
        "key health-check.expect-regex \"\": an empty pattern matches anything: \
         leave it out for a connect check"
    );
    assert!(bad(&format!("{b}check = false\ncheck-fall = 2\n"))
        .starts_with("key backend[1].check \"false\": the table also sets check-fall"));
    assert!(
        bad(&format!("[health-check]\nfall = 2\n{b}check-fall = 0\n"))
            .starts_with("key backend[1].check-fall \"0\"")
    );
    // TOML's own errors name the key in its table too.
    let e = bad("[health-check]\nrise = \"two\"\n");
    assert!(e.contains("health-check.rise"), "{e}");
    let e = bad("[health-check]\nintervall = \"1s\"\n");
    assert!(e.contains("unknown field `intervall`"), "{e}");
}

#[test]
fn a_backend_given_by_name_is_named_host_port_as_written() {
    // (`localhost` alone is taken as 127.0.0.1, like --listen's.)
    let c = resolve(cli(&["-b", "localhost:9"]), 1024).expect("ok");
    let b = &c.backends[0];
    assert_eq!(
        (b.name.as_str(), b.host.as_deref()),
        ("localhost:9", Some("localhost:9"))
    );
    assert_eq!(b.addr.port(), 9);
    let c = resolve(cli(&["-b", "127.0.0.1:9"]), 1024).expect("ok");
    assert_eq!(
        (c.backends[0].name.as_str(), c.backends[0].host.as_deref()),
        ("127.0.0.1:9", None)
    );
}

#[test]
fn a_resolve_interval_under_10ms_is_refused_and_0_means_never() {
    let e = resolve(cli(&["--resolve-interval", "1ms"]), 1024).expect_err("1ms");
    assert_eq!(
        e,
        "invalid --resolve-interval \"1ms\": must be at least 10ms (or 0 for never)"
    );
    let c = resolve(cli(&["--resolve-interval", "0"]), 1024).expect("0");
    assert!(c.resolve_interval.is_zero());
    let c = resolve(cli(&[]), 1024).expect("default");
    assert_eq!(c.resolve_interval, DEFAULT_RESOLVE_INTERVAL);
}

#[test]
fn check_options_on_the_command_line_check_every_backend_and_override_the_table() {
    let c = resolve(
        cli(&["--check-interval", "500ms", "--check-rise", "1"]),
        1024,
    )
    .expect("ok");
    let check = c.backends[0].check.clone().expect("checked");
    assert_eq!(check.interval, Duration::from_millis(500));
    assert_eq!((check.rise, check.fall), (1, 3));
    assert!(
        check.send.is_empty() && check.expect.is_none(),
        "a connect check"
    );
    let (_dir, path) = file("[health-check]\ninterval = \"5s\"\nfall = 5\nsend = \"PING\"\n");
    let c = resolve(cli(&["-c", &path, "--check-fall", "2"]), 1024).expect("ok");
    let check = c.backends[0].check.clone().expect("checked");
    assert_eq!((check.interval, check.fall), (Duration::from_secs(5), 2));
    assert_eq!(check.send, b"PING".to_vec(), "the table's send stays");
    let e = resolve(cli(&["--check-interval", "1ms"]), 1024).expect_err("too short");
    assert_eq!(e, "invalid --check-interval \"1ms\": must be 10ms..=24h");
    let e = resolve(cli(&["--check-rise", "0"]), 1024).expect_err("zero");
    assert!(e.starts_with("invalid --check-rise \"0\""), "{e}");
}
