//! QLDB's built-in scalar functions (aggregates live in the evaluator because they fold over
//! rows). Names are matched case-insensitively by the caller, which passes them upper-cased.
//!
//! Date/time functions keep Ion timestamp precision the way QLDB does: the result has the
//! finer of the input's precision and the date part used (`DATE_ADD(month, 1, `2010T`)` is
//! `2010-02T`). Calendar arithmetic is done here (proleptic Gregorian, days-from-civil) so no
//! date crate is needed.

use ion_rs::{Decimal, Element, IonType, Timestamp, TimestampPrecision, Value};

use quill_ledger::calendar::{civil_from_days, days_from_civil, days_in_month};

use crate::error::{PartiqlError, Result};
use crate::value::Datum;

/// What functions may read from the transaction.
#[derive(Debug, Clone)]
pub struct FunctionContext {
    /// The transaction's start time (UTCNOW).
    pub now: Timestamp,
    /// The transaction id (TXID).
    pub transaction_id: String,
}

/// A date part for DATE_ADD, DATE_DIFF and EXTRACT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DatePart {
    /// `year`
    Year,
    /// `month`
    Month,
    /// `day`
    Day,
    /// `hour`
    Hour,
    /// `minute`
    Minute,
    /// `second`
    Second,
    /// `timezone_hour` (EXTRACT only)
    TimezoneHour,
    /// `timezone_minute` (EXTRACT only)
    TimezoneMinute,
}

impl DatePart {
    /// Parses a date part name (case-insensitive).
    pub fn parse(name: &str) -> Result<DatePart> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "year" => DatePart::Year,
            "month" => DatePart::Month,
            "day" => DatePart::Day,
            "hour" => DatePart::Hour,
            "minute" => DatePart::Minute,
            "second" => DatePart::Second,
            "timezone_hour" => DatePart::TimezoneHour,
            "timezone_minute" => DatePart::TimezoneMinute,
            _ => {
                return Err(PartiqlError::type_error(format!(
                    "unknown date part {name}"
                )))
            }
        })
    }

    fn precision(self) -> TimestampPrecision {
        match self {
            DatePart::Year => TimestampPrecision::Year,
            DatePart::Month => TimestampPrecision::Month,
            DatePart::Day => TimestampPrecision::Day,
            DatePart::Hour | DatePart::Minute => TimestampPrecision::HourAndMinute,
            _ => TimestampPrecision::Second,
        }
    }
}

/// The scalar function names this module evaluates (upper case).
pub const SCALAR_FUNCTIONS: &[&str] = &[
    "SIZE",
    "COALESCE",
    "NULLIF",
    "EXISTS",
    "DATE_ADD",
    "DATE_DIFF",
    "EXTRACT",
    "TO_STRING",
    "TO_TIMESTAMP",
    "UTCNOW",
    "TXID",
    "CHAR_LENGTH",
    "CHARACTER_LENGTH",
    "LOWER",
    "UPPER",
    "SUBSTRING",
    "TRIM",
];

/// Calls scalar function `name` (upper case) on evaluated arguments. DATE_ADD / DATE_DIFF /
/// EXTRACT take their date part as a string first argument.
pub fn call(name: &str, args: &[Datum], context: &FunctionContext) -> Result<Datum> {
    match name {
        "COALESCE" => {
            arity(name, args, 1, usize::MAX)?;
            Ok(args
                .iter()
                .find(|a| !a.is_absent())
                .cloned()
                .unwrap_or_else(Datum::null))
        }
        "NULLIF" => nullif(args),
        "EXISTS" => exists(args),
        "UTCNOW" => {
            arity(name, args, 0, 0)?;
            Ok(Datum::Ion(Element::timestamp(context.now.clone())))
        }
        "TXID" => {
            arity(name, args, 0, 0)?;
            Ok(Datum::string(context.transaction_id.clone()))
        }
        _ => call_null_propagating(name, args),
    }
}

/// Functions that return NULL when any argument is NULL or MISSING.
fn call_null_propagating(name: &str, args: &[Datum]) -> Result<Datum> {
    if args.iter().any(Datum::is_absent) {
        known_function(name)?;
        return Ok(Datum::null());
    }
    match name {
        "SIZE" => size(args),
        "CHAR_LENGTH" | "CHARACTER_LENGTH" => {
            arity(name, args, 1, 1)?;
            Ok(Datum::int(text_arg(name, args, 0)?.chars().count() as i64))
        }
        "LOWER" => text_map(name, args, str::to_lowercase),
        "UPPER" => text_map(name, args, str::to_uppercase),
        "SUBSTRING" => substring(args),
        "TRIM" => trim(args),
        "DATE_ADD" => date_add(args),
        "DATE_DIFF" => date_diff(args),
        "EXTRACT" => extract(args),
        "TO_STRING" => to_string(args),
        "TO_TIMESTAMP" => to_timestamp(args),
        _ => Err(PartiqlError::Semantic(format!("unknown function {name}"))),
    }
}

fn known_function(name: &str) -> Result<()> {
    if SCALAR_FUNCTIONS.contains(&name) {
        Ok(())
    } else {
        Err(PartiqlError::Semantic(format!("unknown function {name}")))
    }
}

fn arity(name: &str, args: &[Datum], min: usize, max: usize) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(PartiqlError::type_error(format!(
            "{name} takes {expected} argument(s), got {}",
            args.len()
        )));
    }
    Ok(())
}

fn arg_error(name: &str, index: usize, expected: &str, got: &Datum) -> PartiqlError {
    PartiqlError::type_error(format!(
        "{name}: argument {} must be {expected}, got {}",
        index + 1,
        got.type_name()
    ))
}

fn text_arg<'a>(name: &str, args: &'a [Datum], index: usize) -> Result<&'a str> {
    args[index]
        .as_text()
        .ok_or_else(|| arg_error(name, index, "a string", &args[index]))
}

