//! The command line: every option with its `--help` text. Merged with the
//! config file and checked by [`super::resolve`].

use super::{Balance, Engine};
use clap::Parser;
use std::path::PathBuf;

/// The command line.
#[derive(Debug, Parser, Default, Clone)]
#[command(
    name = "proxy",
    version,
    about = "A layer-4 TCP proxy on an edge-triggered epoll loop.",
    long_about = "A layer-4 TCP proxy on an edge-triggered epoll loop.\n\n\
        Relays every byte between each client and a backend, with backpressure \
        and half-close. Prints `listening on ADDR:PORT` once bound. SIGTERM or \
        SIGINT stops accepting, lets open connections finish (up to \
        --drain-timeout), prints stats and exits 0; SIGUSR1 prints stats; \
        SIGHUP reloads the --config file (backends, balancing, health, \
        timeouts, access lists change in place; open connections go on); \
        SIGUSR2 (binary upgrade) is not supported yet: it is logged and \
        ignored. Logging \
        never holds up the relay: lines a full or closed stderr cannot take \
        are dropped and counted (log_dropped).",
    disable_help_flag = true
)]
pub struct Cli {
    /// Listen address, IPv4 or IPv6 [default: 0.0.0.0]
    #[arg(short = 'l', long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Listen port; 0 picks any free port [default: 8080]
    #[arg(short = 'p', long, value_name = "PORT", allow_hyphen_values = true)]
    pub port: Option<String>,
    /// Backend address, with or without a port (e.g. 10.0.0.5, [::1]:9000,
    /// localhost:8081); repeat for several [default: 127.0.0.1]
    #[arg(short = 'b', long = "backend", value_name = "ADDR[:PORT]")]
    pub backends: Vec<String>,
    /// Port for backends given without one [default: 8081]
    #[arg(short = 'P', long, value_name = "PORT", allow_hyphen_values = true)]
    pub backend_port: Option<String>,
    /// TOML config file; command-line options override it
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client connections held at once over all workers, each worker
    /// holding its share [default: what the open-files limit allows: (limit
    /// - 32 - workers x (8 + 2 x pipes)) / 2, two descriptors a connection]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_connections: Option<String>,
    /// Bytes per buffer; each direction of a busy connection holds one [default: 8192]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub buffer_size: Option<String>,
    /// Buffers in the pool, shared by a worker's connections; memory is only
    /// touched as buffers are used [default: 2 x max-connections]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub buffers: Option<String>,
    /// Large buffers per worker, lent to directions that stream (a read
    /// filled the buffer); 0 turns them off [default: 16]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub large_buffers: Option<String>,
    /// Bytes per large buffer [default: 65536]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub large_buffer_size: Option<String>,
    /// Pipes per worker, lent to directions that stream: their bytes then
    /// move with splice(2), never copied through the proxy; each pipe
    /// costs two descriptors; 0 turns splicing off [default: 16, fewer
    /// under a small open-files limit: pipes take at most a quarter of the
    /// descriptors, connections come first]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pipes: Option<String>,
    /// Capacity asked for each pipe, at most /proc/sys/fs/pipe-max-size [default: 262144]
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub pipe_size: Option<String>,
    /// Event-loop workers sharing the port via SO_REUSEPORT [default: 1]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub workers: Option<String>,
    /// Serve Prometheus text metrics at http://ADDR:PORT/metrics, and the
    /// backends at /backends (text) and /backends.json
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Change backends at runtime through a unix socket at PATH, mode
    /// 0600: show backends, set backend NAME state ready|drain|maint, set
    /// backend NAME weight N (off unless set)
    #[arg(long, value_name = "PATH")]
    pub admin_socket: Option<String>,
    /// How clients are spread over backends [default: round-robin]
    #[arg(long, value_enum)]
    pub balance: Option<Balance>,
    /// On SIGTERM, how long open connections may take to finish, e.g. 10s, 500ms [default: 10s]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub drain_timeout: Option<String>,
    /// When one side resets, deliver what was already received from it to
    /// the other side for up to DUR (until that side's kernel send queue is
    /// empty), then pass the reset on; 0 passes it on at once [default: 10s]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub reset_flush_timeout: Option<String>,
    /// Give up on a backend connect after DUR and reset the client; 0 waits
    /// as long as the kernel does [default: 5s]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub connect_timeout: Option<String>,
    /// Close a connection with no traffic either way for DUR (off unless set)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub idle_timeout: Option<String>,
    /// After traffic, keep polling without sleeping for DUR (e.g. 50us)
    /// before blocking: lower latency for a core's worth of CPU while
    /// busy; an idle proxy still sleeps (off unless set)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub busy_poll: Option<String>,
    /// The event loop: epoll (edge-triggered readiness, one system call
    /// an operation) or uring (io_uring: multishot receives into a
    /// kernel-fed buffer ring, batched submissions); uring fails at start
    /// if the kernel lacks or disables io_uring [default: epoll]
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<Engine>,
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
    /// Backends tried for one client before it is reset, the first
    /// included: a refused, reset or timed-out connect (or a reset before
    /// any byte reached the backend) moves the client, and the bytes it
    /// sent meanwhile, to the next backend up [default: 3]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub connect_retries: Option<String>,
    /// Connect failures in a row that mark a backend down: it then gets no
    /// new clients until --fail-timeout has passed; 0 never marks one down
    /// [default: 3]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub fall: Option<String>,
    /// How long a backend marked down stays out before it is tried again
    /// (one success brings it back) [default: 10s]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub fail_timeout: Option<String>,
    /// After a backend comes back up (from down), ramp its weight linearly
    /// from almost nothing to the full weight over DUR; the default for
    /// every [[backend]] table's slow-start; 0 is off [default: 0]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub slow_start: Option<String>,
    /// Clients each worker holds waiting while every backend up is at its
    /// max-connections ([[backend]] key); more are reset
    /// [default: as many as the worker's connections]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub queue: Option<String>,
    /// How long a client may wait in the queue before it is reset
    /// [default: --connect-timeout, or 5s if that is 0]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub queue_timeout: Option<String>,
    /// What a new client gets while no backend is up: sent to the one down
    /// longest (it may be back), or reset at once
    /// [default: least-recently-failed]
    #[arg(long, value_enum, value_name = "POLICY")]
    pub all_down: Option<crate::backends::AllDown>,
    /// How often backend host names are looked up again, on one resolver
    /// thread (started only when a backend is given by name); the system
    /// resolver gives no TTL, so none is used; 0 looks them up only at
    /// start and on reload [default: 10s]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub resolve_interval: Option<String>,
    /// Check every backend actively, this often: a TCP connect unless the
    /// config file's [health-check] table asks for more (this overrides
    /// its interval) [default: no checks]
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub check_interval: Option<String>,
    /// Passed checks in a row that bring a backend down by its check back
    /// (the [health-check] table's rise) [default: 2]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub check_rise: Option<String>,
    /// Failed checks in a row that take a backend down (the
    /// [health-check] table's fall) [default: 3]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub check_fall: Option<String>,
    /// Listen backlog [default: 1024]
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub backlog: Option<String>,
    /// Print help
    #[arg(short = 'h', long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}
