//! Hinted handoff (Dynamo §4.6, [`crate::hints`]) and the hand-over of keys this node no longer
//! owns (§4.8): the two ways a node holds writes for others and takes them there.
//!
//! Hints: a stand-in keeps a write for an unreachable owner, a coordinator keeps the copies of
//! owners that never acked, and reads see both. The hint timer sends each hint to its owner once
//! it is reachable and deletes it on the owner's ack, unless a newer write reached it meanwhile;
//! a hint for an owner forgotten for good is taken into this node's own state instead.
//! Hand-over: after a ring change, the keys of partitions this node no longer replicates go to
//! their owners in bounded sweeps, and are deleted here only once every owner has acknowledged
//! the key's current clock as an owner. Both kinds of ack arrive as `StoreAck`s, which
//! `Core::on_store_ack` (coordinate.rs) sorts out.

use super::coordinate::check_bounds;
use super::{Core, HANDOFF_BYTES_PER_SWEEP_MAX, HANDOFF_KEYS_PER_SWEEP_MAX, Now};
use crate::coordinator::PutRound;
use crate::hints::{Delivery, HINT_DELIVERIES_IN_FLIGHT_MAX, HINT_DELIVERY_BYTES_PER_ROUND_MAX};
use crate::ring::NodeId;
use crate::store::keyspace::ReadState;
use crate::version::KeyVersions;
use crate::wire::{self, PeerMessage};
use std::collections::BTreeSet;

impl Core {
    /// A put round ended with owners that never acked (no stand-in was left for them, or they
    /// failed after the write was sent). With a sloppy quorum the coordinator keeps their copies
    /// as hints itself, so that a write taken while a replica was failing still reaches it later,
    /// even without anti-entropy (Dynamo §4.6).
    pub(super) fn hint_late(&mut self, round: &PutRound, store: &dyn ReadState) {
        if !self.config.sloppy_quorum || !self.config.hinted_handoff_on() {
            return;
        }
        let owners = self.ring.preference_list(&round.key, self.config.n);
        for owner in owners.iter().filter(|o| !round.acks.contains(o)) {
            if *owner == self.config.id {
                continue;
            }
            if let Err(e) = self.merge_hint(owner, &round.key, &round.state, store) {
                tracing::error!(error = %e, "cannot keep a late hint");
            }
        }
    }

