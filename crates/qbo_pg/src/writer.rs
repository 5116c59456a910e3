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

/// Opens one session (classify a failure with [`connect_error`]).
async fn open(config: &PgConfig, tls: Option<&MakeRustlsConnect>) -> Result<Client, tokio_postgres::Error> {
    let mut pg = tokio_postgres::Config::new();
    if config.is_unix_socket() {
        pg.host_path(config.host());
    } else {
        pg.host(config.host());
    }
    pg.port(config.port())
        .dbname(config.dbname())
        .user(config.user())
        .application_name(config.application_name())
        .connect_timeout(config.connect_timeout())
        .keepalives(true)
        .ssl_mode(match config.sslmode() {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
    if let Some(p) = config.password_bytes() {
        pg.password(p);
    }
    let target = config.target();
    let connected = match tls {
        None => pg.connect(NoTls).await.map(|(client, connection)| {
            spawn_connection(target.clone(), connection);
            client
        }),
        Some(tls) => pg.connect(tls.clone()).await.map(|(client, connection)| {
            spawn_connection(target.clone(), connection);
            client
        }),
    };
    connected
}

fn spawn_connection<F>(target: String, connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%target, error = %driver_message(&e), "qbo_pg: connection ended with an error");
        }
    });
}

fn connect_error(config: &PgConfig, err: &tokio_postgres::Error) -> PgError {
    let target = config.target();
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return PgError::Auth { user: config.user().to_string(), target, reason: db.message().to_string() };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return PgError::MissingDatabase { database: config.dbname().to_string(), user: config.user().to_string(), target };
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return PgError::Privilege(PrivilegeError {
                role: config.user().to_string(),
                missing: vec![],
                server_message: Some(format!("{}{}", db.message(), db.detail().map(|d| format!(" {d}")).unwrap_or_default())),
            });
        }
        return PgError::Connect { target, reason: format!("{} (SQLSTATE {})", db.message(), code.code()) };
    }
    let reason = driver_message(err);
    if reason.contains("password missing") {
        return PgError::Auth { user: config.user().to_string(), target, reason: "the server asks for a password and none is configured".into() };
    }
    if reason.contains("server does not support TLS") {
        return PgError::Connect {
            target,
            reason: format!(
                "{reason}; sslmode={} needs a server with ssl=on (use sslmode=prefer or disable \
                 for a server without TLS)",
                config.sslmode()
            ),
        };
    }
    if reason.contains("invalid peer certificate") {
        return PgError::Connect {
            target,
            reason: format!(
                "{reason}; with sslmode=verify-full the server's certificate must chain to a \
                 public root or to the CA given as sslrootcert, and name the host connected to \
                 (sslmode=require encrypts without this check)"
            ),
        };
    }
    PgError::Connect { target, reason }
}

