//! The protocol core: a plain state machine with no sockets, clocks, tasks or disk writes.
//!
//! # Contract
//!
//! Inputs go in through `handle_*` with the current time ([`Now`]): a client request
//! ([`Core::handle_request`]), a message from a peer ([`Core::handle_peer`]), a timer
//! ([`Core::handle_timeout`]) and news of a peer's reachability ([`Core::handle_peer_status`]).
//! Each is given a [`ReadState`], the only way the core sees storage.
//!
//! After a step of one or more inputs the driver must call [`Core::poll_ready`] and carry out the
//! [`Ready`] they produced with [`Ready::apply`]: it stores the step's writes, makes them durable as
//! the fsync policy says, and only then releases the `messages` and `replies`, which may depend on
//! those writes. "Persist before you ack" is a property of the type, not a promise in a comment:
//! `Ready`'s fields are private, and `apply` is the only way to the outputs that leave the node. If
//! storage fails, `apply` releases nothing and the driver must stop the node (its in-memory state
//! no longer matches the disk; a restart recovers from the disk).
//! Several inputs may share one `Ready` (the shell's group commit): the core reads its own pending
//! `writes` and `hint_writes` before storage, so later inputs of a step see earlier ones'
//! writes; `removals` come only from [`Core::handle_timeout`], which the shell runs last in a
//! step, and from the records storage reported lost, which `poll_ready` collects. The driver must
//! carry out a `Ready` before the next step. Then it calls [`Core::poll_timeout`] and calls
//! [`Core::handle_timeout`] no later than that instant.
//!
//! The same core runs under tokio (`dynamo serve`) and under turmoil (`dynamo sim`): see
//! [`crate::shell`].
//!
//! # What it runs
//!
//! - Coordination (§4.5): gets and puts with R/W quorums, read repair. A node that owns no replica
//!   of a key coordinates a get itself, with the first N reachable nodes of the preference list
//!   (stand-ins included under a sloppy quorum), and forwards a put to the first owner that
//!   answers a probe, passing over one that does not (paused, cut off) instead of waiting for the
//!   put's deadline; only an owner makes versions, unless no owner is reachable: then, under a
//!   sloppy quorum, the node stands in for one and makes the version itself (the paper's sloppy
//!   quorum, §4.6, on a minority side that holds no owner), and under a strict one it refuses.
//! - Restarts and pauses: round ids are unique across incarnations (a late ack meant for the last
//!   one never counts); a node greets every peer when it starts, so that they stop suspecting it
//!   at once; and a node that notices it was frozen (its inputs stopped for [`PAUSE_GAP_MS`]) does
//!   not blame its peers for the rounds that expired meanwhile.
//! - Failure detection: a peer is suspected when the shell's link to it breaks or a round it was
//!   part of expires; hearing from it clears the suspicion; suspected peers are probed by gossip.
//! - Sloppy quorum and hinted handoff (§4.6, [`crate::hints`]): stand-ins for unreachable owners,
//!   hints delivered when owners return, deleted on their ack.
//! - Anti-entropy (§4.7, [`crate::merkle`]): per-partition Merkle trees compared top-down with each
//!   co-replica in turn.
//! - Membership (§4.8): the ring gossiped push-pull to a random peer, joins and leaves, and the
//!   hand-over of keys a node no longer owns.

use crate::config::{Bug, NodeConfig};
use crate::coordinator::{ClientToken, ForwardRound, GetRound, Origin, PutRound, Round};
use crate::hints::{self, Delivery, HINT_DELIVERIES_IN_FLIGHT_MAX, Target};
use crate::merkle::{DEPTH, Tree};
use crate::ring::{NodeId, Ring};
use crate::store::Storage;
use crate::store::keyspace::{Keyspace, LostRecord, ReadState};
use crate::version::{Actor, KeyVersions, Rule, SIBLINGS_MAX, VClock};
use crate::wire::{self, ErrorKind, NodeStatus, PeerMessage, Request, RequestError, Response};
use std::collections::{BTreeMap, BTreeSet};

/// Time between two gossip rounds (one random peer, plus a probe of every suspected peer).
pub const GOSSIP_INTERVAL_MS: u64 = 500;
/// A peer heard from directly within this long is not suspected on another node's word.
pub const HEARD_FRESH_MS: u64 = 2_000;
/// Most (key, digest) entries one anti-entropy message carries; the rest waits for the next
/// exchange.
pub const AE_ENTRIES_PER_MESSAGE_MAX: usize = 4_096;
/// Most keys one anti-entropy message makes this node send back.
pub const AE_REPAIRS_PER_MESSAGE_MAX: usize = 512;

/// Time between two sweeps that hand over keys this node no longer owns.
pub const HANDOFF_INTERVAL_MS: u64 = 500;
/// Most keys handed over per sweep.
pub const HANDOFF_KEYS_PER_SWEEP_MAX: usize = 256;

/// A gap this long between two inputs means the node itself was frozen (SIGSTOP, a stalled VM):
/// the gossip timer alone brings an input every [`GOSSIP_INTERVAL_MS`].
pub const PAUSE_GAP_MS: u64 = 3 * GOSSIP_INTERVAL_MS;

/// A probe of an owner may take this fraction of the request timeout before the next is tried.
pub const PROBE_TIMEOUT_DIVISOR: u64 = 4;

/// Most rounds in flight at once; past it new requests are refused as overloaded instead of
/// queued, so memory stays bounded however fast clients send.
pub const ROUNDS_IN_FLIGHT_MAX: usize = 10_000;

/// The furthest ahead of this node's ring a gossiped ring may be: every change adds one to the
/// version, so a ring millions of changes ahead is damage or forgery, not news. Refusing it
/// keeps one bad frame from pushing the version to its limit.
pub const RING_VERSION_JUMP_MAX: u64 = 1 << 20;

