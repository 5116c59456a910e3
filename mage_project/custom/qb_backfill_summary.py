"""FINAL STEP: totals and validation over every share's export summary (qb_export_window has
``reduce_output: true``, so this block receives the list of one summary per share, each with a
short entry per window: every window's rows are counted once, from its export).

Logs each window's ``Rango <start> a <end> -> N filas`` line in time order, ``Total <entidad>
descargadas: N`` and ``Validation: Integrity Check Passed`` or ``Validation: [ALERT] ...`` (the
runbook greps these), fails the run on an alert, and applies the post-run policy: a one-time
(@once) trigger that just succeeded is set ``status: inactive`` in its triggers.yaml, so a fresh
Mage database never fires it again.
"""

from datetime import datetime

from mage_project.utils.qb_mage import (
    day_ranges,
    disable_once_trigger,
    log,
    run_params,
    triggers_file,
    utc_text,
)

if "custom" not in globals():
    from mage_ai.data_preparation.decorators import custom


def _ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _bound(text):
    """A window bound as the engine's ``Rango`` line writes it: the date alone at midnight."""
    return text[:-10] if text.endswith("T00:00:00Z") else text


@custom
def backfill_summary(reports, *args, **kwargs):
    params = run_params(kwargs)
    shares = reports if isinstance(reports, list) else [reports]
    if not all(isinstance(s, dict) and isinstance(s.get("windows"), list) for s in shares):
        raise RuntimeError(
            f"qb_backfill_summary expects one dict per share from qb_export_window, got {reports!r:.300}"
        )
    keys = ("label", "start", "end", "status", "rows_fetched", "rows_written", "inserted", "updated")
    windows = sorted((dict(zip(keys, w)) for s in shares for w in s["windows"]), key=lambda w: _ts(w["start"]))
    alerts = []
    for w in windows:
        log(kwargs, f"Rango {_bound(w['start'])} a {_bound(w['end'])} -> {w['rows_fetched']} filas")
        if w["status"] != "ok":
            alerts.append(f"window {w['label']} status {w['status']}")
        if w["rows_fetched"] > 0 and w["rows_written"] == 0:
            alerts.append(f"window {w['label']}: {w['rows_fetched']} fetched but 0 written")
        elif w["rows_written"] != w["rows_fetched"]:
            alerts.append(f"window {w['label']}: {w['rows_fetched']} fetched but {w['rows_written']} written")
    empty = [w for w in windows if w["rows_fetched"] == 0]
    if empty:
        log(
            kwargs,
            f"{len(empty)} window(s) returned 0 rows: {day_ranges(empty)}; confirm they are periods without activity",
            "warning",
        )
    labels = [w["label"] for w in windows]
    if len(set(labels)) != len(labels):
        alerts.append("a window was reported twice")
    planned = shares[0].get("planned") if shares else 0
    if len(windows) != planned:
        alerts.append(f"{len(windows)} window report(s) for {planned} planned window(s)")
    for a, b in zip(windows, windows[1:]):
        if params.windows is None and a["end"] != b["start"]:
            alerts.append(f"gap or overlap between {a['label']} and {b['label']}")
    if (
        params.windows is None
        and windows
        and (_ts(windows[0]["start"]) != params.start or _ts(windows[-1]["end"]) != params.end)
    ):
        alerts.append(
            f"windows cover [{windows[0]['start']}, {windows[-1]['end']}) instead of "
            f"[{utc_text(params.start)}, {utc_text(params.end)})"
        )
    fetched = sum(s["rows_fetched"] for s in shares)
    total = sum(w["rows_fetched"] for w in windows)
    if fetched != total:
        alerts.append(f"the fetches counted {fetched} record(s), their windows {total}")

    inserted = sum(w["inserted"] for w in windows)
    updated = sum(w["updated"] for w in windows)
    plan_requests = max((s.get("plan_requests") or 0 for s in shares), default=0)
    requests = plan_requests + sum(s["requests"] for s in shares)
    estimate = max((s.get("estimate_requests") or 0 for s in shares), default=0)
    throttled = sum(s["throttled"] for s in shares)
    log(kwargs, f"Total {params.plural} descargadas: {total}")
    workers = len({s.get("pid") for s in shares})  # the fetch blocks' processes
    log(
        kwargs,
        f"Summary: {len(windows)} window(s) in {len(shares)} share(s), {workers} worker process(es), "
        f"{inserted} inserted, {updated} updated, {total - inserted - updated} unchanged; {requests} "
        f"request(s) of about {estimate} estimated ({plan_requests} planning), {throttled} throttled (429); "
        f"targets: {', '.join(sorted({t for s in shares for t in s['targets'].values()}))}",
    )
    if alerts:
        for alert in alerts:
            log(kwargs, f"Validation: [ALERT] {alert}", "error")
        raise RuntimeError(f"Validation: [ALERT] {len(alerts)} problem(s): " + "; ".join(alerts))
    log(kwargs, "Validation: Integrity Check Passed")

    trigger = kwargs.get("trigger_name")
    if trigger and disable_once_trigger(triggers_file(kwargs, params.pipeline_uuid), trigger):
        log(
            kwargs,
            f"post-run policy: one-time trigger {trigger} succeeded; set status: inactive in "
            f"pipelines/{params.pipeline_uuid}/triggers.yaml (commit it) so a fresh Mage database "
            "does not fire it again",
        )
    return dict(
        entity=params.entity,
        windows=len(windows),
        shares=len(shares),
        total=total,
        inserted=inserted,
        updated=updated,
        requests=requests,
        throttled=throttled,
        workers=workers,
    )
