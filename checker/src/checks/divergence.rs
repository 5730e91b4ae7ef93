//! `divergence`: after the final quiescence, the replicas of a key hold different sibling sets.
//!
//! A replica's sibling set is the *set* of (write, version) it holds (history-format.md): the order in
//! which it lists them and repeats do not count, and neither does the value (a sibling whose value is
//! not what its write wrote is a phantom read, reported as such). With `tombstone_gc`, tombstones do
//! not count (a delete's siblings: a put that wrote `null` is a value, see `History::is_tombstone`). A node that reported a key twice is judged by its last report (`finals.rs`).
//!
//! A sibling's `dot` and `clock` are optional: a replica state that leaves them out has said which
//! write it holds, not that it holds another version of it. So two replicas differ when one holds a
//! write the other does not, or holds it in another number of versions, or when the versions they
//! report of it differ; a single copy of a write reported without its version matches a single
//! copy of it with any version (and only that: one unreported copy against two versions of the
//! write, or two copies against one, are different sets). That relation is not transitive (a
//! replica with no versions agrees with two that disagree), so every pair of the key's replicas is
//! compared.
//!
//! Likewise a sibling reported with its `dot` and no `clock` has named its version (the dot is "the
//! single event that created this version") without describing its context: it matches a version of
//! that write with the same dot, whatever that version's clock. A replica that lists a version both
//! ways has listed it twice, a repeat, which does not count.

use crate::history::{History, KeyIdx, Sym, VerId};

use super::{Check, Ctx, Divergence, Finding, witness};

/// A sibling as a replica reported it: its write, its version (`None` where it reported none), and
/// whether it reported the version's dot without its clock.
type Entry = (Sym, Option<VerId>, bool);

/// A replica's sibling set, sorted.
type Set = Vec<Entry>;

/// Whether two reports of a version of one write can be the same version: the same version, or one
/// reported by its dot alone and the other with that dot.
fn same_version(h: &History, x: &Entry, y: &Entry) -> bool {
    match (x.1, y.1) {
        (Some(vx), Some(vy)) => {
            vx == vy || ((x.2 || y.2) && h.versions.rec(vx).dot == h.versions.rec(vy).dot)
        }
        (None, None) => true,
        _ => false,
    }
}

/// Whether two sorted sibling sets are the same set, a single copy of a write with no reported
/// version matching a single copy of it with any version, and a version reported by its dot alone
/// matching a version with that dot.
fn agree(h: &History, a: &Set, b: &Set) -> bool {
    let (mut i, mut j) = (0, 0);
    let dot = |e: &Entry| e.1.map(|v| h.versions.rec(v).dot);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.0 == y.0 => {
                let w = x.0;
                let ei = i + a[i..].iter().take_while(|s| s.0 == w).count();
                let ej = j + b[j..].iter().take_while(|s| s.0 == w).count();
                let (ga, gb) = (&a[i..ei], &b[j..ej]);
                let unreported_single = |g: &[Entry]| g.len() == 1 && g[0].1.is_none();
                let same = ga == gb
                    || (ga.len() == 1
                        && gb.len() == 1
                        && (unreported_single(ga) || unreported_single(gb)))
                    || (ga.len() == gb.len() && {
                        // Paired in order of their dots: a dot names one version.
                        let mut sa = ga.to_vec();
                        let mut sb = gb.to_vec();
                        sa.sort_by_key(|e| (dot(e), e.1));
                        sb.sort_by_key(|e| (dot(e), e.1));
                        sa.iter().zip(&sb).all(|(x, y)| same_version(h, x, y))
                    });
                if !same {
                    return false;
                }
                (i, j) = (ei, ej);
            }
            _ => return false,
        }
    }
}

pub(crate) fn check(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let mut raw: Vec<KeyIdx> = Vec::new();
    let mut sets: Vec<Set> = Vec::new();
    let set_of = |i: u32| -> Set {
        let rec = &h.replicas[i as usize];
        let start = rec.siblings.start;
        let mut out: Set = h
            .siblings(rec.siblings)
            .iter()
            .zip(start..)
            .filter(|(s, _)| !(h.tombstone_gc && h.is_tombstone(rec.key, s)))
            .map(|(s, at)| (s.write, s.version, h.clockless.binary_search(&at).is_ok()))
            .collect();
        out.sort_unstable();
        out.dedup();
        // A version listed both by its dot alone and with its clock is one version listed twice
        // ("repeats do not count"): the dot alone is dropped.
        if !out.iter().any(|e| e.2) {
            return out;
        }
        let dot = |v: VerId| h.versions.rec(v).dot;
        let full: Vec<(Sym, Option<(Sym, u64)>)> = out
            .iter()
            .filter_map(|e| match *e {
                (w, Some(v), false) => Some((w, dot(v))),
                _ => None,
            })
            .collect();
        out.retain(|e| !(e.2 && e.1.is_some_and(|v| full.contains(&(e.0, dot(v))))));
        out
    };
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        sets.clear();
        sets.extend(ctx.finals.replicas(key).iter().map(|&i| set_of(i)));
        let differ = sets
            .iter()
            .enumerate()
            .any(|(x, a)| sets[x + 1..].iter().any(|b| !agree(h, a, b)));
        if differ {
            raw.push(key);
        }
    }
    Check::from_raw(ctx.findings_max, raw, |key| {
        Finding::Divergence(Divergence {
            key: h.key_name(key).to_owned(),
            final_state: witness::final_state(h, ctx.finals, key),
        })
    })
}
