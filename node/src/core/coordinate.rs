//! Coordination (Dynamo §4.5): where a request enters the core, and the rounds that answer it.
//!
//! A request from a client, or forwarded by a peer, starts here (`Core::start`): status,
//! replica-state and membership requests are answered at once; a get is coordinated by whichever
//! node took it, with the first N reachable nodes; a put by an owner, or, by a node that owns no
//! replica, forwarded to the first owner that answers a probe, or, when no owner is reachable
//! and the quorum is sloppy, coordinated by this node standing in for one. Here too are the
//! rounds' acks and replies, read repair, and the merge of a peer's state into the local
//! replica. It is one file because a request's routing, probes and rounds are one path from its
//! start to its answer; the rounds' bookkeeping itself is [`crate::coordinator`]. On a node with a
//! cluster secret, a put whose non-empty context this cluster did not sign is refused before
//! anything else, and the contexts of answers are signed ([`crate::auth`], "Signed contexts").

use super::{Core, Now, PROBE_TIMEOUT_DIVISOR, error, others, unavailable};
use crate::config::Bug;
use crate::coordinator::{ForwardRound, GetRound, Origin, PutRound, Round};
use crate::hints::{self, Target};
use crate::ring::NodeId;
use crate::store::keyspace::ReadState;
use crate::version::{COUNTER_MAX, KeyVersions, SIBLINGS_MAX, VClock};
use crate::wire::{self, ErrorKind, NodeStatus, PeerMessage, Request, Response};
use std::collections::BTreeMap;

