//! The summary a report opens with: one row per headline figure, ours
//! beside each peer and direct, the ratio to the best peer and the
//! verdict; and the order of the story the scenarios are told in. The
//! renderings (`report.rs`, `html.rs`) only lay these out.

use crate::figures::{self, Better};
use crate::report::{self, Run, ScenarioReport};
use crate::spec::Bound;

/// One headline figure: where it is measured and what a person calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headline {
    pub scenario: &'static str,
    pub figure: &'static str,
    pub label: &'static str,
}

const fn head(scenario: &'static str, figure: &'static str, label: &'static str) -> Headline {
    Headline {
        scenario,
        figure,
        label,
    }
}

/// The summary's rows, in its order: the one place they are named.
#[rustfmt::skip]
pub const HEADLINES: &[Headline] = &[
    head("latency", "rate", "rate at 1 connection"),
    head("throughput", "rate", "rate at 100 connections"),
    head("high-concurrency", "rate", "rate at 1,000 connections"),
    head("connection-churn", "connect_rate", "connections per second"),
    head("latency", "added_p50_us", "added latency (p50)"),
    head("bulk", "throughput_bps", "bulk throughput"),
    head("memory-per-connection", "rss_per_conn_bytes", "memory per idle connection"),
    head("memory-in-flight", "rss_per_conn_bytes", "memory per busy connection"),
    head("idle-cpu", "idle_wakeups", "idle wake-ups"),
    head("throughput", "cpu_us_per_message", "CPU per message"),
];

/// Rows that confirm the headlines with clients nobody here wrote: shown
/// only when their scenario is in the run (they are `bench_only`, so the
/// `ci` gate's report never lists them as not run).
pub const CLIENT_HEADLINES: &[Headline] = &[
    head(
        "wrk-throughput",
        "rate",
        "wrk: HTTP rate at 100 connections",
    ),
    head(
        "wrk-concurrency",
        "rate",
        "wrk: HTTP rate at 1,000 connections",
    ),
    head("redis", "rate", "redis-benchmark: rate at 50 connections"),
    head("redis", "rate_pipelined", "redis-benchmark: pipelined rate"),
    head("iperf3-bulk", "throughput_bps_up", "iperf3: bulk up"),
    head("iperf3-bulk", "throughput_bps_down", "iperf3: bulk down"),
];

/// What every report says about its summary.
pub const NOTE: &str = "Each headline figure of ours beside each peer and going direct; \
the ratio is ours over the best peer's, and within ±3 % of it we are level.";

/// The scenarios in the order of the story; a scenario named `NAME-…`
/// that is not listed follows `NAME` (`bulk-many` after `bulk`), and the
/// rest follow them all, alphabetically.
#[rustfmt::skip]
pub const STORY: &[&str] = &[
    "latency", "throughput",
    "high-concurrency", "http-concurrency", "max-concurrency",
    "connection-churn", "bulk",
    "memory-per-connection", "memory-in-flight", "idle-cpu",
    // Real clients as load tools.
    "wrk-throughput", "wrk-concurrency", "redis", "iperf3-bulk",
    // A topology closer to a network.
    "netns-throughput", "netns-latency", "netns-bulk",
];

/// The key scenarios sort by in every rendering.
pub fn story_key(name: &str) -> (usize, bool, &str) {
    if let Some(i) = STORY.iter().position(|s| *s == name) {
        return (i, false, name);
    }
    let family = STORY
        .iter()
        .position(|s| name.strip_prefix(s).is_some_and(|r| r.starts_with('-')));
    (family.unwrap_or(STORY.len()), true, name)
}

/// The run's scenarios in the order of the story.
pub fn in_story_order(run: &Run) -> Vec<&ScenarioReport> {
    let mut v: Vec<&ScenarioReport> = run.scenarios.iter().collect();
    v.sort_by(|a, b| story_key(&a.name).cmp(&story_key(&b.name)));
    v
}

/// Ours against the best peer, within a band of ±[`BAND`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Ahead,
    Level,
    Behind,
}

