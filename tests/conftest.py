"""Shared fixtures: a fresh emulator per test and helpers that read the RAW files the way a
user's tool would (line by line, json.loads)."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import qbo_rs
from qbo_rs.testing import QboEmulator

# The emulator's data spans 2015-01-01 .. 2025-10-31; edits move records to "now".
RANGE_START = "2015-01-01"
RANGE_END = (date.today() + timedelta(days=2)).isoformat()


@pytest.fixture(autouse=True, scope="session")
def private_limiter_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Budget files of this test session (and the processes it starts) stay out of the
    user's shared directory, so a run never waits on a budget left by another."""

    path = tmp_path_factory.mktemp("limits")
    previous = os.environ.get("QBO_LIMITER_DIR")
    os.environ["QBO_LIMITER_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("QBO_LIMITER_DIR", None)
    else:
        os.environ["QBO_LIMITER_DIR"] = previous


@pytest.fixture
def emulator() -> Iterator[QboEmulator]:
    with QboEmulator(seed=11, invoices=1500, customers=200, items=120) as emu:
        yield emu


@pytest.fixture
def client_factory(tmp_path: Path):
    def make(emu: QboEmulator, **options: Any) -> qbo_rs.QboClient:
        options.setdefault("token_store", tmp_path / "tokens.json")
        options.setdefault("backoff_base", 0.01)
        options.setdefault("requests_per_minute", 600_000)
        return qbo_rs.QboClient(emu.credentials(), **options)

    return make


def read_raw(path: Path) -> Dict[str, Dict[str, Any]]:
    """Reads a RAW JSON-lines file strictly: every line one JSON object, one line per id."""
    records: Dict[str, Dict[str, Any]] = {}
    with open(path, "rb") as f:
        data = f.read()
    assert data == b"" or data.endswith(b"\n"), f"{path} does not end with a newline (torn tail)"
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        obj = json.loads(line)
        assert isinstance(obj, dict), f"{path}:{number} is not a JSON object"
        assert obj["id"] not in records, f"{path}:{number} repeats id {obj['id']}"
        records[obj["id"]] = obj
    return records


def truth_versions(emu: QboEmulator, entity: str) -> Dict[str, str]:
    return {row["id"]: row["sync_token"] for row in emu.truth(entity)}


def landed_versions(records: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    return {rid: rec["sync_token"] for rid, rec in records.items()}


def ids(rows: List[Dict[str, Any]]) -> set:
    return {r["id"] for r in rows}