fn int_arg(name: &str, args: &[Datum], index: usize) -> Result<i64> {
    args[index]
        .as_element()
        .and_then(Element::as_i64)
        .ok_or_else(|| arg_error(name, index, "an int", &args[index]))
}

fn timestamp_arg(name: &str, args: &[Datum], index: usize) -> Result<Timestamp> {
    args[index]
        .as_element()
        .and_then(Element::as_timestamp)
        .ok_or_else(|| arg_error(name, index, "a timestamp", &args[index]))
}

fn text_map(name: &str, args: &[Datum], map: fn(&str) -> String) -> Result<Datum> {
    arity(name, args, 1, 1)?;
    Ok(Datum::string(map(text_arg(name, args, 0)?)))
}

/// NULLIF does not propagate unknowns: a NULL or MISSING first argument gives NULL (QLDB's
/// `NULLIF(missing, null)` is `null`), and an unknown second argument never equals.
fn nullif(args: &[Datum]) -> Result<Datum> {
    arity("NULLIF", args, 2, 2)?;
    let equal = crate::value::compare(crate::value::CompareOp::Equal, &args[0], &args[1]);
    Ok(if args[0].is_absent() || equal.is_true() {
        Datum::null()
    } else {
        args[0].clone()
    })
}

/// EXISTS is true only for a non-empty list, sexp or struct; any other value (NULL included) is
/// false, but MISSING is an error, as QLDB documents (`EXISTS(missing) -- error`).
fn exists(args: &[Datum]) -> Result<Datum> {
    arity("EXISTS", args, 1, 1)?;
    let non_empty = match args[0].as_element().map(Element::value) {
        Some(Value::List(s) | Value::SExp(s)) => !s.is_empty(),
        Some(Value::Struct(s)) => !s.is_empty(),
        Some(_) => false,
        None => return Err(arg_error("EXISTS", 0, "a value", &args[0])),
    };
    Ok(Datum::bool(non_empty))
}

fn size(args: &[Datum]) -> Result<Datum> {
    arity("SIZE", args, 1, 1)?;
    let length = match args[0].as_element().map(Element::value) {
        Some(Value::List(s) | Value::SExp(s)) => s.len(),
        Some(Value::Struct(s)) => s.len(),
        _ => return Err(arg_error("SIZE", 0, "a list, sexp or struct", &args[0])),
    };
    Ok(Datum::int(length as i64))
}

/// `SUBSTRING(s, start [, length])` with SQL's 1-based start that may be before the string.
fn substring(args: &[Datum]) -> Result<Datum> {
    arity("SUBSTRING", args, 2, 3)?;
    let text = text_arg("SUBSTRING", args, 0)?;
    let start = int_arg("SUBSTRING", args, 1)?;
    let end = match args.get(2) {
        Some(_) => {
            let length = int_arg("SUBSTRING", args, 2)?;
            if length < 0 {
                return Err(PartiqlError::type_error(
                    "SUBSTRING: argument 3 (length) must not be negative",
                ));
            }
            Some(start.saturating_add(length))
        }
        None => None,
    };
    let first = start.max(1);
    let taken: String = text
        .chars()
        .enumerate()
        .filter(|(i, _)| {
            let position = *i as i64 + 1;
            position >= first && end.is_none_or(|e| position < e)
        })
        .map(|(_, c)| c)
        .collect();
    Ok(Datum::string(taken))
}

/// `TRIM([[LEADING|TRAILING|BOTH] [chars] FROM] s)`: the parser passes
/// `(mode, chars, s)` with mode a string; a single argument trims spaces on both sides.
fn trim(args: &[Datum]) -> Result<Datum> {
    arity("TRIM", args, 1, 3)?;
    let text = text_arg("TRIM", args, args.len() - 1)?;
    let mode = if args.len() >= 2 {
        text_arg("TRIM", args, 0)?.to_ascii_uppercase()
    } else {
        "BOTH".to_string()
    };
    let characters: Vec<char> = if args.len() == 3 {
        text_arg("TRIM", args, 1)?.chars().collect()
    } else {
        vec![' ']
    };
    let is_trimmed = |c: char| characters.contains(&c);
    let result = match mode.as_str() {
        "LEADING" => text.trim_start_matches(is_trimmed),
        "TRAILING" => text.trim_end_matches(is_trimmed),
        "BOTH" => text.trim_matches(is_trimmed),
        other => {
            return Err(PartiqlError::type_error(format!(
                "TRIM: unknown mode {other}"
            )))
        }
    };
    Ok(Datum::string(result))
}

/// A timestamp broken into local fields; the unit of all calendar arithmetic here.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanoseconds: u32,
    fraction_digits: u32,
    offset_minutes: Option<i32>,
    precision: TimestampPrecision,
}

impl Civil {
    fn of(timestamp: &Timestamp) -> Civil {
        let precision = timestamp.precision();
        let has_time = precision >= TimestampPrecision::HourAndMinute;
        Civil {
            year: i64::from(timestamp.year()),
            month: if precision >= TimestampPrecision::Month {
                timestamp.month()
            } else {
                1
            },
            day: if precision >= TimestampPrecision::Day {
                timestamp.day()
            } else {
                1
            },
            hour: if has_time { timestamp.hour() } else { 0 },
            minute: if has_time { timestamp.minute() } else { 0 },
            second: if precision == TimestampPrecision::Second {
                timestamp.second()
            } else {
                0
            },
            nanoseconds: timestamp.nanoseconds(),
            fraction_digits: timestamp
                .fractional_seconds_scale()
                .unwrap_or(0)
                .clamp(0, 9) as u32,
            offset_minutes: timestamp.offset(),
            precision,
        }
    }

