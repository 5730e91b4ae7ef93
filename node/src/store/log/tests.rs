//! Tests of the log store on an in-memory disk with crashes, torn writes and damage (and a few on
//! the real disk).

use super::files::{FileKind, MANIFEST_NAME, parse_file_name};
use super::record::encode_record;
use super::*;
use crate::fs::{MemFs, StdFs};
use proptest::prelude::*;
use std::collections::BTreeSet;

/// The store directory on a [`MemFs`].
const DIR: &str = "/db";

/// What a store holds: key to value.
type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// The id of the stores these tests create (one made by the environment's randomness in a node).
const STORE_ID: u64 = 0x5354_4f52_455f_4944;

/// The `new_store_id` of [`LogStore::open`] in these tests.
fn new_id() -> u64 {
    STORE_ID
}

fn options(max_file_bytes: u64) -> LogOptions {
    LogOptions { max_file_bytes }
}

/// Opens the store on `fs` as a node does: a loss is handled (the node took a new actor id) once
/// reported. [`open_mem_unhandled`] leaves it pending.
fn open_mem(fs: &MemFs, max_file_bytes: u64) -> (LogStore<MemFs>, RecoveryReport) {
    let (mut store, report) = open_mem_unhandled(fs, max_file_bytes);
    store.loss_handled().expect("loss handled");
    (store, report)
}

fn open_mem_unhandled(fs: &MemFs, max_file_bytes: u64) -> (LogStore<MemFs>, RecoveryReport) {
    LogStore::open(fs.clone(), Path::new(DIR), options(max_file_bytes), new_id).expect("open")
}

/// Everything a store holds, read back through `keys` and `get`.
fn contents<F: FileSystem>(store: &LogStore<F>) -> Map {
    store
        .keys()
        .into_iter()
        .map(|key| {
            let value = store
                .get(&key)
                .expect("get")
                .expect("a listed key has a value");
            (key, value)
        })
        .collect()
}

fn files_of_kind<F: FileSystem>(fs: &F, dir: &Path, kind: FileKind) -> Vec<PathBuf> {
    let paths = fs.read_dir(dir).expect("read_dir");
    paths
        .into_iter()
        .filter(|path| parse_file_name(path).is_some_and(|(_, k)| k == kind))
        .collect()
}

/// What opening an empty directory reports.
fn new_store_report() -> RecoveryReport {
    RecoveryReport {
        manifest: ManifestState::Created,
        ..RecoveryReport::default()
    }
}

/// Asserts that recovery found a store as it was left: nothing lost, nothing repaired.
#[track_caller]
fn assert_clean(report: &RecoveryReport) {
    assert!(!report.lost_data(), "{report:?}");
    assert_eq!(report.loss_summary(), "nothing");
    assert!(!report.rewritten, "{report:?}");
    assert_eq!(report.manifest, ManifestState::Found);
    assert_eq!(report.superseded_files_removed, 0);
}

/// Opened again, the store finds nothing wrong and holds `model`.
fn assert_reopens_clean(fs: &MemFs, max_file_bytes: u64, model: &Map) {
    let (store, report) = open_mem(fs, max_file_bytes);
    assert_clean(&report);
    assert_eq!(contents(&store), *model);
}

/// Removes the file at `path` for good (its directory synced).
fn lose_file(fs: &MemFs, path: &Path) {
    fs.remove_file(path).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
}

/// A store on `fs` holding keys `0..count` (synced), closed; returns what it holds and where each
/// key's record lies.
fn filled(fs: &MemFs, max_file_bytes: u64, count: usize) -> (Map, BTreeMap<Vec<u8>, Location>) {
    let (mut store, _) = open_mem(fs, max_file_bytes);
    let mut model = Map::new();
    for i in 0..count {
        store.put(&key(i), &value(i, 0)).unwrap();
        model.insert(key(i), value(i, 0));
    }
    store.sync().unwrap();
    (model, store.keydir.clone())
}

/// [`filled`] (160-byte files, 12 keys), and the id of its newest data file with what the store
/// holds without it: what it should still hold once that file is lost.
fn filled_but_newest(fs: &MemFs) -> (Map, u32) {
    let (mut model, locations) = filled(fs, 160, 12);
    let (store, _) = open_mem(fs, 160);
    let newest = store.active_id();
    drop(store);
    model.retain(|k, _| locations[k].file_id != newest);
    (model, newest)
}

fn data_path(id: u32) -> PathBuf {
    file_path(Path::new(DIR), id, FileKind::Data)
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:03}").into_bytes()
}

fn value(i: usize, version: usize) -> Vec<u8> {
    format!("value-{i}-{version};")
        .repeat(1 + i % 3)
        .into_bytes()
}

#[test]
fn a_crash_keeps_every_synced_record_and_drops_the_unsynced_ones() {
    let fs = MemFs::new();
    let (mut store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    assert_eq!(report, new_store_report());
    let mut synced = Map::new();
    for i in 0..50 {
        store.put(&key(i), &value(i, 0)).unwrap();
        synced.insert(key(i), value(i, 0));
    }
    store.remove(&key(7)).unwrap();
    synced.remove(&key(7));
    store.sync().unwrap();
    for i in 40..60 {
        store.put(&key(i), &value(i, 1)).unwrap();
    }
    store.remove(&key(8)).unwrap();
    assert_eq!(
        store.get(&key(59)).unwrap(),
        Some(value(59, 1)),
        "unsynced writes are readable"
    );
    drop(store);
    fs.crash();

    let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    // One file, no rollover, and a MemFs crash drops every unsynced byte: exactly the synced
    // state is left, and nothing is damaged.
    assert_eq!(contents(&store), synced);
    assert_eq!(report.files, 1);
    assert_eq!(report.records, 51);
    assert_eq!(report.keys, 49);
    assert!(!report.lost_data(), "{report:?}");
}

#[test]
fn on_a_real_disk_drop_and_reopen_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("store");
    let (mut store, report) = LogStore::open(StdFs, &dir, options(256), new_id).unwrap();
    assert_eq!(report, new_store_report());
    let mut model = Map::new();
    for i in 0..200 {
        store.put(&key(i % 40), &value(i % 40, i)).unwrap();
        model.insert(key(i % 40), value(i % 40, i));
    }
    for i in (0..40).step_by(7) {
        store.remove(&key(i)).unwrap();
        model.remove(&key(i));
    }
    // No sync: the appends are in the OS's page cache, which a process kill does not lose.
    drop(store);

    let (mut store, report) = LogStore::open(StdFs, &dir, options(256), new_id).unwrap();
    assert_eq!(contents(&store), model);
    assert!(
        report.files > 2,
        "the test rolled over ({} files)",
        report.files
    );
    assert!(
        !report.lost_data(),
        "a process kill loses nothing: {report:?}"
    );

    let stats = store.compact().unwrap();
    assert_eq!(stats.records_kept, model.len() as u64);
    assert!(stats.bytes_after < stats.bytes_before);
    drop(store);
    let (store, _) = LogStore::open(StdFs, &dir, options(256), new_id).unwrap();
    assert_eq!(contents(&store), model);
    assert!(files_of_kind(&StdFs, &dir, FileKind::Compact).is_empty());
}

