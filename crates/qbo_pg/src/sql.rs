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
///
/// With `lz4` (the server supports it: PostgreSQL 14+ built with lz4), `payload` is
/// `COMPRESSION lz4`. A QBO invoice's JSONB (~2.7 KB) is over the 2 KB TOAST threshold, so
/// every stored payload is compressed, and with the default pglz that compression is the
/// largest single cost of an upsert: measured on 200,000 invoices, lz4 stores them 1.6x as fast
/// (32,000 vs 20,000 rows/s from one session) for 9% more space (1,635 vs 1,500 bytes per
/// payload), and reads decompress faster too. Uncompressed inline storage was as fast as lz4
/// but 1.8x the size.
pub fn create_table(table: &TableRef, lz4: bool) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n\
         \x20   id                       VARCHAR     PRIMARY KEY,\n\
         \x20   payload                  JSONB       {}NOT NULL,\n\
         \x20   ingested_at_utc          TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_start_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_end_utc   TIMESTAMPTZ NOT NULL,\n\
         \x20   page_number              INTEGER     NOT NULL,\n\
         \x20   page_size                INTEGER     NOT NULL,\n\
         \x20   last_updated_utc         TIMESTAMPTZ NOT NULL,\n\
         \x20   sync_token               BIGINT      NOT NULL,\n\
         \x20   realm_id                 VARCHAR     NOT NULL,\n\
         \x20   deleted_at_utc           TIMESTAMPTZ\n\
         )",
        table.quoted(),
        if lz4 { "COMPRESSION lz4 " } else { "" }
    )
}

/// Adds `deleted_at_utc` to a table created before deletions were recorded: NULL (alive) for
/// every existing row, so no row is rewritten.
pub fn add_deleted_column(table: &TableRef) -> String {
    format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS deleted_at_utc TIMESTAMPTZ", table.quoted())
}

/// `CREATE INDEX IF NOT EXISTS` on `last_updated_utc` (window re-checks, "what changed since").
pub fn create_index(table: &TableRef) -> String {
    format!("CREATE INDEX IF NOT EXISTS {} ON {} (last_updated_utc)", crate::ident::quote_ident(&table.last_updated_index_name()), table.quoted())
}

/// Opens the batch: sort memory for this transaction only, and a fresh staging table that the
/// server drops at COMMIT or ROLLBACK (and when the session dies), so nothing outlives the
/// batch. No constraint on it: duplicates are resolved by the INSERT below.
///
/// `payload` is staged as TEXT, not JSONB: parsing JSON is a good part of the server's work, and
/// [`apply_batch`] casts only the rows it is about to store. A re-run of a window whose
/// records did not change thus costs a COPY of text and an index probe per row, not a JSON
/// parse per row. (Invalid JSON in a row that will be stored still fails the batch, at the
/// cast; invalid UTF-8 fails it at the COPY.)
///
/// `jit = off` for the transaction: the staging table has no statistics, so the planner
/// assumes tens of thousands of rows, the estimated cost of the per-row primary-key probe
/// crosses `jit_above_cost`, and the server would spend ~10 ms compiling expressions for every
/// batch of a few thousand rows, which never pays back.
///
/// The staging table keeps the default TOAST settings: staging the ~2 KB payloads uncompressed
/// (`toast_tuple_target = 8160`) was measured no faster (a batch of uncompressed rows also
/// outgrows the session's default 8 MB of temporary buffers).
///
/// With `lz4`, the transaction also sets `default_toast_compression = lz4`: it applies to a
/// `payload` column left at the default method (a table created before, or by someone else),
/// and is overridden by a column's explicit `COMPRESSION` (see [`create_table`]).
pub fn begin_batch(lz4: bool) -> String {
    format!(
        "SET LOCAL work_mem = '{WORK_MEM}';\n\
         SET LOCAL jit = off;\n\
         {}\
         CREATE TEMPORARY TABLE {STAGING_TABLE} (\n\
         \x20   id VARCHAR NOT NULL, payload TEXT NOT NULL,\n\
         \x20   last_updated_utc TIMESTAMPTZ NOT NULL, sync_token BIGINT NOT NULL,\n\
         \x20   realm_id VARCHAR NOT NULL, ingested_at_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_start_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   extract_window_end_utc TIMESTAMPTZ NOT NULL,\n\
         \x20   page_number INTEGER NOT NULL, page_size INTEGER NOT NULL\n\
         ) ON COMMIT DROP",
        if lz4 { "SET LOCAL default_toast_compression = 'lz4';\n" } else { "" }
    )
}

