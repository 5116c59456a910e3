//! A backfill's reads, planned before any page is requested: the windows grouped into
//! consecutive runs, each run counted and cut into streams (see [`crate::streams`]). The plan
//! is what the estimate describes and what the backfill then reads, so the counts are spent
//! once, and a plan over the caller's request budget is refused before its first page.

use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::query;
use crate::streams::{plan_streams, RangeCounter, Stream, StreamPlan};
use crate::window::Window;

/// How far before the read's start a range must end for nothing to enter it during the read
/// (QuickBooks' clock and ours may differ a little).
const CLOCK_MARGIN: chrono::Duration = chrono::Duration::minutes(10);

/// Counts a range of one entity by one filter field with a `SELECT COUNT(*)`.
pub struct QboCounter<'a> {
    pub client: &'a QboClient,
    pub entity: Entity,
    pub field: FilterField,
}

impl RangeCounter for QboCounter<'_> {
    fn count(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> impl std::future::Future<Output = Result<u64, Error>> + Send {
        let statement = query::count_statement(self.entity, self.field, start, end);
        async move { self.client.count(self.entity, &statement).await }
    }
}

/// One stream to read and the windows it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStream {
    pub stream: Stream,
    /// Indices into the plan's windows.
    pub windows: Range<usize>,
    /// The range reaches into the last minutes: records edited during the run land in it, so
    /// it is read after the others and always closes with a count.
    pub open: bool,
}

/// The reads of a backfill.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub entity: Entity,
    pub field: FilterField,
    pub page_size: u32,
    pub windows: Vec<Window>,
    pub streams: Vec<PlannedStream>,
    /// Runs of windows whose count failed, with the error: they fail without a read.
    pub uncounted: Vec<(Range<usize>, String)>,
    pub records: u64,
    pub count_requests: u64,
}

impl ReadPlan {
    /// Counts `windows` (sorted) run by run and cuts each run into at most `max_streams`
    /// streams; no page is requested.
    pub async fn make(client: &QboClient, entity: Entity, field: FilterField, page_size: u32, windows: Vec<Window>, max_streams: usize) -> ReadPlan {
        let began = Utc::now();
        let counter = QboCounter { client, entity, field };
        let mut plan = ReadPlan { entity, field, page_size, windows: Vec::new(), streams: Vec::new(), uncounted: Vec::new(), records: 0, count_requests: 0 };
        let mut start = 0;
        while start < windows.len() {
            let mut end = start + 1;
            while end < windows.len() && windows[end].start == windows[end - 1].end {
                end += 1;
            }
            let run = &windows[start..end];
            match plan_streams(&counter, run, page_size, max_streams).await {
                Ok(StreamPlan { records, streams, count_requests }) => {
                    plan.records += records;
                    plan.count_requests += u64::from(count_requests);
                    for stream in streams {
                        let first = start + run.partition_point(|w| w.end <= stream.start);
                        let last = start + run.partition_point(|w| w.start < stream.end);
                        let open = stream.end > began - CLOCK_MARGIN;
                        plan.streams.push(PlannedStream { stream, windows: first..last, open });
                    }
                }
                Err(e) => {
                    tracing::error!(target: "qbo_rs", "counting {} window(s) from {} failed: {e}", run.len(), run[0].start_text());
                    // A failed count may still have spent requests: they show in the report.
                    plan.uncounted.push((start..end, e.to_string()));
                }
            }
            start = end;
        }
        plan.windows = windows;
        plan
    }

    /// What reading this plan will cost, with what planning it cost already.
    pub fn estimate(&self, requests_per_minute: u32) -> Estimate {
        let pages: u64 = self.streams.iter().map(|s| s.stream.pages(self.page_size)).sum();
        // A stream of more than a page closes with a count unless it may trust the plan's.
        let closing =
            self.streams.iter().filter(|s| s.stream.expected >= u64::from(self.page_size) && (s.open || !self.field.only_moves_forward())).count() as u64;
        let requests = self.count_requests + pages + closing;
        Estimate {
            entity: self.entity.slug().to_string(),
            windows: self.windows.len(),
            records: self.records,
            streams: self
                .streams
                .iter()
                .map(|s| StreamEstimate { start: s.stream.start, end: s.stream.end, records: s.stream.expected, windows: s.windows.len() })
                .collect(),
            count_requests: self.count_requests,
            page_requests: pages,
            closing_counts: closing,
            requests,
            minutes: requests as f64 / f64::from(requests_per_minute.max(1)),
            uncounted_windows: self.uncounted.iter().map(|(r, _)| r.len()).sum(),
        }
    }
}

/// A stream as the estimate shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEstimate {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub records: u64,
    pub windows: usize,
}