#[test]
fn a_torn_last_record_is_cut_and_everything_before_it_survives() {
    // Find where the third record lies, then cut the file at every byte inside it.
    let (offset, record_bytes) = {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", b"first").unwrap();
        store.put(b"b", b"second").unwrap();
        store.put(b"c", b"third").unwrap();
        let location = store.keydir[&b"c"[..]];
        (location.offset, u64::from(location.record_bytes))
    };
    let before: Map = [
        (b"a".to_vec(), b"first".to_vec()),
        (b"b".to_vec(), b"second".to_vec()),
    ]
    .into();
    for torn_len in offset + 1..offset + record_bytes {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", b"first").unwrap();
        store.put(b"b", b"second").unwrap();
        store.put(b"c", b"third").unwrap();
        store.sync().unwrap();
        drop(store);
        fs.tear(&data_path(FILE_ID_FIRST), torn_len).unwrap();

        let (mut store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(contents(&store), before, "torn at {torn_len}");
        assert_eq!(
            report.truncated_at,
            Some((data_path(FILE_ID_FIRST), offset))
        );
        assert_eq!(report.truncated_bytes, torn_len - offset);
        assert_eq!(report.records, 2);
        assert!(report.lost_data());
        assert!(report.skipped.is_empty() && !report.rewritten, "{report:?}");
        let len = fs
            .open(&data_path(FILE_ID_FIRST), false)
            .unwrap()
            .len()
            .unwrap();
        assert_eq!(len, offset, "the torn bytes are gone from the file");

        // New records go right after the good ones, and the cut was made durable: a crash
        // now finds no damage.
        store.put(b"d", b"fourth").unwrap();
        store.sync().unwrap();
        drop(store);
        fs.crash();
        let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        let mut expected = before.clone();
        expected.insert(b"d".to_vec(), b"fourth".to_vec());
        assert_eq!(contents(&store), expected);
        assert_clean(&report);
    }
}

#[test]
fn garbage_after_the_last_record_is_cut_and_reported() {
    let mut bad_checksum = encode_record(b"x", Some(b"y"));
    *bad_checksum.last_mut().unwrap() ^= 1;
    let mut impossible_length = encode_record(b"x", Some(b"y"));
    impossible_length[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut unknown_flags = encode_record(b"x", Some(b"y"));
    unknown_flags[4] = 0x80;
    let garbages = [
        vec![0; 100],
        b"\xde\xad\xbe\xef\x01".to_vec(),
        bad_checksum,
        impossible_length,
        unknown_flags,
    ];
    for garbage in garbages {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        store.put(b"a", b"first").unwrap();
        store.remove(b"a").unwrap();
        store.put(b"b", b"second").unwrap();
        store.sync().unwrap();
        let good_bytes = store.stats().bytes;
        drop(store);
        let mut file = fs.open(&data_path(FILE_ID_FIRST), false).unwrap();
        file.append(&garbage).unwrap();
        file.sync().unwrap();
        drop(file);

        let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
        assert_eq!(
            contents(&store),
            [(b"b".to_vec(), b"second".to_vec())].into()
        );
        assert_eq!(report.truncated_bytes, garbage.len() as u64, "{garbage:?}");
        assert_eq!(
            report.truncated_at,
            Some((data_path(FILE_ID_FIRST), good_bytes))
        );
        assert_eq!(report.records, 3);
    }
}

#[test]
fn a_clean_reopen_reports_nothing() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 128, 30);
    for _ in 0..2 {
        let (store, report) = open_mem(&fs, 128);
        assert_clean(&report);
        assert!(report.files > 3, "the test rolled over");
        assert_eq!(contents(&store), model);
        drop(store);
        fs.crash();
    }
}

/// Issue 10: a byte flipped in the middle of the only data file was taken for a torn tail, and
/// every good record after it was cut away.
#[test]
fn a_flipped_byte_in_the_middle_of_the_only_file_loses_only_its_record() {
    let fs = MemFs::new();
    let (mut model, locations) = filled(&fs, MAX_FILE_BYTES_DEFAULT, 40);
    let victim = locations[&key(10)];
    assert_eq!(victim.file_id, FILE_ID_FIRST);
    fs.flip_byte(&data_path(FILE_ID_FIRST), victim.offset + 20)
        .unwrap();

    let (mut store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    model.remove(&key(10));
    assert_eq!(contents(&store), model, "every other record is kept");
    assert!(report.lost_data());
    assert_eq!(report.truncated_bytes, 0, "not a torn tail");
    assert_eq!(
        report.skipped,
        [SkippedRange {
            file: data_path(FILE_ID_FIRST),
            offset: victim.offset,
            bytes: u64::from(victim.record_bytes),
            reason: "checksum mismatch",
        }]
    );
    assert_eq!(
        (report.skipped_ranges, report.skipped_bytes),
        (1, u64::from(victim.record_bytes))
    );
    assert!(report.rewritten, "the damage was compacted away");
    let summary = report.loss_summary();
    assert!(
        summary.contains(&format!("the first at offset {} of", victim.offset)),
        "{summary}"
    );

    // Nothing is appended behind the damage: new writes survive a crash, and the next recovery
    // finds a clean store.
    store.put(b"after", b"damage").unwrap();
    store.sync().unwrap();
    model.insert(b"after".to_vec(), b"damage".to_vec());
    drop(store);
    fs.crash();
    assert_reopens_clean(&fs, MAX_FILE_BYTES_DEFAULT, &model);
}

#[test]
fn damage_in_an_older_file_is_skipped_and_the_records_after_it_kept() {
    // The first record starts past the file-start record (44 bytes): offset 20 of it is in its
    // key or value; offset 8 is the top byte of its key length, which becomes impossible; a cut
    // leaves a short last record.
    assert_eq!(super::record::FILE_START_BYTES, 44);
    for (damage, reason) in [
        ("flip 64", "checksum mismatch"),
        ("flip 52", "key length over the limit"),
        ("cut", "header cut short"),
    ] {
        let fs = MemFs::new();
        let (mut model, locations) = filled(&fs, 160, 12);
        let first = data_path(FILE_ID_FIRST);
        let in_first: Vec<Vec<u8>> = locations
            .iter()
            .filter(|(_, l)| l.file_id == FILE_ID_FIRST)
            .map(|(k, _)| k.clone())
            .collect();
        assert!(in_first.len() >= 2, "the first file holds several records");
        let lost = match damage {
            "cut" => {
                let last = &in_first[in_first.len() - 1];
                let location = locations[last];
                fs.tear(&first, location.offset + 5).unwrap();
                last.clone()
            }
            flip => {
                let offset = flip[5..].parse().unwrap();
                fs.flip_byte(&first, offset).unwrap();
                in_first[0].clone()
            }
        };

        let (store, report) = open_mem(&fs, 160);
        model.remove(&lost);
        assert_eq!(contents(&store), model, "{damage}");
        assert!(report.lost_data());
        assert_eq!(report.truncated_at, None, "an older file is never cut");
        assert_eq!(report.skipped.len(), 1, "{damage}: {report:?}");
        assert_eq!(report.skipped[0].file, first);
        assert_eq!(report.skipped[0].reason, reason);
        assert!(report.rewritten);
        drop(store);
        assert_reopens_clean(&fs, 160, &model);
    }
}

/// Issue 10: deleting the newest data file went unnoticed.
#[test]
fn a_lost_newest_file_is_noticed() {
    let fs = MemFs::new();
    let (mut model, newest) = filled_but_newest(&fs);
    lose_file(&fs, &data_path(newest));

    let (mut store, report) = open_mem(&fs, 160);
    assert_eq!(contents(&store), model);
    assert!(report.lost_data());
    assert_eq!(report.missing_files, [data_path(newest)]);
    assert_eq!(report.missing_file_count, 1);
    assert!(
        !report.rewritten,
        "no hole: the files left are still a sequence"
    );
    assert!(report.loss_summary().contains("1 data files missing"));

    store.put(b"new", b"v").unwrap();
    store.sync().unwrap();
    model.insert(b"new".to_vec(), b"v".to_vec());
    drop(store);
    fs.crash();
    assert_reopens_clean(&fs, 160, &model);
}

/// The newest file emptied (`truncate -s 0` of a stopped node's file) reads as no record at all;
/// its file-start record is what shows that the store had written there.
#[test]
fn an_emptied_newest_file_is_noticed() {
    let fs = MemFs::new();
    let (mut model, newest) = filled_but_newest(&fs);
    fs.tear(&data_path(newest), 0).unwrap();

    let (mut store, report) = open_mem(&fs, 160);
    assert_eq!(contents(&store), model);
    assert!(report.lost_data(), "{report:?}");
    assert_eq!(report.emptied_file, Some(data_path(newest)));
    assert!(
        report
            .loss_summary()
            .contains("was empty although the manifest names it")
    );

    // The file holds a file-start record again: emptied once more, it is noticed once more.
    store.put(b"new", b"v").unwrap();
    store.sync().unwrap();
    model.insert(b"new".to_vec(), b"v".to_vec());
    drop(store);
    fs.crash();
    assert_reopens_clean(&fs, 160, &model);
    fs.tear(&data_path(newest), 0).unwrap();
    let (_, report) = open_mem(&fs, 160);
    assert_eq!(report.emptied_file, Some(data_path(newest)));
}

/// A newly created store has an active file that holds only its file-start record: nothing is
/// lost, and a crash right then loses nothing either. (A crash at every step of a rollover or a
/// compaction: `a_crash_at_any_step_of_a_workload_...` and `..._of_a_compaction_...`.)
#[test]
fn a_file_with_only_its_start_record_is_no_loss() {
    let fs = MemFs::new();
    let (store, report) = open_mem(&fs, 160);
    assert!(!report.lost_data());
    drop(store);
    fs.crash();
    let (_, report) = open_mem(&fs, 160);
    assert!(!report.lost_data(), "{report:?}");
}

#[test]
fn a_lost_file_in_the_middle_is_noticed_and_the_hole_compacted_away() {
    let fs = MemFs::new();
    let (mut model, locations) = filled(&fs, 160, 12);
    let middle = FILE_ID_FIRST + 1;
    assert!(locations.values().any(|l| l.file_id > middle));
    lose_file(&fs, &data_path(middle));

    let (store, report) = open_mem(&fs, 160);
    model.retain(|k, _| locations[k].file_id != middle);
    assert_eq!(contents(&store), model);
    assert!(report.lost_data());
    assert_eq!(report.missing_files, [data_path(middle)]);
    assert!(report.rewritten);
    drop(store);
    fs.crash();
    assert_reopens_clean(&fs, 160, &model);
}

#[test]
fn a_missing_manifest_beside_data_is_noticed_but_not_in_a_new_directory() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 160, 12);
    let manifest = Path::new(DIR).join(MANIFEST_NAME);
    fs.remove_file(&manifest).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    let (store, report) = open_mem(&fs, 160);
    assert_eq!(contents(&store), model);
    assert_eq!(report.manifest, ManifestState::Missing);
    assert!(report.lost_data());
    drop(store);
    let (_, report) = open_mem(&fs, 160);
    assert_clean(&report);

    // An unreadable one likewise.
    fs.write_durable(&manifest, b"garbage").unwrap();
    let (store, report) = open_mem(&fs, 160);
    assert_eq!(contents(&store), model);
    assert!(matches!(report.manifest, ManifestState::Unreadable(_)));
    assert!(report.lost_data());
    drop(store);
    let (_, report) = open_mem(&fs, 160);
    assert_clean(&report);

    // A crash at any step of making a new store leaves no data, so nothing lost.
    for crash_after_ops in 0..20 {
        let fs = MemFs::new();
        fs.set_fail_after_ops(Some(crash_after_ops));
        let made = LogStore::open(fs.clone(), Path::new(DIR), options(160), new_id).is_ok();
        fs.crash();
        let (_, report) = open_mem(&fs, 160);
        let expected = if made {
            RecoveryReport {
                files: 1,
                log_end: report.log_end,
                ..RecoveryReport::default()
            }
        } else {
            RecoveryReport {
                files: report.files,
                log_end: report.log_end,
                ..new_store_report()
            }
        };
        assert_eq!(report, expected, "crash after {crash_after_ops} operations");
    }
}

