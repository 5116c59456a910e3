//! The fetch step: one window read completely from QuickBooks into its stage.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::export::Segment;
use super::{forget_old_receipts, new_run_id, publish, stage_io, ExportReceipt, StageFile, StagePaths, StagedCounts, StagedWindow, FORMAT};
use crate::backfill::{run_window, ReadSpec, WindowReport, WindowStatus};
use crate::budget::MemoryBudget;
use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::options::{unknown_option, OptionSet, OptionValue};
use crate::sink::record::{raw_line, LinePrefix};
use crate::sink::{BoxFuture, Sink, WriteBatch, WriteOutcome};
use crate::window::Window;

/// What [`stage_window`] did.
#[derive(Debug)]
pub struct StageResult {
    /// The read as a window report (with the fetch's validation lines logged).
    pub report: WindowReport,
    /// The committed stage; None when the read failed.
    pub staged: Option<StagedWindow>,
    /// The export step's handle (a manifest path), whether or not the read succeeded.
    pub manifest: PathBuf,
    /// The stage (or its export's receipt) of an earlier call with the same run id: nothing
    /// was asked of QuickBooks this time.
    pub reused: bool,
}

/// A sink that appends every batch's RAW lines to one stage file and notes where each
/// window's batches went (a window's fetch needs only the file, a share's fetch the notes too).
pub(super) struct StageSink {
    pub(super) file: StageFile,
    /// Per window label: where its lines are, how many, and their ingestion time.
    pub(super) parts: Mutex<HashMap<String, WrittenPart>>,
}

/// Where one window's lines went: segments, lines, their ingestion time.
pub(super) type WrittenPart = (Vec<Segment>, u64, DateTime<Utc>);

impl StageSink {
    pub(super) fn create(path: PathBuf) -> Result<Self, Error> {
        Ok(StageSink { file: StageFile::create(path)?, parts: Mutex::new(HashMap::new()) })
    }
}

impl Sink for StageSink {
    fn name(&self) -> &str {
        "stage"
    }

    fn target(&self) -> String {
        self.file.path.display().to_string()
    }

    fn write(&self, batch: Arc<WriteBatch>) -> BoxFuture<'_, Result<WriteOutcome, Error>> {
        Box::pin(async move {
            let lines = raw_lines(&batch);
            let offset = self.file.append(&lines)?;
            let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
            let part = parts.entry(batch.window.label.clone()).or_insert_with(|| (Vec::new(), 0, batch.ingested_at));
            part.0.push(Segment { offset, bytes: lines.len() as u64 });
            part.1 += batch.records.len() as u64;
            Ok(WriteOutcome { inserted: batch.records.len() as u64, ..WriteOutcome::default() })
        })
    }
}

/// A batch's RAW lines, exactly as the JSON-lines sink writes them.
pub(super) fn raw_lines(batch: &WriteBatch) -> Vec<u8> {
    let prefix = LinePrefix::new(batch);
    let mut lines = Vec::with_capacity(batch.records.iter().map(|r| r.payload.len() + 512).sum());
    for record in &batch.records {
        raw_line(batch, record, &prefix, &mut lines);
        lines.push(b'\n');
    }
    lines
}

/// How one window is read into its stage.
#[derive(Debug, Clone)]
pub struct StageRequest {
    pub entity: Entity,
    pub field: FilterField,
    pub page_size: u32,
    pub window: Window,
    pub stage_dir: PathBuf,
    /// The run this stage belongs to; None gives the call a fresh one (see the module docs).
    pub run_id: Option<String>,
}

impl StageRequest {
    /// A request for `[start, end)` with the defaults: the label plan_windows gives a window
    /// starting at `start`, the backfill's page size and filter field, `data/.qbo_rs/stage`.
    pub fn new(entity: Entity, start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        StageRequest {
            entity,
            field: FilterField::default(),
            page_size: crate::backfill::DEFAULT_PAGE_SIZE,
            window: Window::new(start, end, &entity.label_prefix()),
            stage_dir: PathBuf::from("data/.qbo_rs/stage"),
            run_id: None,
        }
    }

    /// Everything that can be wrong with the request, found before any file or request.
    pub fn check(&self) -> Result<(), Error> {
        if self.window.end <= self.window.start {
            return Err(Error::config("end must be after start"));
        }
        crate::backfill::validate_page_size(self.page_size)?;
        self.field.check_supported_by(self.entity)?;
        StagePaths::new(&self.stage_dir, self.entity, self.run_id.as_deref().unwrap_or("run"), &self.window.label).map(drop)
    }
}

