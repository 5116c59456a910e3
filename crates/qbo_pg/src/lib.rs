//! Idempotent bulk upserts of RAW records into PostgreSQL JSONB tables.
//!
//! `qbo_pg` is the PostgreSQL RAW sink of qbo_rs, but like `qbo_jsonl` it knows nothing about
//! QuickBooks: callers hand it rows of `(id, JSON object, version, bookkeeping)` and a
//! [`TableRef`], and it guarantees that the table holds **exactly one row per id, carrying the
//! newest version ever written for that id**, whatever order batches are re-run in and even if
//! the writing process is killed at any instant.
//!
//! ```no_run
//! # async fn demo(rows: Vec<qbo_pg::RawRow<'_>>) -> Result<(), qbo_pg::PgError> {
//! use qbo_pg::{PgConfig, PgWriter, TableRef};
//! let config = PgConfig::from_dsn("postgresql://etl:secret@db:5432/warehouse?sslmode=prefer")?;
//! let writer = PgWriter::connect(&config).await?;        // wrong password, no such db: fails here
//! let table = TableRef::new("raw", "qb_invoices")?;      // unsafe names: fail here
//! writer.ensure_table(&table).await?;                    // creates if missing, checks privileges
//! let outcome = writer.upsert(&table, &rows).await?;     // one transaction per batch
//! println!("{} inserted, {} updated", outcome.inserted, outcome.updated);
//! # Ok(()) }
//! ```
//!
//! # Table layout
//!
//! [`PgWriter::ensure_table`] creates (SQL in [`sql::create_table`]):
//!
//! | column | type | meaning |
//! | --- | --- | --- |
//! | `id` | `VARCHAR PRIMARY KEY` | the source record's id; one row per id |
//! | `payload` | `JSONB NOT NULL` | the full source record, as received (JSONB: whitespace and key order normalised, value identical) |
//! | `ingested_at_utc` | `TIMESTAMPTZ NOT NULL` | when the stored version was fetched (updated with the payload) |
//! | `extract_window_start_utc` | `TIMESTAMPTZ NOT NULL` | start (inclusive) of the extraction window that fetched the stored version |
//! | `extract_window_end_utc` | `TIMESTAMPTZ NOT NULL` | end (exclusive) of that window |
//! | `page_number` | `INTEGER NOT NULL` | page of that window the record came from (auditing) |
//! | `page_size` | `INTEGER NOT NULL` | page size used by that window (auditing) |
//! | `last_updated_utc` | `TIMESTAMPTZ NOT NULL`, indexed | when the source last changed the record: first half of the version |
//! | `sync_token` | `BIGINT NOT NULL` | the source's revision counter: second half of the version, breaks timestamp ties |
//! | `realm_id` | `VARCHAR NOT NULL` | the tenant (QBO company) the record belongs to |
//! | `deleted_at_utc` | `TIMESTAMPTZ` | NULL while the record is alive; when the source deleted it ([`PgWriter::mark_deleted`]) |
//!
//! A deleted record keeps its row and its last payload; its version (`last_updated_utc`)
//! becomes the deletion time, so a later edit or re-creation wins over the deletion as any newer
//! version does (and clears the mark). Live rows: `WHERE deleted_at_utc IS NULL`. A table
//! created before this column existed gets it from [`PgWriter::ensure_table`] (every row alive).
//!
//! The first seven columns are the RAW layout the product was specified with. The other four are ours: with
//! them, "is this version newer?" is a comparison of two indexed columns instead of parsing
//! every stored payload, `last_updated_utc` answers "what changed in this window" without
//! touching JSONB, and `realm_id` keeps several companies' records apart in one table. The
//! index is `<table>_last_updated_utc_idx`. All timestamps are `TIMESTAMPTZ` holding UTC
//! instants, whatever the session's `TimeZone` displays.
//!
//! # One batch, one transaction
//!
//! [`PgWriter::upsert`] validates the rows, drops in-batch duplicates (keeping each id's newest
//! version), then in **one transaction**: binary `COPY` into a temporary staging table
//! (`ON COMMIT DROP`, payload staged as TEXT), one `INSERT ... SELECT DISTINCT ON (id) ... ON
//! CONFLICT (id) DO UPDATE ... WHERE (new last_updated_utc, sync_token) > (stored)`, one count
//! query when some rows were not written, `COMMIT`. Never row by row. The statements are in
//! [`sql`]; the INSERT first probes the primary key for each staged row and skips those already
//! stored at an equal or newer version, so JSON is parsed (`payload::jsonb`) only for rows that
//! will be stored, and re-running an unchanged window takes about half the time of loading it.
//! Consequences:
//!
//! * **Newest wins, always.** An older payload never overwrites a newer one; an equal version
//!   writes nothing (no dead tuple, no WAL); this holds between concurrent writers too (the
//!   `WHERE` is re-evaluated against the latest committed row under row lock).
//! * **Concurrent batches never deadlock.** Each INSERT takes its rows in id order, so two
//!   batches sharing ids (two windows holding a record edited between their reads, or two
//!   processes) wait for each other at most, and whichever version is newer ends up stored.
//! * **All or nothing.** A process killed with SIGKILL mid-batch leaves no trace: the server
//!   sees the connection close before `COMMIT` and rolls back; the staging table goes with the
//!   session. A batch that was committed is entirely there. Re-running converges.
//! * **Counts.** [`UpsertOutcome`] says, per distinct id, inserted / updated / unchanged
//!   (same version already stored) / stale (a newer version stored), plus in-batch duplicates.
//!
//! # Errors
//!
//! [`PgError`] classifies failures so callers can react: [`PgError::Config`] (bad DSN, missing
//! `POSTGRES_*`, unsafe names, a row that is not a JSON object: before any write),
//! [`PgError::Connect`], [`PgError::Auth`] (wrong password), [`PgError::MissingDatabase`]
//! (with the `CREATE DATABASE` to run), [`PgError::Privilege`] (each missing privilege, e.g.
//! `USAGE on schema "raw"`, `INSERT/UPDATE on table "raw"."qb_invoices"`, with the `GRANT`s),
//! [`PgError::TableShape`], [`PgError::Query`]. No message contains the password.
//!
//! # TLS
//!
//! `sslmode` as in libpq: `disable`, `prefer` (default), `require` (encrypt, certificate not
//! verified, as libpq does without a root certificate), `verify-full` (Mozilla roots plus
//! `sslrootcert`, host name checked). See [`SslMode`]. The stack is rustls (with ring, as
//! reqwest already uses in this workspace) through `tokio-postgres-rustls`: nothing for the
//! abi3 wheel to link against or ship (`postgres-native-tls` would need the system OpenSSL on
//! Linux), and that crate also provides SCRAM channel binding.
//!
//! # Performance
//!
//! Three product-level choices, measured on 200,000 QBO invoices (~2.1 KB of JSON, ~2.7 KB as
//! JSONB) on the 2-core development machine, PostgreSQL 15, server and client sharing the cores:
//!
//! * **`payload JSONB COMPRESSION lz4`** when the server supports it (PostgreSQL 14+ built
//!   with lz4; detected at connect, see [`PgWriter::uses_lz4`]). Every invoice is over the
//!   2 KB TOAST threshold, so every stored payload is compressed, and pglz (the default) was the
//!   largest single cost of a row: lz4 stores 1.6x as many rows per second (32,000 vs 20,000
//!   from one session) for 9% larger payloads (1,635 vs 1,500 bytes; the whole table with its
//!   indexes 397 vs 335 MB). Tables created earlier keep their column setting; a
//!   column at the default method gets lz4 from each batch's `SET LOCAL
//!   default_toast_compression`, an explicit `COMPRESSION pglz` is respected. The index on
//!   `last_updated_utc` cost 0-8% of the rows per second in repeated measurements (a BRIN index
//!   about the same) and stays, for "what changed in this window" queries.
//! * **A pool of sessions, one per concurrent upsert** ([`PgConfig::with_max_connections`],
//!   default 4, opened on demand). One batch keeps one backend busy on one CPU (JSON parsing,
//!   compression, heap, index and WAL writes); batches of the backfill's concurrent windows
//!   run in parallel backends. The upsert of 200,000 invoices already on the server (the
//!   INSERT alone) ran at 30,000 rows/s in one session, 55,000 in two, 56,000 in four.
//! * **Fetching overlaps writing** in the backfill (qbo_core): a window fetches its next batch
//!   of ~5 MiB while the previous one is written (one batch in flight per window, so the same
//!   memory as one 10 MiB batch): a one-window backfill of 200,000 invoices ran ~15% faster.
//!
//! `examples/throughput.rs` upserts 200,000 generated rows of ~2 KB in batches of 5,000 from one
//! sequential caller (one session) and times, in the same run and against the same server,
//! `psql \copy` into the same staging table followed by the same statements: the writer ran at
//! 103-125% of that baseline for inserts, updates and unchanged re-runs, in every round measured.
//! `benches/pg_bench.py` (`make bench`) compares the whole backfill with psql and psycopg2
//! (README, Benchmarks). A batch's JSON is parsed only by the server, once, and only for rows that will be stored.

#![warn(missing_docs)]

mod config;
mod error;
mod ident;
pub mod sql;
mod tls;
mod writer;

pub use config::{PgConfig, SslMode, DEFAULT_APPLICATION_NAME, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use error::{MissingPrivilege, PgError, PrivilegeError};
pub use ident::{quote_ident, TableRef};
pub use writer::{DeleteOutcome, Deletion, Freshness, PgWriter, RawRow, RowFilter, StoredRow, SyncMark, UpsertOutcome};

#[cfg(test)]
mod tests;
