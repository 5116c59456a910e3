//! The ids a keyset read holds, at a few bytes each, with exact counts per time span.
//!
//! A read must remember every id it has taken, at its latest version and key: any record it
//! has passed may be edited during the read and come back later in the same pass, and only
//! remembering it keeps the newest copy and counts it once, at its new key. A stream holds
//! hundreds of thousands of ids, and several streams are read at once, so the cost per id is
//! what bounds a backfill's memory.
//!
//! QBO ids are dense decimal numbers, so a numeric id is a slot in a page of consecutive ids
//! allocated on first touch, and the slot packs what the read needs into 8 bytes: the
//! version (LastUpdatedTime in whole seconds, which is what QBO returns, and the SyncToken)
//! and the span its key falls in. A version or span too large to pack, and any id that is
//! not a canonical number ([`qbo_jsonl::numeric_id`]), is held exactly in a map instead.
//!
//! Keys are not kept, only the span between two consecutive boundaries that each falls in;
//! the boundaries are given up front (the read's range and the windows it is attributed to),
//! and the number of distinct ids per span is kept up to date as ids arrive or move, so a
//! count over any range between two boundaries is a sum over a few spans, never a scan.

use std::collections::HashMap;

/// Slots per page: 8 KiB, small enough that the scattered old ids an edit brings into a
/// stream cost little, large enough that the page table stays small.
const PAGE_SLOTS: u64 = 1024;

/// Spans a packed slot can name (15 bits; more spans are held in the exact map).
const PACKED_SPANS: u32 = 1 << 15;

/// A record's version: LastUpdatedTime in Unix milliseconds, then SyncToken.
pub(crate) type Version = (i64, u64);

/// What is held of one id: its version and the span its key falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    version: Version,
    span: u32,
}

impl Held {
    /// `version` and `span` as one nonzero word (0 is an empty slot), when they fit: whole
    /// seconds in 32 bits, SyncToken in 16, span in 15, and bit 0 set.
    fn pack(self) -> Option<u64> {
        let (ms, token) = self.version;
        if ms % 1000 != 0 || token > u64::from(u16::MAX) || self.span >= PACKED_SPANS {
            return None;
        }
        let seconds = u32::try_from(ms / 1000).ok()?;
        Some((u64::from(seconds) << 32) | (token << 16) | (u64::from(self.span) << 1) | 1)
    }

    fn unpack(slot: u64) -> Held {
        Held { version: ((slot >> 32) as i64 * 1000, (slot >> 16) & 0xFFFF), span: ((slot >> 1) & 0x7FFF) as u32 }
    }
}

/// What taking a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// The id is held at this version or a newer one: the record is dropped.
    Stale,
    /// The id was not held.
    First,
    /// An older version was held, its key in span `was`.
    Newer { was: u32 },
}

/// Every id a read holds, at its latest version, and how many fall in each span.
#[derive(Debug)]
pub(crate) struct SeenIds {
    /// Sorted, distinct key boundaries (Unix ms). Span `k` holds keys in
    /// `[boundaries[k - 1], boundaries[k])`; span 0 is before the first, the last after the last.
    boundaries: Vec<i64>,
    /// Distinct ids whose latest key falls in each span.
    per_span: Vec<u64>,
    /// Packed slots of numeric ids, by page number (id / PAGE_SLOTS).
    pages: HashMap<u64, Box<[u64]>>,
    /// Numeric ids whose version or span does not pack (never also in a page).
    wide: HashMap<u64, Held>,
    /// Ids that are not canonical numbers.
    other: HashMap<String, Held>,
}

impl SeenIds {
    /// Holds no id; counts will be asked between any two of `boundaries` (Unix ms, any order).
    pub(crate) fn new(mut boundaries: Vec<i64>) -> Self {
        boundaries.sort_unstable();
        boundaries.dedup();
        let spans = boundaries.len() + 1;
        SeenIds { boundaries, per_span: vec![0; spans], pages: HashMap::new(), wide: HashMap::new(), other: HashMap::new() }
    }

