//! Scenario files: what parses, and the one line each mistake gets.

use super::*;

fn parse(text: &str) -> Result<Scenario, String> {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, text).expect("write");
    Scenario::load(&path)
}

const GOOD: &str = r#"
description = "demo"
[load]
mode = "echo"
connections = 10
duration = "2s"
[targets]
errors = { max = 0 }
"#;

fn load(s: &Scenario, quick: bool) -> Load {
    match s.body(quick) {
        Body::Load(l) => l,
        _ => panic!("a load scenario"),
    }
}

#[test]
fn a_good_file_parses_and_is_named_after_the_file() {
    let s = parse(GOOD).expect("good");
    assert_eq!(s.name, "demo");
    assert_eq!(s.backend.mode, BackendMode::Echo);
    let l = load(&s, false);
    assert_eq!(
        (l.mode, l.connections, l.message_size, l.compare_direct),
        (LoadMode::Echo, Count::N(10), 64, true)
    );
    assert_eq!(
        (l.duration.to_string(), l.window.to_string()),
        ("2s".into(), "1s".into())
    );
    assert_eq!(
        s.targets["errors"],
        Bound {
            min: None,
            max: Some(0.0),
            gate: None,
            baseline: None,
        }
    );
}

#[test]
fn an_unknown_key_names_file_line_and_key() {
    let e = parse(&GOOD.replace("connections = 10", "connections = 10\nconections = 3"))
        .expect_err("bad");
    assert!(
        e.contains("demo.toml:6: load.conections: unknown field `conections`"),
        "{e}"
    );
}

#[test]
fn a_wrong_type_names_the_key() {
    let e = parse(&GOOD.replace("connections = 10", "connections = \"ten\"")).expect_err("bad");
    assert!(
        e.contains("demo.toml:5: load.connections: ")
            && e.contains("a connection count or \"max\""),
        "{e}"
    );
}

#[test]
fn a_bad_mode_is_one_line_naming_file_key_and_value() {
    let e = parse(&GOOD.replace("mode = \"echo\"", "mode = \"ping\"")).expect_err("bad");
    assert!(
        e.contains("demo.toml:4: load.mode: unknown variant `ping`"),
        "{e}"
    );
    assert!(
        e.contains("`echo`, `http`, `bulk`, `connect`") && !e.contains('\n'),
        "{e}"
    );
    let e = parse(&format!("[backend]\nmode = \"mirror\"\n{GOOD}")).expect_err("bad");
    assert!(
        e.contains("demo.toml:2: backend.mode: unknown variant `mirror`"),
        "{e}"
    );
    assert!(e.contains("`echo`, `http`, `sink`, `source`"), "{e}");
    let e = parse(&GOOD.replace(
        "duration = \"2s\"",
        "duration = \"2s\"\nbulk_direction = \"sideways\"",
    ))
    .expect_err("bad");
    assert!(
        e.contains("demo.toml:7: load.bulk_direction: unknown variant `sideways`"),
        "{e}"
    );
    assert!(e.contains("`up`, `down`, `both`"), "{e}");
}

#[test]
fn modes_give_back_the_names_the_binaries_take() {
    let s = parse(&GOOD.replace(
        "mode = \"echo\"",
        "mode = \"bulk\"\nbulk_direction = \"down\"",
    ))
    .expect("good");
    let l = load(&s, false);
    assert_eq!(
        (l.mode.arg(), l.bulk_direction.map(BulkDirection::arg)),
        ("bulk", Some("down"))
    );
    assert_eq!(BackendMode::Source.arg(), "source");
    assert_eq!(LoadMode::Connect.arg(), "connect");
}

#[test]
fn a_bad_duration_names_key_and_value() {
    let e = parse(&GOOD.replace("duration = \"2s\"", "duration = \"2 weeks\"")).expect_err("bad");
    assert!(
        e.contains("demo.toml:6: load.duration: invalid duration \"2 weeks\": unknown unit"),
        "{e}"
    );
    let e = parse(&format!("{GOOD}[quick]\nwindow = \"soon\"\n")).expect_err("bad");
    assert!(e.contains("quick.window: invalid duration \"soon\""), "{e}");
}

