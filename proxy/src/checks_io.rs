//! The epoll engine's side of the active health checks: one non-blocking
//! socket per checked backend, registered on the checking worker's own
//! epoll under a side-socket token ([`Token::side_socket`]), driving the
//! engine-free state machine of [`crate::health`]. Only the worker that
//! was given the checks ([`crate::worker::Worker::check_backends`], worker
//! 0) has a [`Checks`]; it writes each result into the backend's shared
//! state, which every worker's balancer reads.
//!
//! With no backend checked there is no deadline, no socket and no system
//! call: an idle proxy still never wakes up.

use crate::backends::{Backends, Live};
use crate::health::{first_round, micros, Change, Check, Done, Failure, Reason, MAX_REPLY};
use crate::stats::Stats;
use netio::sys::epoll::{self, Epoll};
use netio::sys::socket;
use netio::{Errno, Outcome, Token};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The checks one worker runs.
pub struct Checks {
    live: Arc<Live>,
    /// The generation of the backend set `items` was made from.
    generation: u64,
    backends: Arc<Backends>,
    items: Vec<Item>,
    /// The checks' clock (µs) runs from here.
    epoch: Instant,
    /// The last round's number.
    rounds: u32,
    stats: Arc<Stats>,
}

/// One backend's check and its socket during a round.
struct Item {
    backend: u32,
    /// The address it checks: a backend moved to another is checked
    /// afresh.
    addr: std::net::SocketAddr,
    check: Check,
    fd: Option<OwnedFd>,
    /// This round's number among all of this worker's rounds, so that a
    /// late event of an old socket is dropped.
    gen: u32,
}

impl Checks {
    pub fn new(live: Arc<Live>, stats: Arc<Stats>) -> Checks {
        let generation = live.generation();
        let mut checks = Checks {
            backends: live.snapshot(),
            live,
            generation,
            items: Vec::new(),
            epoch: Instant::now(),
            rounds: 0,
            stats,
        };
        checks.rebuild();
        checks
    }

    /// Whether any backend is checked.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// When the checks next need the loop; `None` with none configured.
    pub fn deadline(&self) -> Option<Instant> {
        let us = self.items.iter().map(|it| it.check.deadline()).min()?;
        Some(self.epoch + Duration::from_micros(us))
    }