/// Checks a batch before anything is sent: a bad row fails the call with its position and id,
/// instead of a server error after part of the work.
fn validate_rows(rows: &[RawRow<'_>]) -> Result<(), PgError> {
    for (i, r) in rows.iter().enumerate() {
        let id = shown(r.id);
        if r.id.is_empty() {
            return Err(PgError::Config(format!("row {i}: id is empty")));
        }
        if r.id.contains('\0') {
            return Err(PgError::Config(format!("row {i} (id {id}): id contains a NUL byte, which PostgreSQL text cannot store")));
        }
        if r.realm_id.contains('\0') {
            return Err(PgError::Config(format!("row {i} (id {id}): realm_id contains a NUL byte, which PostgreSQL text cannot store")));
        }
        let trimmed = r.payload_json.trim_ascii();
        if trimmed.first() != Some(&b'{') || trimmed.last() != Some(&b'}') {
            return Err(PgError::Config(format!(
                "row {i} (id {id}): payload is not a JSON object (it must be the text of one \
                 object, {{...}})"
            )));
        }
        if r.extract_window_end_utc < r.extract_window_start_utc {
            return Err(PgError::Config(format!(
                "row {i} (id {id}): extract window ends ({}) before it starts ({})",
                r.extract_window_end_utc, r.extract_window_start_utc
            )));
        }
    }
    Ok(())
}

fn shown(id: &str) -> String {
    let cut: String = id.chars().take(64).collect();
    if cut.len() < id.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// Keeps each id's newest version (ties: the first copy), in first-seen order; returns the
/// winners and how many rows were dropped.
fn newest_per_id<'r, 'a>(rows: &'r [RawRow<'a>]) -> (Vec<&'r RawRow<'a>>, u64) {
    let mut slot: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
    let mut winners: Vec<&RawRow<'a>> = Vec::with_capacity(rows.len());
    for r in rows {
        match slot.entry(r.id) {
            Entry::Vacant(v) => {
                v.insert(winners.len());
                winners.push(r);
            }
            Entry::Occupied(o) => {
                let w = &mut winners[*o.get()];
                if r.version() > w.version() {
                    *w = r;
                }
            }
        }
    }
    let dropped = (rows.len() - winners.len()) as u64;
    (winners, dropped)
}

/// JSON object text, sent without copying or re-validating it on our side: as TEXT (the bytes
/// as they are; the server checks the encoding) or as JSONB (version byte 1, then the text;
/// the server parses it).
#[derive(Debug)]
struct JsonText<'a>(&'a [u8]);

impl ToSql for JsonText<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.reserve(self.0.len() + 1);
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        out.put_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT || *ty == Type::JSONB
    }

    to_sql_checked!();
}

