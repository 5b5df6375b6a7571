//! `/proc` readings of real processes.

use std::process::Command;
use std::time::Duration;
use testkit::{proc, Child};

#[test]
fn usage_of_this_process_is_read() {
    let u = proc::usage(std::process::id()).expect("usage");
    assert!(u.rss_kib > 0 && u.fds > 0, "{u:?}");
}

#[test]
fn children_and_descendants_are_found() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "sh -c 'sleep 30 & echo \"grandchild $!\" >&2; wait' & wait",
    ]);
    let mut c = Child::spawn("sh", &mut cmd, Duration::from_secs(10));
    let grandchild: u32 = c
        .try_wait_line("grandchild ", Duration::from_secs(10))
        .expect("pid")
        .parse()
        .expect("a pid");
    let kids = proc::children(c.pid());
    assert_eq!(kids.len(), 1, "{kids:?}");
    let all = proc::descendants(c.pid());
    assert!(
        all.contains(&kids[0]) && all.contains(&grandchild),
        "{all:?}"
    );
    let sum = proc::usage_with_children(c.pid()).expect("usage");
    let own = proc::usage(c.pid()).expect("usage");
    assert!(sum.rss_kib > own.rss_kib, "{sum:?} {own:?}");
}

#[test]
fn a_process_that_is_gone_is_an_error_naming_its_file() {
    let e = proc::usage(u32::MAX).expect_err("no such pid");
    assert!(e.contains(&format!("/proc/{}/", u32::MAX)), "{e}");
}
