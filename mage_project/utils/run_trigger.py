"""The trigger a pipeline run belongs to, settled by the run's first block so that a run started
from the UI behaves like one of the shipped triggers.

mage-ai 0.9.80 reads ``allow_blocks_to_fail`` for a run from its trigger's settings only
(``PipelineScheduler``: ``pipeline_schedule.get_settings().allow_blocks_to_fail``, read again at
every scheduler tick); a pipeline's own metadata cannot carry it (its ``settings`` hold only
``triggers.save_in_code_automatically``). The UI's "Run pipeline now" creates a new @once trigger
with a random name and no settings at all, so without this one failed share would fail the run
and cancel the shares still queued or running.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import yaml

from mage_project.utils.logs import log
from mage_project.utils.triggers import read_triggers, trigger_entries, triggers_file


def _code_trigger_names(kwargs: Dict[str, Any], pipeline_uuid: str) -> Optional[set]:
    """Names of the triggers in the pipeline's triggers.yaml; None if the file cannot be read."""
    try:
        _, data = read_triggers(triggers_file(kwargs, pipeline_uuid))
    except (OSError, yaml.YAMLError):
        return None
    return {t.get("name") for t in trigger_entries(data)}


def settle_run_trigger(kwargs: Dict[str, Any]) -> None:
    """Gives this run's trigger ``allow_blocks_to_fail`` if it lacks it, and sets a one-time
    trigger made by the UI (not in triggers.yaml) inactive: it has fired, and Mage leaves it
    active forever when its run fails. Logs what it changed; never fails the block (a run it
    cannot settle keeps Mage's behaviour)."""
    run_id = kwargs.get("pipeline_run_id")
    if run_id is None:  # notebook mode: no run, no trigger
        return
    try:
        from mage_ai.data_preparation.models.triggers import ScheduleInterval, ScheduleStatus
        from mage_ai.orchestration.db.models.schedules import PipelineRun

        run = PipelineRun.query.get(int(run_id))
        schedule = run.pipeline_schedule if run is not None else None
        if schedule is None:
            return
        changes: Dict[str, Any] = {}
        notes = []
        settings = dict(schedule.settings or {})
        if not settings.get("allow_blocks_to_fail"):
            changes["settings"] = dict(settings, allow_blocks_to_fail=True)
            notes.append(
                "allow_blocks_to_fail set, as in the shipped triggers: one failed share never cancels the others"
            )
        code = _code_trigger_names(kwargs, schedule.pipeline_uuid)
        made_by_ui = code is not None and schedule.name not in code
        if (
            made_by_ui
            and schedule.schedule_interval == ScheduleInterval.ONCE
            and schedule.status == ScheduleStatus.ACTIVE
        ):
            changes["status"] = ScheduleStatus.INACTIVE
            notes.append("set inactive, as it has fired (a one-time trigger fires once)")
        if not changes:
            return
        schedule.update(**changes)
        origin = (
            "made by the UI's Run pipeline now" if made_by_ui else f"pipelines/{schedule.pipeline_uuid}/triggers.yaml"
        )
        log(kwargs, f"trigger {schedule.name} ({origin}): " + "; ".join(notes))
    except Exception as err:  # the run goes on with Mage's own settings
        log(kwargs, f"could not settle this run's trigger ({type(err).__name__}: {err})", "warning")
