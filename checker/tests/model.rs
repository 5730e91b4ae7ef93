//! Generated histories of a correct store (tests/support/model.rs) check valid, whatever the seed,
//! workload, format version and fault rates; dropping one acknowledged write or tombstone from the
//! final state is named as a lost write; and the model's deliberate bugs are detected as the anomalies
//! they should cause.

mod support;

use std::collections::{HashMap, HashSet};

use dynamo_checker::{Finding, Kind, Options, Validity, check, check_with, parse_reader, summary};
use proptest::prelude::*;
use serde_json::Value;
use support::model::{Bug, Params, jsonl};

fn params() -> impl Strategy<Value = Params> {
    let shape = (
        any::<u64>(),
        50usize..400,
        1usize..6,
        1usize..5,
        prop_oneof![Just("register"), Just("cart")],
        prop_oneof![3 => Just(2u8), 1 => Just(1u8)],
    );
    let faults = (
        0.0f64..0.4,
        0.0f64..0.3,
        0.0f64..0.2,
        0.0f64..0.2,
        0.0f64..1.0,
        // No sloppy reads: the config then says the quorum is strict, and quorum-read-miss applies.
        prop_oneof![Just(0.0f64), 0.0f64..0.3],
    );
    (shape, faults).prop_map(
        |(
            (seed, ops, clients, keys, workload, format),
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
            // A v1 history cannot show the tombstone of a delete that ended info (its ok carries no
            // dot, and v1 reads omit tombstones), so the page's v1 substitute cannot see that a later
            // write's context covers it: the store's order over it then reads as false dominance.
            // That is the page's rule, not the model's fault; v1 runs have no info outcomes.
            p_info: if format == 1 { 0.0 } else { p_info },
            p_lag,
            lag_steps_max: 30,
            p_sloppy,
            bug: None,
            format,
        },
    )
}

/// Ground-truth ancestry computed from the history's JSON, independently of the checker: the
/// write ids each write observed, plus (in a v1 history) the page's substitute, the earlier deletes on
/// its key whose dots its clock context (`node=counter,...`) covers.
struct Ancestry {
    parents: HashMap<String, Vec<String>>,
}

impl Ancestry {
    fn of(events: &[Value]) -> Ancestry {
        let v1 = events[0]["value"].get("history_format").is_none();
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        // Deletes per key in invoke order, with their dots (from the ok).
        let mut dots: HashMap<String, (String, u64)> = HashMap::new();
        for e in events {
            if e["type"] == "ok" && e["f"] == "delete" && e["dot"].is_array() {
                let dot = (
                    e["dot"][0].as_str().unwrap().to_owned(),
                    e["dot"][1].as_u64().unwrap(),
                );
                dots.insert(e["write"].as_str().unwrap().to_owned(), dot);
            }
        }
        let mut deletes: HashMap<String, Vec<String>> = HashMap::new();
        for e in events {
            if e["type"] != "invoke" || e["f"] == "get" {
                continue;
            }
            let id = e["write"].as_str().unwrap().to_owned();
            let key = e["key"].as_str().unwrap().to_owned();
            let mut ps: Vec<String> = e["observed"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap().to_owned())
                .collect();
            if v1 && let Some(ctx) = e["context"].as_str() {
                let clock: HashMap<&str, u64> = ctx
                    .split(',')
                    .filter_map(|p| p.split_once('='))
                    .map(|(n, c)| (n, c.parse().unwrap()))
                    .collect();
                for d in deletes.get(&key).into_iter().flatten() {
                    if let Some((n, c)) = dots.get(d)
                        && clock.get(n.as_str()).is_some_and(|k| k >= c)
                    {
                        ps.push(d.clone());
                    }
                }
            }
            parents.insert(id.clone(), ps);
            if e["f"] == "delete" {
                deletes.entry(key).or_default().push(id);
            }
        }
        Ancestry { parents }
    }

    /// Whether `a` is a strict ancestor of `b`.
    fn precedes(&self, a: &str, b: &str) -> bool {
        let mut stack = vec![b.to_owned()];
        let mut seen = std::collections::HashSet::new();
        while let Some(x) = stack.pop() {
            for p in self.parents.get(&x).into_iter().flatten() {
                if p == a {
                    return true;
                }
                if seen.insert(p.clone()) {
                    stack.push(p.clone());
                }
            }
        }
        false
    }
}

