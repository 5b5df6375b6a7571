//! Serving one port from N event-loop workers, each with its own
//! listener (`SO_REUSEPORT` when there are several), while the main
//! thread waits for signals on a signalfd: SIGUSR1 asks for the stats,
//! SIGTERM or SIGINT stops every worker (each drains as it sees fit) and
//! waits for them; SIGHUP goes to the server's reload, if it has one;
//! SIGUSR2 (upgrade, not supported yet) is logged and changes nothing.
//!
//! The order matters and is kept here once: block the signals before any
//! thread starts (so every thread inherits the mask and no handler ever
//! runs inside a loop), bind everything before the `listening on` line,
//! and join every worker before the final summary.

use crate::sys::rlimit::{self, NoFile};
use crate::sys::signal::{self, Signal, SignalFd};
use crate::sys::socket;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// One event loop that the main thread starts and stops.
pub trait Worker: Send + 'static {
    /// The handle other threads keep.
    type Control: Stop;
    fn control(&self) -> Arc<Self::Control>;
    /// Runs until stopped; an error means the loop itself broke.
    fn run(self) -> io::Result<()>;
}

/// Asks a running worker to stop (and drain).
pub trait Stop: Send + Sync + 'static {
    fn stop(&self) -> io::Result<()>;
}

/// A failed step of starting up.
#[derive(Debug)]
pub enum Error {
    /// Binding a listening socket.
    Bind(SocketAddr, io::Error),
    /// Any other step, named.
    Setup(&'static str, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Setup(step, e) => write!(f, "{step}: {e}"),
        }
    }
}

/// What every server does first, before it starts a thread: raise the
/// open-files limit to the hard limit, ignore SIGPIPE (a vanished peer is
/// `EPIPE`, not death), and block the signals it reads from the returned
/// signalfd.
pub fn prepare() -> Result<(NoFile, SignalFd), Error> {
    let limit = rlimit::raise_nofile().map_err(|e| Error::Setup("raising RLIMIT_NOFILE", e))?;
    signal::ignore_sigpipe().map_err(|e| Error::Setup("ignoring SIGPIPE", e))?;
    let signals = SignalFd::new().map_err(|e| Error::Setup("creating signalfd", e))?;
    Ok((limit, signals))
}

/// Binds `n` non-blocking listeners to `addr`, sharing the port through
/// `SO_REUSEPORT` when `n > 1` (after port 0, the others take the port the
/// first got). Accepted sockets inherit `TCP_NODELAY` from them, which
/// saves a setsockopt per client. Returns them with the address bound.
pub fn listeners(
    addr: SocketAddr,
    n: usize,
    backlog: i32,
) -> Result<(Vec<OwnedFd>, SocketAddr), Error> {
    let opts = socket::ListenOptions {
        backlog,
        reuse_port: n > 1,
    };
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let l = socket::listen(&addr, opts).map_err(|e| Error::Bind(addr, e))?;
        socket::set_nodelay(&l).map_err(|e| Error::Setup("setting TCP_NODELAY", e))?;
        addr = socket::local_addr(&l).map_err(|e| Error::Setup("reading the bound address", e))?;
        out.push(l);
    }
    Ok((out, addr))
}

/// Workers running on their own threads (`worker-0`, `worker-1`, …).
pub struct Running<C> {
    prog: &'static str,
    controls: Vec<Arc<C>>,
    handles: Vec<JoinHandle<()>>,
}

/// Starts every worker on its thread. A worker whose loop fails ends the
/// process with status 1 after one line naming it: half a server must not
/// go on serving.
pub fn start<W: Worker>(prog: &'static str, workers: Vec<W>) -> Result<Running<W::Control>, Error> {
    let controls = workers.iter().map(Worker::control).collect();
    let mut handles = Vec::with_capacity(workers.len());
    for (i, w) in workers.into_iter().enumerate() {
        let h = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                if let Err(e) = w.run() {
                    crate::log!("{prog}: worker {i} failed: {e}");
                    crate::log::flush(crate::log::FLUSH);
                    std::process::exit(1);
                }
            })
            .map_err(|e| Error::Setup("starting a worker thread", e))?;
        handles.push(h);
    }
    Ok(Running {
        prog,
        controls,
        handles,
    })
}

impl<C: Stop> Running<C> {
    /// The workers' handles, in worker order.
    pub fn controls(&self) -> &[Arc<C>] {
        &self.controls
    }

    /// Reads signals until SIGTERM or SIGINT, calling `on_stats` for each
    /// SIGUSR1 and logging one line for each SIGHUP or SIGUSR2, which
    /// leave everything as it was.
    pub fn until_terminated(
        &self,
        signals: &SignalFd,
        on_stats: impl FnMut(&[Arc<C>]),
    ) -> Result<(), Error> {
        let prog = self.prog;
        self.until_terminated_reloading(signals, on_stats, |_| {
            crate::log!("{prog}: SIGHUP: reload is not supported yet; ignored");
        })
    }

    /// [`Running::until_terminated`], calling `on_reload` for each SIGHUP
    /// (on this thread: a slow reload holds up only the signals after it).
    pub fn until_terminated_reloading(
        &self,
        signals: &SignalFd,
        mut on_stats: impl FnMut(&[Arc<C>]),
        mut on_reload: impl FnMut(&[Arc<C>]),
    ) -> Result<(), Error> {
        loop {
            match signals
                .read()
                .map_err(|e| Error::Setup("reading signals", e))?
            {
                Signal::Stats => on_stats(&self.controls),
                Signal::Terminate => return Ok(()),
                Signal::Reload => on_reload(&self.controls),
                Signal::Upgrade => crate::log!(
                    "{}: SIGUSR2: binary upgrade is not supported yet; ignored",
                    self.prog
                ),
            }
        }
    }

    /// Stops every worker and waits until all have returned (each drains
    /// first as it sees fit). Gives back the handles, for the final
    /// summary.
    pub fn stop(self) -> Result<Vec<Arc<C>>, Error> {
        for c in &self.controls {
            c.stop().map_err(|e| Error::Setup("waking a worker", e))?;
        }
        for h in self.handles {
            // A worker that panicked has aborted the process already.
            let _ = h.join();
        }
        Ok(self.controls)
    }
}
