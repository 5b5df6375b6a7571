//! The one table of figures: every figure the workbench reports, with its
//! unit, which way is better, what kind of scenario produces it, and how
//! it may judge a run. The report's order is the table's.
//!
//! # The gate model
//!
//! Every figure is of one [`Class`]:
//!
//! - **count**: an exact count, kept by the processes themselves or by
//!   the kernel (`errors`, `verify_failures`, `read_write_per_message`,
//!   `syscalls_per_message`, `epoll_ctl_per_connection`, `idle_wakeups`,
//!   `fd_leak`, `connections_held`, RSS bytes per connection, the soak's
//!   RSS growth and its descriptor and socket-state deltas, the failover
//!   scenario's `client_errors`). A count
//!   does not follow the machine's speed, so its target gates, and `cargo
//!   xtask ci` holds it to `scenarios/baseline.json` within the room
//!   given here (wider where a count depends on batching).
//! - **peer**: `NAME_vs_PEER`, our `NAME` divided by a peer's (HAProxy,
//!   nginx) measured in the same run: the peer rides the same machine, the
//!   same idle-wake latency and the same noise, so the ratio travels from
//!   one machine to the next where the figure itself does not. Produced
//!   when a scenario's `[targets]` names it and that peer is compared; its
//!   target gates (or is a goal, `gate = false`) and the baseline holds it
//!   within the room given here. Only figures with a `vs_peer` room have
//!   peer ratios.
//! - A **ratio target** (`[ratio_targets]`, `spec/ratio.rs`) judges one
//!   subject's figure over another's in the same run, ours on one engine
//!   over ours on the other (`rate_vs_self` of `self-uring`): peer class,
//!   so its target gates, judged on its own subject and never baselined.
//! - **wall**: wall-clock and machine-dependent figures (rates,
//!   microseconds, CPU time, ratios to going direct, `NAME_vs_best_peer`):
//!   reported with their targets' verdicts, which are goals; never gated
//!   and never in the baseline.
//!
//! A target with `gate = false` is a goal: its verdict is reported and
//! never fails. `baseline = false` keeps one scenario's figure out of the
//! baseline. So a peer ratio can carry a goal (`rate_vs_haproxy = { min =
//! 1.10, gate = false }`: issue 5's "ahead of HAProxy", reported) and
//! still fail `cargo xtask ci` when it regresses past its baseline.

use crate::peers::Kind;

/// How a figure may judge a run; see the module's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Count,
    Peer,
    Wall,
}

impl Class {
    /// Whether a target on a figure of this class can gate.
    pub fn can_gate(self) -> bool {
        self != Class::Wall
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// Which kind of scenario produces a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    Load,
    Hold,
    /// A soak scenario: the proxy's own figures before and after a long
    /// churning load.
    Soak,
    /// A failover scenario: client-visible errors while one of two
    /// backends is killed and restarted, and how soon it takes traffic.
    Failover,
    /// Load and soak scenarios alike: what loadgen reports.
    Traffic,
    /// Every kind of scenario.
    Any,
    /// A hold scenario, once for each connection count N, as `NAME@N`.
    HoldPerCount,
}

impl Producer {
    /// Whether a figure of this producer is one a scenario of kind
    /// `scenario` produces.
    pub fn serves(self, scenario: Producer) -> bool {
        self == scenario
            || self == Any
            || (self == Traffic && matches!(scenario, Load | Producer::Soak))
    }
}

/// How far a baselined figure may move the wrong way before `cargo xtask
/// ci` fails: `value × tolerance + slack`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Room {
    /// Relative (0.25 = 25 %).
    pub tolerance: f64,
    /// Absolute, for values near zero.
    pub slack: f64,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub unit: &'static str,
    pub class: Class,
    pub better: Better,
    pub from: Producer,
    /// Baseline room of a count.
    pub room: Room,
    /// Room of `NAME_vs_PEER`, for the figures that have one.
    pub vs_peer: Option<Room>,
}

const NONE: Room = Room {
    tolerance: 0.0,
    slack: 0.0,
};

/// A wall-clock figure.
const fn wall(name: &'static str, unit: &'static str, better: Better, from: Producer) -> Def {
    Def {
        name,
        unit,
        class: Class::Wall,
        better,
        from,
        room: NONE,
        vs_peer: None,
    }
}

