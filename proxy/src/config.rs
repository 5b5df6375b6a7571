//! Command line and config file, merged and checked into one [`Config`]
//! before anything is bound. Every mistake becomes one line naming the
//! option and the value. (Longer than most files: `resolve_within` is one
//! flat sequence of key-by-key checks, in the order their mistakes are
//! reported; the command line itself is in `config_cli.rs`.)

use crate::config_file::FileConfig;
use crate::sizes;
pub use netio::cli::parse_duration;
use serde::Deserialize;
use std::fmt::Display;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the proxy needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// At least one, and at least one of them not a backup.
    pub backends: Vec<crate::backends::BackendSpec>,
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
    /// The admin socket's path (`--admin-socket`), checked to be bindable.
    pub admin_socket: Option<PathBuf>,
    pub balance: Balance,
    pub drain_timeout: Duration,
    /// Backends tried for one client, the first included.
    pub connect_retries: u32,
    /// Passive health: failures in a row that mark a backend down, and
    /// for how long.
    pub health: crate::backends::Health,
    /// What new clients get while no backend is up.
    pub all_down: crate::backends::AllDown,
    /// Clients each worker holds waiting for a backend under its
    /// `max-connections` (`None`: as many as its table holds).
    pub queue: Option<usize>,
    /// How long one may wait there before it is reset.
    pub queue_timeout: Duration,
    /// After one side resets, how long the other may take to receive what
    /// was already read from the first before the reset is passed on;
    /// zero passes it on at once.
    pub reset_flush_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// After activity, poll without sleeping for this long before blocking.
    pub busy_poll: Option<Duration>,
    /// The event loop (checked to be usable on this kernel).
    pub engine: Engine,
    /// Settings given that do not apply, one line each for the start-up.
    pub warnings: Vec<String>,
    pub log_connections: bool,
    pub backlog: i32,
    pub acl: crate::acl::Acl,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// How often backend host names are looked up again (zero: never).
    pub resolve_interval: Duration,
    /// The open-files limit, when the connection count or the pipe count
    /// was derived from it (neither given), for the start-up line.
    pub derived_from: Option<u64>,
    /// No backend was given anywhere: `backends` is the default,
    /// 127.0.0.1 on the backend port.
    pub backends_default: bool,
}

impl Config {
    /// The first generation of the backend set the workers share.
    pub fn backend_set(&self) -> crate::backends::Backends {
        crate::backends::Backends::new(self.backends.clone(), self.health, self.balance)
            .with_all_down(self.all_down)
    }
}

/// The event loop each worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Edge-triggered epoll: readiness, then one system call an operation.
    #[default]
    Epoll,
    /// io_uring: operations submitted and completed through shared rings.
    Uring,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Epoll => "epoll",
            Engine::Uring => "uring",
        }
    }
}

/// How a new client picks its backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    RoundRobin,
    LeastConnections,
    SourceHash,
}

// The command line, in its own file to keep this one about merging and
// checking.
#[path = "config_cli.rs"]
mod cli;
pub use cli::Cli;

/// Names a setting in an error line the way the user gave it: the option,
/// or the key in the config file.
struct Names<'a> {
    file: Option<&'a Path>,
}

impl Names<'_> {
    /// `invalid --NAME "VALUE": WHY`, or for a value from the config file
    /// `invalid config "FILE": key NAME "VALUE": WHY`.
    fn bad(&self, name: &str, from_cli: bool, value: impl Display, why: impl Display) -> String {
        match self.file {
            Some(path) if !from_cli => format!(
                "invalid config \"{}\": key {name} \"{value}\": {why}",
                path.display()
            ),
            _ => format!("invalid --{name} \"{value}\": {why}"),
        }
    }

    /// A number from the command line (text) or the config file (typed),
    /// in `lo..=hi`; `None` if neither gave it. Also says where it came from.
    fn number<T>(
        &self,
        name: &str,
        cli: &Option<String>,
        file: Option<T>,
        lo: T,
        hi: T,
    ) -> Result<Option<(T, bool)>, String>
    where
        T: std::str::FromStr + PartialOrd + Display + Copy,
    {
        if let Some(s) = cli {
            let v = netio::cli::number(s, lo, hi).map_err(|why| self.bad(name, true, s, why))?;
            return Ok(Some((v, true)));
        }
        match file {
            Some(v) if v < lo || v > hi => {
                Err(self.bad(name, false, v, format!("must be {lo}..={hi}")))
            }
            v => Ok(v.map(|v| (v, false))),
        }
    }

    /// A duration from the command line or the config file.
    fn duration(
        &self,
        name: &str,
        cli: &Option<String>,
        file: &Option<String>,
    ) -> Result<Option<(Duration, String, bool)>, String> {
        let Some((s, from_cli)) = text(cli, file) else {
            return Ok(None);
        };
        let d = parse_duration(s).map_err(|why| self.bad(name, from_cli, s, why))?;
        Ok(Some((d, s.to_string(), from_cli)))
    }
}

