//! redis-benchmark against redis-server: the server's command line, the
//! runs (SET and GET, plain and pipelined), and the parser of its
//! `--csv` output. redis-benchmark counts no errors (it shows at most one
//! a second with `-e`, and hangs on a refused connection, which the
//! run's time limit turns into a failure), so none are reported.

use super::{connections, start_server, Invocation, Sample};
use crate::procs;
use crate::spec::Load;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::Child;

/// The tests each run makes, one after the other, each `requests` long.
const TESTS: &str = "set,get";

/// redis-server on a free port: no snapshots, no append-only file, in the
/// foreground.
pub fn backend() -> Result<(Child, SocketAddr), String> {
    let port = procs::free_port()?;
    let argv = [
        "redis-server",
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ];
    start_server("redis-server", port, &argv.map(String::from))
}

/// The runs against `addr`: plain, then pipelined `pipeline` deep when
/// the scenario says.
pub fn invocations(l: &Load, addr: SocketAddr) -> Vec<Invocation> {
    let conns = connections(l);
    let requests = l.requests.unwrap_or(100_000);
    let run = |pipeline: Option<usize>, suffix| {
        let mut argv: Vec<String> = [
            "redis-benchmark",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-c",
            &conns.to_string(),
            "-n",
            &requests.to_string(),
            "-t",
            TESTS,
            "--csv",
        ]
        .map(String::from)
        .to_vec();
        if let Some(p) = pipeline {
            argv.extend(["-P".into(), p.to_string()]);
        }
        Invocation {
            argv,
            suffix,
            // Counted in requests: the run's limit is the slack alone.
            runs_for: Duration::ZERO,
            messages: Some(requests as f64 * TESTS.split(',').count() as f64),
            parse,
        }
    };
    let mut out = vec![run(None, "")];
    if let Some(p) = l.pipeline {
        out.push(run(Some(p), "_pipelined"));
    }
    out
}

/// The figures of a `--csv` run over several tests: the requests per
/// second over all of them (each makes as many requests, so the
/// harmonic mean of their rates), and at each percentile the slower
/// test's latency, in microseconds.
pub fn parse(stdout: &str) -> Result<Sample, String> {
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or("redis-benchmark printed nothing (no --csv header)")?
        .split(',')
        .map(|c| c.trim_matches('"').to_string())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("redis-benchmark's CSV has no \"{name}\" column"))
    };
    let (rps, avg) = (col("rps")?, col("avg_latency_ms")?);
    let pcts = [
        ("p50_us", col("p50_latency_ms")?),
        ("p95_us", col("p95_latency_ms")?),
        ("p99_us", col("p99_latency_ms")?),
        ("max_us", col("max_latency_ms")?),
    ];
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            l.split(',')
                .skip(1)
                .map(|c| {
                    c.trim_matches('"').parse::<f64>().map_err(|_| {
                        format!("redis-benchmark's CSV has a value that is not a number: {l}")
                    })
                })
                .collect()
        })
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Err("redis-benchmark's CSV has no test rows".into());
    }
    // Columns after the test's name, which was skipped.
    let at = |row: &Vec<f64>, i: usize| {
        row.get(i - 1)
            .copied()
            .ok_or_else(|| "redis-benchmark's CSV has a short row".to_string())
    };
    let n = rows.len() as f64;
    let mut inverse = 0.0;
    let mut mean = 0.0;
    for r in &rows {
        inverse += 1.0 / at(r, rps)?;
        mean += at(r, avg)? * 1000.0 / n;
    }
    let mut out: Sample = vec![("rate".into(), n / inverse), ("mean_us".into(), mean)];
    for (name, i) in pcts {
        let mut worst = f64::NAN;
        for r in &rows {
            worst = worst.max(at(r, i)? * 1000.0);
        }
        out.push((name.into(), worst));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::figure;
    use super::*;

    #[test]
    fn a_real_plain_run_parses_into_the_rate_over_both_tests() {
        let s = parse(include_str!("testdata/redis.csv")).expect("parses");
        let want = 2.0 / (1.0 / 66225.17 + 1.0 / 64102.56);
        assert!((figure(&s, "rate") - want).abs() < 1e-6);
        assert!(
            (figure(&s, "p50_us") - 407.0).abs() < 1e-9,
            "SET's, the slower"
        );
        assert!((figure(&s, "p99_us") - 1007.0).abs() < 1e-9);
        assert!((figure(&s, "max_us") - 3327.0).abs() < 1e-9);
        assert!((figure(&s, "mean_us") - 427.0).abs() < 1e-9);
    }

    #[test]
    fn a_real_pipelined_run_parses() {
        let s = parse(include_str!("testdata/redis-pipelined.csv")).expect("parses");
        assert!(figure(&s, "rate") > 600_000.0);
        assert!((figure(&s, "p95_us") - 1519.0).abs() < 1e-9);
    }

    #[test]
    fn broken_output_is_one_line_naming_redis_benchmark() {
        assert_eq!(
            parse("").expect_err("empty"),
            "redis-benchmark printed nothing (no --csv header)"
        );
        let header = include_str!("testdata/redis.csv")
            .lines()
            .next()
            .expect("header");
        assert_eq!(
            parse(header).expect_err("no rows"),
            "redis-benchmark's CSV has no test rows"
        );
        assert_eq!(
            parse("\"test\",\"rps\"\n\"SET\",\"1\"").expect_err("columns"),
            "redis-benchmark's CSV has no \"avg_latency_ms\" column"
        );
    }
}
