//! A window fetched in one step and written in another. Mage's pipelines fetch a window in
//! one block and write it in a downstream exporter block, each in its own process, and
//! Mage pickles every block output to disk: records must not travel through it. So the
//! fetch step parks the window's RAW lines in a staging file and hands on a small handle
//! (the manifest's path); the export step streams that file into the sinks.
//!
//! ```text
//! <stage_dir>/<entity plural>/<run id>/<label>.jsonl          RAW lines, exactly as in data/*.txt
//! <stage_dir>/<entity plural>/<run id>/<label>.json           manifest: window, counts, the read's figures
//! <stage_dir>/<entity plural>/<run id>/<label>.jsonl.partial  while the fetch runs
//! <stage_dir>/<entity plural>/<run id>/<label>.receipt        once written: what the export did
//! <stage_dir>/<entity plural>/<run id>/<label>.lock           held by the fetch or export at work
//! ```
//!
//! Orchestrators execute a step *at least once* (Mage has been seen running a finished block
//! run again), and two runs may share a stage folder, so every step is safe to repeat:
//! - A stage belongs to a *run id*. Steps of one run share it; a fetch without one gets a
//!   fresh id, so two fetches never touch each other's files.
//! - The fetch and the export of one (run id, label) take its lock, so they never overlap.
//! - A fetch that finds its (run id, label) already staged, or already written (a receipt),
//!   returns that instead of asking QuickBooks again: a repeated fetch costs no request.
//! - The manifest is written last (temp file, fsync, rename, directory fsync): it is the
//!   commit point of a fetch.
//! - An export checks the file against the manifest (size, line count), writes through the
//!   sinks' own idempotent, crash-safe path (newest version wins, nothing partial), then
//!   writes a small receipt of what it did and removes the stage (unless asked to keep it).
//!   An export that finds no stage but a receipt returns the receipt's report, so a repeated
//!   export ends as the first did.

mod export;
mod fetch;
mod reported;
mod share;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::backfill::{SinkReport, WindowReport, WindowStatus};
use crate::entity::Entity;
use crate::error::Error;
use crate::paginate::WindowFetch;
use crate::window::Window;

pub use export::Segment;
pub use export::{export_staged, export_window};
pub use fetch::{stage_window, StageRequest, StageResult};
pub use reported::{export_share_reported, export_window_reported, stage_share_reported, stage_window_reported};
pub use share::{export_share, stage_share, ShareExport, ShareManifest, ShareStageRequest, ShareStageResult, StagedPart};

const FORMAT: u32 = 1;

/// Run folders holding nothing but receipts are removed once untouched this long.
const RECEIPT_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);

/// The manifest of a staged window: everything the export step needs besides the records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedWindow {
    pub format: u32,
    /// `invoice`, `customer` or `item`.
    pub entity: String,
    pub realm_id: String,
    #[serde(flatten)]
    pub counts: StagedCounts,
    pub page_size: u32,
    pub bytes: u64,
    pub pages: u32,
    pub server_count: Option<u64>,
    pub moved_out: u64,
    /// The records file's name, beside the manifest.
    pub records_file: String,
}

impl StagedWindow {
    pub fn entity(&self) -> Result<Entity, Error> {
        self.entity.parse()
    }

    pub fn window(&self) -> Window {
        self.counts.window.clone()
    }

    /// What the fetch found, as a window report (for a stage that was not fetched now).
    fn fetch_report(&self) -> WindowReport {
        self.counts.fetch_report(WindowFetch { pages: self.pages, moved_out: self.moved_out, server_count: self.server_count, ..WindowFetch::default() })
    }

    /// Reads and checks a manifest.
    pub fn load(manifest: &Path) -> Result<Self, Error> {
        let text = fs::read(manifest)
            .map_err(|e| Error::config(format!("no staged window at {} ({e}): run the fetch step for this window (again) first", manifest.display())))?;
        let staged: StagedWindow = serde_json::from_slice(&text)
            .map_err(|e| Error::Integrity(format!("the stage manifest {} is unreadable ({e}): re-run the fetch step", manifest.display())))?;
        if staged.format != FORMAT {
            return Err(Error::Integrity(format!(
                "the stage manifest {} has format {} (this qbo_rs reads {FORMAT}): re-run the fetch step",
                manifest.display(),
                staged.format
            )));
        }
        staged.entity()?;
        Ok(staged)
    }
}

