//! Byte layouts of the sidecar files (manifest, journal, index log). All integers little-endian,
//! every structure protected by a CRC-32 so a torn or foreign file is detected, never trusted.

use crate::Version;

pub(crate) const MANIFEST_MAGIC: &[u8; 8] = b"QBOJMAN1";
pub(crate) const JOURNAL_MAGIC: &[u8; 8] = b"QBOJJRN1";

fn crc(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// The commit record. Replacing this file (tmp + fsync + rename + fsync dir) is the single
/// instant at which a batch becomes committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Manifest {
    /// Bumped by every commit.
    pub generation: u64,
    /// Identifies the current index log incarnation (changes when it is rewritten).
    pub epoch: u64,
    /// Committed length of the data file; bytes beyond are uncommitted.
    pub data_len: u64,
    /// Inode (unix) of the data file, 0 when unknown; detects replacement by another tool.
    pub data_ino: u64,
    /// Committed length of the index log.
    pub idx_len: u64,
    /// Bytes of the data file outside every live slot.
    pub waste: u64,
    /// Number of distinct ids.
    pub records: u64,
}

pub(crate) const MANIFEST_LEN: usize = 8 + 7 * 8 + 4;

/// The manifest file holds this many manifests, written in turn (see `commit_manifest`).
pub(crate) const MANIFEST_SLOTS: usize = 2;

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MANIFEST_LEN);
        b.extend_from_slice(MANIFEST_MAGIC);
        for x in [self.generation, self.epoch, self.data_len, self.data_ino, self.idx_len, self.waste, self.records] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        let c = crc(&b);
        b.extend_from_slice(&c.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != MANIFEST_LEN || &b[..8] != MANIFEST_MAGIC {
            return None;
        }
        let (body, c) = b.split_at(MANIFEST_LEN - 4);
        if crc(body) != u32::from_le_bytes(c.try_into().ok()?) {
            return None;
        }
        let mut r = Reader::new(&body[8..]);
        Some(Manifest { generation: r.u64()?, epoch: r.u64()?, data_len: r.u64()?, data_ino: r.u64()?, idx_len: r.u64()?, waste: r.u64()?, records: r.u64()? })
    }
}

/// One change to bytes already in the data file, applied only after the commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Write `len` bytes, found at `start` in the journal's `bytes`, at `offset`.
    Write { offset: u64, start: usize, len: usize },
    /// Overwrite this many bytes at this offset with spaces.
    Blank(u64, u64),
}

impl Op {
    pub fn offset(&self) -> u64 {
        match self {
            Op::Write { offset, .. } | Op::Blank(offset, _) => *offset,
        }
    }
    pub fn len(&self) -> u64 {
        match self {
            Op::Write { len, .. } => *len as u64,
            Op::Blank(_, n) => *n,
        }
    }
}

/// The redo journal of one batch, written (and fsynced) before the batch touches the data file.
/// It records the intended append (so a tail beyond the committed length is known to be ours)
/// and every in-place change (so a crash after the commit point is finished on recovery).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Journal {
    /// The generation this batch will commit as.
    pub generation: u64,
    /// Committed data length before the batch: appends start here.
    pub base_len: u64,
    /// Bytes the batch appends.
    pub append_len: u64,
    pub ops: Vec<Op>,
    /// The bytes of every `Op::Write`, one buffer for the whole batch.
    pub bytes: Vec<u8>,
}

impl Journal {
    /// A journal with no in-place change.
    pub fn plain(generation: u64, base_len: u64, append_len: u64) -> Self {
        Journal { generation, base_len, append_len, ..Journal::default() }
    }

