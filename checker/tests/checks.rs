//! Every anomaly and warning of history-format.md on tiny hand-written histories, positive and
//! negative.

mod support;

use dynamo_checker::{Finding, Kind, Results, Validity, summary};
use serde_json::json;
use support::{H, S, del_ok, finals, kinds, put_ok, sib, ver};

/// Write a acknowledged, then the lines `between` adds, then process `p` reads a beside `extra`;
/// the final state is a alone.
fn a_read_beside(between: impl FnOnce(H) -> H, p: u64, extra: S) -> Results {
    let h = between(put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]));
    let h = h
        .get(p, "k")
        .ok_get(p, "k", &[sib("a", ("n1", 1), &[]), extra]);
    finals(h, &[sib("a", ("n1", 1), &[])]).check()
}

#[test]
fn a_correct_history_is_valid() {
    let h = H::new().config("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h.phase("heal").phase("final").get(3, "k").ok_get(
        3,
        "k",
        &[sib("b", ("n1", 2), &[("n1", 1)])],
    );
    let r = h
        .replicas("k", &[sib("b", ("n1", 2), &[("n1", 1)])])
        .check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
    assert!(kinds(&r).is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn an_acknowledged_write_missing_from_the_final_state_is_lost() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[]);
    let r = finals(h, &[sib("b", ("n2", 1), &[])]).check();
    assert_eq!(r.valid, Validity::False);
    assert_eq!(kinds(&r), ["lost-write"]);
    assert_eq!(r.exit_code(), 1);
    let Finding::LostWrite(l) = &r.anomalies[&Kind::LostWrite][0] else {
        panic!()
    };
    assert_eq!(
        (l.write.write.as_str(), l.write.key.as_str(), l.rule),
        ("a", "k", "observed")
    );
    assert_eq!(l.write.acked_at, Some(2_000_000));
    assert_eq!(l.write.invoked_at, 1_000_000);
    assert_eq!(l.write.coordinator.as_deref(), Some("n1"));
    assert_eq!(l.final_state.siblings, ["b"]);
    assert_eq!(l.final_state.replicas.len(), 3);
}

#[test]
fn an_info_write_that_is_absent_is_not_lost() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "k", "b", &[]).end(2, "info", "put", "k", "b");
    let h = h.put(3, "k", "c", &[]); // never completes: as unknown as info
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
    assert_eq!(r.stats.totals.info, 1);
    assert_eq!(r.stats.totals.pending, 1);
}

#[test]
fn a_write_superseded_by_one_that_observed_it_is_neither_lost_nor_falsely_dominated() {
    let a = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    // b (another process) observed a: its version dominates a's as it may.
    let direct = put_ok(a.clone(), 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let direct = finals(direct, &[sib("b", ("n1", 2), &[("n1", 1)])]);
    // a is superseded transitively: c observed b, which observed a.
    let h = put_ok(a, 1, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = put_ok(h, 2, "c", &["b"], ("n2", 1), &[("n1", 2)]);
    let transitive = finals(h, &[sib("c", ("n2", 1), &[("n1", 2)])]);
    for (name, h) in [("direct", direct), ("transitive", transitive)] {
        let r = h.check();
        assert_eq!(r.valid, Validity::True, "{name}: {}", summary(&r));
    }
}

#[test]
fn a_write_superseded_only_by_the_clock_is_false_dominance() {
    // b's client read nothing (a blind put), yet the store's version of b covers a's dot: the store
    // ordered a before b and dropped a.
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    assert_eq!(r.valid, Validity::False);
    assert_eq!(kinds(&r), ["lost-write", "false-dominance"]);
    let Finding::FalseDominance(d) = &r.anomalies[&Kind::FalseDominance][0] else {
        panic!()
    };
    assert_eq!(d.write.write, "a");
    assert_eq!(d.dominated_by.write, "b");
    assert!(
        d.write_based_on.is_none() && d.dominated_by_based_on.is_none(),
        "both were blind puts"
    );
    assert!(r.anomalies[&Kind::FalseDominance][0].clone() == r.anomalies[&Kind::FalseDominance][0]);
}

#[test]
fn false_dominance_names_the_reads_each_put_was_based_on() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "x", &[], ("n2", 1), &[]);
    // Process 3 read x only, but the store's version of its write covers a too.
    let h = h.get(3, "k").ok_get(3, "k", &[sib("x", ("n2", 1), &[])]);
    let h = put_ok(h, 3, "b", &["x"], ("n2", 2), &[("n1", 1), ("n2", 1)]);
    let r = finals(h, &[sib("b", ("n2", 2), &[("n1", 1), ("n2", 1)])]).check();
    assert_eq!(r.count(Kind::FalseDominance), 1, "{}", summary(&r));
    let Finding::FalseDominance(d) = &r.anomalies[&Kind::FalseDominance][0] else {
        panic!()
    };
    assert_eq!(
        (d.write.write.as_str(), d.dominated_by.write.as_str()),
        ("a", "b")
    );
    let based = d
        .dominated_by_based_on
        .as_ref()
        .expect("b was based on a read");
    assert_eq!(based.siblings, ["x"]);
    assert_eq!(based.process, Some(3));
}

