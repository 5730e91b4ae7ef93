//! `lost-write` (history-format.md, "What the checker concludes"): an `ok` write (put or delete) that,
//! in the final state, is neither present as a sibling (a delete: as a tombstone) on some replica nor
//! an ancestor, by the ground truth of `observed` (transitively), of a write that is.
//!
//! - The final state is the `replica-state` events only (`finals.rs`).
//! - "Present" means a replica holds a sibling that names the write *with the value it wrote* (a
//!   tombstone for a delete): a sibling that names the write with another value is a phantom read,
//!   and the write's own value is then not in the final state. Reading it the other way could hide a
//!   lost write behind a corrupted copy.
//! - With `tombstone_gc`, a missing tombstone is no loss unless a write the delete observed, directly
//!   or transitively, is present (the deleted value came back), and a write that is an ancestor of a
//!   delete that did not end `fail` is excused by it even where its tombstone is gone. A delete whose
//!   deleted value came back is lost even if another delete observed it: the page's first gc rule is
//!   about exactly that delete, and excusing it would hide the resurrection.
//! - `cart`: an `ok` put whose item is in no final sibling's value is lost, unless a delete lies between
//!   them: some delete that is a descendant of the put and either present or an ancestor of a present
//!   write. The cart rule applies on top of the general rule, which still judges every put and delete
//!   (a cart put that is neither present nor an ancestor of a present write is lost even if some value
//!   carries its item). With `tombstone_gc` a delete's tombstone may be gone, so any delete that did
//!   not end `fail` lies between (the page's gc excuse, read as applying to the whole of lost-write).
//!
//! Ground truth edges go from an earlier write to a later one, but for an `observed` that names a
//! later write (`Graph::backward_edges`), so every "ancestor of" and "descendant of" set here is one
//! pass over the writes in (reverse) invoke order, repeated until nothing changes where such an
//! edge exists.

use crate::history::{KeyIdx, Status, Sym, Workload, WriteIdx};

use super::{Check, Ctx, Finding, LostWrite, witness};

pub(crate) fn check(ctx: &Ctx) -> Check {
    let (h, g) = (ctx.h, ctx.g);
    let n = h.writes.len();
    let gc = h.tombstone_gc;
    let cart = h.workload == Workload::Cart;

    let mut present = vec![false; n];
    let mut keys_without_state: Vec<KeyIdx> = Vec::new();
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        if !ctx.finals.has_state(key) {
            if g.key_writes(key)
                .iter()
                .any(|&w| h.write(w).status == Status::Ok)
            {
                keys_without_state.push(key);
            }
            continue;
        }
        for s in ctx.finals.siblings(h, key) {
            if let Some(w) = h.write_of(s.write) {
                let rec = h.write(w);
                if rec.key == key && h.same_value(s.value, rec.value) {
                    present[w.0 as usize] = true;
                }
            }
        }
    }

    // Passes in reverse invoke order: a write's children come after it (but for an `observed` that
    // names a later write, where passes repeat until nothing changes), so its marks are final when
    // the write is reached.
    // below_present: a strict ancestor of a present write.
    // below_delete: (gc) a strict ancestor of a delete that did not end fail.
    // cart_between: a strict ancestor of a delete that counts as lying between a put and the end.
    let mut below_present = vec![false; n];
    let mut below_delete = vec![false; n];
    let mut cart_between = vec![false; n];
    loop {
        let mut changed = false;
        for i in (0..n).rev() {
            let w = WriteIdx(i as u32);
            let rec = h.write(w);
            let up = present[i] || below_present[i];
            let live_delete = rec.delete && rec.status != Status::Fail;
            let del = gc && (live_delete || below_delete[i]);
            let between = cart && ((rec.delete && (up || (gc && live_delete))) || cart_between[i]);
            if up || del || between {
                for p in g.ground_parents(w) {
                    let p = p.0 as usize;
                    changed |= (up && !below_present[p])
                        || (del && !below_delete[p])
                        || (between && !cart_between[p]);
                    below_present[p] |= up;
                    below_delete[p] |= del;
                    cart_between[p] |= between;
                }
            }
        }
        if !g.backward_edges || !changed {
            break;
        }
    }
    // above_present (gc only): a write with a present strict ancestor: for a delete, what it removed
    // came back.
    let mut above_present = vec![false; n];
    let mut changed = gc;
    while changed {
        changed = false;
        for i in 0..n {
            let w = WriteIdx(i as u32);
            let above = g
                .ground_parents(w)
                .any(|p| present[p.0 as usize] || above_present[p.0 as usize]);
            changed |= above && !above_present[i];
            above_present[i] |= above;
        }
        changed &= g.backward_edges;
    }

    let mut raw: Vec<(WriteIdx, &'static str)> = Vec::new();
    let mut items: Vec<Sym> = Vec::new();
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        if !ctx.finals.has_state(key) {
            continue;
        }
        if cart {
            items.clear();
            let mut values: Vec<_> = ctx
                .finals
                .siblings(h, key)
                .filter(|s| !h.is_null(s.value))
                .map(|s| s.value)
                .collect();
            values.sort_unstable();
            values.dedup();
            for v in values {
                h.cart_item_syms(v, &mut items);
            }
            items.sort_unstable();
            items.dedup();
        }
        for &w in g.key_writes(key) {
            let i = w.0 as usize;
            let rec = h.write(w);
            if rec.status != Status::Ok {
                continue;
            }
            let mut rule = if present[i] || below_present[i] {
                None
            } else if rec.delete {
                match (gc, above_present[i]) {
                    (false, _) => Some("observed"),
                    (true, true) => Some("delete"),
                    (true, false) => None,
                }
            } else if gc && below_delete[i] {
                None
            } else {
                Some("observed")
            };
            if rule.is_none()
                && cart
                && !rec.delete
                && items.binary_search(&rec.id).is_err()
                && !cart_between[i]
            {
                rule = Some("cart-item");
            }
            if let Some(rule) = rule {
                raw.push((w, rule));
            }
        }
    }
    raw.sort_unstable_by_key(|&(w, _)| w);
    let mut check = Check::from_raw(ctx.findings_max, raw, |(w, rule)| {
        Finding::LostWrite(LostWrite {
            write: witness::write(h, w),
            rule,
            resurrected: present_ancestors(ctx, w, &present),
            observed_by: g
                .ground_children(w)
                .map(|c| h.str(h.write(c).id).to_owned())
                .collect(),
            final_state: witness::final_state(h, ctx.finals, h.write(w).key),
        })
    });
    if let Some(first) = keys_without_state.first() {
        check.unknown.push(format!(
            "the final state is missing: {} key(s) with an acknowledged write have no replica-state event (first: {:?}); their writes were not judged",
            keys_without_state.len(),
            h.key_name(*first)
        ));
    }
    check
}

/// For a delete: the writes it observed, directly or transitively, that are present in the final state
/// (what it removed that came back), sorted by invoke order. Empty for a put.
fn present_ancestors(ctx: &Ctx, w: WriteIdx, present: &[bool]) -> Vec<String> {
    let (h, g) = (ctx.h, ctx.g);
    if !h.write(w).delete {
        return Vec::new();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![w];
    while let Some(x) = stack.pop() {
        for p in g.ground_parents(x) {
            if seen.insert(p) {
                stack.push(p);
            }
        }
    }
    seen.into_iter()
        .filter(|p| present[p.0 as usize])
        .map(|p| h.str(h.write(p).id).to_owned())
        .collect()
}
