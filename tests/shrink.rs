//! `dynamo shrink` (issue 6): shrinking a `--bug lww` failure yields a plan with fewer operations that
//! still fails with lost-write, written with its history, results and report, and `dynamo replay`
//! of it fails the same way.

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
