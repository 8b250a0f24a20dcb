//! Identifier newtypes. Turn ids are UUID v7 (time-ordered); partitions and offsets are plain
//! integers wrapped so they cannot be confused with counts or each other.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One agent turn (request → response): the workflow instance. UUID v7, so ids sort by creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TurnId(pub Uuid);

impl TurnId {
    /// A fresh, time-ordered id. Only edges (API, demo generator) mint ids; the state machine never does.
    pub fn new_v7() -> Self {
        TurnId(Uuid::now_v7())
    }

    /// A reproducible v7 id from a timestamp and 10 random bytes, for seeded workloads.
    pub fn from_parts(unix_ms: u64, random: [u8; 10]) -> Self {
        TurnId(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }

    /// The log key of every event of this turn: the canonical string form, readable by any client.
    pub fn key(&self) -> Vec<u8> {
        self.0.to_string().into_bytes()
    }

    /// A deterministic id for the event at `seq` of this turn. Deriving it (instead of drawing a
    /// random one) keeps `decide` pure, and gives a re-emitted event the same id as the original.
    pub fn event_id(&self, seq: u64) -> Uuid {
        let t = self.0.as_bytes();
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&t[..8]);
        let mix = fnv1a(t).wrapping_add(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        b[8..].copy_from_slice(&mix.to_be_bytes());
        Uuid::new_v8(b)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl fmt::Display for TurnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TurnId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(TurnId)
    }
}

/// A partition of a log. All events of one turn live in one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partition(pub u32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Position of a record inside one partition. Offsets are dense: 0, 1, 2, …
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct Offset(pub u64);

impl Offset {
    pub const ZERO: Offset = Offset(0);

    pub fn next(self) -> Offset {
        Offset(self.0 + 1)
    }

    pub fn plus(self, n: u64) -> Offset {
        Offset(self.0 + n)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one tool call of a turn: stable across retries of that call, so it doubles as the
/// idempotency key the tool receives.
pub fn call_id(turn: TurnId, plan_rev: u32, step: u32) -> String {
    format!("{turn}/r{plan_rev}/s{step}")
}

/// The key that places a turn's requests, commands and events: `tenant/user_id`. All turns of
/// one user share a partition, so one actor decides them one at a time and their budgets cannot
/// be overspent by a race. Producers writing to the request topic directly key records with it.
pub fn routing_key(tenant: &str, user_id: &str) -> Vec<u8> {
    format!("{tenant}/{user_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_distinct_per_seq() {
        let t = TurnId::from_parts(1_700_000_000_000, [7; 10]);
        assert_eq!(t.event_id(3), t.event_id(3));
        assert_ne!(t.event_id(3), t.event_id(4));
        let other = TurnId::from_parts(1_700_000_000_000, [8; 10]);
        assert_ne!(t.event_id(3), other.event_id(3));
    }

    #[test]
    fn turn_ids_round_trip_through_strings_and_sort_by_time() {
        let a = TurnId::from_parts(1_000, [1; 10]);
        let b = TurnId::from_parts(2_000, [0; 10]);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<TurnId>().ok(), Some(a));
        assert_eq!(a.0.get_version_num(), 7);
    }
}