/// Most nodes this node keeps an address for, members or not (a node that left still hands its
/// data over): a bound on what gossip can make it remember.
pub const KNOWN_NODES_MAX: usize = 2 * crate::ring::MEMBERS_MAX;

/// The time, as the driver's environment tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the node started: deadlines.
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch (may be skewed): version timestamps only.
    pub wall_ms: u64,
}

/// What a step produced: writes to store, then messages and replies that may only leave once the
/// writes are stored. Carried out by [`Ready::apply`], the only way to the outputs.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    /// Key states to store, one per key (its last state in the step).
    writes: Vec<(Vec<u8>, KeyVersions)>,
    /// Hints to store (or, `None`, delete) as (owner, key, state).
    hint_writes: Vec<(NodeId, Vec<u8>, Option<KeyVersions>)>,
    /// Keys to delete from storage: handed over to their new owners, or lost to damage.
    removals: Vec<Vec<u8>>,
    /// A new actor id this node now writes versions as.
    actor: Option<Actor>,
    /// The ring and the known nodes' addresses, when membership changed (a restarted node must
    /// remember the ring).
    membership: Option<(Ring, BTreeMap<NodeId, String>)>,
    /// Messages to peers.
    messages: Vec<(NodeId, PeerMessage)>,
    /// Answers to clients connected to this node.
    replies: Vec<(ClientToken, Response)>,
}

/// The outputs of a step that [`Ready::apply`] released after storing its writes.
#[derive(Debug, Default, PartialEq)]
pub struct Released {
    /// Messages to peers.
    pub messages: Vec<(NodeId, PeerMessage)>,
    /// Answers to clients connected to this node.
    pub replies: Vec<(ClientToken, Response)>,
    /// The ring and the known nodes' addresses, saved, when membership changed: the driver links
    /// to nodes it does not know yet.
    pub membership: Option<(Ring, BTreeMap<NodeId, String>)>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.hint_writes.is_empty()
            && self.removals.is_empty()
            && self.actor.is_none()
            && self.membership.is_none()
            && self.messages.is_empty()
            && self.replies.is_empty()
    }

    /// Stores the step's writes in `keyspace` (the new actor id first, then key states, hints,
    /// removals and the ring), syncs once for all of them if `config` says so
    /// ([`NodeConfig::sync_before_release`]; a changed ring is always synced), and only then
    /// releases what may leave the node: group commit, one sync per step.
    ///
    /// On an error nothing is released, and the error names the operation and, from the log
    /// store, the file. The core has already counted on the writes (its Merkle trees, hints and
    /// actor moved on), so the caller must stop the node rather than go on serving: see
    /// `crate::shell::run`.
    pub fn apply<S: Storage>(
        self,
        keyspace: &mut Keyspace<S>,
        config: &NodeConfig,
    ) -> std::io::Result<Released> {
        let Ready {
            writes,
            hint_writes,
            removals,
            actor,
            membership,
            messages,
            replies,
        } = self;
        let failed = |what: &'static str| {
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
        };
        let wrote = !writes.is_empty()
            || !hint_writes.is_empty()
            || !removals.is_empty()
            || actor.is_some();
        if let Some(actor) = &actor {
            keyspace
                .set_actor(actor)
                .map_err(failed("storing the new actor id"))?;
        }
        for (key, state) in writes {
            keyspace
                .write_state(&key, state)
                .map_err(failed("storing a key's state"))?;
        }
        for (owner, key, state) in &hint_writes {
            keyspace
                .write_hint(owner, key, state.as_ref())
                .map_err(failed("storing a hint"))?;
        }
        for key in &removals {
            keyspace
                .remove_state(key)
                .map_err(failed("removing a key's state"))?;
        }
        if let Some((ring, addrs)) = &membership {
            keyspace
                .save_membership(ring, addrs)
                .map_err(failed("saving the ring"))?;
        }
        if (wrote && config.sync_before_release()) || membership.is_some() {
            keyspace
                .sync()
                .map_err(failed("syncing the step's writes"))?;
        }
        Ok(Released {
            messages,
            replies,
            membership,
        })
    }
}

/// Counters for status and summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreStats {
    /// Puts this node coordinated to a quorum.
    pub puts_ok: u64,
    /// Gets this node coordinated to a quorum.
    pub gets_ok: u64,
    /// Requests that missed their quorum.
    pub unavailable: u64,
    /// Read-repair messages sent.
    pub repairs_sent: u64,
    /// Hints handed over to their owners and acknowledged.
    pub hints_delivered: u64,
    /// Anti-entropy exchanges started.
    pub ae_exchanges: u64,
    /// Keys whose local state changed through anti-entropy.
    pub ae_keys_repaired: u64,
}

