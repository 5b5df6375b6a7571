//! One worker: the edge-triggered epoll loop around a [`Table`] of pairs.
//!
//! Each turn: wait for events (as long as [`Timers`] allows), hand each to
//! its owner — the listener to [`crate::accept`], a socket's edge to the
//! table (stale ones are dropped by generation) — resume the pairs that
//! stopped to be fair, then settle the batch: close what ended, hand freed
//! buffers to waiting pairs, and accept again if slots came free. Every
//! socket is registered once, for `IN|OUT|RDHUP|ET`, and never modified.
//!
//! The loop is written once against [`Engine`]: epoll
//! ([`crate::sockets::SysSockets`]) or io_uring ([`crate::uring`]) feed it
//! events and own the sockets; the table, the relay, the pools, balancing,
//! the access lists, the timers' rules and the PROXY header do not depend
//! on which.

use crate::accept::Accepting;
use crate::backends::Live;
use crate::balance::Balancer;
use crate::checks_io::Checks;
use crate::config::Config;
use crate::conn::Reason;
use crate::engine::{Engine, Event};
use crate::pipes::PipePool;
use crate::pool::{Pool, Pools};
use crate::settings::{Published, Settings};
use crate::sockets::SysSockets;
use crate::stats::Stats;
use crate::table::Table;
use crate::timers::Timers;
use netio::sys::epoll::Waker;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Events handled per turn, at most (an engine may report more).
const MAX_EVENTS: usize = 256;

/// How the outside world talks to a running worker.
#[derive(Debug)]
pub struct Control {
    waker: Waker,
    stop: AtomicBool,
    /// This worker's counters.
    pub stats: Arc<Stats>,
}

impl Control {
    /// Wakes the worker, to look at a new generation of the settings.
    pub fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }
}

impl netio::serve::Stop for Control {
    /// Asks the worker to stop accepting and drain.
    fn stop(&self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        self.waker.wake()
    }
}

/// One event loop with its listener, table and sockets, on engine `E`.
pub struct Worker<E: Engine = SysSockets> {
    /// Taken (closed) when the drain starts.
    pub(crate) listener: Option<OwnedFd>,
    pub(crate) control: Arc<Control>,
    pub(crate) table: Table,
    pub(crate) sockets: E,
    pub(crate) accepting: Accepting,
    timers: Timers,
    /// The backends' active health checks, on the one worker that runs
    /// them ([`Worker::check_backends`]).
    checks: Option<Checks>,
    /// The settings a reload changes, and the generation applied.
    settings: Arc<Published<Settings>>,
    settings_seen: u64,
}

