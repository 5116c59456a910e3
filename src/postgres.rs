//! `PostgresWriter`: where the PostgreSQL sink writes (DSN or `POSTGRES_*`, schema, table
//! prefix), checked when built (no I/O) and usable to prepare or inspect the RAW tables.
//! Pass it to `QboClient.backfill(..., sink="postgres", postgres=writer)`.

use pyo3::prelude::*;
use qbo_core::sink::postgres::PostgresOptions;
use qbo_core::Entity;

use crate::convert;
use crate::errors::to_py;
use crate::runtime::block_on;

#[pyclass(frozen, module = "qbo_rs")]
pub struct PostgresWriter {
    pub options: PostgresOptions,
}

impl PostgresWriter {
    pub fn build(py: Python<'_>, dsn: Option<&str>, schema: &str, table_prefix: &str) -> PyResult<PostgresOptions> {
        PostgresOptions::from_dsn_or_env(dsn, schema, table_prefix).map_err(|e| to_py(py, e))
    }
}

async fn connect(options: &PostgresOptions, entity: Entity) -> Result<qbo_core::sink::postgres::PostgresSink, qbo_core::Error> {
    qbo_core::sink::postgres::PostgresSink::open(options, entity).await
}

#[pymethods]
impl PostgresWriter {
    /// `dsn` like `postgresql://user:pass@host:5432/db?sslmode=prefer`; without it the
    /// POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD variables.
    #[new]
    #[pyo3(signature = (dsn = None, *, schema = "raw", table_prefix = "qb_"))]
    fn new(py: Python<'_>, dsn: Option<&str>, schema: &str, table_prefix: &str) -> PyResult<Self> {
        Ok(PostgresWriter { options: Self::build(py, dsn, schema, table_prefix)? })
    }

    /// `user@host:port/db` (never the password).
    #[getter]
    fn target(&self) -> String {
        self.options.config.target()
    }

    /// The quoted table an entity is written to, e.g. `"raw"."qb_invoices"`.
    fn table(&self, py: Python<'_>, entity: &str) -> PyResult<String> {
        let entity = convert::entity(py, entity)?;
        Ok(self.options.table(entity).map_err(|e| to_py(py, e))?.quoted())
    }

    /// Connects, creates the schema and tables if missing and checks privileges (named
    /// errors for a wrong password, a missing database or a missing GRANT).
    fn ensure_tables(&self, py: Python<'_>) -> PyResult<()> {
        let options = self.options.clone();
        block_on(py, async move {
            for entity in Entity::ALL {
                connect(&options, entity).await?;
            }
            Ok(())
        })?
        .map_err(|e| to_py(py, e))
    }

    /// Rows in the entity's table.
    fn count(&self, py: Python<'_>, entity: &str) -> PyResult<u64> {
        let entity = convert::entity(py, entity)?;
        let options = self.options.clone();
        block_on(py, async move {
            let sink = connect(&options, entity).await?;
            sink.count().await
        })?
        .map_err(|e| to_py(py, e))
    }

    fn __repr__(&self) -> String {
        format!("PostgresWriter(target={:?}, schema={:?}, table_prefix={:?})", self.options.config.target(), self.options.schema, self.options.table_prefix)
    }
}
