//! Just enough HTTP/1.x for a small endpoint: where a request head ends,
//! its request line, and a whole response that closes the connection.
//!
//! Headers are not parsed (no route needs one) and request bodies are
//! never read: every response says `Connection: close`, and the server
//! discards whatever the client sends after the head.

use std::fmt::Write as _;

/// The largest request head (request line and headers) read; a longer
/// one gets [`Status::HeadTooLarge`].
pub const MAX_HEAD: usize = 8 * 1024;

/// The statuses the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeadTooLarge,
}

impl Status {
    /// The status line's code and reason.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// A request's line: what a route looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// As sent, e.g. `GET`; methods are case-sensitive.
    pub method: &'a str,
    /// The target without its query, e.g. `/metrics`.
    pub path: &'a str,
    /// What follows `?` in the target, if anything.
    pub query: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// Reads the request line at the start of a complete `head`; a line
    /// that is not `METHOD /target HTTP/1.x` is [`Status::BadRequest`].
    pub fn parse(head: &'a [u8]) -> Result<Request<'a>, Status> {
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = std::str::from_utf8(line).map_err(|_| Status::BadRequest)?;
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Status::BadRequest);
        };
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
        let version_ok = matches!(version, "HTTP/1.0" | "HTTP/1.1");
        if !token(method) || !target.starts_with('/') || !version_ok {
            return Err(Status::BadRequest);
        }
        if target.bytes().any(|b| b.is_ascii_control()) {
            return Err(Status::BadRequest);
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Ok(Request {
            method,
            path,
            query,
        })
    }
}

/// Where the head in `buf` ends (just past its empty line), looking only
/// at what follows `from`, the length already searched on an earlier read.
/// Bare `\n` line ends are accepted as well as `\r\n`.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..].windows(2).enumerate().find_map(|(i, w)| {
        let at = start + i;
        let blank = w == b"\n\n" || (w == b"\r\n" && buf[..at].ends_with(b"\r\n"));
        blank.then_some(at + 2)
    })
}

/// A response, written whole and followed by the connection's close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    /// The `Allow` header of a 405: the methods the path takes.
    pub allow: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with `body` of `content_type`.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: Status::Ok,
            content_type,
            allow: None,
            body: body.into(),
        }
    }

    /// An error status with a one-line plain-text body.
    pub fn error(status: Status, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            allow: None,
            body: format!("{message}\n").into_bytes(),
        }
    }

    /// A 405 naming the methods `allow`ed.
    pub fn not_allowed(allow: &'static str) -> Response {
        Response {
            allow: Some(allow),
            ..Response::error(Status::MethodNotAllowed, &format!("allowed: {allow}"))
        }
    }

    /// The bytes on the wire; `head_only` (a `HEAD` request) leaves the
    /// body out but still names its length.
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status.line(),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            let _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_and_bad_ones_are_400() {
        let r = Request::parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        let want = Request {
            method: "GET",
            path: "/metrics",
            query: Some("x=1"),
        };
        assert_eq!(r, Ok(want));
        assert_eq!(
            Request::parse(b"HEAD / HTTP/1.0\n\n").map(|r| r.path),
            Ok("/")
        );
        for bad in [
            &b"hello\r\n\r\n"[..],
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"G3T /metrics HTTP/1.1\r\n\r\n",
            b"GET /a\x7fb HTTP/1.1\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(Request::parse(bad), Err(Status::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn the_head_end_is_found_however_the_bytes_arrive() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        let end = head.len() - 4;
        for cut in 0..head.len() {
            let first = head_end(&head[..cut], 0);
            let found = first.or_else(|| head_end(head, cut));
            assert_eq!(found, Some(end), "split at {cut}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"\r\n", 0), None, "no line before it");
    }

    #[test]
    fn responses_close_and_name_their_length() {
        let r = Response::ok("text/plain", "abc");
        let full = String::from_utf8(r.encode(false)).expect("utf-8");
        assert_eq!(
            full,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
             Connection: close\r\n\r\nabc"
        );
        assert!(r
            .encode(true)
            .ends_with(b"Content-Length: 3\r\nConnection: close\r\n\r\n"));
        let na = String::from_utf8(Response::not_allowed("GET, HEAD").encode(false));
        assert!(na.expect("utf-8").contains("405 Method Not Allowed\r\n"));
    }
}