/// What a backfill will read and spend, known from counts alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub entity: String,
    pub windows: usize,
    pub records: u64,
    pub streams: Vec<StreamEstimate>,
    /// COUNT requests the plan spent already (part of `requests`).
    pub count_requests: u64,
    /// Page requests the streams need: each stream's full pages and its last, short one.
    pub page_requests: u64,
    /// Counts that close streams which cannot trust the plan's (ranges still open to edits).
    pub closing_counts: u64,
    /// Every request the backfill makes, the plan's counts included, retries and token
    /// refreshes aside.
    pub requests: u64,
    /// `requests` at the realm's pace.
    pub minutes: f64,
    /// Windows whose count failed (they fail; not in `records`).
    pub uncounted_windows: usize,
}

impl Estimate {
    /// The refusal of a plan over `max_requests`, stating the estimate.
    pub fn over(&self, max_requests: u64) -> Option<Error> {
        (self.requests > max_requests).then(|| Error::OverBudget {
            message: format!(
                "this backfill needs about {} request(s) ({} record(s) in {} window(s): {} count(s) spent, {} page(s) and {} closing count(s) to come, ~{:.1} min at the realm's pace), more than max_requests={max_requests}; nothing was read or written. Raise max_requests, narrow the range, or keep page_size at 1000",
                self.requests, self.records, self.windows, self.count_requests, self.page_requests, self.closing_counts, self.minutes
            ),
            estimate: Box::new(self.clone()),
        })
    }
}

/// How many shares a plan is cut into at most (Mage children: each costs a worker process).
pub const DEFAULT_MAX_SHARES: usize = 4;

/// How a plan is shared out between workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOptions {
    pub max_shares: usize,
}

impl Default for ShareOptions {
    fn default() -> Self {
        ShareOptions { max_shares: DEFAULT_MAX_SHARES }
    }
}

