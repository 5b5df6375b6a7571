//! Choosing a backend for a new client — smooth weighted round-robin,
//! weighted least connections, or a hash of the client's address — among
//! the backends that are up, primaries before backups. The health and the
//! connection counts live in [`Backends`] (see [`crate::backends`]),
//! shared by every worker (atomics), so that N workers see one state; each
//! worker's [`Balancer`] keeps only its own turn and its snapshot of the
//! set, renewed when a new generation is published.
//!
//! When every backend is down, new clients still go to the one that has
//! been down longest (the least recently failed): a backend that came back
//! early serves them, where refusing them at once would lose them all.
//! With `--all-down reject` they are reset at once instead.
//!
//! A backend at its `max-connections` is passed over; when every backend
//! up is at its limit the client is to wait ([`Choice::Full`]). The
//! count is reserved with the pick ([`Balancer::choose`]), so that workers
//! picking at once never take a backend past its limit.
//!
//! Backup backends take clients only while no primary is up; among
//! themselves they are balanced by the same method. Round-robin is
//! nginx's smooth weighted round-robin (weights 5, 1, 1 give a, a, b, a,
//! c, a, a), least connections picks the lowest active/weight and breaks
//! ties by the same smooth turn, and the source hash ignores weights.

use crate::backends::{AllDown, BackendSpec, Backends, Health, Live};
use crate::config::Balance;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// One worker's view: the shared backends and its own smooth turn.
#[derive(Debug)]
pub struct Balancer {
    live: Arc<Live>,
    /// The snapshot picks are made from, and its generation.
    backends: Arc<Backends>,
    generation: u64,
    /// Smooth weighted round-robin's current value per backend: this
    /// worker's own, so each worker is smooth by itself.
    current: Vec<i64>,
    /// Least connections' snapshot of the active counts, kept to be
    /// reused.
    loads: Vec<u64>,
}

