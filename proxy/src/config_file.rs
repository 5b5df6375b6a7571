//! The config file: the same settings as the long options, read into a
//! [`FileConfig`]. Every mistake is one line naming the file, the line and
//! the key: `invalid config "p.toml" (line 5): key workers: …`.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// The config file, key by key (the long options' names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub backend: Option<FileBackends>,
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
    pub admin_socket: Option<String>,
    pub balance: Option<crate::config::Balance>,
    pub drain_timeout: Option<String>,
    pub reset_flush_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub busy_poll: Option<String>,
    pub engine: Option<crate::config::Engine>,
    pub log_connections: Option<bool>,
    pub backlog: Option<i32>,
    pub connect_retries: Option<u32>,
    pub fall: Option<u32>,
    pub fail_timeout: Option<String>,
    pub slow_start: Option<String>,
    pub queue: Option<usize>,
    pub queue_timeout: Option<String>,
    pub all_down: Option<crate::backends::AllDown>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// The `[health-check]` table: every backend is checked with these
    /// settings unless its own `check-*` keys override them.
    pub health_check: Option<FileCheck>,
    pub resolve_interval: Option<String>,
}

/// Health-check settings: the `[health-check]` table, or one backend's
/// `check-*` keys (see [`BackendEntry`]).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileCheck {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub send: Option<String>,
    pub expect: Option<String>,
    pub expect_regex: Option<String>,
}

/// The backends: `backend = "a"`, `backend = ["a", "b"]`, or `[[backend]]`
/// tables (a list may also mix addresses and inline tables).
#[derive(Debug, Default)]
pub struct FileBackends(pub Vec<BackendEntry>);

/// One backend of the file: an address alone, or a `[[backend]]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendEntry {
    /// The address, as `--backend` takes it.
    pub address: String,
    /// What logs, metrics and the admin socket call it, and how a reload
    /// matches it; its address when not given.
    pub name: Option<String>,
    pub weight: Option<u32>,
    pub backup: Option<bool>,
    /// Whether it has an active health check (default: if the file has a
    /// `[health-check]` table or this table sets a `check-*` key).
    pub check: Option<bool>,
    #[serde(rename = "check-interval")]
    pub check_interval: Option<String>,
    #[serde(rename = "check-timeout")]
    pub check_timeout: Option<String>,
    #[serde(rename = "check-rise")]
    pub check_rise: Option<u32>,
    #[serde(rename = "check-fall")]
    pub check_fall: Option<u32>,
    #[serde(rename = "check-send")]
    pub check_send: Option<String>,
    #[serde(rename = "check-expect")]
    pub check_expect: Option<String>,
    #[serde(rename = "check-expect-regex")]
    pub check_expect_regex: Option<String>,
    /// Its slow start (the global `slow-start` when not given).
    #[serde(rename = "slow-start")]
    pub slow_start: Option<String>,
    /// Its connection limit over all workers (0: none).
    #[serde(rename = "max-connections")]
    pub max_connections: Option<u32>,
    /// Whether it was a table (its errors then name `backend[N].KEY`).
    #[serde(skip)]
    pub table: bool,
}

impl BackendEntry {
    fn address(address: &str) -> BackendEntry {
        BackendEntry {
            address: address.to_string(),
            ..BackendEntry::default()
        }
    }

