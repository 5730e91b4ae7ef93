//! `dynamo shrink DIR`: from a failing run's plan, a small plan that still fails with the same
//! anomaly type, readable in a minute, and, with `--save`, a regression test.
//!
//! # Layout
//!
//! - `trace.rs`: a run read back in the plan's terms (when each planned operation ran, which
//!   writes it made, when each fault window opened and on which node);
//! - `edit.rs`: smaller plans made from a plan: the projection onto a selection of operations,
//!   faults and nodes (renumbered, faults pinned to the operations around them), and exact edits;
//! - `search.rs`: the search, big steps from what the finding names first, then delta debugging;
//! - `bench.rs`: `--each`, every failing seed of a nightly shrunk, and the figures of BENCHMARKS.md;
//! - this file: the command: run, check, write the shrunk run with its report and `shrink.json`,
//!   and save the plan as a regression (`tests/regressions/`, replayed by `cargo test`).
//!
//! The plan on disk may come from `dynamo nightly`, an older version or a hand edit: only the plan
//! is needed to shrink it (a history that does not fit it only costs the focus steps). Every
//! candidate is a full deterministic simulation and check, so the shrunk plan fails on replay,
//! every time, and the final run is compared byte for byte with the one the search accepted.

mod bench;
pub mod edit;
pub mod search;
pub mod trace;

use crate::report::story;
use crate::sim::{shell_word, write_run};
use clap::Args;
use dynamo_checker::{Results, Validity, check, explain, parse_reader};
use dynamo_workloads::plan::Plan;
use dynamo_workloads::run;
pub use edit::Size;
use search::{Outcome, Step, Witness, shrink_plan};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use trace::Trace;

/// The default bound on simulations one shrink may run (the original's and the confirmations'
/// included).
pub const RUNS_MAX_DEFAULT: usize = 300;
/// The default time budget.
pub const TIME_BUDGET_DEFAULT: &str = "5m";
/// Runs outside the search: the original, the final run and the correct node's run.
pub const RUNS_OUTSIDE_SEARCH: usize = 3;
/// The key of a regression file's record of what it is (the rest of the file is the plan).
pub const REGRESSION_FIELD: &str = "regression";

/// Options of `dynamo shrink`.
#[derive(Args, Debug)]
pub struct ShrinkArgs {
    /// A failing run's directory, with plan.json and results.json.
    dir: PathBuf,
    /// The anomaly type the smaller plan must still show (default: the run's first anomaly type).
    #[arg(long)]
    anomaly: Option<String>,
    /// Most simulations to run.
    #[arg(long, default_value_t = RUNS_MAX_DEFAULT)]
    max_runs: usize,
    /// Stop proposing candidates after this long (e.g. 90s, 5m).
    #[arg(long, default_value = TIME_BUDGET_DEFAULT, value_parser = crate::duration::parse_duration)]
    time_budget: Duration,
    /// Where to write the smaller run (default DIR/shrunk).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also store the shrunk plan, with the anomaly it showed, as a regression test (e.g.
    /// tests/regressions/NAME.json, which `cargo test` replays).
    #[arg(long, conflicts_with = "each")]
    save: Option<PathBuf>,
    /// DIR holds many failing runs (the output of `dynamo nightly` or `dynamo detection`): shrink
    /// every `seed-S/` folder under it (into `seed-S/shrunk/`) and print the benchmark table.
    #[arg(long)]
    each: bool,
}

/// A run of a plan, checked.
pub struct Checked {
    pub history: Vec<u8>,
    pub results: Results,
}

/// Runs and checks `plan`; `Err` when it cannot run (a nemesis error, a stuck or panicking
/// simulation) or its history does not parse.
pub fn run_and_check(plan: &Plan) -> Result<Checked, String> {
    let output = catch_unwind(AssertUnwindSafe(|| run(plan)))
        .map_err(|_| "the simulation panicked".to_owned())??;
    let parsed = parse_reader(&output.history[..]).map_err(|e| e.to_string())?;
    let results = catch_unwind(AssertUnwindSafe(|| check(&parsed.history)))
        .map_err(|_| "the checker panicked".to_owned())?;
    Ok(Checked {
        history: output.history,
        results,
    })
}

/// The anomaly type names of a check.
pub fn types(results: &Results) -> Vec<String> {
    results
        .anomaly_types()
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect()
}

/// The key index a key name stands for in `plan` (`cart-7` is 7).
fn key_index(plan: &Plan, name: &str) -> Option<u32> {
    let (_, n) = name.rsplit_once('-')?;
    let k: u32 = n.parse().ok()?;
    (plan.config.key_name(k) == name).then_some(k)
}

