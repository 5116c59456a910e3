"""The qb_*_sync pipelines under Mage's real executor: after a backfill pipeline, creates, edits
and deletes in QuickBooks (the emulator) reach the TXT file and PostgreSQL, deletions are marked
with the runbook's lines, a repeated run costs two requests and writes nothing, and the hourly
triggers ship inactive."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .conftest import (
    DSN,
    PLURAL,
    PROJECT,
    RANGE_END,
    RANGE_START,
    mage_python,
    postgres_env,
    psql,
    run_pipeline,
    truth,
)


def sync_line(run, prefix: str) -> str:
    lines = [line for line in run.lines("qb_sync") if line.startswith(prefix)]
    assert len(lines) == 1, run
    return lines[0]


def live_and_deleted_txt(path: Path):
    live, deleted = {}, set()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("deleted_at_utc") is None:
            live[obj["id"]] = str(obj["sync_token"])
        else:
            deleted.add(obj["id"])
    return live, deleted


def live_and_deleted_pg(schema: str, table: str):
    rows = [
        r.split("|")
        for r in psql(f'select id, sync_token, deleted_at_utc is not null from "{schema}"."{table}"').splitlines()
    ]
    return {i: t for i, t, d in rows if d == "f"}, {i for i, _, d in rows if d == "t"}


def test_sync_pipeline_after_a_backfill_brings_changes_and_deletions(emulator, env, tmp_path: Path, pg_schema):
    env.update(postgres_env(DSN))
    sinks = {"sink": "both", "pg_schema": pg_schema}
    backfill = run_pipeline(
        "qb_invoice_backfill", env, {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END, "chunk_days": "400", **sinks}
    )
    assert backfill.rc == 0, backfill

    created = emulator.create("invoice")["Id"]
    for rid in ("5", "50", "500"):
        emulator.edit("Invoice", rid)
    gone = {"7", "70", "570"}
    for rid in gone:
        emulator.delete("invoice", rid)
    time.sleep(1.1)  # a sync reads up to the last whole second before QuickBooks' clock

    first = run_pipeline("qb_invoice_sync", env, sinks)
    assert first.rc == 0, first
    assert sync_line(first, "Sync incremental"), first
    # The changes, and what the overlap (10 minutes before the newest record held) reads again.
    assert int(sync_line(first, "Total invoices descargadas: ").rsplit(" ", 1)[1]) >= 4
    assert sync_line(first, "Sync rows: 1 inserted, 3 updated").endswith(
        "3 invoices marked deleted (3 deletion(s) found)"
    )
    assert sync_line(first, "Validation:") == "Validation: Integrity Check Passed"
    expected = truth(emulator, "invoice")
    assert created in expected
    assert live_and_deleted_txt(tmp_path / "data" / "invoices.txt") == (expected, gone)
    assert live_and_deleted_pg(pg_schema, "qb_invoices") == (expected, gone)

    # Mage executes a block run at least once: running it again is harmless and cheap.
    before = (tmp_path / "data" / "invoices.txt").read_bytes()
    second = run_pipeline("qb_invoice_sync", env, sinks)
    assert second.rc == 0, second
    # It reads again what changed in the overlap (the 10 minutes before the last sync's end):
    # the four changes above, a page or two; nothing is written.
    assert ", 1 count, 1 cdc, 0 retry)" in sync_line(second, "Sync incremental")
    assert sync_line(second, "Sync rows: 0 inserted, 0 updated")
    assert (tmp_path / "data" / "invoices.txt").read_bytes() == before


def test_a_bad_sync_variable_fails_with_one_line_naming_it(emulator, env):
    run = run_pipeline("qb_customer_sync", env, {"page_size": "5000"})
    assert run.rc != 0
    errors = [line for line in run.lines("qb_sync") if line.startswith("RunVariableError: page_size")]
    assert errors, run


def test_hourly_sync_triggers_ship_inactive():
    triggers = mage_python(
        "import json, yaml\n"
        f"print(json.dumps(default=str, obj={{p: yaml.safe_load(open({str(PROJECT)!r} + f'/pipelines/qb_{{p}}_sync/triggers.yaml'))['triggers']"
        " for p in ('invoice', 'customer', 'item')}))"
    )
    for slug, (trigger,) in triggers.items():
        assert trigger["name"] == f"qb_{slug}_sync_hourly" and trigger["schedule_interval"] == "@hourly", trigger
        assert trigger["status"] == "inactive" and PLURAL[slug] in trigger["description"], trigger
