"""Shared fixtures: a fresh emulator per test and helpers that read the RAW files the way a
user's tool would (line by line, json.loads)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

import pytest

import qbo_rs
from qbo_rs.testing import QboEmulator

# The emulator's data spans 2015-01-01 .. 2025-10-31; edits move records to "now".
RANGE_START = "2015-01-01"
RANGE_END = (date.today() + timedelta(days=2)).isoformat()

# The `qbo-rs` command line as the installed wheel runs it under this interpreter.
QBO = [sys.executable, "-m", "qbo_rs"]


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


def backfill_args(entity: str, *options: str, start: str = RANGE_START, end: str = RANGE_END) -> List[str]:
    """The arguments of `qbo-rs backfill ENTITY --start START --end END OPTIONS...`."""
    return ["backfill", entity, "--start", start, "--end", end, *options]


def cli_env(emu: QboEmulator, tmp_path: Path, **extra: str) -> Dict[str, str]:
    """The environment of a CLI run against `emu`, with a token store of the test's own."""
    return dict(os.environ, **emu.env(), QBO_TOKEN_STORE=str(tmp_path / "t.json"), **extra)


def run_cli(
    args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 180
) -> "subprocess.CompletedProcess[str]":
    """Runs `qbo-rs ARGS` to its end and keeps its output as text."""
    return subprocess.run(QBO + args, capture_output=True, text=True, env=env, timeout=timeout)


def sigkill_mid_runs(args: List[str], env: Dict[str, str], delays: Iterable[float]) -> int:
    """Starts `qbo-rs ARGS` once per delay and SIGKILLs it that many seconds in, if it still runs;
    returns how many runs were killed (a run that finished first is not)."""
    kills = 0
    for delay in delays:
        proc = subprocess.Popen(QBO + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    return kills


# PostgreSQL: `make test` starts a server and exports its DSN; the tests that need it say so.
PG_DSN = os.environ.get("QBO_RS_TEST_DSN", "")


def psql(sql: str, dsn: str = PG_DSN) -> str:
    """Runs ``sql`` with psql (unaligned, tuples only) and returns its output."""
    out = subprocess.run(
        ["psql", dsn, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema name, dropped (with its tables) after the test."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield name
    if PG_DSN:
        psql(f'drop schema if exists "{name}" cascade')
