//! Where to connect: [`PgConfig`] from a DSN, from `POSTGRES_*` variables, or from parts.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};

use crate::error::PgError;

/// How TLS is negotiated, named like libpq's `sslmode` so that DSNs copied from `psql` keep
/// their meaning.
///
/// `prefer` and `require` encrypt **without verifying** the server certificate, exactly as libpq
/// does when no root certificate is configured: that is what makes them work against managed
/// servers with private CAs and Debian's self-signed "snakeoil" certificate. With SCRAM
/// authentication the client still binds the login to the TLS channel (`tls-server-end-point`
/// channel binding), so a man in the middle cannot replay the password exchange. Use
/// `verify-full` to also check the certificate chain (Mozilla's roots from `webpki-roots`, plus
/// `sslrootcert` if given) and the host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP (or a Unix socket). The default for Unix sockets.
    Disable,
    /// TLS if the server offers it, plain otherwise. libpq's default, and ours.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not verified (libpq semantics).
    Require,
    /// TLS or fail, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value. `allow` and `verify-ca` are refused with a pointer to the
    /// mode that does what the user most likely wants, rather than silently weakened.
    pub fn parse(value: &str) -> Result<Self, PgError> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err(PgError::Config("sslmode=allow is not supported: use sslmode=prefer (TLS when offered) or sslmode=disable".into())),
            "verify-ca" => Err(PgError::Config("sslmode=verify-ca is not supported: use sslmode=verify-full (chain and host name) or sslmode=require".into())),
            other => Err(PgError::Config(format!("sslmode must be one of disable, prefer, require, verify-full (got {other:?})"))),
        }
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to open a connection. The password is a [`SecretString`]: `Debug` prints
/// `[REDACTED]`, and no error built from a `PgConfig` ever contains it (errors name the
/// connection by [`PgConfig::target`], which has no password in it).
#[derive(Clone)]
pub struct PgConfig {
    host: String,
    port: u16,
    dbname: String,
    user: String,
    password: Option<SecretString>,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
    connect_timeout: Duration,
    application_name: String,
    max_connections: usize,
}

/// The default `application_name`, visible in `pg_stat_activity` so a DBA can tell our sessions
/// apart.
pub const DEFAULT_APPLICATION_NAME: &str = "qbo_pg";
/// Default connect timeout: long enough for a cold managed server, short enough that a wrong
/// host fails a pipeline block in seconds, not minutes.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most sessions one [`crate::PgWriter`] opens at once: one per concurrent writer, as
/// many as the backfill's default concurrent windows. Sessions are opened only when that many
/// batches are in flight together, so a single sequential writer never opens a second one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;

impl PgConfig {
    /// A configuration from parts. `host` is a host name, an IP address, or an absolute path to
    /// the directory holding the server's Unix socket. No password: add one with
    /// [`PgConfig::with_password`].
    pub fn new(host: impl Into<String>, port: u16, dbname: impl Into<String>, user: impl Into<String>) -> Result<Self, PgError> {
        let config = Self {
            host: host.into(),
            port,
            dbname: dbname.into(),
            user: user.into(),
            password: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            application_name: DEFAULT_APPLICATION_NAME.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        };
        config.check()?;
        Ok(config)
    }

