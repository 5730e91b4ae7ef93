//! The search: from a failing plan, smaller plans that still fail the same way.
//!
//! It starts from what the finding names, in big steps, each one simulation (Hypothesis and
//! proptest shrink the same way: the biggest simplifications first, so that most of the budget is
//! spent on small plans, which run fast):
//! 1. pin: every fault window pinned to the operation whose completion opened it (or the last one
//!    before it, and how long after), faults aimed at the next acknowledged write fixed on the node
//!    they hit, windows that never opened dropped: the same run, now with faults that stay with
//!    their operations;
//! 2. operations: only the writes the finding names; else the witness key's operations up to the
//!    last of them; else all the witness key's operations (tried for the first few findings; each
//!    first as it is, then with the cut operations' time kept as pauses);
//! 3. faults: only the windows still open when the first witness write was invoked, or later;
//! 4. nodes: only the witness key's replicas and the nodes its faults hit, then with the nodes its
//!    requests went to, then with the nodes partitions isolate.
//!
//! Then delta debugging where a big step failed, until nothing helps: pauses, fault windows,
//! operations (by key, by client, then in chunks; the cut operations' time kept as pauses of their
//! client, so that a race stays a race), nodes (the step 4 sets again, then one at a time, after
//! sending every request straight to a replica; a removal that loses the failure is tried again
//! with [`RESEEDS_MAX`] other seeds, whose latencies may win the race back), all operations on one client in the order they
//! ran, all on one key, fault windows halved, pauses one by one.
//!
//! A plan with a deliberate bug that the correct node passes must stay that way: a candidate that
//! fails the same way but fails on the correct node too has slipped to another cause of the same
//! anomaly (the node's own bug) and is not kept. Only when the pinned plan already slips is that
//! requirement dropped, and the result says so.
//!
//! Every candidate is a full deterministic simulation and check, the test the caller gives; each
//! accepted candidate's run also gives the trace that the next projections pin faults with (see
//! `edit.rs`). The loop is bounded by a number of runs and a deadline.

use super::edit::{
    Selection, Size, ddmin, destroys_only_what_may_be_lost, project, ring, tidy, walk,
    with_shorter_fault, with_windows, without_ops, without_think,
};
use super::trace::Trace;
use dynamo_workloads::plan::{Fault, Plan, Start};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::Instant;

/// A fault window is not shortened below this.
pub const FAULT_MS_MIN: u64 = 20;
/// Halvings tried per fault window and pass.
pub const HALVINGS_MAX: usize = 6;
/// Most operations a plan may have for its pauses to be removed one by one.
pub const PAUSES_OPS_MAX: usize = 32;
/// Findings whose keys the focus step tries, one after the other.
pub const FOCUS_FINDINGS_MAX: usize = 3;
/// Other seeds tried for a node's removal that failed with the plan's own seed (see `fewer_nodes`).
pub const RESEEDS_MAX: u64 = 2;

/// What a finding names: its key and the writes it is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Witness {
    /// The finding's key (index), when it names one.
    pub key: Option<u32>,
    /// Every key it names.
    pub keys: Vec<u32>,
    /// Every write id it names.
    pub writes: Vec<String>,
}

/// What one run of a candidate showed.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// It failed with the anomaly type the shrink keeps.
    pub fails: bool,
    /// The run in the plan's terms (for failing runs).
    pub trace: Option<Trace>,
    /// The findings of that type, in the checker's order (for failing runs).
    pub witnesses: Vec<Witness>,
    /// The history (for failing runs).
    pub history: Vec<u8>,
    /// Simulations the test ran (0 counts as 1): a test may also run the correct node.
    pub runs: usize,
    /// It failed the same way with its deliberate bug, but the correct node failed it too.
    pub slipped: bool,
}

/// One accepted step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The candidate's run number (the original's run is 1).
    pub run: usize,
    /// Wall time since the shrink started, ms.
    pub elapsed_ms: u64,
    /// What it removed, in words.
    pub what: String,
    /// The plan's size after it.
    pub size: Size,
}

