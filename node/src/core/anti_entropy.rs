//! Anti-entropy (Dynamo §4.7, [`crate::merkle`]): one Merkle tree per partition this node holds
//! keys of, kept up to date on every write, compared with each co-replica in turn.
//!
//! An exchange starts with the roots of the partitions two replicas share; the two descend in
//! turns, only where hashes differ, and at the leaves swap their (key, digest) lists and send each
//! other the keys whose digests differ, to merge. Only partitions both replicate are compared.
//! Every message is bounded ([`AE_ENTRIES_PER_MESSAGE_MAX`] and
//! [`AE_ENTRIES_BYTES_PER_MESSAGE_MAX`] of entries, [`AE_REPAIRS_PER_MESSAGE_MAX`] and
//! [`AE_REPAIR_BYTES_PER_MESSAGE_MAX`] of repairs). Where the leaves that differ hold more keys
//! than one message carries, the entries are a slice of them in [`AePosition`] order, and the
//! message says which ([`Slice`]): the receiver compares only its keys inside it (a key past the
//! slice is not missing, only not carried), and the next exchange of the partition with that
//! peer starts after it, so that a big partition is compared a slice at a time, all of it in
//! turn, with each co-replica. Repairs past their bounds wait until the slices come round again;
//! where everything fits, until the next exchange. (Before, a message said nothing of where its entries stopped:
//! the receiver took every key past them for missing and spent its repairs on keys the other
//! held, three in four of them in the test
//! `anti_entropy_of_a_big_partition_sends_no_key_the_other_holds`.)

use super::{
    AE_ENTRIES_BYTES_PER_MESSAGE_MAX, AE_ENTRIES_PER_MESSAGE_MAX, AE_ENTRY_OVERHEAD_BYTES,
    AE_REPAIR_BYTES_PER_MESSAGE_MAX, AE_REPAIRS_PER_MESSAGE_MAX, AE_SLICE_STARTS_MAX, Core, others,
};
use crate::config::NodeConfig;
use crate::merkle::{DEPTH, Tree};
use crate::ring::{NodeId, Ring};
use crate::store::keyspace::ReadState;
use crate::version::KeyVersions;
use crate::wire::{AePosition, PeerMessage};
use std::collections::BTreeMap;

impl Core {
    /// Each co-replica under `ring` and the partitions this node shares with it.
    pub(super) fn ae_peers(ring: &Ring, config: &NodeConfig) -> Vec<(NodeId, Vec<u32>)> {
        let mut shared: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for p in 0..ring.partition_count() {
            let replicas = ring.partition_preference_list(p, config.n);
            if replicas.contains(&config.id) {
                for peer in others(&replicas, &config.id) {
                    shared.entry(peer).or_default().push(p);
                }
            }
        }
        shared.into_iter().collect()
    }

    /// Starts one anti-entropy round: the next reachable co-replica gets this node's root hash of
    /// every partition they share (one small message each; equal roots end there).
    pub(super) fn start_exchange(&mut self) {
        for _ in 0..self.ae_peers.len() {
            let (peer, partitions) = self.ae_peers[self.ae_cursor % self.ae_peers.len()].clone();
            self.ae_cursor = (self.ae_cursor + 1) % self.ae_peers.len();
            if self.unreachable.contains(&peer) {
                continue;
            }
            for partition in partitions {
                let root = self.tree(partition).root();
                self.stats.ae_exchanges += 1;
                let message = PeerMessage::AeHashes {
                    partition,
                    level: 0,
                    nodes: vec![(0, root)],
                };
                self.send(peer.clone(), message);
            }
            return;
        }
    }

    /// This node's tree of `partition` (an empty one if it holds no key of it).
    fn tree(&self, partition: u32) -> &Tree {
        self.trees.get(&partition).unwrap_or(&self.empty_tree)
    }

