//! Commit timestamps: milliseconds since the Unix epoch, UTC, as QLDB's `txTime`.

use std::time::{SystemTime, UNIX_EPOCH};

use ion_rs::Timestamp;

use crate::error::{LedgerError, Result};

/// Milliseconds since the epoch, now.
pub fn now_millis() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The Ion timestamp (millisecond precision, UTC) for `millis` since the epoch.
pub fn timestamp_from_millis(millis: i64) -> Result<Timestamp> {
    let seconds = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000) as u32;
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return Err(LedgerError::InvalidInput(format!(
            "time out of Ion's range: {millis} ms"
        )));
    }
    Timestamp::with_ymd(year as u32, month, day)
        .with_hms(
            secs_of_day / 3600,
            (secs_of_day / 60) % 60,
            secs_of_day % 60,
        )
        .with_milliseconds(ms)
        .with_offset(0)
        .build()
        .map_err(LedgerError::from)
}

/// Milliseconds since the epoch of an Ion timestamp (any precision; missing parts are the
/// start of the period; an unknown offset is taken as UTC).
pub fn millis_from_timestamp(ts: &Timestamp) -> i64 {
    let days = days_from_civil(ts.year() as i64, ts.month().max(1), ts.day().max(1));
    let secs =
        days * 86_400 + ts.hour() as i64 * 3600 + ts.minute() as i64 * 60 + ts.second() as i64;
    let offset_minutes = ts.offset().unwrap_or(0) as i64;
    (secs - offset_minutes * 60) * 1000 + ts.milliseconds() as i64
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        for millis in [0i64, 1_568_662_625_344, 951_782_400_123, 4_102_444_799_999] {
            let ts = timestamp_from_millis(millis).unwrap();
            assert_eq!(millis_from_timestamp(&ts), millis, "{ts}");
        }
        let ts = timestamp_from_millis(1_568_662_625_344).unwrap();
        assert_eq!(ts.to_string(), "2019-09-16T19:37:05.344+00:00");
    }
}
