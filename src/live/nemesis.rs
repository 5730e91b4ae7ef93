//! The nemesis of `dynamo live`: the simulator's nemesis core (`dynamo_workloads::nemesis_core`:
//! the same windows, counts, aims and waits) made on real processes and on the proxy between them
//! ([`Processes`]).
//!
//! How each fault is made:
//!
//! | fault | on real processes |
//! |-------|-------------------|
//! | crash | SIGKILL; the same command on the same data directory when the window closes |
//! | power | SIGKILL of every node at once (unsynced writes survive in the page cache, unlike a real power cut) |
//! | wipe | SIGKILL, the data directory emptied, restarted |
//! | disk (at rest) | SIGKILL, the damage applied to the files (`HeldDamage::apply`), restarted |
//! | pause | SIGSTOP, SIGCONT |
//! | partition, loss, slow | the proxy on every peer link ([`super::proxy`]) |
//!
//! Not made (the window is skipped, and the run says so): skew (a real process's clock cannot be
//! moved), a failing disk under a running node (fail-writes, fail-syncs), membership changes; and
//! on an existing cluster (`--nodes ADDR,...`) every fault, since the harness neither started the
//! processes nor sits on their links. A node that exits by itself is recorded as a crash, noted in
//! the run's `unexpected_exits`, and restarted after the supervisor's delay.

use super::procs::NodeProc;
use super::proxy::Links;
use dynamo_node::fs::StdFs;
use dynamo_workloads::history::Recorder;
use dynamo_workloads::nemesis_core::{
    HeldDamage, LinkChange, LinkFaults, Nemesis, NemesisEnv, Started,
};
use dynamo_workloads::plan::{Fault, Plan};
use dynamo_workloads::workload::{HistoryClock, Progress};
use std::cell::RefCell;
use std::rc::Rc;

/// What the harness controls: the processes it started, the proxy it put on their links.
pub struct Cluster {
    /// Every node's process (empty on an existing cluster).
    pub nodes: Vec<NodeProc>,
    /// The links' controls (None on an existing cluster).
    pub links: Option<Links>,
    /// The proxy itself, kept running as long as the cluster.
    pub proxy: Option<super::proxy::Proxy>,
}

/// Opens and closes the plan's windows on a real cluster; see the module docs.
pub type LiveNemesis<C> = Nemesis<Processes<C>>;

/// A nemesis for the windows of `plan` on a real cluster, recording on `clock`.
pub fn live_nemesis<C: HistoryClock>(
    plan: &Plan,
    recorder: Rc<RefCell<Recorder>>,
    clock: C,
    progress: Rc<Progress>,
) -> LiveNemesis<C> {
    let nodes = plan.config.nodes;
    let env = Processes {
        clock,
        names: plan.config.node_names(),
        wipe_on_start: vec![false; nodes],
        damage_on_start: vec![Vec::new(); nodes],
        unexpected_exits: Vec::new(),
    };
    Nemesis::with_env(plan, recorder, progress, env)
}

/// The faults of `dynamo live`: signals to the processes, files of their data directories, and
/// the proxy's link state.
pub struct Processes<C: HistoryClock> {
    clock: C,
    /// The nodes' names, by index.
    names: Vec<String>,
    /// Destruction held for each node's next start.
    wipe_on_start: Vec<bool>,
    damage_on_start: Vec<Vec<HeldDamage>>,
    /// Nodes that exited by themselves, with how.
    pub unexpected_exits: Vec<String>,
}

impl<C: HistoryClock> NemesisEnv for Processes<C> {
    type World = Cluster;

    fn now_ns(&self, _cluster: &Cluster) -> u64 {
        self.clock.now_ns()
    }