    fn build(&self) -> Result<Timestamp> {
        let invalid =
            |e: ion_rs::IonError| PartiqlError::type_error(format!("timestamp out of range: {e}"));
        let year = u32::try_from(self.year)
            .ok()
            .filter(|y| (1..=9999).contains(y))
            .ok_or_else(|| {
                PartiqlError::type_error(format!("timestamp year {} out of range", self.year))
            })?;
        let builder = Timestamp::with_year(year);
        let timestamp = match self.precision {
            TimestampPrecision::Year => builder.build(),
            TimestampPrecision::Month => builder.with_month(self.month).build(),
            TimestampPrecision::Day => builder.with_month(self.month).with_day(self.day).build(),
            _ => return self.build_with_time(year),
        };
        timestamp.map_err(invalid)
    }

    fn build_with_time(&self, year: u32) -> Result<Timestamp> {
        let invalid =
            |e: ion_rs::IonError| PartiqlError::type_error(format!("timestamp out of range: {e}"));
        let day = Timestamp::with_year(year)
            .with_month(self.month)
            .with_day(self.day);
        let offset = self.offset_minutes;
        let result = if self.precision == TimestampPrecision::HourAndMinute {
            let minute = day.with_hour_and_minute(self.hour, self.minute);
            match offset {
                Some(o) => minute.with_offset(o).build(),
                None => minute.build(),
            }
        } else if self.fraction_digits > 0 {
            let fraction = day
                .with_hms(self.hour, self.minute, self.second)
                .with_nanoseconds_and_precision(self.nanoseconds, self.fraction_digits);
            match offset {
                Some(o) => fraction.with_offset(o).build(),
                None => fraction.build(),
            }
        } else {
            let seconds = day.with_hms(self.hour, self.minute, self.second);
            match offset {
                Some(o) => seconds.with_offset(o).build(),
                None => seconds.build(),
            }
        };
        result.map_err(invalid)
    }

    /// Seconds since 1970-01-01T00:00 of the local fields (offset not applied).
    fn local_seconds(&self) -> i64 {
        let days = days_from_civil(self.year, self.month, self.day);
        days * 86_400
            + i64::from(self.hour) * 3_600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    fn utc_seconds(&self) -> i64 {
        self.local_seconds() - i64::from(self.offset_minutes.unwrap_or(0)) * 60
    }

    fn set_local_seconds(&mut self, seconds: i64) {
        let days = seconds.div_euclid(86_400);
        let in_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        self.year = year;
        self.month = month;
        self.day = day;
        self.hour = (in_day / 3_600) as u32;
        self.minute = (in_day / 60 % 60) as u32;
        self.second = (in_day % 60) as u32;
    }
}

fn date_part_arg(name: &str, args: &[Datum]) -> Result<DatePart> {
    DatePart::parse(text_arg(name, args, 0)?)
}

/// `DATE_ADD(part, quantity, timestamp)`.
fn date_add(args: &[Datum]) -> Result<Datum> {
    arity("DATE_ADD", args, 3, 3)?;
    let part = date_part_arg("DATE_ADD", args)?;
    let quantity = int_arg("DATE_ADD", args, 1)?;
    let timestamp = timestamp_arg("DATE_ADD", args, 2)?;
    let mut civil = Civil::of(&timestamp);
    // A date-only timestamp gaining a time is in UTC, as QLDB shows:
    // DATE_ADD(hour, 1, `2017T`) is `2017-01-01T01:00Z`.
    if civil.precision < TimestampPrecision::HourAndMinute
        && part.precision() >= TimestampPrecision::HourAndMinute
    {
        civil.offset_minutes = Some(0);
    }
    civil.precision = civil.precision.max(part.precision());
    let out_of_range = || PartiqlError::type_error("DATE_ADD: result out of range");
    match part {
        DatePart::Year | DatePart::Month => {
            let months = if part == DatePart::Year {
                quantity.checked_mul(12).ok_or_else(out_of_range)?
            } else {
                quantity
            };
            let total = (civil.year * 12 + i64::from(civil.month) - 1)
                .checked_add(months)
                .ok_or_else(out_of_range)?;
            civil.year = total.div_euclid(12);
            civil.month = (total.rem_euclid(12) + 1) as u32;
            // Check before the calendar arithmetic below, which assumes a real year.
            if !(1..=9999).contains(&civil.year) {
                return Err(out_of_range());
            }
            civil.day = civil.day.min(days_in_month(civil.year, civil.month));
        }
        DatePart::TimezoneHour | DatePart::TimezoneMinute => {
            return Err(PartiqlError::type_error(
                "DATE_ADD: date part must be year, month, day, hour, minute or second",
            ));
        }
        _ => {
            let unit = match part {
                DatePart::Day => 86_400,
                DatePart::Hour => 3_600,
                DatePart::Minute => 60,
                _ => 1,
            };
            let delta = quantity.checked_mul(unit).ok_or_else(out_of_range)?;
            let seconds = civil
                .local_seconds()
                .checked_add(delta)
                .ok_or_else(out_of_range)?;
            civil.set_local_seconds(seconds);
        }
    }
    Ok(Datum::Ion(Element::timestamp(civil.build()?)))
}

/// `DATE_DIFF(part, from, to)`: whole units from `from` to `to` (truncated toward zero).
fn date_diff(args: &[Datum]) -> Result<Datum> {
    arity("DATE_DIFF", args, 3, 3)?;
    let part = date_part_arg("DATE_DIFF", args)?;
    let from = Civil::of(&timestamp_arg("DATE_DIFF", args, 1)?);
    let to = Civil::of(&timestamp_arg("DATE_DIFF", args, 2)?);
    let difference = match part {
        DatePart::Year | DatePart::Month => {
            let months =
                (to.year * 12 + i64::from(to.month)) - (from.year * 12 + i64::from(from.month));
            // A month counts only once the day and time in it have been reached.
            let rest = |c: &Civil| (c.day, c.utc_seconds().rem_euclid(86_400));
            let months = match months {
                m if m > 0 && rest(&to) < rest(&from) => m - 1,
                m if m < 0 && rest(&to) > rest(&from) => m + 1,
                m => m,
            };
            if part == DatePart::Year {
                months / 12
            } else {
                months
            }
        }
        _ => {
            let seconds = to.utc_seconds() - from.utc_seconds();
            seconds
                / match part {
                    DatePart::Day => 86_400,
                    DatePart::Hour => 3_600,
                    DatePart::Minute => 60,
                    _ => 1,
                }
        }
    };
    Ok(Datum::int(difference))
}

/// `EXTRACT(part FROM timestamp)`: the parser passes `(part, timestamp)`.
fn extract(args: &[Datum]) -> Result<Datum> {
    arity("EXTRACT", args, 2, 2)?;
    let part = date_part_arg("EXTRACT", args)?;
    let timestamp = timestamp_arg("EXTRACT", args, 1)?;
    let civil = Civil::of(&timestamp);
    let offset = civil.offset_minutes.unwrap_or(0);
    let value = match part {
        DatePart::Year => civil.year,
        DatePart::Month => i64::from(civil.month),
        DatePart::Day => i64::from(civil.day),
        DatePart::Hour => i64::from(civil.hour),
        DatePart::Minute => i64::from(civil.minute),
        DatePart::Second if civil.fraction_digits > 0 => {
            let scale = 10i128.pow(civil.fraction_digits);
            let fraction = i128::from(civil.nanoseconds) / 10i128.pow(9 - civil.fraction_digits);
            let coefficient = i128::from(civil.second) * scale + fraction;
            return Ok(Datum::Ion(Element::decimal(Decimal::new(
                coefficient,
                -i64::from(civil.fraction_digits),
            ))));
        }
        DatePart::Second => i64::from(civil.second),
        DatePart::TimezoneHour => i64::from(offset / 60),
        DatePart::TimezoneMinute => i64::from(offset % 60),
    };
    Ok(Datum::int(value))
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// One element of a date pattern: a run of one pattern letter, or literal text.
#[derive(Debug, Clone, PartialEq)]
enum PatternToken {
    Field(char, usize),
    Literal(String),
}

/// Splits a Java-style date pattern (`'MMM d, yyyy h:m a'`, quoted literals in `'…'`).
fn pattern_tokens(pattern: &str) -> Result<Vec<PatternToken>> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let close = chars[i + 1..]
                .iter()
                .position(|&q| q == '\'')
                .map(|p| p + i + 1);
            let Some(close) = close else {
                return Err(PartiqlError::type_error(
                    "date pattern has an unterminated quote",
                ));
            };
            let text: String = if close == i + 1 {
                "'".to_string()
            } else {
                chars[i + 1..close].iter().collect()
            };
            tokens.push(PatternToken::Literal(text));
            i = close + 1;
        } else if c.is_ascii_alphabetic() {
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            if !"yMdHhmsSaXxZn".contains(c) {
                return Err(PartiqlError::type_error(format!(
                    "date pattern letter '{c}' is not supported"
                )));
            }
            tokens.push(PatternToken::Field(c, run));
            i += run;
        } else {
            tokens.push(PatternToken::Literal(c.to_string()));
            i += 1;
        }
    }
    Ok(tokens)
}

