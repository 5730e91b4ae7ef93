//! The causality subgraph around one finding: the write it is about, what that write observed, what
//! observed it, what the store orders after it by clock although its writer never saw it, and the key's
//! final siblings; with the edges between them of the two kinds the checker compares.
//!
//! - **Observed** (ground truth): b's client had read a, directly or through writes not drawn.
//! - **Clock**: the store's versions order a before b (history-format.md, "Versions"), but b's client
//!   never read a. This is the edge along which a store drops a write.
//!
//! Both relations are transitively reduced over the drawn writes, so a chain reads as a chain. The
//! clock order is recomputed here from the versions in the history (the checker's own is internal to
//! it); it is the same definition: H(a) a strict subset of H(b).

use super::digest::{KeyData, KeyOp};
use dynamo_checker::history::{ClientF, Outcome, ProcessNo, Version};
use std::collections::{HashMap, HashSet};

/// The most writes drawn around one finding.
pub const NODES_MAX: usize = 10;
/// Writes visited when walking one write's ancestors; past it the walk stops (and says so).
pub const ANCESTRY_VISITS_MAX: usize = 200_000;

/// Why a write is in the drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The write the finding is about.
    Focus,
    /// Named by the finding (the dominating write, the observed write, the descendant).
    Witness,
    /// Ordered after the focus by clock, though its writer never saw the focus.
    Dominator,
    /// Present in the final state.
    Final,
    /// The focus's client had read it.
    Parent,
    /// Its client had read the focus.
    Observer,
}

impl Role {
    /// A short label for the drawing.
    pub fn label(self) -> &'static str {
        match self {
            Role::Focus => "this finding",
            Role::Witness => "witness",
            Role::Dominator => "dominates by clock",
            Role::Final => "final sibling",
            Role::Parent => "it observed",
            Role::Observer => "observed it",
        }
    }
}

/// A drawn write.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub write: String,
    pub role: Role,
    /// Present in the key's final state (as a sibling of a replica or a final read).
    pub in_final: bool,
    pub delete: bool,
    pub process: ProcessNo,
    pub outcome: Option<Outcome>,
    pub invoked_ns: u64,
    pub completed_ns: Option<u64>,
    pub node: Option<String>,
    pub version: Option<Version>,
    pub observed: Vec<String>,
}

/// What an edge stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// a is a ground-truth ancestor of b: `direct` when b's client read a itself. `clock_agrees` says
    /// whether the store also orders a before b (`None` when a version is missing).
    Observed {
        direct: bool,
        clock_agrees: Option<bool>,
    },
    /// The store orders a before b, but b's client never read a.
    Clock,
}

/// An edge between two drawn writes (indexes into `nodes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
}

/// The drawing's data.
#[derive(Clone, Debug, PartialEq)]
pub struct Subgraph {
    pub key: String,
    /// In invoke order.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Writes of the key that were candidates but not drawn (over [`NODES_MAX`]).
    pub omitted: usize,
    /// The key's final siblings, all of them.
    pub final_siblings: Vec<String>,
    /// Set when an ancestry walk hit [`ANCESTRY_VISITS_MAX`]: some observed edges may be missing.
    pub truncated: bool,
}

/// Whether the event (node, counter) is in H(v).
fn has_event(v: &Version, node: &str, counter: u64) -> bool {
    counter <= prefix(v, node)
        || v.dot
            .as_ref()
            .is_some_and(|d| d.node == node && d.counter == counter)
}

/// The largest c such that (node, 1..=c) are all in H(v).
fn prefix(v: &Version, node: &str) -> u64 {
    let c = v.clock.get(node);
    match &v.dot {
        Some(d) if d.node == node && d.counter == c + 1 => d.counter,
        _ => c,
    }
}

/// Whether H(a) is a subset of H(b).
fn within(a: &Version, b: &Version) -> bool {
    a.clock.iter().all(|(n, c)| c <= prefix(b, n))
        && a.dot
            .as_ref()
            .is_none_or(|d| has_event(b, &d.node, d.counter))
}

