//! The command line, checked into one [`Config`] before any socket is
//! opened. Every mistake becomes one line naming the option and the value.

use clap::{Parser, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Connections per second opened while setting up (and re-opening after
/// an error) when `--connect-rate` is not given: 10,000 connections are
/// set up in two seconds, slowly enough that an epoll server's listen
/// backlog (often 1,024) stays far from full even on a busy machine.
/// (Connects in progress are also capped; see the engine.)
pub const DEFAULT_CONNECT_RATE: u64 = 5_000;

/// The largest `--message-size` accepted.
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Send a message, wait for its full echo, verify every byte.
    Echo,
    /// Keep-alive `GET` requests; responses are parsed and checked.
    Http,
    /// Stream bytes one way or both for throughput, verified.
    Bulk,
    /// Open, one echo exchange, close: connections per second.
    Connect,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Http => "http",
            Mode::Bulk => "bulk",
            Mode::Connect => "connect",
        }
    }
}

/// Which way bulk mode moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Client → server (a `sink` backend); nothing comes back.
    Up,
    /// Server → client (a `source` backend), verified against `--seed`.
    Down,
    /// Both: the seeded stream is sent and its echo verified.
    Both,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        }
    }
}

/// The command line as typed.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "A TCP load generator that measures what users feel.",
    long_about = "A TCP load generator that measures what users feel.\n\n\
        Without --rate it is closed-loop: each connection sends its next message when \
        the last reply arrived. With --rate it is open-loop: messages are due at a fixed \
        total rate, spread over the connections, and latency counts from each message's \
        intended send time (coordinated omission corrected). Every reply is verified. \
        Exit status: 0 clean run, 1 errors or verification failures, 2 bad arguments."
)]
pub struct Cli {
    /// Server to load, ADDR:PORT; repeat to interleave several in alternating windows
    #[arg(
        allow_hyphen_values = true,
        long = "target",
        value_name = "ADDR:PORT",
        required = true
    )]
    pub targets: Vec<String>,
    /// Connections per target
    #[arg(
        allow_hyphen_values = true,
        short = 'c',
        long,
        value_name = "N",
        default_value = "10"
    )]
    pub connections: String,
    /// Measured time (after warm-up), e.g. 500ms, 10s, 1m; shared by all targets
    #[arg(
        allow_hyphen_values = true,
        short = 'd',
        long,
        value_name = "DUR",
        default_value = "10s"
    )]
    pub duration: String,
    /// Time at the start of each target's first window whose results are discarded
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "DUR",
        default_value = "1s"
    )]
    pub warmup: String,
    /// Bytes per message (echo, connect), or per counted unit (bulk) [default: 64; bulk 16384]
    #[arg(allow_hyphen_values = true, short = 's', long, value_name = "BYTES")]
    pub message_size: Option<String>,
    /// Open loop: total messages per second over all connections of a target
    #[arg(
        allow_hyphen_values = true,
        short = 'r',
        long,
        value_name = "MSGS_PER_SEC"
    )]
    pub rate: Option<String>,
    /// What each connection does
    #[arg(short = 'm', long, value_enum, default_value = "echo")]
    pub mode: Mode,
    /// Print one JSON object (schema in the crate docs) instead of the summary
    #[arg(long)]
    pub json: bool,
    /// Bulk mode: up (to a sink), down (from a source), both (echoed)
    #[arg(long, value_enum, default_value = "both")]
    pub bulk_direction: Direction,
    /// Seed of the verification stream (echo-backend's `source` default is 1)
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "N",
        default_value = "1"
    )]
    pub seed: String,
    /// Source addresses 127.0.0.1, 127.0.0.2, ... to spread connections over
    /// (loopback IPv4 targets only) [default: enough for the ephemeral ports]
    #[arg(allow_hyphen_values = true, long, value_name = "N")]
    pub sources: Option<String>,
    /// Connections opened per second while setting up or re-opening
    #[arg(allow_hyphen_values = true, long, value_name = "N", default_value_t = DEFAULT_CONNECT_RATE.to_string())]
    pub connect_rate: String,
    /// A message (or connect) outstanding this long is an error and its
    /// connection is re-opened
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "DUR",
        default_value = "5s"
    )]
    pub timeout: String,
    /// HTTP mode: the path requested
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "PATH",
        default_value = "/"
    )]
    pub http_path: String,
    /// Event-loop threads; connections are split between them
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "N",
        default_value = "1"
    )]
    pub threads: String,
    /// Close this fraction of messages' connections (0..=1) with a reset
    /// (SO_LINGER 0) as soon as the message is written, before its reply:
    /// churn with resets in flight; echo, http and connect modes
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "FRACTION",
        default_value = "0"
    )]
    pub reset_ratio: String,
    /// With several targets: how long each target's window lasts
    #[arg(
        allow_hyphen_values = true,
        long,
        value_name = "DUR",
        default_value = "1s"
    )]
    pub window: String,
    /// Once a second, one machine-readable `loadgen progress ...` line on
    /// stderr (elapsed and total seconds, target, rate, throughput, errors)
    /// instead of the terminal's live line
    #[arg(long)]
    pub progress: bool,
    /// Write the latencies as an HdrHistogram interval log (µs, one
    /// histogram per target per second, tagged with the target) to FILE,
    /// for `cargo xtask merge` across load hosts
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
}

