#!/usr/bin/env python
"""Run Mage's own scheduler loop in this process for a bounded time (tests, cron, CI).

This is what ``mage start --instance-type scheduler`` runs forever (schedule_all() every
SCHEDULER_TRIGGER_INTERVAL, 10 s), minus the web server. Each tick:
  * syncs pipelines/*/triggers.yaml into the pipeline_schedule table,
  * creates pipeline runs for due ACTIVE schedules (an @once fires when now >= start_time and
    it has no run yet),
  * enqueues block runs on Mage's process queue: each block run, so each window, executes in
    its own worker process, up to queue_config.concurrency at once,
  * marks finished runs and flips a succeeded @once schedule to inactive (in the DB).
Plus a watchdog for a race in Mage's process queue that can leave a run hanging (see
restart_stalled_pool).

Usage: MAGE_DATA_DIR=... scripts/mage_scheduler.py [--project PATH] [--max-seconds 300]
                         [--interval 2] [--until-idle]
--until-idle stops once no pipeline run is initial/running and every due @once schedule has a
finished run. Exit code 0, or 1 if a run created while this ran failed or time ran out first.
Never run it beside a `mage start` on the same MAGE_DATA_DIR (two schedulers, one database).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from datetime import datetime, timezone

from mage_session import argument_parser, open_project


def restart_stalled_pool(job_manager) -> None:
    """Works around a race in mage-ai 0.9.80's ProcessQueue: its worker-pool process exits as soon
    as it sees an empty queue, and enqueue() only starts a new pool if the old one is not alive
    *at that instant*. A job enqueued while the pool is exiting is never run, and every later
    tick skips it ("Job ... exists. Skip enqueue") — the pipeline run hangs in `running`.
    Seen here with the dynamic children's controller block. Restart the pool when jobs wait
    and no pool is alive."""
    queue = getattr(job_manager, "queue", None)
    if queue is None or not hasattr(queue, "start_worker_pool"):
        return
    try:
        waiting = not queue.queue.empty()
    except Exception:
        return
    if waiting and not queue.is_worker_pool_alive():
        print(
            "[watchdog] jobs waiting and no Mage worker pool alive: restarting it (mage-ai 0.9.80 ProcessQueue race)",
            flush=True,
        )
        queue.start_worker_pool()


def main(argv=None) -> int:
    p = argument_parser(__doc__)
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--interval", type=float, default=2)
    p.add_argument("--until-idle", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    project_path = os.path.abspath(args.project)
    open_project(project_path)
    with contextlib.redirect_stdout(sys.stderr):
        from mage_ai.orchestration.db import db_connection
        from mage_ai.orchestration.db.models.schedules import PipelineRun, PipelineSchedule
        from mage_ai.orchestration.job_manager import get_job_manager
        from mage_ai.orchestration.pipeline_scheduler import schedule_all

    started = datetime.now(tz=timezone.utc)
    known_runs = {r.id for r in PipelineRun.query.all()}
    job_manager = get_job_manager()
    job_manager.start()
    deadline = time.time() + args.max_seconds
    tick = 0
    idle = False
    last_line = None
    t0 = time.time()
    try:
        while time.time() < deadline:
            tick += 1
            with contextlib.redirect_stdout(sys.stderr):
                schedule_all()
            restart_stalled_pool(job_manager)
            db_connection.session.expire_all()
            active = PipelineRun.query.filter(PipelineRun.status.in_(["initial", "running"])).all()
            pending_once = []
            now = datetime.now(tz=timezone.utc)
            for s in PipelineSchedule.query.filter(PipelineSchedule.schedule_interval == "@once").all():
                due = s.status.value == "active" and (
                    s.start_time is None or s.start_time.replace(tzinfo=timezone.utc) <= now
                )
                if due and not s.pipeline_runs_count:
                    pending_once.append(f"{s.pipeline_uuid}/{s.name}")
            line = f"running={[(r.id, r.pipeline_uuid) for r in active]} due_once_without_run={pending_once}"
            if line != last_line:  # print changes only
                print(f"[tick {tick}, {time.time() - t0:.0f} s] {line}", flush=True)
                last_line = line
            if args.until_idle and not active and not pending_once and tick > 1:
                with contextlib.redirect_stdout(sys.stderr):
                    schedule_all()  # one more tick: flips succeeded @once schedules to inactive
                idle = True
                break
            time.sleep(args.interval)
    finally:
        job_manager.stop()
        queue = job_manager.queue
        proc = getattr(queue, "worker_pool_proc", None)
        if proc is not None and proc.is_alive():
            proc.terminate()  # our own child process, by its handle
            proc.join(10)
        manager = getattr(queue, "mp_manager", None)
        if manager is not None:
            with contextlib.suppress(Exception):
                manager.shutdown()

    db_connection.session.expire_all()
    failed = False
    for s in PipelineSchedule.query.order_by(PipelineSchedule.id).all():
        runs = PipelineRun.query.filter(PipelineRun.pipeline_schedule_id == s.id).all()
        print(
            f"[final] schedule {s.pipeline_uuid}/{s.name} {s.schedule_interval} status={s.status.value} "
            f"runs={[(r.id, r.status.value) for r in runs]}"
        )
        failed |= any(r.id not in known_runs and r.status.value == "failed" for r in runs)
    if args.until_idle and not idle:
        print(f"[final] not idle after {args.max_seconds:.0f} s (started {started.isoformat()})")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
