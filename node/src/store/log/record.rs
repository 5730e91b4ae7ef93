//! The record format of the log store's data files, and the scan that reads a file back, skipping
//! damage (see the parent module's docs for the format and what recovery does with damage).

use super::{RECORD_KEY_BYTES_MAX, RECORD_VALUE_BYTES_MAX};
use crate::fs::FsFile;
use std::io;

/// crc32 (4) + flags (1) + key length (4) + value length (4).
pub(super) const RECORD_HEADER_BYTES: usize = 13;

/// The largest record the format allows.
pub(super) const RECORD_BYTES_MAX: usize =
    RECORD_HEADER_BYTES + RECORD_KEY_BYTES_MAX + RECORD_VALUE_BYTES_MAX;

/// Flag bit of a tombstone record.
const FLAG_TOMBSTONE: u8 = 0b1;

/// Every flag bit this version knows; a record with another bit set is damaged.
const FLAGS_KNOWN: u8 = FLAG_TOMBSTONE;

/// How much a scan reads from a file at a time (more for a larger record): small records cost a
/// memory copy each rather than a system call each.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

/// The most work, in bytes read and checksummed, that the search for good records after damage may
/// do in one file. Each offset after damage is a candidate record; one whose header decodes costs
/// a checksum over the length it claims, up to [`RECORD_BYTES_MAX`], so without a bound a file of
/// unlucky garbage would cost (file bytes x record bytes). Past the bound the rest of the file is
/// given up as damaged, which loses what good records it still holds: generous, so that it only
/// happens to a file that is garbage anyway (1 GiB of crc32 is well under a second).
pub(super) const RESYNC_WORK_BYTES_MAX: u64 = 1 << 30;

/// The decoded fixed-size part of a record.
#[derive(Clone, Copy, Debug)]
struct Header {
    crc: u32,
    tombstone: bool,
    key_bytes: usize,
    value_bytes: usize,
}

impl Header {
    /// Decodes and checks a header; the error says why it cannot be a header this store wrote.
    fn decode(bytes: &[u8; RECORD_HEADER_BYTES]) -> Result<Header, &'static str> {
        let u32_at = |at: usize| {
            u32::from_le_bytes(
                bytes[at..at + 4]
                    .try_into()
                    .expect("four bytes of the header"),
            )
        };
        let flags = bytes[4];
        if flags & !FLAGS_KNOWN != 0 {
            return Err("unknown flag bits");
        }
        let header = Header {
            crc: u32_at(0),
            tombstone: flags & FLAG_TOMBSTONE != 0,
            key_bytes: u32_at(5) as usize,
            value_bytes: u32_at(9) as usize,
        };
        if header.key_bytes > RECORD_KEY_BYTES_MAX {
            return Err("key length over the limit");
        }
        if header.value_bytes > RECORD_VALUE_BYTES_MAX {
            return Err("value length over the limit");
        }
        if header.tombstone && header.value_bytes != 0 {
            return Err("tombstone with a value");
        }
        Ok(header)
    }

    fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.key_bytes + self.value_bytes
    }
}

/// The key of a file-start record, before the file's id and the store's: a zero byte (every key
/// the keyspace stores starts with a namespace prefix such as `d/`, never with one) and a name.
/// Carrying the file id lets recovery tell a file copied or moved to another file's name (a
/// restore that mixed up files, a duplicated or swapped file) from the file the store wrote
/// there; carrying the store id, a file copied in from another store's directory under the same
/// name (another node's, or this node's before its disk was lost). Replayed, either would take
/// back keys that newer files had moved on (or bring keys the store never held), and the node
/// would issue again the counters of the versions it lost.
const FILE_START_KEY_PREFIX: &[u8] = b"\0dynamo-file-start\0";

/// Bytes of the record a data file starts with when the store creates it
/// ([`file_start_record`]). Stores written before the record named their store start their files
/// with a shorter one (the file id alone, or before that a tombstone of the empty key), still read.
pub(super) const FILE_START_BYTES: u64 =
    (RECORD_HEADER_BYTES + FILE_START_KEY_PREFIX.len() + 4 + 8) as u64;

/// The record a data file starts with when the store creates it: a tombstone of a key that names
/// the file's id and the store's, which no caller's key is (the keyspace prefixes every key), so
/// that replaying it changes nothing. A newest file found empty although the manifest names it
/// was emptied after the store wrote it: its records are lost (the parent module's docs); a file
/// whose first record names another file id, or another store, is a copy of another file, not
/// this one.
pub(super) fn file_start_record(store_id: u64, id: u32) -> Vec<u8> {
    let mut key = FILE_START_KEY_PREFIX.to_vec();
    key.extend_from_slice(&id.to_le_bytes());
    key.extend_from_slice(&store_id.to_le_bytes());
    let record = encode_record(&key, None);
    debug_assert_eq!(record.len() as u64, FILE_START_BYTES);
    record
}

