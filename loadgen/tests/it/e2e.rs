//! End-to-end: the real loadgen against real servers on port 0 —
//! echo-backend in every mode, the proxy, python's http.server, and small
//! misbehaving servers — checking the JSON report and the exit status.

use crate::util::{self, errors, loadgen, total_errors};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

/// Short runs: these check behaviour, not speed.
const QUICK: [&str; 4] = ["--duration", "1s", "--warmup", "200ms"];

fn args<'a>(target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--target", target, "--json"];
    v.extend_from_slice(&QUICK);
    v.extend_from_slice(extra);
    v
}

#[test]
fn echo_run_verifies_every_reply_and_exits_zero() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--connections", "8", "--message-size", "100"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let j = run.json();
    assert_eq!(j["version"], 1);
    assert_eq!(j["mode"], "echo");
    assert!(j["rate_target"].is_null());
    let r = run.target(0);
    assert_eq!(r["target"], t.as_str());
    let msgs = r["messages"].as_u64().expect("messages");
    assert!(msgs > 100, "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
    assert_eq!(r["bytes_received"].as_u64(), Some(msgs * 100), "{r}");
    let lat = &r["latency_us"];
    assert_eq!(lat["count"].as_u64(), Some(msgs));
    let (p50, p99, max) = (
        lat["p50"].as_u64().expect("p50"),
        lat["p99"].as_u64().expect("p99"),
        lat["max"].as_u64().expect("max"),
    );
    assert!(p50 <= p99 && p99 <= max, "{lat}");
    let curve = r["latency_curve"].as_array().expect("curve");
    assert!(curve.len() >= 20, "{r}");
}

