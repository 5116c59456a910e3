#!/usr/bin/env python
"""The project's triggers in code (pipelines/<uuid>/triggers.yaml), checked and managed headlessly.

  scripts/mage_triggers.py check [PIPELINE ...]
      parse every triggers.yaml with Mage's own loader (raise_exception=True; no DB writes) and
      print each trigger; exit 1 on a bad file.
  scripts/mage_triggers.py status
      the triggers as Mage's database sees them (status, runs and their statuses).
  scripts/mage_triggers.py once PIPELINE [--name N] [--start 'YYYY-MM-DD HH:MM'] [--var K=V ...]
                                          [--activate]
      add or update a one-time (@once) trigger, UTC start time, in that pipeline's triggers.yaml
      (the qb_invoice_trigger pattern, for qb_customer_backfill and qb_item_backfill too).
  scripts/mage_triggers.py apply-policy
      the post-run policy from Mage's database: every @once trigger that has a completed run is set
      `status: inactive` in its triggers.yaml (the final block does this itself after a success;
      this catches runs that completed another way).
  scripts/mage_triggers.py before-start [--fire]
      what `make mage-ui` runs before Mage starts: syncs triggers.yaml into Mage's database as
      Mage's scheduler does, and prints (in a box) what each active trigger will do once Mage is up.
      An @once trigger due at once (its start_time has passed, it has no run in this database) is
      held: a cancelled run is recorded for it with Mage's own create_and_cancel_pipeline_run (its
      log says why), so the scheduler does not fire it. With --fire, runs held that way are removed
      and due triggers fire on the scheduler's first tick. triggers.yaml is never written.
Options: --project PATH (default <repo>/mage_project). MAGE_DATA_DIR default <repo>/mage_data.
"""

from __future__ import annotations

import contextlib
import os
import sys
import textwrap
from datetime import datetime, timezone

from mage_session import argument_parser, open_project


def _setup(project_path: str, with_db: bool):
    open_project(project_path, with_db)
    with contextlib.redirect_stdout(sys.stderr):
        from importlib import import_module

        return import_module(f"{os.path.basename(project_path)}.utils.qb_mage")


def pipelines_with_triggers(project_path: str):
    root = os.path.join(project_path, "pipelines")
    return sorted(p for p in os.listdir(root) if os.path.exists(os.path.join(root, p, "triggers.yaml")))


def cmd_check(project_path: str, pipelines) -> int:
    _setup(project_path, with_db=False)
    from mage_ai.data_preparation.models.triggers import load_trigger_configs, load_triggers_file_content

    bad = 0
    for uuid in pipelines or pipelines_with_triggers(project_path):
        content = load_triggers_file_content(uuid, repo_path=project_path)
        try:
            triggers = load_trigger_configs(content, pipeline_uuid=uuid, repo_path=project_path, raise_exception=True)
        except Exception as err:
            print(f"{uuid}: INVALID triggers.yaml: {err}")
            bad += 1
            continue
        for t in triggers:
            problems = []
            if not t.has_valid_schedule_interval:
                problems.append("invalid schedule_interval")
            if not isinstance(t.start_time, datetime):
                problems.append("start_time is not a YAML timestamp (quote removed? see the file notes)")
            elif t.start_time.utcoffset() != timezone.utc.utcoffset(None):
                problems.append(f"start_time offset {t.start_time.utcoffset()} is not UTC (Mage would read it as UTC)")
            for key in ("fecha_inicio", "fecha_fin"):
                if key in (t.variables or {}) and not isinstance(t.variables[key], str):
                    problems.append(f"variables.{key} must be a quoted string")
            start = t.start_time.isoformat() if isinstance(t.start_time, datetime) else repr(t.start_time)
            print(
                f"{uuid}: {t.name} {t.schedule_type.value} {t.schedule_interval} start_time={start} "
                f"status={t.status.value} variables={t.variables}"
                + (f"  PROBLEMS: {'; '.join(problems)}" if problems else "")
            )
            bad += bool(problems)
    return 1 if bad else 0