#[test]
fn every_kind_of_damage_is_applied_deterministically_and_noticed() {
    for &damage in damage::Damage::ALL {
        let mut done = Vec::new();
        for _ in 0..2 {
            let fs = MemFs::new();
            let (model, _) = filled(&fs, 160, 12);
            let what = damage::apply_damage(&fs, Path::new(DIR), damage, 12_345, None)
                .unwrap()
                .expect("something to damage");
            // Durable: a crash keeps the damage.
            fs.crash();
            let (store, report) = open_mem(&fs, 160);
            assert!(report.lost_data(), "{damage}: {what}: {report:?}");
            let held = contents(&store);
            assert!(
                held.iter().all(|(k, v)| model.get(k) == Some(v)),
                "{damage}: nothing invented"
            );
            done.push((what, held));
        }
        assert_eq!(done[0], done[1], "{damage}: the same pick does the same");
        eprintln!("{damage}: {}", done[0].0);
    }
    // Nothing to damage in an empty directory, or no directory at all.
    let fs = MemFs::new();
    drop(open_mem(&fs, 160));
    for &damage in damage::Damage::ALL {
        if damage != damage::Damage::LoseNewestFile && damage != damage::Damage::LoseManifest {
            assert_eq!(
                damage::apply_damage(&fs, Path::new(DIR), damage, 1, None).unwrap(),
                None
            );
        }
    }
    assert_eq!(
        damage::apply_damage(
            &fs,
            Path::new("/nowhere"),
            damage::Damage::TornTail,
            1,
            None
        )
        .unwrap(),
        None
    );
}

/// A sealed file cut exactly at a record boundary leaves no damaged byte, but the manifest has its
/// length: recovery reports the loss (so the node takes a new actor), keeps every other record,
/// and records the new length, so that the next recovery is clean. The newest file cut the same
/// way is a crash that lost unsynced appends, which nothing can tell apart.
#[test]
fn a_sealed_file_cut_at_a_record_boundary_is_noticed() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 160, 12);
    let ids: Vec<u32> = {
        let (store, _) = open_mem(&fs, 160);
        store.files.keys().copied().collect()
    };
    assert!(ids.len() >= 3, "several files: {ids:?}");
    let what = damage::apply_damage(&fs, Path::new(DIR), damage::Damage::CutSealedFile, 3, None)
        .unwrap()
        .expect("a sealed file to cut");
    assert!(what.contains("record boundary"), "{what}");
    fs.crash();
    let (store, report) = open_mem(&fs, 160);
    assert!(report.lost_data(), "{what}: {report:?}");
    assert_eq!(report.shortened_file_count, 1, "{report:?}");
    let shortened = &report.shortened_files[0];
    assert!(
        shortened.len_bytes < shortened.sealed_bytes,
        "{shortened:?}"
    );
    assert!(
        report.loss_summary().contains("shorter than when sealed"),
        "{}",
        report.loss_summary()
    );
    assert_eq!(
        report.skipped_ranges + report.truncated_bytes,
        0,
        "no damaged byte"
    );
    let held = contents(&store);
    assert!(held.len() < model.len(), "records were lost");
    assert!(held.iter().all(|(k, v)| model.get(k) == Some(v)));
    drop(store);
    assert_reopens_clean(&fs, 160, &held);

    // The newest file cut at a boundary: a crash's lost appends, not damage.
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, 1 << 20);
    store.put(&key(1), &value(1, 0)).unwrap();
    store.put(&key(2), &value(2, 0)).unwrap();
    store.sync().unwrap();
    let first_bytes = store.keydir[&key(2)].offset;
    drop(store);
    fs.tear(&data_path(FILE_ID_FIRST), first_bytes).unwrap();
    let (_, report) = open_mem(&fs, 1 << 20);
    assert!(!report.lost_data(), "{report:?}");
}

/// A loss stays reported until the node says it took a new actor id: a crash between a recovery
/// that repaired the damage durably (the cut, the rewritten manifest) and the new actor id must
/// not leave a store that looks clean at the next start.
#[test]
fn a_loss_is_reported_again_until_it_is_handled() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 160, 12);
    damage::apply_damage(&fs, Path::new(DIR), damage::Damage::TornTail, 5, None)
        .unwrap()
        .expect("a tail to tear");
    let (store, first) = open_mem_unhandled(&fs, 160);
    assert!(
        first.lost_data() && !first.earlier_loss_pending,
        "{first:?}"
    );
    let held = contents(&store);
    assert!(held.len() < model.len());
    drop(store);
    fs.crash();
    let (mut store, again) = open_mem_unhandled(&fs, 160);
    assert!(again.lost_data() && again.earlier_loss_pending, "{again:?}");
    assert_eq!(again.truncated_bytes, 0, "the cut itself was durable");
    assert!(
        again.loss_summary().contains("earlier recovery lost data"),
        "{}",
        again.loss_summary()
    );
    store.loss_handled().unwrap();
    drop(store);
    fs.crash();
    assert_reopens_clean(&fs, 160, &held);
}

/// Rewrites the store's manifest as a version 1 manifest (no file lengths) of the same files, as
/// a store written before the lengths were recorded has.
fn rewrite_as_version_1_manifest(fs: &MemFs) {
    let manifest_path = Path::new(DIR).join(MANIFEST_NAME);
    let text = String::from_utf8(fs.read(&manifest_path).unwrap()).unwrap();
    let body: String = text
        .lines()
        .filter(|l| l.starts_with("first ") || l.starts_with("last "))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = format!("dynamo-log-manifest 1\n{body}");
    let v1 = format!("{body}crc {:08x}\n", crc32fast::hash(body.as_bytes()));
    fs.write_durable(&manifest_path, v1.as_bytes()).unwrap();
}

/// A manifest written before lengths were recorded (version 1) is read as it was, and the next
/// one written has the lengths.
#[test]
fn a_version_1_manifest_opens_clean_and_is_rewritten_with_lengths() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 160, 12);
    let manifest_path = Path::new(DIR).join(MANIFEST_NAME);
    rewrite_as_version_1_manifest(&fs);
    let (store, report) = open_mem(&fs, 160);
    assert!(!report.lost_data(), "{report:?}");
    assert_eq!(contents(&store), model);
    let rewritten = String::from_utf8(fs.read(&manifest_path).unwrap()).unwrap();
    assert!(
        rewritten.starts_with("dynamo-log-manifest 3\nstore ") && rewritten.contains("\nsealed "),
        "{rewritten}"
    );
}

