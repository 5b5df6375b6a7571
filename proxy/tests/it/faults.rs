//! Each misbehaving peer of `testkit::fault` against the real proxy, once
//! as the client and once as the backend: what the other end sees (every
//! byte owed, in order; a reset after what was already received, never a
//! FIN in its place; nothing after it), and the proxy afterwards (still
//! serving, and back at its baseline: see [`Rig::assert_settled`]).
//!
//! The reset tests hold the proxy to "deliver, then reset": the bytes a
//! side had sent before its reset all reach the other side, then the reset.

use crate::rig::Rig;
use crate::util::WAIT;
use std::time::Duration;
use testkit::fault::{
    refusing_addr, Backend, Blackhole, Client, End, Reading, Relay, Script, Seen, Shape, Then,
    Writing,
};

/// Which end of the connection misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Client,
    Backend,
}

const BOTH: [At; 2] = [At::Client, At::Backend];

/// Seeds of what the client and the backend send.
const CLIENT_SEED: u64 = 1;
const BACKEND_SEED: u64 = 2;

/// A well-behaved end: sends `len` bytes as fast as it can, then its FIN,
/// and reads to the end.
fn plain(seed: u64, len: usize) -> Script {
    Script::new(seed, len, WAIT).then(Then::HalfClose)
}

/// What each end saw.
struct Ends {
    faulty: Seen,
    other: Seen,
}

/// Plays `faulty` at `at` and `other` at the opposite end through a new
/// proxy (with `args`), then checks that the proxy settles and still
/// relays a fresh exchange.
fn play(at: At, faulty: Script, other: Script, args: &[&str]) -> Ends {
    let (client, backend) = match at {
        At::Client => (faulty, other),
        At::Backend => (other, faulty),
    };
    let fresh = (plain(11, 64 << 10), plain(12, 64 << 10));
    let fresh_backend = fresh.1.clone();
    let first = std::sync::Mutex::new(Some(backend));
    let server = Backend::spawn(move |_| {
        first
            .lock()
            .expect("script")
            .take()
            .unwrap_or_else(|| fresh_backend.clone())
    });
    let rig = Rig::start(server.addr, args);
    let client = Client::start(rig.proxy.addr, client).join();
    let backend = server.seen(WAIT * 2);
    rig.assert_settled();

    let c = Client::start(rig.proxy.addr, fresh.0).join();
    let b = server.seen(WAIT);
    c.assert_got("fresh exchange, client", 12, 64 << 10, End::Eof);
    b.assert_got("fresh exchange, backend", 11, 64 << 10, End::Eof);
    rig.assert_settled();
    match at {
        At::Client => Ends {
            faulty: client,
            other: backend,
        },
        At::Backend => Ends {
            faulty: backend,
            other: client,
        },
    }
}

/// The seeds of what the faulty and the other end send.
fn seeds(at: At) -> (u64, u64) {
    match at {
        At::Client => (CLIENT_SEED, BACKEND_SEED),
        At::Backend => (BACKEND_SEED, CLIENT_SEED),
    }
}

/// Both ends send `len` bytes and half-close; the faulty end writes and
/// reads as given. Both must get every byte and the FIN.
fn exchange_intact(w: Writing, r: Reading, len: usize) {
    for at in BOTH {
        let (fs, os) = seeds(at);
        let faulty = plain(fs, len).writing(w.clone()).reading(r);
        let ends = play(at, faulty, plain(os, len), &[]);
        ends.other
            .assert_got(&format!("{at:?} faulty, other end"), fs, len, End::Eof);
        ends.faulty
            .assert_got(&format!("{at:?} faulty, faulty end"), os, len, End::Eof);
    }
}

#[test]
fn delay_and_jitter_lose_nothing_either_way() {
    let w = Writing {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(2),
        max_segment: 4096,
        rate: 0,
    };
    exchange_intact(w, Reading::Normal, 256 << 10);
}

#[test]
fn a_bandwidth_cap_loses_nothing_either_way() {
    let w = Writing {
        rate: 1 << 20,
        ..Writing::default()
    };
    exchange_intact(w, Reading::Rate(1 << 20), 512 << 10);
}

#[test]
fn random_segmentation_loses_nothing_either_way() {
    for max_segment in [1, 7, 1500] {
        let w = Writing {
            max_segment,
            ..Writing::default()
        };
        exchange_intact(w, Reading::Normal, 32 << 10);
    }
}

