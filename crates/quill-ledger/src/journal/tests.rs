//! Journal tests: round trips across segments, reopen, torn tails, corruption, poisoning.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::format::FRAME_HEADER_BYTES;
use super::segment::{data_path, index_path};
use super::*;

const STRAND: &str = "LxCf3qFhZDa3XTqbyhhH5P";

fn small_segments() -> JournalOptions {
    JournalOptions {
        segment_bytes_max: 400,
        segment_blocks_max: 8,
    }
}

/// A payload whose content and length depend on the sequence number (some are empty).
fn payload(sequence_no: u64) -> Vec<u8> {
    format!("block {sequence_no};")
        .repeat((sequence_no % 5) as usize)
        .into_bytes()
}

fn append_range(journal: &Journal, range: std::ops::Range<u64>) -> u64 {
    let payloads: Vec<Vec<u8>> = range.map(payload).collect();
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    journal.append(&slices).unwrap()
}

fn assert_blocks(journal: &Journal, blocks: u64) {
    assert_eq!(journal.len(), blocks);
    for sequence_no in 0..blocks {
        assert_eq!(
            journal.read(sequence_no).unwrap(),
            payload(sequence_no),
            "block {sequence_no}"
        );
    }
    assert!(matches!(
        journal.read(blocks),
        Err(LedgerError::UnknownBlock(_))
    ));
}

fn segment_firsts(dir: &Path) -> Vec<u64> {
    list_segments(&Storage::Os, dir).unwrap()
}

/// Byte offset of the frame at `position` in the segment starting at `first`.
fn frame_offset(dir: &Path, first: u64, position: u64) -> u64 {
    let index = std::fs::read(index_path(dir, first)).unwrap();
    format::decode_index(&index)[position as usize]
}

fn flip_byte(path: &Path, offset: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x40;
    file.write_all_at(&byte, offset).unwrap();
}

