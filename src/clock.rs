//! Time comes from a [`Clock`] so the state machine and its tests never read the wall clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The machine's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests and for deterministic replays.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the epoch from text (`--since`/`--until`, a document's `updated_at`): an integer (ms), an RFC 3339
/// time with any offset (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00+01:00`, fractional
/// seconds allowed), or a date (`2026-12-01`, UTC midnight). Parsed by `jiff`; anything else is
/// an error saying what is accepted.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = |why: String| {
        format!(
            "{s:?} is not a time ({why}); use RFC 3339 like 2026-12-01T10:00:00Z, a date like 2026-12-01, or ms since the epoch"
        )
    };
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // A bare date only: a time without an offset names no instant, and jiff would take the date
    // out of it silently.
    if s.len() != 10 {
        return Err(bad("a time needs an offset such as Z or +01:00".into()));
    }
    match s.parse::<jiff::civil::Date>() {
        Ok(d) => d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| bad(e.to_string())),
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(10);
        assert_eq!(c.now_ms(), 10);
        c.advance(5);
        assert_eq!(c.now_ms(), 15);
        c.set(1);
        assert_eq!(c.now_ms(), 1);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }
}
