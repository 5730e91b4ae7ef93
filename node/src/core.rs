//! The protocol core: a plain state machine with no sockets, clocks, tasks or disk writes.
//!
//! # Contract
//!
//! Inputs go in through `handle_*` with the current time ([`Now`]): a client request
//! ([`Core::handle_request`]), a message from a peer ([`Core::handle_peer`]), a timer
//! ([`Core::handle_timeout`]) and news of a peer's reachability ([`Core::handle_peer_status`]).
//! Each is given a [`ReadState`], the only way the core sees storage.
//!
//! After every input the driver must call [`Core::poll_ready`] and carry out the [`Ready`] it
//! returns *in order*: apply its `writes` to storage, make them durable as the fsync policy says,
//! and only then send its `messages` and `replies`, which may depend on those writes ("persist
//! before you ack" is a property of this type, not a promise in a comment). The driver must apply
//! the writes before the next input, since the core reads storage afresh each time. Then it calls
//! [`Core::poll_timeout`] and calls [`Core::handle_timeout`] no later than that instant.
//!
//! The same core runs under tokio (`dynamo serve`) and under turmoil (`dynamo sim`): see
//! [`crate::shell`].

use crate::config::{Bug, NodeConfig};
use crate::coordinator::{ClientToken, ForwardRound, GetRound, Origin, PutRound, Round};
use crate::ring::{NodeId, Ring};
use crate::store::keyspace::ReadState;
use crate::version::{Actor, KeyVersions, Rule, SIBLINGS_MAX, VClock};
use crate::wire::{self, ErrorKind, NodeStatus, PeerMessage, Request, RequestError, Response};
use std::collections::{BTreeMap, BTreeSet};

/// Most rounds in flight at once; past it new requests are refused as overloaded instead of
/// queued, so memory stays bounded however fast clients send.
pub const ROUNDS_IN_FLIGHT_MAX: usize = 10_000;

/// The time, as the driver's environment tells it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds since the node started: deadlines.
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch (may be skewed): version timestamps only.
    pub wall_ms: u64,
}

/// What the driver must do after an input, in this order.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    /// Key states to store, in order. Apply them, and sync if the fsync policy says so, before
    /// releasing anything below.
    pub writes: Vec<(Vec<u8>, KeyVersions)>,
    /// Messages to peers.
    pub messages: Vec<(NodeId, PeerMessage)>,
    /// Answers to clients connected to this node.
    pub replies: Vec<(ClientToken, Response)>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.messages.is_empty() && self.replies.is_empty()
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
    ready: Ready,
    stats: CoreStats,
}

impl Core {
    /// A core for `config`, writing versions as `actor`.
    pub fn new(config: NodeConfig, actor: Actor) -> Core {
        let weights: BTreeMap<NodeId, u32> =
            config.members.keys().map(|id| (id.clone(), 1)).collect();
        let ring = Ring::new(config.partition_count, &weights);
        Core {
            config,
            actor,
            ring,
            rounds: BTreeMap::new(),
            next_round: 1,
            unreachable: BTreeSet::new(),
            ready: Ready::default(),
            stats: CoreStats::default(),
        }
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

    /// Takes the outputs accumulated since the last call.
    pub fn poll_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    /// The monotonic instant by which [`Core::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.rounds.values().map(Round::deadline_ms).min()
    }

    /// The shell learned that a peer is (un)reachable: a connection failed or came back.
    pub fn handle_peer_status(&mut self, node: &NodeId, reachable: bool) {
        if reachable {
            self.unreachable.remove(node);
        } else {
            self.unreachable.insert(node.clone());
        }
    }

