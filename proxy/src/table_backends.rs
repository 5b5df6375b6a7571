//! The table's backend half: picking a pair's backend, counting a failed
//! try against it, moving the pair to the next backend with what it holds
//! ([`Table::fail_over`]), and passive health's bookkeeping. A child of
//! [`super`] (the table's own fields), kept apart to keep the table's file
//! about pairs.

use super::*;

impl Table {
    /// The backend for a client at `peer` that has tried those in
    /// `tried`, counted against it (see [`Balancer::choose`]). A new
    /// client (none tried) rejected because no backend is up is counted,
    /// and the first of an all-down period logged; so is the first new
    /// client found no backend in service at all (every one drained, in
    /// maintenance, or removed), which the caller refuses.
    pub fn pick_backend(&mut self, peer: &SocketAddr, tried: balance::Tried) -> Choice {
        let choice = self.balancer.choose(peer, tried);
        if choice == Choice::AllDown && tried == 0 {
            self.stats.rejected_all_down.inc();
            if self.balancer.backends().note_all_down() {
                netio::log!(
                    "proxy: no backend is up: new clients are reset (--all-down reject) \
                     until one is"
                );
            }
        }
        if choice == Choice::Tried && tried == 0 && self.balancer.backends().note_all_down() {
            netio::log!(
                "proxy: no backend takes new clients (each is drained, in maint or removed): \
                 they are reset until one is set ready"
            );
        }
        choice
    }

    /// The address of backend `b`.
    pub fn backend_addr(&self, b: u32) -> SocketAddr {
        self.balancer.addr(b)
    }

    /// Gives back backend `b`'s count taken by [`Table::pick_backend`]
    /// for a client that was not opened after all.
    pub fn release(&mut self, b: u32) {
        self.balancer.closed(b);
    }

    /// A client at `peer` that has tried the backends in `tried` (`tries`
    /// of them) failed to connect to backend `failed` for `why` (of
    /// `kind`): counts it against that backend, and returns the next
    /// backend to try, if the client may try another (counted against it)
    /// — logged with the failure, and counted as a retry, or with none
    /// left as a refusal. [`Choice::Full`] (every other backend up is at
    /// its limit) is counted as neither: the caller queues the client or
    /// refuses it. The failed backend's count stays with the caller.
    pub fn failed_try(
        &mut self,
        failed: u32,
        peer: Option<SocketAddr>,
        (kind, why): (ConnectError, &str),
        tried: balance::Tried,
        tries: u32,
    ) -> Choice {
        self.backend_failed(failed, kind);
        let next = match peer {
            Some(p) if tries < self.opts.connect_retries => self.pick_backend(&p, tried),
            _ => Choice::Tried,
        };
        let to = match next {
            Choice::Backend(b) => Some(self.balancer.addr(b)),
            _ => None,
        };
        log_backend_failure(self.balancer.addr(failed), peer, why, to);
        match next {
            Choice::Backend(_) => self.stats.retries.inc(),
            Choice::Full => {}
            Choice::AllDown | Choice::Tried => self.stats.refused.inc(),
        }
        next
    }

    /// Passive health: a connect to backend `b` failed (logged once when
    /// that marks it down).
    pub(super) fn backend_failed(&self, b: u32, kind: ConnectError) {
        self.stats.connect_failures.inc();
        let backends = self.balancer.backends();
        backends.connect_error(b, kind);
        if let Marked::Down { fails } = backends.failed(b) {
            netio::log!(
                "proxy: backend {} is down after {fails} failed connects in a row; \
                 tried again in {:?}",
                backends.addr(b),
                backends.fail_timeout()
            );
        }
    }

    /// The backend connect of `slot`'s pair completed (logged once when
    /// that brings the backend back up).
    pub(super) fn backend_succeeded(&mut self, slot: usize) {
        let b = self.conns[slot].backend;
        let backends = self.balancer.backends();
        let prior = backends.fails(b);
        if backends.succeeded(b) {
            netio::log!("proxy: backend {} is up again", backends.addr(b));
        }
        self.conns[slot].prior_fails = prior;
    }

