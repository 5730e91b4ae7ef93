//! The small file-system trait the storage engine does all its file I/O through.
//!
//! Why a trait: the same log store runs on the real disk (`dynamo serve`) and on turmoil's simulated
//! disk (`dynamo sim`), where a crash loses whatever was written but not synced. The trait is the
//! narrowest surface the log store needs: append-only data files read at offsets, truncation of a
//! torn tail, rename for compaction, and directory sync so that a created or renamed file survives
//! a crash. Both implementations are zero-sized: the simulated one finds the current host's disk
//! through turmoil's thread-local world, so it must only be used on a simulation host.
//!
//! Fault injection: [`FaultyFs`] wraps any file system and fails writes or syncs while a shared
//! [`DiskFaults`] switch is on (the simulator's nemesis holds the switch); [`FsFile::write_at`]
//! lets a test or the nemesis damage bytes in place (`crate::store::log::damage`). [`MemFs`] is
//! an in-memory disk with crashes and torn writes, for unit tests.

use std::io;
use std::path::{Path, PathBuf};

/// A sync begun now and carried out later, apart from the appends (a second handle on the file):
/// the node's driver goes on serving while the disk syncs, and holds back what depends on the sync
/// until it is done (`crate::shell`). The environment runs it ([`crate::env::Env::run_sync`]): on
/// another thread on the real disk, after a simulated delay on turmoil's. Run once; its error
/// names the file.
pub struct DetachedSync(Box<dyn FnOnce() -> io::Result<()> + Send>);

impl DetachedSync {
    /// A sync that `run` carries out.
    pub fn new(run: impl FnOnce() -> io::Result<()> + Send + 'static) -> DetachedSync {
        DetachedSync(Box::new(run))
    }

    /// Carries out the sync (blocking).
    pub fn run(self) -> io::Result<()> {
        (self.0)()
    }

    /// This sync, after `first` (which may fail it).
    fn after(self, first: impl FnOnce() -> io::Result<()> + Send + 'static) -> DetachedSync {
        DetachedSync::new(move || {
            first()?;
            self.run()
        })
    }
}

impl std::fmt::Debug for DetachedSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DetachedSync")
    }
}

/// An open file: appends at its end, reads at any offset.
pub trait FsFile: Send {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Appends all of `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// The file's current length in bytes, including data not yet synced.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Cuts the file to `size_bytes` (used to drop a torn tail during recovery).
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`, over what is there (extending the file if it runs past
    /// the end). Durable at the next [`FsFile::sync`]. The store never calls it (it only appends):
    /// it is how fault injection damages bytes in place.
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// A sync of everything appended so far that can run later while the owner goes on appending
    /// (what comes after it may or may not be covered), or `None` where a sync must run in place:
    /// the in-memory disk of the unit tests keeps its own order. See [`DetachedSync`].
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        Ok(None)
    }

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
    /// Takes the exclusive lock of a directory for as long as the returned guard lives, or fails
    /// with `WouldBlock` if another process holds it. The default takes none: a simulated disk
    /// belongs to one simulated host, which runs one node, and its lock would be the process's
    /// own (a crash of the host ends the process and so the lock with it).
    fn lock_dir(&self, _dir: &Path) -> io::Result<DirLock> {
        Ok(DirLock { _file: None })
    }
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

/// An exclusive lock of a directory, released when dropped (or when the process ends, however it
/// ends: the operating system drops an `flock` with the last descriptor).
#[derive(Debug)]
pub struct DirLock {
    _file: Option<std::fs::File>,
}

/// The name of the lock file a locked directory holds.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The real disk, through `std::fs`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

/// A file on the real disk.
#[derive(Debug)]
pub struct StdFile {
    /// Shared with the syncs begun apart ([`FsFile::detached_sync`]), which need no descriptor of
    /// their own (a `dup` and a `close` per sync, before).
    file: std::sync::Arc<std::fs::File>,
    /// The path it was opened by: [`FsFile::write_at`] needs a second handle (see there).
    path: PathBuf,
}

impl FsFile for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&*self.file, buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut &*self.file, data)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()> {
        self.file.set_len(size_bytes)
    }
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        // Linux ignores the offset of a positioned write on a file opened with O_APPEND (pwrite(2),
        // BUGS), and this handle is one; a second handle without it writes in place. It is only
        // used for fault injection, so the extra open costs nothing that matters.
        let file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        std::os::unix::fs::FileExt::write_all_at(&file, data, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        let file = std::sync::Arc::clone(&self.file);
        Ok(Some(DetachedSync::new(move || file.sync_data())))
    }
}

