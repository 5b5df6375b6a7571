//! echo-backend's end-to-end tests, one binary: each module starts the
//! real `echo-backend` on 127.0.0.1 port 0 and pushes real bytes.

mod cli;
mod echo;
mod http;
mod limits;
mod modes;
mod util;
