//! Plugin verbs: `srediag diagnose <plugin> <verb> [--arg value …]`.
//!
//! A plugin's signed manifest declares its verbs in `cli:` (typed arguments with defaults,
//! output kinds). The flow, each hop bounded:
//!
//! ```text
//! CLI ──admin socket: plugin_verbs──▶ manager: the running incarnations' manifests
//! CLI: parse --args against the manifest (exit 2 naming the argument)
//! CLI ──plugin_invoke {plugin, verb, args, output}──▶ admin task ──Request::Invoke──▶ supervisor
//!      supervisor: args checked again against the running incarnation's manifest, defaults
//!      filled, output kind declared, ≤ max_concurrent → `invoke` on the control socket
//! plugin ──invoke_text|json|file … invoke_end──▶ supervisor (session.rs: kind, media type,
//!      base64, output budget, timeout) ──frames (bounded channel)──▶ admin task ──lines──▶ CLI
//! CLI gone (Ctrl-C, kill) / timeout / output limit ──▶ `cancel` to the plugin
//! ```
//!
//! The plugin is hostile: every chunk is checked against what was asked ([`session`]), output
//! is charged to the invocation's budget (`plugins.<name>.verbs.max_output`), a chunk of the
//! wrong kind or over the budget is a [`Violation::VerbOutput`](super::ledger::Violation) in the
//! plugin's ledger, and messages for invocations that do not exist are unexpected messages.
//! Frames wait for the CLI in a channel of [`FRAMES`]; when it is full the supervisor stops
//! reading the plugin's control socket (the plugin's sends block) until the CLI catches up, and
//! that time does not count against the plugin's heartbeats.

pub mod session;
pub mod stream;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use srediag_plugin_sdk::control::OutputKind;
use std::collections::BTreeMap;
use tokio::sync::{mpsc, oneshot};

pub use session::Invocations;

/// Frames of one invocation waiting for the CLI (each at most one control message, 64 KiB).
pub const FRAMES: usize = 16;

/// One line streamed to the CLI after the invocation started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Text (plugin-supplied: the CLI escapes control characters other than newline and tab).
    Text {
        /// The text.
        text: String,
    },
    /// One JSON value.
    Json {
        /// The value.
        value: Value,
    },
    /// The next bytes of the file output.
    File {
        /// Its media type (declared by the verb).
        media_type: String,
        /// The bytes, base64.
        data: String,
    },
    /// The invocation is over.
    End {
        /// How.
        status: EndStatus,
        /// Why, or the verb's summary (plugin-supplied: escaped when shown).
        #[serde(default)]
        message: String,
    },
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndStatus {
    /// The verb finished.
    Ok,
    /// The verb reported a failure.
    Failed,
    /// Cancelled (the client went away) and the plugin said so.
    Cancelled,
    /// It ran past `verbs.timeout`: cancelled in the plugin.
    Timeout,
    /// It wrote more than `verbs.max_output`: cancelled, a violation.
    OutputLimit,
    /// It wrote output it was not asked for (wrong kind, undeclared media type, bad base64):
    /// cancelled, a violation.
    BadOutput,
    /// The plugin stopped (crashed, restarted, stopped, swapped) before the verb ended.
    PluginStopped,
}

impl EndStatus {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            EndStatus::Ok => "ok",
            EndStatus::Failed => "failed",
            EndStatus::Cancelled => "cancelled",
            EndStatus::Timeout => "timeout",
            EndStatus::OutputLimit => "output_limit",
            EndStatus::BadOutput => "bad_output",
            EndStatus::PluginStopped => "plugin_stopped",
        }
    }
}

/// Why an invocation did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No plugin of that name is configured.
    UnknownPlugin,
    /// The plugin is not running (starting, failed, quarantined, rejected, stopped).
    NotRunning,
    /// The plugin has no manifest (an unsigned `path:` plugin) or its manifest declares no verbs.
    NoVerbs,
    /// Its manifest does not declare this verb.
    UnknownVerb,
    /// The arguments do not match the declaration.
    BadArgs,
    /// The verb does not write the requested output kind.
    BadOutput,
    /// `verbs.max_concurrent` invocations run already, or the plugin is being swapped.
    Busy,
    /// The plugin speaks control protocol 1 (no verbs).
    OldProtocol,
}

impl Refusal {
    /// True for the caller's mistakes (the CLI exits 2); otherwise the plugin is unavailable
    /// (exit 69).
    pub fn is_usage(self) -> bool {
        matches!(
            self,
            Refusal::UnknownPlugin | Refusal::UnknownVerb | Refusal::BadArgs | Refusal::BadOutput
        )
    }
}

/// A refusal with its one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The kind.
    pub reason: Refusal,
    /// What to tell the operator.
    pub message: String,
}

impl Refused {
    /// A refusal.
    pub fn new(reason: Refusal, message: impl Into<String>) -> Refused {
        Refused {
            reason,
            message: message.into(),
        }
    }
}

/// What the admin socket asks a plugin's supervisor to run.
#[derive(Debug)]
pub struct InvokeRequest {
    /// The verb.
    pub verb: String,
    /// Typed arguments as the client sent them (checked by the supervisor).
    pub args: BTreeMap<String, Value>,
    /// The output kind the operator asked for.
    pub output: OutputKind,
    /// Where the frames go.
    pub frames: mpsc::Sender<Frame>,
    /// Told the invocation id, or why it did not start.
    pub started: oneshot::Sender<Result<u64, Refused>>,
}

impl InvokeRequest {
    /// Answers that it did not start.
    pub fn refuse(self, reason: Refusal, message: impl Into<String>) {
        let _ = self.started.send(Err(Refused::new(reason, message)));
    }
}

/// A plugin's verbs as `srediag diagnose --help` lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginVerbs {
    /// Plugin name.
    pub plugin: String,
    /// Plugin type.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Its state (`ready` runs verbs).
    pub state: String,
    /// The verbs of its last verified manifest (empty without a manifest).
    pub verbs: Vec<crate::plugins::trust::manifest::CliVerb>,
    /// Why there are no verbs to show, when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}
