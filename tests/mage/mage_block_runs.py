"""Drives one pipeline run's block runs through mage-ai's own code (run in .venv-mage), for the
tests of what Mage does besides a plain run:

  reexecute RUN_ID BLOCK_RUN_UUID...   execute finished block runs again, as Mage's process queue
                                       does when it enqueues a block run twice (mage-ai 0.9.80 has
                                       been seen doing so): the run back to running, each block
                                       run queued, then Mage's run_block(); the run's status is
                                       restored afterwards
  set RUN_ID STATUS [UUID=STATUS...]   set the run's and block runs' statuses (the state a failure
                                       left, as the UI shows it)
  show RUN_ID                          nothing: the statuses only
  ui-retry RUN_ID                      what the UI's "Retry incomplete blocks" button sends
                                       (PipelineRunResource.update with pipeline_run_action
                                       retry_blocks); Mage's scheduler then executes the run

Prints one JSON object as its last line: {block run uuid: status} after the command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys


def main(argv) -> int:
    command, run_id, rest = argv[0], int(argv[1]), argv[2:]
    with contextlib.redirect_stdout(sys.stderr):
        from mage_ai.settings.repo import set_repo_path

        set_repo_path(os.environ["QBO_RS_MAGE_PROJECT"])
        from mage_ai.orchestration.db import db_connection

        db_connection.start_session()
        from mage_ai.orchestration.db.models.schedules import BlockRun, PipelineRun

        run = db_connection.session.get(PipelineRun, run_id)
        by_uuid = {br.block_uuid: br for br in run.block_runs}
        if command == "reexecute":
            from mage_ai.orchestration.pipeline_scheduler_original import run_block

            final = run.status
            run.update(status=PipelineRun.PipelineRunStatus.RUNNING)
            for uuid in rest:
                block_run = by_uuid[uuid]
                block_run.update(status=BlockRun.BlockRunStatus.QUEUED)
                tags = dict(
                    block_run_id=block_run.id,
                    block_uuid=uuid,
                    pipeline_run_id=run.id,
                    pipeline_schedule_id=run.pipeline_schedule_id,
                    pipeline_uuid=run.pipeline_uuid,
                )
                with contextlib.suppress(Exception):  # a failed block is reported by its status
                    run_block(run.id, block_run.id, run.get_variables(), tags)
            run.update(status=final)
        elif command == "set":
            run.update(status=PipelineRun.PipelineRunStatus(rest[0]))
            for item in rest[1:]:
                uuid, status = item.rsplit("=", 1)
                by_uuid[uuid].update(status=BlockRun.BlockRunStatus(status))
        elif command == "ui-retry":
            from mage_ai.api.resources.PipelineRunResource import PipelineRunResource

            PipelineRunResource(run, None).update(dict(pipeline_run_action="retry_blocks"))
        elif command != "show":
            raise SystemExit(f"unknown command {command!r}")
        db_connection.session.expire_all()
        statuses = {br.block_uuid: br.status.value for br in db_connection.session.get(PipelineRun, run_id).block_runs}
        statuses["<pipeline run>"] = db_connection.session.get(PipelineRun, run_id).status.value
    print(json.dumps(statuses))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
