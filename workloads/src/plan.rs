//! The plan: everything a simulation run will do, expanded from a seed before it starts.
//!
//! A [`Plan`] holds the whole configuration ([`SimConfig`]), every client operation in order per
//! client, and the fault schedule with simulated times. It is serialised as `plan.json`, so a run
//! can be replayed from that file alone (`dynamo replay`) and shrunk by editing or simplifying it.
//! The expansion goes through proptest strategies driven by a ChaCha RNG seeded from the run's seed,
//! so the same seed gives the same plan on every machine, and proptest's value trees can later
//! shrink it.

use dynamo_node::config::{Bug, FsyncPolicy};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The client workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// The paper's shopping cart: read, merge siblings by union, add one item, put with the context.
    Cart,
    /// Unique values, some blind, some with the context of an earlier read; reads; deletes.
    Register,
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cart" => Ok(Workload::Cart),
            "register" => Ok(Workload::Register),
            _ => Err(format!("unknown workload {s:?}: cart or register")),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Cart => "cart",
            Workload::Register => "register",
        })
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf-skewed: key i (from 0) has weight 1 / (i+1)^exponent; a few hot keys.
    Zipf {
        /// The skew; 1.0 is classic Zipf.
        exponent: f64,
    },
}

/// A kind of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    /// Network partitions of several shapes.
    Partition,
    /// A node crashes (losing unsynced writes) and restarts.
    Crash,
    /// A node loses its disk and restarts empty.
    Wipe,
    /// A node's wall clock jumps.
    Skew,
    /// Random message loss on every link.
    Loss,
    /// Slow links.
    Slow,
    /// A node leaves the ring (its data moves to the new owners) and later joins again.
    Membership,
}

impl NemesisKind {
    /// Every kind, in order.
    pub const ALL: [NemesisKind; 7] = [
        NemesisKind::Partition,
        NemesisKind::Crash,
        NemesisKind::Wipe,
        NemesisKind::Skew,
        NemesisKind::Loss,
        NemesisKind::Slow,
        NemesisKind::Membership,
    ];

    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Partition => "partition",
            NemesisKind::Crash => "crash",
            NemesisKind::Wipe => "wipe",
            NemesisKind::Skew => "skew",
            NemesisKind::Loss => "loss",
            NemesisKind::Slow => "slow",
            NemesisKind::Membership => "membership",
        }
    }

    /// Parses `--nemesis`: a comma-separated list of kinds, `all`, or `none`.
    pub fn parse_list(s: &str) -> Result<Vec<NemesisKind>, String> {
        match s.trim() {
            "none" | "" => return Ok(Vec::new()),
            "all" => return Ok(NemesisKind::ALL.to_vec()),
            _ => {}
        }
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim) {
            let kind = NemesisKind::ALL
                .into_iter()
                .find(|k| k.name() == part)
                .ok_or_else(|| {
                    format!(
                        "unknown nemesis {part:?}: use partition, crash, wipe, skew, loss, slow, membership, all or none"
                    )
                })?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds.sort();
        Ok(kinds)
    }
}

/// The nodes' availability machinery, each switchable so that tests can isolate one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeOptions {
    /// Sloppy quorum with stand-ins (off: strict quorum).
    pub sloppy_quorum: bool,
    /// Hand hinted writes over to their owners.
    pub hinted_handoff: bool,
    /// Read repair.
    pub read_repair: bool,
    /// Merkle-tree anti-entropy.
    pub anti_entropy: bool,
    /// Time between a node's anti-entropy rounds.
    pub anti_entropy_interval_ms: u64,
}

impl NodeOptions {
    /// Sets these switches in a node's configuration (the one place that maps them, for the
    /// simulator and for `dynamo serve`).
    pub fn apply(&self, config: &mut dynamo_node::config::NodeConfig) {
        config.sloppy_quorum = self.sloppy_quorum;
        config.hinted_handoff = self.hinted_handoff;
        config.read_repair = self.read_repair;
        config.anti_entropy = self.anti_entropy;
        config.anti_entropy_interval_ms = self.anti_entropy_interval_ms;
    }
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            sloppy_quorum: true,
            hinted_handoff: true,
            read_repair: true,
            anti_entropy: true,
            anti_entropy_interval_ms: dynamo_node::config::ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
        }
    }
}

