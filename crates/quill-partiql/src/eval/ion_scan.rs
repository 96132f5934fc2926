//! A minimal reader for the one shape the ledger stores: an Ion 1.0 binary stream holding a
//! version marker, optional local symbol tables and one top-level struct. It pulls the named
//! top-level fields out of the bytes without building the rest of the document, which is
//! what makes filtered full scans fast (ion-rs's `Reader` costs more per document to set up
//! than the whole filter test).
//!
//! It understands scalars fully (null, bool, int, float, string, symbol) and hands other
//! field values (decimal, timestamp, lobs) to `Element::read_one`, which needs no symbol
//! table for them. Anything else — containers or annotations in a wanted field, shared
//! symbol table imports, unexpected bytes — returns `None`, and the caller falls back to
//! ion-rs's reader, which also reports genuine corruption. It never panics: every access is
//! bounds-checked.

use ion_rs::{Element, IonType, Struct};

/// Ion 1.0 binary version marker.
const VERSION_MARKER: [u8; 4] = [0xE0, 0x01, 0x00, 0xEA];
/// Ion 1.0's system symbol table, SIDs 1–9.
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
const SID_SYMBOL_TABLE: usize = 3;
const SID_IMPORTS: usize = 6;
const SID_SYMBOLS: usize = 7;
/// Bytes of a VarUInt we accept: 9 bytes carry 63 bits, more than any length or SID here.
const VAR_UINT_BYTES_MAX: usize = 9;
/// Top-level items (markers, symbol tables, pads) examined before giving up.
const TOP_LEVEL_ITEMS_MAX: usize = 64;

const TYPE_NULL_OR_PAD: u8 = 0x0;
const TYPE_BOOL: u8 = 0x1;
const TYPE_POSITIVE_INT: u8 = 0x2;
const TYPE_NEGATIVE_INT: u8 = 0x3;
const TYPE_FLOAT: u8 = 0x4;
const TYPE_SYMBOL: u8 = 0x7;
const TYPE_STRING: u8 = 0x8;
const TYPE_LIST: u8 = 0xB;
const TYPE_STRUCT: u8 = 0xD;
const TYPE_ANNOTATION: u8 = 0xE;
const LENGTH_NULL: u8 = 0xF;
const LENGTH_VAR_UINT: u8 = 0xE;

/// One encoded value: its type nibble, length nibble and body bytes.
#[derive(Debug, Clone, Copy)]
struct Encoded<'a> {
    kind: u8,
    length_code: u8,
    body: &'a [u8],
    /// The whole encoding (descriptor, length and body).
    whole: &'a [u8],
}

fn var_uint(bytes: &[u8], position: &mut usize) -> Option<usize> {
    let mut value: usize = 0;
    for _ in 0..VAR_UINT_BYTES_MAX {
        let byte = *bytes.get(*position)?;
        *position += 1;
        value = value
            .checked_mul(128)?
            .checked_add(usize::from(byte & 0x7F))?;
        if byte & 0x80 != 0 {
            return Some(value);
        }
    }
    None
}

/// Reads the value starting at `position` and moves past it.
fn read_value<'a>(bytes: &'a [u8], position: &mut usize) -> Option<Encoded<'a>> {
    let start = *position;
    let descriptor = *bytes.get(start)?;
    let (kind, length_code) = (descriptor >> 4, descriptor & 0x0F);
    *position += 1;
    let length = match (kind, length_code) {
        (_, LENGTH_NULL) | (TYPE_BOOL, _) => 0,
        (TYPE_STRUCT, 1) | (_, LENGTH_VAR_UINT) => var_uint(bytes, position)?,
        (_, code) => usize::from(code),
    };
    let body_start = *position;
    let end = body_start.checked_add(length)?;
    let body = bytes.get(body_start..end)?;
    *position = end;
    Some(Encoded {
        kind,
        length_code,
        body,
        whole: bytes.get(start..end)?,
    })
}

fn is_pad(value: &Encoded<'_>) -> bool {
    value.kind == TYPE_NULL_OR_PAD && value.length_code != LENGTH_NULL
}

/// Symbol text by SID: system symbols, then the local symbols in order.
fn symbol_text<'a>(sid: usize, local: &[Option<&'a str>]) -> Option<&'a str> {
    match sid {
        1..=9 => Some(SYSTEM_SYMBOLS[sid - 1]),
        _ => local.get(sid.checked_sub(10)?).copied().flatten(),
    }
}

