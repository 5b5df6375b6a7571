//! End-to-end tests of sink and source modes.

use crate::util::{expect_eof, payload, Backend};
use echo_backend::pattern::Pattern;
use std::io::{Read, Write};
use std::net::Shutdown;

#[test]
fn sink_takes_8_mib_then_closes_after_fin() {
    let b = Backend::start(&["--mode", "sink"]);
    let mut s = b.connect();
    s.write_all(&payload(8 << 20)).expect("write 8 MiB");
    s.shutdown(Shutdown::Write).expect("shutdown");
    expect_eof(&mut s);
}

#[test]
fn source_streams_the_seeded_pattern_from_offset_zero_on_each_connection() {
    let b = Backend::start(&["--mode", "source", "--seed", "42"]);
    let pattern = Pattern::new(42);
    for (i, len) in [4 << 20, 1 << 20].into_iter().enumerate() {
        let mut s = b.connect();
        let mut buf = vec![0; len];
        s.read_exact(&mut buf).expect("read the stream");
        assert_eq!(
            pattern.verify(0, &buf),
            Ok(()),
            "connection {i}: mismatch at this stream offset"
        );
    }
}

#[test]
fn source_closes_when_the_client_closes() {
    let mut b = Backend::start(&["--mode", "source"]);
    {
        let mut s = b.connect();
        let mut buf = vec![0; 1 << 20];
        s.read_exact(&mut buf).expect("read the stream");
    }
    let deadline = std::time::Instant::now() + crate::util::WAIT;
    loop {
        b.signal("USR1");
        let line = b
            .wait_line(|l| l.contains("connections accepted"))
            .expect("summary after SIGUSR1");
        if line.ends_with(": 1 connections accepted, 0 open") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connection kept: {line}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
