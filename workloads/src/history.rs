//! The history recorder: what the harness saw, as JSON Lines in the format of
//! shared/history-format.md (the checker's public interface).
//!
//! Events are appended in the order they happen in simulated time; since turmoil runs every host
//! on one thread in a fixed order, that order (and so the file) is the same for the same seed.
//!
//! The recorder runs for every client operation, so it writes straight into its buffer: the common
//! fields of a line are serialised from a typed header, and the event's own fields (any value that
//! serialises as a JSON object, typically a `#[derive(Serialize)]` struct of borrowed fields) are
//! spliced into the same object. `#[serde(flatten)]` would do the same, but it buffers every field
//! through serde's generic `Content` tree first, which was most of the recorder's cost.

use dynamo_node::version::{Dot, VClock};
use serde::{Serialize, Serializer};
use std::fmt::Display;

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

/// As the history writes it: a number, `"nemesis"` or `"harness"`.
impl Serialize for Process {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
            Process::Harness => s.serialize_str("harness"),
        }
    }
}

/// The fields every event has, in the order every line starts with.
#[derive(Serialize)]
struct Header<'a> {
    index: u64,
    time: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: &'a str,
    f: &'a str,
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
    /// Model µs per simulated ms (`SimConfig::tick_us`): event times are multiplied by
    /// `tick_us / 1000`; 0 (the default) leaves them as they are.
    tick_us: u64,
}

impl Recorder {
    /// An empty history.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// An empty history whose times are model time: the simulation's, times `tick_us / 1000`.
    pub fn with_tick_us(tick_us: u64) -> Recorder {
        Recorder {
            tick_us,
            ..Recorder::default()
        }
    }

    /// Appends one event. `fields` must serialise as a JSON object (or as null, for none); its
    /// entries follow the common ones in the line.
    pub fn record<F: Serialize + ?Sized>(
        &mut self,
        time_ns: u64,
        process: Process,
        kind: &str,
        f: &str,
        fields: &F,
    ) {
        let line_start = self.buf.len();
        let time = match self.tick_us {
            0 | 1_000 => time_ns,
            tick_us => (u128::from(time_ns) * u128::from(tick_us) / 1_000) as u64,
        };
        let header = Header {
            index: self.next_index,
            time,
            process,
            kind,
            f,
        };
        serde_json::to_writer(&mut self.buf, &header).expect("a history header serialises");
        // Reopen the header's object, then write the fields' object into it: its `{` becomes the
        // separating `,` (or goes, with an empty object or null).
        assert_eq!(self.buf.pop(), Some(b'}'), "a header is a JSON object");
        let fields_start = self.buf.len();
        serde_json::to_writer(&mut self.buf, fields).expect("history fields serialise");
        match &self.buf[fields_start..] {
            b"{}" | b"null" => {
                self.buf.truncate(fields_start);
                self.buf.push(b'}');
            }
            [b'{', .., b'}'] => self.buf[fields_start] = b',',
            other => {
                let text = String::from_utf8_lossy(other).into_owned();
                self.buf.truncate(line_start);
                panic!("history fields must be an object, not {text}");
            }
        }
        self.buf.push(b'\n');
        self.next_index += 1;
        match (process, kind) {
            (Process::Client(_), "ok") => self.ok += 1,
            (Process::Client(_), "fail") => self.fail += 1,
            (Process::Client(_), "info") => self.info += 1,
            (Process::Nemesis, _) => self.faults += 1,
            _ => {}
        }
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
#[derive(Clone, Copy, Debug)]
pub struct DotJson<'a>(pub &'a Dot);

impl Serialize for DotJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let actor: &str = self.0.actor.as_ref();
        (actor, self.0.counter).serialize(s)
    }
}

/// A clock as the history writes it: `{"n1.5e2a": 4}`, in actor order. Written from the clock's
/// entries rather than through its own `Serialize`, which is the node's wire format, not ours.
#[derive(Clone, Copy, Debug)]
pub struct ClockJson<'a>(pub &'a VClock);

impl Serialize for ClockJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries = self.0.iter().map(|(actor, counter)| {
            let actor: &str = actor.as_ref();
            (actor, counter)
        });
        s.collect_map(entries)
    }
}

/// Anything `Display` as a JSON string, formatted straight into the output (no `String` first).
#[derive(Clone, Copy, Debug)]
pub struct DisplayJson<T>(pub T);

impl<T: Display> Serialize for DisplayJson<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(r: &Recorder) -> Vec<&str> {
        std::str::from_utf8(r.bytes()).unwrap().lines().collect()
    }

    #[test]
    fn fields_are_spliced_after_the_common_ones() {
        #[derive(Serialize)]
        struct Fields<'a> {
            key: &'a str,
            values: &'a [u32],
        }
        let mut r = Recorder::new();
        let fields = Fields {
            key: "k\"1",
            values: &[1, 2],
        };
        r.record(5, Process::Client(3), "ok", "get", &fields);
        r.record(
            6,
            Process::Nemesis,
            "info",
            "crash",
            &json!({"value": {"node": "n1"}}),
        );
        r.record(7, Process::Harness, "info", "phase", &json!({}));
        r.record(
            8,
            Process::Nemesis,
            "info",
            "loss-stop",
            &serde_json::Value::Null,
        );
        assert_eq!(
            lines(&r),
            [
                r#"{"index":0,"time":5,"process":3,"type":"ok","f":"get","key":"k\"1","values":[1,2]}"#,
                r#"{"index":1,"time":6,"process":"nemesis","type":"info","f":"crash","value":{"node":"n1"}}"#,
                r#"{"index":2,"time":7,"process":"harness","type":"info","f":"phase"}"#,
                r#"{"index":3,"time":8,"process":"nemesis","type":"info","f":"loss-stop"}"#,
            ]
        );
        assert_eq!((r.ok, r.fail, r.info, r.faults), (1, 0, 0, 2));
    }

    #[test]
    #[should_panic(expected = "must be an object")]
    fn fields_that_are_not_an_object_are_refused() {
        Recorder::new().record(0, Process::Harness, "info", "phase", &"final");
    }

    #[test]
    fn versions_are_written_as_the_format_says() {
        let mut clock = VClock::new();
        clock.raise("n2", 8);
        clock.raise("n1", 4);
        let dot = Dot::new("n2", 9);
        let text = serde_json::to_string(&(DotJson(&dot), ClockJson(&clock))).unwrap();
        assert_eq!(text, r#"[["n2",9],{"n1":4,"n2":8}]"#);
        let context = serde_json::to_string(&DisplayJson(&clock)).unwrap();
        assert_eq!(context, format!("\"{clock}\""));
    }
}
