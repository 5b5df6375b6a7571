//! What epoll has told a loop about one socket, remembered until the
//! socket says `EAGAIN`.
//!
//! Every socket is registered once, edge-triggered, for both directions
//! and the peer's FIN ([`crate::sys::epoll::SOCKET`]), and never modified:
//! an edge sets a flag here, and the flag stays set until a read or write
//! proves there is nothing more to do. That is the whole of the
//! edge-triggered contract, and these few rules are its one copy:
//!
//! - a read that returns less than it asked for drained the socket,
//!   unless the peer's FIN (or an error) was reported: only a read of 0
//!   (or the error) will show that, so the socket stays readable;
//! - a splice that moves less than it asked for proves nothing (the pipe
//!   may have run out of room): only `EAGAIN` or the end does;
//! - a write that takes less than it was offered, or `EAGAIN`, means the
//!   send buffer is full until the next `OUT` edge.

use crate::outcome::Outcome;
use crate::sys::epoll::Readiness;

/// Readiness of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Reading may return data (no `EAGAIN` since the last edge).
    pub readable: bool,
    /// Writing may make progress.
    pub writable: bool,
    /// The peer's FIN, a hang-up or an error has been reported: a short
    /// read no longer proves the socket drained.
    pub hangup: bool,
}

impl Ready {
    /// Adds what one epoll event says.
    #[inline]
    pub fn apply(&mut self, bits: u32) {
        let ev = Readiness::of(bits);
        self.readable |= ev.readable;
        self.writable |= ev.writable;
        self.hangup |= ev.hangup;
    }

    /// Notes what a read that asked for `room` bytes returned.
    #[inline]
    pub fn after_read(&mut self, got: Outcome, room: usize) {
        match got {
            Outcome::Data(n) if n < room && !self.hangup => self.readable = false,
            Outcome::Eof | Outcome::WouldBlock => self.readable = false,
            _ => {}
        }
    }

    /// Notes what a splice out of the socket returned: only the end or
    /// `EAGAIN` proves it drained.
    #[inline]
    pub fn after_splice(&mut self, got: Outcome) {
        if matches!(got, Outcome::Eof | Outcome::WouldBlock) {
            self.readable = false;
        }
    }

    /// Notes what a write (or splice into the socket) of `offered` bytes
    /// returned. A write that took nothing (`Eof`: 0 bytes) counts as full.
    #[inline]
    pub fn after_write(&mut self, got: Outcome, offered: usize) {
        match got {
            Outcome::Data(n) if n < offered => self.writable = false,
            Outcome::WouldBlock | Outcome::Eof => self.writable = false,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::epoll::{IN, OUT, RDHUP};

    #[test]
    fn a_short_read_drains_unless_a_fin_is_pending() {
        let mut r = Ready::default();
        r.apply(IN);
        r.after_read(Outcome::Data(10), 10);
        assert!(r.readable, "a full read says nothing");
        r.after_read(Outcome::Data(3), 10);
        assert!(!r.readable, "a short read drained it");
        r.apply(IN | RDHUP);
        r.after_read(Outcome::Data(3), 10);
        assert!(r.readable, "with a FIN pending only a read of 0 drains");
        r.after_read(Outcome::Eof, 10);
        assert!(!r.readable);
    }

    #[test]
    fn splices_drain_only_at_eagain_and_writes_fill_when_short() {
        let mut r = Ready::default();
        r.apply(IN | OUT);
        r.after_splice(Outcome::Data(1));
        assert!(r.readable);
        r.after_splice(Outcome::WouldBlock);
        assert!(!r.readable);
        r.after_write(Outcome::Data(8), 8);
        assert!(r.writable);
        r.after_write(Outcome::Data(7), 8);
        assert!(!r.writable);
        r.apply(OUT);
        r.after_write(Outcome::Eof, 8);
        assert!(!r.writable, "a write that took nothing counts as full");
    }
}
