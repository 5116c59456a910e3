"""DYNAMIC CHILD (one block run per window): fetches ONE window from QuickBooks with qbo_rs.

``QboClient.stage_window`` pages the window (keyset paging, COUNT(*) reconciliation, the realm's
shared pace and retries) into ``<stage_dir>/<entity>s/<label>.jsonl`` plus a manifest, its
commit point; this block returns only a small handle (label, bounds, the manifest's path,
counts, requests), which Mage pickles to disk and hands to this window's qb_export_window run.
Records never pass through Python or Mage's block outputs.

Mage executes a block run at least once (a finished one has been seen running again): the stage
belongs to this pipeline run (``stage_run_id``), so a repeated execution gets the stage it made
the first time, or the one its export already wrote, without asking QuickBooks again.

This is the only block that talks to QuickBooks, so it also writes a rotated refresh token back
to the ``qb_refresh_token`` Mage secret. A failed fetch stages nothing and raises: this child
fails alone (Mage then holds back every export until it is re-run: see mage_project/README.md);
re-run it by its block run (runner: ``--retry-run <pipeline_run_id>``) or by its label
(``--window <label>``).
"""
import os

from mage_project.utils.qb_mage import engine_logs, log, make_client, run_params, stage_run_id

if 'transformer' not in globals():
    from mage_ai.data_preparation.decorators import transformer


class WindowFetchFailed(RuntimeError):
    pass


@transformer
def fetch_window(window, *args, **kwargs):
    params = run_params(kwargs)
    if window.get('entity') != params.entity:
        raise WindowFetchFailed(f'window {window.get("label")} belongs to {window.get("entity")}, '
                                f'not to {params.entity}: re-plan the run')
    with engine_logs(kwargs):
        client, sources, rotation = make_client(kwargs)
        try:
            staged = client.stage_window(
                params.entity,
                window['start'],
                window['end'],
                label=window['label'],
                page_size=params.page_size,
                stage_dir=params.stage_dir,
                run_id=stage_run_id(kwargs),
                raise_on_failure=False,
            )
        finally:
            rotation.flush(kwargs, sources['qb_refresh_token'])
    report = staged.report
    if staged.label != window['label']:
        raise WindowFetchFailed(f'window {window["label"]}: the engine staged {staged.label} instead')
    if not staged.ok or staged.manifest is None:
        error = report.windows[0].error if report.windows else None
        raise WindowFetchFailed(
            f'window {staged.label} [{window["start"]}, {window["end"]}) could not be fetched: {error}. Nothing '
            f'was staged or written; re-run this window alone (runner: --retry-run <pipeline_run_id>, or '
            f'--window {staged.label} with the same fecha_inicio/fecha_fin/chunk_days; Mage UI: retry this '
            'block run)')
    duration = report.windows[0].duration_s if report.windows else report.duration_s
    if staged.reused:
        log(kwargs, f'window {staged.label}: {staged.rows_fetched} fetched by an earlier execution of this block '
                    f'run, {staged.lines} line(s) staged; 0 requests now')
    else:
        log(kwargs, f'window {staged.label}: {staged.rows_fetched} fetched ({staged.lines} line(s) staged), '
                    f'{staged.pages} page(s), {report.requests} request(s), {report.retries} retried, '
                    f'{report.throttled} throttled, {duration:.2f} s')
    # The handle: small and JSON-friendly (Mage writes it to disk), never records.
    return dict(
        entity=params.entity,
        label=staged.label,
        start=window['start'],
        end=window['end'],
        planned=window.get('planned'),
        manifest=str(staged.manifest),
        rows_fetched=staged.rows_fetched,
        lines=staged.lines,
        server_count=staged.server_count,
        pages=staged.pages,
        requests=report.requests,
        retries=report.retries,
        throttled=report.throttled,
        fetch_s=round(duration, 3),
        pid=os.getpid(),
    )
