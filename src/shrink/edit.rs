//! Smaller plans made from a plan: the candidates the search tries.
//!
//! The main one is [`project`]: the plan cut down to a [`Selection`] of its operations, fault
//! windows and nodes, made consistent again: clients, keys and nodes renumbered from 0 (a shrunk
//! plan reads `p0`, `cart-0`, `n1`), every fault window pinned to the operation whose completion
//! opened it in the run being shrunk ([`Start::ClientOps`]; when that operation is cut, to the last
//! kept one that had completed by then), and faults aimed at "the next acknowledged write" fixed on
//! the node they hit. Renumbering changes the ring, so the nodes are relabelled such that the
//! witness key's walk of the ring (its N replicas first, then the sloppy quorum's stand-ins) meets
//! the same nodes in the same order as before; other kept keys get an index whose replicas match,
//! where a few tries find one. The simulation, as always, says whether that was enough.
//!
//! The others are exact edits that need no run to pin them: fault windows removed or halved,
//! think times zeroed, and operations removed with the pins of their client moved along
//! ([`without_ops`], for plans without a trace).

use super::trace::Trace;
use dynamo_node::ring::{NodeId, Ring};
use dynamo_workloads::plan::{ClientOp, Fault, FaultWindow, NemesisKind, Plan, Start, Victim};
use std::collections::{BTreeMap, BTreeSet};

/// Key indexes tried for a kept key other than the witness key, to find one whose replicas under
/// the new ring are the same nodes as before (each costs a final read of an unused key).
pub const KEY_INDEX_SEARCH_MAX: u32 = 16;

/// How big a plan is, in the terms shrinking reduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Size {
    pub ops: usize,
    pub faults: usize,
    /// Clients with operations.
    pub clients: usize,
    /// Keys with operations.
    pub keys: usize,
    pub nodes: usize,
    /// Total time faults are active.
    pub fault_ms: u64,
    /// Total client think time.
    pub think_ms: u64,
}

impl Size {
    pub fn of(plan: &Plan) -> Size {
        let clients: BTreeSet<u32> = plan.ops.iter().map(|o| o.client).collect();
        let keys: BTreeSet<u32> = plan.ops.iter().map(|o| o.key).collect();
        Size {
            ops: plan.ops.len(),
            faults: plan.faults.len(),
            clients: clients.len(),
            keys: keys.len(),
            nodes: plan.config.nodes,
            fault_ms: plan.faults.iter().map(|f| f.duration_ms).sum(),
            think_ms: plan.ops.iter().map(|o| o.think_ms as u64).sum(),
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ops, {} faults ({:.2} s), {} clients, {} keys, {} nodes",
            self.ops,
            self.faults,
            self.fault_ms as f64 / 1000.0,
            self.clients,
            self.keys,
            self.nodes
        )
    }
}

/// What to keep of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Operation indexes, ascending.
    pub ops: Vec<usize>,
    /// Fault window indexes, ascending.
    pub windows: Vec<usize>,
    /// Node indexes, ascending.
    pub nodes: Vec<u32>,
    /// Run every kept operation on one client, in the order they were invoked.
    pub sequential: bool,
    /// Move every kept operation to the witness key.
    pub one_key: bool,
    /// Keep each kept operation's start time: where operations before it on its client were cut,
    /// it pauses for as long as they took (a pause is simpler than an operation, and the timing
    /// of a race often matters as much as its operations).
    pub timed: bool,
}

impl Selection {
    /// Everything of `plan`.
    pub fn all(plan: &Plan) -> Selection {
        Selection {
            ops: (0..plan.ops.len()).collect(),
            windows: (0..plan.faults.len()).collect(),
            nodes: (0..plan.config.nodes as u32).collect(),
            sequential: false,
            one_key: false,
            timed: false,
        }
    }
}

/// A millisecond, in ns.
const MS: u64 = 1_000_000;

/// The ring every node of a plan with `nodes` nodes starts with.
pub fn ring(nodes: usize, partitions: u32) -> Ring {
    let members: BTreeMap<NodeId, u32> = (1..=nodes).map(|i| (format!("n{i}").into(), 1)).collect();
    Ring::new(partitions, &members)
}

/// A node's index from its name (`n3` is 2).
pub fn node_index(name: &str) -> Option<u32> {
    name.strip_prefix('n')?.parse::<u32>().ok()?.checked_sub(1)
}

