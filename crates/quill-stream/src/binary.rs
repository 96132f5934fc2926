//! Just enough Ion 1.0 binary to build stream records around Ion the journal already stores,
//! copying it instead of decoding it into `Element`s and encoding it again.
//!
//! A stored piece (a document, a block's `transactionInfo`) is one Ion binary stream as ion-rs
//! wrote it: the version marker, local symbol tables, one value. Its value refers to symbols by
//! id, so it can only be copied verbatim behind the same symbol table. A record therefore
//! starts with the piece's symbol tables (copied as they are), then appends its own field
//! names with a second table (`imports: $ion_symbol_table`, as ion-rs itself writes every
//! table), whose ids follow the piece's. Anything else (shared-table imports, a version
//! marker or a second value inside the piece) is refused with `None`, and the caller builds
//! the record the slow way. The copied value itself is not walked: its symbol ids are trusted
//! to lie within its own table, as ion-rs wrote it from an `Element` at commit (the journal's
//! frame checksums guard the bytes since).

use std::sync::OnceLock;

use quill_ledger::ion_binary::{
    StoredValue, L_VAR, SID_IMPORTS, SID_ION_SYMBOL_TABLE, SID_SYMBOLS, T_ANNOTATION, T_BLOB,
    T_LIST, T_POS_INT, T_STRING, T_STRUCT, T_SYMBOL, T_TIMESTAMP, VERSION_MARKER as IVM,
};

/// A stored Ion value and the symbol tables in front of it, which a record copies verbatim.
#[derive(Debug)]
pub struct StoredIon<'a>(StoredValue<'a>);

impl<'a> StoredIon<'a> {
    /// Splits `bytes`, one Ion binary stream of local symbol tables and one value; `None`
    /// when it is anything else.
    pub fn parse(bytes: &'a [u8]) -> Option<StoredIon<'a>> {
        StoredValue::parse(bytes)
            .filter(|stored| stored.rest.is_empty())
            .map(StoredIon)
    }

    /// The id the record's own symbols start at, after the piece's.
    fn next_id(&self) -> u64 {
        self.0.symbols.next_id()
    }

    /// `(documentId, tableName, tableId)` of each entry of `transactionInfo.documents`, when
    /// this is a `transactionInfo`.
    pub fn document_tables(&self) -> Option<Vec<(&'a str, &'a str, &'a str)>> {
        let symbols = &self.0.symbols;
        let (_, documents) = self
            .0
            .value
            .as_struct()?
            .find(|(field, _)| symbols.text(*field) == Some("documents"))?;
        documents
            .as_struct()?
            .map(|(field, document)| {
                let (mut name, mut id) = (None, None);
                for (field, value) in document.as_struct()? {
                    match symbols.text(field) {
                        Some("tableName") => name = name.or(value.as_str()),
                        Some("tableId") => id = id.or(value.as_str()),
                        _ => {}
                    }
                }
                Some((symbols.text(field)?, name?, id?))
            })
            .collect()
    }
}

/// Field names of the records' own structs.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    QldbStreamArn,
    RecordType,
    Payload,
    TableInfo,
    TableName,
    TableId,
    Revision,
    BlockAddress,
    StrandId,
    SequenceNo,
    Hash,
    Data,
    DataHash,
    Metadata,
    Id,
    Version,
    TxTime,
    TxId,
    TransactionId,
    BlockTimestamp,
    BlockHash,
    EntriesHash,
    PreviousBlockHash,
    EntriesHashList,
    TransactionInfo,
    RedactionInfo,
    Revisions,
    RevisionSummaries,
    DocumentId,
}

const NAME_COUNT: usize = Field::DocumentId as usize + 1;

impl Field {
    fn text(self) -> &'static str {
        match self {
            Field::QldbStreamArn => "qldbStreamArn",
            Field::RecordType => "recordType",
            Field::Payload => "payload",
            Field::TableInfo => "tableInfo",
            Field::TableName => "tableName",
            Field::TableId => "tableId",
            Field::Revision => "revision",
            Field::BlockAddress => "blockAddress",
            Field::StrandId => "strandId",
            Field::SequenceNo => "sequenceNo",
            Field::Hash => "hash",
            Field::Data => "data",
            Field::DataHash => "dataHash",
            Field::Metadata => "metadata",
            Field::Id => "id",
            Field::Version => "version",
            Field::TxTime => "txTime",
            Field::TxId => "txId",
            Field::TransactionId => "transactionId",
            Field::BlockTimestamp => "blockTimestamp",
            Field::BlockHash => "blockHash",
            Field::EntriesHash => "entriesHash",
            Field::PreviousBlockHash => "previousBlockHash",
            Field::EntriesHashList => "entriesHashList",
            Field::TransactionInfo => "transactionInfo",
            Field::RedactionInfo => "redactionInfo",
            Field::Revisions => "revisions",
            Field::RevisionSummaries => "revisionSummaries",
            Field::DocumentId => "documentId",
        }
    }
}

