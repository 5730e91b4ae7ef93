//! summary.json and junit.xml: a seed's result ([`SeedResult`]), the counts and exit status of a
//! run ([`Counts`]), the whole run ([`Summary`]), and their renderings (the JUnit XML, the verdict
//! lines on stdout).
//!
//! Kept apart from running seeds because `dynamo merge` builds the same summary from the shards'
//! summary.json files without running anything, and `dynamo detection` reads the same results.
//! summary.json is a format CI and `dynamo merge` read: its fields change only with
//! [`SUMMARY_VERSION`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// The summary's file name.
pub const SUMMARY_FILE: &str = "summary.json";
/// The JUnit report's file name.
pub const JUNIT_FILE: &str = "junit.xml";
/// The summary.json format version.
pub const SUMMARY_VERSION: u32 = 1;

/// How a seed ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Valid,
    Invalid,
    Unknown,
    /// It could not be planned, simulated or checked.
    Error,
    /// The time limit came first.
    NotRun,
}

/// One seed's line in summary.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedResult {
    pub seed: u64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomaly_types: Vec<String>,
    /// All findings per anomaly type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub anomaly_counts: BTreeMap<String, usize>,
    /// The first finding's explanation per anomaly type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub examples: BTreeMap<String, String>,
    /// Why the verdict is unknown, or the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub ops: u64,
    #[serde(default)]
    pub faults: u64,
    #[serde(default)]
    pub sim_ms: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// The one-line command that runs this seed again.
    pub repro: String,
    /// The seed's folder, relative to the summary's directory, when its files were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The seed's workload (`cart`, `register` or `set`), when it was planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The seed's writes by outcome, when it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<WriteTotals>,
}

/// Writes by outcome (the checker's `stats.writes`), summed over seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteTotals {
    /// Ended `ok`.
    pub acknowledged: usize,
    /// Ended `fail`: certainly not carried out.
    pub failed: usize,
    /// Ended `info` or never: may or may not have been carried out.
    pub indeterminate: usize,
    /// Acknowledged and lost.
    pub lost: usize,
    /// `lost` / `acknowledged` (0 when nothing was), to 6 decimals.
    pub lost_share: f64,
}

impl WriteTotals {
    fn add(&mut self, other: &WriteTotals) {
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        self.indeterminate += other.indeterminate;
        self.lost += other.lost;
        self.lost_share = if self.acknowledged == 0 {
            0.0
        } else {
            (self.lost as f64 / self.acknowledged as f64 * 1e6).round() / 1e6
        };
    }

    /// The totals of one checked history.
    pub fn of(w: &dynamo_checker::stats::WriteCounts) -> WriteTotals {
        let mut t = WriteTotals::default();
        t.add(&WriteTotals {
            acknowledged: w.acknowledged,
            failed: w.failed,
            indeterminate: w.indeterminate,
            lost: w.lost,
            lost_share: 0.0,
        });
        t
    }
}

impl SeedResult {
    /// A result that holds only its seed, status and repro line yet.
    pub fn new(seed: u64, status: Status, repro: String) -> SeedResult {
        SeedResult {
            seed,
            status,
            anomaly_types: Vec::new(),
            anomaly_counts: BTreeMap::new(),
            examples: BTreeMap::new(),
            reasons: Vec::new(),
            ops: 0,
            faults: 0,
            sim_ms: 0,
            wall_ms: 0,
            repro,
            dir: None,
            workload: None,
            writes: None,
        }
    }
}

/// Seeds by status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub seeds: usize,
    pub valid: usize,
    pub invalid: usize,
    pub unknown: usize,
    pub error: usize,
    pub not_run: usize,
}

impl Counts {
    pub(super) fn of(results: &[SeedResult]) -> Counts {
        let mut c = Counts {
            seeds: results.len(),
            ..Counts::default()
        };
        for r in results {
            match r.status {
                Status::Valid => c.valid += 1,
                Status::Invalid => c.invalid += 1,
                Status::Unknown => c.unknown += 1,
                Status::Error => c.error += 1,
                Status::NotRun => c.not_run += 1,
            }
        }
        c
    }

