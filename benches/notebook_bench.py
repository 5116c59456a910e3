"""make bench: invoices from the emulator to a pandas DataFrame, three ways, in one run (prints
figures, asserts nothing about speed):

1. qbo_rs: ``client.read(...).to_pandas()`` (the backfill's engine into Arrow, then pandas).
2. python-quickbooks: ``Invoice.query`` page by page (1000 a page, by Id), ``to_dict()`` each
   object, then ``pandas.json_normalize``.
3. pandas on the RAW file: ``pandas.read_json(path, lines=True)`` of the TXT file a qbo_rs
   backfill wrote (the file is written before, untimed).
4. qbo_rs on the PostgreSQL RAW table: ``qbo_rs.read_postgres(...).to_pandas()`` of a table a
   qbo_rs backfill wrote (written before, untimed; needs ``QBO_RS_TEST_DSN``, which
   ``scripts/with-pg.sh`` sets).

Same emulator (no throttle, no latency), same invoices. Each path runs as its own process, so
its wall time, records/s and peak RSS (from wait4) are its own, imports included.

The qbo_rs path also prints the frame's own size (pandas ``memory_usage(deep=True)``) beside its
peak RSS: the read holds record batches, not one giant buffer, so the peak stays a small multiple
of the frame (``--invoices 200000 --paths qbo_rs`` shows it at 200,000 invoices); so does the
PostgreSQL path, which reads the table a batch at a time through a server-side cursor.

Usage: notebook_bench.py [--smoke] [--invoices N] [--paths qbo_rs,python-quickbooks,read_json,read_postgres]
(--smoke: a tiny emulator, so `make bench-smoke` keeps it runnable)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, List, Tuple

from qbo_rs.testing import QboEmulator

# The emulator's records span 2015 to today (edits move records to "now").
START, END = "2015-01-01", (date.today() + timedelta(days=2)).isoformat()

QBO_RS = """
import os, qbo_rs
client = qbo_rs.QboClient(qbo_rs.Credentials.from_env(), token_store=None, limiter_dir=None, requests_per_minute=600000)
frame = client.read("invoice", os.environ["START"], os.environ["END"], on_progress=False).to_pandas()
print(frame.memory_usage(deep=True).sum() / 2**20, len(frame))
"""

PYTHON_QUICKBOOKS = """
import os, intuitlib.client, pandas
from quickbooks import QuickBooks
from quickbooks.objects.invoice import Invoice
auth = intuitlib.client.AuthClient(os.environ["QBO_CLIENT_ID"], os.environ["QBO_CLIENT_SECRET"], "http://localhost/callback",
    environment=os.environ["QBO_BASE_URL"] + "/.well-known/openid_configuration", refresh_token=os.environ["QBO_REFRESH_TOKEN"])
auth.refresh()
QuickBooks.api_url_v3 = os.environ["QBO_BASE_URL"] + "/v3"
qb = QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=os.environ["QBO_REALM_ID"], minorversion=75)
rows, position = [], 1
while True:
    page = Invoice.query(f"SELECT * FROM Invoice ORDERBY Id STARTPOSITION {position} MAXRESULTS 1000", qb=qb)
    rows.extend(invoice.to_dict() for invoice in page)
    if len(page) < 1000:
        break
    position += 1000
frame = pandas.json_normalize(rows)
print(len(frame))
"""

READ_POSTGRES = """
import os, qbo_rs
frame = qbo_rs.read_postgres("invoice", dsn=os.environ["QBO_RS_TEST_DSN"], pg_schema=os.environ["BENCH_SCHEMA"]).to_pandas()
print(frame.memory_usage(deep=True).sum() / 2**20, len(frame))
"""

READ_JSON = """
import os, pandas
frame = pandas.read_json(os.environ["RAW_FILE"], lines=True)
print(len(frame))
"""


def run_measured(code: str, env: Dict[str, str]) -> Tuple[int, float, float, str]:
    """Runs ``code`` in a fresh interpreter; returns (rows it printed last, wall s, peak RSS MB,
    the frame's size in MB when it printed one first)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"a bench process failed:\n{err[-2000:]}")
    words = out.split()
    frame_mb = f"{float(words[0]):.1f}" if len(words) > 1 else ""
    return int(words[-1]), wall, usage.ru_maxrss / 1024, frame_mb


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for make bench-smoke")
    parser.add_argument("--invoices", type=int, default=20_000)
    parser.add_argument("--paths", default="qbo_rs,python-quickbooks,read_json,read_postgres", help="comma-separated")
    args = parser.parse_args()
    invoices = 300 if args.smoke else args.invoices
    wanted = set(args.paths.split(","))
    with (
        tempfile.TemporaryDirectory() as work,
        QboEmulator(seed=3, invoices=invoices, customers=50, items=20, throttle_per_minute=0, max_in_flight=0) as emu,
    ):
        env = {**os.environ, **emu.env(), "START": START, "END": END, "OAUTHLIB_INSECURE_TRANSPORT": "1"}
        env["RAW_FILE"] = str(Path(work) / "invoices.txt")
        import qbo_rs

        writer = qbo_rs.QboClient(emu.credentials(), token_store=None, limiter_dir=None, requests_per_minute=600_000)
        dsn = os.environ.get("QBO_RS_TEST_DSN", "")
        env["BENCH_SCHEMA"] = f"bench_nb_{os.getpid()}"
        sinks = {"sink": "both", "dsn": dsn, "pg_schema": env["BENCH_SCHEMA"]} if dsn else {}
        if not dsn and "read_postgres" in wanted:
            print("read_postgres: left out, QBO_RS_TEST_DSN is not set (run under scripts/with-pg.sh)")
            wanted.discard("read_postgres")
        assert writer.backfill("invoice", START, END, data_dir=work, fsync=False, on_progress=False, **sinks).ok
        paths: List[Tuple[str, str, str]] = [
            ("qbo_rs", "qbo_rs: client.read().to_pandas()", QBO_RS),
            ("python-quickbooks", "python-quickbooks + json_normalize", PYTHON_QUICKBOOKS),
            ("read_json", "pandas.read_json(lines=True) of the TXT", READ_JSON),
            ("read_postgres", "qbo_rs: read_postgres().to_pandas()", READ_POSTGRES),
        ]
        print(f"## Invoices to a pandas DataFrame ({invoices:,} invoices, emulator without throttle or latency)")
        print(f"{'path':42} {'rows':>8} {'wall s':>8} {'records/s':>10} {'peak RSS MB':>12} {'frame MB':>9}")
        for key, label, code in paths:
            if key not in wanted:
                continue
            rows, wall, rss, frame_mb = run_measured(code, env)
            print(f"{label:42} {rows:>8,} {wall:>8.2f} {rows / wall:>10,.0f} {rss:>12.1f} {frame_mb:>9}")
        if dsn:
            drop = f'drop schema if exists "{env["BENCH_SCHEMA"]}" cascade'
            subprocess.run(["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", drop], check=True, capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
