//! PartiQL `=` as bytes: the key under which an index files a value and under which a lookup
//! finds it.
//!
//! Invariant: two values have the same [`equality_key`] exactly when PartiQL `=` is true
//! between them (as quill-partiql's evaluator implements it, which builds its numeric
//! comparison on [`ExactNumber`] so the two cannot drift apart). An index lookup therefore
//! returns every document a scan would, and OCC conflicts over index keys cover every equal
//! value. The rules:
//! - numbers compare by exact value across int, decimal and float: `100 = 100.00 = 1d2 = 100e0`,
//!   `0 = -0e0 = -0d1`; a float equals a decimal only when the decimal is exactly the float's
//!   binary value (`0.1e0 ≠ 0.1`); `+inf` equals only `+inf`, NaN only NaN;
//! - a string equals a symbol with the same text;
//! - timestamps compare instants: precision and offset aside (`2022T = 2022-01-01T00:00Z`), an
//!   unknown offset counting as UTC;
//! - annotations are ignored;
//! - a null operand makes `=` null, never true, so a null value has no key; inside a container
//!   any null equals any other (`[null] = [null.int]`);
//! - lists and sexps compare element by element (a list never equals a sexp), structs as
//!   multisets of (name, value) fields; blobs and clobs by bytes (a blob equals a clob with the
//!   same bytes).
//!
//! These are the rules of PartiQL's reference implementation (partiql-lang-kotlin, whose `=` is
//! the equality of its total order, so NaN = NaN there too) with one deliberate difference: it
//! compares an int with a float as two floats, which makes `=` intransitive (`2^53 + 1` would
//! equal `2^53e0`, which equals `2^53`); here every finite number compares exactly.

use std::cmp::Ordering;

use ion_rs::{Element, Timestamp, Value};

const TAG_NULL: u8 = 0;
const TAG_BOOL: u8 = 1;
const TAG_NUMBER: u8 = 2;
const TAG_SPECIAL_FLOAT: u8 = 3;
const TAG_TIMESTAMP: u8 = 4;
const TAG_TEXT: u8 = 5;
const TAG_SYMBOL_WITHOUT_TEXT: u8 = 6;
const TAG_LOB: u8 = 7;
const TAG_LIST: u8 = 8;
const TAG_SEXP: u8 = 9;
const TAG_STRUCT: u8 = 10;

/// The key of `value` under PartiQL `=`; `None` for a null, which `=` never finds.
pub fn equality_key(value: &Element) -> Option<Vec<u8>> {
    if value.is_null() {
        return None;
    }
    let mut key = Vec::new();
    write_key(value, &mut key);
    Some(key)
}

/// Appends the self-delimiting key of a value (nulls included) to `out`.
fn write_key(value: &Element, out: &mut Vec<u8>) {
    if value.is_null() {
        out.push(TAG_NULL);
        return;
    }
    match value.value() {
        Value::Null(_) => out.push(TAG_NULL),
        Value::Bool(b) => out.extend([TAG_BOOL, u8::from(*b)]),
        Value::Int(_) | Value::Decimal(_) | Value::Float(_) => match ExactNumber::of(value) {
            Some(number) => write_number(&number, out),
            // 0: NaN, 1: -inf, 2: +inf.
            None => {
                let special = match value.as_float() {
                    Some(f) if f == f64::NEG_INFINITY => 1,
                    Some(f) if f == f64::INFINITY => 2,
                    _ => 0,
                };
                out.extend([TAG_SPECIAL_FLOAT, special]);
            }
        },
        Value::Timestamp(t) => write_timestamp(t, out),
        Value::String(_) | Value::Symbol(_) => match value.as_text() {
            Some(text) => {
                out.push(TAG_TEXT);
                write_bytes(text.as_bytes(), out);
            }
            None => out.push(TAG_SYMBOL_WITHOUT_TEXT),
        },
        Value::Blob(bytes) | Value::Clob(bytes) => {
            out.push(TAG_LOB);
            write_bytes(bytes.as_ref(), out);
        }
        Value::List(items) | Value::SExp(items) => {
            let tag = if value.ion_type() == ion_rs::IonType::List {
                TAG_LIST
            } else {
                TAG_SEXP
            };
            out.push(tag);
            write_length(items.len(), out);
            for item in items.iter() {
                write_key(item, out);
            }
        }
        Value::Struct(fields) => {
            // A multiset: the fields' keys sorted, so field order never matters.
            let mut entries = Vec::with_capacity(fields.len());
            for (name, field) in fields.fields() {
                let mut entry = Vec::new();
                match name.text() {
                    Some(text) => {
                        entry.push(1);
                        write_bytes(text.as_bytes(), &mut entry);
                    }
                    None => entry.push(0),
                }
                write_key(field, &mut entry);
                entries.push(entry);
            }
            entries.sort_unstable();
            out.push(TAG_STRUCT);
            write_length(entries.len(), out);
            for entry in entries {
                out.extend(entry);
            }
        }
    }
}