/// `TO_STRING(timestamp, pattern)`.
fn to_string(args: &[Datum]) -> Result<Datum> {
    arity("TO_STRING", args, 2, 2)?;
    let civil = Civil::of(&timestamp_arg("TO_STRING", args, 0)?);
    let tokens = pattern_tokens(text_arg("TO_STRING", args, 1)?)?;
    let mut out = String::new();
    for token in tokens {
        match token {
            PatternToken::Literal(text) => out.push_str(&text),
            PatternToken::Field(letter, width) => format_field(&mut out, &civil, letter, width),
        }
    }
    Ok(Datum::string(out))
}

fn format_field(out: &mut String, civil: &Civil, letter: char, width: usize) {
    let padded = |value: i64| format!("{value:0width$}");
    let text = match letter {
        'y' if width == 2 => format!("{:02}", civil.year.rem_euclid(100)),
        'y' => padded(civil.year),
        'M' if width >= 4 => MONTH_NAMES[civil.month as usize - 1].to_string(),
        'M' if width == 3 => MONTH_NAMES[civil.month as usize - 1][..3].to_string(),
        'M' => padded(i64::from(civil.month)),
        'd' => padded(i64::from(civil.day)),
        'H' => padded(i64::from(civil.hour)),
        'h' => padded(i64::from((civil.hour + 11) % 12 + 1)),
        'm' => padded(i64::from(civil.minute)),
        's' => padded(i64::from(civil.second)),
        'S' => format!("{:09}", civil.nanoseconds)
            .chars()
            .chain(std::iter::repeat('0'))
            .take(width)
            .collect(),
        'n' => civil.nanoseconds.to_string(),
        'a' => if civil.hour < 12 { "AM" } else { "PM" }.to_string(),
        _ => format_offset(civil.offset_minutes.unwrap_or(0), letter, width),
    };
    out.push_str(&text);
}

/// Offsets: `X`/`XX`/`XXX` print `Z` for UTC; `x`… and `Z` print digits always.
fn format_offset(offset_minutes: i32, letter: char, width: usize) -> String {
    if letter == 'X' && offset_minutes == 0 {
        return "Z".to_string();
    }
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let (hours, minutes) = (offset_minutes.abs() / 60, offset_minutes.abs() % 60);
    match (letter, width) {
        ('Z', _) | (_, 2) | (_, 4) => format!("{sign}{hours:02}{minutes:02}"),
        (_, 1) if minutes == 0 => format!("{sign}{hours:02}"),
        (_, 1) => format!("{sign}{hours:02}{minutes:02}"),
        _ => format!("{sign}{hours:02}:{minutes:02}"),
    }
}

