//! Producing requests: how a backend (or the demo) starts turns on the embedded request log.

use std::collections::BTreeMap;

use crate::event::TurnRequest;
use crate::event::codec::{AvroCodec, CodecError};
use crate::ids::Partition;
use crate::log::{EventLog, LogError, Record};

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Appends requests to the request log, each to its user's partition (the partition its events
/// will live in; see [`crate::ids::routing_key`]). Durable on return. Submitting a turn id twice starts it once.
pub async fn submit(
    log: &dyn EventLog,
    codec: &AvroCodec<TurnRequest>,
    requests: &[TurnRequest],
) -> Result<usize, SubmitError> {
    let routed: Vec<(Vec<u8>, TurnRequest)> = requests
        .iter()
        .map(|r| (crate::ids::routing_key(&r.tenant, &r.user_id), r.clone()))
        .collect();
    submit_routed(log, codec, &routed).await
}

/// Appends one request to `partition` of the request log (chosen by the caller from the raw
/// routing key; the record is keyed by the request's own, tokenized, user id). Durable on return.
pub async fn submit_to(
    log: &dyn EventLog,
    codec: &AvroCodec<TurnRequest>,
    partition: Partition,
    r: &TurnRequest,
) -> Result<(), SubmitError> {
    log.append(
        partition,
        vec![Record {
            key: crate::ids::routing_key(&r.tenant, &r.user_id),
            value: codec.encode(r)?,
        }],
    )
    .await?;
    Ok(())
}

/// As [`submit`], each request with the routing key it goes by: a request whose user id the
/// vault tokenized is still routed by the raw id, as every other request of that user is (the
/// record is keyed by the tokenized id: the raw one is used, not kept).
pub async fn submit_routed(
    log: &dyn EventLog,
    codec: &AvroCodec<TurnRequest>,
    requests: &[(Vec<u8>, TurnRequest)],
) -> Result<usize, SubmitError> {
    let mut by_partition: BTreeMap<Partition, Vec<Record>> = BTreeMap::new();
    for (key, r) in requests {
        let p = log.partition_for(key);
        // The record's key is what the log keeps: the (tokenized) user id the request holds,
        // never the raw id it was routed by.
        by_partition.entry(p).or_default().push(Record {
            key: crate::ids::routing_key(&r.tenant, &r.user_id),
            value: codec.encode(r)?,
        });
    }
    for (p, records) in by_partition {
        for chunk in records.chunks(1024) {
            log.append(p, chunk.to_vec()).await?;
        }
    }
    Ok(requests.len())
}
