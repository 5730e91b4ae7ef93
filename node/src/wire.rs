//! Wire: the messages nodes and clients exchange, and their framing.
//!
//! Every connection carries length-delimited frames (a 4-byte big-endian length, then the body) of
//! postcard-encoded [`Frame`]s; on an authenticated connection the body ends with a MAC
//! ([`crate::auth`]). The length is checked against the connection's bound (at most
//! [`FRAME_BYTES_MAX`]) before a byte of the body is buffered, the body's buffer grows as its
//! bytes arrive (never to the declared length at once: [`crate::conn`]), and a body that does not
//! decode exactly (garbage, a truncated message, trailing bytes, an unknown variant from a newer
//! peer, a value past a bound) is answered with [`Frame::Error`] and the connection is closed:
//! nothing a peer or client sends can make the node panic or allocate without bound.
//!
//! One protocol serves both clients and peers because Dynamo lets any node take any request, and a
//! node forwarding a request is just a client of another node.

use crate::auth::{ContextMac, NONCE_BYTES, PROOF_BYTES, Role};
use crate::coordinator::Share;
use crate::ring::{NodeId, Ring};
use crate::version::{CONTEXT_ENTRIES_MAX, Dot, KeyVersions, VClock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// Largest frame accepted or sent, in bytes: bounds the memory a single peer can make us buffer.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 4 * 1024;
/// Largest value accepted, in bytes (leaves room in a frame for siblings and contexts).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Room a frame keeps beside a key's state: the key, the message around it, and a read's context
/// (a clock of [`crate::version::CLOCK_ENTRIES_MAX`] entries encodes to at most 300 KiB).
pub const FRAME_ROOM_BYTES: usize = 1024 * 1024;
/// Largest encoded key state a node stores: every state it holds fits in a frame to a peer and in
/// the answer to a read, so that a legal key never outgrows the frame. A put that would pass it
/// is refused; a merge that would pass it is refused and logged.
pub const STATE_BYTES_MAX: usize = FRAME_BYTES_MAX - FRAME_ROOM_BYTES;
/// Largest frame a client may send: a put of the largest value with the largest context.
pub const CLIENT_FRAME_BYTES_MAX: usize = VALUE_BYTES_MAX + FRAME_ROOM_BYTES;
/// Largest frame before a connection has said who it is (a `Hello`, or an anonymous client's
/// first request, which may be a put).
pub const FIRST_FRAME_BYTES_MAX: usize = CLIENT_FRAME_BYTES_MAX;
/// Longest `host:port` address accepted.
pub const ADDR_BYTES_MAX: usize = 256;

/// Everything that crosses a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// A client request (from a client, or from a node forwarding one); answered by `Response` with
    /// the same id on the same connection.
    Request { id: u64, request: Request },
    /// The answer to `Request { id }`.
    Response { id: u64, response: Response },
    /// A message between nodes; one-way, any answer is another `Peer` frame on the sender's own
    /// connection.
    Peer { from: NodeId, message: PeerMessage },
    /// The sender refused what it received; the connection closes after this frame.
    Error { message: String },
    /// Liveness probe on a peer link: turmoil's TCP (like a real one behind a dead route) can stall
    /// silently, so a link that hears no `Pong` in time is dropped and re-dialled.
    Ping { nonce: u64 },
    /// The answer to `Ping { nonce }`.
    Pong { nonce: u64 },
    /// Handshake, dialer to listener, before any other frame ([`crate::auth`]): the dialer's
    /// role, its cluster's name (empty: any) and its nonce.
    Hello {
        role: Role,
        cluster: String,
        nonce: [u8; NONCE_BYTES],
    },
    /// Handshake, listener to dialer: the listener's id, its nonce, and its proof of the key.
    Challenge {
        id: NodeId,
        nonce: [u8; NONCE_BYTES],
        proof: [u8; PROOF_BYTES],
    },
    /// Handshake, dialer to listener: the dialer's proof of the key.
    Proof { proof: [u8; PROOF_BYTES] },
}

