//! Versions: dotted version vectors per key (DESIGN.md, "Versions").
//!
//! A key's state on a replica is a [`KeyVersions`]: the set of live siblings and the key's causal
//! clock, the join of every dot and context the replica has seen for the key. Each sibling carries
//! its own [`Dot`] (the one event that created it) and the causal context its writer handed in, kept
//! apart: folding the dot into the context would make `{dot:(a,4), ctx:{}}` look newer than
//! `{dot:(a,3), ctx:{}}`, although neither writer saw the other (the false dominance of per-server
//! vector clocks that Riak 2.0 ended with dotted version vectors).
//!
//! The rules, the same as Riak's DVVSet:
//! - a put with context C removes exactly the siblings whose dot C covers, and adds the new sibling;
//! - merging two states keeps a sibling if both hold it, or if the other side's clock does not cover
//!   its dot (the other side never saw it, rather than saw it superseded);
//! - the context a read returns is the merged clock, which covers every sibling it shows.
//!
//! Soundness rests on two habits of the node: a coordinator makes dots for its own actor with
//! consecutive counters from its own clock, and replicas exchange whole key states (never a lone
//! sibling with a clock that claims events the sender does not hold).

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;
use std::collections::BTreeMap;
use std::fmt;

/// The id of one incarnation of a node that makes versions: `n1.5e2a9c01`. A node takes a new actor
/// id whenever it may have lost its own writes, so that no counter is ever issued twice.
///
/// A `SmolStr`, not a `String`: every clock and dot names actors, and clocks are decoded, cloned and
/// merged on every replica for every operation. Names up to 23 bytes live inline (a node id of up
/// to 14 bytes plus the 9-byte incarnation suffix), so decoding or cloning one allocates nothing;
/// longer ones are shared, not copied.
pub type Actor = SmolStr;

/// The single event that created a version: the actor that coordinated the write and its counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who made the version.
    #[serde(deserialize_with = "bounded_actor")]
    pub actor: Actor,
    /// The actor's counter for this key, from 1, at most [`COUNTER_MAX`].
    #[serde(deserialize_with = "bounded_counter")]
    pub counter: u64,
}

/// The highest counter an actor may issue for a key, 2^53 - 1: every JSON reader holds it exactly,
/// and a real actor never comes near it (an actor id changes with each incarnation that may have
/// lost writes). Decoding refuses a higher counter, a put whose next dot would pass it is refused,
/// and so a counter never wraps.
pub const COUNTER_MAX: u64 = (1 << 53) - 1;

/// Decodes a counter, refusing one above [`COUNTER_MAX`].
fn bounded_counter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let counter = u64::deserialize(deserializer)?;
    if counter > COUNTER_MAX {
        return Err(serde::de::Error::custom(format!(
            "counter {counter} exceeds {COUNTER_MAX}"
        )));
    }
    Ok(counter)
}

/// Decodes an actor name, refusing one longer than [`ACTOR_NAME_BYTES_MAX`].
fn bounded_actor<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Actor, D::Error> {
    let actor = Actor::deserialize(deserializer)?;
    if actor.len() > ACTOR_NAME_BYTES_MAX {
        return Err(serde::de::Error::custom(format!(
            "an actor name of {} bytes exceeds {ACTOR_NAME_BYTES_MAX}",
            actor.len()
        )));
    }
    Ok(actor)
}

impl Dot {
    /// A dot.
    pub fn new(actor: impl Into<Actor>, counter: u64) -> Dot {
        Dot {
            actor: actor.into(),
            counter,
        }
    }
}

/// A vector clock: for each actor, the events 1..=counter.
///
/// Kept as a vector sorted by actor with no duplicate actors and no zero counters: clocks hold a
/// handful of entries (one per node incarnation that wrote the key), where a sorted vector is one
/// allocation and a binary search, against a B-tree's node allocations. It orders, hashes and
/// serialises exactly as a `BTreeMap<Actor, u64>` would (a map from actor to counter).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VClock(Vec<(Actor, u64)>);

impl VClock {
    /// The empty clock.
    pub fn new() -> VClock {
        VClock::default()
    }

    /// The counter of `actor` (0 if absent).
    pub fn get(&self, actor: &str) -> u64 {
        match self.position(actor) {
            Ok(i) => self.0[i].1,
            Err(_) => 0,
        }
    }

    fn position(&self, actor: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(a, _)| a.as_str().cmp(actor))
    }

    /// Raises `actor`'s entry to at least `counter`.
    pub fn raise(&mut self, actor: &str, counter: u64) {
        if counter == 0 {
            return;
        }
        match self.position(actor) {
            Ok(i) => self.0[i].1 = self.0[i].1.max(counter),
            Err(i) => self.0.insert(i, (Actor::from(actor), counter)),
        }
    }

    /// Whether the clock covers the event `dot`.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.get(&dot.actor) >= dot.counter
    }

    /// Whether every event of `other` is in `self` (entry by entry `other <= self`).
    pub fn descends(&self, other: &VClock) -> bool {
        other.0.iter().all(|(actor, c)| self.get(actor) >= *c)
    }

    /// Adds every event of `other`.
    pub fn join(&mut self, other: &VClock) {
        if self.descends(other) {
            return;
        }
        for (actor, c) in &other.0 {
            self.raise(actor, *c);
        }
    }

    /// Adds the event `dot` (and, since a clock is a set of prefixes, its predecessors).
    pub fn add(&mut self, dot: &Dot) {
        self.raise(&dot.actor, dot.counter);
    }

    /// The entries, in actor order.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64)> {
        self.0.iter().map(|(a, c)| (a, *c))
    }

    /// Whether the clock has no events.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The clock as a map, for histories.
    pub fn to_map(&self) -> BTreeMap<Actor, u64> {
        self.0.iter().cloned().collect()
    }

    /// Parses the text form written by `Display`: `a=3,b=1` (empty for the empty clock).
    pub fn parse(text: &str) -> Result<VClock, String> {
        let mut clock = VClock::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(clock);
        }
        for part in text.split(',') {
            let (actor, counter) = part
                .split_once('=')
                .ok_or_else(|| format!("context entry {part:?} is not actor=counter"))?;
            if !valid_actor(actor) {
                return Err(format!("context entry {part:?} has a bad actor name"));
            }
            let counter: u64 = counter
                .parse()
                .map_err(|_| format!("context entry {part:?} has a bad counter"))?;
            if counter > COUNTER_MAX {
                return Err(format!(
                    "context entry {part:?}: counter {counter} exceeds the limit {COUNTER_MAX}"
                ));
            }
            clock.raise(actor, counter);
            if clock.len() > CONTEXT_ENTRIES_MAX {
                return Err(format!(
                    "a context of more than {CONTEXT_ENTRIES_MAX} entries"
                ));
            }
        }
        Ok(clock)
    }

    /// The number of actors in the clock.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The highest counter of any actor (0 for the empty clock).
    pub fn counter_max(&self) -> u64 {
        self.0.iter().map(|(_, c)| *c).max().unwrap_or(0)
    }
}

