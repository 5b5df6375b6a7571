//! The backends every worker shares: what each is (its [`BackendSpec`]),
//! its live state (connection counts, passive health, in atomics), and the
//! set as a whole, published in generations so that a reload, a new DNS
//! answer or an admin change reaches every worker without a lock on the
//! connection path.
//!
//! A [`Backends`] is an immutable snapshot. [`Live`] holds the current one
//! and a generation number; a worker's balancer compares the generation
//! (one relaxed load) before each pick and takes the new snapshot when it
//! changed. Backends keep their index across generations: a new snapshot
//! keeps every old entry where it was (a backend gone from the
//! configuration stays, marked removed, so that pairs still open to it
//! finish on their own) and appends the new ones. A pair's backend index is
//! therefore valid in every later snapshot. Backends are matched across
//! generations by name, never by position ([`Backends::next`]).
//!
//! Passive health: `--fall` connect failures in a row mark a backend down
//! for `--fail-timeout`, after which it is tried again (one success brings
//! it back).

use crate::config::Balance;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Release;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Passive health settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// What it is called in logs, metrics and admin commands, and how it
    /// is matched across a reload: the `name` key, else its address as
    /// written.
    pub name: String,
    pub addr: SocketAddr,
    /// Its share of the clients, relative to the others' (1..=1000).
    pub weight: u32,
    /// Used only while no primary (non-backup) backend is up.
    pub backup: bool,
    /// For a backend given by name, the `HOST:PORT` its address was
    /// looked up from (and is looked up from again, see
    /// [`crate::resolver`]); `None` for an address.
    pub host: Option<String>,
}

impl BackendSpec {
    /// A primary backend of weight 1, as `-b` gives, named by its address.
    pub fn plain(addr: SocketAddr) -> BackendSpec {
        BackendSpec {
            name: addr.to_string(),
            addr,
            weight: 1,
            backup: false,
            host: None,
        }
    }
}

/// One backend's live state, shared by every worker and kept across
/// generations.
#[derive(Debug, Default)]
pub struct State {
    /// Pairs sent to it and not closed, connecting ones included, over
    /// all workers.
    pub(crate) active: AtomicU32,
    /// Connect failures since its last success.
    fails: AtomicU32,
    /// Down until this time (ms on the shared clock, plus one; 0: up).
    pub(crate) down_until: AtomicU64,
}

/// A backend in a snapshot: its spec, its shared state, and whether the
/// configuration still has it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: BackendSpec,
    pub state: Arc<State>,
    /// Gone from the configuration: it takes no new client; pairs open
    /// to it finish.
    pub removed: bool,
}

/// One generation of the backend set, and the settings that go with it.
#[derive(Debug, Clone)]
pub struct Backends {
    entries: Vec<Entry>,
    health: Health,
    method: Balance,
    /// The clock the `down_until` times count from, the same in every
    /// generation.
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
    pub fn new(specs: Vec<BackendSpec>, health: Health, method: Balance) -> Backends {
        assert!(!specs.is_empty(), "no backend");
        Backends {
            entries: specs.into_iter().map(fresh).collect(),
            health,
            method,
            epoch: Instant::now(),
        }
    }

