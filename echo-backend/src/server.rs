//! One echo-backend worker: an edge-triggered epoll loop over its own
//! listener (several workers share the port through `SO_REUSEPORT`) and a
//! table of connections, all served in one [`Mode`].
//!
//! Lifecycle of a connection:
//! 1. The listener is drained with `accept4` until `EAGAIN`, or until the
//!    table is full (the rest wait in the kernel's backlog). Each socket is
//!    registered once, for `IN|OUT|RDHUP|ET`, and never modified: epoll
//!    tells us what changed and the connection remembers it
//!    ([`netio::Ready`]).
//! 2. Serving: bytes are read into the worker's one scratch buffer until
//!    `EAGAIN` and answered straight from it — echo: the same bytes; http:
//!    one response per complete request, all in one write; sink: nothing.
//!    Source writes the pattern whenever the socket is writable.
//! 3. A short write parks the unsent rest in a pending buffer taken from a
//!    per-worker stock, and the connection is not read again until it has
//!    drained: backpressure, never unbounded memory.
//! 4. Ending: when the mode is done (echo: the client's FIN, with every
//!    byte echoed; http: `Connection: close` or a bad request, answered)
//!    we send our FIN, discard whatever still arrives until the client's
//!    EOF, then close. Sink and source close at the client's EOF; a reset
//!    or error closes at once.
//! 5. Closing bumps the slot's generation, so a stale event for a closed
//!    (and maybe reused) slot is recognised and dropped.
//!
//! Fairness: a connection that has read or written 16 times in a row
//! stops and is queued to run again after this batch of events, without
//! waiting for an edge (none would come).

use crate::conn::{Conn, End, Next, Spares};
pub use crate::modes::Mode;
use crate::modes::Tools;
use crate::pattern::Pattern;
use netio::again::AgainQueue;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::socket;
use netio::token::{Side, Source, Token, MAX_SLOTS};
use netio::Fault;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the per-worker read buffer: the most one `read` takes.
pub const SCRATCH: usize = 64 * 1024;
/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// How long accepting pauses after running out of descriptors, unless a
/// connection closes first.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How the outside world talks to a running worker.
#[derive(Debug)]
pub struct Control {
    waker: Waker,
    stop: AtomicBool,
    accepted: AtomicU64,
    closed: AtomicU64,
}

impl netio::serve::Stop for Control {
    /// Asks the worker to return from its loop, closing everything.
    fn stop(&self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.waker.wake()
    }
}

impl Control {
    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed so far.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }
}

/// A connection's settings shared by all workers.
#[derive(Clone)]
pub struct Settings {
    pub mode: Mode,
    /// The stream source mode writes, from offset 0 on every connection.
    pub pattern: Arc<Pattern>,
}

/// One event loop with its listener and connections.
pub struct Worker {
    epoll: Epoll,
    listener: OwnedFd,
    control: Arc<Control>,
    mode: Mode,
    pattern: Arc<Pattern>,
    /// The connection table; grows up to `max_connections`, never shrinks.
    conns: Vec<Conn>,
    free: Vec<u32>,
    active: usize,
    max_connections: usize,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    spares: Spares,
    /// Connections to serve again after this batch of events.
    again: AgainQueue,
    /// Accepting stopped (table full or out of descriptors); the backlog
    /// is drained again when a connection closes or at `retry_at`.
    accept_paused: bool,
    retry_at: Option<Instant>,
}

impl netio::serve::Worker for Worker {
    type Control = Control;

    /// The handle for stopping and counting this worker.
    fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Serves until [`netio::serve::Stop::stop`]; returning drops (closes)
    /// every connection. Fails only if epoll itself fails.
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(MAX_EVENTS);
        loop {
            let timeout = epoll::sleep_ms(!self.again.is_empty(), self.retry_at, Instant::now);
            self.epoll.wait(&mut events, timeout)?;
            for (tok, bits) in events.iter() {
                match Source::of(tok) {
                    Source::Listener => self.accept_all(),
                    Source::Control => self.control.waker.drain(),
                    Source::Socket(t) => self.on_socket(t, bits),
                }
            }
            if self.control.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            if !self.again.is_empty() {
                self.run_again();
            }
            if self.accept_paused && self.retry_at.is_some_and(|at| Instant::now() >= at) {
                self.accept_all();
            }
        }
    }
}

