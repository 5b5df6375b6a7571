//! Command line and config file, merged and checked into one [`Config`]
//! before anything is bound. Every mistake becomes one line naming the
//! option and the value.

use clap::Parser;
pub use netio::cli::parse_duration;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub backends: Vec<SocketAddr>,
    pub max_connections: usize,
    pub buffer_size: usize,
    pub buffers: usize,
    pub large_buffers: usize,
    pub large_buffer_size: usize,
    /// Pipes per worker for `splice(2)`; 0 turns splicing off.
    pub pipes: usize,
    pub pipe_size: usize,
    pub workers: usize,
    pub metrics: Option<SocketAddr>,
    pub balance: Balance,
    pub drain_timeout: Duration,
    /// After one side resets, how long the other may take to receive what
    /// was already read from the first before the reset is passed on;
    /// zero passes it on at once.
    pub reset_flush_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// After activity, poll without sleeping for this long before blocking.
    pub busy_poll: Option<Duration>,
    pub log_connections: bool,
    pub backlog: i32,
    pub acl: crate::acl::Acl,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
}

/// How a new client picks its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    RoundRobin,
    LeastConnections,
    SourceHash,
}

/// The command line.
#[derive(Debug, Parser, Default)]
#[command(
    name = "proxy",
    version,
    about = "A layer-4 TCP proxy on an edge-triggered epoll loop.",
    long_about = "A layer-4 TCP proxy on an edge-triggered epoll loop.\n\n\
        Relays every byte between each client and a backend, with backpressure \
        and half-close. Prints `listening on ADDR:PORT` once bound. SIGTERM or \
        SIGINT stops accepting, lets open connections finish (up to \
        --drain-timeout), prints stats and exits 0; SIGUSR1 prints stats; \
        SIGHUP (reload) and SIGUSR2 (binary upgrade) are not supported yet: \
        each is logged and ignored, and every connection goes on. Logging \
        never holds up the relay: lines a full or closed stderr cannot take \
        are dropped and counted (log_dropped).",
    disable_help_flag = true
)]
pub struct Cli {
    /// Listen address, IPv4 or IPv6 [default: 0.0.0.0]
    #[arg(short = 'l', long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Listen port; 0 picks any free port [default: 8080]
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<String>,
    /// Backend address, with or without a port (e.g. 10.0.0.5, [::1]:9000,
    /// localhost:8081); repeat for several [default: 127.0.0.1]
    #[arg(short = 'b', long = "backend", value_name = "ADDR[:PORT]")]
    pub backends: Vec<String>,
    /// Port for backends given without one [default: 8081]
    #[arg(short = 'P', long, value_name = "PORT")]
    pub backend_port: Option<String>,
    /// TOML config file; command-line options override it
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client connections held at once over all workers, each worker
    /// holding its share [default: what the open-files limit allows: (limit
    /// - 32 - workers x (8 + 2 x pipes)) / 2, two descriptors a connection]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Bytes per buffer; each direction of a busy connection holds one [default: 8192]
    #[arg(long, value_name = "BYTES")]
    pub buffer_size: Option<usize>,
    /// Buffers in the pool, shared by a worker's connections; memory is only
    /// touched as buffers are used [default: 2 x max-connections]
    #[arg(long, value_name = "N")]
    pub buffers: Option<usize>,
    /// Large buffers per worker, lent to directions that stream (a read
    /// filled the buffer); 0 turns them off [default: 16]
    #[arg(long, value_name = "N")]
    pub large_buffers: Option<usize>,
    /// Bytes per large buffer [default: 65536]
    #[arg(long, value_name = "BYTES")]
    pub large_buffer_size: Option<usize>,
    /// Pipes per worker, lent to directions that stream: their bytes then
    /// move with splice(2), never copied through the proxy; each pipe
    /// costs two descriptors; 0 turns splicing off [default: 16]
    #[arg(long, value_name = "N")]
    pub pipes: Option<usize>,
    /// Capacity asked for each pipe, at most /proc/sys/fs/pipe-max-size [default: 262144]
    #[arg(long, value_name = "BYTES")]
    pub pipe_size: Option<usize>,
    /// Event-loop workers sharing the port via SO_REUSEPORT [default: 1]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Serve Prometheus text metrics at http://ADDR:PORT/metrics
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// How clients are spread over backends [default: round-robin]
    #[arg(long, value_enum)]
    pub balance: Option<Balance>,
    /// On SIGTERM, how long open connections may take to finish, e.g. 10s, 500ms [default: 10s]
    #[arg(long, value_name = "DUR")]
    pub drain_timeout: Option<String>,
    /// When one side resets, deliver what was already received from it to
    /// the other side for up to DUR (until that side's kernel send queue is
    /// empty), then pass the reset on; 0 passes it on at once [default: 10s]
    #[arg(long, value_name = "DUR")]
    pub reset_flush_timeout: Option<String>,
    /// Give up on a backend connect after DUR and reset the client; 0 waits
    /// as long as the kernel does [default: 5s]
    #[arg(long, value_name = "DUR")]
    pub connect_timeout: Option<String>,
    /// Close a connection with no traffic either way for DUR (off unless set)
    #[arg(long, value_name = "DUR")]
    pub idle_timeout: Option<String>,
    /// After traffic, keep polling without sleeping for DUR (e.g. 50us)
    /// before blocking: lower latency for a core's worth of CPU while
    /// busy; an idle proxy still sleeps (off unless set)
    #[arg(long, value_name = "DUR")]
    pub busy_poll: Option<String>,
    /// Print one line per closed connection
    #[arg(long)]
    pub log_connections: bool,
    /// Serve only clients in this network, e.g. 10.0.0.0/8 (repeatable)
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Turn away clients in this network (repeatable; wins over --allow)
    #[arg(long = "deny", value_name = "CIDR")]
    pub deny: Vec<String>,
    /// Send a PROXY protocol header (v1 text, v2 binary) to backends
    #[arg(long, value_enum, value_name = "v1|v2")]
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// Listen backlog [default: 1024]
    #[arg(long, value_name = "N")]
    pub backlog: Option<i32>,
    /// Print help
    #[arg(short = 'h', long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// The config file: the same settings as the long options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub backend: Option<OneOrMany>,
    pub backend_port: Option<u16>,
    pub max_connections: Option<usize>,
    pub buffer_size: Option<usize>,
    pub buffers: Option<usize>,
    pub large_buffers: Option<usize>,
    pub large_buffer_size: Option<usize>,
    pub pipes: Option<usize>,
    pub pipe_size: Option<usize>,
    pub workers: Option<usize>,
    pub metrics: Option<String>,
    pub balance: Option<Balance>,
    pub drain_timeout: Option<String>,
    pub reset_flush_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub busy_poll: Option<String>,
    pub log_connections: Option<bool>,
    pub backlog: Option<i32>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
}

