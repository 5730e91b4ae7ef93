//! `dynamo nightly` and `dynamo merge`: many seeds, each with its own fault mix and options drawn from
//! the seed, run J at a time on worker threads, with results a CI system can read.
//!
//! Each turmoil simulation lives on the thread that runs it (its world is thread-local), so a worker
//! thread runs one seed at a time to completion: plan, simulate, check in memory. Passing seeds leave
//! nothing on disk but their line in `summary.json`; a failing seed gets `DIR/seed-S/` with its history,
//! plan, results, report and `repro.txt`, the one-line command that reproduces it. `--shard K/M` keeps
//! the seeds with seed % M == K, so that M machines split one range and `dynamo merge` joins them and
//! checks that every seed was covered exactly once.
//!
//! Exit status: 1 when any seed failed, else 2 when any was unknown or could not run, else 0. Seeds
//! left unstarted at `--time-limit` are recorded as not run and do not change it.

use crate::sim::{repro_command, shell_word, write_run};
use clap::Args;
use dynamo_checker::{Validity, check, explain, parse_reader};
use dynamo_node::config::Bug;
use dynamo_workloads::generate::possible_kinds;
use dynamo_workloads::plan::{KeyDist, NemesisKind, NodeOptions, Plan, SimConfig, Workload};
use dynamo_workloads::prng::{SplitMix64, mix64};
use dynamo_workloads::run;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The summary's file name.
pub const SUMMARY_FILE: &str = "summary.json";
/// The JUnit report's file name.
pub const JUNIT_FILE: &str = "junit.xml";
/// The one-line reproduction command's file name in a failing seed's folder.
pub const REPRO_FILE: &str = "repro.txt";
/// The summary.json format version.
pub const SUMMARY_VERSION: u32 = 1;
/// Most seeds one run may cover (a typo in a range should not queue a billion runs).
pub const SEEDS_MAX: u64 = 10_000_000;
/// Most worker threads.
pub const JOBS_MAX: usize = 256;
/// A worker's stack: a simulation's futures are deep, and unoptimised builds need more.
pub const WORKER_STACK_BYTES: usize = 64 << 20;
/// Seconds between progress lines when stderr is not a terminal.
pub const PROGRESS_LINE_INTERVAL_S: u64 = 10;
/// Milliseconds between redraws of the progress line on a terminal.
pub const PROGRESS_REDRAW_MS: u64 = 200;
/// The default planned operations per seed (the issue's target: 1,000 seeds of 1,000 ops).
pub const OPS_DEFAULT: usize = 1_000;

/// Options of `dynamo nightly`.
#[derive(Args, Debug)]
pub struct NightlyArgs {
    /// The seeds: A..B (B excluded), A..=B, or one seed.
    #[arg(long)]
    seeds: String,
    /// Simulations at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only the seeds with seed % M == K: K/M.
    #[arg(long)]
    shard: Option<String>,
    /// Start no new seed after this long (e.g. 30m, 90s, 1h30m); the rest are recorded as not run.
    #[arg(long)]
    time_limit: Option<String>,
    /// Where to write summary.json, junit.xml and a folder per failing seed.
    #[arg(long)]
    out: PathBuf,
    /// Client operations planned per seed.
    #[arg(long, default_value_t = OPS_DEFAULT)]
    ops: usize,
    /// A deliberate bug for every node of every seed (to test the pipeline).
    #[arg(long)]
    bug: Option<Bug>,
    /// Use this fault mix for every seed instead of one drawn per seed (as `dynamo sim --nemesis`).
    #[arg(long)]
    nemesis: Option<String>,
    /// Use this workload for every seed instead of one drawn per seed.
    #[arg(long)]
    workload: Option<Workload>,
    /// Keep the files of passing seeds too.
    #[arg(long)]
    keep_passing: bool,
}

/// Options of `dynamo merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The output directories of the shards' `dynamo nightly` runs.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where to write the combined summary.json and junit.xml.
    #[arg(long)]
    out: PathBuf,
}