    /// Whether `partition` is one this node replicates (anti-entropy ignores the rest).
    pub(super) fn replicates(&self, partition: u32) -> bool {
        partition < self.ring.partition_count()
            && self
                .ring
                .partition_preference_list(partition, self.config.n)
                .contains(&self.config.id)
    }

    pub(super) fn on_ae_hashes(
        &mut self,
        from: &NodeId,
        partition: u32,
        level: u32,
        nodes: &[(u32, u64)],
    ) {
        if !self.config.anti_entropy_on() || !self.replicates(partition) || level > DEPTH {
            return;
        }
        let fanout = self.config.merkle_fanout;
        let tree = self.tree(partition);
        let mut differing: Vec<u32> = nodes
            .iter()
            .take(fanout.pow(DEPTH) as usize)
            .filter(|(i, h)| tree.hash(level, *i).is_some_and(|mine| mine != *h))
            .map(|(i, _)| *i)
            .collect();
        // Each node once: a peer's list may name one many times, and each name would cost its
        // children (or its keys) again.
        differing.sort_unstable();
        differing.dedup();
        if differing.is_empty() {
            return;
        }
        let message = if level == DEPTH {
            let at = (from.clone(), partition);
            let start = self.ae_slice_starts.get(&at).cloned();
            let mut sliced = bounded_slice(
                tree,
                &differing,
                Slice {
                    from: start.clone(),
                    through: None,
                },
            );
            if sliced.0.is_empty() && start.is_some() {
                // Nothing here past the start: begin again from the first key.
                sliced = bounded_slice(tree, &differing, Slice::default());
            }
            let (entries, covered) = sliced;
            match &covered.through {
                Some(last) => {
                    // The smallest position after the last one carried: its key plus a zero byte.
                    let mut key = last.key.clone();
                    key.push(0);
                    let next = AePosition {
                        leaf: last.leaf,
                        key,
                    };
                    if self.ae_slice_starts.len() >= AE_SLICE_STARTS_MAX
                        && !self.ae_slice_starts.contains_key(&at)
                    {
                        self.ae_slice_starts.clear();
                    }
                    self.ae_slice_starts.insert(at, next);
                }
                None => {
                    self.ae_slice_starts.remove(&at);
                }
            }
            PeerMessage::AeKeys {
                partition,
                leaves: differing,
                entries,
                from: covered.from,
                through: covered.through,
                reply: true,
            }
        } else {
            let nodes = differing
                .iter()
                .flat_map(|&i| tree.children(level, i))
                .collect();
            PeerMessage::AeHashes {
                partition,
                level: level + 1,
                nodes,
            }
        };
        self.send(from.clone(), message);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_ae_keys(
        &mut self,
        from: &NodeId,
        partition: u32,
        leaves: &[u32],
        entries: &[(Vec<u8>, u64)],
        slice: Slice,
        reply: bool,
        store: &dyn ReadState,
    ) {
        if !self.config.anti_entropy_on() || !self.replicates(partition) {
            return;
        }
        // No position this node makes has a longer key (its keys, or one plus a zero byte):
        // echoed back whole, a peer's key of megabytes would make the reply too large to send.
        let cap = |at: Option<AePosition>| {
            at.map(|mut at| {
                at.key.truncate(crate::wire::KEY_BYTES_MAX + 1);
                at
            })
        };
        let slice = Slice {
            from: cap(slice.from),
            through: cap(slice.through),
        };
        let tree = self.tree(partition);
        let leaf_count = self.config.merkle_fanout.pow(DEPTH);
        let mut leaves: Vec<u32> = leaves
            .iter()
            .copied()
            .filter(|&l| l < leaf_count)
            .take(leaf_count as usize)
            .collect();
        // Each leaf once: a leaf named 256 times made its keys' states go back 256 times.
        leaves.sort_unstable();
        leaves.dedup();
        let theirs: BTreeMap<&[u8], u64> =
            entries.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
        // Only the keys of the slice the entries cover: one past it is not missing there.
        let mine: Vec<(Vec<u8>, u64)> = leaves
            .iter()
            .flat_map(|&leaf| {
                tree.leaf_entries(leaf)
                    .into_iter()
                    .map(move |(key, digest)| (AePosition { leaf, key }, digest))
            })
            .filter(|(at, _)| slice.contains(at))
            .map(|(at, digest)| (at.key, digest))
            .collect();
        let mut sent = 0;
        let mut sent_bytes = 0;
        for (key, digest) in &mine {
            if theirs.get(key.as_slice()) == Some(digest) {
                continue;
            }
            if sent >= AE_REPAIRS_PER_MESSAGE_MAX || sent_bytes >= AE_REPAIR_BYTES_PER_MESSAGE_MAX {
                break;
            }
            match self.read(key, store) {
                Ok(state) => {
                    sent += 1;
                    sent_bytes += state.encoded_bytes_bound();
                    let message = PeerMessage::AeRepair {
                        key: key.clone(),
                        state,
                    };
                    self.send(from.clone(), message);
                }
                Err(e) => tracing::error!(error = %e, "cannot read a key for anti-entropy"),
            }
        }
        if reply {
            let (entries, covered) = bounded_slice(self.tree(partition), &leaves, slice);
            let message = PeerMessage::AeKeys {
                partition,
                leaves,
                entries,
                from: covered.from,
                through: covered.through,
                reply: false,
            };
            self.send(from.clone(), message);
        }
    }

    /// Keeps the Merkle tree of the key's partition in step with a new state of the key.
    pub(super) fn update_tree(&mut self, key: &[u8], state: &KeyVersions) {
        let partition = self.ring.partition_of(key);
        let fanout = self.config.merkle_fanout;
        let digest = state.digest();
        self.trees
            .entry(partition)
            .or_insert_with(|| Tree::new(fanout))
            .update(key, Some(digest));
    }
}

/// The part of a partition's keys one `AeKeys` carries ([`PeerMessage::AeKeys`]): from `from`
/// through `through` in [`AePosition`] order, both included; `None`, from the first or through
/// the last key of the leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slice {
    pub(crate) from: Option<AePosition>,
    pub(crate) through: Option<AePosition>,
}

