//! The health-check state machine driven by a fake clock and a scripted
//! peer: rounds, timeouts, expectations, and HAProxy's rise/fall counting.

use super::*;

const S: u64 = 1_000_000;

fn spec(send: &[u8], expect: Option<Expect>) -> CheckSpec {
    CheckSpec {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(1),
        rise: 2,
        fall: 3,
        send: send.to_vec(),
        expect,
    }
}

fn prefix(p: &str) -> Option<Expect> {
    Some(Expect::Prefix(p.as_bytes().to_vec()))
}

fn regex(p: &str) -> Option<Expect> {
    Some(Expect::Pattern(Pattern::new(p).expect("pattern")))
}

/// A connect-only round at `now` that connects (or not).
fn connect_round(c: &mut Check, now: u64, ok: bool) -> Done {
    assert!(c.begin(now), "a round is due at {now}");
    if ok {
        c.connected(now + 10)
            .expect("a connect check ends on the connect")
    } else {
        c.failed(now + 10, Failure::Connect(Fault::Refused))
            .expect("done")
    }
}

fn down(fails: u32, first: bool) -> Option<Change> {
    Some(Change::Down { fails, first })
}

#[test]
fn tally_follows_haproxy_starting_up_but_one_failure_from_down() {
    let mut t = Tally::new(2, 3);
    assert!(t.is_up());
    assert_eq!(t.record(false), down(1, true));
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(false), None, "a failure restarts the rise");
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(true), Some(Change::Up { passes: 2 }));
    // Once up, it takes `fall` failures in a row.
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(true), None, "a pass refills the health");
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), down(3, false));
    assert_eq!(t.run(), (3, false));
}

#[test]
fn tally_with_a_pass_first_needs_fall_failures() {
    let mut t = Tally::new(2, 3);
    assert_eq!(t.record(true), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), None);
    assert_eq!(t.record(false), down(3, false));
    let mut one = Tally::new(1, 1);
    assert_eq!(one.record(true), None);
    assert_eq!(one.record(false), down(1, false));
    assert_eq!(one.record(true), Some(Change::Up { passes: 1 }));
}

#[test]
fn rounds_keep_their_interval_and_are_not_due_early() {
    let mut c = Check::new(spec(b"", None), 500_000);
    assert_eq!(c.deadline(), 500_000);
    assert!(!c.begin(499_999));
    let d = connect_round(&mut c, 500_000, true);
    assert_eq!(d.failure, None);
    assert_eq!(d.latency_us, 10);
    assert_eq!(c.deadline(), 2 * S + 500_000);
    assert!(!c.begin(2 * S));
    // A round that starts late keeps the rhythm rather than catching up.
    connect_round(&mut c, 2 * S + 600_000, true);
    assert_eq!(c.deadline(), 4 * S + 500_000);
    // A long stall does not make rounds back to back.
    connect_round(&mut c, 20 * S, true);
    assert!(c.deadline() >= 21 * S);
}

#[test]
fn a_connect_check_goes_down_after_fall_failures_and_up_after_rise_passes() {
    let mut c = Check::new(spec(b"", None), 0);
    let mut t = 0;
    let mut round = |c: &mut Check, ok| {
        let d = connect_round(c, t, ok);
        t += 2 * S;
        d
    };
    assert_eq!(round(&mut c, true).change, None);
    assert_eq!(round(&mut c, false).change, None);
    assert_eq!(round(&mut c, false).change, None);
    let d = round(&mut c, false);
    assert_eq!(d.change, down(3, false));
    assert_eq!(
        Reason(d.failure.as_ref().expect("failed"), None).to_string(),
        "connect refused"
    );
    assert_eq!(round(&mut c, true).change, None);
    assert_eq!(round(&mut c, true).change, Some(Change::Up { passes: 2 }));
}

