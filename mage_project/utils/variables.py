"""The runtime variables of the qb_* pipelines: coerced from what Mage passes (strings from the UI,
numbers from YAML), checked before any request or write, every error naming its variable."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

import qbo_rs
from qbo_rs.exceptions import ConfigError

ENTITY_BY_PIPELINE = {
    "qb_invoice_backfill": "invoice",
    "qb_customer_backfill": "customer",
    "qb_item_backfill": "item",
}
SYNC_ENTITY_BY_PIPELINE = {
    "qb_invoice_sync": "invoice",
    "qb_customer_sync": "customer",
    "qb_item_sync": "item",
}
PLURAL = {"invoice": "invoices", "customer": "customers", "item": "items"}
SINKS = ("txt", "postgres", "both")
# Children (fetch + export block runs) a backfill fans out to, at most. The pipelines run in one
# process (run_pipeline_in_one_process), where children run one after another and the engine
# reads a child's streams concurrently: one child is the fastest and smallest there.
DEFAULT_MAX_CHILDREN = 1
MAX_CHILDREN = 10000

# The runtime variables that are engine options, by the engine's names.
BACKFILL_ENGINE_OPTIONS = ("page_size", "chunk_days", "max_requests")
SYNC_ENGINE_OPTIONS = ("page_size", "overlap_minutes", "max_requests")

POSTGRES_REQUIRED = ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")


class RunVariableError(ConfigError):
    """A runtime variable is missing or invalid (raised before any request or write)."""


# --------------------------------------------------------------------------------------------
# Runtime variables: Mage passes strings or numbers as given (UI, API, triggers.yaml, CLI JSON).
# --------------------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_instant(name: str, value: Any) -> datetime:
    """An ISO date (midnight UTC) or datetime (naive means UTC, an offset is converted), read by
    the engine's own grammar (:func:`qbo_rs.parse_instant`), the one every backfill uses."""
    if _blank(value):
        raise RunVariableError(f"{name} is required: an ISO date or datetime in UTC, e.g. 2025-01-01")
    try:
        return qbo_rs.parse_instant(value.strip() if isinstance(value, str) else value, name)
    except ConfigError as err:
        raise RunVariableError(str(err)) from None


def whole_number(value: Any) -> Any:
    """A whole number given as text (``"50"``, ``"7.0"``) or as a float (``7.0``) as an ``int``;
    anything else as given, for the engine to accept or refuse, naming the option."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.0*)?", value.strip()):
        return int(float(value.strip())) if "." in value else int(value.strip())
    return value


def parse_int(name: str, value: Any, default: int, low: int, high: int) -> int:
    """A whole number in [low, high] for a variable of the Mage project's own (not an engine
    option); blank means ``default``. Errors name the variable, its range and the default."""
    if _blank(value):
        return default
    number = whole_number(value)
    if not isinstance(number, int) or isinstance(number, bool):
        raise RunVariableError(
            f"{name} must be a whole number between {low} and {high}, e.g. {default} (got {value!r})"
        )
    if not low <= number <= high:
        raise RunVariableError(f"{name} must be between {low} and {high}, e.g. {default} (got {number})")
    return number


def engine_options(kwargs: Dict[str, Any], names: Tuple[str, ...]) -> Dict[str, Any]:
    """The engine options among ``names`` that the run sets, numbers coerced from Mage's text; a
    blank one is left out, so the engine's default applies."""
    return {name: whole_number(kwargs[name]) for name in names if not _blank(kwargs.get(name))}


def checked(call: Any, *args: Any, **options: Any) -> Any:
    """``call(*args, **options)``, an engine call that checks options without a request, its
    ``ConfigError`` (naming the option, which is the variable's name) as a ``RunVariableError``."""
    try:
        return call(*args, **options)
    except ConfigError as err:
        raise RunVariableError(str(err)) from None


def parse_choice(name: str, value: Any, choices: Tuple[str, ...], default: str) -> str:
    if _blank(value):
        return default
    text = str(value).strip().lower()
    if text not in choices:
        raise RunVariableError(
            f"{name} must be one of {', '.join(choices)}, e.g. {default or choices[0]} (got {value!r})"
        )
    return text


def parse_labels(value: Any) -> Optional[List[str]]:
    """``windows``: labels to (re-)run, as a list or a comma/space separated string."""
    if _blank(value) or value == []:
        return None
    if isinstance(value, str):
        items = [v for v in re.split(r"[\s,]+", value.strip()) if v]
    elif isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if str(v).strip()]
    else:
        raise RunVariableError(f"windows must be a label or a list of labels (got {value!r})")
    return items or None


def utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC that reads back exactly: four-digit years (``0001``, which ``strftime``
    writes ``1``) and sub-second instants kept (``2025-01-01T00:00:00.5Z``)."""
    text = moment.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


def targets_text(params: Any) -> str:
    """Where a run writes, for its first log line: the TXT file and/or the PostgreSQL table."""
    target = []
    if params.sink in ("txt", "both"):
        target.append(os.path.join(params.data_dir, f"{params.plural}.txt"))
    if params.sink in ("postgres", "both"):
        target.append(f"PostgreSQL {params.pg_schema}.{params.pg_table_prefix}{params.plural}")
    return " + ".join(target)


@dataclass(frozen=True)
class RunParams:
    pipeline_uuid: str
    entity: str
    start: datetime
    end: datetime
    page_size: int
    chunk_days: int
    sink: str
    data_dir: str
    pg_schema: str
    pg_table_prefix: str
    stage_dir: str
    max_children: int = DEFAULT_MAX_CHILDREN
    max_requests: Optional[int] = None
    windows: Optional[List[str]] = field(default=None)

    @property
    def plural(self) -> str:
        return PLURAL[self.entity]

    def describe(self) -> str:
        budget = f" max_requests={self.max_requests}" if self.max_requests is not None else ""
        return (
            f"{self.entity} [{utc_text(self.start)}, {utc_text(self.end)}) chunk_days={self.chunk_days} "
            f"page_size={self.page_size} max_children={self.max_children}{budget} sink={self.sink} "
            f"-> {targets_text(self)}"
        )


def repo_path(kwargs: Dict[str, Any]) -> str:
    path = kwargs.get("repo_path")
    if not path:
        from mage_ai.settings.repo import get_repo_path

        path = get_repo_path()
    return os.path.abspath(path)


def default_data_dir(kwargs: Dict[str, Any]) -> str:
    """$QBO_DATA_DIR, else ``data/`` beside the project folder (the repository's data/)."""
    env = os.environ.get("QBO_DATA_DIR", "").strip()
    return env or os.path.join(os.path.dirname(repo_path(kwargs)), "data")


def default_stage_dir(data_dir: str) -> str:
    """$QBO_STAGE_DIR, else ``<data_dir>/.qbo_rs/stage``.

    The fetch block stages each window there and the export block (another Mage block run,
    often another process) reads it back, so every block-run process must see the same folder:
    any local folder works for the headless runner and for Mage's local process executor (all
    on one machine); with the Kubernetes (or any multi-machine) executor it must be a volume
    shared by all of them."""
    env = os.environ.get("QBO_STAGE_DIR", "").strip()
    return env or os.path.join(data_dir, ".qbo_rs", "stage")


def sink_targets(kwargs: Dict[str, Any]) -> Tuple[str, str, str]:
    """``data_dir`` (absolute; default $QBO_DATA_DIR or data/ beside the project), ``pg_schema``
    (default $POSTGRES_SCHEMA or raw) and ``pg_table_prefix`` (default qb_)."""
    data_dir = kwargs.get("data_dir")
    data_dir = default_data_dir(kwargs) if _blank(data_dir) else str(data_dir).strip()
    if not os.path.isabs(data_dir):
        data_dir = os.path.join(os.path.dirname(repo_path(kwargs)), data_dir)
    schema = kwargs.get("pg_schema")
    if _blank(schema):
        schema = os.environ.get("POSTGRES_SCHEMA", "").strip() or "raw"
    prefix = kwargs.get("pg_table_prefix")
    prefix = "qb_" if _blank(prefix) else str(prefix).strip()
    return os.path.abspath(data_dir), str(schema).strip(), prefix


def run_params(kwargs: Dict[str, Any]) -> RunParams:
    """Coerces and validates the runtime variables; every error names the variable."""
    pipeline_uuid = kwargs.get("pipeline_uuid") or ""
    entity = ENTITY_BY_PIPELINE.get(pipeline_uuid)
    if entity is None:
        entity = parse_choice("entity", kwargs.get("entity"), tuple(PLURAL), "")
        if not entity:
            raise RunVariableError(
                f"pipeline {pipeline_uuid!r} is not one of {', '.join(ENTITY_BY_PIPELINE)}: set the variable entity"
            )
    start = parse_instant("fecha_inicio", kwargs.get("fecha_inicio"))
    end = parse_instant("fecha_fin", kwargs.get("fecha_fin"))
    if end <= start:
        raise RunVariableError(
            f"fecha_fin ({utc_text(end)}) must be after fecha_inicio ({utc_text(start)}): "
            "windows are half-open [fecha_inicio, fecha_fin) in UTC"
        )
    # The engine resolves and checks its own options (defaults, bounds) with no request.
    plan = checked(qbo_rs.plan, entity, start, end, **engine_options(kwargs, BACKFILL_ENGINE_OPTIONS))
    data_dir, schema, prefix = sink_targets(kwargs)
    stage_dir = kwargs.get("stage_dir")
    stage_dir = default_stage_dir(data_dir) if _blank(stage_dir) else str(stage_dir).strip()
    if not os.path.isabs(stage_dir):
        stage_dir = os.path.join(os.path.dirname(repo_path(kwargs)), stage_dir)
    return RunParams(
        pipeline_uuid=pipeline_uuid,
        entity=entity,
        start=start,
        end=end,
        page_size=plan.page_size,
        chunk_days=plan.chunk_days,
        sink=parse_choice("sink", kwargs.get("sink"), SINKS, "txt"),
        data_dir=data_dir,
        pg_schema=schema,
        pg_table_prefix=prefix,
        stage_dir=os.path.abspath(stage_dir),
        max_children=parse_int("max_children", kwargs.get("max_children"), DEFAULT_MAX_CHILDREN, 1, MAX_CHILDREN),
        max_requests=plan.max_requests,
        windows=parse_labels(kwargs.get("windows")),
    )


def check_sink_config(params: RunParams) -> None:
    """Fail at planning time, naming what is missing, rather than once per window."""
    check_sinks(params.sink, params.data_dir, params.pg_schema, params.pg_table_prefix)
    try:
        os.makedirs(params.stage_dir, exist_ok=True)
    except OSError as err:
        raise RunVariableError(
            f"stage_dir {params.stage_dir} cannot be created ({err.strerror}): set the "
            "variable stage_dir or QBO_STAGE_DIR to a writable folder"
        ) from None
    if not os.access(params.stage_dir, os.W_OK):
        raise RunVariableError(
            f"stage_dir {params.stage_dir} is not writable: set the variable stage_dir or "
            "QBO_STAGE_DIR to a writable folder"
        )


def check_sinks(sink: str, data_dir: str, pg_schema: str, pg_table_prefix: str) -> None:
    """The sinks' configuration, checked before any request: PostgreSQL's variables and table
    names, the TXT folder writable."""
    if sink in ("postgres", "both"):
        missing = [k for k in POSTGRES_REQUIRED if not os.environ.get(k, "").strip()]
        if missing:
            raise RunVariableError(
                f"sink={sink} needs PostgreSQL: set {', '.join(missing)} in the environment "
                "(POSTGRES_PORT defaults to 5432, POSTGRES_SSLMODE to prefer)"
            )
        try:  # the table names, checked now (no connection) rather than after every window is fetched
            qbo_rs.PostgresWriter(schema=pg_schema, table_prefix=pg_table_prefix)
        except ConfigError as err:
            raise RunVariableError(f"pg_schema={pg_schema!r}, pg_table_prefix={pg_table_prefix!r}: {err}") from None
    if sink in ("txt", "both"):
        if os.path.exists(data_dir) and not os.path.isdir(data_dir):
            raise RunVariableError(
                f"data_dir {data_dir} is a file, not a folder: set the variable data_dir or QBO_DATA_DIR to a folder"
            )
        os.makedirs(data_dir, exist_ok=True)
        if not os.access(data_dir, os.W_OK):
            raise RunVariableError(f"data_dir {data_dir} is not writable")


@dataclass(frozen=True)
class SyncParams:
    pipeline_uuid: str
    entity: str
    sink: str
    data_dir: str
    pg_schema: str
    pg_table_prefix: str
    # The engine options the run sets (``SYNC_ENGINE_OPTIONS``); the engine checks them and
    # gives the others their defaults when the sync is built, before any request.
    engine: Dict[str, Any] = field(default_factory=dict)

    @property
    def plural(self) -> str:
        return PLURAL[self.entity]

    def options(self) -> Dict[str, Any]:
        """The keyword options of :meth:`qbo_rs.QboClient.sync`."""
        return dict(
            sink=self.sink,
            data_dir=self.data_dir,
            pg_schema=self.pg_schema,
            pg_table_prefix=self.pg_table_prefix,
            **self.engine,
        )

    def describe(self) -> str:
        engine = "".join(f" {name}={value}" for name, value in self.engine.items())
        return f"sync {self.entity}{engine} sink={self.sink} -> {targets_text(self)}"


def sync_params(kwargs: Dict[str, Any]) -> SyncParams:
    """The runtime variables of the qb_*_sync pipelines, coerced; the Mage project's own are
    checked here, the engine's when the sync is built. Every error names its variable."""
    pipeline_uuid = kwargs.get("pipeline_uuid") or ""
    entity = SYNC_ENTITY_BY_PIPELINE.get(pipeline_uuid) or parse_choice(
        "entity", kwargs.get("entity"), tuple(PLURAL), ""
    )
    if not entity:
        raise RunVariableError(
            f"pipeline {pipeline_uuid!r} is not one of {', '.join(SYNC_ENTITY_BY_PIPELINE)}: set the variable entity"
        )
    data_dir, schema, prefix = sink_targets(kwargs)
    params = SyncParams(
        pipeline_uuid=pipeline_uuid,
        entity=entity,
        sink=parse_choice("sink", kwargs.get("sink"), SINKS, "txt"),
        data_dir=data_dir,
        pg_schema=schema,
        pg_table_prefix=prefix,
        engine=engine_options(kwargs, SYNC_ENGINE_OPTIONS),
    )
    check_sinks(params.sink, params.data_dir, params.pg_schema, params.pg_table_prefix)
    return params
