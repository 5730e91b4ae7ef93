//! Membership (Dynamo §4.8): the ring this node routes by, and the nodes it knows.
//!
//! A ring comes from a peer's gossip, or from a join, a leave or an admin's forget taken here
//! (the requests enter through `Core::start`, in coordinate.rs); [`Core::adopt`] takes it if it
//! is plausible and newer than this node's, and a changed ring is saved with the step's writes.
//! Gossip goes push-pull to one random peer a round and carries the failure view; every
//! suspected peer is probed. The data of partitions that moved follows by the hand-over
//! (handoff.rs).
//!
//! Rings are versioned whole, so two changes made at once through different nodes (two joins,
//! a join and a leave) make two rings of the same version, and every node keeps the one whose
//! encoding sorts higher: the other change is lost, though its node was told it was made. The
//! paper's nodes reconcile their change histories instead; here the node whose own change (its
//! join, its leave) lost makes it again on top of the ring that won, for
//! [`OWN_CHANGE_STAND_MS`] after making it ([`Core::stand_by_own_change`]), and gossip carries
//! the ring with both changes. A join made for a node through another one (an admin's, the
//! harness's) is stood by once the node has taken a ring that holds it, and a forget of a member
//! waits until that time is over (the member would add itself back).
//!
//! The node through which an admin joins or forgets another node stands by that change too
//! ([`Core::stand_by_made_changes`]): the joiner may not have heard of its join yet when it loses
//! its tie, and a forgotten node is gone.
//!
//! Limits, until rings carry a version per member and merge: a change made for another node is
//! stood by only against a ring of its own version (a newer ring without it may be a later change
//! of the same node, which must not be undone), so it is lost if the ring that won its tie is
//! superseded before its maker hears of it, or if its maker restarts (stand-bys are kept in
//! memory only); a re-weight is not stood by (a rival ring without the member may be its leave or
//! forget); and a node whose leave lost its tie stops standing by
//! it once it takes a ring newer than the leave that holds it (an admin's join of it again looks
//! the same).

use super::{Core, HEARD_FRESH_MS, KNOWN_NODES_MAX, Now, RING_VERSION_JUMP_MAX, others};
use crate::ring::{NodeId, Ring};
use crate::wire::{self, PeerMessage};
use std::collections::BTreeMap;

/// How long a node stands by its own membership change (its join, its leave): a ring without
/// it (with it) that comes by gossip in this time lost it to a concurrent change, and the node
/// makes it again. Gossip spreads a ring in a few rounds of [`super::GOSSIP_INTERVAL_MS`]; no
/// one else may undo the change that soon (a forget waits as long after a member joined).
pub const OWN_CHANGE_STAND_MS: u64 = 30_000;

/// A membership change this node made for itself, which it stands by for a while.
#[derive(Clone, Debug)]
pub(super) struct OwnChange {
    /// Whether the change made this node a member (a join) or not (a leave).
    member: bool,
    /// Its weight, for a join.
    weight: u32,
    /// The version of the ring the change made.
    version: u64,
    /// Until when the node stands by it (monotonic ms).
    until_ms: u64,
}

/// How many changes made for other nodes a node stands by at once; past it, the oldest is let go
/// (an admin making membership changes faster than gossip spreads them).
pub const MADE_CHANGES_MAX: usize = 16;

/// A membership change this node made for another node (an admin's join or forget through it),
/// which it stands by against a concurrent change of the same version.
#[derive(Clone, Debug)]
pub(super) struct MadeChange {
    /// The node joined or forgotten.
    node: NodeId,
    /// Whether the change made it a member (a join) or not (a forget).
    member: bool,
    /// Its weight, for a join.
    weight: u32,
    /// The version of the ring the change made, or made it again.
    version: u64,
    /// Until when this node stands by it (monotonic ms).
    until_ms: u64,
}