impl OptionSet for StageRequest {
    const NAMES: &'static [&'static str] = &["label", "page_size", "filter_field", "stage_dir", "run_id"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        match name {
            "label" => {
                if let Some(label) = value.optional_text(name)? {
                    self.window.label = label;
                }
            }
            "page_size" => self.page_size = value.whole(name)?,
            "filter_field" => self.field = value.text(name)?.parse()?,
            "stage_dir" => self.stage_dir = value.path(name)?,
            "run_id" => self.run_id = value.optional_text(name)?,
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// Fetches one window completely (keyset paging, COUNT reconciliation, the realm's pace)
/// into `<stage_dir>/<entity plural>/<run id>/<label>.jsonl`, unless that (run id, label) is
/// already staged or written, which is then returned as it is. The records held in memory
/// meanwhile stay within `budget` (see [`crate::budget`]). Only this call's own files are
/// ever created or removed.
pub async fn stage_window(client: &QboClient, request: StageRequest, budget: Arc<MemoryBudget>) -> Result<StageResult, Error> {
    request.check()?;
    let StageRequest { entity, field, page_size, window, stage_dir, run_id } = request;
    let run_id = run_id.unwrap_or_else(new_run_id);
    let paths = StagePaths::new(&stage_dir, entity, &run_id, &window.label)?;
    let _lock = paths.lock().await?;
    if let Some(earlier) = earlier_stage(&paths, entity, &window)? {
        tracing::info!(target: "qbo_rs", "window {}: {} record(s) already {} by run {run_id}; not fetched again",
            window.label, earlier.counts.lines, if paths.manifest.exists() { "staged" } else { "written" });
        return Ok(StageResult { report: earlier.fetch_report(), staged: Some(earlier), manifest: paths.manifest, reused: true });
    }
    forget_old_receipts(&stage_dir.join(entity.plural()), paths.dir());
    let stage = Arc::new(StageSink::create(paths.partial.clone())?);
    let sinks: Vec<Arc<dyn Sink>> = vec![Arc::clone(&stage) as Arc<dyn Sink>];
    let ingested_at = Utc::now();
    let spec = ReadSpec { entity, field, page_size, budget };
    let mut report = run_window(client, &sinks, spec, window.clone(), ingested_at, None).await;
    if report.status != WindowStatus::Ok {
        let _ = stage.file.finish();
        let _ = fs::remove_file(&paths.partial);
        return Ok(StageResult { report, staged: None, manifest: paths.manifest, reused: false });
    }
    let committed = (|| {
        let bytes = stage.file.finish()?;
        fs::rename(&paths.partial, &paths.records).map_err(|e| stage_io("publish", &paths.records, e))?;
        let staged = StagedWindow {
            format: FORMAT,
            entity: entity.slug().to_string(),
            realm_id: client.realm_id().to_string(),
            counts: StagedCounts { window: window.clone(), rows_fetched: report.rows_fetched, lines: report.rows_emitted, ingested_at },
            page_size,
            bytes,
            pages: report.fetch.pages,
            server_count: report.fetch.server_count,
            moved_out: report.fetch.moved_out,
            records_file: paths.records.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let body = serde_json::to_vec_pretty(&staged).map_err(|e| Error::Sink(format!("cannot encode the stage manifest: {e}")))?;
        publish(&paths.manifest, &body)?;
        Ok::<_, Error>(staged)
    })();
    match committed {
        Ok(staged) => {
            tracing::info!(target: "qbo_rs", "window {}: {} record(s) staged in {}", window.label, staged.counts.lines, paths.records.display());
            Ok(StageResult { report, staged: Some(staged), manifest: paths.manifest, reused: false })
        }
        Err(e) => {
            let _ = paths.remove_stage();
            report.status = WindowStatus::Failed;
            report.error = Some(e.to_string());
            tracing::error!(target: "qbo_rs", "window {} failed: {e}", window.label);
            Ok(StageResult { report, staged: None, manifest: paths.manifest, reused: false })
        }
    }
}

/// The stage of `paths`, or the one its receipt recorded, if it is of this same window.
fn earlier_stage(paths: &StagePaths, entity: Entity, window: &Window) -> Result<Option<StagedWindow>, Error> {
    let staged = match ExportReceipt::load(&paths.receipt)? {
        Some(receipt) if !paths.manifest.exists() => receipt.staged,
        _ if paths.manifest.exists() => {
            let staged = StagedWindow::load(&paths.manifest)?;
            if !records_match(paths, &staged) {
                // A stage damaged after its commit: fetch it again rather than export garbage.
                paths.remove_stage()?;
                return Ok(None);
            }
            staged
        }
        _ => {
            // A fetch killed mid-read left its partial file: start over.
            super::remove_if_present(&paths.partial)?;
            return Ok(None);
        }
    };
    if staged.entity()? != entity || staged.window() != *window {
        return Err(Error::config(format!(
            "run {} already staged {} {} over [{}, {}), not {} over [{}, {}): use another run id",
            paths.dir().file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            staged.entity,
            staged.counts.window.label,
            crate::time::format_utc(staged.counts.window.start),
            crate::time::format_utc(staged.counts.window.end),
            entity.slug(),
            crate::time::format_utc(window.start),
            crate::time::format_utc(window.end),
        )));
    }
    Ok(Some(staged))
}

fn records_match(paths: &StagePaths, staged: &StagedWindow) -> bool {
    fs::metadata(&paths.records).is_ok_and(|m| m.len() == staged.bytes)
}