/// A client's request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Read a key through a quorum of R replicas.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Write `value` with the context of an earlier read (empty: blind). A `tombstone` put is a
    /// delete: its value is only a marker, shown in raw replica states, never by reads.
    /// `context_mac` is the MAC the cluster gave the context with it (a read's `context_mac`, or
    /// a put's): a node with a cluster secret refuses a non-empty context without a valid one
    /// ([`crate::auth`], "Signed contexts"). A forwarded put carries it along.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        tombstone: bool,
        context: VClock,
        context_mac: Option<ContextMac>,
    },
    /// Admin: the raw sibling set this node's storage holds for a key, no quorum, no repair.
    ReplicaState {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Admin: this node's view of itself (id, actor, ring, counters).
    Status,
    /// Membership: add node `id` at `addr` to the ring (sent to any member, by a joining node or
    /// an operator). Answered with the new ring.
    Join {
        id: NodeId,
        addr: String,
        weight: u32,
    },
    /// Membership: the node that receives this leaves the ring; its data moves to the new owners.
    Leave,
    /// Membership, admin: remove `id`, a member gone for good, from the ring; the other members
    /// take over its partitions and anti-entropy refills them from the remaining replicas.
    /// Refused for the receiving node itself (it leaves instead) and for a member it can reach.
    Forget { id: NodeId },
}

impl Request {
    /// Whether only an admin may make this request (a client may get and put).
    pub fn is_admin(&self) -> bool {
        match self {
            Request::Get { .. } | Request::Put { .. } => false,
            Request::ReplicaState { .. }
            | Request::Status
            | Request::Join { .. }
            | Request::Leave
            | Request::Forget { .. } => true,
        }
    }
}

/// A sibling as shown to clients: its value (or tombstone), dot and context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingView {
    /// The stored bytes (a tombstone's marker for a tombstone).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Whether this is a delete marker (only raw replica states show them).
    pub tombstone: bool,
    /// The event that made it (absent for plain vector clocks).
    pub dot: Option<Dot>,
    /// The context it was written with (or its plain clock).
    pub clock: VClock,
}

impl SiblingView {
    /// The context that covers this version: its clock with its dot added (a plain clock already
    /// holds its own event). A client that writes again without reading passes it back; a node
    /// signs it in [`Response::Put`].
    pub fn covering_context(&self) -> VClock {
        let mut context = self.clock.clone();
        if let Some(dot) = &self.dot {
            context.add(dot);
        }
        context
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The merged live siblings of R replicas and one context covering all of them, with the
    /// cluster's MAC of it for this key (None from an open node, or for the empty context).
    Get {
        siblings: Vec<SiblingView>,
        context: VClock,
        context_mac: Option<ContextMac>,
    },
    /// The put was stored by at least W replicas; the version it made. `context_mac` is the
    /// cluster's MAC of the context that covers the new version (its clock with its dot added),
    /// for a client that writes again without reading (None from an open node).
    Put {
        version: SiblingView,
        stored_on: Vec<NodeId>,
        context_mac: Option<ContextMac>,
    },
    /// One replica's raw state.
    ReplicaState { state: KeyVersions },
    /// The node's status (boxed: it is the largest answer, and rare).
    Status { status: Box<NodeStatus> },
    /// The ring after a join or leave, and every known node's address.
    Membership {
        ring: Ring,
        addrs: BTreeMap<NodeId, String>,
    },
    /// The request did not complete.
    Error { error: RequestError },
}

/// Why a request did not complete. `stored_on` says who certainly stored a put: when it is empty
/// and `definite` is set, the put certainly did not take effect; otherwise it may have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable detail.
    pub message: String,
    /// The replicas known to have stored the write (puts only).
    pub stored_on: Vec<NodeId>,
    /// True when the node knows the write took no effect anywhere.
    pub definite: bool,
}

/// Kinds of request failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Fewer than R or W replicas answered before the deadline.
    Unavailable,
    /// The request was malformed or too large.
    BadRequest,
    /// The node is at a bound (too many requests in flight, too many siblings).
    Overloaded,
    /// The local disk failed.
    Storage,
}

