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
//! file is noticed: written (atomically and durably) when the store is created, at each rollover
//! and when a compaction commits. Other files in the directory are ignored.
//!
//! # Records
//!
//! ```text
//! crc32 (u32 LE) | flags (u8) | key length (u32 LE) | value length (u32 LE) | key | value
//! ```
//!
//! The crc32 covers everything after itself, so a torn or decayed record, header included, fails
//! the check. Flags: bit 0 marks a tombstone (a removal, with an empty value); other bits must be
//! zero. Lengths are bounded by [`KEY_BYTES_MAX`] and [`VALUE_BYTES_MAX`], so that a damaged length
//! is recognised as damage and never makes recovery read or allocate gigabytes. There is no file
//! header: a future format would use a new file extension.
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
//!   is a new store, not damage.
//!
//! Any of these is lost data ([`RecoveryReport::lost_data`]): the node then takes a new actor id,
//! since the lost records may hold the highest counters it issued (`crate::shell::open_storage`).
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
//! [`LogStore`]); reopening it recovers. Damage that cuts a file exactly at a record boundary
//! looks like a shorter file and is not noticed: the manifest names files, not their lengths.

pub mod damage;
mod files;
mod record;

use super::{CompactionStats, Storage};
use crate::fs::{FileSystem, FsFile};
use files::{FileKind, Manifest, ManifestRead, file_path};
use record::{BadRange, decode_record, encode_record};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The largest key, in bytes. Every key is held in memory by the key directory, so keys must stay
/// small; this is far above what the node writes (a short prefix and a client key).
pub const KEY_BYTES_MAX: usize = 64 * 1024;

/// The largest value, in bytes. `get` and compaction hold a whole value in memory, so values are
/// bounded; this leaves room for many siblings of a large client value.
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A compaction syncs its output at least every this many bytes.
pub const COMPACTION_SYNC_BYTES: u64 = 16 * 1024;
/// The default rollover size of a data file. Large enough that rollovers (each costing a few
/// syncs) are rare, small enough that compaction and recovery work in pieces of a sensible size.
pub const MAX_FILE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Skipped ranges and missing files listed one by one in a [`RecoveryReport`] and the log; past
/// this many, only counted.
pub const RECOVERY_ITEMS_REPORTED_MAX: usize = 64;

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

/// Bytes of a data file that recovery could not read as records and skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRange {
    /// The data file.
    pub file: PathBuf,
    /// Offset of the first skipped byte.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
    /// Why the first of them are not a good record.
    pub reason: &'static str,
}

/// What recovery found where the manifest should be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ManifestState {
    /// Present and readable.
    #[default]
    Found,
    /// Absent from a directory without data (a new store, or one whose creation a crash cut
    /// short): written now. Not damage.
    Created,
    /// Absent beside data files: files may have been lost unnoticed (or the store was written by a
    /// version without manifests). Written now.
    Missing,
    /// Present but not a manifest this store wrote (the reason). Rewritten now.
    Unreadable(String),
}

/// What [`LogStore::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Data files replayed.
    pub files: u32,
    /// Good records replayed (puts and tombstones).
    pub records: u64,
    /// Live keys after the replay.
    pub keys: u64,
    /// Bytes cut from the end of the newest file as a torn tail (0 if none).
    pub truncated_bytes: u64,
    /// The file and the offset of the cut, if there was one.
    pub truncated_at: Option<(PathBuf, u64)>,
    /// Damaged ranges skipped (corruption), in file and offset order; at most
    /// [`RECOVERY_ITEMS_REPORTED_MAX`] of them.
    pub skipped: Vec<SkippedRange>,
    /// All damaged ranges skipped, listed or not.
    pub skipped_ranges: u64,
    /// Bytes of all damaged ranges skipped.
    pub skipped_bytes: u64,
    /// Data files the manifest names that are missing; at most [`RECOVERY_ITEMS_REPORTED_MAX`].
    pub missing_files: Vec<PathBuf>,
    /// All missing data files, listed or not.
    pub missing_file_count: u64,
    /// The manifest.
    pub manifest: ManifestState,
    /// Whether recovery compacted the store to leave skipped damage and missing files behind.
    pub rewritten: bool,
    /// Unfinished compaction output files deleted.
    pub compaction_files_removed: u32,
    /// Data files deleted because a committed compaction had superseded them (its crash stopped it
    /// before it removed them).
    pub superseded_files_removed: u32,
}

