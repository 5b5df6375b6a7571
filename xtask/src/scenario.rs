//! Scenario files: `scenarios/NAME.toml`, parsed strictly (an unknown key,
//! a wrong type or a missing field names the file and the key) and
//! validated before anything starts.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One scenario, as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Set from the file name, not from the file.
    #[serde(skip)]
    pub name: String,
    /// One line for `cargo xtask list` and the report.
    pub description: String,
    /// What the echo-backend runs as.
    #[serde(default)]
    pub backend: BackendSpec,
    /// Extra arguments for our proxy (peers get equivalent configs).
    #[serde(default)]
    pub proxy: ProxySpec,
    /// A load run by loadgen; exactly one of `load` and `hold`.
    pub load: Option<LoadSpec>,
    /// Connections held by the workbench itself for memory and idle figures.
    pub hold: Option<HoldSpec>,
    /// Overrides for `--quick` (and `cargo xtask ci`).
    #[serde(default)]
    pub quick: Quick,
    /// Figure name → bound. Every figure named must be one the scenario
    /// produces.
    #[serde(default)]
    pub targets: BTreeMap<String, Bound>,
    /// Figure name → bound on our figure divided by the best peer's in the
    /// same run (the highest for a `min` bound, the lowest for a `max`),
    /// reported as `NAME_vs_best_peer` when peers are compared. Reported,
    /// never gated: peers are not installed everywhere.
    #[serde(default)]
    pub peer_targets: BTreeMap<String, Bound>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    #[serde(default = "default_backend_mode")]
    pub mode: String,
    #[serde(default = "one")]
    pub workers: usize,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec {
            mode: default_backend_mode(),
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
pub struct LoadSpec {
    /// loadgen `--mode`: echo, http, bulk or connect.
    pub mode: String,
    /// Concurrent connections, or "max": as many as the open-files limit
    /// lets a proxy hold.
    pub connections: Count,
    #[serde(default = "default_message_size")]
    pub message_size: usize,
    pub duration: String,
    #[serde(default = "default_warmup")]
    pub warmup: String,
    /// Total messages per second (open loop); absent = closed loop.
    pub rate: Option<f64>,
    /// Bulk direction: up, down or both.
    pub bulk_direction: Option<String>,
    /// Interleave with a direct run at the backend in the same invocation.
    #[serde(default = "yes")]
    pub compare_direct: bool,
    /// Length of each alternating window.
    #[serde(default = "default_window")]
    pub window: String,
    /// Load all subjects from one loadgen in alternating windows (the
    /// default, for same-run ratios); false runs one loadgen per subject
    /// in turn, for loads whose connections would not all fit in one
    /// process's descriptors.
    #[serde(default = "yes")]
    pub interleave: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSpec {
    /// Connection counts to hold, each measured in turn; "max" means the
    /// largest count the open-files limit allows.
    pub connections: Vec<Count>,
    /// Keep bytes in flight on every connection (the client writes and
    /// never reads), for memory per active connection.
    #[serde(default)]
    pub in_flight: bool,
    /// Quiet window over which wake-ups and CPU time are counted.
    #[serde(default = "default_quiet")]
    pub quiet: String,
}

/// A connection count, or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(usize),
    Word(MaxWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxWord {
    Max,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a connection count or \"max\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Count, E> {
                usize::try_from(v)
                    .map(Count::N)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Count, E> {
                usize::try_from(v)
                    .map(Count::N)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Count, E> {
                if v == "max" {
                    Ok(Count::Word(MaxWord::Max))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quick {
    pub duration: Option<String>,
    pub warmup: Option<String>,
    pub connections: Option<usize>,
    pub window: Option<String>,
    pub hold_connections: Option<Vec<Count>>,
    pub quiet: Option<String>,
}

/// A target: the figure must be at most `max` and/or at least `min`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `false`: a goal that is reported with its verdict but never fails
    /// `cargo xtask ci` (for wall-clock figures and stretch goals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<bool>,
}

impl Bound {
    pub fn check(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    pub fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("{} ..= {}", fmt_num(a), fmt_num(b)),
            (Some(a), None) => format!(">= {}", fmt_num(a)),
            (None, Some(b)) => format!("<= {}", fmt_num(b)),
            (None, None) => "-".into(),
        }
    }
}

/// Numbers as a person reads them: integers plainly, others to 3 digits.
pub fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn default_backend_mode() -> String {
    "echo".into()
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
fn default_warmup() -> String {
    "1s".into()
}
fn default_window() -> String {
    "1s".into()
}
fn default_quiet() -> String {
    "5s".into()
}

/// Figures a load scenario produces (per subject).
pub const LOAD_FIGURES: &[&str] = &[
    "connections",
    "rate",
    "ratio_to_direct",
    "mean_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "added_p50_us",
    "added_p99_us",
    "errors",
    "verify_failures",
    "throughput_bps",
    "connect_rate",
    "syscalls_per_message",
    "cpu_us_per_message",
    "cpu_user_percent",
    "epoll_ctl_per_connection",
];

/// Figures a hold scenario produces (per subject).
pub const HOLD_FIGURES: &[&str] = &[
    "connections_held",
    "buffers_held",
    "rss_base_kib",
    "rss_per_conn_bytes",
    "rss_per_conn_bytes_at_max",
    "kernel_tcp_kib",
    "idle_wakeups",
    "idle_cpu_percent",
    "fd_leak",
    "errors",
];

impl Scenario {
    /// Reads and validates `path`; the scenario is named after the file.
    pub fn load(path: &Path) -> Result<Scenario, String> {
        let file = path.display();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
        let mut s: Scenario = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|sp| format!(":{}", text[..sp.start].matches('\n').count() + 1))
                .unwrap_or_default();
            format!("{file}{line}: {}", e.message().replace('\n', " "))
        })?;
        s.name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file}: file name is not UTF-8"))?
            .to_string();
        s.validate().map_err(|e| format!("{file}: {e}"))?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if !["echo", "http", "sink", "source"].contains(&self.backend.mode.as_str()) {
            return Err(format!(
                "backend.mode: \"{}\" is not one of echo, http, sink, source",
                self.backend.mode
            ));
        }
        if self.backend.workers == 0 {
            return Err("backend.workers: must be at least 1".into());
        }
        let figures = match (&self.load, &self.hold) {
            (Some(_), Some(_)) => {
                return Err("has both [load] and [hold]; a scenario is one or the other".into())
            }
            (None, None) => return Err("missing field `load` (or `hold`)".into()),
            (Some(l), None) => {
                if !["echo", "http", "bulk", "connect"].contains(&l.mode.as_str()) {
                    return Err(format!(
                        "load.mode: \"{}\" is not one of echo, http, bulk, connect",
                        l.mode
                    ));
                }
                if l.connections == Count::N(0) {
                    return Err("load.connections: must be at least 1".into());
                }
                if let Some(d) = &l.bulk_direction {
                    if !["up", "down", "both"].contains(&d.as_str()) {
                        return Err(format!(
                            "load.bulk_direction: \"{d}\" is not one of up, down, both"
                        ));
                    }
                }
                if l.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                    return Err("load.rate: must be positive".into());
                }
                for (key, v) in [
                    ("load.duration", &l.duration),
                    ("load.warmup", &l.warmup),
                    ("load.window", &l.window),
                ] {
                    parse_duration(v).map_err(|e| format!("{key}: \"{v}\": {e}"))?;
                }
                LOAD_FIGURES
            }
            (None, Some(h)) => {
                if h.connections.is_empty() {
                    return Err("hold.connections: give at least one count".into());
                }
                if h.connections.contains(&Count::N(0)) {
                    return Err("hold.connections: counts must be at least 1".into());
                }
                parse_duration(&h.quiet)
                    .map_err(|e| format!("hold.quiet: \"{}\": {e}", h.quiet))?;
                HOLD_FIGURES
            }
        };
        for (key, v) in [
            ("quick.duration", &self.quick.duration),
            ("quick.warmup", &self.quick.warmup),
            ("quick.window", &self.quick.window),
            ("quick.quiet", &self.quick.quiet),
        ] {
            if let Some(v) = v {
                parse_duration(v).map_err(|e| format!("{key}: \"{v}\": {e}"))?;
            }
        }
        for (table, list) in [
            ("targets", &self.targets),
            ("peer_targets", &self.peer_targets),
        ] {
            for (name, bound) in list {
                if !figures.contains(&name.as_str()) {
                    return Err(format!(
                        "{table}.{name}: not a figure this scenario produces (one of: {})",
                        figures.join(", ")
                    ));
                }
                if bound.min.is_none() && bound.max.is_none() {
                    return Err(format!("{table}.{name}: give `min` or `max`"));
                }
                if table == "peer_targets" && bound.min.is_some() && bound.max.is_some() {
                    return Err(format!(
                        "peer_targets.{name}: give `min` (ours at least this times the best \
                         peer's) or `max` (at most), not both"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The load with `--quick` overrides applied.
    pub fn effective_load(&self, quick: bool) -> Option<LoadSpec> {
        let mut l = self.load.clone()?;
        if quick {
            let q = &self.quick;
            if let Some(v) = &q.duration {
                l.duration = v.clone();
            }
            if let Some(v) = &q.warmup {
                l.warmup = v.clone();
            }
            if let Some(v) = q.connections {
                l.connections = Count::N(v);
            }
            if let Some(v) = &q.window {
                l.window = v.clone();
            }
        }
        Some(l)
    }

    /// The hold with `--quick` overrides applied.
    pub fn effective_hold(&self, quick: bool) -> Option<HoldSpec> {
        let mut h = self.hold.clone()?;
        if quick {
            if let Some(v) = &self.quick.hold_connections {
                h.connections = v.clone();
            }
            if let Some(v) = &self.quick.quiet {
                h.quiet = v.clone();
            }
        }
        Some(h)
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

pub use netio::cli::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("demo.toml");
        std::fs::write(&path, text).expect("write");
        Scenario::load(&path)
    }

    const GOOD: &str = r#"
description = "demo"
[load]
mode = "echo"
connections = 10
duration = "2s"
[targets]
rate = { min = 1000 }
"#;

    #[test]
    fn a_good_file_parses_and_is_named_after_the_file() {
        let s = parse(GOOD).expect("good");
        assert_eq!(s.name, "demo");
        assert_eq!(s.backend.mode, "echo");
        let l = s.load.expect("load");
        assert_eq!(
            (l.connections, l.message_size, l.compare_direct),
            (Count::N(10), 64, true)
        );
        assert_eq!(
            s.targets["rate"],
            Bound {
                min: Some(1000.0),
                max: None,
                gate: None,
            }
        );
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = parse(&GOOD.replace("connections = 10", "connections = 10\nconections = 3"))
            .expect_err("bad");
        assert!(
            e.contains("demo.toml:6") && e.contains("unknown field `conections`"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let e = parse(&GOOD.replace("connections = 10", "connections = \"ten\"")).expect_err("bad");
        assert!(
            e.contains("demo.toml:5") && e.contains("a connection count or \"max\""),
            "{e}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = parse(&GOOD.replace("duration = \"2s\"\n", "")).expect_err("bad");
        assert!(e.contains("missing field `duration`"), "{e}");
        let e = parse("description = \"x\"\n").expect_err("bad");
        assert!(e.contains("missing field `load`"), "{e}");
    }

    #[test]
    fn a_target_must_be_a_produced_figure() {
        let e =
            parse(&GOOD.replace("rate = { min = 1000 }", "speed = { min = 1 }")).expect_err("bad");
        assert!(e.contains("targets.speed: not a figure"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            parse(&GOOD.replace("duration = \"2s\"", "duration = \"2 weeks\"")).expect_err("bad");
        assert!(e.contains("load.duration"), "{e}");
        let e = parse(&GOOD.replace("mode = \"echo\"", "mode = \"ping\"")).expect_err("bad");
        assert!(e.contains("load.mode"), "{e}");
    }

    #[test]
    fn hold_counts_accept_max() {
        let s = parse("description = \"m\"\n[hold]\nconnections = [1000, \"max\"]\n[targets]\nrss_per_conn_bytes = { max = 16384 }\n")
            .expect("good");
        assert_eq!(
            s.hold.expect("hold").connections,
            vec![Count::N(1000), Count::Word(MaxWord::Max)]
        );
    }

    #[test]
    fn every_committed_scenario_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all = load_all(&dir).expect("scenarios parse");
        assert!(
            all.len() >= 7,
            "expected the documented scenarios, found {}",
            all.len()
        );
    }

    #[test]
    fn peer_targets_are_checked_like_targets() {
        let e = parse(&format!(
            "{GOOD}\n[peer_targets]\nspeed = {{ min = 1.1 }}\n"
        ))
        .expect_err("bad");
        assert!(e.contains("peer_targets.speed: not a figure"), "{e}");
        let e = parse(&format!(
            "{GOOD}\n[peer_targets]\nrate = {{ min = 1.1, max = 2 }}\n"
        ))
        .expect_err("bad");
        assert!(
            e.contains("peer_targets.rate") && e.contains("not both"),
            "{e}"
        );
        let s = parse(&format!("{GOOD}\n[peer_targets]\nrate = {{ min = 1.1 }}\n")).expect("good");
        assert_eq!(s.peer_targets["rate"].min, Some(1.1));
    }

    #[test]
    fn load_connections_may_be_max_and_goals_do_not_gate() {
        let s = parse(&GOOD.replace("connections = 10", "connections = \"max\"")).expect("good");
        assert_eq!(s.load.expect("load").connections, Count::Word(MaxWord::Max));
        let e =
            parse(&GOOD.replace("connections = 10", "connections = \"most\"")).expect_err("bad");
        assert!(e.contains("a connection count or \"max\""), "{e}");
        let s = parse(&GOOD.replace("[targets]", "[targets]\nerrors = { max = 0, gate = false }"))
            .expect("good");
        assert_eq!(s.targets["errors"].gate, Some(false));
    }
}
