//! Planning with no request: `plan_windows`, the `Window` value it returns, `plan` (a backfill's
//! options resolved and checked) and `parse_instant`, the bounds' grammar.

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use qbo_core::backfill::BackfillRequest;

use crate::convert;
use crate::errors::BindResult;

/// A half-open UTC window `[start, end)` with its stable label.
#[pyclass(frozen, eq, module = "qbo_rs", get_all)]
#[derive(Clone, PartialEq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
}

#[pymethods]
impl Window {
    fn __repr__(&self) -> String {
        format!("Window(label={:?}, start={:?}, end={:?})", self.label, qbo_core::time::format_utc(self.start), qbo_core::time::format_utc(self.end))
    }

    /// `Rango 2025-01-01 a 2025-02-20`, as the logs print it.
    #[getter]
    fn range_text(&self) -> String {
        let w = self.to_core();
        format!("Rango {} a {}", w.start_text(), w.end_text())
    }
}

impl Window {
    pub fn to_core(&self) -> qbo_core::Window {
        qbo_core::Window { start: self.start, end: self.end, label: self.label.clone() }
    }

    pub fn from_core(w: qbo_core::Window) -> Self {
        Window { start: w.start, end: w.end, label: w.label }
    }
}

/// Splits `[start, end)` into windows of `chunk_days` days (default: a backfill's) labelled
/// `<entity>_backfill_<date>`.
#[pyfunction]
#[pyo3(signature = (start, end, chunk_days = None, entity = "invoice"))]
pub fn plan_windows(py: Python<'_>, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>, chunk_days: Option<i64>, entity: &str) -> BindResult<Vec<Window>> {
    let mut request = BackfillRequest::new(convert::entity(entity)?, convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
    if let Some(days) = chunk_days {
        request.chunk_days = convert::positive_u32(py, "chunk_days", days)?;
    }
    Ok(windows_of(request.plan()?))
}

fn windows_of(windows: Vec<qbo_core::Window>) -> Vec<Window> {
    windows.into_iter().map(Window::from_core).collect()
}

/// A backfill's request with every option resolved and checked, and the windows it runs: what
/// a backfill, an estimate or a read with the same options would do, before any request.
#[pyclass(frozen, module = "qbo_rs")]
pub struct BackfillPlan {
    inner: BackfillRequest,
    windows: Vec<qbo_core::Window>,
}

crate::report::pymethods_reading_inner! {
    impl BackfillPlan {
        get entity(r) -> &'static str = r.entity.slug();
        get start(r) -> DateTime<Utc> = r.start;
        get end(r) -> DateTime<Utc> = r.end;
        get chunk_days(r) -> u32 = r.chunk_days;
        get page_size(r) -> u32 = r.page_size;
        /// `LastUpdatedTime`, `CreateTime` or `TxnDate`.
        get filter_field(r) -> &'static str = r.filter_field.name();
        get max_concurrent_windows(r) -> usize = r.max_concurrent_windows;
        get max_buffer_mb(r) -> u64 = r.max_buffer_bytes >> 20;
        get max_requests(r) -> Option<u64> = r.max_requests;

        methods:

        /// The windows to run: the calendar's, or those the `windows` option names.
        #[getter]
        fn windows(&self) -> Vec<Window> {
            windows_of(self.windows.clone())
        }

        fn __repr__(&self) -> String {
            format!("BackfillPlan(entity={:?}, windows={}, chunk_days={}, page_size={})", self.entity(), self.windows.len(), self.chunk_days(), self.page_size())
        }
    }
}

/// A backfill's options for `entity` over `[start, end)`, resolved and checked as a backfill
/// checks them (`BackfillRequest`'s: defaults, bounds, labels), with no request and no file.
#[pyfunction]
#[pyo3(signature = (entity, start, end, **options))]
pub fn plan(py: Python<'_>, entity: &str, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>, options: Option<&Bound<'_, PyDict>>) -> BindResult<BackfillPlan> {
    let mut request = BackfillRequest::new(convert::entity(entity)?, convert::instant(py, "start", start)?, convert::instant(py, "end", end)?);
    convert::Kwargs::new(py, options)?.fill(&mut request)?.finish()?;
    let windows = request.plan()?;
    Ok(BackfillPlan { inner: request, windows })
}

/// `value` as an aware UTC datetime, read exactly as `plan_windows` and every backfill read their
/// bounds: an ISO date (midnight UTC), an ISO datetime (naive means UTC, an offset is converted),
/// a `date` or a `datetime`. Errors name `name`.
#[pyfunction]
#[pyo3(signature = (value, name = "value"))]
pub fn parse_instant(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> BindResult<DateTime<Utc>> {
    convert::instant(py, name, value)
}