/// Everything that configures a run, and nothing that is derived from the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The seed: fixes the plan, every latency and every random draw.
    pub seed: u64,
    /// Number of nodes (`n1`..).
    pub nodes: usize,
    /// Concurrent client processes.
    pub clients: usize,
    /// Client operations to plan (a cart update counts once, though it is a read and a put).
    pub ops: usize,
    /// Number of keys.
    pub keys: usize,
    /// How keys are chosen.
    pub key_dist: KeyDist,
    /// The workload.
    pub workload: Workload,
    /// Fault kinds the nemesis mixes.
    pub nemesis: Vec<NemesisKind>,
    /// Replicas per key.
    pub n: usize,
    /// Read quorum.
    pub r: usize,
    /// Write quorum.
    pub w: usize,
    /// Partitions of the ring.
    pub partitions: u32,
    /// The nodes' fsync policy.
    pub fsync: FsyncPolicy,
    /// A deliberate bug in every node.
    pub bug: Option<Bug>,
    /// Deadline of a request at its coordinator.
    pub request_timeout_ms: u64,
    /// Deadline of a request at the client (past it the op is `info`).
    pub client_timeout_ms: u64,
    /// Network latency bounds of a healthy link.
    pub latency_ms_min: u64,
    /// See `latency_ms_min`.
    pub latency_ms_max: u64,
    /// Longest pause of a client between two operations.
    pub think_ms_max: u64,
    /// Simulated time the healed cluster is left alone before the final reads.
    pub quiesce_ms: u64,
    /// Mean healthy time between two faults.
    pub fault_gap_ms: u64,
    /// Mean duration of a fault.
    pub fault_duration_ms: u64,
    /// The nodes' availability machinery.
    #[serde(default)]
    pub node: NodeOptions,
    /// After the heal, poll every replica until they agree and report how long that took.
    #[serde(default)]
    pub measure_convergence: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            nodes: 5,
            clients: 8,
            ops: 2_000,
            keys: 20,
            key_dist: KeyDist::Zipf { exponent: 1.0 },
            workload: Workload::Cart,
            nemesis: NemesisKind::ALL.to_vec(),
            n: 3,
            r: 2,
            w: 2,
            partitions: 64,
            fsync: FsyncPolicy::Always,
            bug: None,
            request_timeout_ms: 500,
            client_timeout_ms: 1_000,
            latency_ms_min: 1,
            latency_ms_max: 5,
            think_ms_max: 20,
            quiesce_ms: 5_000,
            fault_gap_ms: 1_500,
            fault_duration_ms: 2_000,
            node: NodeOptions::default(),
            measure_convergence: false,
        }
    }
}

/// Most nodes a simulation may have.
pub const NODES_MAX: usize = 64;
/// Most client processes.
pub const CLIENTS_MAX: usize = 1_024;
/// Most planned operations.
pub const OPS_MAX: usize = 10_000_000;
/// Most keys.
pub const KEYS_MAX: usize = 1_000_000;

impl SimConfig {
    /// Checks the settings; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes == 0 || self.nodes > NODES_MAX {
            return Err(format!("--nodes must be 1..={NODES_MAX}"));
        }
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(format!("--clients must be 1..={CLIENTS_MAX}"));
        }
        if self.ops > OPS_MAX {
            return Err(format!("--ops must be at most {OPS_MAX}"));
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            return Err(format!("--keys must be 1..={KEYS_MAX}"));
        }
        if self.n == 0 || self.n > self.nodes {
            return Err(format!("N ({}) must be 1..=nodes ({})", self.n, self.nodes));
        }
        if self.r == 0 || self.r > self.n || self.w == 0 || self.w > self.n {
            return Err(format!(
                "R ({}) and W ({}) must be 1..=N ({})",
                self.r, self.w, self.n
            ));
        }
        if self.node.anti_entropy_interval_ms == 0 {
            return Err("the anti-entropy interval must be positive".into());
        }
        if self.latency_ms_min > self.latency_ms_max {
            return Err("latency min exceeds max".into());
        }
        if let KeyDist::Zipf { exponent } = self.key_dist
            && !(exponent.is_finite() && exponent > 0.0)
        {
            return Err("the Zipf exponent must be positive".into());
        }
        Ok(())
    }

    /// Node names, `n1`..
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }

    /// Key names, `cart-0`.. or `reg-0`..
    pub fn key_name(&self, key: u32) -> String {
        match self.workload {
            Workload::Cart => format!("cart-{key}"),
            Workload::Register => format!("reg-{key}"),
        }
    }
}

/// What one planned client operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// A quorum read.
    Read,
    /// Cart: read, merge by union, add an item, put with the read's context.
    /// Register: put with the context of this client's last read of the key (blind if none).
    Update,
    /// Register: a put with no context.
    BlindPut,
    /// Register: delete what this client's last read of the key returned.
    Delete,
}

