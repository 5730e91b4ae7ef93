//! The simulator's nemesis: the [`nemesis_core`](crate::nemesis_core) made on turmoil's `Sim`
//! ([`Turmoil`]), which opens and closes the plan's fault windows on the simulated cluster and
//! records each fault in the history.
//!
//! It runs in the runner's outer loop, between simulation steps, because crashing and restarting
//! hosts and cutting links are operations on the `Sim` itself; a window's start is checked right
//! after the step in which it came (for a client's operations, the millisecond after the ack of the
//! last of them). A node's host applies what the nemesis holds for it (a wipe, damage at rest, a
//! skew, a failing disk) when it starts, through its [`NodeKnobs`], and reports what it found; a
//! node stops by itself only on a storage error, which only a failing disk explains.
//!
//! What it does not model: a fault takes effect between two 1 ms steps, not inside one; a crash
//! loses exactly what was not synced (turmoil's disk keeps synced bytes, and tears unsynced writes
//! at block granularity only where the runner configures it); damage at rest is applied by the
//! node's host when it restarts, before the node opens its storage.

use crate::history::Recorder;
use crate::nemesis_core::{HeldDamage, LinkChange, LinkFaults, NemesisEnv, Started};
use crate::plan::Plan;
use crate::workload::Progress;
use dynamo_node::fs::DiskFaults;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The knobs of one node's host that the nemesis turns and the host reads when it (re)starts.
#[derive(Clone)]
pub struct NodeKnobs {
    /// The node's wall-clock skew.
    pub skew_ms: Arc<AtomicI64>,
    /// Wipe the disk at the next start.
    pub wipe_on_start: Rc<Cell<bool>>,
    /// Damage to apply to the disk at the next start.
    pub damage_on_start: Rc<RefCell<Vec<HeldDamage>>>,
    /// Starts so far (each incarnation gets its own random seed).
    pub incarnation: Rc<Cell<u64>>,
    /// The node's failing-disk switches (kept across restarts).
    pub disk_faults: DiskFaults,
    /// Set by the host when the node has started: what was done to its disk first, if anything.
    pub started: Rc<RefCell<Option<String>>>,
    /// Set by the host when the node stopped with an error.
    pub exited: Rc<RefCell<Option<String>>>,
}

impl NodeKnobs {
    /// Knobs of a node that has not started yet.
    pub fn new() -> NodeKnobs {
        NodeKnobs {
            skew_ms: Arc::new(AtomicI64::new(0)),
            wipe_on_start: Rc::new(Cell::new(false)),
            damage_on_start: Rc::new(RefCell::new(Vec::new())),
            incarnation: Rc::new(Cell::new(0)),
            disk_faults: DiskFaults::default(),
            started: Rc::new(RefCell::new(None)),
            exited: Rc::new(RefCell::new(None)),
        }
    }
}

impl Default for NodeKnobs {
    fn default() -> Self {
        NodeKnobs::new()
    }
}

/// Commands for the membership agent on the control host (a leave and a join are requests to the
/// nodes, which only a client host can make).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipCommand {
    /// Ask this node to leave the ring.
    Leave(u32),
    /// Ask the cluster to take this node back.
    Join(u32),
}

/// The simulator's nemesis.
pub type Nemesis = crate::nemesis_core::Nemesis<Turmoil>;

impl Nemesis {
    /// A nemesis for the windows of `plan` over its nodes (the hosts' names, by index).
    pub fn new(
        plan: &Plan,
        knobs: Vec<NodeKnobs>,
        recorder: Rc<RefCell<Recorder>>,
        progress: Rc<Progress>,
        membership: Rc<RefCell<VecDeque<MembershipCommand>>>,
    ) -> Nemesis {
        let names = plan.config.node_names();
        assert_eq!(names.len(), knobs.len(), "one set of knobs per node");
        let env = Turmoil {
            names,
            knobs,
            // Under a latency model turmoil's own latency is none; a slow link still slows it.
            latency_ms_max: plan.config.turmoil_latency_ms().1,
            membership,
        };
        Nemesis::with_env(plan, recorder, progress, env)
    }
}

