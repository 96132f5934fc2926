//! One journal segment on disk: its data file and offset index, the sequential frame cursor,
//! and the open-time checks (a cheap consistency check of sealed segments, a full scan with
//! torn-tail cut of the last one).
//!
//! Why the last segment alone is scanned on open: a segment is sealed only after its data
//! and index were fsynced and before its successor was created, so every byte of a sealed
//! segment was durable before any later block was written. Crash damage (torn writes) can
//! only sit in the last segment. Sealed segments get an O(1) check (header, index length,
//! first entry, last frame's CRC and sequence number, continuity of sequence numbers); bit rot
//! inside them is caught when a block is read (every read checks its CRC) and by
//! `Journal::verify_all`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    check_frame, decode_frame_header, decode_index, decode_segment_header, encode_frame,
    encode_index, encode_segment_header, frame_bytes, frame_header_bytes, read_u64, Defect,
    FrameHeader, SegmentHeader, FRAME_HEADER_BYTES, FRAME_MAGIC, INDEX_ENTRY_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::limits::FRAME_PAYLOAD_MAX_BYTES;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{BlockAddress, LedgerError, Result};

/// Hard cap on frames in one segment, whatever the options say: bounds the offset index
/// (8 bytes per frame, 32 MiB at the cap) that open and `verify_all` load for one segment,
/// and every per-segment loop.
pub(crate) const SEGMENT_BLOCKS_LIMIT: u64 = 1 << 22;
/// Hard cap on a segment file's size: bounds the open-time scan of the last segment.
pub(crate) const SEGMENT_BYTES_LIMIT: u64 = 1 << 30;
/// Read size of the sequential cursor: large enough to amortise syscalls, small enough to
/// keep per-reader memory modest.
const CURSOR_CHUNK_BYTES: usize = 1 << 20;

const _: () =
    assert!(FRAME_PAYLOAD_MAX_BYTES as u64 + (FRAME_HEADER_BYTES as u64) < SEGMENT_BYTES_LIMIT);

const DATA_EXTENSION: &str = "qjs";
const INDEX_EXTENSION: &str = "qji";
/// Appended to a segment's file names while a rewrite builds their replacements.
pub(crate) const REWRITE_SUFFIX: &str = ".rewrite";
const NAME_PREFIX: &str = "segment-";
const NAME_DIGITS: usize = 20;

/// Path of a segment's data file.
pub(crate) fn data_path(dir: &Path, first_sequence_no: u64) -> PathBuf {
    dir.join(format!(
        "{NAME_PREFIX}{first_sequence_no:020}.{DATA_EXTENSION}"
    ))
}

/// Path of a segment's offset index.
pub(crate) fn index_path(dir: &Path, first_sequence_no: u64) -> PathBuf {
    dir.join(format!(
        "{NAME_PREFIX}{first_sequence_no:020}.{INDEX_EXTENSION}"
    ))
}

/// The first sequence number named by a segment data file name, if it is one.
pub(crate) fn parse_data_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(NAME_PREFIX)?
        .strip_suffix(DATA_EXTENSION)?
        .strip_suffix('.')?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where segment files live and which strand they belong to; names blocks in errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    pub storage: &'a Storage,
    pub dir: &'a Path,
    pub strand_id: &'a str,
}

impl Place<'_> {
    /// `LedgerError::Corrupted` naming block `sequence_no`.
    pub(crate) fn corrupted(&self, sequence_no: u64, detail: String) -> LedgerError {
        LedgerError::Corrupted {
            block_address: BlockAddress {
                strand_id: self.strand_id.to_owned(),
                sequence_no,
            },
            detail,
        }
    }
}

/// The open files of one segment. Positioned reads and writes only, so any number of
/// readers and the writer share them without a cursor.
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    pub data: StorageFile,
    pub index: StorageFile,
}

