//! The `proxy` binary: parse and check the configuration, bind, start the
//! workers, then wait for signals.

use netio::serve::{self, Running};
use netio::sys::socket;
use proxy::backends::Live;
use proxy::config::{self, Cli, Config};
use proxy::engine::Engine;
use proxy::reload::Reloader;
use proxy::settings::{Published, Settings};
use proxy::sockets::SysSockets;
use proxy::stats::Snapshot;
use proxy::uring::Uring;
use proxy::worker::{Control, Worker};
use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Scrapes that may wait in the metrics listener's backlog while every
/// connection slot of the endpoint is taken.
const METRICS_BACKLOG: i32 = 128;

/// What went wrong, by the step that failed.
enum Error {
    /// A bad option, value or config file.
    Config(String),
    /// Binding or any other start-up step.
    Start(serve::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "{msg}"),
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
    let cli: Cli = match netio::cli::parse("proxy") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    netio::log::start("proxy");
    let code = match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            netio::log!("proxy: {e}");
            ExitCode::from(1)
        }
    };
    // The last lines (the final stats) reach a working stderr; a stalled
    // one cannot hold up the exit.
    netio::log::flush(netio::log::FLUSH);
    code
}

fn try_main(cli: Cli) -> Result<(), Error> {
    // Before any thread starts: all inherit the blocked signals.
    let (limit, signals) = serve::prepare()?;
    let cfg = config::resolve(cli.clone(), limit.soft).map_err(Error::Config)?;
    // One health state and one count per backend, and one set of the
    // settings a reload changes, shared by the workers, the metrics
    // endpoint and the admin socket.
    let live = Live::new(cfg.backend_set());
    let settings = Published::new(Settings::of(&cfg));
    match cfg.engine {
        config::Engine::Epoll => serve::<SysSockets>(cli, limit, signals, cfg, live, settings),
        config::Engine::Uring => serve::<Uring>(cli, limit, signals, cfg, live, settings),
    }
}

/// Builds the workers on engine `E`, starts them and the endpoints, and
/// serves until terminated.
fn serve<E: Engine + Send + 'static>(
    cli: Cli,
    limit: netio::sys::rlimit::NoFile,
    signals: netio::sys::signal::SignalFd,
    cfg: Config,
    live: Arc<Live>,
    settings: Arc<Published<Settings>>,
) -> Result<(), Error> {
    let (workers, bound) = build_workers::<E>(&cfg, &live, &settings)?;
    let controls: Vec<Arc<Control>> = workers.iter().map(Worker::control).collect();
    // Removed when this returns, however it does.
    let _admin = match &cfg.admin_socket {
        Some(path) => {
            let socket = proxy::admin::start(path, Arc::clone(&live)).map_err(Error::Config)?;
            netio::log!("admin socket on {}", path.display());
            Some(socket)
        }
        None => None,
    };

    if let Some(addr) = cfg.metrics {
        let opts = socket::ListenOptions {
            backlog: METRICS_BACKLOG,
            reuse_port: false,
        };
        let listener = socket::listen(&addr, opts).map_err(|e| serve::Error::Bind(addr, e))?;
        let shown = socket::local_addr(&listener).unwrap_or(addr);
        let endpoint = proxy::metrics::endpoint(listener, controls.clone(), Arc::clone(&live))
            .map_err(|e| serve::Error::Setup("starting the metrics endpoint", e))?;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                if let Err(e) = endpoint.run() {
                    netio::log!("proxy: the metrics endpoint stopped: {e}");
                }
            })
            .map_err(|e| serve::Error::Setup("starting the metrics thread", e))?;
        netio::log!("metrics on http://{shown}/metrics");
    }

    let running: Running<Control> = serve::start("proxy", workers)?;
    if let Some(limit) = cfg.derived_from {
        netio::log!("proxy: {}", derived(&cfg, limit));
    }
    let mut reloader = Reloader::new(cli, std::env::args_os(), limit.soft, cfg, live, settings);
    reloader
        .start_resolver()
        .map_err(|e| serve::Error::Setup("starting the resolver thread", e))?;
    for w in &reloader.running().warnings {
        netio::log!("proxy: warning: {w}");
    }
    netio::log!("proxy: engine {}", reloader.running().engine.name());
    netio::log!("listening on {bound}");
    running.until_terminated_reloading(
        &signals,
        |c| netio::log!("{}", summary(c)),
        |c| reloader.reload(c),
    )?;
    netio::log!(
        "proxy: shutting down: no new connections; draining for up to {:?}",
        reloader.running().drain_timeout
    );
    let controls = running.stop()?;
    netio::log!("{}", summary(&controls));
    Ok(())
}

/// What was derived from the open-files limit, e.g. `1 worker, 9
/// connections, 3 pipes a worker: from the open-files limit 64`. Its own
/// line: `listening on ADDR` stays exactly that, for the tools that parse it.
fn derived(cfg: &Config, limit: u64) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {} a worker: from the open-files limit {limit}",
        plural(cfg.workers, "worker"),
        plural(cfg.max_connections, "connection"),
        plural(cfg.pipes, "pipe"),
    )
}

fn summary(controls: &[Arc<Control>]) -> String {
    Snapshot::total(controls.iter().map(|c| &*c.stats)).summary()
}

/// Binds one listener per worker (sharing the port through SO_REUSEPORT
/// when there are several) and builds the workers, each holding its share
/// of `--max-connections`. Returns them with the address actually bound.
fn build_workers<E: Engine>(
    cfg: &Config,
    backends: &Arc<Live>,
    settings: &Arc<Published<Settings>>,
) -> Result<(Vec<Worker<E>>, SocketAddr), Error> {
    let (listeners, addr) = serve::listeners(cfg.listen, cfg.workers, cfg.backlog)?;
    let mut workers = Vec::with_capacity(cfg.workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        let share = netio::budget::share(cfg.max_connections, cfg.workers, i);
        let mut worker = Worker::<E>::new(cfg, backends, settings, listener, share)
            .map_err(|e| serve::Error::Setup("creating a worker", e))?;
        // One worker checks the backends; all read the results.
        if i == 0 {
            worker.check_backends(backends);
        }
        workers.push(worker);
    }
    Ok((workers, addr))
}
