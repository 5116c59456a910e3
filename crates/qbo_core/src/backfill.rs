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
    fn on_rows(&self, _window: &str, _rows: u64) {}
    fn on_window_done(&self, _report: &WindowReport) {}
}

pub async fn run_backfill(
    client: &QboClient,
    sinks: Vec<Arc<dyn Sink>>,
    request: &BackfillRequest,
    progress: Option<Arc<dyn Progress>>,
) -> Result<BackfillReport, Error> {
    let windows = request.plan()?;
    if sinks.is_empty() {
        return Err(Error::config("no sink configured: choose txt, postgres or both"));
    }
    let started = Instant::now();
    let before = client.request_counts();
    if let Some(p) = &progress {
        p.on_plan(&windows);
    }
    let plan = ReadPlan::make(client, request.entity, request.filter_field, request.page_size, windows, request.max_concurrent_windows).await;
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
    let (windows, read) = crate::stream_run::read_planned(client, &sinks, &spec, plan, request.max_concurrent_windows, progress).await;

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
    log_run_validation(&report);
    Ok(report)
}

fn log_run_validation(report: &BackfillReport) {
    tracing::info!(target: "qbo_rs", "Total {} descargadas: {}", report.entity.plural(), report.total_rows());
    let failed = report.failed();
    if failed.is_empty() {
        tracing::info!(target: "qbo_rs", "Validation: Integrity Check Passed");
    } else {
        let labels: Vec<_> = failed.iter().map(|w| w.label.as_str()).collect();
        tracing::error!(target: "qbo_rs", "Validation: [ALERT] {} of {} window(s) failed: {} — re-run them by label",
            failed.len(), report.windows.len(), labels.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use chrono::TimeZone;
    use qbo_emulator::{Emulator, EmulatorConfig, Knobs};
    use secrecy::SecretString;

    use super::*;
    use crate::client::ClientConfig;
    use crate::credentials::{Credentials, Environment};
    use crate::limiter::Pacing;
    use crate::sink::BoxFuture;
    use crate::sink::WriteBatch;
    use crate::sink::WriteOutcome;

    /// A sink with tiny batches whose writes take a while, recording what the backfill does.
    #[derive(Default)]
    struct Probe {
        /// Windows with a write in progress, and how many at once per window.
        writing: std::sync::Mutex<HashMap<String, usize>>,
        most_in_flight_per_window: AtomicUsize,
        /// Rows were fetched (pushed) for a window while one of its batches was being written.
        fetched_during_write: AtomicBool,
        writes: AtomicUsize,
        /// Payload bytes of the largest batch written.
        largest_batch: AtomicUsize,
        fail_write: Option<usize>,
        overlap: bool,
        stored: std::sync::Mutex<HashMap<String, (i64, u64)>>,
    }

    struct SlowSink(Arc<Probe>);

    impl Sink for SlowSink {
        fn name(&self) -> &str {
            "slow"
        }
        fn target(&self) -> String {
            "memory".into()
        }
        fn batch_bytes(&self) -> usize {
            16 << 10
        }
        fn overlap_writes(&self) -> bool {
            self.0.overlap
        }
        fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
            Box::pin(async move {
                let probe = &self.0;
                let label = batch.window.label.clone();
                let now = {
                    let mut writing = probe.writing.lock().unwrap();
                    let n = writing.entry(label.clone()).or_default();
                    *n += 1;
                    *n
                };
                probe.most_in_flight_per_window.fetch_max(now, Ordering::SeqCst);
                let nth = probe.writes.fetch_add(1, Ordering::SeqCst) + 1;
                probe.largest_batch.fetch_max(batch.records.iter().map(|r| r.payload.len()).sum(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
                *probe.writing.lock().unwrap().get_mut(&label).unwrap() -= 1;
                if probe.fail_write == Some(nth) {
                    return Err(Error::Sink("disk on fire".into()));
                }
                let mut stored = probe.stored.lock().unwrap();
                let mut outcome = WriteOutcome::default();
                for r in &batch.records {
                    match stored.get(&r.id) {
                        None => outcome.inserted += 1,
                        Some(v) if *v < r.version() => outcome.updated += 1,
                        Some(v) if *v == r.version() => outcome.unchanged += 1,
                        Some(_) => {
                            outcome.stale += 1;
                            continue;
                        }
                    }
                    stored.insert(r.id.clone(), r.version());
                }
                Ok(outcome)
            })
        }
    }

    impl Progress for Probe {
        fn on_rows(&self, window: &str, _rows: u64) {
            if self.writing.lock().unwrap().get(window).is_some_and(|n| *n > 0) {
                self.fetched_during_write.store(true, Ordering::SeqCst);
            }
        }
    }

    async fn emulator_and_client() -> (Emulator, QboClient) {
        let emu = Emulator::start(EmulatorConfig { invoices: 400, customers: 5, items: 5, knobs: Knobs::unthrottled(), ..Default::default() }).await.unwrap();
        let creds = Credentials {
            client_id: emu.client_id().into(),
            client_secret: SecretString::from(emu.client_secret().to_string()),
            refresh_token: SecretString::from(emu.initial_refresh_token().to_string()),
            realm_id: emu.realm_id().into(),
            environment: Environment::Sandbox,
            api_base_url: Some(emu.base_url()),
            token_url: Some(emu.token_url()),
        };
        let config = ClientConfig { pacing: Pacing { requests_per_minute: 1_000_000, ..Pacing::default() }, ..ClientConfig::default() };
        let client = QboClient::new(creds, config).unwrap();
        (emu, client)
    }

    fn request(chunk_days: u32) -> BackfillRequest {
        let mut r =
            BackfillRequest::new(Entity::Invoice, Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        r.chunk_days = chunk_days;
        r.page_size = 10;
        r
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windows_fetch_during_writes_when_the_sink_asks_one_batch_in_flight_at_a_time() {
        let (emu, client) = emulator_and_client().await;
        for overlap in [true, false] {
            let probe = Arc::new(Probe { overlap, ..Probe::default() });
            let sink: Arc<dyn Sink> = Arc::new(SlowSink(Arc::clone(&probe)));
            let progress: Arc<dyn Progress> = probe.clone();
            let report = run_backfill(&client, vec![sink], &request(1000), Some(progress)).await.unwrap();
            assert!(report.ok(), "{:?}", report.failed().iter().map(|w| &w.error).collect::<Vec<_>>());
            assert!(probe.writes.load(Ordering::SeqCst) > report.windows.len(), "several batches per window");
            assert_eq!(probe.most_in_flight_per_window.load(Ordering::SeqCst), 1, "one write in flight per window");
            assert_eq!(probe.fetched_during_write.load(Ordering::SeqCst), overlap, "fetching overlaps writing exactly when the sink asks for it");
            for w in &report.windows {
                assert_eq!(w.sinks[0].outcome.written(), w.rows_emitted, "{}: every batch counted", w.label);
            }
            let truth = emu.truth("Invoice").unwrap();
            let stored = probe.stored.lock().unwrap().clone();
            assert_eq!(stored.len(), truth.len());
            for t in truth {
                assert_eq!(stored[&t.id].1, t.sync_token.parse::<u64>().unwrap(), "id {}", t.id);
            }
        }
        emu.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_budget_bounds_what_the_windows_hold_and_never_deadlocks() {
        let (emu, client) = emulator_and_client().await;
        let truth = emu.truth("Invoice").unwrap();
        let mut peaks = Vec::new();
        // 1 byte: smaller than any page, so the windows take turns; 40 KiB: a couple of pages.
        for cap in [1u64, 40 << 10, u64::from(DEFAULT_MAX_BUFFER_MB) << 20] {
            let probe = Arc::new(Probe { overlap: true, ..Probe::default() });
            let sink: Arc<dyn Sink> = Arc::new(SlowSink(Arc::clone(&probe)));
            let mut req = request(365);
            req.max_buffer_bytes = cap;
            let report = tokio::time::timeout(Duration::from_secs(120), run_backfill(&client, vec![sink], &req, None))
                .await
                .expect("the backfill finished: no deadlock")
                .unwrap();
            assert!(report.ok(), "{:?}", report.failed().iter().map(|w| &w.error).collect::<Vec<_>>());
            assert_eq!(probe.stored.lock().unwrap().len(), truth.len(), "budget {cap}: everything written");
            // Each window can go over by at most one page (a page larger than it reserved); with
            // a 1-byte budget only one window holds anything at a time: one page in all.
            let page = probe.largest_batch.load(Ordering::SeqCst) as u64;
            let bound = if cap == 1 { page } else { cap + req.max_concurrent_windows as u64 * page };
            assert!(report.peak_buffer_bytes <= bound, "budget {cap}: held {} > {bound}", report.peak_buffer_bytes);
            peaks.push((report.peak_buffer_bytes, page));
        }
        // Unbounded, these windows hold several pages each: the 1-byte bound above binds.
        let (default_peak, page) = peaks[2];
        assert!(default_peak > 2 * page, "the default-budget run held only {default_peak} bytes");
        emu.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_write_fails_its_window_only() {
        let (emu, client) = emulator_and_client().await;
        let probe = Arc::new(Probe { fail_write: Some(2), overlap: true, ..Probe::default() });
        let sink: Arc<dyn Sink> = Arc::new(SlowSink(Arc::clone(&probe)));
        let mut req = request(1000);
        req.max_concurrent_windows = 1;
        let report = run_backfill(&client, vec![sink], &req, None).await.unwrap();
        let failed = report.failed();
        assert_eq!(failed.len(), 1, "exactly the window whose batch failed");
        assert!(failed[0].error.as_deref().unwrap_or_default().contains("disk on fire"), "{:?}", failed[0].error);
        assert!(report.windows.iter().filter(|w| w.status == WindowStatus::Ok).count() >= 1);
        emu.shutdown().await;
    }
}
