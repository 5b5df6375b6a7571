//! Run results and their renderings: the terminal table, `report.json`,
//! `report.md`, and `report.html` with SVG charts (latency percentile
//! curves per load scenario, throughput bars).

use crate::scenario::{fmt_num, Bound};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One whole invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub quick: bool,
    /// The proxy the targets are judged on (`self` unless `--proxy`).
    pub primary: String,
    /// Everything measured, primary first.
    pub subjects: Vec<String>,
    pub scenarios: Vec<ScenarioReport>,
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub description: String,
    pub figures: Vec<Figure>,
    pub curves: Vec<Curve>,
    /// Subjects that could not run here, with the reason.
    pub skipped: Vec<String>,
    pub error: Option<String>,
    /// Exact commands, so a person can rerun the load by hand.
    pub commands: Vec<String>,
}

/// One figure, for every subject that produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub values: BTreeMap<String, f64>,
    pub target: Option<Bound>,
    /// Exact counts and same-run ratios gate; wall-clock figures are only reported.
    pub gated: bool,
    /// Target met by the primary subject (None: no target or no value).
    pub pass: Option<bool>,
}

/// A latency percentile curve: (percentile, microseconds).
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

impl Run {
    /// Figures whose target the primary subject missed, gated ones only.
    pub fn gated_misses(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.scenarios {
            if let Some(e) = &s.error {
                out.push(format!("{}: failed: {e}", s.name));
            }
            for f in &s.figures {
                if f.gates() && f.pass == Some(false) {
                    let v = f.values.get(&self.primary).copied().unwrap_or(f64::NAN);
                    let t = f.target.map(|b| b.describe()).unwrap_or_default();
                    out.push(format!(
                        "{}.{} = {} (target {t})",
                        s.name,
                        f.name,
                        fmt_num(v)
                    ));
                }
            }
        }
        out
    }
}

impl Figure {
    /// Whether missing its target fails the run: a gated figure whose
    /// target is not marked `gate = false` (a goal).
    pub fn gates(&self) -> bool {
        self.gated && self.target.is_some_and(|b| b.gate != Some(false))
    }

    /// A target marked `gate = false`: neither the target nor the
    /// baseline gates this figure.
    pub fn is_goal(&self) -> bool {
        self.target.is_some_and(|b| b.gate == Some(false))
    }
}

fn verdict(f: &Figure) -> &'static str {
    let goal = f.is_goal();
    match (f.pass, f.gates()) {
        (Some(true), _) => "pass",
        (Some(false), true) => "MISS",
        (Some(false), false) if goal => "miss (goal)",
        (Some(false), false) => "miss (not gated)",
        (None, _) => "",
    }
}

fn cell(f: &Figure, subject: &str) -> String {
    f.values
        .get(subject)
        .map_or_else(|| "-".into(), |v| fmt_num(*v))
}

