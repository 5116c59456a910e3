//! The sorted, on-disk part of the index: the *snapshot* at the start of the index log.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header   [magic "QBOJIDX2"][epoch u64][generation u64][count u64][blocks_len u64]
//!          [fence_len u64][max_end u64][crc u32 of the 56 bytes before]          = 60 bytes
//! blocks   [payload_len u32][crc u32][count u32][entries…]  (≈ 4 KiB each, keys ascending)
//! fences   [payload_len u32][crc u32][blocks u64]([offset u64][len u32][key])*  (one per block)
//! frames   the commits appended after the snapshot (see `format::FrameBuilder`)
//! ```
//!
//! An entry is `[key][updated_at_ms i64][sync_token u64][offset u64][slot_len u64]`, a key is
//! `[0][u64]` for a canonical numeric id or `[1][len u16][bytes]` for any other; numeric keys
//! sort before string keys, numbers by value, strings by bytes.
//!
//! A reader keeps only the header and the fences (one key per block, ≈ 0.4 byte per record)
//! in memory, and reads one block (one `pread`, CRC-checked) per lookup, with a one-block cache.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::StoreError;
use crate::index::{Key, OwnedKey, Slot};
use crate::io::{self as fio, Io};
use crate::Version;

type Result<T> = std::result::Result<T, StoreError>;

pub(crate) const RUN_MAGIC: &[u8; 8] = b"QBOJIDX2";
pub(crate) const HEADER_LEN: u64 = 60;
/// A block is closed once its payload reaches this size.
const BLOCK_TARGET: usize = 4096 - 8;
/// Output buffer of the writer.
const WRITE_CHUNK: usize = 1 << 20;

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The fixed header of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RunHeader {
    pub epoch: u64,
    /// The commit the snapshot was written by; frames after it have greater generations.
    pub generation: u64,
    /// Entries (distinct ids) in the snapshot.
    pub count: u64,
    pub blocks_len: u64,
    pub fence_len: u64,
    /// Greatest slot end of any entry (the data length when it was written).
    pub max_end: u64,
}

impl RunHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[..8].copy_from_slice(RUN_MAGIC);
        for (i, x) in [self.epoch, self.generation, self.count, self.blocks_len, self.fence_len, self.max_end].into_iter().enumerate() {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&x.to_le_bytes());
        }
        let c = crc(&b[..56]);
        b[56..60].copy_from_slice(&c.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_LEN as usize || &b[..8] != RUN_MAGIC || crc(&b[..56]) != u32_at(b, 56)? {
            return None;
        }
        Some(RunHeader {
            epoch: u64_at(b, 8)?,
            generation: u64_at(b, 16)?,
            count: u64_at(b, 24)?,
            blocks_len: u64_at(b, 32)?,
            fence_len: u64_at(b, 40)?,
            max_end: u64_at(b, 48)?,
        })
    }

    /// Where the frames appended after the snapshot begin.
    pub fn frames_start(&self) -> u64 {
        HEADER_LEN + self.blocks_len + self.fence_len
    }
}

fn push_key(out: &mut Vec<u8>, k: Key<'_>) {
    match k {
        Key::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Key::Str(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Decodes a key at `b[*pos..]`, advancing `pos`.
fn take_key<'a>(b: &'a [u8], pos: &mut usize) -> Option<Key<'a>> {
    let tag = *b.get(*pos)?;
    *pos += 1;
    match tag {
        0 => {
            let n = u64_at(b, *pos)?;
            *pos += 8;
            Some(Key::Num(n))
        }
        1 => {
            let len = u16::from_le_bytes(b.get(*pos..*pos + 2)?.try_into().ok()?) as usize;
            *pos += 2;
            let s = std::str::from_utf8(b.get(*pos..*pos + len)?).ok()?;
            *pos += len;
            Some(Key::Str(s))
        }
        _ => None,
    }
}

/// Decodes one entry at `b[*pos..]`.
fn take_entry<'a>(b: &'a [u8], pos: &mut usize) -> Option<(Key<'a>, Version, Slot)> {
    let k = take_key(b, pos)?;
    let p = *pos;
    let ms = u64_at(b, p)? as i64;
    let token = u64_at(b, p + 8)?;
    let offset = u64_at(b, p + 16)?;
    let len = u64_at(b, p + 24)?;
    *pos = p + 32;
    Some((k, Version { updated_at_ms: ms, sync_token: token }, Slot { offset, len }))
}