#[test]
fn two_dotted_versions_with_empty_contexts_are_concurrent_not_ordered() {
    // {dot:[n1,3],clock:{}} and {dot:[n1,4],clock:{}}: plain clocks {n1:3} < {n1:4} would order them.
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 3), &[]);
    let h = put_ok(h, 2, "b", &[], ("n1", 4), &[]);
    let both = [sib("a", ("n1", 3), &[]), sib("b", ("n1", 4), &[])];
    let h = h.get(3, "k").ok_get(3, "k", &both);
    let r = finals(h, &both).check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
    assert_eq!(r.stats.siblings_per_read.counts["2"], 1);
}

#[test]
fn plain_vector_clocks_that_order_unrelated_writes_are_false_dominance() {
    // The paper's per-version clocks (no dots): {n1:2} dominates {n1:1} whatever the clients saw.
    let h = H::new()
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", Some(ver(None, &[("n1", 1)])));
    let h = h
        .put(2, "k", "b", &[])
        .ok(2, "put", "k", "b", Some(ver(None, &[("n1", 2)])));
    let r = finals(h, &[S::new("b").with(ver(None, &[("n1", 2)]))]).check();
    assert_eq!(kinds(&r), ["lost-write", "false-dominance"]);
}

/// After `h`, process `p` reads the tombstone of d (n1:2 over n1:1) and puts b observing it (n1:3
/// over n1:2), b alone the final state: asserts that the history is valid.
fn assert_a_put_over_the_tombstone_is_valid(h: H, p: u64) {
    let tomb = S::tombstone("d").with(ver(Some(("n1", 2)), &[("n1", 1)]));
    let h = h.get(p, "k").ok_get(p, "k", &[tomb]);
    let h = put_ok(h, p, "b", &["d"], ("n1", 3), &[("n1", 2)]);
    let r = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
}

#[test]
fn a_v2_write_after_a_delete_observes_its_tombstone() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(1, "k").ok_get(1, "k", &[sib("a", ("n1", 1), &[])]);
    let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    // A v2 read returns the tombstone, and the next put lists it in `observed`.
    assert_a_put_over_the_tombstone_is_valid(h, 2);
}

