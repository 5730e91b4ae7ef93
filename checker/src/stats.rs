//! Figures about a run, for `stats` in results.json: operation counts, latencies, the distribution of
//! sibling counts per read (the Dynamo paper's table of versions seen per read, over client-phase reads
//! of keys that exist), the consistency window (by history order, see `checks/freshness.rs`), and the
//! time to converge after the heal.
//!
//! Times are nanoseconds, as in the history. Quantiles are nearest-rank: the p-quantile of n sorted
//! samples is the ceil(p*n)-th.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checks::Kind;
use crate::checks::freshness::Freshness;
use crate::history::{ClientF, History, Status};

/// Counts of client operations by how they ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Invoked.
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Not completed when the history ended (as unknown as info).
    pub pending: usize,
}

impl Counts {
    fn add(&mut self, s: Status) {
        self.ops += 1;
        match s {
            Status::Ok => self.ok += 1,
            Status::Fail => self.fail += 1,
            Status::Info => self.info += 1,
            Status::Pending => self.pending += 1,
        }
    }
}

/// Nearest-rank quantiles of a sample, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    pub count: usize,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Quantiles {
    /// The quantiles of `samples` (sorted in place); `None` for no samples.
    pub fn of(samples: &mut [u64]) -> Option<Quantiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |p: f64| nearest_rank(samples, p);
        Some(Quantiles {
            count: n,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples[n - 1],
        })
    }
}

/// The nearest-rank p-quantile of sorted, non-empty samples: the smallest sample with at least a
/// share p of the samples at or below it (the report's plots use it too, so their figures agree
/// with results.json).
pub fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    let n = sorted.len();
    sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
}

/// How many versions reads saw: the Dynamo paper's table, over the reads it is about. Only ok reads of
/// the client phase (invoked before `phase final`) count, and only of keys that exist: a read that
/// returned no sibling, or only tombstones, is a read of a missing key, not a read that saw versions.
/// Tombstones returned beside a value are versions, and count.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiblingCounts {
    /// The reads counted.
    pub reads: usize,
    /// Reads by number of siblings returned: "1", "2", "3", "4+".
    pub counts: BTreeMap<&'static str, usize>,
    /// The same as shares of the reads counted.
    pub shares: BTreeMap<&'static str, f64>,
    /// Ok client-phase reads left out because the key did not exist (no sibling, or only tombstones).
    pub missing_key_reads: usize,
    /// Ok reads left out because they ran after `phase final`.
    pub final_reads: usize,
}

/// The consistency window over acknowledged writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Over the writes whose window closed.
    #[serde(flatten)]
    pub quantiles: Option<Quantiles>,
    /// Acknowledged writes that the last read of their key still missed.
    pub never: usize,
}

/// Convergence after the heal.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Convergence {
    /// Time of the `phase: heal` event.
    pub heal_at: u64,
    /// From the heal until the last stale read that started after it completed (0 if none); absent
    /// when some key's last read was still stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converged_after_ns: Option<u64>,
    pub converged: bool,
}

/// Everything in `stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Client operations invoked, and how they ended.
    #[serde(flatten)]
    pub totals: Counts,
    /// The same per operation: `get`, `put`, `delete`.
    pub by_f: BTreeMap<&'static str, Counts>,
    pub events: u64,
    pub keys: usize,
    /// Nemesis events by `f`.
    pub nemesis: BTreeMap<String, usize>,
    /// Latency of ok operations by `f`.
    pub latency_ns: BTreeMap<&'static str, Quantiles>,
    pub siblings_per_read: SiblingCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_window_ns: Option<Window>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convergence: Option<Convergence>,
    /// P(fresh | t), the PBS curve (Bailis et al., VLDB 2012): reads by the time since the latest
    /// write of their key was acknowledged, and how many of them saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_visibility: Option<TVisibility>,
    /// The writes (puts and deletes) and how many of the acknowledged ones were lost: the figure
    /// Jepsen's Riak analysis reports.
    pub writes: WriteCounts,
    /// Findings per anomaly type, all of them (results list at most
    /// [`FINDINGS_PER_KIND_MAX`](crate::checks::FINDINGS_PER_KIND_MAX)).
    pub anomaly_counts: BTreeMap<Kind, usize>,
    pub warning_counts: BTreeMap<Kind, usize>,
    /// Why the verdict is, or parts of it are, unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Things the checker noticed that are neither findings nor errors (e.g. dropped observed entries).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Lower edges of t-visibility's bins, ms; the last bin has no upper edge. Fine where PBS's curves
/// move (the first milliseconds), coarse after.
/// The edges of the t-visibility bins, µs: fine below 5 ms, where latency models of a data centre
/// (PBS's LinkedIn fits) decide freshness, coarse above, to a last bin of a second and more.
pub const T_VISIBILITY_EDGES_US: [u64; 20] = [
    0, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000,
    200_000, 500_000, 1_000_000, 2_000_000, 5_000_000,
];

