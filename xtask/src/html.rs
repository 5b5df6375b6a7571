//! `report.html`: the report's tables with SVG charts, self-contained:
//! latency percentile curves per load scenario and bars of its headline
//! figure, one colour per subject throughout.

use crate::report::{cell, verdict, Curve, Run, GATE_NOTE};
use crate::spec::fmt_num;
use std::fmt::Write as _;

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
         <p>Targets judged on <b>{primary}</b>{quick}. {note}</p>",
        note = esc(GATE_NOTE),
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
            let _ = write!(out, "<p>Skipped {}: {}</p>", esc(&sk.subject), esc(&sk.why));
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