    /// A client request arrived on one of this node's connections.
    pub fn handle_request(
        &mut self,
        now: Now,
        client: ClientToken,
        request: Request,
        store: &dyn ReadState,
    ) {
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
        match message {
            PeerMessage::Forward { req, request } => {
                let origin = Origin::Forwarded { from, req };
                self.start(now, origin, request, store, true);
            }
            PeerMessage::ForwardReply { req, response } => {
                if let Some(Round::Forward(f)) = self.rounds.get(&req)
                    && f.target == from
                {
                    let Some(Round::Forward(f)) = self.rounds.remove(&req) else {
                        unreachable!()
                    };
                    self.answer(f.origin, response);
                }
            }
            PeerMessage::Store { req, key, state } => match self.merge_into(&key, &state, store) {
                Ok(()) => self.send(from, PeerMessage::StoreAck { req }),
                Err(e) => tracing::error!(error = %e, "cannot store a replicated write"),
            },
            PeerMessage::StoreAck { req } => self.on_store_ack(req, &from),
            PeerMessage::Fetch { req, key } => match store.read_state(&key) {
                Ok(state) => self.send(from, PeerMessage::FetchReply { req, state }),
                Err(e) => tracing::error!(error = %e, "cannot read a key for a peer"),
            },
            PeerMessage::FetchReply { req, state } => {
                self.on_fetch_reply(now, req, &from, state, store)
            }
            PeerMessage::Repair { key, state } => {
                if let Err(e) = self.merge_into(&key, &state, store) {
                    tracing::error!(error = %e, "cannot apply read repair");
                }
            }
        }
        self.check_invariants();
    }

    /// Time passed: expire rounds whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Now, store: &dyn ReadState) {
        let expired: Vec<u64> = self
            .rounds
            .iter()
            .filter(|(_, r)| r.deadline_ms() <= now.mono_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            match self.rounds.remove(&id).expect("listed above") {
                Round::Put(p) => {
                    debug_assert!(!p.has_quorum(), "a put with a quorum is answered at once");
                    self.stats.unavailable += 1;
                    let message = format!(
                        "put reached {} of the {} replicas it needed before its deadline",
                        p.acks.len(),
                        p.w,
                    );
                    self.answer(p.origin, unavailable(message, p.acks, false));
                }
                Round::Get(g) => {
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
                Round::Forward(f) => {
                    self.stats.unavailable += 1;
                    let is_put = matches!(f.request, Request::Put { .. });
                    let message =
                        format!("{} did not answer the forwarded request in time", f.target);
                    // A forwarded put may have been stored by the node we forwarded to.
                    self.answer(f.origin, unavailable(message, Vec::new(), !is_put));
                }
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
                    actor: self.actor.clone(),
                    members: self.ring.members().keys().cloned().collect(),
                    requests_in_flight: self.rounds.len() as u64,
                    keys: store.key_count(),
                };
                return self.answer(origin, Response::Status { status });
            }
            Request::ReplicaState { key } => {
                let response = match store.read_state(key) {
                    Ok(state) => Response::ReplicaState { state },
                    Err(e) => storage_error(&e),
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
            return self.forward(now, origin, request, &replicas);
        }
        match request {
            Request::Get { key } => self.coordinate_get(now, origin, key, replicas, store),
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
                self.coordinate_put(now, origin, write, replicas, store)
            }
            _ => unreachable!("answered above"),
        }
    }

    fn forward(&mut self, now: Now, origin: Origin, request: Request, replicas: &[NodeId]) {
        let target = replicas
            .iter()
            .find(|n| !self.unreachable.contains(*n))
            .or(replicas.first())
            .cloned();
        let Some(target) = target else {
            return self.answer(
                origin,
                error(
                    ErrorKind::Unavailable,
                    "the ring has no replicas".into(),
                    true,
                ),
            );
        };
        let req = self.round_id();
        self.send(
            target.clone(),
            PeerMessage::Forward {
                req,
                request: request.clone(),
            },
        );
        let round = ForwardRound {
            origin,
            target,
            request,
            deadline_ms: now.mono_ms + self.config.request_timeout_ms,
        };
        self.rounds.insert(req, Round::Forward(round));
    }

