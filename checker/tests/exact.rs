//! An exactness audit of the checker against shared/history-format.md (v2): histories that sit on
//! the edge of one rule each, where a checker that is close but not exact would answer otherwise.
//! Each test quotes the sentence it holds the checker to.

mod support;

use dynamo_checker::Validity;
use serde_json::{Map, Value, json};
use support::{H, S, expect, finals, put_ok, sib};

/// A version with a dot and no `clock` field.
fn dot_only(node: &str, counter: u64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("dot".into(), json!([node, counter]));
    m
}

// ---- Versions: a dot without a clock ----

#[test]
fn a_put_ok_with_a_dot_and_no_clock_is_no_empty_clock() {
    // "Optional: ... the write, dot and clock of a put's ok." and "A store that reports causality
    // describes each version with: clock ...; dot (optional)". The clock is what describes a version;
    // an ok that leaves it out has not said what its writer had seen, which is not the same as saying
    // it had seen nothing (`"clock":{}`). Read as an empty clock, b's version {dot:[n1,2]} would not
    // succeed a's, and the checker would call a correct store's history a clock-regression.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = h
        .put(2, "k", "b", &["a"])
        .ok(2, "put", "k", "b", Some(dot_only("n1", 2)));
    let h = h
        .get(3, "k")
        .ok_get(3, "k", &[sib("b", ("n1", 2), &[("n1", 1)])]);
    let r = finals(h.clone(), &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    expect(&r, Validity::True, &[]);
    // What goes unjudged is said (found by review: a store that reports only dots got no
    // causality checks, silently).
    assert!(
        r.stats
            .notes
            .iter()
            .any(|n| n.starts_with("1 versions were reported with a dot and no clock")),
        "{:?}",
        r.stats.notes
    );

    // The version the reads report is then b's, and it is checked: one that does not succeed a's
    // is a regression.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = h
        .put(2, "k", "b", &["a"])
        .ok(2, "put", "k", "b", Some(dot_only("n1", 2)));
    let r = finals(h, &[sib("b", ("n1", 2), &[])]).check();
    expect(&r, Validity::False, &["clock-regression"]);

    // Likewise a read's sibling that reports a dot and no clock: b's ok reported nothing, and its
    // one sibling with a clock is the version the store made.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.get(2, "k").ok_get(2, "k", &[sib("a", ("n1", 1), &[])]);
    let h = h.put(2, "k", "b", &["a"]).ok(2, "put", "k", "b", None);
    let h = h
        .get(3, "k")
        .ok_get(3, "k", &[S::new("b").with(dot_only("n1", 2))]);
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    expect(&r, Validity::True, &[]);
}

#[test]
fn a_v1_delete_s_dot_without_a_clock_is_still_the_dot_a_context_covers() {
    // v1: "a put or delete there also observed every delete on its key, invoked before it, whose dot
    // its `context` covers". A delete whose ok reports its dot and no clock has a dot all the same.
    let h = H::new().config_v1("register");
    let h = put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .delete(2, "k", "d", &["a"])
        .ok(2, "delete", "k", "d", Some(dot_only("n1", 2)));
    let h = h
        .put_ctx(3, "k", "b", &[], json!({"n1": 2}))
        .ok(3, "put", "k", "b", None);
    let r = finals(h, &[S::new("b")]).check();
    expect(&r, Validity::True, &[]);
}

// ---- failed-write-visible: what a put's observed list records ----

#[test]
fn a_failed_write_in_a_put_s_observed_list_appeared_in_a_read() {
    // "`observed`: the write ids of the sibling values that the read whose context this put
    // carries returned ... the client saw exactly those." and "failed-write-visible: a write whose
    // put ended fail appears in a read". A put that lists f in `observed` is the record of a read that
    // returned f, whether or not that read is a `get` of this history: f, which "certainly did not
    // take effect", was seen.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "k", "f", &["a"]).end(2, "fail", "put", "k", "f");
    let h = put_ok(h, 3, "b", &["a", "f"], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    expect(&r, Validity::False, &["failed-write-visible"]);
    let Some(dynamo_checker::Finding::FailedWriteVisible(v)) =
        r.anomalies[&dynamo_checker::Kind::FailedWriteVisible].first()
    else {
        unreachable!()
    };
    assert_eq!(
        (
            v.write.write.as_str(),
            v.seen_in.source,
            v.seen_in.write.as_deref()
        ),
        ("f", "observed", Some("b"))
    );
    assert_eq!(v.seen_in.siblings, ["a", "f"]);

    // The same with an info f: it may have taken effect, so seeing it is no anomaly.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "k", "f", &["a"]).end(2, "info", "put", "k", "f");
    let h = put_ok(h, 3, "b", &["a", "f"], ("n1", 2), &[("n1", 1)]);
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    expect(&r, Validity::True, &[]);

    // A failed write of another key named in k's observed list is not that write appearing: the
    // read of k returned a write id no put or delete invoked on k, a phantom read.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .put(2, "other", "f", &[])
        .end(2, "fail", "put", "other", "f");
    let h = put_ok(h, 3, "b", &["a", "f"], ("n1", 2), &[("n1", 1)]);
    let h = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).replica("other", "n1", &[]);
    expect(&h.check(), Validity::False, &["phantom-read"]);
}

// ---- divergence: a replica that reports no version ----

#[test]
fn divergence_a_sibling_reported_without_its_version_is_not_another_version() {
    // "divergence: ... the replicas of a key hold different sibling sets (sets of (write, version))"
    // and "Optional: ... dot, clock". A replica state that leaves out a sibling's dot and clock has
    // not said that it holds another version of that write: it has said nothing about the version.
    // Comparing it as a version of its own would call replicas that hold the same writes divergent.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[])
        .phase("heal")
        .phase("final");
    let r = h
        .clone()
        .replica("k", "n1", &[sib("a", ("n1", 1), &[])])
        .replica("k", "n2", &[S::new("a")])
        .replica("k", "n3", &[sib("a", ("n1", 1), &[])])
        .check();
    expect(&r, Validity::True, &[]);
    // Where two replicas both report a version of one write, the versions are compared: here n1's
    // and n3's differ, although n2, which reports none, agrees with each.
    let r = h
        .clone()
        .replica("k", "n1", &[sib("a", ("n1", 1), &[])])
        .replica("k", "n2", &[S::new("a")])
        .replica("k", "n3", &[sib("a", ("n1", 1), &[("n2", 1)])])
        .check();
    expect(&r, Validity::False, &["divergence"]);
    // An unreported version stands for one version, not for any number: one copy of `a` with no
    // version against two versions of `a` (siblings of one write) are different sets, and so are
    // two copies against one (found by review: both passed as agreeing).
    let two_versions = [sib("a", ("n1", 1), &[]), sib("a", ("n2", 1), &[])];
    let r = h
        .clone()
        .replica("k", "n1", &[S::new("a")])
        .replica("k", "n2", &two_versions)
        .check();
    expect(&r, Validity::False, &["divergence"]);
    let r = h
        .clone()
        .replica("k", "n1", &[sib("a", ("n1", 1), &[]), S::new("a")])
        .replica("k", "n2", &[sib("a", ("n1", 1), &[])])
        .check();
    expect(&r, Validity::False, &["divergence"]);
    // And a write that one replica holds and another does not is a divergence, versions or not.
    let r = h
        .replica("k", "n1", &[S::new("a")])
        .replica("k", "n2", &[])
        .check();
    expect(&r, Validity::False, &["divergence"]);
}

// ---- phantom-read: what a put's observed list records ----

#[test]
fn an_unknown_write_in_a_put_s_observed_list_is_a_phantom_read() {
    // "`observed`: the write ids of the sibling values that the read whose context this put carries
    // returned" and "phantom-read: a read ... returned a write id that no put or delete invoked on
    // that key". b's list names z, which nothing invoked, and y, a write of another key: the read b
    // was based on returned both.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h.put(2, "other", "y", &[]).ok(2, "put", "other", "y", None);
    let h = put_ok(h, 3, "b", &["a", "z", "y"], ("n1", 2), &[("n1", 1)]);
    let h = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).replica("other", "n1", &[S::new("y")]);
    let r = h.check();
    expect(&r, Validity::False, &["phantom-read"]);
    let found: Vec<(String, &str, Option<String>)> = r.anomalies
        [&dynamo_checker::Kind::PhantomRead]
        .iter()
        .map(|f| match f {
            dynamo_checker::Finding::PhantomRead(p) => {
                (p.write.clone(), p.read.source, p.read.write.clone())
            }
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        found,
        [
            ("z".to_owned(), "observed", Some("b".to_owned())),
            ("y".to_owned(), "observed", Some("b".to_owned()))
        ]
    );

    // A write of this key named in the list is no phantom, even one invoked after the put (that
    // read cannot have returned it, but it was invoked: the graph notes the entry).
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = put_ok(h, 3, "b", &["a", "c"], ("n1", 2), &[("n1", 1)]);
    let h = h.put(4, "k", "c", &[]).end(4, "info", "put", "k", "c");
    let r = finals(h, &[sib("b", ("n1", 2), &[("n1", 1)])]).check();
    expect(&r, Validity::True, &[]);
}