/// The command line's value, else the file's, and whether it came from
/// the command line.
fn text<'a>(cli: &'a Option<String>, file: &'a Option<String>) -> Option<(&'a str, bool)> {
    match (cli, file) {
        (Some(s), _) => Some((s, true)),
        (None, Some(s)) => Some((s, false)),
        (None, None) => None,
    }
}

/// How often backend host names are looked up again when
/// `--resolve-interval` is not given: HAProxy's default `hold valid`.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(10);

/// Pipes per worker when `--pipes` is not given (fewer under a small
/// open-files limit; see [`netio::budget::pipes`]).
pub const DEFAULT_PIPES: usize = 16;

/// Builds the validated config. `nofile` is the soft open-files limit
/// (already raised), used for the default connection budget and to refuse
/// a table the descriptors cannot hold; memory limits are read here.
pub fn resolve(cli: Cli, nofile: u64) -> Result<Config, String> {
    resolve_within(cli, nofile, &sizes::Memory::of_this_process())
}

/// [`resolve`] against the memory limits `mem`.
pub fn resolve_within(cli: Cli, nofile: u64, mem: &sizes::Memory) -> Result<Config, String> {
    let file = match &cli.config {
        Some(path) => crate::config_file::load(path)?,
        None => FileConfig::default(),
    };
    let names = Names {
        file: cli.config.as_deref(),
    };
    let listen_ip = match text(&cli.listen, &file.listen) {
        Some((s, from_cli)) => parse_ip(s).map_err(|e| names.bad("listen", from_cli, s, e))?,
        None => IpAddr::from([0, 0, 0, 0]),
    };
    let port = names.number("port", &cli.port, file.port, 0, u16::MAX)?;
    let port = port.map_or(8080, |p| p.0);
    // A backend on port 0 cannot be connected to.
    let backend_port = names.number(
        "backend-port",
        &cli.backend_port,
        file.backend_port,
        1,
        u16::MAX,
    )?;
    let backend_port = backend_port.map_or(8081, |p| p.0);
    let slow_start = names
        .duration("slow-start", &cli.slow_start, &file.slow_start)?
        .map_or(Duration::ZERO, |d| d.0);
    let backends_default = cli.backends.is_empty() && file.backend.is_none();
    let backends = backends::resolve(
        &cli.backends,
        file.backend,
        checks::with_cli(file.health_check.clone(), &cli, &names)?.as_ref(),
        &names,
        backend_port,
        slow_start,
    )?;

    let workers_given = names.number("workers", &cli.workers, file.workers, 1, 256)?;
    let workers = workers_given.map_or(1, |w| w.0);
    let engine = match (cli.engine, file.engine) {
        (Some(e), _) => (e, true),
        (None, Some(e)) => (e, false),
        (None, None) => (Engine::Epoll, true),
    };
    if engine.0 == Engine::Uring {
        if let Err(why) = netio::sys::uring::usable() {
            return Err(names.bad("engine", engine.1, "uring", why));
        }
    }
    let engine = engine.0;
    let pipes_given = names.number("pipes", &cli.pipes, file.pipes, 0, 4096)?;
    // Pipes are an optimisation: under a small open-files limit they give
    // way to connections unless the user asked for them.
    let warnings: Vec<String> = Vec::new();
    let pipes = match pipes_given {
        Some((n, _)) => n,
        None => netio::budget::pipes(nofile, workers as u64, DEFAULT_PIPES as u64) as usize,
    };
    let pipe_size = names.number("pipe-size", &cli.pipe_size, file.pipe_size, 4096, 64 << 20)?;
    let pipe_size = pipe_size.map_or(262_144, |p| p.0);
    let budget = netio::budget::connections(nofile, workers as u64, pipes as u64);
    let max_given = names.number(
        "max-connections",
        &cli.max_connections,
        file.max_connections,
        1,
        u32::MAX as usize,
    )?;
    let max_connections = match max_given {
        // Each worker holds its share; a worker with none would leave the
        // clients the kernel hands its listener waiting forever.
        Some((n, from_cli)) if n < workers => {
            return Err(names.bad(
                "max-connections",
                from_cli,
                n,
                format!("must be at least --workers ({workers})"),
            ))
        }
        Some((n, _)) => n,
        None => usize::try_from(budget).unwrap_or(usize::MAX).max(workers),
    };
    let fd_need = netio::budget::needed(max_connections as u64, workers as u64, pipes as u64);
    if fd_need > nofile {
        // What the limit really allows (`budget` is at least 1, for the
        // default), and what the smallest proxy would need.
        let fixed = netio::budget::needed(0, workers as u64, pipes as u64);
        let fits = nofile.saturating_sub(fixed) / 2;
        let least = netio::budget::needed(workers as u64, workers as u64, pipes as u64);
        let setup = format!(
            "{workers} worker{} and {pipes} pipes a worker",
            if workers == 1 { "" } else { "s" }
        );
        let allows = if fits == 0 {
            format!(
                "the open-files limit {nofile} is too small for any connection with {setup} \
                 (at least {least} descriptors are needed); raise it (ulimit -n)"
            )
        } else {
            format!(
                "the open-files limit {nofile} allows at most {fits} connections with {setup} \
                 (2 descriptors each); raise the limit (ulimit -n) or ask for fewer"
            )
        };
        return Err(match (max_given, pipes_given) {
            (Some((n, c)), _) => names.bad("max-connections", c, n, allows),
            (None, Some((n, c))) => names.bad("pipes", c, n, allows),
            // Nothing the user gave is to blame.
            (None, None) => allows,
        });
    }
    let buffer_size = names.number(
        "buffer-size",
        &cli.buffer_size,
        file.buffer_size,
        64,
        16 << 20,
    )?;
    let (buffer_size, buffer_size_given) = (buffer_size.map_or(8192, |b| b.0), buffer_size);
    // The largest worker's share (see `share`).
    let per_worker = netio::budget::share(max_connections, workers, 0);
    let buffers_given =
        names.number("buffers", &cli.buffers, file.buffers, 0, u32::MAX as usize)?;
    let buffers = buffers_given.map_or(2 * per_worker, |b| b.0);
    // Fewer than two buffers a connection lets directions of different
    // connections wait on each other: a backend that writes before it
    // reads can then stall the pool for good. Untouched buffers cost
    // address space, not memory, so the floor is free.
    if let Some((b, from_cli)) = buffers_given.filter(|b| b.0 < 2 * per_worker) {
        return Err(names.bad(
            "buffers",
            from_cli,
            b,
            format!(
                "must be at least 2 per connection of a worker ({}); unused buffers take no memory",
                2 * per_worker
            ),
        ));
    }
    let large_given = names.number(
        "large-buffers",
        &cli.large_buffers,
        file.large_buffers,
        0,
        1 << 20,
    )?;
    let large_buffers = large_given.map_or(16, |l| l.0);
    let large_size_given = names.number(
        "large-buffer-size",
        &cli.large_buffer_size,
        file.large_buffer_size,
        64,
        16 << 20,
    )?;
    let large_buffer_size = large_size_given.map_or(65536, |l| l.0);
    let plan = sizes::Plan {
        workers,
        connections: per_worker,
        buffers,
        buffer_size,
        large_buffers,
        large_buffer_size,
    };
    if let Err(why) = sizes::check(&plan, mem) {
        // Blame what the user gave, biggest contributor first.
        let given = [
            ("large-buffers", large_given),
            ("large-buffer-size", large_size_given),
            ("buffers", buffers_given),
            ("max-connections", max_given),
            ("buffer-size", buffer_size_given),
            ("workers", workers_given),
        ];
        let large_share = (large_buffers as u64).saturating_mul(large_buffer_size as u64);
        let small_share = (buffers as u64).saturating_mul(buffer_size as u64);
        let order: Vec<_> = if large_share > small_share {
            given.iter().collect()
        } else {
            given[2..].iter().chain(&given[..2]).collect()
        };
        return Err(match order.into_iter().find_map(|(n, g)| g.map(|g| (*n, g))) {
            Some((name, (v, from_cli))) => names.bad(name, from_cli, v, why),
            None => format!("the open-files limit {nofile} allows {max_connections} connections, but that {why}; set a smaller --max-connections"),
        });
    }
    let metrics = match text(&cli.metrics, &file.metrics) {
        Some((s, from_cli)) => Some(s.parse::<SocketAddr>().map_err(|_| {
            names.bad(
                "metrics",
                from_cli,
                s,
                "expected ADDR:PORT, e.g. 127.0.0.1:9100 or [::1]:9100",
            )
        })?),
        None => None,
    };
    let admin_socket = match text(&cli.admin_socket, &file.admin_socket) {
        Some((s, from_cli)) => Some(
            crate::admin::check_path(s).map_err(|e| names.bad("admin-socket", from_cli, s, e))?,
        ),
        None => None,
    };
    let drain_timeout = names
        .duration("drain-timeout", &cli.drain_timeout, &file.drain_timeout)?
        .map_or(Duration::from_secs(10), |d| d.0);
    let reset_flush_timeout = names
        .duration(
            "reset-flush-timeout",
            &cli.reset_flush_timeout,
            &file.reset_flush_timeout,
        )?
        .map_or(Duration::from_secs(10), |d| d.0);
    let timeout = |name: &str, cli: &Option<String>, file: &Option<String>, default| match names
        .duration(name, cli, file)?
    {
        Some((d, _, _)) if d.is_zero() => Ok::<_, String>(None),
        Some((d, s, from_cli)) if d < Duration::from_millis(10) => {
            Err(names.bad(name, from_cli, s, "must be at least 10ms (or 0 for none)"))
        }
        Some((d, _, _)) => Ok(Some(d)),
        None => Ok(default),
    };
    let connect_timeout = timeout(
        "connect-timeout",
        &cli.connect_timeout,
        &file.connect_timeout,
        Some(Duration::from_secs(5)),
    )?;
    let idle_timeout = timeout("idle-timeout", &cli.idle_timeout, &file.idle_timeout, None)?;
    let busy_poll = match names.duration("busy-poll", &cli.busy_poll, &file.busy_poll)? {
        Some((d, _, _)) if d.is_zero() => None,
        Some((d, s, from_cli)) if d < Duration::from_micros(1) => {
            return Err(names.bad("busy-poll", from_cli, s, "must be at least 1us"))
        }
        Some((d, s, from_cli)) if d > Duration::from_secs(1) => {
            return Err(names.bad("busy-poll", from_cli, s, "must be at most 1s"))
        }
        Some((d, _, _)) => Some(d),
        None => None,
    };
    let cidrs = |name: &str, cli: &[String], file: &Option<Vec<String>>| {
        let (list, from_cli) = if cli.is_empty() {
            (file.clone().unwrap_or_default(), false)
        } else {
            (cli.to_vec(), true)
        };
        list.iter()
            .map(|c| crate::acl::Cidr::parse(c).map_err(|e| names.bad(name, from_cli, c, e)))
            .collect::<Result<Vec<_>, _>>()
    };
    let acl = crate::acl::Acl {
        allow: cidrs("allow", &cli.allow, &file.allow)?,
        deny: cidrs("deny", &cli.deny, &file.deny)?,
    };
    let proxy_protocol = cli.proxy_protocol.or(file.proxy_protocol);
    if proxy_protocol.is_some() && buffer_size < crate::proxy_protocol::MAX_LEN {
        let from_cli = buffer_size_given.is_none_or(|b| b.1);
        return Err(names.bad(
            "buffer-size",
            from_cli,
            buffer_size,
            format!(
                "--proxy-protocol needs at least {}",
                crate::proxy_protocol::MAX_LEN
            ),
        ));
    }
    let connect_retries = names
        .number(
            "connect-retries",
            &cli.connect_retries,
            file.connect_retries,
            1,
            64,
        )?
        .map_or(3, |n| n.0);
    let fall = names
        .number("fall", &cli.fall, file.fall, 0, 1_000_000)?
        .map_or(3, |n| n.0);
    let fail_timeout = names
        .duration("fail-timeout", &cli.fail_timeout, &file.fail_timeout)?
        .map_or(Duration::from_secs(10), |d| d.0);
    let queue = names
        .number("queue", &cli.queue, file.queue, 0, u32::MAX as usize)?
        .map(|q| q.0);
    let queue_timeout =
        match names.duration("queue-timeout", &cli.queue_timeout, &file.queue_timeout)? {
            Some((d, s, from_cli)) if d < Duration::from_millis(10) => {
                return Err(names.bad("queue-timeout", from_cli, s, "must be at least 10ms"))
            }
            Some((d, _, _)) => d,
            // HAProxy's `timeout queue` also falls back to the connect timeout.
            None => connect_timeout.unwrap_or(Duration::from_secs(5)),
        };
    let resolve_interval = match names.duration(
        "resolve-interval",
        &cli.resolve_interval,
        &file.resolve_interval,
    )? {
        // Each round is a lookup per name on the resolver thread.
        Some((d, s, from_cli)) if !d.is_zero() && d < Duration::from_millis(10) => {
            return Err(names.bad(
                "resolve-interval",
                from_cli,
                s,
                "must be at least 10ms (or 0 for never)",
            ))
        }
        Some((d, _, _)) => d,
        None => DEFAULT_RESOLVE_INTERVAL,
    };
    let backlog = names.number("backlog", &cli.backlog, file.backlog, 1, i32::MAX)?;
    let backlog = backlog.map_or(1024, |b| b.0);
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
        admin_socket,
        balance: cli.balance.or(file.balance).unwrap_or(Balance::RoundRobin),
        drain_timeout,
        connect_retries,
        health: crate::backends::Health { fall, fail_timeout },
        all_down: cli.all_down.or(file.all_down).unwrap_or_default(),
        queue,
        queue_timeout,
        reset_flush_timeout,
        connect_timeout,
        idle_timeout,
        busy_poll,
        engine,
        warnings,
        log_connections: cli.log_connections || file.log_connections.unwrap_or(false),
        backlog,
        acl,
        proxy_protocol,
        resolve_interval,
        derived_from: (max_given.is_none() || pipes_given.is_none()).then_some(nofile),
        backends_default,
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if let Some((_, port)) = port_like_tail(s) {
        return Err(format!(
            "takes no port: give it with --port {port}, or write \"[{s}]\" for the IPv6 address {s}"
        ));
    }
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

/// A bare IPv6 address whose last group reads as a port, such as
/// `::1:9000`: both `[::1]:9000` and the address `::1:9000` are meant by
/// someone, so it is refused. Returns the address before the last colon
/// and the port-like group.
fn port_like_tail(s: &str) -> Option<(&str, &str)> {
    let (head, tail) = s.rsplit_once(':')?;
    let digits = !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit());
    (digits && s.parse::<Ipv6Addr>().is_ok() && head.parse::<Ipv6Addr>().is_ok())
        .then_some((head, tail))
}