    /// Merges a write into the hint held for `owner` (this node stands in for it).
    pub(super) fn merge_hint(
        &mut self,
        owner: &NodeId,
        key: &[u8],
        incoming: &KeyVersions,
        store: &dyn ReadState,
    ) -> std::io::Result<()> {
        if !self.addrs.contains_key(owner) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a hint for a stranger {owner}"),
            ));
        }
        // A key no client could send, checked as `merge_into` checks it: past the log's limit on
        // a record's key, the hint's write would fail and stop the node as a failing disk does.
        if wire::validate_key(key).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a hint for a bad key",
            ));
        }
        let mut state = self.read_hint(owner, key, store)?.unwrap_or_default();
        state.merge_by(self.rule(), incoming);
        check_bounds(key, &state)?;
        self.ready
            .hint_writes
            .push((owner.clone(), key.to_vec(), Some(state)));
        self.hints.insert(owner.clone(), key.to_vec());
        Ok(())
    }

    /// The hint held for `owner`, seeing hint writes of this step not applied yet.
    fn read_hint(
        &self,
        owner: &NodeId,
        key: &[u8],
        store: &dyn ReadState,
    ) -> std::io::Result<Option<KeyVersions>> {
        let pending = self
            .ready
            .hint_writes
            .iter()
            .rev()
            .find(|(o, k, _)| o == owner && k == key);
        match pending {
            Some((_, _, state)) => Ok(state.clone()),
            None => store.read_hint(owner, key),
        }
    }

    /// A key's state merged with every hint this node holds for it: what it answers a read with.
    pub(super) fn read_with_hints(
        &self,
        key: &[u8],
        store: &dyn ReadState,
    ) -> std::io::Result<KeyVersions> {
        let mut state = self.read(key, store)?;
        let owners: Vec<NodeId> = self.hints.owners_of(key).cloned().collect();
        for owner in owners {
            if let Some(hint) = self.read_hint(&owner, key, store)? {
                state.merge_by(self.rule(), &hint);
            }
        }
        Ok(state)
    }

    /// An owner acknowledged a hint: delete it, unless a newer write reached it meanwhile.
    pub(super) fn on_hint_delivered(&mut self, delivery: Delivery, store: &dyn ReadState) {
        let current = match self.read_hint(&delivery.owner, &delivery.key, store) {
            Ok(current) => current,
            Err(e) => return tracing::error!(error = %e, "cannot read a delivered hint"),
        };
        if current.is_some_and(|h| h.clock == delivery.clock) {
            self.ready
                .hint_writes
                .push((delivery.owner.clone(), delivery.key.clone(), None));
            self.hints.remove(&delivery.owner, &delivery.key);
            self.stats.hints_delivered += 1;
            // A stand-in that made versions of the key (no owner was reachable) knew its counter
            // for the key from this hint alone: if nothing it keeps still knows it, it must never
            // issue those counters again, so it takes a new actor id before its next version.
            let issued = delivery.clock.get(&self.actor);
            if issued > 0 {
                let known = self
                    .read_with_hints(&delivery.key, store)
                    .map(|s| s.clock.get(&self.actor))
                    .unwrap_or(0);
                if known < issued {
                    self.renew_actor("the hint that knew its counter for a key was handed over");
                }
            }
        }
    }

    /// Merges the hint held for `owner` into this node's own state of the key and deletes it.
    fn absorb_hint(&mut self, owner: &NodeId, key: &[u8], store: &dyn ReadState) {
        let hint = match self.read_hint(owner, key, store) {
            Ok(Some(hint)) => hint,
            Ok(None) => {
                self.hints.remove(owner, key);
                return;
            }
            Err(e) => return tracing::error!(error = %e, "cannot read a hint"),
        };
        match self.merge_into(key, &hint, store) {
            Ok(_) => {
                self.ready
                    .hint_writes
                    .push((owner.clone(), key.to_vec(), None));
                self.hints.remove(owner, key);
            }
            Err(e) => tracing::error!(error = %e, %owner, "cannot take in a hint for a node gone"),
        }
    }

    /// Sends held hints to owners that are reachable, a bounded number at a time
    /// ([`HINT_DELIVERIES_IN_FLIGHT_MAX`]), of a bounded weight per round
    /// ([`HINT_DELIVERY_BYTES_PER_ROUND_MAX`]).
    pub(super) fn deliver_hints(&mut self, now: Now, store: &dyn ReadState) {
        let held: Vec<(NodeId, Vec<u8>)> = self.hints.iter().cloned().collect();
        let mut sent_bytes = 0;
        for (owner, key) in held {
            if self.deliveries.len() >= HINT_DELIVERIES_IN_FLIGHT_MAX
                || sent_bytes >= HINT_DELIVERY_BYTES_PER_ROUND_MAX
            {
                break;
            }
            let in_flight = self
                .deliveries
                .values()
                .any(|d| d.owner == owner && d.key == key);
            // A hint "for" this node itself, or for a node it does not know, no node wrote
            // (`merge_hint` refuses both): damage under a good checksum, which would be sent to
            // itself or to nowhere at every round, for ever.
            let no_owner = owner == self.config.id || !self.addrs.contains_key(&owner);
            let gone = self.unreachable.contains(&owner) && !self.ring.contains(&owner);
            if !in_flight && (no_owner || gone) {
                // The owner left the ring and is gone (forgotten), or there is none: nobody will
                // take the hint. This node takes the write in as its own copy; if it does not own
                // the key, the hand-over sweep pushes it to the owners, who keep it.
                self.absorb_hint(&owner, &key, store);
                continue;
            }
            if in_flight || self.unreachable.contains(&owner) {
                continue;
            }
            let state = match self.read_hint(&owner, &key, store) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    self.hints.remove(&owner, &key);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a hint");
                    continue;
                }
            };
            let req = self.round_id();
            let delivery = Delivery {
                owner: owner.clone(),
                key: key.clone(),
                clock: state.clock.clone(),
                deadline_ms: now.mono_ms + self.config.request_timeout_ms,
            };
            self.deliveries.insert(req, delivery);
            sent_bytes += state.encoded_bytes_bound();
            let message = PeerMessage::Store {
                req,
                key,
                state,
                hint: None,
            };
            self.send(owner, message);
        }
    }

    /// How many keys are stored here whose partition this node no longer replicates (counted
    /// from the Merkle trees, not by listing the keys: a status request must stay cheap).
    pub(super) fn keys_not_owned_count(&self) -> usize {
        self.trees
            .iter()
            .filter(|(p, _)| !self.replicates(**p))
            .map(|(_, tree)| tree.len())
            .sum()
    }

    /// Keys stored here whose partition this node no longer replicates.
    pub(super) fn keys_not_owned(&self) -> Vec<Vec<u8>> {
        self.trees
            .iter()
            .filter(|(p, _)| !self.replicates(**p))
            .flat_map(|(_, tree)| tree.keys())
            .collect()
    }

    /// Hands keys this node no longer owns to their owners; once every owner has acknowledged the
    /// key's current state, deletes it here. Until then this node keeps it (and keeps pushing it),
    /// so a ring change never leaves a key without a holder.
    pub(super) fn hand_over(&mut self, now: Now, store: &dyn ReadState) {
        self.handoffs
            .retain(|_, (_, _, _, deadline)| *deadline > now.mono_ms);
        let mut keys = self.keys_not_owned();
        keys.sort();
        self.handoff_acks
            .retain(|k, _| keys.binary_search(k).is_ok());
        let in_flight: BTreeSet<Vec<u8>> = self
            .handoffs
            .values()
            .map(|(k, _, _, _)| k.clone())
            .collect();
        // In key order from the cursor round to it: a sweep bounded to the first keys would
        // retry those whose owners are away for ever and never reach the others.
        let start = match &self.handoff_cursor {
            Some(cursor) => keys.partition_point(|k| k <= cursor),
            None => 0,
        };
        keys.rotate_left(start);
        keys.truncate(HANDOFF_KEYS_PER_SWEEP_MAX);
        // Bounded in bytes too: the next sweep goes on after the last key this one looked at.
        let mut sent_bytes = 0;
        for key in keys {
            if sent_bytes >= HANDOFF_BYTES_PER_SWEEP_MAX {
                break;
            }
            self.handoff_cursor = Some(key.clone());
            let state = match self.read(&key, store) {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a key to hand over");
                    continue;
                }
            };
            let owners = self.ring.preference_list(&key, self.config.n);
            let acked = match self.handoff_acks.get(&key) {
                Some((clock, acked)) if *clock == state.clock => acked.clone(),
                _ => BTreeSet::new(),
            };
            if owners.iter().all(|o| acked.contains(o)) {
                self.handoff_acks.remove(&key);
                self.remove(key, Some(&state));
                continue;
            }
            self.handoff_acks
                .insert(key.clone(), (state.clock.clone(), acked.clone()));
            if in_flight.contains(&key) {
                continue;
            }
            for owner in owners.iter().filter(|o| !acked.contains(*o)) {
                if self.unreachable.contains(owner) {
                    continue;
                }
                let req = self.round_id();
                let deadline = now.mono_ms + self.config.request_timeout_ms;
                let handoff = (key.clone(), owner.clone(), state.clock.clone(), deadline);
                self.handoffs.insert(req, handoff);
                sent_bytes += state.encoded_bytes_bound();
                let message = PeerMessage::Store {
                    req,
                    key: key.clone(),
                    state: state.clone(),
                    hint: None,
                };
                self.send(owner.clone(), message);
            }
        }
    }
}
