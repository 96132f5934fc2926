//! The journal: the ledger's source of truth, an append-only sequence of blocks (opaque byte
//! payloads, sequence numbers 0, 1, 2, …) in checksummed frames.
//!
//! Owns the segment files of one strand in one directory. The committer appends a batch of
//! blocks ([`Journal::append`]: one buffer, one write per segment touched) and then makes it
//! durable with one fdatasync ([`Journal::sync`]); only after `sync` returns may a commit be
//! acknowledged. Any number of threads read blocks concurrently with positioned reads
//! ([`Journal::read`], [`Journal::scan`]); they never block each other and hold a lock only
//! to copy a segment's bounds.
//!
//! One exception to append-only: [`Journal::rewrite`] replaces one block's payload (used by
//! redaction, which keeps every hash of the block) by writing a checked copy of its segment
//! and renaming it over the original.
//!
//! Layout: see [`format`](mod@format) for the byte map. The journal is split into segment files (a new one
//! once `segment_bytes_max` or `segment_blocks_max` is reached) so no file grows without bound;
//! each has an offset index (8 bytes per block) so a read by sequence number needs no RAM per
//! block: one read of the index, one read of the frame.
//!
//! Durability and failure rules:
//! - When a segment is full it is sealed (data and index fdatasynced) before its successor is
//!   created (header fdatasynced, directory fsynced). So only the last segment can hold crash
//!   damage; open scans it fully and checks sealed segments in O(1) (see [`segment`]).
//! - Torn tail versus corruption. Only durable (fsynced) data can be corrupt; anything
//!   written after the last fsync may reach the disk in part and in any order after a power
//!   loss (a later page of an unacknowledged batch without an earlier one). Each frame
//!   records `durable_blocks`, how many blocks its writer knew were fsynced (the length at
//!   the last successful [`Journal::sync`], or at open). On open, the first bad frame of the
//!   last segment, block `n`, is corruption only if some later valid frame of the segment
//!   records `durable_blocks > n`: that frame's writer knew block `n` was on disk. Otherwise
//!   block `n` was never known durable, so never acknowledged, and everything from it on is
//!   a torn tail: cut off on open and reported. Frame-like bytes inside a document cannot
//!   fake that proof: frame checksums include a random per-segment salt (see
//!   [`format`](mod@format)).
//! - Any bad frame elsewhere (a sealed segment, or on read, or in [`Journal::verify_all`]) is
//!   `LedgerError::Corrupted` naming the first bad block: corruption is detected, never served
//!   or skipped.
//! - After a failed write or fsync the journal is poisoned: `append` and `sync` answer
//!   `LedgerError::ReadOnly` until it is reopened. Retrying an fsync is unsafe: after a failure
//!   the kernel may have dropped the dirty pages and a retry would falsely succeed.
//!
//! Remaining limit: damage to the last acknowledged batch when nothing written after it
//! reached the disk has no later frame to prove it durable, so it is cut as a torn tail.
//! Telling it apart would take a write after every fsync.

mod format;
pub(crate) mod postgres;
mod segment;
mod store;

pub(crate) use store::JournalStore;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use format::{
    check_frame, encode_frame, frame_bytes, strand_id_fits, FRAME_HEADER_BYTES, INDEX_ENTRY_BYTES,
    SEGMENT_HEADER_BYTES,
};
use segment::{
    build_rewrite, create_segment, open_sealed, parse_data_name, read_index_entries, recover_last,
    verify_header, CursorStep, FrameCursor, Place, SegmentView, REWRITE_SUFFIX,
    SEGMENT_BLOCKS_LIMIT, SEGMENT_BYTES_LIMIT,
};

use crate::limits::{FRAME_PAYLOAD_MAX_BYTES, GROUP_COMMIT_MAX};
use crate::storage::Storage;
use crate::{LedgerError, Result};

