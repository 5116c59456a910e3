//! A RAW file read a batch at a time.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

use crate::fields::{Columns, RawEntity, RawLine};
use crate::ReadError;

/// Rows per batch by default: ~20 MB of invoice payloads, a size every Arrow consumer handles
/// well, and what bounds the reader's memory.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

/// Reads a RAW file as record batches of at most `batch_rows` rows, in file order.
///
/// A line without its final newline (a write still in progress in another process) is left out;
/// any other line that is not a RAW record fails the batch it is in, naming its line number.
pub struct RawFileReader {
    path: PathBuf,
    entity: RawEntity,
    schema: SchemaRef,
    lines: BufReader<File>,
    line_number: u64,
    batch_rows: usize,
    columns: Columns,
    done: bool,
}

impl RawFileReader {
    /// Opens `path`. Without `entity`, the file's name (`invoices.txt`) says it, else its first
    /// line's `entity`.
    pub fn open(path: &Path, entity: Option<RawEntity>, batch_rows: usize) -> Result<Self, ReadError> {
        let io = |source| ReadError::Io { path: path.display().to_string(), source };
        let entity = match entity.or_else(|| path.file_stem().and_then(|s| s.to_str()).and_then(RawEntity::parse)) {
            Some(entity) => entity,
            None => first_line_entity(path)?.ok_or_else(|| {
                ReadError::Entity(format!("{}: empty, and its name does not say the entity: pass entity=\"invoice\", \"customer\" or \"item\"", path.display()))
            })?,
        };
        let file = File::open(path).map_err(io)?;
        let schema = entity.schema();
        Ok(RawFileReader {
            path: path.to_path_buf(),
            entity,
            columns: Columns::new(entity, schema.clone()),
            schema,
            lines: BufReader::with_capacity(1 << 20, file),
            line_number: 0,
            batch_rows: batch_rows.max(1),
            done: false,
        })
    }

    pub fn entity(&self) -> RawEntity {
        self.entity
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ReadError> {
        let mut buf = Vec::new();
        while !self.done && self.columns.rows() < self.batch_rows {
            buf.clear();
            let n = self.lines.read_until(b'\n', &mut buf).map_err(|source| ReadError::Io { path: self.path.display().to_string(), source })?;
            if n == 0 || buf.last() != Some(&b'\n') {
                self.done = true;
                break;
            }
            self.line_number += 1;
            let text = buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            let bad = |why: String| ReadError::Line { path: self.path.display().to_string(), line: self.line_number, why };
            let line: RawLine<'_> = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
            if RawEntity::parse(&line.entity) != Some(self.entity) {
                return Err(bad(format!("a {} record in a file of {:?}s", line.entity, self.entity)));
            }
            self.columns.push(&line).map_err(bad)?;
        }
        if self.columns.rows() == 0 {
            return Ok(None);
        }
        self.columns.finish().map(Some).map_err(|e| ReadError::Line { path: self.path.display().to_string(), line: self.line_number, why: e.to_string() })
    }
}

fn first_line_entity(path: &Path) -> Result<Option<RawEntity>, ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io { path: path.display().to_string(), source })?;
    let mut first = Vec::new();
    BufReader::new(file).read_until(b'\n', &mut first).map_err(|source| ReadError::Io { path: path.display().to_string(), source })?;
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        entity: std::borrow::Cow<'a, str>,
    }
    Ok(serde_json::from_slice::<Head<'_>>(first.trim_ascii()).ok().and_then(|h| RawEntity::parse(&h.entity)))
}

impl Iterator for RawFileReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                // Nothing after a failure: the rows read before it are dropped with it.
                self.done = true;
                self.columns = Columns::new(self.entity, self.schema.clone());
                Some(Err(ArrowError::ExternalError(Box::new(e))))
            }
        }
    }
}

impl RecordBatchReader for RawFileReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
