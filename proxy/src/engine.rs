//! The engine boundary: what a worker's loop ([`crate::worker`]) needs
//! from its I/O driver beyond the table's [`Sockets`]. Two engines stand
//! behind it: edge-triggered epoll ([`crate::sockets::SysSockets`], the
//! default and the reference) and io_uring ([`crate::uring::Uring`]).
//! Everything else — the table, the relay, the pools, balancing, the
//! access lists, the timers and the PROXY header — is shared.

use crate::config::Config;
use crate::stats::Stats;
use crate::table::Sockets;
use netio::sys::epoll::{Epoll, Waker};
use netio::Token;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Something the loop must handle, as an engine reports it.
#[derive(Debug)]
pub enum Event {
    /// The listener has clients waiting: accept them until `EAGAIN`.
    Listener,
    /// The control waker fired.
    Control,
    /// A socket of the table, or a side socket (health checks), is ready
    /// for what `bits` (epoll's) say.
    Socket(Token, u32),
    /// One accept completed: the client, or why not.
    Accepted(io::Result<(OwnedFd, SocketAddr)>),
}

/// An event loop's I/O driver.
pub trait Engine: Sockets + Sized {
    /// Whether accepts arrive as [`Event::Accepted`] (the engine keeps
    /// them submitted, [`Engine::accept_more`]) rather than being made by
    /// the loop on [`Event::Listener`].
    const COMPLETES_ACCEPTS: bool;

    /// The engine of a worker for `capacity` pairs; everything it needs
    /// is allocated here.
    fn new(cfg: &Config, capacity: usize, stats: Arc<Stats>) -> io::Result<Self>;

    /// Starts watching the listener and the control waker.
    fn watch(&mut self, listener: &OwnedFd, waker: &Waker) -> io::Result<()>;

    /// Waits up to `timeout_ms` (-1: for ever, 0: not at all) and appends
    /// what happened to `out`. Returns how many events it appended.
    fn wait(&mut self, timeout_ms: i32, out: &mut Vec<Event>) -> io::Result<usize>;

    /// The epoll instance the health checks' sockets are registered with.
    fn side(&self) -> &Epoll;

    /// Pipes for splicing this engine has: count and capacity of each.
    fn pipes(&self) -> (usize, usize);

    /// Registers a new pair's sockets under `slot` and `gen`, before the
    /// table opens it; on failure nothing is registered.
    fn register(
        &mut self,
        slot: usize,
        gen: u32,
        client: &OwnedFd,
        backend: Option<&OwnedFd>,
    ) -> io::Result<()>;

    /// Gives `slot` (opened at `gen`) its sockets; `connected` if the
    /// backend connect completed at once.
    fn attach(
        &mut self,
        slot: usize,
        gen: u32,
        client: OwnedFd,
        backend: Option<OwnedFd>,
        connected: bool,
    );

    /// Whether this engine connects a new pair's backend socket itself
    /// ([`Engine::connect_later`]): the loop then makes only the socket.
    fn can_connect_later(&self) -> bool {
        false
    }

    /// Gives `slot` (opened at `gen`, attached with no backend socket) its
    /// backend socket `backend`, made and not yet connected, and starts
    /// its connect to `addr`; only called if [`Engine::can_connect_later`]
    /// says so. Its end comes as an in-progress connect's does: an `OUT`
    /// edge on the backend side, with `ERR` if it failed
    /// ([`Sockets::connect_error`] says why).
    fn connect_later(&mut self, _slot: usize, _gen: u32, _backend: OwnedFd, _addr: SocketAddr) {}

    /// Keeps accepts submitted for up to `room` new clients (engines that
    /// complete accepts).
    fn accept_more(&mut self, _listener: &OwnedFd, _room: usize) {}

    /// The worker is about to stop: completes what is in flight (by
    /// `deadline` at the latest).
    fn finish(&mut self, _deadline: std::time::Instant) {}

    /// Accepting paused: withdraws what accepts are submitted (engines
    /// that complete accepts).
    fn stop_accepting(&mut self) {}

    /// Stops accepting on `listener` and closes it.
    fn unlisten(&mut self, listener: OwnedFd) {
        drop(listener);
    }
}