/// Whether `name` may be an actor or node name: it must survive the context text form.
pub fn valid_actor(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= ACTOR_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Whether `actor` is an actor id node `node` issues: its name, `.` and 8 hex digits (an id of
/// node `n1.b`, `n1.b.0badf00d`, starts with `n1.` too, and is not one of `n1`'s).
pub fn is_actor_of(actor: &str, node: &str) -> bool {
    actor.strip_prefix(node).is_some_and(|suffix| {
        suffix.len() == ACTOR_SUFFIX_BYTES
            && suffix.starts_with('.')
            && suffix[1..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Longest actor or node name accepted, in bytes: a bound on what a peer or client can make us store.
pub const ACTOR_NAME_BYTES_MAX: usize = 64;

/// The bytes an incarnation adds to its node's name to make an actor id (`.` and 8 hex digits).
pub const ACTOR_SUFFIX_BYTES: usize = 9;

/// Longest node name, in bytes: its actor ids (name plus [`ACTOR_SUFFIX_BYTES`]) must stay valid
/// actor names.
pub const NODE_ID_BYTES_MAX: usize = ACTOR_NAME_BYTES_MAX - ACTOR_SUFFIX_BYTES;

/// Whether `name` may be a node name: a valid actor name short enough that its actor ids are too.
pub fn valid_node_id(name: &str) -> bool {
    valid_actor(name) && name.len() <= NODE_ID_BYTES_MAX
}

impl fmt::Display for VClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (actor, c)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{actor}={c}")?;
        }
        Ok(())
    }
}

impl Serialize for VClock {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (actor, counter) in &self.0 {
            map.serialize_entry(actor, counter)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for VClock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<VClock, D::Error> {
        struct ClockVisitor;
        impl<'de> Visitor<'de> for ClockVisitor {
            type Value = VClock;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from actor to counter")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<VClock, M::Error> {
                // The length comes from the peer: cap what it can make us reserve.
                let hint = map.size_hint().unwrap_or(0).min(CLOCK_ENTRIES_RESERVE_MAX);
                let mut entries: Vec<(Actor, u64)> = Vec::with_capacity(hint);
                while let Some((actor, counter)) = map.next_entry::<Actor, u64>()? {
                    if entries.len() == CLOCK_ENTRIES_MAX {
                        return Err(serde::de::Error::custom(format!(
                            "a clock of more than {CLOCK_ENTRIES_MAX} entries"
                        )));
                    }
                    if counter > COUNTER_MAX {
                        return Err(serde::de::Error::custom(format!(
                            "counter {counter} exceeds {COUNTER_MAX}"
                        )));
                    }
                    if actor.len() > ACTOR_NAME_BYTES_MAX {
                        return Err(serde::de::Error::custom(format!(
                            "an actor name of {} bytes exceeds {ACTOR_NAME_BYTES_MAX}",
                            actor.len()
                        )));
                    }
                    entries.push((actor, counter));
                }
                // What we wrote is sorted and unique; anything else (another encoder, a peer's
                // garbage) is normalised rather than trusted: sorted, duplicates joined (the
                // highest counter kept), zeros dropped. In O(n log n): entry by entry insertion
                // would let one frame of reversed entries stall the node for minutes.
                if !entries.windows(2).all(|w| w[0].0 < w[1].0) || entries.iter().any(|e| e.1 == 0)
                {
                    entries.retain(|e| e.1 > 0);
                    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
                    entries.dedup_by(|later, first| later.0 == first.0);
                }
                Ok(VClock(entries))
            }
        }
        deserializer.deserialize_map(ClockVisitor)
    }
}

/// Most clock entries reserved up front when decoding, whatever length the encoding claims.
const CLOCK_ENTRIES_RESERVE_MAX: usize = 64;

/// Most entries a decoded clock may have: one per node incarnation that ever wrote the key, so a
/// real clock stays far below it; past it the encoding is refused (the frame or record is bad).
/// What a node may store is what a peer may decode: a put or merge whose clock would pass it is
/// refused ([`KeyVersions::check_bounds`]), so no stored state can outgrow the decoder.
pub const CLOCK_ENTRIES_MAX: usize = 4_096;

/// Most entries a client's context may have: as many as a clock, as a context is the clock a read
/// returned, and a client must be able to write back with what it read (a bound one below the
/// clock's let a put make a clock of 4,096 entries whose context every later put was refused
/// with: the key could never be updated again). A put whose new clock (the context, the key's
/// clock and the coordinator's actor) would pass [`CLOCK_ENTRIES_MAX`] is refused by
/// [`KeyVersions::check_put`], which counts it exactly.
pub const CONTEXT_ENTRIES_MAX: usize = CLOCK_ENTRIES_MAX;

/// Most siblings a state received from another node may carry. A replica refuses puts past
/// [`SIBLINGS_MAX`], but replicas that took writes apart can merge into more; four times the
/// bound leaves room for that and still bounds the quadratic checks of a merge.
pub const PEER_SIBLINGS_MAX: usize = 4 * SIBLINGS_MAX;

/// One stored version of a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// The event that made this version. `None` only for plain vector clocks (the `naive-clock`
    /// deliberate bug), where `context` includes the version's own event.
    pub dot: Option<Dot>,
    /// The causal context the writer handed in (with a dot), or the plain clock (without).
    pub context: VClock,
    /// The value; for a tombstone, whatever marker the deleting client attached (reads never
    /// return it, but a replica's raw state shows it, so a history can name the delete).
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Whether this version is a delete marker.
    pub tombstone: bool,
    /// The coordinator's wall clock when it made the version, in ms since the Unix epoch. Metadata
    /// only: causality never looks at it (except under the `lww` deliberate bug).
    pub timestamp_ms: u64,
}

impl Sibling {
    /// Whether this sibling's history includes `other`'s, strictly: `other` precedes `self`
    /// (history-format.md, "Versions").
    pub fn succeeds(&self, other: &Sibling) -> bool {
        match (&self.dot, &other.dot) {
            (Some(_), Some(od)) => self.context.covers(od) && self.context.descends(&other.context),
            (None, None) => self.context.descends(&other.context) && self.context != other.context,
            // Mixed forms never meet in one store; treat them as concurrent.
            _ => false,
        }
    }

    /// Whether this version is a delete marker.
    pub fn is_tombstone(&self) -> bool {
        self.tombstone
    }
}

/// The state of one key on one replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersions {
    /// Every event this replica has seen for the key, live or superseded.
    pub clock: VClock,
    /// The live siblings, sorted by dot; no sibling's dot is covered by another's context.
    pub siblings: Vec<Sibling>,
}

/// How a replica orders and resolves versions. Only `Dotted` is correct; the others are the
/// deliberate bugs `naive-clock` and `lww` (DESIGN.md, "Deliberate bugs"), kept here beside the
/// correct rule so that the difference is one match arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rule {
    /// Dotted version vectors.
    #[default]
    Dotted,
    /// Per-version plain vector clocks, as the paper describes them: a new version's clock is the
    /// context with the coordinator's entry set to its highest counter for the key plus one, and
    /// it replaces every version it dominates. Two writers that saw the same context but went
    /// through one coordinator get ordered although neither saw the other.
    PlainClocks,
    /// Dotted versions, but concurrent siblings are resolved by timestamp, keeping one.
    LastWriteWins,
}

