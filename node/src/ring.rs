//! The partitioning ring: which nodes store a key.
//!
//! This module owns the mapping from keys to partitions to nodes, the preference list of a key, and
//! how that mapping changes when a node joins or leaves. It is plain data with no I/O: membership
//! (later, gossip) decides *when* the ring changes, this module decides *how*.
//!
//! # The scheme: Dynamo's strategy 3
//!
//! The 64-bit hash space is cut into `Q` equal ranges, the partitions (Dynamo paper, section 6.2,
//! strategy 3: "Q/S tokens per node, equal-sized partitions"). A key's partition is
//! `(key_hash(key) * Q) >> 64`, and each partition has exactly one owner. The paper picked this
//! strategy because it decouples partitioning from placement: partition boundaries never move, so a
//! partition is the unit of a Merkle tree (anti-entropy), of handoff (join and leave move whole
//! partitions) and of bookkeeping, and the placement is a small table of `Q` owners that is cheap to
//! gossip and compare.
//!
//! The hash is MD5, as in the paper, truncated to its first 8 bytes read big-endian. It has no
//! per-process seed, so every node, every run and every machine agree on where a key lives, which
//! both correctness (all nodes compute the same preference list) and determinism (DESIGN.md,
//! "Determinism") need.
//!
//! # Assignment
//!
//! A member of weight `w` has the fair share `Q * w / W` partitions, `W` being the total weight.
//! Every member always owns either the floor or the ceiling of its fair share, which is the same as
//! "within 1 of it" (strictly). All of this is computed in exact integer arithmetic, so no rounding
//! of floats can make two nodes disagree.
//!
//! - **New ring.** The counts are the largest-remainder rounding of the shares (ties to the smaller
//!   node id). The partitions are then dealt out by stride scheduling: partition `p` goes to the
//!   node with the smallest "virtual finish time" `(owned + 1) / target`. This interleaves the
//!   nodes (`n1 n2 n3 n1 n2 n3 ...` for equal weights), so consecutive partitions tend to have
//!   distinct owners. That matters because a preference list is the next N *distinct* owners
//!   clockwise: with striped owners it is just the next N partitions, and the replicas of one
//!   node's partitions are spread over all the others, so when a node fails its load spreads too.
//! - **Join, leave, reweight.** First the new counts: each member keeps as many of its partitions
//!   as its new quota allows (its count clamped into `[floor, ceil]` of its new share), then counts
//!   are raised or lowered one at a time, within the quotas, until they sum to `Q` (the joining
//!   node is raised first; nodes already giving partitions away are lowered first). This minimises
//!   the number of partitions that change owner, which matters because every moved partition is
//!   data handed over between nodes while requests continue. Then which partitions: the receivers take, one
//!   partition at a time, the partition (free, i.e. the leaver's, or held by a node above its new
//!   count) that is farthest around the ring from the receiver's own partitions, preferring one that
//!   breaks a run of equal owners. Farthest-first keeps each node's partitions spread out and never
//!   adjacent to each other while there is any other choice.
//!
//! So on a join only partitions moving onto the new node change owner, and on a leave only the
//! leaver's partitions change owner, *whenever a balanced assignment allows that*. It does not
//! always: with few partitions per node the quotas can pin everyone. Example (a unit test): Q = 16
//! and eleven nodes of weights 1,1,3,4,1,1,4,4,1,4,1; when a weight-4 node leaves, its 2 partitions
//! must go to the three other weight-4 nodes, whose new share is 3.05 and who own 2 each, so one
//! more partition has to move between the remaining nodes. The balance invariant wins, and the
//! number of partitions moved is still the least possible; the property tests check both.
//!
//! # Preference lists
//!
//! The preference list of a key is the first N distinct owners met walking clockwise from the key's
//! partition; `fallbacks` continues the walk over all members (the sloppy quorum's order). With
//! more members than partitions, or tiny shares, a member can own no partition at all; such members
//! are appended to the walk in node-id order, so that a key always gets `min(N, members)` distinct
//! nodes.
//!
//! # What it does not model
//!
//! No racks or zones: distinct nodes are assumed to fail independently. The `version` is a counter
//! bumped on every change, not a vector: resolving two concurrent changes made from the same
//! version is the membership layer's job.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A node's name, e.g. `"n1"`.
pub type NodeId = smol_str::SmolStr;

/// The number of partitions `Q` when none is configured (`--partitions`).
pub const PARTITION_COUNT_DEFAULT: u32 = 64;

/// The largest `Q` a ring accepts. Rebalancing costs `O(Q^2)` steps and the owner table is gossiped
/// whole, so a bound keeps both small; the paper's deployments used a few thousand partitions at most.
pub const PARTITION_COUNT_MAX: u32 = 4096;

/// The version of a freshly built ring. Versions start at 1 so that 0 can mean "no ring known".
pub const VERSION_FIRST: u64 = 1;

/// Largest weight a member may have (a bound on what a joining node can claim).
pub const WEIGHT_MAX: u32 = 64;

/// Most members a ring may have: a bound on what a ring gossiped by a peer can make a node hold
/// and link to (each member gets a peer link). Riak and Cassandra clusters of this size are
/// already large.
pub const MEMBERS_MAX: usize = 128;

/// The highest ring version: every change adds one, so a real cluster never nears it (a change a
/// second for 285 million years). A ring with a higher version is invalid, and a change at this
/// version is refused ([`RingError::VersionExhausted`]) instead of overflowing; a peer cannot brick
/// the ring with a version of `u64::MAX`.
pub const VERSION_MAX: u64 = 1 << 53;

/// The stable hash of a key: the first 8 bytes of its MD5 digest, big-endian.
///
/// It has no seed, so it is the same in every process and on every machine.
pub fn key_hash(key: &[u8]) -> u64 {
    let digest = Md5::digest(key);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(prefix)
}

