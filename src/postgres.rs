//! `PostgresWriter`: where the PostgreSQL sink writes (DSN or `POSTGRES_*`, schema, table
//! prefix), checked when built (no I/O) and usable to prepare or inspect the RAW tables.
//! Pass it to `QboClient.backfill(..., sink="postgres", postgres=writer)`.

use pyo3::prelude::*;
use qbo_core::sink::postgres::PostgresOptions;
use qbo_core::Entity;

use crate::convert;
use crate::errors::{BindError, BindResult};
use crate::runtime::block_on;

#[pyclass(frozen, module = "qbo_rs")]
pub struct PostgresWriter {
    pub options: PostgresOptions,
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
    fn new(dsn: Option<&str>, schema: &str, table_prefix: &str) -> BindResult<Self> {
        Ok(PostgresWriter { options: PostgresOptions::from_dsn_or_env(dsn, schema, table_prefix)? })
    }

    /// `user@host:port/db` (never the password).
    #[getter]
    fn target(&self) -> String {
        self.options.config.target()
    }

    /// The quoted table an entity is written to, e.g. `"raw"."qb_invoices"`.
    fn table(&self, entity: &str) -> BindResult<String> {
        let entity = convert::entity(entity)?;
        Ok(self.options.table(entity)?.quoted())
    }

    /// Connects, creates the schema and tables if missing and checks privileges (named
    /// errors for a wrong password, a missing database or a missing GRANT).
    fn ensure_tables(&self, py: Python<'_>) -> BindResult<()> {
        let options = self.options.clone();
        block_on(py, async move {
            for entity in Entity::ALL {
                connect(&options, entity).await?;
            }
            Ok(())
        })?
        .map_err(BindError::from)
    }

    /// Rows in the entity's table.
    fn count(&self, py: Python<'_>, entity: &str) -> BindResult<u64> {
        let entity = convert::entity(entity)?;
        let options = self.options.clone();
        block_on(py, async move {
            let sink = connect(&options, entity).await?;
            sink.count().await
        })?
        .map_err(BindError::from)
    }

    fn __repr__(&self) -> String {
        format!("PostgresWriter(target={:?}, schema={:?}, table_prefix={:?})", self.options.config.target(), self.options.schema, self.options.table_prefix)
    }
}