    /// Its `check-*` keys as one set of check settings.
    pub fn check_keys(&self) -> FileCheck {
        FileCheck {
            interval: self.check_interval.clone(),
            timeout: self.check_timeout.clone(),
            rise: self.check_rise,
            fall: self.check_fall,
            send: self.check_send.clone(),
            expect: self.check_expect.clone(),
            expect_regex: self.check_expect_regex.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for FileBackends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FileBackends, D::Error> {
        /// Says what is allowed when no form fits (an untagged enum
        /// would only say that no variant matched).
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = FileBackends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string, a list of them, or [[backend]] tables")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<FileBackends, E> {
                Ok(FileBackends(vec![BackendEntry::address(s)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FileBackends, A::Error> {
                let mut all = Vec::new();
                while let Some(Entry(e)) = seq.next_element()? {
                    all.push(e);
                }
                Ok(FileBackends(all))
            }
        }
        d.deserialize_any(Any)
    }
}

/// One element of a backend list: an address or a table.
struct Entry(BackendEntry);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string or a table with an address")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Entry, E> {
                Ok(Entry(BackendEntry::address(s)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                let mut e = BackendEntry::deserialize(de::value::MapAccessDeserializer::new(map))?;
                e.table = true;
                Ok(Entry(e))
            }
        }
        d.deserialize_any(Either)
    }
}

/// Reads and parses the config file at `path`. An empty file is valid:
/// every setting keeps its default.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config \"{}\": {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| {
        let mut msg = in_words(&e.message().replace('\n', " "));
        let mut line = String::new();
        if let Some(span) = e.span() {
            let at = span.start.min(text.len());
            line = format!(" (line {})", text[..at].matches('\n').count() + 1);
            if both_backend_forms(&text) {
                // TOML's own words would be a duplicate key or a bad header.
                msg = "key backend and [[backend]] tables both give the backends: use one or the other"
                    .into();
            } else if let Some(key) = key_at(&text, at) {
                if !msg.contains(&format!("`{key}`")) {
                    msg = format!("key {key}: {msg}");
                }
            }
        }
        format!("invalid config \"{}\"{line}: {msg}", path.display())
    })
}

/// The key whose value holds byte `at`: the nearest `key =` at the start
/// of its line or a line above (a list may span several lines). In the
/// `N`th `[[name]]` table (counting from 1) it is `name[N].key`, or
/// `name[N]` for the table itself; in a `[name]` table, `name.key`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let above: Vec<&str> = text[..end].lines().collect();
    let mut key = None;
    for (k, line) in above.iter().enumerate().rev() {
        let line = line.trim_start();
        if let Some(name) = array_header(line) {
            let n = above[..=k]
                .iter()
                .filter(|l| array_header(l.trim_start()) == Some(name))
                .count();
            return Some(match key {
                Some(key) => format!("{name}[{n}].{key}"),
                None => format!("{name}[{n}]"),
            });
        }
        if let Some(name) = table_header(line) {
            return Some(match key {
                Some(key) => format!("{name}.{key}"),
                None => name.to_string(),
            });
        }
        key = key.or_else(|| key_of(line));
    }
    key.map(String::from)
}

/// The key a `key = value` line sets.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    (!key.is_empty() && key.chars().all(plain)).then_some(key)
}

/// The name of a `[name]` header line (a comment may follow it).
fn table_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or(line).trim_end();
    let name = line.strip_prefix('[')?.strip_suffix(']')?.trim();
    (!name.starts_with('[')).then(|| name.trim_matches(|c| c == '"' || c == '\''))
}

/// The name of a `[[name]]` header line (a comment may follow it).
fn array_header(line: &str) -> Option<&str> {
    let line = line.split('#').next().unwrap_or(line).trim_end();
    let name = line.strip_prefix("[[")?.strip_suffix("]]")?.trim();
    Some(name.trim_matches(|c| c == '"' || c == '\''))
}

/// Whether `text` sets `backend = …` at the top and also has a
/// `[[backend]]` table, which TOML refuses as a duplicate key.
fn both_backend_forms(text: &str) -> bool {
    let (mut top, mut key, mut table) = (true, false, false);
    for line in text.lines().map(str::trim_start) {
        if line.starts_with('[') {
            top = false;
            table |= array_header(line) == Some("backend");
        } else if top && key_of(line) == Some("backend") {
            key = true;
        }
    }
    key && table
}

/// serde names the Rust type it wanted (`expected usize`); says what a
/// user may write instead.
fn in_words(msg: &str) -> String {
    msg.replace("expected usize", "expected a whole number, 0 or more")
        .replace("expected u16", "expected a whole number 0..=65535")
        .replace("expected u32", "expected a whole number, 0 or more")
        .replace("expected i32", "expected a whole number")
        .replace("expected a sequence", "expected a list")
}
