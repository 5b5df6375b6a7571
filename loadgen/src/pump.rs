//! Moving bytes on one open connection: write what the mode offers, read
//! until `EAGAIN`, hand what arrived to the mode, and act on what it says.
//! A connection that is still busy after [`FAIR_ROUNDS`] stops to let the
//! others have a turn and is queued to go on after this batch of events.

use crate::engine::Worker;
use crate::mode::{Fail, Link, Next, Protocol};
use crate::stats::ErrorKind;
use crate::table::Stage;
use netio::sys::socket;
use netio::Outcome;
use std::io;

/// Reads and writes one connection may do in a row before others get a turn.
pub const FAIR_ROUNDS: u32 = 64;
/// Writes in a row within one round.
const WRITES: u32 = 16;

/// Why pumping a connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// Nothing more can move until an event (or the connection is not open).
    Blocked,
    /// It stopped only to be fair: pump it again soon.
    Yield,
}

/// A read's or write's result: what [`Ready`](netio::Ready) needs, or the
/// failure with its error (kept for the message; [`ErrorKind::of`] is the
/// one classification).
fn outcome(res: io::Result<usize>) -> Result<Outcome, io::Error> {
    match res {
        Ok(n) => Ok(Outcome::of(Ok(n))),
        Err(e) => match Outcome::of_error(&e) {
            o if o.failed() => Err(e),
            o => Ok(o),
        },
    }
}

impl<P: Protocol> Worker<P> {
    /// Moves whatever can move on `slot`: writes what is pending, reads
    /// until `EAGAIN`, verifies, completes and starts messages.
    pub(crate) fn pump(&mut self, slot: usize) {
        let res = self.pump_rounds(slot);
        self.pumped(slot, res);
    }

    /// Acts on how pumping `slot` ended: a connection that yielded is
    /// queued (once) for the next turn, a failure is counted.
    pub(crate) fn pumped(&mut self, slot: usize, res: Result<Pump, Fail>) {
        match res {
            Ok(Pump::Yield) => self.again.push(slot as u32, self.conns[slot].gen),
            Ok(Pump::Blocked) => {}
            Err((kind, what)) => self.fail(slot, kind, what),
        }
    }

    fn pump_rounds(&mut self, slot: usize) -> Result<Pump, Fail> {
        for _ in 0..FAIR_ROUNDS {
            if self.conns[slot].stage != Stage::Open {
                return Ok(Pump::Blocked);
            }
            self.write_out(slot)?;
            let c = &self.conns[slot];
            if c.stage != Stage::Open {
                return Ok(Pump::Blocked);
            }
            let t = &self.targets[c.group as usize];
            if c.abort && self.proto.output(c, t).is_empty() {
                self.abort(slot);
                return Ok(Pump::Blocked);
            }
            if c.ready.readable && self.proto.may_read(t) {
                self.read_once(slot)?;
                continue;
            }
            if !c.ready.writable || self.proto.output(c, t).is_empty() {
                return Ok(Pump::Blocked);
            }
        }
        Ok(Pump::Yield)
    }

    /// Pumps the connections that yielded last turn (if still the same
    /// connection and open).
    pub(crate) fn run_again(&mut self) {
        let list = self.again.take();
        for &(slot, gen) in &list {
            let c = &self.conns[slot as usize];
            if c.gen == gen && c.stage == Stage::Open {
                self.pump(slot as usize);
            }
        }
        self.again.recycle(list);
    }

