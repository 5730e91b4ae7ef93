//! Freshness: the warning `stale-read` (a read that missed an acknowledged write that completed before
//! the read started), the consistency window (per acknowledged write, the time from its ack until every
//! read that starts later sees it or a descendant) and the time to converge after the heal.
//!
//! "Before" and "later" are history order (`index`), not time: in a simulation many events share one
//! millisecond, and a read invoked right after an ack in the same tick still started after it. Every
//! ok read counts, final reads included (they are ordinary reads).
//!
//! A read "sees" write w when one of its siblings is w or descends from w (ground truth, so a sibling
//! that superseded w counts). A v2 read returns tombstones, so that is all, `tombstone_gc` or not
//! (the page gives `tombstone_gc` no say here, as in `quorum-read-miss`). A v1 read cannot show a
//! tombstone; there, as the page's v1 substitute for `quorum-read-miss` does, a read sees an
//! acknowledged delete unless it returns a write the delete removed, and sees a put that a delete
//! (not ended fail) observed once that delete was invoked before the read completed. Per key, one sweep over its reads in invoke order keeps a bitset
//! of the writes acked so far; a read's misses are that bitset minus the union of its siblings'
//! ancestor rows.

use crate::graph::Bits;
use crate::history::{Format, Status, WriteIdx};

use super::{
    Check, Ctx, Finding, ReadsByKey, StaleRead, acked_in_order, skipped_keys_reason, witness,
};

/// What the freshness sweep found.
#[derive(Debug, Default)]
pub(crate) struct Freshness {
    /// Stale reads.
    pub check: Check,
    /// Per acknowledged write that some later read could have seen, and that reads did come to see:
    /// its consistency window in nanoseconds.
    pub windows_ns: Vec<u64>,
    /// Acknowledged writes that the last read of their key still missed: their window never closed.
    pub never: usize,
    /// When the `phase: heal` event came, if it did.
    pub heal_at: Option<u64>,
    /// The time from the heal until the completion of the last stale read that started after it (0 if
    /// none), or `None` when the last read of some key was still stale.
    pub converged_after_heal_ns: Option<u64>,
    /// t-visibility's pairs (PBS): per ok read started before the heal (every ok read without
    /// one), the latest acknowledged write of its key acked before it by history order, as (t, fresh):
    /// t from that ack to the read's start in ns (0 within one tick), fresh when the read saw it.
    pub t_pairs: Vec<(u64, bool)>,
}

