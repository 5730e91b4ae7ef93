//! The checks: each a pure function from the history, its causality graph and its final state to
//! findings, exactly as history-format.md ("What the checker concludes") defines them.
//!
//! A finding is data only (the witnesses: writes, reads, final state); its wording lives in
//! `explain.rs`, so that a report can render the same finding differently and tests can match on data.
//! A check that cannot decide (no final state, a key too large for the bitsets) says so as an unknown
//! reason instead of guessing. Each check runs under `catch_unwind` in [`crate::check`]: a bug in one
//! makes the verdict unknown, not the process crash.
//!
//! Files: `lost_write.rs`, `reads.rs` (phantom-read, failed-write-visible, false-concurrency),
//! `order.rs` (false-dominance, clock-regression), `divergence.rs`, `quorum.rs` (quorum-read-miss),
//! `freshness.rs` (stale-read and the consistency window); `witness.rs` builds witnesses, `finals.rs`
//! indexes the final state.

mod divergence;
pub(crate) mod finals;
pub(crate) mod freshness;
mod lost_write;
mod order;
mod quorum;
mod reads;
pub mod witness;

use serde::Serialize;

use crate::graph::Graph;
use crate::history::{History, KeyIdx, Status, WriteIdx};
use finals::Finals;
pub use witness::{FinalState, ReadWitness, WriteWitness};

/// The most findings of one kind kept with their witnesses; the rest are only counted
/// (`stats.anomaly_counts`, `stats.warning_counts`). An engineer needs a few witnesses, not a flood.
pub const FINDINGS_PER_KIND_MAX: usize = 100;

/// The kinds of finding: seven anomalies (each makes `valid` false) and two warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    LostWrite,
    PhantomRead,
    FailedWriteVisible,
    FalseDominance,
    Divergence,
    ClockRegression,
    QuorumReadMiss,
    FalseConcurrency,
    StaleRead,
}

impl Kind {
    /// Every kind, anomalies first.
    pub const ALL: [Kind; 9] = [
        Kind::LostWrite,
        Kind::PhantomRead,
        Kind::FailedWriteVisible,
        Kind::FalseDominance,
        Kind::Divergence,
        Kind::ClockRegression,
        Kind::QuorumReadMiss,
        Kind::FalseConcurrency,
        Kind::StaleRead,
    ];

    /// The name used in results.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LostWrite => "lost-write",
            Kind::PhantomRead => "phantom-read",
            Kind::FailedWriteVisible => "failed-write-visible",
            Kind::FalseDominance => "false-dominance",
            Kind::Divergence => "divergence",
            Kind::ClockRegression => "clock-regression",
            Kind::QuorumReadMiss => "quorum-read-miss",
            Kind::FalseConcurrency => "false-concurrency",
            Kind::StaleRead => "stale-read",
        }
    }

    /// Whether a finding of this kind makes the history invalid (else it is a warning).
    pub fn is_anomaly(self) -> bool {
        !matches!(self, Kind::FalseConcurrency | Kind::StaleRead)
    }
}

/// An ok write that the final state lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LostWrite {
    #[serde(flatten)]
    pub write: WriteWitness,
    /// `observed`: neither present (a delete: as a tombstone) nor an ancestor of a present write;
    /// `cart-item`: its item is in no final sibling's value and no delete lies between; `delete`
    /// (with `tombstone_gc`): its tombstone is gone and a write it observed is present again.
    pub rule: &'static str,
    /// For a lost delete: the writes it observed, directly or transitively, that are present in the
    /// final state (what it removed that came back).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resurrected: Vec<String>,
    /// The writes whose clients observed this one (its ground-truth children): none of them, nor
    /// anything after them, is in the final state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observed_by: Vec<String>,
    /// What every replica of the key holds at the end.
    pub final_state: FinalState,
}

/// A JSON value exactly as the history holds it (canonical text, history/canon.rs), written out as
/// that text: parsed into a `serde_json::Value`, a number past an f64's precision would print
/// rounded, and a witness could show two values the checker tells apart as the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonText(pub String);

