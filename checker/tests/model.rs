//! Generated histories of a correct store (tests/support/model.rs) check valid, whatever the seed,
//! workload and fault rates; breaking one thing in them is caught; and the model's deliberate bugs
//! are detected as the anomalies they should cause.

mod support;

use dynamo_checker::{Kind, Validity, check, parse_reader, summary};
use proptest::prelude::*;
use support::model::{Bug, Params, jsonl};

fn params() -> impl Strategy<Value = Params> {
    let shape = (
        any::<u64>(),
        50usize..400,
        1usize..6,
        1usize..5,
        prop_oneof![Just("register"), Just("cart")],
    );
    let faults = (
        0.0f64..0.4,
        0.0f64..0.3,
        0.0f64..0.2,
        0.0f64..0.2,
        0.0f64..1.0,
        0.0f64..0.3,
    );
    (shape, faults).prop_map(
        |(
            (seed, ops, clients, keys, workload),
            (p_blind, p_delete, p_fail, p_info, p_lag, p_sloppy),
        )| Params {
            seed,
            ops,
            clients,
            keys,
            hot_keys: 1,
            hot_share: 0.3,
            workload,
            p_blind,
            p_delete,
            p_fail,
            p_info,
            p_lag,
            lag_steps_max: 30,
            p_sloppy,
            bug: None,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_correct_store_checks_valid(p in params()) {
        let text = jsonl(p.clone());
        let parsed = parse_reader(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let r = check(&parsed.history);
        prop_assert!(r.anomalies.is_empty(), "{p:?}\n{}\n{}", summary(&r), text);
        prop_assert!(!r.warnings.contains_key(&Kind::FalseConcurrency), "{}", summary(&r));
        prop_assert!(r.valid != Validity::False);
        if r.stats.by_f.values().any(|c| c.ok > 0) && r.valid == Validity::Unknown {
            // Only "nothing acknowledged" may leave a correct history unknown.
            prop_assert!(r.stats.unknown.iter().all(|u| u.contains("nothing was acknowledged")), "{:?}", r.stats.unknown);
        }
    }

    #[test]
    fn dropping_a_final_sibling_is_caught(p in params()) {
        // Remove one acknowledged write from every replica state and final read: it must be reported
        // lost, unless a delete observed it (a delete that ended info may have removed it).
        let text = jsonl(p);
        let r = check(&parse_reader(text.as_bytes()).unwrap().history);
        prop_assume!(r.valid == Validity::True);
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let acked: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "ok" && e["f"] == "put")
            .map(|e| e["write"].as_str().unwrap())
            .collect();
        let deleted: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] == "invoke" && e["f"] == "delete")
            .flat_map(|e| e["observed"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()))
            .collect();
        let victim = events
            .iter()
            .filter(|e| e["f"] == "replica-state")
            .flat_map(|e| e["values"].as_array().unwrap().iter().map(|s| s["write"].as_str().unwrap()))
            .find(|w| acked.contains(w) && !deleted.contains(w));
        prop_assume!(victim.is_some());
        let victim = victim.unwrap().to_owned();
        let mut out = String::new();
        for mut e in events.clone() {
            let is_final = e["f"] == "replica-state" || (e["type"] == "ok" && e["f"] == "get" && e["context"] == "final");
            if is_final {
                e["values"].as_array_mut().unwrap().retain(|s| s["write"] != victim.as_str());
            }
            out.push_str(&serde_json::to_string(&e).unwrap());
            out.push('\n');
        }
        let r = check(&parse_reader(out.as_bytes()).unwrap().history);
        prop_assert!(r.anomalies.contains_key(&Kind::LostWrite), "{victim}: {}", summary(&r));
    }
}

#[test]
fn the_model_is_deterministic() {
    assert_eq!(jsonl(Params::small(7)), jsonl(Params::small(7)));
    assert_ne!(jsonl(Params::small(7)), jsonl(Params::small(8)));
}

/// Runs the model with a deliberate bug over seeds 0..10: the expected anomaly must show up for at
/// least one seed, and no anomaly outside `allowed` for any. Returns the seeds that detected it.
fn detect(bug: Bug, expected: Kind, allowed: &[Kind]) -> Vec<u64> {
    let mut detected = Vec::new();
    for seed in 0..10 {
        let mut p = Params::small(seed);
        p.bug = Some(bug);
        p.ops = 300;
        p.p_blind = 0.3;
        let text = jsonl(p);
        let r = check(&parse_reader(text.as_bytes()).unwrap().history);
        for kind in r.anomalies.keys() {
            assert!(
                allowed.contains(kind),
                "{bug:?} seed {seed}: unexpected {kind:?}\n{}",
                summary(&r)
            );
        }
        if r.anomalies.contains_key(&expected) {
            detected.push(seed);
        }
    }
    assert!(
        !detected.is_empty(),
        "{bug:?} was never detected as {expected:?}"
    );
    detected
}

#[test]
fn last_writer_wins_loses_writes() {
    // Dropping a concurrent sibling also leaves a gap that the next read's context covers: the store
    // then orders the dropped write before writes whose clients never saw it.
    let seeds = detect(
        Bug::Lww,
        Kind::LostWrite,
        &[Kind::LostWrite, Kind::FalseDominance],
    );
    println!("lww: lost-write on seeds {seeds:?}");
}

#[test]
fn naive_vector_clocks_falsely_dominate() {
    let allowed = [Kind::FalseDominance, Kind::LostWrite];
    let seeds = detect(Bug::NaiveClock, Kind::FalseDominance, &allowed);
    println!("naive-clock: false-dominance on seeds {seeds:?}");
    let seeds = detect(Bug::NaiveClock, Kind::LostWrite, &allowed);
    println!("naive-clock: lost-write on seeds {seeds:?}");
}

#[test]
fn replicas_without_repair_diverge() {
    let seeds = detect(Bug::NoRepair, Kind::Divergence, &[Kind::Divergence]);
    println!("no-repair: divergence on seeds {seeds:?}");
}
