//! What `sync` asks of a RAW table: how fresh it is, which ids it holds alive, and the state a
//! sync saves beside it (a small table in the same schema, one row per realm and RAW table).

use super::*;

/// What a RAW table holds of one realm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    /// The newest `last_updated_utc` held (deleted rows included).
    pub newest_updated: Option<DateTime<Utc>>,
    /// The oldest `ingested_at_utc` of a row not marked deleted.
    pub oldest_live_ingested: Option<DateTime<Utc>>,
    /// Rows not marked deleted.
    pub live: u64,
}

/// How far a sync brought a RAW table (see `qbo_core`'s `SyncState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncMark {
    /// Every change made in the source before this instant is held.
    pub read_through: DateTime<Utc>,
    /// Every deletion made in the source before this instant is marked.
    pub swept_through: DateTime<Utc>,
}

impl PgWriter {
    /// How fresh `table` is for `realm_id` (one aggregate over the realm's rows).
    pub async fn freshness(&self, table: &TableRef, realm_id: &str) -> Result<Freshness, PgError> {
        let mut conn = self.session().await?;
        let client = &*conn.client();
        let result = match client.query_one(&sql::freshness(table), &[&realm_id]).await {
            Ok(row) => Ok(Freshness { newest_updated: row.get(0), oldest_live_ingested: row.get(1), live: row.get::<_, i64>(2) as u64 }),
            Err(e) => Err(self.failure(client, table, "read the freshness of", &e).await),
        };
        conn.done();
        result
    }

    /// The ids of `realm_id`'s rows in `table` not marked deleted.
    pub async fn live_ids(&self, table: &TableRef, realm_id: &str) -> Result<Vec<String>, PgError> {
        let mut conn = self.session().await?;
        let client = &*conn.client();
        let result = match client.query(&sql::live_ids(table), &[&realm_id]).await {
            Ok(rows) => Ok(rows.iter().map(|r| r.get(0)).collect()),
            Err(e) => Err(self.failure(client, table, "list the live ids of", &e).await),
        };
        conn.done();
        result
    }

    /// The state the last sync saved for `table` and `realm_id` in `state` (created if missing).
    pub async fn sync_mark(&self, state: &TableRef, table: &TableRef, realm_id: &str) -> Result<Option<SyncMark>, PgError> {
        let mut conn = self.session().await?;
        let client = &*conn.client();
        let read = async {
            client.batch_execute(&sql::create_sync_state_table(state)).await?;
            client.query_opt(&sql::read_sync_state(state), &[&realm_id, &table.table()]).await
        };
        let result = match read.await {
            Ok(row) => Ok(row.map(|r| SyncMark { read_through: r.get(0), swept_through: r.get(1) })),
            Err(e) => Err(self.failure(client, state, "read the sync state in", &e).await),
        };
        conn.done();
        result
    }

    /// Saves (replaces) the sync state of `table` and `realm_id` in `state`.
    pub async fn save_sync_mark(&self, state: &TableRef, table: &TableRef, realm_id: &str, mark: SyncMark) -> Result<(), PgError> {
        let mut conn = self.session().await?;
        let client = &*conn.client();
        let result = match client.execute(&sql::save_sync_state(state), &[&realm_id, &table.table(), &mark.read_through, &mark.swept_through]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failure(client, state, "save the sync state in", &e).await),
        };
        conn.done();
        result
    }

    /// A missing privilege becomes the GRANT it needs; anything else says what was being done.
    pub(super) async fn failure(&self, client: &Client, table: &TableRef, doing: &str, e: &tokio_postgres::Error) -> PgError {
        if is_insufficient_privilege(e) {
            privilege_error(client, &self.inner.config, table, false, e).await
        } else {
            query_error(format!("{doing} {}", table.quoted()), e)
        }
    }
}
