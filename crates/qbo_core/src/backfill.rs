//! plan → fetch → write → validate, window by window, several windows at a time under the
//! realm's limiter. A failing window fails alone (circuit breaker after the retries) and
//! leaves what is already written untouched; the report says which windows to re-run.
//! The log lines the runbook greps for are emitted here, verbatim.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::budget::{MemoryBudget, DEFAULT_MAX_BUFFER_MB};
use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::options::{unknown_option, OptionSet, OptionValue};
use crate::query::MAX_PAGE_SIZE;
use crate::read_plan::{Estimate, ReadPlan};
use crate::sink::Sink;
use crate::stop::StopSignal;
use crate::window::{plan_windows, Window};

/// QuickBooks' maximum: every request is metered, so the fewest requests are the cheapest.
pub const DEFAULT_PAGE_SIZE: u32 = MAX_PAGE_SIZE;
pub const DEFAULT_CHUNK_DAYS: u32 = 50;
pub const DEFAULT_CONCURRENT_WINDOWS: usize = 4;

#[derive(Debug, Clone)]
pub struct BackfillRequest {
    pub entity: Entity,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub chunk_days: u32,
    pub page_size: u32,
    pub filter_field: FilterField,
    pub max_concurrent_windows: usize,
    /// Bytes of fetched records the backfill holds in memory at once, across its windows
    /// (see [`crate::budget`]; the CLI and Python take megabytes).
    pub max_buffer_bytes: u64,
    /// Run exactly these windows instead of planning (re-running one window by label).
    pub only_labels: Option<Vec<String>>,
    /// Refuse, before the first page, a backfill whose estimate needs more requests.
    pub max_requests: Option<u64>,
}

impl BackfillRequest {
    pub fn new(entity: Entity, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        BackfillRequest {
            entity,
            start,
            end,
            chunk_days: DEFAULT_CHUNK_DAYS,
            page_size: DEFAULT_PAGE_SIZE,
            filter_field: FilterField::default(),
            max_concurrent_windows: DEFAULT_CONCURRENT_WINDOWS,
            max_buffer_bytes: u64::from(DEFAULT_MAX_BUFFER_MB) << 20,
            only_labels: None,
            max_requests: None,
        }
    }

    /// Checks everything before any request and returns the windows to run.
    pub fn plan(&self) -> Result<Vec<Window>, Error> {
        validate_page_size(self.page_size)?;
        self.filter_field.check_supported_by(self.entity)?;
        if self.max_concurrent_windows == 0 {
            return Err(Error::config("max_concurrent_windows must be at least 1"));
        }
        if self.max_buffer_bytes == 0 {
            return Err(Error::config("max_buffer_mb must be at least 1 (megabytes of records held in memory)"));
        }
        let windows = plan_windows(self.start, self.end, self.chunk_days, &self.entity.label_prefix())?;
        match &self.only_labels {
            None => Ok(windows),
            Some(labels) => {
                for label in labels {
                    if !windows.iter().any(|w| &w.label == label) {
                        return Err(Error::config(format!(
                            "no window is labelled {label:?} in this plan; run `qbo-rs plan` with the same dates and chunk_days to list the labels"
                        )));
                    }
                }
                Ok(windows.into_iter().filter(|w| labels.contains(&w.label)).collect())
            }
        }
    }
}

