//! The proxies under test: ours, HAProxy (`mode tcp`), nginx (`stream`),
//! or none ("direct"). For peers the workbench writes the config itself,
//! on a free port, equivalent to ours: as many threads or workers as ours
//! (one unless `--workers`), HAProxy splicing when ours does, TCP_NODELAY,
//! long timeouts, as many connections as the fd limit allows.

use crate::procs::{self, Guard};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which proxy a measurement goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Ours, built in release.
    SelfProxy,
    Haproxy,
    Nginx,
    /// No proxy: straight at the backend.
    Direct,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "self" => Ok(Kind::SelfProxy),
            "haproxy" => Ok(Kind::Haproxy),
            "nginx" => Ok(Kind::Nginx),
            "direct" => Ok(Kind::Direct),
            other => Err(format!(
                "unknown proxy \"{other}\": expected self, haproxy, nginx or direct"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::SelfProxy => "self",
            Kind::Haproxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Direct => "direct",
        }
    }

    /// Why this proxy cannot run here, if it cannot.
    pub fn missing(self) -> Option<String> {
        match self {
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

/// A started proxy (or the backend itself, for direct).
pub struct Subject {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Our proxy's metrics endpoint.
    pub metrics: Option<SocketAddr>,
    pub guard: Option<Guard>,
}

impl Subject {
    pub fn pid(&self) -> Option<u32> {
        self.guard.as_ref().map(Guard::pid)
    }

    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.guard.as_mut() {
            Some(g) => g.check_alive(),
            None => Ok(()),
        }
    }
}

/// Connections a proxy can hold under the fd limit: two fds each, less
/// headroom (listeners, epoll, pipes for splicing, logs).
pub fn max_connections() -> usize {
    (procs::nofile_hard().saturating_sub(128) / 2) as usize
}

/// Starts `kind` in front of `backend`. `dir` holds generated configs.
pub fn start(
    kind: Kind,
    backend: SocketAddr,
    proxy_args: &[String],
    root: &Path,
    dir: &Path,
) -> Result<Subject, String> {
    match kind {
        Kind::Direct => Ok(Subject {
            kind,
            addr: backend,
            metrics: None,
            guard: None,
        }),
        Kind::SelfProxy => {
            let bin = root.join("target/release/proxy");
            let mut cmd = Command::new(&bin);
            cmd.args([
                "-l",
                "127.0.0.1",
                "-p",
                "0",
                "-b",
                &backend.to_string(),
                "--metrics",
                "127.0.0.1:0",
            ])
            .args(proxy_args)
            .stdout(Stdio::null());
            let mut g = Guard::spawn("proxy", &mut cmd)?;
            let metrics = g.wait_line("metrics on http://", procs::START_TIMEOUT)?;
            let metrics: SocketAddr =
                metrics.trim_end_matches("/metrics").parse().map_err(|_| {
                    format!("proxy printed an unparsable metrics address \"{metrics}\"")
                })?;
            let addr = g.wait_listening()?;
            Ok(Subject {
                kind,
                addr,
                metrics: Some(metrics),
                guard: Some(g),
            })
        }
        Kind::Haproxy => {
            let port = procs::free_port()?;
            let cfg = dir.join("haproxy.cfg");
            let maxconn = max_connections();
            let threads = workers(proxy_args);
            // Ours splices streams unless told `--pipes 0`: so does HAProxy.
            let splice = if splicing(proxy_args) {
                "    option splice-auto\n"
            } else {
                ""
            };
            // As many pipes as ours has (16 a worker): HAProxy's default,
            // a quarter of maxconn, would not fit under the fd limit.
            let pipes = 16 * threads;
            // No `busy-polling` for --busy-poll: HAProxy's spins even with
            // no traffic, keeping a core awake through the other subjects'
            // windows, which speeds them all up and voids the comparison.
            let text = format!(
                "global\n    maxconn {maxconn}\n    nbthread {threads}\n    maxpipes {pipes}\n\
                 defaults\n    mode tcp\n    maxconn {maxconn}\n{splice}    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\
                 frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
                 backend be\n    server s1 {backend}\n"
            );
            write(&cfg, &text)?;
            let mut cmd = Command::new("haproxy");
            cmd.arg("-f").arg(&cfg).arg("-db");
            start_peer(kind, cmd, port)
        }
        Kind::Nginx => {
            let port = procs::free_port()?;
            let module = nginx_stream_module().ok_or("nginx stream module not found")?;
            let conf = dir.join("nginx.conf");
            let conns = max_connections() * 2 + 64;
            let text = format!(
                "load_module {module};\nworker_processes {workers};\ndaemon off;\npid {pid};\nerror_log stderr warn;\n\
                 worker_rlimit_nofile {nofile};\nevents {{ worker_connections {conns}; }}\n\
                 stream {{\n  server {{\n    listen 127.0.0.1:{port};\n    proxy_pass {backend};\n    \
                 proxy_connect_timeout 5s;\n    proxy_timeout 1h;\n    proxy_half_close on;\n  }}\n}}\n",
                module = module.display(),
                pid = dir.join("nginx.pid").display(),
                nofile = procs::nofile_hard(),
                workers = workers(proxy_args),
            );
            write(&conf, &text)?;
            let mut cmd = Command::new("nginx");
            cmd.arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg("stderr");
            start_peer(kind, cmd, port)
        }
    }
}

/// `--workers N` among our proxy's arguments (peers get as many threads
/// or worker processes).
fn workers(args: &[String]) -> usize {
    args.windows(2)
        .find(|w| w[0] == "--workers")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(1)
}

/// Whether our proxy splices with these arguments (it does unless `--pipes 0`).
fn splicing(args: &[String]) -> bool {
    !args.windows(2).any(|w| w[0] == "--pipes" && w[1] == "0")
}

/// Starts a peer whose config listens on 127.0.0.1:`port` and waits
/// until it accepts connections there.
fn start_peer(kind: Kind, mut cmd: Command, port: u16) -> Result<Subject, String> {
    let mut g = Guard::spawn(kind.name(), cmd.stdout(Stdio::null()))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    procs::wait_port(addr, &mut g)?;
    Ok(Subject {
        kind,
        addr,
        metrics: None,
        guard: Some(g),
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
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
pub fn scrape(metrics: SocketAddr) -> Result<std::collections::BTreeMap<String, f64>, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&metrics, std::time::Duration::from_secs(5))
        .map_err(|e| format!("metrics {metrics}: {e}"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
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
