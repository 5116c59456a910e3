"""make bench, PostgreSQL part (issue 3): the same 200k invoices upserted into PostgreSQL several
ways, in one run, against the same server. Prints figures, asserts only that every table ends
equal.

1. qbo-rs backfill --sink postgres: the whole run, fetch from the emulator AND write, timed end
   to end (the sink's own write rate is therefore at least this). The ratios use this line.
2. psql \\copy into a staging table + the same INSERT ... ON CONFLICT, one session: the server's
   ceiling for one connection. It mirrors qbo_pg's own statements (crates/qbo_pg/src/sql.rs):
   payload staged as TEXT and cast to JSONB in the INSERT, rows locked in id order, and
   `default_toast_compression = lz4` for the transaction when the server has lz4, so psql pays
   no more per row than qbo_pg does.
3. The same psql script split over two concurrent sessions (disjoint batches): for context, the
   ceiling once the server's second core is used too (qbo-rs writes concurrent windows over up
   to 4 sessions). Not one of the issue's targets.
4. psycopg2 execute_values upserts (batches of 5000, page_size 1000);
5. psycopg2 row-by-row execute upserts, one row per call, commit per 5000 rows (what the seeds
   did).

Every baseline table is created `LIKE` qbo-rs's `INCLUDING ALL`, so all share its storage (the
payload's compression method is printed). `--rounds N` repeats everything N times; each round's
figures and ratios are printed, then the median ratios.

Usage: pg_bench.py [--invoices N] [--rounds N] (needs QBO_RS_TEST_DSN; `scripts/with-pg.sh`
provides one)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Tuple

import psycopg2
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import backfill_invoices, unthrottled_emulator  # noqa: E402

COLS = (
    "id, payload, last_updated_utc, sync_token, realm_id, ingested_at_utc, "
    "extract_window_start_utc, extract_window_end_utc, page_number, page_size"
)
UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLS.split(", ")[1:])
BATCH = 5000
SCHEMAS = ("bench_rs", "bench_copy", "bench_copy2", "bench_ev", "bench_row")
STAGING = (
    "CREATE TEMP TABLE staging (id VARCHAR NOT NULL, payload TEXT NOT NULL, "
    "last_updated_utc TIMESTAMPTZ NOT NULL, sync_token BIGINT NOT NULL, realm_id VARCHAR NOT NULL, "
    "ingested_at_utc TIMESTAMPTZ NOT NULL, extract_window_start_utc TIMESTAMPTZ NOT NULL, "
    "extract_window_end_utc TIMESTAMPTZ NOT NULL, page_number INTEGER NOT NULL, "
    "page_size INTEGER NOT NULL) ON COMMIT DROP"
)


def upsert_sql(table: str, source: str) -> str:
    return (
        f"INSERT INTO {table} AS t ({COLS}) {source} ON CONFLICT (id) DO UPDATE SET {UPDATE} "
        "WHERE (EXCLUDED.last_updated_utc, EXCLUDED.sync_token) > (t.last_updated_utc, t.sync_token)"
    )


def rows_from(path: Path):
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            yield (
                r["id"],
                json.dumps(r["payload"], separators=(",", ":")),
                r["last_updated_utc"],
                int(r["sync_token"]),
                r["realm_id"],
                r["ingested_at_utc"],
                r["extract_window_start_utc"],
                r["extract_window_end_utc"],
                r["page_number"],
                r["page_size"],
            )


def psql_scripts(work: Path, rows: list, schema: str, sessions: int, lz4: bool) -> List[Path]:
    """One psql script per session; session k loads batches k, k+sessions, ... (disjoint ids)."""
    select = "SELECT " + COLS.replace("payload", "payload::jsonb") + " FROM staging ORDER BY id"
    scripts = []
    for k in range(sessions):
        script = work / f"copy_{schema}_{k}.sql"
        with open(script, "w") as sql:
            for b in range(k * BATCH, len(rows), sessions * BATCH):
                part = work / f"batch{b}.csv"
                if not part.exists():
                    with open(part, "w", newline="") as f:
                        csv.writer(f).writerows(rows[b : b + BATCH])
                sql.write(
                    "BEGIN;\nSET LOCAL work_mem = '64MB';\n"
                    + ("SET LOCAL default_toast_compression = 'lz4';\n" if lz4 else "")
                    + STAGING
                    + ";\n"
                    + f"\\copy staging ({COLS}) FROM '{part}' WITH (FORMAT csv)\n"
                    + upsert_sql(f"{schema}.qb_invoices", select)
                    + ";\nCOMMIT;\n"
                )
        scripts.append(script)
    return scripts


def run_psql(dsn: str, scripts: List[Path]) -> float:
    os.sync()
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-f", str(s)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for s in scripts
    ]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err.decode()
    return time.perf_counter() - t0


def one_round(
    dsn: str, cur, conn, env: dict, backfill: List[str], rows: list, work: Path, lz4: bool
) -> List[Tuple[str, float]]:
    for s in SCHEMAS:
        cur.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
    results = []
    os.sync()  # before each timed path: no path pays for the previous one's dirty pages
    t0 = time.perf_counter()
    subprocess.run(
        backfill + ["--sink", "postgres", "--dsn", dsn, "--pg-schema", "bench_rs"],
        env=env,
        check=True,
        capture_output=True,
    )
    results.append(("qbo-rs backfill --sink postgres (fetch + write)", time.perf_counter() - t0))
    for s in SCHEMAS[1:]:
        cur.execute(f"CREATE SCHEMA {s}; CREATE TABLE {s}.qb_invoices (LIKE bench_rs.qb_invoices INCLUDING ALL)")
    n = len(rows)

    results.append(
        ("psql \\copy + INSERT ... ON CONFLICT", run_psql(dsn, psql_scripts(work, rows, "bench_copy", 1, lz4)))
    )
    results.append(
        ("  (context) the same, 2 psql sessions", run_psql(dsn, psql_scripts(work, rows, "bench_copy2", 2, lz4)))
    )

    ins = upsert_sql("bench_ev.qb_invoices", "VALUES %s")
    conn.autocommit = False
    os.sync()
    t0 = time.perf_counter()
    for b in range(0, n, BATCH):
        execute_values(cur, ins, rows[b : b + BATCH], page_size=1000)
        conn.commit()
    results.append(("psycopg2 execute_values", time.perf_counter() - t0))

    one = upsert_sql("bench_row.qb_invoices", "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    os.sync()
    t0 = time.perf_counter()
    for b in range(0, n, BATCH):
        for r in rows[b : b + BATCH]:
            cur.execute(one, r)
        conn.commit()
    results.append(("psycopg2 row-by-row execute", time.perf_counter() - t0))
    conn.autocommit = True

    counts = {}
    for s in SCHEMAS:
        cur.execute(f"SELECT count(*), sum(sync_token) FROM {s}.qb_invoices")
        counts[s] = cur.fetchone()
    assert len(set(counts.values())) == 1, counts
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    dsn = os.environ["QBO_RS_TEST_DSN"]
    work = Path(tempfile.mkdtemp(prefix="qbo-pgbench-"))
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(
        "SELECT COALESCE((SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'), false)"
    )
    lz4 = cur.fetchone()[0]
    emu = unthrottled_emulator(args.invoices, customers=100, items=50, seed=4)
    ratios = []
    try:
        env = dict(os.environ, **emu.env, QBO_TOKEN_STORE=str(work / "t.json"))
        backfill = backfill_invoices(365, 1000, "--requests-per-minute", "1000000", "--data-dir", str(work / "data"))
        subprocess.run(backfill, env=env, check=True, capture_output=True)  # the RAW lines the others load
        rows = list(rows_from(work / "data" / "invoices.txt"))
        n = len(rows)
        for rnd in range(1, args.rounds + 1):
            results = one_round(dsn, cur, conn, env, backfill, rows, work, lz4)
            cur.execute(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'bench_copy.qb_invoices'::regclass "
                "AND attname = 'payload'"
            )
            method = {"l": "lz4", "p": "pglz"}.get(cur.fetchone()[0], "server default")
            cur.execute("SELECT count(*) FROM bench_rs.qb_invoices")
            print(
                f"\n## PostgreSQL upserts of the same {n:,} invoices, round {rnd}/{args.rounds} "
                f"(tables equal: {cur.fetchone()[0]:,} rows each; payload COMPRESSION {method} in every table)"
            )
            print(f"{'writer':50} {'wall s':>8} {'rows/s':>9}")
            for label, wall in results:
                print(f"{label:50} {wall:>8.2f} {n / wall:>9,.0f}")
            ours, ceiling, _two, ev, row = (n / w for _, w in results)
            ratios.append((ours / ceiling, ours / ev, ours / row))
            print(
                f"qbo-rs (fetch + write) vs psql \\copy ceiling: {ours / ceiling:.0%} (target >= 85%); "
                f"vs execute_values: {ours / ev:.1f}x (target >= 1.0x); vs row-by-row: {ours / row:.1f}x (target >= 4x)"
            )
    finally:
        emu.stop()
        for s in SCHEMAS:
            cur.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        shutil.rmtree(work, ignore_errors=True)
    if args.rounds > 1:
        med = [statistics.median(r[i] for r in ratios) for i in range(3)]
        print(
            f"\nmedian of {args.rounds} rounds: vs psql {med[0]:.0%}, vs execute_values {med[1]:.1f}x, "
            f"vs row-by-row {med[2]:.1f}x (ranges {min(r[0] for r in ratios):.0%}-{max(r[0] for r in ratios):.0%}, "
            f"{min(r[1] for r in ratios):.1f}-{max(r[1] for r in ratios):.1f}x, "
            f"{min(r[2] for r in ratios):.1f}-{max(r[2] for r in ratios):.1f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
