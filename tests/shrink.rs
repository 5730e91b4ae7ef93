//! `dynamo shrink` (issues 6 and 15): shrinking a `--bug lww` failure yields a plan with fewer
//! operations that still fails with lost-write, written with its history, results and report, and
//! `dynamo replay` of it fails the same way; a nightly failure of `--bug no-repair` on 7 nodes and
//! 157 keys shrinks to one key's few operations on N nodes, told as a story in its report, and
//! `--save` stores it as a regression plan that replays the same way.

mod common;

use common::{dynamo, json};
use serde_json::Value;

#[test]
fn shrinking_a_lost_write_keeps_it_with_fewer_operations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let sim = dynamo(&[
        "sim",
        "--seed",
        "0",
        "--bug",
        "lww",
        "--ops",
        "200",
        "--nemesis",
        "skew",
        "--out",
        d,
    ]);
    assert_eq!(sim.status.code(), Some(1));
    let before = json(&dir.join("plan.json"));

    let shrink = dynamo(&["shrink", d, "--max-runs", "80", "--time-budget", "2m"]);
    assert_eq!(shrink.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&shrink.stdout);
    assert!(stdout.contains("before: 200 ops"), "{stdout}");
    assert!(stdout.contains("still lost-write"), "{stdout}");

    let shrunk = dir.join("shrunk");
    for f in ["plan.json", "history.jsonl", "results.json", "report.html"] {
        assert!(shrunk.join(f).is_file(), "shrink writes {f}");
    }
    let after = json(&shrunk.join("plan.json"));
    let ops = |p: &Value| p["ops"].as_array().unwrap().len();
    assert!(
        ops(&after) < ops(&before),
        "{} ops shrank to {}",
        ops(&before),
        ops(&after)
    );
    assert!(after["config"]["keys"].as_u64() <= before["config"]["keys"].as_u64());
    let results = json(&shrunk.join("results.json"));
    assert!(
        results["anomaly_types"]
            .as_array()
            .unwrap()
            .contains(&"lost-write".into()),
        "{results}"
    );
    let report = std::fs::read_to_string(shrunk.join("report.html")).unwrap();
    assert!(
        report.contains("dynamo replay"),
        "a shrunk plan is replayed, not re-simulated"
    );

    // The shrunk plan fails again when replayed.
    let again = tmp.path().join("again");
    let replay = dynamo(&[
        "replay",
        shrunk.join("plan.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(1));
    assert_eq!(
        json(&again.join("results.json"))["anomaly_types"],
        results["anomaly_types"]
    );

    // A run that did not fail has nothing to shrink.
    let valid = tmp.path().join("valid");
    let v = valid.to_str().unwrap();
    let sim = dynamo(&[
        "sim",
        "--seed",
        "1",
        "--ops",
        "30",
        "--nemesis",
        "none",
        "--out",
        v,
    ]);
    assert_eq!(sim.status.code(), Some(0));
    let none = dynamo(&["shrink", v]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("nothing to shrink"));
}

#[test]
fn a_nightly_failure_shrinks_to_one_key_on_n_nodes_and_is_saved_as_a_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let night = tmp.path().join("night");
    let n = night.to_str().unwrap();
    let run = dynamo(&[
        "nightly",
        "--seeds",
        "1",
        "--ops",
        "300",
        "--bug",
        "no-repair",
        "--jobs",
        "1",
        "--out",
        n,
    ]);
    assert_eq!(run.status.code(), Some(1), "seed 1 fails with no-repair");
    let seed = night.join("seed-1");
    let before = json(&seed.join("plan.json"));
    assert_eq!(before["config"]["nodes"], 7);

    let saved = tmp.path().join("regressions").join("no-repair.json");
    let shrink = dynamo(&[
        "shrink",
        seed.to_str().unwrap(),
        "--save",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(shrink.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&shrink.stdout);
    assert!(stdout.contains("still divergence"), "{stdout}");
    assert!(
        stdout.contains("the correct node passes this plan"),
        "{stdout}"
    );
    assert!(stdout.contains("story:"), "{stdout}");

    // The targets: at most 2% of the operations, the witness key only, N nodes plus the faults'.
    let after = json(&seed.join("shrunk").join("plan.json"));
    let ops = after["ops"].as_array().unwrap();
    assert!(ops.len() * 50 <= 300, "{} ops", ops.len());
    assert_eq!(after["config"]["keys"], 1);
    assert!(ops.iter().all(|o| o["key"] == 0));
    assert!(after["config"]["nodes"].as_u64().unwrap() <= 4, "{after}");
    for w in after["faults"].as_array().unwrap() {
        assert!(
            w["start"].get("client-ops").is_some() || w["start"]["ops"] == 0,
            "{w}"
        );
    }

    // The shrunk run's report tells the run as a story and lists the accepted steps.
    let shrunk = seed.join("shrunk");
    let record = json(&shrunk.join("shrink.json"));
    assert_eq!(record["anomaly"], "divergence");
    assert!(!record["steps"].as_array().unwrap().is_empty());
    let report = std::fs::read_to_string(shrunk.join("report.html")).unwrap();
    assert!(report.contains(r#"id="story""#) && report.contains(r#"id="shrink""#));
    assert!(
        report.contains("adds <code"),
        "a cart update told as one sentence"
    );

    // The saved regression is a plan (with its record) that replays the same way.
    let regression = json(&saved);
    assert_eq!(regression["regression"]["anomaly"], "divergence");
    assert_eq!(regression["regression"]["bug"], "no-repair");
    assert!(regression["regression"]["story"].as_array().unwrap().len() >= 3);
    let again = tmp.path().join("again");
    let replay = dynamo(&[
        "replay",
        saved.to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(replay.status.code(), Some(1));
    assert_eq!(
        json(&again.join("results.json"))["anomaly_types"],
        serde_json::json!(["divergence"])
    );

    // Every failing seed of a nightly, shrunk in turn, with the benchmark's table.
    let each = dynamo(&["shrink", "--each", n]);
    assert_eq!(each.status.code(), Some(0));
    let table = String::from_utf8_lossy(&each.stdout);
    assert!(table.contains("| - | 1 |"), "{table}");
    assert!(night.join("shrink-bench.json").is_file());
}
