//! The report's model: everything the page shows, computed from the history digest, the checker's
//! results.json and the plan, with no I/O and no markup. [`build`] is a pure function; `html.rs`
//! and `svg/` render its output.

use super::causality::{self, Subgraph};
use super::digest::{Digest, KeyData, KeyOp};
use super::series::{self, Series};
use super::timeline::{self, Timeline};
use super::{fmt_ms, version_text};
use dynamo_checker::Kind;
use dynamo_checker::history::{ClientF, Outcome, ProcessNo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Findings per kind drawn in full (witness table and causality drawing); the rest are listed.
pub const FINDINGS_DETAILED_MAX: usize = 6;
/// Warnings per kind listed.
pub const WARNINGS_LISTED_MAX: usize = 10;
/// Keys with anomalies that get a per-key view (and causality drawings).
pub const KEYS_TRACKED_MAX: usize = 8;
/// Rows of a per-key view; past it, rows away from the witnesses are elided.
pub const KEY_ROWS_MAX: usize = 400;
/// Rows kept on each side of a witness row when rows are elided.
pub const KEY_CONTEXT_ROWS: usize = 3;

/// The three-valued verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Unknown,
}

impl Verdict {
    /// From results.json's `valid`.
    pub fn of(valid: &Value) -> Verdict {
        match valid {
            Value::Bool(true) => Verdict::Valid,
            Value::Bool(false) => Verdict::Invalid,
            _ => Verdict::Unknown,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "INVALID",
            Verdict::Unknown => "unknown",
        }
    }
}

/// How to run this again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repro {
    /// `dynamo sim --seed S ...`, when the command line can express the plan exactly.
    pub sim: Option<String>,
    /// `dynamo replay DIR/plan.json`, when there is a plan.
    pub replay: Option<String>,
}

/// One finding.
#[derive(Clone, Debug, PartialEq)]
pub struct FindingView {
    pub explanation: String,
    pub key: Option<String>,
    /// The write the finding is about, if it names one.
    pub focus: Option<String>,
    /// Every write id the finding names (its witnesses), deduplicated, in order of appearance.
    pub witnesses: Vec<String>,
    /// The finding's data without its explanation, for the witness table.
    pub data: Value,
    /// The causality drawing, for detailed findings of tracked keys.
    pub graph: Option<Subgraph>,
}

/// The findings of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub kind: String,
    pub definition: &'static str,
    /// All findings of the kind (results.json lists at most a hundred).
    pub total: usize,
    /// Shown in full; the rest of `findings` are listed in a table.
    pub detailed: usize,
    pub findings: Vec<FindingView>,
}

/// A row of the per-key view.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyRow {
    Op(Box<KeyOpRow>),
    /// Rows left out between two shown rows.
    Gap(usize),
}

/// One operation on the key.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyOpRow {
    pub index: u64,
    pub invoked_ns: u64,
    pub latency_ns: Option<u64>,
    pub process: ProcessNo,
    pub f: ClientF,
    pub outcome: Option<Outcome>,
    pub is_final: bool,
    pub node: Option<String>,
    /// Writes: the id, what its client had read, the value summary, the version.
    pub write: Option<String>,
    pub observed: Vec<String>,
    pub value: String,
    pub version: Option<String>,
    /// Reads: the siblings returned.
    pub siblings: Vec<String>,
    /// It involves a witness of a finding on this key.
    pub highlight: bool,
}

/// Every operation of a key with anomalies, in order, and its final replica states.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyView {
    pub key: String,
    /// Anomaly kinds found on the key, with their counts among the listed findings.
    pub kinds: Vec<(String, usize)>,
    pub ops_total: usize,
    pub rows: Vec<KeyRow>,
    /// Per replica: the write ids it holds (tombstones marked with a dagger).
    pub replicas: Vec<(String, Vec<String>)>,
}

/// The whole page.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub dir: String,
    pub verdict: Verdict,
    pub summary: String,
    /// Configuration rows, label and value.
    pub config: Vec<(String, String)>,
    pub repro: Repro,
    pub anomalies: Vec<Section>,
    pub warnings: Vec<Section>,
    /// Why the verdict is unknown, if it is; and the checker's notes.
    pub unknown: Vec<String>,
    pub notes: Vec<String>,
    pub timeline: Timeline,
    pub series: Series,
    pub keys: Vec<KeyView>,
    /// results.json's `stats`, for the figures table.
    pub stats: Value,
    /// Anomaly counts by kind (all findings, not only those listed).
    pub counts: Vec<(String, usize)>,
    /// The run told as a story, for a run of a few operations (and the shrink that made it).
    pub story: Option<super::story::StoryView>,
}

