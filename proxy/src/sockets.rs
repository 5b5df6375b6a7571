//! The epoll engine: the worker's epoll instance, sockets and pipes — the
//! real [`Sockets`] and [`relay::Io`] behind the table, one system call a
//! method, each counted in the worker's [`Stats`] (so that syscalls per
//! message are exact) — and its [`Engine`] side: waiting, registering.

use crate::config::Config;
use crate::engine::{Engine, Event};
use crate::pipes::PipeId;
use crate::pipes::Pipes;
use crate::relay;
use crate::stats::Stats;
use crate::table::Sockets;
use netio::sys::epoll::{self, Epoll, Events, Waker};
use netio::sys::pipe;
use netio::sys::socket;
use netio::{Errno, Outcome, Side, Source, Token};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;

/// The epoll instance, descriptors by slot (client, backend), and the
/// pipes by id.
pub struct SysSockets {
    pub(crate) epoll: Epoll,
    fds: Vec<[Option<OwnedFd>; 2]>,
    pipes: Pipes,
    stats: Arc<Stats>,
    events: Events,
}

impl SysSockets {
    /// Room for `capacity` pairs, and `pipes` made at start-up.
    pub fn new(epoll: Epoll, capacity: usize, pipes: Pipes, stats: Arc<Stats>) -> Self {
        let mut fds = Vec::with_capacity(capacity);
        fds.resize_with(capacity, || [None, None]);
        SysSockets {
            epoll,
            fds,
            pipes,
            stats,
            events: Events::with_capacity(MAX_EVENTS),
        }
    }
}

impl Engine for SysSockets {
    const COMPLETES_ACCEPTS: bool = false;

    fn new(cfg: &Config, capacity: usize, stats: Arc<Stats>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        let pipes = Pipes::new(cfg.pipes, cfg.pipe_size);
        Ok(SysSockets::new(epoll, capacity, pipes, stats))
    }

    fn watch(&mut self, listener: &OwnedFd, waker: &Waker) -> io::Result<()> {
        self.epoll
            .add(listener, epoll::IN | epoll::ET, Token::LISTENER)?;
        self.epoll.add(waker, epoll::IN | epoll::ET, Token::CONTROL)
    }

    fn wait(&mut self, timeout_ms: i32, out: &mut Vec<Event>) -> io::Result<usize> {
        self.stats.sys_epoll_wait.inc();
        let n = self.epoll.wait(&mut self.events, timeout_ms)?;
        out.extend(self.events.iter().map(|(tok, bits)| match Source::of(tok) {
            Source::Listener => Event::Listener,
            Source::Control => Event::Control,
            Source::Socket(t) => Event::Socket(t, bits),
        }));
        Ok(n)
    }

    fn side(&self) -> &Epoll {
        &self.epoll
    }

    fn pipes(&self) -> (usize, usize) {
        self.pipes.counts()
    }

    fn register(
        &mut self,
        slot: usize,
        gen: u32,
        client: &OwnedFd,
        backend: Option<&OwnedFd>,
    ) -> io::Result<()> {
        self.stats.sys_epoll_ctl.inc();
        let token = Token::new(slot, gen, Side::Client).encode();
        self.epoll.add(client, epoll::SOCKET, token)?;
        if let Some(fd) = backend {
            self.stats.sys_epoll_ctl.inc();
            let token = Token::new(slot, gen, Side::Backend).encode();
            self.epoll.add(fd, epoll::SOCKET, token)?;
        }
        Ok(())
    }

    /// Gives `slot` its two sockets (a queued client has no backend
    /// socket yet: [`Sockets::reconnect`] makes it).
    fn attach(
        &mut self,
        slot: usize,
        _gen: u32,
        client: OwnedFd,
        backend: Option<OwnedFd>,
        _connected: bool,
    ) {
        debug_assert!(self.fds[slot].iter().all(Option::is_none));
        self.fds[slot] = [Some(client), backend];
    }
}

/// A backend socket for a retry: `socket(2)`, `connect(2)` and
/// `TCP_NODELAY`, each counted (and the close of the socket if the connect
/// failed at once). True if it completed at once.
pub(crate) fn connect_counted(stats: &Stats, addr: &SocketAddr) -> Result<(OwnedFd, bool), Errno> {
    let (fd, done) = socket::connect(addr).map_err(|e| {
        stats.sys_connect.add(2);
        stats.sys_close.inc();
        Errno::of(&e)
    })?;
    stats.sys_connect.add(2);
    stats.sys_sockopt.inc();
    let _ = socket::set_nodelay(&fd);
    Ok((fd, done))
}

