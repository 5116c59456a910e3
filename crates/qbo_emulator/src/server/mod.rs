//! The HTTP side: routes, auth, throttling, fault injection, and the admin routes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering as AtOrd};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::auth::{Auth, BearerError};
use crate::clock::ChangeClock;
use crate::config::{FaultKind, Knobs, ThrottleBody};
use crate::data::{DataSummary, Entity, Table};
use crate::pacific::{format_pacific, format_pacific_millis, parse_datetime_literal};
use crate::query::{self, QueryError};
use crate::rng::Rng;
use crate::stats::Stats;
use crate::{DeletedRow, Deletion, EmulatorError, TruthRow};

mod admin;
mod api;
mod changes;
mod company;
mod faults;
mod oauth;
mod responses;
mod window;

use admin::*;
use api::*;
use company::*;
use faults::{FaultSchedule, RequestKind};
use oauth::*;
use responses::*;
use window::MinuteWindow;

/// Value of the `QBO-Version` response header.
pub const QBO_VERSION: &str = "1944.190";
const JSON_CT: &str = "application/json;charset=utf-8";
const PLAIN_JSON_CT: &str = "application/json";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn rl<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
pub(crate) fn wl<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// State shared by every request.
pub(crate) struct Shared {
    pub realm: String,
    pub initial_refresh: String,
    pub knobs: RwLock<Knobs>,
    pub tables: Vec<RwLock<Table>>,
    pub auth: Mutex<Auth>,
    pub stats: Mutex<Stats>,
    pub summary: DataSummary,
    /// Calls of the realm in the last minute (`throttle_per_minute`).
    window: Mutex<MinuteWindow>,
    /// Batch requests in the last minute (`batch_per_minute`).
    batch_window: Mutex<MinuteWindow>,
    /// Until when every query request is throttled (`throttle_for_secs`).
    storm_until: Mutex<Option<Instant>>,
    in_flight: AtomicU32,
    faults: Mutex<FaultSchedule>,
    edit_rng: Mutex<Rng>,
    tid_rng: Mutex<Rng>,
    /// Stamps of edits, creations and deletions. Lock order: a table, then the clock.
    clock: Mutex<ChangeClock>,
}

/// Decrements the in-flight counter when the admitted request ends.
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, AtOrd::SeqCst);
    }
}

enum Reject {
    Forced,
    Limit,
    BatchLimit,
}

fn now_time() -> String {
    format_pacific_millis(Utc::now())
}

impl Shared {
    pub(crate) fn new(seed: u64, realm: String, auth: Auth, knobs: Knobs, tables: Vec<Table>, summary: DataSummary) -> Shared {
        Shared {
            realm,
            initial_refresh: auth.current_refresh().to_string(),
            knobs: RwLock::new(knobs),
            tables: tables.into_iter().map(RwLock::new).collect(),
            auth: Mutex::new(auth),
            stats: Mutex::new(Stats::default()),
            summary,
            window: Mutex::new(MinuteWindow::default()),
            batch_window: Mutex::new(MinuteWindow::default()),
            storm_until: Mutex::new(None),
            in_flight: AtomicU32::new(0),
            faults: Mutex::new(FaultSchedule::new(Rng::derive(seed, 0xFA17, 0), Instant::now())),
            edit_rng: Mutex::new(Rng::derive(seed, 0xED17, 0)),
            tid_rng: Mutex::new(Rng::derive(seed, 0x71D, 0)),
            clock: Mutex::new(ChangeClock::default()),
        }
    }

    /// Replaces the knobs; a `throttle_for_secs` starts its storm now and reads back 0; a changed
    /// `fault_first_k` or `fault_every_secs` counts from now.
    pub(crate) fn set_knobs(&self, mut knobs: Knobs) -> Knobs {
        let now = Instant::now();
        if knobs.throttle_for_secs > 0 {
            *lock(&self.storm_until) = Some(now + Duration::from_secs(u64::from(knobs.throttle_for_secs)));
            knobs.throttle_for_secs = 0;
        }
        let mut current = wl(&self.knobs);
        lock(&self.faults).knobs_changed(&current, &knobs, now);
        *current = knobs.clone();
        knobs
    }

    pub(crate) fn table(&self, e: Entity) -> &RwLock<Table> {
        &self.tables[e.index()]
    }

    fn tid(&self) -> String {
        let r = lock(&self.tid_rng).next_u64();
        let r2 = lock(&self.tid_rng).next_u64();
        format!("1-{:08x}-{:016x}{:08x}", Utc::now().timestamp() as u32, r, r2 as u32)
    }