impl Core {
    pub(super) fn start(
        &mut self,
        now: Now,
        origin: Origin,
        request: Request,
        store: &dyn ReadState,
        forwarded: bool,
    ) {
        if let Err(message) = wire::validate(&request) {
            return self.answer(origin, error(ErrorKind::BadRequest, message, true));
        }
        // A context claims the versions its writer saw, and the put replaces what it covers: only
        // one this cluster signed is believed (`crate::auth`, "Signed contexts"). Checked by the
        // node that takes the put and again by an owner it forwards it to, which costs one more
        // MAC and keeps the rule in one place.
        if let Request::Put {
            key,
            context,
            context_mac,
            ..
        } = &request
            && let Some(signer) = &self.context_signer
            && !context.is_empty()
            && !context_mac.is_some_and(|mac| signer.verify(key, context, &mac))
        {
            tracing::debug!(
                node = %self.config.id,
                key = %String::from_utf8_lossy(&key[..key.len().min(64)]),
                signed = context_mac.is_some(),
                "put refused: a context this cluster did not sign"
            );
            let message = crate::auth::CONTEXT_NOT_SIGNED.to_string();
            return self.answer(origin, error(ErrorKind::BadRequest, message, true));
        }
        match &request {
            Request::Status => {
                let status = NodeStatus {
                    id: self.config.id.clone(),
                    actor: self.actor.to_string(),
                    members: self.ring.members().keys().cloned().collect(),
                    requests_in_flight: self.rounds.len() as u64,
                    // The Merkle trees hold every stored key: no scan of the store.
                    keys: self.trees.values().map(|t| t.len() as u64).sum(),
                    unreachable: self.unreachable.iter().cloned().collect(),
                    hints_pending: self.hints.len() as u64,
                    hints_delivered: self.stats.hints_delivered,
                    ae_exchanges: self.stats.ae_exchanges,
                    ae_keys_repaired: self.stats.ae_keys_repaired,
                    read_repairs_sent: self.stats.repairs_sent,
                    ring: self.ring.clone(),
                    handoff_keys: self.keys_not_owned_count() as u64,
                    merkle_roots: self
                        .trees
                        .iter()
                        .filter(|(_, tree)| !tree.is_empty())
                        .map(|(&partition, tree)| (partition, tree.root()))
                        .collect(),
                    n: self.config.n as u32,
                    r: self.config.r as u32,
                    w: self.config.w as u32,
                    sloppy_quorum: self.config.sloppy_quorum,
                    peers: self
                        .addrs
                        .iter()
                        .filter(|(id, _)| **id != self.config.id)
                        .map(|(id, addr)| wire::PeerView {
                            id: id.clone(),
                            addr: addr.clone(),
                            member: self.ring.contains(id),
                            suspected: self.unreachable.contains(id),
                            heard_ms_ago: self
                                .last_heard_ms
                                .get(id)
                                .map(|&t| now.mono_ms.saturating_sub(t)),
                        })
                        .collect(),
                };
                let status = Box::new(status);
                return self.answer(origin, Response::Status { status });
            }
            Request::ReplicaState { key } => {
                // Through `read`: a write made earlier in the same step is this replica's state
                // (its answer leaves after the write is synced).
                let response = match self.read(key, store) {
                    Ok(state) => Response::ReplicaState { state },
                    Err(e) => storage_error(&e),
                };
                return self.answer(origin, response);
            }
            Request::Join { id, addr, weight } => {
                // Two members at one address can never both be reached: the dialer checks the
                // name the listener gives, and one of them would be unreachable for good.
                let taken = self.addrs.iter().find(|(other, other_addr)| {
                    *other != id && *other_addr == addr && self.ring.contains(other)
                });
                if let Some((other, _)) = taken {
                    let message =
                        format!("cannot add {id}: {addr} is the address of member {other}");
                    return self.answer(origin, error(ErrorKind::BadRequest, message, true));
                }
                let mut addrs = self.addrs.clone();
                addrs.insert(id.clone(), addr.clone());
                if self.ring.members().get(id) != Some(weight) {
                    // A re-weight of a member is not stood by: a rival ring without the member is
                    // its leave or forget, which a re-weight must not undo.
                    let fresh = !self.ring.contains(id);
                    let ring = match self.ring.try_with_member(id.clone(), *weight) {
                        Ok(ring) => ring,
                        Err(e) => {
                            let message = format!("cannot add {id}: {e}");
                            return self
                                .answer(origin, error(ErrorKind::BadRequest, message, true));
                        }
                    };
                    if !self.adopt(ring, &addrs) {
                        let message = format!("cannot add {id}: its address is refused or unknown");
                        return self.answer(origin, error(ErrorKind::BadRequest, message, true));
                    }
                    if fresh && *id != self.config.id {
                        self.note_made_change(id, true, *weight, now.mono_ms);
                    }
                } else {
                    self.adopt(self.ring.clone(), &addrs);
                }
                let response = Response::Membership {
                    ring: self.ring.clone(),
                    addrs: self.addrs.clone(),
                };
                return self.answer(origin, response);
            }
            Request::Leave => {
                let me = self.config.id.clone();
                if self.ring.contains(&me) {
                    if self.ring.members().len() == 1 {
                        let message = "the last member cannot leave".to_string();
                        return self.answer(origin, error(ErrorKind::BadRequest, message, true));
                    }
                    let ring = match self.ring.try_without_member(&me) {
                        Ok(ring) => ring,
                        Err(e) => {
                            let message = format!("cannot leave: {e}");
                            return self
                                .answer(origin, error(ErrorKind::BadRequest, message, true));
                        }
                    };
                    let addrs = self.addrs.clone();
                    if self.adopt(ring, &addrs) {
                        self.note_own_change(false, 0, now.mono_ms);
                    }
                }
                let response = Response::Membership {
                    ring: self.ring.clone(),
                    addrs: self.addrs.clone(),
                };
                return self.answer(origin, response);
            }
            Request::Forget { id } => {
                let response = match self.forget(now, id) {
                    Ok(()) => Response::Membership {
                        ring: self.ring.clone(),
                        addrs: self.addrs.clone(),
                    },
                    Err(message) => error(ErrorKind::BadRequest, message, true),
                };
                return self.answer(origin, response);
            }
            Request::Get { .. } | Request::Put { .. } => {}
        }
        if let Some(message) = self.overloaded(&origin) {
            return self.answer(origin, error(ErrorKind::Overloaded, message, true));
        }
        let key = match &request {
            Request::Get { key } | Request::Put { key, .. } => key.clone(),
            _ => unreachable!("answered above"),
        };
        let replicas = self.ring.preference_list(&key, self.config.n);
        if !replicas.contains(&self.config.id) {
            if forwarded {
                // Never forward twice: two nodes with different rings could bounce a request.
                let message = format!("{} is not a replica of this key", self.config.id);
                return self.answer(origin, error(ErrorKind::Unavailable, message, true));
            }
            return match request {
                // A read makes nothing: this node asks the first N reachable nodes itself.
                Request::Get { key } => {
                    let targets = self.targets(&key);
                    self.coordinate_get(now, origin, key, targets, store)
                }
                _ => self.route_put(now, origin, request, &replicas, store),
            };
        }
        let targets = self.targets(&key);
        debug_assert!(
            targets
                .iter()
                .any(|t| t.node == self.config.id && t.hint.is_none())
        );
        match request {
            Request::Get { key } => self.coordinate_get(now, origin, key, targets, store),
            Request::Put {
                key,
                value,
                tombstone,
                context,
                context_mac: _,
            } => {
                let write = Write {
                    key,
                    value,
                    tombstone,
                    context,
                };
                self.coordinate_put(now, origin, write, targets, store)
            }
            _ => unreachable!("answered above"),
        }
    }

