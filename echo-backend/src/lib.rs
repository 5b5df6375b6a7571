//! The workbench's backend: echo, HTTP, sink and source servers on the
//! proxy crate's edge-triggered epoll layer.

pub mod http;
pub mod pattern;
pub mod server;
