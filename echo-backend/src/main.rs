//! The `echo-backend` binary: parse the options, bind one listener per
//! worker, start the workers, then wait for SIGTERM / SIGINT.

use clap::Parser;
use echo_backend::pattern::Pattern;
use echo_backend::server::{Control, Mode, Settings, Worker};
use netio::sys::{rlimit, signal, socket};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Descriptors kept back from the connection limit for listeners, epoll,
/// eventfds, the signalfd and stdio.
const FD_HEADROOM: u64 = 64;
/// Listen backlog per worker (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 4096;

/// The backend the workbench's scenarios run against.
#[derive(Debug, Parser)]
#[command(name = "echo-backend", version, about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// What to do with each connection
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    mode: Mode,
    /// Event-loop workers sharing the port via SO_REUSEPORT
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = positive)]
    workers: usize,
    /// Seed of the stream source mode writes
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Connections held at once over all workers; more wait in the backlog
    /// [default: derived from RLIMIT_NOFILE]
    #[arg(long, value_name = "N", value_parser = positive)]
    max_connections: Option<usize>,
}

/// A count that must be at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// What went wrong, by the step that failed.
enum Error {
    /// Binding a listening socket.
    Bind(SocketAddr, io::Error),
    /// Any other setup step, named.
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

fn main() -> ExitCode {
    netio::cli::abort_on_panic();
    let cli: Cli = match netio::cli::parse("echo-backend") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-backend: {e}");
            ExitCode::from(1)
        }
    }
}

fn try_main(cli: Cli) -> Result<(), Error> {
    let limit = rlimit::raise_nofile().map_err(|e| Error::Setup("raising RLIMIT_NOFILE", e))?;
    let max_connections = cli.max_connections.unwrap_or_else(|| {
        usize::try_from(limit.soft.saturating_sub(FD_HEADROOM).max(1)).unwrap_or(usize::MAX)
    });
    let workers = cli.workers;
    signal::ignore_sigpipe().map_err(|e| Error::Setup("ignoring SIGPIPE", e))?;
    // Block the signals before any thread starts, so that all inherit the mask.
    let signals = signal::SignalFd::new().map_err(|e| Error::Setup("creating signalfd", e))?;

    let settings = Settings {
        mode: cli.mode,
        pattern: Arc::new(Pattern::new(cli.seed)),
        max_connections: max_connections.div_ceil(workers),
    };
    let opts = socket::ListenOptions {
        backlog: BACKLOG,
        reuse_port: workers > 1,
    };
    let mut addr = cli.listen;
    let mut built = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = socket::listen(&addr, opts).map_err(|e| Error::Bind(addr, e))?;
        // Accepted sockets inherit TCP_NODELAY from the listener: replies
        // leave at once without a setsockopt per connection.
        socket::set_nodelay(&listener).map_err(|e| Error::Setup("setting TCP_NODELAY", e))?;
        // After binding port 0 the others must share the real port.
        addr = socket::local_addr(&listener)
            .map_err(|e| Error::Setup("reading the bound address", e))?;
        let worker =
            Worker::new(&settings, listener).map_err(|e| Error::Setup("creating a worker", e))?;
        built.push(worker);
    }
    let controls: Vec<Arc<Control>> = built.iter().map(Worker::control).collect();

    let mut handles = Vec::with_capacity(workers);
    for (i, w) in built.into_iter().enumerate() {
        let h = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                if let Err(e) = w.run() {
                    eprintln!("echo-backend: worker {i} failed: {e}");
                    std::process::exit(1);
                }
            })
            .map_err(|e| Error::Setup("starting a worker thread", e))?;
        handles.push(h);
    }
    eprintln!("listening on {addr}");

    loop {
        match signals
            .read()
            .map_err(|e| Error::Setup("reading signals", e))?
        {
            signal::Signal::Terminate => break,
            signal::Signal::Stats => eprintln!("{}", summary(&controls)),
        }
    }
    for c in &controls {
        c.shutdown()
            .map_err(|e| Error::Setup("waking a worker", e))?;
    }
    for h in handles {
        let _ = h.join();
    }
    eprintln!("{}", summary(&controls));
    Ok(())
}

/// One line of connection counts over all workers.
fn summary(controls: &[Arc<Control>]) -> String {
    let accepted: u64 = controls.iter().map(|c| c.accepted()).sum();
    let closed: u64 = controls.iter().map(|c| c.closed()).sum();
    format!(
        "echo-backend: {accepted} connections accepted, {} open",
        accepted.saturating_sub(closed)
    )
}
