//! Backfill results as small frozen Python objects (Mage stores block outputs on disk, so
//! blocks pass these summaries around, never records).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use qbo_core::backfill::WindowStatus;
use qbo_core::sink::WriteOutcome;

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

/// What one window did: the core's report, its figures converted as Python reads them.
#[pyclass(frozen, module = "qbo_rs")]
#[derive(Clone)]
pub struct WindowReport {
    pub inner: qbo_core::backfill::WindowReport,
}

impl WindowReport {
    pub fn is_ok(&self) -> bool {
        self.inner.status == WindowStatus::Ok
    }
}

/// A window's status as Python sees it: "ok" or "failed".
pub fn status_text(status: WindowStatus) -> &'static str {
    match status {
        WindowStatus::Ok => "ok",
        WindowStatus::Failed => "failed",
    }
}

/// What the window did to its first sink: what `inserted`, `updated` and `unchanged` report.
fn first_outcome(w: &qbo_core::backfill::WindowReport) -> WriteOutcome {
    w.sinks.first().map(|s| s.outcome).unwrap_or_default()
}

pymethods_reading_inner! {
    impl WindowReport {
        get label(w) -> &str = &w.label;
        get start(w) -> DateTime<Utc> = w.start;
        get end(w) -> DateTime<Utc> = w.end;
        /// "ok" or "failed".
        get status(w) -> &'static str = status_text(w.status);
        get ok(w) -> bool = w.status == WindowStatus::Ok;
        get rows_fetched(w) -> u64 = w.rows_fetched;
        get rows_written(w) -> u64 = w.rows_written();
        /// QBO's COUNT(*) of the window after its read, when one was made: a staged window's fetch
        /// (None when one page answered it whole). Always None in a backfill's report: a backfill
        /// counts runs of windows, not each window (its `estimate` has the records counted).
        get server_count(w) -> Option<u64> = w.fetch.server_count;
        get pages(w) -> u32 = w.fetch.pages;
        get inserted(w) -> u64 = first_outcome(w).inserted;
        get updated(w) -> u64 = first_outcome(w).updated;
        get unchanged(w) -> u64 = first_outcome(w).unchanged + first_outcome(w).stale;
        get error(w) -> Option<&str> = w.error.as_deref();
        get duration_s(w) -> f64 = w.duration.as_secs_f64();

        methods:

        fn __repr__(&self) -> String {
            format!("WindowReport(label={:?}, status={:?}, rows_fetched={}, rows_written={})", self.label(), self.status(), self.rows_fetched(), self.rows_written())
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
            d.set_item("label", self.label())?;
            d.set_item("start", qbo_core::time::format_utc(self.start()))?;
            d.set_item("end", qbo_core::time::format_utc(self.end()))?;
            d.set_item("status", self.status())?;
            d.set_item("rows_fetched", self.rows_fetched())?;
            d.set_item("rows_written", self.rows_written())?;
            d.set_item("server_count", self.server_count())?;
            d.set_item("pages", self.pages())?;
            d.set_item("inserted", self.inserted())?;
            d.set_item("updated", self.updated())?;
            d.set_item("unchanged", self.unchanged())?;
            d.set_item("error", self.error())?;
            d.set_item("duration_s", self.duration_s())?;
            Ok(d)
        }
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
        self.windows.iter().all(WindowReport::is_ok)
    }

    #[getter]
    fn failed_windows(&self) -> Vec<String> {
        self.windows.iter().filter(|w| !w.is_ok()).map(|w| w.inner.label.clone()).collect()
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
        let targets = r.windows.iter().flat_map(|w| &w.sinks).map(|s| (s.sink.clone(), s.target.clone())).collect();
        Ok(BackfillReport {
            entity: r.entity.qbo_name().to_string(),
            total_rows: r.total_rows(),
            windows: r.windows.into_iter().map(|inner| WindowReport { inner }).collect(),
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
