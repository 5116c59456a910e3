//! A window fetched in one call and written in another (Mage's fetch block and exporter
//! block): `QboClient._stage_job` builds a [`StageJob`] that parks it on disk, `_export_job` an
//! [`ExportJob`] that writes it; each runs blocking (`run`) or awaited (`run_future`).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use qbo_core::backfill::BackfillReport as CoreReport;
use qbo_core::sink::{SinkConfig, SinkOptions};
use qbo_core::stage::{StageRequest, StageResult};
use qbo_core::QboClient;

use crate::convert;
use crate::errors::{BindError, BindResult};
use crate::report::BackfillReport;
use crate::runtime::block_on;

/// A fetched window waiting on disk for its export: a small handle, safe to pass between
/// processes (Mage block outputs) as its `manifest` path.
#[pyclass(frozen, module = "qbo_rs", get_all)]
pub struct StagedWindow {
    pub label: String,
    pub entity: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// "ok" (staged) or "failed" (nothing staged; see `report`).
    pub status: String,
    pub rows_fetched: u64,
    /// Lines in the staged file (an id edited during the read may appear twice).
    pub lines: u64,
    pub server_count: Option<u64>,
    pub pages: u32,
    /// The handle `export_window` takes; None when the fetch failed.
    pub manifest: Option<PathBuf>,
    /// True when an earlier call with the same `run_id` had staged (or already written) this
    /// window: it was returned as it was and nothing was asked of QuickBooks.
    pub reused: bool,
    /// The fetch as a one-window report (requests, retries, 429s, the error if any).
    pub report: Py<BackfillReport>,
}

#[pymethods]
impl StagedWindow {
    #[getter]
    fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn __repr__(&self) -> String {
        format!(
            "StagedWindow(label={:?}, status={:?}, rows_fetched={}, reused={}, manifest={:?})",
            self.label,
            self.status,
            self.rows_fetched,
            if self.reused { "True" } else { "False" },
            self.manifest
        )
    }
}

/// The fetch, in core types (built into Python objects once the GIL is back).
pub struct StageOutcome {
    report: CoreReport,
    result: StageResult,
}

pub async fn stage_task(client: QboClient, request: StageRequest) -> Result<StageOutcome, qbo_core::Error> {
    let (report, result) = qbo_core::stage::stage_window_reported(&client, request).await?;
    Ok(StageOutcome { report, result })
}

impl StageOutcome {
    pub fn into_py(self, py: Python<'_>) -> PyResult<StagedWindow> {
        let StageResult { report: window, staged, manifest, reused } = self.result;
        let entity = self.report.entity.slug().to_string();
        let report = Py::new(py, BackfillReport::from_core(py, self.report)?)?;
        Ok(StagedWindow {
            label: window.label,
            entity,
            start: window.start,
            end: window.end,
            status: if staged.is_some() { "ok" } else { "failed" }.into(),
            rows_fetched: window.rows_fetched,
            lines: staged.as_ref().map_or(0, |s| s.counts.lines),
            server_count: window.fetch.server_count,
            pages: window.fetch.pages,
            manifest: staged.is_some().then_some(manifest),
            reused,
            report,
        })
    }
}

#[derive(Clone)]
pub struct ExportArgs {
    pub manifest: PathBuf,
    pub sinks: SinkOptions,
    pub keep: bool,
}

pub async fn export_task(args: ExportArgs) -> Result<CoreReport, qbo_core::Error> {
    qbo_core::stage::export_window_reported(&args.manifest, &args.sinks, args.keep).await
}

/// A staged window's write (the `manifest` of `QboClient.stage_window`) with its sink options
/// checked; the Python face runs it with `run()` or awaits `run_future()`. Options: the core's
/// `SinkConfig`, `postgres` (a `PostgresWriter`) and `keep_staged`.
#[pyfunction]
#[pyo3(signature = (manifest, **options))]
pub fn _export_job(py: Python<'_>, manifest: PathBuf, options: Option<&Bound<'_, PyDict>>) -> PyResult<ExportJob> {
    let (sinks, keep) = export_options(py, options)?;
    Ok(ExportJob { args: ExportArgs { manifest, sinks, keep } })
}

/// An export's options: the core's `SinkConfig`, `postgres` (a `PostgresWriter`) and
/// `keep_staged`.
pub fn export_options(py: Python<'_>, options: Option<&Bound<'_, PyDict>>) -> BindResult<(SinkOptions, bool)> {
    let mut kwargs = convert::Kwargs::new(py, options)?;
    let mut sinks = SinkConfig { postgres: convert::postgres_target(py, kwargs.take(&["postgres"]))?, ..SinkConfig::default() };
    let keep = match kwargs.take(&["keep_staged"]) {
        Some(value) => convert::option_value(py, "keep_staged", &value)?.boolean("keep_staged")?,
        None => false,
    };
    kwargs.fill(&mut sinks)?.finish()?;
    Ok((sinks.resolve()?, keep))
}

/// A window's fetch into a stage, ready to run (from `QboClient._stage_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct StageJob {
    pub(crate) client: QboClient,
    pub(crate) request: StageRequest,
}

#[pymethods]
impl StageJob {
    /// Fetches the window into its stage with the GIL released.
    fn run(&self, py: Python<'_>) -> BindResult<StagedWindow> {
        Ok(block_on(py, stage_task(self.client.clone(), self.request.clone()))??.into_py(py)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, request) = (self.client.clone(), self.request.clone());
        crate::runtime::future_into_py(py, async move {
            let outcome = stage_task(client, request).await;
            Python::attach(|py| outcome.map_err(BindError::from)?.into_py(py))
        })
    }
}

/// A staged window's write, ready to run (from `_export_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct ExportJob {
    args: ExportArgs,
}

#[pymethods]
impl ExportJob {
    /// Writes the staged window into the sinks with the GIL released.
    fn run(&self, py: Python<'_>) -> BindResult<BackfillReport> {
        let report = block_on(py, export_task(self.args.clone()))??;
        Ok(BackfillReport::from_core(py, report)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let args = self.args.clone();
        crate::runtime::future_into_py(py, async move {
            let result = export_task(args).await;
            Python::attach(|py| BackfillReport::from_core(py, result.map_err(BindError::from)?))
        })
    }
}