/// A segment as readers see it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    pub first_sequence_no: u64,
    /// Frames published to readers. Invariant: the data file holds exactly `blocks` valid
    /// frames in `[SEGMENT_HEADER_BYTES, data_bytes)` and the index holds their offsets.
    pub blocks: u64,
    /// End of the last published frame.
    pub data_bytes: u64,
    /// Length of the data file. Bytes in `[data_bytes, file_bytes)` are zeros written in
    /// advance (only in the last segment): appending there overwrites written blocks, so a
    /// commit's fdatasync has no block allocation or file-size change to make durable.
    pub file_bytes: u64,
    /// The segment header's frame salt.
    pub salt: u64,
    pub files: Arc<SegmentFiles>,
}

impl SegmentView {
    /// One past the last sequence number in this segment.
    pub(crate) fn end_sequence_no(&self) -> u64 {
        self.first_sequence_no + self.blocks
    }

    /// Byte range `[start, end)` of the frame of `sequence_no` (inside this segment), from
    /// the index: one positioned read.
    pub(crate) fn frame_extent(&self, sequence_no: u64) -> io::Result<(u64, u64)> {
        assert!(sequence_no >= self.first_sequence_no && sequence_no < self.end_sequence_no());
        let position = sequence_no - self.first_sequence_no;
        let is_last = position + 1 == self.blocks;
        let mut entries = [0u8; 2 * INDEX_ENTRY_BYTES];
        let wanted = if is_last {
            INDEX_ENTRY_BYTES
        } else {
            2 * INDEX_ENTRY_BYTES
        };
        let at = position * INDEX_ENTRY_BYTES as u64;
        self.files.index.read_exact_at(&mut entries[..wanted], at)?;
        let start = read_u64(&entries, 0);
        let end = if is_last {
            self.data_bytes
        } else {
            read_u64(&entries, INDEX_ENTRY_BYTES)
        };
        Ok((start, end))
    }
}

/// One frame handed out by [`FrameCursor`].
#[derive(Debug)]
pub(crate) struct CursorFrame<'b> {
    pub offset: u64,
    /// The frame header's `durable_blocks`.
    pub durable_blocks: u64,
    pub payload: &'b [u8],
}

/// What the cursor found next.
#[derive(Debug)]
pub(crate) enum CursorStep<'b> {
    Frame(CursorFrame<'b>),
    End,
    Defect { offset: u64, defect: Defect },
}

/// Reads the frames of one file front to back in `CURSOR_CHUNK_BYTES` reads, checking each.
pub(crate) struct FrameCursor<'f> {
    file: &'f StorageFile,
    salt: u64,
    next_offset: u64,
    end_offset: u64,
    /// Holds file bytes `[buffer_offset, buffer_offset + buffer.len())`; `buffer_offset <=
    /// next_offset` always.
    buffer: Vec<u8>,
    buffer_offset: u64,
}

