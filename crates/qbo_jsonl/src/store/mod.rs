//! The store itself: its state and public operations, here; opening and catching up with other
//! writers (`recover`), committing a batch (`commit`), compaction and index snapshots (`compact`),
//! and rebuilding the index from the data file (`rebuild`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::batch::RecordRef;
use crate::error::StoreError;
use crate::format::{self, FrameBuilder, IdxEntry, Journal, Manifest, Op, MANIFEST_LEN, MANIFEST_SLOTS};
use crate::index::{Index, Key, OwnedKey, Slot};
use crate::io::{self as fio, file_id, Io};
use crate::run::{self, Run, RunHeader, RunWriter};
use crate::{CompactOutcome, LineBatch, StoreOptions, StoreRecord, StoreStats, UpsertOutcome, Version};

mod commit;
mod compact;
mod rebuild;
mod recover;

type Result<T> = std::result::Result<T, StoreError>;

/// JSON whitespace; lines written by other tools may carry tabs or '\r' too.
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b.iter().rposition(|&c| !is_ws(c)).map_or(0, |p| p + 1);
    &b[..n]
}

/// Rewrite the index log as a snapshot when it exceeds this many bytes...
const IDX_REWRITE_MIN: u64 = if cfg!(test) { 4096 } else { 8 << 20 };
/// ...and this many times the size of a fresh snapshot (estimated).
const IDX_REWRITE_FACTOR: u64 = 4;
/// Chunk size for scans and compaction copies.
const CHUNK: usize = 8 << 20;

/// A keyed JSON-lines file: one line per id, newest version wins, crash-safe batches.
///
/// Open one per file and per thread; several instances (threads or processes) may work on the
/// same file at once, serialised by a file lock held only during `upsert`/`compact`/`refresh`.
/// Between operations the in-memory view (`len`, `version_of`, `stats`) is a snapshot as of the
/// last operation; call [`refresh`](Self::refresh) to see other writers' commits.
pub struct JsonlStore {
    path: PathBuf,
    dir: PathBuf,
    manifest_path: PathBuf,
    /// The manifest slot holding the newest commit (the next commit writes the other one).
    manifest_slot: usize,
    idx_path: PathBuf,
    idx_tmp: PathBuf,
    journal_path: PathBuf,
    compact_tmp: PathBuf,
    /// Temporary: old → new offsets of every line during a compaction.
    compact_map: PathBuf,
    /// Temporary: snapshots of a rebuild in progress (two, used in turn).
    build_tmp: [PathBuf; 2],
    lock_path: PathBuf,
    options: StoreOptions,
    io: Io,
    lock: File,
    data: File,
    idx: File,
    journal: File,
    /// The snapshot of the index log (on disk) and the entries committed after it (in memory).
    index: Index,
    /// The committed state `index` reflects. `epoch == 0` means "nothing loaded".
    m: Manifest,
    /// Bytes read from the data file (tests check upserts read none).
    #[cfg(test)]
    pub(crate) data_bytes_read: u64,
}

impl std::fmt::Debug for JsonlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlStore").field("path", &self.path).field("stats", &self.stats()).finish()
    }
}

fn new_epoch() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish().max(1)
}

