//! The turmoil runner: builds the simulated cluster from a [`Plan`], runs the workload and the
//! nemesis, heals, lets the cluster quiesce, reads everything back, and returns the history.
//!
//! Hosts: `n1`..`nN` run the real node (`dynamo_node::shell::run`) with a [`SimEnv`]; one client
//! host, `control`, runs every client process and then the final phase. The nemesis
//! ([`crate::nemesis`]) runs in the outer loop between simulation steps, because crashing and
//! restarting a host are operations on the `Sim` itself; it also plays the process supervisor that
//! restarts a node that stopped on a storage error.
//!
//! What the simulation does not model: CPU time (a node handles a message in zero simulated time),
//! the latency of disk reads and appends (a sync takes a drawn simulated time, see
//! `SimEnv::run_sync`; none under a latency model, whose message delays are all it models), TCP
//! retransmission (a lost segment stalls the stream; the node and client re-dial), and processes
//! other than the node's own code. The simulated disk loses what was not synced in a
//! crash, and tears unsynced writes at [`DISK_BLOCK_BYTES`]: each pending write keeps a random
//! number of its blocks, in any order, as a real disk may.

use crate::history::{Process, Recorder};
use crate::latency::ModelDelays;
use crate::nemesis::{MembershipCommand, Nemesis, NodeKnobs};
use crate::plan::{ClientOp, Plan, SimConfig};
use crate::prng::mix64;
use crate::rest::{Rest, status_round};
use crate::workload::{
    HistoryClock, NODE_PORT, Progress, ReplicaStateJson, Shared, SimClock, Worker, now_ns,
};
use dynamo_node::auth::Secret;
use dynamo_node::client::{Client, ClientAuth};
use dynamo_node::config::{ClusterSettings, NodeConfig};
use dynamo_node::coordinator::view;
use dynamo_node::env::{Env, PeerDelays, SimEnv};
use dynamo_node::fs::{FileSystem, SimFs};
use dynamo_node::ring::{NodeId, Ring};
use dynamo_node::wire::{Request, Response};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, UNIX_EPOCH};

/// The history format this runner writes (shared/history-format.md).
pub const HISTORY_FORMAT: u64 = 2;
/// The client host's name.
pub const CONTROL_HOST: &str = "control";
/// The simulated disk's block: a crash keeps a random number of the blocks of each unsynced write.
pub const DISK_BLOCK_BYTES: u64 = 4_096;
/// A run is declared stuck past this many times its expected length (plus its quiesce, its faults
/// and a margin): every request has a deadline, so a healthy run never comes near it.
pub const SIM_TIME_EXPECTED_FACTOR_MAX: u64 = 20;
/// The margin of the stuck-run bound, simulated ms.
pub const SIM_TIME_MARGIN_MS: u64 = 120_000;
/// Attempts to join a node back after a leave before the membership agent gives up on it.
pub const JOIN_ATTEMPTS_MAX: u32 = 100;
/// Segments turmoil buffers per TCP stream before dropping (its default of 64 is too small for a
/// node's pipelined replication).
pub const TCP_SEGMENTS_MAX: usize = 65_536;
/// Attempts of a final read or replica-state read before it is given up.
pub const FINAL_READ_ATTEMPTS_MAX: usize = 5;
/// Where each node keeps its data on its simulated disk.
pub const DATA_DIR: &str = "/data";
/// The simulated wall clock starts here (a fixed epoch: 2026-01-01), not at the host's time.
pub const EPOCH_S: u64 = 1_767_225_600;

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The history, JSON Lines.
    pub history: Vec<u8>,
    /// Figures for the one-line summary.
    pub summary: RunSummary,
}

/// Figures of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Client operations completed.
    pub ops: u64,
    /// Of which ok.
    pub ok: u64,
    /// Of which fail.
    pub fail: u64,
    /// Of which info.
    pub info: u64,
    /// Fault windows opened.
    pub faults: u64,
    /// Simulated time, ms.
    pub sim_ms: u64,
    /// Hinted writes handed over to their owners, summed over the nodes at the end.
    pub hints_delivered: u64,
    /// Hints still held at the end.
    pub hints_pending: u64,
    /// Keys changed by anti-entropy.
    pub ae_keys_repaired: u64,
    /// Read-repair messages sent.
    pub read_repairs_sent: u64,
    /// Copies of keys held by nodes outside the keys' final preference lists (0 once every
    /// membership change was handed over).
    pub non_owner_copies: u64,
    /// The final ring's version (1 without membership changes).
    pub ring_version: u64,
    /// With `measure_convergence`: simulated ms from the heal until every replica of every key
    /// held the same state (None: not measured, or not within the quiesce time).
    pub converged_after_heal_ms: Option<u64>,
}

