//! The causality graph: one vertex per write, and the two orders the checks compare.
//!
//! - **Ground truth**: a -> b when b's client had read a (`observed` in b's invoke, puts and deletes
//!   alike: a v2 read returns tombstones with the delete's write id). Their transitive closure is what
//!   b's writer knew. Nothing else is ground truth: not the real-time order, and not the store's order
//!   (history-format.md: "Nothing else makes it one: not the real-time order, not a context that
//!   covers the tombstone's dot").
//! - **v1 context** edges, in a v1 history only: a v1 read omits tombstones, so its `observed` cannot
//!   name a delete. The page's substitute: "a put or delete there also observed every delete on its
//!   key, invoked before it, whose dot its `context` covers". These count as ground truth in v1.
//! - **Clock** edges are the store's order (history-format.md, "Versions"; see `order.rs`), used only to
//!   detect false dominance and clock regression, never to excuse a loss. The full order is quadratic
//!   in a key's writes, so only the edges that matter are stored: a -> b where b observed a directly and
//!   the store agrees, and a -> b where the store orders a before b although b's writer never saw a (a
//!   false dominance; the first such b for each a).
//!
//! Built in near-linear time: writes are indexed by key and only compared within their key. Each key
//! keeps, per write, a bitset of its ground-truth ancestors (`reach.rs`), and a write is compared only
//! with the versions that could precede it: those whose dot its history covers (a binary search in the
//! key's versions sorted by dot) and that are not already its ancestors (a word-wise mask of the
//! bitset). Keys above [`DENSE_WRITES_PER_KEY_MAX`] writes, or beyond [`REACH_BYTES_MAX`] in total, get
//! no bitsets; the checks that need them report those keys as unknown.

mod order;
mod reach;

use petgraph::Direction;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::history::{Format, History, KeyIdx, Sym, VerId, WriteIdx};
pub(crate) use order::{VersionView, precedes};
pub(crate) use reach::{Bits, Reach};

/// The most writes a key may have and still get observed-ancestor bitsets: 32768 writes cost 128 MiB.
pub const DENSE_WRITES_PER_KEY_MAX: usize = 32_768;

/// The most memory all keys' bitsets may take together.
pub const REACH_BYTES_MAX: usize = 256 << 20;

/// The most notes (dropped edges) kept verbatim; the rest are counted.
const NOTES_MAX: usize = 20;

/// What an edge stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Ground truth: the target's client read the source.
    Observed,
    /// v1 only: the source is a delete invoked before the target, whose dot the target's context
    /// covers (the page's substitute for a tombstone a v1 read cannot show).
    Context,
    /// The store orders the source's version before the target's.
    Clock,
}

impl EdgeKind {
    /// Whether the edge is (or, in v1, stands in for) something the client saw.
    pub fn is_ground_truth(self) -> bool {
        matches!(self, EdgeKind::Observed | EdgeKind::Context)
    }
}

/// A key's writes, in invoke order and in bitset order, as offsets into the graph's shared arrays.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyRange {
    pub start: u32,
    pub len: u32,
}

/// A run of a key's dotted versions that share their dot's node, sorted by counter: positions
/// `start..end` of the key's bitset order.
#[derive(Debug, Clone, Copy)]
struct Run {
    node: Sym,
    start: u32,
    end: u32,
}

/// The causality graph of a history. Vertex `i` is the `i`-th write in invoke order.
#[derive(Debug)]
pub struct Graph {
    pub(crate) g: DiGraph<(), EdgeKind, u32>,
    /// Per key: its range in `by_invoke`, `by_pos` and `counters`.
    pub(crate) keys: Vec<KeyRange>,
    /// Writes grouped by key, in invoke order within a key.
    pub(crate) by_invoke: Vec<WriteIdx>,
    /// Writes grouped by key, in bitset order within a key (dotted versions by node and counter,
    /// then dotless versions, then writes with no known version).
    pub(crate) by_pos: Vec<WriteIdx>,
    /// Per write: its position in its key's bitset order.
    pub(crate) pos: Vec<u32>,
    /// Parallel to `by_pos`: the dot counter of a dotted version, else 0.
    counters: Vec<u64>,
    /// Per key: its runs of dotted versions (offsets into `runs`), and its dotless range.
    key_runs: Vec<(u32, u32)>,
    runs: Vec<Run>,
    dotless: Vec<(u32, u32)>,
    pub(crate) reach: Reach,
    /// Why observed entries were not made edges (unknown id, other key, the write itself); at
    /// most `NOTES_MAX`, with the total in `dropped_observed`.
    pub(crate) notes: Vec<String>,
    pub(crate) dropped_observed: usize,
    /// Whether some ground-truth edge goes from a write to one invoked before it (an `observed`
    /// naming a later write: no real client's, but the page's ground truth all the same). Without
    /// one, every ancestor comes before its descendants in invoke order, and one pass in that
    /// order closes any propagation; with one, passes repeat until nothing changes.
    pub(crate) backward_edges: bool,
}

