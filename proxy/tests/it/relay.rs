//! Bytes through the proxy arrive intact, in order, at any size, in any
//! chunking, over many connections at once, through a starved buffer pool,
//! and over IPv6. After every test the proxy must hold no connection and
//! lend no buffer.

use crate::util::{connect, echo_conn, pattern, read_to_end, Backend, Proxy, Stats, WAIT};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

/// Sends `data` in chunks of `chunk` bytes, half-closes, and returns what
/// came back.
fn round_trip(proxy: &Proxy, data: &[u8], chunk: usize) -> Vec<u8> {
    round_trip_at(proxy.addr, data, chunk)
}

/// [`round_trip`] to any address, so that it can run on many threads.
fn round_trip_at(addr: SocketAddr, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut s = connect(addr);
    let mut r = s.try_clone().expect("clone");
    let reader = thread::spawn(move || read_to_end(&mut r));
    for part in data.chunks(chunk.max(1)) {
        s.write_all(part).expect("write");
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    reader.join().expect("reader")
}

/// Sends `upload` and a FIN while a second thread compares what comes back
/// with `expected` as it arrives, without keeping a copy, and tells
/// `progress` how many bytes have arrived so far. Fails at the first wrong
/// byte, at a short or long stream, or when nothing arrives for [`WAIT`].
fn exchange(addr: SocketAddr, upload: &[u8], expected: &[u8], progress: &(dyn Fn(usize) + Sync)) {
    let mut s = connect(addr);
    let mut r = s.try_clone().expect("clone");
    thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let verdict = check_stream(&mut r, expected, progress);
            if verdict.is_err() {
                // Unblock the writer, so that the test fails now.
                let _ = r.shutdown(Shutdown::Both);
            }
            verdict
        });
        let mut written = Ok(());
        for part in upload.chunks(1 << 20) {
            written = s.write_all(part);
            if written.is_err() {
                break;
            }
        }
        let _ = s.shutdown(Shutdown::Write);
        if let Err(e) = reader.join().expect("reader") {
            panic!("{e}");
        }
        if let Err(e) = written {
            panic!("sending {} bytes: {e}", upload.len());
        }
    });
}

/// Reads from `r` until EOF, comparing with `expected` as bytes arrive and
/// telling `progress` how many have.
fn check_stream(
    r: &mut TcpStream,
    expected: &[u8],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| format!("reading after {at} of {} bytes: {e}", expected.len()))?;
        if n == 0 {
            break;
        }
        if at + n > expected.len() {
            return Err(format!("more than the {} bytes expected", expected.len()));
        }
        if buf[..n] != expected[at..at + n] {
            let k = (0..n).find(|&k| buf[k] != expected[at + k]).unwrap_or(0);
            return Err(format!("stream differs at byte {}", at + k));
        }
        at += n;
        progress(at);
    }
    if at == expected.len() {
        Ok(())
    } else {
        Err(format!(
            "stream ended after {at} of {} bytes",
            expected.len()
        ))
    }
}

/// Checks that one connection relayed `sent` bytes each way, ended
/// cleanly and left nothing behind.
fn assert_clean(proxy: &mut Proxy, conns: u64, sent: u64) -> Stats {
    let s = proxy.wait_idle();
    assert_eq!(s.get("accepted"), conns, "{s:?}");
    assert_eq!(s.get("closed"), conns, "{s:?}");
    assert_eq!(s.get("errors"), 0, "{s:?}");
    assert_eq!(s.get("refused"), 0, "{s:?}");
    assert_eq!(s.get("bytes_client_to_backend"), sent, "{s:?}");
    assert_eq!(s.get("bytes_backend_to_client"), sent, "{s:?}");
    s
}

/// Echoes `len` pattern bytes, written in one call, through a fresh proxy.
/// The whole echo must arrive before the client sends its FIN, so that a
/// FIN's wake-up cannot hide bytes left unread at a buffer boundary; then
/// the FIN must come back as EOF, and the accounting must be exact.
fn assert_round_trips(len: usize) {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let data = pattern(len as u64, len);
    let mut s = connect(proxy.addr);
    let mut r = s.try_clone().expect("clone");
    let reader = thread::spawn(move || {
        let mut back = vec![0u8; len];
        r.read_exact(&mut back).map(|()| back)
    });
    s.write_all(&data).expect("write");
    let back = reader
        .join()
        .expect("reader")
        .expect("the whole echo before any FIN");
    assert!(back == data, "{len} bytes came back altered");
    s.shutdown(Shutdown::Write).expect("FIN");
    let mut rest = [0u8; 16];
    assert_eq!(
        s.read(&mut rest).expect("EOF after the echo"),
        0,
        "bytes after the echo"
    );
    assert_clean(&mut proxy, 1, len as u64);
}

