//! The log-structured store: the default [`Storage`], in the style of Bitcask (Riak's default
//! backend).
//!
//! Why this shape: every write is one append, so a write costs one sequential I/O and a crash can
//! only damage the end of the newest file; every read is one positioned read, because an in-memory
//! key directory knows where each key's newest record is. The price is memory for every key, and
//! dead records that only [`LogStore::compact`] reclaims.
//!
//! # Files
//!
//! A store is a directory of data files named by a growing file id, `000001.data`, `000002.data`,
//! ... (ids are compared as numbers, so the width is only cosmetic). Records are only ever appended
//! to the newest file, the *active* one; when it would grow past [`LogOptions::max_file_bytes`] it is
//! synced and a new file is started (*rollover*). Other files in the directory are ignored, except
//! `NNNNNN.compact`, the unfinished output of a compaction.
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
//! syncs the old file, then creates the new one and syncs the directory, so every file but the
//! newest was completely durable before a newer one existed. Recovery relies on that:
//! - It replays the files in id order into the key directory.
//! - Damage at the end of the newest file (a short record, a bad checksum or an impossible length)
//!   is a write that was torn by a crash: the file is cut back to the last good record, the cut is
//!   synced, and a warning names the file, the offset and the bytes dropped. The
//!   [`RecoveryReport`] says the same. The limit of this rule: the store cannot tell a torn unsynced
//!   tail from decay of synced bytes in the newest file, and treats both as a torn tail.
//! - Damage in any older file is decay of synced data, and opening fails with an error that names
//!   the file and the offset: silently dropping durable data would turn a disk fault into lost
//!   acknowledged writes.
//! - It syncs the newest file and the directory, so that nothing the reopened store serves can
//!   still be lost by a later crash.
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
//! 4. Remove the old files oldest first, syncing the directory after each one. A crash here leaves
//!    the newest old files, and replaying a suffix of the old files before the output is still
//!    right: a key whose newest record was in a removed file is either live (the output has it) or
//!    removed (no remaining file mentions it). Removing them in any other order could bring a
//!    removed key back from an old record whose tombstone was already gone.
//!
//! # Limits
//!
//! Every key lives in memory with its location (as in Bitcask). Every data file stays open for
//! reads. After any failed write, sync or compaction the store refuses further writes (see
//! [`LogStore`]); reopening it recovers.

use super::{CompactionStats, Storage};
use crate::fs::{FileSystem, FsFile};
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
/// The default rollover size of a data file. Large enough that rollovers (each costing two syncs)
/// are rare, small enough that compaction and recovery work in pieces of a sensible size.
pub const MAX_FILE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// crc32 (4) + flags (1) + key length (4) + value length (4).
const RECORD_HEADER_BYTES: usize = 13;

/// The largest record the format allows.
const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + KEY_BYTES_MAX + VALUE_BYTES_MAX;

/// Flag bit of a tombstone record.
const FLAG_TOMBSTONE: u8 = 0b1;

/// Every flag bit this version knows; a record with another bit set is damaged.
const FLAGS_KNOWN: u8 = FLAG_TOMBSTONE;

/// How much recovery reads from a file at a time (more for a larger record): small records cost a
/// memory copy each rather than a system call each.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

/// Digits of a file id in a file name; names sort by id up to this width, beyond it ids are still
/// compared as numbers.
const FILE_ID_DIGITS: usize = 6;

/// The id of the first data file of a new store.
const FILE_ID_FIRST: u32 = 1;

/// Extension of a data file.
const DATA_EXTENSION: &str = "data";

/// Extension of an unfinished compaction output file.
const COMPACT_EXTENSION: &str = "compact";

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

/// What [`LogStore::open`] found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Data files replayed.
    pub files: u32,
    /// Good records replayed (puts and tombstones).
    pub records: u64,
    /// Live keys after the replay.
    pub keys: u64,
    /// Bytes cut from the end of the newest file as a torn or damaged tail (0 if none).
    pub truncated_bytes: u64,
    /// The file and the offset of the cut, if there was one.
    pub truncated_at: Option<(PathBuf, u64)>,
    /// Unfinished compaction output files deleted.
    pub compaction_files_removed: u32,
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
    /// Length of the file as far as this store knows: the end of its last good record.
    len_bytes: u64,
}

/// A log-structured store over a [`FileSystem`]; see the module docs for the format and the
/// guarantees.
///
/// Contract: writes are durable once [`Storage::sync`] or [`Storage::compact`] returns `Ok`.
/// Dropping the store does not sync. If a write, sync or compaction fails, the files may no longer
/// match the key directory (a partly appended record, a sync whose failure left the page cache in
/// an unknown state), so every later write, sync and compaction fails too; reads go on working,
/// and reopening the store recovers what is on disk.
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

/// The decoded fixed-size part of a record.
#[derive(Clone, Copy, Debug)]
struct Header {
    crc: u32,
    tombstone: bool,
    key_bytes: usize,
    value_bytes: usize,
}

