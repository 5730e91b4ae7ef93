//! Checks of the store's order against the ground truth: `false-dominance` (the store orders a before
//! b by H(a) ⊂ H(b), with dots or plain clocks, but b's writer never saw a, directly or transitively,
//! so the store may silently drop a) and `clock-regression` (b's writer saw a, but b's version does not
//! succeed a's: the store lost causality the client handed it). The store's order is only compared
//! here; it never makes a write an ancestor of another.

use crate::graph::{EdgeKind, precedes};
use crate::history::{KeyIdx, WriteIdx};

use super::{Check, ClockRegression, Ctx, FalseDominance, Finding, skipped_keys_reason, witness};

pub(crate) fn false_dominance(ctx: &Ctx) -> Check {
    let (h, g) = (ctx.h, ctx.g);
    // The graph stores a clock edge a -> b only where b observed a directly or where the store's order
    // has no ground truth behind it; the latter are the findings.
    let mut raw: Vec<(WriteIdx, WriteIdx)> = Vec::new();
    // Keys with a clock edge but no bitsets: the only ones this check leaves undecided.
    let mut undecided: Vec<KeyIdx> = Vec::new();
    for (a, b) in g.edges_of(EdgeKind::Clock) {
        match g.reaches(h, a, b) {
            Some(false) => raw.push((a, b)),
            Some(true) => {}
            None => undecided.push(h.write(a).key),
        }
    }
    undecided.sort_unstable();
    undecided.dedup();
    raw.sort_unstable();
    let mut check = Check::from_raw(ctx.findings_max, raw, |(a, b)| {
        Finding::FalseDominance(FalseDominance {
            write: witness::write(h, a),
            dominated_by: witness::write(h, b),
            write_based_on: witness::base_read(h, a),
            dominated_by_based_on: witness::base_read(h, b),
            final_state: witness::final_state(h, ctx.finals, h.write(a).key),
        })
    });
    check
        .unknown
        .extend(skipped_keys_reason(ctx, "false-dominance", &undecided));
    check
}

pub(crate) fn clock_regression(ctx: &Ctx) -> Check {
    let (h, g) = (ctx.h, ctx.g);
    // Ground truth: what the client observed (and, in v1, the deletes its context covers).
    let mut raw: Vec<(WriteIdx, WriteIdx)> = g
        .edges_of(EdgeKind::Observed)
        .chain(g.edges_of(EdgeKind::Context))
        .filter(|&(a, b)| match (h.write(a).version, h.write(b).version) {
            (Some(va), Some(vb)) => !precedes(&h.versions, va, vb),
            _ => false,
        })
        .map(|(a, b)| (b, a))
        .collect();
    raw.sort_unstable();
    Check::from_raw(ctx.findings_max, raw, |(b, a)| {
        Finding::ClockRegression(ClockRegression {
            write: witness::write(h, b),
            observed_write: witness::write(h, a),
            final_state: witness::final_state(h, ctx.finals, h.write(b).key),
        })
    })
}