    fn coordinate_get(
        &mut self,
        now: Now,
        origin: Origin,
        key: Vec<u8>,
        replicas: Vec<NodeId>,
        store: &dyn ReadState,
    ) {
        let local = match self.read(&key, store) {
            Ok(state) => state,
            Err(e) => return self.answer(origin, storage_error(&e)),
        };
        let req = self.round_id();
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
        replicas: Vec<NodeId>,
        store: &dyn ReadState,
    ) {
        let Write {
            key,
            value,
            tombstone,
            context,
        } = write;
        let mut state = match self.read(&key, store) {
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
        let rule = self.rule();
        let clock_before = state.clock.clone();
        let version = state.put_by(rule, &self.actor, &context, value, tombstone, now.wall_ms);
        tracing::debug!(
            node = %self.config.id,
            key = %String::from_utf8_lossy(&key),
            before = %clock_before,
            dot = ?version.dot,
            "coordinated a put"
        );
        self.write(key.clone(), state.clone());
        let req = self.round_id();
        for peer in others(&replicas, &self.config.id) {
            let message = PeerMessage::Store {
                req,
                key: key.clone(),
                state: state.clone(),
            };
            self.send(peer.clone(), message);
        }
        let round = PutRound {
            origin,
            version,
            acks: vec![self.config.id.clone()],
            w: self.config.w,
            deadline_ms: now.mono_ms + self.config.request_timeout_ms,
        };
        // Deliberate bug `early-ack`: answer after the local write alone.
        if round.has_quorum() || self.config.has_bug(Bug::EarlyAck) {
            self.stats.puts_ok += 1;
            let response = round.response();
            self.answer(round.origin, response);
        } else {
            self.rounds.insert(req, Round::Put(round));
        }
    }

    fn on_store_ack(&mut self, req: u64, from: &NodeId) {
        let Some(Round::Put(round)) = self.rounds.get_mut(&req) else {
            return; // Late: the round was answered or expired.
        };
        if round.ack(from) {
            let Some(Round::Put(round)) = self.rounds.remove(&req) else {
                unreachable!()
            };
            self.stats.puts_ok += 1;
            let response = round.response();
            self.answer(round.origin, response);
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
        if self.config.has_bug(Bug::NoRepair) {
            return;
        }
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
            if *state == merged {
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

    /// Merges a state from a peer into the local one, writing only if it changes anything.
    fn merge_into(
        &mut self,
        key: &[u8],
        incoming: &KeyVersions,
        store: &dyn ReadState,
    ) -> std::io::Result<()> {
        if wire::validate(&Request::Get { key: key.to_vec() }).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "bad key",
            ));
        }
        let mut state = self.read(key, store)?;
        let before = state.clone();
        state.merge_by(self.rule(), incoming);
        if state != before {
            self.write(key.to_vec(), state);
        }
        Ok(())
    }

    /// Reads a key, seeing writes of this step that the driver has not applied yet.
    fn read(&self, key: &[u8], store: &dyn ReadState) -> std::io::Result<KeyVersions> {
        match self.ready.writes.iter().rev().find(|(k, _)| k == key) {
            Some((_, state)) => Ok(state.clone()),
            None => store.read_state(key),
        }
    }

    fn write(&mut self, key: Vec<u8>, state: KeyVersions) {
        state.check_invariants();
        self.ready.writes.push((key, state));
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
        self.next_round += 1;
        id
    }

    fn check_invariants(&self) {
        debug_assert!(self.rounds.len() <= ROUNDS_IN_FLIGHT_MAX);
        debug_assert!(self.rounds.keys().all(|&id| id < self.next_round));
        if cfg!(debug_assertions) {
            for round in self.rounds.values() {
                if let Round::Put(p) = round {
                    assert!(
                        !p.has_quorum(),
                        "a put round with a quorum must have been answered"
                    );
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
