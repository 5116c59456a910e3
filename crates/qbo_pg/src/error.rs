//! [`PgError`]: every failure, classified so callers (the CLI, the Python binding, Mage blocks)
//! can react by kind, and worded so the person reading the log knows what to do next.
//!
//! No message ever contains a password: connections are named by [`crate::PgConfig::target`]
//! (`user@host:port/db`), and server messages never echo the password either.

use std::fmt;

use tokio_postgres::error::SqlState;

use crate::ident::quote_ident;

/// Why a PostgreSQL operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// Bad input caught before any connection or write: a malformed DSN, a missing
    /// `POSTGRES_*` variable, an unsafe table name, a row that cannot be stored.
    #[error("invalid PostgreSQL configuration or input: {0}")]
    Config(String),

    /// The server could not be reached or the session could not be set up (refused, timeout,
    /// DNS, TLS). Usually transient or a wrong host/port: safe to retry later.
    #[error(
        "cannot connect to PostgreSQL at {target}: {reason}. Check that the server is running and \
         reachable at that host and port, and that sslmode fits the server"
    )]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// What the driver or server said.
        reason: String,
    },

    /// The server refused the login: wrong password, unknown role, or no `pg_hba.conf` entry.
    /// Not transient: retrying will not help until the credentials are fixed.
    #[error(
        "PostgreSQL refused the login of role \"{user}\" at {target}: {reason}. Check the user \
         and password (POSTGRES_USER/POSTGRES_PASSWORD or the DSN) and that pg_hba.conf allows \
         this role from this host"
    )]
    Auth {
        /// The login role.
        user: String,
        /// `user@host:port/db`.
        target: String,
        /// What the server said (e.g. `password authentication failed for user "x"`).
        reason: String,
    },

    /// The login worked but the database does not exist.
    #[error(
        "database \"{database}\" does not exist on {target}. Create it, as a superuser or a role \
         with CREATEDB: CREATE DATABASE {qdb} OWNER {quser}; (shell: createdb -O {user} {database})",
        qdb = quote_ident(database),
        quser = quote_ident(user)
    )]
    MissingDatabase {
        /// The database that is missing.
        database: String,
        /// The login role (suggested as owner).
        user: String,
        /// `user@host:port/db`.
        target: String,
    },

    /// The role lacks a privilege the sink needs; names which, and the GRANTs that fix it.
    #[error("{0}")]
    Privilege(PrivilegeError),

    /// The table exists but does not have the shape the sink writes (it was not created by
    /// qbo_pg, or by an older layout).
    #[error(
        "table {table} exists but does not have the RAW layout: {}. Migrate it (ALTER TABLE ...) \
         or write to another table; see the qbo_pg crate docs for the layout",
        problems.join("; ")
    )]
    TableShape {
        /// Quoted `"schema"."table"`.
        table: String,
        /// One line per problem (missing column, wrong type, no unique index on id, ...).
        problems: Vec<String>,
    },

    /// Any other server or protocol error while running a statement. The batch being written,
    /// if any, was rolled back as a whole.
    #[error("{context}: {message}")]
    Query {
        /// What we were doing (e.g. `upsert into "raw"."qb_invoices"`).
        context: String,
        /// The SQLSTATE, when the server sent one (e.g. `22P02`).
        sqlstate: Option<String>,
        /// The server's message with its detail and hint, or the driver's.
        message: String,
    },
}

impl PgError {
    /// The SQLSTATE behind this error, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Query { sqlstate, .. } => sqlstate.as_deref(),
            PgError::Privilege(_) => Some("42501"),
            _ => None,
        }
    }

    /// True for failures that may go away by themselves (connection lost, server restarting,
    /// serialization/deadlock conflicts): an idempotent upsert can simply be re-run.
    pub fn is_transient(&self) -> bool {
        match self {
            PgError::Connect { .. } => true,
            PgError::Query { sqlstate: None, .. } => true, // connection closed mid-statement
            PgError::Query { sqlstate: Some(code), .. } => {
                code.starts_with("08") // connection exception
                    || code.starts_with("57P") // admin/crash shutdown, cannot connect now
                    || code == "40001" // serialization failure
                    || code == "40P01" // deadlock detected
                    || code == "53300" // too many connections
            }
            _ => false,
        }
    }
}

/// One privilege the sink needs and the role does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingPrivilege {
    /// `CREATE` on the database: needed only to create a missing schema.
    CreateOnDatabase {
        /// Database name.
        database: String,
    },
    /// `TEMPORARY` on the database: the upsert stages each batch in a temporary table.
    TempOnDatabase {
        /// Database name.
        database: String,
    },
    /// `USAGE` on the schema: needed for anything inside it.
    UsageOnSchema {
        /// Schema name.
        schema: String,
    },
    /// `CREATE` on the schema: needed only to create a missing table.
    CreateOnSchema {
        /// Schema name.
        schema: String,
    },
    /// Table privileges: `SELECT` (newest-wins comparison, counts), `INSERT`, `UPDATE`.
    OnTable {
        /// Schema name.
        schema: String,
        /// Table name.
        table: String,
        /// The missing ones among `SELECT`, `INSERT`, `UPDATE`.
        privileges: Vec<&'static str>,
    },
}

