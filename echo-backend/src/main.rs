//! The `echo-backend` binary: parse the options, bind one listener per
//! worker, start the workers, then wait for SIGTERM / SIGINT.

use clap::Parser;
use echo_backend::pattern::Pattern;
use echo_backend::server::{Control, Mode, Settings, Worker};
use netio::serve::{self, Running};
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Descriptors kept back from the connection limit for listeners, epoll,
/// eventfds, the signalfd and stdio: a connection costs one descriptor.
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
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = positive, allow_hyphen_values = true)]
    workers: usize,
    /// Seed of the stream source mode writes
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    seed: u64,
    /// Connections held at once over all workers (at least one a worker);
    /// more wait in the backlog [default: derived from RLIMIT_NOFILE]
    #[arg(long, value_name = "N", value_parser = positive, allow_hyphen_values = true)]
    max_connections: Option<usize>,
}

/// A count that must be at least 1 (a negative one, too, is named with
/// its option rather than taken for an unknown flag).
fn positive(s: &str) -> Result<usize, String> {
    netio::cli::number(s, 1, usize::MAX)
}

/// What went wrong, by the step that failed.
enum Error {
    /// A bad combination of options.
    Usage(String),
    /// Binding or any other start-up step.
    Start(serve::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg) => write!(f, "{msg}"),
            Error::Start(e) => write!(f, "{e}"),
        }
    }
}

impl From<serve::Error> for Error {
    fn from(e: serve::Error) -> Error {
        Error::Start(e)
    }
}

fn main() -> ExitCode {
    netio::cli::abort_on_panic();
    let cli: Cli = match netio::cli::parse("echo-backend") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    netio::log::start("echo-backend");
    let code = match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            netio::log!("echo-backend: {e}");
            ExitCode::from(1)
        }
    };
    // The final summary reaches a working stderr; a stalled one cannot
    // hold up the exit.
    netio::log::flush(netio::log::FLUSH);
    code
}

fn try_main(cli: Cli) -> Result<(), Error> {
    let workers = cli.workers;
    if let Some(n) = cli.max_connections.filter(|&n| n < workers) {
        // Each worker's listener gets its share of the clients, and a
        // worker with no room would leave them waiting forever.
        return Err(Error::Usage(format!(
            "invalid --max-connections \"{n}\": must be at least --workers ({workers})"
        )));
    }
    // Before any thread starts: all inherit the blocked signals.
    let (limit, signals) = serve::prepare()?;
    let max_connections = cli.max_connections.unwrap_or_else(|| {
        let budget = limit.soft.saturating_sub(FD_HEADROOM);
        usize::try_from(budget).unwrap_or(usize::MAX).max(workers)
    });
    let (listeners, addr) = serve::listeners(cli.listen, workers, BACKLOG)?;
    let settings = Settings {
        mode: cli.mode,
        pattern: Arc::new(Pattern::new(cli.seed)),
    };
    let mut built = Vec::with_capacity(workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        // The shares add up to exactly `max_connections`.
        let share = netio::budget::share(max_connections, workers, i);
        let worker = Worker::new(&settings, listener, share)
            .map_err(|e| serve::Error::Setup("creating a worker", e))?;
        built.push(worker);
    }

    let running: Running<Control> = serve::start("echo-backend", built)?;
    netio::log!("listening on {addr}");
    running.until_terminated(&signals, |c| netio::log!("{}", summary(c)))?;
    let controls = running.stop()?;
    netio::log!("{}", summary(&controls));
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
