//! A client/backend pair: its stage, the two sockets' readiness, the two
//! directions ([`Flow`]s), and what is kept for timeouts and logs.
//!
//! The descriptors themselves belong to the I/O driver (see
//! [`crate::sockets`]), so that the rules here can be driven through fake
//! sockets in tests.

use crate::relay::Flow;
use netio::Ready;
pub use netio::Side;
use std::net::SocketAddr;
use std::time::Instant;

/// Where a pair is in its life:
/// `Free → Connecting → Relaying → Closing(reason) → Free`, or straight
/// from `Connecting` to `Closing` when the backend fails; a client that
/// finds every backend at its limit starts `Queued` and goes on to
/// `Connecting` when one has room (or to `Closing` at its queue timeout). A pair one of
/// whose sides has reset stays open while it delivers to the other side
/// what it had already received ([`Conn::reset`]), then closes with the
/// reset passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The slot is unused.
    Free,
    /// Waiting for a backend with room: there is no backend socket yet;
    /// client bytes may be read and held.
    Queued,
    /// The backend connect is in progress; client bytes may be read and
    /// held, but nothing moves to or from the backend.
    Connecting,
    /// Both sockets are open and bytes flow both ways.
    Relaying,
    /// Queued to be closed at the end of this batch of events.
    Closing(Reason),
}

impl Stage {
    /// Whether the pair is open (queued, connecting or relaying).
    #[inline]
    pub fn is_open(self) -> bool {
        matches!(self, Stage::Queued | Stage::Connecting | Stage::Relaying)
    }
}

/// Why a pair is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Both directions ended normally.
    Done,
    /// The backend connect failed.
    Refused,
    /// A reset or I/O error on this side.
    Error(Side),
    /// The drain timeout ran out at shutdown.
    Drain,
    /// The backend connect took longer than `--connect-timeout`.
    ConnectTimeout,
    /// No event on either socket for `--idle-timeout`.
    Idle,
    /// It waited in the queue for `--queue-timeout`.
    QueueTimeout,
    /// This side reset, and the other did not take what was owed to it
    /// within `--reset-flush-timeout`.
    FlushTimeout(Side),
}

impl Reason {
    /// For the connection log.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Done => "done",
            Reason::Refused => "backend refused",
            Reason::Error(Side::Client) => "client error",
            Reason::Error(Side::Backend) => "backend error",
            Reason::Drain => "drain timeout",
            Reason::ConnectTimeout => "backend connect timed out",
            Reason::Idle => "idle timeout",
            Reason::QueueTimeout => "queue timeout, no backend had room",
            Reason::FlushTimeout(Side::Client) => "client reset; backend too slow to take the rest",
            Reason::FlushTimeout(Side::Backend) => {
                "backend reset; client too slow to take the rest"
            }
        }
    }
}

/// One slot of the connection table.
#[derive(Debug)]
pub struct Conn {
    /// Bumped on every close: events carrying an older one are stale.
    pub gen: u32,
    pub stage: Stage,
    /// Readiness of the client and backend sockets, by [`Side::index`].
    pub ready: [Ready; 2],
    /// Client → backend, then backend → client.
    pub flows: [Flow; 2],
    /// Queued in the waiters for a free buffer.
    pub waiting: bool,
    /// The backend it was sent to (an index into the backends).
    pub backend: u32,
    /// It is counted in that backend's active connections (not while
    /// queued).
    pub counted: bool,
    /// The backends tried for it (a set), and how many tries so far.
    pub tried: crate::balance::Tried,
    pub tries: u32,
    /// The length of the PROXY header that goes to the backend first (0
    /// without `--proxy-protocol`): the bytes written to a backend that
    /// are not the client's.
    pub header: u8,
    /// Its backend's failures in a row before this pair's connect to it
    /// succeeded (and cleared them): restored if the backend then resets
    /// before any byte, so that such a backend still reaches `--fall`.
    pub prior_fails: u32,
    /// Worker clock (ms) when the pair opened, and of its last event:
    /// kept only when a connect or idle timeout is set.
    pub opened_ms: u32,
    pub active_ms: u32,
    /// The client's address, for logs.
    pub peer: Option<SocketAddr>,
    /// When it opened, with `--log-connections`.
    pub started: Option<Instant>,
    /// The side that reset (or failed), while the pair delivers what it
    /// had received from it to the other side before passing the reset on.
    pub reset: Option<Side>,
    /// Worker clock (ms) when that side reset.
    pub reset_ms: u32,
    /// Once both directions are done: when to look again whether the other
    /// side's kernel has everything (ms), and the back-off step.
    pub poll_ms: u32,
    pub poll_step: u32,
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            gen: 0,
            stage: Stage::Free,
            ready: [Ready::default(); 2],
            flows: [Flow::new(Side::Client), Flow::new(Side::Backend)],
            waiting: false,
            backend: 0,
            counted: false,
            tried: 0,
            tries: 0,
            header: 0,
            prior_fails: 0,
            opened_ms: 0,
            active_ms: 0,
            peer: None,
            started: None,
            reset: None,
            reset_ms: 0,
            poll_ms: 0,
            poll_step: 0,
        }
    }

    /// The direction whose source is `side`.
    #[inline]
    pub fn flow(&self, from: Side) -> &Flow {
        &self.flows[from.index()]
    }

    /// Whether both directions have passed their FIN on.
    pub fn both_ended(&self) -> bool {
        self.flows.iter().all(|f| f.fin_sent)
    }

    /// Which sockets get a reset rather than a FIN when the pair closes
    /// for `reason`: any that is owed bytes it will now never get, so that
    /// a cut stream never looks complete, and the other side of one that
    /// reset, whatever ends the pair: the reset is passed on.
    pub fn aborts(&self, reason: Reason) -> [bool; 2] {
        let mut abort = [false; 2];
        if let Some(side) = self.reset {
            abort[side.other().index()] = true;
        }
        match reason {
            Reason::Done => {}
            Reason::Error(side) | Reason::FlushTimeout(side) => abort[side.other().index()] = true,
            Reason::Refused | Reason::QueueTimeout => abort[Side::Client.index()] = true,
            // The connect may have completed unseen, with client bytes
            // held for the backend: it must not see a clean, empty stream.
            Reason::ConnectTimeout => abort = [true, true],
            Reason::Drain | Reason::Idle => {
                for f in &self.flows {
                    let r = self.ready[f.from.index()];
                    let owed = f.hold.held() > 0 || (r.readable && !f.eof);
                    abort[f.from.other().index()] |= owed;
                }
            }
        }
        abort
    }
}

impl Default for Conn {
    fn default() -> Conn {
        Conn::new()
    }
}
