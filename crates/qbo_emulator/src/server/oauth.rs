//! Intuit's OAuth side: the token endpoint and the OpenID discovery document.

use super::*;

// ---------------------------------------------------------------------------------------------
// OAuth token endpoint

pub(super) fn oauth_error(status: StatusCode, tid: &str, body: &'static str) -> Response {
    respond(status, PLAIN_JSON_CT, tid, body)
}

/// `POST /oauth2/v1/tokens/bearer`, `grant_type=refresh_token`.
pub(super) async fn token_route(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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

/// `GET /.well-known/openid_configuration`: an OpenID discovery document whose endpoints point
/// at this emulator (built from the request's `Host`). Intuit's `intuit-oauth` Python client
/// accepts a discovery URL as its `environment`, so it can refresh against the emulator offline.
pub(super) async fn discovery_route(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
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
