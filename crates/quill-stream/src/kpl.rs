//! The Kinesis Producer Library's aggregated record format, which QLDB streams use when
//! `AggregationEnabled` is on and which the KCL and `aws-kinesis-agg` deaggregate:
//! magic `F3 89 9A C2` ‖ protobuf `AggregatedRecord` ‖ MD5 of the protobuf bytes
//! (awslabs/amazon-kinesis-producer `aggregation-format.md`).
//!
//! The message is small and fixed, so it is hand-encoded:
//! `AggregatedRecord{repeated string partition_key_table = 1; repeated string
//! explicit_hash_key_table = 2; repeated Record records = 3}`,
//! `Record{required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//! required bytes data = 3; repeated Tag tags = 4}`. Every record of a Quill aggregate shares
//! one partition key (the ledger's strand id), so the key table has one entry.

use md5::{Digest, Md5};

/// Leading bytes of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Kinesis's limit on one record: data plus partition key.
pub const KINESIS_RECORD_MAX: usize = 1024 * 1024;

const MD5_LEN: usize = 16;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encoded length of the inner `Record` holding `data` (key index 0).
fn inner_len(data: &[u8]) -> usize {
    2 + 1 + varint_len(data.len() as u64) + data.len()
}

/// Bytes a record adds to an aggregate: its field tag, length and body.
fn entry_len(data: &[u8]) -> usize {
    let inner = inner_len(data);
    1 + varint_len(inner as u64) + inner
}

/// One aggregated record of `records`, all under `partition_key`.
pub fn aggregate(partition_key: &str, records: &[&[u8]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(
        partition_key.len() + 8 + records.iter().map(|r| entry_len(r)).sum::<usize>(),
    );
    put_bytes_field(&mut message, 1, partition_key.as_bytes());
    for data in records {
        // The inner `Record` is written in place: its length is known up front.
        put_varint(&mut message, 3 << 3 | 2);
        put_varint(&mut message, inner_len(data) as u64);
        // partition_key_index = 0
        message.extend_from_slice(&[0x08, 0x00]);
        put_bytes_field(&mut message, 3, data);
    }
    let mut out = Vec::with_capacity(MAGIC.len() + message.len() + MD5_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&message);
    out.extend_from_slice(&Md5::digest(&message));
    out
}

/// Packs `records` in order into Kinesis record payloads of at most [`KINESIS_RECORD_MAX`]
/// bytes (partition key included). As the KPL does, a payload holding a single record is sent
/// as the record itself, not aggregated; a record too large to share a payload travels alone.
pub fn pack(partition_key: &str, records: &[&[u8]]) -> Vec<Vec<u8>> {
    let overhead = partition_key.len() + MAGIC.len() + MD5_LEN + 2 + partition_key.len() + 4;
    let mut payloads = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size = overhead;
        while end < records.len()
            && (end == start || size + entry_len(records[end]) <= KINESIS_RECORD_MAX)
        {
            size += entry_len(records[end]);
            end += 1;
        }
        payloads.push(if end - start == 1 {
            records[start].to_vec()
        } else {
            aggregate(partition_key, &records[start..end])
        });
        start = end;
    }
    payloads
}

/// Reads a varint at `*at`; `None` past the end or beyond 64 bits.
fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

/// A protobuf field's value: length-delimited bytes, or a varint.
type FieldValue<'a> = Result<&'a [u8], u64>;

