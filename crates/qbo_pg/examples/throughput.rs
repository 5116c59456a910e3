//! Throughput of `PgWriter::upsert` against the baseline it must match: `psql \copy` of the
//! same rows into the same temporary staging table, followed by the very same
//! `INSERT ... ON CONFLICT` statement (taken from `qbo_pg::sql`), one transaction per batch.
//!
//! ```text
//! export QBO_RS_TEST_DSN=$(scripts/pg-up.sh | tail -1)
//! cargo run --release -p qbo_pg --example throughput -- [--rows 200000] [--batch 5000] \
//!     [--payload 2000] [--rounds 2]
//! ```
//!
//! Three scenarios, each timed for both paths on separate tables, interleaved, `--rounds`
//! times (the best round is reported, all rounds are printed):
//! * `insert`: every id new (empty table);
//! * `update`: every id again at a newer version (all rows replaced);
//! * `rerun`: the same versions again (nothing written).
//!
//! Only the writing is timed: rows are generated, and the CSV files psql reads are written,
//! beforehand. psql runs as one process for all batches (its start-up is counted, ~10 ms).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use qbo_pg::{sql, PgConfig, PgWriter, RawRow, TableRef};

struct Args {
    rows: usize,
    batch: usize,
    payload: usize,
    rounds: usize,
    dsn: String,
}

fn parse_args() -> Args {
    let mut args = Args { rows: 200_000, batch: 5_000, payload: 2_000, rounds: 2, dsn: std::env::var("QBO_RS_TEST_DSN").unwrap_or_default() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => args.rows = value().parse().expect("--rows N"),
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--payload" => args.payload = value().parse().expect("--payload BYTES"),
            "--rounds" => args.rounds = value().parse().expect("--rounds N"),
            "--dsn" => args.dsn = value(),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!args.dsn.is_empty(), "set QBO_RS_TEST_DSN (scripts/pg-up.sh prints one) or pass --dsn");
    args
}

/// One generated record version.
struct Rec {
    id: String,
    payload: Vec<u8>,
    last_updated: DateTime<Utc>,
    sync_token: i64,
}

/// Invoice-like JSON of about `size` bytes, varied enough that TOAST compression behaves as on
/// real data (not one repeated character).
fn payload(id: usize, version: i64, size: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let mut s = format!(
        "{{\"Id\":\"{id}\",\"SyncToken\":\"{version}\",\"MetaData\":{{\"CreateTime\":\"2021-03-04T10:11:12-08:00\",\
         \"LastUpdatedTime\":\"2024-05-0{}T1{}:2{}:3{}-07:00\"}},\"DocNumber\":\"{}\",\"TxnDate\":\"2024-05-01\",\
         \"CurrencyRef\":{{\"value\":\"USD\",\"name\":\"United States Dollar\"}},\"CustomerRef\":{{\"value\":\"{}\",\
         \"name\":\"Customer {}\"}},\"Line\":[",
        1 + version % 9,
        next() % 10,
        next() % 6,
        next() % 10,
        1000 + id,
        next() % 5000,
        next() % 5000
    );
    let mut n = 0;
    while s.len() + 200 < size {
        if n > 0 {
            s.push(',');
        }
        n += 1;
        let qty = next() % 40 + 1;
        let price = (next() % 100_000) as f64 / 100.0;
        s.push_str(&format!(
            "{{\"Id\":\"{n}\",\"LineNum\":{n},\"Description\":\"Item {} service {:x}\",\"Amount\":{:.2},\
             \"DetailType\":\"SalesItemLineDetail\",\"SalesItemLineDetail\":{{\"ItemRef\":{{\"value\":\"{}\"}},\
             \"Qty\":{qty},\"UnitPrice\":{price:.2}}}}}",
            next() % 300,
            next(),
            qty as f64 * price,
            next() % 300
        ));
    }
    s.push_str(&format!("],\"TotalAmt\":{:.2},\"Balance\":0,\"PrivateNote\":\"", (next() % 1_000_000) as f64 / 100.0));
    while s.len() + 2 < size {
        s.push((b'a' + (next() % 26) as u8) as char);
    }
    s.push_str("\"}");
    s.into_bytes()
}