    /// Sliding-window and in-flight admission of an API request worth `calls` calls (a batch's
    /// items), and for a batch its place in the batch window. A refused request counts nowhere.
    fn admit(self: &Arc<Self>, k: &Knobs, kind: RequestKind, calls: u32) -> Result<InFlight, Reject> {
        {
            let mut storm = lock(&self.storm_until);
            match *storm {
                Some(until) if Instant::now() < until => return Err(Reject::Forced),
                Some(_) => *storm = None,
                None => {}
            }
        }
        if k.force_429_next > 0 {
            let mut kn = wl(&self.knobs);
            if kn.force_429_next > 0 {
                if kn.force_429_after > 0 {
                    kn.force_429_after -= 1;
                } else {
                    kn.force_429_next -= 1;
                    return Err(Reject::Forced);
                }
            }
        }
        let now = Instant::now();
        // Lock order: batch window, then the realm's window.
        let mut batches = (kind == RequestKind::Batch).then(|| lock(&self.batch_window));
        if let Some(b) = batches.as_mut() {
            b.prune(now);
            if !b.has_room(k.batch_per_minute, 1) {
                return Err(Reject::BatchLimit);
            }
        }
        let mut w = lock(&self.window);
        w.prune(now);
        if !w.has_room(k.throttle_per_minute, calls) {
            return Err(Reject::Limit);
        }
        let cur = self.in_flight.fetch_add(1, AtOrd::SeqCst) + 1;
        let guard = InFlight(self.clone());
        if let Some(m) = k.max_in_flight.filter(|n| *n > 0) {
            if cur > m {
                return Err(Reject::Limit);
            }
        }
        w.push(now, calls);
        let n = w.len() as u32;
        drop(w);
        if let Some(mut b) = batches {
            b.push(now, 1);
        }
        let mut st = lock(&self.stats);
        st.max_in_flight = st.max_in_flight.max(cur);
        st.max_requests_in_60s = st.max_requests_in_60s.max(n);
        Ok(guard)
    }

    fn roll_fault(&self, k: &Knobs, kind: RequestKind) -> Option<FaultKind> {
        // No fault mode on: nothing to count (positions and periods restart when one is set).
        if k.fault_rate <= 0.0 && k.fault_first_k == 0 && k.fault_every_secs == 0 {
            return None;
        }
        let f = lock(&self.faults).draw(k, kind, Instant::now())?;
        let mut st = lock(&self.stats);
        st.faults_injected += 1;
        *st.faults_by_kind.entry(f.name().to_string()).or_default() += 1;
        *st.faults_by_request.entry(kind.name().to_string()).or_default() += 1;
        Some(f)
    }

    fn edit_pick(&self, k: &Knobs) -> Option<u64> {
        if k.edit_rate <= 0.0 {
            return None;
        }
        let mut r = lock(&self.edit_rng);
        r.chance(k.edit_rate).then(|| r.next_u64())
    }

    /// Edits record `idx` of an entity now; returns its truth row, or None when the record was
    /// deleted since the caller found it.
    pub(crate) fn edit_index(&self, e: Entity, idx: usize, paging: bool) -> Option<TruthRow> {
        let mut t = wl(self.table(e));
        if !t.edit(idx, &mut lock(&self.clock), Utc::now().timestamp_millis()) {
            return None;
        }
        let row = truth_row(&t.recs[idx]);
        drop(t);
        let mut st = lock(&self.stats);
        st.edits += 1;
        if paging {
            st.paging_edits += 1;
        }
        Some(row)
    }

    fn record(&self, route: &str, status: u16) {
        lock(&self.stats).count(route, status);
    }
}

pub(crate) fn truth_row(r: &crate::data::Rec) -> TruthRow {
    TruthRow {
        id: r.id.to_string(),
        sync_token: r.sync.to_string(),
        last_updated_time: format_pacific(r.updated),
        last_updated_utc: DateTime::from_timestamp(r.updated, 0).unwrap_or_default(),
        active: r.active,
    }
}

async fn fallback(State(s): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/v3/") {
        let tid = s.tid();
        finish(&s, "other", unsupported(&tid))
    } else {
        s.record("other", 404);
        let mut r = Response::new(Body::from("not found"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }
}

pub(crate) fn router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/v3/company/{realm}/query", get(query_route).post(query_route))
        .route("/v3/company/{realm}/batch", post(batch_route))
        .route("/v3/company/{realm}/cdc", get(cdc_route))
        .route("/v3/company/{realm}/preferences", get(preferences_route))
        .route("/v3/company/{realm}/{entity}/{id}", get(read_route))
        .route("/oauth2/v1/tokens/bearer", post(token_route))
        .route("/.well-known/openid_configuration", get(discovery_route))
        .route("/.well-known/openid-configuration", get(discovery_route))
        .route("/_emulator/truth/{entity}", get(truth_route))
        .route("/_emulator/stats", get(stats_route))
        .route("/_emulator/summary", get(summary_route))
        .route("/_emulator/credentials", get(credentials_route))
        .route("/_emulator/knobs", get(knobs_get).post(knobs_post))
        .route("/_emulator/edit/{entity}/{id}", post(edit_route))
        .route("/_emulator/delete/{entity}/{id}", post(delete_route))
        .route("/_emulator/create/{entity}", post(create_route))
        .route("/_emulator/deleted/{entity}", get(deleted_route))
        .route("/_emulator/expire-access-tokens", post(expire_route))
        .fallback(fallback)
        .with_state(s)
}
