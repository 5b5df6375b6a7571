//! Unit tests of [`super`].

use super::*;

fn addrs(n: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|p| SocketAddr::from(([127, 0, 0, 1], 9000 + p)))
        .collect()
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
    for method in [
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::SourceHash,
    ] {
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
    for method in [
        Balance::RoundRobin,
        Balance::LeastConnections,
        Balance::SourceHash,
    ] {
        let health = Health {
            fall: 2,
            fail_timeout: Duration::from_secs(60),
        };
        let mut b = Balancer::new(Backends::new(addrs(2), health), method);
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
    let shared = Backends::new(addrs(1), health);
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
    let shared = Backends::new(addrs(1), health);
    assert_eq!(shared.failed(0), Marked::Down { fails: 1 });
    assert!(shared.is_up(0), "a zero fail timeout retries at once");
}
