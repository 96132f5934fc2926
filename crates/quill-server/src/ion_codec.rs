//! Ion at the wire: decoding statement parameters from `ValueHolder`s and encoding result
//! values as complete Ion binary streams (the only form the drivers read).
//!
//! Decoding an Ion value recurses once per level of container nesting, so a hostile parameter
//! (a 128 KB run of `[`) could exhaust a thread's stack. Before decoding, a small iterative
//! scanner checks the nesting depth against [`PARAMETER_DEPTH_MAX`]; the scan only needs to be
//! conservative, since the Ion reader still validates everything afterwards.

use base64::Engine as _;
use ion_rs::{v1_0, Element, WriteConfig};
use serde::Deserialize;

use crate::error::ApiError;
use crate::limits::{PARAMETER_BINARY_MAX_BYTES, PARAMETER_DEPTH_MAX, PARAMETER_TEXT_MAX_BYTES};

/// QLDB's `ValueHolder`: exactly one of `IonBinary` (base64) or `IonText`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ValueHolder {
    /// Base64 of an Ion binary stream.
    #[serde(rename = "IonBinary")]
    pub ion_binary: Option<String>,
    /// Ion text.
    #[serde(rename = "IonText")]
    pub ion_text: Option<String>,
}

/// Decodes parameter number `index` (from 0) into one Ion value.
pub fn decode_parameter(index: usize, holder: &ValueHolder) -> Result<Element, ApiError> {
    let fail =
        |why: String| ApiError::bad_request(format!("Parameter {index} is not valid: {why}"));
    let element = match (&holder.ion_binary, &holder.ion_text) {
        (Some(binary), None) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(binary)
                .map_err(|e| fail(format!("IonBinary is not base64 ({e})")))?;
            if bytes.len() > PARAMETER_BINARY_MAX_BYTES {
                return Err(fail(format!(
                    "larger than {PARAMETER_BINARY_MAX_BYTES} bytes"
                )));
            }
            if !binary_depth_within(&bytes, PARAMETER_DEPTH_MAX) {
                return Err(fail(format!(
                    "nested deeper than {PARAMETER_DEPTH_MAX} levels"
                )));
            }
            Element::read_one(&bytes)
        }
        (None, Some(text)) => {
            if text.len() > PARAMETER_TEXT_MAX_BYTES {
                return Err(fail(format!(
                    "larger than {PARAMETER_TEXT_MAX_BYTES} bytes"
                )));
            }
            if !text_depth_within(text.as_bytes(), PARAMETER_DEPTH_MAX) {
                return Err(fail(format!(
                    "nested deeper than {PARAMETER_DEPTH_MAX} levels"
                )));
            }
            Element::read_one(text.as_bytes())
        }
        _ => {
            return Err(fail(
                "a ValueHolder needs exactly one of IonBinary or IonText".into(),
            ))
        }
    };
    element.map_err(|e| fail(format!("not one Ion value ({e})")))
}

/// Encodes one value as a complete Ion binary stream (version marker, symbol table, value).
pub fn encode_binary(value: &Element) -> Result<Vec<u8>, ApiError> {
    let config = WriteConfig::<v1_0::Binary>::new().with_max_depth(u16::MAX);
    value
        .encode_as(config)
        .map_err(|e| ApiError::internal(format!("cannot encode a result value as Ion: {e}")))
}

/// Base64 of [`encode_binary`], as `ValueHolder.IonBinary` carries it.
pub fn to_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads an Ion 1.0 binary `VarUInt` length at `*pos`; `None` when truncated or absurdly long.
fn read_var_uint(bytes: &[u8], pos: &mut usize) -> Option<usize> {
    usize::try_from(quill_ledger::ion_binary::read_var_uint(bytes, pos)?).ok()
}

/// True when no container in the Ion 1.0 binary stream nests deeper than `max`. Malformed
/// input answers `true`: the reader rejects it afterwards without recursing past the damage.
fn binary_depth_within(bytes: &[u8], max: usize) -> bool {
    // Each open container: (end offset, is a struct).
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut pos = 0;
    let mut after_annotation = false;
    // Every iteration consumes at least one byte, so `bytes.len()` iterations suffice.
    for _ in 0..=bytes.len() {
        while open.last().is_some_and(|&(end, _)| pos >= end) {
            open.pop();
        }
        if pos >= bytes.len() {
            return true;
        }
        if open.is_empty() && bytes[pos..].starts_with(&quill_ledger::ion_binary::VERSION_MARKER) {
            pos += 4;
            continue;
        }
        let in_struct = open.last().is_some_and(|&(_, is_struct)| is_struct);
        if in_struct && !after_annotation && read_var_uint(bytes, &mut pos).is_none() {
            return true;
        }
        let Some(&descriptor) = bytes.get(pos) else {
            return true;
        };
        pos += 1;
        let (kind, low) = (descriptor >> 4, descriptor & 0x0f);
        let length = match (kind, low) {
            (1, _) | (_, 15) => 0,
            (13, 1) | (_, 14) => match read_var_uint(bytes, &mut pos) {
                Some(length) => length,
                None => return true,
            },
            (_, low) => usize::from(low),
        };
        after_annotation = false;
        if kind == 14 {
            // Annotation wrapper: skip the annotation symbols, then read the wrapped value.
            let Some(annotations_length) = read_var_uint(bytes, &mut pos) else {
                return true;
            };
            pos = pos.saturating_add(annotations_length);
            after_annotation = true;
        } else if (11..=13).contains(&kind) && low != 15 {
            open.push((pos.saturating_add(length), kind == 13));
            if open.len() > max {
                return false;
            }
        } else {
            pos = pos.saturating_add(length);
        }
    }
    true
}

