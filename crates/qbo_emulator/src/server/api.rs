//! The QBO API: the gate every request passes (auth, realm, throttle, latency, faults) and the query, batch, CDC and read routes.

use super::*;

// ---------------------------------------------------------------------------------------------
// API gate: auth, realm, throttle, latency

pub(super) async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Runs the checks every API request passes. On success returns the in-flight guard (held
/// until the response is built) and a snapshot of the knobs. `calls` is what the request
/// weighs in the realm's window (a batch: its items).
pub(super) async fn gate(s: &Arc<Shared>, kind: RequestKind, calls: u32, realm: &str, headers: &HeaderMap, tid: &str) -> Result<(InFlight, Knobs), Response> {
    let route = kind.route();
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
    match s.admit(&k, kind, calls) {
        Ok(g) => {
            sleep_ms(k.latency_ms).await;
            Ok((g, k))
        }
        Err(why) => {
            {
                let mut st = lock(&s.stats);
                st.throttled += 1;
                match why {
                    Reject::Forced => st.forced_throttled += 1,
                    Reject::BatchLimit => st.batch_throttled += 1,
                    Reject::Limit => {}
                }
            }
            sleep_ms(k.latency_ms).await;
            Err(throttled(tid, &k))
        }
    }
}

/// A request let in: its in-flight slot (held until the answer is built), the knobs it runs
/// under, its intuit_tid, and the fault drawn for it.
pub(super) struct Entered {
    pub(super) _slot: InFlight,
    pub(super) k: Knobs,
    pub(super) tid: String,
    pub(super) fault: Option<FaultKind>,
}

/// What every API route does first: [`gate`], then draw a fault; a refusal or a fault that
/// replaces the answer comes back as the response to send, already recorded.
pub(super) async fn enter(s: &Arc<Shared>, kind: RequestKind, calls: u32, realm: &str, headers: &HeaderMap) -> Result<Entered, Response> {
    let route = kind.route();
    let tid = s.tid();
    let (slot, k) = gate(s, kind, calls, realm, headers, &tid).await.map_err(|r| finish(s, route, r))?;
    let fault = s.roll_fault(&k, kind);
    if let Some(r) = early_fault(fault, &k, &tid).await {
        return Err(finish(s, route, r));
    }
    Ok(Entered { _slot: slot, k, tid, fault })
}

pub(super) fn finish(s: &Shared, route: &str, r: Response) -> Response {
    s.record(route, r.status().as_u16());
    r
}

/// Applies an injected fault that replaces the response before any work.
pub(super) async fn early_fault(f: Option<FaultKind>, k: &Knobs, tid: &str) -> Option<Response> {
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

/// Sends a successful body, or mangles it for the Reset / Malformed faults. `metered` is the
/// number of reads the body answers (a batch: its items that answered), metered only when the
/// body goes out whole.
pub(super) fn deliver(s: &Shared, route: &str, f: Option<FaultKind>, tid: &str, body: Vec<u8>, metered: u64) -> Response {
    if !matches!(f, Some(FaultKind::Reset | FaultKind::Malformed)) {
        lock(&s.stats).metered_calls += metered;
    }
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

pub(super) fn parse_params(q: Option<&str>) -> HashMap<String, String> {
    q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// The statement of a POST: the raw body (`application/text`, `text/plain`, or anything
/// else), or the `query` field of a form body.
pub(super) fn statement_from_body(headers: &HeaderMap, body: &[u8]) -> Option<String> {
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

pub(super) async fn query_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "query";
    let params = parse_params(q.as_deref());
    let stmt = params.get("query").cloned().or_else(|| statement_from_body(&headers, &body)).unwrap_or_default();
    // Compiled first only to tell a page from a count (each has its own fault positions); a bad
    // statement is still answered after the gate and the fault, as QuickBooks checks auth first.
    let compiled = query::compile(&stmt);
    let kind = match &compiled {
        Ok(plan) if plan.count => RequestKind::QueryCount,
        _ => RequestKind::QueryPage,
    };
    let Entered { _slot, k, tid, fault } = match enter(&s, kind, 1, &realm, &headers).await {
        Ok(entered) => entered,
        Err(refused) => return refused,
    };
    let plan = match compiled {
        Ok(p) => p.with_default_order(k.default_order),
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
    deliver(&s, ROUTE, fault, &tid, body, 1)
}

/// Most items a batch may carry (Intuit's limits page; its batch page says 10).
const BATCH_MAX_ITEMS: usize = 30;

/// `POST /v3/company/{realm}/batch` with `{"BatchItemRequest":[{"bId":..,"Query":..}]}`. Only
/// query items are supported; at most 30 items. Each item is a call in the realm's window and,
/// when it answers, a metered read; the request itself is one of `batch_per_minute`.
pub(super) async fn batch_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    const ROUTE: &str = "batch";
    // Read before the gate only to weigh the request: a batch the realm's window must hold whole.
    let req: Result<serde_json::Value, _> = serde_json::from_slice(&body);
    let items = req.as_ref().ok().and_then(|v| v.get("BatchItemRequest")).and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let calls = if (1..=BATCH_MAX_ITEMS).contains(&items.len()) { items.len() as u32 } else { 1 };
    let Entered { _slot, k, tid, fault } = match enter(&s, RequestKind::Batch, calls, &realm, &headers).await {
        Ok(entered) => entered,
        Err(refused) => return refused,
    };
    if let Err(e) = req {
        let err = QueryError { code: "4000", message: "Error parsing request", detail: format!("Invalid JSON: {e}") };
        return finish(&s, ROUTE, validation_fault(&tid, &err));
    }
    if items.len() > BATCH_MAX_ITEMS {
        let err = QueryError {
            code: "4000",
            message: "Batch limit exceeded",
            detail: format!("Batch contains {} items. Max allowed is {BATCH_MAX_ITEMS}", items.len()),
        };
        return finish(&s, ROUTE, validation_fault(&tid, &err));
    }
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"BatchItemResponse\":[");
    let (mut rows, mut answered) = (0, 0);
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
                let plan = plan.with_default_order(k.default_order);
                out.extend_from_slice(b",\"QueryResponse\":");
                let pick = if plan.count { None } else { s.edit_pick(&k) };
                let info = {
                    let t = rl(s.table(plan.entity));
                    query::run(&t, &plan, pick, &mut out)
                };
                rows += info.rows;
                answered += 1;
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
    deliver(&s, ROUTE, fault, &tid, out, answered)
}

/// `GET /v3/company/{realm}/cdc?entities=Invoice,Customer&changedSince=...`: every object of the
/// listed entities changed at or after changedSince, as QuickBooks answers it. One group per
/// entity with changes, in the requested order: the live records whose LastUpdatedTime >=
/// changedSince ascending (by time, then Id), then a `"status":"Deleted"` stub for each
/// Invoice deleted at or after changedSince (deletion time compared to the millisecond),
/// ascending by deletion time. At most `cdc_max_objects` (1000) objects in the whole answer and
/// no paging: objects are taken entity by entity, actives then stubs, and the tail beyond the
/// cap is dropped; each group's `maxResults` and `totalCount` say how many objects it holds.
pub(super) async fn cdc_route(State(s): State<Arc<Shared>>, Path(realm): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    const ROUTE: &str = "cdc";
    let Entered { _slot, k, tid, fault } = match enter(&s, RequestKind::Cdc, 1, &realm, &headers).await {
        Ok(entered) => entered,
        Err(refused) => return refused,
    };
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
    let mut budget = if k.cdc_max_objects == 0 { usize::MAX } else { k.cdc_max_objects as usize };
    let mut groups: Vec<Vec<u8>> = Vec::new();
    for e in entities {
        if budget == 0 {
            break;
        }
        let t = rl(s.table(e));
        let lo = t.by_updated.partition_point(|k| k.0 < since_s);
        let actives = &t.by_updated[lo..lo + (t.by_updated.len() - lo).min(budget)];
        budget -= actives.len();
        let first_stub = t.deletions.partition_point(|d| d.0 < since_ms);
        let stubs = &t.deletions[first_stub..first_stub + (t.deletions.len() - first_stub).min(budget)];
        budget -= stubs.len();
        let n = actives.len() + stubs.len();
        if n == 0 {
            continue;
        }
        let mut g = Vec::new();
        g.extend_from_slice(b"{\"");
        g.extend_from_slice(e.name().as_bytes());
        g.extend_from_slice(b"\":[");
        for key in actives {
            g.extend_from_slice(&t.recs[key.1 as usize].json);
            g.push(b',');
        }
        for &(ms, idx) in stubs {
            write_deleted_stub(&mut g, t.recs[idx as usize].id, ms);
            g.push(b',');
        }
        g.pop();
        g.extend_from_slice(format!("],\"startPosition\":1,\"maxResults\":{n},\"totalCount\":{n}}}").as_bytes());
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
    deliver(&s, ROUTE, fault, &tid, out, 1)
}

/// The CDC stub of a deleted transaction: `{"domain":"QBO","status":"Deleted","Id":"129",
/// "MetaData":{"LastUpdatedTime":"2025-03-02T12:55:50-08:00"}}`, its time the deletion's in the
/// MetaData format (Pacific, whole seconds).
fn write_deleted_stub(out: &mut Vec<u8>, id: u32, deleted_ms: i64) {
    out.extend_from_slice(b"{\"domain\":\"QBO\",\"status\":\"Deleted\",\"Id\":\"");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\",\"MetaData\":{\"LastUpdatedTime\":\"");
    out.extend_from_slice(format_pacific(deleted_ms.div_euclid(1000)).as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// `GET /v3/company/{realm}/{entity}/{id}`: one record, `{"Invoice":{...},"time":..}`.
pub(super) async fn read_route(State(s): State<Arc<Shared>>, Path((realm, entity, id)): Path<(String, String, String)>, headers: HeaderMap) -> Response {
    const ROUTE: &str = "read";
    let Entered { _slot, tid, fault, .. } = match enter(&s, RequestKind::Read, 1, &realm, &headers).await {
        Ok(entered) => entered,
        Err(refused) => return refused,
    };
    if entity.eq_ignore_ascii_case("companyinfo") {
        return match company_info_body(&s.realm, &id) {
            Ok(body) => deliver(&s, ROUTE, fault, &tid, body, 1),
            Err(err) => finish(&s, ROUTE, validation_fault(&tid, &err)),
        };
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
    deliver(&s, ROUTE, fault, &tid, out, 1)
}

pub(super) fn unsupported(tid: &str) -> Response {
    api_respond(
        StatusCode::BAD_REQUEST,
        JSON_CT,
        tid,
        fault_body("ValidationFault", "500", "Unsupported Operation", "Operation Could not find resource for relative path is not supported.", None),
    )
}
