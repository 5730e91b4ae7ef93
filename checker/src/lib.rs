//! `dynamo-checker` reads a Dynamo history (`shared/history-format.md`) and decides whether any
//! acknowledged write was lost and whether the replicas converged, and says why in terms an engineer
//! can follow: every finding carries the writes, reads and final state that witness it.
//!
//! It knows nothing of the node crate: it checks a history that any Dynamo-style store produced,
//! written by any client.
//!
//! ```no_run
//! let (results, warnings) = dynamo_checker::check_path(std::path::Path::new("store/latest"))?;
//! for w in &warnings {
//!     eprintln!("warning: {w}");
//! }
//! println!("{}", dynamo_checker::summary(&results));
//! std::process::exit(results.exit_code());
//! # Ok::<(), dynamo_checker::ParseError>(())
//! ```
//!
//! # Layout
//!
//! - [`history`]: the file format. Serde types for every event ([`Event`]), the streaming parser
//!   that enforces the structural rules and folds lines into the compact, interned [`History`].
//! - [`graph`]: the causality graph ([`Graph`], petgraph): one vertex per write, observed edges (what
//!   clients saw: the only ground truth, plus the page's substitute in a v1 history) and clock edges
//!   (the store's order by dots and clocks, only compared with the ground truth), with per-key
//!   ancestor bitsets so that causality questions are bit tests.
//! - [`checks`]: one pure function per anomaly type, from history, graph and final state to
//!   [`Finding`]s (data and witnesses only).
//! - [`stats`]: the figures (op counts, latency quantiles, siblings per read, consistency window,
//!   convergence after the heal).
//!
//! The final state is the `replica-state` events and nothing else; a history whose format version is
//! 1 (no `history_format`) is checked with the page's two v1 substitutes.
//! - [`results`]: the three-valued verdict and the results.json shape.
//! - [`explain`](mod@explain): the wording of findings and the human summary, kept apart from their data.
//!
//! [`check`] composes them: each check runs under `catch_unwind`, so a bug in one makes the verdict
//! unknown instead of crashing the run. Writing files is the caller's business.

pub mod checks;
pub mod explain;
pub mod graph;
pub mod history;
pub mod results;
pub mod stats;

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

pub use checks::{Finding, Kind};
pub use explain::{explain, summary};
pub use graph::Graph;
pub use history::{Event, History, ParseError, Parsed, parse_file, parse_reader};
pub use results::{Results, Validity};
pub use stats::Stats;

use checks::finals::Finals;
use checks::{CHECKS, Check, Ctx};
use history::Status;

/// The file `check_path` looks for in a directory.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The message of a caught panic (`std::panic::catch_unwind`'s payload).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with no message".to_owned()
    }
}

/// Runs `f`, turning a panic into an error message naming `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| format!("{what} panicked: {}", panic_message(p.as_ref())))
}

/// How [`check_with`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The most findings of one kind kept with their witnesses; the rest are only counted.
    pub findings_per_kind_max: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            findings_per_kind_max: checks::FINDINGS_PER_KIND_MAX,
        }
    }
}

/// Checks a history: every anomaly and warning of history-format.md, and the figures.
///
/// `valid` is false when any anomaly was found; otherwise unknown when nothing was acknowledged, the
/// final replica state is missing, or a check could not decide or panicked; otherwise true.
pub fn check(history: &History) -> Results {
    check_with(history, &Options::default())
}

