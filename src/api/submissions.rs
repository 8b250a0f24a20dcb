//! Turn ids submitted over the API, so a retried `POST /v1/turns` is answered as before and a
//! different request under the same id is refused (409).
//!
//! The rule: **a 2xx is sent only for a request that is durable in the request log, and a claim
//! never outlives a request that was not written.** A claim is made in two steps around the
//! append:
//!
//! 1. *pending* — `P`, the request's digest, and the request-log partition and end offset seen
//!    before appending — written with a compare-and-swap, so one submission of an id appends;
//! 2. the request is appended; the log's group commit makes every earlier write of the database
//!    durable with it, the pending claim included;
//! 3. *committed* — `C` and the digest — once the append has returned (durable).
//!
//! A crash can leave a pending claim whose request was or was not written. [`Submissions::reconcile`]
//! (before `serve` answers anything) reads the request log from each pending claim's offset:
//! the request is there → committed; it is not → the claim is removed, and a retry appends it.
//! A retry never gets 202 for a claim that is still pending: it waits for the submission under
//! way, and answers 503 (retry) if that does not settle in time.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::admission::Seen;
use crate::event::TurnRequest;
use crate::event::codec::{Codecs, Inbound};
use crate::ids::{Offset, Partition, TurnId};
use crate::log::{EventLog, Scan};

/// What a claim's stored value says.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    Pending {
        digest: [u8; 32],
        partition: Partition,
        from: Offset,
    },
    Committed([u8; 32]),
}

impl Stored {
    fn decode(bytes: &[u8]) -> Option<Stored> {
        match bytes {
            // Written by builds before the two-step claim: a committed digest.
            digest if digest.len() == 32 => Some(Stored::Committed(digest.try_into().ok()?)),
            [b'C', digest @ ..] if digest.len() == 32 => {
                Some(Stored::Committed(digest.try_into().ok()?))
            }
            [b'P', rest @ ..] if rest.len() == 32 + 4 + 8 => {
                let (digest, rest) = rest.split_at(32);
                let (partition, from) = rest.split_at(4);
                Some(Stored::Pending {
                    digest: digest.try_into().ok()?,
                    partition: Partition(u32::from_be_bytes(partition.try_into().ok()?)),
                    from: Offset(u64::from_be_bytes(from.try_into().ok()?)),
                })
            }
            _ => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Stored::Committed(d) => [&[b'C'][..], d].concat(),
            Stored::Pending {
                digest,
                partition,
                from,
            } => [
                &[b'P'][..],
                digest,
                &partition.0.to_be_bytes(),
                &from.0.to_be_bytes(),
            ]
            .concat(),
        }
    }

    fn digest(&self) -> &[u8; 32] {
        match self {
            Stored::Pending { digest, .. } | Stored::Committed(digest) => digest,
        }
    }
}

/// What claiming an id found.
pub enum Claim {
    /// Ours: append the request, then [`Submissions::commit`] (or [`Submissions::release`]).
    Mine,
    /// Settled before: the same request (answer as before) or another one (409).
    Seen(Seen),
    /// Another submission of this id is appending now: wait for it, then claim again.
    InFlight(Arc<Notify>),
}

/// The claims tree and the submissions of this process still appending.
pub struct Submissions {
    tree: sled::Tree,
    in_flight: Mutex<HashMap<TurnId, Arc<Notify>>>,
}

/// How long a retry waits for the same id's submission under way before answering 503.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("the submissions store: {0}")]
    Store(String),
    #[error("reading the request log to settle pending submissions: {0}")]
    Log(#[from] crate::log::LogError),
}

fn store_err(e: impl std::fmt::Display) -> SubmissionError {
    SubmissionError::Store(e.to_string())
}

