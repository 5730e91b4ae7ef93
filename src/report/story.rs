//! A small run told as a story, one sentence per event, for an engineer to read in a minute: "p0
//! writes p0-1 to cart-0 via n2: ok", "n1 loses its disk", ..., and the finding that ends it. Shown in
//! report.html for runs of a few operations (a shrunk run always is), printed by `dynamo shrink`,
//! and stored with a regression plan.
//!
//! The story is read from the history alone (every client request before the final reads, every
//! nemesis event), so it says what happened, not what was planned: a window that never opened is
//! not in it, and a fault aimed at the next acknowledged write names the write it followed.

use super::fmt_ms;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Most client requests (before the final reads) a run may have to be told as a story.
pub const STORY_REQUESTS_MAX: usize = 40;

/// What the report shows of a shrink: the story, and the steps that led to the plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoryView {
    /// The run, a sentence per event, each with its simulated time.
    pub lines: Vec<(u64, String)>,
    /// shrink.json, when the run is a shrink's result.
    pub shrink: Option<Value>,
}

fn list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    s.as_str()
                        .map(str::to_owned)
                        .or_else(|| s.get("write").and_then(Value::as_str).map(str::to_owned))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn seen(ids: &[String]) -> String {
    if ids.is_empty() {
        "nothing".to_owned()
    } else {
        format!("[{}]", ids.join(", "))
    }
}

/// How a request ended, in words.
fn outcome(completion: Option<&Value>) -> String {
    let Some(c) = completion else {
        return "no answer before the end".into();
    };
    let error = c.get("error").and_then(Value::as_str).unwrap_or("");
    match c.get("type").and_then(Value::as_str) {
        Some("ok") => "ok".into(),
        Some("fail") => format!("fails ({error})"),
        _ => format!("unknown outcome ({error})"),
    }
}

fn node_name(v: &Value) -> String {
    v.get("node")
        .and_then(Value::as_str)
        .unwrap_or("a node")
        .to_owned()
}