    fn unsupported(&self, cluster: &Cluster, fault: &Fault) -> Option<&'static str> {
        let processes = !cluster.nodes.is_empty();
        match fault {
            Fault::Skew { .. } => Some("a real process's clock cannot be moved"),
            Fault::Leave { .. } => Some("membership changes are not made on real processes"),
            Fault::Disk { damage, .. } if !damage.at_rest() => {
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

    fn stop(&mut self, cluster: &mut Cluster, node: u32) {
        cluster.nodes[node as usize].kill();
    }

    /// Applies the destruction held for the node, then starts the same command again.
    fn start(&mut self, cluster: &mut Cluster, node: u32) -> Option<Started> {
        let i = node as usize;
        let proc = &mut cluster.nodes[i];
        let mut done = Vec::new();
        if std::mem::take(&mut self.wipe_on_start[i]) {
            match std::fs::remove_dir_all(&proc.data_dir) {
                Ok(()) => done.push("wiped".to_owned()),
                Err(e) => done.push(format!("wipe failed: {e}")),
            }
        }
        for held in std::mem::take(&mut self.damage_on_start[i]) {
            match held.apply(&StdFs, &proc.data_dir) {
                Ok(what) => done.push(what),
                Err(e) => done.push(format!("{}: {e}", held.damage.name())),
            }
        }
        let error = proc.spawn().err().map(|e| format!("cannot restart: {e}"));
        Some(Started {
            disk: done.join("; "),
            error,
        })
    }

    /// A start is known at once ([`Self::start`]).
    fn started(&mut self, _cluster: &mut Cluster, _node: u32) -> Option<Started> {
        None
    }

    fn exited(&mut self, cluster: &mut Cluster, node: u32) -> Option<String> {
        let status = cluster.nodes.get_mut(node as usize)?.exited()?;
        Some(format!("exited by itself: {status}"))
    }

    /// Noted for the run's summary, with the end of the node's log; the run goes on.
    fn unexplained_exit(
        &mut self,
        cluster: &mut Cluster,
        node: u32,
        cause: &str,
    ) -> Result<(), String> {
        let name = &self.names[node as usize];
        let tail = cluster.nodes[node as usize].log_tail(5);
        self.unexpected_exits
            .push(format!("{name} {cause}; its log ends:\n{tail}"));
        Ok(())
    }

    /// Nothing to do: the process is gone, and the page cache keeps what it wrote.
    fn lose_unsynced(&mut self, _cluster: &mut Cluster, _node: u32) {}

    fn wipe_at_next_start(&mut self, node: u32) {
        self.wipe_on_start[node as usize] = true;
    }

    fn damage_at_next_start(&mut self, node: u32, damage: HeldDamage) {
        self.damage_on_start[node as usize].push(damage);
    }

    fn destruction_pending(&self, node: u32) -> bool {
        let i = node as usize;
        self.wipe_on_start[i] || !self.damage_on_start[i].is_empty()
    }

    fn pause(&mut self, cluster: &mut Cluster, node: u32) {
        cluster.nodes[node as usize].pause();
    }

    fn resume(&mut self, cluster: &mut Cluster, node: u32) {
        cluster.nodes[node as usize].resume();
    }

    fn set_skew(&mut self, _cluster: &mut Cluster, _node: u32, _skew_ms: i64) {
        unreachable!("skews are skipped")
    }

    /// Only ever turned off (at the heal): failing disks are skipped.
    fn fail_disk(&mut self, _cluster: &mut Cluster, _node: u32, writes: bool, syncs: bool) {
        assert!(!writes && !syncs, "failing disks are skipped");
    }

    fn leave(&mut self, _cluster: &mut Cluster, _node: u32) {
        unreachable!("membership changes are skipped")
    }

    fn rejoin(&mut self, _cluster: &mut Cluster, _node: u32) {
        unreachable!("membership changes are skipped")
    }

    /// The proxy takes the whole state at once, whatever changed.
    fn set_links(&mut self, cluster: &mut Cluster, _change: LinkChange, links: &LinkFaults) {
        if let Some(proxy) = &cluster.links {
            let cut = links.cut().collect();
            let loss_ppm = links.loss_ppm();
            let latency_ms_max = links.latency_ms_max().unwrap_or(0);
            proxy.update(|s| {
                s.cut = cut;
                s.loss_ppm = loss_ppm;
                s.latency_ms_max = latency_ms_max;
            });
        }
    }
}
