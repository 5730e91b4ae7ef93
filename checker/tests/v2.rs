//! The rules of history format v2 (shared/history-format.md), each on tiny hand-written histories:
//! positive (the anomaly is reported, naming the right write) and negative (a correct history stays
//! valid). Grouped as the page is: ground truth and v1, the final state, lost-write with deletes,
//! tombstone_gc and the cart rule, phantom reads, divergence, quorum-read-miss, nemesis names, value
//! equality, and the figures.

mod support;

use dynamo_checker::{Finding, Kind, Results, Validity, summary};
use serde_json::{Value, json};
use support::{H, S, del_ok, finals, kinds, put_ok, sib, tomb, ver};

/// The (write, rule) of every lost-write finding, in history order.
fn lost(r: &Results) -> Vec<(String, &'static str)> {
    findings(r, Kind::LostWrite)
        .map(|f| match f {
            Finding::LostWrite(l) => (l.write.write.clone(), l.rule),
            _ => unreachable!(),
        })
        .collect()
}

fn findings(r: &Results, kind: Kind) -> impl Iterator<Item = &Finding> {
    r.anomalies
        .get(&kind)
        .or_else(|| r.warnings.get(&kind))
        .into_iter()
        .flatten()
}

fn pairs<'a>(v: &'a [(String, &'static str)]) -> Vec<(&'a str, &'static str)> {
    v.iter().map(|(w, r)| (w.as_str(), *r)).collect()
}

fn valid(r: &Results) {
    assert_eq!(r.valid, Validity::True, "{}", summary(r));
    assert!(r.anomalies.is_empty(), "{}", summary(r));
}

// ---- Ground truth only from `observed`; v1 compatibility ----

/// a, then delete d (which observed a), then b: `observed` of b and the read before it decide.
fn after_a_delete(h: H, b_observed: &[&str], read: &[S]) -> H {
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h.get(2, "k").ok_get(2, "k", read);
    put_ok(h, 2, "b", b_observed, ("n1", 3), &[("n1", 2)])
}

#[test]
fn a_delete_is_an_ancestor_only_through_observed() {
    let tombstone = tomb("d", ("n1", 2), &[("n1", 1)]);
    let h = after_a_delete(H::new().config("register"), &["d"], &[tombstone]);
    valid(&finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check());

    // The same store order, but b's client never listed d: real time and the store's clock are no
    // ground truth, so d (and a with it) is lost, and the store's order is a false dominance.
    let h = after_a_delete(H::new().config("register"), &[], &[]);
    let r = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check();
    assert_a_and_d_lost(&r, "");
    assert!(r.anomalies.contains_key(&Kind::FalseDominance));
}

/// Asserts that exactly a and its delete d are lost, each by the `observed` rule; `what` names the
/// case in the message.
fn assert_a_and_d_lost(r: &Results, what: &str) {
    let expected = [("a", "observed"), ("d", "observed")];
    assert_eq!(pairs(&lost(r)), expected, "{what}: {}", summary(r));
}

/// A v1 register history: a put of a, a delete of it (dot n1:2), a read that sees nothing, then a
/// put of b with `context` (its version n1:3 over n1:2), checked with b as the final state.
fn v1_put_after_a_delete(context: Value) -> Results {
    let h = H::new().config_v1("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let h = h.put_ctx(2, "k", "b", &[], context).ok(
        2,
        "put",
        "k",
        "b",
        Some(ver(Some(("n1", 3)), &[("n1", 2)])),
    );
    finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check()
}

#[test]
fn v1_a_context_clock_that_covers_the_delete_dot_observes_the_delete() {
    // A v1 read omits the tombstone; the put's context is the best the history holds.
    for context in [json!("n1=2"), json!({"n1": 2}), json!("n1=2,n2=7")] {
        let r = v1_put_after_a_delete(context.clone());
        valid(&r);
        assert!(r.stats.notes.iter().any(|n| n.contains("v1 history")));
    }
}

#[test]
fn v1_an_opaque_or_short_context_observes_nothing() {
    for context in [
        json!("opaque-bytes"),
        json!("n1=1"),
        json!({"n1": "2"}),
        json!("n1=2;n2=1"),
        json!([["n1", 2]]),
    ] {
        let r = v1_put_after_a_delete(context.clone());
        assert_a_and_d_lost(&r, &context.to_string());
    }
}

#[test]
fn v1_the_substitute_does_not_apply_to_a_v2_history() {
    // The same history with `history_format: 2`: only `observed` counts.
    let h = H::new().config("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h.put_ctx(2, "k", "b", &[], json!("n1=2")).ok(
        2,
        "put",
        "k",
        "b",
        Some(ver(Some(("n1", 3)), &[("n1", 2)])),
    );
    let r = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check();
    assert_a_and_d_lost(&r, "");
}

#[test]
fn a_v1_history_without_deletes_still_checks() {
    let h = H::new().config_v1("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    valid(&finals(h.clone(), &[sib("b", ("n1", 2), &[("n1", 1)])]).check());
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(pairs(&lost(&r)), [("b", "observed")]);
}

// ---- The final state is the replica states, and nothing else ----

#[test]
fn final_reads_are_not_the_final_state() {
    // The issue's case: a final read returned 5 siblings, then read repair left only a blind put on
    // every replica. Four acknowledged writes are lost.
    let mut h = H::new().config("register");
    let mut all = Vec::new();
    for (i, w) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let n = i as u64 + 1;
        h = put_ok(h, n, w, &[], (&format!("n{n}"), 1), &[]);
        all.push(sib(w, (&format!("n{n}"), 1), &[]));
    }
    let h = h.phase("heal").phase("final");
    let h = h.get(9, "k").ok_get(9, "k", &all);
    let r = h.replicas("k", &all[4..]).check();
    assert_eq!(
        pairs(&lost(&r)),
        [
            ("a", "observed"),
            ("b", "observed"),
            ("c", "observed"),
            ("d", "observed")
        ],
        "{}",
        summary(&r)
    );
    let Finding::LostWrite(l) = findings(&r, Kind::LostWrite).next().unwrap() else {
        panic!()
    };
    // The witness: the write, its key and ack, and what every replica holds.
    assert_eq!(
        (l.write.key.as_str(), l.write.acked_at),
        ("k", Some(3_000_000))
    );
    assert_eq!(l.final_state.replicas.len(), 3);
    assert!(l.final_state.replicas.values().all(|ids| ids == &["e"]));
}

#[test]
fn a_key_with_an_acknowledged_write_and_no_replica_state_makes_the_verdict_unknown() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "other", "x", &[]).ok(2, "put", "other", "x", None);
    // A final read of "other" is no final state.
    let h = h
        .phase("final")
        .get(3, "other")
        .ok_get(3, "other", &[S::new("x")]);
    let r = h.replicas("k", &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(r.valid, Validity::Unknown, "{}", summary(&r));
    assert!(
        r.stats
            .unknown
            .iter()
            .any(|u| u.contains("replica-state") && u.contains("\"other\"")),
        "{:?}",
        r.stats.unknown
    );
}

