//! Choosing a backend for a new client — round-robin, least connections,
//! or a hash of the client's address — among the backends that are up,
//! and passive health: `--fall` connect failures in a row mark a backend
//! down for `--fail-timeout`, after which it is tried again (one success
//! brings it back). The health and the connection counts live in
//! [`Backends`], shared by every worker (atomics), so that N workers see
//! one state; each worker's [`Balancer`] keeps only its own turn.
//!
//! When every backend is down, new clients still go to the one that has
//! been down longest (the least recently failed): a backend that came back
//! early serves them, where refusing them at once would lose them all.

use crate::config::Balance;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Passive health settings.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// Connect failures in a row that mark a backend down (0: never).
    pub fall: u32,
    /// How long a backend stays down before it is tried again.
    pub fail_timeout: Duration,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            fall: 3,
            fail_timeout: Duration::from_secs(10),
        }
    }
}

/// One backend's shared state.
#[derive(Debug, Default)]
struct State {
    /// Pairs sent to it and not closed, connecting ones included, over
    /// all workers.
    active: AtomicU32,
    /// Connect failures since its last success.
    fails: AtomicU32,
    /// Down until this time (ms on the shared clock, plus one; 0: up).
    down_until: AtomicU64,
}

/// The backends, their addresses and shared state.
#[derive(Debug)]
pub struct Backends {
    addrs: Vec<SocketAddr>,
    states: Vec<State>,
    health: Health,
    epoch: Instant,
}

/// What a failure did to its backend, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marked {
    /// Still up (fewer than `fall` failures in a row), or already down.
    Nothing,
    /// This failure marked it down.
    Down { fails: u32 },
}

impl Backends {
    /// # Panics
    /// If `addrs` is empty (the configuration refuses that first).
    pub fn new(addrs: Vec<SocketAddr>, health: Health) -> Arc<Backends> {
        assert!(!addrs.is_empty(), "no backend");
        Arc::new(Backends {
            states: addrs.iter().map(|_| State::default()).collect(),
            addrs,
            health,
            epoch: Instant::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.addrs[i as usize]
    }

    /// Pairs open to backend `i` over all workers.
    pub fn active(&self, i: u32) -> u32 {
        self.states[i as usize].active.load(Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether backend `i` takes new clients now: up, or down for longer
    /// than the fail timeout (then it is tried again).
    pub fn is_up(&self, i: u32) -> bool {
        let until = self.states[i as usize].down_until.load(Relaxed);
        until == 0 || self.now_ms() + 1 >= until
    }

    /// A connect to backend `i` completed: it is up.
    pub fn succeeded(&self, i: u32) -> bool {
        let s = &self.states[i as usize];
        s.fails.store(0, Relaxed);
        s.down_until.swap(0, Relaxed) != 0
    }

    /// A connect to backend `i` failed.
    pub fn failed(&self, i: u32) -> Marked {
        let s = &self.states[i as usize];
        let fails = s.fails.fetch_add(1, Relaxed).saturating_add(1);
        if self.health.fall == 0 || fails < self.health.fall {
            return Marked::Nothing;
        }
        let until = self.now_ms() + self.health.fail_timeout.as_millis() as u64 + 1;
        let was = s.down_until.swap(until, Relaxed);
        // Logged once: when it goes down, not again while it stays down
        // and is retried.
        if was == 0 {
            Marked::Down { fails }
        } else {
            Marked::Nothing
        }
    }

    /// How long a backend marked down stays down.
    pub fn fail_timeout(&self) -> Duration {
        self.health.fail_timeout
    }
}

/// One worker's view: the shared backends and its own turn.
#[derive(Debug)]
pub struct Balancer {
    backends: Arc<Backends>,
    method: Balance,
    next: usize,
}

/// Backend indices as a set, for the ones a client has tried (backends
/// past the 64th are never excluded).
pub type Tried = u64;

fn tried(set: Tried, i: usize) -> bool {
    i < 64 && set & (1 << i) != 0
}

/// Adds backend `i` to `set`.
pub fn add(set: Tried, i: u32) -> Tried {
    if i < 64 {
        set | (1 << i)
    } else {
        set
    }
}

impl Balancer {
    pub fn new(backends: Arc<Backends>, method: Balance) -> Balancer {
        Balancer {
            backends,
            method,
            next: 0,
        }
    }

    /// A balancer over `addrs` alone, with default health (for tests).
    pub fn of(addrs: Vec<SocketAddr>, method: Balance) -> Balancer {
        Balancer::new(Backends::new(addrs, Health::default()), method)
    }

    /// The shared backends.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.backends.addr(i)
    }

    /// The backend for a client at `peer` that has not tried those in
    /// `tried`: one that is up, by the method; if none is up, the one
    /// down longest. `None` when every backend has been tried.
    pub fn pick(&mut self, peer: &SocketAddr, tried_set: Tried) -> Option<u32> {
        let n = self.backends.len();
        let start = match self.method {
            Balance::SourceHash => (fnv1a(&peer.ip()) % n as u64) as usize,
            _ => self.turn() % n,
        };
        let b = &*self.backends;
        let fresh = |i: usize| !tried(tried_set, i);
        let up = |i: usize| fresh(i) && b.is_up(i as u32);
        let order = (0..n).map(|k| (start + k) % n);
        let choice = match self.method {
            Balance::LeastConnections => order
                .filter(|&i| up(i))
                .min_by_key(|&i| b.states[i].active.load(Relaxed)),
            // Round-robin takes the next one up; source hash keeps a
            // client's backend while it is up, and moves on from it when
            // it is not.
            Balance::RoundRobin | Balance::SourceHash => order.clone().find(|&i| up(i)),
        };
        let choice = choice.or_else(|| {
            (0..n)
                .filter(|&i| fresh(i))
                .min_by_key(|&i| b.states[i].down_until.load(Relaxed))
        });
        choice.map(|i| i as u32)
    }

    fn turn(&mut self) -> usize {
        let t = self.next;
        self.next = self.next.wrapping_add(1);
        t
    }

    /// A pair was sent to backend `i` (its connect starts).
    pub fn opened(&mut self, i: u32) {
        self.backends.states[i as usize]
            .active
            .fetch_add(1, Relaxed);
    }

    /// A pair sent to backend `i` closed, or moved to another backend.
    pub fn closed(&mut self, i: u32) {
        self.backends.states[i as usize]
            .active
            .fetch_sub(1, Relaxed);
    }
}

/// FNV-1a over the address bytes.
fn fnv1a(ip: &IpAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    };
    match ip {
        IpAddr::V4(ip) => mix(&ip.octets()),
        IpAddr::V6(ip) => mix(&ip.octets()),
    }
    h
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