/// Most siblings kept for one key: a bound on what concurrent blind writers can pile up. Past it, a
/// put is refused rather than the key made unreadable.
pub const SIBLINGS_MAX: usize = 256;

impl KeyVersions {
    /// The empty state (a key never written).
    pub fn new() -> KeyVersions {
        KeyVersions::default()
    }

    /// The dot a coordinator running as `actor` gives a new version written with `context`: one
    /// past the highest counter of `actor` that it or the writer has seen.
    pub fn next_dot(&self, actor: &str, context: &VClock) -> Dot {
        Dot::new(actor, self.clock.get(actor).max(context.get(actor)) + 1)
    }

    /// Whether a put of `context` coordinated by `actor` keeps every bound: its counter stays at
    /// most [`COUNTER_MAX`] (a counter never wraps) and the key's clock at most
    /// [`CLOCK_ENTRIES_MAX`] entries (the context plus the coordinator's own actor could otherwise
    /// make a clock that no node decodes, and a node that stored it could not restart). The
    /// error is the client's answer.
    pub fn check_put(&self, actor: &str, context: &VClock) -> Result<(), String> {
        if context.len() > CONTEXT_ENTRIES_MAX {
            let len = context.len();
            return Err(format!(
                "a context of {len} entries exceeds {CONTEXT_ENTRIES_MAX}"
            ));
        }
        let seen = self.clock.get(actor).max(context.get(actor));
        if seen >= COUNTER_MAX || context.counter_max() >= COUNTER_MAX {
            return Err(format!(
                "the context is at the counter limit {COUNTER_MAX}: no later version can be made"
            ));
        }
        let mut entries = self.clock.len();
        entries += context
            .iter()
            .filter(|(a, _)| self.clock.get(a) == 0)
            .count();
        if self.clock.get(actor) == 0 && context.get(actor) == 0 {
            entries += 1;
        }
        if entries > CLOCK_ENTRIES_MAX {
            return Err(format!(
                "the key's clock would have {entries} entries, more than {CLOCK_ENTRIES_MAX}"
            ));
        }
        Ok(())
    }

    /// Whether the state may be stored: what a node stores must be what every node can decode
    /// and send. At most [`PEER_SIBLINGS_MAX`] siblings, clocks and contexts of at most
    /// [`CLOCK_ENTRIES_MAX`] entries, and an encoding of at most `state_bytes_max` bytes (the
    /// frame's room for a state, `crate::wire::STATE_BYTES_MAX`). Cheap for the usual small state:
    /// the exact encoded size is only computed when a quick upper bound passes the limit.
    pub fn check_bounds(&self, state_bytes_max: usize) -> Result<(), String> {
        if self.siblings.len() > PEER_SIBLINGS_MAX {
            let count = self.siblings.len();
            return Err(format!("{count} siblings exceed {PEER_SIBLINGS_MAX}"));
        }
        for clock in std::iter::once(&self.clock).chain(self.siblings.iter().map(|s| &s.context)) {
            if clock.len() > CLOCK_ENTRIES_MAX {
                let len = clock.len();
                return Err(format!(
                    "a clock of {len} entries exceeds {CLOCK_ENTRIES_MAX}"
                ));
            }
        }
        if self.encoded_bytes_bound() > state_bytes_max {
            let bytes = postcard::experimental::serialized_size(self).unwrap_or(usize::MAX);
            if bytes > state_bytes_max {
                return Err(format!(
                    "the key's {} siblings would encode to {bytes} bytes, more than {state_bytes_max}",
                    self.siblings.len()
                ));
            }
        }
        Ok(())
    }