    /// Takes a new generation of the backend set, if one was published:
    /// a backend whose check settings and address are unchanged keeps its
    /// check (and its count of passes and failures); a new or changed one
    /// starts afresh, spread over its interval.
    pub fn refresh(&mut self) {
        let generation = self.live.generation();
        if generation != self.generation {
            self.generation = generation;
            self.backends = self.live.snapshot();
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let now = self.now_us(Instant::now());
        let mut old: Vec<Option<Item>> = std::mem::take(&mut self.items)
            .into_iter()
            .map(Some)
            .collect();
        type Wanted<'a> = (u32, std::net::SocketAddr, &'a crate::health::CheckSpec);
        let wanted: Vec<Wanted> = self
            .backends
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.removed)
            .filter_map(|(i, e)| e.spec.check.as_ref().map(|c| (i as u32, e.spec.addr, c)))
            .collect();
        let n = wanted.len();
        for (k, (backend, addr, spec)) in wanted.into_iter().enumerate() {
            let same = |it: &Option<Item>| {
                it.as_ref().is_some_and(|it| {
                    it.backend == backend && it.addr == addr && it.check.spec == *spec
                })
            };
            let kept = old
                .iter()
                .position(same)
                .and_then(|at| Some((at, old[at].take()?)));
            let item = match kept {
                Some((at, mut item)) => {
                    // A round under way has its socket's token at its old
                    // place: it is dropped, and the next starts on time.
                    if at != k && item.fd.is_some() {
                        self.close(&mut item);
                        item.check.abandon();
                    }
                    item
                }
                None => Item {
                    backend,
                    addr,
                    check: Check::new(spec.clone(), now + first_round(spec.interval, k, n)),
                    fd: None,
                    gen: 0,
                },
            };
            self.items.push(item);
        }
        for mut gone in old.into_iter().flatten() {
            self.close(&mut gone);
        }
        if self.items.len() > netio::token::SIDE_SLOTS {
            netio::log!(
                "proxy: warning: only the first {} backends are health-checked",
                netio::token::SIDE_SLOTS
            );
            self.items.truncate(netio::token::SIDE_SLOTS);
        }
    }

    fn now_us(&self, now: Instant) -> u64 {
        micros(now.saturating_duration_since(self.epoch))
    }

    /// Ends the rounds past their timeout and starts those due at `now`.
    pub fn run(&mut self, now: Instant, ep: &Epoll) {
        let t = self.now_us(now);
        for k in 0..self.items.len() {
            if let Some(done) = self.items[k].check.tick(t) {
                self.finish(k, done);
            }
            if self.items[k].check.begin(t) {
                // A backend in maintenance is not checked (HAProxy's
                // `maint`): the round is skipped, its rhythm kept.
                let b = self.items[k].backend;
                if self.backends.admin(b) == crate::backends::Admin::Maint {
                    self.items[k].check.abandon();
                } else {
                    self.start(k, t, ep);
                }
            }
        }
    }

    /// An event for side socket `tok`.
    pub fn on_event(&mut self, k: usize, tok: Token, bits: u32) {
        let Some(item) = self.items.get(k) else {
            return;
        };
        if item.gen != tok.gen || item.fd.is_none() {
            return;
        }
        let t = self.now_us(Instant::now());
        self.drive(k, t, bits);
    }

    /// Connects round `k`'s socket.
    fn start(&mut self, k: usize, t: u64, ep: &Epoll) {
        let stats = Arc::clone(&self.stats);
        let addr = self.backends.addr(self.items[k].backend);
        self.rounds = self.rounds.wrapping_add(1);
        let item = &mut self.items[k];
        item.gen = self.rounds;
        stats.sys_connect.add(2);
        let (fd, done) = match socket::connect(&addr) {
            Ok(c) => c,
            Err(e) => {
                stats.sys_close.inc();
                let failed = item.check.failed(t, connect_failure(&e));
                return self.finish_opt(k, failed);
            }
        };
        stats.sys_epoll_ctl.inc();
        let token = Token::side_socket(k, item.gen).encode();
        if let Err(e) = ep.add(&fd, epoll::SOCKET, token) {
            stats.sys_close.inc();
            let failed = item.check.failed(t, Failure::Io(netio::outcome::fault(&e)));
            return self.finish_opt(k, failed);
        }
        item.fd = Some(fd);
        if done {
            self.drive(k, t, epoll::OUT);
        }
    }

    /// Moves round `k` on as far as its socket allows after `bits`.
    fn drive(&mut self, k: usize, t: u64, bits: u32) {
        let stats = &*self.stats;
        let item = &mut self.items[k];
        let Some(fd) = item.fd.as_ref() else {
            return;
        };
        let mut done = None;
        if item.check.phase() == crate::health::Phase::Connecting {
            if bits & (epoll::OUT | epoll::ERR | epoll::HUP) == 0 {
                return;
            }
            stats.sys_sockopt.inc();
            done = match socket::take_error(fd) {
                Ok(None) => item.check.connected(t),
                Ok(Some(e)) | Err(e) => item.check.failed(t, connect_failure(&e)),
            };
        }
        while done.is_none() {
            let send = item.check.to_send();
            if !send.is_empty() {
                stats.sys_write.inc();
                done = match Outcome::of(socket::write(fd, send)) {
                    Outcome::Data(n) => item.check.sent(t, n),
                    Outcome::WouldBlock => break,
                    Outcome::Eof => item.check.closed(t),
                    o => item.check.failed(t, io_failure(o)),
                };
                continue;
            }
            let room = item.check.wants_read();
            if room == 0 {
                break;
            }
            let mut buf = [0u8; MAX_REPLY];
            stats.sys_read.inc();
            done = match Outcome::of(socket::read(fd, &mut buf[..room])) {
                Outcome::Data(n) => item.check.received(t, &buf[..n]),
                Outcome::WouldBlock => break,
                Outcome::Eof => item.check.closed(t),
                o => item.check.failed(t, io_failure(o)),
            };
        }
        self.finish_opt(k, done);
    }

    fn finish_opt(&mut self, k: usize, done: Option<Done>) {
        if let Some(done) = done {
            self.finish(k, done);
        }
    }

    /// Closes round `k`'s socket and records and logs its result.
    fn finish(&mut self, k: usize, done: Done) {
        let mut fd = self.items[k].fd.take();
        self.close_fd(&mut fd);
        let it = &self.items[k];
        let passed = done.failure.is_none();
        let tally = it.check.tally();
        self.backends.record_check(
            it.backend,
            passed,
            done.latency_us,
            tally.run().0,
            !tally.is_up(),
        );
        self.stats.checks.inc();
        if !passed {
            self.stats.check_failures.inc();
        }
        let who = label(&self.backends, it.backend);
        let times = |n: u32| {
            if n == 1 {
                "1 time".to_string()
            } else {
                format!("{n} times")
            }
        };
        match (done.change, &done.failure) {
            (Some(Change::Down { fails, first }), Some(why)) => netio::log!(
                "proxy: backend {who} is down: check failed {}{}: {}",
                times(fails),
                if first {
                    " before any passed"
                } else {
                    " in a row"
                },
                Reason(why, it.check.spec.expect.as_ref())
            ),
            (Some(Change::Up { passes }), _) => netio::log!(
                "proxy: backend {who} is up: check passed {} in a row",
                times(passes)
            ),
            _ => {}
        }
    }

    /// Ends `item`'s round under way, if any.
    fn close(&self, item: &mut Item) {
        self.close_fd(&mut item.fd);
    }

    /// Closes a check's socket with a reset rather than a FIN: a check
    /// every few seconds (or a round a reload drops) would otherwise
    /// leave a FIN_WAIT or TIME_WAIT socket behind each time.
    fn close_fd(&self, fd: &mut Option<OwnedFd>) {
        if let Some(fd) = fd.take() {
            self.stats.sys_sockopt.inc();
            let _ = socket::set_linger_zero(&fd);
            self.stats.sys_close.inc();
            drop(fd);
        }
    }
}