#[test]
fn a_bad_bound_inside_an_inline_table_names_the_inner_key() {
    let e = parse(&GOOD.replace("errors = { max = 0 }", "errors = { max = \"none\" }"))
        .expect_err("bad");
    assert!(e.contains("demo.toml:8: targets.errors.max: "), "{e}");
    let e = parse(&GOOD.replace("errors = { max = 0 }", "errors = { max = 0, most = 1 }"))
        .expect_err("bad");
    assert!(
        e.contains("targets.errors") && e.contains("unknown field `most`"),
        "{e}"
    );
}

#[test]
fn a_missing_field_is_named() {
    let e = parse(&GOOD.replace("duration = \"2s\"\n", "")).expect_err("bad");
    assert!(e.contains("load: missing field `duration`"), "{e}");
    let e = parse("description = \"x\"\n").expect_err("bad");
    assert!(e.contains("missing field `load`"), "{e}");
}

#[test]
fn a_target_must_be_a_produced_figure() {
    let e = parse(&GOOD.replace("errors = { max = 0 }", "speed = { min = 1 }")).expect_err("bad");
    assert!(e.contains("targets.speed: not a figure"), "{e}");
    let e = parse(&GOOD.replace("errors = { max = 0 }", "fd_leak = { max = 0 }")).expect_err("bad");
    assert!(
        e.contains("targets.fd_leak: not a figure this scenario produces"),
        "{e}"
    );
}

#[test]
fn a_peer_ratio_target_must_be_one_the_table_has() {
    let s = parse(&GOOD.replace(
        "errors = { max = 0 }",
        "rate_vs_haproxy = { min = 1.1, gate = false }",
    ))
    .expect("good");
    assert_eq!(s.targets["rate_vs_haproxy"].gate, Some(false));
    let e = parse(&GOOD.replace("errors = { max = 0 }", "p99_us_vs_haproxy = { max = 1 }"))
        .expect_err("bad");
    assert!(
        e.contains("targets.p99_us_vs_haproxy: p99_us has no same-run peer ratio"),
        "{e}"
    );
    let e = parse(&GOOD.replace("errors = { max = 0 }", "rate_vs_envoy = { min = 1 }"))
        .expect_err("bad");
    assert!(e.contains("targets.rate_vs_envoy: not a figure"), "{e}");
}

#[test]
fn a_wall_clock_target_cannot_be_made_to_gate() {
    let e = parse(&GOOD.replace("errors = { max = 0 }", "rate = { min = 5, gate = true }"))
        .expect_err("bad");
    assert!(
        e.contains("targets.rate: gate = true on a wall-clock figure"),
        "{e}"
    );
    let e = parse(&GOOD.replace(
        "errors = { max = 0 }",
        "ratio_to_direct = { min = 0.5, gate = true }",
    ))
    .expect_err("bad");
    assert!(
        e.contains("targets.ratio_to_direct: gate = true on a wall-clock figure"),
        "{e}"
    );
    parse(&GOOD.replace("errors = { max = 0 }", "rate = { min = 10 }")).expect("a goal");
}

#[test]
fn bad_values_are_named() {
    let e = parse(&GOOD.replace("connections = 10", "connections = 0")).expect_err("bad");
    assert!(e.contains("load.connections: must be at least 1"), "{e}");
    let e = parse(&format!("{GOOD}[quick]\nrate = 100\n")).expect_err("bad");
    assert!(e.contains("quick.rate: the load is closed loop"), "{e}");
}

#[test]
fn quick_overrides_apply_only_when_quick() {
    let s = parse(&GOOD.replace("duration = \"2s\"", "duration = \"2s\"\nrate = 20000")
        .replace("[targets]", "[quick]\nduration = \"500ms\"\nwindow = \"100ms\"\nrate = 5000\nconnections = 3\n[targets]"))
    .expect("good");
    let (full, quick) = (load(&s, false), load(&s, true));
    assert_eq!((full.rate, full.connections), (Some(20000.0), Count::N(10)));
    assert_eq!((quick.rate, quick.connections), (Some(5000.0), Count::N(3)));
    assert_eq!(
        (quick.duration.to_string(), quick.window.to_string()),
        ("500ms".into(), "100ms".into())
    );
}

