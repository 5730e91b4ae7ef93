//! The files of a log store's directory: data and compaction file names, and the manifest that
//! says which data files must be there (see the parent module's docs, "Files").

use crate::fs::{FileSystem, FsFile};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Digits of a file id in a file name; names sort by id up to this width, beyond it ids are still
/// compared as numbers.
const FILE_ID_DIGITS: usize = 6;

/// Extension of a data file.
const DATA_EXTENSION: &str = "data";

/// Extension of an unfinished compaction output file.
const COMPACT_EXTENSION: &str = "compact";

/// Name of the manifest file.
pub(super) const MANIFEST_NAME: &str = "MANIFEST";

/// Name of the file that says a recovery lost data and the node has not yet taken a new actor id
/// for it (see the parent module's docs, "Durability and recovery").
pub(super) const LOSS_MARKER_NAME: &str = "LOSS";

/// First line of a manifest: the format and its version. Version 3 adds the store's id; version 2
/// added the lengths of the sealed files. Manifests of versions 1 and 2 are still read.
const MANIFEST_MAGIC: &str = "dynamo-log-manifest 3";

/// First line of a manifest written before it named its store.
const MANIFEST_MAGIC_V2: &str = "dynamo-log-manifest 2";

/// First line of a manifest written before sealed files' lengths were recorded.
const MANIFEST_MAGIC_V1: &str = "dynamo-log-manifest 1";

/// Highest data file id a store uses. Ids grow by one per rollover or compaction output file,
/// so no store comes near it (2^31 files); one past it is a damaged name or manifest. Bounded well
/// below `u32::MAX` so that a store opened at the bound still has ids left: a store whose ids ran
/// out would stop at its next rollover or compaction, and a manifest whose first id was near
/// `u32::MAX` made recovery remove every data file as "superseded by a compaction".
pub(super) const FILE_ID_MAX: u32 = u32::MAX / 2;

/// A manifest longer than this is not one this store wrote, and is not read into memory. A
/// manifest takes a few dozen bytes and one line of at most 37 per sealed file: this is room for
/// about 28,000 files (1.7 TiB of data files at the default size).
const MANIFEST_BYTES_MAX: u64 = 1024 * 1024;

/// How much of an unexpected manifest line its error quotes.
const UNEXPECTED_LINE_CHARS_MAX: usize = 40;

/// The kinds of file a store directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileKind {
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

pub(super) fn file_path(dir: &Path, id: u32, kind: FileKind) -> PathBuf {
    let extension = kind.extension();
    dir.join(format!("{id:0width$}.{extension}", width = FILE_ID_DIGITS))
}

/// The id and kind of a store file, or `None` for a file that is not the store's. Only the exact
/// names the store writes count, so that `1.data` and `000001.data` cannot both claim id 1.
pub(super) fn parse_file_name(path: &Path) -> Option<(u32, FileKind)> {
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

/// The ids of the data files in `dir`, ascending, and the paths of unfinished compaction output.
pub(super) fn list<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<(Vec<u32>, Vec<PathBuf>)> {
    let mut data_ids = Vec::new();
    let mut compact_paths = Vec::new();
    for path in fs.read_dir(dir)? {
        match parse_file_name(&path) {
            Some((id, FileKind::Data)) => data_ids.push(id),
            Some((_, FileKind::Compact)) => compact_paths.push(path),
            None => {}
        }
    }
    data_ids.sort_unstable();
    Ok((data_ids, compact_paths))
}

/// What the manifest says: every data file with an id in `first_id..=last_id` exists. Files with
/// lower ids were superseded by a committed compaction; files with higher ids were created after
/// the manifest was last written (a rollover or compaction that a crash interrupted before it
/// updated the manifest). Every file but the last is sealed (complete and synced before a newer
/// one existed, see the parent module's docs), and `sealed_bytes` holds their lengths: a sealed
/// file found shorter lost records even when it was cut exactly at a record boundary, which no
/// check of its bytes can see. A rollover records the last file's length too, before it creates
/// the next file, so that a crash in between leaves no sealed file without a length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Manifest {
    /// The id of the store, made when it was created, that every file-start record it writes
    /// names ([`super::record::file_start_record`]); `None` when read from a manifest written
    /// before stores had ids (versions 1 and 2).
    pub(super) store_id: Option<u64>,
    pub(super) first_id: u32,
    pub(super) last_id: u32,
    /// Lengths of sealed files (ids from `first_id` to `last_id`, the last only while a rollover
    /// seals it), by id. Empty when read from a version 1 manifest, which had none.
    pub(super) sealed_bytes: BTreeMap<u32, u64>,
}