    /// 1 when any seed failed, else 2 when any was unknown or an error, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid > 0 {
            1
        } else if self.unknown + self.error > 0 {
            2
        } else {
            0
        }
    }
}

/// summary.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub version: u32,
    /// The range, as `A..B`.
    pub seeds: String,
    /// `K/M` of each shard this summary covers; empty for an unsharded run.
    #[serde(default)]
    pub shards: Vec<String>,
    /// The passthrough options shared by every seed.
    pub options: BTreeMap<String, String>,
    pub jobs: usize,
    pub wall_s: f64,
    /// Seeds run per minute of wall time.
    pub seeds_per_minute: f64,
    #[serde(default)]
    pub time_limit_reached: bool,
    pub counts: Counts,
    /// How many seeds found each anomaly type.
    pub anomaly_seeds: BTreeMap<String, usize>,
    /// Writes by outcome per workload, over the checked seeds: how many acknowledged writes
    /// the run put at stake, and the share lost.
    #[serde(default)]
    pub writes_by_workload: BTreeMap<String, WriteTotals>,
    pub failing_seeds: Vec<u64>,
    pub results: Vec<SeedResult>,
}

/// How a run of seeds went, apart from their results: what [`Summary::new`] takes besides them.
#[derive(Clone, Debug, Default)]
pub(super) struct RunFacts {
    /// The passthrough options shared by every seed.
    pub options: BTreeMap<String, String>,
    /// Seeds run at once.
    pub jobs: usize,
    /// Wall time of the run, s.
    pub wall_s: f64,
    /// Whether `--time-limit` stopped the run before every seed ran.
    pub time_limit_reached: bool,
}

impl Summary {
    /// The summary of `results` (sorted here by seed), with the counts and lists derived from them.
    pub(super) fn new(
        seeds: String,
        shards: Vec<String>,
        run: RunFacts,
        mut results: Vec<SeedResult>,
    ) -> Summary {
        let RunFacts {
            options,
            jobs,
            wall_s,
            time_limit_reached,
        } = run;
        results.sort_by_key(|r| r.seed);
        let counts = Counts::of(&results);
        let mut anomaly_seeds = BTreeMap::new();
        for r in &results {
            for t in &r.anomaly_types {
                *anomaly_seeds.entry(t.clone()).or_default() += 1;
            }
        }
        let mut writes_by_workload: BTreeMap<String, WriteTotals> = BTreeMap::new();
        for r in &results {
            if let (Some(workload), Some(writes)) = (&r.workload, &r.writes) {
                writes_by_workload
                    .entry(workload.clone())
                    .or_default()
                    .add(writes);
            }
        }
        let run = counts.seeds - counts.not_run;
        Summary {
            version: SUMMARY_VERSION,
            seeds,
            shards,
            options,
            jobs,
            wall_s,
            seeds_per_minute: if wall_s > 0.0 {
                run as f64 * 60.0 / wall_s
            } else {
                0.0
            },
            time_limit_reached,
            counts,
            anomaly_seeds,
            writes_by_workload,
            failing_seeds: results
                .iter()
                .filter(|r| r.status == Status::Invalid)
                .map(|r| r.seed)
                .collect(),
            results,
        }
    }
}

