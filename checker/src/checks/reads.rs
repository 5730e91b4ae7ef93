//! Checks of what reads returned: `phantom-read`, `failed-write-visible`, and the warning
//! `false-concurrency`.
//!
//! Replica states count as reads for the first two: a replica that stores a write no client invoked, or
//! a failed write, is as wrong as a read that returns one. False concurrency is about what clients were
//! handed, so only reads count there.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{
    History, KeyIdx, SiblingRec, Status, Sym, ValId, Workload, WriteIdx, for_each_string,
    string_array,
};

use super::{
    Check, Ctx, FailedWriteVisible, FalseConcurrency, Finding, JsonText, PhantomRead, ReadWitness,
    skipped_keys_reason, witness,
};

/// Where a sibling was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Read(u32),
    Replica(u32),
    /// The `observed` list of a put or delete: what the read its client based it on returned.
    Observed(WriteIdx),
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
        Source::Observed(w) => witness::observed_list(h, w),
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

/// Per write (cart workload): whether every item of the value it wrote is a put on its key (true for
/// a delete and for a value that is not an array: it has no items).
///
/// Checked incrementally, in invoke order, because cart values grow with every update and checking
/// each item of each value by a hash lookup is quadratic in a key's updates. A put's client builds
/// its value from the values it observed plus its own id, so an item that a verified parent value
/// holds needs no lookup: the common case, one parent, is a comparison of the two texts (the parent's
/// plus one element); with several parents, a merge of the sorted item lists. Only items no verified
/// parent holds are looked up. Any value these shortcuts do not fit is checked item by item. A
/// parent is verified only if it was invoked earlier (checked already): an `observed` may name a
/// later write (the graph keeps such edges), whose items would otherwise vouch for themselves, two
/// writes of a cycle for each other (a review found a phantom item let through so).
fn written_items_ok(ctx: &Ctx) -> Vec<bool> {
    let (h, g) = (ctx.h, ctx.g);
    let mut ok = vec![true; h.writes.len()];
    let mut parents: Vec<&str> = Vec::new();
    for i in 0..h.writes.len() {
        let w = WriteIdx(i as u32);
        let rec = h.write(w);
        if rec.delete {
            continue;
        }
        let text = h.value_text(rec.value);
        let own = h.str(rec.id);
        parents.clear();
        parents.extend(
            g.observed_parents(w)
                .filter(|p| {
                    let pr = h.write(*p);
                    p.0 < w.0 && !pr.delete && ok[p.0 as usize] && !h.is_null(pr.value)
                })
                .map(|p| h.value_text(h.write(p).value)),
        );
        if let [parent] = parents.as_slice()
            && one_more_item(text, parent, own)
        {
            continue;
        }
        ok[i] = items_from_parents(h, rec.key, rec.value, own, &parents);
    }
    ok
}

/// Whether `t` is the canonical array of plain strings `u` with the one element `"id"` added
/// (anywhere): a comparison of the texts, no parsing.
fn one_more_item(t: &str, u: &str, id: &str) -> bool {
    let (tb, ub) = (t.as_bytes(), u.as_bytes());
    if id.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20)
        || ub.first() != Some(&b'[')
        || ub.last() != Some(&b']')
        || !u.is_char_boundary(1)
    {
        return false;
    }
    if u == "[]" {
        return tb.len() == id.len() + 4
            && t.starts_with("[\"")
            && &t[2..2 + id.len()] == id
            && t.ends_with("\"]");
    }
    if tb.len() != ub.len() + id.len() + 3 {
        return false;
    }
    let mut from = 0;
    while let Some(off) = t[from..].find(id) {
        let j = from + off;
        from = j + 1;
        // The element `"id"` spans start..end; it must sit between `[` or `,` and `,` or `]`.
        if j < 2 || tb[j - 1] != b'"' || tb.get(j + id.len()) != Some(&b'"') {
            continue;
        }
        let (start, end) = (j - 1, j + id.len() + 1);
        let before = tb[start - 1];
        let after = tb[end];
        if !matches!(before, b'[' | b',') {
            continue;
        }
        if after == b',' {
            // t = u[..start] + "id", + u[start..]
            return ub[..start] == tb[..start] && ub[start..] == tb[end + 1..];
        }
        if after == b']' && before == b',' {
            // t = u[..len-1] + ,"id" + ]
            return ub[..start - 1] == tb[..start - 1] && ub[start - 1..] == *b"]";
        }
    }
    false
}

