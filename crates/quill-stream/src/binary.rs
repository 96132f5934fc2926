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

/// Ion 1.0 binary version marker.
const IVM: [u8; 4] = [0xE0, 0x01, 0x00, 0xEA];
/// Ids of the system symbols this module uses.
const SID_ION_SYMBOL_TABLE: u64 = 3;
const SID_IMPORTS: u64 = 6;
const SID_SYMBOLS: u64 = 7;
/// The system symbol table's texts, ids 1 to 9.
const SYSTEM_SYMBOLS: [&str; 9] = [
    "$ion",
    "$ion_1_0",
    "$ion_symbol_table",
    "name",
    "version",
    "imports",
    "symbols",
    "max_id",
    "$ion_shared_symbol_table",
];

/// Type codes (the high nibble of a type descriptor).
const T_NULL: u8 = 0x0;
const T_BOOL: u8 = 0x1;
const T_POS_INT: u8 = 0x2;
const T_TIMESTAMP: u8 = 0x6;
const T_SYMBOL: u8 = 0x7;
const T_STRING: u8 = 0x8;
const T_BLOB: u8 = 0xA;
const T_LIST: u8 = 0xB;
const T_STRUCT: u8 = 0xD;
const T_ANNOTATION: u8 = 0xE;
/// Length nibbles with a meaning of their own.
const L_VAR: u8 = 14;
const L_NULL: u8 = 15;

/// One encoded value inside a byte slice.
#[derive(Debug, Clone, Copy)]
struct Value<'a> {
    type_code: u8,
    /// The type descriptor's length nibble.
    nibble: u8,
    /// The value's representation (after its type descriptor and length).
    body: &'a [u8],
}

impl<'a> Value<'a> {
    fn is_null(&self) -> bool {
        self.nibble == L_NULL
    }

    /// A NOP pad: skipped wherever it appears.
    fn is_pad(&self) -> bool {
        self.type_code == T_NULL && self.nibble != L_NULL
    }

    fn as_struct(&self) -> Option<Fields<'a>> {
        (self.type_code == T_STRUCT && !self.is_null()).then_some(Fields { bytes: self.body })
    }

    fn as_str(&self) -> Option<&'a str> {
        (self.type_code == T_STRING && !self.is_null())
            .then(|| std::str::from_utf8(self.body).ok())
            .flatten()
    }
}

/// Reads a VarUInt (7 bits a byte, the last byte flagged by its high bit) at `*at`.
fn read_var_uint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    // 9 bytes hold 63 bits: more is not a length or id this module can use.
    for _ in 0..9 {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value = value << 7 | u64::from(byte & 0x7F);
        if byte & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

/// Reads the value at `*at`, moving past it.
fn read_value<'a>(bytes: &'a [u8], at: &mut usize) -> Option<Value<'a>> {
    let descriptor = *bytes.get(*at)?;
    *at += 1;
    let (type_code, nibble) = (descriptor >> 4, descriptor & 0x0F);
    let len = match (type_code, nibble) {
        (0xF, _) => return None,
        (T_BOOL, _) | (_, L_NULL) => 0,
        // A struct with L = 1 has sorted fields and a VarUInt length.
        (T_STRUCT, 1) | (_, L_VAR) => usize::try_from(read_var_uint(bytes, at)?).ok()?,
        (_, len) => usize::from(len),
    };
    let end = at.checked_add(len).filter(|end| *end <= bytes.len())?;
    let body = &bytes[*at..end];
    *at = end;
    Some(Value {
        type_code,
        nibble,
        body,
    })
}

/// The fields of a struct: (field name id, value), NOP pads skipped; `None` ends the walk,
/// also on a malformed field (callers then see a field missing and refuse the piece).
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Value<'a>);

    fn next(&mut self) -> Option<(u64, Value<'a>)> {
        loop {
            let mut at = 0;
            let field = read_var_uint(self.bytes, &mut at);
            let value = field.and_then(|_| read_value(self.bytes, &mut at));
            let (Some(field), Some(value)) = (field, value) else {
                self.bytes = &[];
                return None;
            };
            self.bytes = &self.bytes[at..];
            if !value.is_pad() {
                return Some((field, value));
            }
        }
    }
}

/// A stored Ion value and the symbol tables in front of it.
#[derive(Debug)]
pub struct StoredIon<'a> {
    /// The local symbol tables as stored (possibly none).
    symbol_tables: &'a [u8],
    /// The texts of the symbols they define, ids 10 on (`None`: a slot without text).
    symbols: Vec<Option<&'a str>>,
    /// The value's bytes, type descriptor included.
    value: &'a [u8],
}

