//! The `/_emulator/*` routes tests and tools drive the emulator with.

use super::*;

// ---------------------------------------------------------------------------------------------
// Admin routes

pub(super) fn admin_json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
    r
}

pub(super) fn admin_error(status: StatusCode, msg: String) -> Response {
    admin_json(status, &json!({"error": msg}))
}

/// The status an admin route answers an [`EmulatorError`] with, and its JSON error.
fn admin_failure(e: EmulatorError) -> Response {
    let status = match e {
        EmulatorError::UnknownEntity(_) | EmulatorError::UnknownId { .. } | EmulatorError::AlreadyDeleted { .. } => StatusCode::NOT_FOUND,
        EmulatorError::IdInUse { .. } => StatusCode::CONFLICT,
        EmulatorError::InvalidConfig(_) => StatusCode::BAD_REQUEST,
        EmulatorError::Bind { .. } | EmulatorError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    admin_error(status, e.to_string())
}

/// `answer` for the entity an admin path names, or a 404 for an unknown one.
fn with_entity(raw: &str, answer: impl FnOnce(Entity) -> Response) -> Response {
    match Entity::parse_loose(raw) {
        Some(e) => answer(e),
        None => admin_error(StatusCode::NOT_FOUND, format!("unknown entity {raw}")),
    }
}

/// The JSON of `done`, or the failure's status and message.
fn admin_result<T: serde::Serialize>(done: Result<T, EmulatorError>) -> Response {
    match done {
        Ok(v) => admin_json(StatusCode::OK, &v),
        Err(e) => admin_failure(e),
    }
}

pub(super) async fn truth_route(State(s): State<Arc<Shared>>, Path(entity): Path<String>) -> Response {
    s.record("admin", 200);
    with_entity(&entity, |e| {
        let rows: Vec<TruthRow> = rl(s.table(e)).live().map(truth_row).collect();
        admin_json(StatusCode::OK, &rows)
    })
}

/// `GET /_emulator/deleted/{entity}`: `[{"id","deleted_at"}]` ascending by deletion time.
pub(super) async fn deleted_route(State(s): State<Arc<Shared>>, Path(entity): Path<String>) -> Response {
    s.record("admin", 200);
    with_entity(&entity, |e| admin_json(StatusCode::OK, &s.deleted(e)))
}

/// `POST /_emulator/delete/{entity}/{id}`: answers the [`Deletion`].
pub(super) async fn delete_route(State(s): State<Arc<Shared>>, Path((entity, id)): Path<(String, String)>) -> Response {
    s.record("admin", 200);
    with_entity(&entity, |e| admin_result(s.delete(e, &id)))
}

/// `POST /_emulator/create/{entity}[?id=N]`: answers the new record's JSON as served.
pub(super) async fn create_route(State(s): State<Arc<Shared>>, Path(entity): Path<String>, RawQuery(q): RawQuery) -> Response {
    s.record("admin", 200);
    let params = parse_params(q.as_deref());
    with_entity(&entity, |e| match s.create(e, params.get("id").map(String::as_str)) {
        Ok(json) => {
            let mut r = Response::new(Body::from(json));
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
            r
        }
        Err(e) => admin_failure(e),
    })
}

pub(super) async fn stats_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let st = lock(&s.stats).clone();
    admin_json(StatusCode::OK, &st)
}

pub(super) async fn summary_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    admin_json(StatusCode::OK, &s.summary)
}

pub(super) async fn credentials_route(State(s): State<Arc<Shared>>) -> Response {
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

pub(super) async fn knobs_get(State(s): State<Arc<Shared>>) -> Response {
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

pub(super) async fn knobs_post(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.record("admin", 200);
    let current = rl(&s.knobs).clone();
    match merge_knobs(&current, &body) {
        Ok(new) => admin_json(StatusCode::OK, &s.set_knobs(new)),
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e),
    }
}

pub(super) async fn edit_route(State(s): State<Arc<Shared>>, Path((entity, id)): Path<(String, String)>) -> Response {
    s.record("admin", 200);
    with_entity(&entity, |e| admin_result(s.edit(e, &id)))
}

pub(super) async fn expire_route(State(s): State<Arc<Shared>>) -> Response {
    s.record("admin", 200);
    let n = lock(&s.auth).expire_all();
    admin_json(StatusCode::OK, &json!({"expired": n}))
}