fn corrupted_block(result: Result<impl std::fmt::Debug>) -> u64 {
    match result {
        Err(LedgerError::Corrupted { block_address, .. }) => {
            assert_eq!(block_address.strand_id, STRAND);
            block_address.sequence_no
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// A synced journal of `blocks` blocks in one large segment.
/// A journal of `blocks` blocks in one segment, each appended and synced on its own (as
/// commits are), so every frame but the last is proven durable by the frames after it.
fn one_segment_journal(blocks: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    for sequence_no in 0..blocks {
        append_range(&journal, sequence_no..sequence_no + 1);
        journal.sync().unwrap();
    }
    let path = data_path(dir.path(), 0);
    (dir, path)
}

/// Power loss after an unsynced batch reached the disk out of order (a later frame without
/// an earlier one): nothing proves the missing frame was durable, so it is a torn tail.
#[test]
fn unsynced_batch_written_out_of_order_is_a_torn_tail() {
    let (dir, path) = one_segment_journal(3);
    let (journal, _) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    append_range(&journal, 3..8);
    drop(journal);
    let start = frame_offset(dir.path(), 0, 4);
    let end = frame_offset(dir.path(), 0, 5);
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0u8; (end - start) as usize], start)
        .unwrap();
    let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    assert_eq!(recovery.blocks, 4);
    assert!(recovery.torn_tail_bytes > 0);
    assert_blocks(&journal, 4);
}

/// Power loss at random moments on the simulated disk, with batches appended before the
/// previous one was synced and frames spanning several sectors (so an unsynced batch can
/// land out of order): every block appended before a successful sync survives, open never
/// reports corruption, and nothing served differs from what was appended.
#[test]
fn power_loss_keeps_synced_blocks_and_is_never_corruption() {
    use rand::{Rng, SeedableRng};

    use crate::storage::SimulatedDisk;

    let options = JournalOptions {
        segment_bytes_max: 16 << 10,
        segment_blocks_max: 64,
    };
    let dir = Path::new("/journal");
    let content = |sequence_no: u64, bytes: usize| -> Vec<u8> {
        let mut payload = format!("block {sequence_no} QJFR").into_bytes();
        payload.resize(bytes.max(payload.len()), (sequence_no % 251) as u8);
        payload
    };
    for seed in 0..300u64 {
        let disk = SimulatedDisk::new(seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let journal =
            Journal::create_with(&Storage::Simulated(disk.clone()), dir, STRAND, options).unwrap();
        if rng.gen_bool(0.5) {
            disk.cut_power_at_sync(rng.gen_range(0..40));
        } else {
            disk.cut_power_after(rng.gen_range(0..120));
        }
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        while payloads.len() < 300 && !disk.is_power_cut() {
            let batch: Vec<Vec<u8>> = (0..rng.gen_range(1..6))
                .map(|i| content(payloads.len() as u64 + i, rng.gen_range(0..1500)))
                .collect();
            let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            if journal.append(&slices).is_err() {
                break;
            }
            payloads.extend(batch);
            if rng.gen_bool(0.6) && journal.sync().is_ok() {
                synced = payloads.len();
            }
        }
        disk.cut_power();
        drop(journal);
        let rebooted = Storage::Simulated(disk.after_power_cut(seed).unwrap());
        let (journal, _) = Journal::open_with(&rebooted, dir, STRAND, options)
            .unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        let blocks = journal.len() as usize;
        assert!(
            blocks >= synced,
            "seed {seed}: {blocks} blocks, {synced} synced"
        );
        for (sequence_no, payload) in payloads.iter().enumerate().take(blocks) {
            assert_eq!(
                &journal.read(sequence_no as u64).unwrap(),
                payload,
                "seed {seed}"
            );
        }
        journal.verify_all(&mut |_, _| {}).unwrap();
    }
}

/// A document may hold bytes that look like frames: a copy of a real frame of the segment,
/// or a forged frame claiming later blocks were durable. Neither makes a torn tail look like
/// corruption.
#[test]
fn frame_like_bytes_in_a_payload_do_not_fool_the_scanner() {
    let (dir, path) = one_segment_journal(3);
    let start = frame_offset(dir.path(), 0, 2);
    let mut copied = vec![0u8; frame_bytes(payload(2).len()) as usize];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut copied, start)
        .unwrap();
    let mut forged = Vec::new();
    format::encode_frame(&mut forged, 0, 10, 10, b"forged");
    let document = [b"doc:".as_slice(), &copied, &forged].concat();
    let (journal, _) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    journal.append(&[&document]).unwrap();
    journal.sync().unwrap();
    drop(journal);
    // The document's frame is the unacknowledged tail; tear its header.
    flip_byte(&path, frame_offset(dir.path(), 0, 3));
    let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    assert_eq!(recovery.blocks, 3);
    assert_eq!(recovery.torn_tail_bytes, frame_bytes(document.len()));
    assert_blocks(&journal, 3);
}

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(journal.len(), 0);
    let mut next = 0;
    for batch in [1u64, 7, 3, 20, 1, 1, 12, 55] {
        assert_eq!(append_range(&journal, next..next + batch), next + batch);
        next += batch;
        journal.sync().unwrap();
    }
    assert_blocks(&journal, 100);
    let firsts = segment_firsts(dir.path());
    assert!(
        firsts.len() >= 13,
        "8 blocks per segment at most: {firsts:?}"
    );
    for pair in firsts.windows(2) {
        assert!(pair[1] - pair[0] <= 8);
    }
    drop(journal);
    let (journal, recovery) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: 0,
            blocks: 100
        }
    );
    assert_blocks(&journal, 100);
    assert_eq!(append_range(&journal, 100..130), 130);
    journal.sync().unwrap();
    journal.verify_all(&mut |_, _| {}).unwrap();
    assert_blocks(&journal, 130);
}

