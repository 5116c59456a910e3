"""The public client: typed signatures, defaults, and the ``async`` twins.

Each call is written once, as the native job it prepares (``_*_call`` below); its blocking
form and its ``async`` twin are made from that by :func:`_twins`. The async twins are
``async def`` on purpose: the native awaitables need a running event loop when they are
created, so ``asyncio.run(qbo_rs.backfill_async(...))`` works only if the native call happens
inside a coroutine, which is what these wrappers guarantee.
"""

from __future__ import annotations

import functools
import inspect
import os
from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Dict,
    Generic,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from qbo_rs import _qbo_rs, progress
from qbo_rs._qbo_rs import (
    BackfillReport,
    Credentials,
    Estimate,
    ReadShare,
    SharePlan,
    StagedShare,
    StagedWindow,
    SyncReport,
    _sync_job,
)
from qbo_rs.exceptions import BackfillError, ConfigError
from qbo_rs.frames import ReadTable
from qbo_rs.options import (
    CLIENT_OPTION_NAMES,
    BackfillOptions,
    ClientOptions,
    ExportOptions,
    OneCallBackfillOptions,
    PathLike,
    PlanOptions,
    RangeOptions,
    ReadOptions,
    SharePlanOptions,
    ShareStageOptions,
    StageOptions,
    SyncOptions,
)

if TYPE_CHECKING:
    from typing_extensions import ParamSpec, Protocol, Unpack

    _P = ParamSpec("_P")

    class _Job(Protocol):
        """A native job: ``run()`` blocks with the GIL released, ``run_future()`` is awaited."""

        def run(self) -> Any: ...
        def run_future(self) -> Awaitable[Any]: ...


DateLike = Union[str, date, datetime]


def default_token_store(realm_id: str, token_url: Optional[str] = None) -> Path:
    """Where rotated refresh tokens are kept unless told otherwise (the CLI uses the same rule).

    ``$QBO_TOKEN_STORE`` if set, else ``$XDG_STATE_HOME/qbo_rs/tokens-<realm>.json``
    (``~/.local/state/...`` by default) for Intuit's token endpoint, and
    ``tokens-<realm>-<tag>.json`` for any other ``token_url`` (an emulator, a proxy), so two
    servers that answer for the same realm id never share tokens. The file is created 0600.
    """
    path = _qbo_rs.default_token_store(realm_id, token_url)
    if path is None:
        raise ConfigError("no place for the token store: set QBO_TOKEN_STORE (or HOME), or pass token_store=None")
    return Path(path)


def default_limiter_dir() -> Path:
    """Where every process on this machine shares each realm's request budget (one small
    file per realm) unless told otherwise: ``$QBO_LIMITER_DIR``, else
    ``$XDG_RUNTIME_DIR/qbo_rs``, else ``<temp dir>/qbo_rs-<uid>``. It must be a local directory
    (not NFS) that every worker process of the realm can write."""
    return Path(_qbo_rs.default_limiter_dir())


_T = TypeVar("_T")
_Outcome = TypeVar("_Outcome", BackfillReport, StagedWindow, StagedShare, ReadTable)


def _checked(outcome: _Outcome, raise_on_failure: bool) -> _Outcome:
    """``outcome``; with ``raise_on_failure``, a failed one raises :class:`BackfillError`."""
    if raise_on_failure and not outcome.ok:
        report = outcome if isinstance(outcome, BackfillReport) else outcome.report
        labels = ", ".join(report.failed_windows)
        raise BackfillError(
            f"{len(report.failed_windows)} of {len(report.windows)} window(s) failed: {labels}. "
            "Committed windows are kept; re-run the failed labels (windows=[...]).",
            report,
        )
    return outcome


def _outcome(outcome: Any) -> Any:
    return outcome


class _Call(Generic[_T]):
    """A call ready to run: its native job, what makes the call's result of the job's outcome,
    and the context the run goes in (a progress bar)."""

    def __init__(
        self,
        job: "_Job",
        finish: Callable[[Any], _T] = _outcome,
        context: Optional[AbstractContextManager[object]] = None,
    ) -> None:
        self._job, self._finish, self._context = job, finish, context or nullcontext()

    def run(self) -> _T:
        with self._context:
            return self._finish(self._job.run())

    async def run_async(self) -> _T:
        with self._context:
            return self._finish(await self._job.run_future())


