//! `dynamo live`: the plan of `dynamo sim`, with the same workload clients, against real
//! `dynamo serve` processes on loopback, with real faults.
//!
//! # Layout
//!
//! - [`procs`]: the node processes (spawn, SIGKILL, SIGSTOP/SIGCONT, restart; never left behind).
//! - [`proxy`]: the TCP proxy on every peer link (partitions, one-way cuts, slow links, loss).
//! - [`nemesis`]: the plan's fault windows on those, as the simulator's nemesis opens them.
//! - this file: the command, and the run: start the cluster, run the clients and the nemesis until
//!   the plan is done or `--time-limit`, heal, quiesce, read every key and every replica's raw
//!   state, stop the cluster, write the files and check them as `dynamo sim` does.
//!
//! # The cluster
//!
//! Node i listens on a loopback port of its own (below the kernel's ephemeral range, so that no
//! connection takes it while the node is down) with its data in `DIR/nodes/nI/data` and its log
//! in `DIR/nodes/nI/log`. Its `--peers` name every other node j at the proxy's port for (i, j), so
//! that every byte between two nodes crosses the proxy; clients, the final reads and the replica
//! states reach the nodes directly. History `time` is monotonic wall time since the run started.
//!
//! The nodes share a cluster secret (issue 11), made from OS entropy for each run and kept in
//! `DIR/cluster-secret` (mode 0600): peers authenticate through the proxy, which passes their
//! handshake and MACed frames through as bytes, and the harness proves it for the admin verbs
//! (statuses, raw replica states). The workload's clients are anonymous, as any client. Against a
//! running cluster (`--nodes ADDR,...`), `--cluster-secret-file` names its secret.

pub mod nemesis;
pub mod procs;
pub mod proxy;

use crate::sim::{NodesArg, SimArgs};
use clap::Args;
use dynamo_node::auth::{AuthConfig, Secret};
use dynamo_node::client::{Client, ClientAuth};
use dynamo_node::env::TokioEnv;
use dynamo_node::ring::{NodeId, Ring};
use dynamo_workloads::history::{Process, Recorder};
use dynamo_workloads::plan::{ClientOp, NemesisKind, Plan, SimConfig};
use dynamo_workloads::rest::{Rest, status_round};
use dynamo_workloads::runner::{
    CONVERGENCE_PROBE_MS, HISTORY_FORMAT, final_reads, record_replica_states,
};
use dynamo_workloads::workload::{HistoryClock, Progress, Shared, Worker};
use dynamo_workloads::{RunOutput, RunSummary};
use nemesis::{Cluster, live_nemesis};
use procs::NodeProc;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the nodes may take to come up.
pub const STARTUP_TIMEOUT_MS: u64 = 15_000;
/// How often the nemesis looks at the run, ms.
pub const NEMESIS_TICK_MS: u64 = 2;
/// The final phase (reads, replica states) may take at most this long before the run is given up.
pub const FINAL_PHASE_MS_MAX: u64 = 120_000;

/// Options of `dynamo live`.
#[derive(Args, Debug)]
#[command(mut_arg("nemesis", |arg| arg.help(crate::sim::nemesis_help(&NemesisKind::LIVE))))]
pub struct LiveArgs {
    /// The plan's options, as for `dynamo sim` (`--nodes` also takes the addresses of a running
    /// cluster, whose faults then are skipped); `--nemesis all` means every kind real processes
    /// have (`NemesisKind::LIVE`), as its help says.
    #[command(flatten)]
    sim: SimArgs,
    /// Run this plan.json instead of one made from the options.
    #[arg(long = "plan", value_name = "PLAN_JSON")]
    plan_file: Option<PathBuf>,
    /// Stop the clients after this long (then heal, quiesce and read back): 90s, 5m, 1h.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse_duration)]
    time_limit: Duration,
    /// For a running cluster (`--nodes ADDR,...`): the secret its admin verbs need. A cluster the
    /// run starts gets a new secret of its own.
    #[command(flatten)]
    auth: crate::kv::AuthArgs,
}

/// History time against real processes: monotonic nanoseconds since the run started.
#[derive(Clone, Copy, Debug)]
pub struct LiveClock {
    start: Instant,
}

