//! A share of a plan (see [`ReadShare`]) fetched in one step and written in another: what a
//! Mage child does, so that a backfill costs a few block runs whatever the number of windows.
//!
//! ```text
//! <run dir>/<share label>.share.json        manifest: the share's windows, and each fetch attempt's
//!                                           records file with, per window written, where its lines lie
//! <run dir>/<share label>.a<N>.jsonl        RAW lines of attempt N, every window's batches in one file
//! <run dir>/<share label>.a<N>.jsonl.partial  while attempt N runs
//! <run dir>/<share label>.receipt           once written: what the export did, window by window
//! <run dir>/<share label>.lock              held by the fetch or export at work
//! ```
//!
//! A fetch reads only the share's windows that no earlier attempt of the same (run id, label)
//! staged: a fetch repeated after a success asks QuickBooks nothing, and one repeated after a
//! partial failure reads only the windows that failed. The manifest, rewritten atomically
//! after each attempt, is the commit point; a window is in it only once all its records are.
//! The export writes every window of the share through the sinks' idempotent path, then
//! leaves a receipt and removes the stage, so a repeated export returns the receipt.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::export::{write_staged_lines, Segment, StagedLines};
use super::fetch::StageSink;
use super::{
    check_name, forget_old_receipts, load_json, manifest_place, new_run_id, publish, remove_if_present, stage_io, staged_report, StageLock, StagedCounts,
    WindowWritten, FORMAT,
};
use crate::backfill::{ReadSpec, ReadStats, WindowReport, WindowStatus};
use crate::budget::{MemoryBudget, DEFAULT_MAX_BUFFER_MB};
use crate::client::QboClient;
use crate::entity::Entity;
use crate::error::Error;
use crate::options::{unknown_option, OptionSet, OptionValue};
use crate::paginate::WindowFetch;
use crate::read_plan::ReadShare;
use crate::sink::{open_sinks, Sink, SinkOptions};
use crate::window::Window;

/// Windows of a share written at once by its export: their batches reach the JSON-lines
/// writer together and share its fsyncs. What they hold at once stays within the default
/// memory budget, so large windows take turns where small ones go together.
const EXPORT_WINDOWS_AT_ONCE: usize = 8;

/// A window of a share that a fetch attempt staged completely.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedPart {
    #[serde(flatten)]
    pub counts: StagedCounts,
    pub segments: Vec<Segment>,
}

impl StagedPart {
    fn fetch_report(&self) -> WindowReport {
        self.counts.fetch_report(WindowFetch::default())
    }
}

/// One fetch attempt's records file and the windows it staged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedAttempt {
    pub records_file: String,
    pub bytes: u64,
    pub parts: Vec<StagedPart>,
}

/// The manifest of a staged share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareManifest {
    pub format: u32,
    pub entity: Entity,
    pub realm_id: String,
    pub label: String,
    pub page_size: u32,
    /// Every window of the share, staged or not.
    pub windows: Vec<Window>,
    pub attempts: Vec<StagedAttempt>,
}

impl ShareManifest {
    fn load(path: &Path) -> Result<Option<Self>, Error> {
        let Some(manifest) = load_json::<ShareManifest>(path, "stage manifest", "remove it and re-run the fetch step")? else { return Ok(None) };
        if manifest.format != FORMAT {
            return Err(Error::Integrity(format!(
                "the stage manifest {} has format {} (this qbo_rs reads {FORMAT}): re-run the fetch step",
                path.display(),
                manifest.format
            )));
        }
        Ok(Some(manifest))
    }

    /// The staged windows, in time order, with the file each one's lines are in.
    fn parts(&self) -> Vec<(&StagedAttempt, &StagedPart)> {
        let mut parts: Vec<_> = self.attempts.iter().flat_map(|a| a.parts.iter().map(move |p| (a, p))).collect();
        parts.sort_by_key(|(_, p)| p.counts.window.start);
        parts
    }

    fn staged(&self, label: &str) -> bool {
        self.attempts.iter().any(|a| a.parts.iter().any(|p| p.counts.window.label == label))
    }
}

/// What an export of a share did, kept where its stage was.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShareReceipt {
    format: u32,
    entity: Entity,
    label: String,
    exported_at: DateTime<Utc>,
    /// How long the export took.
    duration_ns: u64,
    windows: Vec<PartReceipt>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartReceipt {
    part: StagedPart,
    #[serde(flatten)]
    written: WindowWritten,
}

