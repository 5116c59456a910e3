//! Counters exposed by [`crate::Emulator::stats`] and `GET /_emulator/stats`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A snapshot of the emulator's counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests by route (`query`, `batch`, `cdc`, `read`, `token`, `admin`, `other`) and HTTP
    /// status. Status `0` counts responses whose connection was dropped on purpose
    /// ([`crate::FaultKind::Reset`]).
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Every request to an API route (query, batch, cdc, read), whatever its outcome.
    pub api_requests: u64,
    /// Requests to the query route alone.
    pub query_requests: u64,
    /// 429 answers (window, in-flight or forced).
    pub throttled: u64,
    /// 429 answers caused by [`crate::Knobs::force_429_next`] or `throttle_for_secs`.
    pub forced_throttled: u64,
    /// 429 answers to batch requests over [`crate::Knobs::batch_per_minute`].
    pub batch_throttled: u64,
    /// Reads answered whole, as QuickBooks meters them: each query (page or COUNT), CDC and
    /// single-record read, and each batch item that answered a `QueryResponse`. Refusals, errors
    /// and injected faults are not metered.
    pub metered_calls: u64,
    /// 401 answers on API routes.
    pub unauthorized: u64,
    /// Injected faults, total and by [`crate::FaultKind::name`].
    pub faults_injected: u64,
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Injected faults by request kind (`query_page`, `query_count`, `batch`, `cdc`, `read`).
    pub faults_by_request: BTreeMap<String, u64>,
    /// Edits made (by `edit_rate` during paging, by [`crate::Emulator::edit`] or the admin route).
    pub edits: u64,
    /// Edits made by `edit_rate` during paging.
    pub paging_edits: u64,
    /// Deletions (a hard delete of an Invoice, or a Customer or Item made inactive) by
    /// [`crate::Emulator::delete`] or the admin route.
    pub deletes: u64,
    /// Records created by [`crate::Emulator::create`] or the admin route.
    pub creates: u64,
    /// Successful refresh-token grants.
    pub token_refreshes: u64,
    /// Refresh-token value rotations.
    pub rotations: u64,
    /// `invalid_grant` answers.
    pub invalid_grant: u64,
    /// `invalid_client` answers.
    pub invalid_client: u64,
    /// Most concurrent admitted API requests seen.
    pub max_in_flight: u32,
    /// Most admitted API requests seen inside any 60 s window.
    pub max_requests_in_60s: u32,
    /// Arrival of the first and the last query-route request.
    pub first_query_at: Option<DateTime<Utc>>,
    pub last_query_at: Option<DateTime<Utc>>,
    /// Records and body bytes served in successful query pages.
    pub rows_served: u64,
    pub bytes_served: u64,
}

impl Stats {
    pub(crate) fn count(&mut self, route: &str, status: u16) {
        *self.requests.entry(route.to_string()).or_default().entry(status).or_default() += 1;
    }

    /// Requests of a route with a given status.
    pub fn status_count(&self, route: &str, status: u16) -> u64 {
        self.requests.get(route).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }
}
