//! The values a scenario file holds besides tables: the modes (serde
//! enums whose names appear once), connection counts, durations and
//! target bounds.

use crate::figures::Class;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// Declares a mode enum whose names appear once: serde reads them (an
/// unknown one is "unknown variant `x`, expected one of …") and `arg`
/// gives them back for a command line.
macro_rules! modes {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }

        impl $name {
            /// The name as the binaries take it.
            pub fn arg(self) -> &'static str {
                match self {
                    $($name::$v => $s),+
                }
            }
        }
    };
}

modes! {
    /// echo-backend `--mode`.
    BackendMode { Echo = "echo", Http = "http", Sink = "sink", Source = "source" }
}

modes! {
    /// loadgen `--mode`.
    LoadMode {
        Echo = "echo",
        Http = "http",
        Bulk = "bulk",
        /// A new connection per exchange.
        Connect = "connect",
    }
}

modes! {
    /// Where a scenario's processes run (`netns.rs`): all on this
    /// namespace's loopback, or the load, the proxy and the backend each in
    /// a network namespace of its own, joined by veth pairs.
    Topology { Loopback = "loopback", Netns = "netns" }
}

modes! {
    /// `[load] tool`: what drives the load, our loadgen or a real client
    /// (each with the backend it talks to, started by the workbench).
    Tool {
        Loadgen = "loadgen",
        /// HTTP against nginx serving a fixed reply.
        Wrk = "wrk",
        /// SET and GET against redis-server.
        RedisBenchmark = "redis-benchmark",
        /// One bulk stream each way against an iperf3 server.
        Iperf3 = "iperf3",
    }
}

modes! {
    /// loadgen `--bulk-direction`.
    BulkDirection { Up = "up", Down = "down", Both = "both" }
}

/// A connection count, or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(usize),
    Max,
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
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
                    Ok(Count::Max)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as written in a scenario file (`"500ms"`, `"2s"`), parsed
/// with the binaries' own parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        netio::cli::parse_duration(&text)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration \"{text}\": {e}")))
    }
}

impl fmt::Display for Dur {
    /// In the largest unit that shows it exactly, as the binaries parse it.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let us = self.0.as_micros();
        if us.is_multiple_of(1_000_000) {
            write!(f, "{}s", us / 1_000_000)
        } else if us.is_multiple_of(1000) {
            write!(f, "{}ms", us / 1000)
        } else {
            write!(f, "{us}us")
        }
    }
}

/// A target: the figure must be at most `max` and/or at least `min`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// `false`: a goal, reported with its verdict but never failing a run.
    /// Targets on wall-clock figures are always goals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<bool>,
    /// `false`: keep this scenario's figure out of the baseline (for a
    /// count that follows the machine in this one scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<bool>,
}

impl Bound {
    pub fn check(&self, v: f64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    /// Whether missing this target fails the run, for a figure of `class`.
    pub fn gates(&self, class: Class) -> bool {
        class.can_gate() && self.gate != Some(false)
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