/// Whether the store orders version a before version b: H(a) is a strict subset of H(b).
pub fn precedes(a: &Version, b: &Version) -> bool {
    within(a, b) && !within(b, a)
}

/// The writes of a key with their observed-parent lists resolved to positions.
struct Writes<'a> {
    ops: Vec<&'a KeyOp>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
    by_id: HashMap<&'a str, usize>,
}

impl<'a> Writes<'a> {
    fn of(data: &'a KeyData) -> Writes<'a> {
        let ops: Vec<&KeyOp> = data.writes().collect();
        let mut by_id = HashMap::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            by_id.insert(op.write.as_deref().expect("writes have ids"), i);
        }
        let mut parents = vec![Vec::new(); ops.len()];
        let mut children = vec![Vec::new(); ops.len()];
        for (b, op) in ops.iter().enumerate() {
            for id in &op.observed {
                if let Some(&a) = by_id.get(id.as_str())
                    && a != b
                {
                    parents[b].push(a);
                    children[a].push(b);
                }
            }
        }
        Writes {
            ops,
            parents,
            children,
            by_id,
        }
    }

    /// Every write reachable from `start` along `next`, bounded; and whether the bound was hit.
    fn walk(&self, start: usize, next: &[Vec<usize>]) -> (HashSet<usize>, bool) {
        let mut seen = HashSet::new();
        let mut stack = vec![start];
        while let Some(w) = stack.pop() {
            for &n in &next[w] {
                if seen.insert(n) {
                    if seen.len() >= ANCESTRY_VISITS_MAX {
                        return (seen, true);
                    }
                    stack.push(n);
                }
            }
        }
        (seen, false)
    }

    fn version(&self, i: usize) -> Option<&Version> {
        self.ops[i].version.as_ref()
    }
}

