//! The clean-shutdown marker: whether the last incarnation stopped cleanly, which a start reports
//! as the reason for its new actor id.
//!
//! A coordinator sends its new version to the replicas while its own write of it is still being
//! synced (the two fsyncs of a put run side by side, as in the paper, rather than one after the
//! other). A version can therefore be seen outside a node that then crashes before its own copy
//! was durable; if the node came back as the same actor, it would issue that version's counter
//! again, and two different writes would share one dot. A node once kept its actor across a clean
//! stop only, as Riak's vnodes do with their status file: after its final sync it writes `CLEAN`
//! ([`mark`]), and the next start takes the marker away, durably, before anything can leave the
//! node ([`take`]). That was not enough: a data directory restored from a cold backup carries a
//! marker that vouches for it, and kept its actor, issued again the counters issued since the
//! backup, and lost acknowledged writes (an attack of 2026-12-03). Every start now takes a new
//! actor id (`crate::shell::open_storage`); the marker tells an unclean stop from a clean one in
//! the reason it gives, and the deliberate bug `keep-actor-on-recovery` ignores it.
//!
//! The marker names the actor it vouches for and the start it closes: every start counts itself
//! in `STARTS` ([`begin`]), durably, before it serves. A marker of an earlier start (one restored
//! or copied in alone, after a later start of the same actor crashed) or of another actor vouches
//! for nothing. A whole directory restored from a backup, `STARTS` and all, cannot be told from
//! the real one: hence a new actor on every start.
//!
//! The marker also says where the stop left the log (its newest data file and that file's
//! length, [`LogEnd`]), and vouches only for a log that still ends there: a cut of the newest file
//! at a record boundary while the node was down leaves no damaged byte, and recovery reads it as
//! appends a crash took back; after a clean stop nothing was left unsynced, so it is damage, and
//! the records it took may hold the highest counters the actor issued.

use crate::fs::FileSystem;
use crate::store::log::LogEnd;
use std::io;
use std::path::Path;

/// The marker's name in the data directory.
pub const CLEAN_FILE_NAME: &str = "CLEAN";
/// The start counter's name in the data directory.
pub const STARTS_FILE_NAME: &str = "STARTS";
/// The marker's first line.
const CLEAN_MAGIC: &str = "dynamo-clean 3";
/// The start counter's first line.
const STARTS_MAGIC: &str = "dynamo-starts 1";
/// Longest marker or counter read: anything longer is not one.
const CLEAN_BYTES_MAX: usize = 1_024;

/// What a clean stop left: the actor that stopped, and the start ([`begin`]) it closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The actor id that stopped cleanly.
    pub actor: String,
    /// The number of the start that stopped.
    pub start: u64,
    /// Where the stop left the log.
    pub log_end: LogEnd,
}

/// Writes the marker durably: `actor`, of start number `start`, stopped cleanly, everything it
/// wrote is synced, and the log ends at `log_end`. Called only after the final sync, with nothing
/// left to send.
pub fn mark<F: FileSystem>(
    fs: &F,
    dir: &Path,
    actor: &str,
    start: u64,
    log_end: LogEnd,
) -> io::Result<()> {
    let LogEnd { file_id, len_bytes } = log_end;
    fs.write_durable(
        &dir.join(CLEAN_FILE_NAME),
        format!("{CLEAN_MAGIC}\nactor {actor}\nstart {start}\nlog {file_id} {len_bytes}\n")
            .as_bytes(),
    )
}

/// Takes the marker away, durably, and says what it vouched for: `None` when there was none, or
/// one this node cannot read (damage vouches for nothing). The removal is synced before this
/// returns, so that a crash from here on is seen as unclean by the next start.
pub fn take<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<Option<Marker>> {
    let path = dir.join(CLEAN_FILE_NAME);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let marker = read_lines(fs, &path, CLEAN_MAGIC).and_then(|lines| match lines.as_slice() {
        [actor, start, log] => {
            let (file_id, len_bytes) = log.strip_prefix("log ")?.split_once(' ')?;
            Some(Marker {
                actor: actor.strip_prefix("actor ")?.to_owned(),
                start: start.strip_prefix("start ")?.parse().ok()?,
                log_end: LogEnd {
                    file_id: file_id.parse().ok()?,
                    len_bytes: len_bytes.parse().ok()?,
                },
            })
        }
        _ => None,
    });
    fs.remove_file(&path)?;
    fs.sync_dir(dir)?;
    Ok(marker)
}

