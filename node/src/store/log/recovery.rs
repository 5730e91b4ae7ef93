//! Recovery: what [`LogStore::open`] does to turn whatever a crash or decay left in the directory
//! into a store it can serve, and the [`RecoveryReport`] of what it found and repaired.
//!
//! Kept apart from the write path because it is where damage is repaired: it replays every
//! data file, cuts a torn tail, skips corruption, notices lost files against the manifest, and
//! compacts the store when damage or a hole is left behind. The parent module's docs ("Durability
//! and recovery") say what each kind of damage is and why it is handled so.

use super::files::{self, FileKind, Manifest, ManifestRead, file_path};
use super::record::{self, BadRange};
use super::{
    DataFile, FILE_ID_FIRST, Location, LogOptions, LogStore, at, invalid_input, next_file_id,
};
use crate::fs::{FileSystem, FsFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Skipped ranges and missing files listed one by one in a [`RecoveryReport`] and the log; past
/// this many, only counted.
pub const RECOVERY_ITEMS_REPORTED_MAX: usize = 64;

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

/// A sealed data file found shorter than the manifest recorded it: its last records are gone,
/// perhaps cut exactly at a record boundary, where its bytes alone show nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShortenedFile {
    /// The file.
    pub file: PathBuf,
    /// Its length as found.
    pub len_bytes: u64,
    /// Its length when it was sealed.
    pub sealed_bytes: u64,
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
    /// Sealed data files found shorter than the manifest recorded them; at most
    /// [`RECOVERY_ITEMS_REPORTED_MAX`].
    pub shortened_files: Vec<ShortenedFile>,
    /// All shortened files, listed or not.
    pub shortened_file_count: u64,
    /// The manifest.
    pub manifest: ManifestState,
    /// The newest data file, found empty although the manifest names it (emptied after the store
    /// wrote its file-start record).
    pub emptied_file: Option<PathBuf>,
    /// An earlier recovery lost data and the node stopped before it took a new actor id for it
    /// (the loss marker was still there, see [`LogStore::loss_handled`]).
    pub earlier_loss_pending: bool,
    /// Whether recovery compacted the store to leave skipped damage and missing files behind.
    pub rewritten: bool,
    /// Unfinished compaction output files deleted.
    pub compaction_files_removed: u32,
    /// Data files deleted because a committed compaction had superseded them (its crash stopped it
    /// before it removed them).
    pub superseded_files_removed: u32,
    /// The newest data file found and its length as found: where the log ended. A clean stop
    /// records where it left the log ([`crate::store::clean`]); a log that ends elsewhere at the
    /// next start was changed while the node was down, which a cut of the newest file at a record
    /// boundary leaves no other trace of.
    pub log_end: Option<LogEnd>,
}

/// Where a log ended: its newest data file, and that file's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEnd {
    /// The newest data file's id.
    pub file_id: u32,
    /// Its length, bytes.
    pub len_bytes: u64,
}

