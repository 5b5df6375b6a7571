//! One connection of a worker: its socket, what epoll said about it, and
//! the steps every mode is made of — read, send (parking what the socket
//! does not take), flush what is parked, and linger after our FIN.

use crate::http;
use netio::sys::socket;
use std::io;
use std::os::fd::OwnedFd;

/// Reads or writes one connection may do in a row before the others get
/// their turn; it is then resumed without waiting for an event.
pub(crate) const FAIR_ROUNDS: u32 = 16;
/// Pending buffers kept in stock for reuse, and the largest one kept.
pub(crate) const SPARES: usize = 64;
pub(crate) const SPARE_MAX: usize = 4 * crate::server::SCRATCH;

/// Bytes a short write left behind, lent from the worker's stock.
pub(crate) struct Pending {
    pub(crate) buf: Vec<u8>,
    /// How much of `buf` has been written since.
    pub(crate) at: usize,
}

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
    /// Reading may return data (no `EAGAIN` since the last edge).
    pub(crate) readable: bool,
    /// Writing may make progress.
    pub(crate) writable: bool,
    /// The peer's FIN (or an error) has been reported: a short read does
    /// not prove the socket drained, so read on until 0.
    pub(crate) rdhup: bool,
    /// Reading returned 0.
    pub(crate) eof: bool,
    /// The mode is done: flush, send FIN, discard input until EOF, close.
    pub(crate) ending: bool,
    /// Our FIN has been sent.
    pub(crate) shut: bool,
    /// Queued to be served again without an event.
    pub(crate) again: bool,
    pub(crate) pending: Option<Pending>,
    /// Source mode: stream offset of the next byte to write.
    pub(crate) sent: u64,
    /// Http mode: request framing.
    pub(crate) http: http::Parser,
}

impl Conn {
    /// One `read` into `buf`. `Ok(0)` means nothing to do now: the socket
    /// drained (`readable` is cleared) or hit EOF (`eof` is set).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        let fd = self.fd.as_ref().ok_or(End)?;
        match socket::read(fd, buf) {
            Ok(0) => {
                self.eof = true;
                self.readable = false;
                Ok(0)
            }
            Ok(n) => {
                // Edge-triggered: a short read drained the socket, unless a
                // FIN is pending, which only a read of 0 will show.
                if n < buf.len() && !self.rdhup {
                    self.readable = false;
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                Ok(0)
            }
            Err(_) => Err(End),
        }
    }

    /// Writes `data`; whatever the socket does not take is parked in a
    /// pending buffer. Must only be called with nothing pending.
    pub(crate) fn send(&mut self, data: &[u8], spares: &mut Vec<Vec<u8>>) -> Result<(), End> {
        debug_assert!(self.pending.is_none());
        let fd = self.fd.as_ref().ok_or(End)?;
        let mut done = 0;
        if self.writable {
            match socket::write(fd, data) {
                Ok(n) => done = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(End),
            }
        }
        if done < data.len() {
            // The send buffer is full: the next OUT edge resumes us.
            self.writable = false;
            let mut buf = spares.pop().unwrap_or_default();
            buf.extend_from_slice(&data[done..]);
            self.pending = Some(Pending { buf, at: 0 });
        }
        Ok(())
    }

    /// Writes pending bytes. `Ok(true)` means nothing is pending any more.
    pub(crate) fn flush(&mut self, spares: &mut Vec<Vec<u8>>) -> Result<bool, End> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(true);
        };
        if !self.writable {
            return Ok(false);
        }
        let fd = self.fd.as_ref().ok_or(End)?;
        match socket::write(fd, &p.buf[p.at..]) {
            Ok(n) => p.at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(End),
        }
        if p.at < p.buf.len() {
            self.writable = false;
            return Ok(false);
        }
        if let Some(Pending { mut buf, .. }) = self.pending.take() {
            if spares.len() < SPARES && buf.capacity() <= SPARE_MAX {
                buf.clear();
                spares.push(buf);
            }
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
            if !self.readable {
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
