//! The HTTP side: routes, auth, throttling, fault injection, and the admin routes.

use std::collections::{HashMap, VecDeque};
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
use crate::config::{FaultKind, Knobs, ThrottleBody};
use crate::data::{DataSummary, Entity, Table};
use crate::pacific::{format_pacific, format_pacific_millis, parse_datetime_literal};
use crate::query::{self, QueryError};
use crate::rng::Rng;
use crate::stats::Stats;
use crate::TruthRow;

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
    window: Mutex<VecDeque<Instant>>,
    in_flight: AtomicU32,
    fault_rng: Mutex<Rng>,
    edit_rng: Mutex<Rng>,
    tid_rng: Mutex<Rng>,
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
            window: Mutex::new(VecDeque::new()),
            in_flight: AtomicU32::new(0),
            fault_rng: Mutex::new(Rng::derive(seed, 0xFA17, 0)),
            edit_rng: Mutex::new(Rng::derive(seed, 0xED17, 0)),
            tid_rng: Mutex::new(Rng::derive(seed, 0x71D, 0)),
        }
    }

    pub(crate) fn table(&self, e: Entity) -> &RwLock<Table> {
        &self.tables[e.index()]
    }

    fn tid(&self) -> String {
        let r = lock(&self.tid_rng).next_u64();
        let r2 = lock(&self.tid_rng).next_u64();
        format!("1-{:08x}-{:016x}{:08x}", Utc::now().timestamp() as u32, r, r2 as u32)
    }

    /// Sliding-window and in-flight admission of an API request.
    fn admit(self: &Arc<Self>, k: &Knobs) -> Result<InFlight, Reject> {
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
        let mut w = lock(&self.window);
        while let Some(&f) = w.front() {
            if now.duration_since(f) >= Duration::from_secs(60) {
                w.pop_front();
            } else {
                break;
            }
        }
        if let Some(lim) = k.throttle_per_minute.filter(|n| *n > 0) {
            if w.len() >= lim as usize {
                return Err(Reject::Limit);
            }
        }
        let cur = self.in_flight.fetch_add(1, AtOrd::SeqCst) + 1;
        let guard = InFlight(self.clone());
        if let Some(m) = k.max_in_flight.filter(|n| *n > 0) {
            if cur > m {
                return Err(Reject::Limit);
            }
        }
        w.push_back(now);
        let n = w.len() as u32;
        drop(w);
        let mut st = lock(&self.stats);
        st.max_in_flight = st.max_in_flight.max(cur);
        st.max_requests_in_60s = st.max_requests_in_60s.max(n);
        Ok(guard)
    }

    fn roll_fault(&self, k: &Knobs) -> Option<FaultKind> {
        if k.fault_rate <= 0.0 || k.fault_kinds.is_empty() {
            return None;
        }
        let mut r = lock(&self.fault_rng);
        if !r.chance(k.fault_rate) {
            return None;
        }
        let f = *r.pick(&k.fault_kinds);
        drop(r);
        let mut st = lock(&self.stats);
        st.faults_injected += 1;
        *st.faults_by_kind.entry(f.name().to_string()).or_default() += 1;
        Some(f)
    }

    fn edit_pick(&self, k: &Knobs) -> Option<u64> {
        if k.edit_rate <= 0.0 {
            return None;
        }
        let mut r = lock(&self.edit_rng);
        r.chance(k.edit_rate).then(|| r.next_u64())
    }

    /// Edits record `idx` of an entity now; returns its truth row.
    pub(crate) fn edit_index(&self, e: Entity, idx: usize, paging: bool) -> TruthRow {
        let mut t = wl(self.table(e));
        t.edit(idx, Utc::now().timestamp());
        let row = truth_row(&t.recs[idx]);
        drop(t);
        let mut st = lock(&self.stats);
        st.edits += 1;
        if paging {
            st.paging_edits += 1;
        }
        row
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

// ---------------------------------------------------------------------------------------------
// Response builders

fn respond(status: StatusCode, ctype: &'static str, tid: &str, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(tid) {
        h.insert("intuit_tid", v);
    }
    r
}