/// Whether every item of the value `v` is `own` (the writer's id, a put on `key`), an item of one of the
/// `parents` values (verified already), or found by a lookup to be a put on `key`. The parents' item
/// lists are walked with one cursor each, in step with `t`'s items (all sorted in the cart workload);
/// an item a cursor walks past unseen is simply looked up. A value that is not an array of plain
/// strings is checked item by item.
fn items_from_parents(h: &History, key: KeyIdx, v: ValId, own: &str, parents: &[&str]) -> bool {
    let t = h.value_text(v);
    let mut lists: Vec<Vec<&str>> = Vec::with_capacity(parents.len());
    for p in parents {
        let mut items = Vec::new();
        if string_array(p, &mut items) {
            lists.push(items);
        }
    }
    let mut cursors = vec![0usize; lists.len()];
    for_each_string(t, |x| {
        if x == own {
            return true;
        }
        let mut found = false;
        for (list, c) in lists.iter().zip(cursors.iter_mut()) {
            while *c < list.len() && list[*c] < x {
                *c += 1;
            }
            found |= *c < list.len() && list[*c] == x;
        }
        found || is_item(h, key, x)
    })
    .unwrap_or_else(|| unknown_items(h, key, v).is_empty())
}

/// `phantom-read`: a read or a replica state returned a write id that no put or delete invoked on that
/// key, a cart item that no put invoked on that key, or a value different from what that write wrote.
/// One finding per sibling that shows any of these.
pub(crate) fn phantom_read(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let cart = h.workload == Workload::Cart;
    // A sibling whose value is the one its write wrote has that write's items: they are checked once
    // per write, not per read.
    let written_ok = if cart {
        written_items_ok(ctx)
    } else {
        Vec::new()
    };
    // (where, key, the write id named, the value returned: none for an observed list).
    let mut raw: Vec<(Source, KeyIdx, Sym, Option<ValId>, &'static str)> = Vec::new();
    for_each_sibling(h, |source, key, s| {
        let reason = match h.write_of(s.write) {
            Some(w) if h.write(w).key == key => {
                (!h.same_value(s.value, h.write(w).value)).then_some("wrong-value")
            }
            _ => Some("unknown-write"),
        };
        // Here the sibling names a write on this key and carries the value it wrote.
        let reason = reason.or_else(|| {
            let w = h.write_of(s.write).expect("a known write");
            (cart && !written_ok[w.0 as usize]).then_some("unknown-item")
        });
        if let Some(reason) = reason {
            raw.push((source, key, s.write, Some(s.value), reason));
        }
    });
    // A put's or delete's `observed` list is what the read its client based it on returned
    // (history-format.md: "the client saw exactly those"): an id in it that no put or delete invoked
    // on its key is a write id that read returned. The list holds ids only, so only that can be
    // seen in it (not a value or an item). An id of this key invoked after the write is no phantom
    // (it was invoked); the graph makes it an edge, as any other.
    for (i, rec) in h.writes.iter().enumerate() {
        let observed = h.observed_of(rec);
        for (j, &o) in observed.iter().enumerate() {
            let known = h.write_of(o).is_some_and(|w| h.write(w).key == rec.key);
            if !known && !observed[..j].contains(&o) {
                let by = Source::Observed(WriteIdx(i as u32));
                raw.push((by, rec.key, o, None, "unknown-write"));
            }
        }
    }
    Check::from_raw(ctx.findings_max, raw, |(source, key, id, value, reason)| {
        let read = source_witness(h, source);
        let written = h
            .write_of(id)
            .filter(|&w| h.write(w).key == key)
            .map(|w| JsonText(h.value_text(h.write(w).value).to_owned()));
        Finding::PhantomRead(PhantomRead {
            write: h.str(id).to_owned(),
            key: h.key_name(key).to_owned(),
            reason,
            returned: value.map(|v| JsonText(h.value_text(v).to_owned())),
            written,
            unknown_items: match value {
                Some(v) if cart && !h.is_null(v) => unknown_items(h, key, v),
                _ => Vec::new(),
            },
            read,
        })
    })
}

/// `failed-write-visible`: a write whose put ended `fail` appears in a read or in the final state.
///
/// Only a read or replica state of the write's own key can show it: a sibling of another key that
/// names it is a write id "that no put or delete invoked on that key", a phantom read (reported as
/// such), and tells nothing about the failed write.
///
/// A put's or delete's `observed` list counts as a read: it is "the write ids of the sibling values
/// that the read whose context this put carries returned", and "the client saw exactly those"
/// (history-format.md), whether or not that read is a `get` of the history. A failed write of the
/// same key in it was seen. Reads and replica states come first, so that the witness is a read the
/// history shows where there is one.
pub(crate) fn failed_write_visible(ctx: &Ctx) -> Check {
    let h = ctx.h;
    // Failed write -> (first source, times seen, last source counted), in write order.
    let mut seen: BTreeMap<WriteIdx, (Source, usize, Source)> = BTreeMap::new();
    let failed_of = |key: KeyIdx, id| {
        h.write_of(id)
            .filter(|&w| h.write(w).key == key && h.write(w).status == Status::Fail)
    };
    for_each_sibling(h, |source, key, s| {
        if let Some(w) = failed_of(key, s.write) {
            // A read or replica state that names it in several siblings (several versions of it)
            // showed it once: siblings come source by source, so a repeat is the last one counted.
            let entry = seen.entry(w).or_insert((source, 0, source));
            if entry.1 == 0 || entry.2 != source {
                entry.1 += 1;
                entry.2 = source;
            }
        }
    });
    for (i, rec) in h.writes.iter().enumerate() {
        let by = Source::Observed(WriteIdx(i as u32));
        let observed = h.observed_of(rec);
        for (j, &o) in observed.iter().enumerate() {
            // A list that names the write twice is one read that returned it.
            if observed[..j].contains(&o) {
                continue;
            }
            if let Some(w) = failed_of(rec.key, o) {
                let entry = seen.entry(w).or_insert((by, 0, by));
                entry.1 += 1;
                entry.2 = by;
            }
        }
    }
    Check::from_raw(
        ctx.findings_max,
        seen.into_iter().collect(),
        |(w, (source, times_seen, _))| {
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
    // Keys read with two siblings or more but without bitsets: the only ones left undecided.
    let mut undecided: Vec<KeyIdx> = Vec::new();
    for (i, r) in h.reads.iter().enumerate() {
        if r.status != Status::Ok || r.siblings.len < 2 {
            continue;
        }
        if !ctx.g.reach.has_rows(r.key) {
            undecided.push(r.key);
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
        .extend(skipped_keys_reason(ctx, "false-concurrency", &{
            undecided.sort_unstable();
            undecided.dedup();
            undecided
        }));
    check
}

#[cfg(test)]
mod tests {
    use super::one_more_item;

    #[test]
    fn a_value_that_is_its_parent_plus_one_item() {
        let yes = [
            (r#"["a","b"]"#, r#"["a"]"#, "b"),
            (r#"["a","b"]"#, r#"["b"]"#, "a"),
            (r#"["a","b","c"]"#, r#"["a","c"]"#, "b"),
            (r#"["b"]"#, "[]", "b"),
            (r#"["ab","b"]"#, r#"["ab"]"#, "b"),
            (r#"["b","ab"]"#, r#"["ab"]"#, "b"),
        ];
        for (t, u, id) in yes {
            assert!(one_more_item(t, u, id), "{t} = {u} + {id}");
        }
        let no = [
            (r#"["a","x"]"#, r#"["a"]"#, "b"),
            (r#"["a","b","x"]"#, r#"["a","y"]"#, "b"),
            (r#"["a","b"]"#, r#"["a","b"]"#, "b"),
            (r#"["a"]"#, "[]", "b"),
            (r#"["b","b"]"#, r#"["c"]"#, "b"),
            (r#"{"b":1}"#, "{}", "b"),
            (r#"["a\"b"]"#, r#"["a"]"#, "\\"),
        ];
        for (t, u, id) in no {
            assert!(!one_more_item(t, u, id), "{t} != {u} + {id}");
        }
    }
}
