//! Following a turn while it runs: `GET /v1/turns/{id}/events` streams its events as
//! Server-Sent Events as they become durable, and `POST /v1/turns?wait_ms=N` answers with the
//! finished turn when it ends in time.
//!
//! Each SSE event is one log event, masked like every view: `id` is its per-turn `seq` (so a
//! client reconnecting with `Last-Event-ID` gets only what it has not seen), `event` its kind
//! (`PlanProposed`, `ToolCallCompleted`, …), `data` the trace entry (`GET …/trace` gives the
//! same objects). After `TurnCompleted` a last `outcome` event carries the turn (with `reply`)
//! and the stream ends — also when `Last-Event-ID` is at or past `TurnCompleted` already (the
//! client gets `outcome` alone). Events are read from the turn's partition from where the last
//! poll stopped, so a long turn costs one scan of what is new, not of its history, per poll.
//!
//! A stream is as good as its token: once the token it was opened with is revoked (or its entry
//! changes), it ends with an `error` event carrying a 401 problem, within a poll of the auth
//! file being re-read. An unknown turn, or another tenant's, is 404 at once; only a turn id this
//! API accepted (or the worker started) that the turn index does not show yet is waited for.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{AuthConfig, Caller, Credential};
use super::authn::{Anyone, Authed};
use super::problem::Problem;
use super::turns::{TurnView, view};
use super::{AppState, P};
use crate::event::Payload;
use crate::ids::{Offset, Partition, TurnId};
use crate::log::Scan;
use crate::projection::turn_index::{TurnEntry, TurnStatus};

/// How often a follower looks for new events.
const POLL: Duration = Duration::from_millis(50);
/// A stream ends after this long; the client resumes with `Last-Event-ID`.
const MAX_STREAM: Duration = Duration::from_secs(30 * 60);
/// How long a stream waits for a turn just submitted to reach the log.
const APPEAR_WITHIN: Duration = Duration::from_secs(10);
/// The longest `wait_ms` a submission may ask for.
pub const MAX_WAIT_MS: u64 = 60_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// Wait up to this many milliseconds (at most 60000) for the turn to finish: 200 with the
    /// finished turn (including `reply`) if it does, else 202 as without it.
    pub wait_ms: Option<u64>,
}

/// The caller's turn. One this API accepted (or the worker started) that the turn index does
/// not show yet is waited for, up to `APPEAR_WITHIN` — its request is on the request log until
/// the worker records it; any other id is 404 at once (unknown, or another tenant's).
async fn appearing(state: &AppState, tenant: &str, id: &str) -> Result<TurnEntry, Problem> {
    appearing_within(state, tenant, id, APPEAR_WITHIN).await
}

/// As [`appearing`], waiting at most `within`.
pub(crate) async fn appearing_within(
    state: &AppState,
    tenant: &str,
    id: &str,
    within: Duration,
) -> Result<TurnEntry, Problem> {
    let deadline = Instant::now() + within;
    let mut changes = state.projections.changes();
    loop {
        match super::turns::own_turn(state, tenant, id).await {
            Ok(e) => return Ok(e),
            Err(p) if p.status == 404 && Instant::now() < deadline && on_its_way(state, id)? => {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep(POLL).await;
                        }
                    }
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
            Err(p) => return Err(p),
        }
    }
}

/// Whether `id` was accepted here or started by the worker, and is not in the turn index yet.
fn on_its_way(state: &AppState, id: &str) -> Result<bool, Problem> {
    let Ok(turn) = id.parse::<TurnId>() else {
        return Ok(false);
    };
    if state.index.get(turn)?.is_some() {
        // Indexed, yet not the caller's: another tenant's turn.
        return Ok(false);
    }
    let started = || state.logs.started(turn);
    Ok(state.submissions.accepted(turn) || started() || submitted_elsewhere(state, turn))
}

/// How recent a turn id must be for a replica to wait for it: another replica may have
/// accepted it, and this one's projection shows it once the workers record it.
const ELSEWHERE_WITHIN_MS: i64 = 5 * 60_000;

/// On a replica (one of several `serve` processes over Kafka), a recent UUID v7 turn id may
/// have been accepted by another replica: it is waited for (bounded), not refused at once.
fn submitted_elsewhere(state: &AppState, turn: TurnId) -> bool {
    if !state.follower_reads {
        return false;
    }
    let Some(ts) = turn.0.get_timestamp() else {
        return false;
    };
    let (secs, nanos) = ts.to_unix();
    let at_ms = (secs as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000);
    let now = state.clock.now_ms();
    (now - ELSEWHERE_WITHIN_MS..=now + 60_000).contains(&at_ms)
}

/// Waits up to `wait_ms` for `turn` to finish: its view when it did.
pub(crate) async fn finished_within(
    state: &AppState,
    tenant: &str,
    turn: TurnId,
    wait_ms: u64,
) -> Result<Option<TurnView>, Problem> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    // Woken by each catch-up that applied something (serve's follower catches up as events
    // arrive); the poll is the fallback where nothing follows the log.
    let mut changes = state.projections.changes();
    state.fresh().await?;
    loop {
        if let Some(e) = state.index.get(turn)?
            && e.tenant == tenant
            && e.status == TurnStatus::Terminal
        {
            return Ok(Some(view(state, e)));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(POLL).await;
                }
            }
            _ = tokio::time::sleep(POLL) => state.fresh().await?,
        }
    }
}