/// Damage aimed at a key hits that key's newest record: a torn tail cuts inside it (the records
/// after it go too), a flipped byte lies inside it (the records after it stay). The key falls back
/// to its older version, which is what a node that kept its actor would then issue again.
#[test]
fn aimed_damage_hits_the_newest_record_of_the_key() {
    for damage in [damage::Damage::TornTail, damage::Damage::FlipByte] {
        for pick in [0, 1, 77, u64::MAX] {
            let fs = MemFs::new();
            let (mut store, _) = open_mem(&fs, 1 << 20);
            // key-001 twice (its newest record in the middle), then five other keys.
            store.put(&key(1), &value(1, 0)).unwrap();
            store.put(&key(1), &value(1, 1)).unwrap();
            for i in 2..7 {
                store.put(&key(i), &value(i, 0)).unwrap();
            }
            store.sync().unwrap();
            drop(store);
            let what = damage::apply_damage(&fs, Path::new(DIR), damage, pick, Some(&key(1)))
                .unwrap()
                .expect("something to damage");
            fs.crash();
            let (store, report) = open_mem(&fs, 1 << 20);
            assert!(report.lost_data(), "{damage}: {what}: {report:?}");
            let held = contents(&store);
            assert_eq!(
                held.get(&key(1)),
                Some(&value(1, 0)),
                "{damage} ({what}): the newest record of key-001 is gone, the older one stays"
            );
            let later_kept = (2..7).filter(|&i| held.get(&key(i)) == Some(&value(i, 0)));
            let expected = if damage == damage::Damage::TornTail {
                0
            } else {
                5
            };
            assert_eq!(later_kept.count(), expected, "{damage}: {what}");
        }
    }
}

/// One piece of generated damage: (kind, file index, where).
fn damage_op() -> impl Strategy<Value = (u8, usize, u64)> {
    (0u8..4, any::<usize>(), any::<u64>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the damage, recovery does not panic, returns no record that was not written, keeps
    /// every record the damage did not touch, reports the loss, and leaves a store that a crash
    /// and a second recovery find clean.
    #[test]
    fn recovery_keeps_every_undamaged_record_and_invents_none(
        max_file_bytes in 24u64..300,
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 1..50),
        damages in proptest::collection::vec(damage_op(), 1..4),
    ) {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, max_file_bytes);
        let mut written = Map::new();
        for (i, v) in values.iter().enumerate() {
            store.put(&key(i), v).unwrap();
            written.insert(key(i), v.clone());
        }
        store.sync().unwrap();
        let locations = store.keydir.clone();
        let file_ids: Vec<u32> = store.files.keys().copied().collect();
        drop(store);

        // What the damage touched, to tell which records must survive.
        let mut flipped: Vec<(u32, u64)> = Vec::new();
        let mut cut: BTreeMap<u32, u64> = BTreeMap::new();
        let mut removed: BTreeSet<u32> = BTreeSet::new();
        let mut manifest_removed = false;
        for &(kind, file, at) in &damages {
            let id = file_ids[file % file_ids.len()];
            let path = data_path(id);
            let len = fs.read(&path).map(|b| b.len() as u64).unwrap_or(0);
            match kind {
                0 if len > 0 && !removed.contains(&id) => {
                    let offset = at % len;
                    fs.flip_byte(&path, offset).unwrap();
                    // A second flip of the same byte undoes the first.
                    match flipped.iter().position(|&f| f == (id, offset)) {
                        Some(i) => {
                            flipped.swap_remove(i);
                        }
                        None => flipped.push((id, offset)),
                    }
                }
                1 if len > 1 && !removed.contains(&id) => {
                    // Inside a record, or at a boundary of a sealed file (the manifest has its
                    // length); never at a boundary of the newest file: a cut there looks like a
                    // crash that lost unsynced appends, which no check can see (module docs).
                    let new_len = 1 + at % (len - 1);
                    let at_boundary = new_len == 0
                        || locations.values().any(|l| {
                            l.file_id == id
                                && (l.offset == new_len
                                    || l.offset + u64::from(l.record_bytes) == new_len)
                        });
                    let newest = Some(&id) == file_ids.last();
                    if !(at_boundary && newest) {
                        fs.tear(&path, new_len).unwrap();
                        let entry = cut.entry(id).or_insert(new_len);
                        *entry = (*entry).min(new_len);
                    }
                }
                2 if !removed.contains(&id) => {
                    fs.remove_file(&path).unwrap();
                    fs.sync_dir(Path::new(DIR)).unwrap();
                    removed.insert(id);
                }
                3 => {
                    let manifest = Path::new(DIR).join(MANIFEST_NAME);
                    if fs.exists(&manifest) {
                        fs.remove_file(&manifest).unwrap();
                        fs.sync_dir(Path::new(DIR)).unwrap();
                        manifest_removed = true;
                    }
                }
                _ => {}
            }
        }
        let damaged_any =
            !flipped.is_empty() || !cut.is_empty() || !removed.is_empty() || manifest_removed;
        // Without a manifest, a directory whose data files are all gone, empty or whole
        // file-start records alone is a new store (or one whose creation a crash cut short):
        // nothing says files were lost. (A torn file-start record is a torn file, and reported.)
        let bytes_left: u64 = file_ids
            .iter()
            .filter_map(|&id| fs.read(&data_path(id)).ok())
            .map(|bytes| bytes.len() as u64)
            .filter(|&len| len != record::FILE_START_BYTES)
            .sum();
        let noticeable = damaged_any && (!manifest_removed || bytes_left > 0);

        let (mut store, report) = open_mem(&fs, max_file_bytes);
        let held = contents(&store);
        for (k, v) in &held {
            prop_assert_eq!(written.get(k), Some(v), "no record that was not written");
        }
        for (k, l) in &locations {
            let end = l.offset + u64::from(l.record_bytes);
            let touched = removed.contains(&l.file_id)
                || flipped.iter().any(|&(id, o)| id == l.file_id && (l.offset..end).contains(&o))
                || cut.get(&l.file_id).is_some_and(|&len| len < end);
            if !touched {
                prop_assert_eq!(held.get(k), written.get(k), "an undamaged record survives");
            }
        }
        prop_assert_eq!(report.lost_data(), noticeable, "{:?}", report);

        // The repaired store takes writes, and a crash and a second recovery find it clean.
        store.put(b"after", b"damage").unwrap();
        store.sync().unwrap();
        drop(store);
        fs.crash();
        let (store, report) = open_mem(&fs, max_file_bytes);
        prop_assert!(!report.lost_data(), "{:?}", report);
        let mut expected = held.clone();
        expected.insert(b"after".to_vec(), b"damage".to_vec());
        prop_assert_eq!(contents(&store), expected);
    }
}

#[test]
fn get_detects_a_damaged_record() {
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    store.put(b"a", &[7; 100]).unwrap();
    store.sync().unwrap();
    let location = store.keydir[&b"a"[..]];
    fs.flip_byte(&data_path(FILE_ID_FIRST), location.offset + 50)
        .unwrap();
    let error = store.get(b"a").unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("checksum mismatch"), "{error}");
}

#[test]
fn compaction_keeps_the_newest_state_of_every_key_and_shrinks_the_files() {
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, 512);
    let mut model = Map::new();
    for round in 0..10 {
        for i in 0..20 {
            store.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
    }
    let removed: Vec<Vec<u8>> = (0..20).step_by(3).map(key).collect();
    for k in &removed {
        store.remove(k).unwrap();
        model.remove(k);
    }
    let before = store.stats();

    let stats = store.compact().unwrap();
    assert_eq!(stats.records_kept, model.len() as u64);
    assert_eq!(stats.bytes_before, before.bytes);
    assert!(stats.bytes_after * 10 < stats.bytes_before, "{stats:?}");
    assert_eq!(contents(&store), model);
    let after = store.stats();
    // Each output file (all but the new active one) starts with its file-start record.
    assert_eq!(
        stats.bytes_after,
        before.live_bytes + u64::from(after.files - 1) * super::record::FILE_START_BYTES
    );
    assert!(after.files < before.files, "{before:?} -> {after:?}");
    // The new active file holds its file-start record.
    assert_eq!(
        after.bytes,
        stats.bytes_after + super::record::FILE_START_BYTES
    );
    assert_eq!(
        files_of_kind(&fs, Path::new(DIR), FileKind::Data).len(),
        after.files as usize
    );

    // Compaction synced everything; a crash changes nothing, and removed keys stay removed
    // although the files with their tombstones are gone.
    drop(store);
    fs.crash();
    let (mut store, report) = open_mem(&fs, 512);
    assert_eq!(contents(&store), model);
    assert_eq!(report.records, model.len() as u64);
    for k in &removed {
        assert_eq!(store.get(k).unwrap(), None);
    }

    // The store goes on working after a compaction, and a second one keeps the same state.
    store.put(&key(0), b"again").unwrap();
    model.insert(key(0), b"again".to_vec());
    store.compact().unwrap();
    assert_eq!(contents(&store), model);
}