impl JsonlStore {
    /// Opens (creating if missing) the store at `path`, and its sidecar directory next to it.
    ///
    /// Under the lock, finishes or discards whatever a crashed writer left, and loads the index
    /// from the index log; rebuilds it by scanning the file only when the sidecar is missing or
    /// does not match the file (see the crate docs).
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        Self::open_inner(path.as_ref(), options, None)
    }

    #[cfg(any(test, feature = "failpoints"))]
    /// Test hook: `open` whose `n`-th mutating I/O step fails (see
    /// [`fail_after_steps`](Self::fail_after_steps)); exercises crashes during recovery/rebuild.
    pub fn open_failing_after(path: impl AsRef<Path>, options: StoreOptions, n: u64) -> Result<Self> {
        Self::open_inner(path.as_ref(), options, Some(n))
    }

    fn open_inner(path: &Path, options: StoreOptions, fail_at: Option<u64>) -> Result<Self> {
        let path = path.to_path_buf();
        let name = path
            .file_name()
            .ok_or_else(|| StoreError::io("opening", &path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path must name a file")))?
            .to_string_lossy()
            .into_owned();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let side = dir.join(".qbo_rs");
        fs::create_dir_all(&side).map_err(|e| StoreError::io("creating directory", &side, e))?;
        let sp = |ext: &str| side.join(format!("{name}.{ext}"));
        let lock_path = sp("lock");
        let lock = fio::open_rw(&lock_path, true)?;
        let data = fio::open_rw(&path, true)?;
        let idx_path = sp("idx");
        let idx = fio::open_rw(&idx_path, true)?;
        let journal_path = sp("journal");
        let journal = fio::open_rw(&journal_path, true)?;
        let mut s = JsonlStore {
            manifest_path: sp("manifest"),
            manifest_slot: 0,
            idx_tmp: sp("idx.tmp"),
            compact_tmp: sp("compact"),
            compact_map: sp("compact.map"),
            build_tmp: [sp("idx.build0"), sp("idx.build1")],
            idx_path,
            journal_path,
            lock_path,
            path,
            dir,
            io: Io::new(options.fsync),
            options,
            lock,
            data,
            idx,
            journal,
            index: Index::default(),
            m: Manifest::default(),
            #[cfg(test)]
            data_bytes_read: 0,
        };
        #[cfg(any(test, feature = "failpoints"))]
        s.fail_after_steps(fail_at);
        #[cfg(not(any(test, feature = "failpoints")))]
        let _ = fail_at;
        s.locked(|s| {
            // Make the names of the data file and the sidecar directory durable (they may have
            // just been created) before anything is committed that refers to them.
            let dir = s.dir.clone();
            s.io.sync_dir(&dir)?;
            s.sync()
        })?;
        Ok(s)
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of distinct ids (as of the last operation).
    pub fn len(&self) -> usize {
        self.m.records as usize
    }

    /// True when the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.m.records == 0
    }

    /// The stored version of `id` (as of the last operation), so callers can skip fetching or
    /// sending what is already current. Reads at most one block of the on-disk index.
    pub fn version_of(&self, id: &str) -> Result<Option<Version>> {
        Ok(self.index.get(Key::of(id))?.map(|(v, _)| v))
    }

    /// Sizes as of the last operation.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            records: self.m.records as usize,
            file_bytes: self.m.data_len,
            waste_bytes: self.m.waste,
            generation: self.m.generation,
            index_log_bytes: self.m.idx_len,
            index_memory_bytes: self.index.heap_bytes(),
        }
    }

    /// Catches up with commits made by other processes (and repairs a crashed writer's leftovers).
    pub fn refresh(&mut self) -> Result<()> {
        self.locked(|s| s.sync())
    }

    /// Reads the committed line of `id` (without padding), after catching up with other writers.
    pub fn get(&mut self, id: &str) -> Result<Option<Vec<u8>>> {
        self.locked(|s| {
            s.sync()?;
            match s.index.get(Key::of(id))? {
                None => Ok(None),
                Some((_, slot)) => {
                    s.count_read(slot.len - 1);
                    let b = fio::read_range(&s.data, slot.offset, slot.len - 1, &s.path)?;
                    Ok(Some(trim_end(&b).to_vec()))
                }
            }
        })
    }

    /// Calls `f` with every committed line (JSON only, without padding), in file order, holding
    /// the lock so no writer changes the file meanwhile: unlike a plain `cat`, this never sees a
    /// batch in progress. Returns the number of lines.
    pub fn for_each_line(&mut self, mut f: impl FnMut(&[u8])) -> Result<u64> {
        self.locked(|s| {
            s.sync()?;
            s.count_read(s.m.data_len);
            let file = File::open(&s.path).map_err(|e| StoreError::io("reading", &s.path, e))?;
            let mut r = BufReader::with_capacity(1 << 20, std::io::Read::take(file, s.m.data_len));
            let mut line = Vec::new();
            let mut n = 0;
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line).map_err(|e| StoreError::io("reading", &s.path, e))? == 0 {
                    return Ok(n);
                }
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                let start = body.iter().position(|&c| !is_ws(c)).unwrap_or(body.len());
                let content = trim_end(&body[start..]);
                if !content.is_empty() {
                    f(content);
                    n += 1;
                }
            }
        })
    }

    /// Writes one batch atomically: after a crash at any instant the store holds either all of
    /// it or none of it. Costs O(batch) I/O; a batch that is already stored writes nothing.
    pub fn upsert(&mut self, batch: Vec<StoreRecord>) -> Result<UpsertOutcome> {
        let records: Vec<RecordRef<'_>> = batch.iter().map(StoreRecord::as_ref).collect();
        let mut outcomes = self.upsert_records(&records, &[records.len()])?;
        Ok(outcomes.pop().unwrap_or_default())
    }

    /// Writes several batches as **one** commit (group commit): one journal, one append, one
    /// index frame, one manifest, so one set of fsyncs for all of them. After a crash the
    /// store holds all of them or none. The batches are merged as one (the greatest version
    /// of an id wins across them); each gets its own outcome: a record that lost to a copy in
    /// another batch counts in its own batch's `duplicates_in_batch`, `bytes_written` is what
    /// its own records cost, and `compacted` is set on every outcome when the commit ended
    /// with a compaction. A record refused by the checks of [`StoreRecord`] refuses the whole
    /// commit; its `index` in the error counts across the groups.
    pub fn upsert_groups(&mut self, groups: &[LineBatch]) -> Result<Vec<UpsertOutcome>> {
        let mut ends = Vec::with_capacity(groups.len());
        let mut records = Vec::with_capacity(groups.iter().map(LineBatch::len).sum());
        for group in groups {
            records.extend(group.records());
            ends.push(records.len());
        }
        self.upsert_records(&records, &ends)
    }

    fn upsert_records(&mut self, batch: &[RecordRef<'_>], ends: &[usize]) -> Result<Vec<UpsertOutcome>> {
        self.validate(batch)?;
        self.locked(|s| {
            s.sync()?;
            // A snapshot block that fails its checksum is found before anything is written
            // (lookups come first) or after the commit (merge): rebuild from the data file.
            let mut outs = match s.upsert_locked(batch, ends) {
                Err(StoreError::CorruptIndex { detail, .. }) => {
                    s.rebuild(&format!("the index log is corrupt: {detail}"))?;
                    s.upsert_locked(batch, ends)?
                }
                r => r?,
            };
            let compacted = match s.maintain() {
                Err(StoreError::CorruptIndex { detail, .. }) => {
                    s.rebuild(&format!("the index log is corrupt: {detail}"))?;
                    false
                }
                r => r?,
            };
            for out in &mut outs {
                out.compacted = compacted;
            }
            Ok(outs)
        })
    }

    /// Rewrites the data file without waste (temp file + rename, O(file)). Readers that have
    /// the old file open keep reading the old, complete copy.
    pub fn compact(&mut self) -> Result<CompactOutcome> {
        self.locked(|s| {
            s.sync()?;
            s.compact_locked()
        })
    }

    #[cfg(any(test, feature = "failpoints"))]
    /// Test hook: make the `n`-th mutating I/O step from now fail (a write fails after writing
    /// half its bytes), leaving the files as a SIGKILL at that instant would. `None` disarms.
    pub fn fail_after_steps(&mut self, n: Option<u64>) {
        self.io.fail_at = n.map(|n| self.io.steps + n);
    }

    #[cfg(any(test, feature = "failpoints"))]
    /// Test hook: mutating I/O steps taken so far.
    pub fn io_steps(&self) -> u64 {
        self.io.steps
    }

    // ---------------------------------------------------------------- internals

    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        fs4::FileExt::lock(&self.lock).map_err(|e| StoreError::io("locking", &self.lock_path, e))?;
        let r = f(self);
        let u = fs4::FileExt::unlock(&self.lock);
        let v = r?;
        u.map_err(|e| StoreError::io("unlocking", &self.lock_path, e))?;
        Ok(v)
    }

    fn validate(&self, batch: &[RecordRef<'_>]) -> Result<()> {
        for (index, r) in batch.iter().enumerate() {
            let reason = if r.line.is_empty() {
                Some("the line is empty")
            } else if memchr::memchr(b'\n', r.line).is_some() {
                Some("the line contains a newline")
            } else if is_ws(r.line[0]) || is_ws(r.line[r.line.len() - 1]) {
                Some("the line starts or ends with whitespace")
            } else if r.id.len() > u16::MAX as usize {
                Some("the id is longer than 65535 bytes")
            } else {
                None
            };
            let reason = reason.or_else(|| {
                let verify = self.options.verify_lines;
                let agrees = || match (self.options.key_extractor)(r.line) {
                    Some((id, v)) => id == r.id && v == r.version,
                    None => false,
                };
                (verify && !agrees()).then_some("the key extractor does not return this record's id and version for its line")
            });
            if let Some(reason) = reason {
                return Err(StoreError::InvalidRecord { path: self.path.clone(), index, id: r.id.to_string(), reason });
            }
        }
        Ok(())
    }
}

/// Writes a snapshot (the start of a new index log, entries in id order) to `path` and syncs
/// it; `install_snapshot` moves it into place once the manifest naming its epoch has committed.
fn write_snapshot(
    io: &mut Io,
    path: &Path,
    epoch: u64,
    generation: u64,
    entries: impl Iterator<Item = Result<(OwnedKey, Version, Slot)>>,
) -> Result<RunHeader> {
    let mut w = RunWriter::create(io, path, epoch, generation)?;
    for e in entries {
        let (k, v, s) = e?;
        w.push(k.as_key(), v, s)?;
    }
    w.finish()
}

fn push_blank(ops: &mut Vec<Op>, s: Slot) {
    let (mut o, mut n) = (s.offset, s.len);
    while n > 0 {
        let k = n.min(format::MAX_OP);
        ops.push(Op::Blank(o, k));
        o += k;
        n -= k;
    }
}