/// Node indexes in the order the sloppy quorum walks the ring for `key` (the preference list first).
pub fn walk(ring: &Ring, key: &str) -> Vec<u32> {
    ring.fallbacks(key.as_bytes())
        .iter()
        .filter_map(|n| node_index(n))
        .collect()
}

/// `plan` cut down to `sel`, renumbered and pinned (see the module docs). `trace` is the run of
/// `plan` being shrunk, `witness_key` the key the finding is about. Clients, keys and nodes are
/// renumbered only where some of their kind are cut (the witness key becomes key 0); with all of
/// them kept, the projection changes only the fault windows, and runs the same run. `None` when
/// the selection cannot make a valid plan (fewer nodes than N); else the plan and the witness key's
/// index in it.
pub fn project(
    plan: &Plan,
    trace: &Trace,
    sel: &Selection,
    witness_key: u32,
) -> Option<(Plan, u32)> {
    let c = &plan.config;
    let kept_set: BTreeSet<usize> = sel.ops.iter().copied().collect();
    let nodes: Vec<u32> = sel.nodes.clone();
    if nodes.len() < c.n || nodes.is_empty() {
        return None;
    }

    // Operations, in the order they will be listed, and their new clients.
    let mut order: Vec<usize> = sel.ops.clone();
    if sel.sequential {
        order.sort_by_key(|&i| (trace.ops[i].invoked_ns, i));
    }
    // What is kept keeps its name when nothing of its kind is cut: the run stays the same run.
    let clients: BTreeSet<u32> = order.iter().map(|&i| plan.ops[i].client).collect();
    let same_clients = !sel.sequential && clients == (0..c.clients as u32).collect();
    let client_of: BTreeMap<u32, u32> = clients
        .iter()
        .enumerate()
        .map(|(new, &old)| {
            let new = match (sel.sequential, same_clients) {
                (true, _) => 0,
                (false, true) => old,
                (false, false) => new as u32,
            };
            (old, new)
        })
        .collect();
    let mut count: BTreeMap<u32, u64> = BTreeMap::new();
    // op index -> (new client, how many of that client's ops complete up to and with it)
    let mut place: BTreeMap<usize, (u32, u64)> = BTreeMap::new();
    for &i in &order {
        let client = client_of[&plan.ops[i].client];
        let n = count.entry(client).or_default();
        *n += 1;
        place.insert(i, (client, *n));
    }

    // Keys: the witness key becomes key 0, the others follow.
    let key_of_op = |i: usize| {
        if sel.one_key {
            witness_key
        } else {
            plan.ops[i].key
        }
    };
    let mut keys: Vec<u32> = order.iter().map(|&i| key_of_op(i)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.retain(|&k| k != witness_key);
    keys.insert(0, witness_key);

    let used: BTreeSet<u32> = plan.ops.iter().map(|o| o.key).collect();
    let same_keys = !sel.one_key && keys.iter().copied().collect::<BTreeSet<u32>>() == used;
    let same_nodes = same_keys && nodes.iter().copied().eq(0..c.nodes as u32);

    // Nodes: relabelled so that the witness key walks the kept nodes in the same order.
    let old_ring = ring(c.nodes, c.partitions);
    let new_ring = ring(nodes.len(), c.partitions);
    let kept_walk = |key: u32| -> Vec<u32> {
        walk(&old_ring, &c.key_name(key))
            .into_iter()
            .filter(|n| nodes.contains(n))
            .collect()
    };
    let witness_new = if same_keys { witness_key } else { 0 };
    let node_of: BTreeMap<u32, u32> = if same_nodes {
        nodes.iter().map(|&n| (n, n)).collect()
    } else {
        let old_walk = kept_walk(witness_key);
        let new_walk = walk(&new_ring, &c.key_name(witness_new));
        old_walk.iter().copied().zip(new_walk).collect()
    };
    debug_assert_eq!(node_of.len(), nodes.len());

    // Every other key: the first index whose replicas are the same nodes, in order if possible.
    let mut key_of: BTreeMap<u32, u32> = BTreeMap::from([(witness_key, witness_new)]);
    let mut taken: BTreeSet<u32> = BTreeSet::from([witness_new]);
    for &k in keys.iter().skip(1) {
        if same_keys {
            key_of.insert(k, k);
            continue;
        }
        let want: Vec<u32> = kept_walk(k)
            .into_iter()
            .take(c.n)
            .map(|n| node_of[&n])
            .collect();
        let free = || (0..).find(|j| !taken.contains(j)).expect("a free index");
        let fits = |j: u32, ordered: bool| {
            let mut got: Vec<u32> = walk(&new_ring, &c.key_name(j))
                .into_iter()
                .take(c.n)
                .collect();
            let mut want = want.clone();
            if !ordered {
                got.sort_unstable();
                want.sort_unstable();
            }
            got == want
        };
        let candidates: Vec<u32> = (0..KEY_INDEX_SEARCH_MAX)
            .filter(|j| !taken.contains(j))
            .collect();
        let j = candidates
            .iter()
            .copied()
            .find(|&j| fits(j, true))
            .or_else(|| candidates.iter().copied().find(|&j| fits(j, false)))
            .unwrap_or_else(free);
        taken.insert(j);
        key_of.insert(k, j);
    }

    // Each kept op's pause: its own, or, timed, what keeps it starting when it did.
    let mut previous_in_plan: BTreeMap<usize, Option<usize>> = BTreeMap::new();
    let mut last_of_client: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, op) in plan.ops.iter().enumerate() {
        previous_in_plan.insert(i, last_of_client.insert(op.client, i));
    }
    let mut previous_kept: BTreeMap<u32, usize> = BTreeMap::new();
    let mut think_of: BTreeMap<usize, u32> = BTreeMap::new();
    for &i in &order {
        let client = place[&i].0;
        let before = previous_kept.insert(client, i);
        let think = if sel.timed && before != previous_in_plan[&i] {
            let from_ns = before.map_or(0, |j| trace.ops[j].completed_ns);
            let gap_ms = trace.ops[i].invoked_ns.saturating_sub(from_ns) / 1_000_000;
            u32::try_from(gap_ms).unwrap_or(u32::MAX)
        } else {
            plan.ops[i].think_ms
        };
        think_of.insert(i, think);
    }

    let ops: Vec<ClientOp> = order
        .iter()
        .map(|&i| {
            let op = plan.ops[i];
            let key = key_of[&key_of_op(i)];
            let node = node_of.get(&op.node).copied().unwrap_or_else(|| {
                // A coordinator that was cut: the key's first replica takes its requests.
                walk(&new_ring, &c.key_name(key))[0]
            });
            ClientOp {
                client: place[&i].0,
                key,
                kind: op.kind,
                node,
                think_ms: think_of[&i],
            }
        })
        .collect();

    // Fault windows, pinned to the kept operations.
    let mut by_client: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, op) in plan.ops.iter().enumerate() {
        by_client.entry(op.client).or_default().push(i);
    }
    let keeps_time = sel.timed || (sel.ops.len() == plan.ops.len() && !sel.sequential);
    let mut faults = Vec::new();
    for &w in &sel.windows {
        let window = &plan.faults[w];
        let t = &trace.windows[w];
        let Some(opened_ns) = t.opened_ns else {
            continue; // It never opened: it changed nothing.
        };
        // The op it is pinned after, and how long after that op's completion it opens.
        let pinned = match window.start {
            Start::ClientOps {
                client,
                ops,
                after_ms,
            } if ops > 0 => by_client
                .get(&client)
                .and_then(|list| list.get(ops as usize - 1))
                .map(|&i| (i, after_ms)),
            _ => None,
        };
        let anchor = pinned
            .into_iter()
            .chain(t.trigger_op.map(|i| (i, 0)))
            .find(|(i, _)| kept_set.contains(i))
            .or_else(|| {
                // The last kept op that completed strictly before (one that ended in the
                // millisecond the window opened may have ended because of it: a request to the
                // node it crashed), and the window's delay after it (it opens in the step after
                // that op's completion, plus the delay).
                order
                    .iter()
                    .copied()
                    .filter(|&i| trace.ops[i].completed_ns < opened_ns)
                    .max_by_key(|&i| trace.ops[i].completed_ns)
                    .map(|i| {
                        let gap_ms = (opened_ns - trace.ops[i].completed_ns) / MS;
                        (i, gap_ms.saturating_sub(1))
                    })
            });
        let start = match anchor {
            Some((i, after_ms)) => {
                let (client, ops) = place[&i];
                Start::ClientOps {
                    client,
                    ops,
                    after_ms,
                }
            }
            // Before every kept op: at the same time, where the ops keep theirs.
            None if keeps_time => Start::Ms(opened_ns / MS),
            None => Start::Ops(0),
        };
        let node = |n: u32| node_of.get(&n).copied();
        let victim = |v: &Victim| -> Option<Victim> {
            let hit = t.victim.or_else(|| v.candidates().first().copied())?;
            Some(Victim::Node(node(hit)?))
        };
        let fault = match &window.fault {
            Fault::Crash { node } => victim(node).map(|node| Fault::Crash { node }),
            Fault::Wipe { node } => victim(node).map(|node| Fault::Wipe { node }),
            Fault::Pause { node } => victim(node).map(|node| Fault::Pause { node }),
            Fault::Disk {
                node,
                damage,
                pick,
                aim_key,
            } => {
                // Fixed on its node, damage at rest still hits the key of the write it waited
                // for (the newest record there), as in the run (renumbered; none if the key is
                // cut): aimed elsewhere, a torn tail cuts other bytes.
                let aim_key = t
                    .aimed
                    .as_ref()
                    .and_then(|w| trace.write_op.get(w))
                    .map(|&i| plan.ops[i].key)
                    .or(*aim_key)
                    .and_then(|k| key_of.get(&if sel.one_key { witness_key } else { k }))
                    .copied();
                victim(node).map(|node| Fault::Disk {
                    node,
                    damage: *damage,
                    pick: *pick,
                    aim_key,
                })
            }
            Fault::Partition {
                groups,
                shape,
                oneway,
            } => {
                let groups: Vec<Vec<u32>> = groups
                    .iter()
                    .map(|g| g.iter().filter_map(|&n| node(n)).collect::<Vec<u32>>())
                    .filter(|g| !g.is_empty())
                    .collect();
                (groups.len() >= 2).then(|| Fault::Partition {
                    groups,
                    shape: shape.clone(),
                    oneway: *oneway,
                })
            }
            Fault::Skew { node: n, by_ms } => node(*n).map(|n| Fault::Skew {
                node: n,
                by_ms: *by_ms,
            }),
            Fault::Leave { node: n } => node(*n).map(|n| Fault::Leave { node: n }),
            f @ (Fault::Loss { .. } | Fault::Slow { .. } | Fault::Power) => Some(f.clone()),
        };
        if let Some(fault) = fault {
            faults.push(FaultWindow {
                start,
                duration_ms: window.duration_ms,
                fault,
            });
        }
    }

    let mut p = plan.clone();
    p.generator = String::new();
    if !same_clients {
        p.config.clients = client_of.values().max().map_or(1, |&m| m as usize + 1);
    }
    if !same_keys {
        p.config.keys = key_of.values().max().map_or(1, |&m| m as usize + 1);
    }
    p.config.nodes = nodes.len();
    p.config.ops = ops.len();
    p.ops = ops;
    p.faults = faults;
    (p.config.validate().is_ok() && p.validate().is_ok()).then_some((p, witness_new))
}

