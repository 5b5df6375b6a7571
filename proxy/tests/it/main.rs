//! The proxy's end-to-end tests, one binary: the real `proxy` on
//! 127.0.0.1 port 0 in front of backends that behave and misbehave, real
//! bytes through real sockets. One behaviour a test; helpers in `util`.

mod access;
mod accounting;
mod cli;
mod exhaustion;
mod faults;
mod half_close;
mod lifecycle;
mod limits;
mod proxy_protocol;
mod relay;
mod resets;
mod rig;
mod timeouts;
mod util;
