//! PartiQL value semantics over Ion: MISSING vs NULL, three-valued logic, equality across
//! numeric types, exact decimal arithmetic, and the total order used by ORDER BY / GROUP BY /
//! MIN / MAX. Everything here is pure (no ledger access) so it is unit-tested in isolation.
//!
//! Numbers: ints and decimals are compared exactly at any size (digit strings aligned by
//! exponent); arithmetic works on `i128` coefficients with checked operations and reports an
//! overflow as a typed error instead of wrapping or panicking.

use std::cmp::Ordering;

use ion_rs::{Decimal, Element, Int, IonType, Value};
use quill_ledger::equality::ExactNumber;

use crate::error::{PartiqlError, Result};

/// Significant digits of a decimal division that does not terminate: decimal128's 34, which
/// is the precision QLDB's Java implementation divides with.
const DIVISION_DIGITS_MAX: u32 = 34;

/// A PartiQL datum: an Ion value, or MISSING (an absent field or an out-of-range index).
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// The absence of a value.
    Missing,
    /// Any Ion value, including typed nulls.
    Ion(Element),
}

impl Datum {
    /// Ion `null`.
    pub fn null() -> Datum {
        Datum::Ion(Element::null(IonType::Null))
    }

    /// An Ion bool.
    pub fn bool(value: bool) -> Datum {
        Datum::Ion(Element::boolean(value))
    }

    /// An Ion string.
    pub fn string(value: impl Into<String>) -> Datum {
        Datum::Ion(Element::string(value.into()))
    }

    /// An Ion int.
    pub fn int(value: i64) -> Datum {
        Datum::Ion(Element::int(value))
    }

    /// True for MISSING and for any Ion null.
    pub fn is_absent(&self) -> bool {
        match self {
            Datum::Missing => true,
            Datum::Ion(element) => element.is_null(),
        }
    }

    /// True only for MISSING.
    pub fn is_missing(&self) -> bool {
        matches!(self, Datum::Missing)
    }

    /// True only for the bool `true`: WHERE keeps a row only then.
    pub fn is_true(&self) -> bool {
        matches!(self, Datum::Ion(e) if e.as_bool() == Some(true))
    }

    /// The Ion value, if present.
    pub fn as_element(&self) -> Option<&Element> {
        match self {
            Datum::Missing => None,
            Datum::Ion(element) => Some(element),
        }
    }

    /// Text of a string or symbol.
    pub fn as_text(&self) -> Option<&str> {
        self.as_element()
            .and_then(|e| if e.is_null() { None } else { e.as_text() })
    }

    /// The Ion value, with MISSING rendered as `null` (where a value must exist, e.g. a list).
    pub fn into_element_or_null(self) -> Element {
        match self {
            Datum::Missing => Element::null(IonType::Null),
            Datum::Ion(element) => element,
        }
    }

    /// A short type name for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Datum::Missing => "missing".to_string(),
            Datum::Ion(e) if e.is_null() => "null".to_string(),
            Datum::Ion(e) => format!("{}", e.ion_type()).to_lowercase(),
        }
    }
}

impl From<Element> for Datum {
    fn from(element: Element) -> Self {
        Datum::Ion(element)
    }
}

/// A number for arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i128),
    Decimal { coefficient: i128, exponent: i64 },
    Float(f64),
}

fn overflow(what: &str) -> PartiqlError {
    PartiqlError::type_error(format!("numeric overflow in {what}"))
}

fn int_to_i128(int: &Int) -> Result<i128> {
    int.as_i128()
        .ok_or_else(|| overflow("integer wider than 128 bits"))
}

fn decimal_parts(decimal: &Decimal) -> Result<(i128, i64)> {
    let coefficient = decimal.coefficient();
    if coefficient.is_zero() {
        return Ok((0, decimal.exponent()));
    }
    let int = Int::try_from(coefficient).map_err(|_| overflow("decimal coefficient"))?;
    Ok((int_to_i128(&int)?, decimal.exponent()))
}

fn number_of(element: &Element) -> Result<Option<Number>> {
    if element.is_null() {
        return Ok(None);
    }
    Ok(match element.value() {
        Value::Int(int) => Some(Number::Int(int_to_i128(int)?)),
        Value::Decimal(decimal) => {
            let (coefficient, exponent) = decimal_parts(decimal)?;
            Some(Number::Decimal {
                coefficient,
                exponent,
            })
        }
        Value::Float(float) => Some(Number::Float(*float)),
        _ => None,
    })
}

