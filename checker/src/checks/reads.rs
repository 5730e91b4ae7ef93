//! Checks of what reads returned: `phantom-read`, `failed-write-visible`, and the warning
//! `false-concurrency`.
//!
//! Replica states count as reads for the first two: a replica that stores a write no client invoked, or
//! a failed write, is as wrong as a read that returns one. False concurrency is about what clients were
//! handed, so only reads count there.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{
    History, KeyIdx, SiblingRec, Status, ValId, Workload, WriteIdx, for_each_string, string_array,
};

use super::{
    Check, Ctx, FailedWriteVisible, FalseConcurrency, Finding, PhantomRead, ReadWitness,
    skipped_keys_reason, witness,
};

/// Where a sibling was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Read(u32),
    Replica(u32),
}

/// Calls `f` with every sibling of every ok read (in invoke order), then of every replica state, with
/// the key it was read from.
fn for_each_sibling(h: &History, mut f: impl FnMut(Source, KeyIdx, SiblingRec)) {
    for (i, r) in h.reads.iter().enumerate() {
        if r.status == Status::Ok {
            for &s in h.siblings(r.siblings) {
                f(Source::Read(i as u32), r.key, s);
            }
        }
    }
    for (i, r) in h.replicas.iter().enumerate() {
        for &s in h.siblings(r.siblings) {
            f(Source::Replica(i as u32), r.key, s);
        }
    }
}

fn source_witness(h: &History, source: Source) -> ReadWitness {
    match source {
        Source::Read(r) => witness::read(h, r),
        Source::Replica(i) => witness::replica(h, i),
    }
}

fn parsed(h: &History, v: ValId) -> Value {
    serde_json::from_str(h.value_text(v)).unwrap_or(Value::Null)
}

/// Whether `item` is the write id of a put on `key`.
fn is_item(h: &History, key: KeyIdx, item: &str) -> bool {
    h.sym(item)
        .and_then(|s| h.write_of(s))
        .is_some_and(|w| h.write(w).key == key && !h.write(w).delete)
}

/// The items of a cart value that no put invoked on `key`: each element of the array that is not the
/// write id of a put on that key (an element that is not a string is never one). A value that is not
/// an array has no items.
fn unknown_items(h: &History, key: KeyIdx, v: ValId) -> Vec<String> {
    let is_item = |item: &str| is_item(h, key, item);
    let mut fast = Vec::new();
    if string_array(h.value_text(v), &mut fast) {
        return fast
            .into_iter()
            .filter(|i| !is_item(i))
            .map(str::to_owned)
            .collect();
    }
    match parsed(h, v) {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) if is_item(&s) => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `phantom-read`: a read or a replica state returned a write id that no put or delete invoked on that
/// key, a cart item that no put invoked on that key, or a value different from what that write wrote.
/// One finding per sibling that shows any of these.
pub(crate) fn phantom_read(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let cart = h.workload == Workload::Cart;
    // Per value id: the key whose items were last checked for it (+1, 0 for none), and whether all
    // its items were puts on that key. Most values are read many times; each is parsed once.
    let mut items_ok: Vec<(u32, bool)> = vec![(0, true); h.values.len()];
    let mut raw: Vec<(Source, KeyIdx, SiblingRec, &'static str)> = Vec::new();
    for_each_sibling(h, |source, key, s| {
        let reason = match h.write_of(s.write) {
            Some(w) if h.write(w).key == key => {
                (!h.same_value(s.value, h.write(w).value)).then_some("wrong-value")
            }
            _ => Some("unknown-write"),
        };
        let reason = reason.or_else(|| {
            if !cart || h.is_null(s.value) {
                return None;
            }
            let slot = &mut items_ok[s.value.0 as usize];
            if slot.0 != key.0 + 1 {
                let all_known = for_each_string(h.value_text(s.value), |i| is_item(h, key, i))
                    .unwrap_or_else(|| unknown_items(h, key, s.value).is_empty());
                *slot = (key.0 + 1, all_known);
            }
            (!slot.1).then_some("unknown-item")
        });
        if let Some(reason) = reason {
            raw.push((source, key, s, reason));
        }
    });
    Check::from_raw(ctx.findings_max, raw, |(source, key, s, reason)| {
        let read = source_witness(h, source);
        let written = h
            .write_of(s.write)
            .filter(|&w| h.write(w).key == key)
            .map(|w| parsed(h, h.write(w).value));
        Finding::PhantomRead(PhantomRead {
            write: h.str(s.write).to_owned(),
            key: h.key_name(key).to_owned(),
            reason,
            returned: parsed(h, s.value),
            written,
            unknown_items: if cart && !h.is_null(s.value) {
                unknown_items(h, key, s.value)
            } else {
                Vec::new()
            },
            read,
        })
    })
}

pub(crate) fn failed_write_visible(ctx: &Ctx) -> Check {
    let h = ctx.h;
    // Failed write -> (first source, times seen), in write order.
    let mut seen: BTreeMap<WriteIdx, (Source, usize)> = BTreeMap::new();
    for_each_sibling(h, |source, _, s| {
        if let Some(w) = h.write_of(s.write)
            && h.write(w).status == Status::Fail
        {
            seen.entry(w).or_insert((source, 0)).1 += 1;
        }
    });
    Check::from_raw(
        ctx.findings_max,
        seen.into_iter().collect(),
        |(w, (source, times_seen))| {
            Finding::FailedWriteVisible(FailedWriteVisible {
                write: witness::write(h, w),
                seen_in: source_witness(h, source),
                times_seen,
                final_state: witness::final_state(h, ctx.finals, h.write(w).key),
            })
        },
    )
}

pub(crate) fn false_concurrency(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let mut raw: Vec<(u32, WriteIdx, WriteIdx)> = Vec::new();
    let mut known: Vec<WriteIdx> = Vec::new();
    for (i, r) in h.reads.iter().enumerate() {
        if r.status != Status::Ok || r.siblings.len < 2 || !ctx.g.reach.has_rows(r.key) {
            continue;
        }
        known.clear();
        known.extend(
            h.siblings(r.siblings)
                .iter()
                .filter_map(|s| h.write_of(s.write))
                .filter(|&w| h.write(w).key == r.key),
        );
        'pairs: for &a in &known {
            for &b in &known {
                if a != b && ctx.g.reaches(h, a, b) == Some(true) {
                    raw.push((i as u32, a, b));
                    break 'pairs;
                }
            }
        }
    }
    let mut check = Check::from_raw(ctx.findings_max, raw, |(r, a, b)| {
        Finding::FalseConcurrency(FalseConcurrency {
            key: h.key_name(h.reads[r as usize].key).to_owned(),
            ancestor: h.str(h.write(a).id).to_owned(),
            descendant: h.str(h.write(b).id).to_owned(),
            read: witness::read(h, r),
        })
    });
    check
        .unknown
        .extend(skipped_keys_reason(ctx, "false-concurrency"));
    check
}
