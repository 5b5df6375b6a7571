//! Unit tests of [`super`].

use super::*;
use crate::backends::Marked;
use std::collections::HashSet;
use std::time::Duration;

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], 9000 + p)))
        .collect()
}

/// Every balancing method.
const METHODS: [Balance; 3] = [
    Balance::RoundRobin,
    Balance::LeastConnections,
    Balance::SourceHash,
];

/// How many of `clients` picks in a row went to each backend; each pair
/// is held open when `hold`, else closed before the next pick.
fn tally(b: &mut Balancer, clients: usize, hold: bool) -> Vec<usize> {
    let mut counts = vec![0; b.backends().len()];
    for _ in 0..clients {
        let i = b.pick(&peer(), 0).expect("a backend");
        b.opened(i);
        if !hold {
            b.closed(i);
        }
        counts[i as usize] += 1;
    }
    counts
}

fn specs(n: u16) -> Vec<BackendSpec> {
    addrs(n).into_iter().map(BackendSpec::plain).collect()
}

fn balancer(specs: Vec<BackendSpec>, health: Health, method: Balance) -> Balancer {
    Balancer::new(Live::new(Backends::new(specs, health, method)))
}

fn peer() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 1))
}

#[test]
fn round_robin_takes_turns() {
    let mut b = Balancer::of(addrs(3), Balance::RoundRobin);
    let picks: Vec<Option<u32>> = (0..6).map(|_| b.pick(&peer(), 0)).collect();
    let want: Vec<Option<u32>> = [0, 1, 2, 0, 1, 2].into_iter().map(Some).collect();
    assert_eq!(picks, want);
}

#[test]
fn least_connections_avoids_the_busy_backend() {
    let mut b = Balancer::of(addrs(2), Balance::LeastConnections);
    b.opened(0);
    b.opened(0);
    assert_eq!(b.pick(&peer(), 0), Some(1));
    assert_eq!(b.pick(&peer(), 0), Some(1));
    b.closed(0);
    b.closed(0);
    b.opened(1);
    assert_eq!(b.pick(&peer(), 0), Some(0));
}

#[test]
fn source_hash_keeps_a_client_on_one_backend() {
    let mut b = Balancer::of(addrs(4), Balance::SourceHash);
    let one = SocketAddr::from(([10, 0, 0, 7], 1));
    let again = SocketAddr::from(([10, 0, 0, 7], 2));
    assert_eq!(
        b.pick(&one, 0),
        b.pick(&again, 0),
        "the port does not matter"
    );
}

#[test]
fn a_retry_never_picks_a_backend_already_tried() {
    for method in METHODS {
        let mut b = Balancer::of(addrs(3), method);
        let mut set = 0;
        let mut seen = Vec::new();
        while let Some(i) = b.pick(&peer(), set) {
            assert!(!seen.contains(&i), "{method:?} picked {i} twice");
            seen.push(i);
            set = add(set, i);
        }
        assert_eq!(seen.len(), 3, "{method:?}");
    }
}

#[test]
fn fall_failures_in_a_row_mark_a_backend_down_and_a_success_brings_it_back() {
    for method in METHODS {
        let health = Health {
            fall: 2,
            fail_timeout: Duration::from_secs(60),
        };
        let mut b = balancer(specs(2), health, method);
        let shared = Arc::clone(&b.backends);
        assert_eq!(shared.failed(0), Marked::Nothing);
        assert_eq!(shared.failed(0), Marked::Down { fails: 2 });
        assert_eq!(shared.failed(0), Marked::Nothing, "logged once");
        for _ in 0..4 {
            assert_eq!(
                b.pick(&peer(), 0),
                Some(1),
                "{method:?} skips a down backend"
            );
        }
        // Backend 1 down too: the one down longest is still tried.
        shared.failed(1);
        shared.failed(1);
        assert!(b.pick(&peer(), 0).is_some());
        assert!(shared.succeeded(0), "it was down");
        assert!(!shared.succeeded(0));
        assert!(shared.is_up(0));
    }
}

