"""Fixtures for the Mage project's tests: they drive mage-ai 0.9.80 from its own venv (.venv-mage,
too heavy for the main one) as subprocesses, against the bundled emulator started here.

`make test` installs .venv-mage and exports QBO_RS_MAGE_PYTHON (and QBO_RS_UI_PYTHON, the venv
with Playwright that drives Chromium for test_ui_browser.py). A bare `pytest` without them does
not collect these tests (a developer convenience);
with CI=true a missing interpreter is an error, never silence.
This directory is a package (tests/mage/__init__.py) so that this conftest does not replace
tests/conftest.py as the module `conftest` that the other test files import from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

MAGE_PYTHON = os.environ.get("QBO_RS_MAGE_PYTHON", "").strip()
# The browser test drives Mage's UI with Playwright for Python from its own small venv (.venv-ui).
UI_PYTHON = os.environ.get("QBO_RS_UI_PYTHON", "").strip()
collect_ignore_glob: List[str] = []
if not MAGE_PYTHON:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_MAGE_PYTHON is not set: point it at .venv-mage/bin/python")
    collect_ignore_glob = ["test_*.py"]
if not UI_PYTHON:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_UI_PYTHON is not set: point it at .venv-ui/bin/python (make test does)")
    collect_ignore_glob.append("test_ui_*.py")

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "mage_project"
RUNNER = REPO / "scripts" / "mage_run_pipeline.py"
SECRETS = REPO / "scripts" / "mage_secrets.py"
TRIGGERS = REPO / "scripts" / "mage_triggers.py"
SCHEDULER = REPO / "scripts" / "mage_scheduler.py"
DSN = os.environ.get("QBO_RS_TEST_DSN", "").strip()

# The emulator's data spans 2015-01-01 .. 2025-10-31; edits move records to "now".
RANGE_START = "2015-01-01"
RANGE_END = (date.today() + timedelta(days=2)).isoformat()
ENTITIES = {"invoice": "Invoice", "customer": "Customer", "item": "Item"}
PLURAL = {"invoice": "invoices", "customer": "customers", "item": "items"}
SCRUBBED = ("QBO_", "POSTGRES_", "MAGE_", "QBO_RS_MAGE", "QBO_RS_REALM")


@dataclass
class Run:
    rc: int
    out: str
    err: str
    run_id: Optional[int]

    def lines(self, prefix: str) -> List[str]:
        return [line.split(" | ", 2)[-1] for line in self.out.splitlines() if prefix in line]

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"rc={self.rc}\n--- stdout\n{self.out}\n--- stderr (tail)\n{self.err[-4000:]}"


def base_env(tmp_path: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SCRUBBED)}
    env.update(
        MAGE_DATA_DIR=str(tmp_path / "mage_data"),
        QBO_DATA_DIR=str(tmp_path / "data"),
        QBO_RS_BACKOFF_BASE="0.01",
        # The test's own realm budget files (the machine-wide default would be shared with
        # whatever else runs on this machine).
        QBO_LIMITER_DIR=str(tmp_path / "budget"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run_pipeline(
    pipeline: str,
    env: Dict[str, str],
    variables: Optional[Dict[str, Any]] = None,
    *extra: str,
    project: Path = PROJECT,
    timeout: float = 300,
) -> Run:
    """The headless runner; variables are passed with --var, i.e. as strings like the Mage UI."""
    cmd = [MAGE_PYTHON, str(RUNNER), pipeline, "--project", str(project)]
    for key, value in (variables or {}).items():
        cmd += ["--var", f"{key}={value}"]
    cmd += list(extra)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    m = re.search(r"pipeline_run_id=(\d+)", p.stdout)
    return Run(p.returncode, p.stdout, p.stderr, int(m.group(1)) if m else None)


def mage_script(
    script: Path, env: Dict[str, str], *args: str, stdin: Optional[str] = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MAGE_PYTHON, str(script), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
    )


def run_scheduler(
    env: Dict[str, str], project: Path, max_seconds: int, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Mage's scheduler (scripts/mage_scheduler.py) on `project`, ticking every second until no run
    is left or `max_seconds` have passed."""
    args = ("--project", str(project), "--until-idle", "--interval", "1", "--max-seconds", str(max_seconds))
    return mage_script(SCHEDULER, env, *args, timeout=timeout)


def copy_project(tmp_path: Path) -> Path:
    """A copy of the Mage project that a test may edit (its triggers.yaml files, its database)."""
    project = tmp_path / "copy" / "mage_project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    return project


def deactivate_triggers(project: Path) -> None:
    """Sets every shipped trigger of `project` inactive, so that only the runs a test starts execute."""
    for triggers in project.glob("pipelines/*/triggers.yaml"):
        triggers.write_text(triggers.read_text().replace("status: active", "status: inactive"))


def mage_python(code: str, env: Optional[Dict[str, str]] = None) -> Any:
    """Runs ``code`` in the Mage interpreter with the repo on sys.path; it must print one JSON value
    as its last stdout line."""
    p = subprocess.run(
        [MAGE_PYTHON, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO),
    )
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def read_txt(path: Path) -> Dict[str, str]:
    """{id: sync_token} of a RAW JSON-lines file, strictly: one JSON object per line, one line per id."""
    records: Dict[str, str] = {}
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends with a torn line"
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        obj = json.loads(line)
        assert obj["id"] not in records, f"{path}:{number} repeats id {obj['id']}"
        records[obj["id"]] = str(obj["sync_token"])
    return records


def truth(emu: Any, slug: str) -> Dict[str, str]:
    return {row["id"]: str(row["sync_token"]) for row in emu.truth(ENTITIES[slug])}


def postgres_env(dsn: str) -> Dict[str, str]:
    """POSTGRES_* variables (what the Mage project reads) for a postgresql:// DSN."""
    u = urlsplit(dsn)
    env = {
        "POSTGRES_HOST": u.hostname or "localhost",
        "POSTGRES_PORT": str(u.port or 5432),
        "POSTGRES_DB": u.path.lstrip("/"),
        "POSTGRES_USER": unquote(u.username or ""),
        "POSTGRES_PASSWORD": unquote(u.password or ""),
    }
    mode = parse_qs(u.query).get("sslmode")
    if mode:
        env["POSTGRES_SSLMODE"] = mode[0]
    return env


def psql(sql: str) -> str:
    p = subprocess.run(
        ["psql", DSN, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def table_versions(schema: str, table: str) -> Dict[str, str]:
    return dict(line.split("|") for line in psql(f'select id, sync_token from "{schema}"."{table}"').splitlines())


@pytest.fixture
def emulator() -> Iterator[Any]:
    from qbo_rs.testing import QboEmulator

    with QboEmulator(seed=21, invoices=600, customers=120, items=80) as emu:
        yield emu


@pytest.fixture
def env(tmp_path: Path, emulator: Any) -> Dict[str, str]:
    """Credentials in the environment (the fallback path), emulator URLs, per-test Mage data."""
    e = base_env(tmp_path)
    e.update(emulator.env())
    return e


@pytest.fixture
def pg_schema() -> Iterator[str]:
    if not DSN:
        if os.environ.get("CI") == "true":
            raise RuntimeError("CI=true and QBO_RS_TEST_DSN is not set: `make test` starts PostgreSQL itself")
        pytest.skip("no PostgreSQL: set QBO_RS_TEST_DSN or run `make test`")
    name = "t_mage_" + uuid.uuid4().hex[:10]
    yield name
    psql(f'drop schema if exists "{name}" cascade')