    /// How long a probe of an owner may take before the next owner is tried.
    fn probe_timeout_ms(&self) -> u64 {
        (self.config.request_timeout_ms / PROBE_TIMEOUT_DIVISOR).max(1)
    }

    /// A put that this node, owning no replica of its key, received from a client: it goes to the
    /// first reachable owner that answers a probe ([`PeerMessage::Probe`]).
    fn route_put(
        &mut self,
        now: Now,
        origin: Origin,
        request: Request,
        owners: &[NodeId],
        store: &dyn ReadState,
    ) {
        let mut candidates: Vec<NodeId> = owners
            .iter()
            .filter(|o| !self.unreachable.contains(*o))
            .cloned()
            .collect();
        if candidates.is_empty() {
            return self.put_without_owner(now, origin, request, store);
        }
        let target = candidates.remove(0);
        let req = self.round_id();
        let round = ForwardRound {
            origin,
            target,
            candidates,
            probing: true,
            request,
            deadline_ms: 0,
        };
        self.probe(now, req, round);
    }

    /// Probes the round's target and waits for its answer (at most [`Core::probe_timeout_ms`]).
    pub(super) fn probe(&mut self, now: Now, req: u64, mut round: ForwardRound) {
        debug_assert!(round.probing);
        let Request::Put { key, .. } = &round.request else {
            unreachable!("only puts are forwarded")
        };
        let message = PeerMessage::Probe {
            req,
            key: key.clone(),
        };
        self.send(round.target.clone(), message);
        round.deadline_ms = now.mono_ms + self.probe_timeout_ms();
        self.insert_round(req, Round::Forward(round));
    }

    /// An owner answered a probe: forward the put to it if it owns the key, else try the next.
    pub(super) fn on_probe_reply(
        &mut self,
        now: Now,
        req: u64,
        from: &NodeId,
        owner: bool,
        store: &dyn ReadState,
    ) {
        let Some(Round::Forward(f)) = self.rounds.get_mut(&req) else {
            return;
        };
        if !f.probing || f.target != *from {
            return; // Late: the round moved on.
        }
        if owner {
            f.probing = false;
            f.deadline_ms = now.mono_ms + self.config.request_timeout_ms;
            let message = PeerMessage::Forward {
                req,
                request: f.request.clone(),
                share: f.origin.share(),
            };
            self.send(from.clone(), message);
            return;
        }
        // Its ring says otherwise (a membership change on its way): the next owner, else none.
        let Some(Round::Forward(mut f)) = self.remove_round(req) else {
            unreachable!("looked up above")
        };
        if f.candidates.is_empty() {
            self.put_without_owner(now, f.origin, f.request, store);
        } else {
            f.target = f.candidates.remove(0);
            self.probe(now, req, f);
        }
    }

