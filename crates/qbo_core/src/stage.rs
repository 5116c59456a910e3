//! A window fetched in one step and written in another. Mage's pipelines fetch a window in
//! one block and write it in a downstream exporter block, each in its own process, and
//! Mage pickles every block output to disk: records must not travel through it. So the
//! fetch step parks the window's RAW lines in a staging file and hands on a small handle
//! (the manifest's path); the export step streams that file into the sinks.
//!
//! ```text
//! <stage_dir>/<entity plural>/<label>.jsonl        RAW lines, exactly as in data/*.txt
//! <stage_dir>/<entity plural>/<label>.json         manifest: window, counts, the read's figures
//! <stage_dir>/<entity plural>/<label>.jsonl.partial   while the fetch runs
//! ```
//!
//! The manifest is written last (temp file, fsync, rename, directory fsync): it is the
//! commit point of a fetch. A fetch first removes any older manifest of its label, so a
//! failed re-fetch never leaves an exporter an old stage. Export checks the file against the
//! manifest (size, line count) before writing, writes through the sinks' own idempotent,
//! crash-safe path (newest version wins, nothing partial), and removes the stage after a
//! successful write unless asked to keep it. Exporting the same stage twice changes nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::budget::MemoryBudget;
use crate::backfill::{conclude, run_window, ReadSpec, sink_reports, write_alerts, WindowReport, WindowStatus, WindowWriter};
use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::paginate::{FetchedRecord, WindowFetch};
use crate::sink::record::{raw_line, LinePrefix};
use crate::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};
use crate::window::Window;

const FORMAT: u32 = 1;

/// The manifest of a staged window: everything the export step needs besides the records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedWindow {
    pub format: u32,
    /// `invoice`, `customer` or `item`.
    pub entity: String,
    pub realm_id: String,
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub page_size: u32,
    /// When the records were fetched: the `ingested_at_utc` every line keeps.
    pub ingested_at: DateTime<Utc>,
    /// Distinct records fetched (what `Rango … -> N filas` said).
    pub rows_fetched: u64,
    /// Lines in the records file (an id edited during the read may appear twice).
    pub lines: u64,
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
        Window { start: self.start, end: self.end, label: self.label.clone() }
    }

    /// Reads and checks a manifest.
    pub fn load(manifest: &Path) -> Result<Self, Error> {
        let text = fs::read(manifest).map_err(|e| {
            Error::config(format!(
                "no staged window at {} ({e}): run the fetch step for this window (again) first",
                manifest.display()
            ))
        })?;
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

/// Where a label's stage files live.
pub struct StagePaths {
    pub manifest: PathBuf,
    pub records: PathBuf,
    partial: PathBuf,
}

impl StagePaths {
    pub fn new(stage_dir: &Path, entity: Entity, label: &str) -> Result<Self, Error> {
        if label.is_empty() || label.len() > 120 || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) || label.starts_with('.') {
            return Err(Error::config(format!(
                "window label {label:?} cannot name a stage file: use letters, digits and _ - . : (as plan_windows does)"
            )));
        }
        let dir = stage_dir.join(entity.plural());
        Ok(StagePaths {
            manifest: dir.join(format!("{label}.json")),
            records: dir.join(format!("{label}.jsonl")),
            partial: dir.join(format!("{label}.jsonl.partial")),
        })
    }

    fn remove_all(&self) -> Result<(), Error> {
        for path in [&self.manifest, &self.records, &self.partial] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(stage_io("remove", path, e)),
            }
        }
        Ok(())
    }
}

fn stage_io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Sink(format!("cannot {what} the stage file {}: {e}", path.display()))
}

/// A sink that appends RAW lines to the window's `.partial` file.
struct StageSink {
    path: PathBuf,
    out: Mutex<Option<BufWriter<File>>>,
    bytes: std::sync::atomic::AtomicU64,
}