#[test]
fn hold_counts_accept_max() {
    let s = parse("description = \"m\"\n[hold]\nconnections = [1000, \"max\"]\n[targets]\nrss_per_conn_bytes = { max = 16384 }\n")
        .expect("good");
    let Body::Hold(h) = s.body(false) else {
        panic!("a hold scenario")
    };
    assert_eq!(h.connections, vec![Count::N(1000), Count::Max]);
}

#[test]
fn every_committed_scenario_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let all = load_all(&dir).expect("scenarios parse");
    assert!(
        all.len() >= 7,
        "expected the documented scenarios, found {}",
        all.len()
    );
}

#[test]
fn peer_targets_are_checked_like_targets() {
    let e = parse(&format!(
        "{GOOD}\n[peer_targets]\nspeed = {{ min = 1.1 }}\n"
    ))
    .expect_err("bad");
    assert!(e.contains("peer_targets.speed: not a figure"), "{e}");
    let e = parse(&format!(
        "{GOOD}\n[peer_targets]\nrate = {{ min = 1.1, max = 2 }}\n"
    ))
    .expect_err("bad");
    assert!(
        e.contains("peer_targets.rate") && e.contains("not both"),
        "{e}"
    );
    let e = parse(&format!(
        "{GOOD}\n[peer_targets]\nrate = {{ min = 1.1, gate = true }}\n"
    ))
    .expect_err("bad");
    assert!(
        e.contains("peer_targets.rate: goals against the best peer never gate"),
        "{e}"
    );
    let s = parse(&format!("{GOOD}\n[peer_targets]\nrate = {{ min = 1.1 }}\n")).expect("good");
    assert_eq!(s.peer_targets["rate"].min, Some(1.1));
}

#[test]
fn load_connections_may_be_max() {
    let s = parse(&GOOD.replace("connections = 10", "connections = \"max\"")).expect("good");
    assert_eq!(load(&s, false).connections, Count::Max);
    let e = parse(&GOOD.replace("connections = 10", "connections = \"most\"")).expect_err("bad");
    assert!(e.contains("a connection count or \"max\""), "{e}");
}

#[test]
fn durations_print_as_the_binaries_parse_them() {
    for (text, shown) in [
        ("1.5s", "1500ms"),
        ("250us", "250us"),
        ("2m", "120s"),
        ("100ms", "100ms"),
    ] {
        let d = Dur(netio::cli::parse_duration(text).expect(text));
        assert_eq!(d.to_string(), shown);
        assert_eq!(netio::cli::parse_duration(shown), Ok(d.0));
    }
}

const SOAK: &str = r#"
description = "soak"
[soak]
duration = "10m"
churn_connections = 20
churn_rate = 200
reset_ratio = 0.1
stream_connections = 2
[quick]
duration = "20s"
warmup = "2s"
[targets]
fd_delta = { min = 0, max = 0 }
verify_failures = { max = 0 }
"#;

fn soak(s: &Scenario, quick: bool, by_hand: Option<Duration>) -> Soak {
    match s.body(quick).with_duration(by_hand) {
        Body::Soak(s) => s,
        _ => panic!("a soak scenario"),
    }
}

#[test]
fn a_soak_parses_with_its_defaults_quick_and_a_duration_by_hand() {
    let s = parse(SOAK).expect("soak");
    let full = soak(&s, false, None);
    assert_eq!(full.duration.0, Duration::from_secs(600));
    assert_eq!(
        (full.warmup.0, full.settle.0),
        (Duration::from_secs(5), Duration::from_secs(10))
    );
    assert_eq!(
        (
            full.echo_connections,
            full.stream_rate,
            full.stream_message_size
        ),
        (0, 2, 1 << 20)
    );
    let quick = soak(&s, true, None);
    assert_eq!(
        (quick.duration.0, quick.warmup.0),
        (Duration::from_secs(20), Duration::from_secs(2))
    );
    let by_hand = soak(&s, true, Some(Duration::from_secs(900)));
    assert_eq!(
        by_hand.duration.0,
        Duration::from_secs(900),
        "--duration wins over --quick"
    );
}

