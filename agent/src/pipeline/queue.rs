//! Bounded queues between stages, with an explicit overflow policy and exact drop accounting.

use crate::model::Batch;
use crate::telemetry::QueueMetrics;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// What a full queue does with a new batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverflowPolicy {
    /// Wait for room: backpressure reaches the receiver (and its client). Nothing is lost.
    #[default]
    Block,
    /// Drop the new batch and count its items in `srediag_queue_dropped_items_total{reason="queue_full"}`.
    Drop,
}

/// The input queue of a processor or exporter (`queue:` in its configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Capacity in batches. Default 64: with the batch processor's default of 8192 items per
    /// batch, that bounds a stage's backlog to about half a million items.
    pub capacity: usize,
    /// Overflow policy. Default `block`: backpressure instead of loss.
    pub policy: OverflowPolicy,
    /// Most bytes the queued batches may hold (their OTLP-encoded size), e.g. `64MiB`: a queue
    /// full of large batches applies its policy before `capacity` is reached. A single batch
    /// larger than the bound is let in alone. Default 64MiB.
    #[serde(deserialize_with = "crate::plugins::config::bytes")]
    pub max_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 64,
            policy: OverflowPolicy::Block,
            max_bytes: 64 << 20,
        }
    }
}

/// The sending side of a stage's queue.
#[derive(Clone)]
pub struct QueueSender {
    tx: mpsc::Sender<Queued>,
    policy: OverflowPolicy,
    metrics: QueueMetrics,
    /// The byte bound, in KiB permits.
    kib: Arc<Semaphore>,
    max_kib: u32,
}

/// A batch in a queue with the bytes it holds of the queue's bound.
type Queued = (Batch, Option<OwnedSemaphorePermit>);

/// The receiving side of a stage's queue.
pub struct QueueReceiver {
    rx: mpsc::Receiver<Queued>,
    metrics: QueueMetrics,
}

/// Why a batch did not enter a queue. Its items have been counted as dropped already.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The batch is in the queue.
    Queued,
    /// Dropped: the queue was full under the drop policy.
    DroppedFull,
    /// Dropped: the stage behind the queue is gone.
    DroppedClosed,
}

/// Creates a queue. `capacity` is clamped to at least 1.
pub fn queue(cfg: &QueueConfig, metrics: QueueMetrics) -> (QueueSender, QueueReceiver) {
    let (tx, rx) = mpsc::channel(cfg.capacity.max(1));
    let max_kib = u32::try_from(cfg.max_bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, Semaphore::MAX_PERMITS as u32);
    (
        QueueSender {
            tx,
            policy: cfg.policy,
            metrics: metrics.clone(),
            kib: Arc::new(Semaphore::new(max_kib as usize)),
            max_kib,
        },
        QueueReceiver { rx, metrics },
    )
}

impl QueueSender {
    /// Enqueues `batch` under the queue's policy. Every item that does not enter the queue is
    /// counted before this returns.
    pub async fn send(&self, batch: Batch) -> SendOutcome {
        let items = batch.items();
        // A batch larger than the whole bound is let in alone (it waits for an empty queue).
        let kib = (u32::try_from(batch.encoded_len().div_ceil(1024)).unwrap_or(u32::MAX))
            .clamp(1, self.max_kib);
        let result = match self.policy {
            OverflowPolicy::Block => match self.kib.clone().acquire_many_owned(kib).await {
                Ok(p) => self.tx.send((batch, Some(p))).await.map_err(|_| false),
                Err(_) => Err(false),
            },
            OverflowPolicy::Drop => match self.kib.clone().try_acquire_many_owned(kib) {
                Ok(p) => self.tx.try_send((batch, Some(p))).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => true,
                    mpsc::error::TrySendError::Closed(_) => false,
                }),
                Err(_) if self.tx.is_closed() => Err(false),
                Err(_) => Err(true),
            },
        };
        match result {
            Ok(()) => {
                self.metrics.size.inc();
                SendOutcome::Queued
            }
            Err(true) => {
                self.metrics.dropped_full.inc_by(items);
                SendOutcome::DroppedFull
            }
            Err(false) => {
                self.metrics.dropped_closed.inc_by(items);
                SendOutcome::DroppedClosed
            }
        }
    }
}

impl QueueReceiver {
    /// The next batch; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Batch> {
        let b = self.rx.recv().await;
        if b.is_some() {
            self.metrics.size.dec();
        }
        b.map(|(b, _bytes)| b)
    }

    /// Empties the queue without processing, counting every item as dropped at shutdown.
    /// Returns the number of items dropped.
    pub fn abandon(&mut self) -> u64 {
        self.rx.close();
        let mut n = 0;
        while let Ok((b, _bytes)) = self.rx.try_recv() {
            self.metrics.size.dec();
            n += b.items();
        }
        self.metrics.dropped_shutdown.inc_by(n);
        n
    }

    /// Counts a batch taken from the queue that could not be finished before the drain timeout.
    pub fn count_abandoned(&self, items: u64) {
        self.metrics.dropped_shutdown.inc_by(items);
    }
}

impl QueueSender {
    /// True once the stage behind the queue is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