/// A window staged completely, as both manifests (a window's and a share's) record it: which
/// window, what its read found, and the ingestion time its lines keep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedCounts {
    #[serde(flatten)]
    pub window: Window,
    /// Distinct records fetched (what `Rango … -> N filas` said).
    pub rows_fetched: u64,
    /// Lines staged (an id edited during the read may appear twice).
    pub lines: u64,
    /// When the records were fetched: the `ingested_at_utc` every line keeps.
    pub ingested_at: DateTime<Utc>,
}

impl StagedCounts {
    /// What the fetch found, as a window report (for a window not fetched now).
    fn fetch_report(&self, fetch: WindowFetch) -> WindowReport {
        staged_report(&self.window, self.rows_fetched, self.lines, fetch)
    }
}

/// What an export did, kept where its stage was: a repeated export (or fetch) of the same
/// run and label answers from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReceipt {
    pub format: u32,
    pub staged: StagedWindow,
    pub exported_at: DateTime<Utc>,
    #[serde(flatten)]
    pub written: WindowWritten,
}

impl ExportReceipt {
    fn new(staged: &StagedWindow, report: &WindowReport) -> Self {
        ExportReceipt { format: FORMAT, staged: staged.clone(), exported_at: Utc::now(), written: WindowWritten::of(report) }
    }

    /// The export's report, as the first export returned it.
    pub fn report(&self) -> WindowReport {
        self.written.report(self.staged.fetch_report())
    }

    /// Whether the export wrote to every sink in `names` (`txt`, `postgres`).
    pub fn covers<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        names.all(|name| self.written.sinks.iter().any(|s| s.sink == name))
    }

    fn load(path: &Path) -> Result<Option<Self>, Error> {
        load_json(path, "export receipt", "remove it and re-run the window")
    }
}

/// What an export wrote for one window, as its receipt (a window's or a share's) keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowWritten {
    /// Records handed to the sinks.
    pub rows_emitted: u64,
    pub sinks: Vec<SinkReport>,
    pub duration_ns: u64,
}

impl WindowWritten {
    fn of(report: &WindowReport) -> Self {
        WindowWritten {
            rows_emitted: report.rows_emitted,
            sinks: report.sinks.clone(),
            duration_ns: u64::try_from(report.duration.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// The export's report: `fetched` (what the stage says of the read) with what was written.
    fn report(&self, fetched: WindowReport) -> WindowReport {
        WindowReport { rows_emitted: self.rows_emitted, sinks: self.sinks.clone(), duration: Duration::from_nanos(self.duration_ns), ..fetched }
    }
}

/// A window's report from what a stage holds (for a window not fetched now): `rows_fetched`
/// distinct records in `lines` lines.
fn staged_report(window: &Window, rows_fetched: u64, lines: u64, fetch: WindowFetch) -> WindowReport {
    WindowReport {
        label: window.label.clone(),
        start: window.start,
        end: window.end,
        status: WindowStatus::Ok,
        rows_fetched,
        rows_emitted: lines,
        sinks: Vec::new(),
        fetch: WindowFetch { records: rows_fetched, ..fetch },
        error: None,
        duration: Duration::ZERO,
    }
}

/// The JSON at `path` (a manifest or receipt), None when there is none; unreadable JSON is an
/// integrity error that says what to do.
fn load_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str, remedy: &str) -> Result<Option<T>, Error> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(stage_io("read", path, e)),
    };
    serde_json::from_slice(&text).map(Some).map_err(|e| Error::Integrity(format!("the {what} {} is unreadable ({e}): {remedy}", path.display())))
}

/// A stage's records file being written: lines appended through a large buffer, then flushed
/// and fsynced so that the rename publishing it publishes complete bytes.
struct StageFile {
    path: PathBuf,
    /// The writer and the bytes written so far; None once finished.
    out: std::sync::Mutex<Option<(std::io::BufWriter<File>, u64)>>,
}

impl StageFile {
    fn create(path: PathBuf) -> Result<Self, Error> {
        let file = File::options().write(true).create(true).truncate(true).open(&path).map_err(|e| stage_io("create", &path, e))?;
        Ok(StageFile { path, out: std::sync::Mutex::new(Some((std::io::BufWriter::with_capacity(1 << 20, file), 0))) })
    }

    /// Appends `bytes`; returns the offset they start at.
    fn append(&self, bytes: &[u8]) -> Result<u64, Error> {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (out, written) = guard.as_mut().ok_or_else(|| Error::Sink("the stage file is already closed".into()))?;
        out.write_all(bytes).map_err(|e| stage_io("write", &self.path, e))?;
        let offset = *written;
        *written += bytes.len() as u64;
        Ok(offset)
    }

