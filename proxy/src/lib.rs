//! A layer-4 TCP proxy: one edge-triggered epoll loop per worker over a
//! fixed table of client/backend pairs.
//!
//! Where things live:
//! - [`worker`]: the loop; [`accept`]: taking clients in (access lists,
//!   limits, out of descriptors); [`sockets`]: the real sockets and pipes,
//!   every system call counted. These three are the epoll engine.
//! - [`table`]: the pairs between events — opening, events, pumping,
//!   settling a batch, closing; [`conn`]: one pair and its stages;
//!   [`relay`]: one direction's rules, written against a small I/O trait.
//! - [`pool`] and [`pipes`]: the buffers and pipes lent to directions in
//!   flight; [`backends`]: the backend set every worker shares, in
//!   generations; [`balance`]: choosing a backend; [`timers`]: connect and idle
//!   timeouts, the drain, busy polling; [`acl`], [`proxy_protocol`].
//! - [`admin`]: the admin socket, changing backends at runtime.
//! - [`health`]: the active health checks' state machine, engine-free,
//!   and [`pattern`], the regex subset their replies are matched with;
//!   [`checks_io`]: their sockets on the epoll engine.
//! - [`config`]: the command line and config file ([`config_file`]),
//!   every size checked at start ([`sizes`]); [`reload`]: SIGHUP, and
//!   [`settings`], what it changes for every worker; [`resolver`]: backend
//!   host names looked up again; [`stats`] and
//!   [`metrics`]: the counters and their endpoint.
//! - `fuzz`: the fuzz targets as plain functions (`fuzz/` runs them).

pub mod accept;
pub mod acl;
pub mod admin;
pub mod backends;
pub mod balance;
pub mod checks_io;
pub mod config;
pub mod config_file;
pub mod conn;
pub mod engine;
#[doc(hidden)]
pub mod fuzz;
pub mod health;
pub mod metrics;
pub mod pattern;
pub mod pipes;
pub mod pool;
pub mod proxy_protocol;
pub mod relay;
pub mod reload;
pub mod resolver;
// Also built by the `fuzzing` feature, for `fuzz/`'s relay_model target.
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(test), allow(dead_code))]
mod relay_model;
pub mod settings;
pub mod sizes;
pub mod sockets;
pub mod stats;
pub mod table;
pub mod timers;
pub mod uring;
pub mod worker;