impl HistoryClock for LiveClock {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

impl LiveClock {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// `dynamo live`.
pub fn live(args: LiveArgs) -> Result<ExitCode, String> {
    crate::kv::init_logging("off");
    if args.sim.check_determinism {
        return Err("--check-determinism: a live run is not deterministic".into());
    }
    if args.auth.has_client_token() {
        return Err(
            "--client-token-file: the workload's clients of a live run are anonymous; \
             run it against nodes that take anonymous clients"
                .into(),
        );
    }
    let time_limit = args.time_limit;
    if time_limit.is_zero() {
        // The clients would stop at the nemesis's first tick, having run whatever fit in it.
        return Err("--time-limit must be positive (e.g. 90s)".into());
    }
    let external = match &args.sim.nodes {
        NodesArg::Addrs(addrs) => Some(addrs.clone()),
        NodesArg::Count(_) => None,
    };
    let plan = match &args.plan_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Plan::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => {
            let seed = args.sim.seed.unwrap_or_else(crate::sim::random_seed);
            let mut config = args.sim.config(seed)?;
            config.nemesis =
                NemesisKind::parse_list_with(&nemesis_option(&args.sim), &NemesisKind::LIVE)?;
            Plan::generate(config)?
        }
    };
    if let Some(addrs) = &external
        && addrs.len() != plan.config.nodes
    {
        return Err(format!(
            "the plan has {} nodes, --nodes names {}",
            plan.config.nodes,
            addrs.len()
        ));
    }
    let out = match &args.sim.out {
        Some(dir) => dir.clone(),
        None => PathBuf::from("store").join(format!(
            "live-{}-{}",
            plan.config.workload, plan.config.seed
        )),
    };
    if out.join("nodes").exists() {
        std::fs::remove_dir_all(out.join("nodes"))
            .map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    eprintln!(
        "dynamo live: seed {}, {} nodes{}, time limit {:.0} s, writing {}",
        plan.config.seed,
        plan.config.nodes,
        if external.is_some() {
            " (a running cluster)"
        } else {
            " on loopback"
        },
        time_limit.as_secs_f64(),
        out.display()
    );
    let started = Instant::now();
    let external = match external {
        Some(addrs) => Some((addrs, args.auth.load()?)),
        None => None,
    };
    let run = run(&plan, &out, time_limit, external)?;
    let wall_s = started.elapsed().as_secs_f64();
    crate::sim::write_run(&out, &plan, &run.output)?;
    std::fs::write(
        out.join("live.json"),
        serde_json::to_string_pretty(&run.meta).expect("JSON") + "\n",
    )
    .map_err(|e| format!("cannot write live.json: {e}"))?;
    if args.sim.out.is_none() {
        crate::sim::point_latest(&out);
    }
    let s = run.output.summary;
    outln!(
        "seed {}: {} ops ({} ok, {} fail, {} info) in {:.1} s, {:.0} ops/s; {} faults{}",
        plan.config.seed,
        s.ops,
        s.ok,
        s.fail,
        s.info,
        wall_s,
        s.ops as f64 / run.client_s.max(1e-9),
        s.faults,
        if run.interrupted {
            "; INTERRUPTED: no final reads"
        } else {
            ""
        }
    );
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    for why in &run.skipped {
        *skipped.entry(why.as_str()).or_default() += 1;
    }
    for (why, count) in skipped {
        outln!("skipped {count} fault window(s): {why}");
    }
    let code = crate::sim::verdict(&out)?;
    if !run.unexpected_exits.is_empty() {
        for exit in &run.unexpected_exits {
            eprintln!("dynamo live: node {exit}");
        }
        eprintln!("dynamo live: a node exited by itself: the run is an error (exit 2)");
        if code == ExitCode::SUCCESS {
            return Ok(ExitCode::from(2));
        }
    }
    Ok(code)
}

/// `--nemesis` as given: `all` means something else here than in the simulator.
fn nemesis_option(sim: &SimArgs) -> String {
    sim.nemesis_arg().to_owned()
}

/// What a live run produced.
struct LiveRun {
    output: RunOutput,
    meta: serde_json::Value,
    skipped: Vec<String>,
    unexpected_exits: Vec<String>,
    interrupted: bool,
    /// Seconds the clients ran.
    client_s: f64,
}

/// Loopback ports for `count` nodes, below the kernel's ephemeral range (as the tests' `free_port`:
/// the kernel never hands those out by itself, so a port stays free while its node is down).
fn pick_ports(count: usize) -> Result<Vec<u16>, String> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low: u16 = 10_000;
    let span = u64::from(range.saturating_sub(low).max(1_000)) - count as u64;
    for turn in 0..200u64 {
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            (std::process::id(), turn),
        );
        let base = low + (seed % span) as u16;
        let ports: Vec<u16> = (0..count as u16).map(|i| base + i).collect();
        if ports
            .iter()
            .all(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        {
            return Ok(ports);
        }
    }
    Err(format!("no free loopback ports below {range}"))
}

/// `dynamo serve`'s options for node `i` of the plan, apart from its id, address and peers.
fn serve_options(c: &SimConfig) -> Vec<String> {
    let mut args: Vec<String> = [
        ("--n", c.n.to_string()),
        ("--r", c.r.to_string()),
        ("--w", c.w.to_string()),
        ("--partitions", c.partitions.to_string()),
        ("--fsync", c.fsync.to_string()),
        ("--request-timeout-ms", c.request_timeout_ms.to_string()),
        (
            "--anti-entropy-ms",
            c.node.anti_entropy_interval_ms.to_string(),
        ),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_owned(), v])
    .collect();
    for (flag, on) in [
        ("--strict-quorum", !c.node.sloppy_quorum),
        ("--no-read-repair", !c.node.read_repair),
        ("--no-hinted-handoff", !c.node.hinted_handoff),
        ("--no-anti-entropy", !c.node.anti_entropy),
    ] {
        if on {
            args.push(flag.to_owned());
        }
    }
    if let Some(bug) = c.bug {
        args.push("--bug".to_owned());
        args.push(bug.to_string());
    }
    args
}

