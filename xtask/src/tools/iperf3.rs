//! iperf3 against an iperf3 server: one bulk stream (or `connections`
//! parallel ones) for the load's duration, up (the client sending), down
//! (`-R`, the server sending) or both in turn, and the parser of its `-J`
//! report: the bits per second received, and its `error` as one line.

use super::{connections, field, seconds, start_server, Invocation, Sample};
use crate::procs;
use crate::spec::{BulkDirection, Load};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::Child;

/// An iperf3 server on a free port, kept for the whole scenario: it
/// serves one client at a time, and the clients run one after another.
pub fn backend() -> Result<(Child, SocketAddr), String> {
    let port = procs::free_port()?;
    let argv = ["iperf3", "-s", "-B", "127.0.0.1", "-p", &port.to_string()];
    start_server("iperf3 server", port, &argv.map(String::from))
}

/// The runs against `addr`: one a direction.
pub fn invocations(l: &Load, addr: SocketAddr) -> Vec<Invocation> {
    let streams = connections(l);
    let secs = seconds(l.duration.0);
    let run = |reverse: bool, suffix| {
        let mut argv: Vec<String> = [
            "iperf3",
            "-c",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
            "-J",
        ]
        .map(String::from)
        .to_vec();
        if reverse {
            argv.push("-R".into());
        }
        Invocation {
            argv,
            suffix,
            runs_for: Duration::from_secs(secs),
            // Bytes, not requests: no CPU time per message.
            messages: None,
            parse,
        }
    };
    match l.bulk_direction.unwrap_or(BulkDirection::Both) {
        BulkDirection::Up => vec![run(false, "")],
        BulkDirection::Down => vec![run(true, "")],
        BulkDirection::Both => vec![run(false, "_up"), run(true, "_down")],
    }
}

/// The figures of a `-J` report: the receiving side's bits per second.
pub fn parse(stdout: &str) -> Result<Sample, String> {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .map_err(|e| format!("iperf3 printed no JSON report (-J): {e}"))?;
    if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
        return Err(format!("iperf3: {e}"));
    }
    let bps = field(&v, "iperf3", &["end", "sum_received", "bits_per_second"])?;
    Ok(vec![("throughput_bps".into(), bps)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_reports_each_way_parse_into_the_bits_received() {
        let up = parse(include_str!("testdata/iperf3-up.json")).expect("up");
        assert_eq!(up[0], ("throughput_bps".into(), 11249874297.477226));
        let down = parse(include_str!("testdata/iperf3-down.json")).expect("down");
        assert_eq!(down[0], ("throughput_bps".into(), 8650782817.30384));
    }

    #[test]
    fn a_real_refused_connection_is_its_error_in_one_line() {
        let e = parse(include_str!("testdata/iperf3-refused.json")).expect_err("refused");
        assert_eq!(e, "iperf3: unable to connect to server: Connection refused");
    }

    #[test]
    fn a_report_without_the_figure_or_not_json_is_one_line() {
        assert_eq!(
            parse("{\"end\":{}}").expect_err("no sum"),
            "iperf3's output has no number at end.sum_received.bits_per_second"
        );
        assert!(parse("Connecting to host")
            .expect_err("text")
            .starts_with("iperf3 printed no JSON report (-J): "));
    }
}
