//! A crash-safe, idempotent, keyed JSON-lines file.
//!
//! `qbo_jsonl` keeps a plain text file of one JSON object per line (`data/invoices.txt`) that
//! holds **exactly one line per id, carrying the newest version ever written for that id**, and
//! keeps it that way when batches are re-run in any order, when several processes write at once,
//! and when a writer is killed with SIGKILL at any instant. It is the embedded default RAW sink
//! of qbo_rs, but it knows nothing about QuickBooks: callers pass `(id, version, line)` triples
//! and a [`KeyExtractor`] that can recover `(id, version)` from a line.
//!
//! # On-disk format
//!
//! ```text
//! data/invoices.txt                     the data file: what users, `jq`, pandas read
//! data/.qbo_rs/invoices.txt.manifest    commit record (two slots, written in turn)
//! data/.qbo_rs/invoices.txt.idx         index log: sorted snapshot + appended frames (id -> slot, version)
//! data/.qbo_rs/invoices.txt.journal     redo journal of the last batch
//! data/.qbo_rs/invoices.txt.lock        exclusive lock held during every write
//! data/.qbo_rs/invoices.txt.compact     temporary: the compacted data file until renamed
//! data/.qbo_rs/invoices.txt.compact.map temporary: old -> new slot of every line, during compaction
//! data/.qbo_rs/invoices.txt.idx.tmp     temporary: the next index log (a new snapshot) until renamed
//! data/.qbo_rs/invoices.txt.idx.build0/1  temporary: partial snapshots during a rebuild
//! ```
//!
//! **Data file.** Every line is: optional ASCII spaces, exactly the caller's JSON object bytes,
//! optional ASCII spaces, `'\n'`. No empty or whitespace-only line; the file is empty or ends
//! with `'\n'`. The spaces are legal JSON whitespace, so `json.loads(line)` and `jq` read each
//! line as one object. They come from updates done without rewriting the file:
//! - a new version that fits in the old line's *slot* (its bytes up to and including the `'\n'`)
//!   is written over it in place and padded with spaces before the `'\n'`;
//! - a longer one is appended at the end, and the old slot, *including its `'\n'`*, is
//!   overwritten with spaces: those spaces become leading whitespace of the following line
//!   (there always is one, the new copy having been appended after it).
//!
//! Bytes outside live slots are *waste*; [`JsonlStore::compact`] rewrites the file without it
//! (temp file + rename), automatically once waste is both large and a large share of the file.
//!
//! **Manifest** (fixed 68 bytes, CRC-protected): generation, index-log epoch, committed data
//! length, data-file inode, committed index-log length, waste bytes, record count. The file
//! holds two such slots; a commit overwrites the one *not* holding the newest manifest, so a
//! torn write fails its checksum and the other slot still names the state before. The newest
//! valid slot (by generation) wins. A file of one slot, as written before slots, reads as
//! slot 0.
//!
//! **Index log** (`QBOJIDX2`): a *snapshot* of every id's `(offset, slot length, version)`,
//! sorted by id, then one CRC-protected *frame* per commit since, listing the new state of every
//! id the commit touched. The snapshot is a 60-byte header (magic, epoch, the generation that
//! wrote it, entry count, section lengths, greatest slot end; CRC), blocks of ≈ 4 KiB of
//! entries (each block CRC-protected), and a *fence* section (CRC) naming each block's first id.
//! A process keeps in memory only the fences (≈ 0.4 byte per record) and a *memtable* of the
//! frames after the snapshot; a lookup is the memtable, else one block read (`pread`, one
//! block cached). Numeric ids sort before other ids, so the neighbouring ids of one window
//! share blocks. When the memtable reaches [`StoreOptions::index_memory_entries`] (or the
//! frames have grown much larger than a snapshot), the writer *merges* it with the snapshot
//! into a new index log: a new epoch, written to `idx.tmp` and committed like a batch (below).
//! Other processes follow by generation: new frames are read into their memtable, a new epoch
//! is opened afresh. The index log is derived data: when it is missing, torn, from another
//! epoch, fails a checksum (the whole snapshot is checked, one block at a time, whenever a
//! process opens a new epoch) or does not end at the committed data length, the store
//! rebuilds it from the data file. A block found corrupt later makes that upsert rebuild
//! first; `version_of` reports it as [`StoreError::CorruptIndex`].
//!
//! **Journal** (CRC-protected): the generation the batch will commit as, the committed length it
//! appends to and how many bytes it appends, and every in-place change (overwrite or blank) as
//! offset + bytes. It lets recovery tell this store's own uncommitted append (cut it off) from
//! lines another program appended (adopt them through a rebuild).
//!
//! # Commit protocol (one batch, under the exclusive lock)
//!
//! 1. Catch up with the manifest; repair anything a crashed writer left (below).
//! 2. Plan: for each id keep the batch's greatest version; skip it if the store already holds
//!    that version (*unchanged*) or a newer one (*stale*). Nothing left → write nothing at all.
//! 3. Write the journal, fsync.
//! 4. Append all new lines beyond the committed length with **one** positioned write, fsync.
//! 5. Append the batch's frame to the index log, fsync.
//! 6. **Commit point:** write the new manifest over the older of the two slots, fsync (same
//!    file, same size: no rename, no directory sync).
//! 7. Apply the journal's in-place changes to the data file, fsync, empty the journal.
//!
//! Recovery (run under the lock by `open` and before every operation): if the journal belongs to
//! the committed generation, redo its in-place changes (idempotent). Bytes past the committed
//! length that the journal says were this batch's append are cut off. Anything else that does
//! not match (no or corrupt manifest, index log, wrong inode, shorter file, unexplained tail)
//! triggers a rebuild: the data file is scanned with the [`KeyExtractor`], duplicate ids are
//! resolved to their greatest version (the others blanked through the same journal), whitespace-
//! only lines are merged away, and a fresh index log and manifest are written. A line the
//! extractor cannot read stops the rebuild with an error naming the file and line: data is never
//! dropped silently.
//!
//! A SIGKILL before the manifest write of step 6 therefore leaves the state before the batch;
//! after it, the state after it. With fsync on, a power loss leaves one or the other too. No torn line, no duplicate id survives the next open.
//!
//! Within a batch the greatest version of an id wins, the first copy on a tie; stored versions
//! are replaced only by strictly greater ones. A rebuild that meets the same id twice keeps the
//! greatest version, the later line on a tie.
//!
//! **Compaction** writes the live lines, in file order and without padding, to `.compact` while
//! listing each line's old and new slot in `.compact.map` (file order, 32 bytes a line, one
//! offset per 128 lines in memory), then walks the index in id order, moving each slot through
//! the map into a new snapshot in `idx.tmp` (both fsynced), then commits a manifest naming the
//! new file's inode and the snapshot's epoch, then renames both into place. An index that does
//! not match the file's lines makes it rebuild first. Recovery finishes
//! those renames when the committed manifest names the temporary files, and deletes them
//! otherwise. Readers with the old file open keep reading the old, complete copy.
//!
//! **The honest limit:** between a SIGKILL and the next `open`/`upsert` (and, likewise, while a
//! batch is being written), a plain reader (`cat`, pandas) of the data file can see an
//! uncommitted partial tail (possibly a torn last line) or a partially applied in-place change
//! (an id present twice, the old copy not yet blanked). The next open repairs it. Readers that
//! need a committed view should use [`JsonlStore::for_each_line`] (it holds the lock), or read
//! once the writers have finished.
//!
//! `fsync: false` skips every fsync: still crash-safe against a killed process (the kernel keeps
//! the written pages), but not against power loss or a kernel crash.
//!
//! # Cost
//!
//! An upsert reads nothing from the data file and writes O(batch): the new lines in one
//! positioned write, in-place changes (coalesced when adjacent) twice (journal, then file), one
//! index-log frame, a 68-byte manifest, and four fsyncs (five with in-place changes), of which
//! only two (data and index log, which grow) make the filesystem commit its own journal.
//! [`JsonlStore::upsert_groups`] commits several batches for the price of one. It reads
//! at most one 4 KiB index block per distinct block its ids fall in (looked up in id order). A
//! batch that is already stored writes nothing at all.
//!
//! Memory does not grow with the number of records: the memtable holds at most
//! `index_memory_entries` (default 131072) entries of ≈ 40 bytes (≈ 5 MB, plus 32 bytes each
//! while it is sorted for a merge), the fences ≈ 40 bytes per 100 records (0.4 MB at 1M).
//! Opening a store reads the manifest, the snapshot (checked block by block, never held) and
//! the frames after it, never the data file.
//!
//! A merge rewrites the snapshot (≈ 41 bytes per numeric-id record: 41 MB at 1M) once per
//! `index_memory_entries` new or changed ids, so a first load of N records writes about
//! N² / (2 × 131072) × 41 bytes of index in merges (≈ 160 MB for 1M records, next to 2 GB of
//! data). A rebuild merges the same way while it scans. Compaction (O(file)), merges and
//! rebuilds run only when waste, the memtable or damage call for them, holding the lock.
//!
//! # Other limits
//!
//! - Changes made to the data file by other programs are detected by inode, committed length and
//!   last byte; a same-length in-place edit while the sidecar exists is not. Delete `.qbo_rs/`
//!   after editing the file by hand: the next open rebuilds from the file.
//! - Deleting `.qbo_rs/` while writers are running breaks their mutual exclusion (the lock file
//!   goes with it). File locks on network filesystems are only as good as the filesystem's.
//! - When a record shrinks, the rest of its slot stays as padding for regrowth; padding is not
//!   counted as waste (only blanked slots are), so it only goes away at the next compaction.
//! - Ids are at most 65535 bytes; lines under 4 GiB.
//! - The cost of merges grows with N² / `index_memory_entries` for a first load of N records;
//!   for tens of millions of records raise `index_memory_entries` (memory) or accept the I/O.
//! - Compaction replaces the data file by rename: a symlinked data file becomes a regular file.
//! - Built and tested on Linux. Elsewhere there are no inodes, so a replaced data file is
//!   detected by length only and a crash during compaction costs a rebuild.

