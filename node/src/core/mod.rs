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
//! those writes. Or, to go on serving while the disk syncs, with [`Ready::store`], which stores the
//! writes and holds the outputs in a [`Stored`] until a sync begun after it is done; meanwhile
//! [`Stored::take_reads`] gives what depends on no unsynced write (fetches, and fetch replies, get
//! answers and acknowledged puts' answers of keys whose writes are all durable), and the versions
//! this node just coordinated on their way to the replicas, so that the replicas' syncs run beside
//! its own (a crash before it cannot make the node issue their dots again: a node that did not
//! stop cleanly takes a new actor id, [`crate::store::clean`]).
//! "Persist before you ack" is a property of the type, not a promise in a comment: `Ready`'s
//! fields are private, `apply` and `store` are the only ways to the outputs that leave the node,
//! and `take_reads` checks the kinds it gives (never an acknowledgement, a repair, a hint or a
//! hand-over). If storage
//! fails, nothing is released and the driver must stop the node (its in-memory state no longer
//! matches the disk; a restart recovers from the disk).
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
//!
//! # Layout
//!
//! The core is one [`Core`], with one `impl Core` per protocol concern in its own file. This file
//! keeps the state, the constants that bound it, the entry points (`handle_*`, `poll_*`) that
//! dispatch to the concerns, and what they share: reads and writes through the step's [`Ready`],
//! messages and answers, new actor ids, and the invariants checked after every input.
//!
//! - `ready.rs`: [`Ready`] and [`Released`], what a step produced and how it is carried out.
//! - `coordinate.rs`: requests, get and put rounds, forwarding and probes, read repair (§4.5).
//! - `handoff.rs`: hints kept, delivered and taken in (§4.6), and the hand-over of keys this node
//!   no longer owns.
//! - `anti_entropy.rs`: the Merkle trees and their exchanges with co-replicas (§4.7).
//! - `membership.rs`: adopting rings, forgetting members gone for good, gossip (§4.8).
//! - `tests.rs`: the core's tests, with an in-memory network and a fake clock.

use crate::config::{Bug, NodeConfig};
use crate::coordinator::{ClientToken, Origin, Round, Share};
use crate::hints::Delivery;
use crate::merkle::Tree;
use crate::ring::{NodeId, Ring};
use crate::store::keyspace::{LostRecord, ReadState};
use crate::version::{Actor, KeyVersions, Rule, VClock};
use crate::wire::{ErrorKind, PeerMessage, Request, RequestError, Response};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

mod anti_entropy;
mod coordinate;
mod handoff;
mod membership;
mod ready;

use ready::Gate;
pub use ready::{Ready, Released, Stored};

/// Time between two gossip rounds (one random peer, plus a probe of every suspected peer).
pub const GOSSIP_INTERVAL_MS: u64 = 500;
/// A peer heard from directly within this long is not suspected on another node's word.
pub const HEARD_FRESH_MS: u64 = 2_000;
/// Most (key, digest) entries one anti-entropy message carries; the rest waits for the next
/// exchange.
pub const AE_ENTRIES_PER_MESSAGE_MAX: usize = 4_096;
/// Most bytes of (key, digest) entries one anti-entropy message carries, each reckoned as its
/// key's length plus [`AE_ENTRY_OVERHEAD_BYTES`]; the rest waits for the next exchange, as past
/// [`AE_ENTRIES_PER_MESSAGE_MAX`]. The count alone does not keep a message within its frame:
/// 4,096 keys of [`crate::wire::KEY_BYTES_MAX`] make 16 MiB, which the shell drops as too large
/// to send, and an exchange whose entries never arrive never repairs anything. Half a frame.
pub const AE_ENTRIES_BYTES_PER_MESSAGE_MAX: usize = crate::wire::FRAME_BYTES_MAX / 2;
/// A bound of the bytes an entry encodes to beside its key: the key's length and the digest,
/// each a varint of at most 10 bytes.
pub const AE_ENTRY_OVERHEAD_BYTES: usize = 20;
/// Most keys one anti-entropy message makes this node send back.
pub const AE_REPAIRS_PER_MESSAGE_MAX: usize = 512;
/// Most (co-replica, partition) pairs whose next anti-entropy slice this node remembers; past it
/// it forgets them all, and their next exchanges start again from the first key (as many
/// partitions as a ring may have; each entry a key of at most
/// [`crate::wire::KEY_BYTES_MAX`] plus one byte).
pub const AE_SLICE_STARTS_MAX: usize = crate::ring::PARTITION_COUNT_MAX as usize;
/// Most bytes of key states one anti-entropy message makes this node send back (reckoned by
/// [`KeyVersions::encoded_bytes_bound`]), past the first: the count alone lets one small
/// message make hundreds of states of megabytes in one step. Two frames' worth, so that the
/// largest state always goes.
pub const AE_REPAIR_BYTES_PER_MESSAGE_MAX: usize = 2 * crate::wire::FRAME_BYTES_MAX;

