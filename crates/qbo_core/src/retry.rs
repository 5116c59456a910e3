//! Backoff between retries: `wait = min(base * 2**retries + uniform(0, base), cap)`, seed
//! A's formula with base = 1 s and cap = 60 s; a `Retry-After` from the server wins.

use std::time::Duration;

use rand::Rng;

/// Retries after the first attempt before a window fails: seven attempts in all, a circuit
/// breaker that outlasts a minute of throttling with the backoff below.
pub const DEFAULT_MAX_RETRIES: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 6).
    pub max_retries: u32,
    /// One unit of the formula. 1 s in production; tests shrink it.
    pub base: Duration,
    /// Upper bound of any single wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: DEFAULT_MAX_RETRIES, base: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retries + 1` (so `retries` = 0 waits 1–2 s).
    pub fn backoff(&self, retries: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base.as_secs_f64();
        let exp = 2f64.powi(retries.min(30) as i32);
        let jitter: f64 = rng.random_range(0.0..1.0);
        Duration::from_secs_f64((base * exp + base * jitter).min(self.cap.as_secs_f64()))
    }

    /// The wait actually used: the server's `Retry-After` when sent (capped), else backoff.
    pub fn wait(&self, retries: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        match retry_after {
            Some(hint) => hint.min(self.cap),
            None => self.backoff(retries, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn follows_the_seed_formula() {
        let policy = RetryPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for retries in 0..10 {
            let w = policy.backoff(retries, &mut rng).as_secs_f64();
            let low = 2f64.powi(retries as i32).min(60.0);
            let high = (2f64.powi(retries as i32) + 1.0).min(60.0);
            assert!(w >= low && w <= high, "retries={retries} wait={w}");
        }
        assert_eq!(policy.wait(0, Some(Duration::from_secs(300)), &mut rng), Duration::from_secs(60));
        assert_eq!(policy.wait(3, Some(Duration::from_secs(2)), &mut rng), Duration::from_secs(2));
    }
}
