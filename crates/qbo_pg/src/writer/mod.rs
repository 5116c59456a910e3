//! [`PgWriter`]: connect, create the table, upsert batches, count.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgConfig, SslMode};
use crate::error::{driver_message, is_insufficient_privilege, query_error, MissingPrivilege, PgError, PrivilegeError};
use crate::ident::TableRef;
use crate::sql;

mod delete;
mod freshness;
mod pool;
mod read;
mod schema;
mod upsert;

use delete::*;
pub use freshness::{Freshness, SyncMark};
use pool::*;
pub use read::{RowFilter, StoredRow};
use schema::*;
use upsert::*;

/// One RAW record to store: the source payload untouched plus the bookkeeping columns.
///
/// Borrowed, so a caller holding a page of records writes them without copying payloads.
/// `(last_updated_utc, sync_token)` is the record's *version*: the sink keeps, per `id`, the
/// row with the greatest version ever written (compared as a pair, timestamp first).
#[derive(Debug, Clone, Copy)]
pub struct RawRow<'a> {
    /// Primary key (the source's record id). Non-empty, no NUL byte.
    pub id: &'a str,
    /// The text of one JSON object, stored as JSONB. PostgreSQL parses it (and rejects invalid
    /// JSON, which fails the whole batch); JSONB normalises whitespace and key order, so the
    /// bytes read back may differ while the JSON value is the same.
    pub payload_json: &'a [u8],
    /// When the source last changed the record, in UTC: the first half of the version.
    pub last_updated_utc: DateTime<Utc>,
    /// The source's revision counter: the second half of the version (breaks timestamp ties).
    pub sync_token: i64,
    /// The tenant (QBO company) the record belongs to.
    pub realm_id: &'a str,
    /// When this version was fetched.
    pub ingested_at_utc: DateTime<Utc>,
    /// Start (inclusive) of the extraction window that fetched it.
    pub extract_window_start_utc: DateTime<Utc>,
    /// End (exclusive) of that window.
    pub extract_window_end_utc: DateTime<Utc>,
    /// Page of the window it came from (auditing).
    pub page_number: i32,
    /// Page size that window used (auditing).
    pub page_size: i32,
}

impl RawRow<'_> {
    /// The version as PostgreSQL will compare it: microsecond precision (TIMESTAMPTZ's), then
    /// the sync token.
    fn version(&self) -> (i64, i64) {
        (self.last_updated_utc.timestamp_micros(), self.sync_token)
    }
}

/// What one [`PgWriter::upsert`] did, per distinct id of the batch.
///
/// `inserted + updated + unchanged + stale` is the number of distinct ids in the batch, and
/// `duplicates_in_batch` the number of rows beyond that (older or equal copies of an id that
/// appeared earlier, dropped before writing). Exact when no other writer touches the same ids
/// at the same time; with concurrent writers of the same ids, `unchanged` and `stale` can trade
/// counts (the sum stays right), while `inserted`/`updated` are always exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Ids that were not in the table.
    pub inserted: u64,
    /// Ids whose stored version was older: now replaced.
    pub updated: u64,
    /// Ids already stored with exactly this version: nothing written.
    pub unchanged: u64,
    /// Ids stored with a newer version: this older one was ignored.
    pub stale: u64,
    /// Extra rows for an id already in the batch (the newest copy is the one considered).
    pub duplicates_in_batch: u64,
}

impl UpsertOutcome {
    /// Rows written (`inserted + updated`).
    pub fn written(&self) -> u64 {
        self.inserted + self.updated
    }

    /// Distinct ids in the batch: after this upsert the table holds each of them at this
    /// version or newer. This is what a "rows fetched vs rows stored" check compares.
    pub fn accounted(&self) -> u64 {
        self.inserted + self.updated + self.unchanged + self.stale
    }

    /// Adds another batch's counts (for per-window totals).
    pub fn add(&mut self, other: &UpsertOutcome) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.stale += other.stale;
        self.duplicates_in_batch += other.duplicates_in_batch;
    }
}

/// A record QuickBooks reports deleted, and when.
#[derive(Debug, Clone, Copy)]
pub struct Deletion<'a> {
    /// The record's id (the table's primary key).
    pub id: &'a str,
    /// When QuickBooks deleted it: the row's new version.
    pub deleted_at_utc: DateTime<Utc>,
}

/// What one [`PgWriter::mark_deleted`] did, over the distinct ids it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Rows marked deleted now.
    pub marked: u64,
    /// Rows already marked deleted at that time.
    pub already_marked: u64,
    /// Rows with a newer version (edited or re-created after the deletion): kept alive.
    pub newer_kept: u64,
    /// Ids the table does not hold: nothing to mark.
    pub not_held: u64,
}

