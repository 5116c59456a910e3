"""The qb_<entity>_sync pipelines' one block: brings the entity's RAW layer up to date with
``QboClient.sync``, in this one block run.

It reads what changed since the sinks' high-water mark (where the last sync ended, or the newest
record a backfill wrote), then marks deleted what QuickBooks deleted since the last sweep (Change
Data Capture, each deletion confirmed by a query); when the last sweep is older than the 30 days
CDC looks back, or CDC answers its cap of 1,000 objects, it reconciles instead (reads every
record; the log says why). The state is saved beside the data only once everything is
committed, so a failed or killed run, or Mage executing this block run again, just syncs again
from the same place: idempotent.

Logs ``Total <entidad> descargadas: N``, the rows inserted/updated/unchanged, the deletions,
the requests by kind, and ``Validation: Integrity Check Passed`` or ``Validation: [ALERT] ...``
(the run then fails).
"""

from mage_project.utils.qb_mage import RunVariableError, engine_client, fail, log, sync_params
from qbo_rs.exceptions import BackfillError, ConfigError, RequestBudgetError

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader


@data_loader
def sync(*args, **kwargs):
    try:
        params = sync_params(kwargs)
    except RunVariableError as err:
        raise fail(kwargs, RunVariableError(str(err))) from None
    log(kwargs, f"{params.pipeline_uuid}: {params.describe()}")
    with engine_client(kwargs) as client:  # a missing secret is named here
        try:
            report = client.sync(params.entity, raise_on_failure=False, **params.options())
        except RequestBudgetError as err:  # over max_requests: the estimate says by how much
            fail(kwargs, err)
            raise
        except ConfigError as err:  # an option the engine refuses, by its name (the variable's)
            raise fail(kwargs, RunVariableError(str(err))) from None
    kinds = report.requests_by_kind
    log(
        kwargs,
        f"Sync {report.mode}" + (f" ({report.reason})" if report.reason else "") + f": changes from "
        f"{report.read_from.isoformat()} to {report.read_through.isoformat()}; {report.requests} request(s) "
        f"({kinds['page']} page, {kinds['count']} count, {kinds['cdc']} cdc, {kinds['retry']} retry)",
    )
    log(kwargs, f"Total {params.plural} descargadas: {report.read.total_rows}")
    log(
        kwargs,
        f"Sync rows: {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged; "
        f"{report.deleted} {params.plural} marked deleted ({report.deletions_found} deletion(s) found"
        + (f", {report.deletions_refuted} reported but still alive" if report.deletions_refuted else "")
        + ")",
    )
    if not report.ok:
        failed = ", ".join(report.read.failed_windows) or "the state was not saved"
        raise fail(
            kwargs,
            BackfillError(
                f"Validation: [ALERT] sync of {params.plural} incomplete: {failed}. Run it again", report.read
            ),
        )
    log(kwargs, "Validation: Integrity Check Passed")
    return dict(
        entity=params.entity,
        mode=report.mode,
        reason=report.reason,
        read_through=report.read_through.isoformat(),
        rows=report.read.total_rows,
        inserted=report.inserted,
        updated=report.updated,
        deleted=report.deleted,
        requests=report.requests,
    )
