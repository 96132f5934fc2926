//! Output formats: how blocks and manifests are encoded in `ION_TEXT`, `ION_BINARY` and `JSON`.

use base64::Engine as _;
use ion_rs::{v1_0, Element, Sequence, Value};
use serde_json::{Map, Number, Value as Json};

use crate::error::{ExportError, Result};

/// QLDB's `OutputFormat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Ion text (QLDB's default).
    IonText,
    /// Ion binary.
    IonBinary,
    /// JSON Lines: one down-converted block per line.
    Json,
}

impl OutputFormat {
    /// The API name (`ION_TEXT`, `ION_BINARY`, `JSON`).
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::IonText => "ION_TEXT",
            OutputFormat::IonBinary => "ION_BINARY",
            OutputFormat::Json => "JSON",
        }
    }

    /// Parses an API name.
    pub fn parse(name: &str) -> Result<OutputFormat> {
        match name {
            "ION_TEXT" => Ok(OutputFormat::IonText),
            "ION_BINARY" => Ok(OutputFormat::IonBinary),
            "JSON" => Ok(OutputFormat::Json),
            other => Err(ExportError::InvalidInput(format!(
                "unknown output format {other:?} (ION_TEXT, ION_BINARY or JSON)"
            ))),
        }
    }

    /// The data objects' file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::IonText | OutputFormat::IonBinary => "ion",
            OutputFormat::Json => "json",
        }
    }

    /// The objects' `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::IonText => "text/plain",
            OutputFormat::IonBinary => "application/octet-stream",
            OutputFormat::Json => "application/json",
        }
    }

    /// Encodes top-level values (blocks, or one manifest) as one object body.
    ///
    /// Ion text is compact, values separated by exactly one space: the AWS DMV Python reader
    /// (`journal_s3_export_reader.py`) splits a data object on `'} {'` instead of parsing it,
    /// so that sequence appears nowhere else.
    pub fn encode(self, values: &[Element]) -> Result<Vec<u8>> {
        let mut object = ObjectBuffer::new(self);
        for value in values {
            object.push(value.clone())?;
        }
        object.finish()
    }
}

/// One data object being filled with blocks, in one format.
pub struct ObjectBuffer {
    format: OutputFormat,
    /// The encoded object so far (Ion text, JSON Lines).
    bytes: Vec<u8>,
    /// The blocks so far (Ion binary, encoded at the end with one symbol table).
    elements: Vec<Element>,
    /// `bytes.len()`, or the Ion text size of `elements` as an estimate for binary.
    len: usize,
}

impl ObjectBuffer {
    /// An empty object.
    pub fn new(format: OutputFormat) -> ObjectBuffer {
        ObjectBuffer {
            format,
            bytes: Vec::new(),
            elements: Vec::new(),
            len: 0,
        }
    }

    /// Appends one top-level value.
    pub fn push(&mut self, value: Element) -> Result<()> {
        match self.format {
            OutputFormat::IonText => {
                if !self.bytes.is_empty() {
                    self.bytes.push(b' ');
                }
                let text = value.to_string();
                // Outside literals compact Ion never has `} {` (fields and list items are
                // comma-separated), so any occurrence is inside a string, symbol or clob, where
                // `\x20` is the same space: the `'} {'` split then finds block boundaries only.
                self.bytes
                    .extend_from_slice(text.replace("} {", "}\\x20{").as_bytes());
                self.len = self.bytes.len();
            }
            OutputFormat::Json => {
                serde_json::to_writer(&mut self.bytes, &to_json(&value))
                    .map_err(|e| ExportError::Encode(e.to_string()))?;
                self.bytes.push(b'\n');
                self.len = self.bytes.len();
            }
            OutputFormat::IonBinary => {
                self.len += value.to_string().len();
                self.elements.push(value);
            }
        }
        Ok(())
    }

    /// The object's size so far (an over-estimate for Ion binary).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The object's body.
    pub fn finish(self) -> Result<Vec<u8>> {
        match self.format {
            OutputFormat::IonText | OutputFormat::Json => Ok(self.bytes),
            OutputFormat::IonBinary => Ok(Sequence::new(self.elements).encode_as(v1_0::Binary)?),
        }
    }
}

/// Ion → JSON down-conversion (QLDB's "Down-converting to JSON"): annotations are dropped,
/// typed nulls become `null`, timestamps become their Ion text (UTC as `Z`), symbols strings, blobs and
/// clobs base64 strings, s-expressions arrays, decimals numbers; floats that JSON cannot hold
/// (NaN, ±infinity) become `null`; integers beyond 64 bits become their decimal text.
pub fn to_json(element: &Element) -> Json {
    match element.value() {
        Value::Null(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => match i64::try_from(i.clone()) {
            Ok(small) => Json::Number(small.into()),
            Err(_) => Json::String(i.to_string()),
        },
        Value::Float(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Decimal(d) => {
            let text = Element::from(d.clone())
                .to_string()
                .replace(['d', 'D'], "e");
            text.parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map_or(Json::String(text), Json::Number)
        }
        Value::Timestamp(t) => {
            let text = t.to_string();
            // UTC as `Z`, the way QLDB writes timestamps.
            Json::String(match text.strip_suffix("+00:00") {
                Some(utc) => format!("{utc}Z"),
                None => text,
            })
        }
        Value::Symbol(s) => s.text().map_or(Json::Null, |t| Json::String(t.to_owned())),
        Value::String(s) => Json::String(s.text().to_owned()),
        Value::Blob(b) | Value::Clob(b) => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
        }
        Value::List(seq) | Value::SExp(seq) => Json::Array(seq.elements().map(to_json).collect()),
        Value::Struct(s) => {
            let mut map = Map::new();
            for (name, value) in s.fields() {
                map.insert(name.text().unwrap_or_default().to_owned(), to_json(value));
            }
            Json::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Element> {
        Element::read_all(
            r#"{a: {b: 1}, c: [{d: "} {"}, {e: 2}]} {f: {{aGk=}}, t: 2019-04-15T22:00:00.000Z, x: 1.50}"#,
        )
        .unwrap()
        .into_iter()
        .collect()
    }

    #[test]
    fn ion_text_is_compact_with_one_space_between_values() {
        let values = sample();
        let text = String::from_utf8(OutputFormat::IonText.encode(&values).unwrap()).unwrap();
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(text.matches("} {").count(), 1, "{text}");
        let read: Vec<Element> = Element::read_all(text.as_bytes())
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(read, values);
    }

    #[test]
    fn ion_binary_reads_back() {
        let values = sample();
        let bytes = OutputFormat::IonBinary.encode(&values).unwrap();
        assert_eq!(&bytes[..4], &[0xE0, 0x01, 0x00, 0xEA]);
        let read: Vec<Element> = Element::read_all(bytes).unwrap().into_iter().collect();
        assert_eq!(read, values);
    }

    #[test]
    fn json_lines_down_convert() {
        let text = String::from_utf8(OutputFormat::Json.encode(&sample()).unwrap()).unwrap();
        let lines: Vec<Json> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["c"][1]["e"], 2);
        assert_eq!(lines[1]["f"], "aGk=");
        assert_eq!(lines[1]["t"], "2019-04-15T22:00:00.000Z");
        assert_eq!(lines[1]["x"], 1.5);
    }

    #[test]
    fn format_names_round_trip() {
        for format in [
            OutputFormat::IonText,
            OutputFormat::IonBinary,
            OutputFormat::Json,
        ] {
            assert_eq!(OutputFormat::parse(format.name()).unwrap(), format);
        }
        assert!(OutputFormat::parse("CSV").is_err());
    }
}
