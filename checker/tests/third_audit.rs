//! A third audit of the checker against shared/history-format.md, for false verdicts: hand-written
//! histories that try to make the checker call a correct history invalid, or miss a lost write.
//! Each test quotes the sentence it holds the checker to; each fails without the fix its commit makes
//! (a test that guards a rule the checker already kept says so).

mod support;

use dynamo_checker::{Kind, Validity, summary};
use serde_json::{Value, json};
use support::{
    H, S, assert_excused, assert_missed, expect, lost_ids, missed_after, missed_after_in,
    strict_nodes,
};

// ---- quorum-read-miss: a fault whose value names no node of the history ----

/// A `f` nemesis event whose `value` is `value`.
fn fault(f: &str, value: Value) -> Value {
    json!({"process":"nemesis","type":"info","f":f,"value":value})
}

#[test]
fn quorum_read_miss_a_fault_that_names_no_node_of_the_history_may_have_hit_any_node() {
    // "quorum-read-miss: ... while no replica of the key ... was wiped, hit by a disk fault ..."
    // and "`value` says what, e.g. ... {"node":"n3"}". A wipe whose value is "all" or "majority"
    // (a selector, as a nemesis often writes) has not said which nodes it hit: "all" is no node
    // of this history (not in the config's nodes, no replica-state's, no client's). It may well
    // have hit a replica of k, so it excuses the read's miss, with a warning naming its line.
    // (Read as a fault on a node called "all", it excused nothing: a false quorum-read-miss.)
    let n1_n3 = || strict_nodes(json!(["n1", "n2", "n3"]));
    for value in [
        json!("all"),
        json!("majority"),
        json!({"node": "all"}),
        json!({"nodes": ["n1", "everyone-else"]}),
        json!(["all"]),
    ] {
        for f in ["wipe", "disk"] {
            let how = format!("{f} {value}");
            let r = missed_after_in(n1_n3(), fault(f, value.clone()));
            assert_excused(&r, &how);
        }
        // The parser says so, naming the fault's line (the config is line 1, the fault line 4).
        let h = n1_n3()
            .put(1, "k", "a", &[])
            .ok(1, "put", "k", "a", None)
            .raw(fault("wipe", value.clone()));
        let warnings = h.warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with("line 4: ")),
            "{value}: {warnings:?}"
        );
    }
    // A config that gives `nodes` as a count names no node: the history's nodes are then the
    // replica-states' and the clients'. A bare name that is one of them places the fault. One that
    // is none of them may be a selector ("all", which may have hit a replica) or a node that holds
    // no replica of any key ("n5", which excuses nothing): the checker cannot tell, and a miss
    // that only such a fault could excuse makes the verdict unknown, naming the fault's line.
    // Here n4 holds a replica of another key: a node, not a replica of k.
    let count = || strict_nodes(json!(5));
    let with_n4 = |h: H| h.replica("other", "n4", &[]);
    let r = with_n4(count().put(1, "k", "a", &[]).ok(1, "put", "k", "a", None))
        .raw(fault("wipe", json!("n4")))
        .get(2, "k")
        .ok_get(2, "k", &[])
        .phase("final")
        .replicas("k", &[S::new("a")])
        .check();
    assert_missed(&r, &"count config, a wipe of n4, a replica of another key");
    let r = missed_after_in(count(), fault("wipe", json!("n2")));
    assert_excused(&r, &"count config, a replica of k");
    for value in [json!("n5"), json!("all")] {
        let h = count().put(1, "k", "a", &[]).ok(1, "put", "k", "a", None);
        let warnings = h.clone().raw(fault("wipe", value.clone())).warnings();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("line 4: ") && w.contains("is unknown")),
            "{value}: {warnings:?}"
        );
        let r = missed_after_in(count(), fault("wipe", value.clone()));
        assert_eq!(
            (r.valid, support::kinds(&r)),
            (Validity::Unknown, vec!["stale-read"]),
            "{value}: {}",
            summary(&r)
        );
        assert!(
            r.stats
                .unknown
                .iter()
                .any(|u| u.starts_with("quorum-read-miss") && u.contains("line 4")),
            "{value}: {:?}",
            r.stats.unknown
        );
        // A second, certain miss on the same history is still reported.
        let both = count()
            .put(1, "k", "a", &[])
            .ok(1, "put", "k", "a", None)
            .raw(fault("wipe", value.clone()))
            .get(2, "k")
            .ok_get(2, "k", &[])
            .put(3, "j", "b", &[])
            .ok(3, "put", "j", "b", None)
            .get(4, "j")
            .ok_get(4, "j", &[])
            .phase("final")
            .replicas("k", &[S::new("a")])
            .replicas("j", &[S::new("b")])
            .check();
        assert_eq!(both.valid, Validity::False, "{value}: {}", summary(&both));
    }
    // This project's harness gives `nodes` as a count and lists the names in `node_names`: those
    // are the history's nodes too.
    let named = || {
        H::new().config_with(
            "register",
            json!({"nodes": 4, "node_names": ["n1", "n2", "n3", "n4"],
                "node": {"sloppy_quorum": false}}),
        )
    };
    assert_missed(
        &missed_after_in(named(), fault("wipe", json!("n4"))),
        &"node_names n4",
    );
    assert_excused(
        &missed_after_in(named(), fault("wipe", json!("n7"))),
        &"node_names n7",
    );
    // A fault on a node the config lists but that holds no replica of k still excuses nothing.
    assert_missed(&missed_after(fault("wipe", json!("n9"))), &"n9");
    assert_missed(
        &missed_after(fault("wipe", json!(["n8", "n9"]))),
        &"[n8, n9]",
    );
    assert_excused(
        &missed_after(fault("wipe", json!(["n8", "n2"]))),
        &"[n8, n2]",
    );
}

