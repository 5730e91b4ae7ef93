//! Stored regression plans (issue 15), replayed by every `cargo test`, as proptest replays the
//! seeds of `proptest-regressions/`.
//!
//! `dynamo shrink DIR --save tests/regressions/NAME.json` stores a shrunk plan (the file is a
//! plan.json with a `regression` record first: the anomaly type it showed, the bug, the story). What
//! a stored plan must do now depends on where it came from:
//! - shrunk from a deliberate bug (`config.bug` set): with the bug it must still fail with the
//!   stored anomaly type (the plan keeps its teeth: a change that makes it pass hides the bug from
//!   this plan, and the plan should be shrunk again from a new failure), and the correct node must
//!   pass it;
//! - shrunk from a real bug (no `config.bug`): it must be valid: the bug stays fixed.
//!
//! A failure prints, per plan, what went wrong, the command that replays it and the report of the
//! replay (written under the target directory).

mod common;

use dynamo_checker::{Validity, check, parse_reader};
use dynamo_workloads::plan::Plan;
use dynamo_workloads::run;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The stored plans.
fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// The verdict of a plan's run and its anomaly types.
fn verdict(plan: &Plan) -> Result<(Validity, Vec<String>), String> {
    let output = run(plan)?;
    let parsed = parse_reader(&output.history[..]).map_err(|e| e.to_string())?;
    let results = check(&parsed.history);
    let types = results
        .anomaly_types()
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    Ok((results.valid, types))
}

/// Replays `plan` (stored in `file`, or written beside the report when it is a variant) with the
/// binary, so that the engineer gets its files and report; returns the lines to print.
fn replay_hint(name: &str, file: &Path, plan: &Plan, variant: &str) -> String {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("regressions")
        .join(format!("{name}{variant}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("a directory for the replay");
    let plan_file = if variant.is_empty() {
        file.to_owned()
    } else {
        let path = out.with_extension("plan.json");
        std::fs::write(&path, serde_json::to_string_pretty(plan).unwrap()).unwrap();
        path
    };
    let _ = std::process::Command::new(common::DYNAMO)
        .args([
            "replay",
            plan_file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output();
    format!(
        "\n  replay: dynamo replay {}\n  report: {}",
        plan_file.display(),
        out.join("report.html").display()
    )
}

/// Checks one stored plan; `Err` says what went wrong, how to replay it and where its report is.
fn replay_regression(file: &Path) -> Result<(), String> {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?;
    let plan = Plan::from_json(&text).map_err(|e| format!("{name}: {e}"))?;
    let record: Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let anomaly = record["regression"]["anomaly"].as_str().ok_or_else(|| {
        format!("{name}: no regression.anomaly: not written by dynamo shrink --save")
    })?;
    let fail = |why: String, plan: &Plan, variant: &str| {
        Err(format!(
            "{name}: {why}{}",
            replay_hint(&name, file, plan, variant)
        ))
    };
    let shows = |types: &[String]| {
        if types.is_empty() {
            "no anomaly".to_owned()
        } else {
            types.join(", ")
        }
    };
    match plan.config.bug {
        Some(bug) => {
            let (_, types) = verdict(&plan).map_err(|e| format!("{name}: {e}"))?;
            if !types.iter().any(|t| t == anomaly) {
                return fail(
                    format!(
                        "with --bug {} it no longer fails with {anomaly} (it shows {}): the plan lost its teeth; shrink a new failure of the bug and save it again",
                        bug.name(),
                        shows(&types)
                    ),
                    &plan,
                    "",
                );
            }
            let mut correct = plan.clone();
            correct.config.bug = None;
            let (valid, types) = verdict(&correct).map_err(|e| format!("{name}: {e}"))?;
            if valid != Validity::True {
                return fail(
                    format!("the correct node fails it ({})", shows(&types)),
                    &correct,
                    "-correct",
                );
            }
        }
        None => {
            let (valid, types) = verdict(&plan).map_err(|e| format!("{name}: {e}"))?;
            if valid != Validity::True {
                return fail(
                    format!("it fails again ({}; stored as {anomaly})", shows(&types)),
                    &plan,
                    "",
                );
            }
        }
    }
    Ok(())
}

#[test]
fn every_stored_regression_plan_replays_as_recorded() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(regressions_dir())
        .expect("tests/regressions/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no stored regression plan");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| replay_regression(f).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} stored regression plans failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn a_plan_that_no_longer_fails_as_recorded_names_its_replay_and_report() {
    // A stored plan of a deliberate bug whose record claims an anomaly its run does not show.
    let first = std::fs::read_dir(regressions_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .min()
        .unwrap();
    let mut record: Value =
        serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    assert!(record["config"]["bug"].is_string(), "{}", first.display());
    record["regression"]["anomaly"] = "phantom-read".into();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("claims-too-much.json");
    std::fs::write(&file, record.to_string()).unwrap();
    let e = replay_regression(&file).unwrap_err();
    assert!(e.contains("no longer fails with phantom-read"), "{e}");
    assert!(e.contains("replay: dynamo replay "), "{e}");
    let report = e.split("report: ").nth(1).unwrap().trim();
    assert!(Path::new(report).is_file(), "{e}");
}

/// The example of README.md ("Your own test on the library"), kept compiling and passing here.
mod library_example {
    use dynamo_checker::{Validity, check, parse_reader};
    use dynamo_workloads::plan::{NemesisKind, Plan, SimConfig};
    use dynamo_workloads::run;

    /// The checker's verdict on one plan's run, and its anomaly types.
    fn verdict(plan: &Plan) -> (Validity, Vec<&'static str>) {
        let history = run(plan).expect("the plan runs").history;
        let results = check(&parse_reader(&history[..]).expect("it parses").history);
        let types = results.anomaly_types().iter().map(|k| k.as_str()).collect();
        (results.valid, types)
    }

    #[test]
    fn carts_stay_valid_under_crashes() {
        for seed in 0..5 {
            let config = SimConfig {
                seed,
                ops: 200,
                nemesis: vec![NemesisKind::Crash],
                ..SimConfig::default()
            };
            let (valid, types) = verdict(&Plan::generate(config).unwrap());
            assert_eq!(valid, Validity::True, "seed {seed}: {types:?}");
        }
    }

    #[test]
    fn a_saved_plan_still_catches_lww() {
        let file = "tests/regressions/lww-two-concurrent-cart-updates.json";
        let plan = Plan::from_json(&std::fs::read_to_string(file).unwrap()).unwrap();
        assert!(verdict(&plan).1.contains(&"lost-write"));
    }
}
