//! The journal's on-disk format: segment file header, frame and offset-index entry. Pure
//! encoding and decoding, no I/O, so every rule about bytes lives in one place.
//!
//! All integers are little-endian, whatever the host.
//!
//! Segment file `segment-{first_sequence_no:020}.qjs`:
//!
//! ```text
//! offset  size  field
//! ------  ----  -----------------------------------------------------------------
//!      0     8  magic               b"QUILLJNL"
//!      8     4  format_version      FORMAT_VERSION (u32)
//!     12     8  first_sequence_no   sequence number of the first frame (u64); equals
//!                                   the number in the file name
//!     20     1  strand_id_bytes     length of the strand id (1..=STRAND_ID_MAX_BYTES)
//!     21    64  strand_id           UTF-8, zero padded
//!     85     8  frame_salt          random u64 drawn when the segment is created; seeds
//!                                   every frame checksum of this segment
//!     93    31  reserved            zero
//!    124     4  header_crc32        CRC32 of bytes 0..124
//!    128     …  frames, back to back, no padding
//! ```
//!
//! Frame (`FRAME_HEADER_BYTES` = 28 bytes of header, then the payload):
//!
//! ```text
//! offset  size  field
//! ------  ----  -----------------------------------------------------------------
//!      0     4  magic               FRAME_MAGIC (b"QJFR")
//!      4     4  payload_bytes       u32, at most FRAME_PAYLOAD_MAX_BYTES
//!      8     8  sequence_no         u64, the block's position in the strand
//!     16     8  durable_blocks      u64, blocks the writer knew were fsynced when it
//!                                   wrote this frame (the journal's length at its last
//!                                   successful sync, or at open)
//!     24     4  crc32               CRC32 of the segment's frame_salt (8 bytes, LE),
//!                                   then frame bytes 0..24, then the payload
//!     28     n  payload             the block (Ion binary; opaque here)
//! ```
//!
//! Why the salt: payloads hold user data, and a user could store bytes that look like a
//! frame. The frame scanner that tells a torn tail from corruption (see [`segment`](super::segment))
//! searches for frames at any offset; a frame only counts if its checksum includes the
//! segment's salt, which is never shown outside the journal file. Why `durable_blocks`: it is
//! the evidence that scanner needs (see the journal's durability rules).
//!
//! Offset index `segment-{first_sequence_no:020}.qji`: entry `i` (8 bytes, u64) is the byte
//! offset in the segment file of the frame with sequence number `first_sequence_no + i`. The
//! index has no checksum of its own: every frame read through it is checked (magic, length,
//! sequence number, CRC), so a wrong entry is detected, never served.

use crate::limits::FRAME_PAYLOAD_MAX_BYTES;

/// Version of the segment and frame layout.
///
/// History:
/// - 1: first version (segment header, 20-byte frame header, 8-byte index entries).
/// - 2: frame salt in the segment header; `durable_blocks` in the frame header (28 bytes),
///   so a power loss that tears an unsynced batch out of order is a torn tail, not
///   corruption. Version 1 segments are not read (no release wrote them).
pub(crate) const FORMAT_VERSION: u32 = 2;

const SEGMENT_MAGIC: [u8; 8] = *b"QUILLJNL";
/// Bytes before the first frame of a segment.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 128;
/// Longest strand id the header can hold. QLDB strand ids are 22 characters.
pub(crate) const STRAND_ID_MAX_BYTES: usize = 64;

const HEADER_MAGIC_OFFSET: usize = 0;
const HEADER_VERSION_OFFSET: usize = HEADER_MAGIC_OFFSET + SEGMENT_MAGIC.len();
const HEADER_FIRST_SEQ_OFFSET: usize = HEADER_VERSION_OFFSET + 4;
const HEADER_STRAND_LEN_OFFSET: usize = HEADER_FIRST_SEQ_OFFSET + 8;
const HEADER_STRAND_OFFSET: usize = HEADER_STRAND_LEN_OFFSET + 1;
const HEADER_SALT_OFFSET: usize = HEADER_STRAND_OFFSET + STRAND_ID_MAX_BYTES;
const HEADER_CRC_OFFSET: usize = SEGMENT_HEADER_BYTES - 4;

const _: () = assert!(HEADER_SALT_OFFSET + 8 <= HEADER_CRC_OFFSET);
const _: () = assert!(STRAND_ID_MAX_BYTES <= u8::MAX as usize);

