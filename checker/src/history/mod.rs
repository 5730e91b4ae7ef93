//! The history: its events as serde types, and the streaming parser that folds a `history.jsonl` into
//! the compact [`History`] the checks read.
//!
//! It owns the file format (`shared/history-format.md`) and its structural rules: indexes strictly
//! ascend, a completion is the next event of its process after the invoke and repeats its `f` and
//! `key`, a process whose operation ended `info` never invokes again, write ids are unique. A history
//! that breaks one is not checked at all: the error names the line.
//!
//! Two representations, because they serve different readers:
//! - [`Event`] and its parts are owned and typed, serialise to exactly the format's lines, and are what
//!   a harness writes or a report reads back ([`EventReader`]);
//! - [`History`] is what the checker keeps: one record per client operation, strings, values and
//!   versions interned, so that a million-operation history fits in a few hundred megabytes and the
//!   checks compare integers. Values are kept as canonical JSON text (not `serde_json::Value` trees),
//!   so that equal values have equal ids whatever their key order or number spelling.
//!
//! Files: `event.rs` (the serde types), `wire.rs` (the borrowed on-disk line and the one validation of
//! its fields), `model.rs` (the compact history and its builder), `intern.rs` (the arenas),
//! `canon.rs` (canonical JSON values), `parse.rs` (reading lines, errors).

mod canon;
mod event;
mod intern;
mod model;
mod parse;
mod wire;

pub use event::{
    Body, ClientF, Clock, Completion, Dot, Event, Op, Outcome, Phase, ProcessNo, ReplicaState,
    Sibling, Version, WriteOp,
};
pub use model::{Format, History, Workload};
pub use parse::{EventReader, ParseError, Parsed, parse_file, parse_reader};

pub(crate) use intern::{Sym, ValId, VerId, Versions};
pub(crate) use model::{
    KeyIdx, NemesisKind, SiblingRec, Status, WriteIdx, for_each_string, string_array,
};
