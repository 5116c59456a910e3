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
        let pages: u64 = self.streams.iter().map(|s| s.stream.expected / u64::from(self.page_size.max(1)) + 1).sum();
        // A stream of more than a page closes with a count unless it may trust the plan's.
        let closing = self
            .streams
            .iter()
            .filter(|s| s.stream.expected >= u64::from(self.page_size) && (s.open || !self.field.only_moves_forward()))
            .count() as u64;
        let requests = self.count_requests + pages + closing;
        Estimate {
            entity: self.entity.slug().to_string(),
            windows: self.windows.len(),
            records: self.records,
            streams: self.streams.iter().map(|s| StreamEstimate { start: s.stream.start, end: s.stream.end, records: s.stream.expected, windows: s.windows.len() }).collect(),
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