/// junit.xml: one test case per seed; a failing seed is a `<failure>` naming its anomaly types, with
/// the repro command and an example of each; unknown and errors are `<error>`; not run is `<skipped>`.
/// Written by quick-junit (the XML, its escaping and the suite counts are its business).
pub fn junit(s: &Summary) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let name = if s.shards.is_empty() {
        format!("dynamo nightly {}", s.seeds)
    } else {
        format!("dynamo nightly {} shard {}", s.seeds, s.shards.join(","))
    };
    let mut suite = TestSuite::new(name);
    suite.set_time(Duration::from_secs_f64(s.wall_s.max(0.0)));
    for r in &s.results {
        let files = r
            .dir
            .as_deref()
            .map(|d| format!("\nfiles: {d}"))
            .unwrap_or_default();
        let status = match r.status {
            Status::Valid => TestCaseStatus::success(),
            Status::Invalid => {
                let mut body = format!("repro: {}{files}\n", r.repro);
                for (t, example) in &r.examples {
                    let n = r.anomaly_counts.get(t).copied().unwrap_or(0);
                    let _ = writeln!(body, "{t} ({n}): {example}");
                }
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(r.anomaly_types.join(", "))
                    .set_type(r.anomaly_types.first().map_or("anomaly", String::as_str))
                    .set_description(body);
                status
            }
            Status::Unknown | Status::Error => {
                let what = if r.status == Status::Unknown {
                    "unknown"
                } else {
                    "error"
                };
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                status
                    .set_message(format!("{what}: {}", r.reasons.join("; ")))
                    .set_type(what)
                    .set_description(format!(
                        "repro: {}{files}\n{}\n",
                        r.repro,
                        r.reasons.join("\n")
                    ));
                status
            }
            Status::NotRun => {
                let mut status = TestCaseStatus::skipped();
                status.set_message("not run: the time limit was reached");
                status
            }
        };
        let mut case = TestCase::new(format!("seed {}", r.seed), status);
        case.set_classname("dynamo.nightly")
            .set_time(Duration::from_millis(r.wall_ms));
        suite.add_test_case(case);
    }
    let mut report = Report::new("dynamo nightly");
    report
        .set_time(Duration::from_secs_f64(s.wall_s.max(0.0)))
        .add_test_suite(suite);
    report
        .to_string()
        .expect("a report of plain strings serialises")
}

/// Writes summary.json and junit.xml into `out`.
pub(super) fn write_summary(out: &Path, summary: &Summary) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(summary).expect("summary serialises");
    std::fs::write(out.join(SUMMARY_FILE), json + "\n")
        .and_then(|()| std::fs::write(out.join(JUNIT_FILE), junit(summary)))
        .map_err(|e| format!("cannot write into {}: {e}", out.display()))
}