    /// Queues writing `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        self.ops.push(Op::Write { offset, start: self.bytes.len(), len: data.len() });
        self.bytes.extend_from_slice(data);
    }

    /// Queues rewriting a whole slot of `slot_len` bytes at `offset`: `line`, spaces, '\n'.
    pub fn write_slot(&mut self, offset: u64, line: &[u8], slot_len: usize) {
        debug_assert!(line.len() < slot_len);
        let start = self.bytes.len();
        self.bytes.extend_from_slice(line);
        self.bytes.resize(start + slot_len - 1, b' ');
        self.bytes.push(b'\n');
        self.ops.push(Op::Write { offset, start, len: slot_len });
    }

    /// The bytes an `Op::Write` carries.
    pub fn data(&self, op: &Op) -> &[u8] {
        match *op {
            Op::Write { start, len, .. } => &self.bytes[start..start + len],
            Op::Blank(..) => &[],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 8 + 36 + 13 * self.ops.len() + self.bytes.len() + 4);
        b.extend_from_slice(JOURNAL_MAGIC);
        b.extend_from_slice(&0u64.to_le_bytes()); // total length, patched below
        for x in [self.generation, self.base_len, self.append_len] {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.extend_from_slice(&(self.ops.len() as u64).to_le_bytes());
        for op in &self.ops {
            match *op {
                Op::Write { offset, len, .. } => {
                    b.push(0);
                    b.extend_from_slice(&offset.to_le_bytes());
                    b.extend_from_slice(&(len as u32).to_le_bytes());
                    b.extend_from_slice(self.data(op));
                }
                Op::Blank(o, n) => {
                    b.push(1);
                    b.extend_from_slice(&o.to_le_bytes());
                    b.extend_from_slice(&(n as u32).to_le_bytes());
                }
            }
        }
        let total = (b.len() + 4) as u64;
        b[8..16].copy_from_slice(&total.to_le_bytes());
        let c = crc(&b);
        b.extend_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes a journal; trailing bytes (from an older, longer journal) are ignored.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 16 || &b[..8] != JOURNAL_MAGIC {
            return None;
        }
        let total = usize::try_from(u64::from_le_bytes(b[8..16].try_into().ok()?)).ok()?;
        if total < 20 || total > b.len() {
            return None;
        }
        let (body, c) = b[..total].split_at(total - 4);
        if crc(body) != u32::from_le_bytes(c.try_into().ok()?) {
            return None;
        }
        let mut r = Reader::new(&body[16..]);
        let mut j = Journal::plain(r.u64()?, r.u64()?, r.u64()?);
        let n = r.u64()?;
        j.ops.reserve(n.min(1 << 20) as usize);
        for _ in 0..n {
            let kind = r.take(1)?[0];
            let off = r.u64()?;
            let len = r.u32()?;
            match kind {
                0 => j.write(off, r.take(len as usize)?),
                1 => j.ops.push(Op::Blank(off, u64::from(len))),
                _ => return None,
            }
        }
        Some(j)
    }
}

/// Largest single op stored in the journal; bigger blanks are split.
pub(crate) const MAX_OP: u64 = u32::MAX as u64;

/// One index-log entry: the state of one id after a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdxEntry<'a> {
    pub id: &'a str,
    pub version: Version,
    pub offset: u64,
    pub len: u64,
}

