//! `dynamo shrink --each DIR`: every failing seed under a nightly's or detection's output shrunk
//! in turn (one at a time, so that each shrink's wall time is its own), and the table of
//! BENCHMARKS.md: the share of the original operations, keys, clients, nodes and faults left, and
//! the wall time, median and worst, per folder (a detection row: one deliberate bug) and over all.
//! Each seed's line also says whether it met the targets: at most the witness keys, at most
//! N + the nodes its faults need, within the budget, and the same anomaly type on replay.

use super::{Done, Options, shrink_dir};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Folders searched below DIR for `seed-S/` (a detection output is DIR/<bug>/seed-S/).
const DEPTH_MAX: usize = 3;

fn seed_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort_by_key(|p| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let seed: Option<u64> = name.strip_prefix("seed-").and_then(|s| s.parse().ok());
        (seed.is_none(), seed, name)
    });
    for p in entries {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with("seed-")
            && p.join("plan.json").is_file()
            && p.join("results.json").is_file()
        {
            out.push(p);
        } else if depth < DEPTH_MAX && name != "shrunk" {
            seed_dirs(&p, depth + 1, out)?;
        }
    }
    Ok(())
}

/// One seed's figures.
struct Row {
    group: String,
    seed: String,
    done: Done,
}

impl Row {
    fn share(after: usize, before: usize) -> Option<f64> {
        (before > 0).then(|| after as f64 / before as f64)
    }
    fn shares(&self) -> [Option<f64>; 5] {
        let (a, b) = (&self.done.after, &self.done.before);
        [
            Row::share(a.ops, b.ops),
            Row::share(a.keys, b.keys),
            Row::share(a.clients, b.clients),
            Row::share(a.nodes, b.nodes),
            Row::share(a.faults, b.faults),
        ]
    }
    fn keys_ok(&self) -> bool {
        self.done.after.keys <= self.done.witness_keys.max(1)
    }
    fn nodes_ok(&self) -> bool {
        self.done.after.nodes <= self.done.plan.config.n + self.done.fault_nodes
    }
    /// The correct node passes the shrunk plan, where it passed the original (else the failure
    /// was never the bug's alone, and a shrunk plan it fails too is right).
    fn correct_ok(&self) -> bool {
        self.done.isolated != Some(true)
            || self
                .done
                .correct
                .as_ref()
                .is_some_and(|c| c.as_ref().is_ok_and(Vec::is_empty))
    }
    fn replay_ok(&self) -> bool {
        self.done.still && self.done.same
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn worst(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(f64::total_cmp)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_owned(), |x| format!("{:.1}%", 100.0 * x))
}

/// The summary line of some rows: median / worst of each share and of the wall time.
fn summary(name: &str, rows: &[&Row]) -> String {
    let mut cells = vec![name.to_owned(), rows.len().to_string()];
    for i in 0..5 {
        let v: Vec<f64> = rows.iter().filter_map(|r| r.shares()[i]).collect();
        cells.push(format!("{} / {}", pct(median(v.clone())), pct(worst(&v))));
    }
    let wall: Vec<f64> = rows.iter().map(|r| r.done.wall_s).collect();
    let runs: Vec<f64> = rows.iter().map(|r| r.done.runs as f64).collect();
    cells.push(format!(
        "{:.1} s / {:.1} s",
        median(wall.clone()).unwrap_or(0.0),
        worst(&wall).unwrap_or(0.0)
    ));
    cells.push(format!(
        "{:.0} / {:.0}",
        median(runs.clone()).unwrap_or(0.0),
        worst(&runs).unwrap_or(0.0)
    ));
    let count = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
    cells.push(format!(
        "{} {} {} {} {}",
        count(&|r| r.keys_ok()),
        count(&|r| r.nodes_ok()),
        count(&|r| !r.done.budget_spent),
        count(&|r| r.replay_ok()),
        count(&|r| r.correct_ok()),
    ));
    format!("| {} |", cells.join(" | "))
}

/// `dynamo shrink --each DIR`.
pub fn each(dir: &Path, o: &Options) -> Result<ExitCode, String> {
    let mut dirs = Vec::new();
    seed_dirs(dir, 0, &mut dirs)?;
    if dirs.is_empty() {
        return Err(format!(
            "no seed-S/ folder with plan.json and results.json under {}",
            dir.display()
        ));
    }
    let options = Options {
        verbose: false,
        anomaly: o.anomaly.clone(),
        ..*o
    };
    eprintln!(
        "dynamo shrink --each: {} failing runs under {}",
        dirs.len(),
        dir.display()
    );
    let mut rows = Vec::new();
    let mut failed = 0;
    for d in &dirs {
        let seed = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let group = d
            .parent()
            .filter(|p| p != &dir)
            .and_then(|p| p.file_name())
            .map_or("-".to_owned(), |n| n.to_string_lossy().to_string());
        match shrink_dir(d, &d.join("shrunk"), &options) {
            Ok(Some(done)) => {
                let row = Row { group, seed, done };
                let [ops, ..] = row.shares();
                eprintln!(
                    "{} {}: {} -> {} ({} of the ops), {} runs, {:.1} s{}{}{}{}{}",
                    row.group,
                    row.seed,
                    row.done.anomaly,
                    row.done.after,
                    pct(ops),
                    row.done.runs,
                    row.done.wall_s,
                    if row.done.budget_spent {
                        ", BUDGET SPENT"
                    } else {
                        ""
                    },
                    if row.keys_ok() {
                        ""
                    } else {
                        ", more keys than the witness"
                    },
                    if row.nodes_ok() {
                        ""
                    } else {
                        ", more nodes than N + the faults'"
                    },
                    if row.replay_ok() {
                        ""
                    } else {
                        ", REPLAY DIFFERS"
                    },
                    match (&row.done.correct, row.done.isolated) {
                        (_, Some(false)) => ", not the bug's alone: the correct node fails it too",
                        (Some(Ok(t)), _) if !t.is_empty() => ", THE CORRECT NODE FAILS IT",
                        (Some(Err(_)), _) => ", THE CORRECT NODE CANNOT RUN IT",
                        _ => "",
                    },
                );
                rows.push(row);
            }
            Ok(None) => failed += 1,
            Err(e) => {
                failed += 1;
                eprintln!("{group} {seed}: cannot shrink: {e}");
            }
        }
    }
    let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    outln!(
        "| runs of | seeds | ops left | keys left | clients left | nodes left | faults left | wall time | runs | targets met: keys, nodes, budget, replay, correct node passes |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|---|");
    for (g, rs) in &groups {
        outln!("{}", summary(g, rs));
    }
    if groups.len() > 1 {
        let all: Vec<&Row> = rows.iter().collect();
        outln!("{}", summary("all", &all));
    }
    outln!("(each cell: median / worst; {failed} runs could not be shrunk)");
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "group": r.group, "seed": r.seed, "anomaly": r.done.anomaly,
                "before": r.done.before, "after": r.done.after, "runs": r.done.runs,
                "wall_s": r.done.wall_s, "budget_spent": r.done.budget_spent,
                "keys_ok": r.keys_ok(), "nodes_ok": r.nodes_ok(), "replay_ok": r.replay_ok(),
                "correct_passes": r.done.correct.as_ref().map(|c| c.as_ref().is_ok_and(Vec::is_empty)),
                "correct_passed_original": r.done.isolated,
            })
        })
        .collect();
    let path = dir.join("shrink-bench.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&json).expect("rows serialise") + "\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    outln!("per seed: {}", path.display());
    Ok(ExitCode::from(if failed > 0 { 2 } else { 0 }))
}
