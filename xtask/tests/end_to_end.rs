//! The workbench end to end: a short real scenario through the real
//! binaries (built in release by xtask itself), and a bad scenario file
//! rejected before anything starts.

use std::process::Command;

fn xtask(
    scenarios: &std::path::Path,
    out: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_SCENARIOS", scenarios)
        .env("XTASK_WORKBENCH", out)
        .output()
        .expect("run xtask")
}

#[test]
fn a_short_scenario_runs_end_to_end_and_writes_its_reports() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sc, out) = (dir.path().join("scenarios"), dir.path().join("out"));
    std::fs::create_dir_all(&sc).expect("mkdir");
    std::fs::write(
        sc.join("tiny.toml"),
        r#"description = "tiny echo run"
[load]
mode = "echo"
connections = 4
message_size = 32
duration = "600ms"
warmup = "200ms"
window = "300ms"
[targets]
errors = { max = 0 }
verify_failures = { max = 0 }
epoll_ctl_per_connection = { max = 2 }
"#,
    )
    .expect("write scenario");
    let o = xtask(&sc, &out, &["scenario", "tiny"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "xtask failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("tiny") && stdout.contains("verdict"),
        "{stdout}"
    );
    let latest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("latest.json")).expect("latest.json"),
    )
    .expect("json");
    let figures = latest["scenarios"][0]["figures"]
        .as_array()
        .expect("figures");
    let get = |name: &str, who: &str| {
        figures
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["values"][who].as_f64())
            .unwrap_or_else(|| panic!("no {name} for {who} in {figures:?}"))
    };
    assert!(get("rate", "self") > 0.0);
    assert!(get("rate", "direct") > 0.0);
    assert_eq!(get("errors", "self"), 0.0);
    let cpu = get("cpu_us_per_message", "self");
    assert!(cpu > 0.0 && cpu < 1e6, "CPU per message from /proc: {cpu}");
    assert_eq!(
        get("epoll_ctl_per_connection", "self"),
        2.0,
        "exact count from the proxy's own counters"
    );
    let run_dir = out.join(latest["id"].as_str().expect("id"));
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("tiny echo run"));
    assert!(run_dir.join("report.md").exists());
}

#[test]
fn a_bad_scenario_is_named_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let (sc, out) = (dir.path().join("scenarios"), dir.path().join("out"));
    std::fs::create_dir_all(&sc).expect("mkdir");
    std::fs::write(sc.join("bad.toml"), "description = \"x\"\n[load]\nmode = \"echo\"\nconnections = 1\nduration = \"1s\"\nspeed = 3\n")
        .expect("write");
    let o = xtask(&sc, &out, &["list"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml:6") && stderr.contains("unknown field `speed`"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing ran");
}
