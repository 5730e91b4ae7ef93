//! The final state of each key: the `replica-state` events, and the reads invoked after
//! `phase: final`, indexed by key.

use crate::history::{History, KeyIdx, SiblingRec, Status};

/// Per key, its replica states and its ok final reads.
#[derive(Debug, Default)]
pub(crate) struct Finals {
    replica_start: Vec<u32>,
    replica_idx: Vec<u32>,
    read_start: Vec<u32>,
    read_idx: Vec<u32>,
}

/// Groups `items` (key, value) by key, keeping their order within a key: (starts, values).
fn group(keys: usize, items: impl Iterator<Item = (KeyIdx, u32)> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut start = vec![0u32; keys + 1];
    for (k, _) in items.clone() {
        start[k.0 as usize + 1] += 1;
    }
    for i in 0..keys {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut out = vec![0u32; start[keys] as usize];
    for (k, v) in items {
        out[fill[k.0 as usize] as usize] = v;
        fill[k.0 as usize] += 1;
    }
    (start, out)
}

impl Finals {
    pub(crate) fn build(h: &History) -> Finals {
        let keys = h.keys.len();
        let (replica_start, replica_idx) = group(
            keys,
            h.replicas
                .iter()
                .enumerate()
                .map(|(i, r)| (r.key, i as u32)),
        );
        let (read_start, read_idx) = group(
            keys,
            h.reads
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_final && r.status == Status::Ok)
                .map(|(i, r)| (r.key, i as u32)),
        );
        Finals {
            replica_start,
            replica_idx,
            read_start,
            read_idx,
        }
    }

    /// The replica-state events of a key (indexes into `History::replicas`).
    pub(crate) fn replicas(&self, k: KeyIdx) -> &[u32] {
        let k = k.0 as usize;
        &self.replica_idx[self.replica_start[k] as usize..self.replica_start[k + 1] as usize]
    }

    /// The ok final reads of a key (indexes into `History::reads`).
    pub(crate) fn final_reads(&self, k: KeyIdx) -> &[u32] {
        let k = k.0 as usize;
        &self.read_idx[self.read_start[k] as usize..self.read_start[k + 1] as usize]
    }

    /// Whether the key has a final state to judge it by: a replica state or an ok final read.
    pub(crate) fn has_state(&self, k: KeyIdx) -> bool {
        !self.replicas(k).is_empty() || !self.final_reads(k).is_empty()
    }

    /// Every sibling of the key's final state (replica states, then final reads).
    pub(crate) fn siblings<'a>(
        &'a self,
        h: &'a History,
        k: KeyIdx,
    ) -> impl Iterator<Item = &'a SiblingRec> + 'a {
        self.replicas(k)
            .iter()
            .flat_map(move |&i| h.siblings(h.replicas[i as usize].siblings))
            .chain(
                self.final_reads(k)
                    .iter()
                    .flat_map(move |&r| h.siblings(h.reads[r as usize].siblings)),
            )
    }
}
