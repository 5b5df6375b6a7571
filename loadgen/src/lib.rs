//! A TCP load generator that measures what users feel.
//!
//! `loadgen` opens a set of connections to one or more targets from a
//! single edge-triggered epoll loop (10,000 connections from one thread
//! are routine) and drives them in one of four modes:
//!
//! - `echo`: send `--message-size` bytes, wait for the whole echo, verify
//!   every byte;
//! - `http`: keep-alive `GET --http-path`, each response parsed to its end
//!   (`Content-Length`, chunked, or close) and its status checked;
//! - `bulk`: stream bytes up (to a sink), down (from a source) or both
//!   (echoed) for throughput;
//! - `connect`: open, one echo exchange, close — connections per second.
//!
//! Payloads are a seeded pseudo-random stream
//! ([`echo_backend::pattern::Pattern`]) at a different offset for every
//! connection, so verification needs no stored copy and catches lost,
//! repeated, reordered and misdelivered bytes alike. A run with any error
//! or verification failure exits with status 1.
//!
//! **Closed loop** (the default): each connection sends its next message
//! when the last reply arrived; latency runs from the send. **Open loop**
//! (`--rate R`): message `k` of the schedule is due at `k / R` seconds,
//! handed round-robin to the connections (each sends `R / connections` a
//! second); a message due while its connection is busy waits in a queue,
//! and latency always runs from the *intended* send time, so a stalled
//! server cannot hide its stall (coordinated omission corrected, as wrk2
//! does). Between events the loop sleeps in `epoll_pwait2` until the next
//! message is due; it never polls.
//!
//! Warm-up (`--warmup`) results are discarded: a message counts if it was
//! issued (closed loop) or due (open loop) after the warm-up. Errors are
//! counted over the whole run, set-up and warm-up included.
//!
//! With several `--target`s, every target gets its own connections, and
//! the targets take turns in windows of `--window` — only one target's
//! connections send at a time — each target's first window starting with
//! its own warm-up; each target is measured for `--duration / targets`.
//! That is how "added latency" is measured: the same load direct and
//! through a proxy in one invocation, interleaved. See [`plan`].
//!
//! # JSON report (`--json`)
//!
//! One object on stdout; `version` changes only with incompatible changes.
//! Latencies are microseconds (integers for the summary figures).
//!
//! ```text
//! {
//!   "version": 1,
//!   "mode": "echo" | "http" | "bulk" | "connect",
//!   "connections": N,            // per target
//!   "duration_s": F,             // measured seconds, all targets together
//!   "rate_target": null | N,     // --rate (per target), null = closed loop
//!   "targets": [{
//!     "target": "ADDR:PORT",     // as given on the command line
//!     "messages": N,             // measured messages completed and verified;
//!                                // bulk: --message-size units moved
//!     "rate": F,                 // messages per measured second
//!     "bytes_sent": N,           // payload bytes in the measured time
//!     "bytes_received": N,
//!     "throughput_bps": F,       // bits/s of payload, busier direction
//!     "connects": N,             // connections established in the measured time
//!     "connect_rate": F,         // connects per measured second
//!     "errors": {                // whole run, by kind
//!       "connect_refused": N, "reset": N, "timeout": N,
//!       "short": N,              // peer closed before the whole reply
//!       "mismatch": N,           // wrong bytes / bad HTTP response
//!       "other": N
//!     },
//!     "verify_failures": N,      // short + mismatch
//!     "latency_us": {"count": N, "mean": F, "p50": N, "p90": N,
//!                    "p99": N, "p999": N, "max": N},
//!     "latency_curve": [[percentile, us], ...],  // 30 points, 0..100; [] if no samples
//!     "duration_s": F,           // this target's measured seconds
//!     "send_lag_us": null | {...},  // open loop: like latency_us, for how
//!                                // late each message was sent after it was
//!                                // due (a busy connection or a late wake-up)
//!     "first_error": null | "text",
//!     "resets_sent": N,          // connections reset on purpose
//!                                // (--reset-ratio), whole run
//!     "error_times": [[started_us, failed_us], ...],  // each error's
//!                                // connection: when its last connect
//!                                // started and when it failed, Unix
//!                                // microseconds, by failure; the first 10,000
//!     "error_times_dropped": N,  // errors counted without times
//!     "rounds": [{               // each measured window of this target, in
//!                                // time order; a target measured in one
//!                                // window: each second of it
//!       "start_s": F,            // measured start, seconds into the timetable
//!       "duration_s": F,         // measured seconds
//!       "messages": N, "rate": F, "throughput_bps": F,
//!       "connects": N, "connect_rate": F,  // as for the whole target
//!       "machine_cpu_s": null | F  // busy CPU seconds of the whole
//!                                // machine in this round
//!     }, ...],                   // messages (and bytes, connects) add up
//!                                // to the target's
//!     "machine_cpu_s": null | F  // busy CPU seconds of the whole machine
//!                                // (all processes, softirq included;
//!                                // /proc/stat) over this target's
//!                                // measured time, the sum of its rounds';
//!                                // null where /proc/stat cannot be read
//!   }, ...],
//!   "bulk_direction": null | "up" | "down" | "both",
//!   "interrupted": false         // true: stopped early by Ctrl-C/SIGTERM
//! }
//! ```
//!
//! Fields after `latency_curve` in a target, and after `targets` at the
//! top, are additions to the workbench contract; consumers should ignore
//! fields they do not know.
//!
//! # Intervals, progress and the interval log
//!
//! Each target's measured time is cut into intervals: every second from
//! the start of each measured window, and at its end (warm-up is in
//! none). They make the `rounds` of the JSON report and, with `--hlog
//! FILE`, the lines of an HdrHistogram interval log (see [`hlog`]) that
//! `cargo xtask merge` adds up across load hosts. `--progress` writes a
//! machine-readable line to stderr once a second (see [`progress`]).
//!
//! # Timing of a run
//!
//! Connections are opened first (paced at `--connect-rate`, not counted),
//! then the timetable runs: warm-up plus `--duration`, or the interleaved
//! windows. A run always stops by itself at the end of the timetable; on
//! Ctrl-C it stops at once and reports what it measured so far (a second
//! Ctrl-C quits without a report). Messages still outstanding at the end
//! are not counted.
//!
//! # Where things live
//!
//! [`cli`] checks the command line into a [`cli::Config`]; [`run`] starts
//! one load thread per `--threads` and adds up the [`stats`] they cut per
//! interval ([`collect`]) into a [`report`]. A load thread is [`engine`] (the loop and the timetable of
//! [`plan`]) over [`table`] (the connections: opening, closing, failing),
//! with [`pump`] moving bytes, [`pacing`] spacing connects, and
//! [`schedule`] handing out open-loop messages. What a connection sends
//! and how its replies are checked is its mode's, one file each under
//! [`mode`], behind [`mode::Protocol`]; [`http`] reads HTTP responses.

pub mod cli;
pub mod collect;
pub mod engine;
pub mod hlog;
pub mod http;
pub mod machine;
pub mod mode;
pub mod pacing;
pub mod plan;
pub mod progress;
pub mod pump;
pub mod report;
pub mod run;
pub mod schedule;
pub mod shared;
pub mod stats;
pub mod table;
