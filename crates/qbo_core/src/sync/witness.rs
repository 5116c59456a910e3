//! A sink that passes everything to another and notes the id of every record written: what a
//! reconciliation compares with the ids the sinks hold.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::sink::{BoxFuture, DeleteBatch, DeleteOutcome, Sink, SyncState, SyncView, WriteBatch, WriteOutcome};

pub(super) struct Witness {
    inner: Arc<dyn Sink>,
    seen: Mutex<HashSet<String>>,
}

impl Witness {
    pub(super) fn new(inner: Arc<dyn Sink>) -> Self {
        Witness { inner, seen: Mutex::new(HashSet::new()) }
    }

    /// Every id written through this sink so far.
    pub(super) fn seen(&self) -> HashSet<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Sink for Witness {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn target(&self) -> String {
        self.inner.target()
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).extend(batch.records.iter().map(|r| r.id.clone()));
        self.inner.write(batch)
    }

    fn delete(&self, batch: Arc<DeleteBatch>) -> BoxFuture<'_, Result<DeleteOutcome, Error>> {
        self.inner.delete(batch)
    }

    fn sync_view<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<SyncView, Error>> {
        self.inner.sync_view(realm_id)
    }

    fn live_ids<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        self.inner.live_ids(realm_id)
    }

    fn save_sync_state<'a>(&'a self, realm_id: &'a str, state: SyncState) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.save_sync_state(realm_id, state)
    }

    fn batch_bytes(&self) -> usize {
        self.inner.batch_bytes()
    }

    fn overlap_writes(&self) -> bool {
        self.inner.overlap_writes()
    }
}