/// What a shrink found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest failing plan found.
    pub plan: Plan,
    /// Its run.
    pub outcome: Outcome,
    /// Candidates tried.
    pub runs: usize,
    /// Whether it stopped on the run bound or the time budget rather than at a fixpoint.
    pub budget_spent: bool,
    /// The accepted steps, in order.
    pub steps: Vec<Step>,
    /// The witness key's index in `plan`.
    pub key: Option<u32>,
    /// Whether the correct node was still required to pass every kept plan at the end.
    pub isolated: bool,
}

/// The test a candidate must pass to be kept: it still fails the same way (and, when the flag is
/// set, the correct node passes it).
pub type Test<'a> = dyn FnMut(&Plan, bool) -> Outcome + 'a;

struct Search<'a> {
    test: &'a mut Test<'a>,
    runs: usize,
    runs_max: usize,
    deadline: Instant,
    start: Instant,
    spent: bool,
    on_accept: &'a mut dyn FnMut(&Step),
    plan: Plan,
    outcome: Outcome,
    /// The witness key's index in `plan`.
    key: Option<u32>,
    steps: Vec<Step>,
    /// A plan with a deliberate bug must keep passing on the correct node.
    isolate: bool,
    /// The last candidate run slipped (see [`Outcome::slipped`]).
    slipped: bool,
}

fn names(plan: &Plan, keys: &[u32]) -> String {
    let names: Vec<String> = keys.iter().map(|&k| plan.config.key_name(k)).collect();
    names.join(", ")
}

