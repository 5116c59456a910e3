//! A backfill shared out between workers (Mage's children): `QboClient._share_plan_job`
//! counts and cuts the plan into [`ReadShare`]s, `_share_stage_job` fetches one share into its
//! stage, `_export_share_job` writes it. Each job runs blocking (`run`) or awaited
//! (`run_future`).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use qbo_core::backfill::{BackfillReport as CoreReport, BackfillRequest};
use qbo_core::read_plan::{ReadPlan, ReadShare as CoreShare, ShareOptions};
use qbo_core::sink::SinkOptions;
use qbo_core::stage::{ShareStageRequest, ShareStageResult};
use qbo_core::QboClient;

use crate::convert;
use crate::errors::{config_error, BindError, BindResult};
use crate::report::{pymethods_reading_inner, BackfillReport, Estimate};
use crate::runtime::block_on;

/// One worker's part of a backfill: consecutive windows and the streams that read them, with
/// the plan's counts. Pass it to another process as `to_json()`; `ReadShare.from_json` reads it.
#[pyclass(frozen, module = "qbo_rs")]
#[derive(Clone)]
pub struct ReadShare {
    pub inner: CoreShare,
}

pymethods_reading_inner! {
    impl ReadShare {
        get label(share) -> &str = &share.label;
        get entity(share) -> &str = share.entity.slug();
        /// 0-based place among `of` shares.
        get index(share) -> usize = share.index;
        get of(share) -> usize = share.of;
        get start(share) -> Option<DateTime<Utc>> = share.windows.first().map(|w| w.start);
        get end(share) -> Option<DateTime<Utc>> = share.windows.last().map(|w| w.end);
        /// The labels of its windows, in time order.
        get window_labels(share) -> Vec<String> = share.windows.iter().map(|w| w.label.clone()).collect();
        /// Records the plan counted in its windows.
        get records(share) -> u64 = share.records;
        get streams(share) -> usize = share.streams.len();
        /// Page requests its streams need.
        get page_requests(share) -> u64 = share.page_requests();

        methods:

        fn to_json(&self) -> String {
            serde_json::to_string(&self.inner).expect("a share always encodes")
        }

        #[staticmethod]
        fn from_json(py: Python<'_>, text: &str) -> PyResult<Self> {
            let inner: CoreShare = serde_json::from_str(text).map_err(|e| config_error(py, format!("not a share from plan_shares: {e}")))?;
            Ok(ReadShare { inner })
        }

        fn __len__(&self) -> usize {
            self.inner.windows.len()
        }

        fn __repr__(&self) -> String {
            format!(
                "ReadShare(label={:?}, index={}, of={}, windows={}, records={}, streams={})",
                self.inner.label,
                self.inner.index,
                self.inner.of,
                self.inner.windows.len(),
                self.inner.records,
                self.inner.streams.len()
            )
        }
    }
}

/// A backfill's plan, counted and cut into shares: `estimate` says what it costs (counts
/// included), `shares` who reads what.
#[pyclass(frozen, module = "qbo_rs", get_all)]
pub struct SharePlan {
    pub estimate: Py<Estimate>,
    pub shares: Vec<Py<ReadShare>>,
}

#[pymethods]
impl SharePlan {
    fn __repr__(&self) -> String {
        let e = &self.estimate.get().inner;
        format!("SharePlan(shares={}, windows={}, records={}, requests={})", self.shares.len(), e.windows, e.records, e.requests)
    }
}

/// A plan to count and share (from `QboClient._share_plan_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct SharePlanJob {
    pub(crate) client: QboClient,
    pub(crate) request: BackfillRequest,
    pub(crate) shares: ShareOptions,
}

type PlanOutcome = (qbo_core::read_plan::Estimate, Vec<CoreShare>);

async fn share_plan_task(client: QboClient, request: BackfillRequest, options: ShareOptions) -> Result<PlanOutcome, qbo_core::Error> {
    let windows = request.plan()?;
    let plan = ReadPlan::make(&client, request.entity, request.filter_field, request.page_size, windows, request.max_concurrent_windows).await;
    let estimate = plan.estimate(client.requests_per_minute());
    let shares = plan.shares(options.max_shares)?;
    if let Some(refusal) = request.max_requests.and_then(|max| estimate.over(max)) {
        return Err(refusal);
    }
    Ok((estimate, shares))
}

fn plan_into_py(py: Python<'_>, (estimate, shares): PlanOutcome) -> PyResult<SharePlan> {
    Ok(SharePlan {
        estimate: Py::new(py, Estimate { inner: estimate })?,
        shares: shares.into_iter().map(|inner| Py::new(py, ReadShare { inner })).collect::<PyResult<_>>()?,
    })
}

#[pymethods]
impl SharePlanJob {
    /// Counts with the GIL released (COUNT requests only) and cuts the plan.
    fn run(&self, py: Python<'_>) -> BindResult<SharePlan> {
        let outcome = block_on(py, share_plan_task(self.client.clone(), self.request.clone(), self.shares))??;
        Ok(plan_into_py(py, outcome)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, request, shares) = (self.client.clone(), self.request.clone(), self.shares);
        crate::runtime::future_into_py(py, async move {
            let outcome = share_plan_task(client, request, shares).await;
            Python::attach(|py| plan_into_py(py, outcome.map_err(BindError::from)?))
        })
    }
}

