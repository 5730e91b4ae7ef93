//! The history, folded in one streaming pass into what the report draws: a compact record per client
//! operation (for the timeline and the plots), the nemesis events and phases, and, for the few keys
//! that have anomalies, every operation in full (for the causality drawings and the per-key view).
//!
//! A 100,000-operation history has values that grow with the cart, so events are never all kept:
//! only keys named in `tracked` keep their write ids, versions and siblings, and values are cut to a
//! short summary.

use dynamo_checker::history::{
    Body, ClientF, Event, Op, Outcome, Phase, ProcessNo, Sibling, Version,
};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// The longest value summary kept, in characters.
pub const VALUE_SUMMARY_CHARS_MAX: usize = 80;

/// One client operation, compactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OpRec {
    /// The client process.
    pub process: ProcessNo,
    /// get, put or delete.
    pub f: ClientF,
    /// How it ended; `None` when the history ended first.
    pub outcome: Option<Outcome>,
    /// Index into [`Digest::keys`].
    pub key: u32,
    /// When it was invoked, ns.
    pub start_ns: u64,
    /// When it completed, ns.
    pub end_ns: Option<u64>,
    /// Invoked after `phase: final`: one of the final reads.
    pub is_final: bool,
}

impl OpRec {
    /// Completion minus invocation, when it completed.
    pub fn latency_ns(&self) -> Option<u64> {
        self.end_ns.map(|e| e.saturating_sub(self.start_ns))
    }
}

/// A nemesis event.
#[derive(Clone, Debug, PartialEq)]
pub struct NemesisRec {
    pub time_ns: u64,
    pub f: String,
    pub value: Value,
}

/// One sibling, without its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SibRec {
    pub write: String,
    pub version: Option<Version>,
    /// A tombstone (`value: null`, only in replica states).
    pub tombstone: bool,
}

impl SibRec {
    fn of(s: &Sibling) -> SibRec {
        SibRec {
            write: s.write.clone(),
            version: s.version.clone(),
            tombstone: s.value.is_null(),
        }
    }
}

/// One operation of a tracked key, in full (values summarised).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyOp {
    /// The index of its invoke event.
    pub index: u64,
    pub process: ProcessNo,
    pub f: ClientF,
    pub outcome: Option<Outcome>,
    pub is_final: bool,
    pub invoked_ns: u64,
    pub completed_ns: Option<u64>,
    /// The node the request went to.
    pub node: Option<String>,
    /// For a write: its id, what its client had read, and a summary of its value.
    pub write: Option<String>,
    pub observed: Vec<String>,
    pub value: String,
    /// For an ok write: the version the store made.
    pub version: Option<Version>,
    /// For an ok read: the siblings returned.
    pub siblings: Vec<SibRec>,
}

/// A replica's final state of a tracked key.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRec {
    pub index: u64,
    pub node: String,
    pub siblings: Vec<SibRec>,
}

/// Everything kept about a tracked key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyData {
    /// Its operations in invoke order.
    pub ops: Vec<KeyOp>,
    pub replicas: Vec<ReplicaRec>,
}

impl KeyData {
    /// Its writes (puts and deletes), in invoke order.
    pub fn writes(&self) -> impl Iterator<Item = &KeyOp> {
        self.ops.iter().filter(|o| o.write.is_some())
    }
}

/// The history as the report needs it.
#[derive(Clone, Debug, Default)]
pub struct Digest {
    /// The `config` event's value.
    pub config: Option<Value>,
    /// Client operations in invoke order.
    pub ops: Vec<OpRec>,
    /// Key names; `OpRec::key` indexes this.
    pub keys: Vec<String>,
    pub nemesis: Vec<NemesisRec>,
    pub heal_ns: Option<u64>,
    pub final_ns: Option<u64>,
    /// The time of the last event.
    pub end_ns: u64,
    pub events: u64,
    /// Ok reads by number of siblings: 0, 1, 2, 3, 4+.
    pub siblings_per_read: [usize; 5],
    /// The tracked keys' operations.
    pub tracked: std::collections::BTreeMap<String, KeyData>,
}

