//! Reading one stream (see [`crate::streams`]) and writing each record into its window.
//!
//! The stream is one keyset pass over its range ([`WindowReader`]); a [`Router`] hands each
//! page's records to the writer of the window their filter timestamp falls in, so every
//! window gets its own batches, lineage and outcome, exactly as if it had been read alone.
//! Records arrive in filter order, so once a page has passed a window's end the window's
//! buffer is written at once: batches of small windows go to the sinks together (the
//! JSON-lines writer commits them as a group) instead of waiting for the stream's end.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::backfill::{conclude, sink_reports, write_alerts, Progress, ReadSpec, ReadStats, WindowReport, WindowStatus};
use crate::budget::Charge;
use crate::client::QboClient;
use crate::error::Error;
use crate::paginate::{FetchedRecord, PageSink, WindowFetch, WindowReader};
use crate::read_plan::ReadPlan;
use crate::sink::Sink;
use crate::stop::StopSignal;
use crate::streams::Stream;
use crate::window::Window;
use crate::writer::WindowWriter;

/// Hands a stream's pages to the writers of the windows it covers.
struct Router<'a> {
    windows: &'a [Window],
    writers: &'a [WindowWriter<'a>],
    spec: &'a ReadSpec,
    /// Budget room reserved for the page being requested.
    reserved: Mutex<Option<Charge>>,
    /// Writers `..flushed_upto` have been handed everything the pass has read so far.
    flushed_upto: Mutex<usize>,
    /// Per window, the error of a failed write: the window fails alone, the stream goes on.
    failed: std::sync::Mutex<Vec<Option<String>>>,
}

impl Router<'_> {
    /// Hands window `index`'s buffer to a write (a failed write fails that window alone).
    async fn flush(&self, index: usize) {
        if self.has_failed(index) {
            return;
        }
        let writer = &self.writers[index];
        let result = {
            let mut state = writer.state.lock().await;
            writer.flush(&mut state).await
        };
        self.check(index, result).await;
    }

    fn has_failed(&self, index: usize) -> bool {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())[index].is_some()
    }

    /// A write's result for window `index`: an error fails that window alone.
    async fn check(&self, index: usize, result: Result<(), Error>) {
        let Err(e) = result else { return };
        let writer = &self.writers[index];
        tracing::error!(target: "qbo_rs", "window {} failed: {e}", writer.window.label);
        self.failed.lock().unwrap_or_else(|p| p.into_inner())[index].get_or_insert(e.to_string());
        writer.abandon().await;
    }
}

impl PageSink for Router<'_> {
    /// Holds room for the next page; without room, every window hands its buffer to a write
    /// first, so the read waits only on what writes give back (see [`crate::budget`]).
    async fn before_fetch(&self) -> Result<(), Error> {
        let mut reserved = self.reserved.lock().await;
        drop(reserved.take());
        let budget = &self.spec.budget;
        let estimate = budget.page_estimate();
        if let Some(charge) = budget.try_reserve(estimate) {
            *reserved = Some(charge);
            return Ok(());
        }
        for index in 0..self.writers.len() {
            self.flush(index).await;
        }
        *reserved = Some(budget.reserve(estimate).await);
        Ok(())
    }

    /// Hands each window's share of the page to its writer.
    async fn accept(&self, records: Vec<FetchedRecord>) -> Result<(), Error> {
        self.spec.budget.note_page(records.iter().map(|r| r.payload.len() as u64).sum());
        let mut charge = self.reserved.lock().await.take();
        let mut groups: Vec<(usize, Vec<FetchedRecord>)> = Vec::new();
        let mut highest = 0usize;
        for record in records {
            let Some(index) = crate::window::window_index(self.windows, record.key_ms) else {
                tracing::warn!(target: "qbo_rs", "record Id {} lies outside the range QBO was asked for; skipped", record.id);
                continue;
            };
            highest = highest.max(index);
            match groups.last_mut() {
                Some((i, group)) if *i == index => group.push(record),
                _ => groups.push((index, vec![record])),
            }
        }
        for (index, group) in groups {
            if self.has_failed(index) {
                continue; // its records go nowhere: the window is re-run as a whole
            }
            let part = charge.take().unwrap_or_else(|| self.spec.budget.empty());
            let result = self.writers[index].push_charged(group, part).await;
            self.check(index, result).await;
        }
        // Windows before the one the pass has reached are complete for this pass: write them.
        let mut flushed = self.flushed_upto.lock().await;
        while *flushed < highest {
            self.flush(*flushed).await;
            *flushed += 1;
        }
        Ok(())
    }
}

/// What reading one stream did: a report per window it covers, in window order.
pub(crate) struct StreamOutcome {
    pub(crate) reports: Vec<WindowReport>,
    pub(crate) fetch: Result<WindowFetch, String>,
}