/// The options of `_share_plan_job`: the backfill's, and `ShareOptions`.
pub fn share_plan_options(py: Python<'_>, request: &mut BackfillRequest, options: Option<&Bound<'_, PyDict>>) -> BindResult<ShareOptions> {
    let mut shares = ShareOptions::default();
    convert::Kwargs::new(py, options)?.fill(request)?.fill(&mut shares)?.finish()?;
    request.plan()?;
    Ok(shares)
}

/// A share fetched into its stage (from `QboClient.stage_share`): a small handle, safe to pass
/// between processes as its `manifest` path.
#[pyclass(frozen, module = "qbo_rs", get_all)]
pub struct StagedShare {
    pub label: String,
    pub entity: String,
    /// "ok" (every window staged) or "failed" (see `report.failed_windows`; the windows that
    /// were read are kept, and a fetch with the same `run_id` reads only the others).
    pub status: String,
    /// The export's handle; None when no window could be staged.
    pub manifest: Option<PathBuf>,
    /// Windows staged or written by an earlier fetch with the same `run_id`: not read now.
    pub reused: usize,
    /// The share is already written (its export's receipt): nothing is left to export.
    pub exported: bool,
    /// The fetch, window by window, with the requests it made now.
    pub report: Py<BackfillReport>,
}

#[pymethods]
impl StagedShare {
    #[getter]
    fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn __repr__(&self) -> String {
        format!(
            "StagedShare(label={:?}, status={:?}, reused={}, exported={}, manifest={:?})",
            self.label,
            self.status,
            self.reused,
            if self.exported { "True" } else { "False" },
            self.manifest
        )
    }
}

/// A share's fetch, ready to run (from `QboClient._share_stage_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct ShareStageJob {
    pub(crate) client: QboClient,
    pub(crate) request: ShareStageRequest,
}

struct StageOutcome {
    report: CoreReport,
    result: ShareStageResult,
    label: String,
}

async fn share_stage_task(client: QboClient, request: ShareStageRequest) -> Result<StageOutcome, qbo_core::Error> {
    let label = request.share.label.clone();
    let (report, result) = qbo_core::stage::stage_share_reported(&client, request).await?;
    Ok(StageOutcome { report, result, label })
}

impl StageOutcome {
    fn into_py(self, py: Python<'_>) -> PyResult<StagedShare> {
        let ok = self.report.ok();
        let manifest = (self.result.exported || self.result.manifest.exists()).then_some(self.result.manifest);
        Ok(StagedShare {
            label: self.label,
            entity: self.report.entity.slug().to_string(),
            status: if ok { "ok" } else { "failed" }.into(),
            manifest,
            reused: self.result.reused,
            exported: self.result.exported,
            report: Py::new(py, BackfillReport::from_core(py, self.report)?)?,
        })
    }
}

#[pymethods]
impl ShareStageJob {
    /// Fetches the share with the GIL released.
    fn run(&self, py: Python<'_>) -> BindResult<StagedShare> {
        Ok(block_on(py, share_stage_task(self.client.clone(), self.request.clone()))??.into_py(py)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, request) = (self.client.clone(), self.request.clone());
        crate::runtime::future_into_py(py, async move {
            let outcome = share_stage_task(client, request).await;
            Python::attach(|py| outcome.map_err(BindError::from)?.into_py(py))
        })
    }
}

/// The share of a `ReadShare` or its JSON text.
pub fn share_of(py: Python<'_>, share: &Bound<'_, PyAny>) -> PyResult<CoreShare> {
    if let Ok(share) = share.cast::<ReadShare>() {
        return Ok(share.get().inner.clone());
    }
    match share.extract::<String>() {
        Ok(text) => Ok(ReadShare::from_json(py, &text)?.inner),
        Err(_) => Err(config_error(py, format!("share must be a ReadShare from plan_shares or its to_json() text, not {}", share.get_type().name()?))),
    }
}

/// A staged share's write, ready to run (from `_export_share_job`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct ShareExportJob {
    manifest: PathBuf,
    sinks: SinkOptions,
    keep: bool,
}

async fn share_export_task(manifest: PathBuf, sinks: SinkOptions, keep: bool) -> Result<CoreReport, qbo_core::Error> {
    qbo_core::stage::export_share_reported(&manifest, &sinks, keep).await
}

#[pymethods]
impl ShareExportJob {
    /// Writes the staged share into the sinks with the GIL released.
    fn run(&self, py: Python<'_>) -> BindResult<BackfillReport> {
        let report = block_on(py, share_export_task(self.manifest.clone(), self.sinks.clone(), self.keep))??;
        Ok(BackfillReport::from_core(py, report)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (manifest, sinks, keep) = (self.manifest.clone(), self.sinks.clone(), self.keep);
        crate::runtime::future_into_py(py, async move {
            let result = share_export_task(manifest, sinks, keep).await;
            Python::attach(|py| BackfillReport::from_core(py, result.map_err(BindError::from)?))
        })
    }
}

/// A staged share's write (the `manifest` of `QboClient.stage_share`) with its sink options
/// checked. Options: the core's `SinkConfig`, `postgres` (a `PostgresWriter`), `keep_staged`.
#[pyfunction]
#[pyo3(signature = (manifest, **options))]
pub fn _export_share_job(py: Python<'_>, manifest: PathBuf, options: Option<&Bound<'_, PyDict>>) -> PyResult<ShareExportJob> {
    let (sinks, keep) = crate::stage::export_options(py, options)?;
    Ok(ShareExportJob { manifest, sinks, keep })
}