impl Serialize for JsonText {
    /// As the text itself, unless a JSON reader could not read it back as a value (a number
    /// past an f64's range, such as `1e400`, which the history may hold): then as a string of it,
    /// so that results.json stays readable by every tool that reads it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if serde_json::from_str::<serde_json::Value>(&self.0).is_err() {
            return s.serialize_str(&self.0);
        }
        let raw = serde_json::value::RawValue::from_string(self.0.clone())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl std::fmt::Display for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A read (or replica state, or the read a put's `observed` list records) that returned a write no
/// put invoked, or a value that write did not write.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhantomRead {
    /// The write id the sibling named.
    pub write: String,
    pub key: String,
    /// `unknown-write` (no put or delete on this key invoked it), `wrong-value` (not what that write
    /// wrote) or `unknown-item` (a cart item no put on this key invoked).
    pub reason: &'static str,
    /// The value returned; absent when the write id was seen in a put's `observed` list, which
    /// records ids only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub returned: Option<JsonText>,
    /// What the named write wrote, when a put named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<JsonText>,
    /// Cart workload: items of the returned value that no put on this key invoked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_items: Vec<String>,
    pub read: ReadWitness,
}

/// A write whose put ended `fail`, seen afterwards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedWriteVisible {
    #[serde(flatten)]
    pub write: WriteWitness,
    /// The first read or replica state that showed it (else the first `observed` list that names
    /// it: the record of a read that returned it).
    pub seen_in: ReadWitness,
    /// How many reads, replica states and `observed` lists showed it.
    pub times_seen: usize,
    pub final_state: FinalState,
}

/// The store orders `write` before `dominated_by`, but that write's client never saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseDominance {
    #[serde(flatten)]
    pub write: WriteWitness,
    pub dominated_by: WriteWitness,
    /// The read the dominated write's put was based on (none for a blind put).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_based_on: Option<ReadWitness>,
    /// The read the dominating write's put was based on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dominated_by_based_on: Option<ReadWitness>,
    pub final_state: FinalState,
}

/// After the final quiescence, the replicas of a key hold different sibling sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    pub key: String,
    pub final_state: FinalState,
}

/// A write's version does not succeed the version of a write its client observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockRegression {
    #[serde(flatten)]
    pub write: WriteWitness,
    pub observed_write: WriteWitness,
    pub final_state: FinalState,
}

/// A nemesis event, as a witness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultWitness {
    pub index: u64,
    pub time: u64,
    pub f: String,
    /// The node it names (in `value.node`, a string `value`, or its `node` field), if any; the
    /// first one where it names several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Every node it names, in its order (`value.node` or `value.nodes` as a list).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// With a strict quorum and R + W > N, a read that started after a write's ack returned neither it
/// nor any descendant, with no fault in between that could excuse it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuorumReadMiss {
    /// The earliest-acknowledged write the read missed.
    #[serde(flatten)]
    pub write: WriteWitness,
    /// The read, and what it returned.
    pub read: ReadWitness,
    /// How many acknowledged writes the read missed.
    pub missed_count: usize,
    /// Their ids (at most 20), earliest ack first.
    pub missed: Vec<String>,
    /// Every nemesis event between the write's ack and the read's completion: none excuses the miss.
    pub faults_between: Vec<FaultWitness>,
    /// The key's replicas (the nodes with a replica-state event for it).
    pub replicas: Vec<String>,
    pub n: u64,
    pub r: u64,
    pub w: u64,
}

/// Siblings returned together although one descends (by ground truth) from the other.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseConcurrency {
    pub key: String,
    /// The sibling that should have been superseded.
    pub ancestor: String,
    pub descendant: String,
    pub read: ReadWitness,
}

/// A read that missed an acknowledged write that completed before the read started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaleRead {
    pub key: String,
    pub read: ReadWitness,
    /// The earliest-acknowledged write it missed.
    pub missed: WriteWitness,
    /// How many acknowledged writes it missed.
    pub missed_count: usize,
}

