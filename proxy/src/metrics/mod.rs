//! The `/metrics` endpoint: the workers' counters as Prometheus text,
//! served by a small non-blocking HTTP server on its own thread, so that
//! no client of it can hold up a scrape or touch the relay's timing.
//!
//! [`route`] maps a request's method and path to a response: the one
//! place to hang more routes on. [`server`] is the loop (many connections
//! at once, each bounded in size and time, no wake-ups while none is
//! open); [`http`] is the little HTTP it speaks.

pub mod http;
pub mod server;

use crate::stats::Snapshot;
use crate::worker::Control;
use http::{Request, Response, Status};
use server::{Http, Limits, Server};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// The content type of Prometheus's text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// The endpoint on `listener` (bound, non-blocking), reading the counters
/// of `controls`' workers; call [`Server::run`] on its thread.
pub fn endpoint(
    listener: OwnedFd,
    controls: Vec<Arc<Control>>,
) -> io::Result<Server<Http<impl Fn(&Request<'_>) -> Response + Send>>> {
    Server::new(
        listener,
        Http(move |req: &Request<'_>| route(req, &controls)),
        Limits::default(),
    )
}

/// Answers one request: `GET` (or `HEAD`) `/metrics` or `/` gets the
/// counters, another method 405, another path 404.
pub fn route(req: &Request<'_>, controls: &[Arc<Control>]) -> Response {
    match req.path {
        "/metrics" | "/" => match req.method {
            "GET" | "HEAD" => {
                let snap = Snapshot::total(controls.iter().map(|c| &*c.stats));
                Response::ok(PROMETHEUS, snap.prometheus())
            }
            _ => Response::not_allowed("GET, HEAD"),
        },
        _ => Response::error(Status::NotFound, "not found; try /metrics"),
    }
}
