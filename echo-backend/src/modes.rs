//! What each [`Mode`] does with a connection when it may read or write:
//! echo and http answer what they read, sink discards it, source writes
//! the seeded pattern.

use crate::conn::{Conn, End, Next, Spares, FAIR_ROUNDS};
use crate::http;
use crate::pattern::Pattern;

/// What the backend does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Return every byte; after the client's FIN, finish echoing and close.
    Echo,
    /// HTTP/1.1 keep-alive: a small fixed 200 response to every request.
    Http,
    /// Read and discard; close after the client's EOF.
    Sink,
    /// Write the seeded pattern endlessly; discard what the client sends.
    Source,
}

impl Mode {
    /// Does whatever this mode can do on `c` now, with the worker's `t`.
    pub(crate) fn serve(self, c: &mut Conn, t: &mut Tools<'_>) -> Result<Next, End> {
        match self {
            Mode::Echo => serve_echo(c, t),
            Mode::Http => serve_http(c, t),
            Mode::Sink => serve_sink(c, t),
            Mode::Source => serve_source(c, t),
        }
    }
}

/// The worker's shared buffers, lent to one connection at a time.
pub(crate) struct Tools<'a> {
    pub(crate) scratch: &'a mut [u8],
    /// Http responses for one read, written in one go.
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) spares: &'a mut Spares,
    pub(crate) pattern: &'a Pattern,
}

/// The loop of the modes that answer what they read (echo, http): flush
/// what is pending first (no reading while a reply is stuck), end with
/// the client's FIN only once everything before it was answered, and
/// hand every read of `n` bytes in `t.scratch` to `answer`.
fn serve_replies(
    c: &mut Conn,
    t: &mut Tools<'_>,
    answer: impl Fn(&mut Conn, &mut Tools<'_>, usize) -> Result<(), End>,
) -> Result<Next, End> {
    let mut rounds = 0;
    loop {
        if !c.flush(t.spares)? {
            return Ok(Next::Event);
        }
        if c.ending || c.eof {
            c.ending = true;
            return c.linger(t.scratch, &mut rounds);
        }
        if !c.ready.readable {
            return Ok(Next::Event);
        }
        if rounds >= FAIR_ROUNDS {
            return Ok(Next::Turn);
        }
        rounds += 1;
        let n = c.read(t.scratch)?;
        if n > 0 {
            answer(c, t, n)?;
        }
    }
}

/// Echo: write back what was read; stop reading while bytes are pending.
fn serve_echo(c: &mut Conn, t: &mut Tools<'_>) -> Result<Next, End> {
    serve_replies(c, t, |c, t, n| c.send(&t.scratch[..n], t.spares))
}

/// Http: answer every complete request of each read with one write.
fn serve_http(c: &mut Conn, t: &mut Tools<'_>) -> Result<Next, End> {
    serve_replies(c, t, |c, t, n| {
        t.out.clear();
        let verdict = c.http.feed(&t.scratch[..n], t.out);
        if !t.out.is_empty() {
            c.send(t.out, t.spares)?;
        }
        if verdict == http::Verdict::Close {
            c.ending = true;
        }
        Ok(())
    })
}

/// Sink: read and discard until EOF.
fn serve_sink(c: &mut Conn, t: &mut Tools<'_>) -> Result<Next, End> {
    let mut rounds = 0;
    loop {
        if c.eof {
            return Err(End);
        }
        if !c.ready.readable {
            return Ok(Next::Event);
        }
        if rounds >= FAIR_ROUNDS {
            return Ok(Next::Turn);
        }
        rounds += 1;
        c.read(t.scratch)?;
    }
}

/// Source: write the pattern while the socket takes it; discard input and
/// close at EOF.
fn serve_source(c: &mut Conn, t: &mut Tools<'_>) -> Result<Next, End> {
    let mut rounds = 0;
    loop {
        if c.eof {
            return Err(End);
        }
        if !c.ready.readable && !c.ready.writable {
            return Ok(Next::Event);
        }
        if rounds >= FAIR_ROUNDS {
            return Ok(Next::Turn);
        }
        rounds += 1;
        if c.ready.readable {
            c.read(t.scratch)?;
            continue;
        }
        c.sent += c.write(t.pattern.slice_at(c.sent))? as u64;
    }
}
