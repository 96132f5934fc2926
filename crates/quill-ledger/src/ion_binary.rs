//! Just enough Ion 1.0 binary reading for the one shape the ledger stores: a version marker,
//! local symbol tables and one value, as ion-rs wrote it from an `Element`.
//!
//! The query layer reads a document's top-level fields in place (a filtered scan costs less
//! than setting up ion-rs's reader), and the stream layer copies stored values into records
//! behind the same symbol tables. Both need the same few steps (value boundaries, struct
//! fields, local symbol tables), which live here. Anything this reader does not understand
//! (shared-table imports, a reserved type code, truncated bytes) is `None`, and callers fall
//! back to ion-rs, which also names genuine corruption. Every access is bounds-checked: it
//! never panics, whatever the bytes.

/// Ion 1.0 binary version marker.
pub const VERSION_MARKER: [u8; 4] = [0xE0, 0x01, 0x00, 0xEA];
/// Ion 1.0's system symbol table, ids 1 to 9.
pub const SYSTEM_SYMBOLS: [&str; 9] = [
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
/// Ids of the system symbols a local symbol table uses.
pub const SID_ION_SYMBOL_TABLE: u64 = 3;
pub const SID_IMPORTS: u64 = 6;
pub const SID_SYMBOLS: u64 = 7;
/// The first id of a local symbol.
pub const FIRST_LOCAL_SID: u64 = 10;

/// Type codes (the high nibble of a type descriptor).
pub const T_NULL: u8 = 0x0;
pub const T_BOOL: u8 = 0x1;
pub const T_POS_INT: u8 = 0x2;
pub const T_NEG_INT: u8 = 0x3;
pub const T_FLOAT: u8 = 0x4;
pub const T_DECIMAL: u8 = 0x5;
pub const T_TIMESTAMP: u8 = 0x6;
pub const T_SYMBOL: u8 = 0x7;
pub const T_STRING: u8 = 0x8;
pub const T_CLOB: u8 = 0x9;
pub const T_BLOB: u8 = 0xA;
pub const T_LIST: u8 = 0xB;
pub const T_SEXP: u8 = 0xC;
pub const T_STRUCT: u8 = 0xD;
pub const T_ANNOTATION: u8 = 0xE;
/// Reserved type code.
const T_RESERVED: u8 = 0xF;
/// Length nibbles with a meaning of their own.
pub const L_VAR: u8 = 14;
pub const L_NULL: u8 = 15;

/// Bytes of a VarUInt accepted: 9 bytes carry 63 bits, more than any length or id here.
const VAR_UINT_BYTES_MAX: usize = 9;
/// Top-level items (markers, symbol tables, pads) examined before a stored value.
const TOP_LEVEL_ITEMS_MAX: usize = 64;

/// Reads a VarUInt (7 bits a byte, the last byte flagged by its high bit) at `*at`, moving past
/// it.
pub fn read_var_uint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for _ in 0..VAR_UINT_BYTES_MAX {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value = value << 7 | u64::from(byte & 0x7F);
        if byte & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

/// One encoded value inside a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    pub type_code: u8,
    /// The type descriptor's length nibble.
    pub nibble: u8,
    /// The value's representation (after its type descriptor and length).
    pub body: &'a [u8],
    /// The whole encoding: type descriptor, length and body.
    pub whole: &'a [u8],
}

impl<'a> Encoded<'a> {
    /// A typed null (`null.int`, …); booleans use the nibble for their value instead.
    pub fn is_null(&self) -> bool {
        self.nibble == L_NULL
    }

    /// A NOP pad: skipped wherever it appears.
    pub fn is_pad(&self) -> bool {
        self.type_code == T_NULL && self.nibble != L_NULL
    }

    /// The fields of a non-null struct.
    pub fn as_struct(&self) -> Option<Fields<'a>> {
        (self.type_code == T_STRUCT && !self.is_null()).then_some(Fields {
            bytes: self.body,
            malformed: false,
        })
    }

    /// The text of a non-null string.
    pub fn as_str(&self) -> Option<&'a str> {
        (self.type_code == T_STRING && !self.is_null())
            .then(|| std::str::from_utf8(self.body).ok())
            .flatten()
    }

    /// The magnitude of an int, or the id of a symbol, as an unsigned big-endian number.
    pub fn magnitude(&self) -> Option<u128> {
        (self.body.len() <= 16).then(|| {
            self.body
                .iter()
                .fold(0u128, |value, byte| value << 8 | u128::from(*byte))
        })
    }

    /// The id a non-null symbol value holds.
    pub fn symbol_id(&self) -> Option<u64> {
        if self.type_code != T_SYMBOL || self.is_null() {
            return None;
        }
        u64::try_from(self.magnitude()?).ok()
    }
}