impl MissingPrivilege {
    /// The statement a DBA runs to grant it to `role`.
    pub fn grant_sql(&self, role: &str) -> String {
        let r = quote_ident(role);
        match self {
            MissingPrivilege::CreateOnDatabase { database } => {
                format!("GRANT CREATE ON DATABASE {} TO {r};", quote_ident(database))
            }
            MissingPrivilege::TempOnDatabase { database } => {
                format!("GRANT TEMPORARY ON DATABASE {} TO {r};", quote_ident(database))
            }
            MissingPrivilege::UsageOnSchema { schema } => {
                format!("GRANT USAGE ON SCHEMA {} TO {r};", quote_ident(schema))
            }
            MissingPrivilege::CreateOnSchema { schema } => {
                format!("GRANT CREATE ON SCHEMA {} TO {r};", quote_ident(schema))
            }
            MissingPrivilege::OnTable { schema, table, privileges } => {
                format!("GRANT {} ON TABLE {}.{} TO {r};", privileges.join(", "), quote_ident(schema), quote_ident(table))
            }
        }
    }
}

impl fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingPrivilege::CreateOnDatabase { database } => {
                write!(f, "CREATE on database {}", quote_ident(database))
            }
            MissingPrivilege::TempOnDatabase { database } => {
                write!(f, "TEMPORARY on database {}", quote_ident(database))
            }
            MissingPrivilege::UsageOnSchema { schema } => {
                write!(f, "USAGE on schema {}", quote_ident(schema))
            }
            MissingPrivilege::CreateOnSchema { schema } => {
                write!(f, "CREATE on schema {}", quote_ident(schema))
            }
            MissingPrivilege::OnTable { schema, table, privileges } => {
                write!(f, "{} on table {}.{}", privileges.join("/"), quote_ident(schema), quote_ident(table))
            }
        }
    }
}

/// The role lacks privileges; [`fmt::Display`] lists them and the GRANTs that fix them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeError {
    /// The role that was checked (the login role).
    pub role: String,
    /// What is missing; may be empty when only the server's message is known.
    pub missing: Vec<MissingPrivilege>,
    /// The server's own message, when the error came from a statement rather than our check.
    pub server_message: Option<String>,
}

impl fmt::Display for PrivilegeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "permission denied: role {} ", quote_ident(&self.role))?;
        if self.missing.is_empty() {
            write!(f, "lacks a privilege")?;
        } else {
            let what: Vec<String> = self.missing.iter().map(ToString::to_string).collect();
            write!(f, "lacks {}", what.join("; "))?;
        }
        if let Some(m) = &self.server_message {
            write!(f, " (server: {m})")?;
        }
        if self.missing.is_empty() {
            write!(
                f,
                ". The sink needs USAGE on the schema and SELECT, INSERT, UPDATE on the table \
                 (plus CREATE on the database/schema to create them, and TEMPORARY on the database)"
            )
        } else {
            let grants: Vec<String> = self.missing.iter().map(|m| m.grant_sql(&self.role)).collect();
            write!(f, ". Ask a DBA (or the owner) to run: {}", grants.join(" "))
        }
    }
}

/// Builds a [`PgError::Query`] (or a more specific kind) from a driver error.
pub(crate) fn query_error(context: impl Into<String>, err: &tokio_postgres::Error) -> PgError {
    let context = context.into();
    match err.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_string();
            if let Some(d) = db.detail() {
                message.push_str(" (detail: ");
                message.push_str(d);
                message.push(')');
            }
            if let Some(h) = db.hint() {
                message.push_str(" (hint: ");
                message.push_str(h);
                message.push(')');
            }
            if let Some(w) = db.where_() {
                message.push_str(" (where: ");
                message.push_str(w);
                message.push(')');
            }
            PgError::Query { context, sqlstate: Some(db.code().code().to_string()), message }
        }
        None => PgError::Query { context, sqlstate: None, message: driver_message(err) },
    }
}

/// The driver's message with its source chain, e.g. `error connecting to server: Connection
/// refused (os error 111)`.
pub(crate) fn driver_message(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !s.contains(&part) {
            s.push_str(": ");
            s.push_str(&part);
        }
        source = e.source();
    }
    s
}

/// True when the driver error is SQLSTATE 42501.
pub(crate) fn is_insufficient_privilege(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
}
