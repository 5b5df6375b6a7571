//! Issue 12's goals for the io_uring engine, each judged on the figures
//! of the run: ours on the uring engine (`self-uring`) against the best
//! peer, against ours on epoll (`self`) measured in the same scenario,
//! or absolute. The renderings show them when `self-uring` is a subject
//! of the run; a goal whose scenario, subject or peer did not run is
//! "not measured in this run".

use crate::figures::{self, Better};
use crate::peers::Kind;
use crate::report::{Figure, Run};
use crate::units;

/// What a goal divides the uring engine's figure by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Against {
    /// The best of HAProxy and nginx, by the figure's direction.
    BestPeer,
    /// Ours on epoll in the same run.
    Epoll,
    /// Nothing: the figure itself.
    Absolute,
}

/// The bound a goal puts on its measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// One goal of the list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    pub label: &'static str,
    pub scenario: &'static str,
    pub figure: &'static str,
    pub against: Against,
    pub bound: Bound,
}

const fn goal(
    label: &'static str,
    scenario: &'static str,
    figure: &'static str,
    against: Against,
    bound: Bound,
) -> Goal {
    Goal {
        label,
        scenario,
        figure,
        against,
        bound,
    }
}

use Against::{Absolute, BestPeer, Epoll};
use Bound::{AtLeast, AtMost};

/// The subject the goals judge.
pub const URING: &str = "self-uring";

/// Issue 12's goals, in its order.
#[rustfmt::skip]
pub const GOALS: &[Goal] = &[
    goal("echo rate at 100 connections", "throughput", "rate", BestPeer, AtLeast(1.10)),
    goal("echo rate at 100 connections", "throughput", "rate", Epoll, AtLeast(1.08)),
    goal("echo rate at 1,000 connections", "high-concurrency", "rate", BestPeer, AtLeast(1.10)),
    goal("echo rate at 1,000 connections", "high-concurrency", "rate", Epoll, AtLeast(1.08)),
    goal("HTTP keep-alive rate at 100 connections", "http-throughput", "rate", BestPeer, AtLeast(1.10)),
    goal("HTTP keep-alive rate at 100 connections", "http-throughput", "rate", Epoll, AtLeast(1.08)),
    goal("HTTP keep-alive rate at 1,000 connections", "http-concurrency", "rate", BestPeer, AtLeast(1.10)),
    goal("HTTP keep-alive rate at 1,000 connections", "http-concurrency", "rate", Epoll, AtLeast(1.08)),
    goal("total machine CPU per message at 100 connections", "throughput", "total_cpu_us_per_message", BestPeer, AtMost(0.88)),
    goal("connections per second", "connection-churn", "connect_rate", BestPeer, AtLeast(1.20)),
    goal("added p50 at 1 connection, busy-poll", "latency-busy-poll", "added_p50_us", Absolute, AtMost(10.0)),
    goal("idle wake-ups, 1,000 open connections", "idle-cpu", "idle_wakeups", Absolute, AtMost(0.0)),
    goal("idle wake-ups, 1,000 open connections, busy-poll", "idle-cpu-busy-poll", "idle_wakeups", Absolute, AtMost(0.0)),
    goal("bulk, one stream, as ratio to direct", "bulk", "ratio_to_direct", Absolute, AtLeast(0.95)),
    goal("RSS per idle connection at 5,000", "memory-per-connection", "rss_per_conn_bytes", Absolute, AtMost(64.0)),
    goal("RSS per connection with data in flight", "memory-in-flight", "rss_per_conn_bytes", Epoll, AtMost(1.00)),
    goal("wrk: HTTP rate at 100 connections", "wrk-throughput", "rate", BestPeer, AtLeast(1.10)),
    goal("redis-benchmark: rate", "redis", "rate", BestPeer, AtLeast(1.10)),
    goal("floor (ci): echo rate at 100 connections", "throughput", "rate", Epoll, AtLeast(1.00)),
    goal("floor (ci): total CPU per message at 100", "throughput", "total_cpu_us_per_message", Epoll, AtMost(1.00)),
    goal("floor (ci): connections per second", "connection-churn", "connect_rate", Epoll, AtLeast(1.00)),
];