/// `b"QJFR"` read as a little-endian u32.
pub(crate) const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"QJFR");
const FRAME_MAGIC_OFFSET: usize = 0;
const FRAME_LEN_OFFSET: usize = FRAME_MAGIC_OFFSET + 4;
const FRAME_SEQ_OFFSET: usize = FRAME_LEN_OFFSET + 4;
const FRAME_DURABLE_OFFSET: usize = FRAME_SEQ_OFFSET + 8;
const FRAME_CRC_OFFSET: usize = FRAME_DURABLE_OFFSET + 8;
/// Bytes of a frame before its payload.
pub(crate) const FRAME_HEADER_BYTES: usize = FRAME_CRC_OFFSET + 4;
/// Size of one offset-index entry.
pub(crate) const INDEX_ENTRY_BYTES: usize = 8;

const _: () = assert!(FRAME_HEADER_BYTES == 28);
// The payload length field is a u32.
const _: () = assert!(FRAME_PAYLOAD_MAX_BYTES <= u32::MAX as usize);

/// What is wrong with a frame or a segment header; becomes the `detail` of
/// `LedgerError::Corrupted`, or marks a torn tail during recovery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Defect {
    /// Fewer bytes than a frame header are left in the file.
    #[error("only {available_bytes} bytes left, a frame header needs {FRAME_HEADER_BYTES}")]
    ShortHeader { available_bytes: u64 },
    /// The frame header claims more payload than the file holds.
    #[error("payload of {payload_bytes} bytes announced, only {available_bytes} left in the file")]
    ShortPayload {
        payload_bytes: u32,
        available_bytes: u64,
    },
    /// The first four bytes are not the frame magic.
    #[error("bad frame magic {found:#010x}")]
    BadMagic { found: u32 },
    /// A payload length over the limit: corruption, never an allocation.
    #[error("payload length {payload_bytes} exceeds FRAME_PAYLOAD_MAX_BYTES ({FRAME_PAYLOAD_MAX_BYTES})")]
    PayloadTooLarge { payload_bytes: u32 },
    /// Header or payload bytes changed after they were written.
    #[error("frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A well-formed frame in the wrong place.
    #[error("frame holds sequence number {found}, expected {expected}")]
    WrongSequence { expected: u64, found: u64 },
    /// The frame's extent (from the offset index) disagrees with its header.
    #[error("frame spans {extent_bytes} bytes in the index, its header says {header_bytes}")]
    WrongExtent {
        extent_bytes: u64,
        header_bytes: u64,
    },
    /// A segment header that does not parse.
    #[error("bad segment header: {0}")]
    BadSegmentHeader(&'static str),
    /// A segment header from a format this build does not read.
    #[error("segment format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion { found: u32 },
}

/// A parsed segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub first_sequence_no: u64,
    pub strand_id: String,
    /// Seeds the checksum of every frame of the segment.
    pub salt: u64,
}

/// True when the strand id fits the header.
pub(crate) fn strand_id_fits(strand_id: &str) -> bool {
    !strand_id.is_empty() && strand_id.len() <= STRAND_ID_MAX_BYTES
}

