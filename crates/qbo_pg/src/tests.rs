//! Unit tests that need no server: DSN and environment parsing, identifiers, messages.

use std::collections::HashMap;

use crate::{MissingPrivilege, PgConfig, PgError, PrivilegeError, SslMode, TableRef};

fn config_err(dsn: &str) -> String {
    match PgConfig::from_dsn(dsn) {
        Err(PgError::Config(m)) => m,
        other => panic!("expected a Config error for {dsn:?}, got {other:?}"),
    }
}

#[test]
fn dsn_full_form() {
    let c =
        PgConfig::from_dsn("postgresql://qbo:s3cr%40t%2Fx@db.example.com:6543/ware%20house?sslmode=require&connect_timeout=3&application_name=etl").unwrap();
    assert_eq!(c.host(), "db.example.com");
    assert_eq!(c.port(), 6543);
    assert_eq!(c.user(), "qbo");
    assert_eq!(c.dbname(), "ware house");
    assert_eq!(c.password_bytes(), Some(&b"s3cr@t/x"[..]));
    assert_eq!(c.sslmode(), SslMode::Require);
    assert_eq!(c.connect_timeout().as_secs(), 3);
    assert_eq!(c.application_name(), "etl");
    assert_eq!(c.target(), "qbo@db.example.com:6543/ware house");
}

#[test]
fn dsn_defaults_ipv6_socket_and_unencoded_at() {
    let c = PgConfig::from_dsn("postgres://u@localhost/db").unwrap();
    assert_eq!((c.port(), c.sslmode(), c.has_password()), (5432, SslMode::Prefer, false));
    let c = PgConfig::from_dsn("postgresql://u:p@[::1]:5433/db").unwrap();
    assert_eq!((c.host(), c.port()), ("::1", 5433));
    assert_eq!(c.target(), "u@[::1]:5433/db");
    let c = PgConfig::from_dsn("postgresql://u@/db?host=/var/run/postgresql").unwrap();
    assert!(c.is_unix_socket());
    assert_eq!(c.sslmode(), SslMode::Disable, "sockets default to no TLS");
    // libpq takes the last '@' as the separator; so do we.
    let c = PgConfig::from_dsn("postgresql://u:p@ss@h/db").unwrap();
    assert_eq!((c.host(), c.password_bytes()), ("h", Some(&b"p@ss"[..])));
}

#[test]
fn malformed_dsns_name_the_problem_and_never_echo_the_password() {
    let secret = "Pa55w0rd-XYZ";
    let cases: [(String, &str); 14] = [
        // An unencoded '/' or '?' in the password once split the DSN there and echoed its first
        // half as a port ("port must be ... (got \"rtpass\")").
        (format!("postgresql://u:{secret}/{secret}@h/db"), "percent-encode them, '/' as %2F"),
        (format!("postgresql://u:{secret}?{secret}@h/db"), "'?' as %3F"),
        (format!("mysql://u:{secret}@h/db"), "must start with postgresql://"),
        (format!("postgresql://u:{secret}@h:notaport/db"), "port must be a number"),
        (format!("postgresql://u:{secret}@h:0/db"), "port must be a number"),
        (format!("postgresql://u:{secret}@h:70000/db"), "port must be a number"),
        (format!("postgresql://u:{secret}@/db"), "no host"),
        (format!("postgresql://:{secret}@h/db"), "no user name"),
        (format!("postgresql://u:{secret}@h"), "no database name"),
        (format!("postgresql://u:{secret}@h/db?sslmode=requir"), "sslmode must be one of"),
        (format!("postgresql://u:{secret}@h/db?sslmod=require"), "unknown DSN query parameter \"sslmod\""),
        (format!("postgresql://u:{secret}%@h/db"), "password in the DSN has a '%'"),
        (format!("postgresql://u:{secret}@h1,h2/db"), "several hosts"),
        (format!("postgresql://u:{secret}@h/db#frag"), "'#'"),
    ];
    for (dsn, want) in cases {
        let m = config_err(&dsn);
        assert!(m.contains(want), "{dsn}: {m:?} should contain {want:?}");
        assert!(!m.contains(secret), "{dsn}: message leaks the password: {m}");
    }
    let m = config_err("postgresql://u@h/db?password=hunter2&pass_word=x");
    assert!(!m.contains("hunter2"), "{m}");
    let m = config_err("postgresql://u@h/db?sslmode=verify-ca");
    assert!(m.contains("verify-full"), "{m}");
    let m = config_err("postgresql://u@h/db?sslrootcert=/x.pem");
    assert!(m.contains("only used with sslmode=verify-full"), "{m}");
}

#[test]
fn debug_redacts_the_password() {
    let c = PgConfig::from_dsn("postgresql://u:TopSecret1@h/db").unwrap();
    let d = format!("{c:?}");
    assert!(!d.contains("TopSecret1") && d.contains("[REDACTED]"), "{d}");
}

