//! `report.html`: the summary, then the report's tables with SVG charts,
//! self-contained (inline SVG and CSS, no scripts, fonts or network):
//! latency percentile curves per load scenario on a logarithmic latency
//! axis and bars of its headline figure, one colour per subject
//! throughout.

use crate::goals;
use crate::report::{about, cell, target_cell, verdict, Curve, Run, GATE_NOTE};
use crate::summary::{self, State};
use crate::units;
use std::fmt::Write as _;

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One colour per subject in every chart, so that curves and bars agree.
fn color(label: &str) -> &'static str {
    match label {
        "direct" => COLORS[0],
        "self" => COLORS[1],
        "haproxy" => COLORS[2],
        "nginx" => COLORS[3],
        "self-uring" => COLORS[4],
        // Every subject is named above; anything else shares the last.
        _ => COLORS[5],
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A decade tick's label: `1 µs`, `100 µs`, `10 ms`.
fn tick_label(us: f64) -> String {
    units::duration_us(us)
        .replace(".00 ", " ")
        .replace(".0 ", " ")
}

/// An SVG chart of latency against percentile: the x axis in "nines"
/// (50, 90, 99, 99.9 …) so the tail is as wide as the body, the latency
/// axis logarithmic with a tick at each decade, so the body of the curve
/// is not flattened by its tail.
pub fn latency_svg(curves: &[Curve]) -> String {
    let (w, h, ml, mb, mt, mr) = (640.0, 320.0, 64.0, 40.0, 20.0, 120.0);
    let nines = |p: f64| -((1.0 - p / 100.0).max(1e-6)).log10();
    let xmax = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| nines(p.0)))
        .fold(1.0f64, f64::max)
        .min(6.0);
    let positive = || {
        curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .filter(|v| *v > 0.0 && v.is_finite())
    };
    // Whole decades around every positive latency; at least one.
    let lo = positive().fold(f64::INFINITY, f64::min);
    let hi = positive().fold(0.0f64, f64::max);
    let (d0, d1) = if hi > 0.0 {
        let d0 = lo.log10().floor();
        (d0, hi.log10().ceil().max(d0 + 1.0))
    } else {
        (0.0, 1.0)
    };
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let x = |p: f64| ml + nines(p).min(xmax) / xmax * pw;
    let y = |v: f64| {
        let d = v.max(10f64.powf(d0)).log10();
        mt + ph - (d - d0) / (d1 - d0) * ph
    };
    let mut s = format!(
        r#"<svg class="latency-plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
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
    let mut decade = d0;
    while decade <= d1 + 1e-9 {
        let v = 10f64.powf(decade);
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line class="tick" x1="{ml}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 5.0,
            yy + 4.0,
            tick_label(v)
        );
        // Unlabelled lines at 2 and 5 of the decade, to read between.
        for m in [2.0, 5.0] {
            if decade < d1 {
                let ym = y(v * m);
                let _ = write!(
                    s,
                    r##"<line x1="{ml}" y1="{ym:.1}" x2="{}" y2="{ym:.1}" stroke="#f3f3f3"/>"##,
                    ml + pw
                );
            }
        }
        decade += 1.0;
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text>"#,
        ml + pw / 2.0,
        h - 5.0
    );
    let _ = write!(
        s,
        r#"<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">latency (log scale)</text>"#,
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    s.push_str(r#"<g class="legend">"#);
    for (i, c) in curves.iter().enumerate() {
        let color = color(&c.label);
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
    s.push_str("</g>");
    for c in curves {
        let color = color(&c.label);
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="curve" data-subject="{}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            esc(&c.label),
            pts.join(" ")
        );
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart of one figure across subjects, in `unit`.
pub fn bars_svg(title: &str, unit: &str, values: &[(String, f64)]) -> String {
    let (w, bh, ml) = (640.0, 24.0, 90.0);
    let h = 30.0 + bh * values.len() as f64;
    let vmax = values.iter().map(|v| v.1).fold(1e-9f64, f64::max);
    let mut s = format!(
        r#"<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11"><text x="5" y="14">{}</text>"#,
        esc(title)
    );
    for (i, (label, v)) in values.iter().enumerate() {
        let y = 22.0 + bh * i as f64;
        let bw = ((w - ml - 100.0) * v / vmax).max(0.0);
        let color = color(label);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{ml}" y="{y}" width="{bw:.1}" height="{}" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            ml - 5.0,
            y + bh * 0.65,
            esc(label),
            bh - 6.0,
            ml + bw + 5.0,
            y + bh * 0.65,
            esc(&units::human(*v, unit))
        );
    }
    s.push_str("</svg>");
    s
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}\
td:first-child,th:first-child{text-align:left}.MISS,.miss{color:#b00;font-weight:bold}.pass{color:#070}\
.ahead{color:#070}.behind{color:#a50}.absent{color:#777;font-style:italic}\
.summary td.verdict,.summary td.label{text-align:left;white-space:normal}code{background:#f4f4f4}a{color:#14c}";

/// A cell, escaped, with the markers around a missed target made a span
/// that stands out.
fn marked(cell: &str) -> String {
    esc(cell)
        .replace('\u{1}', "<span class=\"miss\">")
        .replace('\u{2}', "</span>")
}

/// Issue 12's goals for the uring engine, when it ran.
fn goals_html(run: &Run, out: &mut String) {
    let Some(rows) = goals::rows(run) else {
        return;
    };
    out.push_str(
        r#"<section id="uring-goals"><h2>uring engine goals</h2><table class="summary"><tr>"#,
    );
    for h in goals::header() {
        let _ = write!(out, "<th>{}</th>", esc(&h));
    }
    out.push_str("</tr>");
    for r in &rows {
        out.push_str("<tr>");
        for c in goals::cells(r, |v| format!("\u{1}{v}\u{2}")) {
            let _ = write!(out, "<td>{}</td>", marked(&c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

/// The summary: one row per headline figure, each linked to its section.
fn summary_html(run: &Run, out: &mut String) {
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Summary</h2><p>{}</p><table class=\"summary\"><tr>",
        esc(summary::NOTE)
    );
    for h in summary::header(run) {
        let _ = write!(out, "<th>{}</th>", esc(&h));
    }
    out.push_str("</tr>");
    for r in summary::rows(run) {
        let (kind, class) = match &r.state {
            State::Measured(m) => ("measured", m.standing.map_or("", summary::Standing::word)),
            State::NotRun => ("not-run", "absent"),
            State::Failed(_) => ("failed", "miss"),
            State::NoFigure => ("no-figure", "absent"),
            State::Skipped(_) => ("skipped", "absent"),
        };
        let _ = write!(
            out,
            "<tr class=\"headline {kind}\" id=\"headline-{}-{}\" data-scenario=\"{}\">",
            esc(r.head.scenario),
            esc(r.head.figure),
            esc(r.head.scenario)
        );
        let cells = summary::cells(run, &r, |v| format!("\u{1}{v}\u{2}"));
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            let text = marked(c);
            match i {
                0 => match r.anchor() {
                    Some(anchor) => {
                        let _ = write!(
                            out,
                            "<td class=\"label\"><a href=\"#{}\">{text}</a></td>",
                            esc(anchor)
                        );
                    }
                    None => {
                        let _ = write!(out, "<td class=\"label\">{text}</td>");
                    }
                },
                _ if i == last - 1 => {
                    let _ = write!(out, "<td class=\"verdict {class}\">{text}</td>");
                }
                _ => {
                    let _ = write!(out, "<td>{text}</td>");
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></section>");
}

/// `report.html`: the summary, the scenarios with their charts in the
/// order of the story, and what the run was; self-contained.
pub fn html(run: &Run) -> String {
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Workbench run {id}</title>\
         <style>{STYLE}</style></head><body><h1>Workbench run {id}</h1>\
         <p>Targets judged on <b>{primary}</b>{quick}. {note}</p>",
        note = esc(GATE_NOTE),
        id = esc(&run.id),
        primary = esc(&run.primary),
        quick = if run.quick { " (quick run)" } else { "" }
    );
    summary_html(run, &mut out);
    goals_html(run, &mut out);
    let scenarios = summary::in_story_order(run);
    for s in &scenarios {
        let _ = write!(
            out,
            "<section class=\"scenario\" id=\"{n}\"><h2>{n}</h2><p>{}</p>",
            esc(&s.description),
            n = esc(&s.name)
        );
        if let Some(e) = &s.error {
            let _ = write!(out, "<p class=\"MISS\">Failed: {}</p>", esc(e));
        }
        for sk in &s.skipped {
            let _ = write!(out, "<p>Skipped {}: {}</p>", esc(&sk.subject), esc(&sk.why));
        }
        if !s.figures.is_empty() {
            out.push_str("<table><tr><th>figure</th>");
            for sub in &run.subjects {
                let _ = write!(out, "<th>{}</th>", esc(sub));
            }
            out.push_str("<th>target</th><th>verdict</th></tr>");
            for f in &s.figures {
                let _ = write!(out, "<tr><td>{}</td>", esc(&f.name));
                for sub in &run.subjects {
                    let _ = write!(out, "<td>{}</td>", esc(&cell(f, sub)));
                }
                let v = verdict(f);
                let _ = write!(
                    out,
                    "<td>{}</td><td class=\"{}\">{}</td></tr>",
                    esc(&target_cell(f)),
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
            out.push_str(&bars_svg(&f.name, &f.unit, &vals));
        }
        out.push_str("</section>");
    }
    out.push_str("<section id=\"about\"><h2>About this run</h2><p>The commands, to rerun the load by hand:</p>");
    for s in &scenarios {
        for c in &s.commands {
            let _ = write!(
                out,
                "<p class=\"command\">{}: <code>{}</code></p>",
                esc(&s.name),
                esc(c)
            );
        }
    }
    out.push_str("<ul class=\"machine\">");
    for l in about(run) {
        let _ = write!(out, "<li>{}</li>", esc(&l));
    }
    out.push_str("</ul></section></body></html>\n");
    out
}

#[cfg(test)]
mod browser;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_has_charts() {
        let h = html(&crate::report::tests::sample());
        assert!(h.contains("&lt;closed loop&gt;"));
        assert!(h.contains("<polyline") && h.contains("<svg"));
        assert_eq!(h.matches("<svg").count(), h.matches("</svg>").count());
        assert!(h.contains(">haproxy</text>"), "bars label the peers");
    }
}
