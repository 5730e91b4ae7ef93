//! The final state of each key: its `replica-state` events and nothing else (history-format.md:
//! "These events, and nothing else, are the final state: reads made after `phase final` are ordinary
//! reads"), indexed by key.
//!
//! A node that reports the same key twice is judged by its last report (the page has one event per
//! key and replica; a later report is the later state). Every report still counts for phantom reads
//! and failed writes, which look at every sibling a replica ever showed.

use super::ByKey;
use crate::history::{History, KeyIdx, SiblingRec};

/// Per key, its replica states (the last one per node, in history order).
#[derive(Debug, Default)]
pub(crate) struct Finals(ByKey);

impl Finals {
    pub(crate) fn build(h: &History) -> Finals {
        let keys = h.keys.len();
        let all = h.replicas.iter().enumerate();
        let all = ByKey::build(keys, all.map(|(i, r)| (i as u32, r.key)));
        // Keep the last report of each node: compact each key's range in place.
        let mut out_idx = Vec::with_capacity(h.replicas.len());
        let mut out_start = vec![0u32; keys + 1];
        for k in 0..keys {
            let range = all.of(KeyIdx(k as u32));
            for (j, &i) in range.iter().enumerate() {
                let node = h.replicas[i as usize].node;
                let later = range[j + 1..]
                    .iter()
                    .any(|&l| h.replicas[l as usize].node == node);
                if !later {
                    out_idx.push(i);
                }
            }
            out_start[k + 1] = out_idx.len() as u32;
        }
        Finals(ByKey {
            start: out_start,
            idx: out_idx,
        })
    }

    /// The replica-state events of a key that count (indexes into `History::replicas`): the last
    /// one of each node.
    pub(crate) fn replicas(&self, k: KeyIdx) -> &[u32] {
        self.0.of(k)
    }

    /// Whether the key has a final state: a replica-state event.
    pub(crate) fn has_state(&self, k: KeyIdx) -> bool {
        !self.replicas(k).is_empty()
    }

    /// Every sibling of the key's final state, replica by replica.
    pub(crate) fn siblings<'a>(
        &'a self,
        h: &'a History,
        k: KeyIdx,
    ) -> impl Iterator<Item = &'a SiblingRec> + 'a {
        self.replicas(k)
            .iter()
            .flat_map(move |&i| h.siblings(h.replicas[i as usize].siblings))
    }
}
