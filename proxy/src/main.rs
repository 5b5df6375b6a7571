//! The `proxy` binary: parse and check the configuration, bind, start the
//! workers, then wait for signals.

use proxy::config::{self, Cli, Config};
use proxy::server::{Control, Worker};
use proxy::stats::Snapshot;
use proxy::sys::{rlimit, signal, socket};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// What went wrong, by the step that failed.
enum Error {
    /// A bad option, value or config file.
    Config(String),
    /// Binding a listening socket.
    Bind(SocketAddr, io::Error),
    /// Any other setup step, named.
    Setup(&'static str, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Setup(step, e) => write!(f, "{step}: {e}"),
        }
    }
}

fn main() -> ExitCode {
    proxy::cli::abort_on_panic();
    let cli: Cli = match proxy::cli::parse("proxy") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e}");
            ExitCode::from(1)
        }
    }
}

fn try_main(cli: Cli) -> Result<(), Error> {
    let limit = rlimit::raise_nofile().map_err(|e| Error::Setup("reading RLIMIT_NOFILE", e))?;
    let cfg = config::resolve(cli, limit.soft).map_err(Error::Config)?;
    let fd_need =
        cfg.max_connections as u64 * 2 + 2 * (cfg.pipes * cfg.workers) as u64 + config::FD_HEADROOM;
    if fd_need > limit.soft {
        eprintln!(
            "proxy: warning: --max-connections {} needs about {fd_need} descriptors but the limit is {}; \
             clients beyond it wait in the backlog",
            cfg.max_connections, limit.soft
        );
    }
    signal::ignore_sigpipe().map_err(|e| Error::Setup("ignoring SIGPIPE", e))?;
    // Block the signals before any thread starts, so that all inherit the mask.
    let signals = signal::SignalFd::new().map_err(|e| Error::Setup("creating signalfd", e))?;

    let (workers, bound) = build_workers(&cfg)?;
    let controls: Vec<Arc<Control>> = workers.iter().map(Worker::control).collect();

    if let Some(addr) = cfg.metrics {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| Error::Bind(addr, e))?;
        let shown = listener.local_addr().unwrap_or(addr);
        let controls = controls.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || proxy::metrics::serve(listener, controls))
            .map_err(|e| Error::Setup("starting the metrics thread", e))?;
        eprintln!("metrics on http://{shown}/metrics");
    }

    let mut handles = Vec::with_capacity(workers.len());
    for (i, w) in workers.into_iter().enumerate() {
        let h = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                if let Err(e) = w.run() {
                    eprintln!("proxy: worker {i} failed: {e}");
                    std::process::exit(1);
                }
            })
            .map_err(|e| Error::Setup("starting a worker thread", e))?;
        handles.push(h);
    }
    eprintln!("listening on {bound}");

    loop {
        match signals
            .read()
            .map_err(|e| Error::Setup("reading signals", e))?
        {
            signal::Signal::Stats => {
                eprintln!(
                    "{}",
                    Snapshot::total(controls.iter().map(|c| &c.stats)).summary()
                );
            }
            signal::Signal::Terminate => break,
            signal::Signal::Other(_) => {}
        }
    }
    eprintln!(
        "proxy: shutting down: no new connections; draining for up to {:?}",
        cfg.drain_timeout
    );
    for c in &controls {
        c.shutdown()
            .map_err(|e| Error::Setup("waking a worker", e))?;
    }
    for h in handles {
        let _ = h.join();
    }
    eprintln!(
        "{}",
        Snapshot::total(controls.iter().map(|c| &c.stats)).summary()
    );
    Ok(())
}

/// Binds one listener per worker (sharing the port through SO_REUSEPORT
/// when there are several) and builds the workers. Returns them with the
/// address actually bound.
fn build_workers(cfg: &Config) -> Result<(Vec<Worker>, SocketAddr), Error> {
    let opts = socket::ListenOptions {
        backlog: cfg.backlog,
        reuse_port: cfg.workers > 1,
    };
    let per_worker = cfg.max_connections.div_ceil(cfg.workers);
    let mut addr = cfg.listen;
    let mut workers = Vec::with_capacity(cfg.workers);
    for _ in 0..cfg.workers {
        let listener = socket::listen(&addr, opts).map_err(|e| Error::Bind(addr, e))?;
        // Accepted sockets inherit TCP_NODELAY from the listener, which
        // saves a setsockopt per client.
        socket::set_nodelay(&listener).map_err(|e| Error::Setup("setting TCP_NODELAY", e))?;
        addr = socket::local_addr(&listener)
            .map_err(|e| Error::Setup("reading the bound address", e))?;
        let worker = Worker::new(cfg, listener, per_worker)
            .map_err(|e| Error::Setup("creating a worker", e))?;
        workers.push(worker);
    }
    Ok((workers, addr))
}