/// What each finding of type `target` names.
pub fn witnesses(plan: &Plan, results: &Results, target: &str) -> Vec<Witness> {
    let value = serde_json::to_value(results).expect("results serialise");
    let findings = value
        .get("anomalies")
        .and_then(|a| a.get(target))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    fn keys(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("key", Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        (_, v) => keys(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| keys(i, out)),
            _ => {}
        }
    }
    findings
        .iter()
        .map(|f| {
            let mut names = BTreeSet::new();
            keys(f, &mut names);
            Witness {
                key: f
                    .get("key")
                    .and_then(Value::as_str)
                    .and_then(|k| key_index(plan, k)),
                keys: names.iter().filter_map(|k| key_index(plan, k)).collect(),
                writes: crate::report::model::witness_ids(f),
            }
        })
        .collect()
}

/// Runs `plan` and says whether it fails with `target`, with what the search needs of a failing
/// run. With `isolate`, a plan with a deliberate bug fails only if the correct node passes it:
/// the failure stays the bug's, and does not slip to another cause of the same anomaly type.
pub fn evaluate(plan: &Plan, target: &str, isolate: bool) -> Outcome {
    let Ok(checked) = run_and_check(plan) else {
        return Outcome::default();
    };
    if !types(&checked.results).iter().any(|t| t == target) {
        return Outcome::default();
    }
    let mut runs = 1;
    if isolate && plan.config.bug.is_some() {
        let mut correct = plan.clone();
        correct.config.bug = None;
        runs += 1;
        if !run_and_check(&correct).is_ok_and(|c| c.results.valid == Validity::True) {
            return Outcome {
                runs,
                slipped: true,
                ..Outcome::default()
            };
        }
    }
    Outcome {
        fails: true,
        trace: Trace::of(plan, &checked.history).ok(),
        witnesses: witnesses(plan, &checked.results, target),
        history: checked.history,
        runs,
        slipped: false,
    }
}

/// The anomaly type the run in `dir` showed first.
fn first_anomaly(dir: &Path) -> Result<String, String> {
    let path = dir.join("results.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {} (or give --anomaly): {e}", path.display()))?;
    let results: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    results
        .get("anomaly_types")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "{} names no anomaly: the run did not fail, nothing to shrink",
                path.display()
            )
        })
}

/// The first explanation of a finding of `target`.
fn explanation(results: &Results, target: &str) -> Option<String> {
    results
        .anomalies
        .iter()
        .find(|(k, _)| k.as_str() == target)
        .and_then(|(_, f)| f.first())
        .map(explain)
}

/// A regression file: `plan` as plan.json has it, with a `regression` record first.
pub fn regression_json(plan: &Plan, record: &Value) -> String {
    let plan_text = serde_json::to_string_pretty(plan).expect("plan serialises");
    let record_text = serde_json::to_string_pretty(record).expect("record serialises");
    let record_text = record_text.replace('\n', "\n  ");
    let rest = plan_text.strip_prefix("{\n").expect("an object");
    format!("{{\n  \"{REGRESSION_FIELD}\": {record_text},\n{rest}\n")
}

/// What one shrink did, for the command's output and the benchmark.
pub struct Done {
    /// The failing run's directory.
    pub dir: PathBuf,
    /// Where the shrunk run was written.
    pub out: PathBuf,
    pub anomaly: String,
    pub original: Plan,
    pub plan: Plan,
    pub before: Size,
    pub after: Size,
    /// Runs in all (the original's and the confirmations' included).
    pub runs: usize,
    /// Wall time of the whole shrink, s.
    pub wall_s: f64,
    pub budget_spent: bool,
    /// The final run still fails with the anomaly type, with the history the search accepted.
    pub still: bool,
    pub same: bool,
    /// For a plan with a deliberate bug: the correct node's anomaly types on the shrunk plan.
    pub correct: Option<Result<Vec<String>, String>>,
    /// For a plan with a deliberate bug: whether every kept plan passed on the correct node (no
    /// when the correct node failed the original, or the plan with its faults pinned, too).
    pub isolated: Option<bool>,
    /// Keys the original's first finding of the type names.
    pub witness_keys: usize,
    /// The nodes the shrunk plan's faults name outside the witness key's replicas.
    pub fault_nodes: usize,
    /// The first finding of the type on the final run, in words.
    pub explanation: Option<String>,
    /// The final run as a story.
    pub story: Vec<String>,
    /// Client operations the final run recorded.
    pub recorded_ops: u64,
}

