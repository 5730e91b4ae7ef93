//! Issue 11 at the core: what a client or a damaged peer sends never panics the core, never
//! loses an acknowledged write, and never moves the ring to a version or shape no node could
//! have made. One test per attack of the issue that reaches the core; the network's attacks are
//! in `tests/hostile.rs` (real processes), the shell's in `shell/tests.rs`.

use super::*;
use crate::fuzz::FrameGen;
use crate::ring::VERSION_MAX;
use crate::version::{CLOCK_ENTRIES_MAX, CONTEXT_ENTRIES_MAX, COUNTER_MAX};
use crate::wire::{Frame, STATE_BYTES_MAX, VALUE_BYTES_MAX};

fn message(r: &Response) -> String {
    match r {
        Response::Error { error } => error.message.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

fn ring_state(net: &Net, at: &str, version: u64) -> PeerMessage {
    let ring = net.nodes[at].0.ring().clone();
    PeerMessage::RingState {
        ring: ring.with_version_for_fuzzing(version),
        addrs: net.nodes[at].0.addrs.clone(),
    }
}

fn send(net: &mut Net, from: &str, to: &str, m: PeerMessage) {
    net.queue.push_back((from.into(), to.into(), m));
    net.deliver_all();
}

/// Item 2: a `RingState` of version `u64::MAX` (or past the limit, or implausibly far ahead) is
/// not adopted, and joins and leaves go on; a ring at the limit refuses a change instead of
/// panicking.
#[test]
fn a_ring_of_version_u64_max_does_not_brick_the_ring() {
    let mut net = Net::new(4, 3, 2, 2);
    for version in [u64::MAX, VERSION_MAX + 1, 2 + RING_VERSION_JUMP_MAX] {
        let forged = ring_state(&net, "n2", version);
        send(&mut net, "n2", "n1", forged);
        assert_eq!(net.nodes["n1"].0.ring().version(), 1, "version {version}");
    }
    let token = net.request("n1", Request::Leave);
    net.deliver_all();
    match net.reply(token) {
        Some(Response::Membership { ring, .. }) => assert_eq!(ring.version(), 2),
        other => panic!("{other:?}"),
    }
    // A ring that reached the limit (within plausible jumps, one at a time) refuses changes.
    let mut net = Net::new(3, 3, 2, 2);
    let core = &mut net.nodes.get_mut("n1").unwrap().0;
    let at_limit = core.ring().clone().with_version_for_fuzzing(VERSION_MAX);
    core.ring = at_limit;
    let token = net.request(
        "n1",
        Request::Join {
            id: "n4".into(),
            addr: "n4:7000".into(),
            weight: 1,
        },
    );
    let refused = net.reply(token).expect("answered at once");
    assert!(message(&refused).contains("limit"), "{refused:?}");
    let token = net.request("n1", Request::Leave);
    assert!(message(&net.reply(token).unwrap()).contains("limit"));
}

/// Items 3 and 5: a context at the counter limit, or so long that the new clock would pass the
/// entry bound, is refused with a clear error; the longest context accepted makes a state that
/// decodes (what a node stores, a peer and a restart can read).
#[test]
fn contexts_at_the_counter_and_entry_limits_are_refused_and_what_is_stored_decodes() {
    let mut net = Net::new(3, 3, 2, 2);
    let mut at_limit = VClock::new();
    at_limit.raise("someone", COUNTER_MAX);
    let refused = net.put("n1", b"k", b"v", at_limit);
    assert!(message(&refused).contains("counter limit"), "{refused:?}");

    // The longest context of actors the key's clock does not hold: with the coordinator's own,
    // the new clock has the most entries a clock may have.
    let mut long = VClock::new();
    for i in 0..CLOCK_ENTRIES_MAX - 1 {
        long.raise(&format!("a{i:05}"), 1);
    }
    match net.put("n1", b"k", b"v", long.clone()) {
        Response::Put { .. } => {}
        other => panic!("the longest context is accepted: {other:?}"),
    }
    for node in ["n1", "n2", "n3"] {
        let state = net.state(node, b"k");
        assert_eq!(state.clock.len(), CLOCK_ENTRIES_MAX, "{node}");
        let bytes = postcard::to_stdvec(&state).unwrap();
        assert_eq!(postcard::from_bytes::<KeyVersions>(&bytes).unwrap(), state);
    }
    // What a read returns, a client may write back with (found by the attack of 2026-12-02: the
    // read's context of 4,096 entries was refused as one over the 4,095 a context could have,
    // so the key could never be updated or deleted again). A coordinator whose actor the clock
    // holds makes a clock of as many entries; another would make one more, which is refused.
    let ctx = context(&net.get("n1", b"k"));
    assert_eq!(ctx.len(), CONTEXT_ENTRIES_MAX);
    match net.put("n1", b"k", b"again", ctx.clone()) {
        Response::Put { .. } => {}
        other => panic!("a put with a read's context is refused: {other:?}"),
    }
    let refused = net.put("n2", b"k", b"again", ctx);
    assert!(message(&refused).contains("more than"), "{refused:?}");
    long.raise("one-more", 1);
    let refused = net.put("n1", b"k2", b"v", long.clone());
    assert!(message(&refused).contains("more than"), "{refused:?}");
    long.raise("two-more", 1);
    let refused = net.put("n1", b"k2", b"v", long);
    assert!(message(&refused).contains("exceeds"), "{refused:?}");
}

/// A client cannot brick a key with a context one below the counter limit. Found by the hostile
/// audit: an anonymous client's put with the context `n1.x=2^53-2`, sent to n1, was accepted and
/// made the version (n1.x, 2^53-1); every context read from the key then held a counter at the
/// limit, so every later put and delete with it was refused on every node ("the context is at
/// the counter limit"), and blind puts could only pile up siblings to [`SIBLINGS_MAX`]: the key
/// could never be updated or deleted again. A node now never issues a counter at the limit: when
/// its next one for a key would reach it, it takes a new actor id first, and the contexts clients
/// read stay below the limit.
#[test]
fn a_context_one_below_the_counter_limit_cannot_brick_a_key() {
    let mut net = Net::new(3, 3, 2, 2);
    for node in ["n1", "n2", "n3"] {
        let before = net.nodes[node].0.actor().clone();
        let mut forged = VClock::new();
        forged.raise(&before, COUNTER_MAX - 1);
        match net.put(node, b"k", node.as_bytes(), forged) {
            Response::Put { version, .. } => {
                let dot = version.dot.expect("dotted");
                assert!(dot.counter < COUNTER_MAX, "{node} issued {dot:?}");
                assert_ne!(dot.actor, before, "{node} took a new actor");
            }
            other => panic!("{node}: {other:?}"),
        }
    }
    let read = net.get("n2", b"k");
    assert_eq!(values(&read).len(), 3, "{read:?}");
    let ctx = context(&read);
    assert!(ctx.counter_max() < COUNTER_MAX, "{ctx}");
    for node in ["n1", "n2", "n3"] {
        let ctx = context(&net.get(node, b"k"));
        match net.put(node, b"k", b"reconciled", ctx) {
            Response::Put { .. } => {}
            other => panic!("{node}: a put with a read's context is refused: {other:?}"),
        }
    }
    let ctx = context(&net.get("n3", b"k"));
    let token = net.request(
        "n3",
        Request::Put {
            key: b"k".to_vec(),
            value: Vec::new(),
            tombstone: true,
            context: ctx,
            context_mac: None,
        },
    );
    net.deliver_all();
    match net.reply(token) {
        Some(Response::Put { .. }) => {}
        other => panic!("a delete with a read's context is refused: {other:?}"),
    }
    match net.get("n1", b"k") {
        Response::Get { siblings, .. } => {
            assert!(
                siblings.iter().all(|s| s.tombstone),
                "deleted: {siblings:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

/// Item 6: puts that would make a key's sibling set outgrow a frame are refused with a clear
/// error; what is stored always fits, and reads of the key are answered.
#[test]
fn a_key_never_outgrows_the_frame() {
    let mut net = Net::new(3, 3, 2, 2);
    let mut refused = None;
    for i in 0..10u8 {
        match net.put("n1", b"big", &vec![i; VALUE_BYTES_MAX], VClock::new()) {
            Response::Put { .. } => {}
            other => {
                refused = Some(message(&other));
                break;
            }
        }
    }
    let refused = refused.expect("a put past the frame's room is refused");
    assert!(refused.contains("bytes, more than"), "{refused}");
    for node in ["n1", "n2", "n3"] {
        let bytes = postcard::to_stdvec(&net.state(node, b"big")).unwrap();
        assert!(bytes.len() <= STATE_BYTES_MAX, "{node}: {}", bytes.len());
    }
    let Response::Get { siblings, .. } = net.get("n2", b"big") else {
        panic!("the key is readable")
    };
    assert!(siblings.len() >= 6);
    let response = Frame::Response {
        id: 1,
        response: net.get("n3", b"big"),
    };
    assert!(
        crate::wire::encode(&response).is_ok(),
        "its answer fits a frame"
    );
}

/// Merging two states within the bounds into one past them is refused: both replicas keep what
/// they hold rather than store a state no node could send.
#[test]
fn a_merge_past_the_bounds_is_refused() {
    let mut net = Net::new(3, 3, 2, 2);
    let mut big = KeyVersions::new();
    for i in 0..5 {
        big.put(
            &format!("p{i}"),
            &VClock::new(),
            vec![1; VALUE_BYTES_MAX],
            false,
            0,
        );
    }
    let mut other = KeyVersions::new();
    for i in 0..5 {
        other.put(
            &format!("q{i}"),
            &VClock::new(),
            vec![2; VALUE_BYTES_MAX],
            false,
            0,
        );
    }
    let key = b"merged".to_vec();
    let repair = |state: &KeyVersions| PeerMessage::Repair {
        key: key.clone(),
        state: state.clone(),
    };
    let owner = net.nodes["n1"].0.ring().preference_list(&key, 3)[0].clone();
    let peer = if owner == "n1" { "n2" } else { "n1" };
    send(&mut net, peer, &owner, repair(&big));
    assert_eq!(net.state(&owner, &key), big);
    send(&mut net, peer, &owner, repair(&other));
    assert_eq!(
        net.state(&owner, &key),
        big,
        "the merge past the bound is refused"
    );
}

/// A peer (one that holds the cluster secret, damaged or hostile) cannot brick a key with a state
/// that decodes but that no node makes: an actor name no node could have, or a counter at the
/// limit, which every later read's context would carry and every put with it be refused for.
/// Found by the attack of 2026-12-02: `Store`s with the clocks `{"a/b":1}` and
/// `{"z":2^53-1}` merged, spread to every replica, and the key could never be updated again.
#[test]
fn a_peer_cannot_brick_a_key_with_a_state_no_node_makes() {
    let mut net = Net::new(3, 3, 2, 2);
    assert!(matches!(
        net.put("n1", b"k", b"v", VClock::new()),
        Response::Put { .. }
    ));
    let owner = net.nodes["n1"].0.ring().preference_list(b"k", 3)[0].clone();
    let peer = if owner == "n1" { "n2" } else { "n1" };
    let good = net.state(&owner, b"k");
    let mut bad_actor = good.clone();
    bad_actor.clock.raise("a/b", 1);
    let mut at_limit = good.clone();
    at_limit.clock.raise("z", COUNTER_MAX);
    let mut bad_dot = good.clone();
    bad_dot.siblings[0].dot.as_mut().expect("dotted").actor = "a b".into();
    for (what, state) in [
        ("bad actor", bad_actor),
        ("counter at the limit", at_limit),
        ("bad dot", bad_dot),
    ] {
        assert!(
            state.validate(crate::version::Rule::Dotted).is_err(),
            "{what}"
        );
        let repair = PeerMessage::Repair {
            key: b"k".to_vec(),
            state,
        };
        send(&mut net, peer, &owner, repair);
        assert_eq!(net.state(&owner, b"k"), good, "{what}: merged");
    }
    let ctx = context(&net.get(&owner, b"k"));
    assert!(matches!(
        net.put(&owner, b"k", b"w", ctx),
        Response::Put { .. }
    ));
}

/// n4 is cut off, n1 suspects it and has not heard from it for longer than a forget asks.
fn n4_gone_for_n1(net: &mut Net) {
    net.isolate("n4");
    net.nodes
        .get_mut("n1")
        .unwrap()
        .0
        .handle_peer_status(&"n4".into(), false);
    net.advance(HEARD_FRESH_MS + 1);
}
/// Item 1, the remedy: `forget` removes a member gone for good; its partitions go to the others
/// and every acknowledged key stays readable. Refused for a live member and for the node itself.
#[test]
fn forget_removes_a_member_gone_for_good_and_keeps_every_acknowledged_key() {
    let mut net = Net::new(4, 3, 2, 2);
    let keys: Vec<Vec<u8>> = (0..20).map(|i| format!("key-{i}").into_bytes()).collect();
    for key in &keys {
        assert!(matches!(
            net.put("n1", key, b"v", VClock::new()),
            Response::Put { .. }
        ));
    }
    let forget = |net: &mut Net, id: &str| {
        let token = net.request("n1", Request::Forget { id: id.into() });
        net.deliver_all();
        net.reply(token).expect("answered at once")
    };
    assert!(message(&forget(&mut net, "n1")).contains("leave"));
    net.advance(100);
    assert!(
        message(&forget(&mut net, "n4")).contains("alive"),
        "heard from recently"
    );
    n4_gone_for_n1(&mut net);
    match forget(&mut net, "n4") {
        Response::Membership { ring, .. } => assert!(!ring.contains("n4")),
        other => panic!("{other:?}"),
    }
    // Gossip spreads the ring; anti-entropy refills the new owners.
    for _ in 0..40 {
        net.advance(500);
        net.deliver_all();
    }
    for node in ["n1", "n2", "n3"] {
        assert!(!net.nodes[node].0.ring().contains("n4"), "{node}");
    }
    for key in &keys {
        assert_eq!(values(&net.get("n2", key)), vec![b"v".to_vec()], "{key:?}");
        let owners = net.nodes["n1"].0.ring().preference_list(key, 3);
        for owner in owners {
            assert!(
                !net.state(&owner, key).is_empty(),
                "{owner} refilled {key:?}"
            );
        }
    }
}

/// Item 4 at the core: a `StoreAck` from a node that was not sent the write does not count
/// towards W (the shell makes sure the sender is who the link authenticated).
#[test]
fn an_ack_from_a_node_that_was_not_asked_does_not_count() {
    let mut net = Net::new(4, 3, 2, 2);
    let key = key_owned_by_n1(&net);
    let replicas = replicas(&net, &key);
    let stranger = ["n2", "n3", "n4"]
        .into_iter()
        .find(|n| !replicas.iter().any(|r| r == n))
        .unwrap();
    for r in &replicas {
        if r != "n1" {
            net.isolate(r);
        }
    }
    configure(&mut net, |c| c.sloppy_quorum = false);
    let token = net.send_put("n1", &key, b"v", VClock::new());
    net.queue.clear();
    for req in 0..64 {
        net.queue.push_back((
            stranger.into(),
            "n1".into(),
            PeerMessage::StoreAck { req, owner: true },
        ));
    }
    net.deliver_all();
    assert!(net.reply(token).is_none(), "no quorum from forged acks");
}

/// Hostile messages of every type, from a member (a damaged peer) and from clients, through the
/// real encoding (what does not decode is refused there): the core never panics, its invariants
/// hold, acknowledged writes stay readable, and the ring neither moves nor breaks.
fn hostile_run(seed: u64, steps: usize) -> Result<(), TestCaseError> {
    let mut net = Net::new(3, 3, 2, 2);
    let acked: Vec<Vec<u8>> = (0..4).map(|i| format!("acked-{i}").into_bytes()).collect();
    for key in &acked {
        let stored = matches!(
            net.put("n1", key, b"kept", VClock::new()),
            Response::Put { .. }
        );
        prop_assert!(stored);
    }
    let ring = net.nodes["n1"].0.ring().clone();
    let mut keys = acked.clone();
    keys.extend((0..4).map(|i| format!("f{i}").into_bytes()));
    let mut frames = FrameGen::new(seed, keys);
    for _ in 0..steps {
        let to = ["n1", "n2", "n3"][frames.below(3) as usize];
        let from = ["n1", "n2", "n3"][frames.below(3) as usize];
        let message = if frames.below(8) == 0 {
            frames.hostile_ring_state(ring.partition_count())
        } else {
            frames.peer_message(false)
        };
        let request = frames.data_request();
        // Through the wire, as a node would receive them: frames that do not decode stop there.
        let peer = Frame::Peer {
            from: from.into(),
            message,
        };
        let client = Frame::Request { id: 1, request };
        for frame in [peer, client] {
            let mut body = crate::wire::encode(&frame).unwrap_or_default();
            if frames.below(10) == 0 {
                frames.mutate(&mut body);
            }
            let Ok(frame) = crate::wire::decode(&body) else {
                continue;
            };
            let now = net.now();
            let (core, store) = net.nodes.get_mut(to).unwrap();
            match frame {
                Frame::Peer { message, .. } if from != to => {
                    core.handle_peer(now, from.into(), message, store)
                }
                // A client's connection refuses admin requests before the core sees them
                // (`crate::shell`), and a mutated frame can decode as one (a `Leave`, which
                // rightly moves the ring): the core sees only what a client may send.
                Frame::Request { request, .. } if !request.is_admin() => {
                    net.next_token += 1;
                    let token = ClientToken {
                        conn: 9,
                        id: net.next_token,
                        share: Share::Clients,
                    };
                    core.handle_request(now, token, request, store);
                }
                _ => {}
            }
            net.flush(&to.into());
        }
        net.deliver_all();
        if frames.below(4) == 0 {
            net.advance(300);
        }
    }
    net.advance(5_000);
    net.deliver_all();
    for node in ["n1", "n2", "n3"] {
        prop_assert_eq!(net.nodes[node].0.ring(), &ring, "{} kept its ring", node);
    }
    for key in &acked {
        let response = net.get("n2", key);
        let Response::Get { siblings, .. } = &response else {
            return Err(TestCaseError::fail(format!("{key:?}: {response:?}")));
        };
        prop_assert!(
            siblings.iter().any(|s| s.value == b"kept" && !s.tombstone),
            "{:?} lost its acknowledged value: {:?}",
            key,
            response
        );
        for node in ["n1", "n2", "n3"] {
            let state = net.state(node, key);
            prop_assert!(state.check_bounds(STATE_BYTES_MAX).is_ok());
            prop_assert!(state.validate(crate::version::Rule::Dotted).is_ok());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn hostile_messages_never_break_the_core(seed in any::<u64>(), steps in 1usize..120) {
        hostile_run(seed, steps)?;
    }
}

/// Memory: reads of a large key whose replicas do not answer are refused as overloaded once the
/// rounds in flight hold [`ROUNDS_HELD_BYTES_MAX`] bytes, well before the count of rounds is
/// reached (10,000 reads of a 1 MiB key held 3.3 GB of a real node before the bound); the rounds
/// give their bytes back when they expire, and the key reads again.
#[test]
fn rounds_in_flight_are_bounded_by_the_bytes_they_hold() {
    let mut net = Net::new(3, 3, 2, 2);
    let big = vec![b'x'; VALUE_BYTES_MAX];
    assert!(matches!(
        net.put("n1", b"big", &big, VClock::new()),
        Response::Put { .. }
    ));
    net.isolate("n1");
    let mut refused = None;
    for i in 0..ROUNDS_IN_FLIGHT_MAX {
        let token = net.request(
            "n1",
            Request::Get {
                key: b"big".to_vec(),
            },
        );
        net.deliver_all();
        if let Some(reply) = net.reply(token) {
            refused = Some((i, reply));
            break;
        }
    }
    let (reads, reply) = refused.expect("refused before the count of rounds");
    assert!(message(&reply).contains("bytes"), "{reply:?}");
    let clients_bytes_max = ROUNDS_HELD_BYTES_MAX - ADMIN_ROUNDS_HELD_BYTES_RESERVED;
    let held = net.nodes["n1"].0.rounds_held_bytes();
    assert!(held >= clients_bytes_max, "{held}");
    assert!(held < clients_bytes_max + 4 * VALUE_BYTES_MAX, "{held}");
    assert!(
        reads < 200,
        "{reads} reads of a 1 MiB key before the refusal"
    );
    // The admins' reserve is left: an admin's reads still start, up to the node's bound.
    let mut admin_reads = 0;
    loop {
        let read = Request::Get {
            key: b"big".to_vec(),
        };
        let token = net.request_on("n1", 2, Share::Admins, read);
        net.deliver_all();
        if let Some(reply) = net.reply(token) {
            assert!(message(&reply).contains("bytes"), "{reply:?}");
            break;
        }
        admin_reads += 1;
        assert!(
            admin_reads <= CONNECTION_ROUNDS_MAX,
            "no bound on the admins' reads"
        );
    }
    assert!(
        admin_reads >= 5,
        "{admin_reads} reads of the admins' reserve"
    );
    let held = net.nodes["n1"].0.rounds_held_bytes();
    assert!(held >= ROUNDS_HELD_BYTES_MAX, "{held}");
    assert!(held < ROUNDS_HELD_BYTES_MAX + 4 * VALUE_BYTES_MAX, "{held}");
    net.advance(1_000);
    assert_eq!(net.nodes["n1"].0.rounds_held_bytes(), 0);
    net.cut.clear();
    let token = net.request(
        "n1",
        Request::Get {
            key: b"big".to_vec(),
        },
    );
    net.deliver_all();
    match net.reply(token) {
        Some(Response::Get { siblings, .. }) => assert_eq!(siblings[0].value, big),
        other => panic!("{other:?}"),
    }
}

/// Whether a request started a round (it has no answer yet) or was refused as overloaded (with
/// the message's words).
fn started(net: &mut Net, token: ClientToken) -> Result<(), String> {
    net.deliver_all();
    match net.reply(token) {
        None => Ok(()),
        Some(Response::Error { error }) if error.kind == ErrorKind::Overloaded => {
            Err(error.message)
        }
        Some(other) => panic!("{other:?}"),
    }
}

/// A peer's forward of a get to `at`, looked at as its answer leaves (none: a round started).
fn forward_get(net: &mut Net, at: &str, req: u64, share: Share) -> Option<Response> {
    let forward = PeerMessage::Forward {
        req,
        request: Request::Get { key: b"k".to_vec() },
        share,
    };
    let now = net.now();
    let (core, store) = net.nodes.get_mut(at).unwrap();
    core.handle_peer(now, "n2".into(), forward, store);
    let released = core
        .poll_ready(store)
        .apply(store, core.config())
        .expect("a memory store does not fail");
    released.messages.into_iter().find_map(|(_, m)| match m {
        PeerMessage::ForwardReply { req: r, response } if r == req => Some(response),
        _ => None,
    })
}

/// Denial of service: anonymous clients pipelining requests to a node whose replicas do not
/// answer (or that never read the answers) filled the rounds in flight, which everyone shared,
/// and 39% to 100% of an admin's puts were refused as overloaded. Clients now spend all but the
/// admins' reserve ([`ADMIN_ROUNDS_RESERVED`]), one connection at most
/// [`CONNECTION_ROUNDS_MAX`] of it; a forward spends the share of the client it came from.
#[test]
fn clients_that_fill_the_node_leave_the_admins_their_reserve() {
    let mut net = Net::new(3, 3, 2, 2);
    net.isolate("n1");
    let get = || Request::Get { key: b"k".to_vec() };
    let clients_max = ROUNDS_IN_FLIGHT_MAX - ADMIN_ROUNDS_RESERVED;
    for i in 0..clients_max {
        let conn = 1_000 + (i / CONNECTION_ROUNDS_MAX) as u64;
        let token = net.request_on("n1", conn, Share::Clients, get());
        if let Err(message) = started(&mut net, token) {
            panic!("client request {i} refused: {message}");
        }
    }
    // A new client is refused, with the reason.
    let token = net.request_on("n1", 1, Share::Clients, get());
    let refused = started(&mut net, token).expect_err("the clients' share is spent");
    assert!(refused.contains("clients'"), "{refused}");
    // So is a peer's forward of a client's request.
    let reply = forward_get(&mut net, "n1", 1, Share::Clients).expect("refused at once");
    assert!(message(&reply).contains("clients'"), "{reply:?}");
    // An admin's request starts, and so does a forward of an admin's.
    let token = net.request_on("n1", 2, Share::Admins, get());
    assert_eq!(started(&mut net, token), Ok(()));
    assert_eq!(forward_get(&mut net, "n1", 2, Share::Admins), None);
    // The admins fill the rest, and then the node's bound holds for everyone.
    for i in 2..ADMIN_ROUNDS_RESERVED {
        let conn = 100 + (i / CONNECTION_ROUNDS_MAX) as u64;
        let token = net.request_on("n1", conn, Share::Admins, get());
        if let Err(message) = started(&mut net, token) {
            panic!("admin request {i} refused: {message}");
        }
    }
    let token = net.request_on("n1", 3, Share::Admins, get());
    let refused = started(&mut net, token).expect_err("the node's bound");
    assert!(
        refused.contains(&ROUNDS_IN_FLIGHT_MAX.to_string()),
        "{refused}"
    );
    // The rounds expire, and clients are served again.
    net.advance(1_000);
    let token = net.request_on("n1", 1, Share::Clients, get());
    assert_eq!(started(&mut net, token), Ok(()));
}

/// Clients' get rounds grow as their replicas' states come in: reads of a 1 MiB key admitted
/// together within the clients' share of bytes came to hold more than the node's whole bound once
/// the replicas answered, and an admin's read was refused as overloaded (a helper's attack on real
/// nodes found it). The admins' reserve is counted against what admins hold.
#[test]
fn clients_rounds_grown_past_the_bound_leave_the_admins_their_reserve() {
    let mut net = Net::new(3, 3, 2, 2);
    let big = vec![b'x'; VALUE_BYTES_MAX];
    assert!(matches!(
        net.put("n1", b"big", &big, VClock::new()),
        Response::Put { .. }
    ));
    // n3 never answers, so that each round, answered at R = 2, waits for it and holds n2's state.
    net.cut.insert(("n1".into(), "n3".into()));
    net.cut.insert(("n3".into(), "n1".into()));
    let read = || Request::Get {
        key: b"big".to_vec(),
    };
    // Admitted together, before any replica answers (one step's worth of a busy node).
    let tokens: Vec<ClientToken> = (0..400).map(|_| net.request("n1", read())).collect();
    net.deliver_all();
    let answered = tokens.iter().filter(|&&t| net.reply(t).is_some()).count();
    assert!(answered > 0);
    let held = net.nodes["n1"].0.rounds_held_bytes();
    assert!(
        held > ROUNDS_HELD_BYTES_MAX,
        "{held}: the clients' rounds did not grow"
    );
    let token = net.request("n1", read());
    let refused = started(&mut net, token).expect_err("the clients' share is spent");
    assert!(refused.contains("clients'"), "{refused}");
    let token = net.request_on("n1", 2, Share::Admins, read());
    net.deliver_all();
    match net.reply(token) {
        Some(Response::Get { siblings, .. }) => assert_eq!(siblings[0].value, big),
        other => panic!("the admin's read: {other:?}"),
    }
}

/// One connection pipelining requests it does not wait for takes at most
/// [`CONNECTION_ROUNDS_MAX`] rounds: past it its requests are refused, another connection's
/// start, and the connection is served again once its rounds are over.
#[test]
fn a_connection_has_a_bound_of_requests_in_flight() {
    let mut net = Net::new(3, 3, 2, 2);
    net.isolate("n1");
    let get = || Request::Get { key: b"k".to_vec() };
    for i in 0..CONNECTION_ROUNDS_MAX {
        let token = net.request_on("n1", 7, Share::Clients, get());
        if let Err(message) = started(&mut net, token) {
            panic!("request {i} refused: {message}");
        }
    }
    let token = net.request_on("n1", 7, Share::Clients, get());
    let refused = started(&mut net, token).expect_err("the connection's bound");
    assert!(refused.contains("this connection"), "{refused}");
    let token = net.request_on("n1", 8, Share::Clients, get());
    assert_eq!(started(&mut net, token), Ok(()));
    // An admin's connection has the same bound.
    for _ in 0..CONNECTION_ROUNDS_MAX {
        let token = net.request_on("n1", 9, Share::Admins, get());
        assert_eq!(started(&mut net, token), Ok(()));
    }
    let token = net.request_on("n1", 9, Share::Admins, get());
    assert!(started(&mut net, token).is_err());
    net.advance(1_000);
    let token = net.request_on("n1", 7, Share::Clients, get());
    assert_eq!(started(&mut net, token), Ok(()));
}

/// A client that sends one request at a time is never refused by its connection's bound, however
/// fast it goes: a round answered at its quorum stays in the table for its last replica (a put's
/// ack, a get's repair) until its deadline, and with a strict quorum and one owner cut off every
/// round lingers so. Counted against the connection, they had such a client refused after 64
/// operations within a deadline (a review found it).
#[test]
fn answered_rounds_do_not_count_against_their_connection() {
    let mut net = Net::new(3, 3, 2, 2);
    configure(&mut net, |c| c.sloppy_quorum = false);
    net.cut.insert(("n1".into(), "n3".into()));
    net.cut.insert(("n3".into(), "n1".into()));
    for i in 0..4 * CONNECTION_ROUNDS_MAX {
        let request = if i % 2 == 0 {
            Request::Put {
                key: format!("k{}", i % 7).into_bytes(),
                value: b"v".to_vec(),
                tombstone: false,
                context: VClock::new(),
                context_mac: None,
            }
        } else {
            Request::Get {
                key: format!("k{}", i % 7).into_bytes(),
            }
        };
        let token = net.request_on("n1", 5, Share::Clients, request);
        net.deliver_all();
        match net.reply(token) {
            Some(Response::Put { .. } | Response::Get { .. }) => {}
            other => panic!("operation {i}: {other:?}"),
        }
    }
    // The rounds linger, waiting for n3, and count for the node's bounds all the same.
    assert!(net.nodes["n1"].0.rounds.len() >= 2 * CONNECTION_ROUNDS_MAX);
}

/// A forward spends the share of the client it came from, as the forwarding node says: with the
/// clients' share of the owner spent, a client's put taken by a node that owns no replica of its
/// key is refused there as overloaded, and an admin's is coordinated. (The core tests above give
/// the owner a `Forward` by hand; this one has the forwarding node make it.)
#[test]
fn a_forward_carries_the_share_of_the_client_it_came_from() {
    let mut net = Net::new(4, 3, 2, 2);
    let key = (0..100)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| !replicas(&net, k).contains(&NodeId::from("n1")))
        .expect("a key n1 does not own");
    let owners = replicas(&net, &key);
    let owner = owners[0].clone();
    // The owner's reads wait for its fellow owners, which it cannot reach; n1 reaches it.
    for other in &owners[1..] {
        net.cut.insert((owner.clone(), other.clone()));
        net.cut.insert((other.clone(), owner.clone()));
    }
    let get = || Request::Get { key: key.clone() };
    for i in 0..ROUNDS_IN_FLIGHT_MAX - ADMIN_ROUNDS_RESERVED {
        let conn = 1_000 + (i / CONNECTION_ROUNDS_MAX) as u64;
        let token = net.request_on(&owner, conn, Share::Clients, get());
        assert_eq!(started(&mut net, token), Ok(()), "read {i}");
    }
    let put = || Request::Put {
        key: key.clone(),
        value: b"v".to_vec(),
        tombstone: false,
        context: VClock::new(),
        context_mac: None,
    };
    let token = net.request_on("n1", 1, Share::Clients, put());
    let refused = started(&mut net, token).expect_err("the owner's clients' share is spent");
    assert!(refused.contains("clients'"), "{refused}");
    let token = net.request_on("n1", 2, Share::Admins, put());
    assert_eq!(
        started(&mut net, token),
        Ok(()),
        "the admin's put is coordinated"
    );
}

/// A peer's `Forward` carrying an admin request: a node forwards only a client's put, but the
/// core started whatever a `Forward` carried, admin verbs included. A `Forward { Leave }` from
/// n2 made n1 leave the ring, a `Forward { Forget }` removed a member and a `Forward { Join }`
/// added one: the shell refuses every request on a peer link ("a peer link carries peer
/// messages, not requests"), and the forward went around that rule. It is now refused, with an
/// answer saying why, and the ring stays as it was.
#[test]
fn a_forwarded_admin_request_is_refused_and_the_ring_stays() {
    let mut net = Net::new(4, 3, 2, 2);
    let ring = net.nodes["n1"].0.ring().clone();
    n4_gone_for_n1(&mut net);
    net.cut.clear();
    let admin = [
        Request::Leave,
        Request::Forget { id: "n4".into() },
        Request::Join {
            id: "n9".into(),
            addr: "n9:7000".into(),
            weight: 64,
        },
        Request::Status,
        Request::ReplicaState { key: b"k".to_vec() },
    ];
    for (req, request) in admin.into_iter().enumerate() {
        let what = format!("{request:?}");
        let forward = PeerMessage::Forward {
            req: req as u64,
            request,
            share: Share::Admins,
        };
        // The answer goes back to n2 as a `ForwardReply`: look at it as it leaves.
        let now = net.now();
        let (core, store) = net.nodes.get_mut("n1").unwrap();
        core.handle_peer(now, "n2".into(), forward, store);
        let released = core
            .poll_ready(store)
            .apply(store, core.config())
            .expect("a memory store does not fail");
        let answer = released.messages.iter().find_map(|(to, m)| match m {
            PeerMessage::ForwardReply { response, .. } if to == "n2" => Some(response.clone()),
            _ => None,
        });
        let answer = answer.unwrap_or_else(|| panic!("{what}: no answer"));
        assert!(message(&answer).contains("forward"), "{what}: {answer:?}");
        assert_eq!(net.nodes["n1"].0.ring(), &ring, "{what} moved the ring");
    }
}

/// Four nodes, n1's table of known nodes filled by one gossip of 300 made-up names.
fn n1_flooded_with_made_up_nodes() -> Net {
    let mut net = Net::new(4, 3, 2, 2);
    let PeerMessage::RingState { ring, mut addrs } = ring_state(&net, "n2", 1) else {
        unreachable!()
    };
    for i in 0..300 {
        addrs.insert(format!("x{i:03}").into(), format!("x{i:03}:7000"));
    }
    send(&mut net, "n2", "n1", PeerMessage::RingState { ring, addrs });
    net
}

/// A peer's gossip naming hundreds of made-up nodes: a node learns the address of every node a
/// `RingState` names, member or not, up to [`KNOWN_NODES_MAX`], and never forgets one. One frame
/// of 300 made-up names filled n1's table: from then on it refused every join ("cannot add n5:
/// its address is refused or unknown") and every ring that added a node, so it kept an old ring
/// for good while the others moved on (n2 took n5 in; n1 never did). A member's address now
/// always finds room: it takes the place of a known node that is no member.
#[test]
fn made_up_nodes_in_gossip_cannot_keep_a_node_from_new_members() {
    let mut net = n1_flooded_with_made_up_nodes();
    assert_eq!(net.nodes["n1"].0.ring().version(), 1);
    // An admin adds n5 through n1, whose table is full.
    let join = Request::Join {
        id: "n5".into(),
        addr: "n5:7000".into(),
        weight: 1,
    };
    let token = net.request("n1", join.clone());
    match net.reply(token) {
        Some(Response::Membership { ring, .. }) => assert!(ring.contains("n5"), "{ring:?}"),
        other => panic!("n1 refused a join: {other:?}"),
    }
    // A ring that another member made with a new node is adopted too.
    let mut net = n1_flooded_with_made_up_nodes();
    let token = net.request("n2", join);
    assert!(matches!(
        net.reply(token),
        Some(Response::Membership { .. })
    ));
    let grown = net.nodes["n2"].0.ring().clone();
    let gossip = ring_state(&net, "n2", grown.version());
    send(&mut net, "n2", "n1", gossip);
    assert_eq!(net.nodes["n1"].0.ring(), &grown, "n1 took the new ring");
}

/// The damaged disk, checksums intact: hint records no node could have written (a bug of an
/// earlier version, a hand-edited or restored file). A hint n1 holds "for n1" made it send a
/// `Store` to itself at every hint round (a debug build panicked: "a node never messages
/// itself"); a hint for a node nobody knows was sent to nowhere at every round, for ever, and
/// its write never reached the key's owners; a hint of a key no client could send was sent to
/// its owner, who refused it, at every round, for ever. A hint for this node itself or for a
/// node it does not know is now taken into its own state (the hand-over takes it to the owners
/// from there); a hint of a bad key is dropped as damage.
#[test]
fn hints_on_disk_no_node_could_have_written_are_taken_in_or_dropped() {
    let mut net = Net::new(3, 3, 2, 2);
    let mut hinted = KeyVersions::new();
    hinted.put("z.1", &VClock::new(), b"hinted".to_vec(), false, 1);
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        store.write_hint("n1", b"self-key", Some(&hinted)).unwrap();
        store
            .write_hint("nobody", b"stranger-key", Some(&hinted))
            .unwrap();
        store.write_hint("n2", b"", Some(&hinted)).unwrap();
        let long = vec![b'x'; crate::wire::KEY_BYTES_MAX + 1];
        store.write_hint("n2", &long, Some(&hinted)).unwrap();
    }
    net.restart("n1");
    for _ in 0..10 {
        net.advance(500);
        net.deliver_all();
    }
    assert_eq!(net.nodes["n1"].0.hints_pending(), 0);
    assert!(net.nodes["n1"].1.hint_keys().is_empty(), "records deleted");
    for key in [&b"self-key"[..], b"stranger-key"] {
        assert_eq!(
            values(&net.get("n2", key)),
            vec![b"hinted".to_vec()],
            "{key:?}"
        );
    }
}

/// Anti-entropy from a peer naming one leaf 256 times (`AeKeys` with `reply`): n1 answered
/// each name with every key of the leaf it holds, so one key of a megabyte came back as 256
/// `AeRepair`s of it, a quarter of a gigabyte made in one step from one small frame (and up to
/// 512 distinct large keys' states, however many bytes, from a frame naming every leaf). The
/// leaves are now taken once each, and the states one message makes this node send are bounded
/// in bytes too ([`AE_REPAIR_BYTES_PER_MESSAGE_MAX`]).
#[test]
fn anti_entropy_repairs_per_message_are_bounded_in_bytes_and_leaves_counted_once() {
    let mut net = Net::new(3, 3, 2, 2);
    let big = vec![b'v'; VALUE_BYTES_MAX];
    // Keys of one partition, more megabytes of them than the bound.
    let ring = net.nodes["n1"].0.ring().clone();
    let partition = ring.partition_of(b"big-0");
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("big-{i}").into_bytes())
        .filter(|k| ring.partition_of(k) == partition)
        .take(AE_REPAIR_BYTES_PER_MESSAGE_MAX / VALUE_BYTES_MAX + 8)
        .collect();
    for key in &keys {
        let stored = net.put("n1", key, &big, VClock::new());
        assert!(matches!(stored, Response::Put { .. }), "{stored:?}");
    }
    let fanout = net.nodes["n1"].0.config().merkle_fanout;
    let tree = crate::merkle::Tree::new(fanout);
    let ae_keys = |leaves: Vec<u32>, partition: u32| PeerMessage::AeKeys {
        partition,
        leaves,
        entries: Vec::new(),
        from: None,
        through: None,
        reply: true,
    };
    let key = &keys[0];
    // One leaf named 256 times, then every leaf of the partition: all its keys differ.
    let all_leaves: Vec<u32> = (0..fanout.pow(crate::merkle::DEPTH)).collect();
    let messages = [
        ae_keys(vec![tree.leaf_of(key); 256], partition),
        ae_keys(all_leaves, partition),
    ];
    let mut repairs: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut repair_bytes = 0;
    for message in messages {
        let now = net.now();
        let (core, store) = net.nodes.get_mut("n1").unwrap();
        core.handle_peer(now, "n2".into(), message, store);
        let released = core
            .poll_ready(store)
            .apply(store, core.config())
            .expect("a memory store does not fail");
        let mut bytes = 0;
        for (_, m) in &released.messages {
            if let PeerMessage::AeRepair { key, state } = m {
                *repairs.entry(key.clone()).or_default() += 1;
                bytes += state.encoded_bytes_bound();
            }
        }
        assert!(
            bytes <= AE_REPAIR_BYTES_PER_MESSAGE_MAX + STATE_BYTES_MAX,
            "one message made {bytes} bytes of repairs"
        );
        repair_bytes += bytes;
    }
    assert_eq!(repairs.get(key), Some(&2), "once per message that named it");
    assert!(repair_bytes >= AE_REPAIR_BYTES_PER_MESSAGE_MAX);
}

/// An admin's join naming the address of another member (a copy-paste slip, or a forgery by
/// whoever holds the secret): n1 added n9 at n2's address, moved a quarter of the partitions to
/// it, and every node then dialled n2 for n9, whose handshake named n2, for good: n9 could
/// never be reached and its partitions ran on stand-ins. The join is now refused, naming the
/// member at that address; a node that left frees its address for a new one.
#[test]
fn a_join_at_another_members_address_is_refused() {
    let mut net = Net::new(3, 3, 2, 2);
    let ring = net.nodes["n1"].0.ring().clone();
    let join = |id: &str, addr: &str| Request::Join {
        id: id.into(),
        addr: addr.into(),
        weight: 1,
    };
    let token = net.request("n1", join("n9", "n2:7000"));
    let refused = net.reply(token).expect("answered at once");
    assert!(message(&refused).contains("n2"), "{refused:?}");
    assert_eq!(net.nodes["n1"].0.ring(), &ring);
    // n3 leaves; a new node may take its address.
    let token = net.request("n3", Request::Leave);
    assert!(matches!(
        net.reply(token),
        Some(Response::Membership { .. })
    ));
    let token = net.request("n3", join("n4", "n3:7000"));
    match net.reply(token) {
        Some(Response::Membership { ring, .. }) => assert!(ring.contains("n4")),
        other => panic!("{other:?}"),
    }
}

/// Whether the shell would drop `m` as too large to send: encoded in a `Frame::Peer`, with its
/// MAC, it passes [`crate::wire::FRAME_BYTES_MAX`] (`shell::write` logs it and goes on).
fn too_large_to_send(m: &PeerMessage) -> bool {
    let frame = Frame::Peer {
        from: "n1".into(),
        message: m.clone(),
    };
    let bytes = postcard::experimental::serialized_size(&frame).unwrap_or(usize::MAX);
    bytes + crate::auth::MAC_TAG_BYTES > crate::wire::FRAME_BYTES_MAX
}

/// Anti-entropy of a partition holding thousands of keys of the longest size a client may send
/// (a hostile client's, or only a large data set's): the (key, digest) entries of an `AeKeys`
/// were bounded by count alone, and 4,096 keys of 4 KiB make a message of 16 MiB, twice the
/// frame. The shell dropped every such message ("a frame too large to send"), so once both
/// replicas held a couple of thousand long keys the other lacked, no exchange of the partition
/// ever got past the leaves, in either direction: the replicas stayed apart for good. The
/// entries of one message are now bounded in bytes too ([`AE_ENTRIES_BYTES_PER_MESSAGE_MAX`]),
/// and the rest waits for the next exchange, as the count's rest does.
#[test]
fn anti_entropy_of_a_partition_of_long_keys_fits_its_frames_and_converges() {
    let mut net = Net::new(2, 2, 1, 1);
    configure(&mut net, |c| {
        c.read_repair = false;
        c.hinted_handoff = false;
    });
    // Only what the shell would send arrives.
    net.drop = too_large_to_send;
    let ring = net.nodes["n1"].0.ring().clone();
    let key_of = |side: u8, i: u32| {
        let mut key = vec![side; crate::wire::KEY_BYTES_MAX - 8];
        key.extend_from_slice(&u64::from(i).to_be_bytes());
        key
    };
    let partition = ring.partition_of(&key_of(b'a', 0));
    // Per side, more keys of the partition than the frame holds entries of.
    let keys_per_side = crate::wire::FRAME_BYTES_MAX / crate::wire::KEY_BYTES_MAX + 64;
    let keys = |side: u8| -> Vec<Vec<u8>> {
        (0..)
            .map(|i| key_of(side, i))
            .filter(|k| ring.partition_of(k) == partition)
            .take(keys_per_side)
            .collect()
    };
    let (mine, theirs) = (keys(b'a'), keys(b'b'));
    let mut state = KeyVersions::new();
    state.put("w.1", &VClock::new(), b"v".to_vec(), false, 1);
    for (node, keys) in [("n1", &mine), ("n2", &theirs)] {
        let store = &mut net.nodes.get_mut(node).unwrap().1;
        for key in keys {
            store.write_state(key, state.clone()).unwrap();
        }
        net.restart(node);
    }
    for _ in 0..60 {
        net.advance(1_000);
        net.deliver_all();
    }
    let missing = |net: &Net, node: &str, keys: &[Vec<u8>]| {
        keys.iter()
            .filter(|k| net.state(node, k).is_empty())
            .count()
    };
    assert_eq!(missing(&net, "n1", &theirs), 0, "n1 lacks keys of n2");
    assert_eq!(missing(&net, "n2", &mine), 0, "n2 lacks keys of n1");
}

/// Anti-entropy of a partition with more keys than one message carries entries of, where every
/// leaf differs (one key missing from each on n2, as after writes n2 missed everywhere). The
/// entries stopped at 4,096 with nothing said, so the receiver took every key past them for
/// missing and sent back its copies of them, keys the other already held: up to all of
/// [`AE_REPAIRS_PER_MESSAGE_MAX`] repairs (and [`AE_REPAIR_BYTES_PER_MESSAGE_MAX`] bytes) of an
/// exchange spent on nothing, every exchange while the partition differed. Each message now
/// carries a slice and says which (`AeKeys::from`, `through`), the receiver compares only
/// inside it, and the next exchange of the partition starts after it.
#[test]
fn anti_entropy_of_a_big_partition_sends_no_key_the_other_holds() {
    let mut net = Net::new(2, 2, 1, 1);
    configure(&mut net, |c| {
        c.read_repair = false;
        c.hinted_handoff = false;
    });
    let ring = net.nodes["n1"].0.ring().clone();
    let tree = crate::merkle::Tree::new(net.nodes["n1"].0.config().merkle_fanout);
    let partition = ring.partition_of(b"k-0");
    let mut keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("k-{i}").into_bytes())
        .filter(|k| ring.partition_of(k) == partition)
        .take(AE_ENTRIES_PER_MESSAGE_MAX + 2 * AE_REPAIRS_PER_MESSAGE_MAX + 100)
        .collect();
    keys.sort_by_key(|k| (tree.leaf_of(k), k.clone()));
    // The first key of every leaf is missing on n2, the last key of the partition among them.
    let mut missing: Vec<Vec<u8>> = keys
        .chunk_by(|a, b| tree.leaf_of(a) == tree.leaf_of(b))
        .map(|leaf| leaf[0].clone())
        .collect();
    missing.push(keys.last().unwrap().clone());
    let mut state = KeyVersions::new();
    state.put("w.1", &VClock::new(), b"v".to_vec(), false, 1);
    for node in ["n1", "n2"] {
        let store = &mut net.nodes.get_mut(node).unwrap().1;
        for key in keys.iter().filter(|k| node == "n1" || !missing.contains(k)) {
            store.write_state(key, state.clone()).unwrap();
        }
        net.restart(node);
    }
    let (mut repairs, mut needless) = (0, 0);
    for _ in 0..20 {
        net.advance(1_000);
        while let Some((from, to, m)) = net.queue.pop_front() {
            // n1 lacks nothing and n2 only the missing keys. (Two exchanges at once may both
            // repair a missing key: that is not counted.)
            if let PeerMessage::AeRepair { key, .. } = &m {
                repairs += 1;
                needless += usize::from(to == "n1" || !missing.contains(key));
            }
            let now = net.now();
            let (core, store) = net.nodes.get_mut(&to).unwrap();
            core.handle_peer(now, from, m, store);
            net.flush(&to);
        }
    }
    let still_missing = missing
        .iter()
        .filter(|k| net.state("n2", k).is_empty())
        .count();
    assert_eq!(still_missing, 0, "of {} keys n2 missed", missing.len());
    assert_eq!(
        needless, 0,
        "{needless} of {repairs} repairs sent a key the other held"
    );
}

/// Where a big partition's next anti-entropy slice starts is kept per co-replica. It was kept per
/// partition: with rounds of a fixed period and peers taken in turn, n2 answering n1 and n3 one
/// after the other gave n1 every other slice and n3 the others, for good, and neither pair
/// compared the whole partition (found by review). Here n2 answers the leaves of n1, then n3,
/// then n1 again: each peer gets the first slice first, and n1 then the one after it.
#[test]
fn anti_entropy_slices_of_a_big_partition_start_over_for_each_peer() {
    let mut net = Net::new(3, 3, 2, 2);
    let ring = net.nodes["n2"].0.ring().clone();
    let fanout = net.nodes["n2"].0.config().merkle_fanout;
    let partition = ring.partition_of(b"k-0");
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("k-{i}").into_bytes())
        .filter(|k| ring.partition_of(k) == partition)
        .take(AE_ENTRIES_PER_MESSAGE_MAX + 100)
        .collect();
    let mut state = KeyVersions::new();
    state.put("w.1", &VClock::new(), b"v".to_vec(), false, 1);
    let store = &mut net.nodes.get_mut("n2").unwrap().1;
    for key in &keys {
        store.write_state(key, state.clone()).unwrap();
    }
    net.restart("n2");
    // Every leaf differs from the asker's (hash 0).
    let leaves = PeerMessage::AeHashes {
        partition,
        level: crate::merkle::DEPTH,
        nodes: (0..fanout.pow(crate::merkle::DEPTH))
            .map(|l| (l, 0))
            .collect(),
    };
    let mut starts = Vec::new();
    for asker in ["n1", "n3", "n1"] {
        let now = net.now();
        let (core, store) = net.nodes.get_mut("n2").unwrap();
        core.handle_peer(now, asker.into(), leaves.clone(), store);
        let released = core
            .poll_ready(store)
            .apply(store, core.config())
            .expect("a memory store does not fail");
        let from = released.messages.iter().find_map(|(to, m)| match m {
            PeerMessage::AeKeys { from, through, .. } if to == asker => {
                Some((from.clone(), through.is_some()))
            }
            _ => None,
        });
        starts.push(from.expect("n2 answered with its keys"));
    }
    assert_eq!(
        starts[0],
        (None, true),
        "n1's first slice starts at the first key"
    );
    assert_eq!(
        starts[1],
        (None, true),
        "n3's first slice starts at the first key too"
    );
    assert!(
        starts[2].0.is_some(),
        "n1's second slice starts after its first"
    );
    assert!(!starts[2].1, "and goes through the last key");
}

/// A hand-over of many keys while a hot key is written through the node that hands them over.
/// Each key a sweep deleted took the node a new actor id (its counters for the key went with
/// the key's state), even for a key this actor never wrote: a sweep of
/// [`HANDOFF_KEYS_PER_SWEEP_MAX`] keys every [`HANDOFF_INTERVAL_MS`] made a new actor for every
/// sweep, and each write of the hot key that followed added one more entry to its clock. Clocks
/// are never pruned, and a put that would make one of more than
/// [`crate::version::CLOCK_ENTRIES_MAX`] entries is refused: a hand-over of a million keys (or
/// a peer's `Store` of keys the node does not own, handed back every sweep) would leave a hot key
/// that nobody could update or delete again. A deletion now takes a new actor only if the deleted
/// state holds a counter of the current one.
#[test]
fn a_hand_over_does_not_grow_the_clocks_of_keys_written_meanwhile() {
    let mut net = Net::new(4, 3, 2, 2);
    leave_and_settle(&mut net, "n4");
    let after_join = net.nodes["n1"].0.ring().with_member("n4", 1);
    let n1_keeps = |k: &[u8]| after_join.preference_list(k, 3).iter().any(|o| o == "n1");
    let handed: Vec<Vec<u8>> = (0..)
        .map(|i| format!("handed-{i:06}").into_bytes())
        .filter(|k| !n1_keeps(k))
        .take(8 * HANDOFF_KEYS_PER_SWEEP_MAX)
        .collect();
    let hot = (0..)
        .map(|i| format!("hot-{i}").into_bytes())
        .find(|k| n1_keeps(k))
        .unwrap();
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        let mut state = KeyVersions::new();
        state.put("w.1", &VClock::new(), b"v".to_vec(), false, 1);
        for key in &handed {
            store.write_state(key, state.clone()).unwrap();
        }
    }
    net.restart("n1");
    let actor = net.nodes["n1"].0.actor().clone();
    let token = net.request("n1", join_of("n4"));
    membership_reply(&mut net, token);
    let mut context = VClock::new();
    for _ in 0..40 {
        net.advance(HANDOFF_INTERVAL_MS);
        net.deliver_all();
        match net.put("n1", &hot, b"hot", context.clone()) {
            Response::Put { version, .. } => context = version.covering_context(),
            other => panic!("{other:?}"),
        }
    }
    assert!(
        handed.iter().all(|k| net.state("n1", k).is_empty()),
        "n1 handed every key over"
    );
    let clock = net.state("n1", &hot).clock;
    assert!(clock.len() <= 2, "the hot key's clock grew to {clock}");
    assert_eq!(
        net.nodes["n1"].0.actor(),
        &actor,
        "n1 never wrote the keys it handed over"
    );
}

/// A hand-over of keys of large values: a sweep sent up to [`HANDOFF_KEYS_PER_SWEEP_MAX`] keys
/// to each of their owners at once, each a copy of the key's state, bounded by count alone:
/// 256 keys of states of up to [`STATE_BYTES_MAX`] to three owners are gigabytes made in one
/// step (40 keys of 1 MiB made 120 MiB here), most of which the peer links' budgets then drop.
/// A sweep now stops once the states it sent pass [`HANDOFF_BYTES_PER_SWEEP_MAX`]; the next
/// sweep goes on from there.
/// A state of one version holding a value of [`VALUE_BYTES_MAX`] bytes of `fill`.
fn largest_value_state(fill: u8) -> KeyVersions {
    let mut state = KeyVersions::new();
    state.put("w.1", &VClock::new(), vec![fill; VALUE_BYTES_MAX], false, 1);
    state
}

#[test]
fn a_hand_over_sweep_is_bounded_in_bytes() {
    let mut net = Net::new(4, 3, 2, 2);
    let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("big-{i}").into_bytes()).collect();
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        for (i, key) in keys.iter().enumerate() {
            let state = largest_value_state(i as u8);
            store.write_state(key, state).unwrap();
        }
    }
    net.restart("n1");
    let token = net.request("n1", Request::Leave);
    membership_reply(&mut net, token);
    net.queue.clear();
    let mut sweeps = 0;
    while keys.iter().any(|k| !net.state("n1", k).is_empty()) {
        sweeps += 1;
        assert!(sweeps < 100, "the hand-over never ends");
        net.advance(HANDOFF_INTERVAL_MS);
        let sent: usize = net
            .queue
            .iter()
            .filter(|(from, _, _)| from == "n1")
            .filter_map(|(_, _, m)| match m {
                PeerMessage::Store { state, .. } => Some(state.encoded_bytes_bound()),
                _ => None,
            })
            .sum();
        assert!(
            sent <= HANDOFF_BYTES_PER_SWEEP_MAX + STATE_BYTES_MAX,
            "one sweep sent {sent} bytes of states"
        );
        net.deliver_all();
    }
    for key in &keys {
        let owners = net.nodes["n2"].0.ring().preference_list(key, 3);
        for owner in owners {
            assert_eq!(net.state(&owner, key).values().count(), 1, "{owner}");
        }
    }
}

