//! One sync, step by step: what the sinks hold, the deletion sweep (or why a reconciliation),
//! the read, the confirmed deletions, the saved state.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, DurationRound, Utc};

use super::ask::{existing, oldest_update};
use super::witness::Witness;
use super::{SinkDeletions, SyncMode, SyncReport, SyncRequest};
use crate::backfill::{run_backfill_until, BackfillReport, BackfillRequest, Progress};
use crate::cdc::{LOOKBACK_DAYS, MAX_OBJECTS};
use crate::client::QboClient;
use crate::entity::FilterField;
use crate::error::Error;
use crate::report::ReadStats;
use crate::sink::{DeleteBatch, Deleted, Sink, SyncState, SyncView};
use crate::stop::StopSignal;
use crate::time::format_utc;

/// A sweep starts at least this long after the oldest instant CDC accepts, so a slow request or
/// a clock a little ahead of QuickBooks' is not refused.
const LOOKBACK_MARGIN: chrono::Duration = chrono::Duration::hours(1);

/// Syncs `request`'s entity into `sinks` (see the module's docs). Once `stop` is raised it ends
/// early: what is read is written, no deletion is recorded and no state saved, so the next sync
/// starts from the same place.
pub async fn run_sync(
    client: &QboClient,
    sinks: Vec<Arc<dyn Sink>>,
    request: &SyncRequest,
    progress: Option<Arc<dyn Progress>>,
    stop: &StopSignal,
) -> Result<SyncReport, Error> {
    crate::sink::require_one(&sinks)?;
    let entity = request.entity();
    let started = Instant::now();
    let before = client.request_counts();
    let realm = client.realm_id().to_string();
    let mut views = Vec::with_capacity(sinks.len());
    for sink in &sinks {
        views.push(sink.sync_view(&realm).await?);
    }
    let now = Utc::now();
    let from = Start::of(&views, request.overlap);
    let last_sweep = sweep_start(&views);
    let mut swept_from = last_sweep.map(|t| t - request.overlap);

    // The sweep first: its answer carries QuickBooks' clock, which bounds the read.
    let mut mode = match (from, last_sweep) {
        (Start::Empty, None) => SyncMode::Initial,
        // Everything is read for the empty sink anyway: checking the others' ids costs little more.
        (Start::Empty, Some(_)) => SyncMode::Reconciliation { reason: "one sink holds nothing while another holds records".into() },
        (Start::At(_), _) => SyncMode::Incremental,
    };
    let mut reported: Vec<Deleted> = Vec::new();
    let mut through = now;
    if let (SyncMode::Incremental, Some(last), Some(since)) = (&mode, last_sweep, swept_from) {
        if since < now - chrono::Duration::days(LOOKBACK_DAYS) + LOOKBACK_MARGIN {
            mode = SyncMode::Reconciliation {
                reason: format!("the last deletion sweep ({}) is older than the {LOOKBACK_DAYS} days Change Data Capture looks back", format_utc(last)),
            };
        } else {
            // An answer at CDC's cap is asked again over the shorter range that starts at the last
            // sweep itself, without the overlap: a burst of changes just before the last sync
            // (already read, and swept by it) then no longer fills the answer.
            let mut page = client.cdc(entity, since).await?;
            if page.at_cap() && last > since {
                tracing::info!(target: "qbo_rs", "sync {entity}: Change Data Capture answered its cap of {MAX_OBJECTS} objects since {}: asking again since the last sweep, {}", format_utc(since), format_utc(last));
                swept_from = Some(last);
                page = client.cdc(entity, last).await?;
            }
            through = page.time.unwrap_or(now);
            if page.at_cap() {
                mode = SyncMode::Reconciliation {
                    reason: format!(
                        "Change Data Capture answered {} objects for changes since {}, its cap of {MAX_OBJECTS}: deletions past the cap are not listed",
                        page.objects,
                        format_utc(swept_from.unwrap_or(since))
                    ),
                };
            } else {
                reported = page.deleted;
            }
        }
    }
    if let SyncMode::Reconciliation { reason } = &mode {
        tracing::warn!(target: "qbo_rs", "sync {entity}: {reason}; reconciling instead: every {entity} is read and each id QuickBooks no longer has is marked deleted");
    }

    // The read.
    let read_from = match (&mode, from) {
        (SyncMode::Incremental, Start::At(t)) => Some(t),
        _ => oldest_update(client, entity, request.read.start, through).await?.map(|t| t.duration_trunc(chrono::Duration::days(1)).unwrap_or(t)),
    };
    let witness = matches!(mode, SyncMode::Reconciliation { .. }).then(|| Arc::new(Witness::new(Arc::clone(&sinks[0]))));
    let mut read_sinks = sinks.clone();
    if let Some(w) = &witness {
        read_sinks[0] = Arc::clone(w) as Arc<dyn Sink>;
    }
    // Queries compare whole seconds, and records may still be stamped with the current second:
    // the read ends at the last whole second before QuickBooks' clock.
    let through = through.duration_trunc(chrono::Duration::seconds(1)).unwrap_or(through);
    let read_from = read_from.unwrap_or(through).min(through);
    tracing::info!(target: "qbo_rs", "sync {entity} ({}): changes from {} to {}{}", mode.name(), format_utc(read_from), format_utc(through),
        swept_from.filter(|_| mode == SyncMode::Incremental).map(|t| format!(", deletions since {}", format_utc(t))).unwrap_or_default());
    let read = if read_from < through {
        let spent = (client.request_counts() - before).api_calls();
        let read_request = BackfillRequest {
            start: read_from,
            end: through,
            filter_field: FilterField::LastUpdatedTime,
            only_labels: None,
            max_requests: request.read.max_requests.map(|max| max.saturating_sub(spent)),
            ..request.read.clone()
        };
        run_backfill_until(client, read_sinks, &read_request, progress, stop).await?
    } else {
        nothing_read(entity)
    };

    // The deletions, confirmed.
    let candidates: Vec<Deleted> = match (&mode, &witness) {
        (SyncMode::Reconciliation { .. }, Some(w)) if read.ok() && !stop.is_stopped() => {
            let seen = w.seen();
            let mut held = HashSet::new();
            for sink in &sinks {
                held.extend(sink.live_ids(&realm).await?);
            }
            held.into_iter().filter(|id| !seen.contains(id)).map(|id| Deleted { id, deleted_at: through }).collect()
        }
        _ => newest_per_id(reported),
    };
    let mut deletions = Vec::new();
    let (mut found, mut refuted) = (0, 0);
    if !candidates.is_empty() && !stop.is_stopped() {
        let ids: Vec<&str> = candidates.iter().map(|d| d.id.as_str()).collect();
        let alive = existing(client, entity, &ids).await?;
        let confirmed: Vec<Deleted> = candidates.iter().filter(|d| !alive.contains(&d.id)).cloned().collect();
        (found, refuted) = (confirmed.len() as u64, (candidates.len() - confirmed.len()) as u64);
        if refuted > 0 {
            tracing::warn!(target: "qbo_rs", "sync {entity}: {refuted} record(s) reported deleted still exist in QuickBooks: kept alive");
        }
        let batch = Arc::new(DeleteBatch { entity, learnt_at: Utc::now(), deletions: confirmed });
        for sink in &sinks {
            deletions.push(SinkDeletions { sink: sink.name().to_string(), outcome: sink.delete(Arc::clone(&batch)).await? });
        }
    }

    // The state, once everything it vouches for is committed.
    let state_saved = read.ok() && !stop.is_stopped();
    if state_saved {
        let state = SyncState { read_through: through, swept_through: through };
        for sink in &sinks {
            sink.save_sync_state(&realm, state).await?;
        }
    }
    let report = SyncReport {
        entity,
        mode,
        read_from,
        read_through: through,
        swept_from,
        read,
        deletions_found: found,
        deletions_refuted: refuted,
        deletions,
        requests: client.request_counts() - before,
        duration: started.elapsed(),
        state_saved,
    };
    log_sync(&report, stop.is_stopped());
    Ok(report)
}

