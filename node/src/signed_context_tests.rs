//! Contexts the cluster signed ([`crate::auth`], "Signed contexts"), at the core. Found by an
//! audit and reproduced on real processes: a put's context was taken on trust, so a client could
//! claim versions that never existed. With `n2` down, a put through `n1` with the context
//! `n2.a=1000` was stored on `n1` and `n3`; `n2` restarted, took a blind put and acknowledged it
//! as `(n2.a, 1)`, and seconds later every replica held only the forged write: the acknowledged
//! one was covered by the forged clock and dropped. And one put with 4,095 made-up actors filled
//! the key's clock to its bound, so that every later put through another node was refused.
//! These tests run the nodes with a cluster secret; an open node (none) checks nothing.

use super::*;
use crate::auth::{CONTEXT_MAC_BYTES, CONTEXT_NOT_SIGNED, ContextMac, Secret};
use crate::version::CONTEXT_ENTRIES_MAX;

fn secret() -> Option<Secret> {
    Some(Secret::new(b"a cluster secret of this test".to_vec()).unwrap())
}

/// A read's context and its MAC.
fn signed_context(r: &Response) -> (VClock, Option<ContextMac>) {
    match r {
        Response::Get {
            context,
            context_mac,
            ..
        } => (context.clone(), *context_mac),
        other => panic!("not a get answer: {other:?}"),
    }
}

/// Whether `r` is the refusal of a context the cluster did not sign.
fn refused_as_unsigned(r: &Response) -> bool {
    matches!(r, Response::Error { error }
        if error.kind == ErrorKind::BadRequest
            && error.definite
            && error.stored_on.is_empty()
            && error.message == CONTEXT_NOT_SIGNED)
}

/// Every replica of `key` holds exactly the values `want` (sorted).
fn replicas_hold(net: &Net, key: &[u8], want: &[&[u8]]) {
    for node in ["n1", "n2", "n3"] {
        let mut held: Vec<Vec<u8>> = net
            .state(node, key)
            .siblings
            .iter()
            .map(|s| s.value.clone())
            .collect();
        held.sort();
        let want: Vec<Vec<u8>> = want.iter().map(|v| v.to_vec()).collect();
        assert_eq!(held, want, "{node}");
    }
}

/// The audit's first case: a context naming a counter n2 never issued is refused, so n2's next
/// acknowledged write of the key, made after a restart, is kept on every replica.
#[test]
fn a_forged_context_is_refused_and_the_blind_put_after_it_is_not_lost() {
    let mut net = Net::with_secret(3, 3, 2, 2, secret());
    let n2 = net.nodes["n2"].0.actor().clone();
    net.isolate("n2");
    let mut forged = VClock::new();
    forged.raise(&n2, 1_000);
    let unsigned = net.put_signed("n1", b"k5", b"evil", forged.clone(), None);
    assert!(refused_as_unsigned(&unsigned), "{unsigned:?}");
    let made_up = net.put_signed(
        "n1",
        b"k5",
        b"evil",
        forged,
        Some([0x5a; CONTEXT_MAC_BYTES]),
    );
    assert!(refused_as_unsigned(&made_up), "{made_up:?}");
    assert!(net.state("n1", b"k5").is_empty() && net.state("n3", b"k5").is_empty());

    net.cut.clear();
    net.restart("n2");
    let good = net.put("n2", b"k5", b"good", VClock::new());
    assert!(matches!(good, Response::Put { .. }), "{good:?}");
    net.advance(1_000);
    net.deliver_all();
    for node in ["n1", "n2", "n3"] {
        assert_eq!(
            values(&net.get(node, b"k5")),
            vec![b"good".to_vec()],
            "{node}"
        );
    }
    net.advance(1_000);
    net.deliver_all();
    replicas_hold(&net, b"k5", &[b"good"]);
}

/// The audit's second case: a context of 4,095 made-up actors, which would fill the key's clock
/// to its bound and lock the key, is refused; the key goes on taking puts through every node.
#[test]
fn a_context_of_made_up_actors_cannot_lock_a_key() {
    let mut net = Net::with_secret(3, 3, 2, 2, secret());
    assert!(matches!(
        net.put("n1", b"k", b"first", VClock::new()),
        Response::Put { .. }
    ));
    let mut wide = VClock::new();
    for i in 0..CONTEXT_ENTRIES_MAX {
        wide.raise(&format!("a{i:05}"), 1);
    }
    let refused = net.put("n1", b"k", b"lock", wide);
    assert!(refused_as_unsigned(&refused), "{refused:?}");
    for node in ["n1", "n2", "n3"] {
        assert!(net.state(node, b"k").clock.len() <= 1, "{node}");
    }
    for (i, node) in ["n2", "n3", "n1"].into_iter().enumerate() {
        let (clock, mac) = signed_context(&net.get(node, b"k"));
        let value = format!("update {i}");
        let r = net.put_signed(node, b"k", value.as_bytes(), clock, mac);
        assert!(matches!(r, Response::Put { .. }), "{node}: {r:?}");
    }
    replicas_hold(&net, b"k", &[b"update 2"]);
}