#[test]
fn a_v2_write_whose_version_covers_a_tombstone_it_never_saw_is_false_dominance() {
    // The store's order is no ground truth: b's context covers d's dot, but b's client never read d.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let h = put_ok(h, 2, "b", &[], ("n1", 3), &[("n1", 2)]);
    let r = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check();
    // The read after the delete returned nothing, not the tombstone: a stale read, too.
    assert_eq!(
        kinds(&r),
        ["lost-write", "false-dominance", "stale-read"],
        "{}",
        summary(&r)
    );
    // b's version covers both the tombstone's dot and a's, and b's client saw neither.
    let dominated: Vec<(&str, &str)> = r.anomalies[&Kind::FalseDominance]
        .iter()
        .map(|f| match f {
            Finding::FalseDominance(d) => (d.write.write.as_str(), d.dominated_by.write.as_str()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(dominated, [("a", "b"), ("d", "b")]);
    let lost: Vec<&str> = r.anomalies[&Kind::LostWrite]
        .iter()
        .map(|f| match f {
            Finding::LostWrite(l) => l.write.write.as_str(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        lost,
        ["a", "d"],
        "the tombstone and what it deleted are gone"
    );
}

#[test]
fn a_write_deleted_by_a_client_that_saw_it_is_not_lost() {
    let base = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let base = del_ok(base, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let with_tombstone = finals(
        base.clone(),
        &[S::tombstone("d").with(ver(Some(("n1", 2)), &[("n1", 1)]))],
    )
    .check();
    assert_eq!(
        with_tombstone.valid,
        Validity::True,
        "{}",
        summary(&with_tombstone)
    );
}

#[test]
fn a_delete_whose_removed_write_comes_back_is_lost() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(kinds(&r), ["lost-write"]);
    let Finding::LostWrite(l) = &r.anomalies[&Kind::LostWrite][0] else {
        panic!()
    };
    assert_eq!(
        (l.write.write.as_str(), l.rule, l.resurrected.as_slice()),
        ("d", "observed", &["a".to_owned()][..])
    );
}

/// A cart write `w` by process `p` of `items` to "k", acknowledged with its version.
fn cart_put_ok(
    h: H,
    p: u64,
    w: &str,
    items: serde_json::Value,
    observed: &[&str],
    dot: (&str, u64),
    clock: &[(&str, u64)],
) -> H {
    h.put_value(p, "k", w, items, observed)
        .ok(p, "put", "k", w, Some(ver(Some(dot), clock)))
}

#[test]
fn cart_a_write_whose_item_is_in_no_final_value_is_lost() {
    let h = H::new().config("cart");
    let h = cart_put_ok(h, 1, "a", json!(["a"]), &[], ("n1", 1), &[]);
    // b observed a, but its value dropped a's item: superseding a loses the item.
    let h = cart_put_ok(h, 2, "b", json!(["b"]), &["a"], ("n1", 2), &[("n1", 1)]);
    let r = finals(
        h,
        &[S::valued("b", json!(["b"])).with(ver(Some(("n1", 2)), &[("n1", 1)]))],
    )
    .check();
    assert_eq!(kinds(&r), ["lost-write"]);
    let Finding::LostWrite(l) = &r.anomalies[&Kind::LostWrite][0] else {
        panic!()
    };
    assert_eq!((l.write.write.as_str(), l.rule), ("a", "cart-item"));
}

#[test]
fn cart_items_merged_into_a_later_value_are_not_lost() {
    let h = H::new().config("cart");
    let h = cart_put_ok(h, 1, "a", json!(["a"]), &[], ("n1", 1), &[]);
    let h = cart_put_ok(h, 2, "c", json!(["c"]), &[], ("n2", 1), &[]);
    let h = h.put_value(3, "k", "b", json!(["a", "b", "c"]), &["a", "c"]);
    let h = h.ok(
        3,
        "put",
        "k",
        "b",
        Some(ver(Some(("n1", 2)), &[("n1", 1), ("n2", 1)])),
    );
    let r = finals(
        h,
        &[S::valued("b", json!(["a", "b", "c"]))
            .with(ver(Some(("n1", 2)), &[("n1", 1), ("n2", 1)]))],
    )
    .check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
}

#[test]
fn a_read_of_a_write_no_put_invoked_is_a_phantom() {
    let r = a_read_beside(|h| h, 2, sib("ghost", ("n9", 1), &[]));
    assert_eq!(kinds(&r), ["phantom-read"]);
    let Finding::PhantomRead(p) = &r.anomalies[&Kind::PhantomRead][0] else {
        panic!()
    };
    assert_eq!(
        (p.write.as_str(), p.reason, p.read.process),
        ("ghost", "unknown-write", Some(2))
    );
}

#[test]
fn a_read_of_a_value_its_write_did_not_write_is_a_phantom() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(
        2,
        "k",
        &[S::valued("a", json!("tampered")).with(ver(Some(("n1", 1)), &[]))],
    );
    let h = h.get(3, "k").ok_get(3, "k", &[sib("a", ("n1", 1), &[])]);
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(kinds(&r), ["phantom-read"]);
    assert_eq!(r.count(Kind::PhantomRead), 1);
    let Finding::PhantomRead(p) = &r.anomalies[&Kind::PhantomRead][0] else {
        panic!()
    };
    assert_eq!(
        (
            p.reason,
            p.returned.as_ref().unwrap().0.as_str(),
            p.written.as_ref().map(|w| w.0.as_str())
        ),
        ("wrong-value", "\"tampered\"", Some("\"a\""))
    );
}

/// A witness shows a value as the history spelt it (canonically): two numbers that differ only past
/// an f64's precision are two values, and the witness must not print them alike.
#[test]
fn a_phantom_value_is_shown_exactly() {
    let text = r#"{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{"history_format":2,"n":3,"r":2,"w":2,"nodes":3,"workload":"register"}}
{"index":1,"time":1,"process":0,"type":"invoke","f":"put","key":"k","write":"a","value":18446744073709551616,"observed":[]}
{"index":2,"time":2,"process":0,"type":"ok","f":"put","key":"k"}
{"index":3,"time":3,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n1","values":[{"write":"a","value":18446744073709552000}]}
"#;
    let r = dynamo_checker::check(
        &dynamo_checker::parse_reader(text.as_bytes())
            .unwrap()
            .history,
    );
    let Finding::PhantomRead(p) = &r.anomalies[&Kind::PhantomRead][0] else {
        panic!()
    };
    assert_eq!(
        p.returned.as_ref().unwrap().to_string(),
        "18446744073709552000"
    );
    assert_eq!(
        p.written.as_ref().unwrap().to_string(),
        "18446744073709551616"
    );
    let out = serde_json::to_string(p).unwrap();
    assert!(out.contains(r#""written":18446744073709551616"#), "{out}");
    // A number no JSON reader takes as an f64 is written as a string of its text, so that
    // results.json stays readable.
    let huge = dynamo_checker::checks::JsonText("[1e400]".into());
    assert_eq!(serde_json::to_string(&huge).unwrap(), r#""[1e400]""#);
    assert_eq!(huge.to_string(), "[1e400]");
}

#[test]
fn a_failed_write_that_shows_up_is_visible() {
    let failed_f = |h: H| h.put(2, "k", "f", &[]).end(2, "fail", "put", "k", "f");
    let r = a_read_beside(failed_f, 3, sib("f", ("n2", 1), &[]));
    assert_eq!(kinds(&r), ["failed-write-visible"]);
    let Finding::FailedWriteVisible(v) = &r.anomalies[&Kind::FailedWriteVisible][0] else {
        panic!()
    };
    assert_eq!(
        (v.write.write.as_str(), v.write.outcome, v.times_seen),
        ("f", "fail", 1)
    );
}

#[test]
fn a_failed_write_that_stays_invisible_is_fine() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "k", "f", &[]).end(2, "fail", "put", "k", "f");
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
}

#[test]
fn replicas_holding_different_siblings_diverge() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[]);
    let (a, b) = (sib("a", ("n1", 1), &[]), sib("b", ("n2", 1), &[]));
    let same = h
        .clone()
        .phase("final")
        .replica("k", "n1", &[a.clone(), b.clone()])
        .replica("k", "n2", &[b.clone(), a.clone()])
        .check();
    assert!(
        !kinds(&same).contains(&"divergence"),
        "order does not matter: {:?}",
        kinds(&same)
    );
    let r = h
        .phase("final")
        .replica("k", "n1", &[a.clone(), b.clone()])
        .replica("k", "n2", &[a])
        .check();
    assert_eq!(kinds(&r), ["divergence"]);
    let Finding::Divergence(d) = &r.anomalies[&Kind::Divergence][0] else {
        panic!()
    };
    assert_eq!(d.final_state.replicas["n2"], ["a"]);
}

#[test]
fn a_version_that_forgets_what_its_client_observed_is_a_clock_regression() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    // b's client read a, but the store made b's version with an empty context.
    let h = put_ok(h, 2, "b", &["a"], ("n2", 1), &[]);
    let both = [sib("a", ("n1", 1), &[]), sib("b", ("n2", 1), &[])];
    let h = h
        .phase("heal")
        .phase("final")
        .get(3, "k")
        .ok_get(3, "k", &both);
    let r = h.replicas("k", &both).check();
    assert_eq!(kinds(&r), ["clock-regression", "false-concurrency"]);
    let Finding::ClockRegression(c) = &r.anomalies[&Kind::ClockRegression][0] else {
        panic!()
    };
    assert_eq!(
        (c.write.write.as_str(), c.observed_write.write.as_str()),
        ("b", "a")
    );
    let Finding::FalseConcurrency(f) = &r.warnings[&Kind::FalseConcurrency][0] else {
        panic!()
    };
    assert_eq!((f.ancestor.as_str(), f.descendant.as_str()), ("a", "b"));
}

#[test]
fn concurrent_siblings_are_no_false_concurrency() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[]);
    let both = [sib("a", ("n1", 1), &[]), sib("b", ("n2", 1), &[])];
    let r = finals(h.get(3, "k").ok_get(3, "k", &both), &both).check();
    assert_eq!(r.valid, Validity::True);
    assert!(kinds(&r).is_empty(), "{:?}", kinds(&r));
}

#[test]
fn a_read_that_misses_an_acknowledged_write_is_stale() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(r.valid, Validity::True, "a warning does not invalidate");
    assert_eq!(kinds(&r), ["stale-read"]);
    let Finding::StaleRead(s) = &r.warnings[&Kind::StaleRead][0] else {
        panic!()
    };
    assert_eq!(
        (s.missed.write.as_str(), s.missed_count, s.read.invoked_at),
        ("a", 1, 3_000_000)
    );
    // a was acked at 2 ms; the stale read started at 3 ms; the next read (5 ms) saw it.
    let window = r.stats.consistency_window_ns.as_ref().unwrap();
    assert_eq!(window.quantiles.unwrap().max, 1_000_000);
    assert_eq!(window.never, 0);
}

