//! A small non-blocking request/answer server: one edge-triggered epoll
//! loop on its own thread, serving many short requests at once, each
//! connection bounded in size and time. What it speaks is a [`Protocol`]
//! (HTTP through a route function, [`Http`], for `/metrics`; the admin
//! socket's command lines), and what it accepts from a [`Listener`] (a
//! TCP or a unix socket).
//!
//! Lifecycle of a connection:
//! 1. Accepted while fewer than [`Limits::connections`] are open. With
//!    every slot taken, a new client takes the slot of the oldest
//!    connection that is not being answered (its request unfinished
//!    [`IDLE_GRACE`] after its accept, or its answer already sent): idle
//!    or slow clients can never keep a scrape waiting for long. Otherwise
//!    new clients wait in the listener's backlog, taken as soon as a slot
//!    frees or an open connection becomes idle.
//! 2. Reading: the request is read as it arrives, up to [`Limits::head`]
//!    bytes (more gets the protocol's [`Protocol::too_large`] answer); a
//!    client that ends its side first gets [`Protocol::at_eof`]'s answer,
//!    if any.
//! 3. Writing: the protocol's answer is written as the socket takes it.
//! 4. Draining: our FIN sent, whatever the client still sends is read and
//!    discarded until its EOF, so that unread bytes do not turn our close
//!    into a reset that could destroy the response in flight.
//! 5. Closed at its EOF, on an error, or when its deadline
//!    ([`Limits::deadline`] after the accept) passes in any stage.
//!
//! Deadlines all have the same length, so they expire in accept order: a
//! queue, its front the next to expire. With no connection open the loop
//! sleeps in `epoll_wait` without a timeout.

use super::http::{self, Request, Response, Status};
use netio::sys::epoll::{self, Epoll, Events};
use netio::sys::socket;
use netio::token::{Side, Source, Token};
use netio::{Fault, Outcome, Ready};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long accepting pauses after running out of descriptors or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Bytes discarded after a response before the client counts as abusive
/// and is closed at once.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long a new connection has to send its request before, with every
/// slot taken, a newer client may take its slot.
const IDLE_GRACE: Duration = Duration::from_millis(100);
/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 64;

/// What a server speaks: where a request ends, and what answers it. One
/// request a connection; the connection closes after the answer.
pub trait Protocol {
    /// Where the request in `buf` ends, if it is complete, looking only at
    /// what follows `from` (the length already searched).
    fn end(&self, buf: &[u8], from: usize) -> Option<usize>;
    /// The bytes that answer the complete request `request`.
    fn answer(&self, request: &[u8]) -> Vec<u8>;
    /// The answer to a request longer than `limit` bytes.
    fn too_large(&self, limit: usize) -> Vec<u8>;
    /// The answer to an unfinished request whose client has ended its
    /// side, if it gets one (else the connection just closes).
    fn at_eof(&self, _partial: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// HTTP/1.x through a route function: what `/metrics` speaks.
pub struct Http<R>(pub R);

impl<R: Fn(&Request<'_>) -> Response> Protocol for Http<R> {
    fn end(&self, buf: &[u8], from: usize) -> Option<usize> {
        http::head_end(buf, from)
    }

    fn answer(&self, head: &[u8]) -> Vec<u8> {
        match Request::parse(head) {
            Ok(req) => (self.0)(&req).encode(req.method == "HEAD"),
            Err(status) => {
                let msg = "expected a request line like GET /metrics HTTP/1.1";
                Response::error(status, msg).encode(false)
            }
        }
    }

    fn too_large(&self, limit: usize) -> Vec<u8> {
        let msg = format!("request head over {limit} bytes");
        Response::error(Status::HeadTooLarge, &msg).encode(false)
    }
}

/// A bound, non-blocking listening socket the server takes clients from.
pub trait Listener: AsFd {
    /// The next client, non-blocking and close-on-exec.
    fn accept(&self) -> io::Result<OwnedFd>;
}

/// A TCP listener.
impl Listener for OwnedFd {
    fn accept(&self) -> io::Result<OwnedFd> {
        socket::accept(self).map(|(fd, _peer)| fd)
    }
}

/// What the server holds per connection and in time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// The largest request head read.
    pub head: usize,
    /// How long a connection may live from its accept, whatever it does.
    pub deadline: Duration,
}

impl Default for Limits {
    /// 16 connections, which fit the slack the descriptor budget leaves
    /// ([`netio::budget::HEADROOM`]); 8 KiB heads; 2 s.
    fn default() -> Limits {
        Limits {
            connections: 16,
            head: http::MAX_HEAD,
            deadline: Duration::from_secs(2),
        }
    }
}

/// The server: its listener, its connections and the protocol that
/// answers.
pub struct Server<P, L = OwnedFd> {
    epoll: Epoll,
    listener: L,
    protocol: P,
    limits: Limits,
    conns: Vec<Conn>,
    free: Vec<usize>,
    active: usize,
    /// `(slot, generation, deadline)` in accept order; entries of closed
    /// connections are skipped when they reach the front.
    deadlines: VecDeque<(usize, u32, Instant)>,
    accept: Accept,
    scratch: Box<[u8]>,
}

/// Whether the listener is being drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// Accepting whenever the listener signals.
    Open,
    /// Every slot is taken: accept again when one frees.
    Full,
    /// Out of descriptors or memory: try again at this time.
    RetryAt(Instant),
}

