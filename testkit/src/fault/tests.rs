//! The peers against each other, straight over loopback TCP: what the
//! proxy's fault tests expect of it is what plain TCP does.

use super::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// A reset after acknowledged bytes reaches even a slow reader with a
/// small receive buffer after every byte: the kernel hands over what it
/// holds before it reports the reset.
#[test]
fn a_reset_reaches_a_slow_reader_after_every_acknowledged_byte() {
    const N: usize = 1_000_000;
    let slow = Script::new(2, 0, LIMIT)
        .reading(Reading::Rate(2_000_000))
        .recv_buffer(64 << 10);
    let backend = Backend::spawn(move |_| slow.clone());
    let sender = Client::start(backend.addr, Script::new(1, N, LIMIT).then(Then::Reset)).join();
    assert_eq!((sender.unacked, sender.end), (0, End::Closed));
    backend
        .seen(LIMIT)
        .assert_got("straight over TCP", 1, N, End::Reset);
}

/// Segments, jitter and a cap on both ends change nothing of the bytes.
#[test]
fn shaped_writes_and_reads_deliver_every_byte_in_order() {
    let w = Writing {
        delay: Duration::from_millis(10),
        jitter: Duration::from_micros(200),
        max_segment: 1000,
        rate: 4_000_000,
    };
    let script = move |seed| {
        Script::new(seed, 200_000, LIMIT)
            .writing(w.clone())
            .reading(Reading::Pause {
                at: 50_000,
                pause: Duration::from_millis(100),
            })
            .then(Then::HalfClose)
    };
    let (client_script, backend_script) = (script(1), script(2));
    let backend = Backend::spawn(move |_| backend_script.clone());
    let client = Client::start(backend.addr, client_script).join();
    client.assert_got("client", 2, 200_000, End::Eof);
    backend
        .seen(LIMIT)
        .assert_got("backend", 1, 200_000, End::Eof);
}

/// A relay cut passes on a reset, never a FIN.
#[test]
fn a_cut_relay_resets_both_parties() {
    let backend = Backend::spawn(|_| Script::new(2, 1 << 20, LIMIT));
    let cut = Shape {
        cut_after: Some(10_000),
        ..Shape::default()
    };
    let relay = Relay::start(backend.addr, Shape::default(), cut, LIMIT);
    let client = Client::start(relay.addr, Script::new(1, 0, LIMIT)).join();
    assert!(client.is_prefix_of(2));
    assert_eq!(client.end, End::Reset, "after {}", client.received.len());
    let b = backend.seen(LIMIT);
    assert!(
        b.end == End::Reset || b.write_error.is_some(),
        "the backend was not reset: {:?}",
        b.end
    );
}
