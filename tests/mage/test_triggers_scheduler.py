"""triggers.yaml through Mage's own loader and scheduler; parallel workers within the realm's limit."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Tuple

import pytest

from .conftest import (
    PROJECT,
    RUNNER,
    TRIGGERS,
    base_env,
    copy_project,
    deactivate_triggers,
    mage_python,
    mage_script,
    read_txt,
    run_scheduler,
)

INVOICE_TRIGGERS = PROJECT / "pipelines" / "qb_invoice_backfill" / "triggers.yaml"


def project_of_two_shares(tmp_path: Path, chunk_days: int) -> Tuple[Path, Path]:
    """A project copy whose invoice trigger reads 600 invoices in pages of 5 (two streams, so two
    shares) over `chunk_days`-day windows; returns the project and that trigger's file."""
    project = copy_project(tmp_path)
    triggers = project / INVOICE_TRIGGERS.relative_to(PROJECT)
    triggers.write_text(
        triggers.read_text()
        .replace("chunk_days: 50", f"chunk_days: {chunk_days}")
        .replace("page_size: 1000", "page_size: 5")
        .replace("max_children: 1", "max_children: 4")
    )
    return project, triggers


def test_trigger_file_is_parsed_by_mages_loader(tmp_path: Path):
    result = mage_python(
        r"""
import json, os
from mage_ai.settings.repo import set_repo_path
set_repo_path(%r)
from mage_ai.data_preparation.models.triggers import load_trigger_configs, load_triggers_file_content
out = {}
for uuid in ('qb_invoice_backfill', 'qb_customer_backfill', 'qb_item_backfill'):
    for t in load_trigger_configs(load_triggers_file_content(uuid), pipeline_uuid=uuid, raise_exception=True):
        out[t.name] = dict(pipeline=t.pipeline_uuid, type=t.schedule_type.value, interval=t.schedule_interval,
                           start=t.start_time.isoformat(), status=t.status.value, variables=t.variables,
                           valid=t.has_valid_schedule_interval, settings=t.settings)
print(json.dumps(out))
"""
        % str(PROJECT),
        env=base_env(tmp_path),
    )
    assert result["qb_invoice_trigger"] == dict(
        pipeline="qb_invoice_backfill",
        type="time",
        interval="@once",
        start="2025-09-12T00:00:00+00:00",
        status="active",
        valid=True,
        settings={"skip_if_previous_running": True, "allow_blocks_to_fail": True},
        variables={
            "fecha_inicio": "2014-09-01",
            "fecha_fin": "2025-09-12",
            "page_size": 1000,
            "chunk_days": 50,
            "max_children": 1,
            "sink": "txt",
        },
    )
    for name in ("qb_customer_trigger", "qb_item_trigger"):  # the same pattern, not scheduled
        assert result[name]["interval"] == "@once" and result[name]["status"] == "inactive"
    check = mage_script(TRIGGERS, base_env(tmp_path), "check")
    assert check.returncode == 0, check.stdout + check.stderr[-2000:]
    assert (
        "qb_invoice_backfill: qb_invoice_trigger time @once start_time=2025-09-12T00:00:00+00:00 status=active"
        in check.stdout
    )


def test_post_run_policy_edits_only_the_status_line(tmp_path: Path):
    ours = tmp_path / "ours.yaml"
    shutil.copy(INVOICE_TRIGGERS, ours)
    # The layout Mage writes when it rewrites a triggers file (yaml.safe_dump, keys sorted).
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(
        "triggers:\n- description: x\n  envs: []\n  name: other\n  schedule_interval: '@once'\n"
        "  schedule_type: time\n  start_time: 2025-09-12 00:00:00+00:00\n  status: active\n"
        "- description: y\n  envs: []\n  name: qb_invoice_trigger\n  schedule_interval: '@once'\n"
        "  schedule_type: time\n  start_time: 2025-09-12 00:00:00+00:00\n  status: active\n"
        "  variables:\n    fecha_fin: '2025-09-12'\n"
    )
    result = mage_python(
        r"""
import json
from mage_project.utils.qb_mage import disable_once_trigger
print(json.dumps([disable_once_trigger(%r, 'qb_invoice_trigger'), disable_once_trigger(%r, 'qb_invoice_trigger'),
                  disable_once_trigger(%r, 'qb_invoice_trigger'), disable_once_trigger(%r, 'nope')]))
"""
        % (str(ours), str(ours), str(dumped), str(dumped))
    )
    assert result == [True, False, True, False]
    before, after = INVOICE_TRIGGERS.read_text().splitlines(), ours.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == [("  status: active", "  status: inactive")]
    text = dumped.read_text()
    assert text.count("status: active") == 1 and text.index("status: active") < text.index("qb_invoice_trigger")


