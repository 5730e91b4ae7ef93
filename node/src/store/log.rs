//! The log-structured store: the default [`Storage`], in the style of Bitcask (Riak's default
//! backend).
//!
//! Why this shape: every write is one append, so a write costs one sequential I/O and a crash can
//! only tear the end of the newest file; every read is one positioned read, because an in-memory
//! key directory knows where each key's newest record is. The price is memory for every key, and
//! dead records that only [`LogStore::compact`] reclaims.
//!
//! # Files
//!
//! A store is a directory of data files named by a growing file id, `000001.data`, `000002.data`,
//! ... (ids are compared as numbers, so the width is only cosmetic). Records are only ever appended
//! to the newest file, the *active* one; when it would grow past [`LogOptions::max_file_bytes`] it is
//! synced and a new file is started (*rollover*). `NNNNNN.compact` files are the unfinished output
//! of a compaction. The `MANIFEST` names the range of data file ids that must exist, so that a lost
//! file is noticed, and the store's id (see "A copied or swapped file" below): written (atomically
//! and durably) when the store is created, at each rollover and when a compaction commits. Other
//! files in the directory are ignored.
//!
//! # Records
//!
//! ```text
//! crc32 (u32 LE) | flags (u8) | key length (u32 LE) | value length (u32 LE) | key | value
//! ```
//!
//! The crc32 covers everything after itself, so a torn or decayed record, header included, fails
//! the check. Flags: bit 0 marks a tombstone (a removal, with an empty value); other bits must be
//! zero. Lengths are bounded by [`RECORD_KEY_BYTES_MAX`] and [`RECORD_VALUE_BYTES_MAX`], so that a damaged
//! length is recognised as damage and never makes recovery read or allocate gigabytes. There is no
//! file header (a file the store appends to starts with a file-start record, below): a future
//! format would use a new file extension.
//!
//! # Durability and recovery
//!
//! `put` and `remove` append without syncing; [`Storage::sync`] syncs the active file. Rollover
//! syncs the old file, then creates the new one, syncs the directory and updates the manifest, so
//! every file but the newest was completely durable before a newer one existed.
//!
//! Recovery ([`LogStore::open`]) replays the data files in id order into the key directory, and
//! sorts what it cannot read into three kinds, each reported in the [`RecoveryReport`] and logged
//! with the file, the offset and the bytes:
//! - **A torn tail**: damage at the very end of the newest file, with no good record after it: the
//!   write a crash interrupted. The file is cut back to its last good record, and the cut synced.
//! - **Corruption**: a bad record with good records after it, in any file, or damage at the end
//!   of an older file (synced before the next file existed, so not a torn write). Recovery keeps
//!   every good record: it looks for the next offset where a record's header decodes and its crc
//!   matches, skips only the bytes before it, and goes on (bounded, see
//!   `record::RESYNC_WORK_BYTES_MAX`). It does not refuse to start: a Dynamo node's replicas,
//!   anti-entropy and read repair refill what it lost, and a node that refuses to start is a
//!   replica lost for good. Riak's bitcask makes the same choice.
//! - **Lost files**: a data file the manifest says exists but is missing (the newest, or one in
//!   the middle), or a missing or unreadable manifest beside data files. A directory with no data
//!   is a new store, not damage. A manifest whose first file is missing while older files are
//!   there is not this directory's (another store's, or a later one restored beside older files)
//!   and counts as unreadable: trusted, it would have every file removed as superseded.
//! - **Shortened files**: a file other than the newest found shorter than the manifest recorded
//!   it when it was sealed (rollover or compaction), even if cut exactly at a record boundary.
//! - **An emptied newest file**: every file the store creates starts with a file-start record (a
//!   tombstone of a key that names the file's id, which no caller's key is), synced before the
//!   manifest names the file; a newest file the manifest names found empty was emptied (`truncate
//!   -s 0`), and its records are lost.
//! - **A copied or swapped file**: a file whose file-start record names another id is a copy of
//!   that file (a duplicated or swapped file, a restore that mixed up files); one whose record
//!   names another store is a file of another store's directory (another node's, or this node's
//!   before its disk was lost) copied in, whatever its name. Replayed, its records would take
//!   keys back to versions the store had moved on from, or bring keys it never held; none is
//!   replayed, and the file is skipped as damage, named (its records, and those of the file it
//!   replaced, are lost). The store's id is made when the store is created (by the caller of
//!   [`LogStore::open`], from the environment's randomness) and kept in the manifest, which is
//!   trusted over the files; with no manifest naming it (lost, unreadable, or of the format
//!   before store ids), the id the files name is the store's. Files that name two stores then,
//!   or a file naming a store below one of the format before store ids, are left by no crash,
//!   and nothing says which files are this store's: the store refuses to open, naming them,
//!   rather than skip its own records or replay another store's (`recovery`,
//!   `check_files_name_one_store`). Files of a store written before records named their store
//!   (the file id alone) cannot be checked against other stores, nor those written before
//!   records named their file (a tombstone of the empty key) at all; such a store takes an id
//!   when it is next opened.
//!
//! Any of these is lost data ([`RecoveryReport::lost_data`]): the node then takes a new actor id,
//! since the lost records may hold the highest counters it issued (`crate::shell::open_storage`).
//! Before any repair makes the loss durable (a cut, a rewritten manifest, a compaction), recovery
//! writes a loss marker (`LOSS`), and only [`LogStore::loss_handled`], which the node calls once
//! its new actor id is stored, removes it: a crash in between reports the loss again at the next
//! start, although the repaired files then look clean.
//!
//! Not noticed here: the newest file cut exactly at a record boundary past its first record reads
//! as a clean end. Nothing durable here says how far it had grown (the manifest records a file's
//! length only when it is sealed; recording the active file's would cost a second fsync per step).
//! The clean-shutdown marker says where a clean stop left the log (`crate::store::clean`), and
//! the node takes a new actor id on every start anyway, so the lost records' counters are never
//! issued again.
//!
//! After skipping corruption or finding a hole in the file sequence, recovery compacts the store
//! before it serves or appends anything: the damaged bytes go away with their files, and nothing
//! is ever appended behind damage, where a later recovery could read the damage differently and
//! lose the new records with it. A torn tail needs no compaction: the cut removes it.
//!
//! A record that fails its check when read later (decay after recovery) is an `InvalidData` error
//! from [`Storage::get`]; the node's keyspace reports the key as lost, and the node drops it and
//! takes a new actor before its next version (`crate::store::keyspace`).
//!
//! Recovery ends by syncing the newest file and the directory, so that nothing the reopened store
//! serves can still be lost by a later crash.
//!
//! # Compaction
//!
//! [`Storage::compact`] copies the newest record of every live key into new files with higher ids,
//! and drops tombstones and overwritten records. It is crash-safe because of its order of steps:
//! 1. Sync the active file (everything before the output must be durable; see above).
//! 2. Write the output under temporary names `NNNNNN.compact`, rolling over like the log, and sync
//!    each output file. A crash here leaves `.compact` files that recovery deletes.
//! 3. Rename them to `NNNNNN.data`, create a fresh active file, and sync the directory: the commit.
//!    Replaying the old files and then the output gives the same state as the old files alone,
//!    since the output holds exactly the newest value of each live key. That is true of any subset
//!    of the output too, so a crash in the middle of the renames is also safe.
//! 4. Write the manifest naming the output and the active file; from then on the old files are
//!    superseded, and recovery deletes any it finds.
//! 5. Remove the old files oldest first, syncing the directory after each one. (Before the
//!    manifest existed, a crash here left the newest old files for recovery to replay, and that
//!    order made it safe: a key whose newest record was in a removed file is either live, so the
//!    output has it, or removed, so no remaining file mentions it.)
//!
//! # Limits
//!
//! Every key lives in memory with its location (as in Bitcask). Every data file stays open for
//! reads. After any failed write, sync or compaction the store refuses further writes (see
//! [`LogStore`]); reopening it recovers. Damage that cuts the newest file exactly at a record
//! boundary looks like a crash that lost unsynced appends and is not noticed: its length is not
//! recorded anywhere durable (that would cost a second write per sync). The manifest records the
//! length of every other file.
//!
//! # Layout
//!
//! - This file: the [`LogStore`] type, its options and figures, reads, and the [`Storage`]
//!   implementation.
//! - `recovery`: [`LogStore::open`] and the [`RecoveryReport`] it returns.
//! - `writer`: appends to the active file, its syncs and rollover, and refusing writes after a
//!   failed one.
//! - `compaction`: the steps of [`Storage::compact`].
//! - `files`: file names and the manifest; `record`: the record format and the scan that reads a
//!   file back; [`damage`]: damage at rest, for the tests and the nemesis.