/// `NAME (ADDR)`, or the address alone when it is the name.
fn label(b: &Backends, i: u32) -> String {
    let (name, addr) = (b.name(i), b.addr(i));
    if name == addr.to_string() {
        name.to_string()
    } else {
        format!("{name} ({addr})")
    }
}

fn connect_failure(e: &std::io::Error) -> Failure {
    Failure::Connect(Errno::of(e).fault())
}

fn io_failure(o: Outcome) -> Failure {
    match o {
        Outcome::Error(errno) => Failure::Io(errno.fault()),
        _ => Failure::Io(netio::Fault::Reset),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{BackendSpec, Health};
    use crate::config::Balance;
    use crate::health::CheckSpec;
    use std::net::SocketAddr;

    fn checked(port: u16, rise: u32) -> BackendSpec {
        BackendSpec {
            check: Some(CheckSpec {
                rise,
                ..CheckSpec::default()
            }),
            ..BackendSpec::plain(SocketAddr::from(([127, 0, 0, 1], port)))
        }
    }

    #[test]
    fn a_new_backend_set_keeps_unchanged_checks_and_spreads_new_ones() {
        let specs = vec![
            checked(1, 2),
            BackendSpec::plain(([127, 0, 0, 1], 2).into()),
            checked(3, 2),
        ];
        let live = Live::new(Backends::new(
            specs.clone(),
            Health::default(),
            Balance::RoundRobin,
        ));
        let mut checks = Checks::new(Arc::clone(&live), Arc::default());
        let backends: Vec<u32> = checks.items.iter().map(|it| it.backend).collect();
        assert_eq!(backends, [0, 2], "only checked backends");
        let firsts: Vec<u64> = checks.items.iter().map(|it| it.check.deadline()).collect();
        assert!(
            firsts[1] - firsts[0] >= 900_000,
            "spread over the 2s interval: {firsts:?}"
        );
        checks.items[0].check.begin(u64::MAX / 2);
        // The first changes its rise, the second stays, a fourth is new.
        let next = vec![
            checked(1, 5),
            specs[1].clone(),
            checked(3, 2),
            checked(4, 2),
        ];
        live.publish(|cur| cur.next(next, Health::default(), Balance::RoundRobin));
        let kept_deadline = checks.items[1].check.deadline();
        checks.refresh();
        let backends: Vec<u32> = checks.items.iter().map(|it| it.backend).collect();
        assert_eq!(backends, [0, 2, 3]);
        assert_eq!(checks.items[0].check.spec.rise, 5);
        assert_eq!(
            checks.items[0].check.phase(),
            crate::health::Phase::Idle,
            "started afresh"
        );
        assert_eq!(
            checks.items[1].check.deadline(),
            kept_deadline,
            "kept as it was"
        );
        // With no backend checked there is nothing to wake up for.
        live.publish(|cur| {
            cur.next(
                vec![specs[1].clone()],
                Health::default(),
                Balance::RoundRobin,
            )
        });
        checks.refresh();
        assert!(checks.is_empty());
        assert_eq!(checks.deadline(), None);
    }
}
