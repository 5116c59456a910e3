#!/usr/bin/env python
"""Run a Mage pipeline with dynamic blocks headlessly (mage-ai 0.9.80), or re-run its failed windows.

Plain ``mage run <project> <pipeline>`` cannot execute dynamic blocks in 0.9.80 (it runs in
"notebook mode" and crashes in calculate_dynamic_index_data_index, mage-ai issue #4827). Dynamic
fan-out only happens on the block-run path that the scheduler uses: a PipelineRun with BlockRun
rows executed by PipelineExecutor. This script does exactly that, in this process:

  1. set the repo path, run Mage's DB migrations (idempotent),
  2. get or create an API-type schedule (default name ``headless_cli``; the scheduler never
     creates runs for it),
  3. create a PipelineRun (RUNNING) with the runtime variables,
  4. execute it with PipelineExecutor (the path of ``mage run --pipeline-run-id``),
  5. mark the run COMPLETED or FAILED and exit 0 (completed), 1 (failed) or 2 (bad arguments).

Windows run one after another in this process (the realm's budget is shared with any other
process on the machine through qbo_rs's budget file). Never run this against a MAGE_DATA_DIR whose scheduler is running
(``mage start``): the scheduler executes every RUNNING pipeline run in its database, so blocks
would run twice. Use ``--create-only`` then, and let the scheduler execute the run.

Examples:
  scripts/mage_run_pipeline.py qb_invoice_backfill --var fecha_inicio=2025-01-01 --var fecha_fin=2025-07-01
  scripts/mage_run_pipeline.py qb_item_backfill --runtime-vars '{"fecha_inicio": "2024-01-01",
      "fecha_fin": "2025-01-01", "page_size": 1000, "sink": "both"}'
  scripts/mage_run_pipeline.py qb_invoice_backfill --retry-run 7     # re-run run 7's failed windows
  scripts/mage_run_pipeline.py qb_invoice_backfill ... --window invoice_backfill_2025-02-20

MAGE_DATA_DIR defaults to <repo>/mage_data; the project to <repo>/mage_project.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone

from mage_session import argument_parser, open_project

# Lines from the blocks' logs printed after the run (the runbook's lines and the failures).
SHOWN = (
    "Rango ",
    "Total ",
    "Validation:",
    "post-run policy",
    "Intuit rotated",
    "API Limit",
    "Plan: ",
    "Share ",
    "Summary: ",
    "Sync ",
)


def parse_args(argv):
    p = argument_parser(__doc__)
    p.add_argument("pipeline_uuid")
    p.add_argument("--runtime-vars", default="{}", help="JSON object of runtime variables")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one runtime variable, passed as a string like the Mage UI does (repeatable)",
    )
    p.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="LABEL",
        help="run only this window label (repeatable); same fecha_*/chunk_days as the first run",
    )
    p.add_argument(
        "--retry-run",
        type=int,
        metavar="PIPELINE_RUN_ID",
        help="re-execute the failed block runs (windows) of this pipeline run, then the rest",
    )
    p.add_argument("--schedule-name", default="headless_cli")
    p.add_argument(
        "--create-only",
        action="store_true",
        help="create the run and print its id; a running scheduler (or mage run --pipeline-run-id) executes it",
    )
    p.add_argument("--quiet", action="store_true", help="do not echo Mage's block logs while running")
    return p.parse_args(argv)


def runtime_variables(args) -> dict:
    try:
        variables = json.loads(args.runtime_vars)
    except json.JSONDecodeError as err:
        raise SystemExit(f"error: --runtime-vars is not valid JSON: {err}") from None
    if not isinstance(variables, dict):
        raise SystemExit("error: --runtime-vars must be a JSON object")
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"error: --var expects NAME=VALUE (got {item!r})")
        variables[name.strip()] = value
    if args.window:
        variables["windows"] = list(args.window)
    return variables


def block_log_messages(project_path: str, pipeline_uuid: str, partition: str, since: float = 0.0):
    """(block_uuid, level, message) from the run's Mage log files, in time order, logged at or
    after ``since`` (epoch seconds; a retried run appends to the same files)."""
    from mage_ai.settings.repo import get_variables_dir

    base = os.path.join(get_variables_dir(repo_path=project_path), "pipelines", pipeline_uuid, ".logs", partition)
    rows = []
    for path in glob.glob(os.path.join(base, "*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                start = line.find("{")
                if start < 0:
                    continue
                try:
                    data = json.loads(line[start:])
                except json.JSONDecodeError:
                    continue
                stamp = data.get("timestamp")
                if not isinstance(stamp, (int, float)) or stamp < since:
                    continue
                rows.append((stamp, data.get("block_uuid", ""), data.get("level", ""), str(data.get("message", ""))))
    rows.sort(key=lambda r: r[0])
    return [(b, lvl, m) for _, b, lvl, m in rows]


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    project_path = os.path.abspath(args.project)
    if not os.path.exists(os.path.join(project_path, "metadata.yaml")):
        print(f"error: {project_path} is not a Mage project (no metadata.yaml)", file=sys.stderr)
        return 2
    variables = runtime_variables(args)
    open_project(project_path)
    with contextlib.redirect_stdout(sys.stderr):
        from mage_ai.data_preparation.executors.executor_factory import ExecutorFactory
        from mage_ai.data_preparation.models.pipeline import Pipeline
        from mage_ai.data_preparation.models.triggers import ScheduleType
        from mage_ai.orchestration.db import db_connection
        from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun, PipelineSchedule

        try:
            pipeline = Pipeline.get(args.pipeline_uuid, repo_path=project_path)
        except Exception as err:
            print(f"error: pipeline {args.pipeline_uuid!r} not found in {project_path}: {err}", file=sys.stderr)
            return 2

    if args.retry_run is not None:
        pipeline_run = db_connection.session.get(PipelineRun, args.retry_run)
        if pipeline_run is None or pipeline_run.pipeline_uuid != pipeline.uuid:
            print(f"error: no pipeline run {args.retry_run} of {pipeline.uuid}", file=sys.stderr)
            return 2
        if variables:
            print(
                "error: --retry-run re-uses the run's own variables; do not pass --var/--runtime-vars/--window",
                file=sys.stderr,
            )
            return 2
        redo = [
            br
            for br in pipeline_run.block_runs
            if br.status
            in (
                BlockRun.BlockRunStatus.FAILED,
                BlockRun.BlockRunStatus.UPSTREAM_FAILED,
                BlockRun.BlockRunStatus.CANCELLED,
            )
        ]
        for br in redo:
            br.update(status=BlockRun.BlockRunStatus.INITIAL, started_at=None, completed_at=None)
        pipeline_run.update(status=PipelineRun.PipelineRunStatus.RUNNING, completed_at=None)
        print(
            f"retrying pipeline_run_id={pipeline_run.id}: {len(redo)} block run(s) reset: "
            + ", ".join(sorted(br.block_uuid for br in redo)),
            flush=True,
        )
    else:
        schedule = PipelineSchedule.repo_query.filter(
            PipelineSchedule.pipeline_uuid == pipeline.uuid,
            PipelineSchedule.name == args.schedule_name,
        ).one_or_none()
        # allow_blocks_to_fail: when Mage's scheduler executes this run (--create-only), one failed
        # window must not cancel the others (the triggers.yaml triggers set it too).
        settings = dict(allow_blocks_to_fail=True)
        if schedule is None:
            schedule = PipelineSchedule.create(
                name=args.schedule_name,
                pipeline_uuid=pipeline.uuid,
                schedule_type=ScheduleType.API,
                repo_path=project_path,
                settings=settings,
            )
        elif not (schedule.settings or {}).get("allow_blocks_to_fail"):
            schedule.update(settings=dict(schedule.settings or {}, **settings))
        now = datetime.now(tz=timezone.utc)
        pipeline_run = PipelineRun.create(
            pipeline_schedule_id=schedule.id,
            pipeline_uuid=pipeline.uuid,
            execution_date=now,
            status=PipelineRun.PipelineRunStatus.RUNNING,
            started_at=now,
            variables=variables,
        )
    print(f"pipeline_run_id={pipeline_run.id} execution_partition={pipeline_run.execution_partition}", flush=True)
    if args.create_only:
        return 0

    error = None
    started = time.time() - 1.0
    sink = open(os.devnull, "w") if args.quiet else sys.stderr
    try:
        with contextlib.redirect_stdout(sink):
            ExecutorFactory.get_pipeline_executor(
                pipeline,
                execution_partition=pipeline_run.execution_partition,
            ).execute(
                allow_blocks_to_fail=False,
                global_vars=pipeline_run.get_variables(),
                pipeline_run_id=pipeline_run.id,
                update_status=False,
            )
    except Exception as err:  # a failing block re-raises out of PipelineExecutor
        error = err
        if not args.quiet:
            traceback.print_exc()
    finally:
        if args.quiet:
            sink.close()

    db_connection.session.expire_all()
    pipeline_run = db_connection.session.get(PipelineRun, pipeline_run.id)
    statuses = {br.block_uuid: br.status.value for br in pipeline_run.block_runs}
    # Mage numbers the children of a dynamic child (qb_export_window:0, :1, ...); each one's
    # metrics name the upstream run it belongs to (qb_fetch_window:<label>): show it.
    upstream_of = {
        br.block_uuid: ", ".join((br.metrics or {}).get("dynamic_upstream_block_uuids") or [])
        for br in pipeline_run.block_runs
    }
    ok = (
        error is None
        and bool(statuses)
        and all(s == BlockRun.BlockRunStatus.COMPLETED.value for s in statuses.values())
    )
    if ok:
        pipeline_run.complete()
    else:
        pipeline_run.update(status=PipelineRun.PipelineRunStatus.FAILED, completed_at=datetime.now(tz=timezone.utc))

    for block_uuid, level, message in block_log_messages(
        project_path, pipeline.uuid, pipeline_run.execution_partition, started
    ):
        first = message.strip().splitlines()[0] if message.strip() else ""
        if first.startswith(SHOWN) or level in ("ERROR", "WARNING", "CRITICAL"):
            print(f"  {block_uuid} | {level} | {first}")

    def natural(item):  # qb_export_window:2 before qb_export_window:10
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in item[0].split(":")]

    for block_uuid, status in sorted(statuses.items(), key=natural):
        after = f" <- {upstream_of[block_uuid]}" if upstream_of.get(block_uuid) else ""
        print(f"  block_run {block_uuid:60s} {status}{after}")
    failed = sorted(b for b, s in statuses.items() if s == BlockRun.BlockRunStatus.FAILED.value)
    print(f"pipeline_run {pipeline_run.id} -> {pipeline_run.status.value}")
    if failed:
        print(
            f"failed: {', '.join(failed)}; re-run them with: {os.path.relpath(__file__)} "
            f"{pipeline.uuid} --retry-run {pipeline_run.id}"
        )
    elif error is not None:
        print(f"error: {type(error).__name__}: {error}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
