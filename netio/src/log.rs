//! The process's log: lines go through a bounded queue to one thread that
//! owns writing them to stderr, so that a stderr whose reader has gone or
//! stopped reading can neither kill nor stall the thread that logged.
//!
//! Callers use [`log!`](crate::log!), formatted like `eprintln!`. A line
//! that finds the queue full, or whose write fails (`EPIPE` once the
//! reader has gone, `EIO`, anything), is dropped and counted in
//! [`dropped`]; when writing works again, the logger first says how many
//! were lost. The writes are plain blocking `write(2)` calls on fd 2 (see
//! [`sys::stderr`](crate::sys::stderr)): fd 2's file description is
//! shared with other processes, so it is never made non-blocking.
//!
//! The thread starts with [`start`], or with the first line, with every
//! signal blocked. Before exiting, a program calls [`flush`], which waits
//! a bounded time for the queue to empty: the last lines (the final stats)
//! reach a working stderr, and a stalled one cannot hold up the exit.

use crate::sys::{signal, stderr};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines the queue holds; one more is dropped.
pub const QUEUE_LINES: usize = 1024;

/// How long [`flush`] is usually given at exit.
pub const FLUSH: Duration = Duration::from_secs(1);

/// Lines dropped so far, over the whole process.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written (or dropped by the logger).
static PENDING: AtomicU64 = AtomicU64::new(0);
/// The queue, once the logger runs; `None` if its thread could not start.
static QUEUE: OnceLock<Option<SyncSender<String>>> = OnceLock::new();
/// The program name the logger's own line starts with.
static PROG: OnceLock<&'static str> = OnceLock::new();

/// Logs one line, formatted like `eprintln!`; never blocks on stderr and
/// never panics.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(::std::format_args!($($arg)*))
    };
}

/// Starts the logger thread now (it starts with the first line
/// otherwise); `prog` starts the line that reports dropped lines.
pub fn start(prog: &'static str) {
    let _ = PROG.set(prog);
    let _ = queue();
}

/// Queues one line (a newline is added), or drops and counts it when the
/// queue is full. Without a logger thread, writes it at once.
pub fn line(args: fmt::Arguments<'_>) {
    let mut text = fmt::format(args);
    text.push('\n');
    let Some(tx) = queue() else {
        direct_text(&text);
        return;
    };
    PENDING.fetch_add(1, Relaxed);
    if tx.try_send(text).is_err() {
        PENDING.fetch_sub(1, Relaxed);
        DROPPED.fetch_add(1, Relaxed);
    }
}

/// Writes one line at once, blocking, ignoring (but counting) a failure:
/// for a program that has started nothing yet, such as one that found its
/// command line wrong.
pub fn direct(args: fmt::Arguments<'_>) {
    let mut text = fmt::format(args);
    text.push('\n');
    direct_text(&text);
}

/// Lines dropped so far (queue full or stderr failing), process-wide.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// Waits up to `timeout` until every queued line has been written (or
/// dropped); false if some were still waiting.
pub fn flush(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while PENDING.load(Relaxed) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn direct_text(text: &str) {
    if stderr::write_all(text.as_bytes()).is_err() {
        DROPPED.fetch_add(1, Relaxed);
    }
}

fn queue() -> Option<&'static SyncSender<String>> {
    QUEUE.get_or_init(spawn).as_ref()
}

fn spawn() -> Option<SyncSender<String>> {
    let (tx, rx) = mpsc::sync_channel(QUEUE_LINES);
    let thread = std::thread::Builder::new().name("log".into());
    match signal::with_all_blocked(|| thread.spawn(move || write_lines(rx))) {
        Ok(Ok(_)) => Some(tx),
        _ => None,
    }
}

/// The logger thread: writes each line, first saying how many were
/// dropped since it last could.
fn write_lines(rx: Receiver<String>) {
    let mut reported = 0;
    for text in rx {
        let dropped = DROPPED.load(Relaxed);
        if dropped > reported {
            let prog = PROG.get().copied().unwrap_or("log");
            let note = format!(
                "{prog}: {} log lines dropped: the log queue was full or stderr failing\n",
                dropped - reported
            );
            if stderr::write_all(note.as_bytes()).is_ok() {
                reported = dropped;
            }
        }
        if stderr::write_all(text.as_bytes()).is_err() {
            DROPPED.fetch_add(1, Relaxed);
        }
        PENDING.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_and_flushed() {
        crate::log!("netio log test: {} {}", "one", 1);
        assert!(flush(Duration::from_secs(10)), "the queue never emptied");
        assert_eq!(PENDING.load(Relaxed), 0);
    }
}