/// True when no container in the Ion text nests deeper than `max`. Strings, quoted symbols,
/// comments and blobs/clobs are skipped; anything else of `[({` opens a level.
pub(crate) fn text_depth_within(text: &[u8], max: usize) -> bool {
    let mut depth: usize = 0;
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        pos += match rest {
            [b'\'', b'\'', b'\'', ..] => 3 + skip_until(&rest[3..], b"'''"),
            [b'"', ..] | [b'\'', ..] => 1 + skip_quoted(&rest[1..], rest[0]),
            [b'/', b'/', ..] => 2 + skip_until(&rest[2..], b"\n"),
            [b'/', b'*', ..] => 2 + skip_until(&rest[2..], b"*/"),
            [b'{', b'{', ..] => 2 + skip_lob(&rest[2..]),
            [b'[' | b'(' | b'{', ..] => {
                depth += 1;
                if depth > max {
                    return false;
                }
                1
            }
            [b']' | b')' | b'}', ..] => {
                depth = depth.saturating_sub(1);
                1
            }
            _ => 1,
        };
    }
    true
}

/// Bytes up to and including the end of the string that started just before `rest`.
fn skip_quoted(rest: &[u8], quote: u8) -> usize {
    let mut pos = 0;
    while pos < rest.len() {
        match rest[pos] {
            b'\\' => pos += 2,
            byte if byte == quote => return pos + 1,
            _ => pos += 1,
        }
    }
    rest.len()
}

/// Bytes up to and including the first `end` (all of `rest` if there is none).
fn skip_until(rest: &[u8], end: &[u8]) -> usize {
    rest.windows(end.len())
        .position(|w| w == end)
        .map_or(rest.len(), |at| at + end.len())
}

/// Bytes of a blob or clob body up to and including its closing `}}`, skipping clob strings.
fn skip_lob(rest: &[u8]) -> usize {
    let mut pos = 0;
    while pos < rest.len() {
        pos += match &rest[pos..] {
            [b'}', b'}', ..] => return pos + 2,
            [b'\'', b'\'', b'\'', ..] => 3 + skip_until(&rest[pos + 3..], b"'''"),
            [b'"', ..] => 1 + skip_quoted(&rest[pos + 1..], b'"'),
            _ => 1,
        };
    }
    rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ion: &str) -> ValueHolder {
        ValueHolder {
            ion_text: Some(ion.into()),
            ion_binary: None,
        }
    }

    fn binary(bytes: &[u8]) -> ValueHolder {
        ValueHolder {
            ion_binary: Some(to_base64(bytes)),
            ion_text: None,
        }
    }

    #[test]
    fn binary_and_text_parameters_decode_alike() {
        let value = Element::read_one(r#"{name: "Alice", age: 30, tags: [a::1, (x y)]}"#).unwrap();
        let bytes = encode_binary(&value).unwrap();
        assert_eq!(decode_parameter(0, &binary(&bytes)).unwrap(), value);
        let text_form = format!("{value}");
        assert_eq!(decode_parameter(0, &text(&text_form)).unwrap(), value);
    }

    #[test]
    fn invalid_parameters_name_their_index() {
        let error = decode_parameter(3, &text("{unclosed: ")).unwrap_err();
        assert!(error.message.contains("Parameter 3"), "{}", error.message);
        let error = decode_parameter(1, &binary(b"\xE0\x01\x00\xEA\xFF")).unwrap_err();
        assert!(error.message.contains("Parameter 1"));
        let not_base64 = ValueHolder {
            ion_binary: Some("!!".into()),
            ion_text: None,
        };
        assert!(decode_parameter(0, &not_base64).is_err());
        assert!(decode_parameter(0, &ValueHolder::default()).is_err());
        assert!(decode_parameter(0, &text("1 2")).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_before_decoding() {
        let deep = "[".repeat(100_000);
        let error = decode_parameter(0, &text(&deep)).unwrap_err();
        assert!(error.message.contains("nested deeper"));
        // Brackets inside strings, symbols, comments and blobs do not count.
        let shallow = format!(
            "{{a: \"{0}\", '{0}': 1, b: {{{{aGVsbG8=}}}}}} /* {0} */",
            "[".repeat(500)
        );
        assert!(decode_parameter(0, &text(&shallow)).is_ok());
        let ok = format!(
            "{}{}",
            "[".repeat(PARAMETER_DEPTH_MAX),
            "]".repeat(PARAMETER_DEPTH_MAX)
        );
        assert!(decode_parameter(0, &text(&ok)).is_ok());
    }

    #[test]
    fn deep_binary_nesting_is_refused() {
        let mut nested = Element::int(1);
        for level in 0..=PARAMETER_DEPTH_MAX {
            nested = if level % 2 == 0 {
                Element::struct_builder()
                    .with_field("a", nested)
                    .build()
                    .into()
            } else {
                Element::sequence_builder().push(nested).build_list().into()
            };
        }
        let bytes = encode_binary(&nested).unwrap();
        assert!(!binary_depth_within(&bytes, PARAMETER_DEPTH_MAX));
        assert!(binary_depth_within(&bytes, PARAMETER_DEPTH_MAX + 1));
        let shallow = encode_binary(&Element::read_one("a::{b: [c::(1 2)], d: {e: 1}}").unwrap());
        assert!(binary_depth_within(&shallow.unwrap(), 3));
    }

    #[test]
    fn results_are_complete_binary_streams() {
        let bytes = encode_binary(&Element::read_one("{a: 1}").unwrap()).unwrap();
        assert!(bytes.starts_with(&[0xE0, 0x01, 0x00, 0xEA]));
    }
}
