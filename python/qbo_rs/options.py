"""The keyword options of qbo_rs's calls, each set listed once.

The engine owns every default and every check; these ``TypedDict``s only name the options and
their types for IDEs and type checkers (``**options: Unpack[BackfillOptions]``). A call passes
the options it was given straight to the engine, which refuses an unknown name or a bad value
with a :class:`~qbo_rs.exceptions.ConfigError` before any request or file.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional, Sequence, TypedDict, Union

if TYPE_CHECKING:
    from qbo_rs._qbo_rs import PostgresWriter, ProgressEvent

PathLike = Union[str, "os.PathLike[str]"]


class PostgresTableOptions(TypedDict, total=False):
    """Which PostgreSQL RAW tables.

    - ``dsn``: PostgreSQL DSN; without it the ``POSTGRES_*`` variables.
    - ``pg_schema`` / ``pg_table_prefix``: tables ``<schema>.<prefix><entity>s``
      (default ``raw`` / ``qb_``).
    - ``postgres``: a :class:`~qbo_rs.PostgresWriter`, instead of the three above.
    """

    dsn: Optional[str]
    pg_schema: str
    pg_table_prefix: str
    postgres: Optional["PostgresWriter"]


class SinkOptions(PostgresTableOptions, total=False):
    """Where records land: the PostgreSQL tables' options (:class:`PostgresTableOptions`), and

    - ``sink``: ``"txt"`` (default), ``"postgres"`` or ``"both"``.
    - ``data_dir``: folder of the JSON-lines files (default ``"data"``).
    - ``fsync``: fsync every commit (default True); False still never tears a line on a
      killed process, a power cut might.
    """

    sink: str
    data_dir: PathLike
    fsync: bool


class PostgresReadOptions(PostgresTableOptions, total=False):
    """A read of a PostgreSQL RAW table (:func:`~qbo_rs.read_postgres`): the tables' options,
    and

    - ``realm_id``: only this company's rows (default: every realm in the table).
    - ``live_only``: leave out records QuickBooks deleted (default False: they come with
      ``deleted_at_utc`` set).
    - ``batch_rows``: rows per Arrow record batch (default 8,192); it bounds the memory a read
      holds.
    """

    realm_id: Optional[str]
    live_only: bool
    batch_rows: Optional[int]


class ReadOptions(TypedDict, total=False):
    """How a window is read.

    - ``page_size``: records per request, 1..1000 (default 1000, QuickBooks' maximum).
    - ``filter_field``: ``LastUpdatedTime`` (default), ``CreateTime`` or ``TxnDate``.
    """

    page_size: int
    filter_field: str


class PlanOptions(ReadOptions, total=False):
    """How a range is planned and read: the read options, and

    - ``chunk_days``: days per window (default 50).
    - ``windows``: only these window labels (one label or a list).
    - ``max_concurrent_windows``: streams read at once (default 4). Consecutive windows are
      read as one keyset stream; a range's data decides how many streams it gets.
    """

    chunk_days: int
    windows: Optional[Union[str, Sequence[str]]]
    max_concurrent_windows: int


class RangeOptions(PlanOptions, total=False):
    """How a range is read into memory (:meth:`~qbo_rs.QboClient.read`): the plan's options, and

    - ``max_buffer_mb``: megabytes of fetched records held in memory across the streams
      (default 16).
    - ``max_requests``: refuse, before the first page, a read whose estimate needs more
      requests (:class:`~qbo_rs.exceptions.RequestBudgetError`, stating the estimate).
    - ``on_progress``: left out, a progress bar in a Jupyter kernel with ``tqdm`` installed and
      nothing elsewhere; ``True`` a bar anywhere; ``False``/``None`` none; a callable is given
      each :class:`~qbo_rs.ProgressEvent` (see :mod:`qbo_rs.progress`).
    """

    max_buffer_mb: int
    max_requests: Optional[int]
    on_progress: Union[Callable[["ProgressEvent"], object], bool, None]


class BackfillOptions(RangeOptions, SinkOptions, total=False):
    """A backfill's options: the range read's (:class:`RangeOptions`: the plan's,
    ``max_buffer_mb``, ``max_requests``, ``on_progress``) and the sink's."""


class SyncOptions(SinkOptions, total=False):
    """A sync's options (:meth:`~qbo_rs.QboClient.sync`): the sink's, and

    - ``page_size``, ``max_concurrent_windows``, ``max_buffer_mb``: as for a backfill (the read
      is a backfill's, by ``LastUpdatedTime``).
    - ``chunk_days``: days per window of the read (default: one window for the whole range; a
      sync is run again whole, and its streams follow the data either way).
    - ``max_requests``: refuse a read whose estimate needs more requests.
    - ``overlap_minutes``: minutes before the last sync's end read again (default 10): clocks
      differ a little, and a record may show in queries a little after its ``LastUpdatedTime``.
    - ``start``: how far back a sync of an empty sink, or a reconciliation, reads (default
      ``"2000-01-01"``; windows start at the oldest record anyway).
    """

    page_size: int
    chunk_days: int
    max_concurrent_windows: int
    max_buffer_mb: int
    max_requests: Optional[int]
    overlap_minutes: int
    start: str


class SharePlanOptions(PlanOptions, total=False):
    """A plan shared out between workers (:meth:`~qbo_rs.QboClient.plan_shares`): the plan's
    options, and

    - ``max_shares``: shares at most (default 4); small data gets fewer, one per stream at most.
      Raised past the default to the number of windows or more, it gives one share per window
      (each window's part of a stream then closes with a count of its own).
    - ``max_requests``: refuse a plan whose estimate needs more requests, as a backfill does.
    """

    max_shares: int
    max_requests: Optional[int]


class ShareStageOptions(TypedDict, total=False):
    """A share's fetch into its stage (:meth:`~qbo_rs.QboClient.stage_share`).

    - ``stage_dir``: where stages wait for their export (default ``"data/.qbo_rs/stage"``).
    - ``run_id``: the run the stage belongs to; a call repeated with it reads only the windows
      no earlier call staged (default: a fresh one per call).
    - ``max_streams``: streams read at once (default: every stream of the share).
    """

    stage_dir: PathLike
    run_id: Optional[str]
    max_streams: int


class StageOptions(ReadOptions, total=False):
    """A window's fetch into a stage (:meth:`~qbo_rs.QboClient.stage_window`), the read
    options included.

    - ``label``: the window's label (default: the one :func:`~qbo_rs.plan_windows` gives a
      window starting at ``start``).
    - ``stage_dir``: where stages wait for their export (default ``"data/.qbo_rs/stage"``).
    - ``run_id``: the run the stage belongs to; a call repeated with it returns the first
      one's stage (default: a fresh one per call).
    """

    label: Optional[str]
    stage_dir: PathLike
    run_id: Optional[str]


class ExportOptions(SinkOptions, total=False):
    """A staged window's or share's write (:func:`~qbo_rs.export_window`,
    :func:`~qbo_rs.export_share`), the sink options included.

    - ``keep_staged``: keep the stage after a successful write (default False: a receipt
      replaces it).
    """

    keep_staged: bool


class ClientOptions(TypedDict, total=False):
    """A :class:`~qbo_rs.QboClient`'s options (see its docstring for each)."""

    requests_per_minute: int
    max_in_flight: int
    max_retries: int
    backoff_base: float
    timeout: float
    token_store: Optional[PathLike]
    on_token_rotated: Optional[Callable[[str, str], None]]
    limiter_dir: Optional[PathLike]


class OneCallBackfillOptions(BackfillOptions, ClientOptions, total=False):
    """:func:`qbo_rs.backfill`'s options: the client's and the backfill's."""


CLIENT_OPTION_NAMES = frozenset(ClientOptions.__annotations__)