/// The seeds of a run: `A..B`, `A..=B` or `N`.
pub fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>, String> {
    let bad = || format!("--seeds {s:?}: use A..B (B excluded), A..=B, or one seed");
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
    let range = if let Some((a, b)) = s.split_once("..=") {
        num(a)?..num(b)?.checked_add(1).ok_or_else(bad)?
    } else if let Some((a, b)) = s.split_once("..") {
        num(a)?..num(b)?
    } else {
        let n = num(s)?;
        n..n + 1
    };
    if range.is_empty() {
        return Err(format!("--seeds {s:?} is empty"));
    }
    if range.end - range.start > SEEDS_MAX {
        return Err(format!("--seeds {s:?} has more than {SEEDS_MAX} seeds"));
    }
    Ok(range)
}

/// `K/M`: this is shard K of M.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("--shard {s:?}: use K/M with 0 <= K < M");
    let (k, m) = s.split_once('/').ok_or_else(bad)?;
    let (k, m): (u64, u64) = (
        k.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    );
    if m == 0 || k >= m {
        return Err(bad());
    }
    Ok((k, m))
}

/// A duration: `90s`, `30m`, `1h30m`, `500ms`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("duration {s:?}: use e.g. 90s, 30m, 1h30m, 500ms");
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_s = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::from_secs_f64(value * unit_s);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// What every seed shares: the command line's passthrough options.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub ops: usize,
    pub bug: Option<Bug>,
    pub nemesis: Option<Vec<NemesisKind>>,
    pub workload: Option<Workload>,
}

/// Separates the nightly's draws from the plan's, which come from the same seed.
const NIGHTLY_STREAM: u64 = 0x6e69_6768_746c_7932; // "nightly2"

