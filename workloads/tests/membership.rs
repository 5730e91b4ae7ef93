//! Nodes leave and join under load (issue 5): cart workload with partitions and crashes too. Every
//! seed of a fixed range must be valid, and afterwards every key must be held by exactly its N
//! owners under the final ring: all N hold it, and no other node keeps a copy.

mod support;

use dynamo_workloads::plan::{NemesisKind, Plan, SimConfig};
use dynamo_workloads::run;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const SEEDS: std::ops::Range<u64> = 0..20;

#[test]
fn nodes_leave_and_join_under_load_and_every_key_ends_on_exactly_n_replicas() {
    let mut ring_changes = 0;
    for seed in SEEDS {
        let config = SimConfig {
            seed,
            ops: 800,
            nemesis: vec![
                NemesisKind::Membership,
                NemesisKind::Partition,
                NemesisKind::Crash,
            ],
            fault_gap_ops: 150,
            fault_duration_ms: 1_200,
            quiesce_ms: 4_000,
            ..SimConfig::default()
        };
        let n = config.n;
        let out = run(&Plan::generate(config).unwrap()).unwrap();
        support::assert_valid(&format!("seed {seed}"), &out);
        let s = out.summary;
        assert_eq!(
            s.non_owner_copies, 0,
            "seed {seed}: copies left outside preference lists"
        );
        if s.ring_version > 1 {
            ring_changes += 1;
        }

        let events: Vec<Value> = out
            .history
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let written: BTreeSet<&str> = events
            .iter()
            .filter(|e| e["f"] == "put" && e["type"] == "ok")
            .map(|e| e["key"].as_str().unwrap())
            .collect();
        let mut holders: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for e in events.iter().filter(|e| e["f"] == "replica-state") {
            let entry = holders.entry(e["key"].as_str().unwrap()).or_default();
            entry.0 += 1;
            if !e["values"].as_array().unwrap().is_empty() {
                entry.1 += 1;
            }
        }
        for key in written {
            let (replicas, holding) = holders.get(key).copied().unwrap_or_default();
            assert_eq!(
                replicas, n,
                "seed {seed}: {key} has {replicas} final replicas"
            );
            assert_eq!(
                holding, n,
                "seed {seed}: only {holding} of {n} replicas hold {key}"
            );
        }
    }
    assert!(
        ring_changes >= 5,
        "only {ring_changes} seeds changed the ring"
    );
}