#[test]
fn one_byte_round_trips() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    assert_eq!(round_trip(&proxy, b"x", 1), b"x");
    assert_clean(&mut proxy, 1, 1);
}

#[test]
fn one_kib_round_trips() {
    assert_round_trips(1 << 10);
}

#[test]
fn one_byte_less_than_a_buffer_round_trips() {
    assert_round_trips(8191);
}

#[test]
fn exactly_one_buffer_round_trips() {
    assert_round_trips(8192);
}

#[test]
fn one_byte_more_than_a_buffer_round_trips() {
    assert_round_trips(8193);
}

#[test]
fn one_mib_round_trips() {
    assert_round_trips(1 << 20);
}

#[test]
fn sixty_four_mib_round_trips_identically() {
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let data = pattern(7, 64 << 20);
    let back = round_trip(&proxy, &data, 1 << 20);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "64 MiB came back altered");
    assert_clean(&mut proxy, 1, 64 << 20);
}

/// One thread writes chunks of random size (from 1 byte to 32 KiB) and,
/// at random between writes, reads random amounts of the echo, with no
/// sleeps: the proxy sees every alignment of reads against its buffers.
#[test]
fn random_chunks_with_interleaved_reads_round_trip() {
    const LEN: usize = 2 << 20;
    /// Most bytes in flight before the test must read, far below what the
    /// socket buffers on the way hold, so a single thread cannot deadlock.
    const MAX_IN_FLIGHT: usize = 64 << 10;
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let data = pattern(11, LEN);
    let mut s = connect(proxy.addr);
    let mut back = Vec::with_capacity(LEN);
    let mut buf = vec![0u8; 32 << 10];
    let mut sent = 0;
    while sent < LEN {
        let in_flight = sent - back.len();
        if in_flight > 0 && (in_flight > MAX_IN_FLIGHT || rng.gen_bool(0.5)) {
            let want = rng.gen_range(1..=in_flight.min(buf.len()));
            let n = s.read(&mut buf[..want]).expect("read");
            assert!(n > 0, "EOF after {} of {sent} bytes sent", back.len());
            back.extend_from_slice(&buf[..n]);
        } else {
            let max = if rng.gen_bool(0.5) { 64 } else { 32 << 10 };
            let len = rng.gen_range(1..=max).min(LEN - sent);
            s.write_all(&data[sent..sent + len]).expect("write");
            sent += len;
        }
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    s.read_to_end(&mut back).expect("read to end");
    assert_eq!(back.len(), LEN, "length changed");
    assert!(back == data, "randomly chunked stream came back altered");
    assert_clean(&mut proxy, 1, LEN as u64);
}

/// 200 connections are all open through the proxy at once, each carrying
/// its own pattern of its own length; every echo is checked against its
/// own data, so crossed or mixed-up connections are caught.
#[test]
fn two_hundred_concurrent_connections_each_get_their_own_bytes() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    const CONNS: usize = THREADS * PER_THREAD;
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let addr = proxy.addr;
    let len = |t: usize, i: usize| 16_000 + 37 * (t * PER_THREAD + i);
    let (connected_tx, connected) = mpsc::channel();
    let mut go = Vec::new();
    let mut threads = Vec::new();
    for t in 0..THREADS {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        go.push(go_tx);
        let connected_tx = connected_tx.clone();
        threads.push(thread::spawn(move || {
            let mut conns: Vec<TcpStream> = (0..PER_THREAD).map(|_| connect(addr)).collect();
            connected_tx.send(()).expect("report connected");
            go_rx.recv_timeout(WAIT).expect("go");
            let data: Vec<Vec<u8>> = (0..PER_THREAD)
                .map(|i| pattern((t * PER_THREAD + i + 1) as u64, len(t, i)))
                .collect();
            for (s, d) in conns.iter_mut().zip(&data) {
                s.write_all(d).expect("write");
                s.shutdown(Shutdown::Write).expect("shutdown");
            }
            for (i, (s, d)) in conns.iter_mut().zip(&data).enumerate() {
                let back = read_to_end(s);
                assert!(back == *d, "connection {t}/{i} got other bytes back");
            }
        }));
    }
    for _ in 0..THREADS {
        connected
            .recv_timeout(WAIT)
            .expect("a client thread connected");
    }
    // Nothing can close before the clients send their FINs, so the proxy
    // must come to hold all of them at once.
    proxy.wait_stats("all 200 connections accepted", |s| {
        s.get("active") == CONNS as u64
    });
    for g in &go {
        g.send(()).expect("go");
    }
    for t in threads {
        t.join().expect("client thread");
    }
    let total: usize = (0..THREADS)
        .flat_map(|t| (0..PER_THREAD).map(move |i| len(t, i)))
        .sum();
    let s = assert_clean(&mut proxy, CONNS as u64, total as u64);
    assert_eq!(s.get("peak_active"), CONNS as u64);
}

