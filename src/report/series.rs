//! The plots' data: latency of every operation over time (or, past [`POINTS_MAX`], its quantiles
//! per fine time bin), latency quantiles per time bin, throughput by outcome, siblings per read, and
//! the consistency window. Times in seconds and latencies in milliseconds, as the axes show them.

use super::digest::Digest;
use super::timeline::{Timeline, Tone};
use dynamo_checker::history::{ClientF, Outcome};
use dynamo_checker::stats::nearest_rank;
use serde_json::Value;

/// The most operations plotted one point each.
pub const POINTS_MAX: usize = 5_000;
/// Time bins of the quantile and throughput plots.
pub const BINS: usize = 60;
/// Time bins of the latency plot when it is summarised.
pub const BINS_FINE: usize = 300;

/// One operation's latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub t_s: f64,
    pub latency_ms: f64,
    pub f: ClientF,
    pub tone: Tone,
}

/// Runs of bins with no empty bin between them: a line must not bridge a stretch with no operations.
pub fn contiguous(bins: &[QuantileBin], bin_s: f64) -> Vec<&[QuantileBin]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=bins.len() {
        if i == bins.len() || bins[i].t_s - bins[i - 1].t_s > 1.5 * bin_s {
            if i > start {
                runs.push(&bins[start..i]);
            }
            start = i;
        }
    }
    runs
}

/// Latency quantiles of the ok operations invoked in one time bin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileBin {
    /// The bin's middle.
    pub t_s: f64,
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Operations completed per second in one time bin, by outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateBin {
    pub t_s: f64,
    pub ok: f64,
    pub fail: f64,
    pub info: f64,
}

/// The checker's consistency window (results.json `stats.consistency_window_ns`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Acknowledged writes whose window never closed.
    pub never: u64,
}

/// One non-empty bin of the checker's t-visibility (results.json `stats.t_visibility`): t since the
/// latest ack, and the share of reads that saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct VisibilityBin {
    /// `[from, until)` in ms, as the axis shows it: "0", "3-4", "1000+".
    pub label: String,
    pub pairs: u64,
    pub fresh_share: f64,
}

/// Everything the plots draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub end_s: f64,
    /// Fault intervals (start, end, kind), seconds.
    pub shades: Vec<(f64, f64, String)>,
    /// Every client operation that completed, or empty past [`POINTS_MAX`].
    pub points: Vec<Point>,
    /// Past [`POINTS_MAX`]: quantiles per fine bin, standing in for the points.
    pub fine: Vec<QuantileBin>,
    pub quantiles: Vec<QuantileBin>,
    /// The width of a bin of `quantiles` and of `rates`, and of `fine`, seconds.
    pub bin_s: f64,
    pub fine_bin_s: f64,
    pub rates: Vec<RateBin>,
    /// Ok reads by siblings returned: 0, 1, 2, 3, 4+.
    pub siblings: [usize; 5],
    pub window: Option<Window>,
    /// P(fresh | t), the non-empty bins; empty when the checker did not compute it.
    pub visibility: Vec<VisibilityBin>,
}

fn s(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn quantile_bins(d: &Digest, bins: usize, end_ns: u64) -> Vec<QuantileBin> {
    let width = end_ns.div_ceil(bins as u64).max(1);
    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); bins];
    for op in d.ops.iter().filter(|o| o.outcome == Some(Outcome::Ok)) {
        if let Some(l) = op.latency_ns() {
            let b = ((op.start_ns / width) as usize).min(bins - 1);
            samples[b].push(l);
        }
    }
    samples
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(b, mut v)| {
            v.sort_unstable();
            QuantileBin {
                t_s: s(b as u64 * width + width / 2),
                count: v.len(),
                p50_ms: ms(nearest_rank(&v, 0.5)),
                p95_ms: ms(nearest_rank(&v, 0.95)),
                p99_ms: ms(nearest_rank(&v, 0.99)),
                max_ms: ms(*v.last().expect("non-empty")),
            }
        })
        .collect()
}

fn window(stats: &Value) -> Option<Window> {
    let w = stats.get("consistency_window_ns")?;
    let n = |k: &str| w.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Window {
        count: n("count"),
        p50_ms: ms(n("p50")),
        p95_ms: ms(n("p95")),
        p99_ms: ms(n("p99")),
        max_ms: ms(n("max")),
        never: n("never"),
    })
}

/// µs as ms for a bin's label: `0.1`, `1.5`, `20`.
fn ms_text(us: u64) -> String {
    if us.is_multiple_of(1_000) {
        (us / 1_000).to_string()
    } else {
        format!("{}", us as f64 / 1_000.0)
    }
}

