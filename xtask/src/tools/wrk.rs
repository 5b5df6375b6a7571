//! wrk 4.1 against nginx serving a fixed reply: the backend's config, the
//! Lua `done()` hook that prints wrk's summary as one JSON line, and its
//! parser. wrk's percentiles are of the latencies it timed, closed loop,
//! without correction for coordinated omission: reported as
//! `pNN_us_uncorrected`.

use super::{connections, field, seconds, start_server, Invocation, Sample, MESSAGES};
use crate::procs;
use crate::spec::Load;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use testkit::Child;

/// wrk's threads: one a core of the two this workbench assumes, or fewer
/// when there are fewer connections (wrk needs one a thread at least).
const THREADS: usize = 2;

/// The hook wrk runs at the end: its summary and latency percentiles (in
/// microseconds) as one JSON line on stdout.
const DONE_LUA: &str = r#"-- Written by cargo xtask: wrk's summary as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"mean":%f,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"#;

/// nginx as a plain HTTP server on a free port, a fixed 200 reply to
/// every request, one worker, keep-alive without end, a listen backlog
/// that holds wrk's 1,000 connects at once (nginx's own is 511); and the
/// Lua hook written beside its config.
pub fn backend(l: &Load, dir: &Path) -> Result<(Child, SocketAddr), String> {
    let script = dir.join("done.lua");
    std::fs::write(&script, DONE_LUA)
        .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let port = procs::free_port()?;
    let conf = dir.join("nginx.conf");
    // Room for a round's connections while the last subject's close: a
    // proxy may hold its backend sides a moment after wrk has gone.
    std::fs::write(&conf, config(port, connections(l) * 4 + 1024, dir))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let argv = [
        "nginx",
        "-p",
        &dir.display().to_string(),
        "-c",
        &conf.display().to_string(),
        "-e",
        "stderr",
    ];
    start_server("nginx (HTTP backend)", port, &argv.map(String::from))
}

/// The HTTP backend's nginx.conf.
fn config(port: u16, conns: usize, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\nerror_log stderr warn;\npid {d}/nginx.pid;\n\
         worker_rlimit_nofile {nofile};\nevents {{ worker_connections {conns}; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 1h;\n\
         \x20 client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{ return 200 \"hello\\n\"; }}\n  }}\n}}\n",
        nofile = procs::nofile_hard(),
    )
}

/// One wrk run against `addr` for the load's duration.
pub fn invocation(l: &Load, addr: SocketAddr, dir: &Path) -> Invocation {
    let conns = connections(l);
    let secs = seconds(l.duration.0);
    let argv = [
        "wrk".to_string(),
        "-t".into(),
        THREADS.min(conns).to_string(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
        "--timeout".into(),
        "10s".into(),
        "-s".into(),
        dir.join("done.lua").display().to_string(),
        format!("http://{addr}/"),
    ];
    Invocation {
        argv: argv.to_vec(),
        suffix: "",
        runs_for: Duration::from_secs(secs),
        messages: None,
        parse,
    }
}

/// The figures of wrk's stdout, from the JSON line of its `done()` hook.
pub fn parse(stdout: &str) -> Result<Sample, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("{\"requests\""))
        .ok_or("wrk printed no JSON summary line (from its done() hook)")?;
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("wrk's JSON summary line does not parse: {e}"))?;
    let get = |path: &[&str]| field(&v, "wrk", path);
    let seconds = get(&["duration_us"])? / 1e6;
    let mut errors = 0.0;
    for kind in ["connect", "read", "write", "status", "timeout"] {
        errors += get(&["errors", kind])?;
    }
    let mut out: Sample = vec![
        ("rate".into(), get(&["requests"])? / seconds),
        ("mean_us".into(), get(&["mean"])?),
        ("max_us".into(), get(&["max"])?),
        ("errors".into(), errors),
        (MESSAGES.into(), get(&["requests"])?),
    ];
    for p in ["p50", "p75", "p90", "p99"] {
        out.push((format!("{p}_us_uncorrected"), get(&[p])?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::figure;
    use super::*;

    #[test]
    fn a_real_run_at_100_connections_parses() {
        let s = parse(include_str!("testdata/wrk-100.txt")).expect("parses");
        assert!((figure(&s, "rate") - 66186.0 / 1.002590).abs() < 1.0);
        assert_eq!(figure(&s, "p50_us_uncorrected"), 1437.0);
        assert_eq!(figure(&s, "p75_us_uncorrected"), 1634.0);
        assert_eq!(figure(&s, "p90_us_uncorrected"), 1870.0);
        assert_eq!(figure(&s, "p99_us_uncorrected"), 4339.0);
        assert_eq!(figure(&s, "max_us"), 6991.0);
        assert_eq!(figure(&s, "errors"), 0.0);
    }

    #[test]
    fn a_real_run_at_1000_connections_parses() {
        let s = parse(include_str!("testdata/wrk-1000.txt")).expect("parses");
        assert_eq!(figure(&s, "p99_us_uncorrected"), 516161.0);
        assert!(figure(&s, "rate") > 40000.0);
    }

    #[test]
    fn output_without_the_json_line_is_one_line_naming_wrk() {
        let human: String = include_str!("testdata/wrk-100.txt")
            .lines()
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n");
        let e = parse(&human).expect_err("no JSON");
        assert_eq!(e, "wrk printed no JSON summary line (from its done() hook)");
        let e = parse("{\"requests\":5,\"duration_us\":1000000}").expect_err("partial");
        assert_eq!(e, "wrk's output has no number at errors.connect");
    }

    #[test]
    fn the_backend_config_serves_a_fixed_reply_with_endless_keep_alive() {
        let c = config(8080, 1064, Path::new("/d"));
        for want in [
            "daemon off;",
            "pid /d/nginx.pid;",
            "access_log off;",
            "keepalive_requests 1000000;",
            "worker_connections 1064;",
            "listen 127.0.0.1:8080 backlog=4096;",
            "return 200 \"hello\\n\";",
        ] {
            assert!(c.contains(want), "{want} not in {c}");
        }
    }
}