/// An exact count with its baseline room.
const fn count(
    name: &'static str,
    unit: &'static str,
    better: Better,
    from: Producer,
    room: Room,
) -> Def {
    Def {
        class: Class::Count,
        room,
        ..wall(name, unit, better, from)
    }
}

/// `def` with a same-run ratio to each peer.
const fn with_peer(def: Def, tolerance: f64, slack: f64) -> Def {
    Def {
        vs_peer: Some(Room { tolerance, slack }),
        ..def
    }
}

const fn room(tolerance: f64, slack: f64) -> Room {
    Room { tolerance, slack }
}

use Better::{Higher, Lower};
use Producer::{Any, Hold, HoldPerCount, Load, Traffic};

/// Room of the same-run peer ratios of rates (messages and connections
/// per second): over runs here beside other agents' builds, and beside
/// `stress-ng --cpu 1`, with the quick scenarios' 100 ms windows, ours
/// over HAProxy's stayed within about ±12 % of its middle; 25 % holds
/// that and still catches ours losing a quarter of its rate.
const RATE_ROOM: f64 = 0.25;
/// Room of the peer ratios of bulk throughput and of the median latency:
/// they spread wider (±15 % here), as they follow how the machine's
/// other load shares the CPU between loadgen, backend and proxy, and a
/// quieter machine moves them; 30 %.
const WIDE_ROOM: f64 = 0.30;

