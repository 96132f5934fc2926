//! Commit timestamps: milliseconds since the Unix epoch, UTC, as QLDB's `txTime`.

use std::time::{SystemTime, UNIX_EPOCH};

use ion_rs::Timestamp;

use crate::calendar::{civil_from_days, days_from_civil};
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
