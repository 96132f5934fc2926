//! How values are shown to people: Ion text, pretty-printed, one value after another.

use ion_rs::{v1_0, Element, TextFormat};

/// Pretty Ion text for one value (multi-line for containers), without a trailing newline.
pub fn pretty(value: &Element) -> String {
    match value.encode_as(v1_0::Text.with_format(TextFormat::Pretty)) {
        Ok(text) => text.trim_end().to_owned(),
        // Every Element is encodable; fall back to the compact Display form rather than fail.
        Err(_) => value.to_string(),
    }
}

/// Compact one-line Ion text.
pub fn compact(value: &Element) -> String {
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_output_reads_back_as_the_same_value() {
        let value = Element::read_one(
            r#"{name: "Alice", tags: [1, 2e0, 3.5], when: 2024-01-02T03:04:05Z, b: {{aGk=}}}"#,
        )
        .unwrap();
        let text = pretty(&value);
        assert!(text.contains('\n'), "{text}");
        assert_eq!(Element::read_one(text.as_bytes()).unwrap(), value);
        assert_eq!(
            Element::read_one(compact(&value).as_bytes()).unwrap(),
            value
        );
    }
}
