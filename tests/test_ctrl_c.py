"""Ctrl-C during a Python backfill always raises KeyboardInterrupt, promptly, whatever the engine
is doing at that instant (paging, writing, forwarding a log event to Python's logging), and what
was committed stays readable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import read_raw

from qbo_rs.testing import QboEmulator

CHILD = r"""
import logging, sys
import qbo_rs
# Every engine event goes through Python logging: the interrupt often lands inside one.
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
client = qbo_rs.QboClient(qbo_rs.Credentials.from_env(), token_store=sys.argv[2], backoff_base=0.01)
print("started", flush=True)
try:
    client.backfill("invoice", "2015-01-01", "2026-01-01", chunk_days=30, page_size=20, data_dir=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(0)
except BaseException as err:
    print(f"raised {type(err).__name__}: {err}", flush=True)
    sys.exit(1)
print("finished before the signal", flush=True)
"""


def test_every_sigint_raises_keyboard_interrupt_promptly(tmp_path: Path) -> None:
    rng = random.Random(5)
    # 3,000 invoices in pages of 20 at 40 ms a request: seconds of paging and writing, so the
    # signal (sent within 0.7 s of the start) lands during the backfill.
    with QboEmulator(seed=2, invoices=3000, customers=5, items=5, latency_ms=40, throttle_per_minute=0) as emu:
        env = dict(os.environ, **emu.env())
        interrupted = 0
        for attempt in range(12):
            data = tmp_path / f"data{attempt}"
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(data), str(tmp_path / f"tokens{attempt}.json")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "started"
            time.sleep(rng.uniform(0.05, 0.7))
            child.send_signal(signal.SIGINT)
            signalled = time.monotonic()
            out, _ = child.communicate(timeout=30)
            took = time.monotonic() - signalled
            if "finished before the signal" in out:
                continue
            interrupted += 1
            assert child.returncode == 0 and out.strip() == "KeyboardInterrupt", (attempt, out)
            assert took < 11, f"the interrupt took {took:.1f} s to surface"
            if (data / "invoices.txt").exists():
                read_raw(data / "invoices.txt")  # what was committed is whole: no torn line
        assert interrupted >= 10, "the signals must land during the backfill for this to mean anything"
