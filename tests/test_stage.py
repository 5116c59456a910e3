"""A window fetched in one step and written in another (Mage's fetch block -> exporter block):
QboClient.stage_window parks it on disk, qbo_rs.export_window writes it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import qbo_rs
from qbo_rs.exceptions import BackfillError, ConfigError, IntegrityError
from qbo_rs.testing import QboEmulator

from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions


def test_staged_then_exported_equals_the_truth_and_cleans_up(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator)
    stage_dir, data = tmp_path / "stage", tmp_path / "data"
    staged = client.stage_window("customer", RANGE_START, RANGE_END, stage_dir=stage_dir, page_size=37)
    truth = truth_versions(emulator, "Customer")
    assert staged.ok and staged.rows_fetched == len(truth) == staged.lines
    assert staged.label == f"customer_backfill_{RANGE_START}"  # what plan_windows calls it
    assert staged.manifest is not None and staged.manifest.parent == stage_dir / "customers"
    manifest = json.loads(staged.manifest.read_text())
    assert manifest["rows_fetched"] == len(truth) and manifest["records_file"] == f"{staged.label}.jsonl"
    assert not data.exists(), "staging writes nothing to the sinks"
    # The fetch held its pages within the default budget (16 MB); 200 customers are far less.
    assert 0 < staged.report.peak_buffer_bytes < 16 << 20

    report = qbo_rs.export_window(staged.manifest, data_dir=data)
    assert report.ok and report.total_rows == len(truth)
    assert report.windows[0].inserted == len(truth) and report.requests == 0
    assert landed_versions(read_raw(data / "customers.txt")) == truth  # inactive customers included
    assert list((stage_dir / "customers").iterdir()) == [], "a written stage is removed"

    with pytest.raises(ConfigError, match="run the fetch step"):
        qbo_rs.export_window(staged, data_dir=data)


def test_staged_lines_are_the_raw_lines_and_a_second_export_changes_nothing(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator)
    client.backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path / "direct", chunk_days=100_000)
    staged = client.stage_window("item", RANGE_START, RANGE_END, stage_dir=tmp_path / "s")
    first = qbo_rs.export_window(staged, data_dir=tmp_path / "data", keep_staged=True)
    again = qbo_rs.export_window(staged, data_dir=tmp_path / "data", keep_staged=True)
    assert first.windows[0].inserted == staged.lines
    assert (again.windows[0].inserted, again.windows[0].updated, again.windows[0].unchanged) == (0, 0, staged.lines)
    staged_lines = read_raw(staged.manifest.with_suffix(".jsonl"))
    exported = read_raw(tmp_path / "data" / "items.txt")
    assert staged_lines == exported
    # The same payloads and lineage as a one-step backfill, down to the byte of the payload.
    direct = read_raw(tmp_path / "direct" / "items.txt")
    assert {k: v["payload"] for k, v in exported.items()} == {k: v["payload"] for k, v in direct.items()}
    assert {v["page_size"] for v in exported.values()} == {100}


def test_a_failed_fetch_stages_nothing_and_removes_an_older_stage(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator, max_retries=1)
    old = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1")
    assert old.manifest is not None and old.manifest.exists()
    emulator.set_knobs(force_429_next=10_000)
    with pytest.raises(BackfillError) as failure:
        client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1")
    assert failure.value.report.failed_windows == ["w1"]
    assert not old.manifest.exists(), "an exporter must never find the stage of an older fetch"
    assert list((tmp_path / "s" / "invoices").iterdir()) == []
    failed = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1", raise_on_failure=False)
    assert not failed.ok and failed.manifest is None and "429" in (failed.report.windows[0].error or "")
    with pytest.raises(ConfigError, match="was not staged"):
        qbo_rs.export_window(failed, data_dir=tmp_path / "data")


@pytest.mark.parametrize("damage", ["truncate", "append"])
def test_a_damaged_stage_is_refused_and_nothing_is_written(emulator: QboEmulator, client_factory, tmp_path: Path, damage: str) -> None:
    staged = client_factory(emulator).stage_window("customer", RANGE_START, RANGE_END, stage_dir=tmp_path / "s")
    records = staged.manifest.with_suffix(".jsonl")
    body = records.read_bytes()
    records.write_bytes(body[: len(body) // 2] if damage == "truncate" else body + body[:200])
    with pytest.raises(IntegrityError, match="re-run the fetch step"):
        qbo_rs.export_window(staged, data_dir=tmp_path / "data")
    assert not (tmp_path / "data" / "customers.txt").exists() or (tmp_path / "data" / "customers.txt").stat().st_size == 0


def test_labels_that_cannot_name_a_file_are_refused(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator)
    for label in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ConfigError, match="cannot name a stage file"):
            client.stage_window("item", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label=label)
    assert emulator.stats()["query_requests"] == 0, "refused before any request"


def test_async_twins_work_under_asyncio_run(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator)

    async def both() -> qbo_rs.BackfillReport:
        staged = await client.stage_window_async("item", RANGE_START, RANGE_END, stage_dir=tmp_path / "s")
        return await qbo_rs.export_window_async(staged.manifest, data_dir=tmp_path / "data")

    report = asyncio.run(both())
    assert report.ok and landed_versions(read_raw(tmp_path / "data" / "items.txt")) == truth_versions(emulator, "Item")


def test_stages_of_plan_windows_add_up_to_the_whole_range(tmp_path: Path, client_factory) -> None:
    with QboEmulator(seed=9, invoices=800, customers=20, items=20) as emu:
        client = client_factory(emu)
        for window in qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=400, entity="invoice"):
            staged = client.stage_window("invoice", window.start, window.end, label=window.label, stage_dir=tmp_path / "s")
            assert staged.label == window.label
            qbo_rs.export_window(staged, data_dir=tmp_path / "data")
        assert landed_versions(read_raw(tmp_path / "data" / "invoices.txt")) == truth_versions(emu, "Invoice")