    /// Parses `postgresql://user:password@host:port/dbname?sslmode=...` (or `postgres://`).
    ///
    /// User, password and database name are percent-decoded, so a password containing `@`, `/`
    /// or `:` must be written `%40`, `%2F`, `%3A` (as libpq requires too). `[::1]` is an IPv6
    /// host. Query parameters: `sslmode`, `sslrootcert`, `connect_timeout` (seconds),
    /// `application_name`, and libpq's `host` (e.g. `?host=/var/run/postgresql` for a Unix
    /// socket), `port`, `user`, `password`, `dbname`. Anything else is an error, because a typo
    /// in `sslmode` silently ignored would downgrade security.
    ///
    /// Errors name the part that is wrong and never echo the password.
    pub fn from_dsn(dsn: &str) -> Result<Self, PgError> {
        let rest = dsn.strip_prefix("postgresql://").or_else(|| dsn.strip_prefix("postgres://")).ok_or_else(|| {
            PgError::Config(
                "DSN must start with postgresql:// or postgres:// \
                     (e.g. postgresql://user:password@host:5432/dbname)"
                    .into(),
            )
        })?;
        if rest.contains('#') {
            return Err(PgError::Config("DSN contains '#': percent-encode it as %23 (in a password too)".into()));
        }
        // The user info ends at the last '@'. A '/' or '?' before it means a password (or user)
        // with those characters unencoded: splitting there would put part of the password in
        // the host, the port or the path, and an error would echo it.
        if let Some(at) = rest.rfind('@') {
            if rest[..at].contains(['/', '?']) {
                return Err(PgError::Config(
                    "the DSN's user:password part contains '/' or '?' (or the database name or a \
                     parameter contains '@'): percent-encode them, '/' as %2F, '?' as %3F, '@' as %40"
                        .into(),
                ));
            }
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i + 1..]),
            None => (before_query, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };

        let mut user = None;
        let mut password = None;
        if let Some(info) = userinfo {
            let (u, p) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            if !u.is_empty() {
                user = Some(decode(u, "user name")?);
            }
            if let Some(p) = p {
                password = Some(decode(p, "password")?);
            }
        }

