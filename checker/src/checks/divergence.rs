//! `divergence`: after the final quiescence, the replicas of a key hold different sibling sets.
//!
//! A sibling is compared by its write id and value; the order in which a replica lists its siblings
//! does not matter. When a node reports the same key twice, its last report counts.

use std::collections::BTreeMap;

use crate::history::{KeyIdx, Sym, ValId};

use super::{Check, Ctx, Divergence, Finding, witness};

pub(crate) fn check(ctx: &Ctx) -> Check {
    let h = ctx.h;
    if h.replicas.is_empty() {
        return Check::unknown("no replica-state events: the final state is missing".to_owned());
    }
    let mut raw: Vec<KeyIdx> = Vec::new();
    for k in 0..h.keys.len() {
        let key = KeyIdx(k as u32);
        let replicas = ctx.finals.replicas(key);
        if replicas.len() < 2 {
            continue;
        }
        let mut by_node: BTreeMap<Sym, Vec<(Sym, ValId)>> = BTreeMap::new();
        for &i in replicas {
            let rec = &h.replicas[i as usize];
            let mut set: Vec<(Sym, ValId)> = h
                .siblings(rec.siblings)
                .iter()
                .map(|s| (s.write, s.value))
                .collect();
            set.sort_unstable();
            set.dedup();
            by_node.insert(rec.node, set);
        }
        let mut sets = by_node.values();
        let first = sets.next().expect("at least two replica states");
        if sets.any(|s| {
            s.len() != first.len()
                || s.iter()
                    .zip(first)
                    .any(|(a, b)| a.0 != b.0 || !h.same_value(a.1, b.1))
        }) {
            raw.push(key);
        }
    }
    Check::from_raw(raw, |key| {
        Finding::Divergence(Divergence {
            key: h.key_name(key).to_owned(),
            final_state: witness::final_state(h, ctx.finals, key),
        })
    })
}