/// The error of an operation on `path`, naming it (its kind kept): a node that cannot open one of
/// its files refuses to start, and "Permission denied (os error 13)" alone does not say which
/// (found by an attack: a data file, `ACTOR`, `MANIFEST` or `IDENTITY` made unreadable).
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl FileSystem for StdFs {
    type File = StdFile;
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path).map_err(at(path))
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<StdFile> {
        refuse_special(path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)
            .map_err(at(path))?;
        Ok(StdFile {
            file: std::sync::Arc::new(file),
            path: path.to_path_buf(),
        })
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut paths = std::fs::read_dir(path)
            .map_err(at(path))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(at(path))?;
        paths.sort();
        Ok(paths)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path).map_err(at(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to).map_err(|e| {
            let message = format!("renaming {} to {}: {e}", from.display(), to.display());
            io::Error::new(e.kind(), message)
        })
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)
            .and_then(|dir| dir.sync_all())
            .map_err(at(path))
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        refuse_special(path)?;
        std::fs::read(path).map_err(at(path))
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        // A FIFO in its place would block the open below until a reader came: for ever.
        refuse_special(&path)?;
        // Named in the error (a directory or an unwritable file in its place): the node refuses
        // to start with it, and "Is a directory" alone does not say where to look.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(at(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data directory {} is in use by another running node (its {LOCK_FILE_NAME} is locked)",
                    dir.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
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
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        // turmoil's positioned write honours the offset even on a handle opened for appending.
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        // turmoil's disk is reached through the host's thread-local world, so this sync must run
        // on the host's own runtime (`SimEnv::run_sync` does, after a simulated delay). A crash of
        // the host before then drops it, and the writes it would have covered are lost.
        let file = self.0.try_clone()?;
        Ok(Some(DetachedSync::new(move || file.sync_all())))
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

/// An in-memory disk for tests, with the durability model of turmoil's simulated disk and of POSIX:
/// a file's bytes become durable at [`FsFile::sync`], and the creation, renaming or removal of a
/// directory entry becomes durable at [`FileSystem::sync_dir`] of its parent. [`MemFs::crash`]
/// throws away everything else, as a power cut would.
///
/// The model, and what it leaves out (on purpose, to stay small):
/// - Files are inodes; names point at inodes. There are two name tables: the current one, and the
///   durable one that `sync_dir(dir)` copies the entries of `dir` into. A crash restores the durable
///   table, so a file created but never covered by a `sync_dir` disappears, a rename not yet synced
///   is undone, and a removed file comes back.
/// - Each inode has current bytes and durable bytes; `sync` copies the first to the second and a
///   crash copies them back. Truncation is a change of the current bytes like any other.
/// - Directories are durable as soon as they are created (turmoil also wants their parent synced;
///   the log store does that anyway).
/// - A crash loses all pending bytes of a file, or, with [`MemFs::crash_tearing`], keeps a prefix
///   of the appended ones: that is the torn write a disk can leave. Neither reordered sector writes
///   nor read errors are modelled; [`MemFs::flip_byte`] and [`MemFs::tear`] damage bytes directly.
/// - [`MemFs::set_fail_after_ops`] makes every operation fail from a chosen point on, so that a test
///   can stop a process at each step of a multi-step operation and then `crash`.
/// - A [`FsFile::write_at`] changes current bytes like an append: durable at the next sync. A
///   crash keeps the durable bytes of a file whose current bytes were overwritten since its sync.
///
/// Handles opened before a crash fail afterwards, as they would in a restarted process.
#[derive(Clone, Debug, Default)]
pub struct MemFs {
    state: std::sync::Arc<std::sync::Mutex<MemState>>,
}