/// Why a ring is not valid. A ring built by this module is always valid; one decoded from a peer
/// must be checked with [`Ring::validate`] before it is used, since nothing a peer sends may panic
/// the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `Q` is 0 or above [`PARTITION_COUNT_MAX`].
    #[error("partition count {partition_count} is not in 1..={PARTITION_COUNT_MAX}")]
    PartitionCountOutOfRange { partition_count: u32 },
    /// The ring has no members.
    #[error("the ring has no members")]
    NoMembers,
    /// A member has weight 0.
    #[error("member {node} has weight 0")]
    WeightZero { node: NodeId },
    /// The version is 0, which no ring has.
    #[error("the ring's version is 0")]
    VersionZero,
    /// The owner table does not have one entry per partition.
    #[error("{owners_len} owners for {partition_count} partitions")]
    OwnersLength {
        partition_count: u32,
        owners_len: usize,
    },
    /// A partition is owned by a node that is not a member.
    #[error("partition {partition} is owned by {node}, not a member")]
    OwnerNotMember { partition: u32, node: NodeId },
    /// More members than [`MEMBERS_MAX`].
    #[error("{members} members exceed {MEMBERS_MAX}")]
    TooManyMembers { members: usize },
    /// A member's weight is above [`WEIGHT_MAX`].
    #[error("member {node} has weight {weight}, above {WEIGHT_MAX}")]
    WeightTooHigh { node: NodeId, weight: u32 },
    /// A member's name is not a valid node name.
    #[error("{node:?} is not a valid node name")]
    BadNodeId { node: NodeId },
    /// The version is above [`VERSION_MAX`], or a change would pass it.
    #[error("ring version {version} is at or past the limit {VERSION_MAX}")]
    VersionExhausted { version: u64 },
    /// The last member cannot be removed.
    #[error("{node} is the ring's only member and cannot be removed")]
    LastMember { node: NodeId },
    /// A member owns a number of partitions outside the floor and ceiling of its fair share.
    #[error(
        "{node} owns {partitions} partitions, outside its fair share's bounds \
         {partitions_min}..={partitions_max}"
    )]
    ShareOutOfBounds {
        node: NodeId,
        partitions: u32,
        partitions_min: u32,
        partitions_max: u32,
    },
}

/// The floor and ceiling of a member's fair share `Q * w / W`, and the remainder of that division
/// (how far above the floor the share is, in units of `1 / W`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quota {
    partitions_min: u32,
    partitions_max: u32,
    remainder: u64,
}

fn quota(partition_count: u32, weight: u32, weight_total: u64) -> Quota {
    debug_assert!(weight > 0 && u64::from(weight) <= weight_total);
    let scaled = u128::from(partition_count) * u128::from(weight);
    let total = u128::from(weight_total);
    // weight <= weight_total, so the quotient is at most partition_count and fits in u32; the
    // remainder is below weight_total and fits in u64.
    let partitions_min = (scaled / total) as u32;
    let remainder = (scaled % total) as u64;
    let partitions_max = partitions_min + u32::from(remainder != 0);
    Quota {
        partitions_min,
        partitions_max,
        remainder,
    }
}

fn weight_total(members: &BTreeMap<NodeId, u32>) -> u64 {
    members.values().map(|&weight| u64::from(weight)).sum()
}

/// One member during a (re)assignment: its quota, how many partitions it holds now, how many it
/// will hold.
struct Slot<'a> {
    node: &'a str,
    quota: Quota,
    count: u32,
    target: u32,
}

/// The placement of `Q` equal partitions on weighted members, with a version that is bumped on
/// every change. See the module documentation for the algorithm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    partition_count: u32,
    /// `owners[p]` owns partition `p`.
    owners: Vec<NodeId>,
    /// Every member and its weight.
    members: BTreeMap<NodeId, u32>,
    version: u64,
}

impl Ring {
    /// A ring of `partition_count` partitions over `members` (node and weight), at [`VERSION_FIRST`].
    ///
    /// # Panics
    ///
    /// If `partition_count` is 0 or above [`PARTITION_COUNT_MAX`], `members` is empty, or a weight
    /// is 0.
    pub fn new(partition_count: u32, members: &BTreeMap<NodeId, u32>) -> Ring {
        assert!(
            (1..=PARTITION_COUNT_MAX).contains(&partition_count),
            "partition count {partition_count} is not in 1..={PARTITION_COUNT_MAX}"
        );
        assert!(!members.is_empty(), "a ring needs at least one member");
        for (node, &weight) in members {
            assert!(weight > 0, "member {node} has weight 0");
        }
        let slots = targets(partition_count, members, &[], None);
        let owners = stripe(partition_count, &slots);
        let ring = Ring {
            partition_count,
            owners,
            members: members.clone(),
            version: VERSION_FIRST,
        };
        if cfg!(debug_assertions) {
            ring.check_invariants();
        }
        ring
    }

    /// The number of partitions `Q`.
    pub fn partition_count(&self) -> u32 {
        self.partition_count
    }

    /// The partition of `key`.
    pub fn partition_of(&self, key: &[u8]) -> u32 {
        self.partition_of_hash(key_hash(key))
    }

    /// The partition that contains `hash`: the `Q` partitions are equal ranges of the 64-bit space,
    /// in order, so this is `floor(hash * Q / 2^64)`.
    pub fn partition_of_hash(&self, hash: u64) -> u32 {
        let partition = (u128::from(hash) * u128::from(self.partition_count)) >> 64;
        // hash < 2^64, so the product is below Q * 2^64 and the partition below Q.
        partition as u32
    }

    /// The owner of `partition`.
    ///
    /// # Panics
    ///
    /// If `partition` is not below the partition count.
    pub fn owner(&self, partition: u32) -> &NodeId {
        assert!(
            partition < self.partition_count,
            "partition {partition} out of range 0..{}",
            self.partition_count
        );
        &self.owners[partition as usize]
    }

    /// The owner of every partition, indexed by partition.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// Every member and its weight.
    pub fn members(&self) -> &BTreeMap<NodeId, u32> {
        &self.members
    }

    /// Whether `node` is a member.
    pub fn contains(&self, node: &str) -> bool {
        self.members.contains_key(node)
    }