fn lost_writes(r: &dynamo_checker::Results) -> Vec<String> {
    r.anomalies
        .get(&Kind::LostWrite)
        .into_iter()
        .flatten()
        .map(|f| match f {
            Finding::LostWrite(l) => l.write.write.clone(),
            _ => unreachable!(),
        })
        .collect()
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

    /// A store that drops one acknowledged write or one tombstone from the final state (from every
    /// replica that holds it): the checker must name it in a lost-write finding. The one legitimate
    /// excuse, that a write still present descends from it by ground truth, is computed from the
    /// history independently of the checker, and the assertion accounts for it.
    #[test]
    fn a_dropped_write_or_tombstone_is_named_lost(
        p in params(),
        pick in any::<proptest::sample::Index>(),
        tombstone in any::<bool>(),
    ) {
        let text = jsonl(p.clone());
        let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let acked: HashSet<&str> = events
            .iter()
            .filter(|e| e["type"] == "ok" && e["f"] != "get")
            .map(|e| e["write"].as_str().unwrap())
            .collect();
        // Candidates: acknowledged writes in the final state, puts or tombstones as asked.
        let mut candidates: Vec<&str> = events
            .iter()
            .filter(|e| e["f"] == "replica-state")
            .flat_map(|e| e["values"].as_array().unwrap().iter())
            .filter(|s| s["value"].is_null() == tombstone)
            .map(|s| s["write"].as_str().unwrap())
            .filter(|w| acked.contains(w))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        prop_assume!(!candidates.is_empty());
        let victim = candidates[pick.index(candidates.len())].to_owned();
        let mut out = String::new();
        for mut e in events.clone() {
            if e["f"] == "replica-state" {
                e["values"].as_array_mut().unwrap().retain(|s| s["write"] != victim.as_str());
            }
            out.push_str(&serde_json::to_string(&e).unwrap());
            out.push('\n');
        }
        let dropped: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let present: HashSet<&str> = dropped
            .iter()
            .filter(|e| e["f"] == "replica-state")
            .flat_map(|e| e["values"].as_array().unwrap().iter())
            .map(|s| s["write"].as_str().unwrap())
            .collect();
        let ancestry = Ancestry::of(&dropped);
        let excused = present.iter().any(|w| ancestry.precedes(&victim, w));
        // Every finding kept: dropping the newest of a chain of writes loses the whole chain, and
        // the victim must be named whatever its place in it.
        let every = Options { findings_per_kind_max: usize::MAX };
        let r = check_with(&parse_reader(out.as_bytes()).unwrap().history, &every);
        let lost = lost_writes(&r);
        if excused {
            prop_assert!(!lost.contains(&victim), "{victim} is excused by a descendant: {}", summary(&r));
        } else {
            prop_assert!(lost.contains(&victim), "{victim} (tombstone: {tombstone}) not named lost: {}\n{p:?}", summary(&r));
            prop_assert_eq!(r.valid, Validity::False);
        }
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
        if bug == Bug::EarlyAck {
            // A strict quorum: no sloppy reads.
            p.p_sloppy = 0.0;
        }
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

#[test]
fn acknowledging_before_a_write_quorum_misses_quorum_reads() {
    let seeds = detect(Bug::EarlyAck, Kind::QuorumReadMiss, &[Kind::QuorumReadMiss]);
    println!("early-ack: quorum-read-miss on seeds {seeds:?}");
}

#[test]
fn a_v1_history_of_a_correct_store_checks_valid() {
    for seed in 0..20 {
        let mut p = Params::small(seed);
        p.format = 1;
        p.p_delete = 0.3;
        p.p_info = 0.0; // See `params`.
        let text = jsonl(p);
        assert!(!text.contains("history_format"));
        let r = check(&parse_reader(text.as_bytes()).unwrap().history);
        assert!(r.anomalies.is_empty(), "seed {seed}: {}", summary(&r));
    }
}