/// Reads a local symbol table struct, appending its symbols to `local`; `None` for imports of
/// shared tables (their symbols are unknown here).
fn read_symbol_table<'a>(table: &Encoded<'a>, local: &mut Vec<Option<&'a str>>) -> Option<()> {
    let mut append = false;
    let mut new_symbols: Vec<Option<&'a str>> = Vec::new();
    let mut position = 0;
    while position < table.body.len() {
        let sid = var_uint(table.body, &mut position)?;
        let value = read_value(table.body, &mut position)?;
        match sid {
            SID_IMPORTS if value.kind == TYPE_SYMBOL => {
                append = symbol_id(&value)? == SID_SYMBOL_TABLE
            }
            SID_IMPORTS if value.kind == TYPE_NULL_OR_PAD => {}
            SID_IMPORTS => return None,
            SID_SYMBOLS if value.kind == TYPE_LIST => {
                let mut inner = 0;
                while inner < value.body.len() {
                    let symbol = read_value(value.body, &mut inner)?;
                    let text = (symbol.kind == TYPE_STRING && symbol.length_code != LENGTH_NULL)
                        .then(|| std::str::from_utf8(symbol.body).ok())
                        .flatten();
                    new_symbols.push(text);
                }
            }
            _ => {}
        }
    }
    if !append {
        local.clear();
    }
    local.extend(new_symbols);
    Some(())
}

fn unsigned(body: &[u8]) -> Option<u128> {
    if body.len() > 16 {
        return None;
    }
    Some(
        body.iter()
            .fold(0u128, |value, byte| (value << 8) | u128::from(*byte)),
    )
}

fn symbol_id(value: &Encoded<'_>) -> Option<usize> {
    usize::try_from(unsigned(value.body)?).ok()
}

/// Decodes a field value, or `None` when it needs the full reader.
fn decode(value: &Encoded<'_>, local: &[Option<&str>]) -> Option<Element> {
    if value.length_code == LENGTH_NULL && value.kind != TYPE_BOOL {
        return null_of(value.kind).map(Element::null);
    }
    match value.kind {
        TYPE_BOOL => match value.length_code {
            0 => Some(Element::boolean(false)),
            1 => Some(Element::boolean(true)),
            LENGTH_NULL => Some(Element::null(IonType::Bool)),
            _ => None,
        },
        TYPE_POSITIVE_INT => Some(Element::int(i128::try_from(unsigned(value.body)?).ok()?)),
        TYPE_NEGATIVE_INT => {
            let magnitude = i128::try_from(unsigned(value.body)?).ok()?;
            // Negative zero is not a valid Ion int: let the full reader reject it.
            (magnitude != 0).then(|| Element::int(-magnitude))
        }
        TYPE_FLOAT => match value.body.len() {
            0 => Some(Element::float(0.0)),
            4 => Some(Element::float(f64::from(f32::from_be_bytes(
                value.body.try_into().ok()?,
            )))),
            8 => Some(Element::float(f64::from_be_bytes(
                value.body.try_into().ok()?,
            ))),
            _ => None,
        },
        TYPE_SYMBOL => Some(Element::symbol(symbol_text(symbol_id(value)?, local)?)),
        TYPE_STRING => Some(Element::string(std::str::from_utf8(value.body).ok()?)),
        // Decimal, timestamp, clob, blob: self-contained, no symbols involved.
        0x5 | 0x6 | 0x9 | 0xA => {
            let mut standalone = Vec::with_capacity(VERSION_MARKER.len() + value.whole.len());
            standalone.extend_from_slice(&VERSION_MARKER);
            standalone.extend_from_slice(value.whole);
            Element::read_one(standalone).ok()
        }
        _ => None,
    }
}

fn null_of(kind: u8) -> Option<IonType> {
    Some(match kind {
        0x0 => IonType::Null,
        0x2 | 0x3 => IonType::Int,
        0x4 => IonType::Float,
        0x5 => IonType::Decimal,
        0x6 => IonType::Timestamp,
        0x7 => IonType::Symbol,
        0x8 => IonType::String,
        0x9 => IonType::Clob,
        0xA => IonType::Blob,
        0xB => IonType::List,
        0xC => IonType::SExp,
        0xD => IonType::Struct,
        _ => return None,
    })
}

/// The named top-level fields of the stored document as a struct (every occurrence, in
/// order), or `None` when this reader cannot tell and the caller must use ion-rs.
pub(crate) fn top_level_fields(bytes: &[u8], wanted: &[String]) -> Option<Element> {
    let (document, local) = document_struct(bytes)?;
    struct_fields(&document, wanted, &local)
}

