//! A layer-4 TCP proxy built on an edge-triggered epoll loop.
//!
//! The crate is both the `proxy` binary's engine and a small library that
//! the workbench companions reuse: [`sys`] is the only module that touches
//! `libc`, [`pool`] lends fixed buffers, and [`server`] runs the relay.

pub mod acl;
pub mod config;
pub mod metrics;
pub mod pool;
pub mod proxy_protocol;
pub mod stats;
pub mod worker;