/// Encodes a segment header. The caller checked `strand_id_fits`.
pub(crate) fn encode_segment_header(header: &SegmentHeader) -> [u8; SEGMENT_HEADER_BYTES] {
    assert!(
        strand_id_fits(&header.strand_id),
        "strand id was validated on create"
    );
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    let strand = header.strand_id.as_bytes();
    bytes[HEADER_MAGIC_OFFSET..HEADER_VERSION_OFFSET].copy_from_slice(&SEGMENT_MAGIC);
    bytes[HEADER_VERSION_OFFSET..HEADER_FIRST_SEQ_OFFSET]
        .copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[HEADER_FIRST_SEQ_OFFSET..HEADER_STRAND_LEN_OFFSET]
        .copy_from_slice(&header.first_sequence_no.to_le_bytes());
    bytes[HEADER_STRAND_LEN_OFFSET] = strand.len() as u8;
    bytes[HEADER_STRAND_OFFSET..HEADER_STRAND_OFFSET + strand.len()].copy_from_slice(strand);
    bytes[HEADER_SALT_OFFSET..HEADER_SALT_OFFSET + 8].copy_from_slice(&header.salt.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]);
    bytes[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes and checks a segment header.
pub(crate) fn decode_segment_header(
    bytes: &[u8; SEGMENT_HEADER_BYTES],
) -> Result<SegmentHeader, Defect> {
    if bytes[HEADER_MAGIC_OFFSET..HEADER_VERSION_OFFSET] != SEGMENT_MAGIC {
        return Err(Defect::BadSegmentHeader("bad magic"));
    }
    let stored_crc = read_u32(bytes, HEADER_CRC_OFFSET);
    if crc32fast::hash(&bytes[..HEADER_CRC_OFFSET]) != stored_crc {
        return Err(Defect::BadSegmentHeader("checksum mismatch"));
    }
    let version = read_u32(bytes, HEADER_VERSION_OFFSET);
    if version != FORMAT_VERSION {
        return Err(Defect::UnsupportedVersion { found: version });
    }
    let strand_len = usize::from(bytes[HEADER_STRAND_LEN_OFFSET]);
    if strand_len == 0 || strand_len > STRAND_ID_MAX_BYTES {
        return Err(Defect::BadSegmentHeader("strand id length out of range"));
    }
    let strand = &bytes[HEADER_STRAND_OFFSET..HEADER_STRAND_OFFSET + strand_len];
    let strand_id = std::str::from_utf8(strand)
        .map_err(|_| Defect::BadSegmentHeader("strand id is not UTF-8"))?
        .to_owned();
    Ok(SegmentHeader {
        first_sequence_no: read_u64(bytes, HEADER_FIRST_SEQ_OFFSET),
        strand_id,
        salt: read_u64(bytes, HEADER_SALT_OFFSET),
    })
}

/// Bytes a frame with this payload takes on disk.
pub(crate) fn frame_bytes(payload_bytes: usize) -> u64 {
    (FRAME_HEADER_BYTES + payload_bytes) as u64
}

/// Appends one frame of a segment salted `salt` to `out`. The caller checked the payload
/// against `FRAME_PAYLOAD_MAX_BYTES`.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    salt: u64,
    sequence_no: u64,
    durable_blocks: u64,
    payload: &[u8],
) {
    assert!(
        payload.len() <= FRAME_PAYLOAD_MAX_BYTES,
        "payload size was validated"
    );
    let start = out.len();
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&sequence_no.to_le_bytes());
    out.extend_from_slice(&durable_blocks.to_le_bytes());
    let crc = frame_crc(salt, &out[start..start + FRAME_CRC_OFFSET], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The fields of a frame header whose magic and length passed their checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_bytes: u32,
    pub sequence_no: u64,
    pub durable_blocks: u64,
    pub crc: u32,
}