/// The one-sentence definition of an anomaly or warning type (history-format.md).
pub fn definition(kind: &str) -> &'static str {
    match kind {
        "lost-write" => {
            "An acknowledged write that, in the final state, is neither present as a sibling nor an ancestor (by what clients observed) of a write that is."
        }
        "phantom-read" => {
            "A read returned a write id that no put invoked, or a value different from what that write wrote."
        }
        "failed-write-visible" => {
            "A write whose put ended fail appears in a read or in the final state."
        }
        "false-dominance" => {
            "The store orders write a before write b, but b's writer never observed a, directly or transitively: the store may silently drop a."
        }
        "divergence" => {
            "After the final quiescence, the replicas of a key hold different sibling sets."
        }
        "clock-regression" => {
            "A write's version does not succeed every version its client observed: the store did not record the causality the client handed it."
        }
        "false-concurrency" => {
            "Siblings returned together although one observed the other: a sibling that should have been superseded."
        }
        "stale-read" => {
            "A read that missed an acknowledged write that completed before the read started."
        }
        _ => "",
    }
}

/// Every write id a finding names: the values of `write`, `ancestor` and `descendant` fields and the
/// entries of `siblings`, `observed`, `resurrected`, `final_reads` and `replicas`, at any depth.
pub fn witness_ids(finding: &Value) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Object(map) => map.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("write" | "ancestor" | "descendant", Value::String(s)) => {
                            out.push(s.clone())
                        }
                        (
                            "siblings" | "observed" | "resurrected" | "final_reads" | "replicas"
                            | "tombstones",
                            v,
                        ) => strings(v, out),
                        (_, v) => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(finding, &mut out);
    let mut seen = BTreeSet::new();
    out.retain(|id| seen.insert(id.clone()));
    out
}

/// The write a finding is about, and the other writes its drawing should include.
fn focus_of(kind: &str, f: &Value) -> (Option<String>, Vec<String>) {
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let at = |path: &[&str]| {
        let mut v = f;
        for p in path {
            v = v.get(p)?;
        }
        s(v)
    };
    match kind {
        "false-dominance" => (
            at(&["write"]),
            at(&["dominated_by", "write"]).into_iter().collect(),
        ),
        "clock-regression" => (
            at(&["write"]),
            at(&["observed_write", "write"]).into_iter().collect(),
        ),
        "false-concurrency" => (at(&["ancestor"]), at(&["descendant"]).into_iter().collect()),
        "stale-read" => (at(&["missed", "write"]), Vec::new()),
        "divergence" => (None, Vec::new()),
        _ => (at(&["write"]), Vec::new()),
    }
}

/// The keys whose operations the report keeps in full: those with the most anomalies, at most
/// [`KEYS_TRACKED_MAX`].
pub fn tracked_keys(results: &Value) -> BTreeSet<String> {
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(anomalies) = results.get("anomalies").and_then(Value::as_object) {
        for findings in anomalies.values() {
            for f in findings.as_array().into_iter().flatten() {
                if let Some(k) = f.get("key").and_then(Value::as_str) {
                    *per_key.entry(k.to_owned()).or_default() += 1;
                }
            }
        }
    }
    let mut keys: Vec<(String, usize)> = per_key.into_iter().collect();
    keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    keys.into_iter()
        .take(KEYS_TRACKED_MAX)
        .map(|(k, _)| k)
        .collect()
}

