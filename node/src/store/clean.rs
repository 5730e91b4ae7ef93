//! The clean-shutdown marker: the one thing that lets a restarted node keep its actor id.
//!
//! A coordinator sends its new version to the replicas while its own write of it is still being
//! synced (the two fsyncs of a put run side by side, as in the paper, rather than one after the
//! other). A version can therefore be seen outside a node that then crashes before its own copy
//! was durable; if the node came back as the same actor, it would issue that version's counter
//! again, and two different writes would share one dot. So a node keeps its actor only across a
//! clean stop: after its final sync it writes `CLEAN` ([`mark`]), and the next start takes the
//! marker away, durably, before anything can leave the node ([`take`]). Every other start (kill
//! -9, power loss, a storage error, a crash of the simulated host) finds no marker and takes a new
//! actor id. Riak's vnodes do the same with their status file.
//!
//! The marker names the actor it vouches for, so a marker left beside another incarnation's
//! actor (a restore that mixed files) vouches for nothing.

use crate::fs::{FileSystem, FsFile};
use std::io;
use std::path::Path;

/// The marker's name in the data directory.
pub const CLEAN_FILE_NAME: &str = "CLEAN";
/// The marker's first line.
const CLEAN_MAGIC: &str = "dynamo-clean 1";
/// Longest marker read: anything longer is not one.
const CLEAN_BYTES_MAX: usize = 1_024;

/// Writes the marker durably: `actor` stopped cleanly, everything it wrote is synced. Called only
/// after the final sync, with nothing left to send.
pub fn mark<F: FileSystem>(fs: &F, dir: &Path, actor: &str) -> io::Result<()> {
    fs.write_durable(
        &dir.join(CLEAN_FILE_NAME),
        format!("{CLEAN_MAGIC}\nactor {actor}\n").as_bytes(),
    )
}

/// Takes the marker away, durably, and says which actor it vouched for: `None` when there was
/// none, or one this node cannot read (damage vouches for nothing). The removal is synced before
/// this returns, so that a crash from here on is seen as unclean by the next start.
pub fn take<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<Option<String>> {
    let path = dir.join(CLEAN_FILE_NAME);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let actor = read_bounded(fs, &path)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let mut lines = text.lines();
            (lines.next()? == CLEAN_MAGIC)
                .then(|| lines.next()?.strip_prefix("actor ").map(str::to_owned))
                .flatten()
        });
    fs.remove_file(&path)?;
    fs.sync_dir(dir)?;
    Ok(actor)
}

/// Reads at most one byte past the bound: a damaged directory's marker could be anything.
fn read_bounded<F: FileSystem>(fs: &F, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, false)?;
    let mut bytes = vec![0u8; CLEAN_BYTES_MAX + 1];
    let mut filled = 0;
    while filled < bytes.len() {
        let read = file.read_at(&mut bytes[filled..], filled as u64)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    if filled > CLEAN_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
    }
    bytes.truncate(filled);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn a_marker_is_read_once_and_names_its_actor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(&StdFs, dir.path()).unwrap(), None);
        mark(&StdFs, dir.path(), "n1.0000abcd").unwrap();
        assert_eq!(
            take(&StdFs, dir.path()).unwrap().as_deref(),
            Some("n1.0000abcd")
        );
        // Taken: a crash from here on is an unclean stop.
        assert!(!dir.path().join(CLEAN_FILE_NAME).exists());
        assert_eq!(take(&StdFs, dir.path()).unwrap(), None);
    }

    #[test]
    fn a_damaged_or_huge_marker_vouches_for_nothing_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLEAN_FILE_NAME);
        for bytes in [
            b"dynamo-clean 2\nactor n1\n".to_vec(),
            b"\xff\xfe".to_vec(),
            b"dynamo-clean 1\n".to_vec(),
            vec![b'a'; CLEAN_BYTES_MAX + 10],
        ] {
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(take(&StdFs, dir.path()).unwrap(), None, "{bytes:?}");
            assert!(!path.exists());
        }
    }
}
