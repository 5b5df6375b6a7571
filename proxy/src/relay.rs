//! One direction of a proxied pair — source socket → what it holds →
//! destination socket — and the rules that move its bytes: when to read,
//! when to write, when to pass the FIN on, and which failure to report.
//!
//! The rules are written once, against a small I/O trait ([`Io`]), so the
//! epoll engine's real sockets and a test's fake ones drive the same code:
//!
//! - [`Flow::next`] decides, from the flow and the two sockets' readiness,
//!   what happens next ([`Action`]); it does no I/O.
//! - [`Flow::received`], [`Flow::sent`] and [`Flow::ended`] are the
//!   transitions an I/O result causes: `Received(n)`, `Sent(n)`, `Eof`.
//!   A reset is not a transition of the flow: [`step`] reports it as
//!   [`Step::Failed`] with the side, and the pair decides what follows —
//!   usually to go on reading what the reset side sent before it (its
//!   kernel still holds it) with [`Flow::source_reset`] set, so that its
//!   next reset or error counts as the end of its stream.
//! - [`step`] is the readiness-driven loop over both: it performs the
//!   action through [`Io`], feeds the result back, and stops when the
//!   direction would block, must wait for a buffer, has ended, failed, or
//!   has had its fair share ([`FAIR_ROUNDS`]).
//!
//! A completion-driven engine (io_uring) feeds the same transitions from
//! its completions and asks [`Flow::next`] what to submit. Bytes are only
//! ever read into an empty [`Hold`], and only once the hold is empty again
//! is the next read made: order is kept without any bookkeeping, and a
//! buffer the kernel lends (a provided-buffer ring) would be one more kind
//! of hold.

use crate::pipes::{PipeId, PipePool};
use crate::pool::{Buf, Pools};
use netio::{Outcome, Ready, Side};

/// Reads (or splices) one direction may do in a row before it yields to
/// the other connections.
pub const FAIR_ROUNDS: u32 = 16;
/// A direction keeps its pipe streaming while splices move at least this
/// much; smaller pieces are cheaper through a buffer.
pub const SPLICE_MIN: usize = 8192;

/// The I/O one pair's two sockets offer the relay. Every call is one
/// non-blocking system call (or its fake) and says what it came to.
pub trait Io {
    /// `read(2)` from `from` into `buf`.
    fn read(&mut self, from: Side, buf: &mut [u8]) -> Outcome;
    /// A read for a direction that streams (its last read filled the
    /// buffer) and has no pipe: an engine may read such a socket
    /// differently (the uring engine reads it with `read(2)`, as epoll
    /// does, rather than through receives). By default, [`Io::read`].
    fn read_stream(&mut self, from: Side, buf: &mut [u8]) -> Outcome {
        self.read(from, buf)
    }
    /// `send(2)` of `data` to `to`.
    fn write(&mut self, to: Side, data: &[u8]) -> Outcome;
    /// `splice(2)` of up to `len` bytes from socket `from` into `pipe`.
    fn splice_in(&mut self, from: Side, pipe: &PipeId, len: usize) -> Outcome;
    /// `splice(2)` of up to `len` bytes from `pipe` to socket `to`.
    fn splice_out(&mut self, pipe: &PipeId, to: Side, len: usize) -> Outcome;
    /// `shutdown(SHUT_WR)` on `to`: our FIN after everything written.
    /// `Outcome::Data(0)` is success.
    fn shutdown(&mut self, to: Side) -> Outcome;
}

/// Where a direction's in-flight bytes are. One at a time: a direction
/// never holds a buffer and a pipe together.
#[derive(Debug, Default)]
pub enum Hold {
    /// Nothing in flight, nothing lent.
    #[default]
    Idle,
    /// A buffer from the pool; its live range is what is still to write.
    Buf(Buf),
    /// A pipe from the pipe pool and the bytes queued in it.
    Pipe { pipe: PipeId, queued: usize },
}

impl Hold {
    /// Bytes read from the source and not yet written to the destination.
    #[inline]
    pub fn held(&self) -> usize {
        match self {
            Hold::Idle => 0,
            Hold::Buf(b) => b.len(),
            Hold::Pipe { queued, .. } => *queued,
        }
    }

    /// Gives what is lent back to its pool, dropping any bytes in it; a
    /// pipe that still holds bytes is returned to the caller instead,
    /// since it must be renewed (nobody will read those bytes).
    pub fn release(&mut self, bufs: &mut Pools, pipes: &mut PipePool) -> Option<PipeId> {
        match std::mem::take(self) {
            Hold::Idle => None,
            Hold::Buf(b) => {
                bufs.checkin(b);
                None
            }
            Hold::Pipe { pipe, queued: 0 } => {
                pipes.checkin(pipe);
                None
            }
            Hold::Pipe { pipe, .. } => Some(pipe),
        }
    }
}

