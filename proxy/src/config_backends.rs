//! The backends of a [`super::Config`]: from `-b` (primaries of weight 1),
//! or from the config file's `backend` key, whose `[[backend]]` tables also
//! give a name, a weight, a backup flag, a slow start and a connection
//! limit. A mistake in a table names
//! `backend[N].KEY`, counting the tables from 1.

use super::{checks, lookup, parse_target, Names, Target};
use crate::backends::{BackendSpec, Limits};
use crate::config_file::{BackendEntry, FileBackends, FileCheck};
use std::net::SocketAddr;
use std::time::Duration;

/// The lightest and the heaviest weight a backend may have.
pub const WEIGHTS: (u32, u32) = (1, 1000);

/// The command line's backends if it gave any (they replace the file's),
/// else the file's, else 127.0.0.1; `port` for those given without one,
/// `slow_start` for those that give none. `top` is the file's
/// `[health-check]` table, which checks them all.
pub(super) fn resolve(
    cli: &[String],
    file: Option<FileBackends>,
    top: Option<&FileCheck>,
    names: &Names<'_>,
    port: u16,
    slow_start: Duration,
) -> Result<Vec<BackendSpec>, String> {
    let plain = |base: BackendSpec| -> Result<BackendSpec, String> {
        Ok(BackendSpec {
            check: checks::of_plain(top, names)?,
            limits: Limits {
                slow_start,
                max_connections: 0,
            },
            ..base
        })
    };
    if !cli.is_empty() {
        let specs = cli
            .iter()
            .map(|s| {
                spec(s, port)
                    .map_err(|e| names.bad("backend", true, s, e))
                    .and_then(plain)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return distinct(specs, |_| "backend".to_string(), names, true);
    }
    let Some(FileBackends(entries)) = file else {
        let localhost = SocketAddr::from(([127, 0, 0, 1], port));
        return Ok(vec![plain(BackendSpec::plain(localhost))?]);
    };
    if entries.is_empty() {
        return Err(names.bad("backend", false, "[]", "no backend given"));
    }
    let specs = entries
        .iter()
        .enumerate()
        .map(|(i, e)| entry(e, i + 1, top, names, port, slow_start))
        .collect::<Result<Vec<_>, _>>()?;
    let key = |n: usize| match &entries[n] {
        e if !e.table => "backend".to_string(),
        e if e.name.is_some() => format!("backend[{}].name", n + 1),
        _ => format!("backend[{}].address", n + 1),
    };
    let specs = distinct(specs, key, names, false)?;
    // Backups stand in for primaries that are down; with no primary at
    // all the flag would mean nothing, which is surely not what was meant.
    if specs.iter().all(|s| s.backup) {
        return Err(names.bad(
            "backend[1].backup",
            false,
            true,
            "every backend is a backup: at least one must be a primary (backup = false)",
        ));
    }
    Ok(specs)
}

/// The `n`th backend of the file.
fn entry(
    e: &BackendEntry,
    n: usize,
    top: Option<&FileCheck>,
    names: &Names<'_>,
    port: u16,
    slow_start: Duration,
) -> Result<BackendSpec, String> {
    let key = |k: &str| {
        if e.table {
            format!("backend[{n}].{k}")
        } else {
            "backend".to_string()
        }
    };
    let plain =
        spec(&e.address, port).map_err(|why| names.bad(&key("address"), false, &e.address, why))?;
    let (lo, hi) = WEIGHTS;
    let weight = names
        .number(&key("weight"), &None, e.weight, lo, hi)?
        .map_or(1, |w| w.0);
    let name = match &e.name {
        Some(n) => valid_name(n).map_err(|why| names.bad(&key("name"), false, n, why))?,
        None => plain.name,
    };
    let slow_start = names
        .duration(&key("slow-start"), &None, &e.slow_start)?
        .map_or(slow_start, |d| d.0);
    let max_connections = names
        .number(
            &key("max-connections"),
            &None,
            e.max_connections,
            0,
            1 << 24,
        )?
        .map_or(0, |m| m.0);
    Ok(BackendSpec {
        name,
        weight,
        backup: e.backup.unwrap_or(false),
        check: checks::of_entry(e, n, top, names)?,
        limits: Limits {
            slow_start,
            max_connections,
        },
        ..plain
    })
}

/// A primary of weight 1 at `s` (`port` if it gives none), looked up now
/// if it is a host name. It is named by its address, or for a host name
/// by `HOST:PORT` as written: a new address for the name (from DNS, or at
/// a reload) is then the same backend still.
fn spec(s: &str, port: u16) -> Result<BackendSpec, String> {
    match parse_target(s, port)? {
        Target::Addr(addr) => Ok(BackendSpec::plain(addr)),
        Target::Host(host, port) => {
            let text = format!("{host}:{port}");
            Ok(BackendSpec {
                name: text.clone(),
                host: Some(text),
                ..BackendSpec::plain(lookup(&host, port)?)
            })
        }
    }
}

/// A backend name: what an admin command or a metric label names it by.
fn valid_name(n: &str) -> Result<String, &'static str> {
    let fine = |c: char| c.is_ascii_alphanumeric() || "-_.:[]".contains(c);
    if n.is_empty() || n.len() > 64 || !n.chars().all(fine) {
        return Err("a name is 1 to 64 of the characters A-Z a-z 0-9 - _ . : [ ]");
    }
    Ok(n.to_string())
}

/// `specs` if no two share a name (the address, when no name is given),
/// since backends are told apart by name across a reload and in admin
/// commands; else an error naming the second one's key (`key(index)`).
fn distinct(
    specs: Vec<BackendSpec>,
    key: impl Fn(usize) -> String,
    names: &Names<'_>,
    from_cli: bool,
) -> Result<Vec<BackendSpec>, String> {
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|t| t.name == s.name) {
            return Err(names.bad(
                &key(i),
                from_cli,
                &s.name,
                "given twice: each backend needs its own address or name",
            ));
        }
    }
    Ok(specs)
}