/// Every figure, in the report's order. One row a line, as a table reads.
#[rustfmt::skip]
pub const TABLE: &[Def] = &[
    wall("connections", "count", Higher, Load),
    with_peer(wall("rate", "msg/s", Higher, Load), RATE_ROOM, 0.0),
    with_peer(wall("throughput_bps", "bit/s", Higher, Load), WIDE_ROOM, 0.0),
    with_peer(wall("connect_rate", "conn/s", Higher, Load), RATE_ROOM, 0.0),
    wall("ratio_to_direct", "ratio", Higher, Load),
    wall("mean_us", "µs", Lower, Load),
    with_peer(wall("p50_us", "µs", Lower, Load), WIDE_ROOM, 0.0),
    wall("p90_us", "µs", Lower, Load),
    wall("p99_us", "µs", Lower, Load),
    wall("p999_us", "µs", Lower, Load),
    // wrk 4.1's percentiles: of the latencies it saw, closed loop, with
    // no correction for coordinated omission (a stalled reply holds back
    // the requests behind it, which are then never timed).
    wall("p50_us_uncorrected", "µs", Lower, Load),
    wall("p75_us_uncorrected", "µs", Lower, Load),
    wall("p90_us_uncorrected", "µs", Lower, Load),
    wall("p99_us_uncorrected", "µs", Lower, Load),
    // redis-benchmark's, the slower of its SET and GET tests at each
    // percentile; `_pipelined` with `-P` (the scenario's `pipeline`).
    wall("p95_us", "µs", Lower, Load),
    wall("rate_pipelined", "req/s", Higher, Load),
    wall("ratio_to_direct_pipelined", "ratio", Higher, Load),
    wall("p50_us_pipelined", "µs", Lower, Load),
    wall("p99_us_pipelined", "µs", Lower, Load),
    // iperf3's, one run each way: up is the client sending.
    wall("throughput_bps_up", "bit/s", Higher, Load),
    wall("throughput_bps_down", "bit/s", Higher, Load),
    wall("ratio_to_direct_up", "ratio", Higher, Load),
    wall("ratio_to_direct_down", "ratio", Higher, Load),
    wall("max_us", "µs", Lower, Load),
    wall("added_p50_us", "µs", Lower, Load),
    wall("added_p99_us", "µs", Lower, Load),
    count("errors", "count", Lower, Any, NONE),
    count("verify_failures", "count", Lower, Traffic, NONE),
    // Reads and writes per message are 4 for an echo (one each, each way)
    // plus each connection's setup and close amortised over its messages:
    // 4.00 at 100 connections, 4.12 at "max" (7 messages a connection in
    // a quick run), more where a slower machine sends fewer. The room is
    // half a call: one more read or write a message fails. The epoll_wait
    // share of the total depends on how many events each wake-up
    // batches, which follows the machine's load: from near 0 a message on
    // a busy machine to 1 on a quiet one at many connections (2 when
    // every arrival is a wake-up of its own). Its room covers that; the
    // scenarios' targets (<= 6) bound it.
    count("read_write_per_message", "calls/msg", Lower, Load, room(0.0, 0.5)),
    count("syscalls_per_message", "calls/msg", Lower, Load, room(0.0, 1.0)),
    // The io_uring engine's crossings and requests per message (0 under
    // epoll): reads and writes are submissions there, and how many go in
    // one io_uring_enter follows batching, hence wall-clock.
    wall("uring_enter_per_message", "calls/msg", Lower, Load),
    wall("submissions_per_message", "sqes/msg", Lower, Load),
    wall("completions_per_message", "cqes/msg", Lower, Load),
    wall("cpu_us_per_message", "µs/msg", Lower, Load),
    // The whole machine's busy CPU (/proc/stat) over a subject's windows
    // per message: load, subject, backend and the softirq work charged to
    // whichever task ran. Direct's is the floor.
    wall("total_cpu_us_per_message", "µs/msg", Lower, Load),
    wall("cpu_user_percent", "%", Lower, Load),
    count("epoll_ctl_per_connection", "calls/conn", Lower, Load, room(0.05, 0.05)),
    // Every system call of our proxy over the connections it accepted, a
    // connection per exchange: what an engine spends to open, serve and
    // close one. Its waits follow batching, hence wall-clock.
    wall("syscalls_per_connection", "calls/conn", Lower, Load),
    // The io_uring requests (SQEs) of the same: accept, socket, connect,
    // recv, send, shutdown, close, cancel (0 under epoll).
    wall("submissions_per_connection", "sqes/conn", Lower, Load),
    // TIME_WAIT sockets a short churn of the subject alone left, on the
    // client side (its listen port) and the backend side (the backend's
    // port), from `ss` (`timewait.rs`); they follow its connection rate.
    // Sockets the kernel closed without TIME_WAIT for a full table
    // (`time_wait_overflow` > 0) make them lower bounds.
    wall("time_wait_client_side", "count", Lower, Load),
    wall("time_wait_backend_side", "count", Lower, Load),
    wall("time_wait_probe_connects", "count", Higher, Load),
    wall("time_wait_probe_errors", "count", Lower, Load),
    wall("time_wait_overflow", "count", Lower, Load),
    wall("time_wait_reused", "count", Lower, Load),
    count("connections_held", "count", Higher, Hold, NONE),
    wall("buffers_held", "count", Lower, Hold),
    wall("rss_base_kib", "KiB", Lower, Hold),
    // Idle connections sit near zero (the table is preallocated), so the
    // slack is the real bound there: 1 KiB a connection. With data in
    // flight the figure follows how many buffers happen to be held, hence
    // the wide relative tolerance; its target still gates. Against a peer
    // ours is near zero too: the slack is a bound of a quarter of the
    // peer's bytes (HAProxy 2.6 holds about 3.4 KB an idle connection).
    with_peer(count("rss_per_conn_bytes", "bytes", Lower, Hold, room(1.0, 1024.0)), 0.0, 0.25),
    count("rss_per_conn_bytes_at_max", "bytes", Lower, Hold, room(1.0, 1024.0)),
    wall("rss_kib", "KiB", Lower, HoldPerCount),
    wall("kernel_tcp_kib", "KiB", Lower, Hold),
    count("idle_wakeups", "count", Lower, Hold, NONE),
    wall("idle_cpu_percent", "%", Lower, Hold),
    count("fd_leak", "count", Lower, Hold, NONE),
    // The soak: the proxy at rest after a warm-up at peak concurrency
    // (start) and after the soak's load (end). RSS may grow by what a
    // long run's allocator settles at, 1 MiB; descriptors and the states
    // of the sockets the proxy owns must come back exactly.
    count("rss_growth_kib", "KiB", Lower, Producer::Soak, room(0.0, 1024.0)),
    count("fd_delta", "count", Lower, Producer::Soak, NONE),
    count("close_wait_delta", "count", Lower, Producer::Soak, NONE),
    count("fin_wait2_delta", "count", Lower, Producer::Soak, NONE),
    wall("rss_start_kib", "KiB", Lower, Producer::Soak),
    wall("rss_end_kib", "KiB", Lower, Producer::Soak),
    wall("fds_start", "count", Lower, Producer::Soak),
    wall("fds_end", "count", Lower, Producer::Soak),
    wall("close_wait_start", "count", Lower, Producer::Soak),
    wall("close_wait_end", "count", Lower, Producer::Soak),
    wall("fin_wait2_start", "count", Lower, Producer::Soak),
    wall("fin_wait2_end", "count", Lower, Producer::Soak),
    wall("peak_connections", "count", Higher, Producer::Soak),
    wall("connections_churned", "count", Higher, Producer::Soak),
    wall("resets_sent", "count", Higher, Producer::Soak),
    wall("messages", "count", Higher, Producer::Soak),
    wall("streamed_bytes", "bytes", Higher, Producer::Soak),
    wall("soak_seconds", "s", Higher, Producer::Soak),
    // Failover: errors of the exchanges that were not in progress when
    // the backend was killed (those, which no L4 proxy can replay, are
    // `cut_by_kill`, reported apart), and the time from the restart to
    // the restarted backend's first connection.
    count("client_errors", "count", Lower, Producer::Failover, NONE),
    wall("cut_by_kill", "count", Lower, Producer::Failover),
    wall("recovery_ms", "ms", Lower, Producer::Failover),
    wall("exchange_rate", "conn/s", Higher, Producer::Failover),
];

