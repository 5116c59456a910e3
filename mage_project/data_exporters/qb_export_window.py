"""DYNAMIC CHILD (one block run per window, downstream of qb_fetch_window): writes ONE staged
window with qbo_rs, idempotently, to TXT, PostgreSQL or both (runtime variable ``sink``).

``qbo_rs.export_window`` checks the stage against its manifest, streams it into the sinks
(newest version of an id wins, a re-run writes nothing new, a crash leaves nothing torn), checks
rows staged against rows each sink now holds (``Validation: [ALERT]`` on a mismatch) and, after a
successful write, replaces the stage with a small receipt. Mage executes a block run at least
once: a repeated execution finds the receipt and returns the same summary without writing again.
No request goes to QuickBooks here. A failed write raises and keeps the stage, so only this child
fails and a retry of this block run re-exports the same stage without fetching again. Returns a
small summary for qb_backfill_summary (``reduce_output: true``: the summary receives the list of
every window's summary).
"""
import os

import qbo_rs

from mage_project.utils.qb_mage import engine_logs, log, run_params

if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


class WindowExportFailed(RuntimeError):
    pass


@data_exporter
def export_staged_window(handle, *args, **kwargs):
    params = run_params(kwargs)
    label = handle.get('label')
    if handle.get('entity') != params.entity:
        raise WindowExportFailed(f'window {label} belongs to {handle.get("entity")}, not to {params.entity}')
    retry_hint = (f'The stage {handle["manifest"]} is kept: fix the cause and retry this block run (runner: '
                  '--retry-run <pipeline_run_id>; Mage UI: retry this block run); it is written without '
                  'fetching again.')
    with engine_logs(kwargs):
        try:
            report = qbo_rs.export_window(
                handle['manifest'],
                sink=params.sink,
                data_dir=params.data_dir,
                pg_schema=params.pg_schema,
                pg_table_prefix=params.pg_table_prefix,
                raise_on_failure=False,
            )
        except qbo_rs.exceptions.ConfigError as err:
            if os.path.exists(handle['manifest']):
                raise WindowExportFailed(f'window {label} could not be written: {err}. {retry_hint}') from err
            raise WindowExportFailed(
                f'window {label}: no stage at {handle["manifest"]} and no receipt of its export ({err}): the '
                'stage folder is not shared with the fetch block (QBO_STAGE_DIR) or was emptied by hand; re-run '
                f'the window, fetch included (--window {label})') from err
        except Exception as err:  # PostgreSQL down, disk full, a damaged stage, ...
            raise WindowExportFailed(f'window {label} could not be written: {err}. {retry_hint}') from err
    if len(report.windows) != 1 or report.windows[0].label != label:
        raise WindowExportFailed(f'window {label}: the engine exported {[w.label for w in report.windows]} instead')
    w = report.windows[0]
    if not w.ok:
        raise WindowExportFailed(f'window {label} [{handle["start"]}, {handle["end"]}) was not written correctly: '
                                 f'{w.error}. {retry_hint}')
    log(kwargs, f'window {label}: {w.rows_written} written, {w.inserted} inserted, {w.updated} updated, '
                f'{w.unchanged} unchanged, {w.duration_s:.2f} s -> {", ".join(sorted(report.targets.values()))}')
    return dict(
        entity=params.entity,
        label=label,
        start=handle['start'],
        end=handle['end'],
        planned=handle.get('planned'),
        status=w.status,
        rows_fetched=handle['rows_fetched'],
        rows_staged=handle['lines'],
        rows_written=w.rows_written,
        server_count=handle.get('server_count'),
        pages=handle['pages'],
        inserted=w.inserted,
        updated=w.updated,
        unchanged=w.unchanged,
        fetch_s=handle.get('fetch_s'),
        export_s=round(w.duration_s, 3),
        requests=handle['requests'],
        retries=handle['retries'],
        throttled=handle['throttled'],
        targets=dict(report.targets),
        sink=params.sink,
        pid=handle.get('pid'),
        export_pid=os.getpid(),
    )
