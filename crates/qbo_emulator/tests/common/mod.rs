//! Helpers the HTTP test files share: starting an emulator, tokens, queries, CDC and admin calls.
#![allow(dead_code)] // each test file uses its own subset

use qbo_emulator::{Emulator, EmulatorConfig, Knobs};
use reqwest::{Client, StatusCode};
use serde_json::Value;

pub fn cfg(invoices: usize) -> EmulatorConfig {
    EmulatorConfig { invoices, customers: 80, items: 40, knobs: Knobs::unthrottled(), ..Default::default() }
}

pub async fn start(c: EmulatorConfig) -> Emulator {
    Emulator::start(c).await.expect("emulator starts")
}

/// A started emulator, a client and an access token from its token endpoint.
pub async fn session(c: EmulatorConfig) -> (Emulator, Client, String) {
    let emu = start(c).await;
    let http = Client::new();
    let tok = token(&http, &emu).await;
    (emu, http, tok)
}

/// A started emulator, a client and an access token issued without the token endpoint.
pub async fn session_issued(c: EmulatorConfig) -> (Emulator, Client, String) {
    let emu = start(c).await;
    let tok = emu.issue_access_token();
    (emu, Client::new(), tok)
}

/// A started emulator, a client and the emulator's first refresh token (nothing refreshed yet).
pub async fn session_before_refresh(c: EmulatorConfig) -> (Emulator, Client, String) {
    let emu = start(c).await;
    let refresh_token = emu.initial_refresh_token().to_string();
    (emu, Client::new(), refresh_token)
}

/// A refresh of `refresh_token` at the token endpoint, the client authenticated by HTTP Basic;
/// headers may be added before it is sent.
pub fn refresh_basic(http: &Client, emu: &Emulator, refresh_token: &str) -> reqwest::RequestBuilder {
    http.post(emu.token_url()).basic_auth(emu.client_id(), Some(emu.client_secret())).form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
}

/// Refreshes through the token endpoint (HTTP Basic) and returns the access token.
pub async fn token(http: &Client, emu: &Emulator) -> String {
    let r = refresh_basic(http, emu, &emu.current_refresh_token()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub async fn get_q(http: &Client, emu: &Emulator, tok: &str, q: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let r =
        http.get(emu.query_url()).bearer_auth(tok).header("Accept", "application/json").query(&[("query", q), ("minorversion", "75")]).send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.text().await.unwrap())
}

pub async fn json_q(http: &Client, emu: &Emulator, tok: &str, q: &str) -> Value {
    let (s, _, body) = get_q(http, emu, tok, q).await;
    assert_eq!(s, 200, "{q}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub fn strip_time(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("time");
    v
}

pub const WINDOW_ALL: &str = "MetaData.LastUpdatedTime >= '2014-12-01T00:00:00Z' AND MetaData.LastUpdatedTime < '2025-11-01T00:00:00Z'";

/// The Ids of every Invoice `where` selects, paging by STARTPOSITION with `page` rows a page in
/// `order`, in the order served.
pub async fn page_invoice_ids(http: &Client, emu: &Emulator, tok: &str, where_: &str, order: &str, page: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = 1;
    loop {
        let v = json_q(http, emu, tok, &format!("SELECT * FROM Invoice WHERE {where_} ORDERBY {order} STARTPOSITION {start} MAXRESULTS {page}")).await;
        let rows = v["QueryResponse"]["Invoice"].as_array().cloned().unwrap_or_default();
        ids.extend(rows.iter().map(|r| r["Id"].as_str().unwrap().to_string()));
        if rows.len() < page {
            return ids;
        }
        start += page;
    }
}

/// `MetaData.LastUpdatedTime` of a served record.
pub fn last_updated(r: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(r["MetaData"]["LastUpdatedTime"].as_str().unwrap()).unwrap()
}

/// `GET {base}/v3/company/{realm}/{path}` with the token.
pub async fn api_get(http: &Client, emu: &Emulator, tok: &str, path: &str) -> reqwest::Response {
    http.get(format!("{}/company/{}/{path}", emu.api_url(), emu.realm_id())).bearer_auth(tok).header("Accept", "application/json").send().await.unwrap()
}

/// The CDC route for `entities` (comma-separated) since `since`.
pub async fn cdc(http: &Client, emu: &Emulator, tok: &str, entities: &str, since: &str) -> reqwest::Response {
    http.get(format!("{}/v3/company/{}/cdc", emu.base_url(), emu.realm_id()))
        .bearer_auth(tok)
        .query(&[("entities", entities), ("changedSince", since)])
        .send()
        .await
        .unwrap()
}

/// `changedSince` `minutes` before now, in UTC.
pub fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `POST {base}/_emulator/{path}` and its status and JSON body.
pub async fn admin_post(http: &Client, emu: &Emulator, path: &str) -> (StatusCode, Value) {
    let r = http.post(format!("{}/_emulator/{path}", emu.base_url())).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap())
}

/// `GET {base}/_emulator/{path}` as JSON.
pub async fn admin_get(http: &Client, emu: &Emulator, path: &str) -> Value {
    let r = http.get(format!("{}/_emulator/{path}", emu.base_url())).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Spawns `workers` clients that each ask for `pages` pages of `size` Invoices ordered by
/// LastUpdatedTime (the workers' start positions interleaved), asserting that every answer is
/// in strictly ascending (LastUpdatedTime, Id) order; each returns the rows it got.
pub fn spawn_pagers(emu: &Emulator, tok: &str, workers: usize, pages: usize, size: usize) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..workers)
        .map(|w| {
            let (http, tok, url) = (Client::new(), tok.to_string(), emu.query_url());
            tokio::spawn(async move {
                let mut n = 0;
                for p in 0..pages {
                    let q = format!(
                        "SELECT * FROM Invoice ORDERBY MetaData.LastUpdatedTime STARTPOSITION {} MAXRESULTS {size}",
                        (p * workers + w) % pages * size + 1
                    );
                    let r = http.get(&url).bearer_auth(&tok).query(&[("query", q)]).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.unwrap();
                    // A position past the end answers an empty QueryResponse (deletions shrink the table).
                    let rows = v["QueryResponse"]["Invoice"].as_array().map(Vec::as_slice).unwrap_or_default();
                    let keys: Vec<_> = rows.iter().map(|r| (last_updated(r), r["Id"].as_str().unwrap().parse::<u32>().unwrap())).collect();
                    assert!(keys.windows(2).all(|w| w[0] < w[1]), "one answer is one consistent order");
                    n += rows.len();
                }
                n
            })
        })
        .collect()
}