impl<'f> FrameCursor<'f> {
    /// A cursor over the frames in `[start, end)` of `file`, a segment salted `salt`.
    pub(crate) fn new(file: &'f StorageFile, salt: u64, start: u64, end: u64) -> FrameCursor<'f> {
        FrameCursor {
            file,
            salt,
            next_offset: start,
            end_offset: end,
            buffer: Vec::new(),
            buffer_offset: start,
        }
    }

    /// The next frame, which must carry `expected_sequence_no`.
    pub(crate) fn next_frame(&mut self, expected_sequence_no: u64) -> io::Result<CursorStep<'_>> {
        let offset = self.next_offset;
        if offset >= self.end_offset {
            return Ok(CursorStep::End);
        }
        let available_bytes = self.end_offset - offset;
        if available_bytes < FRAME_HEADER_BYTES as u64 {
            return Ok(CursorStep::Defect {
                offset,
                defect: Defect::ShortHeader { available_bytes },
            });
        }
        let start = self.fill(FRAME_HEADER_BYTES)?;
        let header_bytes = frame_header_bytes(&self.buffer[start..]).map_err(io::Error::other)?;
        let header = match decode_frame_header(header_bytes) {
            Ok(header) => header,
            Err(defect) => return Ok(CursorStep::Defect { offset, defect }),
        };
        let total_bytes = frame_bytes(header.payload_bytes as usize);
        if total_bytes > available_bytes {
            let defect = Defect::ShortPayload {
                payload_bytes: header.payload_bytes,
                available_bytes: available_bytes - FRAME_HEADER_BYTES as u64,
            };
            return Ok(CursorStep::Defect { offset, defect });
        }
        let start = self.fill(total_bytes as usize)?;
        let frame = &self.buffer[start..start + total_bytes as usize];
        let header = match check_frame(frame, self.salt, expected_sequence_no) {
            Ok(header) => header,
            Err(defect) => return Ok(CursorStep::Defect { offset, defect }),
        };
        self.next_offset += total_bytes;
        let payload = &self.buffer[start + FRAME_HEADER_BYTES..start + total_bytes as usize];
        Ok(CursorStep::Frame(CursorFrame {
            offset,
            durable_blocks: header.durable_blocks,
            payload,
        }))
    }

    /// Makes the buffer cover `wanted` bytes from `next_offset` (the caller checked they
    /// exist before `end_offset`); returns their start in the buffer.
    fn fill(&mut self, wanted: usize) -> io::Result<usize> {
        let start = (self.next_offset - self.buffer_offset) as usize;
        if start + wanted <= self.buffer.len() {
            return Ok(start);
        }
        self.buffer.drain(..start.min(self.buffer.len()));
        self.buffer_offset = self.next_offset;
        let kept = self.buffer.len();
        let remaining = self.end_offset - self.next_offset;
        let target = (wanted.max(CURSOR_CHUNK_BYTES) as u64).min(remaining) as usize;
        self.buffer.resize(target, 0);
        self.file
            .read_exact_at(&mut self.buffer[kept..], self.buffer_offset + kept as u64)?;
        Ok(0)
    }
}

/// Offset of a frame in `[from, end)` that proves block `sequence_no` was durable: a
/// complete frame with this segment's salt, a later sequence number, and `durable_blocks`
/// above `sequence_no` (its writer knew block `sequence_no` was fsynced). Tells damage to
/// durable data (corruption) from a torn unsynced tail. Frame-like bytes inside a payload
/// never count: without the salt their checksum fails, and a copy of a real frame of this
/// segment carries a claim that was true when that frame was written.
fn find_durability_proof(
    file: &StorageFile,
    salt: u64,
    from: u64,
    end: u64,
    sequence_no: u64,
) -> io::Result<Option<u64>> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut chunk = vec![0u8; CURSOR_CHUNK_BYTES];
    let mut chunk_offset = from;
    // Each pass advances by at least one byte: bounded by `end - from`.
    while chunk_offset + FRAME_HEADER_BYTES as u64 <= end {
        let chunk_bytes = ((end - chunk_offset) as usize).min(CURSOR_CHUNK_BYTES);
        file.read_exact_at(&mut chunk[..chunk_bytes], chunk_offset)?;
        let scanned = &chunk[..chunk_bytes];
        for position in 0..chunk_bytes.saturating_sub(magic.len() - 1) {
            if scanned[position..position + magic.len()] == magic {
                let candidate = chunk_offset + position as u64;
                let proves = valid_frame_at(file, salt, candidate, end)?.is_some_and(|header| {
                    header.sequence_no > sequence_no && header.durable_blocks > sequence_no
                });
                if proves {
                    return Ok(Some(candidate));
                }
            }
        }
        // Overlap by a magic's length so a magic split across chunks is not missed.
        chunk_offset += (chunk_bytes - (magic.len() - 1)).max(1) as u64;
    }
    Ok(None)
}