def cmd_status(project_path: str) -> int:
    _setup(project_path, with_db=True)
    from mage_ai.orchestration.db.models.schedules import PipelineRun, PipelineSchedule

    for s in PipelineSchedule.query.order_by(PipelineSchedule.id).all():
        runs = PipelineRun.query.filter(PipelineRun.pipeline_schedule_id == s.id).all()
        print(
            f"{s.pipeline_uuid}/{s.name}: {s.schedule_type.value} {s.schedule_interval} "
            f"status={s.status.value} runs={[(r.id, r.status.value) for r in runs]}"
        )
    return 0


def cmd_apply_policy(project_path: str) -> int:
    helpers = _setup(project_path, with_db=True)
    from mage_ai.orchestration.db.models.schedules import PipelineRun, PipelineSchedule

    changed = 0
    for s in PipelineSchedule.query.filter(PipelineSchedule.schedule_interval == "@once").all():
        runs = PipelineRun.query.filter(PipelineRun.pipeline_schedule_id == s.id).all()
        if any(r.status == PipelineRun.PipelineRunStatus.COMPLETED for r in runs):
            path = os.path.join(project_path, "pipelines", s.pipeline_uuid, "triggers.yaml")
            if helpers.disable_once_trigger(path, s.name):
                print(f"{s.pipeline_uuid}/{s.name}: completed; set status: inactive in {path}")
                changed += 1
    print(f"{changed} trigger file(s) changed")
    return 0


# Marks the cancelled runs that `before-start` records to hold a due @once trigger (Mage does not
# fire an @once trigger that has a run): shown with the run's variables in the UI, and how
# `before-start --fire` finds them again.
HELD_BY = "held_by"
HELD_VALUE = "make mage-ui (FIRE_TRIGGERS=1 fires it)"


def _box(lines) -> str:
    width = max(len(line) for line in lines)
    edge = "+" + "-" * (width + 2) + "+"
    return "\n".join([edge, *(f"| {line.ljust(width)} |" for line in lines), edge])


def cmd_before_start(project_path: str, fire: bool) -> int:
    _setup(project_path, with_db=True)
    with contextlib.redirect_stdout(sys.stderr):
        from mage_ai.data_preparation.models.pipeline import Pipeline
        from mage_ai.orchestration.db.models.schedules import PipelineRun, PipelineSchedule
        from mage_ai.orchestration.pipeline_scheduler import sync_schedules
        from mage_ai.orchestration.triggers.utils import create_and_cancel_pipeline_run

        # Mage's own sync, as its scheduler runs it before every tick: the database then holds
        # exactly the triggers the first tick will look at.
        sync_schedules(pipelines_with_triggers(project_path))
    flag = "FIRE_TRIGGERS=1" if fire else "FIRE_TRIGGERS=0 (the default)"
    lines = [f"make mage-ui, {flag}: what the triggers of {os.path.basename(project_path)} do once Mage is up", ""]

    def say(state: str, schedule, *text: str) -> None:
        when = f"{schedule.start_time:%Y-%m-%d %H:%M} UTC" if schedule.start_time else "no start_time"
        lines.append(f"{state:<6} {schedule.pipeline_uuid}/{schedule.name} ({schedule.schedule_interval}, {when})")
        for part in text:
            lines.extend(textwrap.wrap(part, width=92, initial_indent=" " * 7, subsequent_indent=" " * 9))

    for s in PipelineSchedule.query.filter(PipelineSchedule.schedule_type == "time").order_by(PipelineSchedule.id):
        if s.status.value != "active":
            continue
        runs = PipelineRun.query.filter(PipelineRun.pipeline_schedule_id == s.id).all()
        held = [r for r in runs if (r.variables or {}).get(HELD_BY) == HELD_VALUE]
        if fire:
            for r in held:
                r.delete()
            runs = [r for r in runs if r not in held]
            held = []
        variables = ", ".join(f"{k}={v}" for k, v in (s.variables or {}).items())
        if held:
            say("HELD", s, "not fired in this database (a cancelled run stands for it); FIRE_TRIGGERS=1 fires it")
        elif runs:
            say("RAN", s, f"{len(runs)} run(s) in this database: it does not fire again")
        elif not s.should_schedule():
            say("WAITS", s, "fires at its start_time")
        elif fire or s.schedule_interval != "@once":
            say("FIRES", s, f"starts NOW with {variables}")
        else:
            create_and_cancel_pipeline_run(
                Pipeline.get(s.pipeline_uuid, repo_path=project_path),
                s,
                dict(variables=dict(s.variables or {}, **{HELD_BY: HELD_VALUE})),
                message=(
                    "Not fired: `make mage-ui` holds a due one-time trigger (this cancelled run stands for it, "
                    "so Mage's scheduler does not fire it). Start it with `make mage-ui FIRE_TRIGGERS=1`."
                ),
            )
            say(
                "HELD",
                s,
                f"its start_time has passed: Mage would have started this backfill NOW: {variables}.",
                "Held instead (a cancelled run stands for it here); FIRE_TRIGGERS=1 fires it.",
            )
    if len(lines) == 2:
        lines.append("No active time trigger: nothing starts by itself.")
    lines.append("")
    if any(line.startswith("FIRES") for line in lines):
        lines.append("When a one-time trigger's run succeeds, its summary block sets `status: inactive` in its")
        lines.append("triggers.yaml (the post-run policy): commit that change.")
    else:
        lines.append("Nothing here writes triggers.yaml. To run a pipeline: its Triggers page, Run@once.")
    print(_box(lines))
    return 0


