//! Pacing requests under Intuit's per-realm limits (500 requests/minute, 10 in flight)
//! on purpose, so a 429 is a rare event rather than the control loop. The limit is the
//! realm's, not the client's or the process's: by default every process on the machine
//! draws from one budget file per realm ([`machine`]), and every client of a realm in a
//! process shares one limiter (the registry below).

pub mod machine;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use machine::{MachineSchedule, Reservation, SlotTicket};

/// Intuit's documented ceiling per realm.
pub const INTUIT_REQUESTS_PER_MINUTE: u32 = 500;
/// What we pace at by default: 2% under the ceiling leaves room for clock skew between
/// our spacing and Intuit's sliding window, which is the difference between zero 429s
/// and a steady trickle of them.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 490;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;

/// How often a process re-checks for a free in-flight slot held by other processes.
const FULL_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pacing {
    pub requests_per_minute: u32,
    pub max_in_flight: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing { requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE, max_in_flight: DEFAULT_MAX_IN_FLIGHT }
    }
}

impl Pacing {
    pub fn validate(&self) -> Result<(), Error> {
        if self.requests_per_minute == 0 {
            return Err(Error::config("requests_per_minute must be at least 1"));
        }
        if self.max_in_flight == 0 {
            return Err(Error::config("max_in_flight must be at least 1"));
        }
        if self.max_in_flight as usize > machine::SLOTS {
            return Err(Error::config(format!("max_in_flight above {} is not supported (Intuit allows about 10 per realm)", machine::SLOTS)));
        }
        Ok(())
    }
}

/// Who shares a realm's budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimiterScope {
    /// Every process on this machine using the same directory (the default:
    /// [`machine::default_dir`]). Mage's scheduler runs windows in parallel processes.
    Machine(PathBuf),
    /// This process only.
    Process,
}

impl LimiterScope {
    /// `$QBO_LIMITER_DIR`, else `$XDG_RUNTIME_DIR/qbo_rs`, else `<temp dir>/qbo_rs-<uid>`.
    pub fn machine_default() -> Self {
        LimiterScope::Machine(machine::default_dir())
    }
}

impl Default for LimiterScope {
    fn default() -> Self {
        LimiterScope::machine_default()
    }
}

enum Schedule {
    Process { rate: DefaultDirectRateLimiter, pause_until: Mutex<Option<tokio::time::Instant>> },
    Machine(Arc<MachineSchedule>),
}

/// A realm's budget: a GCRA schedule (one request every 60/rpm seconds, no burst, so any
/// 60-second window holds at most rpm requests), a bound on requests in flight, and a
/// pause every caller honours after a 429.
pub struct RealmLimiter {
    /// Bounds this process's own requests before they contend for the shared slots.
    local_slots: Arc<Semaphore>,
    schedule: Schedule,
}

/// Held for the duration of one HTTP request.
pub struct RequestPermit {
    _local: OwnedSemaphorePermit,
    machine: Option<(Arc<MachineSchedule>, SlotTicket)>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        if let Some((schedule, ticket)) = self.machine.take() {
            if let Err(e) = schedule.release(ticket) {
                tracing::warn!(target: "qbo_rs", "could not release a request slot in {}: {e}; its lease will free it", schedule.path().display());
            }
        }
    }
}

impl RealmLimiter {
    /// A limiter for this process only.
    pub fn new(pacing: Pacing) -> Self {
        let rpm = NonZeroU32::new(pacing.requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rpm).allow_burst(NonZeroU32::MIN);
        RealmLimiter { local_slots: Self::local_slots(pacing), schedule: Schedule::Process { rate: RateLimiter::direct(quota), pause_until: Mutex::new(None) } }
    }

    /// A limiter drawing from a budget file shared by every process that opens it.
    pub fn machine_wide(pacing: Pacing, schedule: MachineSchedule) -> Self {
        RealmLimiter { local_slots: Self::local_slots(pacing), schedule: Schedule::Machine(Arc::new(schedule)) }
    }

