//! The fake network of the relay model: every pair's two sockets as the
//! kernel would keep them (what each peer sent, what the proxy read and
//! wrote, send-buffer room, FIN and reset), the pipes' contents, and the
//! queue of epoll events not yet delivered. It implements the table's
//! [`Sockets`] and the relay's [`Io`], and checks as it goes that what
//! reaches a destination is a prefix of what its source sent, that a FIN
//! or a graceful close comes only after everything owed, and that a reset
//! is passed on — as a reset, never a FIN — only after the other side's
//! kernel has acknowledged everything the side that reset had sent.

use crate::pipes::PipeId;
use crate::relay::Io;
use crate::table::Sockets;
use netio::sys::epoll::{ERR, HUP, IN, OUT, RDHUP};
use netio::{Errno, Outcome, Side, Token};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// One socket of a pair, seen from both ends.
#[derive(Debug, Default)]
pub struct Sock {
    /// Everything the peer sent to the proxy, in order.
    pub from_peer: Vec<u8>,
    /// How much of it the proxy has read.
    pub taken: usize,
    /// How much of it had arrived when its last IN edge was delivered.
    pub announced: usize,
    pub peer_fin: bool,
    pub peer_reset: bool,
    /// Everything the proxy wrote to the peer.
    pub to_peer: Vec<u8>,
    /// How much of it the peer's kernel has acknowledged.
    pub acked: usize,
    /// The proxy has seen this peer's reset (an error edge or a read).
    pub reset_seen: bool,
    /// The reset has been reported by a read or a write: as in the kernel
    /// (`sock_error` clears it), later reads find the end of the stream.
    pub reset_reported: bool,
    /// Free space in the send buffer.
    pub room: usize,
    /// The proxy shut its write side down (its FIN).
    pub fin_out: bool,
    /// Closed by the proxy: `Some(true)` with a reset.
    pub closed: Option<bool>,
    /// For the backend: the connect has completed.
    pub connected: bool,
    /// For the backend: the connect has failed (it never completes).
    pub refused: bool,
    /// For the backend of a queued pair: there is no socket yet.
    pub absent: bool,
}

impl Sock {
    fn unread(&self) -> usize {
        self.from_peer.len() - self.taken
    }
}

/// The two sockets of one pair.
#[derive(Debug)]
pub struct Pair {
    pub gen: u32,
    pub socks: [Sock; 2],
    /// What the harness was doing when the table closed it.
    pub closed_by: &'static str,
    /// Backends tried for it so far, the first included.
    pub tries: u32,
}

impl Pair {
    pub fn sock(&mut self, side: Side) -> &mut Sock {
        &mut self.socks[side.index()]
    }
}

/// The network.
pub struct FakeNet {
    /// By slot: the pair the table has there now.
    pub pairs: Vec<Option<Pair>>,
    /// Pairs the table has closed, for the final checks.
    pub closed: Vec<Pair>,
    /// Pipe contents, by pipe id.
    pub pipes: Vec<VecDeque<u8>>,
    pub pipe_size: usize,
    /// Events queued by the "kernel", delivered in batches.
    pub queue: VecDeque<(u64, u32)>,
    pub rng: StdRng,
    /// What each kind of event and outcome was seen, for coverage.
    pub seen: BTreeMap<String, u64>,
    /// Broken invariants, with what was going on.
    pub violations: Vec<String>,
    /// I/O calls made so far (a stale event must make none).
    pub io_calls: u64,
    /// The next pipe renewal fails.
    pub fail_renewal: bool,
    /// What the harness is doing (recorded on the pairs it closes).
    pub cause: &'static str,
    /// The table delivers, then passes a reset on (else at once).
    pub flush_on: bool,
    /// Slots the table is closing because their flush timed out.
    pub flush_timed_out: Vec<usize>,
    /// Backend tokens whose socket a retry replaced (their old edges are
    /// gone with it).
    pub replaced: Vec<u64>,
    /// Backends a client may try in all: `--connect-retries`, or fewer if
    /// there are fewer backends.
    pub tries_allowed: u32,
    /// Backends have a connection limit: a client whose backend reset
    /// before any byte may find every other one full, and is then closed
    /// rather than moved on (it does not go back to the queue).
    pub limited: bool,
}