/// Options of one shrink.
pub struct Options {
    pub anomaly: Option<String>,
    pub max_runs: usize,
    pub budget: Duration,
    /// Print each accepted step on stderr.
    pub verbose: bool,
}

/// The nodes the faults of `plan` name outside `key`'s replicas.
fn nodes_beyond_replicas(plan: &Plan, key: u32) -> usize {
    let c = &plan.config;
    let replicas: BTreeSet<u32> = edit::walk(&edit::ring(c.nodes, c.partitions), &c.key_name(key))
        .into_iter()
        .take(c.n)
        .collect();
    let named: BTreeSet<u32> = plan.faults.iter().flat_map(|w| w.fault.nodes()).collect();
    named.difference(&replicas).count()
}

/// Shrinks the failing run in `dir` and writes the shrunk run into `out`; `Ok(None)` when the plan
/// does not fail with the anomaly type when run again.
pub fn shrink_dir(dir: &Path, out: &Path, o: &Options) -> Result<Option<Done>, String> {
    let plan_path = dir.join("plan.json");
    let text = std::fs::read_to_string(&plan_path)
        .map_err(|e| format!("cannot read {}: {e}", plan_path.display()))?;
    let original = Plan::from_json(&text).map_err(|e| format!("{}: {e}", plan_path.display()))?;
    let target = match &o.anomaly {
        Some(a) => a.clone(),
        None => first_anomaly(dir)?,
    };
    let start = Instant::now();
    let deadline = start + o.budget;
    if o.verbose {
        eprintln!(
            "dynamo shrink: {} ({}); keeping {target}; at most {} runs, {:.0} s",
            dir.display(),
            Size::of(&original),
            o.max_runs,
            o.budget.as_secs_f64()
        );
    }
    let first = run_and_check(&original)?;
    let first_types = types(&first.results);
    if !first_types.contains(&target) {
        eprintln!(
            "dynamo shrink: {}: the plan does not fail with {target} when run again (it shows: {})",
            dir.display(),
            if first_types.is_empty() {
                "nothing".to_owned()
            } else {
                first_types.join(", ")
            }
        );
        return Ok(None);
    }
    // A plan with a deliberate bug that the correct node passes is shrunk to one that the correct
    // node passes too; one that the correct node fails as well keeps its anomaly, whoever causes it.
    let mut extra_runs = 0;
    let isolate = original.config.bug.is_some() && {
        let mut correct = original.clone();
        correct.config.bug = None;
        extra_runs += 1;
        run_and_check(&correct).is_ok_and(|c| c.results.valid == Validity::True)
    };
    if o.verbose && original.config.bug.is_some() {
        eprintln!(
            "dynamo shrink: {}",
            if isolate {
                "the correct node passes the plan: every smaller plan must keep that too"
            } else {
                "the correct node fails the plan too: the anomaly is not only the bug's"
            }
        );
    }
    let trace = Trace::of(&original, &first.history);
    if let Err(e) = &trace {
        eprintln!("dynamo shrink: the history does not fit the plan ({e}): no focus steps");
    }
    let outcome = Outcome {
        fails: true,
        trace: trace.ok(),
        witnesses: witnesses(&original, &first.results, &target),
        history: first.history,
        runs: 1,
        slipped: false,
    };
    let witness_keys = outcome.witnesses.first().map_or(0, |w| w.keys.len().max(1));
    let mut test = |p: &Plan, isolate: bool| evaluate(p, &target, isolate);
    let verbose = o.verbose;
    let mut on_accept = |s: &Step| {
        if verbose {
            eprintln!(
                "  run {:>4}, {:>6.1} s: {} ({})",
                s.run,
                start.elapsed().as_secs_f64(),
                s.size,
                s.what
            );
        }
    };
    let shrunk = shrink_plan(
        original.clone(),
        outcome,
        isolate,
        &mut test,
        o.max_runs.saturating_sub(RUNS_OUTSIDE_SEARCH + extra_runs),
        deadline,
        &mut on_accept,
    );
    let search_s = start.elapsed().as_secs_f64();

    // The final run, written out: it must be the run the search accepted, byte for byte.
    let plan = shrunk.plan;
    let output = run(&plan)?;
    let same = output.history == shrunk.outcome.history;
    write_run(out, &plan, &output)?;
    let results = crate::check::check_and_write(out)?;
    let still = types(&results).contains(&target);
    // A plan shrunk from a deliberate bug is a test of that bug only if the correct node passes it.
    let correct = plan.config.bug.map(|_| {
        let mut p = plan.clone();
        p.config.bug = None;
        run_and_check(&p).map(|c| types(&c.results))
    });
    let (before, after) = (Size::of(&original), Size::of(&plan));
    let explanation = explanation(&results, &target);
    let story = story::tell(&output.history, explanation.as_deref())
        .map(|l| story::text(&l))
        .unwrap_or_default();
    let runs = shrunk.runs + RUNS_OUTSIDE_SEARCH + extra_runs - usize::from(correct.is_none());
    let record = json!({
        "from": dir.display().to_string(),
        "anomaly": target,
        "original": before,
        "runs": runs,
        "wall_s": search_s,
        "budget_spent": shrunk.budget_spent,
        "steps": shrunk.steps,
        "final": after,
    });
    std::fs::write(
        out.join(crate::report::SHRINK_FILE),
        serde_json::to_string_pretty(&record).expect("record serialises") + "\n",
    )
    .map_err(|e| format!("cannot write into {}: {e}", out.display()))?;
    crate::report::write(out)?;
    let fault_nodes = nodes_beyond_replicas(&plan, shrunk.key.unwrap_or(0));
    let isolated = original.config.bug.map(|_| shrunk.isolated);
    Ok(Some(Done {
        dir: dir.to_owned(),
        out: out.to_owned(),
        anomaly: target,
        original,
        plan,
        before,
        after,
        runs,
        wall_s: start.elapsed().as_secs_f64(),
        budget_spent: shrunk.budget_spent,
        still,
        same,
        correct,
        isolated,
        witness_keys,
        fault_nodes,
        explanation,
        story,
        recorded_ops: output.summary.ops,
    }))
}