class _Native:
    """A native call with blocking and awaitable entry points, as a job."""

    def __init__(self, run: Callable[[], Any], run_future: Callable[[], Awaitable[Any]]) -> None:
        self.run, self.run_future = run, run_future


def _checked_call(
    job: "_Job",
    raise_on_failure: bool,
    context: Optional[AbstractContextManager[object]] = None,
    wrap: Callable[[Any], Any] = _outcome,
) -> _Call[Any]:
    """A call whose outcome (made ``wrap(outcome)``) raises when it failed (see :func:`_checked`)."""
    return _Call(job, lambda outcome: _checked(wrap(outcome), raise_on_failure), context)


def _twins(
    name: str, prepare: "Callable[_P, _Call[_T]]"
) -> "Tuple[Callable[_P, _T], Callable[_P, Coroutine[Any, Any, _T]]]":
    """The blocking call ``name`` and its ``async def`` twin ``<name>_async``, both running the
    job ``prepare`` makes of their arguments, documented by ``prepare``'s docstring."""

    @functools.wraps(prepare)
    def blocking(*args: "_P.args", **kwargs: "_P.kwargs") -> _T:
        return prepare(*args, **kwargs).run()

    @functools.wraps(prepare)
    async def awaited(*args: "_P.args", **kwargs: "_P.kwargs") -> _T:
        return await prepare(*args, **kwargs).run_async()

    prefix = prepare.__qualname__[: -len(prepare.__name__)]
    # What help() and Jupyter's `?` show: the call's parameters, returning what the job gives.
    signature = inspect.signature(prepare, follow_wrapped=False)
    returned = str(signature.return_annotation).replace("_Call[", "", 1)[:-1]
    for twin, twin_name in ((blocking, name), (awaited, f"{name}_async")):
        twin.__name__, twin.__qualname__ = twin_name, prefix + twin_name
        twin.__annotations__ = {**prepare.__annotations__, "return": returned}
        twin.__signature__ = signature.replace(return_annotation=returned)  # type: ignore[union-attr]
    awaited.__doc__ = f"Async twin of :func:`{name}` (runs on the shared tokio runtime)."
    return blocking, awaited