/// Whether the first top-level field `name` equals `key` under PartiQL `=` (false when the
/// field is absent or either side is null); `None` when this reader cannot tell. Strings and
/// symbols are compared in place, without allocating.
pub(crate) fn first_field_equals(bytes: &[u8], name: &str, key: &Element) -> Option<bool> {
    let (document, local) = document_struct(bytes)?;
    let mut position = 0;
    while position < document.body.len() {
        let sid = var_uint(document.body, &mut position)?;
        let field = read_value(document.body, &mut position)?;
        if is_pad(&field) || symbol_text(sid, &local)? != name {
            continue;
        }
        if key.is_null() || (field.length_code == LENGTH_NULL && field.kind != TYPE_BOOL) {
            return Some(false);
        }
        let key_text = key.as_text();
        return match field.kind {
            TYPE_STRING if key_text.is_some() => Some(key_text?.as_bytes() == field.body),
            TYPE_SYMBOL if key_text.is_some() => {
                Some(symbol_text(symbol_id(&field)?, &local)? == key_text?)
            }
            _ => Some(crate::value::values_equal(&decode(&field, &local)?, key)),
        };
    }
    Some(false)
}

/// Skips the version markers, symbol tables and pads before the document and returns its
/// struct with the symbols in scope.
fn document_struct(bytes: &[u8]) -> Option<(Encoded<'_>, Vec<Option<&str>>)> {
    let mut local: Vec<Option<&str>> = Vec::new();
    let mut position = 0;
    for _ in 0..TOP_LEVEL_ITEMS_MAX {
        if bytes.get(position..position + VERSION_MARKER.len()) == Some(&VERSION_MARKER[..]) {
            position += VERSION_MARKER.len();
            local.clear();
            continue;
        }
        let value = read_value(bytes, &mut position)?;
        if is_pad(&value) {
            continue;
        }
        if value.kind == TYPE_ANNOTATION {
            let wrapped = unwrap_symbol_table(&value)?;
            read_symbol_table(&wrapped, &mut local)?;
            continue;
        }
        if value.kind != TYPE_STRUCT || value.length_code == LENGTH_NULL {
            return None;
        }
        return Some((value, local));
    }
    None
}

/// The struct inside `$ion_symbol_table::{…}`; `None` for any other annotation (a user
/// annotation on the document itself needs the full reader).
fn unwrap_symbol_table<'a>(wrapper: &Encoded<'a>) -> Option<Encoded<'a>> {
    let mut position = 0;
    let annotations_length = var_uint(wrapper.body, &mut position)?;
    let annotations_end = position.checked_add(annotations_length)?;
    let first = var_uint(wrapper.body, &mut position)?;
    if first != SID_SYMBOL_TABLE || annotations_length == 0 {
        return None;
    }
    position = annotations_end;
    let wrapped = read_value(wrapper.body, &mut position)?;
    (wrapped.kind == TYPE_STRUCT).then_some(wrapped)
}

