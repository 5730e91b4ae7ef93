//! Running seeds: [`run_seeds`] spreads a list of seeds over worker threads, and each seed runs to
//! its verdict on one thread (plan, simulate, check in memory), keeping its files only if it failed.
//!
//! A turmoil simulation's world is thread-local, so a worker runs one seed at a time to completion;
//! a panic in the simulation or the checker becomes the seed's `error` or `unknown`, not the end of
//! the run. `dynamo nightly` and `dynamo detection` both run seeds through here.

use super::config::{Overrides, seed_config};
use super::progress::PROGRESS_REDRAW_MS;
use super::summary::{SeedResult, Status, WriteTotals};
use crate::sim::{repro_command, shell_word, write_run};
use dynamo_checker::{Validity, check, explain, parse_reader};
use dynamo_workloads::plan::Plan;
use dynamo_workloads::run;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The one-line reproduction command's file name in a failing seed's folder.
pub const REPRO_FILE: &str = "repro.txt";
/// A worker's stack: a simulation's futures are deep, and unoptimised builds need more.
pub const WORKER_STACK_BYTES: usize = 64 << 20;

/// Runs one seed: plan, simulate, check; keeps its files if it failed (or `keep`).
fn run_seed(seed: u64, o: &Overrides, out: &Path, keep: bool) -> SeedResult {
    let start = Instant::now();
    let dir_name = format!("seed-{seed}");
    let dir = out.join(&dir_name);
    let mut result = SeedResult::new(seed, Status::Error, String::new());
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
    result.workload = Some(workload_name(&plan.config));
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
        result.writes = Some(WriteTotals::of(&r.stats.writes));
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

/// The workload's name as `--workload` spells it: a cart of adds only is Jepsen's `set`.
fn workload_name(c: &dynamo_workloads::plan::SimConfig) -> String {
    if c.adds_only {
        "set".to_owned()
    } else {
        c.workload.to_string()
    }
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