    fn local_slots(pacing: Pacing) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(pacing.max_in_flight.max(1) as usize))
    }

    /// Where the shared budget lives, if it is shared between processes.
    pub fn budget_file(&self) -> Option<&std::path::Path> {
        match &self.schedule {
            Schedule::Machine(s) => Some(s.path()),
            Schedule::Process { .. } => None,
        }
    }

    /// Waits for a free slot, then for the next rate cell, so the request leaves right
    /// when its cell comes up (taking the cell first would let slot waits bunch requests).
    pub async fn acquire(&self) -> RequestPermit {
        let local = Arc::clone(&self.local_slots).acquire_owned().await.expect("semaphore never closed");
        match &self.schedule {
            Schedule::Process { rate, pause_until } => {
                // Waited on tokio's timer, not governor's `until_ready` (futures-timer's global
                // thread, which a forked process does not have: it would wait forever).
                while let Err(not_until) = rate.check() {
                    tokio::time::sleep(not_until.wait_time_from(rate.clock().now())).await;
                }
                let pause = *pause_until.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(until) = pause {
                    tokio::time::sleep_until(until).await;
                }
                RequestPermit { _local: local, machine: None }
            }
            Schedule::Machine(schedule) => loop {
                match schedule.try_reserve() {
                    Ok(Reservation::Granted { slot, departure }) => {
                        let wait = departure.saturating_sub(machine::now_nanos());
                        if wait > 0 {
                            tokio::time::sleep(Duration::from_nanos(wait)).await;
                        }
                        return RequestPermit { _local: local, machine: Some((Arc::clone(schedule), slot)) };
                    }
                    Ok(Reservation::Full) => {
                        let jitter = Duration::from_micros(rand::random::<u64>() % 5_000);
                        tokio::time::sleep(FULL_POLL + jitter).await;
                    }
                    Ok(Reservation::Busy) => tokio::task::yield_now().await,
                    Err(e) => {
                        // The budget file went bad under us (disk full, deleted directory):
                        // keep pacing this process at least, and say so.
                        tracing::warn!(target: "qbo_rs", "the shared request budget {} is unusable ({e}); pacing this request alone", schedule.path().display());
                        tokio::time::sleep(FULL_POLL).await;
                        return RequestPermit { _local: local, machine: None };
                    }
                }
            },
        }
    }

    /// After a 429: every caller of this realm (every process, for a shared budget) waits
    /// `wait` before its next request, not only the one that was throttled.
    pub fn pause(&self, wait: Duration) {
        match &self.schedule {
            Schedule::Process { pause_until, .. } => {
                let until = tokio::time::Instant::now() + wait;
                let mut current = pause_until.lock().unwrap_or_else(|p| p.into_inner());
                *current = Some(current.map_or(until, |c| c.max(until)));
            }
            Schedule::Machine(schedule) => {
                if let Err(e) = schedule.pause(wait) {
                    tracing::warn!(target: "qbo_rs", "could not share a 429 pause through {}: {e}", schedule.path().display());
                }
            }
        }
    }
}

type RegistryKey = (String, String, Pacing, LimiterScope);
type Registry = Mutex<HashMap<RegistryKey, Arc<RealmLimiter>>>;