#[test]
fn from_env_names_every_missing_variable() {
    let env: HashMap<&str, &str> = HashMap::from([("POSTGRES_HOST", "h")]);
    let e = PgConfig::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap_err();
    let m = e.to_string();
    for name in ["POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"] {
        assert!(m.contains(name), "{m}");
    }
    assert!(!m.contains("POSTGRES_HOST,"), "{m}");

    let env: HashMap<&str, &str> =
        HashMap::from([("POSTGRES_HOST", "db"), ("POSTGRES_DB", "warehouse"), ("POSTGRES_USER", "etl"), ("POSTGRES_PASSWORD", "pw")]);
    let c = PgConfig::from_env_with(|k| env.get(k).map(|v| v.to_string())).unwrap();
    assert_eq!((c.host(), c.port(), c.dbname(), c.user()), ("db", 5432, "warehouse", "etl"));
    assert_eq!(c.sslmode(), SslMode::Prefer);

    let mut env2 = env.clone();
    env2.insert("POSTGRES_PORT", "five");
    let m = PgConfig::from_env_with(|k| env2.get(k).map(|v| v.to_string())).unwrap_err().to_string();
    assert!(m.contains("POSTGRES_PORT"), "{m}");
    let mut env3 = env.clone();
    env3.insert("POSTGRES_SSLMODE", "sometimes");
    let m = PgConfig::from_env_with(|k| env3.get(k).map(|v| v.to_string())).unwrap_err().to_string();
    assert!(m.contains("POSTGRES_SSLMODE"), "{m}");
}

#[test]
fn table_names_are_validated() {
    let ok = TableRef::new("raw", "qb_invoices").unwrap();
    assert_eq!(ok.quoted(), "\"raw\".\"qb_invoices\"");
    assert!(TableRef::new("_s", "t0_").is_ok());
    assert!(TableRef::new("raw", &"a".repeat(63)).is_ok());
    let bad = [
        ("raw; drop", "character ';'"),
        ("\"x\"", "character '\"'"),
        ("Raw", "uppercase"),
        ("", "empty"),
        ("ráw", "character 'á'"),
        ("1raw", "starts with a digit"),
        ("raw-x", "character '-'"),
        ("pg_raw", "reserved"),
    ];
    for (name, why) in bad {
        for (s, t) in [(name, "t"), ("raw", name)] {
            if s == "raw" && name == "pg_raw" {
                continue; // pg_ is reserved for schemas only
            }
            let e = TableRef::new(s, t).unwrap_err();
            assert!(matches!(e, PgError::Config(_)));
            let m = e.to_string();
            assert!(m.contains(why), "{s}.{t}: {m:?} should contain {why:?}");
        }
    }
    let m = TableRef::new("raw", &"a".repeat(64)).unwrap_err().to_string();
    assert!(m.contains("64 bytes") && m.contains("63"), "{m}");
    assert!(TableRef::new("raw", "t\u{0}").is_err());
}

#[test]
fn long_table_names_get_a_distinct_index_name_within_63_bytes() {
    let a = TableRef::new("raw", &format!("{}a", "x".repeat(62))).unwrap();
    let b = TableRef::new("raw", &format!("{}b", "x".repeat(62))).unwrap();
    let (ia, ib) = (a.last_updated_index_name(), b.last_updated_index_name());
    assert!(ia.len() <= 63 && ib.len() <= 63);
    assert_ne!(ia, ib);
    assert_eq!(TableRef::new("raw", "qb_invoices").unwrap().last_updated_index_name(), "qb_invoices_last_updated_utc_idx");
}

#[test]
fn privilege_messages_name_each_privilege_and_the_grant() {
    let e = PgError::Privilege(PrivilegeError {
        role: "etl".into(),
        missing: vec![
            MissingPrivilege::UsageOnSchema { schema: "raw".into() },
            MissingPrivilege::OnTable { schema: "raw".into(), table: "qb_invoices".into(), privileges: vec!["INSERT", "UPDATE"] },
        ],
        server_message: None,
    });
    let m = e.to_string();
    assert!(m.contains("USAGE on schema \"raw\""), "{m}");
    assert!(m.contains("INSERT/UPDATE on table \"raw\".\"qb_invoices\""), "{m}");
    assert!(m.contains("GRANT USAGE ON SCHEMA \"raw\" TO \"etl\";"), "{m}");
    assert!(m.contains("GRANT INSERT, UPDATE ON TABLE \"raw\".\"qb_invoices\" TO \"etl\";"), "{m}");
}

#[test]
fn missing_database_message_says_how_to_create_it() {
    let e = PgError::MissingDatabase { database: "warehouse".into(), user: "etl".into(), target: "etl@h:5432/warehouse".into() };
    let m = e.to_string();
    assert!(m.contains("CREATE DATABASE \"warehouse\" OWNER \"etl\""), "{m}");
}
