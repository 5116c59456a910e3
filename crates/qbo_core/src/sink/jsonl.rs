//! The embedded default sink: `data/invoices.txt` and friends, one JSON object a line,
//! kept by [`qbo_jsonl::JsonlStore`] (crash-safe, one line per id, newest version wins).
//!
//! Every commit of the store costs a fixed set of fsyncs (journal, data, index, manifest), so
//! the sink commits through one writer thread per file that takes every batch waiting at that
//! moment and writes them as **one** commit (group commit). Windows build their lines in
//! parallel and hand them over; while the writer syncs, the next batches queue up and go
//! together in the next commit. The slower the disk, the larger the groups: fsyncs stop
//! bounding the throughput, and each window still learns what its own batch did.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use chrono::DateTime;
use qbo_jsonl::{JsonlStore, LineBatch, StoreOptions, UpsertOutcome, Version};
use tokio::sync::oneshot;

use crate::entity::Entity;
use crate::error::Error;
use crate::sink::jsonl_sync::{read_state, scan_live_ids, scan_view, state_path, write_state};
use crate::sink::record::{deleted_line, raw_line, LineDeletion, LineHead, LinePrefix};
use crate::sink::{BoxFuture, DeleteBatch, DeleteOutcome, Sink, SyncState, SyncView, WriteBatch, WriteOutcome};

/// This sink's [`Sink::name`].
pub const NAME: &str = "txt";

/// A group stops growing at this many line bytes, so a commit stays short however far the
/// writer falls behind: no window in a group hears back before all of it is durable.
const MAX_GROUP_BYTES: usize = 8 << 20;

pub struct JsonlSink {
    path: PathBuf,
    commits: mpsc::Sender<Pending>,
}

/// Work waiting for the writer.
enum Pending {
    /// One window's batch, its lines built: goes into a group commit with the others waiting.
    Lines { lines: LineBatch, done: oneshot::Sender<Result<UpsertOutcome, String>> },
    /// Deletions: each needs the stored line it rewrites, so they are committed on their own.
    Deletions { batch: Arc<DeleteBatch>, done: oneshot::Sender<Result<DeleteOutcome, String>> },
    /// A read of the committed lines (for a sync), run in its turn so it sees every commit before it.
    Inspect(Box<dyn FnOnce(&mut JsonlStore) + Send>),
}

impl Pending {
    fn line_bytes(&self) -> usize {
        match self {
            Pending::Lines { lines, .. } => lines.line_bytes(),
            Pending::Deletions { .. } | Pending::Inspect(_) => 0,
        }
    }
}

/// Reads `id` and the version from a RAW line (used only to rebuild the store's index).
fn key_of_line(line: &[u8]) -> Option<(String, Version)> {
    let head: LineHead<'_> = serde_json::from_slice(line).ok()?;
    let updated = DateTime::parse_from_rfc3339(&head.last_updated_utc).ok()?;
    Some((head.id.into_owned(), Version { updated_at_ms: updated.timestamp_millis(), sync_token: head.sync_token.parse().unwrap_or(0) }))
}