#[test]
fn segments_respect_the_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let options = JournalOptions {
        segment_bytes_max: 300,
        segment_blocks_max: 1000,
    };
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, options).unwrap();
    append_range(&journal, 0..60);
    journal.sync().unwrap();
    let firsts = segment_firsts(dir.path());
    assert!(firsts.len() > 3);
    for first in firsts {
        let bytes = std::fs::metadata(data_path(dir.path(), first))
            .unwrap()
            .len();
        assert!(bytes <= 300, "segment {first} is {bytes} bytes");
    }
    // One frame larger than the segment limit still fits in a segment of its own.
    let large = vec![7u8; 1000];
    assert_eq!(journal.append(&[&large, &large]).unwrap(), 62);
    assert_eq!(journal.read(61).unwrap(), large);
}

#[test]
fn scan_visits_in_order_from_any_point_and_stops_on_false() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..50);
    for from in [0u64, 1, 7, 8, 9, 33, 49, 50] {
        let mut seen = Vec::new();
        journal
            .scan(from, &mut |sequence_no, bytes| {
                assert_eq!(bytes, payload(sequence_no).as_slice());
                seen.push(sequence_no);
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, (from..50).collect::<Vec<_>>());
    }
    let mut visited = 0;
    journal
        .scan(3, &mut |_, _| {
            visited += 1;
            Ok(visited < 4)
        })
        .unwrap();
    assert_eq!(visited, 4);
    assert!(matches!(
        journal.scan(51, &mut |_, _| Ok(true)),
        Err(LedgerError::UnknownBlock(_))
    ));
}

#[test]
fn torn_tail_at_every_byte_of_the_last_frame_is_cut() {
    let (template, path) = one_segment_journal(5);
    let last_start = frame_offset(template.path(), 0, 4);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        file_bytes - last_start,
        (FRAME_HEADER_BYTES + payload(4).len()) as u64
    );
    for cut in last_start..file_bytes {
        let (dir, path) = one_segment_journal(5);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
        assert_eq!(
            recovery,
            JournalRecovery {
                torn_tail_bytes: cut - last_start,
                blocks: 4
            },
            "cut at {cut}"
        );
        assert_blocks(&journal, 4);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last_start);
        assert_eq!(append_range(&journal, 4..6), 6);
        journal.sync().unwrap();
        drop(journal);
        let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
        assert_eq!(recovery.torn_tail_bytes, 0);
        assert_blocks(&journal, 6);
    }
}

#[test]
fn bad_checksum_on_the_final_frame_is_a_torn_tail() {
    let (dir, path) = one_segment_journal(5);
    let last_start = frame_offset(dir.path(), 0, 4);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    flip_byte(&path, file_bytes - 1);
    let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: file_bytes - last_start,
            blocks: 4
        }
    );
    assert_blocks(&journal, 4);
}

#[test]
fn zero_filled_or_garbage_tail_is_cut() {
    for tail in [
        vec![0u8; 4096],
        b"QJFR garbage that is not a frame".to_vec(),
    ] {
        let (dir, path) = one_segment_journal(5);
        let file_bytes = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&tail, file_bytes)
            .unwrap();
        let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
        // Zeros are the space a crashed journal had written ahead: dropped, not torn.
        let torn = if tail.iter().all(|b| *b == 0) {
            0
        } else {
            tail.len() as u64
        };
        assert_eq!(
            recovery,
            JournalRecovery {
                torn_tail_bytes: torn,
                blocks: 5
            }
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            file_bytes,
            "cut back to the last frame"
        );
        assert_blocks(&journal, 5);
    }
}

#[test]
fn appends_overwrite_space_written_ahead_and_close_trims_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    journal.append(&[b"one", b"two"]).unwrap();
    journal.sync().unwrap();
    let path = segment::data_path(dir.path(), 0);
    let written_ahead = std::fs::metadata(&path).unwrap().len();
    assert!(
        written_ahead >= PREWRITE_BYTES,
        "zeros written ahead: {written_ahead}"
    );
    journal.append(&[b"three"]).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        written_ahead,
        "no growth while inside"
    );
    drop(journal);
    let trimmed = std::fs::metadata(&path).unwrap().len();
    assert!(trimmed < 1024, "a clean close trims the zeros: {trimmed}");
    // A crash leaves the zeros: simulate by re-extending, then open sees no torn tail.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(trimmed + 8192)
        .unwrap();
    let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: 0,
            blocks: 3
        }
    );
    assert_eq!(journal.read(2).unwrap(), b"three");
}