#[test]
fn a_read_that_sees_a_descendant_is_not_stale() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 1, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h
        .get(2, "k")
        .ok_get(2, "k", &[sib("b", ("n1", 2), &[("n1", 1)])]);
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    assert!(kinds(&r).is_empty(), "{:?}", kinds(&r));
    assert_eq!(
        r.stats
            .consistency_window_ns
            .as_ref()
            .unwrap()
            .quantiles
            .unwrap()
            .max,
        0
    );
}

#[test]
fn convergence_after_the_heal_is_measured() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]).phase("heal");
    let h = h.get(2, "k").ok_get(2, "k", &[]); // stale, after the heal (heal at 3 ms, read ends 5 ms)
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let r = h
        .phase("final")
        .replicas("k", &[sib("a", ("n1", 1), &[])])
        .check();
    let c = r.stats.convergence.as_ref().unwrap();
    assert_eq!(
        (c.heal_at, c.converged_after_ns, c.converged),
        (3_000_000, Some(2_000_000), true)
    );
}

#[test]
fn nothing_acknowledged_is_unknown() {
    let h = H::new()
        .put(1, "k", "a", &[])
        .end(1, "info", "put", "k", "a");
    let r = finals(h, &[]).check();
    assert_eq!(r.valid, Validity::Unknown);
    assert_eq!(r.exit_code(), 2);
    assert!(
        r.stats
            .unknown
            .iter()
            .any(|u| u.contains("nothing was acknowledged")),
        "{:?}",
        r.stats.unknown
    );
}