fn number_element(number: Number) -> Element {
    match number {
        Number::Int(value) => Element::int(value),
        Number::Decimal {
            coefficient,
            exponent,
        } => Element::decimal(Decimal::new(coefficient, exponent)),
        Number::Float(value) => Element::float(value),
    }
}

fn pow10(exponent: u64) -> Option<i128> {
    10i128.checked_pow(u32::try_from(exponent).ok()?)
}

/// Scales `coefficient × 10^exponent` to the smaller exponent `target`.
fn rescale(coefficient: i128, exponent: i64, target: i64) -> Result<i128> {
    let shift = exponent
        .checked_sub(target)
        .ok_or_else(|| overflow("decimal exponent"))?;
    let factor = pow10(shift.unsigned_abs()).ok_or_else(|| overflow("decimal scale"))?;
    coefficient
        .checked_mul(factor)
        .ok_or_else(|| overflow("decimal scale"))
}

fn as_decimal(number: Number) -> (i128, i64) {
    match number {
        Number::Int(value) => (value, 0),
        Number::Decimal {
            coefficient,
            exponent,
        } => (coefficient, exponent),
        Number::Float(_) => (0, 0),
    }
}

fn as_float(number: Number) -> f64 {
    match number {
        Number::Int(value) => value as f64,
        Number::Decimal {
            coefficient,
            exponent,
        } => format!("{coefficient}e{exponent}")
            .parse()
            .unwrap_or(f64::NAN),
        Number::Float(value) => value,
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithmeticOp {
    /// `+`
    Add,
    /// `-`
    Subtract,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Modulo,
}

impl ArithmeticOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithmeticOp::Add => "+",
            ArithmeticOp::Subtract => "-",
            ArithmeticOp::Multiply => "*",
            ArithmeticOp::Divide => "/",
            ArithmeticOp::Modulo => "%",
        }
    }
}

/// Estimated size of `element` encoded alone as Ion 1.0 binary, computed without encoding
/// (it runs on every result row, so it must cost far less than the encoding it predicts).
///
/// Each value counts its type descriptor and length bytes plus its body: ints their magnitude,
/// floats 8 bytes, strings and lobs their bytes, containers their members. Symbols, field
/// names and annotations count their text, which each result value's own symbol table
/// carries; a name repeated inside one value is counted each time (the encoding lists it once),
/// so the estimate errs large there. Decimals count their coefficient and exponent;
/// timestamps take the size of one with an offset and milliseconds (coarser ones are smaller).
pub fn ion_binary_size_estimate(element: &Element) -> usize {
    let annotations: usize = element
        .annotations()
        .iter()
        .map(|symbol| symbol.text().map_or(1, str::len) + 1)
        .sum();
    let body = match element.value() {
        Value::Null(_) | Value::Bool(_) => 0,
        Value::Int(int) => int.as_i128().map_or(17, |n| {
            let bits = 128 - n.unsigned_abs().leading_zeros() as usize;
            bits.div_ceil(8)
        }),
        Value::Float(_) => 8,
        Value::Decimal(decimal) => {
            let exponent = if decimal.exponent().unsigned_abs() < 64 {
                1
            } else {
                2
            };
            let magnitude_bits = decimal
                .coefficient()
                .magnitude()
                .as_u128()
                .map_or(128, |m| 128 - m.leading_zeros() as usize);
            // The coefficient is a signed int: one more bit for the sign, none for zero.
            exponent + (magnitude_bits + usize::from(magnitude_bits > 0)).div_ceil(8)
        }
        Value::Timestamp(_) => 11,
        Value::Symbol(symbol) => symbol.text().map_or(1, str::len),
        Value::String(text) => text.text().len(),
        Value::Clob(bytes) | Value::Blob(bytes) => bytes.as_ref().len(),
        Value::List(sequence) | Value::SExp(sequence) => {
            sequence.iter().map(ion_binary_size_estimate).sum()
        }
        Value::Struct(fields) => fields
            .iter()
            .map(|(name, value)| {
                name.text().map_or(1, str::len) + 1 + ion_binary_size_estimate(value)
            })
            .sum(),
    };
    annotations + body + ion_header_size(body)
}

/// Type descriptor plus, for bodies of 14 bytes or more, the VarUInt length that follows it.
fn ion_header_size(body: usize) -> usize {
    if body < 14 {
        1
    } else {
        let bits = usize::BITS as usize - body.leading_zeros() as usize;
        1 + bits.div_ceil(7)
    }
}