impl Search<'_> {
    /// Runs `candidate`; `None` when the budget is spent.
    fn run(&mut self, candidate: &Plan) -> Option<Outcome> {
        if self.runs >= self.runs_max || Instant::now() >= self.deadline {
            self.spent = true;
            return None;
        }
        let outcome = (self.test)(candidate, self.isolate);
        self.runs += outcome.runs.max(1);
        self.slipped = outcome.slipped;
        Some(outcome)
    }

    /// Keeps `candidate` if it still fails; `what` says what it removed.
    fn try_plan(&mut self, what: impl FnOnce() -> String, candidate: Option<Plan>) -> bool {
        let key = self.key;
        self.try_keyed(what, candidate.map(|p| (p, key)))
    }

    /// Keeps `candidate` (with the witness key's index in it) if it still fails.
    fn try_keyed(
        &mut self,
        what: impl FnOnce() -> String,
        candidate: Option<(Plan, Option<u32>)>,
    ) -> bool {
        let Some((candidate, key)) = candidate else {
            return false;
        };
        let candidate = tidy(candidate);
        if candidate == self.plan || self.spent {
            return false;
        }
        // Where the correct node is not asked (it fails the plan too), a plan that keeps its
        // destructive faults on nodes that may lose data must not shrink into one that does not:
        // renumbering nodes can move a wipe onto a node whose loss no store survives. (Where it
        // is asked, a candidate it fails is refused anyway.)
        if !self.isolate
            && destroys_only_what_may_be_lost(&self.plan)
            && !destroys_only_what_may_be_lost(&candidate)
        {
            return false;
        }
        match self.run(&candidate) {
            Some(outcome) if outcome.fails => {
                self.key = key;
                self.accept(what(), candidate, outcome);
                true
            }
            _ => false,
        }
    }

    fn accept(&mut self, what: String, plan: Plan, outcome: Outcome) {
        self.plan = plan;
        self.outcome = outcome;
        let step = Step {
            // Counting the original's run, as the command's output does.
            run: self.runs + 1,
            elapsed_ms: self.start.elapsed().as_millis() as u64,
            what,
            size: Size::of(&self.plan),
        };
        (self.on_accept)(&step);
        self.steps.push(step);
    }

    /// The finding the shrink follows: the first on the witness key, else the first.
    fn witness(&self) -> Option<Witness> {
        let ws = &self.outcome.witnesses;
        ws.iter()
            .find(|w| w.key.is_some() && w.key == self.key)
            .or(ws.first())
            .cloned()
    }

    /// Tries `sel` of the current plan, projected and pinned, with `key` the witness key.
    fn try_sel(&mut self, what: impl FnOnce() -> String, sel: &Selection, key: u32) -> bool {
        let candidate = self
            .outcome
            .trace
            .as_ref()
            .and_then(|t| project(&self.plan, t, sel, key))
            .map(|(p, k)| (p, Some(k)));
        self.try_keyed(what, candidate)
    }

    // Big steps.

    /// Writes the operations that faults sent after the writes they hit into the plan, as they
    /// ran (key, node, and the blind put that started each follow-up), so that the steps after
    /// this one, which select operations by key, see what really ran.
    fn follow_ups_as_run(&mut self) {
        let Some(trace) = &self.outcome.trace else {
            return;
        };
        let candidate = trace.plan_as_run(&self.plan);
        self.try_plan(
            || "the follow-ups of aimed faults written into the plan as they ran".into(),
            candidate,
        );
    }

    fn pin(&mut self) {
        let (Some(trace), Some(w)) = (self.outcome.trace.clone(), self.witness()) else {
            return;
        };
        let Some(key) = w.key else { return };
        let unpinned = self.plan.faults.iter().zip(&trace.windows).any(|(f, t)| {
            t.opened_ns.is_none()
                || !matches!(f.start, Start::ClientOps { .. } | Start::Ops(0))
                || f.fault.aimed()
        });
        if unpinned {
            let never = trace
                .windows
                .iter()
                .filter(|t| t.opened_ns.is_none())
                .count();
            let sel = Selection::all(&self.plan);
            let what = || {
                format!(
                    "faults pinned to the operations around them, {never} that never opened dropped"
                )
            };
            if !self.try_sel(what, &sel, key) && self.slipped {
                // Pinned to the buggy run's operations, the faults meet the correct node at other
                // moments, and it fails too: the anomaly is not only the bug's. Shrink without
                // asking the correct node.
                self.isolate = false;
                self.try_sel(
                    || {
                        format!(
                            "{} (the correct node fails it too: no longer required to pass)",
                            what()
                        )
                    },
                    &sel,
                    key,
                );
            }
        }
    }

    fn focus_ops(&mut self) {
        let mut tried_keys = BTreeSet::new();
        let witnesses: Vec<Witness> = self.outcome.witnesses.clone();
        let first = self.witness();
        let order = first.into_iter().chain(witnesses);
        for w in order.take(FOCUS_FINDINGS_MAX + 1) {
            let (Some(key), Some(trace)) = (w.key, self.outcome.trace.clone()) else {
                continue;
            };
            if !tried_keys.insert(key) || tried_keys.len() > FOCUS_FINDINGS_MAX {
                continue;
            }
            let keys: BTreeSet<u32> = w.keys.iter().copied().chain([key]).collect();
            let on_keys: Vec<usize> = (0..self.plan.ops.len())
                .filter(|&i| keys.contains(&self.plan.ops[i].key))
                .collect();
            let writes: Vec<usize> = {
                let mut v: Vec<usize> = w
                    .writes
                    .iter()
                    .filter_map(|id| trace.write_op.get(id).copied())
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            };
            let last_ns = writes.iter().map(|&i| trace.ops[i].completed_ns).max();
            let prefix: Vec<usize> = match last_ns {
                Some(t) => on_keys
                    .iter()
                    .copied()
                    .filter(|&i| trace.ops[i].invoked_ns <= t)
                    .collect(),
                None => Vec::new(),
            };
            let key_list: Vec<u32> = keys.iter().copied().collect();
            let all = Selection::all(&self.plan);
            let write_ids: Vec<String> = writes
                .iter()
                .flat_map(|&i| trace.ops[i].writes.clone())
                .collect();
            let n = self.plan.ops.len();
            let candidates: [(Vec<usize>, String); 3] = [
                (
                    writes.clone(),
                    format!(
                        "only the operations that made the writes the finding names ({})",
                        write_ids.join(", ")
                    ),
                ),
                (
                    prefix,
                    format!(
                        "only the operations on {} up to the last write the finding names",
                        names(&self.plan, &key_list)
                    ),
                ),
                (
                    on_keys,
                    format!("only the operations on {}", names(&self.plan, &key_list)),
                ),
            ];
            let mut seen = BTreeSet::new();
            for (ops, what) in candidates {
                if ops.is_empty() || ops.len() >= n || !seen.insert(ops.clone()) {
                    continue;
                }
                let count = ops.len();
                for timed in [false, true] {
                    let sel = Selection {
                        ops: ops.clone(),
                        timed,
                        ..all.clone()
                    };
                    let how = if timed {
                        ", the others' time kept as pauses"
                    } else {
                        ""
                    };
                    if self.try_sel(|| format!("{what}: {count} of {n}{how}"), &sel, key) {
                        return;
                    }
                }
            }
        }
    }

    fn focus_faults(&mut self) {
        let (Some(trace), Some(w)) = (self.outcome.trace.clone(), self.witness()) else {
            return;
        };
        let Some(key) = w.key else { return };
        let first_ns = w
            .writes
            .iter()
            .filter_map(|id| trace.write_op.get(id))
            .map(|&i| trace.ops[i].invoked_ns)
            .min();
        let Some(first_ns) = first_ns else { return };
        let keep: Vec<usize> = (0..self.plan.faults.len())
            .filter(|&i| {
                let t = &trace.windows[i];
                t.opened_ns.is_some_and(|open| {
                    let close =
                        (open + self.plan.faults[i].duration_ms * 1_000_000).min(trace.heal_ns);
                    close >= first_ns
                })
            })
            .collect();
        if keep.len() < self.plan.faults.len() {
            let (k, n) = (keep.len(), self.plan.faults.len());
            let sel = Selection {
                windows: keep,
                ..Selection::all(&self.plan)
            };
            self.try_sel(
                || format!("only the faults open when the first witness write was invoked, or later: {k} of {n}"),
                &sel,
                key,
            );
        }
    }

    /// The nodes the witness key's replicas are, and the nodes each kind of role needs.
    fn node_roles(&self, key: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<u32>) {
        let c = &self.plan.config;
        let replicas: Vec<u32> = walk(&ring(c.nodes, c.partitions), &c.key_name(key))
            .into_iter()
            .take(c.n)
            .collect();
        let trace = self.outcome.trace.as_ref();
        let mut hit = Vec::new();
        let mut isolated = Vec::new();
        for (i, w) in self.plan.faults.iter().enumerate() {
            match &w.fault {
                Fault::Partition { groups, .. } => {
                    if let Some(small) = groups.iter().min_by_key(|g| g.len()) {
                        isolated.extend(small.iter().copied());
                    }
                }
                Fault::Crash { node }
                | Fault::Wipe { node }
                | Fault::Disk { node, .. }
                | Fault::Pause { node } => {
                    match trace.and_then(|t| t.windows.get(i)).and_then(|t| t.victim) {
                        Some(v) => hit.push(v),
                        None => hit.extend(node.candidates()),
                    }
                }
                Fault::Skew { node, .. } | Fault::Leave { node } => hit.push(*node),
                Fault::Loss { .. } | Fault::Slow { .. } | Fault::Power => {}
            }
        }
        let coordinators: Vec<u32> = self.plan.ops.iter().map(|o| o.node).collect();
        (replicas, hit, coordinators, isolated)
    }

    fn focus_nodes(&mut self) {
        let Some(key) = self.key.or_else(|| self.witness().and_then(|w| w.key)) else {
            return;
        };
        if self.plan.config.nodes <= self.plan.config.n {
            return;
        }
        let (replicas, hit, coordinators, isolated) = self.node_roles(key);
        let set = |parts: &[&[u32]]| -> Vec<u32> {
            let s: BTreeSet<u32> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            s.into_iter().collect()
        };
        let candidates = [
            (
                set(&[&replicas, &hit]),
                "the witness key's replicas and the nodes its faults hit",
            ),
            (
                set(&[&replicas, &hit, &coordinators]),
                "the witness key's replicas, the nodes its faults hit and its requests' coordinators",
            ),
            (
                set(&[&replicas, &hit, &coordinators, &isolated]),
                "the witness key's replicas and the nodes its faults and requests involve",
            ),
        ];
        let n = self.plan.config.nodes;
        let mut seen = BTreeSet::new();
        for (nodes, what) in candidates {
            if nodes.len() >= n || !seen.insert(nodes.clone()) {
                continue;
            }
            let kept: Vec<String> = nodes.iter().map(|i| format!("n{}", i + 1)).collect();
            let sel = Selection {
                nodes,
                ..Selection::all(&self.plan)
            };
            if self.try_sel(
                || format!("only {what}: {} of {n} nodes", kept.join(", ")),
                &sel,
                key,
            ) {
                return;
            }
        }
    }

    // Delta debugging.

    fn ddmin_faults(&mut self) {
        if self.plan.faults.is_empty() {
            return;
        }
        let base = self.plan.clone();
        let n = base.faults.len();
        let items: Vec<usize> = (0..n).collect();
        ddmin(items, &mut |keep: Vec<usize>| {
            let candidate = with_windows(&base, &keep);
            let k = keep.len();
            if self.spent {
                return None;
            }
            Some(self.try_plan(
                || format!("faults removed: {k} of {n} left"),
                Some(candidate),
            ))
        });
    }

    /// Operations removed from `base`, pinned again from its run (or moved along without one).
    fn ops_candidate(
        base: &Plan,
        trace: Option<&Trace>,
        key: Option<u32>,
        keep: &[usize],
    ) -> Option<(Plan, Option<u32>)> {
        match (trace, key) {
            (Some(t), Some(key)) => project(
                base,
                t,
                &Selection {
                    ops: keep.to_vec(),
                    timed: true,
                    ..Selection::all(base)
                },
                key,
            )
            .map(|(p, k)| (p, Some(k))),
            _ => Some((without_ops(base, keep), key)),
        }
    }

    fn ddmin_ops(&mut self) {
        // Whole keys, whole clients, then chunks of operations.
        for by_key in [true, false] {
            let base = self.plan.clone();
            let trace = self.outcome.trace.clone();
            let of = |i: usize| {
                let op = &base.ops[i];
                if by_key { op.key } else { op.client }
            };
            let mut groups: Vec<u32> = (0..base.ops.len()).map(of).collect();
            groups.sort_unstable();
            groups.dedup();
            if groups.len() < 2 {
                continue;
            }
            let n = base.ops.len();
            let key = self.key;
            let what = if by_key { "keys" } else { "clients" };
            ddmin(groups, &mut |kept: Vec<u32>| {
                if self.spent {
                    return None;
                }
                let keep: Vec<usize> = (0..n).filter(|&i| kept.contains(&of(i))).collect();
                let k = keep.len();
                let candidate = Self::ops_candidate(&base, trace.as_ref(), key, &keep);
                Some(self.try_keyed(
                    || format!("operations of some {what} removed: {k} of {n} left"),
                    candidate,
                ))
            });
        }
        let base = self.plan.clone();
        let trace = self.outcome.trace.clone();
        let n = base.ops.len();
        let key = self.key;
        ddmin((0..n).collect(), &mut |keep: Vec<usize>| {
            if self.spent {
                return None;
            }
            let k = keep.len();
            let candidate = Self::ops_candidate(&base, trace.as_ref(), key, &keep);
            Some(self.try_keyed(|| format!("operations removed: {k} of {n} left"), candidate))
        });
    }

    fn fewer_nodes(&mut self) {
        let Some(key) = self.key else { return };
        // Requests sent to a node outside their key's replicas are forwarded: send them to the
        // first replica, so that the node they went through can go.
        let c = &self.plan.config;
        let r = ring(c.nodes, c.partitions);
        let mut direct = self.plan.clone();
        for op in &mut direct.ops {
            let replicas: Vec<u32> = walk(&r, &c.key_name(op.key))
                .into_iter()
                .take(c.n)
                .collect();
            if !replicas.contains(&op.node) {
                op.node = replicas[0];
            }
        }
        self.try_plan(
            || "every request sent to a replica of its key".into(),
            Some(direct),
        );
        let mut node = 0u32;
        while (node as usize) < self.plan.config.nodes && !self.spent {
            let (replicas, ..) = self.node_roles(key);
            if replicas.contains(&node) {
                node += 1;
                continue;
            }
            let n = self.plan.config.nodes;
            let sel = Selection {
                nodes: (0..n as u32).filter(|&i| i != node).collect(),
                ..Selection::all(&self.plan)
            };
            let name = format!("n{}", node + 1);
            let mut removed = self.try_sel(
                || format!("node {name} removed: {} of {n} left", n - 1),
                &sel,
                key,
            );
            // A node that serves no request and is hit by no fault can still matter to a race
            // through timing alone: every latency is drawn from the seeded RNG, and one host fewer
            // changes the draws. A few other seeds give the race other chances; the seed is part
            // of the plan, so the shrunk plan still replays the same run.
            let mut k = 1;
            while !removed && k <= RESEEDS_MAX && !self.spent {
                let candidate = self
                    .outcome
                    .trace
                    .as_ref()
                    .and_then(|t| project(&self.plan, t, &sel, key))
                    .map(|(mut p, key)| {
                        p.config.seed = p.config.seed.wrapping_add(k);
                        (p, Some(key))
                    });
                let seed = self.plan.config.seed.wrapping_add(k);
                removed = self.try_keyed(
                    || {
                        format!(
                            "node {name} removed, with seed {seed}: {} of {n} left",
                            n - 1
                        )
                    },
                    candidate,
                );
                k += 1;
            }
            if !removed {
                node += 1;
            }
        }
    }

    fn simpler_shape(&mut self) {
        let Some(key) = self.key else { return };
        let size = Size::of(&self.plan);
        if size.clients > 1 {
            for timed in [false, true] {
                let sel = Selection {
                    sequential: true,
                    timed,
                    ..Selection::all(&self.plan)
                };
                let how = if timed { ", at the times they ran" } else { "" };
                if self.try_sel(
                    || {
                        format!(
                            "every operation on one client, in the order they ran{how} (of {} clients)",
                            size.clients
                        )
                    },
                    &sel,
                    key,
                ) {
                    break;
                }
            }
        }
        let size = Size::of(&self.plan);
        if size.keys > 1 {
            let sel = Selection {
                one_key: true,
                ..Selection::all(&self.plan)
            };
            self.try_sel(
                || format!("every operation on the witness key (of {} keys)", size.keys),
                &sel,
                key,
            );
        }
    }

    fn shorter_faults(&mut self) {
        for i in 0..self.plan.faults.len() {
            for _ in 0..HALVINGS_MAX {
                let w = &self.plan.faults[i];
                if self.spent || w.duration_ms < 2 * FAULT_MS_MIN {
                    break;
                }
                let (from, to) = (w.duration_ms, w.duration_ms / 2);
                let c = with_shorter_fault(&self.plan, i);
                if !self.try_plan(
                    || format!("fault {} shortened from {from} to {to} ms", i + 1),
                    Some(c),
                ) {
                    break;
                }
            }
        }
    }

    fn no_think(&mut self) {
        if Size::of(&self.plan).think_ms > 0 {
            let c = without_think(&self.plan);
            self.try_plan(|| "no pauses between operations".into(), Some(c));
        }
    }

    /// Some pauses matter (a race's timing): drop the others, one by one in a small plan.
    fn fewer_pauses(&mut self) {
        if Size::of(&self.plan).think_ms == 0 || self.plan.ops.len() > PAUSES_OPS_MAX {
            return;
        }
        let before = self.plan.clone();
        self.no_think();
        if self.plan != before {
            return;
        }
        let base = self.plan.clone();
        let paused: Vec<usize> = (0..base.ops.len())
            .filter(|&i| base.ops[i].think_ms > 0)
            .collect();
        let n = paused.len();
        ddmin(paused, &mut |keep: Vec<usize>| {
            if self.spent {
                return None;
            }
            let mut c = base.clone();
            for (i, op) in c.ops.iter_mut().enumerate() {
                if !keep.contains(&i) {
                    op.think_ms = 0;
                }
            }
            let k = keep.len();
            Some(self.try_plan(|| format!("pauses removed: {k} of {n} left"), Some(c)))
        });
    }
}