impl RunSummary {
    /// The operations `recorder` counted, `faults` windows opened, after `sim_ms`; the nodes'
    /// counters left at zero.
    pub fn of(recorder: &Recorder, faults: u64, sim_ms: u64) -> RunSummary {
        RunSummary {
            ops: recorder.ok + recorder.fail + recorder.info,
            ok: recorder.ok,
            fail: recorder.fail,
            info: recorder.info,
            faults,
            sim_ms,
            ..RunSummary::default()
        }
    }
}

/// What the control host learns at the end, for the summary.
#[derive(Default)]
struct Totals {
    hints_delivered: u64,
    hints_pending: u64,
    ae_keys_repaired: u64,
    read_repairs_sent: u64,
    non_owner_copies: u64,
    ring_version: u64,
    converged_after_heal_ms: Option<u64>,
}

/// Shared between the control host and the outer loop.
#[derive(Default)]
struct Phase {
    clients_done: Cell<bool>,
    healed: Cell<bool>,
    /// Wakes the membership agent: a command is waiting, or the cluster was healed. (It used to
    /// look every simulated millisecond, which kept the control host, and every client future
    /// joined with it, busy on every tick.)
    membership_wake: tokio::sync::Notify,
}

/// A rough length of the client phase in simulated ms, only to bound a stuck run (faults are
/// scheduled by operation count, not by this estimate).
fn expected_duration_ms(c: &SimConfig) -> u64 {
    let per_client = (c.ops as u64).div_ceil(c.clients as u64);
    // A cart update is two round trips; each costs a few latencies.
    let op_ms = c.think_ms_max / 2 + 4 * c.message_ms_typical() + 1;
    (per_client * op_ms).max(1_000)
}

/// The node configuration every simulated node runs with.
pub fn node_config(plan: &Plan, node: usize) -> NodeConfig {
    let c = &plan.config;
    let members: BTreeMap<NodeId, String> = c
        .node_names()
        .into_iter()
        .map(|n| {
            let addr = format!("{n}:{NODE_PORT}");
            (n.into(), addr)
        })
        .collect();
    let settings = ClusterSettings {
        n: c.n,
        r: c.r,
        w: c.w,
        partition_count: c.partitions,
        fsync: c.fsync,
        request_timeout_ms: c.request_timeout_ms,
        options: c.node.clone(),
        bug: c.bug,
    };
    let mut config = NodeConfig::for_cluster(format!("n{}", node + 1), members, &settings);
    // Small, so that compaction runs (and meets crashes) within a simulation's few megabytes, and
    // so that a node's log has several files, of which a disk fault can lose one.
    config.compact_garbage_bytes_min = COMPACT_GARBAGE_BYTES_MIN;
    config.log_file_bytes_max = LOG_FILE_BYTES_MAX;
    // The simulated cluster runs the real handshake and MACs, with a secret the seed replays.
    config.auth.cluster_secret = Some(cluster_secret(plan));
    config
}

/// The cluster secret of a simulated run: derived from its seed.
pub fn cluster_secret(plan: &Plan) -> Secret {
    Secret::for_simulation(plan.config.seed)
}

/// An admin client of a simulated node (the harness's raw replica states, statuses and
/// membership changes need the cluster secret; the workload's clients are anonymous).
fn admin(c: &SimConfig, env: &SimEnv, addr: String) -> Client<SimEnv> {
    Client::new(env.clone(), addr)
        .with_timeout_ms(c.client_timeout_ms)
        .with_auth(ClientAuth::admin(Some(Secret::for_simulation(c.seed))))
}

/// The simulated nodes' compaction floor.
pub const COMPACT_GARBAGE_BYTES_MIN: u64 = 1024 * 1024;
/// The simulated nodes' log file size.
pub const LOG_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Runs a plan to completion and returns its history.
pub fn run(plan: &Plan) -> Result<RunOutput, String> {
    run_with(plan, true)
}

