//! `read_txt`: a RAW JSON-lines file as an Arrow stream, through the Arrow PyCapsule interface
//! (`__arrow_c_stream__`), so pyarrow, pandas, polars, duckdb and the like take it with no Python
//! dependency of ours. The file is read lazily in Rust, a batch at a time, each time a consumer
//! asks for the stream.

use std::path::PathBuf;

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use qbo_arrow::{Period, RawEntity, RawFileReader, ReadError};

use crate::errors::{BindError, BindResult};

/// A RAW file to read as Arrow record batches (see `qbo_rs.read_txt`).
#[pyclass(frozen, module = "qbo_rs")]
pub struct RawTxt {
    path: PathBuf,
    entity: RawEntity,
    batch_rows: usize,
}

fn read_error(err: ReadError) -> BindError {
    BindError::Core(match err {
        ReadError::Line { .. } => qbo_core::Error::Decode(err.to_string()),
        ReadError::Io { .. } | ReadError::Entity(_) => qbo_core::Error::Config(err.to_string()),
    })
}

#[pymethods]
impl RawTxt {
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// `invoice`, `customer` or `item`.
    #[getter]
    fn entity(&self) -> &'static str {
        self.entity.slug()
    }

    /// A fresh stream over the file. `requested_schema` is a hint the interface lets a producer
    /// ignore: the columns are fixed by the entity.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> BindResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RawFileReader::open(&self.path, Some(self.entity), self.batch_rows).map_err(read_error)?;
        Ok(PyCapsule::new_with_value(py, FFI_ArrowArrayStream::new(Box::new(reader)), c"arrow_array_stream")?)
    }

    fn __repr__(&self) -> String {
        format!("RawTxt(path={:?}, entity={:?})", self.path.display().to_string(), self.entity())
    }
}

fn parse_entity(entity: Option<&str>) -> BindResult<Option<RawEntity>> {
    entity.map(|name| crate::convert::entity(name).map(RawEntity::from)).transpose()
}

/// The typed columns an entity's batches take from the payload (the lineage columns and
/// `payload` come too), for `read_txt`'s and `QboClient.read`'s tables.
#[pyfunction]
pub fn _typed_fields(entity: &str) -> BindResult<Vec<&'static str>> {
    Ok(parse_entity(Some(entity))?.map(RawEntity::typed_fields).unwrap_or_default())
}

/// Records per period of a RAW file: its entity's name and `(start, end, records)` per period,
/// in time order (see `qbo_rs.volume`). Counted with the GIL released.
#[pyfunction]
#[pyo3(signature = (path, entity, field, by))]
#[allow(clippy::type_complexity)]
pub fn _volume(
    py: Python<'_>,
    path: PathBuf,
    entity: Option<&str>,
    field: String,
    by: &str,
) -> BindResult<(&'static str, Vec<(DateTime<Utc>, DateTime<Utc>, u64)>)> {
    let entity = parse_entity(entity)?;
    let by = Period::parse(by).ok_or_else(|| BindError::Core(qbo_core::Error::config(format!("by must be day, month or window, not {by:?}"))))?;
    let (entity, periods) = py
        .detach(|| {
            let reader = RawFileReader::open(&path, entity, 1)?;
            qbo_arrow::volume(&path, Some(reader.entity()), &field, by).map(|periods| (reader.entity(), periods))
        })
        .map_err(read_error)?;
    Ok((entity.slug(), periods.into_iter().map(|p| (p.start, p.end, p.records)).collect()))
}

/// Opens `path` (checking it exists and saying its entity: from `entity`, else the file's name,
/// else its first line); nothing else is read until a stream is asked for.
#[pyfunction]
#[pyo3(signature = (path, entity = None, batch_rows = None))]
pub fn _read_txt(path: PathBuf, entity: Option<&str>, batch_rows: Option<usize>) -> BindResult<RawTxt> {
    let batch_rows = batch_rows.unwrap_or(qbo_arrow::DEFAULT_BATCH_ROWS);
    let entity = parse_entity(entity)?;
    if batch_rows == 0 {
        return Err(BindError::Core(qbo_core::Error::config("batch_rows must be at least 1")));
    }
    let reader = RawFileReader::open(&path, entity, batch_rows).map_err(read_error)?;
    Ok(RawTxt { entity: reader.entity(), path, batch_rows })
}
