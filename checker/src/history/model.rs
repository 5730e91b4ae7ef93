//! The compact, indexed history the checks read, and the builder that folds lines into it while
//! enforcing the format's structural rules.
//!
//! A client operation is one record (its invoke and its completion paired), in invoke order. Strings,
//! values and versions are interned (see `intern.rs`); values in canonical form (`canon.rs`), so that
//! two values are the same JSON value exactly when their ids are equal. Contexts are opaque and dropped,
//! except that a put's or delete's context that is a clock is kept as a version: a v1 history needs it
//! (history-format.md: "a put or delete there also observed every delete on its key, invoked before
//! it, whose dot its `context` covers"). What a history says that no check needs can be read back from
//! the file with [`EventReader`](super::EventReader).

use std::collections::HashMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::canon;
use super::event::{ClientF, Outcome, Phase, ProcessNo};
use super::intern::{FixedState, Interner, Sym, ValId, VerId, Versions};
use super::wire::{
    Class, Str, Wire, WireClock, WireDot, WireSibling, exact_integer, exact_unsigned,
};

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

/// The version of the history format (the config's `history_format`; 1 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Reads omit tombstones; the checker applies the page's two substitutes.
    #[default]
    V1,
    /// Reads return tombstones; `observed` is the whole ground truth.
    V2,
}

/// The quorum settings of the config event, where it states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quorum {
    pub n: u64,
    pub r: u64,
    pub w: u64,
    /// `"node":{"sloppy_quorum":false}`.
    pub strict: bool,
}

impl Quorum {
    /// Whether the config promises what `quorum-read-miss` checks: a strict quorum and R + W > N.
    pub(crate) fn promises_overlap(&self) -> bool {
        self.strict && self.r.saturating_add(self.w) > self.n
    }
}

/// The nemesis operations the format names (history-format.md, "Nemesis events"). A name the
/// format does not know is kept as `Other` and ignored by every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NemesisKind {
    PartitionStart,
    PartitionStop,
    Crash,
    Restart,
    Wipe,
    Skew,
    LossStart,
    LossStop,
    SlowStart,
    SlowStop,
    Join,
    Leave,
    Power,
    Disk,
    PauseStart,
    PauseStop,
    Other,
}

impl NemesisKind {
    pub(crate) fn parse(f: &str) -> NemesisKind {
        match f {
            "partition-start" => NemesisKind::PartitionStart,
            "partition-stop" => NemesisKind::PartitionStop,
            "crash" => NemesisKind::Crash,
            "restart" => NemesisKind::Restart,
            "wipe" => NemesisKind::Wipe,
            "skew" => NemesisKind::Skew,
            "loss-start" => NemesisKind::LossStart,
            "loss-stop" => NemesisKind::LossStop,
            "slow-start" => NemesisKind::SlowStart,
            "slow-stop" => NemesisKind::SlowStop,
            "join" => NemesisKind::Join,
            "leave" => NemesisKind::Leave,
            "power" => NemesisKind::Power,
            "disk" => NemesisKind::Disk,
            "pause-start" => NemesisKind::PauseStart,
            "pause-stop" => NemesisKind::PauseStop,
            _ => NemesisKind::Other,
        }
    }

