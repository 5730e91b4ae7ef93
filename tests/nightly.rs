//! `dynamo nightly` and `dynamo merge` (issue 6): a small range with `--bug lww` exits 1, its
//! junit.xml names the failing seeds as failures, each failing seed's folder holds its files and a
//! repro command that reproduces the same history and verdict; shards 0/2 and 1/2 together cover the
//! range exactly once; the time limit records the rest as not run.

mod common;

use common::dynamo;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn seeds_of(summary: &Value, status: Option<&str>) -> Vec<u64> {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| status.is_none_or(|s| r["status"] == s))
        .map(|r| r["seed"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_failing_nightly_exits_1_with_junit_failures_and_repro_commands_that_reproduce() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("nightly");
    let run = dynamo(&[
        "nightly",
        "--seeds",
        "0..4",
        "--jobs",
        "2",
        "--ops",
        "120",
        "--bug",
        "lww",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(1),
        "a failing seed makes the run fail"
    );

    let s = summary(&out);
    assert_eq!(seeds_of(&s, None), vec![0, 1, 2, 3]);
    let failing = seeds_of(&s, Some("invalid"));
    assert!(
        !failing.is_empty(),
        "lww loses writes on some of seeds 0..4"
    );
    assert_eq!(
        s["failing_seeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect::<Vec<_>>(),
        failing
    );
    assert_eq!(
        s["counts"]["invalid"].as_u64().unwrap() as usize,
        failing.len()
    );

    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.starts_with("<?xml"));
    assert_eq!(
        junit.matches("<testcase ").count(),
        4,
        "one test case per seed"
    );
    for seed in 0..4u64 {
        let case = junit
            .split(&format!(r#"name="seed {seed}""#))
            .nth(1)
            .and_then(|rest| rest.split("</testcase>").next())
            .unwrap_or_else(|| panic!("a test case for seed {seed}"));
        assert_eq!(
            case.contains("<failure"),
            failing.contains(&seed),
            "seed {seed}: {case}"
        );
    }
    assert!(junit.contains(r#"<failure message="lost-write"#));

    for r in s["results"].as_array().unwrap() {
        let seed = r["seed"].as_u64().unwrap();
        let folder = out.join(format!("seed-{seed}"));
        if r["status"] != "invalid" {
            assert!(!folder.exists(), "a passing seed keeps no files");
            continue;
        }
        for f in [
            "history.jsonl",
            "plan.json",
            "results.json",
            "report.html",
            "repro.txt",
        ] {
            assert!(folder.join(f).is_file(), "seed {seed} keeps {f}");
        }
        let repro = std::fs::read_to_string(folder.join("repro.txt")).unwrap();
        assert_eq!(repro.lines().count(), 1, "one line: {repro}");
        assert_eq!(r["repro"].as_str().unwrap(), repro.trim());
        assert!(
            junit.contains(repro.trim()),
            "junit carries the repro command"
        );
        let mut words: Vec<&str> = repro.split_whitespace().collect();
        assert_eq!(words.remove(0), "dynamo");
        assert_eq!(&words[..3], ["sim", "--seed", &seed.to_string()]);
        let again = tmp.path().join(format!("again-{seed}"));
        words.extend(["--out", again.to_str().unwrap()]);
        let rerun = dynamo(&words);
        assert_eq!(rerun.status.code(), Some(1), "the repro fails too");
        let results: Value =
            serde_json::from_str(&std::fs::read_to_string(again.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(results["anomaly_types"], r["anomaly_types"]);
        assert!(
            std::fs::read(again.join("history.jsonl")).unwrap()
                == std::fs::read(folder.join("history.jsonl")).unwrap(),
            "seed {seed}: the repro command gives the byte-identical history"
        );
    }
}

#[test]
fn shards_cover_the_range_exactly_once_and_merge_checks_it() {
    let tmp = tempfile::tempdir().unwrap();
    let shard = |k: u64| {
        let dir = tmp.path().join(format!("shard-{k}"));
        let run = dynamo(&[
            "nightly",
            "--seeds",
            "10..17",
            "--shard",
            &format!("{k}/2"),
            "--jobs",
            "2",
            "--ops",
            "40",
            "--bug",
            "lww",
            "--out",
            dir.to_str().unwrap(),
        ]);
        let s = summary(&dir);
        for seed in seeds_of(&s, None) {
            assert_eq!(seed % 2, k, "shard {k}/2 runs only its seeds");
        }
        (dir, run.status.code().unwrap(), s)
    };
    let (a, code_a, sa) = shard(0);
    let (b, code_b, sb) = shard(1);
    assert_eq!(seeds_of(&sa, None), vec![10, 12, 14, 16]);
    assert_eq!(seeds_of(&sb, None), vec![11, 13, 15]);

    let merged = tmp.path().join("merged");
    let run = dynamo(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    let m = summary(&merged);
    assert_eq!(
        seeds_of(&m, None),
        (10..17).collect::<Vec<_>>(),
        "each seed once"
    );
    assert_eq!(m["shards"], serde_json::json!(["0/2", "1/2"]));
    let failing: BTreeSet<u64> = seeds_of(&sa, Some("invalid"))
        .into_iter()
        .chain(seeds_of(&sb, Some("invalid")))
        .collect();
    assert_eq!(
        seeds_of(&m, Some("invalid"))
            .into_iter()
            .collect::<BTreeSet<_>>(),
        failing
    );
    let worst = if code_a == 1 || code_b == 1 {
        1
    } else {
        code_a.max(code_b)
    };
    assert_eq!(
        run.status.code(),
        Some(worst),
        "the merged verdict is the shards'"
    );
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 7);
    // A failing seed's folder is found from the merged summary.
    for r in m["results"].as_array().unwrap() {
        if let Some(d) = r["dir"].as_str() {
            assert!(Path::new(d).join("repro.txt").is_file(), "{d}");
        }
    }

    // One shard alone does not cover the range; the same shard twice covers some seeds twice.
    let half = tmp.path().join("half");
    let run = dynamo(&[
        "merge",
        a.to_str().unwrap(),
        "--out",
        half.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("3 seed(s) of 10..17 in no shard: 11, 13, 15"),
        "{stderr}"
    );
    assert_ne!(run.status.code(), Some(0));
    let twice = tmp.path().join("twice");
    let run = dynamo(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        a.to_str().unwrap(),
        "--out",
        twice.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("in more than one shard: 10, 12, 14, 16")
    );
    assert_ne!(run.status.code(), Some(0));
}

#[test]
fn seeds_left_at_the_time_limit_are_recorded_as_not_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("limited");
    let run = dynamo(&[
        "nightly",
        "--seeds",
        "0..=49",
        "--time-limit",
        "0s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0), "not running is not failing");
    let s = summary(&out);
    assert_eq!(s["counts"]["not_run"], 50);
    assert_eq!(s["time_limit_reached"], true);
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<skipped ").count(), 50);
    assert!(
        s["results"][7]["repro"]
            .as_str()
            .unwrap()
            .starts_with("dynamo sim --seed 7 "),
        "a seed not run still says how to run it"
    );

    // A bad range is a usage error (clap's), which names the option.
    let bad = dynamo(&["nightly", "--seeds", "5..2", "--out", out.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid value '5..2' for '--seeds <SEEDS>': the range is empty"),
        "{stderr}"
    );
}