#[test]
fn flipped_byte_in_a_middle_frame_of_the_last_segment_is_corruption() {
    for position in [0u64, 2, 3] {
        let (dir, path) = one_segment_journal(5);
        // Byte 9 is inside the sequence number field: present even for empty payloads.
        flip_byte(&path, frame_offset(dir.path(), 0, position) + 9);
        assert_eq!(
            corrupted_block(Journal::open(&Storage::Os, dir.path(), STRAND)),
            position
        );
    }
}

#[test]
fn flipped_byte_in_an_earlier_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..40);
    journal.sync().unwrap();
    drop(journal);
    let firsts = segment_firsts(dir.path());
    let (second, third) = (firsts[1], firsts[2]);
    let victim = second + 1;
    flip_byte(
        &data_path(dir.path(), second),
        frame_offset(dir.path(), second, 1) + 9,
    );

    // Open trusts a consistent sealed segment (O(1) check); the damage is caught on read
    // and by verify_all.
    let (journal, _) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(corrupted_block(journal.read(victim)), victim);
    assert_eq!(journal.read(victim - 1).unwrap(), payload(victim - 1));
    assert_eq!(corrupted_block(journal.verify_all(&mut |_, _| {})), victim);
    assert_eq!(
        corrupted_block(journal.scan(0, &mut |_, _| Ok(true))),
        victim
    );
    drop(journal);

    // Without its index the segment is rescanned on open, and open refuses it.
    std::fs::remove_file(index_path(dir.path(), second)).unwrap();
    assert_eq!(
        corrupted_block(Journal::open(&Storage::Os, dir.path(), STRAND)),
        victim
    );

    // Damage to the last frame of a sealed segment fails its O(1) check, then its rescan.
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..40);
    journal.sync().unwrap();
    drop(journal);
    let last_of_second = third - 1;
    let offset = frame_offset(dir.path(), second, last_of_second - second);
    flip_byte(&data_path(dir.path(), second), offset + 9);
    assert_eq!(
        corrupted_block(Journal::open(&Storage::Os, dir.path(), STRAND)),
        last_of_second
    );
}

#[test]
fn bit_rot_after_open_is_caught_on_read() {
    let (dir, path) = one_segment_journal(5);
    let (journal, _) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    flip_byte(&path, frame_offset(dir.path(), 0, 3) + 2);
    assert_eq!(corrupted_block(journal.read(3)), 3);
    assert_eq!(journal.read(4).unwrap(), payload(4));
}

#[test]
fn damaged_index_is_caught_on_read_and_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..30);
    journal.sync().unwrap();
    let firsts = segment_firsts(dir.path());
    // Point entry 1 of the first segment at entry 2's frame.
    let index = OpenOptions::new()
        .read(true)
        .write(true)
        .open(index_path(dir.path(), 0))
        .unwrap();
    let wrong = frame_offset(dir.path(), 0, 2);
    index.write_all_at(&wrong.to_le_bytes(), 8).unwrap();
    assert_eq!(corrupted_block(journal.read(1)), 1);
    assert_eq!(corrupted_block(journal.verify_all(&mut |_, _| {})), 1);
    drop(journal);

    // Sealed segment: truncated index (fails the O(1) check) and garbage index are rebuilt.
    index.set_len(12).unwrap();
    std::fs::write(index_path(dir.path(), firsts[1]), b"garbage!").unwrap();
    // Last segment: index missing entirely.
    std::fs::remove_file(index_path(dir.path(), *firsts.last().unwrap())).unwrap();
    let (journal, recovery) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: 0,
            blocks: 30
        }
    );
    assert_blocks(&journal, 30);
    journal.verify_all(&mut |_, _| {}).unwrap();
}

