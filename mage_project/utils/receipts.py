"""What makes a block run safe to execute again (Mage executes block runs at least once): the
pipeline run's stage id, and the small receipts a block keeps of what it returned."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from typing import Any, Dict, Optional

from mage_project.utils.variables import RunParams


def stage_run_id(kwargs: Dict[str, Any]) -> Optional[str]:
    """The run id of this pipeline run's stages: the same in every execution of its blocks
    (Mage executes a block run at least once), different in every other run, even of another
    Mage database sharing the stage folder. None outside a pipeline run (a fresh fetch)."""
    run = kwargs.get("pipeline_run_id")
    if run is None:
        return None
    stamp = str(kwargs.get("execution_partition") or "").rsplit("/", 1)[-1]
    text = f"{kwargs.get('pipeline_uuid') or 'run'}-{run}-{stamp}".strip("-")
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", text)[:120]


def run_receipt(params: RunParams, kwargs: Dict[str, Any], name: str) -> Optional[str]:
    """Where a block keeps what it returned for this pipeline run (beside the run's stages, as
    ``<name>.receipt``, which the engine's clean-up of old runs removes with them); None outside
    a pipeline run. Mage executes a block run at least once: a repeated execution returns it."""
    run_id = stage_run_id(kwargs)
    return None if run_id is None else os.path.join(params.stage_dir, params.plural, run_id, f"{name}.receipt")


def kept(path: Optional[str]) -> Any:
    """What :func:`keep` wrote at ``path``, or None."""
    if path is None or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def keep(path: Optional[str], value: Any) -> None:
    """Writes ``value`` as JSON at ``path`` atomically and durably."""
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".receipt.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
