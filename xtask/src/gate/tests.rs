//! The gate model: which misses fail a run, what a baseline holds, and
//! what a missing peer does.

use super::*;
use crate::figures::Class;
use crate::report::tests::{bound, figure, run_of};
use crate::report::Skipped;
use crate::spec::Bound;

fn goal(min: Option<f64>, max: Option<f64>) -> Option<Bound> {
    Some(Bound {
        gate: Some(false),
        ..bound(min, max)
    })
}

#[test]
fn a_goal_never_fails() {
    let run = run_of(
        vec![
            // A wall-clock target is always a goal.
            figure(
                "rate",
                Class::Wall,
                &[("self", 10.0)],
                Some(bound(Some(1e6), None)),
            ),
            figure(
                "ratio_to_direct",
                Class::Wall,
                &[("self", 0.1)],
                Some(bound(Some(0.9), None)),
            ),
            // `gate = false` makes any target a goal.
            figure(
                "errors",
                Class::Count,
                &[("self", 5.0)],
                goal(None, Some(0.0)),
            ),
            figure(
                "rate_vs_haproxy",
                Class::Peer,
                &[("self", 0.5)],
                goal(Some(1.1), None),
            ),
        ],
        Vec::new(),
    );
    assert_eq!(misses(&run), Vec::<String>::new());
    let base = Baseline::from_run(&run);
    assert!(!base.figures.contains_key("throughput.rate"));
    assert!(!base.figures.contains_key("throughput.ratio_to_direct"));
    assert!(base.regressions(&run).is_empty());
}

#[test]
fn a_gated_count_or_peer_ratio_that_misses_its_target_fails() {
    let run = run_of(
        vec![
            figure(
                "errors",
                Class::Count,
                &[("self", 3.0)],
                Some(bound(None, Some(0.0))),
            ),
            figure(
                "rss_per_conn_bytes_vs_haproxy",
                Class::Peer,
                &[("self", 0.4)],
                Some(bound(None, Some(0.25))),
            ),
        ],
        Vec::new(),
    );
    assert_eq!(
        misses(&run),
        [
            "throughput.errors = 3 (target <= 0)",
            "throughput.rss_per_conn_bytes_vs_haproxy = 0.400 (target <= 0.250)"
        ]
    );
}

#[test]
fn a_peer_ratio_below_its_baseline_bound_fails_even_with_a_goal() {
    let at = |v: f64| {
        run_of(
            vec![figure(
                "rate_vs_haproxy",
                Class::Peer,
                &[("self", v)],
                goal(Some(1.1), None),
            )],
            Vec::new(),
        )
    };
    let base = Baseline::from_run(&at(1.2));
    let e = base.figures["throughput.rate_vs_haproxy"];
    assert_eq!(
        (e.tolerance, e.slack, e.higher_is_better),
        (0.25, 0.0, true)
    );
    assert!((e.limit() - 0.9).abs() < 1e-9);
    assert!(base.regressions(&at(0.95)).is_empty(), "within 25 %");
    let r = base.regressions(&at(0.8));
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(
        r[0].starts_with("throughput.rate_vs_haproxy = 0.800 regressed past baseline 1.200"),
        "{r:?}"
    );
    assert!(misses(&at(0.8)).is_empty(), "the goal itself never fails");
}

#[test]
fn a_latency_ratio_may_not_grow_past_its_bound() {
    let at = |v: f64| {
        run_of(
            vec![figure(
                "p50_us_vs_haproxy",
                Class::Peer,
                &[("self", v)],
                None,
            )],
            Vec::new(),
        )
    };
    let base = Baseline::from_run(&at(1.0));
    assert!(
        base.regressions(&at(0.5)).is_empty(),
        "faster is never a regression"
    );
    assert!(base.regressions(&at(1.25)).is_empty());
    assert_eq!(
        base.regressions(&at(1.35)).len(),
        1,
        "30 % slower than it was"
    );
}

#[test]
fn memory_against_a_peer_is_a_bound_not_a_tolerance() {
    // Ours holds next to nothing per idle connection: a relative
    // tolerance on ~0 would fail on any byte, so the slack is the bound.
    let at = |v: f64| {
        run_of(
            vec![figure(
                "rss_per_conn_bytes_vs_haproxy",
                Class::Peer,
                &[("self", v)],
                None,
            )],
            Vec::new(),
        )
    };
    let base = Baseline::from_run(&at(0.0));
    assert!(base.regressions(&at(0.2)).is_empty());
    assert_eq!(base.regressions(&at(0.3)).len(), 1);
}

