//! The history recorder: what the harness saw, as JSON Lines in the format of
//! shared/history-format.md (the checker's public interface).
//!
//! Events are appended in the order they happen in simulated time; since turmoil runs every host
//! on one thread in a fixed order, that order (and so the file) is the same for the same seed.

use dynamo_node::version::{Dot, VClock};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Who acted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// A client process.
    Client(u64),
    /// The fault injector.
    Nemesis,
    /// The harness itself (configuration, phases, final replica states).
    Harness,
}

impl Process {
    fn json(self) -> Value {
        match self {
            Process::Client(p) => json!(p),
            Process::Nemesis => json!("nemesis"),
            Process::Harness => json!("harness"),
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    index: u64,
    time: u64,
    process: Value,
    #[serde(rename = "type")]
    kind: &'a str,
    f: &'a str,
    #[serde(flatten)]
    rest: &'a Map<String, Value>,
}

/// Appends history events to an in-memory JSONL buffer.
#[derive(Debug, Default)]
pub struct Recorder {
    buf: Vec<u8>,
    next_index: u64,
    /// Client operations that completed, by type.
    pub ok: u64,
    /// See `ok`.
    pub fail: u64,
    /// See `ok`.
    pub info: u64,
    /// Nemesis events.
    pub faults: u64,
}

impl Recorder {
    /// An empty history.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Appends one event. `fields` must be a JSON object (or null for none).
    pub fn record(&mut self, time_ns: u64, process: Process, kind: &str, f: &str, fields: Value) {
        let rest = match fields {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => panic!("history fields must be an object, not {other}"),
        };
        match (process, kind) {
            (Process::Client(_), "ok") => self.ok += 1,
            (Process::Client(_), "fail") => self.fail += 1,
            (Process::Client(_), "info") => self.info += 1,
            (Process::Nemesis, _) => self.faults += 1,
            _ => {}
        }
        let line = Line {
            index: self.next_index,
            time: time_ns,
            process: process.json(),
            kind,
            f,
            rest: &rest,
        };
        serde_json::to_writer(&mut self.buf, &line).expect("a history line serialises");
        self.buf.push(b'\n');
        self.next_index += 1;
    }

    /// The history so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the history.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A dot as the history writes it: `["n1.5e2a", 4]`.
pub fn dot_json(dot: &Option<Dot>) -> Value {
    match dot {
        Some(d) => json!([d.actor, d.counter]),
        None => Value::Null,
    }
}

/// A clock as the history writes it: `{"n1.5e2a": 4}`.
pub fn clock_json(clock: &VClock) -> Value {
    json!(clock.to_map())
}
