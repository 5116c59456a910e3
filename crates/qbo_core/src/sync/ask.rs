//! The questions a sync asks QuickBooks besides the read itself: where an entity's records
//! begin, and which of some ids still exist.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::client::QboClient;
use crate::entity::{Entity, FilterField};
use crate::error::Error;
use crate::head;
use crate::query::{self, bound_literal, MAX_PAGE_SIZE};
use crate::time::parse_qbo_timestamp;

/// Ids per confirmation query: a long `IN` list in one POSTed statement, far below any limit
/// QuickBooks documents, and at most one page of answers.
const IDS_PER_QUERY: usize = MAX_PAGE_SIZE as usize;

/// The oldest `LastUpdatedTime` among `entity`'s records in `[from, to)`, with one request for
/// one record, so a read from "the beginning" plans windows only where records are.
pub(super) async fn oldest_update(client: &QboClient, entity: Entity, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Error> {
    let field = FilterField::LastUpdatedTime;
    let statement = query::page_statement(entity, field, &bound_literal(field, from), ">=", to, 1);
    let page = client.select(entity, &statement).await?;
    if page.is_empty() {
        return Ok(None);
    }
    let record = page.record(0);
    let stamp = head::scan(&record, false).last_updated_time.and_then(|t| parse_qbo_timestamp(&t));
    stamp.map(Some).ok_or_else(|| Error::Decode(format!("the oldest {entity} has no valid MetaData.LastUpdatedTime")))
}

/// Which of `ids` QuickBooks still returns (inactive name-list records count as existing):
/// one query per thousand ids.
pub(super) async fn existing(client: &QboClient, entity: Entity, ids: &[&str]) -> Result<HashSet<String>, Error> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let page = client.select(entity, &query::ids_statement(entity, chunk)).await?;
        for i in 0..page.len() {
            let record = page.record(i);
            if let Some(id) = head::scan(&record, false).id {
                found.insert(id.into_owned());
            }
        }
    }
    Ok(found)
}