/// Builds one index-log frame (all entries of one commit):
/// `[payload_len u32][crc u32][generation u64][count u32][entries...]`, crc over generation..end,
/// each entry `[id_len u16][id][offset u64][slot_len u64][updated_at_ms i64][sync_token u64]`.
pub(crate) struct FrameBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl FrameBuilder {
    pub fn new(generation: u64) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&[0u8; 8]);
        buf.extend_from_slice(&generation.to_le_bytes());
        buf.extend_from_slice(&[0u8; 4]);
        FrameBuilder { buf, count: 0 }
    }

    pub fn push(&mut self, e: &IdxEntry<'_>) {
        debug_assert!(e.id.len() <= u16::MAX as usize);
        self.buf.extend_from_slice(&(e.id.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(e.id.as_bytes());
        self.buf.extend_from_slice(&e.offset.to_le_bytes());
        self.buf.extend_from_slice(&e.len.to_le_bytes());
        self.buf.extend_from_slice(&e.version.updated_at_ms.to_le_bytes());
        self.buf.extend_from_slice(&e.version.sync_token.to_le_bytes());
        self.count += 1;
    }

    pub fn finish(mut self) -> Vec<u8> {
        let payload_len = (self.buf.len() - 8) as u32;
        self.buf[16..20].copy_from_slice(&self.count.to_le_bytes());
        let c = crc(&self.buf[8..]);
        self.buf[0..4].copy_from_slice(&payload_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&c.to_le_bytes());
        self.buf
    }
}

/// Parses the whole frames at the start of `b`, calling `f` for each entry with the frame's
/// generation, and stops at the first incomplete frame. Every frame's generation must exceed
/// `after`, and not decrease (a snapshot is several frames of one generation).
/// Returns (bytes consumed, last generation seen or `after`), or None when a frame is corrupt or
/// out of order (the caller then reloads or rebuilds).
pub(crate) fn parse_frames_prefix(b: &[u8], after: u64, mut last_gen: u64, mut f: impl FnMut(IdxEntry<'_>)) -> Option<(usize, u64)> {
    let mut consumed = 0;
    loop {
        let rest = &b[consumed..];
        if rest.len() < 8 {
            return Some((consumed, last_gen));
        }
        let payload_len = u32::from_le_bytes(rest[0..4].try_into().ok()?) as usize;
        if rest.len() < 8 + payload_len {
            return Some((consumed, last_gen));
        }
        let c = u32::from_le_bytes(rest[4..8].try_into().ok()?);
        let payload = &rest[8..8 + payload_len];
        if crc(payload) != c {
            return None;
        }
        let mut p = Reader::new(payload);
        let generation = p.u64()?;
        if generation <= after || generation < last_gen {
            return None;
        }
        let count = p.u32()?;
        for _ in 0..count {
            let id_len = p.u16()? as usize;
            let id = std::str::from_utf8(p.take(id_len)?).ok()?;
            let offset = p.u64()?;
            let len = p.u64()?;
            let ms = p.i64()?;
            let token = p.u64()?;
            f(IdxEntry { id, version: Version { updated_at_ms: ms, sync_token: token }, offset, len });
        }
        if p.pos != payload.len() {
            return None;
        }
        last_gen = generation;
        consumed += 8 + payload_len;
    }
}

/// Length of the frame starting `b` (header included), if its header is there.
pub(crate) fn frame_len(b: &[u8]) -> Option<usize> {
    Some(8 + u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip_and_corruption() {
        let m = Manifest { generation: 7, epoch: 9, data_len: 100, data_ino: 5, idx_len: 40, waste: 3, records: 2 };
        let b = m.encode();
        assert_eq!(Manifest::decode(&b), Some(m));
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert_eq!(Manifest::decode(&bad), None);
        assert_eq!(Manifest::decode(&b[..b.len() - 1]), None);
    }

    #[test]
    fn journal_roundtrip_ignores_trailing_bytes() {
        let mut j = Journal::plain(3, 10, 20);
        j.write(4, b"abc");
        j.ops.push(Op::Blank(9, 5));
        j.write(20, b"de");
        assert_eq!(j.data(&j.ops[2]), b"de");
        let mut b = j.encode();
        assert_eq!(Journal::decode(&b), Some(j.clone()));
        b.extend_from_slice(b"garbage from an older journal");
        assert_eq!(Journal::decode(&b), Some(j));
        let n = b.len();
        b[n - 40] ^= 0xff;
        assert_eq!(Journal::decode(&b), None);
    }

    #[test]
    fn frames_roundtrip_and_reject_torn() {
        let mut f = FrameBuilder::new(5);
        let v = Version { updated_at_ms: -3, sync_token: 4 };
        f.push(&IdxEntry { id: "12", version: v, offset: 1, len: 2 });
        f.push(&IdxEntry { id: "ab", version: v, offset: 3, len: 4 });
        let mut b = f.finish();
        let mut f2 = FrameBuilder::new(6);
        f2.push(&IdxEntry { id: "12", version: v, offset: 9, len: 2 });
        b.extend_from_slice(&f2.finish());
        let mut seen = vec![];
        assert_eq!(parse_frames_prefix(&b, 0, 0, |e| seen.push((e.id.to_string(), e.offset))), Some((b.len(), 6)));
        assert_eq!(seen, vec![("12".into(), 1), ("ab".into(), 3), ("12".into(), 9)]);
        let first = frame_len(&b).unwrap();
        assert_eq!(parse_frames_prefix(&b[..b.len() - 1], 0, 0, |_| {}), Some((first, 5)), "stops at a torn frame");
        assert_eq!(parse_frames_prefix(&b, 5, 0, |_| {}), None, "generations must exceed the start");
        let mut corrupt = b.clone();
        corrupt[first + 20] ^= 1;
        assert_eq!(parse_frames_prefix(&corrupt, 0, 0, |_| {}), None);
    }
}
