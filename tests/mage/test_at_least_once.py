"""Mage executes block runs at least once (mage-ai 0.9.80 has enqueued a finished block run again
and run it): every block of the pipelines ends a repeated execution as it ended the first one, and
a failed run is made green by the UI's "Retry incomplete blocks" under Mage's own scheduler."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict

from .conftest import (
    PROJECT,
    RANGE_END,
    RANGE_START,
    copy_project,
    deactivate_triggers,
    mage_script,
    read_txt,
    run_pipeline,
    run_scheduler,
    truth,
)

BLOCK_RUNS = Path(__file__).with_name("mage_block_runs.py")
FULL = {"fecha_inicio": RANGE_START, "fecha_fin": RANGE_END, "chunk_days": "400", "page_size": "50"}


def block_runs(env: Dict[str, str], project: Path, *args: str) -> Dict[str, str]:
    p = mage_script(BLOCK_RUNS, dict(env, QBO_RS_MAGE_PROJECT=str(project)), *args)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def export_output(tmp_path: Path, run, index: int) -> dict:
    partition = re.search(r"execution_partition=(\S+)", run.out).group(1)
    path = (
        tmp_path
        / "mage_data"
        / "mage_project"
        / "pipelines"
        / "qb_invoice_backfill"
        / ".variables"
        / partition
        / "qb_export_window"
        / str(index)
        / "output_0"
        / "data.json"
    )
    summary = json.loads(path.read_text())
    summary.pop("export_pid")  # the process that ran it
    return summary


def test_every_block_run_executed_again_ends_as_the_first_time(emulator, env, tmp_path: Path):
    first = run_pipeline("qb_invoice_backfill", env, FULL)
    assert first.rc == 0, first
    txt = tmp_path / "data" / "invoices.txt"
    written, requests = txt.read_bytes(), emulator.stats()["query_requests"]
    output = export_output(tmp_path, first, 0)
    fetch = next(
        line.split()[0] for line in first.out.splitlines() if line.strip().startswith("qb_fetch_window:invoice")
    )

    again = block_runs(
        env,
        PROJECT,
        "reexecute",
        str(first.run_id),
        "qb_plan_windows",
        fetch,
        "qb_export_window:0",
        "qb_backfill_summary",
    )
    assert {
        k: again[k] for k in ("qb_plan_windows", fetch, "qb_export_window:0", "qb_backfill_summary")
    } == dict.fromkeys(("qb_plan_windows", fetch, "qb_export_window:0", "qb_backfill_summary"), "completed")
    assert emulator.stats()["query_requests"] == requests, "a repeated plan or fetch asks QuickBooks nothing"
    assert txt.read_bytes() == written
    assert export_output(tmp_path, first, 0) == output, "a repeated export returns the first one's summary"
    assert read_txt(txt) == truth(emulator, "invoice")


def test_a_failed_run_is_made_green_by_the_ui_retry_under_mages_scheduler(emulator, env, tmp_path: Path):
    """The state a doubled export left (the run failed, the summary never ran although every
    record landed), retried the way the UI does it, then executed by Mage's scheduler."""
    project = copy_project(tmp_path)
    deactivate_triggers(project)  # only the retried run executes
    first = run_pipeline("qb_invoice_backfill", env, FULL, project=project)
    assert first.rc == 0, first
    requests = emulator.stats()["query_requests"]
    block_runs(env, project, "reexecute", str(first.run_id), "qb_export_window:0")
    state = block_runs(
        env,
        project,
        "set",
        str(first.run_id),
        "failed",
        "qb_export_window:0=failed",
        "qb_backfill_summary=upstream_failed",
    )
    assert state["<pipeline run>"] == "failed"

    retried = block_runs(env, project, "ui-retry", str(first.run_id))
    assert retried["<pipeline run>"] == "running"
    assert (retried["qb_export_window:0"], retried["qb_backfill_summary"]) == ("initial", "initial")
    scheduled = run_scheduler(env, project, max_seconds=180, timeout=240)
    assert scheduled.returncode == 0, scheduled.stdout + scheduled.stderr[-3000:]
    assert f"runs=[({first.run_id}, 'completed')]" in scheduled.stdout, scheduled.stdout
    final = block_runs(env, project, "show", str(first.run_id))
    assert set(final.values()) == {"completed"}, final
    assert emulator.stats()["query_requests"] == requests
    logs = "".join(
        p.read_text()
        for p in (tmp_path / "mage_data").glob("mage_project/pipelines/qb_invoice_backfill/.logs/**/*.log")
    )
    assert "Validation: Integrity Check Passed" in logs and "already written at" in logs
    assert read_txt(tmp_path / "data" / "invoices.txt") == truth(emulator, "invoice")