@pytest.mark.slow
def test_scheduler_fires_the_trigger_once_in_one_worker_within_the_realm_limit(tmp_path: Path):
    """Mage's scheduler (its own schedule_all loop) fires qb_invoice_trigger with daily
    windows over eleven years (4,029 windows), fans out to two shares (max_children 4) read one
    after another in the pipeline run's one worker process (run_pipeline_in_one_process), their
    streams under the emulator's realm throttle, in at most 2 x children + 2 block runs,
    completes, and the trigger is left inactive in the DB and in triggers.yaml (so a fresh DB
    does not fire it)."""
    from qbo_rs.testing import QboEmulator

    # 120 pages: two streams, so two shares, and enough requests to outrun the throttle below.
    project, triggers = project_of_two_shares(tmp_path, chunk_days=1)

    limit = 120  # the emulator's realm throttle, requests per sliding 60 s
    with QboEmulator(
        seed=5, invoices=600, customers=20, items=20, throttle_per_minute=limit, max_in_flight=10, latency_ms=20
    ) as emu:
        env = base_env(tmp_path)
        env.update(emu.env())
        # Our budget for the whole realm: each of the 3 workers asks for all of it, and the
        # budget file they share (base_env: QBO_LIMITER_DIR) keeps their sum under the limit.
        env["QBO_RS_REALM_RPM"] = str(limit - 3)
        first = run_scheduler(env, project, max_seconds=400, timeout=450)
        assert first.returncode == 0, first.stdout + first.stderr[-5000:]
        assert (
            "[final] schedule qb_invoice_backfill/qb_invoice_trigger @once status=inactive "
            "runs=[(1, 'completed')]" in first.stdout
        ), first.stdout
        stats = emu.stats()
        expected = {
            r["id"]: str(r["sync_token"])
            for r in emu.truth("Invoice")
            if "2014-09-01T00:00:00Z" <= r["last_updated_utc"] < "2025-09-12T00:00:00Z"
        }
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected

    summary = "".join(
        p.read_text()
        for p in (tmp_path / "mage_data" / "mage_project").glob(
            "pipelines/qb_invoice_backfill/.logs/*/*/qb_backfill_summary.log"
        )
    )
    found = re.search(r"Summary: (\d+) window\(s\) in (\d+) share\(s\), (\d+) worker process", summary)
    windows, shares, workers = map(int, found.groups())
    # One worker process: the pipeline run executes in one process (run_pipeline_in_one_process).
    assert windows == 4029 and shares == 2 and workers == 1, summary
    assert summary.count("Rango ") >= 4029, "one Rango line per window"
    with sqlite3.connect(tmp_path / "mage_data" / "mage_project" / "mage-ai.db") as db:
        runs = [r[0] for r in db.execute("select block_uuid from block_run where pipeline_run_id = 1")]
    # The planner, a fetch and an export per share, the summary (Mage also keeps a record per
    # dynamic child block, which runs no code of ours).
    assert len([r for r in runs if r not in ("qb_fetch_window", "qb_export_window")]) <= 2 * shares + 2, runs
    assert f"Total invoices descargadas: {len(expected)}" in summary
    # Parallel processes, one realm: demand exceeded the limit, yet no request was refused.
    assert stats["query_requests"] > limit, stats
    assert stats["throttled"] == 0, stats
    assert stats["max_requests_in_60s"] <= limit, stats

    # The post-run policy: the file now says inactive (comments kept) ...
    after = triggers.read_text()
    assert "  status: inactive" in after and "# Post-run policy" in after
    # ... a restarted scheduler does not fire it again ...
    again = run_scheduler(env, project, max_seconds=60)
    assert again.returncode == 0 and "runs=[(1, 'completed')]" in again.stdout, again.stdout
    # ... and neither does a fresh Mage database (new container, wiped volume).
    env["MAGE_DATA_DIR"] = str(tmp_path / "fresh_mage_data")
    fresh = run_scheduler(env, project, max_seconds=60)
    assert fresh.returncode == 0, fresh.stdout
    assert "qb_invoice_backfill/qb_invoice_trigger @once status=inactive runs=[]" in fresh.stdout