fn api_respond(status: StatusCode, ctype: &'static str, tid: &str, body: impl Into<Body>) -> Response {
    let mut r = respond(status, ctype, tid, body);
    let h = r.headers_mut();
    h.insert("qbo-version", HeaderValue::from_static(QBO_VERSION));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0, no-cache, no-store, must-revalidate, private"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    r
}

/// The general capitalised Fault envelope (`{"Fault":{"Error":[...],"type":...}}`).
fn fault_body(ftype: &str, code: &str, message: &str, detail: &str, element: Option<&str>) -> Vec<u8> {
    let mut err = json!({"Message": message, "Detail": detail, "code": code});
    if let Some(e) = element {
        err["element"] = json!(e);
    }
    serde_json::to_vec(&json!({"Fault": {"Error": [err], "type": ftype}, "time": now_time()})).unwrap_or_default()
}

fn validation_fault(tid: &str, e: &QueryError) -> Response {
    api_respond(StatusCode::BAD_REQUEST, JSON_CT, tid, fault_body("ValidationFault", e.code, e.message, &e.detail, Some("")))
}

fn system_fault_body() -> Vec<u8> {
    fault_body(
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: An unexpected error occurred (injected by qbo_emulator)",
        None,
    )
}

/// The lower-case envelope Intuit sends with 401 and 403 (`{"fault":{"error":[...]}}`).
fn lower_envelope(message: &str, detail: &str, code: &str, ftype: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "warnings": null, "intuitObject": null,
        "fault": {"error": [{"message": message, "detail": detail, "code": code, "element": null}], "type": ftype},
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": Utc::now().timestamp_millis(), "status": null,
        "cdcresponse": []
    }))
    .unwrap_or_default()
}

fn unauthorized(tid: &str, e: BearerError) -> Response {
    let body = lower_envelope("message=AuthenticationFailed; errorCode=003200; statusCode=401", e.detail(), "3200", "AUTHENTICATION");
    let mut r = api_respond(StatusCode::UNAUTHORIZED, PLAIN_JSON_CT, tid, body);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"Intuit\", error=\"invalid_token\""));
    r
}

fn forbidden(tid: &str) -> Response {
    let body = lower_envelope(
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "The application is not authorized to access this realm (company)",
        "3100",
        "SERVICE",
    );
    api_respond(StatusCode::FORBIDDEN, PLAIN_JSON_CT, tid, body)
}

