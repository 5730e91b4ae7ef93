//! Checks a generated history of 1,000,000 operations over 100,000 keys, with siblings and faults, end
//! to end, and compares the time with the time to merely parse the file.
//!
//! `cargo bench -p dynamo-checker --bench check_large`
//!
//! The history comes from the correct-store model of the tests (tests/support/model.rs) with a fixed
//! seed, written to a temporary file. Each measurement runs in a child process (this binary, called
//! with `parse FILE` or `check FILE`), so that its peak memory (VmHWM from /proc/self/status) is its
//! own and not the generator's. Targets (issue 4): check time at most 2x parse time, memory under 1 GB.

#[path = "../tests/support/model.rs"]
#[allow(dead_code)]
mod model;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use dynamo_checker::{check, parse_file};
use serde_json::{Value, json};

const SEED: u64 = 20_070_101;
const OPS: usize = 1_000_000;
const KEYS: usize = 100_000;
/// Runs of each measurement; the fastest counts (the machine is shared).
const RUNS: usize = 3;

/// `CHECK_LARGE_OPS` and `CHECK_LARGE_KEYS` override the size, for a quick run.
fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn params() -> model::Params {
    model::Params {
        seed: SEED,
        ops: size("CHECK_LARGE_OPS", OPS),
        clients: 64,
        keys: size("CHECK_LARGE_KEYS", KEYS),
        hot_keys: 1_000,
        hot_share: 0.2,
        workload: "cart",
        p_blind: 0.1,
        p_delete: 0.05,
        p_fail: 0.02,
        p_info: 0.02,
        p_lag: 0.3,
        lag_steps_max: 500,
        p_sloppy: 0.05,
        bug: None,
        format: 2,
    }
}

/// Peak resident memory of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In a child: measure one thing and print it as a JSON line.
fn child(mode: &str, path: &Path) {
    let start = Instant::now();
    let parsed = parse_file(path).expect("the generated history parses");
    let parse_s = start.elapsed().as_secs_f64();
    let mut out = json!({"mode": mode, "parse_s": parse_s, "events": parsed.history.event_count(),
        "ops": parsed.history.op_count(), "keys": parsed.history.key_count()});
    if mode == "check" {
        let begun = Instant::now();
        let results = check(&parsed.history);
        let check_s = begun.elapsed().as_secs_f64();
        out["check_s"] = json!(check_s);
        out["total_s"] = json!(start.elapsed().as_secs_f64());
        let r = serde_json::to_value(&results).expect("results serialise");
        out["valid"] = r["valid"].clone();
        out["anomaly_counts"] = r["stats"]["anomaly_counts"].clone();
        out["warning_counts"] = r["stats"]["warning_counts"].clone();
        out["siblings_per_read"] = r["stats"]["siblings_per_read"]["shares"].clone();
        out["consistency_window_ns"] = r["stats"]["consistency_window_ns"].clone();
        out["unknown"] = r["stats"]["unknown"].clone();
    }
    out["vm_hwm_mib"] = json!(vm_hwm_kib() as f64 / 1024.0);
    println!("{out}");
}

fn run_child(mode: &str, path: &Path) -> Value {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .arg(mode)
        .arg(path)
        .output()
        .expect("child runs");
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("child prints JSON")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [mode, path] = args.as_slice() {
        child(mode, Path::new(path));
        return;
    }

    // CHECK_LARGE_FILE keeps the generated history at that path (for profiling a child by hand).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = std::env::var_os("CHECK_LARGE_FILE")
        .map_or_else(|| dir.path().join("history.jsonl"), Into::into);
    let start = Instant::now();
    {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path).expect("create"));
        model::generate(params(), &mut |e| {
            serde_json::to_writer(&mut w, &e).expect("write");
            w.write_all(b"\n").expect("write");
        });
        w.flush().expect("flush");
    }
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    println!(
        "generated {} operations over {} keys (cart, seed {SEED}) in {:.1} s: {:.0} MiB",
        params().ops,
        params().keys,
        start.elapsed().as_secs_f64(),
        bytes as f64 / (1 << 20) as f64
    );

    let mut parse: Vec<Value> = Vec::new();
    let mut full: Vec<Value> = Vec::new();
    for _ in 0..RUNS {
        parse.push(run_child("parse", &path));
        full.push(run_child("check", &path));
    }
    let min = |v: &[Value], f: &str| {
        v.iter()
            .map(|x| x[f].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min)
    };
    let max = |v: &[Value], f: &str| v.iter().map(|x| x[f].as_f64().unwrap()).fold(0.0, f64::max);
    let parse_s = min(&parse, "parse_s");
    let total_s = min(&full, "total_s");
    let first = &full[0];
    println!(
        "history: {} events, {} client operations, {} keys",
        first["events"], first["ops"], first["keys"]
    );
    println!(
        "parse only:            {parse_s:.2} s   peak memory {:.0} MiB",
        max(&parse, "vm_hwm_mib")
    );
    println!(
        "parse + check:         {total_s:.2} s   (parse {:.2} s, check {:.2} s)   peak memory {:.0} MiB",
        min(&full, "parse_s"),
        min(&full, "check_s"),
        max(&full, "vm_hwm_mib")
    );
    println!(
        "check time / parse time: {:.2} (target <= 2)",
        total_s / parse_s
    );
    println!(
        "verdict: valid {}  anomalies {}  warnings {}",
        first["valid"], first["anomaly_counts"], first["warning_counts"]
    );
    println!("siblings per read (shares): {}", first["siblings_per_read"]);
    println!(
        "consistency window (ns): {}",
        first["consistency_window_ns"]
    );
    if first["unknown"].is_array() {
        println!("unknown: {}", first["unknown"]);
    }
    println!(
        "runs (fastest counts): parse {:?}",
        parse
            .iter()
            .map(|x| x["parse_s"].as_f64().unwrap())
            .collect::<Vec<_>>()
    );
    println!(
        "                       check {:?}",
        full.iter()
            .map(|x| x["total_s"].as_f64().unwrap())
            .collect::<Vec<_>>()
    );
}