impl FakeNet {
    pub fn new(slots: usize, pipes: usize, pipe_size: usize, rng: StdRng) -> FakeNet {
        FakeNet {
            pairs: (0..slots).map(|_| None).collect(),
            closed: Vec::new(),
            pipes: vec![VecDeque::new(); pipes],
            pipe_size,
            queue: VecDeque::new(),
            rng,
            seen: BTreeMap::new(),
            violations: Vec::new(),
            io_calls: 0,
            fail_renewal: false,
            cause: "events",
            flush_on: false,
            flush_timed_out: Vec::new(),
            replaced: Vec::new(),
            tries_allowed: 1,
            limited: false,
        }
    }

    pub fn see(&mut self, what: impl Into<String>) {
        *self.seen.entry(what.into()).or_default() += 1;
    }

    /// Queues an edge for one socket.
    pub fn edge(&mut self, slot: usize, side: Side, bits: u32) {
        let Some(p) = self.pairs[slot].as_ref() else {
            return;
        };
        let t = Token::new(slot, p.gen, side).encode();
        self.queue.push_back((t, bits));
    }

    /// A new pair in `slot` at `gen`; its client is connected, its backend
    /// too if `connected`. Queues the edges the kernel gives on
    /// registration.
    pub fn open(&mut self, slot: usize, gen: u32, connected: bool) {
        self.open_pair(slot, gen, connected, false);
    }

    /// A new pair in `slot` at `gen` whose client waits in the queue: no
    /// backend socket until the table connects one ([`Sockets::reconnect`]).
    pub fn open_queued(&mut self, slot: usize, gen: u32) {
        self.open_pair(slot, gen, false, true);
    }

    fn open_pair(&mut self, slot: usize, gen: u32, connected: bool, queued: bool) {
        let room = |rng: &mut StdRng| rng.gen_range(0..=8192);
        let mut p = Pair {
            gen,
            socks: [Sock::default(), Sock::default()],
            closed_by: "",
            tries: 1,
        };
        p.socks[0].connected = true;
        p.socks[0].room = room(&mut self.rng);
        p.socks[1].connected = connected;
        p.socks[1].absent = queued;
        p.socks[1].room = room(&mut self.rng);
        self.pairs[slot] = Some(p);
        self.edge(slot, Side::Client, OUT);
        if connected {
            self.edge(slot, Side::Backend, OUT);
        }
    }

    /// Marks an IN edge for `side` as delivered (what had arrived by then
    /// is now the proxy's to know about).
    /// `open`: the table's pair is still open (not already closing).
    pub fn delivered(&mut self, t: Token, bits: u32, open: bool) {
        if bits & (IN | RDHUP | HUP | ERR) == 0 {
            return;
        }
        if let Some(p) = self.pairs[t.index()].as_mut().filter(|p| p.gen == t.gen) {
            let s = p.sock(t.side);
            s.announced = s.from_peer.len();
            s.reset_seen |= open && s.peer_reset && bits & ERR != 0;
        }
    }

    /// The peer of `side` sends `data`.
    pub fn peer_sends(&mut self, slot: usize, side: Side, data: &[u8]) {
        if let Some(p) = self.pairs[slot].as_mut() {
            let s = p.sock(side);
            if s.connected && !s.peer_fin && !s.peer_reset && s.closed.is_none() {
                s.from_peer.extend_from_slice(data);
                self.edge(slot, side, IN);
            }
        }
    }

    /// The peer of `side` sends its FIN.
    pub fn peer_fin(&mut self, slot: usize, side: Side) {
        if let Some(p) = self.pairs[slot].as_mut() {
            let s = p.sock(side);
            if s.connected && !s.peer_fin && !s.peer_reset && s.closed.is_none() {
                s.peer_fin = true;
                self.edge(slot, side, IN | RDHUP);
            }
        }
    }

    /// The peer of `side` resets the connection.
    pub fn peer_reset(&mut self, slot: usize, side: Side) {
        if let Some(p) = self.pairs[slot].as_mut() {
            let s = p.sock(side);
            if s.connected && !s.peer_reset && s.closed.is_none() {
                s.peer_reset = true;
                self.edge(slot, side, IN | OUT | RDHUP | HUP | ERR);
            }
        }
    }

    /// The peer of `side` reads `n` bytes: that much more room.
    pub fn peer_reads(&mut self, slot: usize, side: Side, n: usize) {
        if let Some(p) = self.pairs[slot].as_mut() {
            let s = p.sock(side);
            if s.connected && s.closed.is_none() {
                s.room = s.room.saturating_add(n);
                s.acked = s.to_peer.len().min(s.acked.saturating_add(n));
                self.edge(slot, side, OUT);
            }
        }
    }

