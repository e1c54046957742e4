//! A self-contained SVG of a run (no scripts, no network): the latency distribution of
//! `message:sent` and end-to-end delivery (latency against percentile, "nines" on a log axis),
//! and deliveries/s with p99 over time.

use std::fmt::Write as _;

use crate::results::RunResult;

/// Plot size.
const W: f64 = 900.0;
/// Height of one panel.
const PANEL_H: f64 = 300.0;
/// Margins inside a panel.
const ML: f64 = 70.0;
/// Right margin.
const MR: f64 = 70.0;
/// Top margin.
const MT: f64 = 40.0;
/// Bottom margin.
const MB: f64 = 40.0;

/// Series colours.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// Renders the SVG.
pub fn svg(r: &RunResult) -> String {
    let mut out = String::new();
    let h = PANEL_H * 2.0;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    distribution(&mut out, r, 0.0);
    timeline(&mut out, r, PANEL_H);
    out.push_str("</svg>\n");
    out
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Panel 1: latency (ms) against percentile, x = log10(1 / (1 - q)).
fn distribution(out: &mut String, r: &RunResult, y0: f64) {
    let series: Vec<(&str, Vec<(f64, f64)>)> = ["sent", "delivery"]
        .iter()
        .filter_map(|name| {
            let h = r.histograms.get(*name)?.to_histogram();
            if h.is_empty() {
                return None;
            }
            let points = (0..=50)
                .map(|i| {
                    let nines = f64::from(i) * 0.1; // 0 .. 5 nines (99.999%)
                    let q = 1.0 - 10f64.powf(-nines);
                    (nines, h.value_at_quantile(q.min(1.0)) as f64 / 1000.0)
                })
                .collect();
            Some((*name, points))
        })
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(1.0, f64::max)
        * 1.1;
    let title = format!("latency by percentile: {}", esc(&r.label));
    frame(out, y0, &title, "percentile", "ms", y_max);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = x_at(i as f64, 5.0);
        let _ = writeln!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            y0 + PANEL_H - MB + 16.0
        );
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS.get(i).copied().unwrap_or("black");
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", x_at(*x, 5.0), y_at(*y, y_max, y0)))
            .collect();
        line(out, &path, colour);
        legend(out, i, name, colour, y0);
    }
}

/// Panel 2: deliveries/s (left axis) and p99 ms (right axis) per progress tick.
fn timeline(out: &mut String, r: &RunResult, y0: f64) {
    let t_max = r.timeline.last().map(|p| p.t).unwrap_or(1.0).max(1.0);
    let rate_max = r
        .timeline
        .iter()
        .map(|p| p.deliveries_per_sec)
        .fold(1.0, f64::max)
        * 1.1;
    let p99_max = r
        .timeline
        .iter()
        .map(|p| p.p99_us as f64 / 1000.0)
        .fold(1.0, f64::max)
        * 1.1;
    frame(
        out,
        y0,
        "deliveries/s and p99 delivery latency over time",
        "seconds",
        "deliveries/s",
        rate_max,
    );
    for i in 0..=5 {
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x_at(t, t_max),
            y0 + PANEL_H - MB + 16.0
        );
        let v = p99_max * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{}">{v:.1} ms</text>"#,
            W - MR + 6.0,
            y_at(v, p99_max, y0) + 4.0,
            COLOURS[1]
        );
    }
    let rate: Vec<String> = r
        .timeline
        .iter()
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                x_at(p.t, t_max),
                y_at(p.deliveries_per_sec, rate_max, y0)
            )
        })
        .collect();
    let p99: Vec<String> = r
        .timeline
        .iter()
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                x_at(p.t, t_max),
                y_at(p.p99_us as f64 / 1000.0, p99_max, y0)
            )
        })
        .collect();
    line(out, &rate, COLOURS[0]);
    line(out, &p99, COLOURS[1]);
    legend(out, 0, "deliveries/s", COLOURS[0], y0);
    legend(out, 1, "p99 delivery (ms, right axis)", COLOURS[1], y0);
}

/// x pixel of value `v` on a 0..`max` axis.
fn x_at(v: f64, max: f64) -> f64 {
    ML + (W - ML - MR) * (v / max).clamp(0.0, 1.0)
}

/// y pixel of value `v` on a 0..`max` axis in the panel starting at `y0`.
fn y_at(v: f64, max: f64, y0: f64) -> f64 {
    y0 + PANEL_H - MB - (PANEL_H - MT - MB) * (v / max).clamp(0.0, 1.0)
}

/// Axes, title and left-axis ticks.
fn frame(out: &mut String, y0: f64, title: &str, x_label: &str, y_label: &str, y_max: f64) {
    let (x1, x2, top, bottom) = (ML, W - MR, y0 + MT, y0 + PANEL_H - MB);
    let _ = writeln!(
        out,
        r#"<text x="{ML}" y="{:.1}" font-size="14" font-weight="bold">{title}</text>"#,
        y0 + 22.0
    );
    let _ = writeln!(
        out,
        r##"<polyline points="{x1},{top} {x1},{bottom} {x2},{bottom}" fill="none" stroke="#333"/>"##
    );
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = y_at(v, y_max, y0);
        let _ = writeln!(
            out,
            r##"<line x1="{x1}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v:.1}</text>"#,
            x1 - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x_label}</text>"#,
        (x1 + x2) / 2.0,
        bottom + 32.0
    );
    let _ = writeln!(
        out,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{y_label}</text>"#,
        (top + bottom) / 2.0,
        (top + bottom) / 2.0
    );
}

/// A polyline through `points`.
fn line(out: &mut String, points: &[String], colour: &str) {
    if points.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
        points.join(" ")
    );
}

/// A legend entry.
fn legend(out: &mut String, i: usize, name: &str, colour: &str, y0: f64) {
    let y = y0 + MT + 14.0 + 16.0 * i as f64;
    let x = ML + 12.0;
    let _ = writeln!(
        out,
        r#"<rect x="{x}" y="{:.1}" width="12" height="4" fill="{colour}"/>"#,
        y - 4.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
        x + 18.0,
        esc(name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Buckets, TimelinePoint};
    use crate::stats;

    #[test]
    fn svg_has_both_panels_and_series() {
        let mut h = stats::new_histogram();
        for v in 1..1000 {
            stats::record(&mut h, v * 10);
        }
        let mut r = RunResult {
            label: "a<b".into(),
            ..RunResult::default()
        };
        r.histograms
            .insert("delivery".into(), Buckets::from_histogram(&h));
        r.timeline = (0..5)
            .map(|i| TimelinePoint {
                t: f64::from(i),
                deliveries_per_sec: 100.0,
                p99_us: 2_000,
            })
            .collect();
        let s = svg(&r);
        assert!(s.starts_with("<svg"));
        assert!(s.contains("a&lt;b"));
        assert_eq!(s.matches("<polyline points=").count(), 2 + 1 + 2);
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
