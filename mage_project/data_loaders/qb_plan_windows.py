"""DYNAMIC block: plans the backfill's windows with qbo_rs; Mage runs one child per window.

Returns ``[items, metadata]``: ``items[i]`` is a small dict (the window's label and bounds) that
the child receives as its first argument, and ``metadata[i]['block_uuid']`` is the window's
label, so each fetch run is named ``qb_fetch_window:<label>`` (e.g.
``qb_fetch_window:invoice_backfill_2025-10-15``) and can be found and re-run by that label. Its
export run, ``qb_export_window:<i>``, is numbered by Mage in plan order (i-th window).
"""
from mage_project.utils.qb_mage import (
    RunVariableError,
    check_sink_config,
    log,
    read_credentials,
    run_params,
    utc_text,
)

import qbo_rs

if 'data_loader' not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def plan_windows(*args, **kwargs):
    params = run_params(kwargs)
    check_sink_config(params)
    read_credentials()  # a missing secret is named now, before any window runs (no request made)
    planned = qbo_rs.plan_windows(params.start, params.end, params.chunk_days, params.entity)
    windows = planned
    if params.windows:
        by_label = {w.label: w for w in planned}
        unknown = [label for label in params.windows if label not in by_label]
        if unknown:
            sample = ', '.join(w.label for w in planned[:3])
            raise RunVariableError(
                f'windows: {", ".join(unknown)} not among the {len(planned)} window(s) planned for '
                f'[{utc_text(params.start)}, {utc_text(params.end)}) with chunk_days={params.chunk_days} '
                f'(labels look like {sample}, ...): re-run with the same fecha_inicio, fecha_fin and chunk_days')
        wanted = set(params.windows)
        windows = [w for w in planned if w.label in wanted]
    log(kwargs, f'{params.pipeline_uuid}: {params.describe()}')
    log(kwargs, f'Plan: {len(windows)} window(s) to run'
                + (f' (of {len(planned)} planned)' if len(windows) != len(planned) else '')
                + ': ' + ', '.join(w.label for w in windows[:5]) + (' ...' if len(windows) > 5 else ''))
    items, metadata = [], []
    for w in windows:
        items.append(dict(
            entity=params.entity,
            label=w.label,
            start=utc_text(w.start),
            end=utc_text(w.end),
            planned=len(windows),
        ))
        metadata.append(dict(block_uuid=w.label))
    return [items, metadata]
