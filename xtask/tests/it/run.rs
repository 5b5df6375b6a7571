//! A short real scenario through the real binaries, and its reports.

use crate::util::{assert_echo_figures, value, Bench, TINY};

#[test]
fn a_short_scenario_runs_end_to_end_and_writes_its_reports() {
    let b = Bench::new();
    b.scenario("tiny", TINY);
    let r = b.xtask(&["scenario", "tiny"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout.contains("tiny") && r.stdout.contains("verdict"),
        "{r}"
    );
    let latest = b.latest();
    assert_echo_figures(&latest);
    let run_dir = b.out.join(latest["id"].as_str().expect("id"));
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("tiny echo run"));
    assert!(run_dir.join("report.md").exists());
}

#[test]
fn a_hold_scenario_measures_memory_wakeups_and_descriptors() {
    let b = Bench::new();
    b.scenario(
        "held",
        "description = \"held\"\n[hold]\nconnections = [20]\nquiet = \"300ms\"\n[targets]\nfd_leak = { max = 0 }\n",
    );
    let r = b.xtask(&["scenario", "held"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    assert_eq!(
        value(&latest, 0, "connections_held", "self"),
        Some(20.0),
        "{latest}"
    );
    assert_eq!(value(&latest, 0, "fd_leak", "self"), Some(0.0));
    assert!(value(&latest, 0, "idle_wakeups", "self").is_some());
    assert!(value(&latest, 0, "rss_per_conn_bytes", "self").is_some());
}

/// A short soak: the figures at rest before and after are read and
/// gated, and `--duration` sets how long the soak ran.
#[test]
fn a_soak_reads_the_proxy_at_rest_before_and_after_and_gates_on_it() {
    let b = Bench::new();
    b.scenario(
        "soaked",
        r#"description = "soaked"
[soak]
duration = "5s"
warmup = "500ms"
settle = "5s"
churn_connections = 2
churn_rate = 50
reset_ratio = 0.5
echo_connections = 2
echo_rate = 20
stream_connections = 1
stream_message_size = 262144
stream_rate = 2
[targets]
rss_growth_kib = { max = 1024 }
fd_delta = { min = 0, max = 0 }
close_wait_delta = { min = 0, max = 0 }
fin_wait2_delta = { min = 0, max = 0 }
errors = { max = 0 }
verify_failures = { max = 0 }
"#,
    );
    let r = b.xtask(&["scenario", "soaked", "--duration", "1500ms"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    let get = |name: &str| {
        value(&latest, 0, name, "self").unwrap_or_else(|| panic!("no {name} in {latest}"))
    };
    assert_eq!(get("soak_seconds"), 1.5, "--duration wins");
    for exact in ["fd_delta", "close_wait_delta", "fin_wait2_delta", "errors"] {
        assert_eq!(get(exact), 0.0, "{exact}: {latest}");
    }
    assert_eq!(get("fds_start"), get("fds_end"));
    assert!(get("resets_sent") > 0.0 && get("connections_churned") > get("resets_sent"));
    assert!(get("streamed_bytes") > 0.0 && get("peak_connections") >= 4.0);
}

/// A short failover through our proxy: the second backend is killed and
/// restarted while connect-mode load runs, no client sees an error, and
/// the restarted backend takes traffic again.
#[test]
fn a_failover_kills_and_restarts_a_backend_with_no_client_error() {
    let b = Bench::new();
    b.scenario(
        "failover",
        r#"description = "failover"
[proxy]
args = ["--fail-timeout", "200ms"]
[failover]
duration = "3s"
warmup = "300ms"
connections = 4
rate = 200
[targets]
client_errors = { max = 0 }
"#,
    );
    let r = b.xtask(&["scenario", "failover", "--compare", "direct"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    let get = |name: &str| {
        value(&latest, 0, name, "self").unwrap_or_else(|| panic!("no {name} in {latest}"))
    };
    assert_eq!(get("client_errors"), 0.0, "{latest}");
    assert!(get("cut_by_kill") >= 0.0 && get("exchange_rate") > 0.0);
    assert!(
        get("recovery_ms") >= 0.0,
        "the restarted backend took traffic"
    );
    let skipped = latest["scenarios"][0]["skipped"].to_string();
    assert!(skipped.contains("direct"), "{skipped}");
}

/// The same failover through a proxy told not to fail over: the
/// connections sent to the dead backend are client errors, and the gate
/// fails.
#[test]
fn a_proxy_that_does_not_fail_over_misses_the_client_errors_target() {
    let b = Bench::new();
    b.scenario(
        "failover",
        r#"description = "no failover"
[proxy]
args = ["--connect-retries", "1", "--fall", "0"]
[failover]
duration = "1500ms"
warmup = "200ms"
connections = 4
rate = 200
[targets]
client_errors = { max = 0 }
"#,
    );
    let r = b.xtask(&["scenario", "failover"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stdout.contains("GATE: failover.client_errors = "), "{r}");
    let errors = value(&b.latest(), 0, "client_errors", "self").expect("client_errors");
    assert!(errors > 0.0, "{r}");
}
