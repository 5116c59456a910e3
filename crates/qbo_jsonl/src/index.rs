//! The id → (version, slot) index: a sorted snapshot on disk ([`Run`]) plus the entries
//! committed since, in memory ([`MemTable`], bounded: the store merges it into a new snapshot
//! when it reaches `StoreOptions::index_memory_entries`).
//!
//! The memtable holds entries in a chunked arena (32 bytes each, no doubling waste); numeric
//! ids ("123", the QuickBooks case) are found through an open-addressing table of `u32` entry
//! numbers keyed by the parsed `u64`, and only non-canonical ids ("A-12", "0123") go to a
//! fallback `HashMap<Box<str>, u32>`. Entries are never deleted, so the table needs no
//! tombstones.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::run::{Run, RunIter};
use crate::Version;

const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS; // 16384 entries = 512 KiB per chunk
const EMPTY: u32 = u32::MAX;
const OFFSET_BITS: u32 = 40;
const SLOT_BITS: u32 = 64 - OFFSET_BITS;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Marks a location kept in `big_locs` (offset ≥ 1 TiB or slot ≥ 16 MiB - 1).
const BIG: u64 = SLOT_MASK;

/// Where a record's line lives in the data file: `offset` is the first byte of its JSON, and
/// the slot runs to and including the line's '\n' (`len` bytes). Bytes between the JSON and the
/// '\n' are spaces (room for an in-place update).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub offset: u64,
    pub len: u64,
}

impl Slot {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: u64,
    ms: i64,
    token: u64,
    loc: u64,
}

/// Parses the canonical decimal form of a u64 ("0", "123"; not "0123", "+1", " 1"), the one
/// form that maps back to exactly one id string. The index keys such ids (QuickBooks' ids) by
/// their value; callers that keep ids in memory can do the same.
pub fn numeric_id(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > 20 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// An id as the index knows it. Ordered: numbers (by value) before strings (by bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key<'a> {
    Num(u64),
    Str(&'a str),
}

impl<'a> Key<'a> {
    pub fn of(id: &'a str) -> Self {
        match numeric_id(id) {
            Some(n) => Key::Num(n),
            None => Key::Str(id),
        }
    }

    pub fn to_owned_key(self) -> OwnedKey {
        match self {
            Key::Num(n) => OwnedKey::Num(n),
            Key::Str(s) => OwnedKey::Str(s.into()),
        }
    }
}

/// An owned [`Key`], same order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum OwnedKey {
    Num(u64),
    Str(Box<str>),
}

impl OwnedKey {
    pub fn as_key(&self) -> Key<'_> {
        match self {
            OwnedKey::Num(n) => Key::Num(*n),
            OwnedKey::Str(s) => Key::Str(s),
        }
    }
}

#[derive(Default)]
pub(crate) struct MemTable {
    chunks: Vec<Box<[Entry]>>,
    len: u32,
    /// Open addressing, linear probing, power-of-two size; holds entry numbers of numeric ids.
    table: Vec<u32>,
    num_count: u32,
    strs: HashMap<Box<str>, u32>,
    big_locs: HashMap<u32, Slot>,
    /// Sum of slot lengths of all live records.
    slot_bytes: u64,
}

