//! Turning request-log records into inputs. A partition reads its request log in order and
//! admits requests as slots free up; operator commands travel on the same log. So that an
//! answer is not stuck behind every request queued before it (past its deadline, on a loaded
//! partition), the actor reads ahead while its slots are full: commands found there are
//! applied at once, everything else waits in `backlog` and is admitted in log order.
//! `inbox_next` never passes the first record still in the backlog, so a restart reads the
//! backlog again (and with it the commands read ahead: a command read twice changes nothing —
//! the turn has moved past it, or, for labels, already carries it).

use std::sync::atomic::Ordering;

use super::PartitionActor;
use crate::admission::{self, AdmitError, Door, Refused, Seen};
use crate::event::codec::Inbound;
use crate::vault::token;
use std::time::Instant;

use crate::ids::TurnId;
use crate::log::{Record, Stored};
use crate::runtime::snapshot::session_key;
use crate::runtime::state_store::DeadLetter;
use crate::runtime::{Deps, RuntimeError};
use crate::turn::{Input, TurnState};

impl PartitionActor {
    /// A shared vault agrees on a tenant's key before the tenant's first request is tokenized
    /// (an async round trip through the log, once per tenant).
    pub(super) async fn settle_tenants(
        deps: &Deps,
        max_request_bytes: usize,
        batch: &[Stored],
    ) -> Result<(), RuntimeError> {
        let Some(vault) = deps.vault.as_ref().filter(|v| v.shared()) else {
            return Ok(());
        };
        let mut seen = std::collections::BTreeSet::new();
        for stored in batch {
            if stored.value.len() > max_request_bytes {
                continue;
            }
            if let Ok(Inbound::Request(r)) = deps.codecs.decode_inbound(&stored.value) {
                if seen.insert(r.tenant.clone()) {
                    vault.ensure_tenant(&r.tenant).await?;
                }
            }
        }
        Ok(())
    }