/// One client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOp {
    /// Which client runs it (0-based slot).
    pub client: u32,
    /// Which key (index).
    pub key: u32,
    /// What it does.
    pub kind: OpKind,
    /// The node it is sent to (index).
    pub node: u32,
    /// Pause before it, ms.
    pub think_ms: u32,
}

/// A fault the nemesis injects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    /// Nodes in different groups cannot talk; `oneway` cuts only from the first group to the rest.
    Partition {
        /// Node indexes per side.
        groups: Vec<Vec<u32>>,
        /// The shape, for humans: halves, isolate, majority, bridge, oneway.
        shape: String,
        /// Only messages from `groups[0]` to the others are dropped.
        oneway: bool,
    },
    /// The node crashes; it restarts when the fault ends.
    Crash {
        /// The node index.
        node: u32,
    },
    /// The node crashes and loses its disk; it restarts empty when the fault ends.
    Wipe {
        /// The node index.
        node: u32,
    },
    /// The node's wall clock jumps by `by_ms`; it returns when the fault ends.
    Skew {
        /// The node index.
        node: u32,
        /// The jump.
        by_ms: i64,
    },
    /// Every link drops messages with this probability per ms.
    Loss {
        /// Per-ms probability that a link fails, in millionths (kept integral for exact replays).
        rate_ppm: u32,
    },
    /// The node leaves the ring; it joins again when the fault ends.
    Leave {
        /// The node index.
        node: u32,
    },
    /// Every link's latency rises to this maximum.
    Slow {
        /// The new maximum latency.
        latency_ms_max: u64,
    },
}

/// A fault and when it is active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// When it starts, ms of simulated time.
    pub start_ms: u64,
    /// When it is healed.
    pub stop_ms: u64,
    /// What.
    pub fault: Fault,
}

/// A run, fully expanded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format version of plan.json.
    pub version: u32,
    /// The configuration.
    pub config: SimConfig,
    /// Client operations; each client runs its own in this order.
    pub ops: Vec<ClientOp>,
    /// Faults, ordered by start, never overlapping.
    pub faults: Vec<FaultWindow>,
}

/// The plan.json format version.
pub const PLAN_VERSION: u32 = 1;

impl Plan {
    /// Expands a configuration into a plan, deterministically from its seed.
    pub fn generate(config: SimConfig) -> Result<Plan, String> {
        config.validate()?;
        let mut runner = runner_for(config.seed);
        let tree = plan_strategy(&config)
            .new_tree(&mut runner)
            .map_err(|e| format!("cannot generate a plan: {e}"))?;
        let (ops, faults) = tree.current();
        Ok(Plan {
            version: PLAN_VERSION,
            config,
            ops,
            faults,
        })
    }

    /// Reads and checks a plan.json.
    pub fn from_json(text: &str) -> Result<Plan, String> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| format!("bad plan: {e}"))?;
        if plan.version != PLAN_VERSION {
            return Err(format!(
                "plan version {} is not {PLAN_VERSION}",
                plan.version
            ));
        }
        plan.config.validate()?;
        plan.validate()?;
        Ok(plan)
    }

    /// Checks that ops and faults refer to existing clients, keys and nodes.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.config;
        for (i, op) in self.ops.iter().enumerate() {
            if op.client as usize >= c.clients
                || op.key as usize >= c.keys
                || op.node as usize >= c.nodes
            {
                return Err(format!(
                    "op {i} names a client, key or node outside the configuration"
                ));
            }
        }
        let mut end = 0;
        for (i, w) in self.faults.iter().enumerate() {
            if w.start_ms < end || w.stop_ms < w.start_ms {
                return Err(format!(
                    "fault {i} overlaps the previous one or ends before it starts"
                ));
            }
            end = w.stop_ms;
            let nodes: Vec<u32> = match &w.fault {
                Fault::Partition { groups, .. } => groups.iter().flatten().copied().collect(),
                Fault::Crash { node }
                | Fault::Wipe { node }
                | Fault::Skew { node, .. }
                | Fault::Leave { node } => vec![*node],
                Fault::Loss { .. } | Fault::Slow { .. } => vec![],
            };
            if nodes.iter().any(|&n| n as usize >= c.nodes) {
                return Err(format!("fault {i} names a node outside the configuration"));
            }
        }
        Ok(())
    }

    /// A rough length of the client phase in simulated ms, to spread faults over it.
    pub fn expected_duration_ms(config: &SimConfig) -> u64 {
        expected_duration_ms(config)
    }
}

