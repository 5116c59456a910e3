//! `QboClient.read`: a range read by the backfill's engine (same plan, windows, keyset paging,
//! tie groups, newest version per id) into Arrow record batches in memory instead of a RAW file,
//! handed to Python through the Arrow PyCapsule interface like `read_txt`'s.

use std::sync::Arc;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchIterator};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use qbo_arrow::{ArrowSink, RawEntity};
use qbo_core::backfill::{run_backfill, BackfillReport as CoreReport, BackfillRequest, Progress};
use qbo_core::sink::Sink;

use crate::errors::{BindError, BindResult};
use crate::progress::PyProgress;
use crate::report::BackfillReport;
use crate::runtime::block_on;

/// A range read ready to run (from `QboClient._read_job`): checked options and the client.
#[pyclass(frozen, module = "qbo_rs")]
pub struct ReadJob {
    pub client: qbo_core::QboClient,
    pub request: BackfillRequest,
    pub on_progress: Option<Py<PyAny>>,
}

type Read = (CoreReport, Vec<RecordBatch>, RawEntity);

async fn read_task(client: qbo_core::QboClient, request: BackfillRequest, progress: Option<Arc<dyn Progress>>) -> Result<Read, qbo_core::Error> {
    let sink = ArrowSink::new(request.entity);
    let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
    let report = run_backfill(&client, sinks, &request, progress).await?;
    let batches = sink.finish().map_err(|e| qbo_core::Error::Sink(format!("building the record batches: {e}")))?;
    Ok((report, batches, sink.entity()))
}

impl ReadJob {
    fn task(&self, py: Python<'_>) -> impl std::future::Future<Output = Result<Read, qbo_core::Error>> + Send + 'static {
        let progress = self.on_progress.as_ref().map(|callback| PyProgress::forwarding(callback.clone_ref(py), &self.client));
        read_task(self.client.clone(), self.request.clone(), progress)
    }
}

fn records_read(py: Python<'_>, (report, batches, entity): Read) -> PyResult<RecordsRead> {
    Ok(RecordsRead { report: Py::new(py, BackfillReport::from_core(py, report)?)?, batches, entity })
}

#[pymethods]
impl ReadJob {
    /// Reads with the GIL released; Ctrl-C stops it between requests.
    fn run(&self, py: Python<'_>) -> BindResult<RecordsRead> {
        let read = block_on(py, self.task(py))??;
        Ok(records_read(py, read)?)
    }

    /// The same, as an awaitable on the shared tokio runtime.
    fn run_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let task = self.task(py);
        crate::runtime::future_into_py(py, async move {
            let read = task.await;
            Python::attach(|py| records_read(py, read.map_err(BindError::from)?))
        })
    }
}

/// The records a range read returned, as Arrow record batches (the columns of `read_txt`'s),
/// and the report of the read.
#[pyclass(frozen, module = "qbo_rs")]
pub struct RecordsRead {
    report: Py<BackfillReport>,
    batches: Vec<RecordBatch>,
    entity: RawEntity,
}

#[pymethods]
impl RecordsRead {
    /// `invoice`, `customer` or `item`.
    #[getter]
    fn entity(&self) -> &'static str {
        self.entity.slug()
    }

    /// What the read did, window by window.
    #[getter]
    fn report(&self, py: Python<'_>) -> Py<BackfillReport> {
        self.report.clone_ref(py)
    }

    #[getter]
    fn ok(&self, py: Python<'_>) -> bool {
        self.report.bind(py).get().windows.iter().all(crate::report::WindowReport::is_ok)
    }

    /// Records held (one per id).
    #[getter]
    fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// A stream over the batches held (they are shared, not copied).
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new(self.batches.clone().into_iter().map(Ok), self.entity.schema());
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), c"arrow_array_stream")
    }

    fn __repr__(&self) -> String {
        format!("RecordsRead(entity={:?}, rows={}, batches={})", self.entity(), self.num_rows(), self.batches.len())
    }
}
