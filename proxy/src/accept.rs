//! Accepting clients: draining the listener until `EAGAIN`, turning away
//! clients the access lists deny, pausing at the connection limit or when
//! the process is out of descriptors (a reserve descriptor lets the oldest
//! waiting client be turned away cleanly instead of left hanging), and
//! starting each client's backend connect.

use crate::acl::Acl;
use crate::backends::ConnectError;
use crate::balance::Choice;
use crate::engine::Engine;
use crate::table::{self, Opening};
use crate::worker::Worker;
use netio::sys::socket;
use netio::Fault;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How long accepting pauses after running out of descriptors, unless a
/// connection closes first.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The accepting state of one worker.
#[derive(Debug)]
pub struct Accepting {
    pub acl: Acl,
    /// Accepting stopped (table full, or out of descriptors); it resumes
    /// when a pair closes, or at `retry_at`.
    pub paused: bool,
    pub retry_at: Option<Instant>,
    /// A spare descriptor (`/dev/null`), freed to accept-and-reset a
    /// client when the process is out of descriptors.
    reserve: Option<OwnedFd>,
    /// Clients whose accept completed after accepting paused (an engine
    /// that completes accepts has a few in flight): they wait here, as
    /// they would have in the backlog, until accepting resumes.
    held: Vec<(OwnedFd, SocketAddr)>,
}

impl Accepting {
    pub fn new(acl: Acl) -> Accepting {
        Accepting {
            acl,
            paused: false,
            retry_at: None,
            reserve: socket::reserve_fd().ok(),
            held: Vec::new(),
        }
    }

    /// When a paused accept is retried, if it is.
    pub fn retry(&self) -> Option<Instant> {
        self.retry_at.filter(|_| self.paused)
    }
}

impl<E: Engine> Worker<E> {
    /// Accepts until the backlog is empty, the table is full, or the
    /// process is out of descriptors. (An engine that completes accepts
    /// itself brings them as [`Worker::on_accepted`].)
    pub(crate) fn accept_all(&mut self) {
        if self.accepting.paused || E::COMPLETES_ACCEPTS {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            if !self.table.has_free() {
                // Full: the backlog waits until a connection closes.
                self.pause_accept(None);
                return;
            }
            self.control.stats.sys_accept.inc();
            let got = socket::accept(listener);
            if !self.on_accepted(got) {
                return;
            }
        }
    }

    /// Handles what one accept returned: turns the client away, or opens
    /// its pair. False when accepting should stop for now (the backlog is
    /// empty, or accepting paused).
    pub(crate) fn on_accepted(&mut self, got: io::Result<(OwnedFd, SocketAddr)>) -> bool {
        match got {
            Ok(client) if self.accepting.paused => {
                self.accepting.held.push(client);
                false
            }
            Ok((fd, _)) if !self.table.has_free() => {
                // An engine's accept completed after the table filled.
                self.control.stats.rejected.inc();
                self.reset(fd);
                true
            }
            Ok((fd, peer)) if !self.accepting.acl.permits(peer.ip()) => {
                // Turned away at once, with a reset: no backend is ever
                // asked.
                self.control.stats.denied.inc();
                self.reset(fd);
                true
            }
            Ok((fd, peer)) => {
                self.open(fd, peer);
                if E::COMPLETES_ACCEPTS && !self.table.has_free() {
                    // Full: the backlog waits until a connection closes.
                    self.pause_accept(None);
                }
                // Paused: out of descriptors for the backend side.
                !self.accepting.paused
            }
            // An accept submitted before the pause: the pause stands.
            Err(_) if self.accepting.paused => false,
            Err(e) => match netio::outcome::fault(&e) {
                Fault::WouldBlock => false,
                // That one client is gone; the next may be fine.
                Fault::Reset | Fault::Network | Fault::Denied => true,
                Fault::NoDescriptors => {
                    self.out_of_fds();
                    false
                }
                _ => {
                    netio::log!("proxy: accept failed: {e}");
                    self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
                    false
                }
            },
        }
    }

    /// Closes a client with a reset (counted).
    fn reset(&self, fd: OwnedFd) {
        let stats = &self.control.stats;
        stats.sys_sockopt.inc();
        let _ = socket::set_linger_zero(&fd);
        stats.sys_close.inc();
        drop(fd);
    }

    /// Out of descriptors with clients waiting: turn the oldest one away
    /// cleanly using the reserve descriptor (so it is not left hanging in
    /// the backlog), then pause until a connection closes or a short retry
    /// timer fires. Never spins.
    fn out_of_fds(&mut self) {
        // The pause and the client turned away are counted before that
        // client can see its reset (and ask for the counts).
        self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
        if let (Some(reserve), Some(listener)) =
            (self.accepting.reserve.take(), self.listener.as_ref())
        {
            drop(reserve);
            self.control.stats.sys_accept.inc();
            if let Ok((fd, _)) = socket::accept(listener) {
                self.control.stats.rejected.inc();
                self.reset(fd);
            }
            self.accepting.reserve = socket::reserve_fd().ok();
        }
    }

