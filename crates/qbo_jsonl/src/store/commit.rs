//! One batch committed: validated lines appended, old slots blanked, the journal, the index
//! frame and the manifest written in the order that makes a crash leave all of it or none.

use super::*;

impl JsonlStore {
    pub(super) fn write_journal(&mut self, j: &Journal) -> Result<()> {
        let b = j.encode();
        let p = self.journal_path.clone();
        self.io.write_at(&self.journal, &b, 0, &p)?;
        self.io.sync(&self.journal, &p)
    }

    /// The commit point: writes `m` over the slot that does *not* hold the newest manifest and
    /// syncs it. Until that write is complete the other slot still names the state before; a
    /// torn slot fails its checksum and is ignored. Same size, same file: no rename, no
    /// directory sync (except when the file is first created).
    pub(super) fn commit_manifest(&mut self, m: &Manifest) -> Result<()> {
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
    pub(super) fn upsert_locked(&mut self, batch: &[RecordRef<'_>], ends: &[usize]) -> Result<Vec<UpsertOutcome>> {
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
    pub(super) fn commit_batch(&mut self, journal: &Journal, append: &[&[u8]], frame: &[u8], waste: u64, new_records: u64) -> Result<()> {
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
}
