//! Merkle trees for anti-entropy: one per partition, over (key, digest of the key's sibling set).
//!
//! Each tree has a fixed shape: `depth` levels below the root, `fanout` children per node, so
//! `fanout^depth` leaves. A key goes to the leaf given by the low bits of its ring hash; a leaf's hash
//! is the XOR of `h(key, digest)` over its keys, so that a write updates the tree in place (remove
//! the old entry, add the new) instead of rebuilding it, and an inner node's hash is a hash of its
//! children's. Two replicas compare trees top-down and descend only where hashes differ (see
//! `crate::core`'s anti-entropy messages), so an exchange between replicas that agree costs one
//! message, and one that differs in k keys costs O(depth + k) messages' worth of hashes.
//!
//! The tree is kept in memory and rebuilt from storage when the node starts.

use crate::ring::key_hash;
use std::collections::BTreeMap;

/// Default children per tree node.
pub const FANOUT_DEFAULT: u32 = 16;
/// Levels below the root: with the default fan-out, 256 leaves per partition.
pub const DEPTH: u32 = 2;
/// Largest fan-out accepted (a bound on the hashes one message carries).
pub const FANOUT_MAX: u32 = 64;

/// FNV-1a, 64-bit: a stable hash with no per-process seed.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.write(bytes);
    h.finish()
}

/// FNV-1a fed in pieces: the same value as [`fnv64`] of the concatenation, without building it.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Fnv64 {
    /// The empty hash.
    pub fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash of everything fed.
    pub fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

/// One partition's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    fanout: u32,
    /// `levels[0]` is the root (one hash); `levels[DEPTH]` the leaves.
    levels: Vec<Vec<u64>>,
    /// Per leaf, its keys and their digests.
    leaves: Vec<BTreeMap<Vec<u8>, u64>>,
}

fn entry_hash(key: &[u8], digest: u64) -> u64 {
    let mut h = Fnv64::new();
    h.write(key);
    h.write(&digest.to_le_bytes());
    // Mixed once more so that XOR-ing entries of similar keys does not cancel patterns.
    h.finish().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15
}

impl Tree {
    /// An empty tree.
    pub fn new(fanout: u32) -> Tree {
        assert!(
            (2..=FANOUT_MAX).contains(&fanout),
            "fan-out {fanout} out of range"
        );
        // Inner hashes of an empty tree are the hashes of empty children, exactly what updates
        // compute, so that a tree emptied again equals a fresh one.
        let mut levels: Vec<Vec<u64>> = vec![vec![0; fanout.pow(DEPTH) as usize]];
        for _ in 0..DEPTH {
            let below = levels.last().expect("one level at least");
            let above: Vec<u64> = below
                .chunks(fanout as usize)
                .map(|children| {
                    fnv64(
                        &children
                            .iter()
                            .flat_map(|c| c.to_le_bytes())
                            .collect::<Vec<u8>>(),
                    )
                })
                .collect();
            levels.push(above);
        }
        levels.reverse();
        Tree {
            fanout,
            levels,
            leaves: vec![BTreeMap::new(); fanout.pow(DEPTH) as usize],
        }
    }

    /// The leaf a key belongs to.
    pub fn leaf_of(&self, key: &[u8]) -> u32 {
        (key_hash(key) % self.leaves.len() as u64) as u32
    }

    /// Sets (or, with `None`, removes) a key's digest, updating the hashes on its path.
    pub fn update(&mut self, key: &[u8], digest: Option<u64>) {
        let leaf = self.leaf_of(key) as usize;
        let mut h = self.levels[DEPTH as usize][leaf];
        let old = match digest {
            Some(d) => self.leaves[leaf].insert(key.to_vec(), d),
            None => self.leaves[leaf].remove(key),
        };
        if old == digest {
            return;
        }
        if let Some(o) = old {
            h ^= entry_hash(key, o);
        }
        if let Some(d) = digest {
            h ^= entry_hash(key, d);
        }
        self.levels[DEPTH as usize][leaf] = h;
        let mut index = leaf;
        for level in (0..DEPTH as usize).rev() {
            index /= self.fanout as usize;
            let start = index * self.fanout as usize;
            let children = &self.levels[level + 1][start..start + self.fanout as usize];
            let bytes: Vec<u8> = children.iter().flat_map(|c| c.to_le_bytes()).collect();
            self.levels[level][index] = fnv64(&bytes);
        }
    }

