//! The nemesis core: the plan's fault windows scheduled, and the bookkeeping of what the open ones
//! do, for the simulator's nemesis ([`crate::nemesis`]) and `dynamo live`'s alike. Where a fault
//! is made is an environment's business ([`NemesisEnv`]): turmoil's `Sim` and the nodes' hosts, or
//! real processes and the proxy on their links. The core never touches either; it tells its
//! environment when the world must change and records each fault in the history.
//!
//! Windows may overlap, so every effect is counted rather than toggled: a node is down while any
//! window holds it down (a crash, a wipe, damage at rest, a power cut, the supervisor after the
//! node stopped by itself), paused while any pause holds it, and restarts when the last one
//! closes; a directed link is cut while any partition cuts it; the loss rate and the latency are
//! the highest of the open windows'; a node's skew is the sum of its open skews; its disk fails
//! writes (syncs) while any window fails them.
//!
//! A window opens when its [`Start`] comes: so many client operations completed, a time, or so
//! many operations of one client completed, and then so many ms more (checked at the first turn
//! after the last of them completed). One aimed at
//! [`Victim::Acked`](crate::plan::Victim::Acked) then waits for the next acknowledged write that
//! one of its candidates coordinated and hits that coordinator, in the same turn (the moment of
//! greatest damage: it may not have synced anything since). Its wait, at most
//! [`ACKED_WAIT_MS_MAX`](crate::plan::ACKED_WAIT_MS_MAX), counts only while some candidate
//! serves and, for a destruction at rest, has no other one pending; when it runs out, the fault
//! aims at the last write such a candidate coordinated, so that its follow-up still runs. It
//! closes `duration_ms` later, or at the heal.
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
//! A node that stops by itself is the supervisor's: a failing disk (a fault) explains the stop,
//! and the node is restarted [`SUPERVISOR_RESTART_MS`] after it stopped, once its disk works; a
//! stop that no fault explains is the environment's to judge ([`NemesisEnv::unexplained_exit`]).

use crate::history::{Process, Recorder};
use crate::plan::{ACKED_WAIT_MS_MAX, DiskDamage, Fault, FaultWindow, Plan, SimConfig, Start};
use crate::workload::{Ack, Focus, Progress};
use dynamo_node::config::FsyncPolicy;
use dynamo_node::fs::FileSystem;
use dynamo_node::store::keyspace::record_key;
use dynamo_node::store::log::damage::{Damage, apply_damage};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

/// How long the supervisor leaves a node that stopped by itself down before restarting it (once
/// its disk works again), ms: a process supervisor's restart delay.
pub const SUPERVISOR_RESTART_MS: u64 = 500;

/// Where the faults are made: the one part of a nemesis that differs between the simulator and
/// real processes. The [`Nemesis`] keeps every count and calls these only when the world must
/// change (a node's first hold stops it, its last one starts it again); an environment keeps no
/// counts of its own.
pub trait NemesisEnv {
    /// What the faults act on, handed to every call: turmoil's `Sim`, or the real cluster.
    type World;

    /// Time since the run started, ns: the history's clock.
    fn now_ns(&self, world: &Self::World) -> u64;