#[test]
fn missing_or_foreign_segments_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..30);
    journal.sync().unwrap();
    drop(journal);
    match Journal::open(&Storage::Os, dir.path(), "AnotherStrandId") {
        Err(LedgerError::Corrupted {
            block_address,
            detail,
        }) => {
            assert_eq!(block_address.sequence_no, 0);
            assert!(detail.contains(STRAND), "{detail}");
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    let firsts = segment_firsts(dir.path());
    std::fs::remove_file(data_path(dir.path(), firsts[1])).unwrap();
    assert_eq!(
        corrupted_block(Journal::open(&Storage::Os, dir.path(), STRAND)),
        firsts[1]
    );
}

#[test]
fn torn_header_of_a_new_last_segment_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..8);
    journal.sync().unwrap();
    drop(journal);
    // A crash right after the successor's file was created, before its header landed.
    std::fs::write(data_path(dir.path(), 8), [0u8; 50]).unwrap();
    let (journal, recovery) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: 50,
            blocks: 8
        }
    );
    assert_eq!(append_range(&journal, 8..20), 20);
    journal.sync().unwrap();
    assert_blocks(&journal, 20);
}

#[test]
fn create_and_open_check_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Journal::open(&Storage::Os, dir.path(), STRAND),
        Err(LedgerError::UnknownLedger(_))
    ));
    let journal = Journal::create(&Storage::Os, &dir.path().join("nested"), STRAND).unwrap();
    drop(journal);
    assert!(matches!(
        Journal::create(&Storage::Os, &dir.path().join("nested"), STRAND),
        Err(LedgerError::LedgerExists(_))
    ));
    assert!(matches!(
        Journal::create(&Storage::Os, dir.path(), ""),
        Err(LedgerError::InvalidInput(_))
    ));
    let long = "x".repeat(65);
    assert!(matches!(
        Journal::create(&Storage::Os, dir.path(), &long),
        Err(LedgerError::InvalidInput(_))
    ));
    let bad_options = JournalOptions {
        segment_bytes_max: 0,
        segment_blocks_max: 1,
    };
    assert!(matches!(
        Journal::create_with(&Storage::Os, dir.path(), STRAND, bad_options),
        Err(LedgerError::InvalidInput(_))
    ));
}

#[test]
fn oversized_payload_is_refused_without_poisoning() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    let huge = vec![0u8; FRAME_PAYLOAD_MAX_BYTES + 1];
    let result = journal.append(&[b"fine", &huge]);
    assert!(matches!(
        result,
        Err(LedgerError::LimitExceeded {
            limit: "FRAME_PAYLOAD_MAX_BYTES",
            ..
        })
    ));
    assert_eq!(journal.len(), 0);
    assert_eq!(journal.append(&[b"fine"]).unwrap(), 1);
    assert_eq!(journal.append(&[]).unwrap(), 1);
}

#[test]
fn failed_write_poisons_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    append_range(&journal, 0..3);
    journal.fail_next_io.store(true, Ordering::SeqCst);
    assert!(matches!(
        journal.append(&[b"lost"]),
        Err(LedgerError::Io(_))
    ));
    assert!(matches!(
        journal.append(&[b"again"]),
        Err(LedgerError::ReadOnly(_))
    ));
    assert!(matches!(journal.sync(), Err(LedgerError::ReadOnly(_))));
    assert_blocks(&journal, 3);
}

#[test]
fn failed_sync_poisons_the_journal_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    append_range(&journal, 0..3);
    journal.fail_next_io.store(true, Ordering::SeqCst);
    assert!(matches!(journal.sync(), Err(LedgerError::Io(_))));
    assert!(matches!(journal.sync(), Err(LedgerError::ReadOnly(_))));
    assert!(matches!(
        journal.append(&[b"x"]),
        Err(LedgerError::ReadOnly(_))
    ));
    drop(journal);
    let (journal, _) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    assert_eq!(append_range(&journal, 3..4), 4);
}

#[test]
fn failed_roll_over_poisons_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..8);
    journal.fail_next_io.store(true, Ordering::SeqCst);
    assert!(journal.append(&[b"needs a new segment"]).is_err());
    assert!(matches!(
        journal.append(&[b"x"]),
        Err(LedgerError::ReadOnly(_))
    ));
    assert_blocks(&journal, 8);
}

