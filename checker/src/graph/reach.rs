//! Observed-ancestor bitsets, per key: bit `p` of write b's row is set when the write at position `p`
//! of b's key is a ground-truth ancestor of b (observed or tombstone edges, transitively).
//!
//! Rows are built in invoke order, each the union of its parents' rows and bits: O(edges x
//! writes/64) per key, in one pass, as every parent comes before its child. Where an `observed`
//! names a later write ([`Graph::backward_edges`]) that order is not a topological one, and cycles
//! may be: the rows are built per strongly connected component instead, the components in
//! topological order (Tarjan's), every member of a component getting the union of the rows and
//! bits of the component's outside parents and, in a cycle, every member's bit (each is an
//! ancestor of each, itself included). Still one pass: a pass repeated until nothing changed took
//! 40 s on a chain of 16,000 writes each observing the next (a review). Every question the checks ask about causality ("did b's
//! writer see a?", "does this read's sibling descend from that write?") is then one bit test, and "which
//! of these versions did b not see?" is a word-wise mask. Memory is the square of a key's writes over
//! eight bytes, hence the bounds in the module above.

use crate::history::{History, KeyIdx, WriteIdx};
use petgraph::algo::tarjan_scc;
use petgraph::visit::EdgeFiltered;

use super::{DENSE_WRITES_PER_KEY_MAX, Graph, REACH_BYTES_MAX};

/// Marks a key with no rows.
const NO_ROWS: usize = usize::MAX;

/// A row of bits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bits<'a>(pub &'a [u64]);

impl Bits<'_> {
    pub(crate) fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    /// Calls `f` with every position in `start..end` whose bit is clear, word by word.
    pub(crate) fn for_each_clear_in(&self, start: usize, end: usize, mut f: impl FnMut(usize)) {
        let mut i = start;
        while i < end {
            let word = i / 64;
            let lo = i % 64;
            let hi = (end - word * 64).min(64);
            let mask = if hi == 64 {
                !0u64 << lo
            } else {
                (!0u64 << lo) & ((1u64 << hi) - 1)
            };
            let mut clear = !self.0[word] & mask;
            while clear != 0 {
                let bit = clear.trailing_zeros() as usize;
                f(word * 64 + bit);
                clear &= clear - 1;
            }
            i = (word + 1) * 64;
        }
    }

    /// Calls `f` with every position whose bit is set.
    pub(crate) fn for_each_set(&self, mut f: impl FnMut(usize)) {
        for (word, &bits) in self.0.iter().enumerate() {
            let mut set = bits;
            while set != 0 {
                f(word * 64 + set.trailing_zeros() as usize);
                set &= set - 1;
            }
        }
    }
}

/// The number of u64 words in a row of a key with `len` writes.
pub(crate) fn words_per_row(len: usize) -> usize {
    len.div_ceil(64)
}

/// All keys' rows.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    words: Vec<u64>,
    /// Per key: the offset of its rows in `words`, or NO_ROWS (too many writes, or past the
    /// memory bound: each check names the keys it could not judge so).
    offsets: Vec<usize>,
}

impl Reach {
    pub(crate) fn build(graph: &Graph) -> Reach {
        let mut reach = Reach {
            words: Vec::new(),
            offsets: Vec::with_capacity(graph.keys.len()),
        };
        let total_bytes: usize = graph
            .keys
            .iter()
            .filter(|r| (r.len as usize) <= DENSE_WRITES_PER_KEY_MAX)
            .map(|r| r.len as usize * words_per_row(r.len as usize) * 8)
            .sum();
        reach
            .words
            .reserve_exact(total_bytes.min(REACH_BYTES_MAX) / 8);
        for (k, r) in graph.keys.iter().enumerate() {
            let len = r.len as usize;
            let wpr = words_per_row(len);
            let bytes = (reach.words.len() + len * wpr) * 8;
            if len > DENSE_WRITES_PER_KEY_MAX || bytes > REACH_BYTES_MAX {
                reach.offsets.push(NO_ROWS);
                continue;
            }
            let base = reach.words.len();
            reach.offsets.push(base);
            reach.words.resize(base + len * wpr, 0);
            if graph.backward_edges {
                continue; // Filled below, by components.
            }
            for &b in graph.key_writes(KeyIdx(k as u32)) {
                let pb = graph.pos[b.0 as usize] as usize;
                for a in graph.ground_parents(b) {
                    let pa = graph.pos[a.0 as usize] as usize;
                    debug_assert!(a < b, "without backward edges, parents come first");
                    let (row_a, row_b) =
                        two_rows(&mut reach.words[base..base + len * wpr], wpr, pa, pb);
                    for (x, y) in row_b.iter_mut().zip(row_a.iter()) {
                        *x |= *y;
                    }
                    row_b[pa / 64] |= 1 << (pa % 64);
                }
            }
        }
        if graph.backward_edges {
            reach.fill_by_components(graph);
        }
        reach
    }

