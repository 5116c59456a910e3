//! Reading a RAW table back, a chunk of rows at a time, through a server-side portal (one
//! snapshot for the whole read, memory bounded by the chunk), for notebooks and exports.

use std::future::Future;

use super::*;

/// One stored row, owned: the RAW columns (see the crate's table layout), the payload as JSON
/// text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    /// The source record's id.
    pub id: String,
    /// The payload in PostgreSQL's JSONB text form: the value received, keys reordered.
    pub payload_json: String,
    /// First half of the version.
    pub last_updated_utc: DateTime<Utc>,
    /// Second half of the version.
    pub sync_token: i64,
    /// The tenant (QBO company).
    pub realm_id: String,
    /// When the stored version was fetched.
    pub ingested_at_utc: DateTime<Utc>,
    /// Start (inclusive) of the window that fetched it.
    pub extract_window_start_utc: DateTime<Utc>,
    /// End (exclusive) of that window.
    pub extract_window_end_utc: DateTime<Utc>,
    /// Page of that window.
    pub page_number: i32,
    /// Page size that window used.
    pub page_size: i32,
    /// When the source deleted the record; None while it is alive.
    pub deleted_at_utc: Option<DateTime<Utc>>,
}

/// Which rows a read hands over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFilter {
    /// Only this realm's rows (None: every realm in the table).
    pub realm_id: Option<String>,
    /// Leave out rows marked deleted.
    pub live_only: bool,
}

impl PgWriter {
    /// Fails as a read of `table` would (no such table, no SELECT privilege, no connection)
    /// without reading a row.
    pub async fn check_readable(&self, table: &TableRef) -> Result<(), PgError> {
        let mut conn = self.session().await?;
        let client = &*conn.client();
        let result = match client.execute(&format!("SELECT 1 FROM {} LIMIT 0", table.quoted()), &[]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.read_failure(client, table, &e).await),
        };
        conn.done();
        result
    }

    /// Hands the rows of `table` that pass `filter` to `each`, `chunk_rows` at a time, from one
    /// snapshot (a read-only transaction), until the rows run out or `each` returns false.
    /// Returns the rows handed over.
    pub async fn read_rows<F, Fut>(&self, table: &TableRef, filter: &RowFilter, chunk_rows: usize, mut each: F) -> Result<u64, PgError>
    where
        F: FnMut(Vec<StoredRow>) -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut conn = self.session().await?;
        let client = conn.client();
        let mut handed = 0u64;
        let read = async {
            let transaction = client.build_transaction().read_only(true).isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
            let statement = transaction.prepare(&sql::read_rows(table)).await?;
            let portal = transaction.bind(&statement, &[&filter.realm_id, &filter.live_only]).await?;
            loop {
                let rows = transaction.query_portal(&portal, i32::try_from(chunk_rows.max(1)).unwrap_or(i32::MAX)).await?;
                if rows.is_empty() {
                    break;
                }
                let exhausted = rows.len() < chunk_rows;
                let chunk: Vec<StoredRow> = rows.iter().map(stored_row).collect::<Result<_, _>>()?;
                handed += chunk.len() as u64;
                if !each(chunk).await || exhausted {
                    break;
                }
            }
            transaction.commit().await
        };
        let result = read.await;
        let result = match result {
            Ok(()) => Ok(handed),
            Err(e) => Err(self.read_failure(conn.client(), table, &e).await),
        };
        conn.done();
        result
    }

    /// A missing table or privilege says what to do; anything else says what was being done.
    async fn read_failure(&self, client: &Client, table: &TableRef, e: &tokio_postgres::Error) -> PgError {
        if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
            return PgError::Config(format!(
                "table {} does not exist: nothing was written there yet (run a backfill with sink postgres first), or \
                 the schema and table prefix name another table",
                table.quoted()
            ));
        }
        self.failure(client, table, "read", e).await
    }
}

fn stored_row(row: &tokio_postgres::Row) -> Result<StoredRow, tokio_postgres::Error> {
    Ok(StoredRow {
        id: row.try_get(0)?,
        payload_json: row.try_get(1)?,
        last_updated_utc: row.try_get(2)?,
        sync_token: row.try_get(3)?,
        realm_id: row.try_get(4)?,
        ingested_at_utc: row.try_get(5)?,
        extract_window_start_utc: row.try_get(6)?,
        extract_window_end_utc: row.try_get(7)?,
        page_number: row.try_get(8)?,
        page_size: row.try_get(9)?,
        deleted_at_utc: row.try_get(10)?,
    })
}