/// Reads the value at `*at`, moving past it.
pub fn read_value<'a>(bytes: &'a [u8], at: &mut usize) -> Option<Encoded<'a>> {
    let start = *at;
    let descriptor = *bytes.get(start)?;
    let (type_code, nibble) = (descriptor >> 4, descriptor & 0x0F);
    let mut body_start = start + 1;
    let len = match (type_code, nibble) {
        (T_RESERVED, _) => return None,
        (T_BOOL, _) | (_, L_NULL) => 0,
        // A struct with L = 1 has sorted fields and a VarUInt length.
        (T_STRUCT, 1) | (_, L_VAR) => {
            usize::try_from(read_var_uint(bytes, &mut body_start)?).ok()?
        }
        (_, len) => usize::from(len),
    };
    let end = body_start
        .checked_add(len)
        .filter(|end| *end <= bytes.len())?;
    *at = end;
    Some(Encoded {
        type_code,
        nibble,
        body: &bytes[body_start..end],
        whole: &bytes[start..end],
    })
}

/// The fields of a struct: (field name id, value), NOP pads skipped. `None` ends the walk,
/// also on a malformed field: callers then see a field missing and fall back, so a walk that
/// must see every field checks [`Fields::is_exhausted`] after it.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    bytes: &'a [u8],
    malformed: bool,
}

impl Fields<'_> {
    /// Whether the walk reached the struct's end cleanly (not cut short by malformed bytes).
    pub fn is_exhausted(&self) -> bool {
        self.bytes.is_empty() && !self.malformed
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Encoded<'a>);

    fn next(&mut self) -> Option<(u64, Encoded<'a>)> {
        while !self.bytes.is_empty() {
            let mut at = 0;
            let field = read_var_uint(self.bytes, &mut at);
            let value = field.and_then(|_| read_value(self.bytes, &mut at));
            let (Some(field), Some(value)) = (field, value) else {
                self.bytes = &[];
                self.malformed = true;
                return None;
            };
            self.bytes = &self.bytes[at..];
            if !value.is_pad() {
                return Some((field, value));
            }
        }
        None
    }
}

/// The local symbols in scope: the texts of ids 10 on (`None`: a slot without text).
#[derive(Debug, Default, Clone)]
pub struct Symbols<'a> {
    local: Vec<Option<&'a str>>,
}

