//! Fault injection on a stopped node's log directory: damage to data it already synced, as a
//! failing disk or an operator's mistake would leave it. The simulator's nemesis and the tests use
//! it; the store never does.
//!
//! Every kind of damage here is one recovery must notice (see the parent module's docs): a torn
//! tail keeps part of the last record, a flipped byte lies inside a record, a removed file is named
//! by the manifest, a sealed file cut at a record boundary is shorter than the manifest recorded
//! it, and an emptied newest file lacks its file-start record. Damage recovery cannot notice (the
//! newest file cut exactly at a later record boundary, which looks like a crash losing unsynced
//! appends) is left out on purpose: no store that checks records can see it, and it would only
//! make the checker blame the node for the disk.

use super::files::{self, FileKind, file_path};
use super::record;
use crate::fs::{FileSystem, FsFile};
use std::io;
use std::path::{Path, PathBuf};
use strum::{Display, IntoStaticStr, VariantArray};

/// A kind of damage to synced data; its name (`Display`) is the kebab-case of the variant.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Display, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Damage {
    /// Cuts between 1 byte and all but one byte of the last record of the newest non-empty data
    /// file: a torn write.
    TornTail,
    /// Inverts one byte of a record that is not the last of its file: decay of an older record,
    /// with good records after it.
    FlipByte,
    /// Removes the newest data file.
    LoseNewestFile,
    /// Removes a data file other than the newest.
    LoseFile,
    /// Cuts a data file other than the newest (sealed, see the parent module's docs) exactly at
    /// the start of one of its records: that record and every later one in the file are gone,
    /// and no damaged byte is left to see.
    CutSealedFile,
    /// Removes the manifest.
    LoseManifest,
    /// Empties the newest data file (`truncate -s 0`): every record in it is gone and no damaged
    /// byte is left to see; the missing file-start record shows it.
    EmptyNewestFile,
}

impl Damage {
    /// Every kind, in a fixed order.
    pub const ALL: &'static [Damage] = <Damage as VariantArray>::VARIANTS;