/// How far apart ours and the best peer may be and still be level.
pub const BAND: f64 = 0.03;

impl Standing {
    pub fn word(self) -> &'static str {
        match self {
            Standing::Ahead => "ahead",
            Standing::Level => "level",
            Standing::Behind => "behind",
        }
    }

    /// The words before the peer's name: "ahead of haproxy".
    pub fn phrase(self) -> &'static str {
        match self {
            Standing::Ahead => "ahead of",
            Standing::Level => "level with",
            Standing::Behind => "behind",
        }
    }

    /// Ours against `best`, for a figure better in direction `better`.
    pub fn of(ours: f64, best: f64, better: Better) -> Standing {
        // Which of the two is better, by how much; a ratio where both are
        // positive, else the plain comparison (zero wake-ups, a negative
        // added latency).
        let ahead = match better {
            Better::Higher => ours > best,
            Better::Lower => ours < best,
        };
        let level = if best > 0.0 && ours >= 0.0 {
            (ours / best - 1.0).abs() <= BAND
        } else {
            ours == best
        };
        match (level, ahead) {
            (true, _) => Standing::Level,
            (false, true) => Standing::Ahead,
            (false, false) => Standing::Behind,
        }
    }
}

/// What the summary shows of one headline figure.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// The scenario is not in this run.
    NotRun,
    /// The scenario failed: its error.
    Failed(String),
    /// The scenario ran and did not produce the figure.
    NoFigure,
    /// The scenario was skipped here (a tool not installed, no network
    /// namespaces): why.
    Skipped(String),
    Measured(Measured),
}

/// A headline figure's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub unit: String,
    pub ours: Option<f64>,
    /// Each peer of the run, in its order, with its value.
    pub peers: Vec<(String, Option<f64>)>,
    pub direct: Option<f64>,
    /// The best peer by the figure's direction, and its value.
    pub best: Option<(String, f64)>,
    /// Ours over the best peer's, where both are positive.
    pub ratio: Option<f64>,
    pub standing: Option<Standing>,
    pub target: Option<Bound>,
    /// The target's verdict (`report::verdict`): "" without one.
    pub verdict: &'static str,
}

impl Measured {
    /// Whether the target was missed: what stands out.
    pub fn missed(&self) -> bool {
        self.verdict.starts_with(['M', 'm'])
    }
}

/// One row of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub head: Headline,
    pub state: State,
}

impl Row {
    /// The anchor of the scenario's section, when the report has one (a
    /// scenario not in the run has none to link to).
    pub fn anchor(&self) -> Option<&'static str> {
        (self.state != State::NotRun).then_some(self.head.scenario)
    }
}

/// The columns beside ours: the run's subjects but the primary and going
/// direct (the peers, and ours on the other engine when compared).
pub fn peers(run: &Run) -> Vec<&str> {
    run.subjects
        .iter()
        .map(String::as_str)
        .filter(|s| *s != run.primary && *s != "direct")
        .collect()
}

/// The summary of `run`, one row per headline figure, then the real
/// clients' rows of the scenarios it ran.
pub fn rows(run: &Run) -> Vec<Row> {
    let ran = |h: &&Headline| run.scenarios.iter().any(|s| s.name == h.scenario);
    HEADLINES
        .iter()
        .chain(CLIENT_HEADLINES.iter().filter(ran))
        .map(|h| Row {
            head: *h,
            state: state(run, h),
        })
        .collect()
}

