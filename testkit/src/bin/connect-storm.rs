//! A test helper: opens COUNT connections to ADDR from THREADS threads,
//! each doing one exchange (a byte out, the same byte back), holding the
//! connection HOLD_MS and closing it, and prints what became of them as
//! one line, `served=N reset=N closed=N refused=N hung=N` (closed: an
//! EOF instead of the byte). Two of these processes
//! make a connect storm that no one process's thread scheduling shapes.
//!
//! Usage: connect-storm ADDR COUNT THREADS HOLD_MS TIMEOUT_MS

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What became of the connections, counted by outcome.
#[derive(Default)]
struct Tally {
    served: AtomicUsize,
    reset: AtomicUsize,
    closed: AtomicUsize,
    refused: AtomicUsize,
    hung: AtomicUsize,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Option<(SocketAddr, usize, usize, u64, u64)> {
        let [addr, count, threads, hold, timeout] = args.as_slice() else {
            return None;
        };
        Some((
            addr.parse().ok()?,
            count.parse().ok()?,
            threads.parse().ok()?,
            hold.parse().ok()?,
            timeout.parse().ok()?,
        ))
    })();
    let Some((addr, count, threads, hold, timeout)) = parsed else {
        eprintln!("usage: connect-storm ADDR COUNT THREADS HOLD_MS TIMEOUT_MS");
        return ExitCode::from(2);
    };
    let (hold, timeout) = (Duration::from_millis(hold), Duration::from_millis(timeout));
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let workers: Vec<_> = (0..threads)
        .filter_map(|_| {
            let (next, tally) = (Arc::clone(&next), Arc::clone(&tally));
            thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    while next.fetch_add(1, Relaxed) < count {
                        let c = match exchange(addr, timeout, hold) {
                            Outcome::Served => &tally.served,
                            Outcome::Reset => &tally.reset,
                            Outcome::Closed => &tally.closed,
                            Outcome::Refused => &tally.refused,
                            Outcome::Hung => &tally.hung,
                        };
                        c.fetch_add(1, Relaxed);
                    }
                })
                .ok()
        })
        .collect();
    let started = workers.len();
    for w in workers {
        let _ = w.join();
    }
    println!(
        "served={} reset={} closed={} refused={} hung={} threads={started}",
        tally.served.load(Relaxed),
        tally.reset.load(Relaxed),
        tally.closed.load(Relaxed),
        tally.refused.load(Relaxed),
        tally.hung.load(Relaxed),
    );
    ExitCode::SUCCESS
}

enum Outcome {
    Served,
    Reset,
    Closed,
    Refused,
    Hung,
}

/// One connection: connect, a byte each way, hold, close.
fn exchange(addr: SocketAddr, timeout: Duration, hold: Duration) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) if e.kind() == ErrorKind::TimedOut => return Outcome::Hung,
        Err(_) => return Outcome::Reset,
    };
    if s.set_read_timeout(Some(timeout)).is_err() || s.set_write_timeout(Some(timeout)).is_err() {
        return Outcome::Reset;
    }
    let mut b = [0u8; 1];
    let got = s.write_all(b"s").and_then(|()| s.read(&mut b));
    let outcome = match got {
        Ok(1) if b == *b"s" => Outcome::Served,
        Ok(_) => Outcome::Closed,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Outcome::Hung,
        Err(_) => Outcome::Reset,
    };
    thread::sleep(hold);
    outcome
}
