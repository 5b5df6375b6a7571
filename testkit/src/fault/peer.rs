//! Plays a [`Script`] on a socket: one thread, a non-blocking socket, and
//! short sleeps while the script waits (a delay, the rate cap, a pause) or
//! the socket is not ready.

use super::{End, Reading, Script, Seen, Then};
use crate::proc;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes a write or read moves at most.
const CHUNK: usize = 64 << 10;
/// How long the loop sleeps when nothing moved.
const NAP: Duration = Duration::from_millis(1);

/// Plays `script` on `stream` and reports what this end saw. The socket
/// is closed when it returns.
pub fn run(stream: TcpStream, script: &Script) -> Seen {
    Peer::new(stream, script).play()
}

/// A tiny seeded xorshift for segment sizes and jitter.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number below `n` (0 if `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            self.0 % n
        }
    }
}

struct Peer<'a> {
    stream: Option<TcpStream>,
    script: &'a Script,
    data: Vec<u8>,
    buf: Vec<u8>,
    rng: Rng,
    start: Instant,
    deadline: Instant,
    next_write: Instant,
    paused_until: Option<Instant>,
    seen: Seen,
    sending: bool,
    reading: bool,
}

impl<'a> Peer<'a> {
    fn new(stream: TcpStream, script: &'a Script) -> Peer<'a> {
        let start = Instant::now();
        if script.recv_buffer > 0 {
            netio::sys::socket::set_recv_buffer(&stream, script.recv_buffer)
                .unwrap_or_else(|e| panic!("SO_RCVBUF {}: {e}", script.recv_buffer));
        }
        Peer {
            stream: stream.set_nonblocking(true).ok().map(|()| stream),
            script,
            data: crate::pattern(script.seed, script.send),
            buf: vec![0u8; CHUNK],
            rng: Rng::new(script.seed),
            start,
            deadline: start + script.limit,
            next_write: start + script.write.delay,
            paused_until: None,
            seen: Seen {
                received: Vec::new(),
                end: End::GaveUp,
                sent: 0,
                write_error: None,
                unacked: 0,
            },
            sending: true,
            reading: true,
        }
    }

    fn play(mut self) -> Seen {
        if self.stream.is_none() {
            self.seen.end = End::Error(ErrorKind::Other);
            return self.seen;
        }
        if self.script.send == 0 {
            self.finish_sending();
        }
        while self.stream.is_some() && (self.sending || self.reading) {
            if Instant::now() >= self.deadline {
                self.seen.end = End::GaveUp;
                break;
            }
            let wrote = self.sending && self.write_some();
            let read = self.reading && self.read_some();
            if !wrote && !read {
                thread::sleep(NAP);
            }
        }
        if let Some(s) = self.stream.take() {
            self.seen.unacked = unacked(&s).unwrap_or(u64::MAX);
        }
        self.seen
    }

    /// One write if the script allows one now; whether bytes moved.
    fn write_some(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_write {
            return false;
        }
        let w = &self.script.write;
        let mut len = if w.max_segment == 0 {
            CHUNK
        } else {
            1 + self.rng.below(w.max_segment as u64) as usize
        };
        if w.rate > 0 {
            let allowed = allowance(w.rate, now - (self.start + w.delay), self.seen.sent);
            if allowed == 0 {
                return false;
            }
            len = len.min(allowed);
        }
        let end = (self.seen.sent + len).min(self.data.len());
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        match s.write(&self.data[self.seen.sent..end]) {
            Ok(n) => {
                self.seen.sent += n;
                let jitter = w.jitter.as_micros() as u64;
                self.next_write = now + Duration::from_micros(self.rng.below(jitter + 1));
                if self.seen.sent == self.data.len() {
                    self.finish_sending();
                }
                n > 0
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                false
            }
            Err(e) => {
                self.seen.write_error = Some(e.kind());
                self.sending = false;
                // The kernel reports a reset once: to this write. A read
                // after it would see a plain end of stream.
                if e.kind() == ErrorKind::ConnectionReset {
                    self.seen.end = End::Reset;
                    self.reading = false;
                }
                false
            }
        }
    }

    /// Applies the script's [`Then`] once everything is sent.
    fn finish_sending(&mut self) {
        self.sending = false;
        let Some(s) = self.stream.as_ref() else {
            return;
        };
        match self.script.then {
            Then::Keep => {}
            Then::HalfClose => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Then::Close => self.close(false),
            Then::Reset => {
                let left = wait_acked(s, self.deadline);
                self.close(true);
                self.seen.unacked = left;
            }
            Then::ResetNow => self.close(true),
        }
    }

    /// Closes the socket, with a reset if `reset`.
    fn close(&mut self, reset: bool) {
        if let Some(s) = self.stream.take() {
            self.seen.unacked = unacked(&s).unwrap_or(u64::MAX);
            if reset {
                let _ = netio::sys::socket::set_linger_zero(&s);
            }
            self.seen.end = End::Closed;
            self.reading = false;
        }
    }

    /// One read if the script allows one now; whether bytes moved.
    fn read_some(&mut self) -> bool {
        let now = Instant::now();
        let got = self.seen.received.len();
        let mut room = CHUNK;
        match self.script.read {
            Reading::Normal => {}
            Reading::Stall => return false,
            Reading::Rate(rate) => {
                room = allowance(rate, now - self.start, got).min(CHUNK);
                if room == 0 {
                    return false;
                }
            }
            Reading::Pause { at, pause } => {
                if got >= at {
                    let until = *self.paused_until.get_or_insert(now + pause);
                    if now < until {
                        return false;
                    }
                } else {
                    room = room.min(at - got);
                }
            }
        }
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        match s.read(&mut self.buf[..room]) {
            Ok(0) => {
                self.seen.end = End::Eof;
                self.reading = false;
                false
            }
            Ok(n) => {
                self.seen.received.extend_from_slice(&self.buf[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                false
            }
            Err(e) => {
                self.seen.end = if e.kind() == ErrorKind::ConnectionReset {
                    End::Reset
                } else {
                    End::Error(e.kind())
                };
                self.reading = false;
                // A reset connection takes no more bytes either.
                self.sending = false;
                false
            }
        }
    }
}

/// Bytes a `rate` bytes/s budget still allows after `elapsed`, `done`
/// having moved already.
fn allowance(rate: u64, elapsed: Duration, done: usize) -> usize {
    let budget = (rate as u128 * elapsed.as_micros() / 1_000_000) as usize;
    budget.saturating_sub(done)
}

/// Bytes the socket's kernel still holds unacknowledged, from
/// `/proc/net/tcp`; `None` if the connection is not found there (it is
/// gone after a reset; and the table is read without a lock, so a line
/// may be skipped while sockets come and go).
fn unacked(s: &TcpStream) -> Option<u64> {
    let (Ok(l), Ok(r)) = (s.local_addr(), s.peer_addr()) else {
        return None;
    };
    proc::tcp_socket(l, r).map(|t| t.tx_queue)
}

/// Waits until the other side has acknowledged every byte written on `s`,
/// or until `deadline`; returns what is still unacknowledged then
/// (`u64::MAX` if unknown). A miss in the table is tried again.
fn wait_acked(s: &TcpStream, deadline: Instant) -> u64 {
    loop {
        let left = unacked(s).unwrap_or(u64::MAX);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
