//! A correct Dynamo store, modelled just enough to generate valid histories with siblings and faults.
//!
//! Keys live on N=3 replicas of a ring of 5 nodes. Versions are dotted version vectors: a put with
//! context C at coordinator n gets the dot (n, next counter of n for the key) and clock C, and replaces
//! exactly the siblings whose dots C covers. Replication is state-based, as Riak's: the coordinator
//! sends its whole sibling set, so no replica holds a node's later dot without its earlier ones (a read
//! context joined from such a gap would claim events it never saw). A put is stored at once on W=2
//! replicas; the third copy arrives some steps later (or at the heal), so reads from R=2 replicas can
//! be stale. Puts fail (not
//! stored) or end info (stored or not) at random; a process whose operation ends info retires and a
//! new process number takes its place. Clients mostly read a key and then write it with that read's
//! context, sometimes write blind, sometimes delete what they read. After the operations: a heal,
//! full anti-entropy, one final read per key, and every replica's state.
//!
//! The history is v2 (`history_format: 2`): reads return tombstones, and a write based on a read lists
//! every sibling it returned, tombstones included, in `observed`. With `Params::format` 1 it is a v1
//! history instead: reads omit tombstones, and a write's `context` is its clock as a string
//! `node=counter,...`, so that the checker's v1 substitute can see the deletes it covers.
//!
//! With `Params::bug` set it makes one of a few deliberate mistakes instead (see [`Bug`]).
//!
//! It does not model the network, node crashes, hinted handoff or membership: only the effects the
//! checker judges (which versions exist where, and when clients saw them). Used by the property test
//! and the large benchmark; nothing here may depend on a random source other than the seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use dynamo_checker::history::{
    Body, ClientF, Clock, Completion, Dot, Event, Op, Outcome, Phase, ReplicaState, Sibling,
    Version, WriteOp,
};
use serde_json::{Value, json};

/// SplitMix64: a small, seedable generator, so that the model needs no RNG crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    /// Client operations before the final reads.
    pub ops: usize,
    pub clients: usize,
    pub keys: usize,
    /// A share `hot_share` of operations goes to the first `hot_keys` keys (to make siblings).
    pub hot_keys: usize,
    pub hot_share: f64,
    /// `cart` or `register`.
    pub workload: &'static str,
    pub p_blind: f64,
    pub p_delete: f64,
    pub p_fail: f64,
    pub p_info: f64,
    /// Chance that the third replica's copy is delayed (else it is stored at once).
    pub p_lag: f64,
    /// The most steps a delayed copy waits.
    pub lag_steps_max: u64,
    /// Chance that a read hears from one replica only (a sloppy read during a fault): it may be stale.
    pub p_sloppy: f64,
    /// A deliberate mistake to make, to prove the checker catches it; `None` for a correct store.
    pub bug: Option<Bug>,
    /// The history format to write: 2 (reads return tombstones) or 1.
    pub format: u8,
}

/// Mistakes the model can make on purpose (a few of DESIGN.md's deliberate bugs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// Keep only the newest of concurrent siblings (last writer wins by store time).
    Lww,
    /// The paper's per-version vector clocks, no dots: a new version's clock is its context with the
    /// coordinator's entry set to the highest counter it holds for the key plus one, and it replaces
    /// every version it dominates.
    NaiveClock,
    /// Replicas that missed a write never get it: no delayed copies, no anti-entropy.
    NoRepair,
    /// A put is acknowledged once the coordinator stored it, before W replicas hold it; the other
    /// copies arrive later.
    EarlyAck,
}

impl Params {
    pub fn small(seed: u64) -> Params {
        Params {
            seed,
            ops: 200,
            clients: 4,
            keys: 3,
            hot_keys: 1,
            hot_share: 0.5,
            workload: "register",
            p_blind: 0.15,
            p_delete: 0.1,
            p_fail: 0.05,
            p_info: 0.05,
            p_lag: 0.5,
            lag_steps_max: 20,
            p_sloppy: 0.1,
            bug: None,
            format: 2,
        }
    }
}

const NODES: usize = 5;
const REPLICAS: usize = 3;
const WRITE_QUORUM: usize = 2;
const READ_QUORUM: usize = 2;

fn node_name(n: usize) -> String {
    format!("n{}", n + 1)
}

fn key_name(k: usize) -> String {
    format!("k{k}")
}

