"""A backfill's progress events (``on_progress=``) against the emulator: every planned window,
the counts they carry, a callback that raises, and the default bar's choice of place."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import RANGE_END, RANGE_START, truth_versions

import qbo_rs
from qbo_rs import progress
from qbo_rs.exceptions import ConfigError
from qbo_rs.testing import QboEmulator


def check_events(events: List[qbo_rs.ProgressEvent], report: qbo_rs.BackfillReport, planned: List[str]) -> None:
    kinds = [e.kind for e in events]
    assert kinds[0] == "plan" and events[0].windows_total == len(planned)
    estimate = next(e for e in events if e.kind == "estimate")
    assert report.estimate is not None and estimate.records_estimated == report.estimate.records
    assert estimate.requests_estimated == report.estimate.requests
    done = [e for e in events if e.kind == "window_done"]
    assert [e.window for e in done] == planned, "one window_done per planned window, in plan order"
    assert [e.rows for e in done] == [w.rows_written for w in report.windows]
    assert [e.status for e in done] == [w.status for w in report.windows]
    assert [e.windows_done for e in done] == list(range(1, len(planned) + 1))
    committed = [e.rows for e in events if e.kind == "committed"]
    assert sum(committed) == report.total_rows == events[-1].records_committed
    assert sum(e.rows for e in events if e.kind == "rows") == events[-1].records_fetched
    assert events[-1].requests == report.requests
    assert all(a.elapsed_s <= b.elapsed_s for a, b in zip(events, events[1:]))


def test_callback_sees_every_window(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    planned = [w.label for w in qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=120, entity="invoice")]
    events: List[qbo_rs.ProgressEvent] = []
    report = client.backfill(
        "invoice", RANGE_START, RANGE_END, chunk_days=120, page_size=100, data_dir=tmp_path, on_progress=events.append
    )
    assert report.ok and report.total_rows == len(truth_versions(emulator, "Invoice"))
    check_events(events, report, planned)


def test_async_twins_and_the_one_call_backfill_send_events(emulator: QboEmulator, client_factory, tmp_path: Path):
    client = client_factory(emulator)
    planned = [w.label for w in qbo_rs.plan_windows(RANGE_START, RANGE_END, chunk_days=365, entity="item")]
    events: List[qbo_rs.ProgressEvent] = []
    report = asyncio.run(
        client.backfill_async(
            "item", RANGE_START, RANGE_END, chunk_days=365, data_dir=tmp_path / "a", on_progress=events.append
        )
    )
    check_events(events, report, planned)

    # The one-call backfill, blocking and awaited in a running loop (as in a notebook cell).
    one_call: Dict[str, Any] = dict(
        credentials=emulator.credentials(), token_store=None, requests_per_minute=600_000, chunk_days=365
    )
    blocking: List[qbo_rs.ProgressEvent] = []
    report = qbo_rs.backfill(
        "item", RANGE_START, RANGE_END, data_dir=tmp_path / "b", on_progress=blocking.append, **one_call
    )
    check_events(blocking, report, planned)

    async def in_a_running_loop() -> qbo_rs.BackfillReport:
        return await qbo_rs.backfill_async(
            "item", RANGE_START, RANGE_END, data_dir=tmp_path / "c", on_progress=awaited.append, **one_call
        )

    awaited: List[qbo_rs.ProgressEvent] = []
    check_events(awaited, asyncio.run(in_a_running_loop()), planned)


def test_throttled_waits_are_in_the_events(emulator: QboEmulator, client_factory, tmp_path: Path):
    emulator.set_knobs(force_429_next=3)
    events: List[qbo_rs.ProgressEvent] = []
    report = client_factory(emulator).backfill(
        "customer", RANGE_START, RANGE_END, data_dir=tmp_path, on_progress=events.append
    )
    assert report.ok and report.throttled >= 3
    last = events[-1]
    assert last.throttled == report.throttled and last.retries == report.retries
    # backoff_base is 0.01 s: three retries wait at least 0.01 + 0.02 + 0.04 s.
    assert last.wait_s >= 0.07


def test_a_raising_callback_is_logged_once_and_the_run_goes_on(
    emulator: QboEmulator, client_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    calls: List[str] = []

    def broken(event: qbo_rs.ProgressEvent) -> None:
        calls.append(event.kind)
        raise ValueError("a broken progress display")

    with caplog.at_level(logging.WARNING, logger="qbo_rs"):
        report = client_factory(emulator).backfill(
            "invoice", RANGE_START, RANGE_END, chunk_days=200, data_dir=tmp_path, on_progress=broken
        )
    assert report.ok and report.total_rows == len(truth_versions(emulator, "Invoice"))
    assert calls == ["plan"], "not called again after it raised"
    warnings = [r for r in caplog.records if "on_progress raised" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].exc_info is not None and "a broken progress display" in str(warnings[0].exc_info[1])


def test_the_bar_redraws_one_line_and_ends_at_the_records_committed(
    emulator: QboEmulator, client_factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    report = client_factory(emulator).backfill("item", RANGE_START, RANGE_END, data_dir=tmp_path, on_progress=True)
    err = capsys.readouterr().err
    bar = [line for line in err.split("\n") if "committed" in line]
    assert len(bar) == 1, f"one line, redrawn in place: {err!r}"
    last = bar[0].split("\r")[-1]
    assert f"{report.total_rows}/{report.total_rows}" in last and "windows=" in last and "requests=" in last


def test_no_bar_outside_a_notebook_and_choices_checked():
    assert not progress.in_jupyter_kernel()
    options, context = progress.resolve({"chunk_days": 5})
    assert options == {"chunk_days": 5}
    assert progress.resolve({"on_progress": False})[0] == {}
    assert progress.resolve({"on_progress": None})[0] == {}
    assert progress.resolve({"on_progress": print})[0] == {"on_progress": print}
    with pytest.raises(ConfigError, match="on_progress must be a callable"):
        progress.resolve({"on_progress": "yes"})


def test_import_loads_no_frame_or_display_library():
    heavy = ["pyarrow", "pandas", "polars", "tqdm", "matplotlib", "IPython", "numpy"]
    code = f"import sys, qbo_rs; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_wheel_requires_nothing_outside_its_notebook_extra():
    requires = importlib.metadata.requires("qbo_rs") or []
    assert {r.split(";")[0].split(">")[0].strip() for r in requires} == {
        "pyarrow",
        "pandas",
        "polars",
        "tqdm",
        "matplotlib",
    }
    assert all('extra == "notebook"' in r.replace("'", '"') for r in requires), requires


def test_twins_show_the_call_signature_and_the_async_one_is_a_coroutine():
    import inspect

    for name in ("backfill", "read", "estimate", "fetch_window", "stage_window", "plan_shares", "stage_share"):
        blocking, awaited = getattr(qbo_rs.QboClient, name), getattr(qbo_rs.QboClient, f"{name}_async")
        assert not inspect.iscoroutinefunction(blocking) and inspect.iscoroutinefunction(awaited)
        assert inspect.signature(blocking) == inspect.signature(awaited)
        assert list(inspect.signature(blocking).parameters)[:1] == ["self"]
        assert "_Call" not in str(inspect.signature(blocking))
    assert str(inspect.signature(qbo_rs.QboClient.backfill)).endswith("-> 'BackfillReport'")
    assert "credentials" in inspect.signature(qbo_rs.backfill_async).parameters