mod compaction;
pub mod damage;
mod files;
mod record;
mod recovery;
mod writer;

pub use compaction::COMPACTION_SYNC_BYTES;
pub use recovery::{
    LogEnd, ManifestState, RECOVERY_ITEMS_REPORTED_MAX, RecoveryReport, ShortenedFile, SkippedRange,
};

use super::{CompactionStats, Storage};
use crate::fs::{DetachedSync, FileSystem, FsFile};
use files::{FileKind, Manifest, file_path};
use record::{decode_record, encode_record};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The largest key, in bytes. Every key is held in memory by the key directory, so keys must stay
/// small; this is far above what the node writes (a short prefix and a client key).
///
/// It bounds the keys of records, not those of requests, so it is not the wire's
/// [`crate::wire::KEY_BYTES_MAX`] (4 KiB), and it differs from it on purpose: the node stores a
/// client's key under a namespace prefix, and a hint's key under the owner's name too
/// (`crate::store::keyspace`), so a stored key is longer than any the wire takes; and it is part
/// of the file format (recovery takes a longer key length for damage), so it must not move when
/// the wire's bound does: records already on disk would turn into damage.
pub const RECORD_KEY_BYTES_MAX: usize = 64 * 1024;

/// The largest value of a record, in bytes. `get` and compaction hold a whole value in memory, so
/// values are bounded. Not the wire's `VALUE_BYTES_MAX` (1 MiB, one client value): a record holds a
/// key's whole state, many siblings of large client values; and like the key bound it is part of
/// the file format.
pub const RECORD_VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The default rollover size of a data file. Large enough that rollovers (each costing a few
/// syncs) are rare, small enough that compaction and recovery work in pieces of a sensible size.
pub const MAX_FILE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// The id of the first data file of a new store.
const FILE_ID_FIRST: u32 = 1;

/// Settings of a [`LogStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// A data file that would grow past this many bytes is synced and a new one started. A record
    /// larger than this gets a file of its own. Must be at least 1.
    pub max_file_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            max_file_bytes: MAX_FILE_BYTES_DEFAULT,
        }
    }
}