    /// Turns request records into inputs; bad or misrouted records become dead letters.
    pub(super) fn intake(
        &mut self,
        batch: Vec<Stored>,
        inputs: &mut Vec<(TurnId, Input)>,
    ) -> Result<(), RuntimeError> {
        for stored in batch {
            self.inbox_next = self.inbox_next.max(stored.offset.0 + 1);
            self.read_end = self.read_end.max(stored.offset.0 + 1);
            // With a vault, a raw request is never copied elsewhere: the dead letter points at
            // it in the request log (whose retention its producers set).
            let keep_payload = self.deps.vault.is_none();
            let dead = |reason: String| DeadLetter {
                partition: self.partition,
                offset: stored.offset,
                reason,
                payload: if keep_payload {
                    stored.value.clone()
                } else {
                    Vec::new()
                },
            };
            if stored.value.len() > self.cfg.max_request_bytes {
                self.dead_letters.push(dead(format!(
                    "oversize request: {} bytes, limit {}",
                    stored.value.len(),
                    self.cfg.max_request_bytes
                )));
                continue;
            }
            // Undecodable covers truncated Avro, an unknown writer schema, invalid UTF-8 and
            // missing required fields: the codec rejects each with its reason.
            let request = match self.deps.codecs.decode_inbound(&stored.value) {
                Ok(Inbound::Request(r)) => r,
                Ok(Inbound::Command(command)) => {
                    self.command(command, inputs);
                    continue;
                }
                Err(e) => {
                    self.dead_letters
                        .push(dead(format!("undecodable request: {e}")));
                    continue;
                }
            };
            let key = crate::ids::routing_key(&request.tenant, &request.user_id);
            let home = self.deps.events.partition_for(&key);
            // A request whose user id is already a token was routed by the raw id when it was
            // submitted (the API tokenizes before writing); only raw requests can be checked.
            let misrouted = home != self.partition && !token::is_token(&request.user_id);
            if misrouted && home.0 >= self.deps.requests.partitions() {
                self.dead_letters.push(dead(format!(
                    "turn {} of tenant {} belongs to partition {home}, which the request log does not have",
                    request.turn_id, request.tenant
                )));
                continue;
            }
            // The door every request goes through (the API's too): limits, claims, tokens,
            // duplicates. A misrouted request is deduplicated where it belongs.
            let grants = self
                .deps
                .intake
                .as_ref()
                .map(|t| t.for_tenant(&request.tenant));
            let door = Door {
                grants: grants.as_ref(),
                vault: self.deps.vault.as_deref(),
            };
            let tenant = request.tenant.clone();
            let admitted = admission::admit(&door, request, &mut |r| {
                if misrouted {
                    return Ok(Seen::New);
                }
                let known = self
                    .deps
                    .store
                    .is_known(r.turn_id)
                    .map_err(|e| AdmitError::Dedup(e.to_string()))?;
                Ok(if self.holds(&r.turn_id) || known {
                    Seen::Same
                } else {
                    Seen::New
                })
            });
            let admitted = match admitted {
                Ok(a) => a,
                Err(AdmitError::Refused(Refused::Claim(refused))) => {
                    self.dead_letters.push(dead(format!(
                        "claims: producers of tenant {tenant:?} may not grant {} {:?} ([intake] in the configuration)",
                        refused.kind, refused.value
                    )));
                    continue;
                }
                Err(AdmitError::Refused(refused)) => {
                    self.dead_letters
                        .push(dead(format!("refused request: {refused}")));
                    continue;
                }
                // Not kept in clear, not lost: the partition restarts and reads it again.
                Err(e) => {
                    return Err(RuntimeError::Store(
                        crate::runtime::state_store::StoreError::from_display(e),
                    ));
                }
            };
            self.vault_records.extend(admitted.records);
            let request = admitted.request;
            if misrouted {
                // A producer on another partitioner (librdkafka's consistent_random, the
                // default of confluent-kafka) put it here: pass it on to the partition that
                // decides this user's turns, in the same round as consuming it here — tokenized,
                // its values sealed in this round, so no raw value is copied anywhere.
                let value = match self.deps.codecs.requests.encode(&request) {
                    Ok(v) => v,
                    Err(e) => {
                        self.dead_letters
                            .push(dead(format!("undecodable request: {e}")));
                        continue;
                    }
                };
                self.deps
                    .stats
                    .forwarded_requests
                    .fetch_add(1, Ordering::Relaxed);
                self.forwards.push((
                    home,
                    Record {
                        key: crate::ids::routing_key(&request.tenant, &request.user_id),
                        value,
                    },
                ));
                continue;
            }
            if admitted.seen != Seen::New {
                self.deps
                    .stats
                    .duplicate_requests
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let turn = request.turn_id;
            self.turns.insert(turn, TurnState::new(turn));
            self.accepted_at.insert(turn, Instant::now());
            let session = match request.session_id.as_deref() {
                None => Some(Vec::new()),
                Some(s) => {
                    let key = session_key(&request.tenant, &request.user_id, s);
                    self.claim_session(key, turn)
                }
            };
            inputs.push((
                turn,
                Input::Request {
                    request,
                    source_offset: Some(stored.offset.0 as i64),
                    session,
                },
            ));
        }
        if self.backlog.is_empty() {
            // Everything read is handled: commands read ahead of requests included.
            self.inbox_next = self.inbox_next.max(self.read_end);
        }
        Ok(())
    }

    /// A command: for a turn in flight here, an input; for a finished turn (reverse, label),
    /// queued until the turn is reloaded; otherwise it arrived after the turn moved on (the
    /// sender checked the turn was waiting) and is dropped.
    fn command(&mut self, command: crate::event::TurnCommand, inputs: &mut Vec<(TurnId, Input)>) {
        let turn = command.turn_id;
        let late = matches!(
            command.action,
            crate::event::CommandAction::Reverse(_) | crate::event::CommandAction::Label(_)
        );
        if self.holds(&turn) {
            inputs.push((turn, Input::Command(command)));
        } else if late {
            self.reopen.push(command);
        } else {
            self.deps
                .stats
                .stale_commands
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(partition = %self.partition, %turn, command = %command.command_id,
                "command for a turn not in flight here; dropped");
        }
    }

    /// Records read while no slot is free: commands become inputs now, the rest joins the
    /// backlog (decoded again at admission; this happens only under load).
    pub(super) fn read_ahead(&mut self, batch: Vec<Stored>, inputs: &mut Vec<(TurnId, Input)>) {
        for stored in batch {
            self.read_end = self.read_end.max(stored.offset.0 + 1);
            if stored.value.len() <= self.cfg.max_request_bytes
                && let Ok(Inbound::Command(command)) =
                    self.deps.codecs.decode_inbound(&stored.value)
            {
                self.command(command, inputs);
            } else {
                self.backlog.push_back(stored);
            }
        }
    }

    /// Up to `room` records from the backlog, in log order.
    pub(super) fn take_backlog(&mut self, room: usize) -> Vec<Stored> {
        let n = room.min(self.backlog.len());
        self.backlog.drain(..n).collect()
    }
}
