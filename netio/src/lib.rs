//! The event-loop toolkit that the proxy, echo-backend and loadgen share.
//!
//! [`sys`] is the only module of the workspace that calls `libc`: epoll,
//! sockets, pipes and splice, signalfd, rlimits. Above it sits what every
//! edge-triggered loop here needs, written once:
//!
//! - [`token`]: the `u64` an epoll event carries — slot, generation and
//!   side — so that a stale event for a closed, reused slot is dropped;
//! - [`ready`]: what epoll said about a socket, remembered until `EAGAIN`;
//! - [`outcome`]: one result type for reads and writes, and the one errno
//!   classifier;
//! - [`again`]: the de-duplicating "run again" queue for fairness;
//! - [`serve`]: N `SO_REUSEPORT` workers, the signalfd and the drain;
//! - [`cli`]: command-line plumbing and the duration syntax;
//! - [`log`]: the log, which a bad stderr can neither stall nor kill;
//! - [`budget`]: how many connections a descriptor limit allows.

pub mod again;
pub mod budget;
pub mod cli;
pub mod log;
pub mod mem;
pub mod outcome;
pub mod ready;
pub mod serve;
pub mod sys;
pub mod token;

pub use outcome::{Errno, Fault, Outcome};
pub use ready::Ready;
pub use token::{Side, Source, Token};
