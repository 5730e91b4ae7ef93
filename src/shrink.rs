//! `dynamo shrink DIR`: from a failing run's plan, a smaller plan that still fails with the same
//! anomaly type: fewer operations, fewer faults, fewer clients and keys, shorter fault windows.
//!
//! A delta-debugging loop (Zeller's ddmin) over the plan rather than proptest's value trees: the plan
//! on disk may come from an older version, from `dynamo nightly`, or may have been edited by hand, and
//! only the plan itself is needed to shrink it. Each pass proposes simpler plans and keeps the first
//! that still fails:
//! - faults: ddmin over the fault windows (each window is later halved while it still fails);
//! - operations: the shortest failing prefix (bisection), then ddmin over whole keys and whole
//!   clients (all of a key's or a client's ops at once), then over single chunks of the op list
//!   (from the end first);
//! - clients: every op's client remapped to client mod k, for the smallest k that still fails;
//! - keys: the keys still used renumbered 0.., then merged (key mod k);
//! - pauses: every think time set to zero.
//!
//! Passes repeat until none helps. Every candidate is a full deterministic simulation and check, so
//! the loop is bounded by a named number of runs and a time budget.
//!
//! [`shrink_plan`] is the loop, generic over the test; [`shrink`] is the command, whose test runs the
//! simulation and the checker.

use crate::sim::write_run;
use clap::Args;
use dynamo_checker::{check, explain, parse_reader};
use dynamo_workloads::plan::{ClientOp, Plan};
use dynamo_workloads::run;
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// The default bound on simulations one shrink may run.
pub const RUNS_MAX_DEFAULT: usize = 300;
/// The default time budget.
pub const TIME_BUDGET_DEFAULT: &str = "5m";
/// A fault window is not shortened below this.
pub const FAULT_MS_MIN: u64 = 20;
/// Halvings tried per fault window and pass.
pub const HALVINGS_MAX: usize = 6;
/// Key counts tried when merging keys (1..=this).
pub const KEY_MERGE_TRIES_MAX: usize = 8;

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
    #[arg(long, default_value = TIME_BUDGET_DEFAULT)]
    time_budget: String,
    /// Where to write the smaller run (default DIR/shrunk).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How big a plan is, in the terms shrinking reduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub ops: usize,
    pub faults: usize,
    pub clients: usize,
    pub keys: usize,
    /// Total time faults are active.
    pub fault_ms: u64,
    /// Total client think time.
    pub think_ms: u64,
}

impl Size {
    pub fn of(plan: &Plan) -> Size {
        Size {
            ops: plan.ops.len(),
            faults: plan.faults.len(),
            clients: plan.config.clients,
            keys: plan.config.keys,
            fault_ms: plan.faults.iter().map(|f| f.duration_ms).sum(),
            think_ms: plan.ops.iter().map(|o| o.think_ms as u64).sum(),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ops, {} faults ({:.2} s), {} clients, {} keys",
            self.ops,
            self.faults,
            self.fault_ms as f64 / 1000.0,
            self.clients,
            self.keys
        )
    }
}

/// `plan` with these ops (and `config.ops` to match).
pub fn with_ops(plan: &Plan, ops: Vec<ClientOp>) -> Plan {
    let mut p = plan.clone();
    p.config.ops = ops.len();
    p.ops = ops;
    p
}

/// `plan` with its clients folded onto `k` (client mod k); each keeps its ops in order.
pub fn with_clients(plan: &Plan, k: usize) -> Plan {
    let mut p = plan.clone();
    for op in &mut p.ops {
        op.client %= k as u32;
    }
    p.config.clients = k;
    p
}

/// `plan` with the keys it uses renumbered 0.. in order, and `config.keys` the number used.
pub fn with_used_keys(plan: &Plan) -> Plan {
    let mut used: Vec<u32> = plan.ops.iter().map(|o| o.key).collect();
    used.sort_unstable();
    used.dedup();
    let map: BTreeMap<u32, u32> = used
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, i as u32))
        .collect();
    let mut p = plan.clone();
    for op in &mut p.ops {
        op.key = map[&op.key];
    }
    p.config.keys = used.len().max(1);
    p
}

/// `plan` with its keys merged onto `k` (key mod k).
pub fn with_keys(plan: &Plan, k: usize) -> Plan {
    let mut p = plan.clone();
    for op in &mut p.ops {
        op.key %= k as u32;
    }
    p.config.keys = k;
    p
}