#[test]
fn verify_all_reports_progress_to_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..50);
    let mut last = (0, 0);
    journal
        .verify_all(&mut |done, total| last = (done, total))
        .unwrap();
    assert_eq!(last, (50, 50));
}

#[test]
fn readers_run_concurrently_with_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let journal =
        Arc::new(Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap());
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let journal = Arc::clone(&journal);
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while journal.len() < 200 {
                    let len = journal.len();
                    for sequence_no in len.saturating_sub(5)..len {
                        assert_eq!(journal.read(sequence_no).unwrap(), payload(sequence_no));
                        checked += 1;
                    }
                }
                checked
            })
        })
        .collect();
    for start in (0..200).step_by(4) {
        append_range(&journal, start..start + 4);
    }
    journal.sync().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    assert_blocks(&journal, 200);
}

#[test]
fn journal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Journal>();
}

/// Reopen after a crash must take at most a few seconds with a million blocks: open checks
/// sealed segments in O(1) and scans only the last one. Slow to set up (≈300 MB written), so
/// run on demand: `cargo test -p quill-ledger --lib million -- --ignored`.
#[test]
#[ignore]
fn open_of_a_million_block_journal_is_fast() {
    const BLOCKS: u64 = 1_000_000;
    const BATCH: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create(&Storage::Os, dir.path(), STRAND).unwrap();
    let block = vec![0xA5u8; 300];
    let batch: Vec<&[u8]> = (0..BATCH).map(|_| block.as_slice()).collect();
    while journal.len() < BLOCKS {
        journal.append(&batch).unwrap();
    }
    journal.sync().unwrap();
    let blocks = journal.len();
    drop(journal);
    let started = std::time::Instant::now();
    let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        recovery,
        JournalRecovery {
            torn_tail_bytes: 0,
            blocks
        }
    );
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "open took {elapsed:?}"
    );
    for sequence_no in [0, 1, blocks / 3, blocks / 2, blocks - 1] {
        assert_eq!(journal.read(sequence_no).unwrap(), block);
    }
    eprintln!("open of {blocks} blocks took {elapsed:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever single byte of the last segment is damaged, open either refuses with
    /// `Corrupted` or recovers a prefix missing at most the final block, and never serves a
    /// block that differs from what was appended.
    #[test]
    fn damage_anywhere_is_detected_or_cut(blocks in 1u64..12, position in 0.0f64..1.0, flip in 1u8..=255) {
        let (dir, path) = one_segment_journal(blocks);
        let file_bytes = std::fs::metadata(&path).unwrap().len();
        let offset = ((file_bytes as f64) * position) as u64;
        let last_start = frame_offset(dir.path(), 0, blocks - 1);
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, offset).unwrap();
        file.write_all_at(&[byte[0] ^ flip], offset).unwrap();
        match Journal::open(&Storage::Os, dir.path(), STRAND) {
            Ok((journal, recovery)) => {
                proptest::prop_assert!(offset >= last_start, "damage at {offset} before the last frame was cut");
                proptest::prop_assert_eq!(recovery.blocks, blocks - 1);
                for sequence_no in 0..recovery.blocks {
                    proptest::prop_assert_eq!(journal.read(sequence_no).unwrap(), payload(sequence_no));
                }
            }
            Err(LedgerError::Corrupted { .. }) => {}
            Err(other) => proptest::prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// Cutting the last segment at any byte recovers exactly the complete frames before the cut.
    #[test]
    fn a_cut_anywhere_recovers_the_complete_prefix(blocks in 1u64..12, position in 0.0f64..1.0) {
        let (dir, path) = one_segment_journal(blocks);
        let file_bytes = std::fs::metadata(&path).unwrap().len();
        let header_bytes = SEGMENT_HEADER_BYTES as u64;
        let cut = header_bytes + (((file_bytes - header_bytes) as f64) * position) as u64;
        let complete = (0..blocks)
            .take_while(|&sequence_no| {
                let end = frame_offset(dir.path(), 0, sequence_no) + frame_bytes(payload(sequence_no).len());
                end <= cut
            })
            .count() as u64;
        OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let (journal, recovery) = Journal::open(&Storage::Os, dir.path(), STRAND).unwrap();
        proptest::prop_assert_eq!(recovery.blocks, complete);
        assert_blocks(&journal, complete);
    }
}

/// The payloads the rewrite tests expect: `payload`, except the rewritten blocks.
fn assert_rewritten(journal: &Journal, blocks: u64, rewritten: &[(u64, &[u8])]) {
    assert_eq!(journal.len(), blocks);
    for sequence_no in 0..blocks {
        let expected = rewritten
            .iter()
            .find(|(seq, _)| *seq == sequence_no)
            .map_or_else(|| payload(sequence_no), |(_, bytes)| bytes.to_vec());
        assert_eq!(
            journal.read(sequence_no).unwrap(),
            expected,
            "block {sequence_no}"
        );
    }
    journal.verify_all(&mut |_, _| {}).unwrap();
}

#[test]
fn rewrite_replaces_one_frame_in_sealed_and_last_segments() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..20);
    journal.sync().unwrap();
    let firsts = segment_firsts(dir.path());
    let last_first = *firsts.last().unwrap();
    // A sealed segment's middle frame (shorter), the last segment's last frame (longer), and
    // an empty payload.
    let rewritten: [(u64, &[u8]); 3] = [
        (3, b"short"),
        (19, b"a longer payload than before"),
        (9, b""),
    ];
    for (sequence_no, bytes) in rewritten {
        journal.rewrite(sequence_no, bytes).unwrap();
    }
    assert_rewritten(&journal, 20, &rewritten);
    assert!(19 >= last_first);
    // Appends continue after a rewrite of the last segment.
    append_range(&journal, 20..25);
    journal.sync().unwrap();
    assert_eq!(journal.read(24).unwrap(), payload(24));
    drop(journal);
    let (journal, recovery) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert_eq!(recovery.torn_tail_bytes, 0);
    assert_rewritten(&journal, 25, &rewritten);
    assert!(
        !String::from_utf8_lossy(&std::fs::read(data_path(dir.path(), 0)).unwrap())
            .contains("block 3;")
    );
    assert!(matches!(
        journal.rewrite(99, b"x"),
        Err(LedgerError::UnknownBlock(_))
    ));
}

