//! Fan-out of one stage's output to the queues of every consumer.

use super::queue::{QueueSender, SendOutcome};
use crate::model::Batch;

/// Sends each batch to every target (a clone per extra target).
#[derive(Clone, Default)]
pub struct Fanout {
    targets: Vec<QueueSender>,
}

impl Fanout {
    /// A fan-out to `targets`.
    pub fn new(targets: Vec<QueueSender>) -> Self {
        Fanout { targets }
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when nothing consumes this output.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Sends to every target, blocking or dropping per target queue policy. Returns how many
    /// targets took the batch (drops are counted by the queues).
    pub async fn send(&self, batch: Batch) -> usize {
        let mut queued = 0;
        if let Some((last, rest)) = self.targets.split_last() {
            for t in rest {
                queued += usize::from(t.send(batch.clone()).await == SendOutcome::Queued);
            }
            queued += usize::from(last.send(batch).await == SendOutcome::Queued);
        }
        queued
    }
}

impl Fanout {
    /// True when every target queue is closed (the stages behind are gone).
    pub fn closed(&self) -> bool {
        self.targets.iter().all(QueueSender::is_closed)
    }
}

impl Fanout {
    /// The target queues.
    pub fn into_targets(self) -> Vec<QueueSender> {
        self.targets
    }
}
