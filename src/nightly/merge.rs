//! `dynamo merge`: one summary.json and junit.xml from the shards of a nightly (`--shard K/M` on M
//! machines), with a check that every seed of the range was run exactly once.
//!
//! It reads only the shards' summary.json files: their results are merged as they are, the failing
//! seeds' folders are named by their path from here, and the merged verdict is the shards' (a seed
//! missed or run twice makes an otherwise passing merge exit 2).

use super::parse_seeds;
use super::summary::{
    RunFacts, SUMMARY_FILE, SUMMARY_VERSION, SeedResult, Summary, print_verdict, seed_list,
    write_summary,
};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

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
    let mut run = RunFacts::default();
    for (dir, s) in summaries {
        shards.extend(s.shards.iter().cloned());
        run.options.extend(s.options.clone());
        // Shards run side by side: the merged run took as long as the slowest.
        run.wall_s = run.wall_s.max(s.wall_s);
        run.jobs += s.jobs;
        run.time_limit_reached |= s.time_limit_reached;
        for mut r in s.results {
            r.dir = r.dir.map(|d| dir.join(d).display().to_string());
            results.push(r);
        }
    }
    let mut problems = Vec::new();
    let range_text = if ranges.len() == 1 {
        let text = ranges.into_iter().next().expect("one");
        let range = parse_seeds(&text).map_err(|e| format!("the shards' seeds {text:?}: {e}"))?;
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
    let summary = Summary::new(range_text, shards, run, results);
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
    use crate::nightly::Status;

    fn result(seed: u64) -> SeedResult {
        SeedResult::new(seed, Status::Valid, format!("dynamo sim --seed {seed}"))
    }

    #[test]
    fn coverage_names_missing_and_doubled_seeds() {
        let rs = vec![result(0), result(2), result(2)];
        assert_eq!(coverage(0..4, &rs), (vec![1, 3], vec![2]));
    }
}
