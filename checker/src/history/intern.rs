//! Interning: every distinct string, value and version of a history is stored once, and events refer
//! to it by a 32-bit id.
//!
//! A million-operation history names the same write ids, keys, nodes and versions again and again (a
//! write appears in its invoke, its completion, every read that returns it and every replica that
//! holds it). Owned strings and maps per occurrence would cost gigabytes; one arena per kind plus a
//! hash table of ids costs little more than the distinct text.
//!
//! Interning is the parser's hottest loop, so the hash is a small multiplicative one (Fx, as in
//! rustc) with a final mix, instead of SipHash: the input is our own history, not an adversary's.
//! It has no per-process seed, so ids, and so every output, are the same on every run.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use hashbrown::HashTable;

/// Fx: per word, rotate, xor, multiply. `finish` mixes the result so that the low bits (the bucket
/// index) depend on every input bit.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // fmix64 of MurmurHash3.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The hasher of every table in the checker: deterministic, fast.
pub(crate) type FixedState = BuildHasherDefault<FxHasher>;

/// An interned string: a key, a write id or a node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Sym(pub u32);

/// An interned JSON value, kept as its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ValId(pub u32);

/// An interned version (dot and clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct VerId(pub u32);

/// Distinct strings in one arena.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    text: String,
    /// id -> (start, end) in `text`.
    spans: Vec<(usize, usize)>,
    table: HashTable<u32>,
    hasher: FixedState,
}

impl Interner {
    /// The id of `s`, adding it if new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        let hash = self.hasher.hash_one(s);
        let Interner {
            text,
            spans,
            table,
            hasher,
        } = self;
        let found = table.find(hash, |&id| {
            let (a, b) = spans[id as usize];
            &text[a..b] == s
        });
        if let Some(&id) = found {
            return id;
        }
        let id = u32::try_from(spans.len()).expect("fewer than 2^32 distinct strings");
        let start = text.len();
        text.push_str(s);
        spans.push((start, text.len()));
        table.insert_unique(hash, id, |&other| {
            let (a, b) = spans[other as usize];
            hasher.hash_one(&text[a..b])
        });
        id
    }

    /// The id of `s` if it was interned.
    pub(crate) fn lookup(&self, s: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(s);
        self.table
            .find(hash, |&id| {
                let (a, b) = self.spans[id as usize];
                &self.text[a..b] == s
            })
            .copied()
    }

    /// The string of `id`.
    pub(crate) fn get(&self, id: u32) -> &str {
        let (a, b) = self.spans[id as usize];
        &self.text[a..b]
    }

    /// The number of strings interned (every id is below it).
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// A version: its dot, if any, and its clock, a slice of the shared entry arena sorted by node id
/// with no zero counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionRec {
    pub dot: Option<(Sym, u64)>,
    pub start: u32,
    pub len: u32,
}

/// Distinct versions.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    pub recs: Vec<VersionRec>,
    pub entries: Vec<(Sym, u64)>,
    table: HashTable<u32>,
    hasher: FixedState,
}

fn hash_version(hasher: &FixedState, dot: Option<(Sym, u64)>, clock: &[(Sym, u64)]) -> u64 {
    let mut h = hasher.build_hasher();
    dot.hash(&mut h);
    clock.hash(&mut h);
    h.finish()
}

impl Versions {
    /// The id of the version (`dot`, `clock`); `clock` must be sorted by node with no zero counter.
    pub(crate) fn intern(&mut self, dot: Option<(Sym, u64)>, clock: &[(Sym, u64)]) -> VerId {
        debug_assert!(clock.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(clock.iter().all(|&(_, c)| c > 0));
        let hash = hash_version(&self.hasher, dot, clock);
        let Versions {
            recs,
            entries,
            table,
            hasher,
        } = self;
        let slice = |r: &VersionRec| &entries[r.start as usize..(r.start + r.len) as usize];
        if let Some(&id) = table.find(hash, |&id| {
            let r = &recs[id as usize];
            r.dot == dot && slice(r) == clock
        }) {
            return VerId(id);
        }
        let id = u32::try_from(recs.len()).expect("fewer than 2^32 distinct versions");
        let start = u32::try_from(entries.len()).expect("fewer than 2^32 clock entries");
        let len = u32::try_from(clock.len()).expect("a clock of fewer than 2^32 entries");
        entries.extend_from_slice(clock);
        recs.push(VersionRec { dot, start, len });
        table.insert_unique(hash, id, |&other| {
            let r = &recs[other as usize];
            hash_version(
                hasher,
                r.dot,
                &entries[r.start as usize..(r.start + r.len) as usize],
            )
        });
        VerId(id)
    }

    pub(crate) fn rec(&self, id: VerId) -> VersionRec {
        self.recs[id.0 as usize]
    }

    /// The clock entries of a version, sorted by node id.
    pub(crate) fn clock(&self, id: VerId) -> &[(Sym, u64)] {
        let r = self.recs[id.0 as usize];
        &self.entries[r.start as usize..(r.start + r.len) as usize]
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.recs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_intern_once() {
        let mut i = Interner::default();
        let a = i.intern("p1-1");
        let b = i.intern("cart-7");
        assert_eq!(i.intern("p1-1"), a);
        assert_ne!(a, b);
        assert_eq!(i.get(b), "cart-7");
        assert_eq!(i.lookup("cart-7"), Some(b));
        assert_eq!(i.lookup("nope"), None);
        for n in 0..10_000 {
            i.intern(&format!("w{n}"));
        }
        assert_eq!(i.get(a), "p1-1");
        assert_eq!(i.len(), 10_002);
    }

    #[test]
    fn versions_intern_once() {
        let mut v = Versions::default();
        let a = v.intern(Some((Sym(1), 3)), &[]);
        let b = v.intern(Some((Sym(1), 4)), &[]);
        let c = v.intern(None, &[(Sym(0), 2), (Sym(1), 4)]);
        assert_ne!(a, b);
        assert_eq!(v.intern(Some((Sym(1), 3)), &[]), a);
        assert_eq!(v.intern(None, &[(Sym(0), 2), (Sym(1), 4)]), c);
        assert_eq!(v.clock(c), &[(Sym(0), 2), (Sym(1), 4)]);
        assert_eq!(v.len(), 3);
    }
}