class QboClient(_qbo_rs.QboClient):
    """A QBO client for one realm: OAuth, pacing and retries shared by every call.

    Args:
        credentials: from :meth:`Credentials.from_env` or built by hand.
        **options: :class:`~qbo_rs.options.ClientOptions`, each with the engine's default:

            - ``requests_per_minute``: pace for this realm (default 490; Intuit allows 500).
            - ``max_in_flight``: concurrent requests for this realm (default 10, Intuit's limit).
            - ``max_retries``: retries after the first attempt on 429/5xx/timeouts/resets
              (default 6).
            - ``backoff_base``: seconds; waits are ``min(base * 2**retries + uniform(0, base), 60)``
              (default 1.0).
            - ``timeout``: seconds per request (default 120).
            - ``token_store``: file that keeps rotated refresh tokens (0600, locked). ``"auto"``
              (the default) uses :func:`default_token_store`; ``None`` keeps tokens in memory only.
            - ``on_token_rotated``: called as ``callback(realm_id, new_refresh_token)`` whenever
              Intuit rotates the refresh token (e.g. to write it back to a Mage secret).
            - ``limiter_dir``: the directory through which every process on this machine shares
              the realm's budget (``requests_per_minute`` and ``max_in_flight`` hold across all
              of them, e.g. Mage's parallel block-run processes). ``"auto"`` (the default) uses
              :func:`default_limiter_dir`; ``None`` paces this process alone.
    """

    def __new__(cls, credentials: Credentials, **options: Unpack[ClientOptions]) -> "QboClient":
        return super().__new__(cls, credentials, **options)

    def _fetch_window_call(
        self, entity: str, start: DateLike, end: DateLike, **options: Unpack[ReadOptions]
    ) -> _Call[List[Dict[str, Any]]]:
        """Every record of ``entity`` in ``[start, end)`` as QBO payload dicts (newest version
        of each id). Meant for notebooks: a whole window is held in memory. Options:
        :class:`~qbo_rs.options.ReadOptions`."""
        return _Call(
            _Native(
                lambda: self._fetch_window_json(entity, start, end, **options),
                lambda: self._fetch_window_future(entity, start, end, **options),
            )
        )

    fetch_window, fetch_window_async = _twins("fetch_window", _fetch_window_call)

    def _estimate_call(
        self, entity: str, start: DateLike, end: DateLike, **options: Unpack[PlanOptions]
    ) -> _Call[Estimate]:
        """What :meth:`backfill` with these options would read and spend, from COUNT requests
        alone (no page is read): records, windows, streams, requests and minutes at the realm's
        pace. A backfill spends the same requests (plus retries), counts included."""
        return _Call(self._estimate_job(entity, start, end, **options))

    estimate, estimate_async = _twins("estimate", _estimate_call)

    def _backfill_call(
        self,
        entity: str,
        start: DateLike,
        end: DateLike,
        *,
        raise_on_failure: bool = True,
        **options: Unpack[BackfillOptions],
    ) -> _Call[BackfillReport]:
        """Backfills ``entity`` over ``[start, end)`` into ``<data_dir>/<entity>s.txt`` (or
        PostgreSQL: see :class:`~qbo_rs.options.BackfillOptions` for every option and its
        default).

        Windows of ``chunk_days`` run concurrently under the realm's pace; each is read
        completely (keyset paging, COUNT reconciliation) and written idempotently (one line
        per id, newest version wins, crash-safe). ``windows`` re-runs only those labels.
        ``max_buffer_mb`` bounds the fetched records held in memory at once, across the
        windows (the report's ``peak_buffer_bytes`` says how much was held).
        ``on_progress``: left out, a progress bar in a Jupyter kernel with ``tqdm`` (nothing
        elsewhere); ``False``/``None`` none; a callable is given each
        :class:`~qbo_rs.ProgressEvent` (see :mod:`qbo_rs.progress`).
        Raises :class:`~qbo_rs.exceptions.BackfillError` (with ``.report``) if any window
        failed, unless ``raise_on_failure=False``. The GIL is released throughout; Ctrl-C
        stops the run between requests, keeping every committed batch.
        """
        native, bar = progress.resolve(dict(options))
        return _checked_call(self._backfill_job(entity, start, end, **native), raise_on_failure, bar)

    backfill, backfill_async = _twins("backfill", _backfill_call)

    def _read_call(
        self,
        entity: str,
        start: DateLike,
        end: DateLike,
        *,
        raise_on_failure: bool = True,
        **options: Unpack[RangeOptions],
    ) -> _Call[ReadTable]:
        """The records of ``entity`` in ``[start, end)``, read as :meth:`backfill` reads them
        (the same plan, windows, keyset paging, tie groups and COUNT reconciliation, each id
        once at its newest version) into memory instead of a RAW file, as a
        :class:`~qbo_rs.frames.ReadTable`: the columns of :func:`~qbo_rs.read_txt`, as Arrow
        record batches (``.to_pyarrow()``, ``.to_pandas()``, ``.to_polars()``, or any Arrow
        consumer), and the read's ``report``. Memory holds the result (one record batch per
        written batch) and the batches being read. Options:
        :class:`~qbo_rs.options.RangeOptions` (``on_progress`` as for :meth:`backfill`).
        Raises :class:`~qbo_rs.exceptions.BackfillError` (with ``.report``) if a window
        failed, unless ``raise_on_failure=False``."""
        native, bar = progress.resolve(dict(options))
        return _checked_call(self._read_job(entity, start, end, **native), raise_on_failure, bar, ReadTable)

    read, read_async = _twins("read", _read_call)

    def _stage_window_call(
        self,
        entity: str,
        start: DateLike,
        end: DateLike,
        *,
        raise_on_failure: bool = True,
        **options: Unpack[StageOptions],
    ) -> _Call[StagedWindow]:
        """Fetches one window ``[start, end)`` completely (keyset paging, COUNT reconciliation,
        the realm's pace) into ``<stage_dir>/<entity>s/<label>.jsonl`` and returns a small
        handle; :func:`export_window` writes it to the sinks later, in this process or another
        (Mage's exporter block). Records never pass through Python.

        ``label`` defaults to the one :func:`plan_windows` gives a window starting at
        ``start`` (``invoice_backfill_2025-01-01``). ``run_id`` names the run the stage
        belongs to (its files live in ``<stage_dir>/<entity>s/<run_id>/``): a call repeated
        with the same ``run_id`` and label, as orchestrators that run a step at least once do,
        returns the earlier call's stage, or the stage its export already wrote, without a
        request to QBO (``reused`` is then true). Without ``run_id`` every call fetches
        afresh into files of its own. A fetch never touches another call's files; a failed
        fetch stages nothing. Raises :class:`~qbo_rs.exceptions.BackfillError` (with
        ``.report``) if the fetch failed, unless ``raise_on_failure=False``.
        """
        return _checked_call(self._stage_job(entity, start, end, **options), raise_on_failure)

    stage_window, stage_window_async = _twins("stage_window", _stage_window_call)

    def _plan_shares_call(
        self, entity: str, start: DateLike, end: DateLike, **options: Unpack[SharePlanOptions]
    ) -> _Call[SharePlan]:
        """Plans a backfill as :meth:`backfill` would (windows, streams sized by COUNT; only
        COUNT requests are sent) and cuts it into at most ``max_shares`` shares of about equal
        work for separate workers (Mage's children). Each :class:`~qbo_rs.ReadShare` carries
        its windows and the plan's counts, so its worker counts nothing again; send it to
        another process as ``share.to_json()``. ``estimate`` is what the whole backfill costs.
        Raises :class:`~qbo_rs.exceptions.RequestBudgetError` over ``max_requests``."""
        return _Call(self._share_plan_job(entity, start, end, **options))

    plan_shares, plan_shares_async = _twins("plan_shares", _plan_shares_call)

    def _stage_share_call(
        self,
        share: Union[ReadShare, str],
        *,
        raise_on_failure: bool = True,
        **options: Unpack[ShareStageOptions],
    ) -> _Call[StagedShare]:
        """Fetches a share (a :class:`~qbo_rs.ReadShare` or its ``to_json()`` text) into one
        stage under ``<stage_dir>/<entity>s/<run_id>/``, reading its streams with the plan's
        counts and attributing every record to its window (one ``Rango … -> N filas`` line
        per window); :func:`export_share` writes it later, in this process or another.

        Repeated with the same ``run_id`` (orchestrators run a step at least once), it reads
        only the windows no earlier call staged: nothing after a success, the failed windows
        after a partial failure (``reused`` counts the others). Raises
        :class:`~qbo_rs.exceptions.BackfillError` (with ``.report``) if a window failed, unless
        ``raise_on_failure=False``; the windows read are kept either way."""
        return _checked_call(self._share_stage_job(share, **options), raise_on_failure)

    stage_share, stage_share_async = _twins("stage_share", _stage_share_call)

    def sync(self, entity: str, *, raise_on_failure: bool = True, **options: Unpack[SyncOptions]) -> SyncReport:
        """Brings ``entity``'s RAW layer up to date: reads what changed since the sinks'
        high-water mark (less ``overlap_minutes``) with a backfill's guarantees, then marks
        deleted what QuickBooks deleted since the last sweep (Change Data Capture; each
        deletion confirmed by a query). When the last sweep is older than the 30 days CDC looks
        back, or a CDC answer reached its 1,000-object cap, it reconciles instead: every record
        is read and each id QuickBooks no longer has is marked deleted (``report.mode`` and
        ``report.reason`` say so). On an empty sink it is a backfill. Options:
        :class:`~qbo_rs.options.SyncOptions`.

        The state (how far the sync got) is saved beside the data only once everything is
        committed: after a crash or a failed window, the next sync starts from the same place.
        Raises :class:`~qbo_rs.exceptions.BackfillError` (with ``.report``, the read's) if a
        window failed, unless ``raise_on_failure=False``."""
        report = _sync_job(self, entity, **options).run()
        _checked(report.read, raise_on_failure)
        return report

    async def sync_async(
        self, entity: str, *, raise_on_failure: bool = True, **options: Unpack[SyncOptions]
    ) -> SyncReport:
        """Async twin of :meth:`sync`."""
        report = await _sync_job(self, entity, **options).run_future()
        _checked(report.read, raise_on_failure)
        return report


