//! Time helpers. QBO shows every MetaData time in America/Los_Angeles with the DST-correct offset
//! (`-08:00` in winter, `-07:00` in summer) and whole seconds; the envelope `time` adds
//! milliseconds. Internally every instant is a UTC Unix timestamp (seconds, or milliseconds for
//! query literals, which may carry a fraction) and every business date is days since 1970-01-01.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::America::Los_Angeles;

/// Pacific offset (seconds east of UTC, so -28800 or -25200) in force at a UTC instant.
pub(crate) fn offset_secs(utc_s: i64) -> i32 {
    match DateTime::from_timestamp(utc_s, 0) {
        Some(dt) => Los_Angeles.offset_from_utc_datetime(&dt.naive_utc()).fix().local_minus_utc(),
        None => -28800,
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m as u32, d as u32)
}

/// Days since 1970-01-01 of a calendar date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn date_to_days(d: NaiveDate) -> i64 {
    use chrono::Datelike;
    days_from_civil(d.year() as i64, d.month(), d.day())
}

pub(crate) fn days_to_date(days: i64) -> NaiveDate {
    let (y, m, d) = civil_from_days(days);
    NaiveDate::from_ymd_opt(y as i32, m, d).unwrap_or(NaiveDate::MIN)
}

#[inline]
fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

fn push_year(buf: &mut Vec<u8>, y: i64) {
    let y = y.clamp(0, 9999) as u32;
    push2(buf, y / 100);
    push2(buf, y % 100);
}

/// Appends `YYYY-MM-DD` for days since the epoch.
pub(crate) fn write_date(buf: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push_year(buf, y);
    buf.push(b'-');
    push2(buf, m);
    buf.push(b'-');
    push2(buf, d);
}

fn write_local(buf: &mut Vec<u8>, utc_s: i64, millis: Option<u32>) {
    let off = offset_secs(utc_s) as i64;
    let local = utc_s + off;
    write_date(buf, local.div_euclid(86_400));
    let sod = local.rem_euclid(86_400) as u32;
    buf.push(b'T');
    push2(buf, sod / 3600);
    buf.push(b':');
    push2(buf, sod / 60 % 60);
    buf.push(b':');
    push2(buf, sod % 60);
    if let Some(ms) = millis {
        buf.push(b'.');
        buf.push(b'0' + (ms / 100) as u8);
        push2(buf, ms % 100);
    }
    buf.push(if off < 0 { b'-' } else { b'+' });
    let a = off.unsigned_abs() as u32;
    push2(buf, a / 3600);
    buf.push(b':');
    push2(buf, a / 60 % 60);
}

/// Appends `YYYY-MM-DDTHH:MM:SS-08:00` (Pacific, whole seconds) for a UTC Unix time.
pub(crate) fn write_pacific(buf: &mut Vec<u8>, utc_s: i64) {
    write_local(buf, utc_s, None);
}