fn throttled(tid: &str, k: &Knobs) -> Response {
    const MSG: &str = "message=ThrottleExceeded; errorCode=003001; statusCode=429";
    const DETAIL: &str = "The request limit was reached. Try again later";
    let mut r = match k.throttle_body {
        ThrottleBody::Json => api_respond(StatusCode::TOO_MANY_REQUESTS, JSON_CT, tid, fault_body("SERVICE", "3001", MSG, DETAIL, None)),
        ThrottleBody::Xml => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
                 <IntuitResponse xmlns=\"http://schema.intuit.com/finance/v3\" time=\"{}\">\
                 <Fault type=\"SERVICE\"><Error code=\"3001\"><Message>{MSG}</Message>\
                 <Detail>{DETAIL}</Detail></Error></Fault></IntuitResponse>",
                now_time()
            );
            api_respond(StatusCode::TOO_MANY_REQUESTS, "application/xml", tid, body)
        }
    };
    if let Some(s) = k.retry_after_secs {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// API gate: auth, realm, throttle, latency

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Runs the checks every API request passes. On success returns the in-flight guard (held
/// until the response is built) and a snapshot of the knobs.
async fn gate(s: &Arc<Shared>, route: &'static str, realm: &str, headers: &HeaderMap, tid: &str) -> Result<(InFlight, Knobs), Response> {
    let k = rl(&s.knobs).clone();
    {
        let mut st = lock(&s.stats);
        st.api_requests += 1;
        if route == "query" {
            st.query_requests += 1;
            let now = Utc::now();
            st.first_query_at.get_or_insert(now);
            st.last_query_at = Some(now);
        }
    }
    let authz = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let checked = lock(&s.auth).check_bearer(authz);
    if let Err(e) = checked {
        lock(&s.stats).unauthorized += 1;
        sleep_ms(k.latency_ms).await;
        return Err(unauthorized(tid, e));
    }
    if realm != s.realm {
        sleep_ms(k.latency_ms).await;
        return Err(forbidden(tid));
    }
    match s.admit(&k) {
        Ok(g) => {
            sleep_ms(k.latency_ms).await;
            Ok((g, k))
        }
        Err(why) => {
            {
                let mut st = lock(&s.stats);
                st.throttled += 1;
                if matches!(why, Reject::Forced) {
                    st.forced_throttled += 1;
                }
            }
            sleep_ms(k.latency_ms).await;
            Err(throttled(tid, &k))
        }
    }
}

fn finish(s: &Shared, route: &str, r: Response) -> Response {
    s.record(route, r.status().as_u16());
    r
}

/// Applies an injected fault that replaces the response before any work.
async fn early_fault(f: Option<FaultKind>, k: &Knobs, tid: &str) -> Option<Response> {
    match f? {
        FaultKind::Http500 => Some(api_respond(StatusCode::INTERNAL_SERVER_ERROR, JSON_CT, tid, system_fault_body())),
        FaultKind::Http503 => Some(api_respond(
            StatusCode::SERVICE_UNAVAILABLE,
            JSON_CT,
            tid,
            fault_body("SERVICE", "503", "Service Unavailable", "The service is temporarily unavailable", None),
        )),
        FaultKind::Fault200 => Some(api_respond(StatusCode::OK, JSON_CT, tid, system_fault_body())),
        FaultKind::Slow => {
            sleep_ms(k.slow_ms).await;
            None
        }
        FaultKind::Reset | FaultKind::Malformed => None,
    }
}

/// Sends a successful body, or mangles it for the Reset / Malformed faults.
fn deliver(s: &Shared, route: &str, f: Option<FaultKind>, tid: &str, body: Vec<u8>) -> Response {
    match f {
        Some(FaultKind::Reset) => {
            let full = body.len();
            let part = Bytes::from(body).slice(..full / 2);
            let stream = futures_util::stream::iter(vec![
                Ok::<Bytes, std::io::Error>(part),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset")),
            ]);
            let mut r = api_respond(StatusCode::OK, JSON_CT, tid, Body::from_stream(stream));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(full));
            s.record(route, 0);
            r
        }
        Some(FaultKind::Malformed) => {
            let mut body = body;
            body.truncate((body.len() / 2).max(1));
            finish(s, route, api_respond(StatusCode::OK, JSON_CT, tid, body))
        }
        _ => finish(s, route, api_respond(StatusCode::OK, JSON_CT, tid, body)),
    }
}

fn parse_params(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The statement of a POST: the raw body (`application/text`, `text/plain`, or anything
/// else), or the `query` field of a form body.
fn statement_from_body(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded") {
        return form_urlencoded::parse(body).find(|(k, _)| k == "query").map(|(_, v)| v.into_owned());
    }
    Some(String::from_utf8_lossy(body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// API routes

async fn query_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "query";
    let tid = s.tid();
    let (_guard, k) = match gate(&s, ROUTE, &realm, &headers, &tid).await {
        Ok(x) => x,
        Err(r) => return finish(&s, ROUTE, r),
    };
    let fault = s.roll_fault(&k);
    if let Some(r) = early_fault(fault, &k, &tid).await {
        return finish(&s, ROUTE, r);
    }
    let params = parse_params(q.as_deref());
    let stmt = params.get("query").cloned().or_else(|| statement_from_body(&headers, &body)).unwrap_or_default();
    let plan = match query::compile(&stmt) {
        Ok(p) => p,
        Err(e) => return finish(&s, ROUTE, validation_fault(&tid, &e)),
    };
    let pick = if plan.count { None } else { s.edit_pick(&k) };
    // The page is written once, straight into the response buffer.
    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(b"{\"QueryResponse\":");
    let info = {
        let t = rl(s.table(plan.entity));
        query::run(&t, &plan, pick, &mut body)
    };
    if let Some(idx) = info.edit {
        s.edit_index(plan.entity, idx as usize, true);
    }
    body.extend_from_slice(b",\"time\":\"");
    body.extend_from_slice(now_time().as_bytes());
    body.extend_from_slice(b"\"}");
    if !matches!(fault, Some(FaultKind::Reset | FaultKind::Malformed)) {
        let mut st = lock(&s.stats);
        st.rows_served += info.rows as u64;
        st.bytes_served += body.len() as u64;
    }
    deliver(&s, ROUTE, fault, &tid, body)
}

/// `POST /v3/company/{realm}/batch` with `{"BatchItemRequest":[{"bId":..,"Query":..}]}`. Only
/// query items are supported; at most 30 items.
async fn batch_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "batch";
    let tid = s.tid();
    let (_guard, k) = match gate(&s, ROUTE, &realm, &headers, &tid).await {
        Ok(x) => x,
        Err(r) => return finish(&s, ROUTE, r),
    };
    let fault = s.roll_fault(&k);
    if let Some(r) = early_fault(fault, &k, &tid).await {
        return finish(&s, ROUTE, r);
    }
    let req: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            let err = QueryError { code: "4000", message: "Error parsing request", detail: format!("Invalid JSON: {e}") };
            return finish(&s, ROUTE, validation_fault(&tid, &err));
        }
    };
    let items = req.get("BatchItemRequest").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    if items.len() > 30 {
        let err = QueryError { code: "4000", message: "Batch limit exceeded", detail: format!("Batch contains {} items. Max allowed is 30", items.len()) };
        return finish(&s, ROUTE, validation_fault(&tid, &err));
    }
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"BatchItemResponse\":[");
    let mut rows = 0;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let bid = item.get("bId").and_then(|v| v.as_str()).unwrap_or("");
        out.extend_from_slice(b"{\"bId\":");
        out.extend_from_slice(&serde_json::to_vec(bid).unwrap_or_default());
        let stmt = item.get("Query").and_then(|v| v.as_str());
        let plan = match stmt {
            Some(q) => query::compile(q),
            None => Err(QueryError { code: "500", message: "Unsupported Operation", detail: "qbo_emulator batches support Query items only".into() }),
        };
        match plan {
            Ok(plan) => {
                out.extend_from_slice(b",\"QueryResponse\":");
                let pick = if plan.count { None } else { s.edit_pick(&k) };
                let info = {
                    let t = rl(s.table(plan.entity));
                    query::run(&t, &plan, pick, &mut out)
                };
                rows += info.rows;
                if let Some(idx) = info.edit {
                    s.edit_index(plan.entity, idx as usize, true);
                }
            }
            Err(e) => {
                let f = json!({"Error": [{"Message": e.message, "Detail": e.detail, "code": e.code, "element": ""}], "type": "ValidationFault"});
                out.extend_from_slice(b",\"Fault\":");
                out.extend_from_slice(&serde_json::to_vec(&f).unwrap_or_default());
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"time\":\"");
    out.extend_from_slice(now_time().as_bytes());
    out.extend_from_slice(b"\"}");
    {
        let mut st = lock(&s.stats);
        st.rows_served += rows as u64;
        st.bytes_served += out.len() as u64;
    }
    deliver(&s, ROUTE, fault, &tid, out)
}

/// `GET /v3/company/{realm}/cdc?entities=Invoice,Customer&changedSince=...`: records whose
/// LastUpdatedTime >= changedSince, ascending, at most 1000 objects in all.
async fn cdc_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    const ROUTE: &str = "cdc";
    let tid = s.tid();
    let (_guard, k) = match gate(&s, ROUTE, &realm, &headers, &tid).await {
        Ok(x) => x,
        Err(r) => return finish(&s, ROUTE, r),
    };
    let fault = s.roll_fault(&k);
    if let Some(r) = early_fault(fault, &k, &tid).await {
        return finish(&s, ROUTE, r);
    }
    let params = parse_params(q.as_deref());
    let bad = |detail: String| {
        let e = QueryError { code: "2010", message: "Request has invalid or unsupported property", detail };
        validation_fault(&tid, &e)
    };
    let Some(since_raw) = params.get("changedSince") else {
        return finish(&s, ROUTE, bad("Missing required parameter changedSince".into()));
    };
    let Some(since_ms) = parse_datetime_literal(since_raw) else {
        return finish(&s, ROUTE, bad(format!("Invalid changedSince value {since_raw}")));
    };
    if let Some(days) = k.cdc_max_lookback_days {
        if since_ms < Utc::now().timestamp_millis() - days as i64 * 86_400_000 {
            return finish(&s, ROUTE, bad(format!("Operation cdc with changedSince date {since_raw} which is older than fixed days is not supported.")));
        }
    }
    let mut entities = Vec::new();
    for name in params.get("entities").map(|s| s.as_str()).unwrap_or("").split(',') {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        match Entity::from_query_name(name) {
            Some(e) if !entities.contains(&e) => entities.push(e),
            Some(_) => {}
            None => return finish(&s, ROUTE, bad(format!("Unsupported entity {name} for cdc"))),
        }
    }
    if entities.is_empty() {
        return finish(&s, ROUTE, bad("Missing required parameter entities".into()));
    }
    let since_s = -((-since_ms).div_euclid(1000));
    let mut budget = 1000usize;
    let mut groups: Vec<Vec<u8>> = Vec::new();
    for e in entities {
        if budget == 0 {
            break;
        }
        let t = rl(s.table(e));
        let lo = t.by_updated.partition_point(|k| k.0 < since_s);
        let hi = t.by_updated.len().min(lo + budget);
        if hi == lo {
            continue;
        }
        budget -= hi - lo;
        let mut g = Vec::new();
        g.extend_from_slice(b"{\"");
        g.extend_from_slice(e.name().as_bytes());
        g.extend_from_slice(b"\":[");
        for (n, key) in t.by_updated[lo..hi].iter().enumerate() {
            if n > 0 {
                g.push(b',');
            }
            g.extend_from_slice(&t.recs[key.1 as usize].json);
        }
        g.extend_from_slice(format!("],\"startPosition\":1,\"maxResults\":{},\"totalCount\":{}}}", hi - lo, hi - lo).as_bytes());
        groups.push(g);
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"CDCResponse\":[{\"QueryResponse\":[");
    if groups.is_empty() {
        out.extend_from_slice(b"{}");
    }
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(g);
    }
    out.extend_from_slice(b"]}],\"time\":\"");
    out.extend_from_slice(now_time().as_bytes());
    out.extend_from_slice(b"\"}");
    deliver(&s, ROUTE, fault, &tid, out)
}