impl Header {
    /// Decodes and checks a header; the error says why it cannot be a header this store wrote.
    fn decode(bytes: &[u8; RECORD_HEADER_BYTES]) -> Result<Header, &'static str> {
        let u32_at = |at: usize| {
            u32::from_le_bytes(
                bytes[at..at + 4]
                    .try_into()
                    .expect("four bytes of the header"),
            )
        };
        let flags = bytes[4];
        if flags & !FLAGS_KNOWN != 0 {
            return Err("unknown flag bits");
        }
        let header = Header {
            crc: u32_at(0),
            tombstone: flags & FLAG_TOMBSTONE != 0,
            key_bytes: u32_at(5) as usize,
            value_bytes: u32_at(9) as usize,
        };
        if header.key_bytes > KEY_BYTES_MAX {
            return Err("key length over the limit");
        }
        if header.value_bytes > VALUE_BYTES_MAX {
            return Err("value length over the limit");
        }
        if header.tombstone && header.value_bytes != 0 {
            return Err("tombstone with a value");
        }
        Ok(header)
    }

    fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.key_bytes + self.value_bytes
    }
}

/// Encodes a record: a put if `value` is given, else a tombstone. The caller has checked the sizes.
fn encode_record(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    assert!(key.len() <= KEY_BYTES_MAX, "key size checked by the caller");
    let value_bytes = value.map_or(0, <[u8]>::len);
    assert!(
        value_bytes <= VALUE_BYTES_MAX,
        "value size checked by the caller"
    );
    let flags = if value.is_none() { FLAG_TOMBSTONE } else { 0 };
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + key.len() + value_bytes);
    record.extend_from_slice(&[0; 4]); // The crc, filled in below.
    record.push(flags);
    record.extend_from_slice(&(key.len() as u32).to_le_bytes());
    record.extend_from_slice(&(value_bytes as u32).to_le_bytes());
    record.extend_from_slice(key);
    record.extend_from_slice(value.unwrap_or(&[]));
    let crc = crc32fast::hash(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    assert!(record.len() <= RECORD_BYTES_MAX);
    record
}

/// A whole record, checked.
struct Record<'a> {
    tombstone: bool,
    key: &'a [u8],
    value: &'a [u8],
}

/// Decodes a whole record of exactly `bytes.len()` bytes and checks its crc.
fn decode_record(bytes: &[u8]) -> Result<Record<'_>, &'static str> {
    let header_bytes: &[u8; RECORD_HEADER_BYTES] = bytes
        .get(..RECORD_HEADER_BYTES)
        .ok_or("record cut short")?
        .try_into()
        .expect("header-sized slice");
    let header = Header::decode(header_bytes)?;
    if bytes.len() != header.record_bytes() {
        return Err("record length does not match its header");
    }
    if crc32fast::hash(&bytes[4..]) != header.crc {
        return Err("checksum mismatch");
    }
    let key_end = RECORD_HEADER_BYTES + header.key_bytes;
    Ok(Record {
        tombstone: header.tombstone,
        key: &bytes[RECORD_HEADER_BYTES..key_end],
        value: &bytes[key_end..],
    })
}

/// Reads a file in chunks of [`SCAN_CHUNK_BYTES`] for recovery's front-to-back scan.
struct ChunkReader<'a, H> {
    handle: &'a H,
    len_bytes: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
}

impl<'a, H: FsFile> ChunkReader<'a, H> {
    fn new(handle: &'a H, len_bytes: u64) -> ChunkReader<'a, H> {
        ChunkReader {
            handle,
            len_bytes,
            buf: Vec::new(),
            buf_offset: 0,
        }
    }

    /// The `size` bytes at `offset`, or `None` if the file ends before them.
    fn bytes(&mut self, offset: u64, size: usize) -> io::Result<Option<&[u8]>> {
        let end = offset + size as u64;
        if end > self.len_bytes {
            return Ok(None);
        }
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if offset < self.buf_offset || end > buf_end {
            let remaining = usize::try_from(self.len_bytes - offset).unwrap_or(usize::MAX);
            self.buf
                .resize(size.max(SCAN_CHUNK_BYTES).min(remaining), 0);
            self.handle.read_exact_at(&mut self.buf, offset)?;
            self.buf_offset = offset;
        }
        let start = (offset - self.buf_offset) as usize;
        Ok(Some(&self.buf[start..start + size]))
    }
}

/// How a scan of a data file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScanEnd {
    /// Every byte belongs to a good record.
    Clean,
    /// The bytes from `offset` on are not a good record.
    Damaged { offset: u64, reason: &'static str },
}

/// Scans a data file from the start, calling `on_record(offset, record_bytes, tombstone, key)` for
/// each good record, and stops at the first bad one.
fn scan_file<H: FsFile>(
    handle: &H,
    len_bytes: u64,
    mut on_record: impl FnMut(u64, u32, bool, &[u8]),
) -> io::Result<ScanEnd> {
    let mut reader = ChunkReader::new(handle, len_bytes);
    let mut offset = 0;
    // Each turn consumes a record of at least RECORD_HEADER_BYTES or ends the loop, so it runs at
    // most len_bytes / RECORD_HEADER_BYTES times.
    while offset < len_bytes {
        let Some(header_bytes) = reader.bytes(offset, RECORD_HEADER_BYTES)? else {
            let reason = "header cut short";
            return Ok(ScanEnd::Damaged { offset, reason });
        };
        let header_bytes: [u8; RECORD_HEADER_BYTES] =
            header_bytes.try_into().expect("header-sized slice");
        let header = match Header::decode(&header_bytes) {
            Ok(header) => header,
            Err(reason) => return Ok(ScanEnd::Damaged { offset, reason }),
        };
        let record_bytes = header.record_bytes();
        let Some(bytes) = reader.bytes(offset, record_bytes)? else {
            let reason = "record cut short";
            return Ok(ScanEnd::Damaged { offset, reason });
        };
        match decode_record(bytes) {
            Ok(record) => on_record(offset, record_bytes as u32, record.tombstone, record.key),
            Err(reason) => return Ok(ScanEnd::Damaged { offset, reason }),
        }
        offset += record_bytes as u64;
    }
    assert_eq!(
        offset, len_bytes,
        "records end exactly at the end of the file"
    );
    Ok(ScanEnd::Clean)
}

/// The kinds of file a store directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Data,
    Compact,
}

