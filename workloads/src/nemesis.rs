//! The nemesis: opens and closes the plan's fault windows on the simulated cluster, and records
//! each fault in the history.
//!
//! It runs in the runner's outer loop, between simulation steps, because crashing and restarting
//! hosts and cutting links are operations on the `Sim` itself. Windows may overlap, so every
//! effect is counted rather than toggled: a node is down while any window holds it down (a crash,
//! a wipe, damage at rest, a power cut, the supervisor after the node stopped on a storage error)
//! and restarts when the last one closes; a directed link is cut while any partition cuts it; the
//! loss rate and the latency are the highest of the open windows'; a node's skew is the sum of its
//! open skews.
//!
//! A window opens when its [`Start`] comes: so many client operations completed, a simulated
//! time, or so many operations of one client completed, and then so many ms more (checked right
//! after the step in which the last of them completed: the millisecond after its ack). One aimed
//! at [`Victim::Acked`](crate::plan::Victim::Acked) then waits for the next acknowledged write that one of its candidates
//! coordinated and hits that coordinator, in the same millisecond (the moment of greatest damage:
//! it may not have synced anything since). It closes `duration_ms` later, or at the heal.
//!
//! Where the history must show which writes a fault may have hit, the nemesis lets the writes in
//! flight finish first. With a strict quorum and R + W > N, the checker holds every read to every
//! write acknowledged before it (`quorum-read-miss`) unless a fault that may lose data (a wipe,
//! damage at rest; a crash or power cut when fsync is not `always`) hit a replica between the
//! acknowledgement and the read. A write stored on a replica that such a fault hits while the
//! write is still in flight, and acknowledged just after, would be blamed on the store. So in
//! those runs the nemesis holds new writes, waits until none is in flight (at most a client
//! timeout), applies the fault, and lets writes go on; reads are never held. Other runs are not
//! slowed. (Membership changes are not drawn in those runs at all: nodes learn a new ring by
//! gossip, so for a while after a join or leave two nodes may route by different rings, whose
//! quorums need not meet; see `generate::possible_kinds`.)
//!
//! What it does not model: a fault takes effect between two 1 ms steps, not inside one; a crash
//! loses exactly what was not synced (turmoil's disk keeps synced bytes, and tears unsynced writes
//! at block granularity only where the runner configures it); damage at rest is applied by the
//! node's host when it restarts, before the node opens its storage.

use crate::history::{Process, Recorder};
use crate::plan::SimConfig;
use crate::plan::{ACKED_WAIT_MS_MAX, DiskDamage, Fault, FaultWindow, Plan, Start};
use crate::workload::{Ack, Focus, Progress};
use dynamo_node::config::FsyncPolicy;
use dynamo_node::fs::DiskFaults;
use dynamo_node::store::keyspace::record_key;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// How long the supervisor leaves a node that stopped on a storage error down before restarting
/// it (once its disk works again), simulated ms: a process supervisor's restart delay.
pub const SUPERVISOR_RESTART_MS: u64 = 500;

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

/// Damage at rest waiting for a stopped node's next start (here and in `dynamo live`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldDamage {
    /// What.
    pub damage: DiskDamage,
    /// The draw that picks where.
    pub pick: u64,
    /// The record key of the aimed write's key (`Keyspace::record_key`), whose newest record the
    /// damage hits where it can (`apply_damage`).
    pub aim: Option<Vec<u8>>,
}

