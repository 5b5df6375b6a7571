//! `--proxy-protocol v1|v2`: the backend gets a header naming the real
//! client before any of the client's bytes, and the relay goes on as usual.

use crate::util::{connect, echo_conn, Backend, Proxy, WAIT};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::sync::Mutex;

/// A backend that reads `header_len(first bytes)` bytes of header, reports
/// them, then echoes.
fn header_backend(v2: bool) -> (Backend, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = Backend::spawn(move |mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut header = Vec::new();
        let mut b = [0u8; 1];
        loop {
            if s.read_exact(&mut b).is_err() {
                return;
            }
            header.push(b[0]);
            let done = if v2 {
                header.len() == 28
            } else {
                header.ends_with(b"\r\n")
            };
            if done || header.len() > 200 {
                break;
            }
        }
        let _ = tx.lock().expect("tx").send(header);
        echo_conn(s);
    });
    (backend, rx)
}

#[test]
fn v1_names_the_client_before_its_bytes() {
    let (backend, headers) = header_backend(false);
    let proxy = Proxy::start_to(backend.addr, &["--proxy-protocol", "v1"]);
    let mut client = connect(proxy.addr);
    client.write_all(b"hello").expect("write");
    let mut back = [0u8; 5];
    client.read_exact(&mut back).expect("echo after the header");
    assert_eq!(&back, b"hello");
    let header = headers.recv_timeout(WAIT).expect("a header");
    let me = client.local_addr().expect("local");
    let want = format!(
        "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
        me.port(),
        proxy.addr.port()
    );
    assert_eq!(String::from_utf8_lossy(&header), want);
}

#[test]
fn v2_carries_the_addresses_in_binary() {
    let (backend, headers) = header_backend(true);
    let proxy = Proxy::start_to(backend.addr, &["--proxy-protocol", "v2"]);
    let mut client = connect(proxy.addr);
    client.write_all(b"x").expect("write");
    let mut back = [0u8; 1];
    client.read_exact(&mut back).expect("echo after the header");
    let h = headers.recv_timeout(WAIT).expect("a header");
    let me = client.local_addr().expect("local");
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
    assert_eq!(&h[16..24], &[127, 0, 0, 1, 127, 0, 0, 1]);
    assert_eq!(&h[24..26], &me.port().to_be_bytes());
    assert_eq!(&h[26..28], &proxy.addr.port().to_be_bytes());
}

/// A large upload, which the proxy splices, still follows the header
/// byte for byte: the header leaves its buffer before any pipe is used.
#[test]
fn a_spliced_stream_follows_the_header_intact() {
    const LEN: usize = 8 << 20;
    let (backend, headers) = header_backend(true);
    let mut proxy = Proxy::start_to(backend.addr, &["--proxy-protocol", "v2"]);
    let data = crate::util::pattern(77, LEN);
    let mut client = connect(proxy.addr);
    let mut reader = client.try_clone().expect("clone");
    let back = std::thread::spawn(move || crate::util::read_to_end(&mut reader));
    client.write_all(&data).expect("upload");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let back = back.join().expect("reader");
    assert_eq!(back.len(), LEN);
    assert!(back == data, "the stream came back altered");
    assert_eq!(headers.recv_timeout(WAIT).expect("a header").len(), 28);
    let s = proxy.wait_idle();
    assert!(s.spliced(), "the stream was not spliced: {s:?}");
}
