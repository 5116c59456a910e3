"""RAW records as Arrow, pandas or polars frames, read by the Rust engine.

The objects here implement the Arrow PyCapsule interface (``__arrow_c_stream__``), so any tool
that takes Arrow (pyarrow, polars, duckdb, arro3, deltalake) reads them directly; qbo_rs itself
needs none of those libraries, and imports one only when its ``to_*`` method is called.

Columns: ``id``, ``realm_id``, ``entity``, ``last_updated_utc`` (timestamp, UTC), ``sync_token``,
``ingested_at_utc``, ``extract_window_start_utc``, ``extract_window_end_utc``, ``page_number``,
``page_size``, ``deleted_at_utc`` (null while alive), a few typed fields of the payload (Invoice:
``txn_date``, ``doc_number``, ``total_amt``, ``balance``, ``customer_ref``, ``customer_name``;
Customer: ``display_name``, ``active``, ``balance``; Item: ``name``, ``type``, ``active``,
``unit_price``), amounts as decimals, missing fields as nulls, and ``payload`` (the QuickBooks
record as JSON text).
"""

from __future__ import annotations

from datetime import datetime
from os import PathLike
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

from qbo_rs import _qbo_rs
from qbo_rs.exceptions import ConfigError
from qbo_rs.options import PostgresReadOptions

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow
    from typing_extensions import Unpack


class RawTable:
    """A RAW file's or table's records as Arrow record batches, read lazily, a batch at a time
    (memory stays bounded), afresh each time a consumer asks for them."""

    def __init__(self, native: Union[_qbo_rs.RawTxt, _qbo_rs.RawPostgres, _qbo_rs.RecordsRead]) -> None:
        self._native = native

    @property
    def entity(self) -> str:
        """``invoice``, ``customer`` or ``item``."""
        return self._native.entity

    @property
    def typed_fields(self) -> List[str]:
        """The typed columns taken from the payload."""
        return _qbo_rs._typed_fields(self.entity)

    def __arrow_c_stream__(self, requested_schema: Optional[Any] = None) -> Any:
        return self._native.__arrow_c_stream__(requested_schema)

    def to_pyarrow(self) -> "pyarrow.Table":
        """A ``pyarrow.Table`` (needs pyarrow >= 14)."""
        import pyarrow

        return pyarrow.table(self)

    def to_pandas(self) -> "pandas.DataFrame":
        """A ``pandas.DataFrame`` through pyarrow: timestamps as ``datetime64[ms, UTC]``, amounts as
        ``decimal.Decimal``, missing values as ``None``/``NaT`` (needs pandas and pyarrow)."""
        return self.to_pyarrow().to_pandas()

    def to_polars(self) -> "polars.DataFrame":
        """A ``polars.DataFrame`` (needs polars >= 1.0; no pyarrow)."""
        import polars

        return polars.DataFrame(self)

    def __repr__(self) -> str:
        if isinstance(self._native, _qbo_rs.RawTxt):
            where = str(self._native.path)
        elif isinstance(self._native, _qbo_rs.RawPostgres):
            where = self._native.table
        else:
            where = "memory"
        return f"RawTable({where}, entity={self.entity!r})"


class ReadTable(RawTable):
    """The records :meth:`~qbo_rs.QboClient.read` returned: a :class:`RawTable` held in memory
    (Arrow record batches, each id once at its newest version), and the read's ``report``."""

    def __init__(self, native: _qbo_rs.RecordsRead) -> None:
        super().__init__(native)
        self._read = native

    @property
    def report(self) -> _qbo_rs.BackfillReport:
        """What the read did, window by window (as a backfill's report)."""
        return self._read.report

    @property
    def ok(self) -> bool:
        return self._read.ok

    @property
    def num_rows(self) -> int:
        return self._read.num_rows

    def __repr__(self) -> str:
        return f"ReadTable(entity={self.entity!r}, rows={self.num_rows})"


def read_txt(
    path: Union[str, "PathLike[str]"], entity: Optional[str] = None, *, batch_rows: Optional[int] = None
) -> RawTable:
    """The records of a RAW JSON-lines file (``data/invoices.txt``) as a :class:`RawTable`, read
    ``batch_rows`` records at a time (8,192 by default).

    ``entity`` defaults to what the file's name says (``invoices.txt``), else its first line.
    Raises ``ConfigError`` for a missing file or an unknown entity; a line that is not a RAW
    record fails the read, naming its line number. A line without its final newline (a write in
    progress) is left out."""
    return RawTable(_qbo_rs._read_txt(path, entity, batch_rows))