/// The MAC covers the key: the signed context of one key is refused for another.
#[test]
fn a_context_read_from_another_key_is_refused() {
    let mut net = Net::with_secret(3, 3, 2, 2, secret());
    for key in [b"a", b"b"] {
        net.put("n1", key, b"v", VClock::new());
    }
    let (clock, mac) = signed_context(&net.get("n1", b"a"));
    assert!(mac.is_some() && !clock.is_empty());
    let r = net.put_signed("n2", b"b", b"crossed", clock.clone(), mac);
    assert!(refused_as_unsigned(&r), "{r:?}");
    let r = net.put_signed("n2", b"a", b"right key", clock, mac);
    assert!(matches!(r, Response::Put { .. }), "{r:?}");
}

/// A MAC with a bit flipped, or a clock raised, widened or cut under its MAC, is
/// refused; and a context signed by a cluster with another secret too.
#[test]
fn a_tampered_context_or_mac_is_refused() {
    let mut net = Net::with_secret(3, 3, 2, 2, secret());
    net.put("n1", b"k", b"one", VClock::new());
    net.put("n2", b"k", b"two", VClock::new());
    let (clock, mac) = signed_context(&net.get("n3", b"k"));
    let mac = mac.expect("signed");
    assert_eq!(clock.len(), 2, "{clock}");
    for bit in [0, 7, 8 * CONTEXT_MAC_BYTES - 1] {
        let mut flipped = mac;
        flipped[bit / 8] ^= 1 << (bit % 8);
        let r = net.put_signed("n1", b"k", b"x", clock.clone(), Some(flipped));
        assert!(refused_as_unsigned(&r), "bit {bit}: {r:?}");
    }
    let (first, counter) = {
        let (a, c) = clock.iter().next().unwrap();
        (a.clone(), c)
    };
    let mut raised = clock.clone();
    raised.raise(&first, counter + 1);
    let mut widened = clock.clone();
    widened.raise("n9.z", 1);
    let mut cut = VClock::new();
    cut.raise(&first, counter);
    for (what, tampered) in [("raised", raised), ("widened", widened), ("cut", cut)] {
        let r = net.put_signed("n2", b"k", b"x", tampered, Some(mac));
        assert!(refused_as_unsigned(&r), "{what}: {r:?}");
    }
    // Another cluster's signature of the same key and clock.
    let mut other = Net::with_secret(
        3,
        3,
        2,
        2,
        Some(Secret::new(b"another cluster's secret".to_vec()).unwrap()),
    );
    other.put("n1", b"k", b"one", VClock::new());
    other.put("n2", b"k", b"two", VClock::new());
    let (their_clock, their_mac) = signed_context(&other.get("n3", b"k"));
    assert_eq!(their_clock, clock, "the same actors and counters");
    let r = net.put_signed("n1", b"k", b"x", their_clock, their_mac);
    assert!(refused_as_unsigned(&r), "{r:?}");
    replicas_hold(&net, b"k", &[b"one", b"two"]);
}

/// Read-modify-write through any node: a context one node signed passes on every other, a put
/// forwarded by a node that owns no replica carries its MAC to the owner, and the context a put
/// answers with (its clock and dot) is signed for the next put too.
#[test]
fn read_modify_write_works_through_any_node() {
    let mut net = Net::with_secret(5, 3, 2, 2, secret());
    let key = (0..1_000u32)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| {
            !net.nodes["n1"]
                .0
                .ring()
                .preference_list(k, 3)
                .contains(&"n1".into())
        })
        .expect("a key n1 does not own");
    net.put("n2", &key, b"a", VClock::new());
    net.put("n3", &key, b"b", VClock::new());
    let nodes = ["n1", "n2", "n3", "n4", "n5"];
    for (i, reader) in nodes.into_iter().enumerate() {
        let writer = nodes[(i + 1) % nodes.len()];
        let read = net.get(reader, &key);
        let (clock, mac) = signed_context(&read);
        assert!(mac.is_some(), "{reader} signs");
        let value = format!("merged by {writer}");
        match net.put_signed(writer, &key, value.as_bytes(), clock, mac) {
            Response::Put { .. } => {}
            other => panic!("read via {reader}, put via {writer}: {other:?}"),
        }
        assert_eq!(values(&net.get(writer, &key)), vec![value.into_bytes()]);
    }
    // The context of a put's answer: n1 (no owner) forwards both puts.
    let first = net.put("n1", &key, b"blind", VClock::new());
    let Response::Put {
        version,
        context_mac,
        ..
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(context_mac.is_some());
    let next = net.put_signed(
        "n1",
        &key,
        b"after",
        version.covering_context(),
        context_mac,
    );
    assert!(matches!(next, Response::Put { .. }), "{next:?}");
    let read = net.get("n4", &key);
    assert!(values(&read).contains(&b"after".to_vec()), "{read:?}");
    assert!(
        !values(&read).contains(&b"blind".to_vec()),
        "superseded: {read:?}"
    );
}

/// An open node (no cluster secret) signs nothing and takes any context, as before.
#[test]
fn an_open_node_takes_unsigned_contexts() {
    let mut net = Net::new(3, 3, 2, 2);
    net.put("n1", b"k", b"one", VClock::new());
    let (clock, mac) = signed_context(&net.get("n2", b"k"));
    assert_eq!(mac, None, "an open node signs nothing");
    let r = net.put("n3", b"k", b"two", clock);
    assert!(
        matches!(
            r,
            Response::Put {
                context_mac: None,
                ..
            }
        ),
        "{r:?}"
    );
    let mut made_up = VClock::new();
    made_up.raise("n9.z", 5);
    let r = net.put("n1", b"k", b"three", made_up);
    assert!(matches!(r, Response::Put { .. }), "{r:?}");
}