    pub(super) fn connect_failed(&mut self, io: &mut impl Sockets, slot: usize) {
        let err = io.connect_error(slot);
        let why = err.map_or_else(|| "connection failed".to_string(), |e| e.to_string());
        let kind = err.map_or(ConnectError::Other, |e| ConnectError::of(e.fault()));
        if !self.fail_over(io, slot, kind, &why) {
            self.close_later(slot, Reason::Refused);
        }
    }

    /// The backend connect of `slot` failed for `why`: logs it, counts it
    /// against the backend, and moves the pair to the next backend up, with
    /// what the client sent meanwhile still held for it. False when no
    /// backend is left to try (the caller closes the pair; `refused` is
    /// counted).
    pub(super) fn fail_over(
        &mut self,
        io: &mut impl Sockets,
        slot: usize,
        kind: ConnectError,
        why: &str,
    ) -> bool {
        let c = &self.conns[slot];
        let next = self.failed_try(c.backend, c.peer, (kind, why), c.tried, c.tries);
        // Edges still in this batch for the backend socket given up on
        // must not reach the one that replaces it.
        let gen = self.conns[slot].gen;
        self.replaced.push((slot as u32, gen));
        self.connect_to(io, slot, next)
    }

    /// Connects `slot`'s pair to the backend in `next` (already counted
    /// against it), and after a connect that fails at once to the next
    /// backend, as [`Table::fail_over`] does. False when no backend is
    /// left (the caller closes the pair). A pair that finds every other
    /// backend at its limit is refused too (counted): it does not go back
    /// to the queue.
    pub(super) fn connect_to(
        &mut self,
        io: &mut impl Sockets,
        slot: usize,
        mut next: Choice,
    ) -> bool {
        loop {
            let b = match next {
                Choice::Backend(b) => b,
                Choice::Full => {
                    self.stats.refused.inc();
                    return false;
                }
                Choice::AllDown | Choice::Tried => return false,
            };
            let addr = self.balancer.addr(b);
            let c = &mut self.conns[slot];
            let gen = c.gen;
            c.tried = balance::add(c.tried, b);
            c.tries += 1;
            let got = io.reconnect(slot, gen, addr);
            self.switch_backend(slot, b);
            match got {
                Ok(done) => {
                    self.move_to(slot, done);
                    if done {
                        self.pump(io, slot);
                    }
                    return true;
                }
                // Failed at once: count it, and try the next.
                Err(e) => {
                    let c = &self.conns[slot];
                    let why = (ConnectError::of(e.fault()), &*e.to_string());
                    next = self.failed_try(b, c.peer, why, c.tried, c.tries);
                }
            }
        }
    }

    /// `slot`'s pair is sent to backend `b` instead (for balancing).
    /// Its count on `b` is already taken; the old backend's is given back.
    pub(super) fn switch_backend(&mut self, slot: usize, b: u32) {
        let c = &mut self.conns[slot];
        if c.counted {
            self.balancer.closed(c.backend);
        }
        c.counted = true;
        c.backend = b;
    }

    /// `slot`'s pair now has a new backend socket, connecting (or
    /// connected if `done`), with nothing received from or sent to any
    /// backend yet.
    pub(super) fn move_to(&mut self, slot: usize, done: bool) {
        let c = &mut self.conns[slot];
        let was_connecting = c.stage == Stage::Connecting;
        c.ready[Side::Backend.index()] = netio::Ready::default();
        c.opened_ms = self.now_ms;
        c.stage = if done {
            Stage::Relaying
        } else {
            Stage::Connecting
        };
        match (was_connecting, done) {
            (true, true) => self.connecting -= 1,
            (false, false) => self.connecting += 1,
            _ => {}
        }
        if done {
            self.backend_succeeded(slot);
        }
    }
}
