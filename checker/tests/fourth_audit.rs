//! A fourth audit of the checker against shared/history-format.md: hand-written histories from a
//! review that probed values at the limits of JSON and keys too large for the causality bitsets.
//! Each test quotes the sentence it holds the checker to, and fails without its commit's fix.

mod support;

use dynamo_checker::{Validity, check, parse_reader, summary};
use support::{H, S, expect};

/// A strict-quorum register history whose one write `w1` wrote `written` (a JSON number's text)
/// and whose replica holds `w1` with the value `held`.
fn written_and_held(written: &str, held: &str) -> dynamo_checker::Results {
    let text = format!(
        r#"{{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{{"history_format":2,"nodes":["n1","n2","n3"],"n":3,"r":2,"w":2,"workload":"register","node":{{"sloppy_quorum":false}},"fsync":{{"policy":"always"}}}}}}
{{"index":1,"time":1,"process":0,"type":"invoke","f":"put","key":"k","write":"w1","value":{written},"observed":[]}}
{{"index":2,"time":2,"process":0,"type":"ok","f":"put","key":"k","write":"w1"}}
{{"index":3,"time":3,"process":"harness","type":"info","f":"phase","value":"final"}}
{{"index":4,"time":4,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n1","values":[{{"write":"w1","value":{held}}}]}}
{{"index":5,"time":5,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n2","values":[{{"write":"w1","value":{held}}}]}}
{{"index":6,"time":6,"process":"harness","type":"info","f":"replica-state","key":"k","node":"n3","values":[{{"write":"w1","value":{held}}}]}}
"#
    );
    let parsed = parse_reader(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    check(&parsed.history)
}

#[test]
fn numbers_with_huge_exponents_are_compared_exactly() {
    // "Values are compared as JSON values: ... the spelling of a number (`1`, `1.0`, `1e0`) do not
    // count", and phantom-read is "a value different from what that write wrote". The exponent
    // was capped at 10^15 before the fraction's digits moved it: 1e1000000000000000 and ten times
    // it were one value (a changed value missed), and 1.5e1000000000000001 and
    // 15e1000000000000000, one number, two (a false phantom read and lost write).
    for (written, held) in [
        ("1e1000000000000000", "1e1000000000000001"),
        ("1e999999999999999999999", "1e999999999999999999998"),
        ("[1e1000000000000000,2]", "[1e1000000000000005,2]"),
        (
            "-1e-99999999999999999999999999999999",
            "-1e-99999999999999999999999999999998",
        ),
    ] {
        let r = written_and_held(written, held);
        expect(&r, Validity::False, &["lost-write", "phantom-read"]);
    }
    for (written, held) in [
        ("1.5e1000000000000001", "15e1000000000000000"),
        ("1e999999999999999999999", "10e999999999999999999998"),
        (
            "0.001e-99999999999999999999999999999999",
            "1e-100000000000000000000000000000002",
        ),
        (
            "[2.50e123456789012345678901234567890]",
            "[25e123456789012345678901234567889]",
        ),
    ] {
        let r = written_and_held(written, held);
        expect(&r, Validity::True, &[]);
    }
}

/// Puts to key "k", each observing the one before, acknowledged; replicas hold the last.
fn chain(writes: usize, read_at_end: bool) -> H {
    let mut h = H::new().config_with(
        "register",
        serde_json::json!({"node": {"sloppy_quorum": false}}),
    );
    let mut previous: Option<String> = None;
    for i in 0..writes {
        let id = format!("w{i}");
        let observed: Vec<&str> = previous.iter().map(String::as_str).collect();
        h = h.put(1, "k", &id, &observed).ok(1, "put", "k", &id, None);
        previous = Some(id);
    }
    let last = previous.expect("a write");
    if read_at_end {
        h = h.get(2, "k").ok_get(2, "k", &[S::new(&last)]);
    }
    h.phase("heal")
        .phase("final")
        .replicas("k", &[S::new(&last)])
}

#[test]
fn a_key_too_large_for_the_bitsets_leaves_only_what_it_gives_a_check_to_judge_unknown() {
    // A verdict is unknown only where the checker "could not decide". A key with more writes
    // than its causality bitsets allow (32,768), no versions and no reads gives false-dominance,
    // quorum-read-miss, stale-read and false-concurrency nothing to judge: the history is valid
    // (it was unknown, "1 key(s) have more writes than the causality bitsets allow").
    let writes = 32_800;
    let r = chain(writes, false).check();
    expect(&r, Validity::True, &[]);
    // With a read under a strict quorum, quorum-read-miss has something it cannot judge there:
    // unknown, saying how many writes the key has and which bound it passed.
    let r = chain(writes, true).check();
    assert_eq!(r.valid, Validity::Unknown, "{}", summary(&r));
    let why = r.stats.unknown.join("\n");
    assert!(
        why.contains("quorum-read-miss: 1 key(s) too large to check (first: \"k\", 32800 writes, past the 32768"),
        "{why}"
    );
    assert!(!why.contains("false-dominance"), "{why}");
}