/// `TO_TIMESTAMP(string [, pattern])`: without a pattern the string is Ion timestamp text.
fn to_timestamp(args: &[Datum]) -> Result<Datum> {
    arity("TO_TIMESTAMP", args, 1, 2)?;
    let text = text_arg("TO_TIMESTAMP", args, 0)?;
    if args.len() == 1 {
        let parsed = Element::read_one(text.trim())
            .ok()
            .filter(|e| e.ion_type() == IonType::Timestamp && !e.is_null());
        return parsed.map(Datum::Ion).ok_or_else(|| {
            PartiqlError::type_error(format!("TO_TIMESTAMP: {text:?} is not an Ion timestamp"))
        });
    }
    let tokens = pattern_tokens(text_arg("TO_TIMESTAMP", args, 1)?)?;
    let civil = parse_with_pattern(text, &tokens).ok_or_else(|| {
        PartiqlError::type_error(format!("TO_TIMESTAMP: {text:?} does not match the pattern"))
    })?;
    Ok(Datum::Ion(Element::timestamp(civil.build()?)))
}

fn parse_with_pattern(text: &str, tokens: &[PatternToken]) -> Option<Civil> {
    let mut civil = Civil {
        year: 1970,
        month: 1,
        day: 1,
        hour: 0,
        minute: 0,
        second: 0,
        nanoseconds: 0,
        fraction_digits: 0,
        offset_minutes: None,
        precision: TimestampPrecision::Year,
    };
    let mut rest = text;
    let mut pm: Option<bool> = None;
    for (index, token) in tokens.iter().enumerate() {
        match token {
            PatternToken::Literal(literal) => rest = rest.strip_prefix(literal.as_str())?,
            PatternToken::Field(letter, width) => {
                // A numeric field followed directly by another field reads exactly `width` digits.
                let adjacent = matches!(tokens.get(index + 1), Some(PatternToken::Field(next, width))
                    if "yMdHhmsS".contains(*next) && !(*next == 'M' && *width >= 3));
                rest = parse_field(rest, &mut civil, &mut pm, *letter, *width, adjacent)?;
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    if let Some(pm) = pm {
        civil.hour = civil.hour % 12 + if pm { 12 } else { 0 };
    }
    if civil.precision >= TimestampPrecision::HourAndMinute && civil.offset_minutes.is_none() {
        civil.offset_minutes = Some(0);
    }
    let valid = (1..=12).contains(&civil.month)
        && civil.day >= 1
        && civil.day <= days_in_month(civil.year, civil.month)
        && civil.hour < 24
        && civil.minute < 60
        && civil.second < 60;
    valid.then_some(civil)
}

fn take_number(text: &str, max_digits: usize) -> Option<(i64, usize, &str)> {
    let digits = text
        .chars()
        .take(max_digits)
        .take_while(char::is_ascii_digit)
        .count();
    if digits == 0 {
        return None;
    }
    Some((text[..digits].parse().ok()?, digits, &text[digits..]))
}

fn raise(civil: &mut Civil, precision: TimestampPrecision) {
    civil.precision = civil.precision.max(precision);
}

fn parse_field<'t>(
    text: &'t str,
    civil: &mut Civil,
    pm: &mut Option<bool>,
    letter: char,
    width: usize,
    adjacent: bool,
) -> Option<&'t str> {
    let max_digits = if adjacent { width } else { 9 };
    if letter == 'M' && width >= 3 {
        let (index, length) = MONTH_NAMES.iter().enumerate().find_map(|(i, name)| {
            let candidate = if width == 3 { &name[..3] } else { name };
            text.starts_with(candidate).then_some((i, candidate.len()))
        })?;
        civil.month = index as u32 + 1;
        raise(civil, TimestampPrecision::Month);
        return Some(&text[length..]);
    }
    match letter {
        'a' => {
            let upper = text.get(..2)?.to_ascii_uppercase();
            *pm = Some(match upper.as_str() {
                "AM" => false,
                "PM" => true,
                _ => return None,
            });
            Some(&text[2..])
        }
        'X' | 'x' | 'Z' => parse_offset(text, civil),
        _ => {
            let (value, digits, rest) = take_number(text, max_digits)?;
            match letter {
                'y' if width == 2 && digits == 2 => civil.year = 2000 + value,
                'y' => civil.year = value,
                'M' => {
                    (civil.month, civil.precision) =
                        (value as u32, civil.precision.max(TimestampPrecision::Month))
                }
                'd' => {
                    (civil.day, civil.precision) =
                        (value as u32, civil.precision.max(TimestampPrecision::Day))
                }
                'H' | 'h' => civil.hour = value as u32,
                'm' => {
                    (civil.minute, civil.precision) = (
                        value as u32,
                        TimestampPrecision::HourAndMinute.max(civil.precision),
                    )
                }
                's' => (civil.second, civil.precision) = (value as u32, TimestampPrecision::Second),
                _ => {
                    let digits = digits.min(9) as u32;
                    civil.nanoseconds = (value as u32).saturating_mul(10u32.pow(9 - digits));
                    civil.fraction_digits = digits;
                }
            }
            if matches!(letter, 'H' | 'h') {
                raise(civil, TimestampPrecision::HourAndMinute);
            }
            Some(rest)
        }
    }
}

fn parse_offset<'t>(text: &'t str, civil: &mut Civil) -> Option<&'t str> {
    if let Some(rest) = text.strip_prefix('Z') {
        civil.offset_minutes = Some(0);
        return Some(rest);
    }
    let sign = match text.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let (hours, _, rest) = take_number(&text[1..], 2)?;
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    let (minutes, rest) = match take_number(rest, 2) {
        Some((m, _, r)) => (m, r),
        None => (0, rest),
    };
    civil.offset_minutes = Some(sign * (hours * 60 + minutes) as i32);
    Some(rest)
}