/// Bytes of a live run's cluster secret, from OS entropy (written as hex).
pub const LIVE_SECRET_BYTES: usize = 32;

/// Makes a new cluster secret for a run's nodes in `DIR/cluster-secret`, readable by its owner
/// only, and returns its path and the secret.
fn make_secret(dir: &Path) -> Result<(PathBuf, Secret), String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; LIVE_SECRET_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for the cluster secret: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("cluster-secret");
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{hex}\n").as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let secret = Secret::from_file(&path)?;
    Ok((path, secret))
}

/// An admin client of a node (statuses and raw replica states are admin verbs).
fn admin(env: &TokioEnv, addr: &str, timeout_ms: u64, auth: &AuthConfig) -> Client<TokioEnv> {
    let client = Client::new(env.clone(), addr.to_owned()).with_timeout_ms(timeout_ms);
    match &auth.cluster_secret {
        Some(secret) => client.with_auth(ClientAuth::admin(Some(secret.clone()))),
        None => client,
    }
}

/// Starts the cluster of the plan under `dir`: the proxy, then every node, with a new cluster
/// secret.
fn start_cluster(plan: &Plan, dir: &Path) -> Result<(Cluster, Vec<String>, AuthConfig), String> {
    let c = &plan.config;
    let (secret_file, secret) = make_secret(dir)?;
    let ports = pick_ports(c.nodes)?;
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let proxy = proxy::Proxy::start(&addrs).map_err(|e| format!("cannot start the proxy: {e}"))?;
    let names = c.node_names();
    let options = serve_options(c);
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let peers: Vec<String> = (0..c.nodes)
            .filter(|&j| j != i)
            .map(|j| format!("{}=127.0.0.1:{}", names[j], proxy.ports[i][j]))
            .collect();
        let mut args = vec![
            "--id".to_owned(),
            name.clone(),
            "--listen".to_owned(),
            addrs[i].to_string(),
        ];
        if !peers.is_empty() {
            args.push("--peers".to_owned());
            args.push(peers.join(","));
        }
        args.extend(options.iter().cloned());
        args.push("--cluster-secret-file".to_owned());
        args.push(secret_file.display().to_string());
        let node_dir = dir.join("nodes").join(name);
        let mut node = NodeProc::new(
            name.clone(),
            addrs[i].to_string(),
            args,
            node_dir.join("data"),
            node_dir.join("log"),
        );
        node.spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        nodes.push(node);
    }
    let client_addrs = addrs.iter().map(|a| a.to_string()).collect();
    let cluster = Cluster {
        nodes,
        links: Some(proxy.links.clone()),
        proxy: Some(proxy),
    };
    let auth = AuthConfig {
        cluster_secret: Some(secret),
        client_token: None,
    };
    Ok((cluster, client_addrs, auth))
}

