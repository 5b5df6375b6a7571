//! One connection of a worker: its socket, what epoll said about it, and
//! the steps every mode is made of — read, send (parking what the socket
//! does not take), flush what is parked, and linger after our FIN.
//!
//! The edge-triggered rules (when a read or write proves there is nothing
//! more to do until the next edge) are [`netio::Ready`]'s, and what an
//! errno means is [`netio::Outcome`]'s: here a failed socket is simply the
//! end of its connection.

use crate::http;
use netio::sys::socket;
use netio::{Outcome, Ready};
use std::os::fd::OwnedFd;

/// Reads or writes one connection may do in a row before the others get
/// their turn; it is then resumed without waiting for an event.
pub(crate) const FAIR_ROUNDS: u32 = 16;

/// Why a connection must be closed now: its client is done or gone.
pub(crate) struct End;

/// What a connection waits for after being served.
pub(crate) enum Next {
    /// An event: it read or wrote until `EAGAIN` (or waits for its pending
    /// bytes to drain).
    Event,
    /// Its turn: it stopped only to let others run.
    Turn,
}

/// One client connection.
#[derive(Default)]
pub(crate) struct Conn {
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) gen: u32,
    /// What epoll said about the socket since it last said `EAGAIN`.
    pub(crate) ready: Ready,
    /// Reading returned 0.
    pub(crate) eof: bool,
    /// The mode is done: flush, send FIN, discard input until EOF, close.
    pub(crate) ending: bool,
    /// Our FIN has been sent.
    shut: bool,
    pending: Option<Pending>,
    /// Source mode: stream offset of the next byte to write.
    pub(crate) sent: u64,
    /// Http mode: request framing.
    pub(crate) http: http::Parser,
}

/// Bytes a short write left behind, in a buffer from the worker's
/// [`Spares`].
struct Pending {
    buf: Vec<u8>,
    /// How much of `buf` has been written since.
    at: usize,
}

impl Conn {
    /// A connection just accepted on `fd`, in a slot at generation `gen`.
    pub(crate) fn open(fd: OwnedFd, gen: u32) -> Conn {
        Conn {
            fd: Some(fd),
            gen,
            ..Conn::default()
        }
    }

    /// Closes the socket (dropping the descriptor also removes it from
    /// epoll) and gives back whatever the connection held, so that an idle
    /// slot holds no memory. The generation changes: stale events and
    /// run-again entries for the slot are recognised and dropped.
    pub(crate) fn close(&mut self, spares: &mut Spares) {
        self.fd = None;
        if let Some(p) = self.pending.take() {
            spares.give(p.buf);
        }
        // Drop any partial request head.
        self.http = http::Parser::new();
        self.gen = self.gen.wrapping_add(1);
    }

    /// One `read` into `buf`. `Ok(0)` means nothing to do now: the socket
    /// drained (it is no longer readable) or hit EOF (`eof` is set).
    #[inline]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let fd = self.fd.as_ref().ok_or(End)?;
        let got = Outcome::of(socket::read(fd, buf));
        self.ready.after_read(got, buf.len());
        self.eof |= matches!(got, Outcome::Eof);
        moved(got)
    }

    /// One `write` of `data` (not empty); returns how much the socket took.
    #[inline]
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<usize, End> {
        write(self.fd.as_ref(), &mut self.ready, data)
    }

    /// Writes `data`; whatever the socket does not take is parked in a
    /// pending buffer, and the connection waits for it to drain. Must only
    /// be called with nothing pending.
    pub(crate) fn send(&mut self, data: &[u8], spares: &mut Spares) -> Result<(), End> {
        debug_assert!(self.pending.is_none());
        let done = if self.ready.writable {
            self.write(data)?
        } else {
            0
        };
        if done < data.len() {
            // The send buffer is full: the next OUT edge resumes us.
            let mut buf = spares.take();
            buf.extend_from_slice(&data[done..]);
            self.pending = Some(Pending { buf, at: 0 });
        }
        Ok(())
    }

    /// Writes pending bytes. `Ok(true)` means nothing is pending any more.
    pub(crate) fn flush(&mut self, spares: &mut Spares) -> Result<bool, End> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(true);
        };
        if !self.ready.writable {
            return Ok(false);
        }
        p.at += write(self.fd.as_ref(), &mut self.ready, &p.buf[p.at..])?;
        if p.at < p.buf.len() {
            return Ok(false);
        }
        if let Some(p) = self.pending.take() {
            spares.give(p.buf);
        }
        Ok(true)
    }

    /// The end of a connection the mode is done with: send FIN once, then
    /// discard input until the client's EOF. Closing with unread input
    /// would send a reset that can destroy the last response in flight.
    pub(crate) fn linger(&mut self, scratch: &mut [u8], rounds: &mut u32) -> Result<Next, End> {
        if !self.shut {
            self.shut = true;
            let fd = self.fd.as_ref().ok_or(End)?;
            socket::shutdown_write(fd).map_err(|_| End)?;
        }
        loop {
            if self.eof {
                return Err(End);
            }
            if !self.ready.readable {
                return Ok(Next::Event);
            }
            if *rounds >= FAIR_ROUNDS {
                return Ok(Next::Turn);
            }
            *rounds += 1;
            self.read(scratch)?;
        }
    }
}

/// One `write` on `fd`, noted in `ready` (a connection's fields, apart so
/// that the bytes may come from the same connection's pending buffer).
#[inline]
fn write(fd: Option<&OwnedFd>, ready: &mut Ready, data: &[u8]) -> Result<usize, End> {
    let fd = fd.ok_or(End)?;
    let got = Outcome::of(socket::write(fd, data));
    ready.after_write(got, data.len());
    if matches!(got, Outcome::Eof) {
        // A write of something never returns 0 on a socket; were it to, it
        // would count as a full send buffer.
        ready.writable = false;
    }
    moved(got)
}

/// How many bytes a read or write moved (0: none now), or the end of the
/// connection if its socket failed.
#[inline]
fn moved(got: Outcome) -> Result<usize, End> {
    match got {
        Outcome::Data(n) => Ok(n),
        Outcome::Eof | Outcome::WouldBlock => Ok(0),
        Outcome::Reset | Outcome::Error(_) => Err(End),
    }
}

/// The worker's stock of pending buffers: lent to a connection whose write
/// fell short, taken back when it drained or closed.
pub(crate) struct Spares {
    stock: Vec<Vec<u8>>,
}

impl Spares {
    pub(crate) fn new() -> Spares {
        Spares {
            stock: Vec::with_capacity(Spares::KEPT),
        }
    }

    /// Buffers kept in stock for reuse.
    const KEPT: usize = 64;
    /// The largest buffer kept; a larger one is freed.
    const LARGEST: usize = 4 * crate::server::SCRATCH;

    /// An empty buffer, from the stock if it has one.
    fn take(&mut self) -> Vec<u8> {
        self.stock.pop().unwrap_or_default()
    }

    /// Takes `buf` back into the stock, unless the stock is full or `buf`
    /// too large to keep.
    fn give(&mut self, mut buf: Vec<u8>) {
        if self.stock.len() < Spares::KEPT && buf.capacity() <= Spares::LARGEST {
            buf.clear();
            self.stock.push(buf);
        }
    }
}
