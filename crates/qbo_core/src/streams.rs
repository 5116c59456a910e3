//! Plan by the calendar, read by the data.
//!
//! Windows are the user's unit: labels, log lines, re-runs, the `extract_window_*` lineage.
//! They are not the unit of reading: a window costs at least one request whatever it holds,
//! so 4,018 daily windows would cost 4,018 requests for any amount of data, and every read is
//! metered by Intuit. The engine reads *streams* instead: runs of consecutive windows (or, for a
//! dense window, a part of one) read as one keyset pass, each record then attributed to the
//! window its filter timestamp falls in.
//!
//! A plan counts first: one `SELECT COUNT(*)` over the whole range says how many pages the
//! data needs. Small data is one stream. Larger data is cut into a few streams of about equal
//! size, so that several can be read at once and keep the realm busy: each cut costs one or
//! two counts of the stretch before it (the count after it is the difference). An empty range
//! costs that one count and nothing else.

use std::future::Future;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::window::Window;

/// Pages of data one more stream must bring before it is worth its cost: a cut costs up to
/// two counts and its stream ends on a short page, about 3 requests, and 3 in 80 pages keeps
/// the whole plan within 5% of the pages the data needs (plus its first count).
pub const PAGES_PER_EXTRA_STREAM: u64 = 80;

/// A time range read as one keyset pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Records in the range when the plan counted (for a stream after a cut: the count of
    /// the stretch minus the count before the cut, so an edit in between can make it off by
    /// a few; it sizes the work and lets a read that finds exactly this many skip its
    /// closing count, see [`StreamPlan`]).
    pub expected: u64,
}

impl Stream {
    /// Page requests reading it takes at `page_size`: its full pages and its last, short one (a
    /// stream of exactly full pages needs one more, empty page to know it ended).
    pub fn pages(&self, page_size: u32) -> u64 {
        self.expected / u64::from(page_size.max(1)) + 1
    }
}

/// What a plan found and decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPlan {
    /// Records in the whole range when it was counted.
    pub records: u64,
    /// The streams, in time order, tiling the range (none when it is empty).
    pub streams: Vec<Stream>,
    /// COUNT requests the plan spent.
    pub count_requests: u32,
}

impl StreamPlan {
    /// Page requests the plan's streams need at `page_size` (see [`Stream::pages`]).
    pub fn page_requests(&self, page_size: u32) -> u64 {
        self.streams.iter().map(|s| s.pages(page_size)).sum()
    }
}

/// Counts the records whose filter value lies in `[start, end)`.
pub trait RangeCounter {
    fn count(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// How many streams `records` deserve at `page_size`, at most `max_streams`.
pub fn streams_wanted(records: u64, page_size: u32, max_streams: usize) -> usize {
    let pages = records.div_ceil(u64::from(page_size.max(1)));
    let wanted = 1 + pages.saturating_sub(1) / PAGES_PER_EXTRA_STREAM;
    usize::try_from(wanted).unwrap_or(usize::MAX).clamp(1, max_streams.max(1))
}

/// Plans the streams that read `windows` (consecutive, tiling their range) at `page_size`,
/// with at most `max_streams` of them.
pub async fn plan_streams<C: RangeCounter>(counter: &C, windows: &[Window], page_size: u32, max_streams: usize) -> Result<StreamPlan, Error> {
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Ok(StreamPlan { records: 0, streams: Vec::new(), count_requests: 0 });
    };
    let mut planner = Planner { counter, boundaries: windows.iter().skip(1).map(|w| w.start).collect(), count_requests: 0 };
    let records = planner.count(first.start, last.end).await?;
    let streams = if records == 0 {
        Vec::new()
    } else {
        let parts = streams_wanted(records, page_size, max_streams);
        planner.split(first.start, last.end, records, parts).await?
    };
    Ok(StreamPlan { records, streams, count_requests: planner.count_requests })
}

struct Planner<'a, C> {
    counter: &'a C,
    /// Where one window ends and the next begins: the preferred places to cut.
    boundaries: Vec<DateTime<Utc>>,
    count_requests: u32,
}

