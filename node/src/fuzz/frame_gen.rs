//! [`FrameGen`]: a seeded source of hostile frames of every wire type, from single hostile values
//! (counters, actors, clocks, keys, key states, rings) up to whole frames, and damage to encoded
//! ones.
//!
//! Kept apart from the driver so that the core's and the shell's property tests can use the
//! generator without a node, a socket or a runtime (the parent module's docs say what the frames
//! are for and why they are valid frames with hostile values rather than random bytes).

use crate::auth::{NONCE_BYTES, PROOF_BYTES, Role};
use crate::coordinator::Share;
use crate::ring::{NodeId, Ring, VERSION_MAX};
use crate::version::{
    CONTEXT_ENTRIES_MAX, COUNTER_MAX, Dot, KeyVersions, PEER_SIBLINGS_MAX, Sibling, VClock,
};
use crate::wire::{
    ErrorKind, Frame, KEY_BYTES_MAX, NodeStatus, PeerMessage, PeerView, Request, RequestError,
    Response, SiblingView, VALUE_BYTES_MAX,
};
use std::collections::BTreeMap;

/// Actors the generator writes versions as: never a node's own (`n1.xxxxxxxx`).
const ACTORS: [&str; 6] = ["f1.aa", "f2.bb", "f3.cc", "z", "n2.fuzz", "f4.dd"];
/// Node names the generator uses (members and strangers).
const NODES: [&str; 6] = ["n1", "n2", "n3", "n9", "x", "n2.evil"];

/// A seeded source of hostile frames.
#[derive(Clone, Debug)]
pub struct FrameGen {
    state: u64,
    /// Keys the generator picks from (besides hostile ones: empty, too long).
    keys: Vec<Vec<u8>>,
    /// How rarely the very large shapes are made (1 in this many draws of a value).
    large_one_in: u64,
}

impl FrameGen {
    /// A generator for `seed`, writing to `keys` (and to hostile keys of its own).
    pub fn new(seed: u64, keys: Vec<Vec<u8>>) -> FrameGen {
        assert!(!keys.is_empty());
        FrameGen {
            state: seed,
            keys,
            large_one_in: 200,
        }
    }

    /// Makes the very large shapes (megabyte values, 4,096-entry clocks, 1,000 siblings) one in
    /// `n` draws instead of one in 200 (a long run keeps them rarer, for speed).
    pub fn with_large_one_in(mut self, n: u64) -> FrameGen {
        self.large_one_in = n.max(1);
        self
    }

    /// SplitMix64.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 for 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    /// A context's MAC: none, or random bytes (a forgery: no node signed them).
    fn context_mac(&mut self) -> Option<crate::auth::ContextMac> {
        self.chance(2).then(|| {
            let mut mac = [0u8; crate::auth::CONTEXT_MAC_BYTES];
            for chunk in mac.chunks_mut(8) {
                chunk.copy_from_slice(&self.next_u64().to_le_bytes());
            }
            mac
        })
    }