fn write_length(length: usize, out: &mut Vec<u8>) {
    // LEB128.
    let mut rest = length as u64;
    loop {
        let low = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    write_length(bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn write_number(number: &ExactNumber, out: &mut Vec<u8>) {
    out.push(TAG_NUMBER);
    out.push(u8::from(number.negative));
    out.extend_from_slice(&number.exponent.to_be_bytes());
    write_bytes(number.digits.as_bytes(), out);
}

/// The instant in UTC (an unknown offset counts as UTC, as in ion-rs's timestamp equality):
/// the date and time fields, then the fractional-second digits without trailing zeros.
fn write_timestamp(timestamp: &Timestamp, out: &mut Vec<u8>) {
    let utc = timestamp.to_utc();
    out.push(TAG_TIMESTAMP);
    out.extend_from_slice(&utc.year().to_be_bytes());
    for field in [
        utc.month(),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
    ] {
        // Each field fits a byte (month ≤ 12, …, second ≤ 60).
        out.push(field as u8);
    }
    // ion-rs exposes the fractional seconds exactly only through the text form, where the
    // only `.` is the one before them.
    let text = utc.to_string();
    let fraction = text
        .split_once('.')
        .map(|(_, after)| {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            after[..end].trim_end_matches('0')
        })
        .unwrap_or("");
    write_bytes(fraction.as_bytes(), out);
}

/// A finite number (int, decimal or float) as sign, significant digits and the exponent of the
/// last digit: equal values have equal representations, whatever their Ion type or scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExactNumber {
    negative: bool,
    /// Decimal digits without leading or trailing zeros; empty for zero.
    digits: String,
    /// Power of ten of the last digit; 0 for zero.
    exponent: i64,
}

impl ExactNumber {
    fn new(negative: bool, magnitude: &str, exponent: i64) -> ExactNumber {
        let trimmed_start = magnitude.trim_start_matches('0');
        let trimmed = trimmed_start.trim_end_matches('0');
        if trimmed.is_empty() {
            return ExactNumber {
                negative: false,
                digits: String::new(),
                exponent: 0,
            };
        }
        let dropped = (trimmed_start.len() - trimmed.len()) as i64;
        ExactNumber {
            negative,
            digits: trimmed.to_string(),
            exponent: exponent.saturating_add(dropped),
        }
    }

    /// The value of a non-null int, decimal or finite float; `None` for anything else.
    pub fn of(element: &Element) -> Option<ExactNumber> {
        if element.is_null() {
            return None;
        }
        match element.value() {
            Value::Int(int) => Some(ExactNumber::new(
                int.is_negative(),
                &int.unsigned_abs().to_string(),
                0,
            )),
            Value::Decimal(decimal) => {
                let coefficient = decimal.coefficient();
                Some(ExactNumber::new(
                    coefficient.is_negative(),
                    &coefficient.magnitude().to_string(),
                    decimal.exponent(),
                ))
            }
            Value::Float(float) => ExactNumber::of_float(*float),
            _ => None,
        }
    }

    /// The exact binary value of a finite float (every finite float is a terminating decimal).
    fn of_float(value: f64) -> Option<ExactNumber> {
        if !value.is_finite() {
            return None;
        }
        let bits = value.to_bits();
        let negative = bits >> 63 == 1;
        let biased_exponent = ((bits >> 52) & 0x7FF) as i64;
        let fraction = bits & ((1 << 52) - 1);
        // value = mantissa × 2^power
        let (mantissa, power) = if biased_exponent == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1 << 52), biased_exponent - 1075)
        };
        let mut magnitude = DecimalDigits::from(mantissa);
        let exponent = if power >= 0 {
            magnitude.multiply_by_power(2, power as u32);
            0
        } else {
            // mantissa × 2^-k = mantissa × 5^k × 10^-k
            magnitude.multiply_by_power(5, power.unsigned_abs() as u32);
            power
        };
        Some(ExactNumber::new(negative, &magnitude.to_string(), exponent))
    }

    fn cmp_magnitude(&self, other: &ExactNumber) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // The exponent of the most significant digit decides first.
        let top_self = self.exponent.saturating_add(self.digits.len() as i64);
        let top_other = other.exponent.saturating_add(other.digits.len() as i64);
        top_self.cmp(&top_other).then_with(|| {
            let width = self.digits.len().max(other.digits.len());
            let a = format!("{:0<width$}", self.digits);
            let b = format!("{:0<width$}", other.digits);
            a.cmp(&b)
        })
    }
}

