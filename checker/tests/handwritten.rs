//! A hand-written pass over shared/history-format.md (v2): for each rule, the smallest history that
//! must be flagged and one, differing in one detail, that must not. Each test is named for the rule
//! it holds the checker to and asserts the exact verdict, anomaly types and (where the rule is about
//! them) warnings and witnesses. Histories are written from the page alone, read literally.

mod support;

use dynamo_checker::{Finding, Kind, ParseError, Results, Validity, parse_reader, summary};
use serde_json::{Value, json};
use support::{H, S, del_ok, finals, put_ok, sib, tomb, ver};

// ---- Helpers ----

/// Asserts the verdict and the exact anomaly types.
#[track_caller]
fn expect(r: &Results, valid: Validity, anomalies: &[&str]) {
    let got: Vec<&str> = r.anomalies.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        (r.valid, got.as_slice()),
        (valid, anomalies),
        "{}",
        summary(r)
    );
}

/// Asserts that the history is valid: no anomaly, verdict true.
#[track_caller]
fn ok(r: &Results) {
    expect(r, Validity::True, &[]);
}

/// Asserts the verdict false with exactly these anomaly types.
#[track_caller]
fn bad(r: &Results, anomalies: &[&str]) {
    expect(r, Validity::False, anomalies);
}

/// The warning types of a result.
fn warnings(r: &Results) -> Vec<&'static str> {
    r.warnings.keys().map(|k| k.as_str()).collect()
}

fn all(r: &Results, kind: Kind) -> Vec<&Finding> {
    r.anomalies
        .get(&kind)
        .or_else(|| r.warnings.get(&kind))
        .into_iter()
        .flatten()
        .collect()
}

/// The (write, rule) of every lost-write finding.
fn lost(r: &Results) -> Vec<(String, &'static str)> {
    all(r, Kind::LostWrite)
        .into_iter()
        .map(|f| match f {
            Finding::LostWrite(l) => (l.write.write.clone(), l.rule),
            _ => unreachable!(),
        })
        .collect()
}

fn lost_ids(r: &Results) -> Vec<String> {
    lost(r).into_iter().map(|(w, _)| w).collect()
}

/// A register put of "k" acknowledged with a dotted version on n1.
fn a(h: H) -> H {
    put_ok(h, 1, "a", &[], ("n1", 1), &[])
}

fn sa() -> S {
    sib("a", ("n1", 1), &[])
}

fn reg() -> H {
    H::new().config("register")
}

fn gc() -> H {
    H::new().config_with("register", json!({"tombstone_gc": true}))
}

fn cart() -> H {
    H::new().config("cart")
}

fn cart_gc() -> H {
    H::new().config_with("cart", json!({"tombstone_gc": true}))
}

/// A cart put of "k" with its value, acknowledged with the dot (n1, counter) over the clock
/// {n1: counter - 1} when it observed something (its client's context), else over nothing.
fn cput(h: H, p: u64, w: &str, value: Value, observed: &[&str], counter: u64) -> H {
    let version = cver(counter, !observed.is_empty());
    h.put_value(p, "k", w, value, observed)
        .ok(p, "put", "k", w, Some(version))
}

fn cver(counter: u64, over: bool) -> serde_json::Map<String, Value> {
    if over {
        ver(Some(("n1", counter)), &[("n1", counter - 1)])
    } else {
        ver(Some(("n1", counter)), &[])
    }
}

/// The sibling of a cart put made by `cput` (`over`: it observed something).
fn csib(w: &str, value: Value, counter: u64, over: bool) -> S {
    S::valued(w, value).with(cver(counter, over))
}

// ---- lost-write: the general rule ----

#[test]
fn lost_write_an_ok_put_absent_from_every_replica_is_lost() {
    let r = finals(a(reg()), &[]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("a".to_owned(), "observed")]);
    // The same put present on every replica.
    ok(&finals(a(reg()), &[sa()]).check());
}

#[test]
fn lost_write_present_on_some_replica_is_enough() {
    // "present as a sibling ... on some replica": one replica holding it is no loss (the replicas
    // then diverge, which is its own anomaly).
    let h = a(reg()).phase("heal").phase("final");
    let r = h
        .replica("k", "n1", &[sa()])
        .replica("k", "n2", &[])
        .replica("k", "n3", &[])
        .check();
    bad(&r, &["divergence"]);
}

