//! What each `--mode` does with a connection, behind the one
//! [`Protocol`] trait the engine calls: when a message may start, what to
//! write next, what bytes read and the peer's FIN mean, and which bytes
//! count. The engine ([`crate::engine`]) owns sockets, readiness, the
//! timetable and the tallies' bookkeeping, and never asks which mode runs.
//!
//! - [`echo`]: a message is `--message-size` bytes, complete when its whole
//!   echo has arrived and been verified;
//! - [`http`]: a message is one keep-alive `GET`, complete when its
//!   response has been read to its end;
//! - [`bulk`]: no messages, a verified stream for throughput;
//! - [`connect`]: a message is a whole connection with one echo exchange.

pub mod bulk;
pub mod connect;
pub mod echo;
pub mod http;

use crate::cli::{Config, Mode};
use crate::engine::{Setup, Worker};
use crate::shared::Finished;
use crate::stats::ErrorKind;
use crate::table::{Conn, Stage, Stream, Target};
use echo_backend::pattern::Pattern;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A failure to count: its kind and a description built only when it
/// happens.
pub type Fail = (ErrorKind, String);

/// How a mode's connections live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Opened once while setting up (paced at `--connect-rate`) and kept
    /// for many messages; re-opened after an error or a server's close.
    Kept,
    /// Opened when a message starts and closed when it completes: each
    /// message is a whole connection. Not opened while setting up, and not
    /// paced, since these connects are the load.
    PerMessage,
}

/// What the engine does for a connection when something changed for it
/// (it opened, a message came due, a window began).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    Nothing,
    /// Move whatever bytes can move.
    Pump,
    /// Start a message (with a connection per message, that opens it).
    Start,
    /// Start a message, then move bytes.
    StartAndPump,
}

/// What a read (or the peer's FIN) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Carry on.
    More,
    /// The outstanding message is complete and verified.
    Complete,
    /// The message is complete and the server closes after it: close and
    /// re-open (not an error).
    CompleteAndReopen,
    /// The server closed between messages: re-open (not an error).
    Reopen,
}

/// One connection as a mode sees it while it handles its bytes.
pub struct Link<'a> {
    pub slot: usize,
    pub conn: &'a mut Conn,
    pub target: &'a mut Target,
    pub now: Instant,
}

/// What one mode does. The engine is generic over it, so every call is
/// static and the loop's per-message cost is what it was with the modes
/// inline.
pub trait Protocol: Sized + Send + 'static {
    /// How this mode's connections live.
    const LIFECYCLE: Lifecycle;

    /// The mode's state for a thread with `slots` connections.
    fn new(cfg: &Config, pattern: Arc<Pattern>, slots: usize) -> Self;

    /// What to do for `c` now that something changed for it. By default
    /// (echo, http): start a message on a free open connection, then move
    /// its bytes.
    fn kick(&self, c: &Conn) -> Kick {
        match c.stage {
            Stage::Open if !c.busy => Kick::StartAndPump,
            _ => Kick::Nothing,
        }
    }

    /// A message is starting on `slot`: note what it will send and expect.
    fn start(&mut self, slot: usize, s: &mut Stream);

    /// Whether the message that started as the connection opened is
    /// already complete (an exchange of nothing).
    fn done_at_open(&self) -> bool {
        false
    }

    /// Whether bytes moved on `c` now count in the tally. By default: if
    /// its message counts.
    #[inline]
    fn counts(&self, c: &Conn, _t: &Target, _now: Instant) -> bool {
        c.measured
    }

    /// Whether to read from `t`'s connections now.
    #[inline]
    fn may_read(&self, _t: &Target) -> bool {
        true
    }

    /// The bytes to write next on `c`; empty when there are none.
    fn output(&self, c: &Conn, t: &Target) -> &[u8];

    /// Checks bytes that just arrived.
    fn on_data(&mut self, l: Link<'_>, data: &[u8]) -> Result<Next, Fail>;

    /// The peer closed its side.
    fn on_eof(&mut self, l: Link<'_>) -> Result<Next, Fail>;
}

/// A load thread, whichever its mode.
pub trait Load: Send {
    /// Sets up the connections, waits for the other threads, then follows
    /// the timetable until it ends or the run is stopped.
    fn run(self: Box<Self>) -> io::Result<Finished>;
}

impl<P: Protocol> Load for Worker<P> {
    fn run(self: Box<Self>) -> io::Result<Finished> {
        Worker::run(*self)
    }
}

/// Builds a load thread for `cfg.mode`: the one place that picks a
/// mode's [`Protocol`].
pub fn worker(setup: Setup) -> io::Result<Box<dyn Load>> {
    fn boxed<P: Protocol>(setup: Setup) -> io::Result<Box<dyn Load>> {
        Ok(Box::new(Worker::<P>::new(setup)?))
    }
    match setup.cfg.mode {
        Mode::Echo => boxed::<echo::Echo>(setup),
        Mode::Http => boxed::<http::Http>(setup),
        Mode::Bulk => boxed::<bulk::Bulk>(setup),
        Mode::Connect => boxed::<connect::Connect>(setup),
    }
}

/// Describes a verification failure at offset `at` of a connection's stream.
pub fn mismatch(addr: SocketAddr, at: u64, want: u8, got: u8) -> Fail {
    (
        ErrorKind::Mismatch,
        format!("{addr}: byte {at} of a connection's stream differs: expected {want:#04x}, got {got:#04x}"),
    )
}
