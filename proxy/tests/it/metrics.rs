//! The `--metrics` endpoint under clients that misbehave: idle and stalled
//! connections, floods of scrapes, oversized or wrong requests, slow
//! readers. None of them may hold up a scrape, and none may be served
//! wrong.

use crate::util::{connect, switches_of, wait_until, Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// The read timeout of a scrape that must not be held up: a hang bound,
/// well above a scrape's cost and well below the old endpoint's 2 s per
/// idle connection ahead of it.
const PROMPT: Duration = Duration::from_secs(3);

/// A proxy with `--metrics` on a free port, and that port's address.
fn proxy_with_metrics() -> (Backend, Proxy, SocketAddr) {
    let backend = Backend::echo();
    let proxy = Proxy::start_to(backend.addr, &["--metrics", "127.0.0.1:0"]);
    let addr = proxy.metrics_addr();
    (backend, proxy, addr)
}

/// A response as the client saw it.
struct Reply {
    status: String,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Checks that the body is exactly as long as `Content-Length` says.
    fn assert_whole(&self) {
        let len: usize = self
            .header("Content-Length")
            .unwrap_or_else(|| panic!("no Content-Length in {:?}", self.head))
            .parse()
            .expect("numeric Content-Length");
        assert_eq!(self.body.len(), len, "body cut short: {:?}", self.head);
    }
}

/// Sends `raw` and reads the reply to EOF, failing if any read waits
/// longer than `wait`.
fn exchange(addr: SocketAddr, raw: &[u8], wait: Duration) -> Reply {
    let mut s = connect(addr);
    s.set_read_timeout(Some(wait)).expect("read timeout");
    s.write_all(raw).expect("send request");
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .unwrap_or_else(|e| panic!("reading the reply to {:?}: {e}", head_of(raw)));
    parse(&got)
}

fn head_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(40)]).into_owned()
}

fn parse(got: &[u8]) -> Reply {
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(got)));
    let head = String::from_utf8(got[..end].to_vec()).expect("utf-8 head");
    Reply {
        status: head.lines().next().unwrap_or_default().to_string(),
        body: got[end + 4..].to_vec(),
        head,
    }
}

/// [`exchange`] that must get a whole response with status `code`.
fn expect(addr: SocketAddr, raw: &[u8], code: u16) -> Reply {
    let r = exchange(addr, raw, WAIT);
    let want = format!("HTTP/1.1 {code} ");
    assert!(
        r.status.starts_with(&want),
        "{:?}: {:?}",
        head_of(raw),
        r.status
    );
    r.assert_whole();
    r
}

/// `GET /metrics` that must be answered within [`PROMPT`] a read.
fn scrape(addr: SocketAddr) -> Reply {
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n", PROMPT);
    assert!(
        r.status.starts_with("HTTP/1.1 200"),
        "status {:?}",
        r.status
    );
    r.assert_whole();
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("# TYPE proxy_accepted counter\nproxy_accepted "),
        "{body}"
    );
    r
}

#[test]
fn idle_connections_do_not_hold_up_a_scrape() {
    let (_backend, proxy, addr) = proxy_with_metrics();
    let idle: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
    scrape(addr);
    scrape(addr);
    drop(idle);
    drop(proxy);
}

/// Far more idle connections than the endpoint has slots (16), and a
/// slowloris crowd: each new client takes the slot of the oldest one that
/// is not being answered, so the scrape is answered at once.
#[test]
fn more_idle_connections_than_slots_do_not_hold_up_a_scrape() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let idle: Vec<TcpStream> = (0..150).map(|_| connect(addr)).collect();
    let slow: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /metrics HTTP/1.1\r\nX: ")
                .expect("partial");
            s
        })
        .collect();
    scrape(addr);
    scrape(addr);
    drop((idle, slow));
}

#[test]
fn stalled_partial_requests_are_closed_by_the_deadline_and_others_are_served() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let parts: [&[u8]; 3] = [b"G", b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost:"];
    let mut stalled: Vec<TcpStream> = parts
        .iter()
        .map(|part| {
            let mut s = connect(addr);
            s.write_all(part).expect("partial request");
            s
        })
        .collect();
    scrape(addr);
    for (s, part) in stalled.iter_mut().zip(parts) {
        let mut got = Vec::new();
        s.read_to_end(&mut got)
            .expect("a stalled connection is closed, not left hanging");
        assert!(
            got.is_empty(),
            "{:?}, never finished, got an answer: {:?}",
            head_of(part),
            String::from_utf8_lossy(&got)
        );
    }
    scrape(addr);
}

#[test]
fn fifty_concurrent_scrapes_all_get_whole_responses() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let threads: Vec<_> = (0..50)
        .map(|_| {
            thread::spawn(move || {
                let r = expect(addr, b"GET /metrics HTTP/1.1\r\n\r\n", 200);
                assert_eq!(r.header("Connection"), Some("close"));
                r.body
            })
        })
        .collect();
    for t in threads {
        let body = t.join().expect("scrape thread");
        assert!(String::from_utf8_lossy(&body).contains("proxy_sys_read "));
    }
}

#[test]
fn an_oversized_request_head_gets_431_and_is_closed() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let mut raw = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    raw.resize(raw.len() + 16 * 1024, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    expect(addr, &raw, 431);
    scrape(addr);
}

#[test]
fn a_malformed_request_line_gets_400() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    for raw in [
        &b"hello\r\n\r\n"[..],
        b"GET /metrics SPDY/3\r\n\r\n",
        b"\0\0\0\r\n\r\n",
    ] {
        expect(addr, raw, 400);
    }
}

#[test]
fn unknown_paths_get_404_and_other_methods_405() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    expect(addr, b"GET /nope HTTP/1.1\r\n\r\n", 404);
    let post = b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    let r = expect(addr, post, 405);
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));
    // The root serves the metrics too, as it always has.
    expect(addr, b"GET / HTTP/1.0\r\n\r\n", 200);
}

#[test]
fn head_gets_the_headers_of_a_scrape_without_its_body() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n", WAIT);
    assert!(
        r.status.starts_with("HTTP/1.1 200 "),
        "status {:?}",
        r.status
    );
    assert!(r.body.is_empty(), "HEAD got a body");
    let len = r.header("Content-Length").expect("Content-Length");
    let len: usize = len.parse().expect("a number");
    assert!(len > 0, "HEAD names the length a GET would get");
}

#[test]
fn a_slow_reader_gets_the_whole_response_while_others_are_served() {
    let (_backend, _proxy, addr) = proxy_with_metrics();
    let mut slow = connect(addr);
    slow.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let mut piece = [0u8; 100];
    loop {
        let n = slow.read(&mut piece).expect("slow read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&piece[..n]);
        if got.len() % 1000 < 100 {
            // Every kilobyte or so, someone else scrapes meanwhile.
            scrape(addr);
        }
        thread::sleep(Duration::from_millis(2));
    }
    parse(&got).assert_whole();
}

#[test]
fn the_metrics_thread_sleeps_once_its_connections_are_gone() {
    let (_backend, proxy, addr) = proxy_with_metrics();
    scrape(addr);
    drop(connect(addr));
    let pid = proxy.pid();
    // Settled: the closed connection has been seen.
    let mut last = switches_of(pid, "metrics");
    wait_until("the metrics thread settles", || {
        thread::sleep(Duration::from_millis(200));
        let now = switches_of(pid, "metrics");
        std::mem::replace(&mut last, now) == now
    });
    // Past the deadline the connection would have had: no timer left.
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        switches_of(pid, "metrics"),
        last,
        "the metrics thread woke up with no connection open"
    );
}
