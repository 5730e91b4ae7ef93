//! Streaming parse of `history.jsonl`: one line at a time, never the whole file in memory.
//!
//! A malformed line, or one that breaks a structural rule, is an error naming its line number (1-based).
//! A last line with no trailing newline whose JSON ends early or breaks off is what a run that died
//! mid-write leaves: it is skipped with a warning. A last line that is complete JSON but not a valid
//! event is an error like any other. Blank lines are skipped.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

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
#[derive(Debug)]
pub enum ParseError {
    /// The file could not be opened or read.
    Io {
        path: Option<PathBuf>,
        source: io::Error,
    },
    /// A line is malformed or breaks a structural rule of the format.
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

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Io {
                path: Some(p),
                source,
            } => write!(f, "reading {}: {source}", p.display()),
            ParseError::Io { path: None, source } => write!(f, "reading the history: {source}"),
            ParseError::Line { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParseError::Io { source, .. } => Some(source),
            ParseError::Line { .. } => None,
        }
    }
}

/// One line read from the input, without its line terminator.
enum RawLine {
    Line { number: usize, terminated: bool },
    Blank,
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
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(RawLine::Blank);
        }
        Ok(RawLine::Line {
            number: self.number,
            terminated,
        })
    }
}

/// Whether a parse error on an unterminated last line looks like a run that died mid-write: the JSON
/// ends early or breaks off, rather than being complete but not an event.
fn cut_short(e: &serde_json::Error) -> bool {
    e.is_eof() || e.is_syntax()
}

fn truncated(line: usize, e: &serde_json::Error) -> String {
    format!(
        "line {line}: the last line is incomplete (no newline, does not parse: {e}); skipped as a run that died mid-write"
    )
}

/// Parses a history from a reader, streaming.
pub fn parse_reader(r: impl BufRead) -> Result<Parsed, ParseError> {
    let mut lines = Lines::new(r);
    let mut builder = Builder::default();
    let mut warnings = Vec::new();
    loop {
        match lines
            .next()
            .map_err(|source| ParseError::Io { path: None, source })?
        {
            RawLine::End => break,
            RawLine::Blank => {}
            RawLine::Line { number, terminated } => {
                match serde_json::from_slice::<Wire>(&lines.buf) {
                    Ok(wire) => {
                        builder
                            .push(&wire, number)
                            .map_err(|message| ParseError::Line {
                                line: number,
                                message,
                            })?;
                    }
                    Err(e) if !terminated && cut_short(&e) => warnings.push(truncated(number, &e)),
                    Err(e) => {
                        return Err(ParseError::Line {
                            line: number,
                            message: format!("malformed event: {e}"),
                        });
                    }
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
    warnings: Vec<String>,
    done: bool,
}

impl<R: BufRead> EventReader<R> {
    pub fn new(reader: R) -> EventReader<R> {
        EventReader {
            lines: Lines::new(reader),
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
                Ok(RawLine::Blank) => {}
                Ok(RawLine::Line { number, terminated }) => {
                    let parsed = serde_json::from_slice::<Wire>(&self.lines.buf);
                    return match parsed {
                        Ok(wire) => {
                            Some(wire.into_event().map(|e| (number, e)).map_err(|message| {
                                ParseError::Line {
                                    line: number,
                                    message,
                                }
                            }))
                        }
                        Err(e) if !terminated && cut_short(&e) => {
                            self.warnings.push(truncated(number, &e));
                            self.done = true;
                            None
                        }
                        Err(e) => {
                            self.done = true;
                            Some(Err(ParseError::Line {
                                line: number,
                                message: format!("malformed event: {e}"),
                            }))
                        }
                    };
                }
            }
        }
        None
    }
}
