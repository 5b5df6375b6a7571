//! The workbench's backend: echo, HTTP, sink and source servers, one
//! edge-triggered epoll loop per worker, built on netio.
//!
//! [`server`] is the loop (accepting, the table, the run-again turn),
//! `conn` one connection's reads and writes, `modes` what each mode does
//! with them, [`http`] the http mode's request framing, [`pattern`] the
//! stream source mode writes.

mod conn;
pub mod http;
mod modes;
pub mod pattern;
pub mod server;