/// `plan` with only the operations `keep` (indexes, ascending); a window pinned to a client's
/// operations stays between the same kept operations, and clients are renumbered from 0.
pub fn without_ops(plan: &Plan, keep: &[usize]) -> Plan {
    let kept: BTreeSet<usize> = keep.iter().copied().collect();
    let mut p = plan.clone();
    p.ops = keep.iter().map(|&i| plan.ops[i]).collect();
    let used: BTreeSet<u32> = p.ops.iter().map(|o| o.client).collect();
    let client_of: BTreeMap<u32, u32> = used
        .iter()
        .enumerate()
        .map(|(new, &old)| (old, new as u32))
        .collect();
    for op in &mut p.ops {
        op.client = client_of[&op.client];
    }
    for w in &mut p.faults {
        if let Start::ClientOps {
            client,
            ops,
            after_ms,
        } = w.start
        {
            // A client with no operation left has nothing to pin the window to.
            w.start = match client_of.get(&client) {
                Some(&new_client) => {
                    let before = plan
                        .ops
                        .iter()
                        .enumerate()
                        .filter(|(_, o)| o.client == client)
                        .take(ops as usize)
                        .filter(|(i, _)| kept.contains(i))
                        .count();
                    Start::ClientOps {
                        client: new_client,
                        ops: before as u64,
                        after_ms,
                    }
                }
                None => Start::Ops(0),
            };
        }
    }
    p.config.clients = used.len().max(1);
    p.config.ops = p.ops.len();
    p.generator = String::new();
    p
}