#[test]
fn final_reads_are_ordinary_reads_for_staleness() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.phase("final").get(2, "k").ok_get(2, "k", &[]);
    let r = h.replicas("k", &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(kinds(&r), ["stale-read"]);
    let Finding::StaleRead(s) = findings(&r, Kind::StaleRead).next().unwrap() else {
        panic!()
    };
    assert_eq!(s.read.source, "final-read");
}

#[test]
fn a_node_that_reports_a_key_twice_is_judged_by_its_last_report() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.phase("final");
    let h = h.replica("k", "n1", &[sib("a", ("n1", 1), &[])]);
    let r = h.replica("k", "n1", &[]).check();
    assert_eq!(pairs(&lost(&r)), [("a", "observed")], "{}", summary(&r));
}

// ---- lost-write: deletes, tombstone_gc, the cart rule ----

#[test]
fn a_delete_whose_tombstone_is_gone_is_lost_and_so_is_what_it_deleted() {
    // Without tombstone_gc a tombstone is kept for good: its absence loses the delete, and the put
    // the delete observed is no longer excused by it.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[]).check();
    assert_a_and_d_lost(&r, "");
    let f = findings(&r, Kind::LostWrite).nth(1).unwrap();
    let Finding::LostWrite(l) = f else { panic!() };
    assert_eq!((l.write.f, l.write.acked_at), ("delete", Some(5_000_000)));
    assert!(dynamo_checker::explain(f).contains("as a tombstone"));
}

#[test]
fn a_delete_present_as_a_tombstone_or_an_ancestor_of_a_present_write_is_not_lost() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    valid(&finals(h.clone(), &[tomb("d", ("n1", 2), &[("n1", 1)])]).check());
    let h = put_ok(h, 3, "b", &["d"], ("n1", 3), &[("n1", 2)]);
    valid(&finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check());
}

#[test]
fn a_delete_named_with_a_value_is_not_its_tombstone() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let r = finals(
        h,
        &[S::valued("d", json!("d")).with(ver(Some(("n1", 2)), &[("n1", 1)]))],
    )
    .check();
    assert!(r.anomalies.contains_key(&Kind::PhantomRead));
    assert_a_and_d_lost(&r, "");
}

fn gc() -> H {
    H::new().config_with("register", json!({"tombstone_gc": true}))
}