/// `a op b` with PartiQL's absent-value rules: MISSING in → MISSING out, NULL in → NULL out.
pub fn arithmetic(op: ArithmeticOp, left: &Datum, right: &Datum) -> Result<Datum> {
    if left.is_missing() || right.is_missing() {
        return Ok(Datum::Missing);
    }
    if left.is_absent() || right.is_absent() {
        return Ok(Datum::null());
    }
    let (Some(a), Some(b)) = (numeric(left)?, numeric(right)?) else {
        return Err(PartiqlError::type_error(format!(
            "operator {} expects numbers, got {} and {}",
            op.symbol(),
            left.type_name(),
            right.type_name()
        )));
    };
    let result = match (a, b) {
        (Number::Float(_), _) | (_, Number::Float(_)) => float_op(op, as_float(a), as_float(b))?,
        (Number::Int(x), Number::Int(y)) => Number::Int(int_op(op, x, y)?),
        _ => decimal_op(op, as_decimal(a), as_decimal(b))?,
    };
    Ok(Datum::Ion(number_element(result)))
}

fn numeric(datum: &Datum) -> Result<Option<Number>> {
    match datum.as_element() {
        Some(element) => number_of(element),
        None => Ok(None),
    }
}

fn division_by_zero() -> PartiqlError {
    PartiqlError::type_error("division by zero")
}

fn float_op(op: ArithmeticOp, a: f64, b: f64) -> Result<Number> {
    Ok(Number::Float(match op {
        ArithmeticOp::Add => a + b,
        ArithmeticOp::Subtract => a - b,
        ArithmeticOp::Multiply => a * b,
        ArithmeticOp::Divide => a / b,
        ArithmeticOp::Modulo => a % b,
    }))
}

fn int_op(op: ArithmeticOp, a: i128, b: i128) -> Result<i128> {
    let result = match op {
        ArithmeticOp::Add => a.checked_add(b),
        ArithmeticOp::Subtract => a.checked_sub(b),
        ArithmeticOp::Multiply => a.checked_mul(b),
        ArithmeticOp::Divide | ArithmeticOp::Modulo if b == 0 => return Err(division_by_zero()),
        ArithmeticOp::Divide => a.checked_div(b),
        ArithmeticOp::Modulo => a.checked_rem(b),
    };
    result.ok_or_else(|| overflow(&format!("integer {}", op.symbol())))
}

fn decimal_op(op: ArithmeticOp, a: (i128, i64), b: (i128, i64)) -> Result<Number> {
    let (ca, ea) = a;
    let (cb, eb) = b;
    let what = || overflow(&format!("decimal {}", op.symbol()));
    let (coefficient, exponent) = match op {
        ArithmeticOp::Add | ArithmeticOp::Subtract | ArithmeticOp::Modulo => {
            let exponent = ea.min(eb);
            let x = rescale(ca, ea, exponent)?;
            let y = rescale(cb, eb, exponent)?;
            let value = match op {
                ArithmeticOp::Add => x.checked_add(y),
                ArithmeticOp::Subtract => x.checked_sub(y),
                _ if y == 0 => return Err(division_by_zero()),
                _ => x.checked_rem(y),
            };
            (value.ok_or_else(what)?, exponent)
        }
        ArithmeticOp::Multiply => (
            ca.checked_mul(cb).ok_or_else(what)?,
            ea.checked_add(eb).ok_or_else(what)?,
        ),
        ArithmeticOp::Divide => divide_decimal(ca, ea, cb, eb)?,
    };
    Ok(Number::Decimal {
        coefficient,
        exponent,
    })
}

fn digit_count(value: i128) -> u32 {
    value
        .unsigned_abs()
        .checked_ilog10()
        .map_or(1, |log| log + 1)
}

/// Long division producing exact digits until the remainder is zero or the quotient has
/// `DIVISION_DIGITS_MAX` significant digits; the last digit is rounded half away from zero.
fn divide_decimal(ca: i128, ea: i64, cb: i128, eb: i64) -> Result<(i128, i64)> {
    if cb == 0 {
        return Err(division_by_zero());
    }
    let mut exponent = ea.checked_sub(eb).ok_or_else(|| overflow("decimal /"))?;
    let mut quotient = ca.checked_div(cb).ok_or_else(|| overflow("decimal /"))?;
    let mut remainder = ca % cb;
    // Each round adds one digit; the budget bounds the loop even when digits stay zero.
    for _ in 0..DIVISION_DIGITS_MAX * 2 {
        if remainder == 0 || (quotient != 0 && digit_count(quotient) >= DIVISION_DIGITS_MAX) {
            break;
        }
        let (Some(shifted), Some(next)) = (remainder.checked_mul(10), quotient.checked_mul(10))
        else {
            break;
        };
        let Some(next) = next.checked_add(shifted / cb) else {
            break;
        };
        quotient = next;
        remainder = shifted % cb;
        exponent -= 1;
    }
    if let Some(shifted) = remainder.checked_mul(10) {
        let next_digit = (shifted / cb).abs();
        if next_digit >= 5 {
            let away = if (ca < 0) != (cb < 0) { -1 } else { 1 };
            quotient = quotient
                .checked_add(away)
                .ok_or_else(|| overflow("decimal /"))?;
        }
    }
    Ok((quotient, exponent))
}