impl PartReceipt {
    fn report(&self) -> WindowReport {
        self.written.report(self.part.fetch_report())
    }
}

impl ShareReceipt {
    fn load(path: &Path) -> Result<Option<Self>, Error> {
        load_json(path, "export receipt", "remove it and re-run the share")
    }
}

/// Where a (run id, share label)'s files live.
struct SharePaths {
    dir: PathBuf,
    label: String,
}

impl SharePaths {
    fn new(stage_dir: &Path, entity: Entity, run_id: &str, label: &str) -> Result<Self, Error> {
        check_name("share label", label)?;
        check_name("run id", run_id)?;
        Ok(SharePaths { dir: stage_dir.join(entity.plural()).join(run_id), label: label.to_string() })
    }

    fn of_manifest(manifest: &Path) -> Result<Self, Error> {
        let (dir, label) = manifest_place(manifest, ".share.json", "share manifest", "share label")?;
        Ok(SharePaths { dir: dir.to_path_buf(), label: label.to_string() })
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.label))
    }

    fn manifest(&self) -> PathBuf {
        self.file(".share.json")
    }

    fn receipt(&self) -> PathBuf {
        self.file(".receipt")
    }

    fn records(&self, attempt: usize) -> PathBuf {
        self.file(&format!(".a{attempt}.jsonl"))
    }

    async fn lock(&self) -> Result<StageLock, Error> {
        StageLock::take(self.file(".lock")).await
    }

    /// Removes the stage: the manifest first (without it the records are orphans), then every
    /// attempt's records, partial ones included.
    fn remove_stage(&self, manifest: &ShareManifest) -> Result<(), Error> {
        remove_if_present(&self.manifest())?;
        for attempt in 1..=manifest.attempts.len() + 1 {
            let records = self.records(attempt);
            remove_if_present(&records)?;
            remove_if_present(&records.with_extension("jsonl.partial"))?;
        }
        Ok(())
    }
}

/// How a share is fetched into its stage.
#[derive(Debug, Clone)]
pub struct ShareStageRequest {
    pub share: ReadShare,
    pub stage_dir: PathBuf,
    /// The run this stage belongs to; None gives the call a fresh one.
    pub run_id: Option<String>,
    /// Streams read at once.
    pub max_streams: usize,
}

impl ShareStageRequest {
    /// The defaults: `data/.qbo_rs/stage`, a fresh run id, every stream of the share at once
    /// (the plan made as many as the data deserves).
    pub fn new(share: ReadShare) -> Self {
        let max_streams = share.streams.len().max(1);
        ShareStageRequest { share, stage_dir: PathBuf::from("data/.qbo_rs/stage"), run_id: None, max_streams }
    }

    /// Everything that can be wrong with the request, found before any file or request.
    pub fn check(&self) -> Result<(), Error> {
        crate::backfill::validate_page_size(self.share.page_size)?;
        if self.max_streams == 0 {
            return Err(Error::config("max_streams must be at least 1"));
        }
        SharePaths::new(&self.stage_dir, self.share.entity, self.run_id.as_deref().unwrap_or("run"), &self.share.label).map(drop)
    }
}

