//! The io_uring engine: the same table, relay and rules as the epoll
//! engine, over completions instead of readiness.
//!
//! Each socket has a multishot receive submitted for as long as it may
//! give data; the kernel fills buffers of the worker's provided-buffer ring
//! (consumed incrementally where the kernel can, so a small message takes
//! only its own bytes) and each completion's piece waits in that side's
//! inbox. The relay's reads take from the inbox — no system call — and its
//! writes copy into a send buffer of the ring and submit one send; while
//! it is in flight the direction is "not writable" (one send in flight per
//! direction keeps the order), and its completion is the `OUT` edge. So
//! the relay's readiness rules ([`netio::Ready`]) hold unchanged: this
//! engine turns completions into the edges epoll would have given.
//!
//! - Backpressure: a direction whose destination is full keeps what
//!   arrived in a stash of its own (the ring's buffers go back at the end
//!   of every batch, so a stalled pair cannot starve the others), and its
//!   receive is cancelled (not submitted again while its destination is
//!   full) until the relay has taken the stash: then the kernel's window
//!   closes, as it does under epoll when the proxy stops reading. What one
//!   direction holds beyond the relay's buffer is what its last receive
//!   brought: at most `RECV_TOTAL` bytes (`RECV_CONGESTED` once its
//!   destination was found full).
//! - Bulk: a direction the relay splices (a stream) has no receive; its
//!   socket is read with `splice(2)` into the relay's pipe whenever a
//!   one-shot poll says it is readable (what a receive brought before goes
//!   into the pipe first; a multishot poll watches for a reset meanwhile),
//!   and the pipe is spliced into a destination that a multishot poll for
//!   room says has some: epoll's bulk path, with the ring's polls for its
//!   edges. (`IORING_OP_SPLICE` runs in an io-wq thread.)
//! - Half-close: the FIN is a `shutdown(2)` once the direction's send
//!   completed (io_uring's `SHUTDOWN` is always run by a worker thread).
//! - Teardown: cancel-then-close, hard-linked, so no request outlives its
//!   socket; a graceful close waits for the last send to complete first.
//! - Connects: `socket(2)` (running out of descriptors is then found
//!   before the pair opens, as under epoll), then `TCP_NODELAY` and the
//!   connect through the ring, linked; its completion is the connect's
//!   edge. Where the kernel cannot set options through the ring, the
//!   connect is a system call and an in-progress one completes through a
//!   one-shot poll.
//! - Accepts: a few single-shot accepts stay submitted, each with its own
//!   address slot, so the client's address (for the access lists, the
//!   balancer and the PROXY header) comes with the accept, without a
//!   `getpeername` a multishot accept would need.
//! - The control waker and the health checks' sockets stay on a small
//!   epoll instance, itself polled through the ring.
//!
//! Every request carries a tag: its operation, the slot and side, and the
//! side's epoch, bumped whenever its socket is closed or replaced, so a
//! completion for a socket that is gone is recognised and only its
//! buffers are taken back.

use crate::config::Config;
use crate::engine::{Engine, Event};
use crate::pipes::{PipeId, Pipes};
use crate::relay;
use crate::stats::Stats;
use crate::table::Sockets;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::uring::{self, Completion, Counts, Piece, Ring, RingSize, SendId};
use netio::sys::{pipe, socket};
use netio::{Errno, Outcome, Side, Source, Token};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Submission-queue entries of a worker's ring.
const RING_ENTRIES: u32 = 1024;
/// Provided buffers of a worker's ring, and their size: 1 MiB a worker,
/// whatever the number of connections.
const RING_BUFFERS: u16 = 32;
const RING_BUFFER_SIZE: u32 = 32 * 1024;
/// The most one receive completion brings: the kernel runs a multishot
/// receive up to 32 times before it yields, so this bounds what one
/// direction can take in a batch before its pause takes effect.
const RECV_MOST: u32 = 16 * 1024;
/// The most one submitted receive brings in all before it ends and is
/// submitted again (only once what it brought was taken): what a direction
/// can hold beyond the relay's buffer while its destination is full.
const RECV_TOTAL: u32 = 16 * 1024;
/// What a receive brings, in all, to a direction whose destination was
/// full the last time: what it holds beyond the relay's buffer while its
/// destination stays full.
const RECV_CONGESTED: u32 = 4 * 1024;
/// Writes this large are a stream's (larger than any receive brings):
/// made with a system call; what the socket does not take is then sent
/// through the ring.
const WRITE_AT_ONCE: usize = RECV_MOST as usize + 1;
/// Whether this kernel takes the receives' total limit; cleared (for every
/// worker) at the first receive it refuses.
static TOTAL_LIMIT: AtomicBool = AtomicBool::new(true);
/// Side-epoll events fetched at a time.
const SIDE_EVENTS: usize = 64;
/// Accepts kept submitted at once.
const ACCEPTS: usize = 8;
/// A direction's stash size from which its receive is cancelled: any byte
/// the relay could not take. It is submitted again once the stash is empty.
pub const PAUSE_AT: usize = 1;

/// What a request was for (the tag's top bits).
mod op {
    pub const RECV: u64 = 1;
    pub const SEND: u64 = 2;
    pub const CONNECT: u64 = 4;
    pub const CLOSE: u64 = 5;
    pub const ACCEPT: u64 = 6;
    pub const SIDE: u64 = 7;
    pub const CANCEL: u64 = 8;
    pub const FAULT: u64 = 9;
    pub const POLL_IN: u64 = 10;
    pub const POLL_OUT: u64 = 11;
    /// A backend connect made by the ring, and the option set before it
    /// (its completion comes only if it failed).
    pub const LINKED: u64 = 12;
    pub const NODELAY: u64 = 13;
    /// The cancel of a ring connect for a socket given up on.
    pub const UNLINK: u64 = 14;
}

const EPOCH_MASK: u32 = 0x0FFF_FFFF;

fn tag(op: u64, epoch: u32, slot: usize, side: Side) -> u64 {
    (op << 60) | (u64::from(epoch & EPOCH_MASK) << 32) | ((slot as u64) << 1) | side.index() as u64
}

/// A receive's tag carries the low bits of the side's epoch and of its
/// own sequence number in place of the whole epoch.
const RECV_SEQ_BITS: u32 = 8;

fn recv_epoch(epoch: u32) -> u32 {
    epoch & (EPOCH_MASK >> RECV_SEQ_BITS)
}

fn recv_tag(epoch: u32, seq: u32, slot: usize, side: Side) -> u64 {
    let both = (recv_epoch(epoch) << RECV_SEQ_BITS) | (seq & ((1 << RECV_SEQ_BITS) - 1));
    tag(op::RECV, both, slot, side)
}

fn untag(t: u64) -> (u64, u32, usize, Side) {
    let side = if t & 1 == 0 {
        Side::Client
    } else {
        Side::Backend
    };
    let slot = ((t & 0xFFFF_FFFF) >> 1) as usize;
    ((t >> 60), ((t >> 32) as u32) & EPOCH_MASK, slot, side)
}

/// Where a direction's receive stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Recv {
    /// None submitted (not yet connected, ended, or out of buffers).
    #[default]
    Off,
    /// A multishot receive is submitted.
    On,
    /// Cancelled for backpressure; submitted again below the low water.
    Paused,
}

/// One socket of a pair, as the engine sees it.
#[derive(Debug, Default)]
struct End {
    fd: Option<OwnedFd>,
    epoch: u32,
    /// The table's generation for the pair, for its events.
    gen: u32,
    recv: Recv,
    /// The tag of the receive last submitted: a cancelled one may still
    /// complete after the next was submitted, and only the current one's
    /// end changes `recv`.
    recv_tag: u64,
    /// Receives submitted on this socket (part of each one's tag).
    recv_seq: u32,
    /// The destination was full when this direction last received: its
    /// receives bring little at a time until it flows again.
    congested: bool,
    /// Pieces received, oldest first, after the stash.
    inbox: VecDeque<Piece>,
    /// Bytes received and kept across batches (the destination was full).
    stash: Vec<u8>,
    /// How much of the stash the relay has taken.
    stash_at: usize,
    /// The peer's FIN arrived.
    eof: bool,
    /// A receive failed with this (reported once, then the end).
    error: Option<Errno>,
    /// A send failed with this: every later write fails too.
    broken: Option<Errno>,
    /// The send in flight, and the bytes of it not yet completed.
    send: Option<SendId>,
    unsent: usize,
    /// The FIN is to follow the send in flight.
    shutdown_pending: bool,
    /// A write found the send in flight (the relay now waits for `OUT`,
    /// as after `EAGAIN` under epoll; without one no edge is needed).
    wants_out: bool,
    /// Edges to report to the table at the end of the batch.
    bits: u32,
    /// Anything (bytes or the end) has come from this socket. Until then,
    /// writes to a backend are made at once, as epoll's are, so that a
    /// backend that reset before any byte is found with the bytes still
    /// held (and the client moves on to the next backend with them).
    heard: bool,
    /// A connect's poll is submitted.
    connecting: bool,
    /// A connect made by the ring is submitted: the socket stays open
    /// until its completion, even if given up on.
    linking: bool,
    /// Why that connect failed (what `SO_ERROR` says of one made with a
    /// system call).
    connect_err: Option<Errno>,
    /// A poll for an error or hang-up is submitted (while the receive is
    /// paused, nothing else would see a reset).
    watching: bool,
    /// This direction streams, and its socket is read with system calls
    /// as under epoll: `splice(2)` into its pipe, or `read(2)` into the
    /// relay's buffer for a stream with no pipe. No receive is submitted;
    /// a one-shot poll gives the `IN` edge once it runs dry. Its
    /// destination is then written with `write(2)` too. A plain read
    /// (the stream turned small) clears it and receives again. The order
    /// of what a cancelled receive brought late against what the system
    /// calls read holds because the ring defers its task work
    /// (`DEFER_TASKRUN`): a receive takes bytes only inside an enter, and
    /// the cancel is submitted before that work runs.
    splicing: bool,
    /// A poll for input, or for room to write, is submitted.
    polling_in: bool,
    polling_out: bool,
    /// A read of this side was turned away while the other side's send
    /// was in flight: that send's end is this side's next `IN` edge.
    gated: bool,
}

impl End {
    fn held(&self) -> usize {
        self.stash.len() - self.stash_at + self.inbox.iter().map(|p| p.len as usize).sum::<usize>()
    }

    /// How a read that found the end of this socket's stream ends. The
    /// kernel reports a socket's error once: when a send to it (a ring
    /// send that completes on its own, or a write) took a reset, what the
    /// receive then finds is only the end of the stream, and a FIN passed
    /// on for it would make a cut stream look whole. Under epoll the read
    /// would have had the error (the relay reads before it writes). The
    /// kernel says `ECONNRESET` only for a reset that came before the
    /// peer's FIN (after it, `EPIPE`); any other error (a shutdown that
    /// found the connection gone, a timeout) may follow a FIN not yet
    /// read, and the end stands, as under epoll.
    fn end_of_stream(&self) -> Outcome {
        match self.broken {
            Some(err) if err == Errno::CONNECTION_RESET => {
                Outcome::of_error(&io::Error::from_raw_os_error(err.0))
            }
            _ => Outcome::Eof,
        }
    }

