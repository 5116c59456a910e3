//! Connections: opening one (TLS per sslmode), driving it, and saying why one failed.

use super::*;

/// Opens one session (classify a failure with [`connect_error`]).
pub(super) async fn open(config: &PgConfig, tls: Option<&MakeRustlsConnect>) -> Result<Client, tokio_postgres::Error> {
    let mut pg = tokio_postgres::Config::new();
    if config.is_unix_socket() {
        pg.host_path(config.host());
    } else {
        pg.host(config.host());
    }
    pg.port(config.port())
        .dbname(config.dbname())
        .user(config.user())
        .application_name(config.application_name())
        .connect_timeout(config.connect_timeout())
        .keepalives(true)
        .ssl_mode(match config.sslmode() {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
    if let Some(p) = config.password_bytes() {
        pg.password(p);
    }
    let target = config.target();
    let connected = match tls {
        None => pg.connect(NoTls).await.map(|(client, connection)| {
            spawn_connection(target.clone(), connection);
            client
        }),
        Some(tls) => pg.connect(tls.clone()).await.map(|(client, connection)| {
            spawn_connection(target.clone(), connection);
            client
        }),
    };
    connected
}

pub(super) fn spawn_connection<F>(target: String, connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(%target, error = %driver_message(&e), "qbo_pg: connection ended with an error");
        }
    });
}

pub(super) fn connect_error(config: &PgConfig, err: &tokio_postgres::Error) -> PgError {
    let target = config.target();
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            return PgError::Auth { user: config.user().to_string(), target, reason: db.message().to_string() };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return PgError::MissingDatabase { database: config.dbname().to_string(), user: config.user().to_string(), target };
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return PgError::Privilege(PrivilegeError {
                role: config.user().to_string(),
                missing: vec![],
                server_message: Some(format!("{}{}", db.message(), db.detail().map(|d| format!(" {d}")).unwrap_or_default())),
            });
        }
        return PgError::Connect { target, reason: format!("{} (SQLSTATE {})", db.message(), code.code()) };
    }
    let reason = driver_message(err);
    if reason.contains("password missing") {
        return PgError::Auth { user: config.user().to_string(), target, reason: "the server asks for a password and none is configured".into() };
    }
    if reason.contains("server does not support TLS") {
        return PgError::Connect {
            target,
            reason: format!(
                "{reason}; sslmode={} needs a server with ssl=on (use sslmode=prefer or disable \
                 for a server without TLS)",
                config.sslmode()
            ),
        };
    }
    if reason.contains("invalid peer certificate") {
        return PgError::Connect {
            target,
            reason: format!(
                "{reason}; with sslmode=verify-full the server's certificate must chain to a \
                 public root or to the CA given as sslrootcert, and name the host connected to \
                 (sslmode=require encrypts without this check)"
            ),
        };
    }
    PgError::Connect { target, reason }
}
