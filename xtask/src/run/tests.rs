//! Tests of `run.rs`.

use super::*;

fn scenario(extra: &str) -> Scenario {
    scenario_of("echo", extra)
}

/// A one-second load scenario of `mode`, with `extra` after its
/// `[load]` table's keys.
pub(crate) fn scenario_of(mode: &str, extra: &str) -> Scenario {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("s.toml");
    let text = format!(
        "description = \"s\"\n[load]\nmode = \"{mode}\"\nconnections = 1\nduration = \"1s\"\n{extra}"
    );
    std::fs::write(&path, text).expect("write");
    Scenario::load(&path).expect("scenario")
}

fn values(rows: &[(&str, &[(&str, f64)])]) -> Values {
    let mut v = Values::default();
    for (figure, subjects) in rows {
        for (s, x) in *subjects {
            v.put(figure, s, *x);
        }
    }
    v
}

fn get<'a>(figs: &'a [Figure], name: &str) -> &'a Figure {
    figs.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {figs:?}"))
}

#[test]
fn peer_ratios_compare_with_the_best_peer_not_direct() {
    let sc = scenario(
        "[peer_targets]\nrate = { min = 1.1 }\np99_us = { max = 0.7 }\nerrors = { max = 1 }\n",
    );
    let v = values(&[
        (
            "rate",
            &[
                ("self", 110.0),
                ("haproxy", 100.0),
                ("nginx", 90.0),
                ("direct", 500.0),
                // Ours on the other engine: no peer, never the best.
                ("self-uring", 200.0),
            ],
        ),
        (
            "p99_us",
            &[
                ("self", 80.0),
                ("haproxy", 120.0),
                ("nginx", 100.0),
                ("direct", 10.0),
            ],
        ),
        ("errors", &[("self", 0.0)]),
    ]);
    let figs = figures_of(&sc, &v, "self");
    assert!(
        figs.iter().all(|f| f.name != "errors_vs_best_peer"),
        "no figure without peers"
    );
    let rate = get(&figs, "rate_vs_best_peer");
    assert!((rate.values["self"] - 1.1).abs() < 1e-9);
    assert_eq!(
        (rate.pass, rate.gates(), rate.baselined()),
        (Some(true), false, false)
    );
    let p99 = get(&figs, "p99_us_vs_best_peer");
    assert!(
        (p99.values["self"] - 0.8).abs() < 1e-9,
        "lowest peer p99 is the best"
    );
    assert_eq!(p99.pass, Some(false));
}

#[test]
fn a_named_peer_ratio_is_ours_over_that_peers_in_the_same_run() {
    let sc = scenario("[targets]\nrate_vs_haproxy = { min = 1.1, gate = false }\np50_us_vs_haproxy = { max = 1.5 }\n");
    let v = values(&[
        (
            "rate",
            &[("self", 120.0), ("haproxy", 100.0), ("direct", 500.0)],
        ),
        ("p50_us", &[("self", 60.0), ("haproxy", 50.0)]),
    ]);
    let figs = figures_of(&sc, &v, "self");
    let rate = get(&figs, "rate_vs_haproxy");
    assert!((rate.values["self"] - 1.2).abs() < 1e-9);
    assert_eq!(
        (rate.class, rate.gates(), rate.baselined()),
        (Class::Peer, false, true)
    );
    let p50 = get(&figs, "p50_us_vs_haproxy");
    assert!((p50.values["self"] - 1.2).abs() < 1e-9);
    assert!(p50.gates() && p50.pass == Some(true));
    assert_eq!(
        figs[0].name, "rate_vs_haproxy",
        "targets first, in the table's order"
    );
    // Without the peer in the run there is no ratio to judge.
    let alone = values(&[("rate", &[("self", 120.0)])]);
    assert!(figures_of(&sc, &alone, "self")
        .iter()
        .all(|f| f.name != "rate_vs_haproxy"));
}

#[test]
fn classes_and_units_come_from_the_table() {
    let sc = scenario("[targets]\nratio_to_direct = { min = 0.9 }\n");
    let v = values(&[
        ("ratio_to_direct", &[("self", 0.5)]),
        ("errors", &[("self", 0.0)]),
    ]);
    let figs = figures_of(&sc, &v, "self");
    let r = get(&figs, "ratio_to_direct");
    assert_eq!(
        (r.class, r.pass, r.gates()),
        (Class::Wall, Some(false), false)
    );
    let e = get(&figs, "errors");
    assert_eq!(
        (e.class, e.unit.as_str(), e.baselined()),
        (Class::Count, "count", true)
    );
}

#[test]
fn rounds_go_with_their_figure_and_leave_out_what_is_not_a_number() {
    let sc = scenario("");
    let mut v = values(&[("rate", &[("self", 2.0), ("direct", 3.0)])]);
    v.put_rounds("rate", "self", &[1.0, f64::NAN, 2.0, 3.0]);
    v.put_rounds("rate", "direct", &[f64::NAN]);
    assert_eq!(v.rounds("rate", "self"), [1.0, 2.0, 3.0]);
    let figs = figures_of(&sc, &v, "self");
    let rate = get(&figs, "rate");
    assert_eq!(
        rate.rounds.get("self").map(Vec::as_slice),
        Some(&[1.0, 2.0, 3.0][..])
    );
    assert!(
        !rate.rounds.contains_key("direct"),
        "no finite round, no rounds"
    );
}

#[test]
fn a_ratio_target_is_one_subjects_figure_over_anothers_judged_on_the_first() {
    let sc = scenario(
        "[ratio_targets]\nrate = { of = \"self-uring\", vs = \"self\", min = 1.0 }\n\
         total_cpu_us_per_message = { of = \"self-uring\", vs = \"self\", max = 1.0 }\n",
    );
    let mut v = values(&[
        (
            "rate",
            &[("self", 100.0), ("self-uring", 110.0), ("haproxy", 90.0)],
        ),
        (
            "total_cpu_us_per_message",
            &[("self", 30.0), ("self-uring", 33.0)],
        ),
    ]);
    v.put_rounds("rate", "self", &[100.0, 50.0]);
    v.put_rounds("rate", "self-uring", &[110.0, 60.0]);
    let figs = figures_of(&sc, &v, "self");
    let rate = get(&figs, "rate_vs_self");
    assert_eq!(rate.values.keys().collect::<Vec<_>>(), ["self-uring"]);
    assert!((rate.values["self-uring"] - 1.1).abs() < 1e-9);
    assert_eq!(rate.rounds["self-uring"], [1.1, 1.2]);
    assert_eq!(
        (rate.judged.as_deref(), rate.pass),
        (Some("self-uring"), Some(true))
    );
    assert!(rate.gates() && !rate.baselined(), "gates, never baselined");
    let cpu = get(&figs, "total_cpu_us_per_message_vs_self");
    assert_eq!(cpu.pass, Some(false), "1.1 over a max of 1.0");
    assert_eq!(cpu.unit, "x self");
    // Without self-uring measured, no ratio.
    let alone = values(&[("rate", &[("self", 100.0)])]);
    assert!(figures_of(&sc, &alone, "self")
        .iter()
        .all(|f| f.name != "rate_vs_self"));
}
