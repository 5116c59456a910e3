//! A backfill's records as Arrow record batches in memory (`QboClient.read`): a sink of the
//! engine that turns each batch it is given into one record batch of the RAW columns, keeping the
//! newest version of each id, as the RAW files do. Memory holds the result and the batch being
//! turned, nothing more: no JSON line is built, no file written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow_array::{make_array, RecordBatch};
use arrow_data::transform::MutableArrayData;
use arrow_schema::{ArrowError, SchemaRef};
use serde_json::value::RawValue;

use qbo_core::error::Error;
use qbo_core::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};

use crate::fields::{Columns, LineValues};
use crate::RawEntity;

/// The newest version held of an id, and where: (batch, row).
struct Held {
    version: (i64, u64),
    batch: usize,
    row: usize,
}

#[derive(Default)]
struct Store {
    batches: Vec<RecordBatch>,
    /// Rows of each batch that a newer version read later replaced.
    replaced: HashMap<usize, Vec<usize>>,
    newest: HashMap<String, Held>,
}

/// Collects a backfill's records as Arrow; [`ArrowSink::finish`] hands them over.
pub struct ArrowSink {
    entity: RawEntity,
    schema: SchemaRef,
    store: Mutex<Store>,
}

pub const NAME: &str = "arrow";

impl ArrowSink {
    pub fn new(entity: qbo_core::Entity) -> Arc<Self> {
        let entity = RawEntity::from(entity);
        Arc::new(ArrowSink { entity, schema: entity.schema(), store: Mutex::new(Store::default()) })
    }

    pub fn entity(&self) -> RawEntity {
        self.entity
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The record batches, in the order they were read, each id once at its newest version.
    pub fn finish(&self) -> Result<Vec<RecordBatch>, ArrowError> {
        let store = std::mem::take(&mut *self.store.lock().unwrap_or_else(|p| p.into_inner()));
        let Store { batches, replaced, .. } = store;
        batches
            .into_iter()
            .enumerate()
            .map(|(index, batch)| match replaced.get(&index) {
                None => Ok(batch),
                Some(rows) => without_rows(&batch, rows),
            })
            .filter(|batch| batch.as_ref().map_or(true, |b| b.num_rows() > 0))
            .collect()
    }

    fn add(&self, batch: &WriteBatch) -> Result<WriteOutcome, Error> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let index = store.batches.len();
        let mut columns = Columns::new(self.entity, self.schema.clone());
        let mut outcome = WriteOutcome::default();
        let realm_id = batch.realm_id.as_str();
        let entity = batch.entity.qbo_name();
        for record in &batch.records {
            let version = record.version();
            match store.newest.get(&record.id) {
                Some(held) if held.version > version => {
                    outcome.stale += 1;
                    continue;
                }
                Some(held) if held.version == version => {
                    outcome.unchanged += 1;
                    continue;
                }
                Some(held) => {
                    let (batch, row) = (held.batch, held.row);
                    store.replaced.entry(batch).or_default().push(row);
                    outcome.updated += 1;
                }
                None => outcome.inserted += 1,
            }
            let payload: &RawValue = serde_json::from_slice(&record.payload).map_err(|e| Error::Decode(format!("record {}: {e}", record.id)))?;
            let sync_token = i64::try_from(version.1).unwrap_or(i64::MAX);
            let values = LineValues {
                id: &record.id,
                realm_id,
                entity,
                last_updated_ms: version.0,
                sync_token,
                ingested_ms: batch.ingested_at.timestamp_millis(),
                window_start_ms: batch.window.start.timestamp_millis(),
                window_end_ms: batch.window.end.timestamp_millis(),
                page_number: i32::try_from(record.page_number).unwrap_or(i32::MAX),
                page_size: i32::try_from(batch.page_size).unwrap_or(i32::MAX),
                deleted_ms: None,
                payload,
            };
            let row = columns.rows();
            columns.push_values(&values).map_err(|why| Error::Decode(format!("record {}: {why}", record.id)))?;
            store.newest.insert(record.id.clone(), Held { version, batch: index, row });
        }
        if columns.rows() > 0 {
            let built = columns.finish().map_err(|e| Error::Sink(format!("building a record batch: {e}")))?;
            store.batches.push(built);
        }
        Ok(outcome)
    }
}

/// `batch` without `rows` (indices, any order).
fn without_rows(batch: &RecordBatch, rows: &[usize]) -> Result<RecordBatch, ArrowError> {
    let mut drop = vec![false; batch.num_rows()];
    for row in rows {
        drop[*row] = true;
    }
    let kept = drop.iter().filter(|d| !**d).count();
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            let data = column.to_data();
            let mut out = MutableArrayData::new(vec![&data], false, kept);
            let mut start = None;
            for (row, dropped) in drop.iter().chain(std::iter::once(&true)).enumerate() {
                match (start, dropped) {
                    (None, false) => start = Some(row),
                    (Some(from), true) => {
                        out.try_extend(0, from, row)?;
                        start = None;
                    }
                    _ => {}
                }
            }
            Ok(make_array(out.freeze()))
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    RecordBatch::try_new(batch.schema(), columns)
}

impl Sink for ArrowSink {
    fn name(&self) -> &str {
        NAME
    }

    fn target(&self) -> String {
        "memory (Arrow record batches)".to_string()
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        Box::pin(async move { self.add(&batch) })
    }
}