    /// Whether a fault of this kind on a replica can excuse a quorum-read-miss, so that the nodes
    /// it hit matter (`power`, `join` and `leave` excuse it wherever they happen).
    pub(crate) fn may_excuse(self) -> bool {
        matches!(
            self,
            NemesisKind::Wipe | NemesisKind::Disk | NemesisKind::Crash
        )
    }
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
    pub process: ProcessNo,
    /// The node the request was sent to.
    pub node: Option<Sym>,
    pub value: ValId,
    /// Into `History::observed`.
    pub observed: Span,
    pub invoked: Mark,
    pub completed: Option<Mark>,
    pub status: Status,
    /// The version the store reported on the ok completion, else the first one seen in a read or a
    /// replica state. A report with a `dot` and no `clock` is no version: the clock is what describes
    /// one (history-format.md, "Versions"), and reading its absence as the empty clock would invent
    /// an order (a write that saw nothing) the store never stated.
    pub version: Option<VerId>,
    /// The dot the store reported for the write, with or without a clock (the ok's, else the first
    /// sibling's): a v1 history's contexts are matched against it.
    pub dot: Option<(Sym, u64)>,
    /// The invoke's `context`, when it is a clock (an object node -> counter, or a string
    /// `node=counter,...`), as a version with no dot. Only a v1 history uses it.
    pub context: Option<VerId>,
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
    pub process: ProcessNo,
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
/// when the write's completion reported none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SiblingRec {
    pub write: Sym,
    pub value: ValId,
    /// The sibling's own version: kept for replica states only (divergence compares sets of (write,
    /// version)); `None` on a read's siblings, and where the store reported none.
    pub version: Option<VerId>,
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
    pub kind: NemesisKind,
    /// The nodes it hit, where the event names them (`{"node":"n3"}`; see `nemesis_nodes`); empty
    /// when it names none.
    pub nodes: Vec<Sym>,
    /// Whether `nodes` places the fault: false when it names none, or names something that the
    /// config's list of nodes shows is no node (`"all"`, `"majority"`; see
    /// `Builder::place_faults`). A fault not placed may have hit any node.
    pub placed: bool,
    /// Whether the fault names something that may or may not be a node (a name no other event
    /// names, where the config does not list the nodes): whether it hit a replica is unknown.
    pub unsure: bool,
    pub at: Mark,
    /// The line of the event, for messages.
    pub line: usize,
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
    /// The replica-state siblings (indexes into `siblings`, ascending) reported with a `dot` and no
    /// `clock`: their version is named, its context not described (divergence matches them with any
    /// version of that dot).
    pub(crate) clockless: Vec<u32>,
    pub(crate) observed: Vec<Sym>,
    pub(crate) replicas: Vec<ReplicaRec>,
    pub(crate) nemesis: Vec<NemesisRec>,
    pub(crate) heal: Option<Mark>,
    pub(crate) final_phase: Option<Mark>,
    pub(crate) config: Option<Value>,
    pub(crate) workload: Workload,
    pub(crate) format: Format,
    /// The config's `tombstone_gc` (at the top level or under `node`): the store may collect
    /// tombstones.
    pub(crate) tombstone_gc: bool,
    pub(crate) quorum: Option<Quorum>,
    /// The config says the quorum is strict (`"node":{"sloppy_quorum":false}`) but does not give
    /// `n`, `r` and `w` as numbers: quorum-read-miss cannot tell whether R + W > N was promised.
    pub(crate) strict_without_numbers: bool,
    /// The config gives `node.sloppy_quorum`, but not as a boolean (`"false"`, `0`): whether the
    /// quorum is strict cannot be told.
    pub(crate) sloppy_unreadable: bool,
    /// The config's `fsync` policy is `always`.
    pub(crate) fsync_always: bool,
    pub(crate) events: u64,
    /// Completions and siblings that reported a `dot` without a `clock`: no version (see
    /// `reported`), so their causality goes unchecked, which the results say in a note.
    pub(crate) dot_only_reports: u64,
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

