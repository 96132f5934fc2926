//! Fast paths for the fixed-shape structs hashed on a ledger's commit path: the block header
//! ([`block_header_hash`](crate::block_header_hash)) and each revision's metadata.
//!
//! Hashing them through Ion values costs a few microseconds each (ion-rs builds the value,
//! then allocates for every escaped scalar), and a ledger hashes one header per committed
//! transaction on its serial path and one metadata struct per revision. Their shapes never
//! change: the header is `{strandId: string, sequenceNo: int, transactionId: string,
//! blockTimestamp: timestamp}`, a revision's metadata `{id: string, version: int, txTime:
//! timestamp, txId: string}`. So this computes the same Ion Hash 1.0 bytes directly: the field
//! hashes shared by a whole ledger or block once, the rest with a few small SHA-256 calls.
//! Tests check both against the Ion-value path on random values.

use ion_rs::{Element, Timestamp};
use sha2::{Digest as _, Sha256};

use crate::Hash;

/// Ion Hash markers and type/qualifier bytes.
const BEGIN: u8 = 0x0B;
const END: u8 = 0x0E;
const ESCAPE: u8 = 0x0C;
const TQ_POSITIVE_INT: u8 = 0x20;
const TQ_TIMESTAMP: u8 = 0x60;
const TQ_SYMBOL: u8 = 0x70;
const TQ_STRING: u8 = 0x80;
const TQ_STRUCT: u8 = 0xD0;

fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b == BEGIN || b == END || b == ESCAPE {
            out.push(ESCAPE);
        }
        out.push(b);
    }
}

/// `s(v)` of a scalar: `0x0B ‖ TQ ‖ escape(representation) ‖ 0x0E`.
fn push_scalar(out: &mut Vec<u8>, tq: u8, representation: &[u8]) {
    out.push(BEGIN);
    out.push(tq);
    push_escaped(out, representation);
    out.push(END);
}

/// `SHA-256(s(name as symbol) ‖ s(value))`: the hash of one struct field.
fn field_hash(name: &str, tq: u8, representation: &[u8]) -> Hash {
    let mut bytes = Vec::with_capacity(name.len() + representation.len() + 16);
    push_scalar(&mut bytes, TQ_SYMBOL, name.as_bytes());
    push_scalar(&mut bytes, tq, representation);
    Hash(Sha256::digest(&bytes).into())
}

/// The Ion binary representation of a timestamp (its value bytes, without the type
/// descriptor), taken from ion-rs's own encoding so precision and offset rules stay ion-rs's.
fn timestamp_representation(timestamp: &Timestamp) -> Vec<u8> {
    let encoded = Element::timestamp(timestamp.clone())
        .encode_as(ion_rs::v1_0::Binary)
        .expect("a timestamp always encodes");
    // Skip the version marker, then the type descriptor and its length.
    let value = &encoded[4..];
    let length_nibble = value[0] & 0x0F;
    let mut at = 1;
    if length_nibble == 0x0E {
        // VarUInt length: the last byte has its high bit set.
        while value[at] & 0x80 == 0 {
            at += 1;
        }
        at += 1;
    }
    value[at..].to_vec()
}

/// Computes a ledger's block header hashes; equal to
/// [`block_header_hash`](crate::block_header_hash) for the same arguments.
#[derive(Debug, Clone)]
pub struct BlockHeaderHasher {
    strand_field: Hash,
    /// The last timestamp seen and its field hash (blocks of the same millisecond share it).
    timestamp_field: Option<(Timestamp, Hash)>,
}

impl BlockHeaderHasher {
    /// A hasher for the blocks of strand `strand_id`.
    pub fn new(strand_id: &str) -> BlockHeaderHasher {
        BlockHeaderHasher {
            strand_field: field_hash("strandId", TQ_STRING, strand_id.as_bytes()),
            timestamp_field: None,
        }
    }

    /// `H({strandId, sequenceNo, transactionId, blockTimestamp})`.
    pub fn hash(
        &mut self,
        sequence_no: u64,
        transaction_id: &str,
        block_timestamp: &Timestamp,
    ) -> Hash {
        let timestamp_field = match &self.timestamp_field {
            Some((cached, hash)) if ion_rs::IonData::eq(cached, block_timestamp) => *hash,
            _ => {
                let hash = field_hash(
                    "blockTimestamp",
                    TQ_TIMESTAMP,
                    &timestamp_representation(block_timestamp),
                );
                self.timestamp_field = Some((block_timestamp.clone(), hash));
                hash
            }
        };
        struct_hash([
            self.strand_field,
            uint_field_hash("sequenceNo", sequence_no),
            field_hash("transactionId", TQ_STRING, transaction_id.as_bytes()),
            timestamp_field,
        ])
    }
}

