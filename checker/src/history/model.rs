//! The compact, indexed history the checks read, and the builder that folds lines into it while
//! enforcing the format's structural rules.
//!
//! A client operation is one record (its invoke and its completion paired), in invoke order. Strings,
//! values and versions are interned (see `intern.rs`). Contexts are dropped: the format calls them
//! opaque and "for humans", and no check reads them. What a history says that no check needs can be
//! read back from the file with [`EventReader`](super::EventReader).

use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::event::{ClientF, Outcome, Phase};
use super::intern::{FixedState, Interner, Sym, ValId, VerId, Versions};
use super::wire::{Class, Str, Wire, WireClock, WireDot, WireSibling};

type FixedMap<K, V> = HashMap<K, V, FixedState>;

/// Marks an empty slot in the `Sym`-indexed lookup tables.
const NONE: u32 = u32::MAX;

/// Which workload produced the history (from the config line; `register` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// A value is the write id itself.
    #[default]
    Register,
    /// A value is the sorted list of item ids: the union of the observed siblings' items plus the
    /// write's own id. Merging siblings is a union, so an item, not a sibling, is what must survive.
    Cart,
}

/// A point in the history: an event's index and time (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mark {
    pub index: u64,
    pub time: u64,
}

/// How a client operation ended; `Pending` when the history ends before it does (as unknown as info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Pending,
    Ok,
    Fail,
    Info,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Ok => "ok",
            Status::Fail => "fail",
            Status::Info => "info",
        }
    }
}

impl From<Outcome> for Status {
    fn from(o: Outcome) -> Status {
        match o {
            Outcome::Ok => Status::Ok,
            Outcome::Fail => Status::Fail,
            Outcome::Info => Status::Info,
        }
    }
}

/// Dense index of a key (in order of first appearance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct KeyIdx(pub u32);

/// Dense index of a write (a put or delete), in invoke order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct WriteIdx(pub u32);

/// A half-open range of an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub len: u32,
}

impl Span {
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A put or delete: invoke and completion.
#[derive(Debug, Clone)]
pub(crate) struct WriteRec {
    pub id: Sym,
    pub key: KeyIdx,
    pub delete: bool,
    pub process: u64,
    /// The node the request was sent to.
    pub node: Option<Sym>,
    pub value: ValId,
    /// Into `History::observed`.
    pub observed: Span,
    pub invoked: Mark,
    pub completed: Option<Mark>,
    pub status: Status,
    /// The version the store reported on the ok completion, else the first one seen in a read or a
    /// replica state.
    pub version: Option<VerId>,
    /// The line of the invoke, for messages.
    pub line: usize,
}

impl WriteRec {
    /// The ack time of an ok write.
    pub(crate) fn acked(&self) -> Option<u64> {
        match (self.status, self.completed) {
            (Status::Ok, Some(m)) => Some(m.time),
            _ => None,
        }
    }
}

/// A get: invoke and completion.
#[derive(Debug, Clone)]
pub(crate) struct ReadRec {
    pub key: KeyIdx,
    pub process: u64,
    pub node: Option<Sym>,
    pub invoked: Mark,
    pub completed: Option<Mark>,
    pub status: Status,
    /// Into `History::siblings`; empty unless ok.
    pub siblings: Span,
    /// Invoked after the `phase: final` event.
    pub is_final: bool,
}

/// One sibling of a read or a replica state. Its version, if reported, becomes its write's version
/// when the write's completion reported none; no check compares a sibling's version otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SiblingRec {
    pub write: Sym,
    pub value: ValId,
}

/// A `replica-state` event.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaRec {
    pub key: KeyIdx,
    pub node: Sym,
    pub at: Mark,
    pub siblings: Span,
}

/// A nemesis event.
#[derive(Debug, Clone)]
pub(crate) struct NemesisRec {
    pub f: Sym,
    #[allow(dead_code)] // Kept for reports that place faults on the timeline.
    pub at: Mark,
}