/// What `Status` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's name.
    pub id: NodeId,
    /// The actor id this incarnation writes versions as.
    pub actor: String,
    /// Members of the ring.
    pub members: Vec<NodeId>,
    /// Requests being coordinated now.
    pub requests_in_flight: u64,
    /// Keys in local storage (as of the last carried-out step: writes of the current one are
    /// not counted yet).
    pub keys: u64,
    /// Peers this node believes unreachable.
    pub unreachable: Vec<NodeId>,
    /// Writes held for other nodes (sloppy quorum), not yet handed over.
    pub hints_pending: u64,
    /// Hinted writes handed over to their owners and acknowledged.
    pub hints_delivered: u64,
    /// Anti-entropy exchanges this node started.
    pub ae_exchanges: u64,
    /// Keys whose local state changed through anti-entropy.
    pub ae_keys_repaired: u64,
    /// Read-repair messages sent.
    pub read_repairs_sent: u64,
    /// The ring this node routes by.
    pub ring: Ring,
    /// Keys stored here that this node no longer owns, still being handed over.
    pub handoff_keys: u64,
    /// The root of the Merkle tree of each partition this node stores keys of, by partition:
    /// replicas with equal roots hold the same versions (clocks, dots, contexts; the digest does
    /// not hash values), so a harness can tell that a cluster is at rest from one status per node
    /// instead of reading every key.
    pub merkle_roots: Vec<(u32, u64)>,
    /// Replicas per key, and the read and write quorums.
    pub n: u32,
    /// See `n`.
    pub r: u32,
    /// See `n`.
    pub w: u32,
    /// Whether writes may use stand-ins (sloppy quorum).
    pub sloppy_quorum: bool,
    /// Every other node this one knows, member or not, and how it sees it.
    pub peers: Vec<PeerView>,
}

/// One node's view of a peer (`Status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// The peer's name.
    pub id: NodeId,
    /// The address this node dials it at.
    pub addr: String,
    /// Whether it is a member of the ring.
    pub member: bool,
    /// Whether this node suspects it (a broken or silent link, a missed deadline).
    pub suspected: bool,
    /// How long ago this node last heard from it, ms (None: never since it started).
    pub heard_ms_ago: Option<u64>,
}

/// A key's place in the order anti-entropy walks a partition: by Merkle leaf, then by key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AePosition {
    /// The leaf of the partition's tree.
    pub leaf: u32,
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
}

/// Messages between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Coordinate this client request for me (I am not a replica of its key). `share`: whose
    /// share of the coordinator's bounds it spends, the client's on the sending node.
    Forward {
        req: u64,
        request: Request,
        share: Share,
    },
    /// The answer to `Forward { req }`.
    ForwardReply { req: u64, response: Response },
    /// Store this key state (merge it into yours) and acknowledge. With a `hint`, the receiver is a
    /// stand-in for that owner (sloppy quorum): it keeps the state as a hint to hand over later.
    Store {
        req: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        state: KeyVersions,
        hint: Option<NodeId>,
    },
    /// `Store { req }` was made durable. `owner`: the sender replicates the key in its view of the
    /// ring, so it keeps the state until it hands it over itself. An ack from a node that does not
    /// own the key counts towards a put's quorum (that node hands the key over before it deletes
    /// it) but never lets a hand-over delete: two nodes whose rings disagree would each take the
    /// other for the owner, ack, and both delete (found by the nightly, seed 92122).
    StoreAck { req: u64, owner: bool },
    /// Send me your state of this key.
    Fetch {
        req: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The answer to `Fetch { req, key }`: the sender's state of `key`, which it echoes, so that
    /// the coordinator takes a reply only for the key its round `req` reads. A round's number
    /// alone is not enough: rounds of an earlier incarnation of the coordinator may have had the
    /// same numbers (their prefix is 32 bits of a random draw), and a state merged into another
    /// key's round is answered to the client and written to every replica by read repair, where
    /// its clock drops every sibling of the key whose dot it covers.
    FetchReply {
        req: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        state: KeyVersions,
    },
    /// Read repair: merge this state; no answer.
    Repair {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        state: KeyVersions,
    },
    /// Anti-entropy: my hashes of these Merkle tree nodes of `partition` at `level` (0 = root).
    /// The receiver answers with the next level below the nodes that differ, or, at the leaves,
    /// with `AeKeys` for the leaves that differ.
    AeHashes {
        partition: u32,
        level: u32,
        nodes: Vec<(u32, u64)>,
    },
    /// Anti-entropy: my (key, digest) entries of these leaves of `partition`, those from `from`
    /// through `through` in the order of [`AePosition`] (`None`: from the first, through the last
    /// key of the leaves). The receiver compares only its keys in that slice: it sends
    /// `AeRepair` for every one whose digest differs or that the entries lack, and, if `reply`,
    /// its own entries of the slice. A partition with more keys than one message carries is
    /// compared a slice per exchange.
    AeKeys {
        partition: u32,
        leaves: Vec<u32>,
        entries: Vec<(Vec<u8>, u64)>,
        from: Option<AePosition>,
        through: Option<AePosition>,
        reply: bool,
    },
    /// Anti-entropy: merge this state of a key whose digest differed; no answer.
    AeRepair {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        state: KeyVersions,
    },
    /// Gossip of membership: the sender's ring and known addresses; the receiver adopts a newer
    /// ring and answers an older one with its own.
    RingState {
        ring: Ring,
        addrs: BTreeMap<NodeId, String>,
    },
    /// Gossip: the peers the sender cannot reach (a hint for the receiver's failure detector).
    /// With `probe`, the sender suspects the receiver and asks for a gossip back.
    Gossip {
        unreachable: Vec<NodeId>,
        probe: bool,
    },
    /// Before a node that owns no replica of a key forwards a put to an owner: are you there, and
    /// do you own this key? A put is forwarded only to an owner that answered, so that one which
    /// does not (paused, cut off) is passed over for the next instead of holding the request until
    /// its deadline, and a put is never started twice.
    Probe {
        req: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The answer to `Probe { req }`: whether the sender owns the key.
    ProbeReply { req: u64, owner: bool },
}

impl PeerMessage {
    /// The key state the message carries, if any (to be validated before it is merged).
    pub fn state(&self) -> Option<&KeyVersions> {
        match self {
            PeerMessage::Store { state, .. }
            | PeerMessage::FetchReply { state, .. }
            | PeerMessage::Repair { state, .. }
            | PeerMessage::AeRepair { state, .. } => Some(state),
            PeerMessage::Forward { .. }
            | PeerMessage::ForwardReply { .. }
            | PeerMessage::StoreAck { .. }
            | PeerMessage::Fetch { .. }
            | PeerMessage::AeHashes { .. }
            | PeerMessage::AeKeys { .. }
            | PeerMessage::RingState { .. }
            | PeerMessage::Gossip { .. }
            | PeerMessage::Probe { .. }
            | PeerMessage::ProbeReply { .. } => None,
        }
    }
}

/// Decodes a frame body; the whole body must be one frame (trailing bytes are refused: two frames
/// run together must not read as one).
pub fn decode(body: &[u8]) -> io::Result<Frame> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let (frame, rest) = postcard::take_from_bytes::<Frame>(body)
        .map_err(|e| invalid(format!("malformed frame: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid(format!(
            "malformed frame: {} bytes after its end",
            rest.len()
        )));
    }
    Ok(frame)
}

