//! Runs a checked [`Config`]: starts the load threads, turns Ctrl-C into
//! an orderly stop, shows progress on a terminal, and merges what the
//! threads counted into a [`Report`].

use crate::cli::{Config, Mode};
use crate::collect::{Collected, Collector};
use crate::engine::Setup;
use crate::hlog::Hlog;
use crate::machine::{self, Sampler};
use crate::mode;
use crate::plan::{self, Segment};
use crate::progress::{Progress, Style};
use crate::report::{Report, TargetReport, SCHEMA_VERSION};
use crate::shared::{Finished, Note, Shared};
use echo_backend::pattern::Pattern;
use netio::serve;
use netio::sys::epoll::Waker;
use netio::sys::signal;
use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// Descriptors kept back for stdio, epoll, wakers and the signalfd.
const FD_HEADROOM: u64 = 64;
/// Runs planned longer than this get a progress line (on a terminal).
const PROGRESS_AFTER: Duration = Duration::from_secs(3);
/// How often the running thread looks whether the timetable has started.
const START_POLL: Duration = Duration::from_millis(5);

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

    // Opened before any load, so that a FILE that cannot be written
    // fails the run at once.
    let hlog = match &cfg.hlog {
        Some(path) => Some(
            Hlog::create(path, cfg.targets.iter().map(|t| t.0.clone()).collect())
                .map_err(Error::Config)?,
        ),
        None => None,
    };
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
    let (notes_tx, notes_rx) = mpsc::channel::<Note>();
    for i in 0..cfg.threads {
        let waker = Arc::new(Waker::new().map_err(|e| Error::Setup("creating a waker", e))?);
        let w = mode::worker(Setup {
            cfg: Arc::clone(&cfg),
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            thread: i,
            waker: Arc::clone(&waker),
            pattern: Arc::clone(&pattern),
            notes: notes_tx.clone(),
        })
        .map_err(|e| Error::Setup("creating a load thread", e))?;
        wakers.push(waker);
        workers.push(w);
    }

    let mut handles = Vec::with_capacity(workers.len());
    for (i, w) in workers.into_iter().enumerate() {
        let tx = notes_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || {
                let out = w.run();
                let _ = tx.send(Note::Done);
                out
            })
            .map_err(|e| Error::Setup("starting a load thread", e))?;
        handles.push(h);
    }
    drop(notes_tx);
    {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || watch_signals(signals, &shared, &wakers))
            .map_err(|e| Error::Setup("starting the signal thread", e))?;
    }

    let style = if cfg.progress {
        Some(Style::Machine)
    } else {
        (io::stderr().is_terminal() && plan::total(&plan) > PROGRESS_AFTER).then_some(Style::Human)
    };
    let progress = style.map(|s| {
        let targets = cfg.targets.iter().map(|t| t.0.as_str()).collect();
        Progress::new(s, &shared, &plan, targets)
    });
    let intervals = plan::intervals(&plan);
    let mut sampler = Sampler::new(&intervals);
    let mut collector = Collector::new(intervals.clone(), cfg.threads, cfg.targets.len(), hlog);
    wait_for_threads(
        &notes_rx,
        handles.len(),
        &mut collector,
        progress,
        &shared,
        &mut sampler,
    );
    let machine = sampler.finish(&intervals, machine::read_busy);

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
    let mut collected = collector.finish(&plan, &machine);
    if let Some(h) = collected.hlog.take() {
        let started = shared.started().map_or_else(SystemTime::now, |at| {
            SystemTime::now()
                .checked_sub(at.elapsed())
                .unwrap_or_else(SystemTime::now)
        });
        h.write(started)
            .map_err(|e| Error::Setup("writing the interval log", io::Error::other(e)))?;
    }
    Ok(merge(&cfg, &plan, &outcomes, &collected, interrupted))
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

/// Waits until every load thread has finished, taking their cuts,
/// sampling the machine's CPU at every interval boundary and drawing a
/// progress line once a second when asked to.
fn wait_for_threads(
    notes: &mpsc::Receiver<Note>,
    n: usize,
    collector: &mut Collector,
    mut progress: Option<Progress<'_>>,
    shared: &Shared,
    sampler: &mut Sampler,
) {
    let mut left = n;
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    while left > 0 {
        let started = shared.started();
        if let Some(at) = started {
            sampler.sample_due(at.elapsed(), machine::read_busy);
        }
        // Until the timetable starts, look for its start often enough
        // that the first boundary is sampled on time.
        let boundary = match started {
            Some(at) => sampler.next_due().map(|d| at + d),
            None => Some(Instant::now() + START_POLL),
        };
        let tick = progress.as_ref().map(|_| next_tick);
        let got = match boundary.into_iter().chain(tick).min() {
            None => notes
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => notes.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(Note::Cut(c)) => collector.add(*c),
            Ok(Note::Done) => left -= 1,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(p) = progress.as_mut() {
            if Instant::now() >= next_tick {
                p.tick();
                next_tick += Duration::from_secs(1);
            }
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
}

/// The report from what the threads counted.
fn merge(
    cfg: &Config,
    plan: &[Segment],
    outcomes: &[Finished],
    collected: &Collected,
    interrupted: bool,
) -> Report {
    let ran = outcomes.iter().map(|o| o.ran).max().unwrap_or_default();
    let mut all = Duration::ZERO;
    let targets = collected
        .totals
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let measured: Duration = plan
                .iter()
                .filter(|s| s.target == i)
                .map(|s| s.measured_before(ran))
                .sum();
            all += measured;
            let rounds = collected.rounds_of(i, cfg.mode, cfg.message_size);
            let machine = collected.machine[i];
            TargetReport::new(cfg, cfg.targets[i].0.clone(), t, measured, rounds, machine)
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