/// The first few seeds of a list, and how many more there are.
pub(super) fn seed_list(seeds: &[u64]) -> String {
    const SHOWN_MAX: usize = 20;
    let shown: Vec<String> = seeds.iter().take(SHOWN_MAX).map(u64::to_string).collect();
    let more = seeds.len().saturating_sub(SHOWN_MAX);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The verdict on stdout: counts, failing seeds, and where the files are.
pub(super) fn print_verdict(s: &Summary, out: &Path) {
    let c = &s.counts;
    let run = c.seeds - c.not_run;
    let mut line = format!(
        "nightly: {run} seeds in {:.1} s ({:.1} seeds/min on {} jobs): {} valid, {} INVALID, {} unknown, {} error",
        s.wall_s, s.seeds_per_minute, s.jobs, c.valid, c.invalid, c.unknown, c.error
    );
    if c.not_run > 0 {
        let _ = write!(line, ", {} not run (time limit)", c.not_run);
    }
    outln!("{line}");
    if !s.failing_seeds.is_empty() {
        let types: Vec<String> = s
            .anomaly_seeds
            .iter()
            .map(|(t, n)| format!("{t} in {n}"))
            .collect();
        outln!(
            "failing seeds: {} ({})",
            seed_list(&s.failing_seeds),
            types.join(", ")
        );
    }
    for (workload, w) in &s.writes_by_workload {
        outln!(
            "{workload}: {} acknowledged writes, {} failed, {} indeterminate; {} acknowledged lost ({:.4}%)",
            w.acknowledged,
            w.failed,
            w.indeterminate,
            w.lost,
            100.0 * w.lost_share
        );
    }
    outln!(
        "summary: {}  junit: {}",
        out.join(SUMMARY_FILE).display(),
        out.join(JUNIT_FILE).display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(seed: u64, status: Status) -> SeedResult {
        SeedResult {
            seed,
            status,
            anomaly_types: if status == Status::Invalid {
                vec!["lost-write".into()]
            } else {
                Vec::new()
            },
            anomaly_counts: BTreeMap::new(),
            examples: [("lost-write".to_string(), "put <x> & lost".to_string())].into(),
            reasons: vec!["nothing was acknowledged".into()],
            ops: 10,
            faults: 1,
            sim_ms: 100,
            wall_ms: 250,
            repro: format!("dynamo sim --seed {seed}"),
            dir: Some(format!("seed-{seed}")),
            workload: None,
            writes: None,
        }
    }

    #[test]
    fn writes_add_up_per_workload() {
        let with = |seed, workload: &str, acknowledged, lost| SeedResult {
            workload: Some(workload.to_owned()),
            writes: Some(WriteTotals {
                acknowledged,
                failed: 1,
                indeterminate: 2,
                lost,
                lost_share: 0.0,
            }),
            ..result(seed, Status::Valid)
        };
        let s = Summary::new(
            "0..4".into(),
            Vec::new(),
            RunFacts {
                options: BTreeMap::new(),
                jobs: 1,
                wall_s: 1.0,
                time_limit_reached: false,
            },
            vec![
                with(0, "cart", 100, 0),
                with(1, "cart", 300, 3),
                with(2, "register", 50, 0),
                result(3, Status::Error),
            ],
        );
        let cart = s.writes_by_workload["cart"];
        assert_eq!(
            (
                cart.acknowledged,
                cart.failed,
                cart.indeterminate,
                cart.lost
            ),
            (400, 2, 4, 3)
        );
        assert_eq!(cart.lost_share, 0.0075);
        assert_eq!(s.writes_by_workload["register"].lost_share, 0.0);
        assert_eq!(
            s.writes_by_workload.len(),
            2,
            "an unchecked seed counts nowhere"
        );
        // summary.json keeps them, and a summary written before them still reads.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["writes_by_workload"]["cart"]["lost"], 3);
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("writes_by_workload");
        let back: Summary = serde_json::from_value(old).unwrap();
        assert!(back.writes_by_workload.is_empty());
    }

    #[test]
    fn junit_has_a_case_per_seed_and_exit_codes_follow_jepsen() {
        let s = Summary::new(
            "0..4".into(),
            vec!["0/1".into()],
            RunFacts {
                options: BTreeMap::new(),
                jobs: 2,
                wall_s: 1.0,
                time_limit_reached: true,
            },
            vec![
                result(3, Status::NotRun),
                result(0, Status::Valid),
                result(1, Status::Invalid),
                result(2, Status::Unknown),
            ],
        );
        assert_eq!(s.failing_seeds, vec![1]);
        assert_eq!(s.counts.exit_code(), 1);
        let x = junit(&s);
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert!(x.contains(r#"tests="4" failures="1" errors="1""#));
        assert!(x.contains(r#"<testcase name="seed 1" classname="dynamo.nightly" time="0.250">"#));
        assert!(x.contains(
            r#"<failure message="lost-write" type="lost-write">repro: dynamo sim --seed 1"#
        ));
        assert!(
            x.contains(r#"<error message="unknown: nothing was acknowledged" type="unknown">"#)
        );
        assert!(x.contains("put &lt;x&gt; &amp; lost"));
        assert!(x.contains(r#"<skipped message="not run"#));
        let unknown = Counts {
            seeds: 2,
            valid: 1,
            unknown: 1,
            ..Counts::default()
        };
        assert_eq!(unknown.exit_code(), 2);
        assert_eq!(Counts::default().exit_code(), 0);
    }
}
