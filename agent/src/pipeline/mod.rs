//! The pipeline engine: stages connected by bounded queues, on tokio.
//!
//! ```text
//! receiver ─┬─▶ [queue] processor ─▶ [queue] processor ─┬─▶ [queue] exporter
//!           └─▶ (other pipelines listing the receiver)   └─▶ [queue] exporter (shared by pipelines)
//! ```
//! Invariant: an item a receiver accepted is delivered (`sent`), or counted as `failed` by an
//! exporter, or counted as `dropped` by a queue (with a reason). Nothing disappears silently.

mod build;
mod fanout;
mod plugin_exporter;
mod plugin_receiver;
mod plugin_stage;
mod queue;
mod stage;

pub use build::{RunningService, start};
pub use fanout::Fanout;
pub use plugin_receiver::PluginReceiver;
pub use queue::{OverflowPolicy, QueueConfig, QueueReceiver, QueueSender, SendOutcome, queue};

use crate::model::{Batch, Signal};
use crate::telemetry::{ReceiverCounters, Telemetry};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fires once when shutdown starts.
pub type Shutdown = watch::Receiver<bool>;

/// Waits until `shutdown` fires (or its sender is gone).
pub async fn shutdown_signalled(shutdown: &mut Shutdown) {
    let _ = shutdown.wait_for(|v| *v).await;
}

/// What a component gets when it is built.
#[derive(Clone)]
pub struct BuildContext {
    /// The component id (`file/logs`).
    pub id: String,
    /// The agent's telemetry.
    pub telemetry: Arc<Telemetry>,
}

/// A component could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A listener could not bind.
    #[error("{id}: cannot listen on {addr}: {source}")]
    Bind {
        /// Component id.
        id: String,
        /// The address.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file or directory could not be opened.
    #[error("{id}: cannot open {path}: {source}")]
    Open {
        /// Component id.
        id: String,
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A setting was rejected when building.
    #[error("{id}: {message}")]
    Invalid {
        /// Component id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A component of one kind was configured under another kind.
    #[error("{id}: type `{type_name}` cannot be used here")]
    WrongKind {
        /// Component id.
        id: String,
        /// The type name.
        type_name: &'static str,
    },
}

impl BuildError {
    /// True for an address-in-use style failure (exit code 69).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BuildError::Bind { .. })
    }
}

/// Brings telemetry in. Runs until shutdown fires, then returns (dropping its output, which
/// lets downstream stages drain and stop).
pub trait Receiver: Send {
    /// Runs the receiver.
    fn run(self: Box<Self>, out: ReceiverOutput, shutdown: Shutdown) -> BoxFuture<'static, ()>;
}

/// Transforms batches. Synchronous: a processor never blocks; the stage around it handles
/// queues, timers and backpressure.
pub trait Processor: Send {
    /// Handles one batch; returns what to pass on now (possibly nothing).
    fn process(&mut self, batch: Batch) -> Vec<Batch>;
    /// How often [`Processor::on_timer`] runs, if at all.
    fn timer(&self) -> Option<Duration> {
        None
    }
    /// Periodic work (e.g. flushing a batch that waited long enough).
    fn on_timer(&mut self) -> Vec<Batch> {
        Vec::new()
    }
    /// Everything still held, at shutdown.
    fn flush(&mut self) -> Vec<Batch>;
}

/// An export attempt failed for good (after the exporter's own retries).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

/// Sends telemetry out.
pub trait Exporter: Send {
    /// Delivers one batch.
    fn export(&mut self, batch: Batch) -> BoxFuture<'_, Result<(), ExportError>>;
    /// Flushes and releases resources at shutdown.
    fn shutdown(&mut self) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Where a receiver sends batches: for each signal, the pipelines that list the receiver.
#[derive(Clone)]
pub struct ReceiverOutput {
    logs: Option<(Fanout, ReceiverCounters)>,
    metrics: Option<(Fanout, ReceiverCounters)>,
}

/// The receiver's batch was refused (the sender should be told, e.g. HTTP 503).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No pipeline takes this signal from this receiver.
    NoPipeline,
    /// Every pipeline is shutting down.
    ShuttingDown,
}

impl ReceiverOutput {
    /// An output for a receiver with the given per-signal targets.
    pub fn new(
        logs: Option<(Fanout, ReceiverCounters)>,
        metrics: Option<(Fanout, ReceiverCounters)>,
    ) -> Self {
        ReceiverOutput { logs, metrics }
    }

    fn slot(&self, signal: Signal) -> Option<&(Fanout, ReceiverCounters)> {
        match signal {
            Signal::Logs => self.logs.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
        }
    }

    /// True when some pipeline takes `signal` from this receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        self.slot(signal).is_some()
    }

    /// Sends a batch to every pipeline of its signal, waiting under the block policy. The items
    /// count as accepted unless every pipeline is already gone (then refused); what a queue
    /// drops under its policy is counted by that queue.
    pub async fn send(&self, batch: Batch) -> Result<(), Refused> {
        let items = batch.items();
        let Some((fanout, counters)) = self.slot(batch.signal()) else {
            return Err(Refused::NoPipeline);
        };
        if fanout.closed() {
            counters.refused.inc_by(items);
            return Err(Refused::ShuttingDown);
        }
        counters.accepted.inc_by(items);
        fanout.send(batch).await;
        Ok(())
    }

    /// Counts items refused before they reached the pipeline (e.g. a malformed request).
    pub fn refuse(&self, signal: Signal, items: u64) {
        if let Some((_, c)) = self.slot(signal) {
            c.refused.inc_by(items);
        }
    }
}

#[cfg(test)]
mod tests;
