"""Fixtures for the tests that drive singer-io's tap-quickbooks 2.5.0, a third-party QuickBooks
client, against the bundled emulator. The tap runs from its own venv (.venv-tap: it pins
requests and singer-python) as a subprocess, through run_tap.py, which points its hard-coded
Intuit hosts at the emulator.

`make test` installs .venv-tap and exports QBO_RS_TAP_PYTHON. A bare `pytest` without that
variable does not collect this directory (a developer convenience); with CI=true a missing
interpreter is an error, never silence. This directory is a package so that this conftest does
not replace tests/conftest.py as the module `conftest` that the other test files import from.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

TAP_PYTHON = os.environ.get("QBO_RS_TAP_PYTHON", "").strip()
if not TAP_PYTHON:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_TAP_PYTHON is not set: point it at .venv-tap/bin/python")
    collect_ignore_glob = ["test_*.py"]

RUN_TAP = Path(__file__).resolve().parent / "run_tap.py"


@dataclass
class TapRun:
    rc: int
    out: str
    err: str

    def messages(self) -> List[Dict[str, Any]]:
        """The Singer messages the tap wrote, one JSON object a line."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"rc={self.rc}\n--- stderr (tail)\n{self.err[-4000:]}"


def run_tap(base_url: str, token_url: str, args: List[str], timeout: float = 240) -> TapRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QBO_", "OAUTHLIB_"))}
    env.update(QBO_RS_TAP_API_BASE=base_url, QBO_RS_TAP_TOKEN_URL=token_url)
    proc = subprocess.run([TAP_PYTHON, str(RUN_TAP), *args], env=env, capture_output=True, text=True, timeout=timeout)
    return TapRun(proc.returncode, proc.stdout, proc.stderr)


def select_streams(catalog: Dict[str, Any], names: List[str]) -> Dict[str, Any]:
    """The catalog with exactly `names` selected (stream-level metadata `selected: true`)."""
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] in names
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = chosen
    return catalog