    /// A short name, for plans and histories.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A data file and its length.
struct DataFile {
    path: PathBuf,
    len_bytes: u64,
}

fn data_files<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<Vec<DataFile>> {
    let (ids, _) = files::list(fs, dir)?;
    ids.into_iter()
        .map(|id| {
            let path = file_path(dir, id, FileKind::Data);
            let len_bytes = fs.open(&path, false)?.len()?;
            Ok(DataFile { path, len_bytes })
        })
        .collect()
}

/// (offset, size) of every good record of a file but its file-start record, which holds no data
/// (a file holding only it has nothing to damage).
fn records<F: FileSystem>(fs: &F, file: &DataFile) -> io::Result<Vec<(u64, u64)>> {
    let handle = fs.open(&file.path, false)?;
    let mut found = Vec::new();
    record::scan_file(
        &handle,
        file.len_bytes,
        |offset, record_bytes, tombstone, key| {
            if !(offset == 0 && record::is_file_start(tombstone, key)) {
                found.push((offset, u64::from(record_bytes)))
            }
        },
    )?;
    Ok(found)
}

/// Where a file's data starts: past its file-start record, if it begins with one.
fn data_start<F: FileSystem>(fs: &F, file: &DataFile) -> io::Result<u64> {
    let handle = fs.open(&file.path, false)?;
    let mut start = 0;
    record::scan_file(
        &handle,
        file.len_bytes.min(record::FILE_START_BYTES),
        |offset, record_bytes, tombstone, key| {
            if offset == 0 && record::is_file_start(tombstone, key) {
                start = u64::from(record_bytes);
            }
        },
    )?;
    Ok(start)
}

/// (offset, size) of the newest good record of `key` in a file.
fn newest_record_of<F: FileSystem>(
    fs: &F,
    file: &DataFile,
    key: &[u8],
) -> io::Result<Option<(u64, u64)>> {
    let handle = fs.open(&file.path, false)?;
    let mut found = None;
    record::scan_file(&handle, file.len_bytes, |offset, record_bytes, _, k| {
        if k == key {
            found = Some((offset, u64::from(record_bytes)));
        }
    })?;
    Ok(found)
}

/// Applies `damage` to the log directory `dir` of a stopped node, durably, choosing the file and
/// the bytes from `pick` (a random number the caller draws from its seed, so the same `pick` on
/// the same files does the same thing). Returns what it did in words (the file, the offset, the
/// bytes), or `None` if there was nothing of that kind to damage (an empty directory, a single
/// file for [`Damage::LoseFile`], no record before another for [`Damage::FlipByte`]).
///
/// `aim`, a record key (`Keyspace::record_key`), makes the damage hit that key's newest record
/// where it can, as a fault aimed at an acknowledged write means to (its records are what a
/// store that keeps its actor after the damage issues again):
/// - [`Damage::TornTail`] cuts inside it if it is in the newest file, and the records written
///   after it go with it: the disk lost its last synced writes and tore the first of them;
/// - [`Damage::FlipByte`] inverts a byte inside it, wherever it is;
/// - [`Damage::CutSealedFile`] cuts its file at its start if it is in a sealed file.
///
/// Where the key has no such record, the damage falls where it would without `aim`.
pub fn apply_damage<F: FileSystem>(
    fs: &F,
    dir: &Path,
    damage: Damage,
    pick: u64,
    aim: Option<&[u8]>,
) -> io::Result<Option<String>> {
    if !fs.exists(dir) {
        return Ok(None);
    }
    let files = data_files(fs, dir)?;
    match damage {
        Damage::TornTail => {
            if let (Some(key), Some(file)) = (aim, files.iter().rev().find(|f| f.len_bytes > 0))
                && let Some((offset, record_bytes)) = newest_record_of(fs, file, key)?
                && record_bytes >= 2
            {
                let later = records(fs, file)?
                    .iter()
                    .filter(|&&(o, _)| o > offset)
                    .count();
                let len_bytes = offset + 1 + pick % (record_bytes - 1);
                let mut handle = fs.open(&file.path, false)?;
                handle.truncate(len_bytes)?;
                handle.sync()?;
                return Ok(Some(format!(
                    "cut {} bytes off the end of {} ({} -> {len_bytes} bytes), inside the newest \
                     record of the aimed key (offset {offset}, {record_bytes} bytes); the \
                     {later} records after it were lost with it",
                    file.len_bytes - len_bytes,
                    file.path.display(),
                    file.len_bytes
                )));
            }
            let mut newest = None;
            for file in files.iter().rev() {
                let start = data_start(fs, file)?;
                if file.len_bytes > start {
                    newest = Some((file, start));
                    break;
                }
            }
            let Some((file, start)) = newest else {
                return Ok(None);
            };
            // The last good record; a file whose end is already damaged is cut inside the damage.
            let last_start = records(fs, file)?
                .last()
                .map_or(start, |&(offset, record_bytes)| {
                    if offset + record_bytes == file.len_bytes {
                        offset
                    } else {
                        offset + record_bytes
                    }
                });
            let tail_bytes = file.len_bytes - last_start;
            if tail_bytes < 2 {
                return Ok(None);
            }
            let cut_bytes = 1 + pick % (tail_bytes - 1);
            let len_bytes = file.len_bytes - cut_bytes;
            let mut handle = fs.open(&file.path, false)?;
            handle.truncate(len_bytes)?;
            handle.sync()?;
            Ok(Some(format!(
                "cut {cut_bytes} bytes off the end of {} ({} -> {len_bytes} bytes; its last record \
                 starts at offset {last_start})",
                file.path.display(),
                file.len_bytes
            )))
        }
        Damage::FlipByte => {
            if let Some(key) = aim {
                for file in files.iter().rev() {
                    if let Some((record_offset, record_bytes)) = newest_record_of(fs, file, key)? {
                        let offset = record_offset + pick % record_bytes;
                        return flip(fs, &file.path, offset, record_offset, record_bytes)
                            .map(|what| Some(format!("{what} (the aimed key's newest record)")));
                    }
                }
            }
            let mut candidates = Vec::new();
            for file in &files {
                let found = records(fs, file)?;
                let older = found.len().saturating_sub(1);
                candidates.extend(found[..older].iter().map(|&(o, n)| (&file.path, o, n)));
            }
            if candidates.is_empty() {
                return Ok(None);
            }
            let count = candidates.len() as u64;
            let (path, record_offset, record_bytes) = candidates[(pick % count) as usize];
            let offset = record_offset + (pick / count) % record_bytes;
            flip(fs, path, offset, record_offset, record_bytes).map(Some)
        }
        Damage::LoseNewestFile => match files.last() {
            Some(file) => remove(fs, dir, &file.path, file.len_bytes).map(Some),
            None => Ok(None),
        },
        Damage::LoseFile => {
            let older = files.len().saturating_sub(1);
            if older == 0 {
                return Ok(None);
            }
            let file = &files[(pick % older as u64) as usize];
            remove(fs, dir, &file.path, file.len_bytes).map(Some)
        }
        Damage::CutSealedFile => {
            let sealed = &files[..files.len().saturating_sub(1)];
            if let Some(key) = aim {
                for (index, file) in files.iter().enumerate().rev() {
                    if let Some((offset, _)) = newest_record_of(fs, file, key)? {
                        if index < sealed.len() {
                            return cut_at(fs, file, offset).map(|what| {
                                Some(format!("{what} (at the aimed key's newest record)"))
                            });
                        }
                        // In the newest file: no sealed file holds the key's newest record.
                        break;
                    }
                }
            }
            let mut candidates = Vec::new();
            for file in sealed {
                candidates.extend(records(fs, file)?.into_iter().map(|(o, _)| (file, o)));
            }
            if candidates.is_empty() {
                return Ok(None);
            }
            let (file, offset) = candidates[(pick % candidates.len() as u64) as usize];
            cut_at(fs, file, offset).map(Some)
        }
        Damage::EmptyNewestFile => match files.last() {
            Some(file) if !records(fs, file)?.is_empty() => cut_at(fs, file, 0).map(Some),
            _ => Ok(None),
        },
        Damage::LoseManifest => {
            let path = files::manifest_path(dir);
            if !fs.exists(&path) {
                return Ok(None);
            }
            fs.remove_file(&path)?;
            fs.sync_dir(dir)?;
            Ok(Some(format!("removed {}", path.display())))
        }
    }
}

/// Inverts the byte at `offset` of `path`, inside the record at `record_offset`.
fn flip<F: FileSystem>(
    fs: &F,
    path: &Path,
    offset: u64,
    record_offset: u64,
    record_bytes: u64,
) -> io::Result<String> {
    let mut handle = fs.open(path, false)?;
    let mut byte = [0];
    handle.read_exact_at(&mut byte, offset)?;
    handle.write_at(&[!byte[0]], offset)?;
    handle.sync()?;
    Ok(format!(
        "inverted the byte at offset {offset} of {} ({:#04x} -> {:#04x}), inside the record of \
         {record_bytes} bytes at offset {record_offset}",
        path.display(),
        byte[0],
        !byte[0]
    ))
}

/// Cuts `file` durably to `len_bytes`, the start of one of its records.
fn cut_at<F: FileSystem>(fs: &F, file: &DataFile, len_bytes: u64) -> io::Result<String> {
    let lost = records(fs, file)?
        .iter()
        .filter(|&&(o, _)| o >= len_bytes)
        .count();
    let mut handle = fs.open(&file.path, false)?;
    handle.truncate(len_bytes)?;
    handle.sync()?;
    Ok(format!(
        "cut {} at a record boundary ({} -> {len_bytes} bytes): its last {lost} records are gone",
        file.path.display(),
        file.len_bytes
    ))
}

fn remove<F: FileSystem>(fs: &F, dir: &Path, path: &Path, len_bytes: u64) -> io::Result<String> {
    fs.remove_file(path)?;
    fs.sync_dir(dir)?;
    Ok(format!("removed {} ({len_bytes} bytes)", path.display()))
}
