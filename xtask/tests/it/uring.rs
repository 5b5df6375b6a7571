//! Ours on the io_uring engine as a subject of its own: `--compare
//! self-uring` runs it beside `self` in the same run, it gets every figure
//! `self` gets (its counters scraped the same way), a ratio target judges
//! it against `self` in one run, and the report shows issue 12's goals.

use crate::util::{value, Bench, TINY};

/// The figures both engines must have in an echo load.
const ECHO: &[&str] = &[
    "rate",
    "ratio_to_direct",
    "cpu_us_per_message",
    "total_cpu_us_per_message",
    "read_write_per_message",
    "syscalls_per_message",
    "uring_enter_per_message",
    "submissions_per_message",
    "completions_per_message",
    "epoll_ctl_per_connection",
    "errors",
];

#[test]
fn self_uring_is_measured_beside_self_with_every_figure_and_judged_against_it() {
    let b = Bench::new();
    b.scenario(
        "tiny",
        &format!(
            "{TINY}[ratio_targets]\nrate = {{ of = \"self-uring\", vs = \"self\", min = 0.01 }}\n"
        ),
    );
    // The ratio target alone brings self-uring in: no --compare.
    let r = b.xtask(&["scenario", "tiny"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    for who in ["self", "self-uring"] {
        for name in ECHO {
            assert!(
                value(&latest, 0, name, who).is_some(),
                "no {name} for {who} in {latest}"
            );
        }
    }
    assert_eq!(value(&latest, 0, "errors", "self-uring"), Some(0.0));
    // Under uring the relay's reads and writes are submissions.
    assert!(value(&latest, 0, "submissions_per_message", "self-uring") > Some(0.0));
    assert_eq!(
        value(&latest, 0, "submissions_per_message", "self"),
        Some(0.0)
    );
    let ratio = value(&latest, 0, "rate_vs_self", "self-uring").expect("the ratio");
    assert!(ratio > 0.0, "{latest}");
    assert!(
        r.stdout.contains("URING ENGINE GOALS") && r.stdout.contains("not measured in this run"),
        "{r}"
    );
}

#[test]
fn connection_churn_through_both_engines_counts_time_wait_per_side() {
    let b = Bench::new();
    b.scenario(
        "churn",
        &TINY.replace("mode = \"echo\"", "mode = \"connect\""),
    );
    let r = b.xtask(&["scenario", "churn", "--compare", "self-uring"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    for who in ["self", "self-uring"] {
        for name in [
            "connect_rate",
            "syscalls_per_connection",
            "submissions_per_connection",
            "time_wait_client_side",
            "time_wait_backend_side",
        ] {
            assert!(
                value(&latest, 0, name, who).is_some(),
                "no {name} for {who} in {latest}"
            );
        }
    }
    // Direct has a client side only: its backend is the listener.
    assert!(value(&latest, 0, "time_wait_client_side", "direct").is_some());
    assert!(value(&latest, 0, "time_wait_backend_side", "direct").is_none());
}