#[test]
fn a_crash_at_any_step_of_a_compaction_loses_nothing_synced() {
    /// Operations a compaction of this store takes, with room to spare.
    const COMPACTION_OPS_MAX: u64 = 1_000;
    for crash_after_ops in 0.. {
        assert!(
            crash_after_ops < COMPACTION_OPS_MAX,
            "the compaction never finished"
        );
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, 256);
        let mut model = Map::new();
        for round in 0..4 {
            for i in 0..15 {
                store.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
            store.remove(&key(round)).unwrap();
            model.remove(&key(round));
        }
        store.sync().unwrap();
        let synced = model.clone();
        // Unsynced writes too: the compaction makes them durable once it gets past its sync.
        store.put(&key(100), b"late").unwrap();
        store.remove(&key(10)).unwrap();
        model.insert(key(100), b"late".to_vec());
        model.remove(&key(10));

        fs.set_fail_after_ops(Some(crash_after_ops));
        let result = store.compact();
        drop(store);
        fs.crash();
        let (store, report) = open_mem(&fs, 256);
        // Without torn writes a crash loses only unsynced bytes, whole: nothing to report.
        assert!(
            !report.lost_data(),
            "crash after {crash_after_ops} operations: {report:?}"
        );
        let recovered = contents(&store);
        assert!(
            files_of_kind(&fs, Path::new(DIR), FileKind::Compact).is_empty(),
            "recovery removes unfinished output"
        );
        if result.is_ok() {
            assert_eq!(recovered, model);
            break;
        }
        assert!(
            recovered == synced || recovered == model,
            "crash after {crash_after_ops} operations: {recovered:?}"
        );
    }
}

#[test]
fn unfinished_compaction_output_is_removed_on_open() {
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    store.put(b"a", b"1").unwrap();
    store.sync().unwrap();
    drop(store);
    let leftover = file_path(Path::new(DIR), 9, FileKind::Compact);
    let mut file = fs.open(&leftover, true).unwrap();
    file.append(&encode_record(b"a", Some(b"stale"))).unwrap();
    file.sync().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    // Files the store does not own are left alone.
    let foreign = Path::new(DIR).join("node.id");
    fs.write_durable(&foreign, b"actor 7").unwrap();

    let (store, report) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    assert_eq!(report.compaction_files_removed, 1);
    assert_eq!(contents(&store), [(b"a".to_vec(), b"1".to_vec())].into());
    assert!(!fs.exists(&leftover));
    // The removal was made durable.
    drop(store);
    fs.crash();
    assert!(!fs.exists(&leftover));
    assert_eq!(fs.read(&foreign).unwrap(), b"actor 7");
}

#[test]
fn sizes_are_bounded() {
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    let error = store
        .put(&vec![1; RECORD_KEY_BYTES_MAX + 1], b"v")
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    let error = store
        .put(b"k", &vec![1; RECORD_VALUE_BYTES_MAX + 1])
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    let error = store
        .remove(&vec![1; RECORD_KEY_BYTES_MAX + 1])
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);

    // A refused write does not harm the store, and the largest records and the empty key work.
    let big_key = vec![2; RECORD_KEY_BYTES_MAX];
    let big_value = vec![3; RECORD_VALUE_BYTES_MAX];
    store.put(&big_key, &big_value).unwrap();
    store.put(b"", b"").unwrap();
    store.sync().unwrap();
    drop(store);
    fs.crash();
    let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    assert_eq!(store.get(&big_key).unwrap(), Some(big_value));
    assert_eq!(store.get(b"").unwrap(), Some(Vec::new()));
    // A removal of the empty key is a tombstone like the file-start record, but not the first
    // record of its file: replayed, not skipped.
    store.remove(b"").unwrap();
    store.sync().unwrap();
    drop(store);
    fs.crash();
    let (store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    assert_eq!(store.get(b"").unwrap(), None);
}

#[test]
fn a_failed_write_stops_writes_until_reopened() {
    let fs = MemFs::new();
    let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    store.put(b"a", b"1").unwrap();
    fs.set_fail_after_ops(Some(0));
    assert!(store.put(b"b", b"2").is_err());
    fs.set_fail_after_ops(None);
    // The disk works again, but the store cannot know what the failed append left behind.
    let error = store.put(b"c", b"3").unwrap_err();
    assert!(error.to_string().contains("reopen"), "{error}");
    assert!(store.sync().is_err());
    assert!(store.compact().is_err());
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()), "reads go on");
    drop(store);
    let (store, _) = open_mem(&fs, MAX_FILE_BYTES_DEFAULT);
    assert_eq!(contents(&store), [(b"a".to_vec(), b"1".to_vec())].into());
}

#[test]
fn zero_max_file_bytes_is_refused() {
    let error = LogStore::open(MemFs::new(), Path::new(DIR), options(0), new_id).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
}

/// One step of a generated history.
#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Remove(u8),
    Sync,
    Compact,
    /// Drop the store and open it again, without a crash.
    Reopen,
    /// Drop the store, crash the disk, open it again.
    Crash,
    /// Like `Crash`, keeping a prefix of the unsynced bytes chosen by the number.
    CrashTearing(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..8, proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0u8..8).prop_map(Op::Remove),
        2 => Just(Op::Sync),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => any::<u64>().prop_map(Op::CrashTearing),
    ]
}

/// A store on a [`MemFs`] beside a model of what it must hold.
struct Harness {
    fs: MemFs,
    max_file_bytes: u64,
    store: Option<LogStore<MemFs>>,
    /// What the store holds now.
    current: Map,
    /// What a crash may leave: the durable state first, then the state after each later write.
    candidates: Vec<Map>,
    /// What the last reopening reported.
    report: RecoveryReport,
}

impl Harness {
    fn new(max_file_bytes: u64) -> Harness {
        let fs = MemFs::new();
        let (store, _) = open_mem(&fs, max_file_bytes);
        Harness {
            fs,
            max_file_bytes,
            store: Some(store),
            current: Map::new(),
            candidates: vec![Map::new()],
            report: RecoveryReport::default(),
        }
    }

    fn store(&mut self) -> &mut LogStore<MemFs> {
        self.store.as_mut().expect("the store is open")
    }

    /// Applies a write to the store and, if it succeeds, to the model. A write that started
    /// a new file made every earlier write durable.
    fn write(
        &mut self,
        write: impl FnOnce(&mut LogStore<MemFs>) -> io::Result<()>,
        model: impl FnOnce(&mut Map),
    ) -> io::Result<()> {
        let files = self.store().stats().files;
        write(self.store())?;
        let before = self.current.clone();
        model(&mut self.current);
        if self.store().stats().files > files {
            self.candidates = vec![before];
        }
        self.candidates.push(self.current.clone());
        Ok(())
    }

    fn durable(&mut self) {
        self.candidates = vec![self.current.clone()];
    }

    /// Crashes (after `crash`), reopens, and returns what the store holds.
    fn crash_and_reopen(&mut self, crash: impl FnOnce(&MemFs)) -> Map {
        self.store = None;
        crash(&self.fs);
        let (store, report) = open_mem(&self.fs, self.max_file_bytes);
        let recovered = contents(&store);
        self.store = Some(store);
        self.report = report;
        recovered
    }

    /// Applies `op` to the store and the model; on an error the model is left as it was.
    fn apply(&mut self, op: &Op) -> io::Result<()> {
        match op {
            Op::Put(k, v) => self.write(
                |store| store.put(&[*k], v),
                |map| drop(map.insert(vec![*k], v.clone())),
            )?,
            Op::Remove(k) => self.write(
                |store| store.remove(&[*k]),
                |map| drop(map.remove(&[*k][..])),
            )?,
            Op::Sync => {
                self.store().sync()?;
                self.durable();
            }
            Op::Compact => {
                let stats = self.store().compact()?;
                assert_eq!(stats.records_kept, self.current.len() as u64);
                self.durable();
            }
            Op::Reopen => {
                let recovered = self.crash_and_reopen(|_| ());
                assert_eq!(recovered, self.current, "a clean reopen keeps everything");
                assert!(!self.report.lost_data(), "{:?}", self.report);
                // Opening syncs what the last run left unsynced.
                self.durable();
            }
            Op::Crash => {
                let recovered = self.crash_and_reopen(MemFs::crash);
                // Without torn writes, exactly the durable state is left.
                assert_eq!(
                    recovered, self.candidates[0],
                    "a crash keeps the durable state"
                );
                assert!(!self.report.lost_data(), "{:?}", self.report);
                self.current = recovered;
                self.durable();
            }
            Op::CrashTearing(seed) => {
                let recovered =
                    self.crash_and_reopen(|fs| fs.crash_tearing(|pending| seed % (pending + 1)));
                self.check_candidate(&recovered);
                self.current = recovered;
                self.durable();
            }
        }
        // Reads fail too once a failure is injected: that ends the history like a failed op.
        let store = self.store();
        let mut held = Map::new();
        for key in store.keys() {
            let value = store.get(&key)?.expect("a listed key has a value");
            held.insert(key, value);
        }
        assert_eq!(
            held, self.current,
            "the store holds the model's state after {op:?}"
        );
        Ok(())
    }

