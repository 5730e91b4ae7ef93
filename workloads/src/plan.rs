//! The plan: everything a simulation run will do, expanded from a seed before it starts.
//!
//! A [`Plan`] holds the whole configuration ([`SimConfig`]), every client operation in order per
//! client, and the fault schedule. It is serialised as `plan.json`, which is the source of truth of
//! a run: `dynamo replay` runs it again from that file alone, and `dynamo shrink` edits it. A seed
//! is expanded into a plan by [`crate::generate`] (the project's own generator on SplitMix64, named
//! in [`Plan::generator`]), so the same seed gives the same plan on every machine and with every
//! version of the crates around us.
//!
//! # Fault windows
//!
//! A fault is a [`FaultWindow`]: what ([`Fault`]), when it starts ([`Start`]: after so many client
//! operations completed, at a simulated time, or after so many operations of one client), and how
//! long it lasts. Windows are independent
//! and may overlap (a crash during a partition, two nodes down at once). Starting windows by
//! operation count, not by time, spreads them over the client phase as it really runs: a run whose
//! clients are faster or slower than expected still meets every fault. A shrunk plan pins its
//! windows to one client's operations instead ([`Start::ClientOps`]): "after the ack of p0-1".
//!
//! # Format versions
//!
//! `version` 2 is this file's format. A version 1 plan (fault windows with `start_ms`/`stop_ms`,
//! expanded by the proptest-based generator of the first releases) still parses and replays: its
//! windows become windows that start at a time. Its seed, given to `dynamo sim --seed`, expands to
//! a different plan today; its plan.json, not its seed, reproduces it.

use crate::latency::LatencyModel;
use dynamo_node::config::{Bug, FsyncPolicy, parse_variant};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The client workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Workload {
    /// The paper's shopping cart: read, merge siblings by union, add one item, put with the context.
    Cart,
    /// Unique values, some blind, some with the context of an earlier read; reads; deletes.
    Register,
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_variant(s, "workload")
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
    /// The shopping carts of Dynamo's §6.3: most carts have one writer, a few are shared. The
    /// first [`OWNED_HOT_KEYS`] keys are hot, chosen by anyone [`OWNED_HOT_PERCENT`]% of the time;
    /// every other key belongs to one client (key k to client (k - hot) mod clients), which picks
    /// uniformly among its own the rest of the time.
    Owners,
}

/// `KeyDist::Owners`: how many hot keys every client shares.
pub const OWNED_HOT_KEYS: usize = 4;
/// `KeyDist::Owners`: the share of operations, in percent, on a hot key.
pub const OWNED_HOT_PERCENT: u64 = 2;

/// A kind of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum NemesisKind {
    /// Network partitions of several shapes.
    Partition,
    /// A node crashes (losing unsynced writes) and restarts; half of them hit the node that just
    /// stored an acknowledged write.
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
    /// Every node crashes at the same instant (a power cut): unsynced writes are lost everywhere.
    Power,
    /// Storage faults on one node: synced data damaged while it is down (a torn last record, a
    /// flipped byte, a lost file), or I/O errors on its writes or syncs while it runs.
    Disk,
    /// A node's process is stopped (SIGSTOP) and resumed (SIGCONT): on real processes only
    /// (`dynamo live`); the simulator cannot freeze a host and refuses a plan with one.
    Pause,
}

impl NemesisKind {
    /// Every kind, in order.
    pub const ALL: [NemesisKind; 9] = [
        NemesisKind::Partition,
        NemesisKind::Crash,
        NemesisKind::Wipe,
        NemesisKind::Skew,
        NemesisKind::Loss,
        NemesisKind::Slow,
        NemesisKind::Membership,
        NemesisKind::Power,
        NemesisKind::Disk,
    ];

    /// Every kind `dynamo live` injects on the processes it starts (`--nemesis all` there): no
    /// skew (a real process's clock cannot be moved), pauses added.
    pub const LIVE: [NemesisKind; 9] = [
        NemesisKind::Partition,
        NemesisKind::Crash,
        NemesisKind::Wipe,
        NemesisKind::Loss,
        NemesisKind::Slow,
        NemesisKind::Membership,
        NemesisKind::Power,
        NemesisKind::Disk,
        NemesisKind::Pause,
    ];

    /// The kind's name on the command line.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Parses `--nemesis`: a comma-separated list of kinds, `all` (every kind of
    /// [`NemesisKind::ALL`]), or `none`.
    pub fn parse_list(s: &str) -> Result<Vec<NemesisKind>, String> {
        NemesisKind::parse_list_with(s, &NemesisKind::ALL)
    }