impl StageSink {
    fn create(path: PathBuf) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| stage_io("create the folder of", &path, e))?;
        }
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path).map_err(|e| stage_io("create", &path, e))?;
        Ok(StageSink { path, out: Mutex::new(Some(BufWriter::with_capacity(1 << 20, file))), bytes: Default::default() })
    }

    /// Flushes and fsyncs the file so the rename that follows publishes complete bytes.
    fn finish(&self) -> Result<u64, Error> {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(out) = guard.take() {
            let file = out.into_inner().map_err(|e| stage_io("write", &self.path, e.into_error()))?;
            file.sync_all().map_err(|e| stage_io("fsync", &self.path, e))?;
        }
        Ok(self.bytes.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Sink for StageSink {
    fn name(&self) -> &str {
        "stage"
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        Box::pin(async move {
            let prefix = LinePrefix::new(&batch);
            let mut line = Vec::with_capacity(4096);
            let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
            let out = guard.as_mut().ok_or_else(|| Error::Sink("the stage file is already closed".into()))?;
            let mut written = 0u64;
            for record in &batch.records {
                line.clear();
                raw_line(&batch, record, &prefix, &mut line);
                line.push(b'\n');
                out.write_all(&line).map_err(|e| stage_io("write", &self.path, e))?;
                written += line.len() as u64;
            }
            self.bytes.fetch_add(written, std::sync::atomic::Ordering::Relaxed);
            Ok(WriteOutcome { inserted: batch.records.len() as u64, ..WriteOutcome::default() })
        })
    }
}

fn write_manifest(paths: &StagePaths, staged: &StagedWindow) -> Result<(), Error> {
    let tmp = paths.manifest.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(staged).map_err(|e| Error::Sink(format!("cannot encode the stage manifest: {e}")))?;
    let mut file = File::create(&tmp).map_err(|e| stage_io("create", &tmp, e))?;
    file.write_all(&body).and_then(|_| file.sync_all()).map_err(|e| stage_io("write", &tmp, e))?;
    fs::rename(&tmp, &paths.manifest).map_err(|e| stage_io("publish", &paths.manifest, e))?;
    if let Some(dir) = paths.manifest.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| stage_io("fsync the folder of", &paths.manifest, e))?;
    }
    Ok(())
}

/// Fetches one window completely (keyset paging, COUNT reconciliation, the realm's pace)
/// into `<stage_dir>/<entity plural>/<label>.jsonl`. Returns the window's report (with the
/// fetch's validation lines logged) and, when the read succeeded, the committed stage. The
/// records held in memory meanwhile stay within `budget` (see [`crate::budget`]).
pub async fn stage_window(
    client: &QboClient,
    entity: Entity,
    field: FilterField,
    page_size: u32,
    window: Window,
    stage_dir: &Path,
    budget: Arc<MemoryBudget>,
) -> Result<(WindowReport, Option<StagedWindow>), Error> {
    crate::backfill::validate_page_size(page_size)?;
    field.check_supported_by(entity)?;
    let paths = StagePaths::new(stage_dir, entity, &window.label)?;
    paths.remove_all()?;
    let stage = Arc::new(StageSink::create(paths.partial.clone())?);
    let sinks: Vec<Arc<dyn Sink>> = vec![Arc::clone(&stage) as Arc<dyn Sink>];
    let ingested_at = Utc::now();
    let spec = ReadSpec { entity, field, page_size, budget };
    let mut report = run_window(client, &sinks, spec, window.clone(), ingested_at, None).await;
    if report.status != WindowStatus::Ok {
        let _ = stage.finish();
        let _ = fs::remove_file(&paths.partial);
        return Ok((report, None));
    }
    let committed = (|| {
        let bytes = stage.finish()?;
        fs::rename(&paths.partial, &paths.records).map_err(|e| stage_io("publish", &paths.records, e))?;
        let staged = StagedWindow {
            format: FORMAT,
            entity: entity.slug().to_string(),
            realm_id: client.realm_id().to_string(),
            label: window.label.clone(),
            start: window.start,
            end: window.end,
            page_size,
            ingested_at,
            rows_fetched: report.rows_fetched,
            lines: report.rows_emitted,
            bytes,
            pages: report.fetch.pages,
            server_count: report.fetch.server_count,
            moved_out: report.fetch.moved_out,
            records_file: paths.records.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        write_manifest(&paths, &staged)?;
        Ok::<_, Error>(staged)
    })();
    match committed {
        Ok(staged) => {
            tracing::info!(target: "qbo_rs", "window {}: {} record(s) staged in {}", window.label, staged.lines, paths.records.display());
            Ok((report, Some(staged)))
        }
        Err(e) => {
            let _ = paths.remove_all();
            report.status = WindowStatus::Failed;
            report.error = Some(e.to_string());
            tracing::error!(target: "qbo_rs", "window {} failed: {e}", window.label);
            Ok((report, None))
        }
    }
}

/// The fields of a staged line the sinks need; the payload stays the exact bytes QBO sent.
#[derive(Deserialize)]
struct StagedLine<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    last_updated_utc: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sync_token: std::borrow::Cow<'a, str>,
    page_number: u32,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

fn decode_chunk(chunk: Bytes, records_file: &Path, first_line: u64) -> Result<Vec<FetchedRecord>, Error> {
    let mut records = Vec::new();
    let mut at = 0usize;
    let mut number = first_line;
    while at < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[at..]).map_or(chunk.len(), |i| at + i);
        let line = &chunk[at..end];
        number += 1;
        let bad = |why: String| Error::Integrity(format!("{} line {number}: {why}; re-run the fetch step", records_file.display()));
        let parsed: StagedLine<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let last_updated_utc = DateTime::parse_from_rfc3339(&parsed.last_updated_utc)
            .map_err(|e| bad(format!("last_updated_utc: {e}")))?
            .with_timezone(&Utc);
        let payload = chunk.slice_ref(parsed.payload.get().as_bytes());
        records.push(FetchedRecord {
            id: parsed.id.into_owned(),
            sync_token: parsed.sync_token.into_owned(),
            last_updated_utc,
            page_number: parsed.page_number,
            payload,
        });
        at = end + 1;
    }
    Ok(records)
}

