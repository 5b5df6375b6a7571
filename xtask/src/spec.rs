//! Scenario files: `scenarios/NAME.toml`, parsed strictly (an unknown key,
//! a wrong type, a bad mode or duration, or a missing field is one line
//! naming the file, the line, the key and the value) and validated before
//! anything starts. Over 500 lines: it holds every table's fields with
//! their docs, which read best together; the keys each load tool takes
//! are checked in `spec/tool.rs`.

mod failover;
mod key;
mod ratio;
mod tool;
mod values;

pub use failover::Failover;
pub use ratio::RatioTarget;
pub use values::{
    fmt_num, BackendMode, Bound, BulkDirection, Count, Dur, LoadMode, Tool, Topology,
};

use crate::figures::{self, Class, Producer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One scenario, validated.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file's name without `.toml`.
    pub name: String,
    /// One line for `cargo xtask list` and the report.
    pub description: String,
    /// Reported by `cargo xtask bench` (and `scenario`), never run by the
    /// `ci` gate: the real clients' and the network namespaces' scenarios,
    /// whose figures depend on tools and privileges a CI machine may lack.
    pub bench_only: bool,
    /// Where its processes run; see [`Topology`].
    pub topology: Topology,
    pub backend: Backend,
    pub proxy: ProxySpec,
    /// What it does, as written (see [`Scenario::body`] for `--quick`).
    body: Body,
    quick: Quick,
    /// Figure name → bound; see `figures.rs` for which bounds gate.
    pub targets: BTreeMap<String, Bound>,
    /// Figure name → goal on our figure divided by the best peer's in the
    /// same run (the best by the figure's direction), reported as
    /// `NAME_vs_best_peer` when peers are compared; never gated, as the
    /// best peer depends on which peers ran.
    pub peer_targets: BTreeMap<String, Bound>,
    /// Figure name → target on one subject's figure over another's in the
    /// same run; see `spec/ratio.rs`.
    pub ratio_targets: BTreeMap<String, RatioTarget>,
}

/// A scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: String,
    /// See [`Scenario::bench_only`].
    #[serde(default)]
    bench_only: bool,
    /// See [`Scenario::topology`].
    #[serde(default = "loopback")]
    topology: Topology,
    /// What the echo-backend runs as.
    #[serde(default)]
    backend: Backend,
    /// Extra arguments for our proxy (peers get equivalent configs).
    #[serde(default)]
    proxy: ProxySpec,
    /// A load run by loadgen; exactly one of `load`, `hold`, `soak` and
    /// `failover`.
    load: Option<Load>,
    /// Connections held by the workbench itself for memory and idle figures.
    hold: Option<Hold>,
    /// A long churning load, judged by the proxy's own figures at rest
    /// before and after it.
    soak: Option<Soak>,
    /// Connect-mode load while one of two backends is killed and restarted.
    failover: Option<Failover>,
    /// Overrides for `--quick` (and `cargo xtask ci`).
    #[serde(default)]
    quick: Quick,
    #[serde(default)]
    targets: BTreeMap<String, Bound>,
    #[serde(default)]
    peer_targets: BTreeMap<String, Bound>,
    #[serde(default)]
    ratio_targets: BTreeMap<String, RatioTarget>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    #[serde(default = "echo")]
    pub mode: BackendMode,
    #[serde(default = "one")]
    pub workers: usize,
}