/// What a figure name means: a row of the table, or one derived from a
/// row (`rss_kib@5000`, `rate_vs_haproxy`, `rate_vs_best_peer`).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub unit: String,
    pub class: Class,
    pub better: Better,
    pub from: Producer,
    /// Baseline room (counts and peer ratios).
    pub room: Room,
    /// Position in the report: the row, then the derivation.
    pub order: (usize, u8),
}

/// The row of the table named `name`.
pub fn def(name: &str) -> Option<&'static Def> {
    TABLE.iter().find(|d| d.name == name)
}

/// The suffix of a ratio to the best of the peers compared.
pub const VS_BEST_PEER: &str = "_vs_best_peer";

/// The spec of figure `name`, if it is one.
pub fn spec(name: &str) -> Option<Spec> {
    let row = |n: &str| TABLE.iter().position(|d| d.name == n);
    let of = |i: usize, class: Class, unit: String, room: Room, derived: u8| {
        let d = &TABLE[i];
        Spec {
            unit,
            class,
            better: d.better,
            from: d.from,
            room,
            order: (i, derived),
        }
    };
    if let Some(i) = row(name) {
        let d = &TABLE[i];
        return (d.from != HoldPerCount).then(|| of(i, d.class, d.unit.into(), d.room, 0));
    }
    // `NAME@N`: a count between the first and "max", reported only.
    if let Some((base, n)) = name.split_once('@') {
        let i = row(base).filter(|_| n.parse::<usize>().is_ok())?;
        return Some(of(i, Class::Wall, TABLE[i].unit.into(), NONE, 1));
    }
    if let Some(base) = name.strip_suffix(VS_BEST_PEER) {
        let i = row(base)?;
        return Some(of(i, Class::Wall, "x best peer".into(), NONE, 3));
    }
    // `NAME_vs_self`: one subject's figure over ours on an engine, same
    // run, judged like a peer ratio and never baselined (it is judged on
    // its own subject, not the primary).
    if let Some((base, ours)) = split_vs_ours(name) {
        let i = row(base)?;
        return Some(of(i, Class::Peer, format!("x {}", ours.name()), NONE, 2));
    }
    let (base, peer) = split_vs_peer(name)?;
    let i = row(base)?;
    let room = TABLE[i].vs_peer?;
    Some(of(i, Class::Peer, format!("x {}", peer.name()), room, 2))
}

/// `NAME_vs_OURS` → (`NAME`, OURS), for ours on either engine: a ratio
/// target's figure (`spec/ratio.rs`).
pub fn split_vs_ours(name: &str) -> Option<(&str, Kind)> {
    Kind::OURS.iter().find_map(|&k| {
        let base = name.strip_suffix(k.name())?.strip_suffix("_vs_")?;
        Some((base, k))
    })
}

/// `NAME_vs_PEER` → (`NAME`, PEER), for any peer.
pub fn split_vs_peer(name: &str) -> Option<(&str, Kind)> {
    Kind::PEERS.iter().find_map(|&k| {
        let base = name.strip_suffix(k.name())?.strip_suffix("_vs_")?;
        Some((base, k))
    })
}

/// The figures a kind of scenario can name in its targets, for messages.
pub fn produced_by(kind: Producer) -> Vec<String> {
    let mut out = Vec::new();
    for d in TABLE.iter().filter(|d| d.from.serves(kind)) {
        out.push(d.name.to_string());
        if d.vs_peer.is_some() {
            out.push(format!("{}_vs_PEER", d.name));
        }
    }
    out
}

