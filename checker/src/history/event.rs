//! The events of a history, as owned, typed values: what a harness writes and what a reader gets back.
//!
//! Each type serialises to exactly the line shape of `shared/history-format.md`, and deserialises
//! from it with the same rules the checker's parser applies (one validation, in `wire.rs`). The
//! checker itself does not keep these: it streams lines into the compact [`History`](super::History).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::{Wire, WireOut};

/// One line of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique and strictly ascending through the file (may be sparse).
    pub index: u64,
    /// Nanoseconds since the run started.
    pub time: u64,
    /// What happened; it also fixes the line's `process` and `type`.
    pub body: Body,
}

/// A client process number: any JSON integer (history-format.md: "`process`: integer"), from
/// `i64::MIN` to `u64::MAX`, the integers a JSON parser reads exactly.
pub type ProcessNo = i128;

/// What an event records. The variant fixes `process` and `type`: client events carry their process
/// number, nemesis and harness events are always `type: "info"`.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A client process starts an operation (`type: "invoke"`).
    Invoke { process: ProcessNo, op: Op },
    /// A client operation ends (`type: "ok" | "fail" | "info"`).
    Complete(Completion),
    /// A fault starts or stops (`process: "nemesis"`); `f` is e.g. `partition-start`, `crash`, `wipe`.
    Nemesis { f: String, value: Value },
    /// `{"f":"phase"}`: every fault was healed (`heal`), or only the final reads run from here (`final`).
    Phase(Phase),
    /// `{"f":"replica-state"}`: the raw sibling set one replica holds for a key after the final quiescence.
    ReplicaState(ReplicaState),
    /// `{"f":"config"}`: the run's settings (nodes, N, R, W, workload, seed, nemesis, ...).
    Config(Value),
}

/// The three client operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientF {
    Get,
    Put,
    Delete,
}

impl ClientF {
    /// The `f` string of the history format.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientF::Get => "get",
            ClientF::Put => "put",
            ClientF::Delete => "delete",
        }
    }
}

/// How a client operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect.
    Ok,
    /// It certainly did not take effect.
    Fail,
    /// Unknown: it may or may not have taken effect. The process never invokes again.
    Info,
}

impl Outcome {
    /// The `type` string of the history format.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// The operation a client invokes.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Read a key; `node` is the node the request was sent to.
    Get { key: String, node: Option<String> },
    /// Write a value.
    Put(WriteOp),
    /// Delete: a put whose value is `null`; it removes the observed siblings.
    Delete(WriteOp),
}

impl Op {
    /// `get`, `put` or `delete`.
    pub fn f(&self) -> ClientF {
        match self {
            Op::Get { .. } => ClientF::Get,
            Op::Put(_) => ClientF::Put,
            Op::Delete(_) => ClientF::Delete,
        }
    }

    /// The key the operation acts on.
    pub fn key(&self) -> &str {
        match self {
            Op::Get { key, .. } => key,
            Op::Put(w) | Op::Delete(w) => &w.key,
        }
    }
}

/// The arguments of a `put` or `delete` invoke.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOp {
    pub key: String,
    /// The node the request was sent to.
    pub node: Option<String>,
    /// The write's unique id, chosen by the client.
    pub write: String,
    /// What is written (`null` for a delete).
    pub value: Value,
    /// The write ids of the siblings returned by the read whose context this write carries: the ground
    /// truth of causality. Empty for a blind write.
    pub observed: Vec<String>,
    /// The opaque causal context passed back to the store (for humans).
    pub context: Option<Value>,
}

/// The end of a client operation. It repeats `f` and `key` of its invoke.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub process: ProcessNo,
    pub outcome: Outcome,
    pub f: ClientF,
    pub key: String,
    /// For a put or delete: the write id (optional; it must match the invoke's when present).
    pub write: Option<String>,
    /// For an ok put or delete: the version the store made, if the store reports it.
    pub version: Option<Version>,
    /// For an ok get: the siblings returned (empty for a missing key). `None` otherwise.
    pub values: Option<Vec<Sibling>>,
    /// For an ok get: the opaque context returned.
    pub context: Option<Value>,
}

/// A `phase` marker of the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Every fault was healed.
    Heal,
    /// From here on only the final reads run.
    Final,
    /// A phase this version of the format does not name; kept, not interpreted.
    Other(String),
}

impl Phase {
    /// The `value` string of the phase event.
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Heal => "heal",
            Phase::Final => "final",
            Phase::Other(s) => s,
        }
    }

    pub(crate) fn parse(s: &str) -> Phase {
        match s {
            "heal" => Phase::Heal,
            "final" => Phase::Final,
            other => Phase::Other(other.to_owned()),
        }
    }
}

