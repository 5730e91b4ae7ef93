//! The timeline's data: one lane per client process with a bar per operation, the nemesis's fault
//! intervals, and the heal and final phases.
//!
//! Past [`OPS_DRAWN_MAX`] operations each lane is summarised: its operations are binned into
//! [`BINS_PER_LANE`] time bins, one bar per non-empty bin coloured by the worst outcome in it, so that a
//! 100,000-operation history draws at most lanes x bins bars. Past [`LANES_MAX`] processes, lanes
//! are per client slot (process mod clients), which is where a retired process's successor runs.

use super::digest::{Digest, NemesisRec, OpRec};
use super::fmt_ms;
use dynamo_checker::history::{ClientF, Outcome, ProcessNo};
use serde_json::Value;
use std::collections::BTreeMap;

/// The most operations drawn one bar each.
pub const OPS_DRAWN_MAX: usize = 6_000;
/// Time bins per lane when summarised.
pub const BINS_PER_LANE: usize = 240;
/// The most lanes drawn one per process.
pub const LANES_MAX: usize = 64;

/// How a bar is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tone {
    Ok,
    Fail,
    Info,
    /// Pending when the history ended.
    Pending,
}

impl Tone {
    fn of(outcome: Option<Outcome>) -> Tone {
        match outcome {
            Some(Outcome::Ok) => Tone::Ok,
            Some(Outcome::Fail) => Tone::Fail,
            Some(Outcome::Info) => Tone::Info,
            None => Tone::Pending,
        }
    }

    /// The CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Fail => "fail",
            Tone::Info => "info",
            Tone::Pending => "pending",
        }
    }
}

/// One bar: an operation, or a bin of operations.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub start_ns: u64,
    pub end_ns: u64,
    pub tone: Tone,
    /// A write (put or delete), drawn a little taller than a read.
    pub write: bool,
    /// The hover text.
    pub title: String,
}

/// One lane.
#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    pub label: String,
    pub bars: Vec<Bar>,
}

/// A shaded interval: a fault.
#[derive(Clone, Debug, PartialEq)]
pub struct Shade {
    pub start_ns: u64,
    pub end_ns: u64,
    /// The fault kind (`partition`, `crash`, ...), also the CSS class.
    pub kind: String,
    /// What, for the label and hover text.
    pub label: String,
}

/// A vertical marker: a phase, or a nemesis event with no interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub at_ns: u64,
    pub label: String,
}

/// The timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub end_ns: u64,
    pub lanes: Vec<Lane>,
    pub shades: Vec<Shade>,
    pub marks: Vec<Mark>,
    /// Set when lanes are binned rather than drawn one bar per operation.
    pub summarised: bool,
    /// Set when lanes are per client slot rather than per process.
    pub per_slot: bool,
}

