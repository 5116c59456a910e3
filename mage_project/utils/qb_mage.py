"""What the qb_* blocks share: run variables, credentials, the realm budget, logs, the trigger policy.

Blocks import it as ``from mage_project.utils.qb_mage import ...`` (Mage puts the project's
parent folder on ``sys.path``). Only qbo_rs's public API is used; records never pass through
Python or Mage's block outputs: the plan block has the engine count and share out the backfill
(``QboClient.plan_shares``), each fetch child has it stage its share on disk
(``QboClient.stage_share``) and passes on a small handle, each export child has it write that
stage (``qbo_rs.export_share``) and passes on a small summary.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

import qbo_rs
from qbo_rs.exceptions import ConfigError

ENTITY_BY_PIPELINE = {
    "qb_invoice_backfill": "invoice",
    "qb_customer_backfill": "customer",
    "qb_item_backfill": "item",
}
PLURAL = {"invoice": "invoices", "customer": "customers", "item": "items"}
SINKS = ("txt", "postgres", "both")
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
DEFAULT_CHUNK_DAYS = 50
MAX_CHUNK_DAYS = 36600
# Children (fetch + export block runs) a backfill fans out to, at most: each Mage block-run
# process costs 200-300 MB, and the engine reads every child's streams concurrently anyway.
DEFAULT_MAX_CHILDREN = 4
MAX_CHILDREN = 10000

# (Mage secret, environment fallback).
QB_SECRETS = (
    ("qb_client_id", "QBO_CLIENT_ID"),
    ("qb_client_secret", "QBO_CLIENT_SECRET"),
    ("qb_refresh_token", "QBO_REFRESH_TOKEN"),
    ("qb_realm_id", "QBO_REALM_ID"),
)
POSTGRES_REQUIRED = ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")

# QuickBooks' limit per realm (Intuit: ~500 requests/min, 10 in flight); 490 leaves a margin.
REALM_REQUESTS_PER_MINUTE = 490
REALM_MAX_IN_FLIGHT = 10


class RunVariableError(ConfigError):
    """A runtime variable is missing or invalid (raised before any request or write)."""


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


# --------------------------------------------------------------------------------------------
# Runtime variables: Mage passes strings or numbers as given (UI, API, triggers.yaml, CLI JSON).
# --------------------------------------------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_instant(name: str, value: Any) -> datetime:
    """An ISO date (midnight UTC) or datetime; naive means UTC, an explicit offset is converted."""
    if _blank(value):
        raise RunVariableError(f"{name} is required: an ISO date or datetime in UTC, e.g. 2025-01-01")
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
            elif re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?", text):
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                raise ValueError(text)
        except ValueError:
            raise RunVariableError(
                f"{name} must be an ISO date or datetime in UTC, like 2025-01-01 or "
                f"2025-01-01T00:00:00Z (got {value!r})"
            ) from None
    else:
        raise RunVariableError(
            f"{name} must be an ISO date string like 2025-01-01 (got {type(value).__name__} {value!r})"
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_int(name: str, value: Any, default: int, low: int, high: int) -> int:
    if _blank(value):
        return default
    number: Optional[int] = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.0*)?", value.strip()):
        number = int(float(value.strip())) if "." in value else int(value.strip())
    if number is None:
        raise RunVariableError(f"{name} must be a whole number between {low} and {high} (got {value!r})")
    if not low <= number <= high:
        raise RunVariableError(f"{name} must be between {low} and {high} (got {number})")
    return number


def parse_choice(name: str, value: Any, choices: Tuple[str, ...], default: str) -> str:
    if _blank(value):
        return default
    text = str(value).strip().lower()
    if text not in choices:
        raise RunVariableError(f"{name} must be one of {', '.join(choices)} (got {value!r})")
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
        target = []
        if self.sink in ("txt", "both"):
            target.append(os.path.join(self.data_dir, f"{self.plural}.txt"))
        if self.sink in ("postgres", "both"):
            target.append(f"PostgreSQL {self.pg_schema}.{self.pg_table_prefix}{self.plural}")
        budget = f" max_requests={self.max_requests}" if self.max_requests is not None else ""
        return (
            f"{self.entity} [{utc_text(self.start)}, {utc_text(self.end)}) chunk_days={self.chunk_days} "
            f"page_size={self.page_size} max_children={self.max_children}{budget} sink={self.sink} "
            f"-> {' + '.join(target)}"
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
    data_dir = kwargs.get("data_dir")
    data_dir = default_data_dir(kwargs) if _blank(data_dir) else str(data_dir).strip()
    if not os.path.isabs(data_dir):
        data_dir = os.path.join(os.path.dirname(repo_path(kwargs)), data_dir)
    schema = kwargs.get("pg_schema")
    if _blank(schema):
        schema = os.environ.get("POSTGRES_SCHEMA", "").strip() or "raw"
    schema = str(schema).strip()
    prefix = kwargs.get("pg_table_prefix")
    prefix = "qb_" if _blank(prefix) else str(prefix).strip()
    data_dir = os.path.abspath(data_dir)
    stage_dir = kwargs.get("stage_dir")
    stage_dir = default_stage_dir(data_dir) if _blank(stage_dir) else str(stage_dir).strip()
    if not os.path.isabs(stage_dir):
        stage_dir = os.path.join(os.path.dirname(repo_path(kwargs)), stage_dir)
    return RunParams(
        pipeline_uuid=pipeline_uuid,
        entity=entity,
        start=start,
        end=end,
        page_size=parse_int("page_size", kwargs.get("page_size"), DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        chunk_days=parse_int("chunk_days", kwargs.get("chunk_days"), DEFAULT_CHUNK_DAYS, 1, MAX_CHUNK_DAYS),
        sink=parse_choice("sink", kwargs.get("sink"), SINKS, "txt"),
        data_dir=data_dir,
        pg_schema=schema,
        pg_table_prefix=prefix,
        stage_dir=os.path.abspath(stage_dir),
        max_children=parse_int("max_children", kwargs.get("max_children"), DEFAULT_MAX_CHILDREN, 1, MAX_CHILDREN),
        max_requests=(
            None
            if _blank(kwargs.get("max_requests"))
            else parse_int("max_requests", kwargs.get("max_requests"), 0, 1, 10**12)
        ),
        windows=parse_labels(kwargs.get("windows")),
    )


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


def check_sink_config(params: RunParams) -> None:
    """Fail at planning time, naming what is missing, rather than once per window."""
    if params.sink in ("postgres", "both"):
        missing = [k for k in POSTGRES_REQUIRED if not os.environ.get(k, "").strip()]
        if missing:
            raise RunVariableError(
                f"sink={params.sink} needs PostgreSQL: set {', '.join(missing)} in the environment "
                "(POSTGRES_PORT defaults to 5432, POSTGRES_SSLMODE to prefer)"
            )
        try:  # the table names, checked now (no connection) rather than after every window is fetched
            qbo_rs.PostgresWriter(schema=params.pg_schema, table_prefix=params.pg_table_prefix)
        except ConfigError as err:
            raise RunVariableError(
                f"pg_schema={params.pg_schema!r}, pg_table_prefix={params.pg_table_prefix!r}: {err}"
            ) from None
    if params.sink in ("txt", "both"):
        if os.path.exists(params.data_dir) and not os.path.isdir(params.data_dir):
            raise RunVariableError(
                f"data_dir {params.data_dir} is a file, not a folder: set the variable data_dir or "
                "QBO_DATA_DIR to a folder"
            )
        os.makedirs(params.data_dir, exist_ok=True)
        if not os.access(params.data_dir, os.W_OK):
            raise RunVariableError(f"data_dir {params.data_dir} is not writable")
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


# --------------------------------------------------------------------------------------------
# Credentials: Mage Secrets first, then the environment.
# --------------------------------------------------------------------------------------------


def mage_secret(name: str) -> Optional[str]:
    try:
        from mage_ai.data_preparation.shared.secrets import get_secret_value

        value = get_secret_value(name, suppress_warning=True)
    except Exception as err:  # no Mage DB session (plain `python`), unreadable key, ...
        logging.getLogger(__name__).warning(
            "Mage secret %s unavailable (%s); trying the environment", name, type(err).__name__
        )
        return None
    return value.strip() if isinstance(value, str) and value.strip() else None


def read_credentials() -> Tuple[qbo_rs.Credentials, Dict[str, str]]:
    """Returns the credentials and, per secret, where it came from (never the value)."""
    values: Dict[str, str] = {}
    sources: Dict[str, str] = {}
    missing = []
    for secret, env in QB_SECRETS:
        value = mage_secret(secret)
        if value is not None:
            values[secret], sources[secret] = value, "mage_secret"
            continue
        value = os.environ.get(env, "").strip()
        if value:
            values[secret], sources[secret] = value, "env"
            continue
        missing.append(f"{secret} (Mage secret) or {env} (environment)")
    if missing:
        raise ConfigError(
            "missing QuickBooks credential(s): "
            + "; ".join(missing)
            + ". Set them with scripts/mage_secrets.py or in the Mage UI (Secrets)."
        )
    environment = os.environ.get("QBO_ENTORNO", "").strip().lower() or "sandbox"
    if environment not in ("sandbox", "production"):
        raise ConfigError(f"QBO_ENTORNO must be sandbox or production (got {environment!r})")
    creds = qbo_rs.Credentials(
        values["qb_client_id"],
        values["qb_client_secret"],
        values["qb_refresh_token"],
        values["qb_realm_id"],
        environment=environment,
        base_url=os.environ.get("QBO_BASE_URL", "").strip() or None,
        token_url=os.environ.get("QBO_TOKEN_URL", "").strip() or None,
    )
    return creds, sources


def _secrets_lock_path() -> str:
    from mage_ai.data_preparation.shared.secrets import get_secrets_dir
    from mage_ai.orchestration.constants import Entity

    directory = get_secrets_dir(Entity.GLOBAL)
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, ".qbo_rs-upsert.lock")


def upsert_mage_secret(name: str, value: str) -> None:
    """Create or replace a Mage secret (Mage has no update: delete + create, serialised across
    processes by a file lock because parallel workers may rotate at the same moment)."""
    from mage_ai.data_preparation.repo_manager import get_project_uuid
    from mage_ai.data_preparation.shared.secrets import create_secret, delete_secret, get_secret_value

    with open(_secrets_lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # mage 0.9.80: delete_secret crashes on a missing name, create_secret on an existing one.
            if get_secret_value(name, suppress_warning=True) is not None:
                delete_secret(name)
            create_secret(name, value, project_uuid=get_project_uuid())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class TokenRotationRecorder:
    """``on_token_rotated`` hook. The engine calls it from a worker thread; the Mage DB session is
    per thread, so the new token is only kept here and written by :meth:`flush` on the block's
    thread. The engine's token store (0600, locked) holds it meanwhile, so nothing is lost."""

    def __init__(self) -> None:
        self.latest: Optional[str] = None
        self.count = 0

    def __call__(self, realm_id: str, refresh_token: str) -> None:
        self.latest = refresh_token
        self.count += 1

    def flush(self, kwargs: Dict[str, Any], source: str) -> None:
        if self.latest is None:
            return
        if source != "mage_secret":
            log(
                kwargs,
                "Intuit rotated the refresh token; it came from QBO_REFRESH_TOKEN, which cannot be "
                "updated from here: the token store keeps the new one. Move it into the "
                "qb_refresh_token Mage secret (scripts/mage_secrets.py) to keep both in step.",
                "warning",
            )
            return
        try:
            upsert_mage_secret("qb_refresh_token", self.latest)
            log(kwargs, "Intuit rotated the refresh token: Mage secret qb_refresh_token updated")
        except Exception as err:
            log(
                kwargs,
                f"Intuit rotated the refresh token but writing the Mage secret qb_refresh_token "
                f"failed ({type(err).__name__}); the token store still holds it",
                "error",
            )
        finally:
            self.latest = None