#[inline]
fn hash(key: u64, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

impl MemTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Sum of the slot lengths of all records (file length minus this is waste).
    #[cfg(test)]
    pub fn slot_bytes(&self) -> u64 {
        self.slot_bytes
    }

    /// Approximate heap bytes held by the index.
    pub fn heap_bytes(&self) -> usize {
        let arena = self.chunks.len() * CHUNK * std::mem::size_of::<Entry>();
        let table = self.table.capacity() * 4;
        let strs: usize = self.strs.keys().map(|k| k.len() + std::mem::size_of::<(Box<str>, u32)>() + 1).sum::<usize>()
            + (self.strs.capacity() - self.strs.len()) * (std::mem::size_of::<(Box<str>, u32)>() + 1);
        let big = self.big_locs.capacity() * (std::mem::size_of::<(u32, Slot)>() + 1);
        arena + table + strs + big + self.chunks.capacity() * std::mem::size_of::<Box<[Entry]>>()
    }

    #[inline]
    fn entry(&self, n: u32) -> &Entry {
        &self.chunks[(n >> CHUNK_BITS) as usize][(n as usize) & (CHUNK - 1)]
    }

    #[inline]
    fn entry_mut(&mut self, n: u32) -> &mut Entry {
        &mut self.chunks[(n >> CHUNK_BITS) as usize][(n as usize) & (CHUNK - 1)]
    }

    fn find_num(&self, key: u64) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let bits = self.table.len().trailing_zeros();
        let mask = self.table.len() - 1;
        let mut i = hash(key, bits);
        loop {
            let n = self.table[i];
            if n == EMPTY {
                return None;
            }
            if self.entry(n).key == key {
                return Some(n);
            }
            i = (i + 1) & mask;
        }
    }

    fn find(&self, key: Key<'_>) -> Option<u32> {
        match key {
            Key::Num(k) => self.find_num(k),
            Key::Str(s) => self.strs.get(s).copied(),
        }
    }

    pub fn get(&self, key: Key<'_>) -> Option<(Version, Slot)> {
        self.find(key).map(|n| (self.version_at(n), self.slot_at(n)))
    }

    fn version_at(&self, n: u32) -> Version {
        let e = self.entry(n);
        Version { updated_at_ms: e.ms, sync_token: e.token }
    }

    fn slot_at(&self, n: u32) -> Slot {
        let loc = self.entry(n).loc;
        if loc & SLOT_MASK == BIG {
            self.big_locs[&n]
        } else {
            Slot { offset: loc >> SLOT_BITS, len: loc & SLOT_MASK }
        }
    }

    fn set_slot(&mut self, n: u32, slot: Slot) {
        let fits = slot.offset < (1 << OFFSET_BITS) && slot.len < BIG;
        let old_big = self.entry(n).loc & SLOT_MASK == BIG;
        if fits {
            self.entry_mut(n).loc = (slot.offset << SLOT_BITS) | slot.len;
            if old_big {
                self.big_locs.remove(&n);
            }
        } else {
            self.entry_mut(n).loc = BIG;
            self.big_locs.insert(n, slot);
        }
    }

    fn grow_table(&mut self) {
        let new_len = (self.table.len() * 2).max(16);
        let bits = new_len.trailing_zeros();
        let mask = new_len - 1;
        let mut table = vec![EMPTY; new_len];
        for &n in &self.table {
            if n != EMPTY {
                let mut i = hash(self.entry(n).key, bits);
                while table[i] != EMPTY {
                    i = (i + 1) & mask;
                }
                table[i] = n;
            }
        }
        self.table = table;
    }

    fn push_entry(&mut self, e: Entry) -> u32 {
        let n = self.len;
        assert!(n < EMPTY - 1, "index holds at most 4 billion records");
        if (n as usize) & (CHUNK - 1) == 0 {
            self.chunks.push(vec![Entry::default(); CHUNK].into_boxed_slice());
        }
        *self.entry_mut(n) = e;
        self.len += 1;
        n
    }

    /// Sets the state of `key`, inserting it if new. Returns true when it was inserted.
    pub fn set(&mut self, key: Key<'_>, version: Version, slot: Slot) -> bool {
        if let Some(n) = self.find(key) {
            let old = self.slot_at(n);
            self.slot_bytes = self.slot_bytes - old.len + slot.len;
            let e = self.entry_mut(n);
            e.ms = version.updated_at_ms;
            e.token = version.sync_token;
            self.set_slot(n, slot);
            return false;
        }
        let k = match key {
            Key::Num(k) => k,
            Key::Str(_) => 0,
        };
        let n = self.push_entry(Entry { key: k, ms: version.updated_at_ms, token: version.sync_token, loc: 0 });
        self.set_slot(n, slot);
        self.slot_bytes += slot.len;
        match key {
            Key::Num(k) => {
                if (self.num_count as usize + 1) * 5 > self.table.len() * 4 {
                    self.grow_table();
                }
                let bits = self.table.len().trailing_zeros();
                let mask = self.table.len() - 1;
                let mut i = hash(k, bits);
                while self.table[i] != EMPTY {
                    i = (i + 1) & mask;
                }
                self.table[i] = n;
                self.num_count += 1;
            }
            Key::Str(s) => {
                self.strs.insert(s.into(), n);
            }
        }
        true
    }

    /// Every entry as (id, entry number), sorted by id: 32 bytes per entry, for merges.
    pub fn sorted(&self) -> Vec<(Key<'_>, u32)> {
        let mut is_str = vec![false; self.len as usize];
        for &n in self.strs.values() {
            is_str[n as usize] = true;
        }
        let mut v: Vec<(Key<'_>, u32)> = self.strs.iter().map(|(s, &n)| (Key::Str(s), n)).collect();
        v.reserve(self.len as usize - v.len());
        v.extend((0..self.len).filter(|&n| !is_str[n as usize]).map(|n| (Key::Num(self.entry(n).key), n)));
        v.sort_unstable();
        v
    }

    pub fn version_of_entry(&self, n: u32) -> Version {
        self.version_at(n)
    }

    pub fn slot_of_entry(&self, n: u32) -> Slot {
        self.slot_at(n)
    }

    /// Greatest end offset of any slot (0 when empty).
    pub fn max_end(&self) -> u64 {
        (0..self.len).map(|n| self.slot_at(n).end()).max().unwrap_or(0)
    }
}

/// The whole index: the snapshot of the current index log (on disk) overlaid with the entries
/// of the frames committed after it (in memory).
#[derive(Default)]
pub(crate) struct Index {
    pub run: Option<Run>,
    pub mem: MemTable,
}

impl Index {
    pub fn new(run: Option<Run>) -> Self {
        Index { run, mem: MemTable::new() }
    }

    /// The state of `key`: the memtable's if it has one, else the snapshot's.
    pub fn get(&self, key: Key<'_>) -> Result<Option<(Version, Slot)>, StoreError> {
        if let Some(e) = self.mem.get(key) {
            return Ok(Some(e));
        }
        match &self.run {
            Some(run) => run.get(key),
            None => Ok(None),
        }
    }

