//! The proxies under test: ours, HAProxy (`mode tcp`), nginx (`stream`),
//! or none ("direct"). For peers the workbench writes the config itself,
//! on a free port, equivalent to ours: as many threads or workers as ours
//! (one unless `--workers`), HAProxy splicing when ours does, TCP_NODELAY,
//! long timeouts, and as many connections as our proxy's own fd budget
//! gives it under the same limit. Over 500 lines with its tests of each
//! peer's generated config.

use crate::netns::{Place, Role};
use crate::procs;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::Child;

/// How long a child may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Which proxy a measurement goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Ours, built in release, on its default engine (edge-triggered epoll).
    SelfProxy,
    /// Ours with `--engine uring`: the same binary, scraped the same way,
    /// measured as a subject of its own beside `self`.
    SelfUring,
    Haproxy,
    Nginx,
    /// No proxy: straight at the backend.
    Direct,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::SelfProxy,
        Kind::SelfUring,
        Kind::Haproxy,
        Kind::Nginx,
        Kind::Direct,
    ];
    /// The other proxies ours is measured against (the "best peer" is
    /// the best of these: ours on another engine is not a peer).
    pub const PEERS: [Kind; 2] = [Kind::Haproxy, Kind::Nginx];

    pub fn name(self) -> &'static str {
        match self {
            Kind::SelfProxy => "self",
            Kind::SelfUring => "self-uring",
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Direct => "direct",
        }
    }

    /// Ours, on each engine.
    pub const OURS: [Kind; 2] = [Kind::SelfProxy, Kind::SelfUring];

    /// The kind of [`Kind::name`] `name`.
    pub fn named(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this is one of the other proxies ours is measured against.
    pub fn is_peer(name: &str) -> bool {
        Kind::PEERS.iter().any(|k| k.name() == name)
    }

    /// The arguments that pick our proxy's engine (none for the default).
    fn engine_args(self) -> &'static [&'static str] {
        match self {
            Kind::SelfUring => &["--engine", "uring"],
            _ => &[],
        }
    }

    /// Why this proxy cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        match self {
            Kind::SelfUring if uring_disabled() => Some(
                "io_uring is disabled on this kernel (/proc/sys/kernel/io_uring_disabled = 2)"
                    .into(),
            ),
            Kind::Haproxy if procs::which("haproxy").is_none() => {
                Some("haproxy is not installed (apt-get install haproxy)".into())
            }
            Kind::Nginx if procs::which("nginx").is_none() => {
                Some("nginx is not installed (apt-get install nginx libnginx-mod-stream)".into())
            }
            Kind::Nginx if nginx_stream_module().is_none() => Some(
                "nginx's stream module is not installed (apt-get install libnginx-mod-stream)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// `--proxy` and `--compare` take the names of [`Kind::name`].
impl clap::ValueEnum for Kind {
    fn value_variants<'a>() -> &'a [Self] {
        &Kind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// A started proxy (or the backend itself, for direct).
pub struct Subject {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Our proxy's metrics endpoint.
    pub metrics: Option<SocketAddr>,
    pub process: Option<Child>,
    /// Where it runs, for reaching its metrics endpoint.
    pub place: Place,
}

impl Subject {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::pid)
    }

    pub fn check_alive(&mut self) -> Result<(), String> {
        self.process.as_mut().map_or(Ok(()), Child::check_alive)
    }

    /// Our proxy's counters, from its metrics endpoint where it runs;
    /// `None` for a subject without one.
    pub fn scrape(&self) -> Option<Result<BTreeMap<String, f64>, String>> {
        let m = self.metrics?;
        Some(self.place.within(Role::Proxy, || scrape(m)))
    }
}

/// How our proxy is configured by `args`, as far as its peers follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// `--workers N` (peers get as many threads or worker processes).
    pub workers: u64,
    /// `--pipes N`, pipes per worker (16 unless told; 0 = no splicing).
    pub pipes: u64,
}

impl Shape {
    pub fn of(args: &[String]) -> Shape {
        let value = |flag: &str, default: u64| {
            args.windows(2)
                .find(|w| w[0] == flag)
                .and_then(|w| w[1].parse().ok())
                .unwrap_or(default)
        };
        Shape {
            workers: value("--workers", 1),
            pipes: value("--pipes", 16),
        }
    }