    pub(crate) fn pause_accept(&mut self, retry_at: Option<Instant>) {
        if !self.accepting.paused {
            self.control.stats.accept_pauses.inc();
            self.sockets.stop_accepting();
        }
        self.accepting.paused = true;
        self.accepting.retry_at = retry_at;
    }

    pub(crate) fn resume_accept(&mut self) {
        if self.accepting.paused {
            self.accepting.paused = false;
            self.accepting.retry_at = None;
            if self.accepting.reserve.is_none() {
                self.accepting.reserve = socket::reserve_fd().ok();
            }
            // The held clients first, in order, for as long as it lasts.
            let mut held = std::mem::take(&mut self.accepting.held).into_iter();
            for client in held.by_ref() {
                if !self.on_accepted(Ok(client)) {
                    break;
                }
            }
            self.accepting.held.extend(held);
            self.accept_all();
        }
    }

    /// Takes a slot for a new client and starts its backend connect. A
    /// backend that cannot be reached at once (refused, unreachable, no
    /// local port left) gets the client a reset, as a later refusal does.
    /// With every backend up at its limit the client is queued instead,
    /// or reset if the queue is full.
    fn open(&mut self, client: OwnedFd, peer: SocketAddr) {
        let Some((slot, gen)) = self.table.take_slot() else {
            return;
        };
        let mut next = self.table.pick_backend(&peer, 0);
        let (mut tried, mut tries) = (0, 0);
        // Only the socket is made here when the engine connects it (once
        // the pair is open, a failure then coming as a failed connect's
        // edge); otherwise the connect is made here too.
        let later = self.sockets.can_connect_later();
        let calls = if later { 1 } else { 2 };
        let stats = &self.control.stats;
        let connected = loop {
            let b = match next {
                Choice::Backend(b) => b,
                Choice::Full => break None,
                Choice::AllDown | Choice::Tried => {
                    // None tried means none in service: refused, here
                    // (all down is counted when picked, a last failed try
                    // by `failed_try`).
                    if tries == 0 && next == Choice::Tried {
                        stats.refused.inc();
                    }
                    self.table.put_back(slot);
                    self.reset(client);
                    return;
                }
            };
            tried = crate::balance::add(tried, b);
            tries += 1;
            let addr = self.table.backend_addr(b);
            let made = if later {
                socket::stream_socket(&addr).map(|fd| (fd, false))
            } else {
                socket::connect(&addr)
            };
            let e = match made {
                Ok(pair) => {
                    stats.sys_connect.add(calls);
                    break Some((b, pair));
                }
                Err(e) => e,
            };
            if netio::outcome::fault(&e) == Fault::NoDescriptors {
                // socket() itself failed: no connect was attempted.
                self.table.release(b);
                self.table.put_back(slot);
                stats.sys_connect.inc();
                stats.rejected.inc();
                self.pause_accept(Some(Instant::now() + ACCEPT_RETRY));
                self.reset(client);
                return;
            }
            stats.sys_connect.add(calls);
            if !later {
                stats.sys_close.inc(); // the backend socket
            }
            let why = (ConnectError::of(netio::outcome::fault(&e)), &*e.to_string());
            next = self.table.failed_try(b, Some(peer), why, tried, tries);
            self.table.release(b);
        };
        if connected.is_none() && !self.table.queue_has_room() {
            self.table.put_back(slot);
            stats.queue_full.inc();
            if self.table.logs_connections() {
                netio::log!("conn {peer} reset: every backend is at its max-connections and the queue is full");
            }
            self.reset(client);
            return;
        }
        let (b, backend, done) = match connected {
            Some((b, (fd, done))) => (b, Some(fd), done),
            None => (0, None, false),
        };
        if let (Some(fd), false) = (&backend, later) {
            stats.sys_sockopt.inc();
            let _ = socket::set_nodelay(fd);
        }
        if let Err(e) = self.sockets.register(slot, gen, &client, backend.as_ref()) {
            netio::log!("proxy: cannot register client {peer}: {e}");
            if backend.is_some() {
                self.table.release(b);
                stats.sys_close.inc();
            }
            self.table.put_back(slot);
            stats.errors.inc();
            stats.sys_close.inc();
            return;
        }
        let local = if self.table.wants_local_addr() {
            stats.sys_sockopt.inc(); // getsockname
            socket::local_addr(&client).unwrap_or(peer)
        } else {
            peer
        };
        let opening = Opening {
            peer,
            local,
            backend: b,
            connected: done,
            tried,
            tries,
            queued: backend.is_none(),
        };
        match self.table.open(slot, opening) {
            Ok(()) => match backend {
                Some(fd) if later => {
                    self.sockets.attach(slot, gen, client, None, false);
                    let addr = self.table.backend_addr(b);
                    self.sockets.connect_later(slot, gen, fd, addr);
                }
                backend => self.sockets.attach(slot, gen, client, backend, done),
            },
            Err(table::Refusal::NoBuffer) => {
                self.table.put_back(slot);
                stats.rejected.inc();
                if backend.is_some() {
                    self.table.release(b);
                    stats.sys_close.inc(); // the backend socket
                }
                drop(backend);
                self.reset(client);
            }
        }
    }
}
