//! What a step of the core produced, and how it leaves the node: [`Ready`] holds the writes to
//! store and the messages and replies that may leave only once those writes are stored;
//! [`Ready::apply`] stores and syncs them, and only then hands out the [`Released`] outputs.
//! [`Ready::store`] stores them without the sync, for a driver that syncs apart and goes on
//! serving meanwhile: the outputs wait in a [`Stored`] until that sync is done.
//!
//! `Ready`'s fields are visible to the core alone (`pub(super)`): everywhere else `apply` and
//! `store` are the only ways to the outputs, so "persist before you ack" is a property of the type (the calling
//! contract is in the docs of [`crate::core`]).

use crate::config::NodeConfig;
use crate::coordinator::ClientToken;
use crate::ring::{NodeId, Ring};
use crate::store::Storage;
use crate::store::keyspace::Keyspace;
use crate::version::{Actor, KeyVersions};
use crate::wire::{PeerMessage, Response};
use std::collections::BTreeMap;

/// What a step produced: writes to store, then messages and replies that may only leave once the
/// writes are stored. Carried out by [`Ready::apply`] or [`Ready::store`], the only ways to the outputs.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    /// Key states to store, one per key (its last state in the step).
    pub(super) writes: Vec<(Vec<u8>, KeyVersions)>,
    /// Hints to store (or, `None`, delete) as (owner, key, state).
    pub(super) hint_writes: Vec<(NodeId, Vec<u8>, Option<KeyVersions>)>,
    /// Keys to delete from storage: handed over to their new owners, or lost to damage.
    pub(super) removals: Vec<Vec<u8>>,
    /// A new actor id this node now writes versions as.
    pub(super) actor: Option<Actor>,
    /// The ring and the known nodes' addresses, when membership changed (a restarted node must
    /// remember the ring).
    pub(super) membership: Option<(Ring, BTreeMap<NodeId, String>)>,
    /// Messages to peers, each with what it waits for.
    pub(super) messages: Vec<(Gate, NodeId, PeerMessage)>,
    /// Answers to clients connected to this node, each with what it waits for.
    pub(super) replies: Vec<(Gate, ClientToken, Response)>,
}

/// What an output of a step waits for before it may leave the node.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Gate {
    /// The step's writes, and every earlier step's, durable: an acknowledgement (it promises the
    /// write is durable here), a repair, a hint's delivery, a hand-over, anything else that is not
    /// a read or a new version.
    Writes,
    /// Nothing: a fetch names a key and carries no stored data.
    Nothing,
    /// Nothing: a coordinator's new version on its way to the replicas, so that their syncs run
    /// beside this node's own (the paper's coordinator writes locally and sends in parallel). It
    /// may leave before it is durable here because a node that did not stop cleanly takes a new
    /// actor id when it starts again ([`crate::store::clean`]): were the version lost here in a
    /// crash, its dot can never be issued again. The put's answer still waits for the key to be
    /// durable here (it is a [`Gate::Key`] read).
    Version,
    /// Every write of this key durable: a fetch reply or a get's answer carries its stored state,
    /// a put's answer the version stored (an answer must not promise what a crash here could
    /// still take back).
    Key(Vec<u8>),
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
        let stored = self.store(keyspace, config)?;
        if stored.needs_sync() {
            keyspace.sync().map_err(|e| {
                std::io::Error::new(e.kind(), format!("syncing the step's writes: {e}"))
            })?;
        }
        Ok(stored.release())
    }

    /// Stores the step's writes in `keyspace` as [`Ready::apply`] does, without the sync: what
    /// may leave is held in the returned [`Stored`] until a sync begun after this call is done.
    /// This is how the driver goes on serving while the disk syncs (`crate::shell::run`).
    pub fn store<S: Storage>(
        self,
        keyspace: &mut Keyspace<S>,
        config: &NodeConfig,
    ) -> std::io::Result<Stored> {
        let touched = self.touched_keys();
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
        let needs_sync = (wrote && config.sync_before_release()) || membership.is_some();
        Ok(Stored {
            messages,
            replies,
            membership,
            needs_sync,
            touched: if needs_sync { touched } else { Vec::new() },
        })
    }

    /// The keys the step wrote, hinted or removed: reads of them wait for its sync.
    fn touched_keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.writes.iter().map(|(key, _)| key.clone()).collect();
        keys.extend(self.hint_writes.iter().map(|(_, key, _)| key.clone()));
        keys.extend(self.removals.iter().cloned());
        keys.sort();
        keys.dedup();
        keys
    }
}