#[test]
fn a_hanging_check_times_out_at_its_deadline() {
    let mut c = Check::new(spec(b"PING\r\n", prefix("+PONG")), 0);
    assert!(c.begin(0));
    assert_eq!(c.connected(100), None);
    assert_eq!(c.to_send(), b"PING\r\n");
    assert_eq!(c.sent(200, 6), None);
    assert!(c.wants_read() > 0);
    assert_eq!(c.deadline(), S);
    assert_eq!(c.tick(S - 1), None);
    let d = c.tick(S).expect("timed out");
    let why = d.failure.expect("failure");
    assert_eq!(Reason(&why, None).to_string(), "timed out after 1s");
    assert_eq!(c.phase(), Phase::Idle);
    assert_eq!(c.deadline(), 2 * S);
}

#[test]
fn a_prefix_is_judged_as_soon_as_it_can_be() {
    let mut c = Check::new(spec(b"PING\r\n", prefix("+PONG")), 0);
    assert!(c.begin(0));
    c.connected(1);
    // A partial write leaves the rest to send.
    assert_eq!(c.sent(2, 2), None);
    assert_eq!(c.to_send(), b"NG\r\n");
    assert_eq!(c.sent(3, 4), None);
    assert_eq!(c.received(4, b"+PO"), None, "not enough to tell");
    let d = c.received(5, b"NG\r\n").expect("passed");
    assert_eq!(d.failure, None);
    // A wrong first byte fails at once.
    assert!(c.begin(2 * S));
    c.connected(2 * S);
    c.sent(2 * S, 6);
    let d = c.received(2 * S + 1, b"-ERR").expect("failed");
    let why = d.failure.expect("mismatch");
    let expect = c.spec.expect.clone();
    assert_eq!(
        Reason(&why, expect.as_ref()).to_string(),
        "expected \"+PONG\" got \"-ERR\""
    );
}

#[test]
fn a_pattern_waits_for_a_match_until_the_reply_ends() {
    let mut c = Check::new(spec(b"", regex("^\\+OK [0-9]+\\r\\n")), 0);
    assert!(c.begin(0));
    assert_eq!(c.connected(1), None, "with no send it reads at once");
    assert_eq!(c.received(2, b"+OK 12"), None);
    assert_eq!(
        c.received(3, b"3\r\n").expect("matched").failure,
        None,
        "matched over both reads"
    );
    assert!(c.begin(2 * S));
    c.connected(2 * S);
    assert_eq!(c.received(2 * S, b"-ERR nope\r\n"), None);
    let d = c.closed(2 * S + 5).expect("closed");
    let expect = c.spec.expect.clone();
    assert_eq!(
        Reason(d.failure.as_ref().expect("failed"), expect.as_ref()).to_string(),
        "expected /^\\+OK [0-9]+\\r\\n/ got \"-ERR nope\\r\\n\" and the connection closed"
    );
}

#[test]
fn a_reply_never_grows_past_its_limit() {
    let mut c = Check::new(spec(b"", regex("^never$")), 0);
    assert!(c.begin(0));
    c.connected(0);
    let chunk = [b'x'; 200];
    assert_eq!(c.received(1, &chunk), None);
    assert_eq!(c.received(2, &chunk), None);
    assert_eq!(c.wants_read(), MAX_REPLY - 400);
    let d = c.received(3, &chunk).expect("full");
    match d.failure {
        Some(Failure::Mismatch(got)) => assert_eq!(got.len(), MAX_REPLY),
        other => panic!("{other:?}"),
    }
}

#[test]
fn events_outside_a_round_are_ignored() {
    let mut c = Check::new(spec(b"", None), 0);
    assert_eq!(c.connected(0), None);
    assert_eq!(c.received(0, b"x"), None);
    assert_eq!(c.closed(0), None);
    assert_eq!(c.failed(0, Failure::Io(Fault::Reset)), None);
    assert_eq!(c.tick(10 * S), None);
}

#[test]
fn first_rounds_spread_over_one_interval() {
    let i = Duration::from_secs(2);
    let starts: Vec<u64> = (0..4).map(|k| first_round(i, k, 4)).collect();
    assert_eq!(starts, [0, 500_000, 1_000_000, 1_500_000]);
    assert_eq!(first_round(i, 0, 0), 0);
}