/// What a file-start record names; `None` where a store of an older format named nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FileStart {
    /// The file's id.
    pub(super) file_id: Option<u32>,
    /// The id of the store that created the file.
    pub(super) store_id: Option<u64>,
}

/// Whether a replayed record is a file-start record ([`file_start_record`], or the shorter one of
/// an older store), when it is the first of its file (a tombstone of such a key further on is a
/// caller's, if any).
pub(super) fn is_file_start(tombstone: bool, key: &[u8]) -> bool {
    file_start(tombstone, key).is_some()
}

/// What a first record names, if it is a file-start record: the file id and the store id, the
/// file id alone (a store written before records named their store), or nothing (the empty key's
/// tombstone, of a store written before records named their file).
pub(super) fn file_start(tombstone: bool, key: &[u8]) -> Option<FileStart> {
    if !tombstone {
        return None;
    }
    if key.is_empty() {
        return Some(FileStart::default());
    }
    let named = key.strip_prefix(FILE_START_KEY_PREFIX)?;
    let file_id = |bytes: &[u8]| u32::from_le_bytes(bytes.try_into().expect("four bytes"));
    match named.len() {
        4 => Some(FileStart {
            file_id: Some(file_id(named)),
            store_id: None,
        }),
        12 => Some(FileStart {
            file_id: Some(file_id(&named[..4])),
            store_id: Some(u64::from_le_bytes(
                named[4..].try_into().expect("eight bytes"),
            )),
        }),
        _ => None,
    }
}

/// Encodes a record: a put if `value` is given, else a tombstone. The caller has checked the sizes.
pub(super) fn encode_record(key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    assert!(
        key.len() <= RECORD_KEY_BYTES_MAX,
        "key size checked by the caller"
    );
    let value_bytes = value.map_or(0, <[u8]>::len);
    assert!(
        value_bytes <= RECORD_VALUE_BYTES_MAX,
        "value size checked by the caller"
    );
    let flags = if value.is_none() { FLAG_TOMBSTONE } else { 0 };
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + key.len() + value_bytes);
    record.extend_from_slice(&[0; 4]); // The crc, filled in below.
    record.push(flags);
    record.extend_from_slice(&(key.len() as u32).to_le_bytes());
    record.extend_from_slice(&(value_bytes as u32).to_le_bytes());
    record.extend_from_slice(key);
    record.extend_from_slice(value.unwrap_or(&[]));
    let crc = crc32fast::hash(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    assert!(record.len() <= RECORD_BYTES_MAX);
    record
}

/// A whole record, checked.
pub(super) struct Record<'a> {
    pub(super) tombstone: bool,
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
}

impl Record<'_> {
    /// Size of the whole record, header included.
    pub(super) fn record_bytes(&self) -> usize {
        RECORD_HEADER_BYTES + self.key.len() + self.value.len()
    }
}

/// Decodes a whole record of exactly `bytes.len()` bytes and checks its crc.
pub(super) fn decode_record(bytes: &[u8]) -> Result<Record<'_>, &'static str> {
    let header_bytes: &[u8; RECORD_HEADER_BYTES] = bytes
        .get(..RECORD_HEADER_BYTES)
        .ok_or("record cut short")?
        .try_into()
        .expect("header-sized slice");
    let header = Header::decode(header_bytes)?;
    if bytes.len() != header.record_bytes() {
        return Err("record length does not match its header");
    }
    if crc32fast::hash(&bytes[4..]) != header.crc {
        return Err("checksum mismatch");
    }
    let key_end = RECORD_HEADER_BYTES + header.key_bytes;
    Ok(Record {
        tombstone: header.tombstone,
        key: &bytes[RECORD_HEADER_BYTES..key_end],
        value: &bytes[key_end..],
    })
}

/// Reads a file in chunks of [`SCAN_CHUNK_BYTES`] for a front-to-back scan.
struct ChunkReader<'a, H> {
    handle: &'a H,
    len_bytes: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_offset: u64,
}

