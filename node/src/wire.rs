//! Wire: the messages nodes and clients exchange, and their framing.
//!
//! Every connection carries length-delimited frames (a 4-byte big-endian length, then the body) of
//! postcard-encoded [`Frame`]s. The length is checked against [`FRAME_BYTES_MAX`] before a byte of
//! the body is buffered, and a body that does not decode (garbage, a truncated message, an unknown
//! variant from a newer peer) is answered with [`Frame::Error`] and the connection is closed: nothing
//! a peer or client sends can make the node panic or allocate without bound.
//!
//! One protocol serves both clients and peers because Dynamo lets any node take any request, and a
//! node forwarding a request is just a client of another node.

use crate::ring::{NodeId, Ring};
use crate::version::{Dot, KeyVersions, VClock};
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Largest frame accepted or sent, in bytes: bounds the memory a single peer can make us buffer.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 4 * 1024;
/// Largest value accepted, in bytes (leaves room in a frame for siblings and contexts).
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;

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
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        tombstone: bool,
        context: VClock,
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

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The merged live siblings of R replicas and one context covering all of them.
    Get {
        siblings: Vec<SiblingView>,
        context: VClock,
    },
    /// The put was stored by at least W replicas; the version it made.
    Put {
        version: SiblingView,
        stored_on: Vec<NodeId>,
    },
    /// One replica's raw state.
    ReplicaState { state: KeyVersions },
    /// The node's status.
    Status { status: NodeStatus },
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

/// Messages between nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// Coordinate this client request for me (I am not a replica of its key).
    Forward { req: u64, request: Request },
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
    /// `Store { req }` was made durable.
    StoreAck { req: u64 },
    /// Send me your state of this key.
    Fetch {
        req: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// The answer to `Fetch { req }`.
    FetchReply { req: u64, state: KeyVersions },
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
    /// Anti-entropy: my (key, digest) entries of these leaves of `partition`. The receiver sends
    /// `AeRepair` for every key it holds whose digest differs, and, if `reply`, its own entries.
    AeKeys {
        partition: u32,
        leaves: Vec<u32>,
        entries: Vec<(Vec<u8>, u64)>,
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

/// Frames on a byte stream: length-delimited, postcard bodies, bounded size.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(FRAME_BYTES_MAX)
                .new_codec(),
        }
    }
}

/// Decodes a frame body.
pub fn decode(body: &[u8]) -> io::Result<Frame> {
    postcard::from_bytes(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed frame: {e}")))
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

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = io::Error;
    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Frame>> {
        match self.inner.decode(src)? {
            Some(body) => decode(&body).map(Some),
            None => Ok(None),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = io::Error;
    /// Writes the length and the body straight into `dst`: no intermediate buffer per frame.
    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        let flavor = BytesFlavor {
            out: dst,
            end_max: start + FRAME_HEADER_BYTES + FRAME_BYTES_MAX,
        };
        let written = postcard::serialize_with_flavor(&frame, flavor);
        let body_len = dst.len() - start - FRAME_HEADER_BYTES;
        let refused = match written {
            Err(postcard::Error::SerializeBufferFull) => Some(format!(
                "frame of more than {body_len} bytes exceeds {FRAME_BYTES_MAX}"
            )),
            Err(e) => Some(format!("unencodable frame: {e}")),
            Ok(()) => None,
        };
        if let Some(message) = refused {
            dst.truncate(start);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        dst[start..start + FRAME_HEADER_BYTES].copy_from_slice(&(body_len as u32).to_be_bytes());
        Ok(())
    }
}

/// The length prefix of a frame: 4 bytes, big-endian, the body's length (LengthDelimitedCodec's
/// default, which the decoder uses).
const FRAME_HEADER_BYTES: usize = 4;

/// A postcard output that appends to a `BytesMut`, refusing to grow it past `end_max`: a frame
/// over the bound stops being encoded as soon as it passes it.
struct BytesFlavor<'a> {
    out: &'a mut BytesMut,
    end_max: usize,
}

impl postcard::ser_flavors::Flavor for BytesFlavor<'_> {
    type Output = ();
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.out.len() + bytes.len() > self.end_max {
            return Err(postcard::Error::SerializeBufferFull);
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Checks a request's sizes before the node does any work for it.
pub fn validate(request: &Request) -> Result<(), String> {
    let key = match request {
        Request::Get { key } | Request::ReplicaState { key } => key,
        Request::Put { key, value, .. } => {
            if value.len() > VALUE_BYTES_MAX {
                let len = value.len();
                return Err(format!("value of {len} bytes exceeds {VALUE_BYTES_MAX}"));
            }
            key
        }
        Request::Status | Request::Leave => return Ok(()),
        Request::Join { id, addr, weight } => {
            if !crate::version::valid_actor(id) {
                return Err(format!("node id {id:?} must be 1-64 of [A-Za-z0-9._-]"));
            }
            if addr.is_empty() || addr.len() > 256 {
                return Err("a joining node needs an address".into());
            }
            if *weight == 0 || *weight > crate::ring::WEIGHT_MAX {
                return Err(format!("weight must be 1..={}", crate::ring::WEIGHT_MAX));
            }
            return Ok(());
        }
    };
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
            },
        };
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(frame.clone(), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
        assert!(buf.is_empty());
    }

    /// The encoder writes in place what the length-delimited codec would write around `encode`.
    #[test]
    fn in_place_encoding_matches_length_delimited_bodies() {
        let frame = Frame::Peer {
            from: "n2".into(),
            message: PeerMessage::Fetch {
                req: 9,
                key: b"key".to_vec(),
            },
        };
        let mut buf = BytesMut::from(&b"earlier"[..]);
        FrameCodec::default()
            .encode(frame.clone(), &mut buf)
            .unwrap();
        let body = encode(&frame).unwrap();
        let mut expected = b"earlier".to_vec();
        expected.extend_from_slice(&(body.len() as u32).to_be_bytes());
        expected.extend_from_slice(&body);
        assert_eq!(&buf[..], &expected[..]);
    }

    /// A frame past the bound is refused whole: nothing of it stays in the output buffer.
    #[test]
    fn an_oversized_frame_is_refused_and_leaves_the_buffer_as_it_was() {
        let sibling = SiblingView {
            value: vec![7; VALUE_BYTES_MAX],
            tombstone: false,
            dot: None,
            clock: VClock::new(),
        };
        let frame = Frame::Response {
            id: 1,
            response: Response::Get {
                siblings: vec![sibling; FRAME_BYTES_MAX / VALUE_BYTES_MAX + 1],
                context: VClock::new(),
            },
        };
        let mut buf = BytesMut::from(&b"earlier"[..]);
        let err = FrameCodec::default().encode(frame, &mut buf).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert_eq!(&buf[..], b"earlier");
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&((FRAME_BYTES_MAX as u32) + 1).to_be_bytes()[..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    #[test]
    fn an_unknown_variant_is_an_error() {
        // Variant index 200 of `Frame` does not exist.
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 2, 200, 1][..]);
        assert!(codec.decode(&mut buf).is_err());
    }

    proptest! {
        /// Random bytes never panic the decoder: they give a frame, an error, or "need more".
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = FrameCodec::default();
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..bytes.len() + 1 {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// A random body behind a valid length never panics `decode`.
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body);
        }
    }
}
