//! One echo-backend worker: an edge-triggered epoll loop over its own
//! listener (several workers share the port through `SO_REUSEPORT`) and a
//! table of connections, all served in one [`Mode`].
//!
//! Lifecycle of a connection:
//! 1. The listener is drained with `accept4` until `EAGAIN`, or until the
//!    table is full (the rest wait in the kernel's backlog). Each socket is
//!    registered once, for `IN|OUT|RDHUP|ET`, and never modified: epoll
//!    tells us what changed and [`Conn`] remembers it.
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

use crate::conn::{Conn, End, Next, Pending, SPARES, SPARE_MAX};
use crate::http;
pub use crate::modes::Mode;
use crate::modes::{serve_echo, serve_http, serve_sink, serve_source, Tools};
use crate::pattern::Pattern;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::socket;
use netio::Fault;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of the per-worker read buffer: the most one `read` takes.
pub const SCRATCH: usize = 64 * 1024;
/// Token of the listening socket.
const LISTENER: u64 = u64::MAX;
/// Token of the control eventfd.
const CONTROL: u64 = u64::MAX - 1;
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

impl Control {
    /// Asks the worker to return from [`Worker::run`], closing everything.
    pub fn shutdown(&self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.waker.wake()
    }

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
    /// Connections this worker holds at once; more wait in the backlog.
    pub max_connections: usize,
}

fn token(slot: usize, gen: u32) -> u64 {
    (u64::from(gen) << 32) | slot as u64
}

fn untoken(t: u64) -> (usize, u32) {
    ((t & 0xffff_ffff) as usize, (t >> 32) as u32)
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
    spares: Vec<Vec<u8>>,
    /// Connections to serve again after this batch of events.
    again: Vec<(u32, u32)>,
    /// Accepting stopped (table full or out of descriptors); the backlog
    /// is drained again when a connection closes or at `retry_at`.
    accept_paused: bool,
    retry_at: Option<Instant>,
}

impl Worker {
    /// Builds a worker around an already bound, non-blocking listener.
    pub fn new(settings: &Settings, listener: OwnedFd) -> io::Result<Worker> {
        let epoll = Epoll::new()?;
        let control = Arc::new(Control {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        });
        epoll.add(&listener, epoll::IN | epoll::ET, LISTENER)?;
        epoll.add(&control.waker, epoll::IN | epoll::ET, CONTROL)?;
        Ok(Worker {
            epoll,
            listener,
            control,
            mode: settings.mode,
            pattern: Arc::clone(&settings.pattern),
            conns: Vec::new(),
            free: Vec::new(),
            active: 0,
            max_connections: settings.max_connections.max(1),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            out: Vec::with_capacity(SCRATCH),
            spares: Vec::with_capacity(SPARES),
            again: Vec::new(),
            accept_paused: false,
            retry_at: None,
        })
    }

    /// The handle for stopping and counting this worker.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Serves until [`Control::shutdown`]; returning drops (closes) every
    /// connection. Fails only if epoll itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(MAX_EVENTS);
        let mut again = Vec::new();
        loop {
            let timeout = if !self.again.is_empty() {
                0
            } else if let Some(at) = self.retry_at {
                let left = at.saturating_duration_since(Instant::now());
                left.as_millis().min(i32::MAX as u128) as i32
            } else {
                -1
            };
            self.epoll.wait(&mut events, timeout)?;
            for (tok, bits) in events.iter() {
                match tok {
                    LISTENER => self.accept_all(),
                    CONTROL => {
                        self.control.waker.drain();
                    }
                    _ => self.on_socket(tok, bits),
                }
            }
            if self.control.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            // Serve again those that stopped to be fair; the ones that stop
            // again queue themselves afresh.
            std::mem::swap(&mut again, &mut self.again);
            for &(slot, gen) in &again {
                let c = &mut self.conns[slot as usize];
                if c.gen == gen && c.again {
                    c.again = false;
                    self.serve(slot as usize);
                }
            }
            again.clear();
            if self.accept_paused && self.retry_at.is_some_and(|at| Instant::now() >= at) {
                self.accept_all();
            }
        }
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
            match socket::accept(&self.listener) {
                Ok((fd, _peer)) => self.open(fd),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        netio::outcome::fault(&e),
                        Fault::Reset | Fault::Network | Fault::Denied
                    ) =>
                {
                    // That one client is gone; the next may be fine.
                }
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retry when a
                    // connection closes or after a pause.
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
        if self
            .epoll
            .add(&fd, epoll::SOCKET, token(slot, c.gen))
            .is_err()
        {
            self.free.push(slot as u32);
            return; // Dropping `fd` closes it.
        }
        *c = Conn {
            fd: Some(fd),
            gen: c.gen,
            ..Conn::default()
        };
        self.active += 1;
        self.control.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn on_socket(&mut self, tok: u64, bits: u32) {
        let (slot, gen) = untoken(tok);
        let Some(c) = self.conns.get_mut(slot) else {
            return;
        };
        if c.gen != gen || c.fd.is_none() {
            return; // Stale: the slot was closed (and maybe reused) since.
        }
        let ev = epoll::Readiness::of(bits);
        c.readable |= ev.readable;
        c.writable |= ev.writable;
        c.rdhup |= ev.hangup;
        self.serve(slot);
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
        let next = match mode {
            Mode::Echo => serve_echo(c, &mut tools),
            Mode::Http => serve_http(c, &mut tools),
            Mode::Sink => serve_sink(c, &mut tools),
            Mode::Source => serve_source(c, &mut tools),
        };
        match next {
            Ok(Next::Event) => {}
            Ok(Next::Turn) => {
                if !c.again {
                    c.again = true;
                    self.again.push((slot as u32, c.gen));
                }
            }
            Err(End) => self.close(slot),
        }
    }

    /// Closes `slot` now; its generation changes so stale events are dropped.
    fn close(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        // Dropping the descriptor closes it and removes it from epoll.
        c.fd = None;
        if let Some(Pending { mut buf, .. }) = c.pending.take() {
            if self.spares.len() < SPARES && buf.capacity() <= SPARE_MAX {
                buf.clear();
                self.spares.push(buf);
            }
        }
        // Drop any partial request head: idle slots hold no memory.
        c.http = http::Parser::new();
        c.again = false;
        c.gen = c.gen.wrapping_add(1);
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