/// A parsed history, compact and indexed for the checks. Build it with
/// [`parse_reader`](super::parse_reader), [`parse_file`](super::parse_file) or
/// [`History::from_events`].
#[derive(Debug, Default)]
pub struct History {
    pub(crate) strings: Interner,
    /// JSON values, as their text.
    pub(crate) values: Interner,
    pub(crate) versions: Versions,
    /// KeyIdx -> key name.
    pub(crate) keys: Vec<Sym>,
    /// Sym -> KeyIdx, or NONE.
    key_of_sym: Vec<u32>,
    /// Sym -> WriteIdx, or NONE.
    write_of_sym: Vec<u32>,
    pub(crate) writes: Vec<WriteRec>,
    pub(crate) reads: Vec<ReadRec>,
    pub(crate) siblings: Vec<SiblingRec>,
    pub(crate) observed: Vec<Sym>,
    pub(crate) replicas: Vec<ReplicaRec>,
    pub(crate) nemesis: Vec<NemesisRec>,
    pub(crate) heal: Option<Mark>,
    pub(crate) final_phase: Option<Mark>,
    pub(crate) config: Option<Value>,
    pub(crate) workload: Workload,
    pub(crate) events: u64,
    /// The id of the value `null`, once one was seen.
    null_value: Option<ValId>,
}

impl History {
    /// The config line's value, if the history has one.
    pub fn config(&self) -> Option<&Value> {
        self.config.as_ref()
    }

    /// The workload named by the config line.
    pub fn workload(&self) -> Workload {
        self.workload
    }

    /// The number of events (lines) in the history.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// The number of client operations (invokes).
    pub fn op_count(&self) -> usize {
        self.writes.len() + self.reads.len()
    }

    /// The number of distinct keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The number of `replica-state` events.
    pub fn replica_state_count(&self) -> usize {
        self.replicas.len()
    }

    pub(crate) fn str(&self, s: Sym) -> &str {
        self.strings.get(s.0)
    }

    pub(crate) fn key_name(&self, k: KeyIdx) -> &str {
        self.str(self.keys[k.0 as usize])
    }

    pub(crate) fn value_text(&self, v: ValId) -> &str {
        self.values.get(v.0)
    }

    pub(crate) fn write(&self, w: WriteIdx) -> &WriteRec {
        &self.writes[w.0 as usize]
    }

    /// The write a write id names, if a put or delete invoked it.
    pub(crate) fn write_of(&self, id: Sym) -> Option<WriteIdx> {
        match self.write_of_sym.get(id.0 as usize) {
            Some(&w) if w != NONE => Some(WriteIdx(w)),
            _ => None,
        }
    }

    /// The id a string was interned under, if any event named it.
    pub(crate) fn sym(&self, s: &str) -> Option<Sym> {
        self.strings.lookup(s).map(Sym)
    }

    pub(crate) fn siblings(&self, span: Span) -> &[SiblingRec] {
        &self.siblings[span.range()]
    }

    pub(crate) fn observed_of(&self, w: &WriteRec) -> &[Sym] {
        &self.observed[w.observed.range()]
    }

    /// Whether two interned values are the same JSON value. Equal text is the common case; different
    /// text may still be the same value (whitespace, key order), so that is decided on the parsed trees.
    pub(crate) fn same_value(&self, a: ValId, b: ValId) -> bool {
        if a == b {
            return true;
        }
        let (ta, tb) = (self.value_text(a), self.value_text(b));
        match (
            serde_json::from_str::<Value>(ta),
            serde_json::from_str::<Value>(tb),
        ) {
            (Ok(va), Ok(vb)) => va == vb,
            _ => false,
        }
    }

