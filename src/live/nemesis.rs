//! The nemesis of `dynamo live`: the plan's fault windows, opened and closed on real processes and
//! on the proxy between them. It mirrors the simulator's (`dynamo_workloads::nemesis`): windows
//! start by operation count or time, may overlap, and every effect is counted (a node is down
//! while any window holds it down, paused while any pause holds it, a link cut while any partition
//! cuts it; the loss rate and the latency are the highest of the open windows'); faults aimed at
//! the next acknowledged write wait for one; under a checked strict quorum, faults that may lose
//! data wait until no write is in flight.
//!
//! How each fault is made:
//!
//! | fault | on real processes |
//! |-------|-------------------|
//! | crash | SIGKILL; the same command on the same data directory when the window closes |
//! | power | SIGKILL of every node at once (unsynced writes survive in the page cache, unlike a real power cut) |
//! | wipe | SIGKILL, the data directory emptied, restarted |
//! | disk (at rest) | SIGKILL, the damage applied to the files (`apply_damage`), restarted |
//! | pause | SIGSTOP, SIGCONT |
//! | partition, loss, slow | the proxy on every peer link ([`super::proxy`]) |
//!
//! Not made (the window is skipped, and the run says so): skew (a real process's clock cannot be
//! moved), a failing disk under a running node (fail-writes, fail-syncs), membership changes; and
//! on an existing cluster (`--nodes ADDR,...`) every fault, since the harness neither started the
//! processes nor sits on their links.

use super::procs::NodeProc;
use super::proxy::Links;
use dynamo_node::config::FsyncPolicy;
use dynamo_node::fs::StdFs;
use dynamo_node::store::log::damage::{Damage, apply_damage};
use dynamo_workloads::history::{Process, Recorder};
use dynamo_workloads::nemesis::{Aimed, HeldDamage, StartDue, start_due};
use dynamo_workloads::plan::SimConfig;
use dynamo_workloads::plan::{ACKED_WAIT_MS_MAX, DiskDamage, Fault, FaultWindow, Plan};
use dynamo_workloads::workload::{Focus, HistoryClock, Progress};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// How long the supervisor leaves a node that died by itself down before it restarts it.
pub const SUPERVISOR_RESTART_MS: u64 = 500;

/// What the harness controls: the processes it started, the proxy it put on their links.
pub struct Cluster {
    /// Every node's process (empty on an existing cluster).
    pub nodes: Vec<NodeProc>,
    /// The links' controls (None on an existing cluster).
    pub links: Option<Links>,
    /// The proxy itself, kept running as long as the cluster.
    pub proxy: Option<super::proxy::Proxy>,
}

#[derive(Clone, Debug)]
enum WindowState {
    Pending,
    /// Pinned to a client's operations with a delay: those are done; it opens at `until_ms`.
    Delayed {
        until_ms: u64,
    },
    Armed {
        since_ms: u64,
    },
    Draining {
        victim: Option<u32>,
        aimed: Option<Aimed>,
    },
    Open {
        victim: Option<u32>,
        until_ms: u64,
        follow: Option<Focus>,
    },
    Done,
}

#[derive(Clone, Debug, Default)]
struct NodeState {
    down: u32,
    paused: u32,
    wipe_on_start: bool,
    damage_on_start: Vec<HeldDamage>,
    /// Died by itself; the supervisor restarts it at this time.
    restart_at_ms: Option<u64>,
    /// What the clients do once it is back (a closed window's follow-up, see `Aimed::follow`).
    follow: Option<Focus>,
}

/// Opens and closes the plan's windows on a real cluster; see the module docs.
pub struct LiveNemesis<C: HistoryClock> {
    names: Vec<String>,
    windows: Vec<(FaultWindow, WindowState)>,
    nodes: Vec<NodeState>,
    cuts: BTreeMap<(u32, u32), u32>,
    loss_ppm: BTreeMap<usize, u32>,
    slow_ms: BTreeMap<usize, u64>,
    recorder: Rc<RefCell<Recorder>>,
    clock: C,
    progress: Rc<Progress>,
    config: SimConfig,
    quorum_checked: bool,
    fsync_always: bool,
    /// Windows opened.
    pub opened: u64,
    /// Windows skipped, with why.
    pub skipped: Vec<String>,
    /// Nodes that exited by themselves, with how.
    pub unexpected_exits: Vec<String>,
}

fn at_rest(damage: DiskDamage) -> Option<Damage> {
    Some(match damage {
        DiskDamage::TornTail => Damage::TornTail,
        DiskDamage::FlipByte => Damage::FlipByte,
        DiskDamage::LoseNewestFile => Damage::LoseNewestFile,
        DiskDamage::LoseFile => Damage::LoseFile,
        DiskDamage::LoseManifest => Damage::LoseManifest,
        DiskDamage::FailWrites | DiskDamage::FailSyncs => return None,
    })
}

