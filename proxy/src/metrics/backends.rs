//! The backends as an operator reads them: a plain-text listing (one line
//! a backend, served at `/backends` and by the admin socket's `show
//! backends`), the same as JSON (`/backends.json`), and the per-backend
//! Prometheus series appended to `/metrics`.
//!
//! A listing line is the name and the address, then `key=value` fields:
//!
//! ```text
//! a 127.0.0.1:9001 state=up admin=ready weight=1 backup=no active=2 connections=17 errors=0 check=none
//! b 127.0.0.1:9002 state=down admin=maint weight=3 backup=no active=0 connections=4 errors=4 check=failed/2.013ms
//! ```
//!
//! `state` is the health (`up`, `down`: marked down by failed connects
//! or checks, `removed`: gone from the configuration, its connections
//! finishing), `admin` what the operator set, `errors` the failed
//! connects of every kind, `check` the last health check's result and
//! how long it took, or `none`.

use crate::backends::{Admin, Backends, ConnectError};
use serde_json::json;
use std::fmt::Write as _;

/// The health word of backend `i` now.
fn state(b: &Backends, i: u32, now: u64) -> &'static str {
    if b.entry(i).removed {
        "removed"
    } else if b.healthy_at(i as usize, now) {
        "up"
    } else {
        "down"
    }
}

/// The plain-text listing: one line a backend, in index order.
pub fn listing(b: &Backends) -> String {
    let now = b.now_ms();
    let mut out = String::new();
    for (i, e) in (0..).zip(b.entries()) {
        let check = match b.last_check(i) {
            Some(c) => format!(
                "{}/{:.3}ms",
                if c.ok { "ok" } else { "failed" },
                c.took.as_secs_f64() * 1e3
            ),
            None => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "{} {} state={} admin={} weight={} backup={} active={} \
             connections={} errors={} check={check}",
            e.spec.name,
            e.spec.addr,
            state(b, i, now),
            b.admin(i).name(),
            e.spec.weight,
            if e.spec.backup { "yes" } else { "no" },
            b.active(i),
            b.connections(i),
            b.connect_errors(i).iter().sum::<u64>(),
        );
    }
    out
}

/// The listing as JSON: `{"backends": [{…}, …]}`, one object a backend
/// with the listing's fields, the errors by kind, and `check` null or
/// `{"ok": bool, "duration_seconds": float}`.
pub fn json(b: &Backends) -> String {
    let now = b.now_ms();
    let list: Vec<_> = (0..)
        .zip(b.entries())
        .map(|(i, e)| {
            let errors: serde_json::Map<_, _> = ConnectError::ALL
                .iter()
                .zip(b.connect_errors(i))
                .map(|(k, n)| (k.label().to_string(), json!(n)))
                .collect();
            let check = b
                .last_check(i)
                .map(|c| json!({ "ok": c.ok, "duration_seconds": c.took.as_secs_f64() }));
            json!({
                "name": e.spec.name,
                "address": e.spec.addr.to_string(),
                "state": state(b, i, now),
                "admin": b.admin(i).name(),
                "weight": e.spec.weight,
                "backup": e.spec.backup,
                "active": b.active(i),
                "connections": b.connections(i),
                "connect_errors": errors,
                "check": check,
            })
        })
        .collect();
    let mut text = json!({ "backends": list }).to_string();
    text.push('\n');
    text
}