#[test]
fn a_missing_final_replica_state_is_unknown() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]).phase("final");
    let r = h
        .get(2, "k")
        .ok_get(2, "k", &[sib("a", ("n1", 1), &[])])
        .check();
    assert_eq!(r.valid, Validity::Unknown, "{}", summary(&r));
    assert!(r.stats.unknown.iter().any(|u| u.contains("replica-state")));
}

#[test]
fn false_beats_unknown() {
    // No replica state (unknown), but a phantom read (false).
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let r = h.get(2, "k").ok_get(2, "k", &[S::new("ghost")]).check();
    assert_eq!(r.valid, Validity::False);
}

#[test]
fn results_serialise_to_the_format_shape() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[])
        .get(2, "k")
        .ok_get(2, "k", &[]);
    let r = finals(h, &[]).check();
    let v = serde_json::to_value(&r).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["anomalies", "anomaly_types", "stats", "valid", "warnings"]
    );
    assert_eq!(v["valid"], json!(false));
    assert_eq!(v["anomaly_types"], json!(["lost-write"]));
    let lost = &v["anomalies"]["lost-write"][0];
    assert_eq!(
        (&lost["write"], &lost["key"], &lost["acked_at"]),
        (&json!("a"), &json!("k"), &json!(2_000_000))
    );
    assert!(
        lost["explanation"].as_str().unwrap().contains("a to k"),
        "{lost}"
    );
    assert_eq!(
        v["warnings"]["stale-read"][0]["missed"]["write"],
        json!("a")
    );
    let stats = &v["stats"];
    assert_eq!(
        (&stats["ops"], &stats["ok"], &stats["fail"], &stats["info"]),
        (&json!(2), &json!(2), &json!(0), &json!(0))
    );
    assert_eq!(stats["by_f"]["get"]["ok"], json!(1));
    assert_eq!(stats["latency_ns"]["put"]["p50"], json!(1_000_000));
    // The only read was of a missing key: it is left out of siblings per read.
    assert_eq!(stats["siblings_per_read"]["reads"], json!(0));
    assert_eq!(stats["siblings_per_read"]["missing_key_reads"], json!(1));
    assert_eq!(stats["anomaly_counts"]["lost-write"], json!(1));

    let text = summary(&r);
    assert!(text.starts_with("INVALID"), "{text}");
    assert!(text.contains("lost-write: 1"), "{text}");
    assert!(text.contains("stale-read 1"), "{text}");
}