    /// Copies what was received and not yet taken into `buf`, oldest
    /// first; gives the pieces emptied back to the ring.
    fn take_held(&mut self, ring: &mut Ring, buf: &mut [u8]) -> usize {
        let mut n = 0;
        if self.stash_at < self.stash.len() {
            let take = (self.stash.len() - self.stash_at).min(buf.len());
            buf[..take].copy_from_slice(&self.stash[self.stash_at..self.stash_at + take]);
            self.stash_at += take;
            n = take;
            if self.stash_at == self.stash.len() {
                // Kept only while the destination is slow.
                self.stash = Vec::new();
                self.stash_at = 0;
            }
        }
        while n < buf.len() {
            let Some(p) = self.inbox.front_mut() else {
                break;
            };
            let take = (p.len as usize).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&ring.piece(p.bid, p.at, take as u32)[..take]);
            n += take;
            p.at += take as u32;
            p.len -= take as u32;
            if p.len == 0 {
                let bid = p.bid;
                self.inbox.pop_front();
                ring.release(bid);
            }
        }
        if self.inbox.is_empty() && self.inbox.capacity() > 0 {
            // An idle connection keeps no queue: 64 bytes a side otherwise
            // (half the idle cost per connection).
            self.inbox = VecDeque::new();
        }
        n
    }

    /// Moves up to `len` of the bytes received and not yet taken into a
    /// pipe's write end, oldest first (they go ahead of anything spliced
    /// from the socket after them).
    fn held_into(&mut self, ring: &mut Ring, to: &OwnedFd, len: usize, stats: &Stats) -> Outcome {
        let mut n = 0;
        while n < len {
            let (data, piece) = if self.stash_at < self.stash.len() {
                let end = self.stash.len().min(self.stash_at + len - n);
                (&self.stash[self.stash_at..end], false)
            } else if let Some(p) = self.inbox.front() {
                let take = (p.len as usize).min(len - n) as u32;
                (ring.piece(p.bid, p.at, take), true)
            } else {
                break;
            };
            if data.is_empty() {
                debug_assert!(false, "a held piece with no bytes");
                break;
            }
            stats.sys_write.inc();
            let offered = data.len();
            let moved = match pipe::write(to, data) {
                Ok(m) => m,
                Err(err) if n == 0 => return Outcome::of_error(&err),
                Err(_) => break,
            };
            if piece {
                if let Some(p) = self.inbox.front_mut() {
                    p.at += moved as u32;
                    p.len -= moved as u32;
                    if p.len == 0 {
                        let bid = p.bid;
                        self.inbox.pop_front();
                        ring.release(bid);
                    }
                }
            } else {
                self.stash_at += moved;
                if self.stash_at == self.stash.len() {
                    self.stash = Vec::new();
                    self.stash_at = 0;
                }
            }
            n += moved;
            if moved < offered {
                break;
            }
        }
        Outcome::Data(n)
    }

    /// One `read(2)` of the socket itself, as epoll would: a stream's read,
    /// the first read of a stream back from streaming, and the read-out
    /// after a write found the peer gone (the kernel may hold what it sent
    /// before, or its end, while the receive's completion for that has
    /// not run yet: it runs only in a later enter). Only with nothing
    /// received and no completion left unreaped (one posted by a
    /// submission during this batch may hold earlier bytes), so nothing is
    /// taken out of order. `None`: nothing there now, or the end (found
    /// now or already known: `eof` says it).
    fn read_socket(&mut self, stats: &Stats, buf: &mut [u8]) -> Option<Outcome> {
        if self.error.is_some() || self.eof {
            return None;
        }
        let fd = self.fd.as_ref()?;
        stats.sys_read.inc();
        match socket::read(fd, buf) {
            Ok(0) => {
                self.eof = true;
                None
            }
            Ok(got) => {
                self.heard = true;
                Some(Outcome::Data(got))
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
            Err(err) => {
                self.eof = true;
                Some(Outcome::of_error(&err))
            }
        }
    }
}

/// `slot`'s `side` if its socket is still the one a request tagged with
/// `epoch` was for (not closed or replaced since).
fn live(ends: &mut [[End; 2]], slot: usize, side: Side, epoch: u32) -> Option<&mut End> {
    let e = &mut ends.get_mut(slot)?[side.index()];
    (e.epoch & EPOCH_MASK == epoch && e.fd.is_some()).then_some(e)
}

/// A send in flight: whom it is for, and what follows it.
#[derive(Debug)]
struct SendRec {
    slot: usize,
    side: Side,
    epoch: u32,
    fd: RawFd,
    at: usize,
    len: usize,
    /// The pair closed while it was in flight: the socket, to shut down
    /// (if `shutdown`) and close once the send completed.
    close: Option<OwnedFd>,
    shutdown: bool,
    /// Its socket was closed under it (a reset): nothing more is sent.
    orphan: bool,
}

/// The uring engine of one worker.
pub struct Uring {
    ring: Ring,
    ends: Vec<[End; 2]>,
    sends: Vec<Option<SendRec>>,
    /// The pipes the relay lends to streams.
    pipes: Pipes,
    side: Epoll,
    side_events: Events,
    stats: Arc<Stats>,
    listener: Option<RawFd>,
    accepts_free: Vec<usize>,
    reaped: Vec<(Completion, Option<Piece>)>,
    /// Ends with edges to report.
    touched: Vec<(u32, Side)>,
    /// Ends that received pieces this batch (stashed if the relay left
    /// them), with their epoch.
    holding: Vec<(u32, Side, u32)>,
    /// Ends whose receive is to be submitted again (out of buffers).
    rearm: Vec<(u32, Side, u32)>,
    seen: Counts,
    /// Accepting paused: the accepts still submitted are to be cancelled.
    withdraw: bool,
    /// The ring makes backend connects (the kernel sets socket options
    /// through it; cleared at the first it refuses).
    ring_connects: bool,
    /// Sockets given up on while the ring connected them: closed when
    /// their connect's completion comes.
    unlinked: Vec<Unlinked>,
}

/// A socket given up on while the ring connected it.
#[derive(Debug)]
struct Unlinked {
    slot: u32,
    epoch: u32,
    fd: OwnedFd,
    /// Cancels of its connect made again after one found nothing.
    cancels: u8,
}

/// How many times a cancel that found its connect not yet made is made
/// again: one enter is enough for the connect to be made.
const UNLINK_TRIES: u8 = 8;

const CLOSED: Outcome = Outcome::Error(Errno::BAD_DESCRIPTOR);

impl Uring {
    /// Notes an edge for the table (reported at the end of the batch).
    fn edge(touched: &mut Vec<(u32, Side)>, e: &mut End, slot: usize, side: Side, bits: u32) {
        if e.bits == 0 {
            touched.push((slot as u32, side));
        }
        e.bits |= bits;
    }

    /// `side`'s reads were turned away while the other side's send was
    /// in flight, and it is over: the relay reads again.
    fn ungate(touched: &mut Vec<(u32, Side)>, pair: &mut [End; 2], slot: usize, side: Side) {
        let e = &mut pair[side.index()];
        if std::mem::take(&mut e.gated) && e.fd.is_some() {
            Self::edge(touched, e, slot, side, epoll::IN);
        }
    }

    /// Submits the receive of `slot`'s `side`.
    fn arm(ring: &mut Ring, e: &mut End, slot: usize, side: Side) {
        if let Some(fd) = &e.fd {
            if e.recv != Recv::On && !e.eof && e.error.is_none() && !e.splicing {
                let (most, total) = match (e.congested, TOTAL_LIMIT.load(Relaxed)) {
                    (true, true) => (RECV_CONGESTED, RECV_CONGESTED),
                    (false, true) => (RECV_MOST, RECV_TOTAL),
                    (_, false) => (RECV_MOST, 0),
                };
                e.recv_seq = e.recv_seq.wrapping_add(1);
                let t = recv_tag(e.epoch, e.recv_seq, slot, side);
                e.recv_tag = t;
                ring.recv_multi(fd.as_raw_fd(), most, total, t);
                e.recv = Recv::On;
            }
        }
    }

    /// Watches `e`'s socket for a reset while nothing else would see one
    /// (its receive is off), as epoll's edge shows it.
    fn watch(ring: &mut Ring, e: &mut End, slot: usize, side: Side) {
        if let (Some(fd), false) = (&e.fd, e.watching) {
            let t = tag(op::FAULT, e.epoch, slot, side);
            ring.poll_fault(fd.as_raw_fd(), t);
            e.watching = true;
        }
    }

    /// Gives `e`'s socket up: its requests cancelled, then closed; its
    /// pieces given back. A graceful close with a send in flight waits
    /// for that send.
    fn drop_end(&mut self, slot: usize, side: Side, abort: bool) {
        // Its send is going away with it: the other side reads again.
        Self::ungate(&mut self.touched, &mut self.ends[slot], slot, side.other());
        let e = &mut self.ends[slot][side.index()];
        let Some(fd) = e.fd.take() else {
            return;
        };
        if abort {
            self.stats.sys_sockopt.inc();
            let _ = socket::set_linger_zero(&fd);
        }
        if e.linking {
            // Its connect is cancelled; the socket stays open until that
            // completes, since a linked request looks its descriptor up
            // only when it runs, and the number could be another
            // socket's by then.
            let epoch = e.epoch & EPOCH_MASK;
            *e = End {
                epoch: e.epoch.wrapping_add(1),
                ..End::default()
            };
            self.unlinked.push(Unlinked {
                slot: slot as u32,
                epoch,
                fd,
                cancels: 0,
            });
            self.ring.cancel(
                tag(op::LINKED, epoch, slot, side),
                tag(op::UNLINK, epoch, slot, side),
            );
            return;
        }
        for p in e.inbox.drain(..) {
            self.ring.release(p.bid);
        }
        e.stash = Vec::new();
        e.stash_at = 0;
        // The requests still submitted on this socket, by tag.
        let mut targets = [0u64; 6];
        let mut n = 0;
        for (on, t) in [
            (e.recv == Recv::On, e.recv_tag),
            (e.connecting, tag(op::CONNECT, e.epoch, slot, side)),
            (e.watching, tag(op::FAULT, e.epoch, slot, side)),
            (e.polling_in, tag(op::POLL_IN, e.epoch, slot, side)),
            (e.polling_out, tag(op::POLL_OUT, e.epoch, slot, side)),
        ] {
            if on {
                targets[n] = t;
                n += 1;
            }
        }
        let sent = e.send.take();
        let waiting = sent.and_then(|id| self.sends.get_mut(id.0 as usize)?.as_mut());
        let cancel = tag(op::CANCEL, 0, 0, Side::Client);
        match waiting {
            Some(rec) if !abort && e.broken.is_none() => {
                // The last bytes go out first; the rest stops now, and the
                // close follows the send.
                for &t in &targets[..n] {
                    self.ring.cancel(t, cancel);
                }
                rec.shutdown = e.shutdown_pending;
                rec.close = Some(fd);
            }
            waiting => {
                if let (Some(rec), Some(id)) = (waiting, sent) {
                    rec.orphan = true;
                    targets[n] = tag(op::SEND, 0, id.0 as usize, Side::Client);
                    n += 1;
                }
                let close = tag(op::CLOSE, 0, 0, Side::Client);
                self.ring.cancel_close(fd, &targets[..n], close);
            }
        }
        let epoch = e.epoch.wrapping_add(1);
        *e = End {
            epoch,
            ..End::default()
        };
    }

    /// A connect the ring made ended with `result` (0, or `-errno`).
    fn linked(&mut self, result: i32, epoch: u32, slot: usize, side: Side) {
        let Some(e) = live(&mut self.ends, slot, side, epoch) else {
            // Given up on: its socket can be closed now.
            let at = self
                .unlinked
                .iter()
                .position(|u| u.slot as usize == slot && u.epoch == epoch);
            if let Some(at) = at {
                let u = self.unlinked.swap_remove(at);
                self.ring
                    .cancel_close(u.fd, &[], tag(op::CLOSE, 0, 0, Side::Client));
            }
            return;
        };
        e.linking = false;
        if result == 0 {
            Self::edge(&mut self.touched, e, slot, side, epoll::OUT);
            Self::arm(&mut self.ring, e, slot, side);
        } else {
            e.connect_err.get_or_insert(Errno(-result));
            Self::edge(
                &mut self.touched,
                e,
                slot,
                side,
                epoll::OUT | epoll::ERR | epoll::HUP,
            );
        }
    }