def read_postgres(entity: str, **options: Unpack[PostgresReadOptions]) -> RawTable:
    """The records of a PostgreSQL RAW table (``raw.qb_invoices`` by default) as a
    :class:`RawTable`, with the columns of :func:`read_txt`'s; ``payload`` is PostgreSQL's JSONB
    text of the record (the same JSON value, keys reordered).

    Connects once now to check the table can be read: a wrong DSN, password, schema or prefix,
    a missing table or a missing ``GRANT SELECT`` raises here, saying what to fix. Each stream
    then reads the table afresh from one snapshot, ``batch_rows`` rows at a time through a
    server-side cursor, in the table's physical order; rows of deleted records come with
    ``deleted_at_utc`` set unless ``live_only=True``. Options: :class:`~qbo_rs.options.PostgresReadOptions`."""
    return RawTable(_qbo_rs._read_postgres(entity, **options))


class Volume:
    """Records per period of a RAW file (from :func:`volume`): ``periods`` lists
    ``(start, end, records)`` in time order, ``start``/``end`` aware UTC datetimes."""

    def __init__(self, by: str, field: str, periods: List[Tuple[datetime, datetime, int]], entity: str) -> None:
        self.by, self.field, self.periods, self.entity = by, field, periods, entity

    @property
    def total(self) -> int:
        return sum(records for _, _, records in self.periods)

    def labels(self) -> List[str]:
        """Each period as text: ``2025-01-31`` (day), ``2025-01`` (month), or the window's label
        as :func:`~qbo_rs.plan_windows` gives it (``invoice_backfill_2025-01-01``)."""
        if self.by == "day":
            return [start.strftime("%Y-%m-%d") for start, _, _ in self.periods]
        if self.by == "month":
            return [start.strftime("%Y-%m") for start, _, _ in self.periods]
        return [f"{self.entity}_backfill_{start:%Y-%m-%d}" for start, _, _ in self.periods]

    def to_pandas(self) -> "pandas.DataFrame":
        """Columns ``period`` (the label), ``start``, ``end`` (UTC timestamps) and ``records``."""
        import pandas

        frame = pandas.DataFrame(
            {
                "period": self.labels(),
                "start": [start for start, _, _ in self.periods],
                "end": [end for _, end, _ in self.periods],
                "records": [records for _, _, records in self.periods],
            }
        )
        for column in ("start", "end"):
            frame[column] = pandas.to_datetime(frame[column], utc=True)
        return frame

    def plot(self, ax: Any = None, **bar_options: Any) -> Any:
        """A bar chart of records per period (matplotlib, imported now); returns its ``Axes``."""
        if ax is None:
            from matplotlib import pyplot

            _, ax = pyplot.subplots(figsize=(max(6.0, min(0.25 * len(self.periods), 18.0)), 4.0))
        ax.bar(range(len(self.periods)), [records for _, _, records in self.periods], **bar_options)
        labels = self.labels()
        step = max(1, len(labels) // 24)
        ax.set_xticks(range(0, len(labels), step))
        ax.set_xticklabels(labels[::step], rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("records")
        ax.set_title(f"{self.entity} records per {self.by}" + ("" if self.by == "window" else f" ({self.field})"))
        ax.figure.tight_layout()
        return ax

    def __repr__(self) -> str:
        return f"Volume(entity={self.entity!r}, by={self.by!r}, field={self.field!r}, periods={len(self.periods)}, records={self.total})"


def volume(
    source: Union[str, "PathLike[str]", RawTable],
    by: str = "day",
    field: str = "last_updated_utc",
    *,
    entity: Optional[str] = None,
) -> Volume:
    """Records per ``day``, ``month`` or ``window`` of a RAW file (its path, or a
    :class:`RawTable` of :func:`read_txt`), counted in Rust a batch at a time: a "volumetría".

    ``field`` is the date or time column days and months are taken from (UTC):
    ``last_updated_utc`` (default), ``txn_date`` (invoices), ``ingested_at_utc``, ...; ``window``
    groups by the extract window each record was read in. Deleted records and records without
    ``field`` are left out. ``.to_pandas()`` and ``.plot()`` import pandas or matplotlib then."""
    path: Union[str, "PathLike[str]"]
    if not isinstance(source, RawTable):
        path = source
    elif isinstance(source._native, _qbo_rs.RawTxt):
        path, entity = source._native.path, entity or source.entity
    else:
        raise ConfigError("volume() counts the records of a RAW file: pass its path, or read_txt(path)")
    native_entity, periods = _qbo_rs._volume(path, entity, field, by)
    return Volume(by.strip().lower(), field, periods, native_entity)