impl<'a> Symbols<'a> {
    /// The text of symbol `id`; `None` for `$0`, a slot without text or an unknown id.
    pub fn text(&self, id: u64) -> Option<&'a str> {
        match id {
            0 => None,
            1..=9 => Some(SYSTEM_SYMBOLS[id as usize - 1]),
            _ => *self
                .local
                .get(usize::try_from(id - FIRST_LOCAL_SID).ok()?)?,
        }
    }

    /// The id the next appended symbol gets.
    pub fn next_id(&self) -> u64 {
        FIRST_LOCAL_SID + self.local.len() as u64
    }

    /// Applies a local symbol table: one importing `$ion_symbol_table` appends, one without
    /// imports replaces. `None` for shared-table imports (their symbols are unknown here) or a
    /// malformed table.
    fn apply(&mut self, table: Fields<'a>) -> Option<()> {
        let mut appends = false;
        let mut list = None;
        let mut fields = table;
        for (field, value) in fields.by_ref() {
            match field {
                SID_IMPORTS if value.type_code == T_NULL => {}
                // Only an append to the current table is understood.
                SID_IMPORTS => {
                    if value.symbol_id()? != SID_ION_SYMBOL_TABLE {
                        return None;
                    }
                    appends = true;
                }
                SID_SYMBOLS if list.is_none() => list = Some(value),
                SID_SYMBOLS => return None,
                _ => {}
            }
        }
        if !fields.is_exhausted() {
            return None;
        }
        if !appends {
            self.local.clear();
        }
        let Some(list) = list.filter(|list| list.type_code == T_LIST && !list.is_null()) else {
            return Some(());
        };
        let mut at = 0;
        while at < list.body.len() {
            let value = read_value(list.body, &mut at)?;
            if !value.is_pad() {
                self.local.push(value.as_str());
            }
        }
        Some(())
    }
}

/// The struct an annotation wrapper holds if it is a local symbol table
/// (`$ion_symbol_table::{…}`).
fn symbol_table<'a>(wrapper: &Encoded<'a>) -> Option<Fields<'a>> {
    if wrapper.type_code != T_ANNOTATION {
        return None;
    }
    let bytes = wrapper.body;
    let mut at = 0;
    let annotations_len = usize::try_from(read_var_uint(bytes, &mut at)?).ok()?;
    let annotations_end = at.checked_add(annotations_len)?;
    let first = read_var_uint(bytes.get(..annotations_end)?, &mut at)?;
    if first != SID_ION_SYMBOL_TABLE {
        return None;
    }
    let mut at = annotations_end;
    read_value(bytes, &mut at)?.as_struct()
}

/// A stored Ion value with the symbol tables in front of it.
#[derive(Debug)]
pub struct StoredValue<'a> {
    /// The local symbol tables since the last version marker, as stored (possibly none):
    /// copied verbatim behind a version marker, they give the value its symbols again.
    pub symbol_tables: &'a [u8],
    /// The symbols they define.
    pub symbols: Symbols<'a>,
    /// The value.
    pub value: Encoded<'a>,
    /// Whatever follows the value (empty in what the ledger stores).
    pub rest: &'a [u8],
}