/// A goal's verdict in this run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    /// Why not: the scenario, the subject or the peer did not run.
    NotMeasured(String),
}

/// One goal with what the run measured of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub goal: Goal,
    /// The measure: the ratio, or the figure itself.
    pub value: Option<f64>,
    /// The figure's unit, for an absolute goal.
    pub unit: String,
    /// What it was divided by: `haproxy`, `self`.
    pub of: Option<String>,
    pub verdict: Verdict,
}

/// The goals of `run`, or none when it did not run ours on uring.
pub fn rows(run: &Run) -> Option<Vec<Row>> {
    run.subjects.iter().any(|s| s == URING).then(|| {
        GOALS
            .iter()
            .map(|g| match measure(run, g) {
                Ok((value, of, unit)) => Row {
                    goal: *g,
                    value: Some(value),
                    unit,
                    of,
                    verdict: if g.bound.holds(value) {
                        Verdict::Met
                    } else {
                        Verdict::NotMet
                    },
                },
                Err(why) => Row {
                    goal: *g,
                    value: None,
                    unit: String::new(),
                    of: None,
                    verdict: Verdict::NotMeasured(why),
                },
            })
            .collect()
    })
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        match self {
            AtLeast(b) => v >= b,
            AtMost(b) => v <= b,
        }
    }
}

/// The goal's measure in `run`, with what it is divided by and its unit.
fn measure(run: &Run, g: &Goal) -> Result<(f64, Option<String>, String), String> {
    let s = run
        .scenarios
        .iter()
        .find(|s| s.name == g.scenario)
        .ok_or_else(|| format!("{} did not run", g.scenario))?;
    if let Some(e) = &s.error {
        let e: String = e.chars().take(80).collect();
        return Err(format!("{} failed: {e}", g.scenario));
    }
    let f = s
        .figures
        .iter()
        .find(|f| f.name == g.figure)
        .ok_or_else(|| format!("no {} in {}", g.figure, g.scenario))?;
    let ours = value(f, URING)?;
    match g.against {
        Absolute => Ok((ours, None, f.unit.clone())),
        Epoll => {
            let epoll = value(f, Kind::SelfProxy.name())?;
            Ok((ours / epoll, Some("self".into()), "ratio".into()))
        }
        BestPeer => {
            let better = figures::spec(g.figure).map_or(Better::Higher, |s| s.better);
            let best = f
                .values
                .iter()
                .filter(|(k, v)| Kind::is_peer(k) && **v > 0.0)
                .reduce(|a, b| match better {
                    Better::Higher if b.1 > a.1 => b,
                    Better::Lower if b.1 < a.1 => b,
                    _ => a,
                })
                .ok_or_else(|| format!("no peer measured {} in {}", g.figure, g.scenario))?;
            Ok((ours / best.1, Some(best.0.clone()), "ratio".into()))
        }
    }
}

fn value(f: &Figure, who: &str) -> Result<f64, String> {
    f.values
        .get(who)
        .copied()
        .ok_or_else(|| format!("{who} has no {}", f.name))
}

/// The header of the goals' table, matching [`cells`].
pub fn header() -> Vec<String> {
    [
        "uring engine goal",
        "scenario",
        "measured",
        "goal",
        "verdict",
    ]
    .map(String::from)
    .to_vec()
}