/// A handle that upserts RAW batches over a small pool of PostgreSQL sessions. Clones share the
/// pool.
///
/// **One session per concurrent upsert.** Each upsert is one transaction that needs a session
/// to itself from `BEGIN` to `COMMIT`. The writer opens one session at [`PgWriter::connect`]
/// (so a wrong password fails there) and more only when that many upserts run at the same time,
/// up to [`PgConfig::max_connections`] (default 4, the backfill's default number of concurrent
/// windows); finished sessions are kept for the next upsert. A sequential caller therefore uses
/// one session, and the backfill's concurrent windows write in parallel, which the server's
/// CPUs turn into throughput: a batch is CPU-bound in one backend (JSON parsing, compression,
/// heap, index and WAL writes), so two backends on two cores write about twice the rows per
/// second of one (the INSERT of 200,000 invoices already on the server: 30k rows/s in one
/// session, 55k in two, 56k in four, on the 2-core development machine). If the server refuses an extra session for lack of connection
/// slots (`too_many_connections`), the writer lowers its own limit and carries on with the
/// sessions it has.
///
/// Concurrent batches with overlapping ids are safe: each INSERT locks its rows in id order, so
/// two of them cannot deadlock, and the newest version wins whichever commits first (see
/// [`sql::apply_batch`]).
///
/// **Self-healing.** A session found closed (server restart, network) is discarded and a fresh
/// one opened. If an operation is cancelled mid-way (its future dropped), its session is closed
/// rather than reused: the server rolls the batch back, and re-running an upsert is harmless
/// because upserts are idempotent.
#[derive(Clone)]
pub struct PgWriter {
    inner: Arc<Inner>,
}

struct Inner {
    config: PgConfig,
    tls: Option<MakeRustlsConnect>,
    /// Open sessions not in use.
    idle: std::sync::Mutex<Vec<Client>>,
    /// One permit per session that may be in use at once.
    permits: Arc<Semaphore>,
    /// Sessions currently open (idle or in use).
    open: AtomicUsize,
    /// Sessions the server refused for want of a connection slot (each lowered the limit by one).
    refused: AtomicUsize,
    /// The server can compress TOAST values with lz4 (PostgreSQL 14+ built `--with-lz4`).
    lz4: bool,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter").field("target", &self.inner.config.target()).finish()
    }
}

/// Column types of the binary COPY, in [`sql::STAGING_COLUMNS`] order.
const COPY_TYPES: [Type; 10] =
    [Type::VARCHAR, Type::TEXT, Type::TIMESTAMPTZ, Type::INT8, Type::VARCHAR, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::INT4, Type::INT4];

/// Whether the server offers lz4 for TOAST compression: `default_toast_compression` exists
/// since PostgreSQL 14 and lists `lz4` only when the server was built with it.
const LZ4_SQL: &str = "SELECT COALESCE((SELECT 'lz4' = ANY(enumvals) FROM pg_catalog.pg_settings \
                       WHERE name = 'default_toast_compression'), false)";

