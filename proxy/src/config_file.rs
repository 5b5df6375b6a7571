//! The config file: the same settings as the long options, read into a
//! [`FileConfig`]. Every mistake is one line naming the file, the line and
//! the key: `invalid config "p.toml" (line 5): key workers: …`.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::path::Path;

/// The config file, key by key (the long options' names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub backend: Option<OneOrMany>,
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
    pub balance: Option<crate::config::Balance>,
    pub drain_timeout: Option<String>,
    pub reset_flush_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub busy_poll: Option<String>,
    pub log_connections: Option<bool>,
    pub backlog: Option<i32>,
    pub connect_retries: Option<u32>,
    pub fall: Option<u32>,
    pub fail_timeout: Option<String>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
}

/// `backend = "a"` or `backend = ["a", "b"]`.
#[derive(Debug)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OneOrMany, D::Error> {
        /// Says what is allowed when neither form fits (an untagged enum
        /// would only say that no variant matched).
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address string or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    all.push(s);
                }
                Ok(OneOrMany::Many(all))
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
            if let Some(key) = key_at(&text, at) {
                if !msg.contains(&format!("`{key}`")) {
                    msg = format!("key {key}: {msg}");
                }
            }
        }
        format!("invalid config \"{}\"{line}: {msg}", path.display())
    })
}

/// The key whose value holds byte `at`: the nearest `key =` at the start
/// of its line or a line above (a list may span several lines).
fn key_at(text: &str, at: usize) -> Option<&str> {
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    for line in text[..end].lines().rev() {
        let line = line.trim_start();
        if line.starts_with('[') && !line.starts_with("[[") && line.ends_with(']') {
            return None;
        }
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
            let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if !key.is_empty() && key.chars().all(plain) {
                return Some(key);
            }
        }
    }
    None
}

/// serde names the Rust type it wanted (`expected usize`); says what a
/// user may write instead.
fn in_words(msg: &str) -> String {
    msg.replace("expected usize", "expected a whole number, 0 or more")
        .replace("expected u16", "expected a whole number 0..=65535")
        .replace("expected i32", "expected a whole number")
        .replace("expected a sequence", "expected a list")
}