    /// The backend connect of `slot` completes, or fails.
    pub fn connect_done(&mut self, slot: usize, ok: bool) {
        if let Some(p) = self.pairs[slot].as_mut() {
            let s = p.sock(Side::Backend);
            if s.connected || s.refused || s.absent || s.closed.is_some() {
                return;
            }
            if ok {
                s.connected = true;
                self.edge(slot, Side::Backend, OUT);
            } else {
                s.refused = true;
                self.edge(slot, Side::Backend, ERR | HUP);
            }
        }
    }

    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Checks that the bytes written into `to` from offset `at` on continue
    /// what the other socket's peer sent: with every write checked, all
    /// that reached the destination is a prefix of its source, in order.
    fn check_prefix(&mut self, slot: usize, to: Side, at: usize) {
        let Some(p) = self.pairs[slot].as_ref() else {
            return;
        };
        let (dst, src) = (&p.socks[to.index()], &p.socks[to.other().index()]);
        let new = &dst.to_peer[at..];
        let sent = src.from_peer.get(at..at + new.len());
        if sent != Some(new) {
            let off = sent.map_or(src.from_peer.len(), |sent| {
                at + sent.iter().zip(new).position(|(a, b)| a != b).unwrap_or(0)
            });
            self.violation(format!(
                "slot {slot}: bytes to the {} differ from what the {} sent, at offset {off} \
                 ({} written, {} sent)",
                to.name(),
                to.other().name(),
                dst.to_peer.len(),
                src.from_peer.len()
            ));
        }
    }

    /// The socket `side` of `slot`, for an I/O call: counts the call and
    /// refuses a socket that is closed or not connected.
    fn sock_for_io(&mut self, slot: usize, side: Side, what: &str) -> Option<&mut Sock> {
        self.io_calls += 1;
        let ok = self.pairs[slot]
            .as_ref()
            .map(|p| &p.socks[side.index()])
            .is_some_and(|s| s.connected && s.closed.is_none());
        if !ok {
            self.violation(format!(
                "slot {slot}: {what} on the {} socket, which is closed or not connected",
                side.name()
            ));
            return None;
        }
        self.pairs[slot].as_mut().map(|p| p.sock(side))
    }
}

/// One pair's sockets, for the relay.
pub struct FakePair<'a> {
    pub net: &'a mut FakeNet,
    pub slot: usize,
}

const CLOSED: Outcome = Outcome::Error(Errno::BAD_DESCRIPTOR);

/// What a read of up to `len` bytes of `s` gets.
fn take_in(s: &mut Sock, len: usize) -> (Outcome, Vec<u8>) {
    let n = s.unread().min(len);
    if n > 0 {
        let data = s.from_peer[s.taken..s.taken + n].to_vec();
        s.taken += n;
        return (Outcome::Data(n), data);
    }
    let o = if s.peer_reset && !s.reset_reported {
        s.reset_seen = true;
        s.reset_reported = true;
        Outcome::Reset
    } else if s.peer_reset || s.peer_fin {
        // A reset already reported reads as the end of the stream.
        Outcome::Eof
    } else {
        Outcome::WouldBlock
    };
    (o, Vec::new())
}

/// What a write of `len` bytes into `s` can take.
fn room_for(s: &mut Sock, len: usize) -> Result<usize, Outcome> {
    if s.peer_reset {
        s.reset_seen = true;
        s.reset_reported = true;
        return Err(Outcome::Reset);
    }
    if s.fin_out {
        return Err(Outcome::Reset);
    }
    match s.room.min(len) {
        0 => Err(Outcome::WouldBlock),
        n => Ok(n),
    }
}

fn outcome_name(o: Outcome, full: bool) -> &'static str {
    match o {
        Outcome::Data(_) if full => "full",
        Outcome::Data(_) => "short",
        Outcome::Eof => "eof",
        Outcome::WouldBlock => "eagain",
        Outcome::Reset => "reset",
        Outcome::Error(_) => "error",
    }
}

