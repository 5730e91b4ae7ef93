//! The client processes: the `cart` and `register` workloads, run against the nodes, recorded.
//!
//! Each client slot runs its planned operations in order, one at a time (a Jepsen process is
//! single-threaded). Values are stored as JSON `{"write": id, "value": v}` so that a read can name
//! the write each sibling came from. An operation whose outcome is unknown (`info`) retires its
//! process; the slot carries on as a new process number (slot + k * clients).
//!
//! A [`Worker`] is generic over the environment it reaches the nodes through ([`Env`]) and the
//! clock that stamps its events ([`HistoryClock`]): in the simulator, turmoil's network and
//! simulated time; against real processes (`dynamo live`), tokio's TCP and monotonic wall time.
//! The clients' code is the same in both.

use crate::history::{ClockJson, DisplayJson, DotJson, Process, Recorder};
use crate::plan::{ClientOp, OpKind, SimConfig, Workload};
use dynamo_node::client::{Client, ClientError, Context};
use dynamo_node::env::{Env, SimEnv};
use dynamo_node::ring::NodeId;
use dynamo_node::version::VClock;
use dynamo_node::wire::SiblingView;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The port every simulated node listens on.
pub const NODE_PORT: u16 = 7000;

/// Simulated nanoseconds since the run started (inside a turmoil host).
pub fn now_ns() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The clock that stamps history events: nanoseconds since the run started.
pub trait HistoryClock: Clone + 'static {
    /// Nanoseconds since the run started.
    fn now_ns(&self) -> u64;
}

/// The simulator's clock: simulated time ([`now_ns`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SimClock;

impl HistoryClock for SimClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}

/// What every client of a run shares: the configuration, the history, the progress the nemesis
/// watches, and how to reach the nodes (the environment, and node i's address at `addrs[i]`).
pub struct Shared<E: Env = SimEnv, C: HistoryClock = SimClock> {
    /// The run's configuration.
    pub config: Rc<SimConfig>,
    /// The history.
    pub recorder: Rc<RefCell<Recorder>>,
    /// What the clients tell the nemesis.
    pub progress: Rc<Progress>,
    /// The network.
    pub env: E,
    /// The clock of the history.
    pub clock: C,
    /// Each node's client address, by index.
    pub addrs: Vec<String>,
    /// Whether a client whose node refuses a connect dials again until its deadline
    /// ([`Client::waiting_on_refusals`]): on real processes, where a killed node refuses at once,
    /// so that clients wait on it as they do in the simulator instead of spending their operations.
    pub wait_on_refusals: bool,
}

impl Shared<SimEnv, SimClock> {
    /// The simulator's: node i is `n{i+1}:NODE_PORT`.
    pub fn sim(
        config: Rc<SimConfig>,
        recorder: Rc<RefCell<Recorder>>,
        env: SimEnv,
        progress: Rc<Progress>,
    ) -> Shared {
        let addrs = config
            .node_names()
            .into_iter()
            .map(|n| format!("{n}:{NODE_PORT}"))
            .collect();
        Shared {
            config,
            recorder,
            progress,
            env,
            clock: SimClock,
            addrs,
            // A host that is down lets the connect hang already; one that restarts and has not
            // bound yet refuses, and the simulator's clients take that answer as they always did.
            wait_on_refusals: false,
        }
    }
}

/// A sibling as a client decoded it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The write that made it (None if the stored bytes are not ours: a phantom).
    pub write: Option<String>,
    /// Its value, as compact JSON text: kept as text because the history only copies it, and only
    /// the cart looks inside (see [`cart_value`]).
    pub value: Box<RawValue>,
}

/// What a successful read returned.
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// The siblings.
    pub seen: Vec<Seen>,
    /// The context to write back with (its MAC included: a history records only the clock).
    pub context: Context,
}

