//! Scale: thousands of concurrent connections from one loadgen thread,
//! through the real proxy to the real echo-backend, without an error.

use crate::util::{self, loadgen, total_errors};

#[test]
fn five_thousand_connections_through_the_proxy_without_errors() {
    let (_backend, b) = util::echo_backend("echo", &[]);
    let (_proxy, p) = util::proxy(b, &["--max-connections", "6000"]);
    let t = p.to_string();
    let run = loadgen(&[
        "--target",
        &t,
        "--json",
        "--connections",
        "5000",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--timeout",
        "10s",
    ]);
    assert_eq!(run.status, Some(0), "stderr: {}", run.stderr);
    let r = run.target(0);
    assert_eq!(total_errors(&r), 0, "{r}");
    // Every connection took part: at least one measured message each.
    let msgs = r["messages"].as_u64().expect("messages");
    assert!(msgs >= 5000, "{r}");
}