impl<'a, H: FsFile> ChunkReader<'a, H> {
    fn new(handle: &'a H, len_bytes: u64) -> ChunkReader<'a, H> {
        ChunkReader {
            handle,
            len_bytes,
            buf: Vec::new(),
            buf_offset: 0,
        }
    }

    /// The `size` bytes at `offset`, or `None` if the file ends before them.
    fn bytes(&mut self, offset: u64, size: usize) -> io::Result<Option<&[u8]>> {
        let end = offset + size as u64;
        if end > self.len_bytes {
            return Ok(None);
        }
        let buf_end = self.buf_offset + self.buf.len() as u64;
        if offset < self.buf_offset || end > buf_end {
            let remaining = usize::try_from(self.len_bytes - offset).unwrap_or(usize::MAX);
            self.buf
                .resize(size.max(SCAN_CHUNK_BYTES).min(remaining), 0);
            self.handle.read_exact_at(&mut self.buf, offset)?;
            self.buf_offset = offset;
        }
        let start = (offset - self.buf_offset) as usize;
        Ok(Some(&self.buf[start..start + size]))
    }

    /// The good record at `offset`, or why there is none.
    fn record_at(&mut self, offset: u64) -> io::Result<Result<Record<'_>, &'static str>> {
        let Some(header_bytes) = self.bytes(offset, RECORD_HEADER_BYTES)? else {
            return Ok(Err("header cut short"));
        };
        let header_bytes: [u8; RECORD_HEADER_BYTES] =
            header_bytes.try_into().expect("header-sized slice");
        let header = match Header::decode(&header_bytes) {
            Ok(header) => header,
            Err(reason) => return Ok(Err(reason)),
        };
        let Some(bytes) = self.bytes(offset, header.record_bytes())? else {
            return Ok(Err("record cut short"));
        };
        Ok(decode_record(bytes))
    }

    /// The offset of the first good record after `bad_offset`, looking at every offset in turn
    /// and charging the work to `work_bytes` (see [`RESYNC_WORK_BYTES_MAX`]).
    fn resync(&mut self, bad_offset: u64, work_bytes: &mut u64) -> io::Result<Resync> {
        let mut candidate = bad_offset + 1;
        // Each turn moves one byte on, so the loop ends at the end of the file or the work bound.
        while candidate + RECORD_HEADER_BYTES as u64 <= self.len_bytes {
            if *work_bytes >= RESYNC_WORK_BYTES_MAX {
                return Ok(Resync::GaveUp);
            }
            *work_bytes += RECORD_HEADER_BYTES as u64;
            let header_bytes: [u8; RECORD_HEADER_BYTES] = self
                .bytes(candidate, RECORD_HEADER_BYTES)?
                .expect("checked against the length above")
                .try_into()
                .expect("header-sized slice");
            // Most garbage fails here, before any checksum is computed.
            if let Ok(header) = Header::decode(&header_bytes)
                && candidate + header.record_bytes() as u64 <= self.len_bytes
            {
                *work_bytes += header.record_bytes() as u64;
                if self.record_at(candidate)?.is_ok() {
                    return Ok(Resync::Found(candidate));
                }
            }
            candidate += 1;
        }
        Ok(Resync::EndOfFile)
    }
}

/// How a search for a good record after damage ended.
enum Resync {
    Found(u64),
    EndOfFile,
    GaveUp,
}

/// Bytes of a data file that are not good records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BadRange {
    pub(super) offset: u64,
    pub(super) bytes: u64,
    /// Why the first bytes of the range are not a good record.
    pub(super) reason: &'static str,
}

/// What a scan found besides good records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// Damaged ranges, each followed by a good record: damage in the middle of the file.
    pub(super) skipped: Vec<BadRange>,
    /// Damage running to the end of the file, after which the search found no good record.
    pub(super) tail: Option<BadRange>,
    /// Whether the search after `tail` stopped at [`RESYNC_WORK_BYTES_MAX`] rather than at the end
    /// of the file: good records may lie in it.
    pub(super) gave_up: bool,
}