impl HeldDamage {
    /// `damage` at `pick`, aimed at the key of `aimed` if the fault waited for a write.
    pub fn new(damage: DiskDamage, pick: u64, aimed: Option<&Aimed>, c: &SimConfig) -> HeldDamage {
        HeldDamage {
            damage,
            pick,
            aim: aimed.map(|a| record_key(c.key_name(a.key).as_bytes())),
        }
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

/// Whether a window that has not started is due, from [`start_due`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartDue {
    /// Its start has come.
    Now,
    /// Not yet.
    NotYet,
    /// Its client's operations completed: it is due at this time (the window's `Delayed` state).
    DelayUntil(u64),
}

/// Whether a window with `start` is due at `now_ms`, after `ops_done` client operations; a window
/// already delayed (`delayed_until_ms`) is due when that time comes. The simulator's nemesis and
/// `dynamo live`'s share this reading of [`Start`].
pub fn start_due(
    start: Start,
    delayed_until_ms: Option<u64>,
    now_ms: u64,
    ops_done: u64,
    progress: &Progress,
) -> StartDue {
    let due = |yes: bool| if yes { StartDue::Now } else { StartDue::NotYet };
    if let Some(until_ms) = delayed_until_ms {
        return due(now_ms >= until_ms);
    }
    match start {
        Start::Ops(k) => due(ops_done >= k),
        Start::Ms(t) => due(now_ms >= t),
        Start::ClientOps {
            client,
            ops,
            after_ms,
        } => {
            let reached = progress.client_ops_done(client) >= ops;
            if reached && after_ms > 0 {
                StartDue::DelayUntil(now_ms + after_ms)
            } else {
                due(reached)
            }
        }
    }
}

/// Where a window is.
#[derive(Clone, Debug)]
enum WindowState {
    /// Its start has not come.
    Pending,
    /// Its client's operations completed; it opens (or arms) at this time.
    Delayed { until_ms: u64 },
    /// Its start came; it waits for an acknowledged write to aim at (since this time).
    Armed { since_ms: u64 },
    /// Its start came (and its victim is known, if it aims); it waits for the writes in flight to
    /// finish (see the module docs).
    Draining {
        victim: Option<u32>,
        aimed: Option<Aimed>,
    },
    /// Open on these nodes (for the faults that hit one), until this time; then the clients follow
    /// the aimed write's key through the victim, if the window says so.
    Open {
        victim: Option<u32>,
        until_ms: u64,
        follow: Option<Focus>,
    },
    /// Closed (or never opened before the heal).
    Done,
}

/// The acknowledged write a window aimed at: its id and its key (index).
#[derive(Clone, Debug)]
pub struct Aimed {
    /// The write's id.
    pub write: String,
    /// Its key (index).
    pub key: u32,
}

impl Aimed {
    /// The window of `fault` waits for an acknowledged write: the first of `acks` that one of its
    /// candidates coordinated (the coordinator acks first: its name leads `stored_on`) gives the
    /// victim and the write. A fault that destroys data at rest spares candidates for which
    /// `destruction_pending` holds: their disk is already to be wiped or damaged at the next start,
    /// and one destruction would hide the other (a wipe leaves nothing to damage). Such a node is
    /// down, so the window waits for its next write after its restart (or another candidate's).
    /// The same in the simulator and in `dynamo live`.
    pub fn find(
        acks: &mut impl Iterator<Item = Ack>,
        fault: &Fault,
        names: &[String],
        destruction_pending: impl Fn(u32) -> bool,
    ) -> Option<(u32, Aimed)> {
        let candidates: Vec<u32> = fault
            .nodes()
            .into_iter()
            .filter(|&n| !fault.destroys_at_rest() || !destruction_pending(n))
            .collect();
        acks.find_map(|ack| {
            let coordinator = ack.stored_on.first()?;
            let index = names.iter().position(|m| m == coordinator.as_str())? as u32;
            candidates.contains(&index).then(|| {
                let aimed = Aimed {
                    write: ack.write,
                    key: ack.key,
                };
                (index, aimed)
            })
        })
    }

    /// What the clients do once `fault`, aimed at this write and opened on `victim`, closes:
    /// follow its key through the victim, if the fault says so.
    pub fn follow(&self, fault: &Fault, victim: u32) -> Option<Focus> {
        let ops = fault.follow_ops();
        (ops > 0).then_some(Focus {
            key: self.key,
            node: victim,
            ops,
            client: None,
        })
    }

