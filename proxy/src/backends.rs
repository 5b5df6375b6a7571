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
//!
//! Limits ([`Limits`]): a backend that comes back up ([`Backends::came_up`])
//! ramps its weight up over its `slow-start` time, and one with
//! `max-connections` takes no new client while it has that many.

use crate::config::Balance;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Release;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use std::sync::atomic::{Ordering::Acquire, Ordering::Relaxed};
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
    /// Its active health check, if it has one.
    pub check: Option<crate::health::CheckSpec>,
    /// Its slow start and connection limit.
    pub limits: Limits,
    /// For a backend given by name, the `HOST:PORT` its address was
    /// looked up from (and is looked up from again, see
    /// [`crate::resolver`]); `None` for an address.
    pub host: Option<String>,
}

/// A backend's slow start and connection limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// After it comes back up, its weight grows linearly from almost
    /// nothing to the full weight over this long (zero: at once).
    pub slow_start: Duration,
    /// Pairs it may have open at once over all workers, connecting ones
    /// included (0: no limit).
    pub max_connections: u32,
}

/// What becomes of a new client when no backend is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AllDown {
    /// It is sent to the backend down longest: one that came back early
    /// serves it.
    #[default]
    LeastRecentlyFailed,
    /// It is reset at once.
    Reject,
}

/// Weights are kept this many times larger inside, so that slow start can
/// ramp even a weight of 1 in steps (1/100 of it at the least); every
/// method compares weights only with each other, so the scale changes no
/// pick.
pub const WEIGHT_SCALE: u32 = 100;