    /// The root hash: equal trees (almost surely) hold equal (key, digest) sets.
    pub fn root(&self) -> u64 {
        self.levels[0][0]
    }

    /// The hash of node `index` at `level` (0 = root), if it exists.
    pub fn hash(&self, level: u32, index: u32) -> Option<u64> {
        self.levels
            .get(level as usize)?
            .get(index as usize)
            .copied()
    }

    /// The children of node `index` at `level`, as (index, hash) at `level + 1`.
    pub fn children(&self, level: u32, index: u32) -> Vec<(u32, u64)> {
        let start = index * self.fanout;
        (start..start + self.fanout)
            .filter_map(|i| Some((i, self.hash(level + 1, i)?)))
            .collect()
    }

    /// The (key, digest) entries of a leaf.
    pub fn leaf_entries(&self, leaf: u32) -> Vec<(Vec<u8>, u64)> {
        self.leaves
            .get(leaf as usize)
            .map(|m| m.iter().map(|(k, d)| (k.clone(), *d)).collect())
            .unwrap_or_default()
    }

    /// Every key in the tree.
    pub fn keys(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        self.leaves.iter().flat_map(|leaf| leaf.keys().cloned())
    }

    /// The fan-out.
    pub fn fanout(&self) -> u32 {
        self.fanout
    }

    /// Keys in the tree.
    pub fn len(&self) -> usize {
        self.leaves.iter().map(BTreeMap::len).sum()
    }

    /// Whether the tree holds no key.
    pub fn is_empty(&self) -> bool {
        self.leaves.iter().all(BTreeMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn equal_contents_equal_roots_and_a_difference_shows_on_its_path() {
        let mut a = Tree::new(4);
        let mut b = Tree::new(4);
        for i in 0..100u32 {
            a.update(format!("k{i}").as_bytes(), Some(i as u64));
        }
        for i in (0..100u32).rev() {
            b.update(format!("k{i}").as_bytes(), Some(i as u64));
        }
        assert_eq!(a.root(), b.root(), "order of updates does not matter");
        b.update(b"k7", Some(999));
        assert_ne!(a.root(), b.root());
        let leaf = a.leaf_of(b"k7");
        assert_ne!(a.hash(DEPTH, leaf), b.hash(DEPTH, leaf));
        let other = (leaf + 1) % 16;
        assert_eq!(
            a.hash(DEPTH, other),
            b.hash(DEPTH, other),
            "only k7's path differs"
        );
        b.update(b"k7", Some(7));
        assert_eq!(a, b, "updating back restores the tree");
        let mut c = Tree::new(4);
        c.update(b"x", Some(1));
        c.update(b"x", None);
        assert_eq!(c, Tree::new(4), "a tree emptied again equals a fresh one");
    }

    proptest! {
        /// Incremental updates give the same tree as inserting the final contents afresh.
        #[test]
        fn incremental_equals_rebuilt(ops in proptest::collection::vec((0..30u8, proptest::option::of(0..5u64)), 0..200)) {
            let mut incremental = Tree::new(FANOUT_DEFAULT);
            let mut model = BTreeMap::new();
            for (k, d) in ops {
                let key = vec![b'k', k];
                incremental.update(&key, d);
                match d {
                    Some(d) => { model.insert(key, d); }
                    None => { model.remove(&key); }
                }
            }
            let mut rebuilt = Tree::new(FANOUT_DEFAULT);
            for (k, d) in &model {
                rebuilt.update(k, Some(*d));
            }
            prop_assert_eq!(incremental.root(), rebuilt.root());
            prop_assert_eq!(incremental.len(), model.len());
        }
    }
}
