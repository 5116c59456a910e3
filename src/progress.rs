//! A backfill's progress events handed to a Python callable (`on_progress=`), one
//! [`ProgressEvent`] per engine event. The engine runs with the GIL released; each event takes
//! the GIL for the call alone.
//!
//! A callable that raises is not called again for the rest of the run, and the run goes on:
//! a broken progress display must not cost a long backfill. The first exception is logged
//! once, with its traceback, as a warning of the `qbo_rs` logger.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use qbo_core::backfill::{Progress, WindowReport};
use qbo_core::client::RequestCounts;
use qbo_core::read_plan::Estimate;
use qbo_core::window::Window;

/// One progress event of a backfill, with the run's totals at that moment.
#[pyclass(frozen, module = "qbo_rs", get_all)]
pub struct ProgressEvent {
    /// `plan`, `estimate`, `rows`, `committed` or `window_done`.
    pub kind: &'static str,
    /// The window the event is about (None for `plan` and `estimate`).
    pub window: Option<String>,
    /// Records of this event: fetched (`rows`), committed (`committed`), or the window's
    /// rows written (`window_done`); 0 otherwise.
    pub rows: u64,
    /// `ok` or `failed` for `window_done`, else None.
    pub status: Option<String>,
    pub windows_done: u64,
    pub windows_total: u64,
    /// The plan's count of records to read; None until the `estimate` event.
    pub records_estimated: Option<u64>,
    pub records_fetched: u64,
    /// Records in every sink so far.
    pub records_committed: u64,
    /// API requests of this run so far (retries included) and the plan's estimate of them.
    pub requests: u64,
    pub requests_estimated: Option<u64>,
    pub retries: u64,
    /// Retries after a 429 (QuickBooks' throttling).
    pub throttled: u64,
    /// Seconds the run's requests spent waiting before retries (429 pauses and back-offs).
    pub wait_s: f64,
    pub elapsed_s: f64,
}

#[pymethods]
impl ProgressEvent {
    fn __repr__(&self) -> String {
        format!(
            "ProgressEvent(kind={:?}, window={:?}, rows={}, windows={}/{}, committed={}, requests={})",
            self.kind, self.window, self.rows, self.windows_done, self.windows_total, self.records_committed, self.requests
        )
    }
}

/// Forwards the engine's events to a Python callable.
pub struct PyProgress {
    callback: Py<PyAny>,
    client: qbo_core::QboClient,
    requests_before: RequestCounts,
    waited_before: std::time::Duration,
    started: Instant,
    windows_total: AtomicU64,
    windows_done: AtomicU64,
    /// `u64::MAX` until the estimate is known.
    records_estimated: AtomicU64,
    requests_estimated: AtomicU64,
    fetched: AtomicU64,
    committed: AtomicU64,
    /// Set once the callable raised: it is not called again.
    broken: AtomicBool,
    /// One call at a time, in the order the events happened (free-threaded Python has no GIL
    /// to serialise the engine's threads).
    calling: Mutex<()>,
}

const UNKNOWN: u64 = u64::MAX;

impl PyProgress {
    pub fn forwarding(callback: Py<PyAny>, client: &qbo_core::QboClient) -> Arc<dyn Progress> {
        Arc::new(PyProgress {
            callback,
            client: client.clone(),
            requests_before: client.request_counts(),
            waited_before: client.retry_waited(),
            started: Instant::now(),
            windows_total: AtomicU64::new(0),
            windows_done: AtomicU64::new(0),
            records_estimated: AtomicU64::new(UNKNOWN),
            requests_estimated: AtomicU64::new(UNKNOWN),
            fetched: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            calling: Mutex::new(()),
        })
    }

    fn emit(&self, kind: &'static str, window: Option<&str>, rows: u64, status: Option<&str>) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        let _one_at_a_time = self.calling.lock().unwrap_or_else(|p| p.into_inner());
        let known = |v: u64| (v != UNKNOWN).then_some(v);
        let requests = self.client.request_counts() - self.requests_before;
        let event = ProgressEvent {
            kind,
            window: window.map(str::to_string),
            rows,
            status: status.map(str::to_string),
            windows_done: self.windows_done.load(Ordering::Relaxed),
            windows_total: self.windows_total.load(Ordering::Relaxed),
            records_estimated: known(self.records_estimated.load(Ordering::Relaxed)),
            records_fetched: self.fetched.load(Ordering::Relaxed),
            records_committed: self.committed.load(Ordering::Relaxed),
            requests: requests.api_calls(),
            requests_estimated: known(self.requests_estimated.load(Ordering::Relaxed)),
            retries: requests.retries,
            throttled: requests.throttled,
            wait_s: self.client.retry_waited().saturating_sub(self.waited_before).as_secs_f64(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        Python::attach(|py| {
            let outcome = Py::new(py, event).and_then(|event| self.callback.call1(py, (event,)));
            if let Err(error) = outcome {
                if !self.broken.swap(true, Ordering::Relaxed) {
                    log_callback_error(py, &error);
                }
            }
        });
    }
}

/// The callable's exception, as a warning with its traceback (printed raw if even that fails).
fn log_callback_error(py: Python<'_>, error: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py.import("logging")?.call_method1("getLogger", ("qbo_rs",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", error.value(py))?;
        logger.call_method("warning", ("on_progress raised an exception; it is not called again in this run, which goes on",), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        error.print(py);
    }
}

impl Progress for PyProgress {
    fn on_plan(&self, windows: &[Window]) {
        self.windows_total.store(windows.len() as u64, Ordering::Relaxed);
        self.emit("plan", None, 0, None);
    }

    fn on_estimate(&self, estimate: &Estimate) {
        self.records_estimated.store(estimate.records, Ordering::Relaxed);
        self.requests_estimated.store(estimate.requests, Ordering::Relaxed);
        self.emit("estimate", None, 0, None);
    }

    fn on_rows(&self, window: &str, rows: u64) {
        self.fetched.fetch_add(rows, Ordering::Relaxed);
        self.emit("rows", Some(window), rows, None);
    }

    fn on_committed(&self, window: &str, rows: u64) {
        self.committed.fetch_add(rows, Ordering::Relaxed);
        self.emit("committed", Some(window), rows, None);
    }

    fn on_window_done(&self, report: &WindowReport) {
        self.windows_done.fetch_add(1, Ordering::Relaxed);
        self.emit("window_done", Some(&report.label), report.rows_written(), Some(crate::report::status_text(report.status)));
    }
}
