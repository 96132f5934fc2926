//! UTC milliseconds since the epoch ⇄ Ion timestamps, and ISO 8601 parsing for request times.

use ion_rs::{Element, Timestamp};
use quill_ledger::calendar::{civil_from_days, days_from_civil};
pub use quill_ledger::now_millis;

use crate::error::{ExportError, Result};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// The instant of an Ion timestamp, in UTC milliseconds since the epoch (sub-millisecond
/// digits are dropped; a timestamp without a time of day is its midnight UTC).
pub fn timestamp_millis(timestamp: &Timestamp) -> i64 {
    let utc = timestamp.to_utc();
    let days = days_from_civil(i64::from(utc.year()), utc.month(), utc.day());
    days * MILLIS_PER_DAY
        + i64::from(utc.hour()) * 3_600_000
        + i64::from(utc.minute()) * 60_000
        + i64::from(utc.second()) * 1000
        + i64::from(utc.milliseconds())
}

/// The UTC Ion timestamp (millisecond precision) of `millis` since the epoch.
pub fn millis_timestamp(millis: i64) -> Result<Timestamp> {
    let days = millis.div_euclid(MILLIS_PER_DAY);
    let of_day = millis.rem_euclid(MILLIS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Err(ExportError::InvalidInput(format!(
            "time {millis} ms is outside years 1-9999"
        )));
    }
    Ok(Timestamp::with_ymd(year as u32, month, day)
        .with_hms(
            (of_day / 3_600_000) as u32,
            (of_day / 60_000 % 60) as u32,
            (of_day / 1000 % 60) as u32,
        )
        .with_milliseconds((of_day % 1000) as u32)
        .with_offset(0)
        .build()?)
}

/// `yyyy/mm/dd/hh` of `millis` in UTC: the folder of a data object.
pub fn hour_folder(millis: i64) -> String {
    let (year, month, day) = civil_from_days(millis.div_euclid(MILLIS_PER_DAY));
    let hour = millis.rem_euclid(MILLIS_PER_DAY) / 3_600_000;
    format!("{year:04}/{month:02}/{day:02}/{hour:02}")
}

/// Parses an ISO 8601 / Ion timestamp such as `2019-06-13T21:36:34Z` into UTC milliseconds.
pub fn parse_time(text: &str) -> Result<i64> {
    let bad = || ExportError::InvalidInput(format!("{text:?} is not an ISO 8601 date and time"));
    let element = Element::read_one(text.trim().as_bytes()).map_err(|_| bad())?;
    let timestamp = element.as_timestamp().ok_or_else(bad)?;
    Ok(timestamp_millis(&timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_through_timestamps() {
        for millis in [0, 1, 999, 1_560_461_794_123, 951_782_400_000, -86_400_001] {
            let timestamp = millis_timestamp(millis).unwrap();
            assert_eq!(timestamp_millis(&timestamp), millis, "{timestamp}");
        }
    }

    #[test]
    fn parses_iso_times_with_offsets() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("2019-06-13T21:36:34.5-01:00").unwrap(),
            parse_time("2019-06-13T22:36:34.500Z").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("42").is_err());
    }

    #[test]
    fn hour_folders_are_utc() {
        let millis = parse_time("2019-04-15T22:59:59.999Z").unwrap();
        assert_eq!(hour_folder(millis), "2019/04/15/22");
        assert_eq!(hour_folder(millis + 1), "2019/04/15/23");
    }
}