/// A value as it is stored: the write that made it and what it wrote (null for a delete's
/// tombstone marker). The field order is the stored bytes' order. Decoding refuses other fields
/// (and duplicates), so that such bytes take [`decode_value`]'s slow path, which alone decides what
/// they mean.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored<'a> {
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow)]
    write: Cow<'a, str>,
}

/// Encodes a write for storage: `{"value":...,"write":"p3-17"}` (`value` None: null, a delete).
pub fn encode_value(write: &str, value: Option<&RawValue>) -> Vec<u8> {
    let stored = Stored {
        value,
        write: Cow::Borrowed(write),
    };
    serde_json::to_vec(&stored).expect("a stored value serialises")
}

/// Decodes stored bytes; bytes that are not ours become a phantom with the raw text.
///
/// The value is written to the history as the compact JSON text that `serde_json` makes of it,
/// which is exactly how [`encode_value`] stored it: the fast path copies that text as it is. Text
/// that serialising could change (whitespace, escapes, numbers, objects: never ours, but the store
/// hands back whatever it holds) takes the slow path through a [`Value`], which normalises it.
pub fn decode_value(bytes: &[u8]) -> Seen {
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(stored) if stored.value.is_none_or(is_compact) => Seen {
            write: Some(stored.write.into_owned()),
            value: stored.value.map_or_else(null, RawValue::to_owned),
        },
        _ => decode_value_slow(bytes),
    }
}

/// [`decode_value`] through a [`Value`] tree: any JSON object with a string `write` is ours.
fn decode_value_slow(bytes: &[u8]) -> Seen {
    let (write, value) = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(mut m)) if m.get("write").is_some_and(Value::is_string) => (
            m.remove("write")
                .and_then(|w| w.as_str().map(str::to_string)),
            m.remove("value").unwrap_or(Value::Null),
        ),
        _ => (
            None,
            Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ),
    };
    Seen {
        write,
        value: to_raw_value(&value).expect("a JSON value serialises"),
    }
}

/// The JSON text `null`.
fn null() -> Box<RawValue> {
    to_raw_value(&()).expect("null serialises")
}

/// Whether a value's text is certainly what `serde_json` writes for the value it holds: null, or
/// strings without escapes, or arrays of those (nested or not), without whitespace. Errs on the
/// side of no: anything else takes the slow path.
fn is_compact(value: &RawValue) -> bool {
    let json = value.get();
    if json == "null" {
        return true;
    }
    // The text is valid JSON, so a string ends at the first quote unless a backslash comes first.
    let mut rest = json.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        rest = match b {
            b'[' | b']' | b',' => after,
            b'"' => match after.iter().position(|&c| c == b'"' || c == b'\\') {
                Some(end) if after[end] == b'"' => &after[end + 1..],
                _ => return false,
            },
            _ => return false,
        };
    }
    true
}

/// The cart's next value: the union of the siblings' item lists, plus `item`, sorted.
pub fn cart_value(seen: &[Seen], item: &str) -> Box<RawValue> {
    let mut plain = Vec::new();
    for s in seen {
        match plain_items(&s.value) {
            Some(items) => plain.extend(items),
            None => {
                let items = cart_items_general(seen, item);
                return to_raw_value(&items).expect("a cart serialises");
            }
        }
    }
    to_raw_value(&union_sorted(plain, item)).expect("a cart serialises")
}

/// [`cart_value`]'s items for any sibling values: what is not a list adds nothing, nor do list
/// elements that are not strings.
fn cart_items_general<'a>(seen: &'a [Seen], item: &'a str) -> Vec<Cow<'a, str>> {
    let mut items = vec![Cow::Borrowed(item)];
    for s in seen {
        if let Ok(Value::Array(list)) = serde_json::from_str(s.value.get()) {
            items.extend(list.into_iter().filter_map(|v| match v {
                Value::String(s) => Some(Cow::Owned(s)),
                _ => None,
            }));
        }
    }
    items.sort_unstable();
    items.dedup();
    items
}