    /// Parses `--nemesis` where `all` means the kinds of `all`.
    pub fn parse_list_with(s: &str, all: &[NemesisKind]) -> Result<Vec<NemesisKind>, String> {
        match s.trim() {
            "none" | "" => return Ok(Vec::new()),
            "all" => return Ok(all.to_vec()),
            _ => {}
        }
        let mut kinds = Vec::new();
        for part in s.split(',').map(str::trim) {
            let kind: NemesisKind =
                parse_variant(part, "nemesis").map_err(|e| format!("{e}; or all, or none"))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        kinds.sort();
        Ok(kinds)
    }
}

/// The nodes' availability machinery: the node crate's, so that `dynamo serve` and the simulator
/// share one definition (plan.json's `node`).
pub use dynamo_node::config::NodeOptions;

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
    /// Simulated time the healed cluster is left alone before the final reads; at most this long
    /// with `quiesce_until_rest`.
    pub quiesce_ms: u64,
    /// End the quiesce once the cluster is at rest ([`crate::rest`]): every replica agrees and
    /// nothing is left to move. Plans written before this switch lack it and wait the whole
    /// `quiesce_ms`, as they did.
    #[serde(default)]
    pub quiesce_until_rest: bool,
    /// Cart only: every operation is an add (read, union, add one item, put with the context),
    /// as in Jepsen's set test (`--workload set`); off, the cart mix of reads, adds and adds
    /// without a read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adds_only: bool,
    /// Client c sends every operation to node c mod nodes, as Jepsen binds each client to one node
    /// (`--pin-clients`); off, each operation's node is drawn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin_clients: bool,
    /// Mean number of client operations between the starts of two fault windows: the density of
    /// faults. A run with any nemesis has at least one window, however few its operations.
    #[serde(default = "fault_gap_ops_default")]
    pub fault_gap_ops: u64,
    /// Mean duration of a fault window, simulated ms.
    pub fault_duration_ms: u64,
    /// The share of fault windows, in percent, that start together with an earlier one, so that
    /// faults compose (a crash during a partition, two nodes down at once) even when they are
    /// sparse.
    #[serde(default = "fault_overlap_percent_default")]
    pub fault_overlap_percent: u32,
    /// The nodes' availability machinery.
    #[serde(default)]
    pub node: NodeOptions,
    /// After the heal, poll every replica until they agree and report how long that took.
    #[serde(default)]
    pub measure_convergence: bool,
    /// Partitions at fixed times, on top of the drawn faults (`--partition`): for experiments
    /// that need one partition of a known shape and time, as Jepsen's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed_partitions: Vec<FixedPartition>,
    /// Peer messages' latency drawn per message kind from this model (`--latency`,
    /// [`crate::latency`]) instead of turmoil's `latency_ms_min..=latency_ms_max`, which then
    /// applies to nothing but a slow-link fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyModel>,
    /// Register only: the percentage of operations that are plain reads (`--read-percent`); the
    /// rest are updates, blind puts and deletes, 3 : 2 : 1. Absent: reads, updates, blind puts and
    /// deletes 3 : 3 : 2 : 1, as every plan before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_percent: Option<u32>,
    /// Model µs per tick (`--tick-us`), with a latency model only: the simulation steps in ticks
    /// of 1 ms of the nodes' runtime (tokio's timers have no finer grain), and this says how much
    /// of the model's time one tick stands for. Below 1000 the run is a time dilation: a latency
    /// model's delays stretch by `1000 / tick_us` so that sub-millisecond delays stay apart, and
    /// the history's times are model time (ticks × `tick_us`), while every other duration of the
    /// plan (think times, timeouts, quiesce) still counts ticks as ms. No faults then.
    #[serde(
        default = "tick_us_default",
        skip_serializing_if = "is_tick_us_default"
    )]
    pub tick_us: u64,
}

/// The tick of every plan written before `tick_us` existed.
pub const TICK_US_DEFAULT: u64 = 1_000;
/// The finest tick (10 µs of model time): finer multiplies the ticks of a run for no gain the
/// delays can show.
pub const TICK_US_MIN: u64 = 10;

fn tick_us_default() -> u64 {
    TICK_US_DEFAULT
}

fn is_tick_us_default(tick_us: &u64) -> bool {
    *tick_us == TICK_US_DEFAULT
}

/// A partition of the nodes into `groups` from `from_ms` to `until_ms` of simulated time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedPartition {
    /// Node indexes per side; a node on no side keeps all its links.
    pub groups: Vec<Vec<u32>>,
    pub from_ms: u64,
    pub until_ms: u64,
}