    /// The items of a cart value: the strings of a JSON array (nothing for anything else).
    pub(crate) fn cart_items(&self, v: ValId) -> Vec<String> {
        match serde_json::from_str::<Value>(self.value_text(v)) {
            Ok(Value::Array(items)) => items
                .into_iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The items of a cart value that name an interned string (any item that is a write id), appended
    /// to `out`. Reads the text without building a tree when it is an array of strings.
    pub(crate) fn cart_item_syms(&self, v: ValId, out: &mut Vec<Sym>) {
        match serde_json::from_str::<Vec<Str>>(self.value_text(v)) {
            Ok(items) => out.extend(items.iter().filter_map(|i| self.sym(i.as_str()))),
            Err(_) => out.extend(self.cart_items(v).iter().filter_map(|i| self.sym(i))),
        }
    }

    /// Whether a value is JSON `null` (a tombstone).
    pub(crate) fn is_null(&self, v: ValId) -> bool {
        // A raw value's text has no surrounding whitespace, so `null` is always the same text, and
        // interned once.
        self.null_value == Some(v)
    }
}

/// What a client process has in flight.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write(WriteIdx),
    Read(u32),
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    op: Op,
    f: ClientF,
    key: Sym,
    line: usize,
}

/// Folds classified lines into a [`History`], checking the structural rules of the format.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    h: History,
    in_flight: FixedMap<u64, InFlight>,
    /// Processes whose last operation ended info -> the line of that completion.
    retired: FixedMap<u64, usize>,
    last_index: Option<u64>,
    clock_scratch: Vec<(Sym, u64)>,
    warnings: Vec<String>,
}

impl Builder {
    /// Adds one line. An error is a message without the line number; the caller adds it.
    pub(crate) fn push(&mut self, w: &Wire, line: usize) -> Result<(), String> {
        let class = w.classify()?;
        if let Some(last) = self.last_index
            && w.index <= last
        {
            return Err(format!(
                "index {} is not greater than the previous event's index {last} (indexes must be strictly ascending)",
                w.index
            ));
        }
        self.last_index = Some(w.index);
        self.h.events += 1;
        let at = Mark {
            index: w.index,
            time: w.time,
        };
        match class {
            Class::Invoke(f) => self.invoke(w, f, at, line)?,
            Class::Complete(outcome, f) => self.complete(w, outcome, f, at, line)?,
            Class::Nemesis => {
                let f = Sym(self.h.strings.intern(w.f.as_str()));
                self.h.nemesis.push(NemesisRec { f, at });
            }
            Class::Phase => {
                let value = w.value.expect("classify checked the value");
                let name: String = serde_json::from_str(value.get()).map_err(|e| e.to_string())?;
                match Phase::parse(&name) {
                    Phase::Heal => {
                        self.h.heal.get_or_insert(at);
                    }
                    Phase::Final => {
                        self.h.final_phase.get_or_insert(at);
                    }
                    Phase::Other(name) => {
                        self.warnings.push(format!(
                            "line {line}: phase {name:?} is not one the format names; ignored"
                        ));
                    }
                }
            }
            Class::ReplicaState => {
                let key = self.key(w.key_str());
                let node = Sym(self
                    .h
                    .strings
                    .intern(w.node.as_ref().map(Str::as_str).unwrap_or_default()));
                let siblings = self.siblings(w.values.as_deref().unwrap_or_default());
                self.h.replicas.push(ReplicaRec {
                    key,
                    node,
                    at,
                    siblings,
                });
            }
            Class::Config => {
                let value: Value =
                    serde_json::from_str(w.value.expect("classify checked the value").get())
                        .map_err(|e| e.to_string())?;
                if self.h.config.is_some() {
                    self.warnings.push(format!(
                        "line {line}: a second config event; the first one is kept"
                    ));
                } else {
                    if value.get("workload").and_then(Value::as_str) == Some("cart") {
                        self.h.workload = Workload::Cart;
                    }
                    self.h.config = Some(value);
                }
            }
            Class::UnknownHarness => {
                self.warnings.push(format!(
                    "line {line}: harness event f={:?} is not one the format names; skipped",
                    w.f.as_str()
                ));
            }
        }
        Ok(())
    }