/// The kinds of record, each appending a table of only the names it uses: every record
/// carries its table, so unused names would cost bytes in every record.
#[derive(Debug, Clone, Copy)]
pub enum FieldTable {
    RevisionDetails,
    /// Of a redacted revision (`dataHash`, no `data`).
    RedactedRevisionDetails,
    BlockSummary,
    /// Of a block with `redactionInfo`.
    RedactingBlockSummary,
}

const REVISION_DETAILS_NAMES: [Field; 17] = [
    Field::QldbStreamArn,
    Field::RecordType,
    Field::Payload,
    Field::TableInfo,
    Field::TableName,
    Field::TableId,
    Field::Revision,
    Field::BlockAddress,
    Field::StrandId,
    Field::SequenceNo,
    Field::Hash,
    Field::Data,
    Field::Metadata,
    Field::Id,
    Field::Version,
    Field::TxTime,
    Field::TxId,
];

const BLOCK_SUMMARY_NAMES: [Field; 16] = [
    Field::QldbStreamArn,
    Field::RecordType,
    Field::Payload,
    Field::BlockAddress,
    Field::StrandId,
    Field::SequenceNo,
    Field::TransactionId,
    Field::BlockTimestamp,
    Field::BlockHash,
    Field::EntriesHash,
    Field::PreviousBlockHash,
    Field::EntriesHashList,
    Field::TransactionInfo,
    Field::RevisionSummaries,
    Field::Hash,
    Field::DocumentId,
];

const REDACTION_INFO_NAMES: [Field; 4] = [
    Field::RedactionInfo,
    Field::Revisions,
    Field::TableId,
    Field::Version,
];

/// A kind of record's appended symbol table, encoded, and each name's place in it.
struct NameTable {
    /// `$ion_symbol_table::{imports: $ion_symbol_table, symbols: [...]}`.
    encoded: Vec<u8>,
    places: [Option<u8>; NAME_COUNT],
}

impl NameTable {
    fn new(names: &[&[Field]]) -> NameTable {
        let names: Vec<Field> = names.concat();
        let mut places = [None; NAME_COUNT];
        for (place, name) in names.iter().enumerate() {
            places[*name as usize] = Some(place as u8);
        }
        let mut w = Writer {
            out: Vec::new(),
            first_name_id: 0,
            places: &[None; NAME_COUNT],
            open: Vec::new(),
        };
        w.open();
        w.var_uint(SID_IMPORTS);
        w.out
            .extend_from_slice(&[T_SYMBOL << 4 | 1, SID_ION_SYMBOL_TABLE as u8]);
        w.var_uint(SID_SYMBOLS);
        w.open();
        for name in &names {
            w.string(name.text());
        }
        w.close(T_LIST);
        w.close(T_STRUCT);
        let table = std::mem::take(&mut w.out);
        // The annotation wrapper: annotations' length (1 byte), `$ion_symbol_table`, the table.
        w.open();
        w.out
            .extend_from_slice(&[0x81, 0x80 | SID_ION_SYMBOL_TABLE as u8]);
        w.out.extend_from_slice(&table);
        w.close(T_ANNOTATION);
        NameTable {
            encoded: w.out,
            places,
        }
    }
}

impl FieldTable {
    fn table(self) -> &'static NameTable {
        static TABLES: [OnceLock<NameTable>; 4] = [const { OnceLock::new() }; 4];
        TABLES[self as usize].get_or_init(|| match self {
            FieldTable::RevisionDetails => NameTable::new(&[&REVISION_DETAILS_NAMES]),
            FieldTable::RedactedRevisionDetails => {
                NameTable::new(&[&REVISION_DETAILS_NAMES, &[Field::DataHash]])
            }
            FieldTable::BlockSummary => NameTable::new(&[&BLOCK_SUMMARY_NAMES]),
            FieldTable::RedactingBlockSummary => {
                NameTable::new(&[&BLOCK_SUMMARY_NAMES, &REDACTION_INFO_NAMES])
            }
        })
    }
}

/// Writes one record: a top-level value behind the symbol tables of at most one stored piece
/// and the records' own names.
pub struct Writer {
    out: Vec<u8>,
    first_name_id: u64,
    /// Each name's place in the record's appended table.
    places: &'static [Option<u8>; NAME_COUNT],
    /// Where each open container's body starts (its header is inserted when it closes).
    open: Vec<usize>,
}

