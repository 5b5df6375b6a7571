//! What an operator sets and reads about each backend while the proxy
//! runs: its admin state (ready, drain, maint), its weight, and the
//! figures the admin interface and the per-backend metrics show —
//! connections sent, failed connects by kind, the last
//! health check. All of it lives in the backend's shared [`State`]
//! atomics, so every worker sees one value and it outlives generations.
//!
//! Admin states follow HAProxy's: `ready` takes clients as usual; `drain`
//! takes no new client while its established ones go on (HAProxy still
//! sends it persistent clients; this proxy has no persistence) and health
//! checks go on; `maint` takes no new client either, its established ones
//! also go on, and active health checks stop (see [`Backends::admin`]). No
//! admin state makes a backend take clients that its health refuses.

use super::{Backends, State};
use netio::Fault;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A backend's admin state, set through the admin socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// Takes new clients (when healthy).
    Ready = 0,
    /// No new clients; established ones go on; health checks go on.
    Drain = 1,
    /// No new clients; established ones go on; active checks stop.
    Maint = 2,
}

impl Admin {
    /// Every state, in the order of their numbers.
    pub const ALL: [Admin; 3] = [Admin::Ready, Admin::Drain, Admin::Maint];

    /// The word for it in the admin protocol, listings and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Admin::Ready => "ready",
            Admin::Drain => "drain",
            Admin::Maint => "maint",
        }
    }

    /// The state `word` names, if any.
    pub fn parse(word: &str) -> Option<Admin> {
        Admin::ALL.into_iter().find(|a| a.name() == word)
    }

    fn of(n: u8) -> Admin {
        Admin::ALL
            .get(usize::from(n))
            .copied()
            .unwrap_or(Admin::Ready)
    }
}

/// Why a backend connect failed, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// Nobody listens there (`ECONNREFUSED`).
    Refused = 0,
    /// `--connect-timeout` passed, or the kernel gave up (`ETIMEDOUT`).
    Timeout = 1,
    /// Reset before any byte reached it.
    Reset = 2,
    /// The network on the way failed: unreachable host or network, down.
    Unreachable = 3,
    /// Anything else (a firewall's refusal, no local port left, …).
    Other = 4,
}

impl ConnectError {
    /// Every kind, in the order of their numbers.
    pub const ALL: [ConnectError; 5] = [
        ConnectError::Refused,
        ConnectError::Timeout,
        ConnectError::Reset,
        ConnectError::Unreachable,
        ConnectError::Other,
    ];

    /// The kind of a connect that failed with `fault`.
    pub fn of(fault: Fault) -> ConnectError {
        match fault {
            Fault::Refused => ConnectError::Refused,
            Fault::TimedOut => ConnectError::Timeout,
            Fault::Reset => ConnectError::Reset,
            Fault::Network => ConnectError::Unreachable,
            _ => ConnectError::Other,
        }
    }

    /// Its `kind` label.
    pub fn label(self) -> &'static str {
        match self {
            ConnectError::Refused => "refused",
            ConnectError::Timeout => "timeout",
            ConnectError::Reset => "reset",
            ConnectError::Unreachable => "unreachable",
            ConnectError::Other => "other",
        }
    }
}

/// The last health check of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Whether it passed.
    pub ok: bool,
    /// How long it took (to its answer, or until it failed).
    pub took: Duration,
}

/// What the health checks of one backend have found, for metrics and the
/// admin interface ([`Backends::check_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckStatus {
    /// Whether it has a check.
    pub checked: bool,
    /// Down by its check.
    pub down: bool,
    pub checks: u64,
    pub failures: u64,
    /// The last check's result: None before the first one.
    pub last_passed: Option<bool>,
    /// The last check's latency, in µs.
    pub last_latency_us: u64,
    /// Equal results in a row (passes if `last_passed`).
    pub in_row: u32,
}

impl Backends {
    /// Whether backend `i`'s active check has it down (a backend without
    /// a check never is).
    pub(crate) fn is_check_down(&self, i: usize) -> bool {
        let e = &self.entries[i];
        e.spec.check.is_some() && e.state.check_down.load(Relaxed)
    }

