//! Checks of what reads returned: `phantom-read`, `failed-write-visible`, and the warning
//! `false-concurrency`.
//!
//! Replica states count as reads for the first two: a replica that stores a write no client invoked, or
//! a failed write, is as wrong as a read that returns one. False concurrency is about what clients were
//! handed, so only reads count there.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{History, SiblingRec, Status, Workload, WriteIdx};

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

/// Calls `f` with every sibling of every ok read (in invoke order), then of every replica state.
fn for_each_sibling(h: &History, mut f: impl FnMut(Source, SiblingRec)) {
    for (i, r) in h.reads.iter().enumerate() {
        if r.status == Status::Ok {
            for &s in h.siblings(r.siblings) {
                f(Source::Read(i as u32), s);
            }
        }
    }
    for (i, r) in h.replicas.iter().enumerate() {
        for &s in h.siblings(r.siblings) {
            f(Source::Replica(i as u32), s);
        }
    }
}

fn source_witness(h: &History, source: Source) -> ReadWitness {
    match source {
        Source::Read(r) => witness::read(h, r),
        Source::Replica(i) => witness::replica(h, i),
    }
}

fn parsed(h: &History, v: crate::history::ValId) -> Value {
    serde_json::from_str(h.value_text(v)).unwrap_or(Value::Null)
}

pub(crate) fn phantom_read(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let mut raw: Vec<(Source, SiblingRec, Option<WriteIdx>)> = Vec::new();
    for_each_sibling(h, |source, s| match h.write_of(s.write) {
        None => raw.push((source, s, None)),
        Some(w) => {
            if !h.same_value(s.value, h.write(w).value) {
                raw.push((source, s, Some(w)));
            }
        }
    });
    Check::from_raw(raw, |(source, s, w)| {
        let read = source_witness(h, source);
        let unknown_items = if h.workload == Workload::Cart {
            h.cart_items(s.value)
                .into_iter()
                .filter(|item| h.sym(item).and_then(|sym| h.write_of(sym)).is_none())
                .collect()
        } else {
            Vec::new()
        };
        Finding::PhantomRead(PhantomRead {
            write: h.str(s.write).to_owned(),
            key: read.key.clone(),
            reason: if w.is_some() {
                "wrong-value"
            } else {
                "unknown-write"
            },
            returned: parsed(h, s.value),
            written: w.map(|w| parsed(h, h.write(w).value)),
            unknown_items,
            read,
        })
    })
}

pub(crate) fn failed_write_visible(ctx: &Ctx) -> Check {
    let h = ctx.h;
    // Failed write -> (first source, times seen), in write order.
    let mut seen: BTreeMap<WriteIdx, (Source, usize)> = BTreeMap::new();
    for_each_sibling(h, |source, s| {
        if let Some(w) = h.write_of(s.write)
            && h.write(w).status == Status::Fail
        {
            seen.entry(w).or_insert((source, 0)).1 += 1;
        }
    });
    Check::from_raw(seen.into_iter().collect(), |(w, (source, times_seen))| {
        Finding::FailedWriteVisible(FailedWriteVisible {
            write: witness::write(h, w),
            seen_in: source_witness(h, source),
            times_seen,
            final_state: witness::final_state(h, ctx.finals, h.write(w).key),
        })
    })
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
    let mut check = Check::from_raw(raw, |(r, a, b)| {
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