/// Most blocks one `append` takes: bounds the batch buffer. Far above a group commit.
pub(crate) const APPEND_BATCH_BLOCKS_MAX: usize = 1 << 16;
/// Most segment files a journal may have: bounds the open-time directory listing and the
/// in-memory segment table (about 100 bytes per segment).
pub(crate) const JOURNAL_SEGMENTS_MAX: usize = 1 << 20;
/// Zeros written ahead of the journal's end at a time: one slower fsync per this many bytes
/// of blocks, in exchange for cheaper fsyncs for all the commits that fill them.
const PREWRITE_BYTES: u64 = 1 << 20;
/// `verify_all` reports progress at least this often (in blocks).
const VERIFY_PROGRESS_EVERY_BLOCKS: u64 = 4096;

const _: () = assert!(GROUP_COMMIT_MAX <= APPEND_BATCH_BLOCKS_MAX);

/// When to start a new segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JournalOptions {
    /// A segment takes no frame that would push it past this size, unless it is empty (one
    /// frame always fits, so a segment may exceed this by at most one frame).
    pub segment_bytes_max: u64,
    /// Most frames per segment; bounds the segment's offset index.
    pub segment_blocks_max: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            segment_bytes_max: 64 << 20,
            segment_blocks_max: 1 << 20,
        }
    }
}

impl JournalOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_bytes_max == 0 || self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return Err(LedgerError::InvalidInput(format!(
                "segment_bytes_max must be in 1..={SEGMENT_BYTES_LIMIT}, got {}",
                self.segment_bytes_max
            )));
        }
        if self.segment_blocks_max == 0 || self.segment_blocks_max > SEGMENT_BLOCKS_LIMIT {
            return Err(LedgerError::InvalidInput(format!(
                "segment_blocks_max must be in 1..={SEGMENT_BLOCKS_LIMIT}, got {}",
                self.segment_blocks_max
            )));
        }
        Ok(())
    }
}

/// What `Journal::open` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalRecovery {
    /// Bytes of an incomplete last write that were cut off (0 after a clean shutdown).
    pub torn_tail_bytes: u64,
    /// Blocks in the journal after recovery.
    pub blocks: u64,
}

/// The journal of one strand. `Send + Sync`; all methods take `&self`.
#[derive(Debug)]
pub(crate) struct Journal {
    storage: Storage,
    dir: PathBuf,
    strand_id: String,
    options: JournalOptions,
    /// Serialises `append` and `sync`. Invariant: once `poisoned` is set it stays set.
    writer: Mutex<WriterState>,
    /// What readers see. Invariant: never empty; segments are contiguous (each one's
    /// `first_sequence_no` is the previous one's `end_sequence_no`), every segment but the
    /// last is sealed (fsynced), and the last one's end is `len()`.
    published: RwLock<Vec<SegmentView>>,
    /// Test hook: fail the next write or fsync, to exercise poisoning.
    #[cfg(test)]
    fail_next_io: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct WriterState {
    /// Why writes are refused, after a failed write or fsync.
    poisoned: Option<String>,
    /// Blocks known to be on disk: the length at the last successful sync, or at open. Each
    /// frame records it (see the module docs).
    durable_blocks: u64,
}

/// Frames of one batch bound for one segment, encoded but not yet written.
#[derive(Debug, Default)]
struct PendingWrite {
    data: Vec<u8>,
    index: Vec<u8>,
    blocks: u64,
}

impl PendingWrite {
    fn push(&mut self, segment: &SegmentView, durable_blocks: u64, payload: &[u8]) {
        let offset = segment.data_bytes + self.data.len() as u64;
        self.index.extend_from_slice(&offset.to_le_bytes());
        encode_frame(
            &mut self.data,
            segment.salt,
            segment.end_sequence_no() + self.blocks,
            durable_blocks,
            payload,
        );
        self.blocks += 1;
    }
}

impl Journal {
    /// Creates an empty journal in `dir` (created if absent). Fails with `LedgerExists` if
    /// `dir` already holds journal segments.
    pub fn create(storage: &Storage, dir: &Path, strand_id: &str) -> Result<Journal> {
        Journal::create_with(storage, dir, strand_id, JournalOptions::default())
    }