fn sections(
    group: Option<&Value>,
    counts: Option<&Value>,
    d: &Digest,
    detailed_max: usize,
    finals: &BTreeMap<String, Vec<String>>,
) -> Vec<Section> {
    let Some(group) = group.and_then(Value::as_object) else {
        return Vec::new();
    };
    // The checker's order of kinds (anomaly_types lists them so), not the JSON object's.
    let mut kinds: Vec<(&String, &Value)> = group.iter().collect();
    kinds.sort_by_key(|(k, _)| Kind::ALL.iter().position(|c| c.as_str() == k.as_str()));
    kinds
        .into_iter()
        .map(|(kind, findings)| {
            let findings = findings.as_array().cloned().unwrap_or_default();
            let total = counts
                .and_then(|c| c.get(kind))
                .and_then(Value::as_u64)
                .map(|n| n as usize)
                .unwrap_or(findings.len())
                .max(findings.len());
            let views = findings
                .into_iter()
                .enumerate()
                .map(|(i, mut data)| {
                    let explanation = data
                        .as_object_mut()
                        .and_then(|m| m.remove("explanation"))
                        .and_then(|e| e.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let key = data.get("key").and_then(Value::as_str).map(str::to_owned);
                    let (focus, others) = focus_of(kind, &data);
                    let graph = match (&key, &focus) {
                        (Some(k), Some(w)) if i < detailed_max => d
                            .tracked
                            .get(k)
                            .and_then(|data| causality::around(k, data, w, &others, &finals[k])),
                        _ => None,
                    };
                    FindingView {
                        explanation,
                        witnesses: witness_ids(&data),
                        key,
                        focus,
                        data,
                        graph,
                    }
                })
                .collect::<Vec<_>>();
            Section {
                kind: kind.clone(),
                definition: definition(kind),
                total,
                detailed: views.len().min(detailed_max),
                findings: views,
            }
        })
        .collect()
}

fn key_rows(data: &KeyData, witnesses: &BTreeSet<String>) -> Vec<KeyRow> {
    let touches = |op: &KeyOp| {
        op.write.as_ref().is_some_and(|w| witnesses.contains(w))
            || op.siblings.iter().any(|s| witnesses.contains(&s.write))
    };
    let all: Vec<KeyOpRow> = data
        .ops
        .iter()
        .map(|op| KeyOpRow {
            index: op.index,
            invoked_ns: op.invoked_ns,
            latency_ns: op.completed_ns.map(|c| c.saturating_sub(op.invoked_ns)),
            process: op.process,
            f: op.f,
            outcome: op.outcome,
            is_final: op.is_final,
            node: op.node.clone(),
            write: op.write.clone(),
            observed: op.observed.clone(),
            value: op.value.clone(),
            version: op.version.as_ref().map(version_text),
            siblings: op
                .siblings
                .iter()
                .map(|s| {
                    if s.tombstone {
                        format!("{}†", s.write)
                    } else {
                        s.write.clone()
                    }
                })
                .collect(),
            highlight: touches(op),
        })
        .collect();
    if all.len() <= KEY_ROWS_MAX {
        return all.into_iter().map(|r| KeyRow::Op(Box::new(r))).collect();
    }
    // Keep the witness rows with a little context, up to the bound; elide the rest.
    let mut keep = vec![false; all.len()];
    let mut kept = 0;
    for (i, row) in all.iter().enumerate() {
        if row.highlight || row.is_final {
            let lo = i.saturating_sub(KEY_CONTEXT_ROWS);
            let hi = (i + KEY_CONTEXT_ROWS + 1).min(all.len());
            for k in keep.iter_mut().take(hi).skip(lo) {
                if !*k && kept < KEY_ROWS_MAX {
                    *k = true;
                    kept += 1;
                }
            }
        }
    }
    let mut rows = Vec::new();
    let mut gap = 0;
    for (row, keep) in all.into_iter().zip(keep) {
        if keep {
            if gap > 0 {
                rows.push(KeyRow::Gap(gap));
                gap = 0;
            }
            rows.push(KeyRow::Op(Box::new(row)));
        } else {
            gap += 1;
        }
    }
    if gap > 0 {
        rows.push(KeyRow::Gap(gap));
    }
    rows
}

fn config_rows(config: Option<&Value>) -> Vec<(String, String)> {
    let Some(map) = config.and_then(Value::as_object) else {
        return Vec::new();
    };
    const FIRST: [&str; 10] = [
        "seed", "bug", "workload", "nodes", "n", "r", "w", "nemesis", "clients", "ops",
    ];
    let text = |v: &Value| match v {
        Value::Null => "none".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        }
        // Tagged enums ({"kind": "zipf", "exponent": 1.0}): the tag, then the rest.
        Value::Object(m) => {
            let word = |v: &Value| v.as_str().map(str::to_owned).unwrap_or(v.to_string());
            let tag = ["kind", "policy"].iter().find_map(|t| m.get(*t));
            let rest: Vec<String> = m
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "kind" | "policy"))
                .map(|(k, v)| format!("{k} {}", word(v)))
                .collect();
            match (tag, rest.is_empty()) {
                (Some(t), true) => word(t),
                (Some(t), false) => format!("{} ({})", word(t), rest.join(", ")),
                (None, _) => rest.join(", "),
            }
        }
        other => other.to_string(),
    };
    let mut rows: Vec<(String, String)> = FIRST
        .iter()
        .filter_map(|&k| map.get(k).map(|v| (k.to_owned(), text(v))))
        .collect();
    for (k, v) in map {
        if FIRST.contains(&k.as_str()) || k == "node_names" {
            continue;
        }
        // A latency model reads best as the `--latency` argument that gives it.
        if k == "latency"
            && let Ok(model) =
                serde_json::from_value::<dynamo_workloads::latency::LatencyModel>(v.clone())
        {
            rows.push((k.clone(), model.to_string()));
            continue;
        }
        match v {
            // A group of settings (e.g. the node's options): one row each, `group.setting`.
            Value::Object(group)
                if !group.contains_key("kind") && !group.contains_key("policy") =>
            {
                for (name, value) in group {
                    rows.push((format!("{k}.{name}"), text(value)));
                }
            }
            v => rows.push((k.clone(), text(v))),
        }
    }
    rows
}