    /// A quick upper bound of the state's encoded size, in bytes: linear in the siblings and
    /// their clocks' lengths, without encoding anything (values count by their lengths).
    pub fn encoded_bytes_bound(&self) -> usize {
        let clock_bytes_max = |c: &VClock| c.len() * (ACTOR_NAME_BYTES_MAX + 11) + 10;
        let mut bytes_max = clock_bytes_max(&self.clock) + 10;
        for s in &self.siblings {
            bytes_max += s.value.len() + clock_bytes_max(&s.context) + ACTOR_NAME_BYTES_MAX + 40;
        }
        bytes_max
    }

    /// [`KeyVersions::put`] under a resolution rule.
    pub fn put_by(
        &mut self,
        rule: Rule,
        actor: &str,
        context: &VClock,
        value: Vec<u8>,
        tombstone: bool,
        timestamp_ms: u64,
    ) -> Sibling {
        match rule {
            Rule::Dotted => self.put(actor, context, value, tombstone, timestamp_ms),
            Rule::LastWriteWins => {
                let new = self.put(actor, context, value, tombstone, timestamp_ms);
                self.keep_newest();
                new
            }
            Rule::PlainClocks => {
                let mut clock = context.clone();
                clock.raise(actor, self.clock.get(actor).max(context.get(actor)) + 1);
                self.siblings.retain(|s| !clock.descends(&s.context));
                let sibling = Sibling {
                    dot: None,
                    context: clock.clone(),
                    value,
                    tombstone,
                    timestamp_ms,
                };
                self.clock.join(&clock);
                self.siblings.push(sibling.clone());
                self.normalise();
                sibling
            }
        }
    }

    /// [`KeyVersions::merge`] under a resolution rule; returns whether the state changed.
    pub fn merge_by(&mut self, rule: Rule, other: &KeyVersions) -> bool {
        match rule {
            Rule::Dotted => self.merge(other),
            Rule::LastWriteWins => {
                let siblings = self.siblings.len();
                let grew = self.merge(other);
                self.keep_newest();
                // As in `merge`: nothing is added without the clock growing.
                grew || self.siblings.len() != siblings
            }
            Rule::PlainClocks => {
                let before = self.clone();
                let mut all = std::mem::take(&mut self.siblings);
                all.extend(other.siblings.iter().cloned());
                let kept: Vec<Sibling> = all
                    .iter()
                    .filter(|s| !all.iter().any(|o| o.succeeds(s)))
                    .cloned()
                    .collect();
                self.siblings = kept;
                self.clock.join(&other.clock);
                self.normalise();
                *self != before
            }
        }
    }

    /// Keeps only the sibling with the newest timestamp (the `lww` bug's resolution).
    fn keep_newest(&mut self) {
        if let Some(newest) = self
            .siblings
            .iter()
            .max_by(|a, b| (a.timestamp_ms, &a.dot).cmp(&(b.timestamp_ms, &b.dot)))
            .cloned()
        {
            self.siblings = vec![newest];
        }
    }

    /// Applies a coordinated write: removes the siblings `context` covers and adds a new one made by
    /// `actor`. Returns the new sibling.
    pub fn put(
        &mut self,
        actor: &str,
        context: &VClock,
        value: Vec<u8>,
        tombstone: bool,
        timestamp_ms: u64,
    ) -> Sibling {
        let dot = self.next_dot(actor, context);
        self.siblings
            .retain(|s| !s.dot.as_ref().is_some_and(|d| context.covers(d)));
        let sibling = Sibling {
            dot: Some(dot.clone()),
            context: context.clone(),
            value,
            tombstone,
            timestamp_ms,
        };
        self.clock.join(context);
        self.clock.add(&dot);
        self.siblings.push(sibling.clone());
        self.normalise();
        self.check_invariants();
        sibling
    }

    /// Merges another replica's state of the same key into this one (anti-entropy, replication,
    /// read repair, and the coordinator's merge of read replies). Commutative, associative and
    /// idempotent. Returns whether the state changed.
    ///
    /// The answer needs no copy of the old state: the merge keeps some of this state's siblings
    /// and adds some of the other's, so it changed exactly if the clock grew, a sibling was
    /// added, or one was dropped (the list is shorter than the kept ones plus the added ones).
    ///
    /// Both states must be dotted and valid ([`KeyVersions::validate`]): the node checks every
    /// state it receives before merging it.
    pub fn merge(&mut self, other: &KeyVersions) -> bool {
        let mine = std::mem::take(&mut self.siblings);
        let count = mine.len();
        let mut merged: Vec<Sibling> = Vec::with_capacity(count + other.siblings.len());
        for s in mine {
            let dot = s.dot.as_ref().expect("dotted state");
            if !other.clock.covers(dot) || other.siblings.iter().any(|o| o.dot == s.dot) {
                merged.push(s);
            }
        }
        let kept = merged.len();
        for o in &other.siblings {
            let dot = o.dot.as_ref().expect("dotted state");
            if !self.clock.covers(dot) {
                merged.push(o.clone());
            }
        }
        let added = merged.len() > kept;
        self.siblings = merged;
        let grew = !self.clock.descends(&other.clock);
        if grew {
            self.clock.join(&other.clock);
        }
        self.normalise();
        self.check_invariants();
        grew || added || kept != count
    }