    /// Holds `id` at `version` with its filter key at `key_ms`, unless a version at least as
    /// new is held; true when held (the record is new to the read).
    pub(crate) fn keep_newer(&mut self, id: &str, version: Version, key_ms: i64) -> bool {
        let span = self.boundaries.partition_point(|b| *b <= key_ms) as u32;
        let held = Held { version, span };
        let taken = match qbo_jsonl::numeric_id(id) {
            Some(n) => self.take_numeric(n, held),
            None => take_exact(&mut self.other, id, held),
        };
        match taken {
            Taken::Stale => return false,
            Taken::First => {}
            Taken::Newer { was } => self.per_span[was as usize] -= 1,
        }
        self.per_span[span as usize] += 1;
        true
    }

    fn take_numeric(&mut self, id: u64, held: Held) -> Taken {
        let (page_number, offset) = (id / PAGE_SLOTS, (id % PAGE_SLOTS) as usize);
        let slot = self.pages.get_mut(&page_number).map(|page| &mut page[offset]);
        match slot {
            Some(slot) if *slot != 0 => {
                let was = Held::unpack(*slot);
                if was.version >= held.version {
                    return Taken::Stale;
                }
                *slot = held.pack().unwrap_or_else(|| {
                    self.wide.insert(id, held);
                    0
                });
                Taken::Newer { was: was.span }
            }
            slot => {
                if !self.wide.is_empty() && self.wide.contains_key(&id) {
                    return take_exact(&mut self.wide, &id, held);
                }
                match held.pack() {
                    Some(packed) => match slot {
                        Some(slot) => *slot = packed,
                        None => {
                            let mut page = vec![0u64; PAGE_SLOTS as usize].into_boxed_slice();
                            page[offset] = packed;
                            self.pages.insert(page_number, page);
                        }
                    },
                    None => {
                        self.wide.insert(id, held);
                    }
                }
                Taken::First
            }
        }
    }

    /// Distinct ids held.
    pub(crate) fn len(&self) -> u64 {
        self.per_span.iter().sum()
    }

    /// Distinct ids held whose latest key lies in `[start_ms, end_ms)`; both must be
    /// boundaries given to [`SeenIds::new`].
    pub(crate) fn count_between(&self, start_ms: i64, end_ms: i64) -> u64 {
        let at = |ms: i64| self.boundaries.binary_search(&ms).unwrap_or_else(|_| panic!("{ms} is not a boundary the ids were counted by"));
        let (first, last) = (at(start_ms), at(end_ms));
        // Keys in [boundaries[first], boundaries[last]) are the spans first+1 ..= last.
        self.per_span.get(first + 1..=last).map_or(0, |spans| spans.iter().sum())
    }
}