/// [`run`], with turmoil's leaving out of idle hosts' ticks (vendor/turmoil/PATCHES.md) on or
/// off. It changes only the speed of a run: a test runs seeds both ways and compares the bytes.
pub fn run_with(plan: &Plan, skip_idle_hosts: bool) -> Result<RunOutput, String> {
    plan.config.validate()?;
    plan.validate()?;
    if plan
        .faults
        .iter()
        .any(|w| matches!(w.fault, crate::plan::Fault::Pause { .. }))
    {
        return Err(
            "the simulator cannot pause a node: pauses run on real processes \
                    (dynamo live)"
                .into(),
        );
    }
    let c = &plan.config;
    let faults_ms: u64 = plan
        .faults
        .iter()
        .map(|w| w.duration_ms + crate::plan::ACKED_WAIT_MS_MAX)
        .sum();
    let sim_time_ms_max = expected_duration_ms(c) * SIM_TIME_EXPECTED_FACTOR_MAX
        + faults_ms
        + c.quiesce_ms
        + SIM_TIME_MARGIN_MS;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(c.seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(EPOCH_S))
        .simulation_duration(Duration::from_millis(sim_time_ms_max + SIM_TIME_MARGIN_MS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(c.turmoil_latency_ms().0))
        .max_message_latency(Duration::from_millis(c.turmoil_latency_ms().1))
        .tcp_capacity(TCP_SEGMENTS_MAX);
    builder.fs().block_size(DISK_BLOCK_BYTES);
    let mut sim = builder.build();
    sim.set_skip_idle_hosts(skip_idle_hosts);

    let recorder = Rc::new(RefCell::new(Recorder::with_tick_us(c.tick_us)));
    let mut config_value = serde_json::to_value(c).expect("config serialises");
    config_value["history_format"] = json!(HISTORY_FORMAT);
    config_value["node_names"] = json!(c.node_names());
    // This node keeps tombstones for good.
    config_value["tombstone_gc"] = json!(false);
    recorder.borrow_mut().record(
        0,
        Process::Harness,
        "info",
        "config",
        &json!({"value": config_value}),
    );

    let mut knobs = Vec::new();
    for node in 0..c.nodes {
        let k = NodeKnobs::new();
        let config = node_config(plan, node);
        let seed = c.seed;
        let host = k.clone();
        // One source of delays per node, across its incarnations, as the link outlives a crash.
        let delays = c.latency.clone().map(|model| {
            Arc::new(ModelDelays::new(model, seed, node, c.tick_us)) as Arc<dyn PeerDelays>
        });
        sim.host(config.id.to_string(), move || {
            let config = config.clone();
            let incarnation = host.incarnation.get() + 1;
            host.incarnation.set(incarnation);
            let mut env = SimEnv::with_disk_faults(
                mix64(seed ^ mix64(node as u64) ^ incarnation << 32),
                host.skew_ms.clone(),
                host.disk_faults.clone(),
            );
            if let Some(delays) = &delays {
                env = env.with_peer_delays(delays.clone()).without_sync_latency();
            }
            let wipe = host.wipe_on_start.replace(false);
            let damages = std::mem::take(&mut *host.damage_on_start.borrow_mut());
            let host = host.clone();
            async move {
                // What the nemesis did to the disk while the node was down, before it reads it.
                let mut done = Vec::new();
                if wipe {
                    wipe_disk(&SimFs)?;
                    done.push("wiped".to_owned());
                }
                for held in damages {
                    done.push(held.apply(&SimFs, Path::new(DATA_DIR))?);
                }
                *host.started.borrow_mut() = Some(done.join("; "));
                let listener = env.bind(&format!("0.0.0.0:{NODE_PORT}")).await?;
                let served = dynamo_node::shell::run(
                    env,
                    config,
                    Path::new(DATA_DIR),
                    listener,
                    std::future::pending(),
                )
                .await;
                // A node stops only on an error (its storage failed): the nemesis, as its
                // supervisor, decides what that means. The simulation goes on either way.
                if let Err(e) = served {
                    *host.exited.borrow_mut() = Some(e.to_string());
                }
                Ok(())
            }
        });
        knobs.push(k);
    }

    let phase = Rc::new(Phase::default());
    let plan_rc = Rc::new(plan.clone());
    let totals = Rc::new(RefCell::new(Totals::default()));
    let progress = Rc::new(Progress::default());
    let membership = Rc::new(RefCell::new(VecDeque::new()));
    sim.client(
        CONTROL_HOST,
        control(
            plan_rc,
            recorder.clone(),
            phase.clone(),
            totals.clone(),
            progress.clone(),
            membership.clone(),
        ),
    );

    let mut nemesis = Nemesis::new(plan, knobs, recorder.clone(), progress, membership.clone());
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        if !phase.clients_done.get() {
            nemesis.step(&mut sim)?;
        } else if !phase.healed.get() {
            nemesis.heal(&mut sim)?;
            let time = sim.elapsed().as_nanos() as u64;
            recorder.borrow_mut().record(
                time,
                Process::Harness,
                "info",
                "phase",
                &json!({"value": "heal"}),
            );
            phase.healed.set(true);
        } else {
            nemesis.after_heal(&mut sim)?;
        }
        if phase.healed.get() || !membership.borrow().is_empty() {
            phase.membership_wake.notify_one();
        }
        let finished = sim.step().map_err(|e| format!("simulation failed: {e}"))?;
        if finished {
            break;
        }
        if now_ms > sim_time_ms_max {
            return Err(format!(
                "the simulation did not finish within {} simulated s: stuck",
                sim_time_ms_max / 1000
            ));
        }
    }
    let sim_ms = sim.elapsed().as_millis() as u64;
    let faults = nemesis.opened;
    drop(nemesis);
    drop(sim);
    let recorder = Rc::try_unwrap(recorder)
        .map_err(|_| "history still shared after the run".to_string())?
        .into_inner();
    let totals = totals.borrow();
    let summary = RunSummary {
        hints_delivered: totals.hints_delivered,
        hints_pending: totals.hints_pending,
        ae_keys_repaired: totals.ae_keys_repaired,
        read_repairs_sent: totals.read_repairs_sent,
        non_owner_copies: totals.non_owner_copies,
        ring_version: totals.ring_version,
        converged_after_heal_ms: totals.converged_after_heal_ms,
        ..RunSummary::of(&recorder, faults, sim_ms)
    };
    Ok(RunOutput {
        history: recorder.into_bytes(),
        summary,
    })
}