fn state(run: &Run, h: &Headline) -> State {
    let Some(s) = run.scenarios.iter().find(|s| s.name == h.scenario) else {
        return State::NotRun;
    };
    if let Some(e) = &s.error {
        return State::Failed(e.clone());
    }
    let Some(f) = s.figures.iter().find(|f| f.name == h.figure) else {
        // A scenario skipped whole says so after any peers skipped.
        return match s.skipped.last() {
            Some(k) if s.figures.is_empty() => State::Skipped(k.why.clone()),
            _ => State::NoFigure,
        };
    };
    let better = figures::spec(&f.name).map_or(Better::Higher, |d| d.better);
    let get = |who: &str| f.values.get(who).copied();
    let peers: Vec<(String, Option<f64>)> = peers(run)
        .into_iter()
        .map(|p| (p.to_string(), get(p)))
        .collect();
    // The best of the peers only: ours on the other engine is a column,
    // not a peer.
    let best = peers
        .iter()
        .filter(|(p, _)| crate::peers::Kind::is_peer(p))
        .filter_map(|(p, v)| Some((p.clone(), (*v)?)))
        .reduce(|a, b| {
            let b_better = match better {
                Better::Higher => b.1 > a.1,
                Better::Lower => b.1 < a.1,
            };
            if b_better {
                b
            } else {
                a
            }
        });
    let ours = get(&run.primary);
    let pair = ours.zip(best.as_ref().map(|b| b.1));
    State::Measured(Measured {
        unit: f.unit.clone(),
        ours,
        direct: get("direct"),
        ratio: pair.and_then(|(o, b)| (b > 0.0 && o >= 0.0).then(|| o / b)),
        standing: pair.map(|(o, b)| Standing::of(o, b, better)),
        best,
        peers,
        target: f.target,
        verdict: report::verdict(f),
    })
}

/// A row's verdict in words, both parts: against the best peer and the
/// target. `miss` decorates a missed target for the rendering.
pub fn verdict_text(m: &Measured, miss: impl Fn(&str) -> String) -> String {
    let standing = match (&m.standing, &m.best) {
        (Some(s), Some((peer, _))) => format!("{} {peer}", s.phrase()),
        _ => "no peer".into(),
    };
    let target = match m.verdict {
        "" => String::new(),
        v if m.missed() => format!("; target {}", miss(v)),
        v => format!("; target {v}"),
    };
    standing + &target
}

/// The cells of a row for a plain table: label, ours, peers, direct,
/// ratio to the best peer, verdict, target (a row of `peers + 6` cells).
pub fn cells(run: &Run, row: &Row, miss: impl Fn(&str) -> String) -> Vec<String> {
    let human =
        |v: Option<f64>, unit: &str| v.map_or_else(|| "-".into(), |v| crate::units::human(v, unit));
    let n = peers(run).len();
    let mut out = vec![row.head.label.to_string()];
    match &row.state {
        State::Measured(m) => {
            out.push(human(m.ours, &m.unit));
            out.extend(m.peers.iter().map(|(_, v)| human(*v, &m.unit)));
            out.push(human(m.direct, &m.unit));
            out.push(m.ratio.map_or_else(|| "-".into(), crate::units::ratio));
            out.push(verdict_text(m, miss));
            out.push(
                m.target
                    .map(|b| crate::units::target(&b, &m.unit))
                    .unwrap_or_default(),
            );
        }
        other => {
            out.extend((0..n + 3).map(|_| "-".to_string()));
            out.push(not_measured(other, row.head.scenario));
            out.push(String::new());
        }
    }
    out
}

/// Why a row has no values, in one line.
pub fn not_measured(state: &State, scenario: &str) -> String {
    match state {
        State::NotRun => format!("{scenario} did not run"),
        State::Failed(e) => format!(
            "{scenario} failed: {}",
            e.chars().take(80).collect::<String>()
        ),
        State::NoFigure => format!("not measured by {scenario}"),
        State::Skipped(why) => format!(
            "{scenario} skipped: {}",
            why.chars().take(80).collect::<String>()
        ),
        State::Measured(_) => String::new(),
    }
}

/// The summary table's header cells, matching [`cells`].
pub fn header(run: &Run) -> Vec<String> {
    let mut h = vec!["headline".to_string(), run.primary.clone()];
    h.extend(peers(run).iter().map(|p| p.to_string()));
    h.extend(["direct", "vs best peer", "verdict", "target"].map(String::from));
    h
}

#[cfg(test)]
pub(crate) mod tests;
