//! The stamps of changes: record versions carry whole seconds (QuickBooks shows LastUpdatedTime
//! without a fraction), deletions carry milliseconds. The clock keeps the versions of one record
//! and its deletion in order even when they happen within one second, so a client that lets the
//! newer of a version and a deletion mark win can never meet a tie.

/// The latest stamp handed out, in milliseconds since the epoch.
#[derive(Debug, Default)]
pub(crate) struct ChangeClock {
    last_ms: i64,
}

impl ChangeClock {
    /// LastUpdatedTime (whole seconds) of a new record version: now, but never before
    /// `floor_s` (an edit keeps its record's time from going backwards; a re-created record
    /// passes the second after its deletion).
    pub(crate) fn version_s(&mut self, now_ms: i64, floor_s: i64) -> i64 {
        let s = now_ms.div_euclid(1000).max(floor_s);
        self.last_ms = self.last_ms.max(s * 1000);
        s
    }

    /// Deletion time (milliseconds) of a record whose last version is stamped `last_version_s`:
    /// now, but strictly after every stamp handed out so far and in a later second than that
    /// version (so the deletion is newer at whole-second precision too). At most one second
    /// ahead of the wall clock unless deletions come faster than one a millisecond.
    pub(crate) fn deletion_ms(&mut self, now_ms: i64, last_version_s: i64) -> i64 {
        let ms = now_ms.max(self.last_ms + 1).max((last_version_s + 1) * 1000);
        self.last_ms = ms;
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_take_now_and_never_go_backwards() {
        let mut c = ChangeClock::default();
        assert_eq!(c.version_s(10_400, 0), 10);
        assert_eq!(c.version_s(10_900, 0), 10, "edits within one second share it");
        assert_eq!(c.version_s(10_900, 12), 12, "the floor wins over the wall clock");
    }

    #[test]
    fn deletions_are_strictly_increasing_and_after_the_records_last_version() {
        let mut c = ChangeClock::default();
        assert_eq!(c.deletion_ms(5_000_250, 100), 5_000_250, "an old record is deleted now");
        assert_eq!(c.deletion_ms(5_000_250, 100), 5_000_251, "the same millisecond twice: one apart");
        let v = c.version_s(5_000_300, 0);
        assert_eq!(v, 5_000);
        assert_eq!(c.deletion_ms(5_000_400, v), 5_001_000, "deleted in the second of its last version: the next second");
        assert_eq!(c.version_s(5_000_500, 5_001_000 / 1000 + 1), 5_002, "re-created after its deletion");
        assert!(c.deletion_ms(5_000_600, 0) > 5_002_000, "after every stamp handed out");
    }
}
