//! An incremental HTTP/1.x response reader: fed whatever each `read`
//! returned, it says when one response is complete and whether the server
//! will close the connection after it. It keeps a few numbers and one
//! short line per connection and never allocates after it is built.
//!
//! Only what is needed to find the end of a response is interpreted: the
//! status line, `Content-Length`, `Transfer-Encoding: chunked` and
//! `Connection`. A body is skipped, not stored.

/// The longest line kept; longer header lines are cut (names and values
/// that matter are short).
const LINE_MAX: usize = 256;

/// Why a response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The status line is not `HTTP/1.x NNN ...`.
    BadStatusLine,
    /// The server answered with a 4xx or 5xx status.
    Status(u16),
    /// A `Content-Length` or chunk size that is not a number.
    BadLength,
    /// Bytes after the end of a response that nobody asked for.
    Unexpected,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadStatusLine => write!(f, "malformed HTTP status line"),
            HttpError::Status(s) => write!(f, "HTTP status {s}"),
            HttpError::BadLength => write!(f, "malformed Content-Length or chunk size"),
            HttpError::Unexpected => write!(f, "bytes after the end of the response"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StatusLine,
    Headers,
    Body {
        left: u64,
    },
    ChunkSize,
    ChunkData {
        left: u64,
    },
    ChunkDataEnd,
    Trailers,
    /// No length given: the body ends when the server closes.
    UntilClose,
    Done,
}

/// What [`Response::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All bytes consumed; the response is not complete yet.
    More,
    /// The response is complete; the server keeps the connection open.
    Done,
    /// The response is complete; the server will close the connection.
    DoneClose,
}

/// The reading state of one response.
pub struct Response {
    state: State,
    line: [u8; LINE_MAX],
    line_len: usize,
    status: u16,
    http10: bool,
    content_length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    /// The request was `HEAD` (or the status has no body).
    no_body: bool,
}

impl Default for Response {
    fn default() -> Self {
        Response::new()
    }
}

impl Response {
    pub fn new() -> Response {
        Response {
            state: State::StatusLine,
            line: [0; LINE_MAX],
            line_len: 0,
            status: 0,
            http10: false,
            content_length: None,
            chunked: false,
            close: false,
            keep_alive: false,
            no_body: false,
        }
    }

    /// Gets ready for the next response on the same connection.
    pub fn reset(&mut self) {
        self.state = State::StatusLine;
        self.line_len = 0;
        self.status = 0;
        self.http10 = false;
        self.content_length = None;
        self.chunked = false;
        self.close = false;
        self.keep_alive = false;
        self.no_body = false;
    }

    /// Whether any byte of a response has been seen.
    pub fn started(&self) -> bool {
        self.state != State::StatusLine || self.line_len > 0
    }