def token_store_path(realm_id: str) -> str:
    """$QBO_TOKEN_STORE, else beside Mage's secrets key in $MAGE_DATA_DIR (one file shared by
    every worker process on the machine, so they spend each refresh token once)."""
    explicit = os.environ.get("QBO_TOKEN_STORE", "").strip()
    if explicit:
        return explicit
    from mage_ai.settings.repo import get_data_dir

    directory = os.path.join(os.path.abspath(os.path.expanduser(get_data_dir())), "qbo_rs")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, f"tokens-{realm_id}.json")


# --------------------------------------------------------------------------------------------
# The realm's budget, shared by every worker process on the machine.
# --------------------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1 (got {value})")
    return value


def realm_budget() -> Tuple[int, int]:
    """(requests_per_minute, max_in_flight) for the whole realm.

    Mage's scheduler runs windows in parallel processes (``queue_config.concurrency``); qbo_rs
    shares one budget file per realm between every process on the machine
    (:func:`qbo_rs.default_limiter_dir`, or ``$QBO_LIMITER_DIR``), so each worker asks for the
    realm's whole budget and together they never exceed it. QBO_RS_REALM_RPM /
    QBO_RS_REALM_MAX_IN_FLIGHT lower it (another tool uses the same company)."""
    return (
        _env_int("QBO_RS_REALM_RPM", REALM_REQUESTS_PER_MINUTE),
        _env_int("QBO_RS_REALM_MAX_IN_FLIGHT", REALM_MAX_IN_FLIGHT),
    )


