//! What a run of a plan did, in the plan's own terms: when each planned operation was invoked and
//! completed, which writes it made, and when each fault window opened, on which node.
//!
//! The shrinker needs this to pin faults to the operations around them: a window that opened after
//! the ack of p5-1 must still open after that ack once the operations around it are gone. Everything
//! is read back from the history, which already holds it: a client slot's processes are the process
//! numbers congruent to the slot modulo the client count (a process that ended `info` is replaced by
//! the number `clients` higher), and each planned operation records one or two operations (a cart
//! update is a read and, if the read succeeded, a put). A history that does not fit its plan that way
//! (written by another version, or edited) gives no trace, and the shrinker does without.

use dynamo_workloads::SimConfig;
use dynamo_workloads::plan::{ClientOp, Fault, OpKind, Plan, Start, Victim, Workload};
use dynamo_workloads::workload::node_name;
use serde_json::Value;
use std::collections::BTreeMap;

/// A millisecond, in ns.
const MS: u64 = 1_000_000;

/// One planned operation as it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpTrace {
    /// Simulated ns of its first request's invoke.
    pub invoked_ns: u64,
    /// Simulated ns of its last request's completion.
    pub completed_ns: u64,
    /// The write ids its puts and deletes had.
    pub writes: Vec<String>,
    /// Whether its write was acknowledged.
    pub acked: bool,
    /// The operation as it ran, where that differs from the plan's: a fault's follow-up sent it
    /// to another key and node (and made the first a blind put; see `Victim::Acked`).
    pub ran: Option<ClientOp>,
}

/// One fault window as it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowTrace {
    /// When it opened: the nemesis's step (None: its start came after the clients finished, so
    /// it never did).
    pub opened_ns: Option<u64>,
    /// The planned operation whose completion opened it, when one did.
    pub trigger_op: Option<usize>,
    /// The node it hit, for the faults that hit one node chosen at run time.
    pub victim: Option<u32>,
    /// The write whose ack it waited for, for a window aimed at the next acknowledged write.
    pub aimed: Option<String>,
}

/// A run of a plan, in the plan's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// By plan operation index.
    pub ops: Vec<OpTrace>,
    /// By fault window index.
    pub windows: Vec<WindowTrace>,
    /// When the heal came.
    pub heal_ns: u64,
    /// The planned operation that made each write.
    pub write_op: BTreeMap<String, usize>,
}

/// A client request as the history shows it.
#[derive(Debug)]
struct Request {
    f: String,
    key: String,
    node: String,
    write: Option<String>,
    invoked_ns: u64,
    completed_ns: Option<u64>,
    ok: bool,
}

/// The index of key `name` in `c`'s key space.
fn key_index(c: &SimConfig, name: &str) -> Option<u32> {
    (0..c.keys as u32).find(|&k| c.key_name(k) == name)
}

/// The index of node `name` ("n3" is 2).
fn node_index_of(name: &str) -> Option<u32> {
    name.strip_prefix('n')?.parse::<u32>().ok()?.checked_sub(1)
}

fn num(v: &Value, field: &str) -> Option<u64> {
    v.get(field).and_then(Value::as_u64)
}

fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