/// Time between two sweeps that hand over keys this node no longer owns.
pub const HANDOFF_INTERVAL_MS: u64 = 500;
/// Most keys handed over per sweep.
pub const HANDOFF_KEYS_PER_SWEEP_MAX: usize = 256;
/// Most bytes of key states one hand-over sweep sends (reckoned by
/// [`KeyVersions::encoded_bytes_bound`], each copy to each owner counted), past the first: the
/// count alone let a sweep of keys of large values make gigabytes of messages in one step, most
/// of which the peer links' budgets then dropped. The rest waits for the next sweep. Two
/// frames' worth, so that the largest state always goes.
pub const HANDOFF_BYTES_PER_SWEEP_MAX: usize = 2 * crate::wire::FRAME_BYTES_MAX;

/// A gap this long between two inputs means the node itself was frozen (SIGSTOP, a stalled VM):
/// the gossip timer alone brings an input every [`GOSSIP_INTERVAL_MS`].
pub const PAUSE_GAP_MS: u64 = 3 * GOSSIP_INTERVAL_MS;

/// A probe of an owner may take this fraction of the request timeout before the next is tried.
pub const PROBE_TIMEOUT_DIVISOR: u64 = 4;

/// Most rounds in flight at once; past it new requests are refused as overloaded instead of
/// queued, so memory stays bounded however fast clients send. Clients' requests have all but
/// [`ADMIN_ROUNDS_RESERVED`] of it, and one connection at most [`CONNECTION_ROUNDS_MAX`].
pub const ROUNDS_IN_FLIGHT_MAX: usize = 10_000;

/// Most bytes the rounds in flight may hold together (the states a get collects, the state a put
/// sent, a forwarded put's value: [`Round::held_bytes`]); past it new requests are refused as
/// overloaded. The count alone does not bound memory: ten thousand reads of a key of a few
/// megabytes, each holding a state per replica, would hold tens of gigabytes.
pub const ROUNDS_HELD_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Rounds in flight kept for admins ([`Share::Admins`]): clients' requests are refused as
/// overloaded past `ROUNDS_IN_FLIGHT_MAX - ADMIN_ROUNDS_RESERVED` rounds, admins' only once they
/// hold this many themselves and the node is at [`ROUNDS_IN_FLIGHT_MAX`], so that clients who
/// fill the node leave the operators a way in.
pub const ADMIN_ROUNDS_RESERVED: usize = ROUNDS_IN_FLIGHT_MAX / 8;

/// Bytes of [`ROUNDS_HELD_BYTES_MAX`] kept for admins' rounds, as [`ADMIN_ROUNDS_RESERVED`]:
/// theirs even when clients' rounds, which grow as their replicas answer, hold more than their
/// share.
pub const ADMIN_ROUNDS_HELD_BYTES_RESERVED: usize = ROUNDS_HELD_BYTES_MAX / 8;

/// Most rounds one connection of this node may await the answers of; past it its requests are
/// refused as overloaded until answers come back. A round answered at its quorum and kept for its
/// last replicas does not count: a client that sends one request at a time (as this project's
/// do) is never refused, however fast it goes. A connection that pipelines thousands without
/// waiting would otherwise take the whole clients' share by itself.
pub const CONNECTION_ROUNDS_MAX: usize = 64;

