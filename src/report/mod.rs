//! `dynamo report DIR`: the run's `report.html`, one self-contained page for the engineer who has to
//! understand a failure: the verdict and how to reproduce it, every anomaly with its explanation,
//! witnesses and a drawing of the causality around it, a timeline of every client operation against
//! the faults, plots of latency, throughput, siblings and the consistency window, and every operation
//! on the keys where something went wrong.
//!
//! # Layout
//!
//! The pure part turns the run's files into a model; rendering is a separate step (STYLE.md, 6):
//! - `digest.rs`: one streaming pass over history.jsonl into compact records, full detail only for
//!   the keys with anomalies;
//! - `causality.rs`: the subgraph around a finding (observed and clock edges);
//! - `timeline.rs`: lanes, bars, fault intervals, phases;
//! - `series.rs`: the plots' data;
//! - `model.rs`: the whole page's model, from the digest, results.json and the plan;
//! - `story.rs`: a run of a few operations told as sentences, and the steps of the shrink that made
//!   it (from `shrink.json`, which `dynamo shrink` writes beside a shrunk run);
//! - `html.rs` and `svg/`: markup; plots through plotters' SVG backend.
//!
//! [`write`] reads the files, builds, renders and writes; `dynamo sim`, `replay`, `nightly` and
//! `shrink` call it after the check.

pub mod causality;
pub mod digest;
pub mod html;
pub mod model;
pub mod series;
pub mod story;
pub mod svg;
pub mod timeline;

use clap::Args;
use dynamo_checker::history::{Event, EventReader, Version};
use dynamo_workloads::Plan;
use serde_json::Value;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The report's file name in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// Options of `dynamo report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory with history.jsonl, results.json (checked now if missing) and plan.json
    /// (optional).
    dir: PathBuf,
}

/// `dynamo report`: (re)writes DIR/report.html and prints its path.
pub fn report(args: ReportArgs) -> Result<ExitCode, String> {
    let path = write(&args.dir)?;
    outln!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Nanoseconds for people: whole milliseconds as `112 ms`, others with three decimals, and from ten
/// seconds on as seconds.
pub fn fmt_ms(ns: u64) -> String {
    if ns >= 10_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{} ms", ns / 1_000_000)
    } else {
        format!("{:.3} ms", ns as f64 / 1e6)
    }
}

/// A version as `dot n1:3 clock {n2:1}` (or `clock {...}` without a dot).
pub fn version_text(v: &Version) -> String {
    let clock: Vec<String> = v.clock.iter().map(|(n, c)| format!("{n}:{c}")).collect();
    match &v.dot {
        Some(d) => format!("dot {}:{} clock {{{}}}", d.node, d.counter, clock.join(",")),
        None => format!("clock {{{}}}", clock.join(",")),
    }
}

