//! The client processes: the `cart` and `register` workloads, run against the nodes, recorded.
//!
//! Each client slot runs its planned operations in order, one at a time (a Jepsen process is
//! single-threaded). Values are stored as JSON `{"write": id, "value": v}` so that a read can name
//! the write each sibling came from. An operation whose outcome is unknown (`info`) retires its
//! process; the slot carries on as a new process number (slot + k * clients).

use crate::history::{Process, Recorder, clock_json, dot_json};
use crate::plan::{ClientOp, OpKind, SimConfig, Workload};
use dynamo_node::client::{Client, ClientError};
use dynamo_node::env::SimEnv;
use dynamo_node::version::VClock;
use dynamo_node::wire::SiblingView;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
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

/// A sibling as a client decoded it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The write that made it (None if the stored bytes are not ours: a phantom).
    pub write: Option<String>,
    /// Its value.
    pub value: Value,
}

/// What a successful read returned.
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// The siblings.
    pub seen: Vec<Seen>,
    /// The context to write back with.
    pub context: VClock,
}

/// Encodes a write for storage.
pub fn encode_value(write: &str, value: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"write": write, "value": value})).expect("json")
}

/// Decodes stored bytes; bytes that are not ours become a phantom with the raw text.
pub fn decode_value(bytes: &[u8]) -> Seen {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(mut m)) if m.get("write").is_some_and(Value::is_string) => Seen {
            write: m
                .remove("write")
                .and_then(|w| w.as_str().map(str::to_string)),
            value: m.remove("value").unwrap_or(Value::Null),
        },
        _ => Seen {
            write: None,
            value: Value::String(String::from_utf8_lossy(bytes).into_owned()),
        },
    }
}

/// A sibling as the history writes it.
pub fn sibling_json(s: &SiblingView) -> Value {
    seen_json(s, decode_value(&s.value))
}

/// A decoded sibling as the history writes it.
fn seen_json(s: &SiblingView, seen: Seen) -> Value {
    let mut v = json!({
        "write": seen.write,
        "value": if s.tombstone { Value::Null } else { seen.value },
        "clock": clock_json(&s.clock),
    });
    if s.dot.is_some() {
        v["dot"] = dot_json(&s.dot);
    }
    v
}

/// One client slot.
pub struct Worker {
    slot: u64,
    clients: u64,
    process: u64,
    seq: u64,
    config: Rc<SimConfig>,
    recorder: Rc<RefCell<Recorder>>,
    connections: BTreeMap<u32, Client<SimEnv>>,
    env: SimEnv,
    /// This process's last successful read of each key.
    last_read: BTreeMap<u32, ReadResult>,
}

impl Worker {
    /// A worker for client slot `slot` (its first process number is `first_process`).
    pub fn new(
        slot: u64,
        first_process: u64,
        config: Rc<SimConfig>,
        recorder: Rc<RefCell<Recorder>>,
        env: SimEnv,
    ) -> Worker {
        Worker {
            slot,
            clients: config.clients as u64,
            process: first_process,
            seq: 0,
            config,
            recorder,
            connections: BTreeMap::new(),
            env,
            last_read: BTreeMap::new(),
        }
    }

    fn record(&self, kind: &str, f: &str, fields: Value) {
        let process = Process::Client(self.process);
        self.recorder
            .borrow_mut()
            .record(now_ns(), process, kind, f, fields);
    }

    fn client(&mut self, node: u32) -> &mut Client<SimEnv> {
        let env = self.env.clone();
        let timeout_ms = self.config.client_timeout_ms;
        self.connections.entry(node).or_insert_with(|| {
            Client::new(env, format!("n{}:{NODE_PORT}", node + 1)).with_timeout_ms(timeout_ms)
        })
    }

    /// Ends the current process after an `info`: a new number takes its place.
    fn retire(&mut self) {
        self.process += self.clients;
        self.last_read.clear();
        debug_assert_eq!(self.process % self.clients, self.slot % self.clients);
    }

    fn complete_error(&mut self, f: &str, key: &str, extra: Value, e: &ClientError) {
        let mut fields = json!({"key": key, "error": e.to_string()});
        if let (Value::Object(m), Value::Object(x)) = (&mut fields, extra) {
            m.extend(x);
        }
        if e.is_definite() {
            self.record("fail", f, fields);
        } else {
            self.record("info", f, fields);
            self.retire();
        }
    }