/// One finding: data only; see [`explain()`](crate::explain()) for its wording.
// At most FINDINGS_PER_KIND_MAX of each kind are ever built, so the variants' sizes do not matter,
// and boxing them would only make matching on findings clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Finding {
    LostWrite(LostWrite),
    PhantomRead(PhantomRead),
    FailedWriteVisible(FailedWriteVisible),
    FalseDominance(FalseDominance),
    Divergence(Divergence),
    ClockRegression(ClockRegression),
    QuorumReadMiss(QuorumReadMiss),
    FalseConcurrency(FalseConcurrency),
    StaleRead(StaleRead),
}

impl Finding {
    pub fn kind(&self) -> Kind {
        match self {
            Finding::LostWrite(_) => Kind::LostWrite,
            Finding::PhantomRead(_) => Kind::PhantomRead,
            Finding::FailedWriteVisible(_) => Kind::FailedWriteVisible,
            Finding::FalseDominance(_) => Kind::FalseDominance,
            Finding::Divergence(_) => Kind::Divergence,
            Finding::ClockRegression(_) => Kind::ClockRegression,
            Finding::QuorumReadMiss(_) => Kind::QuorumReadMiss,
            Finding::FalseConcurrency(_) => Kind::FalseConcurrency,
            Finding::StaleRead(_) => Kind::StaleRead,
        }
    }
}

/// What one check concluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Check {
    /// At most [`Options::findings_per_kind_max`](crate::Options), in history order.
    pub findings: Vec<Finding>,
    /// How many findings there were in all.
    pub total: usize,
    /// Why the check could not decide, in part or in whole.
    pub unknown: Vec<String>,
}

impl Check {
    /// Keeps the first `max` of `raw` (already in history order), materialising their witnesses only.
    pub(crate) fn from_raw<T>(
        max: usize,
        raw: Vec<T>,
        mut make: impl FnMut(T) -> Finding,
    ) -> Check {
        let total = raw.len();
        let findings = raw.into_iter().take(max).map(&mut make).collect();
        Check {
            findings,
            total,
            unknown: Vec::new(),
        }
    }
}

/// What every check reads.
pub(crate) struct Ctx<'a> {
    pub h: &'a History,
    pub g: &'a Graph,
    pub finals: &'a Finals,
    /// The most findings of one kind to keep with their witnesses.
    pub findings_max: usize,
}

/// A check.
pub(crate) type CheckFn = fn(&Ctx) -> Check;

/// The checks that need only the history, graph and final state, by kind. Stale reads come from
/// `freshness`, which also computes the consistency window.
pub(crate) const CHECKS: [(Kind, CheckFn); 8] = [
    (Kind::LostWrite, lost_write::check),
    (Kind::PhantomRead, reads::phantom_read),
    (Kind::FailedWriteVisible, reads::failed_write_visible),
    (Kind::FalseDominance, order::false_dominance),
    (Kind::Divergence, divergence::check),
    (Kind::ClockRegression, order::clock_regression),
    (Kind::QuorumReadMiss, quorum::check),
    (Kind::FalseConcurrency, reads::false_concurrency),
];

/// Indexes grouped by key, each key's in their order: key k's are `idx[start[k]..start[k + 1]]`.
#[derive(Debug, Default)]
pub(crate) struct ByKey {
    start: Vec<u32>,
    idx: Vec<u32>,
}

