//! Dynamo's availability machinery in the simulator (issue 5): each repair mechanism alone brings
//! the replicas together after a long partition, and sloppy quorum keeps writes available where a
//! strict quorum refuses them. Verdicts come from the checker; every message names its seed.

mod support;

use dynamo_checker::{Kind, Validity};
use dynamo_workloads::plan::{KeyDist, NemesisKind, NodeOptions, Plan, SimConfig};
use dynamo_workloads::{RunOutput, run};
use support::PARTITION_MS;

const SEEDS: std::ops::Range<u64> = 0..3;

/// Long partitions over many cold keys: a replica that misses a key's last write is never fixed by
/// a later write, only by the mechanism under test.
fn partitioned(seed: u64, node: NodeOptions) -> SimConfig {
    SimConfig {
        seed,
        ops: 1_500,
        keys: 200,
        key_dist: KeyDist::Uniform,
        nemesis: vec![NemesisKind::Partition],
        fault_duration_ms: 4_000,
        quiesce_ms: 6_000,
        measure_convergence: true,
        node,
        ..SimConfig::default()
    }
}

fn verdict(config: SimConfig) -> (RunOutput, Validity, Vec<Kind>) {
    let seed = config.seed;
    let out = run(&Plan::generate(config).unwrap()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let (valid, kinds) = support::verdict(&out);
    (out, valid, kinds)
}

#[test]
fn with_nothing_but_quorum_writes_replicas_diverge() {
    // The control for the two tests below: they prove something only if this fails.
    let off = NodeOptions {
        read_repair: false,
        hinted_handoff: false,
        anti_entropy: false,
        ..NodeOptions::default()
    };
    let diverged = SEEDS
        .filter(|&seed| {
            verdict(partitioned(seed, off.clone()))
                .2
                .contains(&Kind::Divergence)
        })
        .count();
    assert!(
        diverged > 0,
        "no seed diverged with every repair mechanism off"
    );
}

#[test]
fn anti_entropy_alone_makes_the_replicas_converge() {
    let ae_only = NodeOptions {
        read_repair: false,
        hinted_handoff: false,
        ..NodeOptions::default()
    };
    for seed in SEEDS {
        let (out, valid, kinds) = verdict(partitioned(seed, ae_only.clone()));
        assert_eq!(valid, Validity::True, "seed {seed}: {kinds:?}");
        let s = out.summary;
        assert!(
            s.ae_keys_repaired > 0,
            "seed {seed}: anti-entropy repaired nothing"
        );
        let ms = s.converged_after_heal_ms.unwrap_or_else(|| {
            panic!("seed {seed}: replicas did not agree within the quiesce time")
        });
        println!(
            "seed {seed}: anti-entropy alone: replicas agreed {ms} ms after the heal, {} keys repaired",
            s.ae_keys_repaired
        );
    }
}

#[test]
fn hinted_handoff_alone_makes_the_replicas_converge() {
    let hints_only = NodeOptions {
        read_repair: false,
        anti_entropy: false,
        ..NodeOptions::default()
    };
    for seed in SEEDS {
        let (out, valid, kinds) = verdict(partitioned(seed, hints_only.clone()));
        assert_eq!(valid, Validity::True, "seed {seed}: {kinds:?}");
        let s = out.summary;
        assert!(s.hints_delivered > 0, "seed {seed}: no hint was delivered");
        assert_eq!(s.hints_pending, 0, "seed {seed}: hints left undelivered");
        assert!(
            s.converged_after_heal_ms.is_some(),
            "seed {seed}: replicas did not agree"
        );
        println!(
            "seed {seed}: hinted handoff alone: {} hints delivered",
            s.hints_delivered
        );
    }
}

/// Clients talk only to the minority side of a partition ({n1, n2} against {n3, n4, n5}).
fn minority_clients(seed: u64, sloppy_quorum: bool) -> Plan {
    let config = support::minority_config(seed, 50, sloppy_quorum);
    let mut plan = Plan::generate(config).unwrap();
    support::on_the_minority(&mut plan);
    plan
}

/// Puts invoked well inside the partition (after failure detection), and how many were acked.
fn puts_during_partition(out: &RunOutput) -> (usize, usize) {
    let events: Vec<serde_json::Value> = out
        .history
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let inside = |e: &serde_json::Value| {
        let ms = e["time"].as_u64().unwrap() / 1_000_000;
        (PARTITION_MS.start + 1_500..PARTITION_MS.end).contains(&ms)
    };
    let invoked: Vec<&str> = events
        .iter()
        .filter(|e| (e["f"] == "put" || e["f"] == "delete") && e["type"] == "invoke" && inside(e))
        .map(|e| e["write"].as_str().unwrap())
        .collect();
    let acked = events
        .iter()
        .filter(|e| (e["f"] == "put" || e["f"] == "delete") && e["type"] == "ok")
        .filter(|e| invoked.contains(&e["write"].as_str().unwrap()))
        .count();
    (invoked.len(), acked)
}

#[test]
fn sloppy_quorum_keeps_a_minority_writable_where_strict_quorum_refuses() {
    for seed in SEEDS {
        let mut results = Vec::new();
        for sloppy in [false, true] {
            let plan = minority_clients(seed, sloppy);
            let out = run(&plan).unwrap();
            support::assert_valid(&format!("seed {seed} sloppy={sloppy}"), &out);
            results.push(puts_during_partition(&out));
        }
        let ((strict_puts, strict_acked), (sloppy_puts, sloppy_acked)) = (results[0], results[1]);
        println!(
            "seed {seed}: puts on the minority side acked: strict {strict_acked}/{strict_puts}, sloppy {sloppy_acked}/{sloppy_puts}"
        );
        assert!(
            strict_puts > 20 && sloppy_puts > 20,
            "seed {seed}: too few puts in the partition"
        );
        assert!(
            strict_acked < strict_puts,
            "seed {seed}: strict quorum acked every minority put"
        );
        assert!(
            sloppy_acked * strict_puts > strict_acked * sloppy_puts,
            "seed {seed}: sloppy quorum did not ack a larger share"
        );
    }
}