/// `YYYY-MM-DDTHH:MM:SS-08:00` (Pacific, whole seconds), the MetaData format.
pub fn format_pacific(utc_s: i64) -> String {
    let mut v = Vec::with_capacity(25);
    write_pacific(&mut v, utc_s);
    String::from_utf8(v).unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS.mmm-07:00`, the envelope `time` format.
pub(crate) fn format_pacific_millis(now: DateTime<Utc>) -> String {
    let mut v = Vec::with_capacity(29);
    write_local(&mut v, now.timestamp(), Some(now.timestamp_subsec_millis().min(999)));
    String::from_utf8(v).unwrap_or_default()
}

/// Pacific calendar day (days since epoch) of a UTC instant.
pub(crate) fn pacific_days(utc_s: i64) -> i64 {
    (utc_s + offset_secs(utc_s) as i64).div_euclid(86_400)
}

/// Today in Pacific time, days since epoch (`CURRENT_DATE`).
pub(crate) fn today_pacific() -> i64 {
    pacific_days(Utc::now().timestamp())
}

/// A wall-clock time in America/Los_Angeles to UTC milliseconds. An ambiguous time (the repeated
/// hour in November) takes the earlier instant; a time inside the spring-forward gap is moved
/// one hour later, as most libraries do.
pub(crate) fn pacific_local_to_utc_ms(ndt: NaiveDateTime) -> i64 {
    match Los_Angeles.from_local_datetime(&ndt) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(a, _) => a.timestamp_millis(),
        LocalResult::None => {
            let later = ndt + chrono::Duration::hours(1);
            match Los_Angeles.from_local_datetime(&later) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
                LocalResult::None => ndt.and_utc().timestamp_millis() + 8 * 3_600_000,
            }
        }
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn parse_ymd(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)
}

/// Parses a query datetime literal to UTC milliseconds. Accepted forms (as Intuit documents and
/// clients send them): `2025-01-01T00:00:00Z`, `…-07:00`, `…-0700`, `…-07`, with an optional
/// fraction (`…00.123Z`), no offset at all (= America/Los_Angeles wall time), or a bare date
/// `2025-01-01` (= Pacific midnight). Anything else is `None`, including a `+` offset that a
/// client forgot to percent-encode and that arrives as a space.
pub(crate) fn parse_datetime_literal(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let date = parse_ymd(b)?;
    if b.len() == 10 {
        return Some(pacific_local_to_utc_ms(date.and_hms_opt(0, 0, 0)?));
    }
    if b[10] != b'T' && b[10] != b't' {
        return None;
    }
    let h = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let mi = digits(b, 14, 2)?;
    let (sec, mut i) = if b.get(16) == Some(&b':') { (digits(b, 17, 2)?, 19) } else { (0, 16) };
    let mut ms = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let st = i;
        let mut scale = 100;
        while i < b.len() && b[i].is_ascii_digit() {
            ms += (b[i] - b'0') as u32 * scale;
            scale /= 10;
            i += 1;
        }
        if i == st {
            return None;
        }
    }
    let ndt = date.and_hms_milli_opt(h, mi, sec, ms)?;
    let rest = &b[i..];
    match rest {
        [] => Some(pacific_local_to_utc_ms(ndt)),
        [b'Z'] | [b'z'] => Some(ndt.and_utc().timestamp_millis()),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail.len() {
                2 => (digits(tail, 0, 2)?, 0),
                4 => (digits(tail, 0, 2)?, digits(tail, 2, 2)?),
                5 if tail[2] == b':' => (digits(tail, 0, 2)?, digits(tail, 3, 2)?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off_ms = (oh as i64 * 3600 + om as i64 * 60) * 1000;
            let local = ndt.and_utc().timestamp_millis();
            Some(if *sign == b'-' { local + off_ms } else { local - off_ms })
        }
        _ => None,
    }
}

/// Parses a business-date literal (`TxnDate = '2024-01-31'`) to days since epoch. A datetime
/// literal is accepted and its date part used.
pub(crate) fn parse_date_literal(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let d = parse_ymd(b)?;
    if b.len() > 10 {
        parse_datetime_literal(s)?;
    }
    Some(date_to_days(d))
}

/// Serde for a UTC instant as RFC 3339 with exactly three fraction digits
/// (`2026-03-02T20:55:50.125Z`), the form of the emulator's deletion times.
pub(crate) mod utc_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn civil_roundtrip() {
        for d in [-1000i64, 0, 1, 59, 365, 10_957, 20_000, 60_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
            assert_eq!(date_to_days(days_to_date(d)), d);
        }
    }

    #[test]
    fn pacific_offsets_follow_dst() {
        assert_eq!(format_pacific(ts("2025-01-15T20:00:00Z")), "2025-01-15T12:00:00-08:00");
        assert_eq!(format_pacific(ts("2025-07-15T20:00:00Z")), "2025-07-15T13:00:00-07:00");
        // 2025-03-09 02:00 PST -> 03:00 PDT
        assert_eq!(format_pacific(ts("2025-03-09T09:59:59Z")), "2025-03-09T01:59:59-08:00");
        assert_eq!(format_pacific(ts("2025-03-09T10:00:00Z")), "2025-03-09T03:00:00-07:00");
        let t = DateTime::parse_from_rfc3339("2020-09-29T13:51:37.512Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_pacific_millis(t), "2020-09-29T06:51:37.512-07:00");
    }

    #[test]
    fn literal_forms() {
        let z = ts("2025-01-01T08:00:00Z") * 1000;
        assert_eq!(parse_datetime_literal("2025-01-01T08:00:00Z"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01T00:00:00-08:00"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01T00:00:00-0800"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01T09:00:00+01:00"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01T00:00:00"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01"), Some(z));
        assert_eq!(parse_datetime_literal("2025-01-01T08:00:00.250Z"), Some(z + 250));
        assert_eq!(parse_datetime_literal("2025-07-01T00:00:00"), Some(ts("2025-07-01T07:00:00Z") * 1000));
        assert_eq!(parse_datetime_literal("2025-01-01T00:00:00 08:00"), None);
        assert_eq!(parse_datetime_literal("yesterday"), None);
        assert_eq!(parse_date_literal("2024-02-29"), Some(date_to_days(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())));
        assert_eq!(parse_date_literal("2024-02-30"), None);
    }
}
