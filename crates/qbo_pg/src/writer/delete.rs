//! Deletions marked: the ids' rows locked in id order, then one UPDATE that keeps each row's last
//! payload and stamps its deletion time, newest version winning as for upserts.

use super::*;

pub(super) async fn mark_deleted_on(
    client: &mut Client,
    config: &PgConfig,
    table: &TableRef,
    deletions: &[Deletion<'_>],
    learnt_at: DateTime<Utc>,
) -> Result<DeleteOutcome, PgError> {
    let ids: Vec<&str> = deletions.iter().map(|d| d.id).collect();
    let times: Vec<DateTime<Utc>> = deletions.iter().map(|d| d.deleted_at_utc).collect();
    let attempt = async {
        let tx = client.transaction().await.map_err(|e| (e, "begin"))?;
        tx.query(&sql::lock_for_deletion(table), &[&ids]).await.map_err(|e| (e, "lock rows"))?;
        let row = tx.query_one(&sql::mark_deleted(table), &[&ids, &times, &learnt_at]).await.map_err(|e| (e, "UPDATE"))?;
        tx.commit().await.map_err(|e| (e, "COMMIT"))?;
        Ok::<_, (tokio_postgres::Error, &'static str)>((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64, row.get::<_, i64>(2) as u64))
    };
    match attempt.await {
        Ok((marked, already, held)) => {
            let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len() as u64;
            Ok(DeleteOutcome { marked, already_marked: already, newer_kept: held - marked - already, not_held: distinct - held })
        }
        Err((e, _)) if is_insufficient_privilege(&e) => Err(privilege_error(client, config, table, false, &e).await),
        Err((e, step)) => Err(query_error(format!("mark deletions in {} ({step}; nothing was changed)", table.quoted()), &e)),
    }
}