/// Shrinks a failing `plan`, whose run is `outcome`: `test` runs a candidate and says whether it
/// still fails the same way. Stops at a fixpoint, after `runs_max` candidates, or at `deadline`;
/// `on_accept` hears of each smaller plan kept.
pub fn shrink_plan<'a>(
    plan: Plan,
    outcome: Outcome,
    isolate: bool,
    test: &'a mut Test<'a>,
    runs_max: usize,
    deadline: Instant,
    on_accept: &'a mut dyn FnMut(&Step),
) -> Shrunk {
    let key = outcome.witnesses.first().and_then(|w| w.key);
    let mut s = Search {
        test,
        runs: 0,
        runs_max,
        deadline,
        start: Instant::now(),
        spent: false,
        on_accept,
        plan,
        outcome,
        key,
        steps: Vec::new(),
        isolate,
        slipped: false,
    };
    s.follow_ups_as_run();
    s.pin();
    s.focus_ops();
    s.focus_faults();
    s.focus_nodes();
    loop {
        let before = Size::of(&s.plan);
        // Pauses first: a run's wall time follows its simulated time.
        s.no_think();
        s.ddmin_faults();
        s.ddmin_ops();
        s.focus_nodes();
        s.fewer_nodes();
        s.simpler_shape();
        s.shorter_faults();
        s.fewer_pauses();
        if s.spent || Size::of(&s.plan) == before {
            break;
        }
    }
    Shrunk {
        plan: s.plan,
        outcome: s.outcome,
        runs: s.runs,
        budget_spent: s.spent,
        steps: s.steps,
        key: s.key,
        isolated: s.isolate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_workloads::SimConfig;
    use dynamo_workloads::plan::{FaultWindow, OpKind, Victim};
    use std::time::Duration;

    fn plan() -> Plan {
        super::super::test_plan(SimConfig::default().nodes)
    }

    #[test]
    fn without_a_trace_the_loop_still_keeps_what_the_failure_needs_and_drops_the_rest() {
        // A stand-in for "the simulation still fails": some update, and a crash.
        let mut p = plan();
        p.faults.push(FaultWindow {
            start: Start::Ms(1_000_000),
            duration_ms: 4_000,
            fault: Fault::Crash {
                node: Victim::Node(1),
            },
        });
        let target = p.ops.iter().position(|o| o.key == 3).unwrap();
        p.ops[target].kind = OpKind::Update;
        let fails = |c: &Plan| {
            c.ops.iter().any(|o| o.kind == OpKind::Update)
                && c.faults
                    .iter()
                    .any(|f| matches!(f.fault, Fault::Crash { .. }))
        };
        let mut test = |c: &Plan, _| Outcome {
            fails: fails(c),
            ..Outcome::default()
        };
        let mut accepted = 0;
        let mut on_accept = |_: &Step| accepted += 1;
        let shrunk = shrink_plan(
            p.clone(),
            Outcome {
                fails: true,
                ..Outcome::default()
            },
            false,
            &mut test,
            1_000,
            Instant::now() + Duration::from_secs(60),
            &mut on_accept,
        );
        let s = Size::of(&shrunk.plan);
        assert_eq!(
            (s.ops, s.faults, s.clients, s.keys, s.think_ms),
            (1, 1, 1, 1, 0)
        );
        assert!(s.fault_ms < 4_000, "the crash window was shortened: {s}");
        assert!(fails(&shrunk.plan));
        assert!(!shrunk.budget_spent);
        assert!(shrunk.steps.len() > 3);
        shrunk.plan.validate().unwrap();

        // A bound of a few runs stops early and says so.
        let mut test = |c: &Plan, _| Outcome {
            fails: fails(c),
            ..Outcome::default()
        };
        let mut quiet = |_: &Step| {};
        let bounded = shrink_plan(
            p,
            Outcome {
                fails: true,
                ..Outcome::default()
            },
            false,
            &mut test,
            3,
            Instant::now() + Duration::from_secs(60),
            &mut quiet,
        );
        assert!(bounded.budget_spent);
        assert_eq!(bounded.runs, 3);
    }
}