    /// [`Journal::create`] with explicit segment sizes.
    pub fn create_with(
        storage: &Storage,
        dir: &Path,
        strand_id: &str,
        options: JournalOptions,
    ) -> Result<Journal> {
        check_strand_id(strand_id)?;
        options.validate()?;
        storage.create_dir_all(dir)?;
        // The directory may have just been created: make its entry durable too.
        storage.sync_parent_dir(dir)?;
        if !list_segments(storage, dir)?.is_empty() {
            return Err(LedgerError::LedgerExists(dir.display().to_string()));
        }
        let place = Place {
            storage,
            dir,
            strand_id,
        };
        let first = create_segment(place, 0)?;
        Ok(Journal::from_segments(place, options, vec![first]))
    }

    /// Opens the journal in `dir`, cutting a torn tail if the last write was interrupted.
    pub fn open(
        storage: &Storage,
        dir: &Path,
        strand_id: &str,
    ) -> Result<(Journal, JournalRecovery)> {
        Journal::open_with(storage, dir, strand_id, JournalOptions::default())
    }

    /// [`Journal::open`] with explicit segment sizes (they apply to segments created from
    /// now on; existing segments are read whatever their size).
    pub fn open_with(
        storage: &Storage,
        dir: &Path,
        strand_id: &str,
        options: JournalOptions,
    ) -> Result<(Journal, JournalRecovery)> {
        check_strand_id(strand_id)?;
        options.validate()?;
        let place = Place {
            storage,
            dir,
            strand_id,
        };
        remove_unfinished_rewrites(storage, dir)?;
        let firsts = list_segments(storage, dir)?;
        let Some((&last_first, sealed_firsts)) = firsts.split_last() else {
            return Err(LedgerError::UnknownLedger(dir.display().to_string()));
        };
        let mut segments = Vec::with_capacity(firsts.len());
        let mut expected_first = 0;
        for &first in sealed_firsts {
            check_continuity(place, expected_first, first)?;
            let view = open_sealed(place, first)?;
            expected_first = view.end_sequence_no();
            segments.push(view);
        }
        check_continuity(place, expected_first, last_first)?;
        let last = recover_last(place, last_first)?;
        let recovery = JournalRecovery {
            torn_tail_bytes: last.torn_tail_bytes,
            blocks: last.view.end_sequence_no(),
        };
        segments.push(last.view);
        Ok((Journal::from_segments(place, options, segments), recovery))
    }