    /// The ring's version: [`VERSION_FIRST`] when built, one more after every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The nodes that store `key`: the first `min(n, members)` distinct owners walking clockwise
    /// from the key's partition (the coordinator first).
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        self.partition_preference_list(self.partition_of(key), n)
    }

    /// The first `min(n, members)` distinct owners walking clockwise from `partition`. Members that
    /// own no partition (possible when shares are below 1) come last, in node-id order.
    ///
    /// # Panics
    ///
    /// If `partition` is not below the partition count.
    pub fn partition_preference_list(&self, partition: u32, n: usize) -> Vec<NodeId> {
        assert!(
            partition < self.partition_count,
            "partition {partition} out of range 0..{}",
            self.partition_count
        );
        let len = n.min(self.members.len());
        let mut list: Vec<NodeId> = Vec::with_capacity(len);
        let q = self.partition_count as usize;
        for step in 0..q {
            if list.len() == len {
                break;
            }
            let owner = &self.owners[(partition as usize + step) % q];
            if !list.contains(owner) {
                list.push(owner.clone());
            }
        }
        for node in self.members.keys() {
            if list.len() == len {
                break;
            }
            if !list.contains(node) {
                list.push(node.clone());
            }
        }
        debug_assert_eq!(list.len(), len);
        list
    }

    /// Every member, in the order a sloppy quorum tries them for `key`: the preference list first,
    /// then the rest of the clockwise walk.
    pub fn fallbacks(&self, key: &[u8]) -> Vec<NodeId> {
        self.partition_preference_list(self.partition_of(key), self.members.len())
    }

    /// The ring with `node` joined at `weight` (or, if it is a member, reweighted), version bumped.
    /// Only partitions moving onto `node` change owner, unless the balance invariant forbids it (see
    /// the module documentation); the number moved is the least possible. If `node` is already a
    /// member with this weight, the ring is returned unchanged, version included.
    ///
    /// # Panics
    ///
    /// If `weight` is 0.
    pub fn with_member(&self, node: impl Into<NodeId>, weight: u32) -> Ring {
        let node = node.into();
        assert!(weight > 0, "member {node} has weight 0");
        if self.members.get(&node) == Some(&weight) {
            return self.clone();
        }
        let mut members = self.members.clone();
        members.insert(node.clone(), weight);
        self.rebalance(members, Some(&node))
    }

    /// The ring without `node`, version bumped. Only the leaver's partitions change owner, unless
    /// the balance invariant forbids it (see the module documentation); the number moved is the
    /// least possible. If `node` is not a member, the ring is returned unchanged.
    ///
    /// # Panics
    ///
    /// If `node` is the only member.
    pub fn without_member(&self, node: &str) -> Ring {
        if !self.members.contains_key(node) {
            return self.clone();
        }
        assert!(
            self.members.len() > 1,
            "cannot remove {node}, the ring's only member"
        );
        let mut members = self.members.clone();
        members.remove(node);
        self.rebalance(members, None)
    }

    /// [`Ring::with_member`] for input from outside: refuses instead of panicking (a weight of 0
    /// or above [`WEIGHT_MAX`], a bad name, a ring that would pass [`MEMBERS_MAX`], a version at
    /// [`VERSION_MAX`]).
    pub fn try_with_member(&self, node: impl Into<NodeId>, weight: u32) -> Result<Ring, RingError> {
        let node = node.into();
        if weight == 0 {
            return Err(RingError::WeightZero { node });
        }
        if weight > WEIGHT_MAX {
            return Err(RingError::WeightTooHigh { node, weight });
        }
        if !crate::version::valid_node_id(&node) {
            return Err(RingError::BadNodeId { node });
        }
        if self.members.get(&node) == Some(&weight) {
            return Ok(self.clone());
        }
        if !self.members.contains_key(&node) && self.members.len() >= MEMBERS_MAX {
            return Err(RingError::TooManyMembers {
                members: self.members.len() + 1,
            });
        }
        if self.version >= VERSION_MAX {
            return Err(RingError::VersionExhausted {
                version: self.version,
            });
        }
        Ok(self.with_member(node, weight))
    }

    /// [`Ring::without_member`] for input from outside: refuses instead of panicking (the last
    /// member, a version at [`VERSION_MAX`]).
    pub fn try_without_member(&self, node: &str) -> Result<Ring, RingError> {
        if !self.members.contains_key(node) {
            return Ok(self.clone());
        }
        if self.members.len() == 1 {
            return Err(RingError::LastMember { node: node.into() });
        }
        if self.version >= VERSION_MAX {
            return Err(RingError::VersionExhausted {
                version: self.version,
            });
        }
        Ok(self.without_member(node))
    }

    /// The ring with another version, unchecked: for [`crate::fuzz`] and tests, which must make
    /// the rings a damaged peer could send.
    #[doc(hidden)]
    pub fn with_version_for_fuzzing(mut self, version: u64) -> Ring {
        self.version = version;
        self
    }

    /// The ring with its first partition owned by `node`, unchecked (an invalid ring unless
    /// `node` already owned it): for [`crate::fuzz`] and tests.
    #[doc(hidden)]
    pub fn damaged_for_fuzzing(mut self, node: NodeId) -> Ring {
        if let Some(owner) = self.owners.first_mut() {
            *owner = node;
        }
        self
    }

    /// The partitions `node` owns, ascending.
    pub fn partitions_of(&self, node: &str) -> Vec<u32> {
        (0..self.partition_count)
            .filter(|&partition| self.owners[partition as usize] == node)
            .collect()
    }

    /// `node`'s fair share of partitions, `Q * weight / total weight` (0 for a non-member).
    pub fn fair_share(&self, node: &str) -> f64 {
        match self.members.get(node) {
            Some(&weight) => {
                f64::from(self.partition_count) * f64::from(weight)
                    / weight_total(&self.members) as f64
            }
            None => 0.0,
        }
    }

    /// The partitions whose owner differs between `self` and `next`, ascending: what a change of
    /// membership hands over.
    ///
    /// # Panics
    ///
    /// If the two rings have different partition counts.
    pub fn changed_partitions(&self, next: &Ring) -> Vec<u32> {
        assert_eq!(
            self.partition_count, next.partition_count,
            "rings with different partition counts cannot be compared"
        );
        (0..self.partition_count)
            .filter(|&partition| self.owners[partition as usize] != next.owners[partition as usize])
            .collect()
    }

    /// Checks every invariant: the partition count is in range, there are members and their
    /// weights are positive, the version is not 0, there is one owner per partition, every owner
    /// is a member, and every member owns the floor or the ceiling of its fair share.
    pub fn validate(&self) -> Result<(), RingError> {
        if !(1..=PARTITION_COUNT_MAX).contains(&self.partition_count) {
            return Err(RingError::PartitionCountOutOfRange {
                partition_count: self.partition_count,
            });
        }
        if self.members.is_empty() {
            return Err(RingError::NoMembers);
        }
        if self.members.len() > MEMBERS_MAX {
            return Err(RingError::TooManyMembers {
                members: self.members.len(),
            });
        }
        for (node, &weight) in &self.members {
            if weight == 0 {
                return Err(RingError::WeightZero { node: node.clone() });
            }
            if weight > WEIGHT_MAX {
                return Err(RingError::WeightTooHigh {
                    node: node.clone(),
                    weight,
                });
            }
            if !crate::version::valid_node_id(node) {
                return Err(RingError::BadNodeId { node: node.clone() });
            }
        }
        if self.version == 0 {
            return Err(RingError::VersionZero);
        }
        if self.version > VERSION_MAX {
            return Err(RingError::VersionExhausted {
                version: self.version,
            });
        }
        if self.owners.len() != self.partition_count as usize {
            return Err(RingError::OwnersLength {
                partition_count: self.partition_count,
                owners_len: self.owners.len(),
            });
        }
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for (partition, owner) in self.owners.iter().enumerate() {
            if !self.members.contains_key(owner) {
                return Err(RingError::OwnerNotMember {
                    partition: partition as u32,
                    node: owner.clone(),
                });
            }
            *counts.entry(owner).or_default() += 1;
        }
        let weight_total = weight_total(&self.members);
        for (node, &weight) in &self.members {
            let quota = quota(self.partition_count, weight, weight_total);
            let partitions = counts.get(node.as_str()).copied().unwrap_or(0);
            if !(quota.partitions_min..=quota.partitions_max).contains(&partitions) {
                return Err(RingError::ShareOutOfBounds {
                    node: node.clone(),
                    partitions,
                    partitions_min: quota.partitions_min,
                    partitions_max: quota.partitions_max,
                });
            }
        }
        Ok(())
    }

    /// Panics if an invariant does not hold (see [`Ring::validate`]). Every constructor calls it
    /// in debug builds.
    fn check_invariants(&self) {
        if let Err(error) = self.validate() {
            panic!("ring invariant violated: {error}: {self:?}");
        }
    }

    /// The ring over `members`, moving as few partitions as the quotas allow; `preferred` is the
    /// node whose count is raised first (the joiner). Partitions of nodes that are not in
    /// `members` are free and must all be reassigned.
    fn rebalance(&self, members: BTreeMap<NodeId, u32>, preferred: Option<&str>) -> Ring {
        let q = self.partition_count as usize;
        // Owners as names borrowed from `members`; None marks a free partition.
        let mut owners: Vec<Option<&str>> = self
            .owners
            .iter()
            .map(|owner| members.get_key_value(owner).map(|(node, _)| node.as_str()))
            .collect();
        let slots = targets(self.partition_count, &members, &owners, preferred);
        let index: BTreeMap<&str, usize> = slots
            .iter()
            .enumerate()
            .map(|(i, slot)| (slot.node, i))
            .collect();
        let mut demand: Vec<u32> = slots
            .iter()
            .map(|slot| slot.target.saturating_sub(slot.count))
            .collect();
        let mut surplus: Vec<u32> = slots
            .iter()
            .map(|slot| slot.count.saturating_sub(slot.target))
            .collect();
        let free_count = owners.iter().filter(|owner| owner.is_none()).count();
        let moves_count: u32 = demand.iter().sum();
        // What receivers take is exactly what is free plus what donors give, so every step below
        // finds a candidate.
        assert_eq!(
            moves_count as usize,
            free_count + surplus.iter().sum::<u32>() as usize
        );

        // Bounded by the number of moves, at most Q.
        for _ in 0..moves_count {
            // The receiver that still needs the most, so that receivers take turns.
            let receiver = (0..slots.len())
                .filter(|&i| demand[i] > 0)
                .min_by_key(|&i| Reverse(demand[i]))
                .expect("a receiver is left while moves are left");
            let node = slots[receiver].node;
            let distance = distance_to_owned(&owners, node);
            let mut best: Option<(usize, (u32, bool))> = None;
            for partition in 0..q {
                let breaks_run = match owners[partition] {
                    None => false,
                    Some(owner) if surplus[index[owner]] > 0 => {
                        owners[(partition + q - 1) % q] == Some(owner)
                            || owners[(partition + 1) % q] == Some(owner)
                    }
                    Some(_) => continue,
                };
                let score = (distance[partition], breaks_run);
                if best.is_none_or(|(_, best_score)| score > best_score) {
                    best = Some((partition, score));
                }
            }
            let (partition, _) = best.expect("a free or surplus partition is left");
            if let Some(owner) = owners[partition] {
                surplus[index[owner]] -= 1;
            }
            owners[partition] = Some(node);
            demand[receiver] -= 1;
        }

        let owners = owners
            .into_iter()
            .map(|owner| NodeId::from(owner.expect("every free partition was reassigned")))
            .collect();
        let ring = Ring {
            partition_count: self.partition_count,
            owners,
            members,
            // Callers from outside go through `try_with_member` and `try_without_member`, which
            // refuse a change at VERSION_MAX; saturating here keeps any other path from a panic.
            version: self.version.saturating_add(1),
        };
        if cfg!(debug_assertions) {
            ring.check_invariants();
        }
        ring
    }
}