    pub fn set(&mut self, key: Key<'_>, version: Version, slot: Slot) {
        self.mem.set(key, version, slot);
    }

    pub fn heap_bytes(&self) -> usize {
        self.mem.heap_bytes() + self.run.as_ref().map_or(0, Run::heap_bytes)
    }

    /// Greatest slot end: exact for a snapshot with no frame after it; otherwise an upper bound
    /// that still equals the data length when the log matches the file (appends only grow it).
    pub fn max_end(&self) -> u64 {
        self.mem.max_end().max(self.run.as_ref().map_or(0, |r| r.header.max_end))
    }

    /// Every entry in key order (the memtable's state wins over the snapshot's). Memory: the
    /// sorted memtable (32 bytes per memtable entry) and one snapshot block.
    pub fn merged(&self) -> Merged<'_> {
        Merged { run: self.run.as_ref().map(Run::iter), run_next: None, mem: &self.mem, sorted: self.mem.sorted().into_iter().peekable() }
    }
}

type Item = Result<(OwnedKey, Version, Slot), StoreError>;

/// See [`Index::merged`].
pub(crate) struct Merged<'a> {
    run: Option<RunIter<'a>>,
    run_next: Option<(OwnedKey, Version, Slot)>,
    mem: &'a MemTable,
    sorted: std::iter::Peekable<std::vec::IntoIter<(Key<'a>, u32)>>,
}

impl Iterator for Merged<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.run_next.is_none() {
            if let Some(it) = &mut self.run {
                match it.next() {
                    Some(Ok(e)) => self.run_next = Some(e),
                    Some(Err(e)) => return Some(Err(e)),
                    None => self.run = None,
                }
            }
        }
        let take_mem = match (&self.run_next, self.sorted.peek()) {
            (None, None) => return None,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some((rk, ..)), Some((mk, _))) => {
                if rk.as_key() == *mk {
                    self.run_next = None; // superseded by the memtable
                    true
                } else {
                    *mk < rk.as_key()
                }
            }
        };
        if take_mem {
            let (k, n) = self.sorted.next()?;
            Some(Ok((k.to_owned_key(), self.mem.version_of_entry(n), self.mem.slot_of_entry(n))))
        } else {
            self.run_next.take().map(Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: i64) -> Version {
        Version { updated_at_ms: ms, sync_token: 0 }
    }

    #[test]
    fn numeric_ids_are_canonical_only() {
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("123"), Some(123));
        assert_eq!(numeric_id("18446744073709551615"), Some(u64::MAX));
        assert_eq!(numeric_id("18446744073709551616"), None);
        assert_eq!(numeric_id("0123"), None);
        assert_eq!(numeric_id("+1"), None);
        assert_eq!(numeric_id(""), None);
        assert_eq!(numeric_id("1a"), None);
        for id in [" 1", "1 ", "1e3", "A-1"] {
            assert_eq!(numeric_id(id), None, "{id:?}");
        }
    }

    #[test]
    fn set_get_mixed_keys_and_big_slots() {
        let mut ix = MemTable::new();
        for i in 0..100_000u64 {
            assert!(ix.set(Key::of(&i.to_string()), v(i as i64), Slot { offset: i * 10, len: 10 }));
        }
        assert!(ix.set(Key::of("0123"), v(1), Slot { offset: 5, len: 3 }));
        assert!(ix.set(Key::of("abc"), v(2), Slot { offset: 1 << 45, len: 1 << 30 }));
        assert_eq!(ix.len(), 100_002);
        assert_eq!(ix.get(Key::of("123")).unwrap().1, Slot { offset: 1230, len: 10 });
        assert_eq!(ix.get(Key::of("0123")).unwrap().1, Slot { offset: 5, len: 3 });
        assert_eq!(ix.get(Key::of("abc")).unwrap().1, Slot { offset: 1 << 45, len: 1 << 30 });
        assert!(ix.get(Key::of("100000")).is_none());
        assert!(!ix.set(Key::of("abc"), v(3), Slot { offset: 7, len: 2 }));
        assert_eq!(ix.get(Key::of("abc")).unwrap(), (v(3), Slot { offset: 7, len: 2 }));
        assert!(ix.big_locs.is_empty());
        assert_eq!(ix.slot_bytes(), 100_000 * 10 + 3 + 2);
        let sorted = ix.sorted();
        assert_eq!(sorted.len(), 100_002);
        assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(sorted[100_000].0, Key::Str("0123"));
        assert_eq!(sorted[100_001].0, Key::Str("abc"));
        assert_eq!(ix.max_end(), 99_999 * 10 + 10);
    }

    #[test]
    fn memory_per_record_is_compact() {
        let mut ix = MemTable::new();
        let n = 1_000_000u64;
        for i in 0..n {
            ix.set(Key::Num(i * 7 + 1_000), v(1), Slot { offset: i * 2000, len: 2000 });
        }
        let per = ix.heap_bytes() as f64 / n as f64;
        assert!(per <= 48.0, "{per} bytes per record");
        assert_eq!(std::mem::size_of::<Entry>(), 32);
    }
}
