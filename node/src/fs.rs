//! The small file-system trait the storage engine does all its file I/O through.
//!
//! Why a trait: the same log store runs on the real disk (`dynamo serve`) and on turmoil's simulated
//! disk (`dynamo sim`), where a crash loses whatever was written but not synced. The trait is the
//! narrowest surface the log store needs: append-only data files read at offsets, truncation of a
//! torn tail, rename for compaction, and directory sync so that a created or renamed file survives
//! a crash. Both implementations are zero-sized: the simulated one finds the current host's disk
//! through turmoil's thread-local world, so it must only be used on a simulation host.

use std::io;
use std::path::{Path, PathBuf};

/// An open file: appends at its end, reads at any offset.
pub trait FsFile: Send {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Appends all of `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// The file's current length in bytes, including data not yet synced.
    fn len(&self) -> io::Result<u64>;
    /// Cuts the file to `size_bytes` (used to drop a torn tail during recovery).
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read"));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// The file-system operations of the log store.
pub trait FileSystem: Clone + Send + Sync + 'static {
    /// The file handle type.
    type File: FsFile;
    /// Creates a directory and its parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens a file for reading and appending, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Self::File>;
    /// The paths of the entries of a directory, sorted by name (so that recovery is deterministic).
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the creation, removal or renaming of entries in a directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Reads a whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Writes a whole (small) file durably: write to a temporary name, sync, rename, sync the dir.
    fn write_durable(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        let _ = self.remove_file(&tmp);
        let mut file = self.open(&tmp, true)?;
        file.append(data)?;
        file.sync()?;
        drop(file);
        self.rename(&tmp, path)?;
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => self.sync_dir(dir),
            _ => Ok(()),
        }
    }
}

/// The real disk, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

/// A file on the real disk.
#[derive(Debug)]
pub struct StdFile(std::fs::File);

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.0, data)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()> {
        self.0.set_len(size_bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileSystem for StdFs {
    type File = StdFile;
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<StdFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)?;
        Ok(StdFile(file))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        paths.sort();
        Ok(paths)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
}

/// turmoil's simulated disk (feature `unstable-fs`): per host, and a crash discards unsynced writes.
/// Only usable on a turmoil simulation host.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimFs;

/// A file on turmoil's simulated disk.
#[derive(Debug)]
pub struct SimFile(turmoil::fs::shim::std::fs::File);

impl FsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.0, data)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()> {
        self.0.set_len(size_bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
}

impl FileSystem for SimFs {
    type File = SimFile;
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        turmoil::fs::shim::std::fs::create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<SimFile> {
        let file = turmoil::fs::shim::std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)?;
        Ok(SimFile(file))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = turmoil::fs::shim::std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()?;
        paths.sort();
        Ok(paths)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        turmoil::fs::shim::std::fs::remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        turmoil::fs::shim::std::fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        turmoil::fs::shim::std::fs::sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        turmoil::fs::shim::std::fs::exists(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        turmoil::fs::shim::std::fs::read(path)
    }
}