    fn from_segments(
        place: Place<'_>,
        options: JournalOptions,
        segments: Vec<SegmentView>,
    ) -> Journal {
        assert!(!segments.is_empty(), "a journal always has a segment");
        let durable_blocks = segments.last().map_or(0, SegmentView::end_sequence_no);
        Journal {
            storage: place.storage.clone(),
            dir: place.dir.to_owned(),
            strand_id: place.strand_id.to_owned(),
            options,
            writer: Mutex::new(WriterState {
                poisoned: None,
                durable_blocks,
            }),
            published: RwLock::new(segments),
            #[cfg(test)]
            fail_next_io: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Number of blocks, which is also the next sequence number.
    pub fn len(&self) -> u64 {
        self.last_segment().end_sequence_no()
    }

    /// Appends one frame per payload for sequence numbers `len()..`, and returns the new
    /// `len()`. Readers see the blocks at once, but they are NOT durable until [`Journal::sync`]
    /// returns.
    pub fn append(&self, payloads: &[&[u8]]) -> Result<u64> {
        let mut writer = self.lock_writer()?;
        writer.check_writable()?;
        check_batch(payloads)?;
        let result = self.append_locked(writer.durable_blocks, payloads);
        if let Err(error) = &result {
            writer.poison("append", error);
        }
        result
    }

    /// Makes every appended block durable (fdatasync of the last segment; earlier segments
    /// were synced when sealed). One fdatasync per call.
    pub fn sync(&self) -> Result<()> {
        // The writer lock is held across the fdatasync on purpose: letting the next batch be
        // appended during it was measured ~10 % slower at 32 writers (writes to pages under
        // writeback wait for it), and it keeps "poisoned after a failed sync" simple.
        let mut writer = self.lock_writer()?;
        writer.check_writable()?;
        let last = self.last_segment();
        let result = self
            .injected_fault()
            .and_then(|()| last.files.data.sync_data());
        match result {
            Ok(()) => {
                writer.durable_blocks = last.end_sequence_no();
                Ok(())
            }
            Err(error) => {
                let error = LedgerError::Io(error);
                writer.poison("sync", &error);
                Err(error)
            }
        }
    }

    /// Replaces the payload of block `sequence_no` (for redaction: the caller keeps every
    /// hash of the block unchanged) by rewriting its segment: a checked copy is written
    /// beside it, fsynced, and renamed over it (see `segment::build_rewrite`). Appends wait
    /// meanwhile. Readers already holding the old segment keep reading the old file; the
    /// next reads see the new one. A failure before the rename leaves the journal as it was;
    /// one after it poisons the journal (its files may be half replaced until reopened).
    pub fn rewrite(&self, sequence_no: u64, payload: &[u8]) -> Result<()> {
        let mut writer = self.lock_writer()?;
        writer.check_writable()?;
        check_batch(&[payload])?;
        let segment = self.segment_for(sequence_no)?;
        let rewrite = self
            .injected_fault()
            .map_err(LedgerError::Io)
            .and_then(|()| build_rewrite(self.place(), &segment, sequence_no, payload))?;
        let view = match rewrite.install(self.place()) {
            Ok(view) => view,
            Err(error) => {
                writer.poison("rewrite", &error);
                return Err(error);
            }
        };
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let position = published
            .iter()
            .position(|s| s.first_sequence_no == view.first_sequence_no)
            .expect("the rewritten segment is published");
        published[position] = view;
        Ok(())
    }

    /// The payload of block `sequence_no`, checksum verified. `UnknownBlock` past the end.
    pub fn read(&self, sequence_no: u64) -> Result<Vec<u8>> {
        let segment = self.segment_for(sequence_no)?;
        let (start, end) = segment.frame_extent(sequence_no)?;
        let place = self.place();
        if start < SEGMENT_HEADER_BYTES as u64
            || end > segment.data_bytes
            || end < start + FRAME_HEADER_BYTES as u64
            || end - start > frame_bytes(FRAME_PAYLOAD_MAX_BYTES)
        {
            let detail = format!(
                "offset index of segment {} gives frame extent {start}..{end}, outside the segment",
                segment.first_sequence_no
            );
            return Err(place.corrupted(sequence_no, detail));
        }
        let mut frame = vec![0u8; (end - start) as usize];
        segment.files.data.read_exact_at(&mut frame, start)?;
        if let Err(defect) = check_frame(&frame, segment.salt, sequence_no) {
            let detail = format!(
                "segment {}, byte {start}: {defect}",
                segment.first_sequence_no
            );
            return Err(place.corrupted(sequence_no, detail));
        }
        frame.drain(..FRAME_HEADER_BYTES);
        Ok(frame)
    }

    /// Visits blocks `from_seq..len()` in order (as of the call), checking each; stops early
    /// when `visit` returns `false`. `UnknownBlock` if `from_seq > len()`.
    pub fn scan(
        &self,
        from_seq: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let segments = self.snapshot();
        let len = segments.last().map_or(0, SegmentView::end_sequence_no);
        if from_seq > len {
            return Err(unknown_block(from_seq, len));
        }
        let mut sequence_no = from_seq;
        for segment in segments
            .iter()
            .filter(|segment| segment.end_sequence_no() > from_seq)
        {
            let start = self.scan_start(segment, sequence_no)?;
            let mut cursor =
                FrameCursor::new(&segment.files.data, segment.salt, start, segment.data_bytes);
            while sequence_no < segment.end_sequence_no() {
                let payload =
                    self.expect_frame(cursor.next_frame(sequence_no)?, segment, sequence_no)?;
                if !visit(sequence_no, payload)? {
                    return Ok(());
                }
                sequence_no += 1;
            }
        }
        Ok(())
    }

    /// Re-reads every frame of every segment and checks header, checksum, sequence number
    /// and offset index; for `quill verify`. Calls `progress(blocks_checked, blocks_total)`.
    pub fn verify_all(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
        let segments = self.snapshot();
        let total = segments.last().map_or(0, SegmentView::end_sequence_no);
        let place = self.place();
        for segment in &segments {
            verify_header(place, &segment.files.data, segment.first_sequence_no)?;
            let offsets = read_index_entries(&segment.files.index, 0, segment.blocks)?;
            let mut cursor = FrameCursor::new(
                &segment.files.data,
                segment.salt,
                SEGMENT_HEADER_BYTES as u64,
                segment.data_bytes,
            );
            for (position, &indexed_offset) in (0u64..).zip(&offsets) {
                let sequence_no = segment.first_sequence_no + position;
                let step = cursor.next_frame(sequence_no)?;
                if let CursorStep::Frame(frame) = &step {
                    if frame.offset != indexed_offset {
                        let detail = format!(
                            "offset index says byte {indexed_offset}, frame is at byte {}",
                            frame.offset
                        );
                        return Err(place.corrupted(sequence_no, detail));
                    }
                }
                self.expect_frame(step, segment, sequence_no)?;
                let checked = sequence_no + 1;
                if checked % VERIFY_PROGRESS_EVERY_BLOCKS == 0 {
                    progress(checked, total);
                }
            }
            if !matches!(
                cursor.next_frame(segment.end_sequence_no())?,
                CursorStep::End
            ) {
                let detail = format!(
                    "segment {} holds bytes after its last indexed frame",
                    segment.first_sequence_no
                );
                return Err(place.corrupted(segment.end_sequence_no(), detail));
            }
            progress(segment.end_sequence_no(), total);
        }
        Ok(())
    }

    fn append_locked(&self, durable_blocks: u64, payloads: &[&[u8]]) -> Result<u64> {
        let mut active = self.last_segment();
        let mut pending = PendingWrite::default();
        for payload in payloads {
            if self.needs_new_segment(&active, &pending, payload.len()) {
                self.write_pending(&mut active, &mut pending)?;
                active = self.roll_over(&active)?;
            }
            pending.push(&active, durable_blocks, payload);
        }
        self.write_pending(&mut active, &mut pending)?;
        Ok(active.end_sequence_no())
    }

    fn needs_new_segment(
        &self,
        active: &SegmentView,
        pending: &PendingWrite,
        payload_bytes: usize,
    ) -> bool {
        let blocks = active.blocks + pending.blocks;
        let bytes = active.data_bytes + pending.data.len() as u64;
        blocks > 0
            && (blocks >= self.options.segment_blocks_max
                || bytes + frame_bytes(payload_bytes) > self.options.segment_bytes_max)
    }

    /// Writes the pending frames and index entries (one positioned write each), then
    /// publishes them to readers.
    fn write_pending(&self, active: &mut SegmentView, pending: &mut PendingWrite) -> Result<()> {
        if pending.blocks == 0 {
            return Ok(());
        }
        self.injected_fault()?;
        let files = &active.files;
        let end = active.data_bytes + pending.data.len() as u64;
        if end > active.file_bytes {
            // Write zeros ahead, and make them durable once, so that the frames of the next
            // commits overwrite written blocks (see `SegmentView::file_bytes`).
            let ahead = end
                .max(active.data_bytes + PREWRITE_BYTES)
                .min(end.max(self.options.segment_bytes_max));
            let zeros = vec![0u8; (ahead - active.file_bytes) as usize];
            files.data.write_all_at(&zeros, active.file_bytes)?;
            files.data.sync_data()?;
            active.file_bytes = ahead;
        }
        files.data.write_all_at(&pending.data, active.data_bytes)?;
        let index_at = active.blocks * INDEX_ENTRY_BYTES as u64;
        files.index.write_all_at(&pending.index, index_at)?;
        active.data_bytes += pending.data.len() as u64;
        active.blocks += pending.blocks;
        *pending = PendingWrite::default();
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let last = published
            .last_mut()
            .expect("a journal always has a segment");
        assert_eq!(
            last.first_sequence_no, active.first_sequence_no,
            "only the last segment grows"
        );
        *last = active.clone();
        Ok(())
    }

    /// Seals `full` (zeros written ahead dropped; fsync of data and index) and creates its
    /// successor.
    fn roll_over(&self, full: &SegmentView) -> Result<SegmentView> {
        self.injected_fault()?;
        if full.file_bytes > full.data_bytes {
            full.files.data.set_len(full.data_bytes)?;
        }
        full.files.data.sync_all()?;
        full.files.index.sync_data()?;
        let next = create_segment(self.place(), full.end_sequence_no())?;
        let mut published = self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        published.push(next.clone());
        Ok(next)
    }

    /// Where a scan starting at `sequence_no` begins in `segment`.
    fn scan_start(&self, segment: &SegmentView, sequence_no: u64) -> Result<u64> {
        if sequence_no <= segment.first_sequence_no {
            return Ok(SEGMENT_HEADER_BYTES as u64);
        }
        Ok(segment.frame_extent(sequence_no)?.0)
    }

    /// The payload of a cursor step that must be the frame of `sequence_no`.
    fn expect_frame<'b>(
        &self,
        step: CursorStep<'b>,
        segment: &SegmentView,
        sequence_no: u64,
    ) -> Result<&'b [u8]> {
        let detail = match step {
            CursorStep::Frame(frame) => return Ok(frame.payload),
            CursorStep::End => format!(
                "segment {} ends before this block",
                segment.first_sequence_no
            ),
            CursorStep::Defect { offset, defect } => {
                format!(
                    "segment {}, byte {offset}: {defect}",
                    segment.first_sequence_no
                )
            }
        };
        Err(self.place().corrupted(sequence_no, detail))
    }