/// The contents of a [`MemFs`].
#[derive(Debug, Default)]
struct MemState {
    /// File contents by inode number.
    inodes: std::collections::BTreeMap<u64, MemInode>,
    /// The next inode number to hand out (numbers are never reused).
    inode_next: u64,
    /// Directory entries as the running process sees them.
    names: std::collections::BTreeMap<PathBuf, u64>,
    /// Directory entries as they would be found after a crash.
    names_durable: std::collections::BTreeMap<PathBuf, u64>,
    /// Directories (always durable: see the type's docs).
    dirs: std::collections::BTreeSet<PathBuf>,
    /// Incremented by every crash; a handle from an earlier epoch is stale.
    epoch: u64,
    /// How many more mutating operations succeed before all operations fail (`None`: no limit).
    ops_until_failure: Option<u64>,
}

/// One file's bytes.
#[derive(Debug, Default)]
struct MemInode {
    current: Vec<u8>,
    durable: Vec<u8>,
}

/// A file on a [`MemFs`].
#[derive(Debug)]
pub struct MemFile {
    state: std::sync::Arc<std::sync::Mutex<MemState>>,
    inode: u64,
    epoch: u64,
}

impl MemState {
    /// Fails if injected failure has started; `mutating` operations use up the allowance.
    fn step(&mut self, mutating: bool) -> io::Result<()> {
        match &mut self.ops_until_failure {
            Some(0) => Err(io::Error::other("MemFs: injected failure")),
            Some(n) if mutating => {
                *n -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        path.parent()
            .is_some_and(|parent| self.dirs.contains(parent))
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("MemFs: {} not found", path.display()),
    )
}

impl MemFs {
    /// An empty disk.
    pub fn new() -> MemFs {
        MemFs::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A panic while holding the lock (a failed assertion in a test) must not hide the first
        // failure behind a poisoned-mutex one.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A power cut: every byte and directory change not made durable is lost, open handles go
    /// stale, and injected failure (if any) is cleared, as for a freshly booted machine.
    pub fn crash(&self) {
        self.crash_tearing(|_| 0);
    }

    /// A power cut during which each file keeps `keep(pending_bytes)` bytes (at most
    /// `pending_bytes`) of what was appended to it since its last sync: a torn write. Files are
    /// visited in creation order. A file whose current bytes do not extend its durable bytes (it
    /// was truncated since the sync) keeps only its durable bytes.
    pub fn crash_tearing(&self, mut keep: impl FnMut(u64) -> u64) {
        let mut state = self.lock();
        for inode in state.inodes.values_mut() {
            if inode.current.len() > inode.durable.len()
                && inode.current.starts_with(&inode.durable)
            {
                let pending_bytes = (inode.current.len() - inode.durable.len()) as u64;
                let kept_bytes = keep(pending_bytes).min(pending_bytes) as usize;
                let durable_len = inode.durable.len();
                inode.durable = inode.current[..durable_len + kept_bytes].to_vec();
            }
            inode.current = inode.durable.clone();
        }
        state.names = state.names_durable.clone();
        // Inodes no durable name points at are unreachable: drop them.
        let reachable: std::collections::BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|inode, _| reachable.contains(inode));
        state.epoch += 1;
        state.ops_until_failure = None;
    }

    /// From now on, `ops` more mutating operations (create, append, truncate, write_at, sync,
    /// rename, remove, sync_dir) succeed and then every operation fails, as if the process had died there.
    /// `None` lifts the limit.
    pub fn set_fail_after_ops(&self, ops: Option<u64>) {
        self.lock().ops_until_failure = ops;
    }

    /// Cuts a file to `len_bytes`, durably: the torn tail a crash can leave.
    pub fn tear(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        let mut state = self.lock();
        let id = state.inode(path)?;
        let inode = state.inodes.get_mut(&id).expect("named inode exists");
        let len = usize::try_from(len_bytes).expect("length fits in memory");
        inode.current.truncate(len);
        inode.durable.truncate(len);
        Ok(())
    }

    /// Inverts the bits of the byte at `offset` of a file, durably: decay on the medium.
    pub fn flip_byte(&self, path: &Path, offset: u64) -> io::Result<()> {
        let mut state = self.lock();
        let id = state.inode(path)?;
        let inode = state.inodes.get_mut(&id).expect("named inode exists");
        let index = usize::try_from(offset).expect("offset fits in memory");
        for bytes in [&mut inode.current, &mut inode.durable] {
            let byte = bytes.get_mut(index).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "MemFs: offset past the end")
            })?;
            *byte ^= 0xff;
        }
        Ok(())
    }
}

