//! Coordinator rounds: the bookkeeping of one client request that this node coordinates.
//!
//! A round knows whom it asked, who answered, and when it has a quorum; it decides nothing about
//! sockets or time, which the core hands it. Keeping the quorum arithmetic here, apart from message
//! handling in [`crate::core`], makes it small enough to test by itself.

use crate::auth::{CONTEXT_MAC_BYTES, ContextSigner};
use crate::ring::NodeId;
use crate::version::{ACTOR_NAME_BYTES_MAX, KeyVersions, Rule, Sibling};
use crate::wire::{Request, Response, SiblingView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the answer to a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client connected to this node; the token is the shell's.
    Client(ClientToken),
    /// Another node that forwarded the request to us, with its request number and the share of
    /// the client it came from.
    Forwarded {
        from: NodeId,
        req: u64,
        share: Share,
    },
}

impl Origin {
    /// Whose share of the coordinator's bounds the request spends.
    pub fn share(&self) -> Share {
        match self {
            Origin::Client(token) => token.share,
            Origin::Forwarded { share, .. } => *share,
        }
    }

    /// The connection of a client of this node, if the request is one.
    pub fn conn(&self) -> Option<u64> {
        match self {
            Origin::Client(token) => Some(token.conn),
            Origin::Forwarded { .. } => None,
        }
    }
}

/// Whose share of the coordinator's bounds on rounds in flight a request spends
/// ([`crate::core::ROUNDS_IN_FLIGHT_MAX`], [`crate::core::ROUNDS_HELD_BYTES_MAX`]). Clients, who
/// may be anonymous, spend all but a reserve that is the admins' alone: clients pipelining reads
/// of a large value, never reading the answers, filled the shared bounds and had nearly every
/// admin put refused as overloaded. A forwarded request keeps the share of the client it came
/// from (peers are authenticated, and say it), so the reserve cannot be filled through another
/// node either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Share {
    /// A client's connection (anonymous, or with the client token).
    Clients,
    /// An admin's connection (it said `Hello` with the cluster secret).
    Admins,
}

/// The shell's handle on a client request: which connection, which request id on it, and whose
/// share of the bounds it spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientToken {
    /// The shell's connection number.
    pub conn: u64,
    /// The client's request id on that connection.
    pub id: u64,
    /// The connection's class, as the shell settled it.
    pub share: Share,
}

/// A put waiting for W acks.
#[derive(Debug)]
pub struct PutRound {
    /// Who asked.
    pub origin: Origin,
    /// The version this put made.
    pub version: Sibling,
    /// The nodes the write was sent to (owners or their stand-ins), the coordinator first.
    pub targets: Vec<NodeId>,
    /// Targets that made the write durable, the coordinator first.
    pub acks: Vec<NodeId>,
    /// Acks needed.
    pub w: usize,
    /// When the round gives up, monotonic ms.
    pub deadline_ms: u64,
    /// Whether the client has its answer; the round then waits only for the other targets, so
    /// that one that never acks can be replaced by a stand-in with a hint.
    pub answered: bool,
    /// The key written.
    pub key: Vec<u8>,
    /// The state the coordinator sent, for late hints.
    pub state: KeyVersions,
}

impl PutRound {
    /// Records an ack; true when this ack completes the quorum.
    pub fn ack(&mut self, from: &NodeId) -> bool {
        if self.acks.contains(from) || !self.targets.contains(from) {
            return false;
        }
        self.acks.push(from.clone());
        self.acks.len() == self.w
    }

    /// Whether W replicas have stored the write.
    pub fn has_quorum(&self) -> bool {
        self.acks.len() >= self.w
    }

    /// Whether every target has stored the write.
    pub fn complete(&self) -> bool {
        self.targets.iter().all(|t| self.acks.contains(t))
    }

    /// The success answer; with a `signer`, it signs the context that covers the new version.
    pub fn response(&self, signer: Option<&ContextSigner>) -> Response {
        let version = view(&self.version);
        let context_mac = signer.map(|s| s.sign(&self.key, &version.covering_context()));
        Response::Put {
            version,
            stored_on: self.acks.clone(),
            context_mac,
        }
    }
}