/// A row's cells; `miss` decorates a goal not met for the rendering.
pub fn cells(r: &Row, miss: impl Fn(&str) -> String) -> Vec<String> {
    let g = &r.goal;
    let (than, unit) = match g.against {
        BestPeer => (" × best peer", "ratio"),
        Epoll => (" × self (epoll)", "ratio"),
        Absolute => ("", r.unit.as_str()),
    };
    let n = |v: f64| match g.against {
        Absolute => units::human(v, unit),
        _ => format!("{v:.2}"),
    };
    let measured = match (r.value, &r.of) {
        (Some(v), Some(of)) => format!("{} (over {of})", n(v)),
        (Some(v), None) => n(v),
        (None, _) => "-".into(),
    };
    let bound = match g.bound {
        AtLeast(b) => format!("≥ {}{than}", n(b)),
        AtMost(b) => format!("≤ {}{than}", n(b)),
    };
    let verdict = match &r.verdict {
        Verdict::Met => "met".to_string(),
        Verdict::NotMet => miss("not met"),
        Verdict::NotMeasured(why) => format!("not measured in this run ({why})"),
    };
    vec![
        g.label.to_string(),
        g.scenario.to_string(),
        measured,
        bound,
        verdict,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::Class;
    use crate::report::tests::{figure, sample};
    use crate::summary::tests::scenario;

    fn row<'a>(rows: &'a [Row], label: &str, against: Against) -> &'a Row {
        rows.iter()
            .find(|r| r.goal.label == label && r.goal.against == against)
            .expect("a goal")
    }

    #[test]
    fn goals_are_shown_only_when_ours_on_uring_ran() {
        let mut run = sample();
        run.subjects = vec!["self".into(), "haproxy".into()];
        assert!(rows(&run).is_none());
        run.subjects.push(URING.into());
        let rows = rows(&run).expect("shown");
        assert_eq!(rows.len(), GOALS.len());
        assert!(rows
            .iter()
            .all(|r| matches!(r.verdict, Verdict::NotMeasured(_))));
    }

    #[test]
    fn each_goal_is_judged_against_its_own_reference() {
        let mut run = sample();
        run.subjects = ["self", URING, "haproxy", "nginx", "direct"]
            .map(String::from)
            .to_vec();
        run.scenarios = vec![
            scenario(
                "throughput",
                vec![
                    figure(
                        "rate",
                        Class::Wall,
                        &[
                            ("self", 100.0),
                            (URING, 115.0),
                            ("haproxy", 104.0),
                            ("nginx", 90.0),
                        ],
                        None,
                    ),
                    figure(
                        "total_cpu_us_per_message",
                        Class::Wall,
                        &[
                            ("self", 36.0),
                            (URING, 33.0),
                            ("haproxy", 40.0),
                            ("nginx", 35.0),
                        ],
                        None,
                    ),
                ],
            ),
            scenario(
                "latency-busy-poll",
                vec![figure("added_p50_us", Class::Wall, &[(URING, 12.0)], None)],
            ),
        ];
        let rows = rows(&run).expect("shown");
        let peer = row(&rows, "echo rate at 100 connections", BestPeer);
        assert_eq!(
            (peer.of.as_deref(), &peer.verdict),
            (Some("haproxy"), &Verdict::Met)
        );
        assert!((peer.value.expect("measured") - 115.0 / 104.0).abs() < 1e-9);
        let epoll = row(&rows, "echo rate at 100 connections", Epoll);
        assert!((epoll.value.expect("measured") - 1.15).abs() < 1e-9);
        // The best peer of a CPU figure is the lowest: nginx's 35.
        let cpu = row(
            &rows,
            "total machine CPU per message at 100 connections",
            BestPeer,
        );
        assert_eq!(
            (cpu.of.as_deref(), &cpu.verdict),
            (Some("nginx"), &Verdict::NotMet)
        );
        let p50 = row(&rows, "added p50 at 1 connection, busy-poll", Absolute);
        assert_eq!(p50.verdict, Verdict::NotMet);
        let cells = cells(p50, |v| v.to_uppercase());
        assert_eq!(cells[2..], ["12.0 µs", "≤ 10.0 µs", "NOT MET"]);
        let churn = row(&rows, "connections per second", BestPeer);
        assert_eq!(
            churn.verdict,
            Verdict::NotMeasured("connection-churn did not run".into())
        );
    }
}
