//! Node configuration: identity, quorum settings, timeouts, durability, and deliberate bugs.
//!
//! One struct, plain data, serialisable, so that a simulation's `plan.json` can carry the exact
//! options every node ran with and a replay rebuilds them.

use crate::ring::{NodeId, PARTITION_COUNT_DEFAULT, PARTITION_COUNT_MAX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use strum::VariantArray;

/// When the log store's writes are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum FsyncPolicy {
    /// Sync before any message or reply that depends on the write leaves the node (the default).
    #[default]
    Always,
    /// Sync at most every `interval_ms`; a crash loses up to that much acknowledged data.
    Interval {
        /// Time between syncs.
        interval_ms: u64,
    },
    /// Never sync explicitly; the operating system decides.
    None,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "none" => Ok(FsyncPolicy::None),
            _ => match s.strip_prefix("interval") {
                Some(rest) => {
                    let ms = rest.trim_start_matches([':', '=']).trim_end_matches("ms");
                    let interval_ms = if ms.is_empty() {
                        FSYNC_INTERVAL_MS_DEFAULT
                    } else {
                        ms.parse()
                            .map_err(|_| format!("bad fsync interval {s:?}"))?
                    };
                    Ok(FsyncPolicy::Interval { interval_ms })
                }
                None => Err(format!(
                    "unknown fsync policy {s:?}: use always, interval[:MS] or none"
                )),
            },
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval { interval_ms } => write!(f, "interval:{interval_ms}"),
            FsyncPolicy::None => f.write_str("none"),
        }
    }
}

/// Default time between syncs under `interval`.
pub const FSYNC_INTERVAL_MS_DEFAULT: u64 = 100;

/// A deliberate, historically seen mistake the node can be told to make, so that tests can prove the
/// checker catches it (DESIGN.md, "Deliberate bugs"). Only the simulator and tests set one. Its
/// names (serde, `Display`, `FromStr`) are the kebab-case of the variant, in one place: strum's
/// derives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[derive(strum::Display, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Bug {
    /// Resolve concurrent versions by timestamp, keeping one.
    Lww,
    /// Plain per-version vector clocks without dots, as the paper describes them.
    NaiveClock,
    /// Answer a put after the local write, before W acks.
    EarlyAck,
    /// Ack before the write is synced.
    NoFsync,
    /// After losing the disk, reuse the old actor id and restart counters.
    ReuseActor,
    /// Read repair writes only the newest sibling.
    RepairDropsSiblings,
    /// No read repair, no hinted handoff, no anti-entropy.
    NoRepair,
    /// Keep the actor id after an unclean stop, or a recovery that cut a torn or damaged tail,
    /// skipped damage, or found a data file missing (a new one still on an empty disk).
    KeepActorOnRecovery,
}

impl Bug {
    /// Every bug, in a fixed order.
    pub const ALL: &'static [Bug] = <Bug as VariantArray>::VARIANTS;

    /// The bug's name on the command line.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl FromStr for Bug {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_variant(s, "bug")
    }
}