/// Two connections with 16 KiB buffers, the pool at its floor of two a
/// connection. Each backend speaks first:
/// it sends a 16 MiB reply and reads its client's 16 MiB upload only after
/// that, while each client uploads and reads at the same time. The reply
/// goes out in steps, each sent once the client has all of the last, so
/// the return direction keeps running dry and has to get a buffer again.
/// Over direct connections this completes. Through the proxy, buffers
/// holding upload bytes for backends that are not reading yet must not
/// leave the replies without a buffer for ever. (With two buffers for two
/// such connections it did deadlock; such pools are now refused.)
#[test]
fn backends_that_reply_first_do_not_stall_the_pool() {
    const CONNS: usize = 2;
    const UPLOAD: usize = 16 << 20;
    const REPLY: usize = 16 << 20;
    const STEP: usize = 256 << 10;
    // Each upload starts with its client's number, which its backend peeks
    // at to know whose progress to follow.
    let uploads: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..CONNS)
            .map(|i| {
                let mut u = pattern(8 + i as u64, UPLOAD);
                u[0] = i as u8;
                u
            })
            .collect(),
    );
    let reply = Arc::new(pattern(9, REPLY));
    let (progress_tx, progress_rx): (Vec<_>, Vec<_>) =
        (0..CONNS).map(|_| mpsc::channel::<usize>()).unzip();
    let progress_rx: Vec<Mutex<mpsc::Receiver<usize>>> =
        progress_rx.into_iter().map(Mutex::new).collect();
    let (report, reports) = mpsc::channel::<(usize, bool)>();
    let report = Mutex::new(report);
    let (uploads2, reply2) = (Arc::clone(&uploads), Arc::clone(&reply));
    let backend = Backend::spawn(move |mut s| {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.set_write_timeout(Some(WAIT)).expect("timeout");
        let mut id = [0u8; 1];
        if s.peek(&mut id).is_err() {
            return;
        }
        let i = usize::from(id[0]).min(CONNS - 1);
        let progress = progress_rx[i].lock().expect("progress");
        let (mut sent, mut arrived) = (0, 0);
        for step in reply2.chunks(STEP) {
            if s.write_all(step).is_err() {
                return;
            }
            sent += step.len();
            // Longer than the client's read timeout, so that a stall is
            // reported by the client that sees it.
            while arrived < sent {
                match progress.recv_timeout(WAIT * 2) {
                    Ok(n) => arrived = n,
                    Err(_) => return,
                }
            }
        }
        if s.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let got = read_to_end(&mut s);
        let _ = report.lock().expect("report").send((i, got == uploads2[i]));
    });
    let mut proxy = Proxy::start_to(
        backend.addr,
        &[
            "--buffer-size",
            "16384",
            "--max-connections",
            "2",
            "--large-buffers",
            "0",
        ],
    );
    let addr = proxy.addr;
    thread::scope(|scope| {
        let clients: Vec<_> = progress_tx
            .into_iter()
            .enumerate()
            .map(|(i, tx)| {
                let (upload, reply) = (&uploads[i], &reply);
                scope.spawn(move || {
                    exchange(addr, upload, reply, &move |n| {
                        let _ = tx.send(n);
                    })
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
    });
    for _ in 0..CONNS {
        let (i, intact) = reports
            .recv_timeout(WAIT)
            .expect("a backend read its upload");
        assert!(intact, "upload {i} arrived altered");
    }
    let s = proxy.wait_idle();
    assert_eq!(s.get("closed"), CONNS as u64, "{s:?}");
    assert_eq!(s.get("errors"), 0, "{s:?}");
    assert_eq!(s.get("bytes_client_to_backend"), (CONNS * UPLOAD) as u64);
    assert_eq!(s.get("bytes_backend_to_client"), (CONNS * REPLY) as u64);
    assert_eq!(s.get("pool_capacity"), 4, "{s:?}");
    assert_eq!(s.held(), 0, "{s:?}");
}

/// The proxy listens on `::1` and relays to a backend on `[::1]`.
#[test]
fn ipv6_loopback_round_trips() {
    if let Err(e) = TcpListener::bind("[::1]:0") {
        eprintln!("skipping ipv6_loopback_round_trips: cannot bind [::1]: {e}");
        return;
    }
    let backend = Backend::spawn_on("[::1]:0", echo_conn);
    let b = backend.addr.to_string();
    let mut proxy = Proxy::start(&["-l", "::1", "-p", "0", "-b", &b]);
    assert!(proxy.addr.is_ipv6(), "proxy listens on {}", proxy.addr);
    let data = pattern(6, 100_000);
    let back = round_trip(&proxy, &data, 10_000);
    assert!(back == data, "bytes altered over IPv6");
    assert_eq!(backend.accepted(), 1);
    assert_clean(&mut proxy, 1, data.len() as u64);
}

/// Streams move through pipes with splice(2); with `--pipes 0` the same
/// bytes move through buffers. Both arrive identical and fully counted.
#[test]
fn streams_are_spliced_through_pipes_and_arrive_identical() {
    const LEN: usize = 16 << 20;
    let data = pattern(31, LEN);
    for (args, spliced) in [(&[][..], true), (&["--pipes", "0"][..], false)] {
        let backend = Backend::echo();
        let mut proxy = Proxy::start_to(backend.addr, args);
        exchange(proxy.addr, &data, &data, &|_| {});
        let s = assert_clean(&mut proxy, 1, LEN as u64);
        assert_eq!(s.get("pipes_lent"), 0, "{s:?}");
        if spliced {
            assert!(s.spliced(), "no splice for a 16 MiB stream: {s:?}");
            // Under uring too: its reads are submissions, not read(2).
            assert!(
                s.get("sys_read") < 200,
                "a spliced stream still went through read(2): {s:?}"
            );
            assert_eq!(s.get("pipes_capacity"), 16, "{s:?}");
        } else {
            assert_eq!(s.get("sys_splice"), 0, "{s:?}");
            assert_eq!(s.get("pipes_capacity"), 0, "{s:?}");
            // Under uring too a stream with no pipe is read with read(2)
            // into the relay's buffer, not in receives' pieces.
            let most = (LEN / (64 << 10)) as u64;
            assert!(
                s.get("sys_read") >= most,
                "a stream with no pipe took fewer than {most} reads: {s:?}"
            );
        }
    }
}

/// Sixteen streams both ways through two pipes: the directions that get
/// no pipe use buffers, pipes pass from stream to stream, and every
/// stream gets exactly its own bytes back.
#[test]
fn more_streams_than_pipes_share_them_and_stay_intact() {
    const CONNS: usize = 16;
    const LEN: usize = 4 << 20;
    let backend = Backend::echo();
    let mut proxy = Proxy::start_to(backend.addr, &["--pipes", "2", "--pipe-size", "65536"]);
    let addr = proxy.addr;
    thread::scope(|scope| {
        for i in 0..CONNS {
            scope.spawn(move || {
                let data = pattern(100 + i as u64, LEN + i * 4099);
                exchange(addr, &data, &data, &|_| {});
            });
        }
    });
    let total: usize = (0..CONNS).map(|i| LEN + i * 4099).sum();
    let s = assert_clean(&mut proxy, CONNS as u64, total as u64);
    assert!(s.spliced(), "{s:?}");
    assert_eq!(s.get("pipes_lent"), 0, "{s:?}");
    assert_eq!(s.get("pipes_capacity"), 2, "{s:?}");
}

/// A spliced upload ends with the client's FIN: the backend gets every
/// byte and then EOF, and its answer, sent after that EOF, still comes
/// back on the half-closed connection.
#[test]
fn a_spliced_upload_passes_its_fin_on_after_the_last_byte() {
    const LEN: usize = 8 << 20;
    let backend = Backend::spawn(|mut s| {
        let got = read_to_end(&mut s);
        let ok = got == pattern(41, LEN);
        let _ = s.write_all(if ok { b"all bytes" } else { b"corrupted" });
    });
    let mut proxy = Proxy::start_to(backend.addr, &[]);
    let mut s = connect(proxy.addr);
    s.write_all(&pattern(41, LEN)).expect("upload");
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut s), b"all bytes");
    let st = proxy.wait_idle();
    assert!(st.spliced(), "{st:?}");
    assert_eq!(st.get("bytes_client_to_backend"), LEN as u64, "{st:?}");
    assert_eq!(st.get("errors"), 0, "{st:?}");
}
