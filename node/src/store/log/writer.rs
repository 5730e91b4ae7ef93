//! The write path: appending records to the active data file, syncing it, rolling over to a new
//! file, and the guard that makes the store refuse writes after one failed.
//!
//! Every change to the files goes through [`LogStore::guarded`], because after a failed write or
//! sync the files may no longer match the key directory (see [`LogStore`]); the order of steps in
//! a rollover is what lets recovery take damage in any file but the newest for decay (the parent
//! module's docs, "Durability and recovery").

use super::files::{self, FileKind, file_path};
use super::record;
use super::{DataFile, Location, LogStore, at, next_file_id};
use crate::fs::{FileSystem, FsFile};
use std::io;

impl<F: FileSystem> LogStore<F> {
    /// Creates an empty data file and makes it the active file. The caller syncs the directory.
    pub(super) fn create_data_file(&mut self, id: u32) -> io::Result<()> {
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
        self.start_active_file()
    }

    /// Appends the file-start record to the empty active file and syncs it, so that recovery can
    /// tell the file emptied later from one that never held a record
    /// ([`record::file_start_record`]). Synced at once, before the manifest names the file: a
    /// crash must not leave a named file empty that lost nothing.
    pub(super) fn start_active_file(&mut self) -> io::Result<()> {
        let id = self.active_id();
        let path = file_path(&self.dir, id, FileKind::Data);
        let active = self
            .files
            .get_mut(&id)
            .expect("an open store has an active file");
        assert_eq!(active.len_bytes, 0, "only an empty file is started");
        let start = record::file_start_record(self.store_id, id);
        active
            .handle
            .append(&start)
            .map_err(|e| at(e, "append to", &path))?;
        active.handle.sync().map_err(|e| at(e, "sync of", &path))?;
        active.len_bytes = start.len() as u64;
        Ok(())
    }

    pub(super) fn check_usable(&self) -> io::Result<()> {
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
    pub(super) fn guarded<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check_usable()?;
        let result = step(self);
        if let Err(error) = &result {
            tracing::error!(dir = %self.dir.display(), %error, "log store failed; it must be reopened");
            self.failed = true;
        }
        result
    }

    pub(super) fn sync_active(&mut self) -> io::Result<()> {
        if self.active_unsynced {
            self.sync_active_now()?;
        }
        Ok(())
    }

    /// Starts a sync of the active file that another thread can carry out
    /// ([`crate::fs::DetachedSync`]), if the file system has one and there is anything to sync;
    /// otherwise syncs here. The active file counts as synced from now on: the caller must not
    /// treat the writes so far as durable before the returned sync has run.
    pub(super) fn begin_sync_active(&mut self) -> io::Result<Option<crate::fs::DetachedSync>> {
        if !self.active_unsynced {
            return Ok(None);
        }
        let id = self.active_id();
        let path = file_path(&self.dir, id, FileKind::Data);
        let active = self
            .files
            .get(&id)
            .expect("an open store has an active file");
        match active.handle.detached_sync() {
            Ok(Some(sync)) => {
                self.active_unsynced = false;
                Ok(Some(crate::fs::DetachedSync::new(move || {
                    sync.run().map_err(|e| at(e, "sync of", &path))
                })))
            }
            Ok(None) => self.sync_active_now().map(|()| None),
            Err(e) => Err(at(e, "a handle for syncing", &path)),
        }
    }

    /// Syncs the active file, whether or not it has unsynced appends: a sync begun apart
    /// ([`LogStore::begin_sync_active`]) may still be running.
    fn sync_active_now(&mut self) -> io::Result<()> {
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
        Ok(())
    }

    /// Syncs the active file and starts a new one.
    fn roll_over(&mut self) -> io::Result<()> {
        // Recovery takes damage in any file but the newest for decay of durable data, so a file
        // must be durable before a newer one exists; a sync begun apart may not have run yet.
        self.sync_active_now()?;
        // The active file's length goes into the manifest before a newer file exists: a crash
        // between the new file and the manifest that names it would otherwise leave this file
        // sealed with no recorded length, where a cut at a record boundary goes unnoticed.
        let mut sealing = self.manifest();
        let active_id = self.active_id();
        let active_bytes = self.files[&active_id].len_bytes;
        sealing.sealed_bytes.insert(active_id, active_bytes);
        files::write_manifest(&self.fs, &self.dir, &sealing)?;
        let id = next_file_id(active_id)?;
        self.create_data_file(id)?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| at(e, "sync of the directory", &self.dir))?;
        // After the file exists: a crash in between leaves an empty file the manifest does not
        // name yet, which recovery adopts; the other order would leave a named file missing.
        files::write_manifest(&self.fs, &self.dir, &self.manifest())?;
        tracing::debug!(dir = %self.dir.display(), file_id = id, "rolled over to a new data file");
        Ok(())
    }

    /// Appends a record to the active file (rolling over first if it would grow too big) and says
    /// where it went.
    pub(super) fn append(&mut self, record: &[u8]) -> io::Result<Location> {
        let record_bytes = record.len() as u64;
        let active_bytes = self
            .files
            .values()
            .next_back()
            .expect("active file")
            .len_bytes;
        if active_bytes > record::FILE_START_BYTES
            && active_bytes + record_bytes > self.options.max_file_bytes
        {
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
}
