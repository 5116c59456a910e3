"""read_postgres: a PostgreSQL RAW table as the same Arrow object as read_txt's, checked against
the emulator's truth and against read_txt of the same records (make test starts PostgreSQL; CI
never skips)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars
import pyarrow
import pytest
from conftest import PG_DSN, RANGE_END, RANGE_START, psql, truth_versions

import qbo_rs
from qbo_rs.exceptions import ConfigError, SinkError
from qbo_rs.testing import QboEmulator

if not PG_DSN:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_TEST_DSN is not set: `make test` starts PostgreSQL itself")
    pytest.skip("no PostgreSQL: set QBO_RS_TEST_DSN or run `make test`", allow_module_level=True)


def by_id(table: pyarrow.Table) -> pyarrow.Table:
    return table.sort_by("id")


def test_a_table_reads_as_the_file_of_the_same_backfill(emulator: QboEmulator, client_factory, schema, tmp_path: Path):
    client = client_factory(emulator)
    report = client.backfill(
        "invoice", RANGE_START, RANGE_END, sink="both", dsn=PG_DSN, pg_schema=schema, data_dir=tmp_path
    )
    assert report.ok

    raw = qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema, batch_rows=1000)
    assert raw.entity == "invoice" and f'"{schema}"."qb_invoices"' in repr(raw)
    table = raw.to_pyarrow()
    landed = qbo_rs.read_txt(tmp_path / "invoices.txt").to_pyarrow()
    assert table.schema == landed.schema
    # Read in batches of batch_rows, not one buffer.
    batches = pyarrow.RecordBatchReader.from_stream(raw).read_all().to_batches()
    assert len(batches) > 1 and max(b.num_rows for b in batches) == 1000

    table, landed = by_id(table), by_id(landed)
    versions = dict(zip(table["id"].to_pylist(), map(str, table["sync_token"].to_pylist())))
    assert versions == truth_versions(emulator, "Invoice")
    for column in table.column_names:
        if column != "payload":
            assert table[column].equals(landed[column]), column
    # JSONB reorders keys; the value is the record received.
    assert [json.loads(p) for p in table["payload"].to_pylist()] == [
        json.loads(p) for p in landed["payload"].to_pylist()
    ]
    assert table["total_amt"].type == pyarrow.decimal128(38, 6)


def test_deleted_rows_realms_and_frames(emulator: QboEmulator, client_factory, schema):
    client = client_factory(emulator)
    client.sync("invoice", sink="postgres", dsn=PG_DSN, pg_schema=schema)
    gone = sorted(row["id"] for row in emulator.truth("Invoice"))[:3]
    for rid in gone:
        emulator.delete("invoice", rid)
    report = client.sync("invoice", sink="postgres", dsn=PG_DSN, pg_schema=schema)
    assert report.deleted == 3

    everything = qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema).to_pandas()
    deleted = everything[everything["deleted_at_utc"].notna()]
    assert sorted(deleted["id"]) == gone
    assert str(everything["deleted_at_utc"].dtype) == "datetime64[ms, UTC]"

    live = qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema, live_only=True).to_polars()
    assert live.height == len(everything) - 3 == len(emulator.truth("Invoice"))
    assert not set(gone) & set(live["id"].to_list())

    realm = emulator.realm_id
    assert qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema, realm_id=realm).to_pyarrow().num_rows == len(
        everything
    )
    assert qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema, realm_id="0").to_pyarrow().num_rows == 0
    # An empty read still has the entity's columns.
    assert polars.DataFrame(qbo_rs.read_postgres("invoice", dsn=PG_DSN, pg_schema=schema, realm_id="0")).columns == (
        everything.columns.tolist()
    )


def test_a_writer_names_the_tables_and_each_stream_reads_afresh(emulator: QboEmulator, client_factory, schema):
    writer = qbo_rs.PostgresWriter(PG_DSN, schema=schema, table_prefix="nb_")
    client = client_factory(emulator)
    client.backfill("customer", RANGE_START, RANGE_END, sink="postgres", postgres=writer)
    raw = qbo_rs.read_postgres("customer", postgres=writer)
    assert raw.to_pyarrow().num_rows == len(emulator.truth("Customer")) == writer.count("customer")
    psql(f'delete from "{schema}"."nb_customers" where id in (select id from "{schema}"."nb_customers" limit 5)')
    assert raw.to_pyarrow().num_rows == len(emulator.truth("Customer")) - 5


def test_what_cannot_be_read_says_what_to_fix(schema):
    with pytest.raises(ConfigError, match=rf'"{schema}"\."qb_items" does not exist: nothing was written there yet'):
        qbo_rs.read_postgres("item", dsn=PG_DSN, pg_schema=schema)
    with pytest.raises(ConfigError, match='unknown option "sink"'):
        qbo_rs.read_postgres("item", dsn=PG_DSN, pg_schema=schema, sink="postgres")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="batch_rows must be at least 1"):
        qbo_rs.read_postgres("item", dsn=PG_DSN, pg_schema=schema, batch_rows=0)
    with pytest.raises(ConfigError, match="unknown entity"):
        qbo_rs.read_postgres("bill", dsn=PG_DSN)
    wrong = PG_DSN.replace("qbo_test:qbo_test@", "qbo_test:wrong@")
    with pytest.raises(SinkError, match="refused the login") as refused:
        qbo_rs.read_postgres("item", dsn=wrong, pg_schema=schema)
    assert "wrong" not in str(refused.value)
