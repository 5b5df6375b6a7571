//! The `[failover]` body of a scenario: connect-mode load through a proxy
//! in front of two backends, one of which is killed and restarted on its
//! port while the load runs.

use super::Dur;
use serde::Deserialize;
use std::time::Duration;

/// A failover run, through each subject in turn: two echo-backends, the
/// subject in front of both, and connect-mode load (a new connection per
/// exchange) for `warmup` + `duration`. At `warmup + duration / 3` the
/// second backend is killed (SIGKILL); at `warmup + 2 × duration / 3` it
/// is started again on the same port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// How long the load runs after its warm-up.
    pub duration: Dur,
    #[serde(default = "super::one_second")]
    pub warmup: Dur,
    /// Concurrent connect-mode clients.
    pub connections: usize,
    #[serde(default = "super::default_message_size")]
    pub message_size: usize,
    /// Total exchanges (connections) per second, open loop.
    pub rate: f64,
}

impl Failover {
    /// When, after the load started, the backend is killed and restarted.
    pub fn kill_and_restart(&self) -> (Duration, Duration) {
        let (w, d) = (self.warmup.0, self.duration.0);
        (w + d / 3, w + d * 2 / 3)
    }

    pub(super) fn validate(&self, quick_rate: Option<f64>) -> Result<(), String> {
        if self.duration.0 < Duration::from_millis(300) {
            return Err(format!(
                "failover.duration: {} is too short to kill and restart a backend in (at least \
                 300ms)",
                self.duration
            ));
        }
        if self.connections == 0 {
            return Err("failover.connections: must be at least 1".into());
        }
        for (key, rate) in [
            ("failover.rate", Some(self.rate)),
            ("quick.rate", quick_rate),
        ] {
            if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
                return Err(format!("{key}: must be positive"));
            }
        }
        Ok(())
    }
}