/// Hints of large values for an owner that comes back: a hint round sent up to
/// [`crate::hints::HINT_DELIVERIES_IN_FLIGHT_MAX`] hints at once, bounded by count alone: 64
/// states of up to [`STATE_BYTES_MAX`] are hundreds of megabytes made in one step (40 hints of
/// 1 MiB made 40 MiB here). A round now stops once the states it sent pass
/// [`crate::hints::HINT_DELIVERY_BYTES_PER_ROUND_MAX`]; the next round goes on.
#[test]
fn a_hint_round_is_bounded_in_bytes() {
    let mut net = Net::new(4, 3, 2, 2);
    let keys: Vec<Vec<u8>> = (0..40)
        .map(|i| format!("hinted-{i}").into_bytes())
        .collect();
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        for (i, key) in keys.iter().enumerate() {
            let state = largest_value_state(i as u8);
            store.write_hint("n2", key, Some(&state)).unwrap();
        }
    }
    net.restart("n1");
    net.queue.clear();
    let mut rounds = 0;
    while net.nodes["n1"].0.hints_pending() > 0 {
        rounds += 1;
        assert!(rounds < 100, "the hints are never delivered");
        net.advance(net.nodes["n1"].0.config().hint_interval_ms);
        let sent: usize = net
            .queue
            .iter()
            .filter(|(from, to, _)| from == "n1" && to == "n2")
            .filter_map(|(_, _, m)| match m {
                PeerMessage::Store { state, .. } => Some(state.encoded_bytes_bound()),
                _ => None,
            })
            .sum();
        assert!(
            sent <= crate::hints::HINT_DELIVERY_BYTES_PER_ROUND_MAX + STATE_BYTES_MAX,
            "one round sent {sent} bytes of hints"
        );
        net.deliver_all();
    }
    for key in &keys {
        assert_eq!(net.state("n2", key).values().count(), 1);
    }
}

