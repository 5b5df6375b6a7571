//! The `http` mode's request framing: counts complete HTTP/1.x requests in
//! a byte stream that arrives in arbitrary pieces, and appends one fixed
//! response per request.
//!
//! Only what framing needs is parsed: the request line, `Content-Length`
//! (its body is skipped, however it is split), `Connection` and
//! `Transfer-Encoding`. Between reads a connection keeps only the tail of
//! a request head that is not complete yet (at most [`MAX_HEAD`] bytes)
//! and how much of a body is still to be skipped, so pipelined requests
//! cost no allocation at all.

/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// The status line and headers every 200 response starts with.
const OK_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n";
/// The 200 response's body.
const OK_BODY: &[u8] = b"ok\n";
/// The common case in full: a keep-alive 200 to a GET.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
/// The answer to a malformed or oversized request; the connection closes.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 12\r\nConnection: close\r\n\r\nbad request\n";

/// What the connection should do after the responses appended by
/// [`Parser::feed`] have been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the connection open for more requests.
    KeepAlive,
    /// Close it: the client asked to (`Connection: close`, or HTTP/1.0
    /// without keep-alive), or the request was bad and got a 400. Any
    /// bytes after that request are ignored.
    Close,
}

/// One connection's framing state between reads.
#[derive(Debug, Default)]
pub struct Parser {
    /// The incomplete request head carried over from earlier reads; empty
    /// (and unallocated) in the common case of whole requests per read.
    head: Vec<u8>,
    /// Body bytes of the current request still to be skipped.
    body_left: u64,
}

/// What a complete, valid request head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    content_length: u64,
    /// `HEAD` request: answer without a body.
    head_only: bool,
    persistence: Persistence,
}

/// How the request wants its connection treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// HTTP/1.1 default.
    KeepAlive,
    /// HTTP/1.0 with `Connection: keep-alive`: the response must say so.
    KeepAlive10,
    /// Close after the response.
    Close,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Consumes `data`, appending one response to `out` for every request
    /// it completes. On [`Verdict::Close`] the rest of `data` is ignored
    /// and the parser must not be fed again.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Verdict {
        loop {
            if self.body_left > 0 {
                let n = self.body_left.min(data.len() as u64);
                self.body_left -= n;
                data = &data[n as usize..];
            }
            if self.head.is_empty() {
                // RFC 9112 §2.2: ignore empty lines before a request line.
                while let [b'\r' | b'\n', rest @ ..] = data {
                    data = rest;
                }
            }
            if data.is_empty() {
                return Verdict::KeepAlive;
            }
            let parsed = if self.head.is_empty() {
                match find_end(data) {
                    Some(end) if end <= MAX_HEAD => {
                        let head = parse_head(&data[..end]);
                        data = &data[end..];
                        head
                    }
                    Some(_) => None,
                    None if data.len() < MAX_HEAD && plausible(data) => {
                        self.head.extend_from_slice(data);
                        return Verdict::KeepAlive;
                    }
                    None => None,
                }
            } else {
                match find_end_after(&self.head, data) {
                    Some(end) if self.head.len() + end <= MAX_HEAD => {
                        self.head.extend_from_slice(&data[..end]);
                        data = &data[end..];
                        let head = parse_head(&self.head);
                        self.head.clear();
                        head
                    }
                    Some(_) => None,
                    None if self.head.len() + data.len() < MAX_HEAD => {
                        self.head.extend_from_slice(data);
                        if !plausible(&self.head) {
                            out.extend_from_slice(BAD_REQUEST);
                            return Verdict::Close;
                        }
                        return Verdict::KeepAlive;
                    }
                    None => None,
                }
            };
            let Some(head) = parsed else {
                out.extend_from_slice(BAD_REQUEST);
                return Verdict::Close;
            };
            respond(&head, out);
            if head.persistence == Persistence::Close {
                return Verdict::Close;
            }
            self.body_left = head.content_length;
        }
    }
}

/// Appends the fixed 200 response for `head`.
fn respond(head: &Head, out: &mut Vec<u8>) {
    if !head.head_only && head.persistence == Persistence::KeepAlive {
        out.extend_from_slice(OK);
        return;
    }
    out.extend_from_slice(OK_HEAD);
    match head.persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if !head.head_only {
        out.extend_from_slice(OK_BODY);
    }
}

/// Whether an incomplete request head can still become a valid one, as
/// far as its method goes: binary garbage (a TLS hello, say) gets its 400
/// at once instead of waiting for 16 KiB that never come.
fn plausible(partial: &[u8]) -> bool {
    // Only the start is looked at, so that a head arriving a byte at a
    // time costs nothing quadratic.
    partial
        .iter()
        .take(32)
        .take_while(|&&b| b != b' ')
        .all(|&b| is_tchar(b))
}

/// The index just past the first `\r\n\r\n` in `data`.
fn find_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// Like [`find_end`] for the continuation `data` of an incomplete `head`
/// (which holds no `\r\n\r\n` itself): the terminator may straddle the two.
/// Returns the index in `data` just past it.
fn find_end_after(head: &[u8], data: &[u8]) -> Option<usize> {
    let tail = &head[head.len().saturating_sub(3)..];
    let mut joined = [0u8; 6];
    let n = data.len().min(3);
    joined[..tail.len()].copy_from_slice(tail);
    joined[tail.len()..tail.len() + n].copy_from_slice(&data[..n]);
    if let Some(end) = find_end(&joined[..tail.len() + n]) {
        return Some(end - tail.len());
    }
    find_end(data)
}