/// Runs the plan against the cluster; every process is stopped before it returns.
fn run(
    plan: &Plan,
    dir: &Path,
    time_limit: Duration,
    external: Option<(Vec<String>, AuthConfig)>,
) -> Result<LiveRun, String> {
    procs::install_panic_hook();
    let (mut cluster, addrs, auth) = match external {
        Some((addrs, auth)) => (
            Cluster {
                nodes: Vec::new(),
                links: None,
                proxy: None,
            },
            addrs,
            auth,
        ),
        None => start_cluster(plan, dir)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(
        &runtime,
        drive(plan, &mut cluster, addrs.clone(), time_limit, &auth),
    );
    // Every process stops here, whatever happened.
    cluster.nodes.clear();
    cluster.proxy.take();
    let (output, mut meta, interrupted, client_s, skipped, unexpected_exits) = result?;
    meta["addrs"] = json!(addrs);
    meta["dir"] = json!(dir.display().to_string());
    Ok(LiveRun {
        output,
        meta,
        skipped,
        unexpected_exits,
        interrupted,
        client_s,
    })
}

type Driven = (
    RunOutput,
    serde_json::Value,
    bool,
    f64,
    Vec<String>,
    Vec<String>,
);

async fn drive(
    plan: &Plan,
    cluster: &mut Cluster,
    addrs: Vec<String>,
    time_limit: Duration,
    auth: &AuthConfig,
) -> Result<Driven, String> {
    let c = Rc::new(plan.config.clone());
    let env = TokioEnv::default();
    wait_ready(cluster, &addrs, &env, auth).await?;
    let clock = LiveClock {
        start: Instant::now(),
    };
    let recorder = Rc::new(RefCell::new(Recorder::new()));
    let mut config_value = serde_json::to_value(&*c).expect("config serialises");
    config_value["history_format"] = json!(HISTORY_FORMAT);
    config_value["node_names"] = json!(c.node_names());
    config_value["tombstone_gc"] = json!(false);
    config_value["runner"] = json!("live");
    recorder.borrow_mut().record(
        clock.now_ns(),
        Process::Harness,
        "info",
        "config",
        &json!({"value": config_value}),
    );
    let progress = Rc::new(Progress::default());
    let shared = Rc::new(Shared {
        config: c.clone(),
        recorder: recorder.clone(),
        progress: progress.clone(),
        env: env.clone(),
        clock,
        addrs: addrs.clone(),
        wait_on_refusals: true,
    });

    // Ctrl-C: the first stops the clients (then the run heals and writes what it has); a second
    // kills every node and exits.
    let interrupted = Rc::new(Cell::new(false));
    {
        let interrupted = interrupted.clone();
        tokio::task::spawn_local(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("dynamo live: interrupted: healing and stopping (Ctrl-C again to kill)");
                interrupted.set(true);
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                procs::kill_all_registered();
                std::process::exit(130);
            }
        });
    }

    let stop = Rc::new(Cell::new(false));
    let mut per_client: Vec<Vec<ClientOp>> = vec![Vec::new(); c.clients];
    for op in &plan.ops {
        per_client[op.client as usize].push(*op);
    }
    let running = Rc::new(Cell::new(c.clients));
    let mut last_process = 0;
    let mut handles = Vec::new();
    for (slot, ops) in per_client.into_iter().enumerate() {
        let mut worker = Worker::new(slot as u64, slot as u64, shared.clone());
        let stop = stop.clone();
        let running = running.clone();
        handles.push(tokio::task::spawn_local(async move {
            for op in &ops {
                if stop.get() {
                    break;
                }
                worker.run_op(op).await;
            }
            running.set(running.get() - 1);
            worker.process()
        }));
    }
    let mut nemesis = live_nemesis(plan, recorder.clone(), clock, progress.clone());
    let client_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(NEMESIS_TICK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while running.get() > 0 {
        tick.tick().await;
        if interrupted.get() || client_start.elapsed() >= time_limit {
            stop.set(true);
        }
        nemesis.step(cluster)?;
    }
    for handle in handles {
        last_process = last_process.max(handle.await.map_err(|e| format!("a client failed: {e}"))?);
    }
    let client_s = client_start.elapsed().as_secs_f64();
    nemesis.heal(cluster)?;
    recorder.borrow_mut().record(
        clock.now_ns(),
        Process::Harness,
        "info",
        "phase",
        &json!({"value": "heal"}),
    );
    let interrupted_now = interrupted.get();
    if !interrupted_now {
        // The quiesce ends once the cluster is at rest (every replica agrees, nothing left to
        // move), or after `quiesce_ms`: the rule of the simulator (dynamo_workloads::rest).
        let healed_at = Instant::now();
        let quiet_until = healed_at + Duration::from_millis(c.quiesce_ms);
        let mut admins: Vec<_> = addrs
            .iter()
            .map(|addr| admin(&env, addr, c.client_timeout_ms, auth))
            .collect();
        let mut rest = Rest::default();
        while Instant::now() < quiet_until && !interrupted.get() {
            tokio::time::sleep(Duration::from_millis(CONVERGENCE_PROBE_MS)).await;
            nemesis.after_heal(cluster)?;
            if c.quiesce_until_rest {
                let round = status_round(&mut admins).await;
                let now_ms = healed_at.elapsed().as_millis() as u64;
                if rest.observe(now_ms, round.as_deref(), c.n) {
                    break;
                }
            }
        }
        nemesis.after_heal(cluster)?;
        recorder.borrow_mut().record(
            clock.now_ns(),
            Process::Harness,
            "info",
            "phase",
            &json!({"value": "final"}),
        );
        let finals = final_phase(&shared, last_process, auth);
        tokio::time::timeout(Duration::from_millis(FINAL_PHASE_MS_MAX), finals)
            .await
            .map_err(|_| "the final reads did not finish in time".to_string())?;
    }
    let recorder_now = recorder.borrow();
    let summary = RunSummary::of(&recorder_now, nemesis.opened, clock.ms());
    let output = RunOutput {
        history: recorder_now.bytes().to_vec(),
        summary,
    };
    let meta = json!({
        "runner": "live",
        "client_s": client_s,
        "interrupted": interrupted.get(),
        "skipped": nemesis.skipped,
        "unexpected_exits": nemesis.env().unexpected_exits,
        "nodes": cluster
            .nodes
            .iter()
            .map(|n| json!({"id": n.id, "listen": n.listen, "log": n.log, "data": n.data_dir}))
            .collect::<Vec<_>>(),
    });
    Ok((
        output,
        meta,
        interrupted.get(),
        client_s,
        nemesis.skipped.clone(),
        nemesis.env().unexpected_exits.clone(),
    ))
}

