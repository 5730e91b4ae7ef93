//! Helpers for hand-written histories: a builder that writes JSONL lines (index and time assigned in
//! order, 1 ms apart), and a correct store model for generated histories.

#![allow(dead_code)] // Each test file uses a different part.

pub mod model;

use dynamo_checker::{Results, Validity, check, parse_reader, summary};
use serde_json::{Map, Value, json};

/// A version: optional dot, clock.
pub fn ver(dot: Option<(&str, u64)>, clock: &[(&str, u64)]) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some((n, c)) = dot {
        m.insert("dot".into(), json!([n, c]));
    }
    let clock: Map<String, Value> = clock
        .iter()
        .map(|&(n, c)| (n.to_owned(), json!(c)))
        .collect();
    m.insert("clock".into(), Value::Object(clock));
    m
}

/// A sibling of a read or a replica state.
#[derive(Clone)]
pub struct S(Map<String, Value>);

impl S {
    /// A register sibling: its value is its write id.
    pub fn new(write: &str) -> S {
        S::valued(write, json!(write))
    }

    pub fn valued(write: &str, value: Value) -> S {
        let mut m = Map::new();
        m.insert("write".into(), json!(write));
        m.insert("value".into(), value);
        S(m)
    }

    /// A tombstone: `value: null`, named by the delete's write id (v2 reads and replica states).
    pub fn tombstone(write: &str) -> S {
        S::valued(write, Value::Null)
    }

    pub fn with(mut self, version: Map<String, Value>) -> S {
        self.0.extend(version);
        self
    }
}

fn sibs(s: &[S]) -> Value {
    Value::Array(s.iter().map(|s| Value::Object(s.0.clone())).collect())
}

/// Builds a history line by line.
#[derive(Default, Clone)]
pub struct H {
    lines: Vec<Value>,
}

impl H {
    pub fn new() -> H {
        H::default()
    }

    /// Sets the `time` of the last event (by default event i happens at i ms).
    pub fn at(mut self, time_ns: u64) -> H {
        let last = self.lines.last_mut().expect("an event");
        last["time"] = json!(time_ns);
        self
    }

    /// Appends a raw event; `index` and `time` are added when missing.
    pub fn raw(mut self, event: Value) -> H {
        self.lines.push(event);
        self
    }

    /// A v2 config (`history_format: 2`), N=3 R=2 W=2, sloppy quorum, fsync always.
    pub fn config(self, workload: &str) -> H {
        self.config_with(workload, json!({}))
    }

    /// A v2 config with `extra` merged into its value (e.g. `{"tombstone_gc":true}` or
    /// `{"node":{"sloppy_quorum":false}}`).
    pub fn config_with(self, workload: &str, extra: Value) -> H {
        let mut value = json!({"history_format":2,"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,
            "workload":workload,"seed":1,"fsync":{"policy":"always"},"node":{"sloppy_quorum":true}});
        for (k, v) in extra.as_object().expect("an object") {
            value[k] = v.clone();
        }
        self.raw(json!({"process":"harness","type":"info","f":"config","value":value}))
    }