    /// Writes pending bytes until done or the socket is full.
    fn write_out(&mut self, slot: usize) -> Result<(), Fail> {
        for _ in 0..WRITES {
            let c = &mut self.conns[slot];
            let t = &mut self.targets[c.group as usize];
            if !c.ready.writable {
                return Ok(());
            }
            let buf = self.proto.output(c, t);
            if buf.is_empty() {
                return Ok(());
            }
            let counts = self.proto.counts(c, t, self.now);
            let Some(fd) = c.fd.as_ref() else {
                return Ok(());
            };
            let offered = buf.len();
            let got = outcome(socket::write(fd, buf))
                .map_err(|e| (ErrorKind::of(&e), format!("write to {}: {e}", t.addr)))?;
            c.ready.after_write(got, offered);
            match got {
                Outcome::Data(n) => {
                    c.stream.sent += n as u64;
                    self.done_sent += n as u64;
                    if counts {
                        t.tally.bytes_sent += n as u64;
                    }
                    if n < offered {
                        return Ok(());
                    }
                }
                // A write that took nothing: wait for the next edge.
                _ => {
                    c.ready.writable = false;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// One read into the scratch buffer, then its bytes checked.
    fn read_once(&mut self, slot: usize) -> Result<(), Fail> {
        let c = &mut self.conns[slot];
        let Some(fd) = c.fd.as_ref() else {
            return Ok(());
        };
        let t = &mut self.targets[c.group as usize];
        let got = outcome(socket::read(fd, &mut self.scratch))
            .map_err(|e| (ErrorKind::of(&e), format!("read from {}: {e}", t.addr)))?;
        c.ready.after_read(got, self.scratch.len());
        let link = Link {
            slot,
            conn: c,
            target: t,
            now: self.now,
        };
        let next = match got {
            Outcome::Data(n) => {
                self.done_received += n as u64;
                self.proto.on_data(link, &self.scratch[..n])?
            }
            Outcome::Eof => self.proto.on_eof(link)?,
            _ => Next::More,
        };
        self.follow(slot, next);
        Ok(())
    }

    /// Does what the mode said a read came to.
    fn follow(&mut self, slot: usize, next: Next) {
        match next {
            Next::More => {}
            Next::Complete => self.complete(slot),
            Next::CompleteAndReopen => {
                self.close(slot);
                self.complete(slot);
                self.queue_connect(slot, self.now);
            }
            Next::Reopen => {
                self.close(slot);
                self.queue_connect(slot, self.now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Cli};
    use crate::engine::Setup;
    use crate::mode::echo::Echo;
    use crate::shared::Shared;
    use clap::Parser;
    use echo_backend::pattern::Pattern;
    use netio::sys::epoll::Waker;
    use std::sync::Arc;

    fn worker(connections: &str) -> Worker<Echo> {
        let args = ["loadgen", "--target", "127.0.0.1:9", "-c", connections];
        let cfg = cli::resolve(Cli::try_parse_from(args).expect("args")).expect("config");
        Worker::new(Setup {
            cfg: Arc::new(cfg),
            plan: Arc::new(Vec::new()),
            shared: Arc::new(Shared::new(1)),
            thread: 0,
            waker: Arc::new(Waker::new().expect("waker")),
            pattern: Arc::new(Pattern::new(1)),
            notes: std::sync::mpsc::channel().0,
        })
        .expect("worker")
    }

    /// The defect: a connection pumped twice in one turn (a tick's kick,
    /// then last turn's run-again, then its event) that yielded each time
    /// was queued each time, and so pumped that many times in a row next
    /// turn, taking turns from the others.
    #[test]
    fn a_connection_that_yields_twice_in_a_turn_is_queued_once() {
        let mut w = worker("3");
        w.pumped(1, Ok(Pump::Yield));
        w.pumped(2, Ok(Pump::Yield));
        w.pumped(1, Ok(Pump::Yield));
        w.pumped(1, Ok(Pump::Blocked));
        let gen = w.conns[1].gen;
        let turn = w.again.take();
        assert_eq!(turn, vec![(1, gen), (2, w.conns[2].gen)]);
        // Yielding again while this turn's list is worked through: the
        // next turn, once more.
        w.pumped(1, Ok(Pump::Yield));
        w.pumped(1, Ok(Pump::Yield));
        w.again.recycle(turn);
        assert_eq!(w.again.take(), vec![(1, gen)]);
        assert!(w.again.is_empty());
    }

    #[test]
    fn a_connection_closed_since_it_yielded_is_not_pumped() {
        let mut w = worker("1");
        w.pumped(0, Ok(Pump::Yield));
        w.close(0);
        w.run_again();
        assert!(w.again.is_empty(), "nothing was pumped, nothing re-queued");
        w.pumped(0, Err((ErrorKind::Reset, "reset".into())));
        assert_eq!(w.targets[0].tally.errors.reset, 1, "a failure is counted");
    }
}