    /// Flushes and fsyncs the file; returns its size.
    fn finish(&self) -> Result<u64, Error> {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let Some((out, written)) = guard.take() else { return Ok(0) };
        let file = out.into_inner().map_err(|e| stage_io("write", &self.path, e.into_error()))?;
        file.sync_all().map_err(|e| stage_io("fsync", &self.path, e))?;
        Ok(written)
    }
}

/// Where a (run id, label)'s stage files live.
#[derive(Debug, Clone)]
pub struct StagePaths {
    pub manifest: PathBuf,
    pub records: PathBuf,
    partial: PathBuf,
    receipt: PathBuf,
    lock: PathBuf,
}

/// The folder and the label of a manifest named `<label><suffix>` (a `what`, whose label is a
/// `label_kind`), the label checked as a file name.
fn manifest_place<'a>(manifest: &'a Path, suffix: &str, what: &str, label_kind: &str) -> Result<(&'a Path, &'a str), Error> {
    let label = manifest
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(suffix))
        .ok_or_else(|| Error::config(format!("{} is not a {what} (<label>{suffix})", manifest.display())))?;
    check_name(label_kind, label)?;
    Ok((manifest.parent().unwrap_or(Path::new(".")), label))
}

/// A run id, a label: each names files, so each must be a plain file name.
fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let plain = !name.is_empty() && name.len() <= 120 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) && !name.starts_with('.');
    if plain {
        Ok(())
    } else {
        Err(Error::config(format!("{what} {name:?} cannot name a stage file: use letters, digits and _ - . : (as plan_windows does)")))
    }
}

impl StagePaths {
    pub fn new(stage_dir: &Path, entity: Entity, run_id: &str, label: &str) -> Result<Self, Error> {
        check_name("window label", label)?;
        check_name("run id", run_id)?;
        Ok(Self::in_dir(&stage_dir.join(entity.plural()).join(run_id), label))
    }

    fn in_dir(dir: &Path, label: &str) -> Self {
        StagePaths {
            manifest: dir.join(format!("{label}.json")),
            records: dir.join(format!("{label}.jsonl")),
            partial: dir.join(format!("{label}.jsonl.partial")),
            receipt: dir.join(format!("{label}.receipt")),
            lock: dir.join(format!("{label}.lock")),
        }
    }

    /// The paths of the stage whose manifest is `manifest` (an export's handle).
    pub fn of_manifest(manifest: &Path) -> Result<Self, Error> {
        let (dir, label) = manifest_place(manifest, ".json", "stage manifest", "window label")?;
        Ok(Self::in_dir(dir, label))
    }

    fn dir(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }

    /// Takes the (run id, label)'s lock, waiting for a fetch or export that holds it.
    async fn lock(&self) -> Result<StageLock, Error> {
        StageLock::take(self.lock.clone()).await
    }

    fn remove_stage(&self) -> Result<(), Error> {
        // The manifest goes first: without it the records file is an orphan, never exported.
        for path in [&self.manifest, &self.records, &self.partial] {
            remove_if_present(path)?;
        }
        Ok(())
    }

    fn write_receipt(&self, receipt: &ExportReceipt) -> Result<(), Error> {
        let body = serde_json::to_vec_pretty(receipt).map_err(|e| Error::Sink(format!("cannot encode the export receipt: {e}")))?;
        publish(&self.receipt, &body)
    }
}

/// Held while a fetch or an export works on one (run id, label); released on drop.
struct StageLock {
    _file: File,
}

impl StageLock {
    /// Locks `path` (created if need be), waiting for whoever holds it.
    async fn take(path: PathBuf) -> Result<StageLock, Error> {
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| stage_io("create the folder of", &path, e))?;
            }
            let file = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| stage_io("open", &path, e))?;
            file.lock().map_err(|e| stage_io("lock", &path, e))?;
            Ok(StageLock { _file: file })
        })
        .await
        .map_err(|e| Error::Sink(format!("waiting for the stage lock failed: {e}")))?
    }
}

/// A fresh run id for a fetch that was given none: unique per call, sortable by time.
pub fn new_run_id() -> String {
    format!("{}-{}-{:08x}", Utc::now().format("%Y%m%dT%H%M%S%.6f"), std::process::id(), rand::random::<u32>())
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(stage_io("remove", path, e)),
    }
}

fn stage_io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Sink(format!("cannot {what} the stage file {}: {e}", path.display()))
}

/// Writes `body` at `path` atomically and durably (temp file, fsync, rename, directory fsync).
fn publish(path: &Path, body: &[u8]) -> Result<(), Error> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| stage_io("create", &tmp, e))?;
    file.write_all(body).and_then(|_| file.sync_all()).map_err(|e| stage_io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| stage_io("publish", path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| stage_io("fsync the folder of", path, e))?;
    }
    Ok(())
}