/// A backend as written: an address, or a host name and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(SocketAddr),
    Host(String, u16),
}

/// `ADDR`, `ADDR:PORT`, `[V6]`, `[V6]:PORT`, `V6`, or `HOST[:PORT]`
/// (resolved once, now, to the first address the system resolver gives).
/// An IPv6 address with a port needs brackets, and the port must not be 0.
pub fn parse_backend(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    match parse_target(s, default_port)? {
        Target::Addr(addr) => Ok(addr),
        Target::Host(host, port) => lookup(&host, port),
    }
}

/// What `s` names as a backend, without looking a host name up.
pub fn parse_target(s: &str, default_port: u16) -> Result<Target, String> {
    let target = backend_target(s, default_port)?;
    if matches!(target, Target::Addr(a) if a.port() == 0) {
        return Err("port 0 cannot be connected to: must be 1..=65535".into());
    }
    Ok(target)
}

fn backend_target(s: &str, default_port: u16) -> Result<Target, String> {
    if let Some((addr, port)) = port_like_tail(s) {
        return Err(format!(
            "an IPv6 address with a port needs brackets: \"[{addr}]:{port}\" \
             (or \"[{s}]\" for the address {s} on the default port)"
        ));
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(Target::Addr(sa));
    }
    if let Ok(ip) = parse_ip(s) {
        return Ok(Target::Addr(SocketAddr::new(ip, default_port)));
    }
    if s.is_empty() {
        return Err("empty address".into());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (
            h,
            netio::cli::number(p, 1, u16::MAX).map_err(|e| format!("port \"{p}\": {e}"))?,
        ),
        _ => (s, default_port),
    };
    Ok(Target::Host(host.to_string(), port))
}

/// The address of `host` on `port`: the first the system resolver
/// (getaddrinfo, /etc/hosts and DNS as /etc/nsswitch.conf says) returns,
/// in its order of preference. Blocks for as long as the lookup takes.
pub fn lookup(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve \"{host}\": {e}"))?
        .next()
        .ok_or_else(|| format!("\"{host}\" has no address"))
}

#[path = "config_backends.rs"]
mod backends;
#[path = "config_checks.rs"]
mod checks;
pub use backends::WEIGHTS;

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