/// Scans a data file from the start, calling `on_record(offset, record_bytes, tombstone, key)` for
/// each good record. At a bad record it looks for the next offset where a good record starts
/// (Bitcask's way) and goes on from there.
///
/// The limit of resynchronising: a value that itself holds the bytes of a well-formed record would
/// be taken for a record if damage came just before it. The node's values are postcard-encoded key
/// states, so a client would have to craft such a value and a disk would have to fail right there.
pub(super) fn scan_file<H: FsFile>(
    handle: &H,
    len_bytes: u64,
    mut on_record: impl FnMut(u64, u32, bool, &[u8]),
) -> io::Result<Scan> {
    let mut reader = ChunkReader::new(handle, len_bytes);
    let mut scan = Scan::default();
    let mut work_bytes = 0;
    let mut offset = 0;
    // Each turn consumes a good record (at least RECORD_HEADER_BYTES) or a bad range (at least one
    // byte), or ends the loop.
    while offset < len_bytes {
        let reason = match reader.record_at(offset)? {
            Ok(record) => {
                let record_bytes = record.record_bytes();
                on_record(offset, record_bytes as u32, record.tombstone, record.key);
                offset += record_bytes as u64;
                continue;
            }
            Err(reason) => reason,
        };
        match reader.resync(offset, &mut work_bytes)? {
            Resync::Found(next) => {
                let bytes = next - offset;
                scan.skipped.push(BadRange {
                    offset,
                    bytes,
                    reason,
                });
                offset = next;
            }
            end @ (Resync::EndOfFile | Resync::GaveUp) => {
                let bytes = len_bytes - offset;
                scan.tail = Some(BadRange {
                    offset,
                    bytes,
                    reason,
                });
                scan.gave_up = matches!(end, Resync::GaveUp);
                break;
            }
        }
    }
    assert!(
        scan.tail.is_some() || offset == len_bytes,
        "records and skipped ranges cover the file exactly"
    );
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, MemFs};
    use std::path::Path;

    /// A file on a MemFs holding `bytes`, and its handle.
    fn file(bytes: &[u8]) -> crate::fs::MemFile {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let mut handle = fs.open(Path::new("/d/f"), true).unwrap();
        handle.append(bytes).unwrap();
        handle
    }

    /// (offset, key) of every good record, and the scan.
    fn scan(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, Scan) {
        let handle = file(bytes);
        let mut records = Vec::new();
        let scan = scan_file(&handle, bytes.len() as u64, |offset, _, _, key| {
            records.push((offset, key.to_vec()))
        })
        .unwrap();
        (records, scan)
    }

    #[test]
    fn records_round_trip_and_zeroes_are_not_a_record() {
        let record = encode_record(b"key", Some(b"value"));
        let decoded = decode_record(&record).expect("a fresh record decodes");
        assert_eq!(
            (decoded.key, decoded.value, decoded.tombstone),
            (&b"key"[..], &b"value"[..], false)
        );
        let tombstone = encode_record(b"key", None);
        assert!(
            decode_record(&tombstone)
                .expect("a tombstone decodes")
                .tombstone
        );
        // A crash can leave a zero-filled tail (a file extended before its data reached the disk).
        assert_eq!(
            decode_record(&[0; RECORD_HEADER_BYTES]).err(),
            Some("checksum mismatch")
        );
    }

    #[test]
    fn a_scan_skips_damage_to_the_next_good_record() {
        let a = encode_record(b"a", Some(b"first"));
        let b = encode_record(b"b", Some(b"second"));
        let c = encode_record(b"c", None);
        let mut bytes = [a.clone(), b.clone(), c.clone()].concat();
        let b_at = a.len() as u64;
        let c_at = b_at + b.len() as u64;
        bytes[b_at as usize + 15] ^= 0xff;
        let (records, found) = scan(&bytes);
        assert_eq!(records, [(0, b"a".to_vec()), (c_at, b"c".to_vec())]);
        assert_eq!(
            found.skipped,
            [BadRange {
                offset: b_at,
                bytes: b.len() as u64,
                reason: "checksum mismatch"
            }]
        );
        assert_eq!(found.tail, None);

        // Damage to the last record, and garbage after it, is a tail: nothing good follows.
        bytes.extend_from_slice(&[0; 40]);
        let (records, found) = scan(&bytes);
        assert_eq!(records.len(), 2);
        let end = bytes.len() as u64;
        assert_eq!(
            found.tail.map(|t| (t.offset, t.bytes)),
            Some((end - 40, 40))
        );
        assert!(!found.gave_up);
    }

    #[test]
    fn a_damaged_length_does_not_hide_the_records_after_it() {
        let records: Vec<Vec<u8>> = (0..5u8)
            .map(|i| encode_record(&[b'k', i], Some(&[i; 7])))
            .collect();
        let mut bytes = records.concat();
        // The top byte of the first record's value length: it claims a huge value.
        bytes[12] ^= 0x01;
        let (found, scanned) = scan(&bytes);
        assert_eq!(found.len(), 4, "{scanned:?}");
        assert_eq!(scanned.skipped.len(), 1);
        assert_eq!(scanned.skipped[0].bytes, records[0].len() as u64);
    }
}
