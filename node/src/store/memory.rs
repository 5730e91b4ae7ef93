//! An in-memory [`Storage`]: a `BTreeMap`. Nothing survives a drop; `sync` is a no-op. For unit tests
//! of the protocol core, where the disk is beside the point.

use super::{CompactionStats, Storage};
use std::collections::BTreeMap;
use std::io;

/// A `BTreeMap` behind the [`Storage`] trait.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    apart: BTreeMap<String, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Storage for MemoryStore {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn remove(&mut self, key: &[u8]) -> io::Result<()> {
        self.map.remove(key);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn keys(&self) -> Vec<Vec<u8>> {
        self.map.keys().cloned().collect()
    }
    fn compact(&mut self) -> io::Result<CompactionStats> {
        Ok(CompactionStats {
            records_kept: self.map.len() as u64,
            ..CompactionStats::default()
        })
    }
    fn read_apart(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        super::check_apart_name(name)?;
        Ok(self.apart.get(name).cloned())
    }
    fn write_apart(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        super::check_apart_name(name)?;
        self.apart.insert(name.to_owned(), value.to_vec());
        Ok(())
    }
}