/// `dynamo shrink`.
pub fn shrink(args: ShrinkArgs) -> Result<ExitCode, String> {
    // Candidates break nodes on purpose, and the node logs every storage error it meets.
    crate::kv::init_logging("off");
    let options = Options {
        anomaly: args.anomaly.clone(),
        max_runs: args.max_runs,
        budget: args.time_budget,
        verbose: true,
    };
    if args.each {
        return bench::each(&args.dir, &options);
    }
    let out = args.out.clone().unwrap_or_else(|| args.dir.join("shrunk"));
    let Some(d) = shrink_dir(&args.dir, &out, &options)? else {
        return Ok(ExitCode::from(2));
    };
    let target = &d.anomaly;
    let ratio = d.before.ops as f64 / d.after.ops.max(1) as f64;
    outln!(
        "shrunk in {} runs, {:.1} s{}:",
        d.runs,
        d.wall_s,
        if d.budget_spent {
            " (budget spent: a longer budget may shrink further)"
        } else {
            ""
        }
    );
    outln!("  before: {}", d.before);
    outln!(
        "  after:  {} ({ratio:.0}x fewer ops); {} client operations recorded",
        d.after,
        d.recorded_ops
    );
    match &d.explanation {
        Some(e) if d.still => outln!("  still {target}: {e}"),
        _ => outln!("  NOT {target} on the final run: the search's runs were not deterministic"),
    }
    if !d.same {
        outln!(
            "  WARNING: the final run's history differs from the accepted run's (nondeterminism)"
        );
    }
    match &d.correct {
        None => {}
        Some(Ok(t)) if t.is_empty() => {
            outln!("  the correct node passes this plan (no anomaly without the bug)")
        }
        Some(Ok(t)) => outln!(
            "  WARNING: the correct node fails this plan too ({}): it does not isolate the bug",
            t.join(", ")
        ),
        Some(Err(e)) => outln!("  WARNING: the correct node cannot run this plan: {e}"),
    }
    if !d.story.is_empty() {
        outln!("story:");
        for l in &d.story {
            outln!("  {l}");
        }
    }
    outln!(
        "files: {} (report.html, shrink.json)\nreplay: dynamo replay {}",
        d.out.display(),
        shell_word(&d.out.join("plan.json").display().to_string())
    );
    if d.after == d.before {
        outln!("(no smaller plan fails the same way)");
    }
    if let Some(path) = &args.save {
        return save(&d, path);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--save`: the shrunk plan as a regression file.
fn save(d: &Done, path: &Path) -> Result<ExitCode, String> {
    let target = &d.anomaly;
    if !d.still || !d.same {
        eprintln!(
            "dynamo shrink: not saved: the shrunk plan does not fail the same way every time"
        );
        return Ok(ExitCode::from(2));
    }
    if d.correct
        .as_ref()
        .is_some_and(|c| !c.as_ref().is_ok_and(Vec::is_empty))
    {
        eprintln!(
            "dynamo shrink: not saved: a plan the correct node fails too is no test of {}",
            d.plan.config.bug.map(|b| b.name()).unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    let plan_path = d.dir.join("plan.json");
    let regression = json!({
        "anomaly": target,
        "bug": d.plan.config.bug.map(|b| b.name()),
        "explanation": d.explanation,
        "story": d.story,
        "shrunk_from": crate::sim::repro_command(&d.original).unwrap_or_else(|| format!(
            "dynamo replay {}",
            shell_word(&plan_path.display().to_string())
        )),
    });
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, regression_json(&d.plan, &regression))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    outln!(
        "saved: {} ({}; `cargo test --test regressions` replays it)",
        path.display(),
        match d.plan.config.bug {
            Some(b) => format!(
                "the correct node must pass it, and --bug {} must still fail with {target}",
                b.name()
            ),
            None => "it fails until the bug is fixed, then guards the fix".to_owned(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The plan the shrinking steps' tests cut down: 200 operations of 6 clients on 10 keys over
/// `nodes` nodes, drawn from seed 5.
#[cfg(test)]
fn test_plan(nodes: usize) -> Plan {
    Plan::generate(dynamo_workloads::SimConfig {
        seed: 5,
        ops: 200,
        clients: 6,
        keys: 10,
        nodes,
        ..dynamo_workloads::SimConfig::default()
    })
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_workloads::SimConfig;

    #[test]
    fn a_regression_file_is_a_plan_with_a_record() {
        let plan = Plan::generate(SimConfig {
            ops: 5,
            ..SimConfig::default()
        })
        .unwrap();
        let text = regression_json(
            &plan,
            &json!({"anomaly": "lost-write", "story": ["a", "b"]}),
        );
        assert!(text.starts_with("{\n  \"regression\": {"), "{text}");
        assert_eq!(Plan::from_json(&text).unwrap(), plan);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v[REGRESSION_FIELD]["anomaly"], "lost-write");
    }

    /// A history's lines, without what only an aimed window records (the write it waited for, the
    /// follow-up it asked for).
    fn lines(history: &[u8]) -> Vec<Value> {
        history
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut e: Value = serde_json::from_slice(l).unwrap();
                if let Some(v) = e.get_mut("value").and_then(Value::as_object_mut) {
                    v.remove("after_ack_of");
                    v.remove("then_follow");
                }
                e
            })
            .collect()
    }

    #[test]
    fn faults_pinned_to_the_operations_around_them_replay_the_same_run() {
        use dynamo_workloads::plan::{NemesisKind, Start};
        // Checked on 40 seeds once; 4 in every run.
        for seed in 0..4 {
            let plan = Plan::generate(SimConfig {
                seed,
                ops: 300,
                nemesis: NemesisKind::ALL.to_vec(),
                fault_gap_ops: 40,
                fault_duration_ms: 300,
                fault_overlap_percent: 40,
                quiesce_ms: 1_000,
                ..SimConfig::default()
            })
            .unwrap();
            // As the shrinker does first: the follow-ups written into the plan as they ran.
            let first = run(&plan).unwrap();
            let trace = Trace::of(&plan, &first.history).unwrap();
            let plan = trace.plan_as_run(&plan).unwrap_or(plan);
            let first = run(&plan).unwrap();
            let trace = Trace::of(&plan, &first.history).unwrap();
            let sel = edit::Selection::all(&plan);
            let (pinned, key) = edit::project(&plan, &trace, &sel, plan.ops[0].key).unwrap();
            assert_eq!(key, plan.ops[0].key, "nothing cut, nothing renamed");
            assert_eq!(pinned.ops, plan.ops);
            assert!(pinned.faults.iter().all(|w| matches!(
                w.start,
                Start::ClientOps { .. } | Start::Ms(_) | Start::Ops(0)
            )));
            let again = run(&pinned).unwrap();
            let (a, b) = (lines(&first.history), lines(&again.history));
            let at = a.iter().zip(&b).position(|(x, y)| x != y);
            assert!(
                at.is_none() && a.len() == b.len(),
                "seed {seed}: first difference {:?}",
                at.map(|i| (&a[i], &b[i]))
            );
        }
    }

    #[test]
    fn key_names_map_back_to_indexes() {
        let plan = Plan::generate(SimConfig {
            ops: 5,
            ..SimConfig::default()
        })
        .unwrap();
        assert_eq!(key_index(&plan, "cart-17"), Some(17));
        assert_eq!(key_index(&plan, "reg-17"), None);
        assert_eq!(key_index(&plan, "cart-x"), None);
    }
}