#[test]
fn lost_write_does_not_depend_on_nemesis_events() {
    // "lost-write: an ok write ... that, in the final state, is neither present ... nor an
    // ancestor ... of a write that is." No fault excuses a lost write: not a wipe of every node,
    // not a power fault, not a mistyped or unplaceable fault. (A guard: the checker already kept
    // this; lost-write reads no nemesis event.)
    let faults = [
        fault("wipe", json!("all")),
        fault("power", json!({})),
        fault("wipe", json!({"node": "n1"})),
        fault("disk", json!("majority")),
        fault("join", json!({"node": "n4"})),
        fault("crash", json!({"nodes": 3})),
    ];
    for config in [
        strict_nodes(json!(["n1", "n2", "n3"])),
        H::new().config("register"),
    ] {
        let mut h = config.put(1, "k", "a", &[]).ok(1, "put", "k", "a", None);
        for f in &faults {
            h = h.raw(f.clone());
        }
        let h = h.put(2, "k", "b", &[]).ok(2, "put", "k", "b", None);
        let r = h
            .phase("heal")
            .phase("final")
            .replicas("k", &[S::new("b")])
            .check();
        assert_eq!(r.valid, Validity::False, "{}", summary(&r));
        assert!(
            r.anomalies.contains_key(&Kind::LostWrite),
            "{}",
            summary(&r)
        );
    }
}

// ---- divergence: one version listed by its dot alone and with its clock ----

