//! Streaming parse of `history.jsonl`: one line at a time, never the whole file in memory.
//!
//! Every rule of history-format.md, "Malformed histories", is an error that names its line (1-based):
//! a blank line, a line that is not a JSON object, a malformed event, and the structural rules checked
//! while folding (`model.rs`). The one exception is what a run that died mid-write leaves: the file's
//! last line, with no newline after it, that does not parse as JSON at all. It is skipped with a
//! warning. A last line that does parse as JSON but is not a valid event is an error like any other,
//! newline or not; so is a line that does not parse but ends with a newline. A field that the line's
//! kind of event does not have (a nemesis event's `node` list, a get invoke's `observed`) is ignored
//! whatever its type, with a warning, as an unknown field is: "a field of the wrong type" needs a
//! field the event has.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::value::RawValue;

use super::event::Event;
use super::model::{Builder, History};
use super::wire::Wire;

/// Bytes of read-ahead: large enough that a line is rarely split across two reads.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// A history that parsed, and what was skipped or questionable along the way.
#[derive(Debug)]
pub struct Parsed {
    pub history: History,
    /// E.g. a truncated last line that was skipped. Each names its line.
    pub warnings: Vec<String>,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file could not be opened or read.
    #[error("reading {}: {source}", path.as_deref().map_or("the history".into(), |p| p.display().to_string()))]
    Io {
        path: Option<PathBuf>,
        source: io::Error,
    },
    /// A line is malformed or breaks a structural rule of the format.
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

impl ParseError {
    /// The 1-based line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::Line { line, .. } => Some(*line),
            ParseError::Io { .. } => None,
        }
    }
}

/// One line read from the input, without its line terminator.
enum RawLine {
    Line { number: usize, terminated: bool },
    Blank { number: usize },
    End,
}

/// Reads lines into a reused buffer, counting them.
struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    number: usize,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(4096),
            number: 0,
        }
    }

    fn next(&mut self) -> io::Result<RawLine> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(RawLine::End);
        }
        self.number += 1;
        let terminated = self.buf.last() == Some(&b'\n');
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        // A last line with no newline is the truncated line of a run that died mid-write, blank
        // or not (the page's rule for it is the more particular one): it does not parse, so it
        // is reported and skipped (`decode`).
        if terminated && self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(RawLine::Blank {
                number: self.number,
            });
        }
        Ok(RawLine::Line {
            number: self.number,
            terminated,
        })
    }
}

/// What one non-blank line holds.
// One per line, never stored: the size of the `Wire` variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Decoded<'a> {
    /// An event, and a warning when fields its kind does not have were ignored.
    Event(Wire<'a>, Option<String>),
    /// The unterminated last line did not parse: a run that died mid-write. The warning.
    Truncated(String),
}

/// The fields whose type the parser checks (every other field is any JSON value, or unknown and
/// ignored), each with the kinds of event that have it (history-format.md).
const TYPED_FIELDS: [&str; 7] = ["key", "node", "write", "observed", "values", "dot", "clock"];

/// Whether an event of this kind has the typed field `name`: a client event has `key` and `node`;
/// a put or delete invoke `write` and `observed`; a put's or delete's completion `write`, `dot` and
/// `clock`; a get's completion `values`; a `replica-state` event `key`, `node` and `values`. A
/// nemesis event, a phase and a config have none.
fn has_field(process: &str, ty: &str, f: &str, name: &str) -> bool {
    let client = process != "\"nemesis\"" && process != "\"harness\"";
    let write = f == "put" || f == "delete";
    match name {
        "key" => client || f == "replica-state",
        "node" => client || f == "replica-state",
        "write" => client && write,
        "observed" => client && write && ty == "invoke",
        "dot" | "clock" => client && write && ty != "invoke",
        "values" => (client && f == "get" && ty != "invoke") || (!client && f == "replica-state"),
        _ => true,
    }
}

