//! `--allow` and `--deny`: clients outside the lists are turned away with
//! a reset before any backend is asked; the rest are served.

use crate::util::{echo_byte, is_timeout, Backend, Proxy, WAIT};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};

/// Connects to `addr` from the loopback address `src` (127.0.0.0/8 is
/// all local on Linux).
fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    let local: SocketAddr = format!("{src}:0").parse().expect("source address");
    let (fd, _) = netio::sys::socket::connect_from(&addr, &local).expect("connect");
    let s = TcpStream::from(fd);
    s.set_nonblocking(false).expect("blocking");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// The client is closed without a byte, promptly.
fn assert_turned_away(mut s: TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("a denied client got bytes"),
        Err(e) => assert!(!is_timeout(&e), "a denied client was left hanging"),
    }
}

#[test]
fn a_denied_client_is_turned_away_and_others_are_served() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--deny", "127.0.0.2"]);
    assert_turned_away(connect_from("127.0.0.2", proxy.addr));
    let mut ok = connect_from("127.0.0.1", proxy.addr);
    echo_byte(&mut ok, b'a');
    let s = proxy.stats();
    assert_eq!((s.get("denied"), s.get("accepted")), (1, 1), "{s:?}");
    assert_eq!(
        backend.accepted(),
        1,
        "the denied client reached the backend"
    );
}

#[test]
fn with_an_allow_list_only_its_networks_are_served() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(
        backend.addr,
        &["--allow", "127.0.0.1/32", "--allow", "10.0.0.0/8"],
    );
    assert_turned_away(connect_from("127.0.0.3", proxy.addr));
    let mut ok = connect_from("127.0.0.1", proxy.addr);
    echo_byte(&mut ok, b'b');
    let s = proxy.stats();
    assert_eq!((s.get("denied"), s.get("accepted")), (1, 1), "{s:?}");
}
