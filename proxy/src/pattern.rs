//! A small regular-expression subset for health-check replies
//! (`expect-regex`), matched over bytes. No regex crate is allowed, and a
//! check reply needs little: this is the whole language.
//!
//! - A literal byte matches itself; `.` matches any byte.
//! - `[abc]`, `[a-z0-9_]`, `[^\r\n]`: a class of bytes (ranges, a leading
//!   `^` negates it; `]` first in the class, or `\]`, is a literal).
//! - `*`, `+`, `?` after an atom: zero or more, one or more, zero or one
//!   (greedy, with backtracking).
//! - `^` at the very start anchors the match at the reply's first byte,
//!   `$` at the very end at its last byte received; elsewhere they are
//!   literals. Without `^` the pattern may match anywhere.
//! - Escapes: `\r`, `\n`, `\t`, `\\`, `\xHH` (a byte in hex), and `\` before
//!   any punctuation for that character itself (`\.`, `\+`, `\[`, `\$`).
//!
//! No groups, alternation or counted repeats. Matching backtracks, but
//! replies are short (a check reads at most [`crate::health::MAX_REPLY`]
//! bytes) and a pattern has at most [`MAX_ATOMS`] atoms, so its cost is
//! bounded.

use std::fmt;

/// The most atoms a pattern may have.
pub const MAX_ATOMS: usize = 64;

/// A compiled pattern, with the text it was written as.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    atoms: Vec<(Atom, Repeat)>,
    start: bool,
    end: bool,
}

/// What one position matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Byte(u8),
    Any,
    /// Inclusive byte ranges, and whether the class is negated.
    Class(Vec<(u8, u8)>, bool),
}

/// How often an atom may repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    One,
    /// `?`
    Optional,
    /// `*`
    Any,
    /// `+`
    Some,
}

impl Pattern {
    /// Compiles `source`, or says what is wrong with it and where.
    pub fn new(source: &str) -> Result<Pattern, String> {
        let bytes = source.as_bytes();
        let mut i = 0;
        let start = bytes.first() == Some(&b'^');
        if start {
            i = 1;
        }
        let mut atoms: Vec<(Atom, Repeat)> = Vec::new();
        let mut end = false;
        while i < bytes.len() {
            let c = bytes[i];
            let atom = match c {
                b'$' if i + 1 == bytes.len() => {
                    end = true;
                    i += 1;
                    continue;
                }
                b'*' | b'+' | b'?' => {
                    let last = atoms.last_mut().filter(|a| a.1 == Repeat::One);
                    let Some(last) = last else {
                        return Err(format!(
                            "'{}' at offset {i} repeats nothing (escape it as \\{})",
                            c as char, c as char
                        ));
                    };
                    last.1 = match c {
                        b'*' => Repeat::Any,
                        b'+' => Repeat::Some,
                        _ => Repeat::Optional,
                    };
                    i += 1;
                    continue;
                }
                b'.' => {
                    i += 1;
                    Atom::Any
                }
                b'[' => {
                    let (class, next) = class(bytes, i + 1)?;
                    i = next;
                    class
                }
                b'\\' => {
                    let (b, next) = escape(bytes, i)?;
                    i = next;
                    Atom::Byte(b)
                }
                b'(' | b')' | b'|' | b'{' | b'}' => {
                    return Err(format!(
                        "'{}' at offset {i}: groups, alternation and counted repeats are not \
                         supported (escape it as \\{} for the character)",
                        c as char, c as char
                    ))
                }
                _ => {
                    i += 1;
                    Atom::Byte(c)
                }
            };
            atoms.push((atom, Repeat::One));
            if atoms.len() > MAX_ATOMS {
                return Err(format!("more than {MAX_ATOMS} atoms"));
            }
        }
        Ok(Pattern {
            source: source.to_string(),
            atoms,
            start,
            end,
        })
    }

