//! The store itself: open/recover, upsert, compact, rebuild.

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

    /// The newest valid manifest and the slot it is in. The file holds two slots, written in
    /// turn, so a torn write leaves the other one; a file of one slot (the format before
    /// slots) reads as slot 0.
    fn read_manifest(&self) -> Result<Option<(Manifest, usize)>> {
        let Some(b) = fio::read_optional(&self.manifest_path)? else { return Ok(None) };
        Ok(b.chunks_exact(MANIFEST_LEN)
            .take(MANIFEST_SLOTS)
            .enumerate()
            .filter_map(|(slot, c)| Manifest::decode(c).map(|m| (m, slot)))
            .max_by_key(|(m, _)| m.generation))
    }

    fn read_journal(&self) -> Result<Option<Journal>> {
        let len = self.journal.metadata().map_err(|e| StoreError::io("inspecting", &self.journal_path, e))?.len();
        if len == 0 {
            return Ok(None);
        }
        let b = fio::read_range(&self.journal, 0, len, &self.journal_path)?;
        Ok(Journal::decode(&b))
    }

    #[inline]
    fn count_read(&mut self, _n: u64) {
        #[cfg(test)]
        {
            self.data_bytes_read += _n;
        }
    }

    fn reopen_data(&mut self) -> Result<()> {
        self.data = fio::open_rw(&self.path, true)?;
        Ok(())
    }

    fn fd_id(&self) -> Result<u64> {
        Ok(file_id(&self.data.metadata().map_err(|e| StoreError::io("inspecting", &self.path, e))?))
    }

    /// Brings the in-memory index to the committed state and repairs crash leftovers.
    /// Must be called under the lock.
    fn sync(&mut self) -> Result<()> {
        let Some((m, slot)) = self.read_manifest()? else {
            let why = if fio::metadata_optional(&self.manifest_path)?.is_some() { "the manifest is corrupt" } else { "there is no manifest" };
            return self.rebuild(why);
        };
        self.manifest_slot = slot;
        // A compaction that committed but did not get to rename its new file into place.
        if let Some(meta) = fio::metadata_optional(&self.compact_tmp)? {
            if m.data_ino != 0 && file_id(&meta) == m.data_ino {
                self.io.rename(&self.compact_tmp, &self.path)?;
                let dir = self.dir.clone();
                self.io.sync_dir(&dir)?;
            } else {
                let _ = fs::remove_file(&self.compact_tmp);
            }
        }
        self.finish_snapshot(&m)?;
        let Some(meta) = fio::metadata_optional(&self.path)? else {
            return self.rebuild("the data file was deleted");
        };
        if m.data_ino != 0 && file_id(&meta) != m.data_ino {
            return self.rebuild("the data file was replaced by another program");
        }
        if self.fd_id()? != file_id(&meta) {
            self.reopen_data()?;
        }
        let len = meta.len();
        if len < m.data_len {
            return self.rebuild("the data file is shorter than its last commit");
        }
        let journal = self.read_journal()?;
        let mut explained = false;
        if let Some(j) = &journal {
            if j.generation == m.generation {
                // Committed batch whose in-place changes may be unfinished: redo them.
                if !j.ops.is_empty() {
                    self.apply_ops(j)?;
                    let path = self.path.clone();
                    self.io.sync(&self.data, &path)?;
                    let jp = self.journal_path.clone();
                    self.io.set_len(&self.journal, 0, &jp)?;
                }
                // A committed rebuild may also have left junk to cut after its length.
                explained = len <= j.base_len + j.append_len;
            } else if j.generation == m.generation + 1 && j.base_len == m.data_len {
                // The append of a batch that never committed.
                explained = len <= j.base_len + j.append_len;
            }
        }
        if len > m.data_len {
            if !explained {
                return self.rebuild("the data file has bytes after its last commit that no batch wrote");
            }
            tracing::debug!(path = %self.path.display(), from = len, to = m.data_len, "discarding an uncommitted append");
            let path = self.path.clone();
            self.io.set_len(&self.data, m.data_len, &path)?;
            self.io.sync(&self.data, &path)?;
        }
        if self.m.epoch == m.epoch && self.m.generation == m.generation {
            return Ok(());
        }
        if self.m.epoch == m.epoch && self.m.generation < m.generation && self.m.idx_len <= m.idx_len {
            if self.catch_up(&m)? {
                self.m = m;
                return Ok(());
            }
            tracing::warn!(path = %self.idx_path.display(), "index log inconsistent while catching up; reloading it");
        }
        if self.full_load(&m)? {
            self.m = m;
            return Ok(());
        }
        self.rebuild("the index log does not match the data file")
    }

    /// Reads only the index-log frames committed since our last view. False if inconsistent.
    fn catch_up(&mut self, m: &Manifest) -> Result<bool> {
        let last = self.load_frames(self.m.idx_len, m, self.m.generation)?;
        Ok(last == Some(m.generation))
    }

    /// Applies the index-log frames in `[from, m.idx_len)` to the index, reading in chunks so
    /// memory stays bounded by the largest frame. None if a frame is torn, corrupt, out of
    /// order, or points outside the committed data.
    fn load_frames(&mut self, from: u64, m: &Manifest, after: u64) -> Result<Option<u64>> {
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = from;
        let mut last = after;
        let mut bad = false;
        while pos < m.idx_len || !buf.is_empty() {
            if pos < m.idx_len {
                let need = format::frame_len(&buf).unwrap_or(8).saturating_sub(buf.len()) as u64;
                let want = need.max(CHUNK as u64).min(m.idx_len - pos);
                let chunk = fio::read_range(&self.idx, pos, want, &self.idx_path)?;
                buf.extend_from_slice(&chunk);
                pos += want;
            }
            let index = &mut self.index;
            let Some((consumed, l)) = format::parse_frames_prefix(&buf, after, last, |e| {
                bad |= e.len == 0 || e.offset.checked_add(e.len).is_none_or(|end| end > m.data_len);
                index.set(Key::of(e.id), e.version, Slot { offset: e.offset, len: e.len });
            }) else {
                return Ok(None);
            };
            if bad || (consumed == 0 && pos >= m.idx_len) {
                return Ok(None);
            }
            last = l;
            buf.drain(..consumed);
        }
        Ok(Some(last))
    }

    /// Opens the index log's snapshot (checking every block, one at a time) and loads the frames
    /// after it. False if it does not match the manifest / data file.
    fn full_load(&mut self, m: &Manifest) -> Result<bool> {
        self.index = Index::default();
        self.m = Manifest::default();
        // The index file may have been replaced (rewritten by another process): reopen it.
        self.idx = fio::open_rw(&self.idx_path, true)?;
        let len = self.idx.metadata().map_err(|e| StoreError::io("inspecting", &self.idx_path, e))?.len();
        if len < m.idx_len {
            return Ok(false);
        }
        let file = self.idx.try_clone().map_err(|e| StoreError::io("opening", &self.idx_path, e))?;
        let Some(run) = Run::load(file, &self.idx_path, m.idx_len)? else { return Ok(false) };
        let h = run.header;
        if h.epoch != m.epoch || h.generation > m.generation || h.count > m.records || !run.verify()? {
            return Ok(false);
        }
        self.index = Index::new(Some(run));
        let last = self.load_frames(h.frames_start(), m, h.generation)?;
        let mem = self.index.mem.len() as u64;
        // Cheap consistency checks against the data file: the last line is live, ends the file.
        if last != Some(m.generation) || m.records > h.count + mem || self.index.max_end() != m.data_len {
            self.index = Index::default();
            return Ok(false);
        }
        if m.data_len > 0 {
            self.count_read(1);
            let last = fio::read_range(&self.data, m.data_len - 1, 1, &self.path)?;
            if last != b"\n" {
                self.index = Index::default();
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Applies in-place changes, coalescing adjacent ones into single writes.
    fn apply_ops(&mut self, journal: &Journal) -> Result<()> {
        let ops = &journal.ops;
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_unstable_by_key(|&i| ops[i].offset());
        let mut run: Vec<u8> = Vec::new();
        let mut run_start = 0u64;
        let path = self.path.clone();
        for i in order {
            let op = &ops[i];
            if !run.is_empty() && run_start + run.len() as u64 != op.offset() {
                self.io.write_at(&self.data, &run, run_start, &path)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = op.offset();
            }
            match op {
                Op::Write { .. } => run.extend_from_slice(journal.data(op)),
                Op::Blank(_, n) => run.resize(run.len() + *n as usize, b' '),
            }
            if run.len() >= CHUNK {
                self.io.write_at(&self.data, &run, run_start, &path)?;
                run_start += run.len() as u64;
                run.clear();
            }
        }
        if !run.is_empty() {
            self.io.write_at(&self.data, &run, run_start, &path)?;
        }
        Ok(())
    }

    fn write_journal(&mut self, j: &Journal) -> Result<()> {
        let b = j.encode();
        let p = self.journal_path.clone();
        self.io.write_at(&self.journal, &b, 0, &p)?;
        self.io.sync(&self.journal, &p)
    }

    /// The commit point: writes `m` over the slot that does *not* hold the newest manifest and
    /// syncs it. Until that write is complete the other slot still names the state before; a
    /// torn slot fails its checksum and is ignored. Same size, same file: no rename, no
    /// directory sync (except when the file is first created).
    fn commit_manifest(&mut self, m: &Manifest) -> Result<()> {
        let slot = (self.manifest_slot + 1) % MANIFEST_SLOTS;
        let path = self.manifest_path.clone();
        let existed = fio::metadata_optional(&path)?.is_some();
        let f = fio::open_rw(&path, true)?;
        self.io.write_at(&f, &m.encode(), (slot * MANIFEST_LEN) as u64, &path)?;
        self.io.sync(&f, &path)?;
        if !existed {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            self.io.sync_dir(&dir)?;
        }
        self.manifest_slot = slot;
        Ok(())
    }

    /// One commit of `batch`, whose records `..ends[0]`, `ends[0]..ends[1]`, ... are the groups
    /// that each get an outcome.
    fn upsert_locked(&mut self, batch: &[RecordRef<'_>], ends: &[usize]) -> Result<Vec<UpsertOutcome>> {
        let mut outs = vec![UpsertOutcome::default(); ends.len()];
        let group = |i: usize| ends.partition_point(|&end| end <= i);
        // Greatest version per id; on a tie the first copy wins.
        let mut winners: Vec<usize> = Vec::with_capacity(batch.len());
        {
            let mut pos: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
            for (i, r) in batch.iter().enumerate() {
                match pos.get(r.id) {
                    None => {
                        pos.insert(r.id, winners.len());
                        winners.push(i);
                    }
                    Some(&w) => {
                        let loser = if r.version > batch[winners[w]].version { std::mem::replace(&mut winners[w], i) } else { i };
                        outs[group(loser)].duplicates_in_batch += 1;
                    }
                }
            }
        }
        // Look every winner up in id order, so that neighbouring ids share one read of a
        // snapshot block.
        let mut found: Vec<Option<(Version, Slot)>> = vec![None; winners.len()];
        {
            let mut order: Vec<(Key<'_>, usize)> = winners.iter().enumerate().map(|(w, &i)| (Key::of(batch[i].id), w)).collect();
            order.sort_unstable();
            for (k, w) in order {
                found[w] = self.index.get(k)?;
            }
        }
        let generation = self.m.generation + 1;
        let base = self.m.data_len;
        // The appended lines, written straight from the batches (line, "\n", line, ...): a
        // group is several MiB, and a copy of it would be the largest buffer the store holds.
        let mut append: Vec<&[u8]> = Vec::new();
        let mut append_len = 0u64;
        let mut journal = Journal::plain(generation, base, 0);
        let mut changes: Vec<(usize, Slot)> = Vec::new();
        let mut waste = self.m.waste;
        let mut frame = FrameBuilder::new(generation);
        for (&i, stored) in winners.iter().zip(found) {
            let r = &batch[i];
            let out = &mut outs[group(i)];
            let line_len = r.line.len() as u64;
            let slot = match stored {
                None => {
                    out.inserted += 1;
                    None
                }
                Some((v, _)) if r.version < v => {
                    out.stale += 1;
                    continue;
                }
                Some((v, _)) if r.version == v => {
                    out.unchanged += 1;
                    continue;
                }
                Some((_, old)) => {
                    out.updated += 1;
                    if line_len < old.len {
                        // Rewrite the whole slot, '\n' included (unchanged), so that the writes
                        // of neighbouring slots coalesce into one.
                        journal.write_slot(old.offset, r.line, old.len as usize);
                        out.bytes_written += old.len;
                        Some(old)
                    } else {
                        // Relocate: blank the old slot including its '\n'.
                        push_blank(&mut journal.ops, old);
                        out.bytes_written += old.len;
                        waste += old.len;
                        None
                    }
                }
            };
            let slot = slot.unwrap_or_else(|| {
                let s = Slot { offset: base + append_len, len: line_len + 1 };
                append.push(r.line);
                append.push(b"\n");
                append_len += line_len + 1;
                out.bytes_written += line_len + 1;
                s
            });
            frame.push(&IdxEntry { id: r.id, version: r.version, offset: slot.offset, len: slot.len });
            changes.push((i, slot));
        }
        if changes.is_empty() {
            return Ok(outs);
        }
        let frame = frame.finish();
        journal.append_len = append_len;
        let inserted: usize = outs.iter().map(|o| o.inserted).sum();
        let result = self.commit_batch(&journal, &append, &frame, waste, inserted as u64);
        debug_assert_eq!(outs.iter().map(|o| o.bytes_written).sum::<u64>(), append_len + journal.ops.iter().map(|o| o.len()).sum::<u64>());
        result?;
        // Committed: the in-memory index follows.
        for (i, slot) in changes {
            let r = &batch[i];
            self.index.set(Key::of(r.id), r.version, slot);
        }
        // Finish the in-place part. A failure here is repaired by the next sync (journal redo).
        if !journal.ops.is_empty() {
            self.apply_ops(&journal)?;
            let path = self.path.clone();
            self.io.sync(&self.data, &path)?;
            let jp = self.journal_path.clone();
            self.io.set_len(&self.journal, 0, &jp)?;
        }
        Ok(outs)
    }

    /// Steps 3–6 of the protocol. On success `self.m` is the new manifest.
    fn commit_batch(&mut self, journal: &Journal, append: &[&[u8]], frame: &[u8], waste: u64, new_records: u64) -> Result<()> {
        self.write_journal(journal)?;
        let path = self.path.clone();
        if journal.append_len > 0 {
            self.io.write_parts_at(&self.data, append, journal.base_len, &path)?;
            self.io.sync(&self.data, &path)?;
        }
        let ip = self.idx_path.clone();
        self.io.write_at(&self.idx, frame, self.m.idx_len, &ip)?;
        self.io.sync(&self.idx, &ip)?;
        let m = Manifest {
            generation: journal.generation,
            epoch: self.m.epoch,
            data_len: journal.base_len + journal.append_len,
            data_ino: self.fd_id()?,
            idx_len: self.m.idx_len + frame.len() as u64,
            waste,
            records: self.m.records + new_records,
        };
        self.commit_manifest(&m)?;
        self.m = m;
        Ok(())
    }

    /// After an upsert: compact or rewrite the index log when they have grown wasteful.
    /// Returns whether it compacted.
    fn maintain(&mut self) -> Result<bool> {
        let o = &self.options;
        let waste = self.m.waste;
        if waste > 0 && waste >= o.compact_min_waste_bytes && waste as f64 >= o.compact_min_waste_ratio * self.m.data_len as f64 {
            self.compact_locked()?;
            return Ok(true);
        }
        // Merge the memtable into a new snapshot when it is full, or when the frames after the
        // snapshot have grown much larger than a fresh snapshot would be.
        let snapshot_estimate = self.m.records * 48 + run::HEADER_LEN;
        let full = self.index.mem.len() >= self.options.index_memory_entries.max(1);
        if full || (self.m.idx_len > IDX_REWRITE_MIN && self.m.idx_len > IDX_REWRITE_FACTOR * snapshot_estimate) {
            self.rewrite_index_log()?;
        }
        Ok(false)
    }

    /// After the manifest naming a new index-log epoch committed: move the snapshot into place
    /// and use it (the memtable's entries are all in it).
    fn install_snapshot(&mut self) -> Result<()> {
        let (tmp, path) = (self.idx_tmp.clone(), self.idx_path.clone());
        self.io.rename(&tmp, &path)?;
        self.io.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        self.idx = fio::open_rw(&self.idx_path, true)?;
        let file = self.idx.try_clone().map_err(|e| StoreError::io("opening", &self.idx_path, e))?;
        let run = Run::load(file, &self.idx_path, self.m.idx_len)?
            .ok_or_else(|| StoreError::CorruptIndex { path: self.idx_path.clone(), detail: "the snapshot just written cannot be read back".into() })?;
        self.index = Index::new(Some(run));
        Ok(())
    }

    /// Redo half of `install_snapshot` after a crash: a snapshot for the committed epoch still
    /// under its temporary name is moved into place (and then loaded like any other index
    /// log); any other leftover is discarded.
    fn finish_snapshot(&mut self, m: &Manifest) -> Result<()> {
        let Some(meta) = fio::metadata_optional(&self.idx_tmp)? else { return Ok(()) };
        let f = File::open(&self.idx_tmp).map_err(|e| StoreError::io("reading", &self.idx_tmp, e))?;
        let header = if meta.len() >= run::HEADER_LEN { fio::read_range(&f, 0, run::HEADER_LEN, &self.idx_tmp)? } else { Vec::new() };
        drop(f);
        if run::decode_epoch(&header) == Some(m.epoch) {
            let (tmp, path) = (self.idx_tmp.clone(), self.idx_path.clone());
            self.io.rename(&tmp, &path)?;
            self.io.sync_dir(path.parent().unwrap_or(Path::new(".")))?;
            self.index = Index::default();
            self.m = Manifest::default();
        } else {
            let _ = fs::remove_file(&self.idx_tmp);
        }
        Ok(())
    }

    /// Merges the memtable into a new snapshot: a new index-log epoch, committed like a batch.
    fn rewrite_index_log(&mut self) -> Result<()> {
        let generation = self.m.generation + 1;
        let epoch = new_epoch();
        let h = write_snapshot(&mut self.io, &self.idx_tmp, epoch, generation, self.index.merged())?;
        if h.count != self.m.records {
            return Err(StoreError::CorruptIndex {
                path: self.idx_path.clone(),
                detail: format!("the index holds {} ids, the manifest {}", h.count, self.m.records),
            });
        }
        let m = Manifest { generation, epoch, idx_len: h.frames_start(), ..self.m };
        // Stale journal must not be mistaken for this generation's.
        self.write_journal(&Journal::plain(generation, m.data_len, 0))?;
        self.commit_manifest(&m)?;
        self.m = m;
        self.install_snapshot()
    }

    /// Pass 1 of a compaction: copies every line of the committed data file, without the
    /// whitespace around it, to `.compact`, and lists each line's old and new slot in the
    /// `.compact.map` file (in file order). Returns (new length, lines, map).
    fn copy_compacted(&mut self) -> Result<(u64, u64, OffsetMap)> {
        let tmp_path = self.compact_tmp.clone();
        let tmp = fio::create_truncate(&tmp_path)?;
        let mut map = OffsetMapWriter::create(&self.compact_map)?;
        let data_path = self.path.clone();
        let data_len = self.m.data_len;
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
        let mut out_off = 0u64;
        let mut lines = 0u64;
        // `window` holds data bytes from `win_start`; whole lines are consumed from it.
        let mut window: Vec<u8> = Vec::new();
        let mut win_start = 0u64;
        let mut pos = 0u64; // next byte to read
        while pos < data_len || !window.is_empty() {
            if pos < data_len {
                let len = (CHUNK as u64).min(data_len - pos);
                self.count_read(len);
                let chunk = fio::read_range(&self.data, pos, len, &data_path)?;
                window.extend_from_slice(&chunk);
                pos += len;
            }
            let mut consumed = 0usize;
            while let Some(nl) = memchr::memchr(b'\n', &window[consumed..]) {
                let body = &window[consumed..consumed + nl];
                if let Some(lead) = body.iter().position(|&c| !is_ws(c)) {
                    let content = trim_end(&body[lead..]);
                    let old = Slot { offset: win_start + (consumed + lead) as u64, len: (nl - lead) as u64 + 1 };
                    let new = Slot { offset: out_off + out.len() as u64, len: content.len() as u64 + 1 };
                    map.push(old, new)?;
                    out.extend_from_slice(content);
                    out.push(b'\n');
                    lines += 1;
                    if out.len() >= CHUNK {
                        self.io.write_at(&tmp, &out, out_off, &tmp_path)?;
                        out_off += out.len() as u64;
                        out.clear();
                    }
                }
                consumed += nl + 1;
            }
            window.drain(..consumed);
            win_start += consumed as u64;
            if pos >= data_len && !window.is_empty() {
                return Err(StoreError::CorruptIndex { path: data_path, detail: "the committed data does not end with a newline".into() });
            }
        }
        if !out.is_empty() {
            self.io.write_at(&tmp, &out, out_off, &tmp_path)?;
            out_off += out.len() as u64;
        }
        self.io.sync(&tmp, &tmp_path)?;
        Ok((out_off, lines, map.finish()?))
    }

    fn compact_locked(&mut self) -> Result<CompactOutcome> {
        match self.compact_once() {
            Err(StoreError::CorruptIndex { detail, .. }) => {
                // The index does not describe the data file: rebuild from the file, then compact.
                let _ = fs::remove_file(&self.compact_tmp);
                let _ = fs::remove_file(&self.compact_map);
                tracing::warn!(path = %self.path.display(), detail, "the index does not match the data file");
                self.rebuild("the index does not match the data file")?;
                self.compact_once()
            }
            r => r,
        }
    }

    fn compact_once(&mut self) -> Result<CompactOutcome> {
        let bytes_before = self.m.data_len;
        let (new_len, lines, mut map) = self.copy_compacted()?;
        let tmp_path = self.compact_tmp.clone();
        let tmp_ino = file_id(&fs::metadata(&tmp_path).map_err(|e| StoreError::io("inspecting", &tmp_path, e))?);
        if lines != self.m.records {
            return Err(StoreError::CorruptIndex {
                path: self.path.clone(),
                detail: format!("the data file has {lines} lines, the index {} ids", self.m.records),
            });
        }
        // Pass 2: the new snapshot, in id order, each slot moved to its new place.
        let generation = self.m.generation + 1;
        let epoch = new_epoch();
        let entries = self.index.merged().map(|e| {
            let (k, v, old) = e?;
            Ok((k, v, map.lookup(old)?))
        });
        let h = write_snapshot(&mut self.io, &self.idx_tmp, epoch, generation, entries)?;
        drop(map);
        let _ = fs::remove_file(&self.compact_map);
        if h.count != lines || h.max_end != new_len {
            return Err(StoreError::CorruptIndex { path: self.idx_path.clone(), detail: "the compacted index does not cover the compacted file".into() });
        }
        self.write_journal(&Journal::plain(generation, new_len, 0))?;
        let m = Manifest { generation, epoch, data_len: new_len, data_ino: tmp_ino, idx_len: h.frames_start(), waste: 0, records: self.m.records };
        self.commit_manifest(&m)?;
        // Committed: a crash from here on is finished by `sync` (it renames the temp files).
        self.m = m;
        self.install_snapshot()?;
        let data_path = self.path.clone();
        self.io.rename(&tmp_path, &data_path)?;
        let dir = self.dir.clone();
        self.io.sync_dir(&dir)?;
        self.reopen_data()?;
        tracing::info!(path = %self.path.display(), bytes_before, bytes_after = new_len, "compacted");
        Ok(CompactOutcome { bytes_before, bytes_after: new_len, records: self.m.records as usize })
    }

    /// Rebuilds the index by scanning the data file, repairing it into the canonical format.
    fn rebuild(&mut self, why: &str) -> Result<()> {
        // The file may have been deleted or replaced: work on whatever the path names now.
        self.reopen_data()?;
        let file_len = self.data.metadata().map_err(|e| StoreError::io("inspecting", &self.path, e))?.len();
        if file_len > 0 {
            tracing::warn!(path = %self.path.display(), reason = why, "rebuilding the index by scanning the data file");
        }
        let prev_gen = self.m.generation;
        self.index = Index::default(); // free it before building the new one
        self.m = Manifest::default();
        // Generation must move past anything a stale journal or old manifest may claim.
        let old_manifest_gen = self.read_manifest()?.map_or(0, |(m, _)| m.generation);
        let old_journal_gen = self.read_journal()?.map_or(0, |j| j.generation);
        let generation = prev_gen.max(old_manifest_gen).max(old_journal_gen) + 1;
        let scan = self.scan(file_len)?;
        let epoch = new_epoch();
        let h = write_snapshot(&mut self.io, &self.idx_tmp, epoch, generation, scan.index.merged())?;
        drop(scan.index);
        for p in &self.build_tmp {
            let _ = fs::remove_file(p);
        }
        let new_len = h.max_end;
        let path = self.path.clone();
        let mut cur_len = file_len;
        if scan.needs_newline && new_len == file_len + 1 {
            // The last line lacks its '\n': adding it changes no data, so do it before committing.
            self.io.write_at(&self.data, b"\n", file_len, &path)?;
            cur_len += 1;
        }
        let ops: Vec<Op> = scan.ops.into_iter().filter(|o| o.offset() < new_len).collect();
        let mut journal = Journal::plain(generation, new_len, 0);
        journal.ops = ops;
        // `append_len` here is the junk after the last live line that recovery may cut.
        journal.append_len = cur_len.saturating_sub(new_len);
        self.write_journal(&journal)?;
        self.io.sync(&self.data, &path)?;
        let m = Manifest {
            generation,
            epoch,
            data_len: new_len,
            data_ino: self.fd_id()?,
            idx_len: h.frames_start(),
            waste: new_len - scan.slot_bytes,
            records: h.count,
        };
        self.commit_manifest(&m)?;
        self.m = m;
        self.install_snapshot()?;
        if !journal.ops.is_empty() {
            self.apply_ops(&journal)?;
        }
        let cur = self.data.metadata().map_err(|e| StoreError::io("inspecting", &path, e))?.len();
        if cur > new_len {
            self.io.set_len(&self.data, new_len, &path)?;
        }
        self.io.sync(&self.data, &path)?;
        if !journal.ops.is_empty() {
            let jp = self.journal_path.clone();
            self.io.set_len(&self.journal, 0, &jp)?;
        }
        Ok(())
    }

    /// Scans the data file: builds the index (greatest version per id wins, later line on a tie)
    /// and lists the repairs that make the file canonical. The index's memtable is merged into
    /// a temporary snapshot whenever it fills up, so memory stays bounded.
    fn scan(&mut self, file_len: u64) -> Result<Scan> {
        self.count_read(file_len);
        let f = File::open(&self.path).map_err(|e| StoreError::io("reading", &self.path, e))?;
        let mut r = BufReader::with_capacity(CHUNK, std::io::Read::take(f, file_len));
        let mut line: Vec<u8> = Vec::new();
        let mut pos = 0u64;
        let mut line_no = 0u64;
        let mut index = Index::default();
        let mut slot_bytes = 0u64;
        let mut builds = 0usize;
        let mut ops = Vec::new();
        let mut needs_newline = false;
        let limit = self.options.index_memory_entries.max(1);
        loop {
            line.clear();
            let n = r.read_until(b'\n', &mut line).map_err(|e| StoreError::io("reading", &self.path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let has_nl = line.last() == Some(&b'\n');
            let body = if has_nl { &line[..line.len() - 1] } else { &line[..] };
            let lead = body.iter().position(|&c| !is_ws(c));
            match lead {
                None => {
                    // Whitespace-only line: merge it into the next one by blanking it, '\n' too.
                    if has_nl {
                        ops.push(Op::Blank(pos, body.len() as u64 + 1));
                    }
                }
                Some(lead) => {
                    let content = trim_end(&body[lead..]);
                    // Tabs or '\r' (CRLF files) around the JSON become spaces.
                    let tail = lead + content.len();
                    if body[..lead].iter().any(|&c| c != b' ') {
                        ops.push(Op::Blank(pos, lead as u64));
                    }
                    if body[tail..].iter().any(|&c| c != b' ') {
                        ops.push(Op::Blank(pos + tail as u64, (body.len() - tail) as u64));
                    }
                    let Some((id, version)) = (self.options.key_extractor)(content) else {
                        return Err(self.unparseable(line_no, "the key extractor found no id/version", content));
                    };
                    if id.len() > u16::MAX as usize {
                        return Err(self.unparseable(line_no, "its id is longer than 65535 bytes", content));
                    }
                    if !has_nl {
                        needs_newline = true;
                    }
                    let slot = Slot { offset: pos + lead as u64, len: (body.len() - lead) as u64 + 1 };
                    let key = Key::of(&id);
                    match index.get(key)? {
                        Some((old_v, old_slot)) => {
                            if version >= old_v {
                                push_blank(&mut ops, old_slot);
                                index.set(key, version, slot);
                                slot_bytes = slot_bytes - old_slot.len + slot.len;
                            } else {
                                push_blank(&mut ops, slot);
                            }
                        }
                        None => {
                            index.set(key, version, slot);
                            slot_bytes += slot.len;
                        }
                    }
                    if index.mem.len() >= limit {
                        let path = self.build_tmp[builds % 2].clone();
                        builds += 1;
                        // A private temporary file: no fsync, and not a crash-injection step.
                        let mut io = Io::new(false);
                        write_snapshot(&mut io, &path, 0, 0, index.merged())?;
                        let file = File::open(&path).map_err(|e| StoreError::io("reading", &path, e))?;
                        let len = file.metadata().map_err(|e| StoreError::io("inspecting", &path, e))?.len();
                        let run = Run::load(file, &path, len)?
                            .ok_or_else(|| StoreError::CorruptIndex { path: path.clone(), detail: "a temporary snapshot cannot be read back".into() })?;
                        index = Index::new(Some(run));
                    }
                }
            }
            pos += n as u64;
        }
        Ok(Scan { index, slot_bytes, ops, needs_newline })
    }

    fn unparseable(&self, line: u64, reason: &'static str, content: &[u8]) -> StoreError {
        let snippet = String::from_utf8_lossy(&content[..content.len().min(120)]).into_owned();
        StoreError::UnparseableLine { path: self.path.clone(), line, reason, snippet }
    }

    #[cfg(test)]
    pub(crate) fn side_dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
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

struct Scan {
    index: Index,
    /// Sum of the live slots' lengths.
    slot_bytes: u64,
    ops: Vec<Op>,
    needs_newline: bool,
}

/// Old → new slot of every line of a compaction, in file order: 32 bytes per line on disk
/// (`.compact.map`), one old offset per 128 lines in memory.
struct OffsetMapWriter {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    written: u64,
    lines: u64,
    fences: Vec<u64>,
}

const MAP_REC: usize = 32;
const MAP_BLOCK: usize = 128;

impl OffsetMapWriter {
    fn create(path: &Path) -> Result<Self> {
        let file = fio::create_truncate(path)?;
        Ok(OffsetMapWriter { path: path.to_path_buf(), file, buf: Vec::with_capacity(1 << 20), written: 0, lines: 0, fences: Vec::new() })
    }

    fn push(&mut self, old: Slot, new: Slot) -> Result<()> {
        if self.lines.is_multiple_of(MAP_BLOCK as u64) {
            self.fences.push(old.offset);
        }
        self.lines += 1;
        for x in [old.offset, old.len, new.offset, new.len] {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        // A private temporary file: no fsync, and not a crash-injection step.
        Io::new(false).write_at(&self.file, &self.buf, self.written, &self.path)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<OffsetMap> {
        self.flush()?;
        Ok(OffsetMap { path: self.path, file: self.file, lines: self.lines, fences: self.fences, cached: None })
    }
}

struct OffsetMap {
    path: PathBuf,
    file: File,
    lines: u64,
    fences: Vec<u64>,
    /// (block number, its records).
    cached: Option<(usize, Vec<u8>)>,
}

impl OffsetMap {
    /// The new slot of the line whose old slot is `old`; an error when no line has exactly
    /// that slot (the index does not describe the data file).
    fn lookup(&mut self, old: Slot) -> Result<Slot> {
        let mismatch = || StoreError::CorruptIndex {
            path: self.path.clone(),
            detail: format!("no line of the data file has the indexed slot {}+{}", old.offset, old.len),
        };
        let block = self.fences.partition_point(|&o| o <= old.offset);
        if block == 0 {
            return Err(mismatch());
        }
        let block = block - 1;
        if self.cached.as_ref().is_none_or(|(b, _)| *b != block) {
            let first = (block * MAP_BLOCK) as u64;
            let n = (self.lines - first).min(MAP_BLOCK as u64);
            let b = fio::read_range(&self.file, first * MAP_REC as u64, n * MAP_REC as u64, &self.path)?;
            self.cached = Some((block, b));
        }
        let Some((_, recs)) = &self.cached else { return Err(mismatch()) };
        let at = |i: usize, f: usize| {
            let p = i * MAP_REC + f * 8;
            u64::from_le_bytes(recs[p..p + 8].try_into().unwrap_or([0; 8]))
        };
        let n = recs.len() / MAP_REC;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at(mid, 0) < old.offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < n && at(lo, 0) == old.offset && at(lo, 1) == old.len {
            Ok(Slot { offset: at(lo, 2), len: at(lo, 3) })
        } else {
            Err(mismatch())
        }
    }
}
