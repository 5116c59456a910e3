"""examples/analyst.ipynb runs top to bottom in a Jupyter kernel (nbclient + ipykernel) against
the bundled emulator, and shows what it says it shows."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from conftest import PG_DSN, psql
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "analyst.ipynb"


def texts(cell: Dict[str, Any], name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream" and o["name"] == name)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, Any]]:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # A notebook, not CI: the kernel must draw its default progress bar.
    mp = pytest.MonkeyPatch()
    mp.delenv("CI", raising=False)
    mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The database of the PostgreSQL cells, as a user configures it: the POSTGRES_* variables.
    schema = "nb_" + uuid.uuid4().hex[:12]
    if PG_DSN:
        dsn = urlsplit(PG_DSN)
        mp.setenv("POSTGRES_HOST", dsn.hostname or "")
        mp.setenv("POSTGRES_PORT", str(dsn.port or 5432))
        mp.setenv("POSTGRES_DB", dsn.path.lstrip("/"))
        mp.setenv("POSTGRES_USER", unquote(dsn.username or ""))
        mp.setenv("POSTGRES_PASSWORD", unquote(dsn.password or ""))
        mp.setenv("POSTGRES_SCHEMA", schema)
    elif os.environ.get("CI") == "true":
        raise RuntimeError("CI=true and QBO_RS_TEST_DSN is not set: `make test` starts PostgreSQL itself")
    else:
        for name in ("POSTGRES_HOST", "POSTGRES_SCHEMA"):
            mp.delenv(name, raising=False)
    try:
        NotebookClient(
            notebook,
            timeout=240,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}},
        ).execute()
    finally:
        mp.undo()
        if PG_DSN:
            psql(f'drop schema if exists "{schema}" cascade')
    return [c for c in notebook.cells if c.cell_type == "code"]


def cell_with(cells: List[Dict[str, Any]], source: str) -> Dict[str, Any]:
    return next(c for c in cells if source in c.source)


def test_every_cell_runs_without_an_error(executed):
    errors = [o for c in executed for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == [], errors
    assert all(c["execution_count"] for c in executed)


def test_it_backfills_reads_and_awaits_the_configured_records(executed):
    # The emulator of the notebook holds 2000 invoices and 150 customers.
    assert "estimate: 2000 records" in texts(cell_with(executed, "client.estimate("))
    backfill = cell_with(executed, "report = client.backfill(")
    assert "backfilled: 2000 records, ok=True" in texts(backfill)
    html = next(o["data"]["text/html"] for o in backfill["outputs"] if "text/html" in o.get("data", {}))
    assert "BackfillReport" in html and "invoice_backfill_2015-01-01" in html
    assert "read: 2000 rows, last_updated_utc datetime64[ms, UTC]" in texts(cell_with(executed, "client.read("))
    polars_cell = texts(cell_with(executed, "to_polars()"))
    assert "polars: 150 customers" in polars_cell and "read_txt: 2000 rows, same ids: True" in polars_cell
    assert "awaited: 150 customers, ok=True" in texts(cell_with(executed, "await qbo_rs.backfill_async("))
    rerun = texts(cell_with(executed, "windows=[label]"))
    assert re.search(r"re-run invoice_backfill_\S+: \d+ rows, 0 inserted", rerun), rerun


def test_a_postgresql_table_reads_into_the_same_frame(executed):
    shown = texts(cell_with(executed, "qbo_rs.read_postgres("))
    if PG_DSN:
        assert "read_postgres: 2000 rows, same ids: True" in shown, shown
    else:
        assert "no database configured" in shown, shown


def test_the_volume_chart_is_drawn(executed):
    cell = cell_with(executed, "qbo_rs.volume(")
    assert "volume: 2000 records in" in texts(cell)
    assert any("image/png" in o.get("data", {}) for o in cell["outputs"])


def test_the_backfill_draws_one_progress_bar_and_warnings_above_it(executed):
    err = texts(cell_with(executed, "report = client.backfill("), "stderr")
    # What a notebook shows of each line: what follows its last carriage return.
    shown = [line.split("\r")[-1] for line in err.split("\n") if line.split("\r")[-1].strip()]
    bars = [line for line in shown if "records/s" in line]
    assert len(bars) == 1 and "2000/2000" in bars[0] and "windows=12/12" in bars[0], err
    assert all(line.startswith("WARNING qbo_rs: ") for line in shown if line not in bars), err