impl BackendSpec {
    /// A primary backend of weight 1, as `-b` gives, named by its address.
    pub fn plain(addr: SocketAddr) -> BackendSpec {
        BackendSpec {
            name: addr.to_string(),
            addr,
            weight: 1,
            backup: false,
            check: None,
            limits: Limits::default(),
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
    /// Pairs ever sent to it, each connect try counted, over all workers.
    pub(crate) connections: AtomicU64,
    /// The operator's [`Admin`] state, as its number (0: ready).
    pub(crate) admin: AtomicU8,
    /// Failed connects by [`ConnectError`] kind, indexed by its number.
    pub(crate) connect_errors: [AtomicU64; ConnectError::ALL.len()],
    /// Down by its active health check: no new clients until it passes
    /// `rise` checks in a row. Written by the one worker that checks.
    pub(crate) check_down: AtomicBool,
    /// Health checks done, and how many of them failed.
    pub(crate) checks: AtomicU64,
    pub(crate) check_failures: AtomicU64,
    /// The last check's result: 0 none yet, 1 passed, 2 failed.
    pub(crate) last_check_result: AtomicU8,
    /// The last check's latency (connect to verdict), in µs.
    pub(crate) last_check_us: AtomicU64,
    /// Equal check results in a row (passes if the last passed).
    pub(crate) check_run: AtomicU32,
    /// When it last came back up (ms on the shared clock, plus one; 0:
    /// never down since the start), for slow start.
    up_since: AtomicU64,
}

impl State {
    /// Its passive health starts afresh: the connect failures counted
    /// were another address's (a reload or a DNS answer moved it).
    fn forget_failures(&self) {
        self.fails.store(0, Relaxed);
        self.down_until.store(0, Relaxed);
    }
}

#[path = "backends_runtime.rs"]
mod runtime;
pub use runtime::{Admin, Check, CheckStatus, ConnectError};

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
    /// What new clients get while no backend is up, and whether that has
    /// been logged in this all-down period (shared by every generation).
    all_down: AllDown,
    all_down_logged: Arc<AtomicBool>,
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
            all_down: AllDown::default(),
            all_down_logged: Arc::default(),
        }
    }

    /// These backends with `policy` for when none is up (kept by
    /// [`Backends::next`]).
    pub fn with_all_down(self, policy: AllDown) -> Backends {
        Backends {
            all_down: policy,
            ..self
        }
    }

    /// What new clients get while no backend is up.
    pub fn all_down(&self) -> AllDown {
        self.all_down
    }

    /// A client was rejected because no backend is up: true the first
    /// time since a backend last took a client (to be logged once).
    pub(crate) fn note_all_down(&self) -> bool {
        !self.all_down_logged.swap(true, Relaxed)
    }

    /// A backend took a client: the next all-down period is logged again.
    pub(crate) fn note_not_all_down(&self) {
        // Read first: this runs for every client.
        if self.all_down_logged.load(Relaxed) {
            self.all_down_logged.store(false, Relaxed);
        }
    }

    /// The next generation: `specs` with `health` and `method`. A backend
    /// whose name is already here keeps its index and its state (counts,
    /// health; at a new address, not its connect failures); one no longer in `specs` stays, removed; a new one is
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
                    if e.spec.addr != spec.addr {
                        e.state.forget_failures();
                    }
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
            all_down: self.all_down,
            all_down_logged: Arc::clone(&self.all_down_logged),
        }
    }

    /// The next generation with backend `name` (not removed) at `addr`
    /// instead: a new DNS answer, which forgets the old address's connect
    /// failures. Everything else stays as it is, so a reload published in
    /// between is kept.
    pub fn readdressed(&self, name: &str, addr: SocketAddr) -> Backends {
        let mut next = self.clone();
        for e in &mut next.entries {
            if e.spec.name == name && !e.removed && e.spec.addr != addr {
                e.state.forget_failures();
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

    /// Whether backend `i` is up now: configured, and up or down for
    /// longer than the fail timeout (then it is tried again). One at its
    /// connection limit is up, though it takes no new client until it
    /// has room.
    pub fn is_up(&self, i: u32) -> bool {
        self.is_up_at(i as usize, self.now_ms())
    }

    /// Whether backend `i` is eligible for a new client at `now` (ms on
    /// the shared clock): every rule that takes a backend out of the
    /// balancing meets here.
    pub(crate) fn takes_clients(&self, i: usize, now: u64) -> bool {
        self.is_up_at(i, now) && self.in_service(i) && self.has_room(i)
    }

    /// Backend `i`'s weight for the balancing at `now`, times
    /// [`WEIGHT_SCALE`]. With a slow start, a backend that came back up
    /// less than that long ago has a share of its weight that grows
    /// linearly with the time since (rounded up, never below 1 on the
    /// scale: HAProxy's `slowstart`), and one that is down but being
    /// tried again has the least weight, so that it is not flooded before
    /// it has shown it is back.
    pub(crate) fn weight_at(&self, i: usize, now: u64) -> u32 {
        let e = &self.entries[i];
        let full = e.spec.weight.saturating_mul(WEIGHT_SCALE);
        let window = e.spec.limits.slow_start.as_millis() as u64;
        if window == 0 {
            return full;
        }
        if e.state.down_until.load(Relaxed) != 0 {
            return 1;
        }
        let since = e.state.up_since.load(Relaxed);
        let elapsed = (now + 1).saturating_sub(since);
        if since == 0 || elapsed >= window {
            return full;
        }
        let ramped = (u64::from(full) * elapsed).div_ceil(window);
        (ramped as u32).max(1)
    }

    /// Whether backend `i` is under its connection limit (counted over
    /// every worker).
    pub(crate) fn has_room(&self, i: usize) -> bool {
        let e = &self.entries[i];
        let max = e.spec.limits.max_connections;
        max == 0 || e.state.active.load(Relaxed) < max
    }

    /// Counts a new pair against backend `i`, unless another worker took
    /// its last free connection first (false).
    pub(crate) fn reserve(&self, i: usize) -> bool {
        let e = &self.entries[i];
        let max = e.spec.limits.max_connections;
        let taken = if max == 0 {
            e.state.active.fetch_add(1, Relaxed);
            true
        } else {
            let room = |a: u32| (a < max).then_some(a + 1);
            e.state.active.fetch_update(Relaxed, Relaxed, room).is_ok()
        };
        if taken {
            e.state.connections.fetch_add(1, Relaxed);
        }
        taken
    }

    /// Backend `i` came back up (a connect succeeded after it was marked
    /// down, or a health check says so): its slow start begins now.
    pub fn came_up(&self, i: u32) {
        self.came_up_at(i, self.now_ms());
    }

    /// [`Backends::came_up`] at `now` (ms on the shared clock).
    pub(crate) fn came_up_at(&self, i: u32, now: u64) {
        let s = &self.entries[i as usize].state;
        s.up_since.store(now + 1, Relaxed);
    }

    /// Health and the configuration: not removed, and healthy.
    pub(crate) fn is_up_at(&self, i: usize, now: u64) -> bool {
        !self.entries[i].removed && self.healthy_at(i, now)
    }

    /// Health alone: not marked down by failures (or down past the fail
    /// timeout), and not down by its active check.
    pub(crate) fn healthy_at(&self, i: usize, now: u64) -> bool {
        let until = self.entries[i].state.down_until.load(Relaxed);
        (until == 0 || now + 1 >= until) && !self.is_check_down(i)
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
        let was_down = s.down_until.load(Relaxed) != 0 && s.down_until.swap(0, Relaxed) != 0;
        if was_down {
            self.came_up(i);
        }
        was_down
    }

    /// Backend `i`'s failures in a row.
    pub fn fails(&self, i: u32) -> u32 {
        self.entries[i as usize].state.fails.load(Relaxed)
    }

    /// Puts back backend `i`'s failures in a row to at least `prior`: a
    /// connect that seemed to succeed (and cleared them) turned out to
    /// fail after all.
    pub fn restore_fails(&self, i: u32, prior: u32) {
        if prior != 0 {
            self.entries[i as usize]
                .state
                .fails
                .fetch_max(prior, Relaxed);
        }
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