    /// What backend `i`'s health checks have found.
    pub fn check_status(&self, i: u32) -> CheckStatus {
        let e = &self.entries[i as usize];
        let s = &e.state;
        CheckStatus {
            checked: e.spec.check.is_some(),
            down: s.check_down.load(Relaxed),
            checks: s.checks.load(Relaxed),
            failures: s.check_failures.load(Relaxed),
            last_passed: match s.last_check_result.load(Relaxed) {
                0 => None,
                r => Some(r == 1),
            },
            last_latency_us: s.last_check_us.load(Relaxed),
            in_row: s.check_run.load(Relaxed),
        }
    }

    /// Records a finished check of backend `i` (only the checking worker
    /// calls this): its result, its latency, its run of equal results,
    /// and whether the check now has the backend down.
    pub(crate) fn record_check(&self, i: u32, passed: bool, latency_us: u64, run: u32, down: bool) {
        let s = &self.entries[i as usize].state;
        s.checks.fetch_add(1, Relaxed);
        if !passed {
            s.check_failures.fetch_add(1, Relaxed);
        }
        s.last_check_result
            .store(if passed { 1 } else { 2 }, Relaxed);
        s.last_check_us.store(latency_us, Relaxed);
        s.check_run.store(run, Relaxed);
        // Back up by its check: a slow start ramps it in.
        if s.check_down.swap(down, Relaxed) && !down {
            self.came_up(i);
        }
    }

    /// Backend `i`'s admin state. Active health checks skip a backend in
    /// [`Admin::Maint`].
    pub fn admin(&self, i: u32) -> Admin {
        Admin::of(self.state(i).admin.load(Relaxed))
    }

    /// Sets backend `i`'s admin state for every worker at once; returns
    /// the one it had.
    pub fn set_admin(&self, i: u32, admin: Admin) -> Admin {
        let was = Admin::of(self.state(i).admin.swap(admin as u8, Relaxed));
        // Back in service: a slow start ramps it in, as HAProxy's does
        // after maintenance.
        if was != Admin::Ready && admin == Admin::Ready {
            self.came_up(i);
        }
        was
    }

    /// The index of the backend called `name`, removed ones included.
    pub fn find(&self, name: &str) -> Option<u32> {
        let i = self.entries.iter().position(|e| e.spec.name == name)?;
        Some(i as u32)
    }

    /// The next generation with backend `i`'s weight set to `weight`
    /// (for [`super::Live::publish`]). A reload starts again from the
    /// file's weights, as HAProxy's runtime weights last until a reload.
    pub fn with_weight(&self, i: u32, weight: u32) -> Backends {
        let mut next = self.clone();
        next.entries[i as usize].spec.weight = weight;
        next
    }

    /// Whether backend `i` may get clients at all: configured, and left
    /// ready by the operator. Health comes on top of this.
    pub(crate) fn in_service(&self, i: usize) -> bool {
        let e = &self.entries[i];
        !e.removed && e.state.admin.load(Relaxed) == Admin::Ready as u8
    }

