"""Logs: one function for the block-run path (Mage's logger) and notebook mode (print), and the
engine's log events forwarded into the running block's Mage log."""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Iterator

# --------------------------------------------------------------------------------------------
# Logging: one function for the block-run path (kwargs['logger']) and notebook mode (print).
# --------------------------------------------------------------------------------------------


def log(kwargs: Dict[str, Any], message: str, level: str = "info") -> None:
    logger = kwargs.get("logger")
    if logger is not None:
        getattr(logger, level)(message)
    else:
        print(message, flush=True)


class _ToMage(logging.Handler):
    def __init__(self, kwargs: Dict[str, Any]) -> None:
        super().__init__(logging.INFO)
        self.kwargs = kwargs

    # The engine's run-level lines describe this one share here; the final step logs the run's
    # own ``Rango ... -> N filas`` line per window, in time order, and its ``Total ...
    # descargadas`` and ``Validation`` lines, so those are dropped here (every WARNING and
    # [ALERT] is kept).
    DROPPED = ("Total ", "Validation: Integrity Check Passed", "backfill ", "Rango ")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno < logging.WARNING and record.getMessage().startswith(self.DROPPED):
                return
            level = (
                "error"
                if record.levelno >= logging.ERROR
                else ("warning" if record.levelno >= logging.WARNING else "info")
            )
            log(self.kwargs, record.getMessage(), level)
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
