//! HTTP behaviour of the emulator, through a real client over loopback.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

mod common;

use common::*;
use qbo_emulator::{DefaultOrder, Emulator, EmulatorConfig, FaultKind, Knobs, ThrottleBody};
use reqwest::{Client, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn get_and_post_query_agree_and_headers_look_like_intuit() {
    let (emu, http, tok) = session(cfg(300)).await;
    let q = format!("SELECT * FROM Invoice WHERE {WINDOW_ALL} ORDERBY MetaData.LastUpdatedTime STARTPOSITION 11 MAXRESULTS 7");
    let (s, h, body) = get_q(&http, &emu, &tok, &q).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/json;charset=utf-8");
    assert_eq!(h["qbo-version"], qbo_emulator::QBO_VERSION);
    let tid = h["intuit_tid"].to_str().unwrap();
    let parts: Vec<&str> = tid.split('-').collect();
    assert_eq!(parts.len(), 3, "{tid}");
    assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("1", 8, 24));
    assert!(!body.contains(": ") && !body.contains('\n'), "compact JSON");
    let got: Value = serde_json::from_str(&body).unwrap();
    let time = got["time"].as_str().unwrap();
    assert!(time.len() == 29 && (time.ends_with("-08:00") || time.ends_with("-07:00")), "{time}");
    assert_eq!(got["QueryResponse"]["startPosition"], 11);
    assert_eq!(got["QueryResponse"]["maxResults"], 7);
    assert_eq!(got["QueryResponse"]["Invoice"].as_array().unwrap().len(), 7);
    // Key order as recorded: entity array, startPosition, maxResults.
    let a = body.find("\"Invoice\":[").unwrap();
    assert!(a < body.find("\"startPosition\"").unwrap() && body.find("\"startPosition\"").unwrap() < body.find("\"maxResults\"").unwrap());
    for ct in ["application/text", "text/plain"] {
        let r = http.post(format!("{}?minorversion=40", emu.query_url())).bearer_auth(&tok).header("Content-Type", ct).body(q.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(strip_time(v), strip_time(got.clone()), "{ct}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn count_empty_page_and_default_page_size() {
    let c = cfg(400);
    let (emu, http, tok) = session(c.clone()).await;
    let v = json_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Invoice").await;
    assert_eq!(strip_time(v), serde_json::json!({"QueryResponse": {"totalCount": 400}}));
    let m = emu.empty_months()[0];
    let next = if m.month() == 12 {
        chrono::NaiveDate::from_ymd_opt(m.year() + 1, 1, 1).unwrap()
    } else {
        chrono::NaiveDate::from_ymd_opt(m.year(), m.month() + 1, 1).unwrap()
    };
    let w = format!("MetaData.LastUpdatedTime >= '{m}T00:00:00Z' AND MetaData.LastUpdatedTime < '{next}T00:00:00Z'");
    for e in ["Invoice", "Customer", "Item"] {
        let v = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {e} WHERE {w}")).await;
        assert_eq!(strip_time(v), serde_json::json!({"QueryResponse": {"totalCount": 0}}), "{e} in empty month {m}");
        let active = if e == "Invoice" { "" } else { " AND Active IN (true,false)" };
        let v = json_q(&http, &emu, &tok, &format!("SELECT * FROM {e} WHERE {w}{active}")).await;
        assert_eq!(strip_time(v), serde_json::json!({"QueryResponse": {}}));
    }
    let v = json_q(&http, &emu, &tok, "SELECT * FROM Invoice STARTPOSITION 401").await;
    assert_eq!(strip_time(v), serde_json::json!({"QueryResponse": {}}));
    let v = json_q(&http, &emu, &tok, "SELECT * FROM Invoice").await;
    assert_eq!(v["QueryResponse"]["maxResults"], 100, "default MAXRESULTS is 100");
    // Default Invoice order: LastUpdatedTime DESC.
    let ts: Vec<chrono::DateTime<chrono::FixedOffset>> = v["QueryResponse"]["Invoice"].as_array().unwrap().iter().map(last_updated).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    let v = json_q(&http, &emu, &tok, "SELECT * FROM Invoice STARTPOSITION 391 MAXRESULTS 50").await;
    assert_eq!(v["QueryResponse"]["maxResults"], 10, "maxResults is the returned count");
    emu.shutdown().await;
}

use chrono::Datelike;

#[tokio::test]
async fn window_paging_returns_every_record_once() {
    let (emu, http, tok) = session(cfg(1500)).await;
    let ids = page_invoice_ids(&http, &emu, &tok, WINDOW_ALL, "MetaData.LastUpdatedTime ASC, Id", 1000).await;
    let truth: Vec<String> = emu.truth("Invoice").unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), truth.len());
    let a: BTreeSet<_> = ids.into_iter().collect();
    let b: BTreeSet<_> = truth.into_iter().collect();
    assert_eq!(a, b);
    emu.shutdown().await;
}

#[tokio::test]
async fn inactive_list_records_are_hidden_unless_active_is_filtered() {
    let (emu, http, tok) = session(cfg(10)).await;
    for e in ["Customer", "Item"] {
        let truth = emu.truth(e).unwrap();
        let active = truth.iter().filter(|t| t.active).count();
        assert!(active < truth.len());
        let v = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {e}")).await;
        assert_eq!(v["QueryResponse"]["totalCount"], active);
        let v = json_q(&http, &emu, &tok, &format!("SELECT COUNT(*) FROM {e} WHERE Active IN (true, false)")).await;
        assert_eq!(v["QueryResponse"]["totalCount"], truth.len());
        let v = json_q(&http, &emu, &tok, &format!("SELECT * FROM {e} WHERE Active = false MAXRESULTS 1000")).await;
        let rows = v["QueryResponse"][e].as_array().unwrap();
        assert_eq!(rows.len(), truth.len() - active);
        let name = if e == "Customer" { "DisplayName" } else { "Name" };
        assert!(rows.iter().all(|r| r["Active"] == false && r[name].as_str().unwrap().ends_with(" (deleted)")));
        // Default order: by name, case-insensitively.
        let v = json_q(&http, &emu, &tok, &format!("select * from {} maxresults 1000", e.to_lowercase())).await;
        let names: Vec<String> = v["QueryResponse"][e].as_array().unwrap().iter().map(|r| r[name].as_str().unwrap().to_lowercase()).collect();
        assert_eq!(names.len(), active);
        assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn parse_and_validation_errors_are_400_validation_faults() {
    let (emu, http, tok) = session(cfg(10)).await;
    for (q, code, msg) in [
        ("SELECT * FROM Invoice WHERE", "4000", "Error parsing query"),
        ("", "4000", "Error parsing query"),
        ("SELECT * FROM Custmoer", "4001", "Invalid query"),
        ("SELECT * FROM Invoice WHERE Nope = '1'", "4001", "Invalid query"),
        ("SELECT * FROM Invoice MAXRESULTS 1500", "4001", "Invalid query"),
        ("SELECT * FROM Invoice STARTPOSITION -1", "4001", "Invalid query"),
    ] {
        let (s, h, body) = get_q(&http, &emu, &tok, q).await;
        assert_eq!(s, 400, "{q}");
        assert!(h.contains_key("intuit_tid"));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Fault"]["type"], "ValidationFault");
        assert_eq!(v["Fault"]["Error"][0]["code"], code, "{q}");
        assert_eq!(v["Fault"]["Error"][0]["Message"], msg);
        assert!(v["time"].is_string());
    }
    let (_, _, body) = get_q(&http, &emu, &tok, "SELECT * FROM Invoice MAXRESULTS 1500").await;
    assert!(body.contains("value 1500 is too large. Max allowed value is 1000"));
    let (_, _, body) = get_q(&http, &emu, &tok, "SELECT * FROM Custmoer").await;
    assert!(body.contains("QueryValidationError: invalid context declaration: Custmoer"));
    emu.shutdown().await;
}

#[tokio::test]
async fn unauthorized_envelope_and_wrong_realm() {
    let emu = start(cfg(10)).await;
    let http = Client::new();
    let check_401 = |s: StatusCode, h: &reqwest::header::HeaderMap, body: &str| {
        assert_eq!(s, 401);
        assert_eq!(h["www-authenticate"], "Bearer realm=\"Intuit\", error=\"invalid_token\"");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["fault"]["type"], "AUTHENTICATION");
        assert_eq!(v["fault"]["error"][0]["code"], "3200");
        assert_eq!(v["fault"]["error"][0]["message"], "message=AuthenticationFailed; errorCode=003200; statusCode=401");
        assert!(v["time"].is_i64(), "epoch millis");
        for k in ["warnings", "intuitObject", "report", "queryResponse", "syncErrorResponse", "requestId", "status"] {
            assert!(v[k].is_null(), "{k}");
        }
        assert_eq!(v["batchItemResponse"], serde_json::json!([]));
        assert_eq!(v["cdcresponse"], serde_json::json!([]));
        assert!(v.get("Fault").is_none());
    };
    let r = http.get(emu.query_url()).query(&[("query", "SELECT * FROM Item")]).send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    check_401(s, &h, &r.text().await.unwrap());
    let (s, h, body) = get_q(&http, &emu, "eyJlbmMiOiJub3RhcmVhbHRva2VuIn0.abc.def", "SELECT * FROM Item").await;
    check_401(s, &h, &body);
    let tok = token(&http, &emu).await;
    assert_eq!(get_q(&http, &emu, &tok, "SELECT * FROM Item").await.0, 200);
    emu.expire_access_tokens();
    let (s, h, body) = get_q(&http, &emu, &tok, "SELECT * FROM Item").await;
    check_401(s, &h, &body);
    assert!(body.contains("Token expired"));
    let tok = token(&http, &emu).await;
    let r = http.get(format!("{}/v3/company/123456/query", emu.base_url())).bearer_auth(&tok).query(&[("query", "SELECT * FROM Item")]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fault"]["error"][0]["code"], "3100");
    assert_eq!(v["fault"]["type"], "SERVICE");
    assert_eq!(emu.stats().unauthorized, 3);
    emu.shutdown().await;
}

async fn refresh_form(http: &Client, emu: &Emulator, rt: &str) -> reqwest::Response {
    http.post(emu.token_url())
        .header("Accept", "application/json")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", emu.client_id()), ("client_secret", emu.client_secret())])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn token_rotation_and_invalid_grant() {
    let (emu, http, first) = session_before_refresh(cfg(10)).await;
    // Young token: same value back, fresh access token, declining lifetime.
    let r = refresh_form(&http, &emu, &first).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("intuit_tid"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["refresh_token"], first.as_str());
    let left = v["x_refresh_token_expires_in"].as_u64().unwrap();
    assert!(left <= 8_726_400 && left > 8_726_000);
    assert!(v.get("x_refresh_token_hard_expires_in").is_none());
    let at = v["access_token"].as_str().unwrap();
    assert!(at.starts_with("eyJlbmMi") && at.len() >= 700);
    // Rotate on every refresh.
    emu.set_knobs(Knobs { refresh_rotate_after_secs: 0, ..emu.knobs() });
    let r = refresh_basic(&http, &emu, &first).header("x-include-refresh-token-hard-expires-in", "true").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let second = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(v["x_refresh_token_hard_expires_in"].as_u64().unwrap() > 150_000_000);
    assert_eq!(emu.current_refresh_token(), second);
    // The old one is dead (grace 0).
    let r = refresh_form(&http, &emu, &first).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), r#"{"error_description":"Incorrect or invalid refresh token","error":"invalid_grant"}"#);
    assert_eq!(refresh_form(&http, &emu, &second).await.status(), 200);
    let st = emu.stats();
    assert_eq!((st.token_refreshes, st.rotations, st.invalid_grant), (3, 2, 1));
    emu.shutdown().await;
}

#[tokio::test]
async fn client_auth_basic_takes_precedence_over_form() {
    let (emu, http, rt) = session_before_refresh(cfg(10)).await;
    let ok = refresh_form(&http, &emu, &rt).await;
    assert_eq!(ok.status(), 200, "form credentials");
    let ok = refresh_basic(&http, &emu, &rt).send().await.unwrap();
    assert_eq!(ok.status(), 200, "basic credentials");
    let bad_basic = http
        .post(emu.token_url())
        .basic_auth(emu.client_id(), Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", emu.client_id()), ("client_secret", emu.client_secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_basic.status(), 401);
    assert_eq!(bad_basic.text().await.unwrap(), r#"{"error":"invalid_client"}"#);
    let none = http.post(emu.token_url()).form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())]).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let bad_grant = http
        .post(emu.token_url())
        .basic_auth(emu.client_id(), Some(emu.client_secret()))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_grant.status(), 400);
    assert_eq!(emu.stats().invalid_client, 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_429_json_xml_storm_and_in_flight() {
    let (emu, http, tok) =
        session_issued(EmulatorConfig { knobs: Knobs { throttle_per_minute: Some(3), max_in_flight: None, ..Knobs::default() }, ..cfg(10) }).await;
    for _ in 0..3 {
        assert_eq!(get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await.0, 200);
    }
    let (s, h, body) = get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await;
    assert_eq!(s, 429);
    assert!(!h.contains_key("retry-after"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    assert_eq!(v["Fault"]["type"], "SERVICE");
    assert!(v["Fault"]["Error"][0]["Message"].as_str().unwrap().contains("ThrottleExceeded"));
    emu.set_knobs(Knobs { throttle_body: ThrottleBody::Xml, retry_after_secs: Some(7), ..emu.knobs() });
    let (s, h, body) = get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "7");
    assert!(h["content-type"].to_str().unwrap().starts_with("application/xml"));
    assert!(body.starts_with("<?xml") && body.contains("<Error code=\"3001\">"), "{body}");
    // A 429 storm regardless of limits.
    emu.set_knobs(Knobs { force_429_next: 2, ..Knobs::unthrottled() });
    assert_eq!(get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await.0, 429);
    assert_eq!(get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await.0, 429);
    assert_eq!(get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item").await.0, 200);
    // In-flight limit: 6 concurrent slow requests with a limit of 2.
    emu.set_knobs(Knobs { max_in_flight: Some(2), latency_ms: 300, ..Knobs::unthrottled() });
    let futs = (0..6).map(|_| get_q(&http, &emu, &tok, "SELECT COUNT(*) FROM Item"));
    let res = futures_join_all(futs).await;
    let ok = res.iter().filter(|r| r.0 == 200).count();
    let limited = res.iter().filter(|r| r.0 == 429).count();
    assert_eq!((ok, limited), (2, 4), "{:?}", res.iter().map(|r| r.0).collect::<Vec<_>>());
    let st = emu.stats();
    assert_eq!(st.throttled, 2 + 2 + 4);
    assert_eq!(st.forced_throttled, 2);
    assert!(st.max_in_flight >= 2);
    assert!(st.max_requests_in_60s >= 3);
    emu.shutdown().await;
}

/// `join_all` without a futures dependency: spawn-free, polls all on this task.
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out = Vec::new();
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.unwrap()));
    out
}

#[tokio::test]
async fn every_fault_kind() {
    let emu = start(cfg(50)).await;
    let http = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let tok = emu.issue_access_token();
    let q = "SELECT * FROM Invoice MAXRESULTS 20";
    let set = |k: FaultKind| emu.set_knobs(Knobs { fault_rate: 1.0, fault_kinds: vec![k], slow_ms: 300, ..Knobs::unthrottled() });

    set(FaultKind::Http500);
    let (s, _, body) = get_q(&http, &emu, &tok, q).await;
    assert_eq!(s, 500);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["Fault"]["type"].as_str(), v["Fault"]["Error"][0]["code"].as_str()), (Some("SystemFault"), Some("10000")));

    set(FaultKind::Http503);
    assert_eq!(get_q(&http, &emu, &tok, q).await.0, 503);

    set(FaultKind::Fault200);
    let (s, _, body) = get_q(&http, &emu, &tok, q).await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("QueryResponse").is_none() && v["Fault"]["Error"][0]["code"] == "10000");

    set(FaultKind::Malformed);
    let (s, _, body) = get_q(&http, &emu, &tok, q).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    set(FaultKind::Reset);
    let r = http.get(emu.query_url()).bearer_auth(&tok).query(&[("query", q)]).send().await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "a reset must surface as a transport error");

    set(FaultKind::Slow);
    let t0 = Instant::now();
    let (s, _, body) = get_q(&http, &emu, &tok, q).await;
    assert_eq!(s, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    assert!(serde_json::from_str::<Value>(&body).unwrap()["QueryResponse"]["Invoice"].is_array());

    let st = emu.stats();
    assert_eq!(st.faults_injected, 6);
    assert_eq!(st.faults_by_kind.len(), 6);
    assert_eq!(st.status_count("query", 0), 1, "the reset is counted as status 0");
    emu.shutdown().await;
}