/// Parses one of `T`'s names (strum's `IntoStaticStr`), or says which names there are: the
/// `FromStr` of every enum named on the command line, so each refusal lists the choices.
pub fn parse_variant<T>(s: &str, what: &str) -> Result<T, String>
where
    T: VariantArray + Copy + Into<&'static str>,
{
    T::VARIANTS
        .iter()
        .copied()
        .find(|v| Into::<&'static str>::into(*v) == s)
        .ok_or_else(|| {
            let names: Vec<&'static str> = T::VARIANTS.iter().map(|&v| v.into()).collect();
            format!("unknown {what} {s:?}: one of {}", names.join(", "))
        })
}

/// Everything a node needs to know to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This node's name, e.g. `n1`.
    pub id: NodeId,
    /// Every member's address (`host:port`) including this node's own, by name.
    pub members: BTreeMap<NodeId, String>,
    /// Replicas per key.
    pub n: usize,
    /// Replies a read waits for.
    pub r: usize,
    /// Acks a write waits for (the coordinator's own write included).
    pub w: usize,
    /// Partitions of the ring (Q).
    pub partition_count: u32,
    /// A client request's deadline at its coordinator.
    pub request_timeout_ms: u64,
    /// How long read repair waits for the slower replicas after the answer.
    pub repair_wait_ms: u64,
    /// Durability of local writes.
    pub fsync: FsyncPolicy,
    /// Sloppy quorum: skip unreachable replicas and use the next healthy nodes on the ring, with
    /// hints. Off: a strict quorum, where writes fail instead.
    pub sloppy_quorum: bool,
    /// Deliver hinted writes to their owners when they come back.
    pub hinted_handoff: bool,
    /// Repair stale replicas after a read.
    pub read_repair: bool,
    /// Compare Merkle trees with co-replicas periodically and exchange differing keys.
    pub anti_entropy: bool,
    /// Time between two anti-entropy exchanges started by this node.
    pub anti_entropy_interval_ms: u64,
    /// Children per Merkle tree node.
    pub merkle_fanout: u32,
    /// Time between two rounds of hint delivery.
    pub hint_interval_ms: u64,
    /// Compact the log once its dead bytes exceed both this and its live bytes.
    pub compact_garbage_bytes_min: u64,
    /// A log data file that would grow past this many bytes is closed and a new one started.
    #[serde(default = "log_file_bytes_max_default")]
    pub log_file_bytes_max: u64,
    /// Addresses of members to ask to join the ring at start (empty: the ring is `members`).
    pub seeds: Vec<String>,
    /// A deliberate bug, or none.
    pub bug: Option<Bug>,
    /// The cluster's name: peers of another cluster are refused at the handshake, and the data
    /// directory remembers it ([`crate::store::identity`]).
    #[serde(default = "cluster_name_default")]
    pub cluster: String,
    /// The cluster secret and the client token: never serialised (a plan must not carry them).
    #[serde(skip)]
    pub auth: crate::auth::AuthConfig,
    /// Client connections served at once, at most [`crate::shell::CLIENT_CONNECTIONS_MAX`]:
    /// `dynamo serve` lowers it to what the process's open-file limit leaves room for, so that
    /// a flood of connections cannot take the descriptors the node's own files need. Not
    /// serialised: it follows the machine, not the plan.
    #[serde(skip, default = "client_connections_max_default")]
    pub client_connections_max: usize,
}

fn client_connections_max_default() -> usize {
    crate::shell::CLIENT_CONNECTIONS_MAX
}

fn cluster_name_default() -> String {
    crate::auth::CLUSTER_NAME_DEFAULT.to_string()
}

fn log_file_bytes_max_default() -> u64 {
    crate::store::log::MAX_FILE_BYTES_DEFAULT
}

/// The nodes' availability machinery, each switchable so that tests can isolate one: what
/// `dynamo serve`'s flags and a simulated run's plan (`node` in plan.json) choose alike.
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

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            sloppy_quorum: true,
            hinted_handoff: true,
            read_repair: true,
            anti_entropy: true,
            anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
        }
    }
}

/// What a cluster's operator (or a simulated run) chooses for every node alike: the one place a
/// [`NodeConfig`] is built from them, for `dynamo serve` and for the simulator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Replicas per key, reads and writes waited for.
    pub n: usize,
    pub r: usize,
    pub w: usize,
    /// Partitions of the ring (Q).
    pub partition_count: u32,
    /// Durability of local writes.
    pub fsync: FsyncPolicy,
    /// A client request's deadline at its coordinator (read repair waits as long).
    pub request_timeout_ms: u64,
    /// The availability machinery.
    pub options: NodeOptions,
    /// A deliberate bug, or none.
    pub bug: Option<Bug>,
}

/// Default time between anti-entropy exchanges.
pub const ANTI_ENTROPY_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default time between hint deliveries.
pub const HINT_INTERVAL_MS_DEFAULT: u64 = 500;

/// Default dead bytes in the log before a compaction is considered.
pub const COMPACT_GARBAGE_BYTES_MIN_DEFAULT: u64 = 64 * 1024 * 1024;

/// Default client request deadline at the coordinator.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 2_000;

