//! SIGHUP: the config file read again and applied in place, without
//! dropping a connection.
//!
//! The file is resolved exactly as at start (the same command line, so
//! its options still override the file, and the same messages for a
//! mistake). An invalid file, or one that changes a setting only a restart
//! can change (the listen address and port, the sizes of the table, the
//! buffers and pipes, the workers, the metrics address, the backlog), is
//! refused whole with one line, and the running configuration stays.
//! Otherwise the backends (matched by name, see
//! [`crate::backends::Backends::next`]) and balancing are published as a
//! new generation of the backend set, the rest as a new generation of the
//! [`Settings`], every worker is woken to take them, and one line says
//! what changed. Open connections are untouched; those to a removed
//! backend get `--drain-timeout` to finish before they are closed.

use crate::backends::{BackendSpec, Backends, Live};
use crate::config::{self, Cli, Config};
use crate::resolver::Resolver;
use crate::settings::{Published, Settings};
use crate::worker::Control;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Display;
use std::sync::Arc;

/// What a SIGHUP needs: how the proxy was started, what runs now, and
/// where to publish.
pub struct Reloader {
    cli: Cli,
    /// The command-line options given (other than `--config`), as
    /// `--name`, for the line saying they still override the file.
    overrides: Vec<String>,
    nofile: u64,
    running: Config,
    backends: Arc<Live>,
    settings: Arc<Published<Settings>>,
    resolver: Resolver,
}

impl Reloader {
    /// `cli` and `nofile` as the configuration `running` was resolved
    /// from; `args`, the command line, for the options it overrides.
    pub fn new(
        cli: Cli,
        args: impl IntoIterator<Item = OsString>,
        nofile: u64,
        running: Config,
        backends: Arc<Live>,
        settings: Arc<Published<Settings>>,
    ) -> Reloader {
        let resolver = Resolver::new(Arc::clone(&backends), Arc::clone(&settings));
        Reloader {
            cli,
            overrides: given_options(args),
            nofile,
            running,
            backends,
            settings,
            resolver,
        }
    }

    /// The configuration in force (the last one applied).
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Starts looking backend host names up again, if any is given by
    /// name (else no thread is started).
    pub fn start_resolver(&mut self) -> std::io::Result<()> {
        self.resolver.follow()
    }

    /// Handles one SIGHUP; every outcome is one line (two when options on
    /// the command line override the file).
    pub fn reload(&mut self, controls: &[Arc<Control>]) {
        let Some(path) = self.cli.config.clone() else {
            netio::log!("proxy: SIGHUP: no --config file was given; nothing to reload");
            return;
        };
        let next = match config::resolve(self.cli.clone(), self.nofile) {
            Ok(next) => next,
            Err(e) => {
                netio::log!("proxy: reload failed; the running configuration is kept: {e}");
                return;
            }
        };
        // At start the default backend is a convenience; a reload whose
        // file lost its backends is far more likely a mistake than a wish
        // to send every new client to 127.0.0.1.
        if next.backends_default && !self.running.backends_default {
            netio::log!(
                "proxy: reload of \"{}\" refused, nothing was changed: the file now gives no \
                 backend (it had {}), and a reload does not fall back to the default {}",
                path.display(),
                self.running.backends.len(),
                next.backends[0].addr
            );
            return;
        }
        let fixed = fixed_changes(&self.running, &next);
        if !fixed.is_empty() {
            netio::log!(
                "proxy: reload of \"{}\" refused, nothing was changed: {}; these take a restart",
                path.display(),
                fixed.join("; ")
            );
            return;
        }
        if !self.overrides.is_empty() {
            let verb = if self.overrides.len() == 1 {
                "overrides"
            } else {
                "override"
            };
            netio::log!(
                "proxy: reload: {} on the command line {verb} the file",
                self.overrides.join(", ")
            );
        }
        let (mut changes, mut keys) = (Vec::new(), Vec::new());
        self.backends.publish(|cur| {
            let next_set = cur
                .next(next.backends.clone(), next.health, next.balance)
                .with_all_down(next.all_down);
            changes = backend_changes(cur, &next_set);
            keys = balancing_changes(cur, &next_set);
            next_set
        });
        let (now, _) = self.settings.snapshot();
        let settings = Settings::of(&next);
        keys.extend(settings.changed_keys(&now));
        if !keys.is_empty() {
            changes.push(format!("changed {}", keys.join(", ")));
        }
        self.settings.publish(settings);
        for c in controls {
            if let Err(e) = c.wake() {
                netio::log!("proxy: reload: cannot wake a worker: {e}");
            }
        }
        if let Err(e) = self.resolver.follow() {
            netio::log!("proxy: reload: cannot start the resolver thread: {e}");
        }
        let what = if changes.is_empty() {
            "nothing changed".to_string()
        } else {
            changes.join("; ")
        };
        netio::log!("proxy: reloaded \"{}\": {what}", path.display());
        self.running = next;
    }
}