impl FixedPartition {
    /// Parses `n1,n2|n3,n4,n5@2s..11s` (sides by `|`, nodes by `,`, then the simulated time span;
    /// durations as `parse_duration` takes them).
    pub fn parse(
        spec: &str,
        parse_duration: impl Fn(&str) -> Result<std::time::Duration, String>,
    ) -> Result<FixedPartition, String> {
        let bad = |why: &str| format!("--partition {spec:?}: {why} (e.g. n1,n2|n3,n4,n5@2s..11s)");
        let (sides, span) = spec
            .split_once('@')
            .ok_or_else(|| bad("no @ before the time span"))?;
        let (from, until) = span
            .split_once("..")
            .ok_or_else(|| bad("the span is not FROM..UNTIL"))?;
        let ms = |s: &str| {
            parse_duration(s.trim())
                .map(|d| d.as_millis() as u64)
                .map_err(|e| bad(&e))
        };
        let groups = sides
            .split('|')
            .map(|side| {
                side.split(',')
                    .map(|n| {
                        let n = n.trim();
                        n.strip_prefix('n')
                            .and_then(|i| i.parse::<u32>().ok())
                            .filter(|&i| i >= 1)
                            .map(|i| i - 1)
                            .ok_or_else(|| bad(&format!("{n:?} is not a node name n1, n2, ...")))
                    })
                    .collect::<Result<Vec<u32>, String>>()
            })
            .collect::<Result<Vec<Vec<u32>>, String>>()?;
        Ok(FixedPartition {
            groups,
            from_ms: ms(from)?,
            until_ms: ms(until)?,
        })
    }

