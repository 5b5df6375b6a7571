//! The table's queue: clients that found every backend up at its
//! `max-connections` wait here ([`Stage::Queued`]) in the order they came,
//! and are served by [`Table::serve_queue`] when a backend has room again,
//! or reset at `--queue-timeout`. A child of [`super`] (the table's own
//! fields), kept apart to keep the table's file about pairs.

use super::{reached, Sockets, Table, QUEUE_POLL_MS};
use crate::balance::Choice;
use crate::conn::{Reason, Stage};

impl Table {
    /// Whether a new client may wait in the queue (else it is reset,
    /// counted in `queue_full`).
    pub fn queue_has_room(&self) -> bool {
        self.queue.len() < self.opts.queue
    }

    /// Clients waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Serves the queue: resets (counted) the clients that waited past
    /// `--queue-timeout`, then sends the first ones in order to the
    /// backends that have room again, until none has. A client for which
    /// no backend is left (every one tried, or down with `--all-down
    /// reject`, then also counted in `rejected_all_down`) is refused.
    /// Returns whether it closed any (the caller
    /// settles the table).
    pub fn serve_queue(&mut self, io: &mut impl Sockets) -> bool {
        let now = self.now_ms;
        let limit = self.opts.queue_timeout_ms;
        let mut closed = false;
        while let Some(&(slot, _)) = self.queue.front() {
            let slot = slot as usize;
            let c = &self.conns[slot];
            debug_assert_eq!(c.stage, Stage::Queued);
            if reached(now, c.opened_ms.wrapping_add(limit)) {
                self.stats.queue_timeouts.inc();
                self.close_later(slot, Reason::QueueTimeout);
                closed = true;
                continue;
            }
            let Some(peer) = c.peer else {
                self.close_later(slot, Reason::Refused);
                closed = true;
                continue;
            };
            let next = self.pick_backend(&peer, c.tried);
            if next == Choice::Full {
                break;
            }
            self.queue.pop_front();
            // It waits no longer: its connect timeout starts now.
            self.conns[slot].stage = Stage::Connecting;
            self.connecting += 1;
            if let Choice::AllDown | Choice::Tried = next {
                self.stats.refused.inc();
            }
            if !self.connect_to(io, slot, next) {
                self.close_later(slot, Reason::Refused);
                closed = true;
            }
        }
        closed
    }

    /// When the queue next wants a look (worker clock, ms): its first
    /// client's timeout, or the poll for room freed by other workers.
    pub fn next_queue_ms(&self) -> Option<u32> {
        let &(slot, _) = self.queue.front()?;
        let end = self.conns[slot as usize]
            .opened_ms
            .wrapping_add(self.opts.queue_timeout_ms);
        let poll = self.now_ms.wrapping_add(QUEUE_POLL_MS);
        Some(if reached(poll, end) { end } else { poll })
    }
}