/// A step's outputs whose writes are stored but perhaps not yet durable ([`Ready::store`]).
#[derive(Debug)]
#[must_use = "a step's outputs must be released or the node stopped"]
pub struct Stored {
    messages: Vec<(Gate, NodeId, PeerMessage)>,
    replies: Vec<(Gate, ClientToken, Response)>,
    membership: Option<(Ring, BTreeMap<NodeId, String>)>,
    needs_sync: bool,
    /// The keys the step wrote, when it needs a sync.
    touched: Vec<Vec<u8>>,
}

impl Stored {
    /// Whether the outputs must wait for a sync: the step wrote and the fsync policy syncs before
    /// answering, or the ring changed.
    pub fn needs_sync(&self) -> bool {
        self.needs_sync
    }

    /// The keys whose reads must wait for this step's sync (none if it needs no sync).
    pub fn touched_keys(&self) -> &[Vec<u8>] {
        &self.touched
    }

    /// What the outputs weigh, in bytes: their encoded sizes (a walk that copies nothing, values
    /// counted by their lengths). The driver bounds what it holds for a sync by it.
    pub fn held_bytes(&self) -> usize {
        fn bytes(item: &impl serde::Serialize) -> usize {
            postcard::experimental::serialized_size(item).unwrap_or(crate::wire::FRAME_BYTES_MAX)
        }
        let messages = self.messages.iter().map(|(_, _, m)| bytes(m));
        let replies = self.replies.iter().map(|(_, _, r)| bytes(r));
        messages.chain(replies).fold(0, usize::saturating_add)
    }

    /// Takes what may leave before the step's sync: fetches, and fetch replies, get answers and
    /// the answers of acknowledged puts, of keys for which `durable` says every write is durable
    /// (the caller counts this step's [`Stored::touched_keys`] among the others), and the
    /// versions this node coordinated on their way to the replicas ([`Gate::Version`]). Never an
    /// acknowledgement or a repair: the kinds are checked here, whatever the core marked. A hint's
    /// delivery or a hand-over is a `Store` like a new version, so for those the core's mark
    /// decides (only `Core::send_new_version` makes it). The rest stays for [`Stored::release`],
    /// in order.
    pub fn take_reads(&mut self, durable: impl Fn(&[u8]) -> bool) -> Released {
        let may_leave = |gate: &Gate| match gate {
            Gate::Writes => false,
            Gate::Nothing | Gate::Version => true,
            Gate::Key(key) => durable(key),
        };
        let mut released = Released::default();
        let mut kept = Vec::new();
        for (gate, to, message) in std::mem::take(&mut self.messages) {
            let read = match (&gate, &message) {
                (Gate::Nothing, PeerMessage::Fetch { .. }) => true,
                (Gate::Version, PeerMessage::Store { .. }) => true,
                (Gate::Key(_), message) => is_read_message(message),
                _ => false,
            };
            debug_assert!(read || gate == Gate::Writes, "a read gate on {message:?}");
            if read && may_leave(&gate) {
                released.messages.push((to, message));
            } else {
                kept.push((gate, to, message));
            }
        }
        self.messages = kept;
        let mut kept = Vec::new();
        for (gate, token, response) in std::mem::take(&mut self.replies) {
            let read = matches!(gate, Gate::Key(_)) && is_read_response(&response);
            debug_assert!(read || gate == Gate::Writes, "a read gate on {response:?}");
            if read && may_leave(&gate) {
                released.replies.push((token, response));
            } else {
                kept.push((gate, token, response));
            }
        }
        self.replies = kept;
        released
    }

    /// The outputs. Only once a sync that began after [`Ready::store`] returned is done, if
    /// [`Stored::needs_sync`]; and, because a step's answers may read what earlier steps
    /// wrote, only after the outputs of every earlier step that needed one.
    pub fn release(self) -> Released {
        Released {
            messages: self
                .messages
                .into_iter()
                .map(|(_, to, message)| (to, message))
                .collect(),
            replies: self
                .replies
                .into_iter()
                .map(|(_, token, response)| (token, response))
                .collect(),
            membership: self.membership,
        }
    }
}

/// The messages a read may be: a replica's fetch reply, or an answer a peer forwarded. A fetch
/// is one too, with no key.
fn is_read_message(message: &PeerMessage) -> bool {
    match message {
        PeerMessage::FetchReply { .. } => true,
        PeerMessage::ForwardReply { response, .. } => is_read_response(response),
        _ => false,
    }
}

/// The answers a read may be: a get's, and a put's once its quorum acknowledged, which reads back
/// the version the coordinator stored in an earlier step (the step that made the version wrote
/// its key, so a put answered in that same step waits for its sync all the same).
fn is_read_response(response: &Response) -> bool {
    matches!(response, Response::Get { .. } | Response::Put { .. })
}