/// Removes the run folders of `entity_dir` (other than `keep`) that hold only receipts and
/// locks and were last touched more than [`RECEIPT_LIFETIME`] ago. A stage that was never
/// written is never removed: it holds records not yet in any sink.
fn forget_old_receipts(entity_dir: &Path, keep: &Path) {
    let Ok(runs) = fs::read_dir(entity_dir) else { return };
    let now = SystemTime::now();
    for run in runs.flatten() {
        let dir = run.path();
        let old = run.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| now.duration_since(t).ok()).is_some_and(|age| age > RECEIPT_LIFETIME);
        if dir == keep || !old || !dir.is_dir() {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>()) else { continue };
        let only_receipts = entries.iter().all(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("receipt" | "lock")));
        if only_receipts && fs::remove_dir_all(&dir).is_ok() {
            tracing::debug!(target: "qbo_rs", "removed the old export receipts in {}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_run_ids_must_be_plain_file_names() {
        let dir = Path::new("/tmp/stage");
        assert!(StagePaths::new(dir, Entity::Item, "run-1", "item_backfill_2025-01-01").is_ok());
        for bad in ["", "../x", "a/b", ".x", "a b", &"x".repeat(121)] {
            assert!(StagePaths::new(dir, Entity::Item, "run-1", bad).is_err(), "{bad:?}");
            assert!(StagePaths::new(dir, Entity::Item, bad, "w").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_manifest_path_gives_back_its_stage_files() {
        let paths = StagePaths::new(Path::new("/s"), Entity::Invoice, "r7", "invoice_backfill_2025-01-01").unwrap();
        let again = StagePaths::of_manifest(&paths.manifest).unwrap();
        assert_eq!(again.records, paths.records);
        assert_eq!(again.receipt, paths.receipt);
        assert_eq!(again.lock, paths.lock);
        assert_eq!(paths.manifest, Path::new("/s/invoices/r7/invoice_backfill_2025-01-01.json"));
        assert!(StagePaths::of_manifest(Path::new("/s/x.jsonl")).is_err());
    }

    #[test]
    fn run_ids_are_unique_and_plain() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_ne!(a, b);
        check_name("run id", &a).unwrap();
    }

    #[test]
    fn only_old_folders_of_receipts_are_forgotten() {
        let root = tempfile::tempdir().unwrap();
        let old = |name: &str, files: &[&str]| {
            let dir = root.path().join(name);
            fs::create_dir_all(&dir).unwrap();
            for f in files {
                fs::write(dir.join(f), b"{}").unwrap();
            }
            let long_ago = SystemTime::now() - RECEIPT_LIFETIME - Duration::from_secs(60);
            File::open(&dir).unwrap().set_modified(long_ago).unwrap();
            dir
        };
        let receipts = old("r1", &["w.receipt", "w.lock"]);
        let unwritten = old("r2", &["w.json", "w.jsonl", "w.lock"]);
        let current = old("r3", &["w.receipt"]);
        let recent = root.path().join("r4");
        fs::create_dir_all(&recent).unwrap();
        fs::write(recent.join("w.receipt"), b"{}").unwrap();
        forget_old_receipts(root.path(), &current);
        assert!(!receipts.exists());
        assert!(unwritten.join("w.jsonl").exists(), "a stage never written is kept");
        assert!(current.exists() && recent.exists());
    }

    #[test]
    fn a_receipt_keeps_the_flat_layout_of_its_json() {
        // Stages and receipts outlive a qbo_rs upgrade: the JSON keeps every field at the top.
        let text = r#"{"format":1,"staged":{"format":1,"entity":"item","realm_id":"r","label":"w","start":"2025-01-01T00:00:00Z","end":"2025-01-02T00:00:00Z","page_size":5,"ingested_at":"2025-02-01T00:00:00Z","rows_fetched":3,"lines":4,"bytes":99,"pages":1,"server_count":3,"moved_out":0,"records_file":"w.jsonl"},"exported_at":"2025-02-01T00:00:01Z","rows_emitted":4,"sinks":[],"duration_ns":7}"#;
        let receipt: ExportReceipt = serde_json::from_str(text).unwrap();
        assert_eq!((receipt.staged.counts.window.label.as_str(), receipt.staged.counts.lines, receipt.written.duration_ns), ("w", 4, 7));
        let again: serde_json::Value = serde_json::to_value(&receipt).unwrap();
        assert_eq!(again, serde_json::from_str::<serde_json::Value>(text).unwrap());
    }
}