impl Core {
    /// Takes a ring learned from a peer or made by a join or leave, if it is newer than ours
    /// (higher version; on a tie, the larger encoding, so that every node picks the same one).
    /// Returns whether it was adopted.
    pub fn adopt(&mut self, ring: Ring, addrs: &BTreeMap<NodeId, String>) -> bool {
        // A ring no node could have made (invalid, of another partition count, or implausibly
        // far ahead: every change adds one to the version) is refused whole, its addresses too:
        // one damaged frame must neither brick the ring nor fill the node with bogus peers.
        let plausible = ring.version() <= self.ring.version().saturating_add(RING_VERSION_JUMP_MAX);
        if !plausible
            || ring.validate().is_err()
            || ring.partition_count() != self.ring.partition_count()
        {
            tracing::warn!(
                node = %self.config.id,
                ours = self.ring.version(),
                theirs = ring.version(),
                valid = ?ring.validate(),
                "a ring no node could have made refused"
            );
            return false;
        }
        let newer = match ring.version().cmp(&self.ring.version()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                postcard::to_stdvec(&ring).ok() > postcard::to_stdvec(&self.ring).ok()
            }
        };
        let mut new_node = false;
        for (id, addr) in addrs {
            if self.addrs.contains_key(id)
                || !crate::version::valid_node_id(id)
                || !wire::valid_addr(addr)
            {
                continue;
            }
            // A member's address always finds room, in the place of a node that is no member:
            // a table filled by gossip (hundreds of made-up names in one peer's frame) must not
            // keep this node from every join and from every ring that adds a node.
            let member = self.ring.contains(id) || (newer && ring.contains(id));
            if self.addrs.len() >= KNOWN_NODES_MAX
                && !(member && self.forget_a_non_member(&ring, newer))
            {
                tracing::warn!(node = %self.config.id, %id, "{KNOWN_NODES_MAX} nodes known already: a new one ignored");
                continue;
            }
            self.addrs.insert(id.clone(), addr.clone());
            new_node = true;
        }
        let usable = ring.members().keys().all(|m| self.addrs.contains_key(m));
        let adopted = newer && usable;
        if adopted {
            // The time of the input that brought the ring (0 before the first: at start).
            let now_ms = self.last_input_ms.unwrap_or(0);
            for id in ring.members().keys() {
                if !self.ring.contains(id) {
                    self.member_since_ms.insert(id.clone(), now_ms);
                }
            }
            self.member_since_ms.retain(|id, _| ring.contains(id));
            tracing::info!(
                node = %self.config.id,
                version = ring.version(),
                members = ?ring.members().keys().collect::<Vec<_>>(),
                "ring changed"
            );
            self.ring = ring;
            self.ae_peers = Self::ae_peers(&self.ring, &self.config);
            self.ae_cursor = 0;
        }
        if adopted || new_node {
            self.ready.membership = Some((self.ring.clone(), self.addrs.clone()));
        }
        adopted
    }

    /// Notes this node's own membership change (its join, with `weight`; or its leave), just
    /// made in the current ring: it stands by it until `now_ms` + [`OWN_CHANGE_STAND_MS`].
    pub fn note_own_change(&mut self, member: bool, weight: u32, now_ms: u64) {
        self.stand_by_until(member, weight, now_ms.saturating_add(OWN_CHANGE_STAND_MS));
    }

    /// Stands by the change in the current ring until `until_ms`.
    fn stand_by_until(&mut self, member: bool, weight: u32, until_ms: u64) {
        self.own_change = Some(OwnChange {
            member,
            weight,
            version: self.ring.version(),
            until_ms,
        });
    }

    /// After a ring came by gossip: makes this node's own change again if a concurrent one won
    /// over it. A ring without this node after its join, in the time it stands by it, can only
    /// be one that never had it (a leave would be its own, a forget waits as long after a join).
    /// A ring with it after its leave is remade only at the leave's version (a tie lost): a
    /// newer one may be an admin's join of it again, which it must not undo.
    ///
    /// A ring that makes this node a member after it was not is a join made for it through
    /// another node (an admin's, the harness's): the node stands by that one too.
    pub(super) fn stand_by_own_change(&mut self, now: Now, was_member: bool) {
        let me = self.config.id.clone();
        let in_ring = self.ring.contains(&me);
        // Unless it is the ring that won over this node's own leave (a tie at the leave's
        // version), which the leave is made again over below.
        let lost_leave = self.own_change.as_ref().is_some_and(|c| {
            !c.member && self.ring.version() == c.version && now.mono_ms < c.until_ms
        });
        if in_ring && !was_member && !lost_leave {
            let weight = self.ring.members().get(&me).copied().unwrap_or(1);
            self.note_own_change(true, weight, now.mono_ms);
            return;
        }
        let Some(change) = self.own_change.clone() else {
            return;
        };
        if now.mono_ms >= change.until_ms
            || (!change.member && in_ring && self.ring.version() > change.version)
        {
            self.own_change = None;
            return;
        }
        if in_ring == change.member {
            return;
        }
        let remade = if change.member {
            self.ring.try_with_member(me.clone(), change.weight)
        } else if self.ring.members().len() > 1 {
            self.ring.try_without_member(&me)
        } else {
            return;
        };
        match remade {
            Ok(ring) => {
                tracing::warn!(
                    node = %me,
                    version = ring.version(),
                    change = if change.member { "join" } else { "leave" },
                    lost_to = self.ring.version(),
                    "this node's own membership change lost to a concurrent one: made again"
                );
                let addrs = self.addrs.clone();
                // Made again, it is stood by for what is left of the first one's time.
                if self.adopt(ring, &addrs) {
                    self.stand_by_until(change.member, change.weight, change.until_ms);
                }
            }
            Err(e) => {
                tracing::warn!(node = %me, error = %e, "cannot make this node's own membership change again")
            }
        }
    }

    /// Notes a change just made in the current ring for `node`, another node (an admin's join
    /// with `weight`, or forget): this node stands by it for [`OWN_CHANGE_STAND_MS`].
    pub(super) fn note_made_change(
        &mut self,
        node: &NodeId,
        member: bool,
        weight: u32,
        now_ms: u64,
    ) {
        debug_assert_ne!(
            *node, self.config.id,
            "a node's own changes are `own_change`"
        );
        if self.made_changes.len() >= MADE_CHANGES_MAX {
            self.made_changes.remove(0);
        }
        self.made_changes.push(MadeChange {
            node: node.clone(),
            member,
            weight,
            version: self.ring.version(),
            until_ms: now_ms.saturating_add(OWN_CHANGE_STAND_MS),
        });
    }

    /// After a ring came by gossip: makes again the changes this node made for other nodes that
    /// a concurrent change of the same version won over. A newer ring ends the stand-by (it was
    /// made on top of the change, or of a ring that won over it: then the change is lost, see
    /// the module docs), as does the end of its time.
    pub(super) fn stand_by_made_changes(&mut self, now: Now) {
        let version = self.ring.version();
        self.made_changes
            .retain(|c| now.mono_ms < c.until_ms && version <= c.version);
        let mut ring = self.ring.clone();
        for c in &self.made_changes {
            if c.version != version || ring.contains(&c.node) == c.member {
                continue;
            }
            let remade = if c.member {
                ring.try_with_member(c.node.clone(), c.weight)
            } else if ring.members().len() > 1 {
                ring.try_without_member(&c.node)
            } else {
                continue;
            };
            match remade {
                Ok(next) => ring = next,
                Err(e) => {
                    tracing::warn!(node = %self.config.id, of = %c.node, error = %e, "cannot make a membership change again")
                }
            }
        }
        if ring.version() == version {
            return;
        }
        tracing::warn!(
            node = %self.config.id,
            version = ring.version(),
            lost_to = version,
            "a membership change made here lost to a concurrent one: made again"
        );
        let addrs = self.addrs.clone();
        if self.adopt(ring, &addrs) {
            let version = self.ring.version();
            for c in &mut self.made_changes {
                c.version = version;
            }
        }
    }

    /// Makes room in the full table of known nodes for a member of this node's ring or of `ring`
    /// (which is about to be adopted if `newer`): forgets the first node, in id order, that is
    /// neither this node nor a member of either ring and holds no hint of this node's. Such a
    /// node is known only so that a node that left can finish handing its data over (best
    /// effort: its keys have other replicas). Returns whether there was one.
    fn forget_a_non_member(&mut self, ring: &Ring, newer: bool) -> bool {
        let victim = self
            .addrs
            .keys()
            .find(|id| {
                let member = self.ring.contains(id) || (newer && ring.contains(id));
                **id != self.config.id && !member && !self.hints.holds_for(id)
            })
            .cloned();
        let Some(victim) = victim else {
            return false;
        };
        tracing::warn!(node = %self.config.id, %victim, "{KNOWN_NODES_MAX} nodes known: forgetting one that is no member, to make room for a member");
        self.addrs.remove(&victim);
        self.unreachable.remove(&victim);
        self.last_heard_ms.remove(&victim);
        true
    }

    /// Removes `id`, a member gone for good, from the ring (the admin's `forget`): its partitions
    /// go to the other members as in a leave, except that nobody hands its data over; the new
    /// owners get it from the remaining replicas by anti-entropy, and hints held for it are
    /// taken in by their holders ([`Core::deliver_hints`]). Refused for this node itself (it
    /// leaves instead) and for a member this node can reach or heard from recently (it is not
    /// gone: make it leave), as Cassandra's `removenode` refuses a live node.
    pub(super) fn forget(&mut self, now: Now, id: &NodeId) -> Result<(), String> {
        if *id == self.config.id {
            return Err(format!("{id} cannot forget itself: make it leave instead"));
        }
        if !self.ring.contains(id) {
            return Err(format!("{id} is not a member of the ring"));
        }
        let heard_recently = self
            .last_heard_ms
            .get(id)
            .is_some_and(|&t| now.mono_ms.saturating_sub(t) < HEARD_FRESH_MS);
        let joined_ms_ago = self
            .member_since_ms
            .get(id)
            .map(|&t| now.mono_ms.saturating_sub(t))
            .filter(|&ago| ago < OWN_CHANGE_STAND_MS);
        if let Some(ago) = joined_ms_ago {
            return Err(format!(
                "{id} joined {ago} ms ago and stands by its join for {OWN_CHANGE_STAND_MS} ms: \
                 forget it after that if it is gone"
            ));
        }
        if !self.unreachable.contains(id) || heard_recently {
            return Err(format!(
                "{id} is alive (heard from recently): make it leave instead, or stop it first"
            ));
        }
        let ring = self
            .ring
            .try_without_member(id)
            .map_err(|e| format!("cannot forget {id}: {e}"))?;
        let addrs = self.addrs.clone();
        tracing::warn!(node = %self.config.id, %id, "forgetting a member gone for good");
        if self.adopt(ring, &addrs) {
            self.note_made_change(id, false, 0, now.mono_ms);
        }
        Ok(())
    }

    /// Gossips the failure view to one random peer, and probes every suspected peer.
    pub(super) fn gossip(&mut self) {
        let peers: Vec<NodeId> = others(
            &self.addrs.keys().cloned().collect::<Vec<_>>(),
            &self.config.id,
        );
        if peers.is_empty() {
            return;
        }
        let pick = peers[(self.next_random() % peers.len() as u64) as usize].clone();
        let view: Vec<NodeId> = self.unreachable.iter().cloned().collect();
        // After a start or a freeze every peer hears from us at once: they stop suspecting us (and
        // re-dial their links to us) without waiting for gossip to come round.
        let greet = std::mem::take(&mut self.greet);
        let ring = PeerMessage::RingState {
            ring: self.ring.clone(),
            addrs: self.addrs.clone(),
        };
        self.send(pick.clone(), ring);
        for peer in peers {
            let probe = self.unreachable.contains(&peer);
            if probe || peer == pick || greet {
                let message = PeerMessage::Gossip {
                    unreachable: view.clone(),
                    probe,
                };
                self.send(peer, message);
            }
        }
    }
}