impl OptionSet for ShareStageRequest {
    const NAMES: &'static [&'static str] = &["stage_dir", "run_id", "max_streams"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        match name {
            "stage_dir" => self.stage_dir = value.path(name)?,
            "run_id" => self.run_id = value.optional_text(name)?,
            "max_streams" => self.max_streams = value.whole(name)?,
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// What [`stage_share`] did.
#[derive(Debug)]
pub struct ShareStageResult {
    /// One report per window of the share, in time order: fetched now, or staged (or written)
    /// by an earlier attempt of the same run.
    pub windows: Vec<WindowReport>,
    pub read: ReadStats,
    /// The export step's handle; it exists once any window is staged.
    pub manifest: PathBuf,
    /// Windows an earlier attempt had staged or written: not asked of QuickBooks now.
    pub reused: usize,
    /// The share is already written (a receipt): nothing is left to export.
    pub exported: bool,
}

/// Fetches the windows of a share that no earlier attempt of its (run id, label) staged,
/// reading the share's streams with the plan's counts, into one records file; then commits
/// the windows read completely to the share's manifest. Windows that failed are reported
/// failed and left for the next attempt. Records held in memory stay within `budget`.
pub async fn stage_share(client: &QboClient, request: ShareStageRequest, budget: Arc<MemoryBudget>) -> Result<ShareStageResult, Error> {
    request.check()?;
    let ShareStageRequest { share, stage_dir, run_id, max_streams } = request;
    let run_id = run_id.unwrap_or_else(new_run_id);
    let paths = SharePaths::new(&stage_dir, share.entity, &run_id, &share.label)?;
    let _lock = paths.lock().await?;
    if !paths.manifest().exists() {
        if let Some(receipt) = ShareReceipt::load(&paths.receipt())? {
            check_same_share(
                &paths,
                &run_id,
                &share,
                receipt.entity,
                &receipt.windows.iter().map(|w| w.part.counts.window.label.as_str()).collect::<Vec<_>>(),
            )?;
            tracing::info!(target: "qbo_rs", "share {}: already written by run {run_id}; not fetched again", share.label);
            let windows: Vec<WindowReport> = receipt.windows.iter().map(|w| w.part.fetch_report()).collect();
            return Ok(ShareStageResult { reused: windows.len(), windows, read: ReadStats::default(), manifest: paths.manifest(), exported: true });
        }
    }
    let mut manifest = match ShareManifest::load(&paths.manifest())? {
        Some(manifest) => {
            let labels: Vec<&str> = manifest.windows.iter().map(|w| w.label.as_str()).collect();
            check_same_share(&paths, &run_id, &share, manifest.entity, &labels)?;
            if manifest.windows != share.windows {
                return Err(same_share_error(&paths, &run_id, &share));
            }
            manifest
        }
        None => {
            forget_old_receipts(&stage_dir.join(share.entity.plural()), &paths.dir);
            ShareManifest {
                format: FORMAT,
                entity: share.entity,
                realm_id: client.realm_id().to_string(),
                label: share.label.clone(),
                page_size: share.page_size,
                windows: share.windows.clone(),
                attempts: Vec::new(),
            }
        }
    };
    let plan = share.remaining(&|w| manifest.staged(&w.label));
    let reused = share.windows.len() - plan.windows.len();
    let mut fetched = HashMap::new();
    let mut read = ReadStats::default();
    if !plan.windows.is_empty() {
        if reused > 0 {
            tracing::info!(target: "qbo_rs", "share {}: {reused} window(s) staged by an earlier attempt; reading the other {}", share.label, plan.windows.len());
        }
        let attempt = manifest.attempts.len() + 1;
        let records = paths.records(attempt);
        let partial = records.with_extension("jsonl.partial");
        let file = Arc::new(StageSink::create(partial.clone())?);
        let sinks: Vec<Arc<dyn Sink>> = vec![Arc::clone(&file) as Arc<dyn Sink>];
        let spec = ReadSpec { entity: share.entity, field: share.field, page_size: share.page_size, budget };
        let (reports, stats) = crate::stream_run::read_planned(client, &sinks, &spec, plan, max_streams, None, &crate::stop::StopSignal::new()).await;
        read = stats;
        let committed = commit_attempt(&paths, &mut manifest, &file, &partial, &records, &reports);
        for mut report in reports {
            if let Err(e) = &committed {
                if report.status == WindowStatus::Ok {
                    report.status = WindowStatus::Failed;
                    report.error = Some(e.to_string());
                }
            }
            fetched.insert(report.label.clone(), report);
        }
        if let Err(e) = committed {
            tracing::error!(target: "qbo_rs", "share {}: staging failed: {e}", share.label);
        }
    }
    let earlier: HashMap<&str, &StagedPart> = manifest.attempts.iter().flat_map(|a| a.parts.iter()).map(|p| (p.counts.window.label.as_str(), p)).collect();
    let windows = share
        .windows
        .iter()
        .map(|w| fetched.remove(&w.label).unwrap_or_else(|| earlier.get(w.label.as_str()).map_or_else(|| unstaged(w), |p| p.fetch_report())))
        .collect();
    Ok(ShareStageResult { windows, read, manifest: paths.manifest(), reused, exported: false })
}

/// A window with no report: only when committing the attempt failed before it was read.
fn unstaged(window: &Window) -> WindowReport {
    WindowReport { status: WindowStatus::Failed, error: Some("not staged".into()), ..staged_report(window, 0, 0, WindowFetch::default()) }
}

/// Publishes the attempt's records file and adds the windows it read completely to the
/// manifest (written atomically: the commit point). An attempt with nothing to keep leaves
/// no file.
fn commit_attempt(
    paths: &SharePaths,
    manifest: &mut ShareManifest,
    file: &StageSink,
    partial: &Path,
    records: &Path,
    reports: &[WindowReport],
) -> Result<(), Error> {
    let bytes = file.file.finish()?;
    let mut written = file.parts.lock().unwrap_or_else(|p| p.into_inner());
    let now = Utc::now();
    let parts: Vec<StagedPart> = reports
        .iter()
        .filter(|r| r.status == WindowStatus::Ok)
        .map(|r| {
            let (segments, lines, ingested_at) = written.remove(&r.label).unwrap_or_else(|| (Vec::new(), 0, now));
            let window = Window { start: r.start, end: r.end, label: r.label.clone() };
            StagedPart { counts: StagedCounts { window, rows_fetched: r.rows_fetched, lines, ingested_at }, segments }
        })
        .collect();
    if parts.is_empty() {
        remove_if_present(partial)?;
        return Ok(());
    }
    if parts.iter().any(|p| p.counts.lines > 0) {
        fs::rename(partial, records).map_err(|e| stage_io("publish", records, e))?;
    } else {
        remove_if_present(partial)?;
    }
    let records_file = records.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    manifest.attempts.push(StagedAttempt { records_file, bytes, parts });
    let body = serde_json::to_vec(&*manifest).map_err(|e| Error::Sink(format!("cannot encode the stage manifest: {e}")))?;
    publish(&paths.manifest(), &body).inspect_err(|_| {
        manifest.attempts.pop();
    })?;
    Ok(())
}

fn check_same_share(paths: &SharePaths, run_id: &str, share: &ReadShare, entity: Entity, labels: &[&str]) -> Result<(), Error> {
    let same = entity == share.entity && labels.len() == share.windows.len() && labels.iter().zip(&share.windows).all(|(a, w)| *a == w.label);
    if same {
        Ok(())
    } else {
        Err(same_share_error(paths, run_id, share))
    }
}

fn same_share_error(paths: &SharePaths, run_id: &str, share: &ReadShare) -> Error {
    Error::config(format!(
        "run {run_id} already staged a share labelled {} in {} with other windows than this {} share of {} window(s): use another run id",
        share.label,
        paths.dir.display(),
        share.entity.slug(),
        share.windows.len()
    ))
}

/// What [`export_share`] did.
#[derive(Debug)]
pub struct ShareExport {
    pub entity: Entity,
    /// One report per window, in time order.
    pub windows: Vec<WindowReport>,
    /// The export had been done already (a receipt): nothing was written now.
    pub from_receipt: bool,
    /// How long the export took (the first one's, when answered from its receipt).
    pub duration: Duration,
}

/// Writes every window of the share staged at `manifest` into the sinks of `options`, a few
/// windows at once, and checks rows staged against rows each sink now holds. Once every
/// window is written it keeps a receipt and removes the stage (unless `keep`); run again, it
/// returns the receipt's reports and writes nothing. A share with a window not staged is
/// refused before anything is written.
pub async fn export_share(manifest: &Path, options: &SinkOptions, keep: bool) -> Result<ShareExport, Error> {
    let paths = SharePaths::of_manifest(manifest)?;
    let _lock = paths.lock().await?;
    let Some(staged) = ShareManifest::load(&paths.manifest())? else {
        let Some(receipt) = ShareReceipt::load(&paths.receipt())? else {
            return Err(Error::config(format!("no staged share at {}: run the fetch step for it (again) first", manifest.display())));
        };
        let wanted = options.kind.sink_names();
        let written: Vec<&str> = receipt.windows.first().map(|w| w.written.sinks.iter().map(|s| s.sink.as_str()).collect()).unwrap_or_default();
        if !receipt.windows.is_empty() && !wanted.iter().all(|n| written.contains(n)) {
            return Err(Error::config(format!(
                "share {} was written to {} (receipt {}) and its stage removed; to write it to {} too, run its fetch step again",
                receipt.label,
                written.join(" and "),
                paths.receipt().display(),
                wanted.join(" and ")
            )));
        }
        tracing::info!(target: "qbo_rs", "share {}: already written at {} (receipt {}); nothing to write again",
            receipt.label, receipt.exported_at.format("%Y-%m-%dT%H:%M:%SZ"), paths.receipt().display());
        return Ok(ShareExport {
            entity: receipt.entity,
            windows: receipt.windows.iter().map(PartReceipt::report).collect(),
            from_receipt: true,
            duration: Duration::from_nanos(receipt.duration_ns),
        });
    };
    let missing: Vec<&Window> = staged.windows.iter().filter(|w| !staged.staged(&w.label)).collect();
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "share {}: {} of its {} window(s) are not staged ({}): run its fetch step again, which reads only those",
            staged.label,
            missing.len(),
            staged.windows.len(),
            crate::window::ranges_text(&missing, 6)
        )));
    }
    for attempt in &staged.attempts {
        let path = paths.dir.join(&attempt.records_file);
        let size = if attempt.parts.iter().all(|p| p.counts.lines == 0) { 0 } else { fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX) };
        let expected = if attempt.parts.iter().all(|p| p.counts.lines == 0) { 0 } else { attempt.bytes };
        if size != expected {
            return Err(Error::Integrity(format!(
                "the staged records {} are missing or hold other bytes than the manifest says: re-run the fetch step",
                path.display()
            )));
        }
    }
    let started = std::time::Instant::now();
    let sinks = open_sinks(staged.entity, options).await?;
    let gate = Arc::new(tokio::sync::Semaphore::new(EXPORT_WINDOWS_AT_ONCE));
    let budget = MemoryBudget::new(u64::from(DEFAULT_MAX_BUFFER_MB) << 20);
    let mut tasks = tokio::task::JoinSet::new();
    for (order, (attempt, part)) in staged.parts().into_iter().enumerate() {
        let (sinks, gate, budget, part) = (sinks.clone(), Arc::clone(&gate), Arc::clone(&budget), part.clone());
        let (path, entity, realm_id, page_size) = (paths.dir.join(&attempt.records_file), staged.entity, staged.realm_id.clone(), staged.page_size);
        tasks.spawn(async move {
            let _slot = gate.acquire_owned().await.expect("gate never closed");
            let lines = StagedLines {
                entity,
                realm_id: &realm_id,
                page_size,
                ingested_at: part.counts.ingested_at,
                records_path: &path,
                segments: &part.segments,
                lines: part.counts.lines,
            };
            let report = write_staged_lines(lines, part.fetch_report(), &sinks, budget).await;
            (order, part, report)
        });
    }
    let mut done = Vec::with_capacity(staged.windows.len());
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.map_err(|e| Error::Sink(format!("a window's export crashed: {e}")))?);
    }
    done.sort_by_key(|(order, _, _)| *order);
    let all_ok = done.iter().all(|(_, _, r)| r.status == WindowStatus::Ok);
    // One measure for the receipt and the report, so a repeated export says the same.
    let duration = started.elapsed();
    if all_ok && !keep {
        // The receipt first: from then on a repeated export answers from it.
        let receipt = ShareReceipt {
            format: FORMAT,
            entity: staged.entity,
            label: staged.label.clone(),
            exported_at: Utc::now(),
            duration_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            windows: done
                .iter()
                .map(|(_, part, r)| PartReceipt { part: StagedPart { segments: Vec::new(), ..part.clone() }, written: WindowWritten::of(r) })
                .collect(),
        };
        let body = serde_json::to_vec(&receipt).map_err(|e| Error::Sink(format!("cannot encode the export receipt: {e}")))?;
        publish(&paths.receipt(), &body)?;
        if let Err(e) = paths.remove_stage(&staged) {
            tracing::warn!(target: "qbo_rs", "share {} was written but its stage could not be removed: {e}", staged.label);
        }
    }
    Ok(ShareExport { entity: staged.entity, windows: done.into_iter().map(|(_, _, r)| r).collect(), from_receipt: false, duration })
}