/// A checked run description.
#[derive(Debug, Clone)]
pub struct Config {
    /// As typed (for reports) and resolved.
    pub targets: Vec<(String, SocketAddr)>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub message_size: usize,
    pub rate: Option<u64>,
    pub mode: Mode,
    pub json: bool,
    pub direction: Direction,
    pub seed: u64,
    /// Local addresses to bind before connecting; empty: let the kernel choose.
    pub sources: Vec<SocketAddr>,
    pub connect_rate: u64,
    pub timeout: Duration,
    pub http_path: String,
    pub threads: usize,
    pub window: Duration,
    /// The fraction of messages whose connection is reset once the
    /// message is written (`--reset-ratio`).
    pub reset_ratio: f64,
    /// `--progress`: machine-readable progress lines on stderr.
    pub progress: bool,
    /// `--hlog`: where the interval log goes.
    pub hlog: Option<PathBuf>,
}

impl Config {
    /// Whether messages are sent on a schedule (`--rate`) rather than
    /// as soon as the last reply arrived.
    pub fn open_loop(&self) -> bool {
        self.rate.is_some()
    }
}

pub use netio::cli::parse_duration;

fn bad(opt: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("invalid {opt} \"{value}\": {why}")
}

fn number<T>(opt: &str, value: &str, lo: T, hi: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v: T = value
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| bad(opt, value, "expected a whole number"))?;
    if v < lo || v > hi {
        return Err(bad(opt, value, format!("must be {lo}..={hi}")));
    }
    Ok(v)
}

fn dur(opt: &str, value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|why| bad(opt, value, why))
}

/// Resolves `ADDR:PORT` (a name is looked up; the first address wins).
fn target(value: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(bad("--target", value, "port 0 cannot be connected to"));
        }
        return Ok(a);
    }
    if !value.contains(':') {
        return Err(bad("--target", value, "expected ADDR:PORT"));
    }
    let mut addrs = value
        .to_socket_addrs()
        .map_err(|e| bad("--target", value, e))?;
    addrs
        .next()
        .ok_or_else(|| bad("--target", value, "the name has no address"))
}

/// The number of local ports the kernel hands out for outgoing connections.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            Some((it.next()??, it.next()??))
        })
        .map_or(28_232, |(lo, hi)| hi.saturating_sub(lo) + 1)
}