/// One nemesis event in words.
fn nemesis_line(f: &str, v: &Value) -> String {
    let node = node_name(v);
    let after = v
        .get("after_ack_of")
        .and_then(Value::as_str)
        .map(|w| format!(", right after the ack of {w}"))
        .unwrap_or_default();
    let groups = |v: &Value| -> String {
        v.get("groups")
            .and_then(Value::as_array)
            .map(|gs| {
                gs.iter()
                    .map(|g| format!("{{{}}}", list(Some(g)).join(", ")))
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_default()
    };
    match f {
        "crash" => match v.get("cause").and_then(Value::as_str) {
            Some(cause) => format!("{node} stops on a storage error ({cause})"),
            None => format!("{node} crashes{after}"),
        },
        "wipe" => format!("{node} crashes and loses its disk{after}"),
        "restart" => match v.get("disk").and_then(Value::as_str) {
            Some("wiped") => format!("{node} restarts with an empty disk"),
            Some(d) if !d.is_empty() => format!("{node} restarts ({d})"),
            _ => format!("{node} restarts"),
        },
        "disk" => match v.get("damage").and_then(Value::as_str).unwrap_or("damage") {
            "fail-writes" => format!("{node}'s disk starts failing its writes{after}"),
            "fail-syncs" => format!("{node}'s disk starts failing its syncs{after}"),
            damage => format!(
                "{node} crashes, and its disk is damaged while it is down ({damage}){after}"
            ),
        },
        "partition-start" => {
            if v.get("oneway").and_then(Value::as_bool) == Some(true) {
                format!("the network is cut one way: {}", groups(v))
            } else {
                format!("the network splits: {}", groups(v))
            }
        }
        "partition-stop" => "the partition heals".into(),
        "skew" => {
            let by = v.get("by_ms").and_then(Value::as_i64).unwrap_or(0);
            format!("{node}'s clock jumps by {:+.3} s", by as f64 / 1000.0)
        }
        "loss-start" => "links start dropping messages".into(),
        "loss-stop" => "links stop dropping messages".into(),
        "slow-start" => {
            let ms = v.get("latency_ms_max").and_then(Value::as_u64).unwrap_or(0);
            format!("links slow down to up to {ms} ms")
        }
        "slow-stop" => "links are fast again".into(),
        "leave" => format!("{node} leaves the ring"),
        "join" => format!("{node} joins the ring again"),
        "power" => "every node loses power at once".into(),
        other => format!("nemesis: {other} {v}"),
    }
}

/// The story of the run in `history` (JSON Lines), ending with `ending` (the finding, in words);
/// `None` when the run has more than [`STORY_REQUESTS_MAX`] client requests or does not parse.
pub fn tell(history: &[u8], ending: Option<&str>) -> Option<Vec<(u64, String)>> {
    let mut events: Vec<Value> = Vec::new();
    for line in history.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        events.push(serde_json::from_slice(line).ok()?);
    }
    // Each invoke's completion: the next event of its process.
    let mut completion: BTreeMap<usize, usize> = BTreeMap::new();
    let mut open: BTreeMap<i128, usize> = BTreeMap::new();
    let mut requests = 0;
    let mut final_at = None;
    for (i, e) in events.iter().enumerate() {
        if e.get("f").and_then(Value::as_str) == Some("phase")
            && e.get("value").and_then(Value::as_str) == Some("final")
        {
            final_at = Some(i);
            break;
        }
        let Some(p) = e.get("process").and_then(process_no) else {
            continue;
        };
        if e.get("type").and_then(Value::as_str) == Some("invoke") {
            requests += 1;
            open.insert(p, i);
        } else if let Some(inv) = open.remove(&p) {
            completion.insert(inv, i);
        }
    }
    if requests > STORY_REQUESTS_MAX {
        return None;
    }
    let end = final_at.unwrap_or(events.len());
    // Only the cart workload's update is a read and a put told as one.
    let cart = events
        .first()
        .and_then(|e| e.get("value"))
        .and_then(|v| v.get("workload"))
        .and_then(Value::as_str)
        .is_none_or(|w| w == "cart");
    let mut lines = Vec::new();
    let mut merged_into: BTreeSet<usize> = BTreeSet::new();
    for i in 0..end {
        let e = &events[i];
        let time = e.get("time").and_then(Value::as_u64).unwrap_or(0);
        let f = e.get("f").and_then(Value::as_str).unwrap_or("");
        match e.get("process") {
            Some(Value::String(p)) if p == "nemesis" => {
                let v = e.get("value").cloned().unwrap_or(Value::Null);
                lines.push((time, nemesis_line(f, &v)));
            }
            Some(Value::String(_))
                if f == "phase" && e.get("value").and_then(Value::as_str) == Some("heal") =>
            {
                lines.push((time, "the clients are done; every fault heals".into()));
            }
            Some(Value::Number(p)) => {
                if e.get("type").and_then(Value::as_str) != Some("invoke")
                    || merged_into.contains(&i)
                {
                    continue;
                }
                let p = number_process(p).unwrap_or(0);
                let key = e.get("key").and_then(Value::as_str).unwrap_or("?");
                let via = e.get("node").and_then(Value::as_str).unwrap_or("?");
                let done = completion.get(&i).map(|&j| &events[j]);
                let line = match f {
                    "get" => {
                        // A read followed at once by this process's write of the same key is one
                        // cart update: told as one sentence.
                        let next = completion
                            .get(&i)
                            .map(|&j| j + 1)
                            .and_then(|from| {
                                (from..end).find(|&k| {
                                    events[k].get("process").and_then(process_no) == Some(p)
                                })
                            })
                            .filter(|&k| {
                                let n = &events[k];
                                cart && n.get("type").and_then(Value::as_str) == Some("invoke")
                                    && n.get("f").and_then(Value::as_str) == Some("put")
                                    && n.get("key").and_then(Value::as_str) == Some(key)
                                    && n.get("time") == done.and_then(|d| d.get("time"))
                            });
                        let read = seen(&list(done.and_then(|d| d.get("values"))));
                        match next {
                            Some(k) => {
                                merged_into.insert(k);
                                let put = &events[k];
                                let write = put.get("write").and_then(Value::as_str).unwrap_or("?");
                                let acked = completion.get(&k).map(|&j| &events[j]);
                                format!(
                                    "p{p} reads {key} via {via} ({read}) and adds {write}: {}",
                                    outcome(acked)
                                )
                            }
                            None => {
                                match done.and_then(|d| d.get("type")).and_then(Value::as_str) {
                                    Some("ok") => format!("p{p} reads {key} via {via}: {read}"),
                                    _ => format!("p{p} reads {key} via {via}: {}", outcome(done)),
                                }
                            }
                        }
                    }
                    "put" | "delete" => {
                        let write = e.get("write").and_then(Value::as_str).unwrap_or("?");
                        let observed = list(e.get("observed"));
                        let basis = if observed.is_empty() {
                            "blind".to_owned()
                        } else {
                            format!("over {}", seen(&observed))
                        };
                        if f == "put" && cart && observed.is_empty() {
                            // A cart add without a read: a cart of this one item, put blind.
                            format!(
                                "p{p} adds {write} to {key} via {via} without a read: {}",
                                outcome(done)
                            )
                        } else {
                            let verb = if f == "put" {
                                format!("writes {write} to")
                            } else {
                                format!("deletes ({write}) from")
                            };
                            format!("p{p} {verb} {key} via {via}, {basis}: {}", outcome(done))
                        }
                    }
                    other => format!("p{p} {other} {key}: {}", outcome(done)),
                };
                lines.push((time, line));
            }
            _ => {}
        }
    }
    if let Some(text) = ending {
        let time = final_at
            .and_then(|i| events[i].get("time").and_then(Value::as_u64))
            .unwrap_or(0);
        lines.push((time, text.to_owned()));
    }
    Some(lines)
}

/// The story as text, a line per event: `12 ms  p0 writes ...`.
pub fn text(lines: &[(u64, String)]) -> Vec<String> {
    lines
        .iter()
        .map(|(t, s)| format!("{:>9}  {s}", fmt_ms(*t)))
        .collect()
}

/// A client process number, any JSON integer (history-format.md); `None` for anything else.
fn process_no(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => number_process(n),
        _ => None,
    }
}