    /// A put for a key none of whose owners is reachable from this node (a minority side that
    /// holds no owner): under a sloppy quorum with hinted handoff this node stands in for an owner
    /// and coordinates it with the first N reachable nodes (§4.6); otherwise it refuses at once,
    /// for certain (nothing was sent anywhere).
    pub(super) fn put_without_owner(
        &mut self,
        now: Now,
        origin: Origin,
        request: Request,
        store: &dyn ReadState,
    ) {
        let Request::Put {
            key,
            value,
            tombstone,
            context,
            context_mac: _,
        } = request
        else {
            unreachable!("only puts are forwarded")
        };
        // A stand-in's version lives in hints until they reach the owners: without hinted
        // handoff nothing would ever take it there (anti-entropy compares owners' data only).
        if !self.config.sloppy_quorum || !self.config.hinted_handoff_on() {
            self.stats.unavailable += 1;
            let message = if self.config.sloppy_quorum {
                "no owner of the key is reachable, and hinted handoff is off"
            } else {
                "no owner of the key is reachable, and the quorum is strict"
            };
            return self.answer(origin, unavailable(message.to_string(), Vec::new(), true));
        }
        let targets = self.stand_in_targets(&key);
        let write = Write {
            key,
            value,
            tombstone,
            context,
        };
        self.coordinate_put(now, origin, write, targets, store);
    }

    /// The targets of a put this node coordinates without owning the key: the first N reachable
    /// nodes, this one among them. It must keep the version it makes (its counter must never be
    /// issued again), so if the walk did not reach it, it takes the place of the last stand-in.
    fn stand_in_targets(&self, key: &[u8]) -> Vec<Target> {
        let me = self.config.id.clone();
        let mut targets = self.targets(key);
        if !targets.iter().any(|t| t.node == me) {
            let slot = targets
                .iter()
                .rposition(|t| t.hint.is_some())
                .unwrap_or(targets.len() - 1);
            let owner = targets[slot]
                .hint
                .clone()
                .unwrap_or_else(|| targets[slot].node.clone());
            targets[slot] = Target {
                node: me,
                hint: Some(owner),
            };
        }
        targets
    }

    fn coordinate_get(
        &mut self,
        now: Now,
        origin: Origin,
        key: Vec<u8>,
        targets: Vec<Target>,
        store: &dyn ReadState,
    ) {
        let local = match self.read_with_hints(&key, store) {
            Ok(state) => state,
            Err(e) => return self.answer(origin, storage_error(&e)),
        };
        let req = self.round_id();
        let replicas: Vec<NodeId> = targets.into_iter().map(|t| t.node).collect();
        for peer in others(&replicas, &self.config.id) {
            let message = PeerMessage::Fetch {
                req,
                key: key.clone(),
            };
            self.send_read(peer.clone(), message, None);
        }
        let mut round = GetRound {
            origin,
            key,
            replicas,
            replies: BTreeMap::new(),
            r: self.config.r,
            answered: false,
            deadline_ms: now.mono_ms + self.config.request_timeout_ms,
            rule: self.rule(),
            merged: KeyVersions::new(),
        };
        let id = self.config.id.clone();
        if round.reply(&id, local) {
            self.answer_get(now, &mut round);
        }
        if round.complete() {
            self.repair(&round, store);
        } else {
            self.insert_round(req, Round::Get(round));
        }
    }

