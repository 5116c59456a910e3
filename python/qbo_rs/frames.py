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

from os import PathLike
from typing import TYPE_CHECKING, Any, List, Optional, Union

from qbo_rs import _qbo_rs

if TYPE_CHECKING:
    import pandas
    import polars
    import pyarrow


class RawTable:
    """A RAW file's records as Arrow record batches, read lazily, a batch at a time (memory
    stays bounded), afresh each time a consumer asks for them."""

    def __init__(self, native: _qbo_rs.RawTxt) -> None:
        self._native = native

    @property
    def entity(self) -> str:
        """``invoice``, ``customer`` or ``item``."""
        return self._native.entity

    @property
    def typed_fields(self) -> List[str]:
        """The typed columns taken from the payload."""
        return self._native.typed_fields

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
        return f"RawTable({self._native.path!s}, entity={self.entity!r})"


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
