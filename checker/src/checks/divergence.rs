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

use crate::history::{KeyIdx, Sym, VerId};

use super::{Check, Ctx, Divergence, Finding, witness};

/// A replica's sibling set, sorted: (write, version), `None` where it reported no version.
type Set = Vec<(Sym, Option<VerId>)>;

/// Whether two sorted sibling sets are the same set, a single copy of a write with no reported
/// version matching a single copy of it with any version.
fn agree(a: &Set, b: &Set) -> bool {
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.0 == y.0 => {
                let w = x.0;
                let ei = i + a[i..].iter().take_while(|s| s.0 == w).count();
                let ej = j + b[j..].iter().take_while(|s| s.0 == w).count();
                let (ga, gb) = (&a[i..ei], &b[j..ej]);
                let unreported_single = |g: &[(Sym, Option<VerId>)]| g == [(w, None)];
                let same = ga == gb
                    || (ga.len() == 1
                        && gb.len() == 1
                        && (unreported_single(ga) || unreported_single(gb)));
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
        let key = h.replicas[i as usize].key;
        let mut out: Set = h
            .siblings(h.replicas[i as usize].siblings)
            .iter()
            .filter(|s| !(h.tombstone_gc && h.is_tombstone(key, s)))
            .map(|s| (s.write, s.version))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        sets.clear();
        sets.extend(ctx.finals.replicas(key).iter().map(|&i| set_of(i)));
        let differ = sets
            .iter()
            .enumerate()
            .any(|(x, a)| sets[x + 1..].iter().any(|b| !agree(a, b)));
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