/// A reader that pauses for a second after 64 KiB, while 4 MiB (more than
/// the kernel buffers on the way hold) come at it, gets all of them.
#[test]
fn a_paused_reader_gets_every_byte_after_the_pause() {
    let pause = Reading::Pause {
        at: 64 << 10,
        pause: Duration::from_secs(1),
    };
    exchange_intact(Writing::default(), pause, 4 << 20);
}

/// A peer that never reads and gives up after 1.5 s (closing with bytes
/// unread, so its kernel resets): the other end, which streams at it, is
/// stopped with an error or a reset, not left blocked or told "done".
#[test]
fn a_stalled_reader_ends_the_other_side_with_a_reset() {
    for at in BOTH {
        let (fs, os) = seeds(at);
        let stalled = Script::new(fs, 0, Duration::from_millis(1500)).reading(Reading::Stall);
        let ends = play(at, stalled, Script::new(os, 64 << 20, WAIT), &[]);
        assert_eq!(ends.faulty.end, End::GaveUp, "{at:?}");
        let o = &ends.other;
        assert!(
            o.end == End::Reset || o.write_error.is_some(),
            "{at:?} stalled: the other end was not stopped: {:?} after sending {}",
            o.end,
            o.sent
        );
        assert!(
            o.sent < 64 << 20,
            "{at:?}: 64 MiB went into a stalled reader"
        );
        assert!(o.received.is_empty(), "{at:?}: bytes nobody sent");
    }
}

/// A peer that sends 300,000 bytes and closes: the other end gets exactly
/// those and a FIN.
#[test]
fn close_after_n_bytes_delivers_them_and_a_fin() {
    const N: usize = 300_000;
    for at in BOTH {
        let (fs, os) = seeds(at);
        let closing = Script::new(fs, N, WAIT).then(Then::Close);
        let ends = play(at, closing, Script::new(os, 0, WAIT), &[]);
        ends.other
            .assert_got(&format!("{at:?} closed"), fs, N, End::Eof);
        assert_eq!(ends.faulty.end, End::Closed);
    }
}

/// A peer that half-closes at a random offset (seeded) and reads on: the
/// other end gets exactly those bytes and a FIN, and its own 1 MiB, sent
/// after, reaches the half-closed peer whole.
#[test]
fn half_close_at_an_offset_keeps_the_other_direction_flowing() {
    for seed in [3u64, 4, 5] {
        let offset = testkit::pattern(seed, 4)
            .iter()
            .fold(0usize, |a, b| a * 256 + *b as usize)
            % (2 << 20);
        for at in BOTH {
            let (fs, os) = seeds(at);
            let half = plain(fs, offset);
            let other = plain(os, 1 << 20).writing(Writing {
                delay: Duration::from_millis(50),
                ..Writing::default()
            });
            let ends = play(at, half, other, &[]);
            let what = format!("{at:?} half-closed at {offset} (seed {seed})");
            ends.other.assert_got(&what, fs, offset, End::Eof);
            ends.faulty.assert_got(&what, os, 1 << 20, End::Eof);
        }
    }
}

/// A peer that sends 1 MiB, waits until the proxy has acknowledged it
/// all, and resets: the other end gets every byte, then the reset.
#[test]
fn reset_after_n_bytes_delivers_them_then_the_reset() {
    const N: usize = 1 << 20;
    for at in BOTH {
        let (fs, os) = seeds(at);
        let resetting = Script::new(fs, N, WAIT).then(Then::Reset);
        let ends = play(at, resetting, Script::new(os, 0, WAIT), &[]);
        assert_eq!(
            ends.faulty.unacked, 0,
            "{at:?}: the proxy never took it all"
        );
        ends.other
            .assert_got(&format!("{at:?} reset after {N}"), fs, N, End::Reset);
    }
}

/// The case: the receiver reads at most 1 MB/s and the reset comes
/// after 3 MB, so the proxy's own send queue is full when it arrives. All
/// 3 MB must arrive, then the reset.
fn reset_after_3mb_to_a_1mb_per_s_reader(at: At) {
    const N: usize = 3_000_000;
    let (fs, os) = seeds(at);
    let resetting = Script::new(fs, N, WAIT).then(Then::Reset);
    // A small receive buffer, so that the bytes wait in the proxy rather
    // than in the reader's kernel.
    let slow = Script::new(os, 0, WAIT)
        .reading(Reading::Rate(1_000_000))
        .recv_buffer(64 << 10);
    let ends = play(at, resetting, slow, &[]);
    assert_eq!(
        ends.faulty.unacked, 0,
        "{at:?}: the proxy never took it all"
    );
    ends.other.assert_got(
        &format!("{at:?} reset after 3 MB to a 1 MB/s reader"),
        fs,
        N,
        End::Reset,
    );
}