/// The raw sibling set one replica holds for a key, read from its storage after the final quiescence.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaState {
    pub key: String,
    pub node: String,
    /// Here a tombstone appears, as a sibling with `value: null` and the delete's write id.
    pub values: Vec<Sibling>,
}

/// One sibling of a read or a replica state.
#[derive(Debug, Clone, PartialEq)]
pub struct Sibling {
    /// The write that produced it.
    pub write: String,
    pub value: Value,
    /// Its version, where the store exposes it.
    pub version: Option<Version>,
}

/// A version as the store describes it (history-format.md, "Versions").
///
/// Its history H(v) is the events of `clock`, plus `dot` where there is one. Without a dot the clock
/// includes the version's own event (plain vector clocks); with one, the clock is the causal context
/// the version was written with and the dot may lie beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    pub dot: Option<Dot>,
    pub clock: Clock,
}

/// The single event `[node, counter]` that created a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dot {
    pub node: String,
    pub counter: u64,
}

impl Dot {
    pub fn new(node: impl Into<String>, counter: u64) -> Dot {
        Dot {
            node: node.into(),
            counter,
        }
    }
}

/// A vector clock: node name -> counter, standing for the events {(node, 1..=counter)}.
///
/// Entries are kept sorted by node name, and zero counters are dropped (they stand for no event), so
/// two clocks of the same events compare equal. It serialises as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Clock {
    entries: Vec<(String, u64)>,
}

impl Clock {
    /// The empty clock (no events).
    pub fn new() -> Clock {
        Clock::default()
    }

    /// The counter of `node` (0 when absent).
    pub fn get(&self, node: &str) -> u64 {
        match self.entries.binary_search_by(|(n, _)| n.as_str().cmp(node)) {
            Ok(i) => self.entries[i].1,
            Err(_) => 0,
        }
    }

    /// Sets the counter of `node`; 0 removes the entry.
    pub fn set(&mut self, node: impl Into<String>, counter: u64) {
        let node = node.into();
        match self.entries.binary_search_by(|(n, _)| n.cmp(&node)) {
            Ok(i) if counter == 0 => {
                self.entries.remove(i);
            }
            Ok(i) => self.entries[i].1 = counter,
            Err(_) if counter == 0 => {}
            Err(i) => self.entries.insert(i, (node, counter)),
        }
    }

    /// The entries, sorted by node name, none zero.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(n, c)| (n.as_str(), *c))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl<S: Into<String>> FromIterator<(S, u64)> for Clock {
    /// Builds a clock; a node given twice keeps its largest counter.
    fn from_iter<I: IntoIterator<Item = (S, u64)>>(iter: I) -> Clock {
        let mut clock = Clock::new();
        for (node, counter) in iter {
            let node = node.into();
            let counter = counter.max(clock.get(&node));
            clock.set(node, counter);
        }
        clock
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for (node, counter) in &self.entries {
            map.serialize_entry(node, counter)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Clock, D::Error> {
        struct ClockVisitor;
        impl<'de> Visitor<'de> for ClockVisitor {
            type Value = Clock;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a vector clock: an object of node name to counter")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Clock, A::Error> {
                let mut entries: Vec<(String, u64)> = Vec::new();
                while let Some((node, counter)) = map.next_entry::<String, u64>()? {
                    entries.push((node, counter));
                }
                Ok(entries.into_iter().collect())
            }
        }
        d.deserialize_map(ClockVisitor)
    }
}

impl Serialize for Dot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(2))?;
        seq.serialize_element(&self.node)?;
        seq.serialize_element(&self.counter)?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Dot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dot, D::Error> {
        struct DotVisitor;
        impl<'de> Visitor<'de> for DotVisitor {
            type Value = Dot;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a dot: [node, counter]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dot, A::Error> {
                let node: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let counter: u64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(3, &self));
                }
                Ok(Dot { node, counter })
            }
        }
        d.deserialize_seq(DotVisitor)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOut::from_event(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Works from any serde format: the event goes through a `serde_json::Value` and its text, because
    /// the line's values are captured as raw JSON text, which only serde_json's own readers can do.
    /// The parser does not take this path.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        let text = Value::deserialize(d)?.to_string();
        let wire: Wire = serde_json::from_str(&text).map_err(de::Error::custom)?;
        wire.into_event().map_err(de::Error::custom)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(dot) = &self.dot {
            map.serialize_entry("dot", dot)?;
        }
        map.serialize_entry("clock", &self.clock)?;
        map.end()
    }
}

impl Serialize for Sibling {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("write", &self.write)?;
        map.serialize_entry("value", &self.value)?;
        if let Some(v) = &self.version {
            if let Some(dot) = &v.dot {
                map.serialize_entry("dot", dot)?;
            }
            map.serialize_entry("clock", &v.clock)?;
        }
        map.end()
    }
}