/// The header of the valid frame at `offset`, if there is one.
fn valid_frame_at(
    file: &StorageFile,
    salt: u64,
    offset: u64,
    end: u64,
) -> io::Result<Option<FrameHeader>> {
    if end - offset < FRAME_HEADER_BYTES as u64 {
        return Ok(None);
    }
    let mut header_bytes = [0u8; FRAME_HEADER_BYTES];
    file.read_exact_at(&mut header_bytes, offset)?;
    let Ok(header) = decode_frame_header(&header_bytes) else {
        return Ok(None);
    };
    let total_bytes = frame_bytes(header.payload_bytes as usize);
    if total_bytes > end - offset {
        return Ok(None);
    }
    let mut frame = vec![0u8; total_bytes as usize];
    file.read_exact_at(&mut frame, offset)?;
    Ok(check_frame(&frame, salt, header.sequence_no).ok())
}

/// Creates a new, empty segment: header written and fsynced, directory fsynced, so a crash
/// leaves either no file or a file with a durable header.
pub(crate) fn create_segment(place: Place<'_>, first_sequence_no: u64) -> Result<SegmentView> {
    let header = SegmentHeader {
        first_sequence_no,
        strand_id: place.strand_id.to_owned(),
        salt: rand::random(),
    };
    let data = place.storage.open_file(
        &data_path(place.dir, first_sequence_no),
        OpenMode::CreateNew,
    )?;
    data.write_all_at(&encode_segment_header(&header), 0)?;
    data.sync_data()?;
    let index = place.storage.open_file(
        &index_path(place.dir, first_sequence_no),
        OpenMode::Truncate,
    )?;
    place.storage.sync_dir(place.dir)?;
    Ok(SegmentView {
        first_sequence_no,
        blocks: 0,
        data_bytes: SEGMENT_HEADER_BYTES as u64,
        file_bytes: SEGMENT_HEADER_BYTES as u64,
        salt: header.salt,
        files: Arc::new(SegmentFiles { data, index }),
    })
}

/// Reads and decodes the header; `Err(defect)` inside for a short or bad header.
fn read_header(data: &StorageFile, data_bytes: u64) -> io::Result<Result<SegmentHeader, Defect>> {
    if data_bytes < SEGMENT_HEADER_BYTES as u64 {
        return Ok(Err(Defect::BadSegmentHeader(
            "file shorter than a segment header",
        )));
    }
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    data.read_exact_at(&mut bytes, 0)?;
    Ok(decode_segment_header(&bytes))
}

/// Re-reads a segment's header and checks it belongs here (used by `verify_all`).
pub(crate) fn verify_header(
    place: Place<'_>,
    data: &StorageFile,
    first_sequence_no: u64,
) -> Result<()> {
    match read_header(data, data.len()?)? {
        Ok(header) => check_header_identity(place, &header, first_sequence_no),
        Err(defect) => Err(place.corrupted(first_sequence_no, defect.to_string())),
    }
}

/// Checks that a decoded header belongs here.
fn check_header_identity(
    place: Place<'_>,
    header: &SegmentHeader,
    first_sequence_no: u64,
) -> Result<()> {
    if header.first_sequence_no != first_sequence_no {
        let detail = format!(
            "segment file for block {first_sequence_no} says its first block is {}",
            header.first_sequence_no
        );
        return Err(place.corrupted(first_sequence_no, detail));
    }
    if header.strand_id != place.strand_id {
        let detail = format!("segment belongs to strand {:?}", header.strand_id);
        return Err(place.corrupted(first_sequence_no, detail));
    }
    Ok(())
}

fn open_files(place: Place<'_>, first_sequence_no: u64) -> io::Result<SegmentFiles> {
    let data = place
        .storage
        .open_file(&data_path(place.dir, first_sequence_no), OpenMode::Existing)?;
    let index = place
        .storage
        .open_file(&index_path(place.dir, first_sequence_no), OpenMode::Create)?;
    Ok(SegmentFiles { data, index })
}