/// A get waiting for R replies, then for the rest of the replicas so it can repair them.
#[derive(Debug)]
pub struct GetRound {
    /// Who asked.
    pub origin: Origin,
    /// The key read.
    pub key: Vec<u8>,
    /// The replicas asked (the coordinator included).
    pub replicas: Vec<NodeId>,
    /// Their states, as they arrive.
    pub replies: BTreeMap<NodeId, KeyVersions>,
    /// Replies needed.
    pub r: usize,
    /// Whether the client has its answer; the round then waits only to repair.
    pub answered: bool,
    /// When the round gives up (before the answer) or repairs with what it has (after).
    pub deadline_ms: u64,
    /// How replies are merged.
    pub rule: Rule,
    /// The merge of the replies so far, kept as they arrive (the answer and the repair both need
    /// it, at different times). Invariant: equal to the merge of `replies`; start it empty and
    /// let [`GetRound::reply`] alone change either.
    pub merged: KeyVersions,
}

impl GetRound {
    /// Records a reply; true when this reply completes the quorum.
    pub fn reply(&mut self, from: &NodeId, state: KeyVersions) -> bool {
        if !self.replicas.contains(from) || self.replies.contains_key(from) {
            return false;
        }
        self.merged.merge_by(self.rule, &state);
        self.replies.insert(from.clone(), state);
        self.replies.len() == self.r
    }

    /// Whether every replica asked has answered.
    pub fn complete(&self) -> bool {
        self.replies.len() == self.replicas.len()
    }

    /// The merge of every reply so far.
    pub fn merged(&self) -> KeyVersions {
        self.merged.clone()
    }

    /// The answer from the replies so far: every sibling, tombstones included, and a context
    /// covering them all. A tombstone is returned with the marker its delete attached (a deleting
    /// client's write id, for example), so that the next write can say it saw the delete
    /// (shared/history-format.md, v2); a key whose siblings are all tombstones reads as deleted.
    /// With a `signer`, the context is signed for the round's key (the empty context of a
    /// missing key is not: a blind write needs no MAC).
    pub fn response(&self, signer: Option<&ContextSigner>) -> Response {
        let merged = &self.merged;
        let context = merged.context();
        let context_mac = signer
            .filter(|_| !context.is_empty())
            .map(|s| s.sign(&self.key, &context));
        Response::Get {
            siblings: merged.siblings.iter().map(view).collect(),
            context,
            context_mac,
        }
    }
}

/// A put that a node owning no replica of its key hands to an owner: it probes the owners in
/// preference order until one answers that it owns the key, forwards the put to that one, and
/// waits for its answer (see `crate::core`).
#[derive(Debug)]
pub struct ForwardRound {
    /// Who asked us.
    pub origin: Origin,
    /// The owner probed (while `probing`), or coordinating it for us.
    pub target: NodeId,
    /// The owners not tried yet, in preference order.
    pub candidates: Vec<NodeId>,
    /// Whether the target has yet to answer the probe (the put has not left this node).
    pub probing: bool,
    /// The request.
    pub request: Request,
    /// When the probe is given up (while `probing`), or the forwarded request.
    pub deadline_ms: u64,
}

/// A round in flight.
#[derive(Debug)]
pub enum Round {
    /// A put.
    Put(PutRound),
    /// A get.
    Get(GetRound),
    /// A forwarded request.
    Forward(ForwardRound),
}

impl Round {
    /// A bound of the bytes the round holds (the states, the key, a forwarded request's value):
    /// what [`crate::core::ROUNDS_HELD_BYTES_MAX`] counts. Computed from the round as it is, so
    /// the core takes it when a round goes into its table and when it comes out.
    ///
    /// The core counts it, and what [`Round::awaited_by_conn`] says, as a round goes into its
    /// table and as it comes out: a round changed in place between the two must change neither
    /// (the core takes a round out to change them, and puts it back).
    pub fn held_bytes(&self) -> usize {
        match self {
            Round::Put(p) => p.key.len() + p.version.value.len() + p.state.encoded_bytes_bound(),
            Round::Get(g) => {
                g.key.len()
                    + g.merged.encoded_bytes_bound()
                    + g.replies
                        .values()
                        .map(KeyVersions::encoded_bytes_bound)
                        .sum::<usize>()
            }
            Round::Forward(f) => match &f.request {
                Request::Put {
                    key,
                    value,
                    context,
                    ..
                } => {
                    key.len()
                        + value.len()
                        + context.len() * (ACTOR_NAME_BYTES_MAX + 11)
                        + CONTEXT_MAC_BYTES
                }
                Request::Get { key } | Request::ReplicaState { key } => key.len(),
                _ => 0,
            },
        }
    }

    /// When the round next needs attention.
    pub fn deadline_ms(&self) -> u64 {
        match self {
            Round::Put(p) => p.deadline_ms,
            Round::Get(g) => g.deadline_ms,
            Round::Forward(f) => f.deadline_ms,
        }
    }