#[test]
fn a_client_reset_after_3mb_reaches_a_1mb_per_s_backend_after_every_byte() {
    reset_after_3mb_to_a_1mb_per_s_reader(At::Client);
}

#[test]
fn a_backend_reset_after_3mb_reaches_a_1mb_per_s_client_after_every_byte() {
    reset_after_3mb_to_a_1mb_per_s_reader(At::Backend);
}

/// A peer that resets right after its last write, with bytes still in its
/// own send queue (lost with it): the other end gets a prefix of them and
/// then the reset, never a FIN.
#[test]
fn reset_right_after_writing_reaches_the_other_side_as_a_reset() {
    for at in BOTH {
        let (fs, os) = seeds(at);
        let resetting = Script::new(fs, 4 << 20, WAIT).then(Then::ResetNow);
        let ends = play(at, resetting, Script::new(os, 0, WAIT), &[]);
        let o = &ends.other;
        assert!(o.is_prefix_of(fs), "{at:?}: bytes altered before the reset");
        assert_eq!(
            o.end,
            End::Reset,
            "{at:?}: after {} bytes",
            o.received.len()
        );
    }
}

/// A peer that connects or accepts and then says nothing, reads nothing,
/// and goes away after a second: the other end, which sent 64 KiB and its
/// FIN, is reset (its bytes were never read), not left waiting.
#[test]
fn a_silent_peer_that_goes_away_resets_the_other_side() {
    for at in BOTH {
        let (_, os) = seeds(at);
        let silent = Script::silent(Duration::from_secs(1));
        let ends = play(at, silent, plain(os, 64 << 10), &[]);
        assert_eq!(ends.faulty.end, End::GaveUp);
        assert_eq!(
            (ends.other.received.len(), ends.other.end),
            (0, End::Reset),
            "{at:?} silent"
        );
    }
}

/// A backend that refuses, and one that never answers the SYN (its
/// accept queue is full), end their clients and leave nothing behind.
/// (Client side: a client cannot refuse; the proxy's own listener is
/// the one that would drop SYNs.)
#[test]
fn refused_and_blackholed_backends_leave_nothing_behind() {
    let hole = Blackhole::new();
    if hole.is_none() {
        eprintln!("skipping the blackhole: this kernel completes handshakes to a full queue");
    }
    let mut backends = vec![("refusing", refusing_addr())];
    backends.extend(hole.as_ref().map(|h| ("blackholed", h.addr)));
    for (kind, backend) in backends {
        let rig = Rig::start(backend, &["--connect-timeout", "300ms"]);
        for i in 0..5 {
            let seen = Client::start(rig.proxy.addr, plain(i, 1000)).join();
            assert_eq!(
                (seen.received.len(), seen.end),
                (0, End::Reset),
                "{kind} backend {backend}, client {i}"
            );
        }
        rig.assert_settled();
        assert_eq!(rig.metric("proxy_refused"), 5);
    }
}

/// Through a relay that cuts every stream into segments of 1 to 100 bytes
/// with jitter, both ways, between the proxy and its backend: nothing is
/// lost, and a cut (resets both ways after 100,000 bytes towards the
/// client) reaches the client as a reset after a prefix of the stream.
#[test]
fn a_fragmenting_path_loses_nothing_and_a_cut_path_resets() {
    let shape = Shape {
        seed: 9,
        max_segment: 100,
        jitter: Duration::from_micros(50),
        ..Shape::default()
    };
    let server = Backend::spawn(|_| plain(BACKEND_SEED, 256 << 10));
    let relay = Relay::start(server.addr, shape, shape, WAIT);
    let rig = Rig::start(relay.addr, &[]);
    let c = Client::start(rig.proxy.addr, plain(CLIENT_SEED, 256 << 10)).join();
    c.assert_got("through the relay", BACKEND_SEED, 256 << 10, End::Eof);
    server
        .seen(WAIT)
        .assert_got("through the relay", CLIENT_SEED, 256 << 10, End::Eof);
    rig.assert_settled();
    drop(relay);

    let cut = Shape {
        cut_after: Some(100_000),
        ..Shape::default()
    };
    let relay = Relay::start(server.addr, Shape::default(), cut, WAIT);
    let rig = Rig::start(relay.addr, &[]);
    let c = Client::start(rig.proxy.addr, Script::new(CLIENT_SEED, 0, WAIT)).join();
    assert!(c.is_prefix_of(BACKEND_SEED), "bytes altered before the cut");
    assert!(c.received.len() <= 100_000, "bytes after the cut");
    assert_eq!(c.end, End::Reset, "after {} bytes", c.received.len());
    rig.assert_settled();
}