/// Longest timeout or interval a node takes (request timeout, repair wait, anti-entropy, hint
/// and fsync intervals), one day: deadlines are `now + interval` in u64 milliseconds, and an
/// option of `u64::MAX` would wrap them (a deadline in the past) or panic a debug build.
pub const INTERVAL_MS_MAX: u64 = 24 * 60 * 60 * 1_000;

impl NodeConfig {
    /// A configuration with the defaults of DESIGN.md (N=3, R=2, W=2, 64 partitions).
    pub fn new(id: impl Into<NodeId>, members: BTreeMap<NodeId, String>) -> NodeConfig {
        NodeConfig {
            id: id.into(),
            members,
            n: 3,
            r: 2,
            w: 2,
            partition_count: PARTITION_COUNT_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            repair_wait_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            fsync: FsyncPolicy::Always,
            compact_garbage_bytes_min: COMPACT_GARBAGE_BYTES_MIN_DEFAULT,
            log_file_bytes_max: crate::store::log::MAX_FILE_BYTES_DEFAULT,
            sloppy_quorum: true,
            hinted_handoff: true,
            read_repair: true,
            anti_entropy: true,
            anti_entropy_interval_ms: ANTI_ENTROPY_INTERVAL_MS_DEFAULT,
            merkle_fanout: crate::merkle::FANOUT_DEFAULT,
            hint_interval_ms: HINT_INTERVAL_MS_DEFAULT,
            seeds: Vec::new(),
            bug: None,
            cluster: cluster_name_default(),
            auth: crate::auth::AuthConfig::default(),
            client_connections_max: client_connections_max_default(),
        }
    }

    /// Node `id`'s configuration in a cluster of `members` run with `settings`; the rest at the
    /// defaults of [`NodeConfig::new`].
    pub fn for_cluster(
        id: impl Into<NodeId>,
        members: BTreeMap<NodeId, String>,
        settings: &ClusterSettings,
    ) -> NodeConfig {
        let o = &settings.options;
        NodeConfig {
            n: settings.n,
            r: settings.r,
            w: settings.w,
            partition_count: settings.partition_count,
            fsync: settings.fsync,
            request_timeout_ms: settings.request_timeout_ms,
            repair_wait_ms: settings.request_timeout_ms,
            sloppy_quorum: o.sloppy_quorum,
            hinted_handoff: o.hinted_handoff,
            read_repair: o.read_repair,
            anti_entropy: o.anti_entropy,
            anti_entropy_interval_ms: o.anti_entropy_interval_ms,
            bug: settings.bug,
            ..NodeConfig::new(id, members)
        }
    }

