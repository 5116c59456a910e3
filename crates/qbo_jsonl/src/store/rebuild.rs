//! Rebuilding the index by scanning the data file, repairing it into the canonical format.

use super::*;

impl JsonlStore {
    /// Rebuilds the index by scanning the data file, repairing it into the canonical format.
    pub(super) fn rebuild(&mut self, why: &str) -> Result<()> {
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

    pub(super) fn unparseable(&self, line: u64, reason: &'static str, content: &[u8]) -> StoreError {
        let snippet = String::from_utf8_lossy(&content[..content.len().min(120)]).into_owned();
        StoreError::UnparseableLine { path: self.path.clone(), line, reason, snippet }
    }

    #[cfg(test)]
    pub(crate) fn side_dir(&self) -> &Path {
        self.manifest_path.parent().unwrap_or(Path::new("."))
    }
}

struct Scan {
    index: Index,
    /// Sum of the live slots' lengths.
    slot_bytes: u64,
    ops: Vec<Op>,
    needs_newline: bool,
}