def cmd_once(project_path: str, args) -> int:
    helpers = _setup(project_path, with_db=False)
    import yaml
    from mage_ai.data_preparation.models.triggers import load_trigger_configs

    path = os.path.join(project_path, "pipelines", args.pipeline, "triggers.yaml")
    if not os.path.isdir(os.path.dirname(path)):
        print(f"error: no pipeline {args.pipeline}", file=sys.stderr)
        return 2
    try:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    except ValueError:
        print(f'error: --start must be ISO, e.g. "2025-09-12 00:00" (UTC) (got {args.start!r})', file=sys.stderr)
        return 2
    start = (start if start.tzinfo else start.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
    original, parsed = helpers.read_triggers(path)
    data: dict = parsed or {}
    triggers = data.setdefault("triggers", [])
    name = args.name or args.pipeline.replace("_backfill", "") + "_trigger"
    trigger = next((t for t in triggers if t.get("name") == name), None)
    if trigger is None:
        trigger = dict(
            name=name,
            description=f"One-time backfill ({args.pipeline})",
            variables={},
            settings=dict(skip_if_previous_running=True, allow_blocks_to_fail=True),
        )
        triggers.append(trigger)
    trigger.update(
        schedule_type="time",
        schedule_interval="@once",
        start_time=start,
        last_enabled_at=start,
        status="active" if args.activate else "inactive",
    )
    for item in args.var:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --var expects K=V (got {item!r})", file=sys.stderr)
            return 2
        trigger.setdefault("variables", {})[key] = int(value) if value.isdigit() and key != "windows" else value
    header = [line for line in original.splitlines(keepends=True) if line.startswith("#")]
    text = "".join(header) + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    load_trigger_configs(text, pipeline_uuid=args.pipeline, repo_path=project_path, raise_exception=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    print(
        f"{args.pipeline}/{name}: @once at {start.isoformat()} status={trigger['status']} "
        f"variables={trigger.get('variables')} -> {path}"
    )
    return 0


def main(argv=None) -> int:
    p = argument_parser(__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("pipelines", nargs="*")
    sub.add_parser("status")
    sub.add_parser("apply-policy")
    b = sub.add_parser("before-start")
    b.add_argument("--fire", action="store_true", help="let due triggers fire (removes the runs that held them)")
    o = sub.add_parser("once")
    o.add_argument("pipeline")
    o.add_argument("--name")
    o.add_argument("--start", default="2025-09-12 00:00")
    o.add_argument("--var", action="append", default=[])
    o.add_argument("--activate", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    project_path = os.path.abspath(args.project)
    if args.cmd == "check":
        return cmd_check(project_path, args.pipelines)
    if args.cmd == "status":
        return cmd_status(project_path)
    if args.cmd == "apply-policy":
        return cmd_apply_policy(project_path)
    if args.cmd == "before-start":
        return cmd_before_start(project_path, args.fire)
    return cmd_once(project_path, args)


if __name__ == "__main__":
    sys.exit(main())