/// A stored version. Clocks map node number to counter.
#[derive(Debug, Clone)]
struct Ver {
    write: String,
    value: Value,
    /// `None` for the naive clocks of `Bug::NaiveClock` (the clock then holds the version's own event).
    dot: Option<(usize, u64)>,
    clock: BTreeMap<usize, u64>,
    /// When it was stored, for `Bug::Lww`.
    stamp: u64,
}

impl Ver {
    /// Whether this version supersedes `other`: its context covers other's dot, or (without dots)
    /// its clock dominates other's.
    fn supersedes(&self, other: &Ver) -> bool {
        match other.dot {
            Some((n, c)) => self.clock.get(&n).is_some_and(|&k| k >= c),
            None => {
                other
                    .clock
                    .iter()
                    .all(|(n, c)| self.clock.get(n).is_some_and(|k| k >= c))
                    && self.clock != other.clock
            }
        }
    }

    fn version(&self) -> Version {
        Version {
            dot: self.dot.map(|(n, c)| Dot::new(node_name(n), c)),
            clock: self
                .clock
                .iter()
                .map(|(&n, &c)| (node_name(n), c))
                .collect::<Clock>(),
        }
    }

    fn sibling(&self) -> Sibling {
        Sibling {
            write: self.write.clone(),
            value: self.value.clone(),
            version: Some(self.version()),
        }
    }
}

/// Merges version `v` into a replica's sibling set: drop it if it is there already or a sibling
/// supersedes it, else remove the siblings it supersedes and add it.
fn merge(set: &mut Vec<Ver>, v: &Ver, bug: Option<Bug>) {
    if set.iter().any(|s| s.write == v.write || s.supersedes(v)) {
        return;
    }
    set.retain(|s| !v.supersedes(s));
    set.push(v.clone());
    if bug == Some(Bug::Lww) && set.len() > 1 {
        let newest = set
            .iter()
            .max_by_key(|s| s.stamp)
            .cloned()
            .expect("non-empty");
        set.clear();
        set.push(newest);
    }
}

#[derive(Debug, Default)]
struct KeyState {
    replicas: [Vec<Ver>; REPLICAS],
    /// Next counter per coordinator node, for this key.
    counters: [u64; NODES],
    touched: bool,
}

/// What a client remembers of its last read.
#[derive(Debug, Clone)]
struct ReadMemo {
    key: usize,
    observed: Vec<String>,
    context: BTreeMap<usize, u64>,
    items: Vec<String>,
}

#[derive(Debug, Clone)]
enum Pending {
    Get { key: usize },
    Put(PendingWrite),
}

/// A put or delete in flight.
#[derive(Debug, Clone)]
struct PendingWrite {
    key: usize,
    write: String,
    delete: bool,
    value: Value,
    context: BTreeMap<usize, u64>,
}

#[derive(Debug)]
struct Client {
    process: u64,
    busy: Option<Pending>,
    memo: Option<ReadMemo>,
    writes: u64,
}

/// The model and its output.
pub struct Model<'a> {
    p: Params,
    rng: Rng,
    keys: Vec<KeyState>,
    clients: Vec<Client>,
    next_process: u64,
    /// Delayed copies: (step, sequence, key, replica slot, sibling set).
    lagging: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    step: u64,
    index: u64,
    time: u64,
    emit: &'a mut dyn FnMut(Event),
}

/// A delayed copy: (due step, sequence, key, replica slot, sibling set).
type Delayed = (u64, u64, usize, usize, SetBox);

/// A sibling set, ordered only by the heap's other fields.
#[derive(Debug, Clone)]
struct SetBox(Vec<Ver>);