/// Decodes a frame header, rejecting a bad magic or an oversized length before anything
/// is allocated for the payload.
pub(crate) fn decode_frame_header(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, Defect> {
    let magic = read_u32(bytes, FRAME_MAGIC_OFFSET);
    if magic != FRAME_MAGIC {
        return Err(Defect::BadMagic { found: magic });
    }
    let payload_bytes = read_u32(bytes, FRAME_LEN_OFFSET);
    if payload_bytes as usize > FRAME_PAYLOAD_MAX_BYTES {
        return Err(Defect::PayloadTooLarge { payload_bytes });
    }
    Ok(FrameHeader {
        payload_bytes,
        sequence_no: read_u64(bytes, FRAME_SEQ_OFFSET),
        durable_blocks: read_u64(bytes, FRAME_DURABLE_OFFSET),
        crc: read_u32(bytes, FRAME_CRC_OFFSET),
    })
}

/// Checks a complete frame (header plus exactly its payload) of a segment salted `salt`,
/// and its sequence number.
pub(crate) fn check_frame(
    frame: &[u8],
    salt: u64,
    expected_sequence_no: u64,
) -> Result<FrameHeader, Defect> {
    let header_bytes = frame_header_bytes(frame)?;
    let header = decode_frame_header(header_bytes)?;
    let extent_bytes = frame.len() as u64;
    let header_extent = frame_bytes(header.payload_bytes as usize);
    if extent_bytes != header_extent {
        return Err(Defect::WrongExtent {
            extent_bytes,
            header_bytes: header_extent,
        });
    }
    let computed = frame_crc(
        salt,
        &frame[..FRAME_CRC_OFFSET],
        &frame[FRAME_HEADER_BYTES..],
    );
    if computed != header.crc {
        return Err(Defect::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.sequence_no != expected_sequence_no {
        return Err(Defect::WrongSequence {
            expected: expected_sequence_no,
            found: header.sequence_no,
        });
    }
    Ok(header)
}

/// The header part of a frame buffer.
pub(crate) fn frame_header_bytes(frame: &[u8]) -> Result<&[u8; FRAME_HEADER_BYTES], Defect> {
    frame
        .get(..FRAME_HEADER_BYTES)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(Defect::ShortHeader {
            available_bytes: frame.len() as u64,
        })
}

/// CRC32 of the salt, the header fields before the CRC, then the payload.
fn frame_crc(salt: u64, header_before_crc: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(header_before_crc);
    hasher.update(payload);
    hasher.finalize()
}

/// Decodes index entries (whole entries only; a trailing partial entry is ignored).
pub(crate) fn decode_index(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(INDEX_ENTRY_BYTES)
        .map(|entry| read_u64(entry, 0))
        .collect()
}

/// Encodes index entries.
pub(crate) fn encode_index(offsets: &[u64], out: &mut Vec<u8>) {
    for offset in offsets {
        out.extend_from_slice(&offset.to_le_bytes());
    }
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

/// Reads a little-endian u64 at `offset` (the caller sized `bytes`).
pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0u8; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u64 = 0x5A17_5A17_0000_0001;

    fn header() -> SegmentHeader {
        SegmentHeader {
            first_sequence_no: 77,
            strand_id: "LxCf3qFhZDa3XTqbyhhH5P".to_owned(),
            salt: SALT,
        }
    }

    #[test]
    fn segment_header_round_trips() {
        let bytes = encode_segment_header(&header());
        assert_eq!(decode_segment_header(&bytes), Ok(header()));
    }

    #[test]
    fn segment_header_byte_map_matches_the_doc() {
        let bytes = encode_segment_header(&header());
        assert_eq!(&bytes[0..8], b"QUILLJNL");
        assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
        assert_eq!(&bytes[12..20], &77u64.to_le_bytes());
        assert_eq!(bytes[20], 22);
        assert_eq!(&bytes[21..43], b"LxCf3qFhZDa3XTqbyhhH5P");
        assert!(bytes[43..85].iter().all(|byte| *byte == 0));
        assert_eq!(&bytes[85..93], &SALT.to_le_bytes());
        assert!(bytes[93..124].iter().all(|byte| *byte == 0));
    }

    #[test]
    fn every_flipped_header_bit_is_detected() {
        let bytes = encode_segment_header(&header());
        for bit in 0..SEGMENT_HEADER_BYTES * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_segment_header(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn frame_byte_map_matches_the_doc() {
        let mut out = Vec::new();
        encode_frame(&mut out, SALT, 0x0102_0304_0506_0708, 0x0102_0304, b"abc");
        assert_eq!(out.len(), 31);
        assert_eq!(&out[0..4], b"QJFR");
        assert_eq!(&out[4..8], &3u32.to_le_bytes());
        assert_eq!(&out[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&out[16..24], &0x0102_0304u64.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&SALT.to_le_bytes());
        hasher.update(&out[0..24]);
        hasher.update(b"abc");
        assert_eq!(&out[24..28], &hasher.finalize().to_le_bytes());
        assert_eq!(&out[28..], b"abc");
    }

    #[test]
    fn frame_checks_catch_every_flipped_bit() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, SALT, 9, 4, b"payload bytes");
        assert!(check_frame(&frame, SALT, 9).is_ok());
        assert!(
            check_frame(&frame, SALT ^ 1, 9).is_err(),
            "a frame of another segment"
        );
        assert_eq!(
            check_frame(&frame, SALT, 10),
            Err(Defect::WrongSequence {
                expected: 10,
                found: 9
            })
        );
        for bit in 0..frame.len() * 8 {
            let mut damaged = frame.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(check_frame(&damaged, SALT, 9).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_reading_the_payload() {
        let mut frame = Vec::new();
        encode_frame(&mut frame, SALT, 0, 0, b"");
        let too_large = (FRAME_PAYLOAD_MAX_BYTES as u32) + 1;
        frame[4..8].copy_from_slice(&too_large.to_le_bytes());
        let header: &[u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES].try_into().unwrap();
        assert_eq!(
            decode_frame_header(header),
            Err(Defect::PayloadTooLarge {
                payload_bytes: too_large
            })
        );
    }

    #[test]
    fn index_round_trips() {
        let mut out = Vec::new();
        encode_index(&[128, 200, u64::MAX], &mut out);
        assert_eq!(out.len(), 24);
        out.push(7);
        assert_eq!(decode_index(&out), vec![128, 200, u64::MAX]);
    }
}