#[test]
fn lost_write_an_ancestor_by_observed_of_a_present_write_is_not_lost() {
    let with = |observed: &[&str]| {
        let h = a(reg());
        let h = put_ok(h, 2, "b", observed, ("n1", 2), &[("n1", 1)]);
        finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check()
    };
    ok(&with(&["a"]));
    // b's client never listed a: the store's order is no ground truth.
    let r = with(&[]);
    bad(&r, &["lost-write", "false-dominance"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn lost_write_ancestry_by_observed_is_transitive() {
    let with = |c_observed: &[&str]| {
        let h = a(reg());
        let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
        let h = put_ok(h, 3, "c", c_observed, ("n1", 3), &[("n1", 2)]);
        finals(h, &[sib("c", ("n1", 3), &[("n1", 2)])]).check()
    };
    ok(&with(&["b"]));
    let r = with(&[]);
    bad(&r, &["lost-write", "false-dominance"]);
    assert_eq!(lost_ids(&r), ["a", "b"]);
}

#[test]
fn lost_write_an_info_write_is_never_lost_but_excuses_what_it_observed_when_present() {
    // b ended info and is absent: not an ok write, so not lost.
    let h = a(reg());
    let h = h.put(2, "k", "b", &["a"]).end(2, "info", "put", "k", "b");
    ok(&finals(h.clone(), &[sa()]).check());
    // b is present and observed a: a is an ancestor of a present write.
    ok(&finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check());
    // The same, but b was blind: a is lost.
    let h = a(reg());
    let h = h.put(2, "k", "b", &[]).end(2, "info", "put", "k", "b");
    let r = finals(h, &[sib("b", ("n2", 1), &[])]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn lost_write_a_pending_write_is_not_judged() {
    // The history ends before b completes: as unknown as info.
    let h = a(reg()).put(2, "k", "b", &["a"]);
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn lost_write_a_present_failed_write_excuses_its_ancestors_but_is_visible() {
    let h = a(reg());
    let h = h.put(2, "k", "f", &["a"]).end(2, "fail", "put", "k", "f");
    let r = finals(h.clone(), &[S::new("f")]).check();
    bad(&r, &["failed-write-visible"]);
    // Absent, the failed write excuses nothing: a is lost.
    let r = finals(h, &[]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn lost_write_a_delete_is_present_as_its_tombstone() {
    let h = del_ok(a(reg()), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    ok(&finals(h.clone(), &[tomb("d", ("n1", 2), &[("n1", 1)])]).check());
    // No tombstone: the delete and what it deleted are lost.
    let r = finals(h.clone(), &[]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(
        lost(&r),
        [("a".to_owned(), "observed"), ("d".to_owned(), "observed")]
    );
    // The delete's id with a value is not its tombstone: a phantom, and d and a are lost.
    let wrong = S::valued("d", json!("d")).with(ver(Some(("n1", 2)), &[("n1", 1)]));
    let r = finals(h, &[wrong]).check();
    bad(&r, &["lost-write", "phantom-read"]);
    assert_eq!(lost_ids(&r), ["a", "d"]);
}

#[test]
fn lost_write_a_put_named_with_another_value_is_not_present() {
    // "present as a sibling": a sibling that names a with another value is a phantom, not a.
    let wrong = S::valued("a", json!("A")).with(ver(Some(("n1", 1)), &[]));
    let r = finals(a(reg()), &[wrong]).check();
    bad(&r, &["lost-write", "phantom-read"]);
    // The same value spelled differently is the same JSON value.
    let h = reg()
        .put_value(1, "k", "a", json!({"x": 1, "y": [1.5]}), &[])
        .ok(1, "put", "k", "a", None);
    let same = S::valued(
        "a",
        serde_json::from_str(r#"{"y":[15e-1],"x":1.0}"#).unwrap(),
    );
    ok(&finals(h, &[same]).check());
}

#[test]
fn lost_write_the_final_state_is_replica_states_not_final_reads() {
    let h = a(reg()).phase("heal").phase("final");
    let h = h.get(2, "k").ok_get(2, "k", &[sa()]);
    let r = h.replicas("k", &[]).check();
    bad(&r, &["lost-write"]);
}

#[test]
fn lost_write_a_tombstone_of_a_delete_that_observed_nothing_excuses_nothing() {
    // A blind delete leaves a tombstone; a write it did not observe is not its ancestor.
    let h = del_ok(a(reg()), 2, "d", &[], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[tomb("d", ("n1", 2), &[("n1", 1)])]).check();
    bad(&r, &["lost-write", "false-dominance"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn lost_write_observed_names_are_per_key() {
    // The same write id "a" cannot be observed from another key: b on key j lists "a", a write of
    // key k. a is no ancestor of b, so k's empty final state loses it. (And the read of j that b's
    // list records returned a write id no put on j invoked: a phantom read.)
    let h = a(reg());
    let h = h
        .put(2, "j", "b", &["a"])
        .ok(2, "put", "j", "b", Some(ver(Some(("n2", 1)), &[])));
    let h = h.phase("heal").phase("final").replicas("k", &[]);
    let r = h.replicas("j", &[sib("b", ("n2", 1), &[])]).check();
    bad(&r, &["lost-write", "phantom-read"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn lost_write_a_key_present_elsewhere_does_not_count() {
    // a of key k is held only in key j's final state: a phantom there, and lost on k.
    let h = a(reg()).phase("heal").phase("final");
    let r = h.replicas("k", &[]).replicas("j", &[sa()]).check();
    bad(&r, &["lost-write", "phantom-read"]);
}

// ---- lost-write with tombstone_gc ----

#[test]
fn tombstone_gc_a_collected_tombstone_is_no_loss() {
    let h = |config: H| del_ok(a(config), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    ok(&finals(h(gc()), &[]).check());
    let r = finals(h(reg()), &[]).check();
    bad(&r, &["lost-write"]);
}

#[test]
fn tombstone_gc_a_delete_whose_deleted_value_came_back_is_lost() {
    let h = del_ok(a(gc()), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[sa()]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("d".to_owned(), "delete")]);
    let Finding::LostWrite(l) = all(&r, Kind::LostWrite)[0] else {
        panic!()
    };
    assert_eq!(l.resurrected, ["a"]);
}

#[test]
fn tombstone_gc_a_transitively_observed_value_that_came_back_loses_the_delete() {
    // a <- b <- d; a comes back. d observed a transitively: lost. b is an ancestor of d, which did
    // not end fail: excused although nothing of it is left.
    let h = a(gc());
    let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = del_ok(h, 2, "d", &["b"], ("n1", 3), &[("n1", 2)]);
    let r = finals(h, &[sa()]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("d".to_owned(), "delete")]);
}

#[test]
fn tombstone_gc_an_unrelated_value_present_does_not_lose_the_delete() {
    // c is present but d never observed it: d's deleted value did not come back.
    let h = del_ok(a(gc()), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    let h = put_ok(h, 2, "c", &[], ("n2", 1), &[]);
    ok(&finals(h, &[sib("c", ("n2", 1), &[])]).check());
}

#[test]
fn tombstone_gc_excuses_ancestors_of_a_delete_that_did_not_end_fail() {
    let with = |outcome: &str| {
        let h = a(gc()).delete(2, "k", "d", &["a"]);
        let h = if outcome == "ok" {
            h.ok(2, "delete", "k", "d", None)
        } else {
            h.end(2, outcome, "delete", "k", "d")
        };
        finals(h, &[]).check()
    };
    ok(&with("ok"));
    ok(&with("info"));
    let r = with("fail");
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn tombstone_gc_a_pending_delete_excuses_like_info() {
    // A delete the history ends before completing "did not end fail".
    let h = a(gc()).delete(2, "k", "d", &["a"]);
    ok(&finals(h, &[]).check());
}

#[test]
fn without_tombstone_gc_an_info_delete_without_its_tombstone_excuses_nothing() {
    let h = a(reg())
        .delete(2, "k", "d", &["a"])
        .end(2, "info", "delete", "k", "d");
    let r = finals(h, &[]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

#[test]
fn tombstone_gc_tombstones_do_not_count_in_divergence() {
    let h = |config: H| {
        let h = del_ok(a(config), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        h.phase("heal")
            .phase("final")
            .replica("k", "n1", &[tomb("d", ("n1", 2), &[("n1", 1)])])
            .replica("k", "n2", &[])
            .replica("k", "n3", &[])
    };
    ok(&h(gc()).check());
    bad(&h(reg()).check(), &["divergence"]);
}

#[test]
fn tombstone_gc_may_be_under_node_options() {
    let config = H::new().config_with("register", json!({"node": {"tombstone_gc": true}}));
    let h = del_ok(a(config), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
    ok(&finals(h, &[]).check());
}

// ---- lost-write: the cart rule ----

#[test]
fn cart_an_item_merged_into_a_present_value_survives() {
    let with = |b_value: Value| {
        let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
        let h = cput(h, 2, "b", b_value.clone(), &["a"], 2);
        finals(h, &[csib("b", b_value, 2, true)]).check()
    };
    ok(&with(json!(["a", "b"])));
    // b observed a but dropped its item: a's item is in no final value, and no delete lies between.
    let r = with(json!(["b"]));
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("a".to_owned(), "cart-item")]);
}

#[test]
fn cart_a_present_delete_lies_between() {
    let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
    let h = h.delete(2, "k", "d", &["a"]).ok(
        2,
        "delete",
        "k",
        "d",
        Some(ver(Some(("n1", 2)), &[("n1", 1)])),
    );
    let t = S::tombstone("d").with(ver(Some(("n1", 2)), &[("n1", 1)]));
    ok(&finals(h.clone(), &[t]).check());
    let r = finals(h, &[]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(
        lost(&r),
        [("a".to_owned(), "observed"), ("d".to_owned(), "observed")]
    );
}

#[test]
fn cart_a_delete_that_is_an_ancestor_of_a_present_version_lies_between() {
    let with = |e_observed: &[&str]| {
        let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
        let h = h
            .delete(2, "k", "d", &["a"])
            .ok(2, "delete", "k", "d", None);
        let h = cput(h, 3, "e", json!(["e"]), e_observed, 3);
        finals(h, &[csib("e", json!(["e"]), 3, !e_observed.is_empty())]).check()
    };
    ok(&with(&["d"]));
    let r = with(&[]);
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a", "d"]);
}

#[test]
fn cart_a_put_between_is_no_delete() {
    // a <- b (value [b], dropping a) <- c (value [b, c]): a's item is gone and only puts lie
    // between, so a is lost although it is an ancestor of the present c.
    let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
    let h = cput(h, 2, "b", json!(["b"]), &["a"], 2);
    let h = cput(h, 3, "c", json!(["b", "c"]), &["b"], 3);
    let r = finals(h, &[csib("c", json!(["b", "c"]), 3, true)]).check();
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("a".to_owned(), "cart-item")]);
}

#[test]
fn cart_an_item_in_a_concurrent_sibling_survives() {
    // Two siblings: a's item is in one of them.
    let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
    let h = cput(h, 2, "b", json!(["b"]), &[], 2);
    ok(&finals(
        h,
        &[
            csib("a", json!(["a"]), 1, false),
            csib("b", json!(["b"]), 2, false),
        ],
    )
    .check());
}

#[test]
fn cart_with_tombstone_gc_an_info_delete_lies_between() {
    let with = |config: H| {
        let h = cput(config, 1, "a", json!(["a"]), &[], 1);
        let h = h
            .delete(2, "k", "d", &["a"])
            .end(2, "info", "delete", "k", "d");
        finals(h, &[]).check()
    };
    ok(&with(cart_gc()));
    let r = with(cart());
    bad(&r, &["lost-write"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

// ---- phantom-read ----

#[test]
fn phantom_read_a_write_id_no_put_invoked() {
    let with = |sibs: &[S]| {
        let h = a(reg()).get(2, "k").ok_get(2, "k", sibs);
        finals(h, &[sa()]).check()
    };
    ok(&with(&[sa()]));
    bad(&with(&[sa(), S::new("zz")]), &["phantom-read"]);
}

#[test]
fn phantom_read_of_a_never_written_key() {
    let with = |sibs: &[S]| {
        let h = a(reg()).get(2, "never").ok_get(2, "never", sibs);
        finals(h, &[sa()]).check()
    };
    // A read of a missing key has "values":[].
    ok(&with(&[]));
    // It names a, a write of another key.
    let r = with(&[sa()]);
    bad(&r, &["phantom-read"]);
    let Finding::PhantomRead(p) = all(&r, Kind::PhantomRead)[0] else {
        panic!()
    };
    assert_eq!(
        (p.write.as_str(), p.key.as_str(), p.reason),
        ("a", "never", "unknown-write")
    );
}

#[test]
fn phantom_read_a_tombstone_named_by_a_put_is_a_wrong_value() {
    let h = a(reg()).get(2, "k").ok_get(2, "k", &[S::tombstone("a")]);
    let r = finals(h, &[sa()]).check();
    bad(&r, &["phantom-read"]);
    let Finding::PhantomRead(p) = all(&r, Kind::PhantomRead)[0] else {
        panic!()
    };
    assert_eq!(p.reason, "wrong-value");
}

#[test]
fn phantom_read_in_a_replica_state() {
    let h = a(reg()).phase("heal").phase("final");
    let r = h.replicas("k", &[sa(), S::new("ghost")]).check();
    bad(&r, &["phantom-read"]);
    // A replica state of a key never written that holds nothing is fine.
    let h = a(reg()).phase("heal").phase("final");
    ok(&h.replicas("k", &[sa()]).replicas("other", &[]).check());
}

#[test]
fn phantom_read_a_write_invoked_later_in_the_history_was_invoked() {
    // "a write id that no put or delete invoked on that key": b is invoked on k, after the read
    // that returned it. Read literally, that is no phantom (nor any other anomaly of the page).
    let h = a(reg()).get(2, "k").ok_get(2, "k", &[sa(), S::new("b")]);
    let h = h.put(3, "k", "b", &[]).ok(3, "put", "k", "b", None);
    ok(&finals(h, &[sa(), S::new("b")]).check());
}

#[test]
fn phantom_read_values_compare_as_json_values() {
    let h = reg()
        .put_value(
            1,
            "k",
            "a",
            json!({"n": 100, "m": {"p": 0.5, "q": "x"}}),
            &[],
        )
        .ok(1, "put", "k", "a", None);
    let spelled: Value = serde_json::from_str(r#"{"m":{"q":"x","p":5e-1},"n":1e2}"#).unwrap();
    let h = h
        .get(2, "k")
        .ok_get(2, "k", &[S::valued("a", spelled.clone())]);
    ok(&finals(h.clone(), &[S::valued("a", spelled)]).check());
    // Arrays are ordered: [1,2] is not [2,1].
    let h = reg()
        .put_value(1, "k", "a", json!([1, 2]), &[])
        .ok(1, "put", "k", "a", None);
    let r = finals(h, &[S::valued("a", json!([2, 1]))]).check();
    bad(&r, &["lost-write", "phantom-read"]);
}

#[test]
fn phantom_read_cart_items_must_be_puts_on_that_key() {
    let with = |item: &str| {
        let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
        let h = h.delete(2, "k", "d", &[]).ok(2, "delete", "k", "d", None);
        let h = h
            .put_value(3, "j", "x", json!(["x"]), &[])
            .ok(3, "put", "j", "x", None);
        // A sibling named by a, whose value is a's plus an item.
        let mut items = vec!["a".to_owned(), item.to_owned()];
        items.sort();
        let h = h
            .get(4, "k")
            .ok_get(4, "k", &[S::valued("a", json!(items))]);
        let h = h.phase("heal").phase("final");
        h.replicas("k", &[csib("a", json!(["a"]), 1, false), S::tombstone("d")])
            .replicas("j", &[S::valued("x", json!(["x"]))])
            .check()
    };
    // Any of these makes the value different from what a wrote, so each is a phantom; the reason
    // is the value (the item is checked on values a write did write).
    for item in ["d", "x", "zz", "a2"] {
        bad(&with(item), &["phantom-read"]);
    }
}

#[test]
fn phantom_read_cart_an_item_no_put_on_that_key_invoked_in_a_written_value() {
    let with = |b_value: Value| {
        let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
        let h = h.delete(2, "k", "d", &[]).ok(2, "delete", "k", "d", None);
        let h = cput(h, 3, "b", b_value.clone(), &["a"], 3);
        let h = h.phase("heal").phase("final");
        h.replicas(
            "k",
            &[
                csib("b", b_value, 3, true),
                S::tombstone("d").with(ver(Some(("n2", 1)), &[])),
            ],
        )
        .check()
    };
    ok(&with(json!(["a", "b"])));
    // b wrote an item that is a delete's id: "a cart item that no put invoked on that key".
    let r = with(json!(["a", "b", "d"]));
    bad(&r, &["phantom-read"]);
    let Finding::PhantomRead(p) = all(&r, Kind::PhantomRead)[0] else {
        panic!()
    };
    assert_eq!(
        (p.reason, p.unknown_items.as_slice()),
        ("unknown-item", &["d".to_owned()][..])
    );
}

// ---- failed-write-visible ----

#[test]
fn failed_write_visible_in_a_read() {
    let with = |sibs: &[S]| {
        let h = a(reg());
        let h = h.put(2, "k", "f", &[]).end(2, "fail", "put", "k", "f");
        let h = h.get(3, "k").ok_get(3, "k", sibs);
        finals(h, &[sa()]).check()
    };
    ok(&with(&[sa()]));
    bad(&with(&[sa(), S::new("f")]), &["failed-write-visible"]);
}

#[test]
fn failed_write_visible_in_a_read_that_ran_before_the_fail() {
    // "fail: it certainly did not take effect": a read that returned it while in flight shows it
    // took effect after all.
    let h = a(reg()).put(2, "k", "f", &[]);
    let h = h.get(3, "k").ok_get(3, "k", &[sa(), S::new("f")]);
    let h = h.end(2, "fail", "put", "k", "f");
    let r = finals(h, &[sa()]).check();
    bad(&r, &["failed-write-visible"]);
}

#[test]
fn failed_write_visible_a_failed_delete_tombstone_in_the_final_state() {
    let with = |outcome: &str| {
        let h = a(reg()).delete(2, "k", "d", &["a"]);
        let h = if outcome == "ok" {
            h.ok(2, "delete", "k", "d", None)
        } else {
            h.end(2, outcome, "delete", "k", "d")
        };
        finals(h, &[S::tombstone("d")]).check()
    };
    ok(&with("info"));
    ok(&with("ok"));
    bad(&with("fail"), &["failed-write-visible"]);
}

#[test]
fn failed_write_visible_an_info_write_may_appear() {
    let h = a(reg())
        .put(2, "k", "i", &[])
        .end(2, "info", "put", "k", "i");
    let h = h.get(3, "k").ok_get(3, "k", &[sa(), S::new("i")]);
    ok(&finals(h, &[sa(), S::new("i")]).check());
}

// ---- false-dominance ----

#[test]
fn false_dominance_the_store_orders_a_write_its_successor_never_saw() {
    let with = |b_observed: &[&str]| {
        let h = a(reg());
        let h = put_ok(h, 2, "b", b_observed, ("n2", 1), &[("n1", 1)]);
        finals(h, &[sa(), sib("b", ("n2", 1), &[("n1", 1)])]).check()
    };
    ok(&with(&["a"]));
    let r = with(&[]);
    bad(&r, &["false-dominance"]);
    let Finding::FalseDominance(f) = all(&r, Kind::FalseDominance)[0] else {
        panic!()
    };
    assert_eq!(
        (f.write.write.as_str(), f.dominated_by.write.as_str()),
        ("a", "b")
    );
}

#[test]
fn false_dominance_dots_beyond_the_clock_are_concurrent() {
    // {"dot":["n1",4],"clock":{}} and {"dot":["n1",3],"clock":{}} are concurrent.
    let h = put_ok(reg(), 1, "a", &[], ("n1", 3), &[]);
    let h = put_ok(h, 2, "b", &[], ("n1", 4), &[]);
    ok(&finals(h, &[sib("a", ("n1", 3), &[]), sib("b", ("n1", 4), &[])]).check());
    // Plain clocks {n1:3} < {n1:4} are ordered.
    let plain = |w: &str, c: u64| S::new(w).with(ver(None, &[("n1", c)]));
    let h = reg()
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", Some(ver(None, &[("n1", 3)])));
    let h = h
        .put(2, "k", "b", &[])
        .ok(2, "put", "k", "b", Some(ver(None, &[("n1", 4)])));
    let r = finals(h, &[plain("a", 3), plain("b", 4)]).check();
    bad(&r, &["false-dominance"]);
}

#[test]
fn false_dominance_not_where_the_successor_saw_it_transitively() {
    let h = a(reg());
    let h = put_ok(h, 2, "b", &["a"], ("n2", 1), &[("n1", 1)]);
    let h = put_ok(h, 3, "c", &["b"], ("n3", 1), &[("n1", 1), ("n2", 1)]);
    ok(&finals(h, &[sib("c", ("n3", 1), &[("n1", 1), ("n2", 1)])]).check());
}

#[test]
fn false_dominance_a_context_covering_only_the_dot_does_not_order() {
    // b's clock covers a's dot but not a's clock: H(a) is not a subset of H(b).
    let h = put_ok(reg(), 1, "a", &[], ("n1", 5), &[("n2", 1)]);
    let h = put_ok(h, 2, "b", &[], ("n2", 2), &[("n1", 5)]);
    ok(&finals(
        h,
        &[
            sib("a", ("n1", 5), &[("n2", 1)]),
            sib("b", ("n2", 2), &[("n1", 5)]),
        ],
    )
    .check());
}

#[test]
fn false_dominance_versions_from_reads_count_when_the_ok_reports_none() {
    // The ok of each put reports no version; reads show them.
    let h = reg().put(1, "k", "a", &[]).ok(1, "put", "k", "a", None);
    let h = h.put(2, "k", "b", &[]).ok(2, "put", "k", "b", None);
    let b = sib("b", ("n2", 1), &[("n1", 1)]);
    let h = h.get(3, "k").ok_get(3, "k", &[sa(), b.clone()]);
    let r = finals(h, &[sa(), b]).check();
    bad(&r, &["false-dominance"]);
}

// ---- clock-regression ----

#[test]
fn clock_regression_a_version_that_does_not_succeed_what_its_client_observed() {
    let with = |b_clock: &[(&str, u64)]| {
        let h = a(reg());
        let h = put_ok(h, 2, "b", &["a"], ("n2", 1), b_clock);
        finals(h, &[sib("b", ("n2", 1), b_clock)]).check()
    };
    ok(&with(&[("n1", 1)]));
    let r = with(&[]);
    bad(&r, &["clock-regression"]);
    let Finding::ClockRegression(c) = all(&r, Kind::ClockRegression)[0] else {
        panic!()
    };
    assert_eq!(
        (c.write.write.as_str(), c.observed_write.write.as_str()),
        ("b", "a")
    );
}

#[test]
fn clock_regression_an_equal_version_does_not_succeed() {
    let h = a(reg());
    let h = put_ok(h, 2, "b", &["a"], ("n1", 1), &[]);
    let r = finals(h, &[sib("b", ("n1", 1), &[])]).check();
    bad(&r, &["clock-regression"]);
}

#[test]
fn clock_regression_over_a_tombstone() {
    let with = |b_clock: &[(&str, u64)]| {
        let h = del_ok(a(reg()), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        let h = put_ok(h, 2, "b", &["d"], ("n2", 1), b_clock);
        finals(h, &[sib("b", ("n2", 1), b_clock)]).check()
    };
    ok(&with(&[("n1", 2)]));
    bad(&with(&[("n1", 1)]), &["clock-regression"]);
}

// ---- divergence ----

#[test]
fn divergence_replicas_holding_different_sibling_sets() {
    let b = sib("b", ("n2", 1), &[]);
    let h = a(reg());
    let h = put_ok(h, 2, "b", &[], ("n2", 1), &[])
        .phase("heal")
        .phase("final");
    // Order and repeats do not count.
    let same = h
        .clone()
        .replica("k", "n1", &[sa(), b.clone()])
        .replica("k", "n2", &[b.clone(), sa(), b.clone()])
        .replica("k", "n3", &[sa(), b.clone()]);
    ok(&same.check());
    let differ = h
        .replica("k", "n1", &[sa(), b.clone()])
        .replica("k", "n2", &[sa()])
        .replica("k", "n3", &[sa(), b]);
    bad(&differ.check(), &["divergence"]);
}

#[test]
fn divergence_the_same_write_with_another_version_differs() {
    let h = a(reg()).phase("heal").phase("final");
    let r = h
        .replica("k", "n1", &[sa()])
        .replica("k", "n2", &[sib("a", ("n1", 1), &[("n3", 1)])])
        .replica("k", "n3", &[sa()])
        .check();
    bad(&r, &["divergence"]);
    // A clock's key order and a zero counter name the same version.
    let h = put_ok(reg(), 1, "a", &[], ("n1", 1), &[("n2", 1), ("n3", 2)])
        .phase("heal")
        .phase("final");
    let r = h
        .replica("k", "n1", &[sib("a", ("n1", 1), &[("n2", 1), ("n3", 2)])])
        .replica(
            "k",
            "n2",
            &[sib("a", ("n1", 1), &[("n3", 2), ("n2", 1), ("n4", 0)])],
        )
        .replica("k", "n3", &[sib("a", ("n1", 1), &[("n2", 1), ("n3", 2)])])
        .check();
    ok(&r);
}

// ---- quorum-read-miss ----

/// The cluster: n1..n3 (the replicas of k) and n7, n9, which hold no replica of k. (A fault that
/// names something that is no node of the history may have hit any node.)
fn strict() -> H {
    H::new().config_with(
        "register",
        json!({"nodes": ["n1", "n2", "n3", "n7", "n9"], "node": {"sloppy_quorum": false}}),
    )
}

fn strict_fsync(policy: &str) -> H {
    H::new().config_with(
        "register",
        json!({"nodes": ["n1", "n2", "n3", "n7", "n9"], "node": {"sloppy_quorum": false},
            "fsync": {"policy": policy}}),
    )
}

/// Where a fault falls relative to the write's ack and the read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum At {
    BeforeAck,
    AfterAck,
    DuringRead,
    AfterRead,
}

/// a acknowledged, then a read of k that returns `read`; `fault` (nemesis f, node) at `at`.
fn qrm(config: H, fault: Option<(&str, &str)>, at: At, read: &[S]) -> Results {
    let put = |h: H, here: At| match fault {
        Some((f, node)) if here == at => h.nemesis_on(f, node),
        _ => h,
    };
    let h = config.put(1, "k", "a", &[]);
    let h = put(h, At::BeforeAck);
    let h = h.ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])));
    let h = put(h, At::AfterAck);
    let h = h.get(2, "k");
    let h = put(h, At::DuringRead);
    let h = h.ok_get(2, "k", read);
    let h = put(h, At::AfterRead);
    finals(h, &[sa()]).check()
}

#[track_caller]
fn missed(r: &Results) {
    bad(r, &["quorum-read-miss"]);
    assert_eq!(warnings(r), ["stale-read"], "{}", summary(r));
}

#[track_caller]
fn excused(r: &Results) {
    ok(r);
    assert_eq!(warnings(r), ["stale-read"], "{}", summary(r));
}

#[test]
fn quorum_read_miss_a_strict_read_after_the_ack_that_returns_nothing() {
    missed(&qrm(strict(), None, At::AfterAck, &[]));
    ok(&qrm(strict(), None, At::AfterAck, &[sa()]));
}

#[test]
fn quorum_read_miss_only_with_a_strict_quorum_and_r_plus_w_above_n() {
    excused(&qrm(reg(), None, At::AfterAck, &[]));
    let sloppy_absent = H::new().config_with("register", json!({"node": {}}));
    excused(&qrm(sloppy_absent, None, At::AfterAck, &[]));
    let rw_eq_n = H::new().config_with(
        "register",
        json!({"r": 1, "w": 2, "node": {"sloppy_quorum": false}}),
    );
    excused(&qrm(rw_eq_n, None, At::AfterAck, &[]));
    let r3 = H::new().config_with(
        "register",
        json!({"r": 3, "w": 1, "node": {"sloppy_quorum": false}}),
    );
    missed(&qrm(r3, None, At::AfterAck, &[]));
}

#[test]
fn quorum_read_miss_a_read_invoked_before_the_ack_is_not_held() {
    let h = strict().put(1, "k", "a", &[]).get(2, "k");
    let h = h.ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])));
    let h = h.ok_get(2, "k", &[]);
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn quorum_read_miss_later_means_history_order_not_time() {
    // The read's invoke is later in the history than the ack, though its time is earlier.
    let h = strict().put(1, "k", "a", &[]);
    let h = h
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .at(5_000_000);
    let h = h
        .get(2, "k")
        .at(4_000_000)
        .ok_get(2, "k", &[])
        .at(6_000_000);
    let r = finals(h, &[sa()]).check();
    bad(&r, &["quorum-read-miss"]);
}

#[test]
fn quorum_read_miss_a_descendant_covers_a_concurrent_write_does_not() {
    let with = |b_observed: &[&str]| {
        let h = put_ok(strict(), 1, "a", &[], ("n1", 1), &[]);
        let h = put_ok(h, 1, "b", b_observed, ("n1", 2), &[("n1", 1)]);
        let b = sib("b", ("n1", 2), &[("n1", 1)]);
        let h = h.get(2, "k").ok_get(2, "k", std::slice::from_ref(&b));
        finals(h, &[b]).check()
    };
    ok(&with(&["a"]));
    let r = with(&[]);
    assert!(
        r.anomalies.contains_key(&Kind::QuorumReadMiss),
        "{}",
        summary(&r)
    );
}

#[test]
fn quorum_read_miss_is_excused_by_a_fault_between_the_ack_and_the_read_completion() {
    for (name, config, f, node) in [
        ("wipe", strict(), "wipe", "n2"),
        ("disk", strict(), "disk", "n3"),
        ("power", strict(), "power", "n1"),
        ("crash, fsync never", strict_fsync("never"), "crash", "n1"),
        ("join of a new node", strict(), "join", "n9"),
        ("leave of another node", strict(), "leave", "n9"),
    ] {
        for at in [At::AfterAck, At::DuringRead] {
            let r = qrm(config.clone(), Some((f, node)), at, &[]);
            assert!(r.anomalies.is_empty(), "{name} {at:?}: {}", summary(&r));
            assert_eq!(r.valid, Validity::True, "{name} {at:?}");
        }
        for at in [At::BeforeAck, At::AfterRead] {
            let r = qrm(config.clone(), Some((f, node)), at, &[]);
            assert_eq!(
                r.anomalies.keys().collect::<Vec<_>>(),
                [&Kind::QuorumReadMiss],
                "{name} {at:?}: {}",
                summary(&r)
            );
        }
    }
}

#[test]
fn quorum_read_miss_is_not_excused_by_faults_that_lose_nothing() {
    for (name, config, f, node) in [
        ("crash, fsync always", strict(), "crash", "n1"),
        ("wipe of a node that is no replica", strict(), "wipe", "n9"),
        (
            "disk fault on a node that is no replica",
            strict(),
            "disk",
            "n7",
        ),
        ("partition", strict(), "partition-start", "n1"),
        ("restart", strict_fsync("never"), "restart", "n1"),
        ("skew", strict(), "skew", "n1"),
        ("pause", strict(), "pause-start", "n1"),
        ("loss", strict(), "loss-start", "n1"),
        ("slow", strict(), "slow-start", "n1"),
        ("an unknown nemesis", strict(), "meteor", "n1"),
    ] {
        let r = qrm(config, Some((f, node)), At::AfterAck, &[]);
        assert_eq!(
            (r.valid, r.anomalies.keys().collect::<Vec<_>>()),
            (Validity::False, vec![&Kind::QuorumReadMiss]),
            "{name}: {}",
            summary(&r)
        );
    }
}

#[test]
fn quorum_read_miss_a_crash_without_an_fsync_policy_is_not_always() {
    // No fsync in the config: not `always`, so a crash excuses.
    let config = H::new().raw(json!({"process":"harness","type":"info","f":"config",
        "value":{"history_format":2,"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,
        "workload":"register","node":{"sloppy_quorum":false}}}));
    excused(&qrm(config, Some(("crash", "n2")), At::AfterAck, &[]));
}

#[test]
fn quorum_read_miss_of_a_delete_in_v2() {
    let with = |read: &[S]| {
        let h = del_ok(a(strict()), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        let t = tomb("d", ("n1", 2), &[("n1", 1)]);
        let h = h.get(2, "k").ok_get(2, "k", read);
        finals(h, &[t]).check()
    };
    ok(&with(&[tomb("d", ("n1", 2), &[("n1", 1)])]));
    let r = with(&[]);
    bad(&r, &["quorum-read-miss"]);
    let Finding::QuorumReadMiss(q) = all(&r, Kind::QuorumReadMiss)[0] else {
        panic!()
    };
    assert_eq!(
        (q.write.write.as_str(), q.missed.as_slice()),
        ("a", &["a".to_owned(), "d".to_owned()][..])
    );
    // Returning the deleted value misses the delete.
    let r = with(&[sa()]);
    bad(&r, &["quorum-read-miss"]);
}

#[test]
fn quorum_read_miss_is_per_key() {
    // A read of j is not held to a write of k.
    let h = a(strict()).get(2, "j").ok_get(2, "j", &[]);
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn quorum_read_miss_v1_a_delete_invoked_before_the_read_completed_releases_the_read() {
    let v1_strict = || {
        H::new().raw(json!({"process":"harness","type":"info","f":"config",
            "value":{"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,"workload":"register","seed":1,
            "fsync":{"policy":"always"},"node":{"sloppy_quorum":false}}}))
    };
    // The delete is invoked while the read is in flight: the read is not held to a (which the
    // delete observed) nor to d.
    let h = a(v1_strict()).get(2, "k");
    let h = h.delete(1, "k", "d", &["a"]).ok_get(2, "k", &[]);
    let h = h.ok(
        1,
        "delete",
        "k",
        "d",
        Some(ver(Some(("n1", 2)), &[("n1", 1)])),
    );
    let r = finals(h, &[]).check();
    // (d's tombstone is gone without gc: d and a are lost, which is another matter.)
    bad(&r, &["lost-write"]);
    // The delete invoked after the read completed: the read is held to a.
    let h = a(v1_strict()).get(2, "k").ok_get(2, "k", &[]);
    let h = h.delete(1, "k", "d", &["a"]).ok(
        1,
        "delete",
        "k",
        "d",
        Some(ver(Some(("n1", 2)), &[("n1", 1)])),
    );
    let r = finals(h, &[]).check();
    bad(&r, &["lost-write", "quorum-read-miss"]);
}

// ---- Verdict: unknown ----

#[test]
fn unknown_when_nothing_was_acknowledged() {
    let h = reg().put(1, "k", "a", &[]).end(1, "info", "put", "k", "a");
    let r = finals(h, &[]).check();
    expect(&r, Validity::Unknown, &[]);
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn unknown_when_a_key_with_an_ok_write_has_no_replica_state() {
    let h = a(reg()).phase("heal").phase("final");
    let r = h.check();
    expect(&r, Validity::Unknown, &[]);
    // A key whose writes all ended info needs no replica state.
    let h = a(reg())
        .put(2, "j", "b", &[])
        .end(2, "info", "put", "j", "b");
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn an_anomaly_beats_unknown() {
    // k has no final state (unknown), j's read returned a phantom (false).
    let h = a(reg()).get(2, "j").ok_get(2, "j", &[S::new("ghost")]);
    let r = h.check();
    expect(&r, Validity::False, &["phantom-read"]);
    assert_eq!(r.exit_code(), 1);
}

// ---- Processes ----

#[test]
fn a_process_that_ended_info_is_replaced_by_a_new_number() {
    let h = a(reg())
        .put(2, "k", "b", &["a"])
        .end(2, "info", "put", "k", "b");
    let h = h.get(3, "k").ok_get(3, "k", &[sa()]);
    let h = put_ok(h, 3, "c", &["a"], ("n1", 3), &[("n1", 1)]);
    ok(&finals(h.clone(), &[sib("c", ("n1", 3), &[("n1", 1)])]).check());
    // Process 2 invoking again is malformed.
    let e = h.get(2, "k").parse_error();
    assert!(e.to_string().contains("ended info"), "{e}");
}

#[test]
fn a_get_that_ends_info_retires_its_process_too() {
    let h = a(reg())
        .get(2, "k")
        .raw(json!({"process":2,"type":"info","f":"get","key":"k"}));
    let e = h.get(2, "k").parse_error();
    assert!(e.to_string().contains("ended info"), "{e}");
}

// ---- Time ----

#[test]
fn time_may_go_backwards_only_index_orders() {
    // Times out of order are no rule of the page; the index alone orders events.
    let h = reg().put(1, "k", "a", &[]).at(9_000_000);
    let h = h
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .at(1_000_000);
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn stale_read_is_a_warning_only() {
    // Sloppy quorum: a read after the ack that misses a is stale, and the history stays valid.
    let r = qrm(reg(), None, At::AfterAck, &[]);
    excused(&r);
    let Finding::StaleRead(s) = all(&r, Kind::StaleRead)[0] else {
        panic!()
    };
    assert_eq!((s.missed.write.as_str(), s.missed_count), ("a", 1));
}

#[test]
fn false_concurrency_is_a_warning_only() {
    let h = a(reg());
    let h = put_ok(h, 2, "b", &["a"], ("n1", 2), &[("n1", 1)]);
    let b = sib("b", ("n1", 2), &[("n1", 1)]);
    let h = h.get(3, "k").ok_get(3, "k", &[sa(), b.clone()]);
    let r = finals(h, &[b]).check();
    ok(&r);
    assert_eq!(warnings(&r), ["false-concurrency"]);
}

// ---- Stats ----

#[test]
fn stats_count_ops_by_outcome() {
    let h = a(reg());
    let h = h.put(2, "k", "f", &[]).end(2, "fail", "put", "k", "f");
    let h = h.put(3, "k", "i", &[]).end(3, "info", "put", "k", "i");
    let h = h.get(4, "k").ok_get(4, "k", &[sa()]);
    let r = finals(h, &[sa()]).check();
    ok(&r);
    let v = serde_json::to_value(&r).unwrap();
    let s = &v["stats"];
    assert_eq!(
        (&s["ops"], &s["ok"], &s["fail"], &s["info"]),
        (&json!(4), &json!(2), &json!(1), &json!(1))
    );
    assert_eq!(v["valid"], json!(true));
    assert_eq!(v["anomaly_types"], json!([]));
}

// ---- Malformed histories ----

fn parse_err(text: &str) -> ParseError {
    parse_reader(text.as_bytes()).expect_err("should not parse")
}

const INV: &str = r#"{"index":1,"time":1,"process":0,"type":"invoke","f":"put","key":"k","write":"a","value":"a","observed":[]}"#;
const ACK: &str = r#"{"index":2,"time":2,"process":0,"type":"ok","f":"put","key":"k","write":"a"}"#;

#[track_caller]
fn malformed_at(text: &str, line: usize) {
    let e = parse_err(text);
    assert_eq!(e.line(), Some(line), "{e}");
    assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
}

#[test]
fn malformed_each_rule_names_its_line() {
    let get = r#"{"index":3,"time":3,"process":1,"type":"invoke","f":"get","key":"k"}"#;
    let cases: Vec<(String, usize)> = vec![
        // A blank line.
        (format!("{INV}\n\n{ACK}\n"), 2),
        (format!("{INV}\n   \n{ACK}\n"), 2),
        // An index not strictly above the one before.
        (
            format!("{INV}\n{}\n", ACK.replace(r#""index":2"#, r#""index":1"#)),
            2,
        ),
        (
            format!("{INV}\n{}\n", ACK.replace(r#""index":2"#, r#""index":0"#)),
            2,
        ),
        // Two invokes with one write id (on another key, by another process).
        (
            format!(
                "{INV}\n{ACK}\n{}\n",
                INV.replace(r#""index":1"#, r#""index":3"#)
                    .replace(r#""process":0"#, r#""process":1"#)
                    .replace(r#""key":"k""#, r#""key":"j""#)
            ),
            3,
        ),
        // An invoke by a process that has an operation in flight.
        (
            format!(
                "{INV}\n{}\n",
                get.replace(r#""process":1"#, r#""process":0"#)
            ),
            2,
        ),
        // A completion with no invoke in flight.
        (format!("{ACK}\n"), 1),
        // A completion whose f or key differs from its invoke's.
        (
            format!(
                "{INV}\n{}\n",
                ACK.replace(r#""f":"put""#, r#""f":"delete""#)
            ),
            2,
        ),
        (
            format!("{INV}\n{}\n", ACK.replace(r#""key":"k""#, r#""key":"j""#)),
            2,
        ),
        // A completion whose write id differs from its invoke's.
        (
            format!(
                "{INV}\n{}\n",
                ACK.replace(r#""write":"a""#, r#""write":"b""#)
            ),
            2,
        ),
        // An unknown type; a client f other than get, put, delete.
        (
            format!(
                "{INV}\n{}\n",
                ACK.replace(r#""type":"ok""#, r#""type":"done""#)
            ),
            2,
        ),
        (
            format!("{}\n", INV.replace(r#""f":"put""#, r#""f":"read""#)),
            1,
        ),
        // A nemesis or harness event whose type is not info.
        (
            format!(
                "{INV}\n{}\n",
                r#"{"index":2,"time":2,"process":"nemesis","type":"ok","f":"crash","value":{"node":"n1"}}"#
            ),
            2,
        ),
        (
            format!(
                "{INV}\n{}\n",
                r#"{"index":2,"time":2,"process":"harness","type":"invoke","f":"phase","value":"heal"}"#
            ),
            2,
        ),
        // A line that is not a JSON object.
        (format!("{INV}\n[1,2]\n"), 2),
        (format!("{INV}\n\"x\"\n"), 2),
        (format!("{INV}\nnot json\n{ACK}\n"), 2),
        // A missing required field, or a field of the wrong type.
        (format!("{}\n", INV.replace(r#","observed":[]"#, "")), 1),
        (
            format!(
                "{}\n",
                INV.replace(r#""observed":[]"#, r#""observed":null"#)
            ),
            1,
        ),
        (format!("{}\n", INV.replace(r#","write":"a""#, "")), 1),
        (format!("{}\n", INV.replace(r#","value":"a""#, "")), 1),
        (format!("{}\n", INV.replace(r#","key":"k""#, "")), 1),
        (format!("{INV}\n{}\n", ACK.replace(r#","key":"k""#, "")), 2),
        (
            format!("{}\n", INV.replace(r#""time":1"#, r#""time":"1""#)),
            1,
        ),
        (
            format!(
                "{}\n",
                INV.replace(r#""process":0"#, r#""process":"client""#)
            ),
            1,
        ),
        (
            format!(
                "{INV}\n{ACK}\n{get}\n{}\n",
                r#"{"index":4,"time":4,"process":1,"type":"ok","f":"get","key":"k"}"#
            ),
            4,
        ),
        (
            format!(
                "{INV}\n{ACK}\n{}\n",
                r#"{"index":3,"time":3,"process":"harness","type":"info","f":"replica-state","key":"k","values":[]}"#
            ),
            3,
        ),
        // A delete's value is null.
        (
            format!("{}\n", INV.replace(r#""f":"put""#, r#""f":"delete""#)),
            1,
        ),
    ];
    for (text, line) in cases {
        let e = parse_reader(text.as_bytes()).expect_err(&text);
        assert_eq!(e.line(), Some(line), "{text}\n{e}");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
    // Every malformed history is an error, never a verdict.
    malformed_at(&format!("{INV}\n\n"), 2);
}

#[test]
fn malformed_a_truncated_last_line_is_skipped_and_reported() {
    let text = format!("{INV}\n{ACK}\n{{\"index\":3,\"time\":3,\"proc");
    let parsed = parse_reader(text.as_bytes()).unwrap();
    assert_eq!(parsed.history.event_count(), 2);
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].starts_with("line 3:"));
    // With a newline after it, the same text is an error.
    malformed_at(&format!("{text}\n"), 3);
    // Not the last line: an error.
    malformed_at(&format!("{INV}\n{{\"index\":2,\n{ACK}"), 2);
}

#[test]
fn malformed_history_format_other_than_1_or_2() {
    for v in ["3", "0", "\"2\"", "null"] {
        let config = format!(
            r#"{{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{{"history_format":{v}}}}}"#
        );
        malformed_at(&format!("{config}\n{INV}\n"), 1);
    }
    for v in ["1", "2"] {
        let config = format!(
            r#"{{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{{"history_format":{v}}}}}"#
        );
        assert!(
            parse_reader(format!("{config}\n{INV}\n").as_bytes()).is_ok(),
            "{v}"
        );
    }
}

#[test]
fn well_formed_optional_fields_may_be_absent_and_unknown_names_are_ignored() {
    // No node, no context, a bare put ok, an unknown nemesis name, a sparse index.
    let text = [
        r#"{"index":10,"time":1,"process":0,"type":"invoke","f":"put","key":"k","write":"a","value":"a","observed":[]}"#,
        r#"{"index":20,"time":2,"process":0,"type":"ok","f":"put","key":"k"}"#,
        r#"{"index":25,"time":3,"process":"nemesis","type":"info","f":"meteor","value":{"node":"n1"}}"#,
        r#"{"index":30,"time":4,"process":"harness","type":"info","f":"phase","value":"final"}"#,
        r#"{"index":40,"time":5,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n1","values":[{"write":"a","value":"a"}]}"#,
    ]
    .join("\n")
        + "\n";
    let parsed = parse_reader(text.as_bytes()).unwrap();
    let r = dynamo_checker::check(&parsed.history);
    ok(&r);
}

// ---- Deletes of keys never written, and keys that could be confused ----

#[test]
fn a_delete_of_a_never_written_key_is_present_as_its_tombstone() {
    let with = |config: H, final_state: &[S]| {
        let h = config.delete(1, "k", "d", &[]).ok(
            1,
            "delete",
            "k",
            "d",
            Some(ver(Some(("n1", 1)), &[])),
        );
        finals(h, final_state).check()
    };
    ok(&with(reg(), &[tomb("d", ("n1", 1), &[])]));
    let r = with(reg(), &[]);
    bad(&r, &["lost-write"]);
    assert_eq!(lost(&r), [("d".to_owned(), "observed")]);
    // With tombstone_gc nothing it observed came back: no loss.
    ok(&with(gc(), &[]));
}

#[test]
fn phantom_read_the_same_value_on_another_key_is_not_this_key_s_write() {
    // a (on k) and b (on j) wrote the same value; a read of k names b with it.
    let h = reg()
        .put_value(1, "k", "a", json!("v"), &[])
        .ok(1, "put", "k", "a", None);
    let h = h
        .put_value(2, "j", "b", json!("v"), &[])
        .ok(2, "put", "j", "b", None);
    let with = |named: &str| {
        let h = h
            .clone()
            .get(3, "k")
            .ok_get(3, "k", &[S::valued(named, json!("v"))]);
        let h = h.phase("heal").phase("final");
        h.replicas("k", &[S::valued("a", json!("v"))])
            .replicas("j", &[S::valued("b", json!("v"))])
            .check()
    };
    ok(&with("a"));
    bad(&with("b"), &["phantom-read"]);
}

#[test]
fn failed_write_visible_only_through_its_own_key() {
    // f failed on key j; a read of j showing it is a failed write visible, one of k a phantom.
    let with = |key: &str| {
        let h = a(reg())
            .put(2, "j", "f", &[])
            .end(2, "fail", "put", "j", "f");
        let h = h.get(3, key).ok_get(3, key, &[S::new("f")]);
        finals(h, &[sa()]).replicas("j", &[]).check()
    };
    bad(&with("j"), &["failed-write-visible"]);
    bad(&with("k"), &["phantom-read"]);
}

// ---- quorum-read-miss: several writes ----

#[test]
fn quorum_read_miss_a_fault_excuses_only_the_writes_acked_before_it() {
    // a acked, n2 wiped, b acked, then a read that returns nothing: a is excused, b is not.
    let with = |wipe: bool| {
        let h = put_ok(strict(), 1, "a", &[], ("n1", 1), &[]);
        let h = if wipe { h.nemesis_on("wipe", "n2") } else { h };
        let h = put_ok(h, 1, "b", &["a"], ("n1", 2), &[("n1", 1)]);
        let h = h.get(2, "k").ok_get(2, "k", &[]);
        finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check()
    };
    for wipe in [false, true] {
        let r = with(wipe);
        bad(&r, &["quorum-read-miss"]);
        let Finding::QuorumReadMiss(q) = all(&r, Kind::QuorumReadMiss)[0] else {
            panic!()
        };
        let expected: &[&str] = if wipe { &["b"] } else { &["a", "b"] };
        assert_eq!(q.missed, expected, "wipe {wipe}: {}", summary(&r));
    }
}

#[test]
fn quorum_read_miss_a_fault_on_a_replica_of_another_key_excuses_nothing() {
    // n3 holds j but not k.
    let h = a(strict()).nemesis_on("wipe", "n3");
    let h = h.get(2, "k").ok_get(2, "k", &[]);
    let h = h.phase("heal").phase("final");
    let h = h.replica("k", "n1", &[sa()]).replica("k", "n2", &[sa()]);
    let r = h.replica("j", "n3", &[]).check();
    bad(&r, &["quorum-read-miss"]);
}

#[test]
fn quorum_read_miss_a_read_returning_a_failed_descendant_is_no_miss_but_shows_it() {
    // f observed a and ended fail; a read after a's ack returns f: a descendant of a, so the read
    // did not miss a, but f is visible.
    let h = a(strict())
        .put(3, "k", "f", &["a"])
        .end(3, "fail", "put", "k", "f");
    let h = h.get(2, "k").ok_get(2, "k", &[S::new("f")]);
    let r = finals(h, &[sa()]).check();
    bad(&r, &["failed-write-visible"]);
}

// ---- v1: the context substitute ----

fn v1() -> H {
    H::new().config_v1("register")
}

/// v1: a, then a delete d of it (dot n1:2), then b whose context is `context`, invoked before or
/// after d; b alone is the final state.
fn v1_case(context: Value, b_first: bool, d_key: &str) -> Results {
    let h = a(v1());
    let d = |h: H| {
        h.delete(3, d_key, "d", if d_key == "k" { &["a"] } else { &[] })
            .ok(
                3,
                "delete",
                d_key,
                "d",
                Some(ver(Some(("n1", 2)), &[("n1", 1)])),
            )
    };
    let b = |h: H| {
        h.put_ctx(2, "k", "b", &[], context.clone()).ok(
            2,
            "put",
            "k",
            "b",
            Some(ver(Some(("n1", 3)), &[("n1", 2)])),
        )
    };
    let h = if b_first { d(b(h)) } else { b(d(h)) };
    let h = finals(h, &[sib("b", ("n1", 3), &[("n1", 2)])]);
    if d_key == "k" {
        h.check()
    } else {
        h.replicas(d_key, &[tomb("d", ("n1", 2), &[("n1", 1)])])
            .check()
    }
}

#[test]
fn v1_a_context_covers_only_deletes_of_its_key_invoked_before_it() {
    ok(&v1_case(json!("n1=2"), false, "k"));
    ok(&v1_case(json!({"n1": 2}), false, "k"));
    // Invoked after b: not observed.
    let r = v1_case(json!("n1=2"), true, "k");
    assert_eq!(lost_ids(&r), ["a", "d"], "{}", summary(&r));
    // A context that does not reach the dot.
    let r = v1_case(json!("n1=1"), false, "k");
    assert_eq!(lost_ids(&r), ["a", "d"], "{}", summary(&r));
}

#[test]
fn v1_a_context_does_not_make_a_put_an_ancestor() {
    // The substitute is about deletes: b's context covers a's dot (n1:1), but a is a put.
    let h = a(v1());
    let h = h.put_ctx(2, "k", "b", &[], json!("n1=1")).ok(
        2,
        "put",
        "k",
        "b",
        Some(ver(Some(("n1", 2)), &[("n1", 1)])),
    );
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    bad(&r, &["lost-write", "false-dominance"]);
    assert_eq!(lost_ids(&r), ["a"]);
}

// ---- Readings the page leaves open: pinned as the checker reads them (see the report) ----

#[test]
fn reading_two_versions_with_one_dot_are_ordered_by_their_histories() {
    // "a precedes b when H(a) is a strict subset of H(b)": {dot n1:1, clock {}} and
    // {dot n1:1, clock {n2:1}} have H = {n1:1} and {n1:1, n2:1}, so a precedes b. (The page's
    // gloss "with dots, when b's clock covers a's dot and a's clock" would not order them: b's
    // clock does not cover its own dot.) The checker reads the definition, H.
    let h = put_ok(reg(), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 2, "b", &[], ("n1", 1), &[("n2", 1)]);
    let r = finals(h, &[sa(), sib("b", ("n1", 1), &[("n2", 1)])]).check();
    bad(&r, &["false-dominance"]);
}

#[test]
fn reading_tombstone_gc_gives_a_strict_read_no_exception() {
    // quorum-read-miss names no tombstone_gc exception: the page says what tombstone_gc changes
    // (sibling sets compared, lost-write's excuses) and the read's substitute is v1's alone. A v2
    // read after a delete's ok is held to its tombstone, gc or not; lost-write is not (a
    // collected tombstone is no loss).
    let with = |config: H, returned: &[S]| {
        let h = del_ok(a(config), 1, "d", &["a"], ("n1", 2), &[("n1", 1)]);
        let h = h.get(2, "k").ok_get(2, "k", returned);
        finals(h, &[]).check()
    };
    let strict_gc = || {
        H::new().config_with(
            "register",
            json!({"tombstone_gc": true, "node": {"sloppy_quorum": false}}),
        )
    };
    bad(&with(strict_gc(), &[]), &["quorum-read-miss"]);
    bad(&with(strict(), &[]), &["lost-write", "quorum-read-miss"]);
    // The deleted value read back after the delete's ok (the helper's case, valid before).
    bad(&with(strict_gc(), &[sa()]), &["quorum-read-miss"]);
}

#[test]
fn reading_a_failed_write_named_only_in_observed_is_visible() {
    // b's client lists f in observed: the read its put was based on returned f ("the client saw
    // exactly those"), although no get of the history shows it. f appeared in a read.
    let h = a(reg())
        .put(2, "k", "f", &["a"])
        .end(2, "fail", "put", "k", "f");
    let h = put_ok(h, 3, "b", &["a", "f"], ("n1", 2), &[("n1", 1)]);
    bad(
        &finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check(),
        &["failed-write-visible"],
    );
}

#[test]
fn reading_a_failed_put_s_cart_item_inside_another_value_is_not_visible() {
    // f failed; b carries f's item without having observed f. Only a sibling named f (or an
    // observed list naming f) would be "the write appearing"; its item inside b's value is not
    // reported.
    let h = cput(cart(), 1, "a", json!(["a"]), &[], 1);
    let h = h
        .put_value(2, "k", "f", json!(["a", "f"]), &["a"])
        .end(2, "fail", "put", "k", "f");
    let h = cput(h, 3, "b", json!(["a", "b", "f"]), &["a"], 3);
    ok(&finals(h, &[csib("b", json!(["a", "b", "f"]), 3, true)]).check());
}

// ---- Strings are compared as decoded JSON strings ----

#[test]
fn keys_write_ids_nodes_and_items_spelled_with_escapes_are_the_same_strings() {
    // The key "ké", the write id "p\"1" and the node "n1" each spelled two ways.
    let lines = [
        r#"{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{"history_format":2,"n":3,"r":2,"w":2,"workload":"cart","fsync":{"policy":"always"},"node":{"sloppy_quorum":false}}}"#,
        r#"{"index":1,"time":1,"process":1,"type":"invoke","f":"put","key":"k\u00e9","write":"p\"1","value":["p\"1"],"observed":[]}"#,
        r#"{"index":2,"time":2,"process":1,"type":"ok","f":"put","key":"ké","write":"p\u00221","dot":["n\u0031",1],"clock":{}}"#,
        r#"{"index":3,"time":3,"process":2,"type":"invoke","f":"put","key":"ké","write":"q","value":["p\u00221","q"],"observed":["p\u00221"]}"#,
        r#"{"index":4,"time":4,"process":2,"type":"ok","f":"put","key":"k\u00e9","write":"q","dot":["n1",2],"clock":{"n\u0031":1}}"#,
        r#"{"index":5,"time":5,"process":3,"type":"invoke","f":"get","key":"k\u00e9"}"#,
        r#"{"index":6,"time":6,"process":3,"type":"ok","f":"get","key":"ké","values":[{"write":"q","value":["p\"1","q"],"dot":["n1",2],"clock":{"n1":1}}]}"#,
        r#"{"index":7,"time":7,"process":"harness","type":"info","f":"phase","value":"final"}"#,
        r#"{"index":8,"time":8,"process":"harness","type":"info","f":"replica-state","key":"k\u00e9","node":"n1","values":[{"write":"q","value":["p\u0022\u0031","q"],"dot":["n1",2],"clock":{"n1":1}}]}"#,
        r#"{"index":9,"time":9,"process":"harness","type":"info","f":"replica-state","key":"ké","node":"n2","values":[{"write":"q","value":["p\"1","q"],"dot":["n1",2],"clock":{"n1":1}}]}"#,
    ];
    let text = lines.join("\n") + "\n";
    let parsed = parse_reader(text.as_bytes()).unwrap();
    let r = dynamo_checker::check(&parsed.history);
    ok(&r);
    assert_eq!(r.stats.keys, 1);
    // Drop the item of p"1 from q's final value: that is not the value q wrote (a phantom), so q
    // is not present, and neither it nor p"1 survives.
    let text = text.replace(r#""value":["p\u0022\u0031","q"]"#, r#""value":["q"]"#);
    let text = text.replace(
        r#""value":["p\"1","q"],"dot":["n1",2],"clock":{"n1":1}}]}"#,
        r#""value":["q"],"dot":["n1",2],"clock":{"n1":1}}]}"#,
    );
    let parsed = parse_reader(text.as_bytes()).unwrap();
    let r = dynamo_checker::check(&parsed.history);
    bad(&r, &["lost-write", "phantom-read"]);
    assert_eq!(lost_ids(&r), ["p\"1", "q"]);
}

// ---- lost-write, exhaustively over small histories, against the page's words ----

/// One write of the small histories: its kind, how it ended, and the earlier writes it observed.
#[derive(Clone, Copy, Debug)]
struct W {
    delete: bool,
    /// "ok", "info", "fail" or "pending".
    end: &'static str,
    /// Bit i: observed write i.
    observed: u32,
}

/// Bit i of the result: write i is lost, by the page's lost-write definition read literally.
fn lost_by_the_page(ws: &[W], present: u32, gc: bool, cart: bool) -> u32 {
    let n = ws.len();
    // anc[j]: the strict ancestors of j by observed, transitively.
    let mut anc = vec![0u32; n];
    for j in 0..n {
        for i in 0..j {
            if ws[j].observed >> i & 1 == 1 {
                anc[j] |= anc[i] | 1 << i;
            }
        }
    }
    let ancestor_of_present =
        |i: usize| (0..n).any(|p| present >> p & 1 == 1 && anc[p] >> i & 1 == 1);
    let is_present = |i: usize| present >> i & 1 == 1;
    // The items of each put's value: what it observed's items (puts' only) plus its own.
    let mut items = vec![0u32; n];
    for j in 0..n {
        if ws[j].delete {
            continue;
        }
        items[j] = 1 << j;
        for i in 0..j {
            if ws[j].observed >> i & 1 == 1 && !ws[i].delete {
                items[j] |= items[i];
            }
        }
    }
    let final_items: u32 = (0..n)
        .filter(|&p| is_present(p))
        .map(|p| items[p])
        .fold(0, |a, b| a | b);
    let mut lost = 0;
    for i in 0..n {
        if ws[i].end != "ok" {
            continue;
        }
        let mut is_lost = !is_present(i) && !ancestor_of_present(i);
        if is_lost && gc {
            if ws[i].delete {
                // No loss unless a write it observed, directly or transitively, is present.
                is_lost = (0..n).any(|p| anc[i] >> p & 1 == 1 && is_present(p));
            } else {
                // Excused by a descendant delete that did not end fail.
                let excused =
                    (0..n).any(|d| ws[d].delete && ws[d].end != "fail" && anc[d] >> i & 1 == 1);
                is_lost = !excused;
            }
        }
        if !is_lost && cart && !ws[i].delete && final_items >> i & 1 == 0 {
            // Unless a delete lies between: a descendant delete, present or an ancestor of a
            // present write (with gc, the checker also counts one that did not end fail).
            let between = (0..n).any(|d| {
                ws[d].delete
                    && anc[d] >> i & 1 == 1
                    && (is_present(d) || ancestor_of_present(d) || (gc && ws[d].end != "fail"))
            });
            is_lost = !between;
        }
        if is_lost {
            lost |= 1 << i;
        }
    }
    lost
}

fn small_history(ws: &[W], present: u32, gc: bool, cart: bool) -> H {
    let workload = if cart { "cart" } else { "register" };
    let mut h = H::new().config_with(workload, json!({"tombstone_gc": gc}));
    let id = |i: usize| format!("w{i}");
    let mut values: Vec<Value> = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let observed: Vec<String> = (0..i)
            .filter(|&o| w.observed >> o & 1 == 1)
            .map(id)
            .collect();
        let observed: Vec<&str> = observed.iter().map(String::as_str).collect();
        let p = i as u64 + 1;
        let me = id(i);
        let value = if w.delete {
            Value::Null
        } else if cart {
            let mut items: Vec<String> = vec![me.clone()];
            for o in 0..i {
                if w.observed >> o & 1 == 1 && !ws[o].delete {
                    for item in values[o].as_array().unwrap() {
                        items.push(item.as_str().unwrap().to_owned());
                    }
                }
            }
            items.sort();
            items.dedup();
            json!(items)
        } else {
            json!(me)
        };
        values.push(value.clone());
        let f = if w.delete { "delete" } else { "put" };
        h = if w.delete {
            h.delete(p, "k", &me, &observed)
        } else {
            h.put_value(p, "k", &me, value, &observed)
        };
        h = match w.end {
            "ok" => h.ok(p, f, "k", &me, None),
            "pending" => h,
            end => h.end(p, end, f, "k", &me),
        };
    }
    let finals: Vec<S> = (0..ws.len())
        .filter(|&i| present >> i & 1 == 1)
        .map(|i| S::valued(&id(i), values[i].clone()))
        .collect();
    h.phase("heal").phase("final").replicas("k", &finals)
}

#[test]
fn lost_write_every_small_history_agrees_with_the_page() {
    // Three writes on one key: each a put or a delete, ended ok, info, fail or pending (then it
    // is the process's last event), observing any set of the earlier ones; any set of them
    // present in the final state; with and without tombstone_gc, register and cart.
    let ends = ["ok", "info", "fail", "pending"];
    let mut checked = 0;
    for kinds in 0..8u32 {
        for e in 0..64u32 {
            for obs in 0..8u32 {
                let ws: Vec<W> = (0..3)
                    .map(|i| W {
                        delete: kinds >> i & 1 == 1,
                        end: ends[(e >> (2 * i) & 3) as usize],
                        observed: match i {
                            0 => 0,
                            1 => obs & 1,
                            _ => obs >> 1,
                        },
                    })
                    .collect();
                for present in 0..8u32 {
                    for gc in [false, true] {
                        for cart in [false, true] {
                            let expected = lost_by_the_page(&ws, present, gc, cart);
                            let r = small_history(&ws, present, gc, cart).check();
                            let got = lost_ids(&r)
                                .iter()
                                .map(|w| 1u32 << w[1..].parse::<u32>().unwrap())
                                .fold(0, |a, b| a | b);
                            assert_eq!(
                                got,
                                expected,
                                "{ws:?} present {present:03b} gc {gc} cart {cart}: {}",
                                summary(&r)
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 8 * 64 * 8 * 8 * 4);
}

// ---- quorum-read-miss, exhaustively over small histories, against the page's words ----

/// The writes a strict-quorum read missed, by the page: acknowledged (ok) earlier in the history
/// than the read's invoke, neither returned nor an ancestor (by observed) of a returned write, with
/// no excusing fault between the ack and the read's completion; in v1 (and, as the checker reads
/// the page, with tombstone_gc) not a delete invoked before the read completed, nor an ancestor of
/// one (a delete that ended fail took no effect and counts for nothing).
fn missed_by_the_page(
    ws: &[W],
    at: &[(u64, Option<u64>)],
    read: (u64, u64),
    returned: u32,
    fault: Option<u64>,
    lenient: bool,
) -> Vec<String> {
    let n = ws.len();
    let mut anc = vec![0u32; n];
    for j in 0..n {
        for i in 0..j {
            if ws[j].observed >> i & 1 == 1 {
                anc[j] |= anc[i] | 1 << i;
            }
        }
    }
    let mut missed = Vec::new();
    for i in 0..n {
        let Some(ack) = at[i].1.filter(|_| ws[i].end == "ok") else {
            continue;
        };
        if ack >= read.0 {
            continue;
        }
        let covered = (0..n).any(|r| returned >> r & 1 == 1 && (r == i || anc[r] >> i & 1 == 1));
        let exempt = lenient
            && (0..n).any(|d| {
                ws[d].delete
                    && ws[d].end != "fail"
                    && at[d].0 < read.1
                    && (d == i || anc[d] >> i & 1 == 1)
            });
        let excused = fault.is_some_and(|f| ack < f && f < read.1);
        if !covered && !exempt && !excused {
            missed.push(format!("w{i}"));
        }
    }
    missed
}

#[test]
fn quorum_read_miss_every_small_history_agrees_with_the_page() {
    let ends = ["ok", "info", "fail"];
    let (mut checked, mut flagged) = (0, 0);
    // The events in order: w0 invoke (slot 0), w0 end (1), w1 invoke (2), w1 end (3); the read's
    // invoke goes before slot `ri`, its completion before slot `rc` (4: at the end), a wipe of a
    // replica before slot `fi` (5: none).
    for kinds in 0..4u32 {
        for e in 0..9u32 {
            for obs in 0..2u32 {
                let ws: Vec<W> = (0..2)
                    .map(|i| W {
                        delete: kinds >> i & 1 == 1,
                        end: ends[(if i == 0 { e % 3 } else { e / 3 }) as usize],
                        observed: if i == 1 { obs } else { 0 },
                    })
                    .collect();
                for ri in 0..=4u32 {
                    for rc in ri..=4u32 {
                        for fi in 0..=5u32 {
                            for returned in 0..4u32 {
                                for (v1, gc) in [(false, false), (false, true), (true, false)] {
                                    let got = qrm_small(&ws, ri, rc, fi, returned, v1, gc);
                                    checked += 1;
                                    let (r, expected) = got;
                                    flagged += usize::from(!expected.is_empty());
                                    let missed: Vec<String> =
                                        match all(&r, Kind::QuorumReadMiss).first() {
                                            Some(Finding::QuorumReadMiss(q)) => {
                                                let mut m = q.missed.clone();
                                                m.sort();
                                                m
                                            }
                                            _ => Vec::new(),
                                        };
                                    assert_eq!(
                                        missed,
                                        expected,
                                        "{ws:?} read {ri}..{rc} fault {fi} returned {returned:02b} v1 {v1} gc {gc}: {}",
                                        summary(&r)
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000 && flagged > 1_000, "{checked} {flagged}");
}

/// Builds and checks one small quorum history; returns the results and the page's missed writes.
fn qrm_small(
    ws: &[W],
    ri: u32,
    rc: u32,
    fi: u32,
    returned: u32,
    v1: bool,
    gc: bool,
) -> (Results, Vec<String>) {
    let mut config = json!({"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,"workload":"register",
        "seed":1,"fsync":{"policy":"always"},"node":{"sloppy_quorum":false},"tombstone_gc":gc});
    if !v1 {
        config["history_format"] = json!(2);
    }
    let mut h =
        H::new().raw(json!({"process":"harness","type":"info","f":"config","value":config}));
    let mut index = 1u64; // the config is index 1; H numbers lines from 1
    let mut at: Vec<(u64, Option<u64>)> = vec![(0, None); ws.len()];
    let mut read = (0u64, 0u64);
    let mut fault = None;
    let id = |i: usize| format!("w{i}");
    let sibling = |i: usize| {
        if ws[i].delete {
            S::tombstone(&id(i))
        } else {
            S::new(&id(i))
        }
    };
    let sibs: Vec<S> = (0..ws.len())
        .filter(|&i| returned >> i & 1 == 1)
        .map(sibling)
        .collect();
    for slot in 0..=5u32 {
        if slot == fi && slot < 5 {
            index += 1;
            fault = Some(index);
            h = h.nemesis_on("wipe", "n2");
        }
        if slot == ri {
            index += 1;
            read.0 = index;
            h = h.get(9, "k");
        }
        if slot == rc {
            index += 1;
            read.1 = index;
            h = h.ok_get(9, "k", &sibs);
        }
        if slot >= 4 {
            continue;
        }
        let i = (slot / 2) as usize;
        let w = ws[i];
        let me = id(i);
        let p = i as u64 + 1;
        let f = if w.delete { "delete" } else { "put" };
        let observed: Vec<String> = (0..i)
            .filter(|&o| w.observed >> o & 1 == 1)
            .map(id)
            .collect();
        let observed: Vec<&str> = observed.iter().map(String::as_str).collect();
        index += 1;
        if slot % 2 == 0 {
            at[i].0 = index;
            h = if w.delete {
                h.delete(p, "k", &me, &observed)
            } else {
                h.put(p, "k", &me, &observed)
            };
        } else {
            at[i].1 = Some(index);
            h = if w.end == "ok" {
                h.ok(p, f, "k", &me, None)
            } else {
                h.end(p, w.end, f, "k", &me)
            };
        }
    }
    let all_sibs: Vec<S> = (0..ws.len()).map(sibling).collect();
    let h = h.phase("heal").phase("final").replicas("k", &all_sibs);
    let expected = missed_by_the_page(ws, &at, read, returned, fault, v1);
    (h.check(), expected)
}

// ---- More processes and figures ----

#[test]
fn a_process_whose_operation_failed_or_succeeded_may_invoke_again() {
    let h = a(reg())
        .put(1, "k", "f", &["a"])
        .end(1, "fail", "put", "k", "f");
    let h = h.get(1, "k").ok_get(1, "k", &[sa()]);
    ok(&finals(h, &[sa()]).check());
}

#[test]
fn consistency_window_runs_from_the_ack_to_the_start_of_the_last_read_that_missed_it() {
    // a acked at 3 ms; reads start at 10 ms (miss), 20 ms (see), 30 ms (miss), 40 ms (see): every
    // read that starts after 30 ms sees it, so its window is 27 ms.
    let mut h = a(reg());
    for (i, (start, sees)) in [(10, false), (20, true), (30, false), (40, true)]
        .into_iter()
        .enumerate()
    {
        let p = 10 + i as u64;
        let sibs = if sees { vec![sa()] } else { vec![] };
        h = h
            .get(p, "k")
            .at(start * 1_000_000)
            .ok_get(p, "k", &sibs)
            .at(start * 1_000_000 + 500_000);
    }
    let r = finals(h, &[sa()]).check();
    ok(&r);
    assert_eq!(warnings(&r), ["stale-read"]);
    let v = serde_json::to_value(&r).unwrap();
    let w = &v["stats"]["consistency_window_ns"];
    assert_eq!(
        (&w["count"], &w["max"], &w["never"]),
        (&json!(1), &json!(27_000_000), &json!(0)),
        "{w}"
    );
}

#[test]
fn lost_write_every_small_v1_history_with_contexts_agrees_with_the_page() {
    // v1: "a put or delete there also observed every delete on its key, invoked before it, whose
    // dot its context covers". Write i is acknowledged with the dot (n1, i + 1); its context is
    // the clock "n1=c" for c up to i (0: no context).
    let ends = ["ok", "info", "fail"];
    for kinds in 0..8u32 {
        for e in 0..27u32 {
            for obs in 0..8u32 {
                for ctx in 0..6u32 {
                    let contexts = [0, ctx % 2, ctx / 2];
                    let ws: Vec<W> = (0..3)
                        .map(|i| W {
                            delete: kinds >> i & 1 == 1,
                            end: ends[(e / 3u32.pow(i) % 3) as usize],
                            observed: match i {
                                0 => 0,
                                1 => obs & 1,
                                _ => obs >> 1,
                            },
                        })
                        .collect();
                    // The page's substitute, as observed entries.
                    let mut with_ctx = ws.clone();
                    for (b, w) in with_ctx.iter_mut().enumerate() {
                        for (d, earlier) in ws.iter().enumerate().take(b) {
                            let dot = d as u32 + 1;
                            if earlier.delete && earlier.end == "ok" && contexts[b] >= dot {
                                w.observed |= 1 << d;
                            }
                        }
                    }
                    for present in 0..8u32 {
                        for gc in [false, true] {
                            let expected = lost_by_the_page(&with_ctx, present, gc, false);
                            let h = small_v1_history(&ws, &contexts, present, gc);
                            let r = h.check();
                            let got = lost_ids(&r)
                                .iter()
                                .map(|w| 1u32 << w[1..].parse::<u32>().unwrap())
                                .fold(0, |a, b| a | b);
                            assert_eq!(
                                got,
                                expected,
                                "{ws:?} contexts {contexts:?} present {present:03b} gc {gc}: {}",
                                summary(&r)
                            );
                        }
                    }
                }
            }
        }
    }
}

fn small_v1_history(ws: &[W], contexts: &[u32], present: u32, gc: bool) -> H {
    let mut h = H::new().raw(json!({"process":"harness","type":"info","f":"config",
        "value":{"n":3,"r":2,"w":2,"workload":"register","tombstone_gc":gc}}));
    let id = |i: usize| format!("w{i}");
    for (i, w) in ws.iter().enumerate() {
        let observed: Vec<String> = (0..i)
            .filter(|&o| w.observed >> o & 1 == 1)
            .map(id)
            .collect();
        let p = i as u64 + 1;
        let me = id(i);
        let f = if w.delete { "delete" } else { "put" };
        let mut invoke = json!({"process":p,"type":"invoke","f":f,"key":"k","write":me,
            "value": if w.delete { Value::Null } else { json!(me) },"observed":observed});
        if contexts[i] > 0 {
            invoke["context"] = json!(format!("n1={}", contexts[i]));
        }
        h = h.raw(invoke);
        h = match w.end {
            "ok" => h.ok(p, f, "k", &me, Some(ver(Some(("n1", i as u64 + 1)), &[]))),
            end => h.end(p, end, f, "k", &me),
        };
    }
    let finals: Vec<S> = (0..ws.len())
        .filter(|&i| present >> i & 1 == 1)
        .map(|i| {
            if ws[i].delete {
                S::tombstone(&id(i))
            } else {
                S::new(&id(i))
            }
        })
        .collect();
    h.phase("heal").phase("final").replicas("k", &finals)
}