/// Opens a sealed (not last) segment: O(1) checks when its index is consistent, a full scan
/// and index rebuild otherwise. Any bad frame is `Corrupted`: nothing here can be torn.
pub(crate) fn open_sealed(place: Place<'_>, first_sequence_no: u64) -> Result<SegmentView> {
    let files = open_files(place, first_sequence_no)?;
    let data_bytes = files.data.len()?;
    let salt = match read_header(&files.data, data_bytes)? {
        Ok(header) => {
            check_header_identity(place, &header, first_sequence_no)?;
            header.salt
        }
        Err(defect) => return Err(place.corrupted(first_sequence_no, defect.to_string())),
    };
    let blocks = match trusted_index_blocks(&files, salt, first_sequence_no, data_bytes)? {
        Some(blocks) => blocks,
        None => rebuild_sealed_index(place, &files, salt, first_sequence_no, data_bytes)?,
    };
    Ok(SegmentView {
        first_sequence_no,
        blocks,
        data_bytes,
        file_bytes: data_bytes,
        salt,
        files: Arc::new(files),
    })
}

/// The number of frames if the index agrees with the data file at both ends.
fn trusted_index_blocks(
    files: &SegmentFiles,
    salt: u64,
    first_sequence_no: u64,
    data_bytes: u64,
) -> io::Result<Option<u64>> {
    let index_bytes = files.index.len()?;
    let entry_bytes = INDEX_ENTRY_BYTES as u64;
    if index_bytes % entry_bytes != 0 || index_bytes / entry_bytes > SEGMENT_BLOCKS_LIMIT {
        return Ok(None);
    }
    let blocks = index_bytes / entry_bytes;
    if blocks == 0 {
        return Ok((data_bytes == SEGMENT_HEADER_BYTES as u64).then_some(0));
    }
    let mut entry = [0u8; INDEX_ENTRY_BYTES];
    files.index.read_exact_at(&mut entry, 0)?;
    if u64::from_le_bytes(entry) != SEGMENT_HEADER_BYTES as u64 {
        return Ok(None);
    }
    files
        .index
        .read_exact_at(&mut entry, (blocks - 1) * entry_bytes)?;
    let last_offset = u64::from_le_bytes(entry);
    let frame_max_bytes = frame_bytes(FRAME_PAYLOAD_MAX_BYTES);
    if last_offset < SEGMENT_HEADER_BYTES as u64
        || last_offset >= data_bytes
        || data_bytes - last_offset > frame_max_bytes
    {
        return Ok(None);
    }
    let mut frame = vec![0u8; (data_bytes - last_offset) as usize];
    files.data.read_exact_at(&mut frame, last_offset)?;
    Ok(check_frame(&frame, salt, first_sequence_no + blocks - 1)
        .is_ok()
        .then_some(blocks))
}

fn rebuild_sealed_index(
    place: Place<'_>,
    files: &SegmentFiles,
    salt: u64,
    first_sequence_no: u64,
    data_bytes: u64,
) -> Result<u64> {
    tracing::warn!(
        first_sequence_no,
        "journal segment index inconsistent: rebuilding it from the frames"
    );
    let mut offsets = Vec::new();
    let mut cursor = FrameCursor::new(&files.data, salt, SEGMENT_HEADER_BYTES as u64, data_bytes);
    loop {
        let sequence_no = first_sequence_no + offsets.len() as u64;
        match cursor.next_frame(sequence_no)? {
            CursorStep::Frame(frame) => offsets.push(frame.offset),
            CursorStep::End => break,
            CursorStep::Defect { offset, defect } => {
                let detail = format!("sealed segment {first_sequence_no}, byte {offset}: {defect}");
                return Err(place.corrupted(sequence_no, detail));
            }
        }
        if offsets.len() as u64 > SEGMENT_BLOCKS_LIMIT {
            let detail = format!(
                "segment holds more than SEGMENT_BLOCKS_LIMIT ({SEGMENT_BLOCKS_LIMIT}) frames"
            );
            return Err(place.corrupted(sequence_no, detail));
        }
    }
    write_index(&files.index, &offsets)?;
    Ok(offsets.len() as u64)
}

