//! Revealing is a recorded act: before cleartext of a turn is shown to anyone, a [`Reveal`]
//! (who, with which roles, when, which turn, where, why) is appended to the reveals log
//! (`reveals` in the data dir; `PREFIX.reveals` on Kafka) — and if it cannot be recorded,
//! nothing is revealed. Auditors read the log back with `GET /v1/reveals` or `ballast reveals`.

use serde::{Deserialize, Serialize};

use crate::ids::{Partition, TurnId};
use crate::log::{EventLog, LogError, Record, Scan};

/// The name of the reveals log (embedded) and the suffix of its topic (Kafka).
pub const REVEALS_LOG: &str = "reveals";

/// Longest reason a reveal keeps.
pub const MAX_REASON: usize = 500;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reveal {
    pub reveal_id: String,
    pub turn_id: String,
    pub tenant: String,
    /// Who saw the cleartext: a token's name, or the CLI's operator.
    pub who: String,
    pub roles: Vec<String>,
    /// trace, audit, queue (API), or cli-trace, cli-audit.
    pub surface: String,
    pub reason: String,
    pub at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RevealError {
    #[error("a reveal needs a reason (1 to {MAX_REASON} characters)")]
    Reason,
    #[error("the reveal could not be recorded, so nothing was revealed: {0}")]
    Log(#[from] LogError),
}

impl Reveal {
    pub fn new(
        turn: TurnId,
        tenant: &str,
        who: &str,
        roles: Vec<String>,
        surface: &str,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<Self, RevealError> {
        let reason = reason.map(str::trim).unwrap_or_default();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(RevealError::Reason);
        }
        Ok(Reveal {
            reveal_id: uuid::Uuid::now_v7().to_string(),
            turn_id: turn.to_string(),
            tenant: tenant.to_string(),
            who: who.to_string(),
            roles,
            surface: surface.to_string(),
            // The reason is free text an operator typed: it is kept masked like any view.
            reason: super::view::redact_all(reason),
            at_ms,
        })
    }
}

/// Appends reveals (one record each, keyed by turn) and returns once they are durable.
pub async fn record(log: &dyn EventLog, reveals: &[Reveal]) -> Result<(), RevealError> {
    if reveals.is_empty() {
        return Ok(());
    }
    let records = reveals
        .iter()
        .map(|r| Record {
            key: r.turn_id.as_bytes().to_vec(),
            value: serde_json::to_vec(r).unwrap_or_default(),
        })
        .collect();
    log.append(Partition(0), records).await?;
    Ok(())
}

/// The reveals of `tenant` at or after `since_ms`, oldest first, at most `limit`. Records that
/// do not parse are skipped (they were never written by this code).
pub async fn list(
    log: &dyn EventLog,
    tenant: &str,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<Reveal>, LogError> {
    let mut out = Vec::new();
    let mut scan = Scan::new(log, Partition(0), crate::ids::Offset(0));
    while let Some(chunk) = scan.next_chunk(1024).await? {
        for s in chunk {
            if let Ok(r) = serde_json::from_slice::<Reveal>(&s.value) {
                if r.tenant == tenant && r.at_ms >= since_ms {
                    out.push(r);
                }
            }
        }
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reveals_need_a_reason_and_are_read_back_per_tenant() {
        let log = crate::log::MemoryLog::new(1);
        let turn = TurnId::new_v7();
        assert!(matches!(
            Reveal::new(turn, "acme", "ann", vec![], "trace", Some("  "), 1),
            Err(RevealError::Reason)
        ));
        let a = Reveal::new(
            turn,
            "acme",
            "ann",
            vec!["auditor".into()],
            "trace",
            Some("case 7"),
            5,
        )
        .expect("reveal");
        let b = Reveal::new(turn, "globex", "bob", vec![], "audit", Some("x"), 6).expect("reveal");
        record(&log, &[a.clone(), b]).await.expect("record");
        assert_eq!(list(&log, "acme", 0, 10).await.expect("list"), vec![a]);
        assert!(list(&log, "acme", 6, 10).await.expect("list").is_empty());
    }
}