    /// The rows where some ground-truth edge goes backwards in invoke order (see the module docs).
    fn fill_by_components(&mut self, graph: &Graph) {
        let writes = graph.write_count();
        let mut key_of = vec![0u32; writes];
        for k in 0..graph.keys.len() {
            for &w in graph.key_writes(KeyIdx(k as u32)) {
                key_of[w.0 as usize] = k as u32;
            }
        }
        let ground = EdgeFiltered::from_fn(&graph.g, |e| e.weight().is_ground_truth());
        // Tarjan's components come in reverse topological order: sinks first.
        let components = tarjan_scc(&ground);
        let mut component_of = vec![0usize; writes];
        for (c, members) in components.iter().enumerate() {
            for &n in members {
                component_of[n.index()] = c;
            }
        }
        let mut row = Vec::new();
        for (c, members) in components.iter().enumerate().rev() {
            let key = key_of[members[0].index()] as usize;
            let base = self.offsets[key];
            if base == NO_ROWS {
                continue;
            }
            let wpr = words_per_row(graph.keys[key].len as usize);
            row.clear();
            row.resize(wpr, 0u64);
            for &m in members {
                for a in graph.ground_parents(Graph::write(m)) {
                    if component_of[a.0 as usize] == c {
                        continue; // A member: its bit is set below.
                    }
                    let pa = graph.pos[a.0 as usize] as usize;
                    let parent = &self.words[base + pa * wpr..base + (pa + 1) * wpr];
                    for (x, y) in row.iter_mut().zip(parent) {
                        *x |= *y;
                    }
                    row[pa / 64] |= 1 << (pa % 64);
                }
            }
            if members.len() > 1 {
                for &m in members {
                    let pm = graph.pos[m.index()] as usize;
                    row[pm / 64] |= 1 << (pm % 64);
                }
            }
            for &m in members {
                let pm = graph.pos[m.index()] as usize;
                self.words[base + pm * wpr..base + (pm + 1) * wpr].copy_from_slice(&row);
            }
        }
    }

    pub(crate) fn has_rows(&self, k: KeyIdx) -> bool {
        self.offsets[k.0 as usize] != NO_ROWS
    }

    /// The row of write `w` (its key must have rows).
    pub(crate) fn row(&self, graph: &Graph, key: KeyIdx, w: WriteIdx) -> Bits<'_> {
        let base = self.offsets[key.0 as usize];
        assert_ne!(base, NO_ROWS, "the key has rows");
        let wpr = words_per_row(graph.keys[key.0 as usize].len as usize);
        let p = graph.pos[w.0 as usize] as usize;
        Bits(&self.words[base + p * wpr..base + (p + 1) * wpr])
    }

    /// Whether `a` is a ground-truth ancestor of `b` (same key); `None` when the key has no rows.
    pub(crate) fn reaches(
        &self,
        graph: &Graph,
        h: &History,
        a: WriteIdx,
        b: WriteIdx,
    ) -> Option<bool> {
        let key = h.write(b).key;
        if h.write(a).key != key {
            return Some(false);
        }
        if !self.has_rows(key) {
            return None;
        }
        Some(
            self.row(graph, key, b)
                .get(graph.pos[a.0 as usize] as usize),
        )
    }
}

/// Borrows row `a` shared and row `b` mutably (a != b).
fn two_rows(words: &mut [u64], wpr: usize, a: usize, b: usize) -> (&[u64], &mut [u64]) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = words.split_at_mut(b * wpr);
        (&lo[a * wpr..(a + 1) * wpr], &mut hi[..wpr])
    } else {
        let (lo, hi) = words.split_at_mut(a * wpr);
        (&hi[..wpr], &mut lo[b * wpr..(b + 1) * wpr])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_bits_in_a_range() {
        let words = [0b1011u64, !0, 0];
        let bits = Bits(&words);
        let mut seen = Vec::new();
        bits.for_each_clear_in(0, 6, |i| seen.push(i));
        assert_eq!(seen, vec![2, 4, 5]);
        seen.clear();
        bits.for_each_clear_in(60, 131, |i| seen.push(i));
        let expected: Vec<usize> = (60..64).chain(128..131).collect();
        assert_eq!(seen, expected);
        seen.clear();
        bits.for_each_set(|i| seen.push(i));
        assert_eq!(seen.len(), 3 + 64);
    }
}