/// `GET /v3/company/{realm}/{entity}/{id}`: one record, `{"Invoice":{...},"time":..}`.
async fn read_route(State(s): State<Arc<Shared>>, Path((realm, entity, id)): Path<(String, String, String)>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "read";
    let tid = s.tid();
    let (_guard, k) = match gate(&s, ROUTE, &realm, &headers, &tid).await {
        Ok(x) => x,
        Err(r) => return finish(&s, ROUTE, r),
    };
    let fault = s.roll_fault(&k);
    if let Some(r) = early_fault(fault, &k, &tid).await {
        return finish(&s, ROUTE, r);
    }
    let Some(e) = Entity::from_query_name(&entity) else {
        return finish(&s, ROUTE, unsupported(&tid));
    };
    let t = rl(s.table(e));
    let Some(idx) = t.index_of(&id) else {
        drop(t);
        let err = QueryError {
            code: "610",
            message: "Object Not Found",
            detail: format!("Object Not Found : Something you're trying to use has been made inactive or does not exist. {} Id {id}", e.name()),
        };
        return finish(&s, ROUTE, validation_fault(&tid, &err));
    };
    let mut out = Vec::with_capacity(t.recs[idx].json.len() + 64);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(e.name().as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(&t.recs[idx].json);
    drop(t);
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(now_time().as_bytes());
    out.extend_from_slice(b"\"}");
    deliver(&s, ROUTE, fault, &tid, out)
}

fn unsupported(tid: &str) -> Response {
    api_respond(
        StatusCode::BAD_REQUEST,
        JSON_CT,
        tid,
        fault_body("ValidationFault", "500", "Unsupported Operation", "Operation Could not find resource for relative path is not supported.", None),
    )
}

// ---------------------------------------------------------------------------------------------
// OAuth token endpoint

fn oauth_error(status: StatusCode, tid: &str, body: &'static str) -> Response {
    respond(status, PLAIN_JSON_CT, tid, body)
}

/// `POST /oauth2/v1/tokens/bearer`, `grant_type=refresh_token`.
async fn token_route(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "token";
    let tid = s.tid();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b)| b.trim().to_string());
    let creds = match basic {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_string(), b.to_string()))),
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(a), Some(b)) => Some((a.clone(), b.clone())),
            _ => None,
        },
    };
    let knobs = rl(&s.knobs).clone();
    let mut auth = lock(&s.auth);
    if !creds.as_ref().is_some_and(|(id, secret)| auth.client_ok(id, secret)) {
        drop(auth);
        lock(&s.stats).invalid_client += 1;
        return finish(&s, ROUTE, oauth_error(StatusCode::UNAUTHORIZED, &tid, r#"{"error":"invalid_client"}"#));
    }
    match form.get("grant_type").map(|s| s.as_str()) {
        Some("refresh_token") => {}
        None => {
            drop(auth);
            return finish(&s, ROUTE, oauth_error(StatusCode::BAD_REQUEST, &tid, r#"{"error":"invalid_request"}"#));
        }
        Some(_) => {
            drop(auth);
            return finish(&s, ROUTE, oauth_error(StatusCode::BAD_REQUEST, &tid, r#"{"error":"unsupported_grant_type"}"#));
        }
    }
    let Some(rt) = form.get("refresh_token") else {
        drop(auth);
        return finish(&s, ROUTE, oauth_error(StatusCode::BAD_REQUEST, &tid, r#"{"error":"invalid_request"}"#));
    };
    let res = auth.refresh(rt, &knobs);
    drop(auth);
    match res {
        Err(_) => {
            lock(&s.stats).invalid_grant += 1;
            finish(
                &s,
                ROUTE,
                oauth_error(StatusCode::BAD_REQUEST, &tid, r#"{"error_description":"Incorrect or invalid refresh token","error":"invalid_grant"}"#),
            )
        }
        Ok(r) => {
            {
                let mut st = lock(&s.stats);
                st.token_refreshes += 1;
                if r.rotated {
                    st.rotations += 1;
                }
            }
            let hard =
                headers.get("x-include-refresh-token-hard-expires-in").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
            let mut body = format!("{{\"token_type\":\"bearer\",\"expires_in\":{},\"x_refresh_token_expires_in\":{},", r.expires_in, r.refresh_expires_in);
            if hard {
                body.push_str(&format!("\"x_refresh_token_hard_expires_in\":{},", r.hard_expires_in));
            }
            body.push_str(&format!("\"refresh_token\":\"{}\",\"access_token\":\"{}\"}}", r.refresh_token, r.access_token));
            let mut resp = respond(StatusCode::OK, JSON_CT, &tid, body);
            resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
            finish(&s, ROUTE, resp)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Admin routes

fn admin_json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
    r
}

fn admin_error(status: StatusCode, msg: String) -> Response {
    admin_json(status, &json!({"error": msg}))
}

async fn truth_route(State(s): State<Arc<Shared>>, Path(entity): Path<String>) -> Response {
    s.record("admin", 200);
    match Entity::parse_loose(&entity) {
        Some(e) => {
            let rows: Vec<TruthRow> = rl(s.table(e)).recs.iter().map(truth_row).collect();
            admin_json(StatusCode::OK, &rows)
        }
        None => admin_error(StatusCode::NOT_FOUND, format!("unknown entity {entity}")),
    }
}

async fn stats_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let st = lock(&s.stats).clone();
    admin_json(StatusCode::OK, &st)
}

async fn summary_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    admin_json(StatusCode::OK, &s.summary)
}

async fn credentials_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let a = lock(&s.auth);
    let v = json!({
        "realm_id": s.realm,
        "client_id": a.client_id,
        "client_secret": a.client_secret,
        "initial_refresh_token": s.initial_refresh,
        "current_refresh_token": a.current_refresh(),
    });
    drop(a);
    admin_json(StatusCode::OK, &v)
}

async fn knobs_get(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let k = rl(&s.knobs).clone();
    admin_json(StatusCode::OK, &k)
}

/// Merges a partial JSON object into the current knobs.
pub(crate) fn merge_knobs(current: &Knobs, patch: &[u8]) -> Result<Knobs, String> {
    let patch: serde_json::Value = serde_json::from_slice(patch).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = patch.as_object().ok_or("knobs patch must be a JSON object")?;
    let mut cur = serde_json::to_value(current).map_err(|e| e.to_string())?;
    for (key, v) in obj {
        let slot = cur.get_mut(key).ok_or_else(|| format!("unknown knob {key}"))?;
        *slot = v.clone();
    }
    serde_json::from_value(cur).map_err(|e| format!("invalid knobs: {e}"))
}

async fn knobs_post(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.record("admin", 200);
    let mut k = wl(&s.knobs);
    match merge_knobs(&k, &body) {
        Ok(new) => {
            *k = new.clone();
            drop(k);
            admin_json(StatusCode::OK, &new)
        }
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e),
    }
}

async fn edit_route(State(s): State<Arc<Shared>>, Path((entity, id)): Path<(String, String)>) -> Response {
    s.record("admin", 200);
    let Some(e) = Entity::parse_loose(&entity) else {
        return admin_error(StatusCode::NOT_FOUND, format!("unknown entity {entity}"));
    };
    let Some(idx) = rl(s.table(e)).index_of(&id) else {
        return admin_error(StatusCode::NOT_FOUND, format!("no {} with Id {id}", e.name()));
    };
    let row = s.edit_index(e, idx, false);
    admin_json(StatusCode::OK, &row)
}

async fn expire_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let n = lock(&s.auth).expire_all();
    admin_json(StatusCode::OK, &json!({"expired": n}))
}

/// `GET /.well-known/openid_configuration`: an OpenID discovery document whose endpoints point
/// at this emulator (built from the request's `Host`). Intuit's `intuit-oauth` Python client
/// accepts a discovery URL as its `environment`, so it can refresh against the emulator offline.
async fn discovery_route(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.record("admin", 200);
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    admin_json(
        StatusCode::OK,
        &json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/connect/oauth2"),
            "token_endpoint": format!("{base}/oauth2/v1/tokens/bearer"),
            "userinfo_endpoint": format!("{base}/v1/openid_connect/userinfo"),
            "revocation_endpoint": format!("{base}/oauth2/v1/tokens/revoke"),
            "jwks_uri": format!("{base}/oauth2/v1/keys"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile", "address", "phone", "com.intuit.quickbooks.accounting"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"]
        }),
    )
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
        .route("/_emulator/expire-access-tokens", post(expire_route))
        .fallback(fallback)
        .with_state(s)
}