#![warn(missing_docs)]

mod batch;
mod error;
mod format;
mod index;
mod io;
mod run;
mod store;

#[cfg(test)]
mod tests;

pub use batch::LineBatch;
pub use error::StoreError;
pub use index::numeric_id;
pub use store::JsonlStore;

/// Which of two copies of a record is newer: last-updated time first, then the sync token (an
/// edit counter), exactly how QuickBooks orders versions of an entity. Field order matters: the
/// derived `Ord` compares `updated_at_ms` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Last update time, milliseconds since the Unix epoch (UTC).
    pub updated_at_ms: i64,
    /// Tie-breaker when two versions share a timestamp.
    pub sync_token: u64,
}

/// One record to upsert.
///
/// `id` and `version` are passed separately (rather than parsed from `line`) so the write path
/// never parses JSON. They must agree with what the store's [`KeyExtractor`] returns for `line`,
/// because that is what a rebuild will see ([`StoreOptions::verify_lines`] checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRecord {
    /// The record's key; at most 65535 bytes.
    pub id: String,
    /// Its version; the store keeps the greatest one per id.
    pub version: Version,
    /// One compact JSON object, without a newline (the store adds it).
    pub line: Vec<u8>,
}

/// Recovers `(id, version)` from a line's JSON (without surrounding whitespace).
///
/// Used only when the index must be rebuilt from the data file (first open of a file written by
/// another tool, deleted or corrupt sidecar). Returning `None` makes the rebuild fail with the
/// line number rather than lose the line.
pub type KeyExtractor = fn(&[u8]) -> Option<(String, Version)>;

