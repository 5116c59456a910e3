//! Backfill results as small frozen Python objects (Mage stores block outputs on disk, so
//! blocks pass these summaries around, never records).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;

/// What one window did.
#[pyclass(frozen, module = "qbo_rs", get_all)]
#[derive(Clone)]
pub struct WindowReport {
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// "ok" or "failed".
    pub status: String,
    pub rows_fetched: u64,
    pub rows_written: u64,
    /// QBO's COUNT(*) of the window after its read, when one was made: a staged window's fetch
    /// (None when one page answered it whole). Always None in a backfill's report: a backfill
    /// counts runs of windows, not each window (its `estimate` has the records counted).
    pub server_count: Option<u64>,
    pub pages: u32,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub error: Option<String>,
    pub duration_s: f64,
}

#[pymethods]
impl WindowReport {
    #[getter]
    fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn __repr__(&self) -> String {
        format!("WindowReport(label={:?}, status={:?}, rows_fetched={}, rows_written={})", self.label, self.status, self.rows_fetched, self.rows_written)
    }

    /// A table of this window, for notebooks.
    fn _repr_html_(&self) -> String {
        crate::report_html::window_html(self)
    }

    /// A one-row pandas DataFrame (pandas is imported now).
    fn to_pandas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::report_html::windows_frame(py, std::slice::from_ref(self))
    }

    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("label", &self.label)?;
        d.set_item("start", qbo_core::time::format_utc(self.start))?;
        d.set_item("end", qbo_core::time::format_utc(self.end))?;
        d.set_item("status", &self.status)?;
        d.set_item("rows_fetched", self.rows_fetched)?;
        d.set_item("rows_written", self.rows_written)?;
        d.set_item("server_count", self.server_count)?;
        d.set_item("pages", self.pages)?;
        d.set_item("inserted", self.inserted)?;
        d.set_item("updated", self.updated)?;
        d.set_item("unchanged", self.unchanged)?;
        d.set_item("error", &self.error)?;
        d.set_item("duration_s", self.duration_s)?;
        Ok(d)
    }
}

/// What a backfill did, window by window.
#[pyclass(frozen, module = "qbo_rs", get_all)]
pub struct BackfillReport {
    pub entity: String,
    pub windows: Vec<WindowReport>,
    pub total_rows: u64,
    pub duration_s: f64,
    pub requests: u64,
    pub retries: u64,
    pub throttled: u64,
    /// Requests by kind: `page`, `count`, `retry` (`requests` is their sum, what Intuit meters)
    /// and `token` (calls to Intuit's token endpoint).
    pub requests_by_kind: HashMap<String, u64>,
    /// What the plan estimated before reading (None for a staged window's fetch or export).
    pub estimate: Option<Py<Estimate>>,
    /// Seconds holding more than half a page, read as groups by offset, and the requests they
    /// cost: what no estimate can foresee.
    pub tie_groups: u64,
    pub tie_requests: u64,
    /// The most bytes of fetched records held in memory at once (bounded by `max_buffer_mb`).
    pub peak_buffer_bytes: u64,
    /// Where each sink wrote (`{"txt": "data/invoices.txt"}`).
    pub targets: HashMap<String, String>,
}

#[pymethods]
impl BackfillReport {
    #[getter]
    fn ok(&self) -> bool {
        self.windows.iter().all(|w| w.status == "ok")
    }

    #[getter]
    fn failed_windows(&self) -> Vec<String> {
        self.windows.iter().filter(|w| w.status != "ok").map(|w| w.label.clone()).collect()
    }

    /// A summary and a table of the windows (label, bounds, status, rows, pages, error), for
    /// notebooks.
    fn _repr_html_(&self) -> String {
        crate::report_html::backfill_html(self)
    }

    /// One row per window (the columns of `WindowReport.to_dict()`, bounds as UTC timestamps);
    /// pandas is imported now.
    fn to_pandas<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::report_html::windows_frame(py, &self.windows)
    }

    fn __repr__(&self) -> String {
        format!("BackfillReport(entity={:?}, windows={}, total_rows={}, failed={:?})", self.entity, self.windows.len(), self.total_rows, self.failed_windows())
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("entity", &self.entity)?;
        d.set_item("ok", self.ok())?;
        d.set_item("total_rows", self.total_rows)?;
        d.set_item("failed_windows", self.failed_windows())?;
        d.set_item("duration_s", self.duration_s)?;
        d.set_item("requests", self.requests)?;
        d.set_item("retries", self.retries)?;
        d.set_item("throttled", self.throttled)?;
        d.set_item("requests_by_kind", self.requests_by_kind.clone())?;
        d.set_item("tie_groups", self.tie_groups)?;
        d.set_item("tie_requests", self.tie_requests)?;
        d.set_item("estimate", self.estimate.as_ref().map(|e| e.bind(py).get().to_dict(py)).transpose()?)?;
        d.set_item("peak_buffer_bytes", self.peak_buffer_bytes)?;
        d.set_item("targets", self.targets.clone())?;
        let windows = self.windows.iter().map(|w| w.to_dict(py)).collect::<PyResult<Vec<_>>>()?;
        d.set_item("windows", windows)?;
        Ok(d)
    }
}