def make_client(kwargs: Dict[str, Any]) -> Tuple[qbo_rs.QboClient, Dict[str, str], TokenRotationRecorder]:
    creds, sources = read_credentials()
    rpm, in_flight = realm_budget()
    recorder = TokenRotationRecorder()
    client = qbo_rs.QboClient(
        creds,
        requests_per_minute=rpm,
        max_in_flight=in_flight,
        backoff_base=float(os.environ.get("QBO_RS_BACKOFF_BASE", "1.0") or 1.0),
        token_store=token_store_path(creds.realm_id),
        on_token_rotated=recorder,
    )
    shared = client.budget_file
    log(
        kwargs,
        f"realm {creds.realm_id} ({creds.environment}): {rpm} requests/min and {in_flight} in flight "
        + (
            f"shared by every worker process through {shared}"
            if shared is not None
            else "for this process ALONE: the shared budget directory is unusable (see the warning above)"
        )
        + "; credentials from "
        + ", ".join(f"{k}={v}" for k, v in sorted(sources.items())),
    )
    return client, sources, recorder


# --------------------------------------------------------------------------------------------
# Post-run policy for one-time triggers: disabled in triggers.yaml once they succeeded.
# --------------------------------------------------------------------------------------------


def triggers_file(kwargs: Dict[str, Any], pipeline_uuid: str) -> str:
    return os.path.join(repo_path(kwargs), "pipelines", pipeline_uuid, "triggers.yaml")