#[tokio::test]
async fn edits_during_paging_make_naive_startposition_paging_miss_records() {
    let (emu, http, tok) = session_issued(cfg(600)).await;
    emu.set_knobs(Knobs { edit_rate: 1.0, ..Knobs::unthrottled() });
    let seen: BTreeSet<String> = page_invoice_ids(&http, &emu, &tok, WINDOW_ALL, "MetaData.LastUpdatedTime", 50).await.into_iter().collect();
    let truth = emu.truth("Invoice").unwrap();
    assert_eq!(truth.len(), 600, "nothing is deleted");
    let missed: Vec<_> = truth.iter().filter(|t| !seen.contains(&t.id)).collect();
    assert!(!missed.is_empty(), "naive paging must lose records");
    let st = emu.stats();
    assert!(st.paging_edits >= 10);
    // The records that moved out of the window are edits: bumped SyncToken, LastUpdatedTime now.
    let edited: Vec<_> = truth.iter().filter(|t| t.last_updated_utc > chrono::Utc::now() - chrono::Duration::minutes(5)).collect();
    assert_eq!(edited.len() as u64, st.paging_edits);
    // Every missed record that was not itself edited still exists in the window unchanged.
    assert!(missed.iter().any(|m| !edited.iter().any(|e| e.id == m.id)));
    emu.shutdown().await;
}

