//! The time distribution of generated records: which UTC seconds their CreateTime and
//! LastUpdatedTime fall on. See the crate docs ("Generated data") for the guarantees.

use chrono::{Datelike, NaiveDate};

use crate::pacific::{date_to_days, offset_secs, pacific_days};
use crate::rng::Rng;

pub(crate) const TAG_EMPTY: u64 = 0xE0;

/// Hours after the end of an empty UTC month that stay empty too, so that the month is also empty
/// when bucketed by Pacific wall time (Pacific is UTC-8 at most).
const PACIFIC_SLACK_S: i64 = 8 * 3600;

/// One allowed sampling interval `[a, b)` (UTC seconds) with its cumulative weight.
#[derive(Clone, Debug)]
struct Interval {
    a: i64,
    b: i64,
    cum: f64,
}

/// The calendar span of generated data, its empty months and the weighted intervals times are
/// drawn from.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pub start_s: i64,
    pub end_s: i64,
    /// First day of each empty calendar month.
    pub empty_months: Vec<NaiveDate>,
    intervals: Vec<Interval>,
}

fn month_start_s(y: i32, m: u32) -> i64 {
    date_to_days(NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")) * 86_400
}

fn next_month(y: i32, m: u32) -> (i32, u32) {
    if m == 12 {
        (y + 1, 1)
    } else {
        (y, m + 1)
    }
}

impl Span {
    /// Builds the span `[data_start 00:00Z, data_end+1 00:00Z)`. Empty months depend on the seed
    /// and the span only (never on the entity), so they are empty for every entity at once.
    pub(crate) fn new(seed: u64, data_start: NaiveDate, data_end: NaiveDate) -> Span {
        let start_s = date_to_days(data_start) * 86_400;
        let end_s = (date_to_days(data_end) + 1) * 86_400;
        let end_s = end_s.max(start_s + 86_400);
        // All calendar months touched by the span.
        let mut months = Vec::new();
        let (mut y, mut m) = (data_start.year(), data_start.month());
        while month_start_s(y, m) < end_s {
            months.push((y, m));
            (y, m) = next_month(y, m);
        }
        let n = months.len();
        // ~6 % of months are empty, never the first two or the last two (so the span's edges
        // always have data), and only when the span has at least 6 months.
        let mut empty = vec![false; n];
        if n >= 6 {
            let k = ((n as f64 * 0.06).round() as usize).max(1).min(n - 4);
            let mut rng = Rng::derive(seed, TAG_EMPTY, n as u64);
            let mut chosen = 0;
            while chosen < k {
                let i = 2 + rng.below((n - 4) as u64) as usize;
                if !empty[i] {
                    empty[i] = true;
                    chosen += 1;
                }
            }
        }
        let mut rng = Rng::derive(seed, TAG_EMPTY + 1, n as u64);
        let mut intervals = Vec::new();
        let mut cum = 0.0;
        for (i, &(y, m)) in months.iter().enumerate() {
            let ms = month_start_s(y, m);
            let (ny, nm) = next_month(y, m);
            let me = month_start_s(ny, nm);
            if empty[i] {
                continue;
            }
            let mut a = ms.max(start_s);
            if i > 0 && empty[i - 1] {
                a = a.max(ms + PACIFIC_SLACK_S);
            }
            let b = me.min(end_s);
            if b <= a {
                continue;
            }
            // Growth over the years, mild seasonality, month-to-month jitter.
            let frac = i as f64 / n.max(1) as f64;
            let season = match m {
                3 | 12 => 1.25,
                7 | 8 => 0.85,
                _ => 1.0,
            };
            let w = (b - a) as f64 * (0.35 + 1.3 * frac) * season * (0.6 + 0.8 * rng.f64());
            cum += w;
            intervals.push(Interval { a, b, cum });
        }
        if intervals.is_empty() {
            intervals.push(Interval { a: start_s, b: end_s, cum: 1.0 });
        }
        let empty_months = months.iter().zip(&empty).filter(|(_, e)| **e).map(|(&(y, m), _)| NaiveDate::from_ymd_opt(y, m, 1).expect("valid month")).collect();
        Span { start_s, end_s, empty_months, intervals }
    }

    fn total(&self) -> f64 {
        self.intervals.last().map(|i| i.cum).unwrap_or(1.0)
    }

    /// Whether a UTC second may carry a record (inside the span and not in an empty month).
    pub(crate) fn allowed(&self, t: i64) -> bool {
        let i = self.intervals.partition_point(|iv| iv.b <= t);
        i < self.intervals.len() && self.intervals[i].a <= t
    }

    /// Draws a UTC second: a weighted month, a uniform day in it, and three times in four a
    /// Pacific business-hours time of day (08:00-18:00) on that day.
    pub(crate) fn sample(&self, rng: &mut Rng) -> i64 {
        let x = rng.f64() * self.total();
        let i = self.intervals.partition_point(|iv| iv.cum <= x).min(self.intervals.len() - 1);
        let iv = &self.intervals[i];
        let t = rng.range(iv.a, iv.b);
        if rng.chance(0.75) {
            let day = pacific_days(t);
            let sod = rng.range(8 * 3600, 18 * 3600);
            let t2 = day * 86_400 + sod - offset_secs(t) as i64;
            if t2 >= iv.a && t2 < iv.b {
                return t2;
            }
        }
        t
    }
}

/// Timing of one record, before Ids are assigned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub created: i64,
    pub updated: i64,
    pub sync: u32,
}