    /// Why this environment cannot make `fault`, if it cannot: the window is then skipped.
    fn unsupported(&self, _world: &Self::World, _fault: &Fault) -> Option<&'static str> {
        None
    }

    /// Stops `node` (its first hold).
    fn stop(&mut self, world: &mut Self::World, node: u32);

    /// Starts `node` again (its last hold lifted), after the destruction held for it
    /// ([`NemesisEnv::wipe_at_next_start`], [`NemesisEnv::damage_at_next_start`]). Returns what
    /// the start found if it is known now; otherwise [`NemesisEnv::started`] reports it later.
    fn start(&mut self, world: &mut Self::World, node: u32) -> Option<Started>;

    /// What the last start of `node` found, once, if it has become known since the last call.
    fn started(&mut self, world: &mut Self::World, node: u32) -> Option<Started>;

    /// Why `node` stopped by itself, once, if it did since the last call.
    fn exited(&mut self, world: &mut Self::World, node: u32) -> Option<String>;

    /// `node` stopped by itself and no open fault explains it: an error ends the run.
    fn unexplained_exit(
        &mut self,
        world: &mut Self::World,
        node: u32,
        cause: &str,
    ) -> Result<(), String>;

    /// `node` stopped by itself: what it had not synced is lost as in a crash.
    fn lose_unsynced(&mut self, world: &mut Self::World, node: u32);

    /// Wipes `node`'s disk before its next start.
    fn wipe_at_next_start(&mut self, node: u32);

    /// Damages `node`'s disk before its next start.
    fn damage_at_next_start(&mut self, node: u32, damage: HeldDamage);

    /// Whether `node`'s disk is to be wiped or damaged when it next starts.
    fn destruction_pending(&self, node: u32) -> bool;

    /// Stops `node`'s process from running (SIGSTOP) while it stays up.
    fn pause(&mut self, world: &mut Self::World, node: u32);

    /// Lets a paused `node` run again.
    fn resume(&mut self, world: &mut Self::World, node: u32);

    /// Sets `node`'s wall-clock skew.
    fn set_skew(&mut self, world: &mut Self::World, node: u32, skew_ms: i64);

    /// Sets whether `node`'s disk fails writes and syncs.
    fn fail_disk(&mut self, world: &mut Self::World, node: u32, writes: bool, syncs: bool);

    /// Asks `node` to leave the ring.
    fn leave(&mut self, world: &mut Self::World, node: u32);

    /// Asks the cluster to take `node` back.
    fn rejoin(&mut self, world: &mut Self::World, node: u32);

    /// The faults on the links changed as `change` says; `links` is what they are now.
    fn set_links(&mut self, world: &mut Self::World, change: LinkChange, links: &LinkFaults);

    /// The end of a turn of the nemesis, with the links as they are.
    fn end_turn(&mut self, _world: &mut Self::World, _links: &LinkFaults) {}
}

/// What a node's start found, as its `restart` event says it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Started {
    /// What was done to its disk first, if anything ("" for nothing).
    pub disk: String,
    /// Why it could not be started, if it could not.
    pub error: Option<String>,
}

