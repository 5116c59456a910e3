//! Integration tests against a real PostgreSQL (QBO_RS_TEST_DSN; see tests/common). Every test
//! works in its own random schema, dropped at the end, and checks results with plain SQL.

mod common;

use std::time::Duration;

use common::*;
use qbo_pg::{DeleteOutcome, Deletion, Freshness, MissingPrivilege, PgConfig, PgError, PgWriter, SslMode, SyncMark, TableRef, UpsertOutcome};

/// What every test starts with: a fresh schema of its own, dropped at the end. Returns from the
/// test where there is no DSN.
macro_rules! fixture_or_skip {
    ($test:expr) => {
        match test_dsn($test) {
            Some(dsn) => Fixture::new(&dsn).await,
            None => return,
        }
    };
}

/// What most tests start with: a fresh schema (`f`), the table `name` in it (`t`), created by
/// a writer (`w`) the test may go on using. Returns from the test where there is no DSN.
macro_rules! table_or_skip {
    ($test:expr, $table:expr) => {{
        let f = fixture_or_skip!($test);
        let w = writer(&f).await;
        let t = created_table(&f, &w, $table).await;
        (f, t, w)
    }};
}

/// A writer logged in as `role`, one of the roles scripts/pg-up.sh creates for the tests. A
/// server set up otherwise may lack it: CI=true fails, elsewhere the test says why and skips.
async fn provisioned_role_writer(test: &str, role: &str, config: &PgConfig) -> Option<PgWriter> {
    match PgWriter::connect(config).await {
        Ok(w) => Some(w),
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: role {role} cannot log in ({e}); scripts/pg-up.sh creates it");
            }
            eprintln!("SKIPPED {test}: role {role} cannot log in ({e}); run scripts/pg-up.sh");
            None
        }
    }
}

fn expect_privilege<T: std::fmt::Debug>(r: Result<T, PgError>) -> (String, Vec<MissingPrivilege>) {
    match r {
        Err(PgError::Privilege(p)) => (PgError::Privilege(p.clone()).to_string(), p.missing),
        other => panic!("expected Privilege, got {other:?}"),
    }
}

async fn writer(f: &Fixture) -> PgWriter {
    PgWriter::connect(&f.config).await.expect("connect as the test role")
}

/// The table `name` in the test's schema, created by `w`.
async fn created_table(f: &Fixture, w: &PgWriter, name: &str) -> TableRef {
    let t = f.table(name);
    w.ensure_table(&t).await.unwrap();
    t
}

/// The error connecting with `config` fails with, and its message (printed: what a user reads).
async fn connect_error(config: &PgConfig) -> (PgError, String) {
    let Err(e) = PgWriter::connect(config).await else { panic!("the connection was expected to fail") };
    let m = e.to_string();
    eprintln!("{m}");
    (e, m)
}