fn generate(rows: usize, size: usize, version: i64) -> Vec<Rec> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ version as u64;
    (0..rows)
        .map(|i| Rec {
            id: format!("{}", 100_000 + i),
            payload: payload(i, version, size, &mut seed),
            last_updated: Utc.timestamp_opt(1_700_000_000 + version * 1000 + (i % 1000) as i64, 0).unwrap(),
            sync_token: version,
        })
        .collect()
}

fn raw<'a>(r: &'a Rec, page: i32, now: DateTime<Utc>) -> RawRow<'a> {
    RawRow {
        id: &r.id,
        payload_json: &r.payload,
        last_updated_utc: r.last_updated,
        sync_token: r.sync_token,
        realm_id: "9341452937165041",
        ingested_at_utc: now,
        extract_window_start_utc: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
        extract_window_end_utc: Utc.timestamp_opt(1_700_086_400, 0).unwrap(),
        page_number: page,
        page_size: 1000,
    }
}

/// Writes one CSV file per batch (columns in `sql::STAGING_COLUMNS` order) and the psql
/// script that loads them exactly like the writer does.
fn psql_script(dir: &Path, recs: &[Rec], batch: usize, table: &TableRef, lz4: bool) -> PathBuf {
    let now = Utc::now();
    let start = Utc.timestamp_opt(1_700_000_000, 0).unwrap().to_rfc3339();
    let end = Utc.timestamp_opt(1_700_086_400, 0).unwrap().to_rfc3339();
    let mut script = String::new();
    for (b, chunk) in recs.chunks(batch).enumerate() {
        // One file set per version: the two scripts must not read each other's rows.
        let file = dir.join(format!("v{}_batch_{b:05}.csv", recs[0].sync_token));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for r in chunk {
            let json = String::from_utf8_lossy(&r.payload).replace('"', "\"\"");
            writeln!(
                out,
                "{},\"{json}\",{},{},9341452937165041,{},{start},{end},{},1000",
                r.id,
                r.last_updated.to_rfc3339(),
                r.sync_token,
                now.to_rfc3339(),
                b + 1
            )
            .unwrap();
        }
        out.flush().unwrap();
        script.push_str("BEGIN;\n");
        script.push_str(&sql::begin_batch(lz4));
        script.push_str(";\n");
        script.push_str(&format!("\\copy pg_temp.{} ({}) FROM '{}' WITH (FORMAT csv)\n", sql::STAGING_TABLE, sql::STAGING_COLUMNS, file.display()));
        script.push_str(&sql::apply_batch(table));
        script.push_str(";\nCOMMIT;\n");
    }
    let path = dir.join(format!("load_{}.sql", recs[0].sync_token));
    std::fs::write(&path, script).unwrap();
    path
}