fn number_process(n: &serde_json::Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process is any JSON integer: negative ones and those past i64 are told apart, not all
    /// read as process 0 or skipped.
    #[test]
    fn a_process_is_any_integer() {
        use serde_json::json;
        assert_eq!(process_no(&json!(-5)), Some(-5));
        assert_eq!(process_no(&json!(u64::MAX)), Some(i128::from(u64::MAX)));
        assert_eq!(process_no(&json!(3)), Some(3));
        assert_eq!(process_no(&json!("nemesis")), None);
        assert_eq!(process_no(&json!(1.5)), None);
    }

    #[test]
    fn a_cart_update_and_a_wipe_read_as_sentences() {
        let history = br#"{"index":0,"time":0,"process":"harness","type":"info","f":"config","value":{}}
{"index":1,"time":1000000,"process":0,"type":"invoke","f":"get","key":"cart-0","node":"n2"}
{"index":2,"time":4000000,"process":0,"type":"ok","f":"get","key":"cart-0","values":[]}
{"index":3,"time":4000000,"process":0,"type":"invoke","f":"put","key":"cart-0","node":"n2","write":"p0-1","value":["p0-1"],"observed":[]}
{"index":4,"time":9000000,"process":0,"type":"ok","f":"put","key":"cart-0","write":"p0-1"}
{"index":5,"time":10000000,"process":"nemesis","type":"info","f":"wipe","value":{"node":"n1"}}
{"index":6,"time":11000000,"process":1,"type":"invoke","f":"get","key":"cart-0","node":"n3"}
{"index":7,"time":12000000,"process":1,"type":"fail","f":"get","key":"cart-0","error":"unavailable"}
{"index":8,"time":20000000,"process":"harness","type":"info","f":"phase","value":"heal"}
{"index":9,"time":21000000,"process":"nemesis","type":"info","f":"restart","value":{"node":"n1","disk":"wiped"}}
{"index":10,"time":30000000,"process":"harness","type":"info","f":"phase","value":"final"}
{"index":11,"time":31000000,"process":9,"type":"invoke","f":"get","key":"cart-0","node":"n1"}
"#;
        let lines = tell(history, Some("n1 holds nothing")).unwrap();
        let words: Vec<&str> = lines.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            words,
            vec![
                "p0 reads cart-0 via n2 (nothing) and adds p0-1: ok",
                "n1 crashes and loses its disk",
                "p1 reads cart-0 via n3: fails (unavailable)",
                "the clients are done; every fault heals",
                "n1 restarts with an empty disk",
                "n1 holds nothing",
            ]
        );
        assert_eq!(
            text(&lines)[0],
            "     1 ms  p0 reads cart-0 via n2 (nothing) and adds p0-1: ok"
        );
        let big: String = (0..=STORY_REQUESTS_MAX)
            .map(|i| {
                format!(
                    "{{\"index\":{i},\"time\":0,\"process\":{i},\"type\":\"invoke\",\"f\":\"get\",\"key\":\"k\"}}\n"
                )
            })
            .collect();
        assert_eq!(tell(big.as_bytes(), None), None);
    }
}