#[test]
fn a_corrupted_byte_fails_verification_and_the_run() {
    let addr = util::std_echo(Some(1000));
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--connections", "2", "--message-size", "64"]));
    assert_eq!(run.status, Some(1), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert!(errors(&r, "mismatch") >= 1, "{r}");
    assert!(r["verify_failures"].as_u64().expect("vf") >= 1, "{r}");
    assert!(run.stderr.contains("mismatch"), "stderr: {}", run.stderr);
    assert!(
        r["first_error"]
            .as_str()
            .expect("first_error")
            .contains("differs"),
        "{r}"
    );
}

#[test]
fn a_clean_in_process_echo_server_passes() {
    // The same server as the corruption test, minus the corruption: the
    // failure above is the flipped byte, not the server.
    let t = util::std_echo(None).to_string();
    let run = loadgen(&args(&t, &["--connections", "2"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    assert_eq!(total_errors(&run.target(0)), 0);
}

#[test]
fn open_loop_achieves_the_requested_rate() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&[
        "--target",
        &t,
        "--json",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--rate",
        "2000",
        "--connections",
        "20",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let j = run.json();
    assert_eq!(j["rate_target"], 2000);
    let rate = run.target(0)["rate"].as_f64().expect("rate");
    assert!(
        (rate - 2000.0).abs() / 2000.0 < 0.03,
        "achieved {rate} msg/s for 2000 requested"
    );
}

#[test]
fn open_loop_counts_latency_from_the_intended_send_time() {
    // One connection, 200 msg/s, against a server that answers each
    // message 20 ms late: replies can only come every 20 ms, so messages
    // queue up and their latency (from when they were due) keeps growing,
    // far beyond the 20 ms each takes to be served.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).is_ok() {
                    thread::sleep(Duration::from_millis(20));
                    if s.write_all(&buf).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let t = addr.to_string();
    let run = loadgen(&[
        "--target",
        &t,
        "--json",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--rate",
        "200",
        "--connections",
        "1",
        "--message-size",
        "64",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    let max = r["latency_us"]["max"].as_u64().expect("max");
    assert!(
        max > 200_000,
        "max latency {max} us should include queueing: {r}"
    );
}

#[test]
fn http_mode_against_echo_backend_http() {
    let (_backend, addr) = util::echo_backend("http", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--mode", "http", "--connections", "4"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert!(r["messages"].as_u64().expect("messages") > 100, "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
    // Keep-alive: no connections beyond the first set.
    assert_eq!(r["connects"].as_u64(), Some(0), "{r}");
}

#[test]
fn http_mode_against_python_http_server() {
    // python's server speaks HTTP/1.0 and closes after every response:
    // loadgen re-opens without counting an error.
    let (_python, addr) = util::python_http_server();
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--mode", "http", "--connections", "2"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    let msgs = r["messages"].as_u64().expect("messages");
    assert!(msgs > 10, "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
    assert!(r["connects"].as_u64().expect("connects") >= msgs - 2, "{r}");
}

#[test]
fn http_mode_counts_a_missing_page_as_a_mismatch() {
    let (_python, addr) = util::python_http_server();
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &[
            "--mode",
            "http",
            "--connections",
            "1",
            "--http-path",
            "/no-such-file",
        ],
    ));
    assert_eq!(run.status, Some(1), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert!(errors(&r, "mismatch") >= 1, "{r}");
    assert!(
        r["first_error"].as_str().expect("first").contains("404"),
        "{r}"
    );
}

#[test]
fn bulk_both_streams_and_verifies_the_echo() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--mode", "bulk", "--connections", "2"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let j = run.json();
    assert_eq!(j["bulk_direction"], "both");
    let r = run.target(0);
    assert!(r["bytes_received"].as_u64().expect("rx") > 1 << 20, "{r}");
    assert!(r["throughput_bps"].as_f64().expect("bps") > 0.0, "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
}

#[test]
fn bulk_down_verifies_the_seeded_source() {
    let (_backend, addr) = util::echo_backend("source", &["--seed", "7"]);
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &[
            "--mode",
            "bulk",
            "--bulk-direction",
            "down",
            "--seed",
            "7",
            "--connections",
            "2",
        ],
    ));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert!(r["bytes_received"].as_u64().expect("rx") > 1 << 20, "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
}

#[test]
fn bulk_down_with_the_wrong_seed_fails() {
    let (_backend, addr) = util::echo_backend("source", &["--seed", "7"]);
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &[
            "--mode",
            "bulk",
            "--bulk-direction",
            "down",
            "--seed",
            "8",
            "--connections",
            "1",
        ],
    ));
    assert_eq!(run.status, Some(1), "stderr: {}", run.stderr);
    assert!(errors(&run.target(0), "mismatch") >= 1);
}

#[test]
fn bulk_up_streams_into_a_sink() {
    let (_backend, addr) = util::echo_backend("sink", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &[
            "--mode",
            "bulk",
            "--bulk-direction",
            "up",
            "--connections",
            "2",
        ],
    ));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert!(r["bytes_sent"].as_u64().expect("tx") > 1 << 20, "{r}");
    assert_eq!(r["bytes_received"].as_u64(), Some(0), "{r}");
    assert_eq!(total_errors(&r), 0, "{r}");
}

#[test]
fn connect_mode_opens_a_connection_per_message() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(&t, &["--mode", "connect", "--connections", "4"]));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    let msgs = r["messages"].as_u64().expect("messages");
    assert!(msgs > 50, "{r}");
    let connects = r["connects"].as_u64().expect("connects");
    assert!(connects >= msgs && connects <= msgs + 4, "{r}");
    assert!(r["connect_rate"].as_f64().expect("rate") > 0.0);
    assert_eq!(total_errors(&r), 0, "{r}");
}

#[test]
fn a_refused_target_is_counted_and_fails_the_run() {
    let t = util::closed_port().to_string();
    let run = loadgen(&args(&t, &["--connections", "2"]));
    assert_eq!(run.status, Some(1), "stderr: {}", run.stderr);
    assert!(errors(&run.target(0), "connect_refused") >= 2);
}

#[test]
fn each_error_is_timed_from_its_connect_to_its_failure() {
    let unix_us = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros() as u64
    };
    let t = util::closed_port().to_string();
    let before = unix_us();
    let run = loadgen(&args(&t, &["--connections", "2", "--mode", "connect"]));
    let after = unix_us();
    let r = run.target(0);
    let times = r["error_times"].as_array().expect("error_times");
    assert_eq!(times.len() as u64, total_errors(&r), "{r}");
    assert_eq!(r["error_times_dropped"].as_u64(), Some(0), "{r}");
    let mut last = 0;
    for pair in times {
        let (started, failed) = (pair[0].as_u64().expect("us"), pair[1].as_u64().expect("us"));
        assert!(
            before <= started && started <= failed && failed <= after,
            "{pair}"
        );
        assert!(failed >= last, "sorted by failure: {r}");
        last = failed;
    }
}

#[test]
fn a_silent_server_times_out() {
    let t = util::std_silent().to_string();
    let run = loadgen(&args(&t, &["--connections", "2", "--timeout", "200ms"]));
    assert_eq!(run.status, Some(1), "stderr: {}", run.stderr);
    assert!(errors(&run.target(0), "timeout") >= 2);
}

