//! Time comes from a [`Clock`] so the state machine and its tests never read the wall clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A wait for a point in a clock's time.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Milliseconds since the Unix epoch, and waiting for a point in them. The engine's timers
/// (approval and handoff deadlines, retry backoff) wait through [`Clock::sleep_until`], so a
/// test that moves a [`ManualClock`] fires them at once, without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
    /// Resolves once `now_ms() >= at_ms` (at once if it already is).
    fn sleep_until(&self, at_ms: i64) -> Sleep;
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

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let delay = (at_ms - self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(delay)))
    }
}

/// A clock that moves only when told to: for tests and for deterministic replays. Moving it
/// wakes whatever sleeps until a time it passed.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<watch::Sender<i64>>);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(0)
    }
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(Arc::new(watch::Sender::new(start_ms)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.send_modify(|now| *now += ms);
    }

    pub fn set(&self, ms: i64) {
        self.0.send_replace(ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.0.borrow()
    }

    fn sleep_until(&self, at_ms: i64) -> Sleep {
        let mut now = self.0.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, time no longer moves.
            if now.wait_for(|t| *t >= at_ms).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Milliseconds since the epoch from text (`--since`/`--until`, a document's `updated_at`): an integer (ms), an RFC 3339
/// time with any offset (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00+01:00`, fractional
/// seconds allowed), or a date (`2026-12-01`, UTC midnight). Parsed by `jiff`; anything else is
/// an error saying what is accepted.
/// Milliseconds since the epoch as RFC 3339 in UTC with milliseconds
/// (`2026-01-01T00:00:00.123Z`): how the CLI and traces show a time to a person.
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        // Outside jiff's range (about ±9999 years): the number, rather than nothing.
        Err(_) => format!("{ms} ms"),
    }
}

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

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let c = ManualClock::new(100);
        let woke = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&woke);
        let sleep = c.sleep_until(150);
        let task = tokio::spawn(async move {
            sleep.await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        c.advance(49);
        tokio::task::yield_now().await;
        assert!(
            !woke.load(std::sync::atomic::Ordering::SeqCst),
            "not yet due"
        );
        c.advance(1);
        task.await.expect("woke");
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst));
        // Already due: resolves at once.
        c.sleep_until(10).await;
    }
}