/// Replaces the index file's content with `offsets` and makes it durable.
fn write_index(index: &StorageFile, offsets: &[u64]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(offsets.len() * INDEX_ENTRY_BYTES);
    encode_index(offsets, &mut bytes);
    index.write_all_at(&bytes, 0)?;
    index.set_len(bytes.len() as u64)?;
    index.sync_data()
}

/// The last segment after recovery, and how many bytes recovery cut off.
#[derive(Debug)]
pub(crate) struct RecoveredSegment {
    pub view: SegmentView,
    pub torn_tail_bytes: u64,
}

/// Opens the last segment: scans every frame, cuts a torn tail (truncate + fsync), and
/// rewrites the index if it does not match the frames (its tail is never fsynced by
/// appends, so it may lag or hold garbage after a crash).
pub(crate) fn recover_last(place: Place<'_>, first_sequence_no: u64) -> Result<RecoveredSegment> {
    let files = open_files(place, first_sequence_no)?;
    let file_bytes = files.data.len()?;
    if file_bytes > SEGMENT_BYTES_LIMIT {
        let detail = format!(
            "segment is {file_bytes} bytes, over SEGMENT_BYTES_LIMIT ({SEGMENT_BYTES_LIMIT})"
        );
        return Err(place.corrupted(first_sequence_no, detail));
    }
    let (salt, mut torn_tail_bytes) =
        recover_header(place, &files.data, first_sequence_no, file_bytes)?;
    // After a header rewrite the file is just the new header.
    let scanned_bytes = files.data.len()?;
    let (offsets, valid_bytes) =
        scan_last(place, &files.data, salt, first_sequence_no, scanned_bytes)?;
    if valid_bytes < scanned_bytes {
        // Zeros written in advance hold no frame: dropping them loses nothing, so only
        // non-zero bytes count as a torn tail.
        let cut_bytes = scanned_bytes - valid_bytes;
        if !is_all_zero(&files.data, valid_bytes, scanned_bytes)? {
            tracing::warn!(
                first_sequence_no,
                valid_bytes,
                cut_bytes,
                "journal has a torn tail (incomplete last write): cutting it off"
            );
            torn_tail_bytes += cut_bytes;
        }
        files.data.set_len(valid_bytes)?;
        files.data.sync_data()?;
    }
    sync_index_with(&files.index, &offsets)?;
    let view = SegmentView {
        first_sequence_no,
        blocks: offsets.len() as u64,
        data_bytes: valid_bytes,
        file_bytes: valid_bytes,
        salt,
        files: Arc::new(files),
    };
    Ok(RecoveredSegment {
        view,
        torn_tail_bytes,
    })
}

/// Checks the last segment's header; returns its salt and the bytes cut. The header is
/// fsynced before any frame is written, so a bad header with nothing but zeros after it is
/// a crash during segment creation: the header is rewritten and the whole old file counts
/// as cut. A bad header with data after it is corruption.
fn recover_header(
    place: Place<'_>,
    data: &StorageFile,
    first_sequence_no: u64,
    file_bytes: u64,
) -> Result<(u64, u64)> {
    let defect = match read_header(data, file_bytes)? {
        Ok(header) => {
            check_header_identity(place, &header, first_sequence_no)?;
            return Ok((header.salt, 0));
        }
        Err(defect) => defect,
    };
    let header_bytes = SEGMENT_HEADER_BYTES as u64;
    if file_bytes > header_bytes && !is_all_zero(data, header_bytes, file_bytes)? {
        let detail = format!("segment header: {defect}, yet data follows it");
        return Err(place.corrupted(first_sequence_no, detail));
    }
    tracing::warn!(first_sequence_no, file_bytes, %defect, "journal segment header torn: rewriting it");
    let header = SegmentHeader {
        first_sequence_no,
        strand_id: place.strand_id.to_owned(),
        salt: rand::random(),
    };
    data.set_len(0)?;
    data.write_all_at(&encode_segment_header(&header), 0)?;
    data.sync_data()?;
    Ok((header.salt, file_bytes))
}