/// Checks the command line and turns it into a [`Config`].
pub fn resolve(cli: Cli) -> Result<Config, String> {
    let mut targets = Vec::with_capacity(cli.targets.len());
    for t in &cli.targets {
        targets.push((t.clone(), target(t)?));
    }
    let connections = number("--connections", &cli.connections, 1usize, 1_000_000)?;
    let duration = dur("--duration", &cli.duration)?;
    if duration.is_zero() {
        return Err(bad("--duration", &cli.duration, "must be more than 0"));
    }
    let warmup = dur("--warmup", &cli.warmup)?;
    let window = dur("--window", &cli.window)?;
    if window < Duration::from_millis(10) {
        return Err(bad("--window", &cli.window, "must be at least 10ms"));
    }
    let timeout = dur("--timeout", &cli.timeout)?;
    if timeout < Duration::from_millis(1) {
        return Err(bad("--timeout", &cli.timeout, "must be at least 1ms"));
    }
    let default_size = if cli.mode == Mode::Bulk { 16_384 } else { 64 };
    let message_size = match &cli.message_size {
        None => default_size,
        Some(v) => {
            let lo = if cli.mode == Mode::Connect { 0 } else { 1 };
            number("--message-size", v, lo, MAX_MESSAGE_SIZE)?
        }
    };
    let rate = match &cli.rate {
        None => None,
        Some(v) => Some(number("--rate", v, 1u64, 100_000_000)?),
    };
    if rate.is_some() && cli.mode == Mode::Bulk {
        return Err(bad(
            "--rate",
            cli.rate.as_deref().unwrap_or(""),
            "bulk mode streams as fast as it can; --rate applies to echo, http and connect",
        ));
    }
    let seed = number("--seed", &cli.seed, 0u64, u64::MAX)?;
    let reset_ratio = cli
        .reset_ratio
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| {
            bad(
                "--reset-ratio",
                &cli.reset_ratio,
                "expected a fraction 0..=1",
            )
        })?;
    if reset_ratio > 0.0 && cli.mode == Mode::Bulk {
        return Err(bad(
            "--reset-ratio",
            &cli.reset_ratio,
            "bulk mode has no messages to cut; --reset-ratio applies to echo, http and connect",
        ));
    }
    let connect_rate = number("--connect-rate", &cli.connect_rate, 1u64, 10_000_000)?;
    let threads = number("--threads", &cli.threads, 1usize, 256)?;
    if threads > connections {
        return Err(bad(
            "--threads",
            &cli.threads,
            format!("more threads than --connections ({connections})"),
        ));
    }
    let p = &cli.http_path;
    if !p.starts_with('/') || p.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad(
            "--http-path",
            p,
            "must start with / and contain no spaces or control characters",
        ));
    }
    let loopback_v4 = targets
        .iter()
        .all(|(_, a)| matches!(a.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    let nsources = match &cli.sources {
        Some(v) => {
            let n = number("--sources", v, 1usize, 254)?;
            if n > 1 && !loopback_v4 {
                return Err(bad(
                    "--sources",
                    v,
                    "several source addresses need 127.x.x.x targets",
                ));
            }
            n
        }
        None if !loopback_v4 => 1,
        None => {
            // Keep each source's share of a target well inside the
            // ephemeral range. Connect mode leaves ports in TIME_WAIT
            // behind it, so spread it over a few addresses regardless.
            let per_source = ephemeral_ports() * 3 / 4;
            let need = connections.div_ceil(per_source.max(1));
            if cli.mode == Mode::Connect {
                need.max(8)
            } else {
                need
            }
        }
    };
    let sources = if nsources > 1 {
        (0..nsources)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i as u8)), 0))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Config {
        targets,
        connections,
        duration,
        warmup,
        message_size,
        rate,
        mode: cli.mode,
        json: cli.json,
        direction: cli.bulk_direction,
        seed,
        sources,
        connect_rate,
        timeout,
        http_path: cli.http_path,
        threads,
        window,
        reset_ratio,
        progress: cli.progress,
        hlog: cli.hlog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["loadgen"];
        v.extend_from_slice(args);
        resolve(Cli::try_parse_from(v).map_err(|e| e.to_string())?)
    }

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_are_closed_loop_echo() {
        let c = cfg(&["--target", "127.0.0.1:9"]).expect("config");
        assert_eq!(c.mode, Mode::Echo);
        assert!(!c.open_loop());
        assert_eq!(c.connections, 10);
        assert_eq!(c.message_size, 64);
        assert_eq!(c.duration, Duration::from_secs(10));
        assert!(c.sources.is_empty());
    }

    #[test]
    fn bad_values_name_the_option_and_value() {
        let e =
            cfg(&["--target", "127.0.0.1:9", "--duration", "10x"]).expect_err("must be rejected");
        assert!(e.contains("--duration \"10x\""), "{e}");
        let e = cfg(&["--target", "nowhere"]).expect_err("must be rejected");
        assert!(e.contains("--target \"nowhere\""), "{e}");
        let e =
            cfg(&["--target", "127.0.0.1:9", "--connections", "0"]).expect_err("must be rejected");
        assert!(e.contains("--connections \"0\""), "{e}");
        let e = cfg(&["--target", "127.0.0.1:9", "--mode", "bulk", "--rate", "5"])
            .expect_err("must be rejected");
        assert!(e.contains("--rate"), "{e}");
        for bad in ["1.5", "-0.1", "x", "NaN"] {
            let e = cfg(&["--target", "127.0.0.1:9", "--reset-ratio", bad]).expect_err(bad);
            assert!(e.contains(&format!("--reset-ratio \"{bad}\"")), "{e}");
        }
        let e = cfg(&[
            "--target",
            "127.0.0.1:9",
            "-m",
            "bulk",
            "--reset-ratio",
            "0.1",
        ])
        .expect_err("bulk has no messages");
        assert!(e.contains("--reset-ratio"), "{e}");
        let c = cfg(&["--target", "127.0.0.1:9", "--reset-ratio", "0.25"]).expect("config");
        assert_eq!(c.reset_ratio, 0.25);
    }

    #[test]
    fn many_connections_get_several_sources() {
        let c = cfg(&["--target", "127.0.0.1:9", "--connections", "100000"]).expect("config");
        assert!(c.sources.len() >= 4, "{:?}", c.sources);
        let c = cfg(&["--target", "127.0.0.1:9", "--sources", "3"]).expect("config");
        assert_eq!(c.sources.len(), 3);
        assert_eq!(c.sources[2].to_string(), "127.0.0.3:0");
    }
}
