//! Sloppy quorum and hinted handoff: which nodes a request goes to when replicas are unreachable,
//! and the bookkeeping of writes held for others.
//!
//! Dynamo's sloppy quorum (§4.6): a request goes to the first N *healthy* nodes met walking the ring
//! from the key, not strictly to the preference list. A node standing in for an unreachable owner
//! receives the write with a hint naming that owner, keeps it apart from its own data, and hands it
//! over when the owner is reachable again; the hint is deleted only after the owner acknowledges
//! it, and only if no newer write reached the hint meanwhile. The coordinator itself is always an
//! owner (a node outside the top N forwards), so only owners ever make versions, and a stand-in
//! never needs a counter of its own for a key.

use crate::ring::{NodeId, Ring};
use crate::version::VClock;
use std::collections::{BTreeMap, BTreeSet};

/// The hints a node holds, as (owner, key): in owner order for delivery, and indexed by key, so
/// that a read of a key finds the hints held for it without going through every hint.
#[derive(Clone, Debug, Default)]
pub struct Held {
    by_owner: BTreeSet<(NodeId, Vec<u8>)>,
    by_key: BTreeMap<Vec<u8>, BTreeSet<NodeId>>,
}

impl Held {
    /// Notes a hint held for `owner` of `key`.
    pub fn insert(&mut self, owner: NodeId, key: Vec<u8>) {
        self.by_key
            .entry(key.clone())
            .or_default()
            .insert(owner.clone());
        self.by_owner.insert((owner, key));
    }

    /// Forgets the hint held for `owner` of `key`, if any.
    pub fn remove(&mut self, owner: &NodeId, key: &[u8]) {
        if let Some(owners) = self.by_key.get_mut(key) {
            owners.remove(owner);
            if owners.is_empty() {
                self.by_key.remove(key);
            }
        }
        self.by_owner.remove(&(owner.clone(), key.to_vec()));
    }

    /// The owners this node holds a hint of `key` for.
    pub fn owners_of(&self, key: &[u8]) -> impl Iterator<Item = &NodeId> {
        self.by_key.get(key).into_iter().flatten()
    }

    /// Whether any hint is held for `owner`.
    pub fn holds_for(&self, owner: &NodeId) -> bool {
        self.by_owner
            .range((owner.clone(), Vec::new())..)
            .next()
            .is_some_and(|(o, _)| o == owner)
    }

    /// Every hint, as (owner, key), by owner then key.
    pub fn iter(&self) -> impl Iterator<Item = &(NodeId, Vec<u8>)> {
        self.by_owner.iter()
    }

    /// How many hints are held.
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_owner.is_empty()
    }
}

impl FromIterator<(NodeId, Vec<u8>)> for Held {
    fn from_iter<I: IntoIterator<Item = (NodeId, Vec<u8>)>>(iter: I) -> Held {
        let mut held = Held::default();
        for (owner, key) in iter {
            held.insert(owner, key);
        }
        held
    }
}

/// Most hint deliveries in flight from one node: a returning owner is not flooded.
pub const HINT_DELIVERIES_IN_FLIGHT_MAX: usize = 64;
/// Most bytes of hinted states one round of deliveries sends (reckoned by
/// [`crate::version::KeyVersions::encoded_bytes_bound`]), past the first: the count alone let a
/// round of hints of large values make hundreds of megabytes of messages in one step. The rest
/// waits for the next round. Two frames' worth, so that the largest state always goes.
pub const HINT_DELIVERY_BYTES_PER_ROUND_MAX: usize = 2 * crate::wire::FRAME_BYTES_MAX;

/// Where one copy of a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The node asked.
    pub node: NodeId,
    /// The unreachable owner it stands in for, if it is not an owner itself.
    pub hint: Option<NodeId>,
}