    /// A v1 config: no `history_format`.
    pub fn config_v1(self, workload: &str) -> H {
        self.raw(json!({"process":"harness","type":"info","f":"config",
            "value":{"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,"workload":workload,"seed":1}}))
    }

    /// A put invoke whose value is its write id (the register workload).
    pub fn put(self, p: u64, key: &str, write: &str, observed: &[&str]) -> H {
        self.put_value(p, key, write, json!(write), observed)
    }

    pub fn put_value(self, p: u64, key: &str, write: &str, value: Value, observed: &[&str]) -> H {
        self.raw(
            json!({"process":p,"type":"invoke","f":"put","key":key,"node":"n1",
            "write":write,"value":value,"observed":observed}),
        )
    }

    /// A put invoke with a `context` (a v1 history's clock context, or anything opaque).
    pub fn put_ctx(self, p: u64, key: &str, write: &str, observed: &[&str], context: Value) -> H {
        self.raw(
            json!({"process":p,"type":"invoke","f":"put","key":key,"node":"n1",
            "write":write,"value":write,"observed":observed,"context":context}),
        )
    }

    pub fn delete(self, p: u64, key: &str, write: &str, observed: &[&str]) -> H {
        self.raw(
            json!({"process":p,"type":"invoke","f":"delete","key":key,"node":"n1",
            "write":write,"value":null,"observed":observed}),
        )
    }

    /// The ok of a put (`f` = "put" or "delete"), with the version the store made, if any.
    pub fn ok(
        self,
        p: u64,
        f: &str,
        key: &str,
        write: &str,
        version: Option<Map<String, Value>>,
    ) -> H {
        let mut e = json!({"process":p,"type":"ok","f":f,"key":key,"write":write});
        if let Some(v) = version {
            e.as_object_mut().unwrap().extend(v);
        }
        self.raw(e)
    }

    /// A put that ends `fail` or `info`.
    pub fn end(self, p: u64, outcome: &str, f: &str, key: &str, write: &str) -> H {
        self.raw(json!({"process":p,"type":outcome,"f":f,"key":key,"write":write}))
    }

    pub fn get(self, p: u64, key: &str) -> H {
        self.raw(json!({"process":p,"type":"invoke","f":"get","key":key,"node":"n2"}))
    }

    pub fn ok_get(self, p: u64, key: &str, siblings: &[S]) -> H {
        self.raw(json!({"process":p,"type":"ok","f":"get","key":key,"values":sibs(siblings),"context":"ctx"}))
    }

    pub fn phase(self, name: &str) -> H {
        self.raw(json!({"process":"harness","type":"info","f":"phase","value":name}))
    }

    pub fn nemesis(self, f: &str) -> H {
        self.nemesis_on(f, "n3")
    }

    pub fn nemesis_on(self, f: &str, node: &str) -> H {
        self.raw(json!({"process":"nemesis","type":"info","f":f,"value":{"node":node}}))
    }

    pub fn replica(self, key: &str, node: &str, siblings: &[S]) -> H {
        self.raw(
            json!({"process":"harness","type":"info","f":"replica-state","key":key,"node":node,
            "values":sibs(siblings)}),
        )
    }

    /// The same siblings on replicas n1, n2, n3.
    pub fn replicas(self, key: &str, siblings: &[S]) -> H {
        self.replica(key, "n1", siblings)
            .replica(key, "n2", siblings)
            .replica(key, "n3", siblings)
    }

    /// The history as JSONL.
    pub fn jsonl(&self) -> String {
        let mut out = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            let mut line = line.clone();
            let obj = line.as_object_mut().expect("an event is an object");
            obj.entry("index").or_insert(json!(i as u64 + 1));
            obj.entry("time")
                .or_insert(json!((i as u64 + 1) * 1_000_000));
            out.push_str(&serde_json::to_string(&line).unwrap());
            out.push('\n');
        }
        out
    }

    /// Parses, expecting an error; returns it.
    pub fn parse_error(&self) -> dynamo_checker::ParseError {
        parse_reader(self.jsonl().as_bytes()).expect_err("should not parse")
    }

    /// Parses (panicking on a parse error); returns the parser's warnings.
    pub fn warnings(&self) -> Vec<String> {
        parse_reader(self.jsonl().as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.jsonl()))
            .warnings
    }

    /// Parses (panicking on a parse error) and checks.
    pub fn check(&self) -> Results {
        let parsed = parse_reader(self.jsonl().as_bytes())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.jsonl()));
        check(&parsed.history)
    }
}

/// Asserts the verdict and the exact anomaly and warning types.
#[track_caller]
pub fn expect(r: &Results, valid: Validity, kinds_expected: &[&str]) {
    assert_eq!(
        (r.valid, kinds(r).as_slice()),
        (valid, kinds_expected),
        "{}",
        summary(r)
    );
}

