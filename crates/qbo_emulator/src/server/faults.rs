//! Which admitted API requests get an injected fault: by dice (`fault_rate`, one seeded stream
//! for every request), by position (`fault_first_k`, the first K requests of each kind) or by
//! time (`fault_every_secs`, the first request of each kind in every period). The dice depend on
//! how many requests a client sends; position and time do not, so fault runs of two clients are
//! comparable.

use std::time::Instant;

use crate::config::{FaultKind, Knobs};
use crate::rng::Rng;

/// What an API request asks for, as far as faults are concerned: each kind has its own
/// positions and periods, so a client's counts do not use up the faults meant for its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `SELECT *` on the query route (also a statement that does not compile).
    QueryPage,
    /// `SELECT COUNT(*)` on the query route.
    QueryCount,
    Batch,
    Cdc,
    /// One record, CompanyInfo or Preferences.
    Read,
}

impl RequestKind {
    const COUNT: usize = 5;

    fn index(self) -> usize {
        match self {
            RequestKind::QueryPage => 0,
            RequestKind::QueryCount => 1,
            RequestKind::Batch => 2,
            RequestKind::Cdc => 3,
            RequestKind::Read => 4,
        }
    }

    /// The route it arrives on, as [`crate::Stats::requests`] names it.
    pub(crate) fn route(self) -> &'static str {
        match self {
            RequestKind::QueryPage | RequestKind::QueryCount => "query",
            RequestKind::Batch => "batch",
            RequestKind::Cdc => "cdc",
            RequestKind::Read => "read",
        }
    }

    /// The key of [`crate::Stats::faults_by_request`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            RequestKind::QueryPage => "query_page",
            RequestKind::QueryCount => "query_count",
            RequestKind::Batch => "batch",
            RequestKind::Cdc => "cdc",
            RequestKind::Read => "read",
        }
    }
}

/// Per request kind: admitted requests and scheduled faults since the knobs took their values.
#[derive(Clone, Copy, Default)]
struct KindCount {
    admitted: u64,
    /// Faults given by position or time (which entry of `fault_kinds` comes next).
    scheduled: u64,
    /// The last period (of `fault_every_secs`) whose first request faulted.
    faulted_period: Option<u64>,
}

pub(crate) struct FaultSchedule {
    dice: Rng,
    kinds: [KindCount; RequestKind::COUNT],
    /// Start of the periods of `fault_every_secs`.
    periods_from: Instant,
}

impl FaultSchedule {
    pub(crate) fn new(dice: Rng, now: Instant) -> FaultSchedule {
        FaultSchedule { dice, kinds: [KindCount::default(); RequestKind::COUNT], periods_from: now }
    }

    /// Knobs are being replaced: a changed `fault_first_k` or `fault_every_secs` starts counting
    /// positions and periods again from now (setting the same value again changes nothing, so a
    /// client may send the whole knob set back with one field changed).
    pub(crate) fn knobs_changed(&mut self, old: &Knobs, new: &Knobs, now: Instant) {
        let positions = old.fault_first_k != new.fault_first_k;
        let periods = old.fault_every_secs != new.fault_every_secs;
        if positions || periods {
            for c in &mut self.kinds {
                c.scheduled = 0;
                if positions {
                    c.admitted = 0;
                }
                if periods {
                    c.faulted_period = None;
                }
            }
        }
        if periods {
            self.periods_from = now;
        }
    }

    /// The fault, if any, of an admitted request of `kind` arriving at `now`.
    pub(crate) fn draw(&mut self, k: &Knobs, kind: RequestKind, now: Instant) -> Option<FaultKind> {
        if k.fault_kinds.is_empty() {
            return None;
        }
        let c = &mut self.kinds[kind.index()];
        c.admitted += 1;
        let by_position = c.admitted <= u64::from(k.fault_first_k);
        // Evaluated even when the position already faults: that request is the period's fault.
        let by_time = k.fault_every_secs > 0 && {
            let period = now.saturating_duration_since(self.periods_from).as_secs() / u64::from(k.fault_every_secs);
            let first = c.faulted_period != Some(period);
            c.faulted_period = Some(period);
            first
        };
        if by_position || by_time {
            let f = k.fault_kinds[(c.scheduled % k.fault_kinds.len() as u64) as usize];
            c.scheduled += 1;
            return Some(f);
        }
        if k.fault_rate > 0.0 && self.dice.chance(k.fault_rate) {
            return Some(*self.dice.pick(&k.fault_kinds));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn knobs(first_k: u32, every_secs: u32) -> Knobs {
        Knobs { fault_first_k: first_k, fault_every_secs: every_secs, fault_kinds: vec![FaultKind::Http500, FaultKind::Reset], ..Knobs::default() }
    }

    #[test]
    fn first_k_faults_each_kind_in_turn_whatever_else_arrives() {
        let t0 = Instant::now();
        let k = knobs(3, 0);
        let mut s = FaultSchedule::new(Rng::new(1), t0);
        let counts: Vec<_> = (0..5).map(|_| s.draw(&k, RequestKind::QueryCount, t0)).collect();
        let pages: Vec<_> = (0..5).map(|_| s.draw(&k, RequestKind::QueryPage, t0)).collect();
        let expected = vec![Some(FaultKind::Http500), Some(FaultKind::Reset), Some(FaultKind::Http500), None, None];
        assert_eq!(counts, expected);
        assert_eq!(pages, expected, "counts do not use up the pages' faults");
        // Setting the same value again changes nothing; a new value starts over.
        s.knobs_changed(&k, &k, t0);
        assert_eq!(s.draw(&k, RequestKind::QueryPage, t0), None);
        let k2 = knobs(1, 0);
        s.knobs_changed(&k, &k2, t0);
        assert_eq!(s.draw(&k2, RequestKind::QueryPage, t0), Some(FaultKind::Http500));
        assert_eq!(s.draw(&k2, RequestKind::QueryPage, t0), None);
    }

    #[test]
    fn every_secs_faults_the_first_request_of_each_kind_per_period() {
        let t0 = Instant::now();
        let k = knobs(0, 2);
        let mut s = FaultSchedule::new(Rng::new(1), t0);
        s.knobs_changed(&Knobs::default(), &k, t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let got: Vec<_> = [0, 500, 1999, 2000, 2001, 5000, 5100].iter().map(|&ms| s.draw(&k, RequestKind::QueryPage, at(ms))).collect();
        use FaultKind::{Http500, Reset};
        assert_eq!(got, vec![Some(Http500), None, None, Some(Reset), None, Some(Http500), None]);
        assert_eq!(s.draw(&k, RequestKind::Batch, at(5200)), Some(Http500), "each kind has its own periods");
    }

    #[test]
    fn dice_only_when_rate_is_set() {
        let t0 = Instant::now();
        let mut s = FaultSchedule::new(Rng::new(1), t0);
        assert_eq!((0..100).filter_map(|_| s.draw(&Knobs::default(), RequestKind::QueryPage, t0)).count(), 0);
        let k = Knobs { fault_rate: 1.0, fault_kinds: vec![FaultKind::Slow], ..Knobs::default() };
        assert_eq!(s.draw(&k, RequestKind::Read, t0), Some(FaultKind::Slow));
    }
}