#[test]
fn divergence_a_version_listed_by_its_dot_alone_and_with_its_clock_is_one_version() {
    // "divergence: ... the replicas of a key hold different sibling sets (sets of (write,
    // version): order and repeats do not count)" and "`dot` (optional): [node, counter], the
    // single event that created this version". A replica that lists a's version (n1,1) with its
    // clock and again by its dot alone has listed one version twice: the same set as a replica
    // that lists it once. (The two were counted as two copies of a: a false divergence.)
    let h = H::new()
        .config("register")
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", None)
        .phase("heal")
        .phase("final");
    let full = S::new("a").with(support::ver(Some(("n1", 1)), &[("n2", 3)]));
    let dot_only = |c: u64| {
        let mut m = serde_json::Map::new();
        m.insert("dot".into(), json!(["n1", c]));
        S::new("a").with(m)
    };
    for twice in [
        vec![full.clone(), dot_only(1)],
        vec![dot_only(1), full.clone()],
        vec![dot_only(1), full.clone(), dot_only(1)],
    ] {
        let r = h
            .clone()
            .replica("k", "n1", &twice)
            .replica("k", "n2", std::slice::from_ref(&full))
            .check();
        expect(&r, Validity::True, &[]);
    }
    // A dot alone of another dot is another version: two versions against one.
    let r = h
        .clone()
        .replica("k", "n1", &[full.clone(), dot_only(2)])
        .replica("k", "n2", std::slice::from_ref(&full))
        .check();
    expect(&r, Validity::False, &["divergence"]);
}

// ---- v1: a context string with spaces after its commas ----

/// A v1 register history: a (dot n1:1), a delete d of it (dot n2:1), then b whose `context` is
/// given; b alone is the final state.
fn v1_after_a_delete_on_n2(context: Value) -> dynamo_checker::Results {
    let h = H::new().config_v1("register");
    let h = support::put_ok(h, 1, "a", &[], ("n1", 1), &[]);
    let h = support::del_ok(h, 1, "d", &["a"], ("n2", 1), &[("n1", 1)]);
    let h = h.put_ctx(2, "k", "b", &[], context).ok(
        2,
        "put",
        "k",
        "b",
        Some(support::ver(Some(("n1", 2)), &[("n1", 1), ("n2", 1)])),
    );
    support::finals(h, &[support::sib("b", ("n1", 2), &[("n1", 1), ("n2", 1)])]).check()
}

#[test]
fn v1_a_context_string_with_spaces_around_its_pairs_names_its_nodes() {
    // "A context is a clock when it is an object node → counter or a string `node=counter` joined
    // by `,`" and, in v1, "a put or delete there also observed every delete on its key, invoked
    // before it, whose dot its `context` covers". "n1=1, n2=1" is two pairs joined by a comma,
    // the second written with a space after the comma; the space is no part of the node's name.
    // It covers d's dot (n2,1): b observed d, and a with it. (It was read as a clock of the nodes
    // "n1" and " n2", which covers no dot of n2: a and d were called lost.)
    for context in ["n1=1, n2=1", "n1=1 , n2 = 1", " n2=1 ", "n1=1,\tn2=1"] {
        let r = v1_after_a_delete_on_n2(json!(context));
        expect(&r, Validity::True, &[]);
    }
    // A pair that is not `node=counter` even so leaves the context opaque: it observes nothing.
    for context in ["n1=1, n2=x", "n1=1, =1", "n1=1, n2=-1", "n1=1, n2=1,"] {
        let r = v1_after_a_delete_on_n2(json!(context));
        assert_eq!(lost_ids(&r), ["a", "d"], "{context}: {}", summary(&r));
    }
}

// ---- Numbers: an integer field spelt as an integral number; one that is not an integer ----

