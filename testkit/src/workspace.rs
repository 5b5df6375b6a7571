//! Another package's binary for a test: Cargo builds only the package
//! under test's own binaries for its tests, so a test that needs, say,
//! `echo-backend` from loadgen's tests runs `$CARGO build -p PKG --bin
//! NAME` once per test process (a no-op when `cargo test --workspace` has
//! built it already) and takes it from the directory the test executable
//! lives in (`target/<profile>`): the same profile and target directory as
//! the test, never a stale copy elsewhere.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root: the parent of this crate's directory.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Builds (once per test process) and locates binary `bin` of `package`.
pub fn bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    // target/<profile>/deps/<test exe> -> target/<profile>
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .to_path_buf();
    let path = profile_dir.join(bin);
    if !built.iter().any(|b| b == bin) {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
            .current_dir(ROOT);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build -p {package} --bin {bin} failed");
        built.push(bin.to_string());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}