    /// The spec [`FixedPartition::parse`] reads back.
    pub fn spec(&self) -> String {
        let sides: Vec<String> = self
            .groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|n| format!("n{}", n + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        format!(
            "{}@{}ms..{}ms",
            sides.join("|"),
            self.from_ms,
            self.until_ms
        )
    }

    fn validate(&self, nodes: usize) -> Result<(), String> {
        let spec = self.spec();
        if self.groups.len() < 2 || self.groups.iter().any(Vec::is_empty) {
            return Err(format!("--partition {spec}: two sides or more, none empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &n in self.groups.iter().flatten() {
            if n as usize >= nodes {
                return Err(format!(
                    "--partition {spec}: n{} is not one of the {nodes} nodes",
                    n + 1
                ));
            }
            if !seen.insert(n) {
                return Err(format!("--partition {spec}: n{} is on two sides", n + 1));
            }
        }
        if self.from_ms >= self.until_ms || self.until_ms - self.from_ms > FAULT_DURATION_MS_MAX {
            return Err(format!(
                "--partition {spec}: the span must end after it starts, and last at most {FAULT_DURATION_MS_MAX} ms"
            ));
        }
        Ok(())
    }
}

/// Default of [`SimConfig::fault_gap_ops`].
pub const FAULT_GAP_OPS_DEFAULT: u64 = 250;
/// Default of [`SimConfig::fault_overlap_percent`].
pub const FAULT_OVERLAP_PERCENT_DEFAULT: u32 = 30;

fn fault_gap_ops_default() -> u64 {
    FAULT_GAP_OPS_DEFAULT
}

fn fault_overlap_percent_default() -> u32 {
    FAULT_OVERLAP_PERCENT_DEFAULT
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
            quiesce_until_rest: true,
            adds_only: false,
            pin_clients: false,
            fault_gap_ops: FAULT_GAP_OPS_DEFAULT,
            fault_duration_ms: 2_000,
            fault_overlap_percent: FAULT_OVERLAP_PERCENT_DEFAULT,
            node: NodeOptions::default(),
            measure_convergence: false,
            fixed_partitions: Vec::new(),
            latency: None,
            read_percent: None,
            tick_us: TICK_US_DEFAULT,
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
/// Longest fault window, simulated ms (an hour: longer is a configuration mistake).
pub const FAULT_DURATION_MS_MAX: u64 = 3_600_000;
/// Longest quiescence before the final reads, simulated ms (an hour, as a fault window): a plan
/// asking for 2^63 ms with `quiesce_until_rest` off ran until killed.
pub const QUIESCE_MS_MAX: u64 = 3_600_000;
/// Longest pause of a client between two operations, simulated ms (an hour, as a fault window):
/// more makes a run that never ends, not a harder test. Not less: a shrunk plan's timed ops
/// think for the simulated gap since their client's previous kept op, which can be much of a run.
pub const THINK_MS_MAX: u64 = 3_600_000;
/// Longest one-way latency of a healthy link, simulated ms (a minute, as a client's pause).
pub const LATENCY_MS_MAX: u64 = 60_000;

impl SimConfig {
    /// turmoil's latency range for a healthy link, ms: none under a latency model, which delays
    /// the peer messages itself (clients then reach their node in one tick).
    pub fn turmoil_latency_ms(&self) -> (u64, u64) {
        match self.latency {
            Some(_) => (0, 0),
            None => (self.latency_ms_min, self.latency_ms_max),
        }
    }

    /// A typical one-way delay of a peer message in ticks (simulated ms), for estimates: turmoil's
    /// bound, or under a latency model its largest mean (at least 1).
    pub fn message_ms_typical(&self) -> u64 {
        match &self.latency {
            Some(model) => {
                let kinds = [
                    &model.write,
                    &model.ack,
                    &model.read,
                    &model.response,
                    &model.other,
                ];
                let mean_us = kinds
                    .iter()
                    .map(|d| d.mean_us().min(crate::latency::DELAY_US_MAX as f64))
                    .fold(0.0, f64::max);
                (mean_us / self.tick_us as f64).ceil().max(1.0) as u64
            }
            None => self.latency_ms_max,
        }
    }

    /// Checks the settings; the error names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.adds_only && self.workload != Workload::Cart {
            return Err("adds_only (--workload set) is a cart workload".to_owned());
        }
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
        if self.latency_ms_max > LATENCY_MS_MAX {
            return Err(format!("the latency must be at most {LATENCY_MS_MAX} ms"));
        }
        // The nodes' own bounds, checked here so that a plan is refused as a plan, before a
        // node is started with them ("node n1 stopped with an error that no fault explains").
        let interval_ms_max = dynamo_node::config::INTERVAL_MS_MAX;
        if self.partitions == 0 || self.partitions > dynamo_node::ring::PARTITION_COUNT_MAX {
            return Err(format!(
                "partitions must be 1..={}, not {}",
                dynamo_node::ring::PARTITION_COUNT_MAX,
                self.partitions
            ));
        }
        for (name, ms) in [
            ("request timeout", self.request_timeout_ms),
            ("client timeout", self.client_timeout_ms),
        ] {
            if ms == 0 || ms > interval_ms_max {
                return Err(format!(
                    "the {name} must be 1..={interval_ms_max} ms, not {ms}"
                ));
            }
        }
        if self.think_ms_max > THINK_MS_MAX {
            return Err(format!("--think-ms must be at most {THINK_MS_MAX}"));
        }
        if self.quiesce_ms > QUIESCE_MS_MAX {
            return Err(format!("--quiesce-ms must be at most {QUIESCE_MS_MAX}"));
        }
        if let Some(model) = &self.latency {
            model.validate()?;
        }
        match self.read_percent {
            Some(p) if p > 100 => return Err("--read-percent must be 0..=100".to_owned()),
            Some(_) if self.workload != Workload::Register => {
                return Err("--read-percent is a register workload's mix".to_owned());
            }
            _ => {}
        }
        if !(TICK_US_MIN..=TICK_US_DEFAULT).contains(&self.tick_us) {
            return Err(format!(
                "--tick-us must be {TICK_US_MIN}..={TICK_US_DEFAULT}"
            ));
        }
        if self.tick_us != TICK_US_DEFAULT
            && (self.latency.is_none()
                || !self.nemesis.is_empty()
                || !self.fixed_partitions.is_empty())
        {
            return Err(
                "--tick-us below 1000 needs --latency and no fault (--nemesis none, no --partition): \
                 it stretches the model's delays, not the faults' times"
                    .to_owned(),
            );
        }
        if self.fault_gap_ops == 0 {
            return Err("--fault-gap-ops must be at least 1".into());
        }
        if self.fault_duration_ms == 0 || self.fault_duration_ms > FAULT_DURATION_MS_MAX {
            return Err(format!("--fault-ms must be 1..={FAULT_DURATION_MS_MAX}"));
        }
        if self.fault_overlap_percent > 100 {
            return Err("--fault-overlap must be a percentage, 0..=100".into());
        }
        if let KeyDist::Zipf { exponent } = self.key_dist
            && !(exponent.is_finite() && exponent > 0.0)
        {
            return Err("the Zipf exponent must be positive".into());
        }
        for p in &self.fixed_partitions {
            p.validate(self.nodes)?;
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

    /// The nodes whose data a fault may destroy (wipes, disk damage; crashes and power cuts too
    /// when fsync is not `always`): the first W-1. A write acknowledged by W nodes then always has
    /// a copy on a node that keeps its data, which is what W promises (W-1 lost disks survived,
    /// not more). Empty when W is 1: no node's data may be destroyed.
    pub fn expendable_nodes(&self) -> Vec<u32> {
        (0..(self.w as u32).saturating_sub(1).min(self.nodes as u32)).collect()
    }

    /// Whether the checker holds reads to the quorum promise (`quorum-read-miss`): a strict quorum
    /// and R + W > N.
    pub fn quorum_checked(&self) -> bool {
        !self.node.sloppy_quorum && self.r + self.w > self.n
    }

    /// The nodes a crash may hit: any node when fsync is `always` (nothing acknowledged is lost),
    /// else only the expendable ones.
    pub fn crashable_nodes(&self) -> Vec<u32> {
        if self.fsync == FsyncPolicy::Always {
            (0..self.nodes as u32).collect()
        } else {
            self.expendable_nodes()
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
    /// Cart: an add without a read: a cart of this one item, put with no context, which the store
    /// keeps as a sibling of whatever the cart holds (Dynamo §4.4: an add is never refused); the
    /// next read's union takes it in.
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

/// Which node a fault hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Victim {
    /// This node (an index).
    Node(u32),
    /// The coordinator of the first write acknowledged after the window opens that one of these
    /// candidates coordinated: the moment of greatest damage, when its new version is the newest
    /// record on its disk (perhaps not yet synced, under a bug, nor stored anywhere else) and its
    /// counter has just moved on. The fault waits for such an acknowledgement (at most
    /// [`ACKED_WAIT_MS_MAX`] while some candidate serves and, for damage at rest, has no other
    /// destruction pending; then it takes the first such candidate).
    Acked {
        /// The node indexes it may choose from.
        acked: Vec<u32>,
        /// Once the victim is back (the window closed and its host restarted it), the next this
        /// many operations of one client (the first to start one) go to the aimed write's key
        /// through the victim, whatever key and node they were planned for; the first is a blind
        /// put, the others keep their kinds. A sticky session on a hot key, and where damage
        /// shows: a node that lost records and kept (or reused) its actor issues their counters
        /// again only on a key it lost, for a writer whose context does not cover them; a read
        /// first would repair the key. 0: no follow-up (plans before `dynamo-plan-3`).
        #[serde(default, skip_serializing_if = "is_zero_u32")]
        follow_ops: u32,
    },
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

/// How long a fault aimed at the next acknowledged write waits for one.
pub const ACKED_WAIT_MS_MAX: u64 = 2_000;

impl Victim {
    /// How many operations follow the aimed write's key through the victim once the window
    /// closes (see [`Victim::Acked`]).
    pub fn follow_ops(&self) -> u32 {
        match self {
            Victim::Node(_) => 0,
            Victim::Acked { follow_ops, .. } => *follow_ops,
        }
    }

    /// The nodes it may be.
    pub fn candidates(&self) -> Vec<u32> {
        match self {
            Victim::Node(n) => vec![*n],
            Victim::Acked { acked, .. } => acked.clone(),
        }
    }
}

/// What a `disk` fault does to a node's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum DiskDamage {
    /// While the node is down, cut bytes off the end of its newest data file.
    TornTail,
    /// While the node is down, invert a byte inside an older record.
    FlipByte,
    /// While the node is down, lose its newest data file.
    LoseNewestFile,
    /// While the node is down, lose one of its other data files.
    LoseFile,
    /// While the node is down, cut one of its other data files at a record boundary.
    CutSealedFile,
    /// While the node is down, lose the log's manifest (the record of which files it should have).
    LoseManifest,
    /// While the window lasts, its writes fail with an I/O error.
    FailWrites,
    /// While the window lasts, its syncs fail with an I/O error.
    FailSyncs,
}

impl DiskDamage {
    /// Every kind, in order.
    pub const ALL: &'static [DiskDamage] = <DiskDamage as strum::VariantArray>::VARIANTS;

    /// The name in histories.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether the node is down for the window (damage done to its files at rest) rather than
    /// running on a failing disk.
    pub fn at_rest(self) -> bool {
        !matches!(self, DiskDamage::FailWrites | DiskDamage::FailSyncs)
    }
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
    /// The node crashes; it restarts when the window ends.
    Crash {
        /// The victim.
        node: Victim,
    },
    /// The node crashes and loses its disk; it restarts empty when the window ends.
    Wipe {
        /// The victim.
        node: Victim,
    },
    /// The node's wall clock jumps by `by_ms`; it returns when the window ends.
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
    /// The node leaves the ring; it joins again when the window ends.
    Leave {
        /// The node index.
        node: u32,
    },
    /// Every link's latency rises to this maximum.
    Slow {
        /// The new maximum latency.
        latency_ms_max: u64,
    },
    /// Every node crashes at once; all restart when the window ends.
    Power,
    /// A storage fault on one node.
    Disk {
        /// The victim.
        node: Victim,
        /// What happens to its storage.
        damage: DiskDamage,
        /// Drives the choice of file and offset, so that a replay damages the same bytes.
        pick: u64,
        /// Damage at rest hits the newest record of this key (an index) where it can: set when a
        /// shrunk plan fixes on a node a fault that, in the run it came from, was aimed at the
        /// next acknowledged write (a [`Victim::Acked`] victim aims at its write's key itself).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aim_key: Option<u32>,
    },
    /// The node's process is stopped; it resumes when the window ends (real processes only).
    Pause {
        /// The victim.
        node: Victim,
    },
}

impl Fault {
    /// The node indexes the fault names (its possible victims).
    pub fn nodes(&self) -> Vec<u32> {
        match self {
            Fault::Partition { groups, .. } => groups.iter().flatten().copied().collect(),
            Fault::Crash { node }
            | Fault::Wipe { node }
            | Fault::Disk { node, .. }
            | Fault::Pause { node } => node.candidates(),
            Fault::Skew { node, .. } | Fault::Leave { node } => vec![*node],
            Fault::Loss { .. } | Fault::Slow { .. } | Fault::Power => vec![],
        }
    }

    /// Whether it destroys data a node stored and synced (a wipe, damage at rest).
    pub fn destroys_at_rest(&self) -> bool {
        match self {
            Fault::Wipe { .. } => true,
            Fault::Disk { damage, .. } => damage.at_rest(),
            _ => false,
        }
    }

    /// Who it hits, for the faults that hit one node chosen by a [`Victim`] (crash, wipe, disk,
    /// pause).
    pub fn victim(&self) -> Option<&Victim> {
        match self {
            Fault::Crash { node }
            | Fault::Wipe { node }
            | Fault::Disk { node, .. }
            | Fault::Pause { node } => Some(node),
            _ => None,
        }
    }

    /// Whether it waits for an acknowledged write to aim at ([`Victim::Acked`]).
    pub fn aimed(&self) -> bool {
        matches!(self.victim(), Some(Victim::Acked { .. }))
    }

    /// How many operations follow its aimed write once it closes ([`Victim::Acked`]).
    pub fn follow_ops(&self) -> u32 {
        self.victim().map_or(0, Victim::follow_ops)
    }

    /// The nemesis kind this fault belongs to.
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Partition { .. } => NemesisKind::Partition,
            Fault::Crash { .. } => NemesisKind::Crash,
            Fault::Wipe { .. } => NemesisKind::Wipe,
            Fault::Skew { .. } => NemesisKind::Skew,
            Fault::Loss { .. } => NemesisKind::Loss,
            Fault::Leave { .. } => NemesisKind::Membership,
            Fault::Slow { .. } => NemesisKind::Slow,
            Fault::Power => NemesisKind::Power,
            Fault::Disk { .. } => NemesisKind::Disk,
            Fault::Pause { .. } => NemesisKind::Pause,
        }
    }
}

/// When a fault window opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Start {
    /// Once this many client operations (planned operations, over all clients) have completed.
    Ops(u64),
    /// At this simulated time, ms since the run started.
    Ms(u64),
    /// `after_ms` after client `client` has completed `ops` of its own planned operations (0: from
    /// the start): a window pinned to one client's operations, e.g. right after the ack of its
    /// write. `dynamo shrink` pins windows this way, so that removing other clients' operations
    /// does not move a fault away from the writes it must hit.
    ClientOps {
        /// The client (0-based slot).
        client: u32,
        /// How many of its operations must have completed.
        ops: u64,
        /// How long after that, simulated ms.
        #[serde(default, skip_serializing_if = "is_zero")]
        after_ms: u64,
    },
}

fn is_zero(ms: &u64) -> bool {
    *ms == 0
}

/// A fault, when it opens, and how long it lasts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FaultWindowJson")]
pub struct FaultWindow {
    /// When it opens.
    pub start: Start,
    /// How long it lasts once open, simulated ms (it closes earlier if the clients finish: the heal
    /// ends every fault).
    pub duration_ms: u64,
    /// What.
    pub fault: Fault,
}

/// A fault window as either format version writes it.
#[derive(Deserialize)]
struct FaultWindowJson {
    start: Option<Start>,
    duration_ms: Option<u64>,
    /// Version 1: the start, ms.
    start_ms: Option<u64>,
    /// Version 1: the end, ms.
    stop_ms: Option<u64>,
    fault: Fault,
}

impl TryFrom<FaultWindowJson> for FaultWindow {
    type Error = String;
    fn try_from(w: FaultWindowJson) -> Result<FaultWindow, String> {
        let fault = w.fault;
        match (w.start, w.duration_ms, w.start_ms, w.stop_ms) {
            (Some(start), Some(duration_ms), None, None) => Ok(FaultWindow {
                start,
                duration_ms,
                fault,
            }),
            (None, None, Some(start_ms), Some(stop_ms)) if stop_ms >= start_ms => Ok(FaultWindow {
                start: Start::Ms(start_ms),
                duration_ms: stop_ms - start_ms,
                fault,
            }),
            _ => Err(
                "a fault window has `start` and `duration_ms` (or, in a version 1 plan, \
                 `start_ms` <= `stop_ms`)"
                    .into(),
            ),
        }
    }
}

/// A run, fully expanded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format version of plan.json.
    pub version: u32,
    /// The generator that expanded the seed into this plan (empty for an edited or version 1
    /// plan).
    #[serde(default)]
    pub generator: String,
    /// The configuration.
    pub config: SimConfig,
    /// Client operations; each client runs its own in this order.
    pub ops: Vec<ClientOp>,
    /// Fault windows, in the order they were drawn; they may overlap.
    pub faults: Vec<FaultWindow>,
}

/// The plan.json format version.
pub const PLAN_VERSION: u32 = 2;
/// The oldest plan.json format version that still replays.
pub const PLAN_VERSION_MIN: u32 = 1;

impl Plan {
    /// Expands a configuration into a plan, deterministically from its seed (see
    /// [`crate::generate`]).
    pub fn generate(config: SimConfig) -> Result<Plan, String> {
        crate::generate::generate(config)
    }

    /// Reads and checks a plan.json (of this version or an older one that still replays).
    pub fn from_json(text: &str) -> Result<Plan, String> {
        let mut plan: Plan = serde_json::from_str(text).map_err(|e| format!("bad plan: {e}"))?;
        if !(PLAN_VERSION_MIN..=PLAN_VERSION).contains(&plan.version) {
            return Err(format!(
                "plan version {} is not one this build replays ({PLAN_VERSION_MIN} to {PLAN_VERSION})",
                plan.version
            ));
        }
        plan.config.validate()?;
        plan.validate()?;
        // Read, it is a plan of today's format (its windows were converted above).
        plan.version = PLAN_VERSION;
        Ok(plan)
    }

    /// Checks that ops and faults refer to existing clients, keys and nodes, and that every fault
    /// is one the nodes can be given.
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
            if u64::from(op.think_ms) > THINK_MS_MAX {
                return Err(format!(
                    "op {i} thinks {} ms, over {THINK_MS_MAX} ms",
                    op.think_ms
                ));
            }
        }
        for (i, w) in self.faults.iter().enumerate() {
            if w.duration_ms > FAULT_DURATION_MS_MAX {
                return Err(format!("fault {i} lasts over {FAULT_DURATION_MS_MAX} ms"));
            }
            let nodes = w.fault.nodes();
            if nodes.iter().any(|&n| n as usize >= c.nodes) {
                return Err(format!("fault {i} names a node outside the configuration"));
            }
            let no_victim = match &w.fault {
                Fault::Crash { node }
                | Fault::Wipe { node }
                | Fault::Disk { node, .. }
                | Fault::Pause { node } => node.candidates().is_empty(),
                Fault::Partition { groups, .. } => groups.len() < 2,
                _ => false,
            };
            if no_victim {
                return Err(format!("fault {i} has no node to hit"));
            }
            if let Fault::Disk {
                aim_key: Some(key), ..
            } = w.fault
                && key as usize >= c.keys
            {
                return Err(format!(
                    "fault {i} aims at key {key}, outside the configuration's {} keys",
                    c.keys
                ));
            }
            if let Start::ClientOps { client, .. } = w.start
                && client as usize >= c.clients
            {
                return Err(format!(
                    "fault {i} starts after the ops of a client outside the configuration"
                ));
            }
        }
        Ok(())
    }