impl Slice {
    fn contains(&self, at: &AePosition) -> bool {
        self.from.as_ref().is_none_or(|from| from <= at)
            && self.through.as_ref().is_none_or(|through| at <= through)
    }
}

/// The (key, digest) entries of `leaves` (ascending, each once) inside `slice`, as many as one
/// message carries (at most [`AE_ENTRIES_PER_MESSAGE_MAX`] of them, of at most
/// [`AE_ENTRIES_BYTES_PER_MESSAGE_MAX`] together), and the slice they cover: `slice` itself when
/// they all fit, else cut after the last one carried.
fn bounded_slice(tree: &Tree, leaves: &[u32], slice: Slice) -> (Vec<(Vec<u8>, u64)>, Slice) {
    debug_assert!(leaves.windows(2).all(|w| w[0] < w[1]), "leaves ascend");
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut last: Option<AePosition> = None;
    for &leaf in leaves {
        for (key, digest) in tree.leaf_entries(leaf) {
            let at = AePosition { leaf, key };
            if !slice.contains(&at) {
                continue;
            }
            let cost = at.key.len() + AE_ENTRY_OVERHEAD_BYTES;
            if cost > AE_ENTRIES_BYTES_PER_MESSAGE_MAX {
                // No message could carry it (no client key is this long): skipping it keeps the
                // slices moving past it.
                continue;
            }
            if entries.len() == AE_ENTRIES_PER_MESSAGE_MAX
                || bytes + cost > AE_ENTRIES_BYTES_PER_MESSAGE_MAX
            {
                debug_assert!(last.is_some(), "a cut carries at least one entry");
                let covered = Slice {
                    from: slice.from,
                    through: last,
                };
                return (entries, covered);
            }
            bytes += cost;
            entries.push((at.key.clone(), digest));
            last = Some(at);
        }
    }
    (entries, slice)
}