    /// Adds to a nemesis event's `value` the write the fault waited for (`after_ack_of`) and the
    /// follow-up it then asks of the clients (`then_follow`).
    pub fn annotate(
        aimed: Option<&Aimed>,
        follow: Option<Focus>,
        c: &SimConfig,
        value: &mut Value,
    ) {
        if let Some(a) = aimed {
            value["after_ack_of"] = json!(a.write);
        }
        if let Some(f) = follow {
            value["then_follow"] = json!({"key": c.key_name(f.key), "ops": f.ops});
        }
    }
}

/// The runner's own record of one node.
#[derive(Clone, Debug, Default)]
struct NodeState {
    /// Open windows holding it down (the supervisor's hold included).
    down: u32,
    /// Open windows failing its writes; its syncs.
    fail_writes: u32,
    fail_syncs: u32,
    /// The sum of its open skews.
    skew_ms: i64,
    /// The node stopped on a storage error; the supervisor holds it down since this time.
    supervised_since_ms: Option<u64>,
    /// It was restarted and its `restart` event waits for the host to say what it found.
    restart_unrecorded: bool,
    /// What the clients do once it is back (a closed window's follow-up, see [`Aimed::follow`]).
    follow: Option<Focus>,
}

/// Opens and closes fault windows; see the module docs.
pub struct Nemesis {
    config: SimConfig,
    names: Vec<String>,
    recorder: Rc<RefCell<Recorder>>,
    knobs: Vec<NodeKnobs>,
    nodes: Vec<NodeState>,
    windows: Vec<(FaultWindow, WindowState)>,
    /// Directed links (from, to) between nodes and how many open partitions cut each.
    cuts: BTreeMap<(u32, u32), u32>,
    /// The open loss windows' rates; the open slow windows' latencies.
    loss_ppm: BTreeMap<usize, u32>,
    slow_ms: BTreeMap<usize, u64>,
    latency_ms_max: u64,
    progress: Rc<Progress>,
    membership: Rc<RefCell<VecDeque<MembershipCommand>>>,
    /// Whether faults that may lose data wait for a moment with no write in flight (see the module
    /// docs).
    quiet: Quiet,
    /// Windows opened so far.
    pub opened: u64,
}

/// Which faults wait for the writes in flight to finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quiet {
    /// The run's quorum is checked (`quorum-read-miss`): strict, and R + W > N.
    pub quorum_checked: bool,
    /// fsync is `always`: a crash or a power cut loses nothing acknowledged.
    pub fsync_always: bool,
}

impl Quiet {
    /// Whether `fault` must not hit a write in flight.
    fn needs(self, fault: &Fault) -> bool {
        self.quorum_checked
            && match fault {
                Fault::Wipe { .. } => true,
                Fault::Disk { damage, .. } => damage.at_rest(),
                Fault::Crash { .. } | Fault::Power => !self.fsync_always,
                _ => false,
            }
    }
}

fn ms(sim: &turmoil::Sim) -> u64 {
    sim.elapsed().as_millis() as u64
}

impl Nemesis {
    /// A nemesis for the windows of `plan` over its nodes (the hosts' names, by index).
    pub fn new(
        plan: &Plan,
        knobs: Vec<NodeKnobs>,
        recorder: Rc<RefCell<Recorder>>,
        progress: Rc<Progress>,
        membership: Rc<RefCell<VecDeque<MembershipCommand>>>,
    ) -> Nemesis {
        let c = &plan.config;
        let names = c.node_names();
        let windows = &plan.faults;
        let latency_ms_max = c.turmoil_latency_ms().1;
        let quiet = Quiet {
            quorum_checked: c.quorum_checked(),
            fsync_always: c.fsync == FsyncPolicy::Always,
        };
        assert_eq!(names.len(), knobs.len(), "one set of knobs per node");
        Nemesis {
            config: c.clone(),
            nodes: vec![NodeState::default(); names.len()],
            names,
            recorder,
            knobs,
            windows: windows
                .iter()
                .map(|w| (w.clone(), WindowState::Pending))
                .collect(),
            cuts: BTreeMap::new(),
            loss_ppm: BTreeMap::new(),
            slow_ms: BTreeMap::new(),
            latency_ms_max,
            progress,
            membership,
            quiet,
            opened: 0,
        }
    }

    fn record(&self, sim: &turmoil::Sim, f: &str, value: Value) {
        let time = sim.elapsed().as_nanos() as u64;
        self.recorder.borrow_mut().record(
            time,
            Process::Nemesis,
            "info",
            f,
            &json!({ "value": value }),
        );
    }

    fn name(&self, node: u32) -> &str {
        &self.names[node as usize]
    }