/// The protocol state machine of one node. See the module docs for the calling contract.
#[derive(Debug)]
pub struct Core {
    config: NodeConfig,
    actor: Actor,
    ring: Ring,
    rounds: BTreeMap<u64, Round>,
    next_round: u64,
    unreachable: BTreeSet<NodeId>,
    last_heard_ms: BTreeMap<NodeId, u64>,
    /// Every node known, member or not (a node that left still hands its data over), by address.
    addrs: BTreeMap<NodeId, String>,
    /// Hand-overs in flight: request -> (key, new owner, clock sent, deadline).
    handoffs: BTreeMap<u64, (Vec<u8>, NodeId, VClock, u64)>,
    /// Per key being handed over, the owners that acknowledged its current clock.
    handoff_acks: BTreeMap<Vec<u8>, (VClock, BTreeSet<NodeId>)>,
    next_handoff_ms: u64,
    /// The last key the previous hand-over sweep looked at: the next sweep goes on after it, so
    /// keys whose owners cannot be reached do not keep the rest waiting.
    handoff_cursor: Option<Vec<u8>>,
    ready: Ready,
    stats: CoreStats,
    /// One Merkle tree per partition this node holds keys of.
    trees: BTreeMap<u32, Tree>,
    /// The tree of a partition with no keys here.
    empty_tree: Tree,
    /// Each co-replica and the partitions this node shares with it, in a fixed order.
    ae_peers: Vec<(NodeId, Vec<u32>)>,
    ae_cursor: usize,
    /// Hints held, as (owner, key).
    hints: BTreeSet<(NodeId, Vec<u8>)>,
    deliveries: BTreeMap<u64, Delivery>,
    next_gossip_ms: u64,
    next_hint_ms: u64,
    next_ae_ms: u64,
    /// xorshift state for picking gossip peers; seeded by the shell from the environment.
    rng: u64,
    /// When the last input came (see [`PAUSE_GAP_MS`]).
    last_input_ms: Option<u64>,
    /// Set when an input came after a gap: this node was frozen; cleared by the next timeout.
    resumed: bool,
    /// The next gossip round goes to every peer (after a start or a freeze: they suspect us).
    greet: bool,
}

impl Core {
    /// A core for `config`, writing versions as `actor`; `seed` drives its choice of gossip peers.
    /// Call [`Core::load`] before any input.
    pub fn new(config: NodeConfig, actor: impl Into<Actor>, seed: u64) -> Core {
        let actor = actor.into();
        let weights: BTreeMap<NodeId, u32> =
            config.members.keys().map(|id| (id.clone(), 1)).collect();
        let ring = Ring::new(config.partition_count, &weights);
        let addrs = config.members.clone();
        let ae_peers = Self::ae_peers(&ring, &config);
        let empty_tree = Tree::new(config.merkle_fanout);

        Core {
            config,
            actor,
            ring,
            rounds: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            last_heard_ms: BTreeMap::new(),
            addrs,
            handoffs: BTreeMap::new(),
            handoff_acks: BTreeMap::new(),
            next_handoff_ms: 0,
            handoff_cursor: None,
            ready: Ready::default(),
            stats: CoreStats::default(),
            trees: BTreeMap::new(),
            empty_tree,
            ae_peers,
            ae_cursor: 0,
            hints: BTreeSet::new(),
            deliveries: BTreeMap::new(),
            next_gossip_ms: 0,
            next_hint_ms: 0,
            next_ae_ms: 0,
            rng: seed | 1,
            // Unique across incarnations: an answer to the last incarnation's round must not count
            // for this one's round of the same number (a peer may still send it after a restart).
            next_round: ((seed ^ (seed >> 32)) << 32) | 1,
            last_input_ms: None,
            resumed: false,
            greet: true,
        }
    }

