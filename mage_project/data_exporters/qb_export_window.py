"""DYNAMIC CHILD (one block run per share, downstream of qb_fetch_window): writes ONE staged share
with qbo_rs, idempotently, to TXT, PostgreSQL or both (runtime variable ``sink``).

``qbo_rs.export_share`` checks the stage against its manifest, writes it window by window into
the sinks (newest version of an id wins, a re-run writes nothing new, a crash leaves nothing
torn), checks rows staged against rows each sink now holds per window (``Validation: [ALERT]`` on
a mismatch) and, after a successful write, replaces the stage with a small receipt. Mage
executes a block run at least once: a repeated execution finds the receipt and returns the same
summary without writing again. No request goes to QuickBooks here. A failed write raises and
keeps the stage, so only this child fails and a retry of this block run writes the same stage
without fetching again. Returns a small summary, with one short entry per window, for
qb_backfill_summary (``reduce_output: true``: the summary receives every share's summary).
"""

import os

import qbo_rs
from mage_project.utils.qb_mage import child_params, engine_logs, fail, log, log_windows, utc_text

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter


class WindowExportFailed(RuntimeError):
    pass


@data_exporter
def export_staged_window(handle, *args, **kwargs):
    params, label = child_params(kwargs, handle, WindowExportFailed)
    manifest = handle.get("manifest")
    retry_hint = (
        f"The stage {manifest} is kept: fix the cause and retry this block run (runner: --retry-run "
        "<pipeline_run_id>; Mage UI: retry the run); it is written without fetching again."
    )
    with engine_logs(kwargs):
        try:
            report = qbo_rs.export_share(
                manifest,
                sink=params.sink,
                data_dir=params.data_dir,
                pg_schema=params.pg_schema,
                pg_table_prefix=params.pg_table_prefix,
                raise_on_failure=False,
            )
        except qbo_rs.exceptions.ConfigError as err:
            if manifest and os.path.exists(manifest):
                raise fail(
                    kwargs, WindowExportFailed(f"share {label} could not be written: {err}. {retry_hint}")
                ) from err
            raise fail(
                kwargs,
                WindowExportFailed(
                    f"share {label}: no stage at {manifest} and no receipt of its export ({err}): the stage folder "
                    "is not shared with the fetch block (QBO_STAGE_DIR) or was emptied by hand; re-run the run, "
                    "fetch included"
                ),
            ) from err
        except Exception as err:  # PostgreSQL down, disk full, a damaged stage, ...
            raise fail(kwargs, WindowExportFailed(f"share {label} could not be written: {err}. {retry_hint}")) from err
    if len(report.windows) != handle["windows"]:
        raise fail(
            kwargs,
            WindowExportFailed(f"share {label}: {len(report.windows)} window(s) written, {handle['windows']} fetched"),
        )
    # One line per window, every sink in it (the engine's line per window and sink is at DEBUG).
    log_windows(
        kwargs,
        report.windows,
        lambda w: (
            f"{w.rows_written} record(s) written: {w.inserted} inserted, {w.updated} updated, "
            f"{w.rows_written - w.inserted - w.updated} unchanged"
            if w.rows_fetched or w.rows_written
            else None
        ),
    )
    failed = [w for w in report.windows if not w.ok]
    if failed:
        raise fail(
            kwargs,
            WindowExportFailed(
                f"share {label}: {len(failed)} window(s) were not written correctly ("
                f"{failed[0].label}: {failed[0].error}). {retry_hint}"
            ),
        )
    inserted = sum(w.inserted for w in report.windows)
    updated = sum(w.updated for w in report.windows)
    written = sum(w.rows_written for w in report.windows)
    log(
        kwargs,
        f"share {label}: {len(report.windows)} window(s), {written} written, {inserted} inserted, "
        f"{updated} updated, {written - inserted - updated} unchanged, {report.duration_s:.2f} s -> "
        f"{', '.join(sorted(report.targets.values()))}",
    )
    return dict(
        entity=params.entity,
        label=label,
        planned=handle.get("planned"),
        plan_requests=handle.get("plan_requests", 0),
        estimate_requests=handle.get("estimate_requests"),
        # One short entry per window: (label, start, end, status, fetched, written, inserted, updated).
        windows=[
            [
                w.label,
                utc_text(w.start),
                utc_text(w.end),
                w.status,
                w.rows_fetched,
                w.rows_written,
                w.inserted,
                w.updated,
            ]
            for w in report.windows
        ],
        rows_fetched=handle["rows_fetched"],
        requests=handle["requests"],
        retries=handle["retries"],
        throttled=handle["throttled"],
        fetch_s=handle.get("fetch_s"),
        export_s=round(report.duration_s, 3),
        targets=dict(report.targets),
        sink=params.sink,
        pid=handle.get("pid"),
        export_pid=os.getpid(),
    )