    fn check_candidate(&self, recovered: &Map) {
        assert!(
            self.candidates.contains(recovered),
            "recovered {recovered:?}, which is neither the durable state nor a later one: \
             {:?}",
            self.candidates
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// After any history of writes, syncs, compactions, reopens and crashes, the store holds
    /// the model's state; a crash leaves the durable state (exactly, or a later prefix of the
    /// writes if the crash tore the unsynced bytes).
    #[test]
    fn the_store_follows_a_map_through_crashes(
        max_file_bytes in 16u64..400,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut harness = Harness::new(max_file_bytes);
        for op in &ops {
            harness.apply(op).expect("no failure is injected");
        }
        let recovered = harness.crash_and_reopen(MemFs::crash);
        prop_assert_eq!(&recovered, &harness.candidates[0]);
    }
}

#[test]
fn a_crash_at_any_step_of_a_workload_recovers_a_state_between_the_last_sync_and_the_crash() {
    /// Operations this workload takes, with room to spare.
    const WORKLOAD_OPS_MAX: u64 = 5_000;
    let mut workload = Vec::new();
    for i in 0..60u8 {
        workload.push(Op::Put(i % 9, vec![i; usize::from(i % 23)]));
        if i % 5 == 0 {
            workload.push(Op::Remove(i % 7));
        }
        if i % 11 == 0 {
            workload.push(Op::Sync);
        }
        if i == 30 {
            workload.push(Op::Compact);
        }
    }
    for crash_after_ops in 0.. {
        assert!(
            crash_after_ops < WORKLOAD_OPS_MAX,
            "the workload never finished"
        );
        let mut harness = Harness::new(96);
        harness.fs.set_fail_after_ops(Some(crash_after_ops));
        let finished = workload.iter().all(|op| harness.apply(op).is_ok());
        let recovered = harness.crash_and_reopen(MemFs::crash);
        harness.check_candidate(&recovered);
        assert!(
            !harness.report.lost_data(),
            "crash after {crash_after_ops} operations: {:?}",
            harness.report
        );
        if finished {
            break;
        }
    }
}

/// A rollover killed at any point leaves the file it sealed with a recorded length once a newer
/// file exists: that file, cut at a record boundary while the node is down, is then noticed. (The
/// manifest used to get the length only after the new file existed, so a kill in between left a
/// sealed file whose boundary cut went unnoticed.)
#[test]
fn a_rollover_killed_anywhere_leaves_the_sealed_length_recorded() {
    const MAX_FILE_BYTES: u64 = 160;
    // The put that rolls over: the first one after which there are two data files.
    let rolls_over = {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES);
        (0..)
            .find(|&i| {
                store.put(&key(i), &value(i, 0)).unwrap();
                store.files.len() > 1
            })
            .unwrap()
    };
    assert!(rolls_over >= 2, "the first file holds several records");
    let mut killed_with_a_newer_file = 0;
    for ops_before_kill in 0..20 {
        let fs = MemFs::new();
        let (mut store, _) = open_mem(&fs, MAX_FILE_BYTES);
        for i in 0..rolls_over {
            store.put(&key(i), &value(i, 0)).unwrap();
            store.sync().unwrap();
        }
        let last_record_at = store.keydir[&key(rolls_over - 1)].offset;
        fs.set_fail_after_ops(Some(ops_before_kill));
        let _ = store.put(&key(rolls_over), &value(rolls_over, 0));
        drop(store);
        fs.set_fail_after_ops(None);
        fs.crash();
        if !fs.exists(&data_path(FILE_ID_FIRST + 1)) {
            continue; // Killed before the newer file: the first is still the newest.
        }
        killed_with_a_newer_file += 1;
        // While down, the sealed file loses its last record, cut exactly at its start.
        fs.tear(&data_path(FILE_ID_FIRST), last_record_at).unwrap();
        let (_, report) = open_mem(&fs, MAX_FILE_BYTES);
        assert!(
            report.lost_data(),
            "killed after {ops_before_kill} file operations of the rollover: {report:?}"
        );
    }
    assert!(killed_with_a_newer_file >= 3, "{killed_with_a_newer_file}");
}

/// Ids past the limit, with good checksums: a manifest whose first id is near `u32::MAX` made
/// recovery remove every data file as superseded, and one whose files were all gone left a store
/// with no id to go on from ("data file ids exhausted", at the first rollover or at once). Such a
/// manifest is now unreadable (a loss, but nothing removed), and a data file past the limit is
/// refused, named.
#[test]
fn file_ids_past_the_limit_are_damage_and_remove_nothing() {
    let fs = MemFs::new();
    {
        let (mut store, _) = open_mem(&fs, 1 << 20);
        store.put(b"k", b"v").unwrap();
        store.sync().unwrap();
    }
    let manifest = Path::new(DIR).join(MANIFEST_NAME);
    for (first, last) in [
        (u32::MAX, u32::MAX),
        (1, u32::MAX),
        (files::FILE_ID_MAX + 1, files::FILE_ID_MAX + 1),
    ] {
        let body = format!("dynamo-log-manifest 2\nfirst {first}\nlast {last}\n");
        let crc = crc32fast::hash(body.as_bytes());
        fs.write_durable(&manifest, format!("{body}crc {crc:08x}\n").as_bytes())
            .unwrap();
        let (store, report) = open_mem(&fs, 1 << 20);
        assert!(report.lost_data(), "{first}..={last}: {report:?}");
        assert_eq!(
            contents(&store),
            Map::from([(b"k".to_vec(), b"v".to_vec())])
        );
    }
    let data = files_of_kind(&fs, Path::new(DIR), FileKind::Data);
    let past = files::file_path(Path::new(DIR), files::FILE_ID_MAX + 1, FileKind::Data);
    fs.rename(&data[0], &past).unwrap();
    let err = LogStore::open(fs.clone(), Path::new(DIR), options(1 << 20), new_id).unwrap_err();
    assert!(
        err.to_string().contains(&past.display().to_string()),
        "{err}"
    );
    assert!(fs.exists(&past), "nothing removed");
}

/// The disk, a directory where recovery removes a file: the output of an unfinished compaction
/// (`NNNNNN.compact`) or a data file a committed compaction superseded, replaced by a directory
/// (a botched restore, an operator's mistake). Recovery refused with only "Is a directory (os
/// error 21)", which names nothing to look at; the refusal now names the path. With the
/// directory gone, the store opens with everything.
#[test]
fn a_directory_where_recovery_removes_a_file_is_named_in_the_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (mut store, _) = LogStore::open(StdFs, &dir, options(256), new_id).unwrap();
    for i in 0..20 {
        store.put(&key(i), &value(i, i)).unwrap();
    }
    store.compact().unwrap();
    let model = contents(&store);
    let first = *store.files.keys().next().unwrap();
    drop(store);
    for path in [
        file_path(&dir, 7, FileKind::Compact),
        file_path(&dir, first - 1, FileKind::Data),
    ] {
        std::fs::create_dir(&path).unwrap();
        let error = LogStore::open(StdFs, &dir, options(256), new_id)
            .map(|_| ())
            .unwrap_err();
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{}: {error}",
            path.display()
        );
        std::fs::remove_dir(&path).unwrap();
    }
    let (store, _) = LogStore::open(StdFs, &dir, options(256), new_id).unwrap();
    assert_eq!(contents(&store), model);
}

/// A store holding keys 0 and 1 rewritten six times over several files (and, with `compacted`, a
/// compaction's output and files written after it); returns what it holds and its file ids.
fn rewritten(fs: &MemFs, compacted: bool) -> (Map, Vec<u32>) {
    let (mut store, _) = open_mem(fs, 160);
    for version in 0..6 {
        if compacted && version == 3 {
            store.compact().unwrap();
        }
        store.put(&key(0), &value(0, version)).unwrap();
        store.put(&key(1), &value(1, version)).unwrap();
    }
    store.sync().unwrap();
    let ids = store.files.keys().copied().collect();
    (contents(&store), ids)
}