impl Worker {
    /// Builds a worker around an already bound, non-blocking listener,
    /// holding up to `max_connections` (at least 1) at once; more wait in
    /// its backlog.
    pub fn new(
        settings: &Settings,
        listener: OwnedFd,
        max_connections: usize,
    ) -> io::Result<Worker> {
        if max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a worker must hold at least one connection",
            ));
        }
        let epoll = Epoll::new()?;
        let control = Arc::new(Control {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        });
        epoll.add(&listener, epoll::IN | epoll::ET, Token::LISTENER)?;
        epoll.add(&control.waker, epoll::IN | epoll::ET, Token::CONTROL)?;
        Ok(Worker {
            epoll,
            listener,
            control,
            mode: settings.mode,
            pattern: Arc::clone(&settings.pattern),
            conns: Vec::new(),
            free: Vec::new(),
            active: 0,
            // No table grows past what a token can name.
            max_connections: max_connections.min(MAX_SLOTS),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            out: Vec::with_capacity(SCRATCH),
            spares: Spares::new(),
            again: AgainQueue::default(),
            accept_paused: false,
            retry_at: None,
        })
    }

    /// Serves again those that stopped to be fair; the ones that stop
    /// again queue themselves afresh.
    fn run_again(&mut self) {
        let turn = self.again.take();
        for &(slot, gen) in &turn {
            if self.conns[slot as usize].gen == gen {
                self.serve(slot as usize);
            }
        }
        self.again.recycle(turn);
    }

    /// Accepts until the backlog is empty, the table is full, or the
    /// process is out of descriptors.
    fn accept_all(&mut self) {
        self.accept_paused = false;
        self.retry_at = None;
        loop {
            if self.active >= self.max_connections {
                self.accept_paused = true;
                return;
            }
            let e = match socket::accept(&self.listener) {
                Ok((fd, _peer)) => {
                    self.open(fd);
                    continue;
                }
                Err(e) => e,
            };
            match netio::outcome::fault(&e) {
                Fault::WouldBlock => return,
                // That one client is gone; the next may be fine.
                Fault::Reset | Fault::Network | Fault::Denied => {}
                // Out of descriptors or memory (or anything else): retry
                // when a connection closes or after a pause.
                _ => {
                    self.accept_paused = true;
                    self.retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Registers a new connection in a free slot.
    fn open(&mut self, fd: OwnedFd) {
        let slot = match self.free.pop() {
            Some(slot) => slot as usize,
            None => {
                self.conns.push(Conn::default());
                self.conns.len() - 1
            }
        };
        let c = &mut self.conns[slot];
        let token = Token::new(slot, c.gen, Side::Client).encode();
        if self.epoll.add(&fd, epoll::SOCKET, token).is_err() {
            self.free.push(slot as u32);
            return; // Dropping `fd` closes it.
        }
        *c = Conn::open(fd, c.gen);
        self.active += 1;
        self.control.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn on_socket(&mut self, t: Token, bits: u32) {
        let Some(c) = self.conns.get_mut(t.index()) else {
            return;
        };
        if c.gen != t.gen || c.fd.is_none() {
            return; // Stale: the slot was closed (and maybe reused) since.
        }
        c.ready.apply(bits);
        self.serve(t.index());
    }

    /// Does whatever the mode can do on `slot` now.
    fn serve(&mut self, slot: usize) {
        let Worker {
            conns,
            scratch,
            out,
            spares,
            pattern,
            mode,
            ..
        } = self;
        let c = &mut conns[slot];
        let mut tools = Tools {
            scratch: &mut scratch[..],
            out,
            spares,
            pattern: pattern.as_ref(),
        };
        match mode.serve(c, &mut tools) {
            Ok(Next::Event) => {}
            Ok(Next::Turn) => self.again.push(slot as u32, c.gen),
            Err(End) => self.close(slot),
        }
    }

    /// Closes `slot` now; its generation changes so stale events are dropped.
    fn close(&mut self, slot: usize) {
        self.conns[slot].close(&mut self.spares);
        self.free.push(slot as u32);
        self.active -= 1;
        self.control.closed.fetch_add(1, Ordering::Relaxed);
        if self.accept_paused {
            // A slot and a descriptor are free: drain the backlog after
            // this batch.
            self.retry_at = Some(Instant::now());
        }
    }
}