@pytest.mark.slow
def test_under_the_scheduler_failed_fetches_fail_alone_and_hold_back_the_exports_until_retried(tmp_path: Path):
    """The trigger's allow_blocks_to_fail: every share's fetch runs even when others fail (Mage
    would otherwise cancel the queued ones); mage-ai 0.9.80 starts the exports only once every
    fetch completed, so none runs; the runner's --retry-run then fetches the failed shares
    and exports all of them."""
    import qbo_rs
    from qbo_rs.testing import QboEmulator

    project, _ = project_of_two_shares(tmp_path, chunk_days=800)  # 120 pages of 5
    with QboEmulator(seed=5, invoices=600, customers=20, items=20) as emu:
        env = base_env(tmp_path)
        env.update(emu.env())
        counts = (
            qbo_rs.QboClient(emu.credentials(), token_store=None)
            .estimate("invoice", "2014-09-01", "2025-09-12", chunk_days=800, page_size=5)
            .count_requests
        )
        emu.set_knobs(force_429_after=counts, force_429_next=1_000_000)  # every fetch exhausts its retries
        first = run_scheduler(env, project, max_seconds=300, timeout=350)
        assert "[final] schedule qb_invoice_backfill/qb_invoice_trigger @once" in first.stdout, first.stdout
        assert "runs=[(1, 'failed')]" in first.stdout, first.stdout + first.stderr[-3000:]
        with sqlite3.connect(tmp_path / "mage_data" / "mage_project" / "mage-ai.db") as db:
            statuses = dict(db.execute("select block_uuid, status from block_run where pipeline_run_id = 1").fetchall())
        fetches = {k: v for k, v in statuses.items() if k.startswith("qb_fetch_window:")}
        assert len(fetches) == 2 and set(fetches.values()) == {"FAILED"}, statuses  # none cancelled
        assert (
            statuses["qb_export_window"] == "UPSTREAM_FAILED" and statuses["qb_backfill_summary"] == "UPSTREAM_FAILED"
        )
        assert not [k for k in statuses if k.startswith("qb_export_window:")], statuses
        assert not (tmp_path / "data" / "invoices.txt").exists()

        emu.set_knobs(force_429_next=0)
        retried = mage_script(RUNNER, env, "qb_invoice_backfill", "--project", str(project), "--retry-run", "1")
        assert retried.returncode == 0, retried.stdout + retried.stderr[-3000:]
        assert "4 block run(s) reset" in retried.stdout
        expected = {
            r["id"]: str(r["sync_token"])
            for r in emu.truth("Invoice")
            if "2014-09-01T00:00:00Z" <= r["last_updated_utc"] < "2025-09-12T00:00:00Z"
        }
    assert read_txt(tmp_path / "data" / "invoices.txt") == expected
    assert f"Total invoices descargadas: {len(expected)}" in retried.stdout
    assert not [
        p
        for p in (tmp_path / "data" / ".qbo_rs" / "stage" / "invoices").rglob("*")
        if p.suffix in (".json", ".jsonl", ".partial")
    ], "every stage was written and removed"


def test_before_start_holds_a_due_once_trigger_and_fire_lets_it_go(tmp_path: Path):
    """What `make mage-ui` runs before Mage starts, on a new database: the shipped trigger is due
    (2025-09-12 has passed), so it is held by a cancelled run Mage's scheduler counts as its run;
    FIRE_TRIGGERS=1 (--fire) removes that run. triggers.yaml is never written."""
    env = base_env(tmp_path)
    files = {p: p.read_bytes() for p in PROJECT.glob("pipelines/*/triggers.yaml")}
    first = mage_script(TRIGGERS, env, "before-start")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "HELD   qb_invoice_backfill/qb_invoice_trigger (@once, 2025-09-12 00:00 UTC)" in first.stdout
    assert "Mage would have started this backfill NOW:" in first.stdout and "fecha_inicio=2014-09-01" in first.stdout
    assert first.stdout.startswith("+---") and first.stdout.rstrip().endswith("-+"), first.stdout  # a box
    status = mage_script(TRIGGERS, env, "status").stdout
    assert "qb_invoice_backfill/qb_invoice_trigger: time @once status=active runs=[(1, 'cancelled')]" in status
    # Mage's own rule (PipelineSchedule.should_schedule) no longer fires it.
    assert (
        mage_python(
            r"""
import json
from mage_ai.settings.repo import set_repo_path
set_repo_path(%r)
from mage_ai.orchestration.db import db_connection
db_connection.start_session()
from mage_ai.orchestration.db.models.schedules import PipelineSchedule
s = PipelineSchedule.query.filter(PipelineSchedule.name == 'qb_invoice_trigger').one()
print(json.dumps(s.should_schedule()))
"""
            % str(PROJECT),
            env=env,
        )
        is False
    )

    again = mage_script(TRIGGERS, env, "before-start")
    assert "not fired in this database (a cancelled run stands for it); FIRE_TRIGGERS=1 fires it" in again.stdout
    assert "runs=[(1, 'cancelled')]" in mage_script(TRIGGERS, env, "status").stdout, "held once, not twice"

    fire = mage_script(TRIGGERS, env, "before-start", "--fire")
    assert fire.returncode == 0, fire.stderr[-3000:]
    assert "FIRES  qb_invoice_backfill/qb_invoice_trigger" in fire.stdout and "starts NOW with" in fire.stdout
    assert "sets `status: inactive` in its" in fire.stdout
    assert "qb_invoice_trigger: time @once status=active runs=[]" in mage_script(TRIGGERS, env, "status").stdout
    assert {p: p.read_bytes() for p in files} == files