struct Follow {
    state: Arc<AppState>,
    /// Who opened the stream, with what: checked again whenever the auth file is re-read.
    caller: Caller,
    credential: Credential,
    /// The auth configuration the credential was last checked against.
    checked: Option<Arc<AuthConfig>>,
    entry: TurnEntry,
    /// The partition offset the next poll reads from.
    next: u64,
    /// The highest `seq` sent (or given in `Last-Event-ID`).
    sent: i64,
    pending: VecDeque<SseEvent>,
    done: bool,
    until: Instant,
}

impl Follow {
    /// Whether the stream's token no longer admits its caller (looked at again only when the
    /// auth file has been re-read).
    fn revoked(&mut self) -> bool {
        let config = self.state.auth.current();
        if self
            .checked
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &config))
        {
            return false;
        }
        let admits = config.still_admits(&self.credential, &self.caller);
        self.checked = Some(config);
        !admits
    }

    /// Reads what is new in the partition; queues the turn's events not yet sent.
    async fn poll(&mut self) -> Result<(), Problem> {
        let state = Arc::clone(&self.state);
        let p = Partition(self.entry.partition);
        let key = self.entry.turn_id.key();
        let mut scan = Scan::new(state.logs.events.as_ref(), p, Offset(self.next));
        let mut fresh = Vec::new();
        'scan: while let Some(chunk) = scan
            .next_chunk(1024)
            .await
            .map_err(|e| Problem::unavailable(e.to_string()))?
        {
            for stored in chunk {
                self.next = stored.offset.0 + 1;
                if stored.key != key {
                    continue;
                }
                let Ok(event) = state.logs.codecs.events.decode(&stored.value) else {
                    continue;
                };
                // The stream ends at `TurnCompleted`, also one the client has seen already
                // (`Last-Event-ID` at or past it): it still gets the outcome.
                let completed = matches!(event.payload, Payload::TurnCompleted(_));
                if event.seq > self.sent || completed {
                    fresh.push((stored.offset.0, event));
                }
                if completed {
                    break 'scan;
                }
            }
        }
        let mut masker = super::reveal::masked(&state);
        for (offset, mut event) in fresh {
            let completed = matches!(event.payload, Payload::TurnCompleted(_));
            if event.seq > self.sent {
                masker.event(&self.entry.tenant, &self.entry.user_id, &mut event);
                let data = event.trace_entry(p.0, offset);
                self.sent = event.seq;
                self.pending.push_back(
                    SseEvent::default()
                        .id(event.seq.to_string())
                        .event(event.kind())
                        .json_data(data)
                        .map_err(|e| Problem::unavailable(e.to_string()))?,
                );
            }
            if completed {
                state.fresh().await?;
                let entry = state
                    .index
                    .get(self.entry.turn_id)?
                    .unwrap_or_else(|| self.entry.clone());
                self.pending.push_back(
                    SseEvent::default()
                        .event("outcome")
                        .json_data(view(&state, entry))
                        .map_err(|e| Problem::unavailable(e.to_string()))?,
                );
                self.done = true;
                break;
            }
        }
        Ok(())
    }
}

#[utoipa::path(get, path = "/v1/turns/{id}/events", tag = "turns",
    params(("id" = String, Path, description = "turn id"),
        ("Last-Event-ID" = Option<String>, Header, description = "the last seq received: resume after it")),
    responses((status = 200, description = "Server-Sent Events: one per log event (id = seq, event = kind, data = trace entry), then `outcome` with the finished turn (also when Last-Event-ID is at or past its end); an `error` event with a problem ends it early (a 401 once the token is revoked)", content_type = "text/event-stream"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn events(
    Authed(caller, _): Authed<Anyone>,
    credential: Credential,
    State(state): State<Arc<AppState>>,
    P(id): P<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let sent = match headers.get("last-event-id") {
        None => -1,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= -1)
            .ok_or_else(|| Problem::bad_request("Last-Event-ID is not an event seq"))?,
    };
    let entry = appearing(&state, &caller.tenant, &id).await?;
    let follow = Follow {
        next: entry.first_offset,
        state,
        caller,
        credential,
        checked: None,
        entry,
        sent,
        pending: VecDeque::new(),
        done: false,
        until: Instant::now() + MAX_STREAM,
    };
    let s = stream::unfold(follow, |mut f| async move {
        loop {
            if !f.done && f.revoked() {
                f.pending.clear();
                f.done = true;
                let p = Problem::unauthorized("the token this stream was opened with is revoked");
                if let Ok(e) = SseEvent::default().event("error").json_data(&p) {
                    f.pending.push_back(e);
                }
            }
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if f.done || Instant::now() >= f.until {
                return None;
            }
            if let Err(p) = f.poll().await {
                tracing::warn!(turn = %f.entry.turn_id, error = %p.detail, "event stream stopped");
                f.done = true;
                if let Ok(e) = SseEvent::default().event("error").json_data(&p) {
                    f.pending.push_back(e);
                }
                continue;
            }
            if f.pending.is_empty() {
                tokio::time::sleep(POLL).await;
            }
        }
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}