/// Replies to requests never sent: a `StoreAck` from a node that was not sent the write, naming
/// the request of a hint's delivery to its owner. n1 dropped its record of the delivery on that
/// ack (it checked the sender only after removing it), so the owner's own ack found nothing and
/// was ignored: a peer acking every request number kept every hint from being handed over, and
/// every hand-over of a key the node no longer owns from completing, for as long as it went on.
/// An ack from another node now leaves the delivery (and the hand-over) as it was.
#[test]
fn an_ack_from_a_node_not_sent_a_hint_leaves_its_delivery_alone() {
    let mut net = Net::new(3, 3, 2, 2);
    let mut hinted = KeyVersions::new();
    hinted.put("z.1", &VClock::new(), b"hinted".to_vec(), false, 1);
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        store
            .write_hint("n2", b"hinted-key", Some(&hinted))
            .unwrap();
    }
    net.restart("n1");
    let mut delivery = None;
    for _ in 0..20 {
        net.advance(100);
        delivery = net.queue.iter().find_map(|(from, to, m)| match m {
            PeerMessage::Store {
                req,
                hint: None,
                key,
                ..
            } if from == "n1" && to == "n2" && key == b"hinted-key" => Some(*req),
            _ => None,
        });
        if delivery.is_some() {
            break;
        }
        net.deliver_all();
    }
    let req = delivery.expect("n1 delivers its hint to n2");
    assert_eq!(net.nodes["n1"].0.hints_pending(), 1);
    // n3 acks the delivery first; n2's real ack follows as the queue is delivered.
    net.queue.push_front((
        "n3".into(),
        "n1".into(),
        PeerMessage::StoreAck { req, owner: true },
    ));
    net.deliver_all();
    assert_eq!(
        net.nodes["n1"].0.hints_pending(),
        0,
        "n2's own ack marks the hint delivered"
    );
}

