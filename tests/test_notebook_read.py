"""QboClient.read: a range read by the backfill's engine into Arrow frames in memory, checked
against the emulator's truth and against read_txt of a backfill of the same records."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import polars
import pyarrow
from conftest import RANGE_END, RANGE_START, truth_versions

import qbo_rs
from qbo_rs.testing import QboEmulator

# Columns a read and a backfill of the same records share value for value (a backfill stamps
# its own ingestion time; page numbers follow the read's pages).
SAME = [
    "id",
    "realm_id",
    "entity",
    "last_updated_utc",
    "sync_token",
    "extract_window_start_utc",
    "extract_window_end_utc",
]


def by_id(table: pyarrow.Table) -> pyarrow.Table:
    return table.sort_by("id")


def test_read_equals_the_truth_and_the_backfilled_file(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    read = client.read("invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=100, on_progress=False)
    assert read.ok and read.report.total_rows == read.num_rows
    table = read.to_pyarrow()
    truth = {row["id"]: row for row in emulator.truth("Invoice")}
    assert dict(zip(table["id"].to_pylist(), map(str, table["sync_token"].to_pylist()))) == truth_versions(
        emulator, "Invoice"
    )
    stamps = [t.isoformat().replace("+00:00", "Z") for t in table["last_updated_utc"].to_pylist()]
    assert stamps == [truth[rid]["last_updated_utc"] for rid in table["id"].to_pylist()]

    client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=100, data_dir=tmp_path)
    landed = by_id(qbo_rs.read_txt(tmp_path / "invoices.txt").to_pyarrow())
    table = by_id(table)
    assert table.schema == landed.schema
    for column in SAME + read.typed_fields:
        assert table[column].equals(landed[column]), column
    payloads = [json.loads(p) for p in table["payload"].to_pylist()]
    assert payloads == [json.loads(p) for p in landed["payload"].to_pylist()]
    assert set(table["page_size"].to_pylist()) == {100}
    assert table["deleted_at_utc"].null_count == table.num_rows


def test_read_frames_in_pandas_and_polars_and_awaited(emulator: QboEmulator, client_factory):
    client = client_factory(emulator)
    read = client.read("customer", RANGE_START, RANGE_END, on_progress=False)
    frame = read.to_pandas()
    assert len(frame) == len(emulator.truth("Customer")) == read.num_rows
    assert str(frame["last_updated_utc"].dtype) == "datetime64[ms, UTC]"
    assert polars.DataFrame(read).height == len(frame)
    assert read.to_polars()["display_name"].to_list() == frame["display_name"].to_list()
    # The table is held: every consumer gets the same records again.
    assert read.to_pyarrow().num_rows == len(frame)

    awaited = asyncio.run(client.read_async("item", RANGE_START, RANGE_END, on_progress=False))
    assert awaited.num_rows == len(emulator.truth("Item"))
    assert awaited.report.windows and all(w.ok for w in awaited.report.windows)


def test_edited_records_are_held_once_at_their_newest_version(client_factory):
    with QboEmulator(seed=5, invoices=3000, customers=50, items=20, edit_rate=0.25) as emu:
        read = client_factory(emu).read("invoice", RANGE_START, RANGE_END, chunk_days=400, page_size=50)
        assert read.ok and emu.stats()["edits"] > 0
        emu.set_knobs(edit_rate=0.0)
        table = read.to_pyarrow()
        ids = table["id"].to_pylist()
        assert len(ids) == len(set(ids)), "an id held twice"
        truth = truth_versions(emu, "Invoice")
        assert set(ids) == set(truth), "an id was lost while records were edited"
        # Each id's version is one QuickBooks held during the read: never newer than the last.
        held = dict(zip(ids, table["sync_token"].to_pylist()))
        assert all(held[rid] <= int(token) for rid, token in truth.items())
        assert read.report.total_rows >= len(ids)
