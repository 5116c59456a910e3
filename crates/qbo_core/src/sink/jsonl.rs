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
use crate::sink::record::{raw_line, LineHead, LinePrefix};
use crate::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};

/// This sink's [`Sink::name`].
pub const NAME: &str = "txt";

/// A group stops growing at this many line bytes, so a commit stays short however far the
/// writer falls behind: no window in a group hears back before all of it is durable.
const MAX_GROUP_BYTES: usize = 8 << 20;

pub struct JsonlSink {
    path: PathBuf,
    commits: mpsc::Sender<Pending>,
}

/// One window's batch, its lines built, waiting for the writer.
struct Pending {
    lines: LineBatch,
    done: oneshot::Sender<Result<UpsertOutcome, String>>,
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
}

/// The writer thread: waits for a batch, takes every other batch already waiting (up to
/// [`MAX_GROUP_BYTES`]), commits them together, answers each. Ends when the sink is dropped.
fn write_groups(store: &Mutex<JsonlStore>, queue: &mpsc::Receiver<Pending>) {
    let mut next = None;
    loop {
        let Some(first) = next.take().or_else(|| queue.recv().ok()) else { return };
        let mut bytes = first.lines.line_bytes();
        let mut group = vec![first];
        while bytes < MAX_GROUP_BYTES {
            match queue.try_recv() {
                Ok(p) if bytes + p.lines.line_bytes() > MAX_GROUP_BYTES => {
                    next = Some(p);
                    break;
                }
                Ok(p) => {
                    bytes += p.lines.line_bytes();
                    group.push(p);
                }
                Err(_) => break,
            }
        }
        let (batches, answers): (Vec<_>, Vec<_>) = group.into_iter().map(|p| (p.lines, p.done)).unzip();
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
                commits.send(Pending { lines, done })
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
}
