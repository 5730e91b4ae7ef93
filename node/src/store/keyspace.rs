//! The node's view of its [`Storage`]: key states encoded with postcard under a namespace prefix,
//! and a little metadata (the actor id of this incarnation).
//!
//! Prefixes keep the namespaces of one byte map apart: `d/` + key for key states, `h/` + owner +
//! `/` + key for hints (writes held for an unreachable owner, sloppy quorum), `m/` + name for
//! metadata. Node names cannot contain `/` (`version::valid_actor`), so a hint's name splits cleanly.
//!
//! # Records lost at runtime
//!
//! A stored record can decay after the store recovered (the log store checks every record it
//! reads). Such a read is an `InvalidData` error; the keyspace also remembers the key as lost, and
//! the protocol core collects the lost keys at the end of its step ([`ReadState::take_lost`]): it
//! drops the key (so that it is not stuck failing every read), takes a new actor id before its next
//! version (the lost state may hold the highest counter this node issued for the key), and lets
//! anti-entropy and read repair refill it from the other replicas. The request that met the damage
//! fails with a storage error; the next one finds the key absent.
//!
//! A record whose checksum holds can still hold a state no node could have written (a dotless
//! sibling, a duplicate dot, a clock that misses a sibling: a bug of an earlier version, or a
//! hand-edited file). Merged, such a state would panic the node (`KeyVersions::merge` relies on the
//! invariants) on every start, at the first write of the key; so every state read is checked like
//! a state from a peer ([`KeyVersions::validate`]), and one that fails is damage, handled as above.

use super::Storage;
use crate::fs::DetachedSync;
use crate::ring::{NodeId, Ring};
use crate::version::{KeyVersions, Rule};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

const DATA_PREFIX: &[u8] = b"d/";
const META_PREFIX: &[u8] = b"m/";
const HINT_PREFIX: &[u8] = b"h/";

/// Where the actor id of this incarnation is kept: apart from the data
/// ([`Storage::write_apart`]), so that damage to the data cannot take it along and leave the
/// choice of keeping or renewing it to chance (see `shell::open_storage`).
const ACTOR_APART: &str = "ACTOR";
/// The metadata record where stores written before the actor was kept apart hold it.
const ACTOR_META: &str = "actor";
/// The metadata record where the log keeps a copy of the actor id kept apart, to check it
/// ([`Keyspace::logged_actor`]). Not [`ACTOR_META`]: that one is read when the actor file is
/// missing, and a copy read in its place could be older than the file that went missing.
const ACTOR_CHECK_META: &str = "actor-check";
/// The metadata record holding the last ring this node adopted, with the known nodes' addresses.
const MEMBERSHIP_META: &str = "membership";

/// A stored record found damaged when read (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LostRecord {
    /// The state of a key.
    State(Vec<u8>),
    /// The hint held for `owner` for `key`.
    Hint {
        /// The node the hint is held for.
        owner: NodeId,
        /// The key.
        key: Vec<u8>,
    },
}

/// Reads key states; what the protocol core is given so that it never writes storage itself.
pub trait ReadState {
    /// The state of `key` (empty if never written).
    fn read_state(&self, key: &[u8]) -> io::Result<KeyVersions>;
    /// Every stored key, in byte order (to build Merkle trees at start).
    fn data_keys(&self) -> Vec<Vec<u8>>;
    /// The hint held for `owner` for `key`, if any.
    fn read_hint(&self, owner: &str, key: &[u8]) -> io::Result<Option<KeyVersions>>;
    /// Every hint held, as (owner, key), in order.
    fn hint_keys(&self) -> Vec<(String, Vec<u8>)>;
    /// The records found damaged by reads since the last call (see the module docs).
    fn take_lost(&self) -> Vec<LostRecord> {
        Vec::new()
    }
}

fn hint_record(owner: &str, key: &[u8]) -> Vec<u8> {
    let mut k = HINT_PREFIX.to_vec();
    k.extend_from_slice(owner.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key);
    k
}

fn encode(state: &KeyVersions) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(state)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Decodes a stored state and checks it as a state from a peer is checked (see the module docs):
/// one that does not decode, or breaks the invariants of `rule`, is `InvalidData` (damage).
fn decode(bytes: &[u8], rule: Rule) -> io::Result<KeyVersions> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
    let state: KeyVersions = postcard::from_bytes(bytes)
        .map_err(|e| invalid(format!("stored state of a key does not decode: {e}")))?;
    state.validate(rule).map_err(|e| {
        invalid(format!(
            "stored state of a key is one no node could write: {e}"
        ))
    })?;
    Ok(state)
}