    /// Whether this state is one the node could have made under `rule`, so that merging it is
    /// safe: every sibling dotted (dotless under plain clocks), at most [`PEER_SIBLINGS_MAX`] of
    /// them, and the invariants of [`KeyVersions::check_invariants`]. A state from another node
    /// or a hint file is checked before it is merged: a bad one could panic the node or, merged,
    /// hide writes.
    pub fn validate(&self, rule: Rule) -> Result<(), String> {
        if self.siblings.len() > PEER_SIBLINGS_MAX {
            let count = self.siblings.len();
            return Err(format!("{count} siblings exceed {PEER_SIBLINGS_MAX}"));
        }
        let plain = rule == Rule::PlainClocks;
        if let Some(s) = self.siblings.iter().find(|s| s.dot.is_none() != plain) {
            return Err(match &s.dot {
                Some(dot) => format!("sibling {dot:?} has a dot under plain clocks"),
                None => "a sibling has no dot".to_string(),
            });
        }
        // What no node makes would, merged, brick the key: every read's context would carry it,
        // and every put or delete with that context is refused (`wire::validate`,
        // `check_put`): an actor name no node could have, or a counter at the limit, which a
        // node never issues (it takes a new actor id first).
        let dots = self.siblings.iter().filter_map(|s| s.dot.as_ref());
        let entries = std::iter::once(&self.clock)
            .chain(self.siblings.iter().map(|s| &s.context))
            .flat_map(|clock| clock.iter())
            .chain(dots.map(|d| (&d.actor, d.counter)));
        for (actor, counter) in entries {
            if !valid_actor(actor) {
                return Err(format!(
                    "the actor {actor:?} is one no node could be (1-{ACTOR_NAME_BYTES_MAX} of \
                     [A-Za-z0-9._-])"
                ));
            }
            if counter >= COUNTER_MAX {
                return Err(format!(
                    "actor {actor:?} is at the counter limit {COUNTER_MAX}, which no node issues"
                ));
            }
        }
        self.dotted_invariants()
    }

    /// A 64-bit digest of the state for anti-entropy. It covers the clock and each sibling's dot
    /// and context but not the values: a dot names one write, so equal dots mean equal values, and
    /// hashing large values on every write would cost more than it tells.
    pub fn digest(&self) -> u64 {
        // Hashed as it streams: the bytes are those of each clock's entries (actor, a zero byte,
        // the counter little-endian) closed by 0xff, the key's clock first, then per sibling its
        // dot (as a one-entry clock) and its context.
        use crate::merkle::Fnv64;
        fn entry(h: &mut Fnv64, actor: &str, counter: u64) {
            h.write(actor.as_bytes());
            h.write(&[0]);
            h.write(&counter.to_le_bytes());
        }
        fn clock(h: &mut Fnv64, clock: &VClock) {
            for (actor, counter) in clock.iter() {
                entry(h, actor, counter);
            }
            h.write(&[0xff]);
        }
        let mut h = Fnv64::new();
        clock(&mut h, &self.clock);
        for s in &self.siblings {
            if let Some(d) = s.dot.as_ref().filter(|d| d.counter > 0) {
                entry(&mut h, &d.actor, d.counter);
            }
            h.write(&[0xff]);
            clock(&mut h, &s.context);
        }
        h.finish()
    }

    /// The context handed to a client with a read: covers every sibling it shows.
    pub fn context(&self) -> VClock {
        self.clock.clone()
    }

    /// The siblings that are values, not tombstones.
    pub fn values(&self) -> impl Iterator<Item = &Sibling> {
        self.siblings.iter().filter(|s| !s.is_tombstone())
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty() && self.clock.is_empty()
    }

    /// Sorts siblings by dot (and clock, for plain clocks) and drops exact duplicates (the same
    /// version arriving twice).
    fn normalise(&mut self) {
        self.siblings
            .sort_by(|a, b| (&a.dot, &a.context).cmp(&(&b.dot, &b.context)));
        self.siblings
            .dedup_by(|a, b| a.dot == b.dot && a.context == b.context);
    }

    /// The invariants of a dotted state: the clock covers every sibling's dot and context, dots are
    /// unique, and no sibling is covered by another's context (it would have been removed).
    pub fn check_invariants(&self) {
        if cfg!(debug_assertions)
            && let Err(e) = self.dotted_invariants()
        {
            panic!("{e}");
        }
    }