/// `items` plus `item`, sorted, without duplicates. `items` is the siblings' lists one after the
/// other, each sorted already (this workload writes them so): with one sibling it needs no sort,
/// and with more a stable sort merges the sorted runs.
fn union_sorted<'a>(mut items: Vec<&'a str>, item: &'a str) -> Vec<&'a str> {
    if !items.is_sorted_by(|a, b| a < b) {
        items.sort();
        items.dedup();
    }
    if let Err(at) = items.binary_search(&item) {
        items.insert(at, item);
    }
    items
}

/// The strings of a value that is a flat list of strings without escapes or whitespace (what the
/// cart stores), borrowed from its text; None for any other value.
fn plain_items(value: &RawValue) -> Option<Vec<&str>> {
    let mut rest = value.get().strip_prefix('[')?.strip_suffix(']')?;
    let mut items = Vec::new();
    if rest.is_empty() {
        return Some(items);
    }
    // The text is valid JSON, so a string ends at the first quote unless a backslash comes first.
    loop {
        let string = rest.strip_prefix('"')?;
        let end = string.bytes().position(|b| b == b'"' || b == b'\\')?;
        let (item, after) = string.split_at(end);
        items.push(item);
        rest = after.strip_prefix('"')?;
        if rest.is_empty() {
            return Some(items);
        }
        rest = rest.strip_prefix(',')?;
    }
}

/// The siblings of a read or a replica state as the history writes them (`values`).
pub struct SiblingsJson<'a> {
    views: &'a [SiblingView],
    seen: &'a [Seen],
}

impl<'a> SiblingsJson<'a> {
    /// `seen` is `views` decoded, one for one.
    pub fn new(views: &'a [SiblingView], seen: &'a [Seen]) -> SiblingsJson<'a> {
        assert_eq!(views.len(), seen.len(), "one decoded sibling per sibling");
        SiblingsJson { views, seen }
    }
}

impl Serialize for SiblingsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.views.len()))?;
        for (view, seen) in self.views.iter().zip(self.seen) {
            seq.serialize_element(&SiblingJson {
                clock: ClockJson(&view.clock),
                dot: view.dot.as_ref().map(DotJson),
                value: (!view.tombstone).then_some(&*seen.value),
                write: seen.write.as_deref(),
            })?;
        }
        seq.end()
    }
}

/// One sibling in the history (a tombstone's value is null).
#[derive(Serialize)]
struct SiblingJson<'a> {
    clock: ClockJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dot: Option<DotJson<'a>>,
    value: Option<&'a RawValue>,
    write: Option<&'a str>,
}

/// The fields of a harness `replica-state` event: one replica's raw sibling set of a key.
pub struct ReplicaStateJson<'a> {
    key: &'a str,
    node: &'a str,
    views: &'a [SiblingView],
    seen: Vec<Seen>,
}

impl<'a> ReplicaStateJson<'a> {
    /// The event of `node`'s siblings `views` of `key`.
    pub fn new(key: &'a str, node: &'a str, views: &'a [SiblingView]) -> ReplicaStateJson<'a> {
        let seen = views.iter().map(|s| decode_value(&s.value)).collect();
        ReplicaStateJson {
            key,
            node,
            views,
            seen,
        }
    }
}

impl Serialize for ReplicaStateJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Fields<'a> {
            key: &'a str,
            node: &'a str,
            values: SiblingsJson<'a>,
        }
        Fields {
            key: self.key,
            node: self.node,
            values: SiblingsJson::new(self.views, &self.seen),
        }
        .serialize(s)
    }
}

// The fields of the client events, each in name order (as the lines were written when they were
// built as `serde_json::Value` maps, so that a history stays byte for byte what it was).

#[derive(Serialize)]
struct GetInvokeJson<'a> {
    key: &'a str,
    node: DisplayJson<NodeName>,
}

#[derive(Serialize)]
struct GetOkJson<'a> {
    context: DisplayJson<&'a VClock>,
    key: &'a str,
    values: SiblingsJson<'a>,
}