async fn upsert_on(client: &mut Client, config: &PgConfig, table: &TableRef, winners: &[&RawRow<'_>], lz4: bool) -> Result<UpsertOutcome, PgError> {
    let context = || format!("upsert into {}", table.quoted());
    let attempt = async {
        let tx = client.transaction().await.map_err(|e| (e, "begin"))?;
        tx.batch_execute(&sql::begin_batch(lz4)).await.map_err(|e| (e, "create staging table"))?;
        let sink = tx.copy_in(&sql::copy_into_staging()).await.map_err(|e| (e, "start COPY"))?;
        let writer = BinaryCopyInWriter::new(sink, &COPY_TYPES);
        tokio::pin!(writer);
        for r in winners {
            writer
                .as_mut()
                .write(&[
                    &r.id,
                    &JsonText(r.payload_json),
                    &r.last_updated_utc,
                    &r.sync_token,
                    &r.realm_id,
                    &r.ingested_at_utc,
                    &r.extract_window_start_utc,
                    &r.extract_window_end_utc,
                    &r.page_number,
                    &r.page_size,
                ])
                .await
                .map_err(|e| (e, "COPY"))?;
        }
        writer.finish().await.map_err(|e| (e, "COPY"))?;

        let (inserted, updated) = {
            let messages = tx.simple_query(&sql::apply_batch(table)).await.map_err(|e| (e, "INSERT"))?;
            let row = first_row(&messages).expect("the count query returns one row");
            (parse_count(row, 0), parse_count(row, 1))
        };
        let distinct = winners.len() as u64;
        let stale = if inserted + updated < distinct {
            let messages = tx.simple_query(&sql::count_stale(table)).await.map_err(|e| (e, "count stale"))?;
            parse_count(first_row(&messages).expect("count returns one row"), 0)
        } else {
            0
        };
        tx.commit().await.map_err(|e| (e, "COMMIT"))?;
        let unchanged = distinct.saturating_sub(inserted + updated + stale);
        Ok::<_, (tokio_postgres::Error, &'static str)>(UpsertOutcome { inserted, updated, unchanged, stale, duplicates_in_batch: 0 })
    };
    match attempt.await {
        Ok(outcome) => Ok(outcome),
        // The transaction was dropped, so its ROLLBACK is queued ahead of anything we send now.
        Err((e, _)) if is_insufficient_privilege(&e) => Err(privilege_error(client, config, table, false, &e).await),
        Err((e, step)) => {
            let mut err = query_error(format!("{} ({})", context(), failure_outcome(step, e.as_db_error().is_none())), &e);
            let code = e.code().cloned();
            let culprit = match (e.as_db_error().and_then(|db| db.where_()).and_then(copy_line), &code) {
                // "COPY qbo_pg_staging, line 17, column payload": name the record, not the line.
                (Some(line), _) => winners.get(line.wrapping_sub(1)).map(|r| r.id),
                // Invalid JSON surfaces at the cast in the INSERT, which does not say which row:
                // ask the server once more, with a COPY into a JSONB column.
                (None, Some(c)) if step == "INSERT" && (*c == SqlState::INVALID_TEXT_REPRESENTATION || *c == SqlState::UNTRANSLATABLE_CHARACTER) => {
                    find_invalid_json(client, winners).await
                }
                _ => None,
            };
            if let PgError::Query { message, .. } = &mut err {
                if let Some(id) = culprit {
                    message.push_str(&format!(" (record id {})", shown(id)));
                }
                if code == Some(SqlState::UNDEFINED_TABLE) {
                    message.push_str(" (call ensure_table first)");
                }
            }
            Err(err)
        }
    }
}

/// Finds the first payload PostgreSQL refuses as JSONB, by COPYing the payloads into a JSONB
/// column in a throw-away transaction: the COPY error's line number is the row. Only run after a
/// batch already failed on a JSON cast, so its cost does not matter.
async fn find_invalid_json<'a>(client: &mut Client, winners: &[&RawRow<'a>]) -> Option<&'a str> {
    let tx = client.transaction().await.ok()?;
    tx.batch_execute(&sql::begin_json_check()).await.ok()?;
    let sink = tx.copy_in(&sql::copy_into_json_check()).await.ok()?;
    let writer = BinaryCopyInWriter::new(sink, &[Type::JSONB]);
    tokio::pin!(writer);
    let mut failure = None;
    for r in winners {
        if let Err(e) = writer.as_mut().write(&[&JsonText(r.payload_json)]).await {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => e,
        None => writer.finish().await.err()?,
    };
    let line = failure.as_db_error()?.where_().and_then(|w| {
        let marker = "COPY qbo_pg_json_check, line ";
        let rest = &w[w.find(marker)? + marker.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<usize>().ok()
    })?;
    winners.get(line.checked_sub(1)?).map(|r| r.id)
}

fn copy_line(where_: &str) -> Option<usize> {
    let marker = format!("COPY {}, line ", sql::STAGING_TABLE);
    let rest = &where_[where_.find(&marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

fn parse_count(row: &tokio_postgres::SimpleQueryRow, i: usize) -> u64 {
    row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// What the catalogs say about the role, the schema and the table.
struct Inspection {
    role: String,
    database: String,
    db_create: bool,
    db_temp: bool,
    schema_exists: bool,
    schema_usage: bool,
    schema_create: bool,
    table_oid: Option<u32>,
    table_kind: Option<i8>,
    table_select: bool,
    table_insert: bool,
    table_update: bool,
}

const INSPECT_SQL: &str = "\
SELECT current_user::text, current_database()::text,
       has_database_privilege(current_database(), 'CREATE'),
       has_database_privilege(current_database(), 'TEMPORARY'),
       n.oid IS NOT NULL,
       COALESCE(has_schema_privilege(n.oid, 'USAGE'), false),
       COALESCE(has_schema_privilege(n.oid, 'CREATE'), false),
       c.oid, c.relkind::\"char\",
       COALESCE(has_table_privilege(c.oid, 'SELECT'), false),
       COALESCE(has_table_privilege(c.oid, 'INSERT'), false),
       COALESCE(has_table_privilege(c.oid, 'UPDATE'), false)
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1
LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = $2";

async fn inspect(client: &Client, table: &TableRef) -> Result<Inspection, tokio_postgres::Error> {
    let row = client.query_one(INSPECT_SQL, &[&table.schema(), &table.table()]).await?;
    Ok(Inspection {
        role: row.get(0),
        database: row.get(1),
        db_create: row.get(2),
        db_temp: row.get(3),
        schema_exists: row.get(4),
        schema_usage: row.get(5),
        schema_create: row.get(6),
        table_oid: row.get(7),
        table_kind: row.get(8),
        table_select: row.get(9),
        table_insert: row.get(10),
        table_update: row.get(11),
    })
}

impl Inspection {
    /// Privileges missing for the next step: creating what does not exist (`creating`), and
    /// upserting into the table.
    fn missing(&self, table: &TableRef, creating: bool) -> Vec<MissingPrivilege> {
        let mut missing = Vec::new();
        let schema = table.schema().to_string();
        if !self.schema_exists {
            if creating && !self.db_create {
                missing.push(MissingPrivilege::CreateOnDatabase { database: self.database.clone() });
            }
        } else {
            if !self.schema_usage {
                missing.push(MissingPrivilege::UsageOnSchema { schema: schema.clone() });
            }
            if creating && self.table_oid.is_none() && !self.schema_create {
                missing.push(MissingPrivilege::CreateOnSchema { schema: schema.clone() });
            }
        }
        if self.table_oid.is_some() {
            let mut privileges = Vec::new();
            if !self.table_select {
                privileges.push("SELECT");
            }
            if !self.table_insert {
                privileges.push("INSERT");
            }
            if !self.table_update {
                privileges.push("UPDATE");
            }
            if !privileges.is_empty() {
                missing.push(MissingPrivilege::OnTable { schema, table: table.table().to_string(), privileges });
            }
        }
        if !self.db_temp {
            missing.push(MissingPrivilege::TempOnDatabase { database: self.database.clone() });
        }
        missing
    }
}

/// Turns a 42501 from a statement into a [`PrivilegeError`] that names every missing privilege
/// (asking the catalogs), keeping the server's message.
async fn privilege_error(client: &Client, config: &PgConfig, table: &TableRef, creating: bool, err: &tokio_postgres::Error) -> PgError {
    let server_message = err.as_db_error().map(|db| db.message().to_string());
    let (role, missing) = match inspect(client, table).await {
        Ok(i) => (i.role.clone(), i.missing(table, creating)),
        Err(_) => (config.user().to_string(), vec![]),
    };
    PgError::Privilege(PrivilegeError { role, missing, server_message })
}

/// True for errors meaning "someone else created it first".
fn lost_creation_race(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
    )
}

async fn ensure_table_on(client: &mut Client, config: &PgConfig, table: &TableRef, lz4: bool) -> Result<(), PgError> {
    let ctx = |what: &str| format!("ensure table {}: {what}", table.quoted());
    let mut state = inspect(client, table).await.map_err(|e| query_error(ctx("inspect"), &e))?;

    if !state.schema_exists {
        if let Err(e) = client.batch_execute(&sql::create_schema(table)).await {
            if is_insufficient_privilege(&e) {
                return Err(privilege_error(client, config, table, true, &e).await);
            }
            if !lost_creation_race(&e) {
                return Err(query_error(ctx("create schema"), &e));
            }
        } else {
            tracing::info!(schema = table.schema(), "qbo_pg: created schema");
        }
        state = inspect(client, table).await.map_err(|e| query_error(ctx("inspect"), &e))?;
    }
    if state.table_oid.is_none() {
        if let Err(e) = client.batch_execute(&sql::create_table(table, lz4)).await {
            if is_insufficient_privilege(&e) {
                return Err(privilege_error(client, config, table, true, &e).await);
            }
            if !lost_creation_race(&e) {
                return Err(query_error(ctx("create table"), &e));
            }
        } else {
            tracing::info!(table = %table, "qbo_pg: created table");
        }
        state = inspect(client, table).await.map_err(|e| query_error(ctx("inspect"), &e))?;
    }
    let Some(oid) = state.table_oid else {
        return Err(PgError::Query { context: ctx("create table"), sqlstate: None, message: "the table is still missing after CREATE TABLE".into() });
    };

    check_shape(client, table, oid, state.table_kind).await?;

    let has_index: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = $1 AND a.attname = 'last_updated_utc')",
            &[&oid],
        )
        .await
        .map_err(|e| query_error(ctx("inspect indexes"), &e))?
        .get(0);
    if !has_index {
        match client.batch_execute(&sql::create_index(table)).await {
            Ok(()) => tracing::info!(table = %table, "qbo_pg: created index on last_updated_utc"),
            Err(e) if is_insufficient_privilege(&e) => tracing::warn!(
                table = %table,
                "qbo_pg: no index on last_updated_utc and this role cannot create one (only the \
                 table owner can): upserts work, range queries on last_updated_utc will scan"
            ),
            Err(e) if lost_creation_race(&e) => {}
            Err(e) => return Err(query_error(ctx("create index"), &e)),
        }
    }

    let missing = state.missing(table, false);
    if !missing.is_empty() {
        return Err(PgError::Privilege(PrivilegeError { role: state.role, missing, server_message: None }));
    }
    Ok(())
}

/// Checks that an existing relation can take our upserts: right kind, every column with a
/// compatible type, no extra NOT NULL column without a default, a unique index on `id` alone.
async fn check_shape(client: &Client, table: &TableRef, oid: u32, kind: Option<i8>) -> Result<(), PgError> {
    let ctx = format!("ensure table {}: inspect columns", table.quoted());
    let mut problems = Vec::new();
    if !matches!(kind.map(|k| k as u8), Some(b'r') | Some(b'p')) {
        problems.push("it is not a table (a view, sequence, or other relation)".to_string());
    }
    let columns = client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef
             FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid],
        )
        .await
        .map_err(|e| query_error(ctx.clone(), &e))?;
    const EXPECTED: [(&str, &[&str]); 10] = [
        ("id", &["character varying", "text"]),
        ("payload", &["jsonb"]),
        ("ingested_at_utc", &["timestamp with time zone"]),
        ("extract_window_start_utc", &["timestamp with time zone"]),
        ("extract_window_end_utc", &["timestamp with time zone"]),
        ("page_number", &["integer", "bigint"]),
        ("page_size", &["integer", "bigint"]),
        ("last_updated_utc", &["timestamp with time zone"]),
        ("sync_token", &["bigint"]),
        ("realm_id", &["character varying", "text"]),
    ];
    let found: HashMap<String, (String, bool, bool)> = columns.iter().map(|r| (r.get::<_, String>(0), (r.get::<_, String>(1), r.get(2), r.get(3)))).collect();
    for (name, types) in EXPECTED {
        match found.get(name) {
            None => problems.push(format!("column {name} is missing ({})", types[0])),
            Some((ty, _, _)) => {
                let base = ty.split('(').next().unwrap_or(ty).trim();
                if !types.contains(&base) {
                    problems.push(format!("column {name} is {ty}, expected {}", types.join(" or ")));
                }
            }
        }
    }
    for (name, (_, notnull, hasdef)) in &found {
        if *notnull && !*hasdef && !EXPECTED.iter().any(|(n, _)| n == name) {
            problems.push(format!("extra column {name} is NOT NULL without a default, so inserts would fail"));
        }
    }
    let unique_id: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1
                   AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attname = 'id')",
            &[&oid],
        )
        .await
        .map_err(|e| query_error(ctx.clone(), &e))?
        .get(0);
    if !unique_id && found.contains_key("id") {
        problems.push("no PRIMARY KEY or unique index on id alone (ON CONFLICT (id) needs one)".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort();
        Err(PgError::TableShape { table: table.quoted(), problems })
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
