//! A backend that resets before any byte has gone either way — none of the
//! client's written to it, none of its own read — is one more failed try,
//! like a refused connect: the client moves to the next backend
//! ([`Table::fail_over`]) with what it sent still held, the PROXY header
//! made again in front of it, and its FIN (if it sent one) passed on
//! again after it. Once a client byte has been written to the backend or
//! one of the backend's read, a reset goes the usual way (delivered, then
//! passed on), since what the backend did with those bytes is unknown. A
//! backend that ends its stream (a FIN) before any byte is not retried:
//! an empty reply may be its answer.

use super::*;
use crate::relay::{Flow, Hold};

impl Table {
    /// Whether nothing has gone either way between `slot`'s pair and its
    /// backend, whose connect completed: no client byte written to it (the
    /// PROXY header aside), none of its bytes read, and no end of its
    /// stream seen. Looks only at the pair; no I/O.
    pub(super) fn untouched(&self, slot: usize) -> bool {
        let c = &self.conns[slot];
        let (up, down) = (c.flow(Side::Client), c.flow(Side::Backend));
        c.stage == Stage::Relaying
            && c.reset.is_none()
            && up.bytes <= u64::from(c.header)
            && !matches!(up.hold, Hold::Pipe { .. })
            && down.bytes == 0
            && down.hold.held() == 0
            && !down.eof
    }

    /// `slot`'s backend reset (or failed) while [`Table::untouched`]: reads
    /// out what it may have sent before the reset (its kernel keeps that
    /// readable), and if it sent nothing, moves the client to the next
    /// backend — or, with no backend left to try, resets the client.
    /// Returns whether the pair was dealt with so; false when the backend
    /// had sent something after all (read now, and on its way to the
    /// client), and the reset goes the usual way.
    pub(super) fn reset_before_any_byte(&mut self, io: &mut impl Sockets, slot: usize) -> bool {
        let c = &mut self.conns[slot];
        let b = Side::Backend.index();
        c.flows[b].source_reset = true;
        let r = &mut c.ready[b];
        r.readable = true;
        r.hangup = true;
        // The end of the backend's stream that this read-out finds is not
        // passed on to the client: with the other direction marked ended
        // meanwhile, the relay passes it without a shutdown.
        let up = &mut c.flows[Side::Client.index()].fin_sent;
        let up_fin = std::mem::replace(up, true);
        let step = self.step_flow(io, slot, Side::Backend);
        let c = &mut self.conns[slot];
        c.flows[Side::Client.index()].fin_sent = up_fin;
        if let Step::Failed(side) = step {
            self.close_later(slot, Reason::Error(side));
            return true;
        }
        let down = c.flow(Side::Backend);
        if down.bytes > 0 || down.hold.held() > 0 || !down.eof || !self.header_again(io, slot) {
            return false;
        }
        let c = &mut self.conns[slot];
        debug_assert!(matches!(c.flows[b].hold, Hold::Idle));
        c.flows[b] = Flow::new(Side::Backend);
        let up = &mut c.flows[Side::Client.index()];
        // Counted afresh for the next backend; a FIN already passed to this
        // one is passed again, after what is held.
        up.bytes = 0;
        up.fin_sent = false;
        // Its connect cleared the backend's failures in a row; this one
        // continues them.
        let (backend, prior) = (c.backend, c.prior_fails);
        self.balancer.backends().restore_fails(backend, prior);
        if !self.fail_over(io, slot, ConnectError::Reset, "reset before any byte") {
            self.close_later(slot, Reason::Refused);
        }
        true
    }

    /// With `--proxy-protocol`, puts the header (made again) in front of
    /// what the client sent and the pair holds for the backend: the backend
    /// that reset may have had some or all of it, the next one must have
    /// it whole, once. False when that cannot be done — the client's
    /// address is unknown, or header and held bytes do not fit one buffer.
    fn header_again(&mut self, io: &mut impl Sockets, slot: usize) -> bool {
        let Some(version) = self.opts.proxy_protocol else {
            return true;
        };
        let (Some(peer), Some(local)) = (self.conns[slot].peer, io.local_addr(slot)) else {
            return false;
        };
        let Table {
            conns, bufs, pipes, ..
        } = self;
        let c = &mut conns[slot];
        let up = &mut c.flows[Side::Client.index()];
        // The client's bytes are held only once the whole header was
        // written; before that, what is held is the rest of the header.
        let kept = match &up.hold {
            Hold::Buf(held) if up.bytes >= u64::from(c.header) => bufs.data(held).to_vec(),
            _ => Vec::new(),
        };
        let Some(mut fresh) = bufs.checkout(false) else {
            return false;
        };
        let n = proxy_protocol::encode(version, peer, local, bufs.spare(&fresh));
        fresh.fill(n);
        let spare = bufs.spare(&fresh);
        if spare.len() < kept.len() {
            bufs.checkin(fresh);
            return false;
        }
        spare[..kept.len()].copy_from_slice(&kept);
        fresh.fill(kept.len());
        // A buffer, never a pipe (see `untouched`): nothing to renew.
        let _ = up.hold.release(bufs, pipes);
        up.hold = Hold::Buf(fresh);
        c.header = n as u8;
        true
    }

    /// Whether `slot`'s backend socket was replaced in this batch of events
    /// (its edges still in the batch are the old socket's).
    pub(super) fn replaced(&self, slot: usize, gen: u32) -> bool {
        !self.replaced.is_empty() && self.replaced.contains(&(slot as u32, gen))
    }
}