impl<'a> StoredIon<'a> {
    /// Splits `bytes`, one Ion binary stream of local symbol tables and one value; `None`
    /// when it is anything else.
    pub fn parse(bytes: &'a [u8]) -> Option<StoredIon<'a>> {
        let stream = bytes.strip_prefix(&IVM)?;
        let mut symbols = Vec::new();
        let mut at = 0;
        loop {
            let start = at;
            let value = read_value(stream, &mut at)?;
            if value.is_pad() {
                continue;
            }
            if value.type_code == T_ANNOTATION {
                // The version marker (E0) again would reset the symbol table mid-piece.
                if value.nibble == 0 {
                    return None;
                }
                if let Some(table) = symbol_table(value.body) {
                    read_symbol_table(table, &mut symbols)?;
                    continue;
                }
            }
            return (at == stream.len()).then(|| StoredIon {
                symbol_tables: &stream[..start],
                symbols,
                value: &stream[start..at],
            });
        }
    }

    /// The text of symbol `id`.
    fn text(&self, id: u64) -> Option<&'a str> {
        match id {
            0 => None,
            1..=9 => Some(SYSTEM_SYMBOLS[id as usize - 1]),
            _ => *self.symbols.get(usize::try_from(id - 10).ok()?)?,
        }
    }

    /// The id the record's own symbols start at, after the piece's.
    fn next_id(&self) -> u64 {
        10 + self.symbols.len() as u64
    }

    /// `(documentId, tableName, tableId)` of each entry of `transactionInfo.documents`, when
    /// this is a `transactionInfo`.
    pub fn document_tables(&self) -> Option<Vec<(&'a str, &'a str, &'a str)>> {
        let mut at = 0;
        let info = read_value(self.value, &mut at)?.as_struct()?;
        let (_, documents) = info
            .into_iter()
            .find(|(field, _)| self.text(*field) == Some("documents"))?;
        documents
            .as_struct()?
            .map(|(field, document)| {
                let (mut name, mut id) = (None, None);
                for (field, value) in document.as_struct()? {
                    match self.text(field) {
                        Some("tableName") => name = name.or(value.as_str()),
                        Some("tableId") => id = id.or(value.as_str()),
                        _ => {}
                    }
                }
                Some((self.text(field)?, name?, id?))
            })
            .collect()
    }
}

/// The struct an annotation wrapper holds if it is a local symbol table
/// (`$ion_symbol_table::{…}`).
fn symbol_table(wrapper: &[u8]) -> Option<Fields<'_>> {
    let mut at = 0;
    let annotations_len = usize::try_from(read_var_uint(wrapper, &mut at)?).ok()?;
    let annotations_end = at.checked_add(annotations_len)?;
    let first = read_var_uint(wrapper.get(..annotations_end)?, &mut at)?;
    if first != SID_ION_SYMBOL_TABLE {
        return None;
    }
    let mut at = annotations_end;
    read_value(wrapper, &mut at)?.as_struct()
}

/// Applies a local symbol table to `symbols`: a table importing `$ion_symbol_table` appends,
/// one without imports replaces. `None` for shared-table imports (their symbols are unknown
/// here) or a malformed table.
fn read_symbol_table<'a>(table: Fields<'a>, symbols: &mut Vec<Option<&'a str>>) -> Option<()> {
    let mut appends = false;
    let mut list = None;
    for (field, value) in table {
        match field {
            SID_IMPORTS => {
                // Only an append to the current table is understood.
                if symbol_id(value)? != SID_ION_SYMBOL_TABLE {
                    return None;
                }
                appends = true;
            }
            SID_SYMBOLS if list.is_none() => list = Some(value),
            SID_SYMBOLS => return None,
            _ => {}
        }
    }
    if !appends {
        symbols.clear();
    }
    let Some(list) = list.filter(|list| list.type_code == T_LIST && !list.is_null()) else {
        return Some(());
    };
    let mut at = 0;
    while at < list.body.len() {
        let value = read_value(list.body, &mut at)?;
        if !value.is_pad() {
            symbols.push(value.as_str());
        }
    }
    Some(())
}

/// The id a symbol value holds (`None` if `value` is not a non-null symbol).
fn symbol_id(value: Value<'_>) -> Option<u64> {
    if value.type_code != T_SYMBOL || value.is_null() || value.body.len() > 8 {
        return None;
    }
    Some(
        value
            .body
            .iter()
            .fold(0u64, |id, byte| id << 8 | u64::from(*byte)),
    )
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
            out.extend_from_slice(piece.symbol_tables);
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
        self.out.extend_from_slice(piece.value);
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
        // Two values, a second version marker, no version marker, truncation.
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
