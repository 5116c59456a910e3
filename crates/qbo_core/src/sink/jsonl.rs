//! The embedded default sink: `data/invoices.txt` and friends, one JSON object a line,
//! kept by [`qbo_jsonl::JsonlStore`] (crash-safe, one line per id, newest version wins).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::DateTime;
use qbo_jsonl::{JsonlStore, StoreOptions, StoreRecord, Version};

use crate::entity::Entity;
use crate::error::Error;
use crate::sink::record::{raw_line, LineHead, LinePrefix};
use crate::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};

pub struct JsonlSink {
    path: PathBuf,
    store: Arc<Mutex<JsonlStore>>,
}

/// Reads `id` and the version from a RAW line (used only to rebuild the store's index).
fn key_of_line(line: &[u8]) -> Option<(String, Version)> {
    let head: LineHead<'_> = serde_json::from_slice(line).ok()?;
    let updated = DateTime::parse_from_rfc3339(&head.last_updated_utc).ok()?;
    Some((
        head.id.into_owned(),
        Version { updated_at_ms: updated.timestamp_millis(), sync_token: head.sync_token.parse().unwrap_or(0) },
    ))
}

impl JsonlSink {
    /// Opens (creating if needed) `<data_dir>/<entity plural>.txt`, repairing it if a
    /// previous run was killed mid-write.
    pub fn open(data_dir: &Path, entity: Entity, fsync: bool) -> Result<Self, Error> {
        let path = data_dir.join(format!("{}.txt", entity.plural()));
        let options = StoreOptions { fsync, ..StoreOptions::new(key_of_line) };
        let store = JsonlStore::open(&path, options).map_err(|e| Error::Sink(e.to_string()))?;
        Ok(JsonlSink { path, store: Arc::new(Mutex::new(store)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Distinct records in the file.
    pub fn len(&self) -> usize {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        "txt"
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            // Serialising and writing are blocking work: keep them off the async workers.
            tokio::task::spawn_blocking(move || {
                let prefix = LinePrefix::new(&batch);
                let records = batch
                    .records
                    .iter()
                    .map(|r| {
                        let mut line = Vec::new();
                        raw_line(&batch, r, &prefix, &mut line);
                        let (updated_at_ms, sync_token) = r.version();
                        StoreRecord { id: r.id.clone(), version: Version { updated_at_ms, sync_token }, line }
                    })
                    .collect();
                let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
                let outcome = store.upsert(records).map_err(|e| Error::Sink(e.to_string()))?;
                Ok(WriteOutcome {
                    inserted: outcome.inserted as u64,
                    updated: outcome.updated as u64,
                    unchanged: (outcome.unchanged + outcome.duplicates_in_batch) as u64,
                    stale: outcome.stale as u64,
                })
            })
            .await
            .map_err(|e| Error::Sink(format!("the writer thread failed: {e}")))?
        })
    }
}