impl PgWriter {
    /// Opens the first session now, so that a wrong password, a missing database or an
    /// unreachable host is reported before any work is fetched.
    pub async fn connect(config: &PgConfig) -> Result<Self, PgError> {
        let tls = crate::tls::connector(config)?;
        let client = open(config, tls.as_ref()).await.map_err(|e| connect_error(config, &e))?;
        let lz4 = client.query_one(LZ4_SQL, &[]).await.map_err(|e| query_error("ask the server for lz4 support", &e))?.get(0);
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                tls,
                idle: std::sync::Mutex::new(vec![client]),
                permits: Arc::new(Semaphore::new(config.max_connections().max(1))),
                open: AtomicUsize::new(1),
                refused: AtomicUsize::new(0),
                lz4,
            }),
        })
    }

    /// The configuration this writer connects with.
    pub fn config(&self) -> &PgConfig {
        &self.inner.config
    }

    /// True when the server compresses large payloads with lz4 for this writer: new tables get
    /// `payload ... COMPRESSION lz4`, and every batch sets `default_toast_compression = lz4`
    /// for its own transaction (which applies to a payload column left at the default method;
    /// an explicit `COMPRESSION pglz` on the column is respected). False on servers before
    /// PostgreSQL 14 or built without lz4: pglz, the server default, is used.
    pub fn uses_lz4(&self) -> bool {
        self.inner.lz4
    }

    /// Makes `table` ready for [`PgWriter::upsert`], and proves it before any data is fetched.
    ///
    /// Creates the schema, the table and the `last_updated_utc` index if they are missing
    /// (existence is checked in the catalogs first, so a role that may only write, as a
    /// least-privilege setup grants, never needs CREATE). Then checks that an existing table has the RAW
    /// layout and that the role holds every privilege an upsert needs: USAGE on the schema,
    /// SELECT/INSERT/UPDATE on the table, TEMPORARY on the database. A missing privilege is a
    /// [`PgError::Privilege`] naming each one with its GRANT. Safe to call concurrently from
    /// several processes (a lost creation race counts as "already exists").
    pub async fn ensure_table(&self, table: &TableRef) -> Result<(), PgError> {
        let mut conn = self.session().await?;
        let result = ensure_table_on(conn.client(), &self.inner.config, table, self.inner.lz4).await;
        conn.done();
        result
    }

    /// Writes a batch in one transaction: all of it or (on any error, or if the process dies)
    /// none of it.
    ///
    /// Steps: validate every row (before touching the server); drop in-batch duplicates,
    /// keeping each id's newest version (ties: the first copy); `BEGIN`; binary `COPY` into a
    /// temporary staging table; one `INSERT ... SELECT DISTINCT ON (id) ... ON CONFLICT (id)
    /// DO UPDATE ... WHERE newer` (see [`sql::apply_batch`]); if some ids were not written, one
    /// query to tell unchanged from stale; `COMMIT`. Never row by row.
    ///
    /// Re-running a batch, in any order relative to others, converges to the same table: the
    /// newest version per id. An empty batch does nothing and returns zeros. Several upserts
    /// may run at once (each on its own session, see [`PgWriter`]).
    pub async fn upsert(&self, table: &TableRef, rows: &[RawRow<'_>]) -> Result<UpsertOutcome, PgError> {
        validate_rows(rows)?;
        let (winners, duplicates) = newest_per_id(rows);
        if winners.is_empty() {
            return Ok(UpsertOutcome::default());
        }
        let started = Instant::now();
        let mut conn = self.session().await?;
        let result = upsert_on(conn.client(), &self.inner.config, table, &winners, self.inner.lz4).await;
        conn.done();
        let mut outcome = result?;
        outcome.duplicates_in_batch = duplicates;
        tracing::debug!(
            table = %table,
            rows = rows.len(),
            inserted = outcome.inserted,
            updated = outcome.updated,
            unchanged = outcome.unchanged,
            stale = outcome.stale,
            duplicates = outcome.duplicates_in_batch,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "qbo_pg upsert committed"
        );
        Ok(outcome)
    }

    /// Marks `deletions` in one transaction: each row keeps its last payload, and
    /// `deleted_at_utc` and `last_updated_utc` (its version) become the deletion time, unless
    /// the row is as new or newer (already marked; edited or re-created since). Rows are locked
    /// in id order first, as upserts lock them, so the two never deadlock. Idempotent.
    pub async fn mark_deleted(&self, table: &TableRef, deletions: &[Deletion<'_>], learnt_at: DateTime<Utc>) -> Result<DeleteOutcome, PgError> {
        if deletions.is_empty() {
            return Ok(DeleteOutcome::default());
        }
        if let Some(d) = deletions.iter().find(|d| d.id.is_empty() || d.id.contains('\0')) {
            return Err(PgError::Config(format!("deletion of id {}: an id must be non-empty text without NUL bytes", shown(d.id))));
        }
        let mut conn = self.session().await?;
        let result = mark_deleted_on(conn.client(), &self.inner.config, table, deletions, learnt_at).await;
        conn.done();
        result
    }

    /// Number of rows in `table` (an exact `count(*)`, for per-window reconciliation and tests).
    pub async fn count(&self, table: &TableRef) -> Result<u64, PgError> {
        let mut conn = self.session().await?;
        let client = conn.client();
        let result = match client.query_one(&sql::count_rows(table), &[]).await {
            Ok(row) => Ok(row.get::<_, i64>(0) as u64),
            Err(e) if is_insufficient_privilege(&e) => Err(privilege_error(client, &self.inner.config, table, false, &e).await),
            Err(e) => Err(query_error(format!("count rows of {}", table.quoted()), &e)),
        };
        conn.done();
        result
    }

    /// Sessions currently open (idle or in use); at most [`PgWriter::session_limit`].
    pub fn open_sessions(&self) -> usize {
        self.inner.open.load(Ordering::SeqCst)
    }

    /// Sessions this writer may hold at once: [`PgConfig::max_connections`], less one for each
    /// session the server refused for want of a connection slot.
    pub fn session_limit(&self) -> usize {
        self.inner.config.max_connections().max(1) - self.inner.refused.load(Ordering::SeqCst)
    }

    /// A session for one operation: an idle one if there is one that is still open, else a new
    /// one, waiting while `max_connections` are in use.
    async fn session(&self) -> Result<Session<'_>, PgError> {
        let inner = &*self.inner;
        loop {
            let permit = Arc::clone(&inner.permits).acquire_owned().await.expect("the semaphore is never closed");
            loop {
                let candidate = inner.idle.lock().expect("idle list lock").pop();
                match candidate {
                    Some(client) if !client.is_closed() => {
                        return Ok(Session { inner, client: Some(client), _permit: permit });
                    }
                    Some(_closed) => {
                        inner.open.fetch_sub(1, Ordering::SeqCst);
                        tracing::info!(
                            target = %inner.config.target(),
                            "qbo_pg: a session was closed (server restart or network), opening a new one"
                        );
                    }
                    None => break,
                }
            }
            match open(&inner.config, inner.tls.as_ref()).await {
                Ok(client) => {
                    inner.open.fetch_add(1, Ordering::SeqCst);
                    return Ok(Session { inner, client: Some(client), _permit: permit });
                }
                Err(e) if e.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) && inner.open.load(Ordering::SeqCst) > 0 => {
                    // No slot left on the server: make do with the sessions already open.
                    permit.forget();
                    inner.refused.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(
                        target = %inner.config.target(),
                        sessions = inner.open.load(Ordering::SeqCst),
                        "qbo_pg: the server has no connection slot for another session; \
                         continuing with the sessions already open"
                    );
                }
                Err(e) => return Err(connect_error(&inner.config, &e)),
            }
        }
    }
}

