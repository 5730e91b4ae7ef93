//! Parsing: line-numbered errors, the truncated last line, the structural rules, and the serde types'
//! round trip through the format's own examples.

mod support;

use std::io::Write as _;

use dynamo_checker::history::{
    Body, ClientF, Clock, Dot, Event, EventReader, Op, Outcome, Phase, Version,
};
use dynamo_checker::{History, ParseError, Validity, check, check_path, parse_file, parse_reader};
use serde_json::{Value, json};
use support::{H, S, ver};

fn err(text: &str) -> ParseError {
    parse_reader(text.as_bytes()).expect_err("should not parse")
}

fn line_of(text: &str) -> usize {
    err(text).line().expect("a line error")
}

const PUT: &str = r#"{"index":1,"time":10,"process":0,"type":"invoke","f":"put","key":"k","write":"a","value":"a","observed":[]}"#;
const PUT_OK: &str =
    r#"{"index":2,"time":20,"process":0,"type":"ok","f":"put","key":"k","write":"a"}"#;

#[test]
fn a_malformed_line_names_its_line_number() {
    let text = format!("{PUT}\n{PUT_OK}\n{{\"index\":3,\"time\":30,\n{PUT}\n");
    let e = err(&text);
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().starts_with("line 3: malformed event"), "{e}");
    // A line that is JSON but not an event is malformed too.
    let text = format!(
        "{PUT}\n{{\"index\":2,\"time\":20,\"process\":0,\"type\":\"done\",\"f\":\"put\",\"key\":\"k\"}}\n"
    );
    assert_eq!(line_of(&text), 2);
}