/// A v2 history whose numbers are written `n` as the integer fields need them, with `spell`
/// choosing each number's text: an acknowledged put of a (dot n1:1), a read of it, a second put b
/// that observed it (dot n1:2 over {n1:1}), and b on every replica.
fn spelt(spell: impl Fn(u64) -> String) -> String {
    let (i, p, c) = (&spell, &spell, &spell);
    let lines = [
        format!(
            r#"{{"index":{},"time":{},"process":"harness","type":"info","f":"config","value":{{"history_format":2,"n":3,"r":2,"w":2}}}}"#,
            i(1),
            i(0)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"invoke","f":"put","key":"k","write":"a","value":"a","observed":[]}}"#,
            i(2),
            i(1_000),
            p(1)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"ok","f":"put","key":"k","dot":["n1",{}],"clock":{{}}}}"#,
            i(4),
            i(2_000),
            p(1),
            c(1)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"invoke","f":"get","key":"k"}}"#,
            i(5),
            i(3_000),
            p(2)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"ok","f":"get","key":"k","values":[{{"write":"a","value":"a","dot":["n1",{}],"clock":{{}}}}]}}"#,
            i(6),
            i(4_000),
            p(2),
            c(1)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"invoke","f":"put","key":"k","write":"b","value":"b","observed":["a"]}}"#,
            i(7),
            i(5_000),
            p(2)
        ),
        format!(
            r#"{{"index":{},"time":{},"process":{},"type":"ok","f":"put","key":"k","dot":["n1",{}],"clock":{{"n1":{}}}}}"#,
            i(8),
            i(6_000),
            p(2),
            c(2),
            c(1)
        ),
    ];
    let mut text = lines.join("\n") + "\n";
    for (n, node) in ["n1", "n2", "n3"].iter().enumerate() {
        text += &format!(
            r#"{{"index":{},"time":{},"process":"harness","type":"info","f":"replica-state","key":"k","node":"{node}","values":[{{"write":"b","value":"b","dot":["n1",{}],"clock":{{"n1":{}}}}}]}}"#,
            spell(10 + n as u64),
            spell(7_000 + n as u64),
            spell(2),
            spell(1)
        );
        text.push('\n');
    }
    text
}