    fn coordinate_put(
        &mut self,
        now: Now,
        origin: Origin,
        write: Write,
        targets: Vec<Target>,
        store: &dyn ReadState,
    ) {
        let Write {
            key,
            value,
            tombstone,
            context,
        } = write;
        // An owner keeps the key's versions in its data; a stand-in (a put no owner could take)
        // keeps them in its hints. Either way the new version starts from both, so that the
        // counter for the key goes on from the last one this actor issued: a node that stood in
        // for the key and owns it now (or owns it and stands in for another owner too) holds some
        // of its own versions in hints alone (found by the nightly, seed 83102: an owner issued
        // (actor, 1) again while its hint still held the first). An owner's data takes the hinted
        // versions in, as their delivery would; the hints still go to their owners.
        let me = self.config.id.clone();
        let stand_in_for = targets
            .iter()
            .find(|t| t.node == me)
            .and_then(|t| t.hint.clone());
        let mut state = match self.read_with_hints(&key, store) {
            Ok(state) => state,
            Err(e) => return self.answer(origin, storage_error(&e)),
        };
        if state.siblings.len() >= SIBLINGS_MAX
            && !state
                .siblings
                .iter()
                .any(|s| s.dot.as_ref().is_some_and(|d| context.covers(d)))
        {
            let message = format!(
                "the key has {SIBLINGS_MAX} siblings: read it and write with its context to reconcile"
            );
            return self.answer(origin, error(ErrorKind::Overloaded, message, true));
        }
        // A node never issues a counter at the limit: a context at it is refused (below), and a
        // read's context must never be, or nobody could update or delete the key again (a client's
        // forged context one below the limit bricked a key that way). Past the limit lies a new
        // actor id, whose counters start again from 1.
        let seen = state.clock.get(&self.actor).max(context.get(&self.actor));
        if seen >= COUNTER_MAX - 1 && context.counter_max() < COUNTER_MAX {
            self.renew_actor("this actor's next counter for a key would reach the limit");
        }
        if let Err(message) = state.check_put(&self.actor, &context) {
            tracing::warn!(node = %self.config.id, key = %String::from_utf8_lossy(&key), %message, "put refused");
            return self.answer(origin, error(ErrorKind::BadRequest, message, true));
        }
        let rule = self.rule();
        let version = state.put_by(rule, &self.actor, &context, value, tombstone, now.wall_ms);
        if let Err(e) = state.check_bounds(wire::STATE_BYTES_MAX) {
            // The write would make the key too large to send to a replica or to read back: the
            // key stays as it was (`state` is this step's copy, not yet written), and the client
            // learns why (a read, and a put with its context, reconciles the siblings instead).
            tracing::warn!(
                node = %self.config.id,
                key = %String::from_utf8_lossy(&key),
                error = %e,
                "put refused: the key would outgrow a frame"
            );
            let message = format!(
                "put refused: {e}; read the key and write with its context to reconcile its siblings"
            );
            return self.answer(origin, error(ErrorKind::Overloaded, message, true));
        }
        tracing::debug!(
            node = %self.config.id,
            key = %String::from_utf8_lossy(&key),
            clock = %state.clock,
            dot = ?version.dot,
            "coordinated a put"
        );
        match &stand_in_for {
            None => self.write(key.clone(), state.clone()),
            Some(owner) => {
                if let Err(e) = self.merge_hint(owner, &key, &state, store) {
                    return self.answer(origin, storage_error(&e));
                }
            }
        }
        let req = self.round_id();
        for target in targets.iter().filter(|t| t.node != me) {
            let message = PeerMessage::Store {
                req,
                key: key.clone(),
                state: state.clone(),
                hint: target.hint.clone(),
            };
            // Side by side with this node's own sync.
            self.send_new_version(target.node.clone(), message);
        }
        let mut round = PutRound {
            origin,
            version,
            targets: targets.into_iter().map(|t| t.node).collect(),
            acks: vec![self.config.id.clone()],
            w: self.config.w,
            deadline_ms: now.mono_ms + self.config.request_timeout_ms,
            answered: false,
            key,
            state,
        };
        // Deliberate bug `early-ack`: answer after the local write alone.
        if round.has_quorum() || self.config.has_bug(Bug::EarlyAck) {
            self.stats.puts_ok += 1;
            round.answered = true;
            let response = round.response(self.context_signer.as_ref());
            self.answer(round.origin.clone(), response);
        }
        if !round.complete() {
            self.insert_round(req, Round::Put(round));
        }
    }

