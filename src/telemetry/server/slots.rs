//! The open connections of the HTTP server and which one gives way when they reach their bound.
//!
//! Every accepted connection holds a [`Slot`]. A slot is *trusted* once a request on it
//! authenticated (the API says so through [`super::ConnectionTrust`]) and *busy* while a request
//! on it is being answered. When the bound is reached, a new connection still gets in: the
//! oldest connection that has not authenticated and is idle (connected, or sending a request's
//! head) gives way first, then the oldest unauthenticated busy one, then the oldest trusted idle
//! one. A trusted connection with a request in flight is never evicted; when every slot is one,
//! the new connection is refused instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One open connection.
pub struct Slot {
    id: u64,
    epoch: Instant,
    trusted: AtomicBool,
    in_flight: AtomicU32,
    /// Milliseconds since `epoch` at which the connection was accepted or its last response
    /// ended.
    idle_since: AtomicU64,
    evicted: Notify,
}

impl Slot {
    fn new(id: u64, epoch: Instant) -> Self {
        Slot {
            id,
            epoch,
            trusted: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(elapsed_ms(epoch)),
            evicted: Notify::new(),
        }
    }

    pub fn trusted(&self) -> bool {
        self.trusted.load(Ordering::Relaxed)
    }

    pub(super) fn set_trusted(&self, yes: bool) {
        self.trusted.store(yes, Ordering::Relaxed);
    }

    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// A request on this connection is being answered until the guard drops (with its
    /// response's body).
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// When an untrusted, idle connection has waited `limit` for its next request: `None` while
    /// it is trusted or busy.
    pub(super) fn idle_deadline(&self, limit: Duration) -> Option<Duration> {
        if self.trusted() || self.busy() {
            return None;
        }
        let since = self.idle_since.load(Ordering::Acquire);
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let due = since.saturating_add(limit);
        Some(Duration::from_millis(
            due.saturating_sub(elapsed_ms(self.epoch)),
        ))
    }

    /// Resolves once the slot has been given to a newer connection.
    pub(super) async fn evicted(&self) {
        self.evicted.notified().await;
    }

    fn rank(&self) -> Option<u8> {
        match (self.trusted(), self.busy()) {
            (false, false) => Some(0),
            (false, true) => Some(1),
            (true, false) => Some(2),
            (true, true) => None,
        }
    }
}

