//! Which keys of `[load]` and `[quick]` each load tool takes — loadgen's
//! own, or a real client's (wrk, redis-benchmark, iperf3) — checked on the
//! keys as written, so that a key meant for another tool is refused by
//! name rather than silently ignored, and the values only a tool judges.

use super::{Body, Count, Load, Quick, Tool};

/// Rounds of a real client's run with `--quick`, unless `quick.rounds`.
pub const QUICK_ROUNDS: usize = 2;

/// A tool's keys of `[load]`: those it takes, and those it needs.
struct Keys {
    takes: &'static [&'static str],
    needs: &'static [&'static str],
}

fn keys(tool: Tool) -> Keys {
    let (takes, needs): (&[&str], &[&str]) = match tool {
        Tool::Loadgen => (
            &[
                "tool",
                "mode",
                "connections",
                "message_size",
                "duration",
                "warmup",
                "rate",
                "bulk_direction",
                "compare_direct",
                "window",
                "interleave",
            ],
            &["mode", "duration"],
        ),
        Tool::Wrk => (
            &[
                "tool",
                "connections",
                "duration",
                "rounds",
                "compare_direct",
            ],
            &["duration"],
        ),
        Tool::RedisBenchmark => (
            &[
                "tool",
                "connections",
                "requests",
                "pipeline",
                "rounds",
                "compare_direct",
            ],
            &["requests"],
        ),
        Tool::Iperf3 => (
            &[
                "tool",
                "connections",
                "duration",
                "bulk_direction",
                "rounds",
                "compare_direct",
            ],
            &["duration", "bulk_direction"],
        ),
    };
    Keys { takes, needs }
}

/// `[quick]` keys that only a real client's load takes.
const QUICK_TOOL_ONLY: &[&str] = &["rounds", "requests"];
/// `[quick]` keys a real client's load takes.
const QUICK_TOOL: &[&str] = &["duration", "connections", "rounds", "requests"];

/// Checks the keys of `raw` (the file as written) against the tool of
/// `body`, and the values only that tool judges.
pub(super) fn check(raw: &toml::Table, body: &Body, q: &Quick) -> Result<(), String> {
    let table = |name: &str| raw.get(name).and_then(toml::Value::as_table);
    let quick: Vec<&str> = table("quick")
        .map(|t| t.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let load = match body {
        Body::Load(l) if l.tool != Tool::Loadgen => l,
        _ => {
            if let Some(k) = quick.iter().find(|k| QUICK_TOOL_ONLY.contains(k)) {
                return Err(format!(
                    "quick.{k}: only a real client's load (load.tool = \"wrk\", \
                     \"redis-benchmark\" or \"iperf3\") takes it"
                ));
            }
            if let Body::Load(_) = body {
                let written = table("load").cloned().unwrap_or_default();
                given(&written, Tool::Loadgen)?;
            }
            return Ok(());
        }
    };
    let tool = load.tool.arg();
    let written = table("load").cloned().unwrap_or_default();
    given(&written, load.tool)?;
    if raw.contains_key("backend") {
        return Err(format!(
            "backend: tool = \"{tool}\" starts its own backend ({}); remove [backend]",
            backend_of(load.tool)
        ));
    }
    if let Some(k) = quick.iter().find(|k| !QUICK_TOOL.contains(k)) {
        return Err(format!(
            "quick.{k}: not a key for tool = \"{tool}\" (its keys: {})",
            QUICK_TOOL.join(", ")
        ));
    }
    values(load)?;
    match q.duration {
        Some(d) if !whole_seconds(load.tool, d.0) => Err(format!(
            "quick.duration: {d} is not whole seconds, which tool = \"{tool}\" takes"
        )),
        _ => Ok(()),
    }
}

/// Every key of `[load]` as written is one `tool` takes, and every key it
/// needs is there.
fn given(written: &toml::Table, tool: Tool) -> Result<(), String> {
    let k = keys(tool);
    if let Some(bad) = written.keys().find(|w| !k.takes.contains(&w.as_str())) {
        return Err(format!(
            "load.{bad}: not a key for tool = \"{}\" (its keys: {})",
            tool.arg(),
            k.takes.join(", ")
        ));
    }
    match k.needs.iter().find(|n| !written.contains_key(**n)) {
        Some(n) if tool == Tool::Loadgen => Err(format!("load: missing field `{n}`")),
        Some(n) => Err(format!(
            "load: missing field `{n}` (tool = \"{}\" needs it)",
            tool.arg()
        )),
        None => Ok(()),
    }
}

/// What the workbench starts for `tool` to talk to.
fn backend_of(tool: Tool) -> &'static str {
    match tool {
        Tool::Loadgen => "the echo-backend",
        Tool::Wrk => "nginx serving HTTP",
        Tool::RedisBenchmark => "redis-server",
        Tool::Iperf3 => "an iperf3 server",
    }
}

/// The values a real client's load must have.
fn values(l: &Load) -> Result<(), String> {
    let tool = l.tool.arg();
    if l.connections == Count::Max {
        return Err(format!(
            "load.connections: \"max\" is loadgen's; give tool = \"{tool}\" a count"
        ));
    }
    if l.rounds == Some(0) {
        return Err("load.rounds: must be at least 1".into());
    }
    if l.requests == Some(0) {
        return Err("load.requests: must be at least 1".into());
    }
    if l.pipeline.is_some_and(|p| p < 2) {
        return Err(format!(
            "load.pipeline: {} is no pipeline; give the depth of the pipelined run (2 or more)",
            l.pipeline.unwrap_or(0)
        ));
    }
    if whole_seconds(l.tool, l.duration.0) {
        Ok(())
    } else {
        Err(format!(
            "load.duration: {} is not whole seconds, which tool = \"{tool}\" takes",
            l.duration
        ))
    }
}

/// wrk and iperf3 take whole seconds (1 or more); redis-benchmark counts
/// requests instead.
fn whole_seconds(tool: Tool, d: std::time::Duration) -> bool {
    tool == Tool::RedisBenchmark || (!d.is_zero() && d.subsec_nanos() == 0)
}
