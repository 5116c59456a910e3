"""A window fetched in one step and written in another (Mage's fetch block -> exporter block):
QboClient.stage_window parks it on disk, qbo_rs.export_window writes it."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions

import qbo_rs
from qbo_rs.exceptions import BackfillError, ConfigError, IntegrityError
from qbo_rs.testing import QboEmulator


def test_staged_then_exported_equals_the_truth_and_leaves_a_receipt(
    emulator: QboEmulator, client_factory, tmp_path: Path
) -> None:
    client = client_factory(emulator)
    stage_dir, data = tmp_path / "stage", tmp_path / "data"
    staged = client.stage_window("customer", RANGE_START, RANGE_END, stage_dir=stage_dir, page_size=37)
    truth = truth_versions(emulator, "Customer")
    assert staged.ok and staged.rows_fetched == len(truth) == staged.lines and not staged.reused
    assert staged.label == f"customer_backfill_{RANGE_START}"  # what plan_windows calls it
    assert staged.manifest is not None and staged.manifest.parent.parent == stage_dir / "customers"
    manifest = json.loads(staged.manifest.read_text())
    assert manifest["rows_fetched"] == len(truth) and manifest["records_file"] == f"{staged.label}.jsonl"
    assert not data.exists(), "staging writes nothing to the sinks"
    # The fetch held its pages within the default budget (16 MB); 200 customers are far less.
    assert 0 < staged.report.peak_buffer_bytes < 16 << 20

    report = qbo_rs.export_window(staged.manifest, data_dir=data)
    assert report.ok and report.total_rows == len(truth)
    assert report.windows[0].inserted == len(truth) and report.requests == 0
    assert landed_versions(read_raw(data / "customers.txt")) == truth  # inactive customers included
    assert stage_files(stage_dir) == [], "a written stage is removed"
    assert receipts(stage_dir) == [f"{staged.label}.receipt"]

    # An export run again (a step executed twice) ends as the first did, writing nothing.
    before = (data / "customers.txt").read_bytes()
    again = qbo_rs.export_window(staged, data_dir=data)
    assert again.to_dict()["windows"][0] | {"duration_s": 0} == report.to_dict()["windows"][0] | {"duration_s": 0}
    assert again.targets == report.targets and (data / "customers.txt").read_bytes() == before
    # ... but a sink the first export did not write is refused: the stage is gone.
    with pytest.raises(ConfigError, match="run its fetch step again"):
        qbo_rs.export_window(staged, sink="both", data_dir=data, dsn="postgresql://u:p@127.0.0.1:9/db")


def stage_files(stage_dir: Path) -> list:
    """Staged records and manifests (and partial files) under ``stage_dir``, by name."""
    return sorted(p.name for p in stage_dir.rglob("*") if p.suffix in (".json", ".jsonl", ".partial"))


def receipts(stage_dir: Path) -> list:
    return sorted(p.name for p in stage_dir.rglob("*.receipt"))


def test_staged_lines_are_the_raw_lines_and_a_second_export_changes_nothing(
    emulator: QboEmulator, client_factory, tmp_path: Path
) -> None:
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
    assert {v["page_size"] for v in exported.values()} == {1000}  # the default


def test_a_failed_fetch_stages_nothing_and_leaves_other_stages_alone(
    emulator: QboEmulator, client_factory, tmp_path: Path
) -> None:
    client = client_factory(emulator, max_retries=1)
    old = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1")
    assert old.manifest is not None and old.manifest.exists()
    emulator.set_knobs(force_429_next=10_000)
    with pytest.raises(BackfillError) as failure:
        client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1")
    assert failure.value.report.failed_windows == ["w1"]
    # Each fetch touches only files it created: the earlier stage is still there to export.
    assert stage_files(tmp_path / "s") == ["w1.json", "w1.jsonl"]
    failed = client.stage_window(
        "invoice", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label="w1", raise_on_failure=False
    )
    assert not failed.ok and failed.manifest is None and "429" in (failed.report.windows[0].error or "")
    with pytest.raises(ConfigError, match="was not staged"):
        qbo_rs.export_window(failed, data_dir=tmp_path / "data")
    emulator.set_knobs(force_429_next=0)
    assert qbo_rs.export_window(old, data_dir=tmp_path / "data").total_rows == old.rows_fetched
    assert landed_versions(read_raw(tmp_path / "data" / "invoices.txt")) == truth_versions(emulator, "Invoice")


def test_a_step_repeated_with_its_run_id_asks_qbo_nothing_and_ends_as_the_first(
    emulator: QboEmulator, client_factory, tmp_path: Path
) -> None:
    """Orchestrators run a step at least once (Mage has run a finished block run again): a fetch
    or an export repeated with the same run id returns what the first one did."""
    client = client_factory(emulator)
    stage_dir, data = tmp_path / "s", tmp_path / "data"
    first = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=stage_dir, run_id="run-7")
    sent = emulator.stats()["query_requests"]
    assert first.ok and not first.reused and first.report.requests > 0
    again = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=stage_dir, run_id="run-7")
    assert again.reused and again.manifest == first.manifest and again.lines == first.lines
    assert again.rows_fetched == first.rows_fetched and again.report.requests == 0
    assert emulator.stats()["query_requests"] == sent
    written = qbo_rs.export_window(first, data_dir=data)
    # After the export, a repeated fetch answers from the receipt and its export from the receipt too.
    after = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=stage_dir, run_id="run-7")
    assert after.reused and after.manifest == first.manifest and not after.manifest.exists()
    repeated = qbo_rs.export_window(after, data_dir=data)
    assert repeated.windows[0].inserted == written.windows[0].inserted == first.lines
    assert emulator.stats()["query_requests"] == sent
    assert landed_versions(read_raw(data / "invoices.txt")) == truth_versions(emulator, "Invoice")
    # Another run id fetches afresh; the same run id for another window is refused.
    fresh = client.stage_window("invoice", RANGE_START, RANGE_END, stage_dir=stage_dir, run_id="run-8")
    assert not fresh.reused and emulator.stats()["query_requests"] > sent
    with pytest.raises(ConfigError, match="use another run id"):
        client.stage_window("invoice", "2020-01-01", RANGE_END, stage_dir=stage_dir, run_id="run-8", label=fresh.label)


def test_two_fetches_of_one_label_at_once_never_undo_each_other(client_factory, tmp_path: Path) -> None:
    """A retry or manual run while a scheduled one runs, or two runs sharing a stage folder."""
    stage_dir = tmp_path / "s"
    with QboEmulator(seed=3, invoices=900) as healthy, QboEmulator(seed=3, invoices=900) as failing:
        failing.set_knobs(force_429_next=1_000_000, latency_ms=20)
        good, bad = client_factory(healthy), client_factory(failing, max_retries=2, token_store=None)
        with ThreadPoolExecutor(2) as pool:
            winner = pool.submit(good.stage_window, "invoice", RANGE_START, RANGE_END, stage_dir=stage_dir, label="w")
            loser = pool.submit(
                bad.stage_window,
                "invoice",
                RANGE_START,
                RANGE_END,
                stage_dir=stage_dir,
                label="w",
                raise_on_failure=False,
            )
            won, lost = winner.result(), loser.result()
        assert won.ok and not lost.ok
        assert stage_files(stage_dir) == ["w.json", "w.jsonl"], "the failed fetch removed nothing of the winner's"
        assert qbo_rs.export_window(won, data_dir=tmp_path / "data").ok
        assert landed_versions(read_raw(tmp_path / "data" / "invoices.txt")) == truth_versions(healthy, "Invoice")

        # The same run id at once: one fetches, the other waits for it and gets its stage.
        healthy.set_knobs(latency_ms=20)
        before = healthy.stats()["query_requests"]
        with ThreadPoolExecutor(2) as pool:
            both = [
                pool.submit(
                    good.stage_window,
                    "invoice",
                    RANGE_START,
                    RANGE_END,
                    stage_dir=stage_dir,
                    label="w",
                    run_id="shared",
                )
                for _ in range(2)
            ]
            results = [f.result() for f in both]
        assert sorted(r.reused for r in results) == [False, True]
        assert results[0].manifest == results[1].manifest
        fetched = next(r for r in results if not r.reused)
        assert healthy.stats()["query_requests"] - before == fetched.report.requests


@pytest.mark.parametrize("damage", ["truncate", "append"])
def test_a_damaged_stage_is_refused_and_nothing_is_written(
    emulator: QboEmulator, client_factory, tmp_path: Path, damage: str
) -> None:
    staged = client_factory(emulator).stage_window("customer", RANGE_START, RANGE_END, stage_dir=tmp_path / "s")
    records = staged.manifest.with_suffix(".jsonl")
    body = records.read_bytes()
    records.write_bytes(body[: len(body) // 2] if damage == "truncate" else body + body[:200])
    with pytest.raises(IntegrityError, match="re-run the fetch step"):
        qbo_rs.export_window(staged, data_dir=tmp_path / "data")
    assert (
        not (tmp_path / "data" / "customers.txt").exists() or (tmp_path / "data" / "customers.txt").stat().st_size == 0
    )


def test_labels_that_cannot_name_a_file_are_refused(emulator: QboEmulator, client_factory, tmp_path: Path) -> None:
    client = client_factory(emulator)
    for label in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(ConfigError, match="cannot name a stage file"):
            client.stage_window("item", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", label=label)
    for run_id in ("../escape", "a/b", ".hidden"):
        with pytest.raises(ConfigError, match="cannot name a stage file"):
            client.stage_window("item", RANGE_START, RANGE_END, stage_dir=tmp_path / "s", run_id=run_id)
    assert emulator.stats()["query_requests"] == 0, "refused before any request"
    assert not (tmp_path / "s").exists(), "and before any file"


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
            staged = client.stage_window(
                "invoice", window.start, window.end, label=window.label, stage_dir=tmp_path / "s"
            )
            assert staged.label == window.label
            qbo_rs.export_window(staged, data_dir=tmp_path / "data")
        assert landed_versions(read_raw(tmp_path / "data" / "invoices.txt")) == truth_versions(emu, "Invoice")
