//! A proxy for the fault and exhaustion tests together with its baseline:
//! its metrics endpoint and the descriptors it held before any traffic.
//! After a fault, [`Rig::assert_settled`] checks that it is back there:
//! no connection open, no buffer or pipe lent, as many descriptors as at
//! the start, and no socket of its own left in CLOSE_WAIT or FIN_WAIT2.

use crate::util::{http_get, prom_value, Proxy, WAIT};
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use testkit::proc::TcpState;

/// The gauges that must be back at zero once every connection has ended.
const GAUGES: [&str; 4] = [
    "proxy_active",
    "proxy_pool_lent",
    "proxy_large_pool_lent",
    "proxy_pipes_lent",
];

pub struct Rig {
    pub proxy: Proxy,
    pub metrics: SocketAddr,
    /// Descriptors held before the first connection.
    pub fds: usize,
}

impl Rig {
    /// Starts the proxy on 127.0.0.1 port 0 in front of `backend` with
    /// its metrics endpoint, and takes the baseline.
    pub fn start(backend: SocketAddr, extra: &[&str]) -> Rig {
        Rig::start_with(crate::util::proxy_command(), backend, extra)
    }

    /// Like [`Rig::start`] with `cmd` as the proxy (under `prlimit`, say).
    pub fn start_with(cmd: Command, backend: SocketAddr, extra: &[&str]) -> Rig {
        let b = backend.to_string();
        let mut args = vec![
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-b",
            b.as_str(),
            "--metrics",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let proxy = Proxy::start_with(cmd, &args);
        let metrics = proxy.metrics_addr();
        // One scrape first, so that the baseline is taken after it — and
        // after the endpoint has closed its end (it does so once it reads
        // the client's close, a moment after the client has the answer).
        let _ = http_get(metrics, "/metrics");
        let pid = proxy.pid();
        crate::util::wait_until("the scrape's socket closed", || {
            testkit::proc::owned_tcp_sockets(pid)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .all(|s| s.local != metrics || s.state == testkit::proc::TcpState::Listen)
        });
        let fds = proxy.fd_count();
        Rig {
            proxy,
            metrics,
            fds,
        }
    }

    /// The value of one of the proxy's metrics, `proxy_NAME`.
    pub fn metric(&self, name: &str) -> u64 {
        let (_, body) = http_get(self.metrics, "/metrics");
        prom_value(&body, name).unwrap_or_else(|| panic!("no {name} in the metrics"))
    }

    /// The gauges of [`GAUGES`], from one scrape.
    fn gauges(&self) -> Vec<(&'static str, u64)> {
        let (_, body) = http_get(self.metrics, "/metrics");
        GAUGES
            .iter()
            .map(|g| (*g, prom_value(&body, g).unwrap_or(u64::MAX)))
            .collect()
    }

    /// Waits (up to [`WAIT`]) until the proxy is back at its baseline;
    /// fails naming what is not.
    pub fn assert_settled(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let g = self.gauges();
            if g.iter().all(|(_, v)| *v == 0) {
                break;
            }
            assert!(Instant::now() < deadline, "gauges not back at zero: {g:?}");
            thread::sleep(Duration::from_millis(20));
        }
        self.proxy.wait_fd_count(self.fds);
        let pid = self.proxy.pid();
        let stuck: Vec<_> = testkit::proc::owned_tcp_sockets(pid)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|s| matches!(s.state, TcpState::CloseWait | TcpState::FinWait2))
            .collect();
        assert!(stuck.is_empty(), "sockets left half-closed: {stuck:?}");
    }
}