    /// One turn between two simulation steps, while the clients run: hosts that stopped, windows
    /// whose start or end came, acknowledged writes for the armed windows. Errs when a node stopped
    /// with an error that no fault explains (a bug the run must not hide).
    pub fn step(&mut self, sim: &mut turmoil::Sim) -> Result<(), String> {
        let now_ms = ms(sim);
        self.supervise(sim, now_ms)?;
        let ops_done = self.progress.ops_done.get();
        let acks = std::mem::take(&mut *self.progress.acks.borrow_mut());
        let mut acks = acks.into_iter();
        for i in 0..self.windows.len() {
            match self.windows[i].1 {
                WindowState::Pending | WindowState::Delayed { .. } => {
                    let delayed_until_ms = match self.windows[i].1 {
                        WindowState::Delayed { until_ms } => Some(until_ms),
                        _ => None,
                    };
                    let start = self.windows[i].0.start;
                    match start_due(start, delayed_until_ms, now_ms, ops_done, &self.progress) {
                        StartDue::NotYet => continue,
                        StartDue::DelayUntil(until_ms) => {
                            self.windows[i].1 = WindowState::Delayed { until_ms };
                            continue;
                        }
                        StartDue::Now => {}
                    }
                    if self.windows[i].0.fault.aimed() {
                        self.windows[i].1 = WindowState::Armed { since_ms: now_ms };
                    } else {
                        self.due(sim, i, None, None);
                    }
                }
                WindowState::Armed { since_ms } => {
                    let fault = &self.windows[i].0.fault;
                    let pending = |n| self.destruction_pending(n);
                    let hit = Aimed::find(&mut acks, fault, &self.names, pending);
                    match hit {
                        Some((victim, write)) => self.due(sim, i, Some(victim), Some(write)),
                        None if now_ms >= since_ms + ACKED_WAIT_MS_MAX => {
                            let first = self.windows[i].0.fault.nodes()[0];
                            self.due(sim, i, Some(first), None)
                        }
                        None => {}
                    }
                }
                WindowState::Draining { victim, ref aimed } => {
                    if self.progress.writes_in_flight.get() == 0 {
                        let aimed = aimed.clone();
                        self.open(sim, i, victim, aimed);
                    }
                }
                WindowState::Open { until_ms, .. } if now_ms >= until_ms => {
                    self.close(sim, i);
                }
                WindowState::Open { .. } | WindowState::Done => {}
            }
        }
        // New writes wait while a fault waits for the writes in flight.
        let hold = self
            .windows
            .iter()
            .any(|(_, state)| matches!(state, WindowState::Draining { .. }));
        self.progress.hold_writes.set(hold);
        // While loss is on, a randomly failed link comes back whole (turmoil repairs both
        // directions), which would undo a one-way cut: put the cuts back.
        if !self.loss_ppm.is_empty() {
            self.assert_cuts(sim);
        }
        Ok(())
    }

    /// Whether `node`'s disk is to be wiped or damaged when it next starts.
    fn destruction_pending(&self, node: u32) -> bool {
        let knobs = &self.knobs[node as usize];
        knobs.wipe_on_start.get() || !knobs.damage_on_start.borrow().is_empty()
    }

    /// Nodes that stopped on their own, and nodes the supervisor may restart.
    fn supervise(&mut self, sim: &mut turmoil::Sim, now_ms: u64) -> Result<(), String> {
        for node in 0..self.names.len() {
            if let Some(detail) = self.knobs[node].started.borrow_mut().take() {
                // Not before the host ran: the event says what the restart found.
                if std::mem::take(&mut self.nodes[node].restart_unrecorded) {
                    let mut value = json!({ "node": self.names[node] });
                    if !detail.is_empty() {
                        value["disk"] = json!(detail);
                    }
                    self.record(sim, "restart", value);
                    self.progress.restarted(node as u32);
                    if let Some(follow) = self.nodes[node].follow.take() {
                        self.progress.focus.set(Some(follow));
                    }
                }
            }
            let exited = self.knobs[node].exited.borrow_mut().take();
            if let Some(error) = exited {
                let state = &self.nodes[node];
                if state.fail_writes + state.fail_syncs == 0 {
                    return Err(format!(
                        "node {} stopped with an error that no fault explains: {error}",
                        self.names[node]
                    ));
                }
                // A process that died on a failing disk: what it had not synced is gone, as in a
                // crash; the supervisor restarts it once the disk works.
                let name = self.names[node].clone();
                sim.crash(name.as_str());
                self.record(sim, "crash", json!({ "node": name, "cause": error }));
                self.nodes[node].down += 1;
                self.nodes[node].supervised_since_ms = Some(now_ms);
            }
            let state = &self.nodes[node];
            if let Some(since) = state.supervised_since_ms
                && state.fail_writes + state.fail_syncs == 0
                && now_ms >= since + SUPERVISOR_RESTART_MS
            {
                self.nodes[node].supervised_since_ms = None;
                self.lift(sim, node as u32);
            }
        }
        Ok(())
    }