impl Manifest {
    /// A few lines of text, so that an operator can read it, ending in a crc32 of the lines before.
    fn encode(&self) -> Vec<u8> {
        let store_id = self
            .store_id
            .expect("a manifest this store writes names the store");
        let mut body = format!(
            "{MANIFEST_MAGIC}\nstore {store_id:016x}\nfirst {}\nlast {}\n",
            self.first_id, self.last_id
        );
        for (id, len_bytes) in &self.sealed_bytes {
            body.push_str(&format!("sealed {id} {len_bytes}\n"));
        }
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}crc {crc:08x}\n").into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let crc_at = text.rfind("crc ").ok_or("no checksum line")?;
        let (body, crc_line) = text.split_at(crc_at);
        // Exactly as written: a damaged byte must not pass for whitespace.
        let crc = crc_line
            .strip_prefix("crc ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .filter(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or("bad checksum line")?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("checksum mismatch".into());
        }
        let mut lines = body.lines();
        let (version_1, named_store) = match lines.next() {
            Some(MANIFEST_MAGIC) => (false, true),
            Some(MANIFEST_MAGIC_V2) => (false, false),
            Some(MANIFEST_MAGIC_V1) => (true, false),
            _ => return Err("unknown format".into()),
        };
        let store_id = if named_store {
            // Exactly as written: sixteen hex digits.
            let hex = lines
                .next()
                .and_then(|line| line.strip_prefix("store "))
                .filter(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or("no store line")?;
            Some(u64::from_str_radix(hex, 16).map_err(|_| "bad store line")?)
        } else {
            None
        };
        let mut field = |name: &str| {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name))
                .and_then(|value| value.strip_prefix(' '))
                .and_then(|value| value.parse::<u32>().ok())
                .ok_or_else(|| format!("no {name} line"))
        };
        let first_id = field("first")?;
        let last_id = field("last")?;
        if first_id > last_id {
            return Err("first file after the last".into());
        }
        if last_id > FILE_ID_MAX {
            return Err(format!("file id {last_id} is past the limit {FILE_ID_MAX}"));
        }
        let mut sealed_bytes = BTreeMap::new();
        for line in lines {
            let parsed = line
                .strip_prefix("sealed ")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(id, len)| Some((id.parse::<u32>().ok()?, len.parse::<u64>().ok()?)));
            let Some((id, len_bytes)) = parsed.filter(|_| !version_1) else {
                // A few characters say which line; a whole line could be a megabyte.
                let start: String = line.chars().take(UNEXPECTED_LINE_CHARS_MAX).collect();
                return Err(format!("unexpected line {start:?}"));
            };
            // Ascending, each once, and only files the manifest names.
            let after_previous = sealed_bytes
                .last_key_value()
                .is_none_or(|(&prev, _)| id > prev);
            if !(first_id..=last_id).contains(&id) || !after_previous {
                return Err(format!("sealed file {id} out of place"));
            }
            sealed_bytes.insert(id, len_bytes);
        }
        Ok(Manifest {
            store_id,
            first_id,
            last_id,
            sealed_bytes,
        })
    }
}

/// What was found where the manifest should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ManifestRead {
    Found(Manifest),
    Missing,
    /// Present but not a manifest this store wrote; the reason.
    Unreadable(String),
}

pub(super) fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_NAME)
}

/// Reads the manifest of the store in `dir`. Fails only on I/O errors.
pub(super) fn read_manifest<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<ManifestRead> {
    let path = manifest_path(dir);
    if !fs.exists(&path) {
        return Ok(ManifestRead::Missing);
    }
    let len_bytes = fs.open(&path, false)?.len()?;
    if len_bytes > MANIFEST_BYTES_MAX {
        return Ok(ManifestRead::Unreadable(format!("{len_bytes} bytes long")));
    }
    Ok(match Manifest::decode(&fs.read(&path)?) {
        Ok(manifest) => ManifestRead::Found(manifest),
        Err(reason) => ManifestRead::Unreadable(reason),
    })
}