/// Reads `stream` (covering `windows`, in order) and writes each record into its window.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_stream(
    client: &QboClient,
    sinks: &[Arc<dyn Sink>],
    spec: ReadSpec,
    label: &str,
    stream: &Stream,
    windows: &[Window],
    ingested_at: DateTime<Utc>,
    closed: bool,
    progress: Option<&Arc<dyn Progress>>,
    stop: &StopSignal,
) -> StreamOutcome {
    let started = Instant::now();
    let writers: Vec<WindowWriter<'_>> = windows
        .iter()
        .map(|window| {
            WindowWriter::new(sinks, spec.entity, client.realm_id(), window, spec.page_size, ingested_at, progress.cloned(), Arc::clone(&spec.budget))
        })
        .collect();
    let router = Router {
        windows,
        writers: &writers,
        spec: &spec,
        reserved: Mutex::new(None),
        flushed_upto: Mutex::new(0),
        failed: std::sync::Mutex::new(vec![None; windows.len()]),
    };
    let range = Window { start: stream.start, end: stream.end, label: label.to_string() };
    let mut reader = WindowReader::new(client, spec.entity, spec.field, &range, spec.page_size, &router).counting_windows(windows);
    // The plan's count may stand for the closing one only where nothing can enter the range
    // during the read: records move only forward, to "now", when LastUpdatedTime or
    // CreateTime is the filter, and the range ends before the read began.
    if closed && spec.field.only_moves_forward() {
        reader = reader.expecting(stream.expected);
    }
    // A stop drops the request in flight; the batches being written are awaited below, as
    // after any failed read, so that the report counts what the sinks hold.
    let read = tokio::select! {
        biased;
        () = stop.stopped() => Err(Error::Cancelled),
        read = reader.run() => read,
    };
    let held = reader.held_per_window();
    // After a failed read, the windows the pass had gone past are complete all the same, up to
    // the first tie group nothing has proven yet.
    let complete = if read.is_ok() {
        writers.len()
    } else {
        let passed = *router.flushed_upto.lock().await;
        match reader.first_unproven_tie().and_then(|key| crate::window::window_index(windows, key.timestamp_millis())) {
            Some(unproven) => passed.min(unproven),
            None => passed,
        }
    };
    for (index, writer) in writers.iter().enumerate() {
        if index < complete {
            let result = {
                let mut state = writer.state.lock().await;
                writer.finish(&mut state).await
            };
            router.check(index, result).await;
        } else {
            writer.abandon().await;
        }
    }
    let window_errors = router.failed.into_inner().unwrap_or_else(|p| p.into_inner());
    // Windows from `complete` on fail with the stream's error.
    let (fetch, complete) = match read {
        Ok(fetch) => match fetch.server_count {
            // Read again once already (see WindowReader::run) and still short: which window
            // misses records is unknown, so every one of them fails (what was read is written).
            Some(server) if server > fetch.records => (Err(format!("QBO counts {server} records in the stream but only {} were fetched", fetch.records)), 0),
            _ => (Ok(fetch), complete),
        },
        Err(Error::Cancelled) => (Err(INTERRUPTED.to_string()), complete),
        Err(e) => (Err(e.to_string()), complete),
    };
    let duration = started.elapsed();
    let reports = writers
        .into_iter()
        .zip(held)
        .zip(window_errors)
        .enumerate()
        .map(|(index, ((writer, rows_fetched), window_error))| {
            let state = writer.state.into_inner();
            let mut report = WindowReport {
                label: writer.window.label.clone(),
                start: writer.window.start,
                end: writer.window.end,
                status: WindowStatus::Ok,
                rows_fetched,
                rows_emitted: state.emitted,
                sinks: sink_reports(sinks, &state),
                fetch: WindowFetch { records: rows_fetched, ..WindowFetch::default() },
                error: None,
                duration,
            };
            match (&fetch, window_error) {
                (_, Some(e)) => {
                    report.status = WindowStatus::Failed;
                    report.error = Some(e);
                }
                (Err(e), None) if index >= complete => {
                    report.status = WindowStatus::Failed;
                    report.error = Some(format!("its stream ({label}) failed: {e}"));
                }
                _ => {}
            }
            report
        })
        .collect();
    StreamOutcome { reports, fetch }
}

/// Why the windows of a stream cut short by a [`StopSignal`] failed.
const INTERRUPTED: &str = "interrupted before it was read to the end (re-run to finish)";