#[test]
fn interleaved_targets_are_reported_separately() {
    let (_backend, b) = util::echo_backend("echo", &[]);
    let (_proxy, p) = util::proxy(b, &[]);
    let (direct, proxied) = (b.to_string(), p.to_string());
    let run = loadgen(&[
        "--target",
        &direct,
        "--target",
        &proxied,
        "--json",
        "--duration",
        "1s",
        "--warmup",
        "100ms",
        "--window",
        "250ms",
        "--connections",
        "4",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let j = run.json();
    assert!(
        (j["duration_s"].as_f64().expect("d") - 1.0).abs() < 0.01,
        "{j}"
    );
    for (i, name) in [direct, proxied].iter().enumerate() {
        let r = run.target(i);
        assert_eq!(r["target"], name.as_str());
        assert!(r["messages"].as_u64().expect("messages") > 50, "{r}");
        assert!(
            (r["duration_s"].as_f64().expect("d") - 0.5).abs() < 0.01,
            "{r}"
        );
        assert_eq!(total_errors(&r), 0, "{r}");
    }
}

#[test]
fn ctrl_c_stops_the_run_and_reports_what_was_measured() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let child = Command::new(util::loadgen_bin())
        .args([
            "--target",
            &t,
            "--json",
            "--duration",
            "60s",
            "--warmup",
            "0s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn loadgen");
    thread::sleep(Duration::from_millis(1500));
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let started = std::time::Instant::now();
    let run = util::finish(child);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let j = run.json();
    assert_eq!(j["interrupted"], true);
    let d = j["duration_s"].as_f64().expect("duration");
    assert!(d > 0.1 && d < 30.0, "{j}");
    assert!(run.target(0)["messages"].as_u64().expect("messages") > 0);
}

#[test]
fn summary_is_readable_without_json() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&["--target", &t, "--duration", "300ms", "--warmup", "0s"]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    for word in ["target", "messages", "latency", "p99.9", "errors      none"] {
        assert!(run.stdout.contains(word), "{word} missing:\n{}", run.stdout);
    }
}

#[test]
fn several_threads_split_the_connections_and_merge_their_figures() {
    let (_backend, addr) = util::echo_backend("echo", &[]);
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &["--connections", "6", "--threads", "2", "--rate", "600"],
    ));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert_eq!(total_errors(&r), 0, "{r}");
    // 600 msg/s for 1 s, whichever thread sent them.
    let msgs = r["messages"].as_u64().expect("messages");
    assert!((570..=600).contains(&msgs), "{r}");
    assert!(r["send_lag_us"]["count"].as_u64().expect("lag") > 0, "{r}");
}

/// `--reset-ratio 0.5`: every other connection reaches the server as a
/// reset (not a FIN) after its message, counted in `resets_sent`, and no
/// error is counted for them.
#[test]
fn reset_ratio_resets_that_share_of_connections_after_their_message() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepted, ended by a FIN, ended by a reset.
    let ends: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let e = Arc::clone(&ends);
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            e[0].fetch_add(1, Ordering::SeqCst);
            let e = Arc::clone(&e);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let end = loop {
                    match s.read(&mut buf) {
                        Ok(0) => break 1,
                        Ok(n) if s.write_all(&buf[..n]).is_ok() => {}
                        _ => break 2,
                    }
                };
                e[end].fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let t = addr.to_string();
    let run = loadgen(&args(
        &t,
        &[
            "--mode",
            "connect",
            "--connections",
            "2",
            "--reset-ratio",
            "0.5",
        ],
    ));
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert_eq!(total_errors(&r), 0, "a reset sent is not an error: {r}");
    let sent = r["resets_sent"].as_u64().expect("resets_sent");
    // Every connection the server accepted has ended, one way or the other.
    let [accepted, fins, resets] = (0..100)
        .map(|_| {
            thread::sleep(Duration::from_millis(50));
            ends.each_ref().map(|a| a.load(Ordering::SeqCst))
        })
        .find(|[a, f, r]| f + r == *a)
        .expect("the server saw every connection end");
    assert!(sent > 10 && fins > 10, "{r}: {accepted} {fins} {resets}");
    // The last connections may be cut when loadgen exits with a reply
    // unread (the kernel then resets them too): at most one a connection.
    assert!(
        resets >= sent && resets <= sent + 2,
        "{sent} sent, {resets} seen"
    );
    assert!(
        (2 * sent).abs_diff(accepted) <= 3,
        "half of {accepted} connections, {sent} reset"
    );
}
