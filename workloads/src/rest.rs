//! When a healed cluster is at rest: what ends the quiesce before its time.
//!
//! After the heal the harness leaves the cluster alone, so that hinted handoff, hand-over and
//! anti-entropy bring every replica to the same state before the final reads. A fixed wait of
//! `quiesce_ms` was a fifth of a nightly run's simulated time, although most clusters agree
//! within a second or two. One status per node tells when nothing is left to move (no hint, no key
//! held for another owner, no request in flight, one ring, and the same Merkle root on every
//! replica of every partition), and [`Rest`] ends the quiesce once that has held, unchanged, for
//! [`REST_CONFIRM_MS`]. Equal roots mean equal clocks, dots and contexts on the replicas (the
//! Merkle digest does not hash values): enough to know that nothing moves any more; the final
//! replica states, read in full, are what the checker judges. A cluster that never gets there (a node without repair, a divergence) waits
//! the whole `quiesce_ms`, as before. The sim and `dynamo live` share this rule.

use dynamo_node::client::Client;
use dynamo_node::env::Env;
use dynamo_node::ring::Ring;
use dynamo_node::shell::LINK_PENDING_MS_MAX;
use dynamo_node::wire::NodeStatus;

/// How long a cluster must stay at rest, unchanged, before the quiesce ends: longer than anything
/// sent before it can still arrive. A peer link that is re-dialing keeps its messages for up to
/// [`LINK_PENDING_MS_MAX`] (a status cannot show them, and a forwarded put among them would start
/// a new round), then they travel a slow link's latency (at most 299 ms); a coordinator's round
/// ends by its deadline, and rounds in flight are in the status.
pub const REST_CONFIRM_MS: u64 = LINK_PENDING_MS_MAX + 500;

/// Whether the statuses of every node show a cluster with nothing left to move. `statuses` must
/// hold one status per node of the cluster, members or not; `n` is the replica count.
pub fn at_rest(statuses: &[NodeStatus], n: usize) -> bool {
    let Some(first) = statuses.first() else {
        return true;
    };
    let ring: &Ring = &first.ring;
    if statuses.iter().any(|s| {
        s.ring != *ring || s.hints_pending > 0 || s.handoff_keys > 0 || s.requests_in_flight > 0
    }) {
        return false;
    }
    let root = |status: &NodeStatus, partition: u32| {
        status
            .merkle_roots
            .binary_search_by_key(&partition, |&(p, _)| p)
            .ok()
            .map(|i| status.merkle_roots[i].1)
    };
    if !ring
        .members()
        .keys()
        .all(|member| statuses.iter().any(|s| s.id == *member))
    {
        // A member did not answer: the caller's statuses are incomplete.
        return false;
    }
    (0..ring.partition_count()).all(|partition| {
        let replicas = ring.partition_preference_list(partition, n);
        let expected = statuses
            .iter()
            .find(|s| replicas.contains(&s.id))
            .map(|s| root(s, partition));
        // Every replica holds the same tree; every other node holds nothing of the partition.
        statuses.iter().all(|s| {
            let r = root(s, partition);
            if replicas.contains(&s.id) {
                Some(r) == expected
            } else {
                r.is_none()
            }
        })
    })
}

/// One status from each node, asked all at once; `None` when one did not answer.
pub async fn status_round<E: Env>(admins: &mut [Client<E>]) -> Option<Vec<NodeStatus>> {
    let round = futures::future::join_all(admins.iter_mut().map(|a| a.status())).await;
    round.into_iter().map(Result::ok).collect()
}

/// Each node's Merkle roots, by partition, in node order.
type Roots = Vec<Vec<(u32, u64)>>;

/// Watches a healed cluster, one round of statuses at a time, for rest that lasts.
#[derive(Debug, Default)]
pub struct Rest {
    /// Since when (ms on the caller's clock) the cluster has been at rest, and its roots then.
    since: Option<(u64, Roots)>,
}