#[test]
fn a_truncated_last_line_is_skipped_with_a_warning() {
    let text = format!("{PUT}\n{PUT_OK}\n{{\"index\":3,\"time\":30,\"process\":1,\"ty");
    let parsed = parse_reader(text.as_bytes()).unwrap();
    assert_eq!(parsed.history.event_count(), 2);
    assert_eq!(parsed.warnings.len(), 1);
    assert!(
        parsed.warnings[0].starts_with("line 3:"),
        "{:?}",
        parsed.warnings
    );
    // Cut inside a string, or after a complete value: still a run that died mid-write.
    for cut in [
        r#"{"index":3,"time":30,"process":1,"type":"inv"#,
        r#"{"index":3,"time":30"#,
    ] {
        let parsed = parse_reader(format!("{PUT}\n{PUT_OK}\n{cut}").as_bytes()).unwrap();
        assert_eq!(parsed.warnings.len(), 1, "{cut}");
    }
    // A last line that is complete JSON but not an event is an error, newline or not.
    assert_eq!(line_of(&format!("{PUT}\n{{\"index\":3}}")), 2);
    // A last line that does not parse but ends with a newline is an error: it is no truncation.
    let e = err(&format!(
        "{PUT}\n{PUT_OK}\n{{\"index\":3,\"time\":30,\"process\":1,\"ty\n"
    ));
    assert_eq!(e.line(), Some(3));
    // Nor is a line that does not parse before the last one.
    let e = err(&format!("{PUT}\n{{\"index\":2,\"ti\n{PUT_OK}"));
    assert_eq!(e.line(), Some(2));
    // A complete last line without its newline is simply the last event.
    let parsed = parse_reader(format!("{PUT}\n{PUT_OK}").as_bytes()).unwrap();
    assert_eq!(
        (parsed.history.event_count(), parsed.warnings.len()),
        (2, 0)
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let extra = PUT_OK.replace("}", r#","latency_note":"extra","error":null}"#);
    let parsed = parse_reader(format!("{PUT}\n{extra}\n").as_bytes()).unwrap();
    assert_eq!(parsed.history.event_count(), 2);
}

#[test]
fn a_blank_line_is_an_error() {
    for text in [
        format!("\n{PUT}\n{PUT_OK}\n"),
        format!("{PUT}\n   \n{PUT_OK}\n"),
        format!("{PUT}\n{PUT_OK}\n\n"),
        format!("{PUT}\r\n\r\n{PUT_OK}\r\n"),
    ] {
        let e = err(&text);
        assert!(e.to_string().contains("blank line"), "{e}");
    }
    assert_eq!(line_of(&format!("\n{PUT}\n")), 1);
    assert_eq!(line_of(&format!("{PUT}\n  \n{PUT_OK}\n")), 2);
    assert_eq!(line_of(&format!("{PUT}\n{PUT_OK}\n\n")), 3);
}

#[test]
fn a_blank_last_line_without_a_newline_is_a_truncated_line_skipped() {
    // "A truncated last line (... the file's last line, with no newline after it) that does not
    // parse is reported and skipped": the more particular rule, blank or not. It was refused as
    // a blank line.
    for tail in ["   ", "\t", " \r"] {
        let parsed = parse_reader(format!("{PUT}\n{PUT_OK}\n{tail}").as_bytes()).unwrap();
        assert_eq!(parsed.history.event_count(), 2);
        assert!(
            parsed.warnings.iter().any(|w| w.contains("line 3")),
            "{:?}",
            parsed.warnings
        );
    }
}

#[test]
fn a_line_that_is_not_a_json_object_is_an_error() {
    for line in [
        r#"[1,"2",3,"invoke","put"]"#,
        "5",
        r#""a string""#,
        "null",
        "not json at all",
    ] {
        let e = err(&format!("{PUT}\n{line}\n"));
        assert_eq!(e.line(), Some(2), "{line}: {e}");
    }
    // An array in the shape of an event, on the last line without a newline: it parses as JSON, so
    // it is no truncated line, and it is not an object.
    let e = err(&format!(
        "{PUT}\n{PUT_OK}\n[3,30,\"nemesis\",\"info\",\"crash\"]"
    ));
    assert!(e.to_string().contains("not a JSON object"), "{e}");
}

#[test]
fn indexes_must_strictly_ascend() {
    let text = format!("{PUT}\n{}\n", PUT_OK.replace("\"index\":2", "\"index\":1"));
    let e = err(&text);
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().contains("strictly ascending"), "{e}");
}

#[test]
fn a_completion_repeats_its_invoke() {
    assert_eq!(
        line_of(&format!(
            "{PUT}\n{}\n",
            PUT_OK.replace("\"key\":\"k\"", "\"key\":\"other\"")
        )),
        2
    );
    assert_eq!(
        line_of(&format!(
            "{PUT}\n{}\n",
            PUT_OK.replace("\"f\":\"put\"", "\"f\":\"get\"")
        )),
        2
    );
    assert_eq!(
        line_of(&format!(
            "{PUT}\n{}\n",
            PUT_OK.replace("\"write\":\"a\"", "\"write\":\"b\"")
        )),
        2
    );
    // A completion with nothing in flight.
    assert_eq!(line_of(&format!("{PUT_OK}\n")), 1);
}

#[test]
fn a_process_has_one_operation_in_flight() {
    let again = PUT
        .replace("\"index\":1", "\"index\":2")
        .replace("\"write\":\"a\"", "\"write\":\"b\"");
    let e = err(&format!("{PUT}\n{again}\n"));
    assert_eq!(e.line(), Some(2));
    assert!(
        e.to_string().contains("line 1"),
        "names the op in flight: {e}"
    );
}

#[test]
fn a_process_whose_operation_ended_info_never_invokes_again() {
    let info = PUT_OK.replace("\"type\":\"ok\"", "\"type\":\"info\"");
    let again = PUT
        .replace("\"index\":1", "\"index\":3")
        .replace("\"write\":\"a\"", "\"write\":\"b\"");
    let e = err(&format!("{PUT}\n{info}\n{again}\n"));
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().contains("info on line 2"), "{e}");
}

#[test]
fn write_ids_are_unique() {
    let twin = PUT
        .replace("\"index\":1", "\"index\":3")
        .replace("\"process\":0", "\"process\":1");
    let e = err(&format!("{PUT}\n{PUT_OK}\n{twin}\n"));
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().contains("already invoked on line 1"), "{e}");
}

