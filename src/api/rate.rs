//! Token buckets: a request-rate limit per tenant (refilled at `requests_per_second` up to
//! `burst`) and a limit on failed authentications per client address — only the failures are
//! throttled, so a valid token from an address that also sent bad ones (one client behind a
//! proxy guessing) is still served. Time comes from the injected clock, so the limits are
//! tested without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

use super::auth::RateConfig;

/// At most this many buckets are kept per limiter; beyond it the fullest (idle) ones are dropped,
/// so a flood of client addresses cannot grow memory without bound.
const MAX_BUCKETS: usize = 100_000;

pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the tenant's bucket: `Err(seconds to wait)` if it is empty.
    pub fn take(&self, config: &RateConfig, tenant: &str) -> Result<(), u64> {
        self.spend(tenant, config.requests_per_second, config.burst, 1.0)
    }

    /// Records one failed authentication from `addr`: `Err(seconds to wait)` once the
    /// address's failures have spent its bucket (the caller answers 429 instead of 401).
    pub fn failed(&self, config: &RateConfig, addr: &str) -> Result<(), u64> {
        self.spend(
            addr,
            config.failed_auth_per_second,
            config.failed_auth_burst,
            1.0,
        )
    }

    /// Refills the bucket, then takes `cost` (0: only looks) if at least one token is there.
    fn spend(&self, key: &str, rate: f64, burst: f64, cost: f64) -> Result<(), u64> {
        let now = self.clock.now_ms();
        let (rate, burst) = (rate.max(0.001), burst.max(1.0));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // Buckets idle long enough to be full again hold nothing worth keeping.
            buckets.retain(|_, (t, at)| *t + (now - *at).max(0) as f64 / 1000.0 * rate < burst);
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 / 1000.0 * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_tenant_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let clock = Arc::new(ManualClock::new(0));
        let limiter = RateLimiter::new(clock.clone());
        let c = RateConfig {
            requests_per_second: 2.0,
            burst: 3.0,
            ..RateConfig::default()
        };
        for _ in 0..3 {
            assert!(limiter.take(&c, "acme").is_ok());
        }
        assert_eq!(limiter.take(&c, "acme"), Err(1));
        assert!(limiter.take(&c, "globex").is_ok(), "buckets are per tenant");
        clock.advance(500);
        assert!(
            limiter.take(&c, "acme").is_ok(),
            "one more after half a second at 2/s"
        );
        assert!(limiter.take(&c, "acme").is_err());
    }

    #[test]
    fn failed_authentications_lock_an_address_out_for_a_while() {
        let clock = Arc::new(ManualClock::new(0));
        let limiter = RateLimiter::new(clock.clone());
        let c = RateConfig {
            failed_auth_burst: 3.0,
            failed_auth_per_second: 0.5,
            ..RateConfig::default()
        };
        for _ in 0..3 {
            assert!(limiter.failed(&c, "10.0.0.1").is_ok());
        }
        assert_eq!(limiter.failed(&c, "10.0.0.1"), Err(2));
        assert_eq!(
            limiter.failed(&c, "10.0.0.1"),
            Err(2),
            "refusals cost nothing"
        );
        assert!(limiter.failed(&c, "10.0.0.2").is_ok());
        clock.advance(2_000);
        assert!(limiter.failed(&c, "10.0.0.1").is_ok());
    }
}
