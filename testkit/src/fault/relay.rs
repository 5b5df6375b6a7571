//! A fault-injecting TCP forwarder: it sits between two parties (say the
//! proxy and its backend) and passes each direction on in random segments,
//! with jitter and a bandwidth cap, or cuts the connection with resets
//! after a number of bytes. A FIN is passed on as a FIN, a reset as a
//! reset. Threads and blocking sockets; every read has a timeout.

use super::listen::Acceptor;
use super::peer::Rng;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the relay does to one direction of the stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Seed of the segment sizes and the jitter.
    pub seed: u64,
    /// Random segments of 1 to this many bytes; 0 passes on what was read.
    pub max_segment: usize,
    /// Random wait before each segment, up to this much.
    pub jitter: Duration,
    /// At most this many bytes a second (0: no cap).
    pub rate: u64,
    /// After passing on this many bytes, resets both connections.
    pub cut_after: Option<usize>,
}

/// A relay on 127.0.0.1:0 in front of `upstream`. Stops accepting when
/// dropped; connections under way end when either party ends them or
/// after `limit`.
pub struct Relay {
    pub addr: SocketAddr,
    _acceptor: Acceptor,
}

impl Relay {
    /// `to_upstream` shapes what the accepted party sends, `to_downstream`
    /// what upstream sends back.
    pub fn start(
        upstream: SocketAddr,
        to_upstream: Shape,
        to_downstream: Shape,
        limit: Duration,
    ) -> Relay {
        let acceptor = Acceptor::spawn(move |down| {
            let Ok(up) = TcpStream::connect(upstream) else {
                return cut(&down, &down, &AtomicBool::new(false));
            };
            let (down, up) = (Arc::new(down), Arc::new(up));
            let cut = Arc::new(AtomicBool::new(false));
            for (from, to, shape) in [
                (Arc::clone(&down), Arc::clone(&up), to_upstream),
                (Arc::clone(&up), Arc::clone(&down), to_downstream),
            ] {
                let cut = Arc::clone(&cut);
                thread::spawn(move || pass(&from, &to, shape, &cut, limit));
            }
        });
        Relay {
            addr: acceptor.addr,
            _acceptor: acceptor,
        }
    }
}

/// Passes one direction on until its FIN (passed on as a FIN), a reset or
/// error (both connections reset), the cut, or `limit`.
fn pass(from: &TcpStream, to: &TcpStream, shape: Shape, cutting: &AtomicBool, limit: Duration) {
    let start = Instant::now();
    let mut rng = Rng::new(shape.seed);
    let mut buf = vec![0u8; 64 << 10];
    let mut passed = 0usize;
    let _ = from.set_read_timeout(Some(limit));
    loop {
        let mut len = buf.len();
        if shape.max_segment > 0 {
            len = 1 + rng.below(shape.max_segment as u64) as usize;
        }
        if let Some(at) = shape.cut_after {
            len = len.min(at - passed);
        }
        let n = match (&*from).read(&mut buf[..len.max(1)]) {
            // The other direction's cut wakes this read with an EOF that
            // must not be passed on as a FIN.
            Ok(_) if cutting.load(Ordering::SeqCst) => return,
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return cut(from, to, cutting),
        };
        thread::sleep(Duration::from_micros(
            rng.below(shape.jitter.as_micros() as u64 + 1),
        ));
        if let Some(us) = (passed as u64 * 1_000_000).checked_div(shape.rate) {
            let due = start + Duration::from_micros(us);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if (&*to).write_all(&buf[..n]).is_err() || start.elapsed() > limit {
            return cut(from, to, cutting);
        }
        passed += n;
        if shape.cut_after == Some(passed) {
            return cut(from, to, cutting);
        }
    }
}

/// Resets both connections: `SO_LINGER` 0 on each, and both directions
/// shut so that the other direction's thread wakes up and lets go; the
/// last close of each socket sends the reset.
fn cut(a: &TcpStream, b: &TcpStream, cutting: &AtomicBool) {
    cutting.store(true, Ordering::SeqCst);
    for s in [a, b] {
        let _ = netio::sys::socket::set_linger_zero(s);
        let _ = s.shutdown(Shutdown::Read);
    }
}
