//! Runs a checked [`Config`]: starts the load threads, turns Ctrl-C into
//! an orderly stop, shows progress on a terminal, and merges what the
//! threads counted into a [`Report`].

use crate::cli::{Config, Mode};
use crate::engine::Setup;
use crate::mode;
use crate::plan::{self, Segment};
use crate::report::{Report, TargetReport, SCHEMA_VERSION};
use crate::shared::{Finished, Shared, ThreadProgress};
use crate::stats::Tally;
use echo_backend::pattern::Pattern;
use netio::serve;
use netio::sys::epoll::Waker;
use netio::sys::signal;
use std::fmt;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Descriptors kept back for stdio, epoll, wakers and the signalfd.
const FD_HEADROOM: u64 = 64;
/// Runs planned longer than this get a progress line (on a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(3);

/// What went wrong, by the step that failed.
#[derive(Debug)]
pub enum Error {
    /// The configuration cannot work on this machine (exit status 2).
    Config(String),
    /// Raising the descriptor limit or taking over the signals failed
    /// (exit status 1).
    Prepare(serve::Error),
    /// A set-up step failed (exit status 1).
    Setup(&'static str, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Prepare(e) => write!(f, "{e}"),
            Error::Setup(step, e) => write!(f, "{step}: {e}"),
        }
    }
}

/// Runs the load and returns its figures.
pub fn run(cfg: Config) -> Result<Report, Error> {
    // Raise the open-files limit, ignore SIGPIPE, and block SIGINT/SIGTERM
    // before any thread starts, so that all inherit the mask and the
    // signals arrive only through this descriptor.
    let (limit, signals) = serve::prepare().map_err(Error::Prepare)?;
    let need = (cfg.connections * cfg.targets.len()) as u64 + FD_HEADROOM;
    if need > limit.soft {
        return Err(Error::Config(format!(
            "--connections {} x {} target(s) needs about {need} descriptors but the open-files limit is {}",
            cfg.connections,
            cfg.targets.len(),
            limit.soft
        )));
    }

    let cfg = Arc::new(cfg);
    let plan = Arc::new(plan::plan(
        cfg.targets.len(),
        cfg.warmup,
        cfg.duration,
        cfg.window,
    ));
    let pattern = Arc::new(Pattern::new(cfg.seed));
    let shared = Arc::new(Shared::new(cfg.threads));
    let mut wakers = Vec::with_capacity(cfg.threads);
    let mut workers = Vec::with_capacity(cfg.threads);
    for i in 0..cfg.threads {
        let waker = Arc::new(Waker::new().map_err(|e| Error::Setup("creating a waker", e))?);
        let w = mode::worker(Setup {
            cfg: Arc::clone(&cfg),
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            thread: i,
            waker: Arc::clone(&waker),
            pattern: Arc::clone(&pattern),
        })
        .map_err(|e| Error::Setup("creating a load thread", e))?;
        wakers.push(waker);
        workers.push(w);
    }

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut handles = Vec::with_capacity(workers.len());
    for (i, w) in workers.into_iter().enumerate() {
        let tx = done_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || {
                let out = w.run();
                let _ = tx.send(());
                out
            })
            .map_err(|e| Error::Setup("starting a load thread", e))?;
        handles.push(h);
    }
    drop(done_tx);
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || watch_signals(signals, &shared, &wakers))
            .map_err(|e| Error::Setup("starting the signal thread", e))?;
    }

    let started = Instant::now();
    let show = io::stderr().is_terminal() && plan::total(&plan) > PROGRESS_AFTER;
    wait_for_threads(&done_rx, handles.len(), show.then_some((&*shared, started)));

    let mut outcomes: Vec<Finished> = Vec::with_capacity(handles.len());
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(e)) => return Err(Error::Setup("running the event loop", e)),
            Err(_) => {
                return Err(Error::Setup(
                    "running the event loop",
                    io::Error::other("a load thread panicked"),
                ))
            }
        }
    }
    let interrupted = shared.stop.load(Ordering::Relaxed);
    Ok(merge(&cfg, &plan, outcomes, interrupted))
}

/// The first SIGINT/SIGTERM stops the run (the figures so far are still
/// reported); a second one quits at once.
fn watch_signals(signals: signal::SignalFd, shared: &Shared, wakers: &[Arc<Waker>]) {
    let mut stopping = false;
    while let Ok(sig) = signals.read() {
        if sig != signal::Signal::Terminate {
            continue;
        }
        if stopping {
            eprintln!("loadgen: interrupted again; quitting without a report");
            std::process::exit(130);
        }
        stopping = true;
        shared.stop.store(true, Ordering::Relaxed);
        for w in wakers {
            let _ = w.wake();
        }
    }
}

/// Waits until every load thread has finished, drawing a progress line
/// once a second when asked to.
fn wait_for_threads(done: &mpsc::Receiver<()>, n: usize, progress: Option<(&Shared, Instant)>) {
    let mut left = n;
    let mut last = (0u64, Instant::now());
    while left > 0 {
        let got = match progress {
            None => done
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(_) => done.recv_timeout(Duration::from_secs(1)),
        };
        match got {
            Ok(()) => left -= 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some((shared, started)) = progress {
                    let sum = |f: fn(&ThreadProgress) -> u64| -> u64 {
                        shared.progress.iter().map(f).sum()
                    };
                    let msgs = sum(|p| p.messages.load(Ordering::Relaxed));
                    let errors = sum(|p| p.errors.load(Ordering::Relaxed));
                    let bytes = sum(|p| p.bytes.load(Ordering::Relaxed));
                    let now = Instant::now();
                    let dt = now.duration_since(last.1).as_secs_f64().max(1e-3);
                    let rate = msgs.saturating_sub(last.0) as f64 / dt;
                    last = (msgs, now);
                    eprint!(
                        "\r\x1b[Kloadgen: {:>5.0} s  {msgs} messages  {rate:.0}/s  {:.1} MiB  {errors} errors",
                        started.elapsed().as_secs_f64(),
                        bytes as f64 / (1 << 20) as f64
                    );
                    let _ = io::stderr().flush();
                }
            }
        }
    }
    if progress.is_some() {
        eprint!("\r\x1b[K");
    }
}

/// Adds up the threads' tallies per target.
fn merge(cfg: &Config, plan: &[Segment], outcomes: Vec<Finished>, interrupted: bool) -> Report {
    let ran = outcomes.iter().map(|o| o.ran).max().unwrap_or_default();
    let mut totals: Vec<Tally> = (0..cfg.targets.len()).map(|_| Tally::new()).collect();
    for o in &outcomes {
        for (t, tally) in totals.iter_mut().zip(&o.tallies) {
            t.merge(tally);
        }
    }
    let mut all = Duration::ZERO;
    let targets = totals
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let measured: Duration = plan
                .iter()
                .filter(|s| s.target == i)
                .map(|s| s.measured_before(ran))
                .sum();
            all += measured;
            TargetReport::new(cfg, cfg.targets[i].0.clone(), t, measured)
        })
        .collect();
    Report {
        version: SCHEMA_VERSION,
        mode: cfg.mode.name(),
        connections: cfg.connections,
        duration_s: (all.as_secs_f64() * 1000.0).round() / 1000.0,
        rate_target: cfg.rate,
        targets,
        bulk_direction: (cfg.mode == Mode::Bulk).then(|| cfg.direction.name()),
        interrupted,
    }
}
