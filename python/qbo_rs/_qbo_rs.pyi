"""Type stubs for the native module (checked against it by ``mypy.stubtest`` in ``make test``)."""

import os
from datetime import date, datetime
from pathlib import Path
from typing import Any, Awaitable, Dict, List, Optional, TypeVar, Union, final

from typing_extensions import Unpack, disjoint_base

from qbo_rs.options import (
    BackfillOptions,
    ClientOptions,
    ExportOptions,
    PlanOptions,
    PostgresReadOptions,
    RangeOptions,
    ReadOptions,
    SharePlanOptions,
    ShareStageOptions,
    StageOptions,
    SyncOptions,
)

_DateLike = Union[str, date, datetime]
_Self = TypeVar("_Self", bound="QboClient")

__version__: str
__all__ = [
    "BackfillJob",
    "BackfillPlan",
    "BackfillReport",
    "Credentials",
    "Estimate",
    "EstimateJob",
    "ExportJob",
    "NativeEmulator",
    "PostgresWriter",
    "ProgressEvent",
    "RawPostgres",
    "RawTxt",
    "ReadJob",
    "RecordsRead",
    "QboClient",
    "ReadShare",
    "ShareExportJob",
    "SharePlan",
    "SharePlanJob",
    "ShareStageJob",
    "StageJob",
    "StagedShare",
    "StagedWindow",
    "SyncJob",
    "SyncReport",
    "Window",
    "WindowReport",
    "__version__",
    "_export_job",
    "_export_share_job",
    "_read_postgres",
    "_read_txt",
    "_sync_job",
    "_typed_fields",
    "_volume",
    "default_limiter_dir",
    "default_token_store",
    "parse_instant",
    "plan",
    "plan_windows",
    "run_cli",
]

def parse_instant(value: _DateLike, name: str = "value") -> datetime:
    """``value`` as an aware UTC datetime, read exactly as :func:`plan_windows` and the backfills
    read their bounds: an ISO date (midnight UTC), an ISO datetime (naive means UTC, an offset is
    converted), a ``date`` or a ``datetime``. Raises ``ConfigError`` naming ``name``."""

@final
class RawTxt:
    """A RAW file to read as Arrow record batches (wrapped by :class:`qbo_rs.frames.RawTable`)."""

    @property
    def path(self) -> Path: ...
    @property
    def entity(self) -> str: ...
    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

def _typed_fields(entity: str) -> List[str]:
    """The typed columns an entity's batches take from the payload."""

def _volume(
    path: Union[str, "os.PathLike[str]"], entity: Optional[str], field: str, by: str
) -> "tuple[str, List[tuple[datetime, datetime, int]]]":
    """Records per period of a RAW file (see ``qbo_rs.volume``)."""

def _read_txt(
    path: Union[str, "os.PathLike[str]"], entity: Optional[str] = None, batch_rows: Optional[int] = None
) -> RawTxt: ...

@final
class RawPostgres:
    """A PostgreSQL RAW table to read as Arrow record batches (wrapped by
    :class:`qbo_rs.frames.RawTable`)."""

    @property
    def entity(self) -> str: ...
    @property
    def table(self) -> str:
        """The quoted table, e.g. ``"raw"."qb_invoices"``."""
    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

def _read_postgres(entity: str, **options: Unpack[PostgresReadOptions]) -> RawPostgres:
    """Checks that the entity's RAW table can be read (see ``qbo_rs.read_postgres``)."""