impl Submissions {
    pub fn open(store: &crate::log::SledStore) -> Result<Self, SubmissionError> {
        Ok(Submissions {
            tree: store.tree("api_submissions").map_err(store_err)?,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The digest a claim keeps: everything the caller chose, tokenized as the log holds it.
    /// (A request without a session digests as builds before sessions did, so their claims
    /// still match a retry.)
    pub fn digest(r: &TurnRequest) -> [u8; 32] {
        let canonical = match &r.session_id {
            None => serde_json::json!([r.tenant, r.user_id, r.text, r.channel, r.attributes]),
            Some(s) => {
                serde_json::json!([r.tenant, r.user_id, r.text, r.channel, r.attributes, s])
            }
        };
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }

    /// Claims `r`'s turn id, to be appended to `partition`, whose end is `from` now.
    pub fn claim(
        &self,
        r: &TurnRequest,
        partition: Partition,
        from: Offset,
    ) -> Result<Claim, SubmissionError> {
        let digest = Self::digest(r);
        let turn = r.turn_id;
        let mut in_flight = self.in_flight.lock().map_err(store_err)?;
        if let Some(n) = in_flight.get(&turn) {
            return Ok(Claim::InFlight(Arc::clone(n)));
        }
        let pending = Stored::Pending {
            digest,
            partition,
            from,
        };
        let swapped = self
            .tree
            .compare_and_swap(turn.0.as_bytes(), None::<&[u8]>, Some(pending.encode()))
            .map_err(store_err)?;
        match swapped {
            Ok(()) => {
                in_flight.insert(turn, Arc::new(Notify::new()));
                Ok(Claim::Mine)
            }
            Err(e) => match e.current.as_deref().and_then(Stored::decode) {
                Some(s @ Stored::Committed(_)) => Ok(Claim::Seen(if *s.digest() == digest {
                    Seen::Same
                } else {
                    Seen::Different
                })),
                // Pending with no submission of this process behind it: only before
                // `reconcile` ran. Treated as under way; a retry answers 503 until settled.
                Some(Stored::Pending { .. }) => Ok(Claim::InFlight(Arc::new(Notify::new()))),
                None => Err(SubmissionError::Store(format!(
                    "the claim of turn {turn} is unreadable"
                ))),
            },
        }
    }

    /// The request of our claim is durable: the claim is settled.
    pub fn commit(&self, r: &TurnRequest) -> Result<(), SubmissionError> {
        let done = Stored::Committed(Self::digest(r));
        let result = self
            .tree
            .insert(r.turn_id.0.as_bytes(), done.encode())
            .map(|_| ())
            .map_err(store_err);
        self.settle(r.turn_id);
        result
    }

    /// Our request was not written: the claim goes, so a retry may submit it again.
    pub fn release(&self, turn: TurnId) {
        if let Err(e) = self.tree.remove(turn.0.as_bytes()) {
            // Left pending: the next start's reconcile removes it (its request is not there).
            tracing::warn!(%turn, error = %e, "could not release a submission claim");
        }
        self.settle(turn);
    }

    /// Whether a submission under this id was claimed here (by any tenant; pending or
    /// committed).
    pub fn accepted(&self, turn: TurnId) -> bool {
        self.tree.contains_key(turn.0.as_bytes()).unwrap_or(false)
    }

    fn settle(&self, turn: TurnId) {
        if let Ok(mut in_flight) = self.in_flight.lock()
            && let Some(n) = in_flight.remove(&turn)
        {
            n.notify_waiters();
        }
    }

    /// Settles every pending claim a crash left: committed if its request is in the request
    /// log (at or after the offset the claim saw), removed if not. Runs before the API serves.
    /// Returns (committed, removed).
    pub async fn reconcile(
        &self,
        requests: &dyn EventLog,
        codecs: &Codecs,
    ) -> Result<(usize, usize), SubmissionError> {
        let mut pending: BTreeMap<Partition, (Offset, Vec<(TurnId, Stored)>)> = BTreeMap::new();
        for item in self.tree.iter() {
            let (k, v) = item.map_err(store_err)?;
            let Some(s @ Stored::Pending { .. }) = Stored::decode(&v) else {
                continue;
            };
            let Ok(bytes) = <[u8; 16]>::try_from(k.as_ref()) else {
                continue;
            };
            let turn = TurnId(uuid::Uuid::from_bytes(bytes));
            let Stored::Pending {
                partition, from, ..
            } = s
            else {
                continue;
            };
            let entry = pending
                .entry(partition)
                .or_insert_with(|| (from, Vec::new()));
            entry.0 = entry.0.min(from);
            entry.1.push((turn, s));
        }
        let (mut committed, mut removed) = (0, 0);
        for (partition, (from, claims)) in pending {
            let mut written = std::collections::HashSet::new();
            if partition.0 < requests.partitions() {
                let end = requests.end(partition).await?;
                let mut scan = Scan::new(requests, partition, from);
                while scan.position() < end {
                    let Some(chunk) = scan.next_chunk(4096).await? else {
                        break;
                    };
                    for stored in chunk {
                        if let Ok(Inbound::Request(r)) = codecs.decode_inbound(&stored.value) {
                            written.insert(r.turn_id);
                        }
                    }
                }
            }
            for (turn, s) in claims {
                if written.contains(&turn) {
                    let done = Stored::Committed(*s.digest());
                    self.tree
                        .insert(turn.0.as_bytes(), done.encode())
                        .map_err(store_err)?;
                    committed += 1;
                } else {
                    self.tree.remove(turn.0.as_bytes()).map_err(store_err)?;
                    removed += 1;
                }
            }
        }
        if committed + removed > 0 {
            tracing::info!(
                committed,
                removed,
                "settled submissions a crash left pending"
            );
        }
        Ok((committed, removed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_claims_round_trip_and_read_the_old_format() {
        let p = Stored::Pending {
            digest: [7; 32],
            partition: Partition(3),
            from: Offset(42),
        };
        assert_eq!(Stored::decode(&p.encode()), Some(p));
        let c = Stored::Committed([9; 32]);
        assert_eq!(Stored::decode(&c.encode()), Some(c));
        assert_eq!(Stored::decode(&[5; 32]), Some(Stored::Committed([5; 32])));
        assert_eq!(Stored::decode(b"junk"), None);
    }
}
