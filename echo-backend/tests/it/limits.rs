//! End-to-end tests of the limits: `--max-connections` over several
//! workers, and what a worker does when the process runs out of
//! descriptors.

use crate::util::{Backend, WAIT};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use testkit::proc::leave_spare_fds;

/// Clients pointed at two workers sharing three connections: so many that
/// each worker's listener gets more than its share, whichever way the
/// kernel spreads them.
const CLIENTS: usize = 40;

/// `--max-connections` is a total: with three over two workers, one holds
/// two and the other one, and the rest wait in the backlog. Each worker
/// used to round its share up, letting four in.
#[test]
fn max_connections_is_a_total_over_the_workers() {
    let mut b = Backend::start(&["--workers", "2", "--max-connections", "3"]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| b.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&[i as u8]).expect("write");
        c.set_nonblocking(true).expect("nonblocking");
    }
    // Wait for the three held ones to answer.
    let deadline = Instant::now() + WAIT;
    let mut answered = [false; CLIENTS];
    while answered.iter().filter(|&&a| a).count() < 3 {
        for (i, c) in clients.iter_mut().enumerate() {
            let mut got = [0u8; 1];
            match c.read(&mut got) {
                Ok(1) => {
                    assert_eq!(got[0], i as u8, "client {i} got another's byte");
                    answered[i] = true;
                }
                Ok(_) => panic!("client {i} was closed"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("client {i}: {e}"),
            }
        }
        assert!(Instant::now() < deadline, "fewer than 3 clients served");
        thread::sleep(Duration::from_millis(10));
    }
    b.signal("USR1");
    let line = b
        .wait_line(|l| l.contains("connections accepted"))
        .expect("summary after SIGUSR1");
    assert_eq!(line, "echo-backend: 3 connections accepted, 3 open");
}

/// Accept retries watched while out of descriptors.
const RETRIES: usize = 5;

/// Out of descriptors, a worker retries `accept` every 100 ms and must
/// sleep in between: one `epoll_wait` a retry. It used to round the time
/// left down to whole milliseconds, so that in the last one it polled with
/// a zero timeout, over and over, until the retry was due. The count of
/// calls comes from `strace`; no time is measured.
#[test]
fn out_of_descriptors_a_worker_sleeps_until_each_accept_retry() {
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("skipped: strace is not installed");
        return;
    }
    // The table has room for far more: descriptors run out first.
    let b = Backend::start(&["--mode", "echo", "--max-connections", "100"]);
    leave_spare_fds(b.pid(), 1);
    // This client takes the last descriptor, and is served.
    let mut served = b.connect();
    served.write_all(b"x").expect("write");
    let mut got = [0u8; 1];
    served.read_exact(&mut got).expect("echo");

    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-e", "trace=epoll_wait,epoll_pwait,accept4", "-p"])
        .arg(b.pid().to_string());
    let mut strace = testkit::Child::spawn("strace", &mut cmd, WAIT);
    let attached = strace
        .wait_line(|l| l.contains("attached") || l.contains("attach:"))
        .expect("strace attaches or says why not");
    if !attached.contains("attached") {
        eprintln!("skipped: strace cannot trace here: {attached}");
        return;
    }
    // This one finds no descriptor: accept4 fails with EMFILE, and the
    // client waits in the backlog while the worker retries.
    let _waiting = b.connect();
    let mut line = || strace.wait_line(|_| true).expect("strace goes on tracing");
    while !is_emfile(&line()) {}
    let (mut retries, mut waits) = (0, 0);
    while retries < RETRIES {
        let l = line();
        // Where the C library makes epoll_wait an epoll_pwait, that.
        if l.contains("epoll_wait(") || l.contains("epoll_pwait(") {
            waits += 1;
        } else if is_emfile(&l) {
            retries += 1;
        }
    }
    strace.signal("INT");
    strace.wait_exit();
    assert!(
        waits <= RETRIES,
        "{waits} epoll_wait calls for {RETRIES} accept retries: the worker spins while out of descriptors"
    );
}

/// Whether a line of `strace` is an `accept4` that found no descriptor.
fn is_emfile(line: &str) -> bool {
    line.contains("accept4(") && line.contains("EMFILE")
}
