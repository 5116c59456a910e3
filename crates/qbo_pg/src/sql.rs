//! The SQL the writer runs, as functions of a [`TableRef`], public so that a DBA can read
//! exactly what will run (and so the benchmark can give `psql` the very same statements).
//!
//! Only validated, double-quoted identifiers are ever spliced into these strings; row values
//! travel in the binary COPY stream, never in SQL text.

use crate::ident::TableRef;

/// Name of the per-transaction staging table (in `pg_temp`, dropped at commit or rollback).
pub const STAGING_TABLE: &str = "qbo_pg_staging";

/// The staging table's columns, in COPY order (the order of [`crate::RawRow`]'s fields).
pub const STAGING_COLUMNS: &str = "id, payload, last_updated_utc, sync_token, realm_id, \
     ingested_at_utc, extract_window_start_utc, extract_window_end_utc, page_number, page_size";

/// Sort memory for the `DISTINCT ON` of one batch: 5,000 rows of 2 KB are ~10 MB, more than the
/// 4 MB default, which would spill the sort to disk. `SET LOCAL` lasts only for the transaction.
pub const WORK_MEM: &str = "64MB";

/// `CREATE SCHEMA IF NOT EXISTS`.
pub fn create_schema(table: &TableRef) -> String {
    format!("CREATE SCHEMA IF NOT EXISTS {}", crate::ident::quote_ident(table.schema()))
}

/// `CREATE TABLE IF NOT EXISTS` with the RAW layout (see the crate docs for each column).
pub fn create_table(table: &TableRef) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n\
         \x20   id                       VARCHAR     PRIMARY KEY,\n\
         \x20   payload                  JSONB       NOT NULL,\n\
         \x20   ingested_at_utc          TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_start_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_end_utc   TIMESTAMPTZ NOT NULL,\n\
         \x20   page_number              INTEGER     NOT NULL,\n\
         \x20   page_size                INTEGER     NOT NULL,\n\
         \x20   last_updated_utc         TIMESTAMPTZ NOT NULL,\n\
         \x20   sync_token               BIGINT      NOT NULL,\n\
         \x20   realm_id                 VARCHAR     NOT NULL\n\
         )",
        table.quoted()
    )
}

/// `CREATE INDEX IF NOT EXISTS` on `last_updated_utc` (window re-checks, "what changed since").
pub fn create_index(table: &TableRef) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON {} (last_updated_utc)",
        crate::ident::quote_ident(&table.last_updated_index_name()),
        table.quoted()
    )
}

/// Opens the batch: sort memory for this transaction only, and a fresh staging table that the
/// server drops at COMMIT or ROLLBACK (and when the session dies), so nothing outlives the
/// batch. No constraint on it: duplicates are resolved by the INSERT below.
pub fn begin_batch() -> String {
    format!(
        "SET LOCAL work_mem = '{WORK_MEM}';\n\
         CREATE TEMPORARY TABLE {STAGING_TABLE} (\n\
         \x20   id VARCHAR NOT NULL, payload JSONB NOT NULL,\n\
         \x20   last_updated_utc TIMESTAMPTZ NOT NULL, sync_token BIGINT NOT NULL,\n\
         \x20   realm_id VARCHAR NOT NULL, ingested_at_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_start_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_end_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   page_number INTEGER NOT NULL, page_size INTEGER NOT NULL\n\
         ) ON COMMIT DROP"
    )
}

/// The binary COPY into the staging table.
pub fn copy_into_staging() -> String {
    format!("COPY pg_temp.{STAGING_TABLE} ({STAGING_COLUMNS}) FROM STDIN (FORMAT binary)")
}

/// The one statement that applies a batch, and counts what it did.
///
/// * `DISTINCT ON (id) ... ORDER BY id, last_updated_utc DESC, sync_token DESC` keeps each id's
///   newest version from the batch. Sorting by id also makes every writer lock rows in the same
///   order, so two concurrent batches with overlapping ids cannot deadlock.
/// * `ON CONFLICT (id) DO UPDATE ... WHERE (new version) > (stored version)`: a newer version
///   replaces the row, an equal or older one writes nothing (no dead tuple, no WAL). Under READ
///   COMMITTED the condition is evaluated against the latest committed row, after waiting for
///   any concurrent writer of that id, so newest-wins holds between concurrent writers too.
/// * `RETURNING (xmax = 0)`: a freshly inserted tuple has no locker, an updated one carries
///   our transaction id in xmax; it is the usual way to tell inserts from updates in one
///   statement.
pub fn apply_batch(table: &TableRef) -> String {
    format!(
        "WITH written AS (\n\
         \x20 INSERT INTO {t} AS t ({cols})\n\
         \x20 SELECT DISTINCT ON (id) {cols}\n\
         \x20 FROM pg_temp.{STAGING_TABLE}\n\
         \x20 ORDER BY id, last_updated_utc DESC, sync_token DESC\n\
         \x20 ON CONFLICT (id) DO UPDATE SET\n\
         \x20   payload = EXCLUDED.payload,\n\
         \x20   last_updated_utc = EXCLUDED.last_updated_utc,\n\
         \x20   sync_token = EXCLUDED.sync_token,\n\
         \x20   realm_id = EXCLUDED.realm_id,\n\
         \x20   ingested_at_utc = EXCLUDED.ingested_at_utc,\n\
         \x20   extract_window_start_utc = EXCLUDED.extract_window_start_utc,\n\
         \x20   extract_window_end_utc = EXCLUDED.extract_window_end_utc,\n\
         \x20   page_number = EXCLUDED.page_number,\n\
         \x20   page_size = EXCLUDED.page_size\n\
         \x20 WHERE (EXCLUDED.last_updated_utc, EXCLUDED.sync_token)\n\
         \x20     > (t.last_updated_utc, t.sync_token)\n\
         \x20 RETURNING (xmax = 0) AS inserted\n\
         )\n\
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written",
        t = table.quoted(),
        cols = STAGING_COLUMNS,
    )
}

/// After [`apply_batch`], in the same transaction: how many of the batch's winners lost to a
/// newer stored version (*stale*). Only run when some winners were not written; the rest of the
/// not-written ones are *unchanged* (the stored version equals theirs).
pub fn count_stale(table: &TableRef) -> String {
    format!(
        "SELECT count(*) FROM (\n\
         \x20 SELECT DISTINCT ON (id) id, last_updated_utc, sync_token\n\
         \x20 FROM pg_temp.{STAGING_TABLE}\n\
         \x20 ORDER BY id, last_updated_utc DESC, sync_token DESC\n\
         ) s JOIN {t} t ON t.id = s.id\n\
         WHERE (t.last_updated_utc, t.sync_token) > (s.last_updated_utc, s.sync_token)",
        t = table.quoted()
    )
}

/// Row count.
pub fn count_rows(table: &TableRef) -> String {
    format!("SELECT count(*) FROM {}", table.quoted())
}