impl Rest {
    /// Takes one round of statuses (`None` when a node did not answer) at `now_ms`; true once the
    /// cluster has been at rest, with the same roots everywhere, for [`REST_CONFIRM_MS`].
    pub fn observe(&mut self, now_ms: u64, statuses: Option<&[NodeStatus]>, n: usize) -> bool {
        let Some(statuses) = statuses.filter(|s| at_rest(s, n)) else {
            self.since = None;
            return false;
        };
        let roots: Roots = statuses.iter().map(|s| s.merkle_roots.clone()).collect();
        match &self.since {
            Some((since_ms, before)) if *before == roots => {
                now_ms.saturating_sub(*since_ms) >= REST_CONFIRM_MS
            }
            _ => {
                self.since = Some((now_ms, roots));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_node::ring::NodeId;
    use std::collections::BTreeMap;

    fn ring() -> Ring {
        let members: BTreeMap<NodeId, u32> = ["n1", "n2", "n3", "n4"]
            .iter()
            .map(|n| ((*n).into(), 1))
            .collect();
        Ring::new(8, &members)
    }

    /// Statuses of a cluster where every replica of every partition holds root `partition`.
    fn quiet() -> Vec<NodeStatus> {
        let ring = ring();
        ring.members()
            .keys()
            .map(|id| NodeStatus {
                id: id.clone(),
                actor: id.to_string(),
                members: ring.members().keys().cloned().collect(),
                requests_in_flight: 0,
                keys: 0,
                unreachable: vec![],
                hints_pending: 0,
                hints_delivered: 0,
                ae_exchanges: 0,
                ae_keys_repaired: 0,
                read_repairs_sent: 0,
                ring: ring.clone(),
                handoff_keys: 0,
                merkle_roots: (0..ring.partition_count())
                    .filter(|&p| ring.partition_preference_list(p, 3).contains(id))
                    .map(|p| (p, u64::from(p) + 100))
                    .collect(),
                n: 3,
                r: 2,
                w: 2,
                sloppy_quorum: true,
                peers: vec![],
            })
            .collect()
    }

    #[test]
    fn a_cluster_whose_replicas_agree_is_at_rest() {
        assert!(at_rest(&quiet(), 3));
        // A partition nobody stores is at rest too.
        let mut statuses = quiet();
        for s in &mut statuses {
            s.merkle_roots.retain(|&(p, _)| p != 3);
        }
        assert!(at_rest(&statuses, 3));
    }

    #[test]
    fn anything_left_to_move_is_not_rest() {
        let changes: [fn(&mut Vec<NodeStatus>); 7] = [
            |s| s[1].hints_pending = 1,
            |s| s[2].handoff_keys = 1,
            |s| s[0].requests_in_flight = 1,
            |s| s[3].ring = s[3].ring.without_member("n1"),
            // One replica differs, or lacks the partition.
            |s| s[0].merkle_roots[0].1 ^= 1,
            |s| {
                s[0].merkle_roots.remove(0);
            },
            // A node outside a partition's preference list still holds some of it.
            |s| {
                let ring = ring();
                let outsider = (0..ring.partition_count())
                    .find(|&p| !ring.partition_preference_list(p, 3).contains(&s[0].id))
                    .unwrap();
                s[0].merkle_roots.push((outsider, 1));
                s[0].merkle_roots.sort();
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut statuses = quiet();
            change(&mut statuses);
            assert!(
                !at_rest(&statuses, 3),
                "change {i} left the cluster at rest"
            );
        }
        // A member that did not answer.
        let statuses = quiet();
        assert!(!at_rest(&statuses[1..], 3));
    }

    #[test]
    fn rest_must_last_unchanged() {
        let mut rest = Rest::default();
        let statuses = quiet();
        assert!(!rest.observe(0, Some(&statuses), 3));
        assert!(!rest.observe(REST_CONFIRM_MS - 1, Some(&statuses), 3));
        assert!(rest.observe(REST_CONFIRM_MS, Some(&statuses), 3));
        // A node that does not answer starts the wait again, and so do changed roots.
        let mut rest = Rest::default();
        assert!(!rest.observe(0, Some(&statuses), 3));
        assert!(!rest.observe(300, None, 3));
        assert!(!rest.observe(REST_CONFIRM_MS, Some(&statuses), 3));
        let mut changed = quiet();
        for s in &mut changed {
            for root in &mut s.merkle_roots {
                root.1 += 1;
            }
        }
        assert!(!rest.observe(2 * REST_CONFIRM_MS, Some(&changed), 3));
        assert!(rest.observe(3 * REST_CONFIRM_MS, Some(&changed), 3));
    }
}