/// Key states over a byte-map engine.
#[derive(Debug)]
pub struct Keyspace<S> {
    storage: S,
    /// Decoded states of recently used keys, always equal to what `storage` holds: every write
    /// goes through [`Keyspace::write_state`], which updates it. A Bitcask read costs a file read
    /// and a decode; the hot keys of a workload are read on every request. A hash map, with std's
    /// keyed hasher (keys come from clients, who must not choose collisions): a `BTreeMap` of
    /// 10,000 keys with a common prefix compares whole keys at every level of every lookup, and
    /// `read_state` with its `memcmp`s took 9% of a node's CPU samples (`perf`) under `dynamo
    /// bench` with gets alone. Nothing iterates it in order, so the hasher's random keys change
    /// no output.
    cache: RefCell<HashMap<Vec<u8>, KeyVersions>>,
    /// What the cached states weigh ([`cached_bytes`] of each), kept by [`Keyspace::remember`]
    /// and [`Keyspace::forget`], the only ways in and out of the cache.
    cache_bytes: Cell<usize>,
    /// Records found damaged since the core last took them; bounded by the keys stored.
    lost: RefCell<BTreeSet<LostRecord>>,
    /// The data directory's lock, held as long as the keyspace is open
    /// ([`crate::store::identity`]).
    _lock: Option<crate::fs::DirLock>,
    /// The rule the node's states obey, which every state read is checked against.
    rule: Rule,
}

/// Most key states kept decoded in memory; past it the cache starts over (crude, but bounded and
/// with no bookkeeping on the hot path). Room for a working set of tens of thousands of keys: at
/// 4,096, a load over 10,000 keys (`dynamo bench`'s default) started the cache over every few
/// thousand requests and read most states back from the files (3% to 13% fewer operations per
/// second in BENCHMARKS.md's measurement). [`STATE_CACHE_BYTES_MAX`] bounds what it holds either
/// way. Starting over drops every cached state at once: with a working set larger than this, the
/// driver pauses for that (not measured; some milliseconds at this size) once per this many
/// states read from the file.
pub const STATE_CACHE_ENTRIES_MAX: usize = 65_536;

/// Most bytes of key states kept decoded in memory (each reckoned by [`cached_bytes`]); past it
/// the cache starts over, as past [`STATE_CACHE_ENTRIES_MAX`]. The count alone does not bound
/// memory: a state may weigh up to `wire::STATE_BYTES_MAX` (7 MiB), and 65,536 of them 448 GiB.
/// Room for several of the largest states, so that a hot large key still stays decoded.
pub const STATE_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The key under which the log stores `key`'s state: what damage aimed at the key's records
/// looks for (`crate::store::log::damage::apply_damage`).
pub fn record_key(key: &[u8]) -> Vec<u8> {
    prefixed(DATA_PREFIX, key)
}

fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key);
    k
}

impl<S: Storage> Keyspace<S> {
    /// Wraps an engine.
    pub fn new(storage: S) -> Keyspace<S> {
        Keyspace {
            storage,
            cache: RefCell::new(HashMap::new()),
            cache_bytes: Cell::new(0),
            lost: RefCell::new(BTreeSet::new()),
            _lock: None,
            rule: Rule::default(),
        }
    }

    /// Checks the states it reads against `rule` (the node's: [`crate::config::NodeConfig::rule`])
    /// instead of the dotted rule.
    pub fn with_rule(mut self, rule: Rule) -> Keyspace<S> {
        self.rule = rule;
        self
    }

    /// Holds `lock` (the data directory's) for as long as the keyspace is open.
    pub fn with_lock(mut self, lock: crate::fs::DirLock) -> Keyspace<S> {
        self._lock = Some(lock);
        self
    }

    /// Stores a key's state (durable after the next [`Keyspace::sync`]).
    /// Takes the state by value: it moves into the cache rather than being copied there.
    pub fn write_state(&mut self, key: &[u8], state: KeyVersions) -> io::Result<()> {
        let written = self
            .storage
            .put(&prefixed(DATA_PREFIX, key), &encode(&state)?);
        match written {
            Ok(()) => self.remember(key, state),
            // The store refuses writes after a failure; whatever it holds, do not guess.
            Err(_) => self.forget(key),
        }
        written
    }

