//! End-to-end tests of echo mode: integrity at every size, backpressure
//! instead of buffering, half-close, resets and many connections.

use crate::util::{is_timeout, payload, read_to_eof, round_trip, Backend, WAIT};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Describes where two byte strings first differ, without printing them.
fn diff(want: &[u8], got: &[u8]) -> String {
    let at = want.iter().zip(got).position(|(a, b)| a != b);
    format!(
        "sent {} bytes, got {} back, first difference at {at:?}",
        want.len(),
        got.len()
    )
}

#[test]
fn echo_round_trips_one_byte_to_16_mib_identical() {
    let b = Backend::start(&["--mode", "echo"]);
    for n in [1, 2, 1000, 65_535, 65_536, 65_537, 1_048_583, 16 << 20] {
        let data = Arc::new(payload(n));
        let got = round_trip(b.connect(), Arc::clone(&data));
        assert!(got == *data, "size {n}: {}", diff(&data, &got));
    }
}

#[test]
fn echo_survives_a_client_that_reads_nothing_until_its_writer_stalls() {
    let b = Backend::start(&["--mode", "echo"]);
    let mut s = b.connect();
    let data = Arc::new(payload(16 << 20));
    let mut w = s.try_clone().expect("clone");
    // A short send timeout tells the writer that the pipe is full.
    w.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let (stalled, stall) = mpsc::channel();
    let sent = Arc::clone(&data);
    let writer = thread::spawn(move || {
        let deadline = Instant::now() + WAIT;
        let (mut off, mut told) = (0, false);
        while off < sent.len() {
            let end = (off + 65_536).min(sent.len());
            match w.write(&sent[off..end]) {
                Ok(n) => off += n,
                Err(e) if is_timeout(&e) => {
                    if !told {
                        told = true;
                        let _ = stalled.send(off);
                    }
                    assert!(Instant::now() < deadline, "writer stuck at {off}");
                }
                Err(e) => panic!("write at {off}: {e}"),
            }
        }
        if !told {
            let _ = stalled.send(off);
        }
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    // Read nothing until the writer has either finished or been held back.
    stall
        .recv_timeout(WAIT)
        .expect("writer never finished nor stalled");
    let got = read_to_eof(&mut s);
    writer.join().expect("writer");
    assert!(got == *data, "{}", diff(&data, &got));
}

#[test]
fn echo_holds_a_client_back_instead_of_buffering_without_bound() {
    let b = Backend::start(&["--mode", "echo"]);
    let s = b.connect();
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let chunk = payload(256 << 10);
    let limit: usize = 512 << 20;
    let mut w = &s;
    let mut sent = 0;
    let stalled = loop {
        match w.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if is_timeout(&e) => break true,
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
        if sent >= limit {
            break false;
        }
    };
    assert!(
        stalled,
        "the backend took {sent} bytes from a client that never reads"
    );
}

#[test]
fn echo_half_close_returns_every_byte_then_eof() {
    let b = Backend::start(&["--mode", "echo"]);
    let mut s = b.connect();
    // Small enough to sit in the socket buffers while nobody reads.
    let data = payload(64 << 10);
    s.write_all(&data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let got = read_to_eof(&mut s);
    assert!(got == data, "{}", diff(&data, &got));
}

#[test]
fn echo_closes_a_connection_its_client_reset() {
    let mut b = Backend::start(&["--mode", "echo"]);
    {
        let s = b.connect();
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        // Fill the pipe so that the backend holds pending bytes, then reset.
        let chunk = payload(256 << 10);
        let mut w = &s;
        for _ in 0..256 {
            match w.write(&chunk) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        netio::sys::socket::set_linger_zero(&s).expect("SO_LINGER");
    }
    let deadline = Instant::now() + WAIT;
    loop {
        b.signal("USR1");
        let line = b
            .wait_line(|l| l.contains("connections accepted"))
            .expect("summary after SIGUSR1");
        if line.ends_with(" 0 open") && line.contains(": 1 connections accepted") {
            break;
        }
        assert!(Instant::now() < deadline, "reset connection kept: {line}");
        thread::sleep(Duration::from_millis(20));
    }
    // And it still serves.
    let got = round_trip(b.connect(), Arc::new(b"still here".to_vec()));
    assert_eq!(got, b"still here");
}

#[test]
fn echo_serves_2000_concurrent_connections() {
    netio::sys::rlimit::raise_nofile().expect("raise RLIMIT_NOFILE");
    let b = Backend::start(&["--mode", "echo"]);
    let mut conns: Vec<_> = (0..2000).map(|_| b.connect()).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(format!("connection {i:>8}\n").as_bytes())
            .expect("write");
    }
    for (i, s) in conns.iter_mut().enumerate() {
        let want = format!("connection {i:>8}\n");
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).expect("read echo");
        assert_eq!(got, want.as_bytes(), "connection {i}");
    }
}

#[test]
fn two_workers_share_the_port_and_serve() {
    let b = Backend::start(&["--mode", "echo", "--workers", "2"]);
    let data = Arc::new(payload(100_000));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (s, d) = (b.connect(), Arc::clone(&data));
            thread::spawn(move || round_trip(s, d))
        })
        .collect();
    for c in clients {
        let got = c.join().expect("client");
        assert!(got == *data, "{}", diff(&data, &got));
    }
}