    /// Gives `slot`'s backend end the socket `fd`, made and not yet
    /// connected, and has the ring set its option and connect it to
    /// `addr`: no system call.
    fn connect_linked(&mut self, slot: usize, gen: u32, fd: OwnedFd, addr: &SocketAddr) {
        let side = Side::Backend;
        let e = &mut self.ends[slot][side.index()];
        debug_assert!(e.fd.is_none());
        e.gen = gen;
        e.linking = true;
        e.connect_err = None;
        let (nodelay, connect) = (
            tag(op::NODELAY, e.epoch, slot, side),
            tag(op::LINKED, e.epoch, slot, side),
        );
        let made = self
            .ring
            .connect(slot, fd.as_raw_fd(), addr, nodelay, connect);
        e.fd = Some(fd);
        if !made {
            // No address slot for it (none can be missing: one per pair).
            debug_assert!(made, "no connect slot for pair {slot}");
            let epoch = e.epoch & EPOCH_MASK;
            self.linked(-Errno::BAD_DESCRIPTOR.0, epoch, slot, side);
        }
    }

    /// Handles one completion.
    fn complete(&mut self, c: Completion, piece: Option<Piece>, out: &mut Vec<Event>) {
        let (what, epoch, slot, side) = untag(c.data);
        match what {
            op::RECV => self.received(c, piece, epoch, slot, side),
            op::SEND => self.sent(c, slot),
            op::CONNECT => {
                let Some(e) = live(&mut self.ends, slot, side, epoch) else {
                    return;
                };
                e.connecting = false;
                if uring::poll_failed(c.result) {
                    Self::edge(
                        &mut self.touched,
                        e,
                        slot,
                        side,
                        epoll::OUT | epoll::ERR | epoll::HUP,
                    );
                } else {
                    Self::edge(&mut self.touched, e, slot, side, epoll::OUT);
                    Self::arm(&mut self.ring, e, slot, side);
                }
            }
            op::LINKED => self.linked(c.result, epoch, slot, side),
            op::NODELAY => {
                // The option failed (its success posts nothing): the
                // connect after it was never made, and posts nothing
                // either. This kernel (or a security module) refuses
                // options through the ring: later connects are made with
                // system calls.
                self.ring_connects = false;
                self.linked(c.result, epoch, slot, side);
            }
            op::UNLINK => {
                let held = self
                    .unlinked
                    .iter_mut()
                    .find(|u| u.slot as usize == slot && u.epoch == epoch);
                if let (uring::NOT_FOUND, Some(u)) = (c.result, held) {
                    // The cancel ran before the connect did (both in one
                    // submission): again, a few times (the connect is
                    // made at the next enter at the latest).
                    if u.cancels < UNLINK_TRIES {
                        u.cancels += 1;
                        self.ring.cancel(tag(op::LINKED, epoch, slot, side), c.data);
                    }
                }
            }
            op::FAULT => {
                let Some(e) = live(&mut self.ends, slot, side, epoch) else {
                    return;
                };
                if !c.more() {
                    e.watching = false;
                }
                // What epoll's edge would have said: a reset (ERR), or a
                // FIN or both ends shut (RDHUP, HUP), read in order once
                // the receive resumes. Multishot: it reports new wake-ups
                // only (a one-shot one armed after a FIN would complete at
                // once, every time).
                let bits = uring::poll_bits(c.result);
                if bits != 0 {
                    Self::edge(&mut self.touched, e, slot, side, bits | epoll::IN);
                }
                if !c.more() && c.result > 0 && bits & (epoll::ERR | epoll::HUP) == 0 {
                    // Ended by the kernel with neither (a full completion
                    // queue): a reset must still be seen.
                    Self::watch(&mut self.ring, e, slot, side);
                }
            }
            op::POLL_IN => {
                let Some(e) = live(&mut self.ends, slot, side, epoch) else {
                    return;
                };
                e.polling_in = false;
                let bits = uring::poll_bits(c.result)
                    & (epoll::IN | epoll::RDHUP | epoll::ERR | epoll::HUP);
                if bits != 0 {
                    Self::edge(&mut self.touched, e, slot, side, bits);
                } else if c.result > 0 {
                    // Ended on an event not asked for: polled again.
                    if let Some(fd) = &e.fd {
                        self.ring.poll_once(fd.as_raw_fd(), c.data);
                        e.polling_in = true;
                    }
                }
            }
            op::POLL_OUT => {
                let Some(e) = live(&mut self.ends, slot, side, epoch) else {
                    return;
                };
                if !c.more() {
                    e.polling_out = false;
                }
                // Multishot, and only room (or a failure) is the edge: the
                // kernel also reports the peer's FIN, which is no room.
                let bits = uring::poll_bits(c.result) & (epoll::OUT | epoll::ERR | epoll::HUP);
                if bits != 0 {
                    Self::edge(&mut self.touched, e, slot, side, bits);
                } else if !c.more() && c.result > 0 {
                    if let Some(fd) = &e.fd {
                        self.ring.poll_room(fd.as_raw_fd(), c.data);
                        e.polling_out = true;
                    }
                }
            }
            op::ACCEPT => {
                self.accepts_free.push(slot);
                if c.result == uring::CANCELED {
                    return;
                }
                out.push(Event::Accepted(self.ring.accepted(slot, c.result)));
            }
            op::SIDE => {
                self.side_events_into(out);
                if !c.more() {
                    self.side_poll();
                }
            }
            // Shutdowns, cancels and closes: nothing waits on them.
            _ => {}
        }
    }

    fn received(
        &mut self,
        c: Completion,
        piece: Option<Piece>,
        epoch: u32,
        slot: usize,
        side: Side,
    ) {
        let Uring {
            ring,
            ends,
            touched,
            holding,
            rearm,
            ..
        } = self;
        let live = ends
            .get_mut(slot)
            .map(|p| &mut p[side.index()])
            .filter(|e| recv_epoch(e.epoch) == epoch >> RECV_SEQ_BITS && e.fd.is_some());
        let Some(e) = live else {
            if let Some(p) = piece {
                ring.release(p.bid);
            }
            return;
        };
        match (c.result, piece) {
            (n, Some(p)) if n > 0 => {
                if e.inbox.is_empty() {
                    holding.push((slot as u32, side, e.epoch));
                }
                e.inbox.push_back(p);
                e.heard = true;
                Self::edge(touched, e, slot, side, epoll::IN);
            }
            (_, Some(p)) => ring.release(p.bid),
            (0, None) => {
                e.eof = true;
                e.heard = true;
                Self::edge(touched, e, slot, side, epoll::IN | epoll::RDHUP);
            }
            (n, None) if n == uring::INVALID && TOTAL_LIMIT.load(Relaxed) => {
                // A kernel before the receives' total limit: without it,
                // what a direction holds is bounded by the batch.
                TOTAL_LIMIT.store(false, Relaxed);
                rearm.push((slot as u32, side, e.epoch));
            }
            (n, None) if n == uring::NO_BUFFERS => {
                // The ring ran dry: submitted again once buffers are back.
                rearm.push((slot as u32, side, e.epoch));
            }
            (n, None) if n == uring::CANCELED => {}
            (n, None) if n < 0 => {
                e.error = Some(Errno(-n));
                let bits = epoll::IN | epoll::RDHUP | epoll::ERR | epoll::HUP;
                Self::edge(touched, e, slot, side, bits);
            }
            _ => {}
        }
        // A receive cancelled (for a pause) may end after the next was
        // submitted: only the current one's end means none is left.
        if !c.more() && e.recv == Recv::On && c.data == e.recv_tag {
            e.recv = Recv::Off;
            if c.result > 0 {
                // Ended for a reason of its own (e.g. a full completion
                // queue): it goes on.
                rearm.push((slot as u32, side, e.epoch));
            }
        }
    }

    fn sent(&mut self, c: Completion, id: usize) {
        let Some(rec) = self.sends.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let sid = SendId(id as u32);
        if c.result > 0 && rec.at + (c.result as usize) < rec.len && !rec.orphan {
            // A short send: the rest goes now, still the one in flight.
            rec.at += c.result as usize;
            self.ring.send_done(sid);
            let fd = rec.close.as_ref().map_or(rec.fd, |f| f.as_raw_fd());
            self.ring
                .send(fd, sid, rec.at, tag(op::SEND, 0, id, Side::Client));
            if let Some(e) = self
                .ends
                .get_mut(rec.slot)
                .map(|p| &mut p[rec.side.index()])
            {
                if e.send == Some(sid) {
                    e.unsent = rec.len - rec.at;
                }
            }
            return;
        }
        let Some(rec) = self.sends.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.ring.send_done(sid);
        self.ring.release_send(sid);
        if let Some(fd) = rec.close {
            // The pair closed while this was in flight.
            if c.result >= 0 && rec.shutdown {
                self.stats.sys_shutdown.inc();
                let _ = socket::shutdown_write(&fd);
            }
            // Nothing else is submitted on it any more (cancelled when
            // the pair closed).
            self.ring
                .cancel_close(fd, &[], tag(op::CLOSE, 0, 0, Side::Client));
            return;
        }
        let (slot, side) = (rec.slot, rec.side);
        let Some(pair) = self.ends.get_mut(slot) else {
            return;
        };
        let e = &pair[side.index()];
        if e.send != Some(sid) || e.epoch != rec.epoch {
            return;
        }
        Self::ungate(&mut self.touched, pair, slot, side.other());
        let e = &mut pair[side.index()];
        e.send = None;
        e.unsent = 0;
        if c.result < 0 {
            e.broken = Some(Errno(-c.result));
            let bits = epoll::OUT | epoll::ERR | epoll::HUP;
            Self::edge(&mut self.touched, e, slot, side, bits);
            return;
        }
        if std::mem::take(&mut e.shutdown_pending) {
            if let Some(fd) = &e.fd {
                self.stats.sys_shutdown.inc();
                if let Err(err) = socket::shutdown_write(fd) {
                    e.broken = Some(Errno::of(&err));
                    let bits = epoll::OUT | epoll::ERR | epoll::HUP;
                    Self::edge(&mut self.touched, e, slot, side, bits);
                    return;
                }
            }
        }
        if std::mem::take(&mut e.wants_out) {
            Self::edge(&mut self.touched, e, slot, side, epoll::OUT);
        }
    }

    /// Polls the side epoll (control waker, health checks) through the ring.
    fn side_poll(&mut self) {
        let fd = self.side.as_fd().as_raw_fd();
        self.ring.poll_in(fd, tag(op::SIDE, 0, 0, Side::Client));
    }

    fn side_events_into(&mut self, out: &mut Vec<Event>) {
        loop {
            self.stats.sys_epoll_wait.inc();
            let Ok(n) = self.side.wait(&mut self.side_events, 0) else {
                return;
            };
            out.extend(
                self.side_events
                    .iter()
                    .map(|(tok, bits)| match Source::of(tok) {
                        Source::Listener => Event::Listener,
                        Source::Control => Event::Control,
                        Source::Socket(t) => Event::Socket(t, bits),
                    }),
            );
            if n < SIDE_EVENTS {
                return;
            }
        }
    }