    /// The history format: `history_format` of the config line, 1 when absent.
    pub fn format(&self) -> Format {
        self.format
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

    /// Whether two interned values are the same JSON value: values are interned in canonical form,
    /// so this is the equality of their ids.
    pub(crate) fn same_value(&self, a: ValId, b: ValId) -> bool {
        a == b
    }

    /// The items of a cart value: the strings of a JSON array (nothing for anything else).
    pub(crate) fn cart_items(&self, v: ValId) -> Vec<String> {
        let mut fast = Vec::new();
        if string_array(self.value_text(v), &mut fast) {
            return fast.into_iter().map(str::to_owned).collect();
        }
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
    /// to `out`. Reads the canonical text directly when it is an array of plain strings.
    pub(crate) fn cart_item_syms(&self, v: ValId, out: &mut Vec<Sym>) {
        let before = out.len();
        let plain = for_each_string(self.value_text(v), |i| {
            out.extend(self.sym(i));
            true
        });
        if plain.is_none() {
            out.truncate(before);
            out.extend(self.cart_items(v).iter().filter_map(|i| self.sym(i)));
        }
    }

    /// Whether a value is JSON `null`.
    pub(crate) fn is_null(&self, v: ValId) -> bool {
        // Values are canonical, so `null` is always the same text, interned once.
        self.null_value == Some(v)
    }

    /// Whether a sibling of `key` is a tombstone: its value is `null` and the write it names is no
    /// put of that key. A put may write `null` (history-format.md: "`value`: ... any JSON value"),
    /// and its sibling is then a value like any other; only a delete makes a tombstone ("with
    /// `"value":null` and the `write` id of the delete that made it").
    pub(crate) fn is_tombstone(&self, key: KeyIdx, s: &SiblingRec) -> bool {
        self.is_null(s.value)
            && !self.write_of(s.write).is_some_and(|w| {
                let rec = self.write(w);
                rec.key == key && !rec.delete
            })
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
    in_flight: FixedMap<ProcessNo, InFlight>,
    /// Processes whose last operation ended info -> the line of that completion.
    retired: FixedMap<ProcessNo, usize>,
    last_index: Option<u64>,
    clock_scratch: Vec<(Sym, u64)>,
    value_scratch: String,
    /// Whether the format is known to be 2 (contexts are then not kept).
    v2: bool,
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
                let kind = NemesisKind::parse(w.f.as_str());
                let nodes: Vec<Sym> = nemesis_nodes(w)
                    .iter()
                    .map(|n| Sym(self.h.strings.intern(n)))
                    .collect();
                self.h.nemesis.push(NemesisRec {
                    f,
                    kind,
                    placed: !nodes.is_empty(),
                    unsure: false,
                    nodes,
                    at,
                    line,
                });
            }
            Class::Phase => {
                let Some(value) = w.value else {
                    self.warnings.push(format!(
                        "line {line}: a phase event with no value names no phase; ignored"
                    ));
                    return Ok(());
                };
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
                let siblings = self.siblings(w.values.as_deref().unwrap_or_default(), true, key)?;
                self.h.replicas.push(ReplicaRec {
                    key,
                    node,
                    at,
                    siblings,
                });
            }
            Class::Config => {
                // A config with no value states no setting: the defaults (a v1 history).
                // `null` counts as absent, as for every optional field (`wire.rs`).
                let given = w.value.filter(|v| v.get().trim() != "null");
                let value: Value = match given {
                    Some(v) => {
                        let value: Value =
                            serde_json::from_str(v.get()).map_err(|e| e.to_string())?;
                        // The page gives a config's value as an object of settings; another type
                        // would be read as no setting at all (a v1 history, no strict quorum),
                        // which turns checks off unsaid: a field of the wrong type is an error.
                        if !value.is_object() {
                            return Err(format!(
                                "the config event's value is {}, not an object of settings",
                                json_type(&value)
                            ));
                        }
                        value
                    }
                    None => {
                        // Said, because settings written beside the value (an `n`, a `node`) are
                        // not read: a strict quorum stated there promises nothing to the checks.
                        self.warnings.push(format!(
                            "line {line}: a config event with no value: the defaults (no strict \
                             quorum); settings beside a value are not read"
                        ));
                        Value::Object(serde_json::Map::new())
                    }
                };
                if self.h.config.is_some() {
                    self.warnings.push(format!(
                        "line {line}: a second config event; the first one is kept"
                    ));
                } else {
                    self.apply_config(&value, given, w.history_format, line)?;
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
                let value = self.value(w.value.expect("classify checked the value"))?;
                let context = match w.context {
                    Some(c) if !self.v2 => self.context_clock(c),
                    _ => None,
                };
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
                    dot: None,
                    context,
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
                let (version, dot) = if outcome == Outcome::Ok {
                    self.reported(w.dot.as_ref(), w.clock.as_ref())
                } else {
                    (None, None)
                };
                let rec = &mut self.h.writes[idx.0 as usize];
                rec.completed = Some(at);
                rec.status = outcome.into();
                if version.is_some() {
                    rec.version = version;
                }
                if dot.is_some() {
                    rec.dot = dot;
                }
            }
            Op::Read(idx) => {
                let siblings = if outcome == Outcome::Ok {
                    let key = self.h.reads[idx as usize].key;
                    self.siblings(w.values.as_deref().unwrap_or_default(), false, key)?
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

    /// Interns a value in canonical form.
    fn value(&mut self, raw: &RawValue) -> Result<ValId, String> {
        let text = raw.get();
        let id = if canon::is_canonical(text) {
            ValId(self.h.values.intern(text))
        } else {
            let mut out = std::mem::take(&mut self.value_scratch);
            out.clear();
            canon::canonicalize(text, &mut out)?;
            let id = ValId(self.h.values.intern(&out));
            self.value_scratch = out;
            id
        };
        if self.h.null_value.is_none() && self.h.value_text(id) == "null" {
            self.h.null_value = Some(id);
        }
        Ok(id)
    }

    /// Reads the config event's settings. `history_format` other than 1 or 2 is an error. It is
    /// read inside `value`, or beside it (`top`): the page says only that a v2 history says it "in
    /// its config event". Given in both places, differently, it is an error.
    ///
    /// Its numbers (`history_format`, `n`, `r`, `w`) are read exactly from their text, as the
    /// events' integer fields are (`wire.rs`): `2`, `2.0` and `2e0` are the integer 2, and a number
    /// that only rounds to an integer (`2.0000000000000001`) is none.
    fn apply_config(
        &mut self,
        value: &Value,
        raw: Option<&RawValue>,
        top: Option<&RawValue>,
        line: usize,
    ) -> Result<(), String> {
        let members: HashMap<String, &RawValue> = raw
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default();
        let inner = members.get("history_format").copied();
        let text = |r: &RawValue| r.get().trim().to_owned();
        if let (Some(a), Some(b)) = (inner, top)
            && exact_integer(a.get()) != exact_integer(b.get())
        {
            return Err(format!(
                "history_format is {} in the config's value and {} beside it",
                text(a),
                text(b)
            ));
        }
        self.h.format = match inner.or(top) {
            None => Format::V1,
            // Compared as integers: `2` and `2.0` are the same JSON value.
            Some(v) => match exact_integer(v.get()) {
                Some((false, 1)) => Format::V1,
                Some((false, 2)) => Format::V2,
                _ => {
                    return Err(format!(
                        "history_format {} is not 1 or 2 (this checker reads versions 1 and 2)",
                        text(v)
                    ));
                }
            },
        };
        self.v2 = self.h.format == Format::V2;
        if value.get("workload").and_then(Value::as_str) == Some("cart") {
            self.h.workload = Workload::Cart;
        }
        // The page lists `tombstone_gc` among the config's settings without saying whether it sits at
        // the top level or among the node options; either place counts.
        let yes = |v: Option<&Value>| v == Some(&Value::Bool(true));
        self.h.tombstone_gc =
            yes(value.get("tombstone_gc")) || yes(value.pointer("/node/tombstone_gc"));
        // A setting given in another type than the page's boolean is read as not given: said.
        for (name, v) in [
            ("tombstone_gc", value.get("tombstone_gc")),
            ("node.tombstone_gc", value.pointer("/node/tombstone_gc")),
            ("node.sloppy_quorum", value.pointer("/node/sloppy_quorum")),
        ] {
            if let Some(v) = v.filter(|v| !v.is_boolean() && !v.is_null()) {
                self.warnings.push(format!(
                    "line {line}: the config's {name} is {v}, not a boolean: read as not given"
                ));
            }
        }
        // Read as integers, as `history_format` is: `3`, `3.0` and `3e0` are the same N; `3.5`,
        // `-3` or `"3"` is no N.
        let number = |k: &str| members.get(k).and_then(|r| exact_unsigned(r.get()));
        let sloppy = value.pointer("/node/sloppy_quorum");
        let strict = sloppy == Some(&Value::Bool(false));
        self.h.sloppy_unreadable = sloppy.is_some_and(|v| !v.is_boolean() && !v.is_null());
        if let (Some(n), Some(r), Some(w)) = (number("n"), number("r"), number("w")) {
            self.h.quorum = Some(Quorum { n, r, w, strict });
        } else {
            self.h.strict_without_numbers = strict;
        }
        // `{"policy":"always"}`, or the bare string; anything else (or nothing) is not `always`.
        self.h.fsync_always = match value.get("fsync") {
            Some(Value::String(s)) => s == "always",
            Some(v) => v.get("policy").and_then(Value::as_str) == Some("always"),
            None => false,
        };
        Ok(())
    }

    /// A context that is a clock, as a version with no dot: an object node -> counter, or a string
    /// `node=counter` joined by `,`. Anything else is opaque (history-format.md) and gives `None`.
    fn context_clock(&mut self, raw: &RawValue) -> Option<VerId> {
        let mut entries = std::mem::take(&mut self.clock_scratch);
        entries.clear();
        let text = raw.get();
        let ok = if text.starts_with('{') {
            match serde_json::from_str::<WireClock>(text) {
                Ok(clock) => {
                    for (node, counter) in clock.0 {
                        if counter > 0 {
                            entries.push((Sym(self.h.strings.intern(node.as_str())), counter));
                        }
                    }
                    true
                }
                Err(_) => false,
            }
        } else if text.starts_with('"') {
            match serde_json::from_str::<Str>(text) {
                Ok(s) => {
                    let s = s.as_str();
                    // The pairs are `node=counter`; white space around a node or a counter
                    // (`"n1=2, n2=3"`, as a person writes a list) is no part of either.
                    !s.is_empty()
                        && s.split(',').all(|pair| {
                            let Some((node, counter)) = pair.split_once('=') else {
                                return false;
                            };
                            let (node, counter) = (node.trim(), counter.trim());
                            if node.is_empty() || !counter_text_ok(counter) {
                                return false;
                            }
                            let Ok(counter) = counter.parse::<u64>() else {
                                return false;
                            };
                            if counter > 0 {
                                entries.push((Sym(self.h.strings.intern(node)), counter));
                            }
                            true
                        })
                }
                Err(_) => false,
            }
        } else {
            false
        };
        let id = ok.then(|| {
            sort_clock(&mut entries);
            self.h.versions.intern(None, &entries)
        });
        self.clock_scratch = entries;
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
        sort_clock(&mut entries);
        let id = self.h.versions.intern(dot, &entries);
        self.clock_scratch = entries;
        Some(id)
    }

    /// What a completion or a sibling reports of a write's version: the version, when it has a
    /// `clock` (a `dot` alone describes none), and the dot.
    fn reported(
        &mut self,
        dot: Option<&WireDot>,
        clock: Option<&WireClock>,
    ) -> (Option<VerId>, Option<(Sym, u64)>) {
        let version = if clock.is_some() {
            self.version(dot, clock)
        } else {
            self.h.dot_only_reports += u64::from(dot.is_some());
            None
        };
        let dot = dot.map(|d| (Sym(self.h.strings.intern(d.0.as_str())), d.1));
        (version, dot)
    }

    /// Interns the siblings of a read (`replica` false) or a replica state of `key`. A replica state's
    /// siblings keep their own versions.
    fn siblings(
        &mut self,
        values: &[WireSibling],
        replica: bool,
        key: KeyIdx,
    ) -> Result<Span, String> {
        let start = arena_len(self.h.siblings.len());
        for s in values {
            let write = Sym(self.h.strings.intern(s.write.as_str()));
            let raw = s.value.expect("classify checked sibling values");
            // Only a write on this key can have produced the sibling: one that names a write of
            // another key is a phantom read, and tells nothing about that write.
            let writer = self
                .h
                .write_of(write)
                .filter(|&w| self.h.write(w).key == key);
            // Most siblings carry exactly the text their write wrote: reuse its id instead of hashing
            // the text again. (The write's text is canonical, so equal text is canonical too.)
            let value = match writer {
                Some(w) if self.h.value_text(self.h.write(w).value) == raw.get() => {
                    self.h.write(w).value
                }
                _ => self.value(raw)?,
            };
            // A sibling's version becomes its write's when the write's completion reported none and
            // the sibling is that write's (its key and the value it wrote: a sibling with another value
            // is a phantom read, and its version is no evidence of the write's); a replica state's
            // siblings keep theirs. Otherwise it is not interned (the cost of the interning is the
            // clock's node names, for every sibling of every read).
            let unversioned = writer.filter(|&w| {
                let rec = self.h.write(w);
                rec.version.is_none() && rec.value == value
            });
            // A replica state's sibling keeps what it reported, a dot alone included: divergence
            // compares what replicas hold, not what can be ordered.
            let version = if replica {
                self.version(s.dot.as_ref(), s.clock.as_ref())
            } else {
                None
            };
            if let Some(w) = unversioned {
                let (ordered, dot) = self.reported(s.dot.as_ref(), s.clock.as_ref());
                let rec = &mut self.h.writes[w.0 as usize];
                rec.version = ordered;
                if rec.dot.is_none() {
                    rec.dot = dot;
                }
            }
            if replica && s.dot.is_some() && s.clock.is_none() {
                self.h.clockless.push(arena_len(self.h.siblings.len()));
            }
            self.h.siblings.push(SiblingRec {
                write,
                value,
                version: if replica { version } else { None },
            });
        }
        Ok(Span {
            start,
            len: arena_len(self.h.siblings.len()) - start,
        })
    }

    /// The history, and the warnings met while building it.
    pub(crate) fn finish(mut self) -> (History, Vec<String>) {
        self.place_faults();
        (self.h, self.warnings)
    }

    /// The nodes of the history: the config's `nodes` where it lists names (and its
    /// `node_names`, where this project's harness lists them beside a count), the nodes with a
    /// `replica-state` event, and the nodes clients sent requests to. (A config that gives `nodes`
    /// as a count names none.)
    fn known_nodes(&self) -> Vec<bool> {
        let mut known = vec![false; self.h.strings.len()];
        let mut mark = |s: Sym| {
            if let Some(k) = known.get_mut(s.0 as usize) {
                *k = true;
            }
        };
        for field in ["nodes", "node_names"] {
            let listed = self.h.config.as_ref().and_then(|c| c.get(field));
            for name in listed.and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = name.as_str().and_then(|n| self.h.sym(n)) {
                    mark(s);
                }
            }
        }
        self.h.replicas.iter().for_each(|r| mark(r.node));
        self.h
            .writes
            .iter()
            .filter_map(|w| w.node)
            .for_each(&mut mark);
        self.h
            .reads
            .iter()
            .filter_map(|r| r.node)
            .for_each(&mut mark);
        known
    }

    /// A fault that could excuse a quorum-read-miss (`wipe`, `disk`, `crash`) and names something
    /// that is no node of the history gets a warning naming its line, and:
    /// - where the config lists the nodes (`nodes` as names, or this project's `node_names`), the
    ///   name is no node's (a `"value":"all"`, a `{"node":"majority"}`): the fault has not said
    ///   which nodes it hit, and is taken to have hit any node. Read as a node called "all", it
    ///   would excuse nothing, and a read the fault may well explain would be called a miss.
    /// - where it does not, the checker cannot tell a selector (`"all"`) from a node that holds no
    ///   replica of any key (`"n5"` of `"nodes":5`), which would excuse nothing: the fault is
    ///   `unsure`, and a miss that only it could excuse leaves the verdict unknown (`quorum.rs`)
    ///   rather than valid or false.
    ///
    /// (No check of lost writes reads nemesis events.)
    fn place_faults(&mut self) {
        if !self
            .h
            .nemesis
            .iter()
            .any(|n| n.placed && n.kind.may_excuse())
        {
            return;
        }
        let listed = ["nodes", "node_names"].iter().any(|field| {
            self.h
                .config
                .as_ref()
                .and_then(|c| c.get(field))
                .is_some_and(Value::is_array)
        });
        let known = self.known_nodes();
        let is_node = |s: Sym| known.get(s.0 as usize).copied().unwrap_or(false);
        for n in &mut self.h.nemesis {
            if !n.placed || !n.kind.may_excuse() {
                continue;
            }
            let Some(&first) = n.nodes.iter().find(|&&s| !is_node(s)) else {
                continue;
            };
            let (name, f) = (self.h.strings.get(first.0), self.h.strings.get(n.f.0));
            self.warnings.push(if listed {
                n.placed = false;
                format!(
                    "line {}: the {f} event names {name:?}, which is no node of this history (not \
                     in the config's nodes, no replica-state's node, no client's node): it is taken \
                     to have hit any node (quorum-read-miss)",
                    n.line,
                )
            } else {
                n.unsure = true;
                format!(
                    "line {}: the {f} event names {name:?}, which no other event names, and the \
                     config does not list the nodes: whether it hit a replica is unknown, and a \
                     quorum-read-miss only it could excuse leaves the verdict unknown",
                    n.line,
                )
            });
        }
    }
}

/// A JSON value's type, for messages.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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

/// Sorts clock entries by node id; a node named twice keeps its largest counter.
fn sort_clock(entries: &mut Vec<(Sym, u64)>) {
    entries.sort_unstable();
    entries.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            earlier.1 = earlier.1.max(later.1);
            true
        } else {
            false
        }
    });
}

/// Whether the counter of a `node=counter` pair (trimmed) is plain decimal digits (no sign).
fn counter_text_ok(counter: &str) -> bool {
    !counter.is_empty() && counter.bytes().all(|c| c.is_ascii_digit())
}

/// The nodes a fault hit, where the event names them: `value.node` (a name, as the page's
/// `{"node":"n3"}`, or a list of names), else `value.nodes` (a list), else a `value` that is itself a
/// name or a list of names, else the event's own `node` field. The page says only that "`value` says what"; an event
/// that names its nodes in one of the other places has still said which nodes it hit, and reading
/// it as naming none would take the fault to have hit every node, which excuses any
/// quorum-read-miss. Each place is read on its own, so a mistyped field beside a good one (a
/// `"nodes":3` next to `"node":"n3"`) hides nothing. A `value` that is itself a list of names names
/// those. A fault that names no node in any of these places is taken to have hit every node (it
/// may have hit a replica); so is one that names something the config's list of nodes shows is
/// no node (`"value":"all"`: `Builder::place_faults`).
fn nemesis_nodes(w: &Wire) -> Vec<String> {
    // A name, or a non-empty list of names only.
    fn names(v: &Value) -> Option<Vec<String>> {
        match v {
            Value::String(n) => Some(vec![n.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .filter(|ns| !ns.is_empty()),
            _ => None,
        }
    }
    let value: Option<Value> = w.value.and_then(|v| serde_json::from_str(v.get()).ok());
    let in_value = match &value {
        Some(Value::Object(fields)) => fields.get("node").and_then(names).or_else(|| {
            fields
                .get("nodes")
                .filter(|ns| ns.is_array())
                .and_then(names)
        }),
        Some(v @ (Value::String(_) | Value::Array(_))) => names(v),
        _ => None,
    };
    in_value
        .or_else(|| w.node.as_ref().map(|n| vec![n.as_str().to_owned()]))
        .unwrap_or_default()
}

/// Splits a canonical JSON array of strings with no escapes (`["a","b"]`, what a cart value is) into
/// its strings, appended to `out`. Returns false, leaving `out` as it may be, for anything else: the
/// caller then parses the value.
pub(crate) fn string_array<'a>(text: &'a str, out: &mut Vec<&'a str>) -> bool {
    for_each_string(text, |s| {
        out.push(s);
        true
    }) == Some(true)
}

/// Calls `f` with each string of a canonical JSON array of strings with no escapes, in order, until
/// `f` returns false. `Some(true)` when every string was visited, `Some(false)` when `f` stopped it,
/// `None` when the text is not such an array (the strings before the point where it stopped being one
/// were visited). No allocation: this is the loop that checks every item of every cart value.
pub(crate) fn for_each_string<'a>(
    text: &'a str,
    mut f: impl FnMut(&'a str) -> bool,
) -> Option<bool> {
    let b = text.as_bytes();
    if b.first() != Some(&b'[') {
        return None;
    }
    if b.len() == 2 && b[1] == b']' {
        return Some(true);
    }
    let mut i = 1;
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let len = b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
        let end = start + len;
        if b[end] != b'"' {
            return None;
        }
        if !f(&text[start..end]) {
            return Some(false);
        }
        match b.get(end + 1) {
            Some(b',') => i = end + 2,
            Some(b']') => return (end + 2 == b.len()).then_some(true),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::string_array;

    #[test]
    fn plain_string_arrays_split_and_anything_else_falls_back() {
        let mut out = Vec::new();
        assert!(string_array(r#"["p1-1","p2-3"]"#, &mut out));
        assert_eq!(out, ["p1-1", "p2-3"]);
        out.clear();
        assert!(string_array("[]", &mut out));
        assert!(out.is_empty());
        for other in [
            r#"["a\"b"]"#,
            r#"["a",1]"#,
            r#"{"a":1}"#,
            r#"["a"]x"#,
            r#"["a""#,
            "null",
            r#""a""#,
        ] {
            assert!(!string_array(other, &mut Vec::new()), "{other}");
        }
    }
}
