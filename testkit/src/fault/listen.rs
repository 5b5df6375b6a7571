//! The ends that play scripts — a backend that accepts and a client that
//! connects — and the two listeners that misbehave below TCP: none at all
//! (refused) and one whose accept queue is full (SYNs dropped).

use super::{run, Script, Seen};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A listener on 127.0.0.1:0 whose thread hands every connection it
/// accepts to a handler, until dropped.
pub(super) struct Acceptor {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    pub(super) fn spawn(mut handle: impl FnMut(TcpStream) + Send + 'static) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fault listener");
        let addr = listener.local_addr().expect("its address");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => handle(s),
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Acceptor {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A listener on 127.0.0.1:0 that plays a script on every connection it
/// accepts, each on its own thread, and reports what each saw. Stops
/// accepting when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    seen: Receiver<Seen>,
    _acceptor: Acceptor,
}

impl Backend {
    /// `script(i)` is played on the `i`-th connection accepted (from 0).
    pub fn spawn(script: impl Fn(usize) -> Script + Send + 'static) -> Backend {
        let (tx, seen) = mpsc::channel();
        let mut i = 0;
        let acceptor = Acceptor::spawn(move |s| {
            let (sc, tx) = (script(i), tx.clone());
            i += 1;
            thread::spawn(move || {
                let _ = tx.send(run(s, &sc));
            });
        });
        Backend {
            addr: acceptor.addr,
            seen,
            _acceptor: acceptor,
        }
    }

    /// What the next connection to finish its script saw, waiting up to
    /// `wait`. Panics if none finishes in time.
    pub fn seen(&self, wait: Duration) -> Seen {
        self.seen
            .recv_timeout(wait)
            .unwrap_or_else(|e| panic!("no backend connection finished in {wait:?}: {e}"))
    }
}

/// A connection to `addr` that plays a script on its own thread.
pub struct Client {
    /// The client's own address, known once connected.
    pub local: SocketAddr,
    thread: JoinHandle<Seen>,
}

impl Client {
    /// Connects to `addr` (panics if the connect fails) and starts `script`.
    pub fn start(addr: SocketAddr, script: Script) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let local = s.local_addr().expect("client address");
        Client {
            local,
            thread: thread::spawn(move || run(s, &script)),
        }
    }

    /// Waits for the script to end (it is bounded by its `limit`).
    pub fn join(self) -> Seen {
        self.thread.join().expect("the client's thread panicked")
    }
}

/// An address on 127.0.0.1 where nothing listens: a port the kernel just
/// handed out and that was closed again at once, so a connect is refused.
pub fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A listener whose accept queue is full and is never accepted from, so
/// that the kernel drops every further SYN: a connect to it hangs until
/// the connector gives up.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: OwnedFd,
    _fillers: Vec<TcpStream>,
}

impl Blackhole {
    /// `None` when this kernel still completes handshakes to the full queue.
    pub fn new() -> Option<Blackhole> {
        let addr = refusing_addr();
        let opts = netio::sys::socket::ListenOptions {
            backlog: 0,
            reuse_port: false,
        };
        let listener = netio::sys::socket::listen(&addr, opts).expect("listen with a backlog of 0");
        let probe = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(300));
        let fillers: Vec<TcpStream> = (0..3).filter_map(|_| probe(&addr).ok()).collect();
        assert!(!fillers.is_empty(), "could not fill the accept queue");
        if probe(&addr).is_ok() {
            return None;
        }
        Some(Blackhole {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }
}