impl MemFile {
    /// Runs `f` on this file's inode, unless the handle is stale or failure was injected.
    fn with_inode<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut MemInode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.epoch != self.epoch {
            return Err(io::Error::other("MemFs: file handle from before a crash"));
        }
        state.step(mutating)?;
        // A removed file stays readable and writable through an open handle, as on POSIX: inodes
        // are only dropped by a crash, which also makes every handle stale.
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .expect("a live handle's inode exists");
        f(inode)
    }
}

impl FsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(false, |inode| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let available = inode.current.get(start..).unwrap_or(&[]);
            let n = available.len().min(buf.len());
            buf[..n].copy_from_slice(&available[..n]);
            Ok(n)
        })
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.with_inode(true, |inode| {
            inode.current.extend_from_slice(data);
            Ok(())
        })
    }
    fn len(&self) -> io::Result<u64> {
        self.with_inode(false, |inode| Ok(inode.current.len() as u64))
    }
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()> {
        self.with_inode(true, |inode| {
            let size = usize::try_from(size_bytes)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MemFs: size too big"))?;
            inode.current.resize(size, 0);
            Ok(())
        })
    }
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.with_inode(true, |inode| {
            let start = usize::try_from(offset).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "MemFs: offset too big")
            })?;
            let end = start + data.len();
            if inode.current.len() < end {
                inode.current.resize(end, 0);
            }
            inode.current[start..end].copy_from_slice(data);
            Ok(())
        })
    }
    fn sync(&mut self) -> io::Result<()> {
        self.with_inode(true, |inode| {
            inode.durable = inode.current.clone();
            Ok(())
        })
    }
}