/// Builds the subgraph around write `focus` of the key in `data`. `witnesses` are other writes the
/// finding names; `final_siblings` the write ids present in the key's final state. `None` when the
/// focus is not among the key's writes.
pub fn around(
    key: &str,
    data: &KeyData,
    focus: &str,
    witnesses: &[String],
    final_siblings: &[String],
) -> Option<Subgraph> {
    let w = Writes::of(data);
    let fi = *w.by_id.get(focus)?;
    let mut chosen: Vec<(usize, Role)> = vec![(fi, Role::Focus)];
    let mut candidates = 0usize;
    let mut push = |chosen: &mut Vec<(usize, Role)>, i: usize, role: Role| {
        if chosen.iter().any(|&(c, _)| c == i) {
            return;
        }
        candidates += 1;
        if chosen.len() < NODES_MAX {
            chosen.push((i, role));
        }
    };
    for id in witnesses {
        if let Some(&i) = w.by_id.get(id.as_str()) {
            push(&mut chosen, i, Role::Witness);
        }
    }
    let (descendants, mut truncated) = w.walk(fi, &w.children);
    if let Some(vf) = w.version(fi) {
        let dominators = (0..w.ops.len()).filter(|&b| {
            b != fi && !descendants.contains(&b) && w.version(b).is_some_and(|vb| precedes(vf, vb))
        });
        for b in dominators.take(2) {
            push(&mut chosen, b, Role::Dominator);
        }
    }
    for id in final_siblings.iter().take(4) {
        if let Some(&i) = w.by_id.get(id.as_str()) {
            push(&mut chosen, i, Role::Final);
        }
    }
    let parents: Vec<usize> = w.parents[fi].iter().rev().take(3).copied().collect();
    for p in parents {
        push(&mut chosen, p, Role::Parent);
    }
    let children: Vec<usize> = w.children[fi].iter().take(3).copied().collect();
    for c in children {
        push(&mut chosen, c, Role::Observer);
    }
    let omitted = candidates + 1 - chosen.len();
    chosen.sort_by_key(|&(i, _)| i);

    let mut ancestors: Vec<HashSet<usize>> = Vec::with_capacity(chosen.len());
    for &(i, _) in &chosen {
        let (set, hit) = w.walk(i, &w.parents);
        truncated |= hit;
        ancestors.push(set);
    }
    let n = chosen.len();
    let idx = |k: usize| chosen[k].0;
    let anc = |a: usize, b: usize| ancestors[b].contains(&idx(a));
    let prec = |a: usize, b: usize| match (w.version(idx(a)), w.version(idx(b))) {
        (Some(va), Some(vb)) => Some(precedes(va, vb)),
        _ => None,
    };
    let mut edges = Vec::new();
    for a in 0..n {
        for b in 0..n {
            if a == b {
                continue;
            }
            if anc(a, b) && !(0..n).any(|c| c != a && c != b && anc(a, c) && anc(c, b)) {
                let direct = w.parents[idx(b)].contains(&idx(a));
                edges.push(Edge {
                    from: a,
                    to: b,
                    kind: EdgeKind::Observed {
                        direct,
                        clock_agrees: prec(a, b),
                    },
                });
            } else if !anc(a, b)
                && prec(a, b) == Some(true)
                && !(0..n).any(|c| {
                    c != a && c != b && prec(a, c) == Some(true) && prec(c, b) == Some(true)
                })
            {
                edges.push(Edge {
                    from: a,
                    to: b,
                    kind: EdgeKind::Clock,
                });
            }
        }
    }
    let nodes = chosen
        .iter()
        .map(|&(i, role)| {
            let op = w.ops[i];
            let id = op.write.clone().expect("writes have ids");
            Node {
                in_final: final_siblings.contains(&id),
                write: id,
                role,
                delete: op.f == ClientF::Delete,
                process: op.process,
                outcome: op.outcome,
                invoked_ns: op.invoked_ns,
                completed_ns: op.completed_ns,
                node: op.node.clone(),
                version: op.version.clone(),
                observed: op.observed.clone(),
            }
        })
        .collect();
    Some(Subgraph {
        key: key.to_owned(),
        nodes,
        edges,
        omitted,
        final_siblings: final_siblings.to_vec(),
        truncated,
    })
}