@final
class Window:
    """A half-open UTC window ``[start, end)`` with its stable label."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def label(self) -> str: ...
    @property
    def range_text(self) -> str:
        """``Rango 2025-01-01 a 2025-02-20``, as the logs print it."""

def plan_windows(
    start: _DateLike, end: _DateLike, chunk_days: Optional[int] = None, entity: str = "invoice"
) -> List[Window]:
    """Splits ``[start, end)`` into windows of ``chunk_days`` days (default: a backfill's, 50)
    labelled ``<entity>_backfill_<date>``.

    Strings are ISO dates (midnight UTC) or ISO datetimes; naive datetimes are UTC.
    Raises ``ConfigError`` for reversed/empty ranges, non-ISO dates or ``chunk_days < 1``.
    """

@final
class BackfillPlan:
    """A backfill's options resolved (defaults filled in) and checked, and the windows it runs
    (from :func:`plan`)."""

    @property
    def entity(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def chunk_days(self) -> int: ...
    @property
    def page_size(self) -> int: ...
    @property
    def filter_field(self) -> str:
        """``LastUpdatedTime``, ``CreateTime`` or ``TxnDate``."""
    @property
    def max_concurrent_windows(self) -> int: ...
    @property
    def max_buffer_mb(self) -> int: ...
    @property
    def max_requests(self) -> Optional[int]: ...
    @property
    def windows(self) -> List[Window]:
        """The windows to run: the calendar's, or those the ``windows`` option names."""

def plan(entity: str, start: _DateLike, end: _DateLike, **options: Unpack[PlanOptions]) -> BackfillPlan:
    """What a backfill (or an estimate, or a read) of ``entity`` over ``[start, end)`` with these
    options would run, resolved and checked exactly as it checks them, with no request and no
    file: ``ConfigError`` names the option that is wrong and says what it takes."""

@final
class Credentials:
    """QBO credentials; secrets stay in Rust and never appear in ``repr`` or errors."""

    def __new__(
        cls,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        realm_id: str,
        environment: str = "sandbox",
        base_url: Optional[str] = None,
        token_url: Optional[str] = None,
    ) -> "Credentials": ...
    @staticmethod
    def from_env(environ: Optional[Dict[str, str]] = None) -> "Credentials":
        """From QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN, QBO_REALM_ID, QBO_ENTORNO,
        QBO_BASE_URL and QBO_TOKEN_URL (``environ`` defaults to ``os.environ``)."""
    @property
    def realm_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def token_url(self) -> str: ...

@disjoint_base
class QboClient:
    """The native client; use :class:`qbo_rs.QboClient`, which adds the async twins."""

    def __new__(cls: "type[_Self]", credentials: Credentials, **options: Unpack[ClientOptions]) -> "_Self": ...
    @property
    def realm_id(self) -> str: ...
    @property
    def budget_file(self) -> Optional[Path]:
        """The file every process on this machine shares the realm's request budget through; None if this process paces alone."""
    def count(self, entity: str, start: _DateLike, end: _DateLike, filter_field: str = "LastUpdatedTime") -> int:
        """``SELECT COUNT(*)`` of ``entity`` in ``[start, end)``, inactive list records included."""
    def _fetch_window_json(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[ReadOptions]
    ) -> List[Dict[str, Any]]: ...
    def _fetch_window_future(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[ReadOptions]
    ) -> Awaitable[List[Dict[str, Any]]]: ...
    def _backfill_job(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[BackfillOptions]
    ) -> "BackfillJob": ...
    def _stage_job(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[StageOptions]
    ) -> "StageJob": ...
    def _estimate_job(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[PlanOptions]
    ) -> "EstimateJob": ...
    def _read_job(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[RangeOptions]
    ) -> "ReadJob": ...
    def _share_plan_job(
        self, entity: str, start: _DateLike, end: _DateLike, **options: Unpack[SharePlanOptions]
    ) -> "SharePlanJob": ...
    def _share_stage_job(
        self, share: Union["ReadShare", str], **options: Unpack[ShareStageOptions]
    ) -> "ShareStageJob": ...

@final
class PostgresWriter:
    """Where the PostgreSQL sink writes; checked when built (no I/O). Pass it to
    ``QboClient.backfill(..., sink="postgres", postgres=writer)``."""

    def __new__(cls, dsn: Optional[str] = None, *, schema: str = "raw", table_prefix: str = "qb_") -> "PostgresWriter":
        """``dsn`` like ``postgresql://user:pass@host:5432/db?sslmode=prefer``; without it the
        POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD variables."""
    @property
    def target(self) -> str:
        """``user@host:port/db`` (never the password)."""
    def table(self, entity: str) -> str:
        """The quoted table an entity is written to, e.g. ``"raw"."qb_invoices"``."""
    def ensure_tables(self) -> None:
        """Connects, creates the schema and tables if missing, checks privileges."""
    def count(self, entity: str) -> int:
        """Rows in the entity's table."""

@final
class ProgressEvent:
    """One event of a backfill's progress, given to ``on_progress`` callables, with the run's
    totals at that moment. ``kind`` says what happened: ``plan`` (the windows are known:
    ``windows_total``), ``estimate`` (the plan is counted: ``records_estimated``,
    ``requests_estimated``), ``rows`` (``rows`` records of ``window`` fetched), ``committed``
    (``rows`` records of ``window`` are in every sink) and ``window_done`` (``window`` is over:
    ``status``, and ``rows`` it wrote; one per planned window, after the read)."""

    @property
    def kind(self) -> str: ...
    @property
    def window(self) -> Optional[str]:
        """The window's label (None for ``plan`` and ``estimate``)."""
    @property
    def rows(self) -> int:
        """Records of this event: fetched, committed, or the window's rows written; else 0."""
    @property
    def status(self) -> Optional[str]:
        """``"ok"`` or ``"failed"`` for ``window_done``, else None."""
    @property
    def windows_done(self) -> int: ...
    @property
    def windows_total(self) -> int: ...
    @property
    def records_estimated(self) -> Optional[int]:
        """The plan's count of records; None before the ``estimate`` event."""
    @property
    def records_fetched(self) -> int: ...
    @property
    def records_committed(self) -> int:
        """Records in every sink so far (what an interrupted run leaves behind)."""
    @property
    def requests(self) -> int:
        """API requests of this run so far, retries included."""
    @property
    def requests_estimated(self) -> Optional[int]:
        """The plan's estimate of the requests; None before the ``estimate`` event."""
    @property
    def retries(self) -> int: ...
    @property
    def throttled(self) -> int:
        """Retries after a 429 (QuickBooks' throttling)."""
    @property
    def wait_s(self) -> float:
        """Seconds this run's requests waited before their retries (429 pauses, back-offs)."""
    @property
    def elapsed_s(self) -> float: ...

@final
class WindowReport:
    """What one window did."""

    @property
    def label(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def status(self) -> str:
        """``"ok"`` or ``"failed"``."""
    @property
    def ok(self) -> bool: ...
    @property
    def rows_fetched(self) -> int: ...
    @property
    def rows_written(self) -> int: ...
    @property
    def server_count(self) -> Optional[int]:
        """QBO's COUNT(*) of the window after its read, when one was made: a staged window's
        fetch (None when one page answered it whole). Always None in a backfill's report: a
        backfill counts runs of windows, not each window (its ``estimate`` has the records counted)."""
    @property
    def pages(self) -> int: ...
    @property
    def inserted(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def error(self) -> Optional[str]: ...
    @property
    def duration_s(self) -> float: ...
    def _repr_html_(self) -> str:
        """A table of the windows (label, bounds, status, rows, pages, error), for notebooks."""
    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per window (pandas is imported now)."""
    def to_dict(self) -> Dict[str, Any]: ...

@final
class ReadJob:
    """A range read into memory with its options checked, not yet run (``QboClient._read_job``)."""

    def run(self) -> "RecordsRead": ...
    def run_future(self) -> Awaitable["RecordsRead"]: ...

@final
class RecordsRead:
    """The records a range read returned, as Arrow record batches (``read_txt``'s columns), and
    the read's report."""

    @property
    def entity(self) -> str: ...
    @property
    def report(self) -> "BackfillReport": ...
    @property
    def ok(self) -> bool: ...
    @property
    def num_rows(self) -> int:
        """Records held, one per id."""
    def __arrow_c_stream__(self, requested_schema: Optional[object] = None) -> object: ...

@final
class BackfillJob:
    """A backfill with its options checked, not yet run (``QboClient._backfill_job``)."""

    def run(self) -> "BackfillReport": ...
    def run_future(self) -> Awaitable["BackfillReport"]: ...

def _sync_job(client: QboClient, entity: str, **options: Unpack[SyncOptions]) -> "SyncJob": ...

@final
class SyncJob:
    """A sync with its options checked, not yet run (``_sync_job``)."""

    def run(self) -> "SyncReport": ...
    def run_future(self) -> Awaitable["SyncReport"]: ...

@final
class SyncReport:
    """What a sync did (:meth:`qbo_rs.QboClient.sync`)."""

    @property
    def entity(self) -> str: ...
    @property
    def mode(self) -> str:
        """``initial`` (the sinks held nothing), ``incremental`` (changes since the high-water
        mark, deletions from Change Data Capture) or ``reconciliation`` (every record read)."""
    @property
    def reason(self) -> Optional[str]:
        """Why a reconciliation ran (None in the other modes)."""
    @property
    def read_from(self) -> datetime: ...
    @property
    def read_through(self) -> datetime:
        """The read covered ``[read_from, read_through)`` by ``LastUpdatedTime``."""
    @property
    def swept_from(self) -> Optional[datetime]:
        """Where the deletion sweep started (None: no sweep)."""
    @property
    def inserted(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def unchanged(self) -> int: ...
    @property
    def deleted(self) -> int:
        """Records marked deleted by this sync (in the first sink)."""
    @property
    def deletions_found(self) -> int:
        """Deletions reported (or found by a reconciliation) and confirmed by a query."""
    @property
    def deletions_refuted(self) -> int:
        """Reported deletions a query found alive: not recorded."""
    @property
    def deletions_by_sink(self) -> Dict[str, Dict[str, int]]:
        """Per sink: ``marked``, ``already_marked``, ``newer_kept``, ``not_held``."""
    @property
    def requests(self) -> int: ...
    @property
    def requests_by_kind(self) -> Dict[str, int]: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def state_saved(self) -> bool:
        """The sinks now start their next sync from ``read_through``."""
    @property
    def ok(self) -> bool: ...
    @property
    def read(self) -> "BackfillReport":
        """The read, window by window."""

@final
class BackfillReport:
    """What a backfill did, window by window."""

    @property
    def entity(self) -> str: ...
    @property
    def windows(self) -> List[WindowReport]: ...
    @property
    def total_rows(self) -> int: ...
    @property
    def ok(self) -> bool: ...
    @property
    def failed_windows(self) -> List[str]: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def requests(self) -> int: ...
    @property
    def retries(self) -> int: ...
    @property
    def throttled(self) -> int: ...
    @property
    def requests_by_kind(self) -> Dict[str, int]:
        """``page``, ``count``, ``cdc``, ``retry`` (``requests`` is their sum) and ``token``."""
    @property
    def estimate(self) -> Optional["Estimate"]: ...
    @property
    def tie_groups(self) -> int:
        """Seconds holding more than half a page, read as groups by offset."""
    @property
    def tie_requests(self) -> int:
        """The counts and pages those groups cost: what no estimate can foresee."""
    @property
    def peak_buffer_bytes(self) -> int: ...
    @property
    def targets(self) -> Dict[str, str]: ...
    def _repr_html_(self) -> str:
        """A table of the windows (label, bounds, status, rows, pages, error), for notebooks."""
    def to_pandas(self) -> Any:
        """A pandas DataFrame, one row per window (pandas is imported now)."""
    def to_dict(self) -> Dict[str, Any]: ...

@final
class Estimate:
    """What a backfill will read and spend, known from COUNT requests alone."""

    @property
    def entity(self) -> str: ...
    @property
    def windows(self) -> int: ...
    @property
    def records(self) -> int: ...
    @property
    def streams(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def count_requests(self) -> int: ...
    @property
    def page_requests(self) -> int: ...
    @property
    def minutes(self) -> float: ...
    def to_dict(self) -> Dict[str, Any]: ...

@final
class EstimateJob:
    """A backfill's plan, not yet counted (``QboClient._estimate_job``)."""

    def run(self) -> Estimate: ...
    def run_future(self) -> Awaitable[Estimate]: ...

@final
class StagedWindow:
    """A fetched window waiting on disk for :func:`qbo_rs.export_window` (pass it, or its ``manifest`` path)."""

    @property
    def label(self) -> str: ...
    @property
    def entity(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def rows_fetched(self) -> int: ...
    @property
    def lines(self) -> int: ...
    @property
    def server_count(self) -> Optional[int]: ...
    @property
    def pages(self) -> int: ...
    @property
    def manifest(self) -> Optional[Path]: ...
    @property
    def reused(self) -> bool: ...
    @property
    def report(self) -> BackfillReport: ...

def _export_job(manifest: Union[str, "os.PathLike[str]"], **options: Unpack[ExportOptions]) -> "ExportJob": ...

@final
class StageJob:
    """A window's fetch into a stage, not yet run (``QboClient._stage_job``)."""

    def run(self) -> "StagedWindow": ...
    def run_future(self) -> Awaitable["StagedWindow"]: ...

@final
class ExportJob:
    """A staged window's write, not yet run (``_export_job``)."""

    def run(self) -> BackfillReport: ...
    def run_future(self) -> Awaitable[BackfillReport]: ...

@final
class ReadShare:
    """One worker's part of a backfill (:meth:`qbo_rs.QboClient.plan_shares`): consecutive
    windows and the streams that read them, with the plan's counts."""

    @property
    def label(self) -> str: ...
    @property
    def entity(self) -> str: ...
    @property
    def index(self) -> int:
        """0-based place among ``of`` shares."""
    @property
    def of(self) -> int: ...
    @property
    def start(self) -> Optional[datetime]: ...
    @property
    def end(self) -> Optional[datetime]: ...
    @property
    def window_labels(self) -> List[str]: ...
    @property
    def records(self) -> int:
        """Records the plan counted in its windows."""
    @property
    def streams(self) -> int: ...
    @property
    def page_requests(self) -> int: ...
    def to_json(self) -> str: ...
    @staticmethod
    def from_json(text: str) -> "ReadShare": ...
    def __len__(self) -> int: ...

@final
class SharePlan:
    """A backfill's plan, counted and cut into shares."""

    @property
    def estimate(self) -> Estimate: ...
    @property
    def shares(self) -> List[ReadShare]: ...

@final
class SharePlanJob:
    """A plan to count and share, not yet run (``QboClient._share_plan_job``)."""

    def run(self) -> SharePlan: ...
    def run_future(self) -> Awaitable[SharePlan]: ...

@final
class StagedShare:
    """A fetched share waiting on disk for :func:`qbo_rs.export_share` (pass it, or its ``manifest`` path)."""

    @property
    def label(self) -> str: ...
    @property
    def entity(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def manifest(self) -> Optional[Path]: ...
    @property
    def reused(self) -> int:
        """Windows an earlier fetch with the same ``run_id`` had staged or written."""
    @property
    def exported(self) -> bool: ...
    @property
    def report(self) -> BackfillReport: ...

@final
class ShareStageJob:
    """A share's fetch into its stage, not yet run (``QboClient._share_stage_job``)."""

    def run(self) -> StagedShare: ...
    def run_future(self) -> Awaitable[StagedShare]: ...

def _export_share_job(
    manifest: Union[str, "os.PathLike[str]"], **options: Unpack[ExportOptions]
) -> "ShareExportJob": ...

@final
class ShareExportJob:
    """A staged share's write, not yet run (``_export_share_job``)."""

    def run(self) -> BackfillReport: ...
    def run_future(self) -> Awaitable[BackfillReport]: ...

@final
class NativeEmulator:
    """The emulator's native handle; use :class:`qbo_rs.testing.QboEmulator`."""

    @staticmethod
    def start(config_json: str) -> "NativeEmulator": ...
    @property
    def base_url(self) -> str: ...
    @property
    def token_url(self) -> str: ...
    @property
    def realm_id(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_secret(self) -> str: ...
    @property
    def refresh_token(self) -> str: ...
    def truth(self, entity: str) -> List[Dict[str, Any]]: ...
    def stats(self) -> Dict[str, Any]: ...
    def knobs(self) -> Dict[str, Any]: ...
    def set_knobs(self, knobs_json: str) -> None: ...
    def edit(self, entity: str, id: str) -> Dict[str, Any]: ...
    def delete(self, entity: str, id: str) -> Dict[str, Any]: ...
    def create(self, entity: str, id: Optional[str] = None) -> Dict[str, Any]: ...
    def deleted(self, entity: str) -> List[Dict[str, Any]]: ...
    def expire_access_tokens(self) -> None: ...
    def stop(self) -> None: ...

def default_limiter_dir() -> Path:
    """``$QBO_LIMITER_DIR``, else ``$XDG_RUNTIME_DIR/qbo_rs``, else ``<temp dir>/qbo_rs-<uid>``."""

def default_token_store(realm_id: str, token_url: Optional[str] = None) -> Optional[Path]:
    """``$QBO_TOKEN_STORE``, else ``$XDG_STATE_HOME/qbo_rs/tokens-<realm>.json`` (Intuit's token endpoint)
    or ``tokens-<realm>-<tag>.json`` (any other ``token_url``), else under ``~/.local/state``."""

def run_cli(argv: List[str]) -> int:
    """Runs the ``qbo-rs`` command line; returns its exit code."""