/// The settings `next` changes that cannot change in place, each as
/// `KEY cannot change in place (running A, the file now B)`.
fn fixed_changes(running: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, a: &dyn Display, b: &dyn Display, same: bool| {
        if !same {
            out.push(format!(
                "{key} cannot change in place (running {a}, the file now {b})"
            ));
        }
    };
    let (r, n) = (running, next);
    let ip = (r.listen.ip(), n.listen.ip());
    check("listen", &ip.0, &ip.1, ip.0 == ip.1);
    let port = (r.listen.port(), n.listen.port());
    check("port", &port.0, &port.1, port.0 == port.1);
    let sizes = [
        ("max-connections", r.max_connections, n.max_connections),
        ("buffer-size", r.buffer_size, n.buffer_size),
        ("buffers", r.buffers, n.buffers),
        ("large-buffers", r.large_buffers, n.large_buffers),
        (
            "large-buffer-size",
            r.large_buffer_size,
            n.large_buffer_size,
        ),
        ("pipes", r.pipes, n.pipes),
        ("pipe-size", r.pipe_size, n.pipe_size),
        ("workers", r.workers, n.workers),
        ("backlog", r.backlog as usize, n.backlog as usize),
    ];
    for (key, a, b) in sizes {
        check(key, &a, &b, a == b);
    }
    let (e, f) = (r.engine.name(), n.engine.name());
    check("engine", &e, &f, e == f);
    let shown = |m: Option<std::net::SocketAddr>| m.map_or("none".to_string(), |a| a.to_string());
    check(
        "metrics",
        &shown(r.metrics),
        &shown(n.metrics),
        r.metrics == n.metrics,
    );
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref().map_or("none".to_string(), |p| {
            format!("{:?}", p.display().to_string())
        })
    };
    check(
        "admin-socket",
        &path(&r.admin_socket),
        &path(&n.admin_socket),
        r.admin_socket == n.admin_socket,
    );
    out
}

/// What changed from `cur` to `next` in the backends: `backends added X`,
/// `backends removed Y`, `backends changed Z (weight 1 -> 3)`.
fn backend_changes(cur: &Backends, next: &Backends) -> Vec<String> {
    let configured = |b: &Backends| -> HashMap<String, BackendSpec> {
        b.entries()
            .iter()
            .filter(|e| !e.removed)
            .map(|e| (e.spec.name.clone(), e.spec.clone()))
            .collect()
    };
    let (before, after) = (configured(cur), configured(next));
    let in_order = |b: &Backends, pick: &dyn Fn(&str) -> Option<String>| -> Vec<String> {
        b.entries()
            .iter()
            .filter(|e| !e.removed)
            .filter_map(|e| pick(&e.spec.name))
            .collect()
    };
    let added = in_order(next, &|n| (!before.contains_key(n)).then(|| n.to_string()));
    let removed = in_order(cur, &|n| (!after.contains_key(n)).then(|| n.to_string()));
    let changed = in_order(next, &|n| {
        let (a, b) = (before.get(n)?, &after[n]);
        let mut what = Vec::new();
        // As written: an address that becomes a host name (or back) may
        // resolve to the same address.
        let written = |s: &BackendSpec| s.host.clone().unwrap_or_else(|| s.addr.to_string());
        if a.host != b.host {
            what.push(format!("address {} -> {}", written(a), written(b)));
        } else if a.addr != b.addr {
            what.push(format!("address {} -> {}", a.addr, b.addr));
        }
        if a.weight != b.weight {
            what.push(format!("weight {} -> {}", a.weight, b.weight));
        }
        if a.backup != b.backup {
            what.push(format!("backup {} -> {}", a.backup, b.backup));
        }
        let (la, lb) = (a.limits, b.limits);
        if la.max_connections != lb.max_connections {
            what.push(format!(
                "max-connections {} -> {}",
                la.max_connections, lb.max_connections
            ));
        }
        if la.slow_start != lb.slow_start {
            let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
            what.push(format!(
                "slow-start {} -> {}",
                secs(la.slow_start),
                secs(lb.slow_start)
            ));
        }
        match (&a.check, &b.check) {
            (None, Some(_)) => what.push("check added".into()),
            (Some(_), None) => what.push("check removed".into()),
            (Some(x), Some(y)) if x != y => what.push("check changed".into()),
            _ => {}
        }
        (!what.is_empty()).then(|| format!("{n} ({})", what.join(", ")))
    });
    let mut out = Vec::new();
    for (what, list) in [
        ("backends added", added),
        ("backends removed", removed),
        ("backends changed", changed),
    ] {
        if !list.is_empty() {
            out.push(format!("{what} {}", list.join(", ")));
        }
    }
    out
}

