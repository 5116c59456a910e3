//! A backfill against the emulator, through sinks that record what it does: writes overlap
//! fetching only when a sink asks, the memory budget bounds what windows hold, a failed
//! batch write fails its window alone, and a stopped backfill counts what its sink holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use qbo_core::backfill::{run_backfill, run_backfill_until, BackfillRequest, Progress, WindowStatus};
use qbo_core::budget::DEFAULT_MAX_BUFFER_MB;
use qbo_core::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};
use qbo_core::stop::StopSignal;
use qbo_core::{Entity, Error};

mod common;

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

fn request(chunk_days: u32) -> BackfillRequest {
    let mut r = BackfillRequest::new(Entity::Invoice, Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    r.chunk_days = chunk_days;
    r.page_size = 10;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_fetch_during_writes_when_the_sink_asks_one_batch_in_flight_at_a_time() {
    let (emu, client) = common::emulator_and_client(400).await;
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
    let (emu, client) = common::emulator_and_client(400).await;
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
    let (emu, client) = common::emulator_and_client(400).await;
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

/// Raises the stop once the first batch is committed, and adds up what it is told.
struct StopAfterFirstCommit {
    stop: StopSignal,
    committed: std::sync::atomic::AtomicU64,
}

impl Progress for StopAfterFirstCommit {
    fn on_committed(&self, _window: &str, rows: u64) {
        self.committed.fetch_add(rows, Ordering::SeqCst);
        self.stop.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backfill_reports_exactly_what_its_sinks_hold() {
    let (emu, client) = common::emulator_and_client(400).await;
    // 20 ms a page: the read is far from done when the first batch lands.
    emu.set_knobs(qbo_emulator::Knobs { latency_ms: 20, ..emu.knobs() });
    let probe = Arc::new(Probe { overlap: true, ..Probe::default() });
    let sink: Arc<dyn Sink> = Arc::new(SlowSink(Arc::clone(&probe)));
    let observer = Arc::new(StopAfterFirstCommit { stop: StopSignal::new(), committed: Default::default() });
    let progress: Arc<dyn Progress> = observer.clone();
    let report = run_backfill_until(&client, vec![sink], &request(30), Some(progress), &observer.stop).await.unwrap();
    let stored = probe.stored.lock().unwrap().len() as u64;
    assert!(stored > 0 && stored < 400, "stopped mid-way: {stored} of 400 stored");
    assert_eq!(report.rows_written(), stored, "the report counts what the sink holds");
    assert_eq!(observer.committed.load(Ordering::SeqCst), stored, "and so does the progress hook");
    let failed = report.failed();
    assert!(!failed.is_empty());
    for w in failed {
        assert!(w.error.as_deref().unwrap_or_default().contains("interrupted"), "{}: {:?}", w.label, w.error);
    }

    // Raised before the run: it ends while counting, with nothing written.
    let probe = Arc::new(Probe::default());
    let sink: Arc<dyn Sink> = Arc::new(SlowSink(Arc::clone(&probe)));
    let stop = StopSignal::new();
    stop.stop();
    let refused = run_backfill_until(&client, vec![sink], &request(30), None, &stop).await;
    assert!(matches!(refused, Err(Error::Cancelled)), "{:?}", refused.map(|r| r.total_rows()));
    assert_eq!(probe.writes.load(Ordering::SeqCst), 0);
    emu.shutdown().await;
}