/// `plan` with the configuration's descriptive fields made true of what is left (they only
/// describe how the generator drew the plan): the fault kinds, the longest pause, the op count.
/// Whether every fault that may lose acknowledged data hits only nodes that may lose it: wipes
/// and damage at rest only the expendable nodes (the first W - 1), crashes only
/// `SimConfig::crashable_nodes`. The generator keeps to this; renumbering nodes while shrinking
/// must too, or a smaller plan fails for a reason the store cannot help (found on seed 92122: the
/// shrunk plan wiped n3 and n4 with W = 3).
pub fn destroys_only_what_may_be_lost(p: &Plan) -> bool {
    let expendable = p.config.expendable_nodes();
    let crashable = p.config.crashable_nodes();
    p.faults.iter().all(|w| match &w.fault {
        Fault::Wipe { node } => node.candidates().iter().all(|n| expendable.contains(n)),
        Fault::Disk { node, damage, .. } if damage.at_rest() => {
            node.candidates().iter().all(|n| expendable.contains(n))
        }
        Fault::Crash { node } => node.candidates().iter().all(|n| crashable.contains(n)),
        _ => true,
    })
}

pub fn tidy(mut p: Plan) -> Plan {
    let mut kinds: Vec<NemesisKind> = p.faults.iter().map(|w| w.fault.kind()).collect();
    kinds.sort();
    kinds.dedup();
    p.config.nemesis = kinds;
    p.config.think_ms_max = p
        .ops
        .iter()
        .map(|o| u64::from(o.think_ms))
        .max()
        .unwrap_or(0);
    p.config.ops = p.ops.len();
    p.generator = String::new();
    p
}