/// Builds the report of a run. `config` is the plan's configuration (or, without a plan, the
/// history's `config` event); `dir` names the run directory in the page.
pub fn build(
    d: &Digest,
    results: &Value,
    config: Option<&Value>,
    repro: Repro,
    dir: &str,
) -> Report {
    let config = config.or(d.config.as_ref());
    let get = |k: &str| config.and_then(|c| c.get(k));
    let verdict = Verdict::of(results.get("valid").unwrap_or(&Value::Null));
    let stats = results.get("stats").cloned().unwrap_or(Value::Null);
    let finals: BTreeMap<String, Vec<String>> = d
        .tracked
        .iter()
        .map(|(k, data)| (k.clone(), causality::final_siblings(data)))
        .collect();
    let anomalies = sections(
        results.get("anomalies"),
        stats.get("anomaly_counts"),
        d,
        FINDINGS_DETAILED_MAX,
        &finals,
    );
    let warnings = sections(
        results.get("warnings"),
        stats.get("warning_counts"),
        d,
        0,
        &finals,
    );

    let mut keys = Vec::new();
    for (key, data) in &d.tracked {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        let mut witnesses = BTreeSet::new();
        for s in &anomalies {
            for f in s.findings.iter().filter(|f| f.key.as_deref() == Some(key)) {
                *kinds.entry(s.kind.clone()).or_default() += 1;
                witnesses.extend(f.focus.iter().cloned());
                if let Some(g) = &f.graph {
                    witnesses.extend(g.nodes.iter().map(|n| n.write.clone()));
                }
            }
        }
        let replicas = data
            .replicas
            .iter()
            .map(|r| {
                let ids = r
                    .siblings
                    .iter()
                    .map(|s| {
                        if s.tombstone {
                            format!("{}†", s.write)
                        } else {
                            s.write.clone()
                        }
                    })
                    .collect();
                (r.node.clone(), ids)
            })
            .collect();
        keys.push(KeyView {
            key: key.clone(),
            kinds: kinds.into_iter().collect(),
            ops_total: data.ops.len(),
            rows: key_rows(data, &witnesses),
            replicas,
        });
    }
    keys.sort_by(|a, b| {
        let n = |k: &KeyView| k.kinds.iter().map(|(_, c)| c).sum::<usize>();
        n(b).cmp(&n(a)).then(a.key.cmp(&b.key))
    });

    let clients = get("clients").and_then(Value::as_u64);
    let timeline = timeline::build(d, clients);
    let series = series::build(d, &timeline, &stats);

    let counts: Vec<(String, usize)> = anomalies
        .iter()
        .map(|s| (s.kind.clone(), s.total))
        .collect();

    let word = |k: &str| get(k).map(|v| v.as_str().map(str::to_owned).unwrap_or(v.to_string()));
    let mut title = String::new();
    if let Some(seed) = word("seed") {
        title.push_str(&format!("seed {seed}"));
    }
    if let Some(w) = word("workload") {
        title.push_str(&format!(" · {w}"));
    }
    if let Some(bug) = get("bug").and_then(Value::as_str) {
        title.push_str(&format!(" · bug {bug}"));
    }
    if title.is_empty() {
        title = dir.to_owned();
    }

    let (mut ok, mut fail, mut info, mut pending) = (0, 0, 0, 0);
    for op in &d.ops {
        match op.outcome {
            Some(Outcome::Ok) => ok += 1,
            Some(Outcome::Fail) => fail += 1,
            Some(Outcome::Info) => info += 1,
            None => pending += 1,
        }
    }
    let processes: BTreeSet<ProcessNo> = d.ops.iter().map(|o| o.process).collect();
    let summary = format!(
        "{} client operations ({ok} ok, {fail} fail, {info} info{}) on {} keys by {} processes; {} nemesis events; {} simulated{}",
        d.ops.len(),
        if pending > 0 {
            format!(", {pending} pending")
        } else {
            String::new()
        },
        d.keys.len(),
        processes.len(),
        d.nemesis.len(),
        fmt_ms(d.end_ns),
        match (d.heal_ns, d.final_ns) {
            (Some(h), Some(f)) =>
                format!("; healed at {}, final reads from {}", fmt_ms(h), fmt_ms(f)),
            (Some(h), None) => format!("; healed at {}", fmt_ms(h)),
            _ => String::new(),
        }
    );
    let list = |k: &str| -> Vec<String> {
        stats
            .get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    Report {
        title,
        dir: dir.to_owned(),
        verdict,
        summary,
        config: config_rows(config),
        repro,
        anomalies,
        warnings,
        unknown: list("unknown"),
        notes: list("notes"),
        timeline,
        series,
        keys,
        stats,
        counts,
        story: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn witness_ids_are_collected_at_any_depth() {
        let f = json!({
            "write": "p1-1", "key": "k", "observed": ["p0-1"],
            "dominated_by": {"write": "p2-2", "observed": []},
            "final_state": {"siblings": ["p3-3"], "replicas": {"n1": ["p3-3", "p4-4"]},
                            "final_reads": [["p3-3"]]},
            "read": {"source": "read", "siblings": ["p5-5"], "node": "n2"}
        });
        let mut ids = witness_ids(&f);
        ids.sort();
        assert_eq!(ids, vec!["p0-1", "p1-1", "p2-2", "p3-3", "p4-4", "p5-5"]);
        assert_eq!(
            focus_of("false-dominance", &f),
            (Some("p1-1".into()), vec!["p2-2".into()])
        );
    }

    #[test]
    fn keys_with_most_anomalies_are_tracked() {
        let r = json!({"anomalies": {
            "lost-write": [{"key": "a"}, {"key": "b"}, {"key": "b"}],
            "divergence": [{"key": "c"}]
        }});
        let keys = tracked_keys(&r);
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }

    #[test]
    fn long_key_histories_keep_the_witness_rows() {
        let mut data = KeyData::default();
        for i in 0..(KEY_ROWS_MAX as u64 * 3) {
            data.ops.push(KeyOp {
                index: i,
                process: 1,
                f: ClientF::Put,
                outcome: Some(Outcome::Ok),
                is_final: false,
                invoked_ns: i,
                completed_ns: Some(i + 1),
                node: None,
                write: Some(format!("p1-{i}")),
                observed: Vec::new(),
                value: String::new(),
                version: None,
                siblings: Vec::new(),
            });
        }
        let witnesses: BTreeSet<String> = ["p1-700".to_string()].into();
        let rows = key_rows(&data, &witnesses);
        let shown: Vec<u64> = rows
            .iter()
            .filter_map(|r| match r {
                KeyRow::Op(o) => Some(o.index),
                KeyRow::Gap(_) => None,
            })
            .collect();
        assert_eq!(shown, (697..=703).collect::<Vec<_>>());
        assert_eq!(rows.first(), Some(&KeyRow::Gap(697)));
        let gaps: usize = rows
            .iter()
            .map(|r| match r {
                KeyRow::Gap(n) => *n,
                KeyRow::Op(_) => 1,
            })
            .sum();
        assert_eq!(gaps, KEY_ROWS_MAX * 3);
    }
}