/// The furthest ahead of this node's ring a gossiped ring may be: every change adds one to the
/// version, so a ring millions of changes ahead is damage or forgery, not news. Refusing it
/// keeps one bad frame from pushing the version to its limit.
pub const RING_VERSION_JUMP_MAX: u64 = 1 << 20;

/// Most nodes this node keeps an address for, members or not (a node that left still hands its
/// data over): a bound on what gossip can make it remember.
pub const KNOWN_NODES_MAX: usize = 2 * crate::ring::MEMBERS_MAX;

/// What the rounds in flight hold: bytes ([`Round::held_bytes`]), in all and for clients'
/// requests ([`Share::Clients`]), and the rounds whose answer a connection of this node still
/// awaits ([`Round::awaited_by_conn`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct RoundsHeld {
    bytes: usize,
    clients: usize,
    clients_bytes: usize,
    /// Unanswered rounds by client connection; a connection with none has no entry.
    by_conn: BTreeMap<u64, usize>,
}

impl RoundsHeld {
    fn add(&mut self, round: &Round) {
        let bytes = round.held_bytes();
        self.bytes += bytes;
        if round.origin().share() == Share::Clients {
            self.clients += 1;
            self.clients_bytes += bytes;
        }
        if let Some(conn) = round.awaited_by_conn() {
            *self.by_conn.entry(conn).or_default() += 1;
        }
    }

    /// The inverse of [`RoundsHeld::add`] for a round added unchanged: anything else is a
    /// bookkeeping bug, and a count that wrapped would refuse every request from then on.
    fn remove(&mut self, round: &Round) {
        let less = |count: &mut usize, by: usize| {
            *count = count
                .checked_sub(by)
                .expect("a round removed as it was added");
        };
        let bytes = round.held_bytes();
        less(&mut self.bytes, bytes);
        if round.origin().share() == Share::Clients {
            less(&mut self.clients, 1);
            less(&mut self.clients_bytes, bytes);
        }
        if let Some(conn) = round.awaited_by_conn() {
            let Entry::Occupied(mut of_conn) = self.by_conn.entry(conn) else {
                panic!("a round removed as it was added: connection {conn} has none");
            };
            less(of_conn.get_mut(), 1);
            if *of_conn.get() == 0 {
                of_conn.remove();
            }
        }
    }
}

/// The time, as the driver's environment tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the node started: deadlines.
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch (may be skewed): version timestamps only.
    pub wall_ms: u64,
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
    /// What `rounds` hold, counted by [`Core::insert_round`] and [`Core::remove_round`], the only
    /// ways in and out of the table.
    held: RoundsHeld,
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
    /// Per (co-replica, partition), where the next `AeKeys` to it starts when the last one could
    /// not carry every key of the leaves that differed. Per peer, not per partition alone: with
    /// fixed rounds and peers taken in turn, one start shared by two peers gave each of them
    /// every other slice, for good. At most [`AE_SLICE_STARTS_MAX`].
    ae_slice_starts: BTreeMap<(NodeId, u32), crate::wire::AePosition>,
    /// Hints held, as (owner, key).
    hints: crate::hints::Held,
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
    /// Signs the contexts this node hands to clients and checks those they hand back (None: an
    /// open node, which does neither; `crate::auth`, "Signed contexts").
    context_signer: Option<crate::auth::ContextSigner>,
    /// This node's own join or leave, which it makes again if a concurrent change wins over it
    /// (membership.rs).
    own_change: Option<membership::OwnChange>,
    /// The joins and forgets of other nodes made through this one, which it makes again if a
    /// concurrent change wins over them (membership.rs; at most `MADE_CHANGES_MAX`).
    made_changes: Vec<membership::MadeChange>,
    /// When this node took the ring that made each member one, for members that joined while it
    /// ran (monotonic ms): a forget waits until the member no longer stands by its join.
    member_since_ms: BTreeMap<NodeId, u64>,
}