impl Trace {
    /// The trace of `plan`'s run that wrote `history`; `Err` says why the history does not fit.
    pub fn of(plan: &Plan, history: &[u8]) -> Result<Trace, String> {
        let c = &plan.config;
        let clients = c.clients as u64;
        let mut per_slot: Vec<Vec<Request>> = (0..c.clients).map(|_| Vec::new()).collect();
        let mut in_flight: BTreeMap<u64, usize> = BTreeMap::new();
        let mut nemesis: Vec<(u64, String, Value)> = Vec::new();
        let mut heal_ns = None;
        for line in history.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e: Value = serde_json::from_slice(line).map_err(|e| format!("bad line: {e}"))?;
            let time = num(&e, "time").ok_or("an event without a time")?;
            let f = text(&e, "f").unwrap_or_default().to_owned();
            match e.get("process") {
                Some(Value::String(p)) if p == "nemesis" => {
                    nemesis.push((time, f, e.get("value").cloned().unwrap_or(Value::Null)));
                }
                Some(Value::String(_)) => {
                    if f == "phase" && e.get("value") == Some(&Value::from("heal")) {
                        heal_ns = Some(time);
                        break;
                    }
                }
                Some(Value::Number(p)) => {
                    let p = p.as_u64().ok_or("a bad process number")?;
                    let slot = (p % clients) as usize;
                    if text(&e, "type") == Some("invoke") {
                        in_flight.insert(p, per_slot[slot].len());
                        per_slot[slot].push(Request {
                            f,
                            key: text(&e, "key").unwrap_or_default().to_owned(),
                            node: text(&e, "node").unwrap_or_default().to_owned(),
                            write: text(&e, "write").map(str::to_owned),
                            invoked_ns: time,
                            completed_ns: None,
                            ok: false,
                        });
                    } else {
                        let i = in_flight
                            .remove(&p)
                            .ok_or("a completion without an invoke")?;
                        let r = &mut per_slot[slot][i];
                        r.completed_ns = Some(time);
                        r.ok = text(&e, "type") == Some("ok");
                    }
                }
                _ => return Err("an event without a process".into()),
            }
        }
        let heal_ns = heal_ns.ok_or("the history has no heal")?;

