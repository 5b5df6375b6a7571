//! The `/metrics` endpoint: a tiny blocking HTTP server on its own thread,
//! reading the workers' counters. It sleeps in `accept` between scrapes,
//! so it costs no wake-ups while nobody asks.

use crate::stats::Snapshot;
use crate::worker::Control;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Serves metrics on `listener` until the process exits.
pub fn serve(listener: TcpListener, controls: Vec<Arc<Control>>) {
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                if let Err(e) = answer(s, &controls) {
                    netio::log!("proxy: metrics request failed: {e}");
                }
            }
            Err(e) => {
                netio::log!("proxy: metrics accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut s: TcpStream, controls: &[Arc<Control>]) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = [0u8; 2048];
    let mut len = 0;
    while !req[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < req.len() {
        let n = s.read(&mut req[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = req[..len].split(|&b| b == b'\r').next().unwrap_or_default();
    let path = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let (status, body) = if path == b"/metrics" || path == b"/" {
        let snap = Snapshot::total(controls.iter().map(|c| &*c.stats));
        ("200 OK", snap.prometheus())
    } else {
        ("404 Not Found", "not found; try /metrics\n".to_string())
    };
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}