impl FileKind {
    fn extension(self) -> &'static str {
        match self {
            FileKind::Data => DATA_EXTENSION,
            FileKind::Compact => COMPACT_EXTENSION,
        }
    }
}

fn file_path(dir: &Path, id: u32, kind: FileKind) -> PathBuf {
    let extension = kind.extension();
    dir.join(format!("{id:0width$}.{extension}", width = FILE_ID_DIGITS))
}

/// The id and kind of a store file, or `None` for a file that is not the store's. Only the exact
/// names the store writes count, so that `1.data` and `000001.data` cannot both claim id 1.
fn parse_file_name(path: &Path) -> Option<(u32, FileKind)> {
    let name = path.file_name()?.to_str()?;
    let (stem, extension) = name.split_once('.')?;
    let kind = [FileKind::Data, FileKind::Compact]
        .into_iter()
        .find(|kind| kind.extension() == extension)?;
    if !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u32 = stem.parse().ok()?;
    let canonical = file_path(Path::new(""), id, kind);
    (canonical.as_os_str() == name).then_some((id, kind))
}

fn invalid_input(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

fn invalid_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
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
    /// describe, and says what recovery found. Fails if `options` are invalid, on I/O errors, and
    /// with `InvalidData` if a file other than the newest is damaged.
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
        let mut data_ids = Vec::new();
        for path in fs.read_dir(dir)? {
            match parse_file_name(&path) {
                Some((id, FileKind::Data)) => data_ids.push(id),
                Some((_, FileKind::Compact)) => {
                    // Compaction commits by renaming its output; a file still under the temporary
                    // name is from a compaction that never committed, and the data files still hold
                    // everything it would have held.
                    tracing::warn!(
                        file = %path.display(),
                        "removing the output of an unfinished compaction"
                    );
                    fs.remove_file(&path)?;
                    report.compaction_files_removed += 1;
                }
                None => {
                    tracing::debug!(file = %path.display(), "ignoring a file that is not a data file")
                }
            }
        }
        data_ids.sort_unstable();

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
        for (index, &id) in data_ids.iter().enumerate() {
            let newest = index + 1 == data_ids.len();
            store.recover_file(id, newest, &mut report)?;
        }
        match store.files.last_entry() {
            // The newest file may hold appends that a previous run never synced, or a cut torn
            // tail: sync them before serving them and before appending, so that nothing read from
            // this store can be lost by a later crash.
            Some(mut active) => active.get_mut().handle.sync()?,
            None => store.create_data_file(FILE_ID_FIRST)?,
        }
        // Likewise for directory entries a previous run may have created or removed unsynced.
        store.fs.sync_dir(&store.dir)?;

        report.files = data_ids.len() as u32;
        report.keys = store.keydir.len() as u64;
        store.check_invariants();
        tracing::info!(
            dir = %dir.display(),
            files = report.files,
            records = report.records,
            keys = report.keys,
            truncated_bytes = report.truncated_bytes,
            "opened log store"
        );
        Ok((store, report))
    }

    /// Replays one data file into the key directory; see the module docs for what happens to
    /// damage.
    fn recover_file(
        &mut self,
        id: u32,
        newest: bool,
        report: &mut RecoveryReport,
    ) -> io::Result<()> {
        let path = file_path(&self.dir, id, FileKind::Data);
        let mut handle = self.fs.open(&path, false)?;
        let file_bytes = handle.len()?;
        let keydir = &mut self.keydir;
        let live_bytes = &mut self.live_bytes;
        let mut records = 0;
        let end = scan_file(
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
        )?;
        report.records += records;
        let len_bytes = match end {
            ScanEnd::Clean => file_bytes,
            ScanEnd::Damaged { offset, reason } if newest => {
                let dropped_bytes = file_bytes - offset;
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    dropped_bytes,
                    reason,
                    "cutting a torn or damaged tail from the newest data file"
                );
                // The sync of the newest file at the end of `open` makes the cut durable before
                // anything is appended after it (else a crash could leave new records behind the
                // old damage).
                handle.truncate(offset)?;
                report.truncated_bytes = dropped_bytes;
                report.truncated_at = Some((path, offset));
                offset
            }
            ScanEnd::Damaged { offset, reason } => {
                return Err(invalid_data(format!(
                    "data file {} is damaged at offset {offset} ({reason}); it is not the newest \
                     file, so it was synced before the next one was created and this is damage to \
                     durable data: refusing to open (restore the file from a replica or a backup, or \
                     move it away to accept the loss)",
                    path.display()
                )));
            }
        };
        self.files.insert(id, DataFile { handle, len_bytes });
        Ok(())
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

    /// The id of the active file.
    fn active_id(&self) -> u32 {
        *self
            .files
            .keys()
            .next_back()
            .expect("an open store has an active file")
    }

    fn next_file_id(id: u32) -> io::Result<u32> {
        id.checked_add(1)
            .ok_or_else(|| io::Error::other("log store: data file ids exhausted"))
    }

    /// Creates an empty data file and makes it the active file. The caller syncs the directory.
    fn create_data_file(&mut self, id: u32) -> io::Result<()> {
        assert!(self.files.keys().all(|&old| old < id), "file ids only grow");
        let path = file_path(&self.dir, id, FileKind::Data);
        let handle = self.fs.open(&path, true)?;
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
            return Err(io::Error::other(
                "log store: an earlier write, sync or compaction failed, so the files may not \
                 match memory; reopen the store to recover",
            ));
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
            let mut active = self
                .files
                .last_entry()
                .expect("an open store has an active file");
            active.get_mut().handle.sync()?;
            self.active_unsynced = false;
        }
        Ok(())
    }

    /// Syncs the active file and starts a new one.
    fn roll_over(&mut self) -> io::Result<()> {
        // Recovery takes damage in any file but the newest for decay of durable data, so a file
        // must be durable before a newer one exists.
        self.sync_active()?;
        let id = Self::next_file_id(self.active_id())?;
        self.create_data_file(id)?;
        self.fs.sync_dir(&self.dir)?;
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
        let mut active = self
            .files
            .last_entry()
            .expect("an open store has an active file");
        let file_id = *active.key();
        let file = active.get_mut();
        let offset = file.len_bytes;
        // One append per record, so that a crash tears at most the records of the last appends.
        file.handle.append(record)?;
        file.len_bytes += record_bytes;
        self.active_unsynced = true;
        Ok(Location {
            file_id,
            offset,
            record_bytes: u32::try_from(record.len()).expect("records are bounded below 4 GiB"),
        })
    }

    /// Reads and checks the value of `key` at `location`.
    fn read_value(&self, key: &[u8], location: &Location) -> io::Result<Vec<u8>> {
        let file = self
            .files
            .get(&location.file_id)
            .expect("the key directory points only at open data files");
        assert!(location.offset + u64::from(location.record_bytes) <= file.len_bytes);
        let mut record = vec![0; location.record_bytes as usize];
        file.handle.read_exact_at(&mut record, location.offset)?;
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
            assert!(location.record_bytes as usize >= RECORD_HEADER_BYTES);
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
        let mut next_id = Self::next_file_id(self.active_id())?;

        // 2. Write the output under temporary names, each file synced.
        let mut outputs: Vec<(u32, u64)> = Vec::new();
        let mut output: Option<(u32, F::File, u64)> = None;
        let mut keydir = BTreeMap::new();
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
                    handle.sync()?;
                    outputs.push((id, len));
                }
                let id = next_id;
                next_id = Self::next_file_id(id)?;
                let handle = self
                    .fs
                    .open(&file_path(&self.dir, id, FileKind::Compact), true)?;
                output = Some((id, handle, 0));
            }
            let (id, handle, len) = output.as_mut().expect("an output file is open");
            handle.append(&record)?;
            // Bound the unsynced bytes a compaction piles up: a real page cache flushes them
            // anyway, and turmoil's simulated disk scans its pending writes on every read.
            if (*len + record_bytes) / COMPACTION_SYNC_BYTES != *len / COMPACTION_SYNC_BYTES {
                handle.sync()?;
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
            handle.sync()?;
            outputs.push((id, len));
        }
        // The output handles are closed by now: turmoil's simulated handles are bound to a path,
        // so the files are reopened under their final names below.

        // 3. Commit: final names, a fresh active file, one directory sync.
        for &(id, _) in &outputs {
            let from = file_path(&self.dir, id, FileKind::Compact);
            self.fs
                .rename(&from, &file_path(&self.dir, id, FileKind::Data))?;
        }
        let active_id = next_id;
        let active = self
            .fs
            .open(&file_path(&self.dir, active_id, FileKind::Data), true)?;
        self.fs.sync_dir(&self.dir)?;

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

        // 4. Remove the old files, oldest first, each removal durable before the next.
        for id in old_ids {
            self.fs
                .remove_file(&file_path(&self.dir, id, FileKind::Data))?;
            self.fs.sync_dir(&self.dir)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{MemFs, StdFs};
    use proptest::prelude::*;

    /// The store directory on a [`MemFs`].
    const DIR: &str = "/db";

    /// What a store holds: key to value.
    type Map = BTreeMap<Vec<u8>, Vec<u8>>;

    fn options(max_file_bytes: u64) -> LogOptions {
        LogOptions { max_file_bytes }
    }

    fn open_mem(fs: &MemFs, max_file_bytes: u64) -> (LogStore<MemFs>, RecoveryReport) {
        LogStore::open(fs.clone(), Path::new(DIR), options(max_file_bytes)).expect("open")
    }

    /// Everything a store holds, read back through `keys` and `get`.
    fn contents<F: FileSystem>(store: &LogStore<F>) -> Map {
        store
            .keys()
            .into_iter()
            .map(|key| {
                let value = store
                    .get(&key)
                    .expect("get")
                    .expect("a listed key has a value");
                (key, value)
            })
            .collect()
    }

    fn files_of_kind<F: FileSystem>(fs: &F, dir: &Path, kind: FileKind) -> Vec<PathBuf> {
        let paths = fs.read_dir(dir).expect("read_dir");
        paths
            .into_iter()
            .filter(|path| parse_file_name(path).is_some_and(|(_, k)| k == kind))
            .collect()
    }

    fn data_path(id: u32) -> PathBuf {
        file_path(Path::new(DIR), id, FileKind::Data)
    }

    fn key(i: usize) -> Vec<u8> {
        format!("key-{i:03}").into_bytes()
    }

    fn value(i: usize, version: usize) -> Vec<u8> {
        format!("value-{i}-{version};")
            .repeat(1 + i % 3)
            .into_bytes()
    }

    #[test]
    fn records_round_trip_and_zeroes_are_not_a_record() {
        let record = encode_record(b"key", Some(b"value"));
        let decoded = decode_record(&record).expect("a fresh record decodes");
        assert_eq!(
            (decoded.key, decoded.value, decoded.tombstone),
            (&b"key"[..], &b"value"[..], false)
        );
        let tombstone = encode_record(b"key", None);
        assert!(
            decode_record(&tombstone)
                .expect("a tombstone decodes")
                .tombstone
        );
        // A crash can leave a zero-filled tail (a file extended before its data reached the disk).
        assert_eq!(
            decode_record(&[0; RECORD_HEADER_BYTES]).err(),
            Some("checksum mismatch")
        );
    }

    #[test]
    fn file_names_are_parsed_exactly() {
        assert_eq!(
            parse_file_name(Path::new("/db/000001.data")),
            Some((1, FileKind::Data))
        );
        assert_eq!(
            parse_file_name(Path::new("/db/000042.compact")),
            Some((42, FileKind::Compact))
        );
        assert_eq!(
            parse_file_name(Path::new("/db/1234567.data")),
            Some((1_234_567, FileKind::Data))
        );
        for foreign in [
            "/db/1.data",
            "/db/000001.data.tmp",
            "/db/node.id",
            "/db/00000a.data",
            "/db/.data",
        ] {
            assert_eq!(parse_file_name(Path::new(foreign)), None, "{foreign}");
        }
    }

    #[test]
    fn a_crash_keeps_every_synced_record_and_drops_the_unsynced_ones() {
        let fs = MemFs::new();
        let (mut store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(report, RecoveryReport::default());
        let mut synced = Map::new();
        for i in 0..50 {
            store.put(&key(i), &value(i, 0)).unwrap();
            synced.insert(key(i), value(i, 0));
        }
        store.remove(&key(7)).unwrap();
        synced.remove(&key(7));
        store.sync().unwrap();
        for i in 40..60 {
            store.put(&key(i), &value(i, 1)).unwrap();
        }
        store.remove(&key(8)).unwrap();
        assert_eq!(
            store.get(&key(59)).unwrap(),
            Some(value(59, 1)),
            "unsynced writes are readable"
        );
        drop(store);
        fs.crash();

        let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        // One file, no rollover, and a MemFs crash drops every unsynced byte: exactly the synced
        // state is left, and nothing is damaged.
        assert_eq!(contents(&store), synced);
        assert_eq!(report.files, 1);
        assert_eq!(report.records, 51);
        assert_eq!(report.keys, 49);
        assert_eq!((report.truncated_bytes, report.truncated_at), (0, None));
    }

    #[test]
    fn on_a_real_disk_drop_and_reopen_keeps_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("store");
        let (mut store, report) = LogStore::open(StdFs, &dir, options(256)).unwrap();
        assert_eq!(report, RecoveryReport::default());
        let mut model = Map::new();
        for i in 0..200 {
            store.put(&key(i % 40), &value(i % 40, i)).unwrap();
            model.insert(key(i % 40), value(i % 40, i));
        }
        for i in (0..40).step_by(7) {
            store.remove(&key(i)).unwrap();
            model.remove(&key(i));
        }
        // No sync: the appends are in the OS's page cache, which a process kill does not lose.
        drop(store);

        let (mut store, report) = LogStore::open(StdFs, &dir, options(256)).unwrap();
        assert_eq!(contents(&store), model);
        assert!(
            report.files > 2,
            "the test rolled over ({} files)",
            report.files
        );
        assert_eq!(report.truncated_bytes, 0);

        let stats = store.compact().unwrap();
        assert_eq!(stats.records_kept, model.len() as u64);
        assert!(stats.bytes_after < stats.bytes_before);
        drop(store);
        let (store, _) = LogStore::open(StdFs, &dir, options(256)).unwrap();
        assert_eq!(contents(&store), model);
        assert!(files_of_kind(&StdFs, &dir, FileKind::Compact).is_empty());
    }

    #[test]
    fn a_torn_last_record_is_cut_and_everything_before_it_survives() {
        // Find where the third record lies, then cut the file at every byte inside it.
        let (offset, record_bytes) = {
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            store.put(b"a", b"first").unwrap();
            store.put(b"b", b"second").unwrap();
            store.put(b"c", b"third").unwrap();
            let location = store.keydir[&b"c"[..]];
            (location.offset, u64::from(location.record_bytes))
        };
        let before: Map = [
            (b"a".to_vec(), b"first".to_vec()),
            (b"b".to_vec(), b"second".to_vec()),
        ]
        .into();
        for torn_len in offset + 1..offset + record_bytes {
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            store.put(b"a", b"first").unwrap();
            store.put(b"b", b"second").unwrap();
            store.put(b"c", b"third").unwrap();
            store.sync().unwrap();
            drop(store);
            fs.tear(&data_path(FILE_ID_FIRST), torn_len).unwrap();

            let (mut store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            assert_eq!(contents(&store), before, "torn at {torn_len}");
            assert_eq!(
                report.truncated_at,
                Some((data_path(FILE_ID_FIRST), offset))
            );
            assert_eq!(report.truncated_bytes, torn_len - offset);
            assert_eq!(report.records, 2);
            let len = fs
                .open(&data_path(FILE_ID_FIRST), false)
                .unwrap()
                .len()
                .unwrap();
            assert_eq!(len, offset, "the torn bytes are gone from the file");

            // New records go right after the good ones, and the cut was made durable: a crash
            // now finds no damage.
            store.put(b"d", b"fourth").unwrap();
            store.sync().unwrap();
            drop(store);
            fs.crash();
            let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            let mut expected = before.clone();
            expected.insert(b"d".to_vec(), b"fourth".to_vec());
            assert_eq!(contents(&store), expected);
            assert_eq!(report.truncated_bytes, 0);
        }
    }

    #[test]
    fn garbage_after_the_last_record_is_cut_and_reported() {
        let mut bad_checksum = encode_record(b"x", Some(b"y"));
        *bad_checksum.last_mut().unwrap() ^= 1;
        let mut impossible_length = encode_record(b"x", Some(b"y"));
        impossible_length[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut unknown_flags = encode_record(b"x", Some(b"y"));
        unknown_flags[4] = 0x80;
        let garbages = [
            vec![0; 100],
            b"\xde\xad\xbe\xef\x01".to_vec(),
            bad_checksum,
            impossible_length,
            unknown_flags,
        ];
        for garbage in garbages {
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            store.put(b"a", b"first").unwrap();
            store.remove(b"a").unwrap();
            store.put(b"b", b"second").unwrap();
            store.sync().unwrap();
            let good_bytes = store.stats().bytes;
            drop(store);
            let mut file = fs.open(&data_path(FILE_ID_FIRST), false).unwrap();
            file.append(&garbage).unwrap();
            file.sync().unwrap();
            drop(file);

            let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
            assert_eq!(
                contents(&store),
                [(b"b".to_vec(), b"second".to_vec())].into()
            );
            assert_eq!(report.truncated_bytes, garbage.len() as u64, "{garbage:?}");
            assert_eq!(
                report.truncated_at,
                Some((data_path(FILE_ID_FIRST), good_bytes))
            );
            assert_eq!(report.records, 3);
        }
    }

    #[test]
    fn damage_in_an_older_file_refuses_to_open() {
        // Offset 20 is in the first record's key or value; offset 8 is the top byte of its key
        // length, which becomes impossible.
        for (damaged_offset, reason) in
            [(20, "checksum mismatch"), (8, "key length over the limit")]
        {
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, 64);
            for i in 0..10 {
                store.put(&key(i), &value(i, 0)).unwrap();
            }
            store.sync().unwrap();
            assert!(store.stats().files >= 3, "the test rolled over");
            drop(store);
            let first = data_path(FILE_ID_FIRST);
            let len_before = fs.read(&first).unwrap().len();
            fs.flip_byte(&first, damaged_offset).unwrap();

            let error = LogStore::open(fs.clone(), Path::new(DIR), options(64)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            let message = error.to_string();
            for part in ["000001.data", "offset 0", reason, "refusing to open"] {
                assert!(message.contains(part), "{part:?} not in {message:?}");
            }
            assert_eq!(
                fs.read(&first).unwrap().len(),
                len_before,
                "nothing was cut"
            );
        }
    }

    #[test]
    fn get_detects_a_damaged_record() {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", &[7; 100]).unwrap();
        store.sync().unwrap();
        let location = store.keydir[&b"a"[..]];
        fs.flip_byte(&data_path(FILE_ID_FIRST), location.offset + 50)
            .unwrap();
        let error = store.get(b"a").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }

    #[test]
    fn compaction_keeps_the_newest_state_of_every_key_and_shrinks_the_files() {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, 512);
        let mut model = Map::new();
        for round in 0..10 {
            for i in 0..20 {
                store.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
        }
        let removed: Vec<Vec<u8>> = (0..20).step_by(3).map(key).collect();
        for k in &removed {
            store.remove(k).unwrap();
            model.remove(k);
        }
        let before = store.stats();

        let stats = store.compact().unwrap();
        assert_eq!(stats.records_kept, model.len() as u64);
        assert_eq!(stats.bytes_before, before.bytes);
        assert_eq!(stats.bytes_after, before.live_bytes);
        assert!(stats.bytes_after * 10 < stats.bytes_before, "{stats:?}");
        assert_eq!(contents(&store), model);
        let after = store.stats();
        assert!(after.files < before.files, "{before:?} -> {after:?}");
        assert_eq!(after.bytes, stats.bytes_after);
        assert_eq!(
            files_of_kind(&fs, Path::new(DIR), FileKind::Data).len(),
            after.files as usize
        );

        // Compaction synced everything; a crash changes nothing, and removed keys stay removed
        // although the files with their tombstones are gone.
        drop(store);
        fs.crash();
        let (mut store, report) = open_mem(&fs, 512);
        assert_eq!(contents(&store), model);
        assert_eq!(report.records, model.len() as u64);
        for k in &removed {
            assert_eq!(store.get(k).unwrap(), None);
        }

        // The store goes on working after a compaction, and a second one keeps the same state.
        store.put(&key(0), b"again").unwrap();
        model.insert(key(0), b"again".to_vec());
        store.compact().unwrap();
        assert_eq!(contents(&store), model);
    }

    #[test]
    fn a_crash_at_any_step_of_a_compaction_loses_nothing_synced() {
        /// Operations a compaction of this store takes, with room to spare.
        const COMPACTION_OPS_MAX: u64 = 1_000;
        for crash_after_ops in 0.. {
            assert!(
                crash_after_ops < COMPACTION_OPS_MAX,
                "the compaction never finished"
            );
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, 256);
            let mut model = Map::new();
            for round in 0..4 {
                for i in 0..15 {
                    store.put(&key(i), &value(i, round)).unwrap();
                    model.insert(key(i), value(i, round));
                }
                store.remove(&key(round)).unwrap();
                model.remove(&key(round));
            }
            store.sync().unwrap();
            let synced = model.clone();
            // Unsynced writes too: the compaction makes them durable once it gets past its sync.
            store.put(&key(100), b"late").unwrap();
            store.remove(&key(10)).unwrap();
            model.insert(key(100), b"late".to_vec());
            model.remove(&key(10));

            fs.set_fail_after_ops(Some(crash_after_ops));
            let result = store.compact();
            drop(store);
            fs.crash();
            let (store, _) = open_mem(&fs, 256);
            let recovered = contents(&store);
            assert!(
                files_of_kind(&fs, Path::new(DIR), FileKind::Compact).is_empty(),
                "recovery removes unfinished output"
            );
            if result.is_ok() {
                assert_eq!(recovered, model);
                break;
            }
            assert!(
                recovered == synced || recovered == model,
                "crash after {crash_after_ops} operations: {recovered:?}"
            );
        }
    }

    #[test]
    fn unfinished_compaction_output_is_removed_on_open() {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", b"1").unwrap();
        store.sync().unwrap();
        drop(store);
        let leftover = file_path(Path::new(DIR), 9, FileKind::Compact);
        let mut file = fs.open(&leftover, true).unwrap();
        file.append(&encode_record(b"a", Some(b"stale"))).unwrap();
        file.sync().unwrap();
        fs.sync_dir(Path::new(DIR)).unwrap();
        // Files the store does not own are left alone.
        let foreign = Path::new(DIR).join("node.id");
        fs.write_durable(&foreign, b"actor 7").unwrap();

        let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(report.compaction_files_removed, 1);
        assert_eq!(contents(&store), [(b"a".to_vec(), b"1".to_vec())].into());
        assert!(!fs.exists(&leftover));
        // The removal was made durable.
        drop(store);
        fs.crash();
        assert!(!fs.exists(&leftover));
        assert_eq!(fs.read(&foreign).unwrap(), b"actor 7");
    }

    #[test]
    fn sizes_are_bounded() {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        let error = store.put(&vec![1; KEY_BYTES_MAX + 1], b"v").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let error = store.put(b"k", &vec![1; VALUE_BYTES_MAX + 1]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let error = store.remove(&vec![1; KEY_BYTES_MAX + 1]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);

        // A refused write does not harm the store, and the largest records and the empty key work.
        let big_key = vec![2; KEY_BYTES_MAX];
        let big_value = vec![3; VALUE_BYTES_MAX];
        store.put(&big_key, &big_value).unwrap();
        store.put(b"", b"").unwrap();
        store.sync().unwrap();
        drop(store);
        fs.crash();
        let (store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(store.get(&big_key).unwrap(), Some(big_value));
        assert_eq!(store.get(b"").unwrap(), Some(Vec::new()));
    }

    #[test]
    fn a_failed_write_stops_writes_until_reopened() {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", b"1").unwrap();
        fs.set_fail_after_ops(Some(0));
        assert!(store.put(b"b", b"2").is_err());
        fs.set_fail_after_ops(None);
        // The disk works again, but the store cannot know what the failed append left behind.
        let error = store.put(b"c", b"3").unwrap_err();
        assert!(error.to_string().contains("reopen"), "{error}");
        assert!(store.sync().is_err());
        assert!(store.compact().is_err());
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()), "reads go on");
        drop(store);
        let (store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(contents(&store), [(b"a".to_vec(), b"1".to_vec())].into());
    }

    #[test]
    fn zero_max_file_bytes_is_refused() {
        let error = LogStore::open(MemFs::new(), Path::new(DIR), options(0)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    /// One step of a generated history.
    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, Vec<u8>),
        Remove(u8),
        Sync,
        Compact,
        /// Drop the store and open it again, without a crash.
        Reopen,
        /// Drop the store, crash the disk, open it again.
        Crash,
        /// Like `Crash`, keeping a prefix of the unsynced bytes chosen by the number.
        CrashTearing(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u8..8, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(k, v)| Op::Put(k, v)),
            3 => (0u8..8).prop_map(Op::Remove),
            2 => Just(Op::Sync),
            1 => Just(Op::Compact),
            1 => Just(Op::Reopen),
            1 => Just(Op::Crash),
            1 => any::<u64>().prop_map(Op::CrashTearing),
        ]
    }

    /// A store on a [`MemFs`] beside a model of what it must hold.
    struct Harness {
        fs: MemFs,
        max_file_bytes: u64,
        store: Option<LogStore<MemFs>>,
        /// What the store holds now.
        current: Map,
        /// What a crash may leave: the durable state first, then the state after each later write.
        candidates: Vec<Map>,
    }

    impl Harness {
        fn new(max_file_bytes: u64) -> Harness {
            let fs = MemFs::new();
            let (store, _) = open_mem(&fs, max_file_bytes);
            Harness {
                fs,
                max_file_bytes,
                store: Some(store),
                current: Map::new(),
                candidates: vec![Map::new()],
            }
        }

        fn store(&mut self) -> &mut LogStore<MemFs> {
            self.store.as_mut().expect("the store is open")
        }

        /// Applies a write to the store and, if it succeeds, to the model. A write that started
        /// a new file made every earlier write durable.
        fn write(
            &mut self,
            write: impl FnOnce(&mut LogStore<MemFs>) -> io::Result<()>,
            model: impl FnOnce(&mut Map),
        ) -> io::Result<()> {
            let files = self.store().stats().files;
            write(self.store())?;
            let before = self.current.clone();
            model(&mut self.current);
            if self.store().stats().files > files {
                self.candidates = vec![before];
            }
            self.candidates.push(self.current.clone());
            Ok(())
        }

        fn durable(&mut self) {
            self.candidates = vec![self.current.clone()];
        }

        /// Crashes (after `crash`), reopens, and returns what the store holds.
        fn crash_and_reopen(&mut self, crash: impl FnOnce(&MemFs)) -> Map {
            self.store = None;
            crash(&self.fs);
            let (store, _) = open_mem(&self.fs, self.max_file_bytes);
            let recovered = contents(&store);
            self.store = Some(store);
            recovered
        }

        /// Applies `op` to the store and the model; on an error the model is left as it was.
        fn apply(&mut self, op: &Op) -> io::Result<()> {
            match op {
                Op::Put(k, v) => self.write(
                    |store| store.put(&[*k], v),
                    |map| drop(map.insert(vec![*k], v.clone())),
                )?,
                Op::Remove(k) => self.write(
                    |store| store.remove(&[*k]),
                    |map| drop(map.remove(&[*k][..])),
                )?,
                Op::Sync => {
                    self.store().sync()?;
                    self.durable();
                }
                Op::Compact => {
                    let stats = self.store().compact()?;
                    assert_eq!(stats.records_kept, self.current.len() as u64);
                    self.durable();
                }
                Op::Reopen => {
                    let recovered = self.crash_and_reopen(|_| ());
                    assert_eq!(recovered, self.current, "a clean reopen keeps everything");
                    // Opening syncs what the last run left unsynced.
                    self.durable();
                }
                Op::Crash => {
                    let recovered = self.crash_and_reopen(MemFs::crash);
                    // Without torn writes, exactly the durable state is left.
                    assert_eq!(
                        recovered, self.candidates[0],
                        "a crash keeps the durable state"
                    );
                    self.current = recovered;
                    self.durable();
                }
                Op::CrashTearing(seed) => {
                    let recovered = self
                        .crash_and_reopen(|fs| fs.crash_tearing(|pending| seed % (pending + 1)));
                    self.check_candidate(&recovered);
                    self.current = recovered;
                    self.durable();
                }
            }
            // Reads fail too once a failure is injected: that ends the history like a failed op.
            let store = self.store();
            let mut held = Map::new();
            for key in store.keys() {
                let value = store.get(&key)?.expect("a listed key has a value");
                held.insert(key, value);
            }
            assert_eq!(
                held, self.current,
                "the store holds the model's state after {op:?}"
            );
            Ok(())
        }

        fn check_candidate(&self, recovered: &Map) {
            assert!(
                self.candidates.contains(recovered),
                "recovered {recovered:?}, which is neither the durable state nor a later one: \
                 {:?}",
                self.candidates
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// After any history of writes, syncs, compactions, reopens and crashes, the store holds
        /// the model's state; a crash leaves the durable state (exactly, or a later prefix of the
        /// writes if the crash tore the unsynced bytes).
        #[test]
        fn the_store_follows_a_map_through_crashes(
            max_file_bytes in 16u64..400,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let mut harness = Harness::new(max_file_bytes);
            for op in &ops {
                harness.apply(op).expect("no failure is injected");
            }
            let recovered = harness.crash_and_reopen(MemFs::crash);
            prop_assert_eq!(&recovered, &harness.candidates[0]);
        }
    }

    #[test]
    fn a_crash_at_any_step_of_a_workload_recovers_a_state_between_the_last_sync_and_the_crash() {
        /// Operations this workload takes, with room to spare.
        const WORKLOAD_OPS_MAX: u64 = 5_000;
        let mut workload = Vec::new();
        for i in 0..60u8 {
            workload.push(Op::Put(i % 9, vec![i; usize::from(i % 23)]));
            if i % 5 == 0 {
                workload.push(Op::Remove(i % 7));
            }
            if i % 11 == 0 {
                workload.push(Op::Sync);
            }
            if i == 30 {
                workload.push(Op::Compact);
            }
        }
        for crash_after_ops in 0.. {
            assert!(
                crash_after_ops < WORKLOAD_OPS_MAX,
                "the workload never finished"
            );
            let mut harness = Harness::new(96);
            harness.fs.set_fail_after_ops(Some(crash_after_ops));
            let finished = workload.iter().all(|op| harness.apply(op).is_ok());
            let recovered = harness.crash_and_reopen(MemFs::crash);
            harness.check_candidate(&recovered);
            if finished {
                break;
            }
        }
    }
}