    /// Whether the pattern matches `text` (anywhere, unless anchored).
    pub fn is_match(&self, text: &[u8]) -> bool {
        if self.start {
            return self.here(0, text);
        }
        (0..=text.len()).any(|at| self.here(0, &text[at..]))
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether atoms `k..` match a prefix of `text` (all of it with `$`).
    fn here(&self, k: usize, text: &[u8]) -> bool {
        let Some((atom, rep)) = self.atoms.get(k) else {
            return !self.end || text.is_empty();
        };
        let (min, max) = match rep {
            Repeat::One => (1, 1),
            Repeat::Optional => (0, 1),
            Repeat::Any => (0, usize::MAX),
            Repeat::Some => (1, usize::MAX),
        };
        let run = text
            .iter()
            .take(max)
            .take_while(|&&b| atom.matches(b))
            .count();
        // Greedy: the longest run first, then shorter ones.
        (min..=run).rev().any(|n| self.here(k + 1, &text[n..]))
    }
}

impl Atom {
    fn matches(&self, b: u8) -> bool {
        match self {
            Atom::Byte(c) => *c == b,
            Atom::Any => true,
            Atom::Class(ranges, negated) => {
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

/// The class whose body starts at `bytes[i]` (after the `[`), and the
/// offset after its `]`.
fn class(bytes: &[u8], mut i: usize) -> Result<(Atom, usize), String> {
    let open = i - 1;
    let negated = bytes.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let lo = match bytes.get(i) {
            None => return Err(format!("'[' at offset {open} is never closed")),
            Some(b']') if !first => return Ok((Atom::Class(ranges, negated), i + 1)),
            Some(b'\\') => {
                let (b, next) = escape(bytes, i)?;
                i = next;
                b
            }
            Some(&b) => {
                i += 1;
                b
            }
        };
        first = false;
        let is_range = bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(|&b| b != b']');
        let hi = if is_range {
            let (hi, next) = match bytes[i + 1] {
                b'\\' => escape(bytes, i + 1)?,
                b => (b, i + 2),
            };
            i = next;
            if hi < lo {
                return Err(format!(
                    "range {}-{} at offset {open} runs backwards",
                    lo as char, hi as char
                ));
            }
            hi
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// The byte an escape at `bytes[i]` (a `\`) stands for, and the offset
/// after it. Shared with the `send` strings of health checks.
fn escape(bytes: &[u8], i: usize) -> Result<(u8, usize), String> {
    let Some(&c) = bytes.get(i + 1) else {
        return Err(format!("'\\' at offset {i} ends the text"));
    };
    let b = match c {
        b'r' => b'\r',
        b'n' => b'\n',
        b't' => b'\t',
        b'0' => 0,
        b'x' => {
            let hex = bytes
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(format!(
                    "'\\x' at offset {i} needs two hex digits, e.g. \\x0d"
                ));
            };
            return Ok((b, i + 4));
        }
        c if c.is_ascii_punctuation() || c == b' ' => c,
        c => {
            return Err(format!(
                "unknown escape '\\{}' at offset {i} (use \\r \\n \\t \\\\ \\xHH)",
                c as char
            ))
        }
    };
    Ok((b, i + 2))
}

/// The bytes `text` stands for, with the escapes `\r`, `\n`, `\t`, `\0`,
/// `\\`, `\xHH` and `\` before punctuation: how a check's `send` and
/// `expect` strings are written.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let (b, next) = escape(bytes, i)?;
            out.push(b);
            i = next;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// `bytes` for a log line: printable ASCII as is, the rest escaped the way
/// [`unescape`] reads it.
pub fn escaped(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern(/{}/)", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, text: &[u8]) -> bool {
        Pattern::new(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .is_match(text)
    }

    #[test]
    fn literals_match_anywhere_unless_anchored() {
        assert!(m("PONG", b"+PONG\r\n"));
        assert!(!m("^PONG", b"+PONG\r\n"));
        assert!(m("^\\+PONG", b"+PONG\r\n"));
        assert!(m("", b"anything"));
        assert!(!m("PING", b"PIN"));
    }

    #[test]
    fn dollar_anchors_at_the_end() {
        assert!(m("OK\\r\\n$", b"+OK\r\n"));
        assert!(!m("OK$", b"+OK\r\n"));
        assert!(m("^$", b""));
        assert!(!m("^$", b"x"));
        // Elsewhere `^` and `$` are literals.
        assert!(m("a^b$c", b"a^b$c"));
    }

    #[test]
    fn repeats_are_greedy_and_backtrack() {
        assert!(m("^a*b", b"aaab"));
        assert!(m("^a*b", b"b"));
        assert!(!m("^a+b", b"b"));
        assert!(m("^colou?r$", b"color"));
        assert!(m("^colou?r$", b"colour"));
        assert!(!m("^colou?r$", b"colouur"));
        assert!(m("^.*OK$", b"status: OK"));
        assert!(m("^a.*a$", b"abcba"));
        assert!(m("^HTTP/1\\.[01] 200", b"HTTP/1.1 200 OK"));
        assert!(!m("^HTTP/1\\.[01] 200", b"HTTP/1x1 200 OK"));
    }

    #[test]
    fn classes_take_ranges_negation_and_escapes() {
        assert!(m("^[a-z]+$", b"hello"));
        assert!(!m("^[a-z]+$", b"Hello"));
        assert!(m("^[A-Za-z0-9_]+$", b"Ab_9"));
        assert!(m("^[^\\r\\n]*\\r\\n$", b"+PONG\r\n"));
        assert!(!m("^[^\\r\\n]*$", b"a\nb"));
        assert!(m("^[]x]+$", b"]x]"));
        assert!(m("^[a-]+$", b"a-a"));
        assert!(m("^[\\x00-\\x1f]$", b"\x07"));
        assert!(m("^[.]$", b"."));
        assert!(!m("^[.]$", b"x"));
    }

    #[test]
    fn escapes_name_bytes() {
        assert!(m("^\\x2bPONG\\r\\n$", b"+PONG\r\n"));
        assert!(m("^a\\\\b$", b"a\\b"));
        assert!(m("^\\t\\.\\*$", b"\t.*"));
        assert!(m("^\\$5$", b"$5"));
        assert_eq!(unescape("PING\\r\\n").expect("ok"), b"PING\r\n");
        assert_eq!(unescape("\\x00\\xff\\\\").expect("ok"), b"\x00\xff\\");
        assert_eq!(escaped(b"-ERR \"x\"\r\n\x01"), "-ERR \\\"x\\\"\\r\\n\\x01");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |p: &str| Pattern::new(p).expect_err(p);
        assert!(err("*a").contains("repeats nothing"), "{}", err("*a"));
        assert!(err("a**").contains("repeats nothing"));
        assert!(err("[a-z").contains("never closed"));
        assert!(err("[z-a]").contains("runs backwards"));
        assert!(err("a\\").contains("ends the text"));
        assert!(err("\\xg1").contains("two hex digits"));
        assert!(err("\\q").contains("unknown escape"));
        assert!(err("(a|b)").contains("not supported"));
        assert!(err(&"a".repeat(MAX_ATOMS + 1)).contains("atoms"));
        assert!(unescape("\\q").is_err());
    }
}
