//! What a sink knows of its own freshness, for `sync` to start from: how far the last sync
//! brought it (kept beside the data it describes) and what it holds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How far a sync brought a sink, for one realm and entity. Saved only once every record and
/// deletion it vouches for is committed, so a crash leaves the previous state and the next
/// sync reads those changes again (writes are idempotent): a change is never skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Every change QuickBooks made before this instant (by `LastUpdatedTime`) is held.
    pub read_through: DateTime<Utc>,
    /// Every deletion QuickBooks made before this instant is marked.
    pub swept_through: DateTime<Utc>,
}

/// Where a sink's next sync starts from, for one realm's entity: the saved state or, before the
/// first sync (after a backfill, say), what the sink holds. The held fields are read only when
/// there is no state, the one time a sync needs them (reading them is a scan of the file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncView {
    /// What the last sync saved; `None` before the first sync (after a backfill, say).
    pub state: Option<SyncState>,
    /// The newest `last_updated_utc` held, deleted records included.
    pub newest_updated: Option<DateTime<Utc>>,
    /// The oldest `ingested_at_utc` of a live record: a record deleted in QuickBooks since then
    /// may still be held alive.
    pub oldest_live_ingested: Option<DateTime<Utc>>,
    /// Records held and not marked deleted.
    pub live: u64,
}

impl SyncView {
    /// Folds one held record (its RAW lineage) into the view.
    pub fn hold(&mut self, last_updated: DateTime<Utc>, ingested: DateTime<Utc>, deleted: bool) {
        self.newest_updated = self.newest_updated.max(Some(last_updated));
        if !deleted {
            self.live += 1;
            self.oldest_live_ingested = Some(self.oldest_live_ingested.map_or(ingested, |t| t.min(ingested)));
        }
    }
}
