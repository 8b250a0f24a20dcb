//! The benches' load generator: a closed loop that keeps `in_flight` turns outstanding.
//!
//! Requests are appended to the request log while the worker runs — `in_flight` of them first,
//! then one more for each turn that finishes — and a turn's latency runs from the moment its
//! request was appended (submitted, durable in the request log) to its outcome. Appending every
//! request before the worker starts would measure from admission instead and hide the time a
//! request waits in the log; this is the latency a backend sees.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::event::TurnRequest;
use crate::event::codec::AvroCodec;
use crate::ids::TurnId;
use crate::log::EventLog;
use crate::runtime::TurnFinished;
use crate::submit::{SubmitError, submit};

/// What a closed-loop run measured.
pub(crate) struct LoadRun {
    /// Submission → outcome, µs, sorted.
    pub latencies_us: Vec<u64>,
    /// From the first finished turn (the worker has recovered and joined) to the last.
    pub steady: std::time::Duration,
    /// How the submitted turns ended.
    pub outcomes: super::OutcomeMix,
}

/// Submits `requests` keeping at most `in_flight` unfinished, and waits for all of them.
pub(crate) async fn closed_loop(
    log: &dyn EventLog,
    codec: &AvroCodec<TurnRequest>,
    requests: &[TurnRequest],
    in_flight: usize,
    finished: &mut mpsc::UnboundedReceiver<TurnFinished>,
) -> Result<LoadRun, SubmitError> {
    let mut submitted: HashMap<TurnId, Instant> = HashMap::with_capacity(requests.len());
    let mut next = 0usize;
    let mut latencies_us = Vec::with_capacity(requests.len());
    let mut first_done: Option<Instant> = None;
    let mut outcomes = super::OutcomeMix::default();
    let mut room = in_flight.max(1);
    while latencies_us.len() < requests.len() {
        if room > 0 && next < requests.len() {
            let end = (next + room).min(requests.len());
            let batch = requests.get(next..end).unwrap_or_default();
            submit(log, codec, batch).await?;
            let at = Instant::now();
            submitted.extend(batch.iter().map(|r| (r.turn_id, at)));
            room -= end - next;
            next = end;
        }
        let Some(done) = finished.recv().await else {
            break;
        };
        let mut record = |f: TurnFinished| {
            let now = Instant::now();
            first_done.get_or_insert(now);
            if let Some(at) = submitted.remove(&f.turn_id) {
                latencies_us.push(now.duration_since(at).as_micros() as u64);
                outcomes.add(f.outcome);
                room += 1;
            }
        };
        record(done);
        while let Ok(more) = finished.try_recv() {
            record(more);
        }
    }
    latencies_us.sort_unstable();
    let steady = first_done.map(|t| t.elapsed()).unwrap_or_default();
    Ok(LoadRun {
        latencies_us,
        steady,
        outcomes,
    })
}