impl Ord for ExactNumber {
    fn cmp(&self, other: &ExactNumber) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for ExactNumber {
    fn partial_cmp(&self, other: &ExactNumber) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A non-negative integer in base 10^9 limbs, least significant first: just enough arithmetic
/// to write a float's binary value in decimal.
struct DecimalDigits(Vec<u64>);

const LIMB: u64 = 1_000_000_000;

impl From<u64> for DecimalDigits {
    fn from(mut value: u64) -> DecimalDigits {
        let mut limbs = Vec::new();
        while value > 0 {
            limbs.push(value % LIMB);
            value /= LIMB;
        }
        DecimalDigits(limbs)
    }
}

impl DecimalDigits {
    /// Multiplies by `base^power` for a base of 2 or 5, in steps whose product with a limb
    /// fits a u64.
    fn multiply_by_power(&mut self, base: u64, mut power: u32) {
        // 2^30 and 5^13 are both below 2^31, so limb × step < 10^9 × 2^31 < 2^64.
        let steps_max = if base == 2 { 30 } else { 13 };
        while power > 0 {
            let steps = power.min(steps_max);
            self.multiply_small(base.pow(steps));
            power -= steps;
        }
    }

    fn multiply_small(&mut self, factor: u64) {
        let mut carry = 0;
        for limb in &mut self.0 {
            let product = *limb * factor + carry;
            *limb = product % LIMB;
            carry = product / LIMB;
        }
        while carry > 0 {
            self.0.push(carry % LIMB);
            carry /= LIMB;
        }
    }
}

impl std::fmt::Display for DecimalDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((top, rest)) = self.0.split_last() else {
            return write!(f, "0");
        };
        write!(f, "{top}")?;
        for limb in rest.iter().rev() {
            write!(f, "{limb:09}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ion(text: &str) -> Element {
        Element::read_one(text).unwrap()
    }

    fn key(text: &str) -> Option<Vec<u8>> {
        equality_key(&ion(text))
    }

    fn assert_same(texts: &[&str]) {
        let first = key(texts[0]);
        assert!(first.is_some(), "{} has a key", texts[0]);
        for text in &texts[1..] {
            assert_eq!(key(text), first, "{text} vs {}", texts[0]);
        }
    }

    fn assert_different(a: &str, b: &str) {
        assert_ne!(key(a), key(b), "{a} vs {b}");
    }

    #[test]
    fn numbers_key_by_value_across_types() {
        assert_same(&[
            "100", "100.00", "100.", "1d2", "10000d-2", "100e0", "1e2", "a::100",
        ]);
        assert_same(&["0", "-0.", "0d-5", "0d5", "0e0", "-0e0"]);
        assert_same(&["-1.5", "-15d-1", "-1.5e0", "-1.50"]);
        assert_same(&["0.5", "0.5e0", "5e-1"]);
        let big = "123456789012345678901234567890123456789012345";
        assert_same(&[big, &format!("{big}.000"), &format!("{big}d0")]);
        assert_different("1", "1.01");
        assert_different("1", "-1");
        assert_different("10", "1");
        // 0.1 has no exact binary form: the float is a different number.
        assert_different("0.1", "0.1e0");
        assert_same(&[
            "0.1e0",
            "0.1000000000000000055511151231257827021181583404541015625",
        ]);
        // 2^53 + 1 rounds to 2^53 as a float, but an int keeps it: different values.
        assert_same(&["9007199254740992", "9007199254740992e0"]);
        assert_different("9007199254740993", "9007199254740992e0");
        assert_same(&["+inf", "a::+inf"]);
        assert_different("+inf", "-inf");
        assert_same(&["nan", "a::nan"]);
        assert_same(&["[1, nan]", "[1.0, nan]"]);
        assert_different("nan", "+inf");
        assert_different("-inf", "+inf");
    }

    #[test]
    fn extreme_floats_are_exact() {
        let smallest = ExactNumber::of(&Element::float(f64::from_bits(1))).unwrap();
        assert_eq!(smallest.exponent, -1074);
        assert!(smallest
            .digits
            .starts_with("49406564584124654417656879286822137236505980"));
        let largest = ExactNumber::of(&Element::float(f64::MAX)).unwrap();
        assert_eq!(largest.exponent, 0);
        assert_eq!(largest.digits.len(), 309);
        assert!(largest
            .digits
            .starts_with("17976931348623157081452742373170435679807056752584"));
    }

    #[test]
    fn text_keys_ignore_string_or_symbol() {
        assert_same(&["\"abc\"", "abc", "'abc'", "x::abc"]);
        assert_different("\"abc\"", "\"abd\"");
        assert_different("\"1\"", "1");
        assert_different("{{\"abc\"}}", "\"abc\"");
        assert_same(&["{{YWJj}}", "{{\"abc\"}}"]);
        assert_different("{{YWJj}}", "{{\"abd\"}}");
    }

    #[test]
    fn timestamps_key_by_instant() {
        assert_same(&[
            "2022T",
            "2022-01T",
            "2022-01-01T",
            "2022-01-01T00:00Z",
            "2022-01-01T00:00:00.000Z",
        ]);
        assert_same(&[
            "2022-05-11T12:00:00.000Z",
            "2022-05-11T07:00:00-05:00",
            "2022-05-11T12:00:00.0-00:00",
        ]);
        assert_same(&["2022-05-11T12:00:00.1Z", "2022-05-11T12:00:00.100Z"]);
        assert_different("2022-05-11T12:00:00.1Z", "2022-05-11T12:00:00.01Z");
        assert_different("2022T", "2023T");
    }

    #[test]
    fn nulls_have_no_key_at_the_top_and_equal_each_other_inside() {
        for null in ["null", "null.int", "null.string", "a::null"] {
            assert_eq!(key(null), None);
        }
        assert_same(&["[null]", "[null.int]", "[a::null.struct]"]);
        assert_different("[null]", "[0]");
    }

    #[test]
    fn containers_key_by_contents() {
        assert_same(&["[1, \"a\"]", "[1.0, a]", "x::[1e0, 'a']"]);
        assert_different("[1]", "(1)");
        assert_different("[1]", "[1, 1]");
        assert_different("[[1], 2]", "[[1, 2]]");
        assert_same(&["{a: 1, b: [2.0]}", "{b: [2], a: 1.00}"]);
        assert_different("{a: 1}", "{a: 1, a: 1}");
        assert_same(&["{a: 1, a: 2}", "{a: 2, a: 1}"]);
        assert_different("{a: 1}", "{b: 1}");
        assert_different("{ab: 1}", "{a: 1}");
        assert_different("[\"ab\", \"c\"]", "[\"a\", \"bc\"]");
    }

    proptest::proptest! {
        /// Keys agree with exact numeric order: equal keys exactly for equal i128 values,
        /// whatever the form.
        #[test]
        fn integer_keys(a in proptest::prelude::any::<i64>(), b in proptest::prelude::any::<i64>(), zeros in 0usize..5) {
            let decimal = format!("{b}.{}", "0".repeat(zeros));
            proptest::prop_assert_eq!(key(&a.to_string()) == key(&decimal), a == b);
            let exact_a = ExactNumber::of(&ion(&a.to_string())).unwrap();
            let exact_b = ExactNumber::of(&ion(&decimal)).unwrap();
            proptest::prop_assert_eq!(exact_a.cmp(&exact_b), a.cmp(&b));
        }

        /// A float's exact value round-trips through its decimal digits, and orders as floats do.
        #[test]
        fn float_values_are_exact(a in proptest::prelude::any::<f64>(), b in proptest::prelude::any::<f64>()) {
            if let (Some(x), Some(y)) = (ExactNumber::of(&Element::float(a)), ExactNumber::of(&Element::float(b))) {
                let sign = if x.negative { "-" } else { "" };
                let digits = if x.digits.is_empty() { "0" } else { x.digits.as_str() };
                let text = format!("{sign}{digits}e{}", x.exponent);
                proptest::prop_assert_eq!(text.parse::<f64>().unwrap(), a);
                proptest::prop_assert_eq!(Some(x.cmp(&y)), a.partial_cmp(&b));
            }
        }
    }
}