/// Replaces the manifest durably (the write is atomic: a crash leaves the old one or the new one).
pub(super) fn write_manifest<F: FileSystem>(
    fs: &F,
    dir: &Path,
    manifest: &Manifest,
) -> io::Result<()> {
    let path = manifest_path(dir);
    fs.write_durable(&path, &manifest.encode())
        .map_err(|e| super::at(e, "write of the manifest", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "/db/MANIFEST",
            "/db/MANIFEST.tmp",
        ] {
            assert_eq!(parse_file_name(Path::new(foreign)), None, "{foreign}");
        }
    }

    #[test]
    fn a_manifest_round_trips_and_damage_is_noticed() {
        let manifest = Manifest {
            store_id: Some(0x0123_4567_89ab_cdef),
            first_id: 3,
            last_id: 17,
            sealed_bytes: [(3, 1_000), (4, 0), (16, u64::MAX)].into_iter().collect(),
        };
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(manifest));
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("store 0123456789abcdef")
                && text.contains("last 17")
                && text.contains("sealed 3 1000"),
            "readable by an operator: {text}"
        );
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(Manifest::decode(&damaged).is_err(), "flip at {at}");
        }
        assert!(Manifest::decode(&bytes[..bytes.len() - 3]).is_err());
        assert!(Manifest::decode(b"").is_err());
    }

    /// The text of a manifest with a good checksum.
    fn signed(body: &str) -> Vec<u8> {
        format!("{body}crc {:08x}\n", crc32fast::hash(body.as_bytes())).into_bytes()
    }

    #[test]
    fn a_version_1_manifest_is_read_without_lengths() {
        let read = Manifest::decode(&signed("dynamo-log-manifest 1\nfirst 2\nlast 5\n"));
        assert_eq!(
            read,
            Ok(Manifest {
                store_id: None,
                first_id: 2,
                last_id: 5,
                sealed_bytes: BTreeMap::new(),
            })
        );
        let with_lengths = "dynamo-log-manifest 1\nfirst 2\nlast 5\nsealed 2 10\n";
        assert!(Manifest::decode(&signed(with_lengths)).is_err());
    }

    #[test]
    fn sealed_lengths_out_of_place_are_refused() {
        for lines in [
            "sealed 6 10\n",              // after the last
            "sealed 1 10\n",              // below the first
            "sealed 3 10\nsealed 3 11\n", // twice
            "sealed 4 10\nsealed 3 11\n", // not ascending
            "sealed 3\n",                 // no length
            "sealed 3 -1\n",              // not a length
            "sealed 3 10 \n",             // trailing space
            "sealed 3 18446744073709551616\n",
            "other 3 10\n",
        ] {
            let body = format!("dynamo-log-manifest 2\nfirst 2\nlast 5\n{lines}");
            assert!(Manifest::decode(&signed(&body)).is_err(), "{lines:?}");
        }
    }

    /// A store written before stores had ids: its manifest is read, naming none; the store line
    /// of a version 3 manifest must be exactly sixteen hex digits.
    #[test]
    fn a_version_2_manifest_names_no_store_and_a_bad_store_line_is_refused() {
        let v2 = Manifest::decode(&signed(
            "dynamo-log-manifest 2\nfirst 2\nlast 5\nsealed 2 10\n",
        ));
        assert_eq!(
            v2,
            Ok(Manifest {
                store_id: None,
                first_id: 2,
                last_id: 5,
                sealed_bytes: [(2, 10)].into_iter().collect(),
            })
        );
        for store in [
            "",
            "store \n",
            "store 0123\n",
            "store 0123456789abcdefa\n",
            "store 0123456789abcdeg\n",
            "store +123456789abcdef\n",
            "store  123456789abcdef\n",
        ] {
            let body = format!("dynamo-log-manifest 3\n{store}first 2\nlast 5\n");
            assert!(Manifest::decode(&signed(&body)).is_err(), "{store:?}");
        }
    }
}
