"""A backfill's progress: the ``on_progress=`` option of :meth:`~qbo_rs.QboClient.backfill`.

- Left out: in a Jupyter kernel with ``tqdm`` installed, one bar (``tqdm``'s notebook widget
  when ``ipywidgets`` is installed, else one line redrawn in place) of the records committed
  against the plan's count, with requests and windows as its postfix. Anywhere else (Mage, CI,
  scripts) no bar: the log lines say how the run goes.
- ``True``: that bar wherever the run is (needs ``tqdm``).
- ``False`` or ``None``: no bar.
- A callable: called with each :class:`~qbo_rs.ProgressEvent` (from the engine's threads, one
  call at a time, holding the GIL only for the call). If it raises, it is not called again
  in that run, the run goes on, and the exception is logged once as a warning (with its
  traceback) by the ``qbo_rs`` logger.

Nothing here imports ``tqdm`` or ``IPython`` until a bar is drawn.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

from qbo_rs.exceptions import ConfigError

if TYPE_CHECKING:
    from qbo_rs._qbo_rs import ProgressEvent

OnProgress = Union[Callable[["ProgressEvent"], object], bool, None]


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython already imported, with a kernel),
    other than Mage's (whose block runs log instead) or a CI run."""
    ipython = sys.modules.get("IPython")
    if ipython is None or "mage_ai" in sys.modules or os.environ.get("CI", "").lower() in ("1", "true"):
        return False
    shell = ipython.get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class _AboveTheBar(logging.Handler):
    """Writes log records above the bar (the bar is cleared, the line written, the bar redrawn),
    so a warning never lands in the middle of the bar's line."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._write = write
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:
            self.handleError(record)


class ProgressBar:
    """A tqdm bar of a backfill, fed the engine's events: records committed out of the plan's
    count, requests and windows in the postfix. Opened as a context around the run; while it is
    open, and unless ``logging`` is configured, the engine's warnings are written above it."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._handler: Optional[logging.Handler] = None

    def __enter__(self) -> "ProgressBar":
        if _has("ipywidgets") and in_jupyter_kernel():
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
        # One line, redrawn at most a few times a second, whatever the rate of events.
        self._bar = tqdm(total=None, desc="counting", unit=" records", mininterval=0.5, dynamic_ncols=True)
        logger = logging.getLogger("qbo_rs")
        if not logger.handlers and not logging.getLogger().handlers:
            # Unconfigured logging prints warnings through its last resort, straight into the bar.
            self._handler = _AboveTheBar(lambda line: tqdm.write(line, file=sys.stderr))
            logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logging.getLogger("qbo_rs").removeHandler(self._handler)
        if self._bar is not None:
            self._bar.close()

    def __call__(self, event: "ProgressEvent") -> None:
        bar = self._bar
        if bar is None or event.kind == "rows":
            return
        if event.kind == "estimate":
            bar.reset(total=event.records_estimated)
            bar.set_description("committed", refresh=False)
        requests = f"{event.requests}/~{event.requests_estimated}" if event.requests_estimated else str(event.requests)
        postfix: Dict[str, Any] = {"requests": requests, "windows": f"{event.windows_done}/{event.windows_total}"}
        if event.throttled:
            postfix["throttled"] = f"{event.throttled} ({event.wait_s:.0f} s)"
        bar.set_postfix(postfix, refresh=False)
        # Records edited during the read may be committed twice: never past the plan's count.
        committed = event.records_committed if bar.total is None else min(event.records_committed, bar.total)
        bar.update(committed - bar.n)


def resolve(options: Dict[str, Any]) -> Tuple[Dict[str, Any], AbstractContextManager[object]]:
    """``options`` with ``on_progress`` made what the engine takes (a callable, or left out),
    and the context the run goes in (the default bar, opened and closed around it)."""
    choice = options.pop("on_progress", None if not _wants_default_bar() else True)
    if choice is True:
        if not _has("tqdm"):
            raise ConfigError("on_progress=True draws a tqdm bar: pip install tqdm (or qbo_rs[notebook])")
        bar = ProgressBar()
        return {**options, "on_progress": bar}, bar
    if choice is False or choice is None:
        return options, nullcontext()
    if not callable(choice):
        raise ConfigError(f"on_progress must be a callable, True, False or None, not {type(choice).__name__}")
    return {**options, "on_progress": choice}, nullcontext()


def _wants_default_bar() -> bool:
    return in_jupyter_kernel() and _has("tqdm")


__all__ = ["OnProgress", "ProgressBar", "in_jupyter_kernel", "resolve"]
