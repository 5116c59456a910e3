"""The PostgreSQL RAW sink against a real server (make test starts one; CI never skips)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

import pytest
from conftest import (
    PG_DSN,
    RANGE_END,
    RANGE_START,
    backfill_args,
    cli_env,
    landed_versions,
    psql,
    read_raw,
    run_cli,
    sigkill_mid_runs,
    truth_versions,
)

from qbo_rs.exceptions import ConfigError, SinkError
from qbo_rs.testing import QboEmulator

DSN = PG_DSN
if not DSN:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_TEST_DSN is not set: `make test` starts PostgreSQL itself")
    pytest.skip("no PostgreSQL: set QBO_RS_TEST_DSN or run `make test`", allow_module_level=True)


def table_versions(schema: str, table: str) -> Dict[str, str]:
    rows = psql(f'select id, sync_token from "{schema}"."{table}"').splitlines()
    return dict(line.split("|") for line in rows)


@pytest.mark.parametrize(
    "slug,entity,table",
    [("invoice", "Invoice", "qb_invoices"), ("customer", "Customer", "qb_customers"), ("item", "Item", "qb_items")],
)
def test_postgres_equals_ground_truth(emulator: QboEmulator, client_factory, schema, slug, entity, table):
    report = client_factory(emulator).backfill(slug, RANGE_START, RANGE_END, sink="postgres", dsn=DSN, pg_schema=schema)
    assert report.ok
    assert table_versions(schema, table) == truth_versions(emulator, entity)
    assert psql(f'select count(*) from "{schema}"."{table}" where payload->>\'Id\' <> id') == "0\n"


def test_both_sinks_hold_the_same_records(emulator: QboEmulator, client_factory, schema, tmp_path: Path):
    client = client_factory(emulator)
    client.backfill("invoice", RANGE_START, RANGE_END, sink="both", dsn=DSN, pg_schema=schema, data_dir=tmp_path)
    assert table_versions(schema, "qb_invoices") == landed_versions(read_raw(tmp_path / "invoices.txt"))
    # Re-running in another order leaves the table unchanged.
    again = client.backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=30, sink="postgres", dsn=DSN, pg_schema=schema
    )
    assert sum(w.inserted + w.updated for w in again.windows) == 0
    assert table_versions(schema, "qb_invoices") == truth_versions(emulator, "Invoice")


def test_newer_version_wins_after_an_edit(emulator: QboEmulator, client_factory, schema):
    client = client_factory(emulator)
    client.backfill("item", RANGE_START, RANGE_END, sink="postgres", dsn=DSN, pg_schema=schema)
    edited = emulator.edit("Item", "3")
    client.backfill("item", RANGE_START, RANGE_END, sink="postgres", dsn=DSN, pg_schema=schema)
    assert table_versions(schema, "qb_items")["3"] == edited["sync_token"]


@pytest.mark.parametrize("bad", ["raw; drop table x", 'Raw"', "Raw", "x" * 64, "", "ráw"])
def test_hostile_schema_names_rejected(emulator: QboEmulator, client_factory, bad):
    with pytest.raises(ConfigError):
        client_factory(emulator).backfill("item", RANGE_START, RANGE_END, sink="postgres", dsn=DSN, pg_schema=bad)
    assert sum(sum(v.values()) for v in emulator.stats()["requests"].values()) == 0


def test_wrong_password_and_missing_privileges_are_named(emulator: QboEmulator, client_factory):
    client = client_factory(emulator)
    wrong = DSN.replace("qbo_test:qbo_test@", "qbo_test:wrong@")
    with pytest.raises(SinkError, match="(?i)password"):
        client.backfill("item", RANGE_START, RANGE_END, sink="postgres", dsn=wrong)
    psql("create schema if not exists raw")
    noperm = DSN.replace("qbo_test:qbo_test@", "qbo_noperm:qbo_noperm@")
    with pytest.raises(SinkError, match="USAGE"):
        client.backfill("item", RANGE_START, RANGE_END, sink="postgres", dsn=noperm)
    assert sum(sum(v.values()) for v in emulator.stats()["requests"].values()) == 0, (
        "the database is checked before QBO"
    )


def test_cli_sink_both(emulator: QboEmulator, schema, tmp_path: Path):
    args = backfill_args("customer", "--sink", "both", "--dsn", DSN, "--pg-schema", schema, "--data-dir", str(tmp_path))
    out = run_cli(args, cli_env(emulator, tmp_path))
    assert out.returncode == 0, out.stderr
    assert (
        table_versions(schema, "qb_customers")
        == landed_versions(read_raw(tmp_path / "customers.txt"))
        == truth_versions(emulator, "Customer")
    )


def test_postgres_writer_handle(emulator: QboEmulator, client_factory, schema):
    import qbo_rs

    writer = qbo_rs.PostgresWriter(DSN, schema=schema)
    assert "qbo_test" in writer.target and "qbo_test:qbo_test" not in repr(writer)
    assert writer.table("Invoice") == f'"{schema}"."qb_invoices"'
    writer.ensure_tables()
    assert psql(f"select count(*) from information_schema.tables where table_schema = '{schema}'") == "3\n"
    report = client_factory(emulator).backfill("customer", RANGE_START, RANGE_END, sink="postgres", postgres=writer)
    assert writer.count("customer") == report.total_rows == len(emulator.truth("Customer"))
    with pytest.raises(ConfigError):
        qbo_rs.PostgresWriter("not a dsn")
    with pytest.raises(ConfigError):
        qbo_rs.PostgresWriter(DSN, schema="Robert'); DROP TABLE x;--")


def test_sigkill_mid_postgres_backfill_then_rerun(schema, tmp_path: Path):

    with QboEmulator(seed=10, invoices=5000, customers=10, items=10, latency_ms=3) as emu:
        env = cli_env(emu, tmp_path)
        args = backfill_args(
            "invoice",
            *("--chunk-days", "30", "--page-size", "40"),
            *("--sink", "postgres", "--dsn", DSN, "--pg-schema", schema, "--no-progress"),
        )
        killed = sigkill_mid_runs(args, env, (0.8, 1.5))
        assert killed >= 1
        done = run_cli(args, env, timeout=240)
        assert done.returncode == 0, done.stderr
        assert table_versions(schema, "qb_invoices") == truth_versions(emu, "Invoice")