/// The table printed on the terminal.
pub fn terminal(run: &Run) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["scenario".to_string(), "figure".into(), "unit".into()];
    header.extend(run.subjects.iter().cloned());
    header.extend(["target".into(), "verdict".into()]);
    rows.push(header);
    for s in &run.scenarios {
        if let Some(e) = &s.error {
            let mut r = vec![s.name.clone(), "ERROR".into(), String::new()];
            r.extend(run.subjects.iter().map(|_| String::new()));
            r.extend([String::new(), e.chars().take(100).collect()]);
            rows.push(r);
        }
        for f in &s.figures {
            let mut r = vec![s.name.clone(), f.name.clone(), f.unit.clone()];
            r.extend(run.subjects.iter().map(|sub| cell(f, sub)));
            r.push(f.target.map(|b| b.describe()).unwrap_or_default());
            r.push(verdict(f).into());
            rows.push(r);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
        if n == 0 {
            let _ = writeln!(
                out,
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
    for s in &run.scenarios {
        for sk in &s.skipped {
            let _ = writeln!(out, "{}: skipped {sk}", s.name);
        }
    }
    out
}

/// `report.md`.
pub fn markdown(run: &Run) -> String {
    let mut out = format!("# Workbench run {}\n\n", run.id);
    let _ = writeln!(
        out,
        "Targets judged on `{}`{}. Gated figures are exact counts and same-run ratios; wall-clock figures are reported only.\n",
        run.primary,
        if run.quick { " (quick run)" } else { "" }
    );
    for s in &run.scenarios {
        let _ = writeln!(out, "## {}\n\n{}\n", s.name, s.description);
        if let Some(e) = &s.error {
            let _ = writeln!(out, "**Failed:** {e}\n");
        }
        for sk in &s.skipped {
            let _ = writeln!(out, "Skipped: {sk}\n");
        }
        if s.figures.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "| figure | unit | {} | target | verdict |",
            run.subjects.join(" | ")
        );
        let _ = writeln!(
            out,
            "|---|---|{}---|---|",
            "---|".repeat(run.subjects.len())
        );
        for f in &s.figures {
            let vals: Vec<String> = run.subjects.iter().map(|sub| cell(f, sub)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                f.name,
                f.unit,
                vals.join(" | "),
                f.target.map(|b| b.describe()).unwrap_or_default(),
                verdict(f)
            );
        }
        for c in &s.commands {
            let _ = writeln!(out, "\n    {c}");
        }
        out.push('\n');
    }
    out
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One colour per subject in every chart, so that curves and bars agree.
fn color(label: &str, i: usize) -> &'static str {
    match label {
        "direct" => COLORS[0],
        "self" => COLORS[1],
        "haproxy" => COLORS[2],
        "nginx" => COLORS[3],
        _ => COLORS[4 + i % 2],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG chart of latency against percentile, the x axis in "nines"
/// (50, 90, 99, 99.9 …) so the tail is as wide as the body.
pub fn latency_svg(curves: &[Curve]) -> String {
    let (w, h, ml, mb, mt, mr) = (640.0, 320.0, 60.0, 40.0, 20.0, 120.0);
    let nines = |p: f64| -((1.0 - p / 100.0).max(1e-6)).log10();
    let xmax = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| nines(p.0)))
        .fold(1.0f64, f64::max)
        .min(6.0);
    let ymax = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let x = |p: f64| ml + nines(p).min(xmax) / xmax * pw;
    let y = |v: f64| mt + ph - (v / ymax) * ph;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
    );
    for p in [0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999] {
        if nines(p) <= xmax + 1e-9 {
            let xx = x(p);
            let _ = write!(
                s,
                r##"<line x1="{xx}" y1="{mt}" x2="{xx}" y2="{}" stroke="#eee"/><text x="{xx}" y="{}" text-anchor="middle">{p}</text>"##,
                mt + ph,
                h - mb + 15.0
            );
        }
    }
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let yy = y(v);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            ml - 5.0,
            yy + 4.0,
            fmt_num(v.round())
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        ml + pw / 2.0,
        h - 5.0
    );
    let _ = write!(
        s,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">latency (µs)</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    for (i, c) in curves.iter().enumerate() {
        let color = color(&c.label, i);
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = mt + 15.0 * (i as f64 + 1.0);
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            w - mr + 10.0,
            ly - 4.0,
            w - mr + 26.0,
            ly,
            esc(&c.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart of one figure across subjects.
pub fn bars_svg(title: &str, values: &[(String, f64)]) -> String {
    let (w, bh, ml) = (640.0, 24.0, 90.0);
    let h = 30.0 + bh * values.len() as f64;
    let vmax = values.iter().map(|v| v.1).fold(1e-9f64, f64::max);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><text x="5" y="14">{}</text>"#,
        esc(title)
    );
    for (i, (label, v)) in values.iter().enumerate() {
        let y = 22.0 + bh * i as f64;
        let bw = (w - ml - 80.0) * v / vmax;
        let color = color(label, i);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{ml}" y="{y}" width="{bw:.1}" height="{}" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            ml - 5.0,
            y + bh * 0.65,
            esc(label),
            bh - 6.0,
            ml + bw + 5.0,
            y + bh * 0.65,
            fmt_num(*v)
        );
    }
    s.push_str("</svg>");
    s
}

/// `report.html`: the tables plus charts, self-contained.
pub fn html(run: &Run) -> String {
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Workbench run {id}</title><style>\
         body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.MISS{{color:#b00;font-weight:bold}}.pass{{color:#070}}\
         code{{background:#f4f4f4}}</style></head><body><h1>Workbench run {id}</h1>\
         <p>Targets judged on <b>{primary}</b>{quick}. Gated figures are exact counts and same-run ratios; \
         wall-clock figures are reported only.</p>",
        id = esc(&run.id),
        primary = esc(&run.primary),
        quick = if run.quick { " (quick run)" } else { "" }
    );
    for s in &run.scenarios {
        let _ = write!(
            out,
            "<h2 id=\"{n}\">{n}</h2><p>{}</p>",
            esc(&s.description),
            n = esc(&s.name)
        );
        if let Some(e) = &s.error {
            let _ = write!(out, "<p class=\"MISS\">Failed: {}</p>", esc(e));
        }
        for sk in &s.skipped {
            let _ = write!(out, "<p>Skipped: {}</p>", esc(sk));
        }
        if !s.figures.is_empty() {
            out.push_str("<table><tr><th>figure</th><th>unit</th>");
            for sub in &run.subjects {
                let _ = write!(out, "<th>{}</th>", esc(sub));
            }
            out.push_str("<th>target</th><th>verdict</th></tr>");
            for f in &s.figures {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td>",
                    esc(&f.name),
                    esc(&f.unit)
                );
                for sub in &run.subjects {
                    let _ = write!(out, "<td>{}</td>", cell(f, sub));
                }
                let v = verdict(f);
                let _ = write!(
                    out,
                    "<td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(&f.target.map(|b| b.describe()).unwrap_or_default()),
                    v.split(' ').next().unwrap_or(""),
                    v
                );
            }
            out.push_str("</table>");
        }
        if !s.curves.is_empty() {
            out.push_str(&latency_svg(&s.curves));
        }
        // The figure that says most about the scenario, in this order.
        let headline = ["throughput_bps", "connect_rate", "rate"]
            .iter()
            .find_map(|name| {
                s.figures
                    .iter()
                    .find(|f| f.name == *name && f.values.len() > 1)
            });
        if let Some(f) = headline {
            let vals: Vec<(String, f64)> = f.values.iter().map(|(k, v)| (k.clone(), *v)).collect();
            out.push_str("<br>");
            out.push_str(&bars_svg(&format!("{} ({})", f.name, f.unit), &vals));
        }
        for c in &s.commands {
            let _ = write!(out, "<p><code>{}</code></p>", esc(c));
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// Writes the three reports under `dir` and points `latest.json` at them.
pub fn write_all(run: &Run, workbench: &Path) -> Result<PathBuf, String> {
    let dir = workbench.join(&run.id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    put("report.json", &json)?;
    put("report.md", &markdown(run))?;
    put("report.html", &html(run))?;
    let latest = workbench.join("latest.json");
    std::fs::write(&latest, &json).map_err(|e| format!("{}: {e}", latest.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Run {
        let mut values = BTreeMap::new();
        values.insert("self".to_string(), 120_000.0);
        values.insert("haproxy".to_string(), 90_000.0);
        Run {
            id: "test-run".into(),
            quick: true,
            primary: "self".into(),
            subjects: vec!["self".into(), "haproxy".into()],
            scenarios: vec![ScenarioReport {
                name: "throughput".into(),
                description: "100 connections <closed loop>".into(),
                figures: vec![
                    Figure {
                        name: "rate".into(),
                        unit: "msg/s".into(),
                        values: values.clone(),
                        target: Some(Bound {
                            min: Some(10_000.0),
                            max: None,
                            gate: None,
                        }),
                        gated: false,
                        pass: Some(true),
                    },
                    Figure {
                        name: "errors".into(),
                        unit: "count".into(),
                        values: [("self".to_string(), 3.0)].into_iter().collect(),
                        target: Some(Bound {
                            min: None,
                            max: Some(0.0),
                            gate: None,
                        }),
                        gated: true,
                        pass: Some(false),
                    },
                ],
                curves: vec![Curve {
                    label: "self".into(),
                    points: vec![(50.0, 100.0), (99.0, 300.0), (99.9, 900.0)],
                }],
                skipped: vec!["nginx: not installed".into()],
                error: None,
                commands: vec!["loadgen --target x".into()],
            }],
        }
    }

    #[test]
    fn terminal_table_has_peer_columns_and_verdicts() {
        let t = terminal(&sample());
        let header = t.lines().next().expect("header");
        assert!(
            header.contains("self") && header.contains("haproxy") && header.contains("verdict"),
            "{t}"
        );
        assert!(t.lines().any(|l| l.contains("rate")
            && l.contains("120000")
            && l.contains("90000")
            && l.contains("pass")));
        assert!(t
            .lines()
            .any(|l| l.contains("errors") && l.contains("MISS")));
        assert!(t.contains("skipped nginx: not installed"));
    }

    #[test]
    fn gated_misses_list_only_gated_figures() {
        let m = sample().gated_misses();
        assert_eq!(m, vec!["throughput.errors = 3 (target <= 0)".to_string()]);
    }

    #[test]
    fn html_is_escaped_and_has_charts() {
        let h = html(&sample());
        assert!(h.contains("&lt;closed loop&gt;"));
        assert!(h.contains("<polyline") && h.contains("<svg"));
        assert_eq!(h.matches("<svg").count(), h.matches("</svg>").count());
        assert!(h.contains(">haproxy</text>"), "bars label the peers");
    }

    #[test]
    fn reports_are_written_with_latest() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = write_all(&sample(), dir.path()).expect("write");
        for f in ["report.json", "report.md", "report.html"] {
            assert!(out.join(f).exists(), "{f}");
        }
        let latest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("latest.json")).expect("latest"),
        )
        .expect("json");
        assert_eq!(
            latest["scenarios"][0]["figures"][0]["values"]["haproxy"],
            90_000.0
        );
        let md = std::fs::read_to_string(out.join("report.md")).expect("md");
        assert!(
            md.contains("| rate | msg/s | 120000 | 90000 | >= 10000 | pass |"),
            "{md}"
        );
    }
}