/// Scans the last segment's frames up to `file_bytes`; returns their offsets and the end of
/// the last valid one. A bad frame is a torn tail (the caller cuts it) unless a later frame
/// proves it was durable ([`find_durability_proof`]): then it is `Corrupted`.
fn scan_last(
    place: Place<'_>,
    data: &StorageFile,
    salt: u64,
    first_sequence_no: u64,
    file_bytes: u64,
) -> Result<(Vec<u64>, u64)> {
    let mut offsets = Vec::new();
    let mut cursor = FrameCursor::new(data, salt, SEGMENT_HEADER_BYTES as u64, file_bytes);
    // Every frame is at least FRAME_HEADER_BYTES, so the loop ends within the file; the
    // explicit block limit keeps the offsets vector bounded too.
    while (offsets.len() as u64) <= SEGMENT_BLOCKS_LIMIT {
        let sequence_no = first_sequence_no + offsets.len() as u64;
        match cursor.next_frame(sequence_no)? {
            CursorStep::Frame(frame) => offsets.push(frame.offset),
            CursorStep::End => return Ok((offsets, file_bytes)),
            CursorStep::Defect { offset, defect } => {
                let proof = find_durability_proof(data, salt, offset + 1, file_bytes, sequence_no)?;
                if let Some(proof) = proof {
                    let detail = format!(
                        "segment {first_sequence_no}, byte {offset}: {defect}; the frame at byte {proof} records this block as durable"
                    );
                    return Err(place.corrupted(sequence_no, detail));
                }
                return Ok((offsets, offset));
            }
        }
    }
    let detail =
        format!("segment holds more than SEGMENT_BLOCKS_LIMIT ({SEGMENT_BLOCKS_LIMIT}) frames");
    Err(place.corrupted(first_sequence_no + offsets.len() as u64, detail))
}

/// True when every byte of `[from, to)` is zero (read in bounded chunks).
fn is_all_zero(file: &StorageFile, from: u64, to: u64) -> io::Result<bool> {
    let mut chunk = vec![0u8; CURSOR_CHUNK_BYTES];
    let mut at = from;
    while at < to {
        let len = ((to - at) as usize).min(CURSOR_CHUNK_BYTES);
        file.read_exact_at(&mut chunk[..len], at)?;
        if chunk[..len].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += len as u64;
    }
    Ok(true)
}

/// Rewrites the index unless it already holds exactly `offsets`.
fn sync_index_with(index: &StorageFile, offsets: &[u64]) -> io::Result<()> {
    let index_bytes = index.len()?;
    let wanted_bytes = (offsets.len() * INDEX_ENTRY_BYTES) as u64;
    if index_bytes == wanted_bytes {
        let mut existing = vec![0u8; wanted_bytes as usize];
        index.read_exact_at(&mut existing, 0)?;
        if decode_index(&existing) == offsets {
            return Ok(());
        }
    }
    write_index(index, offsets)
}

/// Reads `count` index entries starting at entry `first` (bounded by the caller).
pub(crate) fn read_index_entries(
    index: &StorageFile,
    first: u64,
    count: u64,
) -> io::Result<Vec<u64>> {
    let mut bytes = vec![0u8; (count as usize) * INDEX_ENTRY_BYTES];
    index.read_exact_at(&mut bytes, first * INDEX_ENTRY_BYTES as u64)?;
    Ok(decode_index(&bytes))
}

/// Path of the replacement a rewrite builds for `path`.
fn rewrite_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(REWRITE_SUFFIX);
    PathBuf::from(name)
}