#[test]
fn a_soak_is_refused_with_the_key_that_is_wrong() {
    let bad = |from: &str, to: &str| parse(&SOAK.replace(from, to)).expect_err(to);
    assert!(bad("reset_ratio = 0.1", "reset_ratio = 1.5").contains("soak.reset_ratio: 1.5"));
    assert!(
        bad("churn_rate = 200", "churn_rate = 0").contains("soak.churn_rate: must be at least 1")
    );
    let none = SOAK
        .replace("churn_connections = 20", "churn_connections = 0")
        .replace("stream_connections = 2", "");
    assert!(parse(&none)
        .expect_err("no load")
        .contains("soak: give churn"));
    assert!(
        bad("[targets]", "[targets]\nrate = { min = 1 }").contains("targets.rate: not a figure")
    );
    let both = format!("{SOAK}\n[hold]\nconnections = [1]\n");
    assert!(parse(&both)
        .expect_err("both")
        .contains("more than one of [load], [hold], [soak] and [failover]"));
}

const FAILOVER: &str = r#"
description = "failover"
[proxy]
args = ["--fail-timeout", "1s"]
[failover]
duration = "30s"
connections = 20
rate = 1000
[quick]
duration = "6s"
warmup = "500ms"
rate = 500
[targets]
client_errors = { max = 0 }
"#;

fn failover(s: &Scenario, quick: bool) -> Failover {
    match s.body(quick) {
        Body::Failover(o) => o,
        _ => panic!("a failover scenario"),
    }
}

#[test]
fn a_failover_parses_with_its_timeline_and_quick_overrides() {
    let s = parse(FAILOVER).expect("good");
    assert_eq!(s.producer(), Producer::Failover);
    let o = failover(&s, false);
    assert_eq!((o.connections, o.message_size, o.rate), (20, 64, 1000.0));
    let secs = Duration::from_secs;
    assert_eq!(
        o.kill_and_restart(),
        (secs(11), secs(21)),
        "1s warm-up default"
    );
    let q = failover(&s, true);
    assert_eq!((q.duration.to_string(), q.rate), ("6s".into(), 500.0));
    let ms = Duration::from_millis;
    assert_eq!(q.kill_and_restart(), (ms(2500), ms(4500)));
    let d = s.body(true).with_duration(Some(secs(9)));
    let Body::Failover(d) = d else {
        panic!("failover")
    };
    assert_eq!(
        d.kill_and_restart(),
        (ms(3500), ms(6500)),
        "--duration wins"
    );
}

#[test]
fn a_bad_failover_is_one_line_naming_the_key() {
    let e = parse(&FAILOVER.replace("connections = 20", "connections = 0")).expect_err("bad");
    assert!(
        e.contains("failover.connections: must be at least 1"),
        "{e}"
    );
    let e =
        parse(&FAILOVER.replace("duration = \"30s\"", "duration = \"100ms\"")).expect_err("bad");
    assert!(e.contains("failover.duration: 100ms is too short"), "{e}");
    let e = parse(&FAILOVER.replace("rate = 500", "rate = 0")).expect_err("bad");
    assert!(e.contains("quick.rate: must be positive"), "{e}");
    let e = parse(&FAILOVER.replace("client_errors", "fd_delta")).expect_err("bad");
    assert!(
        e.contains("targets.fd_delta: not a figure this scenario produces")
            && e.contains("client_errors, cut_by_kill"),
        "{e}"
    );
    let e = parse(&format!(
        "{FAILOVER}[load]\nmode = \"echo\"\nconnections = 1\nduration = \"1s\"\n"
    ))
    .expect_err("bad");
    assert!(
        e.contains("more than one of [load], [hold], [soak] and [failover]"),
        "{e}"
    );
}

#[test]
fn a_scenario_is_gated_by_ci_unless_it_says_bench_only() {
    assert!(!parse(GOOD).expect("good").bench_only);
    let only = parse(&format!("bench_only = true\n{GOOD}")).expect("bench only");
    assert!(only.bench_only);
    let e = parse(&format!("bench_only = \"yes\"\n{GOOD}")).expect_err("not a boolean");
    assert!(e.contains("bench_only"), "{e}");
}

