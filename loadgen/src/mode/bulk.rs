//! Bulk mode: no messages, a stream for throughput — up (to a sink), down
//! (from a source, verified against `--seed`) or both (the connection's
//! own stream, its echo verified). Bytes count while the target's
//! measured window is on; `--message-size` is only the unit the report
//! counts in.

use super::echo::take_echo;
use super::{mismatch, Fail, Kick, Lifecycle, Link, Next, Protocol};
use crate::cli::{Config, Direction};
use crate::stats::ErrorKind;
use crate::table::{Conn, Stage, Stream, Target};
use echo_backend::pattern::Pattern;
use std::sync::Arc;
use std::time::Instant;

/// The most one write hands the kernel.
const BULK_WRITE: usize = 256 * 1024;

/// Bulk mode's state for one thread.
pub struct Bulk {
    pattern: Arc<Pattern>,
    direction: Direction,
}

impl Protocol for Bulk {
    const LIFECYCLE: Lifecycle = Lifecycle::Kept;

    fn new(cfg: &Config, pattern: Arc<Pattern>, _slots: usize) -> Bulk {
        Bulk {
            pattern,
            direction: cfg.direction,
        }
    }

    /// No message ever starts: an open connection just streams.
    fn kick(&self, c: &Conn) -> Kick {
        match c.stage {
            Stage::Open => Kick::Pump,
            _ => Kick::Nothing,
        }
    }

    fn start(&mut self, _slot: usize, _s: &mut Stream) {}

    #[inline]
    fn counts(&self, _c: &Conn, t: &Target, now: Instant) -> bool {
        t.measuring(now)
    }

    /// A download stops reading outside its windows: backpressure pauses
    /// the source instead of loading the machine.
    #[inline]
    fn may_read(&self, t: &Target) -> bool {
        self.direction != Direction::Down || t.issuing
    }

    #[inline]
    fn output(&self, c: &Conn, t: &Target) -> &[u8] {
        if self.direction == Direction::Down || !t.issuing {
            return &[];
        }
        let out = self.pattern.slice_at(c.stream.base + c.stream.sent);
        &out[..out.len().min(BULK_WRITE)]
    }

    #[inline]
    fn on_data(&mut self, l: Link<'_>, data: &[u8]) -> Result<Next, Fail> {
        let counts = self.counts(l.conn, l.target, l.now);
        let (s, t) = (&mut l.conn.stream, l.target);
        let n = data.len() as u64;
        match self.direction {
            Direction::Up => {
                return Err((
                    ErrorKind::Mismatch,
                    format!("{} sent {n} bytes to an upload", t.addr),
                ))
            }
            Direction::Down => {
                // The source's stream starts at offset 0 of the pattern.
                let at0 = s.recv;
                self.pattern.verify(at0, data).map_err(|at| {
                    let want = self.pattern.slice_at(at)[0];
                    mismatch(t.addr, at, want, data[(at - at0) as usize])
                })?;
                s.recv += n;
            }
            Direction::Both => take_echo(&self.pattern, s, t.addr, data)?,
        }
        if counts {
            t.tally.bytes_received += n;
        }
        Ok(Next::More)
    }

    fn on_eof(&mut self, l: Link<'_>) -> Result<Next, Fail> {
        Err((
            ErrorKind::Short,
            format!(
                "{} closed the stream after {} bytes",
                l.target.addr, l.conn.stream.recv
            ),
        ))
    }
}