/// What [`Balancer::choose`] found for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// This backend, its count already taken.
    Backend(u32),
    /// Every backend up (or, with none up, every one that could be tried)
    /// is at its connection limit: the client waits for a free one.
    Full,
    /// No backend is up and `--all-down reject` says to reset the client.
    AllDown,
    /// Every backend has been tried.
    Tried,
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
    pub fn new(live: Arc<Live>) -> Balancer {
        let generation = live.generation();
        let backends = live.snapshot();
        let n = backends.len();
        Balancer {
            live,
            backends,
            generation,
            current: vec![0; n],
            loads: vec![0; n],
        }
    }

    /// A balancer over `addrs` alone, primaries of weight 1 with default
    /// health (for tests).
    pub fn of(addrs: Vec<SocketAddr>, method: Balance) -> Balancer {
        let specs = addrs.into_iter().map(BackendSpec::plain).collect();
        Balancer::new(Live::new(Backends::new(specs, Health::default(), method)))
    }

    /// The shared backends, as of the last pick.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.backends.addr(i)
    }

    /// Takes the current snapshot if a new one was published. Indices
    /// stay valid (backends are only ever appended), and the smooth turn
    /// of the backends already known is kept.
    pub fn refresh(&mut self) {
        let generation = self.live.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.backends = self.live.snapshot();
        let n = self.backends.len();
        self.current.resize(n, 0);
        self.loads.resize(n, 0);
    }

    /// The backend for a client at `peer` that has not tried those in
    /// `tried` (see [`Balancer::choice`]), without counting it (for
    /// tests: the proxy picks with [`Balancer::choose`]).
    #[cfg(test)]
    pub fn pick(&mut self, peer: &SocketAddr, tried_set: Tried) -> Option<u32> {
        match self.choice(peer, tried_set) {
            Choice::Backend(i) => Some(i),
            _ => None,
        }
    }

    /// Picks as [`Balancer::choice`] does, and counts the client against the
    /// backend picked (release it with [`Balancer::closed`]). A backend
    /// another worker filled meanwhile is passed over.
    pub fn choose(&mut self, peer: &SocketAddr, tried_set: Tried) -> Choice {
        let mut skip = tried_set;
        let mut lost = false;
        loop {
            match self.choice(peer, skip) {
                Choice::Backend(i) if self.backends.reserve(i as usize) => {
                    self.backends.note_not_all_down();
                    return Choice::Backend(i);
                }
                Choice::Backend(i) if i < 64 => {
                    lost = true;
                    skip = add(skip, i);
                }
                // Past the 64th a backend cannot be skipped: give up on it.
                Choice::Backend(_) => return Choice::Full,
                _ if lost => return Choice::Full,
                other => return other,
            }
        }
    }

    /// The backend for a client at `peer` that has not tried those in
    /// `tried`: a primary that is up, by the method; else a backup that
    /// is up, by the method; if none is up, the one down longest, backup
    /// or not (or none, with `--all-down reject`). A tier whose backends
    /// up are all at their limit is full: the client waits rather than go
    /// to a backup or a backend down.
    fn choice(&mut self, peer: &SocketAddr, tried_set: Tried) -> Choice {
        self.refresh();
        let Balancer {
            backends,
            current,
            loads,
            ..
        } = self;
        let b = &**backends;
        let entries = b.entries();
        let now = b.now_ms();
        let fresh = |i: usize| !tried(tried_set, i);
        let method = b.method();
        if method == Balance::LeastConnections {
            for (load, e) in loads.iter_mut().zip(entries) {
                *load = u64::from(e.state.active.load(Relaxed));
            }
        }
        let weight = |i: usize| b.weight_at(i, now);
        for backup in [false, true] {
            let tier = |i: usize| entries[i].spec.backup == backup;
            let eligible = |i: usize| tier(i) && fresh(i) && b.takes_clients(i, now);
            let choice = match method {
                Balance::RoundRobin => smooth(current, weight, eligible),
                Balance::LeastConnections => least(current, loads, weight, eligible),
                Balance::SourceHash => hashed(peer, entries.len(), tier, eligible),
            };
            if let Some(i) = choice {
                return Choice::Backend(i as u32);
            }
            // Up and in service but at its limit: the client waits for it.
            let full = |i: usize| b.is_up_at(i, now) && b.in_service(i);
            if (0..b.len()).any(|i| tier(i) && fresh(i) && full(i)) {
                return Choice::Full;
            }
        }
        let candidates = || (0..b.len()).filter(|&i| fresh(i) && b.in_service(i));
        if candidates().next().is_none() {
            return Choice::Tried;
        }
        if b.all_down() == AllDown::Reject {
            return Choice::AllDown;
        }
        candidates()
            .filter(|&i| b.has_room(i))
            .min_by_key(|&i| entries[i].state.down_until.load(Relaxed))
            .map_or(Choice::Full, |i| Choice::Backend(i as u32))
    }

    /// A pair was sent to backend `i` without [`Balancer::choose`] (for
    /// tests).
    #[cfg(test)]
    pub fn opened(&mut self, i: u32) {
        let s = &self.backends.entry(i).state;
        s.active.fetch_add(1, Relaxed);
        s.connections.fetch_add(1, Relaxed);
    }

    /// A pair counted against backend `i` closed, or moved to another
    /// backend.
    pub fn closed(&mut self, i: u32) {
        self.backends.entry(i).state.active.fetch_sub(1, Relaxed);
    }
}

/// nginx's smooth weighted round-robin over the `eligible` backends: each
/// adds its weight to its current value, the highest (the first of equals)
/// is picked and gives back the total. Over a whole cycle each is picked
/// exactly its weight's times, spread out rather than in runs.
fn smooth(
    current: &mut [i64],
    weight: impl Fn(usize) -> u32,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0;
    let mut best: Option<usize> = None;
    for i in 0..current.len() {
        if !eligible(i) {
            continue;
        }
        let w = i64::from(weight(i));
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
    weight: impl Fn(usize) -> u32 + Copy,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let w = |i: usize| u64::from(weight(i).max(1));
    // `a` carries less than `b` for its weight: a/wa < b/wb.
    let lighter = |a: usize, b: usize| loads[a] * w(b) < loads[b] * w(a);
    let min =
        (0..loads.len())
            .filter(|&i| eligible(i))
            .reduce(|m, i| if lighter(i, m) { i } else { m })?;
    let tied = |i: usize| eligible(i) && !lighter(min, i);
    // Another worker may mark a backend down between the two passes.
    smooth(current, weight, tied).or(Some(min))
}

/// The client's own backend among the primaries (or the backups) by a
/// hash of its address, or the next `eligible` one after it; weights play
/// no part.
fn hashed(
    peer: &SocketAddr,
    n: usize,
    tier: impl Fn(usize) -> bool + Copy,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let size = (0..n).filter(|&i| tier(i)).count();
    if size == 0 {
        return None;
    }
    let start = (fnv1a(&peer.ip()) % size as u64) as usize;
    let members = (0..n).filter(move |&i| tier(i));
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
