"""The typed face: windows, exceptions kept in sync, nothing at import time."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timezone

import pytest

import qbo_rs
from qbo_rs import exceptions


def test_plan_windows_tiles_the_range():
    windows = qbo_rs.plan_windows("2024-02-27", date(2024, 3, 2), chunk_days=1, entity="Customer")
    assert [w.label for w in windows] == [
        "customer_backfill_2024-02-27",
        "customer_backfill_2024-02-28",
        "customer_backfill_2024-02-29",
        "customer_backfill_2024-03-01",
    ]
    assert windows[0].start == datetime(2024, 2, 27, tzinfo=timezone.utc)
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    assert windows[-1].end == datetime(2024, 3, 2, tzinfo=timezone.utc)
    assert windows[0].range_text == "Rango 2024-02-27 a 2024-02-28"


def test_offsets_are_converted_to_utc():
    (w,) = qbo_rs.plan_windows("2024-07-01T00:00:00-07:00", datetime(2024, 7, 2, 7, tzinfo=timezone.utc), chunk_days=5)
    assert w.start == datetime(2024, 7, 1, 7, tzinfo=timezone.utc)


def test_plan_resolves_a_backfills_options_with_the_engines_defaults():
    plan = qbo_rs.plan("item", "2025-01-01", "2025-12-31")
    assert (plan.entity, plan.page_size, plan.chunk_days, plan.filter_field) == ("item", 1000, 50, "LastUpdatedTime")
    assert (plan.max_concurrent_windows, plan.max_buffer_mb, plan.max_requests) == (4, 16, None)
    assert [w.label for w in plan.windows] == [
        w.label for w in qbo_rs.plan_windows("2025-01-01", "2025-12-31", None, "item")
    ]
    assert len(plan.windows) == 8 and plan.windows[0].label == "item_backfill_2025-01-01"

    chosen = qbo_rs.plan(
        "invoice",
        "2025-01-01",
        "2025-03-01",
        chunk_days=30,
        page_size=200,
        filter_field="TxnDate",
        windows="invoice_backfill_2025-01-31",
        max_requests=9,
    )
    assert (chosen.chunk_days, chosen.page_size, chosen.filter_field, chosen.max_requests) == (30, 200, "TxnDate", 9)
    assert [w.label for w in chosen.windows] == ["invoice_backfill_2025-01-31"]
    assert chosen.start == datetime(2025, 1, 1, tzinfo=timezone.utc) and "windows=1" in repr(chosen)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"page_size": 5000}, "page_size must be between 1 and 1000"),
        ({"chunk_days": 0}, "chunk_days must be at least 1"),
        ({"page_size": "50"}, 'page_size must be a whole number, not a string "50"'),
        ({"filter_field": "TxnDate"}, "filter field TxnDate does not exist on Customer"),
        ({"windows": ["customer_backfill_1999-01-01"]}, 'no window is labelled "customer_backfill_1999-01-01"'),
        ({"sink": "txt"}, 'unknown option "sink"'),
    ],
)
def test_plan_refuses_what_a_backfill_refuses(options, message):
    with pytest.raises(exceptions.ConfigError, match=message):
        qbo_rs.plan("customer", "2025-01-01", "2025-03-01", **options)


def test_parse_instant_reads_bounds_as_the_engine_does():
    utc = timezone.utc
    assert qbo_rs.parse_instant("2025-01-31") == datetime(2025, 1, 31, tzinfo=utc)
    assert qbo_rs.parse_instant("2025-01-31 10:30") == datetime(2025, 1, 31, 10, 30, tzinfo=utc)
    assert qbo_rs.parse_instant("2025-07-01T00:00:00-07:00") == datetime(2025, 7, 1, 7, tzinfo=utc)
    assert qbo_rs.parse_instant(date(2025, 1, 2)) == datetime(2025, 1, 2, tzinfo=utc)
    assert qbo_rs.parse_instant(datetime(2025, 1, 2, 3)) == datetime(2025, 1, 2, 3, tzinfo=utc)  # naive is UTC
    with pytest.raises(exceptions.ConfigError, match='fecha_fin = "31/01/2025" is not an ISO date'):
        qbo_rs.parse_instant("31/01/2025", "fecha_fin")
    with pytest.raises(exceptions.ConfigError, match="fecha_fin must be an ISO date string such as 2025-01-31"):
        qbo_rs.parse_instant(20250131, "fecha_fin")


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_exception_is_exported():
    for cls in _all_subclasses(exceptions.QboError):
        if cls.__module__ == "qbo_rs.exceptions":
            assert cls.__name__ in exceptions.__all__


def test_import_starts_no_threads():
    code = "import threading, qbo_rs; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    # and no tokio worker threads either: the process has one OS thread after import.
    code = "import os, qbo_rs; print(len(os.listdir('/proc/self/task')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_version():
    assert qbo_rs.__version__.count(".") == 2