/// Whether `b` may appear in a method or header name (RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Validates a complete request head (ending in `\r\n\r\n`) and extracts
/// what framing needs. `None` means it is malformed.
fn parse_head(head: &[u8]) -> Option<Head> {
    // Keep the last line's `\r`, so that every line ends in one.
    let body = head.strip_suffix(b"\n\r\n")?;
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r"));
    let request_line = lines.next()??;

    let mut parts = request_line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some()
        || method.is_empty()
        || !method.iter().all(|&b| is_tchar(b))
        || target.is_empty()
        || !target.iter().all(|&b| b > b' ' && b != 0x7f)
    {
        return None;
    }
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        _ => return None,
    };

    let mut content_length: Option<u64> = None;
    let (mut close, mut keep_alive) = (false, false);
    for line in lines {
        let line = line?;
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None; // Also rejects obsolete line folding.
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_decimal(value)?;
            if content_length.is_some_and(|old| old != n) {
                return None;
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked bodies are not framed here: refuse rather than
            // misread the body as requests.
            return None;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let persistence = if close || (http10 && !keep_alive) {
        Persistence::Close
    } else if http10 {
        Persistence::KeepAlive10
    } else {
        Persistence::KeepAlive
    };
    Some(Head {
        content_length: content_length.unwrap_or(0),
        head_only: method == b"HEAD",
        persistence,
    })
}

/// Strips optional whitespace (spaces and tabs) from both ends.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A non-empty run of ASCII digits that fits in a `u64`.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Feeds `input` in pieces of `step` bytes; returns the number of
    /// responses and the last verdict.
    fn run(input: &[u8], step: usize) -> (Vec<u8>, Verdict) {
        let mut p = Parser::new();
        let mut out = Vec::new();
        let mut v = Verdict::KeepAlive;
        for piece in input.chunks(step) {
            v = p.feed(piece, &mut out);
            if v == Verdict::Close {
                break;
            }
        }
        (out, v)
    }

    fn count(out: &[u8], what: &[u8]) -> usize {
        out.windows(what.len()).filter(|w| *w == what).count()
    }

    #[test]
    fn pipelined_requests_get_one_response_each_however_split() {
        let input = [GET, GET, GET].concat();
        for step in [1, 2, 3, 5, 7, 13, input.len()] {
            let (out, v) = run(&input, step);
            assert_eq!(out, [OK, OK, OK].concat(), "step {step}");
            assert_eq!(v, Verdict::KeepAlive);
        }
    }

    #[test]
    fn content_length_bodies_are_skipped() {
        // A body that would read as a request if it were not skipped.
        let post = b"POST /x HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let input = [&post[..], GET, &post[..], GET].concat();
        for step in [1, 4, 9, input.len()] {
            let (out, _) = run(&input, step);
            assert_eq!(count(&out, b"200 OK"), 4, "step {step}");
        }
    }

    #[test]
    fn connection_close_answers_then_ignores_the_rest() {
        let input = [&b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"[..], GET].concat();
        let (out, v) = run(&input, input.len());
        assert_eq!(v, Verdict::Close);
        assert_eq!(count(&out, b"200 OK"), 1);
        assert_eq!(count(&out, b"Connection: close"), 1);
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let (_, v) = run(b"GET / HTTP/1.0\r\n\r\n", 100);
        assert_eq!(v, Verdict::Close);
        let (out, v) = run(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 100);
        assert_eq!(v, Verdict::KeepAlive);
        assert_eq!(count(&out, b"Connection: keep-alive"), 1);
    }

    #[test]
    fn head_requests_get_no_body() {
        let (out, _) = run(b"HEAD / HTTP/1.1\r\n\r\n", 100);
        assert!(out.ends_with(b"Content-Length: 3\r\n\r\n"));
    }

    #[test]
    fn malformed_requests_get_400_and_close() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        ] {
            let (out, v) = run(bad, bad.len());
            assert_eq!(out, BAD_REQUEST, "{:?}", String::from_utf8_lossy(bad));
            assert_eq!(v, Verdict::Close);
        }
    }

    #[test]
    fn binary_garbage_gets_400_without_waiting_for_more() {
        for step in [1, 3] {
            let (out, v) = run(b"\x16\x03\x01\x02\x00", step);
            assert_eq!(out, BAD_REQUEST);
            assert_eq!(v, Verdict::Close);
        }
    }

    #[test]
    fn an_oversized_head_gets_400_even_without_a_terminator() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        for step in [1000, big.len()] {
            let (out, v) = run(&big, step);
            assert_eq!(out, BAD_REQUEST);
            assert_eq!(v, Verdict::Close);
        }
    }

    #[test]
    fn a_head_just_under_the_limit_is_fine() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.resize(MAX_HEAD - 4, b'a');
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(req.len(), MAX_HEAD);
        let (out, _) = run(&req, 999);
        assert_eq!(out, OK);
    }

    #[test]
    fn stray_empty_lines_between_requests_are_ignored() {
        let input = [GET, b"\r\n", GET].concat();
        let (out, _) = run(&input, 1);
        assert_eq!(out, [OK, OK].concat());
    }
}
