//! A PostgreSQL RAW table (`raw.qb_invoices`) read as Arrow record batches with the columns of a
//! RAW file's, the payload in PostgreSQL's JSONB text form (the same JSON value, keys
//! reordered). Rows come through a server-side portal a batch at a time, from one snapshot, so
//! memory stays bounded whatever the table's size.

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use serde_json::value::RawValue;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use qbo_core::error::Error;
use qbo_core::options::{unknown_option, OptionSet, OptionValue};
use qbo_core::sink::postgres::{pg_error, PostgresOptions};
use qbo_core::Entity;
use qbo_pg::{PgWriter, RowFilter, StoredRow, TableRef};

use crate::fields::{Columns, LineValues};
use crate::{RawEntity, DEFAULT_BATCH_ROWS};

/// Which rows of a RAW table to read, and how many per batch: the one definition of the read's
/// options and their defaults.
#[derive(Debug, Clone)]
pub struct PgReadOptions {
    /// Only this realm's rows (default: every realm in the table).
    pub realm_id: Option<String>,
    /// Leave out the rows of records QuickBooks deleted (default false: they come with
    /// `deleted_at_utc` set).
    pub live_only: bool,
    /// Rows per record batch (default [`DEFAULT_BATCH_ROWS`]).
    pub batch_rows: usize,
}

impl Default for PgReadOptions {
    fn default() -> Self {
        PgReadOptions { realm_id: None, live_only: false, batch_rows: DEFAULT_BATCH_ROWS }
    }
}

impl OptionSet for PgReadOptions {
    const NAMES: &'static [&'static str] = &["realm_id", "live_only", "batch_rows"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        match name {
            "realm_id" => self.realm_id = value.optional_text(name)?,
            "live_only" => self.live_only = value.boolean(name)?,
            "batch_rows" => {
                self.batch_rows = match value {
                    OptionValue::None => DEFAULT_BATCH_ROWS,
                    value => value.whole(name)?,
                };
                if self.batch_rows == 0 {
                    return Err(Error::config("batch_rows must be at least 1"));
                }
            }
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// A RAW table checked readable, ready to be read any number of times.
#[derive(Debug, Clone)]
pub struct PgTable {
    postgres: PostgresOptions,
    table: TableRef,
    entity: RawEntity,
    options: PgReadOptions,
}

impl PgTable {
    /// Connects once to check that the table of `entity` can be read (it exists, SELECT is
    /// granted), so a wrong DSN, schema or prefix fails here, naming what to fix.
    pub async fn open(postgres: PostgresOptions, entity: Entity, options: PgReadOptions) -> Result<Self, Error> {
        let table = postgres.table(entity)?;
        let writer = PgWriter::connect(&postgres.config).await.map_err(pg_error)?;
        writer.check_readable(&table).await.map_err(pg_error)?;
        Ok(PgTable { postgres, table, entity: entity.into(), options })
    }

    pub fn entity(&self) -> RawEntity {
        self.entity
    }

    /// The quoted table, e.g. `"raw"."qb_invoices"`.
    pub fn table(&self) -> String {
        self.table.quoted()
    }

    /// `user@host:port/db` (never the password).
    pub fn target(&self) -> String {
        self.postgres.config.target()
    }

    /// A fresh read, run as a task on `runtime`. The task hands each batch over a channel of
    /// one, so it fetches the next chunk while the consumer takes this one, and no further; a
    /// consumer that drops the reader ends the read.
    pub fn reader(&self, runtime: &Handle) -> PgTableReader {
        let (batches, receiver) = mpsc::channel(1);
        let table = self.clone();
        runtime.spawn(async move {
            if let Err(e) = table.read_into(&batches).await {
                let _ = batches.send(Err(external(e))).await;
            }
        });
        PgTableReader { schema: self.entity.schema(), batches: receiver }
    }

    async fn read_into(&self, batches: &mpsc::Sender<Result<RecordBatch, ArrowError>>) -> Result<(), Error> {
        let writer = PgWriter::connect(&self.postgres.config).await.map_err(pg_error)?;
        let filter = RowFilter { realm_id: self.options.realm_id.clone(), live_only: self.options.live_only };
        let mut columns = Columns::new(self.entity, self.entity.schema());
        let entity_name = Entity::from(self.entity).qbo_name();
        writer
            .read_rows(&self.table, &filter, self.options.batch_rows, |rows| {
                let batch = batch_of(&mut columns, entity_name, &rows);
                let more = batch.is_ok();
                async move { batches.send(batch).await.is_ok() && more }
            })
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

/// The rows of one chunk as a record batch (none of them when one is not a RAW record).
fn batch_of(columns: &mut Columns, entity: &str, rows: &[StoredRow]) -> Result<RecordBatch, ArrowError> {
    for row in rows {
        let bad = |why: String| ArrowError::ExternalError(Box::new(Error::Decode(format!("row {:?}: {why}", row.id))));
        let payload: &RawValue = serde_json::from_str(&row.payload_json).map_err(|e| bad(e.to_string()))?;
        let values = LineValues {
            id: &row.id,
            realm_id: &row.realm_id,
            entity,
            last_updated_ms: row.last_updated_utc.timestamp_millis(),
            sync_token: row.sync_token,
            ingested_ms: row.ingested_at_utc.timestamp_millis(),
            window_start_ms: row.extract_window_start_utc.timestamp_millis(),
            window_end_ms: row.extract_window_end_utc.timestamp_millis(),
            page_number: row.page_number,
            page_size: row.page_size,
            deleted_ms: row.deleted_at_utc.map(|t| t.timestamp_millis()),
            payload,
        };
        columns.push_values(&values).map_err(bad)?;
    }
    columns.finish()
}

fn external(e: Error) -> ArrowError {
    ArrowError::ExternalError(Box::new(e))
}

/// The batches of one read of a [`PgTable`], as a consumer pulls them. Must be pulled from
/// outside the runtime's threads (it waits for each batch), as Python consumers do.
pub struct PgTableReader {
    schema: SchemaRef,
    batches: mpsc::Receiver<Result<RecordBatch, ArrowError>>,
}

impl Iterator for PgTableReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.blocking_recv()
    }
}

impl RecordBatchReader for PgTableReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
