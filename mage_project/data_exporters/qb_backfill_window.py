"""DYNAMIC CHILD: fetches ONE window from QuickBooks and writes it, both inside qbo_rs.

The engine pages the window (keyset paging, COUNT(*) reconciliation, pacing, retries) and
writes it idempotently to the sink chosen by ``sink`` (TXT files, PostgreSQL or both): a re-run
writes nothing new, a newer version replaces an older one, a crash leaves nothing torn.
Records never pass through Python or Mage's block outputs: this block returns a small summary.
A failed window raises, so only this child fails; re-run it alone by its label.
"""
import os

from mage_project.utils.qb_mage import engine_logs, log, make_client, run_params

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


class WindowFailed(RuntimeError):
    pass


@data_exporter
def backfill_window(window, *args, **kwargs):
    params = run_params(kwargs)
    if window.get('entity') != params.entity:
        raise WindowFailed(f'window {window.get("label")} belongs to {window.get("entity")}, '
                           f'not to {params.entity}: re-plan the run')
    with engine_logs(kwargs):
        client, sources, rotation = make_client(kwargs)
        try:
            report = client.backfill(
                params.entity,
                window['start'],
                window['end'],
                chunk_days=params.chunk_days,
                page_size=params.page_size,
                sink=params.sink,
                data_dir=params.data_dir,
                pg_schema=params.pg_schema,
                pg_table_prefix=params.pg_table_prefix,
                windows=[window['label']],
                max_concurrent_windows=1,
                raise_on_failure=False,
            )
        finally:
            rotation.flush(kwargs, sources['qb_refresh_token'])
    if len(report.windows) != 1 or report.windows[0].label != window['label']:
        raise WindowFailed(f'window {window["label"]}: the engine planned '
                           f'{[w.label for w in report.windows]} instead')
    w = report.windows[0]
    summary = dict(
        entity=params.entity,
        label=w.label,
        start=window['start'],
        end=window['end'],
        planned=window.get('planned'),
        status=w.status,
        rows_fetched=w.rows_fetched,
        rows_written=w.rows_written,
        server_count=w.server_count,
        pages=w.pages,
        inserted=w.inserted,
        updated=w.updated,
        unchanged=w.unchanged,
        duration_s=round(w.duration_s, 3),
        requests=report.requests,
        retries=report.retries,
        throttled=report.throttled,
        targets=dict(report.targets),
        sink=params.sink,
        pid=os.getpid(),
    )
    if not w.ok:
        raise WindowFailed(
            f'window {w.label} [{window["start"]}, {window["end"]}) failed: {w.error}. Nothing partial is '
            f'visible; re-run this window alone (runner: --retry-run <pipeline_run_id>, or --window {w.label} '
            f'with the same fecha_inicio/fecha_fin/chunk_days; Mage UI: retry this block run)')
    log(kwargs, f'window {w.label}: {w.rows_fetched} fetched, {w.inserted} inserted, {w.updated} updated, '
                f'{w.unchanged} unchanged, {w.pages} page(s), {report.requests} request(s), '
                f'{report.throttled} throttled, {w.duration_s:.2f} s')
    return summary
