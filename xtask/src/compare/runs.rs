//! Finding the runs `cargo xtask compare` is given: a run id (a
//! directory under the workbench), `latest` (the newest run), or the path
//! of a `report.json` (or of the directory holding one).

use serde_json::Value;
use std::path::{Path, PathBuf};

/// A run's report, read.
#[derive(Debug)]
pub struct Report {
    /// The run's id, for names and headings.
    pub id: String,
    /// The `report.json` it was read from.
    pub path: PathBuf,
    /// Named by id (or `latest`) rather than by a path.
    pub by_id: bool,
    pub json: Value,
}

/// The report named by `arg`.
pub fn resolve(arg: &str, workbench: &Path) -> Result<Report, String> {
    let given = Path::new(arg);
    let (path, by_id) = if arg == "latest" {
        let newest = run_ids(workbench).pop().ok_or_else(|| {
            format!(
                "no runs under {} to take as \"latest\" (run `cargo xtask bench` first)",
                workbench.display()
            )
        })?;
        (workbench.join(newest).join("report.json"), true)
    } else if is_run(workbench, arg) {
        (workbench.join(arg).join("report.json"), true)
    } else if given.is_file() {
        (given.to_path_buf(), false)
    } else if given.join("report.json").is_file() {
        (given.join("report.json"), false)
    } else {
        return Err(unknown(arg, workbench));
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    if !json["scenarios"].is_array() {
        return Err(format!(
            "{} is not a workbench report (no \"scenarios\" array)",
            path.display()
        ));
    }
    let id = if by_id {
        path.parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    } else {
        json["id"].as_str().map(String::from)
    }
    .unwrap_or_else(|| arg.to_string());
    Ok(Report {
        id,
        path,
        by_id,
        json,
    })
}

fn is_run(workbench: &Path, id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && workbench.join(id).join("report.json").is_file()
}

/// The ids of the runs under `workbench`, oldest first (ids are UTC
/// dates and times, so their order is the runs').
fn run_ids(workbench: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(workbench)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("report.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// The error for a run id that is not there, naming the nearest ones.
fn unknown(arg: &str, workbench: &Path) -> String {
    let ids = run_ids(workbench);
    if ids.is_empty() {
        return format!(
            "unknown run \"{arg}\": no runs under {} (run `cargo xtask bench` first)",
            workbench.display()
        );
    }
    let shared = |id: &str| {
        id.chars()
            .zip(arg.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    let mut near: Vec<&String> = ids.iter().collect();
    // The longest shared start first, then the newest.
    near.sort_by(|a, b| shared(b).cmp(&shared(a)).then(b.cmp(a)));
    let shown: Vec<&str> = near.iter().take(5).map(|s| s.as_str()).collect();
    format!(
        "unknown run \"{arg}\" under {}: nearest {} (of {} runs; or `latest`, or a path to a report.json)",
        workbench.display(),
        shown.join(", "),
        ids.len()
    )
}