/// Checks a block's framing and CRC; returns its payload (`count` + entries).
fn block_payload(b: &[u8]) -> Option<&[u8]> {
    let len = u32_at(b, 0)? as usize;
    let payload = b.get(8..8 + len)?;
    (b.len() == 8 + len && crc(payload) == u32_at(b, 4)?).then_some(payload)
}

/// Streams entries, in strictly ascending key order, into a new snapshot file.
pub(crate) struct RunWriter<'a> {
    io: &'a mut Io,
    path: PathBuf,
    file: File,
    header: RunHeader,
    out: Vec<u8>,
    /// File offset of `out[0]`.
    out_off: u64,
    block: Vec<u8>,
    block_count: u32,
    fences: Vec<u8>,
    fence_count: u64,
    /// Where the current block's fence starts in `fences`.
    last_fence_pos: usize,
    last: Option<OwnedKey>,
}

impl<'a> RunWriter<'a> {
    pub fn create(io: &'a mut Io, path: &Path, epoch: u64, generation: u64) -> Result<Self> {
        let file = fio::create_truncate(path)?;
        Ok(RunWriter {
            io,
            path: path.to_path_buf(),
            file,
            header: RunHeader { epoch, generation, ..RunHeader::default() },
            out: Vec::with_capacity(WRITE_CHUNK + 8192),
            out_off: HEADER_LEN,
            block: Vec::with_capacity(BLOCK_TARGET + 1024),
            block_count: 0,
            fences: vec![0u8; 16],
            fence_count: 0,
            last_fence_pos: 0,
            last: None,
        })
    }

    pub fn push(&mut self, key: Key<'_>, version: Version, slot: Slot) -> Result<()> {
        if self.last.as_ref().is_some_and(|l| l.as_key() >= key) {
            return Err(StoreError::CorruptIndex { path: self.path.clone(), detail: "snapshot entries are not in ascending id order".into() });
        }
        if self.block.is_empty() {
            self.block.extend_from_slice(&[0u8; 12]);
            self.last_fence_pos = self.fences.len();
            // Fence: the block's first key (offset and length are filled in at `close_block`).
            self.fences.extend_from_slice(&[0u8; 12]);
            push_key(&mut self.fences, key);
            self.fence_count += 1;
        }
        push_key(&mut self.block, key);
        for x in [version.updated_at_ms as u64, version.sync_token, slot.offset, slot.len] {
            self.block.extend_from_slice(&x.to_le_bytes());
        }
        self.block_count += 1;
        self.header.count += 1;
        self.header.max_end = self.header.max_end.max(slot.end());
        self.last = Some(key.to_owned_key());
        if self.block.len() >= BLOCK_TARGET {
            self.close_block()?;
        }
        Ok(())
    }