/// The partition count each member of `members` gets: within its quota, as close to what it owns
/// in `owners` (empty for a new ring) as the quotas allow, summing to `partition_count`. Counts are
/// raised first for `preferred`, then for the largest remainders; lowered first for members that
/// already give partitions away, then for the smallest remainders; remaining ties go to the smaller
/// node id. Returns the members in node-id order.
fn targets<'a>(
    partition_count: u32,
    members: &'a BTreeMap<NodeId, u32>,
    owners: &[Option<&str>],
    preferred: Option<&str>,
) -> Vec<Slot<'a>> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for owner in owners.iter().flatten() {
        *counts.entry(owner).or_default() += 1;
    }
    let weight_total = weight_total(members);
    let mut slots: Vec<Slot<'a>> = members
        .iter()
        .map(|(node, &weight)| {
            let quota = quota(partition_count, weight, weight_total);
            let count = counts.get(node.as_str()).copied().unwrap_or(0);
            Slot {
                node,
                quota,
                count,
                target: count.clamp(quota.partitions_min, quota.partitions_max),
            }
        })
        .collect();
    let mut sum: u64 = slots.iter().map(|slot| u64::from(slot.target)).sum();
    // Each loop moves a target from one end of its quota to the other, so each runs at most once
    // per member. The floors sum to at most Q and the ceilings to at least Q, so both end.
    while sum < u64::from(partition_count) {
        let slot = slots
            .iter_mut()
            .filter(|slot| slot.target < slot.quota.partitions_max)
            .min_by_key(|slot| (Some(slot.node) != preferred, Reverse(slot.quota.remainder)))
            .expect("the ceilings of the shares sum to at least Q");
        slot.target += 1;
        sum += 1;
    }
    while sum > u64::from(partition_count) {
        let slot = slots
            .iter_mut()
            .filter(|slot| slot.target > slot.quota.partitions_min)
            .min_by_key(|slot| (slot.target >= slot.count, slot.quota.remainder))
            .expect("the floors of the shares sum to at most Q");
        slot.target -= 1;
        sum -= 1;
    }
    slots
}