impl<C: HistoryClock> LiveNemesis<C> {
    /// A nemesis for the windows of `plan`.
    pub fn new(
        plan: &Plan,
        recorder: Rc<RefCell<Recorder>>,
        clock: C,
        progress: Rc<Progress>,
    ) -> LiveNemesis<C> {
        let c = &plan.config;
        LiveNemesis {
            names: c.node_names(),
            windows: plan
                .faults
                .iter()
                .map(|w| (w.clone(), WindowState::Pending))
                .collect(),
            nodes: vec![NodeState::default(); c.nodes],
            cuts: BTreeMap::new(),
            loss_ppm: BTreeMap::new(),
            slow_ms: BTreeMap::new(),
            recorder,
            clock,
            progress,
            config: c.clone(),
            quorum_checked: c.quorum_checked(),
            fsync_always: c.fsync == FsyncPolicy::Always,
            opened: 0,
            skipped: Vec::new(),
            unexpected_exits: Vec::new(),
        }
    }

    fn record(&self, f: &str, value: Value) {
        let time = self.clock.now_ns();
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

    /// Why this cluster cannot have `fault`, if it cannot.
    fn unsupported(fault: &Fault, cluster: &Cluster) -> Option<&'static str> {
        let processes = !cluster.nodes.is_empty();
        match fault {
            Fault::Skew { .. } => Some("a real process's clock cannot be moved"),
            Fault::Leave { .. } => Some("membership changes are not made on real processes"),
            Fault::Disk { damage, .. } if at_rest(*damage).is_none() => {
                Some("a running process's disk cannot be made to fail")
            }
            Fault::Partition { .. } | Fault::Loss { .. } | Fault::Slow { .. }
                if cluster.links.is_none() =>
            {
                Some("the harness is not on this cluster's links")
            }
            Fault::Crash { .. }
            | Fault::Wipe { .. }
            | Fault::Power
            | Fault::Disk { .. }
            | Fault::Pause { .. }
                if !processes =>
            {
                Some("the harness did not start this cluster's processes")
            }
            _ => None,
        }
    }

