//! The summary's rows: the ratio to the best peer, the best peer by the
//! figure's direction, the verdict, and the rows without values.

use super::*;
use crate::figures::Class;
use crate::report::tests::{bound, figure};
use crate::report::ScenarioReport;

/// A scenario's report of `figures`, without errors or skips.
pub(crate) fn scenario(name: &str, figures: Vec<crate::report::Figure>) -> ScenarioReport {
    ScenarioReport {
        name: name.into(),
        description: String::new(),
        figures,
        curves: Vec::new(),
        skipped: Vec::new(),
        error: None,
        commands: Vec::new(),
    }
}

fn run_with(scenarios: Vec<ScenarioReport>) -> Run {
    let mut run = crate::report::tests::sample();
    run.subjects = ["self", "haproxy", "nginx", "direct"]
        .map(String::from)
        .to_vec();
    run.scenarios = scenarios;
    run
}

fn measured(run: &Run, scenario: &str, figure: &str) -> Measured {
    let row = rows(run)
        .into_iter()
        .find(|r| r.head.scenario == scenario && r.head.figure == figure)
        .expect("a headline");
    match row.state {
        State::Measured(m) => m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_best_peer_of_a_rate_is_the_highest_and_the_ratio_is_ours_over_it() {
    let run = run_with(vec![scenario(
        "throughput",
        vec![figure(
            "rate",
            Class::Wall,
            &[
                ("self", 110.0),
                ("haproxy", 100.0),
                ("nginx", 80.0),
                ("direct", 200.0),
            ],
            None,
        )],
    )]);
    let m = measured(&run, "throughput", "rate");
    assert_eq!(m.best, Some(("haproxy".into(), 100.0)));
    assert!((m.ratio.expect("ratio") - 1.1).abs() < 1e-9);
    assert_eq!(m.standing, Some(Standing::Ahead));
    assert_eq!(m.direct, Some(200.0));
    assert_eq!(
        m.peers,
        vec![
            ("haproxy".into(), Some(100.0)),
            ("nginx".into(), Some(80.0))
        ]
    );
    assert_eq!(verdict_text(&m, str::to_uppercase), "ahead of haproxy");
}

#[test]
fn the_best_peer_of_a_latency_is_the_lowest() {
    let run = run_with(vec![scenario(
        "latency",
        vec![figure(
            "added_p50_us",
            Class::Wall,
            &[("self", 12.0), ("haproxy", 15.0), ("nginx", 11.0)],
            Some(bound(None, Some(10.0))),
        )],
    )]);
    let m = measured(&run, "latency", "added_p50_us");
    assert_eq!(m.best, Some(("nginx".into(), 11.0)));
    assert_eq!(m.standing, Some(Standing::Behind));
    assert!(m.missed(), "12 µs misses a 10 µs goal");
    assert_eq!(
        verdict_text(&m, |v| format!("**{v}**")),
        "behind nginx; target **miss (goal)**"
    );
}

#[test]
fn within_three_percent_is_level_either_way() {
    use Better::{Higher, Lower};
    assert_eq!(Standing::of(102.9, 100.0, Higher), Standing::Level);
    assert_eq!(Standing::of(97.1, 100.0, Lower), Standing::Level);
    assert_eq!(Standing::of(103.5, 100.0, Higher), Standing::Ahead);
    assert_eq!(Standing::of(103.5, 100.0, Lower), Standing::Behind);
    assert_eq!(Standing::of(96.0, 100.0, Lower), Standing::Ahead);
    assert_eq!(
        Standing::of(0.0, 0.0, Lower),
        Standing::Level,
        "no wake-ups either"
    );
    assert_eq!(Standing::of(0.0, 3.0, Lower), Standing::Ahead);
    assert_eq!(
        Standing::of(-1.0, 2.0, Lower),
        Standing::Ahead,
        "a negative added latency"
    );
}

#[test]
fn a_zero_best_peer_has_no_ratio_but_a_standing() {
    let run = run_with(vec![scenario(
        "idle-cpu",
        vec![figure(
            "idle_wakeups",
            Class::Count,
            &[("self", 2.0), ("haproxy", 0.0)],
            Some(bound(None, Some(0.0))),
        )],
    )]);
    let m = measured(&run, "idle-cpu", "idle_wakeups");
    assert_eq!((m.ratio, m.standing), (None, Some(Standing::Behind)));
    assert_eq!(m.verdict, "MISS");
    assert_eq!(m.peers[1], ("nginx".into(), None), "nginx did not run");
}

#[test]
fn rows_say_when_their_scenario_did_not_run_or_failed() {
    let mut failed = scenario("bulk", Vec::new());
    failed.error = Some("backend died".into());
    let run = run_with(vec![failed, scenario("throughput", Vec::new())]);
    let all = rows(&run);
    assert_eq!(all.len(), HEADLINES.len());
    let state = |s: &str, f: &str| {
        all.iter()
            .find(|r| r.head.scenario == s && r.head.figure == f)
            .map(|r| r.state.clone())
            .expect("row")
    };
    assert_eq!(state("latency", "rate"), State::NotRun);
    assert_eq!(
        state("bulk", "throughput_bps"),
        State::Failed("backend died".into())
    );
    assert_eq!(state("throughput", "rate"), State::NoFigure);
    let row = all
        .iter()
        .find(|r| r.head.scenario == "bulk")
        .expect("bulk");
    let cells = cells(&run, row, str::to_uppercase);
    assert_eq!(cells.len(), header(&run).len());
    assert!(
        cells.contains(&"bulk failed: backend died".to_string()),
        "{cells:?}"
    );
    let latency = cells_of(&run, &all[0]);
    assert!(
        latency.contains(&"latency did not run".to_string()),
        "{latency:?}"
    );
}

fn cells_of(run: &Run, row: &Row) -> Vec<String> {
    cells(run, row, str::to_uppercase)
}

#[test]
fn without_peers_a_row_says_so() {
    let mut run = run_with(vec![scenario(
        "throughput",
        vec![figure("rate", Class::Wall, &[("self", 5.0)], None)],
    )]);
    run.subjects = vec!["self".into()];
    let m = measured(&run, "throughput", "rate");
    assert_eq!((&m.best, m.ratio, m.standing), (&None, None, None));
    assert_eq!(verdict_text(&m, str::to_uppercase), "no peer");
}

#[test]
fn scenarios_follow_the_story_then_the_rest_alphabetically() {
    let names = [
        "zeta",
        "bulk-many",
        "idle-cpu",
        "alpha",
        "netns-bulk",
        "redis",
        "bulk",
        "throughput-workers2",
        "latency",
        "throughput",
        "max-concurrency",
    ];
    let run = run_with(names.iter().map(|n| scenario(n, Vec::new())).collect());
    let order: Vec<&str> = in_story_order(&run)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        order,
        [
            "latency",
            "throughput",
            "throughput-workers2",
            "max-concurrency",
            "bulk",
            "bulk-many",
            "idle-cpu",
            "redis",
            "netns-bulk",
            "alpha",
            "zeta"
        ]
    );
}

#[test]
fn every_headline_names_a_known_figure() {
    for h in HEADLINES.iter().chain(CLIENT_HEADLINES) {
        assert!(figures::spec(h.figure).is_some(), "{}", h.figure);
        assert!(STORY.contains(&h.scenario), "{}", h.scenario);
    }
}

#[test]
fn a_real_clients_rows_come_only_with_its_scenario() {
    let without = run_with(vec![scenario("throughput", Vec::new())]);
    assert_eq!(
        rows(&without).len(),
        HEADLINES.len(),
        "no client scenario ran"
    );
    let with = run_with(vec![scenario("redis", Vec::new())]);
    let all = rows(&with);
    let redis: Vec<&str> = all[HEADLINES.len()..]
        .iter()
        .map(|r| r.head.figure)
        .collect();
    assert_eq!(redis, ["rate", "rate_pipelined"]);
    assert!(all[HEADLINES.len()..]
        .iter()
        .all(|r| r.head.scenario == "redis" && r.state == State::NoFigure));
}

#[test]
fn a_row_of_a_skipped_scenario_says_why() {
    let mut skipped = scenario("redis", Vec::new());
    skipped.skipped.push(crate::report::Skipped {
        subject: "redis-benchmark".into(),
        why: "redis-benchmark is not installed (apt-get install redis-tools)".into(),
    });
    let run = run_with(vec![skipped]);
    let row = rows(&run)
        .into_iter()
        .find(|r| r.head.scenario == "redis")
        .expect("redis row");
    let State::Skipped(why) = &row.state else {
        panic!("{:?}", row.state)
    };
    assert_eq!(
        not_measured(&row.state, "redis"),
        format!("redis skipped: {why}")
    );
}

#[test]
fn ours_on_the_other_engine_is_a_column_and_never_the_best_peer() {
    let mut run = run_with(vec![scenario(
        "throughput",
        vec![figure(
            "rate",
            Class::Wall,
            &[("self", 110.0), ("self-uring", 130.0), ("haproxy", 100.0)],
            None,
        )],
    )]);
    run.subjects = ["self", "self-uring", "haproxy"].map(String::from).to_vec();
    let m = measured(&run, "throughput", "rate");
    assert_eq!(m.best, Some(("haproxy".into(), 100.0)));
    assert!(m.peers.contains(&("self-uring".into(), Some(130.0))));
    assert_eq!(header(&run)[2], "self-uring");
}