/// t-visibility: every ok read of the client phase paired with the latest write of its key
/// acknowledged before the read started (by history order, so a read in the ack's own tick has
/// t = 0); fresh when the read saw that write or a descendant (`checks/freshness.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TVisibility {
    /// Pairs, and fresh ones, over all bins.
    pub pairs: usize,
    pub fresh: usize,
    /// `fresh` / `pairs` (1 when there are none), to 6 decimals.
    pub fresh_share: f64,
    /// The bins in order of t; empty bins are listed too.
    pub bins: Vec<TBin>,
}

/// One bin of t-visibility: t in `[from_us, until_us)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TBin {
    pub from_us: u64,
    /// Absent for the last bin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_us: Option<u64>,
    pub pairs: usize,
    pub fresh: usize,
    /// `fresh` / `pairs`, to 6 decimals; absent for an empty bin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fresh_share: Option<f64>,
}

impl TVisibility {
    /// Bins `(t_ns, fresh)` pairs.
    pub fn of(pairs: &[(u64, bool)]) -> TVisibility {
        let share = |fresh: usize, pairs: usize| (fresh as f64 / pairs as f64 * 1e6).round() / 1e6;
        let mut bins: Vec<TBin> = T_VISIBILITY_EDGES_US
            .iter()
            .enumerate()
            .map(|(i, &from_us)| TBin {
                from_us,
                until_us: T_VISIBILITY_EDGES_US.get(i + 1).copied(),
                ..TBin::default()
            })
            .collect();
        for &(t_ns, fresh) in pairs {
            let t_us = t_ns / 1_000;
            let bin = T_VISIBILITY_EDGES_US.partition_point(|&edge| edge <= t_us) - 1;
            bins[bin].pairs += 1;
            bins[bin].fresh += usize::from(fresh);
        }
        for bin in &mut bins {
            bin.fresh_share = (bin.pairs > 0).then(|| share(bin.fresh, bin.pairs));
        }
        let fresh = bins.iter().map(|b| b.fresh).sum();
        TVisibility {
            pairs: pairs.len(),
            fresh,
            fresh_share: if pairs.is_empty() {
                1.0
            } else {
                share(fresh, pairs.len())
            },
            bins,
        }
    }
}

/// Puts and deletes by outcome, and the acknowledged ones lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WriteCounts {
    /// Ended `ok`.
    pub acknowledged: usize,
    /// Ended `fail`: certainly not carried out.
    pub failed: usize,
    /// Ended `info` or never ended: may or may not have been carried out.
    pub indeterminate: usize,
    /// Acknowledged and lost (the `lost-write` findings, every one of them).
    pub lost: usize,
    /// `lost` / `acknowledged` (0 when nothing was acknowledged), to 4 decimals.
    pub lost_share: f64,
}

impl WriteCounts {
    /// The counts of `writes` (put and delete counts) with `lost` of them lost.
    pub fn new(writes: &[Counts], lost: usize) -> WriteCounts {
        let sum = |f: fn(&Counts) -> usize| writes.iter().map(f).sum::<usize>();
        let acknowledged = sum(|c| c.ok);
        let lost_share = if acknowledged == 0 {
            0.0
        } else {
            (lost as f64 / acknowledged as f64 * 1e4).round() / 1e4
        };
        WriteCounts {
            acknowledged,
            failed: sum(|c| c.fail),
            indeterminate: sum(|c| c.info + c.pending),
            lost,
            lost_share,
        }
    }
}