    /// Connections a proxy of this shape holds at most under the hard
    /// open-files limit: our proxy's own budget (`netio::budget`), which
    /// the peers are given too, so that "max" is the same count for all.
    pub fn max_connections(self) -> usize {
        let n = netio::budget::connections(procs::nofile_hard(), self.workers, self.pipes);
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

/// What a subject is put in front of: its backends, and whether it is
/// to fail over between them (the failover scenario), with health
/// settings that match the scenario's `--fall 3 --fail-timeout 1s` for
/// ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub backends: Vec<SocketAddr>,
    pub failover: bool,
}

impl Upstream {
    /// One backend, as every scenario but failover has.
    pub fn one(backend: SocketAddr) -> Upstream {
        Upstream {
            backends: vec![backend],
            failover: false,
        }
    }
}

/// HAProxy's failover settings: each server checked every 500 ms, down
/// after 3 failures and up after 1 success; a failed connect retried up
/// to 3 times, each retry on another server (`redispatch 1`), as ours
/// tries the next backend at once.
const HAPROXY_FAILOVER: &str = "    balance roundrobin\n    retries 3\n    option redispatch 1\n";
const HAPROXY_CHECK: &str = " check inter 500ms fall 3 rise 1";
/// nginx's: a server is left out for 1 s after 3 failures in 1 s, and a
/// failed connect is tried on the next server, 3 servers at most.
const NGINX_SERVER: &str = " max_fails=3 fail_timeout=1s";
const NGINX_FAILOVER: &str = "proxy_next_upstream on;\n    proxy_next_upstream_tries 3;\n    ";

/// Starts `kind` in front of `up`, in the proxy's namespace of `place`.
/// `dir` holds generated configs.
pub fn start(
    kind: Kind,
    up: &Upstream,
    proxy_args: &[String],
    root: &Path,
    dir: &Path,
    place: &Place,
) -> Result<Subject, String> {
    let shape = Shape::of(proxy_args);
    let first = *up
        .backends
        .first()
        .ok_or("no backend to start a proxy for")?;
    match kind {
        Kind::Direct => Ok(Subject {
            kind,
            addr: first,
            metrics: None,
            process: None,
            place: place.clone(),
        }),
        Kind::SelfProxy | Kind::SelfUring => {
            let mut cmd = place.command(Role::Proxy, root.join("target/release/proxy"));
            let listen = place.listen(Role::Proxy).to_string();
            cmd.args(["-l", &listen, "-p", "0"]);
            for b in &up.backends {
                cmd.args(["-b", &b.to_string()]);
            }
            // On the loopback of its namespace: off the measured links.
            cmd.args(["--metrics", "127.0.0.1:0"])
                .args(kind.engine_args())
                .args(proxy_args)
                .stdout(Stdio::null());
            let mut p = Child::try_spawn("proxy", &mut cmd, START_TIMEOUT)?;
            let metrics = p.try_wait_line("metrics on http://", START_TIMEOUT)?;
            let metrics: SocketAddr =
                metrics.trim_end_matches("/metrics").parse().map_err(|_| {
                    format!("proxy printed an unparsable metrics address \"{metrics}\"")
                })?;
            let addr = p.try_wait_listening()?;
            Ok(Subject {
                kind,
                addr,
                metrics: Some(metrics),
                process: Some(p),
                place: place.clone(),
            })
        }
        Kind::Haproxy => {
            let listen = peer_listen(place)?;
            let cfg = dir.join("haproxy.cfg");
            write(&cfg, &haproxy_config(shape, up, listen))?;
            let mut cmd = place.command(Role::Proxy, "haproxy");
            cmd.arg("-f").arg(&cfg).arg("-db");
            start_peer(kind, cmd, listen, place)
        }
        Kind::Nginx => {
            let listen = peer_listen(place)?;
            let module = nginx_stream_module().ok_or("nginx stream module not found")?;
            let conf = dir.join("nginx.conf");
            write(&conf, &nginx_config(shape, up, listen, &module, dir))?;
            let mut cmd = place.command(Role::Proxy, "nginx");
            cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
            cmd.arg("-e").arg("stderr");
            start_peer(kind, cmd, listen, place)
        }
    }
}

/// HAProxy in `mode tcp` with ours's threads, pipes and connections.
fn haproxy_config(shape: Shape, up: &Upstream, listen: SocketAddr) -> String {
    let maxconn = shape.max_connections();
    let threads = shape.workers;
    // Ours splices streams unless told `--pipes 0`: so does HAProxy, with
    // as many pipes as ours has (HAProxy's default, a quarter of maxconn,
    // would not fit under the fd limit).
    let (splice, pipes) = if shape.pipes > 0 {
        ("    option splice-auto\n", shape.pipes * threads)
    } else {
        ("", 0)
    };
    let (failover, check) = if up.failover {
        (HAPROXY_FAILOVER, HAPROXY_CHECK)
    } else {
        ("", "")
    };
    let servers: String = up
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server s{} {b}{check}\n", i + 1))
        .collect();
    // No `busy-polling` for --busy-poll: HAProxy's spins even with no
    // traffic, keeping a core awake through the other subjects' windows,
    // which speeds them all up and voids the comparison.
    format!(
        "global\n    maxconn {maxconn}\n    nbthread {threads}\n    maxpipes {pipes}\n\
         defaults\n    mode tcp\n    maxconn {maxconn}\n{splice}    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\
         frontend fe\n    bind {listen}\n    default_backend be\n\
         backend be\n{failover}{servers}"
    )
}

/// nginx's `stream` module with ours's workers and connections; nginx
/// counts the backend side of a connection as a connection too.
fn nginx_config(
    shape: Shape,
    up: &Upstream,
    listen: SocketAddr,
    module: &Path,
    dir: &Path,
) -> String {
    let conns = shape.max_connections() * 2 + 64;
    let (upstream, pass, failover) = match up.backends.as_slice() {
        [one] if !up.failover => (String::new(), one.to_string(), ""),
        all => {
            let server = if up.failover { NGINX_SERVER } else { "" };
            let servers: String = all
                .iter()
                .map(|b| format!(" server {b}{server};"))
                .collect();
            let failover = if up.failover { NGINX_FAILOVER } else { "" };
            (
                format!("  upstream be {{{servers} }}\n"),
                "be".into(),
                failover,
            )
        }
    };
    format!(
        "load_module {module};\nworker_processes {workers};\ndaemon off;\npid {pid};\nerror_log stderr warn;\n\
         worker_rlimit_nofile {nofile};\nevents {{ worker_connections {conns}; }}\n\
         stream {{\n{upstream}  server {{\n    listen {listen};\n    proxy_pass {pass};\n    {failover}\
         proxy_connect_timeout 5s;\n    proxy_timeout 1h;\n    proxy_half_close on;\n  }}\n}}\n",
        module = module.display(),
        pid = dir.join("nginx.pid").display(),
        nofile = procs::nofile_hard(),
        workers = shape.workers,
    )
}

/// Where a peer listens in `place`: a port free in the proxy's namespace,
/// as peers cannot report port 0.
fn peer_listen(place: &Place) -> Result<SocketAddr, String> {
    let port = place.within(Role::Proxy, procs::free_port)?;
    Ok((place.listen(Role::Proxy), port).into())
}

/// Starts a peer whose config listens on `addr` and waits until it
/// accepts connections there.
fn start_peer(
    kind: Kind,
    mut cmd: Command,
    addr: SocketAddr,
    place: &Place,
) -> Result<Subject, String> {
    let mut p = Child::try_spawn(kind.name(), cmd.stdout(Stdio::null()), START_TIMEOUT)?;
    place.within(Role::Proxy, || p.try_wait_port(addr))?;
    Ok(Subject {
        kind,
        addr,
        metrics: None,
        process: Some(p),
        place: place.clone(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether the kernel refuses io_uring to every process (value 2; 1
/// refuses it to unprivileged processes outside `io_uring_group`, which
/// the proxy itself reports at start).
fn uring_disabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|v| v.trim() == "2")
}

fn nginx_stream_module() -> Option<PathBuf> {
    [
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "/usr/lib64/nginx/modules/ngx_stream_module.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Our proxy's counters, scraped from its metrics endpoint.
pub fn scrape(metrics: SocketAddr) -> Result<BTreeMap<String, f64>, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&metrics, Duration::from_secs(5))
        .map_err(|e| format!("metrics {metrics}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("metrics {metrics}: {e}"))?;
    let mut body = String::new();
    s.read_to_string(&mut body)
        .map_err(|e| format!("metrics {metrics}: {e}"))?;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("proxy_"))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((
                k.trim_start_matches("proxy_").to_string(),
                v.trim().parse().ok()?,
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_shape_follows_our_proxys_arguments() {
        assert_eq!(
            Shape::of(&[]),
            Shape {
                workers: 1,
                pipes: 16
            }
        );
        let s = Shape::of(&args(&["--workers", "2", "--pipes", "0"]));
        assert_eq!(
            s,
            Shape {
                workers: 2,
                pipes: 0
            }
        );
    }

    #[test]
    fn peers_get_our_proxys_budget_and_splice_when_it_does() {
        let backend: SocketAddr = ([127, 0, 0, 1], 9).into();
        let shape = Shape::of(&[]);
        let max = shape.max_connections();
        assert_eq!(
            max as u64,
            netio::budget::connections(procs::nofile_hard(), 1, 16),
            "the proxy's one formula"
        );
        let one = Upstream::one(backend);
        let h = haproxy_config(shape, &one, at(7));
        assert!(
            h.contains(&format!("maxconn {max}\n")) && h.contains("maxpipes 16"),
            "{h}"
        );
        assert!(
            h.contains("option splice-auto") && h.contains("bind 127.0.0.1:7"),
            "{h}"
        );
        let h = haproxy_config(Shape::of(&args(&["--pipes", "0"])), &one, at(7));
        assert!(!h.contains("splice") && h.contains("maxpipes 0"), "{h}");
        let n = nginx_config(
            Shape::of(&args(&["--workers", "2"])),
            &one,
            at(7),
            Path::new("m.so"),
            Path::new("/d"),
        );
        let conns = Shape::of(&args(&["--workers", "2"])).max_connections() * 2 + 64;
        assert!(
            n.contains("worker_processes 2;")
                && n.contains(&format!("worker_connections {conns};")),
            "{n}"
        );
    }

    #[test]
    fn a_failover_upstream_gets_health_checks_retries_and_next_upstream() {
        let up = Upstream {
            backends: vec![([127, 0, 0, 1], 9).into(), ([127, 0, 0, 1], 10).into()],
            failover: true,
        };
        let h = haproxy_config(Shape::of(&[]), &up, at(7));
        assert!(
            h.contains("retries 3\n") && h.contains("option redispatch 1\n"),
            "{h}"
        );
        for s in [
            "server s1 127.0.0.1:9 check inter 500ms fall 3 rise 1\n",
            "server s2 127.0.0.1:10 check inter 500ms fall 3 rise 1\n",
        ] {
            assert!(h.contains(s), "{h}");
        }
        let n = nginx_config(
            Shape::of(&[]),
            &up,
            at(7),
            Path::new("m.so"),
            Path::new("/d"),
        );
        assert!(
            n.contains(
                "upstream be { server 127.0.0.1:9 max_fails=3 fail_timeout=1s; server \
                        127.0.0.1:10 max_fails=3 fail_timeout=1s; }"
            ) && n.contains("proxy_pass be;")
                && n.contains("proxy_next_upstream on;"),
            "{n}"
        );
        let plain = haproxy_config(Shape::of(&[]), &Upstream::one(up.backends[0]), at(7));
        assert!(
            !plain.contains("check") && !plain.contains("retries"),
            "{plain}"
        );
    }

    #[test]
    fn proxy_names_are_the_kinds_names() {
        use clap::ValueEnum;
        for k in Kind::ALL {
            assert_eq!(Kind::from_str(k.name(), false), Ok(k));
        }
        assert!(Kind::from_str("envoy", false).is_err());
        assert_eq!(Kind::from_str("self-uring", false), Ok(Kind::SelfUring));
    }

    #[test]
    fn ours_on_the_uring_engine_is_ours_with_its_flag_and_no_peer() {
        assert_eq!(Kind::SelfUring.engine_args(), ["--engine", "uring"]);
        assert!(Kind::SelfProxy.engine_args().is_empty());
        assert!(Kind::is_peer("haproxy") && Kind::is_peer("nginx"));
        assert!(!Kind::is_peer("self-uring") && !Kind::is_peer("self") && !Kind::is_peer("direct"));
    }
}