impl OptionSet for BackfillRequest {
    const NAMES: &'static [&'static str] = &["chunk_days", "page_size", "filter_field", "max_concurrent_windows", "max_buffer_mb", "windows", "max_requests"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        match name {
            "chunk_days" => self.chunk_days = value.whole(name)?,
            "page_size" => self.page_size = value.whole(name)?,
            "filter_field" => self.filter_field = value.text(name)?.parse()?,
            "max_concurrent_windows" => self.max_concurrent_windows = value.whole(name)?,
            "max_buffer_mb" => self.max_buffer_bytes = u64::from(value.whole::<u32>(name)?) << 20,
            "windows" => self.only_labels = value.labels(name)?,
            "max_requests" => {
                self.max_requests = match value {
                    OptionValue::None => None,
                    other => Some(other.whole(name)?),
                }
            }
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

pub fn validate_page_size(page_size: u32) -> Result<(), Error> {
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(Error::config(format!("page_size must be between 1 and {MAX_PAGE_SIZE} (QBO's MAXRESULTS limit), got {page_size}")));
    }
    Ok(())
}

pub(crate) use crate::report::{conclude, log_rango, sink_reports, write_alerts};
pub use crate::report::{BackfillReport, ReadStats, SinkReport, WindowReport, WindowStatus};
pub(crate) use crate::window_run::{run_window, ReadSpec};

/// Hooks for a progress bar; every method has a no-op default.
pub trait Progress: Send + Sync {
    fn on_plan(&self, _windows: &[Window]) {}
    /// The plan is counted: what the read will cost.
    fn on_estimate(&self, _estimate: &Estimate) {}
    /// `rows` records of `window` were fetched (they are not written yet).
    fn on_rows(&self, _window: &str, _rows: u64) {}
    /// A batch of `window` is now in every sink: `rows` records committed (what the report's
    /// `rows_written` adds up, and what an interrupted run leaves behind).
    fn on_committed(&self, _window: &str, _rows: u64) {}
    fn on_window_done(&self, _report: &WindowReport) {}
}

pub async fn run_backfill(
    client: &QboClient,
    sinks: Vec<Arc<dyn Sink>>,
    request: &BackfillRequest,
    progress: Option<Arc<dyn Progress>>,
) -> Result<BackfillReport, Error> {
    run_backfill_until(client, sinks, request, progress, &StopSignal::new()).await
}

/// [`run_backfill`] that ends early and cleanly once `stop` is raised: nothing more is read,
/// the batches being written are written, and the report counts exactly what the sinks hold
/// (the windows not finished fail as interrupted; a re-run finishes them). Raised while the
/// plan is being counted, it ends the run with [`Error::Cancelled`], nothing written.
pub async fn run_backfill_until(
    client: &QboClient,
    sinks: Vec<Arc<dyn Sink>>,
    request: &BackfillRequest,
    progress: Option<Arc<dyn Progress>>,
    stop: &StopSignal,
) -> Result<BackfillReport, Error> {
    let windows = request.plan()?;
    crate::sink::require_one(&sinks)?;
    let started = Instant::now();
    let before = client.request_counts();
    if let Some(p) = &progress {
        p.on_plan(&windows);
    }
    let plan = tokio::select! {
        biased;
        () = stop.stopped() => return Err(Error::Cancelled),
        plan = ReadPlan::make(client, request.entity, request.filter_field, request.page_size, windows, request.max_concurrent_windows) => plan,
    };
    let estimate = plan.estimate(client.requests_per_minute());
    if let Some(refusal) = request.max_requests.and_then(|max| estimate.over(max)) {
        return Err(refusal);
    }
    if let Some(p) = &progress {
        p.on_estimate(&estimate);
    }
    tracing::info!(target: "qbo_rs", "backfill {}: {} window(s) from {} to {} ({} day chunks, page size {}): {} record(s) in {} stream(s), about {} request(s) ({:.1} min); sinks: {}",
        request.entity, plan.windows.len(), plan.windows.first().map(Window::start_text).unwrap_or_default(),
        plan.windows.last().map(Window::end_text).unwrap_or_default(), request.chunk_days, request.page_size,
        estimate.records, estimate.streams.len(), estimate.requests, estimate.minutes,
        sinks.iter().map(|s| s.target()).collect::<Vec<_>>().join(", "));

    let budget = MemoryBudget::new(request.max_buffer_bytes);
    let spec = ReadSpec { entity: request.entity, field: request.filter_field, page_size: request.page_size, budget: Arc::clone(&budget) };
    let (windows, read) = crate::stream_run::read_planned(client, &sinks, &spec, plan, request.max_concurrent_windows, progress, stop).await;

    let report = BackfillReport {
        entity: request.entity,
        windows,
        duration: started.elapsed(),
        requests: client.request_counts() - before,
        estimate: Some(estimate),
        read,
        peak_buffer_bytes: budget.peak(),
    };
    tracing::debug!(target: "qbo_rs", "records held in memory at most: {} KiB (budget {} KiB)", budget.peak() >> 10, budget.capacity() >> 10);
    log_run_validation(&report, stop.is_stopped());
    Ok(report)
}

fn log_run_validation(report: &BackfillReport, interrupted: bool) {
    tracing::info!(target: "qbo_rs", "Total {} descargadas: {}", report.entity.plural(), report.total_rows());
    let failed = report.failed();
    if failed.is_empty() {
        tracing::info!(target: "qbo_rs", "Validation: Integrity Check Passed");
    } else if interrupted {
        // Not an alert: the user stopped the run. Listing every unfinished label would bury
        // the one thing to do, which is to run the same command again.
        tracing::warn!(target: "qbo_rs", "Validation: interrupted: {} of {} window(s) not finished; {} row(s) committed. Re-run the same command to finish",
            failed.len(), report.windows.len(), report.rows_written());
    } else {
        let labels: Vec<_> = failed.iter().map(|w| w.label.as_str()).collect();
        tracing::error!(target: "qbo_rs", "Validation: [ALERT] {} of {} window(s) failed: {} — re-run them by label",
            failed.len(), report.windows.len(), labels.join(", "));
    }
}