#[test]
fn tombstone_gc_a_collected_tombstone_is_no_loss() {
    let h = put_ok(gc(), 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    valid(&finals(h, &[]).check());
    // Under `node` too.
    let h = H::new().config_with("register", json!({"node": {"tombstone_gc": true}}));
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    valid(&finals(h, &[]).check());
}

#[test]
fn tombstone_gc_a_missing_tombstone_whose_deleted_value_came_back_is_lost() {
    let h = put_ok(gc(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(1, "k").ok_get(1, "k", &[sib("a", ("n1", 1), &[])]);
    let h = put_ok(h, 1, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = del_ok(h, 2, "d", &["b"], ("n1", 3), &[("n1", 2)]);
    // Directly (b, which d observed) and transitively (a, which b observed).
    for back in ["b", "a"] {
        let dot = if back == "a" { 1 } else { 2 };
        let clock: &[(&str, u64)] = if back == "a" { &[] } else { &[("n1", 1)] };
        let r = finals(h.clone(), &[sib(back, ("n1", dot), clock)]).check();
        let l = lost(&r);
        assert!(
            l.contains(&("d".to_owned(), "delete")),
            "{back}: {}",
            summary(&r)
        );
        let Finding::LostWrite(f) = findings(&r, Kind::LostWrite)
            .find(|f| matches!(f, Finding::LostWrite(l) if l.write.write == "d"))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(f.resurrected, [back.to_owned()]);
    }
}

#[test]
fn tombstone_gc_a_write_observed_by_a_delete_that_did_not_fail_is_excused() {
    for outcome in ["ok", "info"] {
        let h = put_ok(gc(), 1, "a", &[], ("n1", 1), &[]);
        let h = h.delete(2, "k", "d", &["a"]);
        let h = if outcome == "ok" {
            h.ok(
                2,
                "delete",
                "k",
                "d",
                Some(ver(Some(("n1", 2)), &[("n1", 1)])),
            )
        } else {
            h.end(2, "info", "delete", "k", "d")
        };
        valid(&finals(h, &[]).check());
    }
    // A delete that ended fail certainly did not take effect: it excuses nothing.
    let h = put_ok(gc(), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(2, "k", "d", &["a"])
        .end(2, "fail", "delete", "k", "d");
    let r = finals(h, &[]).check();
    assert_eq!(pairs(&lost(&r)), [("a", "observed")]);
}

#[test]
fn without_tombstone_gc_an_info_delete_with_no_tombstone_excuses_nothing() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(2, "k", "d", &["a"])
        .end(2, "info", "delete", "k", "d");
    let r = finals(h.clone(), &[]).check();
    assert_eq!(pairs(&lost(&r)), [("a", "observed")]);
    // Its tombstone, present, does.
    valid(&finals(h, &[tomb("d", ("n1", 2), &[("n1", 1)])]).check());
}

fn cart() -> H {
    H::new().config("cart")
}

fn cart_put(h: H, p: u64, w: &str, value: Value, observed: &[&str], dot: (&str, u64)) -> H {
    h.put_value(p, "k", w, value, observed)
        .ok(p, "put", "k", w, Some(ver(Some(dot), &[])))
}

fn cart_sib(w: &str, value: Value, dot: (&str, u64)) -> S {
    S::valued(w, value).with(ver(Some(dot), &[]))
}

#[test]
fn cart_a_delete_between_a_put_and_the_end_excuses_its_item() {
    let h = cart_put(cart(), 1, "p", json!(["p"]), &[], ("n1", 1));
    let h = del_ok(h, 2, "d", &["p"], ("n1", 2), &[("n1", 1)]);
    // The delete present as a tombstone.
    valid(&finals(h.clone(), &[tomb("d", ("n1", 2), &[("n1", 1)])]).check());
    // The delete an ancestor of a present version (q observed the tombstone; its value lacks p).
    let q = ver(Some(("n1", 3)), &[("n1", 2)]);
    let h = h
        .put_value(3, "k", "q", json!(["q"]), &["d"])
        .ok(3, "put", "k", "q", Some(q.clone()));
    valid(&finals(h, &[S::valued("q", json!(["q"])).with(q)]).check());
}

#[test]
fn cart_an_item_dropped_with_no_delete_between_is_lost() {
    // q observed p but its value dropped p's item; a concurrent delete that never saw p does not
    // lie between them.
    let h = cart_put(cart(), 1, "p", json!(["p"]), &[], ("n1", 1));
    let h = cart_put(h, 2, "q", json!(["q"]), &["p"], ("n1", 2));
    let h = del_ok(h, 3, "d", &[], ("n2", 1), &[]);
    let r = finals(
        h,
        &[
            cart_sib("q", json!(["q"]), ("n1", 2)),
            tomb("d", ("n2", 1), &[]),
        ],
    )
    .check();
    assert_eq!(pairs(&lost(&r)), [("p", "cart-item")], "{}", summary(&r));
}

#[test]
fn cart_with_tombstone_gc_a_delete_that_did_not_fail_lies_between() {
    let h = H::new().config_with("cart", json!({"tombstone_gc": true}));
    let h = cart_put(h, 1, "p", json!(["p"]), &[], ("n1", 1));
    let h = h
        .delete(2, "k", "d", &["p"])
        .end(2, "info", "delete", "k", "d");
    let h = cart_put(h, 3, "q", json!(["q"]), &[], ("n2", 1));
    valid(&finals(h, &[cart_sib("q", json!(["q"]), ("n2", 1))]).check());
}

// ---- phantom-read, failed-write-visible ----

fn phantoms(r: &Results) -> Vec<(String, &'static str, Vec<String>, &'static str)> {
    findings(r, Kind::PhantomRead)
        .map(|f| match f {
            Finding::PhantomRead(p) => (
                p.write.clone(),
                p.reason,
                p.unknown_items.clone(),
                p.read.source,
            ),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn cart_an_item_no_put_invoked_inside_a_value_otherwise_right_is_a_phantom() {
    // The value is exactly what the write wrote, but one of its items no put on this key invoked:
    // "zz" (nobody), "x" (a put on another key) and "d" (a delete, not a put).
    let h = cart();
    let h = h
        .put_value(9, "other", "x", json!(["x"]), &[])
        .ok(9, "put", "other", "x", None);
    let h = del_ok(h, 8, "d", &[], ("n3", 1), &[]);
    let bad = json!(["a", "d", "x", "zz"]);
    let h = cart_put(h, 1, "a", bad.clone(), &[], ("n1", 1));
    let h = h
        .get(2, "k")
        .ok_get(2, "k", &[cart_sib("a", bad.clone(), ("n1", 1))]);
    let r = finals(
        h,
        &[cart_sib("a", bad, ("n1", 1)), tomb("d", ("n3", 1), &[])],
    )
    .replicas("other", &[S::valued("x", json!(["x"]))])
    .check();
    let p = phantoms(&r);
    assert_eq!(
        p.len(),
        4,
        "the read and the three replicas: {}",
        summary(&r)
    );
    let items = vec!["d".to_owned(), "x".to_owned(), "zz".to_owned()];
    assert_eq!(
        p[0],
        ("a".to_owned(), "unknown-item", items.clone(), "read")
    );
    assert_eq!(
        p[1],
        ("a".to_owned(), "unknown-item", items, "replica-state")
    );
}

#[test]
fn a_replica_holding_a_write_no_put_on_that_key_invoked_is_a_phantom() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "other", "x", &[]).ok(2, "put", "other", "x", None);
    let h = h.phase("final");
    let h = h.replica("k", "n1", &[sib("a", ("n1", 1), &[]), S::new("x")]);
    let h = h.replica("k", "n2", &[sib("a", ("n1", 1), &[]), S::new("ghost")]);
    let h = h.replica("other", "n1", &[S::new("x")]);
    let r = h.check();
    let p = phantoms(&r);
    assert_eq!(
        p.iter()
            .map(|(w, reason, _, source)| (w.as_str(), *reason, *source))
            .collect::<Vec<_>>(),
        [
            ("x", "unknown-write", "replica-state"),
            ("ghost", "unknown-write", "replica-state")
        ]
    );
}

#[test]
fn a_phantom_sibling_lends_no_version_to_the_write_it_names() {
    // a's ok reported no version. A read returns a sibling named a with another value, and a replica
    // of another key holds one named a: both are phantoms, and neither's version is a's. Taking it
    // would make b's blind put falsely dominate a.
    let h = H::new().config("register").put(1, "k", "a", &[]);
    let h = h.ok(1, "put", "k", "a", None);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[("n1", 1)]);
    let h = h.get(3, "k").ok_get(
        3,
        "k",
        &[
            S::valued("a", json!("not-a")).with(ver(Some(("n1", 1)), &[])),
            sib("b", ("n2", 1), &[("n1", 1)]),
        ],
    );
    let h = h.put(4, "other", "x", &[]).ok(4, "put", "other", "x", None);
    let h = finals(h, &[S::new("a"), sib("b", ("n2", 1), &[("n1", 1)])]);
    let h = h.replica("other", "n1", &[S::new("x"), sib("a", ("n1", 1), &[])]);
    let r = h.check();
    assert_eq!(kinds(&r), ["phantom-read"], "{}", summary(&r));

    // v1: a delete whose dot is known only from a phantom sibling is observed by no context.
    let h = H::new().config_v1("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(1, "k", "d", &["a"])
        .ok(1, "delete", "k", "d", None);
    let h = h.get(2, "k").ok_get(
        2,
        "k",
        &[S::valued("d", json!("x")).with(ver(Some(("n1", 2)), &[("n1", 1)]))],
    );
    let h = h.put_ctx(2, "k", "b", &[], json!("n1=2"));
    let h = h.ok(2, "put", "k", "b", Some(ver(Some(("n1", 3)), &[("n1", 2)])));
    let r = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]).check();
    assert_a_and_d_lost(&r, "");
}

#[test]
fn a_failed_delete_whose_tombstone_shows_up_is_visible() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(2, "k", "d", &["a"])
        .end(2, "fail", "delete", "k", "d");
    let r = finals(
        h,
        &[sib("a", ("n1", 1), &[]), tomb("d", ("n1", 2), &[("n1", 1)])],
    )
    .check();
    assert_eq!(kinds(&r), ["failed-write-visible"], "{}", summary(&r));
}

// ---- Values compare as JSON values ----

#[test]
fn values_compare_as_json_values() {
    // The same value with another key order, number spelling and whitespace, in a read and in the
    // replica states: no phantom, no divergence.
    let text = r#"{"index":1,"time":1,"process":"harness","type":"info","f":"config","value":{"history_format":2,"n":3,"r":2,"w":2}}
{"index":2,"time":2,"process":1,"type":"invoke","f":"put","key":"k","write":"w","value":{"a":1,"b":[1.5,"x"]},"observed":[]}
{"index":3,"time":3,"process":1,"type":"ok","f":"put","key":"k","write":"w","dot":["n1",1],"clock":{}}
{"index":4,"time":4,"process":2,"type":"invoke","f":"get","key":"k"}
{"index":5,"time":5,"process":2,"type":"ok","f":"get","key":"k","values":[{"write":"w","value":{ "b" : [ 15e-1 , "x" ] , "a" : 1.0 },"dot":["n1",1],"clock":{}}]}
{"index":6,"time":6,"process":"harness","type":"info","f":"phase","value":"final"}
{"index":7,"time":7,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n1","values":[{"write":"w","value":{"b":[1.50,"x"],"a":1e0},"dot":["n1",1],"clock":{}}]}
{"index":8,"time":8,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n2","values":[{"write":"w","value":{"a":1,"b":[1.5,"x"]},"dot":["n1",1],"clock":{}}]}
"#;
    let r = dynamo_checker::check(
        &dynamo_checker::parse_reader(text.as_bytes())
            .unwrap()
            .history,
    );
    valid(&r);
    // A different value is a phantom.
    let other = text.replacen(r#"[ 15e-1 , "x" ]"#, r#"[ 15e-2 , "x" ]"#, 1);
    let r = dynamo_checker::check(
        &dynamo_checker::parse_reader(other.as_bytes())
            .unwrap()
            .history,
    );
    assert_eq!(kinds(&r), ["phantom-read"]);
    assert_eq!(phantoms(&r)[0].1, "wrong-value");
}

// ---- divergence: sets of (write, version) ----

#[test]
fn divergence_compares_sets_of_write_and_version() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[]);
    let (a, b) = (sib("a", ("n1", 1), &[]), sib("b", ("n2", 1), &[]));
    // Order and repeats do not count.
    let h2 = h
        .clone()
        .phase("final")
        .replica("k", "n1", &[a.clone(), b.clone()])
        .replica("k", "n2", &[b.clone(), a.clone(), b.clone()]);
    valid(&h2.check());
    // The same write ids at another version do.
    let h3 = h
        .phase("final")
        .replica("k", "n1", &[a.clone(), b.clone()])
        .replica("k", "n2", &[a, sib("b", ("n2", 1), &[("n1", 1)])]);
    let r = h3.check();
    assert_eq!(kinds(&r), ["divergence"], "{}", summary(&r));
}

#[test]
fn divergence_with_tombstone_gc_ignores_tombstones() {
    for (config, diverges) in [(gc(), false), (H::new().config("register"), true)] {
        let h = put_ok(config, 1, "a", &[], ("n1", 1), &[]);
        let h = del_ok(h, 2, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        let h = put_ok(h, 3, "b", &[], ("n2", 1), &[]);
        let b = sib("b", ("n2", 1), &[]);
        let h = h
            .phase("final")
            .replica("k", "n1", &[b.clone(), tomb("d", ("n1", 2), &[("n1", 1)])])
            .replica("k", "n2", &[b]);
        let r = h.check();
        assert_eq!(
            r.anomalies.contains_key(&Kind::Divergence),
            diverges,
            "{}",
            summary(&r)
        );
    }
}

// ---- quorum-read-miss ----

/// What happens between a write's ack and a read.
type Between = Box<dyn FnOnce(H) -> H>;

/// The cluster: n1..n3 (the replicas of k) and n4, which holds no replica of k. (A fault that
/// names something that is no node of the history may have hit any node.)
fn strict() -> H {
    H::new().config_with(
        "register",
        json!({"nodes": ["n1", "n2", "n3", "n4"], "node": {"sloppy_quorum": false}}),
    )
}

/// a acknowledged, `between` happens, then a read that returns nothing.
fn missed_read(config: H, between: impl FnOnce(H) -> H) -> Results {
    let h = put_ok(config, 1, "a", &[], ("n1", 1), &[]);
    let h = between(h);
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    finals(h, &[sib("a", ("n1", 1), &[])]).check()
}

#[test]
fn quorum_read_miss_a_strict_quorum_read_that_misses_an_acknowledged_write() {
    let r = missed_read(strict(), |h| h.nemesis("partition-start"));
    assert_eq!(
        kinds(&r),
        ["quorum-read-miss", "stale-read"],
        "{}",
        summary(&r)
    );
    let Finding::QuorumReadMiss(q) = findings(&r, Kind::QuorumReadMiss).next().unwrap() else {
        panic!()
    };
    assert_eq!(
        (q.write.write.as_str(), q.write.acked_at, q.missed_count),
        ("a", Some(3_000_000), 1)
    );
    assert_eq!((q.read.process, q.read.siblings.len()), (Some(2), 0));
    assert_eq!((q.n, q.r, q.w), (3, 2, 2));
    assert_eq!(q.replicas, ["n1", "n2", "n3"]);
    assert_eq!(
        q.faults_between
            .iter()
            .map(|f| f.f.as_str())
            .collect::<Vec<_>>(),
        ["partition-start"]
    );
    let v = serde_json::to_value(&r).unwrap();
    let f = &v["anomalies"]["quorum-read-miss"][0];
    assert_eq!(
        (&f["write"], &f["acked_at"]),
        (&json!("a"), &json!(3_000_000))
    );
}

#[test]
fn quorum_read_miss_only_where_the_config_promises_it() {
    let sloppy = H::new().config("register");
    let absent = H::new().config_v1("register");
    let small = H::new().config_with(
        "register",
        json!({"r": 1, "w": 2, "node": {"sloppy_quorum": false}}),
    );
    for config in [sloppy, absent, small] {
        let r = missed_read(config, |h| h);
        assert_eq!(kinds(&r), ["stale-read"], "{}", summary(&r));
    }
}

#[test]
fn quorum_read_miss_is_excused_by_a_fault_on_a_replica_between_ack_and_read() {
    let interval = json!({"node": {"sloppy_quorum": false}, "fsync": {"policy": "interval", "interval_ms": 100}});
    let cases: Vec<(&str, H, Between)> = vec![
        ("wipe", strict(), Box::new(|h| h.nemesis_on("wipe", "n2"))),
        ("disk", strict(), Box::new(|h| h.nemesis_on("disk", "n3"))),
        ("power", strict(), Box::new(|h| h.nemesis_on("power", "n1"))),
        ("join", strict(), Box::new(|h| h.nemesis_on("join", "n9"))),
        ("leave", strict(), Box::new(|h| h.nemesis_on("leave", "n9"))),
        (
            "crash without fsync",
            H::new().config_with("register", interval),
            Box::new(|h| h.nemesis_on("crash", "n1")),
        ),
        (
            "wipe of an unnamed node",
            strict(),
            Box::new(|h| h.raw(json!({"process":"nemesis","type":"info","f":"wipe","value":{}}))),
        ),
    ];
    for (name, config, between) in cases {
        let r = missed_read(config, between);
        assert_eq!(kinds(&r), ["stale-read"], "{name}: {}", summary(&r));
    }
}

#[test]
fn quorum_read_miss_is_not_excused_by_faults_that_lose_nothing() {
    let cases: Vec<(&str, Between, Vec<&str>)> = vec![
        (
            "a wipe of a node that is no replica",
            Box::new(|h| h.nemesis_on("wipe", "n4")),
            vec!["wipe"],
        ),
        (
            "a crash with fsync always",
            Box::new(|h| h.nemesis_on("crash", "n2").nemesis_on("restart", "n2")),
            vec!["crash", "restart"],
        ),
        (
            "pauses, skews and unknown faults",
            Box::new(|h| {
                h.nemesis_on("pause-start", "n1")
                    .nemesis_on("pause-stop", "n1")
                    .nemesis_on("frobnicate", "n1")
            }),
            vec!["pause-start", "pause-stop", "frobnicate"],
        ),
    ];
    for (name, between, faults) in cases {
        let r = missed_read(strict(), between);
        assert!(
            r.anomalies.contains_key(&Kind::QuorumReadMiss),
            "{name}: {}",
            summary(&r)
        );
        let Finding::QuorumReadMiss(q) = findings(&r, Kind::QuorumReadMiss).next().unwrap() else {
            panic!()
        };
        let between: Vec<&str> = q.faults_between.iter().map(|f| f.f.as_str()).collect();
        assert_eq!(between, faults, "{name}");
    }
    // A wipe before the ack excuses nothing either.
    let h = strict().nemesis_on("wipe", "n2");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    assert!(r.anomalies.contains_key(&Kind::QuorumReadMiss));
}

#[test]
fn quorum_read_miss_a_descendant_or_a_concurrent_read_is_no_miss() {
    // The read returns b, which observed a.
    let h = put_ok(strict(), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = h
        .get(3, "k")
        .ok_get(3, "k", &[sib("b", ("n1", 2), &[("n1", 1)])]);
    valid(&finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check());
    // The read was invoked before the ack: it need not see the write.
    let h = strict().put(1, "k", "a", &[]).get(2, "k");
    let h = h.ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])));
    let h = h.ok_get(2, "k", &[]);
    valid(&finals(h, &[sib("a", ("n1", 1), &[])]).check());
}

#[test]
fn quorum_read_miss_of_a_delete_in_v2_and_its_v1_exemption() {
    let v1_strict = H::new().raw(json!({"process":"harness","type":"info","f":"config",
        "value":{"n":3,"r":2,"w":2,"workload":"register","node":{"sloppy_quorum":false}}}));
    for (config, v2) in [(strict(), true), (v1_strict, false)] {
        let h = put_ok(config, 1, "a", &[], ("n1", 1), &[]);
        let h = del_ok(h, 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        // The read returns neither the tombstone nor anything after it.
        let h = h.get(2, "k").ok_get(2, "k", &[]);
        let r = finals(h, &[tomb("d", ("n1", 2), &[("n1", 1)])]).check();
        if v2 {
            let Finding::QuorumReadMiss(q) = findings(&r, Kind::QuorumReadMiss).next().unwrap()
            else {
                panic!("{}", summary(&r))
            };
            assert_eq!(
                (q.write.write.as_str(), q.missed.clone()),
                ("a", vec!["a".to_owned(), "d".to_owned()])
            );
        } else {
            // v1: a read is not held to a delete invoked before it completed, nor to what it removed.
            valid(&r);
        }
    }
}

#[test]
fn quorum_read_miss_v1_a_failed_delete_excuses_no_read() {
    // "fail: it certainly did not take effect": the delete removed nothing, so the v1 substitute
    // (a read is not held to what a delete invoked before it removed) does not apply to it.
    let v1_strict = H::new().raw(json!({"process":"harness","type":"info","f":"config",
        "value":{"n":3,"r":2,"w":2,"workload":"register","node":{"sloppy_quorum":false}}}));
    let h = put_ok(v1_strict, 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(3, "k", "d", &["a"])
        .end(3, "fail", "delete", "k", "d");
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    let Finding::QuorumReadMiss(q) = findings(&r, Kind::QuorumReadMiss).next().unwrap() else {
        panic!("{}", summary(&r))
    };
    assert_eq!((q.write.write.as_str(), q.missed_count), ("a", 1));
}

#[test]
fn quorum_read_miss_reads_n_r_w_as_json_numbers() {
    // `3.0` is the JSON number 3 (values compare as JSON values; `history_format` 2.0 is 2).
    let spelt = H::new().config_with(
        "register",
        json!({"n": 3.0, "r": 2e0, "w": 2.0, "node": {"sloppy_quorum": false}}),
    );
    let r = missed_read(spelt, |h| h);
    assert_eq!(
        kinds(&r),
        ["quorum-read-miss", "stale-read"],
        "{}",
        summary(&r)
    );
}

// ---- Versions: counters at the limit ----

#[test]
fn a_clock_entry_at_the_largest_counter_is_ordered_not_a_panic() {
    // A clock is node -> counter (history-format.md, "Versions"), and a counter is any integer the
    // line holds: u64::MAX is one. a's clock covers every event of n1 up to u64::MAX; b observed a and
    // its version covers a's, c is a concurrent blind put. A correct history is valid, not unknown
    // because the order of versions overflowed.
    const MAX: u64 = u64::MAX;
    let h = put_ok(
        H::new().config("register"),
        1,
        "a",
        &[],
        ("n1", 3),
        &[("n1", MAX)],
    );
    let h = put_ok(h, 1, "b", &["a"], ("n2", 1), &[("n1", MAX)]);
    let h = put_ok(h, 2, "c", &[], ("n3", 1), &[]);
    let b = sib("b", ("n2", 1), &[("n1", MAX)]);
    let c = sib("c", ("n3", 1), &[]);
    valid(&finals(h.clone(), &[b.clone(), c]).check());

    // The same history where c is lost: the verdict is false and names c, not unknown.
    let r = finals(h.clone(), &[b]).check();
    assert_eq!(r.valid, Validity::False, "{}", summary(&r));
    assert_eq!(pairs(&lost(&r)), [("c", "observed")], "{}", summary(&r));

    // And a store whose version for b does not cover a's (n1 one short of the limit) regressed.
    let h = put_ok(
        H::new().config("register"),
        1,
        "a",
        &[],
        ("n1", 3),
        &[("n1", MAX)],
    );
    let h = put_ok(h, 1, "b", &["a"], ("n2", 1), &[("n1", MAX - 1)]);
    let r = finals(h, &[sib("b", ("n2", 1), &[("n1", MAX - 1)])]).check();
    assert_eq!(kinds(&r), ["clock-regression"], "{}", summary(&r));
}

#[test]
fn a_dot_with_counter_zero_is_an_event_no_clock_covers() {
    // history-format.md, "Versions": H(v) is "the events of `clock`, plus its `dot`", and a clock
    // stands for {(node, 1..counter)}: no clock holds (n1, 0). So a version dotted (n1, 0) precedes
    // no version without that dot, and two blind puts, (n1, 0) and (n2, 1), are concurrent.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 0), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[("n1", 4)]);
    let a = sib("a", ("n1", 0), &[]);
    let b = sib("b", ("n2", 1), &[("n1", 4)]);
    valid(&finals(h, &[a.clone(), b.clone()]).check());

    // b observed a, but b's clock cannot cover (n1, 0): the store did not record what the client
    // handed it.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 0), &[]);
    let h = put_ok(h, 2, "b", &["a"], ("n2", 1), &[("n1", 4)]);
    let r = finals(h, &[b]).check();
    assert_eq!(kinds(&r), ["clock-regression"], "{}", summary(&r));
}

// ---- Nemesis names ----

#[test]
fn every_nemesis_name_is_accepted_and_unknown_ones_are_ignored() {
    let mut h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    for f in [
        "power",
        "disk",
        "pause-start",
        "pause-stop",
        "join",
        "leave",
        "loss-start",
        "loss-stop",
        "slow-start",
        "slow-stop",
        "skew",
        "something-new",
    ] {
        h = h.nemesis(f);
    }
    let r = finals(h, &[sib("a", ("n1", 1), &[])]).check();
    valid(&r);
    assert_eq!(r.stats.nemesis.len(), 12);
    assert_eq!(r.stats.nemesis["something-new"], 1);
}

// ---- Figures ----

#[test]
fn siblings_per_read_count_client_phase_reads_of_keys_that_exist() {
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[]);
    let (a, b) = (sib("a", ("n1", 1), &[]), sib("b", ("n2", 1), &[]));
    let h = h.get(3, "k").ok_get(3, "k", &[a.clone(), b.clone()]); // counted: 2
    let h = h.get(3, "j").ok_get(3, "j", &[]); // a missing key
    let h = h.get(3, "k").ok_get(3, "k", std::slice::from_ref(&a)); // counted: 1
    let h = h
        .get(3, "i")
        .ok_get(3, "i", &[tomb("gone", ("n1", 9), &[])]); // only a tombstone
    let h = h
        .phase("final")
        .get(4, "k")
        .ok_get(4, "k", &[a.clone(), b.clone()]);
    let r = h.replicas("k", &[a, b]).check();
    let s = &r.stats.siblings_per_read;
    assert_eq!(
        (
            s.reads,
            s.counts["1"],
            s.counts["2"],
            s.missing_key_reads,
            s.final_reads
        ),
        (2, 1, 1, 2, 1)
    );
    assert_eq!(s.shares["2"], 0.5);
    assert!(!s.counts.contains_key("0"));
}

#[test]
fn stale_reads_are_ordered_by_history_order_within_one_tick() {
    // The ack and the read's invoke fall in the same millisecond; the read comes later in the
    // history, so it started after the ack.
    let h = H::new().config("register");
    let h = h.put(1, "k", "a", &[]).at(1_000_000);
    let h = h
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .at(2_000_000);
    let h = h
        .get(2, "k")
        .at(2_000_000)
        .ok_get(2, "k", &[])
        .at(3_000_000);
    let h = h
        .get(2, "k")
        .at(5_000_000)
        .ok_get(2, "k", &[sib("a", ("n1", 1), &[])])
        .at(6_000_000);
    let h = h.phase("final").at(7_000_000);
    let r = h.replicas("k", &[sib("a", ("n1", 1), &[])]).check();
    assert_eq!(kinds(&r), ["stale-read"], "{}", summary(&r));
    let w = r.stats.consistency_window_ns.as_ref().unwrap();
    assert_eq!((w.quantiles.unwrap().count, w.never), (1, 0));
    // A read invoked before the ack (earlier in the history, same tick) is not stale.
    let h = H::new().config("register");
    let h = h.put(1, "k", "a", &[]).at(1_000_000);
    let h = h.get(2, "k").at(2_000_000);
    let h = h
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .at(2_000_000);
    let h = h.ok_get(2, "k", &[]).at(3_000_000).phase("final");
    let r = h.replicas("k", &[sib("a", ("n1", 1), &[])]).check();
    valid(&r);
    assert!(kinds(&r).is_empty(), "{}", summary(&r));
}

/// A key with no replica-state event has no replica in the page's sense ("a node with a
/// `replica-state` event for it"), so a fault on a node excuses none of its reads; a `power`
/// fault, a `join` or `leave`, and a fault on something the config's list shows is no node (taken
/// to hit every node) still do, and then the missing final state makes the verdict unknown. (An
/// earlier reading counted every node as a replica, and a read that missed an acknowledged write
/// after a wipe of some node passed as unknown.)
#[test]
fn quorum_read_miss_on_a_key_with_no_replica_state_has_no_replica_a_fault_could_hit() {
    let read_after = |between: Option<(&str, &str)>, fsync: &str| {
        let config = H::new().config_with(
            "register",
            json!({"nodes": ["n1", "n2", "n3", "n4"], "node": {"sloppy_quorum": false},
                "fsync": {"policy": fsync}}),
        );
        let h = put_ok(config, 1, "a", &[], ("n1", 1), &[]);
        let h = match between {
            Some((f, node)) => h.nemesis_on(f, node),
            None => h,
        };
        let h = h.get(2, "k").ok_get(2, "k", &[]);
        h.phase("final").check()
    };
    for (f, node, fsync) in [
        ("wipe", "n2", "always"),
        ("disk", "n1", "always"),
        ("crash", "n3", "none"),
    ] {
        let r = read_after(Some((f, node)), fsync);
        assert!(
            r.anomalies.contains_key(&Kind::QuorumReadMiss),
            "{f} {node}: {}",
            summary(&r)
        );
        assert_eq!(r.valid, Validity::False, "{f} {node}");
    }
    for (f, node, fsync) in [
        ("wipe", "n7", "always"),
        ("power", "n1", "always"),
        ("join", "n9", "always"),
        ("leave", "n9", "always"),
    ] {
        let r = read_after(Some((f, node)), fsync);
        assert!(
            !r.anomalies.contains_key(&Kind::QuorumReadMiss),
            "{f} {node}: {}",
            summary(&r)
        );
        assert_eq!(r.valid, Validity::Unknown, "the final state is missing");
    }
    // A crash with fsync always destroys nothing that was acknowledged: no excuse.
    for between in [None, Some(("crash", "n3"))] {
        let r = read_after(between, "always");
        assert!(
            r.anomalies.contains_key(&Kind::QuorumReadMiss),
            "{between:?}: {}",
            summary(&r)
        );
        assert_eq!(r.valid, Validity::False, "{between:?}");
    }
}

#[test]
fn cart_a_phantom_item_inherited_from_an_observed_value_or_added_to_one_is_still_a_phantom() {
    // p wrote a bogus item; q, built on p, carries it on; r, built on a clean value, adds another.
    let h = cart_put(cart(), 1, "p", json!(["p", "zz"]), &[], ("n1", 1));
    let h = cart_put(h, 2, "q", json!(["p", "q", "zz"]), &["p"], ("n1", 2));
    let h = cart_put(h, 3, "a", json!(["a"]), &[], ("n2", 1));
    let h = cart_put(h, 4, "r", json!(["a", "r", "yy"]), &["a"], ("n2", 2));
    let h = cart_put(h, 5, "s", json!(["a", "r", "s", "yy"]), &["r"], ("n2", 3));
    let h = cart_put(h, 6, "t", json!(["a", "t"]), &["a"], ("n3", 1));
    let values = [
        cart_sib("q", json!(["p", "q", "zz"]), ("n1", 2)),
        cart_sib("s", json!(["a", "r", "s", "yy"]), ("n2", 3)),
        cart_sib("t", json!(["a", "t"]), ("n3", 1)),
    ];
    let h = h.get(7, "k").ok_get(7, "k", &values);
    let r = finals(h, &[]).check();
    let read: Vec<(String, Vec<String>)> = phantoms(&r)
        .into_iter()
        .filter(|p| p.3 == "read")
        .map(|p| (p.0, p.2))
        .collect();
    assert_eq!(
        read,
        [
            ("q".to_owned(), vec!["zz".to_owned()]),
            ("s".to_owned(), vec!["yy".to_owned()])
        ],
        "{}",
        summary(&r)
    );
}

#[test]
fn t_visibility_pairs_each_client_read_with_the_latest_ack_before_it() {
    let ms = 1_000_000;
    let a = sib("a", ("n1", 1), &[]);
    let b = sib("b", ("n1", 2), &[("n1", 1)]);
    let h = H::new().config("register");
    // A read before any ack pairs with nothing.
    let h = h.get(9, "k").at(ms).ok_get(9, "k", &[]).at(ms);
    let h = h.put(1, "k", "a", &[]).at(ms);
    let h = h
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .at(2 * ms);
    // In the ack's own tick, after it: t = 0, stale.
    let h = h.get(2, "k").at(2 * ms).ok_get(2, "k", &[]).at(3 * ms);
    // 3 ms later, fresh: it sees a.
    let h = h
        .get(2, "k")
        .at(5 * ms)
        .ok_get(2, "k", std::slice::from_ref(&a))
        .at(6 * ms);
    let h = h.put(1, "k", "b", &["a"]).at(6 * ms);
    let h = h
        .ok(1, "put", "k", "b", Some(ver(Some(("n1", 2)), &[("n1", 1)])))
        .at(7 * ms);
    // 1 ms after b's ack, still showing a: paired with b (the latest), stale.
    let h = h
        .get(2, "k")
        .at(8 * ms)
        .ok_get(2, "k", std::slice::from_ref(&a))
        .at(9 * ms);
    // 20 ms after, b: fresh. Final reads are not paired.
    let h = h
        .get(2, "k")
        .at(27 * ms)
        .ok_get(2, "k", std::slice::from_ref(&b))
        .at(28 * ms);
    let h = h
        .phase("heal")
        .at(30 * ms)
        .phase("final")
        .get(3, "k")
        .ok_get(3, "k", &[])
        .replicas("k", std::slice::from_ref(&b));
    let r = h.check();
    let v = r.stats.t_visibility.as_ref().expect("t-visibility");
    assert_eq!((v.pairs, v.fresh), (4, 2), "{v:?}");
    let bin = |from_ms: u64| {
        let b = v
            .bins
            .iter()
            .find(|b| b.from_us == from_ms * 1_000)
            .unwrap();
        (b.pairs, b.fresh)
    };
    assert_eq!(
        [bin(0), bin(1), bin(3), bin(20)],
        [(1, 0), (1, 0), (1, 1), (1, 1)]
    );
    let json = serde_json::to_value(&r.stats).unwrap();
    assert_eq!(json["t_visibility"]["bins"][0]["fresh_share"], 0.0);
}