impl Io for FakePair<'_> {
    fn read(&mut self, from: Side, buf: &mut [u8]) -> Outcome {
        let Some(s) = self.net.sock_for_io(self.slot, from, "read") else {
            return CLOSED;
        };
        let (o, data) = take_in(s, buf.len());
        buf[..data.len()].copy_from_slice(&data);
        let full = data.len() == buf.len();
        self.net.see(format!("read:{}", outcome_name(o, full)));
        o
    }

    fn write(&mut self, to: Side, data: &[u8]) -> Outcome {
        let Some(s) = self.net.sock_for_io(self.slot, to, "write") else {
            return CLOSED;
        };
        let at = s.to_peer.len();
        let o = match room_for(s, data.len()) {
            Ok(n) => {
                s.to_peer.extend_from_slice(&data[..n]);
                s.room -= n;
                Outcome::Data(n)
            }
            Err(o) => o,
        };
        let full = o == Outcome::Data(data.len());
        self.net.see(format!("write:{}", outcome_name(o, full)));
        self.net.check_prefix(self.slot, to, at);
        o
    }

    fn splice_in(&mut self, from: Side, pipe: &PipeId, len: usize) -> Outcome {
        // A splice may move less than there is: the pipe can run out of
        // slots. Sometimes it does here.
        let cap = if self.net.rng.gen_bool(0.3) {
            self.net.rng.gen_range(1..=len.max(1))
        } else {
            len
        };
        let room = self.net.pipe_size - self.net.pipes[pipe.index()].len();
        let Some(s) = self.net.sock_for_io(self.slot, from, "splice in") else {
            return CLOSED;
        };
        let (o, data) = take_in(s, cap.min(room));
        let partial = s.unread() > 0;
        self.net.pipes[pipe.index()].extend(data);
        self.net
            .see(format!("splice_in:{}", outcome_name(o, !partial)));
        o
    }

    fn splice_out(&mut self, pipe: &PipeId, to: Side, len: usize) -> Outcome {
        let queued = self.net.pipes[pipe.index()].len();
        if queued < len {
            self.net.violation(format!(
                "slot {}: splice of {len} out of a pipe holding {queued}",
                self.slot
            ));
        }
        let Some(s) = self.net.sock_for_io(self.slot, to, "splice out") else {
            return CLOSED;
        };
        let at = s.to_peer.len();
        let o = match room_for(s, len.min(queued)) {
            Ok(n) => {
                let moved: Vec<u8> = self.net.pipes[pipe.index()].drain(..n).collect();
                if let Some(s) = self.net.pairs[self.slot].as_mut().map(|p| p.sock(to)) {
                    s.to_peer.extend_from_slice(&moved);
                    s.room -= n;
                }
                Outcome::Data(n)
            }
            Err(o) => o,
        };
        let full = o == Outcome::Data(len);
        self.net
            .see(format!("splice_out:{}", outcome_name(o, full)));
        self.net.check_prefix(self.slot, to, at);
        o
    }

    fn shutdown(&mut self, to: Side) -> Outcome {
        let slot = self.slot;
        let Some(s) = self.net.sock_for_io(slot, to, "shutdown") else {
            return CLOSED;
        };
        s.fin_out = true;
        let delivered = s.to_peer.len();
        let reset = s.peer_reset;
        self.net.see("shutdown");
        let Some(p) = self.net.pairs[slot].as_ref() else {
            return CLOSED;
        };
        let src = &p.socks[to.other().index()];
        if !src.peer_fin || delivered != src.from_peer.len() {
            let what = format!(
                "slot {slot}: FIN passed to the {} after {delivered} of {} bytes (source FIN: {})",
                to.name(),
                src.from_peer.len(),
                src.peer_fin
            );
            self.net.violation(what);
        }
        if reset {
            Outcome::Reset
        } else {
            Outcome::Data(0)
        }
    }
}

