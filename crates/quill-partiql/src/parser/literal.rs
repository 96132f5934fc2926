//! Turning literal tokens into `ion_rs::Element`s.
//!
//! Numbers keep their written precision: `7` is an Ion int, `1.50` an Ion decimal with
//! coefficient 150 and exponent -2, `1e3` an Ion float. Backtick literals go through
//! `Element::read_one`, which rejects anything but exactly one valid Ion value.

use ion_rs::{Decimal, Element};

use super::limits::ION_LITERAL_DEPTH_MAX;

/// Most decimal digits that always fit an `i128` coefficient; longer numbers go through the Ion
/// text reader, which handles arbitrary precision.
const INLINE_DIGITS_MAX: usize = 38;

/// The element for an unsigned number token `text`, negated when `negative` (the parser folds
/// a leading `-` into the literal).
pub(crate) fn number(text: &str, negative: bool) -> Result<Element, String> {
    if text.contains(['e', 'E']) {
        return float(text, negative);
    }
    match text.split_once('.') {
        Some((whole, fraction)) => decimal(whole, fraction, negative),
        None => integer(text, negative),
    }
}

fn float(text: &str, negative: bool) -> Result<Element, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("invalid number literal '{text}'"))?;
    if !value.is_finite() {
        return Err(format!("number literal '{text}' is out of range"));
    }
    Ok(Element::float(if negative { -value } else { value }))
}

fn integer(digits: &str, negative: bool) -> Result<Element, String> {
    let digits = strip_leading_zeros(digits);
    if digits.len() <= INLINE_DIGITS_MAX {
        let magnitude: i128 = digits
            .parse()
            .map_err(|_| format!("invalid number literal '{digits}'"))?;
        return Ok(Element::int(if negative { -magnitude } else { magnitude }));
    }
    read_ion_number(&format!("{}{digits}", sign(negative)))
}

fn decimal(whole: &str, fraction: &str, negative: bool) -> Result<Element, String> {
    let whole = strip_leading_zeros(whole);
    let exponent =
        -i64::try_from(fraction.len()).map_err(|_| "decimal literal too long".to_string())?;
    let digits = format!("{whole}{fraction}");
    if digits.len() > INLINE_DIGITS_MAX {
        return read_ion_number(&format!("{}{whole}.{fraction}", sign(negative)));
    }
    let coefficient: i128 = digits
        .parse()
        .map_err(|_| format!("invalid number literal '{whole}.{fraction}'"))?;
    let value = match (coefficient, negative) {
        (0, true) => Decimal::negative_zero_with_exponent(exponent),
        (c, true) => Decimal::new(-c, exponent),
        (c, false) => Decimal::new(c, exponent),
    };
    Ok(Element::decimal(value))
}

fn strip_leading_zeros(digits: &str) -> &str {
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        &digits[digits.len().saturating_sub(1)..]
    } else {
        trimmed
    }
}

fn sign(negative: bool) -> &'static str {
    if negative {
        "-"
    } else {
        ""
    }
}

fn read_ion_number(text: &str) -> Result<Element, String> {
    Element::read_one(text).map_err(|e| format!("invalid number literal '{text}': {e}"))
}

/// The element written between backticks (`inner` excludes them).
pub(crate) fn ion(inner: &str) -> Result<Element, String> {
    if ion_nesting_depth(inner) > ION_LITERAL_DEPTH_MAX {
        return Err(format!(
            "Ion literal nests deeper than {ION_LITERAL_DEPTH_MAX} levels"
        ));
    }
    Element::read_one(inner.as_bytes()).map_err(|e| format!("invalid Ion literal: {e}"))
}

/// An upper bound of the container nesting depth of Ion text: counts `[`, `(`, `{` outside
/// strings and quoted symbols (brackets in comments or `{{` lobs only over-count, which is
/// safe for a limit check).
fn ion_nesting_depth(text: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for byte in text.bytes() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if byte == b'\\' => escaped = true,
            Some(open) if byte == open => quote = None,
            Some(_) => {}
            None => match byte {
                b'"' | b'\'' => quote = Some(byte),
                b'[' | b'(' | b'{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b']' | b')' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_type_and_precision() {
        assert_eq!(number("42", false).unwrap(), Element::int(42));
        assert_eq!(number("42", true).unwrap(), Element::int(-42));
        let decimal = number("1.50", false).unwrap();
        assert_eq!(decimal.as_decimal().unwrap().coefficient(), 150.into());
        assert_eq!(decimal.as_decimal().unwrap().exponent(), -2);
        assert_eq!(decimal.to_string(), "1.50");
        assert_eq!(number("1e3", false).unwrap(), Element::float(1000.0));
        assert_eq!(number("5.", false).unwrap().to_string(), "5.");
    }

    #[test]
    fn long_numbers_use_arbitrary_precision() {
        let digits = "123456789012345678901234567890123456789012345";
        assert_eq!(number(digits, false).unwrap().to_string(), digits);
        let decimal = "1234567890123456789012345678901234567890.5";
        assert_eq!(
            number(decimal, true).unwrap().to_string(),
            format!("-{decimal}")
        );
    }

    #[test]
    fn negative_zero_decimal_is_kept() {
        assert_eq!(number("0.0", true).unwrap().to_string(), "-0.0");
    }

    #[test]
    fn out_of_range_float_is_an_error() {
        assert_eq!(
            number("1e999", false).unwrap_err(),
            "number literal '1e999' is out of range"
        );
    }

    #[test]
    fn ion_nesting_is_measured_outside_strings() {
        assert_eq!(ion_nesting_depth("{a: [1, (2)], b: \"[[[\", c: '{{'}"), 3);
        assert_eq!(ion_nesting_depth("\"a\\\"[\" [x]"), 1);
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        assert_eq!(
            ion(&deep).unwrap_err(),
            "Ion literal nests deeper than 100 levels"
        );
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(ion(&ok).is_ok());
    }

    #[test]
    fn ion_literals_must_be_one_value() {
        assert!(ion("2019-06-05T00:00:00Z")
            .unwrap()
            .as_timestamp()
            .is_some());
        assert!(ion("1 2").unwrap_err().starts_with("invalid Ion literal: "));
        assert!(ion("").is_err());
        assert!(ion("{a:").is_err());
    }
}