/// `CAST(value AS type)` for QLDB's target types ("CAST function in Amazon QLDB").
///
/// Unknowns propagate: NULL stays NULL and MISSING stays MISSING, except that the target type
/// `NULL` or `MISSING` turns either unknown into that unknown. A known value cannot be cast to
/// `NULL` or `MISSING`.
pub fn cast(value: &Datum, target: &str) -> Result<Datum> {
    let target = target.to_ascii_uppercase();
    let element = match (value, target.as_str()) {
        (Datum::Missing, "NULL") => return Ok(Datum::null()),
        (Datum::Missing, _) => return Ok(Datum::Missing),
        (Datum::Ion(e), "MISSING") if e.is_null() => return Ok(Datum::Missing),
        (Datum::Ion(e), _) if e.is_null() => return Ok(Datum::null()),
        (Datum::Ion(e), _) => e,
    };
    let fail = || {
        PartiqlError::type_error(format!(
            "CAST: cannot cast {} to {target}",
            value.type_name()
        ))
    };
    let result = match target.as_str() {
        "STRING" | "VARCHAR" | "CHAR" | "TEXT" => {
            Element::string(cast_text(element).ok_or_else(fail)?)
        }
        "SYMBOL" => Element::symbol(cast_text(element).ok_or_else(fail)?),
        "INT" | "INTEGER" | "BIGINT" | "SMALLINT" => cast_int(element).ok_or_else(fail)?,
        "DECIMAL" | "NUMERIC" => cast_decimal(element).ok_or_else(fail)?,
        "FLOAT" | "REAL" | "DOUBLE PRECISION" => cast_float(element).ok_or_else(fail)?,
        "BOOL" | "BOOLEAN" => cast_bool(element).ok_or_else(fail)?,
        "TIMESTAMP" => cast_timestamp(element).ok_or_else(fail)?,
        "LIST" | "SEXP" | "STRUCT" | "BLOB" | "CLOB" => {
            let wanted = match target.as_str() {
                "LIST" => IonType::List,
                "SEXP" => IonType::SExp,
                "STRUCT" => IonType::Struct,
                "BLOB" => IonType::Blob,
                _ => IonType::Clob,
            };
            if element.ion_type() == wanted {
                element.clone()
            } else {
                return Err(fail());
            }
        }
        "NULL" | "MISSING" => return Err(fail()),
        _ => {
            return Err(PartiqlError::type_error(format!(
                "CAST: unknown type {target}"
            )))
        }
    };
    Ok(Datum::Ion(result))
}

fn cast_text(element: &Element) -> Option<String> {
    Some(match element.value() {
        Value::String(_) | Value::Symbol(_) => element.as_text()?.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Decimal(d) => decimal_text(d),
        // `{:?}` keeps a fraction on whole numbers: CAST(`1e0` AS string) is "1.0".
        Value::Float(f) => format!("{f:?}"),
        Value::Timestamp(t) => timestamp_text(t),
        _ => return None,
    })
}

/// A decimal in SQL notation: `1d0` is `1`, `1.00` stays `1.00`, a positive exponent is kept as
/// `E+n` (`1d3` is `1E+3`) and a long run of leading zeros becomes `E-n`.
fn decimal_text(decimal: &Decimal) -> String {
    let coefficient = decimal.coefficient();
    let sign = if coefficient.is_negative() { "-" } else { "" };
    let digits = coefficient.magnitude().to_string();
    let exponent = decimal.exponent();
    let scale = exponent.unsigned_abs() as usize;
    if exponent == 0 {
        format!("{sign}{digits}")
    } else if exponent > 0 {
        format!("{sign}{digits}E+{exponent}")
    } else if scale < digits.len() {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        format!("{sign}{whole}.{fraction}")
    } else if scale - digits.len() <= LEADING_ZEROS_MAX {
        format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
    } else {
        format!("{sign}{digits}E{exponent}")
    }
}

/// How many zeros after the decimal point [`decimal_text`] writes out before switching to an
/// exponent (the text of `1d-1000000` must not be a megabyte of zeros).
const LEADING_ZEROS_MAX: usize = 6;

/// Ion timestamp text with UTC written `Z`, as QLDB prints it (ion-rs writes `+00:00`).
fn timestamp_text(timestamp: &Timestamp) -> String {
    let text = timestamp.to_string();
    match (timestamp.offset(), text.strip_suffix("+00:00")) {
        (Some(0), Some(local)) => format!("{local}Z"),
        _ => text,
    }
}

/// Text cast to a number must be an Ion number (re-casting text would never end).
fn parse_number(element: &Element) -> Option<Element> {
    let parsed = Element::read_one(element.as_text()?.trim()).ok()?;
    let numeric = matches!(
        parsed.ion_type(),
        IonType::Int | IonType::Decimal | IonType::Float
    );
    (numeric && !parsed.is_null()).then_some(parsed)
}

fn cast_int(element: &Element) -> Option<Element> {
    Some(match element.value() {
        Value::Int(_) => element.clone(),
        Value::Bool(b) => Element::int(i64::from(*b)),
        Value::Decimal(d) => Element::int(decimal_truncated(d)?),
        Value::Float(f) if f.is_finite() && f.abs() < 1.7e38 => Element::int(f.trunc() as i128),
        Value::String(_) | Value::Symbol(_) => return cast_int(&parse_number(element)?),
        _ => return None,
    })
}

/// The integer part of a decimal, exponent applied (`1d3` is 1000, `1.75` is 1); `None` when
/// it does not fit an i128.
fn decimal_truncated(decimal: &Decimal) -> Option<i128> {
    let truncated = decimal.trunc();
    if truncated.is_zero() {
        return Some(0);
    }
    let coefficient = ion_rs::Int::try_from(truncated.coefficient())
        .ok()?
        .as_i128()?;
    let exponent = u32::try_from(truncated.exponent()).ok()?;
    coefficient.checked_mul(10i128.checked_pow(exponent)?)
}

fn cast_decimal(element: &Element) -> Option<Element> {
    Some(match element.value() {
        Value::Decimal(_) => element.clone(),
        Value::Int(i) => Element::decimal(Decimal::from(i.clone())),
        Value::Bool(b) => Element::decimal(Decimal::from(i64::from(*b))),
        Value::Float(f) => Element::decimal(Decimal::try_from(*f).ok()?),
        Value::String(_) | Value::Symbol(_) => return cast_decimal(&parse_number(element)?),
        _ => return None,
    })
}

