//! Storage: the `Storage` trait the node's shell persists key states through, and its two
//! implementations.
//!
//! The store is a plain byte map (key bytes to value bytes): the node encodes each key's sibling set
//! itself, so the engine knows nothing of versions and can be swapped (Dynamo's pluggable local
//! persistence engines). Writes are buffered until `sync`; the node's fsync policy decides when to
//! call it, and a crash may lose anything written since the last `sync`.
//!
//! - [`memory::MemoryStore`]: a `BTreeMap`, for unit tests of the core.
//! - [`log::LogStore`]: the default, a log-structured store in the style of Bitcask.
//! - [`identity`]: the data directory's lock and identity file (one node, one directory).
//! - [`clean`]: the clean-shutdown marker, which says whether the last incarnation stopped cleanly
//!   (every start takes a new actor id; the marker decides the reason given).

pub mod clean;
pub mod identity;
pub mod keyspace;
pub mod log;
pub mod memory;

use crate::fs::{DetachedSync, FileSystem, FsFile};
use std::io;
use std::path::Path;

/// Reads a small file of the data directory whole, or `None` if it is longer than `bytes_max`:
/// at most one byte past the bound is read, never the whole file, since a damaged directory's
/// file could be huge (or a link to /dev/zero, which read a node out of memory).
pub(crate) fn read_small_file<F: FileSystem>(
    fs: &F,
    path: &Path,
    bytes_max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let file = fs.open(path, false)?;
    let mut bytes = vec![0u8; bytes_max + 1];
    let mut filled = 0;
    while filled < bytes.len() {
        let read = file.read_at(&mut bytes[filled..], filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    bytes.truncate(filled);
    Ok((filled <= bytes_max).then_some(bytes))
}

/// Figures of one compaction, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Live records copied into the new file.
    pub records_kept: u64,
    /// Bytes of data files before compaction.
    pub bytes_before: u64,
    /// Bytes of data files after compaction.
    pub bytes_after: u64,
}

/// A local key-value engine. Keys are iterated in byte order so that anything built from them
/// (Merkle trees, final replica states) is deterministic.
pub trait Storage: Send {
    /// The current value of `key`, including writes not yet synced.
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`. Durable only after the next [`Storage::sync`].
    fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;
    /// Removes `key` (a tombstone record in the log). Durable only after the next sync.
    fn remove(&mut self, key: &[u8]) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Begins making every write so far durable: either syncs here and returns `None`, or
    /// returns a sync for another thread to run ([`DetachedSync`]), after which those writes are
    /// durable. Later writes may go on meanwhile. A detached sync that fails leaves the store's
    /// state unknown, as a failed [`Storage::sync`] does: the caller must stop using it.
    fn begin_sync(&mut self) -> io::Result<Option<DetachedSync>> {
        self.sync().map(|()| None)
    }
    /// Every live key, in byte order.
    fn keys(&self) -> Vec<Vec<u8>>;
    /// Rewrites the data so that only the newest value of each live key remains.
    fn compact(&mut self) -> io::Result<CompactionStats>;
    /// A small value kept apart from the data, by `name` (ASCII capitals), if it was ever written.
    fn read_apart(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Writes a small value apart from the data, durably before it returns. For what must
    /// outlive damage to the data (the node's actor id): a lost or damaged data file cannot take
    /// it along, as Riak keeps a vnode's id in a file of its own.
    fn write_apart(&mut self, name: &str, value: &[u8]) -> io::Result<()>;
}

/// Longest value kept apart ([`Storage::write_apart`]): an actor id is at most 64 bytes. A file
/// apart longer than this is damage, read no further (a damaged or tampered data directory's
/// `ACTOR` of a few GB would otherwise be read whole into memory at start).
pub const APART_BYTES_MAX: usize = 4 * 1024;

/// Checks a name of [`Storage::write_apart`]: ASCII capitals, so that it can never be a data file's.
pub fn check_apart_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a name for a value kept apart (1-32 ASCII capitals)"),
        ));
    }
    Ok(())
}
