"""make bench, PostgreSQL part (issue 3): the same 200k invoices upserted into PostgreSQL four ways,
in one run, against the same server. Prints figures, asserts only that every table ends equal.

1. qbo-rs backfill --sink postgres (the whole run: fetch from the emulator AND write; the sink's
   own rate is therefore at least this);
2. psql \\copy into a staging table + the same INSERT ... ON CONFLICT (the server's ceiling);
3. psycopg2 execute_values upserts (batches of 5000, page_size 1000);
4. psycopg2 row-by-row execute upserts (what the seeds did).

Usage: pg_bench.py [--invoices N] (needs QBO_RS_TEST_DSN; `scripts/with-pg.sh` provides one)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import QBO, START, END, Emulator  # noqa: E402

COLS = ("id, payload, last_updated_utc, sync_token, realm_id, ingested_at_utc, "
        "extract_window_start_utc, extract_window_end_utc, page_number, page_size")
UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLS.split(", ")[1:])
BATCH = 5000


def upsert_sql(table: str, source: str) -> str:
    return (f"INSERT INTO {table} AS t ({COLS}) {source} ON CONFLICT (id) DO UPDATE SET {UPDATE} "
            "WHERE (EXCLUDED.last_updated_utc, EXCLUDED.sync_token) > (t.last_updated_utc, t.sync_token)")


def rows_from(path: Path):
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            yield (r["id"], json.dumps(r["payload"], separators=(",", ":")), r["last_updated_utc"], int(r["sync_token"]),
                   r["realm_id"], r["ingested_at_utc"], r["extract_window_start_utc"], r["extract_window_end_utc"],
                   r["page_number"], r["page_size"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=200_000)
    args = parser.parse_args()
    dsn = os.environ["QBO_RS_TEST_DSN"]
    work = Path(tempfile.mkdtemp(prefix="qbo-pgbench-"))
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    for s in ("bench_rs", "bench_copy", "bench_ev", "bench_row"):
        cur.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
    results = []
    emu = Emulator("--invoices", str(args.invoices), "--customers", "100", "--items", "50", "--seed", "4",
                   "--throttle-per-minute", "0", "--max-in-flight", "0")
    try:
        env = dict(os.environ, **emu.env, QBO_TOKEN_STORE=str(work / "t.json"))
        common = ["backfill", "invoice", "--start", START, "--end", END, "--chunk-days", "365", "--page-size", "1000",
                  "--no-progress", "--requests-per-minute", "1000000", "--data-dir", str(work / "data")]
        subprocess.run(QBO + common, env=env, check=True, capture_output=True)  # the RAW lines the others load
        t0 = time.perf_counter()
        subprocess.run(QBO + common + ["--sink", "postgres", "--dsn", dsn, "--pg-schema", "bench_rs"], env=env, check=True, capture_output=True)
        results.append(("qbo-rs backfill --sink postgres (fetch + write)", time.perf_counter() - t0))
    finally:
        emu.stop()
    rows = list(rows_from(work / "data" / "invoices.txt"))
    n = len(rows)
    for s in ("bench_copy", "bench_ev", "bench_row"):
        cur.execute(f"CREATE SCHEMA {s}; CREATE TABLE {s}.qb_invoices (LIKE bench_rs.qb_invoices INCLUDING ALL)")

    # 2. psql \copy of CSV batches into a staging table + the same upsert, one psql session.
    script = work / "copy.sql"
    with open(script, "w") as sql:
        for b in range(0, n, BATCH):
            part = work / f"batch{b}.csv"
            with open(part, "w", newline="") as f:
                csv.writer(f).writerows(rows[b:b + BATCH])
            sql.write("BEGIN;\nCREATE TEMP TABLE staging (LIKE bench_copy.qb_invoices) ON COMMIT DROP;\n"
                      f"\\copy staging ({COLS}) FROM '{part}' WITH (FORMAT csv)\n"
                      + upsert_sql("bench_copy.qb_invoices", f"SELECT {COLS} FROM staging") + ";\nCOMMIT;\n")
    t0 = time.perf_counter()
    subprocess.run(["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-f", str(script)], check=True, capture_output=True)
    results.append(("psql \\copy + INSERT ... ON CONFLICT", time.perf_counter() - t0))

    # 3. psycopg2 execute_values.
    ins = upsert_sql("bench_ev.qb_invoices", "VALUES %s")
    conn.autocommit = False
    t0 = time.perf_counter()
    for b in range(0, n, BATCH):
        execute_values(cur, ins, rows[b:b + BATCH], page_size=1000)
        conn.commit()
    results.append(("psycopg2 execute_values", time.perf_counter() - t0))

    # 4. Row by row.
    one = upsert_sql("bench_row.qb_invoices", "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    t0 = time.perf_counter()
    for b in range(0, n, BATCH):
        for r in rows[b:b + BATCH]:
            cur.execute(one, r)
        conn.commit()
    results.append(("psycopg2 row-by-row execute", time.perf_counter() - t0))
    conn.autocommit = True

    counts = {}
    for s in ("bench_rs", "bench_copy", "bench_ev", "bench_row"):
        cur.execute(f"SELECT count(*), sum(sync_token) FROM {s}.qb_invoices")
        counts[s] = cur.fetchone()
    assert len(set(counts.values())) == 1, counts
    print(f"\n## PostgreSQL upserts of the same {n:,} invoices (tables equal: {counts['bench_rs'][0]:,} rows each)")
    print(f"{'writer':50} {'wall s':>8} {'rows/s':>9}")
    for label, wall in results:
        print(f"{label:50} {wall:>8.2f} {n / wall:>9,.0f}")
    ours, ceiling, ev, row = (n / w for _, w in results)
    print(f"qbo-rs vs psql \\copy ceiling: {ours / ceiling:.0%} (target >= 85%); vs execute_values: {ours / ev:.1f}x "
          f"(target >= 1.0x); vs row-by-row: {ours / row:.1f}x (target >= 4x)")
    for s in ("bench_rs", "bench_copy", "bench_ev", "bench_row"):
        cur.execute(f"DROP SCHEMA {s} CASCADE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