/// One direction: bytes from the `from` socket to the other one.
#[derive(Debug)]
pub struct Flow {
    /// The source socket.
    pub from: Side,
    pub hold: Hold,
    /// The last read filled its buffer (or the last splice moved at least
    /// [`SPLICE_MIN`]): a stream, which a large buffer or a pipe serves
    /// with fewer system calls.
    pub streaming: bool,
    /// Reading the source returned 0: it will send nothing more.
    pub eof: bool,
    /// The FIN has been passed to the destination.
    pub fin_sent: bool,
    /// The source has reset: what it sent before is still read out and
    /// passed on, and a read that fails ends the stream like a FIN (the
    /// pair then passes the reset on, never a FIN).
    pub source_reset: bool,
    /// Bytes written to the destination.
    pub bytes: u64,
}

/// What a direction does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write what it holds to the destination.
    Send,
    /// Read the source (it holds nothing).
    Receive,
    /// The source ended and everything before the end is written: send
    /// the FIN on. `shutdown` is false when the other direction has ended
    /// too: the pair then closes at once, and the close sends the FIN.
    PassFin { shutdown: bool },
    /// Nothing to do until an edge (or the connect completes).
    Wait,
    /// Ended: everything written and the FIN passed on.
    Done,
}

/// Why [`step`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Waiting for an edge: the source drained or the destination full.
    Blocked,
    /// Waiting for a buffer from the pool.
    NoBuffer,
    /// Stopped only to be fair: resume without waiting for an edge.
    Yield,
    /// The direction has ended.
    Done,
    /// This socket failed (a reset or an error).
    Failed(Side),
}

impl Flow {
    pub fn new(from: Side) -> Flow {
        Flow {
            from,
            hold: Hold::Idle,
            streaming: false,
            eof: false,
            fin_sent: false,
            source_reset: false,
            bytes: 0,
        }
    }

    /// The rules. `connected`: the backend connect has completed, so that
    /// bytes may go to the backend and come from it. `other_fin`: the other
    /// direction has passed its FIN on.
    pub fn next(&self, src: Ready, dst: Ready, connected: bool, other_fin: bool) -> Action {
        if !connected && self.from == Side::Backend {
            return Action::Wait;
        }
        if self.hold.held() > 0 {
            return if connected && dst.writable {
                Action::Send
            } else {
                Action::Wait
            };
        }
        if self.fin_sent {
            return Action::Done;
        }
        if self.eof {
            return if connected {
                Action::PassFin {
                    shutdown: !other_fin,
                }
            } else {
                Action::Wait
            };
        }
        if src.readable {
            Action::Receive
        } else {
            Action::Wait
        }
    }

    /// `n > 0` bytes arrived from the source into the (empty) hold, from a
    /// read that offered `room`.
    pub fn received(&mut self, n: usize, room: usize) {
        debug_assert!(n > 0);
        match &mut self.hold {
            Hold::Buf(b) => {
                debug_assert!(b.is_empty());
                b.fill(n);
                self.streaming = n == room;
            }
            Hold::Pipe { queued, .. } => {
                debug_assert_eq!(*queued, 0);
                *queued = n;
                self.streaming = n >= SPLICE_MIN;
            }
            Hold::Idle => debug_assert!(false, "bytes received with nothing to hold them"),
        }
    }

    /// The destination took `n` of the held bytes.
    pub fn sent(&mut self, n: usize) {
        debug_assert!(n <= self.hold.held());
        match &mut self.hold {
            Hold::Buf(b) => b.consume(n),
            Hold::Pipe { queued, .. } => *queued -= n,
            Hold::Idle => {}
        }
        self.bytes += n as u64;
    }

    /// The source ended.
    pub fn ended(&mut self) {
        self.eof = true;
    }

    /// The destination is gone: nothing more is read or passed on, and
    /// what is held is dropped (returned as for [`Hold::release`]).
    pub fn cut(&mut self, bufs: &mut Pools, pipes: &mut PipePool) -> Option<PipeId> {
        self.eof = true;
        self.fin_sent = true;
        self.hold.release(bufs, pipes)
    }
}

/// What the relay borrows from: the buffer pools and the pipe pool.
pub struct Lend<'a> {
    pub bufs: &'a mut Pools,
    pub pipes: &'a mut PipePool,
}