impl RecoveryReport {
    /// Whether recovery cut, skipped, or could not find or read anything: records this store once
    /// held may be gone, so the counters they carried may be issued again unless the node changes
    /// its actor id.
    pub fn lost_data(&self) -> bool {
        self.truncated_bytes > 0
            || self.skipped_ranges > 0
            || self.missing_file_count > 0
            || self.shortened_file_count > 0
            || self.emptied_file.is_some()
            || self.earlier_loss_pending
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
        if let Some(first) = self.shortened_files.first() {
            parts.push(format!(
                "{} sealed data files shorter than when sealed, the first {} ({} of {} bytes)",
                self.shortened_file_count,
                first.file.display(),
                first.len_bytes,
                first.sealed_bytes
            ));
        }
        if let Some(file) = &self.emptied_file {
            parts.push(format!(
                "the newest data file {} was empty although the manifest names it",
                file.display()
            ));
        }
        if self.earlier_loss_pending {
            parts.push(
                "an earlier recovery lost data and stopped before a new actor id was taken".into(),
            );
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

    /// Records a sealed file found shorter than it was sealed, with a loud warning.
    fn check_sealed_length(&mut self, dir: &Path, id: u32, len_bytes: u64, sealed_bytes: u64) {
        if len_bytes >= sealed_bytes {
            return;
        }
        self.shortened_file_count += 1;
        if self.shortened_files.len() < RECOVERY_ITEMS_REPORTED_MAX {
            let file = file_path(dir, id, FileKind::Data);
            tracing::error!(
                file = %file.display(),
                len_bytes,
                sealed_bytes,
                "a sealed data file is shorter than when it was sealed: the records past its end \
                 are lost here (replicas and anti-entropy refill them)"
            );
            self.shortened_files.push(ShortenedFile {
                file,
                len_bytes,
                sealed_bytes,
            });
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

impl<F: FileSystem> LogStore<F> {
    /// Opens the store in `dir` (creating the directory if needed), recovers it as the module docs
    /// describe, and says what recovery found. Fails if `options` are invalid and on I/O errors;
    /// damage is repaired and reported, never a reason to fail, except where nothing tells
    /// this store's files from another's (`check_files_name_one_store`) or a file id is past
    /// the limit: then it fails, naming the files, and leaves them as they are.
    ///
    /// `new_store_id` is called (at most once) when the store needs an id: a new store, or one
    /// written before stores had ids. It should be random (the environment's randomness), so that
    /// no two stores share one: a file of one copied into the other is then noticed.
    pub fn open(
        fs: F,
        dir: &Path,
        options: LogOptions,
        new_store_id: impl FnOnce() -> u64,
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
        // Before anything is removed or repaired: a store cannot go on from an id past the
        // bound (see `files::FILE_ID_MAX`), and its records cannot be kept without the file.
        if let Some(&newest) = data_ids.last()
            && newest > files::FILE_ID_MAX
        {
            let path = file_path(dir, newest, FileKind::Data);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: a data file id past the limit {}, which no store reaches: the name is \
                     damaged (rename the file back to its id: the one its first record names, \
                     as a zero byte, a name and the id in 4 bytes little-endian; a file whose \
                     name and first record disagree is skipped as damage. A file of a store \
                     written before records named their file names none: give it the id after \
                     the newest one below the limit)",
                    path.display(),
                    files::FILE_ID_MAX
                ),
            ));
        }
        for path in compact_paths {
            // Compaction commits by renaming its output; a file still under the temporary name is
            // from a compaction that never committed, and the data files still hold everything it
            // would have held.
            tracing::warn!(
                file = %path.display(),
                "removing the output of an unfinished compaction"
            );
            // Named in the error: a directory in its place gives only "Is a directory".
            fs.remove_file(&path)
                .map_err(|e| at(e, "removal of the unfinished compaction output", &path))?;
            report.compaction_files_removed += 1;
        }

        report.earlier_loss_pending = fs.exists(&dir.join(files::LOSS_MARKER_NAME));
        let mut manifest = files::read_manifest(&fs, dir)?;
        // A manifest is trusted to remove the files below its first id only if that file is
        // there: a committed compaction renames its output (or creates the new active file)
        // before it writes the manifest that names it. A manifest whose first file is missing
        // while older files are there does not describe this directory (another store's, copied
        // or swapped in, or a later one restored beside older files): trusted, it would delete
        // every data file. It is damage, like an unreadable one: nothing is removed.
        if let ManifestRead::Found(m) = &manifest
            && data_ids.first().is_some_and(|&first| first < m.first_id)
            && data_ids.binary_search(&m.first_id).is_err()
        {
            manifest = ManifestRead::Unreadable(format!(
                "it names data files from id {} on, which is missing, beside older files (ids \
                 {}..={}): not this directory's manifest, so no file is removed",
                m.first_id,
                data_ids[0],
                data_ids[data_ids.len() - 1]
            ));
        }
        match &manifest {
            ManifestRead::Found(m) => {
                let superseded = data_ids.partition_point(|&id| id < m.first_id);
                for id in data_ids.drain(..superseded) {
                    let path = file_path(dir, id, FileKind::Data);
                    tracing::warn!(
                        file = %path.display(),
                        "removing a data file that a committed compaction superseded"
                    );
                    fs.remove_file(&path)
                        .map_err(|e| at(e, "removal of the superseded data file", &path))?;
                    report.superseded_files_removed += 1;
                }
                report_missing(&mut report, dir, m, &data_ids);
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

        // The store's id: the manifest's; else (a manifest of a store written before stores had
        // ids, or none readable) the one the files name, so that a crash after the first file
        // named a new id and before the manifest did loses nothing; else a new one. The manifest
        // is trusted over the files: a file copied in from another store is more likely than a
        // manifest copied in, and replaying another store's records would serve what this node
        // never held, where skipping them only loses what the replicas refill.
        let store_id = match &manifest {
            ManifestRead::Found(Manifest {
                store_id: Some(store_id),
                ..
            }) => *store_id,
            _ => {
                let mut starts = Vec::with_capacity(data_ids.len());
                for &id in &data_ids {
                    starts.push(first_file_start(&fs, dir, id)?);
                }
                check_files_name_one_store(dir, &data_ids, &starts)?;
                match starts.iter().flatten().find_map(|start| start.store_id) {
                    Some(store_id) => {
                        tracing::warn!(
                            dir = %dir.display(),
                            store = %format!("{store_id:016x}"),
                            "no manifest names the store: taking the store id the data files name"
                        );
                        store_id
                    }
                    None => new_store_id(),
                }
            }
        };
        let mut store = LogStore {
            fs,
            dir: dir.to_path_buf(),
            options,
            store_id,
            keydir: BTreeMap::new(),
            files: BTreeMap::new(),
            active_unsynced: false,
            live_bytes: 0,
            failed: false,
        };
        let mut bytes_found = 0;
        for (index, &id) in data_ids.iter().enumerate() {
            let newest = index + 1 == data_ids.len();
            let len_bytes = store.recover_file(id, newest, &mut report)?;
            if newest {
                report.log_end = Some(LogEnd {
                    file_id: id,
                    len_bytes,
                });
            }
            // A file holding only its file-start record holds no data.
            bytes_found += len_bytes.saturating_sub(record::FILE_START_BYTES);
            if let ManifestRead::Found(m) = &manifest
                && let Some(&sealed_bytes) = m.sealed_bytes.get(&id)
            {
                report.check_sealed_length(dir, id, len_bytes, sealed_bytes);
            }
            // The store starts every file it appends to with a record, so a newest file the
            // manifest names (a rollover that crashed before naming it leaves an empty one) found
            // empty was emptied: a cut at a record boundary, with nothing left to show it.
            if newest
                && len_bytes == 0
                && let ManifestRead::Found(m) = &manifest
                && id <= m.last_id
            {
                let file = file_path(dir, id, FileKind::Data);
                tracing::error!(
                    file = %file.display(),
                    "the newest data file is empty although the manifest names it: its records \
                     are lost here (replicas and anti-entropy refill them)"
                );
                report.emptied_file = Some(file);
            }
        }
        if manifest == ManifestRead::Missing && bytes_found > 0 {
            tracing::error!(
                dir = %dir.display(),
                "the manifest is missing beside data files: files may have been lost"
            );
            report.manifest = ManifestState::Missing;
        }

        // Before any repair below makes the loss durable (a rewritten manifest, a compaction):
        // a crash after the repair must not leave a store that looks clean to a node that never
        // took a new actor id for it.
        if report.lost_data() {
            store.mark_loss()?;
        }
        match store.files.last_entry() {
            // The newest file may hold appends that a previous run never synced, or a cut torn
            // tail: sync them before serving them and before appending, so that nothing read from
            // this store can be lost by a later crash.
            Some(mut active) => {
                // An empty newest file (emptied, or from a rollover that crashed) gets its
                // file-start record, so that emptying it again is noticed.
                if active.get().len_bytes == 0 {
                    store.start_active_file()?;
                    active = store.files.last_entry().expect("just started");
                }
                active.get_mut().handle.sync()?
            }
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
            if manifest != ManifestRead::Found(wanted.clone()) {
                files::write_manifest(&store.fs, &store.dir, &wanted)?;
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
        // What the file's first record names, if it names anything (see
        // `record::file_start_record`), and why the file is not this one, if it is not.
        let mut named = record::FileStart::default();
        let store_id = self.store_id;
        let not_this_file = |named: &record::FileStart| {
            if named.file_id.is_some_and(|named| named != id) {
                Some("the file's first record names another data file: a copy or a swap")
            } else if named.store_id.is_some_and(|named| named != store_id) {
                Some(
                    "the file's first record names another store: a file of another store's \
                     directory (another node's, or a lost disk's)",
                )
            } else {
                None
            }
        };
        let scan = record::scan_file(
            &handle,
            file_bytes,
            |offset, record_bytes, tombstone, key| {
                if offset == 0
                    && let Some(start) = record::file_start(tombstone, key)
                {
                    named = start;
                    return;
                }
                // A copy of another file: none of its records is replayed (below).
                if not_this_file(&named).is_some() {
                    return;
                }
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
        if let Some(reason) = not_this_file(&named) {
            // A file copied or moved here from another name or another store (a duplicated or
            // swapped file, a restore that mixed up files or nodes): its records are an older or
            // another state of the store, or another store's, and replayed they would take keys
            // back to versions the node has moved on from (so that it issued their counters
            // again) or bring keys it never held. Skipped whole as damage: the loss gives the node
            // a new actor id, and the compaction at the end of `open` drops the file. What the
            // file of this name held is lost here; the replicas refill it.
            tracing::error!(
                file = %path.display(),
                names_file = ?named.file_id,
                names_store = ?named.store_id.map(|store| format!("{store:016x}")),
                store = %format!("{store_id:016x}"),
                "{reason}: none of its records is replayed"
            );
            report.skip(
                &path,
                BadRange {
                    offset: 0,
                    bytes: file_bytes,
                    reason,
                },
                false,
            );
            self.files.insert(
                id,
                DataFile {
                    handle,
                    len_bytes: file_bytes,
                },
            );
            return Ok(file_bytes);
        }
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
                // old damage). The loss is marked first: a file system may make the cut durable
                // at any time.
                Self::write_loss_marker(&self.fs, &self.dir)?;
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
}

impl<F: FileSystem> LogStore<F> {
    /// Marks that this recovery lost data, durably, unless marked already.
    fn mark_loss(&self) -> io::Result<()> {
        if self.fs.exists(&self.dir.join(files::LOSS_MARKER_NAME)) {
            return Ok(());
        }
        Self::write_loss_marker(&self.fs, &self.dir)
    }

    fn write_loss_marker(fs: &F, dir: &Path) -> io::Result<()> {
        let path = dir.join(files::LOSS_MARKER_NAME);
        fs.write_durable(
            &path,
            b"a recovery lost data; the node takes a new actor id before it removes this file\n",
        )
        .map_err(|e| at(e, "write of the loss marker", &path))
    }

    /// Says that the node has dealt with the loss this recovery (or an earlier one) reported: it
    /// took and stored a new actor id. Until then the loss marker stays, and every recovery
    /// reports the loss again ([`RecoveryReport::earlier_loss_pending`]), however clean the files
    /// look after the repairs.
    pub fn loss_handled(&mut self) -> io::Result<()> {
        let path = self.dir.join(files::LOSS_MARKER_NAME);
        if !self.fs.exists(&path) {
            return Ok(());
        }
        self.fs
            .remove_file(&path)
            .and_then(|()| self.fs.sync_dir(&self.dir))
            .map_err(|e| at(e, "removal of the loss marker", &path))
    }
}

/// Counts and lists (up to [`RECOVERY_ITEMS_REPORTED_MAX`], with an error each) the data files
/// `manifest` names that are not among `found` (ascending, none below the manifest's first id).
fn report_missing(report: &mut RecoveryReport, dir: &Path, manifest: &Manifest, found: &[u32]) {
    let (first_id, last_id) = (manifest.first_id, manifest.last_id);
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

/// What the first record of data file `id` names, if it is a file-start record (`None` for a
/// file that does not start with one: empty, or damaged at its start; a file-start record of an
/// older format names the file alone, or nothing).
fn first_file_start<F: FileSystem>(
    fs: &F,
    dir: &Path,
    id: u32,
) -> io::Result<Option<record::FileStart>> {
    let path = file_path(dir, id, FileKind::Data);
    let handle = fs.open(&path, false)?;
    let len_bytes = handle.len()?.min(record::FILE_START_BYTES);
    let mut start = None;
    record::scan_file(&handle, len_bytes, |offset, _, tombstone, key| {
        if offset == 0 {
            start = record::file_start(tombstone, key);
        }
    })
    .map_err(|e| at(e, "recovery read of", &path))?;
    Ok(start)
}

/// Most files of each store the error of [`check_files_name_one_store`] lists.
const FILES_LISTED_PER_STORE_MAX: usize = 8;

/// With no manifest to name the store, refuses files that no crash of one store leaves (`starts`
/// are the first records of the data files `ids`, ascending):
/// - files that name two or more stores. A store names one id in every file it starts, and a
///   store written before store ids takes one when it is first opened and names it in every file
///   after; so some of them were copied in from another store's directory (another node's, or
///   this node's before its disk was lost), and with the manifest lost or of the older format
///   nothing says which are this store's. The files once settled it by a vote (the store most
///   files name, on a tie the oldest file's), and a single foreign file under a lower id than a
///   store's only file won it: the store's own records were skipped as damage, then dropped by
///   the compaction, and the foreign ones served as this node's;
/// - a file that names a store below one that starts with the record of the format before store
///   ids (its file id alone, or the empty key's tombstone). A store names its id only in files it
///   starts after it took one, whose ids are above every file it wrote before; so the file that
///   names a store was copied in among the older files (or an old file among newer ones), and
///   its store's id, the only one named, would make its records this store's.
///
/// Either way the node refuses to start, naming the files, and changes none of them: skipping
/// the files of one store as damage would drop this node's own records whenever it picked
/// wrong, acknowledged writes that may be held nowhere else; an operator who moves the other
/// store's files out (or restores this store's manifest) loses nothing.
///
/// Not refused: files that name one store, above every file of the older format. That is what a
/// crash leaves in the first start after an upgrade (a compaction's output, or the newest file
/// started again, named the new id before the manifest did), and a single foreign file copied
/// in above the files of a store that names none looks the same; it is replayed as the store's.
fn check_files_name_one_store(
    dir: &Path,
    ids: &[u32],
    starts: &[Option<record::FileStart>],
) -> io::Result<()> {
    debug_assert_eq!(ids.len(), starts.len());
    let mut by_store: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for (&id, start) in ids.iter().zip(starts) {
        if let Some(store_id) = start.and_then(|s| s.store_id) {
            by_store.entry(store_id).or_default().push(id);
        }
    }
    let list = |files: &[u32]| {
        let mut names: Vec<String> = files
            .iter()
            .take(FILES_LISTED_PER_STORE_MAX)
            .map(|&id| file_path(dir, id, FileKind::Data).display().to_string())
            .collect();
        if files.len() > FILES_LISTED_PER_STORE_MAX {
            names.push(format!(
                "and {} more",
                files.len() - FILES_LISTED_PER_STORE_MAX
            ));
        }
        names.join(", ")
    };
    let refuse = |what: String| {
        tracing::error!(dir = %dir.display(), "{what}");
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {what}. No crash leaves that: some of these files were copied in from \
                 another store's directory, and no manifest says which store is this one's \
                 (it is missing, unreadable, or of the format before store ids). Move the \
                 other store's files out of the directory, or restore this store's MANIFEST, \
                 and start again; the files named here were left as they are",
                dir.display()
            ),
        ))
    };
    if by_store.len() > 1 {
        let stores: Vec<String> = by_store
            .iter()
            .map(|(store_id, files)| format!("store {store_id:016x} in {}", list(files)))
            .collect();
        return refuse(format!(
            "the data files name {} stores: {}",
            by_store.len(),
            stores.join("; ")
        ));
    }
    let Some((&store_id, named)) = by_store.iter().next() else {
        return Ok(());
    };
    let older: Vec<u32> = ids
        .iter()
        .zip(starts)
        .filter(|(_, start)| start.is_some_and(|s| s.store_id.is_none()))
        .map(|(&id, _)| id)
        .filter(|&id| id > named[0])
        .collect();
    if !older.is_empty() {
        return refuse(format!(
            "{} names store {store_id:016x}, below {}, which start as files of the format \
             before store ids do",
            list(&named[..1]),
            list(&older)
        ));
    }
    Ok(())
}