/// Unary minus.
pub fn negate(value: &Datum) -> Result<Datum> {
    arithmetic(ArithmeticOp::Subtract, &Datum::int(0), value)
}

fn is_number(element: &Element) -> bool {
    matches!(
        element.ion_type(),
        IonType::Int | IonType::Decimal | IonType::Float
    ) && !element.is_null()
}

/// Numeric order across int, decimal and float, as PartiQL's reference implementation
/// orders numbers: NaN first (and equal to itself), then `-inf`, the finite numbers, `+inf`.
/// Finite numbers compare by exact value (a float is the binary number it holds, so
/// `0.1e0 > 0.1`, and an int beyond 2^53 never equals a float it rounds to): unlike the
/// reference implementation, which compares an int with a float as floats, equality stays
/// transitive, which index keys rely on.
fn compare_numbers(a: &Element, b: &Element) -> Ordering {
    let class = |e: &Element| match e.as_float() {
        Some(f) if f.is_nan() => 0,
        Some(f) if f == f64::NEG_INFINITY => 1,
        Some(f) if f == f64::INFINITY => 3,
        _ => 2,
    };
    class(a).cmp(&class(b)).then_with(|| {
        if let (Some(x), Some(y)) = (a.as_float(), b.as_float()) {
            return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
        }
        match (ExactNumber::of(a), ExactNumber::of(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            // Unreachable for two finite numbers of the same class.
            _ => Ordering::Equal,
        }
    })
}

/// Deep equality of two present values, as PartiQL `=` sees them once neither is absent:
/// numbers compare by value across types, strings equal symbols with the same text,
/// timestamps compare instants, blobs and clobs compare bytes, structs compare field
/// multisets. Annotations are ignored. Index keys ([`quill_ledger::equality::equality_key`]) encode exactly this relation.
pub fn values_equal(a: &Element, b: &Element) -> bool {
    if a.is_null() || b.is_null() {
        return a.is_null() && b.is_null();
    }
    match (a.value(), b.value()) {
        _ if is_number(a) && is_number(b) => compare_numbers(a, b) == Ordering::Equal,
        (Value::String(_) | Value::Symbol(_), Value::String(_) | Value::Symbol(_)) => {
            a.as_text() == b.as_text()
        }
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::Blob(x) | Value::Clob(x), Value::Blob(y) | Value::Clob(y)) => {
            x.as_ref() == y.as_ref()
        }
        (Value::List(x), Value::List(y)) | (Value::SExp(x), Value::SExp(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| values_equal(p, q))
        }
        (Value::Struct(x), Value::Struct(y)) => structs_equal(x, y),
        _ => false,
    }
}

fn structs_equal(x: &ion_rs::Struct, y: &ion_rs::Struct) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let mut used = vec![false; y.len()];
    x.fields().all(|(name, value)| {
        let found = y
            .fields()
            .enumerate()
            .position(|(i, (other_name, other_value))| {
                !used[i] && name.text() == other_name.text() && values_equal(value, other_value)
            });
        match found {
            Some(i) => {
                used[i] = true;
                true
            }
            None => false,
        }
    })
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `<>` / `!=`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

/// `a op b`: MISSING if either side is MISSING, NULL if either is NULL, MISSING when the
/// types cannot be ordered (so the row drops out of WHERE), else a bool.
pub fn compare(op: CompareOp, left: &Datum, right: &Datum) -> Datum {
    let (Datum::Ion(a), Datum::Ion(b)) = (left, right) else {
        return Datum::Missing;
    };
    if a.is_null() || b.is_null() {
        return Datum::null();
    }
    match op {
        CompareOp::Equal => Datum::bool(values_equal(a, b)),
        CompareOp::NotEqual => Datum::bool(!values_equal(a, b)),
        _ => match ordered_cmp(a, b) {
            None => Datum::Missing,
            Some(ordering) => Datum::bool(match op {
                CompareOp::Less => ordering.is_lt(),
                CompareOp::LessOrEqual => ordering.is_le(),
                CompareOp::Greater => ordering.is_gt(),
                _ => ordering.is_ge(),
            }),
        },
    }
}