#[test]
fn the_topology_is_loopback_unless_a_load_scenario_says_netns() {
    assert_eq!(parse(GOOD).expect("good").topology, Topology::Loopback);
    let n = parse(&format!("topology = \"netns\"\n{GOOD}")).expect("netns");
    assert_eq!(n.topology, Topology::Netns);
    let l = parse(&format!("topology = \"loopback\"\n{GOOD}")).expect("loopback");
    assert_eq!(l.topology, Topology::Loopback);
    let e = parse(&format!("topology = \"wan\"\n{GOOD}")).expect_err("unknown topology");
    assert!(
        e.contains("demo.toml:1: topology:")
            && e.contains("wan")
            && e.contains("netns")
            && !e.contains('\n'),
        "{e}"
    );
    let held = "topology = \"netns\"\ndescription = \"h\"\n[hold]\nconnections = [1]\n";
    let e = parse(held).expect_err("netns hold");
    assert!(
        e.contains("topology: \"netns\" is for [load] scenarios"),
        "{e}"
    );
    let e = parse(&format!("topology = \"netns\"\n{WRK}")).expect_err("netns wrk");
    assert!(
        e.ends_with("topology: \"netns\" runs loadgen only, not tool = \"wrk\""),
        "{e}"
    );
}

const WRK: &str = r#"
description = "wrk"
[load]
tool = "wrk"
connections = 100
duration = "2s"
"#;

#[test]
fn a_real_clients_load_parses_with_its_own_keys_and_quick_rounds() {
    let s = parse(WRK).expect("wrk");
    let l = load(&s, false);
    assert_eq!(
        (l.tool, l.connections, l.rounds),
        (Tool::Wrk, Count::N(100), None)
    );
    assert_eq!(load(&s, true).rounds, Some(tool::QUICK_ROUNDS));
    let r = parse(&format!("{WRK}[quick]\nrounds = 1\n")).expect("quick rounds");
    assert_eq!(load(&r, true).rounds, Some(1));
    let redis = parse(
        "description = \"r\"\n[load]\ntool = \"redis-benchmark\"\nconnections = 50\nrequests = 1000\npipeline = 16\n",
    )
    .expect("redis needs no duration");
    assert_eq!(load(&redis, false).pipeline, Some(16));
    assert_eq!(load(&parse(GOOD).expect("good"), false).tool, Tool::Loadgen);
}

#[test]
fn a_key_of_another_tool_is_refused_by_name() {
    let e = parse(&WRK.replace("duration", "pipeline = 16\nduration")).expect_err("redis's key");
    assert!(
        e.ends_with(
            "load.pipeline: not a key for tool = \"wrk\" (its keys: tool, connections, duration, \
             rounds, compare_direct)"
        ),
        "{e}"
    );
    let e = parse(&WRK.replace("tool = \"wrk\"", "tool = \"wrk\"\nmode = \"http\""))
        .expect_err("loadgen's key");
    assert!(e.contains("load.mode: not a key for tool = \"wrk\""), "{e}");
    let e = parse(&GOOD.replace("duration", "rounds = 2\nduration")).expect_err("a tool's key");
    assert!(
        e.contains("load.rounds: not a key for tool = \"loadgen\""),
        "{e}"
    );
    let e = parse(&format!("{GOOD}[quick]\nrounds = 2\n")).expect_err("quick rounds");
    assert!(e.contains("quick.rounds: only a real client's load"), "{e}");
    let e = parse(&format!("{WRK}[quick]\nwindow = \"1s\"\n")).expect_err("quick window");
    assert!(
        e.contains("quick.window: not a key for tool = \"wrk\""),
        "{e}"
    );
    let e = parse(&format!("{WRK}[backend]\nmode = \"http\"\n")).expect_err("own backend");
    assert!(
        e.contains("backend: tool = \"wrk\" starts its own backend"),
        "{e}"
    );
}

