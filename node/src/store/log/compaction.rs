//! Compaction: rewriting the newest record of every live key into new files and dropping the old
//! ones, to reclaim overwritten records and tombstones, and to leave damage behind after recovery.
//!
//! Its own module because its crash safety rests on one order of steps (the parent module's docs,
//! "Compaction"), which [`LogStore::compact_files`] follows step by step.

use super::files::{self, FileKind, file_path};
use super::record::{self, encode_record};
use super::{DataFile, Location, LogStore, at, next_file_id};
use crate::fs::{FileSystem, FsFile};
use crate::store::CompactionStats;
use std::collections::BTreeMap;
use std::io;

/// A compaction syncs its output at least every this many bytes.
pub const COMPACTION_SYNC_BYTES: u64 = 16 * 1024;

impl<F: FileSystem> LogStore<F> {
    /// The steps of [`Storage::compact`](crate::store::Storage::compact); see the module docs for
    /// why in this order.
    pub(super) fn compact_files(&mut self) -> io::Result<CompactionStats> {
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
                Some((_, _, len)) => {
                    *len > record::FILE_START_BYTES
                        && len + record_bytes > self.options.max_file_bytes
                }
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
                let mut handle = self
                    .fs
                    .open(&compact_path(id), true)
                    .map_err(|e| at(e, "creation of", &compact_path(id)))?;
                // Each output file names itself in its first record, as every file the store
                // appends to does, so that a copy of it under another name is noticed.
                let start = record::file_start_record(self.store_id, id);
                handle
                    .append(&start)
                    .map_err(|e| at(e, "append to", &compact_path(id)))?;
                output = Some((id, handle, start.len() as u64));
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
        self.start_active_file()?;
        self.check_invariants();

        // 4. The manifest: the old files are superseded.
        files::write_manifest(&self.fs, &self.dir, &self.manifest())?;

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
