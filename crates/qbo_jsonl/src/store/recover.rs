//! Opening the store's files and catching up: the manifest and journal read back, other
//! writers' commits loaded, an interrupted batch finished (redo journal).

use super::*;

impl JsonlStore {
    /// The newest valid manifest and the slot it is in. The file holds two slots, written in
    /// turn, so a torn write leaves the other one; a file of one slot (the format before
    /// slots) reads as slot 0.
    pub(super) fn read_manifest(&self) -> Result<Option<(Manifest, usize)>> {
        let Some(b) = fio::read_optional(&self.manifest_path)? else { return Ok(None) };
        Ok(b.chunks_exact(MANIFEST_LEN)
            .take(MANIFEST_SLOTS)
            .enumerate()
            .filter_map(|(slot, c)| Manifest::decode(c).map(|m| (m, slot)))
            .max_by_key(|(m, _)| m.generation))
    }

    pub(super) fn read_journal(&self) -> Result<Option<Journal>> {
        let len = self.journal.metadata().map_err(|e| StoreError::io("inspecting", &self.journal_path, e))?.len();
        if len == 0 {
            return Ok(None);
        }
        let b = fio::read_range(&self.journal, 0, len, &self.journal_path)?;
        Ok(Journal::decode(&b))
    }

    #[inline]
    pub(super) fn count_read(&mut self, _n: u64) {
        #[cfg(test)]
        {
            self.data_bytes_read += _n;
        }
    }

    pub(super) fn reopen_data(&mut self) -> Result<()> {
        self.data = fio::open_rw(&self.path, true)?;
        Ok(())
    }

    pub(super) fn fd_id(&self) -> Result<u64> {
        Ok(file_id(&self.data.metadata().map_err(|e| StoreError::io("inspecting", &self.path, e))?))
    }

    /// Brings the in-memory index to the committed state and repairs crash leftovers.
    /// Must be called under the lock.
    pub(super) fn sync(&mut self) -> Result<()> {
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
    pub(super) fn catch_up(&mut self, m: &Manifest) -> Result<bool> {
        let last = self.load_frames(self.m.idx_len, m, self.m.generation)?;
        Ok(last == Some(m.generation))
    }

    /// Applies the index-log frames in `[from, m.idx_len)` to the index, reading in chunks so
    /// memory stays bounded by the largest frame. None if a frame is torn, corrupt, out of
    /// order, or points outside the committed data.
    pub(super) fn load_frames(&mut self, from: u64, m: &Manifest, after: u64) -> Result<Option<u64>> {
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
    pub(super) fn full_load(&mut self, m: &Manifest) -> Result<bool> {
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
    pub(super) fn apply_ops(&mut self, journal: &Journal) -> Result<()> {
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
}