#[derive(Debug)]
struct Conn {
    fd: Option<OwnedFd>,
    gen: u32,
    ready: Ready,
    stage: Stage,
}

impl Conn {
    /// Whether the connection of generation `gen` is still open here.
    fn is_open(&self, gen: u32) -> bool {
        self.gen == gen && self.fd.is_some()
    }

    /// Whether it is not being answered: its request still unfinished, or
    /// its answer already sent.
    fn is_waiting(&self) -> bool {
        matches!(self.stage, Stage::Reading { .. } | Stage::Draining { .. })
    }
}

/// Where a connection is; see the module's lifecycle.
#[derive(Debug)]
enum Stage {
    Reading {
        head: Vec<u8>,
    },
    Writing {
        out: Vec<u8>,
        at: usize,
        /// The client has already ended its side: close once written.
        ended: bool,
    },
    Draining {
        left: usize,
    },
    /// The slot is free.
    Closed,
}

/// How far a request head has arrived.
enum Head {
    /// Not all of it yet: wait for more.
    Partial,
    /// It ends at this offset.
    Complete(usize),
    /// It is longer than the limit.
    TooLarge,
    /// The client ended its side before finishing it.
    Ended,
    /// The client failed before finishing it.
    Gone,
}

/// What a step on a connection came to.
enum Step {
    /// Wait for the next edge.
    Wait,
    Close,
}

impl<P: Protocol, L: Listener> Server<P, L> {
    /// A server on an already bound, non-blocking `listener`.
    pub fn new(listener: L, protocol: P, limits: Limits) -> io::Result<Server<P, L>> {
        let epoll = Epoll::new()?;
        epoll.add(&listener, epoll::IN | epoll::ET, Token::LISTENER)?;
        Ok(Server {
            epoll,
            listener,
            protocol,
            limits,
            conns: Vec::new(),
            free: Vec::new(),
            active: 0,
            deadlines: VecDeque::new(),
            accept: Accept::Open,
            // One read never takes more than a whole head and one byte.
            scratch: vec![0; limits.head + 1].into_boxed_slice(),
        })
    }

