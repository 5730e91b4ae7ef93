//! `divergence`: after the final quiescence, the replicas of a key hold different sibling sets.
//!
//! A replica's sibling set is the *set* of (write, version) it holds (history-format.md): the order in
//! which it lists them and repeats do not count, and neither does the value (a sibling whose value is
//! not what its write wrote is a phantom read, reported as such). With `tombstone_gc`, tombstones do
//! not count. A node that reported a key twice is judged by its last report (`finals.rs`).

use crate::history::{KeyIdx, Sym, VerId};

use super::{Check, Ctx, Divergence, Finding, witness};

pub(crate) fn check(ctx: &Ctx) -> Check {
    let h = ctx.h;
    let mut raw: Vec<KeyIdx> = Vec::new();
    let mut first: Vec<(Sym, Option<VerId>)> = Vec::new();
    let mut other: Vec<(Sym, Option<VerId>)> = Vec::new();
    let set_of = |i: u32, out: &mut Vec<(Sym, Option<VerId>)>| {
        out.clear();
        out.extend(
            h.siblings(h.replicas[i as usize].siblings)
                .iter()
                .filter(|s| !(h.tombstone_gc && h.is_null(s.value)))
                .map(|s| (s.write, s.version)),
        );
        out.sort_unstable();
        out.dedup();
    };
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        let replicas = ctx.finals.replicas(key);
        let Some((&head, rest)) = replicas.split_first() else {
            continue;
        };
        set_of(head, &mut first);
        if rest.iter().any(|&i| {
            set_of(i, &mut other);
            other != first
        }) {
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