fn struct_fields(
    value: &Encoded<'_>,
    wanted: &[String],
    local: &[Option<&str>],
) -> Option<Element> {
    let mut builder = Struct::builder();
    let mut position = 0;
    while position < value.body.len() {
        let sid = var_uint(value.body, &mut position)?;
        let field = read_value(value.body, &mut position)?;
        if is_pad(&field) {
            continue;
        }
        let name = symbol_text(sid, local)?;
        if wanted.iter().any(|w| w == name) {
            builder = builder.with_field(name, decode(&field, local)?);
        }
    }
    Some(builder.build().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ion_rs::v1_0::Binary;

    fn binary(text: &str) -> Vec<u8> {
        Element::read_one(text).unwrap().encode_as(Binary).unwrap()
    }

    fn wanted(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn extracts_scalar_fields() {
        let bytes = binary(
            r#"{VIN: "A1", Year: 2011, Neg: -5, Big: 123456789012345678901234567890, F: 1.5e0,
            D: 90.25, T: 2017-08-21T, S: sym, B: true, N: null, NI: null.int, Owners: {x: 1}, Blob: {{aGk=}}}"#,
        );
        let all = wanted(&[
            "VIN", "Year", "Neg", "Big", "F", "D", "T", "S", "B", "N", "NI", "Blob",
        ]);
        let fields = top_level_fields(&bytes, &all).unwrap();
        let expected = Element::read_one(
            r#"{VIN: "A1", Year: 2011, Neg: -5, Big: 123456789012345678901234567890, F: 1.5e0, D: 90.25,
                T: 2017-08-21T, S: sym, B: true, N: null, NI: null.int, Blob: {{aGk=}}}"#,
        )
        .unwrap();
        assert_eq!(
            ion_rs::IonData::from(&fields),
            ion_rs::IonData::from(&expected)
        );
    }

    #[test]
    fn first_field_equality() {
        let bytes = binary(r#"{VIN: "A1", S: sym, Year: 2011, N: null, VIN: "B2"}"#);
        assert_eq!(
            first_field_equals(&bytes, "VIN", &Element::string("A1")),
            Some(true)
        );
        assert_eq!(
            first_field_equals(&bytes, "VIN", &Element::string("B2")),
            Some(false)
        );
        assert_eq!(
            first_field_equals(&bytes, "VIN", &Element::symbol("A1")),
            Some(true)
        );
        assert_eq!(
            first_field_equals(&bytes, "S", &Element::string("sym")),
            Some(true)
        );
        assert_eq!(
            first_field_equals(&bytes, "Year", &Element::read_one("2011.0").unwrap()),
            Some(true)
        );
        assert_eq!(
            first_field_equals(&bytes, "Year", &Element::string("2011")),
            Some(false)
        );
        assert_eq!(
            first_field_equals(&bytes, "N", &Element::null(IonType::Null)),
            Some(false)
        );
        assert_eq!(
            first_field_equals(&bytes, "Nope", &Element::string("x")),
            Some(false)
        );
        assert_eq!(
            first_field_equals(&binary("{o: {a: 1}}"), "o", &Element::string("x")),
            None
        );
    }

    #[test]
    fn absent_fields_are_left_out() {
        let bytes = binary(r#"{a: 1}"#);
        assert_eq!(
            top_level_fields(&bytes, &wanted(&["b"])).unwrap(),
            Element::read_one("{}").unwrap()
        );
    }

    #[test]
    fn containers_and_annotations_fall_back() {
        assert!(top_level_fields(&binary("{o: {x: 1}}"), &wanted(&["o"])).is_none());
        assert!(top_level_fields(&binary("{o: a::1}"), &wanted(&["o"])).is_none());
        assert!(top_level_fields(&binary("doc::{o: 1}"), &wanted(&["o"])).is_none());
        assert!(top_level_fields(&binary("[1]"), &wanted(&["o"])).is_none());
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let bytes = binary(r#"{VIN: "A1", Year: 2011, Owners: {x: [1, 2]}}"#);
        for cut in 0..bytes.len() {
            let _ = top_level_fields(&bytes[..cut], &wanted(&["VIN", "Year"]));
        }
        for flip in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0xFF;
            let _ = top_level_fields(&damaged, &wanted(&["VIN", "Year"]));
        }
    }

    fn value_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u128>().prop_map(|i| i.to_string()),
            "[a-z ]{0,12}".prop_map(|s| format!("\"{s}\"")),
            "[a-z]{1,6}".prop_map(|s| format!("'{s}'")),
            (any::<i32>(), 0u32..6).prop_map(|(c, e)| format!("{c}d-{e}")),
            any::<f64>().prop_map(|f| if f.is_finite() {
                format!("{f:e}")
            } else {
                "nan".to_string()
            }),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("null".to_string()),
            Just("null.string".to_string()),
            Just("2017-08-21T".to_string()),
            Just("{{aGk=}}".to_string()),
            Just("{z: [1, two]}".to_string()),
        ]
    }

    proptest::proptest! {
        /// Whenever the fast reader answers, it agrees with ion-rs's reader.
        #[test]
        fn agrees_with_the_full_reader(
            fields in proptest::collection::vec(("(a|b|VIN|Year)", value_text()), 0..8),
            wanted_names in proptest::collection::vec("(a|b|VIN|Year)", 1..3),
            key_text in value_text(),
        ) {
            let body: Vec<String> = fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            let bytes = binary(&format!("{{{}}}", body.join(", ")));
            let wanted: Vec<String> = wanted_names;
            let key = binary(&key_text);
            let key = Element::read_one(key).unwrap();
            if let Some(equal) = first_field_equals(&bytes, &wanted[0], &key) {
                let slow = crate::eval::sources::partial_struct(&bytes, &wanted[..1]).unwrap();
                let expected = slow.as_struct().and_then(|s| s.get(wanted[0].as_str()))
                    .is_some_and(|v| !key.is_null() && crate::value::values_equal(v, &key));
                proptest::prop_assert_eq!(equal, expected);
            }
            if let Some(fast) = top_level_fields(&bytes, &wanted) {
                let slow = crate::eval::sources::partial_struct(&bytes, &wanted).unwrap();
                proptest::prop_assert_eq!(ion_rs::IonData::from(&fast), ion_rs::IonData::from(&slow));
            }
        }
    }
}