/// Hostile round 4, the damaged disk: a data file copied over another (a duplicated file, a
/// restore that mixed up files) or two files swapped, each byte of each file intact. An older
/// file copied over the newest replayed last, and took keys 0 and 1 back to their first
/// versions without a word: the node kept its actor id and would have issued the counters of the
/// versions it lost again, under new values (their dots already stood for others on the other
/// replicas). A file now names its id in its first record, and one that names another is
/// skipped whole as damage: a loss (the node takes a new actor id), and no stale record is
/// replayed.
#[test]
fn a_data_file_copied_or_swapped_over_another_is_a_loss_and_replays_nothing_stale() {
    for (compacted, swap) in [(false, false), (false, true), (true, false), (true, true)] {
        let fs = MemFs::new();
        let (model, ids) = rewritten(&fs, compacted);
        assert!(ids.len() >= 3, "several files: {ids:?}");
        let (older, newest) = (ids[0], *ids.last().unwrap());
        let (old_bytes, new_bytes) = (
            fs.read(&data_path(older)).unwrap(),
            fs.read(&data_path(newest)).unwrap(),
        );
        fs.write_durable(&data_path(newest), &old_bytes).unwrap();
        if swap {
            fs.write_durable(&data_path(older), &new_bytes).unwrap();
        }
        let what = format!("file {older} over {newest}, swap {swap}, compacted {compacted}");
        let (store, report) = open_mem(&fs, 160);
        assert!(report.lost_data(), "{what}: {report:?}");
        assert_eq!(
            report.skipped_ranges,
            1 + u64::from(swap),
            "{what}: {report:?}"
        );
        assert!(
            report.skipped[0].reason.contains("names another data file"),
            "{what}: {report:?}"
        );
        assert!(
            report.rewritten,
            "the copies are compacted away: {report:?}"
        );
        // What the store holds is what it would hold had the files written over been lost: no
        // record of a copy is replayed (an older version of key 0 or 1 taking the place of the
        // version of a file that remained).
        let lost = MemFs::new();
        let _ = rewritten(&lost, compacted);
        lose_file(&lost, &data_path(newest));
        if swap {
            lose_file(&lost, &data_path(older));
        }
        let (expected, _) = open_mem(&lost, 160);
        let held = contents(&store);
        assert_eq!(held, contents(&expected), "{what}");
        for (k, v) in &held {
            assert!(model.contains_key(k), "{what}: {k:?} {v:?}");
        }
        drop(store);
        assert_reopens_clean(&fs, 160, &held);
    }
}

/// A store written before file-start records named their file (a tombstone of the empty key)
/// still opens clean: its files cannot be checked, and are not taken for damage.
#[test]
fn files_that_start_with_the_older_file_start_record_open_clean() {
    let fs = MemFs::new();
    let (model, ids) = rewritten(&fs, false);
    for &id in &ids {
        let bytes = fs.read(&data_path(id)).unwrap();
        let mut old = encode_record(&[], None);
        old.extend_from_slice(&bytes[super::record::FILE_START_BYTES as usize..]);
        fs.write_durable(&data_path(id), &old).unwrap();
    }
    // The manifest of such a store recorded the lengths of its files as they were then.
    rewrite_as_version_1_manifest(&fs);
    let (store, report) = open_mem(&fs, 160);
    assert!(!report.lost_data(), "{report:?}");
    assert_eq!(contents(&store), model);
    drop(store);
    // And an older file copied over the newest is not noticed there: nothing names the files.
    let (first, newest) = (ids[0], *ids.last().unwrap());
    let old = fs.read(&data_path(first)).unwrap();
    fs.write_durable(&data_path(newest), &old).unwrap();
    let (_, report) = open_mem(&fs, 160);
    assert_eq!(report.skipped_ranges, 0, "{report:?}");
}

/// Hostile round 4, the damaged disk: a manifest with a good checksum that does not describe the
/// directory (another store's, copied or swapped in, or a later one of this store's restored
/// beside older files) names files from an id past every file there. Recovery took the files
/// below that id for ones a committed compaction superseded and removed them all: the store
/// came up empty, its data deleted for good on a file it could tell was not its own (the first
/// file it names is missing). Such a manifest is now unreadable damage: nothing is removed,
/// every file is replayed, and the loss is reported (the node takes a new actor id).
#[test]
fn a_manifest_that_names_none_of_the_files_removes_none() {
    let fs = MemFs::new();
    let (model, _) = filled(&fs, 160, 12);
    let ids = files_of_kind(&fs, Path::new(DIR), FileKind::Data);
    assert!(ids.len() >= 3, "several files: {ids:?}");
    let manifest_path = Path::new(DIR).join(MANIFEST_NAME);
    let body = "dynamo-log-manifest 1\nfirst 40\nlast 41\n".to_string();
    let foreign = format!("{body}crc {:08x}\n", crc32fast::hash(body.as_bytes()));
    fs.write_durable(&manifest_path, foreign.as_bytes())
        .unwrap();
    let (store, report) = open_mem(&fs, 160);
    assert_eq!(report.superseded_files_removed, 0, "{report:?}");
    assert_eq!(contents(&store), model, "{report:?}");
    assert!(report.lost_data(), "{report:?}");
    assert!(
        matches!(&report.manifest, ManifestState::Unreadable(reason) if reason.contains("40")),
        "{report:?}"
    );
    drop(store);
    assert_reopens_clean(&fs, 160, &model);
}

/// Rewrites every file of the store in `DIR` as the version before store ids wrote it: each file
/// starts with a file-start record naming its file id alone, and the manifest is version 2 (no
/// store line).
fn rewrite_as_before_store_ids(fs: &MemFs, ids: &[u32]) {
    for &id in ids {
        let bytes = fs.read(&data_path(id)).unwrap();
        let mut key = b"\0dynamo-file-start\0".to_vec();
        key.extend_from_slice(&id.to_le_bytes());
        let mut old = encode_record(&key, None);
        assert_eq!(old.len(), 36);
        old.extend_from_slice(&bytes[super::record::FILE_START_BYTES as usize..]);
        fs.write_durable(&data_path(id), &old).unwrap();
    }
    let manifest_path = Path::new(DIR).join(MANIFEST_NAME);
    let text = String::from_utf8(fs.read(&manifest_path).unwrap()).unwrap();
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("dynamo-log-manifest") && !l.starts_with("store "))
        .filter(|l| !l.starts_with("crc "))
        .map(|l| match l.strip_prefix("sealed ") {
            // The older file-start record was 8 bytes shorter.
            Some(sealed) => {
                let (id, len) = sealed.split_once(' ').unwrap();
                format!("sealed {id} {}\n", len.parse::<u64>().unwrap() - 8)
            }
            None => format!("{l}\n"),
        })
        .collect();
    let body = format!("dynamo-log-manifest 2\n{body}");
    let v2 = format!("{body}crc {:08x}\n", crc32fast::hash(body.as_bytes()));
    fs.write_durable(&manifest_path, v2.as_bytes()).unwrap();
}

/// The damaged disk: a data file copied in from another store's directory (another node's, or
/// this node's before its disk was lost) under the same name. Its first record named only its
/// file id, which matched, so its records were replayed as this store's, without a word: keys it
/// never held, and its own records of that file lost unnoticed. Every file-start record now names
/// the store too, and a file that names another is skipped whole as damage, named.
#[test]
fn a_data_file_of_another_store_under_the_same_name_is_damage() {
    for compacted in [false, true] {
        let ours = MemFs::new();
        let (_, ids) = rewritten(&ours, compacted);
        // Another store of the same shape, with other values and another id.
        let theirs = MemFs::new();
        let (mut other, _) =
            LogStore::open(theirs.clone(), Path::new(DIR), options(160), || 7).unwrap();
        for version in 0..6 {
            if compacted && version == 3 {
                other.compact().unwrap();
            }
            other.put(&key(0), b"theirs-0").unwrap();
            other.put(&key(1), b"theirs-1").unwrap();
        }
        other.sync().unwrap();
        drop(other);
        for &id in &ids {
            let copy = MemFs::new();
            let _ = rewritten(&copy, compacted);
            let Ok(bytes) = theirs.read(&data_path(id)) else {
                continue;
            };
            copy.write_durable(&data_path(id), &bytes).unwrap();
            let what = format!("their file {id} over ours, compacted {compacted}");
            let (store, report) = open_mem(&copy, 160);
            assert!(report.lost_data(), "{what}: {report:?}");
            assert_eq!(report.skipped_ranges, 1, "{what}: {report:?}");
            assert_eq!(report.skipped[0].file, data_path(id), "{what}");
            assert!(
                report.skipped[0].reason.contains("names another store"),
                "{what}: {report:?}"
            );
            assert!(
                report
                    .loss_summary()
                    .contains(&data_path(id).display().to_string()),
                "{what}: {}",
                report.loss_summary()
            );
            // Exactly as if our file had been lost: none of theirs is replayed.
            let lost = MemFs::new();
            let _ = rewritten(&lost, compacted);
            lose_file(&lost, &data_path(id));
            let (expected, _) = open_mem(&lost, 160);
            let held = contents(&store);
            assert_eq!(held, contents(&expected), "{what}");
            drop(store);
            assert_reopens_clean(&copy, 160, &held);
        }
    }
}