    /// Checks the settings make sense together; the error says which does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.client_connections_max == 0 {
            return Err("client_connections_max must be at least 1".to_string());
        }
        let id_max = crate::version::NODE_ID_BYTES_MAX;
        if !crate::version::valid_node_id(&self.id) {
            return Err(format!(
                "node id {:?} must be 1-{id_max} of [A-Za-z0-9._-]",
                self.id
            ));
        }
        if !self.members.contains_key(&self.id) {
            return Err(format!("members do not include this node {:?}", self.id));
        }
        for (id, addr) in &self.members {
            if !crate::version::valid_node_id(id) {
                return Err(format!(
                    "member id {id:?} must be 1-{id_max} of [A-Za-z0-9._-]"
                ));
            }
            if !crate::wire::valid_addr(addr) {
                return Err(format!("member {id}'s address {addr:?} is not host:port"));
            }
        }
        if self.members.len() > crate::ring::MEMBERS_MAX {
            return Err(format!(
                "{} members exceed {}",
                self.members.len(),
                crate::ring::MEMBERS_MAX
            ));
        }
        if !crate::auth::valid_cluster_name(&self.cluster) {
            return Err(format!(
                "cluster name {:?} must be 1-{} of [A-Za-z0-9._-]",
                self.cluster,
                crate::auth::CLUSTER_NAME_BYTES_MAX
            ));
        }
        if self.n == 0 || self.r == 0 || self.w == 0 {
            return Err("N, R and W must be at least 1".into());
        }
        if self.r > self.n || self.w > self.n {
            return Err(format!(
                "R ({}) and W ({}) cannot exceed N ({})",
                self.r, self.w, self.n
            ));
        }
        if self.partition_count == 0 || self.partition_count > PARTITION_COUNT_MAX {
            return Err(format!(
                "partitions must be 1..={PARTITION_COUNT_MAX}, not {}",
                self.partition_count
            ));
        }
        if !(2..=crate::merkle::FANOUT_MAX).contains(&self.merkle_fanout) {
            return Err(format!(
                "Merkle fan-out must be 2..={}, not {}",
                crate::merkle::FANOUT_MAX,
                self.merkle_fanout
            ));
        }
        if self.anti_entropy_interval_ms == 0 || self.hint_interval_ms == 0 {
            return Err("anti-entropy and hint intervals must be positive".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("request timeout must be positive".into());
        }
        let fsync_interval_ms = match self.fsync {
            FsyncPolicy::Interval { interval_ms } => interval_ms,
            _ => 0,
        };
        for (name, ms) in [
            ("request timeout", self.request_timeout_ms),
            ("repair wait", self.repair_wait_ms),
            ("anti-entropy interval", self.anti_entropy_interval_ms),
            ("hint interval", self.hint_interval_ms),
            ("fsync interval", fsync_interval_ms),
        ] {
            if ms > INTERVAL_MS_MAX {
                return Err(format!(
                    "{name} of {ms} ms exceeds {INTERVAL_MS_MAX} ms (one day)"
                ));
            }
        }
        if self.log_file_bytes_max == 0 {
            return Err("the log's file size must be positive".into());
        }
        Ok(())
    }

    /// Whether a deliberate bug is on.
    pub fn has_bug(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    /// How this node resolves versions: dotted, unless a deliberate bug says otherwise.
    pub fn rule(&self) -> crate::version::Rule {
        use crate::version::Rule;
        match self.bug {
            Some(Bug::NaiveClock) => Rule::PlainClocks,
            Some(Bug::Lww) => Rule::LastWriteWins,
            _ => Rule::Dotted,
        }
    }

    /// Whether a step's writes are synced before anything that depends on them leaves the node:
    /// under the `always` fsync policy, unless the deliberate bug `no-fsync` is on.
    pub fn sync_before_release(&self) -> bool {
        self.fsync == FsyncPolicy::Always && !self.has_bug(Bug::NoFsync)
    }

    /// Whether read repair runs (off by option, or under the `no-repair` bug).
    pub fn read_repair_on(&self) -> bool {
        self.read_repair && !self.has_bug(Bug::NoRepair)
    }

    /// Whether hints are delivered (off by option, or under the `no-repair` bug).
    pub fn hinted_handoff_on(&self) -> bool {
        self.hinted_handoff && !self.has_bug(Bug::NoRepair)
    }

    /// Whether anti-entropy runs (off by option, or under the `no-repair` bug).
    pub fn anti_entropy_on(&self) -> bool {
        self.anti_entropy && !self.has_bug(Bug::NoRepair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("none".parse(), Ok(FsyncPolicy::None));
        assert_eq!(
            "interval:50".parse(),
            Ok(FsyncPolicy::Interval { interval_ms: 50 })
        );
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn bugs_parse_by_name() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse(), Ok(bug));
        }
        assert!("nope".parse::<Bug>().unwrap_err().contains("lww"));
    }

    #[test]
    fn validation_names_the_problem() {
        let members = BTreeMap::from([("n1".into(), "a:1".to_string())]);
        let mut c = NodeConfig::new("n1", members);
        c.n = 1;
        c.r = 1;
        c.w = 1;
        assert!(c.validate().is_ok());
        c.w = 2;
        assert!(c.validate().unwrap_err().contains("W (2)"));
        c.w = 1;
        // Issue 11: `--request-timeout-ms 18446744073709551615` was taken, and every deadline
        // (`now + timeout`) wrapped.
        c.request_timeout_ms = u64::MAX;
        assert!(c.validate().unwrap_err().contains("request timeout"));
        c.request_timeout_ms = INTERVAL_MS_MAX;
        c.fsync = FsyncPolicy::Interval {
            interval_ms: INTERVAL_MS_MAX + 1,
        };
        assert!(c.validate().unwrap_err().contains("fsync interval"));
    }
}
