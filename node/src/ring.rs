//! PLACEHOLDER until the ring module lands.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
pub type NodeId = String;
pub const PARTITION_COUNT_DEFAULT: u32 = 64;
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring { owners: Vec<NodeId>, members: BTreeMap<NodeId, u32> }
impl Ring {
    pub fn new(q: u32, members: &BTreeMap<NodeId, u32>) -> Ring {
        let names: Vec<_> = members.keys().cloned().collect();
        Ring { owners: (0..q as usize).map(|i| names[i % names.len()].clone()).collect(), members: members.clone() }
    }
    pub fn members(&self) -> &BTreeMap<NodeId, u32> { &self.members }
    pub fn preference_list(&self, key: &[u8], n: usize) -> Vec<NodeId> {
        let h = key.iter().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(*b as usize));
        let mut out = Vec::new();
        for i in 0..self.owners.len() {
            let o = &self.owners[(h + i) % self.owners.len()];
            if !out.contains(o) && out.len() < n { out.push(o.clone()); }
        }
        out
    }
}
