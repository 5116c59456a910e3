"""kill -9 in the middle of a backfill, then a re-run: the truth, no duplicate, no torn line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import RANGE_END, RANGE_START, landed_versions, read_raw, truth_versions

from qbo_rs.testing import QboEmulator


def _cli_env(emu: QboEmulator, tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(emu.env())
    env["QBO_TOKEN_STORE"] = str(tmp_path / "tokens.json")
    return env


def test_sigkill_mid_backfill_then_rerun(tmp_path: Path):
    data = tmp_path / "data"
    with QboEmulator(seed=9, invoices=6000, customers=10, items=10, latency_ms=3) as emu:
        env = _cli_env(emu, tmp_path)
        cmd = [
            sys.executable,
            "-m",
            "qbo_rs",
            "backfill",
            "invoice",
            "--start",
            RANGE_START,
            "--end",
            RANGE_END,
            "--chunk-days",
            "30",
            "--page-size",
            "40",
            "--data-dir",
            str(data),
            "--no-progress",
        ]
        kills = 0
        for delay in (0.6, 1.1, 1.7):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
        assert kills >= 1, "the backfill finished before it could be killed: make it bigger"
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr
        landed = read_raw(data / "invoices.txt")
        assert landed_versions(landed) == truth_versions(emu, "Invoice")
        assert "Validation: Integrity Check Passed" in done.stderr