impl PartialEq for SetBox {
    fn eq(&self, _: &SetBox) -> bool {
        true
    }
}
impl Eq for SetBox {}
impl PartialOrd for SetBox {
    fn partial_cmp(&self, o: &SetBox) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for SetBox {
    fn cmp(&self, _: &SetBox) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// The preference list of a key: 3 consecutive nodes from a fixed hash of the key number.
fn preference(key: usize) -> [usize; REPLICAS] {
    let first = (key.wrapping_mul(2_654_435_761) >> 7) % NODES;
    [first, (first + 1) % NODES, (first + 2) % NODES]
}

/// Generates a history, calling `emit` with each event in order.
pub fn generate(p: Params, emit: &mut dyn FnMut(Event)) {
    let mut m = Model {
        rng: Rng::new(p.seed),
        keys: (0..p.keys).map(|_| KeyState::default()).collect(),
        clients: Vec::new(),
        next_process: 0,
        lagging: BinaryHeap::new(),
        seq: 0,
        step: 0,
        index: 0,
        time: 0,
        emit,
        p,
    };
    m.run();
}

/// Generates a history into JSONL text.
pub fn jsonl(p: Params) -> String {
    let mut out = String::new();
    generate(p, &mut |e| {
        out.push_str(&serde_json::to_string(&e).expect("events serialise"));
        out.push('\n');
    });
    out
}

impl Model<'_> {
    fn out(&mut self, body: Body) {
        self.index += 1;
        self.time += 1_000 + self.rng.below(500_000);
        (self.emit)(Event {
            index: self.index,
            time: self.time,
            body,
        });
    }

    fn run(&mut self) {
        // Sloppy reads (one replica) are what a sloppy quorum does during a fault: the config says so.
        let mut config = json!({"nodes": (0..NODES).map(node_name).collect::<Vec<_>>(), "n": REPLICAS,
            "r": READ_QUORUM, "w": WRITE_QUORUM, "workload": self.p.workload, "seed": self.p.seed,
            "nemesis": ["partition"], "fsync": {"policy": "always"},
            "node": {"sloppy_quorum": self.p.p_sloppy > 0.0}});
        if self.p.format == 2 {
            config["history_format"] = json!(2);
        }
        self.out(Body::Config(config));
        for _ in 0..self.p.clients {
            let process = self.new_process();
            self.clients.push(Client {
                process,
                busy: None,
                memo: None,
                writes: 0,
            });
        }
        let mut invoked = 0;
        let mut partitioned = false;
        while invoked < self.p.ops || self.clients.iter().any(|c| c.busy.is_some()) {
            self.step += 1;
            self.deliver(false);
            if self.rng.below(2_000) == 0 {
                let f = if partitioned {
                    "partition-stop"
                } else {
                    "partition-start"
                };
                partitioned = !partitioned;
                self.out(Body::Nemesis {
                    f: f.to_owned(),
                    value: json!({"groups": [["n1","n2"],["n3","n4","n5"]]}),
                });
            }
            let c = self.rng.below(self.clients.len() as u64) as usize;
            if self.clients[c].busy.is_some() {
                self.complete(c);
            } else if invoked < self.p.ops {
                self.invoke(c);
                invoked += 1;
            }
        }
        if partitioned {
            self.out(Body::Nemesis {
                f: "partition-stop".to_owned(),
                value: json!({}),
            });
        }
        self.out(Body::Phase(Phase::Heal));
        self.deliver(true);
        let bug = self.p.bug;
        for k in 0..self.keys.len() {
            if bug == Some(Bug::NoRepair) {
                break;
            }
            let mut all: Vec<Ver> = Vec::new();
            for r in 0..REPLICAS {
                for v in self.keys[k].replicas[r].clone() {
                    merge(&mut all, &v, bug);
                }
            }
            for r in 0..REPLICAS {
                for v in &all {
                    merge(&mut self.keys[k].replicas[r], v, bug);
                }
            }
        }
        self.out(Body::Phase(Phase::Final));
        for k in 0..self.keys.len() {
            if !self.keys[k].touched {
                continue;
            }
            let process = self.new_process();
            let key = key_name(k);
            self.out(Body::Invoke {
                process: process.into(),
                op: Op::Get {
                    key: key.clone(),
                    node: Some(node_name(preference(k)[0])),
                },
            });
            let (values, _) = self.read(k, true);
            self.out(Body::Complete(Completion {
                process: process.into(),
                outcome: Outcome::Ok,
                f: ClientF::Get,
                key,
                write: None,
                version: None,
                values: Some(values.iter().map(Ver::sibling).collect()),
                context: Some(json!("final")),
            }));
        }
        for k in 0..self.keys.len() {
            if !self.keys[k].touched {
                continue;
            }
            for (slot, node) in preference(k).into_iter().enumerate() {
                let values = self.keys[k].replicas[slot]
                    .iter()
                    .map(Ver::sibling)
                    .collect();
                self.out(Body::ReplicaState(ReplicaState {
                    key: key_name(k),
                    node: node_name(node),
                    values,
                }));
            }
        }
    }

    fn new_process(&mut self) -> u64 {
        self.next_process += 1;
        self.next_process - 1
    }

    fn pick_key(&mut self) -> usize {
        if self.rng.chance(self.p.hot_share) {
            self.rng.below(self.p.hot_keys as u64) as usize
        } else {
            self.rng.below(self.p.keys as u64) as usize
        }
    }

    fn invoke(&mut self, c: usize) {
        let process = self.clients[c].process;
        let memo = self.clients[c].memo.take();
        let (pending, observed) = match memo {
            Some(memo) if !self.rng.chance(0.2) => {
                let delete = self.rng.chance(self.p.p_delete) && !memo.observed.is_empty();
                (
                    self.write(c, memo.key, delete, memo.context, memo.items),
                    memo.observed,
                )
            }
            _ if self.rng.chance(self.p.p_blind) => {
                let key = self.pick_key();
                (
                    self.write(c, key, false, BTreeMap::new(), Vec::new()),
                    Vec::new(),
                )
            }
            _ => (
                Pending::Get {
                    key: self.pick_key(),
                },
                Vec::new(),
            ),
        };
        let op = match &pending {
            Pending::Get { key } => Op::Get {
                key: key_name(*key),
                node: Some(node_name(preference(*key)[0])),
            },
            Pending::Put(put) => {
                let context = if self.p.format == 1 {
                    let pairs: Vec<String> = put
                        .context
                        .iter()
                        .map(|(&n, &c)| format!("{}={c}", node_name(n)))
                        .collect();
                    json!(pairs.join(","))
                } else {
                    json!("ctx")
                };
                let w = WriteOp {
                    key: key_name(put.key),
                    node: Some(node_name(preference(put.key)[0])),
                    write: put.write.clone(),
                    value: put.value.clone(),
                    observed,
                    context: Some(context),
                };
                if put.delete {
                    Op::Delete(w)
                } else {
                    Op::Put(w)
                }
            }
        };
        self.clients[c].busy = Some(pending);
        self.out(Body::Invoke {
            process: process.into(),
            op,
        });
    }

    /// Prepares a put or delete with the context of the read it is based on (empty for a blind put).
    fn write(
        &mut self,
        c: usize,
        key: usize,
        delete: bool,
        context: BTreeMap<usize, u64>,
        mut items: Vec<String>,
    ) -> Pending {
        let client = &mut self.clients[c];
        client.writes += 1;
        let write = format!("p{}-{}", client.process, client.writes);
        let value = if delete {
            Value::Null
        } else if self.p.workload == "cart" {
            items.push(write.clone());
            items.sort();
            items.dedup();
            json!(items)
        } else {
            json!(write)
        };
        Pending::Put(PendingWrite {
            key,
            write,
            delete,
            value,
            context,
        })
    }

    fn complete(&mut self, c: usize) {
        let process = self.clients[c].process;
        let pending = self.clients[c].busy.take().expect("busy");
        let roll = self.rng.next() % 1000;
        let outcome = if (roll as f64) < self.p.p_fail * 1000.0 {
            Outcome::Fail
        } else if (roll as f64) < (self.p.p_fail + self.p.p_info) * 1000.0 {
            Outcome::Info
        } else {
            Outcome::Ok
        };
        let completion = match pending {
            Pending::Get { key } => {
                let mut completion = Completion {
                    process: process.into(),
                    outcome,
                    f: ClientF::Get,
                    key: key_name(key),
                    write: None,
                    version: None,
                    values: None,
                    context: None,
                };
                if outcome == Outcome::Ok {
                    let (values, context) = self.read(key, false);
                    let items = if self.p.workload == "cart" {
                        let mut items: Vec<String> = values
                            .iter()
                            .flat_map(|v| v.value.as_array().cloned().unwrap_or_default())
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect();
                        items.sort();
                        items.dedup();
                        items
                    } else {
                        Vec::new()
                    };
                    let observed = values.iter().map(|v| v.write.clone()).collect();
                    completion.values = Some(values.iter().map(Ver::sibling).collect());
                    completion.context = Some(json!("ctx"));
                    self.clients[c].memo = Some(ReadMemo {
                        key,
                        observed,
                        context,
                        items,
                    });
                }
                completion
            }
            Pending::Put(put) => {
                let PendingWrite {
                    key,
                    write,
                    delete,
                    value,
                    context,
                } = put;
                let applied = match outcome {
                    Outcome::Ok => true,
                    Outcome::Fail => false,
                    Outcome::Info => self.rng.chance(0.5),
                };
                let version = applied
                    .then(|| self.store(key, &write, value, context, outcome == Outcome::Ok));
                Completion {
                    process: process.into(),
                    outcome,
                    f: if delete {
                        ClientF::Delete
                    } else {
                        ClientF::Put
                    },
                    key: key_name(key),
                    write: Some(write),
                    version: version
                        .filter(|_| outcome == Outcome::Ok)
                        .map(|v| v.version()),
                    values: None,
                    context: None,
                }
            }
        };
        self.out(Body::Complete(completion));
        if outcome == Outcome::Info {
            let process = self.new_process();
            self.clients[c] = Client {
                process,
                busy: None,
                memo: None,
                writes: 0,
            };
        }
    }

    /// Reads R replicas (all of them for a final read, one for a sloppy read): the merged siblings
    /// (in v1 without tombstones), and the context (the join of every merged version's clock and dot,
    /// tombstones included).
    fn read(&mut self, key: usize, all: bool) -> (Vec<Ver>, BTreeMap<usize, u64>) {
        let slots: Vec<usize> = if all {
            (0..REPLICAS).collect()
        } else if self.rng.chance(self.p.p_sloppy) {
            vec![self.rng.below(REPLICAS as u64) as usize]
        } else {
            let skip = self.rng.below(REPLICAS as u64) as usize;
            (0..REPLICAS).filter(|&s| s != skip).collect()
        };
        let mut merged: Vec<Ver> = Vec::new();
        for slot in slots {
            for v in &self.keys[key].replicas[slot] {
                merge(&mut merged, v, self.p.bug);
            }
        }
        let mut context: BTreeMap<usize, u64> = BTreeMap::new();
        for v in &merged {
            for (&n, &c) in v.clock.iter().chain(v.dot.as_ref().map(|(n, c)| (n, c))) {
                let e = context.entry(n).or_default();
                *e = (*e).max(c);
            }
        }
        if self.p.format == 1 {
            merged.retain(|v| !v.value.is_null());
        }
        (merged, context)
    }

    /// Stores a new version at the key's first node, then sends that node's sibling set to the others:
    /// at once to W-1 of them (none when `quorum` is false: an info write may have reached only the
    /// coordinator), to the rest now or later.
    fn store(
        &mut self,
        key: usize,
        write: &str,
        value: Value,
        context: BTreeMap<usize, u64>,
        quorum: bool,
    ) -> Ver {
        let coordinator = preference(key)[0];
        let bug = self.p.bug;
        let state = &mut self.keys[key];
        state.touched = true;
        let (dot, clock) = if bug == Some(Bug::NaiveClock) {
            let held = state.replicas[0]
                .iter()
                .filter_map(|s| s.clock.get(&coordinator))
                .max()
                .copied();
            let highest = held
                .unwrap_or(0)
                .max(context.get(&coordinator).copied().unwrap_or(0));
            let mut clock = context;
            clock.insert(coordinator, highest + 1);
            (None, clock)
        } else {
            state.counters[coordinator] += 1;
            (Some((coordinator, state.counters[coordinator])), context)
        };
        let v = Ver {
            write: write.to_owned(),
            value,
            dot,
            clock,
            stamp: self.time,
        };
        merge(&mut self.keys[key].replicas[0], &v, bug);
        let state = self.keys[key].replicas[0].clone();
        let now = if quorum && bug != Some(Bug::EarlyAck) {
            WRITE_QUORUM
        } else {
            1
        };
        for slot in 1..REPLICAS {
            if slot < now || !(bug == Some(Bug::EarlyAck) || self.rng.chance(self.p.p_lag)) {
                for s in &state {
                    merge(&mut self.keys[key].replicas[slot], s, bug);
                }
            } else {
                let at = self.step + 1 + self.rng.below(self.p.lag_steps_max);
                self.seq += 1;
                self.lagging
                    .push(Reverse((at, self.seq, key, slot, SetBox(state.clone()))));
            }
        }
        v
    }

    /// Delivers delayed copies that are due (all of them when `all`).
    fn deliver(&mut self, all: bool) {
        while let Some(Reverse((at, ..))) = self.lagging.peek() {
            if !all && *at > self.step {
                break;
            }
            let Reverse((_, _, key, slot, set)) = self.lagging.pop().expect("peeked");
            if self.p.bug == Some(Bug::NoRepair) {
                continue;
            }
            for v in &set.0 {
                merge(&mut self.keys[key].replicas[slot], v, self.p.bug);
            }
        }
    }
}
