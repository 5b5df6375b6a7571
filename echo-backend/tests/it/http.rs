//! End-to-end tests of http mode: pipelining, keep-alive, `Connection:
//! close`, bad requests, and a real client (curl) when one is installed.

use crate::util::{read_response, Backend, Response};
use std::io::{BufReader, Read, Write};
use std::process::Command;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";
const GET_CLOSE: &[u8] = b"GET /last HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// Reads responses until EOF.
fn responses_to_eof(r: &mut BufReader<&std::net::TcpStream>) -> Vec<Response> {
    let mut all = Vec::new();
    loop {
        let buf = std::io::BufRead::fill_buf(r).expect("read");
        if buf.is_empty() {
            return all;
        }
        all.push(read_response(r));
    }
}

#[test]
fn http_answers_a_pipelined_batch_of_three_with_three_responses() {
    let b = Backend::start(&["--mode", "http"]);
    let mut s = b.connect();
    s.write_all(&[GET, GET, GET].concat()).expect("write");
    let mut r = BufReader::new(&s);
    for i in 0..3 {
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200, "response {i}");
        assert_eq!(resp.body, b"ok\n", "response {i}");
    }
    // Exactly three: after a closing request only its own answer follows.
    (&s).write_all(GET_CLOSE).expect("write");
    let rest = responses_to_eof(&mut r);
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0].header("connection"), Some("close"));
}

#[test]
fn http_keeps_the_connection_alive_for_sequential_requests() {
    let b = Backend::start(&["--mode", "http"]);
    let s = b.connect();
    let mut r = BufReader::new(&s);
    for i in 0..20 {
        (&s).write_all(GET).expect("write");
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200, "request {i}");
        assert_eq!(resp.header("connection"), None, "request {i}");
    }
}

#[test]
fn http_skips_content_length_bodies() {
    let b = Backend::start(&["--mode", "http"]);
    let s = b.connect();
    // The body would read as a request if it were not skipped.
    let post =
        b"POST /x HTTP/1.1\r\nContent-Length: 30\r\n\r\nGET / HTTP/1.1\r\nHost: body\r\n\r\n";
    (&s).write_all(&[&post[..], GET, GET_CLOSE].concat())
        .expect("write");
    let all = responses_to_eof(&mut BufReader::new(&s));
    assert_eq!(all.len(), 3, "{all:?}");
}

#[test]
fn http_connection_close_gets_its_response_then_eof() {
    let b = Backend::start(&["--mode", "http"]);
    let s = b.connect();
    (&s).write_all(GET_CLOSE).expect("write");
    let mut r = BufReader::new(&s);
    let resp = read_response(&mut r);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("EOF, not a reset");
    assert!(rest.is_empty(), "bytes after the response: {rest:?}");
}

#[test]
fn http_garbage_gets_400_then_close() {
    let b = Backend::start(&["--mode", "http"]);
    let s = b.connect();
    // Binary, with no end of head: must not wait for 16 KiB.
    (&s).write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .expect("write");
    let all = responses_to_eof(&mut BufReader::new(&s));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].status, 400);
}

#[test]
fn http_oversized_head_gets_400_then_close() {
    let b = Backend::start(&["--mode", "http"]);
    let s = b.connect();
    let mut req = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    req.resize(17 * 1024, b'a');
    (&s).write_all(&req).expect("write");
    let all = responses_to_eof(&mut BufReader::new(&s));
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].status, 400);
}

#[test]
fn http_serves_curl_over_one_kept_alive_connection() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let b = Backend::start(&["--mode", "http"]);
    let url = format!("http://{}/", b.addr);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "%{http_code} %{num_connects}\n",
        ])
        .args([&url, &url, &url])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // Each transfer prints the body, then its status and new connections.
    assert_eq!(text, "ok\n200 1\nok\n200 0\nok\n200 0\n");
}