/// Which part of the links' faults changed, for [`NemesisEnv::set_links`].
#[derive(Clone, Copy, Debug)]
pub enum LinkChange<'a> {
    /// These directed links are cut now (the first partition that cuts them opened).
    Cut(&'a [(u32, u32)]),
    /// These directed links are whole again (the last partition that cut them closed).
    Repaired(&'a [(u32, u32)]),
    /// The loss rate.
    Loss,
    /// The latency.
    Latency,
    /// Every window closed: nothing is left on the links.
    Heal,
}

/// The faults the open windows put on the links between nodes.
#[derive(Clone, Debug, Default)]
pub struct LinkFaults {
    /// Directed links (from, to) between nodes and how many open partitions cut each.
    cuts: BTreeMap<(u32, u32), u32>,
    /// The open loss windows' rates, by window.
    loss_ppm: BTreeMap<usize, u32>,
    /// The open slow windows' latencies, by window.
    slow_ms: BTreeMap<usize, u64>,
}

impl LinkFaults {
    /// The directed links cut now.
    pub fn cut(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.cuts.keys().copied()
    }

    /// Whether the link from `a` to `b` is cut.
    pub fn is_cut(&self, a: u32, b: u32) -> bool {
        self.cuts.contains_key(&(a, b))
    }

    /// Whether any loss window is open.
    pub fn lossy(&self) -> bool {
        !self.loss_ppm.is_empty()
    }

    /// The loss rate, parts per million: the highest of the open windows'.
    pub fn loss_ppm(&self) -> u32 {
        self.loss_ppm.values().copied().max().unwrap_or(0)
    }

    /// The longest message latency, ms: the highest of the open slow windows', if any is open.
    pub fn latency_ms_max(&self) -> Option<u64> {
        self.slow_ms.values().copied().max()
    }
}

/// Damage at rest waiting for a stopped node's next start.
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
    /// `damage` at `pick`, aimed at key `aim_key` (an index: the key of the write the fault
    /// waited for, or the one a shrunk plan pinned), if any.
    pub fn new(damage: DiskDamage, pick: u64, aim_key: Option<u32>, c: &SimConfig) -> HeldDamage {
        HeldDamage {
            damage,
            pick,
            aim: aim_key.map(|k| record_key(c.key_name(k).as_bytes())),
        }
    }

    /// Applies the damage to the data directory `dir` on `fs`: what it did, for the `restart`
    /// event. Where there is nothing of its kind to damage (one data file for `lose-file` or
    /// `cut-sealed-file`, no record before another for `flip-byte`, no manifest), it tears the
    /// tail instead, aimed alike: a window of damage at rest damages something whenever the
    /// directory holds a record (measured: 7 of 100 nightly seeds with `keep-actor-on-recovery`
    /// had damage at rest that did nothing, and so could not catch it).
    pub fn apply<F: FileSystem>(&self, fs: &F, dir: &Path) -> std::io::Result<String> {
        let damage = self.damage;
        let what = Self::node_damage(damage);
        let aim = self.aim.as_deref();
        if let Some(done) = apply_damage(fs, dir, what, self.pick, aim)? {
            return Ok(done);
        }
        let nothing = format!("{}: nothing to damage", damage.name());
        if what == Damage::TornTail {
            return Ok(nothing);
        }
        Ok(
            match apply_damage(fs, dir, Damage::TornTail, self.pick, aim)? {
                Some(done) => format!("{nothing}; {} instead: {done}", Damage::TornTail.name()),
                None => nothing,
            },
        )
    }

    /// The node crate's name for damage done to a disk at rest.
    fn node_damage(damage: DiskDamage) -> Damage {
        match damage {
            DiskDamage::TornTail => Damage::TornTail,
            DiskDamage::FlipByte => Damage::FlipByte,
            DiskDamage::LoseNewestFile => Damage::LoseNewestFile,
            DiskDamage::LoseFile => Damage::LoseFile,
            DiskDamage::CutSealedFile => Damage::CutSealedFile,
            DiskDamage::LoseManifest => Damage::LoseManifest,
            DiskDamage::FailWrites | DiskDamage::FailSyncs => {
                unreachable!("a failing disk is a switch on a running node, not damage at rest")
            }
        }
    }
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
/// already delayed (`delayed_until_ms`) is due when that time comes.
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
    /// Closed, skipped, or never opened before the heal.
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

    /// The candidates of `fault` it could hit now: those that serve, and for a fault that
    /// destroys data at rest, those whose disk is not already to be destroyed (see [`Aimed::find`]).
    pub fn ready(
        fault: &Fault,
        destruction_pending: impl Fn(u32) -> bool,
        serves: impl Fn(u32) -> bool,
    ) -> Vec<u32> {
        fault
            .nodes()
            .into_iter()
            .filter(|&n| serves(n) && (!fault.destroys_at_rest() || !destruction_pending(n)))
            .collect()
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

/// The nemesis's own record of one node.
#[derive(Clone, Debug, Default)]
struct NodeState {
    /// Open windows holding it down (the supervisor's hold included).
    down: u32,
    /// Open windows pausing it.
    paused: u32,
    /// Open windows failing its writes; its syncs.
    fail_writes: u32,
    fail_syncs: u32,
    /// The sum of its open skews.
    skew_ms: i64,
    /// The node stopped by itself; the supervisor holds it down since this time.
    supervised_since_ms: Option<u64>,
    /// It was restarted and its `restart` event waits for the environment to say what it found.
    restart_unrecorded: bool,
    /// What the clients do once it serves again (a closed window's follow-up, see
    /// [`Aimed::follow`]).
    follow: Option<Focus>,
    /// The last acknowledged write it coordinated and no fault has aimed at yet: what a fault
    /// that waited in vain for a new one aims at instead.
    last_coordinated: Option<Aimed>,
}

impl NodeState {
    /// Whether it serves: up, running, and its restart recorded.
    fn serves(&self) -> bool {
        self.down == 0 && self.paused == 0 && !self.restart_unrecorded
    }
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

/// Opens and closes the plan's fault windows through an environment; see the module docs.
pub struct Nemesis<E: NemesisEnv> {
    env: E,
    config: SimConfig,
    names: Vec<String>,
    recorder: Rc<RefCell<Recorder>>,
    progress: Rc<Progress>,
    nodes: Vec<NodeState>,
    windows: Vec<(FaultWindow, WindowState)>,
    links: LinkFaults,
    /// Whether faults that may lose data wait for a moment with no write in flight (see the module
    /// docs).
    quiet: Quiet,
    /// Windows opened so far.
    pub opened: u64,
    /// Windows skipped because the environment cannot make their fault, with why.
    pub skipped: Vec<String>,
}

impl<E: NemesisEnv> Nemesis<E> {
    /// A nemesis for the windows of `plan` over its nodes, made in `env`.
    pub fn with_env(
        plan: &Plan,
        recorder: Rc<RefCell<Recorder>>,
        progress: Rc<Progress>,
        env: E,
    ) -> Nemesis<E> {
        let c = &plan.config;
        let names = c.node_names();
        Nemesis {
            env,
            config: c.clone(),
            nodes: vec![NodeState::default(); names.len()],
            names,
            recorder,
            progress,
            windows: plan
                .faults
                .iter()
                .map(|w| (w.clone(), WindowState::Pending))
                .collect(),
            links: LinkFaults::default(),
            quiet: Quiet {
                quorum_checked: c.quorum_checked(),
                fsync_always: c.fsync == FsyncPolicy::Always,
            },
            opened: 0,
            skipped: Vec::new(),
        }
    }

    /// The environment.
    pub fn env(&self) -> &E {
        &self.env
    }

    fn now_ms(&self, world: &E::World) -> u64 {
        self.env.now_ns(world) / 1_000_000
    }

    fn record(&self, world: &E::World, f: &str, value: Value) {
        let time = self.env.now_ns(world);
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

    /// One turn while the clients run: nodes that stopped or started, windows whose start or end
    /// came, acknowledged writes for the armed windows. Errs when a node stopped in a way the
    /// environment will not let pass ([`NemesisEnv::unexplained_exit`]).
    pub fn step(&mut self, world: &mut E::World) -> Result<(), String> {
        self.supervise(world)?;
        let now_ms = self.now_ms(world);
        let ops_done = self.progress.ops_done.get();
        let acks = std::mem::take(&mut *self.progress.acks.borrow_mut());
        for ack in &acks {
            let coordinator = ack.stored_on.first().map(|n| n.as_str());
            if let Some(node) = self
                .names
                .iter()
                .position(|m| Some(m.as_str()) == coordinator)
            {
                self.nodes[node].last_coordinated = Some(Aimed {
                    write: ack.write.clone(),
                    key: ack.key,
                });
            }
        }
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
                    let fault = &self.windows[i].0.fault;
                    if let Some(why) = self.env.unsupported(world, fault) {
                        self.skipped.push(format!("{}: {why}", fault.kind().name()));
                        self.windows[i].1 = WindowState::Done;
                    } else if fault.aimed() {
                        self.windows[i].1 = WindowState::Armed { since_ms: now_ms };
                    } else {
                        self.due(world, i, None, None);
                    }
                }
                WindowState::Armed { since_ms } => {
                    let fault = &self.windows[i].0.fault;
                    let pending = |n| self.env.destruction_pending(n);
                    let hit = Aimed::find(&mut acks, fault, &self.names, pending);
                    // A candidate that is down coordinates no write, and one whose disk is
                    // already to be destroyed would hide this destruction: while no candidate
                    // could be hit, the wait has not started. (Measured: with one expendable
                    // node, most damage at rest waited out its 2 s on a node held down by a wipe,
                    // then landed unaimed on the same down period, which the wipe erased.)
                    let ready = Aimed::ready(fault, pending, |n| self.nodes[n as usize].serves());
                    match hit {
                        Some((victim, write)) => {
                            self.nodes[victim as usize].last_coordinated = None;
                            self.due(world, i, Some(victim), Some(write))
                        }
                        None if ready.is_empty() => {
                            self.windows[i].1 = WindowState::Armed { since_ms: now_ms };
                        }
                        None if now_ms >= since_ms + ACKED_WAIT_MS_MAX => {
                            // No new write: aim at the last one a ready candidate coordinated
                            // (its record is still among the newest on that disk), so that the
                            // follow-up still runs; else at the first ready candidate.
                            let victim = ready
                                .iter()
                                .copied()
                                .find(|&n| self.nodes[n as usize].last_coordinated.is_some())
                                .unwrap_or(ready[0]);
                            let aimed = self.nodes[victim as usize].last_coordinated.take();
                            self.due(world, i, Some(victim), aimed)
                        }
                        None => {}
                    }
                }
                WindowState::Draining { victim, ref aimed } => {
                    if self.progress.writes_in_flight.get() == 0 {
                        let aimed = aimed.clone();
                        self.open(world, i, victim, aimed);
                    }
                }
                WindowState::Open { until_ms, .. } if now_ms >= until_ms => {
                    self.close(world, i);
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
        self.env.end_turn(world, &self.links);
        Ok(())
    }

    /// Nodes whose start the environment reports, nodes that stopped by themselves, and nodes the
    /// supervisor may restart.
    fn supervise(&mut self, world: &mut E::World) -> Result<(), String> {
        let now_ms = self.now_ms(world);
        for node in 0..self.names.len() {
            if let Some(started) = self.env.started(world, node as u32) {
                // Not before the environment said: the event says what the restart found.
                if std::mem::take(&mut self.nodes[node].restart_unrecorded) {
                    self.record_restart(world, node as u32, started);
                }
            }
            if let Some(cause) = self.env.exited(world, node as u32) {
                let state = &self.nodes[node];
                if state.fail_writes + state.fail_syncs == 0 {
                    self.env.unexplained_exit(world, node as u32, &cause)?;
                }
                // What it had not synced is gone, as in a crash; the supervisor restarts it once
                // its disk works.
                self.env.lose_unsynced(world, node as u32);
                let name = self.names[node].clone();
                self.record(world, "crash", json!({ "node": name, "cause": cause }));
                self.nodes[node].down += 1;
                self.nodes[node].supervised_since_ms = Some(now_ms);
            }
            let state = &self.nodes[node];
            if let Some(since) = state.supervised_since_ms
                && state.fail_writes + state.fail_syncs == 0
                && now_ms >= since + SUPERVISOR_RESTART_MS
            {
                self.nodes[node].supervised_since_ms = None;
                self.lift(world, node as u32);
            }
        }
        Ok(())
    }

    /// The `restart` event of `node`, and the follow-up that waited for it.
    fn record_restart(&mut self, world: &E::World, node: u32, started: Started) {
        let mut value = json!({ "node": self.name(node) });
        if let Some(error) = started.error {
            value["error"] = json!(error);
        }
        if !started.disk.is_empty() {
            value["disk"] = json!(started.disk);
        }
        self.record(world, "restart", value);
        self.progress.restarted(node);
        if let Some(follow) = self.nodes[node as usize].follow.take() {
            self.progress.focus.set(Some(follow));
        }
    }

    /// Holds a node down: stops it unless it is down already.
    fn hold(&mut self, world: &mut E::World, node: u32) {
        let state = &mut self.nodes[node as usize];
        state.down += 1;
        if state.down == 1 {
            self.env.stop(world, node);
        }
    }

    /// Releases one hold on a node: starts it when none is left (paused again if a pause still
    /// holds it).
    fn lift(&mut self, world: &mut E::World, node: u32) {
        let state = &mut self.nodes[node as usize];
        assert!(state.down > 0, "a node is lifted only as often as held");
        state.down -= 1;
        if state.down > 0 {
            return;
        }
        state.restart_unrecorded = true;
        let started = self.env.start(world, node);
        if self.nodes[node as usize].paused > 0 {
            self.env.pause(world, node);
        }
        if let Some(started) = started {
            self.nodes[node as usize].restart_unrecorded = false;
            self.record_restart(world, node, started);
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

    /// The groups of a partition by the nodes' names, for its events.
    fn named(&self, groups: &[Vec<u32>]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(|&n| self.name(n)).collect())
            .collect()
    }

    /// Sets the failing-disk switches of `node` from its counts.
    fn fail_disk(&mut self, world: &mut E::World, node: u32) {
        let state = &self.nodes[node as usize];
        let (writes, syncs) = (state.fail_writes > 0, state.fail_syncs > 0);
        self.env.fail_disk(world, node, writes, syncs);
    }

    /// A window's start (and victim) came: it opens now, or once no write is in flight.
    fn due(&mut self, world: &mut E::World, i: usize, victim: Option<u32>, aimed: Option<Aimed>) {
        if self.quiet.needs(&self.windows[i].0.fault) {
            self.windows[i].1 = WindowState::Draining { victim, aimed };
        } else {
            self.open(world, i, victim, aimed);
        }
    }

    fn open(&mut self, world: &mut E::World, i: usize, victim: Option<u32>, aimed: Option<Aimed>) {
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
                let mut cut = Vec::new();
                for link in Self::partition_links(groups, *oneway) {
                    let count = self.links.cuts.entry(link).or_default();
                    *count += 1;
                    if *count == 1 {
                        cut.push(link);
                    }
                }
                self.env
                    .set_links(world, LinkChange::Cut(&cut), &self.links);
                let value = json!({"groups": self.named(groups), "shape": shape, "oneway": oneway});
                self.record(world, "partition-start", value);
            }
            Fault::Crash { .. } => {
                let node = victim.expect("a crash has a victim");
                self.hold(world, node);
                self.record(world, "crash", aimed(json!({"node": self.name(node)})));
            }
            Fault::Wipe { .. } => {
                let node = victim.expect("a wipe has a victim");
                self.hold(world, node);
                self.env.wipe_at_next_start(node);
                self.record(world, "wipe", aimed(json!({"node": self.name(node)})));
            }
            Fault::Disk {
                damage,
                pick,
                aim_key,
                ..
            } => {
                let node = victim.expect("a disk fault has a victim");
                match damage {
                    DiskDamage::FailWrites => {
                        self.nodes[node as usize].fail_writes += 1;
                        self.fail_disk(world, node);
                    }
                    DiskDamage::FailSyncs => {
                        self.nodes[node as usize].fail_syncs += 1;
                        self.fail_disk(world, node);
                    }
                    _ => {
                        self.hold(world, node);
                        let aim = aimed_at.as_ref().map(|a| a.key).or(*aim_key);
                        let held = HeldDamage::new(*damage, *pick, aim, &config);
                        self.env.damage_at_next_start(node, held);
                    }
                }
                let value = json!({"node": self.name(node), "damage": damage.name()});
                self.record(world, "disk", aimed(value));
            }
            Fault::Pause { .. } => {
                let node = victim.expect("a pause has a victim");
                let state = &mut self.nodes[node as usize];
                state.paused += 1;
                if state.paused == 1 && state.down == 0 {
                    self.env.pause(world, node);
                }
                self.record(
                    world,
                    "pause-start",
                    aimed(json!({"node": self.name(node)})),
                );
            }
            Fault::Skew { node, by_ms } => {
                let state = &mut self.nodes[*node as usize];
                state.skew_ms += by_ms;
                let skew_ms = state.skew_ms;
                self.env.set_skew(world, *node, skew_ms);
                let value = json!({"node": self.name(*node), "by_ms": by_ms});
                self.record(world, "skew", value);
            }
            Fault::Loss { rate_ppm } => {
                self.links.loss_ppm.insert(i, *rate_ppm);
                self.env.set_links(world, LinkChange::Loss, &self.links);
                self.record(world, "loss-start", json!({"rate_ppm": rate_ppm}));
            }
            Fault::Slow { latency_ms_max } => {
                self.links.slow_ms.insert(i, *latency_ms_max);
                self.env.set_links(world, LinkChange::Latency, &self.links);
                let value = json!({"latency_ms_max": latency_ms_max});
                self.record(world, "slow-start", value);
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.hold(world, node);
                }
                self.record(world, "power", json!({"nodes": self.names}));
            }
            // The node is asked; the environment records the leave if it happened.
            Fault::Leave { node } => self.env.leave(world, *node),
        }
        self.opened += 1;
        self.windows[i].1 = WindowState::Open {
            victim,
            until_ms: self.now_ms(world) + window.duration_ms,
            follow,
        };
    }

    fn close(&mut self, world: &mut E::World, i: usize) {
        let WindowState::Open { victim, follow, .. } = self.windows[i].1 else {
            return;
        };
        self.windows[i].1 = WindowState::Done;
        let window = self.windows[i].0.clone();
        self.close_fault(world, i, &window, victim);
        // The follow-up starts once the victim serves again: now, if the fault left it serving,
        // or when its restart is recorded.
        if let (Some(follow), Some(node)) = (follow, victim) {
            let state = &mut self.nodes[node as usize];
            if state.serves() {
                self.progress.focus.set(Some(follow));
            } else {
                state.follow = Some(follow);
            }
        }
    }

    /// Undoes what window `i` did.
    fn close_fault(
        &mut self,
        world: &mut E::World,
        i: usize,
        window: &FaultWindow,
        victim: Option<u32>,
    ) {
        match &window.fault {
            Fault::Partition { groups, oneway, .. } => {
                let mut repaired = Vec::new();
                for link in Self::partition_links(groups, *oneway) {
                    let count = self.links.cuts.get_mut(&link);
                    let count = count.expect("an open partition's cut");
                    *count -= 1;
                    if *count == 0 {
                        self.links.cuts.remove(&link);
                        repaired.push(link);
                    }
                }
                let change = LinkChange::Repaired(&repaired);
                self.env.set_links(world, change, &self.links);
                let value = json!({"groups": self.named(groups)});
                self.record(world, "partition-stop", value);
            }
            Fault::Crash { .. } | Fault::Wipe { .. } => {
                self.lift(world, victim.expect("an open crash has a victim"))
            }
            Fault::Disk { damage, .. } => {
                let node = victim.expect("an open disk fault has a victim");
                let state = &mut self.nodes[node as usize];
                match damage {
                    DiskDamage::FailWrites => {
                        state.fail_writes -= 1;
                        self.fail_disk(world, node);
                    }
                    DiskDamage::FailSyncs => {
                        state.fail_syncs -= 1;
                        self.fail_disk(world, node);
                    }
                    _ => self.lift(world, node),
                }
            }
            Fault::Pause { .. } => {
                let node = victim.expect("an open pause has a victim");
                let state = &mut self.nodes[node as usize];
                state.paused -= 1;
                if state.paused == 0 && state.down == 0 {
                    self.env.resume(world, node);
                }
                self.record(world, "pause-stop", json!({"node": self.name(node)}));
            }
            Fault::Skew { node, by_ms } => {
                let state = &mut self.nodes[*node as usize];
                state.skew_ms -= by_ms;
                let skew_ms = state.skew_ms;
                self.env.set_skew(world, *node, skew_ms);
                let value = json!({"node": self.name(*node), "by_ms": -by_ms});
                self.record(world, "skew", value);
            }
            Fault::Loss { .. } => {
                self.links.loss_ppm.remove(&i);
                self.env.set_links(world, LinkChange::Loss, &self.links);
                self.record(world, "loss-stop", Value::Null);
            }
            Fault::Slow { .. } => {
                self.links.slow_ms.remove(&i);
                self.env.set_links(world, LinkChange::Latency, &self.links);
                self.record(world, "slow-stop", Value::Null);
            }
            Fault::Power => {
                for node in 0..self.names.len() as u32 {
                    self.lift(world, node);
                }
            }
            Fault::Leave { node } => self.env.rejoin(world, *node),
        }
    }

    /// Closes every window (those that never opened are dropped) and heals whatever could still
    /// be broken: the heal phase.
    pub fn heal(&mut self, world: &mut E::World) -> Result<(), String> {
        // A node that stopped since the last turn stopped under the faults still open.
        self.supervise(world)?;
        for i in 0..self.windows.len() {
            match self.windows[i].1 {
                WindowState::Open { .. } => self.close(world, i),
                _ => self.windows[i].1 = WindowState::Done,
            }
        }
        self.progress.hold_writes.set(false);
        assert!(self.links.cuts.is_empty(), "every partition closed");
        assert!(!self.links.lossy(), "every loss window closed");
        assert!(self.links.slow_ms.is_empty(), "every slow window closed");
        self.env.set_links(world, LinkChange::Heal, &self.links);
        for node in 0..self.names.len() {
            // The supervisor's holds: the disk works again now.
            if self.nodes[node].supervised_since_ms.take().is_some() {
                self.lift(world, node as u32);
            }
            let state = &self.nodes[node];
            assert_eq!(state.down, 0, "every hold lifted");
            assert_eq!(state.paused, 0, "every pause ended");
            assert_eq!(state.skew_ms, 0, "every skew undone");
            assert_eq!(state.fail_writes + state.fail_syncs, 0, "every disk works");
            self.env.fail_disk(world, node as u32, false, false);
        }
        Ok(())
    }

    /// After the heal: records the starts the environment has reported since, and restarts the
    /// nodes that stop by themselves.
    pub fn after_heal(&mut self, world: &mut E::World) -> Result<(), String> {
        self.supervise(world)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_node::fs::MemFs;
    use dynamo_node::store::Storage;
    use dynamo_node::store::log::{LogOptions, LogStore};

    /// A store of one data file (no sealed file, no older record to flip) holding `records`.
    fn one_file_store(records: usize) -> MemFs {
        let fs = MemFs::new();
        let (mut store, _) =
            LogStore::open(fs.clone(), Path::new("/d"), LogOptions::default(), || 1).expect("open");
        for i in 0..records {
            store
                .put(format!("k{i}").as_bytes(), b"value")
                .expect("put");
        }
        store.sync().expect("sync");
        fs
    }

    #[test]
    fn damage_with_nothing_of_its_kind_tears_the_tail_instead() {
        for damage in [
            DiskDamage::LoseFile,
            DiskDamage::CutSealedFile,
            DiskDamage::FlipByte,
        ] {
            let fs = one_file_store(1);
            let held = HeldDamage {
                damage,
                pick: 7,
                aim: None,
            };
            let done = held.apply(&fs, Path::new("/d")).expect("apply");
            assert!(
                done.starts_with(&format!(
                    "{}: nothing to damage; torn-tail instead: cut ",
                    damage.name()
                )),
                "{done}"
            );
            let (_, report) =
                LogStore::open(fs, Path::new("/d"), LogOptions::default(), || 1).unwrap();
            assert!(report.lost_data(), "{damage:?}: {report:?}");
        }
        // Nothing at all to damage: said so.
        let fs = one_file_store(0);
        let held = HeldDamage {
            damage: DiskDamage::LoseFile,
            pick: 7,
            aim: None,
        };
        assert_eq!(
            held.apply(&fs, Path::new("/d")).unwrap(),
            "lose-file: nothing to damage"
        );
    }
}