impl Sockets for FakeNet {
    fn pair(&mut self, slot: usize) -> impl Io + '_ {
        FakePair { net: self, slot }
    }

    fn connect_error(&mut self, _slot: usize) -> Option<Errno> {
        self.see("connect_error");
        Some(Errno::of(&std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    fn close(&mut self, slot: usize, abort: [bool; 2]) {
        let Some(mut p) = self.pairs[slot].take() else {
            self.violation(format!("slot {slot} closed twice"));
            return;
        };
        // A backend that reset before any byte either way, with another
        // backend left to try, is a failed try: the client moves on.
        let (c, b) = (&p.socks[0], &p.socks[1]);
        let untouched = b.to_peer.is_empty() && b.taken == 0 && !b.peer_fin;
        let retry_due = b.connected && b.peer_reset && b.reset_seen && untouched;
        let may_retry = p.tries < self.tries_allowed && !self.limited;
        if self.cause == "events" && retry_due && !c.peer_reset && may_retry {
            let what = format!(
                "slot {slot}: the backend reset before any byte, and the client was closed \
                 on try {} of {} instead of moved on",
                p.tries, self.tries_allowed
            );
            self.violation(what);
        }
        for side in Side::BOTH {
            let aborted = abort[side.index()];
            self.see(format!(
                "close:{}:{}",
                side.name(),
                if aborted { "reset" } else { "fin" }
            ));
            let src = &p.socks[side.other().index()];
            let (src_announced, src_sent) = (src.announced, src.from_peer.len());
            let (src_reset, src_reset_seen) = (src.peer_reset, src.reset_seen);
            let timed_out = self.flush_timed_out.contains(&slot);
            let s = &p.socks[side.index()];
            let alive = s.connected && !s.peer_reset;
            // A reset the proxy saw is passed on as a reset, never a FIN.
            if !aborted && alive && src_reset_seen {
                let what = format!(
                    "slot {slot}: the {} was closed with a FIN though the {} reset (while {})",
                    side.name(),
                    side.other().name(),
                    self.cause
                );
                self.violations.push(what);
            }
            // Deliver, then reset: before a reset passed on, the other side
            // has had, and acknowledged, all the side that reset sent.
            let owed = s.to_peer.len() < src_sent || s.acked < s.to_peer.len();
            if self.flush_on && aborted && alive && src_reset && !timed_out && owed {
                if self.cause == "events" {
                    let what = format!(
                        "slot {slot}: the {} reset, and the reset was passed to the {} \
                         after {} of {src_sent} bytes, {} of them acknowledged",
                        side.other().name(),
                        side.name(),
                        s.to_peer.len(),
                        s.acked
                    );
                    self.violations.push(what);
                }
            } else if self.flush_on && aborted && alive && src_reset && !owed {
                self.see("flush:delivered");
            }
            if timed_out && aborted && alive && src_reset {
                self.see("flush:timed_out");
            }
            let s = p.sock(side);
            s.closed = Some(aborted);
            // A graceful close tells the peer the stream is complete: it
            // must have had everything the proxy knew had arrived for it.
            if !aborted && s.connected && !s.peer_reset && s.to_peer.len() < src_announced {
                let what = format!(
                    "slot {slot}: the {} was closed with a FIN after {} of {src_announced} bytes \
                     (while {}; resets {abort:?})",
                    side.name(),
                    s.to_peer.len(),
                    self.cause
                );
                self.violations.push(what);
            }
        }
        p.closed_by = self.cause;
        self.closed.push(p);
        self.flush_timed_out.retain(|&s| s != slot);
    }

    fn reconnect(&mut self, slot: usize, gen: u32, _addr: SocketAddr) -> Result<bool, Errno> {
        self.io_calls += 1;
        let token = Token::new(slot, gen, Side::Backend).encode();
        let Some(p) = self.pairs[slot].as_mut().filter(|p| p.gen == gen) else {
            self.violation(format!("slot {slot}: a retry for a pair that is not there"));
            return Err(Errno::BAD_DESCRIPTOR);
        };
        p.tries += 1;
        let old = &p.socks[Side::Backend.index()];
        let after_reset = old.connected && old.peer_reset;
        if !old.to_peer.is_empty() || old.taken > 0 {
            let what = format!(
                "slot {slot}: retried on another backend after {} bytes went to the first and {} \
                 came from it",
                old.to_peer.len(),
                old.taken
            );
            self.violation(what);
        }
        let mut s = Sock {
            room: self.rng.gen_range(0..=8192),
            ..Sock::default()
        };
        self.queue.retain(|&(t, _)| t != token);
        self.replaced.push(token);
        let got = match self.rng.gen_range(0..10) {
            0..=1 => {
                s.refused = true;
                Err(Errno::of(&std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                )))
            }
            2 => {
                s.connected = true;
                Ok(true)
            }
            _ => Ok(false),
        };
        if let Some(p) = self.pairs[slot].as_mut() {
            p.socks[Side::Backend.index()] = s;
        }
        if got == Ok(true) {
            self.edge(slot, Side::Backend, OUT);
        }
        if after_reset {
            self.see("reconnect:after_reset");
        }
        self.see(match got {
            Ok(true) => "reconnect:at_once",
            Ok(false) => "reconnect:pending",
            Err(_) => "reconnect:failed",
        });
        got
    }

    fn local_addr(&mut self, _slot: usize) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 9)))
    }

    fn unacked(&mut self, slot: usize, side: Side) -> Option<usize> {
        let s = self.sock_for_io(slot, side, "unacked")?;
        let n = s.to_peer.len() - s.acked;
        self.see(if n == 0 { "unacked:0" } else { "unacked:some" });
        Some(n)
    }

    fn renew_pipe(&mut self, pipe: &PipeId) -> bool {
        self.pipes[pipe.index()].clear();
        if std::mem::take(&mut self.fail_renewal) {
            self.see("pipe:retired");
            false
        } else {
            self.see("pipe:renewed");
            true
        }
    }
}