impl JsonlSink {
    /// Opens (creating if needed) `<data_dir>/<entity plural>.txt`, repairing it if a
    /// previous run was killed mid-write, and starts its writer thread (it ends with the sink).
    pub fn open(data_dir: &Path, entity: Entity, fsync: bool) -> Result<Self, Error> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(Error::config(format!("data_dir {} is a file, not a folder: give a folder for the RAW files", data_dir.display())));
        }
        let path = data_dir.join(format!("{}.txt", entity.plural()));
        let options = StoreOptions { fsync, ..StoreOptions::new(key_of_line) };
        let store = JsonlStore::open(&path, options).map_err(|e| Error::Sink(e.to_string()))?;
        // The writer thread owns the store: every commit goes through it.
        let store = Mutex::new(store);
        let (commits, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("qbo-rs-{}-writer", entity.plural()))
            .spawn(move || write_groups(&store, &queue))
            .map_err(|e| Error::Sink(format!("could not start the writer thread of {}: {e}", path.display())))?;
        Ok(JsonlSink { path, commits })
    }

    /// Runs `read` on the writer thread, after every commit queued before it.
    async fn inspect<T: Send + 'static>(&self, read: impl FnOnce(&mut JsonlStore) -> Result<T, String> + Send + 'static) -> Result<T, Error> {
        let (done, answer) = oneshot::channel();
        let job = Box::new(move |store: &mut JsonlStore| {
            let _ = done.send(read(store));
        });
        self.commits.send(Pending::Inspect(job)).map_err(|_| Error::Sink("the JSON-lines writer thread has stopped".into()))?;
        answer.await.map_err(|_| Error::Sink("the JSON-lines writer thread stopped during a read".into()))?.map_err(Error::Sink)
    }
}

