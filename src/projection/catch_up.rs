//! Catching projections up: each partition is read in chunks, and each chunk is decoded and
//! folded into every projection on the blocking pool, so partitions proceed in parallel (their
//! rows and checkpoints are disjoint: a turn's events all live in one partition).

use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::{At, CatchUp, Projection, ProjectionError, Projections, checkpoint, checkpoint_key};
use crate::event::Event;
use crate::event::codec::AvroCodec;
use crate::ids::{Offset, Partition};
use crate::log::{EventLog, Scan, Stored};

/// Records per read; a chunk is decoded and applied as one sled batch per projection.
const CHUNK: usize = 4096;
/// Smaller chunks (a live follower's few new events) are folded inline: handing them to
/// another thread would cost more than it saves.
const INLINE: usize = 256;

impl Projections {
    /// Applies every event after each projection's checkpoint, every partition at once.
    /// Callers hold `running`.
    pub(super) async fn catch_up_locked(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<CatchUp, ProjectionError> {
        let before = self.reached.borrow().clone();
        let mut runs: FuturesUnordered<_> = (0..log.partitions())
            .map(Partition)
            .map(|p| {
                self.catch_up_partition(log, codec, p, before.get(p.0 as usize).copied(), progress)
            })
            .collect();
        let mut done = CatchUp::default();
        let mut reached = vec![0; log.partitions() as usize];
        while let Some(run) = runs.next().await {
            let (p, at, part) = run?;
            if let Some(r) = reached.get_mut(p.0 as usize) {
                *r = at;
            }
            done.read += part.read;
            done.undecodable += part.undecodable;
        }
        self.reached.send_if_modified(|r| {
            let changed = *r != reached;
            *r = reached;
            changed
        });
        Ok(done)
    }

    async fn catch_up_partition(
        &self,
        log: &dyn EventLog,
        codec: &AvroCodec<Event>,
        p: Partition,
        known: Option<u64>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(Partition, u64, CatchUp), ProjectionError> {
        let mut done = CatchUp::default();
        // A partition with nothing new since the last catch-up costs one `end`.
        if let Some(at) = known
            && log.end(p).await?.0 <= at
        {
            return Ok((p, at, done));
        }
        let mut scan = Scan::new(log, p, self.low_water(p)?);
        while let Some(chunk) = scan.next_chunk(CHUNK).await? {
            let next = scan.position();
            let read = chunk.len() as u64;
            let undecodable = if chunk.len() < INLINE {
                fold(&self.items, codec, p, &chunk, next)?
            } else {
                let (items, codec) = (self.items.clone(), codec.clone());
                tokio::task::spawn_blocking(move || fold(&items, &codec, p, &chunk, next))
                    .await
                    .map_err(|e| ProjectionError::Storage {
                        projection: "catch-up",
                        message: e.to_string(),
                    })??
            };
            done.read += read;
            done.undecodable += undecodable;
            progress(read);
        }
        Ok((p, scan.position().0, done))
    }
}

/// Decodes one chunk of partition `p` (ending before `next`) and applies it to every projection
/// not already past it, each in one batch with its new checkpoint. Returns the records that did
/// not decode (counted, never fatal: the log is the truth and a corrupt record cannot be folded).
fn fold(
    items: &[Arc<dyn Projection>],
    codec: &AvroCodec<Event>,
    p: Partition,
    chunk: &[Stored],
    next: Offset,
) -> Result<u64, ProjectionError> {
    let mut undecodable = 0;
    let mut events = Vec::with_capacity(chunk.len());
    for stored in chunk {
        match codec.decode(&stored.value) {
            Ok(e) => events.push((
                At {
                    partition: p,
                    offset: stored.offset,
                },
                e,
            )),
            Err(e) => {
                undecodable += 1;
                tracing::warn!(partition = p.0, offset = stored.offset.0, error = %e, "undecodable event skipped by projections");
            }
        }
    }
    for item in items {
        let from = checkpoint(item.tree(), p)?;
        if from >= next {
            continue;
        }
        // The events from `from` on (in offset order; the point is at most the length).
        let start = events.partition_point(|(at, _)| at.offset < from);
        let unapplied = events.get(start..).unwrap_or_default();
        let mut batch = sled::Batch::default();
        item.apply_chunk(unapplied, &mut batch)?;
        batch.insert(&checkpoint_key(p)[..], &next.0.to_be_bytes()[..]);
        item.tree()
            .apply_batch(batch)
            .map_err(|e| super::storage_error(item.name(), e))?;
    }
    Ok(undecodable)
}