impl<C: RangeCounter> Planner<'_, C> {
    async fn count(&mut self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, Error> {
        self.count_requests += 1;
        self.counter.count(start, end).await
    }

    /// Cuts `[lo, hi)`, holding `n` records, into `parts` streams of about `n / parts` each.
    async fn split(&mut self, lo: DateTime<Utc>, hi: DateTime<Utc>, n: u64, parts: usize) -> Result<Vec<Stream>, Error> {
        let mut out = Vec::with_capacity(parts);
        // Iterative: (lo, hi, n, parts) pieces still to cut, leftmost first.
        let mut todo = vec![(lo, hi, n, parts)];
        while let Some((lo, hi, n, parts)) = todo.pop() {
            if parts <= 1 || n == 0 {
                out.push(Stream { start: lo, end: hi, expected: n });
                continue;
            }
            let left_parts = parts / 2;
            let want = n * left_parts as u64 / parts as u64;
            match self.cut(lo, hi, n, want, n / parts as u64).await? {
                Some((cut, left)) => {
                    todo.push((cut, hi, n.saturating_sub(left), parts - left_parts));
                    todo.push((lo, cut, left, left_parts));
                }
                None => out.push(Stream { start: lo, end: hi, expected: n }),
            }
        }
        Ok(out)
    }

    /// An instant in `(lo, hi)` with about `want` of the `n` records before it, and the count
    /// before it; None when no instant can cut the range (under two seconds long).
    async fn cut(&mut self, lo: DateTime<Utc>, hi: DateTime<Utc>, n: u64, want: u64, share: u64) -> Result<Option<(DateTime<Utc>, u64)>, Error> {
        // First guess: records spread evenly over the range.
        let Some(cut) = self.place(lo, hi, between(lo, hi, want, n)) else {
            return Ok(None);
        };
        let left = self.count(lo, cut).await?;
        if good_enough(left, want, share) {
            return Ok(Some((cut, left)));
        }
        // One correction: evenly spread within the side the first guess got wrong.
        let guess = if left < want { between(cut, hi, want - left, n - left) } else { between(lo, cut, want, left) };
        let Some(second) = self.place(lo, hi, guess).filter(|c| *c != cut) else {
            return Ok(Some((cut, left)));
        };
        let second_left = self.count(lo, second).await?;
        let better = if want.abs_diff(second_left) < want.abs_diff(left) { (second, second_left) } else { (cut, left) };
        Ok(Some(better))
    }

    /// `guess` moved onto the nearest window boundary when one is close (a window read whole
    /// by one stream is simpler to follow), else onto a whole second; None when nothing lies
    /// strictly inside `(lo, hi)`.
    fn place(&self, lo: DateTime<Utc>, hi: DateTime<Utc>, guess: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let near = (hi - lo) / 10;
        let boundary = self.boundaries.iter().copied().filter(|b| lo < *b && *b < hi).min_by_key(|b| (*b - guess).abs()).filter(|b| (*b - guess).abs() <= near);
        boundary.or_else(|| {
            let second = guess.duration_trunc(Duration::seconds(1)).ok()?;
            (lo < second && second < hi).then_some(second)
        })
    }
}

/// The instant `part / whole` of the way from `from` to `to`.
fn between(from: DateTime<Utc>, to: DateTime<Utc>, part: u64, whole: u64) -> DateTime<Utc> {
    let span = i128::from((to - from).num_milliseconds());
    let offset = span * i128::from(part.min(whole)) / i128::from(whole.max(1));
    from + Duration::milliseconds(i64::try_from(offset).unwrap_or(i64::MAX))
}