pub(crate) fn analyze(ctx: &Ctx) -> Freshness {
    let (h, g) = (ctx.h, ctx.g);
    let reads = ReadsByKey::build(h);
    let mut out = Freshness {
        heal_at: h.heal.map(|m| m.time),
        ..Freshness::default()
    };
    let lenient = h.format == Format::V1;
    let mut raw: Vec<(u32, WriteIdx, usize)> = Vec::new();
    let mut converged = true;
    let mut last_stale_after_heal: Option<u64> = None;

    // Scratch, reused across keys. `acked`: (ok index, write), in history order.
    let mut acked: Vec<(u64, WriteIdx)> = Vec::new();
    let mut ack_bits: Vec<u64> = Vec::new();
    let mut covered: Vec<u64> = Vec::new();
    let mut deleted_at: Vec<u64> = Vec::new();
    let mut last_missed: Vec<Option<u64>> = Vec::new();
    let mut missed_last: Vec<bool> = Vec::new();
    let mut siblings: Vec<WriteIdx> = Vec::new();
    let mut uncovered: Vec<u64> = Vec::new();

    for checked in reads.checked(h, g) {
        let (key, key_reads, positions) = (checked.key, checked.reads, checked.positions);
        let (m, wpr) = (positions.len(), checked.words);
        acked_in_order(h, g, key, &mut acked);
        ack_bits.clear();
        ack_bits.resize(wpr, 0);
        covered.resize(wpr, 0);
        deleted_at.clear();
        deleted_at.resize(m, u64::MAX);
        last_missed.clear();
        last_missed.resize(m, None);
        missed_last.clear();
        missed_last.resize(m, false);
        // Per position: the index of the first invoke of a delete (not ended fail) that observed it.
        if lenient {
            for &d in g.key_writes(key) {
                let rec = h.write(d);
                if rec.delete && rec.status != Status::Fail {
                    let row = g.reach.row(g, key, d);
                    row.for_each_set(|p| deleted_at[p] = deleted_at[p].min(rec.invoked.index));
                }
            }
        }

        let mut next_ack = 0;
        for (n, &r) in key_reads.iter().enumerate() {
            let read = &h.reads[r as usize];
            let begun = read.invoked.time;
            let ended_at = read.completed.expect("an ok read completed");
            let ended = ended_at.time;
            while next_ack < acked.len() && acked[next_ack].0 < read.invoked.index {
                let p = g.pos[acked[next_ack].1.0 as usize] as usize;
                ack_bits[p / 64] |= 1 << (p % 64);
                next_ack += 1;
            }
            siblings.clear();
            siblings.extend(
                h.siblings(read.siblings)
                    .iter()
                    .filter_map(|s| h.write_of(s.write))
                    .filter(|&w| h.write(w).key == key),
            );
            covered.iter_mut().for_each(|x| *x = 0);
            for &s in &siblings {
                let row = g.reach.row(g, key, s);
                for (c, x) in covered.iter_mut().zip(row.0) {
                    *c |= x;
                }
                let p = g.pos[s.0 as usize] as usize;
                covered[p / 64] |= 1 << (p % 64);
            }
            let mut missed = 0usize;
            let mut first: Option<(u64, WriteIdx)> = None;
            // t-visibility pairs the read with the latest write acked before it.
            let latest = next_ack
                .checked_sub(1)
                .map(|i| acked[i].1)
                .filter(|_| h.heal.is_none_or(|heal| read.invoked.index < heal.index));
            let latest_pos = latest.map(|w| g.pos[w.0 as usize] as usize);
            let mut latest_missed = false;
            let is_last = n + 1 == key_reads.len();
            // The acked writes not covered: clear bits of (covered | !acked).
            uncovered.clear();
            uncovered.extend(covered.iter().zip(&ack_bits).map(|(c, a)| c | !a));
            Bits(&uncovered).for_each_clear_in(0, m, |p| {
                let w = positions[p];
                let rec = h.write(w);
                let seen = if !lenient {
                    false
                } else if rec.delete {
                    let removed = g.reach.row(g, key, w);
                    !siblings
                        .iter()
                        .any(|&s| removed.get(g.pos[s.0 as usize] as usize))
                } else {
                    deleted_at[p] < ended_at.index
                };
                if seen {
                    return;
                }
                latest_missed |= latest_pos == Some(p);
                missed += 1;
                last_missed[p] = Some(begun);
                if is_last {
                    missed_last[p] = true;
                }
                let ack = rec
                    .completed
                    .expect("only acked writes are in the bitset")
                    .index;
                if first.is_none_or(|(t, _)| ack < t) {
                    first = Some((ack, w));
                }
            });
            if let Some(w) = latest {
                let ack = h.write(w).acked().expect("acked");
                out.t_pairs
                    .push((begun.saturating_sub(ack), !latest_missed));
            }
            if let Some((_, w)) = first {
                raw.push((r, w, missed));
                if out.heal_at.is_some_and(|heal| begun >= heal) {
                    last_stale_after_heal =
                        Some(last_stale_after_heal.map_or(ended, |t| t.max(ended)));
                }
                if is_last {
                    converged = false;
                }
            }
        }
        let last_begun = h.reads[*key_reads.last().expect("non-empty") as usize]
            .invoked
            .index;
        for &(ack_index, w) in &acked {
            if ack_index >= last_begun {
                continue;
            }
            let ack = h.write(w).acked().expect("acked");
            let p = g.pos[w.0 as usize] as usize;
            if missed_last[p] {
                out.never += 1;
            } else {
                out.windows_ns
                    .push(last_missed[p].map_or(0, |t| t.saturating_sub(ack)));
            }
        }
    }
    if let Some(heal) = out.heal_at {
        out.converged_after_heal_ns =
            converged.then(|| last_stale_after_heal.map_or(0, |t| t.saturating_sub(heal)));
    }
    raw.sort_unstable_by_key(|&(r, _, _)| r);
    out.check = Check::from_raw(ctx.findings_max, raw, |(r, w, missed_count)| {
        Finding::StaleRead(StaleRead {
            key: h.key_name(h.reads[r as usize].key).to_owned(),
            read: witness::read(h, r),
            missed: witness::write(h, w),
            missed_count,
        })
    });
    out.check.unknown.extend(skipped_keys_reason(
        ctx,
        "stale-read",
        &reads.unchecked(h, g),
    ));
    out
}