impl Writer {
    /// A record using `names`, whose one spliced value, if any, is `piece`'s.
    pub fn new(piece: Option<&StoredIon<'_>>, names: FieldTable, capacity: usize) -> Writer {
        let table = names.table();
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(&IVM);
        if let Some(piece) = piece {
            out.extend_from_slice(piece.0.symbol_tables);
        }
        out.extend_from_slice(&table.encoded);
        Writer {
            out,
            first_name_id: piece.map_or(10, StoredIon::next_id),
            places: &table.places,
            open: Vec::new(),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        debug_assert!(self.open.is_empty(), "every container closed");
        self.out
    }

    fn var_uint(&mut self, value: u64) {
        let groups = (64 - value.max(1).leading_zeros()).div_ceil(7);
        for group in (0..groups).rev() {
            let bits = (value >> (group * 7)) as u8 & 0x7F;
            self.out.push(if group == 0 { bits | 0x80 } else { bits });
        }
    }

    fn header(&mut self, type_code: u8, len: usize) {
        // A struct's L = 1 means "sorted, length follows": a 1-byte body takes the long form.
        if len < usize::from(L_VAR) && !(type_code == T_STRUCT && len == 1) {
            self.out.push(type_code << 4 | len as u8);
        } else {
            self.out.push(type_code << 4 | L_VAR);
            self.var_uint(len as u64);
        }
    }

    pub fn field(&mut self, name: Field) {
        let place = self.places[name as usize].expect("the record's table lists its names");
        self.var_uint(self.first_name_id + u64::from(place));
    }

    pub fn string(&mut self, text: &str) {
        self.header(T_STRING, text.len());
        self.out.extend_from_slice(text.as_bytes());
    }

    pub fn uint(&mut self, value: u64) {
        // Zero as one zero byte, as ion-rs writes it.
        let len = (8 - value.leading_zeros() / 8).max(1) as usize;
        self.header(T_POS_INT, len);
        self.out.extend_from_slice(&value.to_be_bytes()[8 - len..]);
    }

    pub fn blob(&mut self, bytes: &[u8]) {
        self.header(T_BLOB, bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// The spliced piece's value, verbatim.
    pub fn stored(&mut self, piece: &StoredIon<'_>) {
        self.out.extend_from_slice(piece.0.value.whole);
    }

    /// A UTC timestamp of millisecond precision, `millis` since the epoch, as ion-rs encodes
    /// `quill_ledger::timestamp_from_millis(millis)`.
    pub fn timestamp(&mut self, millis: i64) {
        let seconds = millis.div_euclid(1000);
        let ms = millis.rem_euclid(1000) as u64;
        let secs_of_day = seconds.rem_euclid(86_400) as u64;
        let (year, month, day) =
            quill_ledger::calendar::civil_from_days(seconds.div_euclid(86_400));
        self.open();
        // Offset +00:00 (VarInt 0), then the UTC fields as VarUInts.
        self.out.push(0x80);
        for part in [
            year as u64,
            u64::from(month),
            u64::from(day),
            secs_of_day / 3600,
            secs_of_day / 60 % 60,
            secs_of_day % 60,
        ] {
            self.var_uint(part);
        }
        // Fraction: exponent -3 (VarInt), then the coefficient as a signed-magnitude Int,
        // left out when zero.
        self.out.push(0xC3);
        if ms > 0 {
            let bytes = (ms as u16).to_be_bytes();
            self.out
                .extend_from_slice(if ms < 0x80 { &bytes[1..] } else { &bytes });
        }
        self.close(T_TIMESTAMP);
    }

    /// Starts a container; its fields or elements follow, then [`Writer::close`].
    pub fn open(&mut self) {
        self.open.push(self.out.len());
    }

    /// Ends the innermost container as a `type_code` value.
    pub fn close(&mut self, type_code: u8) {
        let start = self.open.pop().expect("a container is open");
        let len = self.out.len() - start;
        let body_end = self.out.len();
        self.header(type_code, len);
        // The header went after the body: rotate it in front.
        self.out[start..].rotate_left(body_end - start);
    }

    pub fn close_struct(&mut self) {
        self.close(T_STRUCT);
    }

    pub fn close_list(&mut self) {
        self.close(T_LIST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ion_rs::Element;

    fn encode(text: &str) -> Vec<u8> {
        Element::read_one(text.as_bytes())
            .unwrap()
            .encode_as(ion_rs::v1_0::Binary)
            .unwrap()
    }

    #[test]
    fn timestamps_encode_as_ion_rs_does() {
        for millis in [
            0i64,
            1,
            127,
            128,
            200,
            999,
            1_000,
            1_568_662_625_344,
            951_782_400_123,
            4_102_444_799_999,
            253_402_300_799_999,
        ] {
            let mut w = Writer::new(None, FieldTable::RevisionDetails, 0);
            let start = w.out.len();
            w.timestamp(millis);
            let expected = Element::timestamp(quill_ledger::timestamp_from_millis(millis).unwrap())
                .encode_as(ion_rs::v1_0::Binary)
                .unwrap();
            assert_eq!(w.out[start..], expected[IVM.len()..], "{millis}");
        }
    }

    #[test]
    fn scalars_and_containers_encode_as_ion_rs_does() {
        for (value, expected) in [
            (0u64, "0"),
            (1, "1"),
            (255, "255"),
            (256, "256"),
            (u64::MAX, "18446744073709551615"),
        ] {
            let mut w = Writer::new(None, FieldTable::RevisionDetails, 0);
            let start = w.out.len();
            w.uint(value);
            assert_eq!(w.out[start..], encode(expected)[IVM.len()..], "{value}");
        }
        let long = "x".repeat(300);
        let mut w = Writer::new(None, FieldTable::RevisionDetails, 0);
        let start = w.out.len();
        w.open();
        w.string(&long);
        w.blob(&[7; 13]);
        w.blob(&[8; 14]);
        w.open();
        w.close_list();
        w.close_list();
        let expected = Element::from(
            Element::sequence_builder()
                .push(Element::string(long.as_str()))
                .push(Element::blob([7; 13]))
                .push(Element::blob([8; 14]))
                .push(Element::from(Element::sequence_builder().build_list()))
                .build_list(),
        )
        .encode_as(ion_rs::v1_0::Binary)
        .unwrap();
        assert_eq!(w.out[start..], expected[IVM.len()..]);
    }

    #[test]
    fn a_record_around_a_stored_value_decodes_to_the_same_value() {
        let document =
            "{VIN: \"1N4AL11D75C109151\", tags: [red, 'blue'::x], nested: {id: 7, n: null.symbol}}";
        let stored = encode(document);
        let piece = StoredIon::parse(&stored).unwrap();
        let mut w = Writer::new(Some(&piece), FieldTable::RevisionDetails, 0);
        w.open();
        w.field(Field::Id);
        w.string("one");
        w.field(Field::Data);
        w.stored(&piece);
        w.close_struct();
        let record = Element::read_one(w.finish()).unwrap();
        let expected =
            Element::read_one(format!("{{id: \"one\", data: {document}}}").as_bytes()).unwrap();
        assert_eq!(record, expected);
    }

    #[test]
    fn transaction_info_documents_are_found() {
        let stored = encode(
            "{statements: [], documents: {AAAAAAAAAAAAAAAAAAAAAA: {tableName: \"Car\", tableId: \"TTTTTTTTTTTTTTTTTTTTTT\", statements: [0]}, \
              BBBBBBBBBBBBBBBBBBBBBB: {tableId: \"UUUUUUUUUUUUUUUUUUUUUU\", tableName: \"Person\"}}}",
        );
        let piece = StoredIon::parse(&stored).unwrap();
        assert_eq!(
            piece.document_tables().unwrap(),
            vec![
                ("AAAAAAAAAAAAAAAAAAAAAA", "Car", "TTTTTTTTTTTTTTTTTTTTTT"),
                ("BBBBBBBBBBBBBBBBBBBBBB", "Person", "UUUUUUUUUUUUUUUUUUUUUU"),
            ]
        );
        let no_documents = encode("{statements: []}");
        assert!(StoredIon::parse(&no_documents)
            .unwrap()
            .document_tables()
            .is_none());
    }

    #[test]
    fn pieces_it_cannot_copy_are_refused() {
        // Two values, no version marker, truncation.
        let mut two = encode("{a: 1}");
        two.push(0x20);
        assert!(StoredIon::parse(&two).is_none());
        let mut again = encode("{a: 1}");
        again.extend_from_slice(&encode("{b: 2}"));
        assert!(StoredIon::parse(&again).is_none());
        let stored = encode("{a: 1}");
        assert!(StoredIon::parse(&stored[IVM.len()..]).is_none());
        assert!(StoredIon::parse(&stored[..stored.len() - 1]).is_none());
        // A table importing a shared table: its symbols are unknown here.
        let mut shared = IVM.to_vec();
        // $ion_symbol_table::{imports: [{name: "s", version: 1, max_id: 1}], symbols: []}
        shared.extend_from_slice(&[
            0xEE, 0x92, 0x81, 0x83, 0xDE, 0x8E, 0x86, 0xBA, 0xD9, 0x84, 0x81, b's', 0x85, 0x21,
            0x01, 0x88, 0x21, 0x01, 0x87, 0xB0,
        ]);
        shared.extend_from_slice(&[0xD2, 0x8A, 0x20]);
        assert!(StoredIon::parse(&shared).is_none());
    }
}