        // Planned operations, per slot, matched to the slot's requests in order. Where faults
        // send the clients after the writes they hit, any operation may have run on another key
        // and node, and the first of a follow-up as a blind put.
        let follow_ups = plan.faults.iter().any(|w| w.fault.follow_ops() > 0);
        let mut ops = vec![OpTrace::default(); plan.ops.len()];
        let mut next = vec![0usize; c.clients];
        for (i, op) in plan.ops.iter().enumerate() {
            let slot = op.client as usize;
            let requests = &per_slot[slot];
            let key = c.key_name(op.key);
            let starts_with_put = matches!(
                (c.workload, op.kind),
                (_, OpKind::BlindPut) | (Workload::Register, OpKind::Update)
            );
            let blind = follow_ups
                && !starts_with_put
                && requests.get(next[slot]).is_some_and(|r| r.f == "put");
            let kind = if blind { OpKind::BlindPut } else { op.kind };
            let mut take = |want: &[&str]| -> Result<&Request, String> {
                let r = requests
                    .get(next[slot])
                    .ok_or_else(|| format!("op {i}: client {slot} has no request left"))?;
                if !want.contains(&r.f.as_str()) || (r.key != key && !follow_ups) {
                    return Err(format!(
                        "op {i}: expected {want:?} of {key}, the history has {} of {}",
                        r.f, r.key
                    ));
                }
                next[slot] += 1;
                Ok(r)
            };
            let mut taken: Vec<&Request> = Vec::with_capacity(2);
            match (c.workload, kind) {
                (_, OpKind::Read) => taken.push(take(&["get"])?),
                // A cart add without a read: one put.
                (Workload::Cart, OpKind::BlindPut) => taken.push(take(&["put"])?),
                (Workload::Cart, _) => {
                    let read = take(&["get"])?;
                    taken.push(read);
                    if read.ok {
                        taken.push(take(&["put"])?);
                    }
                }
                (Workload::Register, OpKind::Delete) => taken.push(take(&["delete", "get"])?),
                (Workload::Register, _) => taken.push(take(&["put"])?),
            }
            let first = taken.first().expect("one request at least");
            let last = taken.last().expect("one request at least");
            let ran =
                if follow_ups && (first.key != key || first.node != node_name(op.node) || blind) {
                    let key = key_index(c, &first.key)
                        .ok_or_else(|| format!("op {i}: {} is not a key of the plan", first.key))?;
                    let node = node_index_of(&first.node)
                        .filter(|&n| (n as usize) < c.nodes)
                        .ok_or_else(|| format!("op {i}: {} is not a node", first.node))?;
                    Some(ClientOp {
                        key,
                        node,
                        kind,
                        ..*op
                    })
                } else {
                    None
                };
            ops[i] = OpTrace {
                ran,
                invoked_ns: first.invoked_ns,
                completed_ns: last
                    .completed_ns
                    .ok_or_else(|| format!("op {i} never completed"))?,
                writes: taken.iter().filter_map(|r| r.write.clone()).collect(),
                acked: taken.iter().any(|r| r.write.is_some() && r.ok),
            };
        }
        if let Some(slot) = (0..c.clients).find(|&s| next[s] != per_slot[s].len()) {
            return Err(format!(
                "client {slot} made requests that no planned op explains"
            ));
        }
        let mut write_op = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            for w in &op.writes {
                write_op.insert(w.clone(), i);
            }
        }

        // When each window's start came: planned operations complete in `done` order.
        let mut done: Vec<usize> = (0..ops.len()).collect();
        done.sort_by_key(|&i| (ops[i].completed_ns, i));
        let mut by_client: Vec<Vec<usize>> = vec![Vec::new(); c.clients];
        for (i, op) in plan.ops.iter().enumerate() {
            by_client[op.client as usize].push(i);
        }
        let node_index = |v: &Value| -> Option<u32> {
            let name = text(v, "node")?;
            name.strip_prefix('n')?
                .parse::<u32>()
                .ok()
                .and_then(|n| n.checked_sub(1))
        };
        // When each window's start came (and the op whose completion made it come): a window
        // waiting for op completions opens in the step after the last of them completed.
        let done_ns = |i: usize| ops[i].completed_ns + MS;
        let due: Vec<Option<(u64, Option<usize>)>> = plan
            .faults
            .iter()
            .map(|w| {
                let due = match w.start {
                    Start::Ops(0) => Some((0, None)),
                    Start::ClientOps {
                        ops: 0, after_ms, ..
                    } => Some((after_ms * MS, None)),
                    Start::Ops(k) => done.get(k as usize - 1).map(|&i| (done_ns(i), Some(i))),
                    Start::ClientOps {
                        client,
                        ops: k,
                        after_ms,
                    } => by_client
                        .get(client as usize)
                        .and_then(|list| list.get(k as usize - 1))
                        .map(|&i| (done_ns(i) + after_ms * MS, Some(i))),
                    Start::Ms(t) => Some((t.saturating_mul(MS), None)),
                };
                due.filter(|&(t, _)| t < heal_ns)
            })
            .collect();
        // The nemesis event a crash, wipe or disk fault made: (name, damage, aimed).
        let event_of = |f: &Fault| -> Option<(&'static str, Option<&'static str>, bool)> {
            match f {
                Fault::Crash { node } => {
                    Some(("crash", None, matches!(node, Victim::Acked { .. })))
                }
                Fault::Wipe { node } => Some(("wipe", None, matches!(node, Victim::Acked { .. }))),
                Fault::Disk { node, damage, .. } => Some((
                    "disk",
                    Some(damage.name()),
                    matches!(node, Victim::Acked { .. }),
                )),
                _ => None,
            }
        };
        let mut used = vec![false; nemesis.len()];
        let mut claim = |from_ns: u64, f: &str, damage: Option<&str>, nodes: &[u32]| {
            let j = (0..nemesis.len()).find(|&j| {
                let (t, g, v) = &nemesis[j];
                !used[j]
                    && *t >= from_ns
                    && g == f
                    && v.get("cause").is_none()
                    && damage.is_none_or(|d| text(v, "damage") == Some(d))
                    && node_index(v).is_some_and(|n| nodes.contains(&n))
            })?;
            used[j] = true;
            Some(j)
        };
        // Windows on a fixed node first: they opened when their start came, and their events are
        // theirs; then the aimed ones, in the order they were armed, each taking the next event
        // of its kind on one of its candidates.
        let mut windows = vec![WindowTrace::default(); plan.faults.len()];
        for (i, w) in plan.faults.iter().enumerate() {
            let Some((due_ns, trigger)) = due[i] else {
                continue;
            };
            let kind = event_of(&w.fault);
            if kind.is_some_and(|(_, _, aimed)| aimed) {
                continue;
            }
            windows[i] = WindowTrace {
                opened_ns: Some(due_ns),
                trigger_op: trigger,
                victim: w.fault.nodes().first().copied().filter(|_| kind.is_some()),
                aimed: None,
            };
            if let Some((f, damage, _)) = kind {
                claim(due_ns, f, damage, &w.fault.nodes());
            }
        }
        let mut armed: Vec<usize> = (0..plan.faults.len())
            .filter(|&i| due[i].is_some() && event_of(&plan.faults[i].fault).is_some_and(|k| k.2))
            .collect();
        armed.sort_by_key(|&i| (due[i].map(|d| d.0), i));
        for i in armed {
            let w = &plan.faults[i];
            let (f, damage, _) = event_of(&w.fault).expect("an aimed fault");
            let due_ns = due[i].expect("armed").0;
            if let Some(j) = claim(due_ns, f, damage, &w.fault.nodes()) {
                let (t, _, v) = &nemesis[j];
                let write = text(v, "after_ack_of").map(str::to_owned);
                windows[i] = WindowTrace {
                    opened_ns: Some(*t),
                    trigger_op: write.as_ref().and_then(|w| write_op.get(w).copied()),
                    victim: node_index(v),
                    aimed: write,
                };
            }
        }
        Ok(Trace {
            ops,
            windows,
            heal_ns,
            write_op,
        })
    }
}