/// [`check`], with options (e.g. every finding kept, for tests that look for one write).
pub fn check_with(history: &History, options: &Options) -> Results {
    let mut unknown: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut outcomes: Vec<(Kind, Check)> = Vec::new();
    let mut fresh = None;

    match (
        guarded("building the causality graph", || Graph::build(history)),
        guarded("indexing the final state", || Finals::build(history)),
    ) {
        (Ok(graph), Ok(finals)) => {
            if graph.dropped_observed > 0 {
                notes.push(format!(
                    "{} observed entries were not made edges",
                    graph.dropped_observed
                ));
                notes.extend(graph.notes.iter().cloned());
            }
            if history.dot_only_reports > 0 {
                notes.push(format!(
                    "{} versions were reported with a dot and no clock: a dot alone does not say \
                     what the version's writer had seen, so false-dominance and clock-regression \
                     do not judge those versions",
                    history.dot_only_reports
                ));
            }
            if history.format() == history::Format::V1 {
                notes.push(format!(
                    "a v1 history (no history_format): reads omit tombstones, so a write also observed the earlier deletes whose dots its context covers ({} such edges), and quorum-read-miss and stale-read do not hold a read to a write a delete invoked before it had removed",
                    graph.edge_count(graph::EdgeKind::Context)
                ));
            }
            let ctx = Ctx {
                h: history,
                g: &graph,
                finals: &finals,
                findings_max: options.findings_per_kind_max,
            };
            for (kind, run) in CHECKS {
                match guarded(kind.as_str(), || run(&ctx)) {
                    Ok(c) => outcomes.push((kind, c)),
                    Err(e) => unknown.push(e),
                }
            }
            match guarded(Kind::StaleRead.as_str(), || {
                checks::freshness::analyze(&ctx)
            }) {
                Ok(f) => fresh = Some(f),
                Err(e) => unknown.push(e),
            }
        }
        (graph, finals) => {
            unknown.extend(graph.err());
            unknown.extend(finals.err());
        }
    }

    let mut anomalies = BTreeMap::new();
    let mut warnings = BTreeMap::new();
    let mut anomaly_counts = BTreeMap::new();
    let mut warning_counts = BTreeMap::new();
    let stale = fresh.as_mut().map(|f: &mut checks::freshness::Freshness| {
        (Kind::StaleRead, std::mem::take(&mut f.check))
    });
    for (kind, c) in outcomes.into_iter().chain(stale) {
        // A kind is found when it has findings in all (`total`), however few of them keep their
        // witnesses: the verdict never depends on `findings_per_kind_max` (with 0, every finding
        // is only counted, and an anomaly still makes the history invalid).
        if kind.is_anomaly() {
            unknown.extend(c.unknown);
            anomaly_counts.insert(kind, c.total);
            if c.total > 0 {
                anomalies.insert(kind, c.findings);
            }
        } else {
            // A warning check that could not look at everything does not make the verdict unknown.
            notes.extend(c.unknown);
            warning_counts.insert(kind, c.total);
            if c.total > 0 {
                warnings.insert(kind, c.findings);
            }
        }
    }
    let acknowledged = history.writes.iter().any(|w| w.status == Status::Ok);
    if !acknowledged {
        unknown.push("nothing was acknowledged: no put or delete ended ok".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    unknown.retain(|u| seen.insert(u.clone()));

    let mut stats = match guarded("computing the figures", || {
        stats::compute(history, fresh.as_ref())
    }) {
        Ok(s) => s,
        Err(e) => {
            notes.push(e);
            Stats::default()
        }
    };
    let writes: Vec<stats::Counts> = ["put", "delete"]
        .iter()
        .filter_map(|f| stats.by_f.get(f).copied())
        .collect();
    let lost = anomaly_counts.get(&Kind::LostWrite).copied().unwrap_or(0);
    stats.writes = stats::WriteCounts::new(&writes, lost);
    stats.anomaly_counts = anomaly_counts;
    stats.warning_counts = warning_counts;

    let valid = if !anomalies.is_empty() {
        Validity::False
    } else if !unknown.is_empty() {
        Validity::Unknown
    } else {
        Validity::True
    };
    stats.unknown = unknown;
    stats.notes = notes;
    Results {
        valid,
        anomalies,
        warnings,
        stats,
    }
}

/// Parses and checks a history file, or the `history.jsonl` of a directory. Returns the results and
/// the parser's warnings (e.g. a truncated last line that was skipped). The warnings are also the
/// first of the results' `stats.notes`: results.json then says itself that a line was skipped, so a
/// verdict read from the file alone is never taken for one on the whole history.
pub fn check_path(path: &Path) -> Result<(Results, Vec<String>), ParseError> {
    let file = if path.is_dir() {
        path.join(HISTORY_FILE)
    } else {
        path.to_owned()
    };
    let Parsed { history, warnings } = parse_file(&file)?;
    let mut results = check(&history);
    results.stats.notes.splice(0..0, warnings.iter().cloned());
    Ok((results, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_check() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r: Result<(), String> = guarded("lost-write", || panic!("boom {}", 7));
        std::panic::set_hook(hook);
        assert_eq!(r, Err("lost-write panicked: boom 7".to_owned()));
        assert_eq!(guarded("x", || 3), Ok(3));
    }
}
