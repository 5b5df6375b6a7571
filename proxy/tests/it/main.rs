//! The proxy's end-to-end tests, one binary: the real `proxy` on
//! 127.0.0.1 port 0 in front of backends that behave and misbehave, real
//! bytes through real sockets. One behaviour a test; helpers in `util`.
//! The same modules make `tests/it_uring`: this binary runs every test
//! against the epoll engine, that one against io_uring (`util::ENGINE`);
//! the modules are visible to the crate's root so that one can use them.

pub(crate) mod access;
pub(crate) mod accounting;
pub(crate) mod admin;
pub(crate) mod bad_input;
pub(crate) mod cli;
pub(crate) mod dns;
pub(crate) mod engine;
pub(crate) mod exhaustion;
pub(crate) mod failover;
pub(crate) mod failover_reset;
pub(crate) mod faults;
pub(crate) mod half_close;
pub(crate) mod health;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub(crate) mod limits_backend;
pub(crate) mod metrics;
pub(crate) mod proxy_protocol;
pub(crate) mod relay;
pub(crate) mod reload;
pub(crate) mod reset_flush;
pub(crate) mod resets;
pub(crate) mod rig;
pub(crate) mod signals;
pub(crate) mod timeouts;
pub(crate) mod util;
pub(crate) mod weights;