/// Encodes a frame body.
pub fn encode(frame: &Frame) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(frame).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unencodable frame: {e}"),
        )
    })?;
    if body.len() > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {} bytes exceeds {FRAME_BYTES_MAX}", body.len()),
        ));
    }
    Ok(body)
}

/// Whether `addr` reads as `host:port`: a host of printable characters without spaces, and a port
/// in 1..=65535. Names are not resolved here (the simulator's hosts are names).
pub fn valid_addr(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    addr.len() <= ADDR_BYTES_MAX
        && !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_graphic())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Checks a request's sizes before the node does any work for it.
pub fn validate(request: &Request) -> Result<(), String> {
    let key = match request {
        Request::Get { key } | Request::ReplicaState { key } => key,
        Request::Put {
            key,
            value,
            context,
            ..
        } => {
            if value.len() > VALUE_BYTES_MAX {
                let len = value.len();
                return Err(format!("value of {len} bytes exceeds {VALUE_BYTES_MAX}"));
            }
            if context.len() > CONTEXT_ENTRIES_MAX {
                let len = context.len();
                return Err(format!(
                    "a context of {len} entries exceeds {CONTEXT_ENTRIES_MAX}"
                ));
            }
            // Stored in the key's clock, an actor name no node could have would come back in
            // every read's context, whose text form could then not be parsed back.
            if let Some((actor, _)) = context
                .iter()
                .find(|(actor, _)| !crate::version::valid_actor(actor))
            {
                return Err(format!(
                    "a context names the actor {actor:?}, which no node could be (1-{} of \
                     [A-Za-z0-9._-])",
                    crate::version::ACTOR_NAME_BYTES_MAX
                ));
            }
            key
        }
        Request::Status | Request::Leave => return Ok(()),
        Request::Forget { id } => {
            if !crate::version::valid_node_id(id) {
                return Err(format!("node id {id:?} is not a valid node name"));
            }
            return Ok(());
        }
        Request::Join { id, addr, weight } => {
            if !crate::version::valid_node_id(id) {
                return Err(format!(
                    "node id {id:?} must be 1-{} of [A-Za-z0-9._-]",
                    crate::version::NODE_ID_BYTES_MAX
                ));
            }
            if !valid_addr(addr) {
                return Err(format!(
                    "a joining node's address {addr:?} is not host:port"
                ));
            }
            if *weight == 0 || *weight > crate::ring::WEIGHT_MAX {
                return Err(format!("weight must be 1..={}", crate::ring::WEIGHT_MAX));
            }
            return Ok(());
        }
    };
    validate_key(key)
}

