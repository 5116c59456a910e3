//! `plan_windows`, the `Window` value it returns, and `parse_instant`, the bounds' grammar.

use chrono::{DateTime, Utc};
use pyo3::prelude::*;

use crate::convert;
use crate::errors::{BindError, BindResult};

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

/// Splits `[start, end)` into windows of `chunk_days` days labelled `<entity>_backfill_<date>`.
#[pyfunction]
#[pyo3(signature = (start, end, chunk_days = 50, entity = "invoice"))]
pub fn plan_windows(py: Python<'_>, start: &Bound<'_, PyAny>, end: &Bound<'_, PyAny>, chunk_days: i64, entity: &str) -> BindResult<Vec<Window>> {
    let start = convert::instant(py, "start", start)?;
    let end = convert::instant(py, "end", end)?;
    let chunk_days = convert::positive_u32(py, "chunk_days", chunk_days)?;
    let entity = convert::entity(entity)?;
    qbo_core::plan_windows(start, end, chunk_days, &entity.label_prefix()).map(|ws| ws.into_iter().map(Window::from_core).collect()).map_err(BindError::from)
}

/// `value` as an aware UTC datetime, read exactly as `plan_windows` and every backfill read their
/// bounds: an ISO date (midnight UTC), an ISO datetime (naive means UTC, an offset is converted),
/// a `date` or a `datetime`. Errors name `name`.
#[pyfunction]
#[pyo3(signature = (value, name = "value"))]
pub fn parse_instant(py: Python<'_>, value: &Bound<'_, PyAny>, name: &str) -> BindResult<DateTime<Utc>> {
    convert::instant(py, name, value)
}