#[derive(Serialize)]
struct PutInvokeJson<'a> {
    context: DisplayJson<&'a VClock>,
    key: &'a str,
    node: DisplayJson<NodeName>,
    observed: &'a [&'a str],
    value: Option<&'a RawValue>,
    write: &'a str,
}

#[derive(Serialize)]
struct PutOkJson<'a> {
    clock: ClockJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dot: Option<DotJson<'a>>,
    key: &'a str,
    write: &'a str,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    error: DisplayJson<&'a ClientError>,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    write: Option<&'a str>,
}

/// What the clients tell the harness as they go: how far they are, where acknowledged writes were
/// stored (the nemesis aims some faults at them), and how many writes are in flight; and what the
/// harness asks of them: to hold new writes (the nemesis then lets the ones in flight finish before
/// a fault that must not hit a write in flight). Single-threaded, like a turmoil host.
#[derive(Debug, Default)]
pub struct Progress {
    /// Planned operations completed, over all clients (a cart update counts once).
    pub ops_done: Cell<u64>,
    /// Writes acknowledged since the nemesis last looked, in order.
    pub acks: RefCell<Vec<Ack>>,
    /// Planned operations completed per client slot (for windows pinned to one client's ops).
    pub ops_done_by_client: RefCell<Vec<u64>>,
    /// Puts and deletes invoked and not yet completed.
    pub writes_in_flight: Cell<u64>,
    /// While set, clients wait before invoking a put or delete.
    pub hold_writes: Cell<bool>,
    /// Where the next operations go, whatever their plan says (a fault aimed at an acknowledged
    /// write, once closed: [`crate::plan::Victim::Acked`]'s `follow_ops`).
    pub focus: Cell<Option<Focus>>,
    /// How often each node (by index) was restarted. A client drops a connection it made before
    /// the node's last restart, as a pool that checks its connections does, so that its first
    /// request to a restarted node is not lost on a dead socket.
    pub restarts: RefCell<Vec<u64>>,
}

/// The next `ops` operations of one client (the first to start one) go to key `key` through node
/// `node`; the first of them is a blind put. One client, one after another, as a sticky session
/// would: were they spread over every client, they would all run at once, and the first read's
/// repair would undo the damage before the blind put reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Focus {
    /// The key (index).
    pub key: u32,
    /// The node (index).
    pub node: u32,
    /// How many operations it still takes.
    pub ops: u32,
    /// The client slot that took the first.
    pub client: Option<u64>,
}

impl Progress {
    /// The next operation client slot `slot` starts, planned as `op`: the focus's while it lasts
    /// and is this client's (taking one of its operations: the first a blind put, the key and
    /// node of the others changed), else `op`.
    pub fn route(&self, slot: u64, op: &ClientOp) -> ClientOp {
        match self.focus.get() {
            Some(f) if f.ops > 0 && f.client.is_none_or(|c| c == slot) => {
                self.focus.set((f.ops > 1).then_some(Focus {
                    ops: f.ops - 1,
                    client: Some(slot),
                    ..f
                }));
                let kind = if f.client.is_some() {
                    op.kind
                } else {
                    OpKind::BlindPut
                };
                ClientOp {
                    key: f.key,
                    node: f.node,
                    kind,
                    ..*op
                }
            }
            _ => *op,
        }
    }