/// The simulator's faults: on turmoil's `Sim`, and through the hosts' [`NodeKnobs`].
pub struct Turmoil {
    /// The nodes' host names, by index.
    names: Vec<String>,
    knobs: Vec<NodeKnobs>,
    /// The latency of the links when no slow window is open.
    latency_ms_max: u64,
    membership: Rc<RefCell<VecDeque<MembershipCommand>>>,
}

impl Turmoil {
    fn name(&self, node: u32) -> &str {
        &self.names[node as usize]
    }

    /// Repairs every link that no open partition cuts, the clients' included (message loss breaks
    /// any link at random).
    fn repair_uncut(&self, sim: &turmoil::Sim, links: &LinkFaults) {
        let hosts = self.names.len() as u32;
        for a in 0..hosts {
            for b in 0..hosts {
                if a != b && !links.is_cut(a, b) {
                    sim.repair_oneway(self.name(a), self.name(b));
                }
            }
            sim.repair(self.name(a), crate::runner::CONTROL_HOST);
        }
    }

    fn set_latency(&self, sim: &turmoil::Sim, links: &LinkFaults) {
        let ms = links.latency_ms_max().unwrap_or(self.latency_ms_max);
        sim.set_max_message_latency(Duration::from_millis(ms));
    }
}

impl NemesisEnv for Turmoil {
    type World = turmoil::Sim<'static>;

    fn now_ns(&self, sim: &turmoil::Sim<'static>) -> u64 {
        sim.elapsed().as_nanos() as u64
    }

    fn stop(&mut self, sim: &mut turmoil::Sim<'static>, node: u32) {
        if sim.is_host_running(self.name(node)) {
            sim.crash(self.name(node));
        }
    }

    /// The host reads its knobs when it starts (the next step), and reports through `started`.
    fn start(&mut self, sim: &mut turmoil::Sim<'static>, node: u32) -> Option<Started> {
        sim.bounce(self.name(node));
        None
    }

    fn started(&mut self, _sim: &mut turmoil::Sim<'static>, node: u32) -> Option<Started> {
        let disk = self.knobs[node as usize].started.borrow_mut().take()?;
        Some(Started { disk, error: None })
    }

    fn exited(&mut self, _sim: &mut turmoil::Sim<'static>, node: u32) -> Option<String> {
        self.knobs[node as usize].exited.borrow_mut().take()
    }

    /// A node stops only on a storage error: without a failing disk, a bug the run must not hide.
    fn unexplained_exit(
        &mut self,
        _sim: &mut turmoil::Sim<'static>,
        node: u32,
        cause: &str,
    ) -> Result<(), String> {
        Err(format!(
            "node {} stopped with an error that no fault explains: {cause}",
            self.name(node)
        ))
    }

    fn lose_unsynced(&mut self, sim: &mut turmoil::Sim<'static>, node: u32) {
        sim.crash(self.name(node));
    }

    fn wipe_at_next_start(&mut self, node: u32) {
        self.knobs[node as usize].wipe_on_start.set(true);
    }

    fn damage_at_next_start(&mut self, node: u32, damage: HeldDamage) {
        let knobs = &self.knobs[node as usize];
        knobs.damage_on_start.borrow_mut().push(damage);
    }

    fn destruction_pending(&self, node: u32) -> bool {
        let knobs = &self.knobs[node as usize];
        knobs.wipe_on_start.get() || !knobs.damage_on_start.borrow().is_empty()
    }

    fn pause(&mut self, _sim: &mut turmoil::Sim<'static>, _node: u32) {
        unreachable!("the runner refuses plans with pauses")
    }

    fn resume(&mut self, _sim: &mut turmoil::Sim<'static>, _node: u32) {
        unreachable!("the runner refuses plans with pauses")
    }

    fn set_skew(&mut self, _sim: &mut turmoil::Sim<'static>, node: u32, skew_ms: i64) {
        let knobs = &self.knobs[node as usize];
        knobs.skew_ms.store(skew_ms, Ordering::Relaxed);
    }

    fn fail_disk(&mut self, _: &mut turmoil::Sim<'static>, node: u32, writes: bool, syncs: bool) {
        let faults = &self.knobs[node as usize].disk_faults;
        faults.set_fail_writes(writes);
        faults.set_fail_syncs(syncs);
    }