    pub(super) fn on_store_ack(
        &mut self,
        req: u64,
        from: &NodeId,
        owns_key: bool,
        store: &dyn ReadState,
    ) {
        // A delivery or hand-over is settled only by the node it was sent to: an ack from another
        // (a reply to a request it was never sent) would drop the record, and the real ack that
        // follows would find nothing; a peer acking every request number kept every hint and
        // hand-over from completing.
        if let Some(delivery) = self.deliveries.get(&req) {
            if delivery.owner == *from {
                let delivery = self.deliveries.remove(&req).expect("looked up above");
                self.on_hint_delivered(delivery, store);
            }
            return;
        }
        if let Some((_, owner, _, _)) = self.handoffs.get(&req) {
            if owner != from {
                return;
            }
            let (key, owner, clock, _) = self.handoffs.remove(&req).expect("looked up above");
            // Only an owner that says so keeps the key: see `PeerMessage::StoreAck`.
            if owns_key
                && let Some((current, acked)) = self.handoff_acks.get_mut(&key)
                && *current == clock
            {
                acked.insert(owner);
            }
            return;
        }
        if !matches!(self.rounds.get(&req), Some(Round::Put(_))) {
            return; // Late: the round expired.
        }
        // Out of the table while the ack may answer it, so that what it counts is counted again
        // (an answered round no longer counts against its client's connection).
        let Some(Round::Put(mut round)) = self.remove_round(req) else {
            unreachable!("looked up above")
        };
        let quorum = round.ack(from);
        let answer = (quorum && !round.answered).then(|| {
            round.answered = true;
            (
                round.origin.clone(),
                round.response(self.context_signer.as_ref()),
                round.key.clone(),
            )
        });
        if !round.complete() {
            self.insert_round(req, Round::Put(round));
        }
        if let Some((origin, response, key)) = answer {
            self.stats.puts_ok += 1;
            // The answer reads back the version this node stored in an earlier step: it waits
            // for the key's writes to be durable here, not for other keys' (the replicas' are,
            // or they would not have acknowledged).
            self.answer_read(origin, response, &key);
        }
    }

    pub(super) fn on_fetch_reply(
        &mut self,
        now: Now,
        req: u64,
        from: &NodeId,
        key: &[u8],
        state: KeyVersions,
        store: &dyn ReadState,
    ) {
        let Some(Round::Get(round)) = self.rounds.get(&req) else {
            return;
        };
        // A reply of another key (a late reply to a round of an earlier incarnation that had
        // this number, or a damaged peer's) is not this round's: merged, its clock would drop
        // every sibling of the round's key it covers, in the answer and, by read repair, on
        // every replica.
        if round.key != key {
            tracing::warn!(
                node = %self.config.id,
                %from,
                req,
                "a fetch reply for another key than its round's ignored"
            );
            return;
        }
        // Out of the table while the reply grows it, so that what it holds is counted again.
        let Some(Round::Get(mut round)) = self.remove_round(req) else {
            unreachable!("looked up above")
        };
        let quorum = round.reply(from, state);
        if quorum {
            self.answer_get(now, &mut round);
        }
        if round.complete() {
            self.repair(&round, store);
        } else {
            self.insert_round(req, Round::Get(round));
        }
    }

    fn answer_get(&mut self, now: Now, round: &mut GetRound) {
        debug_assert!(!round.answered);
        round.answered = true;
        round.deadline_ms = now.mono_ms + self.config.repair_wait_ms;
        self.stats.gets_ok += 1;
        let response = round.response(self.context_signer.as_ref());
        let key = round.key.clone();
        self.answer_read(round.origin.clone(), response, &key);
    }

