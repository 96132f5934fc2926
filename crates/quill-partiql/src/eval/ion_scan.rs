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
use quill_ledger::ion_binary::{
    Encoded, StoredValue, Symbols, L_NULL, T_BLOB, T_BOOL, T_CLOB, T_DECIMAL, T_FLOAT, T_NEG_INT,
    T_POS_INT, T_STRING, T_STRUCT, T_SYMBOL, T_TIMESTAMP, VERSION_MARKER,
};

/// Decodes a field value, or `None` when it needs the full reader.
fn decode(value: &Encoded<'_>, symbols: &Symbols<'_>) -> Option<Element> {
    if value.nibble == L_NULL && value.type_code != T_BOOL {
        return null_of(value.type_code).map(Element::null);
    }
    match value.type_code {
        T_BOOL => match value.nibble {
            0 => Some(Element::boolean(false)),
            1 => Some(Element::boolean(true)),
            L_NULL => Some(Element::null(IonType::Bool)),
            _ => None,
        },
        T_POS_INT => Some(Element::int(i128::try_from(value.magnitude()?).ok()?)),
        T_NEG_INT => {
            let magnitude = i128::try_from(value.magnitude()?).ok()?;
            // Negative zero is not a valid Ion int: let the full reader reject it.
            (magnitude != 0).then(|| Element::int(-magnitude))
        }
        T_FLOAT => match value.body.len() {
            0 => Some(Element::float(0.0)),
            4 => Some(Element::float(f64::from(f32::from_be_bytes(
                value.body.try_into().ok()?,
            )))),
            8 => Some(Element::float(f64::from_be_bytes(
                value.body.try_into().ok()?,
            ))),
            _ => None,
        },
        T_SYMBOL => Some(Element::symbol(symbols.text(value.symbol_id()?)?)),
        T_STRING => Some(Element::string(value.as_str()?)),
        // Self-contained, no symbols involved.
        T_DECIMAL | T_TIMESTAMP | T_CLOB | T_BLOB => {
            let mut standalone = Vec::with_capacity(VERSION_MARKER.len() + value.whole.len());
            standalone.extend_from_slice(&VERSION_MARKER);
            standalone.extend_from_slice(value.whole);
            Element::read_one(standalone).ok()
        }
        _ => None,
    }
}

fn null_of(type_code: u8) -> Option<IonType> {
    Some(match type_code {
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
    let stored = document(bytes)?;
    let mut builder = Struct::builder();
    let mut fields = stored.value.as_struct()?;
    for (sid, field) in fields.by_ref() {
        let name = stored.symbols.text(sid)?;
        if wanted.iter().any(|w| w == name) {
            builder = builder.with_field(name, decode(&field, &stored.symbols)?);
        }
    }
    fields.is_exhausted().then(|| builder.build().into())
}

/// Whether the first top-level field `name` equals `key` under PartiQL `=` (false when the
/// field is absent or either side is null); `None` when this reader cannot tell. Strings and
/// symbols are compared in place, without allocating.
pub(crate) fn first_field_equals(bytes: &[u8], name: &str, key: &Element) -> Option<bool> {
    let stored = document(bytes)?;
    let symbols = &stored.symbols;
    let mut fields = stored.value.as_struct()?;
    for (sid, field) in fields.by_ref() {
        if symbols.text(sid)? != name {
            continue;
        }
        if key.is_null() || (field.is_null() && field.type_code != T_BOOL) {
            return Some(false);
        }
        let key_text = key.as_text();
        return match field.type_code {
            T_STRING if key_text.is_some() => Some(key_text?.as_bytes() == field.body),
            T_SYMBOL if key_text.is_some() => Some(symbols.text(field.symbol_id()?)? == key_text?),
            _ => Some(crate::value::values_equal(&decode(&field, symbols)?, key)),
        };
    }
    fields.is_exhausted().then_some(false)
}

/// The stored document: a non-null struct after the version marker and symbol tables.
fn document(bytes: &[u8]) -> Option<StoredValue<'_>> {
    StoredValue::parse(bytes)
        .filter(|stored| stored.value.type_code == T_STRUCT && !stored.value.is_null())
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