/// Within a quarter of one stream's share of where we wanted to cut. An uneven cut costs wall
/// time (one stream reads longer), never a request.
fn good_enough(left: u64, want: u64, share: u64) -> bool {
    left.abs_diff(want) * 4 <= share
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use chrono::TimeZone;

    use super::*;
    use crate::window::plan_windows;

    /// Records at the given instants; counts them exactly and counts its own requests.
    struct Fake {
        at: Vec<DateTime<Utc>>,
        requests: AtomicU32,
    }

    impl Fake {
        fn new(mut at: Vec<DateTime<Utc>>) -> Self {
            at.sort();
            Fake { at, requests: AtomicU32::new(0) }
        }
    }

    impl RangeCounter for Fake {
        fn count(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> impl Future<Output = Result<u64, Error>> + Send {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let n = self.at.partition_point(|t| *t < end) - self.at.partition_point(|t| *t < start);
            async move { Ok(n as u64) }
        }
    }

    fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    fn spread(n: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let span = (to - from).num_seconds();
        (0..n).map(|i| from + Duration::seconds(span * i as i64 / n as i64)).collect()
    }

    fn tiles(plan: &StreamPlan, from: DateTime<Utc>, to: DateTime<Utc>) {
        assert_eq!(plan.streams.first().map(|s| s.start), Some(from));
        assert_eq!(plan.streams.last().map(|s| s.end), Some(to));
        for pair in plan.streams.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "streams tile the range: {plan:?}");
        }
        assert_eq!(plan.streams.iter().map(|s| s.expected).sum::<u64>(), plan.records);
    }

    #[tokio::test]
    async fn an_empty_range_costs_one_count_and_no_stream() {
        let windows = plan_windows(day(2000, 1, 1), day(2100, 1, 1), 50, "invoice_backfill").unwrap();
        let fake = Fake::new(Vec::new());
        let plan = plan_streams(&fake, &windows, 1000, 4).await.unwrap();
        assert_eq!((plan.records, plan.streams.len(), plan.count_requests), (0, 0, 1));
        assert_eq!(fake.requests.load(Ordering::Relaxed), 1);
        assert_eq!(plan.page_requests(1000), 0);
    }

    #[tokio::test]
    async fn small_data_is_one_stream_over_every_window() {
        let (from, to) = (day(2014, 9, 1), day(2025, 9, 12));
        let windows = plan_windows(from, to, 1, "invoice_backfill").unwrap();
        let fake = Fake::new(spread(12_111, day(2025, 1, 1), day(2025, 9, 12)));
        let plan = plan_streams(&fake, &windows, 1000, 4).await.unwrap();
        assert_eq!(plan.streams, vec![Stream { start: from, end: to, expected: 12_111 }]);
        assert_eq!(plan.count_requests, 1);
        assert_eq!(plan.page_requests(1000), 13, "ceil(12,111 / 1000) pages, whatever the 4,029 windows");
    }

    #[tokio::test]
    async fn large_data_is_cut_into_streams_of_about_equal_size_for_a_few_counts() {
        let (from, to) = (day(2014, 9, 1), day(2025, 9, 12));
        for chunk_days in [1, 50, 3650] {
            let windows = plan_windows(from, to, chunk_days, "invoice_backfill").unwrap();
            // Denser in recent years, as real books are.
            let mut at = spread(40_000, from, day(2020, 1, 1));
            at.extend(spread(160_000, day(2020, 1, 1), to));
            let fake = Fake::new(at);
            let plan = plan_streams(&fake, &windows, 1000, 4).await.unwrap();
            tiles(&plan, from, to);
            assert_eq!(plan.streams.len(), streams_wanted(200_000, 1000, 4), "{chunk_days}: {plan:?}");
            assert_eq!(plan.streams.len(), 3);
            // At most two counts per cut, besides the first.
            assert!(plan.count_requests <= 1 + 2 * 2, "{chunk_days}: {} counts", plan.count_requests);
            let fair = plan.records / plan.streams.len() as u64;
            for s in &plan.streams {
                assert!(s.expected.abs_diff(fair) * 2 <= fair, "{chunk_days}: uneven {plan:?}");
            }
            // Requests stay within 5% of the pages the data needs, plus two.
            let floor = 200_000u64.div_ceil(1000);
            let total = plan.page_requests(1000) + u64::from(plan.count_requests);
            assert!(total * 100 <= floor * 105 + 200, "{chunk_days}: {total} requests for {floor} pages");
            if chunk_days == 1 {
                assert!(plan.streams.iter().all(|s| windows.iter().any(|w| w.start == s.start)), "cuts on day boundaries: {plan:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_burst_in_one_second_is_never_cut() {
        let (from, to) = (day(2025, 1, 1), day(2025, 1, 2));
        let windows = plan_windows(from, to, 1, "invoice_backfill").unwrap();
        let fake = Fake::new(vec![day(2025, 1, 1) + Duration::hours(3); 300_000]);
        let plan = plan_streams(&fake, &windows, 1000, 4).await.unwrap();
        tiles(&plan, from, to);
        assert!(plan.streams.iter().filter(|s| s.expected > 0).count() == 1, "{plan:?}");
    }

    #[test]
    fn streams_follow_the_pages_the_data_needs() {
        assert_eq!(streams_wanted(0, 1000, 4), 1);
        assert_eq!(streams_wanted(80_000, 1000, 4), 1);
        assert_eq!(streams_wanted(96_460, 1000, 4), 2);
        assert_eq!(streams_wanted(1_000_000, 1000, 4), 4);
        assert_eq!(streams_wanted(1_000_000, 1000, 1), 1);
    }
}
