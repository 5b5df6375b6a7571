//! Counters each worker keeps about itself, readable from other threads
//! (the signal thread's summary and the metrics endpoint).
//!
//! Each [`Stats`] has exactly one writer, its worker, so an increment is a
//! relaxed load and store — plain moves, no locked instruction in the relay.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// One counter or gauge with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value (gauges). Only the owning worker may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! stats {
    ($( $(#[doc = $doc:literal])* $name:ident : $kind:literal ),* $(,)?) => {
        /// What one worker has done so far.
        #[derive(Debug, Default)]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $name: Counter, )*
        }

        /// A plain copy of [`Stats`], summed over workers.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct Snapshot {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl Snapshot {
            /// Adds one worker's figures to the total. Peaks do not add
            /// up (workers peak at different times): the total keeps the
            /// largest.
            pub fn add(&mut self, s: &Stats) {
                $(
                    if $kind == "peak" {
                        self.$name = self.$name.max(s.$name.get());
                    } else {
                        self.$name += s.$name.get();
                    }
                )*
            }

            /// `(name, kind, help, value)` for every figure, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, &'static str, &'static str, u64)> {
                vec![ $( (stringify!($name), $kind, concat!($($doc),*).trim_ascii(), self.$name), )* ]
            }
        }
    };
}

stats! {
    /// Client connections accepted.
    accepted: "counter",
    /// Client connections closed (any reason).
    closed: "counter",
    /// Client connections open now.
    active: "gauge",
    /// Most client connections open at once (in any one worker).
    peak_active: "peak",
    /// Clients closed because no backend connection could be made (every
    /// try failed).
    refused: "counter",
    /// Backend connects that failed (refused, unreachable, timed out, or
    /// reset before any byte), each try counted.
    connect_failures: "counter",
    /// Clients moved to another backend after a failed connect.
    retries: "counter",
    /// Active health checks done (by the one worker that checks).
    checks: "counter",
    /// Active health checks that failed.
    check_failures: "counter",
    /// Clients turned away by --allow / --deny.
    denied: "counter",
    /// Clients turned away because the process was out of descriptors.
    rejected: "counter",
    /// New clients reset at once because no backend was up
    /// (--all-down reject).
    rejected_all_down: "counter",
    /// Clients waiting for a backend under its max-connections now.
    queued: "gauge",
    /// Clients reset because every backend was at its max-connections
    /// and the queue was full.
    queue_full: "counter",
    /// Clients reset after waiting --queue-timeout in the queue.
    queue_timeouts: "counter",
    /// Connections ended by a reset or an I/O error on either side.
    errors: "counter",
    /// Connections one side of which reset, whose other side received
    /// everything that side had sent before the reset was passed on.
    resets_flushed: "counter",
    /// Connections one side of which reset, whose other side did not take
    /// the rest within --reset-flush-timeout.
    reset_flush_timeouts: "counter",
    /// Connections delivering what one side sent before it reset.
    flushing: "gauge",
    /// Bytes relayed from clients to backends.
    bytes_client_to_backend: "counter",
    /// Bytes relayed from backends to clients.
    bytes_backend_to_client: "counter",
    /// Bytes read and dropped from the side that stayed, while a pair
    /// delivered what its other side sent before it reset (nobody could
    /// receive them).
    bytes_discarded: "counter",
    /// Buffers in the pool.
    pool_capacity: "gauge",
    /// Buffers lent out now.
    pool_lent: "gauge",
    /// Most buffers lent out at once (in any one worker).
    pool_high_water: "peak",
    /// Large buffers (for streaming directions) in the pool.
    large_pool_capacity: "gauge",
    /// Large buffers lent out now.
    large_pool_lent: "gauge",
    /// Most large buffers lent out at once (in any one worker).
    large_pool_high_water: "peak",
    /// Times a connection had to wait for a free buffer.
    pool_waits: "counter",
    /// Times accepting was paused (connection limit or out of descriptors).
    accept_pauses: "counter",
    /// read(2) calls on sockets.
    sys_read: "counter",
    /// send(2) calls on sockets (and, under uring, write(2) into a pipe).
    sys_write: "counter",
    /// epoll_wait(2) calls.
    sys_epoll_wait: "counter",
    /// epoll_ctl(2) calls.
    sys_epoll_ctl: "counter",
    /// accept4(2) calls.
    sys_accept: "counter",
    /// socket(2) and connect(2) calls for backend connections and health
    /// checks.
    sys_connect: "counter",
    /// splice(2) calls (directions that stream, through pipes).
    sys_splice: "counter",
    /// Pipes (for splicing) in the pool.
    pipes_capacity: "gauge",
    /// Pipes lent out now.
    pipes_lent: "gauge",
    /// shutdown(2) calls.
    sys_shutdown: "counter",
    /// close(2) calls on connection sockets.
    sys_close: "counter",
    /// getsockopt(2), setsockopt(2) and getsockname(2) calls.
    sys_sockopt: "counter",
    /// pipe2(2) and fcntl(2) calls renewing a pipe closed with bytes in it.
    sys_pipe: "counter",
    /// ioctl(2) calls reading a send queue (after a reset, until it drains).
    sys_ioctl: "counter",
    /// io_uring_enter(2) calls (the uring engine's waits and submissions).
    sys_uring_enter: "counter",
    /// Operations submitted to io_uring (submission-queue entries).
    uring_submissions: "counter",
    /// Completions taken from io_uring (completion-queue entries).
    uring_completions: "counter",
    /// Log lines dropped because stderr was full, stalled or closed
    /// (process-wide: no worker counts it; the total reads it).
    log_dropped: "counter",
}

impl Snapshot {
    /// Sums the figures of all workers.
    pub fn total<'a>(workers: impl IntoIterator<Item = &'a Stats>) -> Snapshot {
        let mut s = Snapshot::default();
        for w in workers {
            s.add(w);
        }
        s.log_dropped = netio::log::dropped();
        s
    }

    /// All system calls counted.
    pub fn syscalls(&self) -> u64 {
        self.sys_read
            + self.sys_write
            + self.sys_epoll_wait
            + self.sys_epoll_ctl
            + self.sys_accept
            + self.sys_connect
            + self.sys_splice
            + self.sys_shutdown
            + self.sys_close
            + self.sys_sockopt
            + self.sys_pipe
            + self.sys_ioctl
            + self.sys_uring_enter
    }

    /// A one-line human summary, as printed on SIGUSR1 and at exit.
    pub fn summary(&self) -> String {
        let mut line = String::from("stats:");
        for (name, _, _, v) in self.fields() {
            let _ = write!(line, " {name}={v}");
        }
        line
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, v) in self.fields() {
            let kind = if kind == "peak" { "gauge" } else { kind };
            let _ = writeln!(
                out,
                "# HELP proxy_{name} {help}\n# TYPE proxy_{name} {kind}\nproxy_{name} {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_workers_and_renders() {
        let (a, b) = (Stats::default(), Stats::default());
        a.accepted.add(2);
        b.accepted.inc();
        b.sys_read.add(5);
        a.peak_active.set(4);
        b.peak_active.set(3);
        let s = Snapshot::total([&a, &b]);
        assert_eq!(s.accepted, 3);
        assert_eq!(s.peak_active, 4, "peaks take the largest, not the sum");
        assert_eq!(s.syscalls(), 5);
        assert!(s.summary().contains(" accepted=3 "));
        let prom = s.prometheus();
        assert!(prom.contains("# TYPE proxy_accepted counter\nproxy_accepted 3\n"));
        assert!(prom.contains("# HELP proxy_sys_read read(2) calls on sockets.\n"));
    }
}
