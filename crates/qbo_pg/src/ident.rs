//! [`TableRef`]: a schema-qualified table name that is safe to put in SQL.

use std::fmt;

use crate::error::PgError;

/// A validated `schema.table`.
///
/// Both parts must match `^[a-z_][a-z0-9_]{0,62}$`: lowercase ASCII, so the name means the same
/// quoted and unquoted (no `Raw` vs `raw` surprise in psql or pgAdmin), and at most 63 bytes,
/// PostgreSQL's identifier limit (longer names would be truncated silently by the server and
/// two different names could land in one table). Schemas starting with `pg_` are reserved by
/// PostgreSQL and refused too. Names are also always double-quoted in the SQL we generate, so
/// reserved words such as `user` or `order` work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    schema: String,
    table: String,
}

impl TableRef {
    /// Validates both parts; the error says which part is wrong and why.
    pub fn new(schema: &str, table: &str) -> Result<Self, PgError> {
        check_identifier("schema", schema)?;
        check_identifier("table", table)?;
        if schema.starts_with("pg_") {
            return Err(PgError::Config(format!(
                "schema name {schema:?} is reserved: PostgreSQL keeps names starting with pg_ for \
                 system schemas"
            )));
        }
        Ok(Self { schema: schema.to_string(), table: table.to_string() })
    }

    /// The schema name, unquoted.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The table name, unquoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `"schema"."table"`, ready for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }

    /// The `last_updated_utc` index's name: `<table>_last_updated_utc_idx`, shortened with a
    /// hash when that would exceed 63 bytes (so that it is never silently truncated into
    /// another table's index name).
    pub fn last_updated_index_name(&self) -> String {
        const SUFFIX: &str = "_last_updated_utc_idx";
        if self.table.len() + SUFFIX.len() <= 63 {
            return format!("{}{SUFFIX}", self.table);
        }
        // FNV-1a: stable across Rust versions and platforms, unlike DefaultHasher.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.table.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let short = "_lu_idx";
        let keep = 63 - short.len() - 9;
        format!("{}_{h:08x}{short}", &self.table[..keep])
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

fn check_identifier(what: &str, name: &str) -> Result<(), PgError> {
    let rule = "use 1 to 63 characters from a-z, 0-9 and _, not starting with a digit";
    if name.is_empty() {
        return Err(PgError::Config(format!("{what} name is empty: {rule}")));
    }
    if name.len() > 63 {
        return Err(PgError::Config(format!("{what} name is {} bytes long, PostgreSQL's limit is 63: {rule}", name.len())));
    }
    let first_ok = matches!(name.as_bytes()[0], b'a'..=b'z' | b'_');
    let bad = name.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if let Some(c) = bad {
        let why = if c.is_ascii_uppercase() {
            "uppercase letters are refused so the name means the same quoted and unquoted".to_string()
        } else {
            format!("character {c:?} is not allowed")
        };
        return Err(PgError::Config(format!("{what} name {name:?} is unsafe: {why}; {rule}")));
    }
    if !first_ok {
        return Err(PgError::Config(format!("{what} name {name:?} starts with a digit: {rule}")));
    }
    Ok(())
}

/// Double-quotes an identifier for SQL, doubling embedded quotes. Used for validated table
/// names and for role/database names in suggested GRANT statements.
pub fn quote_ident(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push('"');
    for c in name.chars() {
        if c == '"' {
            s.push('"');
        }
        s.push(c);
    }
    s.push('"');
    s
}
