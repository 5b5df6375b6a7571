//! The backends of a [`super::Config`]: from `-b` (primaries of weight 1),
//! or from the config file's `backend` key, whose `[[backend]]` tables also
//! give a weight and a backup flag. A mistake in a table names
//! `backend[N].KEY`, counting the tables from 1.

use super::{parse_backend, Names};
use crate::balance::BackendSpec;
use crate::config_file::{BackendEntry, FileBackends};
use std::net::SocketAddr;

/// The lightest and the heaviest weight a backend may have.
pub const WEIGHTS: (u32, u32) = (1, 1000);

/// The command line's backends if it gave any (they replace the file's),
/// else the file's, else 127.0.0.1; `port` for those given without one.
pub(super) fn resolve(
    cli: &[String],
    file: Option<FileBackends>,
    names: &Names<'_>,
    port: u16,
) -> Result<Vec<BackendSpec>, String> {
    if !cli.is_empty() {
        return cli
            .iter()
            .map(|s| {
                parse_backend(s, port)
                    .map(BackendSpec::plain)
                    .map_err(|e| names.bad("backend", true, s, e))
            })
            .collect();
    }
    let Some(FileBackends(entries)) = file else {
        let localhost = SocketAddr::from(([127, 0, 0, 1], port));
        return Ok(vec![BackendSpec::plain(localhost)]);
    };
    if entries.is_empty() {
        return Err(names.bad("backend", false, "[]", "no backend given"));
    }
    let specs = entries
        .iter()
        .enumerate()
        .map(|(i, e)| entry(e, i + 1, names, port))
        .collect::<Result<Vec<_>, _>>()?;
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
fn entry(e: &BackendEntry, n: usize, names: &Names<'_>, port: u16) -> Result<BackendSpec, String> {
    let key = |k: &str| {
        if e.table {
            format!("backend[{n}].{k}")
        } else {
            "backend".to_string()
        }
    };
    let addr = parse_backend(&e.address, port)
        .map_err(|why| names.bad(&key("address"), false, &e.address, why))?;
    let (lo, hi) = WEIGHTS;
    let weight = names
        .number(&key("weight"), &None, e.weight, lo, hi)?
        .map_or(1, |w| w.0);
    Ok(BackendSpec {
        addr,
        weight,
        backup: e.backup.unwrap_or(false),
    })
}