#[test]
fn counts_are_exact_and_syscalls_have_their_slack() {
    let exact = Entry::new("errors", 0.0).expect("count");
    assert!(exact.holds(0.0) && !exact.holds(1.0));
    let rw = Entry::new("read_write_per_message", 4.0).expect("count");
    assert!(
        rw.holds(4.4) && !rw.holds(5.0),
        "one more read or write a message fails"
    );
    // epoll_wait per message follows the machine's load: room for it.
    let sys = Entry::new("syscalls_per_message", 4.05).expect("count");
    assert!(sys.holds(4.8) && !sys.holds(5.1));
    let held = Entry::new("connections_held", 5000.0).expect("count");
    assert!(held.holds(5000.0) && !held.holds(4999.0));
    assert!(
        Entry::new("ratio_to_direct", 0.8).is_none(),
        "never baselined"
    );
    assert!(Entry::new("rate", 1e5).is_none() && Entry::new("rate_vs_best_peer", 1.2).is_none());
}

#[test]
fn a_ratio_to_direct_in_an_old_baseline_is_not_checked() {
    // The defect: `latency.ratio_to_direct = 0.462 regressed past
    // baseline 0.810` on another machine of the same kind.
    let run = run_of(
        vec![figure(
            "ratio_to_direct",
            Class::Wall,
            &[("self", 0.462)],
            None,
        )],
        Vec::new(),
    );
    let mut old = Baseline::default();
    old.figures.insert(
        "throughput.ratio_to_direct".into(),
        Entry {
            value: 0.81,
            tolerance: 0.3,
            slack: 0.0,
            higher_is_better: true,
        },
    );
    assert!(old.regressions(&run).is_empty());
}

#[test]
fn a_baselined_figure_not_measured_fails_unless_its_peer_was_skipped() {
    let measured = run_of(
        vec![
            figure("errors", Class::Count, &[("self", 0.0)], None),
            figure("rate_vs_haproxy", Class::Peer, &[("self", 1.2)], None),
        ],
        Vec::new(),
    );
    let base = Baseline::from_run(&measured);
    let none = run_of(Vec::new(), Vec::new());
    let r = base.regressions(&none);
    assert_eq!(
        r,
        [
            "throughput.errors: in the baseline but not measured",
            "throughput.rate_vs_haproxy: in the baseline but not measured"
        ]
    );
    let skipped = run_of(
        vec![figure("errors", Class::Count, &[("self", 0.0)], None)],
        vec![Skipped {
            subject: "haproxy".into(),
            why: "haproxy is not installed".into(),
        }],
    );
    assert!(base.regressions(&skipped).is_empty());
}

#[test]
fn a_missing_peer_fails_under_ci_and_is_skipped_otherwise() {
    let kinds = [Kind::SelfProxy, Kind::Haproxy, Kind::Nginx];
    let missing = |k: Kind| {
        (k == Kind::Haproxy)
            .then(|| "haproxy is not installed (apt-get install haproxy)".to_string())
    };
    let r = runnable(&kinds, false, missing).expect("outside CI");
    assert_eq!(r.run, [Kind::SelfProxy, Kind::Nginx]);
    assert_eq!(
        r.skipped,
        [(
            Kind::Haproxy,
            "haproxy is not installed (apt-get install haproxy)".to_string()
        )]
    );
    let e = runnable(&kinds, true, missing).expect_err("under CI");
    assert!(
        e.starts_with("haproxy is not installed (apt-get install haproxy); under CI=true")
            && !e.contains('\n'),
        "{e}"
    );
    assert!(runnable(&kinds, true, |_| None).is_ok());
}

#[test]
fn a_missed_ratio_target_names_the_subject_it_judges() {
    let mut f = figure("rate_vs_self", Class::Peer, &[("self-uring", 0.9)], None);
    f.target = Some(crate::report::tests::bound(Some(1.0), None));
    f.judged = Some("self-uring".into());
    f.pass = Some(false);
    let run = run_of(vec![f], Vec::new());
    assert_eq!(
        misses(&run),
        ["throughput.rate_vs_self of self-uring = 0.900 (target >= 1)"]
    );
    assert!(
        Baseline::from_run(&run).figures.is_empty(),
        "never baselined"
    );
}