impl Graph {
    /// Builds the graph of a history.
    pub fn build(h: &History) -> Graph {
        let writes = h.writes.len();
        let mut g = DiGraph::<(), EdgeKind, u32>::with_capacity(writes, h.observed.len());
        for _ in 0..writes {
            g.add_node(());
        }
        let mut graph = Graph {
            g,
            keys: Vec::new(),
            by_invoke: Vec::new(),
            by_pos: Vec::new(),
            pos: vec![0; writes],
            counters: Vec::new(),
            key_runs: Vec::new(),
            runs: Vec::new(),
            dotless: Vec::new(),
            reach: Reach::default(),
            notes: Vec::new(),
            dropped_observed: 0,
            backward_edges: false,
        };
        graph.group_by_key(h);
        graph.add_observed(h);
        graph.order_positions(h);
        graph.add_context_edges(h);
        graph.reach = Reach::build(&graph);
        graph.add_clock(h);
        graph
    }

    /// The number of writes (vertices).
    pub fn write_count(&self) -> usize {
        self.g.node_count()
    }

    /// The number of edges of a kind.
    pub fn edge_count(&self, kind: EdgeKind) -> usize {
        self.g.edge_weights().filter(|&&k| k == kind).count()
    }

    pub(crate) fn node(w: WriteIdx) -> NodeIndex<u32> {
        NodeIndex::new(w.0 as usize)
    }

    pub(crate) fn write(n: NodeIndex<u32>) -> WriteIdx {
        WriteIdx(n.index() as u32)
    }

    /// A key's writes in invoke order.
    pub(crate) fn key_writes(&self, k: KeyIdx) -> &[WriteIdx] {
        let r = self.keys[k.0 as usize];
        &self.by_invoke[r.start as usize..(r.start + r.len) as usize]
    }

    /// A key's writes in bitset order.
    pub(crate) fn key_positions(&self, k: KeyIdx) -> &[WriteIdx] {
        let r = self.keys[k.0 as usize];
        &self.by_pos[r.start as usize..(r.start + r.len) as usize]
    }