    /// Deletes a key's state (handed over to its new owners).
    pub fn remove_state(&mut self, key: &[u8]) -> io::Result<()> {
        self.forget(key);
        self.storage.remove(&prefixed(DATA_PREFIX, key))
    }

    /// Stores (or with `None` deletes) the hint held for `owner` for `key`.
    pub fn write_hint(
        &mut self,
        owner: &str,
        key: &[u8],
        state: Option<&KeyVersions>,
    ) -> io::Result<()> {
        let record = hint_record(owner, key);
        match state {
            Some(state) => self.storage.put(&record, &encode(state)?),
            None => self.storage.remove(&record),
        }
    }

    /// Every stored key, in byte order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.storage
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(DATA_PREFIX).map(<[u8]>::to_vec))
            .collect()
    }

    /// A metadata value.
    pub fn meta(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.storage.get(&prefixed(META_PREFIX, name.as_bytes()))
    }

    /// The actor id the last incarnation wrote versions as, if one is stored (stores of earlier
    /// versions kept it among the metadata).
    pub fn actor(&self) -> io::Result<Option<Vec<u8>>> {
        match self.storage.read_apart(ACTOR_APART)? {
            Some(actor) => Ok(Some(actor)),
            None => self.meta(ACTOR_META),
        }
    }

    /// Stores the actor id of this incarnation, durably before it returns, and records it in the
    /// log too (durable with the log's next sync): see [`Keyspace::logged_actor`].
    pub fn set_actor(&mut self, actor: &str) -> io::Result<()> {
        self.storage.write_apart(ACTOR_APART, actor.as_bytes())?;
        self.log_actor(actor)
    }

    /// Records `actor` in the log only (durable with the log's next sync): for a store written
    /// before the log recorded it, whose actor file is kept.
    pub fn log_actor(&mut self, actor: &str) -> io::Result<()> {
        self.set_meta(ACTOR_CHECK_META, actor.as_bytes())
    }

    /// The actor id the log last recorded ([`Keyspace::set_actor`]), if any: a check of the
    /// actor id kept apart. The two differ when the file kept apart comes from another
    /// incarnation of the node (a restore that mixed up files, a copied `ACTOR`), or when a crash
    /// came between the two writes; either way the node takes a new actor id
    /// (`crate::shell::open_storage`). A store written before the log recorded it holds none.
    pub fn logged_actor(&self) -> io::Result<Option<Vec<u8>>> {
        self.meta(ACTOR_CHECK_META)
    }

    /// Sets a metadata value (durable after the next sync).
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        self.storage
            .put(&prefixed(META_PREFIX, name.as_bytes()), value)
    }

    /// Stores the ring and the known nodes' addresses (durable after the next sync), so that a
    /// restarted node remembers a ring that changed.
    pub fn save_membership(
        &mut self,
        ring: &Ring,
        addrs: &BTreeMap<NodeId, String>,
    ) -> io::Result<()> {
        let bytes = postcard::to_stdvec(&(ring, addrs))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.set_meta(MEMBERSHIP_META, &bytes)
    }

    /// The ring saved by [`Keyspace::save_membership`], if any. `InvalidData` if it is damaged.
    pub fn membership(&self) -> io::Result<Option<(Ring, BTreeMap<NodeId, String>)>> {
        let Some(bytes) = self.meta(MEMBERSHIP_META)? else {
            return Ok(None);
        };
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    /// Makes every write so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.storage.sync()
    }

    /// Begins making every write so far durable ([`Storage::begin_sync`]).
    pub fn begin_sync(&mut self) -> io::Result<Option<DetachedSync>> {
        self.storage.begin_sync()
    }

    /// The engine underneath.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }
}

