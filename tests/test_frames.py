"""RAW files as Arrow, pandas and polars frames (qbo_rs.read_txt): the records and their types."""

from __future__ import annotations

import decimal
import json
from pathlib import Path

import pandas
import polars
import pyarrow
import pytest
from conftest import read_raw

import qbo_rs
from qbo_rs.exceptions import ConfigError
from qbo_rs.testing import QboEmulator


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    """Invoices, customers and items backfilled from the emulator into RAW files."""
    data = tmp_path_factory.mktemp("raw")
    with QboEmulator(seed=3, invoices=2500, customers=120, items=40) as emu:
        client = qbo_rs.QboClient(emu.credentials(), token_store=None, limiter_dir=None)
        for entity in ("invoice", "customer", "item"):
            assert client.backfill(entity, "2015-01-01", "2026-01-01", data_dir=data, fsync=False).ok
    return data


def test_invoices_as_pyarrow_keep_every_record_with_typed_columns(raw_dir: Path):
    table = qbo_rs.read_txt(raw_dir / "invoices.txt").to_pyarrow()
    stored = read_raw(raw_dir / "invoices.txt")
    assert table.num_rows == len(stored) == 2500
    schema = table.schema
    assert schema.field("last_updated_utc").type == pyarrow.timestamp("ms", tz="UTC")
    assert schema.field("txn_date").type == pyarrow.date32()
    assert schema.field("total_amt").type == pyarrow.decimal128(38, 6)
    assert schema.field("deleted_at_utc").type == pyarrow.timestamp("ms", tz="UTC")
    rows = {r["id"]: r for r in table.to_pylist()}
    for rid, line in list(stored.items())[:200]:
        row, payload = rows[rid], line["payload"]
        assert json.loads(row["payload"]) == payload
        assert row["sync_token"] == int(line["sync_token"])
        assert row["last_updated_utc"].isoformat().replace("+00:00", "Z") == line["last_updated_utc"]
        assert row["doc_number"] == payload.get("DocNumber")
        assert row["txn_date"].isoformat() == payload["TxnDate"]
        assert row["total_amt"] == decimal.Decimal(str(payload["TotalAmt"]))
        assert row["balance"] == decimal.Decimal(str(payload["Balance"]))
        assert row["customer_ref"] == payload["CustomerRef"]["value"]
        assert row["deleted_at_utc"] is None


def test_pandas_gets_utc_timestamps_and_decimals(raw_dir: Path):
    frame = qbo_rs.read_txt(raw_dir / "customers.txt").to_pandas()
    assert len(frame) == 120
    assert str(frame["last_updated_utc"].dtype) == "datetime64[ms, UTC]"
    # The volume per day of last update, the obvious first look, works as written.
    per_day = frame.groupby(frame["last_updated_utc"].dt.date).size()
    assert per_day.sum() == 120
    assert frame["active"].dtype == bool and (~frame["active"]).sum() == 12  # 10 % inactive
    assert all(isinstance(b, decimal.Decimal) for b in frame["balance"].dropna())
    assert isinstance(frame, pandas.DataFrame)


def test_polars_reads_the_stream_without_pyarrow_in_between(raw_dir: Path):
    raw = qbo_rs.read_txt(raw_dir / "items.txt", batch_rows=7)
    frame = raw.to_polars()
    assert isinstance(frame, polars.DataFrame)
    assert frame.height == 40 and raw.entity == "item"
    assert frame.schema["unit_price"] == polars.Decimal(38, 6)
    assert set(raw.typed_fields) == {"name", "type", "active", "unit_price"}
    assert set(frame["id"].to_list()) == set(read_raw(raw_dir / "items.txt"))
    # The stream is made afresh each time: read again, the same records.
    assert raw.to_polars().equals(frame)


def test_a_bad_path_or_line_says_what_is_wrong(tmp_path: Path, raw_dir: Path):
    with pytest.raises(ConfigError, match="No such file"):
        qbo_rs.read_txt(tmp_path / "invoices.txt")
    with pytest.raises(ConfigError, match="unknown entity"):
        qbo_rs.read_txt(raw_dir / "items.txt", entity="bill")
    broken = tmp_path / "customers.txt"
    broken.write_text((raw_dir / "customers.txt").read_text().splitlines()[0] + "\n{oops\n")
    with pytest.raises(pyarrow.ArrowInvalid, match="customers.txt line 2"):
        qbo_rs.read_txt(broken).to_pyarrow()
