//! Bad command lines: one clear line on stderr, prefixed `loadgen:`,
//! exit status 2, and nothing started.

fn rejected(args: &[&str], expect: &str) {
    let run = crate::util::loadgen(args);
    assert_eq!(run.status, Some(2), "{args:?}: stderr {}", run.stderr);
    assert!(run.stdout.is_empty(), "{args:?}: stdout {}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: want one line, got {:?}", lines);
    assert!(lines[0].starts_with("loadgen: "), "{:?}", lines[0]);
    assert!(
        lines[0].contains(expect),
        "{args:?}: {:?} lacks {expect:?}",
        lines[0]
    );
}

#[test]
fn a_target_is_required() {
    rejected(&[], "--target");
}

#[test]
fn a_target_needs_a_port() {
    rejected(&["--target", "127.0.0.1"], "invalid --target \"127.0.0.1\"");
    rejected(&["--target", "127.0.0.1:0"], "port 0");
    rejected(&["--target", "127.0.0.1:99999"], "--target");
}

#[test]
fn durations_must_parse() {
    rejected(
        &["--target", "127.0.0.1:9", "--duration", "ten"],
        "invalid --duration \"ten\"",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--duration", "0s"],
        "--duration",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--warmup", "5x"],
        "invalid --warmup \"5x\"",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--timeout", "-1s"],
        "--timeout",
    );
}

#[test]
fn counts_must_be_in_range() {
    rejected(
        &["--target", "127.0.0.1:9", "--connections", "0"],
        "--connections \"0\"",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--rate", "fast"],
        "--rate \"fast\"",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--message-size", "0"],
        "--message-size",
    );
    rejected(
        &[
            "--target",
            "127.0.0.1:9",
            "--threads",
            "4",
            "--connections",
            "2",
        ],
        "--threads",
    );
}

#[test]
fn unknown_modes_and_options_are_refused() {
    rejected(&["--target", "127.0.0.1:9", "--mode", "ping"], "ping");
    rejected(&["--target", "127.0.0.1:9", "--frobnicate"], "--frobnicate");
}

#[test]
fn options_that_do_not_fit_the_mode_are_refused() {
    rejected(
        &["--target", "127.0.0.1:9", "--mode", "bulk", "--rate", "100"],
        "--rate",
    );
    rejected(
        &["--target", "127.0.0.1:9", "--http-path", "no-slash"],
        "--http-path",
    );
    rejected(&["--target", "[::1]:9", "--sources", "4"], "--sources");
}

#[test]
fn too_many_connections_for_the_descriptor_limit_is_refused() {
    rejected(
        &["--target", "127.0.0.1:9", "--connections", "1000000"],
        "descriptors",
    );
}
