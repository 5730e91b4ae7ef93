//! The data directory's identity and lock: which node of which cluster its files belong to, and
//! that one process at a time uses them.
//!
//! Two processes on one directory would both write versions as the same actor, with the same
//! counters, and their replicas would diverge for good (issue 11, item 9); a node started with
//! another node's directory would serve that node's data under its own name. So a node takes
//! the directory's lock (an `flock` of its `LOCK` file, [`crate::fs::FileSystem::lock_dir`],
//! dropped by the operating system when the process ends, however it ends) before it reads a
//! byte, and checks the identity file, `IDENTITY`, written on the directory's first start: a
//! node with another id, or of another cluster, refuses to start and names both. A wiped disk
//! has no identity file, and the node writes a new one, as it takes a new actor id.
//!
//! This file says whose the directory is; it cannot say whose each data file is. A single data
//! file copied in from another directory is noticed by the log store itself: every file names the
//! store's id, made when the store was created and kept in its manifest ([`crate::store::log`]).

use crate::fs::FileSystem;
use std::io;
use std::path::Path;

/// The identity file's name in the data directory.
pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
/// The first line of an identity file.
const IDENTITY_MAGIC: &str = "dynamo-identity 1";
/// Longest identity file read.
const IDENTITY_BYTES_MAX: usize = 1_024;

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The node id.
    pub node: String,
    /// The cluster's name.
    pub cluster: String,
}

impl Identity {
    fn encode(&self) -> String {
        format!(
            "{IDENTITY_MAGIC}\nnode {}\ncluster {}\n",
            self.node, self.cluster
        )
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut lines = text.lines();
        if lines.next()? != IDENTITY_MAGIC {
            return None;
        }
        let node = lines.next()?.strip_prefix("node ")?.to_string();
        let cluster = lines.next()?.strip_prefix("cluster ")?.to_string();
        Some(Identity { node, cluster })
    }
}

/// Reads the directory's identity, if it has one. The error names the file.
pub fn read<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<Option<Identity>> {
    let path = dir.join(IDENTITY_FILE_NAME);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let bytes = super::read_small_file(fs, &path, IDENTITY_BYTES_MAX)?;
    let text = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok());
    match text.and_then(Identity::parse) {
        Some(identity) => Ok(Some(identity)),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not an identity file this node can read: move it away only if the \
                 directory is really this node's",
                path.display()
            ),
        )),
    }
}

/// Checks that the directory, if it has an identity, is `ours`; the error names both.
pub fn check<F: FileSystem>(fs: &F, dir: &Path, ours: &Identity) -> io::Result<bool> {
    match read(fs, dir)? {
        None => Ok(false),
        Some(theirs) if theirs == *ours => Ok(true),
        Some(theirs) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "data directory {} belongs to node {} of cluster {}; this node is {} of cluster \
                 {}: refusing to start (give each node its own --data-dir)",
                dir.display(),
                theirs.node,
                theirs.cluster,
                ours.node,
                ours.cluster
            ),
        )),
    }
}

/// Checks the directory's identity against `ours`, and writes it (durably) if there is none.
pub fn check_or_write<F: FileSystem>(fs: &F, dir: &Path, ours: &Identity) -> io::Result<()> {
    if !check(fs, dir, ours)? {
        fs.write_durable(&dir.join(IDENTITY_FILE_NAME), ours.encode().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn an_identity_is_written_once_and_checked_after() {
        let tmp = tempfile::tempdir().unwrap();
        let n1 = Identity {
            node: "n1".into(),
            cluster: "c".into(),
        };
        check_or_write(&StdFs, tmp.path(), &n1).unwrap();
        check_or_write(&StdFs, tmp.path(), &n1).unwrap();
        assert_eq!(read(&StdFs, tmp.path()).unwrap(), Some(n1.clone()));
        let n2 = Identity {
            node: "n2".into(),
            ..n1.clone()
        };
        let err = check_or_write(&StdFs, tmp.path(), &n2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node n1 of cluster c") && err.contains("n2 of cluster c"),
            "{err}"
        );
        let other = Identity {
            cluster: "d".into(),
            ..n1
        };
        assert!(check(&StdFs, tmp.path(), &other).is_err());
    }

    /// Issue 11, a damaged data directory: an identity file far past its bound is refused with
    /// its name, after reading at most one byte past the bound (a link to /dev/zero read the
    /// node out of memory).
    #[test]
    fn an_oversized_identity_is_refused_without_reading_it_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let n1 = Identity {
            node: "n1".into(),
            cluster: "c".into(),
        };
        let mut text = n1.encode();
        text.push_str(&"x".repeat(IDENTITY_BYTES_MAX));
        std::fs::write(tmp.path().join(IDENTITY_FILE_NAME), text).unwrap();
        let err = check(&StdFs, tmp.path(), &n1).unwrap_err();
        assert!(err.to_string().contains(IDENTITY_FILE_NAME), "{err}");
        #[cfg(unix)]
        {
            std::fs::remove_file(tmp.path().join(IDENTITY_FILE_NAME)).unwrap();
            std::os::unix::fs::symlink("/dev/zero", tmp.path().join(IDENTITY_FILE_NAME)).unwrap();
            assert!(check(&StdFs, tmp.path(), &n1).is_err());
        }
    }

    #[test]
    fn a_second_lock_of_a_directory_is_refused_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let first = StdFs.lock_dir(tmp.path()).unwrap();
        let err = StdFs.lock_dir(tmp.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(
            err.to_string().contains(&tmp.path().display().to_string()),
            "{err}"
        );
        drop(first);
        StdFs.lock_dir(tmp.path()).unwrap();
    }
}