/// The same for a hand-over: an ack from a node the key was not handed to leaves the record alone,
/// so the new owner's own ack settles it and the next sweep deletes the key here (before, the
/// stranger's ack dropped the record, the owner's ack found nothing, and the key went round again).
#[test]
fn an_ack_from_a_node_not_sent_a_hand_over_leaves_it_alone() {
    let mut net = Net::new(3, 1, 1, 1);
    let after_leave = net.nodes["n1"].0.ring().without_member("n1");
    let key = (0..100_000u32)
        .map(|i| format!("h{i:05}").into_bytes())
        .find(|k| after_leave.preference_list(k, 1)[0] == "n3")
        .expect("a key that n3 takes over");
    {
        let (_, store) = net.nodes.get_mut("n1").unwrap();
        let mut state = KeyVersions::new();
        state.put("n1.a", &VClock::new(), b"v".to_vec(), false, 1);
        store.write_state(&key, state).unwrap();
    }
    net.restart("n1");
    let token = net.request("n1", Request::Leave);
    assert!(matches!(
        net.reply(token),
        Some(Response::Membership { .. })
    ));
    let mut handoff = None;
    for _ in 0..4 {
        net.advance(HANDOFF_INTERVAL_MS);
        handoff = net.queue.iter().find_map(|(from, to, m)| match m {
            PeerMessage::Store {
                req,
                hint: None,
                key: k,
                ..
            } if from == "n1" && to == "n3" && *k == key => Some(*req),
            _ => None,
        });
        if handoff.is_some() {
            break;
        }
        net.deliver_all();
    }
    let req = handoff.expect("n1 hands the key to n3");
    // n2 acks the hand-over first; n3's real ack follows as the queue is delivered.
    net.queue.push_front((
        "n2".into(),
        "n1".into(),
        PeerMessage::StoreAck { req, owner: true },
    ));
    net.deliver_all();
    assert!(!net.state("n3", &key).is_empty(), "n3 holds the key");
    net.advance(HANDOFF_INTERVAL_MS);
    net.deliver_all();
    assert!(
        net.state("n1", &key).is_empty(),
        "n3's own ack settled the hand-over: the next sweep deletes the key here"
    );
}