/// Where the read starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// Some sink holds nothing and has no state: read everything.
    Empty,
    At(DateTime<Utc>),
}

impl Start {
    /// The earliest of the sinks' high-water marks (the state's `read_through`, or before a
    /// first sync the newest record held), less the overlap.
    fn of(views: &[SyncView], overlap: chrono::Duration) -> Start {
        let mut earliest: Option<DateTime<Utc>> = None;
        for v in views {
            let Some(mark) = v.state.map(|s| s.read_through).or(v.newest_updated) else { return Start::Empty };
            earliest = Some(earliest.map_or(mark, |e| e.min(mark)));
        }
        earliest.map_or(Start::Empty, |t| Start::At(t - overlap))
    }
}

/// Since when deletions must be swept: the earliest last sweep, or before a first sync the
/// oldest ingestion of a live record; `None` when no sink holds a live record or a sweep.
fn sweep_start(views: &[SyncView]) -> Option<DateTime<Utc>> {
    views.iter().filter_map(|v| v.state.map(|s| s.swept_through).or(v.oldest_live_ingested)).min()
}

/// One deletion per id, the latest.
fn newest_per_id(reported: Vec<Deleted>) -> Vec<Deleted> {
    let mut by_id: BTreeMap<String, Deleted> = BTreeMap::new();
    for d in reported {
        match by_id.get(&d.id) {
            Some(kept) if kept.deleted_at >= d.deleted_at => {}
            _ => {
                by_id.insert(d.id.clone(), d);
            }
        }
    }
    by_id.into_values().collect()
}

fn nothing_read(entity: crate::entity::Entity) -> BackfillReport {
    BackfillReport {
        entity,
        windows: Vec::new(),
        duration: std::time::Duration::ZERO,
        requests: Default::default(),
        estimate: None,
        read: ReadStats::default(),
        peak_buffer_bytes: 0,
    }
}

fn log_sync(report: &SyncReport, interrupted: bool) {
    // The read logged its own `Total … descargadas` and `Validation:` lines; say them for a sync
    // that had nothing to read, so every run has them.
    let entity = report.entity;
    if report.read.windows.is_empty() {
        tracing::info!(target: "qbo_rs", "Total {} descargadas: 0", entity.plural());
        tracing::info!(target: "qbo_rs", "Validation: Integrity Check Passed");
    }
    let rows = report.rows();
    tracing::info!(target: "qbo_rs", "sync {entity} ({}): {} inserted, {} updated, {} unchanged; {} deletion(s) found, {} marked now; {} request(s){}",
        report.mode.name(), rows.inserted, rows.updated, rows.unchanged + rows.stale, report.deletions_found, report.marked_deleted(),
        report.requests.api_calls(), if interrupted { "; interrupted: run the same sync again (it starts from the same place)" } else { "" });
}