/// Checks a key as a client request's key is checked: what a peer's write or hint of a key must
/// also pass, since the log cannot store a record of a longer key.
pub fn validate_key(key: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(format!(
            "key of {} bytes exceeds {KEY_BYTES_MAX}",
            key.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip() {
        let frame = Frame::Request {
            id: 7,
            request: Request::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                tombstone: false,
                context: VClock::parse("a=1").unwrap(),
                context_mac: Some([7; crate::auth::CONTEXT_MAC_BYTES]),
            },
        };
        assert_eq!(decode(&encode(&frame).unwrap()).unwrap(), frame);
    }

    /// Two frames run together are not one: the bytes after a frame's end are refused (issue 11,
    /// item 8: two random frames decoded as a forwarded `Leave`).
    #[test]
    fn trailing_bytes_are_refused() {
        let mut body = encode(&Frame::Ping { nonce: 1 }).unwrap();
        body.extend(encode(&Frame::Pong { nonce: 1 }).unwrap());
        let err = decode(&body).unwrap_err();
        assert!(err.to_string().contains("after its end"), "{err}");
    }

    #[test]
    fn an_unknown_variant_is_an_error() {
        // Variant index 200 of `Frame` does not exist.
        assert!(decode(&[200, 1]).is_err());
    }

    /// Counters past the limit and over-long actor names do not decode (issue 11, item 5).
    #[test]
    fn counters_and_actors_past_their_bounds_do_not_decode() {
        let over = crate::version::COUNTER_MAX + 1;
        let mut clock = VClock::new();
        clock.raise("a", over);
        let frame = Frame::Request {
            id: 1,
            request: Request::Put {
                key: b"k".to_vec(),
                value: vec![],
                tombstone: false,
                context: clock,
                context_mac: None,
            },
        };
        // postcard keeps no message of its own for a refusal: the error is a generic one.
        assert!(decode(&encode(&frame).unwrap()).is_err());
        let dot = Dot::new("a".repeat(65), 1);
        assert!(postcard::from_bytes::<Dot>(&postcard::to_stdvec(&dot).unwrap()).is_err());
        let dot = Dot::new("a", over);
        assert!(postcard::from_bytes::<Dot>(&postcard::to_stdvec(&dot).unwrap()).is_err());
    }

    /// A context naming an actor no node could have (empty, or with characters the context's
    /// text form cannot carry) is refused. Found by the hostile audit: an anonymous client's put
    /// with the context `{"": 5}` or `{"a/b": 5}` was stored in the key's clock, and every context
    /// read from the key afterwards (`=5,a/b=5,...`) was refused by `dynamo put --context` and
    /// `dynamo delete` ("bad actor name"): the key could no longer be updated or deleted from
    /// the command line.
    #[test]
    fn contexts_with_actor_names_no_node_could_have_are_refused() {
        for bad in ["", "a/b", "a b", "a=b", "a,b", "\u{e9}"] {
            let mut context = VClock::new();
            context.raise(bad, 5);
            let put = Request::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                tombstone: false,
                context,
                context_mac: None,
            };
            let err = validate(&put).expect_err(bad);
            assert!(err.contains("actor"), "{bad:?}: {err}");
        }
        let mut good = VClock::new();
        good.raise("n1.5e2a9c01", 5);
        let put = Request::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            tombstone: false,
            context: good,
            context_mac: None,
        };
        assert_eq!(validate(&put), Ok(()));
    }

    #[test]
    fn addresses_are_host_and_port() {
        for good in ["127.0.0.1:7101", "n1:7000", "[::1]:80", "db.example:65535"] {
            assert!(valid_addr(good), "{good}");
        }
        for bad in [
            "",
            "notanaddr",
            "n2=",
            "host:",
            ":80",
            "h:0",
            "h:65536",
            "a b:1",
        ] {
            assert!(!valid_addr(bad), "{bad}");
        }
    }

    proptest! {
        /// A random body behind a valid length never panics `decode`.
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body);
        }
    }
}