/// The figures that have same-run peer ratios, for messages.
pub fn with_peer_ratios() -> Vec<&'static str> {
    TABLE
        .iter()
        .filter(|d| d.vs_peer.is_some())
        .map(|d| d.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_in_the_table_once() {
        for (i, d) in TABLE.iter().enumerate() {
            assert_eq!(
                TABLE.iter().position(|e| e.name == d.name),
                Some(i),
                "{} twice",
                d.name
            );
            assert!(
                !d.name.contains('@') && !d.name.contains("_vs_"),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn only_exact_counts_are_counts() {
        let counts: Vec<&str> = TABLE
            .iter()
            .filter(|d| d.class == Class::Count)
            .map(|d| d.name)
            .collect();
        assert_eq!(
            counts,
            [
                "errors",
                "verify_failures",
                "read_write_per_message",
                "syscalls_per_message",
                "epoll_ctl_per_connection",
                "connections_held",
                "rss_per_conn_bytes",
                "rss_per_conn_bytes_at_max",
                "idle_wakeups",
                "fd_leak",
                "rss_growth_kib",
                "fd_delta",
                "close_wait_delta",
                "fin_wait2_delta",
                "client_errors"
            ]
        );
        let direct = spec("ratio_to_direct").expect("known");
        assert_eq!(
            direct.class,
            Class::Wall,
            "follows the machine's idle-wake latency"
        );
        assert!(!direct.class.can_gate());
    }

    #[test]
    fn derived_names_resolve_to_their_row() {
        let r = spec("rate_vs_haproxy").expect("peer ratio");
        assert_eq!(
            (r.class, r.better, r.unit.as_str()),
            (Class::Peer, Higher, "x haproxy")
        );
        assert_eq!(r.room, room(RATE_ROOM, 0.0));
        let p = spec("p50_us_vs_nginx").expect("peer ratio");
        assert_eq!((p.class, p.better), (Class::Peer, Lower));
        let m = spec("rss_per_conn_bytes_vs_haproxy").expect("memory");
        assert_eq!(
            m.room,
            room(0.0, 0.25),
            "a bound, not a tolerance: ours is near zero"
        );
        let best = spec("p99_us_vs_best_peer").expect("goal");
        assert_eq!((best.class, best.better), (Class::Wall, Lower));
        let at = spec("rss_per_conn_bytes@1000").expect("@N");
        assert_eq!((at.class, at.unit.as_str()), (Class::Wall, "bytes"));
        assert!(spec("p99_us_vs_haproxy").is_none(), "no peer ratio for p99");
        assert!(spec("rate_vs_direct").is_none());
        let ours = spec("total_cpu_us_per_message_vs_self").expect("a ratio target's");
        assert_eq!(
            (ours.class, ours.better, ours.unit.as_str(), ours.room),
            (Class::Peer, Lower, "x self", NONE)
        );
        assert_eq!(
            spec("rate_vs_self-uring").expect("either engine").unit,
            "x self-uring"
        );
        assert!(spec("rss_kib@many").is_none() && spec("speed").is_none());
        assert!(spec("rss_kib").is_none(), "only ever produced as rss_kib@N");
        assert!(spec("rss_kib@5000").is_some());
    }

    #[test]
    fn derived_figures_follow_their_row_in_the_report() {
        let order = |n: &str| spec(n).expect(n).order;
        assert!(order("rate") < order("rate_vs_haproxy"));
        assert!(order("rate_vs_haproxy") < order("rate_vs_best_peer"));
        assert!(order("rate_vs_best_peer") < order("throughput_bps"));
    }

    #[test]
    fn produced_figures_are_split_by_scenario_kind() {
        let load = produced_by(Load);
        let hold = produced_by(Hold);
        assert!(load.iter().any(|f| f == "rate_vs_PEER") && !load.iter().any(|f| f == "fd_leak"));
        assert!(hold.iter().any(|f| f == "rss_per_conn_bytes_vs_PEER"));
        assert!(load.iter().any(|f| f == "errors") && hold.iter().any(|f| f == "errors"));
        let soak = produced_by(Producer::Soak);
        assert!(
            soak.iter().any(|f| f == "fd_delta") && soak.iter().any(|f| f == "verify_failures")
        );
        assert!(!soak.iter().any(|f| f == "rate") && !hold.iter().any(|f| f == "verify_failures"));
    }
}
