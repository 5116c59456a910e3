//! One batch upserted: rows checked, newest version per id kept, COPY into a temporary table, one INSERT … ON CONFLICT, the outcome counted.

use super::*;

/// Checks a batch before anything is sent: a bad row fails the call with its position and id,
/// instead of a server error after part of the work.
pub(super) fn validate_rows(rows: &[RawRow<'_>]) -> Result<(), PgError> {
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

pub(super) fn shown(id: &str) -> String {
    let cut: String = id.chars().take(64).collect();
    if cut.len() < id.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// Keeps each id's newest version (ties: the first copy), in first-seen order; returns the
/// winners and how many rows were dropped.
pub(super) fn newest_per_id<'r, 'a>(rows: &'r [RawRow<'a>]) -> (Vec<&'r RawRow<'a>>, u64) {
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
pub(super) struct JsonText<'a>(&'a [u8]);

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

pub(super) async fn upsert_on(client: &mut Client, config: &PgConfig, table: &TableRef, winners: &[&RawRow<'_>], lz4: bool) -> Result<UpsertOutcome, PgError> {
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
pub(super) async fn find_invalid_json<'a>(client: &mut Client, winners: &[&RawRow<'a>]) -> Option<&'a str> {
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

pub(super) fn copy_line(where_: &str) -> Option<usize> {
    let marker = format!("COPY {}, line ", sql::STAGING_TABLE);
    let rest = &where_[where_.find(&marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub(super) fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    })
}

pub(super) fn parse_count(row: &tokio_postgres::SimpleQueryRow, i: usize) -> u64 {
    row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0)
}
