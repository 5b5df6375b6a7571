//! The gate end to end: goals never fail, gated targets do, and `ci`
//! writes a baseline and then holds a run to it, peer ratios included.

use crate::util::{value, Bench, TINY};

#[test]
fn a_goal_is_reported_and_a_gated_target_fails_the_run() {
    let b = Bench::new();
    b.scenario(
        "goal",
        &TINY.replace(
            "[targets]\n",
            "[targets]\nrate = { min = 1e12 }\nratio_to_direct = { min = 100 }\n",
        ),
    );
    let r = b.xtask(&["scenario", "goal"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("rate ") && l.contains("miss (goal)")),
        "{r}"
    );
    assert!(r.stdout.contains("all gated figures within target"), "{r}");
    b.scenario(
        "goal",
        &TINY.replace(
            "epoll_ctl_per_connection = { max = 2 }",
            "epoll_ctl_per_connection = { max = 1 }",
        ),
    );
    let r = b.xtask(&["scenario", "goal"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stdout
            .contains("GATE: goal.epoll_ctl_per_connection = 2 (target <= 1)"),
        "{r}"
    );
}

#[test]
fn ci_writes_a_baseline_and_holds_the_next_run_to_it() {
    let b = Bench::new();
    b.scenario(
        "tiny",
        &TINY.replace(
            "[targets]\n",
            "[targets]\nrate_vs_haproxy = { min = 1.1, gate = false }\n",
        ),
    );
    let w = b.xtask(&["ci", "--write-baseline"]);
    assert_eq!(w.code, Some(0), "{w}");
    let path = b.scenarios.join("baseline.json");
    let mut base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("baseline written"))
            .expect("json");
    let figures = base["figures"].as_object_mut().expect("figures");
    for key in [
        "tiny.errors",
        "tiny.verify_failures",
        "tiny.epoll_ctl_per_connection",
    ] {
        assert!(figures.contains_key(key), "{key} not in {figures:?}");
    }
    for key in [
        "tiny.rate",
        "tiny.ratio_to_direct",
        "tiny.p50_us",
        "tiny.cpu_us_per_message",
    ] {
        assert!(
            !figures.contains_key(key),
            "wall-clock {key} in the baseline"
        );
    }
    let haproxy = value(&b.latest(), 0, "rate", "haproxy").is_some();
    if haproxy {
        let e = &figures["tiny.rate_vs_haproxy"];
        assert_eq!(
            (e["tolerance"].as_f64(), e["higher_is_better"].as_bool()),
            (Some(0.25), Some(true))
        );
        // Two short runs differ by more than their noise allows a gate
        // to: what is tested here is the mechanism, not the machine.
        figures["tiny.rate_vs_haproxy"]["tolerance"] = 0.99.into();
    } else {
        assert!(
            w.stdout
                .contains("skipped haproxy: haproxy is not installed"),
            "{w}"
        );
    }
    std::fs::write(&path, base.to_string()).expect("write");
    let r = b.xtask(&["ci"]);
    assert_eq!(r.code, Some(0), "{r}");

    // A baseline the run cannot meet: an exact count, and a peer ratio.
    let figures = base["figures"].as_object_mut().expect("figures");
    figures["tiny.epoll_ctl_per_connection"]["value"] = 1.0.into();
    figures["tiny.epoll_ctl_per_connection"]["slack"] = 0.0.into();
    if haproxy {
        figures["tiny.rate_vs_haproxy"]["value"] = 1000.0.into();
    }
    std::fs::write(&path, base.to_string()).expect("write");
    let r = b.xtask(&["ci"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stdout
            .contains("GATE: tiny.epoll_ctl_per_connection = 2 regressed past baseline 1 "),
        "{r}"
    );
    if haproxy {
        assert!(r.stdout.contains("GATE: tiny.rate_vs_haproxy = "), "{r}");
    }
}