#[test]
fn an_integer_field_spelt_as_an_integral_number_is_that_integer() {
    // "`index` integer", "`time` integer", "`process` integer", a clock is "node name →
    // counter", a dot `[node, counter]`; and "the spelling of a number (`1`, `1.0`, `1e0`) do not
    // count". `4.0`, `4e0` and `40e-1` are the integer 4 spelt otherwise: the history is the same
    // history, with the same verdict. (An index, time, process or counter spelt so refused the
    // whole history, while `n`, `r` and `w` spelt so were read.)
    let plain = dynamo_checker::parse_reader(spelt(|n| n.to_string()).as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = dynamo_checker::check(&plain.history);
    expect(&expected, Validity::True, &[]);
    let spellings: [&dyn Fn(u64) -> String; 3] =
        [&|n| format!("{n}.0"), &|n| format!("{n}e0"), &|n| {
            format!("{}e-1", n * 10)
        }];
    for spell in spellings {
        let text = spelt(spell);
        let parsed =
            dynamo_checker::parse_reader(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let r = dynamo_checker::check(&parsed.history);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::to_value(&expected).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn an_integer_field_that_is_no_integer_or_is_negative_is_an_error_naming_its_line() {
    // "Each of these is an error (exit 2) that names the line: ... a field of the wrong type". A
    // counter of 1.5 events, an index of 2.5, or a number that only rounds to an integer
    // (`1.0000000000000001`: read through a float it would be 1) is no integer, and is refused, not
    // rounded. A negative counter counts no events; a negative index or time this checker does not
    // read: refused, saying so.
    let good = spelt(|n| n.to_string());
    for (from, to, says) in [
        (
            r#""dot":["n1",2]"#,
            r#""dot":["n1",1.5]"#,
            "counter 1.5 is not an integer",
        ),
        (
            r#""clock":{"n1":1}}"#,
            r#""clock":{"n1":1.0000000000000001}}"#,
            "not an integer",
        ),
        (
            r#""clock":{"n1":1}}"#,
            r#""clock":{"n1":-1}}"#,
            "counter -1 is negative",
        ),
        (
            r#"{"index":8,"#,
            r#"{"index":7.5,"#,
            "index 7.5 is not an integer",
        ),
        (r#"{"index":8,"#, r#"{"index":-8,"#, "index -8 is negative"),
        (r#""time":6000,"#, r#""time":-1,"#, "time -1 is negative"),
        (
            r#""time":6000,"process":2"#,
            r#""time":6000,"process":2.5"#,
            "process 2.5 is not an integer",
        ),
    ] {
        let text = good.replacen(from, to, 1);
        assert_ne!(text, good, "{from}");
        let e = dynamo_checker::parse_reader(text.as_bytes()).expect_err(to);
        assert_eq!(e.line(), Some(7), "{to}: {e}");
        assert!(e.to_string().contains(says), "{to}: {e}");
    }
}

#[test]
fn the_config_s_numbers_are_read_as_exactly_as_the_events_integers() {
    // "the spelling of a number (`1`, `1.0`, `1e0`) do not count" and "`history_format` other
    // than 1 or 2 is an error". `n`, `r`, `w` and `history_format` are read from their text, as
    // an index or a counter is: `2.0` and `20e-1` are 2, but `2.0000000000000001` is no integer
    // (through a float it was read as 2: a history that gave its format as a number that is not
    // 2 was checked as v2, and a quorum of N = 3.0000000000000001 was promised).
    let config = |hf: &str, n: &str| {
        let text = format!(
            r#"{{"index":1,"time":0,"process":"harness","type":"info","f":"config","value":{{"history_format":{hf},"n":{n},"r":2,"w":2,"node":{{"sloppy_quorum":false}}}}}}"#
        );
        serde_json::from_str::<Value>(&text).map(|_| text)
    };
    let history = |config: String| {
        let rest = H::new()
            .config("register")
            .put(1, "k", "a", &[])
            .ok(1, "put", "k", "a", None)
            .get(2, "k")
            .ok_get(2, "k", &[])
            .phase("final")
            .replicas("k", &[S::new("a")])
            .jsonl();
        // The config line replaced.
        let rest: Vec<&str> = rest.lines().skip(1).collect();
        config + "\n" + &rest.join("\n") + "\n"
    };
    for (hf, n) in [("2", "3"), ("2.0", "3.0"), ("20e-1", "3e0")] {
        let text = history(config(hf, n).unwrap());
        let parsed =
            dynamo_checker::parse_reader(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed.history.format(),
            dynamo_checker::history::Format::V2,
            "{hf}"
        );
        let r = dynamo_checker::check(&parsed.history);
        assert_missed(&r, &format!("history_format {hf}, n {n}"));
    }
    // A format that only rounds to 2: an error naming the config's line.
    let text = history(config("2.0000000000000001", "3").unwrap());
    let e = dynamo_checker::parse_reader(text.as_bytes()).expect_err("not 1 or 2");
    assert_eq!(e.line(), Some(1), "{e}");
    // N that only rounds to 3: no N, so whether R + W > N was promised is unknown.
    let text = history(config("2", "3.0000000000000001").unwrap());
    let parsed = dynamo_checker::parse_reader(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let r = dynamo_checker::check(&parsed.history);
    assert_eq!(r.valid, Validity::Unknown, "{}", summary(&r));
}

// ---- The verdict does not depend on how many witnesses are kept ----

#[test]
fn an_anomaly_counted_but_kept_without_witnesses_still_makes_the_history_invalid() {
    // "Anomalies (each makes `valid` false)". `Options::findings_per_kind_max` bounds the
    // findings kept with their witnesses ("the rest are only counted"); with 0 every finding is
    // only counted, and a lost write is still a lost write. (The verdict was taken from the kept
    // findings: with none kept, a history that lost an acknowledged write was valid.)
    let h = H::new()
        .config("register")
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", None)
        .get(2, "k")
        .ok_get(2, "k", &[]);
    let h = support::finals(h, &[]);
    let parsed = dynamo_checker::parse_reader(h.jsonl().as_bytes()).unwrap();
    let counted = dynamo_checker::Options {
        findings_per_kind_max: 0,
    };
    let r = dynamo_checker::check_with(&parsed.history, &counted);
    assert_eq!(r.valid, Validity::False, "{}", summary(&r));
    assert_eq!(r.anomaly_types(), [Kind::LostWrite]);
    assert_eq!(r.count(Kind::LostWrite), 1);
    assert!(r.anomalies[&Kind::LostWrite].is_empty());
    // The warning is listed as found too, with no witness kept.
    assert_eq!(r.count(Kind::StaleRead), 1);
    assert!(r.warnings[&Kind::StaleRead].is_empty());
    // The same verdict as with the witnesses kept.
    let kept = dynamo_checker::check(&parsed.history);
    assert_eq!(
        (kept.valid, kept.anomaly_types()),
        (r.valid, r.anomaly_types())
    );
}

// ---- quorum-read-miss: a strict quorum said in another type than a boolean ----

#[test]
fn quorum_read_miss_a_sloppy_quorum_setting_that_is_no_boolean_cannot_be_judged() {
    // "quorum-read-miss: only where `config` says the quorum is strict
    // (`"node":{"sloppy_quorum":false}`) and R + W > N." A config whose `sloppy_quorum` is the
    // string "false" (or 0) may well have promised a strict quorum: read as "not strict", the
    // check was silently off and a read that missed an acknowledged write passed as valid. The
    // promise cannot be weighed: the verdict is unknown, with the reason (as for a strict
    // config without numeric n, r and w).
    for sloppy in [json!("false"), json!(0), json!({"enabled": false})] {
        let config = H::new().config_with("register", json!({"node": {"sloppy_quorum": sloppy}}));
        let r = missed_after_in(config, fault("partition-start", json!({})));
        assert_eq!(r.valid, Validity::Unknown, "{sloppy}: {}", summary(&r));
        assert!(
            r.stats
                .unknown
                .iter()
                .any(|u| u.starts_with("quorum-read-miss") && u.contains("sloppy_quorum")),
            "{sloppy}: {:?}",
            r.stats.unknown
        );
    }
    // The parser says so.
    let warnings = H::new()
        .config_with(
            "register",
            json!({"tombstone_gc": "true", "node": {"sloppy_quorum": "false"}}),
        )
        .warnings();
    for name in ["tombstone_gc", "node.sloppy_quorum"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&format!("config's {name} is "))),
            "{name}: {warnings:?}"
        );
    }
    // Where R + W <= N nothing was promised whatever the setting: valid.
    let config = H::new().config_with(
        "register",
        json!({"r": 1, "w": 1, "node": {"sloppy_quorum": "false"}}),
    );
    let r = missed_after_in(config, fault("partition-start", json!({})));
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
    // A boolean says it: true is sloppy (valid), false strict (the miss).
    let sloppy = H::new().config_with("register", json!({"node": {"sloppy_quorum": true}}));
    let r = missed_after_in(sloppy, fault("partition-start", json!({})));
    assert_eq!(r.valid, Validity::True, "{}", summary(&r));
    assert_missed(
        &missed_after(fault("partition-start", json!({}))),
        &"sloppy_quorum false",
    );
}

#[test]
fn a_config_whose_value_is_not_an_object_is_an_error() {
    // "`{"f":"config","value":{...}}`" and, among the errors, "a field of the wrong type". Read as
    // no setting at all, such a config would turn the strict quorum's check and the v2 rules off
    // unsaid; it is an error that names its line. (Fails without the fix: the history checked
    // valid as a v1 history with no quorum.)
    for value in [json!(5), json!("strict"), json!(["n1"]), json!(true)] {
        let h = H::new()
            .raw(json!({"process":"harness","type":"info","f":"config","value":value}))
            .put(1, "k", "a", &[])
            .ok(1, "put", "k", "a", None)
            .phase("final")
            .replicas("k", &[S::new("a")]);
        let e = h.parse_error().to_string();
        assert!(
            e.contains("line 1") && e.contains("not an object"),
            "{value}: {e}"
        );
    }
    // A config with no value at all is the defaults, with a warning (unchanged), and so is one
    // whose value is null: an optional field given as null counts as absent.
    for config in [
        json!({"process":"harness","type":"info","f":"config"}),
        json!({"process":"harness","type":"info","f":"config","value":null}),
    ] {
        let h = H::new()
            .raw(config.clone())
            .put(1, "k", "a", &[])
            .ok(1, "put", "k", "a", None)
            .phase("final")
            .replicas("k", &[S::new("a")]);
        assert!(
            h.warnings().iter().any(|w| w.contains("no value")),
            "{config}"
        );
    }
}