#[tokio::test]
async fn admin_routes() {
    let emu = start(cfg(20)).await;
    let http = Client::new();
    let base = emu.base_url();
    let truth: Vec<qbo_emulator::TruthRow> = http.get(format!("{base}/_emulator/truth/invoices")).send().await.unwrap().json().await.unwrap();
    assert_eq!(truth, emu.truth("Invoice").unwrap());
    assert_eq!(truth.len(), 20);
    assert_eq!(truth[0].id, "1");
    let cust: Vec<qbo_emulator::TruthRow> = http.get(format!("{base}/_emulator/truth/Customer")).send().await.unwrap().json().await.unwrap();
    assert_eq!(cust.len(), 80, "inactive included");
    let k: Knobs =
        http.post(format!("{base}/_emulator/knobs")).body(r#"{"latency_ms": 5, "throttle_body": "Xml"}"#).send().await.unwrap().json().await.unwrap();
    assert_eq!(k.latency_ms, 5);
    assert_eq!(k.throttle_body, ThrottleBody::Xml);
    assert_eq!(emu.knobs(), k);
    let r = http.post(format!("{base}/_emulator/knobs")).body(r#"{"nope": 1}"#).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let before = truth.iter().find(|t| t.id == "7").unwrap().clone();
    let row: qbo_emulator::TruthRow = http.post(format!("{base}/_emulator/edit/Invoice/7")).send().await.unwrap().json().await.unwrap();
    assert_eq!(row.sync_token.parse::<u32>().unwrap(), before.sync_token.parse::<u32>().unwrap() + 1);
    assert!(row.last_updated_utc > before.last_updated_utc);
    let json: Value = serde_json::from_slice(&emu.record_json("Invoice", "7").unwrap()).unwrap();
    assert_eq!(json["SyncToken"], row.sync_token.as_str());
    assert_eq!(json["MetaData"]["LastUpdatedTime"], row.last_updated_time.as_str());
    assert!(json["PrivateNote"].as_str().unwrap().contains("edit 1"));
    assert_eq!(http.post(format!("{base}/_emulator/edit/Invoice/999")).send().await.unwrap().status(), 404);
    let tok = emu.issue_access_token();
    let r: Value = http.post(format!("{base}/_emulator/expire-access-tokens")).send().await.unwrap().json().await.unwrap();
    assert!(r["expired"].as_u64().unwrap() >= 1);
    assert_eq!(get_q(&http, &emu, &tok, "SELECT * FROM Item").await.0, 401);
    let st: qbo_emulator::Stats = http.get(format!("{base}/_emulator/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(st.edits, 1);
    assert_eq!(st.status_count("query", 401), 1);
    let sum: Value = http.get(format!("{base}/_emulator/summary")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sum["entities"][0]["records"], 20);
    let creds: Value = http.get(format!("{base}/_emulator/credentials")).send().await.unwrap().json().await.unwrap();
    assert_eq!(creds["realm_id"], emu.realm_id());
    emu.shutdown().await;
}

#[tokio::test]
async fn deterministic_credentials_and_data_across_instances() {
    let a = start(cfg(30)).await;
    let b = start(cfg(30)).await;
    assert_eq!(a.realm_id(), b.realm_id());
    assert_eq!(a.client_id(), b.client_id());
    assert_eq!(a.initial_refresh_token(), b.initial_refresh_token());
    assert_eq!(a.truth("Invoice").unwrap(), b.truth("Invoice").unwrap());
    assert_eq!(a.record_json("Invoice", "3").unwrap(), b.record_json("Invoice", "3").unwrap());
    assert!(a.realm_id().starts_with("9130") && a.realm_id().len() == 16);
    a.shutdown().await;
    drop(b);
}

#[tokio::test]
async fn discovery_batch_cdc_and_read() {
    let emu = start(cfg(50)).await;
    let http = Client::new();
    let d: Value = http.get(format!("{}/.well-known/openid_configuration", emu.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["token_endpoint"], emu.token_url());
    let tok = token(&http, &emu).await;
    // Batch: query items answer in order, a bad item carries its own Fault, HTTP 200 overall.
    let r = http
        .post(format!("{}/v3/company/{}/batch", emu.base_url(), emu.realm_id()))
        .bearer_auth(&tok)
        .json(&serde_json::json!({"BatchItemRequest": [
            {"bId": "a", "Query": "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime MAXRESULTS 3"},
            {"bId": "b", "Query": "SELECT COUNT(*) FROM Customer WHERE Active IN (true,false)"},
            {"bId": "c", "Query": "SELECT * FROM Nope"}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let items = v["BatchItemResponse"].as_array().unwrap();
    assert_eq!(items[0]["bId"], "a");
    assert_eq!(items[0]["QueryResponse"]["Invoice"].as_array().unwrap().len(), 3);
    assert_eq!(items[1]["QueryResponse"]["totalCount"], 80);
    assert_eq!(items[2]["Fault"]["Error"][0]["code"], "4001");
    assert!(v["time"].is_string());
    // CDC: nothing changed recently -> {}; after an edit the record shows up.
    let since = minutes_ago(60);
    let v: Value = cdc(&http, &emu, &tok, "invoice,Customer", &since).await.json().await.unwrap();
    assert_eq!(v["CDCResponse"], serde_json::json!([{"QueryResponse": [{}]}]));
    emu.edit("Customer", "5").unwrap();
    let v: Value = cdc(&http, &emu, &tok, "invoice,Customer", &since).await.json().await.unwrap();
    let groups = v["CDCResponse"][0]["QueryResponse"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["Customer"][0]["Id"], "5");
    let r = cdc(&http, &emu, &tok, "invoice,Customer", "2020-01-01T00:00:00Z").await;
    assert_eq!(r.status(), 400, "older than 30 days");
    assert!(r.text().await.unwrap().contains("older than fixed days"));
    // Read one record.
    let r = api_get(&http, &emu, &tok, "invoice/9").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Invoice"]["Id"], "9");
    let r = api_get(&http, &emu, &tok, "invoice/9999").await;
    assert_eq!(r.status(), 400);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_paging_and_edits_stay_consistent() {
    let emu = start(cfg(3000)).await;
    emu.set_knobs(Knobs { edit_rate: 0.3, ..Knobs::unthrottled() });
    let tok = emu.issue_access_token();
    // Within one answer the order is strictly consistent (checked by each pager).
    for t in spawn_pagers(&emu, &tok, 4, 15, 200) {
        assert_eq!(t.await.unwrap(), 15 * 200);
    }
    let st = emu.stats();
    assert!(st.paging_edits > 0);
    // The truth agrees with the served JSON after all those edits.
    for row in emu.truth("Invoice").unwrap().iter().filter(|r| r.sync_token.parse::<u32>().unwrap() > 3) {
        let v: Value = serde_json::from_slice(&emu.record_json("Invoice", &row.id).unwrap()).unwrap();
        assert_eq!(v["SyncToken"], row.sync_token.as_str());
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn startposition_zero_reads_as_one_as_on_quickbooks() {
    let (emu, http, tok) = session(cfg(40)).await;
    let at = |start: u32| format!("SELECT * FROM Invoice WHERE {WINDOW_ALL} ORDERBY MetaData.LastUpdatedTime STARTPOSITION {start} MAXRESULTS 5");
    let zero = strip_time(json_q(&http, &emu, &tok, &at(0)).await);
    let one = strip_time(json_q(&http, &emu, &tok, &at(1)).await);
    assert_eq!(zero, one);
    assert_eq!(zero["QueryResponse"]["startPosition"], 1);
}

#[tokio::test]
async fn company_info_and_preferences_are_served_as_quickbooks_does() {
    let (emu, http, tok) = session(cfg(5)).await;
    let r = api_get(&http, &emu, &tok, &format!("companyinfo/{}", emu.realm_id())).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["CompanyInfo"]["Id"], emu.realm_id());
    assert!(v["CompanyInfo"]["CompanyName"].as_str().is_some_and(|n| !n.is_empty()) && v["time"].is_string());
    let r = api_get(&http, &emu, &tok, "companyinfo/999").await;
    assert_eq!(r.status(), 400, "another company is not found");
    let r = api_get(&http, &emu, &tok, "preferences").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Preferences"]["CurrencyPrefs"]["HomeCurrency"]["value"], "USD");
}

#[tokio::test]
async fn a_storm_by_time_throttles_every_request_until_it_ends() {
    let (emu, http, tok) = session(cfg(5)).await;
    let q = format!("SELECT COUNT(*) FROM Invoice WHERE {WINDOW_ALL}");
    emu.set_knobs(Knobs { throttle_for_secs: 1, ..emu.knobs() });
    assert_eq!(emu.knobs().throttle_for_secs, 0, "setting it starts one storm");
    let started = Instant::now();
    let mut refused = 0;
    loop {
        let (s, _, _) = get_q(&http, &emu, &tok, &q).await;
        if s == 200 {
            break;
        }
        assert_eq!(s, 429);
        refused += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused >= 5, "refused {refused} times");
    assert!(started.elapsed() >= Duration::from_millis(950), "the storm lasts its time, not a count");
}

/// Posts a batch of query items (bIds `0`, `1`, ...) and returns its status and body.
async fn batch(http: &Client, emu: &Emulator, tok: &str, queries: &[&str]) -> (StatusCode, Value) {
    let items: Vec<Value> = queries.iter().enumerate().map(|(i, q)| serde_json::json!({"bId": i.to_string(), "Query": q})).collect();
    let r = http
        .post(format!("{}/v3/company/{}/batch", emu.base_url(), emu.realm_id()))
        .bearer_auth(tok)
        .json(&serde_json::json!({ "BatchItemRequest": items }))
        .send()
        .await
        .unwrap();
    let s = r.status();
    let body = r.text().await.unwrap();
    (s, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

#[tokio::test]
async fn batch_items_are_calls_in_the_realms_minute_and_each_answered_one_is_metered() {
    let (emu, http, tok) = session_issued(EmulatorConfig { knobs: Knobs { throttle_per_minute: Some(10), ..Knobs::unthrottled() }, ..cfg(30) }).await;
    let page = "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime MAXRESULTS 5";
    let count = "SELECT COUNT(*) FROM Item";
    // Four items, one of them bad: four calls in the window, three metered reads.
    let (s, v) = batch(&http, &emu, &tok, &[page, count, page, "SELECT * FROM Nope"]).await;
    assert_eq!(s, 200);
    assert_eq!(v["BatchItemResponse"][3]["Fault"]["Error"][0]["code"], "4001");
    let st = emu.stats();
    assert_eq!((st.max_requests_in_60s, st.metered_calls), (4, 3));
    assert_eq!(get_q(&http, &emu, &tok, count).await.0, 200, "five calls so far");
    // Six more items would make 11 calls: the whole batch is refused, and counts nowhere.
    let (s, v) = batch(&http, &emu, &tok, &[count; 6]).await;
    assert_eq!(s, 429);
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    let (s, _) = batch(&http, &emu, &tok, &[count; 5]).await;
    assert_eq!(s, 200, "five fit");
    assert_eq!(get_q(&http, &emu, &tok, count).await.0, 429, "the minute holds its 10 calls");
    let st = emu.stats();
    assert_eq!((st.max_requests_in_60s, st.metered_calls, st.throttled, st.batch_throttled), (10, 3 + 1 + 5, 2, 0));
    // Errors, refusals and injected faults are not metered; reads and CDC are.
    emu.set_knobs(Knobs { fault_first_k: 1, fault_kinds: vec![FaultKind::Http500], ..Knobs::unthrottled() });
    assert_eq!(get_q(&http, &emu, &tok, count).await.0, 500);
    assert_eq!(get_q(&http, &emu, &tok, count).await.0, 200);
    assert_eq!(get_q(&http, &emu, &tok, "SELECT * FROM Nope").await.0, 500, "the first page-kind request faults");
    assert_eq!(get_q(&http, &emu, &tok, "SELECT * FROM Nope").await.0, 400);
    let read = api_get(&http, &emu, &tok, "invoice/3").await;
    assert_eq!(read.status(), 500, "the first read faults too: each request kind has its own first K");
    let read = api_get(&http, &emu, &tok, "invoice/3").await;
    assert_eq!(read.status(), 200);
    assert_eq!(emu.stats().metered_calls, 9 + 1 + 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn more_than_40_batches_a_minute_get_a_429_while_queries_still_pass() {
    let emu = start(EmulatorConfig { knobs: Knobs { max_in_flight: None, ..Knobs::default() }, ..cfg(10) }).await;
    assert_eq!((emu.knobs().batch_per_minute, emu.knobs().throttle_per_minute), (Some(40), Some(500)), "Intuit's limits by default");
    let http = Client::new();
    let tok = emu.issue_access_token();
    let count = "SELECT COUNT(*) FROM Invoice";
    for n in 0..40 {
        assert_eq!(batch(&http, &emu, &tok, &[count]).await.0, 200, "batch {n}");
    }
    let (s, v) = batch(&http, &emu, &tok, &[count]).await;
    assert_eq!(s, 429);
    assert_eq!(v["Fault"]["Error"][0]["code"], "3001");
    assert!(v["Fault"]["Error"][0]["Message"].as_str().unwrap().contains("ThrottleExceeded"));
    assert_eq!(get_q(&http, &emu, &tok, count).await.0, 200, "40 calls are far from the realm's 500");
    let st = emu.stats();
    assert_eq!((st.batch_throttled, st.throttled, st.metered_calls), (1, 1, 41));
    assert_eq!(st.status_count("batch", 429), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn faults_by_position_hit_the_first_k_of_each_request_kind_whatever_else_a_client_sends() {
    let (emu, http, tok) = session_issued(cfg(30)).await;
    let page = format!("SELECT * FROM Invoice WHERE {WINDOW_ALL} ORDERBY MetaData.LastUpdatedTime MAXRESULTS 5");
    let count = format!("SELECT COUNT(*) FROM Invoice WHERE {WINDOW_ALL}");
    let knobs = |k| Knobs { fault_first_k: k, fault_kinds: vec![FaultKind::Http500, FaultKind::Http503], ..Knobs::unthrottled() };
    // Client A counts twice before paging; client B only pages. Both meet 500 then 503 on their
    // first two pages.
    emu.set_knobs(knobs(2));
    let mut a = Vec::new();
    for q in [&count, &count, &count, &page, &page, &page] {
        a.push(get_q(&http, &emu, &tok, q).await.0.as_u16());
    }
    assert_eq!(a, [500, 503, 200, 500, 503, 200]);
    emu.set_knobs(knobs(0));
    emu.set_knobs(knobs(2)); // a new value: positions count from now
    let mut b = Vec::new();
    for _ in 0..3 {
        b.push(get_q(&http, &emu, &tok, &page).await.0.as_u16());
    }
    assert_eq!(b, [500, 503, 200]);
    emu.set_knobs(Knobs { latency_ms: 1, ..knobs(2) }); // the same value again: nothing restarts
    assert_eq!(get_q(&http, &emu, &tok, &page).await.0, 200);
    let st = emu.stats();
    assert_eq!(st.faults_by_request.get("query_page"), Some(&4));
    assert_eq!(st.faults_by_request.get("query_count"), Some(&2));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_by_time_hit_the_first_request_of_each_kind_in_every_period_whatever_the_rate() {
    let emu = start(cfg(30)).await;
    let tok = emu.issue_access_token();
    emu.set_knobs(Knobs { fault_every_secs: 1, fault_kinds: vec![FaultKind::Http503], ..Knobs::unthrottled() });
    let started = Instant::now();
    // A fast client counting every 10 ms and a slow one paging every 300 ms, for 2.5 s: periods
    // 0, 1 and 2, so three faults each.
    let client = |q: String, every: Duration| {
        let (http, url, tok) = (Client::new(), emu.query_url(), tok.clone());
        tokio::spawn(async move {
            let (mut sent, mut faulted) = (0, 0);
            while started.elapsed() < Duration::from_millis(2500) {
                let r = http.get(&url).bearer_auth(&tok).query(&[("query", q.as_str())]).send().await.unwrap();
                sent += 1;
                faulted += usize::from(r.status() == 503);
                tokio::time::sleep(every).await;
            }
            (sent, faulted)
        })
    };
    let fast = client(format!("SELECT COUNT(*) FROM Invoice WHERE {WINDOW_ALL}"), Duration::from_millis(10));
    let slow = client(format!("SELECT * FROM Invoice WHERE {WINDOW_ALL} MAXRESULTS 5"), Duration::from_millis(300));
    let (fast, slow) = (fast.await.unwrap(), slow.await.unwrap());
    assert!(fast.0 > 3 * slow.0, "fast {fast:?}, slow {slow:?}");
    assert_eq!((fast.1, slow.1), (3, 3), "fast {fast:?}, slow {slow:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn default_order_is_the_observed_one_or_ascending_id_by_knob() {
    let (emu, http, tok) = session_issued(cfg(200)).await;
    let ids =
        |v: &Value, e: &str| -> Vec<u32> { v["QueryResponse"][e].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap().parse().unwrap()).collect() };
    let times =
        |v: &Value| -> Vec<chrono::DateTime<chrono::FixedOffset>> { v["QueryResponse"]["Invoice"].as_array().unwrap().iter().map(last_updated).collect() };
    // Observed (the default): invoices newest first, customers by name case-insensitively.
    assert_eq!(emu.knobs().default_order, DefaultOrder::Observed);
    let inv = json_q(&http, &emu, &tok, "SELECT * FROM Invoice MAXRESULTS 1000").await;
    assert!(times(&inv).windows(2).all(|w| w[0] >= w[1]));
    assert!(!ids(&inv, "Invoice").windows(2).all(|w| w[0] < w[1]), "newest first is not Id order here");
    let cust = json_q(&http, &emu, &tok, "SELECT * FROM Customer MAXRESULTS 1000").await;
    let names: Vec<String> = cust["QueryResponse"]["Customer"].as_array().unwrap().iter().map(|r| r["DisplayName"].as_str().unwrap().to_lowercase()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]));
    // Id: ascending numeric Id for every entity, in queries and batches alike.
    emu.set_knobs(Knobs { default_order: DefaultOrder::Id, ..emu.knobs() });
    for e in ["Invoice", "Customer", "Item"] {
        let v = json_q(&http, &emu, &tok, &format!("SELECT * FROM {e} STARTPOSITION 3 MAXRESULTS 20")).await;
        let got = ids(&v, e);
        assert_eq!(got.len(), 20);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{e}: {got:?}");
        if e == "Invoice" {
            assert_eq!(got[0], 3, "no invoice is hidden, so position 3 is Id 3");
        }
    }
    let (_, v) = batch(&http, &emu, &tok, &["SELECT * FROM Invoice MAXRESULTS 10"]).await;
    let got: Vec<&str> = v["BatchItemResponse"][0]["QueryResponse"]["Invoice"].as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap()).collect();
    assert_eq!(got, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
    // An ORDERBY is obeyed whatever the knob.
    let v = json_q(&http, &emu, &tok, "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime DESC MAXRESULTS 1000").await;
    assert_eq!(times(&v), times(&inv));
    emu.shutdown().await;
}