    /// Serves until epoll itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(MAX_EVENTS);
        loop {
            let retry = match self.accept {
                Accept::RetryAt(at) => Some(at),
                _ => None,
            };
            let wake = self.next_deadline().into_iter().chain(retry).min();
            let timeout = epoll::sleep_ms(false, wake, Instant::now);
            self.epoll.wait(&mut events, timeout)?;
            for (tok, bits) in events.iter() {
                match Source::of(tok) {
                    Source::Listener => self.accept_all(),
                    Source::Socket(t) => self.on_socket(t, bits),
                    Source::Control => {}
                }
            }
            if wake.is_some() {
                self.expire(Instant::now());
            }
            let again = match self.accept {
                Accept::Open => false,
                Accept::Full => self.active < self.limits.connections,
                Accept::RetryAt(at) => Instant::now() >= at,
            };
            if again {
                self.accept_all();
            }
        }
    }

    /// Accepts until the backlog is empty, every slot is taken by a
    /// connection being answered, or the process is out of descriptors.
    fn accept_all(&mut self) {
        self.accept = Accept::Open;
        loop {
            if self.active >= self.limits.connections && !self.evict_one() {
                // Look again once the youngest waiting connection may have
                // become idle.
                if self.any_waiting() {
                    self.accept = Accept::RetryAt(Instant::now() + IDLE_GRACE);
                    return;
                }
                break;
            }
            match self.listener.accept() {
                Ok(fd) => self.open(fd),
                Err(e) => match netio::outcome::fault(&e) {
                    Fault::WouldBlock => return,
                    // That one client is gone; the next may be fine.
                    Fault::Reset | Fault::Network | Fault::Denied => {}
                    _ => {
                        self.accept = Accept::RetryAt(Instant::now() + ACCEPT_RETRY);
                        return;
                    }
                },
            }
        }
        self.accept = Accept::Full;
    }

    /// Closes the oldest connection that is not being answered — still
    /// reading its request, or draining after its answer — to make room
    /// for a new client. False if every one is being answered.
    fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let life = self.limits.deadline;
        let idle = self.deadlines.iter().find(|&&(slot, gen, at)| {
            let c = &self.conns[slot];
            let accepted = at.checked_sub(life).unwrap_or(at);
            c.is_open(gen) && c.is_waiting() && now >= accepted + IDLE_GRACE
        });
        match idle {
            Some(&(slot, _, _)) => {
                self.close(slot);
                true
            }
            None => false,
        }
    }

    /// Whether some open connection is not being answered.
    fn any_waiting(&self) -> bool {
        self.conns.iter().any(|c| c.fd.is_some() && c.is_waiting())
    }

    /// Registers a new connection in a free slot, its deadline starting now.
    fn open(&mut self, fd: OwnedFd) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(Conn {
                fd: None,
                gen: 0,
                ready: Ready::default(),
                stage: Stage::Closed,
            });
            self.conns.len() - 1
        });
        let c = &mut self.conns[slot];
        let token = Token::new(slot, c.gen, Side::Client).encode();
        if self.epoll.add(&fd, epoll::SOCKET, token).is_err() {
            self.free.push(slot);
            return; // Dropping `fd` closes it.
        }
        c.fd = Some(fd);
        c.ready = Ready::default();
        c.stage = Stage::Reading { head: Vec::new() };
        self.active += 1;
        let deadline = Instant::now() + self.limits.deadline;
        self.deadlines.push_back((slot, c.gen, deadline));
    }

    /// Takes an event for a connection and moves it on.
    fn on_socket(&mut self, t: Token, bits: u32) {
        // A stale event: the slot was closed (and maybe reused) since.
        match self.conns.get_mut(t.index()) {
            Some(c) if c.is_open(t.gen) => c.ready.apply(bits),
            _ => return,
        }
        if let Step::Close = self.advance(t.index()) {
            self.close(t.index());
        }
    }

    /// Moves connection `slot` through its stages as far as its socket
    /// allows now.
    fn advance(&mut self, slot: usize) -> Step {
        let Server {
            conns,
            scratch,
            protocol,
            limits,
            ..
        } = self;
        let c = &mut conns[slot];
        let Some(fd) = &c.fd else {
            return Step::Close;
        };
        loop {
            match &mut c.stage {
                Stage::Reading { head } => {
                    let read = read_head(fd, &mut c.ready, head, scratch, limits.head, protocol);
                    let (out, ended) = match read {
                        Head::Partial => return Step::Wait,
                        Head::Gone => return Step::Close,
                        Head::Complete(end) => (protocol.answer(&head[..end]), false),
                        Head::TooLarge => (protocol.too_large(limits.head), false),
                        Head::Ended => match protocol.at_eof(head) {
                            Some(out) => (out, true),
                            None => return Step::Close,
                        },
                    };
                    c.stage = Stage::Writing { out, at: 0, ended };
                }
                Stage::Writing { out, at, ended } => {
                    while *at < out.len() {
                        if !c.ready.writable {
                            return Step::Wait;
                        }
                        let got = Outcome::of(socket::write(fd, &out[*at..]));
                        c.ready.after_write(got, out.len() - *at);
                        match got {
                            Outcome::Data(n) => *at += n,
                            Outcome::WouldBlock | Outcome::Eof => {}
                            Outcome::Reset | Outcome::Error(_) => return Step::Close,
                        }
                    }
                    // Everything the client sent has been read: closing
                    // now sends a FIN, not a reset.
                    if *ended || socket::shutdown_write(fd).is_err() {
                        return Step::Close;
                    }
                    c.stage = Stage::Draining { left: DRAIN_LIMIT };
                }
                Stage::Draining { left } => {
                    while c.ready.readable {
                        let got = Outcome::of(socket::read(fd, scratch));
                        c.ready.after_read(got, scratch.len());
                        match got {
                            Outcome::Data(n) if n < *left => *left -= n,
                            Outcome::WouldBlock => {}
                            _ => return Step::Close,
                        }
                    }
                    return Step::Wait;
                }
                Stage::Closed => return Step::Close,
            }
        }
    }

    /// Closes connections whose deadline has passed.
    fn expire(&mut self, now: Instant) {
        while self.next_deadline().is_some_and(|at| at <= now) {
            if let Some((slot, _, _)) = self.deadlines.pop_front() {
                self.close(slot);
            }
        }
    }

    /// The deadline of the oldest open connection, dropping the entries
    /// of closed ones ahead of it.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(slot, gen, at)) = self.deadlines.front() {
            if self.conns[slot].is_open(gen) {
                return Some(at);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Closes `slot` now; its generation changes so stale events are
    /// dropped.
    fn close(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.fd.take().is_none() {
            return;
        }
        c.gen = c.gen.wrapping_add(1);
        // Frees the connection's buffers.
        c.stage = Stage::Closed;
        self.free.push(slot);
        self.active -= 1;
    }
}

/// Reads what has arrived of a request onto `head`, never past `limit`
/// and one byte.
fn read_head(
    fd: &OwnedFd,
    ready: &mut Ready,
    head: &mut Vec<u8>,
    scratch: &mut [u8],
    limit: usize,
    protocol: &impl Protocol,
) -> Head {
    while ready.readable {
        let room = (limit + 1).saturating_sub(head.len()).min(scratch.len());
        let got = Outcome::of(socket::read(fd, &mut scratch[..room]));
        ready.after_read(got, room);
        match got {
            Outcome::Data(n) => {
                let from = head.len();
                head.extend_from_slice(&scratch[..n]);
                match protocol.end(head, from) {
                    Some(end) if end <= limit => return Head::Complete(end),
                    Some(_) => return Head::TooLarge,
                    None if head.len() > limit => return Head::TooLarge,
                    None => {}
                }
            }
            Outcome::WouldBlock => {}
            Outcome::Eof => return Head::Ended,
            Outcome::Reset | Outcome::Error(_) => return Head::Gone,
        }
    }
    Head::Partial
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