#[test]
fn a_zero_fall_never_marks_a_backend_down() {
    let health = Health {
        fall: 0,
        fail_timeout: Duration::from_secs(60),
    };
    let shared = Backends::new(specs(1), health, Balance::RoundRobin);
    for _ in 0..10 {
        assert_eq!(shared.failed(0), Marked::Nothing);
    }
    assert!(shared.is_up(0));
}

#[test]
fn a_down_backend_is_tried_again_after_the_fail_timeout() {
    let health = Health {
        fall: 1,
        fail_timeout: Duration::ZERO,
    };
    let shared = Backends::new(specs(1), health, Balance::RoundRobin);
    assert_eq!(shared.failed(0), Marked::Down { fails: 1 });
    assert!(shared.is_up(0), "a zero fail timeout retries at once");
}

fn weighted(weights: &[u32], backups: &[bool], method: Balance) -> Balancer {
    let specs = addrs(weights.len() as u16)
        .into_iter()
        .zip(weights.iter().zip(backups))
        .map(|(addr, (&weight, &backup))| BackendSpec {
            name: addr.to_string(),
            addr,
            weight,
            backup,
            host: None,
        })
        .collect();
    let health = Health {
        fall: 1,
        fail_timeout: Duration::from_secs(60),
    };
    balancer(specs, health, method)
}

#[test]
fn weights_5_1_1_give_nginx_s_smooth_sequence() {
    let mut b = weighted(&[5, 1, 1], &[false; 3], Balance::RoundRobin);
    let picks: Vec<Option<u32>> = (0..7).map(|_| b.pick(&peer(), 0)).collect();
    let want: Vec<Option<u32>> = [0, 0, 1, 0, 2, 0, 0].into_iter().map(Some).collect();
    assert_eq!(picks, want);
}

#[test]
fn weighted_round_robin_is_exact_in_proportion_and_smooth() {
    let weights = [5, 1, 1];
    let mut b = weighted(&weights, &[false; 3], Balance::RoundRobin);
    let picks: Vec<usize> = (0..7000)
        .map(|_| b.pick(&peer(), 0).expect("a backend") as usize)
        .collect();
    let mut counts = [0; 3];
    for &p in &picks {
        counts[p] += 1;
    }
    assert_eq!(counts, [5000, 1000, 1000]);
    // In every window, none is picked more than its share rounded up:
    // no runs.
    for window in [2, 3, 7, 10, 70] {
        for w in picks.windows(window) {
            for (i, &weight) in weights.iter().enumerate() {
                let got = w.iter().filter(|&&p| p == i).count();
                let share = (weight as usize * window).div_ceil(7);
                assert!(got <= share, "backend {i}: {got} of {window} {w:?}");
            }
        }
    }
    // The light backends never come twice in a row.
    assert!(picks.windows(2).all(|w| w[0] == 0 || w[0] != w[1]));
}

#[test]
fn a_down_backend_leaves_the_weights_of_the_others_in_proportion() {
    let mut b = weighted(&[3, 1, 2], &[false; 3], Balance::RoundRobin);
    assert_eq!(b.backends().failed(0), Marked::Down { fails: 1 });
    assert_eq!(tally(&mut b, 300, false), [0, 100, 200]);
}

#[test]
fn backups_are_never_picked_while_a_primary_is_up() {
    for method in METHODS {
        let mut b = weighted(&[1, 1, 1], &[true, false, true], method);
        for k in 0..50u8 {
            let client = SocketAddr::from(([10, 0, 0, k], 1));
            assert_eq!(b.pick(&client, 0), Some(1), "{method:?}");
            b.opened(1);
        }
    }
}