    /// Keeps what the relay left in the inboxes in each end's own stash,
    /// so that the ring's buffers go back; pauses a receive past the high
    /// water. Then submits again the receives that ran out of buffers.
    fn settle_inboxes(&mut self) {
        for (slot, side, epoch) in std::mem::take(&mut self.holding) {
            let e = &mut self.ends[slot as usize][side.index()];
            if e.epoch != epoch {
                continue;
            }
            // The relay took all it received: it flows.
            e.congested = !e.inbox.is_empty();
            if e.inbox.is_empty() {
                continue;
            }
            if e.stash_at > 0 {
                e.stash.drain(..e.stash_at);
                e.stash_at = 0;
            }
            for p in e.inbox.drain(..) {
                e.stash
                    .extend_from_slice(self.ring.piece(p.bid, p.at, p.len));
                self.ring.release(p.bid);
            }
            // Left over: the destination is full. Not received again
            // until the relay has taken the stash down.
            if e.stash.len() >= PAUSE_AT {
                // Whether its receive is on or ended (out of buffers), it
                // stays off until the relay takes the stash down.
                if e.recv == Recv::On {
                    let t = e.recv_tag;
                    self.ring.cancel(t, tag(op::CANCEL, 0, 0, Side::Client));
                }
                e.recv = Recv::Paused;
                Self::watch(&mut self.ring, e, slot as usize, side);
            }
        }
        for (slot, side, epoch) in std::mem::take(&mut self.rearm) {
            let e = &mut self.ends[slot as usize][side.index()];
            if e.epoch == epoch && e.recv != Recv::Paused {
                Self::arm(&mut self.ring, e, slot as usize, side);
            }
        }
    }

    fn count(&mut self) {
        let now = self.ring.counts();
        let s = &self.stats;
        s.sys_uring_enter.add(now.enters - self.seen.enters);
        s.uring_submissions.add(now.submitted - self.seen.submitted);
        s.uring_completions.add(now.completed - self.seen.completed);
        self.seen = now;
    }
}

/// One pair's two ends, for the relay.
pub struct PairIo<'a> {
    stats: &'a Stats,
    ring: &'a mut Ring,
    ends: &'a mut [End; 2],
    sends: &'a mut Vec<Option<SendRec>>,
    pipes: &'a Pipes,
    touched: &'a mut Vec<(u32, Side)>,
    slot: usize,
}

impl PairIo<'_> {
    /// `e` streams from now on: its receive is cancelled (what it had
    /// brought, or still brings, is taken first), and the socket is read
    /// with system calls, with a poll for a reset meanwhile.
    fn to_system_calls(ring: &mut Ring, e: &mut End, slot: usize, from: Side) {
        if !e.splicing {
            e.splicing = true;
            if e.recv == Recv::On {
                ring.cancel(e.recv_tag, tag(op::CANCEL, 0, 0, Side::Client));
                e.recv = Recv::Off;
            }
            // From now on nothing reads it while its destination is full:
            // a reset must still come as an edge.
            Uring::watch(ring, e, slot, from);
        }
    }

    /// What a streaming `e` with nothing held gives before its socket is
    /// read: its end or error, or a wait for a completion of this batch
    /// not yet reaped (it may hold bytes from before).
    fn before_reading(
        ring: &mut Ring,
        touched: &mut Vec<(u32, Side)>,
        e: &mut End,
        slot: usize,
        from: Side,
    ) -> Option<Outcome> {
        if e.recv == Recv::Paused {
            e.recv = Recv::Off;
        }
        if let Some(err) = e.error.take() {
            e.eof = true;
            return Some(Outcome::of_error(&io::Error::from_raw_os_error(err.0)));
        }
        if e.eof {
            return Some(e.end_of_stream());
        }
        if ring.completions_waiting() {
            Uring::edge(touched, e, slot, from, epoll::IN);
            return Some(Outcome::WouldBlock);
        }
        None
    }
}

impl relay::Io for PairIo<'_> {
    fn read(&mut self, from: Side, buf: &mut [u8]) -> Outcome {
        // While the destination's send is in flight nothing read now could
        // be written, and the relay would keep it in a buffer of its own
        // beside the send's copy: it waits where it is (received, or in
        // the kernel once the receive is paused), as under epoll, where
        // the kernel holds what a full destination cannot take.
        let dest = &self.ends[from.other().index()];
        if dest.send.is_some() && dest.broken.is_none() && dest.fd.is_some() {
            let e = &mut self.ends[from.index()];
            if e.fd.is_some() && !e.splicing {
                e.gated = true;
                return Outcome::WouldBlock;
            }
        }
        let e = &mut self.ends[from.index()];
        if e.fd.is_none() {
            return CLOSED;
        }
        // Back from splicing (what it read was small): the socket may hold
        // bytes no receive has seen, read here before one is submitted.
        let unspliced = std::mem::take(&mut e.splicing);
        let n = e.take_held(self.ring, buf);
        if e.recv == Recv::Paused && e.held() == 0 {
            e.recv = Recv::Off;
            Uring::arm(self.ring, e, self.slot, from);
        }
        if n == 0 && (e.broken.is_some() || unspliced) && !self.ring.completions_waiting() {
            if let Some(got) = e.read_socket(self.stats, buf) {
                if unspliced {
                    if matches!(got, Outcome::Data(n) if n == buf.len()) {
                        // Still a stream: a full read makes the relay
                        // stream it again, so it stays with system calls
                        // (a receive submitted now would be cancelled at
                        // once, after bringing a piece to copy).
                        e.splicing = true;
                    } else {
                        // What follows comes through a receive again.
                        Uring::arm(self.ring, e, self.slot, from);
                    }
                }
                return got;
            }
        }
        if n > 0 {
            // The relay takes a short read for drained: with nothing held,
            // a receive must be on to bring the next edge (one that ended,
            // or none since splicing, would leave the direction stalled).
            if e.held() == 0 {
                Uring::arm(self.ring, e, self.slot, from);
            }
            return Outcome::Data(n);
        }
        if let Some(err) = e.error.take() {
            e.eof = true;
            return Outcome::of_error(&io::Error::from_raw_os_error(err.0));
        }
        if e.eof {
            return e.end_of_stream();
        }
        Uring::arm(self.ring, e, self.slot, from);
        Outcome::WouldBlock
    }

    /// A stream with no pipe is read as under epoll: `read(2)` straight
    /// into the relay's buffer while a poll says the socket is readable,
    /// with no receive submitted (it would bring the bytes in pieces of
    /// [`RECV_MOST`], each copied once more, a completion each). It waits
    /// in the kernel meanwhile, as a splicing direction does, so no gate
    /// holds it back. What was received before the switch comes first.
    fn read_stream(&mut self, from: Side, buf: &mut [u8]) -> Outcome {
        let e = &mut self.ends[from.index()];
        if e.fd.is_none() {
            return CLOSED;
        }
        Self::to_system_calls(self.ring, e, self.slot, from);
        // The relay takes a short read for drained: a poll must then be
        // on to bring the next edge (the socket may already hold more).
        let poll_in = |ring: &mut Ring, e: &mut End, slot: usize| {
            if let (Some(fd), false) = (&e.fd, e.polling_in) {
                ring.poll_once(fd.as_raw_fd(), tag(op::POLL_IN, e.epoch, slot, from));
                e.polling_in = true;
            }
        };
        if e.held() > 0 {
            let n = e.take_held(self.ring, buf);
            if e.recv == Recv::Paused && e.held() == 0 {
                e.recv = Recv::Off;
            }
            if n < buf.len() {
                poll_in(self.ring, e, self.slot);
            }
            return Outcome::Data(n);
        }
        if let Some(end) = Self::before_reading(self.ring, self.touched, e, self.slot, from) {
            return end;
        }
        match e.read_socket(self.stats, buf) {
            Some(Outcome::Data(n)) => {
                if n < buf.len() {
                    poll_in(self.ring, e, self.slot);
                }
                Outcome::Data(n)
            }
            Some(error) => {
                e.heard = true;
                error
            }
            None if e.eof => {
                e.heard = true;
                e.end_of_stream()
            }
            None => {
                poll_in(self.ring, e, self.slot);
                Outcome::WouldBlock
            }
        }
    }

    fn write(&mut self, to: Side, data: &[u8]) -> Outcome {
        // A stream's source is read with system calls (as under epoll),
        // and so is its destination written.
        let stream = self.ends[to.other().index()].splicing;
        let e = &mut self.ends[to.index()];
        let Some(fd) = &e.fd else {
            return CLOSED;
        };
        if let Some(err) = e.broken {
            return Outcome::of_error(&io::Error::from_raw_os_error(err.0));
        }
        if e.send.is_some() {
            e.wants_out = true;
            return Outcome::WouldBlock;
        }
        if data.is_empty() {
            return Outcome::Data(0);
        }
        let mut data = data;
        let offered = data.len();
        // A stream's writes, and any large one, go at once, as under
        // epoll: the kernel copies them straight from the relay's buffer,
        // where a send would copy them once more and come back a turn
        // later (one in flight per direction).
        if (to == Side::Backend && !e.heard) || stream || data.len() >= WRITE_AT_ONCE {
            self.stats.sys_write.inc();
            let got = socket::write(fd, data);
            let full = match &got {
                Ok(n) => *n < data.len(),
                Err(err) => err.kind() == io::ErrorKind::WouldBlock,
            };
            if stream && full {
                // Full: what it did not take stays in the relay's buffer,
                // as under epoll, and the poll for room (it stays
                // submitted) gives `OUT` at each wake-up, as for a splice
                // into a full destination. No send copies it meanwhile.
                if !e.polling_out {
                    let t = tag(op::POLL_OUT, e.epoch, self.slot, to);
                    self.ring.poll_room(fd.as_raw_fd(), t);
                    e.polling_out = true;
                }
                return match got {
                    Ok(n) => Outcome::Data(n),
                    Err(_) => Outcome::WouldBlock,
                };
            }
            match got {
                Ok(n) if n == data.len() => return Outcome::Data(n),
                Ok(n) => data = &data[n..],
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => {
                    // Every later write fails alike, and the read-out that
                    // follows asks the kernel (see `End::read_socket`).
                    e.broken = Some(Errno::of(&err));
                    return Outcome::of_error(&err);
                }
            }
        }
        let id = self.ring.take_send();
        let Some(buf) = self.ring.send_buf(id) else {
            return CLOSED; // A free send buffer is never busy.
        };
        buf.clear();
        buf.extend_from_slice(data);
        let i = id.0 as usize;
        if self.sends.len() <= i {
            self.sends.resize_with(i + 1, || None);
        }
        let raw = fd.as_raw_fd();
        self.sends[i] = Some(SendRec {
            slot: self.slot,
            side: to,
            epoch: e.epoch,
            fd: raw,
            at: 0,
            len: data.len(),
            close: None,
            shutdown: false,
            orphan: false,
        });
        self.ring
            .send(raw, id, 0, tag(op::SEND, 0, i, Side::Client));
        e.send = Some(id);
        e.unsent = data.len();
        Outcome::Data(offered)
    }

    /// A stream's read: what was received before it switched goes into
    /// the pipe first; from then on no receive is submitted, and
    /// `splice(2)` reads the socket while a poll says it is readable.
    fn splice_in(&mut self, from: Side, id: &PipeId, len: usize) -> Outcome {
        let e = &mut self.ends[from.index()];
        if e.fd.is_none() || self.pipes.get(id).is_none() {
            return CLOSED;
        }
        Self::to_system_calls(self.ring, e, self.slot, from);
        if e.held() > 0 {
            let Some(p) = self.pipes.get(id) else {
                return CLOSED;
            };
            let got = e.held_into(self.ring, &p.write, len, self.stats);
            if e.recv == Recv::Paused && e.held() == 0 {
                e.recv = Recv::Off;
            }
            return got;
        }
        if let Some(end) = Self::before_reading(self.ring, self.touched, e, self.slot, from) {
            return end;
        }
        let (Some(fd), Some(p)) = (&e.fd, self.pipes.get(id)) else {
            return CLOSED;
        };
        self.stats.sys_splice.inc();
        match pipe::splice(fd, &p.write, len) {
            Ok(0) => {
                e.eof = true;
                e.heard = true;
                e.end_of_stream()
            }
            Ok(n) => {
                e.heard = true;
                Outcome::Data(n)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !e.polling_in {
                    let t = tag(op::POLL_IN, e.epoch, self.slot, from);
                    self.ring.poll_once(fd.as_raw_fd(), t);
                    e.polling_in = true;
                }
                Outcome::WouldBlock
            }
            Err(err) => {
                e.eof = true;
                e.heard = true;
                Outcome::of_error(&err)
            }
        }
    }

    /// `splice(2)` into the socket once the send in flight (if any) is
    /// done; a poll gives the edge when it is full.
    fn splice_out(&mut self, id: &PipeId, to: Side, len: usize) -> Outcome {
        let e = &mut self.ends[to.index()];
        let (Some(fd), Some(p)) = (&e.fd, self.pipes.get(id)) else {
            return CLOSED;
        };
        if let Some(err) = e.broken {
            return Outcome::of_error(&io::Error::from_raw_os_error(err.0));
        }
        if e.send.is_some() {
            e.wants_out = true;
            return Outcome::WouldBlock;
        }
        self.stats.sys_splice.inc();
        let got = match pipe::splice(&p.read, fd, len) {
            Ok(n) if n == len => return Outcome::Data(n),
            Ok(n) => Outcome::Data(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Outcome::WouldBlock,
            Err(err) => {
                e.broken = Some(Errno::of(&err));
                return Outcome::of_error(&err);
            }
        };
        // Full: the relay waits for `OUT`, which the poll for room (it
        // stays submitted) gives at each wake-up.
        if !e.polling_out {
            let t = tag(op::POLL_OUT, e.epoch, self.slot, to);
            self.ring.poll_room(fd.as_raw_fd(), t);
            e.polling_out = true;
        }
        got
    }

    fn shutdown(&mut self, to: Side) -> Outcome {
        let e = &mut self.ends[to.index()];
        let Some(fd) = &e.fd else {
            return CLOSED;
        };
        if e.send.is_some() {
            e.shutdown_pending = true;
            return Outcome::Data(0);
        }
        // A shutdown(2), not a submission: io_uring runs every SHUTDOWN
        // in a worker thread of its own, a wake-up for each FIN.
        self.stats.sys_shutdown.inc();
        match socket::shutdown_write(fd) {
            Ok(()) => Outcome::Data(0),
            Err(err) => Outcome::of_error(&err),
        }
    }
}