fn node_of(v: &Value) -> String {
    v.get("node")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

fn groups_of(v: &Value) -> String {
    match v.get("groups").and_then(Value::as_array) {
        Some(groups) => {
            let sides: Vec<String> = groups
                .iter()
                .map(|g| {
                    let names: Vec<&str> = g
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    names.join(" ")
                })
                .collect();
            let shape = v.get("shape").and_then(Value::as_str).unwrap_or("");
            format!("{shape} {}", sides.join(" | ")).trim().to_owned()
        }
        None => String::new(),
    }
}

/// Pairs the nemesis events into intervals: `X-start`/`X-stop`, `crash`/`wipe` with the node's next
/// `restart`, a node's `skew` with its next `skew` (the return), a node's `leave` with its next `join`.
/// Any other event (a `join` of a new node) is a mark. An interval still open at the heal (or the end)
/// closes there.
pub fn shades(nemesis: &[NemesisRec], close_ns: u64) -> (Vec<Shade>, Vec<Mark>) {
    let mut shades = Vec::new();
    let mut marks = Vec::new();
    // Open intervals by what closes them.
    let mut open: BTreeMap<String, Shade> = BTreeMap::new();
    for e in nemesis {
        let f = e.f.as_str();
        let (slot, opens): (String, Option<Shade>) = if let Some(stem) = f.strip_suffix("-start") {
            let label = match stem {
                "partition" => format!("partition {}", groups_of(&e.value)),
                "loss" => format!(
                    "message loss {} ppm",
                    e.value
                        .get("rate_ppm")
                        .map(Value::to_string)
                        .unwrap_or_default()
                ),
                "slow" => format!(
                    "slow links ≤ {} ms",
                    e.value
                        .get("latency_ms_max")
                        .map(Value::to_string)
                        .unwrap_or_default()
                ),
                other => other.to_owned(),
            };
            (
                stem.to_owned(),
                Some(Shade {
                    start_ns: e.time_ns,
                    end_ns: e.time_ns,
                    kind: stem.to_owned(),
                    label: label.trim().to_owned(),
                }),
            )
        } else if let Some(stem) = f.strip_suffix("-stop") {
            (stem.to_owned(), None)
        } else if f == "crash" || f == "wipe" {
            let node = node_of(&e.value);
            (
                format!("node {node}"),
                Some(Shade {
                    start_ns: e.time_ns,
                    end_ns: e.time_ns,
                    kind: f.to_owned(),
                    label: format!("{f} {node}"),
                }),
            )
        } else if f == "restart" {
            (format!("node {}", node_of(&e.value)), None)
        } else if f == "leave" {
            let node = node_of(&e.value);
            (
                format!("member {node}"),
                Some(Shade {
                    start_ns: e.time_ns,
                    end_ns: e.time_ns,
                    kind: "membership".to_owned(),
                    label: format!("{node} out of the ring"),
                }),
            )
        } else if f == "join" && open.contains_key(&format!("member {}", node_of(&e.value))) {
            (format!("member {}", node_of(&e.value)), None)
        } else if f == "skew" {
            let node = node_of(&e.value);
            let slot = format!("skew {node}");
            if open.contains_key(&slot) {
                (slot, None)
            } else {
                let by = e.value.get("by_ms").and_then(Value::as_i64).unwrap_or(0);
                (
                    slot,
                    Some(Shade {
                        start_ns: e.time_ns,
                        end_ns: e.time_ns,
                        kind: "skew".to_owned(),
                        label: format!("skew {node} {by:+} ms"),
                    }),
                )
            }
        } else {
            let what = match e.value.get("node").and_then(Value::as_str) {
                Some(node) => format!("{f} {node}"),
                None => f.to_owned(),
            };
            marks.push(Mark {
                at_ns: e.time_ns,
                label: what,
            });
            continue;
        };
        if let Some(mut prev) = open.remove(&slot) {
            prev.end_ns = e.time_ns;
            shades.push(prev);
        }
        if let Some(s) = opens {
            open.insert(slot, s);
        }
    }
    for (_, mut s) in open {
        s.end_ns = close_ns.max(s.start_ns);
        shades.push(s);
    }
    shades.sort_by_key(|s| (s.start_ns, s.end_ns));
    (shades, marks)
}

fn op_title(d: &Digest, op: &OpRec) -> String {
    let outcome = op.outcome.map(Outcome::as_str).unwrap_or("pending");
    let end = match op.end_ns {
        Some(e) => format!(
            "{}–{} ({})",
            fmt_ms(op.start_ns),
            fmt_ms(e),
            fmt_ms(e - op.start_ns)
        ),
        None => format!("from {}", fmt_ms(op.start_ns)),
    };
    format!(
        "process {} {} {} {outcome}{} {end}",
        op.process,
        op.f.as_str(),
        d.key_name(op.key),
        if op.is_final { " (final read)" } else { "" },
    )
}

/// The timeline of a digest. `clients` (from the configuration) names the client slots when lanes
/// must be per slot.
pub fn build(d: &Digest, clients: Option<u64>) -> Timeline {
    let end_ns = d.end_ns.max(1);
    let close_ns = d.heal_ns.unwrap_or(end_ns);
    let (shades, mut marks) = shades(&d.nemesis, close_ns);
    if let Some(t) = d.heal_ns {
        marks.push(Mark {
            at_ns: t,
            label: "heal".into(),
        });
    }
    if let Some(t) = d.final_ns {
        marks.push(Mark {
            at_ns: t,
            label: "final".into(),
        });
    }
    marks.sort_by_key(|m| m.at_ns);

    let processes: std::collections::BTreeSet<ProcessNo> =
        d.ops.iter().map(|o| o.process).collect();
    let per_slot = processes.len() > LANES_MAX;
    let slots = clients
        .filter(|&c| c > 0 && c <= LANES_MAX as u64)
        .unwrap_or(LANES_MAX as u64);
    let lane_of = |p: ProcessNo| {
        if per_slot {
            p.rem_euclid(ProcessNo::from(slots))
        } else {
            p
        }
    };
    let mut by_lane: BTreeMap<ProcessNo, Vec<&OpRec>> = BTreeMap::new();
    for op in &d.ops {
        by_lane.entry(lane_of(op.process)).or_default().push(op);
    }
    let summarised = d.ops.len() > OPS_DRAWN_MAX;
    let lanes = by_lane
        .into_iter()
        .map(|(lane, ops)| {
            let label = if per_slot {
                format!("slot {lane}")
            } else {
                format!("p{lane}")
            };
            let bars = if summarised {
                binned(&ops, end_ns)
            } else {
                ops.iter()
                    .map(|op| Bar {
                        start_ns: op.start_ns,
                        end_ns: op.end_ns.unwrap_or(end_ns),
                        tone: Tone::of(op.outcome),
                        write: op.f != ClientF::Get,
                        title: op_title(d, op),
                    })
                    .collect()
            };
            Lane { label, bars }
        })
        .collect();
    Timeline {
        end_ns,
        lanes,
        shades,
        marks,
        summarised,
        per_slot,
    }
}

/// One bar per non-empty time bin of a lane.
fn binned(ops: &[&OpRec], end_ns: u64) -> Vec<Bar> {
    let width_ns = end_ns.div_ceil(BINS_PER_LANE as u64).max(1);
    let mut bins: BTreeMap<u64, [usize; 4]> = BTreeMap::new();
    for op in ops {
        let b = op.start_ns / width_ns;
        bins.entry(b).or_default()[Tone::of(op.outcome) as usize] += 1;
    }
    bins.into_iter()
        .map(|(b, counts)| {
            let tone = if counts[Tone::Info as usize] + counts[Tone::Pending as usize] > 0 {
                Tone::Info
            } else if counts[Tone::Fail as usize] > 0 {
                Tone::Fail
            } else {
                Tone::Ok
            };
            let start_ns = b * width_ns;
            Bar {
                start_ns,
                end_ns: (start_ns + width_ns).min(end_ns),
                tone,
                write: false,
                title: format!(
                    "{}–{}: {} ops ({} ok, {} fail, {} info, {} pending)",
                    fmt_ms(start_ns),
                    fmt_ms(start_ns + width_ns),
                    counts.iter().sum::<usize>(),
                    counts[0],
                    counts[1],
                    counts[2],
                    counts[3]
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nem(t: u64, f: &str, value: Value) -> NemesisRec {
        NemesisRec {
            time_ns: t,
            f: f.into(),
            value,
        }
    }

    #[test]
    fn nemesis_events_pair_into_intervals() {
        let events = vec![
            nem(
                10,
                "partition-start",
                json!({"groups":[["n1"],["n2","n3"]],"shape":"isolate"}),
            ),
            nem(20, "partition-stop", Value::Null),
            nem(30, "crash", json!({"node":"n2"})),
            nem(40, "restart", json!({"node":"n2"})),
            nem(50, "skew", json!({"node":"n1","by_ms":-400})),
            nem(60, "skew", json!({"node":"n1","by_ms":400})),
            nem(70, "join", json!({"node":"n6"})),
            nem(80, "loss-start", json!({"rate_ppm": 5000})),
            nem(82, "leave", json!({"node":"n4"})),
            nem(90, "join", json!({"node":"n4"})),
        ];
        let (shades, marks) = shades(&events, 100);
        let got: Vec<(u64, u64, &str)> = shades
            .iter()
            .map(|s| (s.start_ns, s.end_ns, s.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 20, "partition"),
                (30, 40, "crash"),
                (50, 60, "skew"),
                (80, 100, "loss"),
                (82, 90, "membership")
            ]
        );
        assert_eq!(shades[0].label, "partition isolate n1 | n2 n3");
        assert_eq!(shades[2].label, "skew n1 -400 ms");
        assert_eq!(
            marks,
            vec![Mark {
                at_ns: 70,
                label: "join n6".into()
            }]
        );
    }

    fn op(process: ProcessNo, start: u64, outcome: Outcome) -> OpRec {
        OpRec {
            process,
            f: ClientF::Get,
            outcome: Some(outcome),
            key: 0,
            start_ns: start,
            end_ns: Some(start + 5),
            is_final: false,
        }
    }

    #[test]
    fn large_histories_are_binned_per_lane() {
        let mut d = Digest {
            keys: vec!["k".into()],
            end_ns: 1_000_000,
            ..Digest::default()
        };
        for i in 0..(OPS_DRAWN_MAX as u64 + 100) {
            let outcome = if i == 7 { Outcome::Info } else { Outcome::Ok };
            d.ops.push(op((i % 4).into(), i * 100, outcome));
        }
        let t = build(&d, Some(4));
        assert!(t.summarised);
        assert_eq!(t.lanes.len(), 4);
        for lane in &t.lanes {
            assert!(lane.bars.len() <= BINS_PER_LANE, "{}", lane.bars.len());
        }
        let infos: usize = t
            .lanes
            .iter()
            .flat_map(|l| &l.bars)
            .filter(|b| b.tone == Tone::Info)
            .count();
        assert_eq!(infos, 1, "the bin holding the info op is coloured info");

        let small = Digest {
            ops: d.ops[..10].to_vec(),
            ..d.clone()
        };
        let t = build(&small, Some(4));
        assert!(!t.summarised);
        assert_eq!(t.lanes.iter().map(|l| l.bars.len()).sum::<usize>(), 10);
        assert!(t.lanes[0].bars[0].title.contains("process 0 get k ok"));
    }
}