        let (mut host, mut port) = parse_hostport(hostport)?;
        let mut dbname = if path.is_empty() { None } else { Some(decode(path, "database name")?) };
        if dbname.as_deref().is_some_and(|d| d.contains('/')) {
            return Err(PgError::Config("database name in the DSN path contains '/': percent-encode it as %2F".into()));
        }

        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut connect_timeout = None;
        let mut application_name = None;
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| PgError::Config(format!("DSN query parameter {:?} has no '=value'", redact_key(pair))))?;
            let value_of = |what: &str| decode(value, what);
            match key {
                "sslmode" => sslmode = Some(SslMode::parse(&value_of("sslmode")?)?),
                "sslrootcert" => sslrootcert = Some(PathBuf::from(value_of("sslrootcert")?)),
                "connect_timeout" => {
                    let v = value_of("connect_timeout")?;
                    let secs: u64 = v.parse().map_err(|_| PgError::Config(format!("connect_timeout must be a whole number of seconds (got {v:?})")))?;
                    connect_timeout = Some(Duration::from_secs(secs.max(1)));
                }
                "application_name" => application_name = Some(value_of("application_name")?),
                "host" => host = Some(value_of("host")?),
                "port" => port = Some(parse_port(&value_of("port")?)?),
                "user" => user = Some(value_of("user")?),
                "password" => password = Some(value_of("password")?),
                "dbname" => dbname = Some(value_of("dbname")?),
                other => {
                    return Err(PgError::Config(format!(
                        "unknown DSN query parameter {:?}: supported are sslmode, sslrootcert, \
                         connect_timeout, application_name, host, port, user, password, dbname",
                        redact_key(other)
                    )))
                }
            }
        }

        let mut missing = Vec::new();
        if host.as_deref().is_none_or(str::is_empty) {
            missing.push("host (postgresql://user@HOST:5432/db)");
        }
        if user.as_deref().is_none_or(str::is_empty) {
            missing.push("user name (postgresql://USER@host/db)");
        }
        if dbname.as_deref().is_none_or(str::is_empty) {
            missing.push("database name (postgresql://user@host/DBNAME)");
        }
        if !missing.is_empty() {
            return Err(PgError::Config(format!("DSN has no {}", missing.join(", no "))));
        }

        let mut config = Self::new(host.unwrap_or_default(), port.unwrap_or(5432), dbname.unwrap_or_default(), user.unwrap_or_default())?;
        if let Some(p) = password {
            config = config.with_password(p);
        }
        let default_sslmode = if config.is_unix_socket() { SslMode::Disable } else { SslMode::default() };
        config.sslmode = sslmode.unwrap_or(default_sslmode);
        config.sslrootcert = sslrootcert;
        if let Some(t) = connect_timeout {
            config.connect_timeout = t;
        }
        if let Some(a) = application_name {
            config.application_name = a;
        }
        config.check()?;
        Ok(config)
    }

    /// Reads the conventional variables from the process environment: `POSTGRES_HOST`, `POSTGRES_PORT`
    /// (default 5432), `POSTGRES_DB`, `POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_SSLMODE`
    /// (default `prefer`). All missing required variables are named in one error, so a Mage
    /// user fixes their secrets in one go.
    pub fn from_env() -> Result<Self, PgError> {
        Self::from_env_with(|name| std::env::var(name).ok())
    }

    /// [`PgConfig::from_env`] with an explicit lookup, for callers whose settings do not live
    /// in the process environment (Mage secrets, tests).
    pub fn from_env_with(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PgError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let host = get("POSTGRES_HOST");
        let db = get("POSTGRES_DB");
        let user = get("POSTGRES_USER");
        let password = lookup("POSTGRES_PASSWORD");
        let mut missing = Vec::new();
        if host.is_none() {
            missing.push("POSTGRES_HOST");
        }
        if db.is_none() {
            missing.push("POSTGRES_DB");
        }
        if user.is_none() {
            missing.push("POSTGRES_USER");
        }
        if password.is_none() {
            missing.push("POSTGRES_PASSWORD");
        }
        if !missing.is_empty() {
            return Err(PgError::Config(format!(
                "missing environment variable{} {} (POSTGRES_PORT defaults to 5432, \
                 POSTGRES_SSLMODE to prefer)",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", ")
            )));
        }
        let port = match get("POSTGRES_PORT") {
            Some(p) => parse_port(&p).map_err(|_| PgError::Config(format!("POSTGRES_PORT must be a number between 1 and 65535 (got {p:?})")))?,
            None => 5432,
        };
        let mut config = Self::new(host.unwrap_or_default(), port, db.unwrap_or_default(), user.unwrap_or_default())?;
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            config = config.with_password(p);
        }
        if let Some(mode) = get("POSTGRES_SSLMODE") {
            config.sslmode = SslMode::parse(&mode).map_err(|e| match e {
                PgError::Config(m) => PgError::Config(format!("POSTGRES_SSLMODE: {m}")),
                other => other,
            })?;
        } else if config.is_unix_socket() {
            config.sslmode = SslMode::Disable;
        }
        Ok(config)
    }

    /// Sets the password (an empty one means "none": peer/trust authentication).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        let p: String = password.into();
        self.password = if p.is_empty() { None } else { Some(SecretString::from(p)) };
        self
    }

    /// Sets the TLS mode.
    pub fn with_sslmode(mut self, sslmode: SslMode) -> Self {
        self.sslmode = sslmode;
        self
    }

    /// Extra PEM root certificate(s) trusted by `verify-full` (a private CA, e.g. a cloud
    /// provider's bundle).
    pub fn with_sslrootcert(mut self, path: impl Into<PathBuf>) -> Self {
        self.sslrootcert = Some(path.into());
        self
    }

    /// Sets how long one connection attempt may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the most sessions a [`crate::PgWriter`] built from this configuration keeps open at
    /// once (at least 1; default [`DEFAULT_MAX_CONNECTIONS`]). Each concurrent
    /// [`crate::PgWriter::upsert`] needs a session of its own; with 1, concurrent upserts wait
    /// for each other.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Sets `application_name` (shown in `pg_stat_activity` and server logs).
    pub fn with_application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Same server, another login: what privilege checks and per-role tools need.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = user.into();
        self.with_password(password)
    }

    /// Same server and login, another database.
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = dbname.into();
        self
    }

    /// Host name, IP address or Unix socket directory.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// TCP port (also names the Unix socket file `.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }
    /// Login role.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// Whether a password is set (the password itself is only handed to the driver).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }
    /// TLS mode.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }
    /// Extra root certificates for `verify-full`.
    pub fn sslrootcert(&self) -> Option<&std::path::Path> {
        self.sslrootcert.as_deref()
    }
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// `application_name` sent at login.
    pub fn application_name(&self) -> &str {
        &self.application_name
    }
    /// Most sessions a writer keeps open at once (see [`PgConfig::with_max_connections`]).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// `user@host:port/dbname`: how errors and logs name this connection, password-free.
    pub fn target(&self) -> String {
        if self.host.contains(':') && !self.is_unix_socket() {
            format!("{}@[{}]:{}/{}", self.user, self.host, self.port, self.dbname)
        } else {
            format!("{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
        }
    }

    /// True when `host` is a Unix socket directory.
    pub fn is_unix_socket(&self) -> bool {
        self.host.starts_with('/')
    }

    pub(crate) fn password_bytes(&self) -> Option<&[u8]> {
        self.password.as_ref().map(|p| p.expose_secret().as_bytes())
    }

    fn check(&self) -> Result<(), PgError> {
        if self.host.is_empty() {
            return Err(PgError::Config("host is empty".into()));
        }
        if self.port == 0 {
            return Err(PgError::Config("port must be between 1 and 65535 (got 0)".into()));
        }
        if self.dbname.is_empty() {
            return Err(PgError::Config("database name is empty".into()));
        }
        if self.user.is_empty() {
            return Err(PgError::Config("user name is empty".into()));
        }
        for (what, v) in [("host", &self.host), ("database name", &self.dbname), ("user name", &self.user)] {
            if v.contains('\0') {
                return Err(PgError::Config(format!("{what} contains a NUL byte")));
            }
        }
        if self.sslrootcert.is_some() && self.sslmode != SslMode::VerifyFull {
            return Err(PgError::Config(format!("sslrootcert is only used with sslmode=verify-full (sslmode is {})", self.sslmode)));
        }
        if self.is_unix_socket() && matches!(self.sslmode, SslMode::Require | SslMode::VerifyFull) {
            return Err(PgError::Config(format!("sslmode={} cannot be used over a Unix socket ({}): use sslmode=disable", self.sslmode, self.host)));
        }
        Ok(())
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

fn decode(raw: &str, what: &str) -> Result<String, PgError> {
    // percent_decode passes a '%' not followed by two hex digits through unchanged; libpq
    // refuses it, and so do we: it usually is an unencoded '%' in a password.
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(PgError::Config(format!(
                    "{what} in the DSN has a '%' that is not followed by two hex digits: \
                     write a literal '%' as %25"
                )));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| PgError::Config(format!("{what} in the DSN is not valid UTF-8 after percent-decoding")))
}

fn parse_port(p: &str) -> Result<u16, PgError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(PgError::Config(format!("port must be a number between 1 and 65535 (got {p:?})"))),
    }
}

fn parse_hostport(hostport: &str) -> Result<(Option<String>, Option<u16>), PgError> {
    if hostport.is_empty() {
        return Ok((None, None));
    }
    if hostport.contains(',') {
        return Err(PgError::Config("DSN lists several hosts: qbo_pg connects to exactly one".into()));
    }
    if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| PgError::Config("DSN host starts with '[' but has no closing ']'".into()))?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':').ok_or_else(|| PgError::Config("unexpected text after ']' in the DSN host".into()))?)?),
        };
        return Ok((Some(h.to_string()), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((Some(decode(h, "host")?), Some(parse_port(p)?))),
        None => Ok((Some(decode(hostport, "host")?), None)),
    }
}

/// Query keys are echoed in errors; a stray `password=...` fragment mistaken for a key is cut
/// at its first '=' by the caller, but keep keys short and printable anyway.
fn redact_key(key: &str) -> String {
    let k: String = key.chars().take(40).collect();
    if k.to_ascii_lowercase().contains("pass") {
        "<password parameter>".into()
    } else {
        k
    }
}