/// A line that did not deserialise, without the typed fields its kind does not have (e.g. a
/// nemesis event's `"node":["n1","n2"]`, a get invoke's `observed`): the page makes a field of the
/// wrong type an error only where the event has that field, so such a field is ignored, as an
/// unknown one is. `None` when the line's kind cannot be told or it has no such field (the error
/// stands); else the line rebuilt and the names of the fields dropped. Only a line that failed
/// takes this path, so a well-formed history costs nothing more.
fn without_foreign_fields(text: &str) -> Option<(String, Vec<String>)> {
    let entries: Vec<(String, &RawValue)> = serde_json::from_str::<Entries>(text).ok()?.0;
    let last = |name: &str| {
        entries
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.get().trim())
    };
    let process = last("process")?;
    let ty: String = serde_json::from_str(last("type")?).ok()?;
    let f: String = serde_json::from_str(last("f")?).ok()?;
    let mut dropped: Vec<String> = Vec::new();
    let mut out = String::with_capacity(text.len());
    out.push('{');
    for (name, value) in &entries {
        if TYPED_FIELDS.contains(&name.as_str()) && !has_field(process, &ty, &f, name) {
            if !dropped.contains(name) {
                dropped.push(name.clone());
            }
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(name).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    (!dropped.is_empty()).then_some((out, dropped))
}

/// A JSON object's members in order, repeats kept (so that a field given twice is still refused).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether the line's JSON is an object (the first byte that is not whitespace is `{`). Checked
/// because serde would also read a struct from a JSON array, by position.
fn is_object(buf: &[u8]) -> bool {
    buf.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{')
}

fn blank(line: usize) -> ParseError {
    ParseError::Line {
        line,
        message: "a blank line (every line of a history is one event)".to_owned(),
    }
}

/// Decodes one line: an event, or the truncated last line, or the error that names it. `scratch`
/// holds the line rebuilt without the fields its kind does not have, where that was needed.
///
/// The line's UTF-8 is validated once, as a whole, and the JSON is read from the `&str`: serde_json
/// then does not validate every string again (which was an eighth of the parser's instructions).
fn decode<'a>(
    buf: &'a [u8],
    scratch: &'a mut String,
    line: usize,
    terminated: bool,
) -> Result<Decoded<'a>, ParseError> {
    let error = |message: String| ParseError::Line { line, message };
    let text = match std::str::from_utf8(buf) {
        Ok(text) => text,
        // A multi-byte character cut by the end of a run that died mid-write.
        Err(e) if !terminated => {
            return Ok(Decoded::Truncated(format!(
                "line {line}: the last line is incomplete (no newline, not UTF-8: {e}); skipped as a run that died mid-write"
            )));
        }
        Err(e) => return Err(error(format!("malformed event: not UTF-8 ({e})"))),
    };
    match serde_json::from_str::<Wire>(text) {
        Ok(wire) if is_object(buf) => Ok(Decoded::Event(wire, None)),
        Ok(_) => Err(error("not a JSON object".to_owned())),
        Err(e) => {
            let json = serde_json::from_str::<serde::de::IgnoredAny>(text);
            match json {
                Err(cut) if !terminated => Ok(Decoded::Truncated(format!(
                    "line {line}: the last line is incomplete (no newline, does not parse: {cut}); skipped as a run that died mid-write"
                ))),
                Ok(_) if !is_object(buf) => Err(error("not a JSON object".to_owned())),
                Ok(_) => match without_foreign_fields(text) {
                    Some((pruned, dropped)) => {
                        *scratch = pruned;
                        let scratch: &'a String = scratch;
                        // A field the event has is wrong too: the error is the line's own (its
                        // columns are the line's, not the rebuilt text's).
                        let wire = serde_json::from_str::<Wire>(scratch)
                            .map_err(|_| error(format!("malformed event: {e}")))?;
                        Ok(Decoded::Event(
                            wire,
                            Some(format!(
                                "line {line}: field(s) {} are not ones this kind of event has; ignored",
                                dropped.join(", ")
                            )),
                        ))
                    }
                    None => Err(error(format!("malformed event: {e}"))),
                },
                Err(_) => Err(error(format!("malformed event: {e}"))),
            }
        }
    }
}