    fn close_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let payload_len = (self.block.len() - 8) as u32;
        self.block[8..12].copy_from_slice(&self.block_count.to_le_bytes());
        let c = crc(&self.block[8..]);
        self.block[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.block[4..8].copy_from_slice(&c.to_le_bytes());
        let off = self.out_off + self.out.len() as u64;
        let at = self.last_fence_pos;
        self.fences[at..at + 8].copy_from_slice(&off.to_le_bytes());
        self.fences[at + 8..at + 12].copy_from_slice(&(self.block.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&self.block);
        self.header.blocks_len += self.block.len() as u64;
        self.block.clear();
        self.block_count = 0;
        if self.out.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.io.write_at(&self.file, &self.out, self.out_off, &self.path)?;
            self.out_off += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    /// Writes the fences and the header and syncs. Returns the header.
    pub fn finish(mut self) -> Result<RunHeader> {
        self.close_block()?;
        let payload_len = (self.fences.len() - 8) as u32;
        self.fences[8..16].copy_from_slice(&self.fence_count.to_le_bytes());
        let c = crc(&self.fences[8..]);
        self.fences[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.fences[4..8].copy_from_slice(&c.to_le_bytes());
        self.header.fence_len = self.fences.len() as u64;
        let fences = std::mem::take(&mut self.fences);
        self.out.extend_from_slice(&fences);
        self.flush()?;
        let h = self.header.encode();
        self.io.write_at(&self.file, &h, 0, &self.path)?;
        self.io.sync(&self.file, &self.path)?;
        Ok(self.header)
    }
}

/// One block's first key and where the block is.
struct Fence {
    key: OwnedKey,
    off: u64,
    len: u32,
}

/// A snapshot opened for lookups and ordered iteration.
pub(crate) struct Run {
    file: File,
    path: PathBuf,
    pub header: RunHeader,
    fences: Vec<Fence>,
    /// The last block read (index, payload).
    cache: Mutex<Option<(usize, Vec<u8>)>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run").field("path", &self.path).field("header", &self.header).finish()
    }
}

impl Run {
    /// Opens the snapshot at the start of `file` (whose committed length is `len`). None when
    /// the header or the fences are torn, corrupt, or do not fit in `len`.
    pub fn load(file: File, path: &Path, len: u64) -> Result<Option<Run>> {
        if len < HEADER_LEN {
            return Ok(None);
        }
        let h = fio::read_range(&file, 0, HEADER_LEN, path)?;
        let Some(header) = RunHeader::decode(&h) else { return Ok(None) };
        let end = HEADER_LEN.checked_add(header.blocks_len).and_then(|x| x.checked_add(header.fence_len));
        if end.is_none_or(|e| e > len) || header.fence_len < 16 {
            return Ok(None);
        }
        let fb = fio::read_range(&file, HEADER_LEN + header.blocks_len, header.fence_len, path)?;
        let Some(fences) = parse_fences(&fb, &header) else { return Ok(None) };
        Ok(Some(Run { file, path: path.to_path_buf(), header, fences, cache: Mutex::new(None) }))
    }

    /// Reads every block, checking CRCs, counts and key order (streaming: one block in memory).
    pub fn verify(&self) -> Result<bool> {
        let mut count = 0u64;
        let mut last: Option<OwnedKey> = None;
        for i in 0..self.fences.len() {
            let Some(b) = self.read_block_checked(i)? else { return Ok(false) };
            let mut ok = true;
            let n = for_each_entry(&b, |k, _, s| {
                ok &= last.as_ref().is_none_or(|l| l.as_key() < k) && s.len > 0 && s.end() <= self.header.max_end;
                last = Some(k.to_owned_key());
            });
            match n {
                Some(n) if ok => count += n,
                _ => return Ok(false),
            }
        }
        Ok(count == self.header.count)
    }

    fn read_block_checked(&self, i: usize) -> Result<Option<Vec<u8>>> {
        let f = &self.fences[i];
        let b = fio::read_range(&self.file, f.off, u64::from(f.len), &self.path)?;
        Ok(block_payload(&b).map(<[u8]>::to_vec))
    }

    fn read_block(&self, i: usize) -> Result<Vec<u8>> {
        self.read_block_checked(i)?
            .ok_or_else(|| StoreError::CorruptIndex { path: self.path.clone(), detail: format!("block {i} of the index snapshot fails its checksum") })
    }

    /// The entry of `key`, reading at most one block.
    pub fn get(&self, key: Key<'_>) -> Result<Option<(Version, Slot)>> {
        let i = self.fences.partition_point(|f| f.key.as_key() <= key);
        if i == 0 {
            return Ok(None);
        }
        let block = i - 1;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().is_none_or(|(n, _)| *n != block) {
            *cache = Some((block, self.read_block(block)?));
        }
        let Some((_, payload)) = cache.as_ref() else { return Ok(None) };
        let mut found = None;
        let ok = for_each_entry_until(payload, |k, v, s| match k.cmp(&key) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => {
                found = Some((v, s));
                false
            }
            std::cmp::Ordering::Greater => false,
        });
        if !ok {
            return Err(StoreError::CorruptIndex { path: self.path.clone(), detail: format!("block {block} of the index snapshot cannot be decoded") });
        }
        Ok(found)
    }

    /// Every entry in key order, one block at a time.
    pub fn iter(&self) -> RunIter<'_> {
        RunIter { run: self, next_block: 0, buf: Vec::new(), pos: 0 }
    }