fn runner_for(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(b"dynamo-p");
    TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

fn expected_duration_ms(c: &SimConfig) -> u64 {
    let per_client = (c.ops as u64).div_ceil(c.clients as u64);
    // A cart update is two round trips; each costs a few latencies.
    let op_ms = c.think_ms_max / 2 + 4 * c.latency_ms_max + 1;
    (per_client * op_ms).max(1_000)
}

/// The cumulative weights of a Zipf distribution over `keys`, scaled to u32.
fn zipf_cdf(keys: usize, exponent: f64) -> Vec<u32> {
    let weights: Vec<f64> = (0..keys)
        .map(|i| 1.0 / ((i + 1) as f64).powf(exponent))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            (acc.min(1.0) * u32::MAX as f64) as u32
        })
        .collect()
}

fn key_strategy(c: &SimConfig) -> BoxedStrategy<u32> {
    let keys = c.keys as u32;
    match c.key_dist {
        KeyDist::Uniform => (0..keys).boxed(),
        KeyDist::Zipf { exponent } => {
            let cdf = zipf_cdf(c.keys, exponent);
            any::<u32>()
                .prop_map(move |u| cdf.partition_point(|&x| x < u).min(cdf.len() - 1) as u32)
                .boxed()
        }
    }
}

fn kind_strategy(w: Workload) -> BoxedStrategy<OpKind> {
    match w {
        Workload::Cart => prop_oneof![1 => Just(OpKind::Read), 3 => Just(OpKind::Update)].boxed(),
        Workload::Register => prop_oneof![
            3 => Just(OpKind::Read),
            3 => Just(OpKind::Update),
            2 => Just(OpKind::BlindPut),
            1 => Just(OpKind::Delete),
        ]
        .boxed(),
    }
}

fn op_strategy(c: &SimConfig) -> impl Strategy<Value = ClientOp> + use<> {
    (
        0..c.clients as u32,
        key_strategy(c),
        kind_strategy(c.workload),
        0..c.nodes as u32,
        0..=c.think_ms_max as u32,
    )
        .prop_map(|(client, key, kind, node, think_ms)| ClientOp {
            client,
            key,
            kind,
            node,
            think_ms,
        })
}

/// A partition of `nodes` node indexes in one of the shapes Jepsen uses.
fn partition_strategy(nodes: usize) -> BoxedStrategy<Fault> {
    let all: Vec<u32> = (0..nodes as u32).collect();
    (Just(all).prop_shuffle(), 0..5u8)
        .prop_map(move |(order, shape)| {
            let half = nodes / 2;
            let (groups, name, oneway) = match shape {
                // Random halves.
                0 => (
                    vec![order[..half].to_vec(), order[half..].to_vec()],
                    "halves",
                    false,
                ),
                // One node alone.
                1 => (
                    vec![order[..1].to_vec(), order[1..].to_vec()],
                    "isolate",
                    false,
                ),
                // A majority and a minority, the minority as small as it gets.
                2 => {
                    let minority = (nodes - 1) / 2;
                    let groups = vec![
                        order[..minority.max(1)].to_vec(),
                        order[minority.max(1)..].to_vec(),
                    ];
                    (groups, "majority", false)
                }
                // A bridge: two sides that cannot talk, and one node that talks to both. Modelled as
                // two partitions sharing the bridge node.
                3 => {
                    let bridge = order[0];
                    let rest = &order[1..];
                    let (a, b) = rest.split_at(rest.len() / 2);
                    let mut a = a.to_vec();
                    a.insert(0, bridge);
                    let mut b = b.to_vec();
                    b.insert(0, bridge);
                    (vec![a, b], "bridge", false)
                }
                // One-way: the first group's messages to the others are lost.
                _ => (
                    vec![order[..half.max(1)].to_vec(), order[half.max(1)..].to_vec()],
                    "oneway",
                    true,
                ),
            };
            Fault::Partition {
                groups,
                shape: name.to_string(),
                oneway,
            }
        })
        .boxed()
}