/// Reads results.json of `dir`; checks the history first when it is missing.
fn results_of(dir: &Path) -> Result<Value, String> {
    let path = dir.join("results.json");
    if !path.exists() {
        let results = crate::check::check_and_write(dir)?;
        return serde_json::to_value(&results).map_err(|e| e.to_string());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads plan.json of `dir`, if there is one.
fn plan_of(dir: &Path) -> Result<Option<Plan>, String> {
    let path = dir.join("plan.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Plan::from_json(&text)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The shrink record a shrunk run's directory holds.
pub const SHRINK_FILE: &str = "shrink.json";

/// The story of a small run in `dir`, and its shrink record if it has one; `None` for a big run.
fn story_of(
    dir: &Path,
    results: &Value,
    plan: Option<&Plan>,
) -> Result<Option<story::StoryView>, String> {
    let shrink_path = dir.join(SHRINK_FILE);
    let shrink: Option<Value> = if shrink_path.exists() {
        let text = std::fs::read_to_string(&shrink_path)
            .map_err(|e| format!("cannot read {}: {e}", shrink_path.display()))?;
        Some(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", shrink_path.display()))?)
    } else {
        None
    };
    // Only a small plan's history is read a second time.
    if shrink.is_none() && plan.is_none_or(|p| p.ops.len() > story::STORY_REQUESTS_MAX) {
        return Ok(None);
    }
    let history = dir.join(dynamo_checker::HISTORY_FILE);
    let bytes =
        std::fs::read(&history).map_err(|e| format!("cannot read {}: {e}", history.display()))?;
    let ending = first_explanation(results, shrink.as_ref());
    let Some(lines) = story::tell(&bytes, ending.as_deref()) else {
        return Ok(shrink.map(|s| story::StoryView {
            lines: Vec::new(),
            shrink: Some(s),
        }));
    };
    Ok(Some(story::StoryView { lines, shrink }))
}

/// The explanation of the first finding of the shrink's anomaly type (else of any anomaly).
fn first_explanation(results: &Value, shrink: Option<&Value>) -> Option<String> {
    let anomalies = results.get("anomalies")?.as_object()?;
    let kind = shrink
        .and_then(|s| s.get("anomaly"))
        .and_then(Value::as_str)
        .filter(|k| anomalies.contains_key(*k))
        .or_else(|| anomalies.keys().next().map(String::as_str))?;
    anomalies
        .get(kind)?
        .as_array()?
        .first()?
        .get("explanation")?
        .as_str()
        .map(str::to_owned)
}

/// Builds the report of the run in `dir` and writes `dir/report.html`; returns its path.
pub fn write(dir: &Path) -> Result<PathBuf, String> {
    let results = results_of(dir)?;
    let plan = plan_of(dir)?;
    let tracked = model::tracked_keys(&results);
    let history = dir.join(dynamo_checker::HISTORY_FILE);
    let file =
        File::open(&history).map_err(|e| format!("cannot read {}: {e}", history.display()))?;
    let mut error = None;
    let events = EventReader::new(BufReader::with_capacity(1 << 20, file)).map_while(
        |r: Result<(usize, Event), _>| match r {
            Ok((_, e)) => Some(e),
            Err(e) => {
                error = Some(e);
                None
            }
        },
    );
    let digest = digest::Digest::ingest(events, &tracked);
    if let Some(e) = error {
        return Err(format!("{}: {e}", history.display()));
    }
    // A run of `dynamo live` (it leaves live.json) is repeated by `dynamo live` with the same
    // options: the same plan, on real processes (not the same timing).
    let live = dir.join("live.json").exists();
    let repro = model::Repro {
        sim: plan
            .as_ref()
            .and_then(crate::sim::repro_command)
            .map(|line| match line.strip_prefix("dynamo sim ") {
                Some(options) if live => format!("dynamo live {options}"),
                _ => line,
            }),
        replay: plan.as_ref().map(|_| {
            let plan_path = crate::sim::shell_word(&dir.join("plan.json").display().to_string());
            if live {
                format!("dynamo live --plan {plan_path}")
            } else {
                format!("dynamo replay {plan_path}")
            }
        }),
    };
    let config = plan
        .as_ref()
        .map(|p| serde_json::to_value(&p.config).expect("config serialises"));
    let mut model = model::build(
        &digest,
        &results,
        config.as_ref(),
        repro,
        &dir.display().to_string(),
    );
    model.story = story_of(dir, &results, plan.as_ref())?;
    let page = html::render(&model);
    let out = dir.join(REPORT_FILE);
    let tmp = dir.join(format!(".{REPORT_FILE}.tmp"));
    std::fs::write(&tmp, page)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_checker::history::{Clock, Dot};

    #[test]
    fn times_and_versions_read_well() {
        assert_eq!(fmt_ms(112_000_000), "112 ms");
        assert_eq!(fmt_ms(1_500), "0.002 ms");
        assert_eq!(fmt_ms(15_100_000_000), "15.100 s");
        let v = Version {
            dot: Some(Dot::new("n1", 4)),
            clock: [("n2", 1u64), ("n1", 3)].into_iter().collect::<Clock>(),
        };
        assert_eq!(version_text(&v), "dot n1:4 clock {n1:3,n2:1}");
    }
}
