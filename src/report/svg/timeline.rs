//! Draws the timeline: a lane per client process, a bar per operation (writes taller than reads)
//! coloured ok, fail or info, fault intervals shaded across every lane with their label above, and
//! the heal and final phases as vertical lines. Hover text comes from each element's `<title>`.

use super::super::html::esc;
use super::super::timeline::Timeline;
use super::axis_step_s;
use std::fmt::Write as _;

const WIDTH: f64 = 1200.0;
const LABEL_W: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 34.0;
const LANE_H: f64 = 13.0;
const AXIS_H: f64 = 40.0;

/// The SVG of a timeline.
pub fn render(t: &Timeline) -> String {
    let plot_w = WIDTH - LABEL_W - RIGHT;
    let end = t.end_ns.max(1) as f64;
    let x = |ns: u64| LABEL_W + ns as f64 / end * plot_w;
    let lanes_h = t.lanes.len().max(1) as f64 * LANE_H;
    let height = TOP + lanes_h + AXIS_H;
    let mut out = String::with_capacity(64 * t.lanes.iter().map(|l| l.bars.len()).sum::<usize>());
    let _ = write!(
        out,
        r#"<svg class="timeline" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img" aria-label="timeline">"#
    );
    // Lane backgrounds, alternating, with labels.
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE_H;
        if i % 2 == 0 {
            let _ = write!(
                out,
                r#"<rect class="lane" x="{LABEL_W}" y="{y:.1}" width="{plot_w:.1}" height="{LANE_H}"/>"#
            );
        }
        let _ = write!(
            out,
            r#"<text class="lane-label" x="{:.1}" y="{:.1}">{}</text>"#,
            LABEL_W - 6.0,
            y + LANE_H - 3.0,
            esc(&lane.label)
        );
    }
    // Fault intervals across all lanes, labels in the band above (staggered on two rows).
    for (i, s) in t.shades.iter().enumerate() {
        let (x1, x2) = (x(s.start_ns), x(s.end_ns));
        let w = (x2 - x1).max(1.5);
        let title = format!(
            "{}: {:.3} s – {:.3} s",
            s.label,
            s.start_ns as f64 / 1e9,
            s.end_ns as f64 / 1e9
        );
        let _ = write!(
            out,
            r#"<g class="shade sh-{kind}"><title>{title}</title><rect x="{x1:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}"/><rect class="band" x="{x1:.1}" y="{by:.1}" width="{w:.1}" height="4"/>"#,
            kind = esc(&s.kind),
            title = esc(&title),
            y = TOP,
            h = lanes_h,
            by = TOP - 5.0,
        );
        if w > 28.0 {
            let _ = write!(
                out,
                r#"<text class="shade-label" x="{:.1}" y="{:.1}">{}</text>"#,
                x1 + 2.0,
                if i % 2 == 0 { 11.0 } else { 22.0 },
                esc(&super::fit(&s.label, w))
            );
        }
        out.push_str("</g>");
    }
    // Operations.
    for (i, lane) in t.lanes.iter().enumerate() {
        let y = TOP + i as f64 * LANE_H;
        for b in &lane.bars {
            let (x1, x2) = (x(b.start_ns), x(b.end_ns));
            let (dy, h) = if b.write || t.summarised {
                (2.0, LANE_H - 4.0)
            } else {
                (4.0, LANE_H - 8.0)
            };
            let _ = write!(
                out,
                r#"<rect class="op {}" x="{x1:.1}" y="{:.1}" width="{:.1}" height="{h}"><title>{}</title></rect>"#,
                b.tone.class(),
                y + dy,
                (x2 - x1).max(1.0),
                esc(&b.title)
            );
        }
    }
    // Phases and point events.
    for (i, m) in t.marks.iter().enumerate() {
        let mx = x(m.at_ns);
        let _ = write!(
            out,
            r#"<g class="mark"><title>{label} at {at:.3} s</title><line x1="{mx:.1}" y1="{y1:.1}" x2="{mx:.1}" y2="{y2:.1}"/><text x="{tx:.1}" y="{ty:.1}">{label}</text></g>"#,
            label = esc(&m.label),
            at = m.at_ns as f64 / 1e9,
            y1 = TOP - 8.0,
            y2 = TOP + lanes_h,
            tx = mx + 2.0,
            // Staggered: the heal and the final phase are often close.
            ty = TOP + lanes_h + if i % 2 == 0 { 24.0 } else { 36.0 },
        );
    }
    // Time axis.
    let axis_y = TOP + lanes_h;
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LABEL_W}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}"/>"#,
        LABEL_W + plot_w
    );
    let step = axis_step_s(end / 1e9, 12);
    let mut tick = 0.0;
    while tick <= end / 1e9 + 1e-9 {
        let tx = x((tick * 1e9) as u64);
        let _ = write!(
            out,
            r#"<line class="axis" x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{:.1}"/><text class="tick" x="{tx:.1}" y="{:.1}">{}</text>"#,
            axis_y + 4.0,
            axis_y + 14.0,
            format_s(tick, step)
        );
        tick += step;
    }
    out.push_str("</svg>");
    out
}

fn format_s(t: f64, step: f64) -> String {
    if step < 1.0 {
        format!("{t:.1} s")
    } else {
        format!("{t:.0} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::{Bar, Lane, Mark, Shade, Tone};

    #[test]
    fn bars_shades_and_marks_are_drawn_with_hover_text() {
        let t = Timeline {
            end_ns: 10_000_000_000,
            lanes: vec![Lane {
                label: "p1".into(),
                bars: vec![Bar {
                    start_ns: 1_000_000_000,
                    end_ns: 1_005_000_000,
                    tone: Tone::Info,
                    write: true,
                    title: "process 1 put k info".into(),
                }],
            }],
            shades: vec![Shade {
                start_ns: 2_000_000_000,
                end_ns: 4_000_000_000,
                kind: "partition".into(),
                label: "partition halves n1 | n2 n3".into(),
            }],
            marks: vec![Mark {
                at_ns: 8_000_000_000,
                label: "heal".into(),
            }],
            summarised: false,
            per_slot: false,
        };
        let svg = render(&t);
        assert!(svg.contains(r#"class="op info""#));
        assert!(svg.contains("<title>process 1 put k info</title>"));
        assert!(svg.contains("sh-partition"));
        assert!(svg.contains(">heal</text>"));
        assert!(svg.contains(">10 s</text>"), "the axis reaches the end");
    }
}
