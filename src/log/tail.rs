//! Tail subscriptions: a cursor over one partition that waits for new durable records.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{LogError, Result, Stored};
use crate::ids::{Offset, Partition};

#[async_trait]
pub trait Tail: Send {
    /// Waits until at least one record at or after the cursor is durable, then returns up to
    /// `max` of them and moves the cursor past them. Cancel-safe: if the future is dropped before
    /// it completes, the cursor has not moved and no record is lost.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Stored>>;

    /// The offset of the next record this cursor will yield.
    fn position(&self) -> Offset;
}

/// Synchronous reads of durable records, for backends that store locally.
pub(crate) trait ReadDurable: Send + Sync + 'static {
    fn read_durable(&self, partition: Partition, from: Offset, max: usize) -> Result<Vec<Stored>>;
}

/// A tail over a local backend: reads, and when caught up waits on the partition's durable end.
pub(crate) struct WatchTail {
    pub(crate) source: Arc<dyn ReadDurable>,
    pub(crate) partition: Partition,
    pub(crate) position: Offset,
    pub(crate) durable_end: watch::Receiver<u64>,
}

#[async_trait]
impl Tail for WatchTail {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Stored>> {
        loop {
            let end = *self.durable_end.borrow_and_update();
            if end > self.position.0 {
                let batch = self
                    .source
                    .read_durable(self.partition, self.position, max.max(1))?;
                if let Some(last) = batch.last() {
                    self.position = last.offset.next();
                    return Ok(batch);
                }
            }
            // A change published after borrow_and_update() above wakes this immediately.
            self.durable_end
                .changed()
                .await
                .map_err(|_| LogError::Closed)?;
        }
    }

    fn position(&self) -> Offset {
        self.position
    }
}
