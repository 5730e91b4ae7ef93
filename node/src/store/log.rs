//! PLACEHOLDER until the log store lands.
use super::{CompactionStats, Storage, memory::MemoryStore};
use crate::fs::FileSystem;
use std::io;
use std::path::Path;
#[derive(Default)]
pub struct LogOptions {}
pub struct RecoveryReport { pub records: u64, pub truncated_bytes: u64 }
pub struct LogStore<F> { m: MemoryStore, _f: F }
impl<F: FileSystem> LogStore<F> {
    pub fn open(fs: F, _dir: &Path, _o: LogOptions) -> io::Result<(Self, RecoveryReport)> {
        Ok((LogStore { m: MemoryStore::new(), _f: fs }, RecoveryReport { records: 0, truncated_bytes: 0 }))
    }
}
impl<F: FileSystem> Storage for LogStore<F> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> { self.m.get(key) }
    fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> { self.m.put(key, value) }
    fn remove(&mut self, key: &[u8]) -> io::Result<()> { self.m.remove(key) }
    fn sync(&mut self) -> io::Result<()> { Ok(()) }
    fn keys(&self) -> Vec<Vec<u8>> { self.m.keys() }
    fn compact(&mut self) -> io::Result<CompactionStats> { self.m.compact() }
}