#[test]
fn backups_take_the_clients_when_every_primary_is_down() {
    for method in METHODS {
        let mut b = weighted(&[1, 1, 1, 1], &[false, true, false, true], method);
        b.backends().failed(0);
        b.backends().failed(2);
        let mut seen = [0; 4];
        for k in 0..40u8 {
            let client = SocketAddr::from(([10, 0, 0, k], 1));
            let i = b.pick(&client, 0).expect("a backup");
            seen[i as usize] += 1;
        }
        assert_eq!((seen[0], seen[2]), (0, 0), "{method:?}: {seen:?}");
        // Both backups share the clients.
        assert!(seen[1] > 0 && seen[3] > 0, "{method:?}: {seen:?}");
        // A primary back up takes them again.
        b.backends().succeeded(2);
        assert_eq!(b.pick(&peer(), 0), Some(2), "{method:?}");
    }
}

#[test]
fn a_retry_tries_every_primary_before_any_backup_and_none_twice() {
    for method in METHODS {
        let mut b = weighted(&[1, 3, 1, 2], &[true, false, true, false], method);
        let mut set = 0;
        let mut order = Vec::new();
        while let Some(i) = b.pick(&peer(), set) {
            assert!(!tried(set, i as usize), "{method:?} picked {i} twice");
            order.push(i);
            set = add(set, i);
        }
        assert_eq!(order.len(), 4, "{method:?}");
        let primaries: Vec<u32> = order[..2].to_vec();
        assert!(
            primaries.contains(&1) && primaries.contains(&3),
            "{method:?}: {order:?}"
        );
    }
}

#[test]
fn with_every_backend_down_the_least_recently_failed_is_tried_backups_included() {
    let mut b = weighted(&[1, 1], &[false, true], Balance::RoundRobin);
    b.backends().failed(1);
    std::thread::sleep(Duration::from_millis(5));
    b.backends().failed(0);
    assert_eq!(b.pick(&peer(), 0), Some(1), "the backup failed first");
    assert_eq!(b.pick(&peer(), add(0, 1)), Some(0));
}

#[test]
fn least_connections_counts_active_per_unit_of_weight() {
    let mut b = weighted(&[3, 1], &[false, false], Balance::LeastConnections);
    // Held connections fill the backends 3:1.
    assert_eq!(tally(&mut b, 40, true), [30, 10]);
    // 30/3 against 11/1: the heavy one is lighter.
    b.opened(1);
    assert_eq!(b.pick(&peer(), 0), Some(0));
}

#[test]
fn least_connections_shares_idle_backends_by_weight() {
    let mut b = weighted(&[3, 1], &[false, false], Balance::LeastConnections);
    // Each closes before the next arrives: every pick is a tie.
    assert_eq!(tally(&mut b, 40, false), [30, 10]);
}

#[test]
fn a_published_generation_reaches_the_next_pick_and_keeps_indices() {
    let live = Live::new(Backends::new(
        specs(2),
        Health::default(),
        Balance::RoundRobin,
    ));
    let mut b = Balancer::new(Arc::clone(&live));
    assert!(b.pick(&peer(), 0).is_some());
    b.opened(0);
    let all = specs(3);
    // Backend 0 leaves, 2 is new, 1 stays: indices 0 and 1 keep their
    // meaning, 2 is appended, and 0's count survives for its open pair.
    live.publish(|cur| cur.next(all[1..].to_vec(), Health::default(), Balance::RoundRobin));
    let seen: HashSet<u32> = (0..6).filter_map(|_| b.pick(&peer(), 0)).collect();
    assert_eq!(
        seen,
        HashSet::from([1, 2]),
        "a removed backend gets no client"
    );
    assert_eq!(b.backends().addr(2), all[2].addr);
    assert!(b.backends().entry(0).removed);
    assert_eq!(b.backends().active(0), 1);
    b.closed(0);
    // It comes back: matched by name, at its old index.
    live.publish(|cur| cur.next(all.clone(), Health::default(), Balance::LeastConnections));
    assert!(b.pick(&peer(), 0).is_some());
    assert_eq!(b.backends().len(), 3);
    assert!(!b.backends().entry(0).removed);
    assert_eq!(b.backends().method(), Balance::LeastConnections);
}