    /// One turn: nodes that died by themselves, windows whose start or end came.
    pub fn step(&mut self, cluster: &mut Cluster, now_ms: u64) {
        self.supervise(cluster, now_ms);
        let ops_done = self.progress.ops_done.get();
        let acks = std::mem::take(&mut *self.progress.acks.borrow_mut());
        let mut acks = acks.into_iter();
        for i in 0..self.windows.len() {
            match self.windows[i].1.clone() {
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
                    if let Some(why) = Self::unsupported(&self.windows[i].0.fault, cluster) {
                        let kind = self.windows[i].0.fault.kind().name();
                        self.skipped.push(format!("{kind}: {why}"));
                        self.windows[i].1 = WindowState::Done;
                        continue;
                    }
                    if self.windows[i].0.fault.aimed() {
                        self.windows[i].1 = WindowState::Armed { since_ms: now_ms };
                    } else {
                        self.due(cluster, i, None, None, now_ms);
                    }
                }
                WindowState::Armed { since_ms } => {
                    let fault = &self.windows[i].0.fault;
                    let nodes = &self.nodes;
                    let pending = |n: u32| {
                        let node = &nodes[n as usize];
                        node.wipe_on_start || !node.damage_on_start.is_empty()
                    };
                    let hit = Aimed::find(&mut acks, fault, &self.names, pending);
                    match hit {
                        Some((victim, write)) => {
                            self.due(cluster, i, Some(victim), Some(write), now_ms)
                        }
                        None if now_ms >= since_ms + ACKED_WAIT_MS_MAX => {
                            let first = self.windows[i].0.fault.nodes()[0];
                            self.due(cluster, i, Some(first), None, now_ms)
                        }
                        None => {}
                    }
                }
                WindowState::Draining { victim, aimed } => {
                    if self.progress.writes_in_flight.get() == 0 {
                        self.open(cluster, i, victim, aimed, now_ms);
                    }
                }
                WindowState::Open { until_ms, .. } if now_ms >= until_ms => {
                    self.close(cluster, i, now_ms)
                }
                WindowState::Open { .. } | WindowState::Done => {}
            }
        }
        let hold = self
            .windows
            .iter()
            .any(|(_, s)| matches!(s, WindowState::Draining { .. }));
        self.progress.hold_writes.set(hold);
    }

    /// Nodes that exited by themselves: recorded as a crash, restarted after a delay.
    pub fn supervise(&mut self, cluster: &mut Cluster, now_ms: u64) {
        for node in 0..cluster.nodes.len() {
            if let Some(status) = cluster.nodes[node].exited() {
                let name = self.names[node].clone();
                let cause = format!("exited by itself: {status}");
                let tail = cluster.nodes[node].log_tail(5);
                self.unexpected_exits
                    .push(format!("{name} {cause}; its log ends:\n{tail}"));
                self.record("crash", json!({"node": name, "cause": cause}));
                self.nodes[node].down += 1;
                self.nodes[node].restart_at_ms = Some(now_ms + SUPERVISOR_RESTART_MS);
            }
            if self.nodes[node]
                .restart_at_ms
                .is_some_and(|at| now_ms >= at)
            {
                self.nodes[node].restart_at_ms = None;
                self.lift(cluster, node as u32);
            }
        }
    }

    fn hold(&mut self, cluster: &mut Cluster, node: u32) {
        let state = &mut self.nodes[node as usize];
        state.down += 1;
        if state.down == 1 {
            cluster.nodes[node as usize].kill();
        }
    }

    fn lift(&mut self, cluster: &mut Cluster, node: u32) {
        let i = node as usize;
        assert!(
            self.nodes[i].down > 0,
            "a node is lifted only as often as held"
        );
        self.nodes[i].down -= 1;
        if self.nodes[i].down > 0 {
            return;
        }
        let proc = &mut cluster.nodes[i];
        let mut done = Vec::new();
        if std::mem::take(&mut self.nodes[i].wipe_on_start) {
            match std::fs::remove_dir_all(&proc.data_dir) {
                Ok(()) => done.push("wiped".to_owned()),
                Err(e) => done.push(format!("wipe failed: {e}")),
            }
        }
        for held in std::mem::take(&mut self.nodes[i].damage_on_start) {
            let damage = held.damage;
            let what = at_rest(damage).expect("only damage at rest is held");
            match apply_damage(&StdFs, &proc.data_dir, what, held.pick, held.aim.as_deref()) {
                Ok(Some(what)) => done.push(what),
                Ok(None) => done.push(format!("{}: nothing to damage", damage.name())),
                Err(e) => done.push(format!("{}: {e}", damage.name())),
            }
        }
        let mut value = json!({"node": self.names[i]});
        if let Err(e) = proc.spawn() {
            value["error"] = json!(format!("cannot restart: {e}"));
        }
        if self.nodes[i].paused > 0 {
            proc.pause();
        }
        if !done.is_empty() {
            value["disk"] = json!(done.join("; "));
        }
        self.record("restart", value);
        self.progress.restarted(node);
        if let Some(follow) = self.nodes[i].follow.take() {
            self.progress.focus.set(Some(follow));
        }
    }

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

    fn push_links(&self, cluster: &Cluster) {
        if let Some(links) = &cluster.links {
            let cut = self.cuts.keys().copied().collect();
            let loss = self.loss_ppm.values().copied().max().unwrap_or(0);
            let latency = self.slow_ms.values().copied().max().unwrap_or(0);
            links.update(|s| {
                s.cut = cut;
                s.loss_ppm = loss;
                s.latency_ms_max = latency;
            });
        }
    }

    fn due(
        &mut self,
        cluster: &mut Cluster,
        i: usize,
        victim: Option<u32>,
        aimed: Option<Aimed>,
        now_ms: u64,
    ) {
        let loses_data = match &self.windows[i].0.fault {
            Fault::Wipe { .. } => true,
            Fault::Disk { damage, .. } => damage.at_rest(),
            Fault::Crash { .. } | Fault::Power => !self.fsync_always,
            _ => false,
        };
        if self.quorum_checked && loses_data {
            self.windows[i].1 = WindowState::Draining { victim, aimed };
        } else {
            self.open(cluster, i, victim, aimed, now_ms);
        }
    }

    fn open(
        &mut self,
        cluster: &mut Cluster,
        i: usize,
        victim: Option<u32>,
        aimed: Option<Aimed>,
        now_ms: u64,
    ) {
        let window = self.windows[i].0.clone();
        let victim = victim.or(match &window.fault {
            Fault::Crash { node }
            | Fault::Wipe { node }
            | Fault::Disk { node, .. }
            | Fault::Pause { node } => node.candidates().first().copied(),
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
                    *self.cuts.entry(link).or_default() += 1;
                }
                self.push_links(cluster);
                let named: Vec<Vec<&str>> = groups
                    .iter()
                    .map(|g| g.iter().map(|&n| self.name(n)).collect())
                    .collect();
                self.record(
                    "partition-start",
                    json!({"groups": named, "shape": shape, "oneway": oneway}),
                );
            }
            Fault::Crash { .. } => {
                let node = victim.expect("a crash has a victim");
                self.hold(cluster, node);
                self.record("crash", aimed(json!({"node": self.name(node)})));
            }
            Fault::Wipe { .. } => {
                let node = victim.expect("a wipe has a victim");
                self.hold(cluster, node);
                self.nodes[node as usize].wipe_on_start = true;
                self.record("wipe", aimed(json!({"node": self.name(node)})));
            }
            Fault::Disk { damage, pick, .. } => {
                let node = victim.expect("a disk fault has a victim");
                self.hold(cluster, node);
                let held = HeldDamage::new(*damage, *pick, aimed_at.as_ref(), &config);
                self.nodes[node as usize].damage_on_start.push(held);
                self.record(
                    "disk",
                    aimed(json!({"node": self.name(node), "damage": damage.name()})),
                );
            }
            Fault::Pause { .. } => {
                let node = victim.expect("a pause has a victim");
                let state = &mut self.nodes[node as usize];
                state.paused += 1;
                if state.paused == 1 && state.down == 0 {
                    cluster.nodes[node as usize].pause();
                }
                self.record("pause-start", aimed(json!({"node": self.name(node)})));
            }
            Fault::Loss { rate_ppm } => {
                self.loss_ppm.insert(i, *rate_ppm);
                self.push_links(cluster);
                self.record("loss-start", json!({"rate_ppm": rate_ppm}));
            }
            Fault::Slow { latency_ms_max } => {
                self.slow_ms.insert(i, *latency_ms_max);
                self.push_links(cluster);
                self.record("slow-start", json!({"latency_ms_max": latency_ms_max}));
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.hold(cluster, node);
                }
                self.record("power", json!({"nodes": self.names}));
            }
            Fault::Skew { .. } | Fault::Leave { .. } => {
                unreachable!("skipped before it opens")
            }
        }
        self.opened += 1;
        self.windows[i].1 = WindowState::Open {
            victim,
            until_ms: now_ms + window.duration_ms,
            follow,
        };
    }

    fn close(&mut self, cluster: &mut Cluster, i: usize, _now_ms: u64) {
        let WindowState::Open { victim, follow, .. } = self.windows[i].1 else {
            return;
        };
        self.windows[i].1 = WindowState::Done;
        // The follow-up starts once the victim is back: when the last window holding it closes.
        if let (Some(follow), Some(node)) = (follow, victim) {
            self.nodes[node as usize].follow = Some(follow);
        }
        let window = self.windows[i].0.clone();
        match &window.fault {
            Fault::Partition { groups, oneway, .. } => {
                for link in Self::partition_links(groups, *oneway) {
                    let count = self.cuts.get_mut(&link).expect("an open partition's cut");
                    *count -= 1;
                    if *count == 0 {
                        self.cuts.remove(&link);
                    }
                }
                self.push_links(cluster);
                let named: Vec<Vec<&str>> = groups
                    .iter()
                    .map(|g| g.iter().map(|&n| self.name(n)).collect())
                    .collect();
                self.record("partition-stop", json!({"groups": named}));
            }
            Fault::Crash { .. } | Fault::Wipe { .. } | Fault::Disk { .. } => {
                self.lift(cluster, victim.expect("an open fault's victim"))
            }
            Fault::Pause { .. } => {
                let node = victim.expect("an open pause's victim");
                let state = &mut self.nodes[node as usize];
                state.paused -= 1;
                if state.paused == 0 && state.down == 0 {
                    cluster.nodes[node as usize].resume();
                    if let Some(follow) = state.follow.take() {
                        self.progress.focus.set(Some(follow));
                    }
                }
                self.record("pause-stop", json!({"node": self.name(node)}));
            }
            Fault::Loss { .. } => {
                self.loss_ppm.remove(&i);
                self.push_links(cluster);
                self.record("loss-stop", Value::Null);
            }
            Fault::Slow { .. } => {
                self.slow_ms.remove(&i);
                self.push_links(cluster);
                self.record("slow-stop", Value::Null);
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.lift(cluster, node);
                }
            }
            Fault::Skew { .. } | Fault::Leave { .. } => {}
        }
    }

    /// Closes every open window (those that never opened are dropped) and brings every node up:
    /// the heal.
    pub fn heal(&mut self, cluster: &mut Cluster, now_ms: u64) {
        for i in 0..self.windows.len() {
            match self.windows[i].1 {
                WindowState::Open { .. } => self.close(cluster, i, now_ms),
                _ => self.windows[i].1 = WindowState::Done,
            }
        }
        self.progress.hold_writes.set(false);
        for node in 0..self.nodes.len() {
            if self.nodes[node].restart_at_ms.take().is_some() {
                self.lift(cluster, node as u32);
            }
            debug_assert_eq!(self.nodes[node].down, 0, "every hold lifted");
            debug_assert_eq!(self.nodes[node].paused, 0, "every pause ended");
        }
        debug_assert!(self.cuts.is_empty());
        self.push_links(cluster);
    }
}