def _manifest(staged: Union[StagedWindow, StagedShare, PathLike]) -> str:
    if isinstance(staged, (StagedWindow, StagedShare)):
        if staged.manifest is None:
            raise ConfigError(f"{staged.label} was not staged (its fetch failed): fetch it again first")
        return os.fspath(staged.manifest)
    return os.fspath(staged)


def _export_window_call(
    staged: Union[StagedWindow, PathLike],
    *,
    raise_on_failure: bool = True,
    **options: Unpack[ExportOptions],
) -> _Call[BackfillReport]:
    """Writes a window staged by :meth:`QboClient.stage_window` (the handle or its
    ``manifest`` path) to ``sink`` (``txt``, ``postgres`` or ``both``), idempotently and
    crash-safe like :meth:`QboClient.backfill`, then checks rows staged against rows each
    sink holds (the ``Validation`` lines). After a successful write a small receipt replaces
    the stage (unless ``keep_staged``): an export repeated after that returns the first one's
    report and writes nothing, so a step that runs twice ends as it did the first time.
    Exporting a kept stage twice changes nothing. No request goes to QBO.
    Raises :class:`~qbo_rs.exceptions.BackfillError` if the write failed validation, unless
    ``raise_on_failure=False``; a missing or damaged stage raises at once.
    """
    return _checked_call(_qbo_rs._export_job(_manifest(staged), **options), raise_on_failure)