/// The fields of a protobuf message (length-delimited and varint ones) with their numbers.
fn read_fields(message: &[u8]) -> Option<Vec<(u64, FieldValue<'_>)>> {
    let mut at = 0;
    let mut fields = Vec::new();
    while at < message.len() {
        let key = read_varint(message, &mut at)?;
        match key & 7 {
            0 => fields.push((key >> 3, Err(read_varint(message, &mut at)?))),
            2 => {
                let len = usize::try_from(read_varint(message, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|end| *end <= message.len())?;
                fields.push((key >> 3, Ok(&message[at..end])));
                at = end;
            }
            _ => return None,
        }
    }
    Some(fields)
}

/// The user records of a Kinesis record payload, as the KCL sees them: the records of an
/// aggregated payload (magic and MD5 checked), or the payload itself when it is not one.
pub fn deaggregate(payload: &[u8]) -> Vec<Vec<u8>> {
    let aggregated = payload.len() >= MAGIC.len() + MD5_LEN && payload[..MAGIC.len()] == MAGIC;
    let records = aggregated
        .then(|| {
            let message = &payload[MAGIC.len()..payload.len() - MD5_LEN];
            if payload[payload.len() - MD5_LEN..] != Md5::digest(message)[..] {
                return None;
            }
            read_fields(message)?
                .into_iter()
                .filter(|(number, _)| *number == 3)
                .map(|(_, body)| {
                    let inner = read_fields(body.ok()?)?;
                    inner
                        .into_iter()
                        .find(|(number, _)| *number == 3)
                        .and_then(|(_, data)| data.ok().map(<[u8]>::to_vec))
                })
                .collect::<Option<Vec<_>>>()
        })
        .flatten();
    // As the KCL does, anything that is not a valid aggregate is one plain record.
    records.unwrap_or_else(|| vec![payload.to_vec()])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a varint at `*at`.
    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let b = bytes[*at];
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return value;
            }
            shift += 7;
        }
    }

    /// A protobuf reader independent of the encoder: (field number, wire type, payload).
    fn fields(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            match key & 7 {
                0 => out.push((key >> 3, 0, varint(bytes, &mut at).to_le_bytes().to_vec())),
                2 => {
                    let len = varint(bytes, &mut at) as usize;
                    out.push((key >> 3, 2, bytes[at..at + len].to_vec()));
                    at += len;
                }
                other => panic!("unexpected wire type {other}"),
            }
        }
        out
    }

    #[test]
    fn aggregate_has_magic_protobuf_and_md5() {
        let big = vec![7u8; 300];
        let out = aggregate("HbD9IggL584EPHmfwjmVz0", &[b"first", &big]);
        assert_eq!(out[..4], MAGIC);
        let message = &out[4..out.len() - 16];
        assert_eq!(out[out.len() - 16..], Md5::digest(message)[..]);
        let top = fields(message);
        assert_eq!(top[0], (1, 2, b"HbD9IggL584EPHmfwjmVz0".to_vec()));
        let datas: Vec<Vec<u8>> = top[1..]
            .iter()
            .map(|(number, wire, body)| {
                assert_eq!((*number, *wire), (3, 2));
                let inner = fields(body);
                assert_eq!(inner[0], (1, 0, 0u64.to_le_bytes().to_vec()));
                assert_eq!((inner[1].0, inner[1].1), (3, 2));
                inner[1].2.clone()
            })
            .collect();
        assert_eq!(datas, vec![b"first".to_vec(), big]);
    }

    #[test]
    fn deaggregate_inverts_pack_and_passes_plain_records_through() {
        let records: Vec<Vec<u8>> = (0..50u8).map(|n| vec![n; 100 + n as usize * 40]).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let payloads = pack("key", &refs);
        let back: Vec<Vec<u8>> = payloads.iter().flat_map(|p| deaggregate(p)).collect();
        assert_eq!(back, records);
        assert_eq!(deaggregate(b"plain"), vec![b"plain".to_vec()]);
        let mut corrupt = aggregate("key", &refs[..2]);
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(
            deaggregate(&corrupt),
            vec![corrupt.clone()],
            "bad MD5: not an aggregate"
        );
    }

    #[test]
    fn varint_lengths_match_encoding() {
        for value in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }

    #[test]
    fn pack_splits_at_the_kinesis_limit_and_sends_singletons_raw() {
        let record = vec![1u8; 300 * 1024];
        let records: Vec<&[u8]> = vec![&record; 7];
        let payloads = pack("P", &records);
        // Three 300 KiB records fit in 1 MiB, a fourth does not: 3 + 3 + 1.
        assert_eq!(payloads.len(), 3);
        // "P" is the one-byte partition key the limit also counts.
        assert!(payloads
            .iter()
            .all(|p| p.len() + "P".len() <= KINESIS_RECORD_MAX));
        assert_eq!(payloads[0][..4], MAGIC);
        assert_eq!(payloads[2], record, "a lone record is not aggregated");
        assert_eq!(pack("P", &[b"x"]), vec![b"x".to_vec()]);
        assert!(pack("P", &[]).is_empty());
    }
}
