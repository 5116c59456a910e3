"""End to end against the bundled emulator: what lands equals the emulator's ground truth."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.testing import QboEmulator

ENTITIES = [
    ("invoice", "Invoice", "invoices.txt"),
    ("customer", "Customer", "customers.txt"),
    ("item", "Item", "items.txt"),
]


@pytest.mark.parametrize("slug,entity,filename", ENTITIES)
def test_lands_exactly_the_ground_truth(emulator: QboEmulator, client_factory, tmp_path: Path, slug, entity, filename):
    client = client_factory(emulator)
    report = client.backfill(slug, RANGE_START, RANGE_END, chunk_days=50, page_size=100, data_dir=tmp_path / "data")
    landed = read_raw(tmp_path / "data" / filename)
    truth = truth_versions(emulator, entity)
    assert landed_versions(landed) == truth
    assert report.ok and report.total_rows == len(truth)
    if entity != "Invoice":
        inactive = {r["id"] for r in emulator.truth(entity) if not r["active"]}
        assert inactive, "the emulator should hold inactive list records"
        assert inactive <= set(landed), "inactive records must not be silently dropped"


def test_raw_line_shape_and_utc_lineage(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=50, data_dir=tmp_path)
    records = read_raw(tmp_path / "invoices.txt")
    one = next(iter(records.values()))
    for key in (
        "id",
        "ingested_at_utc",
        "extract_window_start_utc",
        "extract_window_end_utc",
        "page_number",
        "page_size",
        "payload",
    ):
        assert key in one
    assert one["page_size"] == 50
    assert one["payload"]["Id"] == one["id"]
    assert one["last_updated_utc"].endswith("Z")
    assert one["extract_window_start_utc"] <= one["last_updated_utc"] < one["extract_window_end_utc"]
    # The payload is QBO's, untouched: Pacific offsets stay in it.
    assert one["payload"]["MetaData"]["LastUpdatedTime"][-6:] in ("-08:00", "-07:00")


def test_rerun_in_any_order_changes_nothing(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=200, data_dir=tmp_path)
    before = (tmp_path / "invoices.txt").read_bytes()
    plan = qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=200)
    labels = [w.label for w in plan]
    again = client.backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=200, data_dir=tmp_path, windows=list(reversed(labels[:5]))
    )
    assert again.ok
    assert sum(w.inserted + w.updated for w in again.windows) == 0
    assert (tmp_path / "invoices.txt").read_bytes() == before


def test_one_window_rerun_by_label(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    plan = qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=365)
    report = client.backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=365, data_dir=tmp_path, windows=[plan[3].label]
    )
    assert [w.label for w in report.windows] == [plan[3].label]
    landed = read_raw(tmp_path / "invoices.txt")
    assert landed and all(
        plan[3].start.isoformat().replace("+00:00", "Z") == r["extract_window_start_utc"] for r in landed.values()
    )


def test_one_label_as_a_plain_string_is_one_window(emulator: QboEmulator, client_factory, tmp_path: Path):
    label = qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=365)[3].label
    report = client_factory(emulator).backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=365, data_dir=tmp_path, windows=label
    )
    assert [w.label for w in report.windows] == [label]


def test_the_one_call_backfill_takes_every_option_of_the_client_and_the_backfill(
    emulator: QboEmulator, tmp_path: Path, monkeypatch
):
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    report = qbo_rs.backfill(
        "invoice",
        RANGE_START,
        RANGE_END,
        fsync=False,
        max_buffer_mb=1,
        max_concurrent_windows=2,
        chunk_days=400,
        page_size=200,
        data_dir=tmp_path,
        token_store=tmp_path / "t.json",
        requests_per_minute=100_000,
        limiter_dir=None,
        backoff_base=0.01,
    )
    assert report.ok and 0 < report.peak_buffer_bytes <= (1 << 20) + 2 * 200 * 4096
    assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emulator, "Invoice")
    with pytest.raises(qbo_rs.exceptions.ConfigError, match="unknown option"):
        qbo_rs.backfill("invoice", RANGE_START, RANGE_END, data_dir=tmp_path, token_store=None, chunk_dayz=5)  # type: ignore[call-arg]


def test_edits_during_paging_lose_nothing(client_factory, tmp_path: Path):
    with QboEmulator(seed=5, invoices=3000, customers=50, items=20, edit_rate=0.25) as emu:
        client = client_factory(emu)
        report = client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=400, page_size=50, data_dir=tmp_path)
        assert report.ok
        assert emu.stats()["edits"] > 0, "the emulator must actually have edited records"
        emu.set_knobs(edit_rate=0.0)
        landed = read_raw(tmp_path / "invoices.txt")
        truth = truth_versions(emu, "Invoice")
        assert set(landed) == set(truth), "an id was lost while records were edited"
        # A re-run after the edits stop converges to the exact truth.
        client.backfill("invoice", RANGE_START, RANGE_END, chunk_days=400, page_size=50, data_dir=tmp_path)
        assert landed_versions(read_raw(tmp_path / "invoices.txt")) == truth_versions(emu, "Invoice")


def test_async_twin_under_asyncio_run(emulator: QboEmulator, tmp_path: Path, monkeypatch):
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QBO_TOKEN_STORE", str(tmp_path / "tokens.json"))
    report = asyncio.run(
        qbo_rs.backfill_async("customer", RANGE_START, RANGE_END, data_dir=tmp_path, requests_per_minute=100000)
    )
    assert report.ok
    assert landed_versions(read_raw(tmp_path / "customers.txt")) == truth_versions(emulator, "Customer")


def test_fetch_window_for_notebooks(emulator: QboEmulator, client_factory):
    client = client_factory(emulator)
    records = client.fetch_window("item", RANGE_START, RANGE_END, page_size=30)
    assert {r["Id"] for r in records} == {r["id"] for r in emulator.truth("Item")}
    assert client.count("item", RANGE_START, RANGE_END) == len(records)
    records_async = asyncio.run(client.fetch_window_async("item", RANGE_START, RANGE_END))
    assert len(records_async) == len(records)


def test_report_is_small_and_serialisable(emulator: QboEmulator, client_factory, tmp_path: Path):
    report = client_factory(emulator).backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path)
    as_dict = report.to_dict()
    json.dumps(as_dict)
    assert as_dict["total_rows"] == report.total_rows and as_dict["ok"] is True


def test_memory_budget_bounds_the_records_held(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    # 1 MB holds a few pages of 100 invoices: the windows take turns, and nothing is lost.
    tight = client.backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=365, page_size=100, max_buffer_mb=1, data_dir=tmp_path / "tight"
    )
    landed = read_raw(tmp_path / "tight" / "invoices.txt")
    assert tight.ok and landed_versions(landed) == truth_versions(emulator, "Invoice")
    # Each of the 4 windows may go over by one page (one it had not reserved enough for).
    largest_payload = max(len(json.dumps(r["payload"], separators=(",", ":"))) for r in landed.values())
    bound = (1 << 20) + 4 * 100 * largest_payload
    assert 0 < tight.peak_buffer_bytes <= bound, (tight.peak_buffer_bytes, bound)
    assert tight.to_dict()["peak_buffer_bytes"] == tight.peak_buffer_bytes