impl<E: Engine> Worker<E> {
    /// Builds a worker for `capacity` pairs around an already bound
    /// listener. Everything is allocated here, so the relay allocates
    /// nothing. Fails if `cfg` gives fewer than two buffers a pair. What
    /// a reload may change comes from `settings`, and is followed.
    pub fn new(
        cfg: &Config,
        backends: &Arc<Live>,
        settings: &Arc<Published<Settings>>,
        listener: OwnedFd,
        capacity: usize,
    ) -> io::Result<Worker<E>> {
        // Table slots and the side sockets (health checks) share the
        // token space; a table this large could not get its descriptors.
        if capacity > netio::token::FIRST_SIDE_SLOT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{capacity} connections a worker is more than a worker can hold"),
            ));
        }
        let stats = Arc::new(Stats::default());
        let control = Arc::new(Control {
            waker: Waker::new()?,
            stop: AtomicBool::new(false),
            stats: Arc::clone(&stats),
        });
        let mut sockets = E::new(cfg, capacity, Arc::clone(&stats))?;
        sockets.watch(&listener, &control.waker)?;
        let bufs = Pools::new(
            Pool::try_new(cfg.buffers, cfg.buffer_size, false)?,
            Pool::try_new(cfg.large_buffers, cfg.large_buffer_size, true)?,
        );
        let (pipes, pipe_size) = sockets.pipes();
        let (now, settings_seen) = settings.snapshot();
        let table = Table::new(
            capacity,
            bufs,
            PipePool::new(pipes, pipe_size),
            Balancer::new(Arc::clone(backends)),
            now.table_options(capacity),
            Arc::clone(&stats),
        )?;
        Ok(Worker {
            listener: Some(listener),
            control,
            table,
            sockets,
            accepting: Accepting::new(now.acl.clone()),
            timers: Timers::new(&now),
            settings: Arc::clone(settings),
            settings_seen,
            checks: None,
        })
    }

    /// Makes this worker the one that runs the backends' active health
    /// checks (one worker checks, every worker reads the results from the
    /// backends' shared state). With no backend checked it costs nothing:
    /// no timer, no socket.
    pub fn check_backends(&mut self, backends: &Arc<Live>) {
        let stats = Arc::clone(&self.control.stats);
        self.checks = Some(Checks::new(Arc::clone(backends), stats));
    }

    /// When the health checks next need the loop.
    fn checks_due(&self) -> Option<Instant> {
        self.checks.as_ref().and_then(Checks::deadline)
    }

    /// The handle for signalling and reading this worker.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// Runs until shut down and drained. Returns an error only if epoll
    /// itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Vec::with_capacity(MAX_EVENTS);
        loop {
            let wake = [self.accepting.retry(), self.checks_due()];
            let timeout = self
                .timers
                .timeout_ms(&self.table, wake.into_iter().flatten().min());
            let n = self.sockets.wait(timeout, &mut events)?;
            if self.settings.changed(self.settings_seen) {
                self.apply_settings();
            }
            self.timers.after_wait(n, &mut self.table);
            for event in events.drain(..) {
                match event {
                    Event::Listener => self.accept_all(),
                    Event::Accepted(got) => {
                        self.on_accepted(got);
                    }
                    Event::Control => self.on_control(),
                    Event::Socket(t, bits) => match (t.side_index(), self.checks.as_mut()) {
                        (Some(k), Some(checks)) => checks.on_event(k, t, bits),
                        (Some(_), None) => {}
                        (None, _) => self.table.on_event(&mut self.sockets, t, bits),
                    },
                }
            }
            self.table.run_again(&mut self.sockets);
            self.settle();
            let now = Instant::now();
            if self.accepting.retry().is_some_and(|t| now >= t) {
                self.resume_accept();
                self.settle();
            }
            if self.checks_due().is_some_and(|t| now >= t) {
                if let Some(checks) = self.checks.as_mut() {
                    checks.refresh();
                    checks.run(now, self.sockets.side());
                }
            }
            if self.timers.sweep(now, &mut self.table, &mut self.sockets) {
                self.settle();
            }
            if self.timers.removed_due(now) {
                self.table.close_removed();
                self.settle();
            }
            if self.timers.flush_due(now, &mut self.table) {
                self.table.check_flushing(&mut self.sockets);
                self.settle();
            }
            if self.timers.queue_due(now, &mut self.table) {
                self.settle();
            }
            if let Some(deadline) = self.timers.drain_deadline {
                if self.table.active() == 0 {
                    self.sockets.finish(deadline);
                    return Ok(());
                }
                if now >= deadline {
                    self.table.close_all(Reason::Drain);
                    self.settle();
                    self.sockets.finish(now);
                    return Ok(());
                }
            }
        }
    }

    /// Takes the new generation of the settings (a reload): new clients
    /// get them, and the pairs still open to a backend the reload removed
    /// get `drain-timeout` to finish.
    fn apply_settings(&mut self) {
        let (s, seen) = self.settings.snapshot();
        self.settings_seen = seen;
        self.accepting.acl = s.acl.clone();
        let kept = self.timers.keeps_clock(&self.table);
        self.table
            .set_options(s.table_options(self.table.capacity()));
        self.timers.apply(&s);
        if !kept && self.timers.keeps_clock(&self.table) {
            self.timers.restart_clock(&mut self.table);
        }
        if self.table.serves_removed() {
            self.timers.removed_deadline = Some(Instant::now() + s.drain_timeout);
        }
    }

    fn on_control(&mut self) {
        self.control.waker.drain();
        // A new backend set may check backends that were not: whoever
        // publishes one wakes the workers.
        if let Some(checks) = self.checks.as_mut() {
            checks.refresh();
        }
        if self.control.stop.load(Ordering::Acquire) && self.timers.drain_deadline.is_none() {
            // Closing the listener deregisters it and refuses new clients.
            if let Some(listener) = self.listener.take() {
                self.control.stats.sys_close.inc();
                self.sockets.unlisten(listener);
            }
            self.timers.start_drain(Instant::now());
        }
    }

    /// Closes what the batch ended, hands freed buffers to waiting pairs,
    /// and resumes accepting once a slot is free; repeats until nothing
    /// changes.
    /// Clients waiting in the queue are served (or timed out) in between,
    /// since a close may have made room on a backend.
    fn settle(&mut self) {
        loop {
            while self.table.settle(&mut self.sockets) {
                // A close freed a slot and two descriptors: try the backlog again.
                if self.accepting.paused && self.table.has_free() {
                    self.resume_accept();
                }
            }
            if self.table.queued() == 0 || !self.table.serve_queue(&mut self.sockets) {
                break;
            }
        }
        if let (Some(listener), false) = (self.listener.as_ref(), self.accepting.paused) {
            self.sockets.accept_more(listener, self.table.free_slots());
        }
        self.table.publish();
    }
}

impl<E: Engine + Send + 'static> netio::serve::Worker for Worker<E> {
    type Control = Control;
    fn control(&self) -> Arc<Control> {
        Worker::control(self)
    }
    fn run(self) -> io::Result<()> {
        Worker::run(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_worker_with_too_few_buffers_for_its_connections_is_refused() {
        let cli = crate::config::Cli::try_parse_from(["proxy", "--max-connections", "4"])
            .expect("command line");
        let cfg = crate::config::resolve(cli, 1024).expect("config");
        let listen = || {
            let opts = netio::sys::socket::ListenOptions {
                backlog: 1,
                reuse_port: false,
            };
            netio::sys::socket::listen(&"127.0.0.1:0".parse().expect("addr"), opts).expect("listen")
        };
        let backends = Live::new(cfg.backend_set());
        let settings = Published::new(Settings::of(&cfg));
        assert!(Worker::<SysSockets>::new(&cfg, &backends, &settings, listen(), 4).is_ok());
        let e = Worker::<SysSockets>::new(&cfg, &backends, &settings, listen(), 5)
            .err()
            .expect("8 buffers for 5 connections");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