/// How a store behaves. Build with [`StoreOptions::new`] and adjust fields.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// fsync data, index, journal and manifest at each commit (default true). With `false` the
    /// store still survives a killed process, not a power loss or kernel crash.
    pub fsync: bool,
    /// See [`KeyExtractor`].
    pub key_extractor: KeyExtractor,
    /// Auto-compact only when waste is at least this share of the file (default 0.5).
    pub compact_min_waste_ratio: f64,
    /// ...and at least this many bytes (default 64 MiB), so small files are never rewritten
    /// for a handful of relocated lines.
    pub compact_min_waste_bytes: u64,
    /// Run the key extractor on every upserted line and reject records whose `id`/`version`
    /// disagree with it (default false: it costs a JSON parse per record). A disagreement
    /// means a later rebuild would see different keys than the writes did; turn this on in
    /// tests of the code that builds the records.
    pub verify_lines: bool,
    /// Index entries kept in memory before they are merged into the sorted on-disk snapshot
    /// (default 131072, ≈ 5 MB): bounds the index's memory whatever the number of records.
    /// Smaller means less memory and more frequent merges (each rewrites the snapshot, O(records)).
    pub index_memory_entries: usize,
}

impl StoreOptions {
    /// Default options with the given extractor.
    pub fn new(key_extractor: KeyExtractor) -> Self {
        StoreOptions {
            fsync: true,
            key_extractor,
            compact_min_waste_ratio: 0.5,
            compact_min_waste_bytes: 64 << 20,
            verify_lines: false,
            index_memory_entries: 1 << 17,
        }
    }
}

/// What one [`JsonlStore::upsert`] did. `inserted + updated + unchanged + stale` is the number
/// of distinct ids in the batch; `duplicates_in_batch` counts the extra copies dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpsertOutcome {
    /// Ids not stored before.
    pub inserted: usize,
    /// Ids stored with an older version, now replaced.
    pub updated: usize,
    /// Ids already stored with exactly this version: nothing written.
    pub unchanged: usize,
    /// Ids already stored with a newer version: the batch's copy was ignored.
    pub stale: usize,
    /// Records dropped because the same id appeared again in the batch (greatest version kept).
    pub duplicates_in_batch: usize,
    /// Bytes written to the data file (appends plus in-place changes).
    pub bytes_written: u64,
    /// Whether the upsert ended with an automatic compaction.
    pub compacted: bool,
}

/// What one [`JsonlStore::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactOutcome {
    /// Data file length before.
    pub bytes_before: u64,
    /// Data file length after.
    pub bytes_after: u64,
    /// Records in the file (unchanged by compaction).
    pub records: usize,
}

/// A snapshot of the store's size, as of its last operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Distinct ids.
    pub records: usize,
    /// Committed length of the data file.
    pub file_bytes: u64,
    /// Bytes of the data file outside every live line's slot (reclaimed by compaction).
    pub waste_bytes: u64,
    /// Commit counter; changes whenever any process commits.
    pub generation: u64,
    /// Committed length of the index log.
    pub index_log_bytes: u64,
    /// Approximate heap memory of the index: the memtable, the fences and one cached block.
    pub index_memory_bytes: usize,
}
