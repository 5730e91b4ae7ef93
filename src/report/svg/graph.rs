//! Draws a causality subgraph as an arc diagram: the writes on one line in invoke order, observed
//! edges (ground truth) as blue arcs above it, clock edges (the store's order where the client never
//! saw the write) as dashed orange arcs below it. The two kinds cannot be confused, and a chain of
//! clock arcs under a write with no blue path to a final sibling is a lost write at a glance.

use super::super::causality::{EdgeKind, Role, Subgraph};
use super::super::html::esc;
use super::super::{fmt_ms, version_text};
use dynamo_checker::history::Outcome;
use std::fmt::Write as _;

const BOX_W: f64 = 104.0;
const BOX_H: f64 = 50.0;
const STEP: f64 = 118.0;
const MARGIN: f64 = 12.0;
/// The tallest arc.
const ARC_H_MAX: f64 = 70.0;

fn arc_h(a: usize, b: usize) -> f64 {
    (14.0 + 12.0 * a.abs_diff(b) as f64).min(ARC_H_MAX)
}

/// The SVG of a subgraph.
pub fn render(g: &Subgraph) -> String {
    let n = g.nodes.len();
    let up = g
        .edges
        .iter()
        .filter(|e| matches!(e.kind, EdgeKind::Observed { .. }))
        .map(|e| arc_h(e.from, e.to))
        .fold(0.0, f64::max);
    let down = g
        .edges
        .iter()
        .filter(|e| e.kind == EdgeKind::Clock)
        .map(|e| arc_h(e.from, e.to))
        .fold(0.0, f64::max);
    let top = MARGIN + up + 4.0;
    let width = 2.0 * MARGIN + (n.max(1) - 1) as f64 * STEP + BOX_W;
    let height = top + BOX_H + down + MARGIN + 4.0;
    let cx = |i: usize| MARGIN + i as f64 * STEP + BOX_W / 2.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="graph" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" role="img" aria-label="causality around {}">"#,
        esc(g
            .nodes
            .iter()
            .find(|n| n.role == Role::Focus)
            .map(|n| n.write.as_str())
            .unwrap_or(""))
    );
    for e in &g.edges {
        let (a, b) = (&g.nodes[e.from], &g.nodes[e.to]);
        // Offsets keep an arc's two ends apart from arcs in the other direction.
        let (x1, x2) = (cx(e.from) + 8.0, cx(e.to) - 8.0);
        let h = arc_h(e.from, e.to);
        let (class, y, ctrl, title) = match e.kind {
            EdgeKind::Observed {
                direct,
                clock_agrees,
            } => {
                let class = match (direct, clock_agrees) {
                    (_, Some(false)) => "e-regress",
                    (true, _) => "e-obs",
                    (false, _) => "e-obs-t",
                };
                let how = if direct {
                    format!("{}'s client read {}", b.write, a.write)
                } else {
                    format!(
                        "{} descends from {} through writes not drawn (its client read a write that read it)",
                        b.write, a.write
                    )
                };
                let clock = match clock_agrees {
                    Some(true) => "; the store's clocks agree",
                    Some(false) => "; but the store's clocks do NOT order them so",
                    None => "",
                };
                (class, top, top - 2.0 * h, format!("{how}{clock}"))
            }
            EdgeKind::Clock => (
                "e-clock",
                top + BOX_H,
                top + BOX_H + 2.0 * h,
                format!(
                    "the store orders {} before {} by clock, but {}'s client never read {}",
                    a.write, b.write, b.write, a.write
                ),
            ),
        };
        let xm = (x1 + x2) / 2.0;
        let _ = write!(
            out,
            r#"<path class="{class}" d="M{x1:.1} {y:.1} Q{xm:.1} {ctrl:.1} {x2:.1} {y:.1}"><title>{}</title></path>"#,
            esc(&title)
        );
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let x = MARGIN + i as f64 * STEP;
        let mut class = String::from("n");
        match node.role {
            Role::Focus => class.push_str(" n-focus"),
            Role::Dominator | Role::Witness => class.push_str(" n-witness"),
            _ => {}
        }
        if node.in_final {
            class.push_str(" n-final");
        }
        if node.outcome != Some(Outcome::Ok) {
            class.push_str(" n-unsure");
        }
        let outcome = node.outcome.map(Outcome::as_str).unwrap_or("pending");
        let when = node
            .completed_ns
            .map(fmt_ms)
            .unwrap_or_else(|| fmt_ms(node.invoked_ns));
        let version = node
            .version
            .as_ref()
            .map(version_text)
            .unwrap_or_else(|| "no version".into());
        let observed = if node.observed.is_empty() {
            "nothing (a blind write)".to_owned()
        } else {
            node.observed.join(", ")
        };
        let title = format!(
            "{} {} by process {} via {}: {outcome} at {when}\nversion: {version}\nits client had read: {observed}{}",
            if node.delete { "delete" } else { "put" },
            node.write,
            node.process,
            node.node.as_deref().unwrap_or("?"),
            if node.in_final {
                "\npresent in the final state"
            } else {
                ""
            }
        );
        let role = if node.in_final && node.role != Role::Final {
            format!("{} · final", node.role.label())
        } else {
            node.role.label().to_owned()
        };
        let _ = write!(
            out,
            r#"<g class="{class}" data-w="{id}"><title>{title}</title><rect x="{x:.1}" y="{top:.1}" width="{BOX_W}" height="{BOX_H}" rx="5"/><text x="{tx:.1}" y="{y1:.1}" class="n-id">{id}</text><text x="{tx:.1}" y="{y2:.1}">p{p} {outcome} {when}</text><text x="{tx:.1}" y="{y3:.1}" class="n-role">{role}</text></g>"#,
            id = esc(&node.write),
            title = esc(&title),
            tx = x + BOX_W / 2.0,
            y1 = top + 16.0,
            y2 = top + 31.0,
            y3 = top + 44.0,
            p = node.process,
            role = esc(&role),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::causality::{Edge, Node};

    fn node(id: &str, role: Role, in_final: bool) -> Node {
        Node {
            write: id.into(),
            role,
            in_final,
            delete: false,
            process: 3,
            outcome: Some(Outcome::Ok),
            invoked_ns: 1_000_000,
            completed_ns: Some(6_000_000),
            node: Some("n2".into()),
            version: None,
            observed: Vec::new(),
        }
    }

    #[test]
    fn edges_of_the_two_kinds_are_drawn_apart() {
        let g = Subgraph {
            key: "k".into(),
            nodes: vec![
                node("p1-1", Role::Focus, false),
                node("p2-1", Role::Observer, false),
                node("p3-1", Role::Dominator, true),
            ],
            edges: vec![
                Edge {
                    from: 0,
                    to: 1,
                    kind: EdgeKind::Observed {
                        direct: true,
                        clock_agrees: Some(true),
                    },
                },
                Edge {
                    from: 0,
                    to: 2,
                    kind: EdgeKind::Clock,
                },
            ],
            omitted: 0,
            final_siblings: vec!["p3-1".into()],
            truncated: false,
        };
        let svg = render(&g);
        assert_eq!(svg.matches(r#"class="e-obs""#).count(), 1);
        assert_eq!(svg.matches(r#"class="e-clock""#).count(), 1);
        assert!(svg.contains("n n-focus"));
        assert!(svg.contains("n n-witness n-final"));
        assert!(svg.contains("the store orders p1-1 before p3-1 by clock"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