/// The binary COPY into the staging table.
pub fn copy_into_staging() -> String {
    format!("COPY pg_temp.{STAGING_TABLE} ({STAGING_COLUMNS}) FROM STDIN (FORMAT binary)")
}

/// The one statement that applies a batch, and counts what it did.
///
/// * The `LEFT JOIN LATERAL (... WHERE stored.id = s.id LIMIT 1)` probe drops, before any JSON
///   is parsed, the rows that would not be written (stored version >= staged: unchanged or
///   stale). It is only a shortcut, read from the statement's snapshot: the `ON CONFLICT ...
///   WHERE` below is what guarantees newest-wins, also against a writer that commits in
///   between. LATERAL + LIMIT 1 pins the plan to one primary-key probe per staged row: the
///   staging table has no statistics, and a plain `NOT EXISTS` let the planner pick a hash
///   anti-join that reads the whole target table for every batch (measured: 157 ms per batch at
///   200k stored rows, growing with the table).
/// * `DISTINCT ON (id) ... ORDER BY id, last_updated_utc DESC, sync_token DESC` keeps each id's
///   newest version from the batch.
/// * `payload::jsonb`: the one JSON parse, for rows about to be stored. Sorting by id also makes every writer lock rows in the same
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
         \x20 SELECT DISTINCT ON (s.id) {select_cols}\n\
         \x20 FROM pg_temp.{STAGING_TABLE} s\n\
         \x20 LEFT JOIN LATERAL (\n\
         \x20   SELECT stored.last_updated_utc, stored.sync_token FROM {t} stored\n\
         \x20   WHERE stored.id = s.id LIMIT 1) stored ON true\n\
         \x20 WHERE stored.last_updated_utc IS NULL\n\
         \x20    OR (stored.last_updated_utc, stored.sync_token) < (s.last_updated_utc, s.sync_token)\n\
         \x20 ORDER BY s.id, s.last_updated_utc DESC, s.sync_token DESC\n\
         \x20 ON CONFLICT (id) DO UPDATE SET\n\
         \x20   payload = EXCLUDED.payload,\n\
         \x20   last_updated_utc = EXCLUDED.last_updated_utc,\n\
         \x20   sync_token = EXCLUDED.sync_token,\n\
         \x20   realm_id = EXCLUDED.realm_id,\n\
         \x20   ingested_at_utc = EXCLUDED.ingested_at_utc,\n\
         \x20   extract_window_start_utc = EXCLUDED.extract_window_start_utc,\n\
         \x20   extract_window_end_utc = EXCLUDED.extract_window_end_utc,\n\
         \x20   page_number = EXCLUDED.page_number,\n\
         \x20   page_size = EXCLUDED.page_size,\n\
         \x20   deleted_at_utc = NULL\n\
         \x20 WHERE (EXCLUDED.last_updated_utc, EXCLUDED.sync_token)\n\
         \x20     > (t.last_updated_utc, t.sync_token)\n\
         \x20 RETURNING (xmax = 0) AS inserted\n\
         )\n\
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written",
        t = table.quoted(),
        cols = STAGING_COLUMNS,
        select_cols =
            STAGING_COLUMNS.split(", ").map(|c| if c == "payload" { "s.payload::jsonb".to_string() } else { format!("s.{c}") }).collect::<Vec<_>>().join(", "),
    )
}

/// Locks the stored rows of the ids in `$1` (a `text[]`) in id order, as [`apply_batch`] does,
/// so that marking deletions cannot deadlock with a concurrent upsert of the same ids.
pub fn lock_for_deletion(table: &TableRef) -> String {
    format!("SELECT id FROM {} WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", table.quoted())
}

/// Marks deleted the ids in `$1` at the times in `$2` (`timestamptz[]`, one per id), learnt at
/// `$3`: the row keeps its last payload, and `deleted_at_utc` and `last_updated_utc` (its
/// version) become the deletion time. A row as new or newer (already marked, or edited or
/// re-created after the deletion) is left as it is. Returns, over the distinct ids: marked
/// now, already marked at that time, and held at all.
pub fn mark_deleted(table: &TableRef) -> String {
    format!(
        "WITH d AS (\n\
         \x20 SELECT DISTINCT ON (id) id, deleted_at\n\
         \x20 FROM unnest($1::text[], $2::timestamptz[]) AS u(id, deleted_at)\n\
         \x20 ORDER BY id, deleted_at DESC\n\
         ), marked AS (\n\
         \x20 UPDATE {t} AS t SET deleted_at_utc = d.deleted_at, last_updated_utc = d.deleted_at,\n\
         \x20   ingested_at_utc = $3\n\
         \x20 FROM d WHERE t.id = d.id AND t.last_updated_utc < d.deleted_at\n\
         \x20 RETURNING t.id\n\
         )\n\
         SELECT (SELECT count(*) FROM marked),\n\
         \x20      count(t.id) FILTER (WHERE t.deleted_at_utc = d.deleted_at AND t.last_updated_utc = d.deleted_at),\n\
         \x20      count(t.id)\n\
         FROM d LEFT JOIN {t} t ON t.id = d.id",
        t = table.quoted()
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
         ) s CROSS JOIN LATERAL (\n\
         \x20 SELECT stored.last_updated_utc, stored.sync_token FROM {t} stored\n\
         \x20 WHERE stored.id = s.id LIMIT 1) stored\n\
         WHERE (stored.last_updated_utc, stored.sync_token) > (s.last_updated_utc, s.sync_token)",
        t = table.quoted()
    )
}

