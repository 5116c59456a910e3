//! Splitting `[start, end)` into half-open UTC windows that tile the range exactly.
//! Each window has a stable label (`invoice_backfill_2025-10-15`) that names a Mage
//! dynamic child and lets one window be re-run alone.

use chrono::{DateTime, Duration, Timelike, Utc};

use crate::error::Error;
use crate::time::format_utc;

/// The most windows one plan may hold: 4,000 daily windows is 11 years; beyond 100k the
/// caller almost certainly passed the wrong unit.
pub const MAX_WINDOWS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
}

impl Window {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, label_prefix: &str) -> Self {
        Window { start, end, label: format!("{label_prefix}_{}", label_stamp(start)) }
    }

    /// `2025-10-15` in the seed's log line (`Rango 2025-10-15 a 2025-11-15 -> N filas`);
    /// a full timestamp when the bound is not midnight.
    pub fn start_text(&self) -> String {
        bound_text(self.start)
    }

    pub fn end_text(&self) -> String {
        bound_text(self.end)
    }

    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }

    /// [`Window::contains`] for a time in Unix milliseconds (exact: the bounds are whole
    /// milliseconds).
    pub fn contains_millis(&self, ms: i64) -> bool {
        self.start.timestamp_millis() <= ms && ms < self.end.timestamp_millis()
    }
}

fn is_midnight(t: DateTime<Utc>) -> bool {
    t.num_seconds_from_midnight() == 0 && t.nanosecond() == 0
}

fn bound_text(t: DateTime<Utc>) -> String {
    if is_midnight(t) {
        t.format("%Y-%m-%d").to_string()
    } else {
        format_utc(t)
    }
}

fn label_stamp(t: DateTime<Utc>) -> String {
    if is_midnight(t) {
        t.format("%Y-%m-%d").to_string()
    } else {
        // No ':' so the label stays a valid file name and Mage block-run suffix.
        t.format("%Y-%m-%dT%H%M%SZ").to_string()
    }
}

/// Plans windows of `chunk_days` days covering `[start, end)`; the last one is cut at `end`.
pub fn plan_windows(start: DateTime<Utc>, end: DateTime<Utc>, chunk_days: u32, label_prefix: &str) -> Result<Vec<Window>, Error> {
    if end <= start {
        return Err(Error::config(format!("end ({}) must be after start ({}): windows are half-open [start, end)", format_utc(end), format_utc(start))));
    }
    if chunk_days == 0 {
        return Err(Error::config("chunk_days must be at least 1"));
    }
    let step = Duration::days(i64::from(chunk_days));
    let span = end - start;
    let count = span.num_seconds().div_euclid(step.num_seconds()) as u64 + 1;
    if count > MAX_WINDOWS as u64 {
        return Err(Error::config(format!("{count} windows of {chunk_days} day(s) is more than {MAX_WINDOWS}: raise chunk_days")));
    }
    let mut windows = Vec::with_capacity(count as usize);
    let mut cursor = start;
    while cursor < end {
        let next = cursor.checked_add_signed(step).map_or(end, |n| n.min(end));
        windows.push(Window::new(cursor, next, label_prefix));
        cursor = next;
    }
    Ok(windows)
}

/// The window of `windows` (sorted, non-overlapping) whose `[start, end)` holds `key_ms`
/// (Unix milliseconds): the one a record with that filter value belongs to.
pub fn window_index(windows: &[Window], key_ms: i64) -> Option<usize> {
    let i = windows.partition_point(|w| w.end.timestamp_millis() <= key_ms);
    (i < windows.len() && windows[i].contains_millis(key_ms)).then_some(i)
}

