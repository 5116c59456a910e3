//! The stage steps with the report a caller shows a user: each window, how long the step took,
//! the requests it sent and the records it held in memory. Front ends (the Python binding)
//! call these rather than assembling reports themselves.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{export_share, export_window, stage_share, stage_window, ShareStageRequest, ShareStageResult, StageRequest, StageResult};
use crate::backfill::{BackfillReport, ReadStats, WindowReport};
use crate::budget::{MemoryBudget, DEFAULT_MAX_BUFFER_MB};
use crate::client::QboClient;
use crate::entity::Entity;
use crate::error::Error;
use crate::sink::SinkOptions;

/// A fetch holds at most what a backfill does by default.
fn fetch_budget() -> Arc<MemoryBudget> {
    MemoryBudget::new(u64::from(DEFAULT_MAX_BUFFER_MB) << 20)
}

/// A step's report: no estimate (a stage step reads what it was given).
fn report(
    entity: Entity,
    windows: Vec<WindowReport>,
    duration: std::time::Duration,
    requests: crate::client::RequestCounts,
    read: ReadStats,
    peak: u64,
) -> BackfillReport {
    BackfillReport { entity, windows, duration, requests, estimate: None, read, peak_buffer_bytes: peak }
}

/// [`stage_window`], with its one-window report.
pub async fn stage_window_reported(client: &QboClient, request: StageRequest) -> Result<(BackfillReport, StageResult), Error> {
    let (started, before, entity, budget) = (Instant::now(), client.request_counts(), request.entity, fetch_budget());
    let result = stage_window(client, request, Arc::clone(&budget)).await?;
    let windows = vec![result.report.clone()];
    Ok((report(entity, windows, started.elapsed(), client.request_counts() - before, ReadStats::default(), budget.peak()), result))
}

/// [`stage_share`], with a report of each of the share's windows.
pub async fn stage_share_reported(client: &QboClient, request: ShareStageRequest) -> Result<(BackfillReport, ShareStageResult), Error> {
    let (started, before, entity, budget) = (Instant::now(), client.request_counts(), request.share.entity, fetch_budget());
    let result = stage_share(client, request, Arc::clone(&budget)).await?;
    let windows = result.windows.clone();
    Ok((report(entity, windows, started.elapsed(), client.request_counts() - before, result.read, budget.peak()), result))
}

/// [`export_window`], as a report. An export sends no request and reads its stage a batch at
/// a time, so it holds nothing worth counting.
pub async fn export_window_reported(manifest: &Path, options: &SinkOptions, keep: bool) -> Result<BackfillReport, Error> {
    let started = Instant::now();
    let (entity, window) = export_window(manifest, options, keep).await?;
    Ok(report(entity, vec![window], started.elapsed(), Default::default(), ReadStats::default(), 0))
}

/// [`export_share`], as a report (its duration the export's own, also when answered from its
/// receipt).
pub async fn export_share_reported(manifest: &Path, options: &SinkOptions, keep: bool) -> Result<BackfillReport, Error> {
    let done = export_share(manifest, options, keep).await?;
    Ok(report(done.entity, done.windows, done.duration, Default::default(), ReadStats::default(), 0))
}