impl FileSystem for MemFs {
    type File = MemFile;
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.step(true)?;
        for dir in path.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            if state.names.contains_key(dir) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("MemFs: {} is a file", dir.display()),
                ));
            }
            state.dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<MemFile> {
        let mut state = self.lock();
        let inode = match state.names.get(path) {
            Some(&inode) => {
                state.step(false)?;
                inode
            }
            None if create && state.parent_is_dir(path) && !state.dirs.contains(path) => {
                state.step(true)?;
                let inode = state.inode_next;
                state.inode_next += 1;
                state.inodes.insert(inode, MemInode::default());
                state.names.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(not_found(path)),
        };
        Ok(MemFile {
            state: self.state.clone(),
            inode,
            epoch: state.epoch,
        })
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut state = self.lock();
        state.step(false)?;
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let in_dir = |p: &&PathBuf| p.parent() == Some(path);
        let mut paths: Vec<PathBuf> = state.names.keys().filter(in_dir).cloned().collect();
        paths.extend(state.dirs.iter().filter(in_dir).cloned());
        paths.sort();
        Ok(paths)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.step(true)?;
        state
            .names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.step(true)?;
        let inode = state.inode(from)?;
        if !state.parent_is_dir(to) || state.dirs.contains(to) {
            return Err(not_found(to));
        }
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.step(true)?;
        if !state.dirs.contains(path) {
            return Err(not_found(path));
        }
        let state = &mut *state;
        state.names_durable.retain(|p, _| p.parent() != Some(path));
        for (p, &inode) in &state.names {
            if p.parent() == Some(path) {
                state.names_durable.insert(p.clone(), inode);
            }
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        state.names.contains_key(path) || state.dirs.contains(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.lock();
        state.step(false)?;
        let inode = state.inode(path)?;
        Ok(state.inodes[&inode].current.clone())
    }
}

/// The switches of a [`FaultyFs`]: a cheap, cloneable handle (the clones share the switches) that
/// the simulator's nemesis keeps, one per node, while the node runs through a `FaultyFs` made with
/// a clone. A node restarted with the same handle sees the same switches.
#[derive(Clone, Debug, Default)]
pub struct DiskFaults {
    switches: std::sync::Arc<DiskFaultSwitches>,
}

#[derive(Debug, Default)]
struct DiskFaultSwitches {
    fail_writes: std::sync::atomic::AtomicBool,
    fail_syncs: std::sync::atomic::AtomicBool,
    /// Operations failed by a switch so far.
    injected_count: std::sync::atomic::AtomicU64,
}

// Relaxed is enough: each switch is an independent flag, read on every operation; nothing else is
// published through it. Under turmoil everything runs on one thread anyway.
use std::sync::atomic::Ordering::Relaxed;

impl DiskFaults {
    /// Switches that are all off.
    pub fn new() -> DiskFaults {
        DiskFaults::default()
    }

    /// While on, every operation that changes the disk fails with an I/O error: append, truncate,
    /// write_at, the creation of a file or directory, rename and remove. Reads and syncs go on.
    pub fn set_fail_writes(&self, on: bool) {
        self.switches.fail_writes.store(on, Relaxed);
    }

    /// While on, every sync of a file or a directory fails with an I/O error (and syncs nothing).
    pub fn set_fail_syncs(&self, on: bool) {
        self.switches.fail_syncs.store(on, Relaxed);
    }

    /// Whether writes fail now.
    pub fn fails_writes(&self) -> bool {
        self.switches.fail_writes.load(Relaxed)
    }

    /// Whether syncs fail now.
    pub fn fails_syncs(&self) -> bool {
        self.switches.fail_syncs.load(Relaxed)
    }

    /// How many operations the switches have failed so far (for a fault's record).
    pub fn injected_count(&self) -> u64 {
        self.switches.injected_count.load(Relaxed)
    }

    /// Fails `operation` on `path` if `on`.
    fn check(&self, on: bool, operation: &str, path: &Path) -> io::Result<()> {
        if !on {
            return Ok(());
        }
        self.switches.injected_count.fetch_add(1, Relaxed);
        Err(io::Error::other(format!(
            "{operation} {}: input/output error (injected disk fault)",
            path.display()
        )))
    }

    fn check_write(&self, operation: &str, path: &Path) -> io::Result<()> {
        self.check(self.fails_writes(), operation, path)
    }

    fn check_sync(&self, operation: &str, path: &Path) -> io::Result<()> {
        self.check(self.fails_syncs(), operation, path)
    }
}

/// A file system that fails operations while its [`DiskFaults`] switches say so, and otherwise
/// passes everything to the file system it wraps: a disk returning EIO. What it does not model:
/// a failed write or sync here changes nothing, whereas a real one may have written part of the
/// data or (Linux, after a failed fsync) dropped dirty pages; the store treats both alike (it
/// refuses further writes and the node stops, see [`crate::store::log::LogStore`]).
#[derive(Clone, Debug)]
pub struct FaultyFs<F> {
    inner: F,
    faults: DiskFaults,
}

impl<F: FileSystem> FaultyFs<F> {
    /// `inner`, failing as `faults` says.
    pub fn new(inner: F, faults: DiskFaults) -> FaultyFs<F> {
        FaultyFs { inner, faults }
    }

    /// The switches.
    pub fn faults(&self) -> &DiskFaults {
        &self.faults
    }

    /// The wrapped file system.
    pub fn inner(&self) -> &F {
        &self.inner
    }
}

/// A file of a [`FaultyFs`].
#[derive(Debug)]
pub struct FaultyFile<H> {
    inner: H,
    faults: DiskFaults,
    /// For error messages.
    path: PathBuf,
}

impl<H: FsFile> FsFile for FaultyFile<H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.faults.check_write("append to", &self.path)?;
        self.inner.append(data)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&mut self, size_bytes: u64) -> io::Result<()> {
        self.faults.check_write("truncate", &self.path)?;
        self.inner.truncate(size_bytes)
    }
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.faults.check_write("write into", &self.path)?;
        self.inner.write_at(data, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.faults.check_sync("sync", &self.path)?;
        self.inner.sync()
    }
    fn detached_sync(&self) -> io::Result<Option<DetachedSync>> {
        // The switch is read when the sync runs, as for an attached one.
        let (faults, path) = (self.faults.clone(), self.path.clone());
        Ok(self
            .inner
            .detached_sync()?
            .map(|sync| sync.after(move || faults.check_sync("sync", &path))))
    }
}