    /// Read repair: send the merged state to every replica that answered with less. The local
    /// replica merges it into its *current* state: its reply may be older than a write this node
    /// coordinated while the round waited, and writing reply-plus-merge would roll that write back.
    pub(super) fn repair(&mut self, round: &GetRound, store: &dyn ReadState) {
        if !self.config.read_repair_on() {
            return;
        }
        // Only owners are repaired; a stand-in's copy is a hint on its way to its owner.
        let owners = self.ring.preference_list(&round.key, self.config.n);
        let mut merged = round.merged();
        // Deliberate bug `repair-drops-siblings`: repair with the newest sibling alone, under the
        // full clock, so that replicas drop the others as superseded.
        if self.config.has_bug(Bug::RepairDropsSiblings) && merged.siblings.len() > 1 {
            let newest = merged
                .siblings
                .iter()
                .max_by(|a, b| (a.timestamp_ms, &a.dot).cmp(&(b.timestamp_ms, &b.dot)))
                .cloned()
                .expect("more than one sibling");
            merged.siblings = vec![newest];
        }
        for (node, state) in &round.replies {
            if *state == merged || !owners.contains(node) {
                continue;
            }
            if *node == self.config.id {
                if let Err(e) = self.merge_into(&round.key, &merged, store) {
                    tracing::error!(error = %e, "cannot apply read repair locally");
                }
            } else {
                self.stats.repairs_sent += 1;
                let message = PeerMessage::Repair {
                    key: round.key.clone(),
                    state: merged.clone(),
                };
                self.send(node.clone(), message);
            }
        }
    }

    /// Merges a state from a peer into the local one, writing only if it changes anything; returns
    /// whether it did.
    pub(super) fn merge_into(
        &mut self,
        key: &[u8],
        incoming: &KeyVersions,
        store: &dyn ReadState,
    ) -> std::io::Result<bool> {
        if wire::validate_key(key).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad key",
            ));
        }
        let mut state = self.read(key, store)?;
        let changed = state.merge_by(self.rule(), incoming);
        if changed {
            // Two states within the bounds can merge into one past them (replicas that took
            // different writes apart): keep this replica's state rather than store one that no
            // node could send or decode. Both replicas keep what they acknowledged.
            check_bounds(key, &state)?;
            self.write(key.to_vec(), state);
        }
        Ok(changed)
    }

    /// Whether this node is one of the N owners of `key`.
    pub(super) fn owns(&self, key: &[u8]) -> bool {
        self.ring
            .preference_list(key, self.config.n)
            .contains(&self.config.id)
    }

    /// Where a request for `key` goes (DESIGN.md, "Sloppy quorum and hinted handoff").
    fn targets(&self, key: &[u8]) -> Vec<Target> {
        let me = &self.config.id;
        let unreachable = &self.unreachable;
        hints::targets(
            &self.ring,
            key,
            self.config.n,
            self.config.sloppy_quorum,
            |node| node == me || !unreachable.contains(node),
        )
    }
}

/// A put's payload, unpacked from its request.
struct Write {
    key: Vec<u8>,
    value: Vec<u8>,
    tombstone: bool,
    context: VClock,
}

/// Whether a merged state may be stored ([`KeyVersions::check_bounds`]); the error names the key.
pub(super) fn check_bounds(key: &[u8], state: &KeyVersions) -> std::io::Result<()> {
    state.check_bounds(wire::STATE_BYTES_MAX).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a merge refused for key {:?}: {e}",
                String::from_utf8_lossy(&key[..key.len().min(64)])
            ),
        )
    })
}

fn storage_error(e: &std::io::Error) -> Response {
    error(
        ErrorKind::Storage,
        format!("local storage failed: {e}"),
        true,
    )
}