    fn segment_for(&self, sequence_no: u64) -> Result<SegmentView> {
        let published = self
            .published
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let len = published.last().map_or(0, SegmentView::end_sequence_no);
        if sequence_no >= len {
            return Err(unknown_block(sequence_no, len));
        }
        let position =
            published.partition_point(|segment| segment.end_sequence_no() <= sequence_no);
        Ok(published[position].clone())
    }

    fn last_segment(&self) -> SegmentView {
        let published = self
            .published
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        published
            .last()
            .expect("a journal always has a segment")
            .clone()
    }

    fn snapshot(&self) -> Vec<SegmentView> {
        self.published
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn place(&self) -> Place<'_> {
        Place {
            storage: &self.storage,
            dir: &self.dir,
            strand_id: &self.strand_id,
        }
    }

    fn lock_writer(&self) -> Result<std::sync::MutexGuard<'_, WriterState>> {
        self.writer.lock().map_err(|_| {
            LedgerError::ReadOnly("a journal writer panicked; reopen the ledger".to_owned())
        })
    }

    #[cfg(test)]
    fn injected_fault(&self) -> std::io::Result<()> {
        if self
            .fail_next_io
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(std::io::Error::other("injected I/O failure"));
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn injected_fault(&self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Journal {
    /// A clean close drops the zeros written ahead, so the files end at the last frame
    /// (a crash leaves them; open drops them without calling them a torn tail).
    fn drop(&mut self) {
        let Ok(writer) = self.writer.lock() else {
            return;
        };
        if writer.check_writable().is_err() {
            return;
        }
        let last = self.last_segment();
        if last.file_bytes > last.data_bytes {
            let trimmed = last
                .files
                .data
                .set_len(last.data_bytes)
                .and_then(|()| last.files.data.sync_all());
            if let Err(error) = trimmed {
                tracing::warn!(%error, "could not trim the journal's pre-written space on close");
            }
        }
    }
}

impl WriterState {
    fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(LedgerError::ReadOnly(reason.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, operation: &str, error: &LedgerError) {
        tracing::error!(%error, operation, "journal write failed: journal is read-only until reopened");
        self.poisoned = Some(format!("journal {operation} failed: {error}"));
    }
}

fn check_strand_id(strand_id: &str) -> Result<()> {
    if strand_id_fits(strand_id) {
        return Ok(());
    }
    Err(LedgerError::InvalidInput(format!(
        "strand id must be 1..={} bytes, got {}",
        format::STRAND_ID_MAX_BYTES,
        strand_id.len()
    )))
}

fn check_batch(payloads: &[&[u8]]) -> Result<()> {
    if payloads.len() > APPEND_BATCH_BLOCKS_MAX {
        return Err(LedgerError::LimitExceeded {
            limit: "APPEND_BATCH_BLOCKS_MAX",
            max: APPEND_BATCH_BLOCKS_MAX,
            actual: payloads.len(),
        });
    }
    match payloads
        .iter()
        .find(|payload| payload.len() > FRAME_PAYLOAD_MAX_BYTES)
    {
        Some(payload) => Err(LedgerError::LimitExceeded {
            limit: "FRAME_PAYLOAD_MAX_BYTES",
            max: FRAME_PAYLOAD_MAX_BYTES,
            actual: payload.len(),
        }),
        None => Ok(()),
    }
}

fn check_continuity(place: Place<'_>, expected_first: u64, first: u64) -> Result<()> {
    if first == expected_first {
        return Ok(());
    }
    let detail = format!(
        "no segment holds block {expected_first}; the next segment starts at block {first}"
    );
    Err(place.corrupted(expected_first, detail))
}

fn unknown_block(sequence_no: u64, len: u64) -> LedgerError {
    LedgerError::UnknownBlock(format!(
        "sequence number {sequence_no}; the journal holds {len} blocks"
    ))
}

/// Removes the replacement files of a segment rewrite that a crash interrupted before it
/// renamed them into place (the segment they were meant to replace is intact).
fn remove_unfinished_rewrites(storage: &Storage, dir: &Path) -> Result<()> {
    for name in storage.list_dir(dir)? {
        if name.ends_with(REWRITE_SUFFIX) {
            tracing::warn!(file = %name, "removing an unfinished journal segment rewrite");
            storage.remove_file(&dir.join(&name))?;
        }
    }
    Ok(())
}

/// First sequence numbers of the segment files in `dir`, ascending.
fn list_segments(storage: &Storage, dir: &Path) -> Result<Vec<u64>> {
    let mut firsts = Vec::new();
    for name in storage.list_dir(dir)? {
        let Some(first) = parse_data_name(&name) else {
            continue;
        };
        if firsts.len() >= JOURNAL_SEGMENTS_MAX {
            return Err(LedgerError::LimitExceeded {
                limit: "JOURNAL_SEGMENTS_MAX",
                max: JOURNAL_SEGMENTS_MAX,
                actual: firsts.len() + 1,
            });
        }
        firsts.push(first);
    }
    firsts.sort_unstable();
    Ok(firsts)
}

#[cfg(test)]
mod tests;
