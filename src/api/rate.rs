//! A request-rate limit per tenant: a token bucket refilled at `requests_per_second` up to
//! `burst`. Time comes from the injected clock, so the limit is tested without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

use super::auth::RateConfig;

pub struct RateLimiter {
    config: RateConfig,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, (f64, i64)>>,
}

impl RateLimiter {
    pub fn new(config: RateConfig, clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            config,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the tenant's bucket: `Err(seconds to wait)` if it is empty.
    pub fn take(&self, tenant: &str) -> Result<(), u64> {
        let now = self.clock.now_ms();
        let (rate, burst) = (
            self.config.requests_per_second.max(0.001),
            self.config.burst.max(1.0),
        );
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(tenant.to_string()).or_insert((burst, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 / 1000.0 * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
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
        let limiter = RateLimiter::new(
            RateConfig {
                requests_per_second: 2.0,
                burst: 3.0,
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert!(limiter.take("acme").is_ok());
        }
        assert_eq!(limiter.take("acme"), Err(1));
        assert!(limiter.take("globex").is_ok(), "buckets are per tenant");
        clock.advance(500);
        assert!(
            limiter.take("acme").is_ok(),
            "one more after half a second at 2/s"
        );
        assert!(limiter.take("acme").is_err());
    }
}
