"""DYNAMIC CHILD (one block run per share of the plan): fetches ONE share's windows from
QuickBooks with qbo_rs.

``QboClient.stage_share`` reads the share's streams (keyset paging with the plan's counts, COUNT
reconciliation, the realm's shared pace and retries), attributes every record to its window (one
``Rango … -> N filas`` line per window) and stages them in one file under
``<stage_dir>/<entity>s/<run id>/`` plus a manifest, its commit point; this block returns only a
small handle (label, the manifest's path, counts, requests), which Mage hands to this share's
qb_export_window run. Records never pass through Python or Mage's block outputs.

Mage executes a block run at least once (a finished one has been seen running again): the stage
belongs to this pipeline run (``stage_run_id``), so a repeated execution reads only the windows
no earlier execution staged: nothing after a success, only the failed windows after a partial
failure. This is the only block besides the plan that talks to QuickBooks, so it also writes a
rotated refresh token back to the ``qb_refresh_token`` Mage secret. A share with a failed window
raises after keeping the windows it read: retry this block run (runner: ``--retry-run
<pipeline_run_id>``; Mage UI: retry the run), or re-run the windows by label (``--window``).
"""

import os

from mage_project.utils.qb_mage import (
    child_params,
    engine_client,
    fail,
    keep,
    kept,
    log,
    log_windows,
    run_receipt,
    stage_run_id,
)

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer


class WindowFetchFailed(RuntimeError):
    pass


@transformer
def fetch_window(share, *args, **kwargs):
    params, label = child_params(kwargs, share, WindowFetchFailed, ": re-plan the run")
    receipt = run_receipt(params, kwargs, f"{label}.fetch")
    earlier = kept(receipt) or {}
    with engine_client(kwargs) as client:
        staged = client.stage_share(
            share["share"],
            stage_dir=params.stage_dir,
            run_id=stage_run_id(kwargs),
            raise_on_failure=False,
        )
    report = staged.report
    # What every execution of this block run spent, failed ones included: the run's true cost.
    spent = earlier.get("spent", dict(requests=0, retries=0, throttled=0, fetch_s=0.0))
    spent = dict(
        requests=spent["requests"] + report.requests,
        retries=spent["retries"] + report.retries,
        throttled=spent["throttled"] + report.throttled,
        fetch_s=round(spent["fetch_s"] + report.duration_s, 3),
    )
    if (
        earlier.get("handle") is not None
        and report.requests == 0
        and staged.ok
        and staged.reused == len(report.windows)
    ):
        log(kwargs, f"share {label}: staged by an earlier execution of this block run; 0 requests now")
        return earlier["handle"]
    keep(receipt, dict(spent=spent))
    if staged.label != label:
        raise fail(kwargs, WindowFetchFailed(f"share {label}: the engine staged {staged.label} instead"))
    # One line per window that holds records (the engine's own per-window lines are at DEBUG; its
    # WARNING just above lists the empty ones).
    log_windows(
        kwargs,
        report.windows,
        lambda w: f"{w.rows_fetched} record(s) staged" if w.rows_fetched else None,
        list_quiet=False,
    )
    if not staged.ok:
        failed = report.failed_windows
        errors = {w.label: w.error for w in report.windows if not w.ok}
        first = failed[0] if failed else "?"
        raise fail(
            kwargs,
            WindowFetchFailed(
                f"share {label}: {len(failed)} of {len(report.windows)} window(s) could not be fetched "
                f"({', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}; {first}: {errors.get(first)}). The "
                f"{len(report.windows) - len(failed)} window(s) read are kept; retry this block run (runner: --retry-run "
                "<pipeline_run_id>; Mage UI: retry the run), which reads only the failed windows, or re-run them by label "
                "(--window LABEL with the same fecha_inicio/fecha_fin/chunk_days)"
            ),
        )
    by_kind = ", ".join(f"{n} {kind}" for kind, n in report.requests_by_kind.items() if n)
    reused = f"; {staged.reused} window(s) staged by an earlier execution of this block run" if staged.reused else ""
    log(
        kwargs,
        f"share {label}: {len(report.windows)} window(s), {report.total_rows} record(s) fetched, "
        f"{report.requests} request(s) ({by_kind or 'none'}), {report.throttled} throttled, "
        f"{report.duration_s:.2f} s{reused}",
    )
    # The handle: small and JSON-friendly (Mage writes it to disk), never records.
    handle = dict(
        entity=params.entity,
        label=label,
        start=share["start"],
        end=share["end"],
        windows=len(report.windows),
        planned=share.get("planned"),
        plan_requests=share.get("plan_requests", 0),
        estimate_requests=share.get("estimate_requests"),
        manifest=str(staged.manifest) if staged.manifest is not None else None,
        rows_fetched=report.total_rows,
        pid=os.getpid(),
        **spent,
    )
    keep(receipt, dict(spent=spent, handle=handle))
    return handle