impl Sockets for Uring {
    fn pair(&mut self, slot: usize) -> impl relay::Io + '_ {
        PairIo {
            stats: &self.stats,
            ring: &mut self.ring,
            ends: &mut self.ends[slot],
            sends: &mut self.sends,
            pipes: &self.pipes,
            touched: &mut self.touched,
            slot,
        }
    }

    fn connect_error(&mut self, slot: usize) -> Option<Errno> {
        let e = &mut self.ends[slot][Side::Backend.index()];
        if let Some(err) = e.connect_err.take() {
            return Some(err);
        }
        let fd = e.fd.as_ref()?;
        self.stats.sys_sockopt.inc();
        socket::take_error(fd).ok().flatten().map(|e| Errno::of(&e))
    }

    fn close(&mut self, slot: usize, abort: [bool; 2]) {
        let mut abort = abort;
        // Bytes a source still holds, or has left in its kernel while its
        // reads were held back by the gate, never reach their destination:
        // a clean end there would pass a cut stream off as whole (the
        // table sees only what the relay was told, and a gated read told
        // it nothing was there).
        for side in Side::BOTH {
            let src = &self.ends[slot][side.index()];
            if src.fd.is_some() && (src.gated || src.held() > 0) {
                abort[side.other().index()] = true;
            }
        }
        for side in Side::BOTH {
            self.drop_end(slot, side, abort[side.index()]);
        }
    }

    fn renew_pipe(&mut self, id: &PipeId) -> bool {
        self.pipes.renew(id, &self.stats)
    }

    fn unacked(&mut self, slot: usize, side: Side) -> Option<usize> {
        let e = &self.ends[slot][side.index()];
        let fd = e.fd.as_ref()?;
        self.stats.sys_ioctl.inc();
        // What the kernel holds, plus what is still on its way to it.
        socket::unacked(fd).ok().map(|n| n + e.unsent)
    }

    fn reconnect(&mut self, slot: usize, gen: u32, addr: SocketAddr) -> Result<bool, Errno> {
        self.drop_end(slot, Side::Backend, true);
        if self.can_connect_later() {
            self.stats.sys_connect.inc(); // socket()
            let fd = socket::stream_socket(&addr).map_err(|e| Errno::of(&e))?;
            self.connect_linked(slot, gen, fd, &addr);
            return Ok(false);
        }
        let (fd, done) = crate::sockets::connect_counted(&self.stats, &addr)?;
        self.attach_backend(slot, gen, fd, done);
        Ok(done)
    }

    fn local_addr(&mut self, slot: usize) -> Option<SocketAddr> {
        let fd = self.ends[slot][Side::Client.index()].fd.as_ref()?;
        self.stats.sys_sockopt.inc(); // getsockname
        socket::local_addr(fd).ok()
    }
}

impl Uring {
    fn attach_backend(&mut self, slot: usize, gen: u32, fd: OwnedFd, connected: bool) {
        let Uring {
            ring,
            ends,
            touched,
            ..
        } = self;
        let side = Side::Backend;
        let e = &mut ends[slot][side.index()];
        e.gen = gen;
        let raw = fd.as_raw_fd();
        e.fd = Some(fd);
        if connected {
            Self::arm(ring, e, slot, side);
            Self::edge(touched, e, slot, side, epoll::OUT);
        } else {
            ring.poll_connect(raw, tag(op::CONNECT, e.epoch, slot, side));
            e.connecting = true;
        }
    }
}

impl Engine for Uring {
    const COMPLETES_ACCEPTS: bool = true;

    fn new(cfg: &Config, capacity: usize, stats: Arc<Stats>) -> io::Result<Self> {
        let ring_connects = uring::ring_connects();
        let ring = Ring::new(RingSize {
            entries: RING_ENTRIES,
            buffers: RING_BUFFERS,
            buffer_size: RING_BUFFER_SIZE,
            accepts: ACCEPTS,
            connects: if ring_connects { capacity } else { 0 },
        })?;
        let mut ends = Vec::with_capacity(capacity);
        ends.resize_with(capacity, Default::default);
        Ok(Uring {
            ring,
            ends,
            sends: Vec::new(),
            pipes: Pipes::new(cfg.pipes, cfg.pipe_size),
            side: Epoll::new()?,
            side_events: Events::with_capacity(SIDE_EVENTS),
            stats,
            listener: None,
            accepts_free: (0..ACCEPTS).rev().collect(),
            reaped: Vec::with_capacity(RING_ENTRIES as usize),
            touched: Vec::new(),
            holding: Vec::new(),
            rearm: Vec::new(),
            seen: Counts::default(),
            withdraw: false,
            ring_connects,
            unlinked: Vec::new(),
        })
    }

    fn watch(&mut self, listener: &OwnedFd, waker: &Waker) -> io::Result<()> {
        self.listener = Some(listener.as_raw_fd());
        self.side
            .add(waker, epoll::IN | epoll::ET, Token::CONTROL)?;
        self.side_poll();
        self.accept_more(listener, self.ends.len());
        Ok(())
    }

    fn wait(&mut self, timeout_ms: i32, out: &mut Vec<Event>) -> io::Result<usize> {
        self.settle_inboxes();
        if std::mem::take(&mut self.withdraw) && self.accepts_free.len() < ACCEPTS {
            if let Some(fd) = self.listener {
                self.ring.cancel_fd(fd, tag(op::CANCEL, 0, 0, Side::Client));
            }
        }
        let timeout = match timeout_ms {
            // Edges noted since the last wait are reported without sleeping.
            _ if !self.touched.is_empty() => Some(Duration::ZERO),
            t if t < 0 => None,
            t => Some(Duration::from_millis(t as u64)),
        };
        self.ring.submit_wait(timeout)?;
        let before = out.len();
        let mut reaped = std::mem::take(&mut self.reaped);
        self.ring.reap(&mut reaped);
        for (c, piece) in reaped.drain(..) {
            self.complete(c, piece, out);
        }
        self.reaped = reaped;
        for (slot, side) in self.touched.drain(..) {
            let e = &mut self.ends[slot as usize][side.index()];
            let bits = std::mem::take(&mut e.bits);
            if bits != 0 {
                out.push(Event::Socket(Token::new(slot as usize, e.gen, side), bits));
            }
        }
        self.count();
        Ok(out.len() - before)
    }

    fn side(&self) -> &Epoll {
        &self.side
    }

    fn pipes(&self) -> (usize, usize) {
        self.pipes.counts()
    }

    fn register(
        &mut self,
        _slot: usize,
        _gen: u32,
        _client: &OwnedFd,
        _backend: Option<&OwnedFd>,
    ) -> io::Result<()> {
        Ok(()) // Nothing to register: requests name their socket.
    }

    fn attach(
        &mut self,
        slot: usize,
        gen: u32,
        client: OwnedFd,
        backend: Option<OwnedFd>,
        connected: bool,
    ) {
        {
            let Uring {
                ring,
                ends,
                touched,
                ..
            } = self;
            let side = Side::Client;
            let e = &mut ends[slot][side.index()];
            e.gen = gen;
            e.fd = Some(client);
            Self::arm(ring, e, slot, side);
            // Writable from the start, as epoll's first edge says.
            Self::edge(touched, e, slot, side, epoll::OUT);
        }
        if let Some(fd) = backend {
            self.attach_backend(slot, gen, fd, connected);
        }
    }

    fn can_connect_later(&self) -> bool {
        self.ring_connects
    }

    fn connect_later(&mut self, slot: usize, gen: u32, backend: OwnedFd, addr: SocketAddr) {
        self.connect_linked(slot, gen, backend, &addr);
    }

    fn accept_more(&mut self, listener: &OwnedFd, room: usize) {
        self.withdraw = false;
        let armed = ACCEPTS - self.accepts_free.len();
        let mut want = room.min(ACCEPTS).saturating_sub(armed);
        while want > 0 {
            let Some(k) = self.accepts_free.pop() else {
                return;
            };
            let t = tag(op::ACCEPT, 0, k, Side::Client);
            self.ring.accept(listener.as_raw_fd(), k, t);
            want -= 1;
        }
    }

