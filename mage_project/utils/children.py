"""What both dynamic child blocks (qb_fetch_window, qb_export_window) check first: the run's
variables, and that the share they were handed belongs to this pipeline's entity."""

from __future__ import annotations

from typing import Any, Dict, Tuple, Type

from mage_project.utils.logs import fail
from mage_project.utils.variables import RunParams, run_params


def child_params(
    kwargs: Dict[str, Any], share: Dict[str, Any], error: Type[Exception], remedy: str = ""
) -> Tuple[RunParams, Any]:
    """The run's variables and the share's label; a share (or a fetched share's handle) of
    another entity fails the block with ``error``, ``remedy`` appended to its message."""
    params = run_params(kwargs)
    label = share.get("label")
    if share.get("entity") != params.entity:
        raise fail(kwargs, error(f"share {label} belongs to {share.get('entity')}, not to {params.entity}{remedy}"))
    return params, label