/// Windows as compact ranges of consecutive ones, for one log line about many windows:
/// `2025-01-01..2025-01-05 (5 windows), 2025-03-02`; past `most` ranges, how many more.
pub fn ranges_text(windows: &[&Window], most: usize) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < windows.len() {
        let mut j = i;
        while j + 1 < windows.len() && windows[j + 1].start == windows[j].end {
            j += 1;
        }
        parts.push(if i == j { windows[i].start_text() } else { format!("{}..{} ({} windows)", windows[i].start_text(), windows[j].start_text(), j - i + 1) });
        i = j + 1;
    }
    if parts.len() > most {
        let more = parts.len() - most;
        parts.truncate(most);
        parts.push(format!("and {more} more range(s)"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_on_a_boundary_belongs_to_the_window_it_starts() {
        let start = Utc.with_ymd_and_hms(2025, 3, 8, 0, 0, 0).unwrap();
        // Daily windows over the US spring-forward weekend: windows are UTC days, whatever
        // offset QuickBooks stamped the record with.
        let windows = plan_windows(start, start + Duration::days(3), 1, "w").unwrap();
        let ms = |t: DateTime<Utc>| t.timestamp_millis();
        assert_eq!(window_index(&windows, ms(start)), Some(0));
        assert_eq!(window_index(&windows, ms(start + Duration::days(1)) - 1), Some(0));
        assert_eq!(window_index(&windows, ms(start + Duration::days(1))), Some(1));
        // 2025-03-09T02:30:00-07:00 (PDT, just after the change) is 09:30 UTC on the 9th.
        let pdt = DateTime::parse_from_rfc3339("2025-03-09T02:30:00-07:00").unwrap().with_timezone(&Utc);
        assert_eq!(window_index(&windows, ms(pdt)), Some(1));
        // 2025-03-09T23:30:00-07:00 is 06:30 UTC on the 10th: the next UTC day's window.
        let late = DateTime::parse_from_rfc3339("2025-03-09T23:30:00-07:00").unwrap().with_timezone(&Utc);
        assert_eq!(window_index(&windows, ms(late)), Some(2));
        assert_eq!(window_index(&windows, ms(start) - 1), None);
        assert_eq!(window_index(&windows, ms(start + Duration::days(3))), None);
        assert_eq!(window_index(&[], 0), None);
    }

    #[test]
    fn empty_windows_read_as_compact_ranges() {
        let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let windows = plan_windows(start, start + Duration::days(10), 1, "w").unwrap();
        let picked: Vec<&Window> = [0, 1, 2, 3, 6, 8, 9].iter().map(|&i| &windows[i]).collect();
        assert_eq!(ranges_text(&picked, 5), "2025-01-01..2025-01-04 (4 windows), 2025-01-07, 2025-01-09..2025-01-10 (2 windows)");
        assert_eq!(ranges_text(&picked, 1), "2025-01-01..2025-01-04 (4 windows), and 2 more range(s)");
    }
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn fifty_day_windows_with_labels() {
        let w = plan_windows(utc(2025, 1, 1), utc(2025, 3, 1), 50, "invoice_backfill").unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].label, "invoice_backfill_2025-01-01");
        assert_eq!(w[1].start, utc(2025, 2, 20));
        assert_eq!(w[1].end, utc(2025, 3, 1));
        assert_eq!(w[1].start_text(), "2025-02-20");
    }

    #[test]
    fn leap_day_is_its_own_daily_window() {
        let w = plan_windows(utc(2024, 2, 28), utc(2024, 3, 2), 1, "x").unwrap();
        let labels: Vec<_> = w.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, ["x_2024-02-28", "x_2024-02-29", "x_2024-03-01"]);
    }

    #[test]
    fn rejects_empty_or_reversed_ranges() {
        assert!(plan_windows(utc(2025, 1, 2), utc(2025, 1, 1), 1, "x").is_err());
        assert!(plan_windows(utc(2025, 1, 1), utc(2025, 1, 1), 1, "x").is_err());
        assert!(plan_windows(utc(2025, 1, 1), utc(2025, 1, 2), 0, "x").is_err());
        assert!(plan_windows(utc(1700, 1, 1), utc(2100, 1, 1), 1, "x").is_err());
    }

    #[test]
    fn non_midnight_bounds_get_timestamp_labels() {
        let s = Utc.with_ymd_and_hms(2025, 3, 9, 10, 30, 0).unwrap();
        let w = plan_windows(s, s + Duration::hours(5), 1, "item_backfill").unwrap();
        assert_eq!(w[0].label, "item_backfill_2025-03-09T103000Z");
        assert_eq!(w[0].end_text(), "2025-03-09T15:30:00Z");
    }

    proptest! {
        // contains_millis agrees with contains for any time, sub-millisecond ones included.
        #[test]
        fn contains_millis_agrees_with_contains(
            start_secs in 0i64..4_000_000_000,
            chunk in 1u32..60,
            offset_ns in -10_000_000_000i64..6_000_000_000_000_000,
        ) {
            let start = Utc.timestamp_opt(start_secs, 0).unwrap();
            let w = &plan_windows(start, start + Duration::days(i64::from(chunk)), chunk, "p").unwrap()[0];
            for t in [start + Duration::nanoseconds(offset_ns), w.end - Duration::nanoseconds(1), w.end, start - Duration::nanoseconds(1)] {
                prop_assert_eq!(w.contains_millis(t.timestamp_millis()), w.contains(t), "{}", t);
            }
        }

        // Any range, any chunk: windows tile [start, end) with no gap and no overlap,
        // each at most chunk_days long, labels unique.
        #[test]
        fn windows_tile_the_range(
            start_secs in 0i64..4_000_000_000,
            span_secs in 1i64..400_000_000,
            chunk in 1u32..400,
        ) {
            let start = Utc.timestamp_opt(start_secs, 0).unwrap();
            let end = start + Duration::seconds(span_secs);
            let w = plan_windows(start, end, chunk, "p").unwrap();
            prop_assert_eq!(w.first().unwrap().start, start);
            prop_assert_eq!(w.last().unwrap().end, end);
            for pair in w.windows(2) {
                prop_assert_eq!(pair[0].end, pair[1].start);
            }
            for win in &w {
                prop_assert!(win.start < win.end);
                prop_assert!(win.end - win.start <= Duration::days(i64::from(chunk)));
            }
            let mut labels: Vec<_> = w.iter().map(|w| w.label.clone()).collect();
            labels.sort();
            labels.dedup();
            prop_assert_eq!(labels.len(), w.len());
        }
    }
}
