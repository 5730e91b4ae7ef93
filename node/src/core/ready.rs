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
    /// Messages to peers.
    pub(super) messages: Vec<(NodeId, PeerMessage)>,
    /// Answers to clients connected to this node.
    pub(super) replies: Vec<(ClientToken, Response)>,
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
        if stored.needs_sync {
            keyspace.sync().map_err(|e| {
                std::io::Error::new(e.kind(), format!("syncing the step's writes: {e}"))
            })?;
        }
        Ok(stored.released)
    }

    /// Stores the step's writes in `keyspace` as [`Ready::apply`] does, without the sync: what
    /// may leave is held in the returned [`Stored`] until a sync begun after this call is done.
    /// This is how the driver goes on serving while the disk syncs (`crate::shell::run`).
    pub fn store<S: Storage>(
        self,
        keyspace: &mut Keyspace<S>,
        config: &NodeConfig,
    ) -> std::io::Result<Stored> {
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
            released: Released {
                messages,
                replies,
                membership,
            },
            needs_sync,
        })
    }
}

/// A step's outputs whose writes are stored but perhaps not yet durable ([`Ready::store`]).
#[derive(Debug)]
#[must_use = "a step's outputs must be released or the node stopped"]
pub struct Stored {
    released: Released,
    needs_sync: bool,
}

impl Stored {
    /// Whether the outputs must wait for a sync: the step wrote and the fsync policy syncs before
    /// answering, or the ring changed.
    pub fn needs_sync(&self) -> bool {
        self.needs_sync
    }

    /// The outputs. Only once a sync that began after [`Ready::store`] returned is done, if
    /// [`Stored::needs_sync`]; and, because a step's answers may read what earlier steps
    /// wrote, only after the outputs of every earlier step that needed one.
    pub fn release(self) -> Released {
        self.released
    }
}