    /// The invariants, checked on every state a peer sends, so never quadratic in a large state:
    /// dotless siblings (plain clocks) come first, dotted ones follow in strictly increasing dot
    /// order (so no dot repeats), the clock covers each dot and context, and no context covers a
    /// dot (a writer's context never covers its own new dot, and one that covers another
    /// sibling's would have replaced it). The last is a binary search per context entry for the
    /// lowest dot of that actor, which the dot order puts first among the actor's siblings.
    fn dotted_invariants(&self) -> Result<(), String> {
        let first_dotted = self.siblings.iter().take_while(|s| s.dot.is_none()).count();
        let dotted = &self.siblings[first_dotted..];
        let mut previous: Option<&Dot> = None;
        for s in dotted {
            let Some(dot) = &s.dot else {
                return Err("a sibling without a dot among dotted ones".to_string());
            };
            if previous.is_some_and(|p| p >= dot) {
                return Err(format!(
                    "sibling {dot:?} is out of dot order or a duplicate dot"
                ));
            }
            previous = Some(dot);
            if !self.clock.covers(dot) {
                return Err(format!("clock misses sibling dot {dot:?}"));
            }
            if !self.clock.descends(&s.context) {
                return Err(format!("clock misses the context of sibling {dot:?}"));
            }
        }
        fn actor_of(s: &Sibling) -> &str {
            s.dot.as_ref().map(|d| d.actor.as_str()).unwrap_or("")
        }
        for s in &self.siblings {
            for (actor, counter) in s.context.iter() {
                let i = dotted.partition_point(|o| actor_of(o) < actor.as_str());
                if let Some(dot) = dotted.get(i).and_then(|o| o.dot.as_ref())
                    && dot.actor == *actor
                    && dot.counter <= counter
                {
                    return Err(format!("sibling {dot:?} is obsolete: a context covers it"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx(entries: &[(&str, u64)]) -> VClock {
        let mut c = VClock::new();
        for (a, n) in entries {
            c.raise(a, *n);
        }
        c
    }

    fn vals(k: &KeyVersions) -> Vec<Vec<u8>> {
        k.values().map(|s| s.value.clone()).collect()
    }

    /// `k.put_by` of a value (no tombstone), as the bugs' tests make them.
    fn put_by(
        k: &mut KeyVersions,
        rule: Rule,
        actor: &str,
        context: &VClock,
        value: &[u8],
        ts_ms: u64,
    ) {
        k.put_by(rule, actor, context, value.to_vec(), false, ts_ms);
    }

    #[test]
    fn dotted_versions_with_empty_contexts_are_concurrent() {
        let a = Sibling {
            dot: Some(Dot::new("n1", 3)),
            context: VClock::new(),
            value: b"a".to_vec(),
            tombstone: false,
            timestamp_ms: 0,
        };
        let b = Sibling {
            dot: Some(Dot::new("n1", 4)),
            ..a.clone()
        };
        assert!(!a.succeeds(&b) && !b.succeeds(&a));
    }

    #[test]
    fn put_with_read_context_replaces_and_blind_put_adds() {
        let mut k = KeyVersions::new();
        k.put("a", &VClock::new(), b"1".to_vec(), false, 0);
        let read = k.context();
        k.put("b", &VClock::new(), b"2".to_vec(), false, 0);
        assert_eq!(vals(&k).len(), 2, "a blind put never replaces");
        k.put("a", &read, b"3".to_vec(), false, 0);
        assert_eq!(vals(&k), vec![b"3".to_vec(), b"2".to_vec()]);
        k.put("c", &k.context(), b"4".to_vec(), false, 0);
        assert_eq!(vals(&k), vec![b"4".to_vec()]);
    }

    /// The `naive-clock` bug: two blind writes through one coordinator get ordered (the second's
    /// clock {n1:2} dominates {n1:1}), so the first is silently replaced; dots keep both.
    #[test]
    fn plain_clocks_order_what_dots_keep_concurrent() {
        let mut plain = KeyVersions::new();
        put_by(&mut plain, Rule::PlainClocks, "n1", &VClock::new(), b"a", 0);
        put_by(&mut plain, Rule::PlainClocks, "n1", &VClock::new(), b"b", 0);
        assert_eq!(
            vals(&plain),
            vec![b"b".to_vec()],
            "the bug drops a concurrent write"
        );
        assert_eq!(plain.siblings[0].dot, None, "plain clocks have no dot");
        let mut dotted = KeyVersions::new();
        put_by(&mut dotted, Rule::Dotted, "n1", &VClock::new(), b"a", 0);
        put_by(&mut dotted, Rule::Dotted, "n1", &VClock::new(), b"b", 0);
        assert_eq!(vals(&dotted).len(), 2);
        // Plain merges keep concurrent versions and drop dominated ones.
        let mut other = KeyVersions::new();
        put_by(&mut other, Rule::PlainClocks, "n2", &VClock::new(), b"c", 0);
        plain.merge_by(Rule::PlainClocks, &other);
        assert_eq!(vals(&plain).len(), 2);
        let mut newer = plain.clone();
        put_by(
            &mut newer,
            Rule::PlainClocks,
            "n3",
            &plain.context(),
            b"d",
            0,
        );
        plain.merge_by(Rule::PlainClocks, &newer);
        assert_eq!(vals(&plain), vec![b"d".to_vec()]);
    }

    /// The `lww` bug keeps one of two concurrent writes: the one with the newer timestamp.
    #[test]
    fn last_write_wins_keeps_one() {
        let mut k = KeyVersions::new();
        put_by(
            &mut k,
            Rule::LastWriteWins,
            "n1",
            &VClock::new(),
            b"late",
            20,
        );
        put_by(
            &mut k,
            Rule::LastWriteWins,
            "n2",
            &VClock::new(),
            b"early",
            10,
        );
        assert_eq!(vals(&k), vec![b"late".to_vec()]);
    }

    /// The digest is FNV-1a over the documented layout (hashed as it streams, never built).
    #[test]
    fn digest_hashes_the_documented_layout() {
        let mut k = KeyVersions::new();
        k.put("n1.a", &VClock::new(), b"x".to_vec(), false, 0);
        let read = k.context();
        k.put("n2.b", &VClock::new(), b"y".to_vec(), false, 0);
        k.put("n1.a", &read, b"z".to_vec(), false, 0);
        let mut bytes = Vec::new();
        let mut clock = |c: &VClock| {
            for (actor, counter) in c.iter() {
                bytes.extend_from_slice(actor.as_bytes());
                bytes.push(0);
                bytes.extend_from_slice(&counter.to_le_bytes());
            }
            bytes.push(0xff);
        };
        clock(&k.clock);
        for s in &k.siblings {
            clock(&ctx(&[(
                &s.dot.as_ref().unwrap().actor,
                s.dot.as_ref().unwrap().counter,
            )]));
            clock(&s.context);
        }
        assert_eq!(k.digest(), crate::merkle::fnv64(&bytes));
    }

    #[test]
    fn context_text_form_round_trips_and_rejects_garbage() {
        let c = ctx(&[("n1.ab", 3), ("n2.cd", 7)]);
        assert_eq!(c.to_string(), "n1.ab=3,n2.cd=7");
        assert_eq!(VClock::parse(&c.to_string()).unwrap(), c);
        assert_eq!(VClock::parse("").unwrap(), VClock::new());
        assert!(VClock::parse("n1").is_err());
        assert!(VClock::parse("n1=x").is_err());
        assert!(VClock::parse("n 1=3").is_err());
    }

    /// The sorted-vector clock encodes exactly as the map it replaced (stored logs and peers of the
    /// earlier encoding still decode), and a peer's unsorted, duplicated or zero entries are
    /// normalised rather than trusted.
    #[test]
    fn clock_encoding_is_a_map_and_foreign_maps_are_normalised() {
        let c = ctx(&[("n2.b", 7), ("n1.a", 3)]);
        let map: BTreeMap<String, u64> = [("n1.a".to_string(), 3), ("n2.b".to_string(), 7)].into();
        let bytes = postcard::to_stdvec(&c).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&map).unwrap());
        assert_eq!(postcard::from_bytes::<VClock>(&bytes).unwrap(), c);
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"n1.a":3,"n2.b":7}"#);
        let foreign: Vec<(String, u64)> = vec![
            ("n2.b".into(), 5),
            ("n1.a".into(), 3),
            ("n2.b".into(), 7),
            ("n3.c".into(), 0),
        ];
        let mut encoded = vec![foreign.len() as u8];
        for (a, n) in &foreign {
            encoded.extend(postcard::to_stdvec(&(a, n)).unwrap());
        }
        let decoded: VClock = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, c);
        assert_eq!(decoded.iter().count(), 2, "no zero entry kept");
    }

    /// A clock from elsewhere in any order, with duplicates and zeros, decodes to the normal
    /// form (a reversed one of thousands of entries included: normalising is a sort, not an
    /// insertion per entry); one past the entry bound is refused.
    #[test]
    fn foreign_clocks_normalise_by_sorting_and_are_bounded() {
        let encode = |entries: &[(String, u64)]| {
            let mut bytes = postcard::to_stdvec(&(entries.len() as u32)).unwrap();
            // postcard's length prefix is a varint, as `to_stdvec` of a u32 writes it.
            for (a, n) in entries {
                bytes.extend(postcard::to_stdvec(&(a, n)).unwrap());
            }
            bytes
        };
        let reversed: Vec<(String, u64)> = (0..CLOCK_ENTRIES_MAX as u64)
            .rev()
            .map(|i| (format!("a{i:05}"), i % 7))
            .chain([("a00001".to_string(), 9)])
            .collect();
        let reversed = &reversed[1..]; // exactly CLOCK_ENTRIES_MAX entries
        let clock: VClock = postcard::from_bytes(&encode(reversed)).unwrap();
        let entries: Vec<(&Actor, u64)> = clock.iter().collect();
        assert!(
            entries.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, unique"
        );
        assert!(entries.iter().all(|e| e.1 > 0), "no zeros");
        assert_eq!(
            clock.get("a00001"),
            9,
            "a duplicate keeps its highest counter"
        );
        assert_eq!(clock.get("a00006"), 6);
        assert_eq!(clock.get("a00007"), 0, "zero entries dropped");
        let too_many: Vec<(String, u64)> = (0..=CLOCK_ENTRIES_MAX as u64)
            .map(|i| (format!("a{i:05}"), 1))
            .collect();
        let err = postcard::from_bytes::<VClock>(&encode(&too_many)).unwrap_err();
        assert!(err.to_string().contains("Serde"), "{err}");
    }

    /// What a peer may send is what the node could have made: the checks `merge` relies on.
    #[test]
    fn validate_refuses_states_the_node_could_not_have_made() {
        let mut good = KeyVersions::new();
        good.put("n1.a", &VClock::new(), b"1".to_vec(), false, 0);
        good.put("n2.b", &VClock::new(), b"2".to_vec(), false, 0);
        assert_eq!(good.validate(Rule::Dotted), Ok(()));
        let refusal = |k: &KeyVersions| k.validate(Rule::Dotted).unwrap_err();
        assert!(
            good.validate(Rule::PlainClocks).is_err(),
            "dots under plain clocks"
        );
        let mut dotless = good.clone();
        dotless.siblings[0].dot = None;
        assert!(refusal(&dotless).contains("no dot"));
        let mut uncovered = good.clone();
        uncovered.clock = VClock::new();
        assert!(refusal(&uncovered).contains("misses"));
        let mut duplicate = good.clone();
        duplicate.siblings[1].dot = duplicate.siblings[0].dot.clone();
        assert!(refusal(&duplicate).contains("duplicate"));
        let mut obsolete = good.clone();
        obsolete.siblings[1].context = ctx(&[("n1.a", 1)]);
        assert!(refusal(&obsolete).contains("obsolete"));
        let mut crowded = KeyVersions::new();
        for i in 0..=PEER_SIBLINGS_MAX {
            let dot = Dot::new(format!("w{i:04}"), 1);
            crowded.clock.add(&dot);
            crowded.siblings.push(Sibling {
                dot: Some(dot),
                ..good.siblings[0].clone()
            });
        }
        assert!(refusal(&crowded).contains("exceed"));
        // Among many siblings, the search by actor finds an obsolete one just the same.
        crowded.siblings.truncate(40);
        assert_eq!(crowded.validate(Rule::Dotted), Ok(()));
        crowded.siblings[3].context = ctx(&[("w0009", 1)]);
        assert!(refusal(&crowded).contains("obsolete"));
    }

    /// Values are bytes on the wire (length, then the bytes), as `Vec<u8>`'s element-by-element
    /// encoding was in postcard: `serde_bytes` changes the speed, not the format.
    #[test]
    fn sibling_values_encode_as_before() {
        #[derive(Serialize)]
        struct Old {
            dot: Option<Dot>,
            context: VClock,
            value: Vec<u8>,
            tombstone: bool,
            timestamp_ms: u64,
        }
        let s = Sibling {
            dot: Some(Dot::new("n1.a", 2)),
            context: ctx(&[("n1.a", 1)]),
            value: b"{\"write\":\"p1-1\"}".to_vec(),
            tombstone: false,
            timestamp_ms: 12,
        };
        let old = Old {
            dot: s.dot.clone(),
            context: s.context.clone(),
            value: s.value.clone(),
            tombstone: false,
            timestamp_ms: 12,
        };
        let bytes = postcard::to_stdvec(&s).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&old).unwrap());
        assert_eq!(postcard::from_bytes::<Sibling>(&bytes).unwrap(), s);
    }