#[test]
fn interrupted_rewrites_leave_a_readable_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::create_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    append_range(&journal, 0..12);
    journal.sync().unwrap();
    // A failure before the rename leaves everything as it was, and the journal writable.
    journal.fail_next_io.store(true, Ordering::SeqCst);
    assert!(matches!(
        journal.rewrite(2, b"new"),
        Err(LedgerError::Io(_))
    ));
    assert_blocks(&journal, 12);
    journal.rewrite(2, b"new").unwrap();
    drop(journal);
    // A crash after the data file was renamed but before the index was: the stale index
    // is rebuilt on open. A crash before any rename leaves replacement files behind, which
    // open removes.
    let index = index_path(dir.path(), 0);
    let shrink = (payload(2).len() - b"new".len()) as u64;
    let stale: Vec<u64> = format::decode_index(&std::fs::read(&index).unwrap())
        .into_iter()
        .enumerate()
        .map(|(position, offset)| {
            if position > 2 {
                offset + shrink
            } else {
                offset
            }
        })
        .collect();
    let mut bytes = Vec::new();
    format::encode_index(&stale, &mut bytes);
    std::fs::write(&index, bytes).unwrap();
    let leftover = dir.path().join("segment-00000000000000000008.qjs.rewrite");
    std::fs::write(&leftover, b"half written").unwrap();
    let (journal, _) =
        Journal::open_with(&Storage::Os, dir.path(), STRAND, small_segments()).unwrap();
    assert!(!leftover.exists());
    assert_rewritten(&journal, 12, &[(2, b"new")]);
}
