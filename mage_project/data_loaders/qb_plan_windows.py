"""DYNAMIC block: plans the backfill with qbo_rs and fans out by work, not by day.

Windows are planned from the calendar (``chunk_days``, labels like ``invoice_backfill_2025-10-15``),
but read by the data: ``QboClient.plan_shares`` counts the range with a few ``SELECT COUNT(*)``
requests, groups consecutive windows into keyset streams sized by those counts, and cuts the plan
into at most ``max_children`` shares of about equal work (small data is one share). Mage runs one
fetch child and one export child per share, so a backfill costs at most 2 x max_children + 2
block runs whatever ``chunk_days`` is.

Returns ``[items, metadata]``: ``items[i]`` is the i-th share (its label, bounds, windows and
the plan's counts as JSON) and ``metadata[i]['block_uuid']`` is the share's label, so its fetch
run is named ``qb_fetch_window:<first window label>..<last window start>``. The plan's estimate
(records, streams, requests, minutes) is logged, and a plan over ``max_requests`` is refused here,
before any page is read.

Mage executes a block run at least once: the plan is kept beside this pipeline run's stages
(``plan.receipt``), and a repeated execution returns it as it was, without counting again, so its
children always read the shares they were created for.
"""

import qbo_rs
from mage_project.utils.qb_mage import (
    RunVariableError,
    check_sink_config,
    engine_client,
    fail,
    keep,
    kept,
    log,
    run_params,
    run_receipt,
    settle_run_trigger,
    utc_text,
)
from qbo_rs.exceptions import ConfigError

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader


def _check_labels(params):
    """Names unknown ``windows`` labels with the plan's own, before any request."""
    planned = qbo_rs.plan_windows(params.start, params.end, params.chunk_days, params.entity)
    known = {w.label for w in planned}
    unknown = [label for label in params.windows or [] if label not in known]
    if unknown:
        sample = ", ".join(w.label for w in planned[:3])
        raise RunVariableError(
            f"windows: {', '.join(unknown)} not among the {len(planned)} window(s) planned for "
            f"[{utc_text(params.start)}, {utc_text(params.end)}) with chunk_days={params.chunk_days} "
            f"(labels look like {sample}, ...): re-run with the same fecha_inicio, fecha_fin and chunk_days"
        )
    return len(planned)


@data_loader
def plan_windows(*args, **kwargs):
    # First, whatever the variables: a run started from the UI gets the shipped triggers' settings.
    settle_run_trigger(kwargs)
    try:
        params = run_params(kwargs)
        check_sink_config(params)
        calendar = _check_labels(params)
    except RunVariableError as err:
        # One ERROR line naming the variable, then the error raised from here: its traceback is
        # this frame alone, not the helpers' (Mage prints it under the line, in the block's log).
        raise fail(kwargs, RunVariableError(str(err))) from None
    log(kwargs, f"{params.pipeline_uuid}: {params.describe()}")
    receipt = run_receipt(params, kwargs, "plan")
    output = kept(receipt)
    if output is not None:
        log(
            kwargs,
            f"Plan: kept from an earlier execution of this block run ({receipt}): "
            f"{len(output[0])} child(ren); no request now",
        )
        return output
    with engine_client(kwargs) as client:  # a missing secret is named here
        try:
            plan = client.plan_shares(
                params.entity,
                params.start,
                params.end,
                chunk_days=params.chunk_days,
                page_size=params.page_size,
                windows=params.windows,
                max_shares=params.max_children,
                max_requests=params.max_requests,
            )
        except ConfigError as err:  # over max_requests, or a plan the engine refuses
            fail(kwargs, err)
            raise
    estimate = plan.estimate
    windows = estimate.windows
    log(
        kwargs,
        f"Plan: {windows} window(s)"
        + (f" (of {calendar} planned)" if windows != calendar else "")
        + f", {estimate.records} record(s) in {estimate.streams} stream(s): about {estimate.requests} "
        f"request(s) ({estimate.count_requests} count(s) spent now), {estimate.minutes:.1f} min at the "
        f"realm's pace; {len(plan.shares)} child(ren) (max_children={params.max_children})",
    )
    items, metadata = [], []
    for share in plan.shares:
        log(
            kwargs,
            f"Share {share.label}: {len(share)} window(s), {share.records} record(s), {share.streams} "
            f"stream(s), ~{share.page_requests} page request(s)",
        )
        items.append(
            dict(
                entity=params.entity,
                label=share.label,
                start=utc_text(share.start),
                end=utc_text(share.end),
                windows=len(share),
                records=share.records,
                share=share.to_json(),
                planned=windows,
                plan_requests=estimate.count_requests,
                estimate_requests=estimate.requests,
            )
        )
        metadata.append(dict(block_uuid=share.label))
    keep(receipt, [items, metadata])
    return [items, metadata]