    /// Heap bytes held (fences and the cached block).
    pub fn heap_bytes(&self) -> usize {
        let fences: usize = self
            .fences
            .iter()
            .map(|f| {
                std::mem::size_of::<Fence>()
                    + match &f.key {
                        OwnedKey::Str(s) => s.len(),
                        OwnedKey::Num(_) => 0,
                    }
            })
            .sum();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map_or(0, |(_, b)| b.capacity());
        fences + cache
    }
}

fn parse_fences(b: &[u8], h: &RunHeader) -> Option<Vec<Fence>> {
    let len = u32_at(b, 0)? as usize;
    if b.len() != 8 + len || crc(&b[8..]) != u32_at(b, 4)? {
        return None;
    }
    let n = u64_at(b, 8)?;
    let mut fences = Vec::with_capacity(usize::try_from(n).ok()?.min(1 << 24));
    let mut pos = 16;
    let mut expect_off = HEADER_LEN;
    for _ in 0..n {
        let off = u64_at(b, pos)?;
        let blen = u32_at(b, pos + 8)?;
        pos += 12;
        let key = take_key(b, &mut pos)?.to_owned_key();
        if off != expect_off || blen < 12 || fences.last().is_some_and(|f: &Fence| f.key >= key) {
            return None;
        }
        expect_off += u64::from(blen);
        fences.push(Fence { key, off, len: blen });
    }
    (pos == b.len() && expect_off == HEADER_LEN + h.blocks_len).then_some(fences)
}

/// Calls `f` for every entry of a block payload; returns the count, None if malformed.
fn for_each_entry(payload: &[u8], mut f: impl FnMut(Key<'_>, Version, Slot)) -> Option<u64> {
    let n = u32_at(payload, 0)?;
    let mut pos = 4;
    for _ in 0..n {
        let (k, v, s) = take_entry(payload, &mut pos)?;
        f(k, v, s);
    }
    (pos == payload.len()).then_some(u64::from(n))
}

/// Like `for_each_entry` but stops when `f` returns false. False if malformed.
fn for_each_entry_until(payload: &[u8], mut f: impl FnMut(Key<'_>, Version, Slot) -> bool) -> bool {
    let Some(n) = u32_at(payload, 0) else { return false };
    let mut pos = 4;
    for _ in 0..n {
        let Some((k, v, s)) = take_entry(payload, &mut pos) else { return false };
        if !f(k, v, s) {
            return true;
        }
    }
    pos == payload.len()
}

/// Iterates a snapshot's entries in key order.
pub(crate) struct RunIter<'a> {
    run: &'a Run,
    next_block: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl RunIter<'_> {
    fn corrupt(&self, what: &str) -> StoreError {
        StoreError::CorruptIndex { path: self.run.path.clone(), detail: format!("block {} {what}", self.next_block - 1) }
    }
}

impl Iterator for RunIter<'_> {
    type Item = Result<(OwnedKey, Version, Slot)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.pos > 0 && self.pos < self.buf.len() {
                let mut p = self.pos;
                let Some((k, v, s)) = take_entry(&self.buf, &mut p) else {
                    return Some(Err(self.corrupt("cannot be decoded")));
                };
                let item = (k.to_owned_key(), v, s);
                self.pos = p;
                return Some(Ok(item));
            }
            if self.next_block >= self.run.fences.len() {
                return None;
            }
            self.next_block += 1;
            match self.run.read_block(self.next_block - 1) {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 4;
                }
                Err(e) => {
                    self.next_block = self.run.fences.len();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Reads a snapshot header from the start of `b` (used for the temporary snapshot file).
pub(crate) fn decode_epoch(b: &[u8]) -> Option<u64> {
    RunHeader::decode(b).map(|h| h.epoch)
}