impl ByKey {
    /// The indexes of `items` (index, key) grouped by key, over `keys` keys.
    pub(crate) fn build(keys: usize, items: impl Iterator<Item = (u32, KeyIdx)> + Clone) -> ByKey {
        let mut start = vec![0u32; keys + 1];
        for (_, key) in items.clone() {
            start[key.0 as usize + 1] += 1;
        }
        for i in 0..keys {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut idx = vec![0u32; start[keys] as usize];
        for (i, key) in items {
            idx[fill[key.0 as usize] as usize] = i;
            fill[key.0 as usize] += 1;
        }
        ByKey { start, idx }
    }

    /// The indexes of key `k`.
    pub(crate) fn of(&self, k: KeyIdx) -> &[u32] {
        let k = k.0 as usize;
        &self.idx[self.start[k] as usize..self.start[k + 1] as usize]
    }
}

/// The ok reads of each key, in invoke order (indexes into `History::reads`).
pub(crate) struct ReadsByKey(ByKey);

/// A key the read checks look at: one with ok reads and rows in the reachability matrix.
pub(crate) struct ReadKey<'a> {
    pub key: KeyIdx,
    /// Its ok reads (indexes into `History::reads`).
    pub reads: &'a [u32],
    /// Its writes, by position in its rows.
    pub positions: &'a [WriteIdx],
    /// The 64-bit words a row of its positions takes.
    pub words: usize,
}

impl ReadsByKey {
    pub(crate) fn build(h: &History) -> ReadsByKey {
        let ok = h.reads.iter().enumerate();
        let ok = ok.filter(|(_, r)| r.status == Status::Ok);
        ReadsByKey(ByKey::build(
            h.keys.len(),
            ok.map(|(i, r)| (i as u32, r.key)),
        ))
    }

    pub(crate) fn of(&self, k: KeyIdx) -> &[u32] {
        self.0.of(k)
    }

    /// The keys with reads and acknowledged writes that the read checks cannot look at, having
    /// no causality bitsets (for [`skipped_keys_reason`]).
    pub(crate) fn unchecked(&self, h: &History, g: &Graph) -> Vec<KeyIdx> {
        let mut acked = Vec::new();
        (0..h.keys.len() as u32)
            .map(KeyIdx)
            .filter(|&key| !g.reach.has_rows(key) && !self.of(key).is_empty())
            .filter(|&key| {
                acked_in_order(h, g, key, &mut acked);
                !acked.is_empty()
            })
            .collect()
    }

    /// The keys the read checks look at, in key order.
    pub(crate) fn checked<'a>(
        &'a self,
        h: &History,
        g: &'a Graph,
    ) -> impl Iterator<Item = ReadKey<'a>> {
        (0..h.keys.len() as u32).filter_map(move |k| {
            let key = KeyIdx(k);
            let reads = self.of(key);
            if reads.is_empty() || !g.reach.has_rows(key) {
                return None;
            }
            let positions = g.key_positions(key);
            let words = positions.len().div_ceil(64);
            Some(ReadKey {
                key,
                reads,
                positions,
                words,
            })
        })
    }
}

/// The acknowledged writes of `key`, (ok index, write), in the order of their acks, into `acked`.
pub(crate) fn acked_in_order(
    h: &History,
    g: &Graph,
    key: KeyIdx,
    acked: &mut Vec<(u64, WriteIdx)>,
) {
    acked.clear();
    acked.extend(g.key_writes(key).iter().filter_map(|&w| {
        let rec = h.write(w);
        rec.acked()
            .map(|_| (rec.completed.expect("acked").index, w))
    }));
    acked.sort_unstable();
}

/// Says why a check left `keys` undecided (keys it had something to judge on, without their
/// causality bitsets), if there are any: each key's number of writes, or the bound on all keys'
/// bitsets together that it came past. A key too large that gives a check nothing to judge
/// leaves its verdict alone.
pub(crate) fn skipped_keys_reason(ctx: &Ctx, what: &str, keys: &[KeyIdx]) -> Option<String> {
    let first = *keys.first()?;
    let writes = ctx.g.keys[first.0 as usize].len as usize;
    let why = if writes > crate::graph::DENSE_WRITES_PER_KEY_MAX {
        format!(
            "{writes} writes, past the {} a key's causality bitsets allow",
            crate::graph::DENSE_WRITES_PER_KEY_MAX
        )
    } else {
        format!(
            "{writes} writes, whose causality bitsets came past the {} MiB all keys' may take",
            crate::graph::REACH_BYTES_MAX >> 20
        )
    };
    Some(format!(
        "{what}: {} key(s) too large to check (first: {:?}, {why}); not checked",
        keys.len(),
        ctx.h.key_name(first)
    ))
}