/// Figures of a [`LogStore`] at a moment, for deciding when to compact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Data files, the active one included.
    pub files: u32,
    /// Live keys.
    pub keys: u64,
    /// Bytes of all data files.
    pub bytes: u64,
    /// Bytes of the records that hold the live keys' values; `bytes - live_bytes` is what a
    /// compaction would reclaim.
    pub live_bytes: u64,
}

/// Where the newest record of a live key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    file_id: u32,
    /// Offset of the record's first byte in its file.
    offset: u64,
    /// Size of the whole record, header included.
    record_bytes: u32,
}

/// An open data file.
struct DataFile<H> {
    handle: H,
    /// Length of the file as far as this store knows: the end of its last good record (or of
    /// skipped damage, in a file that recovery then compacts away).
    len_bytes: u64,
}

/// A log-structured store over a [`FileSystem`]; see the module docs for the format and the
/// guarantees.
///
/// Contract: writes are durable once [`Storage::sync`] or [`Storage::compact`] returns `Ok`.
/// Dropping the store does not sync. If a write, sync or compaction fails, the files may no longer
/// match the key directory (a partly appended record, a sync whose failure left the page cache in
/// an unknown state), so every later write, sync and compaction fails too; reads go on working,
/// and reopening the store recovers what is on disk. Errors name the file and the operation.
pub struct LogStore<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    options: LogOptions,
    /// The store's id, made when it was created (or when a store written before stores had ids
    /// was first opened): the manifest and every file-start record name it.
    store_id: u64,
    /// The newest record of each live key.
    keydir: BTreeMap<Vec<u8>, Location>,
    /// Every data file, by id; the last one is the active file. Never empty once opened.
    files: BTreeMap<u32, DataFile<F::File>>,
    /// Whether the active file has bytes appended since its last sync.
    active_unsynced: bool,
    /// Sum of `record_bytes` over the key directory.
    live_bytes: u64,
    /// Set by a failed write, sync or compaction; see the type's docs.
    failed: bool,
}

