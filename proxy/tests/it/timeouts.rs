//! Connect and idle timeouts: a backend that never answers a SYN, and a
//! connection that goes quiet, are closed by the proxy on its own.

use crate::util::{connect, echo_byte, is_timeout, Backend, Proxy};
use std::io::Read;
use std::time::Duration;

#[test]
fn a_backend_that_never_answers_is_given_up_after_the_connect_timeout() {
    let Some(hole) = testkit::fault::Blackhole::new() else {
        eprintln!("skipping: this kernel still completes handshakes to a full accept queue");
        return;
    };
    let addr = hole.addr;
    let mut proxy = Proxy::start_to(addr, &["--connect-timeout", "300ms"]);
    let mut client = connect(proxy.addr);
    let who = client.local_addr().expect("client address");
    let mut b = [0u8; 1];
    match client.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("bytes from a backend that never connected"),
        Err(e) => assert!(!is_timeout(&e), "the client was left hanging: {e}"),
    }
    let line = proxy.wait_logged(|l| l.contains("connect timed out"));
    assert_eq!(
        line,
        format!("proxy: backend {addr} failed for client {who}: connect timed out")
    );
    let s = proxy.wait_stats("the pair closed", |s| s.get("active") == 0);
    assert_eq!(s.get("refused"), 1, "{s:?}");
}

#[test]
fn a_quiet_connection_is_closed_after_the_idle_timeout() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(
        backend.addr,
        &["--idle-timeout", "300ms", "--log-connections"],
    );
    let mut client = connect(proxy.addr);
    echo_byte(&mut client, b'q');
    let mut b = [0u8; 1];
    let n = client
        .read(&mut b)
        .expect("a clean close, not a reset or a hang");
    assert_eq!(n, 0, "the idle connection got bytes");
    proxy.wait_logged(|l| l.contains("idle timeout"));
    let s = proxy.wait_stats("the pair closed", |s| s.get("active") == 0);
    assert_eq!((s.get("closed"), s.get("errors")), (1, 0), "{s:?}");
}

#[test]
fn a_busy_connection_outlives_the_idle_timeout() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--idle-timeout", "1s"]);
    let mut client = connect(proxy.addr);
    // Traffic every 100 ms for three idle periods.
    for i in 0..30u8 {
        echo_byte(&mut client, i);
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = proxy.stats();
    assert_eq!((s.get("active"), s.get("closed")), (1, 0), "{s:?}");
}