/// The write ids present in a key's final state: every replica's siblings and every final read's.
pub fn final_siblings(data: &KeyData) -> Vec<String> {
    let mut ids: Vec<String> = data
        .replicas
        .iter()
        .flat_map(|r| r.siblings.iter().map(|s| s.write.clone()))
        .chain(
            data.ops
                .iter()
                .filter(|o| o.is_final && o.outcome == Some(Outcome::Ok))
                .flat_map(|o| o.siblings.iter().map(|s| s.write.clone())),
        )
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_checker::history::{Clock, Dot};

    fn v(dot: (&str, u64), clock: &[(&str, u64)]) -> Version {
        Version {
            dot: Some(Dot::new(dot.0, dot.1)),
            clock: clock.iter().map(|&(n, c)| (n, c)).collect::<Clock>(),
        }
    }

    fn write(index: u64, id: &str, observed: &[&str], version: Version) -> KeyOp {
        KeyOp {
            index,
            process: index.into(),
            f: ClientF::Put,
            outcome: Some(Outcome::Ok),
            is_final: false,
            invoked_ns: index * 1_000,
            completed_ns: Some(index * 1_000 + 500),
            node: None,
            write: Some(id.into()),
            observed: observed.iter().map(|s| s.to_string()).collect(),
            value: String::new(),
            version: Some(version),
            siblings: Vec::new(),
        }
    }

    #[test]
    fn dotted_versions_follow_the_history_format() {
        // history-format.md, "Versions": {dot:[n1,3]} and {dot:[n1,4]} with empty clocks are
        // concurrent; a context that covers the dot orders.
        let a = v(("n1", 3), &[]);
        let b = v(("n1", 4), &[]);
        assert!(!precedes(&a, &b) && !precedes(&b, &a));
        let c = v(("n2", 1), &[("n1", 3)]);
        assert!(precedes(&a, &c) && !precedes(&c, &a));
        let plain_3 = Version {
            dot: None,
            clock: [("n1", 3u64)].into_iter().collect(),
        };
        let plain_4 = Version {
            dot: None,
            clock: [("n1", 4u64)].into_iter().collect(),
        };
        assert!(precedes(&plain_3, &plain_4));
    }

    #[test]
    fn a_lost_write_shows_its_clock_dominator_apart_from_what_observed_it() {
        // p1 is written; p2 read it (observed and ordered by clock); p3 never read p1, but the store
        // ordered it after p1 (its context covers p1's dot): p3 is the final sibling.
        let data = KeyData {
            ops: vec![
                write(1, "p1", &[], v(("n1", 1), &[])),
                write(2, "p2", &["p1"], v(("n1", 2), &[("n1", 1)])),
                write(3, "p3", &[], v(("n2", 1), &[("n1", 2)])),
            ],
            replicas: Vec::new(),
        };
        let g = around("k", &data, "p1", &[], &["p3".into()]).unwrap();
        let ids: Vec<&str> = g.nodes.iter().map(|n| n.write.as_str()).collect();
        assert_eq!(ids, ["p1", "p2", "p3"]);
        assert_eq!(g.nodes[0].role, Role::Focus);
        assert_eq!(g.nodes[2].role, Role::Dominator);
        assert!(g.nodes[2].in_final);
        assert!(g.edges.contains(&Edge {
            from: 0,
            to: 1,
            kind: EdgeKind::Observed {
                direct: true,
                clock_agrees: Some(true)
            }
        }));
        // p1 -> p3 by clock is implied by p1 -> p2 -> p3 and reduced away; p2 -> p3 is clock only.
        assert!(g.edges.contains(&Edge {
            from: 1,
            to: 2,
            kind: EdgeKind::Clock
        }));
        assert_eq!(g.edges.len(), 2, "{:?}", g.edges);
        assert!(around("k", &data, "nope", &[], &[]).is_none());
    }

    #[test]
    fn transitive_observation_is_reduced_to_a_chain() {
        let data = KeyData {
            ops: vec![
                write(1, "a", &[], v(("n1", 1), &[])),
                write(2, "b", &["a"], v(("n1", 2), &[("n1", 1)])),
                write(3, "c", &["b"], v(("n1", 3), &[("n1", 2)])),
            ],
            replicas: Vec::new(),
        };
        let g = around("k", &data, "b", &[], &["c".into()]).unwrap();
        let observed: Vec<(usize, usize)> = g
            .edges
            .iter()
            .filter(|e| matches!(e.kind, EdgeKind::Observed { .. }))
            .map(|e| (e.from, e.to))
            .collect();
        assert_eq!(observed, vec![(0, 1), (1, 2)]);
        assert!(g.edges.iter().all(|e| e.kind != EdgeKind::Clock));
    }

    /// An `observed` that names a later write is an observation all the same, as the checker
    /// reads it (history-format.md: the ground truth): drawn as one, not as a clock edge "a's
    /// client never read b" (a review; the diagram dropped it).
    #[test]
    fn an_observed_later_write_is_drawn_as_observed() {
        let data = KeyData {
            ops: vec![
                write(1, "a", &["b"], v(("n1", 2), &[("n1", 1)])),
                write(2, "b", &[], v(("n1", 1), &[])),
            ],
            replicas: Vec::new(),
        };
        let g = around("k", &data, "b", &[], &["a".into()]).unwrap();
        assert!(
            g.edges
                .iter()
                .any(|e| matches!(e.kind, EdgeKind::Observed { .. })),
            "{:?}",
            g.edges
        );
        assert!(
            g.edges.iter().all(|e| e.kind != EdgeKind::Clock),
            "{:?}",
            g.edges
        );
    }
}
