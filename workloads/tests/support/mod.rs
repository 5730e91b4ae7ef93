//! What the simulator's integration tests share: the checker's verdict on a run, and the plans of
//! clients on the minority side of a partition.

#![allow(dead_code)] // Each test file uses its own part.

use dynamo_checker::{Kind, Validity, check, parse_reader};
use dynamo_workloads::RunOutput;
use dynamo_workloads::plan::{
    Fault, FaultWindow, KeyDist, NodeOptions, Plan, SimConfig, Start, Workload,
};

/// The checker's verdict on `out`'s history and the anomaly types it found.
pub fn verdict(out: &RunOutput) -> (Validity, Vec<Kind>) {
    let parsed = parse_reader(&out.history[..]).expect("a well-formed history");
    let results = check(&parsed.history);
    let kinds = results.anomaly_types();
    (results.valid, kinds)
}

/// Asserts that the checker finds `out`'s history valid; `what` names the run (its seed first).
pub fn assert_valid(what: &str, out: &RunOutput) {
    let (valid, kinds) = verdict(out);
    assert_eq!(valid, Validity::True, "{what}: {kinds:?}");
}

/// Register clients (their puts do not wait on a read, so a put is tried whatever the reads do)
/// doing 1,500 operations on `keys` keys drawn uniformly, with no drawn faults: the plans whose
/// clients the tests then keep on the minority side of a partition.
pub fn minority_config(seed: u64, keys: usize, sloppy_quorum: bool) -> SimConfig {
    SimConfig {
        seed,
        ops: 1_500,
        keys,
        key_dist: KeyDist::Uniform,
        workload: Workload::Register,
        nemesis: vec![],
        node: NodeOptions {
            sloppy_quorum,
            ..NodeOptions::default()
        },
        ..SimConfig::default()
    }
}

/// When the minority's partition is on, ms.
pub const PARTITION_MS: std::ops::Range<u64> = 500..4_500;

/// Puts the clients of `plan` on the minority side of a partition ({n1, n2} against {n3, n4,
/// n5}) for [`PARTITION_MS`], its only fault.
pub fn on_the_minority(plan: &mut Plan) {
    for op in &mut plan.ops {
        op.node %= 2;
    }
    plan.faults = vec![FaultWindow {
        start: Start::Ms(PARTITION_MS.start),
        duration_ms: PARTITION_MS.end - PARTITION_MS.start,
        fault: Fault::Partition {
            groups: vec![vec![0, 1], vec![2, 3, 4]],
            shape: "majority".into(),
            oneway: false,
        },
    }];
}
