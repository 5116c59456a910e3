"""qbo_rs: backfill QuickBooks Online invoices, customers and items into a RAW layer.

The engine is Rust (HTTP, JSON, pacing, writing); this package is its typed face::

    import qbo_rs

    creds = qbo_rs.Credentials.from_env()          # QBO_CLIENT_ID, QBO_CLIENT_SECRET, ...
    report = qbo_rs.backfill("invoice", "2025-01-01", "2025-07-01", credentials=creds)
    print(report.total_rows, report.failed_windows)

Nothing runs at import time: the tokio runtime is created on first use.
"""

from qbo_rs import exceptions, frames, options, progress
from qbo_rs._qbo_rs import (
    BackfillPlan,
    BackfillReport,
    Credentials,
    Estimate,
    PostgresWriter,
    ProgressEvent,
    ReadShare,
    SharePlan,
    StagedShare,
    StagedWindow,
    SyncReport,
    Window,
    WindowReport,
    __version__,
    parse_instant,
    plan,
    plan_windows,
)
from qbo_rs.client import (
    QboClient,
    backfill,
    backfill_async,
    default_limiter_dir,
    default_token_store,
    export_share,
    export_share_async,
    export_window,
    export_window_async,
)
from qbo_rs.frames import RawTable, ReadTable, Volume, read_postgres, read_txt, volume

__all__ = [
    "BackfillPlan",
    "BackfillReport",
    "Credentials",
    "Estimate",
    "PostgresWriter",
    "ProgressEvent",
    "QboClient",
    "ReadShare",
    "SharePlan",
    "StagedShare",
    "StagedWindow",
    "SyncReport",
    "Window",
    "WindowReport",
    "__version__",
    "backfill",
    "backfill_async",
    "default_limiter_dir",
    "default_token_store",
    "exceptions",
    "export_share",
    "export_share_async",
    "export_window",
    "export_window_async",
    "options",
    "progress",
    "frames",
    "RawTable",
    "ReadTable",
    "read_postgres",
    "read_txt",
    "Volume",
    "volume",
    "parse_instant",
    "plan",
    "plan_windows",
]