/// Exclusive use of one session for one operation. [`Session::done`] puts it back in the pool;
/// dropped without it (the operation's future was cancelled), the session is closed instead,
/// so the server rolls back whatever it was doing.
struct Session<'a> {
    inner: &'a Inner,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl Session<'_> {
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("a session holds a client until done")
    }

    fn done(mut self) {
        if let Some(client) = self.client.take() {
            if client.is_closed() {
                self.inner.open.fetch_sub(1, Ordering::SeqCst);
            } else {
                self.inner.idle.lock().expect("idle list lock").push(client);
            }
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if self.client.take().is_some() {
            self.inner.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What a failed batch left behind. A statement the server refused rolls the transaction back;
/// but a connection lost during COMMIT leaves no answer: the server may have committed.
fn failure_outcome(step: &str, connection_lost: bool) -> String {
    if step == "COMMIT" && connection_lost {
        "the connection was lost during COMMIT, so whether the batch was committed is unknown; \
         re-run the window, which converges either way"
            .into()
    } else {
        format!("{step}; batch rolled back")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_connection_lost_during_commit_is_an_unknown_outcome_not_a_rollback() {
        let lost = failure_outcome("COMMIT", true);
        assert!(lost.contains("unknown") && !lost.contains("rolled back"), "{lost}");
        assert_eq!(failure_outcome("COMMIT", false), "COMMIT; batch rolled back", "the server refused the COMMIT");
        assert_eq!(failure_outcome("COPY", true), "COPY; batch rolled back", "no COMMIT was sent");
    }

    fn row<'a>(id: &'a str, payload: &'a [u8], secs: i64, token: i64) -> RawRow<'a> {
        let t = Utc.timestamp_opt(secs, 0).unwrap();
        RawRow {
            id,
            payload_json: payload,
            last_updated_utc: t,
            sync_token: token,
            realm_id: "r",
            ingested_at_utc: t,
            extract_window_start_utc: t,
            extract_window_end_utc: t,
            page_number: 1,
            page_size: 100,
        }
    }

    #[test]
    fn newest_per_id_keeps_greatest_version_and_first_of_ties() {
        let rows = [
            row("a", b"{\"v\":1}", 10, 1),
            row("b", b"{\"v\":1}", 10, 1),
            row("a", b"{\"v\":3}", 20, 0),
            row("a", b"{\"v\":2}", 10, 9),
            row("b", b"{\"v\":2}", 10, 1),
        ];
        let (w, dropped) = newest_per_id(&rows);
        assert_eq!(dropped, 3);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].payload_json, b"{\"v\":3}");
        assert_eq!(w[1].payload_json, b"{\"v\":1}", "tie keeps the first copy");
    }

    #[test]
    fn validation_names_the_row() {
        let bad = [row("a", b"{}", 1, 1), row("b", b"[1]", 1, 1)];
        let e = validate_rows(&bad).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("\"b\"") && e.contains("JSON object"), "{e}");
        let e = validate_rows(&[row("", b"{}", 1, 1)]).unwrap_err().to_string();
        assert!(e.contains("id is empty"), "{e}");
        let e = validate_rows(&[row("a\0b", b"{}", 1, 1)]).unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        assert!(validate_rows(&[row("a", b"  {\"x\": 1}\n", 1, 1)]).is_ok());
    }

    #[test]
    fn copy_line_parses_server_context() {
        assert_eq!(copy_line("COPY qbo_pg_staging, line 17, column payload"), Some(17));
        assert_eq!(copy_line("JSON data, line 1: {\"a\": }\nCOPY qbo_pg_staging, line 32, column payload"), Some(32));
        assert_eq!(copy_line("something else"), None);
    }
}
