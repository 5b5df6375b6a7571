//! Echo mode: a message is `--message-size` bytes of the connection's
//! seeded stream, complete when all of it has come back and been
//! verified. The check of an echoed stream is shared with connect mode and
//! with bulk mode in both directions.

use super::{mismatch, Fail, Lifecycle, Link, Next, Protocol};
use crate::cli::Config;
use crate::stats::ErrorKind;
use crate::table::{Conn, Stream, Target};
use echo_backend::pattern::Pattern;
use std::net::SocketAddr;
use std::sync::Arc;

/// Echo mode's state for one thread.
pub struct Echo {
    pattern: Arc<Pattern>,
    /// `--message-size`.
    msg: u64,
}

impl Protocol for Echo {
    const LIFECYCLE: Lifecycle = Lifecycle::Kept;

    fn new(cfg: &Config, pattern: Arc<Pattern>, _slots: usize) -> Echo {
        Echo {
            pattern,
            msg: cfg.message_size as u64,
        }
    }

    fn start(&mut self, _slot: usize, s: &mut Stream) {
        s.out_end = s.sent + self.msg;
    }

    #[inline]
    fn output(&self, c: &Conn, _t: &Target) -> &[u8] {
        let s = &c.stream;
        if s.sent >= s.out_end {
            return &[];
        }
        let out = self.pattern.slice_at(s.base + s.sent);
        &out[..out.len().min((s.out_end - s.sent) as usize)]
    }

    #[inline]
    fn on_data(&mut self, l: Link<'_>, data: &[u8]) -> Result<Next, Fail> {
        let (c, t) = (l.conn, l.target);
        take_echo(&self.pattern, &mut c.stream, t.addr, data)?;
        if c.measured {
            t.tally.bytes_received += data.len() as u64;
        }
        if c.busy && c.stream.recv == c.stream.out_end {
            return Ok(Next::Complete);
        }
        Ok(Next::More)
    }

    fn on_eof(&mut self, l: Link<'_>) -> Result<Next, Fail> {
        let (c, addr) = (&*l.conn, l.target.addr);
        if c.busy {
            let got = self.msg - (c.stream.out_end - c.stream.recv);
            return Err((
                ErrorKind::Short,
                format!(
                    "{addr} closed the connection after {got} of {} bytes of a reply",
                    self.msg
                ),
            ));
        }
        Err((
            ErrorKind::Other,
            format!("{addr} closed an idle connection"),
        ))
    }
}

/// Checks that `data` continues the echo of what was sent on `s` (from
/// `addr`) and takes it in.
#[inline]
pub fn take_echo(
    pattern: &Pattern,
    s: &mut Stream,
    addr: SocketAddr,
    data: &[u8],
) -> Result<(), Fail> {
    let n = data.len() as u64;
    if s.recv + n > s.sent {
        return Err((
            ErrorKind::Mismatch,
            format!(
                "{addr} echoed {} bytes more than were sent",
                s.recv + n - s.sent
            ),
        ));
    }
    let at0 = s.base + s.recv;
    pattern.verify(at0, data).map_err(|at| {
        let want = pattern.slice_at(at)[0];
        mismatch(addr, at - s.base, want, data[(at - at0) as usize])
    })?;
    s.recv += n;
    Ok(())
}