/// A seed's configuration: its fault mix and options drawn from the seed itself (so the same seed is
/// the same run in every nightly, whatever the range or shard), then the passthrough options. Each
/// seed draws its own mix, density and overlap of faults (swarm testing: a fault that masks another
/// is absent from some seeds), a strict quorum on about a third of the seeds (where a read that
/// misses an acknowledged write is a `quorum-read-miss`), and no fault at all on one in twenty.
///
/// Every draw keeps the promises the correct node makes: N=3 with W >= 2 (wipes and disk damage are
/// confined to W-1 nodes, see [`SimConfig::expendable_nodes`]), fsync always. A failure of the
/// correct node under these settings is a bug.
pub fn seed_config(seed: u64, o: &Overrides) -> SimConfig {
    let mut d = SplitMix64::new(mix64(seed ^ NIGHTLY_STREAM));
    let workload = if d.chance(1, 2) {
        Workload::Cart
    } else {
        Workload::Register
    };
    let nodes = d.pick(&[3usize, 4, 5, 5, 6, 7]);
    // W = 3 leaves two nodes that destructive faults may hit (the first W - 1), which the
    // durability bugs need; R + W > N on five draws of seven, where `quorum-read-miss` applies.
    let (r, w) = d.pick(&[
        (2usize, 2usize),
        (2, 2),
        (1, 2),
        (2, 3),
        (1, 3),
        (1, 3),
        (3, 2),
    ]);
    // A strict quorum is where R + W > N promises fresh reads (`early-ack` is caught there).
    let strict_quorum = d.chance(1, 3);
    let clients = d.pick(&[2usize, 4, 6, 8, 8, 12, 16]);
    // Measured (BENCHMARKS.md, detection power): one to five keys are repaired so fast, and read
    // with such fresh contexts, that the durability bugs rarely show; they stay in the mix for
    // contention, on two draws of eight.
    let keys = d.pick(&[1usize, 5, 10, 20, 20, 50, 50, 200]);
    let key_dist = if d.chance(2, 3) {
        KeyDist::Zipf { exponent: 1.0 }
    } else {
        KeyDist::Uniform
    };
    // Each kind in or out on its own (swarm testing: a fault that masks another is absent from
    // some seeds); the faults that destroy state, which the durability bugs need, more often than
    // the others (4 in 5: measured on seeds 103000..103300, 3 in 4 left `keep-actor-on-recovery`
    // at 50%, since only damage at rest shows it).
    let nemesis = if d.chance(1, 20) {
        Vec::new()
    } else {
        let mut kinds: Vec<NemesisKind> = NemesisKind::ALL
            .into_iter()
            .filter(|kind| match kind {
                NemesisKind::Partition
                | NemesisKind::Crash
                | NemesisKind::Wipe
                | NemesisKind::Power
                | NemesisKind::Disk => d.chance(4, 5),
                _ => d.chance(1, 2),
            })
            .collect();
        if kinds.is_empty() {
            kinds = NemesisKind::ALL.to_vec();
        }
        kinds
    };
    let fault_gap_ops = d.pick(&[25u64, 25, 50, 50, 100]);
    let fault_duration_ms = d.pick(&[300u64, 1_000, 1_000, 2_000, 3_000]);
    let fault_overlap_percent = d.pick(&[0u32, 20, 40, 60]);
    let think_ms_max = d.pick(&[0u64, 5, 20, 20, 50]);
    let mut config = SimConfig {
        seed,
        nodes,
        clients,
        ops: o.ops,
        keys,
        key_dist,
        workload: o.workload.unwrap_or(workload),
        nemesis: o.nemesis.clone().unwrap_or(nemesis),
        n: 3,
        r,
        w,
        bug: o.bug,
        think_ms_max,
        fault_gap_ops,
        fault_duration_ms,
        fault_overlap_percent,
        node: NodeOptions {
            sloppy_quorum: !strict_quorum,
            ..NodeOptions::default()
        },
        ..SimConfig::default()
    };
    // Only the kinds this configuration can have, so that the repro line says what ran; a mix
    // of impossible kinds alone (membership with N nodes, found by seed 86561) takes every kind
    // that is possible instead of failing to plan.
    if o.nemesis.is_none() && !config.nemesis.is_empty() {
        let possible = possible_kinds(&config);
        config.nemesis = if possible.is_empty() {
            possible_kinds(&SimConfig {
                nemesis: NemesisKind::ALL.to_vec(),
                ..config.clone()
            })
        } else {
            possible
        };
    }
    config
}

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
    fn of(results: &[SeedResult]) -> Counts {
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
    pub failing_seeds: Vec<u64>,
    pub results: Vec<SeedResult>,
}