impl BackfillReport {
    pub fn from_core(py: Python<'_>, r: qbo_core::backfill::BackfillReport) -> PyResult<Self> {
        let mut targets = HashMap::new();
        let windows = r
            .windows
            .iter()
            .map(|w| {
                for s in &w.sinks {
                    targets.insert(s.sink.clone(), s.target.clone());
                }
                let first = w.sinks.first().map(|s| s.outcome).unwrap_or_default();
                WindowReport {
                    label: w.label.clone(),
                    start: w.start,
                    end: w.end,
                    status: match w.status {
                        qbo_core::backfill::WindowStatus::Ok => "ok".into(),
                        qbo_core::backfill::WindowStatus::Failed => "failed".into(),
                    },
                    rows_fetched: w.rows_fetched,
                    rows_written: w.rows_written(),
                    server_count: w.fetch.server_count,
                    pages: w.fetch.pages,
                    inserted: first.inserted,
                    updated: first.updated,
                    unchanged: first.unchanged + first.stale,
                    error: w.error.clone(),
                    duration_s: w.duration.as_secs_f64(),
                }
            })
            .collect();
        Ok(BackfillReport {
            entity: r.entity.qbo_name().to_string(),
            total_rows: r.total_rows(),
            windows,
            duration_s: r.duration.as_secs_f64(),
            requests: r.requests.api_calls(),
            retries: r.requests.retries,
            throttled: r.requests.throttled,
            requests_by_kind: requests_by_kind(&r.requests),
            estimate: r.estimate.map(|e| Py::new(py, Estimate { inner: e })).transpose()?,
            tie_groups: r.read.tie_groups,
            tie_requests: r.read.tie_requests,
            peak_buffer_bytes: r.peak_buffer_bytes,
            targets,
        })
    }
}

pub fn requests_by_kind(r: &qbo_core::client::RequestCounts) -> HashMap<String, u64> {
    [("page", r.pages), ("count", r.counts), ("cdc", r.cdc), ("retry", r.retries), ("token", r.tokens)].into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The `#[pymethods]` of a class that wraps a core value in `inner`: each
/// `get name(v) -> Type = expr;` is a read-only property computed from `v`, the core value;
/// the methods after `methods:` are written as in any `#[pymethods]` block (which takes no macro
/// inside it, hence the whole block here).
macro_rules! pymethods_reading_inner {
    (impl $class:ident {
        $( $(#[$attr:meta])* get $name:ident($v:ident) -> $ty:ty = $value:expr; )*
        methods:
        $($methods:tt)*
    }) => {
        #[pymethods]
        impl $class {
            $(
                $(#[$attr])*
                #[getter]
                fn $name(&self) -> $ty {
                    let $v = &self.inner;
                    $value
                }
            )*
            $($methods)*
        }
    };
}
pub(crate) use pymethods_reading_inner;

/// What a backfill will read and spend, from counts alone (`QboClient.estimate`, or the
/// plan a backfill made before reading).
#[pyclass(frozen, module = "qbo_rs")]
pub struct Estimate {
    pub inner: qbo_core::read_plan::Estimate,
}

pymethods_reading_inner! {
    impl Estimate {
        get entity(e) -> &str = &e.entity;
        get windows(e) -> usize = e.windows;
        get records(e) -> u64 = e.records;
        /// Streams the plan reads (each a run of consecutive windows, or part of a dense one).
        get streams(e) -> usize = e.streams.len();
        /// Every request the backfill makes, the plan's counts included (retries aside).
        get requests(e) -> u64 = e.requests;
        get count_requests(e) -> u64 = e.count_requests;
        get page_requests(e) -> u64 = e.page_requests;
        /// `requests` at the realm's pace.
        get minutes(e) -> f64 = e.minutes;

        methods:

        /// Everything, the streams included, as plain Python values (what `qbo-rs estimate --json` prints).
        fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let text = serde_json::to_string(&self.inner).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            py.import("json")?.call_method1("loads", (text,))
        }

        fn __repr__(&self) -> String {
            let e = &self.inner;
            format!(
                "Estimate(entity={:?}, records={}, windows={}, streams={}, requests={}, minutes={:.1})",
                e.entity,
                e.records,
                e.windows,
                e.streams.len(),
                e.requests,
                e.minutes
            )
        }
    }
}
