//! The table and its rights: what the catalogs say, creating what is missing, and checking the shape and privileges of what exists.

use super::*;

/// What the catalogs say about the role, the schema and the table.
pub(super) struct Inspection {
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

pub(super) const INSPECT_SQL: &str = "\
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

pub(super) async fn inspect(client: &Client, table: &TableRef) -> Result<Inspection, tokio_postgres::Error> {
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
pub(super) async fn privilege_error(client: &Client, config: &PgConfig, table: &TableRef, creating: bool, err: &tokio_postgres::Error) -> PgError {
    let server_message = err.as_db_error().map(|db| db.message().to_string());
    let (role, missing) = match inspect(client, table).await {
        Ok(i) => (i.role.clone(), i.missing(table, creating)),
        Err(_) => (config.user().to_string(), vec![]),
    };
    PgError::Privilege(PrivilegeError { role, missing, server_message })
}

/// True for errors meaning "someone else created it first".
pub(super) fn lost_creation_race(err: &tokio_postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::DUPLICATE_SCHEMA
            || *c == SqlState::DUPLICATE_TABLE
            || *c == SqlState::DUPLICATE_OBJECT
    )
}

pub(super) async fn ensure_table_on(client: &mut Client, config: &PgConfig, table: &TableRef, lz4: bool) -> Result<(), PgError> {
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

    add_deleted_column_if_missing(client, table, oid).await?;
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

/// A table created before deletions were recorded gets its `deleted_at_utc` column (checked in
/// the catalog first: `ALTER TABLE` takes a lock that would queue behind running upserts, and
/// only the table's owner may run it).
async fn add_deleted_column_if_missing(client: &Client, table: &TableRef, oid: u32) -> Result<(), PgError> {
    let ctx = |what: &str| format!("ensure table {}: {what}", table.quoted());
    let present: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = 'deleted_at_utc' AND NOT attisdropped)", &[&oid])
        .await
        .map_err(|e| query_error(ctx("inspect columns"), &e))?
        .get(0);
    if present {
        return Ok(());
    }
    match client.batch_execute(&sql::add_deleted_column(table)).await {
        Ok(()) => {
            tracing::info!(table = %table, "qbo_pg: added column deleted_at_utc (NULL: every existing row is alive)");
            Ok(())
        }
        Err(e) if is_insufficient_privilege(&e) => Err(PgError::Query {
            context: ctx("add column deleted_at_utc"),
            sqlstate: e.code().map(|c| c.code().to_string()),
            message: format!("the table predates deletion tracking and this role may not alter it; as its owner run: {}", sql::add_deleted_column(table)),
        }),
        Err(e) => Err(query_error(ctx("add column deleted_at_utc"), &e)),
    }
}

/// Checks that an existing relation can take our upserts: right kind, every column with a
/// compatible type, no extra NOT NULL column without a default, a unique index on `id` alone.
pub(super) async fn check_shape(client: &Client, table: &TableRef, oid: u32, kind: Option<i8>) -> Result<(), PgError> {
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
    const EXPECTED: [(&str, &[&str]); 11] = [
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
        ("deleted_at_utc", &["timestamp with time zone"]),
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
