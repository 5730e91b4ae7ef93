//! `lost-write`: an ok write that, in the final state, is neither present as a sibling nor an ancestor
//! (by the ground truth of `observed`, transitively) of a write that is. For the `cart` workload: an ok
//! write whose item (its write id) is in no final sibling's value.
//!
//! What is not lost: a write whose put ended `info` or `fail` (it may never have taken effect; a
//! visible failed write is another check's business); a write superseded by a write that observed it;
//! a write a delete observed, directly or transitively (it was deleted by a client that saw it).
//! A delete is lost when its tombstone is gone, it is no ancestor of a present write, and a write it
//! observed is present again: its effect was undone. A delete whose tombstone was merely collected
//! leaves the key empty, and is not lost.

use crate::history::{KeyIdx, Status, Sym, Workload, WriteIdx};

use super::{Check, Ctx, Finding, LostWrite, witness};

pub(crate) fn check(ctx: &Ctx) -> Check {
    let h = ctx.h;
    if h.replicas.is_empty() {
        return Check::unknown("no replica-state events: the final state is missing".to_owned());
    }
    let n = h.writes.len();
    // Present: named by a sibling of the final state (tombstones included).
    let mut present = vec![false; n];
    // Present as a value, not a tombstone: what a lost delete would have brought back.
    let mut present_value = vec![false; n];
    let mut keys_without_state: Vec<KeyIdx> = Vec::new();
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        if !ctx.finals.has_state(key) {
            if ctx
                .g
                .key_writes(key)
                .iter()
                .any(|&w| h.write(w).status == Status::Ok)
            {
                keys_without_state.push(key);
            }
            continue;
        }
        for s in ctx.finals.siblings(h, key) {
            if let Some(w) = h.write_of(s.write) {
                present[w.0 as usize] = true;
                if !h.is_null(s.value) {
                    present_value[w.0 as usize] = true;
                }
            }
        }
    }
    let mut superseded = vec![false; n];
    ctx.g.ancestors_into(
        (0..n as u32)
            .map(WriteIdx)
            .filter(|w| present[w.0 as usize]),
        &mut superseded,
    );
    // Everything a delete that may have taken effect observed, transitively (the deletes themselves too:
    // they are judged by their own rule below).
    let mut deleted = vec![false; n];
    ctx.g.ancestors_into(
        (0..n as u32).map(WriteIdx).filter(|&w| {
            let r = h.write(w);
            r.delete && r.status != Status::Fail
        }),
        &mut deleted,
    );

    let mut raw: Vec<(WriteIdx, &'static str, Vec<WriteIdx>)> = Vec::new();
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        if !ctx.finals.has_state(key) {
            continue;
        }
        let items: Option<Vec<Sym>> = (h.workload == Workload::Cart).then(|| {
            let mut values: Vec<_> = ctx
                .finals
                .siblings(h, key)
                .filter(|s| !h.is_null(s.value))
                .map(|s| s.value)
                .collect();
            values.sort_unstable();
            values.dedup();
            let mut items = Vec::new();
            for v in values {
                h.cart_item_syms(v, &mut items);
            }
            items.sort_unstable();
            items.dedup();
            items
        });
        for &w in ctx.g.key_writes(key) {
            let rec = h.write(w);
            if rec.status != Status::Ok {
                continue;
            }
            if rec.delete {
                if present[w.0 as usize] || superseded[w.0 as usize] {
                    continue;
                }
                let back: Vec<WriteIdx> = ctx
                    .g
                    .observed_parents(w)
                    .filter(|a| present_value[a.0 as usize])
                    .collect();
                if !back.is_empty() {
                    raw.push((w, "delete", back));
                }
                continue;
            }
            let lost = match &items {
                Some(items) => items.binary_search(&rec.id).is_err() && !deleted[w.0 as usize],
                None => !superseded[w.0 as usize] && !deleted[w.0 as usize],
            };
            if lost {
                let rule = if items.is_some() {
                    "cart-item"
                } else {
                    "observed"
                };
                raw.push((w, rule, Vec::new()));
            }
        }
    }
    raw.sort_by_key(|&(w, _, _)| w);
    let mut check = Check::from_raw(raw, |(w, rule, back)| {
        Finding::LostWrite(LostWrite {
            write: witness::write(h, w),
            rule,
            resurrected: back
                .iter()
                .map(|&a| h.str(h.write(a).id).to_owned())
                .collect(),
            final_state: witness::final_state(h, ctx.finals, h.write(w).key),
        })
    });
    if let Some(first) = keys_without_state.first() {
        check.unknown.push(format!(
            "{} key(s) with acknowledged writes have no replica state and no final read (first: {:?}); their writes were not judged",
            keys_without_state.len(),
            h.key_name(*first)
        ));
    }
    check
}