def _find_trigger(data: Any, name: str) -> Optional[Dict[str, Any]]:
    for trigger in (data or {}).get("triggers") or []:
        if isinstance(trigger, dict) and trigger.get("name") == name:
            return trigger
    return None


def disable_once_trigger(path: str, name: str) -> bool:
    """Sets ``status: inactive`` on the @once trigger ``name`` in ``path``; True if it changed.

    Mage only flips the schedule in its database, so a fresh database (new container, wiped
    volume) would fire the trigger again; the file is the durable record. The edit keeps the
    file's comments and layout (only that trigger's status line changes) and is verified by
    re-parsing; the write is atomic."""
    if not os.path.exists(path):
        return False
    with open(path) as f:
        text = f.read()
    data = yaml.safe_load(text)
    trigger = _find_trigger(data, name)
    if trigger is None or trigger.get("schedule_interval") != "@once" or trigger.get("status") != "active":
        return False
    lines = text.splitlines(keepends=True)
    items: List[Tuple[int, int]] = []  # (first line, indent) of every list item under triggers:
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)- ", line)
        if m:
            items.append((i, len(m.group(1))))
    new_lines = None
    for n, (first, indent) in enumerate(items):
        last = next((f for f, ind in items[n + 1 :] if ind <= indent), len(lines))
        block = lines[first:last]
        if not any(re.match(rf'^\s*(- )?name:\s*[\'"]?{re.escape(name)}[\'"]?\s*(#.*)?$', line) for line in block):
            continue
        for j in range(first, last):
            m = re.match(r'^(\s*(?:- )?status:\s*)[\'"]?active[\'"]?(\s*(#.*)?)$', lines[j].rstrip("\n"))
            if m:
                candidate = list(lines)
                candidate[j] = f"{m.group(1)}inactive{m.group(2)}\n"
                new_lines = candidate
                break
        if new_lines:
            break
    new_text = "".join(new_lines) if new_lines else None
    if new_text is not None:
        check = yaml.safe_load(new_text)
        expected = yaml.safe_load(text)
        found = _find_trigger(expected, name)
        assert found is not None  # the same text as `data`, where it was found
        found["status"] = "inactive"
        if check != expected:
            new_text = None
    if new_text is None:  # unusual layout: rewrite it (comments are lost, content is exact)
        trigger["status"] = "inactive"
        new_text = yaml.safe_dump(data, sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".triggers.", suffix=".yaml")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True