/// The anomaly and warning type names of a result.
pub fn kinds(r: &Results) -> Vec<&'static str> {
    r.anomalies
        .keys()
        .chain(r.warnings.keys())
        .map(|k| k.as_str())
        .collect()
}

/// The ids of the lost writes a result names, in its order.
pub fn lost_ids(r: &Results) -> Vec<String> {
    r.anomalies
        .get(&dynamo_checker::Kind::LostWrite)
        .into_iter()
        .flatten()
        .map(|f| match f {
            dynamo_checker::Finding::LostWrite(l) => l.write.write.clone(),
            _ => unreachable!("a lost-write finding"),
        })
        .collect()
}

/// A sibling `w` with its dot and clock.
pub fn sib(w: &str, dot: (&str, u64), clock: &[(&str, u64)]) -> S {
    S::new(w).with(ver(Some(dot), clock))
}

/// A tombstone `w` with its dot and clock.
pub fn tomb(w: &str, dot: (&str, u64), clock: &[(&str, u64)]) -> S {
    S::tombstone(w).with(ver(Some(dot), clock))
}

/// A write `w` by process `p` to key "k" (its value is its id), acknowledged with its version.
pub fn put_ok(
    h: H,
    p: u64,
    w: &str,
    observed: &[&str],
    dot: (&str, u64),
    clock: &[(&str, u64)],
) -> H {
    h.put(p, "k", w, observed)
        .ok(p, "put", "k", w, Some(ver(Some(dot), clock)))
}

/// An acknowledged delete `d` of "k", with its tombstone's version.
pub fn del_ok(
    h: H,
    p: u64,
    d: &str,
    observed: &[&str],
    dot: (&str, u64),
    clock: &[(&str, u64)],
) -> H {
    h.delete(p, "k", d, observed)
        .ok(p, "delete", "k", d, Some(ver(Some(dot), clock)))
}

/// `h` healed, then the final state of "k": `siblings` on every replica.
pub fn finals(h: H, siblings: &[S]) -> H {
    h.phase("heal").phase("final").replicas("k", siblings)
}

// ---- quorum-read-miss around one fault ----

/// A strict quorum (`"node":{"sloppy_quorum":false}`), N=3 R=2 W=2, whose config lists `nodes`
/// (names, or a count).
pub fn strict_nodes(nodes: Value) -> H {
    H::new().config_with(
        "register",
        json!({"nodes": nodes, "node": {"sloppy_quorum": false}}),
    )
}

/// A strict quorum on a cluster of n1..n3 (the replicas of k in [`missed_after`]) and n8, n9
/// (nodes that hold no replica of k).
pub fn strict_cluster() -> H {
    strict_nodes(json!(["n1", "n2", "n3", "n8", "n9"]))
}

/// Under [`strict_cluster`]: a acknowledged on k, then `fault`, then a read of k that returns
/// nothing; replicas n1..n3 hold a.
pub fn missed_after(fault: Value) -> Results {
    missed_after_in(strict_cluster(), fault)
}

/// [`missed_after`] under another config.
pub fn missed_after_in(config: H, fault: Value) -> Results {
    let h = config
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", None)
        .raw(fault)
        .get(2, "k")
        .ok_get(2, "k", &[]);
    h.phase("heal")
        .phase("final")
        .replicas("k", &[S::new("a")])
        .check()
}

/// The strict read's miss is reported (with the stale read it also is).
#[track_caller]
pub fn assert_missed(r: &Results, how: &dyn std::fmt::Display) {
    assert_eq!(
        (r.valid, kinds(r)),
        (Validity::False, vec!["quorum-read-miss", "stale-read"]),
        "{how}: {}",
        summary(r)
    );
}

/// The strict read's miss is excused by a fault on a replica (only the stale read is left).
#[track_caller]
pub fn assert_excused(r: &Results, how: &dyn std::fmt::Display) {
    assert_eq!(
        (r.valid, kinds(r)),
        (Validity::True, vec!["stale-read"]),
        "{how}: {}",
        summary(r)
    );
}