impl crate::options::OptionSet for ShareOptions {
    const NAMES: &'static [&'static str] = &["max_shares"];

    fn set(&mut self, name: &str, value: &crate::options::OptionValue) -> Result<(), Error> {
        match name {
            "max_shares" => {
                self.max_shares = value.whole(name)?;
                if self.max_shares == 0 {
                    return Err(Error::config("max_shares must be at least 1"));
                }
            }
            _ => return Err(crate::options::unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// A part of a plan that one worker reads and writes on its own (a Mage child block run):
/// consecutive windows and the streams that cover them, with the plan's counts, so the
/// worker counts nothing again. Serialisable: it travels to the worker as a block output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadShare {
    pub entity: Entity,
    pub field: FilterField,
    pub page_size: u32,
    /// A file-safe name: the first window's label, `..` and the last window's start.
    pub label: String,
    /// 0-based place among the plan's `of` shares.
    pub index: usize,
    pub of: usize,
    pub windows: Vec<Window>,
    /// Indices into this share's `windows`.
    pub streams: Vec<PlannedStream>,
    /// Records the plan counted in these windows.
    pub records: u64,
}

impl ReadShare {
    /// Page requests this share's streams need.
    pub fn page_requests(&self) -> u64 {
        self.streams.iter().map(|s| s.stream.pages(self.page_size)).sum()
    }

    /// The reads of the windows not in `done`, with the plan's counts where a stream is read
    /// whole. A stream that covers done windows too is narrowed to the others, one stream per
    /// run of them; its count no longer applies, so it closes with a count of its own.
    pub fn remaining(&self, done: &dyn Fn(&Window) -> bool) -> ReadPlan {
        let keep: Vec<bool> = self.windows.iter().map(|w| !done(w)).collect();
        let mut index_of = vec![usize::MAX; self.windows.len()];
        let mut windows = Vec::new();
        for (i, w) in self.windows.iter().enumerate() {
            if keep[i] {
                index_of[i] = windows.len();
                windows.push(w.clone());
            }
        }
        let mut streams = Vec::new();
        for planned in &self.streams {
            let range = planned.windows.clone();
            if range.clone().all(|i| keep[i]) {
                let windows = index_of[range.start]..index_of[range.end - 1] + 1;
                streams.push(PlannedStream { windows, ..planned.clone() });
                continue;
            }
            let mut i = range.start;
            while i < range.end {
                if !keep[i] {
                    i += 1;
                    continue;
                }
                let first = i;
                while i < range.end && keep[i] {
                    i += 1;
                }
                let start = self.windows[first].start.max(planned.stream.start);
                let end = self.windows[i - 1].end.min(planned.stream.end);
                let stream = Stream { start, end, expected: 0 };
                streams.push(PlannedStream { stream, windows: index_of[first]..index_of[i - 1] + 1, open: true });
            }
        }
        let records = streams.iter().map(|s| s.stream.expected).sum();
        ReadPlan { entity: self.entity, field: self.field, page_size: self.page_size, windows, streams, uncounted: Vec::new(), records, count_requests: 0 }
    }
}

impl ReadPlan {
    /// Cuts the plan into at most `max_shares` shares of about equal work (pages), one per
    /// stream at most, so small data is one share; `max_shares` raised past the default to the
    /// number of windows or more gives one share per window. A share ends where a window ends and no
    /// stream goes on; a plan whose counts failed cannot be shared (its reads are unknown).
    pub fn shares(&self, max_shares: usize) -> Result<Vec<ReadShare>, Error> {
        if let Some((run, error)) = self.uncounted.first() {
            return Err(Error::Server {
                message: format!(
                    "counting {} window(s) from {} failed ({error}); nothing was read: run again",
                    run.len(),
                    self.windows[run.start].start_text()
                ),
                status: None,
                intuit_tid: None,
                attempts: 1,
            });
        }
        let n = self.windows.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Raised past the default to cover every window: a deliberate request for a child per
        // window. At the default, a plan of a few windows is still shared out by its data.
        if max_shares >= n && max_shares > DEFAULT_MAX_SHARES {
            return Ok(self.share_per_window());
        }
        let pages = |s: &PlannedStream| s.stream.pages(self.page_size);
        // Pages of the streams starting at each window, and where a share may end.
        let mut weight = vec![0u64; n];
        let mut cuttable = vec![true; n + 1];
        for s in &self.streams {
            weight[s.windows.start] += pages(s);
            cuttable[s.windows.start + 1..s.windows.end.max(s.windows.start + 1)].fill(false);
        }
        let mut before = vec![0u64; n + 1]; // pages of the streams starting before window `i`
        for i in 0..n {
            before[i + 1] = before[i] + weight[i];
        }
        let total = before[n];
        let wanted = max_shares.max(1).min(self.streams.len().max(1)) as u64;
        let mut cuts = vec![0usize];
        for g in 1..wanted {
            let target = total * g / wanted;
            let last = cuts[cuts.len() - 1];
            // The place nearest the target where every share still reads something.
            let next = (last + 1..n).filter(|&c| cuttable[c] && before[c] > before[last] && before[c] < total).min_by_key(|&c| before[c].abs_diff(target));
            match next {
                Some(c) => cuts.push(c),
                None => break,
            }
        }
        cuts.push(n);
        let of = cuts.len() - 1;
        let mut shares = Vec::with_capacity(of);
        for (index, pair) in cuts.windows(2).enumerate() {
            let (lo, hi) = (pair[0], pair[1]);
            let windows = self.windows[lo..hi].to_vec();
            let streams: Vec<PlannedStream> = self
                .streams
                .iter()
                .filter(|s| lo <= s.windows.start && s.windows.end <= hi)
                .map(|s| PlannedStream { windows: s.windows.start - lo..s.windows.end - lo, ..s.clone() })
                .collect();
            let records = streams.iter().map(|s| s.stream.expected).sum();
            let label =
                if windows.len() == 1 { windows[0].label.clone() } else { format!("{}..{}", windows[0].label, windows[windows.len() - 1].start_text()) };
            shares.push(ReadShare { entity: self.entity, field: self.field, page_size: self.page_size, label, index, of, windows, streams, records });
        }
        Ok(shares)
    }

    /// One share per window, as asked for by as many shares as windows (a child per window):
    /// a stream over several windows is cut at their bounds, and each part, whose count the plan
    /// did not take, closes with a count of its own. A window the counts found empty reads nothing.
    fn share_per_window(&self) -> Vec<ReadShare> {
        let of = self.windows.len();
        self.windows
            .iter()
            .enumerate()
            .map(|(index, window)| {
                let streams: Vec<PlannedStream> = self
                    .streams
                    .iter()
                    .filter(|s| s.windows.contains(&index))
                    .map(|s| {
                        if s.windows == (index..index + 1) {
                            PlannedStream { windows: 0..1, ..s.clone() }
                        } else {
                            let stream = Stream { start: s.stream.start.max(window.start), end: s.stream.end.min(window.end), expected: 0 };
                            PlannedStream { stream, windows: 0..1, open: true }
                        }
                    })
                    .collect();
                let records = streams.iter().map(|s| s.stream.expected).sum();
                ReadShare {
                    entity: self.entity,
                    field: self.field,
                    page_size: self.page_size,
                    label: window.label.clone(),
                    index,
                    of,
                    windows: vec![window.clone()],
                    streams,
                    records,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::window::plan_windows;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::days(i64::from(d))
    }

    /// A plan over 30 daily windows with streams `(first window, last window + 1, records)`.
    fn plan(streams: &[(usize, usize, u64)]) -> ReadPlan {
        let windows = plan_windows(day(0), day(30), 1, "invoice_backfill").unwrap();
        let streams = streams
            .iter()
            .map(|&(a, b, n)| PlannedStream { stream: Stream { start: windows[a].start, end: windows[b - 1].end, expected: n }, windows: a..b, open: false })
            .collect();
        ReadPlan {
            entity: Entity::Invoice,
            field: FilterField::LastUpdatedTime,
            page_size: 1000,
            windows,
            streams,
            uncounted: Vec::new(),
            records: 0,
            count_requests: 1,
        }
    }

    #[test]
    fn shares_tile_the_windows_and_balance_the_pages() {
        let plan = plan(&[(0, 8, 40_000), (8, 15, 40_000), (15, 22, 40_000), (22, 30, 40_000)]);
        let shares = plan.shares(2).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares.iter().map(|s| s.windows.len()).sum::<usize>(), 30);
        assert_eq!(shares[0].windows.last().unwrap().end, shares[1].windows[0].start);
        assert_eq!((shares[0].records, shares[1].records), (80_000, 80_000));
        assert_eq!(shares[1].streams[0].windows, 0..7, "stream indices are the share's own");
        assert_eq!(shares[0].label, "invoice_backfill_2025-01-01..2025-01-15");
        assert_eq!((shares[1].index, shares[1].of), (1, 2));
    }

    #[test]
    fn small_data_is_one_share_and_empty_data_one_share_without_streams() {
        assert_eq!(plan(&[(0, 30, 300)]).shares(4).unwrap().len(), 1);
        let empty = plan(&[]).shares(4).unwrap();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].streams.is_empty());
        assert_eq!(empty[0].windows.len(), 30);
    }

    #[test]
    fn a_window_two_streams_share_is_never_cut_between_shares() {
        // Streams 1 and 2 both cover window 10 (a dense day cut in two).
        let plan = plan(&[(0, 11, 50_000), (10, 11, 50_000), (10, 30, 50_000)]);
        for max in 1..=4 {
            for share in plan.shares(max).unwrap() {
                for s in &share.streams {
                    assert!(s.windows.end <= share.windows.len());
                }
                let streams: u64 = share.streams.iter().map(|s| s.stream.expected).sum();
                assert_eq!(streams, share.records);
            }
            let total: u64 = plan.shares(max).unwrap().iter().map(|s| s.records).sum();
            assert_eq!(total, 150_000, "every stream in exactly one share (max {max})");
        }
    }

    #[test]
    fn as_many_shares_as_windows_is_a_share_per_window() {
        let plan = plan(&[(0, 10, 5_000), (10, 11, 3_000), (10, 30, 5_000)]);
        let shares = plan.shares(30).unwrap();
        assert_eq!(shares.len(), 30);
        assert!(shares.iter().all(|s| s.windows.len() == 1 && s.of == 30 && s.label == s.windows[0].label));
        // A stream over several windows is cut at their bounds and closes with its own count.
        assert_eq!(shares[3].streams.len(), 1);
        assert!(shares[3].streams[0].open && shares[3].streams[0].stream.start == day(3) && shares[3].streams[0].stream.end == day(4));
        // The dense window read by two streams keeps both parts.
        assert_eq!(shares[10].streams.len(), 2);
        assert_eq!(shares[10].records, 3_000, "the stream inside the window keeps the plan's count");
    }

    #[test]
    fn a_failed_count_cannot_be_shared() {
        let mut p = plan(&[(0, 30, 300)]);
        p.uncounted.push((0..30, "boom".into()));
        assert!(p.shares(4).is_err());
    }

    #[test]
    fn what_remains_of_a_share_reads_only_windows_not_done() {
        let share = plan(&[(0, 10, 5_000), (10, 30, 5_000)]).shares(1).unwrap().remove(0);
        let all = share.remaining(&|_| false);
        assert_eq!((all.windows.len(), all.streams.len(), all.records), (30, 2, 10_000));
        // Windows 3..5 and the whole second stream are done.
        let rest = share.remaining(&|w| (day(3)..day(5)).contains(&w.start) || w.start >= day(10));
        assert_eq!(rest.windows.len(), 8);
        assert_eq!(rest.streams.len(), 2, "the first stream narrowed around the done windows");
        assert_eq!((rest.streams[0].stream.start, rest.streams[0].stream.end), (day(0), day(3)));
        assert_eq!((rest.streams[1].stream.start, rest.streams[1].stream.end), (day(5), day(10)));
        assert_eq!(rest.streams[1].windows, 3..8);
        assert!(rest.streams.iter().all(|s| s.open), "narrowed streams close with their own count");
    }
}
