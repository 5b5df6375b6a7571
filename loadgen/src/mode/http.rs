//! HTTP mode: a message is one keep-alive `GET --http-path`, complete
//! when its response has been read to its end ([`crate::http`]) with a
//! good status. A server that closes after a response (HTTP/1.0, or
//! `Connection: close`) is re-opened, which is not an error.

use super::{Fail, Lifecycle, Link, Next, Protocol};
use crate::cli::Config;
use crate::http::{self, Progress, Response};
use crate::stats::ErrorKind;
use crate::table::{Conn, Stream, Target};
use echo_backend::pattern::Pattern;
use std::sync::Arc;

/// HTTP mode's state for one thread.
pub struct Http {
    /// The request for each target (its `Host` differs).
    requests: Vec<Vec<u8>>,
    /// One response reader per connection.
    responses: Vec<Response>,
}

impl Protocol for Http {
    const LIFECYCLE: Lifecycle = Lifecycle::Kept;

    fn new(cfg: &Config, _pattern: Arc<Pattern>, slots: usize) -> Http {
        Http {
            requests: cfg
                .targets
                .iter()
                .map(|(host, _)| http::request(host, &cfg.http_path))
                .collect(),
            responses: (0..slots).map(|_| Response::new()).collect(),
        }
    }

    fn start(&mut self, slot: usize, s: &mut Stream) {
        s.sent = 0;
        self.responses[slot].reset();
    }

    #[inline]
    fn output(&self, c: &Conn, _t: &Target) -> &[u8] {
        let request = &self.requests[c.group as usize];
        match request.get(c.stream.sent as usize..) {
            Some(rest) if c.busy => rest,
            _ => &[],
        }
    }

    #[inline]
    fn on_data(&mut self, l: Link<'_>, data: &[u8]) -> Result<Next, Fail> {
        let (c, t) = (l.conn, l.target);
        let n = data.len() as u64;
        if !c.busy {
            return Err((
                ErrorKind::Mismatch,
                format!("{} sent {n} bytes nobody asked for", t.addr),
            ));
        }
        if c.measured {
            t.tally.bytes_received += n;
        }
        let progress = self.responses[l.slot].feed(data).map_err(|e| {
            (
                ErrorKind::Mismatch,
                format!("bad HTTP response from {}: {e}", t.addr),
            )
        })?;
        Ok(match progress {
            Progress::More => Next::More,
            Progress::Done => Next::Complete,
            Progress::DoneClose => Next::CompleteAndReopen,
        })
    }

    fn on_eof(&mut self, l: Link<'_>) -> Result<Next, Fail> {
        if !l.conn.busy {
            // A keep-alive connection closed between requests.
            return Ok(Next::Reopen);
        }
        if self.responses[l.slot].eof() {
            return Ok(Next::CompleteAndReopen);
        }
        Err((
            ErrorKind::Short,
            format!(
                "{} closed the connection in the middle of a response",
                l.target.addr
            ),
        ))
    }
}