/// A group of records sharing one LastUpdatedTime second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Burst {
    /// The shared LastUpdatedTime, UTC seconds.
    pub updated_utc: i64,
    /// How many records share it (at least; an unrelated record may land on it by chance).
    pub size: usize,
}

/// Sizes of the dense bursts for `n` records: one "bulk import" burst of
/// `clamp(n/40, 50, 5000)` records when `n >= 200` (else `n/10`), then bursts of 50..=600 records
/// until ~4 % more of the records are in bursts.
pub(crate) fn burst_sizes(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let bulk = if n >= 200 { (n / 40).clamp(50, 5000) } else { n / 10 };
    if bulk >= 2 {
        sizes.push(bulk);
    }
    let mut remaining = n * 4 / 100;
    while remaining >= 50 {
        let s = (rng.range(50, 601) as usize).min(remaining);
        sizes.push(s);
        remaining -= s;
    }
    let mut total = 0;
    sizes.retain(|s| {
        total += s;
        total <= n
    });
    sizes
}

/// Plans the times of `n` records of one entity. Returns the slots ordered by CreateTime (the
/// caller gives them Ids 1..=n in that order, as QBO's Ids grow with creation) and the bursts.
pub(crate) fn schedule(seed: u64, tag: u64, n: usize, span: &Span) -> (Vec<Slot>, Vec<Burst>) {
    let mut rng = Rng::derive(seed, tag, 0x5C4E_D01E);
    let sizes = burst_sizes(&mut rng, n);
    let mut slots: Vec<(Slot, u64)> = Vec::with_capacity(n);
    let mut bursts = Vec::with_capacity(sizes.len());
    let max_delta = (180.0f64 * 86_400.0).ln();
    let min_delta = 60.0f64.ln();
    let earlier = |rng: &mut Rng, updated: i64| -> i64 {
        let d = (min_delta + rng.f64() * (max_delta - min_delta)).exp() as i64;
        let c = updated - d;
        if c >= span.start_s && span.allowed(c) {
            c
        } else {
            updated
        }
    };
    for (bi, &size) in sizes.iter().enumerate() {
        let t = span.sample(&mut rng);
        // The bulk burst (first) and half of the others are imports (created in that second);
        // the rest are bulk updates of records created earlier.
        let import = bi == 0 || rng.chance(0.5);
        for _ in 0..size {
            let created = if import { t } else { earlier(&mut rng, t) };
            let sync = if created == t { 0 } else { 1 + rng.below(3) as u32 };
            slots.push((Slot { created, updated: t, sync }, rng.next_u64()));
        }
        bursts.push(Burst { updated_utc: t, size });
    }
    while slots.len() < n {
        let updated = span.sample(&mut rng);
        let created = if rng.chance(0.45) { updated } else { earlier(&mut rng, updated) };
        let sync = if created == updated { 0 } else { 1 + rng.below(3) as u32 };
        slots.push((Slot { created, updated, sync }, rng.next_u64()));
    }
    slots.sort_unstable_by_key(|(s, r)| (s.created, *r));
    bursts.sort_by_key(|b| b.updated_utc);
    (slots.into_iter().map(|(s, _)| s).collect(), bursts)
}
