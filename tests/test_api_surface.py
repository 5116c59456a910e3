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
