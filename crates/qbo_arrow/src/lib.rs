//! RAW JSON-lines files (`data/invoices.txt`, one record a line, as qbo_rs writes them) read as
//! Arrow record batches, for notebooks and any tool that takes Arrow.
//!
//! Every batch has the lineage columns, a few typed top-level fields of the entity's payload
//! (see [`RawEntity::typed_fields`]) and the whole payload as JSON text. Timestamps are UTC,
//! amounts are decimals (`Decimal128(38, 6)`: exact for any amount QuickBooks sends), a field a
//! record lacks is null. The file is read a batch at a time, so memory stays bounded whatever
//! its size. [`ArrowSink`] builds the same batches from a backfill's records, in memory, for
//! `QboClient.read`; [`PgTable`] reads a PostgreSQL RAW table as the same batches. Knows nothing
//! of QuickBooks' API or of Python.

mod fields;
mod postgres;
mod reader;
pub mod sink;
mod volume;

pub use fields::RawEntity;
pub use postgres::{PgReadOptions, PgTable, PgTableReader};
pub use reader::{RawFileReader, DEFAULT_BATCH_ROWS};
pub use sink::ArrowSink;
pub use volume::{volume, Period, PeriodCount};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} line {line}: {why}; is it a qbo_rs RAW file (one JSON object per line)?")]
    Line { path: String, line: u64, why: String },
    #[error("{0}")]
    Entity(String),
}
