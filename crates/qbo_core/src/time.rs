//! Parsing user dates and QBO timestamps into UTC instants. QBO speaks Pacific time
//! (-08:00 / -07:00); everything we compare or store is UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};

use crate::error::Error;

/// Parses a user-supplied bound: `2025-01-31` (midnight UTC), `2025-01-31T10:00:00`
/// (UTC), or an RFC 3339 datetime with any offset (converted to UTC).
pub fn parse_user_instant(what: &str, value: &str) -> Result<DateTime<Utc>, Error> {
    let parsed = parse_instant_text(value.trim()).ok_or_else(|| {
        Error::config(format!("{what} = {value:?} is not an ISO date: use YYYY-MM-DD (midnight UTC) or an ISO datetime such as 2025-01-31T00:00:00Z"))
    })?;
    // chrono reads a 60th second as a leap second; QuickBooks' query language cannot say it.
    if parsed.nanosecond() >= 1_000_000_000 {
        return Err(Error::config(format!("{what} = {value:?} is a leap second (:60): use :59 or the next minute")));
    }
    Ok(parsed)
}

fn parse_instant_text(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(v) {
        return Some(dt.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(v, fmt).ok())
        .map(|naive| Utc.from_utc_datetime(&naive))
}

/// Parses a QBO `MetaData` timestamp (`2015-10-01T16:48:43-07:00`) into UTC.
pub fn parse_qbo_timestamp(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        return Some(dt.with_timezone(&Utc));
    }
    // Older docs show offsets without a colon (-0700).
    DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%z").ok().map(|dt| dt.with_timezone(&Utc))
}

/// `2025-01-31T08:00:00Z`: whole seconds when possible, the form stored in the RAW layer.
pub fn format_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The literal we put in QBO queries: explicit `+00:00` offset, whole seconds
/// (an offset is always sent, since QBO reads a bare datetime in the company's zone; whether
/// it accepts fractional seconds is not documented).
pub fn qbo_literal(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_dates_become_utc() {
        let d = parse_user_instant("start", "2025-01-31").unwrap();
        assert_eq!(format_utc(d), "2025-01-31T00:00:00Z");
        let d = parse_user_instant("start", "2025-07-01T00:00:00-07:00").unwrap();
        assert_eq!(format_utc(d), "2025-07-01T07:00:00Z");
        // Naive means UTC, with a T or a space, with or without seconds.
        for naive in ["2025-01-31T10:30", "2025-01-31 10:30", "2025-01-31 10:30:00", "2025-01-31T10:30:00.0"] {
            assert_eq!(format_utc(parse_user_instant("start", naive).unwrap()), "2025-01-31T10:30:00Z", "{naive}");
        }
        assert!(parse_user_instant("start", "31/01/2025").is_err());
        assert!(parse_user_instant("start", "2025-02-30").is_err());
    }

    #[test]
    fn pacific_offsets_are_converted() {
        let winter = parse_qbo_timestamp("2025-01-15T10:00:00-08:00").unwrap();
        assert_eq!(format_utc(winter), "2025-01-15T18:00:00Z");
        let summer = parse_qbo_timestamp("2025-07-15T10:00:00-0700").unwrap();
        assert_eq!(format_utc(summer), "2025-07-15T17:00:00Z");
    }
}