    /// The agent on the control host asks the node, and records the leave if it happened.
    fn leave(&mut self, _sim: &mut turmoil::Sim<'static>, node: u32) {
        let command = MembershipCommand::Leave(node);
        self.membership.borrow_mut().push_back(command);
    }

    fn rejoin(&mut self, _sim: &mut turmoil::Sim<'static>, node: u32) {
        let command = MembershipCommand::Join(node);
        self.membership.borrow_mut().push_back(command);
    }

    fn set_links(
        &mut self,
        sim: &mut turmoil::Sim<'static>,
        change: LinkChange,
        links: &LinkFaults,
    ) {
        match change {
            LinkChange::Cut(cut) => {
                for &(a, b) in cut {
                    sim.partition_oneway(self.name(a), self.name(b));
                }
            }
            LinkChange::Repaired(repaired) => {
                for &(a, b) in repaired {
                    sim.repair_oneway(self.name(a), self.name(b));
                }
            }
            LinkChange::Loss => {
                sim.set_fail_rate(f64::from(links.loss_ppm()) / 1e6);
                if !links.lossy() {
                    self.repair_uncut(sim, links);
                }
            }
            LinkChange::Latency => self.set_latency(sim, links),
            LinkChange::Heal => {
                sim.set_fail_rate(0.0);
                self.set_latency(sim, links);
                self.repair_uncut(sim, links);
            }
        }
    }

    /// While loss is on, a randomly failed link comes back whole (turmoil repairs both
    /// directions), which would undo a one-way cut: put the cuts back.
    fn end_turn(&mut self, sim: &mut turmoil::Sim<'static>, links: &LinkFaults) {
        if links.lossy() {
            for (a, b) in links.cut() {
                sim.partition_oneway(self.name(a), self.name(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{Fault, FaultWindow, Plan, SimConfig, Start, Victim, Workload};
    use serde_json::Value;

    #[test]
    fn a_window_pinned_to_a_clients_operations_opens_right_after_the_last_of_them() {
        // Register operations are one request each (a delete with nothing read is one read).
        let mut plan = Plan::generate(SimConfig {
            seed: 9,
            ops: 40,
            clients: 3,
            workload: Workload::Register,
            nemesis: vec![],
            quiesce_ms: 300,
            ..SimConfig::default()
        })
        .unwrap();
        plan.faults = vec![FaultWindow {
            start: Start::ClientOps {
                client: 2,
                ops: 3,
                after_ms: 0,
            },
            duration_ms: 50,
            fault: Fault::Crash {
                node: Victim::Node(0),
            },
        }];
        let output = crate::run(&plan).unwrap();
        let events: Vec<Value> = output
            .history
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        // Client 2's processes are 2, 5, 8, ... (a process that ended `info` is replaced).
        let third_ns = events
            .iter()
            .filter(|e| e["process"].as_u64().is_some_and(|p| p % 3 == 2))
            .filter(|e| e["type"] != "invoke")
            .nth(2)
            .and_then(|e| e["time"].as_u64())
            .unwrap();
        let crash_ns = events
            .iter()
            .find(|e| e["f"] == "crash")
            .and_then(|e| e["time"].as_u64())
            .unwrap();
        assert!(
            (third_ns..=third_ns + 1_000_000).contains(&crash_ns),
            "the crash at {crash_ns} ns, client 2's third op done at {third_ns} ns"
        );
        // With a delay, that many ms later.
        plan.faults[0].start = Start::ClientOps {
            client: 2,
            ops: 3,
            after_ms: 40,
        };
        let later = crate::run(&plan).unwrap();
        let line = later
            .history
            .split(|&b| b == b'\n')
            .map(|l| serde_json::from_slice::<Value>(l).unwrap_or_default())
            .find(|e| e["f"] == "crash")
            .unwrap();
        assert_eq!(line["time"].as_u64(), Some(crash_ns + 40_000_000), "{line}");
        // A pin to a client outside the plan is refused.
        plan.faults[0].start = Start::ClientOps {
            client: 3,
            ops: 1,
            after_ms: 0,
        };
        assert!(plan.validate().unwrap_err().contains("client"));
        // It reads and writes as JSON.
        let text = serde_json::to_string(&plan.faults[0].start).unwrap();
        assert_eq!(text, r#"{"client-ops":{"client":3,"ops":1}}"#);
    }
}