/// Diagnosis only, after a batch failed on invalid JSON: a JSONB-typed staging table whose
/// COPY error names the offending line (hence the record).
pub fn begin_json_check() -> String {
    "CREATE TEMPORARY TABLE qbo_pg_json_check (payload JSONB NOT NULL) ON COMMIT DROP".to_string()
}

/// The COPY for [`begin_json_check`].
pub fn copy_into_json_check() -> String {
    "COPY pg_temp.qbo_pg_json_check (payload) FROM STDIN (FORMAT binary)".to_string()
}

/// Row count.
pub fn count_rows(table: &TableRef) -> String {
    format!("SELECT count(*) FROM {}", table.quoted())
}

/// The table that keeps how far `sync` brought each RAW table, per realm (one row each).
pub fn create_sync_state_table(state: &TableRef) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n\
         \x20   realm_id      VARCHAR     NOT NULL,\n\
         \x20   raw_table     VARCHAR     NOT NULL,\n\
         \x20   read_through  TIMESTAMPTZ NOT NULL,\n\
         \x20   swept_through TIMESTAMPTZ NOT NULL,\n\
         \x20   saved_at      TIMESTAMPTZ NOT NULL DEFAULT now(),\n\
         \x20   PRIMARY KEY (realm_id, raw_table)\n\
         )",
        state.quoted()
    )
}

/// `$1` realm, `$2` RAW table name: the saved state, if any.
pub fn read_sync_state(state: &TableRef) -> String {
    format!("SELECT read_through, swept_through FROM {} WHERE realm_id = $1 AND raw_table = $2", state.quoted())
}

/// `$1` realm, `$2` RAW table name, `$3` read_through, `$4` swept_through.
pub fn save_sync_state(state: &TableRef) -> String {
    format!(
        "INSERT INTO {} (realm_id, raw_table, read_through, swept_through) VALUES ($1, $2, $3, $4)\n\
         ON CONFLICT (realm_id, raw_table) DO UPDATE SET read_through = EXCLUDED.read_through,\n\
         \x20   swept_through = EXCLUDED.swept_through, saved_at = now()",
        state.quoted()
    )
}

/// `$1` realm: the newest version held, the oldest ingestion of a live row, live rows.
pub fn freshness(table: &TableRef) -> String {
    format!(
        "SELECT max(last_updated_utc), min(ingested_at_utc) FILTER (WHERE deleted_at_utc IS NULL),\n\
         \x20   count(*) FILTER (WHERE deleted_at_utc IS NULL) FROM {} WHERE realm_id = $1",
        table.quoted()
    )
}

/// `$1` realm: the ids of live rows.
pub fn live_ids(table: &TableRef) -> String {
    format!("SELECT id FROM {} WHERE realm_id = $1 AND deleted_at_utc IS NULL", table.quoted())
}

/// The columns [`read_rows`] selects, in the order of [`crate::StoredRow`]'s fields; the
/// payload as JSON text (PostgreSQL's JSONB text form).
pub const READ_COLUMNS: &str = "id, payload::text, last_updated_utc, sync_token, realm_id, ingested_at_utc, \
     extract_window_start_utc, extract_window_end_utc, page_number, page_size, deleted_at_utc";

/// `$1` realm (NULL: every realm), `$2` live rows only: the rows a read hands over, in the
/// table's physical order (a sequential scan: no sort, no index walk over TOASTed payloads).
pub fn read_rows(table: &TableRef) -> String {
    format!(
        "SELECT {READ_COLUMNS} FROM {}\n\
         \x20WHERE ($1::varchar IS NULL OR realm_id = $1) AND (NOT $2::boolean OR deleted_at_utc IS NULL)",
        table.quoted()
    )
}
