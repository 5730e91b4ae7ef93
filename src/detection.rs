//! `dynamo detection`: detection power, measured the way the nightly finds bugs.
//!
//! A harness that passes everything proves nothing. This runs the nightly's own seed draws (each
//! seed its own cluster, workload, fault mix, density and overlap; `nightly::seed_config`) over one
//! range of seeds, once for the correct node and once per deliberate bug, and prints per row the
//! share of seeds that fail (for a bug: that catch it; for the correct node: false alarms, which
//! must be none), the seeds whose verdict is unknown or that could not run, the seeds that ran no
//! fault, and which anomaly types caught it. No flag is chosen for a bug: the seeds are random.

use crate::nightly::{Overrides, SeedResult, Status, parse_seeds, run_seeds, seed_config};
use clap::Args;
use dynamo_node::config::Bug;
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Options of `dynamo detection`.
#[derive(Args, Debug)]
pub struct DetectionArgs {
    /// The seeds: A..B (B excluded), A..=B, or one seed.
    #[arg(long, value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// Simulations at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Client operations planned per seed (the nightly's default).
    #[arg(long, default_value_t = crate::nightly::OPS_DEFAULT)]
    ops: usize,
    /// The bugs to measure, comma-separated (default: every deliberate bug).
    #[arg(long)]
    bugs: Option<String>,
    /// Where failing seeds' files go, a folder per row (default: store/detection).
    #[arg(long, default_value = "store/detection")]
    out: PathBuf,
    /// Print the table as JSON too.
    #[arg(long)]
    json: bool,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `correct` or the bug's name.
    pub node: String,
    /// Seeds run.
    pub seeds: usize,
    /// Seeds whose verdict was invalid.
    pub invalid: usize,
    /// Seeds whose verdict was unknown, or that could not run.
    pub unknown_or_error: usize,
    /// Seeds that opened no fault window.
    pub no_fault: usize,
    /// Of those, the seeds whose drawn nemesis is `none` (one in twenty); the others had faults
    /// planned and opened none, which should never happen.
    pub no_nemesis: usize,
    /// Per anomaly type, the seeds that showed it.
    pub anomaly_seeds: BTreeMap<String, usize>,
    /// The first few invalid seeds (for a bug) or failing seeds (for the correct node).
    pub examples: Vec<u64>,
    /// Wall time of the row, s.
    pub wall_s: f64,
}

/// How many example seeds a row keeps.
const EXAMPLES_MAX: usize = 5;

fn row(node: String, results: &[SeedResult], overrides: &Overrides, wall_s: f64) -> Row {
    let mut anomaly_seeds = BTreeMap::new();
    for r in results {
        for t in &r.anomaly_types {
            *anomaly_seeds.entry(t.clone()).or_insert(0) += 1;
        }
    }
    let correct = node == "correct";
    Row {
        node,
        seeds: results.len(),
        invalid: results
            .iter()
            .filter(|r| r.status == Status::Invalid)
            .count(),
        unknown_or_error: results
            .iter()
            .filter(|r| matches!(r.status, Status::Unknown | Status::Error))
            .count(),
        no_fault: results.iter().filter(|r| r.faults == 0).count(),
        no_nemesis: results
            .iter()
            .filter(|r| r.faults == 0 && seed_config(r.seed, overrides).nemesis.is_empty())
            .count(),
        anomaly_seeds,
        examples: results
            .iter()
            .filter(|r| r.status == Status::Invalid || (correct && r.status != Status::Valid))
            .map(|r| r.seed)
            .take(EXAMPLES_MAX)
            .collect(),
        wall_s,
    }
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.0}%", 100.0 * part as f64 / whole as f64)
    }
}

/// The table, as BENCHMARKS.md shows it.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| node | seeds | invalid | unknown or error | no fault (nemesis none) | caught as (seeds) | example seeds |\n\
         |------|-------|---------|------------------|-------------------------|-------------------|---------------|\n",
    );
    for r in rows {
        let kinds: Vec<String> = r
            .anomaly_seeds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let examples: Vec<String> = r.examples.iter().map(u64::to_string).collect();
        out.push_str(&format!(
            "| {} | {} | {} ({}) | {} | {} ({}) | {} | {} |\n",
            r.node,
            r.seeds,
            r.invalid,
            percent(r.invalid, r.seeds),
            r.unknown_or_error,
            percent(r.no_fault, r.seeds),
            percent(r.no_nemesis, r.seeds),
            if kinds.is_empty() {
                "-".to_owned()
            } else {
                kinds.join(", ")
            },
            examples.join(" "),
        ));
    }
    out
}

/// `dynamo detection`.
pub fn detection(args: DetectionArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    let seeds: Vec<u64> = args.seeds.clone().collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if jobs == 0 || jobs > crate::nightly::JOBS_MAX {
        return Err(format!("--jobs must be 1..={}", crate::nightly::JOBS_MAX));
    }
    let bugs: Vec<Bug> = match &args.bugs {
        None => Bug::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|b| b.trim().parse())
            .collect::<Result<_, _>>()?,
    };
    let nodes: Vec<Option<Bug>> = std::iter::once(None)
        .chain(bugs.into_iter().map(Some))
        .collect();
    eprintln!(
        "dynamo detection: seeds {}..{}, {} ops each, {jobs} jobs, {} rows",
        args.seeds.start,
        args.seeds.end,
        args.ops,
        nodes.len()
    );
    let mut rows = Vec::new();
    for bug in nodes {
        let name = bug.map_or("correct".to_owned(), |b| b.name().to_owned());
        let overrides = Overrides {
            ops: args.ops,
            bug,
            nemesis: None,
            workload: None,
        };
        let out = args.out.join(&name);
        std::fs::create_dir_all(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let start = Instant::now();
        let results = run_seeds(&seeds, &overrides, &out, jobs, false, None, |_, _| {})?;
        let results: Vec<SeedResult> = results.into_iter().flatten().collect();
        let r = row(name, &results, &overrides, start.elapsed().as_secs_f64());
        eprintln!(
            "  {}: {} of {} invalid, {} unknown or error, {} without a fault ({} with nemesis none) ({:.0} s)",
            r.node, r.invalid, r.seeds, r.unknown_or_error, r.no_fault, r.no_nemesis, r.wall_s
        );
        rows.push(r);
    }
    out!("{}", table(&rows));
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialise")
        );
    }
    // Jepsen's convention: a false alarm on the correct node is a failure of the harness (1), as
    // is a seed whose planned faults never opened (the harness tested nothing there); a bug no
    // seed caught is an unknown (2).
    let correct_failed = rows
        .first()
        .is_some_and(|r| r.invalid + r.unknown_or_error > 0)
        || rows.iter().any(|r| r.no_fault > r.no_nemesis);
    let missed = rows.iter().skip(1).any(|r| r.invalid == 0);
    Ok(ExitCode::from(if correct_failed {
        1
    } else if missed {
        2
    } else {
        0
    }))
}