/// Moves the bytes of `flow` until it would block, must wait for a buffer,
/// has ended, a socket fails, or it has read [`FAIR_ROUNDS`] times.
/// `ready` is the pair's readiness by side; `other_fin` and `connected` as
/// for [`Flow::next`]. What is lent goes back as soon as the hold is empty
/// and the source has nothing more to give.
pub fn step(
    flow: &mut Flow,
    ready: &mut [Ready; 2],
    connected: bool,
    other_fin: bool,
    lend: &mut Lend<'_>,
    io: &mut impl Io,
) -> Step {
    let (src, dst) = (flow.from, flow.from.other());
    let mut rounds = 0;
    loop {
        let action = flow.next(ready[src.index()], ready[dst.index()], connected, other_fin);
        match action {
            Action::Send => {
                let offered = flow.hold.held();
                let got = match &flow.hold {
                    Hold::Buf(b) => io.write(dst, lend.bufs.data(b)),
                    Hold::Pipe { pipe, queued } => io.splice_out(pipe, dst, *queued),
                    Hold::Idle => Outcome::WouldBlock,
                };
                ready[dst.index()].after_write(got, offered);
                match got {
                    Outcome::Data(n) => {
                        flow.sent(n);
                        if n < offered {
                            return Step::Blocked;
                        }
                    }
                    Outcome::WouldBlock | Outcome::Eof => return Step::Blocked,
                    Outcome::Reset | Outcome::Error(_) => {
                        // The peer is gone, but what it sent before its
                        // reset may still be queued: let the other
                        // direction read it out before the pair closes.
                        let r = &mut ready[dst.index()];
                        r.readable = true;
                        r.hangup = true;
                        return Step::Failed(dst);
                    }
                }
            }
            Action::Receive => {
                if rounds == FAIR_ROUNDS {
                    return Step::Yield;
                }
                rounds += 1;
                if let Err(stop) = receive(flow, &mut ready[src.index()], connected, lend, io) {
                    return stop;
                }
            }
            Action::PassFin { shutdown } => {
                flow.hold.release(lend.bufs, lend.pipes);
                flow.fin_sent = true;
                if shutdown && io.shutdown(dst).failed() {
                    return Step::Failed(dst);
                }
                return Step::Blocked;
            }
            Action::Wait | Action::Done => {
                if flow.hold.held() == 0 {
                    flow.hold.release(lend.bufs, lend.pipes);
                }
                return if action == Action::Done {
                    Step::Done
                } else {
                    Step::Blocked
                };
            }
        }
    }
}

/// One read (or splice in) into the flow's empty hold, borrowing what it
/// needs first: a streaming direction takes a pipe when one is free (or a
/// large buffer), any other a regular buffer.
fn receive(
    flow: &mut Flow,
    ready: &mut Ready,
    connected: bool,
    lend: &mut Lend<'_>,
    io: &mut impl Io,
) -> Result<(), Step> {
    let src = flow.from;
    if flow.streaming && connected && !matches!(flow.hold, Hold::Pipe { .. }) {
        if let Some(pipe) = lend.pipes.checkout() {
            flow.hold.release(lend.bufs, lend.pipes);
            flow.hold = Hold::Pipe { pipe, queued: 0 };
        }
    }
    let (got, room) = match &mut flow.hold {
        Hold::Pipe { pipe, .. } => {
            let got = io.splice_in(src, pipe, lend.pipes.size());
            ready.after_splice(got);
            (got, 0)
        }
        hold => {
            // A streaming direction trades a regular buffer for a large
            // one when one is free.
            if flow.streaming
                && lend.bufs.large.has_free()
                && matches!(hold, Hold::Buf(b) if !b.is_large())
            {
                hold.release(lend.bufs, lend.pipes);
            }
            if matches!(hold, Hold::Idle) {
                match lend.bufs.checkout(flow.streaming) {
                    Some(b) => *hold = Hold::Buf(b),
                    None => return Err(Step::NoBuffer),
                }
            }
            let Hold::Buf(b) = hold else {
                return Err(Step::NoBuffer);
            };
            let spare = lend.bufs.spare(b);
            let room = spare.len();
            let got = if flow.streaming {
                io.read_stream(src, spare)
            } else {
                io.read(src, spare)
            };
            ready.after_read(got, room);
            (got, room)
        }
    };
    match got {
        Outcome::Data(n) => flow.received(n, room),
        Outcome::Eof => flow.ended(),
        Outcome::WouldBlock => {}
        Outcome::Reset | Outcome::Error(_) if flow.source_reset => flow.ended(),
        Outcome::Reset | Outcome::Error(_) => return Err(Step::Failed(src)),
    }
    Ok(())
}