fn run_psql(dsn: &str, script: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new("psql")
        .args([dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-f"])
        .arg(script)
        .output()
        .expect("psql runs (install postgresql-client)");
    let elapsed = started.elapsed();
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    elapsed
}

async fn run_ours(w: &PgWriter, table: &TableRef, recs: &[Rec], batch: usize) -> (Duration, qbo_pg::UpsertOutcome) {
    let now = Utc::now();
    let mut total = qbo_pg::UpsertOutcome::default();
    let started = Instant::now();
    for (b, chunk) in recs.chunks(batch).enumerate() {
        let rows: Vec<RawRow<'_>> = chunk.iter().map(|r| raw(r, b as i32 + 1, now)).collect();
        total.add(&w.upsert(table, &rows).await.expect("upsert"));
    }
    (started.elapsed(), total)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let config = PgConfig::from_dsn(&args.dsn).expect("DSN");
    let w = PgWriter::connect(&config).await.expect("connect");
    let schema = format!("qbo_pg_bench_{}", std::process::id());
    let ours_t = TableRef::new(&schema, "ours").unwrap();
    let psql_t = TableRef::new(&schema, "psql").unwrap();

    eprintln!("generating {} rows x 2 versions of ~{} B ...", args.rows, args.payload);
    let v1 = generate(args.rows, args.payload, 1);
    let v2 = generate(args.rows, args.payload, 2);
    let avg = v1.iter().map(|r| r.payload.len()).sum::<usize>() / v1.len();
    let dir = std::env::temp_dir().join(format!("qbo_pg_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script_v1 = psql_script(&dir, &v1, args.batch, &psql_t, w.uses_lz4());
    let script_v2 = psql_script(&dir, &v2, args.batch, &psql_t, w.uses_lz4());

    let server: String = {
        let (c, conn) = tokio_postgres::connect(&args.dsn, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.query_one("SELECT version()", &[]).await.unwrap().get(0)
    };
    println!("server: {server}");
    println!("rows: {}  batch: {}  payload: {avg} B avg  rounds: {}  (rows/s = rows / wall time of all batches)", args.rows, args.batch, args.rounds);

    let mut best: [(f64, f64); 3] = [(0.0, 0.0); 3];
    for round in 1..=args.rounds {
        let drop_all = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        psql_exec(&args.dsn, &drop_all);
        w.ensure_table(&ours_t).await.unwrap();
        w.ensure_table(&psql_t).await.unwrap();
        let scenarios: [(&str, &[Rec], &Path); 3] = [("insert", &v1, &script_v1), ("update", &v2, &script_v2), ("rerun", &v2, &script_v2)];
        for (i, (name, recs, script)) in scenarios.into_iter().enumerate() {
            // Alternate who goes first, so neither always gets the warmer cache.
            let (psql_time, (ours_time, outcome)) = if (round + i) % 2 == 0 {
                let p = run_psql(&args.dsn, script);
                (p, run_ours(&w, &ours_t, recs, args.batch).await)
            } else {
                let o = run_ours(&w, &ours_t, recs, args.batch).await;
                (run_psql(&args.dsn, script), o)
            };
            // Both paths must have done the same work: every row at this scenario's version.
            for t in [&ours_t, &psql_t] {
                let wrong = psql_scalar(&args.dsn, &format!("SELECT count(*) FROM {} WHERE sync_token <> {}", t.quoted(), recs[0].sync_token));
                assert_eq!(wrong, "0", "{name}: {t} does not hold version {}", recs[0].sync_token);
            }
            let ours_rps = args.rows as f64 / ours_time.as_secs_f64();
            let psql_rps = args.rows as f64 / psql_time.as_secs_f64();
            best[i].0 = best[i].0.max(ours_rps);
            best[i].1 = best[i].1.max(psql_rps);
            println!(
                "round {round} {name:<7} qbo_pg {ours_rps:>9.0} rows/s ({:>6.2} s)   psql \\copy+INSERT {psql_rps:>9.0} rows/s ({:>6.2} s)   ratio {:>5.1}%   [{} ins, {} upd, {} unch, {} stale]",
                ours_time.as_secs_f64(),
                psql_time.as_secs_f64(),
                100.0 * ours_rps / psql_rps,
                outcome.inserted,
                outcome.updated,
                outcome.unchanged,
                outcome.stale,
            );
        }
        // Both paths must have produced the same table.
        let diff = psql_scalar(
            &args.dsn,
            &format!(
                "SELECT count(*) FROM {o} o FULL JOIN {p} p USING (id) \
                 WHERE o.payload IS DISTINCT FROM p.payload OR o.sync_token IS DISTINCT FROM p.sync_token",
                o = ours_t.quoted(),
                p = psql_t.quoted()
            ),
        );
        assert_eq!(diff, "0", "qbo_pg and psql tables differ");
    }
    println!("best of {} rounds:", args.rounds);
    for (i, name) in ["insert", "update", "rerun"].iter().enumerate() {
        println!("  {name:<7} qbo_pg {:>9.0} rows/s   baseline {:>9.0} rows/s   ratio {:>5.1}%", best[i].0, best[i].1, 100.0 * best[i].0 / best[i].1);
    }
    psql_exec(&args.dsn, &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn psql_exec(dsn: &str, sql: &str) {
    let out = Command::new("psql").args([dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn psql_scalar(dsn: &str, sql: &str) -> String {
    let out = Command::new("psql").args([dsn, "-X", "-At", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