    /// A random history of writes on a few replicas, exchanging whole states as the node does.
    #[derive(Clone, Debug)]
    enum Step {
        /// Replica `r` coordinates a put with the context it holds (`read`) or none.
        Put { replica: usize, read: bool },
        /// Replica `from` sends its whole state to `to`.
        Sync { from: usize, to: usize },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            (0..3usize, any::<bool>()).prop_map(|(replica, read)| Step::Put { replica, read }),
            (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync { from, to }),
        ];
        proptest::collection::vec(step, 0..40)
    }

    fn play(steps: &[Step]) -> Vec<KeyVersions> {
        let mut replicas = vec![KeyVersions::new(); 3];
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Put { replica, read } => {
                    let context = if read {
                        replicas[replica].context()
                    } else {
                        VClock::new()
                    };
                    let actor = format!("r{replica}");
                    replicas[replica].put(&actor, &context, i.to_le_bytes().to_vec(), false, 0);
                }
                Step::Sync { from, to } => {
                    let state = replicas[from].clone();
                    replicas[to].merge(&state);
                }
            }
        }
        replicas
    }

    fn merged(a: &KeyVersions, b: &KeyVersions) -> KeyVersions {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(s in steps()) {
            let r = play(&s);
            prop_assert_eq!(merged(&r[0], &r[1]), merged(&r[1], &r[0]));
            prop_assert_eq!(merged(&merged(&r[0], &r[1]), &r[2]), merged(&r[0], &merged(&r[1], &r[2])));
            prop_assert_eq!(merged(&r[0], &r[0]), r[0].clone());
        }

        #[test]
        fn put_with_a_reads_context_replaces_exactly_what_it_returned(s in steps(), blind in any::<bool>()) {
            let mut r = play(&s);
            // A read of replicas 0 and 1 merged, as a coordinator with R=2 does.
            let read = merged(&r[0], &r[1]);
            let shown: Vec<Dot> = read.siblings.iter().map(|x| x.dot.clone().unwrap()).collect();
            let context = read.context();
            for x in &read.siblings {
                prop_assert!(context.covers(x.dot.as_ref().unwrap()), "context must dominate what it shows");
            }
            // Replica 2 learns the read's state, then also takes a concurrent blind write.
            r[2].merge(&read);
            if blind {
                r[2].put("other", &VClock::new(), b"blind".to_vec(), false, 0);
            }
            let before: Vec<Dot> = r[2].siblings.iter().map(|x| x.dot.clone().unwrap()).collect();
            let new = r[2].put("w", &context, b"new".to_vec(), false, 0);
            let after: Vec<Dot> = r[2].siblings.iter().map(|x| x.dot.clone().unwrap()).collect();
            for d in &before {
                prop_assert_eq!(after.contains(d), !shown.contains(d), "dot {:?}", d);
            }
            prop_assert!(after.contains(new.dot.as_ref().unwrap()));
        }

        #[test]
        fn two_puts_with_the_same_context_both_survive(s in steps()) {
            let mut r = play(&s);
            let context = r[0].context();
            let mut other = r[0].clone();
            let a = r[0].put("x", &context, b"a".to_vec(), false, 0);
            let b = other.put("y", &context, b"b".to_vec(), false, 0);
            r[0].merge(&other);
            let dots: Vec<_> = r[0].siblings.iter().map(|x| x.dot.clone()).collect();
            prop_assert!(dots.contains(&a.dot) && dots.contains(&b.dot));
        }

        /// What `merge` says changed is exactly what did: the node writes (and counts
        /// anti-entropy repairs) by it.
        #[test]
        fn merge_reports_exactly_whether_the_state_changed(s in steps(), t in steps()) {
            let a = play(&s);
            let b = play(&t);
            for (x, y) in [(&a[0], &a[1]), (&a[1], &a[0]), (&a[0], &a[0]), (&a[2], &b[1]), (&b[0], &a[2])] {
                for rule in [Rule::Dotted, Rule::LastWriteWins] {
                    let mut m = x.clone();
                    let changed = m.merge_by(rule, y);
                    prop_assert_eq!(changed, m != *x, "{:?}", rule);
                }
            }
        }

        /// The one-pass invariant check agrees with the plain pairwise definition, on states the
        /// node makes and on the same states with a context widened (making siblings obsolete)
        /// or two siblings swapped (out of order).
        #[test]
        fn validate_agrees_with_the_pairwise_definition(
            s in steps(),
            widen in any::<Option<(prop::sample::Index, prop::sample::Index)>>(),
            swap in any::<Option<prop::sample::Index>>(),
        ) {
            fn pairwise(k: &KeyVersions) -> bool {
                k.siblings.iter().enumerate().all(|(i, s)| {
                    let dot = s.dot.as_ref().unwrap();
                    k.clock.covers(dot)
                        && k.clock.descends(&s.context)
                        && k.siblings.iter().all(|o| !o.context.covers(dot))
                        && k.siblings[i + 1..].iter().all(|o| o.dot.as_ref().unwrap() > dot)
                })
            }
            let mut k = play(&s).swap_remove(0);
            prop_assert!(pairwise(&k) && k.validate(Rule::Dotted).is_ok());
            if let (Some((a, b)), false) = (widen, k.siblings.is_empty()) {
                let target = k.siblings[b.index(k.siblings.len())].dot.clone().unwrap();
                let i = a.index(k.siblings.len());
                k.siblings[i].context.add(&target);
            }
            if let (Some(i), true) = (swap, k.siblings.len() > 1) {
                let i = i.index(k.siblings.len() - 1);
                k.siblings.swap(i, i + 1);
            }
            prop_assert_eq!(k.validate(Rule::Dotted).is_ok(), pairwise(&k));
        }

        #[test]
        fn blind_put_never_replaces(s in steps()) {
            let mut r = play(&s);
            let before = r[1].siblings.len();
            r[1].put("z", &VClock::new(), b"z".to_vec(), false, 0);
            prop_assert_eq!(r[1].siblings.len(), before + 1);
        }
    }
}