/// Order between two comparable scalars (numbers, text, timestamps, bools, lobs).
fn ordered_cmp(a: &Element, b: &Element) -> Option<Ordering> {
    if is_number(a) && is_number(b) {
        return Some(compare_numbers(a, b));
    }
    match (a.value(), b.value()) {
        (Value::String(_) | Value::Symbol(_), Value::String(_) | Value::Symbol(_)) => {
            Some(a.as_text()?.cmp(b.as_text()?))
        }
        (Value::Timestamp(x), Value::Timestamp(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Blob(x) | Value::Clob(x), Value::Blob(y) | Value::Clob(y)) => {
            Some(x.as_ref().cmp(y.as_ref()))
        }
        _ => None,
    }
}

/// Rank of a type in PartiQL's total order: absent values first, then bool, numbers,
/// timestamps, text, lobs, lists, sexps, structs.
fn type_rank(datum: &Datum) -> u8 {
    let Datum::Ion(element) = datum else { return 0 };
    if element.is_null() {
        return 0;
    }
    match element.ion_type() {
        IonType::Null => 0,
        IonType::Bool => 1,
        IonType::Int | IonType::Decimal | IonType::Float => 2,
        IonType::Timestamp => 3,
        IonType::String | IonType::Symbol => 4,
        IonType::Clob | IonType::Blob => 5,
        IonType::List => 6,
        IonType::SExp => 7,
        IonType::Struct => 8,
    }
}

/// PartiQL's total order over all values (ORDER BY, GROUP BY keys, MIN/MAX).
pub fn total_cmp(a: &Datum, b: &Datum) -> Ordering {
    let rank = type_rank(a).cmp(&type_rank(b));
    if rank != Ordering::Equal || type_rank(a) == 0 {
        return rank;
    }
    let (Datum::Ion(x), Datum::Ion(y)) = (a, b) else {
        return Ordering::Equal;
    };
    if let Some(ordering) = ordered_cmp(x, y) {
        return ordering;
    }
    match (x.value(), y.value()) {
        (Value::List(p), Value::List(q)) | (Value::SExp(p), Value::SExp(q)) => {
            cmp_sequences(p.iter(), q.iter())
        }
        (Value::Struct(p), Value::Struct(q)) => cmp_structs(p, q),
        _ => Ordering::Equal,
    }
}

fn cmp_sequences<'a>(
    mut p: impl Iterator<Item = &'a Element>,
    mut q: impl Iterator<Item = &'a Element>,
) -> Ordering {
    loop {
        match (p.next(), q.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ordering = total_cmp(&Datum::Ion(x.clone()), &Datum::Ion(y.clone()));
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
        }
    }
}

fn cmp_structs(p: &ion_rs::Struct, q: &ion_rs::Struct) -> Ordering {
    let sorted = |s: &ion_rs::Struct| {
        let mut fields: Vec<(String, Element)> = s
            .fields()
            .map(|(name, value)| (name.text().unwrap_or("").to_string(), value.clone()))
            .collect();
        fields.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| total_cmp(&Datum::Ion(a.1.clone()), &Datum::Ion(b.1.clone())))
        });
        fields
    };
    let (a, b) = (sorted(p), sorted(q));
    for (x, y) in a.iter().zip(b.iter()) {
        let ordering =
            x.0.cmp(&y.0)
                .then_with(|| total_cmp(&Datum::Ion(x.1.clone()), &Datum::Ion(y.1.clone())));
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.len().cmp(&b.len())
}

/// Three-valued AND.
pub fn and(left: &Datum, right: &Datum) -> Result<Datum> {
    let (a, b) = (logic_operand("AND", left)?, logic_operand("AND", right)?);
    Ok(match (a, b) {
        (Some(false), _) | (_, Some(false)) => Datum::bool(false),
        (Some(true), Some(true)) => Datum::bool(true),
        _ => absent_result(left, right),
    })
}

/// Three-valued OR.
pub fn or(left: &Datum, right: &Datum) -> Result<Datum> {
    let (a, b) = (logic_operand("OR", left)?, logic_operand("OR", right)?);
    Ok(match (a, b) {
        (Some(true), _) | (_, Some(true)) => Datum::bool(true),
        (Some(false), Some(false)) => Datum::bool(false),
        _ => absent_result(left, right),
    })
}