/// A fetch reply carrying another key's state, under the number of a get round that asked for
/// this one (a late reply to a round of an earlier incarnation that had the same number: round
/// numbers start from 32 bits of a random draw; or a damaged peer's). The round matched replies
/// by number and sender alone, so it merged the other key's state into its own: key `b`'s clock
/// covers the dot of the only version of `a`, so the get of `a` answered `b`'s value, and read
/// repair then wrote `b`'s state over `a` on every replica, losing the acknowledged write of `a`.
/// A reply now names its key ([`PeerMessage::FetchReply`]), and one naming another key than its
/// round's is ignored.
#[test]
fn a_fetch_reply_naming_another_key_is_not_merged() {
    let mut net = Net::new(3, 3, 2, 2);
    let acked = net.put("n1", b"a", b"value-of-a", VClock::new());
    assert!(matches!(acked, Response::Put { .. }), "{acked:?}");
    net.put("n1", b"b", b"b-1", VClock::new());
    let context = match net.get("n1", b"b") {
        Response::Get { context, .. } => context,
        other => panic!("{other:?}"),
    };
    net.put("n1", b"b", b"value-of-b", context);
    let other_state = net.state("n2", b"b");
    let a_dot = net.state("n1", b"a").siblings[0].dot.clone().unwrap();
    assert!(
        other_state.clock.covers(&a_dot),
        "b's clock covers a's version"
    );

    // n1 coordinates a get of `a`; its fetches wait in the queue while n2 answers with `b`.
    let token = net.request("n1", Request::Get { key: b"a".to_vec() });
    let fetches: Vec<_> = net.queue.drain(..).collect();
    let req = match &fetches[0].2 {
        PeerMessage::Fetch { req, key } if key == b"a" => *req,
        other => panic!("{other:?}"),
    };
    let forged = PeerMessage::FetchReply {
        req,
        key: b"b".to_vec(),
        state: other_state,
    };
    send(&mut net, "n2", "n1", forged);
    // The real fetches and their replies.
    net.queue.extend(fetches);
    net.deliver_all();
    let answer = net.reply(token).expect("answered by the real replies");
    assert_eq!(values(&answer), [b"value-of-a".to_vec()], "{answer:?}");
    net.advance(1_000);
    net.deliver_all();
    for node in ["n1", "n2", "n3"] {
        let state = net.state(node, b"a");
        let held: Vec<_> = state.siblings.iter().map(|s| s.value.clone()).collect();
        assert_eq!(held, [b"value-of-a".to_vec()], "{node}");
    }
    assert_eq!(values(&net.get("n2", b"a")), [b"value-of-a".to_vec()]);
}