fn visibility(stats: &Value) -> Vec<VisibilityBin> {
    let bins = stats
        .pointer("/t_visibility/bins")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    bins.iter()
        .filter_map(|b| {
            // The bin's lower edge: twenty labels of a range would overlap; the caption says so.
            let from = b.get("from_us")?.as_u64()?;
            let label = match b.get("until_us") {
                Some(_) => ms_text(from),
                None => format!("{}+", ms_text(from)),
            };
            Some(VisibilityBin {
                label,
                pairs: b.get("pairs")?.as_u64()?,
                fresh_share: b.get("fresh_share")?.as_f64()?,
            })
        })
        .collect()
}

/// The series of a digest; fault intervals come from its timeline, the window from results' stats.
pub fn build(d: &Digest, timeline: &Timeline, stats: &Value) -> Series {
    let end_ns = d.end_ns.max(1);
    let completed = d.ops.iter().filter(|o| o.end_ns.is_some()).count();
    let points = if completed <= POINTS_MAX {
        d.ops
            .iter()
            .filter_map(|o| {
                Some(Point {
                    t_s: s(o.start_ns),
                    latency_ms: ms(o.latency_ns()?),
                    f: o.f,
                    tone: match o.outcome? {
                        Outcome::Ok => Tone::Ok,
                        Outcome::Fail => Tone::Fail,
                        Outcome::Info => Tone::Info,
                    },
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let fine = if points.is_empty() && completed > 0 {
        quantile_bins(d, BINS_FINE, end_ns)
    } else {
        Vec::new()
    };
    let width = end_ns.div_ceil(BINS as u64).max(1);
    let mut counts = vec![[0usize; 3]; BINS];
    for op in &d.ops {
        let (Some(end), Some(outcome)) = (op.end_ns, op.outcome) else {
            continue;
        };
        let b = ((end / width) as usize).min(BINS - 1);
        counts[b][match outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        }] += 1;
    }
    let per_s = 1e9 / width as f64;
    let rates = counts
        .iter()
        .enumerate()
        .map(|(b, c)| RateBin {
            t_s: s(b as u64 * width + width / 2),
            ok: c[0] as f64 * per_s,
            fail: c[1] as f64 * per_s,
            info: c[2] as f64 * per_s,
        })
        .collect();
    Series {
        end_s: s(end_ns),
        shades: timeline
            .shades
            .iter()
            .map(|sh| (s(sh.start_ns), s(sh.end_ns), sh.kind.clone()))
            .collect(),
        points,
        fine,
        quantiles: quantile_bins(d, BINS, end_ns),
        bin_s: s(width),
        fine_bin_s: s(end_ns.div_ceil(BINS_FINE as u64).max(1)),
        rates,
        siblings: d.siblings_per_read,
        window: window(stats),
        visibility: visibility(stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::digest::OpRec;
    use crate::report::timeline;
    use serde_json::json;

    fn op(start_ns: u64, latency_ns: u64, outcome: Outcome) -> OpRec {
        OpRec {
            process: 1,
            f: ClientF::Put,
            outcome: Some(outcome),
            key: 0,
            start_ns,
            end_ns: Some(start_ns + latency_ns),
            is_final: false,
        }
    }

    #[test]
    fn lines_break_where_bins_are_empty() {
        let bin = |t_s: f64| QuantileBin {
            t_s,
            count: 1,
            p50_ms: 1.0,
            p95_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
        };
        let bins = [bin(0.5), bin(1.5), bin(4.5), bin(5.5), bin(9.5)];
        let runs: Vec<usize> = contiguous(&bins, 1.0).iter().map(|r| r.len()).collect();
        assert_eq!(runs, vec![2, 2, 1]);
        assert!(contiguous(&[], 1.0).is_empty());
    }

    #[test]
    fn quantiles_throughput_and_window() {
        let mut d = Digest {
            keys: vec!["k".into()],
            end_ns: 60_000_000_000,
            ..Digest::default()
        };
        // In the first second: latencies 1..=100 ms, all ok; one fail.
        for i in 1..=100u64 {
            d.ops.push(op(i * 1_000_000, i * 1_000_000, Outcome::Ok));
        }
        d.ops.push(op(500_000_000, 1_000_000, Outcome::Fail));
        let t = timeline::build(&d, None);
        let stats = json!({"consistency_window_ns": {"count": 4, "p50": 2_000_000, "p95": 3_000_000,
            "p99": 3_000_000, "max": 9_000_000, "never": 1}});
        let s = build(&d, &t, &stats);
        assert_eq!(s.points.len(), 101);
        assert!(s.fine.is_empty());
        let q = s.quantiles[0];
        assert_eq!(
            (q.count, q.p50_ms, q.p99_ms, q.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        // 100 ok and 1 fail completed within the first one-second bin.
        assert_eq!((s.rates[0].ok, s.rates[0].fail), (100.0, 1.0));
        assert_eq!(s.rates.len(), BINS);
        assert_eq!(s.bin_s, 1.0);
        let w = s.window.unwrap();
        assert_eq!((w.count, w.p50_ms, w.max_ms, w.never), (4, 2.0, 9.0, 1));
    }
}