    /// Holds a node down: crashes it unless it is down already.
    fn hold(&mut self, sim: &mut turmoil::Sim, node: u32) {
        let state = &mut self.nodes[node as usize];
        state.down += 1;
        if state.down == 1 && sim.is_host_running(self.names[node as usize].as_str()) {
            sim.crash(self.names[node as usize].as_str());
        }
    }

    /// Releases one hold on a node: restarts it when none is left.
    fn lift(&mut self, sim: &mut turmoil::Sim, node: u32) {
        let state = &mut self.nodes[node as usize];
        assert!(state.down > 0, "a node is lifted only as often as held");
        state.down -= 1;
        if state.down == 0 {
            state.restart_unrecorded = true;
            sim.bounce(self.names[node as usize].as_str());
        }
    }

    /// The directed links a partition cuts.
    fn partition_links(groups: &[Vec<u32>], oneway: bool) -> Vec<(u32, u32)> {
        let mut links = Vec::new();
        for (i, a_group) in groups.iter().enumerate() {
            for (j, b_group) in groups.iter().enumerate() {
                if i == j || (oneway && i != 0) {
                    continue;
                }
                for &a in a_group.iter().filter(|a| !b_group.contains(a)) {
                    for &b in b_group.iter().filter(|b| !a_group.contains(b)) {
                        links.push((a, b));
                    }
                }
            }
        }
        links.sort_unstable();
        links.dedup();
        links
    }

    fn assert_cuts(&self, sim: &turmoil::Sim) {
        for (&(a, b), &count) in &self.cuts {
            if count > 0 {
                sim.partition_oneway(self.name(a), self.name(b));
            }
        }
    }

    fn set_loss(&self, sim: &mut turmoil::Sim) {
        let ppm = self.loss_ppm.values().copied().max().unwrap_or(0);
        sim.set_fail_rate(f64::from(ppm) / 1e6);
    }

    fn set_latency(&self, sim: &turmoil::Sim) {
        let ms = self
            .slow_ms
            .values()
            .copied()
            .max()
            .unwrap_or(self.latency_ms_max);
        sim.set_max_message_latency(Duration::from_millis(ms));
    }

    /// A window's start (and victim) came: it opens now, or once no write is in flight.
    fn due(&mut self, sim: &mut turmoil::Sim, i: usize, victim: Option<u32>, aimed: Option<Aimed>) {
        if self.quiet.needs(&self.windows[i].0.fault) {
            self.windows[i].1 = WindowState::Draining { victim, aimed };
        } else {
            self.open(sim, i, victim, aimed);
        }
    }

    fn membership_command(&self, command: MembershipCommand) {
        self.membership.borrow_mut().push_back(command);
    }