/// The damaged disk, checksums intact: key states under keys no client could send (empty, or
/// longer than [`crate::wire::KEY_BYTES_MAX`]; a bug of an earlier version, a hand-edited or
/// restored file), as hints of such keys were (`hints_on_disk_no_node_could_have_written_are_
/// taken_in_or_dropped`). n1 loaded them into its Merkle trees, whose roots then differed from
/// its co-replicas' for good: anti-entropy sent the states at every exchange and each refused
/// them ("bad key"), so the cluster never looked at rest (equal roots are how a harness tells),
/// and a key n1 does not own would go to its owners, who refuse it too, at every hand-over
/// sweep. Such a state is now dropped as damage when the node loads its store.
#[test]
fn data_keys_on_disk_no_node_could_have_written_are_dropped() {
    let mut net = Net::new(4, 3, 2, 2);
    let mut state = KeyVersions::new();
    state.put("z.1", &VClock::new(), b"damage".to_vec(), false, 1);
    let long = vec![b'x'; crate::wire::KEY_BYTES_MAX + 1];
    {
        let store = &mut net.nodes.get_mut("n1").unwrap().1;
        store.write_state(b"", state.clone()).unwrap();
        store.write_state(&long, state.clone()).unwrap();
    }
    net.restart("n1");
    for _ in 0..20 {
        net.advance(500);
        net.deliver_all();
    }
    let token = net.request("n1", Request::Status);
    let (n1_roots, n1_handoff) = match net.reply(token) {
        Some(Response::Status { status }) => (status.merkle_roots, status.handoff_keys),
        other => panic!("{other:?}"),
    };
    assert!(n1_roots.is_empty(), "n1 holds no key: {n1_roots:?}");
    assert_eq!(n1_handoff, 0);
    assert!(net.state("n1", b"").is_empty());
    assert!(net.state("n1", &long).is_empty());
    assert!(net.nodes["n1"].1.keys().is_empty(), "records deleted");
}
