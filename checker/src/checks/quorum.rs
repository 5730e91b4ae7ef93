//! `quorum-read-miss` (history-format.md): only where the config says the quorum is strict
//! (`"node":{"sloppy_quorum":false}`) and R + W > N. A strict config that does not give N, R and W as
//! numbers makes the check, and so the verdict, unknown: the promise cannot be weighed. An `ok` read invoked after (later in the history
//! than) a put's or delete's `ok` returned neither that write nor any descendant of it (by `observed`,
//! transitively), while no replica of the key was wiped, hit by a disk fault or a `power` fault, or
//! crashed while `fsync` was not `always`, and no `join` or `leave` happened, between the ack and the
//! read's completion.
//!
//! - A replica of the key is a node with a `replica-state` event for it, as the page defines it, and
//!   only a fault on one of them (or a `power` fault, which hits them all) excuses a read of the
//!   key; a `join` or `leave` excuses every read. A `wipe`, `disk` or `crash` that names no node (in
//!   `value.node`, `value.nodes`, a string `value`, or its own `node` field: `model.rs`) is taken to
//!   have hit every node, so every replica; so is one that names something the config's list of
//!   nodes shows is no node (`"value":"all"`; `model.rs`, `place_faults`). One that names nodes
//!   that are not replicas of the key excuses nothing for it.
//! - A fault that names something that may or may not be a node (a name no other event names,
//!   where the config does not list the nodes: `"n5"` of `"nodes":5`, or `"all"`) is `unsure`: a
//!   miss that only such a fault could excuse is neither reported nor passed; the check says
//!   unknown, naming the fault's line.
//! - A key with no `replica-state` event has no replica in the page's sense, so no fault on a
//!   node excuses its reads (a `power` fault, a `join` or a `leave`, and a fault that names no
//!   node, still do). Its final state is missing, which alone would make the verdict unknown; a
//!   read that no fault excuses makes it false (an earlier reading excused every such read, and a
//!   read that missed an acknowledged write after a wipe of some other node passed as unknown).
//! - "Between" is history order: after the ack event and before the read's completion event.
//! - v1 substitute: a read is not held to a write that is, or by `observed` precedes, a delete invoked
//!   before the read completed (a v1 read cannot show the tombstone). A delete that ended `fail` is
//!   not one: it "certainly did not take effect", so it removed nothing and its tombstone never was;
//!   the page's words "a delete invoked" are read with the meaning it gives `fail`. It is v1's
//!   alone: `tombstone_gc` changes only how replicas' sibling sets are compared and what lost-write
//!   excuses, as the page says, so a v2 read is held to a delete's tombstone with it too. (An
//!   earlier reading extended the substitute to `tombstone_gc`, and a strict read that returned a
//!   value after its delete was acknowledged, a resurrection, passed as valid.)
//!
//! One finding per read: the earliest-acknowledged write it missed, how many it missed, the faults
//! between that ack and the read's completion (none of which excuses it), and the quorum settings.
//! Per key, one sweep over its reads in invoke order, as in `freshness.rs`.

use std::collections::HashMap;

use crate::graph::Bits;
use crate::history::{Format, NemesisKind, Status, Sym, WriteIdx};

use super::{
    Check, Ctx, FaultWitness, Finding, QuorumReadMiss, ReadsByKey, acked_in_order,
    skipped_keys_reason, witness,
};

/// The most missed write ids a finding lists (the count is always whole).
const MISSED_LISTED_MAX: usize = 20;

