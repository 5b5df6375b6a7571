//! Bad scenario files and bad flags are one line, and nothing starts.

use crate::util::Bench;

#[test]
fn a_bad_scenario_is_named_before_anything_starts() {
    let b = Bench::new();
    b.scenario(
        "bad",
        "description = \"x\"\n[load]\nmode = \"echo\"\nconnections = 1\nduration = \"1s\"\nspeed = 3\n",
    );
    let r = b.xtask(&["list"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stderr
            .contains("bad.toml:6: load.speed: unknown field `speed`"),
        "{r}"
    );
    assert!(!b.out.exists(), "nothing ran");
}

#[test]
fn a_bad_mode_is_one_line_naming_file_key_and_value() {
    let b = Bench::new();
    b.scenario(
        "bad",
        "description = \"x\"\n[load]\nmode = \"ping\"\nconnections = 1\nduration = \"1s\"\n",
    );
    let r = b.xtask(&["scenario", "bad"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert_eq!(r.stderr.lines().count(), 1, "{r}");
    assert!(
        r.stderr
            .contains("bad.toml:3: load.mode: unknown variant `ping`"),
        "{r}"
    );
    assert!(!b.out.exists(), "nothing ran");
}

#[test]
fn a_bad_flag_is_one_line() {
    let b = Bench::new();
    let r = b.xtask(&["bench", "--compare", "haproxy,envoy"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert_eq!(r.stderr.lines().count(), 1, "{r}");
    assert!(
        r.stderr.contains("invalid value 'envoy' for '--compare"),
        "{r}"
    );
}