    /// The connection of this node's client still waiting for the round's answer, if one is: a
    /// round answered at its quorum stays in the table for its last replicas (a put's acks, a
    /// get's repair), and does not count against the connection
    /// ([`crate::core::CONNECTION_ROUNDS_MAX`]). A forward is answered when it leaves the table.
    pub fn awaited_by_conn(&self) -> Option<u64> {
        let answered = match self {
            Round::Put(p) => p.answered,
            Round::Get(g) => g.answered,
            Round::Forward(_) => false,
        };
        if answered { None } else { self.origin().conn() }
    }

    /// Who asked.
    pub fn origin(&self) -> &Origin {
        match self {
            Round::Put(p) => &p.origin,
            Round::Get(g) => &g.origin,
            Round::Forward(f) => &f.origin,
        }
    }
}

/// A sibling as clients see it.
pub fn view(s: &Sibling) -> SiblingView {
    SiblingView {
        value: s.value.clone(),
        tombstone: s.tombstone,
        dot: s.dot.clone(),
        clock: s.context.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::VClock;

    fn put_round(w: usize) -> PutRound {
        let mut k = KeyVersions::new();
        let version = k.put("a", &VClock::new(), b"v".to_vec(), false, 0);
        PutRound {
            origin: Origin::Client(ClientToken {
                conn: 1,
                id: 1,
                share: Share::Clients,
            }),
            version,
            targets: vec!["n1".into(), "n2".into(), "n3".into()],
            acks: vec!["n1".into()],
            w,
            deadline_ms: 10,
            answered: false,
            key: b"k".to_vec(),
            state: k.clone(),
        }
    }

    #[test]
    fn put_quorum_counts_distinct_acks_once() {
        let mut p = put_round(3);
        assert!(!p.ack(&"n2".into()));
        assert!(!p.ack(&"n2".into()), "a duplicate ack does not count");
        assert!(!p.has_quorum());
        assert!(p.ack(&"n3".into()));
        assert!(p.has_quorum());
        assert!(!p.ack(&"n4".into()), "a node not asked does not count");
    }

    #[test]
    fn get_ignores_strangers_and_merges_replies() {
        let mut g = GetRound {
            origin: Origin::Client(ClientToken {
                conn: 1,
                id: 1,
                share: Share::Clients,
            }),
            key: b"k".to_vec(),
            replicas: vec!["n1".into(), "n2".into()],
            replies: BTreeMap::new(),
            r: 2,
            answered: false,
            deadline_ms: 10,
            rule: Rule::Dotted,
            merged: KeyVersions::new(),
        };
        let mut a = KeyVersions::new();
        a.put("a", &VClock::new(), b"1".to_vec(), false, 0);
        let mut b = KeyVersions::new();
        b.put("b", &VClock::new(), b"2".to_vec(), false, 0);
        assert!(!g.reply(&"n9".into(), b.clone()), "not asked");
        assert!(!g.reply(&"n1".into(), a));
        assert!(g.reply(&"n2".into(), b));
        assert!(g.complete());
        match g.response(None) {
            Response::Get {
                siblings,
                context,
                context_mac: None,
            } => {
                assert_eq!(siblings.len(), 2);
                assert_eq!(context.to_string(), "a=1,b=1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_read_returns_tombstones_with_their_markers() {
        let mut state = KeyVersions::new();
        let first = state.put("a", &VClock::new(), b"v".to_vec(), false, 0);
        let mut context = VClock::new();
        context.add(first.dot.as_ref().unwrap());
        state.put("a", &context, b"d2-5".to_vec(), true, 0);
        let mut g = GetRound {
            origin: Origin::Client(ClientToken {
                conn: 1,
                id: 1,
                share: Share::Clients,
            }),
            key: b"k".to_vec(),
            replicas: vec!["n1".into()],
            replies: BTreeMap::new(),
            r: 1,
            answered: false,
            deadline_ms: 10,
            rule: Rule::Dotted,
            merged: KeyVersions::new(),
        };
        assert!(g.reply(&"n1".into(), state));
        match g.response(None) {
            Response::Get {
                siblings, context, ..
            } => {
                assert_eq!(siblings.len(), 1, "the delete superseded the value");
                assert!(siblings[0].tombstone);
                assert_eq!(siblings[0].value, b"d2-5", "the marker comes back");
                assert_eq!(context.to_string(), "a=2");
            }
            other => panic!("{other:?}"),
        }
    }
}
