//! A FIN in one direction ends only that direction: the other keeps
//! flowing until it ends too, and only then does the proxy close the pair.

use crate::util::{connect, pattern, read_to_end, Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

/// What the backend's handler tells the test, and the test tells it.
struct Link {
    to_test: Mutex<Sender<Vec<u8>>>,
    from_test: Mutex<Receiver<()>>,
}

impl Link {
    /// The handler's end and the test's ends of a new link.
    fn new() -> (Link, Receiver<Vec<u8>>, Sender<()>) {
        let (to_test, from_backend) = mpsc::channel();
        let (to_backend, from_test) = mpsc::channel();
        let link = Link {
            to_test: Mutex::new(to_test),
            from_test: Mutex::new(from_test),
        };
        (link, from_backend, to_backend)
    }

    fn report(&self, bytes: Vec<u8>) {
        let _ = self.to_test.lock().expect("link").send(bytes);
    }

    fn wait_go(&self) {
        self.from_test
            .lock()
            .expect("link")
            .recv_timeout(WAIT)
            .expect("go from the test");
    }
}

/// Blocking reads and writes on a backend's connection time out after
/// [`WAIT`], so that a handler never hangs.
fn with_timeouts(s: &TcpStream) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
}

/// The client sends its request and its FIN; the backend reads up to that
/// FIN and only then writes a 1 MiB reply and closes. The client must get
/// the whole reply although it has already finished sending.
#[test]
fn reply_after_client_fin_reaches_client() {
    const REPLY: usize = 1 << 20;
    let (link, requests, _go) = Link::new();
    let backend = Backend::spawn(move |mut s| {
        with_timeouts(&s);
        let request = read_to_end(&mut s);
        link.report(request);
        s.write_all(&pattern(2, REPLY)).expect("reply");
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let request = pattern(1, 100_000);
    let mut s = connect(proxy.addr);
    s.write_all(&request).expect("request");
    s.shutdown(Shutdown::Write).expect("FIN");
    let reply = read_to_end(&mut s);
    let got = requests
        .recv_timeout(WAIT)
        .expect("backend saw the request end");
    assert!(
        got == request,
        "backend got {} bytes, not the request",
        got.len()
    );
    assert_eq!(reply.len(), REPLY, "reply length");
    assert!(reply == pattern(2, REPLY), "reply altered");
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    assert_eq!(st.get("bytes_client_to_backend"), request.len() as u64);
    assert_eq!(st.get("bytes_backend_to_client"), REPLY as u64);
}

/// The backend sends a greeting and its FIN at once, then reads on. The
/// client reads the greeting to EOF and only then sends 1 MiB and its own
/// FIN. The backend must receive every byte.
#[test]
fn client_data_after_backend_fin_reaches_backend() {
    const GREETING: &[u8] = b"hello; I will say nothing more\n";
    const LEN: usize = 1 << 20;
    let (link, uploads, _go) = Link::new();
    let backend = Backend::spawn(move |mut s| {
        with_timeouts(&s);
        s.write_all(GREETING).expect("greeting");
        s.shutdown(Shutdown::Write).expect("FIN");
        link.report(read_to_end(&mut s));
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    assert_eq!(read_to_end(&mut s), GREETING);
    let data = pattern(3, LEN);
    s.write_all(&data).expect("upload after the backend's FIN");
    s.shutdown(Shutdown::Write).expect("FIN");
    let got = uploads
        .recv_timeout(WAIT)
        .expect("backend saw the upload end");
    assert_eq!(got.len(), LEN, "upload length at the backend");
    assert!(got == data, "upload altered");
    let mut rest = [0u8; 16];
    assert_eq!(s.read(&mut rest).expect("read after EOF"), 0);
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    assert_eq!(st.get("bytes_client_to_backend"), LEN as u64);
    assert_eq!(st.get("bytes_backend_to_client"), GREETING.len() as u64);
}

/// After the client's FIN has reached the backend, the pair is still open
/// (one direction is still alive); once the backend has replied and closed
/// too, the proxy closes the pair and holds no more descriptors than
/// before the connection.
#[test]
fn pair_closes_once_both_directions_end_client_first() {
    let (link, requests, go) = Link::new();
    let backend = Backend::spawn(move |mut s| {
        with_timeouts(&s);
        link.report(read_to_end(&mut s));
        link.wait_go();
        s.write_all(b"reply").expect("reply");
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let baseline = proxy.fd_count();
    let mut s = connect(proxy.addr);
    s.write_all(b"request").expect("request");
    s.shutdown(Shutdown::Write).expect("FIN");
    let got = requests
        .recv_timeout(WAIT)
        .expect("backend saw the client's FIN");
    assert_eq!(got, b"request");

    let half = proxy.stats();
    assert_eq!(
        half.get("active"),
        1,
        "closed while the reply could still come: {half:?}"
    );
    assert_eq!(half.get("closed"), 0, "{half:?}");
    assert_eq!(proxy.fd_count(), baseline + 2, "client and backend sockets");

    go.send(()).expect("go");
    assert_eq!(read_to_end(&mut s), b"reply");
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    proxy.wait_fd_count(baseline);
}

/// The mirror image: the backend ends first, the pair stays open while
/// the client still sends, and closes once the client's FIN has passed.
#[test]
fn pair_closes_once_both_directions_end_backend_first() {
    let (link, uploads, _go) = Link::new();
    let backend = Backend::spawn(move |mut s| {
        with_timeouts(&s);
        s.write_all(b"greeting").expect("greeting");
        s.shutdown(Shutdown::Write).expect("FIN");
        let mut first = [0u8; 5];
        s.read_exact(&mut first).expect("first upload");
        link.report(first.to_vec());
        link.report(read_to_end(&mut s));
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let baseline = proxy.fd_count();
    let mut s = connect(proxy.addr);
    assert_eq!(read_to_end(&mut s), b"greeting");
    s.write_all(b"first").expect("upload");
    let got = uploads
        .recv_timeout(WAIT)
        .expect("backend got the first upload");
    assert_eq!(got, b"first");

    let half = proxy.stats();
    assert_eq!(
        half.get("active"),
        1,
        "closed while the client still sends: {half:?}"
    );
    assert_eq!(half.get("closed"), 0, "{half:?}");
    assert_eq!(proxy.fd_count(), baseline + 2, "client and backend sockets");

    s.write_all(b"second").expect("upload");
    s.shutdown(Shutdown::Write).expect("FIN");
    let got = uploads
        .recv_timeout(WAIT)
        .expect("backend saw the client's FIN");
    assert_eq!(got, b"second");
    let st = proxy.wait_idle();
    assert_eq!(st.get("closed"), 1, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
    proxy.wait_fd_count(baseline);
}