    /// How often node `node` was restarted.
    pub fn restarts(&self, node: u32) -> u64 {
        self.restarts
            .borrow()
            .get(node as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Counts a restart of node `node`.
    pub fn restarted(&self, node: u32) {
        let mut restarts = self.restarts.borrow_mut();
        if restarts.len() <= node as usize {
            restarts.resize(node as usize + 1, 0);
        }
        restarts[node as usize] += 1;
    }

    /// Planned operations client slot `client` has completed.
    pub fn client_ops_done(&self, client: u32) -> u64 {
        self.ops_done_by_client
            .borrow()
            .get(client as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// An acknowledged write and the nodes that stored it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The write's id.
    pub write: String,
    /// Its key (index).
    pub key: u32,
    /// The nodes that acknowledged it, the coordinator first.
    pub stored_on: Vec<NodeId>,
}

/// One client slot.
pub struct Worker<E: Env = SimEnv, C: HistoryClock = SimClock> {
    slot: u64,
    clients: u64,
    process: u64,
    seq: u64,
    config: Rc<SimConfig>,
    shared: Rc<Shared<E, C>>,
    /// By node: the connection, and how often the node had been restarted when it was made.
    connections: BTreeMap<u32, (u64, Client<E>)>,
    /// This process's last successful read of each key (shared, not copied: carts grow large).
    last_read: BTreeMap<u32, Rc<ReadResult>>,
    progress: Rc<Progress>,
}

impl<E: Env, C: HistoryClock> Worker<E, C> {
    /// A worker for client slot `slot` (its first process number is `first_process`).
    pub fn new(slot: u64, first_process: u64, shared: Rc<Shared<E, C>>) -> Worker<E, C> {
        Worker {
            slot,
            clients: shared.config.clients as u64,
            process: first_process,
            seq: 0,
            config: shared.config.clone(),
            progress: shared.progress.clone(),
            shared,
            connections: BTreeMap::new(),
            last_read: BTreeMap::new(),
        }
    }

    fn record<F: Serialize>(&self, kind: &str, f: &str, fields: &F) {
        let process = Process::Client(self.process);
        let time = self.shared.clock.now_ns();
        self.shared
            .recorder
            .borrow_mut()
            .record(time, process, kind, f, fields);
    }

    fn client(&mut self, node: u32) -> &mut Client<E> {
        let shared = &self.shared;
        let timeout_ms = self.config.client_timeout_ms;
        let restarts = self.progress.restarts(node);
        if self
            .connections
            .get(&node)
            .is_some_and(|(made, _)| *made != restarts)
        {
            self.connections.remove(&node);
        }
        let (_, client) = self.connections.entry(node).or_insert_with(|| {
            let client = Client::new(shared.env.clone(), shared.addrs[node as usize].clone())
                .with_timeout_ms(timeout_ms);
            let client = if shared.wait_on_refusals {
                client.waiting_on_refusals()
            } else {
                client
            };
            (restarts, client)
        });
        client
    }

    /// Ends the current process after an `info`: a new number takes its place.
    fn retire(&mut self) {
        self.process += self.clients;
        self.last_read.clear();
        debug_assert_eq!(self.process % self.clients, self.slot % self.clients);
    }

    fn complete_error(&mut self, f: &str, key: &str, write: Option<&str>, e: &ClientError) {
        let fields = ErrorJson {
            error: DisplayJson(e),
            key,
            write,
        };
        if e.is_definite() {
            self.record("fail", f, &fields);
        } else {
            self.record("info", f, &fields);
            self.retire();
        }
    }

    /// A quorum read of `key` through `node`, recorded.
    pub async fn read(&mut self, key: u32, node: u32) -> Option<Rc<ReadResult>> {
        let name = self.config.key_name(key);
        let invoke = GetInvokeJson {
            key: &name,
            node: DisplayJson(NodeName(node)),
        };
        self.record("invoke", "get", &invoke);
        match self.client(node).get(name.as_bytes()).await {
            Ok(reply) => {
                // Decoded once: carts grow large, and this is the simulation's hottest client path.
                let seen: Vec<Seen> = reply
                    .siblings
                    .iter()
                    .map(|s| decode_value(&s.value))
                    .collect();
                let ok = GetOkJson {
                    context: DisplayJson(&reply.context.clock),
                    key: &name,
                    values: SiblingsJson::new(&reply.siblings, &seen),
                };
                self.record("ok", "get", &ok);
                let result = Rc::new(ReadResult {
                    seen,
                    context: reply.context,
                });
                self.last_read.insert(key, result.clone());
                Some(result)
            }
            Err(e) => {
                self.complete_error("get", &name, None, &e);
                None
            }
        }
    }

    /// A put of `value` (or a delete, `value` None) of `key` through `node` with the context of
    /// `read`.
    pub async fn write(
        &mut self,
        key: u32,
        node: u32,
        value: Option<&RawValue>,
        read: Option<&ReadResult>,
    ) {
        while self.progress.hold_writes.get() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let progress = self.progress.clone();
        let in_flight = &progress.writes_in_flight;
        in_flight.set(in_flight.get() + 1);
        self.write_now(key, node, value, read).await;
        in_flight.set(in_flight.get() - 1);
    }

    async fn write_now(
        &mut self,
        key: u32,
        node: u32,
        value: Option<&RawValue>,
        read: Option<&ReadResult>,
    ) {
        let name = self.config.key_name(key);
        let write = self.next_write_id();
        self.seq += 1;
        let delete = value.is_none();
        let f = if delete { "delete" } else { "put" };
        let blind = Context::blind();
        let (context, mut observed) = match read {
            Some(r) => (
                &r.context,
                r.seen.iter().filter_map(|s| s.write.as_deref()).collect(),
            ),
            None => (&blind, Vec::new()),
        };
        observed.sort_unstable();
        observed.dedup();
        let invoke = PutInvokeJson {
            context: DisplayJson(&context.clock),
            key: &name,
            node: DisplayJson(NodeName(node)),
            observed: &observed,
            value,
            write: &write,
        };
        self.record("invoke", f, &invoke);
        let bytes = encode_value(&write, value);
        let client = self.client(node);
        let result = if delete {
            client.delete(name.as_bytes(), context, bytes).await
        } else {
            client.put(name.as_bytes(), bytes, context).await
        };
        match result {
            Ok(reply) => {
                let ok = PutOkJson {
                    clock: ClockJson(&reply.clock),
                    dot: reply.dot.as_ref().map(DotJson),
                    key: &name,
                    write: &write,
                };
                self.record("ok", f, &ok);
                self.progress.acks.borrow_mut().push(Ack {
                    write,
                    key,
                    stored_on: reply.stored_on,
                });
            }
            Err(e) => self.complete_error(f, &name, Some(&write), &e),
        }
    }

    /// Runs one planned operation.
    pub async fn run_op(&mut self, op: &ClientOp) {
        self.run_op_inner(op).await;
        let done = &self.progress.ops_done;
        done.set(done.get() + 1);
        let mut by_client = self.progress.ops_done_by_client.borrow_mut();
        let slot = self.slot as usize;
        if by_client.len() <= slot {
            by_client.resize(slot + 1, 0);
        }
        by_client[slot] += 1;
    }

    async fn run_op_inner(&mut self, op: &ClientOp) {
        tokio::time::sleep(Duration::from_millis(op.think_ms as u64)).await;
        let op = &self.progress.route(self.slot, op);
        match (self.config.workload, op.kind) {
            (_, OpKind::Read) => {
                self.read(op.key, op.node).await;
            }
            (Workload::Cart, OpKind::BlindPut) => {
                let value = cart_value(&[], &self.next_write_id());
                self.write(op.key, op.node, Some(&value), None).await;
            }
            (Workload::Cart, _) => {
                // Read, merge the siblings by union (application-side reconciliation), add one
                // new item (this write's own id), and put with the read's context.
                if let Some(read) = self.read(op.key, op.node).await {
                    let value = cart_value(&read.seen, &self.next_write_id());
                    self.write(op.key, op.node, Some(&value), Some(&read)).await;
                }
            }
            (Workload::Register, OpKind::Update) => {
                let read = self.last_read.get(&op.key).cloned();
                let id = self.next_write_json();
                self.write(op.key, op.node, Some(&id), read.as_deref())
                    .await;
            }
            (Workload::Register, OpKind::BlindPut) => {
                let id = self.next_write_json();
                self.write(op.key, op.node, Some(&id), None).await;
            }
            (Workload::Register, OpKind::Delete) => {
                if let Some(read) = self.last_read.get(&op.key).cloned() {
                    self.write(op.key, op.node, None, Some(&read)).await;
                } else {
                    self.read(op.key, op.node).await;
                }
            }
        }
    }

    /// The id the next write will have (the cart's new item).
    fn next_write_id(&self) -> String {
        format!("p{}-{}", self.process, self.seq + 1)
    }

    /// The id the next write will have, as a JSON string (the register's value).
    fn next_write_json(&self) -> Box<RawValue> {
        to_raw_value(&self.next_write_id()).expect("a string serialises")
    }

    /// The process number in use now.
    pub fn process(&self) -> u64 {
        self.process
    }
}

/// A node's name from its index.
pub fn node_name(node: u32) -> String {
    NodeName(node).to_string()
}

/// A node's name from its index, formatted where it is written.
#[derive(Clone, Copy, Debug)]
struct NodeName(u32);

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0 + 1)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_follow_up_takes_one_clients_next_operations_the_first_a_blind_put() {
        let progress = Progress::default();
        let planned = ClientOp {
            client: 0,
            key: 7,
            kind: OpKind::Read,
            node: 3,
            think_ms: 5,
        };
        assert_eq!(progress.route(0, &planned), planned, "no focus: the plan");
        progress.focus.set(Some(Focus {
            key: 2,
            node: 0,
            ops: 3,
            client: None,
        }));
        let first = progress.route(1, &planned);
        assert_eq!(
            (first.key, first.node, first.kind),
            (2, 0, OpKind::BlindPut)
        );
        assert_eq!(first.think_ms, 5);
        // Another client's operation runs as planned: the follow-up is client 1's.
        assert_eq!(progress.route(0, &planned), planned);
        let second = progress.route(1, &planned);
        assert_eq!((second.key, second.node, second.kind), (2, 0, OpKind::Read));
        let third = progress.route(1, &planned);
        assert_eq!((third.key, third.node), (2, 0));
        assert_eq!(progress.focus.get(), None, "three operations, then none");
        assert_eq!(progress.route(1, &planned), planned);
    }

    #[test]
    fn restarts_are_counted_per_node() {
        let progress = Progress::default();
        assert_eq!(progress.restarts(4), 0);
        progress.restarted(4);
        progress.restarted(4);
        assert_eq!(progress.restarts(4), 2);
        assert_eq!(progress.restarts(1), 0);
    }
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The decoding as it was before values were kept as text: the reference.
    fn decode_reference(bytes: &[u8]) -> (Option<String>, String) {
        let seen = decode_value_slow(bytes);
        (seen.write, seen.value.get().to_string())
    }

    fn decode(bytes: &[u8]) -> (Option<String>, String) {
        let seen = decode_value(bytes);
        (seen.write, seen.value.get().to_string())
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn a_stored_value_round_trips() {
        let value = raw(r#"["p1-4","p3-17"]"#);
        let bytes = encode_value("p3-17", Some(&value));
        assert_eq!(bytes, br#"{"value":["p1-4","p3-17"],"write":"p3-17"}"#);
        assert_eq!(
            decode(&bytes),
            (Some("p3-17".into()), r#"["p1-4","p3-17"]"#.into())
        );
        let marker = encode_value("p3-18", None);
        assert_eq!(marker, br#"{"value":null,"write":"p3-18"}"#);
        assert_eq!(decode(&marker), (Some("p3-18".into()), "null".into()));
    }

    #[test]
    fn bytes_that_are_not_ours_are_a_phantom() {
        for bytes in [
            &b"hello"[..],
            b"{\"value\":1}",
            b"[1]",
            b"{\"write\":4}",
            b"\xff\xfe",
        ] {
            let (write, value) = decode(bytes);
            assert_eq!(write, None);
            let text: String = serde_json::from_str(&value).unwrap();
            assert_eq!(text, String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn text_that_serialising_would_change_is_normalised() {
        for (stored, value) in [
            (r#"{"value":[ "a" ],"write":"w"}"#, r#"["a"]"#),
            (r#"{"value":"\u0041","write":"w"}"#, r#""A""#),
            (r#"{"value":{"b":1,"a":2},"write":"w"}"#, r#"{"a":2,"b":1}"#),
            (r#"{"value":1.50,"write":"w"}"#, "1.5"),
            (r#"{"write":"w","value":"x","other":true}"#, r#""x""#),
            (r#"{"write":"w"}"#, "null"),
        ] {
            assert_eq!(decode(stored.as_bytes()), (Some("w".into()), value.into()));
            assert_eq!(
                decode(stored.as_bytes()),
                decode_reference(stored.as_bytes())
            );
        }
    }

    #[test]
    fn only_flat_lists_of_plain_strings_are_split() {
        let cases: [(&str, Option<&[&str]>); 14] = [
            ("[]", Some(&[])),
            (r#"["a",["b"]]"#, None),
            (r#"["a",1]"#, None),
            (r#"[1,"a"]"#, None),
            (r#"[""]"#, Some(&[""])),
            (r#"["",""]"#, Some(&["", ""])),
            (r#"["a,b","c"]"#, Some(&["a,b", "c"])),
            (r#"["a","b"]"#, Some(&["a", "b"])),
            (r#"["a" ,"b"]"#, None),
            (r#"[ "a"]"#, None),
            (r#"[["a"]]"#, None),
            (r#"["a\"b"]"#, None),
            (r#""a""#, None),
            ("null", None),
        ];
        for (json, items) in cases {
            assert_eq!(plain_items(&raw(json)).as_deref(), items, "{json}");
        }
    }

    /// The cart's union as it was computed through `Value`s: the reference.
    fn cart_reference(values: &[Value], item: &str) -> String {
        let mut items: BTreeSet<String> = BTreeSet::new();
        for v in values {
            if let Value::Array(list) = v {
                items.extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
            }
        }
        items.insert(item.to_string());
        serde_json::to_string(&items).unwrap()
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::from),
            "[a-c\"\\\\ ,\\[\\]é\u{1}]{0,4}".prop_map(Value::from),
            "p[0-3]-[0-9]{1,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn cart_list() -> impl Strategy<Value = Value> {
        prop::collection::btree_set("p[0-3]-[0-9]{1,2}", 0..12)
            .prop_map(|items| Value::from(items.into_iter().collect::<Vec<_>>()))
    }

    proptest! {
        #[test]
        fn decoding_matches_the_reference(value in json_value(), write in "[a-z\"\\\\]{0,3}", pad in any::<bool>()) {
            let mut bytes = serde_json::to_vec(&serde_json::json!({"value": value, "write": write})).unwrap();
            if pad {
                bytes.insert(1, b' ');
            }
            prop_assert_eq!(decode(&bytes), decode_reference(&bytes));
        }

        #[test]
        fn decoding_any_bytes_matches_the_reference(bytes in prop::collection::vec(any::<u8>(), 0..24)) {
            prop_assert_eq!(decode(&bytes), decode_reference(&bytes));
        }

        #[test]
        fn the_cart_union_matches_the_reference(
            values in prop::collection::vec(prop_oneof![4 => cart_list(), 1 => json_value()], 0..4),
            item in "p[0-3]-[0-9]{1,2}",
        ) {
            // Stored and decoded, as a read hands them over.
            let seen: Vec<Seen> = values
                .iter()
                .map(|v| decode_value(&serde_json::to_vec(&serde_json::json!({"value": v, "write": "w"})).unwrap()))
                .collect();
            let cart = cart_value(&seen, &item);
            prop_assert_eq!(cart.get(), cart_reference(&values, &item));
        }
    }
}
