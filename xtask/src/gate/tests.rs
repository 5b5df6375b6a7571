//! The gate: which misses fail a run and what a baseline holds.

use super::*;
use crate::figures::Class;
use crate::report::tests::{bound, figure, run_of};
use crate::spec::Bound;

#[test]
fn counts_are_exact_and_ratios_have_room() {
    let exact = Entry::new("errors", 0.0).expect("count");
    assert!(exact.holds(0.0) && !exact.holds(1.0));
    let ratio = Entry::new("ratio_to_direct", 0.6).expect("gated");
    assert!(ratio.holds(0.45) && !ratio.holds(0.4) && ratio.holds(0.9));
    let sys = Entry::new("syscalls_per_message", 4.0).expect("count");
    assert!(sys.holds(4.4) && !sys.holds(4.6));
}

#[test]
fn goals_are_neither_written_nor_checked() {
    let goal = Some(Bound {
        gate: Some(false),
        ..bound(Some(0.1), None)
    });
    let at = |v: f64| {
        run_of(
            vec![
                figure("ratio_to_direct", Class::Count, &[("self", v)], goal),
                figure("errors", Class::Count, &[("self", 0.0)], None),
            ],
            Vec::new(),
        )
    };
    let base = Baseline::from_run(&at(0.8));
    assert!(base.figures.contains_key("throughput.errors"));
    assert!(
        !base.figures.contains_key("throughput.ratio_to_direct"),
        "a goal was written"
    );
    let mut old = base.clone();
    old.figures.insert(
        "throughput.ratio_to_direct".into(),
        Entry::new("ratio_to_direct", 0.8).expect("gated"),
    );
    assert!(old.regressions(&at(0.01)).is_empty(), "a goal was gated");
    assert!(misses(&at(0.01)).is_empty());
}

#[test]
fn a_missed_gated_target_fails() {
    let run = run_of(
        vec![figure(
            "errors",
            Class::Count,
            &[("self", 3.0)],
            Some(bound(None, Some(0.0))),
        )],
        Vec::new(),
    );
    assert_eq!(misses(&run), ["throughput.errors = 3 (target <= 0)"]);
}