impl Default for Backend {
    fn default() -> Self {
        Backend {
            mode: BackendMode::Echo,
            workers: 1,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    /// What drives the load: loadgen (the default) or a real client; see
    /// `spec/tool.rs` for the keys each takes.
    #[serde(default = "loadgen")]
    pub tool: Tool,
    /// loadgen's mode (needed by loadgen, refused for the other tools).
    #[serde(default = "echo_mode")]
    pub mode: LoadMode,
    /// Concurrent connections, or "max": as many as the open-files limit
    /// lets a proxy hold.
    pub connections: Count,
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    /// How long each run measures (needed by every tool but
    /// redis-benchmark, which counts `requests` instead).
    #[serde(default = "zero")]
    pub duration: Dur,
    #[serde(default = "one_second")]
    pub warmup: Dur,
    /// Total messages per second (open loop); absent = closed loop.
    pub rate: Option<f64>,
    pub bulk_direction: Option<BulkDirection>,
    /// Interleave with a direct run at the backend in the same invocation.
    #[serde(default = "yes")]
    pub compare_direct: bool,
    /// Length of each alternating window.
    #[serde(default = "one_second")]
    pub window: Dur,
    /// Load all subjects from one loadgen in alternating windows (the
    /// default, for same-run ratios); false runs one loadgen per subject
    /// in turn, for loads whose connections would not all fit in one
    /// process's descriptors.
    #[serde(default = "yes")]
    pub interleave: bool,
    /// A real client's: how many rounds, each running the tool once per
    /// subject in turn (3 unless told; 2 with `--quick`).
    pub rounds: Option<usize>,
    /// redis-benchmark's: requests per test in each run.
    pub requests: Option<u64>,
    /// redis-benchmark's: also run pipelined this deep (`-P`).
    pub pipeline: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    /// Connection counts to hold, each measured in turn; "max" means the
    /// largest count the open-files limit allows.
    pub connections: Vec<Count>,
    /// Keep bytes in flight on every connection (the client writes and
    /// never reads), for memory per active connection.
    #[serde(default)]
    pub in_flight: bool,
    /// Quiet window over which wake-ups and CPU time are counted.
    #[serde(default = "five_seconds")]
    pub quiet: Dur,
}

/// A soak: three loads at once through the judged proxy, each open loop
/// at its own rate, so that the machine is never saturated — churn (a
/// connection per exchange, some cut by a client reset once the request
/// is written, with the echo in flight), kept connections exchanging
/// small messages, and long streams of large messages. First a warm-up
/// of the same loads reaches peak concurrency; at rest after it the
/// start figures are read, then the soak runs for `duration`, and at
/// rest after it the end figures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soak {
    /// How long the soak's load runs (after the warm-up).
    pub duration: Dur,
    /// How long the warm-up load runs.
    #[serde(default = "five_seconds")]
    pub warmup: Dur,
    /// How long the proxy may take to come to rest after a load: every
    /// connection closed and its descriptors stable.
    #[serde(default = "ten_seconds")]
    pub settle: Dur,
    /// Churn: concurrent connect-mode clients, and their total
    /// exchanges (connections) per second (open loop, as all three).
    pub churn_connections: usize,
    pub churn_rate: u64,
    /// The share of the churn's exchanges cut by a reset.
    #[serde(default)]
    pub reset_ratio: f64,
    /// Kept connections exchanging `message_size` echoes, in all
    /// `echo_rate` per second; 0 for none.
    #[serde(default)]
    pub echo_connections: usize,
    #[serde(default = "hundred")]
    pub echo_rate: u64,
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    /// Kept connections streaming `stream_message_size` echoes, in all
    /// `stream_rate` per second; 0 for none.
    #[serde(default)]
    pub stream_connections: usize,
    #[serde(default = "one_mib")]
    pub stream_message_size: usize,
    #[serde(default = "two")]
    pub stream_rate: u64,
}

/// What a scenario does, with `--quick` applied.
#[derive(Debug, Clone)]
pub enum Body {
    Load(Load),
    Hold(Hold),
    Soak(Soak),
    Failover(Failover),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quick {
    pub duration: Option<Dur>,
    pub warmup: Option<Dur>,
    pub connections: Option<usize>,
    pub window: Option<Dur>,
    /// A lower open-loop rate, so that the load stays below saturation on
    /// a machine that also runs other work (CI beside a CPU hog).
    pub rate: Option<f64>,
    pub hold_connections: Option<Vec<Count>>,
    pub quiet: Option<Dur>,
    /// A real client's rounds (2 unless told).
    pub rounds: Option<usize>,
    /// redis-benchmark's requests per test.
    pub requests: Option<u64>,
}

fn echo() -> BackendMode {
    BackendMode::Echo
}
fn loopback() -> Topology {
    Topology::Loopback
}
fn loadgen() -> Tool {
    Tool::Loadgen
}
fn echo_mode() -> LoadMode {
    LoadMode::Echo
}
fn zero() -> Dur {
    Dur(Duration::ZERO)
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_message_size() -> usize {
    64
}
fn one_second() -> Dur {
    Dur(Duration::from_secs(1))
}
fn five_seconds() -> Dur {
    Dur(Duration::from_secs(5))
}
fn ten_seconds() -> Dur {
    Dur(Duration::from_secs(10))
}
fn hundred() -> u64 {
    100
}
fn two() -> u64 {
    2
}
fn one_mib() -> usize {
    1 << 20
}

impl Scenario {
    /// Reads and validates `path`; the scenario is named after the file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let file = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
        let f: File = toml::from_str(&text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    match key::at(&text, span) {
                        Some(key) => format!("{file}:{line}: {key}: {message}"),
                        None => format!("{file}:{line}: {message}"),
                    }
                }
                None => format!("{file}: {message}"),
            }
        })?;
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file}: file name is not UTF-8"))?
            .to_string();
        let body = match (f.load, f.hold, f.soak, f.failover) {
            (Some(l), None, None, None) => Body::Load(l),
            (None, Some(h), None, None) => Body::Hold(h),
            (None, None, Some(s), None) => Body::Soak(s),
            (None, None, None, Some(o)) => Body::Failover(o),
            (None, None, None, None) => {
                return Err(format!(
                    "{file}: missing field `load` (or `hold`, `soak` or `failover`)"
                ))
            }
            _ => {
                return Err(format!(
                    "{file}: has more than one of [load], [hold], [soak] and [failover]; a \
                     scenario is one of them"
                ))
            }
        };
        let raw: toml::Table = toml::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        tool::check(&raw, &body, &f.quick).map_err(|e| format!("{file}: {e}"))?;
        let s = Scenario {
            name,
            description: f.description,
            bench_only: f.bench_only,
            topology: f.topology,
            backend: f.backend,
            proxy: f.proxy,
            body,
            quick: f.quick,
            targets: f.targets,
            peer_targets: f.peer_targets,
            ratio_targets: f.ratio_targets,
        };
        s.validate().map_err(|e| format!("{file}: {e}"))?;
        Ok(s)
    }

    /// The subjects its ratio targets name, which every run of it
    /// measures.
    pub fn ratio_subjects(&self) -> Vec<crate::peers::Kind> {
        let mut out = Vec::new();
        for t in self.ratio_targets.values() {
            for k in [t.of, t.vs] {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }

    /// The kind of figures this scenario produces.
    pub fn producer(&self) -> Producer {
        match self.body {
            Body::Load(_) => Producer::Load,
            Body::Hold(_) => Producer::Hold,
            Body::Soak(_) => Producer::Soak,
            Body::Failover(_) => Producer::Failover,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.backend.workers == 0 {
            return Err("backend.workers: must be at least 1".into());
        }
        if self.topology == Topology::Netns && self.producer() != Producer::Load {
            return Err("topology: \"netns\" is for [load] scenarios only".into());
        }
        if let (Topology::Netns, Body::Load(l)) = (self.topology, &self.body) {
            if l.tool != Tool::Loadgen {
                return Err(format!(
                    "topology: \"netns\" runs loadgen only, not tool = \"{}\"",
                    l.tool.arg()
                ));
            }
        }
        match &self.body {
            Body::Load(l) => {
                if l.connections == Count::N(0) {
                    return Err("load.connections: must be at least 1".into());
                }
                for (key, rate) in [("load.rate", l.rate), ("quick.rate", self.quick.rate)] {
                    if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                        return Err(format!("{key}: must be positive"));
                    }
                }
                if self.quick.rate.is_some() && l.rate.is_none() {
                    return Err("quick.rate: the load is closed loop (no load.rate)".into());
                }
            }
            Body::Hold(h) => {
                if h.connections.is_empty() {
                    return Err("hold.connections: give at least one count".into());
                }
                if h.connections.contains(&Count::N(0)) {
                    return Err("hold.connections: counts must be at least 1".into());
                }
            }
            Body::Soak(s) => {
                if s.duration.0.is_zero() {
                    return Err("soak.duration: must be more than 0".into());
                }
                if s.churn_connections + s.echo_connections + s.stream_connections == 0 {
                    return Err("soak: give churn, echo or stream connections".into());
                }
                for (key, rate, conns) in [
                    ("soak.churn_rate", s.churn_rate, s.churn_connections),
                    ("soak.echo_rate", s.echo_rate, s.echo_connections),
                    ("soak.stream_rate", s.stream_rate, s.stream_connections),
                ] {
                    if conns > 0 && rate == 0 {
                        return Err(format!("{key}: must be at least 1"));
                    }
                }
                if !(0.0..=1.0).contains(&s.reset_ratio) {
                    return Err(format!(
                        "soak.reset_ratio: {} is not a fraction 0..=1",
                        s.reset_ratio
                    ));
                }
            }
            Body::Failover(o) => o.validate(self.quick.rate)?,
        }
        let produced = figures::produced_by(self.producer());
        let unknown = |table: &str, name: &str| {
            format!(
                "{table}.{name}: not a figure this scenario produces (one of: {})",
                produced.join(", ")
            )
        };
        for (name, bound) in &self.targets {
            if let Some((base, ours)) = figures::split_vs_ours(name) {
                return Err(format!(
                    "targets.{name}: a ratio to {} goes in [ratio_targets], as {base} = {{ of =                      \"…\", vs = \"{}\", min = … }}",
                    ours.name(),
                    ours.name()
                ));
            }
            let spec = figures::spec(name)
                .filter(|s| s.from.serves(self.producer()))
                .ok_or_else(|| match figures::split_vs_peer(name) {
                    Some((base, _)) if figures::spec(base).is_some() => format!(
                        "targets.{name}: {base} has no same-run peer ratio (those that do: {})",
                        figures::with_peer_ratios().join(", ")
                    ),
                    _ => unknown("targets", name),
                })?;
            if bound.min.is_none() && bound.max.is_none() {
                return Err(format!("targets.{name}: give `min` or `max`"));
            }
            if spec.class == Class::Wall {
                if bound.gate == Some(true) {
                    return Err(format!(
                        "targets.{name}: gate = true on a wall-clock figure, which follows the \
                         machine: its target is a goal (gate only counts and same-run peer ratios)"
                    ));
                }
                if bound.baseline == Some(true) {
                    return Err(format!(
                        "targets.{name}: baseline = true on a wall-clock figure, which is never \
                         baselined"
                    ));
                }
            }
        }
        ratio::check(self.ratio_targets.iter(), self.producer())?;
        for (name, bound) in &self.peer_targets {
            figures::def(name)
                .filter(|d| d.from.serves(self.producer()))
                .ok_or_else(|| unknown("peer_targets", name))?;
            match (bound.min, bound.max, bound.gate, bound.baseline) {
                (None, None, ..) => {
                    return Err(format!("peer_targets.{name}: give `min` or `max`"))
                }
                (Some(_), Some(_), ..) => {
                    return Err(format!(
                        "peer_targets.{name}: give `min` (ours at least this times the best \
                         peer's) or `max` (at most), not both"
                    ))
                }
                (_, _, Some(_), _) | (_, _, _, Some(_)) => {
                    return Err(format!(
                        "peer_targets.{name}: goals against the best peer never gate; to gate, \
                         name {name}_vs_haproxy in [targets]"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// What the scenario does, with the `--quick` overrides when `quick`.
    pub fn body(&self, quick: bool) -> Body {
        let none = Quick::default();
        let q = if quick { &self.quick } else { &none };
        match &self.body {
            Body::Load(l) => {
                let mut l = l.clone();
                l.duration = q.duration.unwrap_or(l.duration);
                l.warmup = q.warmup.unwrap_or(l.warmup);
                l.window = q.window.unwrap_or(l.window);
                l.connections = q.connections.map_or(l.connections, Count::N);
                l.rate = q.rate.or(l.rate);
                l.requests = q.requests.or(l.requests);
                if quick {
                    l.rounds = Some(q.rounds.unwrap_or(tool::QUICK_ROUNDS));
                }
                Body::Load(l)
            }
            Body::Hold(h) => {
                let mut h = h.clone();
                h.quiet = q.quiet.unwrap_or(h.quiet);
                if let Some(c) = &q.hold_connections {
                    h.connections = c.clone();
                }
                Body::Hold(h)
            }
            Body::Soak(s) => {
                let mut s = s.clone();
                s.duration = q.duration.unwrap_or(s.duration);
                s.warmup = q.warmup.unwrap_or(s.warmup);
                Body::Soak(s)
            }
            Body::Failover(o) => {
                let mut o = o.clone();
                o.duration = q.duration.unwrap_or(o.duration);
                o.warmup = q.warmup.unwrap_or(o.warmup);
                o.connections = q.connections.unwrap_or(o.connections);
                o.rate = q.rate.unwrap_or(o.rate);
                Body::Failover(o)
            }
        }
    }
}

impl Body {
    /// With `--duration`: the measured time of a load, soak or failover set by
    /// hand (a hold's quiet window is not a duration to stretch).
    pub fn with_duration(self, duration: Option<Duration>) -> Body {
        let Some(d) = duration.map(Dur) else {
            return self;
        };
        match self {
            Body::Load(l) => Body::Load(Load { duration: d, ..l }),
            Body::Soak(s) => Body::Soak(Soak { duration: d, ..s }),
            Body::Failover(o) => Body::Failover(Failover { duration: d, ..o }),
            Body::Hold(h) => Body::Hold(h),
        }
    }
}

/// Every scenario in `dir`, sorted by name. Fails on the first bad file.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Scenario::load(p)).collect()
}

#[cfg(test)]
mod tests;