    /// The ground-truth parents of a write (observed and tombstone edges in).
    pub(crate) fn ground_parents(&self, w: WriteIdx) -> impl Iterator<Item = WriteIdx> + '_ {
        self.g
            .edges_directed(Self::node(w), Direction::Incoming)
            .filter(|e| e.weight().is_ground_truth())
            .map(|e| Self::write(e.source()))
    }

    /// The ground-truth children of a write: the writes whose clients read it (and, in v1, the writes
    /// whose contexts cover its tombstone's dot).
    pub(crate) fn ground_children(&self, w: WriteIdx) -> impl Iterator<Item = WriteIdx> + '_ {
        self.g
            .edges_directed(Self::node(w), Direction::Outgoing)
            .filter(|e| e.weight().is_ground_truth())
            .map(|e| Self::write(e.target()))
    }

    /// The writes `w` observed directly.
    pub(crate) fn observed_parents(&self, w: WriteIdx) -> impl Iterator<Item = WriteIdx> + '_ {
        self.g
            .edges_directed(Self::node(w), Direction::Incoming)
            .filter(|e| *e.weight() == EdgeKind::Observed)
            .map(|e| Self::write(e.source()))
    }

    /// Every edge of a kind, as (source, target).
    pub(crate) fn edges_of(
        &self,
        kind: EdgeKind,
    ) -> impl Iterator<Item = (WriteIdx, WriteIdx)> + '_ {
        self.g
            .edge_references()
            .filter(move |e| *e.weight() == kind)
            .map(|e| (Self::write(e.source()), Self::write(e.target())))
    }

    /// Whether `a` is an observed ancestor of `b` (ground truth, transitively); `None` when b's key is
    /// too large to have bitsets.
    pub(crate) fn reaches(&self, h: &History, a: WriteIdx, b: WriteIdx) -> Option<bool> {
        self.reach.reaches(self, h, a, b)
    }

    fn add_edge(&mut self, a: WriteIdx, b: WriteIdx, kind: EdgeKind) -> EdgeIndex<u32> {
        self.g.add_edge(Self::node(a), Self::node(b), kind)
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        self.dropped_observed += 1;
        if self.notes.len() < NOTES_MAX {
            self.notes.push(text());
        }
    }

    /// Groups writes by key (a counting sort, so invoke order is kept within a key).
    fn group_by_key(&mut self, h: &History) {
        let mut counts = vec![0u32; h.keys.len()];
        for w in &h.writes {
            counts[w.key.0 as usize] += 1;
        }
        let mut start = 0u32;
        self.keys = counts
            .iter()
            .map(|&len| {
                let r = KeyRange { start, len };
                start += len;
                r
            })
            .collect();
        let mut fill: Vec<u32> = self.keys.iter().map(|r| r.start).collect();
        self.by_invoke = vec![WriteIdx(0); h.writes.len()];
        for (i, w) in h.writes.iter().enumerate() {
            let slot = &mut fill[w.key.0 as usize];
            self.by_invoke[*slot as usize] = WriteIdx(i as u32);
            *slot += 1;
        }
    }

    /// Observed edges, within the key. `observed` is the ground truth (history-format.md), so a write
    /// invoked after the one that names it is its ancestor all the same: no real client could have
    /// read it, but a verdict that dropped the edge would judge another history than the file's (a
    /// helper's audit: `a` observed `b`, invoked later, and `b` was called lost although `a`, its
    /// descendant, is present). The rest is noted and dropped: an id no put invoked (the
    /// phantom-read check reports it), a write of another key, the write itself.
    fn add_observed(&mut self, h: &History) {
        let mut parents: Vec<WriteIdx> = Vec::new();
        for (i, w) in h.writes.iter().enumerate() {
            let b = WriteIdx(i as u32);
            parents.clear();
            for &o in h.observed_of(w) {
                let Some(a) = h.write_of(o) else {
                    self.note(|| {
                        format!(
                            "write {:?} observed {:?}, which no put invoked",
                            h.str(w.id),
                            h.str(o)
                        )
                    });
                    continue;
                };
                let wa = h.write(a);
                if wa.key != w.key {
                    self.note(|| {
                        format!(
                            "write {:?} to {:?} observed {:?}, a write to another key",
                            h.str(w.id),
                            h.key_name(w.key),
                            h.str(o)
                        )
                    });
                } else if a == b {
                    self.note(|| format!("write {:?} observed itself", h.str(w.id)));
                } else if !parents.contains(&a) {
                    parents.push(a);
                    self.backward_edges |= a > b;
                    self.add_edge(a, b, EdgeKind::Observed);
                }
            }
        }
    }

    /// Orders each key's writes for the bitsets: dotted versions grouped by dot node and sorted by
    /// counter (so the versions a clock covers are a contiguous range per node), then dotless
    /// versions, then writes with no known version.
    fn order_positions(&mut self, h: &History) {
        self.by_pos = self.by_invoke.clone();
        self.counters = vec![0; self.by_pos.len()];
        self.key_runs = Vec::with_capacity(self.keys.len());
        self.dotless = Vec::with_capacity(self.keys.len());
        // Sort key: 0 dotted (node, counter), 1 dotless, 2 unversioned; then invoke order.
        let sort_key = |w: WriteIdx| -> (u8, u32, u64, u32) {
            match h.write(w).version {
                Some(v) => match h.versions.rec(v).dot {
                    Some((n, c)) => (0, n.0, c, w.0),
                    None => (1, 0, 0, w.0),
                },
                None => (2, 0, 0, w.0),
            }
        };
        for k in 0..self.keys.len() {
            let r = self.keys[k];
            let range = r.start as usize..(r.start + r.len) as usize;
            let slice = &mut self.by_pos[range.clone()];
            slice.sort_unstable_by_key(|&w| sort_key(w));
            let runs_start = self.runs.len() as u32;
            let mut dotless = (r.len, r.len);
            for (p, &w) in slice.iter().enumerate() {
                self.pos[w.0 as usize] = p as u32;
                let (class, node, counter, _) = sort_key(w);
                match class {
                    0 => {
                        self.counters[r.start as usize + p] = counter;
                        let in_key = self.runs.len() as u32 > runs_start;
                        match self.runs.last_mut() {
                            Some(run) if in_key && run.node.0 == node => run.end = p as u32 + 1,
                            _ => self.runs.push(Run {
                                node: Sym(node),
                                start: p as u32,
                                end: p as u32 + 1,
                            }),
                        }
                    }
                    1 => {
                        if dotless.0 == r.len {
                            dotless.0 = p as u32;
                        }
                        dotless.1 = p as u32 + 1;
                    }
                    _ => {}
                }
            }
            if dotless.0 == r.len {
                dotless = (0, 0);
            }
            self.key_runs.push((runs_start, self.runs.len() as u32));
            self.dotless.push(dotless);
        }
    }

    /// v1 context edges: delete d -> b when d was invoked before b on b's key, the store reported a
    /// dot for d (with or without a clock), and b's context is a clock that covers that dot. Only in
    /// a v1 history.
    fn add_context_edges(&mut self, h: &History) {
        if h.format != Format::V1 {
            return;
        }
        let mut deletes: Vec<(WriteIdx, Sym, u64)> = Vec::new();
        let mut parents: Vec<WriteIdx> = Vec::new();
        for k in 0..self.keys.len() {
            deletes.clear();
            let r = self.keys[k];
            for i in r.start..r.start + r.len {
                let b = self.by_invoke[i as usize];
                let wb = h.write(b);
                if let Some(ctx) = wb.context
                    && !deletes.is_empty()
                {
                    let view = VersionView::of(&h.versions, ctx);
                    parents.clear();
                    parents.extend(self.observed_parents(b));
                    for &(d, node, counter) in &deletes {
                        // A clock covers (n, 1..=c): never a dot with counter 0.
                        if (1..=view.clock_of(node)).contains(&counter) && !parents.contains(&d) {
                            self.add_edge(d, b, EdgeKind::Context);
                        }
                    }
                }
                // The delete's dot as the store reported it, with or without a clock.
                if wb.delete
                    && let Some(dot) = wb.dot
                {
                    deletes.push((b, dot.0, dot.1));
                }
            }
        }
    }

    /// Clock edges: for each write b with a version, the ground-truth parents whose versions b's succeeds,
    /// and the first false dominance of each write (the store orders a before b, and a is not among
    /// b's ground-truth ancestors).
    fn add_clock(&mut self, h: &History) {
        let mut dominated = vec![false; h.writes.len()];
        let mut found: Vec<(WriteIdx, WriteIdx)> = Vec::new();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for k in 0..self.keys.len() {
            let key = KeyIdx(k as u32);
            let r = self.keys[k];
            for i in r.start..r.start + r.len {
                let b = self.by_invoke[i as usize];
                let Some(vb) = h.write(b).version else {
                    continue;
                };
                for a in self.ground_parents(b) {
                    if let Some(va) = h.write(a).version
                        && precedes(&h.versions, va, vb)
                    {
                        found.push((a, b));
                    }
                }
                if !self.reach.has_rows(key) {
                    continue;
                }
                ranges.clear();
                self.clock_candidates(h, key, vb, &mut ranges);
                let base = r.start as usize;
                let row = self.reach.row(self, key, b);
                let own = self.pos[b.0 as usize] as usize;
                for &(start, end) in &ranges {
                    row.for_each_clear_in(start as usize, end as usize, |p| {
                        let a = self.by_pos[base + p];
                        if p == own || dominated[a.0 as usize] {
                            return;
                        }
                        let va = h.write(a).version.expect("candidates have versions");
                        if precedes(&h.versions, va, vb) {
                            dominated[a.0 as usize] = true;
                            found.push((a, b));
                        }
                    });
                }
            }
        }
        for (a, b) in found {
            self.add_edge(a, b, EdgeKind::Clock);
        }
    }

    /// Ranges of positions (within the key) of the versions that could precede `vb`: dotted versions
    /// whose dot is in H(vb), and all dotless versions.
    fn clock_candidates(&self, h: &History, key: KeyIdx, vb: VerId, out: &mut Vec<(u32, u32)>) {
        let view = VersionView::of(&h.versions, vb);
        let base = self.keys[key.0 as usize].start as usize;
        let (rs, re) = self.key_runs[key.0 as usize];
        for run in &self.runs[rs as usize..re as usize] {
            let counters = &self.counters[base + run.start as usize..base + run.end as usize];
            let bound = view.prefix(run.node);
            let covered = counters.partition_point(|&c| c <= bound);
            out.push((run.start, run.start + covered as u32));
            if let Some((n, k)) = view.extra()
                && n == run.node
            {
                let lo = counters.partition_point(|&c| c < k);
                let hi = counters.partition_point(|&c| c <= k);
                out.push((run.start + lo as u32, run.start + hi as u32));
            }
        }
        let (ds, de) = self.dotless[key.0 as usize];
        out.push((ds, de));
    }
}