/// A writer whose sessions carry an application name of their own (returned), by which the
/// test finds them in pg_stat_activity.
async fn writer_named(f: &Fixture, prefix: &str) -> (String, PgWriter) {
    let app = format!("{prefix}_{}", f.schema);
    let w = PgWriter::connect(&f.config.clone().with_application_name(&app)).await.unwrap();
    (app, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_table_creates_schema_table_and_index_once() {
    let (f, t, w) = table_or_skip!("ensure_table_creates_schema_table_and_index_once", "qb_invoices");
    w.ensure_table(&t).await.unwrap(); // idempotent

    let cols = f
        .sql
        .query(
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = 'qb_invoices' ORDER BY ordinal_position",
            &[&f.schema],
        )
        .await
        .unwrap();
    let got: Vec<(String, String, String)> = cols.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let want = [
        ("id", "character varying", "NO"),
        ("payload", "jsonb", "NO"),
        ("ingested_at_utc", "timestamp with time zone", "NO"),
        ("extract_window_start_utc", "timestamp with time zone", "NO"),
        ("extract_window_end_utc", "timestamp with time zone", "NO"),
        ("page_number", "integer", "NO"),
        ("page_size", "integer", "NO"),
        ("last_updated_utc", "timestamp with time zone", "NO"),
        ("sync_token", "bigint", "NO"),
        ("realm_id", "character varying", "NO"),
        ("deleted_at_utc", "timestamp with time zone", "YES"), // NULL while the record is alive
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((name, ty, nullable), want) in got.iter().zip(want) {
        assert_eq!((name.as_str(), ty.as_str(), nullable.as_str()), want);
    }
    let pk = f.scalar(&format!("SELECT count(*) FROM pg_index i WHERE i.indrelid = '\"{}\".qb_invoices'::regclass AND i.indisprimary", f.schema)).await;
    assert_eq!(pk, 1);
    let idx = f.scalar(&format!("SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND indexname = 'qb_invoices_last_updated_utc_idx'", f.schema)).await;
    assert_eq!(idx, 1);
    assert_eq!(w.count(&t).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensure_table_from_several_sessions_all_succeed() {
    let f = fixture_or_skip!("concurrent_ensure_table_from_several_sessions_all_succeed");
    let t = f.table("qb_items");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (config, t) = (f.config.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let w = PgWriter::connect(&config).await?;
            w.ensure_table(&t).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("a lost creation race counts as 'already exists'");
    }
    assert_eq!(f.count("qb_items").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_then_rerun_is_unchanged_and_writes_nothing() {
    let (f, t, w) = table_or_skip!("insert_then_rerun_is_unchanged_and_writes_nothing", "qb_invoices");

    let rows = batch("inv-", 300, 100, 1, 1500);
    let first = w.upsert(&t, &raws(&rows)).await.unwrap();
    assert_eq!(first, UpsertOutcome { inserted: 300, ..Default::default() });
    assert_eq!(f.count("qb_invoices").await, 300);
    assert_eq!(w.count(&t).await.unwrap(), 300);

    // The payload is stored as the same JSON value.
    let stored: serde_json::Value = f
        .sql
        .query_one(&format!("SELECT payload::text FROM \"{}\".qb_invoices WHERE id = 'inv-7'", f.schema), &[])
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    let sent: serde_json::Value = serde_json::from_slice(&rows[7].payload).unwrap();
    assert_eq!(stored, sent);

    // Physical row versions (xmin, ctid) before and after an equal-version re-run: identical,
    // i.e. nothing was written (and ingested_at_utc, which the re-run sets to now, did not move).
    let snapshot = format!(
        "SELECT string_agg(id || ':' || xmin::text || ':' || ctid::text || ':' || ingested_at_utc::text, ',' ORDER BY id) FROM \"{}\".qb_invoices",
        f.schema
    );
    let before: String = f.sql.query_one(&snapshot, &[]).await.unwrap().get(0);
    for _ in 0..2 {
        let again = w.upsert(&t, &raws(&rows)).await.unwrap();
        assert_eq!(again, UpsertOutcome { unchanged: 300, ..Default::default() });
    }
    let after: String = f.sql.query_one(&snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "an equal-version re-run must not write");
    assert_eq!(f.count("qb_invoices").await, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_version_updates_and_older_never_overwrites() {
    let (f, t, w) = table_or_skip!("newer_version_updates_and_older_never_overwrites", "qb_customers");
    let q = |id: &str| {
        format!(
            "SELECT (payload->>'v')::bigint * 1000000 + sync_token * 1000 + extract(epoch from last_updated_utc)::bigint % 1000
             FROM \"{}\".qb_customers WHERE id = '{id}'",
            f.schema
        )
    };

    w.upsert(&t, &raws(&[OwnedRow::new("c1", 100, 1, 400), OwnedRow::new("c2", 100, 1, 400)])).await.unwrap();

    // Newer timestamp: updated. Same timestamp, higher token: updated.
    let out = w.upsert(&t, &raws(&[OwnedRow::new("c1", 200, 2, 400), OwnedRow::new("c2", 100, 7, 400)])).await.unwrap();
    assert_eq!(out, UpsertOutcome { updated: 2, ..Default::default() });
    assert_eq!(f.scalar(&q("c1")).await, 2_002_000 + (1_700_000_200 % 1000));
    assert_eq!(f.scalar(&q("c2")).await, 7_007_000 + (1_700_000_100 % 1000));

    // Older timestamp (even with a higher token), or same timestamp with a lower token: stale,
    // and the stored row is untouched.
    let out = w.upsert(&t, &raws(&[OwnedRow::new("c1", 150, 99, 400), OwnedRow::new("c2", 100, 3, 400), OwnedRow::new("c3", 100, 1, 400)])).await.unwrap();
    assert_eq!(out, UpsertOutcome { inserted: 1, stale: 2, ..Default::default() });
    assert_eq!(f.scalar(&q("c1")).await, 2_002_000 + (1_700_000_200 % 1000));
    assert_eq!(f.scalar(&q("c2")).await, 7_007_000 + (1_700_000_100 % 1000));
    assert_eq!(f.count("qb_customers").await, 3);

    // Mixed batch: one of each kind at once.
    let out = w
        .upsert(
            &t,
            &raws(&[
                OwnedRow::new("c1", 200, 2, 400), // equal: unchanged
                OwnedRow::new("c2", 50, 1, 400),  // older: stale
                OwnedRow::new("c3", 300, 2, 400), // newer: updated
                OwnedRow::new("c4", 1, 1, 400),   // new: inserted
            ]),
        )
        .await
        .unwrap();
    assert_eq!(out, UpsertOutcome { inserted: 1, updated: 1, unchanged: 1, stale: 1, duplicates_in_batch: 0 });
    assert_eq!(out.accounted(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_keep_the_row_and_the_newest_version_wins() {
    let (f, t, w) = table_or_skip!("deletions_keep_the_row_and_the_newest_version_wins", "qb_invoices");
    w.upsert(&t, &raws(&[OwnedRow::new("d1", 100, 1, 300), OwnedRow::new("d2", 100, 4, 300)])).await.unwrap();
    let gone = |id, secs| Deletion { id, deleted_at_utc: ts(secs) };
    let row = |id: &str| {
        format!(
            "SELECT (payload->>'v')::bigint * 1000000 + COALESCE(extract(epoch from deleted_at_utc)::bigint % 1000, 999) * 1000
                    + extract(epoch from last_updated_utc)::bigint % 1000
             FROM \"{}\".qb_invoices WHERE id = '{id}'",
            f.schema
        )
    };

    // d1 deleted after its version: marked, its payload kept. d2 "deleted" before its stored
    // version (edited since): kept alive. d9 was never stored: nothing to mark.
    let deletions = [gone("d1", 150), gone("d2", 50), gone("d9", 150)];
    let out = w.mark_deleted(&t, &deletions, ts(500)).await.unwrap();
    assert_eq!(out, DeleteOutcome { marked: 1, newer_kept: 1, not_held: 1, ..Default::default() });
    assert_eq!(f.scalar(&row("d1")).await, 1_000_000 + 150_000 + 150, "payload kept, deleted at 150, version 150");
    assert_eq!(f.scalar(&row("d2")).await, 4_000_000 + 999_000 + 100, "alive, untouched");
    assert_eq!(f.count("qb_invoices").await, 2, "no row for the unknown id");

    // Again: nothing changes.
    let out = w.mark_deleted(&t, &deletions, ts(600)).await.unwrap();
    assert_eq!(out, DeleteOutcome { already_marked: 1, newer_kept: 1, not_held: 1, ..Default::default() });
    let ingested: i64 = f.scalar(&format!("SELECT extract(epoch from ingested_at_utc)::bigint % 1000 FROM \"{}\".qb_invoices WHERE id = 'd1'", f.schema)).await;
    assert_eq!(ingested, 500, "a repeated deletion rewrites nothing");

    // An older live version cannot revive it; a newer one (edited or re-created after the
    // deletion) does, and clears the mark.
    let out = w.upsert(&t, &raws(&[OwnedRow::new("d1", 120, 9, 300)])).await.unwrap();
    assert_eq!(out, UpsertOutcome { stale: 1, ..Default::default() });
    let out = w.upsert(&t, &raws(&[OwnedRow::new("d1", 200, 2, 300)])).await.unwrap();
    assert_eq!(out, UpsertOutcome { updated: 1, ..Default::default() });
    assert_eq!(f.scalar(&row("d1")).await, 2_000_000 + 999_000 + 200, "alive again at its new version");
    assert_eq!(w.mark_deleted(&t, &[], ts(700)).await.unwrap(), DeleteOutcome::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_and_the_sync_state_follow_the_rows() {
    let f = fixture_or_skip!("freshness_and_the_sync_state_follow_the_rows");
    let (t, state) = (f.table("qb_invoices"), f.table("qb_sync_state"));
    let w = writer(&f).await;
    w.ensure_table(&t).await.unwrap();
    assert_eq!(w.freshness(&t, "realm-1").await.unwrap(), Freshness::default());
    assert_eq!(w.sync_mark(&state, &t, "realm-1").await.unwrap(), None, "no sync yet; the state table is created");

    w.upsert(&t, &raws(&[OwnedRow::new("a", 100, 1, 300), OwnedRow::new("b", 300, 1, 300), OwnedRow::new("c", 200, 1, 300)])).await.unwrap();
    w.mark_deleted(&t, &[Deletion { id: "b", deleted_at_utc: ts(400) }], ts(500)).await.unwrap();
    let held = w.freshness(&t, "realm-1").await.unwrap();
    assert_eq!((held.newest_updated, held.live), (Some(ts(400)), 2), "the deletion is the newest version; two rows alive");
    assert!(held.oldest_live_ingested.is_some());
    assert_eq!(w.freshness(&t, "another-realm").await.unwrap(), Freshness::default());
    let mut live = w.live_ids(&t, "realm-1").await.unwrap();
    live.sort();
    assert_eq!(live, ["a", "c"]);

    let mark = SyncMark { read_through: ts(600), swept_through: ts(650) };
    w.save_sync_mark(&state, &t, "realm-1", mark).await.unwrap();
    let later = SyncMark { read_through: ts(700), swept_through: ts(700) };
    w.save_sync_mark(&state, &t, "realm-1", later).await.unwrap();
    assert_eq!(w.sync_mark(&state, &t, "realm-1").await.unwrap(), Some(later), "one row per realm and table, replaced");
    assert_eq!(w.sync_mark(&state, &f.table("qb_items"), "realm-1").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_deletions_gains_the_column_with_every_row_alive() {
    let f = fixture_or_skip!("a_table_from_before_deletions_gains_the_column_with_every_row_alive");
    let t = f.table("qb_items");
    // The layout tables had before deletions were recorded, with a row in it.
    f.sql
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\";
             CREATE TABLE \"{s}\".qb_items (id VARCHAR PRIMARY KEY, payload JSONB NOT NULL,
               ingested_at_utc TIMESTAMPTZ NOT NULL, extract_window_start_utc TIMESTAMPTZ NOT NULL,
               extract_window_end_utc TIMESTAMPTZ NOT NULL, page_number INTEGER NOT NULL,
               page_size INTEGER NOT NULL, last_updated_utc TIMESTAMPTZ NOT NULL,
               sync_token BIGINT NOT NULL, realm_id VARCHAR NOT NULL);
             INSERT INTO \"{s}\".qb_items VALUES ('i1', '{{}}', now(), now(), now(), 1, 1000, now(), 0, 'r');",
            s = f.schema
        ))
        .await
        .unwrap();
    let w = writer(&f).await;
    w.ensure_table(&t).await.unwrap();
    let alive = f.scalar(&format!("SELECT count(*) FROM \"{}\".qb_items WHERE deleted_at_utc IS NULL", f.schema)).await;
    assert_eq!(alive, 1);
    let out = w.mark_deleted(&t, &[Deletion { id: "i1", deleted_at_utc: chrono::Utc::now() + chrono::Duration::hours(1) }], chrono::Utc::now()).await.unwrap();
    assert_eq!(out.marked, 1);
    w.ensure_table(&t).await.unwrap(); // a second time: nothing to add
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_in_one_batch_keep_the_newest() {
    let (f, t, w) = table_or_skip!("duplicate_ids_in_one_batch_keep_the_newest", "qb_items");
    let rows = [
        OwnedRow::new("a", 10, 1, 300),
        OwnedRow::new("b", 10, 1, 300),
        OwnedRow::new("a", 30, 3, 300),
        OwnedRow::new("a", 20, 2, 300),
        OwnedRow::new("b", 10, 1, 300),
        OwnedRow::new("c", 5, 5, 300),
    ];
    let out = w.upsert(&t, &raws(&rows)).await.unwrap();
    assert_eq!(out, UpsertOutcome { inserted: 3, duplicates_in_batch: 3, ..Default::default() });
    assert_eq!(f.count("qb_items").await, 3);
    let v = f.scalar(&format!("SELECT (payload->>'v')::bigint FROM \"{}\".qb_items WHERE id = 'a'", f.schema)).await;
    assert_eq!(v, 3);

    // A batch whose duplicates straddle the stored version.
    let rows = [OwnedRow::new("a", 20, 2, 300), OwnedRow::new("a", 40, 4, 300), OwnedRow::new("a", 25, 9, 300)];
    let out = w.upsert(&t, &raws(&rows)).await.unwrap();
    assert_eq!(out, UpsertOutcome { updated: 1, duplicates_in_batch: 2, ..Default::default() });
    let v = f.scalar(&format!("SELECT (payload->>'v')::bigint FROM \"{}\".qb_items WHERE id = 'a'", f.schema)).await;
    assert_eq!(v, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_rerun_in_any_order_converge_to_the_newest() {
    let (f, t, w) = table_or_skip!("batches_rerun_in_any_order_converge_to_the_newest", "qb_invoices");
    // Three "windows" fetched at different times: each sees some ids at some version.
    let v1 = batch("x", 200, 10, 1, 300);
    let v2: Vec<OwnedRow> = (0..200).step_by(2).map(|i| OwnedRow::new(format!("x{i}"), 20, 2, 300)).collect();
    let v3: Vec<OwnedRow> = (0..200).step_by(3).map(|i| OwnedRow::new(format!("x{i}"), 30, 3, 300)).collect();
    for order in [[&v3, &v1, &v2], [&v2, &v3, &v1], [&v1, &v2, &v3]] {
        for b in order {
            w.upsert(&t, &raws(b)).await.unwrap();
        }
        let wrong = f
            .scalar(&format!(
                "SELECT count(*) FROM \"{}\".qb_invoices WHERE sync_token <> CASE
                   WHEN substr(id, 2)::int % 3 = 0 THEN 3 WHEN substr(id, 2)::int % 2 = 0 THEN 2 ELSE 1 END",
                f.schema
            ))
            .await;
        assert_eq!(wrong, 0);
        assert_eq!(f.count("qb_invoices").await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_the_same_ids_keep_the_newest_without_deadlock() {
    let (f, t, _writer) = table_or_skip!("concurrent_writers_of_the_same_ids_keep_the_newest_without_deadlock", "qb_invoices");
    let mut tasks = Vec::new();
    for worker in 0..4i64 {
        let (config, t) = (f.config.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let w = PgWriter::connect(&config).await.unwrap();
            for round in 0..5i64 {
                // Each worker writes every id at a version that depends on worker and round,
                // ids in a worker-specific order.
                let version = 1 + (worker * 7 + round * 3) % 20;
                let mut rows = batch("k", 400, version, version, 200);
                if worker % 2 == 1 {
                    rows.reverse();
                }
                w.upsert(&t, &raws(&rows)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let max_version = (0..4i64).flat_map(|w| (0..5i64).map(move |r| 1 + (w * 7 + r * 3) % 20)).max().unwrap();
    let wrong = f.scalar(&format!("SELECT count(*) FROM \"{}\".qb_invoices WHERE sync_token <> {max_version}", f.schema)).await;
    assert_eq!(wrong, 0);
    assert_eq!(f.count("qb_invoices").await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_rejected_and_reserved_words_work() {
    let f = fixture_or_skip!("hostile_names_are_rejected_and_reserved_words_work");
    let long = "a".repeat(64);
    for name in ["raw; drop", "\"x\"", "Raw", long.as_str(), "", "ráw", "raw\u{0}", "x'y", "a.b", " raw"] {
        for (s, tname) in [(name, "qb_invoices"), ("raw", name)] {
            match TableRef::new(s, tname) {
                Err(PgError::Config(m)) => assert!(m.contains("name"), "{m}"),
                other => panic!("{s:?}.{tname:?} must be refused, got {other:?}"),
            }
        }
    }
    // Quoting makes reserved words harmless.
    let t = f.table("select");
    let w = writer(&f).await;
    w.ensure_table(&t).await.unwrap();
    w.upsert(&t, &raws(&batch("r", 3, 1, 1, 100))).await.unwrap();
    assert_eq!(f.count("select").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let f = fixture_or_skip!("wrong_password_is_an_auth_error_without_the_password"); // proves the server answers
    let user = f.config.user().to_string();
    let bad = "Wr0ng-Pa55word-zz";
    let config = PgConfig::from_dsn(&dsn_with_user(&f.dsn, &user, bad)).unwrap();
    let (e, m) = connect_error(&config).await;
    assert!(matches!(e, PgError::Auth { .. }), "expected Auth, got {e:?}");
    assert!(m.contains("password authentication failed"), "{m}");
    assert!(m.contains("Check the user and password"), "{m}");
    assert!(!m.contains(bad), "{m}");
    assert!(!format!("{e:?}").contains(bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_database_says_which_and_how_to_create_it() {
    let f = fixture_or_skip!("missing_database_says_which_and_how_to_create_it");
    let config = PgConfig::from_dsn(&dsn_with_db(&f.dsn, "qbo_pg_no_such_db")).unwrap();
    let (e, m) = connect_error(&config).await;
    assert!(matches!(e, PgError::MissingDatabase { .. }), "expected MissingDatabase, got {e:?}");
    assert!(m.contains("\"qbo_pg_no_such_db\" does not exist"), "{m}");
    assert!(m.contains("CREATE DATABASE \"qbo_pg_no_such_db\" OWNER"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_connect_error() {
    // Needs no server: runs everywhere.
    // Port 1 on loopback: nothing listens there.
    let config = PgConfig::from_dsn("postgresql://u:pw@127.0.0.1:1/db?connect_timeout=2").unwrap();
    let (e, m) = connect_error(&config).await;
    assert!(matches!(e, PgError::Connect { .. }), "expected Connect, got {e:?}");
    assert!(e.is_transient());
    assert!(m.contains("127.0.0.1:1") && m.contains("running"), "{m}");
    assert!(!m.contains("pw"), "{m}");
}

/// Whether the session named `app` is encrypted, from the server's side.
async fn session_uses_tls(f: &Fixture, app: &str) -> bool {
    f.sql.query_one("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1", &[&app]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_do_what_libpq_does() {
    let f = fixture_or_skip!("sslmodes_do_what_libpq_does");
    let server_ssl: String = f.sql.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let app = |mode: &str| format!("qbo_pg_tls_{mode}_{}", &f.schema[10..]);
    let config = |mode: SslMode| f.config.clone().with_sslmode(mode).with_application_name(app(mode.as_str()));

    let disabled = PgWriter::connect(&config(SslMode::Disable)).await.unwrap();
    assert!(!session_uses_tls(&f, &app("disable")).await);
    let prefer = PgWriter::connect(&config(SslMode::Prefer)).await.expect("prefer works with or without TLS");
    assert_eq!(session_uses_tls(&f, &app("prefer")).await, server_ssl == "on");

    if server_ssl == "off" {
        let (e, m) = connect_error(&config(SslMode::Require)).await;
        assert!(matches!(e, PgError::Connect { .. }), "require against a server without TLS: {e:?}");
        assert!(m.contains("TLS") && m.contains("sslmode=require"), "{m}");
        eprintln!("server has ssl=off: require/verify-full against a TLS server not exercised");
        return;
    }

    // require: encrypted, certificate not verified (the test server's is self-signed).
    let required = PgWriter::connect(&config(SslMode::Require)).await.expect("require: encrypt, no verification");
    assert!(session_uses_tls(&f, &app("require")).await);
    // An upsert over TLS is the same upsert.
    let t = f.table("over_tls");
    required.ensure_table(&t).await.unwrap();
    assert_eq!(required.upsert(&t, &raws(&batch("s", 20, 1, 1, 1500))).await.unwrap().inserted, 20);

    // verify-full without a root that signs the server's certificate: refused.
    match PgWriter::connect(&config(SslMode::VerifyFull)).await {
        Err(e @ PgError::Connect { .. }) => {
            let m = e.to_string();
            eprintln!("{m}");
            assert!(m.to_lowercase().contains("certificate"), "{m}");
        }
        Ok(_) => eprintln!("verify-full accepted the server certificate (signed by a public CA?)"),
        other => panic!("verify-full: {other:?}"),
    }
    // verify-full with the CA that signed the server's certificate (pg-up puts ca.crt beside
    // it): accepted, the certificate names 127.0.0.1.
    let cert_file: String = f.sql.query_one("SHOW ssl_cert_file", &[]).await.unwrap().get(0);
    let ca = std::path::Path::new(&cert_file).with_file_name("ca.crt");
    if !(ca.is_absolute() && ca.exists() && f.config.host() == "127.0.0.1") {
        eprintln!("no ca.crt beside {cert_file}: verify-full with a root certificate not exercised");
    } else {
        let verified = config(SslMode::VerifyFull).with_sslrootcert(&ca);
        let verified = PgWriter::connect(&verified).await.expect("verify-full with the server's CA as root");
        assert!(session_uses_tls(&f, &app("verify-full")).await);
        drop(verified);
        // The certificate names 127.0.0.1 only: reaching the same server as "localhost" must
        // fail the host-name check.
        let other_host = PgConfig::new("localhost", f.config.port(), f.config.dbname(), f.config.user())
            .unwrap()
            .with_password(dsn_password(&f.dsn))
            .with_sslmode(SslMode::VerifyFull)
            .with_sslrootcert(&ca);
        match PgWriter::connect(&other_host).await {
            Err(PgError::Connect { reason, .. }) => {
                eprintln!("localhost: {reason}");
                assert!(reason.to_lowercase().contains("certificate"), "{reason}");
            }
            other => panic!("verify-full must check the host name: {other:?}"),
        }
        // A root file that is not PEM is a configuration error, before any connection.
        let junk = std::env::temp_dir().join(format!("qbo_pg_not_pem_{}", f.schema));
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad = config(SslMode::VerifyFull).with_sslrootcert(&junk);
        assert!(matches!(PgWriter::connect(&bad).await, Err(PgError::Config(_))));
        let _ = std::fs::remove_file(junk);
    }
    drop((disabled, prefer, required));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_without_privileges_is_told_which_ones_it_lacks() {
    let f = fixture_or_skip!("role_without_privileges_is_told_which_ones_it_lacks");
    let t = f.table("qb_invoices");
    let owner = writer(&f).await;
    owner.ensure_table(&t).await.unwrap();
    owner.upsert(&t, &raws(&batch("p", 5, 1, 1, 100))).await.unwrap();

    let noperm_dsn = std::env::var("QBO_RS_TEST_NOPERM_DSN").unwrap_or_else(|_| dsn_with_user(&f.dsn, "qbo_noperm", "qbo_noperm"));
    let config = PgConfig::from_dsn(&noperm_dsn).unwrap();
    let Some(noperm) = provisioned_role_writer("role_without_privileges_is_told_which_ones_it_lacks", "qbo_noperm", &config).await else {
        return;
    };
    // 1. Nothing granted: USAGE on the schema and the table privileges are named.
    let (m, missing) = expect_privilege(noperm.ensure_table(&t).await);
    eprintln!("no privileges: {m}");
    assert!(m.contains(&format!("USAGE on schema \"{}\"", f.schema)), "{m}");
    assert!(m.contains("INSERT") && m.contains("UPDATE") && m.contains("SELECT"), "{m}");
    assert!(m.contains(&format!("GRANT USAGE ON SCHEMA \"{}\" TO \"qbo_noperm\"", f.schema)), "{m}");
    assert!(missing.contains(&MissingPrivilege::UsageOnSchema { schema: f.schema.clone() }));
    // The upsert path reports the same, from the server's own 42501.
    let (m, _) = expect_privilege(noperm.upsert(&t, &raws(&batch("p", 2, 9, 9, 100))).await);
    eprintln!("upsert without privileges: {m}");
    assert!(m.contains("USAGE on schema") && m.contains("server: permission denied"), "{m}");
    let (m, _) = expect_privilege(noperm.count(&t).await);
    assert!(m.contains("USAGE on schema"), "{m}");

    // 2. USAGE granted: now only the table privileges are missing.
    f.sql.batch_execute(&format!("GRANT USAGE ON SCHEMA \"{}\" TO qbo_noperm", f.schema)).await.unwrap();
    let (m, missing) = expect_privilege(noperm.ensure_table(&t).await);
    eprintln!("USAGE granted: {m}");
    assert!(!m.contains("USAGE on schema"), "{m}");
    assert!(m.contains(&format!("SELECT/INSERT/UPDATE on table \"{}\".\"qb_invoices\"", f.schema)), "{m}");
    assert_eq!(missing.len(), 1);
    f.sql.batch_execute(&format!("GRANT SELECT, INSERT ON \"{}\".qb_invoices TO qbo_noperm", f.schema)).await.unwrap();
    let (m, _) = expect_privilege(noperm.ensure_table(&t).await);
    assert!(m.contains("lacks UPDATE on table"), "{m}");
    let (m, _) = expect_privilege(noperm.upsert(&t, &raws(&batch("p", 2, 9, 9, 100))).await);
    assert!(m.contains("UPDATE on table"), "{m}");
    assert_eq!(f.count("qb_invoices").await, 5, "a refused batch writes nothing");

    // 3. Everything granted: works, and the writer never needed CREATE (the table existed).
    f.sql.batch_execute(&format!("GRANT UPDATE ON \"{}\".qb_invoices TO qbo_noperm", f.schema)).await.unwrap();
    noperm.ensure_table(&t).await.unwrap();
    let out = noperm.upsert(&t, &raws(&batch("p", 7, 9, 9, 100))).await.unwrap();
    assert_eq!((out.inserted, out.updated), (2, 5));

    // 4. A schema that does not exist: creating it needs CREATE on the database.
    let other = TableRef::new(&format!("{}_new", f.schema), "t").unwrap();
    let (m, missing) = expect_privilege(noperm.ensure_table(&other).await);
    eprintln!("missing schema: {m}");
    assert!(m.contains("CREATE on database"), "{m}");
    assert!(matches!(missing[0], MissingPrivilege::CreateOnDatabase { .. }));
    // 5. Schema exists, table does not, no CREATE on the schema.
    let t2 = f.table("qb_other");
    let (m, _) = expect_privilege(noperm.ensure_table(&t2).await);
    assert!(m.contains(&format!("CREATE on schema \"{}\"", f.schema)), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_another_layout_is_refused_with_what_differs() {
    let f = fixture_or_skip!("a_table_with_another_layout_is_refused_with_what_differs");
    f.sql
        .batch_execute(&format!(
            "CREATE SCHEMA \"{s}\";
             CREATE TABLE \"{s}\".legacy (id VARCHAR PRIMARY KEY, payload JSON, ingested_at_utc TIMESTAMP,
               extract_window_start_utc TIMESTAMPTZ, extract_window_end_utc TIMESTAMPTZ, page_number INTEGER);
             CREATE TABLE \"{s}\".nokey (id VARCHAR, payload JSONB, ingested_at_utc TIMESTAMPTZ,
               extract_window_start_utc TIMESTAMPTZ, extract_window_end_utc TIMESTAMPTZ, page_number INTEGER,
               page_size INTEGER, last_updated_utc TIMESTAMPTZ, sync_token BIGINT, realm_id TEXT);",
            s = f.schema
        ))
        .await
        .unwrap();
    let w = writer(&f).await;
    match w.ensure_table(&f.table("legacy")).await {
        Err(e @ PgError::TableShape { .. }) => {
            eprintln!("{e}");
            let PgError::TableShape { problems, .. } = e else { unreachable!() };
            let all = problems.join("\n");
            for needle in [
                "column payload is json, expected jsonb",
                "column ingested_at_utc is timestamp without time zone",
                "column last_updated_utc is missing",
                "column sync_token is missing",
                "column realm_id is missing",
                "column page_size is missing",
            ] {
                assert!(all.contains(needle), "{needle:?} not in {all}");
            }
        }
        other => panic!("expected TableShape, got {other:?}"),
    }
    match w.ensure_table(&f.table("nokey")).await {
        Err(PgError::TableShape { problems, .. }) => {
            assert!(problems.iter().any(|p| p.contains("unique index on id")), "{problems:?}")
        }
        other => panic!("expected TableShape, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_fails_the_whole_batch_and_names_the_record() {
    let (f, t, w) = table_or_skip!("invalid_json_fails_the_whole_batch_and_names_the_record", "qb_invoices");
    let mut rows = batch("j", 50, 1, 1, 200);
    rows[31].payload = b"{\"Id\": \"j31\", \"broken\": }".to_vec();
    match w.upsert(&t, &raws(&rows)).await {
        Err(e @ PgError::Query { .. }) => {
            let m = e.to_string();
            eprintln!("{m}");
            assert!(m.contains("(record id \"j31\")") && m.contains("rolled back"), "{m}");
            assert_eq!(e.sqlstate(), Some("22P02"));
        }
        other => panic!("expected Query, got {other:?}"),
    }
    assert_eq!(f.count("qb_invoices").await, 0, "no partial batch");
    // Invalid UTF-8 is refused at the COPY, also naming the record.
    rows[31].payload = b"{\"Id\": \"j31\", \"bad\": \"\xff\xfe\"}".to_vec();
    let m = w.upsert(&t, &raws(&rows)).await.unwrap_err().to_string();
    eprintln!("{m}");
    assert!(m.contains("(record id \"j31\")") && m.contains("UTF8"), "{m}");
    assert_eq!(f.count("qb_invoices").await, 0, "no partial batch");
    // Not a JSON object at all: refused before the server sees it.
    rows[31].payload = b"[1,2]".to_vec();
    assert!(matches!(w.upsert(&t, &raws(&rows)).await, Err(PgError::Config(_))));
    // The session is still usable.
    rows[31] = OwnedRow::new("j31", 1, 1, 200);
    assert_eq!(w.upsert(&t, &raws(&rows)).await.unwrap().inserted, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_session_is_reopened_on_the_next_call() {
    let f = fixture_or_skip!("a_killed_session_is_reopened_on_the_next_call");
    let (app, w) = writer_named(&f, "qbo_pg_reopen").await;
    let t = created_table(&f, &w, "qb_items").await;
    let killed = f.scalar(&format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{app}'")).await;
    assert_eq!(killed, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = w.upsert(&t, &raws(&batch("z", 10, 1, 1, 100))).await.unwrap();
    assert_eq!(out.inserted, 10);
    assert_eq!(w.count(&t).await.unwrap(), 10);
}

// ---------------------------------------------------------------------------------------------
// SIGKILL mid-batch: a child process (this test binary re-executed with QBO_PG_KILL_CHILD set)
// upserts one big batch; the parent watches pg_stat_activity and SIGKILLs it while its session
// is in the COPY, then (second round) in the INSERT. The table must hold all or none of the
// batch, and re-running the batch must converge.

const KILL_ROWS: usize = 40_000;

/// Child side. Does nothing unless spawned by `sigkill_mid_batch_leaves_all_or_nothing`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child_process() {
    let Ok(schema) = std::env::var("QBO_PG_KILL_CHILD_SCHEMA") else { return };
    let dsn = std::env::var("QBO_RS_TEST_DSN").unwrap();
    let app = std::env::var("QBO_PG_KILL_CHILD_APP").unwrap();
    let table = std::env::var("QBO_PG_KILL_CHILD_TABLE").unwrap();
    let config = PgConfig::from_dsn(&dsn).unwrap().with_application_name(app);
    let w = PgWriter::connect(&config).await.unwrap();
    let rows = batch("k", KILL_ROWS, 20, 2, 2000);
    println!("CHILD READY");
    let t = TableRef::new(&schema, &table).unwrap();
    w.upsert(&t, &raws(&rows)).await.unwrap();
    println!("CHILD DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_leaves_all_or_nothing() {
    if std::env::var("QBO_PG_KILL_CHILD_SCHEMA").is_ok() {
        return; // we are the child of another run of this test
    }
    let f = fixture_or_skip!("sigkill_mid_batch_leaves_all_or_nothing");
    let w = writer(&f).await;
    for phase in ["COPY", "INSERT"] {
        let table = format!("killed_in_{}", phase.to_lowercase());
        let t = f.table(&table);
        w.ensure_table(&t).await.unwrap();
        // Half the ids already stored at version 1; the child writes all ids at version 2.
        let seeded = batch("k", KILL_ROWS / 2, 10, 1, 2000);
        w.upsert(&t, &raws(&seeded)).await.unwrap();

        let app = format!("qbo_pg_kill_{}_{}", phase.to_lowercase(), &f.schema[10..]);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["sigkill_child_process", "--exact", "--nocapture", "--test-threads=1"])
            .env("QBO_PG_KILL_CHILD_SCHEMA", &f.schema)
            .env("QBO_PG_KILL_CHILD_APP", &app)
            .env("QBO_PG_KILL_CHILD_TABLE", &table)
            .env("QBO_RS_TEST_DSN", &f.dsn)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();

        // Watch the child's session; SIGKILL it the moment it is in the phase we want.
        let watch = "SELECT query FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'";
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut seen = false;
        while std::time::Instant::now() < deadline {
            let rows = f.sql.query(watch, &[&app]).await.unwrap();
            if rows.iter().any(|r| {
                let q: String = r.get(0);
                if phase == "COPY" {
                    q.starts_with("COPY")
                } else {
                    q.contains("INSERT INTO")
                }
            }) {
                child.kill().unwrap(); // SIGKILL
                seen = true;
                break;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited ({status}) before its session was seen in {phase}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(seen, "never saw the child's session in {phase}");
        child.wait().unwrap();

        // The server notices the dead client and rolls back; wait for its backend to go.
        let gone = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
        for _ in 0..3000 {
            let n: i64 = f.sql.query_one(gone, &[&app]).await.unwrap().get(0);
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n: i64 = f.sql.query_one(gone, &[&app]).await.unwrap().get(0);
        assert_eq!(n, 0, "the killed child's backend is still there");

        let q = format!(
            "SELECT count(*), count(*) FILTER (WHERE sync_token = 1), count(*) FILTER (WHERE sync_token = 2)
             FROM \"{}\".\"{table}\"",
            f.schema
        );
        let row = f.sql.query_one(&q, &[]).await.unwrap();
        let (total, v1, v2): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let half = (KILL_ROWS / 2) as i64;
        let none = total == half && v1 == half && v2 == 0;
        let all = total == KILL_ROWS as i64 && v2 == KILL_ROWS as i64;
        assert!(none || all, "killed in {phase}: partial batch visible: total={total} v1={v1} v2={v2}");
        eprintln!("killed in {phase}: table holds {} of the batch", if all { "all" } else { "none" });

        // Re-running the batch converges; a second re-run changes nothing.
        let rows = batch("k", KILL_ROWS, 20, 2, 2000);
        let out = w.upsert(&t, &raws(&rows)).await.unwrap();
        assert_eq!(out.accounted(), KILL_ROWS as u64);
        let row = f.sql.query_one(&q, &[]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(2)), (KILL_ROWS as i64, KILL_ROWS as i64));
        let out = w.upsert(&t, &raws(&rows)).await.unwrap();
        assert_eq!(out.unchanged, KILL_ROWS as u64);
        f.sql.batch_execute(&format!("DROP TABLE \"{}\".\"{table}\"", f.schema)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_batch_probes_the_primary_key_instead_of_scanning_the_table() {
    let (f, t, _writer) = table_or_skip!("apply_batch_probes_the_primary_key_instead_of_scanning_the_table", "qb_invoices");
    // A big stored table and an un-analyzed staging table: the situation in which a plain
    // NOT EXISTS / JOIN was planned as a hash join over a full scan of the target.
    f.sql
        .batch_execute(&format!(
            "INSERT INTO {t} SELECT i::text, jsonb_build_object('x', i), now(), now(), now(), 1, 1, now(), 1, 'r'
             FROM generate_series(1, 50000) i; ANALYZE {t};",
            t = t.quoted()
        ))
        .await
        .unwrap();
    f.sql.batch_execute("BEGIN").await.unwrap();
    f.sql.batch_execute(&qbo_pg::sql::begin_batch(false)).await.unwrap();
    f.sql
        .batch_execute(&format!(
            "INSERT INTO pg_temp.{} SELECT i::text, '{{}}', now(), 2, 'r', now(), now(), now(), 1, 1
             FROM generate_series(1, 5000) i",
            qbo_pg::sql::STAGING_TABLE
        ))
        .await
        .unwrap();
    for statement in [qbo_pg::sql::apply_batch(&t), qbo_pg::sql::count_stale(&t)] {
        let plan: Vec<String> = f.sql.query(&format!("EXPLAIN {statement}"), &[]).await.unwrap().iter().map(|r| r.get::<_, String>(0)).collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on qb_invoices"), "full scan of the target:\n{plan}");
        assert!(plan.contains("qb_invoices_pkey"), "no primary-key probe:\n{plan}");
    }
    f.sql.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upsert_writes_nothing_and_the_writer_recovers() {
    let (f, t, w) = table_or_skip!("a_cancelled_upsert_writes_nothing_and_the_writer_recovers", "qb_invoices");
    let big = batch("big", 20_000, 1, 1, 2000);
    // 40 MB cannot be copied and committed in 30 ms: the future is dropped mid-batch.
    let cancelled = tokio::time::timeout(Duration::from_millis(30), w.upsert(&t, &raws(&big))).await;
    assert!(cancelled.is_err(), "the upsert finished within 30 ms?");
    // The next call reopens the session and works.
    let out = w.upsert(&t, &raws(&batch("small", 10, 1, 1, 200))).await.unwrap();
    assert_eq!(out.inserted, 10);
    assert_eq!(f.count("qb_invoices").await, 10, "nothing of the cancelled batch is visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_into_a_missing_table_says_to_call_ensure_table() {
    let f = fixture_or_skip!("upsert_into_a_missing_table_says_to_call_ensure_table");
    f.sql.batch_execute(&format!("CREATE SCHEMA \"{}\"", f.schema)).await.unwrap();
    let w = writer(&f).await;
    match w.upsert(&f.table("nope"), &raws(&batch("n", 3, 1, 1, 100))).await {
        Err(e @ PgError::Query { .. }) => {
            assert_eq!(e.sqlstate(), Some("42P01"));
            assert!(e.to_string().contains("call ensure_table first"), "{e}");
        }
        other => panic!("expected Query, got {other:?}"),
    }
    // An empty batch touches nothing, not even the (missing) table.
    assert_eq!(w.upsert(&f.table("nope"), &[]).await.unwrap(), UpsertOutcome::default());
}

/// Sessions of this writer that the server sees (by application_name).
async fn server_sessions(f: &Fixture, app: &str) -> i64 {
    f.scalar(&format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_writer_upserts_overlapping_batches_concurrently_on_its_pool_without_deadlock() {
    let f = fixture_or_skip!("one_writer_upserts_overlapping_batches_concurrently_on_its_pool_without_deadlock");
    let app = format!("qbo_pg_pool_{}", f.schema);
    let config = f.config.clone().with_application_name(&app).with_max_connections(3);
    let w = PgWriter::connect(&config).await.unwrap();
    let t = f.table("qb_invoices");
    w.ensure_table(&t).await.unwrap();
    // Eight "windows" share one writer, as the backfill's concurrent windows share the sink.
    // Their batches overlap (every id is in every batch, as when records edited during a read
    // show up in two windows), at versions that differ by window and round, in different
    // orders: concurrent upserts of the same ids must neither deadlock nor let an older version
    // win.
    let version = |task: i64, round: i64| 1 + (task * 5 + round * 3) % 17;
    let mut tasks = Vec::new();
    for task in 0..8i64 {
        let (w, t) = (w.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..4i64 {
                let v = version(task, round);
                let mut rows = batch("k", 300, v, v, 1500);
                match task % 3 {
                    0 => rows.reverse(),
                    1 => rows.rotate_left(97),
                    _ => {}
                }
                w.upsert(&t, &raws(&rows)).await.unwrap();
            }
        }));
    }
    let mut most_seen = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        most_seen = most_seen.max(server_sessions(&f, &app).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task).await.expect("no deadlock").unwrap();
    }
    let newest = (0..8i64).flat_map(|t| (0..4i64).map(move |r| version(t, r))).max().unwrap();
    let wrong = f.scalar(&format!("SELECT count(*) FROM \"{}\".qb_invoices WHERE sync_token <> {newest}", f.schema)).await;
    assert_eq!(wrong, 0, "every id holds the newest version written");
    assert_eq!(f.count("qb_invoices").await, 300);
    assert!(most_seen <= 3, "at most max_connections sessions, saw {most_seen}");
    let open = w.open_sessions();
    assert!((2..=3).contains(&open), "concurrent upserts use several sessions (open: {open})");
    assert_eq!(server_sessions(&f, &app).await, open as i64, "idle sessions are kept for reuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_no_connection_slot_left_shrinks_the_pool_instead_of_failing() {
    let (f, t, _writer) = table_or_skip!("a_server_with_no_connection_slot_left_shrinks_the_pool_instead_of_failing", "qb_invoices");
    // qbo_slots may hold 2 sessions (scripts/pg-up.sh): the server refuses a third with 53300,
    // exactly what a server out of connection slots answers.
    f.sql
        .batch_execute(&format!("GRANT USAGE ON SCHEMA \"{s}\" TO qbo_slots; GRANT SELECT, INSERT, UPDATE ON \"{s}\".qb_invoices TO qbo_slots", s = f.schema))
        .await
        .unwrap();
    let app = format!("qbo_pg_slots_{}", f.schema);
    let config = PgConfig::from_dsn(&dsn_with_user(&f.dsn, "qbo_slots", "qbo_slots")).unwrap().with_application_name(&app).with_max_connections(4);
    let test = "a_server_with_no_connection_slot_left_shrinks_the_pool_instead_of_failing";
    let Some(w) = provisioned_role_writer(test, "qbo_slots", &config).await else {
        return;
    };
    // Six concurrent upserts want four sessions; the server grants two.
    let mut tasks = Vec::new();
    for task in 0..6i64 {
        let (w, t) = (w.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..3i64 {
                let v = 1 + task + round * 6;
                w.upsert(&t, &raws(&batch(&format!("s{task}-"), 200, v, v, 1500))).await.unwrap();
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task).await.expect("no deadlock").unwrap();
    }
    assert_eq!(f.count("qb_invoices").await, 6 * 200, "every batch written");
    // At least one session was refused (how many depends on how many upserts wanted one at once).
    let limit = w.session_limit();
    assert!((2..=3).contains(&limit), "the pool shrank towards the server's 2 slots (limit {limit})");
    assert_eq!(w.open_sessions(), 2, "it works on with the sessions the server granted");
    assert_eq!(server_sessions(&f, &app).await, 2);
    let stale = f.scalar(&format!("SELECT count(*) FROM \"{}\".qb_invoices WHERE sync_token < 13", f.schema)).await;
    assert_eq!(stale, 0, "each id holds its last round's version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_writer_keeps_to_one_session() {
    let f = fixture_or_skip!("a_sequential_writer_keeps_to_one_session");
    let (app, w) = writer_named(&f, "qbo_pg_seq").await;
    let t = created_table(&f, &w, "qb_items").await;
    for v in 1..=4 {
        w.upsert(&t, &raws(&batch("i", 50, v, v, 300))).await.unwrap();
        assert_eq!(w.count(&t).await.unwrap(), 50);
    }
    assert_eq!(w.open_sessions(), 1);
    assert_eq!(server_sessions(&f, &app).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_are_compressed_with_lz4_when_the_server_has_it() {
    let f = fixture_or_skip!("payloads_are_compressed_with_lz4_when_the_server_has_it");
    let w = writer(&f).await;
    let server_has_lz4 = f.scalar("SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)").await == 1;
    assert_eq!(w.uses_lz4(), server_has_lz4);
    let method =
        |table: &str| format!("SELECT attcompression::text FROM pg_attribute WHERE attrelid = '\"{}\".{table}'::regclass AND attname = 'payload'", f.schema);
    let stored_with = |table: &str| format!("SELECT DISTINCT pg_column_compression(payload)::text FROM \"{}\".{table}", f.schema);
    // The table qbo_pg creates.
    let t = f.table("qb_invoices");
    w.ensure_table(&t).await.unwrap();
    w.upsert(&t, &raws(&batch("big", 20, 1, 1, 6000))).await.unwrap();
    let column: String = f.sql.query_one(&method("qb_invoices"), &[]).await.unwrap().get(0);
    let stored: Vec<String> = f.sql.query(&stored_with("qb_invoices"), &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    if !server_has_lz4 {
        eprintln!("this server has no lz4: payloads use the server's default compression");
        assert_eq!(column, "");
        return;
    }
    assert_eq!(column, "l", "new tables declare payload COMPRESSION lz4");
    assert_eq!(stored, ["lz4"]);
    // Tables made by someone else: a payload column at the default method gets lz4 from our
    // transactions; an explicit COMPRESSION pglz is respected.
    for (table, clause, want) in [("dflt", "", "lz4"), ("pglz", "COMPRESSION pglz", "pglz")] {
        f.sql
            .batch_execute(&format!(
                "CREATE TABLE \"{s}\".{table} (id VARCHAR PRIMARY KEY, payload JSONB {clause} NOT NULL,
                 ingested_at_utc TIMESTAMPTZ NOT NULL, extract_window_start_utc TIMESTAMPTZ NOT NULL,
                 extract_window_end_utc TIMESTAMPTZ NOT NULL, page_number INTEGER NOT NULL,
                 page_size INTEGER NOT NULL, last_updated_utc TIMESTAMPTZ NOT NULL,
                 sync_token BIGINT NOT NULL, realm_id VARCHAR NOT NULL)",
                s = f.schema
            ))
            .await
            .unwrap();
        let t = f.table(table);
        w.ensure_table(&t).await.unwrap();
        w.upsert(&t, &raws(&batch("big", 20, 1, 1, 6000))).await.unwrap();
        let stored: Vec<String> = f.sql.query(&stored_with(table), &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        assert_eq!(stored, [want], "table {table}");
    }
}
