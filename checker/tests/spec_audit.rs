//! An audit of the checker against shared/history-format.md, rule by rule, on hand-written histories
//! written from the page alone: each test quotes the sentence it holds the checker to.

mod support;

use dynamo_checker::{Kind, summary};
use support::{H, S, finals, kinds, put_ok, sib};

// ---- failed-write-visible ----

#[test]
fn a_failed_write_named_in_a_read_of_another_key_is_a_phantom_not_the_failed_write() {
    // "failed-write-visible: a write whose put ended fail appears in a read or in the final state."
    // "phantom-read: a read or a replica state returned a write id that no put or delete invoked on
    // that key": a read of k that names f, a failed put on another key, returned a phantom; f itself
    // did not appear in any read of its key.
    let h = put_ok(H::new().config("register"), 1, "a", &[], ("n1", 1), &[]);
    let h = h
        .put(2, "other", "f", &[])
        .end(2, "fail", "put", "other", "f");
    let h = h
        .get(3, "k")
        .ok_get(3, "k", &[sib("a", ("n1", 1), &[]), S::new("f")]);
    let h = finals(h, &[sib("a", ("n1", 1), &[])]).replica("other", "n1", &[]);
    let r = h.check();
    assert_eq!(kinds(&r), ["phantom-read"], "{}", summary(&r));
    assert!(!r.anomalies.contains_key(&Kind::FailedWriteVisible));
}
