//! Misbehaving peers for fault tests: a [`Script`] says how one end of a
//! TCP connection behaves — what it sends and how (segment sizes, delay
//! and jitter, a bandwidth cap), how it reads (at a capped rate, pausing
//! at an offset, or never), and how it ends (keep open, half-close, close,
//! or reset after its bytes) — and [`run`] plays it on a socket and
//! reports what that end saw ([`Seen`]). Random choices come from the
//! script's seed, so a run can be replayed.
//!
//! A [`Backend`] plays a script on every connection it accepts (chosen per
//! connection), a [`Client`] plays one on a connection it opens, and
//! [`Relay`] sits between two parties and shapes or cuts the stream. For
//! the faults below TCP there are [`refusing_addr`] (nothing listens) and
//! [`Blackhole`] (a full accept queue: SYNs are dropped). Every wait is
//! bounded by the script's `limit`.

mod listen;
mod peer;
mod relay;

pub use listen::{refusing_addr, Backend, Blackhole, Client};
pub use peer::run;
pub use relay::{Relay, Shape};

use std::io::ErrorKind;
use std::time::Duration;

/// How one end of a connection behaves.
#[derive(Debug, Clone)]
pub struct Script {
    /// Seed of the bytes it sends ([`crate::pattern`]) and of its random
    /// choices.
    pub seed: u64,
    /// Bytes it sends.
    pub send: usize,
    /// How it writes them.
    pub write: Writing,
    /// How it reads.
    pub read: Reading,
    /// What it does once it has sent everything.
    pub then: Then,
    /// Its socket's receive buffer (`SO_RCVBUF`), so that what it has not
    /// read waits on the other side of the connection; 0 leaves the
    /// kernel's autotuned default.
    pub recv_buffer: usize,
    /// Longest the whole script may take; at this point it closes and
    /// reports [`End::GaveUp`] (a stalled reader's normal end).
    pub limit: Duration,
}

/// How a peer writes.
#[derive(Debug, Clone, Default)]
pub struct Writing {
    /// Wait before the first byte.
    pub delay: Duration,
    /// Random wait between writes, up to this much (seeded).
    pub jitter: Duration,
    /// Random write sizes from 1 to this many bytes (seeded); 0 writes
    /// 64 KiB at a time.
    pub max_segment: usize,
    /// At most this many bytes a second (0: no cap).
    pub rate: u64,
}

/// How a peer reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reading {
    /// As fast as bytes come.
    #[default]
    Normal,
    /// At most this many bytes a second.
    Rate(u64),
    /// Stops reading after `at` bytes for `pause`, then reads on.
    Pause { at: usize, pause: Duration },
    /// Never reads: bytes pile up in its receive queue.
    Stall,
}

/// What a peer does once it has sent all its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Then {
    /// Keeps the connection open, reading, until the other side ends it.
    #[default]
    Keep,
    /// `shutdown(SHUT_WR)`: a FIN after the bytes, reading on.
    HalfClose,
    /// Closes the socket (a FIN, or a reset if received bytes were left
    /// unread) without reading further.
    Close,
    /// Waits until the other side has acknowledged every byte (its send
    /// queue in `/proc/net/tcp` is empty, up to `limit`), then closes
    /// with `SO_LINGER` 0: a reset after exactly `send` delivered bytes.
    Reset,
    /// Resets at once after the last write: bytes still in its own send
    /// queue are discarded with the connection.
    ResetNow,
}

/// What one end saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Every byte it read, in order.
    pub received: Vec<u8>,
    /// How its reading ended.
    pub end: End,
    /// Bytes its writes took.
    pub sent: usize,
    /// The error that stopped its writing, if one did.
    pub write_error: Option<ErrorKind>,
    /// Bytes of `sent` not yet acknowledged when it closed (0 after a
    /// [`Then::Reset`] that waited successfully; `u64::MAX` if
    /// `/proc/net/tcp` did not say).
    pub unacked: u64,
}

/// How the reading of one end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A FIN from the other side, after every byte.
    Eof,
    /// `ECONNRESET`.
    Reset,
    /// Another error.
    Error(ErrorKind),
    /// It closed the connection itself (its script's [`Then::Close`] or
    /// a reset).
    Closed,
    /// Its script's `limit` passed first.
    GaveUp,
}

impl Script {
    /// Sends `send` bytes of `pattern(seed)` as fast as it can, reads
    /// everything, and keeps the connection open until the other side
    /// ends it; at most `limit`.
    pub fn new(seed: u64, send: usize, limit: Duration) -> Script {
        Script {
            seed,
            send,
            write: Writing::default(),
            read: Reading::Normal,
            then: Then::Keep,
            recv_buffer: 0,
            limit,
        }
    }

    /// A peer that accepts or connects and then does nothing at all until
    /// `limit`: it neither reads nor writes.
    pub fn silent(limit: Duration) -> Script {
        Script {
            read: Reading::Stall,
            ..Script::new(0, 0, limit)
        }
    }

    pub fn writing(mut self, w: Writing) -> Script {
        self.write = w;
        self
    }

    pub fn reading(mut self, r: Reading) -> Script {
        self.read = r;
        self
    }

    pub fn recv_buffer(mut self, bytes: usize) -> Script {
        self.recv_buffer = bytes;
        self
    }

    pub fn then(mut self, t: Then) -> Script {
        self.then = t;
        self
    }
}

impl Seen {
    /// Whether every byte received is the start of `pattern(seed)`: none
    /// lost, altered, reordered or added before the end.
    pub fn is_prefix_of(&self, seed: u64) -> bool {
        self.received == crate::pattern(seed, self.received.len())
    }

    /// Panics unless exactly the `len` bytes of `pattern(seed)` arrived, in
    /// order, and the reading ended with `end`.
    pub fn assert_got(&self, what: &str, seed: u64, len: usize, end: End) {
        assert!(
            self.is_prefix_of(seed),
            "{what}: the bytes received are not the ones sent ({} bytes, {:?})",
            self.received.len(),
            self.end
        );
        assert_eq!(
            (self.received.len(), self.end),
            (len, end),
            "{what}: bytes received and how the stream ended"
        );
    }
}

#[cfg(test)]
mod tests;
