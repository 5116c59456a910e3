"""The realm's budget holds across processes (Mage runs every window in its own process).

Several worker processes hammer one emulated realm at once. With the machine-wide limiter
(the default) their requests together stay within requests_per_minute and max_in_flight, so
the emulator's own in-flight limit never answers 429. The same workers with process-local
limiters (limiter_dir=None) overrun it: the control run shows the check can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import qbo_rs
from qbo_rs.testing import QboEmulator

WORKERS = 4
SECONDS = 4.0
RPM = 240  # 4 requests/s for the whole realm
IN_FLIGHT = 2

WORKER = r"""
import json, os, sys, time
import qbo_rs
start_at, seconds, limiter_dir = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
client = qbo_rs.QboClient(
    qbo_rs.Credentials.from_env(), token_store=os.environ["TOKENS"],
    requests_per_minute=int(os.environ["RPM"]), max_in_flight=int(os.environ["IN_FLIGHT"]),
    max_retries=0, limiter_dir=None if limiter_dir == "-" else limiter_dir,
)
while time.time() < start_at:
    time.sleep(0.005)
sent = 0
while time.time() < start_at + seconds:
    try:
        client.count("invoice", "2015-01-01", "2026-01-01")
    except qbo_rs.exceptions.RateLimitError:
        pass
    sent += 1
print(json.dumps({"sent": sent, "last_done": time.time(),
                  "budget_file": None if client.budget_file is None else str(client.budget_file)}))
"""


def run_workers(emu: QboEmulator, tmp_path: Path, limiter_dir: Optional[Path]) -> Dict[str, object]:
    env = dict(os.environ, **emu.env(), RPM=str(RPM), IN_FLIGHT=str(IN_FLIGHT), TOKENS=str(tmp_path / "tokens.json"))
    # One refresh before the workers start, so they share a stored access token instead of
    # all rotating the refresh token at the same instant.
    qbo_rs.QboClient(emu.credentials(), token_store=tmp_path / "tokens.json", limiter_dir=None).count(
        "invoice", "2015-01-01", "2015-01-02"
    )
    before = emu.stats()
    start_at = time.time() + 1.5  # every worker imported and ready before the start line
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(start_at),
                str(SECONDS),
                "-" if limiter_dir is None else str(limiter_dir),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    outputs: List[dict] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    after = emu.stats()
    return {
        # From the start line to the last answer: requests that waited for their turn past
        # the workers' deadline still count against the time they took.
        "span": max(o["last_done"] for o in outputs) - start_at,
        "requests": after["query_requests"] - before["query_requests"],
        "throttled": after["throttled"] - before["throttled"],
        "max_in_flight": after["max_in_flight"],
        "budget_files": {o["budget_file"] for o in outputs},
    }


@pytest.fixture
def strict_realm() -> QboEmulator:
    # The emulator enforces the realm's in-flight limit and answers 429 above it; each
    # request takes 150 ms, so unpaced workers overlap.
    with QboEmulator(
        seed=5,
        invoices=300,
        customers=20,
        items=20,
        throttle_per_minute=100_000,
        max_in_flight=IN_FLIGHT,
        latency_ms=150,
    ) as emu:
        yield emu


def test_workers_sharing_the_budget_stay_within_the_realms_limits(strict_realm: QboEmulator, tmp_path: Path) -> None:
    limits = tmp_path / "limits"
    seen = run_workers(strict_realm, tmp_path, limits)
    files = seen["budget_files"]
    assert len(files) == 1 and str(next(iter(files))).startswith(str(limits)), files
    assert seen["throttled"] == 0, seen
    assert seen["max_in_flight"] <= IN_FLIGHT, seen
    # GCRA with no burst: at most one request per interval, the first one immediate.
    allowed = RPM / 60 * seen["span"] + 1
    assert 0 < seen["requests"] <= allowed, (seen, allowed)


def test_process_local_limiters_overrun_the_realm(strict_realm: QboEmulator, tmp_path: Path) -> None:
    # The control: the same workers, each pacing only itself, exceed the realm's budget.
    seen = run_workers(strict_realm, tmp_path, None)
    assert seen["budget_files"] == {None}
    assert seen["requests"] > RPM / 60 * seen["span"] * 2 or seen["throttled"] > 0, seen


def test_default_budget_directory_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QBO_LIMITER_DIR", str(tmp_path / "budget"))
    assert qbo_rs.default_limiter_dir() == tmp_path / "budget"
    monkeypatch.delenv("QBO_LIMITER_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert qbo_rs.default_limiter_dir() == tmp_path / "run" / "qbo_rs"


def test_budget_file_is_private_and_names_the_realm(emulator: QboEmulator, tmp_path: Path) -> None:
    client = qbo_rs.QboClient(emulator.credentials(), token_store=None, limiter_dir=tmp_path / "b")
    client.count("invoice", "2015-01-01", "2015-02-01")
    budget = client.budget_file
    assert budget is not None and budget.parent == tmp_path / "b"
    assert emulator.realm_id in budget.name
    assert (budget.stat().st_mode & 0o777) == 0o600
    assert (budget.parent.stat().st_mode & 0o777) == 0o700
    text = budget.read_bytes()
    assert emulator.env()["QBO_CLIENT_SECRET"].encode() not in text


def test_an_unwritable_budget_directory_falls_back_to_this_process(
    emulator: QboEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    client = qbo_rs.QboClient(emulator.credentials(), token_store=None, limiter_dir=blocker / "sub")
    assert client.budget_file is None
    assert client.count("invoice", "2015-01-01", "2015-02-01") >= 0
    assert any("QBO_LIMITER_DIR" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
