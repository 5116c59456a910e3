//! `read_postgres`: a PostgreSQL RAW table as an Arrow stream, through the Arrow PyCapsule
//! interface like `read_txt`'s. Each stream is a fresh read, run on the shared runtime and pulled
//! a batch at a time.

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};

use qbo_arrow::{PgReadOptions, PgTable};
use qbo_core::sink::SinkConfig;

use crate::convert;
use crate::errors::BindResult;
use crate::runtime::{block_on, runtime};

/// A RAW table checked readable (see `qbo_rs.read_postgres`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct RawPostgres {
    table: PgTable,
}

#[pymethods]
impl RawPostgres {
    /// `invoice`, `customer` or `item`.
    #[getter]
    fn entity(&self) -> &'static str {
        self.table.entity().slug()
    }

    /// The quoted table, e.g. `"raw"."qb_invoices"`.
    #[getter]
    fn table(&self) -> String {
        self.table.table()
    }

    /// A fresh read of the table. `requested_schema` is a hint the interface lets a producer
    /// ignore: the columns are fixed by the entity.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = self.table.reader(runtime().handle());
        PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), c"arrow_array_stream")
    }

    fn __repr__(&self) -> String {
        format!("RawPostgres(table={:?}, target={:?})", self.table.table(), self.table.target())
    }
}

/// Checks, with the GIL released, that the entity's RAW table can be read. Options and
/// defaults: the core's `PgReadOptions` and the PostgreSQL part of `SinkConfig`, plus
/// `postgres`, a `PostgresWriter`.
#[pyfunction]
#[pyo3(signature = (entity, **options))]
pub fn _read_postgres(py: Python<'_>, entity: &str, options: Option<&Bound<'_, PyDict>>) -> BindResult<RawPostgres> {
    let entity = convert::entity(entity)?;
    let mut kwargs = convert::Kwargs::new(py, options)?;
    let mut target = SinkConfig { postgres: convert::postgres_target(py, kwargs.take(&["postgres"]))?, ..SinkConfig::default() };
    let mut read = PgReadOptions::default();
    kwargs.fill_only(&mut target, SinkConfig::POSTGRES_NAMES)?.fill(&mut read)?.finish()?;
    let postgres = target.postgres_target()?;
    let table = block_on(py, PgTable::open(postgres, entity, read))??;
    Ok(RawPostgres { table })
}