    /// Each co-replica under `ring` and the partitions this node shares with it.
    fn ae_peers(ring: &Ring, config: &NodeConfig) -> Vec<(NodeId, Vec<u32>)> {
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
        let mut new_node = false;
        for (id, addr) in addrs {
            if self.addrs.contains_key(id)
                || !crate::version::valid_node_id(id)
                || !wire::valid_addr(addr)
            {
                continue;
            }
            if self.addrs.len() >= KNOWN_NODES_MAX {
                tracing::warn!(node = %self.config.id, %id, "{KNOWN_NODES_MAX} nodes known already: a new one ignored");
                break;
            }
            self.addrs.insert(id.clone(), addr.clone());
            new_node = true;
        }
        let newer = match ring.version().cmp(&self.ring.version()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                postcard::to_stdvec(&ring).ok() > postcard::to_stdvec(&self.ring).ok()
            }
        };
        let usable = ring.members().keys().all(|m| self.addrs.contains_key(m));
        let adopted = newer && usable;
        if adopted {
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

    /// Builds the in-memory state derived from storage: the Merkle trees and the list of hints.
    /// A key whose state is damaged is left out of the trees; storage reports it lost, and the
    /// first [`Core::poll_ready`] drops it (see [`Core::handle_storage_lost`]).
    pub fn load(&mut self, store: &dyn ReadState) -> std::io::Result<()> {
        for key in store.data_keys() {
            match store.read_state(&key) {
                Ok(state) => self.update_tree(&key, &state),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::error!(
                        node = %self.config.id,
                        key = %String::from_utf8_lossy(&key),
                        error = %e,
                        "a stored key state is damaged"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        self.hints = store
            .hint_keys()
            .into_iter()
            .map(|(owner, key)| (NodeId::from(owner), key))
            .collect();
        Ok(())
    }

    /// This node's name.
    pub fn id(&self) -> &NodeId {
        &self.config.id
    }

    /// The actor id this incarnation writes versions as.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The ring this node routes by.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// Ends a step: drops the records `store` found damaged during it ([`ReadState::take_lost`],
    /// see [`Core::handle_storage_lost`]), and takes the outputs accumulated since the last call.
    pub fn poll_ready(&mut self, store: &dyn ReadState) -> Ready {
        for lost in store.take_lost() {
            self.handle_storage_lost(lost);
        }
        std::mem::take(&mut self.ready)
    }

    /// A stored record was found damaged (decay after recovery): drop it, so that reads of the
    /// key stop failing and anti-entropy and read repair refill it from the other replicas, and
    /// take a new actor id before the next version, since the lost state may hold the highest
    /// counter this node issued for the key. Called by [`Core::poll_ready`].
    pub fn handle_storage_lost(&mut self, lost: LostRecord) {
        tracing::error!(node = %self.config.id, ?lost, "dropping a damaged record");
        match lost {
            // A state written in this step replaces the damaged record anyway.
            LostRecord::State(key) if self.ready.writes.iter().any(|(k, _)| *k == key) => {
                self.renew_actor("a damaged record of a key written in this step");
            }
            LostRecord::State(key) => self.remove(key),
            LostRecord::Hint { owner, key } => {
                // A hint can hold a version this node coordinated, with its counter.
                self.renew_actor("a damaged hint");
                self.hints.remove(&(owner.clone(), key.clone()));
                self.ready.hint_writes.push((owner, key, None));
            }
        }
    }

    /// The monotonic instant by which [`Core::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let rounds = self.rounds.values().map(Round::deadline_ms);
        let deliveries = self.deliveries.values().map(|d| d.deadline_ms);
        let mut timers = vec![self.next_gossip_ms];
        if self.config.hinted_handoff_on() && !self.hints.is_empty() {
            timers.push(self.next_hint_ms);
        }
        if self.config.anti_entropy_on() && !self.ae_peers.is_empty() {
            timers.push(self.next_ae_ms);
        }
        rounds.chain(deliveries).chain(timers).min()
    }

    /// The shell learned that a peer is (un)reachable: a connection failed or came back.
    pub fn handle_peer_status(&mut self, node: &NodeId, reachable: bool) {
        if reachable {
            self.unreachable.remove(node);
        } else {
            self.unreachable.insert(node.clone());
        }
    }

    /// Peers this node believes unreachable.
    pub fn unreachable(&self) -> impl Iterator<Item = &NodeId> {
        self.unreachable.iter()
    }

    /// Hints held for other nodes.
    pub fn hints_pending(&self) -> usize {
        self.hints.len()
    }

    /// Notes the time of an input, and whether this node was frozen since the last one.
    fn note_input(&mut self, now: Now) {
        if let Some(last) = self.last_input_ms
            && now.mono_ms.saturating_sub(last) > PAUSE_GAP_MS
        {
            tracing::warn!(
                node = %self.config.id,
                gap_ms = now.mono_ms - last,
                "this node was frozen: it suspects no peer for the rounds that expired meanwhile"
            );
            self.resumed = true;
            self.greet = true;
        }
        self.last_input_ms = Some(now.mono_ms);
    }

    /// A client request arrived on one of this node's connections.
    pub fn handle_request(
        &mut self,
        now: Now,
        client: ClientToken,
        request: Request,
        store: &dyn ReadState,
    ) {
        self.note_input(now);
        self.start(now, Origin::Client(client), request, store, false);
        self.check_invariants();
    }

    /// A message arrived from a peer.
    pub fn handle_peer(
        &mut self,
        now: Now,
        from: NodeId,
        message: PeerMessage,
        store: &dyn ReadState,
    ) {
        self.note_input(now);
        if !self.addrs.contains_key(&from) || from == self.config.id {
            tracing::warn!(%from, "message from a stranger ignored");
            return;
        }
        // Hearing from a peer is the best evidence that it is up.
        self.unreachable.remove(&from);
        self.last_heard_ms.insert(from.clone(), now.mono_ms);
        // A key state from elsewhere is checked before anything merges it: nothing a peer sends
        // may panic the node, and a state that breaks the invariants could hide writes.
        if let Some(state) = message.state()
            && let Err(e) = state.validate(self.rule())
        {
            tracing::warn!(%from, error = %e, "invalid key state from a peer ignored");
            return;
        }
        match message {
            PeerMessage::Forward { req, request } => {
                let origin = Origin::Forwarded { from, req };
                self.start(now, origin, request, store, true);
            }
            PeerMessage::ForwardReply { req, response } => {
                if let Some(Round::Forward(f)) = self.rounds.get(&req)
                    && f.target == from
                    && !f.probing
                {
                    let Some(Round::Forward(f)) = self.rounds.remove(&req) else {
                        unreachable!()
                    };
                    self.answer(f.origin, response);
                }
            }
            PeerMessage::Store {
                req,
                key,
                state,
                hint,
            } => {
                let stored = match hint {
                    Some(owner) if owner != self.config.id => {
                        self.merge_hint(&owner, &key, &state, store).map(|()| false)
                    }
                    _ => self
                        .merge_into(&key, &state, store)
                        .map(|_| self.owns(&key)),
                };
                match stored {
                    Ok(owner) => self.send(from, PeerMessage::StoreAck { req, owner }),
                    Err(e) => tracing::error!(error = %e, "cannot store a replicated write"),
                }
            }
            PeerMessage::StoreAck { req, owner } => self.on_store_ack(req, &from, owner, store),
            PeerMessage::Fetch { req, key } => match self.read_with_hints(&key, store) {
                Ok(state) => self.send(from, PeerMessage::FetchReply { req, state }),
                Err(e) => tracing::error!(error = %e, "cannot read a key for a peer"),
            },
            PeerMessage::FetchReply { req, state } => {
                self.on_fetch_reply(now, req, &from, state, store)
            }
            PeerMessage::Repair { key, state } => {
                if self.owns(&key)
                    && let Err(e) = self.merge_into(&key, &state, store)
                {
                    tracing::error!(error = %e, "cannot apply read repair");
                }
            }
            PeerMessage::AeHashes {
                partition,
                level,
                nodes,
            } => self.on_ae_hashes(&from, partition, level, &nodes),
            PeerMessage::AeKeys {
                partition,
                leaves,
                entries,
                reply,
            } => self.on_ae_keys(&from, partition, &leaves, &entries, reply, store),
            PeerMessage::AeRepair { key, state } => {
                if self.owns(&key) {
                    match self.merge_into(&key, &state, store) {
                        Ok(true) => self.stats.ae_keys_repaired += 1,
                        Ok(false) => {}
                        Err(e) => tracing::error!(error = %e, "cannot apply anti-entropy"),
                    }
                }
            }
            PeerMessage::RingState { ring, addrs } => {
                let theirs_older = ring.version() < self.ring.version();
                self.adopt(ring, &addrs);
                if theirs_older {
                    let message = PeerMessage::RingState {
                        ring: self.ring.clone(),
                        addrs: self.addrs.clone(),
                    };
                    self.send(from, message);
                }
            }
            PeerMessage::Probe { req, key } => {
                let owner = self.owns(&key);
                self.send(from, PeerMessage::ProbeReply { req, owner });
            }
            PeerMessage::ProbeReply { req, owner } => {
                self.on_probe_reply(now, req, &from, owner, store)
            }
            PeerMessage::Gossip { unreachable, probe } => {
                for node in unreachable {
                    let fresh = self
                        .last_heard_ms
                        .get(&node)
                        .is_some_and(|&t| now.mono_ms.saturating_sub(t) < HEARD_FRESH_MS);
                    if node != self.config.id && self.addrs.contains_key(&node) && !fresh {
                        self.unreachable.insert(node);
                    }
                }
                if probe {
                    let message = PeerMessage::Gossip {
                        unreachable: self.unreachable.iter().cloned().collect(),
                        probe: false,
                    };
                    self.send(from, message);
                }
            }
        }
        self.check_invariants();
    }

    /// Time passed: expire rounds whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Now, store: &dyn ReadState) {
        self.note_input(now);
        // After a freeze, the rounds that expired meanwhile say nothing about the peers.
        let resumed = std::mem::take(&mut self.resumed);
        let expired: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.deadline_ms() <= now.mono_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            match self.rounds.remove(&id).expect("listed above") {
                Round::Put(p) => {
                    debug_assert!(
                        p.answered || !p.has_quorum(),
                        "a quorum is answered at once"
                    );
                    // Whoever did not ack in time is suspected until heard from again.
                    for node in p.targets.iter().filter(|t| !p.acks.contains(t)) {
                        if !resumed && *node != self.config.id {
                            self.unreachable.insert(node.clone());
                        }
                    }
                    self.hint_late(&p, store);
                    if !p.answered {
                        self.stats.unavailable += 1;
                        let message = format!(
                            "put reached {} of the {} replicas it needed before its deadline",
                            p.acks.len(),
                            p.w,
                        );
                        self.answer(p.origin, unavailable(message, p.acks, false));
                    }
                }
                Round::Get(g) => {
                    for node in g.replicas.iter().filter(|t| !g.replies.contains_key(*t)) {
                        if !resumed && *node != self.config.id {
                            self.unreachable.insert(node.clone());
                        }
                    }
                    if g.answered {
                        self.repair(&g, store);
                    } else {
                        self.stats.unavailable += 1;
                        let message = format!(
                            "get heard from {} of the {} replicas it needed before its deadline",
                            g.replies.len(),
                            g.r
                        );
                        self.answer(g.origin, unavailable(message, Vec::new(), true));
                    }
                }
                Round::Forward(mut f) if f.probing => {
                    if resumed {
                        // We, not the owner, were silent: ask it again.
                        self.probe(now, id, f);
                    } else {
                        self.unreachable.insert(f.target.clone());
                        if f.candidates.is_empty() {
                            self.put_without_owner(now, f.origin, f.request, store);
                        } else {
                            f.target = f.candidates.remove(0);
                            self.probe(now, id, f);
                        }
                    }
                }
                Round::Forward(f) => {
                    self.stats.unavailable += 1;
                    let is_put = matches!(f.request, Request::Put { .. });
                    let message =
                        format!("{} did not answer the forwarded request in time", f.target);
                    // A forwarded put may have been stored by the node we forwarded to.
                    self.answer(f.origin, unavailable(message, Vec::new(), !is_put));
                    if !resumed {
                        self.unreachable.insert(f.target);
                    }
                }
            }
        }
        let late: Vec<u64> = self
            .deliveries
            .iter()
            .filter(|(_, d)| d.deadline_ms <= now.mono_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            // The hint stays; it is sent again in a later round.
            self.deliveries.remove(&id);
        }
        if now.mono_ms >= self.next_gossip_ms {
            self.next_gossip_ms = now.mono_ms + GOSSIP_INTERVAL_MS;
            self.gossip();
        }
        if now.mono_ms >= self.next_handoff_ms {
            self.next_handoff_ms = now.mono_ms + HANDOFF_INTERVAL_MS;
            self.hand_over(now, store);
        }
        if now.mono_ms >= self.next_hint_ms {
            self.next_hint_ms = now.mono_ms + self.config.hint_interval_ms;
            if self.config.hinted_handoff_on() {
                self.deliver_hints(now, store);
            }
        }
        if now.mono_ms >= self.next_ae_ms {
            self.next_ae_ms = now.mono_ms + self.config.anti_entropy_interval_ms;
            if self.config.anti_entropy_on() {
                self.start_exchange();
            }
        }
        self.check_invariants();
    }

    fn start(
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
        match &request {
            Request::Status => {
                let status = NodeStatus {
                    id: self.config.id.clone(),
                    actor: self.actor.to_string(),
                    members: self.ring.members().keys().cloned().collect(),
                    requests_in_flight: self.rounds.len() as u64,
                    keys: store.key_count(),
                    unreachable: self.unreachable.iter().cloned().collect(),
                    hints_pending: self.hints.len() as u64,
                    hints_delivered: self.stats.hints_delivered,
                    ae_exchanges: self.stats.ae_exchanges,
                    ae_keys_repaired: self.stats.ae_keys_repaired,
                    read_repairs_sent: self.stats.repairs_sent,
                    ring: self.ring.clone(),
                    handoff_keys: self.keys_not_owned().len() as u64,
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
                let mut addrs = self.addrs.clone();
                addrs.insert(id.clone(), addr.clone());
                if self.ring.members().get(id) != Some(weight) {
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
                    self.adopt(ring, &addrs);
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
        if self.rounds.len() >= ROUNDS_IN_FLIGHT_MAX {
            let message = format!("{ROUNDS_IN_FLIGHT_MAX} requests already in flight");
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

    /// Removes `id`, a member gone for good, from the ring (the admin's `forget`): its partitions
    /// go to the other members as in a leave, except that nobody hands its data over; the new
    /// owners get it from the remaining replicas by anti-entropy, and hints held for it are
    /// taken in by their holders ([`Core::deliver_hints`]). Refused for this node itself (it
    /// leaves instead) and for a member this node can reach or heard from recently (it is not
    /// gone: make it leave), as Cassandra's `removenode` refuses a live node.
    fn forget(&mut self, now: Now, id: &NodeId) -> Result<(), String> {
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
        self.adopt(ring, &addrs);
        Ok(())
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
    fn probe(&mut self, now: Now, req: u64, mut round: ForwardRound) {
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
        self.rounds.insert(req, Round::Forward(round));
    }

    /// An owner answered a probe: forward the put to it if it owns the key, else try the next.
    fn on_probe_reply(
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
            };
            self.send(from.clone(), message);
            return;
        }
        // Its ring says otherwise (a membership change on its way): the next owner, else none.
        let Some(Round::Forward(mut f)) = self.rounds.remove(&req) else {
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
    fn put_without_owner(
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
            self.send(peer.clone(), message);
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
            self.rounds.insert(req, Round::Get(round));
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
            self.send(target.node.clone(), message);
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
            let response = round.response();
            self.answer(round.origin.clone(), response);
        }
        if !round.complete() {
            self.rounds.insert(req, Round::Put(round));
        }
    }

    /// A put round ended with owners that never acked (no stand-in was left for them, or they
    /// failed after the write was sent). With a sloppy quorum the coordinator keeps their copies
    /// as hints itself, so that a write taken while a replica was failing still reaches it later,
    /// even without anti-entropy (Dynamo §4.6).
    fn hint_late(&mut self, round: &PutRound, store: &dyn ReadState) {
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

    fn on_store_ack(&mut self, req: u64, from: &NodeId, owns_key: bool, store: &dyn ReadState) {
        if let Some(delivery) = self.deliveries.remove(&req) {
            if delivery.owner == *from {
                self.on_hint_delivered(delivery, store);
            }
            return;
        }
        if let Some((key, owner, clock, _)) = self.handoffs.remove(&req) {
            // Only an owner that says so keeps the key: see `PeerMessage::StoreAck`.
            if owner == *from
                && owns_key
                && let Some((current, acked)) = self.handoff_acks.get_mut(&key)
                && *current == clock
            {
                acked.insert(owner);
            }
            return;
        }
        let Some(Round::Put(round)) = self.rounds.get_mut(&req) else {
            return; // Late: the round expired.
        };
        let quorum = round.ack(from);
        let answer = (quorum && !round.answered).then(|| {
            round.answered = true;
            (round.origin.clone(), round.response())
        });
        if round.complete() {
            self.rounds.remove(&req);
        }
        if let Some((origin, response)) = answer {
            self.stats.puts_ok += 1;
            self.answer(origin, response);
        }
    }

    fn on_fetch_reply(
        &mut self,
        now: Now,
        req: u64,
        from: &NodeId,
        state: KeyVersions,
        store: &dyn ReadState,
    ) {
        let Some(Round::Get(round)) = self.rounds.get_mut(&req) else {
            return;
        };
        let quorum = round.reply(from, state);
        if !quorum && !round.complete() {
            return;
        }
        let Some(Round::Get(mut round)) = self.rounds.remove(&req) else {
            unreachable!()
        };
        if quorum {
            self.answer_get(now, &mut round);
        }
        if round.complete() {
            self.repair(&round, store);
        } else {
            self.rounds.insert(req, Round::Get(round));
        }
    }

    fn answer_get(&mut self, now: Now, round: &mut GetRound) {
        debug_assert!(!round.answered);
        round.answered = true;
        round.deadline_ms = now.mono_ms + self.config.repair_wait_ms;
        self.stats.gets_ok += 1;
        let response = round.response();
        self.answer(round.origin.clone(), response);
    }

    /// Read repair: send the merged state to every replica that answered with less. The local
    /// replica merges it into its *current* state: its reply may be older than a write this node
    /// coordinated while the round waited, and writing reply-plus-merge would roll that write back.
    fn repair(&mut self, round: &GetRound, store: &dyn ReadState) {
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
    fn merge_into(
        &mut self,
        key: &[u8],
        incoming: &KeyVersions,
        store: &dyn ReadState,
    ) -> std::io::Result<bool> {
        if wire::validate(&Request::Get { key: key.to_vec() }).is_err() {
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

    /// Merges a write into the hint held for `owner` (this node stands in for it).
    fn merge_hint(
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
        let mut state = self.read_hint(owner, key, store)?.unwrap_or_default();
        state.merge_by(self.rule(), incoming);
        check_bounds(key, &state)?;
        self.ready
            .hint_writes
            .push((owner.clone(), key.to_vec(), Some(state)));
        self.hints.insert((owner.clone(), key.to_vec()));
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
    fn read_with_hints(&self, key: &[u8], store: &dyn ReadState) -> std::io::Result<KeyVersions> {
        let mut state = self.read(key, store)?;
        let owners: Vec<NodeId> = self
            .hints
            .iter()
            .filter(|(_, k)| k == key)
            .map(|(o, _)| o.clone())
            .collect();
        for owner in owners {
            if let Some(hint) = self.read_hint(&owner, key, store)? {
                state.merge_by(self.rule(), &hint);
            }
        }
        Ok(state)
    }

    /// Whether this node is one of the N owners of `key`.
    fn owns(&self, key: &[u8]) -> bool {
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

    /// An owner acknowledged a hint: delete it, unless a newer write reached it meanwhile.
    fn on_hint_delivered(&mut self, delivery: Delivery, store: &dyn ReadState) {
        let current = match self.read_hint(&delivery.owner, &delivery.key, store) {
            Ok(current) => current,
            Err(e) => return tracing::error!(error = %e, "cannot read a delivered hint"),
        };
        if current.is_some_and(|h| h.clock == delivery.clock) {
            self.ready
                .hint_writes
                .push((delivery.owner.clone(), delivery.key.clone(), None));
            self.hints.remove(&(delivery.owner, delivery.key.clone()));
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
                self.hints.remove(&(owner.clone(), key.to_vec()));
                return;
            }
            Err(e) => return tracing::error!(error = %e, "cannot read a hint"),
        };
        match self.merge_into(key, &hint, store) {
            Ok(_) => {
                self.ready
                    .hint_writes
                    .push((owner.clone(), key.to_vec(), None));
                self.hints.remove(&(owner.clone(), key.to_vec()));
            }
            Err(e) => tracing::error!(error = %e, %owner, "cannot take in a hint for a node gone"),
        }
    }

    /// Sends held hints to owners that are reachable, a bounded number at a time.
    fn deliver_hints(&mut self, now: Now, store: &dyn ReadState) {
        let held: Vec<(NodeId, Vec<u8>)> = self.hints.iter().cloned().collect();
        for (owner, key) in held {
            if self.deliveries.len() >= HINT_DELIVERIES_IN_FLIGHT_MAX {
                break;
            }
            let in_flight = self
                .deliveries
                .values()
                .any(|d| d.owner == owner && d.key == key);
            if !in_flight && self.unreachable.contains(&owner) && !self.ring.contains(&owner) {
                // The owner left the ring and is gone (forgotten): nobody will take the hint.
                // This node takes the write in as its own copy; if it does not own the key, the
                // hand-over sweep pushes it to the owners, who keep it.
                self.absorb_hint(&owner, &key, store);
                continue;
            }
            if in_flight || self.unreachable.contains(&owner) {
                continue;
            }
            let state = match self.read_hint(&owner, &key, store) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    self.hints.remove(&(owner, key));
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
            let message = PeerMessage::Store {
                req,
                key,
                state,
                hint: None,
            };
            self.send(owner, message);
        }
    }

    /// Keys stored here whose partition this node no longer replicates.
    fn keys_not_owned(&self) -> Vec<Vec<u8>> {
        self.trees
            .iter()
            .filter(|(p, _)| !self.replicates(**p))
            .flat_map(|(_, tree)| tree.keys())
            .collect()
    }

    /// Hands keys this node no longer owns to their owners; once every owner has acknowledged the
    /// key's current state, deletes it here. Until then this node keeps it (and keeps pushing it),
    /// so a ring change never leaves a key without a holder.
    fn hand_over(&mut self, now: Now, store: &dyn ReadState) {
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
        self.handoff_cursor = keys.last().cloned();
        for key in keys {
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
                self.remove(key);
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

    /// Takes a new actor id at once, because this node may have forgotten the highest counter the
    /// current one issued for some key. At once, not before the next version: the new id is stored
    /// with this step's writes (`Ready::apply`, before anything leaves), so that a restart cannot
    /// forget the need (found by the nightly: a node that handed a key over, then restarted
    /// before it wrote again, issued (actor, 1) of the key a second time). The deliberate bug
    /// `reuse-actor` never changes its actor.
    fn renew_actor(&mut self, why: &str) {
        if self.config.has_bug(Bug::ReuseActor) {
            return;
        }
        let suffix = self.next_random() as u32;
        self.actor = format!("{}.{suffix:08x}", self.config.id).into();
        tracing::info!(node = %self.config.id, actor = %self.actor, why, "new actor id");
        self.ready.actor = Some(self.actor.clone());
    }

    /// Deletes a key handed over to its owners, or lost to damage.
    fn remove(&mut self, key: Vec<u8>) {
        // The key's clock goes with it, and with it this actor's highest counter for the key: were
        // this node to own the key again, it would issue those counters a second time (found by
        // the checker: a node that left and rejoined lost its next blind put). A new actor id
        // makes that impossible.
        self.renew_actor("a key's state was deleted");
        let partition = self.ring.partition_of(&key);
        if let Some(tree) = self.trees.get_mut(&partition) {
            tree.update(&key, None);
        }
        self.ready.removals.push(key);
    }

    /// xorshift64: enough to spread gossip and name actors; seeded, so simulations replay.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Gossips the failure view to one random peer, and probes every suspected peer.
    fn gossip(&mut self) {
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

    /// Starts one anti-entropy round: the next reachable co-replica gets this node's root hash of
    /// every partition they share (one small message each; equal roots end there).
    fn start_exchange(&mut self) {
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
    fn replicates(&self, partition: u32) -> bool {
        partition < self.ring.partition_count()
            && self
                .ring
                .partition_preference_list(partition, self.config.n)
                .contains(&self.config.id)
    }

    fn on_ae_hashes(&mut self, from: &NodeId, partition: u32, level: u32, nodes: &[(u32, u64)]) {
        if !self.config.anti_entropy_on() || !self.replicates(partition) || level > DEPTH {
            return;
        }
        let fanout = self.config.merkle_fanout;
        let tree = self.tree(partition);
        let differing: Vec<u32> = nodes
            .iter()
            .take(fanout.pow(DEPTH) as usize)
            .filter(|(i, h)| tree.hash(level, *i).is_some_and(|mine| mine != *h))
            .map(|(i, _)| *i)
            .collect();
        if differing.is_empty() {
            return;
        }
        let message = if level == DEPTH {
            let entries: Vec<(Vec<u8>, u64)> = differing
                .iter()
                .flat_map(|&leaf| tree.leaf_entries(leaf))
                .take(AE_ENTRIES_PER_MESSAGE_MAX)
                .collect();
            PeerMessage::AeKeys {
                partition,
                leaves: differing,
                entries,
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

    fn on_ae_keys(
        &mut self,
        from: &NodeId,
        partition: u32,
        leaves: &[u32],
        entries: &[(Vec<u8>, u64)],
        reply: bool,
        store: &dyn ReadState,
    ) {
        if !self.config.anti_entropy_on() || !self.replicates(partition) {
            return;
        }
        let tree = self.tree(partition);
        let leaf_count = self.config.merkle_fanout.pow(DEPTH);
        let leaves: Vec<u32> = leaves
            .iter()
            .copied()
            .filter(|&l| l < leaf_count)
            .take(leaf_count as usize)
            .collect();
        let theirs: BTreeMap<&[u8], u64> =
            entries.iter().map(|(k, d)| (k.as_slice(), *d)).collect();
        let mine: Vec<(Vec<u8>, u64)> = leaves
            .iter()
            .flat_map(|&leaf| tree.leaf_entries(leaf))
            .collect();
        let mut sent = 0;
        for (key, digest) in &mine {
            if theirs.get(key.as_slice()) == Some(digest) {
                continue;
            }
            if sent >= AE_REPAIRS_PER_MESSAGE_MAX {
                break;
            }
            match self.read(key, store) {
                Ok(state) => {
                    sent += 1;
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
            let entries = mine.into_iter().take(AE_ENTRIES_PER_MESSAGE_MAX).collect();
            let message = PeerMessage::AeKeys {
                partition,
                leaves,
                entries,
                reply: false,
            };
            self.send(from.clone(), message);
        }
    }

    /// Keeps the Merkle tree of the key's partition in step with a new state of the key.
    fn update_tree(&mut self, key: &[u8], state: &KeyVersions) {
        let partition = self.ring.partition_of(key);
        let fanout = self.config.merkle_fanout;
        let digest = state.digest();
        self.trees
            .entry(partition)
            .or_insert_with(|| Tree::new(fanout))
            .update(key, Some(digest));
    }

    /// Reads a key, seeing writes of this step that the driver has not applied yet.
    fn read(&self, key: &[u8], store: &dyn ReadState) -> std::io::Result<KeyVersions> {
        match self.ready.writes.iter().find(|(k, _)| k == key) {
            Some((_, state)) => Ok(state.clone()),
            None => store.read_state(key),
        }
    }

    /// Queues a key's new state. A key written twice in one step is stored once, with its last
    /// state: the earlier one is superseded before anything that depends on it leaves.
    fn write(&mut self, key: Vec<u8>, state: KeyVersions) {
        state.check_invariants();
        self.update_tree(&key, &state);
        match self.ready.writes.iter_mut().find(|(k, _)| *k == key) {
            Some(pending) => pending.1 = state,
            None => self.ready.writes.push((key, state)),
        }
    }

    fn send(&mut self, to: NodeId, message: PeerMessage) {
        debug_assert!(to != self.config.id, "a node never messages itself");
        self.ready.messages.push((to, message));
    }

    fn answer(&mut self, origin: Origin, response: Response) {
        match origin {
            Origin::Client(token) => self.ready.replies.push((token, response)),
            Origin::Forwarded { from, req } => {
                self.send(from, PeerMessage::ForwardReply { req, response })
            }
        }
    }

    /// How this node resolves versions: dotted, unless a deliberate bug says otherwise.
    fn rule(&self) -> Rule {
        match self.config.bug {
            Some(Bug::NaiveClock) => Rule::PlainClocks,
            Some(Bug::Lww) => Rule::LastWriteWins,
            _ => Rule::Dotted,
        }
    }

    fn round_id(&mut self) -> u64 {
        let id = self.next_round;
        self.next_round = self.next_round.wrapping_add(1);
        id
    }

    fn check_invariants(&self) {
        debug_assert!(self.rounds.len() <= ROUNDS_IN_FLIGHT_MAX);
        debug_assert!(self.rounds.keys().all(|&id| id < self.next_round));
        if cfg!(debug_assertions) {
            for round in self.rounds.values() {
                if let Round::Put(p) = round {
                    assert!(
                        p.answered || !p.has_quorum(),
                        "a quorum must have been answered"
                    );
                    assert!(!p.complete(), "a complete put round is over");
                }
            }
        }
    }
}

/// A put's payload, unpacked from its request.
struct Write {
    key: Vec<u8>,
    value: Vec<u8>,
    tombstone: bool,
    context: VClock,
}

/// The replicas other than `me`.
fn others(replicas: &[NodeId], me: &NodeId) -> Vec<NodeId> {
    replicas.iter().filter(|p| *p != me).cloned().collect()
}

fn error(kind: ErrorKind, message: String, definite: bool) -> Response {
    Response::Error {
        error: RequestError {
            kind,
            message,
            stored_on: Vec::new(),
            definite,
        },
    }
}

fn unavailable(message: String, stored_on: Vec<NodeId>, definite: bool) -> Response {
    Response::Error {
        error: RequestError {
            kind: ErrorKind::Unavailable,
            message,
            definite: definite && stored_on.is_empty(),
            stored_on,
        },
    }
}

/// Whether a merged state may be stored ([`KeyVersions::check_bounds`]); the error names the key.
fn check_bounds(key: &[u8], state: &KeyVersions) -> std::io::Result<()> {
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

/// A sibling's client view; re-exported for the shell and tests.
pub use crate::coordinator::view as sibling_view;

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