fn fault_strategy(c: &SimConfig) -> Option<BoxedStrategy<Fault>> {
    let nodes = c.nodes as u32;
    // Wipes are confined to the first W-1 nodes: a W quorum promises to survive W-1 lost disks,
    // not more (anti-entropy restores the replication factor, but with no bound on when).
    let wipeable = (c.w as u32).saturating_sub(1).max(1).min(nodes);
    let mut choices: Vec<BoxedStrategy<Fault>> = Vec::new();
    for kind in &c.nemesis {
        choices.push(match kind {
            NemesisKind::Partition => partition_strategy(c.nodes),
            NemesisKind::Crash => (0..nodes).prop_map(|node| Fault::Crash { node }).boxed(),
            NemesisKind::Wipe => (0..wipeable).prop_map(|node| Fault::Wipe { node }).boxed(),
            NemesisKind::Skew => (0..nodes, -60_000i64..60_000)
                .prop_map(|(node, by_ms)| Fault::Skew { node, by_ms })
                .boxed(),
            NemesisKind::Loss => (1_000u32..50_000)
                .prop_map(|rate_ppm| Fault::Loss { rate_ppm })
                .boxed(),
            NemesisKind::Slow => (20u64..300)
                .prop_map(|latency_ms_max| Fault::Slow { latency_ms_max })
                .boxed(),
            // Leaving needs a node to spare: the rest must still make N replicas.
            NemesisKind::Membership if c.nodes > c.n => {
                (0..nodes).prop_map(|node| Fault::Leave { node }).boxed()
            }
            NemesisKind::Membership => continue,
        });
    }
    (!choices.is_empty()).then(|| proptest::strategy::Union::new(choices).boxed())
}

fn faults_strategy(c: &SimConfig) -> BoxedStrategy<Vec<FaultWindow>> {
    let Some(faults) = fault_strategy(c) else {
        return Just(Vec::new()).boxed();
    };
    let horizon_ms = expected_duration_ms(c);
    let gap = c.fault_gap_ms.max(1);
    let dur = c.fault_duration_ms.max(1);
    // Enough windows to cover the horizon; those past it are dropped.
    let count = (horizon_ms / (gap + dur) + 1) as usize;
    let window = (gap / 2..=gap * 3 / 2, dur / 2..=dur * 3 / 2, faults);
    proptest::collection::vec(window, count)
        .prop_map(move |windows| {
            let mut t = 0;
            let mut out = Vec::new();
            for (gap_ms, duration_ms, fault) in windows {
                let start_ms = t + gap_ms;
                if start_ms >= horizon_ms {
                    break;
                }
                let stop_ms = start_ms + duration_ms;
                out.push(FaultWindow {
                    start_ms,
                    stop_ms,
                    fault,
                });
                t = stop_ms;
            }
            out
        })
        .boxed()
}

fn plan_strategy(
    c: &SimConfig,
) -> impl Strategy<Value = (Vec<ClientOp>, Vec<FaultWindow>)> + use<> {
    (
        proptest::collection::vec(op_strategy(c), c.ops),
        faults_strategy(c),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let config = SimConfig {
            seed: 7,
            ops: 200,
            ..SimConfig::default()
        };
        let a = Plan::generate(config.clone()).unwrap();
        let b = Plan::generate(config.clone()).unwrap();
        assert_eq!(a, b);
        let c = Plan::generate(SimConfig { seed: 8, ..config }).unwrap();
        assert_ne!(a.ops, c.ops);
    }

    #[test]
    fn plans_round_trip_through_json_and_validate() {
        let plan = Plan::generate(SimConfig {
            ops: 1_000,
            ..SimConfig::default()
        })
        .unwrap();
        assert!(
            !plan.faults.is_empty(),
            "the default nemesis injects faults"
        );
        let text = serde_json::to_string_pretty(&plan).unwrap();
        assert_eq!(Plan::from_json(&text).unwrap(), plan);
        let mut bad = plan.clone();
        bad.ops[0].node = 99;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(Plan::from_json(&text).unwrap_err().contains("op 0"));
        assert!(Plan::from_json("{").is_err());
    }

    #[test]
    fn zipf_keys_are_skewed_to_the_first() {
        let plan = Plan::generate(SimConfig {
            ops: 2_000,
            keys: 20,
            ..SimConfig::default()
        })
        .unwrap();
        let hot = plan.ops.iter().filter(|o| o.key == 0).count();
        let cold = plan.ops.iter().filter(|o| o.key == 19).count();
        assert!(hot > 5 * cold.max(1), "hot {hot} cold {cold}");
    }

    #[test]
    fn nemesis_lists_parse() {
        assert_eq!(NemesisKind::parse_list("none").unwrap(), vec![]);
        assert_eq!(NemesisKind::parse_list("all").unwrap().len(), 7);
        assert_eq!(
            NemesisKind::parse_list("crash,partition").unwrap(),
            vec![NemesisKind::Partition, NemesisKind::Crash]
        );
        assert!(NemesisKind::parse_list("flood").is_err());
        assert_eq!(
            NemesisKind::parse_list("membership").unwrap(),
            vec![NemesisKind::Membership]
        );
    }
}