fn elapsed_ms(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A request in flight; dropping it marks the connection idle from now.
pub struct InFlight(Arc<Slot>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let slot = &self.0;
        slot.idle_since
            .store(elapsed_ms(slot.epoch), Ordering::Release);
        slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What admitting a connection did.
pub enum Admitted {
    /// In, possibly in the place of an evicted connection.
    In { slot: Arc<Slot>, evicted: bool },
    /// Every slot holds an authenticated caller with a request in flight.
    Full,
}

/// The open connections, oldest first.
pub struct Slots {
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Slot>>>,
    emptied: Notify,
}

impl Default for Slots {
    fn default() -> Self {
        Slots {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
            emptied: Notify::new(),
        }
    }
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Slot>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A slot for a new connection when fewer than `max` are open, else in the place of the
    /// connection that gives way (see the module docs).
    pub fn admit(&self, max: usize) -> Admitted {
        let mut open = self.lock();
        let mut evicted = false;
        if open.len() >= max.max(1) {
            match victim(&open) {
                Some(id) => {
                    if let Some(old) = open.remove(&id) {
                        old.evicted.notify_one();
                    }
                    evicted = true;
                }
                None => return Admitted::Full,
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, self.epoch));
        open.insert(id, Arc::clone(&slot));
        Admitted::In { slot, evicted }
    }

    /// Evicts the connection that would give way to a new one (the process ran out of
    /// descriptors): whether there was one.
    pub fn evict_one(&self) -> bool {
        let mut open = self.lock();
        match victim(&open).and_then(|id| open.remove(&id)) {
            Some(old) => {
                old.evicted.notify_one();
                true
            }
            None => false,
        }
    }

    /// The connection has closed.
    pub fn release(&self, slot: &Slot) {
        let mut open = self.lock();
        open.remove(&slot.id);
        if open.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Every open connection is told to stop now (the server's drain ran out of time).
    pub fn evict_all(&self) {
        for slot in std::mem::take(&mut *self.lock()).into_values() {
            slot.evicted.notify_one();
        }
        self.emptied.notify_waiters();
    }

    /// Waits until no connection is open.
    pub async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// The connection that gives way: the lowest rank, then the oldest.
fn victim(open: &BTreeMap<u64, Arc<Slot>>) -> Option<u64> {
    let mut best: Option<(u8, u64)> = None;
    for (id, slot) in open {
        match slot.rank() {
            Some(0) => return Some(*id),
            Some(r) if best.is_none_or(|(b, _)| r < b) => best = Some((r, *id)),
            _ => {}
        }
    }
    best.map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(slots: &Slots, max: usize) -> (Arc<Slot>, bool) {
        match slots.admit(max) {
            Admitted::In { slot, evicted } => (slot, evicted),
            Admitted::Full => panic!("refused"),
        }
    }

    #[test]
    fn below_the_bound_nobody_gives_way() {
        let slots = Slots::default();
        for _ in 0..3 {
            assert!(!admitted(&slots, 3).1);
        }
        assert_eq!(slots.len(), 3);
    }

    #[test]
    fn the_oldest_idle_stranger_gives_way_before_anyone_else() {
        let slots = Slots::default();
        let (trusted_idle, _) = admitted(&slots, 4);
        trusted_idle.set_trusted(true);
        let (stranger_busy, _) = admitted(&slots, 4);
        let _request = stranger_busy.begin();
        let (stranger_idle, _) = admitted(&slots, 4);
        let (newest, _) = admitted(&slots, 4);
        let (_, evicted) = admitted(&slots, 4);
        assert!(evicted);
        assert!(!slots.lock().contains_key(&stranger_idle.id));
        // Next: the newest stranger (idle), then the busy stranger, then the trusted idle one.
        admitted(&slots, 4);
        assert!(!slots.lock().contains_key(&newest.id));
        assert_eq!(slots.len(), 4);
    }

    #[test]
    fn an_authenticated_caller_with_a_request_in_flight_is_never_evicted() {
        let slots = Slots::default();
        let (a, _) = admitted(&slots, 2);
        let (b, _) = admitted(&slots, 2);
        for s in [&a, &b] {
            s.set_trusted(true);
        }
        let _in_a = a.begin();
        // b is trusted but idle: it gives way.
        assert!(admitted(&slots, 2).1);
        assert!(slots.lock().contains_key(&a.id));
        let c = slots.lock().values().last().cloned().expect("c");
        c.set_trusted(true);
        let in_c = c.begin();
        assert!(matches!(slots.admit(2), Admitted::Full));
        drop(in_c);
        assert!(admitted(&slots, 2).1, "idle again: it may give way");
        assert!(slots.lock().contains_key(&a.id));
    }

    #[test]
    fn a_stranger_idles_for_its_limit_a_trusted_or_busy_connection_does_not() {
        let slots = Slots::default();
        let (s, _) = admitted(&slots, 1);
        let limit = Duration::from_secs(5);
        let left = s.idle_deadline(limit).expect("idle stranger");
        assert!(left <= limit);
        let request = s.begin();
        assert_eq!(s.idle_deadline(limit), None);
        drop(request);
        assert!(s.idle_deadline(limit).is_some());
        s.set_trusted(true);
        assert_eq!(s.idle_deadline(limit), None);
    }

    #[tokio::test]
    async fn an_evicted_slot_hears_of_it_and_release_drains() {
        let slots = Slots::default();
        let (first, _) = admitted(&slots, 1);
        let (second, evicted) = admitted(&slots, 1);
        assert!(evicted);
        // The permit is kept until the connection's task listens.
        first.evicted().await;
        slots.release(&first);
        assert_eq!(slots.len(), 1);
        slots.release(&second);
        slots.drained().await;
    }
}