/// Reads a plan's streams and writes each record into its window; returns one report per
/// window, in order, each validated (the runbook's `Rango …` line, rows written per window).
/// Once `stop` is raised no stream starts or reads further (see [`crate::stop`]).
pub(crate) async fn read_planned(
    client: &QboClient,
    sinks: &[Arc<dyn Sink>],
    spec: &ReadSpec,
    plan: ReadPlan,
    max_streams: usize,
    progress: Option<Arc<dyn Progress>>,
    stop: &StopSignal,
) -> (Vec<WindowReport>, ReadStats) {
    let windows = &plan.windows;
    let mut stats = ReadStats::default();
    let mut reports: Vec<Option<WindowReport>> = vec![None; windows.len()];
    for (run, error) in &plan.uncounted {
        for index in run.clone() {
            reports[index] = Some(failed_report(&windows[index], sinks, &format!("counting its records failed: {error}")));
        }
    }
    let work: Vec<(Stream, usize, usize, bool)> = plan.streams.iter().map(|p| (p.stream.clone(), p.windows.start, p.windows.end, p.open)).collect();
    // Ranges still open are read last: a record edited meanwhile moves to "now", into them.
    let (closed, open): (Vec<_>, Vec<_>) = work.into_iter().partition(|(_, _, _, open)| !open);
    for phase in [closed, open] {
        let gate = Arc::new(tokio::sync::Semaphore::new(max_streams.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (stream, first, last, open) in phase {
            let (client, sinks, spec, gate, progress, stop) = (client.clone(), sinks.to_vec(), spec.clone(), Arc::clone(&gate), progress.clone(), stop.clone());
            let covered = windows[first..last].to_vec();
            tasks.spawn(async move {
                let _slot = gate.acquire_owned().await.expect("gate never closed");
                let label = format!("{}_stream_{}", spec.entity.slug(), crate::time::format_utc(stream.start));
                let outcome = run_stream(&client, &sinks, spec, &label, &stream, &covered, Utc::now(), !open, progress.as_ref(), &stop).await;
                (first, outcome)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (first, outcome) = match done {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(target: "qbo_rs", "a stream task crashed: {e}");
                    continue;
                }
            };
            match &outcome.fetch {
                Ok(fetch) => {
                    stats.tie_groups += u64::from(fetch.tie_groups);
                    stats.tie_requests += u64::from(fetch.tie_requests);
                    stats.rereads += u64::from(fetch.rereads);
                }
                // An interruption is the user's doing: the run's end says what it left.
                Err(e) if e == INTERRUPTED => {}
                Err(e) => tracing::error!(target: "qbo_rs", "stream from {} failed: {e}", windows[first].start_text()),
            }
            for (offset, report) in outcome.reports.into_iter().enumerate() {
                let slot = &mut reports[first + offset];
                *slot = Some(match slot.take() {
                    None => report,
                    Some(earlier) => merge(earlier, report),
                });
            }
        }
    }
    let mut empty = Vec::new();
    let reports: Vec<WindowReport> = reports
        .into_iter()
        .zip(windows)
        .map(|(report, window)| {
            let mut report = report.unwrap_or_else(|| empty_report(window, sinks));
            if report.status == WindowStatus::Ok {
                if report.rows_fetched == 0 {
                    empty.push(window);
                }
                crate::backfill::log_rango(&report);
                let alerts = write_alerts(&report);
                conclude(&mut report, alerts);
            }
            if let Some(p) = &progress {
                p.on_window_done(&report);
            }
            report
        })
        .collect();
    if !empty.is_empty() {
        tracing::warn!(target: "qbo_rs", "{} window(s) returned 0 rows: {}; confirm they are periods without activity",
            empty.len(), crate::window::ranges_text(&empty, 12));
    }
    (reports, stats)
}

/// A window two streams shared (a dense window cut in two): both halves' figures.
fn merge(mut a: WindowReport, b: WindowReport) -> WindowReport {
    a.rows_fetched += b.rows_fetched;
    a.rows_emitted += b.rows_emitted;
    a.fetch.records += b.fetch.records;
    for (sa, sb) in a.sinks.iter_mut().zip(&b.sinks) {
        sa.outcome.add(sb.outcome);
    }
    a.duration = a.duration.max(b.duration);
    if b.status == WindowStatus::Failed {
        a.status = WindowStatus::Failed;
        a.error = b.error.or(a.error);
    }
    a
}

fn empty_report(window: &Window, sinks: &[Arc<dyn Sink>]) -> WindowReport {
    WindowReport {
        label: window.label.clone(),
        start: window.start,
        end: window.end,
        status: WindowStatus::Ok,
        rows_fetched: 0,
        rows_emitted: 0,
        sinks: sink_reports(sinks, &Default::default()),
        fetch: WindowFetch::default(),
        error: None,
        duration: std::time::Duration::ZERO,
    }
}

fn failed_report(window: &Window, sinks: &[Arc<dyn Sink>], error: &str) -> WindowReport {
    WindowReport { status: WindowStatus::Failed, error: Some(error.to_string()), ..empty_report(window, sinks) }
}
