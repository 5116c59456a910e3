//! A sliding 60 s window of admitted calls: the realm's calls per minute and the batch requests
//! per minute are each one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct MinuteWindow(VecDeque<Instant>);

impl MinuteWindow {
    /// Forgets calls older than 60 s.
    pub(crate) fn prune(&mut self, now: Instant) {
        while let Some(&first) = self.0.front() {
            if now.duration_since(first) >= Duration::from_secs(60) {
                self.0.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether `calls` more fit under `limit` (`None` or 0: no limit). Prune first.
    pub(crate) fn has_room(&self, limit: Option<u32>, calls: u32) -> bool {
        match limit.filter(|n| *n > 0) {
            Some(lim) => self.0.len() + calls as usize <= lim as usize,
            None => true,
        }
    }

    pub(crate) fn push(&mut self, now: Instant, calls: u32) {
        self.0.extend(std::iter::repeat_n(now, calls as usize));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_leave_the_window_after_a_minute() {
        let t0 = Instant::now();
        let mut w = MinuteWindow::default();
        w.push(t0, 3);
        assert!(w.has_room(Some(5), 2) && !w.has_room(Some(5), 3));
        assert!(w.has_room(None, 100) && w.has_room(Some(0), 100), "None or 0: no limit");
        w.prune(t0 + Duration::from_secs(59));
        assert_eq!(w.len(), 3);
        w.prune(t0 + Duration::from_secs(60));
        assert_eq!(w.len(), 0);
    }
}
