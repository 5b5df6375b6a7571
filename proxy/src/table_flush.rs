//! The table's deliver-then-reset half: when one side resets, what it
//! sent still reaches the other side, which must acknowledge it all
//! ([`Sockets::unacked`], polled with back-off by
//! [`Table::check_flushing`]) before the reset is passed on. A child of
//! [`super`], kept apart to keep the table's file about pairs.

use super::*;
use netio::Outcome;
use relay::Io as _;

/// What [`Table::discard`] left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Discard {
    /// Nothing more to read until the next edge.
    Drained,
    /// Stopped only to be fair: more to read.
    More,
    /// The live side failed too.
    Failed,
}

impl Table {
    /// The socket `side` reset or failed. The first side to do so starts
    /// the flush: the pair stays open (true) to deliver what that side had
    /// sent. The other side failing too, or any failure with the flush
    /// turned off, closes the pair (false).
    pub(super) fn failed(&mut self, io: &mut impl Sockets, slot: usize, side: Side) -> bool {
        if !self.conns[slot].stage.is_open() {
            return false;
        }
        // A backend that reset before any byte went either way is a failed
        // try: the client moves on.
        if side == Side::Backend && self.untouched(slot) && self.reset_before_any_byte(io, slot) {
            return false;
        }
        match self.conns[slot].reset {
            // The side that reset, again (an error edge after its reset).
            Some(dead) if dead == side => true,
            None if self.opts.reset_flush_ms > 0 => self.start_flush(io, slot, side),
            _ => {
                self.close_later(slot, Reason::Error(side));
                false
            }
        }
    }

    /// `dead` reset: drop what was on its way to it, read out what it sent
    /// before the reset, and deliver that to the other side. Returns
    /// whether the pair stays open.
    pub(super) fn start_flush(&mut self, io: &mut impl Sockets, slot: usize, dead: Side) -> bool {
        let live = dead.other();
        let Table {
            conns,
            bufs,
            pipes,
            stats,
            ..
        } = self;
        let c = &mut conns[slot];
        c.reset = Some(dead);
        c.reset_ms = self.now_ms;
        if let Some(dirty) = c.flows[live.index()].cut(bufs, pipes) {
            renew(io, pipes, stats, dirty);
        }
        c.flows[dead.index()].source_reset = true;
        // Its kernel may still hold bytes it sent before the reset.
        let r = &mut c.ready[dead.index()];
        r.readable = true;
        r.hangup = true;
        self.flushing.push((slot as u32, c.gen));
        if let Step::Failed(side) = self.step_flow(io, slot, dead) {
            self.close_later(slot, Reason::Error(side));
            return false;
        }
        let c = &self.conns[slot];
        let f = c.flow(dead);
        // A client that reset before its backend answered, with nothing
        // for it, has nothing to deliver; nor has one still queued: it has
        // no backend yet, and no answer could reach it, so it leaves the
        // queue at once rather than spend a backend connection later.
        let queued = c.stage == Stage::Queued;
        if queued || (c.stage == Stage::Connecting && f.eof && f.hold.held() == 0) {
            self.close_later(slot, Reason::Error(dead));
            return false;
        }
        true
    }

    /// While a pair delivers what its dead side sent, what its `live` side
    /// sends can reach nobody: it is read and dropped, so that a peer that
    /// writes as it reads (an echo, a server answering a stream of
    /// requests) is not stopped by its own unread answers and goes on
    /// taking the flush.
    pub(super) fn discard(&mut self, io: &mut impl Sockets, slot: usize, live: Side) -> Discard {
        let c = &mut self.conns[slot];
        let ready = &mut c.ready[live.index()];
        if !ready.readable {
            return Discard::Drained;
        }
        let mut scratch = [0u8; 16 * 1024];
        let mut pair = io.pair(slot);
        for _ in 0..relay::FAIR_ROUNDS {
            match pair.read(live, &mut scratch) {
                Outcome::Data(n) => self.stats.bytes_discarded.add(n as u64),
                // The read took the socket's error: no edge brings it
                // again, so it is handled here (both sides have failed).
                Outcome::Reset | Outcome::Error(_) => {
                    ready.readable = false;
                    return Discard::Failed;
                }
                // Drained or ended: nothing more until the next edge.
                _ => {
                    ready.readable = false;
                    return Discard::Drained;
                }
            }
        }
        Discard::More
    }

    /// Both directions of a pair whose side reset are done: pass the reset
    /// on once the other side's kernel has acknowledged everything (a
    /// reset would discard what it still queues), else look again later.
    pub(super) fn linger(&mut self, io: &mut impl Sockets, slot: usize) {
        let c = &mut self.conns[slot];
        let Some(dead) = c.reset else {
            return;
        };
        match io.unacked(slot, dead.other()) {
            Some(n) if n > 0 => {
                if c.poll_step == 0 {
                    c.poll_step = 1;
                    c.poll_ms = self.now_ms.wrapping_add(1);
                }
            }
            unacked => {
                if unacked.is_some() {
                    self.stats.resets_flushed.inc();
                }
                self.close_later(slot, Reason::Error(dead));
            }
        }
    }

    /// Looks again at the pairs delivering what a side sent before its
    /// reset: passes the reset on for those whose other side now has
    /// everything, and cuts off those past `--reset-flush-timeout`.
    pub fn check_flushing(&mut self, io: &mut impl Sockets) {
        let now = self.now_ms;
        let limit = self.opts.reset_flush_ms;
        let list = std::mem::take(&mut self.flushing);
        let mut keep = Vec::with_capacity(list.len());
        for (slot, gen) in list {
            let c = &mut self.conns[slot as usize];
            let Some(dead) = c.reset.filter(|_| c.gen == gen && c.stage.is_open()) else {
                continue;
            };
            if reached(now, c.reset_ms.wrapping_add(limit)) {
                self.stats.reset_flush_timeouts.inc();
                self.close_later(slot as usize, Reason::FlushTimeout(dead));
                continue;
            }
            if c.poll_step > 0 && reached(now, c.poll_ms) {
                c.poll_step = (c.poll_step * 2).min(POLL_MAX_MS);
                c.poll_ms = now.wrapping_add(c.poll_step);
                self.linger(io, slot as usize);
            }
            if self.conns[slot as usize].stage.is_open() {
                keep.push((slot, gen));
            }
        }
        // Nothing is added while checking: pairs start flushing in events.
        self.flushing = keep;
    }

    /// When [`Table::check_flushing`] is next due (worker clock, ms), if
    /// any pair is flushing.
    pub fn next_flush_ms(&self) -> Option<u32> {
        let now = self.now_ms;
        let limit = self.opts.reset_flush_ms;
        self.flushing
            .iter()
            .filter_map(|&(slot, gen)| {
                let c = &self.conns[slot as usize];
                (c.gen == gen && c.stage.is_open() && c.reset.is_some()).then(|| {
                    let end = c.reset_ms.wrapping_add(limit);
                    if c.poll_step > 0 && !reached(c.poll_ms, end) {
                        c.poll_ms
                    } else {
                        end
                    }
                })
            })
            .min_by_key(|&t| t.wrapping_sub(now) as i32)
    }

    /// Whether a reset is delivered after what came before it (the driver
    /// must then keep the clock).
    pub fn flushes_resets(&self) -> bool {
        self.opts.reset_flush_ms > 0
    }
}
