//! `sync` in Python: a checked sync job (from `_sync_job`) and its report.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use qbo_core::sink::{open_sinks, SinkConfig, SinkOptions};
use qbo_core::sync::{run_sync, SyncMode, SyncReport as CoreReport, SyncRequest};

use crate::client::QboClient;
use crate::convert;
use crate::errors::{BindError, BindResult};
use crate::report::{requests_by_kind, BackfillReport};
use crate::runtime::block_on;

/// A sync with its options parsed and checked (nothing is sent yet). Options and defaults: the
/// core's `SyncRequest` and `SinkConfig`, plus `postgres`, a `PostgresWriter`.
#[pyfunction]
#[pyo3(signature = (client, entity, **options))]
pub fn _sync_job(py: Python<'_>, client: &QboClient, entity: &str, options: Option<&Bound<'_, PyDict>>) -> BindResult<SyncJob> {
    let mut request = SyncRequest::new(convert::entity(entity)?);
    let mut kwargs = convert::Kwargs::new(py, options)?;
    let mut sinks = SinkConfig { postgres: convert::postgres_target(py, kwargs.take(&["postgres"]))?, ..SinkConfig::default() };
    kwargs.fill(&mut request)?.fill(&mut sinks)?.finish()?;
    request.read.plan()?;
    Ok(SyncJob { client: client.core().clone(), request, sinks: sinks.resolve()? })
}

#[pyclass(frozen, module = "qbo_rs")]
pub struct SyncJob {
    client: qbo_core::QboClient,
    request: SyncRequest,
    sinks: SinkOptions,
}

async fn sync_task(client: qbo_core::QboClient, request: SyncRequest, sinks: SinkOptions) -> Result<CoreReport, qbo_core::Error> {
    let sinks = open_sinks(request.entity(), &sinks).await?;
    run_sync(&client, sinks, &request, None, &qbo_core::stop::StopSignal::new()).await
}

#[pymethods]
impl SyncJob {
    /// Runs the sync with the GIL released.
    fn run(&self, py: Python<'_>) -> BindResult<SyncReport> {
        let report = block_on(py, sync_task(self.client.clone(), self.request.clone(), self.sinks.clone()))??;
        Ok(SyncReport::from_core(py, report)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (client, request, sinks) = (self.client.clone(), self.request.clone(), self.sinks.clone());
        crate::runtime::future_into_py(py, async move {
            let result = sync_task(client, request, sinks).await;
            Python::attach(|py| SyncReport::from_core(py, result.map_err(BindError::from)?))
        })
    }

    fn __repr__(&self) -> String {
        format!("SyncJob(entity={:?})", self.request.entity().slug())
    }
}

/// What a sync did: the mode (`initial`, `incremental`, `reconciliation` and why), the rows the
/// read inserted, updated or found unchanged, the deletions found and marked, the requests by
/// kind, and the read itself as a `BackfillReport`.
#[pyclass(frozen, get_all, module = "qbo_rs")]
pub struct SyncReport {
    entity: String,
    mode: String,
    /// Why a reconciliation ran instead of a sweep (None otherwise).
    reason: Option<String>,
    read_from: DateTime<Utc>,
    read_through: DateTime<Utc>,
    swept_from: Option<DateTime<Utc>>,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    /// Records marked deleted now (in the first sink).
    deleted: u64,
    deletions_found: u64,
    deletions_refuted: u64,
    /// Per sink: marked, already_marked, newer_kept, not_held.
    deletions_by_sink: HashMap<String, HashMap<String, u64>>,
    requests: u64,
    requests_by_kind: HashMap<String, u64>,
    duration_s: f64,
    state_saved: bool,
    ok: bool,
    read: Py<BackfillReport>,
}

#[pymethods]
impl SyncReport {
    fn __repr__(&self) -> String {
        format!(
            "SyncReport(entity={:?}, mode={:?}, inserted={}, updated={}, unchanged={}, deleted={}, requests={}, ok={})",
            self.entity,
            self.mode,
            self.inserted,
            self.updated,
            self.unchanged,
            self.deleted,
            self.requests,
            if self.ok { "True" } else { "False" }
        )
    }
}

impl SyncReport {
    fn from_core(py: Python<'_>, r: CoreReport) -> PyResult<Self> {
        let rows = r.rows();
        let deletions_by_sink = r
            .deletions
            .iter()
            .map(|d| {
                let o = d.outcome;
                let counts = [("marked", o.marked), ("already_marked", o.already_marked), ("newer_kept", o.newer_kept), ("not_held", o.not_held)];
                (d.sink.clone(), counts.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            })
            .collect();
        Ok(SyncReport {
            entity: r.entity.qbo_name().to_string(),
            mode: r.mode.name().to_string(),
            reason: match &r.mode {
                SyncMode::Reconciliation { reason } => Some(reason.clone()),
                _ => None,
            },
            read_from: r.read_from,
            read_through: r.read_through,
            swept_from: r.swept_from,
            inserted: rows.inserted,
            updated: rows.updated,
            unchanged: rows.unchanged + rows.stale,
            deleted: r.marked_deleted(),
            deletions_found: r.deletions_found,
            deletions_refuted: r.deletions_refuted,
            deletions_by_sink,
            requests: r.requests.api_calls(),
            requests_by_kind: requests_by_kind(&r.requests),
            duration_s: r.duration.as_secs_f64(),
            state_saved: r.state_saved,
            ok: r.ok(),
            read: Py::new(py, BackfillReport::from_core(py, r.read)?)?,
        })
    }
}