/// Writes a staged window into `sinks` and checks rows staged vs rows each sink now holds.
/// The stage is removed after a successful write unless `keep` is set.
/// `staged` is the manifest at `manifest`, as [`StagedWindow::load`] read it (the caller needs
/// its entity to open the sinks first).
pub async fn export_staged(manifest: &Path, staged: &StagedWindow, sinks: &[Arc<dyn Sink>], keep: bool) -> Result<WindowReport, Error> {
    let started = Instant::now();
    let entity = staged.entity()?;
    let records_path = manifest.with_file_name(&staged.records_file);
    let size = fs::metadata(&records_path).map(|m| m.len()).map_err(|e| {
        Error::Integrity(format!("the staged records {} are missing ({e}): re-run the fetch step", records_path.display()))
    })?;
    if size != staged.bytes {
        return Err(Error::Integrity(format!(
            "the staged records {} hold {size} bytes, the manifest says {}: re-run the fetch step",
            records_path.display(),
            staged.bytes
        )));
    }
    let window = staged.window();
    let writer = WindowWriter {
        sinks,
        entity,
        realm_id: staged.realm_id.clone(),
        window: &window,
        page_size: staged.page_size,
        ingested_at: staged.ingested_at,
        progress: None,
        // Reads a local file a batch at a time, waiting for each write: nothing to bound.
        budget: MemoryBudget::unlimited(),
        state: tokio::sync::Mutex::new(Default::default()),
    };
    let chunk_bytes = sinks.iter().map(|s| s.batch_bytes()).max().unwrap_or(2 << 20);
    let file = File::open(&records_path).map_err(|e| stage_io("open", &records_path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut lines = 0u64;
    let result = async {
        loop {
            // Read whole lines up to about a batch, then hand them over without copying payloads.
            let mut buf = Vec::with_capacity(chunk_bytes + 64 * 1024);
            let first_line = lines;
            while buf.len() < chunk_bytes {
                let n = reader.read_until(b'\n', &mut buf).map_err(|e| stage_io("read", &records_path, e))?;
                if n == 0 {
                    break;
                }
                if buf.last() != Some(&b'\n') {
                    return Err(Error::Integrity(format!("{} ends with a torn line: re-run the fetch step", records_path.display())));
                }
                lines += 1;
            }
            if buf.is_empty() {
                break;
            }
            let records = decode_chunk(Bytes::from(buf), &records_path, first_line)?;
            writer.push(records).await?;
        }
        if lines != staged.lines {
            return Err(Error::Integrity(format!(
                "{} holds {lines} lines, the manifest says {}: re-run the fetch step",
                records_path.display(),
                staged.lines
            )));
        }
        let mut state = writer.state.lock().await;
        writer.finish(&mut state).await
    }
    .await;
    if result.is_err() {
        // Let a batch already being written finish, so the report counts what was committed.
        let mut state = writer.state.lock().await;
        let _ = writer.wait_in_flight(&mut state).await;
    }
    let state = writer.state.into_inner();
    let mut report = WindowReport {
        label: staged.label.clone(),
        start: staged.start,
        end: staged.end,
        status: WindowStatus::Ok,
        rows_fetched: staged.rows_fetched,
        rows_emitted: state.emitted,
        sinks: sink_reports(sinks, &state),
        fetch: WindowFetch { pages: staged.pages, records: staged.rows_fetched, moved_out: staged.moved_out, server_count: staged.server_count, ..WindowFetch::default() },
        error: None,
        duration: started.elapsed(),
    };
    if let Err(e) = result {
        report.status = WindowStatus::Failed;
        tracing::error!(target: "qbo_rs", "window {} failed: {e}", report.label);
        report.error = Some(e.to_string());
        return Ok(report);
    }
    for sink in &report.sinks {
        let o = sink.outcome;
        tracing::info!(target: "qbo_rs", "window {}: {} staged row(s) -> {}: {} inserted, {} updated, {} unchanged, {} older than stored",
            report.label, report.rows_emitted, sink.target, o.inserted, o.updated, o.unchanged, o.stale);
    }
    let alerts = write_alerts(&report);
    conclude(&mut report, alerts);
    if report.status == WindowStatus::Ok && !keep {
        // The manifest goes first: without it the records file is an orphan, never exported.
        for path in [manifest, records_path.as_path()] {
            if let Err(e) = fs::remove_file(path) {
                tracing::warn!(target: "qbo_rs", "window {} was written but its stage file {} could not be removed: {e}", report.label, path.display());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn record(id: &str, payload: &str) -> FetchedRecord {
        FetchedRecord {
            id: id.into(),
            sync_token: "3".into(),
            last_updated_utc: Utc.with_ymd_and_hms(2025, 2, 3, 4, 5, 6).unwrap() + chrono::Duration::milliseconds(789),
            page_number: 7,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }
    }

    #[test]
    fn staged_lines_decode_to_the_records_with_payload_bytes_untouched() {
        let window = Window::new(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(), Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap(), "invoice_backfill");
        let records = vec![
            record("1", r#"{"Id":"1","Name":"caf\u00e9 \"q\"","Line":[{"Amount":1.50}]}"#),
            record("22", r#"{"Id":"22",  "Spaced" : true }"#),
        ];
        let batch = WriteBatch { entity: Entity::Invoice, realm_id: "9130".into(), window, page_size: 100, ingested_at: Utc::now(), records };
        let prefix = LinePrefix::new(&batch);
        let mut chunk = Vec::new();
        for r in &batch.records {
            raw_line(&batch, r, &prefix, &mut chunk);
            chunk.push(b'\n');
        }
        let decoded = decode_chunk(Bytes::from(chunk), Path::new("x.jsonl"), 0).unwrap();
        assert_eq!(decoded.len(), 2);
        for (got, want) in decoded.iter().zip(&batch.records) {
            assert_eq!(got.id, want.id);
            assert_eq!(got.sync_token, want.sync_token);
            assert_eq!(got.last_updated_utc, want.last_updated_utc);
            assert_eq!(got.page_number, want.page_number);
            assert_eq!(got.payload, want.payload, "the payload is QBO's bytes, not a re-serialisation");
        }
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let err = decode_chunk(Bytes::from_static(b"{\"id\":\"1\"}\n"), Path::new("w.jsonl"), 41).unwrap_err();
        assert!(err.to_string().contains("w.jsonl line 42"), "{err}");
    }

    #[test]
    fn labels_must_be_plain_file_names() {
        let dir = Path::new("/tmp/stage");
        assert!(StagePaths::new(dir, Entity::Item, "item_backfill_2025-01-01").is_ok());
        for bad in ["", "../x", "a/b", ".x", "a b", &"x".repeat(121)] {
            assert!(StagePaths::new(dir, Entity::Item, bad).is_err(), "{bad:?}");
        }
    }
}