#[test]
fn valid_results_serialise_true() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[])
        .nemesis("crash")
        .nemesis("restart");
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        (&v["valid"], &v["anomaly_types"], &v["anomalies"]),
        (&json!(true), &json!([]), &json!({}))
    );
    assert_eq!(v["stats"]["nemesis"], json!({"crash": 1, "restart": 1}));
}

#[test]
fn a_delete_that_ended_info_is_seen_through_its_tombstone() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    // The delete timed out, but its tombstone was stored: a v2 read shows it, with its version.
    let h = h
        .delete(2, "k", "d", &["a"])
        .end(2, "info", "delete", "k", "d");
    assert_a_put_over_the_tombstone_is_valid(h, 3);
}

#[test]
fn observed_entries_that_cannot_be_edges_are_noted_not_trusted() {
    let h = put_ok(H::new(), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .put(2, "other", "x", &[])
        .ok(2, "put", "other", "x", Some(ver(Some(("n2", 1)), &[])));
    // b claims to have observed a write no put invoked and a write to another key. Neither is an
    // edge; but the list records what b's base read returned, so that read returned two write ids
    // no put or delete on k invoked: phantom reads (exact.rs).
    let h = put_ok(h, 3, "b", &["nobody", "x"], ("n3", 1), &[]);
    let h = finals(h, &[sib("a", ("n1", 1), &[]), sib("b", ("n3", 1), &[])]);
    let r = h
        .replicas("other", &[S::new("x").with(ver(Some(("n2", 1)), &[]))])
        .check();
    assert_eq!(r.valid, Validity::False, "{}", summary(&r));
    assert_eq!(r.anomaly_types(), [Kind::PhantomRead], "{}", summary(&r));
    assert_eq!(r.count(Kind::PhantomRead), 2);
    assert!(
        r.stats.notes.iter().any(|n| n.contains("\"nobody\"")),
        "{:?}",
        r.stats.notes
    );
    assert!(
        r.stats.notes.iter().any(|n| n.contains("another key")),
        "{:?}",
        r.stats.notes
    );
}

#[test]
fn cart_a_read_of_items_no_put_invoked_is_a_phantom() {
    let h = H::new().config("cart");
    let h = cart_put_ok(h, 1, "a", json!(["a"]), &[], ("n1", 1), &[]);
    let forged = S::valued("a", json!(["a", "zz"])).with(ver(Some(("n1", 1)), &[]));
    let h = h.get(2, "k").ok_get(2, "k", &[forged]);
    let r = finals(
        h,
        &[S::valued("a", json!(["a"])).with(ver(Some(("n1", 1)), &[]))],
    )
    .check();
    assert_eq!(kinds(&r), ["phantom-read"]);
    let Finding::PhantomRead(p) = &r.anomalies[&Kind::PhantomRead][0] else {
        panic!()
    };
    assert_eq!(
        (p.reason, p.unknown_items.as_slice()),
        ("wrong-value", &["zz".to_owned()][..])
    );
}

#[test]
fn figures_count_operations_latencies_and_siblings() {
    let mut h = H::new();
    let mut sibs = Vec::new();
    for (p, w) in ["a", "b", "c", "d"].iter().enumerate() {
        h = put_ok(h, p as u64, w, &[], ("n1", p as u64 + 1), &[]);
        sibs.push(sib(w, ("n1", p as u64 + 1), &[]));
    }
    h = h
        .delete(9, "k", "x", &[])
        .end(9, "fail", "delete", "k", "x");
    h = h.get(10, "k").ok_get(10, "k", &sibs[..1]);
    h = h.get(10, "k").ok_get(10, "k", &sibs);
    h = h.get(10, "k").end(10, "info", "get", "k", "");
    let r = finals(h, &sibs).check();
    let s = &r.stats;
    assert_eq!(
        (s.totals.ops, s.totals.ok, s.totals.fail, s.totals.info),
        (8, 6, 1, 1)
    );
    assert_eq!(
        (s.by_f["put"].ok, s.by_f["delete"].fail, s.by_f["get"].info),
        (4, 1, 1)
    );
    assert_eq!(s.latency_ns["put"].count, 4);
    assert!(
        !s.latency_ns.contains_key("delete"),
        "only ok operations have latencies"
    );
    assert_eq!(
        (
            s.siblings_per_read.counts["1"],
            s.siblings_per_read.counts["4+"]
        ),
        (1, 1)
    );
    assert_eq!(s.siblings_per_read.shares["4+"], 0.5);
}