    fn finish(&mut self, deadline: std::time::Instant) {
        // The last sends (and the closes after them) complete before the
        // worker goes: its ring's requests end with it.
        let mut out = Vec::new();
        // So do the connects of sockets given up on (then closed).
        while self.sends.iter().any(Option::is_some) || !self.unlinked.is_empty() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            let left = (deadline - now).min(Duration::from_millis(10));
            if self.ring.submit_wait(Some(left)).is_err() {
                break;
            }
            let mut reaped = std::mem::take(&mut self.reaped);
            self.ring.reap(&mut reaped);
            for (c, piece) in reaped.drain(..) {
                self.complete(c, piece, &mut out);
            }
            self.reaped = reaped;
            out.clear();
        }
        let _ = self.ring.submit_wait(Some(Duration::ZERO));
        self.count();
    }

    fn stop_accepting(&mut self) {
        // The clients stay in the backlog until accepts are submitted
        // again. Withdrawn at the next wait, once this batch's completions
        // are in: the accepts that failed with it need no cancel.
        self.withdraw = true;
    }

    fn unlisten(&mut self, listener: OwnedFd) {
        self.listener = None;
        self.ring
            .cancel_all_close(listener, tag(op::CLOSE, 0, 0, Side::Client));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::Io;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// An engine for one pair, and the peers of the pair's two sockets.
    fn engine() -> (Uring, TcpStream, TcpStream) {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from(["proxy"]).expect("cli");
        let cfg = crate::config::resolve(cli, 1024).expect("config");
        let mut u = <Uring as Engine>::new(&cfg, 1, Arc::new(Stats::default())).expect("ring");
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let pair = || {
            let ours = TcpStream::connect(addr).expect("connect");
            ours.set_nonblocking(true).expect("nonblocking");
            (OwnedFd::from(ours), l.accept().expect("accept").0)
        };
        let ((client, client_peer), (backend, backend_peer)) = (pair(), pair());
        u.attach(0, 0, client, Some(backend), true);
        (u, client_peer, backend_peer)
    }

    fn turn(u: &mut Uring) {
        let mut out = Vec::new();
        u.wait(10, &mut out).expect("wait");
    }

    /// Reads what the backend side holds, as the relay would.
    fn take(u: &mut Uring) -> usize {
        let mut buf = vec![0u8; 64 << 10];
        let mut got = 0;
        while let Outcome::Data(n) = u.pair(0).read(Side::Backend, &mut buf) {
            got += n;
        }
        got
    }

    /// A direction paused (its relay left what arrived) and resumed before
    /// the paused receive's cancellation completed: that late completion
    /// must not be taken for the end of the receive submitted since, or
    /// nothing receives again once that one ends at its total, and the
    /// rest of the stream stays in the kernel for ever. (About one
    /// connection in two hundred stalled so under a slow trickle.)
    #[test]
    fn a_late_cancellation_does_not_end_the_receive_submitted_after_it() {
        let (mut u, _client, mut backend) = engine();
        let total = 400 << 10;
        // Less than a receive's total: the receive is still on when the
        // pause cancels it.
        let first = 4 << 10;
        backend.write_all(&vec![7u8; first]).expect("write");
        // Arrivals the relay does not take: stashed at the next turn, and
        // the receive, still on, cancelled. A busy worker's turn does not
        // wait: its enter submits the cancel without running completions,
        // so the cancel's completion comes a turn later.
        for _ in 0..50 {
            turn(&mut u);
            if !u.ends[0][1].inbox.is_empty() {
                break;
            }
        }
        assert_eq!(u.ends[0][1].recv, Recv::On, "the receive ended early");
        let mut out = Vec::new();
        u.wait(0, &mut out).expect("wait");
        assert_eq!(u.ends[0][1].recv, Recv::Paused, "never paused");
        // Taken at once: submitted again, before that completion came in.
        let mut got = take(&mut u);
        assert_eq!(u.ends[0][1].recv, Recv::On, "not submitted again");
        turn(&mut u);
        assert_eq!(
            u.ends[0][1].recv,
            Recv::On,
            "the cancelled receive's completion was taken for the end of the one submitted since"
        );
        backend
            .write_all(&vec![7u8; total - first])
            .expect("write the rest");
        for _ in 0..500 {
            if got == total {
                break;
            }
            turn(&mut u);
            got += take(&mut u);
        }
        assert_eq!(got, total, "the backend's stream stopped arriving");
    }

    /// Resets `s` (an abortive close).
    fn reset(s: TcpStream) {
        netio::sys::socket::set_linger_zero(&s).expect("linger");
        drop(s);
    }

    /// The backend's peer sends `sent` and resets; then, before the next
    /// turn runs the receive's completion for that, a write to the backend
    /// finds the reset and the read-out follows, as the relay's would.
    /// Returns what the read-out got and how it ended.
    fn read_out_after_a_write_found_the_reset(sent: &[u8]) -> (Vec<u8>, Outcome) {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        assert_eq!(u.ends[0][1].recv, Recv::On, "the backend's receive is on");
        backend.write_all(sent).expect("write");
        reset(backend);
        let mut io = u.pair(0);
        assert!(
            io.write(Side::Backend, b"held").failed(),
            "the write found the reset"
        );
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        let end = loop {
            match io.read(Side::Backend, &mut buf) {
                Outcome::Data(n) => got.extend_from_slice(&buf[..n]),
                end => break end,
            }
        };
        assert!(
            io.write(Side::Backend, b"again").failed(),
            "a later write fails too"
        );
        (got, end)
    }

    /// A completion posted during the batch (an entry submitted to make
    /// room completes inline) may hold bytes the read-out would otherwise
    /// overtake: with one waiting, the read-out leaves the socket alone,
    /// and the stream still arrives whole and in order.
    #[test]
    fn the_read_out_does_not_overtake_a_completion_not_yet_reaped() {
        let (mut u, _client, mut backend) = engine();
        let sent: Vec<u8> = (0..40 << 10).map(|i| (i % 251) as u8).collect();
        backend.write_all(&sent).expect("write");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        // The first receive ends at its total; take what it brought (which
        // queues the next receive), then submit that one without reaping.
        for _ in 0..50 {
            turn(&mut u);
            if !u.ends[0][1].inbox.is_empty() {
                break;
            }
        }
        while let Outcome::Data(n) = u.pair(0).read(Side::Backend, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.len() < sent.len(), "one receive brought it all");
        reset(backend);
        u.ring.submit_wait(Some(Duration::ZERO)).expect("submit");
        assert!(u.ring.completions_waiting(), "no inline completion");
        // As a failed send's completion leaves the end.
        u.ends[0][1].broken = Some(Errno::of(&io::ErrorKind::ConnectionReset.into()));
        assert!(matches!(
            u.pair(0).read(Side::Backend, &mut buf),
            Outcome::WouldBlock
        ));
        for _ in 0..50 {
            turn(&mut u);
            while let Outcome::Data(n) = u.pair(0).read(Side::Backend, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            if got.len() >= sent.len() {
                break;
            }
        }
        assert_eq!(got.len(), sent.len(), "bytes lost or added");
        assert!(got == sent, "the stream arrived out of order");
    }

    /// A backend that resets before a byte reached it: the write that
    /// finds the reset comes before the receive's completion for it, which
    /// runs only in the next enter. The read-out that follows must still
    /// find the end (the client then goes to the next backend with its
    /// bytes), not "nothing yet", which took the reset for one after
    /// bytes had gone and reset the client (about one run in thirty of
    /// the held-bytes failover test under load).
    #[test]
    fn the_read_out_after_a_write_found_the_reset_sees_the_end_before_its_completion() {
        let (got, end) = read_out_after_a_write_found_the_reset(b"");
        assert!(got.is_empty(), "{got:?}");
        assert!(
            matches!(end, Outcome::Eof | Outcome::Reset | Outcome::Error(_)),
            "{end:?}"
        );
    }

    /// What a backend sent before its reset is read out whole, ahead of the
    /// end, when a write found the reset before the receive's completion.
    #[test]
    fn bytes_sent_before_a_reset_found_by_a_write_are_read_out() {
        let (got, end) = read_out_after_a_write_found_the_reset(b"answer");
        assert_eq!(got, b"answer");
        assert!(!matches!(end, Outcome::WouldBlock), "nothing more to read");
    }

    /// The edges a turn reports for `side` of the pair.
    fn edges(u: &mut Uring, side: Side) -> u32 {
        let mut out = Vec::new();
        u.wait(10, &mut out).expect("wait");
        out.iter()
            .filter_map(|ev| match ev {
                Event::Socket(t, bits) if t.side == side => Some(*bits),
                _ => None,
            })
            .fold(0, |a, b| a | b)
    }

    /// A pipe of the engine's, lent as the relay would.
    fn lend_pipe(u: &Uring) -> PipeId {
        assert!(u.pipes.counts().0 > 0, "the engine made no pipe");
        crate::pipes::PipePool::new(1, 0)
            .checkout()
            .expect("a pipe")
    }

    /// Splices the backend side into `pipe` until at least `least` bytes
    /// moved, `len` at most a splice, as the relay would; returns how many.
    fn splice_at_least(u: &mut Uring, pipe: &PipeId, least: usize, len: usize) -> usize {
        let mut spliced = 0;
        while spliced < least {
            let got = u.pair(0).splice_in(Side::Backend, pipe, len);
            match got {
                Outcome::Data(n) => spliced += n,
                Outcome::WouldBlock => turn(u),
                end => panic!("{end:?}"),
            }
        }
        spliced
    }

    /// What the backend side gives at its next `IN` edge (0 if none comes
    /// within 100 turns).
    fn read_at_the_next_edge(u: &mut Uring, buf: &mut [u8]) -> usize {
        for _ in 0..100 {
            if edges(u, Side::Backend) & epoll::IN != 0 {
                if let Outcome::Data(n) = u.pair(0).read(Side::Backend, buf) {
                    return n;
                }
            }
        }
        0
    }

    /// Reads what `pipe` holds.
    fn drain_pipe(u: &Uring, pipe: &PipeId) -> Vec<u8> {
        let p = u.pipes.get(pipe).expect("pipe");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = socket::read(&p.read, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// Bytes the receive brought before the relay switched the direction
    /// to splicing go into the pipe first, then what the socket holds
    /// after them: the stream stays in order across the switch.
    #[test]
    fn bytes_received_before_a_direction_splices_go_into_the_pipe_first() {
        let (mut u, _client, mut backend) = engine();
        let first: Vec<u8> = (0..10_000).map(|i| (i % 251) as u8).collect();
        backend.write_all(&first).expect("write");
        for _ in 0..50 {
            turn(&mut u);
            if !u.ends[0][1].inbox.is_empty() {
                break;
            }
        }
        assert!(u.ends[0][1].held() > 0, "nothing received");
        let rest: Vec<u8> = (0..100_000).map(|i| (i % 241) as u8).collect();
        backend.write_all(&rest).expect("write");
        let pipe = lend_pipe(&u);
        let mut got = Vec::new();
        for _ in 0..50 {
            let got_now = u.pair(0).splice_in(Side::Backend, &pipe, 64 << 10);
            match got_now {
                Outcome::Data(_) => got.extend(drain_pipe(&u, &pipe)),
                Outcome::WouldBlock => turn(&mut u),
                end => panic!("{end:?}"),
            }
            if got.len() >= first.len() + rest.len() {
                break;
            }
        }
        assert_eq!(got.len(), first.len() + rest.len());
        assert!(
            got[..first.len()] == first[..],
            "the held bytes did not come first"
        );
        assert!(got[first.len()..] == rest[..], "the spliced bytes changed");
        assert_eq!(u.ends[0][1].recv, Recv::Off, "a receive is still on");
    }

    /// Back from splicing to reads (the stream turned small): the first
    /// read takes what the socket holds, and later bytes still arrive
    /// through a receive submitted again (a stream stopped for ever
    /// without it).
    #[test]
    fn a_direction_back_from_splicing_receives_again() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        let pipe = lend_pipe(&u);
        backend.write_all(&[1u8; 20_000]).expect("write");
        splice_at_least(&mut u, &pipe, 20_000, 64 << 10);
        drain_pipe(&u, &pipe);
        backend.write_all(b"small").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = [0u8; 64];
        assert!(matches!(
            u.pair(0).read(Side::Backend, &mut buf),
            Outcome::Data(5)
        ));
        backend.write_all(b"later").expect("write");
        assert_eq!(
            read_at_the_next_edge(&mut u, &mut buf),
            5,
            "the bytes after the switch never arrived"
        );
    }

    /// A stream with no pipe: what was received before the switch comes
    /// first, then `read(2)` takes the socket's bytes in the relay's
    /// buffer with no receive on, a poll brings the edge when it runs dry,
    /// and every byte comes in order.
    #[test]
    fn a_stream_with_no_pipe_is_read_with_system_calls_in_order() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        let sent = testkit::pattern(4, 300_000);
        backend.write_all(&sent[..20_000]).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        turn(&mut u);
        assert!(u.ends[0][1].held() > 0, "nothing was received first");
        let mut got = Vec::new();
        let mut buf = vec![0u8; 32 << 10];
        let reads = u.stats.sys_read.get();
        let mut at = 20_000;
        for _ in 0..2000 {
            if got.len() == sent.len() {
                break;
            }
            let step = u.pair(0).read_stream(Side::Backend, &mut buf);
            match step {
                Outcome::Data(n) => got.extend_from_slice(&buf[..n]),
                Outcome::WouldBlock => {
                    assert_ne!(
                        u.ends[0][1].recv,
                        Recv::On,
                        "a receive is on while streaming"
                    );
                    if at < sent.len() {
                        let end = (at + 50_000).min(sent.len());
                        backend.write_all(&sent[at..end]).expect("write");
                        at = end;
                    }
                    let _ = edges(&mut u, Side::Backend);
                }
                end => panic!("{end:?} after {} bytes", got.len()),
            }
        }
        assert_eq!(got.len(), sent.len(), "bytes missing");
        assert!(got == sent, "bytes out of order");
        assert!(u.stats.sys_read.get() > reads, "no read(2) was made");
        // Back to small reads: a receive is on again for what follows.
        backend.write_all(b"small").expect("write");
        let mut small = [0u8; 64];
        assert_eq!(read_at_the_next_edge(&mut u, &mut small), 5);
        backend.write_all(b"later").expect("write");
        assert_eq!(
            read_at_the_next_edge(&mut u, &mut small),
            5,
            "the receive was not armed again"
        );
    }

    /// A stream whose read came short (the relay then reads it as a plain
    /// direction) but whose next read fills the relay's buffer is still a
    /// stream: it stays with system calls, no receive is submitted (it
    /// would be cancelled at the next stream read, after bringing a piece
    /// to copy), and its destination is still written at once. On
    /// loopback most stream reads come short, so without this a stream
    /// with no pipe went back and forth, copying in user space (10% of
    /// the proxy's CPU in `bulk-readwrite`).
    #[test]
    fn a_plain_read_that_fills_the_buffer_keeps_a_stream_on_system_calls() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        let sent = testkit::pattern(6, 100_000);
        backend.write_all(&sent).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let mut got = vec![0u8; 40_000];
        let Outcome::Data(n) = u.pair(0).read_stream(Side::Backend, &mut got) else {
            panic!("the stream read brought nothing");
        };
        got.truncate(n);
        assert!(
            u.ends[0][1].splicing,
            "the stream read is not a system call"
        );
        let reads = u.stats.sys_read.get();
        let mut buf = [0u8; 8192];
        let step = u.pair(0).read(Side::Backend, &mut buf);
        assert!(matches!(step, Outcome::Data(8192)), "{step:?}");
        got.extend_from_slice(&buf);
        assert_eq!(u.stats.sys_read.get(), reads + 1, "not one read(2)");
        let e = &u.ends[0][1];
        assert!(e.splicing, "a full plain read left the system calls");
        assert_ne!(e.recv, Recv::On, "a receive was submitted");
        // A short one goes back to receives, and the bytes stay in order.
        let mut big = vec![0u8; 200_000];
        loop {
            match u.pair(0).read(Side::Backend, &mut big) {
                Outcome::Data(n) => got.extend_from_slice(&big[..n]),
                Outcome::WouldBlock => break,
                end => panic!("{end:?}"),
            }
        }
        assert!(!u.ends[0][1].splicing, "a short read kept the system calls");
        assert_eq!(got.len(), sent.len(), "bytes missing");
        assert!(got == sent, "bytes out of order");
    }

    /// A stream's destination that fills: the write takes what the socket
    /// takes and leaves the rest to the relay's buffer (no send copies
    /// it), and the poll for room gives `OUT` once the peer reads.
    #[test]
    fn a_streams_write_into_a_full_destination_leaves_the_rest_and_polls_for_room() {
        use std::io::Read;
        let (mut u, mut client, mut backend) = engine();
        turn(&mut u);
        backend.write_all(&[6u8; 40_000]).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = vec![0u8; 32 << 10];
        assert!(matches!(
            u.pair(0).read_stream(Side::Backend, &mut buf),
            Outcome::Data(_)
        ));
        let chunk = vec![7u8; 32 << 10];
        let mut written = 0;
        let full = (0..10_000).any(|_| match u.pair(0).write(Side::Client, &chunk) {
            Outcome::Data(n) if n == chunk.len() => {
                written += n;
                false
            }
            Outcome::Data(n) => {
                written += n;
                true
            }
            Outcome::WouldBlock => true,
            end => panic!("{end:?}"),
        });
        assert!(full, "the client's socket never filled");
        let c = &u.ends[0][Side::Client.index()];
        assert!(c.send.is_none(), "a send holds a copy of the rest");
        assert!(c.polling_out, "no poll for room");
        edges(&mut u, Side::Client);
        client.set_nonblocking(true).expect("nonblocking");
        let mut sink = vec![0u8; 1 << 20];
        let mut read = 0;
        let mut out = false;
        for _ in 0..200 {
            while let Ok(n) = client.read(&mut sink) {
                if n == 0 {
                    break;
                }
                read += n;
            }
            if edges(&mut u, Side::Client) & epoll::OUT != 0 {
                out = true;
                break;
            }
        }
        assert!(read > 0 && read <= written, "{read} of {written}");
        assert!(out, "no OUT edge once the client read");
    }

    /// A client that resets while a send to it waits for room: the send's
    /// completion takes the socket's error (the kernel reports it once),
    /// and the receive then finds only the end of the stream. Under epoll
    /// the relay's read of that socket would have had the error; here the
    /// read must say reset too, or the relay passes a FIN to the backend
    /// (a clean end of a stream that was cut) before the reset.
    #[test]
    fn a_receive_that_ends_after_a_send_took_the_reset_reads_as_a_reset() {
        let (mut u, client, _backend) = engine();
        turn(&mut u);
        let chunk = vec![3u8; RECV_MOST as usize];
        // Sends (one in flight) until one waits: the client never reads.
        let mut waiting = 0;
        for _ in 0..10_000 {
            match u.pair(0).write(Side::Client, &chunk) {
                Outcome::Data(_) => waiting = 0,
                Outcome::WouldBlock => waiting += 1,
                end => panic!("{end:?}"),
            }
            if waiting == 5 {
                break;
            }
            turn(&mut u);
        }
        assert_eq!(waiting, 5, "the client's socket never filled");
        assert_eq!(u.ends[0][0].recv, Recv::On, "the client's receive is on");
        reset(client);
        for _ in 0..50 {
            turn(&mut u);
            let e = &u.ends[0][0];
            if e.send.is_none() && (e.eof || e.error.is_some()) {
                break;
            }
        }
        let e = &u.ends[0][0];
        assert!(e.send.is_none(), "the send never completed");
        // The order this test is for (this kernel's: the send's poll was
        // armed last, so it is woken first).
        assert_eq!(e.broken, Some(Errno::CONNECTION_RESET), "the send's end");
        assert!(e.eof && e.error.is_none(), "the receive took the error");
        let mut buf = [0u8; 64];
        let got = u.pair(0).read(Side::Client, &mut buf);
        assert!(got.failed(), "a reset client read as {got:?}");
    }

    /// A send that failed with anything but a reset (a timeout, here) may
    /// follow a FIN the relay has not read yet: the end stands.
    #[test]
    fn a_fin_read_after_a_send_failed_otherwise_is_an_end() {
        let (mut u, client, _backend) = engine();
        turn(&mut u);
        client.shutdown(std::net::Shutdown::Write).expect("FIN");
        for _ in 0..50 {
            turn(&mut u);
            if u.ends[0][0].eof {
                break;
            }
        }
        assert!(u.ends[0][0].eof, "the FIN was not received");
        // As a send's completion leaves the end.
        u.ends[0][0].broken = Some(Errno::of(&io::ErrorKind::TimedOut.into()));
        let mut buf = [0u8; 64];
        let got = u.pair(0).read(Side::Client, &mut buf);
        assert!(matches!(got, Outcome::Eof), "{got:?}");
    }

    /// A stream with no pipe that does not read (its destination is full)
    /// still sees its source's reset as an edge.
    #[test]
    fn a_stream_with_no_pipe_sees_its_source_reset_while_it_does_not_read() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        backend.write_all(&[5u8; 40_000]).expect("write");
        std::thread::sleep(Duration::from_millis(20));
        let mut buf = vec![0u8; 32 << 10];
        assert!(matches!(
            u.pair(0).read_stream(Side::Backend, &mut buf),
            Outcome::Data(_)
        ));
        edges(&mut u, Side::Backend);
        reset(backend);
        let seen = (0..100).any(|_| edges(&mut u, Side::Backend) & epoll::ERR != 0);
        assert!(seen, "the reset was never reported");
    }

    /// A splicing direction whose destination is full reads nothing, yet
    /// its source's reset must still come as an edge, as epoll's would
    /// (the reset-flush timer and the pair's end depend on it).
    #[test]
    fn a_splicing_direction_sees_its_source_reset_while_it_does_not_read() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        let pipe = lend_pipe(&u);
        backend.write_all(&[2u8; 30_000]).expect("write");
        splice_at_least(&mut u, &pipe, 1, 64 << 10);
        // The relay now waits for its destination; nothing reads here.
        edges(&mut u, Side::Backend);
        reset(backend);
        let seen = (0..100).any(|_| edges(&mut u, Side::Backend) & epoll::ERR != 0);
        assert!(seen, "the reset was never reported");
    }

    /// A poll for room to write that the kernel ends on another event (the
    /// peer's FIN) is not the edge the relay waits for: it is polled again,
    /// and the edge comes once the peer reads.
    #[test]
    fn a_poll_for_room_ended_by_the_peers_fin_is_polled_again() {
        let (mut u, mut client, mut backend) = engine();
        turn(&mut u);
        let pipe = lend_pipe(&u);
        let chunk = vec![3u8; 64 << 10];
        backend.set_nonblocking(true).expect("nonblocking");
        // Fill the client's side: splice the backend's bytes into it until
        // it takes no more.
        let mut full = false;
        for _ in 0..2000 {
            let _ = backend.write(&chunk);
            turn(&mut u);
            let Outcome::Data(n) = u.pair(0).splice_in(Side::Backend, &pipe, 64 << 10) else {
                continue;
            };
            match u.pair(0).splice_out(&pipe, Side::Client, n) {
                Outcome::Data(m) if m == n => {}
                _ => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "the client's side never filled");
        assert!(u.ends[0][0].polling_out, "no poll for room");
        client.shutdown(std::net::Shutdown::Write).expect("fin");
        turn(&mut u);
        let before = u.ring.counts().completed;
        for _ in 0..5 {
            assert_eq!(
                edges(&mut u, Side::Client) & epoll::OUT,
                0,
                "room while full"
            );
        }
        assert!(
            u.ends[0][0].polling_out,
            "the poll for room ended on the FIN"
        );
        // And it waits: a poll armed again after the FIN would complete at
        // once, every turn (the worker would spin until the peer reads).
        let spun = u.ring.counts().completed - before;
        assert!(spun <= 2, "{spun} completions in five idle turns");
        let mut sink = vec![0u8; 1 << 20];
        client.set_nonblocking(true).expect("nonblocking");
        let mut room = false;
        for _ in 0..200 {
            let _ = std::io::Read::read(&mut client, &mut sink);
            if edges(&mut u, Side::Client) & epoll::OUT != 0 {
                room = true;
                break;
            }
        }
        assert!(room, "no edge once the peer read");
    }

    /// A stream that turned small is read from what its receive held
    /// (here: what it brought before the relay spliced, partly taken), with
    /// no receive on since the splice: the relay takes that short read for
    /// drained, so a receive must be submitted, or the direction never
    /// hears of its next bytes (iperf3 stalled so, mid-stream, one run in
    /// four).
    #[test]
    fn a_short_read_of_what_was_held_leaves_a_receive_on() {
        let (mut u, _client, mut backend) = engine();
        backend.write_all(&[4u8; 100]).expect("write");
        for _ in 0..50 {
            turn(&mut u);
            if u.ends[0][1].held() == 100 {
                break;
            }
        }
        assert_eq!(u.ends[0][1].held(), 100, "the receive brought it");
        let pipe = lend_pipe(&u);
        let moved = u.pair(0).splice_in(Side::Backend, &pipe, 10);
        assert!(matches!(moved, Outcome::Data(10)), "{moved:?}");
        assert_eq!(u.ends[0][1].recv, Recv::Off, "splicing cancels the receive");
        let mut buf = [0u8; 8192];
        let got = u.pair(0).read(Side::Backend, &mut buf);
        assert!(matches!(got, Outcome::Data(90)), "{got:?}");
        backend.write_all(b"later").expect("write");
        assert_eq!(
            read_at_the_next_edge(&mut u, &mut buf),
            5,
            "no edge for the bytes after the short read"
        );
    }

    /// A splicing direction's watch for a reset, on a source that has sent
    /// its FIN while the relay does not read it (its destination is full):
    /// the kernel reports the FIN to every poll, and the watch must not
    /// complete again and again for it (the worker spun so, with the idle
    /// timeout never firing, until the destination drained).
    #[test]
    fn the_reset_watch_of_a_source_that_sent_its_fin_waits() {
        let (mut u, _client, mut backend) = engine();
        turn(&mut u);
        let pipe = lend_pipe(&u);
        backend.write_all(&[5u8; 30_000]).expect("write");
        backend.shutdown(std::net::Shutdown::Write).expect("fin");
        splice_at_least(&mut u, &pipe, 1, 1000);
        assert!(u.ends[0][1].watching, "no watch while splicing");
        // The relay now waits for its destination and reads nothing.
        turn(&mut u);
        let before = u.ring.counts().completed;
        for _ in 0..5 {
            turn(&mut u);
        }
        let spun = u.ring.counts().completed - before;
        assert!(spun <= 2, "{spun} completions in five idle turns");
        assert!(u.ends[0][1].watching, "the watch ended on the FIN");
    }

    /// The first splice of a stream can move only what its receive had
    /// brought (the socket is not read then): its source must be watched
    /// for a reset from that moment, since its receive is cancelled.
    #[test]
    fn a_reset_right_after_the_switch_to_splicing_is_seen() {
        let (mut u, _client, mut backend) = engine();
        backend.write_all(&[6u8; 100]).expect("write");
        for _ in 0..50 {
            turn(&mut u);
            if u.ends[0][1].held() == 100 {
                break;
            }
        }
        let pipe = lend_pipe(&u);
        let moved = u.pair(0).splice_in(Side::Backend, &pipe, 10);
        assert!(matches!(moved, Outcome::Data(10)), "{moved:?}");
        // The relay waits for its destination; the source resets.
        reset(backend);
        let seen = (0..100).any(|_| edges(&mut u, Side::Backend) & epoll::ERR != 0);
        assert!(seen, "the reset was never reported");
    }

    /// An engine for one pair whose client is attached, with no backend
    /// socket yet, and the client's peer.
    fn engine_connecting() -> (Uring, TcpStream) {
        use clap::Parser;
        let cli = crate::config::Cli::try_parse_from(["proxy"]).expect("cli");
        let cfg = crate::config::resolve(cli, 1024).expect("config");
        let mut u = <Uring as Engine>::new(&cfg, 1, Arc::new(Stats::default())).expect("ring");
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ours = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        ours.set_nonblocking(true).expect("nonblocking");
        let peer = l.accept().expect("accept").0;
        u.attach(0, 0, OwnedFd::from(ours), None, false);
        (u, peer)
    }

    /// Starts the ring's connect of the pair's backend to `addr`, as the
    /// loop does for a new pair.
    fn connect_later(u: &mut Uring, addr: SocketAddr) {
        let fd = socket::stream_socket(&addr).expect("socket");
        u.connect_later(0, 0, fd, addr);
    }

    /// Turns until the backend side has an edge (bounded).
    fn backend_edge(u: &mut Uring) -> u32 {
        for _ in 0..200 {
            let bits = edges(u, Side::Backend);
            if bits != 0 {
                return bits;
            }
        }
        panic!("no edge for the backend");
    }

    /// A backend connect made by the ring: the end gets the `OUT` edge of
    /// a connect that completed and its socket carries bytes, with no
    /// system call for the connect or the option (`TCP_NODELAY` is set).
    #[test]
    fn a_ring_connect_gives_the_backend_a_connected_socket_without_a_system_call() {
        use std::io::Read;
        let (mut u, _client) = engine_connecting();
        assert!(
            u.can_connect_later(),
            "this kernel sets options through the ring"
        );
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        connect_later(&mut u, l.local_addr().expect("addr"));
        let bits = backend_edge(&mut u);
        assert_eq!(bits & (epoll::ERR | epoll::HUP), 0, "failed: {bits:#x}");
        assert_ne!(bits & epoll::OUT, 0, "{bits:#x}");
        let (mut peer, _) = l.accept().expect("accept");
        assert_eq!(u.pair(0).write(Side::Backend, b"hi"), Outcome::Data(2));
        turn(&mut u);
        let mut got = [0u8; 2];
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hi");
        assert_eq!(
            (u.stats.sys_connect.get(), u.stats.sys_sockopt.get()),
            (0, 0),
            "system calls made by the engine for the connect"
        );
        let fd = u.ends[0][Side::Backend.index()]
            .fd
            .as_ref()
            .expect("socket");
        assert!(
            socket::nodelay(fd).expect("getsockopt"),
            "TCP_NODELAY not set"
        );
        assert_eq!(u.connect_error(0), None);
    }

    /// A refused ring connect is a connect that failed, with the reason
    /// the table logs and counts.
    #[test]
    fn a_refused_ring_connect_fails_with_its_reason() {
        let (mut u, _client) = engine_connecting();
        let closed = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        connect_later(&mut u, closed);
        let bits = backend_edge(&mut u);
        assert_ne!(bits & epoll::ERR, 0, "not failed: {bits:#x}");
        let why = u.connect_error(0).map(Errno::fault);
        assert_eq!(why, Some(netio::Fault::Refused));
    }

    /// A listener whose accept queue is full: a connect to it waits (its
    /// SYN is dropped) until the kernel gives up, minutes later.
    fn silent_backend() -> (OwnedFd, TcpStream, SocketAddr) {
        let opts = socket::ListenOptions {
            backlog: 0,
            reuse_port: false,
        };
        let fd = socket::listen(&"127.0.0.1:0".parse().expect("addr"), opts).expect("listen");
        let addr = socket::local_addr(&fd).expect("addr");
        let filler = TcpStream::connect(addr).expect("connect");
        (fd, filler, addr)
    }

    /// A pair given up on while the ring connects it (a client that left,
    /// a connect timeout): the connect is cancelled and its socket closed
    /// once it ended, whether the give-up came in a later batch or in the
    /// same one as the connect (then the cancel runs before the connect
    /// does, and is made again).
    #[test]
    fn a_pair_given_up_on_while_the_ring_connects_it_leaves_nothing_behind() {
        let (_listener, _filler, addr) = silent_backend();
        for same_batch in [false, true] {
            let (mut u, _client) = engine_connecting();
            let fd = socket::stream_socket(&addr).expect("socket");
            // The socket by its inode: other tests open and close
            // descriptors meanwhile, and numbers are reused.
            let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .expect("the socket's link");
            u.connect_later(0, 0, fd, addr);
            if !same_batch {
                for _ in 0..5 {
                    turn(&mut u);
                }
                let e = &u.ends[0][Side::Backend.index()];
                assert!(e.linking, "the connect did not wait");
            }
            u.close(0, [true, true]);
            for _ in 0..100 {
                if u.unlinked.is_empty() {
                    break;
                }
                turn(&mut u);
            }
            assert!(
                u.unlinked.is_empty(),
                "the connect was never cancelled (same batch: {same_batch})"
            );
            turn(&mut u);
            assert_eq!(edges(&mut u, Side::Backend), 0, "an edge for a pair gone");
            let still_open = std::fs::read_dir("/proc/self/fd")
                .expect("fds")
                .filter_map(|d| std::fs::read_link(d.ok()?.path()).ok())
                .any(|l| l == link);
            assert!(
                !still_open,
                "the socket left open (same batch: {same_batch})"
            );
        }
    }

    /// An option the kernel refuses through the ring ends the connect
    /// with its own completion (none comes for the connect after it): the
    /// connect fails with that reason, the socket is not held for a
    /// completion that never comes, and later connects are made with
    /// system calls. (A Unix socket has no `TCP_NODELAY`.)
    #[test]
    fn a_refused_option_fails_the_connect_and_turns_ring_connects_off() {
        use std::os::unix::net::UnixStream;
        let (mut u, _client) = engine_connecting();
        let (unix, _other) = UnixStream::pair().expect("pair");
        unix.set_nonblocking(true).expect("nonblocking");
        let addr = "127.0.0.1:1".parse().expect("addr");
        u.connect_later(0, 0, OwnedFd::from(unix), addr);
        let bits = backend_edge(&mut u);
        assert_ne!(bits & epoll::ERR, 0, "not failed: {bits:#x}");
        assert!(u.connect_error(0).is_some(), "no reason");
        assert!(!u.can_connect_later(), "ring connects still on");
        assert!(!u.ends[0][Side::Backend.index()].linking);
        u.close(0, [false, false]);
        turn(&mut u);
        assert!(
            u.unlinked.is_empty(),
            "a socket held for a completion that never comes"
        );
    }

    /// While a send to one side is in flight, a read of the other side
    /// (that send's source) is turned away, so the relay does not take
    /// bytes it could not write yet; the send's end is that side's next
    /// `IN` edge, and the bytes are all there.
    #[test]
    fn a_read_waits_while_the_send_to_its_destination_is_in_flight() {
        use std::io::Read;
        let (mut u, mut client_peer, mut backend_peer) = engine();
        backend_peer.write_all(b"answer").expect("write");
        for _ in 0..50 {
            turn(&mut u);
            if !u.ends[0][Side::Backend.index()].inbox.is_empty() {
                break;
            }
        }
        assert_eq!(u.pair(0).write(Side::Client, b"hello"), Outcome::Data(5));
        let mut buf = [0u8; 64];
        assert_eq!(
            u.pair(0).read(Side::Backend, &mut buf),
            Outcome::WouldBlock,
            "read while the send to its destination is in flight"
        );
        let mut bits = 0;
        for _ in 0..50 {
            bits |= edges(&mut u, Side::Backend);
            if bits & epoll::IN != 0 {
                break;
            }
        }
        assert_ne!(bits & epoll::IN, 0, "no IN edge after the send: {bits:#x}");
        assert_eq!(u.pair(0).read(Side::Backend, &mut buf), Outcome::Data(6));
        assert_eq!(&buf[..6], b"answer");
        let mut got = [0u8; 5];
        client_peer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        client_peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello");
    }
}