/// Three-valued NOT.
pub fn not(value: &Datum) -> Result<Datum> {
    Ok(match logic_operand("NOT", value)? {
        Some(b) => Datum::bool(!b),
        None => absent_result(value, value),
    })
}

fn absent_result(left: &Datum, right: &Datum) -> Datum {
    if left.is_missing() || right.is_missing() {
        Datum::Missing
    } else {
        Datum::null()
    }
}

fn logic_operand(op: &str, value: &Datum) -> Result<Option<bool>> {
    if value.is_absent() {
        return Ok(None);
    }
    match value.as_element().and_then(Element::as_bool) {
        Some(b) => Ok(Some(b)),
        None => Err(PartiqlError::type_error(format!(
            "{op} expects bool operands, got {}",
            value.type_name()
        ))),
    }
}

/// `a || b`: string concatenation of strings or symbols.
pub fn concat(left: &Datum, right: &Datum) -> Result<Datum> {
    if left.is_missing() || right.is_missing() {
        return Ok(Datum::Missing);
    }
    if left.is_absent() || right.is_absent() {
        return Ok(Datum::null());
    }
    match (left.as_text(), right.as_text()) {
        (Some(a), Some(b)) => Ok(Datum::string(format!("{a}{b}"))),
        _ => Err(PartiqlError::type_error(format!(
            "operator || expects strings, got {} and {}",
            left.type_name(),
            right.type_name()
        ))),
    }
}

/// SQL LIKE with `%` (any run) and `_` (one character), and an optional escape character.
pub fn like(text: &str, pattern: &str, escape: Option<char>) -> Result<bool> {
    let tokens = like_tokens(pattern, escape)?;
    let chars: Vec<char> = text.chars().collect();
    Ok(like_match(&chars, &tokens))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum LikeToken {
    Literal(char),
    AnyOne,
    AnyRun,
}

fn like_tokens(pattern: &str, escape: Option<char>) -> Result<Vec<LikeToken>> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            _ if Some(c) == escape => match chars.next() {
                Some(escaped) => LikeToken::Literal(escaped),
                None => {
                    return Err(PartiqlError::type_error(
                        "LIKE pattern ends with its escape character",
                    ))
                }
            },
            '%' => LikeToken::AnyRun,
            '_' => LikeToken::AnyOne,
            other => LikeToken::Literal(other),
        });
    }
    Ok(tokens)
}

