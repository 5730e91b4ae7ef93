//! Witnesses: the concrete events a finding points at, in the history's own terms (write ids, keys,
//! nodes, times), so that an engineer can find them in the file.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::history::{
    Clock, Dot, History, KeyIdx, ProcessNo, SiblingRec, Status, VerId, Version, WriteIdx,
};

use super::finals::Finals;

/// A write (put or delete): when it was invoked and acknowledged, where it went, what version it got.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteWitness {
    pub write: String,
    pub key: String,
    /// `put` or `delete`.
    pub f: &'static str,
    pub process: ProcessNo,
    /// `ok`, `fail`, `info`, or `pending` (the history ended first).
    pub outcome: &'static str,
    /// The index of its invoke event.
    pub index: u64,
    pub invoked_at: u64,
    /// When the ok came back; absent unless the write was acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    /// The node the request was sent to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The node that made its version (the dot's node), when the store reported a dot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// The write ids its client had read (its ground-truth parents).
    pub observed: Vec<String>,
}

/// A read, or a replica's stored state, and the siblings it showed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadWitness {
    /// `read`, `final-read` (after `phase: final`), `replica-state`, or `observed`: the `observed`
    /// list of a put or delete, the record of what the read its client based it on returned
    /// (history-format.md: "the client saw exactly those"); its fields are then the write's.
    pub source: &'static str,
    /// For `observed`: the write whose list it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<String>,
    pub key: String,
    /// The index of its invoke event (of the event, for a replica state).
    pub index: u64,
    /// The client process; absent for a replica state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessNo>,
    pub invoked_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    /// The node asked (for a replica state: the replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The write ids of the siblings, in the order returned (for `observed`: the list).
    pub siblings: Vec<String>,
}

/// What the replicas of a key hold at the end: its `replica-state` events (the last one per node),
/// which are the whole final state. Reads after `phase final` are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FinalState {
    /// Every write id some replica holds, sorted.
    pub siblings: Vec<String>,
    /// Of those, the ones held as tombstones (`value: null`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tombstones: Vec<String>,
    /// Per replica node, the write ids it holds, in the order it listed them (empty: it holds
    /// nothing). A key with no replica-state event has no entry here.
    pub replicas: BTreeMap<String, Vec<String>>,
}

pub(crate) fn version(h: &History, v: VerId) -> Version {
    let rec = h.versions.rec(v);
    Version {
        dot: rec.dot.map(|(n, c)| Dot::new(h.str(n), c)),
        clock: h
            .versions
            .clock(v)
            .iter()
            .map(|&(n, c)| (h.str(n), c))
            .collect::<Clock>(),
    }
}

pub(crate) fn write(h: &History, w: WriteIdx) -> WriteWitness {
    let rec = h.write(w);
    WriteWitness {
        write: h.str(rec.id).to_owned(),
        key: h.key_name(rec.key).to_owned(),
        f: if rec.delete { "delete" } else { "put" },
        process: rec.process,
        outcome: rec.status.as_str(),
        index: rec.invoked.index,
        invoked_at: rec.invoked.time,
        acked_at: rec.acked(),
        completed_at: rec.completed.map(|m| m.time),
        node: rec.node.map(|n| h.str(n).to_owned()),
        coordinator: rec.dot.map(|(n, _)| h.str(n).to_owned()),
        version: rec.version.map(|v| version(h, v)),
        observed: h
            .observed_of(rec)
            .iter()
            .map(|&o| h.str(o).to_owned())
            .collect(),
    }
}

fn sibling_ids(h: &History, siblings: &[SiblingRec]) -> Vec<String> {
    siblings.iter().map(|s| h.str(s.write).to_owned()).collect()
}

pub(crate) fn read(h: &History, r: u32) -> ReadWitness {
    let rec = &h.reads[r as usize];
    ReadWitness {
        source: if rec.is_final { "final-read" } else { "read" },
        write: None,
        key: h.key_name(rec.key).to_owned(),
        index: rec.invoked.index,
        process: Some(rec.process),
        invoked_at: rec.invoked.time,
        completed_at: rec.completed.map(|m| m.time),
        node: rec.node.map(|n| h.str(n).to_owned()),
        siblings: sibling_ids(h, h.siblings(rec.siblings)),
    }
}

pub(crate) fn replica(h: &History, i: u32) -> ReadWitness {
    let rec = &h.replicas[i as usize];
    ReadWitness {
        source: "replica-state",
        write: None,
        key: h.key_name(rec.key).to_owned(),
        index: rec.at.index,
        process: None,
        invoked_at: rec.at.time,
        completed_at: None,
        node: Some(h.str(rec.node).to_owned()),
        siblings: sibling_ids(h, h.siblings(rec.siblings)),
    }
}

/// The `observed` list of write `w`, as the read it records: what its client's base read returned.
pub(crate) fn observed_list(h: &History, w: WriteIdx) -> ReadWitness {
    let rec = h.write(w);
    ReadWitness {
        source: "observed",
        write: Some(h.str(rec.id).to_owned()),
        key: h.key_name(rec.key).to_owned(),
        index: rec.invoked.index,
        process: Some(rec.process),
        invoked_at: rec.invoked.time,
        completed_at: None,
        node: rec.node.map(|n| h.str(n).to_owned()),
        siblings: h
            .observed_of(rec)
            .iter()
            .map(|&o| h.str(o).to_owned())
            .collect(),
    }
}

pub(crate) fn final_state(h: &History, finals: &Finals, key: KeyIdx) -> FinalState {
    let mut siblings = Vec::new();
    let mut tombstones = Vec::new();
    let mut replicas = BTreeMap::new();
    for &i in finals.replicas(key) {
        let rec = &h.replicas[i as usize];
        let sibs = h.siblings(rec.siblings);
        for s in sibs {
            siblings.push(h.str(s.write).to_owned());
            if h.is_tombstone(key, s) {
                tombstones.push(h.str(s.write).to_owned());
            }
        }
        replicas.insert(h.str(rec.node).to_owned(), sibling_ids(h, sibs));
    }
    siblings.sort();
    siblings.dedup();
    tombstones.sort();
    tombstones.dedup();
    FinalState {
        siblings,
        tombstones,
        replicas,
    }
}

/// The read a write was based on: the last ok get of the same process and key that completed before
/// the write was invoked (the read whose context the client passed back). `None` for a blind write.
pub(crate) fn base_read(h: &History, w: WriteIdx) -> Option<ReadWitness> {
    let rec = h.write(w);
    if rec.observed.len == 0 {
        return None;
    }
    // Reads are in invoke order: only those invoked before the write can be its base.
    let end = h
        .reads
        .partition_point(|r| r.invoked.index < rec.invoked.index);
    h.reads[..end]
        .iter()
        .enumerate()
        .rev()
        .find(|(_, r)| {
            r.process == rec.process
                && r.key == rec.key
                && r.status == Status::Ok
                && r.completed.is_some_and(|c| c.index < rec.invoked.index)
        })
        .map(|(i, _)| read(h, i as u32))
}