    /// The next generation: `specs` with `health` and `method`. A backend
    /// whose name is already here keeps its index and its state (counts,
    /// health); one no longer in `specs` stays, removed; a new one is
    /// appended. A removed backend that comes back is matched again.
    pub fn next(&self, specs: Vec<BackendSpec>, health: Health, method: Balance) -> Backends {
        let mut entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|e| Entry {
                removed: true,
                ..e.clone()
            })
            .collect();
        for spec in specs {
            match entries.iter_mut().find(|e| e.spec.name == spec.name) {
                Some(e) => {
                    e.spec = spec;
                    e.removed = false;
                }
                None => entries.push(fresh(spec)),
            }
        }
        Backends {
            entries,
            health,
            method,
            epoch: self.epoch,
        }
    }

    /// The next generation with backend `name` (not removed) at `addr`
    /// instead: a new DNS answer. Everything else stays as it is, so a
    /// reload published in between is kept.
    pub fn readdressed(&self, name: &str, addr: SocketAddr) -> Backends {
        let mut next = self.clone();
        for e in &mut next.entries {
            if e.spec.name == name && !e.removed {
                e.spec.addr = addr;
            }
        }
        next
    }

    /// Backends in this snapshot, removed ones included: indices run
    /// `0..len()`.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every backend, by index.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Backend `i`.
    pub fn entry(&self, i: u32) -> &Entry {
        &self.entries[i as usize]
    }

    /// The address of backend `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.entries[i as usize].spec.addr
    }

    /// The name of backend `i`.
    pub fn name(&self, i: u32) -> &str {
        &self.entries[i as usize].spec.name
    }

    /// Pairs open to backend `i` over all workers.
    pub fn active(&self, i: u32) -> u32 {
        self.entries[i as usize].state.active.load(Relaxed)
    }

    /// How clients are spread over these backends.
    pub fn method(&self) -> Balance {
        self.method
    }

    /// The passive health settings.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Milliseconds on the clock shared by every generation.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether backend `i` takes new clients now: configured, and up or
    /// down for longer than the fail timeout (then it is tried again).
    pub fn is_up(&self, i: u32) -> bool {
        self.takes_clients(i as usize, self.now_ms())
    }

    /// Whether backend `i` is eligible for a new client at `now` (ms on
    /// the shared clock): every rule that takes a backend out of the
    /// balancing meets here.
    pub(crate) fn takes_clients(&self, i: usize, now: u64) -> bool {
        self.is_up_at(i, now)
    }

    /// Backend `i`'s weight for the balancing at `now`.
    pub(crate) fn weight_at(&self, i: usize, _now: u64) -> u32 {
        self.entries[i].spec.weight
    }

    /// Passive health and the configuration alone: not removed, and not
    /// marked down by failures (or down past the fail timeout).
    fn is_up_at(&self, i: usize, now: u64) -> bool {
        let e = &self.entries[i];
        let until = e.state.down_until.load(Relaxed);
        !e.removed && (until == 0 || now + 1 >= until)
    }

    /// A connect to backend `i` completed: it is up. True if it had been
    /// marked down (to be logged).
    pub fn succeeded(&self, i: u32) -> bool {
        let s = &self.entries[i as usize].state;
        // Read first: every connect to a healthy backend lands here, and a
        // write would pull the line from the other workers' caches.
        if s.fails.load(Relaxed) != 0 {
            s.fails.store(0, Relaxed);
        }
        s.down_until.load(Relaxed) != 0 && s.down_until.swap(0, Relaxed) != 0
    }

    /// A connect to backend `i` failed.
    pub fn failed(&self, i: u32) -> Marked {
        let s = &self.entries[i as usize].state;
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

fn fresh(spec: BackendSpec) -> Entry {
    Entry {
        spec,
        state: Arc::default(),
        removed: false,
    }
}

/// The current generation of the backends, shared by the workers and by
/// whatever changes them (reload, the resolver, the admin socket).
#[derive(Debug)]
pub struct Live {
    current: Mutex<Arc<Backends>>,
    generation: AtomicU64,
}

impl Live {
    pub fn new(first: Backends) -> Arc<Live> {
        Arc::new(Live {
            current: Mutex::new(Arc::new(first)),
            generation: AtomicU64::new(0),
        })
    }

    /// The current generation's number.
    pub fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Backends> {
        Arc::clone(&self.lock())
    }

    /// Publishes the snapshot `change` makes from the current one, and
    /// returns it. Changes are serialised: two publishers never both
    /// start from the same snapshot.
    pub fn publish(&self, change: impl FnOnce(&Backends) -> Backends) -> Arc<Backends> {
        let mut current = self.lock();
        let next = Arc::new(change(&current));
        *current = Arc::clone(&next);
        self.generation.fetch_add(1, Release);
        next
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Backends>> {
        // A publisher that panicked left a whole snapshot behind (the
        // store is one assignment), so a poisoned lock is still sound.
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