/// Holds `held` for `key` in an exact map unless a version at least as new is there.
fn take_exact<K, Q>(map: &mut HashMap<K, Held>, key: &Q, held: Held) -> Taken
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    match map.get_mut(key) {
        Some(was) if was.version >= held.version => Taken::Stale,
        Some(was) => Taken::Newer { was: std::mem::replace(was, held).span },
        None => {
            map.insert(key.to_owned(), held);
            Taken::First
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000; // one second in ms

    /// Spans at 0, 10 s, 20 s, 30 s: windows [0, 10 s), [10 s, 20 s), [20 s, 30 s).
    fn seen() -> SeenIds {
        SeenIds::new(vec![30 * S, 0, 10 * S, 20 * S, 10 * S])
    }

    fn counts(seen: &SeenIds) -> [u64; 3] {
        [seen.count_between(0, 10 * S), seen.count_between(10 * S, 20 * S), seen.count_between(20 * S, 30 * S)]
    }

    #[test]
    fn keeps_only_newer_versions_numeric_or_not() {
        let mut seen = seen();
        for id in ["123", "A-7", "0123"] {
            assert!(seen.keep_newer(id, (10 * S, 1), 10 * S), "{id} first seen");
            assert!(!seen.keep_newer(id, (10 * S, 1), 10 * S), "{id} same version");
            assert!(!seen.keep_newer(id, (9 * S, 5), 10 * S), "{id} older version");
            assert!(!seen.keep_newer(id, (10 * S, 0), 10 * S), "{id} older sync token");
            assert!(seen.keep_newer(id, (10 * S, 2), 10 * S), "{id} newer sync token");
        }
        // "0123" is not the number 123: both are held, apart.
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.pages.values().map(|p| p.iter().filter(|s| **s != 0).count()).sum::<usize>(), 1);
        assert_eq!(seen.other.len(), 2);
        assert!(seen.wide.is_empty());
        assert_eq!(counts(&seen), [0, 3, 0]);
    }

    #[test]
    fn a_newer_version_moves_its_id_between_windows() {
        let mut seen = seen();
        for id in ["1", "2", "5000", "X"] {
            assert!(seen.keep_newer(id, (2 * S, 0), 2 * S));
        }
        assert!(seen.keep_newer("3", (12 * S, 0), 12 * S));
        assert_eq!(counts(&seen), [4, 1, 0]);
        // Edited during the read: seen again later, in a later window, once.
        assert!(seen.keep_newer("2", (25 * S, 1), 25 * S));
        assert!(seen.keep_newer("X", (25 * S, 1), 25 * S));
        assert!(!seen.keep_newer("2", (25 * S, 1), 25 * S), "the overlap of the next page");
        assert_eq!(counts(&seen), [2, 1, 2]);
        // Edited to a key past every window: held, counted in none of them.
        assert!(seen.keep_newer("5000", (40 * S, 1), 40 * S));
        assert_eq!(counts(&seen), [1, 1, 2]);
        assert_eq!(seen.len(), 5);
        assert_eq!(seen.count_between(0, 30 * S), 4);
        assert_eq!(seen.count_between(10 * S, 10 * S), 0);
        // An older copy of a moved record does not move it back.
        assert!(!seen.keep_newer("5000", (2 * S, 0), 2 * S));
        assert_eq!(counts(&seen), [1, 1, 2]);
    }

    #[test]
    fn versions_that_do_not_pack_are_held_exactly() {
        let mut seen = seen();
        // Milliseconds, a SyncToken past 16 bits, a time before 1970: the exact map.
        assert!(seen.keep_newer("7", (2 * S + 1, 0), 2 * S));
        assert!(seen.keep_newer("8", (3 * S, 70_000), 3 * S));
        assert!(seen.keep_newer("9", (-S, 0), 4 * S));
        assert_eq!(seen.wide.len(), 3);
        assert!(!seen.keep_newer("7", (2 * S + 1, 0), 2 * S));
        assert!(!seen.keep_newer("7", (2 * S, 9), 2 * S), "older by a millisecond");
        assert!(!seen.keep_newer("8", (3 * S, 69_999), 3 * S));
        // A newer version that packs stays in the exact map: an id lives in one place.
        assert!(seen.keep_newer("7", (15 * S, 1), 15 * S));
        assert_eq!(seen.wide.len(), 3);
        assert!(!seen.keep_newer("7", (15 * S, 1), 15 * S));
        // A packed id whose newer version does not pack moves to the exact map.
        assert!(seen.keep_newer("10", (5 * S, 1), 5 * S));
        assert!(seen.keep_newer("10", (22 * S + 500, 2), 22 * S + 500));
        assert_eq!(seen.wide.len(), 4);
        assert!(!seen.keep_newer("10", (5 * S, 1), 5 * S), "the packed copy is gone, the exact one rules");
        assert!(!seen.keep_newer("10", (22 * S + 500, 2), 22 * S + 500));
        assert_eq!(counts(&seen), [2, 1, 1]);
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn packing_is_exact() {
        for held in [
            Held { version: (0, 0), span: 0 },
            Held { version: (1_760_000_000_000, 3), span: 4 },
            Held { version: (i64::from(u32::MAX) * 1000, u64::from(u16::MAX)), span: PACKED_SPANS - 1 },
        ] {
            let packed = held.pack().expect("fits");
            assert_ne!(packed, 0, "a held slot is never empty");
            assert_eq!(Held::unpack(packed), held);
        }
        assert_eq!(Held { version: ((i64::from(u32::MAX) + 1) * 1000, 0), span: 0 }.pack(), None);
        assert_eq!(Held { version: (0, 0), span: PACKED_SPANS }.pack(), None);
    }

    #[test]
    fn ids_far_apart_and_large_share_no_slot() {
        let mut seen = seen();
        let ids = ["0", "1023", "1024", "18446744073709551615", "18446744073709550591"];
        for id in ids {
            assert!(seen.keep_newer(id, (2 * S, 0), 2 * S), "{id}");
        }
        for id in ids {
            assert!(!seen.keep_newer(id, (2 * S, 0), 2 * S), "{id}");
        }
        assert_eq!(seen.pages.len(), 4);
        assert_eq!(seen.len(), 5);
    }

    #[test]
    #[should_panic(expected = "is not a boundary")]
    fn counts_only_between_boundaries() {
        seen().count_between(0, 5 * S);
    }
}