    fn invoke(&mut self, w: &Wire, f: ClientF, invoked: Mark, line: usize) -> Result<(), String> {
        let process = w.client();
        if let Some(&ended) = self.retired.get(&process) {
            return Err(format!(
                "process {process} invokes again, but its operation ended info on line {ended} (a process whose operation ends info never invokes again)"
            ));
        }
        if let Some(prev) = self.in_flight.get(&process) {
            return Err(format!(
                "process {process} invokes while its {} from line {} is still in flight (a process has at most one operation in flight)",
                prev.f.as_str(),
                prev.line
            ));
        }
        let key_sym = Sym(self.h.strings.intern(w.key_str()));
        let key = self.key_idx(key_sym);
        let node = w
            .node
            .as_ref()
            .map(|n| Sym(self.h.strings.intern(n.as_str())));
        let op = match f {
            ClientF::Get => {
                let idx = u32::try_from(self.h.reads.len()).expect("fewer than 2^32 reads");
                self.h.reads.push(ReadRec {
                    key,
                    process,
                    node,
                    invoked,
                    completed: None,
                    status: Status::Pending,
                    siblings: Span::default(),
                    is_final: self.h.final_phase.is_some(),
                });
                Op::Read(idx)
            }
            ClientF::Put | ClientF::Delete => {
                let id_str = w
                    .write
                    .as_ref()
                    .expect("classify checked the write id")
                    .as_str();
                let id = Sym(self.h.strings.intern(id_str));
                if let Some(prev) = self.h.write_of(id) {
                    return Err(format!(
                        "write id {id_str:?} was already invoked on line {} (write ids are unique)",
                        self.h.write(prev).line
                    ));
                }
                let value = self.value(w.value.expect("classify checked the value"));
                let start = arena_len(self.h.observed.len());
                for o in w.observed.iter().flatten() {
                    let s = Sym(self.h.strings.intern(o.as_str()));
                    self.h.observed.push(s);
                }
                let observed = Span {
                    start,
                    len: arena_len(self.h.observed.len()) - start,
                };
                let idx =
                    WriteIdx(u32::try_from(self.h.writes.len()).expect("fewer than 2^32 writes"));
                grow(&mut self.h.write_of_sym, id.0);
                self.h.write_of_sym[id.0 as usize] = idx.0;
                self.h.writes.push(WriteRec {
                    id,
                    key,
                    delete: f == ClientF::Delete,
                    process,
                    node,
                    value,
                    observed,
                    invoked,
                    completed: None,
                    status: Status::Pending,
                    version: None,
                    line,
                });
                Op::Write(idx)
            }
        };
        self.in_flight.insert(
            process,
            InFlight {
                op,
                f,
                key: key_sym,
                line,
            },
        );
        Ok(())
    }

    fn complete(
        &mut self,
        w: &Wire,
        outcome: Outcome,
        f: ClientF,
        at: Mark,
        line: usize,
    ) -> Result<(), String> {
        let process = w.client();
        let Some(inv) = self.in_flight.remove(&process) else {
            return Err(format!(
                "process {process} completes a {} ({}) with no operation in flight (a completion follows its invoke)",
                f.as_str(),
                outcome.as_str()
            ));
        };
        let key = w.key_str();
        if inv.f != f || self.h.str(inv.key) != key {
            return Err(format!(
                "the completion of process {process} does not repeat its invoke on line {}: invoked {} {:?}, completed {} {:?}",
                inv.line,
                inv.f.as_str(),
                self.h.str(inv.key),
                f.as_str(),
                key
            ));
        }
        if outcome == Outcome::Info {
            self.retired.insert(process, line);
        }
        match inv.op {
            Op::Write(idx) => {
                let id = self.h.write(idx).id;
                if let Some(named) = &w.write
                    && named.as_str() != self.h.str(id)
                {
                    return Err(format!(
                        "the completion of process {process} names write {:?}, but its invoke on line {} wrote {:?}",
                        named.as_str(),
                        inv.line,
                        self.h.str(id)
                    ));
                }
                let version = if outcome == Outcome::Ok {
                    self.version(w.dot.as_ref(), w.clock.as_ref())
                } else {
                    None
                };
                let rec = &mut self.h.writes[idx.0 as usize];
                rec.completed = Some(at);
                rec.status = outcome.into();
                if version.is_some() {
                    rec.version = version;
                }
            }
            Op::Read(idx) => {
                let siblings = if outcome == Outcome::Ok {
                    self.siblings(w.values.as_deref().unwrap_or_default())
                } else {
                    Span::default()
                };
                let rec = &mut self.h.reads[idx as usize];
                rec.completed = Some(at);
                rec.status = outcome.into();
                rec.siblings = siblings;
            }
        }
        Ok(())
    }