fn cast_float(element: &Element) -> Option<Element> {
    Some(match element.value() {
        Value::Float(_) => element.clone(),
        Value::Int(i) => Element::float(i.to_string().parse().ok()?),
        Value::Decimal(d) => Element::float(decimal_text(d).parse().ok()?),
        Value::Bool(b) => Element::float(f64::from(u8::from(*b))),
        Value::String(_) | Value::Symbol(_) => return cast_float(&parse_number(element)?),
        _ => return None,
    })
}

/// Text is true only when it spells `true` (any case); any other text is false, as QLDB
/// documents (`CAST('a' AS boolean)` is false).
fn cast_bool(element: &Element) -> Option<Element> {
    Some(match element.value() {
        Value::Bool(_) => element.clone(),
        Value::Int(i) => Element::boolean(!i.is_zero()),
        Value::Decimal(d) => Element::boolean(!d.is_zero()),
        Value::Float(f) => Element::boolean(*f != 0.0),
        Value::String(_) | Value::Symbol(_) => {
            Element::boolean(element.as_text()?.eq_ignore_ascii_case("true"))
        }
        _ => return None,
    })
}

fn cast_timestamp(element: &Element) -> Option<Element> {
    match element.value() {
        Value::Timestamp(_) => Some(element.clone()),
        Value::String(_) | Value::Symbol(_) => {
            let parsed = Element::read_one(element.as_text()?.trim()).ok()?;
            (parsed.ion_type() == IonType::Timestamp).then_some(parsed)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ion(text: &str) -> Datum {
        Datum::Ion(Element::read_one(text).unwrap())
    }

    fn context() -> FunctionContext {
        FunctionContext {
            now: Element::read_one("2024-05-06T07:08:09.123Z")
                .unwrap()
                .as_timestamp()
                .unwrap(),
            transaction_id: "tx".to_string(),
        }
    }

    fn run(name: &str, args: &[Datum]) -> Datum {
        call(name, args, &context()).unwrap()
    }

    fn ion_text(datum: &Datum) -> String {
        datum.as_element().unwrap().to_string()
    }

    #[test]
    fn date_add_keeps_precision() {
        assert_eq!(
            ion_text(&run(
                "DATE_ADD",
                &[Datum::string("month"), ion("1"), ion("2010T")]
            )),
            "2010-02T"
        );
        assert_eq!(
            ion_text(&run(
                "DATE_ADD",
                &[Datum::string("year"), ion("5"), ion("2010T")]
            )),
            "2015T"
        );
        assert_eq!(
            ion_text(&run(
                "DATE_ADD",
                &[Datum::string("day"), ion("-1"), ion("2017-01-10T")]
            )),
            "2017-01-09T"
        );
        assert_eq!(
            ion_text(&run(
                "DATE_ADD",
                &[Datum::string("day"), ion("1"), ion("2017-02-28T")]
            )),
            "2017-03-01T"
        );
        assert_eq!(
            ion_text(&run(
                "DATE_ADD",
                &[Datum::string("month"), ion("1"), ion("2017-01-31T")]
            )),
            "2017-02-28T"
        );
        let hour = run(
            "DATE_ADD",
            &[Datum::string("hour"), ion("1"), ion("2017-01-02T03:04Z")],
        );
        assert!(crate::value::values_equal(
            hour.as_element().unwrap(),
            &Element::read_one("2017-01-02T04:04Z").unwrap()
        ));
        let second = run(
            "DATE_ADD",
            &[
                Datum::string("second"),
                ion("1"),
                ion("2017-01-02T03:04:05.006Z"),
            ],
        );
        assert!(crate::value::values_equal(
            second.as_element().unwrap(),
            &Element::read_one("2017-01-02T03:04:06.006Z").unwrap()
        ));
    }

    #[test]
    fn date_add_out_of_range_is_an_error() {
        for (part, quantity) in [
            ("year", "9223372036854775807"),
            ("month", "-9223372036854775807"),
            ("day", "9223372036854775807"),
        ] {
            let result = call(
                "DATE_ADD",
                &[Datum::string(part), ion(quantity), ion("2010T")],
                &context(),
            );
            assert!(matches!(result, Err(PartiqlError::Type(_))), "{part}");
        }
        let result = call(
            "DATE_ADD",
            &[Datum::string("year"), ion("8000"), ion("2010T")],
            &context(),
        );
        assert!(matches!(result, Err(PartiqlError::Type(_))));
    }

    #[test]
    fn date_diff_counts_whole_units() {
        assert_eq!(
            run(
                "DATE_DIFF",
                &[
                    Datum::string("year"),
                    ion("2010-01-01T"),
                    ion("2011-01-01T")
                ]
            ),
            Datum::int(1)
        );
        assert_eq!(
            run(
                "DATE_DIFF",
                &[Datum::string("month"), ion("2010T"), ion("2010-05T")]
            ),
            Datum::int(4)
        );
        assert_eq!(
            run(
                "DATE_DIFF",
                &[
                    Datum::string("month"),
                    ion("2010-01-31T"),
                    ion("2010-02-28T")
                ]
            ),
            Datum::int(0)
        );
        assert_eq!(
            run(
                "DATE_DIFF",
                &[
                    Datum::string("hour"),
                    ion("2010-01-01T00:00Z"),
                    ion("2010-01-01T05:00+01:00")
                ]
            ),
            Datum::int(4)
        );
    }

    #[test]
    fn extract_parts() {
        let ts = ion("2017-01-10T05:30:55Z");
        assert_eq!(
            run("EXTRACT", &[Datum::string("year"), ts.clone()]),
            Datum::int(2017)
        );
        assert_eq!(
            run("EXTRACT", &[Datum::string("minute"), ts.clone()]),
            Datum::int(30)
        );
        assert_eq!(
            run(
                "EXTRACT",
                &[
                    Datum::string("timezone_hour"),
                    ion("2017-01-10T05:30-08:00")
                ]
            ),
            Datum::int(-8)
        );
    }

    #[test]
    fn to_string_patterns() {
        let ts = ion("1969-07-20T20:18Z");
        let format = |p: &str| run("TO_STRING", &[ts.clone(), Datum::string(p)]);
        assert_eq!(format("MMMM d, y"), Datum::string("July 20, 1969"));
        assert_eq!(format("MMM d, yyyy"), Datum::string("Jul 20, 1969"));
        assert_eq!(format("M-d-yy"), Datum::string("7-20-69"));
        assert_eq!(format("MM-d-y"), Datum::string("07-20-1969"));
        assert_eq!(
            format("MMM d, yyyy h:m a"),
            Datum::string("Jul 20, 1969 8:18 PM")
        );
        assert_eq!(
            format("y-MM-dd'T'H:m:ssX"),
            Datum::string("1969-07-20T20:18:00Z")
        );
        let eight = run(
            "TO_STRING",
            &[
                ion("1969-07-20T20:18+08:00"),
                Datum::string("y-MM-dd'T'H:m:ssXXXX"),
            ],
        );
        assert_eq!(eight, Datum::string("1969-07-20T20:18:00+0800"));
    }

    #[test]
    fn to_timestamp_parses() {
        let parsed = run("TO_TIMESTAMP", &[Datum::string("2007T")]);
        assert_eq!(ion_text(&parsed), "2007T");
        let parsed = run(
            "TO_TIMESTAMP",
            &[Datum::string("July 20, 1969"), Datum::string("MMMM d, y")],
        );
        assert_eq!(ion_text(&parsed), "1969-07-20T");
        let parsed = run(
            "TO_TIMESTAMP",
            &[Datum::string("Jul 20, 1969"), Datum::string("MMM d, yyyy")],
        );
        assert_eq!(ion_text(&parsed), "1969-07-20T");
        let parsed = run(
            "TO_TIMESTAMP",
            &[
                Datum::string("1969-07-20T20:18Z"),
                Datum::string("y-MM-dd'T'H:mX"),
            ],
        );
        assert!(crate::value::values_equal(
            parsed.as_element().unwrap(),
            ion("1969-07-20T20:18Z").as_element().unwrap()
        ));
        assert!(call("TO_TIMESTAMP", &[Datum::string("nope")], &context()).is_err());
    }

    #[test]
    fn string_functions() {
        assert_eq!(run("UPPER", &[Datum::string("abc")]), Datum::string("ABC"));
        assert_eq!(run("LOWER", &[ion("AbC")]), Datum::string("abc"));
        assert_eq!(run("CHAR_LENGTH", &[Datum::string("héllo")]), Datum::int(5));
        assert_eq!(
            run(
                "SUBSTRING",
                &[Datum::string("123456789"), ion("0"), ion("2")]
            ),
            Datum::string("1")
        );
        assert_eq!(
            run("SUBSTRING", &[Datum::string("abcdefg"), ion("4")]),
            Datum::string("defg")
        );
        assert_eq!(
            run("SUBSTRING", &[Datum::string("abcdefg"), ion("2"), ion("3")]),
            Datum::string("bcd")
        );
        assert_eq!(run("TRIM", &[Datum::string("  a  ")]), Datum::string("a"));
        assert_eq!(
            run(
                "TRIM",
                &[
                    Datum::string("LEADING"),
                    Datum::string("1"),
                    Datum::string("11a1")
                ]
            ),
            Datum::string("a1")
        );
        assert!(run("UPPER", &[Datum::Missing]).is_absent());
        let error = call("UPPER", &[ion("1")], &context())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("UPPER") && error.contains("argument 1"),
            "{error}"
        );
    }

    #[test]
    fn conditional_functions() {
        assert_eq!(
            run("COALESCE", &[Datum::null(), Datum::Missing, ion("1")]),
            ion("1")
        );
        assert!(run("NULLIF", &[ion("1"), ion("1.0")]).is_absent());
        assert_eq!(run("NULLIF", &[ion("1"), ion("2")]), ion("1"));
        assert_eq!(run("EXISTS", &[ion("[1]")]), Datum::bool(true));
        assert_eq!(run("EXISTS", &[ion("[]")]), Datum::bool(false));
        assert_eq!(run("SIZE", &[ion("{a:1, b:2}")]), Datum::int(2));
        assert_eq!(run("TXID", &[]), Datum::string("tx"));
        assert_eq!(
            ion_text(&run("UTCNOW", &[])),
            ion_text(&ion("2024-05-06T07:08:09.123Z"))
        );
    }

    #[test]
    fn casts() {
        assert_eq!(cast(&ion("\"12\""), "INT").unwrap(), ion("12"));
        assert_eq!(cast(&ion("1.9"), "INT").unwrap(), ion("1"));
        assert_eq!(cast(&ion("12"), "STRING").unwrap(), Datum::string("12"));
        assert_eq!(cast(&ion("\"2017T\""), "TIMESTAMP").unwrap(), ion("2017T"));
        assert_eq!(cast(&ion("1"), "DECIMAL").unwrap(), ion("1."));
        assert!(cast(&ion("\"x\""), "INT").is_err());
        assert!(cast(&ion("null"), "INT").unwrap().is_absent());
        assert_eq!(cast(&ion("-1.75"), "INT").unwrap(), ion("-1"));
        assert_eq!(cast(&ion("-0.5"), "INT").unwrap(), ion("0"));
        // An exponent too large for an integer is an error, not a wrapped value.
        assert!(cast(&ion("1d60"), "INT").is_err());
    }

    #[test]
    fn decimal_text_is_plain_or_scientific() {
        let text = |d: &str| decimal_text(&Element::read_one(d).unwrap().as_decimal().unwrap());
        assert_eq!(text("1d0"), "1");
        assert_eq!(text("1.00"), "1.00");
        assert_eq!(text("-12.5"), "-12.5");
        assert_eq!(text("0.05"), "0.05");
        assert_eq!(text("1d3"), "1E+3");
        assert_eq!(text("1d-1000000"), "1E-1000000");
    }
}