/// Greedy wildcard matching with a single backtrack point: O(text × pattern), no recursion.
fn like_match(text: &[char], pattern: &[LikeToken]) -> bool {
    let (mut t, mut p) = (0usize, 0usize);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(LikeToken::AnyRun) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(LikeToken::AnyOne) => {
                t += 1;
                p += 1;
            }
            Some(LikeToken::Literal(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|token| *token == LikeToken::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ion(text: &str) -> Datum {
        Datum::Ion(Element::read_one(text).unwrap())
    }

    #[test]
    fn equality_crosses_numeric_types() {
        assert!(compare(CompareOp::Equal, &ion("1"), &ion("1.0")).is_true());
        assert!(compare(CompareOp::Equal, &ion("1.00"), &ion("1e0")).is_true());
        assert!(compare(CompareOp::Equal, &ion("100"), &ion("1d2")).is_true());
        assert!(!compare(CompareOp::Equal, &ion("1"), &ion("1.01")).is_true());
        let big = "123456789012345678901234567890123456789012345";
        assert!(compare(CompareOp::Equal, &ion(big), &ion(&format!("{big}.000"))).is_true());
        assert!(compare(CompareOp::Less, &ion("-5"), &ion("-4.99")).is_true());
    }

    #[test]
    fn strings_equal_symbols() {
        assert!(compare(CompareOp::Equal, &ion("\"abc\""), &ion("abc")).is_true());
        assert!(compare(CompareOp::Less, &ion("\"abc\""), &ion("abd")).is_true());
    }

    #[test]
    fn absent_operands_are_not_true() {
        assert_eq!(
            compare(CompareOp::Equal, &Datum::Missing, &ion("1")),
            Datum::Missing
        );
        assert!(compare(CompareOp::Equal, &ion("null"), &ion("null")).is_absent());
        assert_eq!(
            compare(CompareOp::Less, &ion("1"), &ion("\"a\"")),
            Datum::Missing
        );
    }

    #[test]
    fn equality_follows_the_reference_implementation_but_exactly() {
        let equal = |a: &str, b: &str| compare(CompareOp::Equal, &ion(a), &ion(b)).is_true();
        assert!(equal("nan", "nan"));
        assert!(!equal("nan", "+inf"));
        assert!(equal("{{\"abc\"}}", "{{YWJj}}"));
        assert!(equal("-0e0", "0d-2"));
        assert!(equal("1", "1e0"));
        // Exact, where the reference implementation rounds: 2^53 + 1 is not a float.
        assert!(!equal("9007199254740993", "9007199254740992e0"));
        assert!(equal("9007199254740992", "9007199254740992e0"));
        assert!(!equal("0.1", "0.1e0"));
        let less = |a: &str, b: &str| compare(CompareOp::Less, &ion(a), &ion(b)).is_true();
        assert!(less("0.1", "0.1e0"));
        assert!(less("1d400", "+inf"));
        assert!(less("-inf", "-1d400"));
        assert!(less("nan", "-inf"));
    }

    #[test]
    fn structs_compare_as_field_multisets() {
        assert!(values_equal(
            ion("{a: 1, b: [1, 2.0]}").as_element().unwrap(),
            ion("{b: [1.0, 2], a: 1}").as_element().unwrap()
        ));
        assert!(!values_equal(
            ion("{a: 1}").as_element().unwrap(),
            ion("{a: 1, a: 1}").as_element().unwrap()
        ));
    }

    #[test]
    fn decimal_arithmetic_is_exact() {
        let sum = arithmetic(ArithmeticOp::Add, &ion("0.1"), &ion("0.2")).unwrap();
        assert_eq!(sum, ion("0.3"));
        let product = arithmetic(ArithmeticOp::Multiply, &ion("1.5"), &ion("2")).unwrap();
        assert_eq!(product, ion("3.0"));
        let quotient = arithmetic(ArithmeticOp::Divide, &ion("1."), &ion("4.")).unwrap();
        assert!(compare(CompareOp::Equal, &quotient, &ion("0.25")).is_true());
        let third = arithmetic(ArithmeticOp::Divide, &ion("1."), &ion("3.")).unwrap();
        assert!(compare(CompareOp::Less, &third, &ion("0.334")).is_true());
    }

    #[test]
    fn integer_overflow_is_an_error_not_a_panic() {
        let max = ion("170141183460469231731687303715884105727");
        assert!(matches!(
            arithmetic(ArithmeticOp::Add, &max, &ion("1")),
            Err(PartiqlError::Type(_))
        ));
        assert!(matches!(
            arithmetic(ArithmeticOp::Divide, &ion("1"), &ion("0")),
            Err(PartiqlError::Type(_))
        ));
        assert_eq!(
            arithmetic(ArithmeticOp::Divide, &ion("7"), &ion("2")).unwrap(),
            ion("3")
        );
    }

    #[test]
    fn arithmetic_propagates_absent_values() {
        assert_eq!(
            arithmetic(ArithmeticOp::Add, &Datum::Missing, &ion("1")).unwrap(),
            Datum::Missing
        );
        assert!(arithmetic(ArithmeticOp::Add, &ion("null.int"), &ion("1"))
            .unwrap()
            .is_absent());
        assert!(arithmetic(ArithmeticOp::Add, &ion("\"a\""), &ion("1")).is_err());
    }

    #[test]
    fn three_valued_logic() {
        assert_eq!(
            and(&ion("false"), &Datum::null()).unwrap(),
            Datum::bool(false)
        );
        assert!(and(&ion("true"), &Datum::null()).unwrap().is_absent());
        assert_eq!(
            or(&ion("true"), &Datum::Missing).unwrap(),
            Datum::bool(true)
        );
        assert!(not(&Datum::null()).unwrap().is_absent());
    }

    #[test]
    fn like_patterns() {
        assert!(like("Ducati", "D%", None).unwrap());
        assert!(like("Ducati", "_ucat_", None).unwrap());
        assert!(!like("Ducati", "D_", None).unwrap());
        assert!(like("100%", "100!%", Some('!')).unwrap());
        assert!(!like("1000", "100!%", Some('!')).unwrap());
        assert!(like("abcabc", "%c%c", None).unwrap());
        assert!(like("", "%", None).unwrap());
    }

    #[test]
    fn total_order_ranks_types() {
        let mut values = vec![
            ion("\"b\""),
            ion("2"),
            Datum::Missing,
            ion("true"),
            ion("1.5"),
            ion("2000T"),
            ion("{a:1}"),
        ];
        values.sort_by(total_cmp);
        assert_eq!(
            values,
            vec![
                Datum::Missing,
                ion("true"),
                ion("1.5"),
                ion("2"),
                ion("2000T"),
                ion("\"b\""),
                ion("{a:1}")
            ]
        );
    }

    #[test]
    fn concat_text() {
        assert_eq!(concat(&ion("\"a\""), &ion("b")).unwrap(), ion("\"ab\""));
        assert!(concat(&ion("1"), &ion("\"b\"")).is_err());
    }

    /// Ion text of values that are often `=` to each other across types, forms and nesting.
    fn equality_sample() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            (-3i64..3, 0usize..3).prop_map(|(i, zeros)| format!("{i}.{}", "0".repeat(zeros))),
            (-3i64..3).prop_map(|i| i.to_string()),
            (-3i64..3).prop_map(|i| format!("{i}e0")),
            (-3i64..3).prop_map(|i| format!("{}d-1", i * 10)),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            (0u64..3).prop_map(|i| format!("{}", (1u64 << 53) + i)),
            (0u64..3).prop_map(|i| format!("{}e0", (1u64 << 53) + i * 2)),
            prop::sample::select(vec![
                "nan",
                "+inf",
                "-inf",
                "0.1",
                "0.1e0",
                "-0e0",
                "\"a\"",
                "a",
                "x::'a'",
                "\"b\"",
                "true",
                "false",
                "null",
                "null.int",
                "2022T",
                "2022-01-01T00:00Z",
                "2022-01-01T01:00+01:00",
                "{{YQ==}}",
                "{{\"a\"}}",
                "$0",
            ])
            .prop_map(str::to_string),
        ];
        scalar.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("({})", v.join(" "))),
                prop::collection::vec((prop::sample::select(vec!["a", "b"]), inner), 0..3)
                    .prop_map(|fields| {
                        let fields: Vec<String> =
                            fields.iter().map(|(n, v)| format!("{n}: {v}")).collect();
                        format!("{{{}}}", fields.join(", "))
                    }),
            ]
        })
    }

    proptest::proptest! {
        /// An int equals the same value written as a decimal with any number of zero digits.
        #[test]
        fn int_equals_its_decimal_forms(value in proptest::prelude::any::<i64>(), zeros in 0usize..30) {
            let decimal = format!("{value}.{}", "0".repeat(zeros));
            proptest::prop_assert!(compare(CompareOp::Equal, &ion(&value.to_string()), &ion(&decimal)).is_true());
            proptest::prop_assert_eq!(total_cmp(&ion(&value.to_string()), &ion(&decimal)), Ordering::Equal);
        }

        /// The exact comparison agrees with i128 ordering.
        #[test]
        fn exact_order_matches_integers(a in proptest::prelude::any::<i128>(), b in proptest::prelude::any::<i128>()) {
            let ordering = total_cmp(&ion(&a.to_string()), &ion(&format!("{b}.0")));
            proptest::prop_assert_eq!(ordering, a.cmp(&b));
        }

        /// `=` holds exactly when the ledger's equality keys (what indexes file values under)
        /// are equal.
        #[test]
        fn equality_matches_index_keys(a in equality_sample(), b in equality_sample()) {
            let (x, y) = (ion(&a), ion(&b));
            let keys_equal = match (&x, &y) {
                (Datum::Ion(x), Datum::Ion(y)) => {
                    let key = quill_ledger::equality::equality_key;
                    key(x).is_some() && key(x) == key(y)
                }
                _ => false,
            };
            proptest::prop_assert_eq!(compare(CompareOp::Equal, &x, &y).is_true(), keys_equal, "{} = {}", a, b);
        }

        /// Arithmetic on any ints and decimals returns a value or a typed error, never panics.
        #[test]
        fn arithmetic_never_panics(
            a in proptest::prelude::any::<i128>(),
            b in proptest::prelude::any::<i128>(),
            exponent in -40i64..40,
            op in 0usize..5,
        ) {
            let ops = [ArithmeticOp::Add, ArithmeticOp::Subtract, ArithmeticOp::Multiply, ArithmeticOp::Divide, ArithmeticOp::Modulo];
            let left = Datum::Ion(Element::int(a));
            let right = Datum::Ion(Element::decimal(Decimal::new(b, exponent)));
            let _ = arithmetic(ops[op], &left, &right);
            let _ = arithmetic(ops[op], &right, &left);
            let _ = arithmetic(ops[op], &left, &Datum::Ion(Element::int(b)));
        }
    }
}
