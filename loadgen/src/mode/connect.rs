//! Connect mode: each message is a whole connection — open, one echo
//! exchange of `--message-size` bytes (none if 0), close — for
//! connections per second. The exchange is echo mode's.

use super::echo::Echo;
use super::{Fail, Kick, Lifecycle, Link, Next, Protocol};
use crate::cli::Config;
use crate::table::{Conn, Stage, Stream, Target};
use echo_backend::pattern::Pattern;
use std::sync::Arc;

/// Connect mode's state for one thread.
pub struct Connect {
    echo: Echo,
    /// `--message-size`.
    msg: u64,
}

impl Protocol for Connect {
    const LIFECYCLE: Lifecycle = Lifecycle::PerMessage;

    fn new(cfg: &Config, pattern: Arc<Pattern>, slots: usize) -> Connect {
        Connect {
            echo: Echo::new(cfg, pattern, slots),
            msg: cfg.message_size as u64,
        }
    }

    /// A free connection that is not waiting out a pause after an error
    /// starts its next message, which opens it; an open one is busy with
    /// its message and moves its bytes.
    fn kick(&self, c: &Conn) -> Kick {
        match c.stage {
            Stage::Closed if !c.in_queue && !c.busy => Kick::Start,
            Stage::Open => Kick::Pump,
            _ => Kick::Nothing,
        }
    }

    fn start(&mut self, _slot: usize, s: &mut Stream) {
        s.sent = 0;
        s.recv = 0;
        s.out_end = self.msg;
    }

    fn done_at_open(&self) -> bool {
        self.msg == 0
    }

    #[inline]
    fn output(&self, c: &Conn, t: &Target) -> &[u8] {
        self.echo.output(c, t)
    }

    #[inline]
    fn on_data(&mut self, l: Link<'_>, data: &[u8]) -> Result<Next, Fail> {
        self.echo.on_data(l, data)
    }

    fn on_eof(&mut self, l: Link<'_>) -> Result<Next, Fail> {
        self.echo.on_eof(l)
    }
}