pub(crate) fn check(ctx: &Ctx) -> Check {
    let (h, g) = (ctx.h, ctx.g);
    let Some(quorum) = h.quorum.filter(|q| q.promises_overlap()) else {
        let mut check = Check::default();
        if h.strict_without_numbers {
            check.unknown.push(
                "quorum-read-miss: the config says the quorum is strict but does not give n, r and w as numbers, so whether R + W > N was promised is unknown; not checked"
                    .to_owned(),
            );
        }
        // A strict quorum said in another type than a boolean (`"false"`): the promise may have
        // been made; unless the numbers show that R + W > N was not, it cannot be weighed.
        if h.sloppy_unreadable && h.quorum.is_none_or(|q| q.r.saturating_add(q.w) > q.n) {
            check.unknown.push(
                "quorum-read-miss: the config's node.sloppy_quorum is not a boolean, so whether the quorum is strict (and R + W > N promised) is unknown; not checked"
                    .to_owned(),
            );
        }
        return check;
    };
    let lenient = h.format == Format::V1;

    // Excusing faults: a join or leave excuses every read; a power fault, or a fault that names no
    // node, hit every replica of every key; the others, the replicas they name; an unsure fault
    // may have hit any node or none (indexes of the events, ascending).
    let mut everywhere: Vec<u64> = Vec::new();
    let mut unsure: Vec<u64> = Vec::new();
    let mut by_node: HashMap<Sym, Vec<u64>> = HashMap::new();
    for n in &h.nemesis {
        let targeted = match n.kind {
            NemesisKind::Power | NemesisKind::Join | NemesisKind::Leave => {
                everywhere.push(n.at.index);
                continue;
            }
            NemesisKind::Wipe | NemesisKind::Disk => true,
            NemesisKind::Crash => !h.fsync_always,
            _ => false,
        };
        if targeted {
            // A fault that names no node, or no node of the config's list, may have hit any node
            // (`model.rs`, `place_faults`).
            if !n.placed {
                everywhere.push(n.at.index);
                continue;
            }
            if n.unsure {
                unsure.push(n.at.index);
            }
            for &node in &n.nodes {
                by_node.entry(node).or_default().push(n.at.index);
            }
        }
    }
    // The reads whose misses only an unsure fault excuses.
    let mut undecided = 0usize;

    let reads = ReadsByKey::build(h);
    let mut raw: Vec<(u32, WriteIdx, usize, Vec<WriteIdx>)> = Vec::new();
    // Scratch, reused across keys.
    let mut excusing: Vec<u64> = Vec::new();
    let mut acked: Vec<(u64, WriteIdx)> = Vec::new();
    let mut ack_bits: Vec<u64> = Vec::new();
    let mut covered: Vec<u64> = Vec::new();
    let mut uncovered: Vec<u64> = Vec::new();
    let mut deletes: Vec<u64> = Vec::new();
    let mut exempt: Vec<u64> = Vec::new();

    for checked in reads.checked(h, g) {
        let (key, key_reads, positions) = (checked.key, checked.reads, checked.positions);
        let (m, wpr) = (positions.len(), checked.words);

        excusing.clear();
        excusing.extend_from_slice(&everywhere);
        let replicas = ctx.finals.replicas(key);
        for &i in replicas {
            if let Some(at) = by_node.get(&h.replicas[i as usize].node) {
                excusing.extend_from_slice(at);
            }
        }
        excusing.sort_unstable();

        acked_in_order(h, g, key, &mut acked);
        if acked.is_empty() {
            continue;
        }

        // v1: prefix unions of the deletes' rows (each delete's ancestors and itself), in invoke
        // order: row i covers the first i deletes.
        deletes.clear();
        exempt.clear();
        if lenient {
            exempt.resize(wpr, 0);
            for &d in g.key_writes(key) {
                let rec = h.write(d);
                // A delete that ended `fail` certainly did not take effect: it removed nothing, so
                // it excuses no read (as in `freshness.rs`).
                if !rec.delete || rec.status == Status::Fail {
                    continue;
                }
                deletes.push(rec.invoked.index);
                let base = exempt.len() - wpr;
                exempt.extend_from_within(base..base + wpr);
                let row = exempt.len() - wpr;
                for (x, y) in exempt[row..].iter_mut().zip(g.reach.row(g, key, d).0) {
                    *x |= y;
                }
                let p = g.pos[d.0 as usize] as usize;
                exempt[row + p / 64] |= 1 << (p % 64);
            }
        }

        ack_bits.clear();
        ack_bits.resize(wpr, 0);
        covered.resize(wpr, 0);
        let mut next_ack = 0;
        for &r in key_reads {
            let read = &h.reads[r as usize];
            let completed = read.completed.expect("an ok read completed").index;
            while next_ack < acked.len() && acked[next_ack].0 < read.invoked.index {
                let p = g.pos[acked[next_ack].1.0 as usize] as usize;
                ack_bits[p / 64] |= 1 << (p % 64);
                next_ack += 1;
            }
            if next_ack == 0 {
                continue;
            }
            covered.iter_mut().for_each(|x| *x = 0);
            for s in h.siblings(read.siblings) {
                let Some(w) = h.write_of(s.write).filter(|&w| h.write(w).key == key) else {
                    continue;
                };
                for (c, x) in covered.iter_mut().zip(g.reach.row(g, key, w).0) {
                    *c |= x;
                }
                let p = g.pos[w.0 as usize] as usize;
                covered[p / 64] |= 1 << (p % 64);
            }
            if lenient {
                let before = deletes.partition_point(|&i| i < completed);
                for (c, x) in covered
                    .iter_mut()
                    .zip(&exempt[before * wpr..(before + 1) * wpr])
                {
                    *c |= x;
                }
            }
            uncovered.clear();
            uncovered.extend(covered.iter().zip(&ack_bits).map(|(c, a)| c | !a));
            let mut missed: Vec<(u64, WriteIdx)> = Vec::new();
            let mut maybe_excused = false;
            Bits(&uncovered).for_each_clear_in(0, m, |p| {
                let w = positions[p];
                let ack = h.write(w).completed.expect("acked").index;
                let between = |faults: &[u64]| {
                    let after = faults.partition_point(|&f| f <= ack);
                    faults.get(after).is_some_and(|&f| f < completed)
                };
                if between(&excusing) {
                    return;
                }
                if between(&unsure) {
                    maybe_excused = true;
                } else {
                    missed.push((ack, w));
                }
            });
            if maybe_excused && missed.is_empty() {
                undecided += 1;
            }
            if !missed.is_empty() {
                missed.sort_unstable();
                let count = missed.len();
                let listed = missed
                    .iter()
                    .take(MISSED_LISTED_MAX)
                    .map(|&(_, w)| w)
                    .collect();
                raw.push((r, missed[0].1, count, listed));
            }
        }
    }
    raw.sort_unstable_by_key(|&(r, ..)| r);
    let mut check = Check::from_raw(ctx.findings_max, raw, |(r, w, missed_count, listed)| {
        let read = &h.reads[r as usize];
        let ack = h.write(w).completed.expect("acked").index;
        let end = read.completed.expect("ok").index;
        let from = h.nemesis.partition_point(|n| n.at.index <= ack);
        let to = h.nemesis.partition_point(|n| n.at.index < end);
        let mut replicas: Vec<String> = ctx
            .finals
            .replicas(read.key)
            .iter()
            .map(|&i| h.str(h.replicas[i as usize].node).to_owned())
            .collect();
        replicas.sort();
        Finding::QuorumReadMiss(QuorumReadMiss {
            write: witness::write(h, w),
            read: witness::read(h, r),
            missed_count,
            missed: listed
                .iter()
                .map(|&m| h.str(h.write(m).id).to_owned())
                .collect(),
            faults_between: h.nemesis[from..to.max(from)]
                .iter()
                .map(|n| FaultWitness {
                    index: n.at.index,
                    time: n.at.time,
                    f: h.str(n.f).to_owned(),
                    node: n.nodes.first().map(|&s| h.str(s).to_owned()),
                    nodes: n.nodes.iter().map(|&s| h.str(s).to_owned()).collect(),
                })
                .collect(),
            replicas,
            n: quorum.n,
            r: quorum.r,
            w: quorum.w,
        })
    });
    if undecided > 0 {
        let line = h.nemesis.iter().find(|n| n.unsure).map_or(0, |n| n.line);
        check.unknown.push(format!(
            "quorum-read-miss: {undecided} read(s) missed an acknowledged write that only a fault \
             naming something the config does not list as a node may excuse (the first such \
             fault is on line {line}): whether it hit a replica of the key is unknown"
        ));
    }
    check.unknown.extend(skipped_keys_reason(
        ctx,
        "quorum-read-miss",
        &reads.unchecked(h, g),
    ));
    check
}
