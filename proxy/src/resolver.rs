//! Backend host names looked up again every `--resolve-interval`, on one
//! thread of their own (a lookup blocks; the workers never do), started
//! only once some backend is given by name: with none, there is no thread
//! and no wake-up.
//!
//! The system resolver (getaddrinfo) tells no TTL, so none is used: every
//! name is looked up at the interval, and a backend takes the first
//! address the resolver returns. A new address is published as a new
//! generation of the backend set ([`Backends::readdressed`]), through
//! [`Live::publish`] like a reload, so that neither undoes the other; the
//! backend keeps its name, its index and its state, and the pairs open to
//! the old address go on. A failed lookup keeps the last good address and
//! is logged once until the name resolves again.

use crate::backends::{Backends, Live};
use crate::settings::{Published, Settings};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::Instant;

/// The resolver thread, once started.
pub struct Resolver {
    backends: Arc<Live>,
    settings: Arc<Published<Settings>>,
    thread: Option<Thread>,
}

impl Resolver {
    pub fn new(backends: Arc<Live>, settings: Arc<Published<Settings>>) -> Resolver {
        Resolver {
            backends,
            settings,
            thread: None,
        }
    }

    /// Makes the thread follow the current backends and settings:
    /// starts it if some backend has a host name and it is not running,
    /// else wakes it to look at them (it sleeps for good while no backend
    /// has a name, or the interval is zero).
    pub fn follow(&mut self) -> io::Result<()> {
        if let Some(t) = &self.thread {
            t.unpark();
            return Ok(());
        }
        if hosts(&self.backends.snapshot()).is_empty() {
            return Ok(());
        }
        let (backends, settings) = (Arc::clone(&self.backends), Arc::clone(&self.settings));
        let handle = thread::Builder::new()
            .name("resolver".into())
            .spawn(move || run(&backends, &settings))?;
        self.thread = Some(handle.thread().clone());
        Ok(())
    }
}

/// The backends given by name, not removed: name, `HOST:PORT`, address.
fn hosts(b: &Backends) -> Vec<(String, String, SocketAddr)> {
    b.entries()
        .iter()
        .filter(|e| !e.removed)
        .filter_map(|e| {
            let host = e.spec.host.clone()?;
            Some((e.spec.name.clone(), host, e.spec.addr))
        })
        .collect()
}

/// The thread: a round of lookups every interval, for ever.
fn run(backends: &Live, settings: &Published<Settings>) {
    // Names whose last lookup failed (logged once until they resolve).
    let mut failing = HashSet::new();
    let mut last = Instant::now();
    loop {
        let interval = settings.snapshot().0.resolve_interval;
        if interval.is_zero() || hosts(&backends.snapshot()).is_empty() {
            // Until a reload changes that (it unparks this thread).
            thread::park();
            continue;
        }
        let now = Instant::now();
        let due = last + interval;
        if now < due {
            // Woken early by a reload: the interval may have changed.
            thread::park_timeout(due - now);
            continue;
        }
        round(backends, &mut failing);
        last = Instant::now();
    }
}

/// Looks every name up once, publishing each new address.
fn round(backends: &Live, failing: &mut HashSet<String>) {
    for (name, host, was) in hosts(&backends.snapshot()) {
        match lookup(&host) {
            Ok(addr) => {
                if failing.remove(&name) {
                    netio::log!("proxy: backend {name} resolves again, to {addr}");
                }
                if addr != was {
                    backends.publish(|cur| cur.readdressed(&name, addr));
                    netio::log!("proxy: backend {name} now resolves to {addr} (was {was})");
                }
            }
            Err(e) => {
                if failing.insert(name.clone()) {
                    netio::log!("proxy: backend {name}: {e}; keeping {was}");
                }
            }
        }
    }
}

/// The address of `HOST:PORT`, as at start.
fn lookup(host_port: &str) -> Result<SocketAddr, String> {
    let (host, port) = host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse().ok()?)))
        .ok_or_else(|| format!("\"{host_port}\" is not HOST:PORT"))?;
    crate::config::lookup(host, port)
}
