//! Shared by the integration tests: the test server's DSN, one random schema per test, row
//! builders, and a plain tokio-postgres client for checking results with SQL (never through the
//! writer under test).
#![allow(dead_code)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use qbo_pg::{PgConfig, RawRow, TableRef};
use rand::Rng;
use tokio_postgres::{Client, NoTls};

/// The DSN from QBO_RS_TEST_DSN. Unset: `None` (the test prints why and passes) unless CI=true,
/// where it is a failure: CI must never skip the database tests.
pub fn test_dsn(test: &str) -> Option<String> {
    match std::env::var("QBO_RS_TEST_DSN") {
        Ok(dsn) if !dsn.trim().is_empty() => Some(dsn.trim().to_string()),
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{test}: CI=true but QBO_RS_TEST_DSN is not set: start a server with \
                     scripts/pg-up.sh and export its last output line as QBO_RS_TEST_DSN"
                );
            }
            eprintln!(
                "SKIPPED {test}: QBO_RS_TEST_DSN is not set (run scripts/pg-up.sh and export its \
                 last output line as QBO_RS_TEST_DSN to run the PostgreSQL tests)"
            );
            None
        }
    }
}

/// Opens a plain session for verification. A set DSN that does not answer is a failure, in CI
/// and outside it: the user asked for these tests.
pub async fn plain_client(dsn: &str) -> Client {
    let config: tokio_postgres::Config = dsn.parse().expect("QBO_RS_TEST_DSN parses");
    let (client, connection) = match tokio::time::timeout(Duration::from_secs(15), config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => panic!("QBO_RS_TEST_DSN is set but the server does not accept it: {e} (run scripts/pg-up.sh)"),
        Err(_) => panic!("QBO_RS_TEST_DSN is set but the server did not answer within 15 s"),
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh random schema, dropped (CASCADE) when the fixture is dropped, even if the test
/// panicked.
pub struct Fixture {
    pub dsn: String,
    pub config: PgConfig,
    pub schema: String,
    pub sql: Client,
}

impl Fixture {
    pub async fn new(dsn: &str) -> Fixture {
        let sql = plain_client(dsn).await;
        let schema = format!("qbo_pg_t_{:016x}", rand::rng().random::<u64>());
        Fixture { dsn: dsn.to_string(), config: PgConfig::from_dsn(dsn).unwrap(), schema, sql }
    }

    pub fn table(&self, name: &str) -> TableRef {
        TableRef::new(&self.schema, name).unwrap()
    }

    /// Runs a query whose first column is a bigint and returns it.
    pub async fn scalar(&self, query: &str) -> i64 {
        self.sql.query_one(query, &[]).await.unwrap_or_else(|e| panic!("{query}: {e}")).get(0)
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM \"{}\".\"{table}\"", self.schema)).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let dsn = self.dsn.clone();
        let schema = self.schema.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(config) = dsn.parse::<tokio_postgres::Config>() {
                    if let Ok((client, conn)) = config.connect(NoTls).await {
                        tokio::spawn(conn);
                        let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
                    }
                }
            });
        })
        .join();
    }
}

pub fn ts(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// Owned row data; `RawRow`s borrow from it.
#[derive(Clone, Debug)]
pub struct OwnedRow {
    pub id: String,
    pub payload: Vec<u8>,
    pub last_updated: DateTime<Utc>,
    pub sync_token: i64,
    pub page_number: i32,
}

impl OwnedRow {
    /// A record `id` at version (`secs`, `token`), with a payload of about `size` bytes that
    /// records its own version (so tests can check which version is stored).
    pub fn new(id: impl Into<String>, secs: i64, token: i64, size: usize) -> OwnedRow {
        let id = id.into();
        let head =
            format!("{{\"Id\":\"{id}\",\"SyncToken\":\"{token}\",\"MetaData\":{{\"LastUpdatedTime\":\"{}\"}},\"v\":{token},\"Memo\":\"", ts(secs).to_rfc3339());
        let pad = size.saturating_sub(head.len() + 2);
        let mut payload = head.into_bytes();
        payload.extend(std::iter::repeat_n(b'x', pad));
        payload.extend_from_slice(b"\"}");
        OwnedRow { id, payload, last_updated: ts(secs), sync_token: token, page_number: 1 }
    }

    pub fn raw(&self) -> RawRow<'_> {
        RawRow {
            id: &self.id,
            payload_json: &self.payload,
            last_updated_utc: self.last_updated,
            sync_token: self.sync_token,
            realm_id: "realm-1",
            ingested_at_utc: Utc::now(),
            extract_window_start_utc: ts(0),
            extract_window_end_utc: ts(86_400),
            page_number: self.page_number,
            page_size: 1000,
        }
    }
}

pub fn raws(rows: &[OwnedRow]) -> Vec<RawRow<'_>> {
    rows.iter().map(OwnedRow::raw).collect()
}

/// `n` records `prefix0..prefix{n-1}`, all at version (`secs`, `token`).
pub fn batch(prefix: &str, n: usize, secs: i64, token: i64, size: usize) -> Vec<OwnedRow> {
    (0..n).map(|i| OwnedRow::new(format!("{prefix}{i}"), secs, token, size)).collect()
}

/// Same server and database as `dsn`, another login.
pub fn dsn_with_user(dsn: &str, user: &str, password: &str) -> String {
    let rest = dsn.split_once("://").unwrap().1;
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    format!("postgresql://{user}:{password}@{host_part}")
}

/// Same login and server, another database.
pub fn dsn_with_db(dsn: &str, db: &str) -> String {
    let (before, after) = dsn.rsplit_once('/').unwrap();
    let query = after.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{before}/{db}{query}")
}

/// The password in `dsn` (empty if none).
pub fn dsn_password(dsn: &str) -> String {
    let config: tokio_postgres::Config = dsn.parse().unwrap();
    config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default()
}