impl RecoveryReport {
    /// Whether recovery cut, skipped, or could not find or read anything: records this store once
    /// held may be gone, so the counters they carried may be issued again unless the node changes
    /// its actor id.
    pub fn lost_data(&self) -> bool {
        self.truncated_bytes > 0
            || self.skipped_ranges > 0
            || self.missing_file_count > 0
            || matches!(
                self.manifest,
                ManifestState::Missing | ManifestState::Unreadable(_)
            )
    }

    /// One line saying what was lost, for logs ("nothing" if [`RecoveryReport::lost_data`] is
    /// false).
    pub fn loss_summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some((file, offset)) = &self.truncated_at {
            parts.push(format!(
                "cut a torn tail of {} bytes at offset {offset} of {}",
                self.truncated_bytes,
                file.display()
            ));
        }
        if self.skipped_ranges > 0 {
            let first = self
                .skipped
                .first()
                .map(|s| format!(", the first at offset {} of {}", s.offset, s.file.display()))
                .unwrap_or_default();
            parts.push(format!(
                "skipped {} damaged ranges ({} bytes){first}",
                self.skipped_ranges, self.skipped_bytes
            ));
        }
        if self.missing_file_count > 0 {
            let names: Vec<String> = self
                .missing_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            parts.push(format!(
                "{} data files missing ({})",
                self.missing_file_count,
                names.join(", ")
            ));
        }
        match &self.manifest {
            ManifestState::Missing => parts.push("the manifest was missing".into()),
            ManifestState::Unreadable(reason) => {
                parts.push(format!("the manifest was unreadable ({reason})"))
            }
            ManifestState::Found | ManifestState::Created => {}
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join("; ")
        }
    }

    /// Records a skipped range, with a loud warning.
    fn skip(&mut self, file: &Path, range: BadRange, gave_up: bool) {
        let BadRange {
            offset,
            bytes,
            reason,
        } = range;
        self.skipped_ranges += 1;
        self.skipped_bytes += bytes;
        if self.skipped.len() < RECOVERY_ITEMS_REPORTED_MAX {
            tracing::error!(
                file = %file.display(),
                offset,
                bytes,
                reason,
                gave_up,
                "skipping damaged bytes of a data file: the records in them are lost here (replicas \
                 and anti-entropy refill them)"
            );
            self.skipped.push(SkippedRange {
                file: file.to_path_buf(),
                offset,
                bytes,
                reason,
            });
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
    if key.len() > KEY_BYTES_MAX {
        let size = key.len();
        return Err(invalid_input(format!(
            "key of {size} bytes is over the limit of {KEY_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> io::Result<()> {
    if value.len() > VALUE_BYTES_MAX {
        let size = value.len();
        return Err(invalid_input(format!(
            "value of {size} bytes is over the limit of {VALUE_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

impl<F: FileSystem> LogStore<F> {
    /// Opens the store in `dir` (creating the directory if needed), recovers it as the module docs
    /// describe, and says what recovery found. Fails if `options` are invalid and on I/O errors;
    /// damage is repaired and reported, never a reason to fail.
    pub fn open(
        fs: F,
        dir: &Path,
        options: LogOptions,
    ) -> io::Result<(LogStore<F>, RecoveryReport)> {
        if options.max_file_bytes == 0 {
            return Err(invalid_input("max_file_bytes must be at least 1".into()));
        }
        let existed = fs.exists(dir);
        fs.create_dir_all(dir)?;
        if !existed {
            // A new directory survives a crash only once its own entry, and those of any parents
            // created with it, are synced.
            for ancestor in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
                fs.sync_dir(ancestor)?;
            }
        }

        let mut report = RecoveryReport::default();
        let (mut data_ids, compact_paths) = files::list(&fs, dir)?;
        for path in compact_paths {
            // Compaction commits by renaming its output; a file still under the temporary name is
            // from a compaction that never committed, and the data files still hold everything it
            // would have held.
            tracing::warn!(
                file = %path.display(),
                "removing the output of an unfinished compaction"
            );
            fs.remove_file(&path)?;
            report.compaction_files_removed += 1;
        }

        let manifest = files::read_manifest(&fs, dir)?;
        match &manifest {
            ManifestRead::Found(m) => {
                let superseded = data_ids.partition_point(|&id| id < m.first_id);
                for id in data_ids.drain(..superseded) {
                    let path = file_path(dir, id, FileKind::Data);
                    tracing::warn!(
                        file = %path.display(),
                        "removing a data file that a committed compaction superseded"
                    );
                    fs.remove_file(&path)?;
                    report.superseded_files_removed += 1;
                }
                report_missing(&mut report, dir, *m, &data_ids);
            }
            // Decided after the replay: only a directory with data lost anything.
            ManifestRead::Missing => report.manifest = ManifestState::Created,
            ManifestRead::Unreadable(reason) => {
                tracing::error!(dir = %dir.display(), reason, "the manifest is unreadable");
                report.manifest = ManifestState::Unreadable(reason.clone());
            }
        }
        // A hole in the sequence of files, from the manifest's first (or the first file found) to
        // the newest found: a manifest written for these files would name a missing one. (Files
        // past the manifest's last one may have a hole without any loss, if a crash interrupted
        // the renames of a compaction's commit.)
        let hole = match (data_ids.first(), data_ids.last()) {
            (Some(&first_found), Some(&newest)) => {
                let first = match &manifest {
                    ManifestRead::Found(m) => m.first_id,
                    _ => first_found,
                };
                (data_ids.len() as u64) < u64::from(newest - first) + 1
            }
            _ => false,
        };

        let mut store = LogStore {
            fs,
            dir: dir.to_path_buf(),
            options,
            keydir: BTreeMap::new(),
            files: BTreeMap::new(),
            active_unsynced: false,
            live_bytes: 0,
            failed: false,
        };
        let mut bytes_found = 0;
        for (index, &id) in data_ids.iter().enumerate() {
            let newest = index + 1 == data_ids.len();
            bytes_found += store.recover_file(id, newest, &mut report)?;
        }
        if manifest == ManifestRead::Missing && bytes_found > 0 {
            tracing::error!(
                dir = %dir.display(),
                "the manifest is missing beside data files: files may have been lost"
            );
            report.manifest = ManifestState::Missing;
        }

        match store.files.last_entry() {
            // The newest file may hold appends that a previous run never synced, or a cut torn
            // tail: sync them before serving them and before appending, so that nothing read from
            // this store can be lost by a later crash.
            Some(mut active) => active.get_mut().handle.sync()?,
            None => {
                // Ids are not reused, even those of lost files.
                let id = match &manifest {
                    ManifestRead::Found(m) => next_file_id(m.last_id)?,
                    _ => FILE_ID_FIRST,
                };
                store.create_data_file(id)?;
            }
        }
        // Likewise for directory entries a previous run may have created or removed unsynced.
        store.fs.sync_dir(&store.dir)?;

        if report.skipped_ranges > 0 || hole {
            tracing::warn!(
                dir = %dir.display(),
                "compacting the store, so that no damage and no hole in its files is left behind"
            );
            store.compact_files()?;
            report.rewritten = true;
        } else {
            let wanted = store.manifest();
            if manifest != ManifestRead::Found(wanted) {
                files::write_manifest(&store.fs, &store.dir, wanted)?;
            }
        }

        report.files = data_ids.len() as u32;
        report.keys = store.keydir.len() as u64;
        store.check_invariants();
        tracing::info!(
            dir = %dir.display(),
            files = report.files,
            records = report.records,
            keys = report.keys,
            lost = %report.loss_summary(),
            "opened log store"
        );
        Ok((store, report))
    }

    /// Replays one data file into the key directory; see the module docs for what happens to
    /// damage. Returns the file's length as found.
    fn recover_file(
        &mut self,
        id: u32,
        newest: bool,
        report: &mut RecoveryReport,
    ) -> io::Result<u64> {
        let path = file_path(&self.dir, id, FileKind::Data);
        let mut handle = self.fs.open(&path, false)?;
        let file_bytes = handle.len()?;
        let keydir = &mut self.keydir;
        let live_bytes = &mut self.live_bytes;
        let mut records = 0;
        let scan = record::scan_file(
            &handle,
            file_bytes,
            |offset, record_bytes, tombstone, key| {
                records += 1;
                let replaced = if tombstone {
                    keydir.remove(key)
                } else {
                    *live_bytes += u64::from(record_bytes);
                    let location = Location {
                        file_id: id,
                        offset,
                        record_bytes,
                    };
                    match keydir.get_mut(key) {
                        Some(old) => Some(std::mem::replace(old, location)),
                        None => keydir.insert(key.to_vec(), location),
                    }
                };
                if let Some(old) = replaced {
                    *live_bytes -= u64::from(old.record_bytes);
                }
            },
        )
        .map_err(|e| at(e, "recovery read of", &path))?;
        report.records += records;
        for range in scan.skipped {
            report.skip(&path, range, false);
        }
        let len_bytes = match scan.tail {
            None => file_bytes,
            Some(tail) if newest && !scan.gave_up => {
                let BadRange {
                    offset,
                    bytes,
                    reason,
                } = tail;
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    dropped_bytes = bytes,
                    reason,
                    "cutting a torn tail from the newest data file"
                );
                // The sync of the newest file at the end of `open` makes the cut durable before
                // anything is appended after it (else a crash could leave new records behind the
                // old damage).
                handle
                    .truncate(offset)
                    .map_err(|e| at(e, "cut of the torn tail of", &path))?;
                report.truncated_bytes = bytes;
                report.truncated_at = Some((path, offset));
                offset
            }
            // Damage at the end of an older file, or a search for good records that gave up: the
            // bytes stay until the compaction at the end of `open` drops the file.
            Some(tail) => {
                report.skip(&path, tail, scan.gave_up);
                file_bytes
            }
        };
        self.files.insert(id, DataFile { handle, len_bytes });
        Ok(file_bytes)
    }

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
        Manifest {
            first_id: *self.files.keys().next().expect("an open store has files"),
            last_id: self.active_id(),
        }
    }

    /// Creates an empty data file and makes it the active file. The caller syncs the directory.
    fn create_data_file(&mut self, id: u32) -> io::Result<()> {
        assert!(self.files.keys().all(|&old| old < id), "file ids only grow");
        let path = file_path(&self.dir, id, FileKind::Data);
        let handle = self
            .fs
            .open(&path, true)
            .map_err(|e| at(e, "creation of", &path))?;
        if handle.len()? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("new data file {} is not empty", path.display()),
            ));
        }
        self.files.insert(
            id,
            DataFile {
                handle,
                len_bytes: 0,
            },
        );
        self.active_unsynced = false;
        Ok(())
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(format!(
                "log store {}: an earlier write, sync or compaction failed, so the files may not \
                 match memory; reopen the store to recover",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Runs a step that changes files; a failure makes the store refuse later changes.
    fn guarded<T>(&mut self, step: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        self.check_usable()?;
        let result = step(self);
        if let Err(error) = &result {
            tracing::error!(dir = %self.dir.display(), %error, "log store failed; it must be reopened");
            self.failed = true;
        }
        result
    }

    fn sync_active(&mut self) -> io::Result<()> {
        if self.active_unsynced {
            let dir = &self.dir;
            let mut active = self
                .files
                .last_entry()
                .expect("an open store has an active file");
            let id = *active.key();
            active
                .get_mut()
                .handle
                .sync()
                .map_err(|e| at(e, "sync of", &file_path(dir, id, FileKind::Data)))?;
            self.active_unsynced = false;
        }
        Ok(())
    }

    /// Syncs the active file and starts a new one.
    fn roll_over(&mut self) -> io::Result<()> {
        // Recovery takes damage in any file but the newest for decay of durable data, so a file
        // must be durable before a newer one exists.
        self.sync_active()?;
        let id = next_file_id(self.active_id())?;
        self.create_data_file(id)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| at(e, "sync of the directory", &self.dir))?;
        // After the file exists: a crash in between leaves an empty file the manifest does not
        // name yet, which recovery adopts; the other order would leave a named file missing.
        files::write_manifest(&self.fs, &self.dir, self.manifest())?;
        tracing::debug!(dir = %self.dir.display(), file_id = id, "rolled over to a new data file");
        Ok(())
    }

    /// Appends a record to the active file (rolling over first if it would grow too big) and says
    /// where it went.
    fn append(&mut self, record: &[u8]) -> io::Result<Location> {
        let record_bytes = record.len() as u64;
        let active_bytes = self
            .files
            .values()
            .next_back()
            .expect("active file")
            .len_bytes;
        if active_bytes > 0 && active_bytes + record_bytes > self.options.max_file_bytes {
            self.roll_over()?;
        }
        let dir = &self.dir;
        let mut active = self
            .files
            .last_entry()
            .expect("an open store has an active file");
        let file_id = *active.key();
        let file = active.get_mut();
        let offset = file.len_bytes;
        // One append per record, so that a crash tears at most the records of the last appends.
        file.handle
            .append(record)
            .map_err(|e| at(e, "append to", &file_path(dir, file_id, FileKind::Data)))?;
        file.len_bytes += record_bytes;
        self.active_unsynced = true;
        Ok(Location {
            file_id,
            offset,
            record_bytes: u32::try_from(record.len()).expect("records are bounded below 4 GiB"),
        })
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

    /// The steps of [`Storage::compact`]; see the module docs for why in this order.
    fn compact_files(&mut self) -> io::Result<CompactionStats> {
        // 1. Everything before the output must be durable.
        self.sync_active()?;
        let bytes_before: u64 = self.files.values().map(|f| f.len_bytes).sum();
        let old_ids: Vec<u32> = self.files.keys().copied().collect();
        let mut next_id = next_file_id(self.active_id())?;

        // 2. Write the output under temporary names, each file synced.
        let mut outputs: Vec<(u32, u64)> = Vec::new();
        let mut output: Option<(u32, F::File, u64)> = None;
        let mut keydir = BTreeMap::new();
        let compact_path = |id| file_path(&self.dir, id, FileKind::Compact);
        for (key, location) in &self.keydir {
            let value = self.read_value(key, location)?;
            let record = encode_record(key, Some(&value));
            let record_bytes = record.len() as u64;
            let full = match &output {
                None => true,
                Some((_, _, len)) => *len > 0 && len + record_bytes > self.options.max_file_bytes,
            };
            if full {
                if let Some((id, mut handle, len)) = output.take() {
                    handle
                        .sync()
                        .map_err(|e| at(e, "sync of", &compact_path(id)))?;
                    outputs.push((id, len));
                }
                let id = next_id;
                next_id = next_file_id(id)?;
                let handle = self
                    .fs
                    .open(&compact_path(id), true)
                    .map_err(|e| at(e, "creation of", &compact_path(id)))?;
                output = Some((id, handle, 0));
            }
            let (id, handle, len) = output.as_mut().expect("an output file is open");
            handle
                .append(&record)
                .map_err(|e| at(e, "append to", &compact_path(*id)))?;
            // Bound the unsynced bytes a compaction piles up: a real page cache flushes them
            // anyway, and turmoil's simulated disk scans its pending writes on every read.
            if (*len + record_bytes) / COMPACTION_SYNC_BYTES != *len / COMPACTION_SYNC_BYTES {
                handle
                    .sync()
                    .map_err(|e| at(e, "sync of", &compact_path(*id)))?;
            }
            let new_location = Location {
                file_id: *id,
                offset: *len,
                record_bytes: location.record_bytes,
            };
            assert_eq!(
                record_bytes,
                u64::from(location.record_bytes),
                "same record, same size"
            );
            keydir.insert(key.clone(), new_location);
            *len += record_bytes;
        }
        if let Some((id, mut handle, len)) = output.take() {
            handle
                .sync()
                .map_err(|e| at(e, "sync of", &compact_path(id)))?;
            outputs.push((id, len));
        }
        // The output handles are closed by now: turmoil's simulated handles are bound to a path,
        // so the files are reopened under their final names below.

        // 3. Commit: final names, a fresh active file, one directory sync.
        for &(id, _) in &outputs {
            let from = compact_path(id);
            self.fs
                .rename(&from, &file_path(&self.dir, id, FileKind::Data))
                .map_err(|e| at(e, "rename of", &from))?;
        }
        let active_id = next_id;
        let active_path = file_path(&self.dir, active_id, FileKind::Data);
        let active = self
            .fs
            .open(&active_path, true)
            .map_err(|e| at(e, "creation of", &active_path))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| at(e, "sync of the directory", &self.dir))?;

        let mut files = BTreeMap::new();
        for &(id, len_bytes) in &outputs {
            let handle = self
                .fs
                .open(&file_path(&self.dir, id, FileKind::Data), false)?;
            files.insert(id, DataFile { handle, len_bytes });
        }
        files.insert(
            active_id,
            DataFile {
                handle: active,
                len_bytes: 0,
            },
        );
        let records_kept = keydir.len() as u64;
        // This also closes the old files' handles before they are removed.
        self.files = files;
        self.keydir = keydir;
        self.active_unsynced = false;
        self.check_invariants();

        // 4. The manifest: the old files are superseded.
        files::write_manifest(&self.fs, &self.dir, self.manifest())?;

        // 5. Remove the old files, oldest first, each removal durable before the next.
        for id in old_ids {
            let path = file_path(&self.dir, id, FileKind::Data);
            self.fs
                .remove_file(&path)
                .map_err(|e| at(e, "removal of", &path))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| at(e, "sync of the directory", &self.dir))?;
        }

        let stats = CompactionStats {
            records_kept,
            bytes_before,
            bytes_after: outputs.iter().map(|&(_, len)| len).sum(),
        };
        tracing::info!(
            dir = %self.dir.display(),
            records_kept = stats.records_kept,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            "compacted log store"
        );
        Ok(stats)
    }
}

/// The data file id after `id`.
fn next_file_id(id: u32) -> io::Result<u32> {
    id.checked_add(1)
        .ok_or_else(|| io::Error::other("log store: data file ids exhausted"))
}

/// Counts and lists (up to [`RECOVERY_ITEMS_REPORTED_MAX`], with an error each) the data files
/// `manifest` names that are not among `found` (ascending, none below the manifest's first id).
fn report_missing(report: &mut RecoveryReport, dir: &Path, manifest: Manifest, found: &[u32]) {
    let Manifest { first_id, last_id } = manifest;
    let named_found = found.iter().filter(|&&id| id <= last_id).count() as u64;
    report.missing_file_count = u64::from(last_id - first_id) + 1 - named_found;
    // Walks the ids beside the files found; each turn lists a missing file or passes a found one,
    // so it ends after at most RECOVERY_ITEMS_REPORTED_MAX + found.len() turns.
    let mut found = found.iter().peekable();
    let mut id = first_id;
    while report.missing_files.len() < RECOVERY_ITEMS_REPORTED_MAX
        && (report.missing_files.len() as u64) < report.missing_file_count
    {
        if found.next_if_eq(&&id).is_none() {
            let path = file_path(dir, id, FileKind::Data);
            tracing::error!(
                file = %path.display(),
                manifest_first_id = first_id,
                manifest_last_id = last_id,
                "a data file the manifest names is missing: its records are lost here (replicas \
                 and anti-entropy refill them)"
            );
            report.missing_files.push(path);
        }
        id += 1;
    }
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
        self.fs.read(&path).map(Some)
    }

    fn write_apart(&mut self, name: &str, value: &[u8]) -> io::Result<()> {
        super::check_apart_name(name)?;
        assert_ne!(name, files::MANIFEST_NAME, "the manifest is the log's own");
        self.guarded(|store| store.fs.write_durable(&store.dir.join(name), value))
    }
}

#[cfg(test)]
mod tests;
