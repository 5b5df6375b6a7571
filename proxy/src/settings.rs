//! The settings a worker applies to new work and that a reload may
//! change in place — access lists, timeouts, connect retries, the
//! connection log, the PROXY header — published in generations, as the
//! backend set is ([`crate::backends::Live`]).
//!
//! A worker keeps the generation it applied and compares it with
//! [`Published::changed`] (one relaxed load) once a loop turn, after its
//! wait; only when it changed does it take the lock and the new
//! [`Settings`]. A reload also wakes every worker, so that a sleeping one
//! applies a new timeout at once rather than at its next event.

use crate::acl::Acl;
use crate::config::Config;
use crate::proxy_protocol::Version;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a reload may change for every worker at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub acl: Acl,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub reset_flush_timeout: Duration,
    /// At shutdown, and for pairs to a backend a reload removed.
    pub drain_timeout: Duration,
    pub busy_poll: Option<Duration>,
    pub connect_retries: u32,
    pub log_connections: bool,
    pub proxy_protocol: Option<Version>,
    /// How often backend host names are looked up again (zero: never).
    pub resolve_interval: Duration,
    /// Clients a worker holds waiting for a backend with room (`None`: as
    /// many as its table), and for how long.
    pub queue: Option<usize>,
    pub queue_timeout: Duration,
    /// Whether some backend has a connection limit, so that clients may
    /// queue (the worker then keeps its clock).
    pub queueing: bool,
}

impl Settings {
    /// The settings of `cfg`.
    pub fn of(cfg: &Config) -> Settings {
        Settings {
            acl: cfg.acl.clone(),
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            reset_flush_timeout: cfg.reset_flush_timeout,
            drain_timeout: cfg.drain_timeout,
            busy_poll: cfg.busy_poll,
            connect_retries: cfg.connect_retries,
            log_connections: cfg.log_connections,
            proxy_protocol: cfg.proxy_protocol,
            resolve_interval: cfg.resolve_interval,
            queue: cfg.queue,
            queue_timeout: cfg.queue_timeout,
            queueing: cfg.backends.iter().any(|b| b.limits.max_connections > 0),
        }
    }

    /// The table's options under these settings, for a table of
    /// `capacity` pairs.
    pub fn table_options(&self, capacity: usize) -> crate::table::Options {
        crate::table::Options {
            log_connections: self.log_connections,
            proxy_protocol: self.proxy_protocol,
            reset_flush_ms: crate::timers::millis(self.reset_flush_timeout),
            connect_retries: self.connect_retries,
            // Queued clients hold a slot: at most the whole table waits.
            queue: self.queue.map_or(capacity, |q| q.min(capacity)),
            queue_timeout_ms: crate::timers::millis(self.queue_timeout),
        }
    }

    /// The keys whose values differ from `other`'s, in the config file's
    /// words, for the reload's log line.
    pub fn changed_keys(&self, other: &Settings) -> Vec<&'static str> {
        let keys = [
            ("allow", self.acl.allow != other.acl.allow),
            ("deny", self.acl.deny != other.acl.deny),
            (
                "connect-timeout",
                self.connect_timeout != other.connect_timeout,
            ),
            ("idle-timeout", self.idle_timeout != other.idle_timeout),
            (
                "reset-flush-timeout",
                self.reset_flush_timeout != other.reset_flush_timeout,
            ),
            ("drain-timeout", self.drain_timeout != other.drain_timeout),
            ("busy-poll", self.busy_poll != other.busy_poll),
            (
                "connect-retries",
                self.connect_retries != other.connect_retries,
            ),
            (
                "log-connections",
                self.log_connections != other.log_connections,
            ),
            (
                "proxy-protocol",
                self.proxy_protocol != other.proxy_protocol,
            ),
            (
                "resolve-interval",
                self.resolve_interval != other.resolve_interval,
            ),
            ("queue", self.queue != other.queue),
            ("queue-timeout", self.queue_timeout != other.queue_timeout),
        ];
        keys.iter().filter(|k| k.1).map(|k| k.0).collect()
    }
}

/// The current generation of a value the workers share, and its number.
#[derive(Debug)]
pub struct Published<T> {
    current: Mutex<Arc<T>>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    pub fn new(first: T) -> Arc<Published<T>> {
        Arc::new(Published {
            current: Mutex::new(Arc::new(first)),
            generation: AtomicU64::new(0),
        })
    }

    /// The current generation's number.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a generation other than `seen` was published: one relaxed
    /// load, for the loop's every turn (the value itself is then read
    /// under the lock, which orders it).
    #[inline]
    pub fn changed(&self, seen: u64) -> bool {
        self.generation.load(Ordering::Relaxed) != seen
    }

    /// The current value, with its generation.
    pub fn snapshot(&self) -> (Arc<T>, u64) {
        let current = self.lock();
        (
            Arc::clone(&current),
            self.generation.load(Ordering::Acquire),
        )
    }

    /// Publishes `next` as the new generation.
    pub fn publish(&self, next: T) {
        let mut current = self.lock();
        *current = Arc::new(next);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Arc<T>> {
        // The store is one assignment: a publisher that panicked left a
        // whole value behind, so a poisoned lock is still sound.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_value_is_seen_with_its_generation() {
        let p = Published::new(1);
        let (v, seen) = p.snapshot();
        assert_eq!((*v, p.changed(seen)), (1, false));
        p.publish(2);
        assert!(p.changed(seen));
        let (v, now) = p.snapshot();
        assert_eq!((*v, now, p.changed(now)), (2, seen + 1, false));
    }
}