/// The keys of the balancing, the all-down policy and the passive health
/// that differ from `cur` to `next`.
fn balancing_changes(cur: &Backends, next: &Backends) -> Vec<&'static str> {
    let (a, b) = (cur.health(), next.health());
    [
        ("balance", cur.method() != next.method()),
        ("all-down", cur.all_down() != next.all_down()),
        ("fall", a.fall != b.fall),
        ("fail-timeout", a.fail_timeout != b.fail_timeout),
    ]
    .iter()
    .filter(|k| k.1)
    .map(|k| k.0)
    .collect()
}

/// The options `args` (a command line) gives, other than `--config`, as
/// `--name`, in the order of `--help`.
fn given_options(args: impl IntoIterator<Item = OsString>) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Ok(m) = cmd.clone().try_get_matches_from(args) else {
        return Vec::new();
    };
    cmd.get_arguments()
        .filter(|a| a.get_id() != "config")
        .filter(|a| {
            m.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Balance;
    use clap::Parser;

    fn resolved(args: &[&str]) -> Config {
        let cli = Cli::try_parse_from(args).expect("command line");
        config::resolve(cli, 1024).expect("config")
    }

    #[test]
    fn the_options_given_are_named_as_on_the_command_line() {
        let args = [
            "proxy",
            "-c",
            "p.toml",
            "-b",
            "10.0.0.1",
            "--idle-timeout",
            "5s",
        ];
        let got = given_options(args.iter().map(OsString::from));
        assert_eq!(got, ["--backend", "--idle-timeout"]);
    }

    #[test]
    fn a_changed_port_and_workers_are_each_named_with_both_values() {
        let a = resolved(&[
            "proxy",
            "-p",
            "0",
            "--max-connections",
            "8",
            "--buffers",
            "16",
        ]);
        let b = resolved(&[
            "proxy",
            "-p",
            "1",
            "--workers",
            "2",
            "--max-connections",
            "8",
            "--buffers",
            "16",
        ]);
        let got = fixed_changes(&a, &b);
        assert_eq!(
            got,
            [
                "port cannot change in place (running 0, the file now 1)",
                "workers cannot change in place (running 1, the file now 2)"
            ]
        );
        assert!(fixed_changes(&a, &a).is_empty());
    }

    #[test]
    fn backends_are_told_added_removed_and_changed_by_name() {
        let spec = |name: &str, port: u16, weight| BackendSpec {
            name: name.into(),
            weight,
            ..BackendSpec::plain(([127, 0, 0, 1], port).into())
        };
        let cfg = resolved(&["proxy"]);
        let cur = Backends::new(
            vec![spec("a", 1, 1), spec("b", 2, 1)],
            cfg.health,
            cfg.balance,
        );
        let next = cur.next(
            vec![spec("b", 3, 2), spec("c", 4, 1)],
            cfg.health,
            cfg.balance,
        );
        assert_eq!(
            backend_changes(&cur, &next),
            [
                "backends added c",
                "backends removed a",
                "backends changed b (address 127.0.0.1:2 -> 127.0.0.1:3, weight 1 -> 2)"
            ]
        );
        assert!(backend_changes(&next, &next).is_empty());
        let named = |host: &str| BackendSpec {
            host: Some(host.into()),
            ..spec("b", 3, 2)
        };
        let by_name = next.next(
            vec![named("app:3"), spec("c", 4, 1)],
            cfg.health,
            cfg.balance,
        );
        assert_eq!(
            backend_changes(&next, &by_name),
            ["backends changed b (address 127.0.0.1:3 -> app:3)"],
            "the same address, now looked up by name"
        );
        let health = crate::backends::Health {
            fall: 5,
            ..cfg.health
        };
        let other = next.next(
            vec![spec("b", 3, 2), spec("c", 4, 1)],
            health,
            Balance::SourceHash,
        );
        assert!(backend_changes(&next, &other).is_empty());
        assert_eq!(balancing_changes(&next, &other), ["balance", "fall"]);
    }
}