impl<'a> StoredValue<'a> {
    /// Splits `bytes`, an Ion binary stream starting with a version marker, at its first value
    /// that is not a symbol table or pad. `None` for anything else, or for annotations on that
    /// value (which would need the full reader).
    pub fn parse(bytes: &'a [u8]) -> Option<StoredValue<'a>> {
        let mut symbols = Symbols::default();
        let mut tables_start = None;
        let mut at = 0;
        for _ in 0..TOP_LEVEL_ITEMS_MAX {
            if bytes.get(at..at + VERSION_MARKER.len()) == Some(&VERSION_MARKER[..]) {
                at += VERSION_MARKER.len();
                symbols = Symbols::default();
                tables_start = Some(at);
                continue;
            }
            // Bytes before the first version marker are not a stream this reader knows.
            let tables_start = tables_start?;
            let start = at;
            let value = read_value(bytes, &mut at)?;
            if value.is_pad() {
                continue;
            }
            if value.type_code == T_ANNOTATION {
                symbols.apply(symbol_table(&value)?)?;
                continue;
            }
            return Some(StoredValue {
                symbol_tables: &bytes[tables_start..start],
                symbols,
                value,
                rest: &bytes[at..],
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ion_rs::v1_0::Binary;
    use ion_rs::Element;

    fn binary(text: &str) -> Vec<u8> {
        Element::read_one(text).unwrap().encode_as(Binary).unwrap()
    }

    #[test]
    fn splits_a_stored_struct_and_names_its_fields() {
        let bytes = binary(r#"{VIN: "A1", Year: 2011, tags: [a, b], nested: {x: 1}}"#);
        let stored = StoredValue::parse(&bytes).unwrap();
        assert!(stored.rest.is_empty());
        assert!(!stored.symbol_tables.is_empty());
        let mut fields = stored.value.as_struct().unwrap();
        let names: Vec<&str> = fields
            .by_ref()
            .map(|(id, _)| stored.symbols.text(id).unwrap())
            .collect();
        assert_eq!(names, ["VIN", "Year", "tags", "nested"]);
        assert!(fields.is_exhausted());
        let vin = stored.value.as_struct().unwrap().next().unwrap().1;
        assert_eq!(vin.as_str(), Some("A1"));
    }

    #[test]
    fn var_uints_round_trip_and_refuse_overlong_input() {
        let mut at = 0;
        assert_eq!(read_var_uint(&[0x01, 0x80 | 0x02], &mut at), Some(130));
        assert_eq!(at, 2);
        let mut at = 0;
        assert_eq!(read_var_uint(&[0x7F; 10], &mut at), None);
    }

    /// A type descriptor (short length or one-byte VarUInt length) and its body.
    fn tlv(type_code: u8, body: &[u8]) -> Vec<u8> {
        let mut out = if body.len() < usize::from(L_VAR) {
            vec![type_code << 4 | body.len() as u8]
        } else {
            vec![type_code << 4 | L_VAR, 0x80 | body.len() as u8]
        };
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_shared_table_import_is_refused_and_an_append_is_followed() {
        // {name: "x", version: 1, max_id: 1}
        let import = tlv(
            T_STRUCT,
            &[0x84, 0x81, b'x', 0x85, 0x21, 0x01, 0x88, 0x21, 0x01],
        );
        let table = |imports: Vec<u8>, symbols: &[&str]| {
            let mut list = Vec::new();
            for symbol in symbols {
                list.extend(tlv(T_STRING, symbol.as_bytes()));
            }
            let mut fields = vec![0x86];
            fields.extend(imports);
            fields.push(0x87);
            fields.extend(tlv(T_LIST, &list));
            let mut wrapper = vec![0x81, 0x83];
            wrapper.extend(tlv(T_STRUCT, &fields));
            tlv(T_ANNOTATION, &wrapper)
        };
        let stream = |tables: &[Vec<u8>]| {
            let mut bytes = VERSION_MARKER.to_vec();
            for table in tables {
                bytes.extend_from_slice(table);
            }
            bytes.extend_from_slice(&[0x71, 0x0B]); // the symbol $11
            bytes
        };
        let shared = stream(&[table(tlv(T_LIST, &import), &["a"])]);
        assert!(StoredValue::parse(&shared).is_none());

        let first = table(vec![0x0F], &["a"]); // imports: null
        let append = table(vec![0x71, 0x03], &["b"]); // imports: $ion_symbol_table
        let appended = stream(&[first.clone(), append]);
        let stored = StoredValue::parse(&appended).unwrap();
        assert_eq!(
            stored.symbols.text(stored.value.symbol_id().unwrap()),
            Some("b")
        );
        assert_eq!(stored.symbols.next_id(), 12);

        let replaced = stream(&[first, table(vec![0x0F], &["c"])]);
        let stored = StoredValue::parse(&replaced).unwrap();
        assert_eq!(stored.symbols.text(11), None);
        assert_eq!(stored.symbols.text(10), Some("c"));
    }

    #[test]
    fn damaged_bytes_never_panic() {
        let bytes = binary(r#"{VIN: "A1", Year: 2011, Owners: {x: [1, 2e0, 3.5, "s"]}}"#);
        for cut in 0..bytes.len() {
            let _ = StoredValue::parse(&bytes[..cut]);
        }
        for flip in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0xFF;
            if let Some(stored) = StoredValue::parse(&damaged) {
                if let Some(fields) = stored.value.as_struct() {
                    for (id, _) in fields {
                        let _ = stored.symbols.text(id);
                    }
                }
            }
        }
    }
}