    /// Counts a failed connect to backend `i` by its kind.
    pub fn connect_error(&self, i: u32, kind: ConnectError) {
        self.state(i).connect_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Failed connects to backend `i`, by [`ConnectError`] kind.
    pub fn connect_errors(&self, i: u32) -> [u64; 5] {
        let s = self.state(i);
        ConnectError::ALL.map(|k| s.connect_errors[k as usize].load(Relaxed))
    }

    /// Pairs ever sent to backend `i`, each connect try counted.
    pub fn connections(&self, i: u32) -> u64 {
        self.state(i).connections.load(Relaxed)
    }

    /// Backend `i`'s latest health check, if it has had one and is
    /// checked now.
    pub fn last_check(&self, i: u32) -> Option<Check> {
        let status = self.check_status(i);
        // A check a reload took away leaves its last result behind.
        if !status.checked {
            return None;
        }
        Some(Check {
            ok: status.last_passed?,
            took: Duration::from_micros(status.last_latency_us),
        })
    }

    fn state(&self, i: u32) -> &State {
        &self.entries[i as usize].state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{BackendSpec, Health, Live};
    use crate::balance::Balancer;
    use crate::config::Balance;
    use std::net::SocketAddr;
    use std::sync::Arc;

    const METHODS: [Balance; 3] = [
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::SourceHash,
    ];

    fn live(n: u16, method: Balance) -> Arc<Live> {
        let specs = (0..n)
            .map(|p| BackendSpec::plain(SocketAddr::from(([127, 0, 0, 1], 9000 + p))))
            .collect();
        let health = Health {
            fall: 1,
            fail_timeout: Duration::from_secs(60),
        };
        Live::new(Backends::new(specs, health, method))
    }

    fn picks(b: &mut Balancer, n: usize) -> Vec<u32> {
        let peer = SocketAddr::from(([10, 0, 0, 1], 1));
        (0..n).filter_map(|_| b.pick(&peer, 0)).collect()
    }

    #[test]
    fn drained_and_maintained_backends_get_no_new_client_even_with_the_rest_down() {
        for method in METHODS {
            for admin in [Admin::Drain, Admin::Maint] {
                let live = live(2, method);
                let mut b = Balancer::new(Arc::clone(&live));
                let shared = live.snapshot();
                assert_eq!(shared.set_admin(1, admin), Admin::Ready);
                assert_eq!(shared.admin(1), admin);
                assert!(picks(&mut b, 6).iter().all(|&i| i == 0), "{method:?}");
                // The only other backend down: still none for backend 1.
                shared.failed(0);
                assert!(picks(&mut b, 6).iter().all(|&i| i == 0), "{method:?}");
                shared.set_admin(0, admin);
                assert_eq!(picks(&mut b, 1), [0u32; 0], "{method:?}: all out");
                shared.set_admin(1, Admin::Ready);
                assert_eq!(picks(&mut b, 1), [1], "{method:?}: ready again");
            }
        }
    }

    #[test]
    fn a_runtime_weight_reaches_the_workers_in_a_new_generation() {
        let live = live(2, Balance::RoundRobin);
        let mut b = Balancer::new(Arc::clone(&live));
        let i = live.snapshot().find("127.0.0.1:9001").expect("found");
        assert_eq!(i, 1);
        live.publish(|cur| cur.with_weight(i, 3));
        let got = picks(&mut b, 40);
        let ones = got.iter().filter(|&&p| p == 1).count();
        assert_eq!(ones, 30, "{got:?}");
        // The state is the same one: set in one generation, seen in all.
        live.snapshot().set_admin(0, Admin::Maint);
        assert_eq!(live.snapshot().admin(0), Admin::Maint);
    }

    #[test]
    fn errors_by_kind_connections_and_checks_are_kept() {
        let mut spec = BackendSpec::plain(SocketAddr::from(([127, 0, 0, 1], 9000)));
        spec.check = Some(crate::health::CheckSpec::default());
        let live = Live::new(Backends::new(
            vec![spec],
            Health::default(),
            Balance::RoundRobin,
        ));
        let shared = live.snapshot();
        assert_eq!(ConnectError::of(Fault::Refused), ConnectError::Refused);
        assert_eq!(ConnectError::of(Fault::Network), ConnectError::Unreachable);
        assert_eq!(ConnectError::of(Fault::Denied), ConnectError::Other);
        shared.connect_error(0, ConnectError::Refused);
        shared.connect_error(0, ConnectError::Refused);
        shared.connect_error(0, ConnectError::Timeout);
        assert_eq!(shared.connect_errors(0), [2, 1, 0, 0, 0]);
        let mut b = Balancer::new(Arc::clone(&live));
        b.opened(0);
        b.closed(0);
        assert_eq!((shared.connections(0), shared.active(0)), (1, 0));
        assert_eq!(shared.last_check(0), None);
        shared.record_check(0, false, 1500, 1, true);
        let check = Check {
            ok: false,
            took: Duration::from_micros(1500),
        };
        assert_eq!(shared.last_check(0), Some(check));
        assert_eq!(Admin::parse("maint"), Some(Admin::Maint));
        assert_eq!(Admin::parse("down"), None);
    }
}
