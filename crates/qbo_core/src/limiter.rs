//! Pacing requests under Intuit's per-realm limits (500 requests/minute, 10 in flight)
//! on purpose, so a 429 is a rare event rather than the control loop. Every client of a
//! realm in this process shares one limiter (the registry below), because the limit is
//! the realm's, not the client's.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// Intuit's documented ceiling per realm.
pub const INTUIT_REQUESTS_PER_MINUTE: u32 = 500;
/// What we pace at by default: 2% under the ceiling leaves room for clock skew between
/// our spacing and Intuit's sliding window, which is the difference between zero 429s
/// and a steady trickle of them.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 490;
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;

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
        Ok(())
    }
}

/// A realm's budget: a GCRA rate limiter (one request every 60/rpm seconds, no burst, so
/// any 60-second window holds at most rpm requests) and a semaphore for requests in flight.
pub struct RealmLimiter {
    rate: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
}

/// Held for the duration of one HTTP request.
pub struct RequestPermit {
    _slot: OwnedSemaphorePermit,
}

impl RealmLimiter {
    pub fn new(pacing: Pacing) -> Self {
        let rpm = NonZeroU32::new(pacing.requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rpm).allow_burst(NonZeroU32::MIN);
        RealmLimiter {
            rate: RateLimiter::direct(quota),
            in_flight: Arc::new(Semaphore::new(pacing.max_in_flight.max(1) as usize)),
        }
    }

    /// Waits for a free slot, then for the next rate cell, so the request leaves right
    /// when its cell comes up (taking the cell first would let slot waits bunch requests).
    pub async fn acquire(&self) -> RequestPermit {
        let slot = Arc::clone(&self.in_flight).acquire_owned().await.expect("semaphore never closed");
        self.rate.until_ready().await;
        RequestPermit { _slot: slot }
    }
}

type Registry = Mutex<HashMap<(String, String, Pacing), Arc<RealmLimiter>>>;

/// The process-wide limiter for (API host, realm, pacing).
pub fn shared_limiter(api_base: &str, realm_id: &str, pacing: Pacing) -> Arc<RealmLimiter> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    let mut map = registry.lock().unwrap_or_else(|p| p.into_inner());
    Arc::clone(
        map.entry((api_base.to_string(), realm_id.to_string(), pacing))
            .or_insert_with(|| Arc::new(RealmLimiter::new(pacing))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn spaces_requests_evenly() {
        let limiter = RealmLimiter::new(Pacing { requests_per_minute: 600, max_in_flight: 10 });
        let start = Instant::now();
        for _ in 0..6 {
            drop(limiter.acquire().await);
        }
        // 600/min = one every 100 ms; the first is immediate.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    }

    #[tokio::test]
    async fn bounds_requests_in_flight() {
        let limiter = Arc::new(RealmLimiter::new(Pacing { requests_per_minute: 60_000, max_in_flight: 2 }));
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire()).await;
        assert!(third.is_err(), "a third request must wait for a slot");
        drop(a);
        assert!(tokio::time::timeout(Duration::from_millis(200), limiter.acquire()).await.is_ok());
    }

    #[test]
    fn registry_shares_per_realm() {
        let p = Pacing::default();
        let a = shared_limiter("http://x", "1", p);
        let b = shared_limiter("http://x", "1", p);
        let c = shared_limiter("http://x", "2", p);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