/// Where a pending operation lives.
struct Pending {
    op: usize,
    tracked: Option<usize>,
}

/// A short, single-line summary of a value: a cart's item list is cut to its first items and count.
pub fn summarize_value(v: &Value) -> String {
    let text = match v {
        Value::Null => "null (delete)".to_owned(),
        Value::Array(items) if items.len() > 4 => {
            let first: Vec<String> = items.iter().take(3).map(short).collect();
            format!("[{}, … {} items]", first.join(", "), items.len())
        }
        Value::Array(items) => {
            let all: Vec<String> = items.iter().map(short).collect();
            format!("[{}]", all.join(", "))
        }
        other => short(other),
    };
    cut(&text, VALUE_SUMMARY_CHARS_MAX)
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

impl Digest {
    /// Folds events (in file order) into a digest, keeping full detail for the `tracked` keys.
    pub fn ingest(events: impl IntoIterator<Item = Event>, tracked: &BTreeSet<String>) -> Digest {
        let mut d = Digest::default();
        for key in tracked {
            d.tracked.insert(key.clone(), KeyData::default());
        }
        let mut key_ids: HashMap<String, u32> = HashMap::new();
        let mut pending: HashMap<ProcessNo, Pending> = HashMap::new();
        for event in events {
            d.events += 1;
            d.end_ns = d.end_ns.max(event.time);
            match event.body {
                Body::Config(v) => d.config = Some(v),
                Body::Phase(Phase::Heal) => d.heal_ns = Some(event.time),
                Body::Phase(Phase::Final) => d.final_ns = Some(event.time),
                Body::Phase(Phase::Other(_)) => {}
                Body::Nemesis { f, value } => d.nemesis.push(NemesisRec {
                    time_ns: event.time,
                    f,
                    value,
                }),
                Body::ReplicaState(state) => {
                    if let Some(data) = d.tracked.get_mut(&state.key) {
                        data.replicas.push(ReplicaRec {
                            index: event.index,
                            node: state.node,
                            siblings: state.values.iter().map(SibRec::of).collect(),
                        });
                    }
                }
                Body::Invoke { process, op } => {
                    let key_name = op.key();
                    let key = match key_ids.get(key_name) {
                        Some(&k) => k,
                        None => {
                            let k = d.keys.len() as u32;
                            d.keys.push(key_name.to_owned());
                            key_ids.insert(key_name.to_owned(), k);
                            k
                        }
                    };
                    let is_final = d.final_ns.is_some();
                    d.ops.push(OpRec {
                        process,
                        f: op.f(),
                        outcome: None,
                        key,
                        start_ns: event.time,
                        end_ns: None,
                        is_final,
                    });
                    let tracked = d.tracked.get_mut(key_name).map(|data| {
                        let (node, write, observed, value) = match &op {
                            Op::Get { node, .. } => (node.clone(), None, Vec::new(), String::new()),
                            Op::Put(w) | Op::Delete(w) => (
                                w.node.clone(),
                                Some(w.write.clone()),
                                w.observed.clone(),
                                summarize_value(&w.value),
                            ),
                        };
                        data.ops.push(KeyOp {
                            index: event.index,
                            process,
                            f: op.f(),
                            outcome: None,
                            is_final,
                            invoked_ns: event.time,
                            completed_ns: None,
                            node,
                            write,
                            observed,
                            value,
                            version: None,
                            siblings: Vec::new(),
                        });
                        data.ops.len() - 1
                    });
                    pending.insert(
                        process,
                        Pending {
                            op: d.ops.len() - 1,
                            tracked,
                        },
                    );
                }
                Body::Complete(c) => {
                    if c.outcome == Outcome::Ok
                        && c.f == ClientF::Get
                        && let Some(values) = &c.values
                    {
                        d.siblings_per_read[values.len().min(4)] += 1;
                    }
                    let Some(p) = pending.remove(&c.process) else {
                        continue;
                    };
                    let rec = &mut d.ops[p.op];
                    rec.outcome = Some(c.outcome);
                    rec.end_ns = Some(event.time);
                    if let (Some(i), Some(data)) = (p.tracked, d.tracked.get_mut(&c.key)) {
                        let op = &mut data.ops[i];
                        op.outcome = Some(c.outcome);
                        op.completed_ns = Some(event.time);
                        op.version = c.version.clone();
                        if let Some(values) = &c.values {
                            op.siblings = values.iter().map(SibRec::of).collect();
                        }
                    }
                }
            }
        }
        d
    }

    /// The name of a key index.
    pub fn key_name(&self, key: u32) -> &str {
        &self.keys[key as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_checker::history::{Completion, WriteOp};
    use serde_json::json;

    fn ev(index: u64, time: u64, body: Body) -> Event {
        Event { index, time, body }
    }

    fn put(process: ProcessNo, key: &str, write: &str, observed: &[&str]) -> Body {
        Body::Invoke {
            process,
            op: Op::Put(WriteOp {
                key: key.into(),
                node: Some("n1".into()),
                write: write.into(),
                value: json!([write]),
                observed: observed.iter().map(|s| s.to_string()).collect(),
                context: None,
            }),
        }
    }

    fn done(process: ProcessNo, key: &str, f: ClientF, outcome: Outcome) -> Body {
        Body::Complete(Completion {
            process,
            outcome,
            f,
            key: key.into(),
            write: None,
            version: None,
            values: (f == ClientF::Get).then(Vec::new),
            context: None,
        })
    }

    #[test]
    fn tracked_keys_keep_detail_and_others_only_records() {
        let events = vec![
            ev(0, 0, Body::Config(json!({"seed": 1}))),
            ev(1, 10, put(1, "a", "p1-1", &[])),
            ev(2, 12, put(2, "b", "p2-1", &[])),
            ev(3, 15, done(1, "a", ClientF::Put, Outcome::Ok)),
            ev(4, 20, done(2, "b", ClientF::Put, Outcome::Info)),
            ev(5, 30, Body::Phase(Phase::Final)),
            ev(
                6,
                31,
                Body::Invoke {
                    process: 3,
                    op: Op::Get {
                        key: "a".into(),
                        node: None,
                    },
                },
            ),
            ev(7, 33, done(3, "a", ClientF::Get, Outcome::Ok)),
        ];
        let tracked: BTreeSet<String> = ["a".to_string()].into();
        let d = Digest::ingest(events, &tracked);
        assert_eq!(d.ops.len(), 3);
        assert_eq!(d.keys, vec!["a", "b"]);
        assert_eq!(d.ops[1].outcome, Some(Outcome::Info));
        assert_eq!(d.ops[0].latency_ns(), Some(5));
        assert!(d.ops[2].is_final && !d.ops[0].is_final);
        assert_eq!(d.siblings_per_read, [1, 0, 0, 0, 0]);
        let a = &d.tracked["a"];
        assert_eq!(a.ops.len(), 2);
        assert_eq!(a.writes().count(), 1);
        assert_eq!(a.ops[0].write.as_deref(), Some("p1-1"));
        assert!(!d.tracked.contains_key("b"));
        assert_eq!(d.end_ns, 33);
    }

    #[test]
    fn long_cart_values_are_summarised() {
        let items: Vec<String> = (0..50).map(|i| format!("p1-{i}")).collect();
        assert_eq!(
            summarize_value(&json!(items)),
            "[p1-0, p1-1, p1-2, … 50 items]"
        );
        assert_eq!(summarize_value(&json!("p3-4")), "p3-4");
        assert_eq!(summarize_value(&Value::Null), "null (delete)");
        assert_eq!(cut("abcdef", 4), "abc…");
    }
}