@pytest.mark.slow
def test_a_run_started_from_the_ui_lets_one_failed_share_fail_alone(tmp_path: Path):
    """ "Run pipeline now" makes an @once trigger with a random name and no settings (Mage's UI
    sends none), so Mage would fail the run at the first failed block run and cancel the rest.
    The planner gives that trigger the shipped triggers' allow_blocks_to_fail (Mage reads it at
    every scheduler tick) and sets it inactive, as it has fired: the other share is fetched."""
    import qbo_rs
    from qbo_rs.testing import QboEmulator

    project = copy_project(tmp_path)
    deactivate_triggers(project)  # only the UI's trigger fires
    variables = dict(fecha_inicio="2015-01-01", fecha_fin="2026-01-01", chunk_days=400, page_size=3, max_children=4)
    with QboEmulator(seed=5, invoices=600, customers=20, items=20) as emu:
        env = base_env(tmp_path)
        env.update(emu.env())
        # The trigger as the UI's "Run pipeline now" creates it (its payload, settings NULL).
        mage_python(
            r"""
import json
from datetime import datetime, timedelta, timezone
from mage_ai.settings.repo import set_repo_path
set_repo_path(%r)
from mage_ai.orchestration.db import db_connection
from mage_ai.orchestration.db.database_manager import database_manager
db_connection.start_session()
database_manager.run_migrations(log_level='WARNING')
from mage_ai.orchestration.db.models.schedules import PipelineSchedule
s = PipelineSchedule.create(name='falling echo', pipeline_uuid='qb_invoice_backfill', schedule_type='time',
                            schedule_interval='@once', status='active', variables=%r, repo_path=%r,
                            start_time=datetime.now(tz=timezone.utc) - timedelta(days=1))
print(json.dumps(s.settings))
"""
            % (str(project), variables, str(project)),
            env=env,
        )
        counts = (
            qbo_rs.QboClient(emu.credentials(), token_store=None)
            .estimate("invoice", "2015-01-01", "2026-01-01", chunk_days=400, page_size=3)
            .count_requests
        )
        # After the planner's counts, 7 refusals exhaust the first share's first request (6 retries).
        emu.set_knobs(force_429_after=counts, force_429_next=7)
        ran = run_scheduler(env, project, max_seconds=300)
        assert "falling echo" in ran.stdout and "runs=[(1, 'failed')]" in ran.stdout, ran.stdout + ran.stderr[-3000:]
    with sqlite3.connect(tmp_path / "mage_data" / "mage_project" / "mage-ai.db") as db:
        statuses = dict(db.execute("select block_uuid, status from block_run where pipeline_run_id = 1").fetchall())
        status, settings = db.execute(
            "select status, settings from pipeline_schedule where name = 'falling echo'"
        ).fetchone()
    fetches = sorted(v for k, v in statuses.items() if k.startswith("qb_fetch_window:"))
    assert fetches == ["COMPLETED", "COMPLETED", "FAILED"], statuses  # none cancelled
    assert status == "INACTIVE" and json.loads(settings) == {"allow_blocks_to_fail": True}
    logs = "".join(p.read_text() for p in (tmp_path / "mage_data").glob("mage_project/pipelines/*/.logs/**/*.log"))
    assert "trigger falling echo (made by the UI's Run pipeline now): allow_blocks_to_fail set" in logs