/// The replacement files of a segment, written, fsynced and checked, not yet in place.
pub(crate) struct SegmentRewrite {
    view: SegmentView,
}

/// Builds a copy of `segment` in which block `sequence_no` carries `payload` (every other
/// frame copied as it is, `durable_blocks` included), next to the segment's files
/// (`…qjs.rewrite`, `…qji.rewrite`); fsyncs it and reads every frame back. The segment itself
/// is untouched: a failure or a crash here leaves only the replacement files, which open
/// removes.
pub(crate) fn build_rewrite(
    place: Place<'_>,
    segment: &SegmentView,
    sequence_no: u64,
    payload: &[u8],
) -> Result<SegmentRewrite> {
    let first = segment.first_sequence_no;
    let data = place.storage.open_file(
        &rewrite_path(&data_path(place.dir, first)),
        OpenMode::Truncate,
    )?;
    let index = place.storage.open_file(
        &rewrite_path(&index_path(place.dir, first)),
        OpenMode::Truncate,
    )?;
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    segment.files.data.read_exact_at(&mut header, 0)?;
    data.write_all_at(&header, 0)?;
    let mut offsets = Vec::with_capacity(segment.blocks as usize);
    let mut at = SEGMENT_HEADER_BYTES as u64;
    let mut cursor = FrameCursor::new(
        &segment.files.data,
        segment.salt,
        SEGMENT_HEADER_BYTES as u64,
        segment.data_bytes,
    );
    let mut frame = Vec::new();
    for seq in first..segment.end_sequence_no() {
        let (durable_blocks, kept) = match cursor.next_frame(seq)? {
            CursorStep::Frame(found) => (found.durable_blocks, found.payload),
            CursorStep::End => {
                return Err(place.corrupted(seq, "segment ends before this block".into()))
            }
            CursorStep::Defect { offset, defect } => {
                return Err(
                    place.corrupted(seq, format!("segment {first}, byte {offset}: {defect}"))
                )
            }
        };
        let body = if seq == sequence_no { payload } else { kept };
        frame.clear();
        encode_frame(&mut frame, segment.salt, seq, durable_blocks, body);
        data.write_all_at(&frame, at)?;
        offsets.push(at);
        at += frame.len() as u64;
    }
    write_index(&index, &offsets)?;
    data.sync_data()?;
    // Read back what reached the file before it replaces the segment.
    let mut check = FrameCursor::new(&data, segment.salt, SEGMENT_HEADER_BYTES as u64, at);
    for (seq, offset) in (first..).zip(&offsets) {
        match check.next_frame(seq)? {
            CursorStep::Frame(found)
                if found.offset == *offset && (seq != sequence_no || found.payload == payload) => {}
            _ => {
                let detail = format!("segment {first}: the rewritten copy does not read back");
                return Err(place.corrupted(seq, detail));
            }
        }
    }
    Ok(SegmentRewrite {
        view: SegmentView {
            first_sequence_no: first,
            blocks: segment.blocks,
            data_bytes: at,
            file_bytes: at,
            salt: segment.salt,
            files: Arc::new(SegmentFiles { data, index }),
        },
    })
}

impl SegmentRewrite {
    /// Renames the replacement files over the segment's and fsyncs the directory; returns the
    /// segment as it now is. A crash in between leaves either file old or new in any
    /// combination: the frames are the same blocks with the same hashes, and an index that
    /// does not match its data file is rebuilt on open (the last frame's offset moves unless
    /// the rewritten frame is the last, and then no offset changed).
    pub(crate) fn install(self, place: Place<'_>) -> Result<SegmentView> {
        let first = self.view.first_sequence_no;
        let data = data_path(place.dir, first);
        let index = index_path(place.dir, first);
        place.storage.rename(&rewrite_path(&data), &data)?;
        place.storage.rename(&rewrite_path(&index), &index)?;
        place.storage.sync_dir(place.dir)?;
        Ok(self.view)
    }
}
