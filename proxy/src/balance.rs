//! Choosing a backend for a new client — smooth weighted round-robin,
//! weighted least connections, or a hash of the client's address — among
//! the backends that are up, primaries before backups; and passive health:
//! `--fall` connect failures in a row mark a backend down for
//! `--fail-timeout`, after which it is tried again (one success brings it
//! back). The health and the connection counts live in
//! [`Backends`], shared by every worker (atomics), so that N workers see
//! one state; each worker's [`Balancer`] keeps only its own turn.
//!
//! When every backend is down, new clients still go to the one that has
//! been down longest (the least recently failed): a backend that came back
//! early serves them, where refusing them at once would lose them all.
//!
//! Backup backends take clients only while no primary is up; among
//! themselves they are balanced by the same method. Round-robin is
//! nginx's smooth weighted round-robin (weights 5, 1, 1 give a, a, b, a,
//! c, a, a), least connections picks the lowest active/weight and breaks
//! ties by the same smooth turn, and the source hash ignores weights.

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

/// One backend as configured: where it is, its share, and whether it
/// only stands in for the primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: SocketAddr,
    /// Its share of the clients, relative to the others' (1..=1000).
    pub weight: u32,
    /// Used only while no primary (non-backup) backend is up.
    pub backup: bool,
}

impl BackendSpec {
    /// A primary backend of weight 1, as `-b` gives.
    pub fn plain(addr: SocketAddr) -> BackendSpec {
        BackendSpec {
            addr,
            weight: 1,
            backup: false,
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
    specs: Vec<BackendSpec>,
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
    /// If `specs` is empty (the configuration refuses that first).
    pub fn new(specs: Vec<BackendSpec>, health: Health) -> Arc<Backends> {
        assert!(!specs.is_empty(), "no backend");
        Arc::new(Backends {
            states: specs.iter().map(|_| State::default()).collect(),
            specs,
            health,
            epoch: Instant::now(),
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.specs[i as usize].addr
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
        self.is_up_at(i as usize, self.now_ms())
    }

    /// [`Backends::is_up`] at `now` (ms on the shared clock).
    fn is_up_at(&self, i: usize, now: u64) -> bool {
        let until = self.states[i].down_until.load(Relaxed);
        until == 0 || now + 1 >= until
    }

    /// A connect to backend `i` completed: it is up.
    pub fn succeeded(&self, i: u32) -> bool {
        let s = &self.states[i as usize];
        // Read first: every connect to a healthy backend lands here, and a
        // write would pull the line from the other workers' caches.
        if s.fails.load(Relaxed) != 0 {
            s.fails.store(0, Relaxed);
        }
        s.down_until.load(Relaxed) != 0 && s.down_until.swap(0, Relaxed) != 0
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

/// One worker's view: the shared backends and its own smooth turn.
#[derive(Debug)]
pub struct Balancer {
    backends: Arc<Backends>,
    method: Balance,
    /// Smooth weighted round-robin's current value per backend: this
    /// worker's own, so each worker is smooth by itself.
    current: Vec<i64>,
    /// Least connections' snapshot of the active counts, kept to be
    /// reused.
    loads: Vec<u64>,
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
        let n = backends.len();
        Balancer {
            backends,
            method,
            current: vec![0; n],
            loads: vec![0; n],
        }
    }

    /// A balancer over `addrs` alone, primaries of weight 1 with default
    /// health (for tests).
    pub fn of(addrs: Vec<SocketAddr>, method: Balance) -> Balancer {
        let specs = addrs.into_iter().map(BackendSpec::plain).collect();
        Balancer::new(Backends::new(specs, Health::default()), method)
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
    /// `tried`: a primary that is up, by the method; else a backup that
    /// is up, by the method; if none is up, the one down longest, backup
    /// or not. `None` when every backend has been tried.
    pub fn pick(&mut self, peer: &SocketAddr, tried_set: Tried) -> Option<u32> {
        let Balancer {
            backends,
            method,
            current,
            loads,
        } = self;
        let b = &**backends;
        let now = b.now_ms();
        let fresh = |i: usize| !tried(tried_set, i);
        if *method == Balance::LeastConnections {
            for (i, load) in loads.iter_mut().enumerate() {
                *load = u64::from(b.states[i].active.load(Relaxed));
            }
        }
        for backup in [false, true] {
            let eligible = |i: usize| b.specs[i].backup == backup && fresh(i) && b.is_up_at(i, now);
            let choice = match *method {
                Balance::RoundRobin => smooth(current, &b.specs, eligible),
                Balance::LeastConnections => least(current, loads, &b.specs, eligible),
                Balance::SourceHash => hashed(peer, &b.specs, backup, eligible),
            };
            if let Some(i) = choice {
                return Some(i as u32);
            }
        }
        (0..b.len())
            .filter(|&i| fresh(i))
            .min_by_key(|&i| b.states[i].down_until.load(Relaxed))
            .map(|i| i as u32)
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

/// nginx's smooth weighted round-robin over the `eligible` backends: each
/// adds its weight to its current value, the highest (the first of equals)
/// is picked and gives back the total. Over a whole cycle each is picked
/// exactly its weight's times, spread out rather than in runs.
fn smooth(
    current: &mut [i64],
    specs: &[BackendSpec],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0;
    let mut best: Option<usize> = None;
    for (i, spec) in specs.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let w = i64::from(spec.weight);
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    if let Some(b) = best {
        current[b] -= total;
    }
    best
}

/// The `eligible` backend with the fewest active connections for its
/// weight (`loads`); among equals, the smooth weighted turn decides, so
/// that idle backends still share clients by weight.
fn least(
    current: &mut [i64],
    loads: &[u64],
    specs: &[BackendSpec],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let weight = |i: usize| u64::from(specs[i].weight.max(1));
    // `a` carries less than `b` for its weight: a/wa < b/wb.
    let lighter = |a: usize, b: usize| loads[a] * weight(b) < loads[b] * weight(a);
    let min =
        (0..specs.len())
            .filter(|&i| eligible(i))
            .reduce(|m, i| if lighter(i, m) { i } else { m })?;
    let tied = |i: usize| eligible(i) && !lighter(min, i);
    // Another worker may mark a backend down between the two passes.
    smooth(current, specs, tied).or(Some(min))
}

/// The client's own backend among the primaries (or the backups) by a
/// hash of its address, or the next `eligible` one after it; weights play
/// no part.
fn hashed(
    peer: &SocketAddr,
    specs: &[BackendSpec],
    backup: bool,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let tier = specs.iter().filter(|s| s.backup == backup).count();
    if tier == 0 {
        return None;
    }
    let start = (fnv1a(&peer.ip()) % tier as u64) as usize;
    let members = (0..specs.len()).filter(|&i| specs[i].backup == backup);
    members
        .clone()
        .skip(start)
        .chain(members.take(start))
        .find(|&i| eligible(i))
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