/// `SHA-256(s(name) ‖ s(value))` of a field holding a non-negative int: its representation is
/// the big-endian magnitude without leading zero bytes (none at all for 0).
fn uint_field_hash(name: &str, value: u64) -> Hash {
    let magnitude = value.to_be_bytes();
    let first_significant = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    field_hash(name, TQ_POSITIVE_INT, &magnitude[first_significant..])
}

/// The Ion hash of a struct of four fields, from their field hashes.
fn struct_hash(mut fields: [Hash; 4]) -> Hash {
    // Ion Hash sorts field hashes as unsigned bytes from byte 0.
    fields.sort_unstable_by_key(|field| field.0);
    let mut bytes = Vec::with_capacity(2 + 4 * 40 + 1);
    bytes.push(BEGIN);
    bytes.push(TQ_STRUCT);
    for field in &fields {
        push_escaped(&mut bytes, &field.0);
    }
    bytes.push(END);
    Hash(Sha256::digest(&bytes).into())
}

/// Computes the hashes of one block's revision metadata, `H({id, version, txTime, txId})`:
/// equal to the Ion hash of that struct with `version` an int and `txTime` a timestamp. Every
/// revision of a block shares `txTime` and `txId`, so their field hashes are computed once.
#[derive(Debug, Clone)]
pub struct RevisionMetadataHasher {
    tx_time_field: Hash,
    tx_id_field: Hash,
}

impl RevisionMetadataHasher {
    /// A hasher for the revisions committed at `tx_time` by transaction `transaction_id`.
    pub fn new(tx_time: &Timestamp, transaction_id: &str) -> RevisionMetadataHasher {
        RevisionMetadataHasher {
            tx_time_field: field_hash("txTime", TQ_TIMESTAMP, &timestamp_representation(tx_time)),
            tx_id_field: field_hash("txId", TQ_STRING, transaction_id.as_bytes()),
        }
    }

    /// The metadata hash of version `version` of document `document_id`.
    pub fn hash(&self, document_id: &str, version: u64) -> Hash {
        struct_hash([
            field_hash("id", TQ_STRING, document_id.as_bytes()),
            uint_field_hash("version", version),
            self.tx_time_field,
            self.tx_id_field,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn timestamp(millis: u64) -> Timestamp {
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1970 + (millis / 1000 / 86_400 / 372) % 8000,
            1 + (millis / 7) % 12,
            1 + (millis / 13) % 28,
            (millis / 17) % 24,
            (millis / 19) % 60,
            (millis / 23) % 60,
            millis % 1000
        );
        Element::read_one(text.as_bytes())
            .unwrap()
            .as_timestamp()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn equals_the_ion_value_path(sequence_no in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), 0u64..300], millis in any::<u64>(), tx in "[A-Za-z0-9]{22}") {
            let ts = timestamp(millis);
            let strand = "KmA3ZZca7vAIiJAK9S5Iwl";
            let mut hasher = BlockHeaderHasher::new(strand);
            let expected = crate::block_header_hash(strand, sequence_no, &tx, &ts);
            prop_assert_eq!(hasher.hash(sequence_no, &tx, &ts), expected);
            // The cached timestamp path gives the same answer.
            prop_assert_eq!(hasher.hash(sequence_no, &tx, &ts), expected);
        }
    }

    #[test]
    fn special_bytes_and_precisions_are_escaped_like_ion_hash() {
        let mut hasher = BlockHeaderHasher::new("S");
        for text in [
            "2019-09-16T19:37:05.344Z",
            "2019-09-16T19:37:05.000Z",
            "2019-09-16T19:37:05Z",
            "2001T",
            "2017-08-21T",
            "2019-09-16T19:37:05.344-08:00",
        ] {
            let ts = Element::read_one(text.as_bytes())
                .unwrap()
                .as_timestamp()
                .unwrap();
            for seq in [0u64, 11, 12, 14, 0x0B0C0E, 1 << 40] {
                assert_eq!(
                    hasher.hash(seq, "\u{b}\u{c}\u{e}x", &ts),
                    crate::block_header_hash("S", seq, "\u{b}\u{c}\u{e}x", &ts),
                    "{text} {seq}"
                );
            }
        }
    }
}
