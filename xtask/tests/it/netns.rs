//! A short scenario in the netns topology: the load, the proxy and the
//! backend in namespaces of their own, the same figures out of it, and no
//! namespace left behind. Skipped, with a line, where namespaces cannot
//! be made (not root, no iproute2).

use crate::util::{assert_echo_figures, Bench, Run};
use std::process::{Command, Stdio};

const NETNS: &str = r#"description = "tiny echo run across veth"
bench_only = true
topology = "netns"
[load]
mode = "echo"
connections = 4
message_size = 32
duration = "1s"
warmup = "200ms"
window = "100ms"
[targets]
errors = { max = 0 }
"#;

#[test]
fn a_netns_scenario_measures_across_veth_and_leaves_no_namespace() {
    let b = Bench::new();
    b.scenario("veth", NETNS);
    let child = b
        .command(&["scenario", "veth"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask");
    let pid = child.id();
    let r = Run::from(child.wait_with_output().expect("xtask"));
    assert_eq!(r.code, Some(0), "{r}");
    let latest = b.latest();
    let skipped = latest["scenarios"][0]["skipped"].to_string();
    if skipped.contains("network namespaces cannot be made") {
        eprintln!("skipping the netns end-to-end test: {skipped}");
        return;
    }
    assert!(
        r.stderr
            .contains(&format!("network namespaces xtask-{pid}-")),
        "{r}"
    );
    // Direct is routed through the proxy's namespace; our counters are
    // scraped inside it.
    assert_echo_figures(&latest);
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&format!("xtask-{pid}-")),
        "namespaces left behind: {list}"
    );
}