/// The targets of a request for `key`: with `sloppy`, each unreachable owner in the preference list
/// is replaced by the next reachable node past the top N; without, the preference list as it is.
/// Owners with no stand-in left are kept (they may be back by now).
pub fn targets(
    ring: &Ring,
    key: &[u8],
    n: usize,
    sloppy: bool,
    reachable: impl Fn(&NodeId) -> bool,
) -> Vec<Target> {
    let owners = ring.preference_list(key, n);
    if !sloppy {
        return owners
            .into_iter()
            .map(|node| Target { node, hint: None })
            .collect();
    }
    let walk = ring.fallbacks(key);
    let mut stand_ins = walk
        .into_iter()
        .filter(|node| !owners.contains(node) && reachable(node));
    let targets: Vec<Target> = owners
        .iter()
        .map(|owner| {
            if reachable(owner) {
                return Target {
                    node: owner.clone(),
                    hint: None,
                };
            }
            match stand_ins.next() {
                Some(node) => Target {
                    node,
                    hint: Some(owner.clone()),
                },
                None => Target {
                    node: owner.clone(),
                    hint: None,
                },
            }
        })
        .collect();
    debug_assert_eq!(targets.len(), owners.len());
    targets
}

/// A hint on its way to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The owner.
    pub owner: NodeId,
    /// The key.
    pub key: Vec<u8>,
    /// The clock of the hint as sent: it is deleted on ack only if it is still this.
    pub clock: VClock,
    /// When the delivery is given up (the hint stays and is sent again later).
    pub deadline_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_hints_are_found_by_key_and_listed_by_owner() {
        let mut held = Held::default();
        held.insert("n3".into(), b"b".to_vec());
        held.insert("n2".into(), b"b".to_vec());
        held.insert("n2".into(), b"a".to_vec());
        held.insert("n2".into(), b"a".to_vec());
        assert_eq!(held.len(), 3);
        let owners: Vec<&NodeId> = held.owners_of(b"b").collect();
        assert_eq!(owners, [&NodeId::from("n2"), &NodeId::from("n3")]);
        let listed: Vec<(NodeId, Vec<u8>)> = held.iter().cloned().collect();
        assert_eq!(
            listed,
            [
                ("n2".into(), b"a".to_vec()),
                ("n2".into(), b"b".to_vec()),
                ("n3".into(), b"b".to_vec())
            ]
        );
        held.remove(&"n2".into(), b"b");
        held.remove(&"n9".into(), b"b");
        assert_eq!(held.owners_of(b"b").count(), 1);
        held.remove(&"n3".into(), b"b");
        assert_eq!(held.owners_of(b"b").count(), 0);
        assert_eq!(held.len(), 1);
        held.remove(&"n2".into(), b"a");
        assert!(held.is_empty());
    }

    fn ring(nodes: usize) -> Ring {
        let members: BTreeMap<NodeId, u32> = (1..=nodes)
            .map(|i| (NodeId::from(format!("n{i}")), 1))
            .collect();
        Ring::new(16, &members)
    }

    #[test]
    fn healthy_owners_are_the_targets() {
        let r = ring(5);
        let t = targets(&r, b"k", 3, true, |_| true);
        let owners = r.preference_list(b"k", 3);
        assert_eq!(t.iter().map(|t| t.node.clone()).collect::<Vec<_>>(), owners);
        assert!(t.iter().all(|t| t.hint.is_none()));
    }

    #[test]
    fn an_unreachable_owner_gets_a_stand_in_with_a_hint_only_when_sloppy() {
        let r = ring(5);
        let owners = r.preference_list(b"k", 3);
        let down = owners[1].clone();
        let t = targets(&r, b"k", 3, true, |n| *n != down);
        assert_eq!(t[1].hint, Some(down.clone()));
        assert!(!owners.contains(&t[1].node), "the stand-in is not an owner");
        let next = r.fallbacks(b"k")[3].clone();
        assert_eq!(t[1].node, next, "the first node past the top N");
        let strict = targets(&r, b"k", 3, false, |n| *n != down);
        assert_eq!(strict[1].node, down, "strict quorum keeps the owner");
        assert!(strict.iter().all(|t| t.hint.is_none()));
    }

    #[test]
    fn with_no_stand_in_left_the_owner_stays() {
        let r = ring(3);
        let owners = r.preference_list(b"k", 3);
        let t = targets(&r, b"k", 3, true, |n| *n == owners[0]);
        assert_eq!(t.iter().map(|t| t.node.clone()).collect::<Vec<_>>(), owners);
    }
}