    fn key(&mut self, name: &str) -> KeyIdx {
        let s = Sym(self.h.strings.intern(name));
        self.key_idx(s)
    }

    fn key_idx(&mut self, s: Sym) -> KeyIdx {
        grow(&mut self.h.key_of_sym, s.0);
        let slot = &mut self.h.key_of_sym[s.0 as usize];
        if *slot == NONE {
            *slot = u32::try_from(self.h.keys.len()).expect("fewer than 2^32 keys");
            self.h.keys.push(s);
        }
        KeyIdx(*slot)
    }

    fn value(&mut self, raw: &RawValue) -> ValId {
        let id = ValId(self.h.values.intern(raw.get()));
        if self.h.null_value.is_none() && raw.get() == "null" {
            self.h.null_value = Some(id);
        }
        id
    }

    fn version(&mut self, dot: Option<&WireDot>, clock: Option<&WireClock>) -> Option<VerId> {
        if dot.is_none() && clock.is_none() {
            return None;
        }
        let dot = dot.map(|d| (Sym(self.h.strings.intern(d.0.as_str())), d.1));
        let mut entries = std::mem::take(&mut self.clock_scratch);
        entries.clear();
        for (node, counter) in clock.map(|c| c.0.as_slice()).unwrap_or_default() {
            if *counter > 0 {
                entries.push((Sym(self.h.strings.intern(node.as_str())), *counter));
            }
        }
        // Sorted by node id, a node named twice keeps its largest counter.
        entries.sort_unstable();
        entries.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = earlier.1.max(later.1);
                true
            } else {
                false
            }
        });
        let id = self.h.versions.intern(dot, &entries);
        self.clock_scratch = entries;
        Some(id)
    }

    fn siblings(&mut self, values: &[WireSibling]) -> Span {
        let start = arena_len(self.h.siblings.len());
        for s in values {
            let write = Sym(self.h.strings.intern(s.write.as_str()));
            let raw = s.value.expect("classify checked sibling values");
            let writer = self.h.write_of(write);
            // Most siblings carry exactly the text their write wrote: reuse its id instead of hashing
            // the text again.
            let value = match writer {
                Some(w) if self.h.value_text(self.h.write(w).value) == raw.get() => {
                    self.h.write(w).value
                }
                _ => self.value(raw),
            };
            // A sibling's version only matters to a write whose completion reported none.
            match writer {
                Some(w) if self.h.write(w).version.is_some() => {}
                Some(w) => {
                    self.h.writes[w.0 as usize].version =
                        self.version(s.dot.as_ref(), s.clock.as_ref())
                }
                None => {}
            }
            self.h.siblings.push(SiblingRec { write, value });
        }
        Span {
            start,
            len: arena_len(self.h.siblings.len()) - start,
        }
    }

    /// The history, and the warnings met while building it.
    pub(crate) fn finish(self) -> (History, Vec<String>) {
        (self.h, self.warnings)
    }
}

fn arena_len(n: usize) -> u32 {
    u32::try_from(n).expect("an arena of fewer than 2^32 entries")
}

fn grow(table: &mut Vec<u32>, slot: u32) {
    if table.len() <= slot as usize {
        table.resize(slot as usize + 1, NONE);
    }
}
