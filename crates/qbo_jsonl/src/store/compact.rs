//! Keeping the files lean: compaction of a data file grown wasteful (with the old-to-new
//! offset map that survives a crash mid-way) and rewrites of the index log as a snapshot.

use super::*;

impl JsonlStore {
    /// After an upsert: compact or rewrite the index log when they have grown wasteful.
    /// Returns whether it compacted.
    pub(super) fn maintain(&mut self) -> Result<bool> {
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
    pub(super) fn install_snapshot(&mut self) -> Result<()> {
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
    pub(super) fn finish_snapshot(&mut self, m: &Manifest) -> Result<()> {
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
    pub(super) fn rewrite_index_log(&mut self) -> Result<()> {
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

    pub(super) fn compact_locked(&mut self) -> Result<CompactOutcome> {
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

    pub(super) fn compact_once(&mut self) -> Result<CompactOutcome> {
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