    fn open(
        &mut self,
        sim: &mut turmoil::Sim,
        i: usize,
        victim: Option<u32>,
        aimed: Option<Aimed>,
    ) {
        let window = self.windows[i].0.clone();
        let victim = victim.or(match &window.fault {
            Fault::Crash { node } | Fault::Wipe { node } | Fault::Disk { node, .. } => {
                node.candidates().first().copied()
            }
            _ => None,
        });
        let follow = match (&aimed, victim) {
            (Some(a), Some(node)) => a.follow(&window.fault, node),
            _ => None,
        };
        let config = self.config.clone();
        let aimed_at = aimed.clone();
        let aimed = |mut value: Value| {
            Aimed::annotate(aimed.as_ref(), follow, &config, &mut value);
            value
        };
        match &window.fault {
            Fault::Partition {
                groups,
                shape,
                oneway,
            } => {
                for link in Self::partition_links(groups, *oneway) {
                    let count = self.cuts.entry(link).or_default();
                    *count += 1;
                    if *count == 1 {
                        sim.partition_oneway(self.name(link.0), self.name(link.1));
                    }
                }
                let named: Vec<Vec<&str>> = groups
                    .iter()
                    .map(|g| g.iter().map(|&n| self.name(n)).collect())
                    .collect();
                self.record(
                    sim,
                    "partition-start",
                    json!({"groups": named, "shape": shape, "oneway": oneway}),
                );
            }
            Fault::Crash { .. } => {
                let node = victim.expect("a crash has a victim");
                self.hold(sim, node);
                self.record(sim, "crash", aimed(json!({"node": self.name(node)})));
            }
            Fault::Wipe { .. } => {
                let node = victim.expect("a wipe has a victim");
                self.hold(sim, node);
                self.knobs[node as usize].wipe_on_start.set(true);
                self.record(sim, "wipe", aimed(json!({"node": self.name(node)})));
            }
            Fault::Disk { damage, pick, .. } => {
                let node = victim.expect("a disk fault has a victim");
                let faults = &self.knobs[node as usize].disk_faults;
                match damage {
                    DiskDamage::FailWrites => {
                        self.nodes[node as usize].fail_writes += 1;
                        faults.set_fail_writes(true);
                    }
                    DiskDamage::FailSyncs => {
                        self.nodes[node as usize].fail_syncs += 1;
                        faults.set_fail_syncs(true);
                    }
                    _ => {
                        self.hold(sim, node);
                        let held = HeldDamage::new(*damage, *pick, aimed_at.as_ref(), &config);
                        self.knobs[node as usize]
                            .damage_on_start
                            .borrow_mut()
                            .push(held);
                    }
                }
                self.record(
                    sim,
                    "disk",
                    aimed(json!({"node": self.name(node), "damage": damage.name()})),
                );
            }
            Fault::Skew { node, by_ms } => {
                let state = &mut self.nodes[*node as usize];
                state.skew_ms += by_ms;
                self.knobs[*node as usize]
                    .skew_ms
                    .store(state.skew_ms, Ordering::Relaxed);
                self.record(
                    sim,
                    "skew",
                    json!({"node": self.name(*node), "by_ms": by_ms}),
                );
            }
            Fault::Loss { rate_ppm } => {
                self.loss_ppm.insert(i, *rate_ppm);
                self.set_loss(sim);
                self.record(sim, "loss-start", json!({"rate_ppm": rate_ppm}));
            }
            Fault::Slow { latency_ms_max } => {
                self.slow_ms.insert(i, *latency_ms_max);
                self.set_latency(sim);
                self.record(sim, "slow-start", json!({"latency_ms_max": latency_ms_max}));
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.hold(sim, node);
                }
                self.record(sim, "power", json!({"nodes": self.names}));
            }
            // The agent on the control host asks the node, and records the leave if it happened.
            Fault::Leave { node } => self.membership_command(MembershipCommand::Leave(*node)),
            Fault::Pause { .. } => unreachable!("the runner refuses plans with pauses"),
        }
        self.opened += 1;
        self.windows[i].1 = WindowState::Open {
            victim,
            until_ms: ms(sim) + window.duration_ms,
            follow,
        };
    }

    fn close(&mut self, sim: &mut turmoil::Sim, i: usize) {
        let WindowState::Open { victim, follow, .. } = self.windows[i].1 else {
            return;
        };
        self.windows[i].1 = WindowState::Done;
        let window = self.windows[i].0.clone();
        self.close_fault(sim, i, &window, victim);
        // The follow-up starts once the victim serves again: now, if the fault left it up, or when
        // its host reports the restart.
        if let (Some(follow), Some(node)) = (follow, victim) {
            let state = &mut self.nodes[node as usize];
            if state.down == 0 && !state.restart_unrecorded {
                self.progress.focus.set(Some(follow));
            } else {
                state.follow = Some(follow);
            }
        }
    }

    /// Undoes what window `i` did.
    fn close_fault(
        &mut self,
        sim: &mut turmoil::Sim,
        i: usize,
        window: &FaultWindow,
        victim: Option<u32>,
    ) {
        match &window.fault {
            Fault::Partition { groups, oneway, .. } => {
                for link in Self::partition_links(groups, *oneway) {
                    let count = self.cuts.get_mut(&link).expect("an open partition's cut");
                    *count -= 1;
                    if *count == 0 {
                        self.cuts.remove(&link);
                        sim.repair_oneway(self.name(link.0), self.name(link.1));
                    }
                }
                let named: Vec<Vec<&str>> = groups
                    .iter()
                    .map(|g| g.iter().map(|&n| self.name(n)).collect())
                    .collect();
                self.record(sim, "partition-stop", json!({"groups": named}));
            }
            Fault::Crash { .. } | Fault::Wipe { .. } => {
                self.lift(sim, victim.expect("an open crash has a victim"))
            }
            Fault::Disk { damage, .. } => {
                let node = victim.expect("an open disk fault has a victim");
                let state = &mut self.nodes[node as usize];
                let faults = &self.knobs[node as usize].disk_faults;
                match damage {
                    DiskDamage::FailWrites => {
                        state.fail_writes -= 1;
                        faults.set_fail_writes(state.fail_writes > 0);
                    }
                    DiskDamage::FailSyncs => {
                        state.fail_syncs -= 1;
                        faults.set_fail_syncs(state.fail_syncs > 0);
                    }
                    _ => self.lift(sim, node),
                }
            }
            Fault::Skew { node, by_ms } => {
                let state = &mut self.nodes[*node as usize];
                state.skew_ms -= by_ms;
                self.knobs[*node as usize]
                    .skew_ms
                    .store(state.skew_ms, Ordering::Relaxed);
                self.record(
                    sim,
                    "skew",
                    json!({"node": self.name(*node), "by_ms": -by_ms}),
                );
            }
            Fault::Loss { .. } => {
                self.loss_ppm.remove(&i);
                self.set_loss(sim);
                if self.loss_ppm.is_empty() {
                    self.repair_uncut(sim);
                }
                self.record(sim, "loss-stop", Value::Null);
            }
            Fault::Slow { .. } => {
                self.slow_ms.remove(&i);
                self.set_latency(sim);
                self.record(sim, "slow-stop", Value::Null);
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.lift(sim, node);
                }
            }
            Fault::Leave { node } => self.membership_command(MembershipCommand::Join(*node)),
            Fault::Pause { .. } => unreachable!("the runner refuses plans with pauses"),
        }
    }

    /// Repairs every link that no open partition cuts, the clients' included (message loss breaks
    /// any link at random).
    fn repair_uncut(&self, sim: &turmoil::Sim) {
        let hosts = self.names.len() as u32;
        for a in 0..hosts {
            for b in 0..hosts {
                if a != b && !self.cuts.contains_key(&(a, b)) {
                    sim.repair_oneway(self.name(a), self.name(b));
                }
            }
            sim.repair(self.name(a), crate::runner::CONTROL_HOST);
        }
    }

    /// Closes every window (those that never opened are dropped) and heals whatever could still
    /// be broken: the heal phase.
    pub fn heal(&mut self, sim: &mut turmoil::Sim) -> Result<(), String> {
        // A node that stopped in the last step stopped under the faults still open.
        self.supervise(sim, ms(sim))?;
        for i in 0..self.windows.len() {
            match self.windows[i].1 {
                WindowState::Open { .. } => self.close(sim, i),
                _ => self.windows[i].1 = WindowState::Done,
            }
        }
        self.progress.hold_writes.set(false);
        assert!(self.cuts.is_empty(), "every partition closed");
        sim.set_fail_rate(0.0);
        self.set_latency(sim);
        self.repair_uncut(sim);
        for node in 0..self.names.len() {
            // The supervisor's holds: the disk works again now.
            if self.nodes[node].supervised_since_ms.take().is_some() {
                self.lift(sim, node as u32);
            }
            assert_eq!(self.nodes[node].down, 0, "every hold lifted");
            assert_eq!(self.nodes[node].skew_ms, 0, "every skew undone");
            self.knobs[node].disk_faults.set_fail_writes(false);
            self.knobs[node].disk_faults.set_fail_syncs(false);
        }
        Ok(())
    }

    /// After the heal: records the restarts the hosts have reported since.
    pub fn after_heal(&mut self, sim: &mut turmoil::Sim) -> Result<(), String> {
        let now_ms = ms(sim);
        self.supervise(sim, now_ms)
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