    fn large(&mut self) -> bool {
        let n = self.large_one_in;
        self.chance(n)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A counter: usually small, sometimes 0 or at the limit, rarely past it (the decoder
    /// refuses those, so they mostly test the decoder).
    pub fn counter(&mut self) -> u64 {
        match self.below(100) {
            0 => COUNTER_MAX + 1,
            1 => u64::MAX,
            2..=9 => 0,
            10..=17 => COUNTER_MAX,
            18..=25 => COUNTER_MAX - 1,
            _ => 1 + self.below(20),
        }
    }

    fn actor(&mut self) -> String {
        match self.below(100) {
            0 => "a".repeat(65),
            1..=3 => "a".repeat(64),
            4..=5 => String::new(),
            6..=7 => "bad actor/name".into(),
            _ => self.pick(&ACTORS).to_string(),
        }
    }

    fn node(&mut self) -> NodeId {
        match self.below(40) {
            0 => "n".repeat(56).into(),
            1 => "".into(),
            _ => NodeId::from(*self.pick(&NODES)),
        }
    }

    /// A clock: usually a few entries, sometimes at the entry bounds.
    pub fn clock(&mut self) -> VClock {
        let mut clock = VClock::new();
        let entries = if self.large() {
            // At the bound a context may have, or one past it.
            CONTEXT_ENTRIES_MAX + self.below(3) as usize
        } else {
            self.below(5) as usize
        };
        for i in 0..entries {
            if entries > 16 {
                clock.raise(&format!("c{i:05}"), 1 + self.below(3));
            } else {
                let actor = self.actor();
                let counter = self.counter();
                clock.raise(&actor, counter);
            }
        }
        clock
    }

    fn value(&mut self) -> Vec<u8> {
        if self.large() {
            vec![b'v'; VALUE_BYTES_MAX - 1 + self.below(3) as usize]
        } else {
            let len = self.below(24) as usize;
            (0..len).map(|_| self.next_u64() as u8).collect()
        }
    }

    /// A key: one of the generator's, or a hostile one (empty, at and past the bound).
    pub fn key(&mut self) -> Vec<u8> {
        match self.below(40) {
            0 => Vec::new(),
            1 => vec![b'k'; KEY_BYTES_MAX],
            2 => vec![b'k'; KEY_BYTES_MAX + 1],
            _ => {
                let i = self.below(self.keys.len() as u64) as usize;
                self.keys[i].clone()
            }
        }
    }

    fn sibling(&mut self) -> Sibling {
        let dot = (!self.chance(10)).then(|| Dot::new(self.actor(), self.counter()));
        Sibling {
            dot,
            context: self.clock(),
            value: self.value(),
            tombstone: self.chance(5),
            timestamp_ms: self.next_u64() >> self.below(64),
        }
    }

    /// A key state: one made by puts (valid), one of random siblings (usually invalid), or one
    /// with too many siblings.
    pub fn state(&mut self) -> KeyVersions {
        match self.below(10) {
            0..=4 => {
                let mut state = KeyVersions::new();
                for _ in 0..self.below(4) {
                    let actor = self.pick(&ACTORS).to_string();
                    let context = if self.chance(2) {
                        state.context()
                    } else {
                        VClock::new()
                    };
                    if state.check_put(&actor, &context).is_ok() {
                        let value = self.value();
                        state.put(&actor, &context, value, self.chance(6), 0);
                    }
                }
                state
            }
            5 if self.large() => {
                let mut state = KeyVersions::new();
                for i in 0..=PEER_SIBLINGS_MAX {
                    let dot = Dot::new(format!("s{i:04}"), 1);
                    state.clock.add(&dot);
                    state.siblings.push(Sibling {
                        dot: Some(dot),
                        context: VClock::new(),
                        value: Vec::new(),
                        tombstone: false,
                        timestamp_ms: 0,
                    });
                }
                state
            }
            _ => {
                let siblings = (0..self.below(4)).map(|_| self.sibling()).collect();
                KeyVersions {
                    clock: self.clock(),
                    siblings,
                }
            }
        }
    }

    /// A ring: a valid one of a few members with a hostile version, or a damaged one.
    pub fn ring(&mut self) -> Ring {
        let mut members: BTreeMap<NodeId, u32> = BTreeMap::new();
        for _ in 0..1 + self.below(4) {
            let node = NodeId::from(*self.pick(&NODES[..4]));
            members.insert(node, 1 + self.below(3) as u32);
        }
        let partitions = *self.pick(&[8u32, 64, 64, 64]);
        let ring = Ring::new(partitions, &members);
        let version = match self.below(8) {
            0 => u64::MAX,
            1 => VERSION_MAX,
            2 => VERSION_MAX + 1,
            3 => 0,
            4 => 1 << 21,
            _ => 1 + self.below(4),
        };
        let mut ring = ring.with_version_for_fuzzing(version);
        if self.chance(4) {
            ring = ring.damaged_for_fuzzing(self.node());
        }
        ring
    }

    fn addrs(&mut self) -> BTreeMap<NodeId, String> {
        let mut addrs = BTreeMap::new();
        let count = if self.large() {
            2_000
        } else {
            self.below(4) as usize
        };
        for i in 0..count {
            let node = if count > 8 {
                NodeId::from(format!("a{i}"))
            } else {
                self.node()
            };
            let addr = match self.below(5) {
                0 => "notanaddr".to_string(),
                1 => String::new(),
                _ => format!("127.0.0.1:{}", 1 + self.below(65_535)),
            };
            addrs.insert(node, addr);
        }
        addrs
    }

    /// A client's request, hostile fields included.
    pub fn request(&mut self) -> Request {
        match self.below(12) {
            0..=3 => Request::Get { key: self.key() },
            4..=8 => Request::Put {
                key: self.key(),
                value: self.value(),
                tombstone: self.chance(6),
                context: self.clock(),
                context_mac: self.context_mac(),
            },
            9 => Request::ReplicaState { key: self.key() },
            10 => Request::Status,
            _ => match self.below(3) {
                0 => Request::Join {
                    id: self.node(),
                    addr: self.addrs().into_values().next().unwrap_or_default(),
                    weight: *self.pick(&[0, 1, 64, 65, u32::MAX]),
                },
                1 => Request::Leave,
                _ => Request::Forget { id: self.node() },
            },
        }
    }

    /// A request without the membership verbs (a run that checks the ring stays put sends those
    /// only as a stranger, who is refused).
    pub fn data_request(&mut self) -> Request {
        loop {
            let request = self.request();
            if !matches!(
                request,
                Request::Join { .. } | Request::Leave | Request::Forget { .. }
            ) {
                return request;
            }
        }
    }

    fn sibling_view(&mut self) -> SiblingView {
        let s = self.sibling();
        SiblingView {
            value: s.value,
            tombstone: s.tombstone,
            dot: s.dot,
            clock: s.context,
        }
    }

    /// An answer (a peer's `ForwardReply`, or a frame no node takes).
    pub fn response(&mut self) -> Response {
        match self.below(6) {
            0 => Response::Get {
                siblings: (0..self.below(3)).map(|_| self.sibling_view()).collect(),
                context: self.clock(),
                context_mac: self.context_mac(),
            },
            1 => Response::Put {
                version: self.sibling_view(),
                stored_on: vec![self.node()],
                context_mac: self.context_mac(),
            },
            2 => Response::ReplicaState {
                state: self.state(),
            },
            3 => Response::Membership {
                ring: self.ring(),
                addrs: self.addrs(),
            },
            4 => Response::Status {
                status: Box::new(NodeStatus {
                    id: self.node(),
                    actor: self.actor(),
                    members: vec![self.node()],
                    requests_in_flight: self.next_u64(),
                    keys: self.next_u64(),
                    unreachable: vec![],
                    hints_pending: 0,
                    hints_delivered: 0,
                    ae_exchanges: 0,
                    ae_keys_repaired: 0,
                    read_repairs_sent: 0,
                    ring: self.ring(),
                    handoff_keys: 0,
                    merkle_roots: vec![(self.below(64) as u32, self.next_u64())],
                    n: self.below(4) as u32,
                    r: self.below(4) as u32,
                    w: self.below(4) as u32,
                    sloppy_quorum: self.chance(2),
                    peers: vec![PeerView {
                        id: self.node(),
                        addr: "127.0.0.1:1".into(),
                        member: self.chance(2),
                        suspected: self.chance(2),
                        heard_ms_ago: self.chance(2).then(|| self.next_u64()),
                    }],
                }),
            },
            _ => Response::Error {
                error: RequestError {
                    kind: *self.pick(&[
                        ErrorKind::Unavailable,
                        ErrorKind::BadRequest,
                        ErrorKind::Overloaded,
                        ErrorKind::Storage,
                    ]),
                    message: "fuzz".into(),
                    stored_on: vec![self.node()],
                    definite: self.chance(2),
                },
            },
        }
    }

    fn req(&mut self) -> u64 {
        match self.below(4) {
            0 => u64::MAX,
            1 => 0,
            _ => self.below(64),
        }
    }

    /// A message between nodes, every variant, hostile fields included. With `ring_messages`
    /// false, no `RingState` (a run that checks the ring stays put; see
    /// [`FrameGen::hostile_ring_state`]).
    pub fn peer_message(&mut self, ring_messages: bool) -> PeerMessage {
        loop {
            let message = match self.below(13) {
                // Admin requests included: a node refuses them in a forward, whatever the ring.
                0 => PeerMessage::Forward {
                    req: self.req(),
                    request: self.request(),
                    share: if self.below(2) == 0 {
                        Share::Clients
                    } else {
                        Share::Admins
                    },
                },
                1 => PeerMessage::ForwardReply {
                    req: self.req(),
                    response: self.response(),
                },
                2 => PeerMessage::Store {
                    req: self.req(),
                    key: self.key(),
                    state: self.state(),
                    hint: self.chance(3).then(|| self.node()),
                },
                3 => PeerMessage::StoreAck {
                    req: self.req(),
                    owner: self.chance(2),
                },
                4 => PeerMessage::Fetch {
                    req: self.req(),
                    key: self.key(),
                },
                5 => PeerMessage::FetchReply {
                    req: self.req(),
                    key: self.key(),
                    state: self.state(),
                },
                6 => PeerMessage::Repair {
                    key: self.key(),
                    state: self.state(),
                },
                7 => {
                    let count = if self.large() { 5_000 } else { self.below(20) };
                    PeerMessage::AeHashes {
                        partition: *self.pick(&[0, 1, 63, 64, u32::MAX]),
                        level: *self.pick(&[0, 1, 2, 3, u32::MAX]),
                        nodes: (0..count)
                            .map(|_| (self.below(300) as u32, self.next_u64()))
                            .collect(),
                    }
                }
                8 => {
                    let count = if self.large() { 5_000 } else { self.below(8) };
                    PeerMessage::AeKeys {
                        partition: *self.pick(&[0, 1, 63, 64, u32::MAX]),
                        leaves: (0..self.below(10))
                            .map(|_| self.below(300) as u32)
                            .collect(),
                        entries: (0..count).map(|_| (self.key(), self.next_u64())).collect(),
                        // Slices that start after they end, at leaves past the tree, at keys of
                        // every length.
                        from: self.chance(2).then(|| crate::wire::AePosition {
                            leaf: *self.pick(&[0, 1, 255, 256, u32::MAX]),
                            key: self.key(),
                        }),
                        through: self.chance(2).then(|| crate::wire::AePosition {
                            leaf: *self.pick(&[0, 1, 255, 256, u32::MAX]),
                            key: self.key(),
                        }),
                        reply: self.chance(2),
                    }
                }
                9 => PeerMessage::AeRepair {
                    key: self.key(),
                    state: self.state(),
                },
                10 => PeerMessage::Probe {
                    req: self.req(),
                    key: self.key(),
                },
                11 => PeerMessage::ProbeReply {
                    req: self.req(),
                    owner: self.chance(2),
                },
                _ => {
                    if !ring_messages {
                        continue;
                    }
                    PeerMessage::RingState {
                        ring: self.ring(),
                        addrs: self.addrs(),
                    }
                }
            };
            if !ring_messages {
                // Gossip of suspicion is harmless to the ring; keep it in the mix.
                if self.chance(12) {
                    return PeerMessage::Gossip {
                        unreachable: (0..self.below(4)).map(|_| self.node()).collect(),
                        probe: self.chance(2),
                    };
                }
            }
            return message;
        }
    }

    /// A `RingState` that no node may adopt: a version implausibly far ahead or past the limit,
    /// a damaged owner table, or a partition count not the cluster's.
    pub fn hostile_ring_state(&mut self, partitions: u32) -> PeerMessage {
        let mut ring = self.ring();
        ring = match self.below(3) {
            0 => ring.with_version_for_fuzzing(*self.pick(&[u64::MAX, VERSION_MAX + 1, 1 << 40])),
            1 => ring.damaged_for_fuzzing(NodeId::from("stranger")),
            _ if ring.partition_count() == partitions => ring.with_version_for_fuzzing(u64::MAX),
            _ => ring,
        };
        PeerMessage::RingState {
            ring,
            addrs: self.addrs(),
        }
    }

    /// A frame of any variant.
    pub fn frame(&mut self) -> Frame {
        match self.below(10) {
            0..=3 => Frame::Request {
                id: self.next_u64(),
                request: self.request(),
            },
            4..=6 => Frame::Peer {
                from: self.node(),
                message: self.peer_message(true),
            },
            7 => Frame::Response {
                id: self.next_u64(),
                response: self.response(),
            },
            _ => match self.below(6) {
                0 => Frame::Ping {
                    nonce: self.next_u64(),
                },
                1 => Frame::Pong {
                    nonce: self.next_u64(),
                },
                2 => Frame::Error {
                    message: "fuzz".into(),
                },
                3 => Frame::Hello {
                    role: match self.below(3) {
                        0 => Role::Peer { id: self.node() },
                        1 => Role::Admin,
                        _ => Role::Client,
                    },
                    cluster: (*self.pick(&["", "dynamo", "other"])).into(),
                    nonce: [self.next_u64() as u8; NONCE_BYTES],
                },
                4 => Frame::Challenge {
                    id: self.node(),
                    nonce: [0; NONCE_BYTES],
                    proof: [self.next_u64() as u8; PROOF_BYTES],
                },
                _ => Frame::Proof {
                    proof: [self.next_u64() as u8; PROOF_BYTES],
                },
            },
        }
    }

    /// Damages an encoded frame body: truncates it, flips bytes, appends bytes, or replaces it
    /// with random bytes.
    pub fn mutate(&mut self, body: &mut Vec<u8>) {
        match self.below(5) {
            0 => {
                let len = self.below(body.len() as u64 + 1) as usize;
                body.truncate(len);
            }
            1 => {
                for _ in 0..1 + self.below(4) {
                    if !body.is_empty() {
                        let i = self.below(body.len() as u64) as usize;
                        body[i] ^= 1 << self.below(8);
                    }
                }
            }
            2 => {
                for _ in 0..1 + self.below(8) {
                    body.push(self.next_u64() as u8);
                }
            }
            3 => {
                let len = self.below(64) as usize;
                *body = (0..len).map(|_| self.next_u64() as u8).collect();
            }
            _ => {
                // A plausible variant tag with garbage after it.
                let len = self.below(32) as usize;
                *body = std::iter::once(self.below(12) as u8)
                    .chain((0..len).map(|_| self.next_u64() as u8))
                    .collect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_replays_from_its_seed_and_makes_every_variant() {
        let keys = vec![b"k".to_vec()];
        let mut a = FrameGen::new(7, keys.clone());
        let mut b = FrameGen::new(7, keys);
        let mut variants = std::collections::BTreeSet::new();
        for _ in 0..2_000 {
            let frame = a.frame();
            assert_eq!(frame, b.frame());
            let name = format!("{frame:?}");
            let variant = name.split([' ', '{', '(']).next().unwrap().to_string();
            variants.insert(variant);
        }
        assert_eq!(variants.len(), 9, "{variants:?}");
    }
}