/// Waits until every node answers its status (and, for the nodes the harness started, fails
/// early with the log of one that exited).
async fn wait_ready(
    cluster: &mut Cluster,
    addrs: &[String],
    env: &TokioEnv,
    auth: &AuthConfig,
) -> Result<(), String> {
    let start = Instant::now();
    for (i, addr) in addrs.iter().enumerate() {
        let mut admin = admin(env, addr, 1_000, auth);
        loop {
            if admin.status().await.is_ok() {
                break;
            }
            if let Some(node) = cluster.nodes.get_mut(i)
                && let Some(status) = node.exited()
            {
                return Err(format!(
                    "{} exited at start ({status}); its log ends:\n{}",
                    node.id,
                    node.log_tail(10)
                ));
            }
            if start.elapsed() > Duration::from_millis(STARTUP_TIMEOUT_MS) {
                return Err(format!(
                    "{addr} did not answer within {STARTUP_TIMEOUT_MS} ms"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// After the quiesce: a quorum read of every key, then every replica's raw state of every key
/// under the newest ring any node knows (the simulator's final phase, on real connections).
async fn final_phase<C: HistoryClock>(
    shared: &Rc<Shared<TokioEnv, C>>,
    last_process: u64,
    auth: &AuthConfig,
) {
    let c = shared.config.clone();
    final_reads(shared, last_process).await;
    // Read repair goes out after a read's answer: let it land.
    tokio::time::sleep(Duration::from_millis(2 * c.request_timeout_ms)).await;
    let ring = newest_ring(shared, auth).await;
    let names = c.node_names();
    let admins = names.iter().enumerate().map(|(i, node)| {
        let keys: Vec<String> = (0..c.keys as u32)
            .map(|k| c.key_name(k))
            .filter(|name| {
                ring.preference_list(name.as_bytes(), c.n)
                    .iter()
                    .any(|n| n == node)
            })
            .collect();
        let mut admin = admin(&shared.env, &shared.addrs[i], c.client_timeout_ms, auth);
        let shared = shared.clone();
        let node = node.clone();
        async move {
            let (recorder, clock) = (&shared.recorder, &shared.clock);
            record_replica_states(&mut admin, &node, &keys, recorder, clock).await;
        }
    });
    futures::future::join_all(admins).await;
}

/// The newest ring any node knows.
async fn newest_ring<C: HistoryClock>(shared: &Shared<TokioEnv, C>, auth: &AuthConfig) -> Ring {
    let c = &shared.config;
    let weights: BTreeMap<NodeId, u32> =
        c.node_names().into_iter().map(|n| (n.into(), 1)).collect();
    let mut ring = Ring::new(c.partitions, &weights);
    for addr in &shared.addrs {
        let mut admin = admin(&shared.env, addr, c.client_timeout_ms, auth);
        if let Ok(status) = admin.status().await
            && status.ring.version() > ring.version()
        {
            ring = status.ring;
        }
    }
    ring
}