    /// A quorum read of `key` through `node`, recorded.
    pub async fn read(&mut self, key: u32, node: u32) -> Option<ReadResult> {
        let name = self.config.key_name(key);
        self.record(
            "invoke",
            "get",
            json!({"key": name, "node": node_name(node)}),
        );
        match self.client(node).get(name.as_bytes()).await {
            Ok(reply) => {
                // Decoded once: carts grow large, and this is the simulation's hottest client path.
                let seen: Vec<Seen> = reply
                    .siblings
                    .iter()
                    .map(|s| decode_value(&s.value))
                    .collect();
                let values: Vec<Value> = reply
                    .siblings
                    .iter()
                    .zip(&seen)
                    .map(|(s, seen)| seen_json(s, seen.clone()))
                    .collect();
                self.record(
                    "ok",
                    "get",
                    json!({"key": name, "values": values, "context": reply.context.to_string()}),
                );
                let result = ReadResult {
                    seen,
                    context: reply.context,
                };
                self.last_read.insert(key, result.clone());
                Some(result)
            }
            Err(e) => {
                self.complete_error("get", &name, Value::Null, &e);
                None
            }
        }
    }

    /// A put (or delete, `value` null) of `key` through `node` with the context of `read`.
    pub async fn write(&mut self, key: u32, node: u32, value: Value, read: Option<&ReadResult>) {
        let name = self.config.key_name(key);
        self.seq += 1;
        let write = format!("p{}-{}", self.process, self.seq);
        let delete = value.is_null();
        let f = if delete { "delete" } else { "put" };
        let (context, observed) = match read {
            Some(r) => {
                let observed: BTreeSet<&str> =
                    r.seen.iter().filter_map(|s| s.write.as_deref()).collect();
                (
                    r.context.clone(),
                    observed.into_iter().map(str::to_string).collect(),
                )
            }
            None => (VClock::new(), Vec::new()),
        };
        self.record(
            "invoke",
            f,
            json!({"key": name, "node": node_name(node), "write": write, "value": value,
                   "observed": observed, "context": context.to_string()}),
        );
        let bytes = encode_value(&write, &value);
        let client = self.client(node);
        let result = if delete {
            client.delete(name.as_bytes(), &context, bytes).await
        } else {
            client.put(name.as_bytes(), bytes, &context).await
        };
        match result {
            Ok(reply) => {
                let mut fields =
                    json!({"key": name, "write": write, "clock": clock_json(&reply.clock)});
                if reply.dot.is_some() {
                    fields["dot"] = dot_json(&reply.dot);
                }
                self.record("ok", f, fields);
            }
            Err(e) => self.complete_error(f, &name, json!({"write": write}), &e),
        }
    }

    /// Runs one planned operation.
    pub async fn run_op(&mut self, op: &ClientOp) {
        tokio::time::sleep(Duration::from_millis(op.think_ms as u64)).await;
        match (self.config.workload, op.kind) {
            (_, OpKind::Read) => {
                self.read(op.key, op.node).await;
            }
            (Workload::Cart, _) => {
                // Read, merge the siblings by union (application-side reconciliation), add one
                // new item (this write's own id), and put with the read's context.
                if let Some(read) = self.read(op.key, op.node).await {
                    let mut items: BTreeSet<String> = BTreeSet::new();
                    for s in &read.seen {
                        if let Value::Array(list) = &s.value {
                            items
                                .extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
                        }
                    }
                    items.insert(format!("p{}-{}", self.process, self.seq + 1));
                    let value = json!(items);
                    self.write(op.key, op.node, value, Some(&read)).await;
                }
            }
            (Workload::Register, OpKind::Update) => {
                let read = self.last_read.get(&op.key).cloned();
                let id = json!(format!("p{}-{}", self.process, self.seq + 1));
                self.write(op.key, op.node, id, read.as_ref()).await;
            }
            (Workload::Register, OpKind::BlindPut) => {
                let id = json!(format!("p{}-{}", self.process, self.seq + 1));
                self.write(op.key, op.node, id, None).await;
            }
            (Workload::Register, OpKind::Delete) => {
                if let Some(read) = self.last_read.get(&op.key).cloned() {
                    self.write(op.key, op.node, Value::Null, Some(&read)).await;
                } else {
                    self.read(op.key, op.node).await;
                }
            }
        }
    }

    /// The process number in use now.
    pub fn process(&self) -> u64 {
        self.process
    }
}

/// A node's name from its index.
pub fn node_name(node: u32) -> String {
    format!("n{}", node + 1)
}
