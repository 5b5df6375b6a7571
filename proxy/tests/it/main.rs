//! The proxy's end-to-end tests, one binary: the real `proxy` on
//! 127.0.0.1 port 0 in front of backends that behave and misbehave, real
//! bytes through real sockets. One behaviour a test; helpers in `util`.

mod access;
mod accounting;
mod admin;
mod bad_input;
mod cli;
mod dns;
mod exhaustion;
mod failover;
mod failover_reset;
mod faults;
mod half_close;
mod health;
mod lifecycle;
mod limits;
mod limits_backend;
mod metrics;
mod proxy_protocol;
mod relay;
mod reload;
mod reset_flush;
mod resets;
mod rig;
mod signals;
mod timeouts;
mod util;
mod weights;