/// Parses a history from a reader, streaming.
pub fn parse_reader(r: impl BufRead) -> Result<Parsed, ParseError> {
    let mut lines = Lines::new(r);
    let mut builder = Builder::default();
    let mut warnings = Vec::new();
    let mut scratch = String::new();
    loop {
        match lines
            .next()
            .map_err(|source| ParseError::Io { path: None, source })?
        {
            RawLine::End => break,
            RawLine::Blank { number } => return Err(blank(number)),
            RawLine::Line { number, terminated } => {
                match decode(&lines.buf, &mut scratch, number, terminated)? {
                    Decoded::Event(wire, ignored) => {
                        warnings.extend(ignored);
                        builder
                            .push(&wire, number)
                            .map_err(|message| ParseError::Line {
                                line: number,
                                message,
                            })?;
                    }
                    Decoded::Truncated(warning) => warnings.push(warning),
                }
            }
        }
    }
    let (history, mut built) = builder.finish();
    warnings.append(&mut built);
    Ok(Parsed { history, warnings })
}

/// Parses a history file, streaming.
pub fn parse_file(path: &Path) -> Result<Parsed, ParseError> {
    let file = File::open(path).map_err(|source| ParseError::Io {
        path: Some(path.to_owned()),
        source,
    })?;
    parse_reader(BufReader::with_capacity(READ_BUFFER_BYTES, file)).map_err(|e| match e {
        ParseError::Io { path: None, source } => ParseError::Io {
            path: Some(path.to_owned()),
            source,
        },
        other => other,
    })
}

impl History {
    /// Builds a history from events in memory, with the same rules as parsing a file (each event is
    /// its line: the first is line 1).
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> Result<Parsed, ParseError> {
        let mut builder = Builder::default();
        for (i, event) in events.into_iter().enumerate() {
            let line = i + 1;
            let text = serde_json::to_string(&event).map_err(|e| ParseError::Line {
                line,
                message: format!("cannot serialise event: {e}"),
            })?;
            let wire: Wire = serde_json::from_str(&text).map_err(|e| ParseError::Line {
                line,
                message: format!("malformed event: {e}"),
            })?;
            builder
                .push(&wire, line)
                .map_err(|message| ParseError::Line { line, message })?;
        }
        let (history, warnings) = builder.finish();
        Ok(Parsed { history, warnings })
    }
}

/// Reads a history's events one by one, as owned [`Event`]s: for tools that need every field (a
/// report's timeline), where the checker's compact [`History`] drops what no check reads.
///
/// It applies the per-line rules (a malformed line is an error naming its line; a truncated last line
/// ends the iteration and is recorded in [`EventReader::warnings`]) but not the rules that relate lines
/// to each other, which only [`parse_reader`] checks.
pub struct EventReader<R> {
    lines: Lines<R>,
    scratch: String,
    warnings: Vec<String>,
    done: bool,
}

impl<R: BufRead> EventReader<R> {
    pub fn new(reader: R) -> EventReader<R> {
        EventReader {
            lines: Lines::new(reader),
            scratch: String::new(),
            warnings: Vec::new(),
            done: false,
        }
    }

    /// What was skipped so far.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<(usize, Event), ParseError>;

    /// The next event with its line number.
    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.lines.next() {
                Err(source) => {
                    self.done = true;
                    return Some(Err(ParseError::Io { path: None, source }));
                }
                Ok(RawLine::End) => self.done = true,
                Ok(RawLine::Blank { number }) => {
                    self.done = true;
                    return Some(Err(blank(number)));
                }
                Ok(RawLine::Line { number, terminated }) => {
                    return match decode(&self.lines.buf, &mut self.scratch, number, terminated) {
                        Ok(Decoded::Event(wire, ignored)) => {
                            self.warnings.extend(ignored);
                            Some(wire.into_event().map(|e| (number, e)).map_err(|message| {
                                ParseError::Line {
                                    line: number,
                                    message,
                                }
                            }))
                        }
                        Ok(Decoded::Truncated(warning)) => {
                            self.warnings.push(warning);
                            self.done = true;
                            None
                        }
                        Err(e) => {
                            self.done = true;
                            Some(Err(e))
                        }
                    };
                }
            }
        }
        None
    }
}
