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
//!
//! # Layout
//!
//! - this file: the options of `dynamo nightly`, their value parsers (`--seeds`, `--shard`), and the
//!   command itself: expand the range, run it, write and print the summary.
//! - [`config`]: [`seed_config`], the seed's own draws of cluster, workload and faults.
//! - [`run`]: [`run_seeds`] on worker threads, and one seed from plan to verdict.
//! - [`summary`]: summary.json's types, its counts and exit status, junit.xml, the verdict lines.
//! - [`progress`]: the progress line on stderr.
//! - [`merge`]: `dynamo merge` of the shards' summaries, and its coverage check.

mod config;
mod merge;
mod progress;
mod run;
mod summary;

pub use config::{Overrides, seed_config};
pub use merge::{MergeArgs, merge};
pub use run::run_seeds;
pub use summary::{SeedResult, Status};

use crate::sim::WorkloadArg;
use crate::sim::repro_command;
use clap::Args;
use clap::ValueEnum;
use dynamo_node::config::Bug;
use dynamo_workloads::plan::{NemesisKind, Plan};
use progress::Progress;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use summary::{RunFacts, Summary, print_verdict, write_summary};

/// Most seeds one run may cover (a typo in a range should not queue a billion runs).
pub const SEEDS_MAX: u64 = 10_000_000;
/// Most worker threads.
pub const JOBS_MAX: usize = 256;
/// The default planned operations per seed (the target: 1,000 seeds of 1,000 ops).
pub const OPS_DEFAULT: usize = 1_000;

/// Options of `dynamo nightly`.
#[derive(Args, Debug)]
pub struct NightlyArgs {
    /// The seeds: A..B (B excluded), A..=B, or one seed.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Simulations at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only the seeds with seed % M == K: K/M.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Start no new seed after this long (e.g. 30m, 90s, 1h30m); the rest are recorded as not run.
    #[arg(long, value_parser = crate::duration::parse_duration)]
    time_limit: Option<Duration>,
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
    /// Use this workload for every seed instead of one drawn per seed: cart, register, or set (as
    /// `dynamo sim --workload`).
    #[arg(long, value_enum)]
    workload: Option<WorkloadArg>,
    /// Keep the files of passing seeds too.
    #[arg(long)]
    keep_passing: bool,
}

/// Parses `--seeds`: `A..B` (B excluded), `A..=B` or `N`; at most [`SEEDS_MAX`] seeds. Clap's
/// value parser for the option (its message names the flag), and `dynamo merge` reads a summary's
/// range with it.
pub fn parse_seeds(s: &str) -> Result<Range<u64>, String> {
    let bad = || "use A..B (B excluded), A..=B, or one seed".to_owned();
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
    let range = if let Some((a, b)) = s.split_once("..=") {
        num(a)?..num(b)?.checked_add(1).ok_or_else(bad)?
    } else if let Some((a, b)) = s.split_once("..") {
        num(a)?..num(b)?
    } else {
        let n = num(s)?;
        n..n.checked_add(1).ok_or_else(bad)?
    };
    if range.is_empty() {
        return Err("the range is empty".to_owned());
    }
    if range.end - range.start > SEEDS_MAX {
        return Err(format!("more than {SEEDS_MAX} seeds"));
    }
    Ok(range)
}

/// `--shard K/M`: this run is shard `index` of `count`, and runs the seeds with
/// seed % count == index, so that `count` machines split one range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// K, below `count`.
    pub index: u64,
    /// M, at least 1.
    pub count: u64,
}

impl Shard {
    /// Whether this shard runs `seed`.
    pub fn holds(self, seed: u64) -> bool {
        seed % self.count == self.index
    }
}

/// `K/M`, as the option takes it and summary.json records it.
impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Parses `--shard K/M`, 0 <= K < M (clap's value parser for the option).
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let bad = || "use K/M with 0 <= K < M".to_owned();
    let (k, m) = s.split_once('/').ok_or_else(bad)?;
    let (index, count): (u64, u64) = (
        k.trim().parse().map_err(|_| bad())?,
        m.trim().parse().map_err(|_| bad())?,
    );
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}

/// `dynamo nightly`.
pub fn nightly(args: NightlyArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    let range = args.seeds.clone();
    let shard = args.shard;
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
        .filter(|&seed| shard.is_none_or(|shard| shard.holds(seed)))
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
        let name = w.to_possible_value().expect("no variant is skipped");
        options.insert("workload".to_owned(), name.get_name().to_owned());
    }
    eprintln!(
        "dynamo nightly: {} seeds ({}..{}{}), {jobs} jobs, {} ops each, writing {}",
        seeds.len(),
        range.start,
        range.end,
        shard
            .map(|shard| format!(", shard {shard}"))
            .unwrap_or_default(),
        args.ops,
        args.out.display()
    );

    let start = Instant::now();
    let deadline = args.time_limit.map(|limit| start + limit);
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
                SeedResult::new(
                    seed,
                    Status::NotRun,
                    plan.as_ref().and_then(repro_command).unwrap_or_default(),
                )
            })
        })
        .collect();
    let summary = Summary::new(
        format!("{}..{}", range.start, range.end),
        shard
            .map(|shard| vec![shard.to_string()])
            .unwrap_or_default(),
        RunFacts {
            options,
            jobs,
            wall_s,
            time_limit_reached,
        },
        results,
    );
    write_summary(&args.out, &summary)?;
    print_verdict(&summary, &args.out);
    Ok(ExitCode::from(summary.counts.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn ranges_and_shards_parse() {
        assert_eq!(parse_seeds("0..100"), Ok(0..100));
        assert_eq!(parse_seeds("5..=7"), Ok(5..8));
        assert_eq!(parse_seeds("42"), Ok(42..43));
        assert!(parse_seeds("7..7").is_err());
        assert!(parse_seeds("a..b").is_err());
        assert!(parse_seeds("0..999999999999").is_err());
        assert!(parse_seeds(&u64::MAX.to_string()).is_err());
        let shard = parse_shard("1/4").unwrap();
        assert_eq!(shard, Shard { index: 1, count: 4 });
        assert_eq!(shard.to_string(), "1/4");
        assert!(shard.holds(5) && !shard.holds(6));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1/0").is_err());
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        nightly: NightlyArgs,
    }

    /// A bad `--seeds`, `--shard` or `--time-limit` is a usage error that names its flag.
    #[test]
    fn bad_values_are_usage_errors_naming_the_flag() {
        let ok = Cli::try_parse_from([
            "nightly",
            "--seeds",
            "0..=9",
            "--shard",
            "1/2",
            "--time-limit",
            "1h30m",
            "--out",
            "x",
        ])
        .unwrap();
        assert_eq!(ok.nightly.seeds, 0..10);
        assert_eq!(ok.nightly.shard, Some(Shard { index: 1, count: 2 }));
        assert_eq!(ok.nightly.time_limit, Some(Duration::from_secs(5_400)));
        for (flag, value) in [
            ("--seeds", "5..2"),
            ("--seeds", "many"),
            ("--shard", "2/2"),
            ("--time-limit", "soon"),
        ] {
            let mut argv = vec!["nightly", "--out", "x"];
            if flag != "--seeds" {
                argv.extend(["--seeds", "0..4"]);
            }
            argv.extend([flag, value]);
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains(flag), "{e}");
        }
    }
}