export_window, export_window_async = _twins("export_window", _export_window_call)


def _export_share_call(
    staged: Union[StagedShare, PathLike],
    *,
    raise_on_failure: bool = True,
    **options: Unpack[ExportOptions],
) -> _Call[BackfillReport]:
    """Writes a share staged by :meth:`QboClient.stage_share` (the handle or its ``manifest``
    path) to ``sink``, window by window, exactly as :func:`export_window` writes one window:
    idempotent, crash-safe, rows staged checked against rows each sink holds, one report per
    window. Refuses a share with a window not staged (fetch it again first). Once every
    window is written a receipt replaces the stage (unless ``keep_staged``), so a repeated
    export returns the first one's report and writes nothing. No request goes to QBO."""
    return _checked_call(_qbo_rs._export_share_job(_manifest(staged), **options), raise_on_failure)


export_share, export_share_async = _twins("export_share", _export_share_call)


def _backfill_one_call(
    entity: str,
    start: DateLike,
    end: DateLike,
    *,
    credentials: Optional[Credentials] = None,
    raise_on_failure: bool = True,
    **options: Unpack[OneCallBackfillOptions],
) -> _Call[BackfillReport]:
    """One-call backfill: builds a :class:`QboClient` (credentials from the environment when
    not given) and runs :meth:`QboClient.backfill`. Takes every option of both
    (:class:`~qbo_rs.options.ClientOptions`, :class:`~qbo_rs.options.BackfillOptions`).
    ``asyncio.run(qbo_rs.backfill_async(...))`` works, and so does
    ``await qbo_rs.backfill_async(...)`` in a notebook."""
    rest: Dict[str, Any] = dict(options)
    client_options = {name: rest.pop(name) for name in list(rest) if name in CLIENT_OPTION_NAMES}
    client = QboClient(credentials or Credentials.from_env(), **client_options)
    return client._backfill_call(entity, start, end, raise_on_failure=raise_on_failure, **rest)


backfill, backfill_async = _twins("backfill", _backfill_one_call)