/// A store written before stores had ids (file-start records naming the file alone, a version 2
/// manifest) opens clean and keeps everything; it takes an id then, which the manifest and every
/// newer file name, and from then on a file of another store is noticed.
#[test]
fn a_store_written_before_store_ids_opens_clean_and_takes_an_id() {
    let fs = MemFs::new();
    let (mut model, ids) = rewritten(&fs, true);
    rewrite_as_before_store_ids(&fs, &ids);
    let (mut store, report) = open_mem(&fs, 160);
    assert_clean(&report);
    assert_eq!(contents(&store), model);
    let manifest =
        String::from_utf8(fs.read(&Path::new(DIR).join(MANIFEST_NAME)).unwrap()).unwrap();
    assert!(
        manifest.starts_with(&format!("dynamo-log-manifest 3\nstore {STORE_ID:016x}\n")),
        "{manifest}"
    );
    // Enough writes for files of the new format.
    for version in 0..6 {
        store.put(&key(2), &value(2, version)).unwrap();
    }
    store.sync().unwrap();
    model.insert(key(2), value(2, 5));
    let newest = store.active_id();
    assert!(newest > *ids.last().unwrap());
    drop(store);
    assert_reopens_clean(&fs, 160, &model);

    // A crash after a file named the new id and before the manifest did: the manifest still
    // names no store, and the files decide.
    let crashed = MemFs::new();
    let (model, ids) = rewritten(&crashed, false);
    rewrite_as_before_store_ids(&crashed, &ids);
    let newest = *ids.last().unwrap();
    let mut bytes = crashed.read(&data_path(newest)).unwrap();
    let start = super::record::file_start_record(0xfeed, newest);
    bytes.splice(..36, start);
    crashed.write_durable(&data_path(newest), &bytes).unwrap();
    let (store, report) = open_mem(&crashed, 160);
    assert_clean(&report);
    assert_eq!(contents(&store), model);
    assert_eq!(store.store_id, 0xfeed, "the id a file names is kept");
}

/// With no manifest to name the store, the store is the one its files name.
#[test]
fn without_a_manifest_the_files_name_the_store() {
    let fs = MemFs::new();
    let (model, _) = rewritten(&fs, false);
    fs.remove_file(&Path::new(DIR).join(MANIFEST_NAME)).unwrap();
    let (store, report) =
        LogStore::open(fs.clone(), Path::new(DIR), options(160), || 0xfeed).unwrap();
    assert_eq!(report.manifest, ManifestState::Missing);
    assert_eq!(report.skipped_ranges, 0, "{report:?}");
    assert_eq!(
        store.store_id, STORE_ID,
        "the id the files name, not a new one"
    );
    assert_eq!(contents(&store), model);
}

/// Every data file of the store in `DIR`, by path, with its bytes.
fn data_files(fs: &MemFs) -> BTreeMap<PathBuf, Vec<u8>> {
    files_of_kind(fs, Path::new(DIR), FileKind::Data)
        .into_iter()
        .map(|path| {
            let bytes = fs.read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Opens the store in `DIR` expecting a refusal; checks that it left every data file as it was
/// and returns its message.
#[track_caller]
fn open_refused(fs: &MemFs) -> String {
    let before = data_files(fs);
    let Err(e) = LogStore::open(fs.clone(), Path::new(DIR), options(160), new_id) else {
        panic!("opened: {before:?}");
    };
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    assert_eq!(data_files(fs), before, "no data file changed");
    e.to_string()
}

/// Hostile round 6, two faults at once: the manifest lost, and files of another store copied in
/// under lower ids than this store's (another node's, or this node's before its disk was lost).
/// With no manifest, the store was the one most files named, the oldest file's on a tie: two
/// foreign files beside this store's two won it, this store's own files were skipped as
/// damage ("names another store") and dropped by the compaction, and the foreign records were
/// served as this node's. Nothing tells the two stores' files apart here: the store now refuses
/// to open, naming each store's files, and changes none of them; once the foreign files are
/// moved out it opens with everything it held.
#[test]
fn without_a_manifest_files_of_two_stores_are_refused_by_name() {
    let ours = MemFs::new();
    let (model, _) = rewritten(&ours, true);
    // Compacted once more: few files, under ids past those of a younger store's files.
    let (mut store, _) = open_mem(&ours, 160);
    store.compact().unwrap();
    let ids: Vec<u32> = store.files.keys().copied().collect();
    drop(store);
    let theirs = MemFs::new();
    let (mut other, _) =
        LogStore::open(theirs.clone(), Path::new(DIR), options(160), || 7).unwrap();
    for version in 0..12 {
        other
            .put(&key(0), format!("theirs-{version}").as_bytes())
            .unwrap();
    }
    other.sync().unwrap();
    drop(other);
    let copied: Vec<u32> = data_files(&theirs)
        .keys()
        .filter_map(|path| parse_file_name(path).map(|(id, _)| id))
        .filter(|&id| id < ids[0])
        .take(ids.len())
        .collect();
    assert_eq!(
        copied.len(),
        ids.len(),
        "a tie: {copied:?} beside ours {ids:?}"
    );
    for &id in &copied {
        ours.write_durable(&data_path(id), &theirs.read(&data_path(id)).unwrap())
            .unwrap();
    }
    ours.remove_file(&Path::new(DIR).join(MANIFEST_NAME))
        .unwrap();

    let message = open_refused(&ours);
    assert!(message.contains("name 2 stores"), "{message}");
    assert!(message.contains(&format!("{STORE_ID:016x}")), "{message}");
    assert!(message.contains(&format!("{:016x}", 7)), "{message}");
    for id in copied.iter().chain(&ids) {
        let path = data_path(*id).display().to_string();
        assert!(message.contains(&path), "{path}: {message}");
    }

    for &id in &copied {
        lose_file(&ours, &data_path(id));
    }
    let (store, report) = open_mem(&ours, 160);
    assert_eq!(store.store_id, STORE_ID);
    assert_eq!(report.skipped_ranges, 0, "{report:?}");
    assert_eq!(contents(&store), model);
}

/// Hostile round 6, two faults at once: a store written before store ids (its manifest names
/// none), and a file of a newer store copied in over one of its older files. The only store
/// named, the foreign one's, became this store's, and the foreign file was replayed as its own
/// (a key it never held came back from it). No crash leaves a file naming a store below a file
/// of the older format (a store names its id only in files it starts after taking one): the
/// store now refuses to open, naming both, and changes neither.
#[test]
fn a_file_naming_a_store_below_a_file_of_the_older_format_is_refused() {
    let ours = MemFs::new();
    let (_, ids) = rewritten(&ours, false);
    rewrite_as_before_store_ids(&ours, &ids);
    let theirs = MemFs::new();
    let (mut other, _) =
        LogStore::open(theirs.clone(), Path::new(DIR), options(160), || 7).unwrap();
    for version in 0..12 {
        other
            .put(&key(9), format!("theirs-{version}").as_bytes())
            .unwrap();
    }
    other.sync().unwrap();
    drop(other);
    let middle = ids[1];
    assert!(middle < *ids.last().unwrap());
    let foreign = theirs.read(&data_path(middle)).unwrap();
    ours.write_durable(&data_path(middle), &foreign).unwrap();

    let message = open_refused(&ours);
    assert!(message.contains(&format!("{:016x}", 7)), "{message}");
    assert!(
        message.contains(&data_path(middle).display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&data_path(*ids.last().unwrap()).display().to_string()),
        "{message}"
    );
    assert!(message.contains("format before store ids"), "{message}");
}

/// What a crash in the first start after an upgrade leaves is still opened: files of the format
/// before store ids, then one naming the new id, under an old manifest (see the second half of
/// `a_store_written_before_store_ids_opens_clean_and_takes_an_id`), and the same without the
/// manifest.
#[test]
fn files_naming_a_store_above_files_of_the_older_format_are_opened() {
    for lose_manifest in [false, true] {
        let fs = MemFs::new();
        let (model, ids) = rewritten(&fs, false);
        rewrite_as_before_store_ids(&fs, &ids);
        let newest = *ids.last().unwrap();
        let mut bytes = fs.read(&data_path(newest)).unwrap();
        bytes.splice(..36, super::record::file_start_record(0xfeed, newest));
        fs.write_durable(&data_path(newest), &bytes).unwrap();
        if lose_manifest {
            fs.remove_file(&Path::new(DIR).join(MANIFEST_NAME)).unwrap();
        }
        let (store, report) = open_mem(&fs, 160);
        assert_eq!(report.skipped_ranges, 0, "{report:?}");
        assert_eq!(contents(&store), model);
        assert_eq!(store.store_id, 0xfeed);
    }
}
