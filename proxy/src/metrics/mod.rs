//! The `/metrics` endpoint: the workers' counters and the per-backend
//! series as Prometheus text, and the backends' listing (`/backends`,
//! `/backends.json`), served by a small non-blocking HTTP server on its
//! own thread, so that no client of it can hold up a scrape or touch the
//! relay's timing. Nothing here changes anything: changes go through the
//! admin socket ([`crate::admin`]) alone.
//!
//! [`route`] maps a request's method and path to a response: the one
//! place to hang more routes on. [`server`] is the loop (many connections
//! at once, each bounded in size and time, no wake-ups while none is
//! open); [`http`] is the little HTTP it speaks; [`backends`] renders the
//! backends.

pub mod backends;
pub mod http;
pub mod server;

use crate::backends::Live;
use crate::stats::Snapshot;
use crate::worker::Control;
use http::{Request, Response, Status};
use server::{Http, Limits, Server};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;

/// The content type of Prometheus's text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// The content type of the backends' listing.
const TEXT: &str = "text/plain; charset=utf-8";

/// The endpoint on `listener` (bound, non-blocking), reading the counters
/// of `controls`' workers and the backends of `live`; call
/// [`Server::run`] on its thread.
pub fn endpoint(
    listener: OwnedFd,
    controls: Vec<Arc<Control>>,
    live: Arc<Live>,
) -> io::Result<Server<Http<impl Fn(&Request<'_>) -> Response + Send>>> {
    Server::new(
        listener,
        Http(move |req: &Request<'_>| route(req, &controls, &live)),
        Limits::default(),
    )
}

/// Answers one request: `GET` (or `HEAD`) `/metrics` or `/` gets the
/// counters and the per-backend series, `/backends` the backends' listing
/// as text, `/backends.json` as JSON; another method 405, another path
/// 404.
pub fn route(req: &Request<'_>, controls: &[Arc<Control>], live: &Live) -> Response {
    if !matches!(req.path, "/metrics" | "/" | "/backends" | "/backends.json") {
        let msg = "not found; try /metrics, /backends or /backends.json";
        return Response::error(Status::NotFound, msg);
    }
    if !matches!(req.method, "GET" | "HEAD") {
        return Response::not_allowed("GET, HEAD");
    }
    let set = live.snapshot();
    match req.path {
        "/backends" => Response::ok(TEXT, backends::listing(&set)),
        "/backends.json" => Response::ok(JSON, backends::json(&set)),
        _ => {
            let snap = Snapshot::total(controls.iter().map(|c| &*c.stats));
            let mut text = snap.prometheus();
            text.push_str(&backends::prometheus(&set));
            Response::ok(PROMETHEUS, text)
        }
    }
}

/// The content type of `/backends.json`.
const JSON: &str = "application/json";