impl Trace {
    /// `plan` with its follow-ups written in as they ran: each operation a follow-up redirected
    /// replaced by what ran, and no fault asking for a follow-up any more. None if it had none.
    pub fn plan_as_run(&self, plan: &Plan) -> Option<Plan> {
        let mut p = plan.clone();
        let mut changed = false;
        for w in &mut p.faults {
            if let Fault::Crash { node }
            | Fault::Wipe { node }
            | Fault::Disk { node, .. }
            | Fault::Pause { node } = &mut w.fault
                && let Victim::Acked { follow_ops, .. } = node
                && *follow_ops > 0
            {
                *follow_ops = 0;
                changed = true;
            }
        }
        for (op, t) in p.ops.iter_mut().zip(&self.ops) {
            if let Some(ran) = t.ran {
                *op = ran;
            }
        }
        changed.then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_workloads::SimConfig;
    use dynamo_workloads::plan::FaultWindow;

    #[test]
    fn a_follow_up_is_read_back_as_it_ran_and_written_into_the_plan_replays_the_same_run() {
        let mut plan = Plan::generate(SimConfig {
            seed: 5,
            ops: 80,
            clients: 3,
            keys: 6,
            w: 2,
            nemesis: vec![],
            quiesce_ms: 500,
            ..SimConfig::default()
        })
        .unwrap();
        plan.faults = vec![FaultWindow {
            start: Start::Ops(10),
            duration_ms: 100,
            fault: Fault::Wipe {
                node: Victim::Acked {
                    acked: vec![0],
                    follow_ops: 4,
                },
            },
        }];
        let output = dynamo_workloads::run(&plan).unwrap();
        let trace = Trace::of(&plan, &output.history).unwrap();
        let ran: Vec<(usize, ClientOp)> = trace
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.ran.map(|r| (i, r)))
            .collect();
        // Four operations of one client, after the wipe, through n1, on the aimed write's key;
        // the first a blind put (some may have kept the plan's key and node by chance).
        assert!(!ran.is_empty() && ran.len() <= 4, "{ran:?}");
        let (first, op) = ran[0];
        assert_eq!((op.node, op.kind), (0, OpKind::BlindPut), "{ran:?}");
        assert!(
            ran.iter()
                .all(|(_, r)| r.client == op.client && r.key == op.key)
        );
        assert!(trace.ops[first].invoked_ns > trace.windows[0].opened_ns.unwrap());
        let aimed = trace.windows[0].aimed.as_ref().expect("an aimed write");
        assert_eq!(plan.ops[trace.write_op[aimed]].key, op.key);
        // Written into the plan, the same operations run without asking for a follow-up.
        let as_run = trace.plan_as_run(&plan).expect("it had a follow-up");
        assert!(as_run.faults.iter().all(|w| match &w.fault {
            Fault::Wipe { node } => node.follow_ops() == 0,
            _ => true,
        }));
        let again = dynamo_workloads::run(&as_run).unwrap();
        let without_follow = |h: &[u8]| -> Vec<u8> {
            String::from_utf8_lossy(h)
                .lines()
                .map(|l| {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    if let Some(value) = v.get_mut("value").and_then(Value::as_object_mut) {
                        value.remove("then_follow");
                    }
                    v.to_string() + "\n"
                })
                .collect::<String>()
                .into_bytes()
        };
        assert_eq!(
            without_follow(&again.history),
            without_follow(&output.history)
        );
        assert!(trace.plan_as_run(&as_run).is_none());
    }