/// Deletes every file of the node's data directory: the node restarts with an empty disk.
fn wipe_disk<F: FileSystem>(fs: &F) -> std::io::Result<()> {
    let dir = Path::new(DATA_DIR);
    if !fs.exists(dir) {
        return Ok(());
    }
    for path in fs.read_dir(dir)? {
        fs.remove_file(&path)?;
    }
    fs.sync_dir(dir)
}

/// The control host: runs every client, then waits for the heal, quiesces, and reads back.
async fn control(
    plan: Rc<Plan>,
    recorder: Rc<RefCell<Recorder>>,
    phase: Rc<Phase>,
    totals: Rc<RefCell<Totals>>,
    progress: Rc<Progress>,
    membership: Rc<RefCell<VecDeque<MembershipCommand>>>,
) -> turmoil::Result {
    let c = Rc::new(plan.config.clone());
    let env = SimEnv::new(0, Arc::new(AtomicI64::new(0)));
    let mut per_client: Vec<Vec<ClientOp>> = vec![Vec::new(); c.clients];
    for op in &plan.ops {
        per_client[op.client as usize].push(*op);
    }
    let shared = Rc::new(Shared::sim(
        c.clone(),
        recorder.clone(),
        env.clone(),
        progress.clone(),
    ));
    let workers = per_client.into_iter().enumerate().map(|(slot, ops)| {
        let mut worker = Worker::new(slot as u64, slot as u64, shared.clone());
        async move {
            for op in &ops {
                worker.run_op(op).await;
            }
            worker.process()
        }
    });
    let clients = async {
        let last = futures::future::join_all(workers).await.into_iter().max();
        // The outer loop heals at its next turn; the agent then takes every node back.
        phase.clients_done.set(true);
        last.unwrap_or(0)
    };
    let agent = membership_agent(&plan, &recorder, &env, &phase, &membership);
    let (last_process, ()) = futures::future::join(clients, agent).await;
    let healed_at = tokio::time::Instant::now();
    let quiet_until = healed_at + Duration::from_millis(c.quiesce_ms);
    let mut admins: Vec<Client<SimEnv>> = c
        .node_names()
        .into_iter()
        .map(|node| admin(&c, &env, format!("{node}:{NODE_PORT}")))
        .collect();
    let mut rest = Rest::default();
    let mut measuring = c.measure_convergence;
    let mut at_rest = false;
    while measuring || c.quiesce_until_rest {
        if measuring {
            let ring = final_ring(&c, &env).await;
            if converged(&c, &ring, &env).await {
                let ms = healed_at.elapsed().as_millis() as u64;
                totals.borrow_mut().converged_after_heal_ms = Some(ms);
                measuring = false;
            }
        }
        if c.quiesce_until_rest {
            let round = status_round(&mut admins).await;
            let now_ms = healed_at.elapsed().as_millis() as u64;
            at_rest = rest.observe(now_ms, round.as_deref(), c.n);
            if at_rest && !measuring {
                break;
            }
        }
        let next = tokio::time::Instant::now() + Duration::from_millis(CONVERGENCE_PROBE_MS);
        if next >= quiet_until {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    if !at_rest {
        // Never at rest (or not asked to look): the whole quiesce.
        tokio::time::sleep_until(quiet_until).await;
    }
    recorder.borrow_mut().record(
        now_ns(),
        Process::Harness,
        "info",
        "phase",
        &json!({"value": "final"}),
    );

    final_reads(&shared, last_process).await;
    // Read repair goes out after a read's answer, when its last replica replies or its repair
    // deadline passes: let it land before the replicas' raw states are taken.
    tokio::time::sleep(Duration::from_millis(2 * c.request_timeout_ms)).await;

    // Each replica's raw sibling set, straight from its storage, under the final ring: one admin
    // connection per node, all nodes at once. Every other node is asked too: after the quiesce a
    // node outside a key's preference list must hold nothing of it (it handed the key over).
    let ring = final_ring(&c, &env).await;
    totals.borrow_mut().ring_version = ring.version();
    let admins = c.node_names().into_iter().map(|node| {
        let (keys, others): (Vec<String>, Vec<String>) =
            (0..c.keys as u32).map(|k| c.key_name(k)).partition(|name| {
                ring.preference_list(name.as_bytes(), c.n)
                    .iter()
                    .any(|n| *n == node)
            });
        let addr = format!("{node}:{NODE_PORT}");
        let mut admin = admin(&c, &env, addr);
        let recorder = recorder.clone();
        let totals = totals.clone();
        async move {
            for name in others {
                if let Ok(state) = admin.replica_state(name.as_bytes()).await
                    && !state.siblings.is_empty()
                {
                    totals.borrow_mut().non_owner_copies += 1;
                }
            }
            record_replica_states(&mut admin, &node, &keys, &recorder, &SimClock).await;
        }
    });
    futures::future::join_all(admins).await;

    // The nodes' own counters of hinted handoff and anti-entropy, for the summary.
    for node in c.node_names() {
        let addr = format!("{node}:{NODE_PORT}");
        let mut admin = admin(&c, &env, addr);
        if let Ok(status) = admin.status().await {
            let mut t = totals.borrow_mut();
            t.hints_delivered += status.hints_delivered;
            t.hints_pending += status.hints_pending;
            t.ae_keys_repaired += status.ae_keys_repaired;
            t.read_repairs_sent += status.read_repairs_sent;
        }
    }
    Ok(())
}

/// The newest ring any node knows (nodes may briefly disagree after a membership change).
async fn final_ring(c: &SimConfig, env: &SimEnv) -> Ring {
    let weights: BTreeMap<NodeId, u32> =
        c.node_names().into_iter().map(|n| (n.into(), 1)).collect();
    let mut ring = Ring::new(c.partitions, &weights);
    for node in c.node_names() {
        let addr = format!("{node}:{NODE_PORT}");
        let mut admin = admin(c, env, addr);
        if let Ok(status) = admin.status().await
            && status.ring.version() > ring.version()
        {
            ring = status.ring;
        }
    }
    ring
}

/// Carries out the nemesis's membership commands from the control host (they are requests to the
/// nodes): a leave asks the node to leave the ring, a join asks the others to take it back. It ends
/// after the heal, once every node it took out is back.
async fn membership_agent(
    plan: &Plan,
    recorder: &Rc<RefCell<Recorder>>,
    env: &SimEnv,
    phase: &Phase,
    commands: &RefCell<VecDeque<MembershipCommand>>,
) {
    let c = &plan.config;
    let request = |node: u32, request: Request| {
        let addr = format!("n{}:{NODE_PORT}", node + 1);
        let env = env.clone();
        async move {
            let mut admin = admin(c, &env, addr);
            match admin.request(request).await {
                Ok(Response::Membership { ring, .. }) => Some(ring),
                _ => None,
            }
        }
    };
    let record = |f: &str, node: u32| {
        let value = json!({"value": {"node": format!("n{}", node + 1)}});
        recorder
            .borrow_mut()
            .record(now_ns(), Process::Nemesis, "info", f, &value);
    };
    // The nodes out of the ring, with the ring their leave made.
    let mut out: BTreeMap<u32, Ring> = BTreeMap::new();
    // The fewest members the ring may keep: N, so that every key keeps N owners.
    let mut members = c.nodes;
    loop {
        let command = commands.borrow_mut().pop_front();
        let Some(command) = command else {
            if phase.healed.get() {
                break;
            }
            phase.membership_wake.notified().await;
            continue;
        };
        match command {
            MembershipCommand::Leave(node) => {
                // A ring that would keep too few owners, or a node that cannot be reached
                // (crashed, cut off): no change.
                if members > c.n
                    && !out.contains_key(&node)
                    && let Some(left) = request(node, Request::Leave).await
                {
                    record("leave", node);
                    members -= 1;
                    out.insert(node, left);
                }
            }
            MembershipCommand::Join(node) => {
                if let Some(left) = out.remove(&node) {
                    members += 1;
                    // Join again through the next nodes, until one answers with a ring newer than
                    // the leave's that holds the node (one that has not heard of the leave yet
                    // takes the join as a no-op). A leave that only the leaver knew of, and lost in
                    // a crash, never gets newer: give up then.
                    let id = format!("n{}", node + 1);
                    let join = Request::Join {
                        id: id.clone().into(),
                        addr: format!("{id}:{NODE_PORT}"),
                        weight: 1,
                    };
                    for attempt in 0..JOIN_ATTEMPTS_MAX {
                        let via = (node + 1 + attempt % (c.nodes as u32 - 1)) % c.nodes as u32;
                        let answer = request(via, join.clone()).await;
                        if answer.is_some_and(|r| r.version() > left.version() && r.contains(&id)) {
                            record("join", node);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}

/// Interval of the convergence probe after the heal.
pub const CONVERGENCE_PROBE_MS: u64 = 100;

/// Whether every replica of every key holds the same state right now (read straight from each
/// node's storage). An unreachable replica counts as not converged.
async fn converged(c: &SimConfig, ring: &Ring, env: &SimEnv) -> bool {
    let mut admins: BTreeMap<NodeId, Client<SimEnv>> = BTreeMap::new();
    for key in 0..c.keys as u32 {
        let name = c.key_name(key);
        let mut first = None;
        for node in ring.preference_list(name.as_bytes(), c.n) {
            let admin = admins
                .entry(node.clone())
                .or_insert_with(|| admin(c, env, format!("{node}:{NODE_PORT}")));
            let Ok(state) = admin.replica_state(name.as_bytes()).await else {
                return false;
            };
            match &first {
                None => first = Some(state),
                Some(f) if *f != state => return false,
                Some(_) => {}
            }
        }
    }
    true
}

/// Records a `replica-state` event for each of `keys` on `node`: its raw sibling set, read through
/// `admin` ([`FINAL_READ_ATTEMPTS_MAX`] attempts a key; a key never read goes unrecorded). The
/// simulator's and `dynamo live`'s final phase.
pub async fn record_replica_states<E: Env, C: HistoryClock>(
    admin: &mut Client<E>,
    node: &str,
    keys: &[String],
    recorder: &RefCell<Recorder>,
    clock: &C,
) {
    for name in keys {
        for _ in 0..FINAL_READ_ATTEMPTS_MAX {
            if let Ok(state) = admin.replica_state(name.as_bytes()).await {
                let views: Vec<_> = state.siblings.iter().map(view).collect();
                recorder.borrow_mut().record(
                    clock.now_ns(),
                    Process::Harness,
                    "info",
                    "replica-state",
                    &ReplicaStateJson::new(name, node, &views),
                );
                break;
            }
        }
    }
}

/// Processes doing the final reads at once.
pub const FINAL_READERS: usize = 8;

/// The final phase's quorum reads of every key, retried on other nodes: [`FINAL_READERS`]
/// processes at once after `last_process`, each reading a stride of the keys. An `info` retires a
/// reader's process as usual. The simulator's and `dynamo live`'s final phase.
pub async fn final_reads<E: Env, C: HistoryClock>(shared: &Rc<Shared<E, C>>, last_process: u64) {
    let c = shared.config.clone();
    let readers = (0..FINAL_READERS.min(c.keys)).map(|r| {
        let first = last_process + 1 + r as u64;
        let mut reader = Worker::new(first, first, shared.clone());
        let c = c.clone();
        async move {
            for key in (r..c.keys).step_by(FINAL_READERS) {
                for attempt in 0..FINAL_READ_ATTEMPTS_MAX {
                    let node = (key + attempt) % c.nodes;
                    if reader.read(key as u32, node as u32).await.is_some() {
                        break;
                    }
                }
            }
        }
    });
    futures::future::join_all(readers).await;
}