/// The writer thread: waits for a batch, takes every other batch already waiting (up to
/// [`MAX_GROUP_BYTES`]), commits them together, answers each; deletions are committed alone, in
/// their turn. Ends when the sink is dropped.
fn write_groups(store: &Mutex<JsonlStore>, queue: &mpsc::Receiver<Pending>) {
    let mut next = None;
    loop {
        let Some(first) = next.take().or_else(|| queue.recv().ok()) else { return };
        let (lines, done) = match first {
            Pending::Lines { lines, done } => (lines, done),
            Pending::Deletions { batch, done } => {
                let _ = done.send(mark_deleted(&mut store.lock().unwrap_or_else(|p| p.into_inner()), &batch));
                continue;
            }
            Pending::Inspect(read) => {
                read(&mut store.lock().unwrap_or_else(|p| p.into_inner()));
                continue;
            }
        };
        let mut bytes = lines.line_bytes();
        let mut group = vec![(lines, done)];
        while bytes < MAX_GROUP_BYTES {
            match queue.try_recv() {
                Ok(p @ (Pending::Deletions { .. } | Pending::Inspect(_))) => {
                    next = Some(p);
                    break;
                }
                Ok(p) if bytes + p.line_bytes() > MAX_GROUP_BYTES => {
                    next = Some(p);
                    break;
                }
                Ok(Pending::Lines { lines, done }) => {
                    bytes += lines.line_bytes();
                    group.push((lines, done));
                }
                Err(_) => break,
            }
        }
        let (batches, answers): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let result = store.lock().unwrap_or_else(|p| p.into_inner()).upsert_groups(&batches);
        match result {
            Ok(outcomes) => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Rewrites the stored line of each deleted id as deleted (see [`deleted_line`]) and commits
/// them as one batch. A line written meanwhile by another process at a newer version wins, as
/// for any upsert.
fn mark_deleted(store: &mut JsonlStore, batch: &DeleteBatch) -> Result<DeleteOutcome, String> {
    let mut newest: std::collections::BTreeMap<&str, chrono::DateTime<chrono::Utc>> = std::collections::BTreeMap::new();
    for d in &batch.deletions {
        let at = newest.entry(&d.id).or_insert(d.deleted_at);
        *at = (*at).max(d.deleted_at);
    }
    let mut outcome = DeleteOutcome::default();
    let mut lines = LineBatch::with_capacity(newest.len(), 0);
    for (id, deleted_at) in newest {
        let Some(stored) = store.get(id).map_err(|e| e.to_string())? else {
            outcome.not_held += 1;
            continue;
        };
        match deleted_line(&stored, deleted_at, batch.learnt_at).map_err(|e| format!("id {id}: {e}"))? {
            LineDeletion::Mark { line, updated_at_ms, sync_token } => lines.push(id, Version { updated_at_ms, sync_token }, &line),
            LineDeletion::AlreadyMarked => outcome.already_marked += 1,
            LineDeletion::NewerKept => outcome.newer_kept += 1,
        }
    }
    if !lines.is_empty() {
        let written = store.upsert_groups(std::slice::from_ref(&lines)).map_err(|e| e.to_string())?.remove(0);
        outcome.marked += written.updated as u64;
        outcome.newer_kept += (written.stale + written.unchanged) as u64;
    }
    Ok(outcome)
}

impl Sink for JsonlSink {
    fn name(&self) -> &str {
        NAME
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    /// With group commit a write mostly waits for the writer thread's fsyncs: let the window
    /// fetch its next batch meanwhile.
    fn overlap_writes(&self) -> bool {
        true
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        let commits = self.commits.clone();
        Box::pin(async move {
            // Serialising is CPU work: build the lines on the blocking pool, in parallel with
            // the other windows, and leave only the commit to the writer thread.
            let (done, outcome) = oneshot::channel();
            tokio::task::spawn_blocking(move || {
                let prefix = LinePrefix::new(&batch);
                let payload_bytes: usize = batch.records.iter().map(|r| r.payload.len()).sum();
                let mut lines = LineBatch::with_capacity(batch.records.len(), payload_bytes + batch.records.len() * prefix.len_estimate());
                for r in &batch.records {
                    let (updated_at_ms, sync_token) = r.version();
                    lines.push_with(&r.id, Version { updated_at_ms, sync_token }, |buf| raw_line(&batch, r, &prefix, buf));
                }
                // The fetched pages can go now: only the lines are needed from here on.
                drop(batch);
                commits.send(Pending::Lines { lines, done })
            })
            .await
            .map_err(|e| Error::Sink(format!("building the lines failed: {e}")))?
            .map_err(|_| Error::Sink("the JSON-lines writer thread has stopped".into()))?;
            let outcome = outcome.await.map_err(|_| Error::Sink("the JSON-lines writer thread stopped during the write".into()))?.map_err(Error::Sink)?;
            Ok(WriteOutcome {
                inserted: outcome.inserted as u64,
                updated: outcome.updated as u64,
                unchanged: (outcome.unchanged + outcome.duplicates_in_batch) as u64,
                stale: outcome.stale as u64,
            })
        })
    }

    fn sync_view<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<SyncView, Error>> {
        Box::pin(async move {
            let (path, realm) = (state_path(&self.path, realm_id), realm_id.to_string());
            let state = tokio::task::spawn_blocking(move || read_state(&path, &realm)).await.map_err(|e| Error::Sink(e.to_string()))??;
            if state.is_some() {
                return Ok(SyncView { state, ..SyncView::default() });
            }
            // Before the first sync only: what the file holds, from a scan of its lines.
            let realm = realm_id.to_string();
            self.inspect(move |store| scan_view(store, &realm)).await
        })
    }

    fn live_ids<'a>(&'a self, realm_id: &'a str) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let realm = realm_id.to_string();
        Box::pin(self.inspect(move |store| scan_live_ids(store, &realm)))
    }

    fn save_sync_state<'a>(&'a self, realm_id: &'a str, state: SyncState) -> BoxFuture<'a, Result<(), Error>> {
        let path = state_path(&self.path, realm_id);
        let realm = realm_id.to_string();
        Box::pin(async move { tokio::task::spawn_blocking(move || write_state(&path, &realm, state)).await.map_err(|e| Error::Sink(e.to_string()))? })
    }

    fn delete(&self, batch: Arc<DeleteBatch>) -> BoxFuture<'_, Result<DeleteOutcome, Error>> {
        let commits = self.commits.clone();
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            commits.send(Pending::Deletions { batch, done }).map_err(|_| Error::Sink("the JSON-lines writer thread has stopped".into()))?;
            outcome.await.map_err(|_| Error::Sink("the JSON-lines writer thread stopped during the deletions".into()))?.map_err(Error::Sink)
        })
    }
}
