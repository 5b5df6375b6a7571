//! What the workspace's end-to-end tests and its workbench (`xtask`) share:
//! a real child process whose stderr is collected line by line (for its
//! `listening on ADDR` line, its logs and its stats) and which takes its
//! own children down with it when dropped; readings of a process from
//! `/proc` (its TCP sockets too); another package's binary, built for a
//! test; sockets with timeouts; and misbehaving peers and a
//! fault-injecting relay ([`fault`]); and a reader of HdrHistogram
//! interval logs ([`hlog`]). Every wait is bounded, so a hang
//! fails fast.
//!
//! Tests call the panicking methods (`spawn`, `wait_listening`, …); the
//! workbench calls the `try_` variants, which return one-line errors and
//! never panic.

mod child;
pub mod fault;
pub mod hlog;
pub mod proc;
pub mod workspace;

pub use child::{AfterListening, Child};

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to `addr` with `wait` as the read and write timeout. The
/// connect itself is a plain one: `connect_timeout` polls for completion
/// and reports a reset that came right after the handshake as a failed
/// connect, where a test wants to read that reset.
pub fn connect(addr: SocketAddr, wait: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(wait))
        .unwrap_or_else(|e| panic!("read timeout: {e}"));
    s.set_write_timeout(Some(wait))
        .unwrap_or_else(|e| panic!("write timeout: {e}"));
    s
}

/// Deterministic pseudo-random bytes (xorshift), so that a test can
/// check a large transfer without keeping two copies around.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