/// The process-wide limiter for (API host, realm, pacing, scope). A machine-wide budget
/// that cannot be opened (read-only or missing directory) falls back to this process
/// alone, with a warning naming the directory. `lease` bounds how long a request slot can
/// outlive a process that was killed mid-request and cannot be checked.
pub fn shared_limiter(api_base: &str, realm_id: &str, pacing: Pacing, scope: &LimiterScope, lease: Duration) -> Arc<RealmLimiter> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    let mut map = registry.lock().unwrap_or_else(|p| p.into_inner());
    let key = (api_base.to_string(), realm_id.to_string(), pacing, scope.clone());
    Arc::clone(map.entry(key).or_insert_with(|| {
        Arc::new(match scope {
            LimiterScope::Process => RealmLimiter::new(pacing),
            LimiterScope::Machine(dir) => {
                match MachineSchedule::open(dir, api_base, realm_id, pacing.requests_per_minute, pacing.max_in_flight, lease) {
                    Ok(schedule) => RealmLimiter::machine_wide(pacing, schedule),
                    Err(e) => {
                        tracing::warn!(target: "qbo_rs", "cannot share the request budget between processes in {} ({e}); pacing this process alone. Set QBO_LIMITER_DIR to a writable local directory", dir.display());
                        RealmLimiter::new(pacing)
                    }
                }
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// How long `rounds` rounds of one request through each of `limiters` take (each slot given
    /// back at once).
    async fn time_rounds(limiters: &[&RealmLimiter], rounds: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..rounds {
            for limiter in limiters {
                drop(limiter.acquire().await);
            }
        }
        start.elapsed()
    }

    /// With two slots in all, taken through `first` and `second`, a request through `third`
    /// waits (still waiting after `refused_ms`) and gets a slot within `granted_ms` once
    /// `first`'s is given back.
    async fn assert_third_waits_for_a_slot(first: &RealmLimiter, second: &RealmLimiter, third: &RealmLimiter, refused_ms: u64, granted_ms: u64) {
        let held = first.acquire().await;
        let _other = second.acquire().await;
        let refused = tokio::time::timeout(Duration::from_millis(refused_ms), third.acquire()).await;
        assert!(refused.is_err(), "a third request must wait for a slot");
        drop(held);
        assert!(tokio::time::timeout(Duration::from_millis(granted_ms), third.acquire()).await.is_ok());
    }

    #[tokio::test]
    async fn spaces_requests_evenly() {
        let limiter = RealmLimiter::new(Pacing { requests_per_minute: 600, max_in_flight: 10 });
        // 600/min = one every 100 ms; the first is immediate.
        let elapsed = time_rounds(&[&limiter], 6).await;
        assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    }

    #[tokio::test]
    async fn bounds_requests_in_flight() {
        let limiter = RealmLimiter::new(Pacing { requests_per_minute: 60_000, max_in_flight: 2 });
        assert_third_waits_for_a_slot(&limiter, &limiter, &limiter, 50, 200).await;
    }

    #[test]
    fn registry_shares_per_realm() {
        let p = Pacing::default();
        let lease = Duration::from_secs(60);
        let a = shared_limiter("http://x", "1", p, &LimiterScope::Process, lease);
        let b = shared_limiter("http://x", "1", p, &LimiterScope::Process, lease);
        let c = shared_limiter("http://x", "2", p, &LimiterScope::Process, lease);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(a.budget_file().is_none());
    }

    fn machine_wide(dir: &std::path::Path, rpm: u32, in_flight: u32) -> RealmLimiter {
        let pacing = Pacing { requests_per_minute: rpm, max_in_flight: in_flight };
        let schedule = MachineSchedule::open(dir, "http://x", "7", rpm, in_flight, Duration::from_secs(60)).unwrap();
        RealmLimiter::machine_wide(pacing, schedule)
    }

    #[tokio::test]
    async fn machine_wide_limiters_share_one_pace() {
        // Two limiters on one directory stand for two processes: together they keep the
        // realm's pace, where two process-local limiters would each take the full rate.
        let dir = tempfile::tempdir().unwrap();
        let a = machine_wide(dir.path(), 600, 10);
        let b = machine_wide(dir.path(), 600, 10);
        let elapsed = time_rounds(&[&a, &b], 3).await;
        assert!(elapsed >= Duration::from_millis(480), "6 requests at 600/min need 500 ms, took {elapsed:?}");
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[tokio::test]
    async fn machine_wide_limiters_share_the_in_flight_bound() {
        let dir = tempfile::tempdir().unwrap();
        let a = machine_wide(dir.path(), 60_000, 2);
        let b = machine_wide(dir.path(), 60_000, 2);
        assert_third_waits_for_a_slot(&a, &b, &b, 60, 500).await;
    }

    #[tokio::test]
    async fn a_pause_reaches_the_other_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = machine_wide(dir.path(), 60_000, 10);
        let b = machine_wide(dir.path(), 60_000, 10);
        a.pause(Duration::from_millis(300));
        let waited = time_rounds(&[&b], 1).await;
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
    }

    #[tokio::test]
    async fn a_process_local_pause_holds_later_requests() {
        let limiter = RealmLimiter::new(Pacing { requests_per_minute: 60_000, max_in_flight: 10 });
        limiter.pause(Duration::from_millis(200));
        let waited = time_rounds(&[&limiter], 1).await;
        assert!(waited >= Duration::from_millis(180), "{waited:?}");
    }

    #[test]
    fn an_unusable_directory_falls_back_to_this_process() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let scope = LimiterScope::Machine(file.path().join("not-a-dir"));
        let limiter = shared_limiter("http://y", "1", Pacing::default(), &scope, Duration::from_secs(60));
        assert!(limiter.budget_file().is_none());
    }
}