/// Counts this start, durably, before the node serves: returns the number of the last start
/// (`None` on a new or wiped disk, or a damaged counter) and this one's. The count lives beside
/// the log, which a clean stop's marker is checked against ([`take`]).
pub fn begin<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<(Option<u64>, u64)> {
    let path = dir.join(STARTS_FILE_NAME);
    let last = if fs.exists(&path) {
        read_lines(fs, &path, STARTS_MAGIC).and_then(|lines| match lines.as_slice() {
            [count] => count.parse::<u64>().ok(),
            _ => None,
        })
    } else {
        None
    };
    // A damaged counter starts again from a number no marker of this directory can name: the
    // damage costs the actor id once, as any unreadable record does.
    let this = last.map_or(1, |n| n.saturating_add(1));
    fs.write_durable(&path, format!("{STARTS_MAGIC}\n{this}\n").as_bytes())?;
    Ok((last, this))
}

/// The lines after `magic` of a small file, or `None` if it is not one this node wrote.
fn read_lines<F: FileSystem>(fs: &F, path: &Path, magic: &str) -> Option<Vec<String>> {
    let bytes = super::read_small_file(fs, path, CLEAN_BYTES_MAX).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    (lines.next()? == magic).then(|| lines.map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn a_marker_is_read_once_and_names_its_actor_and_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(&StdFs, dir.path()).unwrap(), None);
        let log_end = LogEnd {
            file_id: 3,
            len_bytes: 4_096,
        };
        mark(&StdFs, dir.path(), "n1.0000abcd", 7, log_end).unwrap();
        let marker = Marker {
            actor: "n1.0000abcd".into(),
            start: 7,
            log_end,
        };
        assert_eq!(take(&StdFs, dir.path()).unwrap(), Some(marker));
        // Taken: a crash from here on is an unclean stop.
        assert!(!dir.path().join(CLEAN_FILE_NAME).exists());
        assert_eq!(take(&StdFs, dir.path()).unwrap(), None);
    }

    #[test]
    fn starts_are_counted_and_a_damaged_count_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(begin(&StdFs, dir.path()).unwrap(), (None, 1));
        assert_eq!(begin(&StdFs, dir.path()).unwrap(), (Some(1), 2));
        std::fs::write(dir.path().join(STARTS_FILE_NAME), "dynamo-starts 1\nx\n").unwrap();
        assert_eq!(begin(&StdFs, dir.path()).unwrap(), (None, 1));
        assert_eq!(begin(&StdFs, dir.path()).unwrap(), (Some(1), 2));
    }

    #[test]
    fn a_damaged_or_huge_marker_vouches_for_nothing_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLEAN_FILE_NAME);
        for bytes in [
            b"dynamo-clean 1\nactor n1.0000abcd\n".to_vec(),
            b"dynamo-clean 2\nactor n1\nstart x\n".to_vec(),
            b"dynamo-clean 2\nactor n1\n".to_vec(),
            // A marker of the format before it said where the log ended vouches for nothing.
            b"dynamo-clean 2\nactor n1.0000abcd\nstart 7\n".to_vec(),
            b"dynamo-clean 3\nactor n1.0000abcd\nstart 7\n".to_vec(),
            b"dynamo-clean 3\nactor n1.0000abcd\nstart 7\nlog 3\n".to_vec(),
            b"dynamo-clean 3\nactor n1.0000abcd\nstart 7\nlog 3 -1\n".to_vec(),
            b"\xff\xfe".to_vec(),
            vec![b'a'; CLEAN_BYTES_MAX + 10],
        ] {
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(take(&StdFs, dir.path()).unwrap(), None, "{bytes:?}");
            assert!(!path.exists());
        }
    }
}
