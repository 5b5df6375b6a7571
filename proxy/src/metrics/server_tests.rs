//! The server loop on real sockets in this process, with routes and
//! limits the proxy's endpoint does not have: responses larger than the
//! socket buffers, short deadlines, two slots.

use super::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// How long any wait here may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);
/// A body larger than loopback's send and receive buffers together, so
/// that writing it takes many partial writes.
const BIG: usize = 16 << 20;

/// Starts a server holding up to `connections` for `deadline` each, on
/// its own thread (it lives as long as the test process): `/big` gets
/// [`BIG`] bytes of a pattern, anything else a small body.
fn start(connections: usize, deadline: Duration) -> SocketAddr {
    let limits = Limits {
        connections,
        deadline,
        ..Limits::default()
    };
    let opts = socket::ListenOptions {
        backlog: 64,
        reuse_port: false,
    };
    let addr = "127.0.0.1:0".parse().expect("address");
    let listener = socket::listen(&addr, opts).expect("listen");
    let addr = socket::local_addr(&listener).expect("local address");
    let big = testkit::pattern(9, BIG);
    let route = move |req: &Request<'_>| match req.path {
        "/big" => Response::ok("application/octet-stream", big.clone()),
        _ => Response::ok("text/plain", "small\n"),
    };
    let server = Server::new(listener, Http(route), limits).expect("server");
    std::thread::spawn(move || server.run());
    addr
}

fn get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = testkit::connect(addr, WAIT);
    write!(s, "GET {path} HTTP/1.1\r\n\r\n").expect("request");
    s
}

/// A request for [`BIG`] whose response is never read: its connection
/// stays busy being answered.
fn slow_big(addr: SocketAddr) -> TcpStream {
    let s = get(addr, "/big");
    // Wait until the server has started answering (it then fills our
    // receive buffer and blocks).
    std::thread::sleep(Duration::from_millis(50));
    s
}

/// The body of the response read to EOF from `s`, and the length its
/// head announced.
fn body(s: &mut TcpStream) -> (Vec<u8>, usize) {
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to EOF");
    let end = http::head_end(&got, 0).expect("a response head");
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    (got[end..].to_vec(), len)
}

#[test]
fn a_response_larger_than_the_socket_buffers_reaches_a_slow_reader_while_others_are_served() {
    let addr = start(16, Duration::from_secs(60));
    let mut slow = get(addr, "/big");
    // Not read yet: the server's writes to it have filled the buffers.
    for _ in 0..3 {
        let (small, len) = body(&mut get(addr, "/small"));
        assert_eq!((small.as_slice(), len), (&b"small\n"[..], 6));
    }
    let (big, len) = body(&mut slow);
    assert_eq!(len, BIG);
    assert!(
        big == testkit::pattern(9, BIG),
        "the big body came back altered"
    );
}

#[test]
fn a_reader_too_slow_for_the_deadline_is_cut_off_visibly() {
    let addr = start(16, Duration::from_millis(300));
    let mut slow = get(addr, "/big");
    std::thread::sleep(Duration::from_secs(1));
    let (big, len) = body(&mut slow);
    assert_eq!(len, BIG);
    assert!(big.len() < BIG, "a response the deadline cut arrived whole");
}

#[test]
fn connections_beyond_the_limit_wait_in_the_backlog_until_a_slot_frees() {
    let addr = start(2, Duration::from_secs(60));
    // Both slots busy answering: two slow readers of a large response.
    let idle = [slow_big(addr), slow_big(addr)];
    let mut waiting = get(addr, "/small");
    waiting
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let mut b = [0u8; 1];
    let early = waiting.read(&mut b);
    assert!(early.is_err(), "served with both slots taken: {early:?}");
    let [first, _second] = idle;
    drop(first);
    waiting.set_read_timeout(Some(WAIT)).expect("read timeout");
    let (small, _) = body(&mut waiting);
    assert_eq!(small, b"small\n");
}

#[test]
fn with_every_slot_idle_a_new_client_takes_the_oldest_idle_slot() {
    let addr = start(2, Duration::from_secs(60));
    let mut idle = [testkit::connect(addr, WAIT), testkit::connect(addr, WAIT)];
    std::thread::sleep(Duration::from_millis(50));
    let mut waiting = get(addr, "/small");
    let (small, _) = body(&mut waiting);
    assert_eq!(small, b"small\n", "served at once, both slots idle");
    // The oldest idle connection made room: it is closed, not answered.
    let mut got = Vec::new();
    idle[0].read_to_end(&mut got).expect("closed");
    assert!(got.is_empty(), "{got:?}");
    let _ = idle[1].set_nonblocking(true);
}