    /// How many windows of each kind the plan has.
    pub fn fault_counts(&self) -> std::collections::BTreeMap<NemesisKind, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for w in &self.faults {
            *counts.entry(w.fault.kind()).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile plans: values a hand-edited plan.json can hold that the generator never makes.
    /// Each is refused as a plan, naming what is wrong; before, a quiescence of 2^63 ms ran until
    /// killed, a client timeout of 0 failed every operation and ended "unknown", and a request
    /// timeout of 0 or 0 partitions stopped the first node with "an error that no fault
    /// explains".
    #[test]
    fn plans_with_values_past_their_bounds_are_refused() {
        let plan = Plan::generate(SimConfig {
            ops: 50,
            ..SimConfig::default()
        })
        .unwrap();
        type Spoil = fn(&mut Plan);
        let cases: [(&str, Spoil); 10] = [
            ("quiesce", |p| {
                p.config.quiesce_ms = 1 << 63;
                p.config.quiesce_until_rest = false;
            }),
            ("think", |p| p.config.think_ms_max = u64::MAX),
            ("thinks", |p| p.ops[0].think_ms = u32::MAX),
            ("latency", |p| {
                p.config.latency_ms_min = 1 << 31;
                p.config.latency_ms_max = 1 << 32;
            }),
            ("partitions", |p| p.config.partitions = 0),
            ("partitions", |p| p.config.partitions = u32::MAX),
            ("request timeout", |p| p.config.request_timeout_ms = 0),
            ("request timeout", |p| p.config.request_timeout_ms = 1 << 63),
            ("client timeout", |p| p.config.client_timeout_ms = 0),
            ("client timeout", |p| p.config.client_timeout_ms = u64::MAX),
        ];
        for (what, spoil) in cases {
            let mut bad = plan.clone();
            spoil(&mut bad);
            let text = serde_json::to_string(&bad).unwrap();
            let error = Plan::from_json(&text).expect_err(what);
            assert!(error.contains(what), "{what}: {error}");
        }
        // The bounds themselves are taken.
        let mut edge = plan.clone();
        edge.config.quiesce_ms = QUIESCE_MS_MAX;
        edge.config.think_ms_max = THINK_MS_MAX;
        edge.config.latency_ms_max = LATENCY_MS_MAX;
        edge.ops[0].think_ms = THINK_MS_MAX as u32;
        edge.config.request_timeout_ms = dynamo_node::config::INTERVAL_MS_MAX;
        let text = serde_json::to_string(&edge).unwrap();
        Plan::from_json(&text).unwrap();
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
        // A disk fault pinned to a key (a shrunk plan's) names one of the configuration's.
        let mut aimed = plan.clone();
        aimed.faults[0].fault = Fault::Disk {
            node: Victim::Node(0),
            damage: DiskDamage::TornTail,
            pick: 1,
            aim_key: Some(plan.config.keys as u32 - 1),
        };
        let text = serde_json::to_string(&aimed).unwrap();
        assert_eq!(Plan::from_json(&text).unwrap(), aimed);
        aimed.faults[0].fault = Fault::Disk {
            node: Victim::Node(0),
            damage: DiskDamage::TornTail,
            pick: 1,
            aim_key: Some(plan.config.keys as u32),
        };
        let text = serde_json::to_string(&aimed).unwrap();
        assert!(Plan::from_json(&text).unwrap_err().contains("aims at key"));
        let mut future = plan.clone();
        future.version = PLAN_VERSION + 1;
        let text = serde_json::to_string(&future).unwrap();
        assert!(Plan::from_json(&text).unwrap_err().contains("version"));
    }

    #[test]
    fn a_version_1_plan_still_reads() {
        // The shape the first releases wrote (fields trimmed to the ones that matter).
        let config = serde_json::to_value(SimConfig::default()).unwrap();
        let v1 = serde_json::json!({
            "version": 1,
            "config": config,
            "ops": [{"client": 0, "key": 1, "kind": "update", "node": 2, "think_ms": 3}],
            "faults": [
                {"start_ms": 100, "stop_ms": 900, "fault": {"kind": "crash", "node": 1}},
                {"start_ms": 950, "stop_ms": 1200, "fault": {"kind": "partition",
                  "groups": [[0], [1, 2]], "shape": "isolate", "oneway": false}},
            ],
        });
        let plan = Plan::from_json(&v1.to_string()).unwrap();
        assert_eq!(plan.version, PLAN_VERSION);
        assert_eq!(
            plan.faults[0],
            FaultWindow {
                start: Start::Ms(100),
                duration_ms: 800,
                fault: Fault::Crash {
                    node: Victim::Node(1)
                },
            }
        );
        assert_eq!(plan.faults[1].start, Start::Ms(950));
        let mut broken = v1.clone();
        broken["faults"][0]["stop_ms"] = serde_json::json!(50);
        assert!(Plan::from_json(&broken.to_string()).is_err());
    }

    #[test]
    fn victims_serialise_as_a_node_or_a_candidate_list() {
        let fixed = Fault::Crash {
            node: Victim::Node(3),
        };
        assert_eq!(
            serde_json::to_string(&fixed).unwrap(),
            r#"{"kind":"crash","node":3}"#
        );
        let aimed = Fault::Wipe {
            node: Victim::Acked {
                acked: vec![0, 1],
                follow_ops: 0,
            },
        };
        let text = serde_json::to_string(&aimed).unwrap();
        assert_eq!(text, r#"{"kind":"wipe","node":{"acked":[0,1]}}"#);
        assert_eq!(serde_json::from_str::<Fault>(&text).unwrap(), aimed);
        let followed = Fault::Wipe {
            node: Victim::Acked {
                acked: vec![0],
                follow_ops: 6,
            },
        };
        let text = serde_json::to_string(&followed).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"wipe","node":{"acked":[0],"follow_ops":6}}"#
        );
        assert_eq!(serde_json::from_str::<Fault>(&text).unwrap(), followed);
    }