/// Deals `partition_count` partitions out to `slots` by stride scheduling: each partition goes to
/// the node with the smallest virtual finish time `(dealt + 1) / target` (ties to the smaller node
/// id), which interleaves the nodes in proportion to their targets.
fn stripe(partition_count: u32, slots: &[Slot<'_>]) -> Vec<NodeId> {
    debug_assert_eq!(
        slots.iter().map(|slot| u64::from(slot.target)).sum::<u64>(),
        u64::from(partition_count)
    );
    let mut dealt = vec![0u32; slots.len()];
    let mut owners = Vec::with_capacity(partition_count as usize);
    for _ in 0..partition_count {
        let mut best: Option<usize> = None;
        for (i, slot) in slots.iter().enumerate() {
            if dealt[i] == slot.target {
                continue;
            }
            // (dealt[i] + 1) / target[i] < (dealt[b] + 1) / target[b], cross-multiplied.
            let earlier = |b: usize| {
                u64::from(dealt[i] + 1) * u64::from(slots[b].target)
                    < u64::from(dealt[b] + 1) * u64::from(slot.target)
            };
            if best.is_none_or(earlier) {
                best = Some(i);
            }
        }
        let i = best.expect("the targets sum to the partition count");
        dealt[i] += 1;
        owners.push(NodeId::from(slots[i].node));
    }
    owners
}

/// For each partition, how many steps around the ring (either way) it is from the nearest
/// partition `node` owns; `u32::MAX` everywhere if it owns none.
fn distance_to_owned(owners: &[Option<&str>], node: &str) -> Vec<u32> {
    let q = owners.len();
    let mut distance = vec![u32::MAX; q];
    if !owners.contains(&Some(node)) {
        return distance;
    }
    // Two laps each way, so that every partition has seen an owned one behind it.
    for forward in [true, false] {
        let mut since: Option<u32> = None;
        for step in 0..2 * q {
            let partition = if forward { step % q } else { q - 1 - step % q };
            since = if owners[partition] == Some(node) {
                Some(0)
            } else {
                since.map(|steps| steps + 1)
            };
            if let Some(steps) = since {
                distance[partition] = distance[partition].min(steps);
            }
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn members(weights: &[(&str, u32)]) -> BTreeMap<NodeId, u32> {
        weights
            .iter()
            .map(|&(node, weight)| (NodeId::from(node), weight))
            .collect()
    }

    /// Members `n00`, `n01`, ... with the given weights (two digits, so id order is index order).
    fn numbered(weights: &[u32]) -> BTreeMap<NodeId, u32> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| (NodeId::from(format!("n{i:02}")), weight))
            .collect()
    }

    fn counts(ring: &Ring) -> BTreeMap<NodeId, u32> {
        let mut counts: BTreeMap<NodeId, u32> = ring
            .members()
            .keys()
            .map(|node| (node.clone(), 0))
            .collect();
        for owner in ring.owners() {
            *counts.get_mut(owner).unwrap() += 1;
        }
        counts
    }

    /// Whether every member owns within 1 of its fair share, computed here independently of the
    /// module: `|count - Q * w / W| < 1`, that is `|count * W - Q * w| < W`.
    fn shares_within_one(ring: &Ring) -> bool {
        let weight_total: i128 = ring.members().values().map(|&w| i128::from(w)).sum();
        let q = i128::from(ring.partition_count());
        counts(ring).iter().all(|(node, &count)| {
            let weight = i128::from(ring.members()[node]);
            (i128::from(count) * weight_total - q * weight).abs() < weight_total
        }) && counts(ring).values().sum::<u32>() == ring.partition_count()
    }

    /// The floor and ceiling of each member's fair share of `ring`, computed independently.
    fn bounds(ring: &Ring) -> BTreeMap<NodeId, (u32, u32)> {
        let weight_total: u64 = ring.members().values().map(|&w| u64::from(w)).sum();
        let q = u64::from(ring.partition_count());
        ring.members()
            .iter()
            .map(|(node, &weight)| {
                let scaled = q * u64::from(weight);
                let floor = (scaled / weight_total) as u32;
                let ceil = scaled.div_ceil(weight_total) as u32;
                (node.clone(), (floor, ceil))
            })
            .collect()
    }

    /// The least number of partitions any balanced `next` can move from `prev`: each member must
    /// reach at least its floor, and whatever it cannot keep (above its ceiling, or not a member
    /// any more) must move, and (same thing seen from the receivers) Q minus what can stay put.
    fn moves_min(prev: &Ring, next: &Ring) -> usize {
        let counts_prev = counts(prev);
        let mut gain_min = 0u32;
        let mut kept_max = 0u32;
        for (node, (floor, ceil)) in bounds(next) {
            let count = counts_prev.get(&node).copied().unwrap_or(0);
            gain_min += floor.saturating_sub(count);
            kept_max += count.min(ceil);
        }
        gain_min.max(next.partition_count() - kept_max) as usize
    }

    /// Whether a balanced `next` exists in which no member other than `joiner` (if any) gains a
    /// partition and no member loses one unless it is leaving or `joiner` takes it.
    fn minimal_move_possible(prev: &Ring, next: &Ring, joiner: Option<&str>) -> bool {
        let counts_prev = counts(prev);
        let mut floors = 0u32;
        let mut ceils = 0u32;
        for (node, (floor, ceil)) in bounds(next) {
            let count = counts_prev.get(&node).copied().unwrap_or(0);
            if Some(node.as_str()) == joiner {
                floors += floor;
                ceils += ceil;
            } else if joiner.is_some() {
                // A joiner takes partitions: the others may only shrink.
                if count < floor {
                    return false;
                }
                floors += floor;
                ceils += count.min(ceil);
            } else {
                // A leaver's partitions are handed out: the others may only grow.
                if count > ceil {
                    return false;
                }
                floors += count.max(floor);
                ceils += ceil;
            }
        }
        (floors..=ceils).contains(&next.partition_count())
    }

    fn adjacent_duplicates(ring: &Ring) -> usize {
        let q = ring.owners().len();
        (0..q)
            .filter(|&p| q > 1 && ring.owners()[p] == ring.owners()[(p + 1) % q])
            .count()
    }

    // ---- Unit tests: small examples. ----

    #[test]
    fn key_hash_is_md5_prefix_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e, MD5("hello") = 5d41402abc4b2a76b9719d911017c592.
        assert_eq!(key_hash(b""), 0xd41d_8cd9_8f00_b204);
        assert_eq!(key_hash(b"hello"), 0x5d41_402a_bc4b_2a76);
    }

    #[test]
    fn partition_of_hash_cuts_equal_ranges() {
        let ring = Ring::new(4, &members(&[("n1", 1)]));
        assert_eq!(ring.partition_of_hash(0), 0);
        assert_eq!(ring.partition_of_hash((1 << 62) - 1), 0);
        assert_eq!(ring.partition_of_hash(1 << 62), 1);
        assert_eq!(ring.partition_of_hash(1 << 63), 2);
        assert_eq!(ring.partition_of_hash(u64::MAX), 3);
        // "hello" hashes to 0x5d41..., in the second quarter.
        assert_eq!(ring.partition_of(b"hello"), 1);
    }

    #[test]
    fn equal_weights_are_striped() {
        let ring = Ring::new(6, &members(&[("n1", 1), ("n2", 1), ("n3", 1)]));
        assert_eq!(ring.owners(), ["n1", "n2", "n3", "n1", "n2", "n3"]);
        assert_eq!(ring.version(), VERSION_FIRST);
        assert_eq!(ring.partitions_of("n2"), vec![1, 4]);
        assert_eq!(ring.partition_preference_list(2, 3), ["n3", "n1", "n2"]);
        assert_eq!(ring.partition_preference_list(5, 2), ["n3", "n1"]);
        // N larger than the cluster gives every member once.
        assert_eq!(ring.partition_preference_list(0, 5), ["n1", "n2", "n3"]);
        assert_eq!(ring.fair_share("n1"), 2.0);
        assert_eq!(ring.fair_share("n9"), 0.0);
    }

    #[test]
    fn default_ring_of_three_is_22_21_21_without_adjacent_duplicates_inside() {
        let ring = Ring::new(
            PARTITION_COUNT_DEFAULT,
            &members(&[("n1", 1), ("n2", 1), ("n3", 1)]),
        );
        assert_eq!(
            counts(&ring),
            members(&[("n1", 22), ("n2", 21), ("n3", 21)])
        );
        // Only the wrap-around can repeat an owner (n1 owns one more than the others).
        assert!(adjacent_duplicates(&ring) <= 1, "{:?}", ring.owners());
    }

    #[test]
    fn weights_set_counts() {
        let ring = Ring::new(6, &members(&[("n1", 2), ("n2", 1)]));
        assert_eq!(counts(&ring), members(&[("n1", 4), ("n2", 2)]));
        assert_eq!(ring.owners(), ["n1", "n1", "n2", "n1", "n1", "n2"]);
        // n1's share 6*2/3 = 4 is exact.
        assert_eq!(ring.fair_share("n1"), 4.0);
    }

    #[test]
    fn largest_remainder_breaks_ties_by_node_id() {
        // Shares 8/3 each: two nodes get 3, the first by id.
        let ring = Ring::new(8, &members(&[("a", 1), ("b", 1), ("c", 1)]));
        assert_eq!(counts(&ring), members(&[("a", 3), ("b", 3), ("c", 2)]));
    }

    #[test]
    fn join_takes_one_spread_partition_from_each_node() {
        let ring = Ring::new(12, &members(&[("n1", 1), ("n2", 1), ("n3", 1)]));
        let joined = ring.with_member("n4".to_owned(), 1);
        assert_eq!(joined.version(), ring.version() + 1);
        assert_eq!(
            counts(&joined),
            members(&[("n1", 3), ("n2", 3), ("n3", 3), ("n4", 3)])
        );
        let moved = ring.changed_partitions(&joined);
        assert_eq!(moved, joined.partitions_of("n4"));
        assert!(moved.iter().all(|&p| joined.owner(p) == "n4"));
        // The new node's partitions are not next to each other.
        assert_eq!(adjacent_duplicates(&joined), 0, "{:?}", joined.owners());
    }

    #[test]
    fn leave_hands_out_only_the_leavers_partitions() {
        let ring = Ring::new(12, &members(&[("n1", 1), ("n2", 1), ("n3", 1), ("n4", 1)]));
        let left = ring.without_member("n2");
        assert_eq!(left.version(), ring.version() + 1);
        assert_eq!(ring.changed_partitions(&left), ring.partitions_of("n2"));
        assert_eq!(counts(&left), members(&[("n1", 4), ("n3", 4), ("n4", 4)]));
        assert!(!left.contains("n2"));
    }

    #[test]
    fn join_then_leave_restores_the_counts() {
        let ring = Ring::new(64, &members(&[("n1", 1), ("n2", 2), ("n3", 1)]));
        let back = ring.with_member("n4".to_owned(), 3).without_member("n4");
        assert_eq!(counts(&back), counts(&ring));
        assert_eq!(back.version(), ring.version() + 2);
    }

    #[test]
    fn reweight_moves_partitions_onto_the_heavier_node() {
        let ring = Ring::new(12, &members(&[("n1", 1), ("n2", 1), ("n3", 1)]));
        let heavier = ring.with_member("n1".to_owned(), 2);
        assert_eq!(heavier.version(), ring.version() + 1);
        assert_eq!(
            counts(&heavier),
            members(&[("n1", 6), ("n2", 3), ("n3", 3)])
        );
        assert!(
            ring.changed_partitions(&heavier)
                .iter()
                .all(|&p| heavier.owner(p) == "n1")
        );
    }

    #[test]
    fn no_op_changes_keep_the_version() {
        let ring = Ring::new(8, &members(&[("n1", 1), ("n2", 1)]));
        assert_eq!(ring.with_member("n1".to_owned(), 1), ring);
        assert_eq!(ring.without_member("n9"), ring);
    }

    /// The module documentation's example: a leave the quotas do not let touch only the leaver's
    /// partitions. The three remaining weight-4 nodes each need 3 (share 64/21 = 3.05), own 2, and
    /// the leaver had only 2 to give, so one more partition moves, and no more than one.
    #[test]
    fn leave_that_quotas_force_to_move_one_more_partition() {
        let ring = Ring::new(16, &numbered(&[1, 1, 3, 4, 1, 1, 4, 4, 1, 4, 1]));
        assert_eq!(ring.partitions_of("n03").len(), 2);
        let left = ring.without_member("n03");
        assert!(!minimal_move_possible(&ring, &left, None));
        let moved = ring.changed_partitions(&left);
        assert_eq!(moved.len(), 3);
        assert_eq!(moved.len(), moves_min(&ring, &left));
        assert!(shares_within_one(&left));
        for node in ["n06", "n07", "n09"] {
            assert_eq!(left.partitions_of(node).len(), 3);
        }
    }

    #[test]
    fn members_without_partitions_still_get_replicas() {
        // Ten equal nodes, eight partitions: n08 and n09 own nothing (share 0.8, rounded down by
        // id), yet a list of ten names everyone and fallbacks reach them.
        let ring = Ring::new(8, &numbered(&[1; 10]));
        assert!(ring.partitions_of("n08").is_empty());
        assert!(ring.partitions_of("n09").is_empty());
        let list = ring.partition_preference_list(3, 10);
        assert_eq!(list.len(), 10);
        assert_eq!(&list[8..], ["n08", "n09"]);
        assert_eq!(ring.fallbacks(b"k").len(), 10);
    }

    #[test]
    fn fallbacks_start_with_the_preference_list() {
        let ring = Ring::new(16, &members(&[("a", 1), ("b", 2), ("c", 1), ("d", 3)]));
        let fallbacks = ring.fallbacks(b"cart-7");
        assert_eq!(fallbacks[..3], ring.preference_list(b"cart-7", 3)[..]);
        assert_eq!(
            fallbacks.iter().collect::<BTreeSet<_>>(),
            ring.members().keys().collect::<BTreeSet<_>>()
        );
    }

    #[test]
    #[should_panic(expected = "partition count 0")]
    fn zero_partitions_panics() {
        Ring::new(0, &members(&[("n1", 1)]));
    }

    #[test]
    #[should_panic(expected = "at least one member")]
    fn no_members_panics() {
        Ring::new(8, &BTreeMap::new());
    }

    #[test]
    #[should_panic(expected = "weight 0")]
    fn zero_weight_panics() {
        Ring::new(8, &members(&[("n1", 1), ("n2", 0)]));
    }

    #[test]
    #[should_panic(expected = "only member")]
    fn removing_the_last_member_panics() {
        Ring::new(8, &members(&[("n1", 1)])).without_member("n1");
    }

    #[test]
    fn validate_rejects_a_corrupt_ring() {
        let ring = Ring::new(4, &members(&[("n1", 1), ("n2", 1)]));
        assert_eq!(ring.validate(), Ok(()));

        let mut stranger = ring.clone();
        stranger.owners[1] = "n9".into();
        assert_eq!(
            stranger.validate(),
            Err(RingError::OwnerNotMember {
                partition: 1,
                node: "n9".into()
            })
        );

        let mut lopsided = ring.clone();
        lopsided.owners = vec!["n1".into(); 4];
        assert!(matches!(
            lopsided.validate(),
            Err(RingError::ShareOutOfBounds { partitions: 4, .. })
        ));

        let mut short = ring.clone();
        short.owners.pop();
        assert!(matches!(
            short.validate(),
            Err(RingError::OwnersLength { owners_len: 3, .. })
        ));

        let mut unversioned = ring;
        unversioned.version = 0;
        assert_eq!(unversioned.validate(), Err(RingError::VersionZero));
    }

    #[test]
    fn serde_round_trip() {
        let ring = Ring::new(16, &members(&[("n1", 1), ("n2", 3)])).with_member("n3".to_owned(), 2);
        let bytes = postcard::to_stdvec(&ring).unwrap();
        let decoded: Ring = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, ring);
        assert_eq!(decoded.validate(), Ok(()));
    }

    // ---- Property tests. ----

    /// A partition count and 1 to 10 members `n00`.. with weights 1..=4.
    fn ring_strategy() -> impl Strategy<Value = Ring> {
        (
            proptest::sample::select(vec![8u32, 16, 64, 256]),
            proptest::collection::vec(1u32..=4, 1..=10),
        )
            .prop_map(|(partition_count, weights)| Ring::new(partition_count, &numbered(&weights)))
    }

    /// A membership change: a join of weight 1..=4, or the leave of the member at an index.
    #[derive(Clone, Debug)]
    enum Change {
        Join(u32),
        Leave(usize),
    }

    fn change_strategy() -> impl Strategy<Value = Change> {
        prop_oneof![
            (1u32..=4).prop_map(Change::Join),
            any::<usize>().prop_map(Change::Leave),
        ]
    }

    proptest! {
        /// Every key gets min(N, members) distinct members, and its fallbacks are every member
        /// once, starting with the preference list.
        #[test]
        fn prop_preference_list_has_distinct_members(
            ring in ring_strategy(),
            key in proptest::collection::vec(any::<u8>(), 0..32),
            n in 1usize..=6,
        ) {
            let list = ring.preference_list(&key, n);
            prop_assert_eq!(list.len(), n.min(ring.members().len()));
            let distinct: BTreeSet<&NodeId> = list.iter().collect();
            prop_assert_eq!(distinct.len(), list.len());
            prop_assert!(list.iter().all(|node| ring.contains(node)));
            // The coordinator is the owner of the key's partition.
            prop_assert_eq!(&list[0], ring.owner(ring.partition_of(&key)));

            let fallbacks = ring.fallbacks(&key);
            prop_assert_eq!(&fallbacks[..list.len()], &list[..]);
            let everyone: BTreeSet<&NodeId> = fallbacks.iter().collect();
            prop_assert_eq!(everyone.len(), fallbacks.len());
            prop_assert_eq!(everyone, ring.members().keys().collect::<BTreeSet<_>>());
        }

        /// A new ring gives every member within 1 of its weighted fair share (Dynamo, section 6.2,
        /// strategy 3: partitions assigned in proportion to weight).
        #[test]
        fn prop_new_ring_shares_within_one(ring in ring_strategy()) {
            prop_assert!(shares_within_one(&ring), "{:?}", counts(&ring));
            for (node, count) in counts(&ring) {
                prop_assert!((f64::from(count) - ring.fair_share(&node)).abs() < 1.0);
            }
        }

        /// A join moves only partitions onto the new node whenever the quotas allow it (the new
        /// node then owns exactly what moved), always the least number of partitions, and keeps
        /// every share within 1.
        #[test]
        fn prop_join_moves_only_onto_the_new_node(ring in ring_strategy(), weight in 1u32..=4) {
            let joined = ring.with_member("new".to_owned(), weight);
            prop_assert!(shares_within_one(&joined), "{:?}", counts(&joined));
            prop_assert_eq!(joined.version(), ring.version() + 1);
            let moved = ring.changed_partitions(&joined);
            prop_assert_eq!(moved.len(), moves_min(&ring, &joined));
            if minimal_move_possible(&ring, &joined, Some("new")) {
                prop_assert_eq!(moved, joined.partitions_of("new"));
            }
        }

        /// A leave moves only the leaver's partitions whenever the quotas allow it, always the
        /// least number of partitions, and keeps every share within 1.
        #[test]
        fn prop_leave_moves_only_the_leavers_partitions(
            ring in ring_strategy(),
            leaver_index in any::<usize>(),
        ) {
            prop_assume!(ring.members().len() > 1);
            let leaver = ring.members().keys().nth(leaver_index % ring.members().len()).unwrap().clone();
            let left = ring.without_member(&leaver);
            prop_assert!(shares_within_one(&left), "{:?}", counts(&left));
            prop_assert!(!left.contains(&leaver));
            prop_assert_eq!(left.version(), ring.version() + 1);
            let moved = ring.changed_partitions(&left);
            prop_assert_eq!(moved.len(), moves_min(&ring, &left));
            if minimal_move_possible(&ring, &left, None) {
                prop_assert_eq!(moved, ring.partitions_of(&leaver));
            }
        }

        /// Over a sequence of joins and leaves, every ring stays balanced and each change moves
        /// the least number of partitions.
        #[test]
        fn prop_changes_stay_balanced_and_minimal(
            ring in ring_strategy(),
            changes in proptest::collection::vec(change_strategy(), 1..12),
        ) {
            let mut ring = ring;
            for (step, change) in changes.into_iter().enumerate() {
                let next = match change {
                    Change::Join(weight) => ring.with_member(format!("j{step:02}"), weight),
                    Change::Leave(_) if ring.members().len() == 1 => continue,
                    Change::Leave(index) => {
                        let leaver = ring.members().keys().nth(index % ring.members().len()).unwrap().clone();
                        ring.without_member(&leaver)
                    }
                };
                prop_assert!(shares_within_one(&next), "{:?}", counts(&next));
                prop_assert_eq!(ring.changed_partitions(&next).len(), moves_min(&ring, &next));
                ring = next;
            }
        }

        /// The hash is stable: fixed keys map to fixed values computed once, and so to fixed
        /// partitions.
        #[test]
        fn prop_hash_is_stable(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(key_hash(&key), key_hash(&key.clone()));
            prop_assert_eq!(key_hash(b"cart-7"), KEY_HASH_CART_7);
            let ring = Ring::new(PARTITION_COUNT_DEFAULT, &members(&[("n1", 1)]));
            prop_assert_eq!(ring.partition_of(b"cart-7"), PARTITION_CART_7);
        }

        /// Every hash falls in a partition in range, and partitions are in hash order.
        #[test]
        fn prop_partition_of_is_in_range(ring in ring_strategy(), a in any::<u64>(), b in any::<u64>()) {
            prop_assert!(ring.partition_of_hash(a) < ring.partition_count());
            let (low, high) = (a.min(b), a.max(b));
            prop_assert!(ring.partition_of_hash(low) <= ring.partition_of_hash(high));
        }
    }

    /// `key_hash(b"cart-7")`, computed once: if this changes, every stored key moves.
    const KEY_HASH_CART_7: u64 = 0xfdaf_2d44_637f_1761;
    /// `key_hash(b"cart-7")`'s partition with Q = 64.
    const PARTITION_CART_7: u32 = 63;
}