    #[test]
    fn a_run_is_read_back_in_the_plans_terms() {
        let mut plan = Plan::generate(SimConfig {
            seed: 3,
            ops: 60,
            clients: 3,
            keys: 4,
            nemesis: vec![],
            quiesce_ms: 500,
            ..SimConfig::default()
        })
        .unwrap();
        plan.faults = vec![
            FaultWindow {
                start: Start::Ops(10),
                duration_ms: 100,
                fault: Fault::Crash {
                    node: Victim::Acked {
                        acked: vec![0, 1, 2],
                        follow_ops: 0,
                    },
                },
            },
            FaultWindow {
                start: Start::ClientOps {
                    client: 1,
                    ops: 4,
                    after_ms: 0,
                },
                duration_ms: 100,
                fault: Fault::Loss { rate_ppm: 1 },
            },
            FaultWindow {
                start: Start::Ops(10_000),
                duration_ms: 100,
                fault: Fault::Power,
            },
        ];
        // Cart adds without a read (one put, no get) are read back too.
        assert!(plan.ops.iter().any(|o| o.kind == OpKind::BlindPut));
        let output = dynamo_workloads::run(&plan).unwrap();
        let trace = Trace::of(&plan, &output.history).unwrap();
        assert_eq!(trace.ops.len(), 60);
        for op in &trace.ops {
            assert!(op.invoked_ns <= op.completed_ns);
        }
        // Every cart update that read successfully wrote once, under its own id.
        assert!(trace.write_op.len() > 30, "{}", trace.write_op.len());
        for (w, &i) in &trace.write_op {
            assert_eq!(trace.ops[i].writes, vec![w.clone()]);
        }
        // The aimed crash opened at the ack of the write it names, on a node.
        let crash = &trace.windows[0];
        let aimed = crash.aimed.as_ref().expect("a write was acked after op 10");
        let op = trace.write_op[aimed];
        assert_eq!(crash.trigger_op, Some(op));
        assert!(crash.victim.is_some());
        assert!(crash.opened_ns.unwrap() >= trace.ops[op].completed_ns);
        // The pinned window opened at client 1's fourth op's completion.
        let fourth = plan
            .ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.client == 1)
            .nth(3)
            .unwrap()
            .0;
        assert_eq!(trace.windows[1].trigger_op, Some(fourth));
        assert_eq!(
            trace.windows[1].opened_ns,
            Some(trace.ops[fourth].completed_ns + MS)
        );
        // The power cut's start never came.
        assert_eq!(trace.windows[2], WindowTrace::default());
        // A history that does not fit the plan gives no trace.
        let mut other = plan.clone();
        other.ops.pop();
        assert!(Trace::of(&other, &output.history).is_err());
    }
}
