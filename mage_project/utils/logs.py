"""Logs: one function for the block-run path (Mage's logger) and notebook mode (print), and the
engine's log events forwarded into the running block's Mage log."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

# --------------------------------------------------------------------------------------------
# Logging: one function for the block-run path (kwargs['logger']) and notebook mode (print).
# --------------------------------------------------------------------------------------------


def log(kwargs: Dict[str, Any], message: str, level: str = "info") -> None:
    logger = kwargs.get("logger")
    if logger is not None:
        getattr(logger, level)(message)
    elif level != "debug":
        print(message, flush=True)


def fail(kwargs: Dict[str, Any], error: BaseException) -> BaseException:
    """Logs ``error`` as one ERROR line, ``Type: message``, and returns it for the block to raise.

    Mage's UI shows a failed block's exception at the bottom of a long traceback, and the run's
    log list says only ``Failed to execute block …``; this line, logged before both, is the one
    to read."""
    log(kwargs, f"{type(error).__name__}: {error}", "error")
    return error


def day_ranges(windows: Iterable[Dict[str, str]]) -> str:
    """Consecutive windows (dicts with ISO ``start``/``end``) as one range:
    ``2025-01-01..2025-01-05 (5 windows), 2025-03-02``."""
    parts: List[List[Dict[str, str]]] = []
    run: List[Dict[str, str]] = []
    for w in windows:
        if run and run[-1]["end"] != w["start"]:
            parts.append(run)
            run = []
        run.append(w)
    if run:
        parts.append(run)

    def day(text: str) -> str:
        return text[:10] if text.endswith("T00:00:00Z") else text

    return ", ".join(
        day(r[0]["start"]) if len(r) == 1 else f"{day(r[0]['start'])}..{day(r[-1]['start'])} ({len(r)} windows)"
        for r in parts
    )


def log_windows(
    kwargs: Dict[str, Any],
    windows: Iterable[Any],
    describe: Callable[[Any], Optional[str]],
    list_quiet: bool = True,
) -> None:
    """One line per window in time order (engine window reports: ``label``, ``start``, ``end``,
    ``ok``, ``error``): ``window <label>: <describe(w)>``, or its error at ERROR level; the
    windows ``describe`` has nothing to say about (None: no record) share one line of ranges
    (unless ``list_quiet`` is False: a WARNING of the engine lists them already), so eleven years
    of daily windows do not bury the few that hold data."""
    quiet = []
    for w in sorted(windows, key=lambda w: w.start):
        if not w.ok:
            log(kwargs, f"window {w.label}: FAILED: {w.error}", "error")
            continue
        text = describe(w)
        if text is None:
            quiet.append(dict(start=_utc(w.start), end=_utc(w.end)))
        else:
            log(kwargs, f"window {w.label}: {text}")
    if quiet and list_quiet:
        log(kwargs, f"{len(quiet)} window(s) with no record: {day_ranges(quiet)}")


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _ToMage(logging.Handler):
    def __init__(self, kwargs: Dict[str, Any]) -> None:
        super().__init__(logging.DEBUG)
        self.kwargs = kwargs

    # The engine's run-level lines describe this one share here; the final step logs the run's
    # own ``Rango ... -> N filas`` line per window, in time order, and its ``Total ...
    # descargadas`` and ``Validation`` lines, so those are dropped here (every WARNING and
    # [ALERT] is kept).
    DROPPED = ("Total ", "Validation: Integrity Check Passed", "backfill ", "Rango ")
    # The engine's own lines about one window (staged here, written to that sink, ...) are its
    # detail: DEBUG in Mage's log. The blocks log one line per window themselves, so a block's
    # log reads as one line per window; share-level lines (a rotated token, a kept receipt) stay.
    DETAIL = ("window ",)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno < logging.WARNING and message.startswith(self.DROPPED):
                return
            if record.levelno >= logging.ERROR:
                level = "error"
            elif record.levelno >= logging.WARNING:
                level = "warning"
            elif record.levelno >= logging.INFO and not message.startswith(self.DETAIL):
                level = "info"
            else:
                level = "debug"
            log(self.kwargs, message, level)
        except Exception:  # a log line must never fail a window
            self.handleError(record)


@contextlib.contextmanager
def engine_logs(kwargs: Dict[str, Any]) -> Iterator[None]:
    """Forwards the engine's log events (Python logger ``qbo_rs``: the runbook's ``Rango … ->
    N filas``, retries, 429s, rotations) into this block's Mage log while the block runs."""
    engine = logging.getLogger("qbo_rs")
    handler = _ToMage(kwargs)
    old_level, old_propagate = engine.level, engine.propagate
    engine.addHandler(handler)
    engine.setLevel(logging.INFO)
    engine.propagate = False
    try:
        yield
    finally:
        engine.removeHandler(handler)
        engine.setLevel(old_level)
        engine.propagate = old_propagate