impl<F: FileSystem> FileSystem for FaultyFs<F> {
    type File = FaultyFile<F::File>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if !self.inner.exists(path) {
            self.faults.check_write("create directory", path)?;
        }
        self.inner.create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Self::File> {
        if create && !self.inner.exists(path) {
            self.faults.check_write("create", path)?;
        }
        Ok(FaultyFile {
            inner: self.inner.open(path, create)?,
            faults: self.faults.clone(),
            path: path.to_path_buf(),
        })
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.read_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.check_write("remove", path)?;
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check_write("rename", from)?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.check_sync("sync directory", path)?;
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        self.inner.lock_dir(dir)
    }
}

/// Refuses a path that exists and is not a regular file (through links): a FIFO in a data
/// directory would block the node's start forever on open, and a device (a link to /dev/zero)
/// would be read without end. A file that does not exist yet passes (`open` may create it).
fn refuse_special(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation on a path names it in its error (an attack: a data file made unreadable
    /// stopped the start with "Permission denied (os error 13)" and nothing more). A file in the
    /// place of a directory fails each of them, even for root, which permissions do not stop.
    #[test]
    fn the_real_disks_errors_name_their_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let under = file.join("inner");
        let fs = StdFs;
        let errors = [
            fs.open(&under, true).map(|_| ()).unwrap_err(),
            fs.read(&under).map(|_| ()).unwrap_err(),
            fs.read_dir(&under).map(|_| ()).unwrap_err(),
            fs.create_dir_all(&under).unwrap_err(),
            fs.remove_file(&under).unwrap_err(),
            fs.rename(&under, &tmp.path().join("to")).unwrap_err(),
            fs.sync_dir(&under).unwrap_err(),
        ];
        for e in errors {
            assert!(e.to_string().contains(&*under.to_string_lossy()), "{e}");
        }
        let missing = fs.read(&tmp.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound, "the kind is kept");
    }

    #[test]
    fn a_fifo_a_device_or_a_directory_is_refused_not_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("IDENTITY");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        let mut specials = vec![tmp.path().to_path_buf(), PathBuf::from("/dev/zero")];
        if made.is_ok_and(|s| s.success()) {
            specials.push(fifo);
        }
        for path in specials {
            // Without the check, open blocks forever on the FIFO and read never ends on
            // /dev/zero.
            for error in [
                StdFs.open(&path, false).map(|_| ()).unwrap_err(),
                StdFs.read(&path).map(|_| ()).unwrap_err(),
            ] {
                assert!(
                    error.to_string().contains("is not a regular file"),
                    "{}: {error}",
                    path.display()
                );
            }
        }
        // A regular file, and one still to be created, open as before.
        let file = tmp.path().join("data");
        StdFs.open(&file, true).unwrap();
        StdFs.open(&file, false).unwrap();
    }

    /// The disk, a FIFO where the data directory's `LOCK` file should be (a botched restore,
    /// a tampered directory): opening it to write blocked until some process opened it to read,
    /// so the node hung at start for ever, saying nothing. It is now refused, naming the path,
    /// as the node's other files are.
    #[test]
    fn a_fifo_in_place_of_the_lock_file_is_refused_not_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = tmp.path().join(LOCK_FILE_NAME);
        let made = std::process::Command::new("mkfifo").arg(&lock).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // No mkfifo here: nothing to test.
        }
        let dir = tmp.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(StdFs.lock_dir(&dir).map(|_| ()));
        });
        let locked = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("lock_dir returned (it waited on the FIFO)");
        let error = locked.expect_err("a FIFO is no lock file");
        assert!(
            error.to_string().contains(&lock.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn faulty_fs_fails_what_its_switches_say_and_nothing_else() {
        let faults = DiskFaults::new();
        let fs = FaultyFs::new(MemFs::new(), faults.clone());
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let path = dir.join("f");
        let mut file = fs.open(&path, true).unwrap();
        file.append(b"abc").unwrap();

        // The handle kept by the test and the one inside the file system share the switches.
        faults.set_fail_writes(true);
        for error in [
            file.append(b"d").unwrap_err(),
            file.truncate(1).unwrap_err(),
            file.write_at(b"x", 0).unwrap_err(),
            fs.open(&dir.join("g"), true).unwrap_err(),
            fs.rename(&path, &dir.join("h")).unwrap_err(),
            fs.remove_file(&path).unwrap_err(),
            fs.write_durable(&dir.join("m"), b"m").unwrap_err(),
        ] {
            assert!(error.to_string().contains("injected disk fault"), "{error}");
        }
        assert!(
            error_names(fs.open(&dir.join("g"), true).unwrap_err(), "/d/g"),
            "the error names the file"
        );
        // Reads, syncs and opening an existing file go on.
        assert_eq!(fs.read(&path).unwrap(), b"abc");
        file.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        fs.open(&path, true).unwrap();
        // write_durable failed twice: removing a leftover temporary file, then creating it.
        assert_eq!(faults.injected_count(), 9);

        faults.set_fail_writes(false);
        faults.set_fail_syncs(true);
        file.append(b"d").unwrap();
        assert!(file.sync().is_err());
        assert!(fs.sync_dir(dir).is_err());
        faults.set_fail_syncs(false);
        file.sync().unwrap();
        assert_eq!(fs.read(&path).unwrap(), b"abcd");
    }

    #[test]
    fn the_fault_switches_can_be_shared_across_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<DiskFaults>();
        shareable::<FaultyFs<SimFs>>();
        let faults = DiskFaults::new();
        let clone = faults.clone();
        std::thread::spawn(move || clone.set_fail_syncs(true))
            .join()
            .unwrap();
        assert!(faults.fails_syncs());
    }

    fn error_names(error: io::Error, path: &str) -> bool {
        error.to_string().contains(path)
    }

    #[test]
    fn write_at_overwrites_in_place_on_every_file_system() {
        fn check<F: FileSystem>(fs: F, dir: &Path) {
            fs.create_dir_all(dir).unwrap();
            let path = dir.join("f");
            let mut file = fs.open(&path, true).unwrap();
            file.append(b"hello").unwrap();
            file.write_at(b"J", 0).unwrap();
            file.write_at(b"!!", 4).unwrap();
            file.sync().unwrap();
            assert_eq!(fs.read(&path).unwrap(), b"Jell!!");
            // Appends still go to the end.
            file.append(b"?").unwrap();
            assert_eq!(fs.read(&path).unwrap(), b"Jell!!?");
        }
        check(MemFs::new(), Path::new("/d"));
        let tmp = tempfile::tempdir().unwrap();
        check(StdFs, tmp.path());
        check(
            FaultyFs::new(StdFs, DiskFaults::new()),
            &tmp.path().join("faulty"),
        );
    }

    #[test]
    fn a_memfs_overwrite_is_durable_only_after_a_sync() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/f");
        let mut file = fs.open(path, true).unwrap();
        file.append(b"abc").unwrap();
        file.sync().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_at(b"X", 1).unwrap();
        drop(file);
        fs.crash();
        assert_eq!(fs.read(path).unwrap(), b"abc");
    }
}
