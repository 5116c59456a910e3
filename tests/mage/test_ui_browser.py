"""The paths users take in Mage's UI, in a real browser: `make mage-ui` (scripts/mage_ui.sh) on a
new Mage database against the emulator, then Debian's Chromium driven by Playwright
(tests/mage/ui_browser.py). Screenshots of every step are kept in test-output/mage-ui/."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import MAGE_PYTHON, PROJECT, REPO, UI_PYTHON, base_env, read_txt

SHOTS = REPO / "test-output" / "mage-ui"
FECHA_INICIO, FECHA_FIN = "2024-01-01", "2025-01-01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_state() -> dict:
    """What a run must not change in the working tree: every tracked file of the project (the
    triggers.yaml files above all) and git's view of the folder."""
    files = {str(p.relative_to(PROJECT)): p.read_bytes() for p in PROJECT.rglob("*.yaml")}
    git = subprocess.run(["git", "status", "--porcelain", "--", str(PROJECT)], cwd=REPO, capture_output=True, text=True)
    return dict(files=files, git=git.stdout if git.returncode == 0 else None)


def wait_for_ui(proc: subprocess.Popen, log: Path, deadline_s: float = 300) -> str:
    """mage_ui.sh prints 'Mage UI: http://…' once Mage answers /api/status."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        text = log.read_text(errors="replace")
        if "Mage UI: http://" in text:
            return text
        assert proc.poll() is None, f"mage_ui.sh exited early:\n{text[-4000:]}"
        time.sleep(1)
    raise AssertionError(f"Mage did not answer within {deadline_s} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM: mage_ui.sh stops Mage and the children Mage would orphan; its own session's
    processes are killed only if that did not end them."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_user_runs_a_pipeline_from_the_ui_and_reads_its_summary(tmp_path: Path):
    from qbo_rs.testing import QboEmulator

    for old in SHOTS.glob("*.png"):
        old.unlink()
    before = project_state()
    log = tmp_path / "mage-ui.log"
    with QboEmulator(seed=21, invoices=40, customers=10, items=10) as emu:
        env = base_env(tmp_path)
        env.update(emu.env())
        port = free_port()
        env["MAGE_PORT"] = str(port)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "mage_ui.sh"), str(Path(MAGE_PYTHON).parent / "mage")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
                start_new_session=True,
            )
        try:
            started = wait_for_ui(proc, log)
            browser = subprocess.run(
                [UI_PYTHON, str(Path(__file__).with_name("ui_browser.py")), f"http://127.0.0.1:{port}", str(SHOTS)]
                + [FECHA_INICIO, FECHA_FIN],
                capture_output=True,
                text=True,
                timeout=1000,
            )
        finally:
            stop(proc)
        expected = {
            r["id"]: str(r["sync_token"])
            for r in emu.truth("Invoice")
            if f"{FECHA_INICIO}T00:00:00Z" <= r["last_updated_utc"] < f"{FECHA_FIN}T00:00:00Z"
        }
    report = f"--- browser stderr\n{browser.stderr[-6000:]}\n--- mage-ui.sh\n{log.read_text(errors='replace')[-6000:]}"
    seen = json.loads(browser.stdout.strip().splitlines()[-1]) if browser.stdout.strip() else {}
    assert browser.returncode == 0 and "failed_step" not in seen, f"{seen}\n{report}"

    # make mage-ui: the box says, before Mage's lines and again once it answers, that the shipped
    # trigger (due since 2025-09-12) is held; it did not fire, and no file of the project changed.
    assert started.count("HELD   qb_invoice_backfill/qb_invoice_trigger (@once, 2025-09-12 00:00 UTC)") == 2, started
    assert "FIRE_TRIGGERS=1 fires it" in started
    assert project_state() == before, "the working tree was modified"

    # What the pages showed.
    assert seen["pipelines"] == ["qb_invoice_backfill", "qb_customer_backfill", "qb_item_backfill"]
    assert "qb_invoice_trigger" in seen["trigger_row"] and "@once" in seen["trigger_row"], seen["trigger_row"]
    # The form lists the pipeline's variables with the shipped values, the dates empty to fill in.
    assert seen["form"] == {
        "fecha_inicio": "",
        "fecha_fin": "",
        "page_size": "1000",
        "chunk_days": "50",
        "max_children": "1",
        "sink": "txt",
    }
    # "Run now" as the form opens: the first block fails, its log saying why in one line, before
    # Mage's traceback.
    assert seen["failed_planner"] == "failed"
    planner = seen["failed_planner_log"]
    error = "RunVariableError: fecha_inicio is required: an ISO date or datetime in UTC, e.g. 2025-01-01"
    assert error in planner, planner
    assert planner.index(error) < min(
        [i for i, line in enumerate(planner) if "Traceback" in line or "Exception thrown" in line] or [len(planner)]
    )
    # With the dates typed into the form's own fields the run completes, and the summary block's
    # log (opened from the run page) holds the runbook's lines.
    assert (seen["run_status"], seen["failed_run_status"]) == ("done", "failed"), seen
    assert seen["summary_status"] == "completed", seen
    assert set(seen["run_rows"].values()) == {"completed"}, seen["run_rows"]
    summary = seen["summary_log"]
    assert f"Total invoices descargadas: {len(expected)}" in summary, summary
    assert "Validation: Integrity Check Passed" in summary, summary
    assert len([line for line in summary if line.startswith("Rango ")]) == 8, summary  # 366 days of 50
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected
    assert {"01-pipelines.png", "02-triggers.png", "08-summary-log.png", "09-runs.png"} <= set(seen["screenshots"])

    # Mage's database: the shipped trigger kept its one held (cancelled) run; each UI run's trigger
    # was given the shipped triggers' allow_blocks_to_fail and set inactive, as it has fired.
    with sqlite3.connect(tmp_path / "mage_data" / "mage_project" / "mage-ai.db") as db:
        schedules = {}
        for schedule_id, name, status, settings in db.execute(
            "select id, name, status, settings from pipeline_schedule"
        ):
            runs = db.execute(
                "select status, variables from pipeline_run where pipeline_schedule_id = ?", (schedule_id,)
            ).fetchall()
            schedules[name] = (status, json.loads(settings or "null"), runs)
    status, _, runs = schedules.pop("qb_invoice_trigger")
    assert [r[0] for r in runs] == ["CANCELLED"] and "held_by" in runs[0][1], runs
    shipped = {name for name in schedules if name.endswith(("_trigger", "_sync_hourly"))}
    assert all(schedules[name][0] == "INACTIVE" for name in shipped), schedules
    made_by_ui = {name: s for name, s in schedules.items() if name not in shipped}
    assert len(made_by_ui) == 2, schedules
    for name, (status, settings, _runs) in made_by_ui.items():
        assert status == "INACTIVE" and settings == {"allow_blocks_to_fail": True}, (name, status, settings)
    assert sorted(r[0] for s in made_by_ui.values() for r in s[2]) == ["COMPLETED", "FAILED"]