/// `plan` with fault `i`'s window cut to half.
pub fn with_shorter_fault(plan: &Plan, i: usize) -> Plan {
    let mut p = plan.clone();
    let w = &mut p.faults[i];
    w.duration_ms /= 2;
    p
}

/// `plan` with no pauses between ops.
pub fn without_think(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    for op in &mut p.ops {
        op.think_ms = 0;
    }
    p.config.think_ms_max = 0;
    p
}

/// The removal of one chunk from a list, classic ddmin: `test` says whether a candidate list still
/// fails (`None`: the budget is spent). Chunks are tried from the end of the list first.
pub fn ddmin<T: Clone>(mut items: Vec<T>, test: &mut dyn FnMut(Vec<T>) -> Option<bool>) -> Vec<T> {
    let mut n = 2usize;
    while !items.is_empty() {
        let chunk = items.len().div_ceil(n);
        let starts: Vec<usize> = (0..items.len()).step_by(chunk).collect();
        let mut reduced = false;
        for &start in starts.iter().rev() {
            let end = (start + chunk).min(items.len());
            let mut candidate = items[..start].to_vec();
            candidate.extend_from_slice(&items[end..]);
            match test(candidate.clone()) {
                None => return items,
                Some(true) => {
                    items = candidate;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
                Some(false) => {}
            }
        }
        if !reduced {
            if chunk == 1 {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    items
}

/// The shortest prefix of the plan's ops that still fails, by bisection. A heuristic: failing is
/// not monotone in the prefix length, but what comes after an anomaly seldom matters, and the
/// bisection costs only log2(ops) runs.
fn shortest_prefix(plan: Plan, s: &mut Search) -> Plan {
    let (mut lo, mut hi) = (0, plan.ops.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match s.test(&with_ops(&plan, plan.ops[..mid].to_vec())) {
            Some(true) => hi = mid,
            Some(false) => lo = mid,
            None => break,
        }
    }
    with_ops(&plan, plan.ops[..hi].to_vec())
}

/// What a shrink found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest failing plan found.
    pub plan: Plan,
    /// Candidates tried.
    pub runs: usize,
    /// Whether it stopped on the run bound or the time budget rather than at a fixpoint.
    pub budget_spent: bool,
}

/// Runs candidate plans through `fails` under a bound on runs and a deadline.
struct Search<'a> {
    fails: &'a mut dyn FnMut(&Plan) -> bool,
    runs: usize,
    runs_max: usize,
    deadline: Instant,
    spent: bool,
    on_accept: &'a mut dyn FnMut(&Plan, usize),
}

impl Search<'_> {
    /// Whether `candidate` still fails; `None` when the budget is spent.
    fn test(&mut self, candidate: &Plan) -> Option<bool> {
        if self.runs >= self.runs_max || Instant::now() >= self.deadline {
            self.spent = true;
            return None;
        }
        self.runs += 1;
        let fails = (self.fails)(candidate);
        if fails {
            (self.on_accept)(candidate, self.runs);
        }
        Some(fails)
    }

    /// Keeps `candidate` if it still fails.
    fn keep(&mut self, plan: &mut Plan, candidate: Plan) -> bool {
        if candidate == *plan {
            return false;
        }
        if self.test(&candidate) == Some(true) {
            *plan = candidate;
            true
        } else {
            false
        }
    }
}

/// Shrinks a failing `plan`: `fails` runs a candidate and says whether it still fails the same way.
/// The original is assumed to fail. Stops at a fixpoint, after `runs_max` candidates, or at `deadline`;
/// `on_accept` hears of each smaller plan kept (with the run count).
pub fn shrink_plan(
    plan: Plan,
    fails: &mut dyn FnMut(&Plan) -> bool,
    runs_max: usize,
    deadline: Instant,
    on_accept: &mut dyn FnMut(&Plan, usize),
) -> Shrunk {
    let mut s = Search {
        fails,
        runs: 0,
        runs_max,
        deadline,
        spent: false,
        on_accept,
    };
    let mut plan = plan;
    loop {
        let before = Size::of(&plan);

        // Coarse cuts first, each a few runs: faults, the tail of the ops, whole keys, whole clients;
        // then single chunks of ops.
        let base = plan.clone();
        let faults = ddmin(plan.faults.clone(), &mut |faults| {
            let mut p = base.clone();
            p.faults = faults;
            s.test(&p)
        });
        plan.faults = faults;

        plan = shortest_prefix(plan, &mut s);

        for by_key in [true, false] {
            let of = |op: &ClientOp| if by_key { op.key } else { op.client };
            let mut groups: Vec<u32> = plan.ops.iter().map(of).collect();
            groups.sort_unstable();
            groups.dedup();
            let base = plan.clone();
            let kept = ddmin(groups, &mut |kept| {
                let ops = base.ops.iter().filter(|o| kept.contains(&of(o))).copied();
                s.test(&with_ops(&base, ops.collect()))
            });
            let ops = plan.ops.iter().filter(|o| kept.contains(&of(o))).copied();
            plan = with_ops(&plan, ops.collect());
        }

        let base = plan.clone();
        let ops = ddmin(plan.ops.clone(), &mut |ops| s.test(&with_ops(&base, ops)));
        plan = with_ops(&plan, ops);

        for k in 1..plan.config.clients {
            if s.spent || {
                let c = with_clients(&plan, k);
                s.keep(&mut plan, c)
            } {
                break;
            }
        }

        let compact = with_used_keys(&plan);
        s.keep(&mut plan, compact);
        for k in 1..plan.config.keys.min(KEY_MERGE_TRIES_MAX + 1) {
            if s.spent || {
                let c = with_keys(&plan, k);
                s.keep(&mut plan, c)
            } {
                break;
            }
        }

        for i in 0..plan.faults.len() {
            for _ in 0..HALVINGS_MAX {
                let w = &plan.faults[i];
                if s.spent || w.duration_ms < 2 * FAULT_MS_MIN {
                    break;
                }
                let c = with_shorter_fault(&plan, i);
                if !s.keep(&mut plan, c) {
                    break;
                }
            }
        }

        if !s.spent {
            let c = without_think(&plan);
            s.keep(&mut plan, c);
        }

        if s.spent || Size::of(&plan) == before {
            break;
        }
    }
    Shrunk {
        plan,
        runs: s.runs,
        budget_spent: s.spent,
    }
}

/// The anomaly types a plan's run shows; `Err` when it cannot be run or checked.
fn anomaly_types(plan: &Plan) -> Result<Vec<String>, String> {
    let output = catch_unwind(AssertUnwindSafe(|| run(plan)))
        .map_err(|_| "the simulation panicked".to_owned())??;
    let parsed = parse_reader(&output.history[..]).map_err(|e| e.to_string())?;
    let results = check(&parsed.history);
    Ok(results
        .anomaly_types()
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect())
}

/// `dynamo shrink`.
pub fn shrink(args: ShrinkArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    let budget = crate::nightly::parse_duration(&args.time_budget)?;
    let plan_path = args.dir.join("plan.json");
    let text = std::fs::read_to_string(&plan_path)
        .map_err(|e| format!("cannot read {}: {e}", plan_path.display()))?;
    let original = Plan::from_json(&text).map_err(|e| format!("{}: {e}", plan_path.display()))?;
    let target = match args.anomaly {
        Some(a) => a,
        None => {
            let path = args.dir.join("results.json");
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
                })?
        }
    };
    let out = args.out.unwrap_or_else(|| args.dir.join("shrunk"));
    let start = Instant::now();
    let deadline = start + budget;
    eprintln!(
        "dynamo shrink: {} ({}); keeping {target}; at most {} runs, {}",
        args.dir.display(),
        Size::of(&original),
        args.max_runs,
        args.time_budget
    );
    let types = anomaly_types(&original)?;
    if !types.contains(&target) {
        eprintln!(
            "dynamo shrink: the plan does not fail with {target} when run again (it shows: {})",
            if types.is_empty() {
                "nothing".to_owned()
            } else {
                types.join(", ")
            }
        );
        return Ok(ExitCode::from(2));
    }
    let mut fails = |p: &Plan| anomaly_types(p).is_ok_and(|t| t.contains(&target));
    let mut on_accept = |p: &Plan, runs: usize| {
        eprintln!(
            "  run {runs:>4}, {:>6.1} s: {}",
            start.elapsed().as_secs_f64(),
            Size::of(p)
        );
    };
    let shrunk = shrink_plan(
        original.clone(),
        &mut fails,
        args.max_runs.saturating_sub(1),
        deadline,
        &mut on_accept,
    );

    let output = run(&shrunk.plan)?;
    write_run(&out, &shrunk.plan, &output)?;
    let results = crate::check::check_and_write(&out)?;
    crate::report::write(&out)?;
    let (before, after) = (Size::of(&original), Size::of(&shrunk.plan));
    let ratio = |a: usize, b: usize| a as f64 / b.max(1) as f64;
    println!(
        "shrunk in {} runs, {:.1} s{}:",
        shrunk.runs + 1,
        start.elapsed().as_secs_f64(),
        if shrunk.budget_spent {
            " (budget spent: a longer budget may shrink further)"
        } else {
            ""
        }
    );
    println!("  before: {before}");
    println!(
        "  after:  {after} ({:.0}x fewer ops); {} client operations recorded",
        ratio(before.ops, after.ops),
        output.summary.ops
    );
    for (kind, findings) in &results.anomalies {
        if kind.as_str() == target
            && let Some(first) = findings.first()
        {
            println!("  still {target}: {}", explain(first));
        }
    }
    println!(
        "files: {}\nreplay: dynamo replay {}",
        out.display(),
        crate::sim::shell_word(&out.join("plan.json").display().to_string())
    );
    if after == before {
        println!("(no smaller plan fails the same way)");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_workloads::SimConfig;
    use dynamo_workloads::plan::{Fault, FaultWindow, Start, Victim};

    fn deadline_in(d: Duration) -> Instant {
        Instant::now() + d
    }

    fn plan() -> Plan {
        Plan::generate(SimConfig {
            seed: 5,
            ops: 200,
            clients: 6,
            keys: 10,
            ..SimConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn ddmin_finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..100).collect();
        let mut tests = 0;
        let min = ddmin(items, &mut |c: Vec<u32>| {
            tests += 1;
            Some(c.contains(&17) && c.contains(&83))
        });
        assert_eq!(min, vec![17, 83]);
        assert!(tests < 100, "{tests} tests");
        // A spent budget returns what it has.
        let min = ddmin((0..10).collect::<Vec<u32>>(), &mut |_| None);
        assert_eq!(min.len(), 10);
    }

    #[test]
    fn remapped_plans_stay_valid() {
        let p = plan();
        for candidate in [
            with_clients(&p, 2),
            with_used_keys(&with_ops(&p, p.ops[..5].to_vec())),
            with_keys(&p, 3),
            with_shorter_fault(&p, 0),
            without_think(&p),
        ] {
            candidate.config.validate().unwrap();
            candidate.validate().unwrap();
        }
        let few = with_used_keys(&with_ops(&p, p.ops[..5].to_vec()));
        assert_eq!(few.config.ops, 5);
        assert!(few.config.keys <= 5);
        assert!(few.ops.iter().all(|o| (o.key as usize) < few.config.keys));
        assert_eq!(
            with_clients(&p, 2).ops.iter().map(|o| o.client).max(),
            Some(1)
        );
        let w = &p.faults[0];
        let half = &with_shorter_fault(&p, 0).faults[0];
        assert_eq!(half.duration_ms, w.duration_ms / 2);
    }

    #[test]
    fn the_loop_keeps_what_the_failure_needs_and_drops_the_rest() {
        // A stand-in for "the simulation still fails": some op on key 3 by any client, and a crash.
        let mut p = plan();
        p.faults.push(FaultWindow {
            start: Start::Ms(1_000_000),
            duration_ms: 4_000,
            fault: Fault::Crash {
                node: Victim::Node(1),
            },
        });
        let target = p.ops.iter().position(|o| o.key == 3).unwrap();
        p.ops[target].kind = dynamo_workloads::plan::OpKind::Update;
        let fails = |c: &Plan| {
            c.ops.iter().any(|o| {
                o.kind == dynamo_workloads::plan::OpKind::Update && c.config.keys > o.key as usize
            }) && c
                .faults
                .iter()
                .any(|f| matches!(f.fault, Fault::Crash { .. }))
        };
        let mut accepted = 0;
        let shrunk = shrink_plan(
            p.clone(),
            &mut |c| fails(c),
            1_000,
            deadline_in(Duration::from_secs(60)),
            &mut |_, _| accepted += 1,
        );
        let s = Size::of(&shrunk.plan);
        assert_eq!(
            (s.ops, s.faults, s.clients, s.keys, s.think_ms),
            (1, 1, 1, 1, 0)
        );
        assert!(s.fault_ms < 4_000, "the crash window was shortened: {s}");
        assert!(fails(&shrunk.plan));
        assert!(!shrunk.budget_spent);
        assert!(accepted > 3);
        shrunk.plan.validate().unwrap();

        // A bound of a few runs stops early and says so.
        let bounded = shrink_plan(
            p,
            &mut |c| fails(c),
            3,
            deadline_in(Duration::from_secs(60)),
            &mut |_, _| {},
        );
        assert!(bounded.budget_spent);
        assert_eq!(bounded.runs, 3);
    }
}
