//! The components a plugin provides (seed §6: receiver, processor, exporter, extension;
//! diagnostics verbs are in [`crate::verbs`]). A plugin registers them in
//! [`crate::Plugin::register`]; the SDK runs the data path and calls them.

use crate::PluginError;
use crate::data::Records;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Records in → records out (`processors: [plugin/<name>]` in a pipeline).
pub trait Processor: Send {
    /// Handles one batch and returns what to pass on (possibly empty). An error drops this
    /// batch's records: the agent counts them as failed and does not re-send them.
    fn process(&mut self, records: Records) -> Result<Records, PluginError>;

    /// For processors that only drop items (filters, deduplication): one flag per item (log
    /// record or metric data point, in order) saying whether it passes. When this returns
    /// `Some`, `process` is not called and only the flags cross back to the agent, which applies
    /// them to its own copy of the batch: the records are not encoded a second time. Default
    /// `None`.
    fn keep(&mut self, records: &Records) -> Option<Result<Vec<bool>, PluginError>> {
        let _ = records;
        None
    }

    /// Like [`Processor::keep`], on a borrowed view of a log batch read in place from the frame
    /// (no decoding into owned records, no allocation per record). Tried first for log batches;
    /// `None` (default) falls back to `keep`, then `process`.
    fn keep_logs_view(
        &mut self,
        logs: &crate::wire::view::LogsView<'_>,
    ) -> Option<Result<Vec<bool>, PluginError>> {
        let _ = logs;
        None
    }
}

/// Consumes records (`exporters: [plugin/<name>]`).
pub trait Exporter: Send {
    /// Delivers one batch. Returning `Ok` acknowledges it: the agent will not re-send it.
    fn export(&mut self, records: Records) -> Result<(), PluginError>;
}

/// Produces records (`receivers: [plugin/<name>]`).
pub trait Receiver: Send {
    /// Produces records with [`Emitter::emit`] until [`Emitter::stopping`] is true, then returns.
    fn run(&mut self, emitter: &mut dyn Emit) -> Result<(), PluginError>;
}

/// How a receiver hands records to the agent.
pub trait Emit {
    /// Sends a batch; blocks while the agent applies backpressure (bounded: gives up with an
    /// error when the agent stops accepting for a long time or shuts the plugin down).
    fn emit(&mut self, records: Records) -> Result<(), PluginError>;
    /// True once the agent asked the plugin to stop.
    fn stopping(&self) -> bool;
}

/// Lifecycle-only capabilities (e.g. a health check): `init` and `shutdown` do the work.
pub trait Extension: Send {}

/// The emitter the SDK passes to a [`Receiver`].
pub(crate) struct RingEmitter<'a> {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) send: &'a mut dyn FnMut(Records) -> Result<(), PluginError>,
}

impl Emit for RingEmitter<'_> {
    fn emit(&mut self, records: Records) -> Result<(), PluginError> {
        (self.send)(records)
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How long a receiver's `emit` waits for ring space before giving up.
pub(crate) const EMIT_TIMEOUT: Duration = Duration::from_secs(30);