#[test]
fn kinds_of_event_need_their_fields() {
    // A nemesis or harness event is always info.
    assert_eq!(
        line_of(r#"{"index":1,"time":0,"process":"nemesis","type":"ok","f":"crash","value":{}}"#),
        1
    );
    // A put needs a write id; a delete's value is null; a get ok has values.
    assert_eq!(line_of(&PUT.replace(r#""write":"a","#, "")), 1);
    let delete = PUT.replace("\"f\":\"put\"", "\"f\":\"delete\"");
    assert_eq!(line_of(&delete), 1);
    let delete = delete.replace("\"value\":\"a\"", "\"value\":null");
    assert!(parse_reader(delete.as_bytes()).is_ok());
    let get = r#"{"index":1,"time":0,"process":0,"type":"invoke","f":"get","key":"k"}"#;
    let get_ok = r#"{"index":2,"time":1,"process":0,"type":"ok","f":"get","key":"k"}"#;
    assert_eq!(line_of(&format!("{get}\n{get_ok}\n")), 2);
    // A process is any integer (history-format.md), negative ones and those past i64 too; not a
    // fraction or a string other than "nemesis" and "harness".
    for process in ["-1", "-9223372036854775808", "18446744073709551615"] {
        let get = format!(
            r#"{{"index":1,"time":0,"process":{process},"type":"invoke","f":"get","key":"k"}}"#
        );
        let got = format!(
            r#"{{"index":2,"time":1,"process":{process},"type":"ok","f":"get","key":"k","values":[]}}"#
        );
        assert!(
            parse_reader(format!("{get}\n{got}\n").as_bytes()).is_ok(),
            "process {process}"
        );
    }
    for process in ["1.5", "\"client\"", "null"] {
        let get = format!(
            r#"{{"index":1,"time":0,"process":{process},"type":"invoke","f":"get","key":"k"}}"#
        );
        assert_eq!(line_of(&get), 1, "process {process}");
    }
}

#[test]
fn strings_with_escapes_and_values_with_other_whitespace_parse() {
    let put = r#"{"index":1,"time":0,"process":0,"type":"invoke","f":"put","key":"k\"1","write":"w\u00e9","value":{"a": [1, 2]},"observed":[]}"#;
    let ok = r#"{"index":2,"time":5,"process":0,"type":"ok","f":"put","key":"k\"1","write":"wé","dot":["n1",1],"clock":{}}"#;
    let get = r#"{"index":3,"time":6,"process":1,"type":"invoke","f":"get","key":"k\"1"}"#;
    let got = r#"{"index":4,"time":7,"process":1,"type":"ok","f":"get","key":"k\"1","values":[{"write":"wé","value":{"a":[1,2]}}]}"#;
    let state = r#"{"index":5,"time":8,"process":"harness","type":"info","f":"replica-state","key":"k\"1","node":"n1","values":[{"write":"wé","value":{ "a" : [1,2] },"dot":["n1",1],"clock":{}}]}"#;
    let parsed = parse_reader(format!("{put}\n{ok}\n{get}\n{got}\n{state}\n").as_bytes()).unwrap();
    let r = check(&parsed.history);
    assert_eq!(r.valid, Validity::True, "{}", dynamo_checker::summary(&r));
}

#[test]
fn the_format_examples_round_trip_through_the_serde_types() {
    let examples = [
        json!({"index":12,"time":5012000,"process":3,"type":"invoke","f":"put","key":"cart-7","node":"n2",
               "write":"p3-17","value":["p1-4","p3-17"],"observed":["p1-4"],"context":"<opaque>"}),
        json!({"index":13,"time":5020000,"process":3,"type":"ok","f":"put","key":"cart-7","write":"p3-17",
               "dot":["n2",9],"clock":{"n1":4,"n2":8}}),
        json!({"index":40,"time":9100000,"process":5,"type":"ok","f":"get","key":"cart-7",
               "values":[{"write":"p3-17","value":["p1-4","p3-17"],"dot":["n2",9],"clock":{"n1":4,"n2":8}},
                         {"write":"p4-2","value":["p4-2"],"dot":["n3",2],"clock":{}}],
               "context":"<opaque>"}),
        json!({"index":41,"time":9100001,"process":5,"type":"invoke","f":"delete","key":"cart-7","write":"p5-1",
               "value":null,"observed":["p3-17","p4-2"]}),
        json!({"index":42,"time":9100002,"process":5,"type":"fail","f":"delete","key":"cart-7"}),
        json!({"index":50,"time":1,"process":"nemesis","type":"info","f":"partition-start",
               "value":{"groups":[["n1","n2"],["n3","n4","n5"]]}}),
        json!({"index":51,"time":2,"process":"nemesis","type":"info","f":"skew","value":{"node":"n2","by_ms":-4000}}),
        json!({"index":60,"time":3,"process":"harness","type":"info","f":"phase","value":"heal"}),
        json!({"index":61,"time":4,"process":"harness","type":"info","f":"replica-state","key":"cart-7","node":"n1",
               "values":[{"write":"p5-1","value":null,"dot":["n1",3],"clock":{"n2":9}}]}),
        json!({"index":0,"time":0,"process":"harness","type":"info","f":"config",
               "value":{"nodes":["n1","n2"],"n":3,"workload":"cart"}}),
    ];
    for example in examples {
        let event: Event = serde_json::from_value(example.clone()).unwrap();
        let back: Value = serde_json::to_value(&event).unwrap();
        assert_eq!(back, example);
    }
    let event: Event = serde_json::from_value(
        json!({"index":13,"time":5020000,"process":3,"type":"ok","f":"put",
        "key":"cart-7","write":"p3-17","dot":["n2",9],"clock":{"n2":8,"n1":4}}),
    )
    .unwrap();
    let Body::Complete(c) = event.body else {
        panic!()
    };
    assert_eq!((c.outcome, c.f), (Outcome::Ok, ClientF::Put));
    let v = c.version.unwrap();
    assert_eq!(v.dot, Some(Dot::new("n2", 9)));
    assert_eq!(v.clock, Clock::from_iter([("n1", 4), ("n2", 8)]));
    assert_eq!(v.clock.get("n1"), 4);
    assert_eq!(v.clock.get("n3"), 0);
}

#[test]
fn histories_build_from_events_in_memory() {
    let events = vec![
        Event {
            index: 1,
            time: 1,
            body: Body::Phase(Phase::Heal),
        },
        Event {
            index: 2,
            time: 2,
            body: Body::Invoke {
                process: 0,
                op: Op::Get {
                    key: "k".into(),
                    node: None,
                },
            },
        },
    ];
    let parsed = History::from_events(events).unwrap();
    assert_eq!(
        (parsed.history.event_count(), parsed.history.op_count()),
        (2, 1)
    );
    let bad = vec![
        Event {
            index: 2,
            time: 1,
            body: Body::Phase(Phase::Heal),
        },
        Event {
            index: 1,
            time: 1,
            body: Body::Phase(Phase::Final),
        },
    ];
    assert_eq!(History::from_events(bad).unwrap_err().line(), Some(2));
    let _ = Version::default();
}

#[test]
fn files_and_directories_are_checked() {
    let h = H::new()
        .config("register")
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .phase("final")
        .replicas("k", &[S::new("a").with(ver(Some(("n1", 1)), &[]))]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(h.jsonl().as_bytes()).unwrap();
    f.write_all(b"{\"index\":99,").unwrap();
    drop(f);
    let (r, warnings) = check_path(dir.path()).unwrap();
    assert_eq!(r.valid, Validity::True);
    assert_eq!(warnings.len(), 1);
    // The skipped line is in results.json too ("reported and skipped"), not only on stderr.
    assert_eq!(r.stats.notes.first(), Some(&warnings[0]));
    let (r, _) = check_path(&path).unwrap();
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        parse_file(&path).unwrap().history.workload(),
        dynamo_checker::history::Workload::Register
    );
    let missing = check_path(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, ParseError::Io { .. }));
    assert!(missing.to_string().contains("nope"), "{missing}");

    let events: Vec<_> =
        EventReader::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).collect();
    assert_eq!(events.len(), 7);
    assert!(events.iter().all(Result::is_ok));
}

/// Each event below is line 2 after a valid put invoke (line 1), unless it says otherwise.
fn line2(event: &str) -> ParseError {
    err(&format!("{PUT}\n{event}\n"))
}

#[test]
fn every_required_field_is_required() {
    // On every event: index, time, process, type, f.
    for field in ["index", "time", "process", "type", "f"] {
        let mut ok: Value = serde_json::from_str(PUT_OK).unwrap();
        ok.as_object_mut().unwrap().remove(field);
        let e = line2(&ok.to_string());
        assert_eq!(e.line(), Some(2), "{field}: {e}");
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
    // On a client invoke and its completion: key.
    let mut put: Value = serde_json::from_str(PUT).unwrap();
    put.as_object_mut().unwrap().remove("key");
    assert_eq!(line_of(&put.to_string()), 1);
    assert_eq!(line2(&PUT_OK.replace(r#","key":"k""#, "")).line(), Some(2));
    // On a put or delete invoke: write, value (null for a delete), observed.
    for field in ["write", "value", "observed"] {
        for f in ["put", "delete"] {
            let mut put: Value = serde_json::from_str(PUT).unwrap();
            put["f"] = json!(f);
            if f == "delete" {
                put["value"] = Value::Null;
            }
            put.as_object_mut().unwrap().remove(field);
            let e = err(&format!("{put}\n"));
            assert_eq!(e.line(), Some(1), "{f} without {field}: {e}");
        }
    }
    // On a get ok: values, each sibling with write and value.
    let get = r#"{"index":3,"time":3,"process":1,"type":"invoke","f":"get","key":"k"}"#;
    for values in [
        "",
        r#","values":[{"value":"a"}]"#,
        r#","values":[{"write":"a"}]"#,
        r#","values":null"#,
    ] {
        let ok = format!(
            r#"{{"index":4,"time":4,"process":1,"type":"ok","f":"get","key":"k"{values}}}"#
        );
        let e = err(&format!("{PUT}\n{PUT_OK}\n{get}\n{ok}\n"));
        assert_eq!(e.line(), Some(4), "{values}: {e}");
    }
    // On a replica-state event: key, node, values.
    for missing in ["key", "node", "values"] {
        let mut state = json!({"index":3,"time":3,"process":"harness","type":"info",
            "f":"replica-state","key":"k","node":"n1","values":[]});
        state.as_object_mut().unwrap().remove(missing);
        let e = err(&format!("{PUT}\n{PUT_OK}\n{state}\n"));
        assert_eq!(e.line(), Some(3), "{missing}: {e}");
    }
    // Optional: context, a client event's node, dot, clock, and a put ok's write, dot and clock.
    let bare = r#"{"index":2,"time":20,"process":0,"type":"ok","f":"put","key":"k"}"#;
    assert!(parse_reader(format!("{PUT}\n{bare}\n").as_bytes()).is_ok());
}

#[test]
fn a_field_of_the_wrong_type_is_an_error() {
    let cases = [
        PUT_OK.replace(r#""index":2"#, r#""index":"2""#),
        PUT_OK.replace(r#""time":20"#, r#""time":-20"#),
        PUT_OK.replace(r#""time":20"#, r#""time":2.5"#),
        PUT_OK.replace(r#""process":0"#, r#""process":"client""#),
        PUT_OK.replace(r#""key":"k""#, r#""key":7"#),
        PUT_OK.replace(r#""write":"a""#, r#""write":["a"]"#),
        PUT_OK.replace("}", r#","dot":["n1"]}"#),
        PUT_OK.replace("}", r#","dot":["n1",1,2]}"#),
        PUT_OK.replace("}", r#","clock":{"n1":-1}}"#),
        PUT_OK.replace("}", r#","clock":[["n1",1]]}"#),
        PUT_OK.replace("}", r#","node":5}"#),
    ];
    for case in cases {
        assert_eq!(line2(&case).line(), Some(2), "{case}");
    }
    for case in [
        PUT.replace(r#""observed":[]"#, r#""observed":"a""#),
        PUT.replace(r#""observed":[]"#, r#""observed":[1]"#),
        PUT.replace(r#""f":"put""#, r#""f":"delete""#),
    ] {
        assert_eq!(line_of(&case), 1, "{case}");
    }
}

#[test]
fn an_unknown_type_or_client_f_is_an_error() {
    assert_eq!(
        line2(&PUT_OK.replace(r#""type":"ok""#, r#""type":"done""#)).line(),
        Some(2)
    );
    assert_eq!(line_of(&PUT.replace(r#""f":"put""#, r#""f":"cas""#)), 1);
    // A nemesis or harness event whose type is not info.
    for ty in ["invoke", "ok", "fail"] {
        let nemesis = format!(
            r#"{{"index":2,"time":2,"process":"nemesis","type":"{ty}","f":"crash","value":{{"node":"n1"}}}}"#
        );
        assert_eq!(line2(&nemesis).line(), Some(2), "{ty}");
        let harness = format!(
            r#"{{"index":2,"time":2,"process":"harness","type":"{ty}","f":"phase","value":"final"}}"#
        );
        assert_eq!(line2(&harness).line(), Some(2), "{ty}");
    }
    // A nemesis name the format does not know is no error.
    let nemesis =
        r#"{"index":2,"time":2,"process":"nemesis","type":"info","f":"meteor","value":{}}"#;
    assert!(parse_reader(format!("{PUT}\n{nemesis}\n").as_bytes()).is_ok());
}

#[test]
fn two_invokes_of_one_write_id_and_an_equal_index_are_errors() {
    let twin = PUT
        .replace(r#""index":1"#, r#""index":3"#)
        .replace(r#""process":0"#, r#""process":4"#)
        .replace(r#""f":"put""#, r#""f":"delete""#)
        .replace(r#""value":"a""#, r#""value":null"#);
    assert_eq!(line_of(&format!("{PUT}\n{PUT_OK}\n{twin}\n")), 3);
    let same = PUT_OK.replace(r#""index":2"#, r#""index":1"#);
    assert_eq!(line_of(&format!("{PUT}\n{same}\n")), 2);
}

#[test]
fn the_history_format_must_be_1_or_2() {
    let config = |v: &str| {
        format!(
            r#"{{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{{"history_format":{v},"n":3}}}}"#
        )
    };
    for bad in ["3", "0", r#""2""#, "null", "1.5"] {
        let e = err(&format!("{}\n{PUT}\n", config(bad)));
        assert_eq!(e.line(), Some(1), "{bad}: {e}");
        assert!(e.to_string().contains("history_format"), "{e}");
    }
    for good in ["1", "2", "2.0"] {
        let parsed = parse_reader(format!("{}\n{PUT}\n", config(good)).as_bytes()).unwrap();
        let expected = if good == "1" {
            dynamo_checker::history::Format::V1
        } else {
            dynamo_checker::history::Format::V2
        };
        assert_eq!(parsed.history.format(), expected);
    }
    // No config, or no history_format in it: v1.
    let parsed = parse_reader(format!("{PUT}\n").as_bytes()).unwrap();
    assert_eq!(parsed.history.format(), dynamo_checker::history::Format::V1);
}

#[test]
fn no_verdict_past_a_malformed_line() {
    // A valid history with one malformed line in the middle gives an error, not results.
    let h = H::new()
        .config("register")
        .put(1, "k", "a", &[])
        .ok(1, "put", "k", "a", Some(ver(Some(("n1", 1)), &[])))
        .raw(json!({"process": 2, "type": "invoke", "f": "scan", "key": "k"}))
        .phase("final")
        .replicas("k", &[S::new("a").with(ver(Some(("n1", 1)), &[]))]);
    let e = h.parse_error();
    assert_eq!(e.line(), Some(4));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, h.jsonl()).unwrap();
    assert!(check_path(&path).is_err());
}

#[test]
fn a_value_nested_beyond_the_limit_is_an_error_not_a_crash() {
    // A value is "any JSON value" (history-format.md, "Client operations"), but a line the checker
    // cannot read is "an error that names its line number": a value nested a million levels deep
    // (a 2 MB line) must be that error, not a stack overflow that aborts the process.
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for depth in [128, 1_000_000] {
        let put = PUT.replace(r#""value":"a""#, &format!(r#""value":{}"#, deep(depth)));
        let e = err(&format!("{PUT_OK_FIRST}\n{put}\n"));
        assert_eq!(e.line(), Some(2), "depth {depth}: {e}");
        assert!(
            e.to_string().contains("nested deeper"),
            "depth {depth}: {e}"
        );
        // The same in a sibling of a replica state, and in its non-canonical spelling.
        let text = format!(
            "{PUT}\n{PUT_OK}\n{{\"index\":3,\"time\":30,\"process\":\"harness\",\"type\":\"info\",\"f\":\"replica-state\",\"key\":\"k\",\"node\":\"n1\",\"values\":[{{\"write\":\"a\",\"value\": {} }}]}}\n",
            deep(depth).replace("[]", "[ ]")
        );
        assert_eq!(err(&text).line(), Some(3), "depth {depth}");
    }
    // Up to serde_json's own limit (127 levels, which every other reader of a value shares), a deep
    // value is a value like any other.
    assert!(serde_json::from_str::<Value>(&deep(127)).is_ok());
    assert!(serde_json::from_str::<Value>(&deep(128)).is_err());
    let put = PUT.replace(r#""value":"a""#, &format!(r#""value":{}"#, deep(127)));
    assert!(parse_reader(format!("{PUT_OK_FIRST}\n{put}\n").as_bytes()).is_ok());
}

/// A harmless first line (the config), so that the put is line 2.
const PUT_OK_FIRST: &str = r#"{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{"history_format":2}}"#;