    /// The status code of the response read so far (0 before the status line).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Consumes `data`. A complete response must use all of it: bytes
    /// beyond the end of a response are an error, since only one request
    /// is ever outstanding.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<Progress, HttpError> {
        while !data.is_empty() {
            match self.state {
                State::Body { left } | State::ChunkData { left } => {
                    let n = (data.len() as u64).min(left) as usize;
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Body { .. } if left == 0 => State::Done,
                        State::Body { .. } => State::Body { left },
                        _ if left == 0 => State::ChunkDataEnd,
                        _ => State::ChunkData { left },
                    };
                }
                State::UntilClose => return Ok(Progress::More),
                State::Done => return Err(HttpError::Unexpected),
                _ => {
                    // Line-oriented states: collect up to the next LF.
                    let (line_part, rest, complete) = match data.iter().position(|&b| b == b'\n') {
                        Some(i) => (&data[..i], &data[i + 1..], true),
                        None => (data, &data[data.len()..], false),
                    };
                    let room = LINE_MAX - self.line_len;
                    let take = line_part.len().min(room);
                    self.line[self.line_len..self.line_len + take]
                        .copy_from_slice(&line_part[..take]);
                    self.line_len += take;
                    data = rest;
                    if complete {
                        let mut len = self.line_len;
                        if len > 0 && self.line[len - 1] == b'\r' {
                            len -= 1;
                        }
                        self.line_len = 0;
                        self.on_line(len)?;
                    }
                }
            }
            if self.state == State::Done && !data.is_empty() {
                return Err(HttpError::Unexpected);
            }
        }
        Ok(match self.state {
            State::Done if self.will_close() => Progress::DoneClose,
            State::Done => Progress::Done,
            _ => Progress::More,
        })
    }

    /// The server closed the connection. Returns whether that completed the
    /// response (a body without a length ends this way).
    pub fn eof(&mut self) -> bool {
        if self.state == State::UntilClose {
            self.state = State::Done;
            true
        } else {
            self.state == State::Done
        }
    }

    fn will_close(&self) -> bool {
        self.close || (self.http10 && !self.keep_alive)
    }

    fn on_line(&mut self, len: usize) -> Result<(), HttpError> {
        let mut line = [0u8; LINE_MAX];
        line[..len].copy_from_slice(&self.line[..len]);
        let line = &line[..len];
        match self.state {
            State::StatusLine => {
                if line.is_empty() {
                    return Ok(()); // Tolerate a stray CRLF before a response.
                }
                let ok = line.len() >= 12
                    && line.starts_with(b"HTTP/1.")
                    && line[8] == b' '
                    && line[9..12].iter().all(u8::is_ascii_digit);
                if !ok {
                    return Err(HttpError::BadStatusLine);
                }
                self.http10 = line[7] == b'0';
                self.status = line[9..12]
                    .iter()
                    .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
                self.no_body |=
                    (100..200).contains(&self.status) || matches!(self.status, 204 | 304);
                self.state = State::Headers;
            }
            State::Headers if line.is_empty() => {
                if (100..200).contains(&self.status) {
                    // An interim response: the real one follows.
                    self.reset();
                    return Ok(());
                }
                if self.status >= 400 {
                    return Err(HttpError::Status(self.status));
                }
                self.state = if self.no_body {
                    State::Done
                } else if self.chunked {
                    State::ChunkSize
                } else {
                    match self.content_length {
                        Some(0) => State::Done,
                        Some(n) => State::Body { left: n },
                        None => {
                            self.close = true;
                            State::UntilClose
                        }
                    }
                };
            }
            State::Headers => {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return Ok(()); // Not a header we understand: ignore it.
                };
                let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
                if name.eq_ignore_ascii_case(b"content-length") {
                    self.content_length = Some(parse_dec(value).ok_or(HttpError::BadLength)?);
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    self.chunked = contains_token(value, b"chunked");
                } else if name.eq_ignore_ascii_case(b"connection") {
                    self.close |= contains_token(value, b"close");
                    self.keep_alive |= contains_token(value, b"keep-alive");
                }
            }
            State::ChunkSize => {
                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let size = parse_hex(trim(hex)).ok_or(HttpError::BadLength)?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData { left: size }
                };
            }
            State::ChunkDataEnd => {
                if !line.is_empty() {
                    return Err(HttpError::BadLength);
                }
                self.state = State::ChunkSize;
            }
            State::Trailers => {
                if line.is_empty() {
                    self.state = State::Done;
                }
            }
            State::Body { .. } | State::ChunkData { .. } | State::UntilClose | State::Done => {}
        }
        Ok(())
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &d| {
        let v = (d as char).to_digit(16)?;
        Some(acc * 16 + u64::from(v))
    })
}

/// Builds the request sent for every message: a keep-alive `GET`.
pub fn request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: loadgen\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_bytewise(r: &mut Response, data: &[u8]) -> Result<Progress, HttpError> {
        let mut last = Progress::More;
        for b in data {
            last = r.feed(std::slice::from_ref(b))?;
        }
        Ok(last)
    }

    #[test]
    fn content_length_response_completes_in_any_split() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        let mut r = Response::new();
        assert_eq!(r.feed(resp), Ok(Progress::Done));
        for cut in 0..resp.len() {
            let mut r = Response::new();
            assert_eq!(r.feed(&resp[..cut]), Ok(Progress::More), "cut {cut}");
            assert_eq!(r.feed(&resp[cut..]), Ok(Progress::Done), "cut {cut}");
        }
        let mut r = Response::new();
        assert_eq!(feed_bytewise(&mut r, resp), Ok(Progress::Done));
    }

    #[test]
    fn chunked_body_is_followed_to_its_end() {
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                     5;ext=1\r\nhello\r\n0b\r\nhello world\r\n0\r\nTrailer: x\r\n\r\n";
        let mut r = Response::new();
        assert_eq!(feed_bytewise(&mut r, resp), Ok(Progress::Done));
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let mut r = Response::new();
        let p = r.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(p, Ok(Progress::DoneClose));
        let mut r = Response::new();
        let p = r.feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(p, Ok(Progress::Done));
        let mut r = Response::new();
        let p = r.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(p, Ok(Progress::DoneClose));
    }

    #[test]
    fn body_without_length_ends_at_close() {
        let mut r = Response::new();
        let p = r.feed(b"HTTP/1.0 200 OK\r\n\r\nsome body");
        assert_eq!(p, Ok(Progress::More));
        assert!(r.eof());
    }

    #[test]
    fn bad_responses_are_errors() {
        let mut r = Response::new();
        assert_eq!(r.feed(b"HELLO\r\n"), Err(HttpError::BadStatusLine));
        let mut r = Response::new();
        assert_eq!(
            r.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err(HttpError::Status(404))
        );
        let mut r = Response::new();
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra"),
            Err(HttpError::Unexpected)
        );
        let mut r = Response::new();
        assert_eq!(
            r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::BadLength)
        );
    }

    #[test]
    fn reset_reads_the_next_response() {
        let one = b"HTTP/1.1 204 No Content\r\n\r\n";
        let mut r = Response::new();
        assert_eq!(r.feed(one), Ok(Progress::Done));
        r.reset();
        assert_eq!(r.feed(one), Ok(Progress::Done));
    }
}