/// `plan` with only the fault windows `keep` (indexes, ascending).
pub fn with_windows(plan: &Plan, keep: &[usize]) -> Plan {
    let mut p = plan.clone();
    p.faults = keep.iter().map(|&i| plan.faults[i].clone()).collect();
    p.generator = String::new();
    p
}

/// `plan` with fault `i`'s window cut to half.
pub fn with_shorter_fault(plan: &Plan, i: usize) -> Plan {
    let mut p = plan.clone();
    p.faults[i].duration_ms /= 2;
    p.generator = String::new();
    p
}

/// `plan` with no pauses between ops.
pub fn without_think(plan: &Plan) -> Plan {
    let mut p = plan.clone();
    for op in &mut p.ops {
        op.think_ms = 0;
    }
    p.config.think_ms_max = 0;
    p.generator = String::new();
    p
}

/// The removal of one chunk from a list, classic ddmin: `test` says whether a candidate list still
/// fails (`None`: the budget is spent). Chunks are tried from the end of the list first.
pub fn ddmin<T: Clone>(mut items: Vec<T>, test: &mut dyn FnMut(Vec<T>) -> Option<bool>) -> Vec<T> {
    let mut n = 2usize;
    while !items.is_empty() {
        let chunk = items.len().div_ceil(n);
        let starts: Vec<usize> = (0..items.len()).step_by(chunk).collect();
        let mut reduced = false;
        for &start in starts.iter().rev() {
            let end = (start + chunk).min(items.len());
            let mut candidate = items[..start].to_vec();
            candidate.extend_from_slice(&items[end..]);
            match test(candidate.clone()) {
                None => return items,
                Some(true) => {
                    items = candidate;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
                Some(false) => {}
            }
        }
        if !reduced {
            if chunk == 1 {
                break;
            }
            n = (n * 2).min(items.len());
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shrink::trace::{OpTrace, WindowTrace};
    use dynamo_workloads::SimConfig;
    use dynamo_workloads::plan::OpKind;

    #[test]
    fn a_wipe_of_a_node_that_may_not_lose_data_is_refused() {
        let mut p = Plan::generate(SimConfig {
            ops: 10,
            w: 3,
            nemesis: vec![],
            ..SimConfig::default()
        })
        .unwrap();
        let wipe = |node: u32| FaultWindow {
            start: Start::Ops(1),
            duration_ms: 10,
            fault: Fault::Wipe {
                node: Victim::Node(node),
            },
        };
        p.faults = vec![wipe(0), wipe(1)];
        assert!(
            destroys_only_what_may_be_lost(&p),
            "n1 and n2 are expendable with W = 3"
        );
        p.faults.push(wipe(2));
        assert!(!destroys_only_what_may_be_lost(&p), "n3 is not");
        p.faults = vec![FaultWindow {
            start: Start::Ops(1),
            duration_ms: 10,
            fault: Fault::Crash {
                node: Victim::Node(4),
            },
        }];
        assert!(
            destroys_only_what_may_be_lost(&p),
            "fsync always: any node may crash"
        );
    }

    fn plan() -> Plan {
        super::super::test_plan(7)
    }

    /// A trace in which op i ran from 10 i ms to 10 i + 5 ms, and window w opened at 100 w + 3 ms.
    fn trace(p: &Plan) -> Trace {
        Trace {
            ops: (0..p.ops.len() as u64)
                .map(|i| OpTrace {
                    invoked_ns: i * 10_000_000,
                    completed_ns: i * 10_000_000 + 5_000_000,
                    writes: vec![],
                    acked: false,
                    ran: None,
                })
                .collect(),
            windows: (0..p.faults.len() as u64)
                .map(|w| WindowTrace {
                    opened_ns: Some(w * 100_000_000 + 3_000_000),
                    trigger_op: None,
                    victim: Some(1),
                    aimed: None,
                })
                .collect(),
            heal_ns: u64::MAX,
            write_op: BTreeMap::new(),
        }
    }

    #[test]
    fn ddmin_finds_the_two_items_that_matter() {
        let items: Vec<u32> = (0..100).collect();
        let mut tests = 0;
        let min = ddmin(items, &mut |c: Vec<u32>| {
            tests += 1;
            Some(c.contains(&17) && c.contains(&83))
        });
        assert_eq!(min, vec![17, 83]);
        assert!(tests < 100, "{tests} tests");
        // A spent budget returns what it has.
        let min = ddmin((0..10).collect::<Vec<u32>>(), &mut |_| None);
        assert_eq!(min.len(), 10);
    }

    #[test]
    fn a_projection_renumbers_and_keeps_the_witness_keys_replicas() {
        let p = plan();
        let t = trace(&p);
        let key = p.ops[40].key;
        let old = walk(&ring(7, p.config.partitions), &p.config.key_name(key));
        // Keep the key's replicas and one more node; ops of the key only, from op 30 on.
        let mut nodes: Vec<u32> = old[..4].to_vec();
        nodes.sort_unstable();
        let ops: Vec<usize> = (30..p.ops.len()).filter(|&i| p.ops[i].key == key).collect();
        let sel = Selection {
            ops: ops.clone(),
            windows: (0..p.faults.len()).collect(),
            nodes: nodes.clone(),
            sequential: false,
            one_key: false,
            timed: false,
        };
        let (q, _) = project(&p, &t, &sel, key).unwrap();
        q.config.validate().unwrap();
        q.validate().unwrap();
        assert_eq!(
            (q.config.nodes, q.config.keys, q.ops.len()),
            (4, 1, ops.len())
        );
        assert!(q.ops.iter().all(|o| o.key == 0));
        let clients: BTreeSet<u32> = q.ops.iter().map(|o| o.client).collect();
        assert_eq!(clients, (0..q.config.clients as u32).collect());
        // The key walks the same nodes, in the same order, under their new names.
        let new = walk(&ring(4, p.config.partitions), &q.config.key_name(0));
        let old_kept: Vec<u32> = old.iter().copied().filter(|n| nodes.contains(n)).collect();
        let map: BTreeMap<u32, u32> = old_kept.iter().copied().zip(new.clone()).collect();
        for (i, &o) in ops.iter().enumerate() {
            if let Some(&n) = map.get(&p.ops[o].node) {
                assert_eq!(q.ops[i].node, n);
            } else {
                assert_eq!(
                    q.ops[i].node, new[0],
                    "a cut coordinator: the first replica"
                );
            }
        }
        // Windows opened at 100 w + 3 ms: pinned after the last kept op that completed by then, or
        // at once before any; victims fixed on the node hit (n2, if kept).
        for w in &q.faults {
            match w.start {
                Start::ClientOps { client, ops, .. } => assert!(
                    ops >= 1 && (client as usize) < q.config.clients,
                    "{:?}",
                    w.start
                ),
                Start::Ops(0) => {}
                s => panic!("{s:?}"),
            }
            if let Fault::Crash { node } | Fault::Wipe { node } = &w.fault {
                assert_eq!(*node, Victim::Node(map[&1]));
            }
        }
        // Fewer nodes than N: no plan.
        let few = Selection {
            nodes: vec![0, 1],
            ..sel.clone()
        };
        assert_eq!(project(&p, &t, &few, key), None);
        // Everything kept, sequentially, on one key: one client, one key.
        let seq = Selection {
            sequential: true,
            one_key: true,
            ..Selection::all(&p)
        };
        let (q, _) = project(&p, &t, &seq, key).unwrap();
        assert_eq!((q.config.clients, q.config.keys), (1, 1));
        assert_eq!(q.ops.len(), p.ops.len());
    }

    #[test]
    fn a_window_stays_pinned_to_its_operation() {
        let mut p = plan();
        p.faults = vec![FaultWindow {
            start: Start::Ops(7),
            duration_ms: 500,
            fault: Fault::Crash {
                node: Victim::Acked {
                    acked: vec![0, 1],
                    follow_ops: 0,
                },
            },
        }];
        let mut t = trace(&p);
        // It opened at op 9's completion, on n2, after the ack of op 9's write.
        t.windows[0] = WindowTrace {
            opened_ns: Some(t.ops[9].completed_ns),
            trigger_op: Some(9),
            victim: Some(1),
            aimed: Some("p1-1".into()),
        };
        let client = p.ops[9].client;
        let keep: Vec<usize> = (0..p.ops.len()).filter(|&i| i >= 5).collect();
        let sel = Selection {
            ops: keep,
            ..Selection::all(&p)
        };
        let key = p.ops[9].key;
        let (q, _) = project(&p, &t, &sel, key).unwrap();
        let Start::ClientOps {
            client: c,
            ops,
            after_ms: 0,
        } = q.faults[0].start
        else {
            panic!("{:?}", q.faults[0].start)
        };
        // Its client's ops from 5 to 9, inclusive, in the new numbering.
        let mine = (5..=9).filter(|&i| p.ops[i].client == client).count() as u64;
        assert_eq!(ops, mine);
        let nth = q.ops.iter().filter(|o| o.client == c).nth(ops as usize - 1);
        assert_eq!(nth.map(|o| o.kind), Some(p.ops[9].kind));
        assert!(matches!(
            q.faults[0].fault,
            Fault::Crash {
                node: Victim::Node(_)
            }
        ));
        // Removing ops before it moves the pin along; removing its client's ops unpins it.
        let r = without_ops(&q, &(1..q.ops.len()).collect::<Vec<_>>());
        let expect = if q.ops[0].client == c { ops - 1 } else { ops };
        assert!(matches!(r.faults[0].start, Start::ClientOps { ops, .. } if ops == expect));
        let others: Vec<usize> = (0..q.ops.len()).filter(|&i| q.ops[i].client != c).collect();
        assert_eq!(without_ops(&q, &others).faults[0].start, Start::Ops(0));
        assert_eq!(
            p.ops[9].kind == OpKind::Read,
            q.ops
                .iter()
                .filter(|o| o.client == c)
                .nth(ops as usize - 1)
                .unwrap()
                .kind
                == OpKind::Read
        );
    }

    #[test]
    fn simple_edits_stay_valid() {
        let p = plan();
        for candidate in [
            with_shorter_fault(&p, 0),
            without_think(&p),
            with_windows(&p, &[0]),
            without_ops(&p, &[3, 4, 50]),
        ] {
            candidate.config.validate().unwrap();
            candidate.validate().unwrap();
        }
        let half = &with_shorter_fault(&p, 0).faults[0];
        assert_eq!(half.duration_ms, p.faults[0].duration_ms / 2);
        assert_eq!(without_ops(&p, &[3, 4, 50]).ops.len(), 3);
    }
}