impl Summary {
    fn new(
        seeds: String,
        shards: Vec<String>,
        options: BTreeMap<String, String>,
        jobs: usize,
        wall_s: f64,
        time_limit_reached: bool,
        mut results: Vec<SeedResult>,
    ) -> Summary {
        results.sort_by_key(|r| r.seed);
        let counts = Counts::of(&results);
        let mut anomaly_seeds = BTreeMap::new();
        for r in &results {
            for t in &r.anomaly_types {
                *anomaly_seeds.entry(t.clone()).or_default() += 1;
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

/// The progress line: redrawn in place on a terminal, a line every few seconds elsewhere (a CI log).
struct Progress {
    tty: bool,
    total: usize,
    start: Instant,
    last: Instant,
    drawn: bool,
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Progress {
    fn new(total: usize) -> Progress {
        let now = Instant::now();
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            start: now,
            last: now,
            drawn: false,
        }
    }

    fn text(&self, done: usize, failed: usize, other: usize) -> String {
        let elapsed = self.start.elapsed();
        let eta = if done > 0 {
            let per = elapsed.as_secs_f64() / done as f64;
            fmt_duration(Duration::from_secs_f64(per * (self.total - done) as f64))
        } else {
            "?".to_owned()
        };
        let rate = done as f64 * 60.0 / elapsed.as_secs_f64().max(1e-3);
        format!(
            "{done}/{} seeds, {failed} failed, {other} unknown/error, {} elapsed, ETA {eta}, {rate:.0} seeds/min",
            self.total,
            fmt_duration(elapsed)
        )
    }

    /// Updates the line; `force` prints even between intervals.
    fn update(&mut self, done: usize, failed: usize, other: usize, force: bool) {
        let now = Instant::now();
        let mut err = std::io::stderr().lock();
        if self.tty {
            if !force && now - self.last < Duration::from_millis(PROGRESS_REDRAW_MS) {
                return;
            }
            let width = 24;
            let filled = (done * width).checked_div(self.total).unwrap_or(width);
            let _ = write!(
                err,
                "\r\x1b[2K[{}{}] {}",
                "#".repeat(filled),
                ".".repeat(width - filled),
                self.text(done, failed, other)
            );
            self.drawn = true;
        } else {
            if !force && now - self.last < Duration::from_secs(PROGRESS_LINE_INTERVAL_S) {
                return;
            }
            let _ = writeln!(err, "nightly: {}", self.text(done, failed, other));
        }
        let _ = err.flush();
        self.last = now;
    }

    /// Prints a line above the progress line.
    fn say(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty && self.drawn {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
    }

    fn finish(&mut self) {
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// Runs one seed: plan, simulate, check; keeps its files if it failed (or `keep`).
fn run_seed(seed: u64, o: &Overrides, out: &Path, keep: bool) -> SeedResult {
    let start = Instant::now();
    let dir_name = format!("seed-{seed}");
    let dir = out.join(&dir_name);
    let mut result = SeedResult {
        seed,
        status: Status::Error,
        anomaly_types: Vec::new(),
        anomaly_counts: BTreeMap::new(),
        examples: BTreeMap::new(),
        reasons: Vec::new(),
        ops: 0,
        faults: 0,
        sim_ms: 0,
        wall_ms: 0,
        repro: String::new(),
        dir: None,
    };
    // A folder left by an earlier run into the same directory would pass for this run's.
    if dir.join(REPRO_FILE).exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let plan = match Plan::generate(seed_config(seed, o)) {
        Ok(p) => p,
        Err(e) => {
            result.reasons.push(format!("cannot plan: {e}"));
            return result;
        }
    };
    result.repro = repro_command(&plan).unwrap_or_else(|| {
        format!(
            "dynamo replay {}",
            shell_word(&dir.join("plan.json").display().to_string())
        )
    });
    let output = match catch_unwind(AssertUnwindSafe(|| run(&plan))) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            result.reasons.push(e);
            result.wall_ms = start.elapsed().as_millis() as u64;
            return result;
        }
        Err(panic) => {
            let message = dynamo_checker::panic_message(panic.as_ref());
            result
                .reasons
                .push(format!("the simulation panicked: {message}"));
            result.wall_ms = start.elapsed().as_millis() as u64;
            return result;
        }
    };
    result.ops = output.summary.ops;
    result.faults = output.summary.faults;
    result.sim_ms = output.summary.sim_ms;
    let checked = parse_reader(&output.history[..])
        .map_err(|e| format!("the history does not parse: {e}"))
        .and_then(|parsed| {
            catch_unwind(AssertUnwindSafe(|| check(&parsed.history)))
                .map_err(|_| "the checker panicked".to_owned())
        });
    let results = match checked {
        Ok(r) => Some(r),
        Err(e) => {
            result.reasons.push(e);
            None
        }
    };
    if let Some(r) = &results {
        result.status = match r.valid {
            Validity::True => Status::Valid,
            Validity::False => Status::Invalid,
            Validity::Unknown => Status::Unknown,
        };
        for (kind, findings) in &r.anomalies {
            result.anomaly_types.push(kind.as_str().to_owned());
            result
                .anomaly_counts
                .insert(kind.as_str().to_owned(), r.count(*kind));
            if let Some(first) = findings.first() {
                result
                    .examples
                    .insert(kind.as_str().to_owned(), explain(first));
            }
        }
        result.reasons.extend(r.stats.unknown.iter().cloned());
    }
    if result.status != Status::Valid || keep {
        let kept = write_run(&dir, &plan, &output).and_then(|()| {
            if let Some(r) = &results {
                let json = serde_json::to_string_pretty(r).expect("results serialise");
                std::fs::write(dir.join("results.json"), json + "\n")
                    .map_err(|e| format!("cannot write results: {e}"))?;
                crate::report::write(&dir)?;
            }
            std::fs::write(dir.join(REPRO_FILE), format!("{}\n", result.repro))
                .map_err(|e| format!("cannot write {REPRO_FILE}: {e}"))
        });
        match kept {
            Ok(()) => result.dir = Some(dir_name),
            Err(e) => result.reasons.push(format!("files not kept: {e}")),
        }
    }
    result.wall_ms = start.elapsed().as_millis() as u64;
    result
}

fn write_summary(out: &Path, summary: &Summary) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(summary).expect("summary serialises");
    std::fs::write(out.join(SUMMARY_FILE), json + "\n")
        .and_then(|()| std::fs::write(out.join(JUNIT_FILE), junit(summary)))
        .map_err(|e| format!("cannot write into {}: {e}", out.display()))
}

fn seed_list(seeds: &[u64]) -> String {
    const SHOWN_MAX: usize = 20;
    let shown: Vec<String> = seeds.iter().take(SHOWN_MAX).map(u64::to_string).collect();
    let more = seeds.len().saturating_sub(SHOWN_MAX);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn print_verdict(s: &Summary, out: &Path) {
    let c = &s.counts;
    let run = c.seeds - c.not_run;
    let mut line = format!(
        "nightly: {run} seeds in {:.1} s ({:.1} seeds/min on {} jobs): {} valid, {} INVALID, {} unknown, {} error",
        s.wall_s, s.seeds_per_minute, s.jobs, c.valid, c.invalid, c.unknown, c.error
    );
    if c.not_run > 0 {
        let _ = write!(line, ", {} not run (time limit)", c.not_run);
    }
    println!("{line}");
    if !s.failing_seeds.is_empty() {
        let types: Vec<String> = s
            .anomaly_seeds
            .iter()
            .map(|(t, n)| format!("{t} in {n}"))
            .collect();
        println!(
            "failing seeds: {} ({})",
            seed_list(&s.failing_seeds),
            types.join(", ")
        );
    }
    println!(
        "summary: {}  junit: {}",
        out.join(SUMMARY_FILE).display(),
        out.join(JUNIT_FILE).display()
    );
}

/// Runs `seeds` on `jobs` worker threads (no new seed after `deadline`), and returns each seed's
/// result by position (`None`: not run). `on_result` is called on this thread every few hundred
/// milliseconds with the number of seeds done and the newest result, if one came.
pub fn run_seeds(
    seeds: &[u64],
    overrides: &Overrides,
    out: &Path,
    jobs: usize,
    keep: bool,
    deadline: Option<Instant>,
    mut on_result: impl FnMut(usize, Option<&SeedResult>),
) -> Result<Vec<Option<SeedResult>>, String> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<SeedResult>> = vec![None; seeds.len()];
    let (tx, rx) = mpsc::channel::<(usize, SeedResult)>();
    std::thread::scope(|scope| -> Result<(), String> {
        for j in 0..jobs.min(seeds.len()) {
            let tx = tx.clone();
            let next = &next;
            std::thread::Builder::new()
                .name(format!("nightly-{j}"))
                .stack_size(WORKER_STACK_BYTES)
                .spawn_scoped(scope, move || {
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else { break };
                        if tx.send((i, run_seed(seed, overrides, out, keep))).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        }
        drop(tx);
        let mut done = 0;
        loop {
            match rx.recv_timeout(Duration::from_millis(PROGRESS_REDRAW_MS)) {
                Ok((i, r)) => {
                    done += 1;
                    on_result(done, Some(&r));
                    results[i] = Some(r);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => on_result(done, None),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        Ok(())
    })?;
    Ok(results)
}

/// `dynamo nightly`.
pub fn nightly(args: NightlyArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    let range = parse_seeds(&args.seeds)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let limit = args.time_limit.as_deref().map(parse_duration).transpose()?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 || jobs > JOBS_MAX {
        return Err(format!("--jobs must be 1..={JOBS_MAX}"));
    }
    let overrides = Overrides {
        ops: args.ops,
        bug: args.bug,
        nemesis: args
            .nemesis
            .as_deref()
            .map(NemesisKind::parse_list)
            .transpose()?,
        workload: args.workload,
    };
    // Fail on bad options before starting hundreds of threads' worth of work.
    seed_config(range.start, &overrides).validate()?;
    let seeds: Vec<u64> = range
        .clone()
        .filter(|s| shard.is_none_or(|(k, m)| s % m == k))
        .collect();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut options = BTreeMap::new();
    options.insert("ops".to_owned(), args.ops.to_string());
    if let Some(bug) = args.bug {
        options.insert("bug".to_owned(), bug.to_string());
    }
    if let Some(n) = &args.nemesis {
        options.insert("nemesis".to_owned(), n.clone());
    }
    if let Some(w) = args.workload {
        options.insert("workload".to_owned(), w.to_string());
    }
    eprintln!(
        "dynamo nightly: {} seeds ({}{}), {jobs} jobs, {} ops each, writing {}",
        seeds.len(),
        args.seeds,
        shard
            .map(|(k, m)| format!(", shard {k}/{m}"))
            .unwrap_or_default(),
        args.ops,
        args.out.display()
    );

    let start = Instant::now();
    let deadline = limit.map(|l| start + l);
    let mut progress = Progress::new(seeds.len());
    let (mut failed, mut other) = (0, 0);
    let results = run_seeds(
        &seeds,
        &overrides,
        &args.out,
        jobs,
        args.keep_passing,
        deadline,
        |done, r| {
            match r {
                Some(r) if r.status == Status::Invalid => {
                    failed += 1;
                    progress.say(&format!(
                        "seed {} FAILED: {} - {}",
                        r.seed,
                        r.anomaly_types.join(", "),
                        r.repro
                    ));
                }
                Some(r) if matches!(r.status, Status::Unknown | Status::Error) => {
                    other += 1;
                    progress.say(&format!(
                        "seed {} {}: {} - {}",
                        r.seed,
                        if r.status == Status::Unknown {
                            "unknown"
                        } else {
                            "ERROR"
                        },
                        r.reasons.join("; "),
                        r.repro
                    ));
                }
                _ => {}
            }
            progress.update(done, failed, other, false);
        },
    )?;
    progress.update(results.iter().flatten().count(), failed, other, true);
    progress.finish();
    let wall_s = start.elapsed().as_secs_f64();
    let mut time_limit_reached = false;
    let results: Vec<SeedResult> = results
        .into_iter()
        .zip(&seeds)
        .map(|(r, &seed)| {
            r.unwrap_or_else(|| {
                time_limit_reached = true;
                let plan = Plan::generate(seed_config(seed, &overrides)).ok();
                SeedResult {
                    seed,
                    status: Status::NotRun,
                    anomaly_types: Vec::new(),
                    anomaly_counts: BTreeMap::new(),
                    examples: BTreeMap::new(),
                    reasons: Vec::new(),
                    ops: 0,
                    faults: 0,
                    sim_ms: 0,
                    wall_ms: 0,
                    repro: plan.as_ref().and_then(repro_command).unwrap_or_default(),
                    dir: None,
                }
            })
        })
        .collect();
    let summary = Summary::new(
        format!("{}..{}", range.start, range.end),
        shard
            .map(|(k, m)| vec![format!("{k}/{m}")])
            .unwrap_or_default(),
        options,
        jobs,
        wall_s,
        time_limit_reached,
        results,
    );
    write_summary(&args.out, &summary)?;
    print_verdict(&summary, &args.out);
    Ok(ExitCode::from(summary.counts.exit_code()))
}

/// Seeds of `range` that `results` miss, and those they hold more than once.
pub fn coverage(range: std::ops::Range<u64>, results: &[SeedResult]) -> (Vec<u64>, Vec<u64>) {
    let mut seen = BTreeMap::<u64, usize>::new();
    for r in results {
        *seen.entry(r.seed).or_default() += 1;
    }
    let missing = range.filter(|s| !seen.contains_key(s)).collect();
    let twice = seen
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(s, _)| s)
        .collect();
    (missing, twice)
}

/// `dynamo merge`.
pub fn merge(args: MergeArgs) -> Result<ExitCode, String> {
    let mut summaries = Vec::new();
    for dir in &args.dirs {
        let path = dir.join(SUMMARY_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let s: Summary =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if s.version != SUMMARY_VERSION {
            return Err(format!(
                "{}: summary version {} is not {SUMMARY_VERSION}",
                path.display(),
                s.version
            ));
        }
        summaries.push((dir, s));
    }
    let ranges: BTreeSet<String> = summaries.iter().map(|(_, s)| s.seeds.clone()).collect();
    let mut results = Vec::new();
    let mut shards = Vec::new();
    let mut options = BTreeMap::new();
    let (mut wall_s, mut jobs) = (0.0f64, 0);
    let mut time_limit_reached = false;
    for (dir, s) in summaries {
        shards.extend(s.shards.iter().cloned());
        options.extend(s.options.clone());
        // Shards run side by side: the merged run took as long as the slowest.
        wall_s = wall_s.max(s.wall_s);
        jobs += s.jobs;
        time_limit_reached |= s.time_limit_reached;
        for mut r in s.results {
            r.dir = r.dir.map(|d| dir.join(d).display().to_string());
            results.push(r);
        }
    }
    let mut problems = Vec::new();
    let range_text = if ranges.len() == 1 {
        let text = ranges.into_iter().next().expect("one");
        let range = parse_seeds(&text)?;
        let (missing, twice) = coverage(range, &results);
        if !missing.is_empty() {
            problems.push(format!(
                "{} seed(s) of {text} in no shard: {}",
                missing.len(),
                seed_list(&missing)
            ));
        }
        if !twice.is_empty() {
            problems.push(format!(
                "{} seed(s) in more than one shard: {}",
                twice.len(),
                seed_list(&twice)
            ));
        }
        text
    } else {
        problems.push(format!(
            "the shards cover different ranges ({}); coverage not checked",
            ranges.into_iter().collect::<Vec<_>>().join(", ")
        ));
        "mixed".to_owned()
    };
    shards.sort();
    let summary = Summary::new(
        range_text,
        shards,
        options,
        jobs,
        wall_s,
        time_limit_reached,
        results,
    );
    write_summary(&args.out, &summary)?;
    print_verdict(&summary, &args.out);
    for p in &problems {
        eprintln!("dynamo merge: {p}");
    }
    let code = match summary.counts.exit_code() {
        0 if !problems.is_empty() => 2,
        code => code,
    };
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_shards_and_durations_parse() {
        assert_eq!(parse_seeds("0..100"), Ok(0..100));
        assert_eq!(parse_seeds("5..=7"), Ok(5..8));
        assert_eq!(parse_seeds("42"), Ok(42..43));
        assert!(parse_seeds("7..7").is_err());
        assert!(parse_seeds("a..b").is_err());
        assert!(parse_seeds("0..999999999999").is_err());
        assert_eq!(parse_shard("1/4"), Ok((1, 4)));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1/0").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2_500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_seed_draws_the_same_valid_options_every_time() {
        let o = Overrides {
            ops: 100,
            ..Overrides::default()
        };
        let mut mixes = BTreeSet::new();
        for seed in 0..200 {
            let c = seed_config(seed, &o);
            assert_eq!(c, seed_config(seed, &o));
            c.validate().unwrap();
            assert!(c.w >= 2, "W >= 2 keeps a wipe from losing an acked write");
            assert_eq!((c.seed, c.ops, c.bug), (seed, 100, None));
            mixes.insert(format!("{:?}", c.nemesis));
        }
        assert!(
            mixes.len() > 20,
            "seeds draw many fault mixes: {}",
            mixes.len()
        );
        let fixed = Overrides {
            ops: 10,
            bug: Some(Bug::Lww),
            nemesis: Some(vec![NemesisKind::Skew]),
            workload: Some(Workload::Register),
        };
        let c = seed_config(3, &fixed);
        assert_eq!(c.nemesis, vec![NemesisKind::Skew]);
        assert_eq!((c.workload, c.bug), (Workload::Register, Some(Bug::Lww)));
    }

    /// Seed 86561 drew a mix of one impossible kind (membership on three nodes) and failed to
    /// plan; every seed must plan, with fault windows unless its nemesis is `none`.
    #[test]
    fn every_seed_plans_and_plans_faults_unless_its_nemesis_is_none() {
        let o = Overrides {
            ops: 1_000,
            ..Overrides::default()
        };
        let mut none = 0;
        for seed in (0..3_000).chain(86_561..86_562) {
            let c = seed_config(seed, &o);
            let plan = Plan::generate(c.clone())
                .unwrap_or_else(|e| panic!("seed {seed} does not plan: {e}"));
            if c.nemesis.is_empty() {
                none += 1;
                assert!(plan.faults.is_empty());
            } else {
                assert!(!plan.faults.is_empty(), "seed {seed} plans no fault");
                assert_eq!(
                    possible_kinds(&c),
                    c.nemesis,
                    "seed {seed}: the repro says what runs"
                );
            }
        }
        assert!(
            (100..200).contains(&none),
            "one seed in twenty without faults: {none}"
        );
    }

    #[test]
    fn every_seed_has_an_exact_one_line_repro() {
        let o = Overrides {
            ops: 40,
            bug: Some(Bug::Lww),
            ..Overrides::default()
        };
        for seed in 0..30 {
            let plan = Plan::generate(seed_config(seed, &o)).unwrap();
            let cmd = repro_command(&plan).expect("a sim command line gives the seed's plan");
            assert!(
                cmd.starts_with(&format!("dynamo sim --seed {seed} ")),
                "{cmd}"
            );
            assert!(cmd.contains("--bug lww"));
        }
        // Settings the command line cannot give fall back to replay.
        let mut plan = Plan::generate(seed_config(1, &o)).unwrap();
        plan.config.partitions = 7;
        assert_eq!(repro_command(&plan), None);
        let mut plan = Plan::generate(seed_config(1, &o)).unwrap();
        plan.config.node.read_repair = false;
        plan.config.measure_convergence = true;
        let cmd = repro_command(&plan).unwrap();
        assert!(
            cmd.contains("--no-read-repair") && cmd.contains("--measure-convergence"),
            "{cmd}"
        );
        // A shrunk plan is not what its seed generates.
        let mut plan = Plan::generate(seed_config(1, &o)).unwrap();
        plan.ops.pop();
        assert_eq!(repro_command(&plan), None);
    }

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
        }
    }

    #[test]
    fn junit_has_a_case_per_seed_and_exit_codes_follow_jepsen() {
        let s = Summary::new(
            "0..4".into(),
            vec!["0/1".into()],
            BTreeMap::new(),
            2,
            1.0,
            true,
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

    #[test]
    fn coverage_names_missing_and_doubled_seeds() {
        let rs = vec![
            result(0, Status::Valid),
            result(2, Status::Valid),
            result(2, Status::Valid),
        ];
        assert_eq!(coverage(0..4, &rs), (vec![1, 3], vec![2]));
    }
}