/// One Prometheus metric family: its name, type and help.
struct Family(&'static str, &'static str, &'static str);

impl Family {
    /// Writes the family's HELP and TYPE lines, then one sample for each
    /// `(labels, value)`, unless there is none at all.
    fn write(&self, out: &mut String, samples: impl IntoIterator<Item = (String, String)>) {
        let Family(name, kind, help) = self;
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The per-backend series, `backend="NAME"` on each, in the exposition
/// format's text (HELP and TYPE once a family). The check series are left
/// out until some backend has had a check.
pub fn prometheus(b: &Backends) -> String {
    let now = b.now_ms();
    let mut out = String::new();
    let n = b.len() as u32;
    let label = |i: u32| format!("backend=\"{}\"", escape(b.name(i)));
    let each = |value: &dyn Fn(u32) -> String| -> Vec<(String, String)> {
        (0..n).map(|i| (label(i), value(i))).collect()
    };
    Family(
        "proxy_backend_up",
        "gauge",
        "Whether the backend is healthy: 1, or 0 while failed connects or checks mark it down.",
    )
    .write(
        &mut out,
        each(&|i| u8::from(b.healthy_at(i as usize, now)).to_string()),
    );
    Family(
        "proxy_backend_weight",
        "gauge",
        "The backend's balancing weight.",
    )
    .write(&mut out, each(&|i| b.entry(i).spec.weight.to_string()));
    Family(
        "proxy_backend_active_connections",
        "gauge",
        "Client connections sent to the backend and not closed, connecting ones included.",
    )
    .write(&mut out, each(&|i| b.active(i).to_string()));
    Family(
        "proxy_backend_connections_total",
        "counter",
        "Connections sent to the backend, each connect try counted.",
    )
    .write(&mut out, each(&|i| b.connections(i).to_string()));
    let states = (0..n).flat_map(|i| {
        let admin = b.admin(i);
        Admin::ALL.map(|a| {
            let labels = format!("{},state=\"{}\"", label(i), a.name());
            (labels, u8::from(a == admin).to_string())
        })
    });
    Family(
        "proxy_backend_admin_state",
        "gauge",
        "The admin state the operator set: 1 for the backend's state, 0 for the others.",
    )
    .write(&mut out, states);
    let errors = (0..n).flat_map(|i| {
        let counts = b.connect_errors(i);
        ConnectError::ALL.map(|k| {
            let labels = format!("{},kind=\"{}\"", label(i), k.label());
            (labels, counts[k as usize].to_string())
        })
    });
    Family(
        "proxy_backend_connect_errors_total",
        "counter",
        "Failed connects to the backend, by kind: refused, timeout, reset, unreachable, other.",
    )
    .write(&mut out, errors);
    let checks = || (0..n).filter_map(|i| b.last_check(i).map(|c| (label(i), c)));
    Family(
        "proxy_backend_check_success",
        "gauge",
        "Whether the backend's last health check passed.",
    )
    .write(
        &mut out,
        checks().map(|(l, c)| (l, u8::from(c.ok).to_string())),
    );
    Family(
        "proxy_backend_check_duration_seconds",
        "gauge",
        "How long the backend's last health check took.",
    )
    .write(
        &mut out,
        checks().map(|(l, c)| (l, c.took.as_secs_f64().to_string())),
    );
    out
}

/// A label value as the exposition format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{BackendSpec, Health};
    use crate::config::Balance;

    fn two() -> Backends {
        let mut a = BackendSpec::plain("127.0.0.1:9001".parse().expect("addr"));
        a.name = "a".into();
        let mut b = BackendSpec::plain("127.0.0.1:9002".parse().expect("addr"));
        b.name = "b".into();
        b.weight = 3;
        b.check = Some(crate::health::CheckSpec::default());
        Backends::new(vec![a, b], Health::default(), Balance::RoundRobin)
    }

    #[test]
    fn the_listing_has_a_line_a_backend_with_every_field() {
        let b = two();
        b.set_admin(1, Admin::Maint);
        b.connect_error(1, ConnectError::Refused);
        b.record_check(1, false, 2013, 1, false);
        let text = listing(&b);
        let want = "a 127.0.0.1:9001 state=up admin=ready weight=1 backup=no active=0 \
                    connections=0 errors=0 check=none\n\
                    b 127.0.0.1:9002 state=up admin=maint weight=3 backup=no active=0 \
                    connections=0 errors=1 check=failed/2.013ms\n";
        assert_eq!(text, want);
        let v: serde_json::Value = serde_json::from_str(&json(&b)).expect("valid JSON");
        let second = &v["backends"][1];
        assert_eq!(second["name"], "b");
        assert_eq!(second["admin"], "maint");
        assert_eq!(second["connect_errors"]["refused"], 1);
        assert_eq!(second["check"]["ok"], false);
        assert_eq!(v["backends"][0]["check"], serde_json::Value::Null);
    }

    #[test]
    fn per_backend_series_are_labelled_and_declared_once() {
        let b = two();
        b.set_admin(0, Admin::Drain);
        b.connect_error(0, ConnectError::Timeout);
        let text = prometheus(&b);
        for line in [
            "proxy_backend_up{backend=\"a\"} 1",
            "proxy_backend_weight{backend=\"b\"} 3",
            "proxy_backend_admin_state{backend=\"a\",state=\"drain\"} 1",
            "proxy_backend_admin_state{backend=\"a\",state=\"ready\"} 0",
            "proxy_backend_connect_errors_total{backend=\"a\",kind=\"timeout\"} 1",
            "proxy_backend_connect_errors_total{backend=\"b\",kind=\"refused\"} 0",
            "# TYPE proxy_backend_connections_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(text.matches("# TYPE proxy_backend_up ").count(), 1);
        assert!(!text.contains("check_duration"), "no check, no series");
        b.record_check(1, true, 5000, 1, false);
        let text = prometheus(&b);
        assert!(text.contains("proxy_backend_check_duration_seconds{backend=\"b\"} 0.005\n"));
        assert!(!text.contains("proxy_backend_check_success{backend=\"a\"}"));
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
