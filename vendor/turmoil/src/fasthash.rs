//! A fast, deterministic hasher for turmoil's maps (patch; see PATCHES.md).
//!
//! `Sim::step` looks hosts, runtimes, links and sockets up by address several times per host per
//! tick, and the default SipHash was several percent of a simulation's time. These maps are
//! `IndexMap`s, whose iteration order is the insertion order whatever the hasher, so a different
//! hasher changes no simulation's behaviour. The mixing is rustc's `FxHasher`: the keys are
//! addresses and small integers chosen by the simulation itself, not by an adversary.

use std::hash::{BuildHasherDefault, Hasher};

/// `IndexMap`'s hasher for turmoil's hot maps.
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

/// An `IndexMap` with [`FastBuild`].
pub(crate) type FastIndexMap<K, V> = indexmap::IndexMap<K, V, FastBuild>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}