#[test]
fn a_real_clients_values_are_checked() {
    let e = parse(&WRK.replace("\"2s\"", "\"1500ms\"")).expect_err("whole seconds");
    assert!(
        e.ends_with("load.duration: 1500ms is not whole seconds, which tool = \"wrk\" takes"),
        "{e}"
    );
    let e = parse(&format!("{WRK}[quick]\nduration = \"500ms\"\n")).expect_err("quick");
    assert!(
        e.contains("quick.duration: 500ms is not whole seconds"),
        "{e}"
    );
    let e = parse(&WRK.replace("100", "\"max\"")).expect_err("max");
    assert!(e.contains("load.connections: \"max\" is loadgen's"), "{e}");
    let e = parse(&WRK.replace("duration", "rounds = 0\nduration")).expect_err("rounds");
    assert!(e.ends_with("load.rounds: must be at least 1"), "{e}");
    let e = parse(&WRK.replace("duration = \"2s\"\n", "")).expect_err("missing");
    assert!(
        e.ends_with("load: missing field `duration` (tool = \"wrk\" needs it)"),
        "{e}"
    );
    let e = parse(
        "description = \"r\"\n[load]\ntool = \"redis-benchmark\"\nconnections = 5\nrequests = 9\npipeline = 1\n",
    )
    .expect_err("pipeline 1");
    assert!(e.contains("load.pipeline: 1 is no pipeline"), "{e}");
    let e = parse(&GOOD.replace("mode = \"echo\"\n", "")).expect_err("loadgen's mode");
    assert!(e.ends_with("load: missing field `mode`"), "{e}");
    let e = parse(&WRK.replace("\"wrk\"", "\"ab\"")).expect_err("unknown tool");
    assert!(e.contains("load.tool: unknown variant `ab`"), "{e}");
}

#[test]
fn ratio_targets_name_two_subjects_and_bring_them_into_the_run() {
    let s = parse(&format!(
        "{GOOD}\n[ratio_targets]\nrate = {{ of = \"self-uring\", vs = \"self\", min = 1.0 }}\n\
         total_cpu_us_per_message = {{ of = \"self-uring\", vs = \"self\", max = 1.0, gate = false }}\n"
    ))
    .expect("good");
    use crate::peers::Kind;
    let t = s.ratio_targets["rate"];
    assert_eq!(
        (t.of, t.vs, t.bound.min),
        (Kind::SelfUring, Kind::SelfProxy, Some(1.0))
    );
    assert_eq!(t.figure("rate"), "rate_vs_self");
    assert_eq!(
        s.ratio_targets["total_cpu_us_per_message"].bound.gate,
        Some(false)
    );
    assert_eq!(s.ratio_subjects(), [Kind::SelfUring, Kind::SelfProxy]);
    assert!(parse(GOOD).expect("good").ratio_subjects().is_empty());
}

#[test]
fn a_bad_ratio_target_is_one_line_naming_its_key() {
    let bad = |t: &str| {
        parse(&format!("{GOOD}\n[ratio_targets]\n{t}\n"))
            .expect_err("bad")
            .to_string()
    };
    let e = bad(r#"rate = { of = "envoy", vs = "self", min = 1 }"#);
    assert!(
        e.contains("demo.toml:11: ratio_targets.rate: ")
            && e.contains("of: \"envoy\" is not a proxy of the run (one of: self, self-uring, haproxy, nginx)")
            && !e.contains('\n'),
        "{e}"
    );
    let e = bad(r#"rate = { of = "self-uring", vs = "haproxy", min = 1 }"#);
    assert!(
        e.contains("ratio_targets.rate") && e.contains("vs: \"haproxy\" is not one of our engines"),
        "{e}"
    );
    let e = bad(r#"rate = { of = "self", vs = "self", min = 1 }"#);
    assert!(e.contains("of and vs are both \"self\""), "{e}");
    let e = bad(r#"rate = { of = "self-uring", vs = "self", least = 1 }"#);
    assert!(
        e.contains("ratio_targets.rate") && e.contains("unknown field `least`"),
        "{e}"
    );
    let e = bad(r#"rate = { of = "self-uring", min = 1 }"#);
    assert!(
        e.contains("ratio_targets.rate") && e.contains("missing field `vs`"),
        "{e}"
    );
    let e = bad(r#"rate = { of = "self-uring", vs = "self", min = 1, baseline = false }"#);
    assert!(e.contains("unknown field `baseline`"), "{e}");
    let e = bad(r#"rate = { of = "self-uring", vs = "self" }"#);
    assert!(e.contains("ratio_targets.rate: give `min` or `max`"), "{e}");
    let e = bad(r#"fd_leak = { of = "self-uring", vs = "self", max = 0 }"#);
    assert!(
        e.contains("ratio_targets.fd_leak: not a figure this scenario produces"),
        "{e}"
    );
    let e = parse(&format!("{GOOD}rate_vs_self = {{ min = 1 }}\n")).expect_err("bad");
    assert!(
        e.contains("targets.rate_vs_self: a ratio to self goes in [ratio_targets]"),
        "{e}"
    );
}