/// `backend = "a"` or `backend = ["a", "b"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Builds the validated config. `nofile` is the soft open-files limit
/// (already raised), used for the default connection budget.
pub fn resolve(cli: Cli, nofile: u64) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let listen_ip = match cli.listen.as_deref().or(file.listen.as_deref()) {
        Some(s) => parse_ip(s).map_err(|e| format!("invalid --listen \"{s}\": {e}"))?,
        None => IpAddr::from([0, 0, 0, 0]),
    };
    let port = match &cli.port {
        Some(s) => parse_port("--port", s)?,
        None => file.port.unwrap_or(8080),
    };
    let backend_port = match &cli.backend_port {
        Some(s) => parse_port("--backend-port", s)?,
        None => file.backend_port.unwrap_or(8081),
    };
    let backend_specs: Vec<String> = if !cli.backends.is_empty() {
        cli.backends.clone()
    } else {
        match file.backend {
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
            None => vec!["127.0.0.1".into()],
        }
    };
    if backend_specs.is_empty() {
        return Err("no backend given".into());
    }
    let backends = backend_specs
        .iter()
        .map(|s| {
            parse_backend(s, backend_port).map_err(|e| format!("invalid --backend \"{s}\": {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let workers = cli.workers.or(file.workers).unwrap_or(1);
    if !(1..=256).contains(&workers) {
        return Err(format!("invalid --workers \"{workers}\": must be 1..=256"));
    }
    let pipes = cli.pipes.or(file.pipes).unwrap_or(16);
    if pipes > 4096 {
        return Err(format!("invalid --pipes \"{pipes}\": must be at most 4096"));
    }
    let pipe_size = cli.pipe_size.or(file.pipe_size).unwrap_or(262_144);
    if !(4096..=(64 << 20)).contains(&pipe_size) {
        return Err(format!(
            "invalid --pipe-size \"{pipe_size}\": must be 4096..=67108864"
        ));
    }
    let budget = netio::budget::connections(nofile, workers as u64, pipes as u64);
    let max_connections = match cli.max_connections.or(file.max_connections) {
        Some(0) => return Err("invalid --max-connections \"0\": must be at least 1".into()),
        // Each worker holds its share; a worker with none would leave the
        // clients the kernel hands its listener waiting forever.
        Some(n) if n < workers => {
            return Err(format!(
                "invalid --max-connections \"{n}\": must be at least --workers ({workers})"
            ))
        }
        Some(n) => n,
        None => usize::try_from(budget).unwrap_or(usize::MAX).max(workers),
    };
    let buffer_size = cli.buffer_size.or(file.buffer_size).unwrap_or(8192);
    if !(64..=(16 << 20)).contains(&buffer_size) {
        return Err(format!(
            "invalid --buffer-size \"{buffer_size}\": must be 64..=16777216"
        ));
    }
    // The largest worker's share (see `share`).
    let per_worker = netio::budget::share(max_connections, workers, 0);
    let buffers = cli.buffers.or(file.buffers).unwrap_or(2 * per_worker);
    // Fewer than two buffers a connection lets directions of different
    // connections wait on each other: a backend that writes before it
    // reads can then stall the pool for good. Untouched buffers cost
    // address space, not memory, so the floor is free.
    if buffers < 2 * per_worker {
        return Err(format!(
            "invalid --buffers \"{buffers}\": must be at least 2 per connection of a worker ({}); \
             unused buffers take no memory",
            2 * per_worker
        ));
    }
    if buffers
        .checked_mul(buffer_size)
        .is_none_or(|b| b > (64usize << 30))
    {
        return Err(format!(
            "invalid --buffers \"{buffers}\": {buffers} x {buffer_size} bytes is more than 64 GiB"
        ));
    }
    let large_buffers = cli.large_buffers.or(file.large_buffers).unwrap_or(16);
    let large_buffer_size = cli
        .large_buffer_size
        .or(file.large_buffer_size)
        .unwrap_or(65536);
    if !(64..=(16 << 20)).contains(&large_buffer_size) {
        return Err(format!(
            "invalid --large-buffer-size \"{large_buffer_size}\": must be 64..=16777216"
        ));
    }
    if large_buffers > 1 << 20 {
        return Err(format!(
            "invalid --large-buffers \"{large_buffers}\": must be at most 1048576"
        ));
    }
    let metrics = match cli.metrics.as_deref().or(file.metrics.as_deref()) {
        Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
            format!("invalid --metrics \"{s}\": expected ADDR:PORT, e.g. 127.0.0.1:9100")
        })?),
        None => None,
    };
    let drain_timeout = match cli
        .drain_timeout
        .as_deref()
        .or(file.drain_timeout.as_deref())
    {
        Some(s) => {
            parse_duration(s).map_err(|e| format!("invalid --drain-timeout \"{s}\": {e}"))?
        }
        None => Duration::from_secs(10),
    };
    let reset_flush_timeout = match cli
        .reset_flush_timeout
        .as_deref()
        .or(file.reset_flush_timeout.as_deref())
    {
        Some(s) => {
            parse_duration(s).map_err(|e| format!("invalid --reset-flush-timeout \"{s}\": {e}"))?
        }
        None => Duration::from_secs(10),
    };
    let timeout = |opt: &str, v: Option<&str>, default: Option<Duration>| match v {
        Some(s) => match parse_duration(s).map_err(|e| format!("invalid {opt} \"{s}\": {e}"))? {
            d if d.is_zero() => Ok::<_, String>(None),
            d if d < Duration::from_millis(10) => Err(format!(
                "invalid {opt} \"{s}\": must be at least 10ms (or 0 for none)"
            )),
            d => Ok(Some(d)),
        },
        None => Ok(default),
    };
    let connect_timeout = timeout(
        "--connect-timeout",
        cli.connect_timeout
            .as_deref()
            .or(file.connect_timeout.as_deref()),
        Some(Duration::from_secs(5)),
    )?;
    let idle_timeout = timeout(
        "--idle-timeout",
        cli.idle_timeout.as_deref().or(file.idle_timeout.as_deref()),
        None,
    )?;
    let busy_poll = match cli.busy_poll.as_deref().or(file.busy_poll.as_deref()) {
        Some(s) => {
            match parse_duration(s).map_err(|e| format!("invalid --busy-poll \"{s}\": {e}"))? {
                d if d.is_zero() => None,
                d if d < Duration::from_micros(1) => {
                    return Err(format!("invalid --busy-poll \"{s}\": must be at least 1us"))
                }
                d if d > Duration::from_secs(1) => {
                    return Err(format!("invalid --busy-poll \"{s}\": must be at most 1s"))
                }
                d => Some(d),
            }
        }
        None => None,
    };
    let cidrs = |opt: &str, cli: &[String], file: &Option<Vec<String>>| {
        let list = if cli.is_empty() {
            file.clone().unwrap_or_default()
        } else {
            cli.to_vec()
        };
        list.iter()
            .map(|c| crate::acl::Cidr::parse(c).map_err(|e| format!("invalid {opt} \"{c}\": {e}")))
            .collect::<Result<Vec<_>, _>>()
    };
    let acl = crate::acl::Acl {
        allow: cidrs("--allow", &cli.allow, &file.allow)?,
        deny: cidrs("--deny", &cli.deny, &file.deny)?,
    };
    let proxy_protocol = cli.proxy_protocol.or(file.proxy_protocol);
    if proxy_protocol.is_some() && buffer_size < crate::proxy_protocol::MAX_LEN {
        return Err(format!(
            "invalid --buffer-size \"{buffer_size}\": --proxy-protocol needs at least {}",
            crate::proxy_protocol::MAX_LEN
        ));
    }
    let backlog = cli.backlog.or(file.backlog).unwrap_or(1024);
    if backlog < 1 {
        return Err(format!(
            "invalid --backlog \"{backlog}\": must be at least 1"
        ));
    }
    Ok(Config {
        listen: SocketAddr::new(listen_ip, port),
        backends,
        max_connections,
        buffer_size,
        buffers,
        large_buffers,
        large_buffer_size,
        pipes,
        pipe_size,
        workers,
        metrics,
        balance: cli.balance.or(file.balance).unwrap_or(Balance::RoundRobin),
        drain_timeout,
        reset_flush_timeout,
        connect_timeout,
        idle_timeout,
        busy_poll,
        log_connections: cli.log_connections || file.log_connections.unwrap_or(false),
        backlog,
        acl,
        proxy_protocol,
    })
}

fn load_file(path: &std::path::Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config \"{}\": {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().replace('\n', " ");
        let line = e
            .span()
            .map(|s| format!(" (line {})", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        format!("invalid config \"{}\"{line}: {msg}", path.display())
    })
}

fn parse_port(opt: &str, s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid {opt} \"{s}\": must be 0..=65535"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse() {
        return Ok(ip);
    }
    if bare == "localhost" {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    Err("not an IPv4 or IPv6 address".into())
}

/// `ADDR`, `ADDR:PORT`, `[V6]`, `[V6]:PORT`, `V6`, or `HOST[:PORT]`
/// (resolved once, now).
pub fn parse_backend(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = parse_ip(s) {
        return Ok(SocketAddr::new(ip, default_port));
    }
    if s.is_empty() {
        return Err("empty address".into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("port \"{p}\" must be 0..=65535"))?,
        ),
        _ => (s, default_port),
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{host}\": {e}"))?
        .next()
        .ok_or_else(|| format!("\"{host}\" has no address"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
