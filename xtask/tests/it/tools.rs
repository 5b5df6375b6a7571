//! A real client's scenario through the real binaries: redis-benchmark
//! against redis-server, directly and through our proxy, one short round.

use crate::util::{value, Bench};
use std::path::Path;

/// Whether `prog` is on PATH, for a test that needs it.
fn installed(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(prog).exists()))
}

#[test]
fn a_redis_benchmark_scenario_reports_its_rounds_and_ratio_to_direct() {
    if let Some(missing) = ["redis-benchmark", "redis-server"]
        .into_iter()
        .find(|p| !installed(p))
    {
        eprintln!("skipping the redis-benchmark scenario: {missing} is not installed (apt-get install redis-server redis-tools)");
        return;
    }
    let b = Bench::new();
    b.scenario(
        "redis",
        r#"description = "tiny redis run"
bench_only = true
[load]
tool = "redis-benchmark"
connections = 4
requests = 2000
pipeline = 4
rounds = 2
"#,
    );
    let r = b.xtask(&["scenario", "redis"]);
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    let get = |name: &str, who: &str| {
        value(&latest, 0, name, who).unwrap_or_else(|| panic!("no {name} for {who} in {latest}"))
    };
    for who in ["self", "direct"] {
        assert!(get("rate", who) > 0.0 && get("rate_pipelined", who) > 0.0);
        assert!(get("p99_us", who) >= get("p50_us", who));
    }
    assert!(get("ratio_to_direct", "self") > 0.0);
    assert!(get("cpu_us_per_message", "self") >= 0.0, "CPU from /proc");
    let rounds = &latest["scenarios"][0]["figures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "rate"))
        .expect("rate")["rounds"]["self"];
    assert_eq!(rounds.as_array().map(Vec::len), Some(2), "{latest}");
    let commands = latest["scenarios"][0]["commands"].to_string();
    assert!(
        commands.contains("redis-benchmark -h 127.0.0.1") && commands.contains("-P 4"),
        "{commands}"
    );
}