/// One pair's sockets, for the relay.
pub struct PairIo<'a> {
    fds: &'a [Option<OwnedFd>; 2],
    pipes: &'a Pipes,
    stats: &'a Stats,
}

impl PairIo<'_> {
    fn fd(&self, side: Side) -> Option<&OwnedFd> {
        self.fds[side.index()].as_ref()
    }

    fn pipe(&self, id: &PipeId) -> Option<&pipe::Pipe> {
        self.pipes.get(id)
    }
}

const CLOSED: Outcome = Outcome::Error(Errno::BAD_DESCRIPTOR);

impl relay::Io for PairIo<'_> {
    #[inline]
    fn read(&mut self, from: Side, buf: &mut [u8]) -> Outcome {
        let Some(fd) = self.fd(from) else {
            return CLOSED;
        };
        self.stats.sys_read.inc();
        Outcome::of(socket::read(fd, buf))
    }

    #[inline]
    fn write(&mut self, to: Side, data: &[u8]) -> Outcome {
        let Some(fd) = self.fd(to) else {
            return CLOSED;
        };
        self.stats.sys_write.inc();
        Outcome::of(socket::write(fd, data))
    }

    #[inline]
    fn splice_in(&mut self, from: Side, p: &PipeId, len: usize) -> Outcome {
        let (Some(fd), Some(p)) = (self.fd(from), self.pipe(p)) else {
            return CLOSED;
        };
        self.stats.sys_splice.inc();
        Outcome::of(pipe::splice(fd, &p.write, len))
    }

    #[inline]
    fn splice_out(&mut self, p: &PipeId, to: Side, len: usize) -> Outcome {
        let (Some(fd), Some(p)) = (self.fd(to), self.pipe(p)) else {
            return CLOSED;
        };
        self.stats.sys_splice.inc();
        Outcome::of(pipe::splice(&p.read, fd, len))
    }

    fn shutdown(&mut self, to: Side) -> Outcome {
        let Some(fd) = self.fd(to) else {
            return CLOSED;
        };
        self.stats.sys_shutdown.inc();
        match socket::shutdown_write(fd) {
            Ok(()) => Outcome::Data(0),
            Err(e) => Outcome::of_error(&e),
        }
    }
}

impl Sockets for SysSockets {
    #[inline]
    fn pair(&mut self, slot: usize) -> impl relay::Io + '_ {
        PairIo {
            fds: &self.fds[slot],
            pipes: &self.pipes,
            stats: &self.stats,
        }
    }

    fn connect_error(&mut self, slot: usize) -> Option<Errno> {
        let fd = self.fds[slot][Side::Backend.index()].as_ref()?;
        self.stats.sys_sockopt.inc();
        socket::take_error(fd).ok().flatten().map(|e| Errno::of(&e))
    }

    fn close(&mut self, slot: usize, abort: [bool; 2]) {
        let fds = &mut self.fds[slot];
        for side in Side::BOTH {
            if let (true, Some(fd)) = (abort[side.index()], fds[side.index()].as_ref()) {
                self.stats.sys_sockopt.inc();
                let _ = socket::set_linger_zero(fd);
            }
        }
        for fd in fds.iter_mut().filter_map(Option::take) {
            self.stats.sys_close.inc();
            drop(fd);
        }
    }

    fn reconnect(&mut self, slot: usize, gen: u32, addr: SocketAddr) -> Result<bool, Errno> {
        let stats = &self.stats;
        if let Some(old) = self.fds[slot][Side::Backend.index()].take() {
            stats.sys_sockopt.inc();
            let _ = socket::set_linger_zero(&old);
            stats.sys_close.inc();
            drop(old);
        }
        let (fd, done) = connect_counted(stats, &addr)?;
        stats.sys_epoll_ctl.inc();
        let token = Token::new(slot, gen, Side::Backend).encode();
        if let Err(e) = self.epoll.add(&fd, epoll::SOCKET, token) {
            stats.sys_close.inc();
            return Err(Errno::of(&e));
        }
        self.fds[slot][Side::Backend.index()] = Some(fd);
        Ok(done)
    }

    fn local_addr(&mut self, slot: usize) -> Option<SocketAddr> {
        let fd = self.fds[slot][Side::Client.index()].as_ref()?;
        self.stats.sys_sockopt.inc(); // getsockname
        socket::local_addr(fd).ok()
    }

    fn unacked(&mut self, slot: usize, side: Side) -> Option<usize> {
        let fd = self.fds[slot][side.index()].as_ref()?;
        self.stats.sys_ioctl.inc();
        socket::unacked(fd).ok()
    }

    fn renew_pipe(&mut self, id: &PipeId) -> bool {
        self.pipes.renew(id, &self.stats)
    }
}
