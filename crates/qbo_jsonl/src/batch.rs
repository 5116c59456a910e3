//! [`LineBatch`]: many records whose lines and ids share two buffers.
//!
//! A batch of a few thousand 2 KB lines built as one `Vec` per line costs a large allocation
//! per record, usually freed by another thread (the one that commits), which is where glibc's
//! allocator is slowest. Built here, a whole batch costs a handful of allocations.

use std::ops::Range;

use crate::{StoreRecord, Version};

/// Records to upsert, their lines back to back in one buffer and their ids in another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineBatch {
    lines: Vec<u8>,
    ids: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    id: Range<usize>,
    line: Range<usize>,
    version: Version,
}

/// A record of a batch, borrowed: what the store's write path works on, wherever the bytes live.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) version: Version,
    pub(crate) line: &'a [u8],
}

impl LineBatch {
    /// An empty batch with room for `records` records of `line_bytes` line bytes in all.
    pub fn with_capacity(records: usize, line_bytes: usize) -> Self {
        LineBatch { lines: Vec::with_capacity(line_bytes), ids: String::with_capacity(records * 8), entries: Vec::with_capacity(records) }
    }

    /// Adds a record whose line `write_line` appends to the buffer it is given (one compact
    /// JSON object, no newline: the same rules as [`StoreRecord::line`], checked at upsert).
    pub fn push_with(&mut self, id: &str, version: Version, write_line: impl FnOnce(&mut Vec<u8>)) {
        let start = self.lines.len();
        write_line(&mut self.lines);
        let id_start = self.ids.len();
        self.ids.push_str(id);
        self.entries.push(Entry { id: id_start..self.ids.len(), line: start..self.lines.len(), version });
    }

    /// Adds a record with a copy of `line`.
    pub fn push(&mut self, id: &str, version: Version, line: &[u8]) {
        self.push_with(id, version, |buf| buf.extend_from_slice(line));
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Line bytes in the batch (without the newlines the store adds).
    pub fn line_bytes(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.entries.iter().map(|e| RecordRef { id: &self.ids[e.id.clone()], version: e.version, line: &self.lines[e.line.clone()] })
    }
}

impl From<Vec<StoreRecord>> for LineBatch {
    fn from(records: Vec<StoreRecord>) -> Self {
        let mut batch = LineBatch::with_capacity(records.len(), records.iter().map(|r| r.line.len()).sum());
        for r in &records {
            batch.push(&r.id, r.version, &r.line);
        }
        batch
    }
}

impl StoreRecord {
    pub(crate) fn as_ref(&self) -> RecordRef<'_> {
        RecordRef { id: &self.id, version: self.version, line: &self.line }
    }
}