/// The longest key a stored record may have and still be loaded, frozen: `load` deletes what it
/// finds beyond, so this must never shrink with the wire's bound (an upgrade that lowered
/// `wire::KEY_BYTES_MAX` would otherwise delete every longer key on every node), nor fall below it
/// (keys the wire let in would be deleted).
const STORED_KEY_BYTES_MAX: usize = 4 * 1024;
const _: () = assert!(crate::wire::KEY_BYTES_MAX <= STORED_KEY_BYTES_MAX);

/// Whether a node could ever have stored `key`: not empty, and not past
/// [`STORED_KEY_BYTES_MAX`].
fn storable_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= STORED_KEY_BYTES_MAX
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
        let context_signer = crate::auth::ContextSigner::for_config(&config.auth);

        Core {
            config,
            actor,
            ring,
            rounds: BTreeMap::new(),
            held: RoundsHeld::default(),
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
            ae_slice_starts: BTreeMap::new(),
            hints: crate::hints::Held::default(),
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
            context_signer,
            own_change: None,
            made_changes: Vec::new(),
            member_since_ms: BTreeMap::new(),
        }
    }

    /// Builds the in-memory state derived from storage: the Merkle trees and the list of hints.
    /// A key whose state is damaged is left out of the trees; storage reports it lost, and the
    /// first [`Core::poll_ready`] drops it (see [`Core::handle_storage_lost`]). A state or hint
    /// of a key no client could send is damage too, dropped at once the same way.
    pub fn load(&mut self, store: &dyn ReadState) -> std::io::Result<()> {
        for key in store.data_keys() {
            // A key no client could send was never stored by a node (a put's key is checked, and
            // `merge_into` refuses one from a peer): damage under a good checksum, as for hints
            // below. Its co-replicas would refuse it at every anti-entropy exchange and its
            // owners at every hand-over, for ever, and its partition's trees would never agree.
            if !storable_key(&key) {
                self.handle_storage_lost(LostRecord::State(key));
                continue;
            }
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
        for (owner, key) in store.hint_keys() {
            let owner = NodeId::from(owner);
            // A hint of a key no client could send was never written by a node (`merge_hint`
            // refuses one): damage under a good checksum. Its owner would refuse it at every
            // round, for ever.
            if !storable_key(&key) {
                self.handle_storage_lost(LostRecord::Hint { owner, key });
                continue;
            }
            self.hints.insert(owner, key);
        }
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
            LostRecord::State(key) => self.remove(key, None),
            LostRecord::Hint { owner, key } => {
                // A hint can hold a version this node coordinated, with its counter.
                self.renew_actor("a damaged hint");
                self.hints.remove(&owner, &key);
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
            PeerMessage::Forward {
                req,
                request,
                share,
            } => {
                let origin = Origin::Forwarded { from, req, share };
                // A node forwards only a client's put (`Core::route_put`). An admin request in a
                // forward would go around the shell's rule that a peer link carries no requests,
                // and a peer's `Forward { Leave }` made this node leave the ring.
                if request.is_admin() {
                    tracing::warn!(node = %self.config.id, ?origin, "a forwarded admin request refused");
                    let message = "an admin request cannot be forwarded: a node forwards only \
                                   a client's put"
                        .to_string();
                    self.answer(origin, error(ErrorKind::BadRequest, message, true));
                } else {
                    self.start(now, origin, request, store, true);
                }
            }
            PeerMessage::ForwardReply { req, response } => {
                if let Some(Round::Forward(f)) = self.rounds.get(&req)
                    && f.target == from
                    && !f.probing
                {
                    let Some(Round::Forward(f)) = self.remove_round(req) else {
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
                Ok(state) => {
                    let reply = PeerMessage::FetchReply {
                        req,
                        key: key.clone(),
                        state,
                    };
                    self.send_read(from, reply, Some(&key))
                }
                Err(e) => tracing::error!(error = %e, "cannot read a key for a peer"),
            },
            PeerMessage::FetchReply { req, key, state } => {
                self.on_fetch_reply(now, req, &from, &key, state, store)
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
                from: start,
                through,
                reply,
            } => {
                let slice = anti_entropy::Slice {
                    from: start,
                    through,
                };
                self.on_ae_keys(&from, partition, &leaves, &entries, slice, reply, store)
            }
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
                let theirs = ring.version();
                let was_member = self.ring.contains(&self.config.id);
                if self.adopt(ring, &addrs) {
                    self.stand_by_own_change(now, was_member);
                    self.stand_by_made_changes(now);
                }
                // After the stand-by, which may have made a newer ring: the sender learns it.
                if theirs < self.ring.version() {
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
            match self.remove_round(id).expect("listed above") {
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

    /// Deletes a key handed over to its owners (`deleted`: the state deleted), or lost to damage
    /// (`None`: what it held is unknown).
    fn remove(&mut self, key: Vec<u8>, deleted: Option<&KeyVersions>) {
        // The key's clock goes with it, and with it this actor's highest counter for the key: were
        // this node to own the key again, it would issue those counters a second time (found by
        // the checker: a node that left and rejoined lost its next blind put). A new actor id
        // makes that impossible. Only if the current actor issued any: a state without a counter
        // of it takes none along (its counters for the key are all in the key's state, or in a
        // hint, which stays). A new actor for every deletion made one per hand-over sweep, and
        // each added an entry to the clock of every key written through this node meanwhile:
        // clocks are never pruned, and a key whose clock reached its bound could never be
        // written again.
        if deleted.is_none_or(|state| state.clock.get(&self.actor) > 0) {
            self.renew_actor("a key's state was deleted");
        }
        let partition = self.ring.partition_of(&key);
        if let Some(tree) = self.trees.get_mut(&partition) {
            tree.update(&key, None);
        }
        self.ready.removals.push(key);
    }

    /// Puts a round in the table, counting what it holds. The count is taken as the round enters
    /// (and leaves): a get round that then gathers its replicas' states holds more than counted,
    /// up to N states per round, so the bound on held bytes is soft by that factor.
    fn insert_round(&mut self, req: u64, round: Round) {
        self.held.add(&round);
        if let Some(old) = self.rounds.insert(req, round) {
            self.held.remove(&old);
        }
    }

    /// Takes a round out of the table, uncounting what it holds.
    fn remove_round(&mut self, req: u64) -> Option<Round> {
        let round = self.rounds.remove(&req)?;
        self.held.remove(&round);
        Some(round)
    }

    /// Bytes the rounds in flight hold ([`ROUNDS_HELD_BYTES_MAX`]).
    pub fn rounds_held_bytes(&self) -> usize {
        self.held.bytes
    }

    /// Why a new request from `origin` would pass a bound on rounds in flight, if it would: the
    /// node's ([`ROUNDS_IN_FLIGHT_MAX`], [`ROUNDS_HELD_BYTES_MAX`]), the clients' share of them
    /// (all but the admins' reserve) and the connection's ([`CONNECTION_ROUNDS_MAX`]).
    fn overloaded(&self, origin: &Origin) -> Option<String> {
        let (rounds, bytes) = (self.rounds.len(), self.held.bytes);
        let (clients, clients_bytes) = (self.held.clients, self.held.clients_bytes);
        match origin.share() {
            Share::Clients => {
                let rounds_max = ROUNDS_IN_FLIGHT_MAX - ADMIN_ROUNDS_RESERVED;
                let bytes_max = ROUNDS_HELD_BYTES_MAX - ADMIN_ROUNDS_HELD_BYTES_RESERVED;
                if clients >= rounds_max {
                    return Some(format!(
                        "{clients} clients' requests already in flight, at the bound of {rounds_max}"
                    ));
                }
                if clients_bytes >= bytes_max {
                    return Some(format!(
                        "the clients' requests in flight hold {clients_bytes} bytes, at the bound \
                         of {bytes_max}"
                    ));
                }
                if rounds >= ROUNDS_IN_FLIGHT_MAX || bytes >= ROUNDS_HELD_BYTES_MAX {
                    return Some(format!(
                        "the node's requests in flight ({rounds}) hold {bytes} bytes, at the \
                         bound of {ROUNDS_IN_FLIGHT_MAX} requests or {ROUNDS_HELD_BYTES_MAX} bytes"
                    ));
                }
            }
            Share::Admins => {
                // The reserve is the admins' whatever the clients hold: a get's round grows as
                // its replicas' states come in, so clients' rounds admitted within their share
                // can come to hold more than it (and the node's whole bound) soon after.
                let (admins, admins_bytes) = (rounds - clients, bytes - clients_bytes);
                if admins >= ADMIN_ROUNDS_RESERVED && rounds >= ROUNDS_IN_FLIGHT_MAX {
                    return Some(format!(
                        "{rounds} requests already in flight, at the bound of {ROUNDS_IN_FLIGHT_MAX}"
                    ));
                }
                if admins_bytes >= ADMIN_ROUNDS_HELD_BYTES_RESERVED
                    && bytes >= ROUNDS_HELD_BYTES_MAX
                {
                    return Some(format!(
                        "the requests in flight hold {bytes} bytes, at the bound of \
                         {ROUNDS_HELD_BYTES_MAX}"
                    ));
                }
            }
        }
        let conn = origin.conn()?;
        let of_conn = self.held.by_conn.get(&conn).copied().unwrap_or(0);
        (of_conn >= CONNECTION_ROUNDS_MAX).then(|| {
            format!(
                "{of_conn} requests of this connection already in flight, at the bound of \
                 {CONNECTION_ROUNDS_MAX}: wait for their answers"
            )
        })
    }

    /// xorshift64: enough to spread gossip and name actors; seeded, so simulations replay.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
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
        self.send_gated(Gate::Writes, to, message);
    }

    /// Sends a version this node just made to a replica (or a stand-in): it may leave before this
    /// node's own sync ([`Gate::Version`]). The one way to that gate: a hint's delivery or a
    /// hand-over is a `Store` too, and must wait for the sync ([`Stored::take_reads`] cannot tell
    /// them apart by kind).
    fn send_new_version(&mut self, to: NodeId, message: PeerMessage) {
        debug_assert!(matches!(message, PeerMessage::Store { .. }), "{message:?}");
        self.send_gated(Gate::Version, to, message);
    }

    fn send_gated(&mut self, gate: Gate, to: NodeId, message: PeerMessage) {
        debug_assert!(to != self.config.id, "a node never messages itself");
        self.ready.messages.push((gate, to, message));
    }

    /// Sends a read ([`Stored::take_reads`]): a fetch (`key` `None`: it carries no stored data)
    /// or a fetch reply with the stored state of `key`.
    fn send_read(&mut self, to: NodeId, message: PeerMessage, key: Option<&[u8]>) {
        let gate = key.map_or(Gate::Nothing, |key| Gate::Key(key.to_vec()));
        self.send_gated(gate, to, message);
    }

    fn answer(&mut self, origin: Origin, response: Response) {
        self.answer_gated(Gate::Writes, origin, response);
    }

    /// Answers a get with what it read of `key` ([`Stored::take_reads`]).
    fn answer_read(&mut self, origin: Origin, response: Response, key: &[u8]) {
        self.answer_gated(Gate::Key(key.to_vec()), origin, response);
    }

    fn answer_gated(&mut self, gate: Gate, origin: Origin, response: Response) {
        match origin {
            Origin::Client(token) => self.ready.replies.push((gate, token, response)),
            Origin::Forwarded { from, req, .. } => {
                self.send_gated(gate, from, PeerMessage::ForwardReply { req, response })
            }
        }
    }

    /// How this node resolves versions: dotted, unless a deliberate bug says otherwise.
    fn rule(&self) -> Rule {
        self.config.rule()
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
            let mut held = RoundsHeld::default();
            for round in self.rounds.values() {
                held.add(round);
            }
            assert_eq!(held, self.held, "the count of what rounds hold");
            assert!(
                self.held
                    .by_conn
                    .values()
                    .all(|&n| n <= CONNECTION_ROUNDS_MAX)
            );
        }
    }
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

/// A sibling's client view; re-exported for the shell and tests.
pub use crate::coordinator::view as sibling_view;

#[cfg(test)]
mod tests;
