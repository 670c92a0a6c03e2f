//! The components a plugin provides (seed §6: receiver, processor, exporter, extension,
//! diagnostics). A plugin registers them in [`crate::Plugin::register`]; the SDK runs the data
//! path and calls them.

use crate::PluginError;
use crate::data::Records;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Diagnostics verbs under `srediag diagnose <verb>`.
pub trait Diagnostics: Send {
    /// The verbs this plugin adds, with their typed arguments.
    fn verbs(&self) -> Vec<Verb>;
    /// Runs `verb` with arguments already checked against its declaration.
    fn invoke(
        &mut self,
        verb: &str,
        args: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Output, PluginError>;
}

/// A diagnostics verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verb {
    /// Name, e.g. `dedup-stats`.
    pub name: String,
    /// One line of help.
    pub about: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<Arg>,
}

/// A typed argument of a verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    /// `--name`.
    pub name: String,
    /// Type.
    pub kind: ArgKind,
    /// Must be given.
    #[serde(default)]
    pub required: bool,
    /// One line of help.
    #[serde(default)]
    pub help: String,
}

/// Argument types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgKind {
    /// Free text.
    String,
    /// Signed integer.
    Int,
    /// `true`/`false`.
    Bool,
    /// Seconds, e.g. `1.5`.
    Seconds,
}

/// What a verb returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Output {
    /// Text for a terminal.
    Text {
        /// The text.
        text: String,
    },
    /// Structured output (`-o json`).
    Json {
        /// The value.
        value: serde_json::Value,
    },
    /// A file (e.g. a profile), base64 in transit.
    File {
        /// Suggested file name.
        name: String,
        /// Contents, base64.
        base64: String,
    },
}

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