    #[test]
    fn nemesis_lists_parse() {
        assert_eq!(NemesisKind::parse_list("none").unwrap(), vec![]);
        assert_eq!(
            NemesisKind::parse_list("all").unwrap().len(),
            NemesisKind::ALL.len()
        );
        assert_eq!(
            NemesisKind::parse_list("crash,partition").unwrap(),
            vec![NemesisKind::Partition, NemesisKind::Crash]
        );
        let e = NemesisKind::parse_list("flood").unwrap_err();
        assert!(e.contains("power") && e.contains("disk"), "{e}");
        assert_eq!(
            NemesisKind::parse_list("membership,power,disk").unwrap(),
            vec![
                NemesisKind::Membership,
                NemesisKind::Power,
                NemesisKind::Disk
            ]
        );
    }

    #[test]
    fn only_the_first_w_minus_1_nodes_may_lose_data() {
        let c = SimConfig {
            w: 3,
            ..SimConfig::default()
        };
        assert_eq!(c.expendable_nodes(), vec![0, 1]);
        assert_eq!(c.crashable_nodes().len(), c.nodes);
        let c = SimConfig {
            w: 1,
            fsync: FsyncPolicy::None,
            ..SimConfig::default()
        };
        assert!(c.expendable_nodes().is_empty());
        assert!(c.crashable_nodes().is_empty());
    }
}
