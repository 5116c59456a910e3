//! `sync`: bring the RAW layer up to date with QuickBooks, changes and deletions both.
//!
//! A sync reads what changed since the sinks' high-water mark with the backfill's own reads
//! (keyset pages by `LastUpdatedTime`, tie groups, inactive name-list records, newest version
//! wins), then records what QuickBooks deleted. Deletions come from Change Data Capture
//! ([`crate::cdc`]), swept from the last sweep on (an answer at CDC's cap is asked again from the
//! last sweep itself, without the overlap); when that is impossible (the last sweep is older than
//! CDC looks back, or an answer reached CDC's cap and may have left deletions out)
//! the sync **reconciles** instead: it reads every record of the entity and marks deleted each
//! id the sinks hold that QuickBooks no longer has. Every deletion is confirmed with an
//! `Id IN (…)` query before it is recorded. On a sink that holds nothing, a sync is a backfill.
//! What each sink was brought to is saved beside its data only after all of it is committed.

mod ask;
mod run;
mod witness;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backfill::{BackfillReport, BackfillRequest};
use crate::client::RequestCounts;
use crate::entity::Entity;
use crate::error::Error;
use crate::options::{unknown_option, OptionSet, OptionValue};
use crate::sink::{DeleteOutcome, WriteOutcome};
use crate::time::parse_user_instant;

pub use run::run_sync;

/// How far before the high-water mark and the last sweep a sync reads again: QuickBooks' clock
/// and ours may differ a little, and a record may show in queries a little after the
/// `LastUpdatedTime` it carries. Re-reading costs nothing but a few unchanged rows.
pub const DEFAULT_OVERLAP_MINUTES: u32 = 10;

/// Days per window of a sync's read, by default: one window for the whole range. A sync is run
/// again whole rather than window by window, and its range is usually hours; the read is still
/// cut into streams by the data, as a backfill's is.
pub const DEFAULT_SYNC_CHUNK_DAYS: u32 = 36_600;

/// How far back a sync of an empty sink (or a reconciliation) reads by default: before
/// QuickBooks Online existed, so everything (windows start at the oldest record anyway).
pub const DEFAULT_START: &str = "2000-01-01";

/// What a sync does.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The reads: entity, page size, chunk days, concurrent windows, memory and request budget
    /// as for a backfill. Its `start` is how far back a sync of an empty sink (or a
    /// reconciliation) reads; its end and filter field are the sync's own (now, `LastUpdatedTime`).
    pub read: BackfillRequest,
    /// See [`DEFAULT_OVERLAP_MINUTES`].
    pub overlap: chrono::Duration,
}

impl SyncRequest {
    pub fn new(entity: Entity) -> Self {
        let beginning = parse_user_instant("start", DEFAULT_START).expect("the default start parses");
        let read = BackfillRequest { chunk_days: DEFAULT_SYNC_CHUNK_DAYS, ..BackfillRequest::new(entity, beginning, Utc::now()) };
        SyncRequest { read, overlap: chrono::Duration::minutes(DEFAULT_OVERLAP_MINUTES.into()) }
    }

    pub fn entity(&self) -> Entity {
        self.read.entity
    }
}

impl OptionSet for SyncRequest {
    const NAMES: &'static [&'static str] = &["chunk_days", "page_size", "max_concurrent_windows", "max_buffer_mb", "max_requests", "overlap_minutes", "start"];

    fn set(&mut self, name: &str, value: &OptionValue) -> Result<(), Error> {
        match name {
            "overlap_minutes" => self.overlap = chrono::Duration::minutes(value.whole::<u32>(name)?.into()),
            "start" => self.read.start = parse_user_instant(name, &value.text(name)?)?,
            "chunk_days" | "page_size" | "max_concurrent_windows" | "max_buffer_mb" | "max_requests" => self.read.set(name, value)?,
            _ => return Err(unknown_option(name, &[Self::NAMES])),
        }
        Ok(())
    }
}

/// How a sync learnt what was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMode {
    /// The sinks held nothing: everything was read, nothing needed sweeping.
    Initial,
    /// Changes since the high-water mark; deletions from Change Data Capture.
    Incremental,
    /// Every record read; deleted = held but no longer in QuickBooks. Says why.
    Reconciliation { reason: String },
}

impl SyncMode {
    pub fn name(&self) -> &'static str {
        match self {
            SyncMode::Initial => "initial",
            SyncMode::Incremental => "incremental",
            SyncMode::Reconciliation { .. } => "reconciliation",
        }
    }
}

/// What one sink's deletions came to.
#[derive(Debug, Clone)]
pub struct SinkDeletions {
    pub sink: String,
    pub outcome: DeleteOutcome,
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub entity: Entity,
    pub mode: SyncMode,
    /// The read's range: `[read_from, read_through)` by `LastUpdatedTime` (empty when there was
    /// nothing to read).
    pub read_from: DateTime<Utc>,
    pub read_through: DateTime<Utc>,
    /// Where the deletion sweep started (`None`: no sweep, the sinks held nothing alive).
    pub swept_from: Option<DateTime<Utc>>,
    /// The read, window by window, as a backfill reports it.
    pub read: BackfillReport,
    /// Deletions QuickBooks reported (or a reconciliation found) that an `Id IN` query confirmed.
    pub deletions_found: u64,
    /// Reported deletions an `Id IN` query found alive (not recorded).
    pub deletions_refuted: u64,
    pub deletions: Vec<SinkDeletions>,
    /// Every request of the sync, by kind (the read's, the sweep's and the confirmations').
    pub requests: RequestCounts,
    pub duration: Duration,
    /// The sinks' state moved to `read_through`: false when a window failed or the sync was stopped
    /// (the next sync then starts from the same place).
    pub state_saved: bool,
}

impl SyncReport {
    /// What the read did to the first sink (every sink gets the same records).
    pub fn rows(&self) -> WriteOutcome {
        let mut total = WriteOutcome::default();
        for w in &self.read.windows {
            if let Some(first) = w.sinks.first() {
                total.add(first.outcome);
            }
        }
        total
    }

    /// Records marked deleted now, in the first sink.
    pub fn marked_deleted(&self) -> u64 {
        self.deletions.first().map_or(0, |d| d.outcome.marked)
    }

    pub fn ok(&self) -> bool {
        self.read.ok() && self.state_saved
    }
}