impl<F: FileSystem> fmt::Debug for LogStore<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("stats", &self.stats())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// `error` of `operation` on `path`, with both named (the kind is kept), unless the file system
/// named the path already.
fn at(error: io::Error, operation: &str, path: &Path) -> io::Error {
    let path = path.display().to_string();
    if error.to_string().contains(&path) {
        return error;
    }
    io::Error::new(error.kind(), format!("{operation} {path} failed: {error}"))
}

fn check_key(key: &[u8]) -> io::Result<()> {
    if key.len() > RECORD_KEY_BYTES_MAX {
        let size = key.len();
        return Err(invalid_input(format!(
            "key of {size} bytes is over the limit of {RECORD_KEY_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> io::Result<()> {
    if value.len() > RECORD_VALUE_BYTES_MAX {
        let size = value.len();
        return Err(invalid_input(format!(
            "value of {size} bytes is over the limit of {RECORD_VALUE_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

impl<F: FileSystem> LogStore<F> {
    /// Figures of the store now.
    pub fn stats(&self) -> LogStats {
        LogStats {
            files: self.files.len() as u32,
            keys: self.keydir.len() as u64,
            bytes: self.files.values().map(|f| f.len_bytes).sum(),
            live_bytes: self.live_bytes,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the log ends now: its newest data file and that file's length (what the next
    /// recovery finds, [`RecoveryReport::log_end`], if nothing changes the files meanwhile).
    pub fn log_end(&self) -> Option<LogEnd> {
        self.files.last_key_value().map(|(&file_id, f)| LogEnd {
            file_id,
            len_bytes: f.len_bytes,
        })
    }

    /// The id of the active file.
    fn active_id(&self) -> u32 {
        *self
            .files
            .keys()
            .next_back()
            .expect("an open store has an active file")
    }

    /// The manifest that describes the files now.
    fn manifest(&self) -> Manifest {
        let last_id = self.active_id();
        Manifest {
            store_id: Some(self.store_id),
            first_id: *self.files.keys().next().expect("an open store has files"),
            last_id,
            sealed_bytes: self
                .files
                .range(..last_id)
                .map(|(&id, file)| (id, file.len_bytes))
                .collect(),
        }
    }

    /// Reads and checks the value of `key` at `location`. A record that fails its check (or a
    /// file that became shorter) is an `InvalidData` error: decay since recovery.
    fn read_value(&self, key: &[u8], location: &Location) -> io::Result<Vec<u8>> {
        let file = self
            .files
            .get(&location.file_id)
            .expect("the key directory points only at open data files");
        assert!(location.offset + u64::from(location.record_bytes) <= file.len_bytes);
        let mut record = vec![0; location.record_bytes as usize];
        match file.handle.read_exact_at(&mut record, location.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(self.damaged(location, "the file ends before the record"));
            }
            Err(e) => return Err(e),
        }
        let value_start = match decode_record(&record) {
            Ok(found) if found.key == key && !found.tombstone => record.len() - found.value.len(),
            Ok(_) => return Err(self.damaged(location, "the record there is not the key's value")),
            Err(reason) => return Err(self.damaged(location, reason)),
        };
        record.drain(..value_start);
        Ok(record)
    }

    fn damaged(&self, location: &Location, reason: &str) -> io::Error {
        let path = file_path(&self.dir, location.file_id, FileKind::Data);
        invalid_data(format!(
            "data file {} is damaged at offset {} ({reason})",
            path.display(),
            location.offset
        ))
    }

    /// Panics unless the key directory, the files and the byte counts agree.
    fn check_invariants(&self) {
        assert!(!self.files.is_empty(), "an open store has an active file");
        let mut live_bytes = 0;
        for location in self.keydir.values() {
            let file = self
                .files
                .get(&location.file_id)
                .expect("every key directory entry points at an open data file");
            let end = location.offset + u64::from(location.record_bytes);
            assert!(
                end <= file.len_bytes,
                "every key directory entry points inside its file"
            );
            assert!(location.record_bytes as usize >= record::RECORD_HEADER_BYTES);
            live_bytes += u64::from(location.record_bytes);
        }
        assert_eq!(
            live_bytes, self.live_bytes,
            "live bytes match the key directory"
        );
    }
}

/// The data file id after `id`.
fn next_file_id(id: u32) -> io::Result<u32> {
    id.checked_add(1)
        .ok_or_else(|| io::Error::other("log store: data file ids exhausted"))
}

impl<F: FileSystem> Storage for LogStore<F> {
    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        match self.keydir.get(key) {
            Some(location) => self.read_value(key, location).map(Some),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        check_key(key)?;
        check_value(value)?;
        let record = encode_record(key, Some(value));
        let location = self.guarded(|store| store.append(&record))?;
        self.live_bytes += u64::from(location.record_bytes);
        let replaced = match self.keydir.get_mut(key) {
            Some(old) => Some(std::mem::replace(old, location)),
            None => self.keydir.insert(key.to_vec(), location),
        };
        if let Some(old) = replaced {
            self.live_bytes -= u64::from(old.record_bytes);
        }
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> io::Result<()> {
        check_key(key)?;
        self.check_usable()?;
        // A key that is not live has no record that a replay would bring back, so a tombstone
        // would only take space.
        if !self.keydir.contains_key(key) {
            return Ok(());
        }
        let record = encode_record(key, None);
        self.guarded(|store| store.append(&record))?;
        let old = self.keydir.remove(key).expect("checked above");
        self.live_bytes -= u64::from(old.record_bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.guarded(|store| store.sync_active())
    }

    fn begin_sync(&mut self) -> io::Result<Option<DetachedSync>> {
        self.guarded(|store| store.begin_sync_active())
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        self.keydir.keys().cloned().collect()
    }

    /// Also makes every earlier write durable.
    fn compact(&mut self) -> io::Result<CompactionStats> {
        self.guarded(|store| store.compact_files())
    }

    /// A file of its own in the store's directory, named `name` (which cannot be a data file's or
    /// the manifest's name).
    fn read_apart(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        super::check_apart_name(name)?;
        assert_ne!(name, files::MANIFEST_NAME, "the manifest is the log's own");
        let path = self.dir.join(name);
        if !self.fs.exists(&path) {
            return Ok(None);
        }
        // Bounded by its length before a byte is read, as the manifest is: a damaged file must not
        // be read whole into memory. Too long is damage (`InvalidData`), like a record that fails
        // its check.
        let len_bytes = self.fs.open(&path, false)?.len()?;
        if len_bytes > super::APART_BYTES_MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {len_bytes} bytes long, more than the {} of a value kept apart: damaged",
                    path.display(),
                    super::APART_BYTES_MAX
                ),
            ));
        }
        self.fs.read(&path).map(Some)
    }

    fn write_apart(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        super::check_apart_name(name)?;
        assert_ne!(name, files::MANIFEST_NAME, "the manifest is the log's own");
        if value.len() > super::APART_BYTES_MAX {
            return Err(invalid_input(format!(
                "a value kept apart of {} bytes is over the limit of {} bytes",
                value.len(),
                super::APART_BYTES_MAX
            )));
        }
        // Named in the error: a node that cannot store its actor id refuses to start with it.
        let path = self.dir.join(name);
        self.guarded(|store| {
            store
                .fs
                .write_durable(&path, value)
                .map_err(|e| at(e, "write of", &path))
        })
    }
}

#[cfg(test)]
mod tests;
