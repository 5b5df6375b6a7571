//! What a report says about where and when it was measured: the machine
//! (cores, kernel, CPU model), the versions of the subjects, and the
//! run's date in UTC.

use serde::Serialize;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The machine a run measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cores: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The first `model name` of `/proc/cpuinfo`, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Subject → its version line (`haproxy -v`, `nginx -v`, ours from
    /// the workspace and its commit).
    pub versions: BTreeMap<String, String>,
}

/// This machine, with the versions of `subjects`.
pub fn facts(root: &std::path::Path, subjects: &[String]) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string());
    let versions = subjects
        .iter()
        .filter_map(|s| Some((s.clone(), version(root, s)?)))
        .collect();
    Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        cpu,
        versions,
    }
}

/// The version line of `subject`, if it has one to tell.
fn version(root: &std::path::Path, subject: &str) -> Option<String> {
    let first_line = |prog: &str, args: &[&str]| {
        let o = Command::new(prog)
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        // nginx writes its version on stderr, HAProxy on stdout.
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Some(line.to_string())
    };
    match subject {
        // One binary, both engines.
        "self" | "self-uring" => {
            let ours = format!("proxy {}", env!("CARGO_PKG_VERSION"));
            Some(match first_line("git", &["rev-parse", "--short", "HEAD"]) {
                Some(commit) => format!("{ours} (commit {commit})"),
                None => ours,
            })
        }
        "haproxy" => first_line("haproxy", &["-v"]),
        "nginx" => first_line("nginx", &["-v"]),
        _ => None,
    }
}

/// A moment in UTC, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub secs: u64,
}

impl Utc {
    pub fn now() -> Utc {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Utc { secs }
    }

    /// (year, month, day, hour, minute, second).
    fn civil(self) -> (i64, i64, i64, u64, u64, u64) {
        let (days, rem) = (self.secs / 86_400, self.secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
    }

    /// `2023-11-14T22:13:20Z`.
    pub fn iso8601(self) -> String {
        let (y, m, d, hh, mm, ss) = self.civil();
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    }

    /// `20231114-221320`: a run's id.
    pub fn compact(self) -> String {
        let (y, m, d, hh, mm, ss) = self.civil();
        format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        let t = Utc {
            secs: 1_700_000_000,
        };
        assert_eq!(t.iso8601(), "2023-11-14T22:13:20Z");
        assert_eq!(t.compact(), "20231114-221320");
        assert_eq!(Utc { secs: 951_782_400 }.iso8601(), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn this_machine_has_cores_and_a_kernel() {
        let m = facts(std::path::Path::new("."), &["self".into(), "direct".into()]);
        assert!(m.cores >= 1 && !m.kernel.is_empty(), "{m:?}");
        assert!(m.versions["self"].starts_with("proxy "), "{m:?}");
        assert!(!m.versions.contains_key("direct"));
    }
}