/// The figures of a history; `fresh` supplies the consistency window and convergence when the
/// freshness sweep ran.
pub(crate) fn compute(h: &History, fresh: Option<&Freshness>) -> Stats {
    let mut stats = Stats {
        events: h.events,
        keys: h.keys.len(),
        ..Stats::default()
    };
    // Per operation (get, put, delete): counts and ok latencies, in arrays (a map lookup per
    // operation was a fifth of the figures' cost); the maps are filled once at the end.
    const FS: [ClientF; 3] = [ClientF::Get, ClientF::Put, ClientF::Delete];
    let mut by_f = [Counts::default(); 3];
    let mut latencies: [Vec<u64>; 3] = Default::default();
    let mut record = |f: usize, s: Status, invoked: u64, completed: Option<u64>| {
        by_f[f].add(s);
        if let (Status::Ok, Some(c)) = (s, completed) {
            latencies[f].push(c.saturating_sub(invoked));
        }
    };
    for w in &h.writes {
        let f = if w.delete { 2 } else { 1 };
        record(f, w.status, w.invoked.time, w.completed.map(|m| m.time));
    }
    let mut siblings = [0usize; 4];
    for r in &h.reads {
        record(0, r.status, r.invoked.time, r.completed.map(|m| m.time));
        if r.status == Status::Ok {
            let sibs = h.siblings(r.siblings);
            if r.is_final {
                stats.siblings_per_read.final_reads += 1;
            } else if sibs.iter().all(|s| h.is_tombstone(r.key, s)) {
                stats.siblings_per_read.missing_key_reads += 1;
            } else {
                siblings[sibs.len().min(4) - 1] += 1;
            }
        }
    }
    for ((f, counts), mut v) in FS.into_iter().zip(by_f).zip(latencies) {
        if counts.ops == 0 {
            continue;
        }
        stats.totals.ops += counts.ops;
        stats.totals.ok += counts.ok;
        stats.totals.fail += counts.fail;
        stats.totals.info += counts.info;
        stats.totals.pending += counts.pending;
        stats.by_f.insert(f.as_str(), counts);
        if let Some(q) = Quantiles::of(&mut v) {
            stats.latency_ns.insert(f.as_str(), q);
        }
    }
    let reads: usize = siblings.iter().sum();
    stats.siblings_per_read.reads = reads;
    for (label, count) in ["1", "2", "3", "4+"].into_iter().zip(siblings) {
        stats.siblings_per_read.counts.insert(label, count);
        let share = if reads == 0 {
            0.0
        } else {
            count as f64 / reads as f64
        };
        stats
            .siblings_per_read
            .shares
            .insert(label, (share * 1e4).round() / 1e4);
    }
    for n in &h.nemesis {
        *stats.nemesis.entry(h.str(n.f).to_owned()).or_default() += 1;
    }
    if let Some(fresh) = fresh {
        let mut windows = fresh.windows_ns.clone();
        stats.consistency_window_ns = Some(Window {
            quantiles: Quantiles::of(&mut windows),
            never: fresh.never,
        });
        stats.t_visibility = Some(TVisibility::of(&fresh.t_pairs));
        stats.convergence = fresh.heal_at.map(|heal_at| Convergence {
            heal_at,
            converged_after_ns: fresh.converged_after_heal_ns,
            converged: fresh.converged_after_heal_ns.is_some(),
        });
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_visibility_bins_by_whole_ms_from_the_ack() {
        let ms = 1_000_000;
        let v = TVisibility::of(&[
            (0, false),
            (ms - 1, true),
            (ms, true),
            (4 * ms, true),
            (999 * ms, false),
            (5_000 * ms, true),
        ]);
        assert_eq!((v.pairs, v.fresh, v.fresh_share), (6, 4, 0.666667));
        let bin = |from_ms: u64| {
            v.bins
                .iter()
                .find(|b| b.from_us == from_ms * 1_000)
                .unwrap()
        };
        // 0 and 999 µs share no bin: [0, 100 µs) and [750 µs, 1 ms).
        assert_eq!(
            (bin(0).pairs, bin(0).fresh, bin(0).fresh_share),
            (1, 0, Some(0.0))
        );
        let b750 = v.bins.iter().find(|b| b.from_us == 750).unwrap();
        assert_eq!((b750.pairs, b750.fresh, b750.until_us), (1, 1, Some(1_000)));
        assert_eq!((bin(1).pairs, bin(1).until_us), (1, Some(1_500)));
        assert_eq!((bin(3).pairs, bin(3).until_us), (1, Some(5_000)));
        assert_eq!((bin(500).pairs, bin(500).fresh), (1, 0));
        assert_eq!((bin(5_000).pairs, bin(5_000).until_us), (1, None));
        assert_eq!(bin(2).fresh_share, None, "an empty bin has no share");
        assert_eq!(v.bins.len(), T_VISIBILITY_EDGES_US.len());
        assert_eq!(TVisibility::of(&[]).fresh_share, 1.0);
    }

    #[test]
    fn write_counts_add_puts_and_deletes_and_share_the_lost() {
        let put = Counts {
            ops: 10,
            ok: 6,
            fail: 2,
            info: 1,
            pending: 1,
        };
        let delete = Counts {
            ops: 3,
            ok: 2,
            fail: 1,
            info: 0,
            pending: 0,
        };
        let w = WriteCounts::new(&[put, delete], 3);
        assert_eq!(
            (w.acknowledged, w.failed, w.indeterminate, w.lost),
            (8, 3, 2, 3)
        );
        assert_eq!(w.lost_share, 0.375);
        assert_eq!(WriteCounts::new(&[], 0).lost_share, 0.0);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let q = Quantiles::of(&mut v).unwrap();
        assert_eq!(
            (q.count, q.p50, q.p95, q.p99, q.max),
            (100, 50, 95, 99, 100)
        );
        assert_eq!(Quantiles::of(&mut [7]).unwrap().p50, 7);
        assert_eq!(Quantiles::of(&mut []), None);
    }
}
