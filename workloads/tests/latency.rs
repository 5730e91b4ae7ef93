//! Latency models (`--latency`, `--tick-us`): the delays reach the nodes' messages, per kind, in
//! the model's time, the same on every run of a seed, and the checker still finds nothing wrong
//! with a correct node.

use dynamo_checker::{Validity, check, parse_reader};
use dynamo_workloads::latency::parse_model;
use dynamo_workloads::plan::{KeyDist, Plan, SimConfig, Workload};
use dynamo_workloads::{RunOutput, run};
use serde_json::Value;
use std::collections::BTreeMap;

fn config(latency: &str, tick_us: u64, w: usize) -> SimConfig {
    SimConfig {
        seed: 3,
        nodes: 5,
        clients: 4,
        ops: 200,
        keys: 4,
        key_dist: KeyDist::Uniform,
        workload: Workload::Register,
        nemesis: Vec::new(),
        w,
        latency: Some(parse_model(latency).unwrap()),
        tick_us,
        ..SimConfig::default()
    }
}

fn run_checked(c: SimConfig) -> RunOutput {
    let out = run(&Plan::generate(c).unwrap()).unwrap();
    let parsed = parse_reader(&out.history[..]).expect("a well-formed history");
    let results = check(&parsed.history);
    assert_eq!(
        results.valid,
        Validity::True,
        "{:?}",
        results.anomaly_types()
    );
    out
}

/// Latencies of the ok puts of the client phase, ns of the history's time.
fn put_latencies_ns(out: &RunOutput) -> Vec<u64> {
    let mut open: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    let mut puts = Vec::new();
    for line in out.history.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let e: Value = serde_json::from_slice(line).unwrap();
        let (Some(process), Some(time)) = (e["process"].as_u64(), e["time"].as_u64()) else {
            continue;
        };
        let f = e["f"].as_str().unwrap_or_default().to_owned();
        match e["type"].as_str() {
            Some("invoke") => {
                open.insert(process, (time, f));
            }
            Some("ok") => {
                let (at, f) = open.remove(&process).unwrap();
                if f == "put" {
                    puts.push(time - at);
                }
            }
            _ => {
                open.remove(&process);
            }
        }
    }
    assert!(puts.len() > 20, "enough puts to judge: {}", puts.len());
    puts
}

#[test]
fn a_put_waits_for_the_models_write_and_ack() {
    // W = 2: a replica's write (3 ms) and its ack (3 ms) at least. With no delay, every hop is a
    // tick, and every put is faster than the slowest of these.
    let slow = put_latencies_ns(&run_checked(config("constant(3000)", 1_000, 2)));
    let fast = put_latencies_ns(&run_checked(config("constant(0)", 1_000, 2)));
    let ms = 1_000_000;
    assert!(slow.iter().all(|&ns| ns >= 6 * ms), "{slow:?}");
    assert!(fast.iter().max() < slow.iter().min(), "{fast:?}");
    // W = 1 is met by the coordinator's own write when it holds a replica: however slow the
    // writes to the others, some puts take only the client's hops.
    let w1 = put_latencies_ns(&run_checked(config(
        "write=constant(3000),all=constant(0)",
        1_000,
        1,
    )));
    assert!(w1.iter().any(|&ns| ns <= 2 * ms), "{w1:?}");
}

#[test]
fn a_finer_tick_stretches_the_delays_and_times_the_history_in_model_time() {
    // 235 µs per message on 50 µs ticks: 5 ticks a hop. A put with W = 2 waits for a write and an
    // ack (250 µs each), in the model's time; unstretched, both would fit in one 1 ms tick.
    let puts = put_latencies_ns(&run_checked(config("constant(235)", 50, 2)));
    let us = 1_000;
    assert!(puts.iter().all(|&ns| ns >= 500 * us), "{puts:?}");
    assert!(puts.iter().all(|&ns| ns < 2_000 * us), "{puts:?}");
    assert!(
        puts.iter().all(|&ns| ns % (50 * us) == 0),
        "times on the tick: {puts:?}"
    );
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    let a = run_checked(config("lnkd-disk", 100, 2)).history;
    let b = run_checked(config("lnkd-disk", 100, 2)).history;
    assert!(a == b, "two runs of one seed differ");
    let other = run_checked(SimConfig {
        seed: 4,
        ..config("lnkd-disk", 100, 2)
    })
    .history;
    assert!(a != other, "another seed draws other delays");
}

#[test]
fn a_finer_tick_needs_a_model_and_no_fault() {
    let c = SimConfig {
        latency: None,
        ..config("constant(1)", 100, 2)
    };
    assert!(c.validate().unwrap_err().contains("--tick-us"));
    let c = SimConfig {
        nemesis: dynamo_workloads::plan::NemesisKind::ALL.to_vec(),
        ..config("constant(1)", 100, 2)
    };
    assert!(c.validate().unwrap_err().contains("no fault"));
    let c = config("constant(1)", 5, 2);
    assert!(c.validate().unwrap_err().contains("--tick-us must be"));
    // A plan with a model round-trips through its JSON, as plan.json does.
    let plan = Plan::generate(config("lnkd-ssd", 50, 2)).unwrap();
    let json = serde_json::to_string(&plan.config).unwrap();
    let back: SimConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.latency, plan.config.latency);
    assert_eq!(back.tick_us, 50);
}