impl<S: Storage> ReadState for Keyspace<S> {
    fn data_keys(&self) -> Vec<Vec<u8>> {
        self.keys()
    }
    fn read_hint(&self, owner: &str, key: &[u8]) -> io::Result<Option<KeyVersions>> {
        let read = match self.storage.get(&hint_record(owner, key)) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => decode(&bytes, self.rule).map(Some),
            Err(e) => Err(e),
        };
        if read.as_ref().is_err_and(is_damage) {
            self.lost.borrow_mut().insert(LostRecord::Hint {
                owner: owner.into(),
                key: key.to_vec(),
            });
        }
        read
    }
    fn hint_keys(&self) -> Vec<(String, Vec<u8>)> {
        self.storage
            .keys()
            .into_iter()
            .filter_map(|k| {
                let rest = k.strip_prefix(HINT_PREFIX)?;
                let slash = rest.iter().position(|&b| b == b'/')?;
                let owner = String::from_utf8(rest[..slash].to_vec()).ok()?;
                Some((owner, rest[slash + 1..].to_vec()))
            })
            .collect()
    }
    fn read_state(&self, key: &[u8]) -> io::Result<KeyVersions> {
        if let Some(state) = self.cache.borrow().get(key) {
            return Ok(state.clone());
        }
        let read = match self.storage.get(&prefixed(DATA_PREFIX, key)) {
            Ok(None) => Ok(KeyVersions::new()),
            Ok(Some(bytes)) => decode(&bytes, self.rule),
            Err(e) => Err(e),
        };
        match read {
            Ok(state) => {
                self.remember(key, state.clone());
                Ok(state)
            }
            Err(e) => {
                if is_damage(&e) {
                    self.lost
                        .borrow_mut()
                        .insert(LostRecord::State(key.to_vec()));
                }
                Err(e)
            }
        }
    }
    fn take_lost(&self) -> Vec<LostRecord> {
        std::mem::take(&mut *self.lost.borrow_mut())
            .into_iter()
            .collect()
    }
}

/// Whether a read failed because the stored bytes are damaged (rather than the disk failing to
/// read them): the engine's checks and the decoding of a state say `InvalidData`.
fn is_damage(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// What a cached state weighs, in bytes: its key and a bound of its encoding (values count by
/// their lengths, clocks by their entries), close to what it holds decoded.
fn cached_bytes(key: &[u8], state: &KeyVersions) -> usize {
    key.len() + state.encoded_bytes_bound()
}

impl<S> Keyspace<S> {
    /// Caches `key`'s state, starting the cache over when it would pass
    /// [`STATE_CACHE_ENTRIES_MAX`] or [`STATE_CACHE_BYTES_MAX`].
    fn remember(&self, key: &[u8], state: KeyVersions) {
        self.forget(key);
        let bytes = cached_bytes(key, &state);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= STATE_CACHE_ENTRIES_MAX
            || self.cache_bytes.get() + bytes > STATE_CACHE_BYTES_MAX
        {
            cache.clear();
            self.cache_bytes.set(0);
        }
        if bytes <= STATE_CACHE_BYTES_MAX {
            self.cache_bytes.set(self.cache_bytes.get() + bytes);
            cache.insert(key.to_vec(), state);
        }
        debug_assert!(self.cache_bytes.get() <= STATE_CACHE_BYTES_MAX);
    }

    /// Drops `key`'s cached state, if any.
    fn forget(&self, key: &[u8]) {
        if let Some(state) = self.cache.borrow_mut().remove(key) {
            self.cache_bytes
                .set(self.cache_bytes.get() - cached_bytes(key, &state));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::version::VClock;
    use crate::wire::VALUE_BYTES_MAX;

    /// The cache of decoded states, with keys of large values: it was bounded by its count of
    /// entries alone, and 4,096 entries of states of up to `wire::STATE_BYTES_MAX` (7 MiB) are
    /// 28 GiB: a client that wrote and read a few hundred keys of megabyte values held a
    /// megabyte of the node's memory per key, for as long as the keys stayed among the last
    /// 4,096 used. It is now bounded in bytes too ([`STATE_CACHE_BYTES_MAX`]), and what it
    /// gives back is still what the store holds.
    #[test]
    fn the_cache_of_decoded_states_is_bounded_in_bytes() {
        let mut keyspace = Keyspace::new(MemoryStore::new());
        let key = |i: usize| format!("big-{i}").into_bytes();
        let state = |i: usize| {
            let mut state = KeyVersions::new();
            state.put(
                "w.1",
                &VClock::new(),
                vec![i as u8; VALUE_BYTES_MAX],
                false,
                1,
            );
            state
        };
        for i in 0..200 {
            keyspace.write_state(&key(i), state(i)).unwrap();
            assert_eq!(keyspace.read_state(&key(i / 2)).unwrap(), state(i / 2));
        }
        let cached: usize = keyspace
            .cache
            .borrow()
            .iter()
            .map(|(k, s)| cached_bytes(k, s))
            .sum();
        assert_eq!(cached, keyspace.cache_bytes.get());
        assert!(
            cached <= STATE_CACHE_BYTES_MAX,
            "{cached} bytes of decoded states cached"
        );
        for i in 0..200 {
            assert_eq!(keyspace.read_state(&key(i)).unwrap(), state(i));
        }
    }
}
